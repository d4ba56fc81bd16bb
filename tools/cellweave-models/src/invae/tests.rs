use super::command::{self, InvaeArgs};
use super::net::{self, Batch, Net, Noise, Shape};
use super::train::{batch_bounds, Covariate, Data, Params, Trainer};
use crate::command::{Hyper, TrainRun};
use crate::rng::Rng;
use candle_core::{Device, Tensor};
use cellweave::contract::{Categorical, CellsTable, Column, Csr, Step, ValueKind};

#[test]
fn lgamma_matches_known_values() {
    // Gamma(1) = Gamma(2) = 1, Gamma(0.5) = sqrt(pi), Gamma(10) = 9!.
    let cases = [
        (1.0, 0.0),
        (2.0, 0.0),
        (0.5, std::f64::consts::PI.sqrt().ln()),
        (10.0, 362880f64.ln()),
        (1e-3, 6.907_178_885_383_854),
        (1234.5, 7_550.550_901_077_896),
    ];
    for (x, want) in cases {
        let host = net::ln_gamma(x);
        assert!(
            (host - want).abs() < 1e-9 * want.abs().max(1.0),
            "host {x}: {host} vs {want}"
        );
        let t = Tensor::new(&[x as f32], &Device::Cpu).unwrap();
        let dev = net::lgamma(&t).unwrap().to_vec1::<f32>().unwrap()[0] as f64;
        let tol = 2e-6 * want.abs().max(1.0) + 1e-5;
        assert!((dev - want).abs() < tol, "tensor {x}: {dev} vs {want}");
    }
}

#[test]
fn lgamma_gradient_is_digamma() {
    // d/dx lgamma(x) = digamma(x): digamma(1) = -gamma_e, digamma(0.5) = -gamma_e - 2 ln 2.
    let ge = 0.577_215_664_901_532_9;
    for (x, want) in [
        (1.0f32, -ge),
        (0.5, -ge - 2.0 * 2f64.ln()),
        (7.0, 1.872_784_335_098_467),
    ] {
        let v = candle_core::Var::new(&[x], &Device::Cpu).unwrap();
        let y = net::lgamma(v.as_tensor()).unwrap().sum_all().unwrap();
        let g = y.backward().unwrap();
        let d = g.get(v.as_tensor()).unwrap().to_vec1::<f32>().unwrap()[0] as f64;
        assert!(
            (d - want).abs() < 1e-4,
            "digamma({x}) = {d}, expected {want}"
        );
    }
}

