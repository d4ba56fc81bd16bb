//! Faithfulness of inVAE's loss: the training loss of one minibatch from given weights,
//! dropout masks and noise equals a NumPy transcription of the reference package's
//! `FinVAEmodule.elbo` (PyPI `inVAE` 0.1.0; `tests/oracles/invae_elbo.py`), in float64,
//! for the reference's default encoder (one hidden layer) and cellweave's (two), with and
//! without covariates, with the spurious covariates injected into the decoder or not, and
//! with zero prior means or learned ones (`fix_mean_prior=False`). The oracle runs on the reference Python stack (numpy, scipy); the
//! test fails under CI=true without it.

use candle_core::{Device, Tensor};
use cellweave_models::invae::net::{Batch, Net, Noise, Shape};
use cellweave_models::rng::Rng;
use cellweave_tests::reference_python;
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::process::Command;

fn nested(t: &Tensor) -> Value {
    match t.dims().len() {
        1 => json!(t.to_vec1::<f32>().unwrap()),
        2 => json!(t.to_vec2::<f32>().unwrap()),
        n => panic!("{n}-d tensor"),
    }
}

/// Counts with a long tail (up to a few hundred) and many zeros.
fn counts(n: usize, g: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n * g)
        .map(|_| {
            let u = rng.f64();
            if u < 0.5 {
                0.0
            } else {
                (((u - 0.5) * 12.0).exp() - 1.0).floor() as f32
            }
        })
        .collect()
}

fn onehot(n: usize, levels: usize, rng: &mut Rng) -> Vec<f32> {
    let mut v = vec![0f32; n * levels];
    for i in 0..n {
        v[i * levels + rng.below(levels)] = 1.0;
    }
    v
}

/// One minibatch's loss against the transcription; `inject`: the spurious one-hots go to the
/// decoder (the reference's `inject_covar_in_latent=True`, no z_spur).
/// `learned_mean`: the priors' means are learned too (`fix_mean_prior=False`).
fn case(
    python: &PathBuf,
    encoder_layers: usize,
    covariates: bool,
    beta: f64,
    inject: bool,
    learned_mean: bool,
) {
    let (n, g) = (48, 60);
    let shape = Shape {
        n_genes: g,
        inv_dim: if covariates { 3 } else { 0 },
        spur_dim: if covariates { 2 } else { 0 },
        latent_inv: 9,
        latent_spur: if inject { 0 } else { 1 },
        hidden: 128,
        encoder_layers,
        dropout: 0.1,
        inject_spur: inject,
        learned_prior_mean: learned_mean,
    };
    let dev = Device::Cpu;
    let mut rng = Rng::new(11 + encoder_layers as u64);
    let net = Net::init(&shape, &mut rng, &dev).unwrap();
    let x = counts(n, g, &mut rng);
    let (inv, spur) = if covariates {
        (Some(onehot(n, 3, &mut rng)), Some(onehot(n, 2, &mut rng)))
    } else {
        (None, None)
    };
    let batch = Batch::new(x.clone(), n, g, inv.clone(), spur.clone(), &dev).unwrap();
    let noise = Noise::draw(&shape, n, &mut rng, &dev).unwrap();
    let loss = net.loss(&batch, &noise, beta).unwrap();
    let ours = loss.loss.to_scalar::<f32>().unwrap() as f64;

    let rows = |v: &[f32], w: usize| -> Value {
        json!(v.chunks(w).map(|r| r.to_vec()).collect::<Vec<_>>())
    };
    let mut params = Map::new();
    for (k, t) in net.tensors().unwrap() {
        params.insert(k, nested(&t));
    }
    let masks: Value = match &noise.masks {
        Some(m) => {
            let mut o = Map::new();
            for ((name, _, _, _), t) in shape.blocks().into_iter().zip(m) {
                o.insert(name, nested(t));
            }
            Value::Object(o)
        }
        None => Value::Null,
    };
    let c = json!({
        "n_layers_encoder": encoder_layers,
        "beta": beta,
        "latent_inv": shape.latent_inv,
        "inject": inject,
        "learned_mean": learned_mean,
        "x": rows(&x, g),
        "inv": inv.as_ref().map(|v| rows(v, 3)),
        "spur": spur.as_ref().map(|v| rows(v, 2)),
        "eps": nested(&noise.eps),
        "masks": masks,
        "params": Value::Object(params),
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("case.json");
    std::fs::write(&path, serde_json::to_vec(&c).unwrap()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oracles/invae_elbo.py");
    let out = Command::new(python)
        .arg(&script)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let rel = (ours - theirs).abs() / theirs.abs();
    eprintln!(
        "encoder layers {encoder_layers}, covariates {covariates}, beta {beta}, inject {inject}, learned mean {learned_mean}: cellweave {ours:.6}, reference transcription {theirs:.6} (relative difference {rel:.2e})"
    );
    assert!(
        rel < 5e-5,
        "loss {ours} vs the reference transcription's {theirs} (relative difference {rel:.2e})"
    );
}

#[test]
fn minibatch_loss_matches_the_reference_formulas() {
    let Some(python) = reference_python(&["numpy", "scipy"]) else {
        return;
    };
    case(&python, 1, true, 1.0, false, false);
    case(&python, 2, true, 0.7, false, false);
    case(&python, 2, false, 1.0, false, false);
    case(&python, 2, true, 1.0, true, false);
    case(&python, 1, true, 0.5, true, false);
    case(&python, 1, true, 1.0, false, true);
    case(&python, 2, true, 0.8, true, true);
}
