//! LATE's loss and training written with candle ops and autograd (dense, any device).
//!
//! This is the reference for the hand-written CPU path ([`super::fast`]): it draws the same
//! dropout masks from the same random stream, so with the same seed both engines follow the
//! same trajectory up to rounding. It is also the path used on a CUDA device.

use super::fast::{Batch, Masks};
use super::{
    masked_mse, onehot, split_cells, EarlyStop, EpochLog, Late, TrainOptions, TrainReport,
};
use crate::CandleExt;
use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use cellweave::contract::Csr;
use cellweave::{Error, Result};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Dense tensors of a batch: the input values and the dropout multipliers of every layer
/// (the input mask is 1 at the zeros, where it has no effect).
pub fn dense_batch(
    model: &Late,
    batch: &Batch,
    masks: Option<&Masks>,
    dev: &Device,
) -> Result<(Tensor, Vec<Tensor>)> {
    let (n, g) = (batch.n, model.config.n_genes);
    let mut x = vec![0f32; n * g];
    let mut m0 = vec![1f32; n * g];
    for k in 0..batch.idx.len() {
        let pos = batch.row[k] as usize * g + batch.idx[k] as usize;
        x[pos] = batch.val[k];
        if let Some(m) = masks {
            m0[pos] = m.input[k];
        }
    }
    let dims = model.config.dims();
    let mut mt = vec![Tensor::from_vec(m0, (n, g), dev).ce()?];
    for (l, &width) in dims
        .iter()
        .enumerate()
        .take(model.config.n_layers())
        .skip(1)
    {
        let v = match masks {
            Some(m) => m.hidden[l - 1].clone(),
            None => vec![1f32; n * width],
        };
        mt.push(Tensor::from_vec(v, (n, width), dev).ce()?);
    }
    Ok((Tensor::from_vec(x, (n, g), dev).ce()?, mt))
}

/// The batch's one-hot covariate, when the model reads one.
fn batch_onehot(model: &Late, batch: &Batch, dev: &Device) -> Result<Option<Tensor>> {
    if model.config.n_batches == 0 || batch.cov.is_empty() {
        return Ok(None);
    }
    let rows: Vec<usize> = (0..batch.n).collect();
    onehot(&rows, &batch.cov, model.config.n_batches, dev).map(Some)
}

/// The model with its parameters wrapped as autograd variables.
fn with_vars(model: &Late) -> Result<(Late, Vec<Var>)> {
    let mut vars = Vec::new();
    let mut m = model.clone();
    for l in 0..model.weights.len() {
        let w = Var::from_tensor(&model.weights[l]).ce()?;
        let b = Var::from_tensor(&model.biases[l]).ce()?;
        m.weights[l] = w.as_tensor().clone();
        m.biases[l] = b.as_tensor().clone();
        vars.push(w);
        vars.push(b);
    }
    Ok((m, vars))
}

/// Loss and gradients of one batch by autograd: `(loss, weight grads, bias grads, grad wrt
/// the output h)`; the weight grads are `in_total x out` like [`Late::weights`].
#[allow(clippy::type_complexity)]
pub fn loss_and_grads(
    model: &Late,
    batch: &Batch,
    masks: Option<&Masks>,
) -> Result<(f32, Vec<Tensor>, Vec<Tensor>, Tensor)> {
    let dev = model.device().clone();
    let (m, _vars) = with_vars(model)?;
    let (x, mt) = dense_batch(model, batch, masks, &dev)?;
    let oh = batch_onehot(model, batch, &dev)?;
    // h as a variable of its own too, to read the gradient wrt the output.
    let h = m.forward_masked(&x, oh.as_ref(), &mt).ce()?;
    let hv = Var::from_tensor(&h).ce()?;
    let loss = masked_mse(&x, hv.as_tensor()).ce()?;
    let g_h = loss
        .backward()
        .ce()?
        .get(hv.as_tensor())
        .cloned()
        .ok_or_else(|| Error::new("no gradient for h"))?;
    // Back-propagate through the network: loss as a function of the parameters.
    let loss_p = masked_mse(&x, &h).ce()?;
    let grads = loss_p.backward().ce()?;
    let get = |t: &Tensor| -> Result<Tensor> {
        grads
            .get(t)
            .cloned()
            .ok_or_else(|| Error::new("no gradient for a parameter"))
    };
    let gw = m.weights.iter().map(get).collect::<Result<Vec<_>>>()?;
    let gb = m.biases.iter().map(get).collect::<Result<Vec<_>>>()?;
    Ok((loss.to_scalar::<f32>().ce()?, gw, gb, g_h))
}

