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
    Seurat,
    CellRanger,
    SeuratV3,
}

impl Flavor {
    pub fn parse(s: &str) -> Option<Flavor> {
        Some(match s {
            "seurat" => Flavor::Seurat,
            "cell_ranger" => Flavor::CellRanger,
            "seurat_v3" => Flavor::SeuratV3,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Seurat => "seurat",
            Flavor::CellRanger => "cell_ranger",
            Flavor::SeuratV3 => "seurat_v3",
        }
    }
}

/// Parameters of [`highly_variable_genes`].
#[derive(Debug, Clone, Serialize)]
pub struct HvgParams {
    pub n_top_genes: usize,
    pub flavor: Flavor,
    /// Bins of mean expression (`seurat`).
    pub n_bins: usize,
    /// Loess span (`seurat_v3`).
    pub span: f64,
}

impl Default for HvgParams {
    fn default() -> Self {
        HvgParams {
            n_top_genes: 2000,
            flavor: Flavor::Seurat,
            n_bins: 20,
            span: 0.3,
        }
    }
}

/// Cells grouped by batch; `None` means scanpy's single-batch path (`batch_key=None`).
#[derive(Debug, Clone)]
pub struct Groups {
    pub names: Vec<String>,
    pub rows: Vec<Vec<usize>>,
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

/// Column sums of one group of cells.
#[derive(Debug, Clone)]
pub struct Moments {
    pub n: usize,
    pub sum: Vec<f64>,
    pub sumsq: Vec<f64>,
    /// Cells with a value > 0 (before any transform).
    pub n_pos: Vec<u32>,
}

/// How values enter the sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    Identity,
    Expm1,
}

/// The running sums of one part of a group: per gene, the sum, the sum of squares and the
/// cells > 0 side by side (a value updates one cache line, not three arrays).
struct Sums {
    n: usize,
    acc: Vec<[f64; 3]>,
}

impl Sums {
    fn zeros(n: usize, g: usize) -> Sums {
        Sums {
            n,
            acc: vec![[0.0; 3]; g],
        }
    }
    /// Add one cell's row.
    #[inline]
    fn add_row(&mut self, idx: &[u32], val: &[f32], t: Transform, memo: &mut Memo<fn(f32) -> f32>) {
        for (&c, &v) in idx.iter().zip(val) {
            let a = &mut self.acc[c as usize];
            a[2] += (v > 0.0) as u32 as f64;
            let v = if t == Transform::Expm1 {
                memo.get(v)
            } else {
                v
            };
            a[0] += v as f64;
            a[1] += (v * v) as f64;
        }
    }
}

fn expm1_memo() -> Memo<fn(f32) -> f32> {
    Memo::new(f32::exp_m1)
}

fn partial_sums(x: &Csr, rows: &[usize], part: usize, t: Transform) -> Sums {
    let mut m = Sums::zeros(rows.len(), x.n_cols);
    let mut memo = expm1_memo();
    for &r in rows.iter().skip(part).step_by(SCANPY_PARTIAL_SUMS) {
        let (idx, val) = x.row(r);
        m.add_row(idx, val, t, &mut memo);
    }
    m
}

/// Per-group column sums (in parallel over groups and partial sums).
pub fn group_moments(x: &Csr, groups: &Groups, t: Transform) -> Vec<Moments> {
    let tasks: Vec<(usize, usize)> = (0..groups.rows.len())
        .flat_map(|b| (0..SCANPY_PARTIAL_SUMS).map(move |p| (b, p)))
        .collect();
    let parts: Vec<Sums> = tasks
        .par_iter()
        .map(|&(b, p)| partial_sums(x, &groups.rows[b], p, t))
        .collect();
    merge_parts(parts)
}

/// Per group, its partial sums added up, in order (`parts` holds each group's parts in turn).
fn merge_parts(parts: Vec<Sums>) -> Vec<Moments> {
    let mut out = Vec::with_capacity(parts.len() / SCANPY_PARTIAL_SUMS);
    for chunk in parts.chunks(SCANPY_PARTIAL_SUMS) {
        let col = |k: usize| -> Vec<f64> {
            (0..chunk[0].acc.len())
                .map(|c| {
                    chunk[1..]
                        .iter()
                        .fold(chunk[0].acc[c][k], |s, p| s + p.acc[c][k])
                })
                .collect()
        };
        out.push(Moments {
            n: chunk[0].n,
            sum: col(0),
            sumsq: col(1),
            n_pos: col(2).into_iter().map(|x| x as u32).collect(),
        });
    }
    out
}

/// [`group_moments`] over a streamed input, batch by batch: the same partial sums, each
/// taking the same rows in the same order, so the same results.
pub fn stream_moments(input: &CellsInput, groups: &Groups, t: Transform) -> Result<Vec<Moments>> {
    // the part each cell's row goes to: its group's, by its position in the group
    let mut part = vec![0u32; input.n_cells()];
    for (b, rows) in groups.rows.iter().enumerate() {
        for (k, &r) in rows.iter().enumerate() {
            part[r] = (b * SCANPY_PARTIAL_SUMS + k % SCANPY_PARTIAL_SUMS) as u32;
        }
    }
    let mut parts: Vec<Sums> = groups
        .rows
        .iter()
        .flat_map(|rows| (0..SCANPY_PARTIAL_SUMS).map(|_| Sums::zeros(rows.len(), input.n_genes())))
        .collect();
    for i in 0..input.n_batches() {
        let v = input.rows(i)?;
        let part = &part[input.start(i)..input.start(i) + v.n_rows()];
        parts.par_iter_mut().enumerate().for_each(|(p, m)| {
            let mut memo = expm1_memo();
            for r in (0..v.n_rows()).filter(|&r| part[r] == p as u32) {
                let (idx, val) = v.row(r);
                m.add_row(idx, val, t, &mut memo);
            }
        });
        input.release(i);
    }
    Ok(merge_parts(parts))
}

/// scanpy's `_get_mean_var`: mean and unbiased variance of the genes `genes`.
fn mean_var(m: &Moments, genes: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let n = m.n as f64;
    let factor = if m.n != 1 { n / (n - 1.0) } else { 1.0 };
    let mean: Vec<f64> = genes.iter().map(|&g| m.sum[g] / n).collect();
    let var = genes
        .iter()
        .zip(&mean)
        .map(|(&g, &mu)| {
            let v = m.sumsq[g] / n - mu * mu;
            if m.n != 1 {
                v * factor
            } else {
                v
            }
        })
        .collect();
    (mean, var)
}

/// numpy's `linspace(start, stop, num)`.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let div = (num - 1) as f64;
    let delta = stop - start;
    let step = delta / div;
    let mut y: Vec<f64> = (0..num)
        .map(|i| {
            if step == 0.0 {
                i as f64 / div * delta + start
            } else {
                i as f64 * step + start
            }
        })
        .collect();
    y[num - 1] = stop;
    y
}

