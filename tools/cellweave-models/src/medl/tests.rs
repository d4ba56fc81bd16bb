//! MEDL: the random-effects block and its KL against a NumPy transcription, determinism,
//! a resumed run equal to an uninterrupted one, counterfactuals, many batches.

use candle_core::{Device, Tensor, Var};
use cellweave::contract::{Categorical, CellsTable, Column, Csr, Step, ValueKind};
use cellweave::io::table::read_embedding;
use std::path::{Path, PathBuf};

use super::fit::{train_cells, Outputs, RunOptions};
use super::layers::{selu, Pass, ReBlock, ReNoise, BN_EPS, RE_PRIOR_SD};
use super::model;
use super::net::one_hot;
use super::train::{default_epochs, MedlParams};
use crate::rng::Rng;

fn vals(n: usize, rng: &mut Rng, scale: f32, shift: f32) -> Vec<f32> {
    (0..n)
        .map(|_| shift + scale * (2.0 * rng.f32() - 1.0))
        .collect()
}

fn to_json(t: &Tensor) -> serde_json::Value {
    match t.rank() {
        1 => serde_json::json!(t.to_vec1::<f32>().unwrap()),
        _ => serde_json::json!(t.to_vec2::<f32>().unwrap()),
    }
}

/// The reference Python with NumPy: `$CELLWEAVE_REF_PYTHON`, else the reference env's
/// default place. None (with a loud notice) when absent; a failure under `CI=true`.
fn numpy_python() -> Option<PathBuf> {
    let mut c: Vec<PathBuf> = std::env::var_os("CELLWEAVE_REF_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    if let Some(h) = std::env::var_os("HOME") {
        c.push(PathBuf::from(h).join(".cache/cellweave-refenv/bin/python"));
    }
    for p in c {
        let ok = std::process::Command::new(&p)
            .args(["-c", "import numpy"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Some(p);
        }
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "no Python with NumPy for the MEDL oracle (set CELLWEAVE_REF_PYTHON)"
    );
    eprintln!(
        "!!! SKIPPED: no Python with NumPy for the MEDL oracle (set CELLWEAVE_REF_PYTHON) !!!"
    );
    None
}

fn max_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y).abs())
        .fold(0.0, f64::max)
}

