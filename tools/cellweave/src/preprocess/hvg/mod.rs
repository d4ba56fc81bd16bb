//! Highly variable genes, as scanpy 1.11's `highly_variable_genes` computes them.
//!
//! Flavors `seurat` and `cell_ranger` (dispersion-based, on log1p data) and `seurat_v3`
//! (normalized variance after a loess fit of variance on mean, on raw counts). With a batch
//! key (the default here, as in CLAIRE's preprocessing) genes are selected per batch and
//! ranked across batches exactly as scanpy does; with `ignore_batch` the single-batch path
//! of scanpy (`batch_key=None`) is followed.
//!
//! Numerical details that make the results equal to scanpy's (not just close):
//! - per-gene sums are float64 running sums of the float32 values (squares are float32
//!   products), split into two interleaved partial sums (rows 0,2,4.. and 1,3,5.. of each
//!   batch) added at the end, as scanpy's numba kernel does with its default two threads
//!   on the 2-core machine the references come from; the result does not depend on
//!   `--threads` here;
//! - `var = sumsq/n - mean^2`, then `var *= n/(n-1)`; zero means become 1e-12;
//! - `seurat`: `expm1` of the float32 values in float32; `dispersion = ln(var/mean)` (0 -> NaN),
//!   `mean = ln(1+mean)`; 20 equal-width bins as `pandas.cut` (numpy's `linspace`, lowest edge
//!   lowered by 0.1% of the range, right-closed); per bin the mean (Kahan sum, as pandas) and
//!   the standard deviation (Welford, ddof 1, as pandas) of the non-NaN dispersions; a bin
//!   whose deviation is undefined gets `avg = 0, dev = avg`, so its gene has a normalized
//!   dispersion of 1;
//! - `cell_ranger`: no `expm1` and no logs (as scanpy 1.11); bins at the 10th..100th
//!   percentiles of the means (numpy's linear interpolation); median and MAD (scaled by
//!   `1/Phi^-1(3/4)`) per bin. Duplicate percentile edges are dropped (scanpy raises);
//! - per batch: genes not detected in the batch are left out of its statistics and enter
//!   the cross-batch averages as zeros (scanpy fills them with 0); a batch selects every
//!   gene whose normalized dispersion is >= the n-th highest (ties may select more);
//! - across batches: means of `means`, `dispersions`, `dispersions_norm` over batches in
//!   sorted batch-name order (NaN skipped, Kahan sum), `highly_variable_nbatches` = batches
//!   selecting the gene; order = nbatches descending, then mean normalized dispersion
//!   descending (NaN last), then gene id (scanpy's groupby sorts by gene name first and
//!   its sort is stable); the first `n_top_genes` are selected.

mod loess;

use crate::contract::{rows_of, CellsTable, Column, Csr, Frame, Step, TableKind, ValueKind};
use crate::io::stream::{self, CellsInput};
use crate::io::table::{self, CellsMeta};
use crate::preprocess::normalize::Memo;
use crate::{bail, Error, Result};
use arrow_array::RecordBatch;
use rayon::prelude::*;
use serde::Serialize;
use std::cmp::Ordering;
use std::path::Path;

/// Partial sums scanpy's numba kernel keeps (its default thread count on the reference machine).
const SCANPY_PARTIAL_SUMS: usize = 2;

/// The HVG method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flavor {
    /// `seurat`: dispersions of expm1 values, equal-width bins of the log mean.
    Seurat,
    /// `cell_ranger`: dispersions binned at percentiles of the mean, median and MAD per bin.
    CellRanger,
    /// `seurat_v3`: normalized variances after a loess fit, on raw counts.
    SeuratV3,
}

impl Flavor {
    /// The flavor of a name, `None` for an unknown one.
    pub fn parse(s: &str) -> Option<Flavor> {
        Some(match s {
            "seurat" => Flavor::Seurat,
            "cell_ranger" => Flavor::CellRanger,
            "seurat_v3" => Flavor::SeuratV3,
            _ => return None,
        })
    }
    /// The name `--flavor` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Seurat => "seurat",
            Flavor::CellRanger => "cell_ranger",
            Flavor::SeuratV3 => "seurat_v3",
        }
    }
}

