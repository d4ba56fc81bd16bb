//! LATE's loss and training written with candle ops and autograd (dense, any device).
//!
//! This is the reference for the hand-written CPU path ([`super::fast`]): it draws the same
//! dropout masks from the same random stream, so with the same seed both engines follow the
//! same trajectory up to rounding. It is also the path used on a CUDA device.

use super::batch::{Batch, Masks};
use super::trainer::LateStep;
use super::{masked_mse, onehot, Late, TrainOptions};
use crate::optim::Adam;
use crate::CandleExt;
use candle_core::{Device, Tensor, Var};
use cellweave::{Error, Result};

/// Dense tensors of a batch: the input values and the dropout multipliers of every layer
/// (the input mask is 1 at the zeros, where it has no effect).
pub fn dense_batch(
    model: &Late,
    batch: &Batch,
    masks: Option<&Masks>,
    dev: &Device,
) -> Result<(Tensor, Vec<Tensor>)> {
    let (n, g) = (batch.n(), model.config.n_genes);
    let mut x = vec![0f32; n * g];
    let mut m0 = vec![1f32; n * g];
    for i in 0..n {
        for k in batch.range(i) {
            let pos = i * g + batch.x.indices[k] as usize;
            x[pos] = batch.x.data[k];
            if let Some(m) = masks {
                m0[pos] = m.input[k];
            }
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
    let rows: Vec<usize> = (0..batch.n()).collect();
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

/// The autograd step (any device): the parameters as candle variables, the crate's Adam
/// over them (no weight decay).
pub(crate) struct AutogradStep {
    model: Late,
    best: Late,
    opt: Adam,
}

/// A copy of the model's parameters, detached from the autograd graph.
fn snapshot(m: &Late) -> Result<Late> {
    let mut s = m.clone();
    for l in 0..s.weights.len() {
        s.weights[l] = m.weights[l].copy().ce()?.detach();
        s.biases[l] = m.biases[l].copy().ce()?.detach();
    }
    Ok(s)
}

impl AutogradStep {
    pub(crate) fn new(model: &Late, opts: &TrainOptions) -> Result<AutogradStep> {
        let (m, vars) = with_vars(model)?;
        Ok(AutogradStep {
            best: snapshot(&m)?,
            opt: Adam::new(vars, opts.adam()).ce()?,
            model: m,
        })
    }
}

impl LateStep for AutogradStep {
    fn step(&mut self, b: &Batch, masks: &Masks) -> Result<f64> {
        let m = &self.model;
        let dev = m.device().clone();
        let (xt, mt) = dense_batch(m, b, Some(masks), &dev)?;
        let oh = batch_onehot(m, b, &dev)?;
        let h = m.forward_masked(&xt, oh.as_ref(), &mt).ce()?;
        let loss = masked_mse(&xt, &h).ce()?;
        self.opt.step(&loss.backward().ce()?).ce()?;
        Ok(loss.to_scalar::<f32>().ce()? as f64)
    }
    fn loss(&self, b: &Batch) -> Result<f64> {
        let m = &self.model;
        let dev = m.device().clone();
        let (xt, _) = dense_batch(m, b, None, &dev)?;
        let oh = batch_onehot(m, b, &dev)?;
        Ok(m.loss(&xt, oh.as_ref())? as f64)
    }
    fn keep_best(&mut self) -> Result<()> {
        self.best = snapshot(&self.model)?;
        Ok(())
    }
    fn into_best(self: Box<Self>, model: &mut Late) -> Result<()> {
        *model = self.best;
        Ok(())
    }
}