/// `pandas.cut(x, bins=n)` codes (0-based bin of every value).
pub fn equal_width_bins(x: &[f64], n: usize) -> Vec<usize> {
    let mut mn = x.iter().cloned().fold(f64::INFINITY, f64::min);
    let mut mx = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let edges = if mn == mx {
        mn -= if mn != 0.0 { 0.001 * mn.abs() } else { 0.001 };
        mx += if mx != 0.0 { 0.001 * mx.abs() } else { 0.001 };
        linspace(mn, mx, n + 1)
    } else {
        let mut e = linspace(mn, mx, n + 1);
        e[0] -= (mx - mn) * 0.001;
        e
    };
    cut_codes(x, &edges)
}

/// Right-closed bins (`edges[k] < x <= edges[k+1]` is bin k), as `searchsorted(side='left') - 1`.
fn cut_codes(x: &[f64], edges: &[f64]) -> Vec<usize> {
    x.iter()
        .map(|&v| {
            let k = edges.partition_point(|&e| e < v);
            k.clamp(1, edges.len() - 1) - 1
        })
        .collect()
}

/// numpy's `percentile(x, q)` with linear interpolation.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let virt = (n - 1) as f64 * (q / 100.0);
    if virt >= (n - 1) as f64 {
        return sorted[n - 1];
    }
    if virt < 0.0 {
        return sorted[0];
    }
    let prev = virt.floor();
    let gamma = virt - prev;
    let (a, b) = (sorted[prev as usize], sorted[prev as usize + 1]);
    let d = b - a;
    if gamma >= 0.5 {
        b - d * (1.0 - gamma)
    } else {
        a + d * gamma
    }
}

