//! deepMNN: the loss and gradients against the NumPy transcription (`oracle.py`), the
//! learning-rate schedule, determinism, resume, the plateau stop.

use candle_core::{Device, Tensor};
use serde_json::{json, Value};

use super::autoencoder::{Autoencoder, NAMES};
use super::network::PairSpace;
use super::network::{Network, Shape};
use super::train::{Cells, Data, DeepmnnParams, PairInput, PairSpaceKind, Trainer};
use crate::rng::Rng;
use cellweave::integrate::deepmnn::Scaling;

const ORACLE: &str = include_str!("oracle.py");

fn host(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn arr(t: &Tensor) -> Value {
    json!({"shape": t.dims(), "data": host(t).iter().map(|&v| v as f64).collect::<Vec<_>>()})
}

/// `n` cells x `g` genes in two batches (batch 1 shifted), pairs joining cell `2i` (batch
/// 0) to cell `2i + 1` (batch 1), and `k` orthonormal-ish axes.
fn data(n: usize, g: usize, k: usize, seed: u64) -> Data<'static> {
    let mut rng = Rng::new(seed);
    let mut x = vec![0f32; n * g];
    rng.fill_normal(&mut x);
    for i in 0..n {
        for j in 0..g {
            x[i * g + j] += ((i / 2) % 3 == j % 3) as u32 as f32 * 2.0 + (i % 2) as f32 * 0.5;
        }
    }
    let pairs = (0..n / 2)
        .map(|i| (2 * i as u32, 2 * i as u32 + 1))
        .collect();
    let mut pcs = vec![0f32; g * k];
    rng.fill_normal(&mut pcs);
    pcs.iter_mut().for_each(|v| *v /= (g as f32).sqrt());
    Data {
        x: Cells::Dense(x),
        g,
        pairs,
        pair_input: PairInput::Axes { pcs, k },
    }
}

fn close(got: f64, want: f64, tol: f64, what: &str) {
    assert!(
        (got - want).abs() <= tol * (1.0 + want.abs()),
        "{what}: cellweave {got}, oracle {want}"
    );
}

/// Gradients of `loss` for the variables `vars` (by name) at the indices `check` against
/// the oracle's `want[key]`: within 2e-3 of 1 + |oracle|.
fn check_grads(
    loss: &Tensor,
    vars: &std::collections::HashMap<String, candle_core::Var>,
    check: &serde_json::Map<String, Value>,
    want: &Value,
) {
    let grads = loss.backward().unwrap();
    for (name, idx) in check {
        let got = host(grads.get(vars[name].as_tensor()).unwrap());
        for (n, i) in idx.as_array().unwrap().iter().enumerate() {
            close(
                got[i.as_u64().unwrap() as usize] as f64,
                want[name][n].as_f64().unwrap(),
                2e-3,
                &format!("d loss / d {name}[{i}]"),
            );
        }
    }
}

fn indices(v: &[(&str, Vec<usize>)]) -> serde_json::Map<String, Value> {
    v.iter().map(|(n, i)| (n.to_string(), json!(i))).collect()
}

