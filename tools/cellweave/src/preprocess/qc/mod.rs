//! Quality control: cell filters (genes detected, total counts, mitochondrial share) then
//! the gene filter (cells expressing), in scanpy's order and with scanpy's comparisons.
//!
//! scanpy's `filter_cells` keeps a cell with `n_genes >= min_genes`, `n_genes <= max_genes`,
//! `total >= min_counts`, `total <= max_counts` (a gene is detected when its value is > 0);
//! each criterion looks only at the cell's own row, so applying them together equals
//! scanpy's one-call-per-criterion sequence. The mitochondrial share is computed over all
//! genes before any gene is removed and a cell is kept when it is `<= max_mito_pct`.
//! `filter_genes(min_cells)` then runs on the kept cells: a gene is kept when it is > 0 in
//! at least `min_cells` of them. Explicit zeros stay in the matrix (as in scanpy).

pub mod stage;

use crate::contract::{
    fingerprint_of, meta, Categorical, CellsTable, Column, Csr, Frame, Step, TableKind, ValueKind,
};
use crate::io::stream::{self, CellsInput};
use crate::io::table::{self, CellsMeta, COL_BATCH};
use crate::numerics::stats::median;
use crate::{Error, Result};
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use rayon::prelude::*;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

/// Rows per parallel chunk for per-gene reductions (fixed, so results do not depend on
/// the number of threads).
const ROWS_PER_CHUNK: usize = 4096;

/// The filters to apply (the flags of `cellweave-filter`). `None` disables a criterion.
#[derive(Debug, Clone, Serialize, clap::Args)]
pub struct QcParams {
    /// Keep genes detected (> 0) in at least this many of the kept cells
    #[arg(long, default_value_t = 3)]
    pub min_cells: u64,
    /// Keep cells with at least this many genes detected
    #[arg(long)]
    pub min_genes: Option<u64>,
    /// Keep cells with at most this many genes detected
    #[arg(long)]
    pub max_genes: Option<u64>,
    /// Keep cells with at least this many counts (>= 0)
    #[arg(value_parser = crate::cli::range::non_negative::<f64>, long)]
    pub min_counts: Option<f64>,
    /// Keep cells with at most this many counts (>= 0)
    #[arg(value_parser = crate::cli::range::non_negative::<f64>, long)]
    pub max_counts: Option<f64>,
    /// Keep cells with at most this percentage of counts in mitochondrial genes (0 to 100)
    #[arg(value_parser = crate::cli::range::percent, long)]
    pub max_mito_pct: Option<f64>,
    /// Mitochondrial genes: gene names starting with this (any case)
    #[arg(long, default_value = "MT-")]
    pub mito_prefix: String,
}

impl Default for QcParams {
    fn default() -> Self {
        crate::cli::defaults()
    }
}

/// The cell criteria, in the order of the report's columns.
pub const CRITERIA: [&str; 5] = [
    "min_genes",
    "max_genes",
    "min_counts",
    "max_counts",
    "max_mito_pct",
];

/// Per-cell QC metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct CellMetrics {
    /// Genes with a value > 0.
    pub n_genes: Vec<u32>,
    /// Sum of the cell's values.
    pub total_counts: Vec<f64>,
    /// Percentage of the cell's counts in mitochondrial genes (0 for an empty cell).
    pub mito_pct: Vec<f64>,
}

/// Which genes are mitochondrial: name starts with `prefix`, ignoring ASCII case.
pub fn mito_genes(names: &[String], prefix: &str) -> Vec<bool> {
    let p = prefix.as_bytes();
    names
        .iter()
        .map(|n| {
            !p.is_empty() && n.len() >= p.len() && n.as_bytes()[..p.len()].eq_ignore_ascii_case(p)
        })
        .collect()
}

/// A cell's genes detected, total counts and mitochondrial percentage.
type Metrics = (u32, f64, f64);

/// Per gene: cells with a value > 0, and total counts.
type GeneCounts = (Vec<u32>, Vec<f64>);

