//! cellweave: single-cell RNA-seq integration and imputation in small composable tools.
//!
//! This crate holds everything but the argument parsing of the binaries, in layers whose
//! dependencies point one way (down this list; `scripts/check_layers.py` checks that no
//! import cycle exists, and `ARCHITECTURE.md` describes the layers):
//!
//! - [`error`], [`cli`] and [`contract`]: the error type, logging and the data contract
//!   (the tables every stage reads and writes);
//! - [`numerics`]: statistics, PCA, nearest neighbours, graphs, clustering, mixtures;
//! - [`io`]: the contract tables on disk (Arrow IPC / Parquet, streamed or whole) and the
//!   formats users bring ([`io::formats`]);
//! - [`convert`]: import and export, the only place that sees every format;
//! - the stages' methods: [`preprocess`], [`integrate`], [`impute`];
//! - [`evaluate`] (integration and imputation metrics) and [`viz`] (UMAP and plots).

pub mod cli;
pub mod contract;
pub mod error;

pub mod numerics;

pub mod io;

pub mod convert;

pub mod impute;
pub mod integrate;
pub mod preprocess;

pub mod evaluate;
pub mod viz;

pub use error::{Error, Result, ResultExt};

/// The version every output records in its provenance.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Assert that `text` contains each of `parts` (the message names the first one missing and
/// shows `text`).
#[cfg(test)]
#[track_caller]
pub(crate) fn assert_has(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "'{part}' not in:\n{text}");
    }
}