/// The loss of one minibatch and its gradients against `oracle.py`, in deepMNN's pair
/// space (principal axes) or, with `code` > 0, the batch-corrected scETM's (a frozen
/// autoencoder of `code` units read through the scaling), whose autoencoder's
/// pre-training loss and gradients are checked too.
fn loss_matches_the_transcription(code: usize, alpha: f64, beta: f64) {
    let Some(py) = cellweave_tests::reference_python(&["numpy"]) else {
        return;
    };
    let (g, k, m) = (7, 3, 5);
    let shape = Shape {
        n_genes: g,
        blocks: 2,
        pair_code: code,
    };
    let dev = Device::Cpu;
    let mut rng = Rng::new(3);
    let mut net = Network::init(shape, &mut rng, &dev).unwrap();
    // PReLU slopes other than the initial 0.25, BN affine away from 1/0
    for (i, v) in net.vars.iter().enumerate() {
        if v.dims() == [1] {
            v.set(&Tensor::new(&[0.1f32 + 0.05 * i as f32], &dev).unwrap())
                .unwrap();
        }
    }
    let d = data(2 * m, g, k, 9);
    let rows: Vec<usize> = (0..m).collect();
    let mut xs = Vec::new();
    for side in 0..2 {
        for &p in &rows {
            let c = if side == 0 {
                d.pairs[p].0
            } else {
                d.pairs[p].1
            } as usize;
            xs.extend_from_slice(&d.dense()[c * g..(c + 1) * g]);
        }
    }
    let x = Tensor::from_vec(xs, (2 * m, g), &dev).unwrap();
    let PairInput::Axes { pcs, .. } = &d.pair_input else {
        unreachable!()
    };
    let pcs = Tensor::from_vec(pcs.clone(), (g, k), &dev).unwrap();
    let mut fixture = json!({"x": arr(&x), "alpha": alpha, "beta": beta, "blocks": 2});
    let space = if code == 0 {
        fixture["pcs"] = arr(&pcs);
        PairSpace::Axes(pcs)
    } else {
        // an autoencoder with biases that keep most codes active, and a scaling far from
        // the identity
        let ae = Autoencoder::init(g, code, &mut rng, &dev).unwrap();
        ae.vars[1]
            .set(&Tensor::new(&[0.3f32, 0.5, 0.2, 0.4][..code], &dev).unwrap())
            .unwrap();
        let scaling = Scaling {
            mean: (0..g).map(|j| 0.5 + 0.1 * j as f32).collect(),
            sd: (0..g).map(|j| 0.7 + 0.2 * j as f32).collect(),
        };
        let t = |v: &[f32]| Tensor::from_vec(v.to_vec(), v.len(), &dev).unwrap();
        fixture["encoder"] = json!({
            "w": arr(ae.vars[0].as_tensor()), "b": arr(ae.vars[1].as_tensor()),
            "sd": arr(&t(&scaling.sd)), "mean": arr(&t(&scaling.mean)),
        });
        // the autoencoder's pre-training loss on non-negative (log1p-like) values
        let xa: Vec<f32> = d.dense()[..6 * g].iter().map(|v| v.abs()).collect();
        let xa = Tensor::from_vec(xa, (6, g), &dev).unwrap();
        let check = indices(&[
            (NAMES[0], vec![0, 9, 20]),
            (NAMES[1], vec![1]),
            (NAMES[2], vec![3, 17]),
            (NAMES[3], vec![2]),
        ]);
        let params: serde_json::Map<String, Value> = ae
            .named()
            .unwrap()
            .iter()
            .map(|(n, t)| (n.clone(), arr(t)))
            .collect();
        fixture["ae"] = json!({"x": arr(&xa), "params": params, "check": check});
        let (w_t, b) = ae.folded(&scaling, &dev).unwrap();
        net.autoencoder = Some(ae);
        PairSpace::Codes { w_t, b }
    };
    let named = net.named().unwrap();
    let params: serde_json::Map<String, Value> = named
        .iter()
        .filter(|(n, _)| n.starts_with("model.") && !n.contains("running"))
        .map(|(n, t)| (n.clone(), arr(t)))
        .collect();
    let check = indices(&[
        ("model.0.block.0.weight", vec![0, 5, 17]),
        ("model.0.block.2.weight", vec![0]),
        ("model.1.block.3.weight", vec![1, 30]),
        ("model.1.block.4.bias", vec![2]),
        ("model.1.block.5.weight", vec![0]),
    ]);
    fixture["params"] = json!(params);
    fixture["check"] = json!(check);
    let want = crate::testing::run_oracle(&py, ORACLE, &fixture);

    let l = net.loss(&x, &space, alpha, beta).unwrap();
    let scalar = |t: &Tensor| t.to_scalar::<f32>().unwrap() as f64;
    close(
        scalar(&l.loss),
        want["loss"].as_f64().unwrap(),
        1e-5,
        "loss",
    );
    close(
        scalar(&l.pair),
        want["pair"].as_f64().unwrap(),
        1e-5,
        "pair term",
    );
    close(
        scalar(&l.identity),
        want["identity"].as_f64().unwrap(),
        1e-5,
        "identity term",
    );
    assert!(scalar(&l.pair) > 0.0, "the pair term is not empty");
    // the trained variables by name (the network's; the autoencoder is frozen)
    let names: Vec<String> = (0..2)
        .flat_map(|b| {
            [
                "0.weight", "0.bias", "1.weight", "1.bias", "2.weight", "3.weight", "3.bias",
                "4.weight", "4.bias", "5.weight",
            ]
            .map(|s| format!("model.{b}.block.{s}"))
        })
        .collect();
    let vars = names.into_iter().zip(net.vars.iter().cloned()).collect();
    check_grads(&l.loss, &vars, &check, &want["grads"]);
    if let Some(ae) = &net.autoencoder {
        let xa = Tensor::from_vec(
            d.dense()[..6 * g]
                .iter()
                .map(|v| v.abs())
                .collect::<Vec<f32>>(),
            (6, g),
            &dev,
        )
        .unwrap();
        let mse = ae.mse(&xa).unwrap();
        close(
            scalar(&mse),
            want["ae_mse"].as_f64().unwrap(),
            1e-5,
            "autoencoder mse",
        );
        let vars = NAMES
            .iter()
            .map(|n| n.to_string())
            .zip(ae.vars.iter().cloned())
            .collect();
        let check = fixture["ae"]["check"].as_object().unwrap();
        check_grads(&mse, &vars, check, &want["ae_grads"]);
        // the frozen autoencoder gets no gradient from deepMNN's loss: its codes are read
        // through detached, folded weights
        let grads = l.loss.backward().unwrap();
        assert!(ae.vars.iter().all(|v| grads.get(v.as_tensor()).is_none()));
    }
}

