//! deepMNN (Zou et al., Frontiers in Genetics 2021): residual blocks on the gene space
//! trained to bring mutual-nearest-neighbour pairs of cells from different batches
//! together (L1 after projection on the principal axes) while staying close to the input
//! (L1 identity term). The output is corrected expression, and its PCA the embedding.
//!
//! - [`network`]: the network and loss in candle ops (autograd; CPU and CUDA).
//! - [`autoencoder`]: the frozen autoencoder whose codes the pair term compares with
//!   `--pair-space autoencoder` (stage 1 of the batch-corrected scETM, [`crate::bcscetm`]).
//! - [`train`]: minibatches of pairs, deepMNN's learning-rate steps and plateau stop,
//!   Adam, checkpoints on the training engine.
//! - [`command`]: `cellweave-train --model deepmnn` and `cellweave-embed`.
//!
//! The pairs are `cellweave-pairs --definition deepmnn`
//! ([`cellweave::integrate::deepmnn`]).

pub mod autoencoder;
pub mod command;
pub mod network;
pub mod train;

#[cfg(test)]
mod tests;
