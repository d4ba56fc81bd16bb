//! LATE and TRANSLATE (Badsha et al. 2020): an autoencoder trained only on the observed
//! (non-zero) entries of log-scaled expression, whose output fills the zeros.
//!
//! - [`Late`]: the network, `G -> 800 -> 400 -> 800 -> G` by default; every layer is dropout
//!   on its input (keep 0.8 on the input layer, 0.5 elsewhere), affine, ReLU (the output
//!   layer too). With batch awareness a one-hot batch covariate is concatenated to the
//!   encoder input (layer 0) and to the decoder input (layer [`LateConfig::decoder_layer`]);
//!   the covariate is never dropped out.
//! - Loss: mean over all entries of `(X - h)^2 * sign(X)`: zeros contribute nothing.
//! - [`train`]: Adam with early stopping on a validation split, on the crate's training
//!   engine ([`crate::engine`]; the minibatch loop and validation are in `trainer.rs`, the
//!   minibatches and their dropout masks in [`batch`]). On the CPU a hand-written
//!   forward/backward ([`fast`]) skips the work that the loss ignores: the input layer reads
//!   only non-zero inputs and the output layer computes only the entries where the input is
//!   non-zero; the dense middle layers use candle's matmul. [`autograd`] is the same
//!   computation written with candle ops and autograd: the reference the tests compare the
//!   fast path with, and the path used on a CUDA device.
//! - [`stage`]: the `cellweave-impute` stage (reading, baselines, model, outputs, evaluation).
//!
//! The model is saved as `model.safetensors` (`layers.{l}.weight`, out x in like candle's
//! and PyTorch's `Linear`, one-hot batch columns last; `layers.{l}.bias`) and `card.yaml`
//! (a [`ModelCard`]: genes, batches, architecture, scale, training summary).

pub mod autograd;
pub mod batch;
pub mod fast;
pub mod stage;
#[cfg(test)]
mod tests;
mod trainer;

use crate::CandleExt;
use candle_core::{DType, Device, Tensor};
use cellweave::contract::Csr;
use cellweave::{bail, Error, Result, ResultExt};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

pub use crate::device;

/// The architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LateConfig {
    /// Genes `G`: the width of the input and of the output.
    pub n_genes: usize,
    /// Hidden layer widths (default 800, 400, 800).
    pub hidden: Vec<usize>,
    /// Number of one-hot batch columns (0: not batch-aware).
    pub n_batches: usize,
    /// Dropout keep probability on the input layer (0.8).
    pub keep_input: f32,
    /// Dropout keep probability on every other layer's input (0.5).
    pub keep_hidden: f32,
}

impl LateConfig {
    /// The architecture with LATE's dropout (keep 0.8 on the input, 0.5 elsewhere).
    pub fn new(n_genes: usize, hidden: Vec<usize>, n_batches: usize) -> Self {
        LateConfig {
            n_genes,
            hidden,
            n_batches,
            keep_input: 0.8,
            keep_hidden: 0.5,
        }
    }
    /// Layer widths: genes, hidden..., genes.
    pub fn dims(&self) -> Vec<usize> {
        let mut d = vec![self.n_genes];
        d.extend(&self.hidden);
        d.push(self.n_genes);
        d
    }
    /// Number of affine layers (hidden layers + 1).
    pub fn n_layers(&self) -> usize {
        self.hidden.len() + 1
    }
    /// The first decoder layer: its input is the bottleneck (and the batch one-hot).
    pub fn decoder_layer(&self) -> usize {
        self.hidden.len().div_ceil(2)
    }
    /// Whether layer `l` also reads the batch one-hot.
    pub fn has_covariate(&self, l: usize) -> bool {
        self.n_batches > 0 && (l == 0 || l == self.decoder_layer())
    }
    /// Rows of layer `l`'s weight: its input width plus the one-hot columns it reads.
    pub fn in_total(&self, l: usize) -> usize {
        self.dims()[l]
            + if self.has_covariate(l) {
                self.n_batches
            } else {
                0
            }
    }
    /// Dropout keep probability on layer `l`'s input.
    pub fn keep(&self, l: usize) -> f32 {
        if l == 0 {
            self.keep_input
        } else {
            self.keep_hidden
        }
    }
    /// Refuse a configuration that cannot train: no genes, no or zero-width hidden layers,
    /// a keep probability outside `(0, 1]`.
    pub fn check(&self) -> Result<()> {
        if self.n_genes == 0 {
            bail!("no genes to impute");
        }
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return Err(
                Error::new("expected one or more positive layer widths, e.g. 800,400,800")
                    .field("hidden"),
            );
        }
        for k in [self.keep_input, self.keep_hidden] {
            if !(k > 0.0 && k <= 1.0) {
                bail!("dropout keep probability {k} is not in (0, 1]");
            }
        }
        Ok(())
    }
}

