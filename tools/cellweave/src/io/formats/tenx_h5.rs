//! 10x Genomics HDF5 feature-barcode matrices (`filtered_feature_bc_matrix.h5`).
//!
//! CellRanger >= 3: `matrix/{data, indices, indptr, shape, barcodes}` and
//! `matrix/features/{id, name, feature_type}`. CellRanger 2: one group per genome with
//! `genes` and `gene_names` instead of `features/`. The matrix is genes x cells stored by
//! column, which is exactly cells x genes by row.

use super::h5ad::{member, open_h5, read_strings};
use super::single_file_table;
use crate::contract::{CellsTable, Csr, ValueKind};
use crate::{Error, Result};
use hdf5::{File, Group};
use std::path::Path;

fn dataset_strings(g: &Group, name: &str, elem: &str) -> Result<Vec<String>> {
    let ds = g
        .dataset(name)
        .map_err(|_| Error::new("missing").field(format!("{elem}/{name}")))?;
    read_strings(&ds).map_err(|e| e.field(format!("{elem}/{name}")))
}

/// The matrix group: `matrix` (v3) or the single genome group (v2).
fn matrix_group(file: &File) -> Result<(Group, String)> {
    if let Ok(g) = file.group("matrix") {
        return Ok((g, "matrix".into()));
    }
    let groups: Vec<String> = file
        .member_names()?
        .into_iter()
        .filter(|n| {
            file.group(n)
                .map(|g| g.link_exists("indptr"))
                .unwrap_or(false)
        })
        .collect();
    match groups.as_slice() {
        [one] => Ok((file.group(one)?, one.clone())),
        [] => Err(Error::new("no 10x matrix group (expected 'matrix' from CellRanger 3+, or one genome group from CellRanger 2)").field("matrix")),
        many => Err(Error::new(format!("several genome groups ({}); only single-genome files are supported", many.join(", "))).field("matrix")),
    }
}

/// Read a 10x `.h5` file as a cells table (one batch named after the file).
pub fn read_tenx_h5(path: &Path, values: ValueKind) -> Result<CellsTable> {
    let file = open_h5(path)?;
    (|| -> Result<CellsTable> {
        let (g, elem) = matrix_group(&file)?;
        let shape: Vec<u64> = g
            .dataset("shape")
            .and_then(|d| d.read_raw::<u64>())
            .map_err(|_| Error::new("missing or unreadable").field(format!("{elem}/shape")))?;
        if shape.len() != 2 {
            return Err(Error::new(format!(
                "expected 2 numbers (genes, cells), found {}",
                shape.len()
            ))
            .field(format!("{elem}/shape")));
        }
        let (n_genes, n_cells) = (shape[0] as usize, shape[1] as usize);
        let cell_ids = dataset_strings(&g, "barcodes", &elem)?;
        let (gene_ids, gene_names) = if let Ok(f) = g.group("features") {
            let e = format!("{elem}/features");
            (
                dataset_strings(&f, "id", &e)?,
                dataset_strings(&f, "name", &e)?,
            )
        } else {
            (
                dataset_strings(&g, "genes", &elem)?,
                dataset_strings(&g, "gene_names", &elem)?,
            )
        };
        if cell_ids.len() != n_cells {
            return Err(Error::new(format!(
                "{} barcodes but shape says {n_cells} cells",
                cell_ids.len()
            ))
            .field(format!("{elem}/barcodes")));
        }
        if gene_ids.len() != n_genes || gene_names.len() != n_genes {
            return Err(Error::new(format!(
                "{} ids and {} names but shape says {n_genes} features",
                gene_ids.len(),
                gene_names.len()
            ))
            .field(format!("{elem}/features")));
        }
        // Stored by column over cells: read as rows = cells.
        let x = read_csc_as_csr(&g, &elem, n_cells, n_genes, values == ValueKind::Counts)?;
        Ok(single_file_table(
            path,
            cell_ids,
            Vec::new(),
            (gene_ids, gene_names),
            x,
            values,
        ))
    })()
    .map_err(|e| e.file(path))
}

fn read_csc_as_csr(
    g: &Group,
    elem: &str,
    n_cells: usize,
    n_genes: usize,
    counts: bool,
) -> Result<Csr> {
    let ds = |n: &str| member(g, elem, n);
    let data: Vec<f32> = ds("data")?.read_raw::<f32>()?;
    if counts {
        super::h5ad::check_counts(&data, &format!("{elem}/data"))?;
    }
    let indices: Vec<i64> = ds("indices")?.read_raw::<i64>()?;
    if indices.len() != data.len() {
        return Err(Error::new(format!(
            "{} positions but {} values",
            indices.len(),
            data.len()
        ))
        .field(format!("{elem}/indices")));
    }
    if let Some(b) = indices.iter().find(|&&v| v < 0 || v as usize >= n_genes) {
        return Err(
            Error::new(format!("gene position {b} is outside 0..{n_genes}"))
                .field(format!("{elem}/indices")),
        );
    }
    let indptr: Vec<i64> = ds("indptr")?.read_raw::<i64>()?;
    if indptr.len() != n_cells + 1
        || indptr[0] != 0
        || *indptr.last().unwrap() as usize != data.len()
        || indptr.windows(2).any(|w| w[0] > w[1])
    {
        return Err(Error::new(format!(
            "offsets must be {} numbers rising from 0 to {}",
            n_cells + 1,
            data.len()
        ))
        .field(format!("{elem}/indptr")));
    }
    let mut m = Csr {
        n_cols: n_genes,
        indptr: indptr.into_iter().map(|v| v as u64).collect(),
        indices: indices.into_iter().map(|v| v as u32).collect(),
        data,
    };
    super::mtx::sort_rows(&mut m);
    Ok(m)
}
