//! What `cellweave-export` does: turn a cells table (or an embedding table) into the
//! formats other tools read: `.h5ad` (with raw counts in `layers['counts']` and embeddings
//! in `obsm['X_<name>']`), a 10x MTX folder, or a dense TSV.

use crate::contract::{
    rows_of, CellsTable, Column, Csr, EmbeddingTable, Step, TableKind, ValueKind,
};
use crate::io::formats::h5ad::{anndata_of, write_h5ad, AnnData};
use crate::io::formats::{dense, mtx};
use crate::io::{table, Format};
use crate::{info, Error, Result};
use std::path::{Path, PathBuf};

/// Options of an export (the flags of `cellweave-export`).
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// A cells table of raw counts to store as `layers['counts']`.
    pub counts: Option<PathBuf>,
    /// Embedding tables to store as `obsm['X_<name>']`.
    pub embeddings: Vec<PathBuf>,
}

/// Output formats export writes.
/// The format of an export's output: `.h5ad`, `.tsv`, or a folder name (10x MTX).
pub fn output_format(out: &Path) -> Result<Format> {
    let s = out.to_string_lossy();
    let looks_dir = s.ends_with('/') || out.is_dir() || out.extension().is_none();
    match Format::of(out) {
        Some(Format::H5ad) => Ok(Format::H5ad),
        Some(Format::Tsv) => Ok(Format::Tsv),
        _ if looks_dir => Ok(Format::MtxDir),
        _ => Err(Error::new(
            "unknown output format (expected .h5ad, .tsv, or a folder name for 10x MTX)",
        )
        .field("format")
        .file(out)),
    }
}

/// Rows of `ids` in a table whose ids are `have` (error naming `what` when some are missing).
fn rows_by_id(ids: &[String], have: &[String], what: &str, path: &Path) -> Result<Vec<usize>> {
    rows_of(ids, have).map_err(|(missing, first)| {
        Error::new(format!(
            "{missing} of {} {what} are not in this table (first: '{first}')",
            ids.len()
        ))
        .field(if what == "genes" {
            "gene_ids"
        } else {
            "cell_id"
        })
        .file(path)
    })
}

/// The raw-count matrix of `counts_path` aligned to these cells and genes (by id).
fn aligned_counts(cell_ids: &[String], gene_ids: &[String], counts_path: &Path) -> Result<Csr> {
    let raw = table::read_cells(counts_path)?;
    if raw.values != ValueKind::Counts {
        info!(
            "warning: {} holds '{}' values, not raw counts",
            counts_path.display(),
            raw.values.as_str()
        );
    }
    let rows = rows_by_id(cell_ids, &raw.cell_ids, "cells", counts_path)?;
    let cols = rows_by_id(gene_ids, &raw.gene_ids, "genes", counts_path)?;
    Ok(raw.x.select_rows(&rows).select_cols(&cols))
}

/// An embedding aligned to these cells: (obsm name, dim, values).
fn aligned_embedding(cell_ids: &[String], path: &Path) -> Result<(String, usize, Vec<f32>)> {
    let e = table::read_embedding(path)?;
    let rows = rows_by_id(cell_ids, &e.cell_ids, "cells", path)?;
    let mut data = Vec::with_capacity(rows.len() * e.dim);
    for r in rows {
        data.extend_from_slice(e.row(r));
    }
    Ok((obsm_name(&e.name), e.dim, data))
}

fn obsm_name(name: &str) -> String {
    if name.starts_with("X_") {
        name.to_string()
    } else {
        format!("X_{name}")
    }
}

fn provenance_json(mut p: Vec<Step>, step: &Step) -> String {
    p.push(step.clone());
    serde_json::to_string(&p).unwrap_or_default()
}

/// Export `input` (a cells or embedding table) to `output`; returns a one-line summary.
pub fn export(input: &Path, output: &Path, opts: &ExportOptions, step: &Step) -> Result<String> {
    let format = output_format(output)?;
    crate::io::atomic::check_not_input(output, &[input])?;
    if format != Format::H5ad && (opts.counts.is_some() || !opts.embeddings.is_empty()) {
        return Err(
            Error::new("--counts and --embedding apply to .h5ad output only")
                .field("counts")
                .file(output),
        );
    }
    match table::peek_kind(input)? {
        TableKind::Cells => {
            let t = table::read_cells(input)?;
            export_cells(&t, output, format, opts, step)
        }
        TableKind::Embedding => {
            let e = table::read_embedding(input)?;
            export_embedding(&e, output, format, opts, step)
        }
        other => Err(Error::new(format!(
            "this is a '{}' table; export takes a cells or an embedding table",
            other.as_str()
        ))
        .field(crate::contract::meta::TABLE)
        .file(input)),
    }
}

