//! Preprocessing of a cells table, each step streamed batch by batch: quality control,
//! normalization, highly variable genes; and a simulator of multi-batch count data.

pub mod hvg;
pub mod normalize;
pub mod qc;
pub mod simulate;