/// Bins of `cell_ranger`: edges -inf, the 10th, 15th, ..., 100th percentiles, +inf
/// (duplicate edges dropped).
fn percentile_bins(x: &[f64]) -> Vec<usize> {
    let mut sorted = x.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let mut edges = vec![f64::NEG_INFINITY];
    edges.extend((10..=100).step_by(5).map(|q| percentile(&sorted, q as f64)));
    edges.push(f64::INFINITY);
    edges.dedup();
    cut_codes(x, &edges)
}

/// pandas' groupby mean (Kahan-compensated), skipping NaN.
fn kahan_mean(vals: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut comp, mut n) = (0f64, 0f64, 0usize);
    for v in vals.filter(|v| !v.is_nan()) {
        n += 1;
        let y = v - comp;
        let t = sum + y;
        comp = t - sum - y;
        if comp.is_nan() {
            comp = 0.0;
        }
        sum = t;
    }
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

/// pandas' groupby std (Welford, ddof 1), skipping NaN.
fn welford_std(vals: impl Iterator<Item = f64>) -> f64 {
    let (mut mean, mut m2, mut n) = (0f64, 0f64, 0usize);
    for v in vals.filter(|v| !v.is_nan()) {
        n += 1;
        let old = mean;
        mean += (v - old) / n as f64;
        m2 += (v - mean) * (v - old);
    }
    if n <= 1 {
        f64::NAN
    } else {
        (m2 / (n - 1) as f64).sqrt()
    }
}

/// numpy's median (NaN if any value is NaN, as `np.median`).
fn np_median(mut v: Vec<f64>) -> f64 {
    if v.iter().any(|x| x.is_nan()) {
        return f64::NAN;
    }
    crate::numerics::stats::median(&mut v)
}

/// statsmodels' `mad` (center = median, scaled by 1/Phi^-1(3/4)).
fn mad(v: &[f64]) -> f64 {
    const C: f64 = 0.6744897501960817;
    let center = np_median(v.to_vec());
    np_median(v.iter().map(|x| (x - center).abs() / C).collect())
}

/// One batch of a dispersion flavor: means, dispersions, normalized dispersions and the
/// batch's selection, for the genes given (their mean and variance).
#[derive(Debug, Clone)]
pub struct DispersionFit {
    pub means: Vec<f64>,
    pub dispersions: Vec<f64>,
    pub dispersions_norm: Vec<f64>,
    pub selected: Vec<bool>,
}

/// scanpy's `_highly_variable_genes_single_batch` after the mean/variance step.
pub fn dispersion_fit(
    mean: &[f64],
    var: &[f64],
    flavor: Flavor,
    n_bins: usize,
    n_top: usize,
) -> DispersionFit {
    let n = mean.len();
    let mut means: Vec<f64> = mean
        .iter()
        .map(|&m| if m == 0.0 { 1e-12 } else { m })
        .collect();
    let mut disp: Vec<f64> = var.iter().zip(&means).map(|(v, m)| v / m).collect();
    if flavor == Flavor::Seurat {
        for d in disp.iter_mut() {
            *d = if *d == 0.0 { f64::NAN } else { d.ln() };
        }
        for m in means.iter_mut() {
            *m = m.ln_1p();
        }
    }
    if n == 0 {
        return DispersionFit {
            means,
            dispersions: disp,
            dispersions_norm: vec![],
            selected: vec![],
        };
    }
    let bins = if flavor == Flavor::Seurat {
        equal_width_bins(&means, n_bins)
    } else {
        percentile_bins(&means)
    };
    let nb = bins.iter().max().map_or(0, |m| m + 1);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); nb];
    for (g, &b) in bins.iter().enumerate() {
        members[b].push(g);
    }
    let (mut avg, mut dev) = (vec![f64::NAN; nb], vec![f64::NAN; nb]);
    for (b, m) in members.iter().enumerate() {
        if m.is_empty() {
            continue;
        }
        let vals = || m.iter().map(|&g| disp[g]);
        if flavor == Flavor::Seurat {
            avg[b] = kahan_mean(vals());
            dev[b] = welford_std(vals());
            if dev[b].is_nan() {
                dev[b] = avg[b];
                avg[b] = 0.0;
            }
        } else {
            let present: Vec<f64> = vals().filter(|v| !v.is_nan()).collect();
            avg[b] = np_median(present);
            dev[b] = mad(&vals().collect::<Vec<_>>());
        }
    }
    let norm: Vec<f64> = (0..n)
        .map(|g| (disp[g] - avg[bins[g]]) / dev[bins[g]])
        .collect();
    // the n-th highest non-NaN normalized dispersion
    let mut finite: Vec<f64> = norm.iter().cloned().filter(|v| !v.is_nan()).collect();
    let k = n_top.min(n).min(finite.len());
    let selected = if k == 0 {
        vec![false; n]
    } else {
        finite.sort_by(|a, b| b.total_cmp(a));
        let cut = finite[k - 1];
        norm.iter()
            .map(|&v| if v.is_nan() { f64::NEG_INFINITY } else { v } >= cut)
            .collect()
    };
    DispersionFit {
        means,
        dispersions: disp,
        dispersions_norm: norm,
        selected,
    }
}

