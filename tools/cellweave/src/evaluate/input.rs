//! What `cellweave-score` scores: embedding tables, cells tables (scored on their 50-component
//! PCA, the unintegrated baseline) and plain TSV embeddings (first column the cell id,
//! optional header row), with labels and batches from the table's own columns or from an
//! `--obs` file joined by cell id.

use super::Codes;
use crate::contract::{rows_of, Column, Named, TableKind, ValueKind};
use crate::io::formats::obs::ObsTable;
use crate::io::table::{peek_kind, read_cells, read_embedding};
use crate::io::Format;
use crate::{Error, Result, ResultExt};
use std::collections::HashMap;
use std::path::Path;

/// Components of the PCA computed for a cells table.
pub const PCA_COMPONENTS: usize = 50;

/// One embedding to score.
#[derive(Debug, Clone)]
pub struct Scorable {
    /// Name of the embedding in the scores table.
    pub name: String,
    /// The file it was read from.
    pub path: String,
    /// Cell ids, in row order.
    pub cell_ids: Vec<String>,
    /// Dimensions per cell.
    pub d: usize,
    /// `n x d`, row-major.
    pub x: Vec<f32>,
    /// Per-cell columns the file carried (empty for TSV).
    pub obs: Vec<Named>,
    /// What the file was: `embedding`, `cells (PCA 50)` or `tsv`.
    pub kind: &'static str,
}

/// The file name without its extension(s) (`.gz` included).
pub fn stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "embedding".into());
    let name = name.strip_suffix(".gz").unwrap_or(&name).to_string();
    match name.rfind('.') {
        Some(p) if p > 0 => name[..p].to_string(),
        _ => name,
    }
}

/// A TSV/CSV embedding: first column cell id, the rest numbers; a first row whose second
/// field is not a number is a header.
pub fn read_embedding_tsv(path: &Path) -> Result<(Vec<String>, usize, Vec<f32>)> {
    let text = {
        use std::io::Read;
        let f = std::fs::File::open(path).at(path)?;
        let mut s = String::new();
        if path.to_string_lossy().ends_with(".gz") {
            flate2::read::MultiGzDecoder::new(f)
                .read_to_string(&mut s)
                .at(path)?;
        } else {
            std::io::BufReader::new(f).read_to_string(&mut s).at(path)?;
        }
        s
    };
    let delim = if path
        .to_string_lossy()
        .to_lowercase()
        .trim_end_matches(".gz")
        .ends_with(".csv")
    {
        ','
    } else {
        '\t'
    };
    let mut ids = Vec::new();
    let mut data = Vec::new();
    let mut d = 0usize;
    for (ln, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = line.split(delim);
        let id = fields.next().unwrap_or("");
        let rest: Vec<&str> = fields.collect();
        if ids.is_empty()
            && d == 0
            && rest
                .first()
                .map(|v| v.trim().parse::<f64>().is_err())
                .unwrap_or(true)
        {
            continue; // header row
        }
        if d == 0 {
            d = rest.len();
            if d == 0 {
                return Err(Error::new(format!(
                    "line {}: no values after the cell id (expected cell id then numbers)",
                    ln + 1
                ))
                .file(path));
            }
        }
        if rest.len() != d {
            return Err(Error::new(format!(
                "line {}: {} values (expected {d}, as on the first data line)",
                ln + 1,
                rest.len()
            ))
            .file(path));
        }
        for v in rest {
            let x: f32 = v.trim().parse().map_err(|_| {
                Error::new(format!("line {}: '{v}' is not a number", ln + 1)).file(path)
            })?;
            if !x.is_finite() {
                return Err(
                    Error::new(format!("line {}: non-finite value '{v}'", ln + 1)).file(path),
                );
            }
            data.push(x);
        }
        ids.push(id.to_string());
    }
    if ids.is_empty() {
        return Err(Error::new(
            "no data rows (expected a cell id column then the embedding values)",
        )
        .file(path));
    }
    crate::contract::check_unique(&ids).map_err(|e| e.field("cell_id").file(path))?;
    Ok((ids, d, data))
}

