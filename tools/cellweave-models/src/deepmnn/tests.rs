//! deepMNN: the loss and gradients against the NumPy transcription (`oracle.py`), the
//! learning-rate schedule, determinism, resume, the plateau stop.

use candle_core::{Device, Tensor};
use serde_json::{json, Value};

use super::network::{Network, Shape};
use super::train::{Data, DeepmnnParams, Trainer};
use crate::rng::Rng;

const ORACLE: &str = include_str!("oracle.py");

fn host(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn arr(t: &Tensor) -> Value {
    json!({"shape": t.dims(), "data": host(t).iter().map(|&v| v as f64).collect::<Vec<_>>()})
}

/// `n` cells x `g` genes in two batches (batch 1 shifted), pairs joining cell `2i` (batch
/// 0) to cell `2i + 1` (batch 1), and `k` orthonormal-ish axes.
fn data(n: usize, g: usize, k: usize, seed: u64) -> Data {
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
        x,
        g,
        pairs,
        pcs,
        k,
    }
}

#[test]
fn loss_and_gradients_match_the_numpy_transcription() {
    let Some(py) = cellweave_tests::reference_python(&["numpy"]) else {
        return;
    };
    let (g, k, m) = (7, 3, 5);
    let shape = Shape {
        n_genes: g,
        blocks: 2,
    };
    let dev = Device::Cpu;
    let mut rng = Rng::new(3);
    let net = Network::init(shape, &mut rng, &dev).unwrap();
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
            xs.extend_from_slice(&d.x[c * g..(c + 1) * g]);
        }
    }
    let x = Tensor::from_vec(xs, (2 * m, g), &dev).unwrap();
    let pcs = Tensor::from_vec(d.pcs.clone(), (g, k), &dev).unwrap();
    let beta = 0.3; // larger than deepMNN's 0.001 so the identity term shows in the gradients
    let named = net.named().unwrap();
    let params: serde_json::Map<String, Value> = named
        .iter()
        .filter(|(n, _)| !n.contains("running"))
        .map(|(n, t)| (n.clone(), arr(t)))
        .collect();
    let check: serde_json::Map<String, Value> = [
        ("model.0.block.0.weight", vec![0, 5, 17]),
        ("model.0.block.2.weight", vec![0]),
        ("model.1.block.3.weight", vec![1, 30]),
        ("model.1.block.4.bias", vec![2]),
        ("model.1.block.5.weight", vec![0]),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), json!(v)))
    .collect();
    let fixture = json!({
        "params": params, "x": arr(&x), "pcs": arr(&pcs), "beta": beta, "blocks": 2,
        "check": check,
    });
    let want = crate::testing::run_oracle(&py, ORACLE, &fixture);

    let l = net.loss(&x, &pcs, beta).unwrap();
    let close = |got: f64, want: f64, tol: f64, what: &str| {
        assert!(
            (got - want).abs() <= tol * (1.0 + want.abs()),
            "{what}: cellweave {got}, oracle {want}"
        );
    };
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
    let grads = l.loss.backward().unwrap();
    let by_name: std::collections::HashMap<String, &candle_core::Var> = named
        .keys()
        .filter_map(|n| {
            let names: Vec<String> = (0..2)
                .flat_map(|b| {
                    [
                        "0.weight", "0.bias", "1.weight", "1.bias", "2.weight", "3.weight",
                        "3.bias", "4.weight", "4.bias", "5.weight",
                    ]
                    .map(|s| format!("model.{b}.block.{s}"))
                })
                .collect();
            names
                .iter()
                .position(|x| x == n)
                .map(|i| (n.clone(), &net.vars[i]))
        })
        .collect();
    for (name, idx) in check {
        let got = host(grads.get(by_name[&name].as_tensor()).unwrap());
        for (n, i) in idx.as_array().unwrap().iter().enumerate() {
            let w = want["grads"][&name][n].as_f64().unwrap();
            close(
                got[i.as_u64().unwrap() as usize] as f64,
                w,
                2e-3,
                &format!("d loss / d {name}[{i}]"),
            );
        }
    }
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