fn flat(v: &serde_json::Value) -> Vec<f64> {
    match v {
        serde_json::Value::Array(a) => a.iter().flat_map(flat).collect(),
        serde_json::Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn re_block_and_kl_match_numpy() {
    let dev = Device::Cpu;
    let (b, k, w) = (7, 3, 5);
    let mut rng = Rng::new(11);
    let mut block = ReBlock::new(k, w, &dev).unwrap();
    let set = |v: &Var, shift: f32, scale: f32, rng: &mut Rng| {
        let t = Tensor::from_vec(vals(k * w, rng, scale, shift), (k, w), &dev).unwrap();
        v.set(&t).unwrap();
    };
    set(&block.gamma.mu, 0.0, 0.3, &mut rng);
    set(&block.gamma.rho, -2.0, 1.0, &mut rng);
    set(&block.beta.mu, 0.1, 0.3, &mut rng);
    set(&block.beta.rho, -3.0, 1.5, &mut rng);
    block.bn.running_mean = Tensor::from_vec(vals(w, &mut rng, 0.5, 0.0), w, &dev).unwrap();
    block.bn.running_var = Tensor::from_vec(vals(w, &mut rng, 0.4, 1.0), w, &dev).unwrap();
    let h = Tensor::from_vec(vals(b * w, &mut rng, 2.0, 0.5), (b, w), &dev).unwrap();
    // Batches 0, 1, 2 and an unseen one (code k: the zero row).
    let z = one_hot(&[0, 1, 2, 0, 3, 1, 2], k, &dev).unwrap();
    let noise: ReNoise = block.noise(&mut rng, &dev).unwrap();
    let (rm, rv) = (block.bn.running_mean.clone(), block.bn.running_var.clone());
    let out = block.forward(&h, &z, Some(&noise), Pass::Frozen).unwrap();
    let out_eval = block.forward(&h, &z, None, Pass::Eval).unwrap();
    let kl = block.kl().unwrap().to_scalar::<f32>().unwrap();
    let selu_in = Tensor::from_vec(vals(9, &mut rng, 3.0, 0.0), 9, &dev).unwrap();
    let selu_out = selu(&selu_in).unwrap();
    let case = serde_json::json!({
        "h": to_json(&h), "z": to_json(&z),
        "mu_gamma": to_json(block.gamma.mu.as_tensor()),
        "rho_gamma": to_json(block.gamma.rho.as_tensor()),
        "mu_beta": to_json(block.beta.mu.as_tensor()),
        "rho_beta": to_json(block.beta.rho.as_tensor()),
        "eps_gamma": to_json(&noise.gamma), "eps_beta": to_json(&noise.beta),
        "running_mean": to_json(&rm), "running_var": to_json(&rv),
        "bn_eps": BN_EPS, "prior_sd": RE_PRIOR_SD,
        "selu_in": to_json(&selu_in),
    });
    let Some(py) = numpy_python() else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/medl/re_oracle.py");
    let mut child = std::process::Command::new(py)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(case.to_string().as_bytes()).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "oracle failed");
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let got = out.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(max_diff(&got, &flat(&r["out"])) < 1e-5, "training forward");
    let got = out_eval.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(max_diff(&got, &flat(&r["out_eval"])) < 1e-5, "eval forward");
    let want_kl = r["kl"].as_f64().unwrap();
    assert!(
        (kl as f64 - want_kl).abs() < 1e-4 * want_kl.abs().max(1.0),
        "KL {kl} vs {want_kl}"
    );
    let got = selu_out.to_vec1::<f32>().unwrap();
    assert!(max_diff(&got, &flat(&r["selu"])) < 1e-5, "selu");
}

/// log1p-like values of `types` cell types in `k` batches (each batch shifts its own
/// genes), cell types in `cell_type`.
pub(crate) fn sim(n: usize, g: usize, k: usize, types: usize) -> CellsTable {
    let mut r = Rng::new(5);
    let prog: Vec<Vec<f32>> = (0..types)
        .map(|_| (0..g).map(|_| r.f32() * 3.0).collect())
        .collect();
    let mut dense = vec![0f32; n * g];
    for i in 0..n {
        let (t, b) = (i % types, (i / types) % k);
        for j in 0..g {
            let shift = if (j + b) % 4 == 0 { 1.0 } else { 0.0 };
            if r.f32() < 0.7 {
                dense[i * g + j] = (prog[t][j] + shift) * (0.7 + 0.6 * r.f32());
            }
        }
    }
    let batch: Vec<String> = (0..n).map(|i| format!("b{}", (i / types) % k)).collect();
    let ty: Vec<String> = (0..n).map(|i| format!("T{}", i % types)).collect();
    CellsTable {
        cell_ids: (0..n).map(|i| format!("c{i}")).collect(),
        batch: Categorical::from_strings(&batch),
        obs: vec![(
            "cell_type".into(),
            Column::Cat(Categorical::from_strings(&ty)),
        )],
        gene_ids: (0..g).map(|j| format!("G{j}")).collect(),
        gene_names: (0..g).map(|j| format!("g{j}")).collect(),
        x: Csr::from_dense(n, g, &dense),
        values: ValueKind::Log1p,
        provenance: Vec::new(),
    }
}

fn small_params(epochs: usize) -> MedlParams {
    MedlParams {
        epochs,
        batch_size: 32,
        lr: 1e-3,
        seed: 3,
        ..Default::default()
    }
}

fn outputs(d: &Path) -> Outputs {
    Outputs {
        model_dir: d.join("model"),
        embedding: d.join("fe.arrow"),
        re_embedding: Some(d.join("re.arrow")),
        log: Some(d.join("log.tsv")),
    }
}

fn opts(resume: bool, stop_after: Option<usize>) -> RunOptions {
    RunOptions {
        batch_key: "batch".into(),
        resume,
        device: "cpu".into(),
        checkpoint_every: 1,
        stop_after,
    }
}

fn step() -> Step {
    Step::new("cellweave-train", &serde_json::json!({"model": "medl"}))
}

fn emb(p: &Path) -> Vec<f32> {
    read_embedding(p).unwrap().data
}

#[test]
fn seeded_runs_are_identical_and_resume_is_exact() {
    let cells = sim(150, 24, 3, 3);
    let tmp = tempdir("medl-det");
    let (a, b, c) = (tmp.join("a"), tmp.join("b"), tmp.join("c"));
    for d in [&a, &b, &c] {
        std::fs::create_dir_all(d).unwrap();
    }
    let p = small_params(4);
    assert!(train_cells(&cells, &p, &opts(false, None), &outputs(&a), &step()).unwrap());
    assert!(train_cells(&cells, &p, &opts(false, None), &outputs(&b), &step()).unwrap());
    assert_eq!(emb(&a.join("fe.arrow")), emb(&b.join("fe.arrow")));
    assert_eq!(emb(&a.join("re.arrow")), emb(&b.join("re.arrow")));
    // Killed after epoch 2, then resumed: the same bits as the uninterrupted run.
    let err = train_cells(&cells, &p, &opts(false, Some(2)), &outputs(&c), &step()).unwrap_err();
    assert!(err.to_string().contains("--resume"), "{err}");
    assert!(!c.join("model").join(model::CARD).exists());
    assert!(train_cells(&cells, &p, &opts(true, None), &outputs(&c), &step()).unwrap());
    assert_eq!(emb(&a.join("fe.arrow")), emb(&c.join("fe.arrow")));
    assert_eq!(emb(&a.join("re.arrow")), emb(&c.join("re.arrow")));
    let wa = std::fs::read(a.join("model").join(model::WEIGHTS)).unwrap();
    let wc = std::fs::read(c.join("model").join(model::WEIGHTS)).unwrap();
    assert_eq!(wa, wc);
    // The log shows both adversarial losses of every epoch.
    let log = std::fs::read_to_string(a.join("log.tsv")).unwrap();
    let head = log.lines().next().unwrap();
    assert!(head.contains("adversary_ce") && head.contains("fe_adversarial_ce"));
    assert_eq!(log.lines().count(), 5);
    // A different seed gives a different model.
    let d = tmp.join("d");
    std::fs::create_dir_all(&d).unwrap();
    let p2 = MedlParams { seed: 4, ..p };
    train_cells(&cells, &p2, &opts(false, None), &outputs(&d), &step()).unwrap();
    assert_ne!(emb(&a.join("fe.arrow")), emb(&d.join("fe.arrow")));
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn counterfactual_to_own_batch_is_the_reconstruction() {
    let cells = sim(90, 16, 3, 3);
    let tmp = tempdir("medl-cf");
    let p = small_params(2);
    train_cells(&cells, &p, &opts(false, None), &outputs(&tmp), &step()).unwrap();
    let dev = Device::Cpu;
    let mut m = model::load(&tmp.join("model"), &dev).unwrap();
    let (codes, unseen) = model::batch_codes(&m.card, &cells.batch.categories, &cells.batch.codes);
    assert_eq!(unseen, 0);
    let s = m.card.scaling;
    let own = model::reconstruct(&mut m.net, &cells.x, &codes, &codes, &s, &dev).unwrap();
    let as1 = vec![1u32; codes.len()];
    let cf = model::reconstruct(&mut m.net, &cells.x, &codes, &as1, &s, &dev).unwrap();
    let g = cells.n_genes();
    for (i, &c) in codes.iter().enumerate() {
        let (a, b) = (&own[i * g..(i + 1) * g], &cf[i * g..(i + 1) * g]);
        if c == 1 {
            assert_eq!(a, b, "cell {i} of batch 1 mapped to batch 1");
        } else {
            assert_ne!(a, b, "cell {i} of batch {c} mapped to batch 1");
        }
    }
}

#[test]
fn many_batches_train() {
    let cells = sim(600, 12, 150, 2);
    assert_eq!(cells.batch.categories.len(), 150);
    let tmp = tempdir("medl-150");
    let p = MedlParams {
        epochs: 1,
        batch_size: 64,
        ..Default::default()
    };
    train_cells(&cells, &p, &opts(false, None), &outputs(&tmp), &step()).unwrap();
    let card: model::Card = crate::engine::card::read(&tmp.join("model")).unwrap();
    assert_eq!(card.batches.len(), 150);
    assert_eq!(emb(&tmp.join("re.arrow")).len(), 600 * 50);
}

#[test]
fn default_length_is_500_epochs_bounded_in_steps() {
    // kang_ifnb's 1,556 cells: 3 steps of 512 per epoch, 500 epochs = 1,500 steps.
    assert_eq!(default_epochs(1556, 512), 500);
    // 499 cells: one step per epoch, raised to 1,500 steps.
    assert_eq!(default_epochs(499, 512), 1500);
    // 100,000 cells: 195 steps per epoch, cut to 30 epochs (5,850 steps <= 6,000).
    assert_eq!(default_epochs(100_000, 512), 30);
    // A million cells: 1,953 steps per epoch, 3 epochs.
    assert_eq!(default_epochs(1_000_000, 512), 3);
    // More steps per epoch than the budget: still one whole epoch.
    assert_eq!(default_epochs(10_000_000, 512), 1);
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
