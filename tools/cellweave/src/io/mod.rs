//! Reading and writing files: the contract tables (Arrow IPC / Parquet) and the formats
//! users bring (10x MTX and HDF5, AnnData `.h5ad`, dense CSV/TSV).

pub mod atomic;
pub mod formats;
pub mod mapped;
pub mod rows;
pub mod stream;
pub mod table;

use crate::{Error, Result};
use std::path::Path;

/// Refuse values that a tab-separated text file with one record per line cannot hold: a tab
/// or a line break would shift columns or add records when the file is read back (600 cells
/// exported, 601 imported). The `.h5ad` export holds any id.
pub fn check_text_fields<'a>(values: impl IntoIterator<Item = &'a str>, field: &str) -> Result<()> {
    match values
        .into_iter()
        .find(|s| s.contains(['\t', '\n', '\r']))
    {
        Some(v) => Err(Error::new(format!(
            "{v:?} holds a tab or a line break, which a text file cannot hold (export to .h5ad instead)"
        ))
        .field(field)),
        None => Ok(()),
    }
}

/// File formats, chosen by extension (a directory means a 10x MTX folder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Arrow IPC (`.arrow`, `.ipc`, `.feather`, `.arrows`).
    Arrow,
    /// Parquet (`.parquet`, `.pq`).
    Parquet,
    /// AnnData (`.h5ad`).
    H5ad,
    /// 10x Genomics HDF5 (`.h5`, `.hdf5`).
    TenxH5,
    /// Tab-separated text (`.tsv`, `.txt`, `.tab`, gzipped or not).
    Tsv,
    /// Comma-separated text (`.csv`, gzipped or not).
    Csv,
    /// A 10x MTX folder (or a `.mtx` file inside one).
    MtxDir,
}

impl Format {
    /// The format of `path`: by extension, or a 10x MTX directory.
    pub fn of(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_string_lossy().to_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        if path.is_dir() {
            return Some(Format::MtxDir);
        }
        let ext = name.rsplit('.').next().unwrap_or("");
        Some(match ext {
            "arrow" | "ipc" | "feather" | "arrows" => Format::Arrow,
            "parquet" | "pq" => Format::Parquet,
            "h5ad" => Format::H5ad,
            "h5" | "hdf5" => Format::TenxH5,
            "tsv" | "txt" | "tab" => Format::Tsv,
            "csv" => Format::Csv,
            "mtx" => Format::MtxDir,
            _ => return None,
        })
    }
}