#[test]
fn fused_nb_matches_candle_ops_in_value_and_gradients() {
    // lgamma and digamma on the host: Gamma(1) = 1, digamma(1) = -gamma_e, digamma(0.5) =
    // -gamma_e - 2 ln 2, log Gamma(10) = ln 9!.
    let ge = 0.577_215_664_901_532_9;
    for (z, lg, dg) in [
        (1.0, 0.0, -ge),
        (0.5, std::f64::consts::PI.sqrt().ln(), -ge - 2.0 * 2f64.ln()),
        (10.0, 362880f64.ln(), 2.251_752_589_066_721),
    ] {
        let (a, b) = super::nb::lgamma_digamma(z);
        assert!(
            (a - lg).abs() < 1e-9 && (b - dg).abs() < 1e-9,
            "{z}: {a} {b}"
        );
    }
    // 37 cells (more than one parallel task, the last one short) x 23 genes, counts with
    // zeros and large values, logits spread over a wide range.
    let (n, g) = (37, 23);
    let mut rng = Rng::new(11);
    let logits: Vec<f32> = (0..n * g).map(|_| 4.0 * net::gauss(&mut rng)).collect();
    let raw: Vec<f32> = (0..g).map(|_| net::gauss(&mut rng)).collect();
    let x: Vec<f32> = (0..n * g)
        .map(|i| {
            if i % 3 == 0 {
                0.0
            } else {
                ((i * 7) % 40) as f32
            }
        })
        .collect();
    let lib: Vec<f32> = (0..n)
        .map(|i| x[i * g..(i + 1) * g].iter().sum::<f32>() + 1.0)
        .collect();
    let dev = Device::Cpu;
    let nz: Vec<(f32, u32)> = x
        .iter()
        .enumerate()
        .filter(|(_, &v)| v != 0.0)
        .map(|(i, &v)| (v, (i % g) as u32))
        .collect();
    let nz_values = Tensor::from_vec(nz.iter().map(|p| p.0).collect(), nz.len(), &dev).unwrap();
    let nz_genes = Tensor::from_vec(nz.iter().map(|p| p.1).collect(), nz.len(), &dev).unwrap();
    let x = Tensor::from_vec(x, (n, g), &dev).unwrap();
    let lib = Tensor::from_vec(lib, (n, 1), &dev).unwrap();
    let counts = super::nb::Counts {
        x: &x,
        library: &lib,
        nz_values: &nz_values,
        nz_genes: &nz_genes,
    };
    let run = |fused: bool| {
        let l = candle_core::Var::from_vec(logits.clone(), (n, g), &dev).unwrap();
        let t = candle_core::Var::from_vec(raw.clone(), g, &dev).unwrap();
        let (lt, tt) = (l.as_tensor(), t.as_tensor());
        let sum = if fused {
            super::nb::fused_sum(lt, tt, &counts).unwrap().unwrap()
        } else {
            // The dense part in candle ops plus the sparse lgamma terms, as other devices.
            let dense = super::nb::dense_sum_ops(lt, tt, &x, &lib).unwrap();
            let th = tt.exp().unwrap().index_select(&nz_genes, 0).unwrap();
            let sparse = (net::lgamma(&(&nz_values + &th).unwrap()).unwrap()
                - net::lgamma(&th).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
            (dense + sparse).unwrap()
        };
        // Scale the output as the loss does, so the incoming gradient is not 1.
        let y = (sum * -0.25).unwrap();
        let grads = y.backward().unwrap();
        let gl = grads.get(lt).unwrap().flatten_all().unwrap();
        let gt = grads.get(tt).unwrap();
        (
            y.to_scalar::<f32>().unwrap(),
            gl.to_vec1::<f32>().unwrap(),
            gt.to_vec1::<f32>().unwrap(),
        )
    };
    let (v1, l1, t1) = run(true);
    let (v2, l2, t2) = run(false);
    assert!((v1 - v2).abs() <= 1e-5 * v2.abs(), "value {v1} vs {v2}");
    let close = |a: &[f32], b: &[f32], what: &str| {
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (i, (p, q)) in a.iter().zip(b).enumerate() {
            assert!((p - q).abs() <= 1e-4 * scale, "{what}[{i}]: {p} vs {q}");
        }
    };
    close(&l1, &l2, "d/dlogits");
    close(&t1, &t2, "d/dtheta_raw");
}

#[test]
fn constant_input_product_matches_candle_and_skips_the_input_gradient() {
    let (n, k, m) = (19, 37, 8);
    let mut rng = Rng::new(3);
    let x: Vec<f32> = (0..n * k).map(|_| net::gauss(&mut rng)).collect();
    let w: Vec<f32> = (0..m * k).map(|_| net::gauss(&mut rng)).collect();
    let c: Vec<f32> = (0..n * m).map(|_| net::gauss(&mut rng)).collect();
    let dev = Device::Cpu;
    let x = Tensor::from_vec(x, (n, k), &dev).unwrap();
    let c = Tensor::from_vec(c, (n, m), &dev).unwrap();
    let run = |fused: bool| {
        let w = candle_core::Var::from_vec(w.clone(), (m, k), &dev).unwrap();
        let y = if fused {
            super::linear::matmul_wt(&x, w.as_tensor()).unwrap()
        } else {
            x.matmul(&w.as_tensor().t().unwrap()).unwrap()
        };
        let loss = y.mul(&c).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let gw = grads.get(w.as_tensor()).unwrap().flatten_all().unwrap();
        (
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            gw.to_vec1::<f32>().unwrap(),
            grads.get(&x).is_some(),
        )
    };
    let (y1, g1, x1) = run(true);
    let (y2, g2, _) = run(false);
    for (a, b) in y1.iter().zip(&y2).chain(g1.iter().zip(&g2)) {
        assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{a} vs {b}");
    }
    assert!(!x1, "no gradient buffer for the constant input");
}

#[test]
fn learned_prior_means_train_and_add_their_heads() {
    let d = data(120, 30);
    let dir = tempfile::tempdir().unwrap();
    let mut p = params(8);
    p.learned_prior_mean = true;
    let m = dir.path().join("m");
    let mut t = Trainer::new(&d, p, "fp".into(), &m, false, Device::Cpu).unwrap();
    let names: Vec<String> = t.net.params.iter().map(|(n, _)| n.clone()).collect();
    for head in [
        "prior_inv.mean.weight",
        "prior_inv.logl.bias",
        "prior_spur.mean.weight",
    ] {
        assert!(names.iter().any(|n| n == head), "{head} missing: {names:?}");
    }
    assert!(!names.iter().any(|n| n.starts_with("prior_inv.1")));
    super::train::run(&mut t, 0, None).unwrap();
    let log: Vec<f64> = t.progress.log.iter().map(|r| r.loss).collect();
    assert!(log.iter().all(|l| l.is_finite()));
    assert!(log[log.len() - 1] < log[0], "loss {log:?}");
}

#[test]
fn last_batch_of_one_joins_the_previous() {
    assert_eq!(batch_bounds(5, 2), vec![(0, 2), (2, 5)]);
    assert_eq!(batch_bounds(4, 2), vec![(0, 2), (2, 4)]);
    assert_eq!(batch_bounds(3, 8), vec![(0, 3)]);
}

/// Counts of 3 types x 2 batches over `g` genes (batch 1 scales a third of the genes).
fn synth(n: usize, g: usize, seed: u64) -> (Csr, Vec<u32>, Vec<u32>) {
    let mut r = Rng::new(seed);
    let prog: Vec<Vec<f64>> = (0..3)
        .map(|_| (0..g).map(|_| (r.f64() * 3.0).exp()).collect())
        .collect();
    let mut dense = vec![0f32; n * g];
    let (mut types, mut batches) = (Vec::new(), Vec::new());
    for i in 0..n {
        let (t, b) = (i % 3, (i / 3) % 2);
        types.push(t as u32);
        batches.push(b as u32);
        for j in 0..g {
            let m = prog[t][j] * if b == 1 && j % 3 == 0 { 3.0 } else { 1.0 };
            dense[i * g + j] = crate::testing::poisson(&mut r, m, 500) as f32;
        }
    }
    (Csr::from_dense(n, g, &dense), types, batches)
}

fn data(n: usize, g: usize) -> Data {
    let (x, types, batches) = synth(n, g, 3);
    Data {
        counts: x,
        inv: vec![(
            Covariate {
                name: "cell_type".into(),
                levels: vec!["a".into(), "b".into(), "c".into()],
            },
            types,
        )],
        spur: vec![(
            Covariate {
                name: "batch".into(),
                levels: vec!["b0".into(), "b1".into()],
            },
            batches,
        )],
    }
}

fn params(epochs: usize) -> Params {
    Params {
        inv_covariates: vec!["cell_type".into()],
        spur_covariates: vec!["batch".into()],
        latent_inv: 4,
        latent_spur: 2,
        inject_spur: false,
        learned_prior_mean: false,
        hidden: 16,
        encoder_layers: 2,
        dropout: 0.1,
        beta: 1.0,
        kl_warmup: 2,
        epochs,
        batch_size: 32,
        lr: 1e-2,
        weight_decay: 1e-4,
        seed: 5,
    }
}

fn weights(t: &Trainer) -> Vec<f32> {
    let mut names: Vec<_> = t.net.params.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    let all = t.net.tensors().unwrap();
    names
        .iter()
        .flat_map(|n| all[n].flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect()
}

#[test]
fn training_lowers_the_loss_and_is_deterministic() {
    let d = data(150, 24);
    let dir = tempfile::tempdir().unwrap();
    let run = |e| {
        let mut t = Trainer::new(
            &d,
            params(e),
            "fp".into(),
            &dir.path().join("m"),
            false,
            Device::Cpu,
        )
        .unwrap();
        super::train::run(&mut t, 0, None).unwrap();
        let log: Vec<f64> = t.progress.log.iter().map(|r| r.loss).collect();
        (log, weights(&t), t.posterior_means().unwrap())
    };
    let (log, w, z) = run(12);
    assert!(log.iter().all(|l| l.is_finite()));
    assert!(
        log[11] < log[0] * 0.8,
        "loss did not fall enough: {:?}",
        log
    );
    let (log2, w2, z2) = run(12);
    assert_eq!(log, log2);
    assert_eq!(w, w2);
    assert_eq!(z, z2);
}

#[test]
fn resumed_run_equals_uninterrupted() {
    let d = data(100, 16);
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    let full = {
        let mut t = Trainer::new(&d, params(6), "fp".into(), &m, false, Device::Cpu).unwrap();
        super::train::run(&mut t, 0, None).unwrap();
        weights(&t)
    };
    {
        let mut t = Trainer::new(&d, params(6), "fp".into(), &m, false, Device::Cpu).unwrap();
        let complete = super::train::run(&mut t, 2, Some(4)).unwrap();
        assert!(!complete);
    }
    let mut t = Trainer::new(&d, params(6), "fp".into(), &m, true, Device::Cpu).unwrap();
    assert_eq!(t.progress.epoch, 4);
    super::train::run(&mut t, 2, None).unwrap();
    assert_eq!(weights(&t), full);
    // Other parameters cannot resume that checkpoint.
    {
        let mut t = Trainer::new(&d, params(6), "fp".into(), &m, false, Device::Cpu).unwrap();
        super::train::run(&mut t, 2, Some(4)).unwrap();
    }
    let mut other = params(6);
    other.lr = 0.5;
    let e = Trainer::new(&d, other, "fp".into(), &m, true, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("other parameters") && !e.contains('\n'), "{e}");
}

#[test]
fn prior_without_covariates_is_standard_normal() {
    // With no covariates and no dropout, beta = 1 and eps = 0: the KL part is the closed
    // form of one sample at the mean, log N(g | 0, 1) - log N(g | g, v).
    let shape = Shape {
        n_genes: 6,
        inv_dim: 0,
        spur_dim: 0,
        latent_inv: 2,
        latent_spur: 1,
        hidden: 8,
        encoder_layers: 1,
        dropout: 0.0,
        inject_spur: false,
        learned_prior_mean: false,
    };
    let dev = Device::Cpu;
    let net = Net::init(&shape, &mut Rng::new(1), &dev).unwrap();
    let x: Vec<f32> = (0..24).map(|i| (i % 5) as f32).collect();
    let b = Batch::new(x, 4, 6, None, None, &dev).unwrap();
    let noise = Noise {
        masks: None,
        eps: Tensor::zeros((4, 3), candle_core::DType::F32, &dev).unwrap(),
    };
    let with = net.loss(&b, &noise, 1.0).unwrap();
    let without = net.loss(&b, &noise, 0.0).unwrap();
    let kl = with.loss.to_scalar::<f32>().unwrap() - without.loss.to_scalar::<f32>().unwrap();
    assert!((kl - with.kl.to_scalar::<f32>().unwrap()).abs() < 1e-3);
    assert!(kl.is_finite());
}

fn cells_table(n: usize, g: usize, values: ValueKind) -> CellsTable {
    let (x, types, batches) = synth(n, g, 9);
    let names = |codes: &[u32], p: &str| -> Categorical {
        let s: Vec<String> = codes.iter().map(|c| format!("{p}{c}")).collect();
        Categorical::from_strings(&s)
    };
    CellsTable {
        cell_ids: (0..n).map(|i| format!("c{i}")).collect(),
        batch: names(&batches, "b"),
        obs: vec![("condition".into(), Column::Cat(names(&types, "t")))],
        gene_ids: (0..g).map(|j| format!("G{j}")).collect(),
        gene_names: (0..g).map(|j| format!("g{j}")).collect(),
        x,
        values,
        provenance: Vec::new(),
    }
}

fn inputs(
    dir: &std::path::Path,
    cells: &std::path::Path,
    counts: Option<&std::path::Path>,
) -> TrainRun {
    TrainRun {
        cells: cells.into(),
        pairs: None,
        counts: counts.map(|p| p.into()),
        model_dir: dir.join("model"),
        embedding: dir.join("emb.arrow"),
        log: None,
        device: "cpu".into(),
        seed: 1,
        init: None,
        resume: false,
        checkpoint_every: 0,
        labels: "cell_type".into(),
        batch_key: "batch".into(),
        stop_after: None,
        hyper: Hyper {
            epochs: Some(3),
            batch_size: Some(32),
            latent: Some(3),
            ..Default::default()
        },
    }
}

#[test]
fn command_trains_embeds_and_refuses_non_counts() {
    use cellweave::io::table::{read_embedding, write_cells};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let counts = cells_table(90, 12, ValueKind::Counts);
    let mut lognorm = counts.clone();
    lognorm.values = ValueKind::Log1p;
    for v in &mut lognorm.x.data {
        *v = v.ln_1p();
    }
    write_cells(&d.join("counts.arrow"), &counts).unwrap();
    write_cells(&d.join("log.arrow"), &lognorm).unwrap();
    let step = Step::new("test", &serde_json::json!({}));
    let args = InvaeArgs {
        inv_covariates: vec!["condition".into()],
        spur_embedding: Some(d.join("spur.arrow")),
        ..Default::default()
    };
    // Log values alone are refused; log values with --counts train.
    let e = command::train(&inputs(d, &d.join("log.arrow"), None), &args, &step)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--counts") && !e.contains('\n'), "{e}");
    let e = command::train(
        &inputs(d, &d.join("log.arrow"), Some(&d.join("log.arrow"))),
        &args,
        &step,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("not raw counts") && !e.contains('\n'), "{e}");
    let i = inputs(d, &d.join("log.arrow"), Some(&d.join("counts.arrow")));
    command::train(&i, &args, &step).unwrap();
    let emb = read_embedding(&d.join("emb.arrow")).unwrap();
    assert_eq!(
        (emb.dim, emb.n_cells(), emb.name.as_str()),
        (3, 90, "invae")
    );
    let spur = read_embedding(&d.join("spur.arrow")).unwrap();
    assert_eq!(spur.dim, 1);
    let card: command::Card = crate::engine::card::read(&i.model_dir).unwrap();
    assert_eq!(card.head.model, "invae");
    assert_eq!(
        card.hyperparameters.spur_covariates,
        vec!["batch".to_string()]
    );
    assert_eq!(card.inv_covariates[0].levels.len(), 3);
    // Embedding the training cells again gives train's embedding.
    assert_eq!(embed_again(d, &i.model_dir, &step), emb.data);
}

/// `cellweave-embed` of `d/counts.arrow` with the model `model_dir`: the z_inv values.
fn embed_again(d: &std::path::Path, model_dir: &std::path::Path, step: &Step) -> Vec<f32> {
    let o = command::EmbedInputs {
        run: crate::command::EmbedRun {
            cells: d.join("counts.arrow"),
            model_dir: model_dir.to_path_buf(),
            output: d.join("again.arrow"),
            device: "cpu".into(),
            max_missing: 0.1,
        },
        counts: None,
        spur_output: None,
    };
    command::embed_with(&o, step).unwrap();
    cellweave::io::table::read_embedding(&d.join("again.arrow"))
        .unwrap()
        .data
}

#[test]
fn batch_only_gives_the_batch_to_the_decoder() {
    use cellweave::io::table::{read_embedding, write_cells};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_cells(
        &d.join("counts.arrow"),
        &cells_table(90, 12, ValueKind::Counts),
    )
    .unwrap();
    let step = Step::new("test", &serde_json::json!({}));
    let i = inputs(d, &d.join("counts.arrow"), None);
    // Contradictions are refused in one line before any work.
    let refused = |args: InvaeArgs, flag: &str| {
        let e = command::train(&i, &args, &step).unwrap_err().to_string();
        assert!(e.contains(flag) && !e.contains('\n'), "{e}");
        assert!(!i.model_dir.exists() && !i.embedding.exists());
    };
    refused(
        InvaeArgs {
            inject_covariates: Some(command::Inject::On),
            spur_embedding: Some(d.join("spur.arrow")),
            ..Default::default()
        },
        "--spur-embedding",
    );
    refused(
        InvaeArgs {
            inject_covariates: Some(command::Inject::On),
            spur_covariates: Some(vec!["none".into()]),
            ..Default::default()
        },
        "--inject-covariates",
    );
    refused(
        InvaeArgs {
            inject_covariates: Some(command::Inject::On),
            latent_spur: Some(2),
            ..Default::default()
        },
        "--latent-spur",
    );
    // Batch only (auto): no z_spur block, the batch one-hots widen the decoder's input.
    command::train(&i, &InvaeArgs::default(), &step).unwrap();
    let card: command::Card = crate::engine::card::read(&i.model_dir).unwrap();
    assert!(card.shape.inject_spur && card.hyperparameters.inject_spur);
    assert_eq!(
        (card.shape.latent_spur, card.shape.decoder_input()),
        (0, 3 + 2)
    );
    let emb = read_embedding(&i.embedding).unwrap();
    assert_eq!((emb.dim, emb.n_cells()), (3, 90));
    assert!(emb.data.iter().all(|v| v.is_finite()));
    assert_eq!(embed_again(d, &i.model_dir, &step), emb.data);
    // With invariant covariates too, auto also injects, and the invariant prior's mean is
    // learned (the condition moves z_inv); --prior-mean fixed keeps the zero mean.
    let with_inv = |prior_mean| InvaeArgs {
        inv_covariates: vec!["condition".into()],
        prior_mean,
        ..Default::default()
    };
    for (prior_mean, learned) in [(None, true), (Some(command::PriorMean::Fixed), false)] {
        std::fs::remove_dir_all(&i.model_dir).unwrap();
        command::train(&i, &with_inv(prior_mean), &step).unwrap();
        let card: command::Card = crate::engine::card::read(&i.model_dir).unwrap();
        assert!(card.shape.inject_spur, "{prior_mean:?}");
        assert_eq!(card.shape.learned_prior_mean, learned, "{prior_mean:?}");
    }
    // --inject-covariates off keeps the reference's default split.
    let off = InvaeArgs {
        inject_covariates: Some(command::Inject::Off),
        ..Default::default()
    };
    std::fs::remove_dir_all(&i.model_dir).unwrap();
    command::train(&i, &off, &step).unwrap();
    let card: command::Card = crate::engine::card::read(&i.model_dir).unwrap();
    assert!(!card.shape.inject_spur);
    assert_eq!(card.shape.latent_spur, 1);
}

#[test]
fn default_length_is_bounded_in_steps() {
    use super::command::{default_epochs, MAX_STEPS};
    // small data sets as before: about 3,000 steps, 20..200 epochs
    assert_eq!(default_epochs(1_000, 256), 200);
    assert_eq!(default_epochs(20_000, 256), 38);
    assert_eq!(default_epochs(50_000, 256), 20);
    assert_eq!(default_epochs(76_800, 256), 20);
    // large ones: whole epochs within MAX_STEPS, at least one
    for n in [100_000usize, 200_000, 1_000_000, 5_000_000] {
        let spe = n.div_ceil(256);
        let e = default_epochs(n, 256);
        assert!(
            e >= 1 && (e * spe <= MAX_STEPS || e == 1),
            "{n} cells: {e} epochs of {spe}"
        );
        assert!(
            e == 1 || (e + 1) * spe > MAX_STEPS,
            "{n} cells: {e} epochs of {spe}"
        );
    }
    assert_eq!(default_epochs(1_000_000, 256), 1);
    assert_eq!(default_epochs(100_000, 256), 15);
}
