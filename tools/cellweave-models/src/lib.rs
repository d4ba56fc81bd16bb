//! Neural models in candle: the CLAIRE contrastive encoder and LATE imputation, on one
//! training engine ([`engine`]: the loop, the optimiser, checkpoints).
//!
//! One module per model (its network, loss and [`engine::Trainable`]); a model that
//! `cellweave-train` trains is also a variant of [`ModelKind`]. See `docs/models.md`.

pub mod kernels;

pub mod bcscetm;
pub mod claire;
pub mod command;
pub mod deepmnn;
pub mod engine;
pub mod invae;
pub mod late;
pub mod medl;
pub mod nn;
pub mod rng;
pub mod scetm;
pub mod stage;
#[cfg(test)]
mod testing;

pub use engine::optim;

use candle_core::Device;

/// The models `cellweave-train --model` trains. LATE is trained by `cellweave-impute`.
/// Adding one: its module (network, loss, a [`engine::Trainable`] and its command), a
/// variant here, and its arms in [`stage`] (`run_train`, `run_embed`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// the batch-corrected scETM: deepMNN with a frozen autoencoder's pair term, then scETM
    /// without its batch bias on the corrected expression (needs --pairs from
    /// cellweave-pairs --definition deepmnn)
    Bcscetm,
    /// CLAIRE: MoCo contrastive encoder on mixed-up inter-batch seed pairs
    Claire,
    /// deepMNN: residual network correcting expression on mutual-nearest-neighbour pairs
    /// (needs --pairs from cellweave-pairs --definition deepmnn)
    Deepmnn,
    /// inVAE: VAE on raw counts with invariant (biological) and spurious (batch) latents
    Invae,
    /// MEDL: fixed-effects (adversarial) and random-effects autoencoders; counterfactual cells
    Medl,
    /// scETM: embedded topic model of raw counts (needs --counts)
    Scetm,
}

impl ModelKind {
    /// The name on the command line and in model cards.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Bcscetm => "bcscetm",
            ModelKind::Claire => "claire",
            ModelKind::Deepmnn => "deepmnn",
            ModelKind::Invae => "invae",
            ModelKind::Medl => "medl",
            ModelKind::Scetm => "scetm",
        }
    }
}

/// Turn a candle error into a cellweave error (one line).
pub trait CandleExt<T> {
    /// The result with a candle error as `candle: MESSAGE`.
    fn ce(self) -> cellweave::Result<T>;
}

impl<T> CandleExt<T> for candle_core::Result<T> {
    fn ce(self) -> cellweave::Result<T> {
        self.map_err(|e| cellweave::Error::new(format!("candle: {e}")))
    }
}

/// The candle device named by `--device` (`cpu`, `cuda` or `cuda:N`).
pub fn device(name: &str) -> cellweave::Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        n if n == "cuda" || n.starts_with("cuda:") => {
            cuda_device(n.strip_prefix("cuda:").unwrap_or("0"))
        }
        other => Err(cellweave::Error::new(format!(
            "unknown device '{other}' (expected cpu, cuda or cuda:N)"
        ))
        .field("device")),
    }
}

#[cfg(feature = "cuda")]
fn cuda_device(ordinal: &str) -> cellweave::Result<Device> {
    let i: usize = ordinal.parse().map_err(|_| {
        cellweave::Error::new(format!("bad CUDA ordinal '{ordinal}'")).field("device")
    })?;
    Device::new_cuda(i).ce()
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_ordinal: &str) -> cellweave::Result<Device> {
    Err(cellweave::Error::new(
        "built without CUDA support; rebuild with --features cuda (scripts/build-cuda.sh)",
    )
    .field("device"))
}