/// [`GeneCounts`] being summed: both numbers of a gene side by side (one cache line).
type GeneSums = Vec<[f64; 2]>;

/// Genes detected, total counts and mitochondrial percentage of one cell.
#[inline]
fn row_metrics(idx: &[u32], val: &[f32], mito: &[bool]) -> Metrics {
    let (mut n, mut tot, mut mt) = (0u32, 0f64, 0f64);
    for (&c, &v) in idx.iter().zip(val) {
        n += (v > 0.0) as u32;
        tot += v as f64;
        if mito[c as usize] {
            mt += v as f64;
        }
    }
    (n, tot, if tot > 0.0 { 100.0 * mt / tot } else { 0.0 })
}

impl CellMetrics {
    fn push(&mut self, (n, tot, mt): Metrics) {
        self.n_genes.push(n);
        self.total_counts.push(tot);
        self.mito_pct.push(mt);
    }
}

/// Genes detected, total counts and mitochondrial percentage of every cell.
pub fn cell_metrics(x: &Csr, mito: &[bool]) -> CellMetrics {
    let per: Vec<Metrics> = (0..x.n_rows())
        .into_par_iter()
        .map(|r| {
            let (idx, val) = x.row(r);
            row_metrics(idx, val, mito)
        })
        .collect();
    let mut m = CellMetrics {
        n_genes: Vec::with_capacity(per.len()),
        total_counts: Vec::with_capacity(per.len()),
        mito_pct: Vec::with_capacity(per.len()),
    };
    per.into_iter().for_each(|p| m.push(p));
    m
}

/// Which criteria of [`CRITERIA`] a cell fails.
fn cell_fails((g, c, mt): Metrics, p: &QcParams) -> [bool; 5] {
    let g = g as u64;
    [
        p.min_genes.is_some_and(|v| g < v),
        p.max_genes.is_some_and(|v| g > v),
        p.min_counts.is_some_and(|v| c < v),
        p.max_counts.is_some_and(|v| c > v),
        p.max_mito_pct.is_some_and(|v| mt > v),
    ]
}

/// Per gene: cells with a value > 0 and total counts, over the rows where `keep` is true.
pub fn gene_totals(x: &Csr, keep: &[bool]) -> GeneCounts {
    let g = x.n_cols;
    let chunks: Vec<GeneSums> = (0..x.n_rows().div_ceil(ROWS_PER_CHUNK))
        .into_par_iter()
        .map(|k| {
            let rows = k * ROWS_PER_CHUNK..((k + 1) * ROWS_PER_CHUNK).min(x.n_rows());
            let mut acc = vec![[0f64; 2]; g];
            for r in rows.filter(|&r| keep[r]) {
                let (idx, val) = x.row(r);
                add_gene_counts(&mut acc, idx, val);
            }
            acc
        })
        .collect();
    sum_gene_counts(g, chunks)
}

/// Add the rows' chunks of [`GeneSums`] in order.
fn sum_gene_counts(g: usize, parts: Vec<GeneSums>) -> GeneCounts {
    let mut total = vec![[0f64; 2]; g];
    for part in parts {
        add_sums(&mut total, &part);
    }
    (
        total.iter().map(|a| a[0] as u32).collect(),
        total.iter().map(|a| a[1]).collect(),
    )
}

fn add_sums(total: &mut GeneSums, part: &GeneSums) {
    total.iter_mut().zip(part).for_each(|(a, b)| {
        a[0] += b[0];
        a[1] += b[1];
    });
}

#[inline]
fn add_gene_counts(acc: &mut GeneSums, idx: &[u32], val: &[f32]) {
    for (&c, &v) in idx.iter().zip(val) {
        let a = &mut acc[c as usize];
        a[0] += (v > 0.0) as u32 as f64;
        a[1] += v as f64;
    }
}