/// Descending order of `a` and `b` with NaN last.
fn desc_nan_last(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => b.partial_cmp(&a).unwrap(),
    }
}

/// Ascending order with NaN last.
fn asc_nan_last(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.partial_cmp(&b).unwrap(),
    }
}

/// The result of [`highly_variable_genes`].
#[derive(Debug, Clone)]
pub struct Hvg {
    /// The genes table (one row per input gene, in input order).
    pub genes: Frame,
    /// Positions of the selected genes, ascending.
    pub selected: Vec<usize>,
    /// Positions of the selected genes in selection order.
    pub order: Vec<usize>,
}

/// The genes table's selection columns, as scanpy names them: selected or not, in how many
/// batches the gene was selected, and whether in all of them (`nb` batches).
fn selection_columns(mask: &[bool], nbatches: &[u32], nb: usize) -> Vec<(&'static str, Column)> {
    vec![
        (
            "highly_variable",
            Column::Bool(mask.iter().map(|&b| Some(b)).collect()),
        ),
        (
            "highly_variable_nbatches",
            Column::I64(nbatches.iter().map(|&n| Some(n as i64)).collect()),
        ),
        (
            "highly_variable_intersection",
            Column::Bool(nbatches.iter().map(|&n| Some(n as usize == nb)).collect()),
        ),
    ]
}

fn str_col(v: &[String]) -> Column {
    Column::Str(v.iter().cloned().map(Some).collect())
}

/// Highly variable genes of `x` (log1p values for `seurat`/`cell_ranger`, raw counts for
/// `seurat_v3`), grouped by `groups`.
pub fn highly_variable_genes(
    x: &Csr,
    gene_ids: &[String],
    gene_names: &[String],
    groups: &Groups,
    p: &HvgParams,
) -> Result<Hvg> {
    check_params(groups, p)?;
    match p.flavor {
        Flavor::SeuratV3 => seurat_v3(x, gene_ids, gene_names, groups, p),
        _ => {
            let moments = group_moments(x, groups, transform_of(p.flavor));
            dispersion_flavor(moments, gene_ids, gene_names, groups, p)
        }
    }
}

fn check_params(groups: &Groups, p: &HvgParams) -> Result<()> {
    if p.n_top_genes == 0 {
        bail!("--n-top-genes must be at least 1");
    }
    if p.n_bins == 0 {
        bail!("--n-bins must be at least 1");
    }
    if groups.rows.is_empty() {
        bail!("no cells");
    }
    Ok(())
}

/// How a dispersion flavor takes the values into its sums.
fn transform_of(flavor: Flavor) -> Transform {
    if flavor == Flavor::Seurat {
        Transform::Expm1
    } else {
        Transform::Identity
    }
}

/// [`highly_variable_genes`] of a streamed input, for the dispersion flavors (`seurat`,
/// `cell_ranger`): one pass over the batches for the per-group sums.
pub fn highly_variable_genes_stream(
    input: &CellsInput,
    groups: &Groups,
    p: &HvgParams,
) -> Result<Hvg> {
    check_params(groups, p)?;
    if p.flavor == Flavor::SeuratV3 {
        bail!("seurat_v3 needs the whole matrix: use highly_variable_genes");
    }
    let moments = stream_moments(input, groups, transform_of(p.flavor))?;
    dispersion_flavor(moments, &input.gene_ids, &input.gene_names, groups, p)
}