/// `--flavor`: a [`Flavor`] by its name.
fn parse_flavor(s: &str) -> Result<Flavor, String> {
    Flavor::parse(s)
        .ok_or_else(|| format!("unknown flavor '{s}' (expected seurat, cell_ranger or seurat_v3)"))
}

/// Parameters of [`highly_variable_genes`] (the flags of `cellweave-hvg`).
#[derive(Debug, Clone, Serialize, clap::Args)]
pub struct HvgParams {
    /// Genes to select (at least 1)
    #[arg(value_parser = crate::cli::range::at_least_1, long, default_value_t = 2000)]
    pub n_top_genes: usize,
    /// seurat, cell_ranger or seurat_v3
    #[arg(long, value_parser = parse_flavor, default_value = "seurat")]
    pub flavor: Flavor,
    /// Bins of mean expression (seurat) (at least 1)
    #[arg(value_parser = crate::cli::range::at_least_1, long, default_value_t = 20)]
    pub n_bins: usize,
    /// Loess span (seurat_v3) (above 0, at most 1)
    #[arg(value_parser = crate::cli::range::fraction_above_0::<f64>, long, default_value_t = 0.3)]
    pub span: f64,
}

impl Default for HvgParams {
    fn default() -> Self {
        crate::cli::defaults()
    }
}

/// Cells grouped by batch; `None` means scanpy's single-batch path (`batch_key=None`).
#[derive(Debug, Clone)]
pub struct Groups {
    /// Batch names, sorted.
    pub names: Vec<String>,
    /// The rows of each batch.
    pub rows: Vec<Vec<usize>>,
    /// Whether the cells were grouped by a batch column.
    pub batched: bool,
}

impl Groups {
    /// All cells as one group, scanpy's `batch_key=None`.
    pub fn single(n_cells: usize) -> Groups {
        Groups {
            names: vec!["all".into()],
            rows: vec![(0..n_cells).collect()],
            batched: false,
        }
    }
    /// Cells grouped by the values of a per-cell column, groups in sorted name order
    /// (scanpy's categories of a string column).
    pub fn by_column(cells: &CellsTable, key: &str) -> Result<Groups> {
        let col = cells.require_column(key)?;
        Groups::of_column(&col, key, |i| cells.cell_ids[i].clone())
    }
    /// Cells grouped by the values of `col` (the column `key`; `cell_id(i)` names a cell).
    pub fn of_column(col: &Column, key: &str, cell_id: impl Fn(usize) -> String) -> Result<Groups> {
        let cat = col.to_categorical();
        if let Some(i) = cat
            .codes
            .iter()
            .position(|&c| c == crate::contract::Categorical::MISSING)
        {
            return Err(Error::new(format!(
                "cell '{}' has no value in the batch key",
                cell_id(i)
            ))
            .field(key));
        }
        let mut order: Vec<usize> = (0..cat.categories.len()).collect();
        order.sort_by(|&a, &b| cat.categories[a].cmp(&cat.categories[b]));
        let mut pos = vec![0usize; cat.categories.len()];
        for (p, &c) in order.iter().enumerate() {
            pos[c] = p;
        }
        let mut rows = vec![Vec::new(); order.len()];
        for (i, &c) in cat.codes.iter().enumerate() {
            rows[pos[c as usize]].push(i);
        }
        let names: Vec<String> = order.iter().map(|&c| cat.categories[c].clone()).collect();
        let keep: Vec<bool> = rows.iter().map(|r| !r.is_empty()).collect();
        Ok(Groups {
            names: names
                .into_iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(n, _)| n)
                .collect(),
            rows: rows.into_iter().filter(|r| !r.is_empty()).collect(),
            batched: true,
        })
    }
}

mod bins;
mod dispersion;
mod moments;
mod select;
pub mod stage;
mod subset;

