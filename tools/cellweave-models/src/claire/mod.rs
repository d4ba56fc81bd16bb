//! CLAIRE (Yan et al., Bioinformatics 2023): batch correction by contrastive learning
//! with mixed-up positive views built from inter-batch seed pairs and intra-batch
//! neighbours, trained with MoCo.
//!
//! - [`encoder`]: the network and its hand-written backward pass.
//! - [`moco`]: momentum key encoder, queue and the symmetric InfoNCE step (candle ops).
//! - [`cpu_step`]: the same step on the CPU over raw buffers (the fast path).
//! - [`views`]: positive views by mix-up.
//! - [`augment`]: batch-styles standardization of the views (`--augment`).
//! - [`train`]: the schedule, checkpoints and the model directory outputs.
//! - [`model`]: the model directory format and applying a saved model.

pub mod augment;
pub mod command;
pub mod cpu_step;
pub mod encoder;
pub mod moco;
pub mod model;
pub mod train;
pub mod views;

pub use crate::CandleExt;

#[cfg(test)]
mod tests;