fn export_cells(
    t: &CellsTable,
    output: &Path,
    format: Format,
    opts: &ExportOptions,
    step: &Step,
) -> Result<String> {
    // MTX and TSV have no place for provenance; the h5ad gets it in uns.
    match format {
        Format::MtxDir => {
            mtx::write_mtx_dir(output, t)?;
            Ok(format!(
                "{} cells x {} genes as a 10x folder",
                t.n_cells(),
                t.n_genes()
            ))
        }
        Format::Tsv => {
            dense::write_dense_tsv(output, t)?;
            Ok(format!(
                "{} cells x {} genes as a dense TSV",
                t.n_cells(),
                t.n_genes()
            ))
        }
        _ => {
            let counts = match &opts.counts {
                Some(p) => Some(aligned_counts(&t.cell_ids, &t.gene_ids, p)?),
                None => None,
            };
            let embs = opts
                .embeddings
                .iter()
                .map(|p| aligned_embedding(&t.cell_ids, p))
                .collect::<Result<Vec<_>>>()?;
            let mut a = anndata_of(t);
            a.uns[0].1 = provenance_json(t.provenance.clone(), step);
            if let Some(c) = &counts {
                a.layers.push(("counts".to_string(), c));
            }
            add_obsm(&mut a, &embs)?;
            write_h5ad(output, &a)?;
            Ok(format!(
                "{} cells x {} genes{}{}",
                t.n_cells(),
                t.n_genes(),
                if counts.is_some() {
                    ", layers['counts']"
                } else {
                    ""
                },
                embs.iter()
                    .map(|(n, d, _)| format!(", obsm['{n}'] ({d} dims)"))
                    .collect::<String>()
            ))
        }
    }
}

fn add_obsm<'a>(a: &mut AnnData<'a>, embs: &'a [(String, usize, Vec<f32>)]) -> Result<()> {
    for (name, dim, data) in embs {
        if a.obsm.iter().any(|(n, _, _)| n == name) {
            return Err(
                Error::new(format!("two embeddings are both named '{name}'")).field("obsm"),
            );
        }
        a.obsm.push((name.clone(), *dim, data));
    }
    Ok(())
}

/// An embedding table as the main input: obs and `obsm` only (no X, 0 genes), or, with
/// `--counts`, X = the raw counts of these cells (all genes of the counts table).
fn export_embedding(
    e: &EmbeddingTable,
    output: &Path,
    format: Format,
    opts: &ExportOptions,
    step: &Step,
) -> Result<String> {
    match format {
        Format::Tsv => {
            dense::write_embedding_tsv(output, e)?;
            return Ok(format!("{} cells x {} dims as TSV", e.n_cells(), e.dim));
        }
        Format::MtxDir => return Err(Error::new(
            "an embedding table has no expression matrix to write as 10x MTX (use .h5ad or .tsv)",
        )
        .field("format")
        .file(output)),
        _ => {}
    }
    let raw = match &opts.counts {
        Some(p) => {
            let raw = table::read_cells(p)?;
            let rows = rows_by_id(&e.cell_ids, &raw.cell_ids, "cells", p)?;
            Some(raw.select_cells(&rows))
        }
        None => None,
    };
    let mut embs = vec![(obsm_name(&e.name), e.dim, e.data.clone())];
    for p in &opts.embeddings {
        embs.push(aligned_embedding(&e.cell_ids, p)?);
    }
    let no_genes: Vec<String> = Vec::new();
    let obs: Vec<(String, Column)> = e.obs.clone();
    let mut a = AnnData {
        cell_ids: &e.cell_ids,
        obs,
        gene_ids: raw
            .as_ref()
            .map(|r| r.gene_ids.as_slice())
            .unwrap_or(&no_genes),
        gene_names: raw
            .as_ref()
            .map(|r| r.gene_names.as_slice())
            .unwrap_or(&no_genes),
        x: raw.as_ref().map(|r| &r.x),
        layers: Vec::new(),
        obsm: Vec::new(),
        uns: vec![(
            "cellweave_provenance".to_string(),
            provenance_json(e.provenance.clone(), step),
        )],
    };
    if let Some(r) = &raw {
        a.uns.push((
            "cellweave_values".to_string(),
            r.values.as_str().to_string(),
        ));
    }
    add_obsm(&mut a, &embs)?;
    write_h5ad(output, &a)?;
    Ok(format!(
        "{} cells, {}{}",
        e.n_cells(),
        if raw.is_some() {
            "X = raw counts"
        } else {
            "no X"
        },
        embs.iter()
            .map(|(n, d, _)| format!(", obsm['{n}'] ({d} dims)"))
            .collect::<String>()
    ))
}
