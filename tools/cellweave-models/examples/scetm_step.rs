//! One scETM training step from given weights, minibatch, dropout mask and noise, for the
//! comparison with PyPI scETM 0.5.0 (`bench/scetm_torch_step.sh`, which runs this and
//! `bench/scetm_torch_step.py`).
//!
//! usage: scetm_step MODEL_DIR STEP_IN.safetensors STEP_OUT.safetensors
//!
//! MODEL_DIR: a `cellweave-train --model scetm` model directory (its weights, under
//! scETM's torch names, are the starting point). STEP_IN: `counts` (n x G raw counts of the
//! model's genes, f32), `batch` (n batch codes, u32: rows of the batch bias), `mask` (n x H
//! dropout multipliers), `eps` (n x K reparameterisation noise), `kl_weight` and `lr` (one
//! f64 each). The step is the trainer's: the counts become library-normalized rows as
//! `scetm::train::Data` makes them, then `Network::forward_train`, `clipped_grads`
//! (scETM's clip to norm 50), Adam with scETM's settings (`ScetmParams::adam`, learning rate
//! `lr`) and the BatchNorm running statistics' update. STEP_OUT: `loss`, `nll`, `kl`,
//! `norm` (the gradient norm before clipping; f64 each), `grad.NAME` (the clipped gradient
//! of every variable), `param.NAME` (every variable after the step) and the running mean
//! and variance after it (`param.q_delta.2.running_mean`, `param.q_delta.2.running_var`).
use candle_core::{DType, Device, Tensor};
use cellweave::contract::Csr;
use cellweave_models::engine::checkpoint::{load_tensors, save_tensors};
use cellweave_models::optim::Adam;
use cellweave_models::scetm::network::{Minibatch, NAMES, RUNNING_MEAN, RUNNING_VAR};
use cellweave_models::scetm::train::{Data, ScetmParams};
use std::collections::HashMap;
use std::path::Path;

type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn scalar(v: f64) -> candle_core::Result<Tensor> {
    Tensor::new(&[v], &Device::Cpu)
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        return Err("usage: scetm_step MODEL_DIR STEP_IN.safetensors STEP_OUT.safetensors".into());
    }
    let dev = Device::Cpu;
    let (_, mut net) = cellweave_models::scetm::command::load(Path::new(&args[1]), &dev)?;
    let input = load_tensors(Path::new(&args[2]))?;
    let get = |name: &str| -> Res<&Tensor> {
        input
            .get(name)
            .ok_or_else(|| format!("{}: no tensor '{name}'", args[2]).into())
    };
    let counts = get("counts")?.to_dtype(DType::F32)?;
    let (n, g) = counts.dims2()?;
    if g != net.shape.n_genes {
        return Err(format!(
            "{}: counts have {g} genes, the model {}",
            args[2], net.shape.n_genes
        )
        .into());
    }
    let batch: Vec<u32> = get("batch")?.to_dtype(DType::U32)?.to_vec1()?;
    let n_batches = net.shape.bias_batches.max(1);
    let dense: Vec<f32> = counts.flatten_all()?.to_vec1()?;
    let data = Data::new(Csr::from_dense(n, g, &dense), batch.clone(), n_batches);
    let rows: Vec<usize> = (0..n).collect();
    let first = |name: &str| -> Res<f64> {
        Ok(get(name)?
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?[0])
    };
    let (kl_weight, lr) = (first("kl_weight")?, first("lr")?);
    let mb = Minibatch {
        x: Tensor::from_vec(data.normalized_rows(&rows), (n, g), &dev)?,
        batch: (net.shape.bias_batches > 0)
            .then(|| Tensor::from_vec(batch, n, &dev))
            .transpose()?,
        mask: get("mask")?.to_dtype(DType::F32)?,
        eps: get("eps")?.to_dtype(DType::F32)?,
    };
    let f = net.forward_train(&mb, kl_weight)?;
    let (grads, norm) = net.clipped_grads(&f.loss)?;
    let params = ScetmParams {
        lr,
        ..Default::default()
    };
    let mut adam = Adam::new(net.vars.clone(), params.adam())?;
    adam.step_tensors(&grads)?;
    net.update_running(&f, n)?;

    let mut out: HashMap<String, Tensor> = HashMap::new();
    let f64_of =
        |t: &Tensor| -> candle_core::Result<f64> { t.to_dtype(DType::F64)?.to_scalar::<f64>() };
    out.insert("loss".into(), scalar(f64_of(&f.loss)?)?);
    out.insert("nll".into(), scalar(f64_of(&f.nll)?)?);
    out.insert("kl".into(), scalar(f64_of(&f.kl)?)?);
    out.insert("norm".into(), scalar(norm)?);
    for (name, (gr, var)) in NAMES.iter().zip(grads.iter().zip(&net.vars)) {
        out.insert(format!("grad.{name}"), gr.copy()?);
        out.insert(format!("param.{name}"), var.as_tensor().copy()?);
    }
    out.insert(format!("param.{RUNNING_MEAN}"), net.running_mean.copy()?);
    out.insert(format!("param.{RUNNING_VAR}"), net.running_var.copy()?);
    save_tensors(Path::new(&args[3]), &out)?;
    Ok(())
}
