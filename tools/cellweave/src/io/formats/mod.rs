//! The file formats users bring, each read into (and written from) a cells table: AnnData
//! `.h5ad`, 10x HDF5, 10x MTX folders, dense CSV/TSV, and per-cell metadata text.

pub mod dense;
pub mod h5ad;
pub mod mtx;
pub mod obs;
pub mod tenx_h5;

use crate::contract::{Categorical, CellsTable, Csr, Named, ValueKind};
use std::path::Path;

/// A cells table read from one file: one batch named after the file ([`stem_of`]), no
/// provenance yet.
pub(crate) fn single_file_table(
    path: &Path,
    cell_ids: Vec<String>,
    obs: Vec<Named>,
    (gene_ids, gene_names): (Vec<String>, Vec<String>),
    x: Csr,
    values: ValueKind,
) -> CellsTable {
    CellsTable {
        batch: Categorical::constant(&stem_of(path), cell_ids.len()),
        cell_ids,
        obs,
        gene_ids,
        gene_names,
        x,
        values,
        provenance: Vec::new(),
    }
}

/// Folder and file names Cell Ranger gives the matrix inside a sample folder.
const CELLRANGER_NAMES: [&str; 5] = [
    "filtered_feature_bc_matrix",
    "raw_feature_bc_matrix",
    "filtered_gene_bc_matrices",
    "raw_gene_bc_matrices",
    "outs",
];

/// A short name for an input: the file name without format extensions, or the folder name;
/// for Cell Ranger's own names (`outs`, `filtered_feature_bc_matrix[.h5]`) the sample
/// folder's name.
pub fn stem_of(path: &Path) -> String {
    let own = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().trim_end_matches(".h5").to_string())
            .is_some_and(|n| CELLRANGER_NAMES.contains(&n.as_str()))
    };
    let mut path = path;
    while own(path) {
        match path.parent().filter(|p| p.file_name().is_some()) {
            Some(parent) => path = parent,
            None => break,
        }
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| path.display().to_string());
    let mut s = name.as_str();
    s = s.strip_suffix(".gz").unwrap_or(s);
    for ext in [
        ".h5ad", ".h5", ".hdf5", ".mtx", ".csv", ".tsv", ".txt", ".arrow", ".parquet",
    ] {
        if let Some(t) = s.strip_suffix(ext) {
            s = t;
            break;
        }
    }
    if let Some(prefix) = s.strip_suffix("matrix") {
        let p = prefix.trim_end_matches(['_', '.', '-']);
        if !p.is_empty() {
            return p.to_string();
        }
        if let Some(parent) = path.parent().and_then(|p| p.file_name()) {
            return parent.to_string_lossy().to_string();
        }
    }
    s.to_string()
}