#[test]
fn loss_and_gradients_match_the_numpy_transcription() {
    // beta larger than deepMNN's 0.001 so that the identity term shows in the gradients
    loss_matches_the_transcription(0, 1.0, 0.3);
}

#[test]
fn autoencoder_pair_loss_and_gradients_match_the_numpy_transcription() {
    // the batch-corrected scETM's weights: 0.1 L_batch + 0.99 L_rec
    let (alpha, beta) = PairSpaceKind::Autoencoder.weights();
    assert_eq!((alpha, beta), (0.1, 0.99));
    loss_matches_the_transcription(4, alpha, beta);
}

#[test]
fn learning_rate_steps_as_deepmnn() {
    let p = DeepmnnParams::default();
    assert_eq!(p.lr_at(0), 0.1);
    assert_eq!(p.lr_at(19), 0.1);
    assert!((p.lr_at(20) - 0.08).abs() < 1e-12);
    assert!((p.lr_at(45) - 0.1 * 0.64).abs() < 1e-12);
    let tiny = DeepmnnParams { lr: 1e-6, ..p };
    assert_eq!(tiny.lr_at(199), 1e-6, "never below min_lr");
}

fn params(epochs: usize) -> DeepmnnParams {
    DeepmnnParams {
        epochs,
        batch_size: 7,
        lr: 1e-2,
        seed: 4,
        patience: 0,
        ..Default::default()
    }
}

fn weights(t: &Trainer) -> Vec<Vec<f32>> {
    t.net.vars.iter().map(|v| host(v.as_tensor())).collect()
}