/// Keep the rows where `keep_rows` is true and the columns whose `col_map` entry is not
/// `u32::MAX` (renumbered to that entry), in place: no second copy of the matrix.
pub fn retain(x: &mut Csr, keep_rows: &[bool], col_map: &[u32], n_cols: usize) {
    let mut indptr = Vec::with_capacity(keep_rows.iter().filter(|&&k| k).count() + 1);
    indptr.push(0u64);
    let mut w = 0usize;
    for (r, &keep) in keep_rows.iter().enumerate() {
        if !keep {
            continue;
        }
        for j in x.indptr[r] as usize..x.indptr[r + 1] as usize {
            let c = col_map[x.indices[j] as usize];
            if c != u32::MAX {
                x.indices[w] = c;
                x.data[w] = x.data[j];
                w += 1;
            }
        }
        indptr.push(w as u64);
    }
    x.indices.truncate(w);
    x.data.truncate(w);
    x.indptr = indptr;
    x.n_cols = n_cols;
}

/// What the filter removed, per batch and overall.
#[derive(Debug, Clone, Default)]
pub struct QcReport {
    /// Batch names, then "all".
    pub scopes: Vec<String>,
    /// Cells before the filter, per scope.
    pub cells_in: Vec<u64>,
    /// Cells kept, per scope.
    pub cells_out: Vec<u64>,
    /// Cells failing each criterion of [`CRITERIA`] (a cell may fail several).
    pub failed: Vec<[u64; 5]>,
    /// Median genes detected of the kept cells, per scope.
    pub median_genes: Vec<f64>,
    /// Median total counts of the kept cells, per scope.
    pub median_counts: Vec<f64>,
    /// Median mitochondrial percentage of the kept cells, per scope.
    pub median_mito_pct: Vec<f64>,
    /// Genes before the filter.
    pub genes_in: u64,
    /// Genes kept.
    pub genes_out: u64,
    /// Genes removed by `min_cells`.
    pub genes_removed_min_cells: u64,
    /// Genes counted as mitochondrial.
    pub n_mito_genes: u64,
    /// What the filter found suspicious (e.g. no mitochondrial gene with the prefix).
    pub warnings: Vec<String>,
}

impl QcReport {
    /// The report as a `qc` table: one row per batch, then a row `all` (gene figures only there).
    pub fn to_frame(&self, params: &QcParams) -> Frame {
        let last = self.scopes.len() - 1;
        let i64s =
            |f: &dyn Fn(usize) -> u64| Column::I64((0..=last).map(|i| Some(f(i) as i64)).collect());
        let genes = |v: u64| {
            Column::I64(
                (0..=last)
                    .map(|i| (i == last).then_some(v as i64))
                    .collect(),
            )
        };
        let mut f = Frame::new(TableKind::Qc)
            .with(
                "batch",
                Column::Str(self.scopes.iter().cloned().map(Some).collect()),
            )
            .with("cells_in", i64s(&|i| self.cells_in[i]))
            .with("cells_out", i64s(&|i| self.cells_out[i]))
            .with(
                "cells_removed",
                i64s(&|i| self.cells_in[i] - self.cells_out[i]),
            );
        for (k, name) in CRITERIA.iter().enumerate() {
            f = f.with(&format!("failed_{name}"), i64s(&|i| self.failed[i][k]));
        }
        f = f
            .with("median_genes", Column::F64(self.median_genes.clone()))
            .with("median_counts", Column::F64(self.median_counts.clone()))
            .with("median_mito_pct", Column::F64(self.median_mito_pct.clone()))
            .with("genes_in", genes(self.genes_in))
            .with("genes_out", genes(self.genes_out))
            .with(
                "genes_removed_min_cells",
                genes(self.genes_removed_min_cells),
            );
        f.meta.insert(
            "cellweave.qc_params".into(),
            serde_json::to_string(params).unwrap_or_default(),
        );
        f.meta
            .insert("cellweave.mito_genes".into(), self.n_mito_genes.to_string());
        f
    }