fn dispersion_flavor(
    moments: Vec<Moments>,
    gene_ids: &[String],
    gene_names: &[String],
    groups: &Groups,
    p: &HvgParams,
) -> Result<Hvg> {
    let g = gene_ids.len();
    let nb = moments.len();
    // per batch, per gene values (0 where the gene is not detected in the batch)
    let mut means = vec![vec![0f64; nb]; g];
    let mut disps = vec![vec![0f64; nb]; g];
    let mut norms = vec![vec![0f64; nb]; g];
    let mut nbatches = vec![0u32; g];
    let fits: Vec<(Vec<usize>, DispersionFit)> = moments
        .par_iter()
        .map(|m| {
            let genes: Vec<usize> = if groups.batched {
                (0..g).filter(|&c| m.n_pos[c] > 0).collect()
            } else {
                (0..g).collect()
            };
            let (mean, var) = mean_var(m, &genes);
            let fit = dispersion_fit(&mean, &var, p.flavor, p.n_bins, p.n_top_genes);
            (genes, fit)
        })
        .collect();
    for (b, (genes, fit)) in fits.iter().enumerate() {
        for (k, &c) in genes.iter().enumerate() {
            means[c][b] = fit.means[k];
            disps[c][b] = fit.dispersions[k];
            norms[c][b] = fit.dispersions_norm[k];
            nbatches[c] += fit.selected[k] as u32;
        }
    }
    let mean_of = |v: &Vec<Vec<f64>>| -> Vec<f64> {
        v.iter().map(|r| kahan_mean(r.iter().cloned())).collect()
    };
    let (m_means, m_disp, m_norm) = (mean_of(&means), mean_of(&disps), mean_of(&norms));
    let mut order: Vec<usize> = (0..g).collect();
    let selected_mask: Vec<bool>;
    if groups.batched {
        order.sort_by(|&a, &b| {
            nbatches[b]
                .cmp(&nbatches[a])
                .then(desc_nan_last(m_norm[a], m_norm[b]))
                .then(gene_ids[a].cmp(&gene_ids[b]))
                .then(a.cmp(&b))
        });
        let n = p.n_top_genes.min(g);
        selected_mask = {
            let mut s = vec![false; g];
            order[..n].iter().for_each(|&c| s[c] = true);
            s
        };
    } else {
        selected_mask = nbatches.iter().map(|&n| n > 0).collect();
        order.sort_by(|&a, &b| desc_nan_last(m_norm[a], m_norm[b]).then(a.cmp(&b)));
    }
    let mut rank = vec![f64::NAN; g];
    for (r, &c) in order.iter().enumerate() {
        rank[c] = r as f64;
    }
    let genes = Frame::new(TableKind::Genes)
        .with("gene_id", str_col(gene_ids))
        .with("gene_name", str_col(gene_names))
        .with("means", Column::F64(m_means))
        .with("dispersions", Column::F64(m_disp))
        .with("dispersions_norm", Column::F64(m_norm))
        .with_all(selection_columns(&selected_mask, &nbatches, nb))
        .with("highly_variable_rank", Column::F64(rank));
    let ord: Vec<usize> = order.into_iter().filter(|&c| selected_mask[c]).collect();
    let selected = (0..g).filter(|&c| selected_mask[c]).collect();
    Ok(Hvg {
        genes,
        selected,
        order: ord,
    })
}