/// The network. `weights[l]` is `in_total(l) x out(l)` (`y = relu(x W + b)`), on `device`.
#[derive(Debug, Clone)]
pub struct Late {
    /// The architecture.
    pub config: LateConfig,
    /// One weight matrix per layer, `in_total(l) x out(l)`.
    pub weights: Vec<Tensor>,
    /// One bias vector per layer, `out(l)`.
    pub biases: Vec<Tensor>,
}

/// Weights and biases as host vectors, one per layer.
pub type HostParams = (Vec<Vec<f32>>, Vec<Vec<f32>>);

/// Standard deviation of LATE's random initial weights and biases.
pub const INIT_SD: f64 = 1e-3;

impl Late {
    /// Random initial weights and biases, normal with sd [`INIT_SD`] (as LATE).
    pub fn init(config: LateConfig, seed: u64, device: &Device) -> Result<Late> {
        config.check()?;
        let dims = config.dims();
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x1a7e_1a7e);
        let normal = Normal::new(0.0f64, INIT_SD).expect("valid sd");
        let mut sample =
            |n: usize| -> Vec<f32> { (0..n).map(|_| normal.sample(&mut rng) as f32).collect() };
        let (mut weights, mut biases) = (Vec::new(), Vec::new());
        for l in 0..config.n_layers() {
            let (rows, cols) = (config.in_total(l), dims[l + 1]);
            weights.push(Tensor::from_vec(sample(rows * cols), (rows, cols), device).ce()?);
            biases.push(Tensor::from_vec(sample(cols), cols, device).ce()?);
        }
        Ok(Late {
            config,
            weights,
            biases,
        })
    }

    /// The device the parameters live on.
    pub fn device(&self) -> &Device {
        self.weights[0].device()
    }

    /// Weights and biases as host vectors (`weights[l]` row-major `in_total x out`).
    pub fn to_host(&self) -> Result<HostParams> {
        let w = self
            .weights
            .iter()
            .map(|t| t.flatten_all()?.to_vec1::<f32>())
            .collect::<candle_core::Result<_>>();
        let b = self
            .biases
            .iter()
            .map(|t| t.to_vec1::<f32>())
            .collect::<candle_core::Result<_>>();
        Ok((w.ce()?, b.ce()?))
    }

    /// Replace the parameters with host vectors of the same shapes.
    pub fn set_from_host(&mut self, w: &[Vec<f32>], b: &[Vec<f32>]) -> Result<()> {
        let dev = self.device().clone();
        for l in 0..self.weights.len() {
            let shape = self.weights[l].dims().to_vec();
            self.weights[l] = Tensor::from_slice(&w[l], shape, &dev).ce()?;
            self.biases[l] = Tensor::from_slice(&b[l], b[l].len(), &dev).ce()?;
        }
        Ok(())
    }

    /// One layer: `relu([x, onehot] W + b)` (`onehot` only on the layers that read it).
    fn layer(&self, l: usize, x: &Tensor, onehot: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let input = match onehot {
            Some(oh) if self.config.has_covariate(l) => Tensor::cat(&[x, oh], 1)?,
            _ => x.clone(),
        };
        input
            .matmul(&self.weights[l])?
            .broadcast_add(&self.biases[l])?
            .relu()
    }

    /// Inference (no dropout): `x` is `n x G` on the model's scale, `onehot` `n x n_batches`.
    pub fn forward(&self, x: &Tensor, onehot: Option<&Tensor>) -> Result<Tensor> {
        let mut h = x.clone();
        for l in 0..self.config.n_layers() {
            h = self.layer(l, &h, onehot).ce()?;
        }
        Ok(h)
    }

    /// Training forward with dropout multipliers `masks[l]` (same shape as layer `l`'s input,
    /// values 0 or 1/keep), used by the autograd path.
    pub fn forward_masked(
        &self,
        x: &Tensor,
        onehot: Option<&Tensor>,
        masks: &[Tensor],
    ) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        for (l, mask) in masks.iter().enumerate().take(self.config.n_layers()) {
            h = self.layer(l, &h.mul(mask)?, onehot)?;
        }
        Ok(h)
    }

    /// The decoder output for every entry of `x` (dense row-major `n x G`), `chunk` rows at a time.
    pub fn impute(&self, x: &Csr, batch_codes: Option<&[u32]>, chunk: usize) -> Result<Vec<f32>> {
        let (n, g) = (x.n_rows(), x.n_cols);
        if g != self.config.n_genes {
            bail!(
                "the model imputes {} genes but the input has {g}",
                self.config.n_genes
            );
        }
        let dev = self.device().clone();
        let mut out = Vec::with_capacity(n * g);
        let chunk = chunk.max(1);
        for start in (0..n).step_by(chunk) {
            let rows: Vec<usize> = (start..(start + chunk).min(n)).collect();
            let xt = Tensor::from_vec(x.to_dense_rows(&rows), (rows.len(), g), &dev).ce()?;
            let oh = match batch_codes {
                Some(codes) if self.config.n_batches > 0 => {
                    Some(onehot(&rows, codes, self.config.n_batches, &dev)?)
                }
                _ => None,
            };
            let y = self.forward(&xt, oh.as_ref())?;
            out.extend(y.flatten_all().ce()?.to_vec1::<f32>().ce()?);
        }
        Ok(out)
    }

    /// The masked mean squared error of LATE on dense `x` (no dropout).
    pub fn loss(&self, x: &Tensor, onehot: Option<&Tensor>) -> Result<f32> {
        let h = self.forward(x, onehot)?;
        masked_mse(x, &h).ce()?.to_scalar::<f32>().ce()
    }

    /// Write `model.safetensors` and `card.yaml` into `dir` (which must exist).
    pub fn save(&self, dir: &Path, card: &ModelCard) -> Result<()> {
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for l in 0..self.weights.len() {
            let w = self.weights[l]
                .to_device(&Device::Cpu)
                .ce()?
                .t()
                .ce()?
                .contiguous()
                .ce()?;
            tensors.insert(format!("layers.{l}.weight"), w);
            tensors.insert(
                format!("layers.{l}.bias"),
                self.biases[l].to_device(&Device::Cpu).ce()?,
            );
        }
        let st = dir.join("model.safetensors");
        candle_core::safetensors::save(&tensors, &st).ce().at(&st)?;
        // The card last: a directory without it is an interrupted write, not a model.
        let yaml = dir.join("card.yaml");
        let text = serde_yaml::to_string(card)
            .map_err(|e| Error::new(e.to_string()))
            .at(&yaml)?;
        std::fs::write(&yaml, text).at(&yaml)?;
        Ok(())
    }

    /// Read a model written by [`Late::save`].
    pub fn load(dir: &Path, device: &Device) -> Result<(Late, ModelCard)> {
        let yaml = dir.join("card.yaml");
        let text = std::fs::read_to_string(&yaml).at(&yaml)?;
        let card: ModelCard = serde_yaml::from_str(&text)
            .map_err(|e| Error::new(format!("not a cellweave LATE model card ({e})")))
            .at(&yaml)?;
        if card.model != "late" || card.card_version != 1 {
            return Err(Error::new(format!(
                "model '{}', card version {} (expected late, version 1)",
                card.model, card.card_version
            ))
            .field("model")
            .file(&yaml));
        }
        let config = card.config();
        config.check().at(&yaml)?;
        let st = dir.join("model.safetensors");
        let mut tensors = candle_core::safetensors::load(&st, &Device::Cpu)
            .ce()
            .at(&st)?;
        let dims = config.dims();
        let (mut weights, mut biases) = (Vec::new(), Vec::new());
        for l in 0..config.n_layers() {
            let (rows, cols) = (config.in_total(l), dims[l + 1]);
            let mut take = |name: String, shape: &[usize]| -> Result<Tensor> {
                let t = tensors
                    .remove(&name)
                    .ok_or_else(|| Error::new("tensor missing").field(name.clone()).file(&st))?;
                if t.dims() != shape || t.dtype() != DType::F32 {
                    return Err(Error::new(format!(
                        "shape {:?} {:?} (expected {shape:?} f32 for this model card)",
                        t.dims(),
                        t.dtype()
                    ))
                    .field(name)
                    .file(&st));
                }
                Ok(t)
            };
            let w = take(format!("layers.{l}.weight"), &[cols, rows])?;
            let b = take(format!("layers.{l}.bias"), &[cols])?;
            weights.push(w.t().ce()?.contiguous().ce()?.to_device(device).ce()?);
            biases.push(b.to_device(device).ce()?);
        }
        Ok((
            Late {
                config,
                weights,
                biases,
            },
            card,
        ))
    }
}

