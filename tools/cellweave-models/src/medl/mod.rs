//! MEDL / scMEDAL mixed-effects autoencoders (Montillo lab): a batch-invariant
//! fixed-effects (FE) latent learned against an adversary, a batch-specific
//! random-effects (RE) latent, and counterfactual cells (a cell decoded as if measured in
//! another batch). Method note: `more-models.md` of the shared methods.
//!
//! - [`layers`]: dense, batch norm, SELU, the random-effects block with variational weights.
//! - [`net`]: the two autoencoders, the adversary and the latent batch classifier.
//! - [`scaling`]: the global min-max input scaling recorded in the model.
//! - [`train`]: the per-minibatch steps and the engine's [`crate::engine::Trainable`].
//! - [`fit`]: a whole run (resume, checkpoints, outputs).
//! - [`model`]: the model directory, loading, FE/RE latents and reconstructions.
//! - [`command`]: `cellweave-train --model medl` and `cellweave-embed` on a MEDL model.

pub mod command;
pub mod fit;
pub mod layers;
pub mod model;
pub mod net;
pub mod scaling;
pub mod train;

#[cfg(test)]
mod tests;