    /// Human-readable lines (printed by the tool on stderr).
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, s) in self.scopes.iter().enumerate() {
            let fails: Vec<String> = CRITERIA
                .iter()
                .zip(self.failed[i])
                .filter(|(_, n)| *n > 0)
                .map(|(c, n)| format!("{n} {c}"))
                .collect();
            out.push(format!(
                "{s}: {} -> {} cells{}",
                self.cells_in[i],
                self.cells_out[i],
                if fails.is_empty() {
                    String::new()
                } else {
                    format!(" (failed: {})", fails.join(", "))
                }
            ));
        }
        out.push(format!(
            "genes: {} -> {} ({} in fewer than the minimum cells)",
            self.genes_in, self.genes_out, self.genes_removed_min_cells
        ));
        out
    }
}

/// The filter's outputs.
pub struct Filtered {
    /// The kept cells and genes.
    pub cells: CellsTable,
    /// What was removed.
    pub report: QcReport,
    /// Per input gene: gene_id, gene_name, n_cells, total_counts, mito, kept.
    pub genes: Frame,
}

fn check_input(values: ValueKind, p: &QcParams) -> Result<()> {
    if values != ValueKind::Counts {
        return Err(Error::new(format!(
            "the values are '{}', expected raw counts (filter before normalizing)",
            values.as_str()
        ))
        .field(meta::VALUES));
    }
    for (name, v) in [
        ("--max-mito-pct", p.max_mito_pct),
        ("--min-counts", p.min_counts),
        ("--max-counts", p.max_counts),
    ] {
        if let Some(v) = v {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::new(format!("{v} is not a non-negative number")).field(name));
            }
        }
    }
    Ok(())
}

/// What the filter measured: per-cell metrics, and per gene the cells (> 0) and counts over
/// the cells that pass the cell filters.
struct Measures {
    metrics: CellMetrics,
    gene_cells: Vec<u32>,
    gene_totals: Vec<f64>,
}

/// What the filter decided: the cells and genes kept, the report and the genes table.
struct Decision {
    keep: Vec<bool>,
    kept_genes: Vec<usize>,
    report: QcReport,
    genes: Frame,
}

/// Decide from the measures (cells by batch `batch`); the errors of a filter that keeps nothing.
fn decide(
    batch: &Categorical,
    gene_ids: &[String],
    gene_names: &[String],
    mito: Vec<bool>,
    m: Measures,
    p: &QcParams,
) -> Result<Decision> {
    let mut report = QcReport {
        n_mito_genes: mito.iter().filter(|&&m| m).count() as u64,
        ..Default::default()
    };
    if p.max_mito_pct.is_some() && report.n_mito_genes == 0 {
        report.warnings.push(format!(
            "no gene name starts with '{}' (any case): the mitochondrial filter removes nothing",
            p.mito_prefix
        ));
    }
    let m_ = &m.metrics;
    let n = m_.n_genes.len();
    let fails: Vec<[bool; 5]> = (0..n)
        .map(|i| cell_fails((m_.n_genes[i], m_.total_counts[i], m_.mito_pct[i]), p))
        .collect();
    let keep: Vec<bool> = fails.iter().map(|f| !f.iter().any(|&x| x)).collect();

    // per-batch report (batches in their category order, then "all")
    let nb = batch.categories.len();
    let mut scopes: Vec<Vec<usize>> = vec![Vec::new(); nb];
    for (i, &c) in batch.codes.iter().enumerate() {
        scopes[c as usize].push(i);
    }
    scopes.push((0..n).collect());
    report.scopes = batch
        .categories
        .iter()
        .cloned()
        .chain(std::iter::once("all".to_string()))
        .collect();
    for rows in &scopes {
        let mut failed = [0u64; 5];
        for &r in rows {
            for k in 0..5 {
                failed[k] += fails[r][k] as u64;
            }
        }
        report.cells_in.push(rows.len() as u64);
        report
            .cells_out
            .push(rows.iter().filter(|&&r| keep[r]).count() as u64);
        report.failed.push(failed);
        let med =
            |f: &dyn Fn(usize) -> f64| median(&mut rows.iter().map(|&r| f(r)).collect::<Vec<_>>());
        report.median_genes.push(med(&|r| m_.n_genes[r] as f64));
        report.median_counts.push(med(&|r| m_.total_counts[r]));
        report.median_mito_pct.push(med(&|r| m_.mito_pct[r]));
    }
    for (i, name) in report.scopes[..nb].iter().enumerate() {
        if report.cells_in[i] > 0 && report.cells_out[i] == 0 {
            report
                .warnings
                .push(format!("batch '{name}' lost all its cells"));
        }
    }
    let kept_cells = report.cells_out[nb] as usize;
    if kept_cells == 0 && n > 0 {
        return Err(
            Error::new(format!("all {n} cells fail the cell filters; loosen them")).field("cells"),
        );
    }

    // gene filter on the kept cells
    let g = gene_ids.len();
    let keep_gene: Vec<bool> = m
        .gene_cells
        .iter()
        .map(|&c| c as u64 >= p.min_cells)
        .collect();
    let kept_genes: Vec<usize> = (0..g).filter(|&c| keep_gene[c]).collect();
    report.genes_in = g as u64;
    report.genes_out = kept_genes.len() as u64;
    report.genes_removed_min_cells = report.genes_in - report.genes_out;
    if kept_genes.is_empty() && g > 0 {
        return Err(Error::new(format!(
            "no gene is expressed in at least {} kept cells",
            p.min_cells
        ))
        .flag("--min-cells"));
    }
    let genes = Frame::new(TableKind::Genes)
        .with(
            "gene_id",
            Column::Str(gene_ids.iter().cloned().map(Some).collect()),
        )
        .with(
            "gene_name",
            Column::Str(gene_names.iter().cloned().map(Some).collect()),
        )
        .with("n_cells", Column::U32(m.gene_cells))
        .with("total_counts", Column::F64(m.gene_totals))
        .with(
            "mito",
            Column::Bool(mito.iter().map(|&b| Some(b)).collect()),
        )
        .with(
            "kept",
            Column::Bool(keep_gene.iter().map(|&b| Some(b)).collect()),
        );
    Ok(Decision {
        keep,
        kept_genes,
        report,
        genes,
    })
}

