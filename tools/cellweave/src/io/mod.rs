//! Reading and writing files: the contract tables (Arrow IPC / Parquet) and the formats
//! users bring (10x MTX and HDF5, AnnData `.h5ad`, dense CSV/TSV).

pub mod atomic;
pub mod formats;
pub mod stream;
pub mod table;

use std::path::Path;

/// File formats, chosen by extension (a directory means a 10x MTX folder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Arrow,
    Parquet,
    H5ad,
    TenxH5,
    Tsv,
    Csv,
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