/// `mean((x - h)^2 * sign(x))` over all entries (x >= 0).
pub fn masked_mse(x: &Tensor, h: &Tensor) -> candle_core::Result<Tensor> {
    let sign = x.gt(0f64)?.to_dtype(x.dtype())?;
    (x - h)?.sqr()?.mul(&sign)?.mean_all()
}

/// One-hot rows (`rows.len() x n`) of the batch codes of `rows`; a code >= n gives a zero row.
pub fn onehot(rows: &[usize], codes: &[u32], n: usize, device: &Device) -> Result<Tensor> {
    let mut v = vec![0f32; rows.len() * n];
    for (i, &r) in rows.iter().enumerate() {
        let c = codes[r] as usize;
        if c < n {
            v[i * n + c] = 1.0;
        }
    }
    Tensor::from_vec(v, (rows.len(), n), device).ce()
}

/// What `card.yaml` records about a saved model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// Always `late`.
    pub model: String,
    /// Version of this card's layout (1).
    pub card_version: u32,
    /// cellweave version that trained it.
    pub cellweave_version: String,
    /// The value scale the model reads and writes (`log10` or `log1p`).
    pub scale: String,
    /// The genes, in the model's input and output order.
    pub gene_ids: Vec<String>,
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// Dropout keep probability on the input layer.
    pub keep_input: f32,
    /// Dropout keep probability on every other layer's input.
    pub keep_hidden: f32,
    /// The batches of the one-hot covariate (empty: not batch-aware).
    pub batches: Vec<String>,
    /// Which obs column the batches came from.
    pub batch_key: Option<String>,
    /// The activation, in words (ReLU on every layer).
    pub activation: String,
    /// How `model.safetensors` lays out the weights, in words.
    pub weight_layout: String,
    /// How the model was trained.
    pub training: TrainSummary,
}