/// New positions of the kept genes (`u32::MAX` for the others).
fn column_map(n_genes: usize, kept: &[usize]) -> Vec<u32> {
    let mut col_map = vec![u32::MAX; n_genes];
    for (new, &old) in kept.iter().enumerate() {
        col_map[old] = new as u32;
    }
    col_map
}

/// Cell QC then the gene filter. Requires raw counts.
pub fn filter(mut t: CellsTable, p: &QcParams) -> Result<Filtered> {
    check_input(t.values, p)?;
    let mito = mito_genes(&t.gene_names, &p.mito_prefix);
    let metrics = cell_metrics(&t.x, &mito);
    let n = t.n_cells();
    let keep: Vec<bool> = (0..n)
        .map(|i| {
            let m = (
                metrics.n_genes[i],
                metrics.total_counts[i],
                metrics.mito_pct[i],
            );
            !cell_fails(m, p).iter().any(|&f| f)
        })
        .collect();
    let (gene_cells, totals) = gene_totals(&t.x, &keep);
    let measures = Measures {
        metrics,
        gene_cells,
        gene_totals: totals,
    };
    let d = decide(&t.batch, &t.gene_ids, &t.gene_names, mito, measures, p)?;
    let (keep, kept_genes) = (d.keep, d.kept_genes);

    // apply, in place
    if keep.iter().any(|&k| !k) || kept_genes.len() < t.n_genes() {
        let col_map = column_map(t.n_genes(), &kept_genes);
        retain(&mut t.x, &keep, &col_map, kept_genes.len());
        let rows: Vec<usize> = (0..n).filter(|&r| keep[r]).collect();
        if rows.len() < n {
            t.cell_ids = rows
                .iter()
                .map(|&r| std::mem::take(&mut t.cell_ids[r]))
                .collect();
            let mut batch: Categorical = t.batch.select(&rows);
            batch.compact();
            t.batch = batch;
            for (_, c) in t.obs.iter_mut() {
                *c = c.select(&rows);
            }
        }
        t.gene_ids = kept_genes
            .iter()
            .map(|&g| std::mem::take(&mut t.gene_ids[g]))
            .collect();
        t.gene_names = kept_genes
            .iter()
            .map(|&g| std::mem::take(&mut t.gene_names[g]))
            .collect();
    }
    Ok(Filtered {
        cells: t,
        report: d.report,
        genes: d.genes,
    })
}

