//! inVAE, the conditionally invariant VAE (Aliee, Kapl, Hediyeh-Zadeh, Theis 2023): a VAE
//! on raw counts (negative binomial likelihood) whose latent splits into invariant
//! features `z_inv`, with a prior conditioned on biological covariates (condition, cell
//! type), and spurious features `z_spur`, with a prior conditioned on technical ones
//! (batch). The embedding is the posterior mean of `z_inv`.
//!
//! - [`net`]: the networks, the priors and the loss (candle ops and autograd, any device).
//! - [`linear`]: the product of a layer whose input is constant (no gradient for it).
//! - [`nb`]: the negative-binomial likelihood's dense part, fused on the CPU.
//! - [`train`]: the data, the epochs on the training engine, checkpoints.
//! - [`command`]: `cellweave-train --model invae` and `cellweave-embed`, the model directory.

pub mod command;
pub mod linear;
pub mod nb;
pub mod net;
pub mod train;

#[cfg(test)]
mod tests;