impl ModelCard {
    /// The architecture the card describes.
    pub fn config(&self) -> LateConfig {
        LateConfig {
            n_genes: self.gene_ids.len(),
            hidden: self.hidden.clone(),
            n_batches: self.batches.len(),
            keep_input: self.keep_input,
            keep_hidden: self.keep_hidden,
        }
    }
}

/// Training summary kept in the model card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TrainSummary {
    /// The model training started from (`--init`, TRANSLATE), if any.
    pub init_from: Option<String>,
    /// The `--seed` of the run.
    pub seed: u64,
    /// Adam's learning rate.
    pub lr: f64,
    /// Cells per minibatch.
    pub batch_size: usize,
    /// Cells trained on.
    pub n_train: usize,
    /// Cells held out for early stopping.
    pub n_val: usize,
    /// Epochs run (fewer than asked when it stopped early).
    pub epochs_run: usize,
    /// The epoch whose parameters the model holds (1-based; 0: the initial parameters).
    pub best_epoch: usize,
    /// The monitored loss at that epoch (validation, or the training cells' without
    /// validation cells).
    pub best_val_loss: f64,
    /// Whether early stopping ended the training.
    pub stopped_early: bool,
    /// Training time in seconds.
    pub seconds: f64,
}

/// Training settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainOptions {
    /// Maximum number of epochs.
    pub epochs: usize,
    /// Stop after this many epochs without a lower validation loss.
    pub patience: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Cells per minibatch.
    pub batch_size: usize,
    /// Fraction of cells held out for early stopping.
    pub val_fraction: f64,
    /// Seed of the split, the minibatch order and the dropout masks.
    pub seed: u64,
    /// Adam's decay rate of the first moment.
    pub beta1: f64,
    /// Adam's decay rate of the second moment.
    pub beta2: f64,
    /// Adam's denominator epsilon.
    pub eps: f64,
}