#[test]
fn same_seed_same_weights_and_resume_equals_an_uninterrupted_run() {
    let d = data(40, 6, 3, 1);
    let dir = tempfile::tempdir().unwrap();
    let run = |sub: &str, stop: Option<usize>, resume: bool| {
        let mut t = Trainer::new(
            &d,
            params(4),
            "fp".into(),
            &dir.path().join(sub),
            resume,
            Device::Cpu,
        )
        .unwrap();
        let done = t.run(1, stop).unwrap();
        (done, weights(&t), t.progress.clone())
    };
    let (_, a, pa) = run("a", None, false);
    let (_, b, _) = run("b", None, false);
    assert_eq!(a, b, "same seed, same weights");
    assert!(
        pa.log[3].loss < pa.log[0].loss,
        "the loss falls: {:?}",
        pa.log
    );
    let (done, _, _) = run("c", Some(2), false);
    assert!(!done);
    let (done, c, pc) = run("c", None, true);
    assert!(done);
    assert_eq!(c, a, "resumed run equals the uninterrupted one");
    // the log of the first epochs comes back from the checkpoint's JSON (to the last bit
    // or one below it)
    assert_eq!(pc.log.len(), pa.log.len());
    for (x, y) in pc.log.iter().zip(&pa.log) {
        assert_eq!((x.epoch, x.steps, x.lr), (y.epoch, y.steps, y.lr));
        for (u, v) in [(x.loss, y.loss), (x.pair, y.pair), (x.identity, y.identity)] {
            assert!((u - v).abs() <= 1e-12 * v.abs(), "{x:?} vs {y:?}");
        }
    }
    let other = Trainer::new(
        &d,
        DeepmnnParams {
            seed: 5,
            ..params(4)
        },
        "fp".into(),
        &dir.path().join("d"),
        false,
        Device::Cpu,
    )
    .map(|mut t| {
        t.run(0, None).unwrap();
        weights(&t)
    })
    .unwrap();
    assert_ne!(other, a, "another seed, other weights");
}

#[test]
fn plateau_rule_stops_the_run() {
    let d = data(20, 4, 2, 2);
    let dir = tempfile::tempdir().unwrap();
    // an improvement threshold no epoch after the first can reach: stop `patience` epochs
    // after the first
    let p = DeepmnnParams {
        patience: 3,
        min_improvement: 1e9,
        ..params(50)
    };
    let mut t = Trainer::new(&d, p, "fp".into(), dir.path(), false, Device::Cpu).unwrap();
    assert!(t.run(0, None).unwrap());
    assert_eq!(t.progress.epoch, 4);
    assert!(t.progress.stopped);
}

