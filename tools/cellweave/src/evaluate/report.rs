//! Score outputs: the long `scores` table (Arrow / Parquet), a wide TSV (one row per
//! embedding, one column per score: what MultiQC's custom-content tables and spreadsheets
//! read) and JSON.

use super::{aggregate, MetricId, Scores};
use crate::contract::{Column, Frame, Step, TableKind};
use crate::io::atomic;
use crate::Result;
use std::io::Write;
use std::path::Path;

/// One scored embedding with its aggregates.
#[derive(Debug, Clone)]
pub struct Scored {
    /// Name of the embedding.
    pub name: String,
    /// The file it was read from.
    pub path: String,
    /// What the file was (embedding, cells (PCA 50), tsv, imputed).
    pub kind: String,
    /// Cells scored.
    pub n_cells: usize,
    /// Dimensions (genes for an imputation).
    pub dim: usize,
    /// Label names (for the per-label kBET detail).
    pub label_names: Vec<String>,
    /// The metric values, timings and details.
    pub scores: Scores,
    /// Aggregates and the CLAIRE F1 (filled by [`add_aggregates`]).
    pub aggregates: aggregate::Values,
}

impl Scored {
    /// Every value: the metrics, then the aggregates.
    pub fn all_values(&self) -> Vec<(String, f64)> {
        self.scores
            .values
            .iter()
            .chain(&self.aggregates)
            .cloned()
            .collect()
    }
}

/// Fill in the aggregates of every embedding (`min_max_scale`: scale each metric across the
/// embeddings first, as the Benchmarker's default table does).
pub fn add_aggregates(all: &mut [Scored], min_max_scale: bool) {
    let values: Vec<aggregate::Values> = all.iter().map(|s| s.scores.values.clone()).collect();
    let scib = aggregate::scib_aggregates(&values, min_max_scale);
    let claire = aggregate::claire_f1(&values);
    for ((s, a), c) in all.iter_mut().zip(scib).zip(claire) {
        s.aggregates = a.into_iter().chain(c).collect();
    }
}

/// The group a score belongs to: `bio`, `batch`, `claire`, `aggregate` or `impute`.
pub fn group_of(name: &str) -> &'static str {
    if super::imputation::OUTPUTS.contains(&name) {
        return "impute";
    }
    if name.starts_with("agg_")
        || name == "claire_f1"
        || name == "claire_batch_mixing"
        || name == "claire_bio_conservation"
    {
        return "aggregate";
    }
    match MetricId::ALL
        .iter()
        .find(|m| m.outputs().iter().any(|o| o == name))
    {
        Some(m) if m.name().starts_with("claire_") => "claire",
        Some(m) if m.is_bio() => "bio",
        Some(_) => "batch",
        None => "other",
    }
}

/// The long scores table: one row per (embedding, score).
pub fn scores_frame(all: &[Scored], step: Step, label_key: &str, batch_key: &str) -> Frame {
    let (mut emb, mut metric, mut value, mut group) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for s in all {
        for (n, v) in s.all_values() {
            emb.push(Some(s.name.clone()));
            group.push(Some(group_of(&n).to_string()));
            metric.push(Some(n));
            value.push(v);
        }
    }
    let mut f = Frame::new(TableKind::Scores)
        .with("embedding", Column::Str(emb))
        .with("metric", Column::Str(metric))
        .with("value", Column::F64(value))
        .with("group", Column::Str(group));
    f.meta
        .insert("cellweave.label_key".into(), label_key.to_string());
    f.meta
        .insert("cellweave.batch_key".into(), batch_key.to_string());
    f.provenance.push(step);
    f
}

/// A value for the TSV: counts (`n_...`) as integers, scores with 6 decimals, NaN as `NA`.
fn fmt(name: &str, v: f64) -> String {
    if v.is_nan() {
        "NA".into()
    } else if name.starts_with("n_") && v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.6}")
    }
}

/// Wide TSV: `embedding`, `n_cells`, `dim`, then one column per score.
pub fn write_wide_tsv(path: &Path, all: &[Scored]) -> Result<()> {
    let mut names: Vec<String> = Vec::new();
    for s in all {
        for (n, _) in s.all_values() {
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    atomic::write_file(path, |w| {
        writeln!(w, "embedding\tn_cells\tdim\t{}", names.join("\t"))?;
        for s in all {
            let vals = s.all_values();
            let row: Vec<String> = names
                .iter()
                .map(|n| {
                    vals.iter()
                        .find(|(m, _)| m == n)
                        .map(|(_, v)| fmt(n, *v))
                        .unwrap_or_else(|| "NA".into())
                })
                .collect();
            writeln!(
                w,
                "{}\t{}\t{}\t{}",
                s.name,
                s.n_cells,
                s.dim,
                row.join("\t")
            )?;
        }
        Ok(())
    })
}

fn num(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v)
        .map(serde_json::Value::Number)
        .unwrap_or(serde_json::Value::Null)
}

/// JSON: per embedding its metrics, aggregates, timings, per-label kBET and sweep choices.
pub fn to_json(all: &[Scored], params: serde_json::Value) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let mut embs = Map::new();
    for s in all {
        let map = |named: &[(String, f64)]| -> Map<String, Value> {
            named.iter().map(|(n, v)| (n.clone(), num(*v))).collect()
        };
        let (metrics, aggs) = (map(&s.scores.values), map(&s.aggregates));
        let timings = map(&s.scores.timings);
        let kbet: Vec<Value> = s
            .scores
            .kbet_labels
            .iter()
            .map(|k| json!({"label": s.label_names.get(k.label).cloned().unwrap_or_default(), "n_cells": k.n_cells, "k0": k.k0, "score": num(k.score)}))
            .collect();
        let sweeps: Vec<Value> = s
            .scores
            .sweeps
            .iter()
            .map(|(n, r, c)| json!({"metric": n, "best_resolution": r, "n_clusters": c}))
            .collect();
        embs.insert(
            s.name.clone(),
            json!({
                "path": s.path, "kind": s.kind, "n_cells": s.n_cells, "dim": s.dim,
                "metrics": metrics, "aggregates": aggs, "timings_s": timings,
                "kbet_per_label_detail": kbet, "sweeps": sweeps,
                "knn_search": s.scores.knn_search, "silhouette_cells": s.scores.silhouette_cells,
            }),
        );
    }
    json!({ "tool": "cellweave-score", "version": crate::VERSION, "params": params, "embeddings": embs })
}

/// Write the JSON report atomically.
pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    atomic::write_file(path, |w| {
        serde_json::to_writer_pretty(&mut *w, value)?;
        writeln!(w)?;
        Ok(())
    })
}