pub use bins::*;
pub use dispersion::*;
pub use moments::*;
pub use select::*;
pub use subset::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pandas_cut_edges() {
        // 0..=10 in 5 bins: edges 0-0.01, 2, 4, 6, 8, 10, right-closed
        let x: Vec<f64> = (0..=10).map(|v| v as f64).collect();
        assert_eq!(
            equal_width_bins(&x, 5),
            vec![0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
        );
        // all equal: one bin in the middle
        assert_eq!(equal_width_bins(&[2.0, 2.0], 4), vec![1, 1]);
    }

    #[test]
    fn numpy_percentile_linear() {
        let s = [1.0, 2.0, 4.0, 8.0];
        assert_eq!(percentile(&s, 50.0), 3.0);
        assert_eq!(percentile(&s, 100.0), 8.0);
        assert_eq!(percentile(&s, 10.0), 1.3);
        assert!((percentile(&s, 90.0) - 6.8).abs() < 1e-12);
    }

    #[test]
    fn pandas_mean_and_std() {
        let v = [1.0, f64::NAN, 2.0, 4.0];
        assert_eq!(kahan_mean(v.iter().cloned()), 7.0 / 3.0);
        let sd = welford_std(v.iter().cloned());
        assert!((sd - (7.0f64 / 3.0).sqrt()).abs() < 1e-12, "{sd}");
        assert!(welford_std([3.0].into_iter()).is_nan());
    }

    #[test]
    fn single_gene_bin_gets_one() {
        // three genes: two with similar means, one far away alone in its bin
        let mean = [1.0, 1.1, 50.0];
        let var = [2.0, 3.0, 400.0];
        let f = dispersion_fit(&mean, &var, Flavor::Seurat, 20, 2);
        assert!((f.dispersions_norm[2] - 1.0).abs() < 1e-15);
        // the other two share a bin: normalized dispersions -1/sqrt(2) and +1/sqrt(2)
        assert!((f.dispersions_norm[1] - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-12);
        assert_eq!(f.selected, vec![false, true, true]);
    }

    fn toy() -> (Csr, Vec<String>) {
        let dense: Vec<f32> = vec![
            1.0, 0.0, 2.0, 0.5, 0.0, //
            0.0, 3.0, 2.0, 0.5, 0.0, //
            2.0, 0.0, 2.0, 0.0, 0.0, //
            0.0, 1.0, 0.0, 0.0, 4.0, //
            1.5, 0.0, 1.0, 0.0, 0.0, //
            0.2, 2.5, 0.0, 0.7, 0.0,
        ];
        (
            Csr::from_dense(6, 5, &dense),
            (0..5).map(|i| format!("g{i}")).collect(),
        )
    }

    #[test]
    fn batched_absent_genes_average_as_zero() {
        let (x, ids) = toy();
        let groups = Groups {
            names: vec!["a".into(), "b".into()],
            rows: vec![vec![0, 1, 2], vec![3, 4, 5]],
            batched: true,
        };
        let p = HvgParams {
            n_top_genes: 2,
            ..Default::default()
        };
        let h = highly_variable_genes(&x, &ids, &ids, &groups, &p).unwrap();
        // gene 4 is only in batch b: its mean is (0 + log1p(mean_b)) / 2
        let m = match h.genes.column("means").unwrap() {
            Column::F64(v) => v.clone(),
            _ => unreachable!(),
        };
        let mb = (4f32.exp_m1() as f64) / 3.0;
        assert!((m[4] - mb.ln_1p() / 2.0).abs() < 1e-15);
        assert_eq!(h.selected.len(), 2);
        assert_eq!(h.order.len(), 2);
    }

    #[test]
    fn moments_independent_of_threads() {
        let (x, _) = toy();
        let g = Groups::single(6);
        let a = group_moments(&x, &g, Transform::Expm1);
        let b = crate::numerics::with_threads(1, || group_moments(&x, &g, Transform::Expm1));
        assert_eq!(a[0].sum, b[0].sum);
        assert_eq!(a[0].sumsq, b[0].sumsq);
    }
}