/// Read anything scorable: by extension, and for `.arrow` / `.parquet` by table kind.
pub fn read_scorable(path: &Path, seed: u64) -> Result<Scorable> {
    let p = path.display().to_string();
    match Format::of(path) {
        Some(Format::Tsv) | Some(Format::Csv) => {
            let (cell_ids, d, x) = read_embedding_tsv(path)?;
            Ok(Scorable { name: stem(path), path: p, cell_ids, d, x, obs: Vec::new(), kind: "tsv" })
        }
        Some(Format::Arrow) | Some(Format::Parquet) => match peek_kind(path)? {
            TableKind::Embedding => {
                let t = read_embedding(path)?;
                let name = if t.name.is_empty() || t.name == "embedding" { stem(path) } else { t.name.clone() };
                Ok(Scorable { name, path: p, cell_ids: t.cell_ids, d: t.dim, x: t.data, obs: t.obs, kind: "embedding" })
            }
            TableKind::Cells => {
                let t = read_cells(path)?;
                if t.values == ValueKind::Counts {
                    return Err(Error::new(
                        "raw counts: a PCA baseline is taken on normalized, log1p values (run cellweave-normalize, and cellweave-hvg)",
                    )
                    .field(crate::contract::meta::VALUES)
                    .file(path));
                }
                let (n, g) = (t.n_cells(), t.n_genes());
                if n < 2 || g < 2 {
                    return Err(Error::new(format!("{n} cells x {g} genes: too small for a PCA baseline")).file(path));
                }
                // on row blocks of the sparse matrix: no dense cells x genes copy
                let rows: Vec<usize> = (0..n).collect();
                let solver = crate::numerics::pca::Solver::Auto;
                let (k, scores, _) = crate::numerics::blocked::pca_rows(&t.x, &rows, PCA_COMPONENTS.min(n.min(g)), seed, solver);
                let obs = crate::contract::EmbeddingTable::obs_from_cells(&t);
                Ok(Scorable { name: format!("{}_pca", stem(path)), path: p, cell_ids: t.cell_ids, d: k, x: scores, obs, kind: "cells (PCA 50)" })
            }
            other => Err(Error::new(format!("this is a '{}' table (expected an embedding or a cells table)", other.as_str())).file(path)),
        },
        _ => Err(Error::new("unknown format (expected .arrow, .parquet, or a .tsv/.csv embedding with cell ids in the first column)").file(path)),
    }
}

/// Labels and batches for a scorable: from `obs` (joined by cell id) when given, else from
/// the file's own columns.
pub fn codes_for(s: &Scorable, key: &str, obs: Option<(&ObsTable, &Path)>) -> Result<Codes> {
    let values: Vec<String> = match obs {
        Some((o, opath)) => {
            let col = o
                .columns
                .iter()
                .find(|(n, _)| n == key)
                .map(|(_, c)| c)
                .ok_or_else(|| {
                    missing_column(key, o.columns.iter().map(|(n, _)| n.as_str()), opath)
                })?;
            let index: HashMap<&str, usize> = o
                .cell_ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.as_str(), i))
                .collect();
            let mut out = Vec::with_capacity(s.cell_ids.len());
            for id in &s.cell_ids {
                let r = *index.get(id.as_str()).ok_or_else(|| {
                    Error::new(format!("cell '{id}' of {} is not in this file (expected every scored cell to have a row)", s.path))
                        .field("cell_id")
                        .file(opath)
                })?;
                out.push(text(col, r, id, key, opath)?);
            }
            out
        }
        None => {
            let col = s.obs.iter().find(|(n, _)| n == key).map(|(_, c)| c).ok_or_else(|| {
                if s.obs.is_empty() {
                    Error::new("a plain TSV embedding has no per-cell columns: pass --obs obs.tsv (cell_id, batch, cell_type)")
                        .field(key)
                        .file(&s.path)
                } else {
                    missing_column(key, s.obs.iter().map(|(n, _)| n.as_str()), Path::new(&s.path))
                }
            })?;
            (0..s.cell_ids.len())
                .map(|r| text(col, r, &s.cell_ids[r], key, Path::new(&s.path)))
                .collect::<Result<_>>()?
        }
    };
    Ok(Codes::from_strings(&values))
}

fn missing_column<'a>(key: &str, names: impl Iterator<Item = &'a str>, path: &Path) -> Error {
    let names: Vec<&str> = names.collect();
    Error::new(format!("column not found (columns: {})", names.join(", ")))
        .field(key)
        .file(path)
}

fn text(col: &Column, r: usize, id: &str, key: &str, path: &Path) -> Result<String> {
    col.text(r).ok_or_else(|| {
        Error::new(format!(
            "cell '{id}' has no value (every scored cell needs one)"
        ))
        .field(key)
        .file(path)
    })
}

/// Reorder `other` (cell ids + rows) to the cell order `ids`; error names the file. Both
/// must hold the same cells (the same fingerprint once in one order): an embedding of
/// another data set whose ids happen to be among `other`'s is refused, not scored against
/// the wrong cells.
pub fn align(ids: &[String], other: &Scorable) -> Result<Vec<f32>> {
    if ids.len() != other.cell_ids.len() {
        return Err(Error::new(format!(
            "{} cells (fingerprint {}), but the scored embedding has {} (fingerprint {}): the unintegrated baseline must be of the same cells",
            other.cell_ids.len(),
            crate::contract::fingerprint(&other.cell_ids),
            ids.len(),
            crate::contract::fingerprint(ids),
        ))
        .field("cell_id")
        .file(&other.path));
    }
    let rows = rows_of(ids, &other.cell_ids).map_err(|(_, id)| {
        Error::new(format!(
            "cell '{id}' is missing (the unintegrated embedding must cover every scored cell)"
        ))
        .field("cell_id")
        .file(&other.path)
    })?;
    let d = other.d;
    let mut out = Vec::with_capacity(ids.len() * d);
    for r in rows {
        out.extend_from_slice(&other.x[r * d..(r + 1) * d]);
    }
    Ok(out)
}
