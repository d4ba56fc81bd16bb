//! scETM, the single-cell embedded topic model (Zhao et al., Nature Communications 2021):
//! a variational encoder of library-normalized counts into K topic mixtures and a linear
//! decoder `log_softmax(theta (alpha rho) + lambda_s)` whose topic embedding alpha and
//! gene embedding rho users read as biology (the topic-gene matrix alpha rho).
//!
//! - [`network`]: the network and loss in candle ops (autograd; CPU and CUDA).
//! - [`nll`]: the reconstruction term, fused on the CPU (value and gradient in one pass).
//! - [`train`]: minibatches, KL warm-up, learning-rate decay, clipping, Adam, checkpoints
//!   on the training engine.
//! - [`command`]: `cellweave-train --model scetm` and `cellweave-embed` (model directory,
//!   embedding, genes table).

pub mod command;
pub mod network;
pub mod nll;
pub mod train;

#[cfg(test)]
mod tests;