/// Mean loss (no dropout) over `rows`.
fn mean_loss(model: &Late, x: &Csr, rows: &[usize], codes: Option<&[u32]>) -> Result<f64> {
    let dev = model.device().clone();
    let mut total = 0.0;
    for chunk in rows.chunks(1024) {
        let b = Batch::gather(x, chunk, codes);
        let (xt, _) = dense_batch(model, &b, None, &dev)?;
        let oh = batch_onehot(model, &b, &dev)?;
        total += model.loss(&xt, oh.as_ref())? as f64 * chunk.len() as f64;
    }
    Ok(if rows.is_empty() {
        f64::NAN
    } else {
        total / rows.len() as f64
    })
}

/// Train with candle autograd and candle-nn's AdamW without weight decay (see [`super::train`]).
pub fn train(
    model: &mut Late,
    x: &Csr,
    codes: Option<&[u32]>,
    opts: &TrainOptions,
    on_epoch: &mut dyn FnMut(&EpochLog),
) -> Result<TrainReport> {
    let cfg = model.config.clone();
    let dev = model.device().clone();
    let codes = if cfg.n_batches > 0 { codes } else { None };
    let (train_rows, val_rows) = split_cells(x.n_rows(), opts.val_fraction, opts.seed);
    let monitor_rows = if val_rows.is_empty() {
        &train_rows
    } else {
        &val_rows
    };
    let (m, vars) = with_vars(model)?;
    let mut opt = AdamW::new(
        vars.clone(),
        ParamsAdamW {
            lr: opts.lr,
            beta1: opts.beta1,
            beta2: opts.beta2,
            eps: opts.eps,
            weight_decay: 0.0,
        },
    )
    .ce()?;
    let snapshot = |m: &Late| -> Result<Late> {
        let mut s = m.clone();
        for l in 0..s.weights.len() {
            s.weights[l] = m.weights[l].copy().ce()?.detach();
            s.biases[l] = m.biases[l].copy().ce()?.detach();
        }
        Ok(s)
    };
    let mut best = snapshot(&m)?;
    let mut rng = SmallRng::seed_from_u64(opts.seed);
    let mut stop = EarlyStop::new(opts.patience);
    stop.observe(0, mean_loss(&m, x, monitor_rows, codes)?);
    let mut order = train_rows.clone();
    let mut log = Vec::new();
    let mut stopped_early = false;
    for epoch in 1..=opts.epochs {
        let t0 = std::time::Instant::now();
        for i in (1..order.len()).rev() {
            let j = rng.random_range(0..=i);
            order.swap(i, j);
        }
        let mut total = 0.0;
        for chunk in order.chunks(opts.batch_size) {
            let b = Batch::gather(x, chunk, codes);
            let masks = Masks::sample(&mut rng, &cfg, &b);
            let (xt, mt) = dense_batch(&m, &b, Some(&masks), &dev)?;
            let oh = batch_onehot(&m, &b, &dev)?;
            let h = m.forward_masked(&xt, oh.as_ref(), &mt).ce()?;
            let loss = masked_mse(&xt, &h).ce()?;
            opt.backward_step(&loss).ce()?;
            total += loss.to_scalar::<f32>().ce()? as f64 * chunk.len() as f64;
        }
        let train_loss = total / order.len().max(1) as f64;
        let monitored = mean_loss(&m, x, monitor_rows, codes)?;
        if !monitored.is_finite() {
            return Err(Error::new(format!(
                "training diverged at epoch {epoch} (loss {monitored}); try a lower --lr"
            )));
        }
        let is_best = stop.observe(epoch, monitored);
        if is_best {
            best = snapshot(&m)?;
        }
        let entry = EpochLog {
            epoch,
            train_loss,
            val_loss: monitored,
            seconds: t0.elapsed().as_secs_f64(),
            best: is_best,
        };
        on_epoch(&entry);
        log.push(entry);
        if stop.should_stop() {
            stopped_early = true;
            break;
        }
    }
    *model = best;
    Ok(TrainReport {
        log,
        best_epoch: stop.best_epoch,
        best_val_loss: stop.best,
        n_train: train_rows.len(),
        n_val: val_rows.len(),
        stopped_early,
    })
}