fn seurat_v3(
    x: &Csr,
    gene_ids: &[String],
    gene_names: &[String],
    groups: &Groups,
    p: &HvgParams,
) -> Result<Hvg> {
    let g = x.n_cols;
    let all: Vec<usize> = (0..g).collect();
    let total = group_moments(x, &Groups::single(x.n_rows()), Transform::Identity);
    let (means_all, vars_all) = mean_var(&total[0], &all);
    let moments = group_moments(x, groups, Transform::Identity);
    let norm_vars: Vec<Vec<f64>> = moments
        .par_iter()
        .zip(groups.rows.par_iter())
        .map(|(m, rows)| -> Result<Vec<f64>> {
            let (mean, var) = mean_var(m, &all);
            let nc: Vec<usize> = (0..g).filter(|&c| var[c] > 0.0).collect();
            let lx: Vec<f64> = nc.iter().map(|&c| mean[c].log10()).collect();
            let ly: Vec<f64> = nc.iter().map(|&c| var[c].log10()).collect();
            let fitted = loess::fit(&lx, &ly, p.span)?;
            let mut est = vec![0f64; g];
            for (k, &c) in nc.iter().enumerate() {
                est[c] = fitted[k];
            }
            let reg_std: Vec<f64> = est.iter().map(|&e| 10f64.powf(e).sqrt()).collect();
            let n = rows.len() as f64;
            let vmax = n.sqrt();
            let clip: Vec<f64> = (0..g).map(|c| reg_std[c] * vmax + mean[c]).collect();
            let (mut sq, mut s) = (vec![0f64; g], vec![0f64; g]);
            for &r in rows {
                let (idx, val) = x.row(r);
                for (&c, &v) in idx.iter().zip(val) {
                    let c = c as usize;
                    let e = (v as f64).min(clip[c]);
                    sq[c] += e * e;
                    s[c] += e;
                }
            }
            Ok((0..g)
                .map(|c| {
                    (1.0 / ((n - 1.0) * reg_std[c] * reg_std[c]))
                        * ((n * mean[c] * mean[c]) + sq[c] - 2.0 * s[c] * mean[c])
                })
                .collect())
        })
        .collect::<Result<_>>()?;
    let nb = norm_vars.len();
    let n_top = p.n_top_genes;
    // rank within each batch (0 = most variable; ties by gene position)
    let mut ranks = vec![vec![f64::NAN; nb]; g];
    let mut nbatches = vec![0u32; g];
    for (b, nv) in norm_vars.iter().enumerate() {
        let mut o: Vec<usize> = (0..g).collect();
        o.sort_by(|&a, &c| desc_nan_last(nv[a], nv[c]).then(a.cmp(&c)));
        for (r, &c) in o.iter().enumerate() {
            if r < n_top {
                ranks[c][b] = r as f64;
                nbatches[c] += 1;
            }
        }
    }
    let median_rank: Vec<f64> = ranks
        .iter()
        .map(|r| np_median(r.iter().cloned().filter(|v| !v.is_nan()).collect()))
        .collect();
    let var_norm: Vec<f64> = (0..g)
        .map(|c| norm_vars.iter().map(|v| v[c]).sum::<f64>() / nb as f64)
        .collect();
    let mut order: Vec<usize> = (0..g).collect();
    order.sort_by(|&a, &b| {
        asc_nan_last(median_rank[a], median_rank[b])
            .then(nbatches[b].cmp(&nbatches[a]))
            .then(a.cmp(&b))
    });
    let n = n_top.min(g);
    let mut mask = vec![false; g];
    order[..n].iter().for_each(|&c| mask[c] = true);
    let genes = Frame::new(TableKind::Genes)
        .with("gene_id", str_col(gene_ids))
        .with("gene_name", str_col(gene_names))
        .with("means", Column::F64(means_all))
        .with("variances", Column::F64(vars_all))
        .with("variances_norm", Column::F64(var_norm))
        .with_all(selection_columns(&mask, &nbatches, nb))
        .with("highly_variable_rank", Column::F64(median_rank));
    Ok(Hvg {
        genes,
        selected: (0..g).filter(|&c| mask[c]).collect(),
        order: order[..n].to_vec(),
    })
}

/// Check that the values suit the flavor: log1p values for the dispersion flavors, raw
/// counts for `seurat_v3`.
pub fn check_values(values: ValueKind, flavor: Flavor) -> Result<()> {
    let ok = match flavor {
        Flavor::SeuratV3 => values == ValueKind::Counts,
        _ => values == ValueKind::Log1p,
    };
    if ok {
        return Ok(());
    }
    let expected = match flavor {
        Flavor::SeuratV3 => "raw counts for flavor seurat_v3 (give them with --counts RAW.arrow)",
        _ => "log1p values for this flavor (run cellweave-normalize first)",
    };
    Err(Error::new(format!(
        "the values are '{}', expected {expected}",
        values.as_str()
    ))
    .field(crate::contract::meta::VALUES))
}

