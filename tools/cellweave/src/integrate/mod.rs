//! Batch integration outside the neural model: canonical correlation analysis, mutual
//! nearest neighbours and CLAIRE's seed and intra-batch pairs built from them.

pub mod cca;
pub mod deepmnn;
pub mod mnn;
#[allow(missing_docs)] // public items not all documented yet
pub mod pairs;
pub mod refine_stage;
pub mod seed_check;
pub mod stage;
