//! cellweave: single-cell RNA-seq integration and imputation in small composable tools.
//!
//! This crate holds everything but the argument parsing of the binaries: the data
//! contract ([`contract`]), file formats ([`io`]), preprocessing ([`qc`], [`normalize`],
//! [`hvg`], [`simulate`]), and the numerics that later stages share.

pub mod cli;
pub mod contract;
pub mod error;
pub mod io;

pub mod cca;
pub mod cluster;
pub mod gmm;
pub mod hvg;
pub mod impute;
pub mod metrics;
pub mod mnn;
pub mod neighbors;
pub mod normalize;
pub mod pairs;
pub mod pca;
pub mod plot;
pub mod qc;
pub mod simulate;
pub mod umap;

pub use error::{Error, Result, ResultExt};

/// The version every output records in its provenance.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