/// The raw counts of `raw` for the cells and genes of `cells` (matched by cell id and gene
/// id; `raw` may hold more of either), for `seurat_v3` on a log-normalized table.
pub fn align_counts(cells: &CellsTable, raw: &CellsTable) -> Result<Csr> {
    if raw.values != ValueKind::Counts {
        return Err(Error::new(format!(
            "the values are '{}', expected raw counts",
            raw.values.as_str()
        ))
        .field(crate::contract::meta::VALUES));
    }
    let rows: Vec<usize> = if raw.cell_ids == cells.cell_ids {
        (0..raw.n_cells()).collect()
    } else {
        rows_of(&cells.cell_ids, &raw.cell_ids).map_err(|(_, id)| {
            Error::new(format!("cell '{id}' is not in the counts table")).field("cell_id")
        })?
    };
    let cols = rows_of(&cells.gene_ids, &raw.gene_ids).map_err(|(_, id)| {
        Error::new(format!("gene '{id}' is not in the counts table")).field("gene_ids")
    })?;
    let x = if rows.len() == raw.n_cells() && rows.iter().enumerate().all(|(i, &r)| i == r) {
        raw.x.select_cols(&cols)
    } else {
        raw.x.select_rows(&rows).select_cols(&cols)
    };
    Ok(x)
}

/// Write the cells of a streamed input with the genes `keep` (ascending positions; all when
/// None) and `provenance`.
pub fn subset_file(
    input: &CellsInput,
    output: &Path,
    keep: Option<&[usize]>,
    provenance: &[Step],
) -> Result<()> {
    let g = input.n_genes();
    let all: Vec<usize>;
    let keep = match keep {
        Some(k) => k,
        None => {
            all = (0..g).collect();
            &all
        }
    };
    let mut map = vec![u32::MAX; g];
    for (new, &old) in keep.iter().enumerate() {
        map[old] = new as u32;
    }
    let pick = |v: &[String]| -> Vec<String> { keep.iter().map(|&c| v[c].clone()).collect() };
    let (gene_ids, gene_names) = (pick(&input.gene_ids), pick(&input.gene_names));
    let schema = input.output_schema(&CellsMeta {
        gene_ids: &gene_ids,
        gene_names: &gene_names,
        values: input.values,
        provenance,
        n_cells: input.n_cells(),
        fingerprint: input.fingerprint().to_string(),
    });
    let make = |i: usize| -> Result<RecordBatch> {
        let v = input.rows(i)?;
        let (gi, ex) = if keep.len() == g {
            input.lists(i)
        } else {
            stream::subset_rows(&v, None, &map)
        };
        stream::out_batch(&schema, input.per_cell_columns(i), gi, ex)
    };
    table::write_stream(output, schema.clone(), input.n_batches(), make, |i| {
        input.done(i)
    })
}

/// Keep the selected genes (ascending positions) of a cells table, in parallel.
pub fn subset_genes(t: &CellsTable, keep: &[usize]) -> CellsTable {
    let mut map = vec![u32::MAX; t.n_genes()];
    for (new, &old) in keep.iter().enumerate() {
        map[old] = new as u32;
    }
    const ROWS: usize = 4096;
    let parts: Vec<(Vec<u64>, Vec<u32>, Vec<f32>)> = (0..t.n_cells().div_ceil(ROWS))
        .into_par_iter()
        .map(|k| {
            let (mut lens, mut idx, mut val) = (Vec::new(), Vec::new(), Vec::new());
            for r in k * ROWS..((k + 1) * ROWS).min(t.n_cells()) {
                let (i, v) = t.x.row(r);
                let before = idx.len();
                for (&c, &x) in i.iter().zip(v) {
                    let m = map[c as usize];
                    if m != u32::MAX {
                        idx.push(m);
                        val.push(x);
                    }
                }
                lens.push((idx.len() - before) as u64);
            }
            (lens, idx, val)
        })
        .collect();
    let mut x = Csr::empty(keep.len());
    let nnz: usize = parts.iter().map(|p| p.1.len()).sum();
    x.indices.reserve(nnz);
    x.data.reserve(nnz);
    for (lens, idx, val) in parts {
        for l in lens {
            let last = *x.indptr.last().unwrap();
            x.indptr.push(last + l);
        }
        x.indices.extend_from_slice(&idx);
        x.data.extend_from_slice(&val);
    }
    CellsTable {
        cell_ids: t.cell_ids.clone(),
        batch: t.batch.clone(),
        obs: t.obs.clone(),
        gene_ids: keep.iter().map(|&g| t.gene_ids[g].clone()).collect(),
        gene_names: keep.iter().map(|&g| t.gene_names[g].clone()).collect(),
        x,
        values: t.values,
        provenance: t.provenance.clone(),
    }
}

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
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let b = pool.install(|| group_moments(&x, &g, Transform::Expm1));
        assert_eq!(a[0].sum, b[0].sum);
        assert_eq!(a[0].sumsq, b[0].sumsq);
    }
}
