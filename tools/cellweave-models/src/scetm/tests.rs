//! scETM: one step against the NumPy transcription (`oracle.py`), determinism, resume.

use candle_core::{Device, Tensor};
use cellweave::contract::Csr;
use serde_json::{json, Value};
use std::collections::HashMap;

use super::network::{Minibatch, Network, Shape, NAMES};
use super::train::{default_epochs, parts, Data, ScetmParams, Trainer, MAX_STEPS};
use crate::optim::{Adam, AdamConfig};
use crate::rng::Rng;

const ORACLE: &str = include_str!("oracle.py");

/// Simulated counts: `n` cells x `g` genes, two batches with shifted gene means.
fn counts(n: usize, g: usize, seed: u64) -> (Csr, Vec<u32>) {
    let mut rng = Rng::new(seed);
    let mut dense = vec![0f32; n * g];
    let batch: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
    for i in 0..n {
        let kind = (i / 2) % 3;
        for j in 0..g {
            let rate =
                1.0 + 4.0 * ((j % 3 == kind) as u32 as f64) + batch[i] as f64 * (j % 2) as f64;
            dense[i * g + j] = crate::testing::poisson(&mut rng, rate, 100) as f32;
        }
    }
    (Csr::from_dense(n, g, &dense), batch)
}

fn host(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn arr(t: &Tensor) -> Value {
    json!({"shape": t.dims(), "data": host(t).iter().map(|&v| v as f64).collect::<Vec<_>>()})
}

#[test]
fn one_step_matches_the_numpy_transcription() {
    let Some(py) = cellweave_tests::reference_python(&["numpy"]) else {
        return;
    };
    let (n, g) = (12, 20);
    let shape = Shape {
        n_genes: g,
        hidden: 8,
        topics: 4,
        emb_dim: 5,
        bias_batches: 2,
    };
    let dev = Device::Cpu;
    let mut rng = Rng::new(11);
    let net = Network::init(shape, &mut rng, &dev).unwrap();
    let (x, batch) = counts(n, g, 5);
    let data = Data::new(x, batch.clone(), 2);
    let rows: Vec<usize> = (0..n).collect();
    let xn = Tensor::from_vec(data.normalized_rows(&rows), (n, g), &dev).unwrap();
    let mut mask = vec![0f32; n * shape.hidden];
    rng.dropout_mask(&mut mask, 0.1);
    let mut eps = vec![0f32; n * shape.topics];
    rng.fill_normal(&mut eps);
    let mb = Minibatch {
        x: xn.clone(),
        batch: Some(Tensor::from_vec(batch.clone(), n, &dev).unwrap()),
        mask: Tensor::from_vec(mask, (n, shape.hidden), &dev).unwrap(),
        eps: Tensor::from_vec(eps, (n, shape.topics), &dev).unwrap(),
    };
    let kl_weight = 0.5;
    let lr = 5e-3;
    let named = net.named().unwrap();
    let params: serde_json::Map<String, Value> = NAMES
        .iter()
        .map(|n| (n.to_string(), arr(&named[*n])))
        .collect();
    let fixture = json!({
        "params": params, "x": arr(&xn), "mask": arr(&mb.mask), "eps": arr(&mb.eps),
        "batch": batch, "kl_weight": kl_weight, "lr": lr,
    });
    let want = crate::testing::run_oracle(&py, ORACLE, &fixture);

    // Loss and its parts.
    let f = net.forward_train(&mb, kl_weight).unwrap();
    let close = |got: f64, want: f64, what: &str| {
        assert!(
            (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
            "{what}: cellweave {got}, oracle {want}"
        );
    };
    let scalar = |t: &Tensor| t.to_scalar::<f32>().unwrap() as f64;
    close(scalar(&f.loss), want["loss"].as_f64().unwrap(), "loss");
    close(scalar(&f.nll), want["nll"].as_f64().unwrap(), "nll");
    close(scalar(&f.kl), want["kl"].as_f64().unwrap(), "kl");
    assert!(
        want["kl"].as_f64().unwrap() > 0.01,
        "the KL term is exercised"
    );

    // Gradients (autograd vs finite differences of the transcription).
    let (grads, norm) = net.clipped_grads(&f.loss).unwrap();
    close(norm, want["norm"].as_f64().unwrap(), "gradient norm");
    let mut by_name: HashMap<&str, Vec<f32>> = HashMap::new();
    let mut oracle_zero: HashMap<&str, bool> = HashMap::new();
    for (name, gt) in NAMES.iter().zip(&grads) {
        let got = host(gt);
        let w: Vec<f64> = serde_json::from_value(want["grads"][*name].clone()).unwrap();
        let scale = w.iter().fold(0f64, |m, v| m.max(v.abs()));
        // BatchNorm cancels a shift of a unit that is active in every cell: the first
        // layer's bias may have no gradient at all.
        assert!(
            scale > 0.0 || *name == "q_delta.0.bias",
            "{name}: the oracle's gradient is zero"
        );
        // Where the oracle's gradient is exactly zero, float32 autograd leaves the noise of
        // the cancelled sum over the cells (about 1e-6 here; every other gradient is of
        // order 0.1-0.7 and checked to 1e-6 + 2e-3 of its scale).
        let floor = if scale == 0.0 { 1e-5 } else { 1e-6 };
        for (i, (&a, &b)) in got.iter().zip(&w).enumerate() {
            assert!(
                (a as f64 - b).abs() <= floor + 2e-3 * scale,
                "{name}[{i}]: gradient {a} vs oracle {b} (scale {scale})"
            );
        }
        oracle_zero.insert(name, scale == 0.0);
        by_name.insert(name, got);
    }

    // The step: Adam's first update of the (clipped) gradients.
    let mut adam = Adam::new(
        net.vars.clone(),
        AdamConfig {
            lr,
            ..Default::default()
        },
    )
    .unwrap();
    adam.step_tensors(&grads).unwrap();
    for (name, var) in NAMES.iter().zip(&net.vars) {
        let got = host(var.as_tensor());
        let w: Vec<f64> = serde_json::from_value(want["stepped"][*name].clone()).unwrap();
        if oracle_zero[name] {
            // Adam's first step moves by lr x sign(noise) here and not at all in the oracle.
            continue;
        }
        let g = &by_name[name];
        let scale = g.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (i, (&a, &b)) in got.iter().zip(&w).enumerate() {
            // Adam's first step moves by lr x sign(g): compare where the sign is clear.
            if g[i].abs() > 1e-3 * scale && g[i].abs() > 1e-6 {
                assert!(
                    (a as f64 - b).abs() <= 1e-5,
                    "{name}[{i}]: stepped {a} vs oracle {b}"
                );
            }
        }
    }
}

fn small_params(epochs: usize) -> ScetmParams {
    ScetmParams {
        epochs,
        batch_size: 20,
        topics: 5,
        emb_dim: 8,
        hidden: 16,
        seed: 3,
        ..Default::default()
    }
}

fn weights(t: &Trainer) -> Vec<Vec<f32>> {
    let named = t.net.named().unwrap();
    let mut keys: Vec<&String> = named.keys().collect();
    keys.sort();
    keys.iter().map(|k| host(&named[*k])).collect()
}

#[test]
fn seeded_runs_repeat_and_a_resumed_run_equals_an_uninterrupted_one() {
    let (x, batch) = counts(50, 30, 9);
    let data = Data::new(x, batch, 2);
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("m");
    let run = |resume: bool, stop: Option<usize>| {
        let mut t = Trainer::new(
            &data,
            small_params(6),
            "fp".into(),
            &md,
            resume,
            Device::Cpu,
        )
        .unwrap();
        let complete = t.run(2, stop).unwrap();
        (complete, weights(&t), t.progress.log.clone())
    };
    let (done, w1, log1) = run(false, None);
    assert!(done);
    assert_eq!(log1.len(), 6);
    assert!(
        log1[5].nll < log1[0].nll,
        "training lowers the NLL: {log1:?}"
    );
    let (_, w2, log2) = run(false, None);
    assert_eq!(w1, w2, "same seed, same weights");
    assert_eq!(
        log1.iter().map(|r| r.loss).collect::<Vec<_>>(),
        log2.iter().map(|r| r.loss).collect::<Vec<_>>()
    );
    let (done, _, _) = run(false, Some(4));
    assert!(!done);
    let (done, w3, log3) = run(true, None);
    assert!(done);
    assert_eq!(log3.len(), 6);
    assert_eq!(w1, w3, "resumed after epoch 4 == uninterrupted");
}

#[test]
fn minibatch_parts_and_kl_warmup() {
    assert_eq!(parts(3000, 2000), vec![0, 1500, 3000]);
    assert_eq!(parts(100, 2000), vec![0, 100]);
    assert_eq!(parts(5000, 2000), vec![0, 1666, 3333, 5000]);
    let (x, batch) = counts(40, 10, 1);
    let data = Data::new(x, batch, 2);
    let dir = tempfile::tempdir().unwrap();
    let t = Trainer::new(
        &data,
        small_params(30),
        "fp".into(),
        &dir.path().join("m"),
        false,
        Device::Cpu,
    )
    .unwrap();
    // 40 cells, minibatch 20: 2 steps an epoch; full weight after 10 epochs = 20 steps.
    assert_eq!(t.kl_weight(0), 0.0);
    assert!((t.kl_weight(10) - 0.5e-7).abs() < 1e-20);
    assert_eq!(t.kl_weight(20), 1e-7);
    assert_eq!(t.kl_weight(50), 1e-7);
    assert!((t.lr(1000) - 5e-3 * (-0.06f64).exp()).abs() < 1e-15);
}

#[test]
fn default_length_is_a_step_budget() {
    // Small data: one minibatch an epoch, so 6,000 epochs (scETM's 800 would be 800 steps).
    assert_eq!(default_epochs(499, 2000), 6000);
    assert_eq!(default_epochs(2999, 2000), 6000);
    // 3,000 cells: two minibatches an epoch.
    assert_eq!(default_epochs(3000, 2000), 3000);
    // 100,000 cells: 50 minibatches; 800 epochs would be 40,000 steps.
    assert_eq!(default_epochs(100_000, 2000), 120);
    // A million cells: 500 minibatches, 12 epochs; never fewer than one.
    assert_eq!(default_epochs(1_000_000, 2000), 12);
    assert_eq!(default_epochs(100_000_000, 2000), 1);
    for n in [499, 1556, 3000, 7001, 100_000, 1_000_000] {
        let spe = parts(n, 2000).len() - 1;
        let steps = default_epochs(n, 2000) * spe;
        assert!(
            (MAX_STEPS..MAX_STEPS + spe).contains(&steps),
            "{n} cells: {steps} steps"
        );
    }
}

#[test]
fn fused_nll_equals_the_candle_ops() {
    // Topic proportions, a topic-gene matrix of spread scales, a batch bias, normalized counts
    // with a cell without counts.
    let (n, k, g) = (37, 5, 23);
    let mut rng = Rng::new(4);
    let normal = |rng: &mut Rng, len: usize| {
        let mut v = vec![0f32; len];
        rng.fill_normal(&mut v);
        v
    };
    let theta = super::train::softmax_rows(&normal(&mut rng, n * k), k);
    let mut beta = normal(&mut rng, k * g);
    beta.iter_mut()
        .enumerate()
        .for_each(|(i, v)| *v *= 1.0 + (i % 7) as f32);
    let lambda = normal(&mut rng, 3 * g);
    let (x, _) = counts(n, g, 8);
    let mut x = x.to_dense();
    x[..g].fill(0.0);
    let batch: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
    let data = Data::new(Csr::from_dense(n, g, &x), batch.clone(), 3);
    let rows: Vec<usize> = (0..n).collect();
    let dev = Device::Cpu;
    let x = Tensor::from_vec(data.normalized_rows(&rows), (n, g), &dev).unwrap();
    let batch = Tensor::from_vec(batch, n, &dev).unwrap();
    let theta = candle_core::Var::from_vec(theta, (n, k), &dev).unwrap();
    let beta = candle_core::Var::from_vec(beta, (k, g), &dev).unwrap();
    let lambda = candle_core::Var::from_vec(lambda, (3, g), &dev).unwrap();
    type Nll = fn(&Tensor, &Tensor, super::nll::Bias, &Tensor) -> candle_core::Result<Tensor>;
    let run = |f: Nll, with_bias: bool| {
        let bias = with_bias.then_some((lambda.as_tensor(), &batch));
        let s = (f(theta.as_tensor(), beta.as_tensor(), bias, &x).unwrap() * 0.5).unwrap();
        let grads = s.backward().unwrap();
        let grad = |v: &candle_core::Var| grads.get(v.as_tensor()).map(host);
        (
            s.to_scalar::<f32>().unwrap(),
            [grad(&theta), grad(&beta), grad(&lambda)],
        )
    };
    for with_bias in [true, false] {
        let (v_fused, g_fused) = run(super::nll::fused, with_bias);
        let (v_ops, g_ops) = run(super::nll::ops, with_bias);
        assert!(
            (v_fused - v_ops).abs() <= 1e-5 * v_ops.abs(),
            "value: fused {v_fused}, ops {v_ops}"
        );
        assert!(v_ops > 1.0, "the term is exercised: {v_ops}");
        for (what, (a, b)) in ["theta", "beta", "lambda"]
            .iter()
            .zip(g_fused.iter().zip(&g_ops))
        {
            let expected = *what != "lambda" || with_bias;
            assert_eq!(a.is_some(), expected, "{what}: fused gradient");
            assert_eq!(b.is_some(), expected, "{what}: ops gradient");
            if let (Some(a), Some(b)) = (a, b) {
                let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
                assert!(scale > 0.0, "{what}: the gradient is exercised");
                for (i, (p, q)) in a.iter().zip(b).enumerate() {
                    assert!(
                        (p - q).abs() <= 1e-5 * scale,
                        "{what}[{i}]: fused {p}, ops {q} (scale {scale})"
                    );
                }
            }
        }
    }
}

#[test]
fn corrected_values_are_read_as_log1p_weights_or_pseudo_counts() {
    use super::command::{corrected_weights, reading, PSEUDO_LIBRARY};
    use super::train::CorrectedAs;
    use std::path::Path;
    let ln3 = 3f32.ln();
    // cell 0: log1p values 0, ln 3, 2 ln 3 and a negative value; cell 1: nothing above 0
    let x = Csr::from_dense(2, 4, &[0.0, ln3, 2.0 * ln3, -1.5, -0.2, 0.0, 0.0, 0.0]);
    let p = Path::new("c.arrow");
    let dense = |m: &Csr| {
        let mut d = vec![0f64; 8];
        for r in 0..2 {
            let (lo, hi) = (m.indptr[r] as usize, m.indptr[r + 1] as usize);
            for (j, v) in m.indices[lo..hi].iter().zip(&m.data[lo..hi]) {
                d[r * 4 + *j as usize] = *v as f64;
            }
        }
        d
    };
    let close = |a: &[f64], b: &[f64]| {
        for (u, v) in a.iter().zip(b) {
            assert!((u - v).abs() <= 1e-3 * v.abs().max(1.0), "{a:?} vs {b:?}");
        }
    };
    // log1p: shares 1/3 and 2/3 of ln 3 + 2 ln 3; expm1: 2 and 8 of 10
    let l = PSEUDO_LIBRARY;
    let want_log = [0.0, l / 3.0, 2.0 * l / 3.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    let want_exp = [0.0, 0.2 * l, 0.8 * l, 0.0, 0.0, 0.0, 0.0, 0.0];
    close(
        &dense(&corrected_weights(&x, p, CorrectedAs::Log1p).unwrap()),
        &want_log,
    );
    close(
        &dense(&corrected_weights(&x, p, CorrectedAs::Expm1).unwrap()),
        &want_exp,
    );
    // a value that is not finite is refused, naming the file and the field
    let bad = Csr::from_dense(1, 2, &[f32::NAN, 1.0]);
    let err = corrected_weights(&bad, p, CorrectedAs::Log1p)
        .unwrap_err()
        .to_string();
    assert!(err.contains("c.arrow") && err.contains("values"), "{err}");
    // a card without the choice predates it: pseudo-counts
    let mut params = ScetmParams::default();
    assert_eq!(reading(&params), CorrectedAs::Expm1);
    params.corrected_as = Some(CorrectedAs::Log1p);
    assert_eq!(reading(&params), CorrectedAs::Log1p);
}