/// What [`filter_file`] reports (the filtered cells went to the output file).
pub struct FilterReport {
    /// What was removed.
    pub report: QcReport,
    /// Per input gene: gene_id, gene_name, n_cells, total_counts, mito, kept.
    pub genes: Frame,
    /// The provenance of the output (the input's, then `step`).
    pub provenance: Vec<Step>,
}

/// [`filter`] from a streamed input to `output`: a first pass over the batches measures
/// cells and genes, a second writes the kept cells and genes batch by batch.
pub fn filter_file(
    input: &CellsInput,
    output: &Path,
    p: &QcParams,
    step: Step,
) -> Result<FilterReport> {
    let file = |e: Error| e.file(input.path());
    check_input(input.values, p).map_err(file)?;
    let mito = mito_genes(&input.gene_names, &p.mito_prefix);
    let g = input.n_genes();

    // pass 1: metrics of every cell; per gene, cells and counts of the cells kept
    let mut metrics = CellMetrics {
        n_genes: Vec::with_capacity(input.n_cells()),
        total_counts: Vec::with_capacity(input.n_cells()),
        mito_pct: Vec::with_capacity(input.n_cells()),
    };
    let mut sums: GeneSums = vec![[0f64; 2]; g];
    const ROWS: usize = 512;
    for i in 0..input.n_batches() {
        let v = input.rows(i)?;
        let n = v.n_rows();
        let chunks: Vec<(Vec<Metrics>, GeneSums)> = (0..n.div_ceil(ROWS))
            .into_par_iter()
            .map(|k| {
                let mut acc = vec![[0f64; 2]; g];
                let per = (k * ROWS..((k + 1) * ROWS).min(n))
                    .map(|r| {
                        let (idx, val) = v.row(r);
                        let m = row_metrics(idx, val, &mito);
                        if !cell_fails(m, p).iter().any(|&f| f) {
                            add_gene_counts(&mut acc, idx, val);
                        }
                        m
                    })
                    .collect();
                (per, acc)
            })
            .collect();
        for (per, part) in chunks {
            per.into_iter().for_each(|m| metrics.push(m));
            add_sums(&mut sums, &part);
        }
        input.release(i);
    }
    let (gene_cells, gene_totals) = sum_gene_counts(g, vec![sums]);
    let batch = input.column(COL_BATCH)?.to_categorical();
    let measures = Measures {
        metrics,
        gene_cells,
        gene_totals,
    };
    let d = decide(
        &batch,
        &input.gene_ids,
        &input.gene_names,
        mito,
        measures,
        p,
    )
    .map_err(file)?;

    // pass 2: the kept cells and genes
    let col_map = column_map(g, &d.kept_genes);
    let all_genes = d.kept_genes.len() == g;
    let (batch_values, batch_remap) = kept_batches(input, &batch, &d.keep);
    let mut ids = Vec::new();
    for i in 0..input.n_batches() {
        let start = input.start(i);
        let kept = input.cell_ids(i).iter().flatten().enumerate();
        ids.extend(kept.filter(|(r, _)| d.keep[start + r]).map(|(_, id)| id));
    }
    let mut provenance = input.provenance.clone();
    provenance.push(step);
    let pick =
        |v: &[String]| -> Vec<String> { d.kept_genes.iter().map(|&c| v[c].clone()).collect() };
    let (gene_ids, gene_names) = (pick(&input.gene_ids), pick(&input.gene_names));
    let schema = input.output_schema(&CellsMeta {
        gene_ids: &gene_ids,
        gene_names: &gene_names,
        values: input.values,
        provenance: &provenance,
        n_cells: ids.len(),
        fingerprint: fingerprint_of(ids),
    });
    let make = |i: usize| -> Result<RecordBatch> {
        let v = input.rows(i)?;
        let keep = &d.keep[input.start(i)..input.start(i) + v.n_rows()];
        let rows: Vec<usize> = (0..v.n_rows()).filter(|&r| keep[r]).collect();
        let all_rows = rows.len() == v.n_rows();
        let mut cols = input.per_cell_columns(i);
        cols[1] = stream::remap_dictionary(&cols[1], &rows, &batch_remap, &batch_values);
        if !all_rows {
            cols[0] = stream::take_rows(&cols[0], &rows);
            for c in cols.iter_mut().skip(2) {
                *c = stream::take_rows(c, &rows);
            }
        }
        let (gi, ex) = if all_rows && all_genes {
            input.lists(i)
        } else {
            stream::subset_rows(&v, (!all_rows).then_some(keep), &col_map)
        };
        stream::out_batch(&schema, cols, gi, ex)
    };
    table::write_stream(output, schema.clone(), input.n_batches(), make, |i| {
        input.done(i)
    })?;
    Ok(FilterReport {
        report: d.report,
        genes: d.genes,
        provenance,
    })
}

