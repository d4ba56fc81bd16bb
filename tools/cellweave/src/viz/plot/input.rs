//! Reading an embedding from a contract table or from plain text, and scores or training
//! logs written as text.
//!
//! Text embeddings (`.tsv`/`.csv`, optionally gzipped) have a header row and one row per
//! cell: the cell id first, then the coordinates (as in `reference/<dataset>/embed/`).
//! Per-cell metadata can be joined from an obs table (`--obs obs.tsv`) by cell id.

use crate::contract::{Column, EmbeddingTable, Frame, TableKind};
use crate::io::formats::obs::{
    delimiter_of, infer_column, join_columns, read_lines, read_obs, split_record, ObsTable,
};
use crate::io::{table, Format};
use crate::{Error, Result};
use std::path::Path;

/// Read an embedding table (`.arrow`/`.parquet`) or a text embedding, and join `obs` if given.
pub fn read_embedding_any(path: &Path, obs: Option<&Path>) -> Result<EmbeddingTable> {
    let mut emb = match Format::of(path) {
        Some(Format::Arrow | Format::Parquet) => table::read_embedding(path)?,
        Some(Format::Tsv | Format::Csv) => read_text_embedding(path)?,
        _ => return Err(Error::new(
            "expected an embedding: a .arrow/.parquet embedding table or a .tsv/.csv text table",
        )
        .file(path)),
    };
    if let Some(obs_path) = obs {
        join(&mut emb, &read_obs(obs_path)?, obs_path)?;
    }
    Ok(emb)
}

/// A text embedding: every column after the cell id must hold numbers.
pub fn read_text_embedding(path: &Path) -> Result<EmbeddingTable> {
    let t = read_obs(path)?;
    let dim = t.columns.len();
    let n = t.cell_ids.len();
    let mut data = vec![0f32; n * dim];
    for (c, (name, col)) in t.columns.iter().enumerate() {
        let values: Vec<f64> =
            match col {
                Column::F64(v) => v.clone(),
                Column::I64(v) => v
                    .iter()
                    .map(|x| x.map(|x| x as f64).unwrap_or(f64::NAN))
                    .collect(),
                _ => return Err(Error::new(
                    "expected numbers (an embedding has the cell id then one number per dimension)",
                )
                .field(name.clone())
                .file(path)),
            };
        if let Some(r) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::new(format!(
                "missing or non-finite value for cell '{}'",
                t.cell_ids[r]
            ))
            .field(name.clone())
            .file(path));
        }
        for (r, v) in values.iter().enumerate() {
            data[r * dim + c] = *v as f32;
        }
    }
    let stem = path
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let name = stem.split('.').next().unwrap_or("embedding").to_string();
    Ok(EmbeddingTable {
        name,
        cell_ids: t.cell_ids,
        obs: Vec::new(),
        dim,
        data,
        provenance: Vec::new(),
    })
}

/// Join obs columns onto the embedding's cells by id (replacing columns of the same name).
/// Every cell must have a row.
pub fn join(emb: &mut EmbeddingTable, obs: &ObsTable, path: &Path) -> Result<()> {
    join_columns(
        &emb.cell_ids,
        "cells of the embedding",
        &mut emb.obs,
        obs,
        path,
    )
    .map(|_| ())
}

/// What a text table holds, from its header: scores (`metric` and `value` columns, or a
/// first column `embedding`), a training log (`epoch` and a column with `loss` in its
/// name) or else an embedding.
pub fn text_kind(path: &Path) -> Result<TableKind> {
    use std::io::BufRead;
    let mut first = String::new();
    crate::io::formats::obs::open_text(path)?
        .read_line(&mut first)
        .map_err(|e| Error::new(e.to_string()).file(path))?;
    let names: Vec<String> = split_record(first.trim_end_matches(['\n', '\r']), delimiter_of(path));
    let has = |n: &str| names.iter().any(|x| x == n);
    Ok(
        if (has("metric") && has("value")) || names.first().map(String::as_str) == Some("embedding")
        {
            TableKind::Scores
        } else if has("epoch") && names.iter().any(|n| n.to_lowercase().contains("loss")) {
            TableKind::TrainingLog
        } else {
            TableKind::Embedding
        },
    )
}

/// A text table (header row, one record per line) as a frame of the given kind, with
/// column types inferred as for obs tables.
pub fn read_text_frame(path: &Path, kind: TableKind) -> Result<Frame> {
    let delim = delimiter_of(path);
    let lines = read_lines(path)?;
    let mut rows = lines.iter().filter(|l| !l.trim().is_empty());
    let header = split_record(
        rows.next()
            .ok_or_else(|| Error::new("empty file (expected a header row)").file(path))?,
        delim,
    );
    let mut cells: Vec<Vec<String>> = vec![Vec::new(); header.len()];
    for (r, line) in rows.enumerate() {
        let f = split_record(line, delim);
        if f.len() != header.len() {
            return Err(Error::new(format!(
                "line {}: {} fields, the header has {}",
                r + 2,
                f.len(),
                header.len()
            ))
            .file(path));
        }
        for (c, v) in f.into_iter().enumerate() {
            cells[c].push(v);
        }
    }
    let mut frame = Frame::new(kind);
    for (name, vals) in header.into_iter().zip(cells) {
        let refs: Vec<&str> = vals.iter().map(String::as_str).collect();
        frame.columns.push((name, infer_column(&refs)));
    }
    Ok(frame)
}
