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

use crate::contract::{meta, Categorical, CellsTable, Column, Csr, Frame, TableKind, ValueKind};
use crate::{Error, Result};
use rayon::prelude::*;
use serde::Serialize;

/// Rows per parallel chunk for per-gene reductions (fixed, so results do not depend on
/// the number of threads).
const ROWS_PER_CHUNK: usize = 4096;

/// The filters to apply. `None` disables a criterion.
#[derive(Debug, Clone, Serialize)]
pub struct QcParams {
    pub min_cells: u64,
    pub min_genes: Option<u64>,
    pub max_genes: Option<u64>,
    pub min_counts: Option<f64>,
    pub max_counts: Option<f64>,
    pub max_mito_pct: Option<f64>,
    pub mito_prefix: String,
}

impl Default for QcParams {
    fn default() -> Self {
        QcParams {
            min_cells: 3,
            min_genes: None,
            max_genes: None,
            min_counts: None,
            max_counts: None,
            max_mito_pct: None,
            mito_prefix: "MT-".into(),
        }
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

/// Genes detected, total counts and mitochondrial percentage of every cell.
pub fn cell_metrics(x: &Csr, mito: &[bool]) -> CellMetrics {
    let per: Vec<(u32, f64, f64)> = (0..x.n_rows())
        .into_par_iter()
        .map(|r| {
            let (idx, val) = x.row(r);
            let (mut n, mut tot, mut mt) = (0u32, 0f64, 0f64);
            for (&c, &v) in idx.iter().zip(val) {
                n += (v > 0.0) as u32;
                tot += v as f64;
                if mito[c as usize] {
                    mt += v as f64;
                }
            }
            (n, tot, if tot > 0.0 { 100.0 * mt / tot } else { 0.0 })
        })
        .collect();
    CellMetrics {
        n_genes: per.iter().map(|p| p.0).collect(),
        total_counts: per.iter().map(|p| p.1).collect(),
        mito_pct: per.iter().map(|p| p.2).collect(),
    }
}

/// Per gene: cells with a value > 0 and total counts, over the rows where `keep` is true.
pub fn gene_totals(x: &Csr, keep: &[bool]) -> (Vec<u32>, Vec<f64>) {
    let g = x.n_cols;
    let chunks: Vec<(Vec<u32>, Vec<f64>)> = (0..x.n_rows().div_ceil(ROWS_PER_CHUNK))
        .into_par_iter()
        .map(|k| {
            let (mut n, mut s) = (vec![0u32; g], vec![0f64; g]);
            for r in (k * ROWS_PER_CHUNK..((k + 1) * ROWS_PER_CHUNK).min(x.n_rows()))
                .filter(|&r| keep[r])
            {
                let (idx, val) = x.row(r);
                for (&c, &v) in idx.iter().zip(val) {
                    n[c as usize] += (v > 0.0) as u32;
                    s[c as usize] += v as f64;
                }
            }
            (n, s)
        })
        .collect();
    let (mut n, mut s) = (vec![0u32; g], vec![0f64; g]);
    for (cn, cs) in chunks {
        n.iter_mut().zip(&cn).for_each(|(a, b)| *a += b);
        s.iter_mut().zip(&cs).for_each(|(a, b)| *a += b);
    }
    (n, s)
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

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// What the filter removed, per batch and overall.
#[derive(Debug, Clone, Default)]
pub struct QcReport {
    /// Batch names, then "all".
    pub scopes: Vec<String>,
    pub cells_in: Vec<u64>,
    pub cells_out: Vec<u64>,
    /// Cells failing each criterion of [`CRITERIA`] (a cell may fail several).
    pub failed: Vec<[u64; 5]>,
    pub median_genes: Vec<f64>,
    pub median_counts: Vec<f64>,
    pub median_mito_pct: Vec<f64>,
    pub genes_in: u64,
    pub genes_out: u64,
    pub genes_removed_min_cells: u64,
    pub n_mito_genes: u64,
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
    pub cells: CellsTable,
    pub report: QcReport,
    /// Per input gene: gene_id, gene_name, n_cells, total_counts, mito, kept.
    pub genes: Frame,
}

/// Cell QC then the gene filter. Requires raw counts.
pub fn filter(mut t: CellsTable, p: &QcParams) -> Result<Filtered> {
    if t.values != ValueKind::Counts {
        return Err(Error::new(format!(
            "the values are '{}', expected raw counts (filter before normalizing)",
            t.values.as_str()
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
    let mut report = QcReport::default();
    let mito = mito_genes(&t.gene_names, &p.mito_prefix);
    report.n_mito_genes = mito.iter().filter(|&&m| m).count() as u64;
    if p.max_mito_pct.is_some() && report.n_mito_genes == 0 {
        report.warnings.push(format!(
            "no gene name starts with '{}' (any case): the mitochondrial filter removes nothing",
            p.mito_prefix
        ));
    }
    let m = cell_metrics(&t.x, &mito);
    let n = t.n_cells();
    let mut fails = vec![[false; 5]; n];
    for (i, f) in fails.iter_mut().enumerate() {
        let (g, c) = (m.n_genes[i] as u64, m.total_counts[i]);
        f[0] = p.min_genes.is_some_and(|v| g < v);
        f[1] = p.max_genes.is_some_and(|v| g > v);
        f[2] = p.min_counts.is_some_and(|v| c < v);
        f[3] = p.max_counts.is_some_and(|v| c > v);
        f[4] = p.max_mito_pct.is_some_and(|v| m.mito_pct[i] > v);
    }
    let keep: Vec<bool> = fails.iter().map(|f| !f.iter().any(|&x| x)).collect();

    // per-batch report (batches in their category order, then "all")
    let nb = t.batch.categories.len();
    let mut scopes: Vec<Vec<usize>> = vec![Vec::new(); nb];
    for (i, &c) in t.batch.codes.iter().enumerate() {
        scopes[c as usize].push(i);
    }
    scopes.push((0..n).collect());
    report.scopes = t
        .batch
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
        report.median_genes.push(median(
            &mut rows
                .iter()
                .map(|&r| m.n_genes[r] as f64)
                .collect::<Vec<_>>(),
        ));
        report.median_counts.push(median(
            &mut rows.iter().map(|&r| m.total_counts[r]).collect::<Vec<_>>(),
        ));
        report.median_mito_pct.push(median(
            &mut rows.iter().map(|&r| m.mito_pct[r]).collect::<Vec<_>>(),
        ));
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
    let (n_cells, totals) = gene_totals(&t.x, &keep);
    let keep_gene: Vec<bool> = n_cells.iter().map(|&c| c as u64 >= p.min_cells).collect();
    let kept_genes: Vec<usize> = (0..t.n_genes()).filter(|&g| keep_gene[g]).collect();
    report.genes_in = t.n_genes() as u64;
    report.genes_out = kept_genes.len() as u64;
    report.genes_removed_min_cells = report.genes_in - report.genes_out;
    if kept_genes.is_empty() && t.n_genes() > 0 {
        return Err(Error::new(format!(
            "no gene is expressed in at least {} kept cells",
            p.min_cells
        ))
        .field("--min-cells"));
    }
    let genes = Frame::new(TableKind::Genes)
        .with(
            "gene_id",
            Column::Str(t.gene_ids.iter().cloned().map(Some).collect()),
        )
        .with(
            "gene_name",
            Column::Str(t.gene_names.iter().cloned().map(Some).collect()),
        )
        .with("n_cells", Column::U32(n_cells))
        .with("total_counts", Column::F64(totals))
        .with(
            "mito",
            Column::Bool(mito.iter().map(|&b| Some(b)).collect()),
        )
        .with(
            "kept",
            Column::Bool(keep_gene.iter().map(|&b| Some(b)).collect()),
        );

    // apply, in place
    if kept_cells < n || kept_genes.len() < t.n_genes() {
        let mut col_map = vec![u32::MAX; t.n_genes()];
        for (new, &old) in kept_genes.iter().enumerate() {
            col_map[old] = new as u32;
        }
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
        report,
        genes,
    })
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