impl TrainOptions {
    /// Which loss early stopping watches, as the log lines name it: without validation
    /// cells, the training cells' loss (no dropout).
    pub fn monitored(&self) -> &'static str {
        if self.val_fraction > 0.0 {
            "validation"
        } else {
            "training-set"
        }
    }

    /// The optimiser's settings: Adam without weight decay.
    pub fn adam(&self) -> crate::optim::AdamConfig {
        crate::optim::AdamConfig {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            ..Default::default()
        }
    }
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            epochs: 100,
            patience: 10,
            lr: 3e-4,
            batch_size: 256,
            val_fraction: 0.15,
            seed: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// One line of the training log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochLog {
    /// Epoch number, 1-based.
    pub epoch: usize,
    /// Mean loss (with dropout) over the epoch's minibatches, weighted by their cells.
    pub train_loss: f64,
    /// The monitored loss after the epoch, without dropout (validation cells, or the
    /// training cells without validation cells).
    pub val_loss: f64,
    /// Wall-clock seconds of the epoch.
    pub seconds: f64,
    /// Whether `val_loss` is the lowest so far (the parameters kept).
    pub best: bool,
}

/// How training went; the model holds the best parameters afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    /// One line per epoch run.
    pub log: Vec<EpochLog>,
    /// The epoch of the parameters kept (1-based; 0: the initial parameters).
    pub best_epoch: usize,
    /// The monitored loss at that epoch.
    pub best_val_loss: f64,
    /// Cells trained on.
    pub n_train: usize,
    /// Cells held out for early stopping.
    pub n_val: usize,
    /// Whether early stopping ended the training.
    pub stopped_early: bool,
}

/// Which implementation trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// Hand-written forward/backward on the CPU, candle autograd elsewhere.
    Auto,
    /// The hand-written CPU path.
    Fast,
    /// candle ops and autograd (dense; any device).
    Autograd,
}

impl Engine {
    /// The engine named `auto`, `fast` or `autograd`; `None` for any other name.
    pub fn parse(s: &str) -> Option<Engine> {
        match s {
            "auto" => Some(Engine::Auto),
            "fast" => Some(Engine::Fast),
            "autograd" => Some(Engine::Autograd),
            _ => None,
        }
    }
}

/// How many of `n` cells [`split_cells`] holds out for validation (at least one is left to
/// train on).
pub fn n_validation(n: usize, val_fraction: f64) -> usize {
    ((val_fraction.clamp(0.0, 1.0) * n as f64).round() as usize).min(n.saturating_sub(1))
}

/// The train/validation split: a seeded shuffle of the cells, the first
/// `round(val_fraction * n)` for validation (at least one cell for training).
pub fn split_cells(n: usize, val_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5b1_1701);
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        idx.swap(i, j);
    }
    let n_val = n_validation(n, val_fraction);
    let mut val = idx[..n_val].to_vec();
    let mut train = idx[n_val..].to_vec();
    train.sort_unstable();
    val.sort_unstable();
    (train, val)
}

/// Train `model` on the (scaled) values `x`, with batch codes when the model is batch-aware.
/// Calls `on_epoch` after every epoch. The model ends with the parameters of the epoch with
/// the lowest validation loss (training loss when there is no validation split).
pub fn train(
    model: &mut Late,
    x: &Csr,
    batch_codes: Option<&[u32]>,
    opts: &TrainOptions,
    engine: Engine,
    on_epoch: &mut dyn FnMut(&EpochLog),
) -> Result<TrainReport> {
    if x.n_cols != model.config.n_genes {
        bail!(
            "the model has {} genes but the input has {}",
            model.config.n_genes,
            x.n_cols
        );
    }
    if opts.batch_size == 0 {
        return Err(Error::new("must be at least 1").flag("--batch-size"));
    }
    if !(opts.lr > 0.0 && opts.lr.is_finite()) {
        return Err(Error::new(format!("{} (expected a positive number)", opts.lr)).flag("--lr"));
    }
    if !(0.0..1.0).contains(&opts.val_fraction) {
        return Err(
            Error::new(format!("{} (expected 0 <= f < 1)", opts.val_fraction))
                .flag("--val-fraction"),
        );
    }
    let use_fast = match engine {
        Engine::Fast => true,
        Engine::Autograd => false,
        Engine::Auto => model.device().is_cpu(),
    };
    if use_fast && !model.device().is_cpu() {
        return Err(Error::new("the fast engine runs on the CPU only").flag("--engine"));
    }
    let fast_step = |m: &Late| -> Result<Box<dyn trainer::LateStep>> {
        Ok(Box::new(fast::FastStep::new(m, opts)?))
    };
    let autograd_step = |m: &Late| -> Result<Box<dyn trainer::LateStep>> {
        Ok(Box::new(autograd::AutogradStep::new(m, opts)?))
    };
    if use_fast {
        trainer::run(model, x, batch_codes, opts, fast_step, on_epoch)
    } else {
        trainer::run(model, x, batch_codes, opts, autograd_step, on_epoch)
    }
}