/// The `batch` dictionary of the filtered table (the batches that keep cells, in the order of
/// `batch`'s categories) and the new key of each key of the input's dictionary.
fn kept_batches(input: &CellsInput, batch: &Categorical, keep: &[bool]) -> (ArrayRef, Vec<i32>) {
    let mut used = vec![false; batch.categories.len()];
    for (&c, &k) in batch.codes.iter().zip(keep) {
        used[c as usize] |= k;
    }
    let mut new_code = vec![-1i32; batch.categories.len()];
    let mut kept = Vec::new();
    for (c, name) in batch.categories.iter().enumerate() {
        if used[c] {
            new_code[c] = kept.len() as i32;
            kept.push(name.as_str());
        }
    }
    let dict = input.dictionary(COL_BATCH);
    let remap = dict
        .iter()
        .map(|s| {
            let c = batch
                .categories
                .iter()
                .position(|x| s.as_deref() == Some(x.as_str()));
            c.map_or(-1, |c| new_code[c])
        })
        .collect();
    (Arc::new(StringArray::from(kept)), remap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> CellsTable {
        // 6 cells x 5 genes; genes: MT-CO1, mt-nd2, A, B, C
        let dense: Vec<f32> = vec![
            5., 0., 1., 0., 4., // c0 b0: total 10, 3 genes, mito 50%
            0., 0., 2., 2., 0., // c1 b0: total 4, 2 genes
            1., 1., 3., 0., 5., // c2 b0: total 10, 4 genes, mito 20%
            0., 0., 0., 0., 0., // c3 b1: empty
            0., 0., 1., 1., 8., // c4 b1: total 10, 3 genes
            0., 0., 0., 0., 1., // c5 b1: total 1
        ];
        CellsTable {
            cell_ids: (0..6).map(|i| format!("c{i}")).collect(),
            batch: Categorical::from_strings(&["b0", "b0", "b0", "b1", "b1", "b1"]),
            obs: vec![(
                "cell_type".into(),
                Column::Str((0..6).map(|i| Some(format!("t{i}"))).collect()),
            )],
            gene_ids: (0..5).map(|i| format!("G{i}")).collect(),
            gene_names: vec![
                "MT-CO1".into(),
                "mt-nd2".into(),
                "A".into(),
                "B".into(),
                "C".into(),
            ],
            x: Csr::from_dense(6, 5, &dense),
            values: ValueKind::Counts,
            provenance: vec![],
        }
    }

    #[test]
    fn metrics_and_mito_prefix_any_case() {
        let t = table();
        let mito = mito_genes(&t.gene_names, "MT-");
        assert_eq!(mito, vec![true, true, false, false, false]);
        let m = cell_metrics(&t.x, &mito);
        assert_eq!(m.n_genes, vec![3, 2, 4, 0, 3, 1]);
        assert_eq!(m.total_counts, vec![10., 4., 10., 0., 10., 1.]);
        assert_eq!(m.mito_pct[0], 50.0);
        assert_eq!(m.mito_pct[2], 20.0);
        assert_eq!(m.mito_pct[3], 0.0);
    }

    #[test]
    fn gene_filter_only_like_scanpy_min_cells() {
        // min_cells 3: G0 in 2 cells (c0,c2), G1 in 1, A in 4, B in 2, C in 4
        let f = filter(table(), &QcParams::default()).unwrap();
        assert_eq!(f.cells.gene_ids, vec!["G2", "G4"]);
        assert_eq!(f.cells.n_cells(), 6);
        assert_eq!(
            f.cells.x.to_dense(),
            vec![1., 4., 2., 0., 3., 5., 0., 0., 1., 8., 0., 1.]
        );
        f.cells.validate().unwrap();
        assert_eq!(f.report.genes_removed_min_cells, 3);
    }

    #[test]
    fn cell_filters_then_genes_on_kept_cells() {
        let p = QcParams {
            min_cells: 2,
            min_genes: Some(2),
            max_mito_pct: Some(30.0),
            ..Default::default()
        };
        let f = filter(table(), &p).unwrap();
        // c0 fails mito (50%), c3 and c5 fail min_genes
        assert_eq!(f.cells.cell_ids, vec!["c1", "c2", "c4"]);
        // genes in >= 2 of the kept cells: A (c1,c2,c4), B (c1,c4), C (c2,c4)
        assert_eq!(f.cells.gene_names, vec!["A", "B", "C"]);
        assert_eq!(
            f.cells.x.to_dense(),
            vec![2., 2., 0., 3., 0., 5., 1., 1., 8.]
        );
        assert_eq!(f.cells.column("cell_type").unwrap().text(1).unwrap(), "t2");
        let r = &f.report;
        assert_eq!(r.scopes, vec!["b0", "b1", "all"]);
        assert_eq!(r.cells_in, vec![3, 3, 6]);
        assert_eq!(r.cells_out, vec![2, 1, 3]);
        assert_eq!(r.failed[2], [2, 0, 0, 0, 1]);
        let fr = r.to_frame(&p);
        assert_eq!(fr.n_rows(), 3);
        assert_eq!(fr.column("genes_out").unwrap().text(2).unwrap(), "3");
        assert_eq!(fr.column("genes_out").unwrap().text(0), None);
        f.cells.validate().unwrap();
    }

    #[test]
    fn bounds_are_inclusive_as_scanpy() {
        let p = QcParams {
            min_cells: 0,
            min_counts: Some(4.0),
            max_counts: Some(10.0),
            max_genes: Some(3),
            ..Default::default()
        };
        let f = filter(table(), &p).unwrap();
        // c2 has 4 genes (> 3); c3 (0) and c5 (1) have too few counts
        assert_eq!(f.cells.cell_ids, vec!["c0", "c1", "c4"]);
        assert_eq!(f.cells.n_genes(), 5);
    }

    #[test]
    fn no_mito_gene_warns_and_removes_nothing() {
        let p = QcParams {
            min_cells: 0,
            max_mito_pct: Some(1.0),
            mito_prefix: "MTX-".into(),
            ..Default::default()
        };
        let f = filter(table(), &p).unwrap();
        assert_eq!(f.cells.n_cells(), 6);
        assert!(f.report.warnings[0].contains("no gene name starts with 'MTX-'"));
    }

    #[test]
    fn refuses_normalized_values_and_total_loss() {
        let mut t = table();
        t.values = ValueKind::Log1p;
        assert!(filter(t, &QcParams::default())
            .err()
            .unwrap()
            .to_string()
            .contains("expected raw counts"));
        let p = QcParams {
            min_genes: Some(100),
            ..Default::default()
        };
        assert!(filter(table(), &p)
            .err()
            .unwrap()
            .to_string()
            .contains("all 6 cells fail"));
    }
}