/// `d` with the batch-corrected scETM's pair input: an autoencoder trained on the
/// non-negative values `|x|` through the scaling fitted to them.
fn with_autoencoder(mut d: Data<'static>) -> Data<'static> {
    let log1p: Vec<f32> = d.dense().iter().map(|v| v.abs()).collect();
    let scaling = Scaling::fit(&log1p, d.g);
    let mut x = log1p.clone();
    scaling.apply(&mut x);
    d.x = Cells::Dense(x);
    d.pair_input = PairInput::Autoencoder { log1p, scaling };
    d
}

fn ae_params(epochs: usize) -> DeepmnnParams {
    let (pair_weight, identity_weight) = PairSpaceKind::Autoencoder.weights();
    DeepmnnParams {
        pair_space: PairSpaceKind::Autoencoder,
        pair_weight,
        identity_weight,
        autoencoder: Some(super::autoencoder::AeParams {
            latent: 4,
            epochs: 30,
            lr: 1e-2,
            batch_size: 16,
        }),
        ..params(epochs)
    }
}

fn ae_weights(t: &Trainer) -> Vec<Vec<f32>> {
    let ae = t.net.autoencoder.as_ref().expect("an autoencoder");
    ae.vars.iter().map(|v| host(v.as_tensor())).collect()
}

#[test]
fn autoencoder_pair_space_is_deterministic_and_resumes_exactly() {
    let d = with_autoencoder(data(40, 6, 3, 1));
    let dir = tempfile::tempdir().unwrap();
    let run = |sub: &str, p: DeepmnnParams, stop: Option<usize>, resume: bool| {
        let mut t = Trainer::new(
            &d,
            p,
            "fp".into(),
            &dir.path().join(sub),
            resume,
            Device::Cpu,
        )
        .unwrap();
        let done = t.run(1, stop).unwrap();
        (done, weights(&t), ae_weights(&t), t.progress.clone())
    };
    let (_, a, ae_a, pa) = run("a", ae_params(4), None, false);
    let (_, b, ae_b, _) = run("b", ae_params(4), None, false);
    assert_eq!((&a, &ae_a), (&b, &ae_b), "same seed, same weights");
    let mse = &pa.autoencoder_mse;
    assert_eq!(mse.len(), 30);
    assert!(mse[29] < 0.5 * mse[0], "the autoencoder learns: {mse:?}");
    assert!(
        pa.log[3].loss < pa.log[0].loss,
        "the loss falls: {:?}",
        pa.log
    );
    // the frozen autoencoder is not trained with the network
    let fresh = Trainer::new(
        &d,
        ae_params(4),
        "fp".into(),
        &dir.path().join("f"),
        false,
        Device::Cpu,
    )
    .unwrap();
    assert_eq!(
        ae_weights(&fresh),
        ae_a,
        "the autoencoder stays as pre-trained"
    );
    // a run killed after epoch 2 and resumed: the autoencoder comes back from the
    // checkpoint, and the run ends as the uninterrupted one
    let (done, _, _, _) = run("c", ae_params(4), Some(2), false);
    assert!(!done);
    let (done, c, ae_c, pc) = run("c", ae_params(4), None, true);
    assert!(done);
    assert_eq!(
        (&c, &ae_c),
        (&a, &ae_a),
        "resumed run equals the uninterrupted one"
    );
    // (from the checkpoint's JSON: to the last bit or one below it)
    for (u, v) in pc.autoencoder_mse.iter().zip(&pa.autoencoder_mse) {
        assert!((u - v).abs() <= 1e-12 * v.abs(), "{u} vs {v}");
    }
    assert_eq!(pc.autoencoder_mse.len(), 30);
    // deepMNN's own pair space on the same cells and pairs gives other weights
    let axes = with_autoencoder(data(40, 6, 3, 1)).into_axes();
    let mut t = Trainer::new(
        &axes,
        params(4),
        "fp".into(),
        &dir.path().join("p"),
        false,
        Device::Cpu,
    )
    .unwrap();
    t.run(0, None).unwrap();
    assert_ne!(weights(&t), a);
    let (_, other, ae_other, _) = run(
        "d",
        DeepmnnParams {
            seed: 5,
            ..ae_params(4)
        },
        None,
        false,
    );
    assert_ne!((other, ae_other), (a, ae_a), "another seed, other weights");
}

impl Data<'_> {
    /// The dense scaled values of a test's cells.
    fn dense(&self) -> &[f32] {
        match &self.x {
            Cells::Dense(x) => x,
            Cells::Rows { .. } => panic!("test data are dense"),
        }
    }
    /// The same cells and pairs with deepMNN's pair space (3 random axes).
    fn into_axes(self) -> Self {
        let mut pcs = vec![0f32; self.g * 3];
        Rng::new(8).fill_normal(&mut pcs);
        Data {
            pair_input: PairInput::Axes { pcs, k: 3 },
            ..self
        }
    }
}

#[test]
fn automatic_epochs_are_bounded_in_steps() {
    use super::train::{default_epochs, MAX_STEPS};
    let bs = DeepmnnParams::default().batch_size;
    // Up to 30 minibatches of 1,024 pairs: deepMNN's 200 epochs, as before.
    assert_eq!(default_epochs(1, bs), 200);
    assert_eq!(default_epochs(2_528, bs), 200);
    assert_eq!(default_epochs(30 * 1024, bs), 200);
    // From 30,721 pairs (31 minibatches): the whole epochs that fit in 6,000 steps.
    assert_eq!(default_epochs(30 * 1024 + 1, bs), 193);
    assert_eq!(default_epochs(1_000_000, bs), 6);
    assert_eq!(default_epochs(20_000_000, bs), 1);
    for n in [30_721usize, 100_000, 1_000_000, 5_000_000] {
        let spe = n.div_ceil(bs);
        let e = default_epochs(n, bs);
        assert!(e * spe <= MAX_STEPS && (e + 1) * spe > MAX_STEPS, "{n}");
    }
    // Counted in the run's own minibatches.
    assert_eq!(default_epochs(30_000, 100), 20);
}
