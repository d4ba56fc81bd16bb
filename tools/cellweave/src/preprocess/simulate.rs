//! A multi-batch negative-binomial simulator with known cell types, for tests and
//! benchmarks (in the spirit of the reference stack's `gen_synth.py`, so that timings on
//! 100k x 20k at ~5% non-zero are comparable).
//!
//! Model, for cell c of type t in batch b and gene g:
//! `mu = lib[c] * exp(base[g] + type[t,g] + batch[b,g] + shift)`, `count ~ NB(mean mu,
//! inverse dispersion theta)`, then each non-zero count is dropped with probability
//! `dropout`. `base ~ N(0, 1.5)`; `type[t,g] ~ N(0, 0.2)` plus, for `markers_frac` of the
//! genes per type, `N(ln 4, 0.5)`; `batch[b,g] ~ N(0, 0.5 * batch_effect)`;
//! `lib = exp(N(0, 0.35)) * depth[b]^batch_effect` with batch depths 0.8, 1.0, 1.25, 0.9,
//! 1.1, 1.4, 0.7, 1, 1, ...; type proportions per batch ~ Dirichlet(3) (or `--type-weights`),
//! and the last type is absent from the last batch (or the types `--absent` names). `shift` is set by bisection so that the expected fraction
//! of non-zeros is `density`. Cells are grouped by batch.
//!
//! Sampling is exact but only touches the genes a cell can express: the non-zero genes of
//! a cell are a thinned subset of the genes hit by a Poisson(sum mu) multinomial draw
//! (P(hit) = 1 - e^-mu >= P(NB > 0)), and non-zero counts come from the zero-truncated
//! negative binomial. Every cell has its own random stream derived from the seed and its
//! index, so output does not depend on the number of threads, and cells are generated and
//! written in chunks so memory stays bounded for millions of cells.

use crate::contract::{fingerprint, Categorical, CellsTable, Column, Csr, Step, ValueKind};
use crate::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Gamma, Normal, Poisson};
use rayon::prelude::*;
use serde::Serialize;
use std::path::Path;

type Rand = rand::rngs::StdRng;

/// Parameters of the simulation (the flags of `cellweave-simulate`).
#[derive(Debug, Clone, Serialize, clap::Args)]
pub struct SimParams {
    /// Cells to simulate (at least 1)
    #[arg(value_parser = crate::cli::range::at_least_1, long, default_value_t = 5000)]
    pub cells: usize,
    /// Genes to simulate (at least 1)
    #[arg(value_parser = crate::cli::range::at_least_1, long, default_value_t = 3000)]
    pub genes: usize,
    /// Batches, of about equal size (at least 1)
    #[arg(value_parser = crate::cli::range::at_least_1, long, default_value_t = 3)]
    pub batches: usize,
    /// Cell types, shared by every batch (at least 1)
    #[arg(value_parser = crate::cli::range::at_least_1, long, default_value_t = 6)]
    pub cell_types: usize,
    /// Strength of the batch effect (0 = none; 1 = gene-wise log-effects of sd 0.5 and
    /// batch depths 0.8, 1.0, 1.25, ...) (>= 0)
    #[arg(value_parser = crate::cli::range::non_negative::<f64>, long, default_value_t = 1.0)]
    pub batch_effect: f64,
    /// Expected fraction of non-zero entries before dropout (above 0, at most 1)
    #[arg(value_parser = crate::cli::range::fraction_above_0::<f64>, long, default_value_t = 0.05)]
    pub density: f64,
    /// Probability that a non-zero count is dropped (0 to 1, below 1)
    #[arg(value_parser = crate::cli::range::fraction_below_1::<f64>, long, default_value_t = 0.0)]
    pub dropout: f64,
    /// Negative-binomial inverse dispersion (> 0)
    #[arg(value_parser = crate::cli::range::positive::<f64>, long, default_value_t = 4.0)]
    pub theta: f64,
    /// Fraction of genes that mark each cell type (0 to 1)
    #[arg(value_parser = crate::cli::range::fraction::<f64>, long, default_value_t = 0.05)]
    pub markers_frac: f64,
    /// Cell types absent from batches, as BATCH:TYPE,... (0-based indices; e.g. `0:5,1:4,1:5`).
    /// Replaces the default (the last type absent from the last batch); `none`: every type
    /// in every batch
    #[arg(long, value_name = "B:T,...")]
    pub absent: Option<String>,
    /// Relative type proportions instead of the Dirichlet(3) draws: one comma-separated list
    /// of weights per batch, batches separated by `/` (one list: the same for every batch);
    /// e.g. `10,1,1/1,1,10`. A weight of 0 leaves the type out of that batch
    #[arg(long, value_name = "W,.../W,...")]
    pub type_weights: Option<String>,
    /// Random seed
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Cells generated and written per chunk (memory is about chunk x non-zeros per cell) (at least 1)
    #[arg(value_parser = crate::cli::range::at_least_1, long, default_value_t = 8192)]
    pub chunk_cells: usize,
}

impl Default for SimParams {
    fn default() -> Self {
        crate::cli::defaults()
    }
}

/// Walker's alias table over gene weights.
struct Alias {
    prob: Vec<f64>,
    alias: Vec<u32>,
}

impl Alias {
    fn new(w: &[f64]) -> Alias {
        let n = w.len();
        let total: f64 = w.iter().sum();
        let mut prob: Vec<f64> = w.iter().map(|&x| x * n as f64 / total).collect();
        let mut alias = vec![0u32; n];
        let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| prob[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            alias[s] = l as u32;
            prob[l] -= 1.0 - prob[s];
            if prob[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        for i in large.into_iter().chain(small) {
            prob[i] = 1.0;
        }
        Alias { prob, alias }
    }
    fn draw(&self, rng: &mut Rand) -> usize {
        let i = rng.random_range(0..self.prob.len());
        if rng.random::<f64>() < self.prob[i] {
            i
        } else {
            self.alias[i] as usize
        }
    }
}

/// The per-gene and per-batch parameters drawn from the seed.
pub struct Design {
    p: SimParams,
    /// Type proportions per batch.
    props: Vec<Vec<f64>>,
    /// First cell of each batch (and the total at the end).
    batch_start: Vec<usize>,
    depth: Vec<f64>,
    /// mean expression at library size 1 for each (type, batch): `mu0[t * B + b][g]`.
    mu0: Vec<Vec<f64>>,
    mu0_sum: Vec<f64>,
    alias: Vec<Alias>,
    /// The log-mean offset that gives the requested density (see the module documentation).
    pub shift: f64,
}

fn check(p: &SimParams) -> Result<()> {
    for (name, v) in [
        ("--cells", p.cells),
        ("--genes", p.genes),
        ("--batches", p.batches),
        ("--cell-types", p.cell_types),
    ] {
        if v == 0 {
            bail!("{name} must be at least 1");
        }
    }
    if p.genes > u32::MAX as usize {
        bail!("--genes must be below 2^32");
    }
    if !(p.density > 0.0 && p.density < 1.0) {
        bail!(
            "--density must be between 0 and 1 (exclusive), got {}",
            p.density
        );
    }
    if !(0.0..1.0).contains(&p.dropout) {
        bail!("--dropout must be in [0, 1), got {}", p.dropout);
    }
    if p.theta <= 0.0 || !p.theta.is_finite() || p.batch_effect < 0.0 || !p.batch_effect.is_finite()
    {
        bail!("--theta must be positive and --batch-effect non-negative");
    }
    Ok(())
}

/// P(NB(mu, theta) > 0).
fn p_nonzero(mu: f64, theta: f64) -> f64 {
    -(-theta * (mu / theta).ln_1p()).exp_m1()
}

fn cell_rng(seed: u64, cell: usize) -> Rand {
    // splitmix64 of (seed, cell) so that neighbouring cells get unrelated streams
    let mut z = seed ^ (cell as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    Rand::seed_from_u64(z ^ (z >> 31))
}

impl Design {
    /// Draw the design from the seed and calibrate the density.
    pub fn new(p: &SimParams) -> Result<Design> {
        check(p)?;
        let (b_n, t_n, g_n) = (p.batches, p.cell_types, p.genes);
        let mut rng = Rand::seed_from_u64(p.seed);
        let norm = |sd: f64| Normal::new(0.0, sd).expect("finite sd");
        let gamma3 = Gamma::new(3.0, 1.0).expect("valid gamma");
        let mut props: Vec<Vec<f64>> = (0..b_n)
            .map(|_| {
                let v: Vec<f64> = (0..t_n).map(|_| gamma3.sample(&mut rng)).collect();
                let s: f64 = v.iter().sum();
                v.into_iter().map(|x| x / s).collect()
            })
            .collect();
        if let Some(w) = &p.type_weights {
            props = parse_weights(w, b_n, t_n)?;
        }
        let absent = match &p.absent {
            Some(a) => parse_absent(a, b_n, t_n)?,
            None if b_n > 1 && t_n > 1 => vec![(b_n - 1, t_n - 1)],
            None => vec![],
        };
        let mut touched = vec![p.type_weights.is_some(); b_n];
        for (b, t) in absent {
            props[b][t] = 0.0;
            touched[b] = true;
        }
        for (b, pb) in props.iter_mut().enumerate().filter(|(b, _)| touched[*b]) {
            let s: f64 = pb.iter().sum();
            if s <= 0.0 {
                bail!("--absent/--type-weights leave batch {b} without any cell type");
            }
            pb.iter_mut().for_each(|x| *x /= s);
        }
        let mut sizes = vec![0usize; b_n];
        for _ in 0..p.cells {
            sizes[rng.random_range(0..b_n)] += 1;
        }
        let mut batch_start = vec![0usize];
        for s in &sizes {
            batch_start.push(batch_start.last().unwrap() + s);
        }
        let depths: [f64; 7] = [0.8, 1.0, 1.25, 0.9, 1.1, 1.4, 0.7];
        let depth: Vec<f64> = (0..b_n)
            .map(|b| depths.get(b).copied().unwrap_or(1.0).powf(p.batch_effect))
            .collect();
        let base: Vec<f64> = (0..g_n).map(|_| norm(1.5).sample(&mut rng)).collect();
        let n_markers = ((p.markers_frac * g_n as f64) as usize).clamp(1, g_n);
        let marker = Normal::new(4f64.ln(), 0.5).expect("finite");
        let mut logtype = vec![vec![0f64; g_n]; t_n];
        for lt in logtype.iter_mut() {
            for v in lt.iter_mut() {
                *v = norm(0.2).sample(&mut rng);
            }
            for g in rand::seq::index::sample(&mut rng, g_n, n_markers) {
                lt[g] += marker.sample(&mut rng);
            }
        }
        let bsd = 0.5 * p.batch_effect;
        let logbatch: Vec<Vec<f64>> = (0..b_n)
            .map(|_| {
                (0..g_n)
                    .map(|_| {
                        if bsd > 0.0 {
                            norm(bsd).sample(&mut rng)
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect();
        let log_mu = |t: usize, b: usize, g: usize| base[g] + logtype[t][g] + logbatch[b][g];

        // calibrate the shift on 64 pseudo-cells
        let probe: Vec<(usize, usize, f64)> = (0..64)
            .map(|_| {
                let b = rng.random_range(0..b_n);
                let t = pick(&props[b], rng.random::<f64>());
                (t, b, norm(0.35).sample(&mut rng).exp() * depth[b])
            })
            .collect();
        let density_at = |shift: f64| -> f64 {
            let s: f64 = probe
                .par_iter()
                .map(|&(t, b, lib)| {
                    (0..g_n)
                        .map(|g| p_nonzero(lib * (log_mu(t, b, g) + shift).exp(), p.theta))
                        .sum::<f64>()
                })
                .sum();
            s / (probe.len() * g_n) as f64
        };
        let (mut lo, mut hi) = (-30.0, 30.0);
        for _ in 0..45 {
            let mid = 0.5 * (lo + hi);
            if density_at(mid) < p.density {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let shift = 0.5 * (lo + hi);
        let mut mu0 = Vec::with_capacity(t_n * b_n);
        for t in 0..t_n {
            for b in 0..b_n {
                mu0.push(
                    (0..g_n)
                        .map(|g| (log_mu(t, b, g) + shift).exp())
                        .collect::<Vec<f64>>(),
                );
            }
        }
        let mu0_sum = mu0.iter().map(|v| v.iter().sum()).collect();
        let alias = mu0.par_iter().map(|v| Alias::new(v)).collect();
        Ok(Design {
            p: p.clone(),
            props,
            batch_start,
            depth,
            mu0,
            mu0_sum,
            alias,
            shift,
        })
    }

    fn batch_of(&self, cell: usize) -> usize {
        self.batch_start.partition_point(|&s| s <= cell) - 1
    }

    /// One cell: its type and its non-zero (gene, count) entries, genes ascending.
    fn cell(
        &self,
        c: usize,
        stamp: &mut [u32],
        hits: &mut Vec<u32>,
    ) -> (usize, Vec<u32>, Vec<f32>) {
        let p = &self.p;
        let mut rng = cell_rng(p.seed, c);
        let b = self.batch_of(c);
        let t = pick(&self.props[b], rng.random::<f64>());
        let lib = Normal::new(0f64, 0.35)
            .expect("finite")
            .sample(&mut rng)
            .exp()
            * self.depth[b];
        let k = t * p.batches + b;
        let (mu0, alias) = (&self.mu0[k], &self.alias[k]);
        let lambda = lib * self.mu0_sum[k];
        let n_events = if lambda > 0.0 {
            Poisson::new(lambda)
                .map(|d| d.sample(&mut rng) as u64)
                .unwrap_or(0)
        } else {
            0
        };
        let mark = (c as u32).wrapping_add(1);
        hits.clear();
        for _ in 0..n_events {
            let g = alias.draw(&mut rng);
            if stamp[g] != mark {
                stamp[g] = mark;
                hits.push(g as u32);
            }
        }
        hits.sort_unstable();
        let (mut idx, mut val) = (
            Vec::with_capacity(hits.len()),
            Vec::with_capacity(hits.len()),
        );
        for &g in hits.iter() {
            let mu = lib * mu0[g as usize];
            let accept = p_nonzero(mu, p.theta) * (1.0 - p.dropout) / -(-mu).exp_m1();
            if rng.random::<f64>() >= accept {
                continue;
            }
            idx.push(g);
            val.push(truncated_nb(mu, p.theta, &mut rng) as f32);
        }
        (t, idx, val)
    }

    /// Cells `start..end` as a cells table (batch and cell_type categories complete).
    pub fn chunk(&self, start: usize, end: usize) -> CellsTable {
        let g = self.p.genes;
        let rows: Vec<(usize, Vec<u32>, Vec<f32>)> = (start..end)
            .into_par_iter()
            .map_init(
                || (vec![0u32; g], Vec::new()),
                |(stamp, hits), c| self.cell(c, stamp, hits),
            )
            .collect();
        let mut x = Csr::empty(g);
        let nnz: usize = rows.iter().map(|r| r.1.len()).sum();
        x.indices.reserve(nnz);
        x.data.reserve(nnz);
        let mut types = Vec::with_capacity(rows.len());
        for (t, i, v) in rows {
            types.push(t as u32);
            x.indices.extend_from_slice(&i);
            x.data.extend_from_slice(&v);
            x.indptr.push(x.indices.len() as u64);
        }
        let mut header = self.header(Vec::new());
        header.cell_ids = (start..end).map(|c| self.cell_id(c)).collect();
        header.batch.codes = (start..end).map(|c| self.batch_of(c) as u32).collect();
        header.obs = vec![(
            "cell_type".into(),
            Column::Cat(Categorical {
                codes: types,
                categories: self.type_names(),
            }),
        )];
        header.x = x;
        header
    }

    fn cell_id(&self, c: usize) -> String {
        let width = (self.p.cells.max(2) - 1).to_string().len();
        format!("c{c:0width$}")
    }
    fn type_names(&self) -> Vec<String> {
        (0..self.p.cell_types).map(|t| format!("t{t}")).collect()
    }

    /// An empty cells table with the genes, categories and columns of the simulation.
    pub fn header(&self, provenance: Vec<Step>) -> CellsTable {
        let width = (self.p.genes.max(2) - 1).to_string().len();
        let genes: Vec<String> = (0..self.p.genes).map(|g| format!("G{g:0width$}")).collect();
        CellsTable {
            cell_ids: vec![],
            batch: Categorical {
                codes: vec![],
                categories: (0..self.p.batches).map(|b| format!("b{b}")).collect(),
            },
            obs: vec![(
                "cell_type".into(),
                Column::Cat(Categorical {
                    codes: vec![],
                    categories: self.type_names(),
                }),
            )],
            gene_ids: genes.clone(),
            gene_names: genes,
            x: Csr::empty(self.p.genes),
            values: ValueKind::Counts,
            provenance,
        }
    }

    /// All cell ids, in order.
    pub fn cell_ids(&self) -> Vec<String> {
        (0..self.p.cells).map(|c| self.cell_id(c)).collect()
    }
}

/// `--absent`: `B:T,...` as (batch, type) index pairs; `none` is the empty list.
fn parse_absent(spec: &str, b_n: usize, t_n: usize) -> Result<Vec<(usize, usize)>> {
    let spec = spec.trim();
    if spec.is_empty() || spec == "none" {
        return Ok(vec![]);
    }
    spec.split(',')
        .map(|item| {
            let parsed = item.trim().split_once(':').and_then(|(b, t)| {
                Some((b.trim().parse::<usize>().ok()?, t.trim().parse::<usize>().ok()?))
            });
            match parsed {
                Some((b, t)) if b < b_n && t < t_n => Ok((b, t)),
                _ => bail!(
                    "--absent: expected BATCH:TYPE with BATCH < {b_n} and TYPE < {t_n}, got '{item}'"
                ),
            }
        })
        .collect()
}

/// `--type-weights`: one list of `t_n` non-negative weights per batch (`/`-separated), or
/// one list for all batches.
fn parse_weights(spec: &str, b_n: usize, t_n: usize) -> Result<Vec<Vec<f64>>> {
    let lists: Vec<Vec<f64>> = spec
        .split('/')
        .map(|l| {
            let w: Vec<f64> = l
                .split(',')
                .map(|x| {
                    x.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite() && *v >= 0.0)
                })
                .collect::<Option<Vec<f64>>>()
                .unwrap_or_default();
            if w.len() != t_n {
                bail!("--type-weights: expected {t_n} non-negative weights per batch, got '{l}'");
            }
            Ok(w)
        })
        .collect::<Result<_>>()?;
    match lists.len() {
        1 => Ok(vec![lists[0].clone(); b_n]),
        n if n == b_n => Ok(lists),
        n => bail!("--type-weights: expected 1 or {b_n} lists (one per batch), got {n}"),
    }
}

/// Index of the category a uniform draw `u` falls in.
fn pick(props: &[f64], u: f64) -> usize {
    let mut acc = 0.0;
    for (i, &p) in props.iter().enumerate() {
        acc += p;
        if u < acc {
            return i;
        }
    }
    props.iter().rposition(|&p| p > 0.0).unwrap_or(0)
}

/// A draw from NB(mu, theta) conditioned on being > 0.
fn truncated_nb(mu: f64, theta: f64, rng: &mut Rand) -> u64 {
    if mu > 30.0 {
        // P(0) is negligible here: sample the gamma-Poisson mixture, redraw zeros
        let gamma = Gamma::new(theta, mu / theta).expect("valid gamma");
        loop {
            let lam: f64 = gamma.sample(rng);
            let k = if lam > 0.0 {
                Poisson::new(lam).map(|d| d.sample(rng) as u64).unwrap_or(0)
            } else {
                0
            };
            if k > 0 {
                return k;
            }
        }
    }
    let p0 = (-theta * (mu / theta).ln_1p()).exp();
    let r = mu / (mu + theta);
    let mut u = rng.random::<f64>() * (1.0 - p0);
    let mut pmf = p0;
    let mut k = 0u64;
    loop {
        k += 1;
        pmf *= (k as f64 - 1.0 + theta) / k as f64 * r;
        if u < pmf || pmf < 1e-300 {
            return k;
        }
        u -= pmf;
    }
}

/// What a simulation produced.
#[derive(Debug, Clone, Serialize)]
pub struct SimSummary {
    /// Cells written.
    pub cells: usize,
    /// Genes written.
    pub genes: usize,
    /// Non-zero entries written.
    pub nnz: u64,
    /// Fraction of non-zero entries.
    pub density: f64,
    /// Sum of all counts.
    pub total_counts: f64,
    /// The calibrated log-mean offset.
    pub shift: f64,
}

/// Simulate in memory (tests and small data).
pub fn simulate(p: &SimParams) -> Result<CellsTable> {
    let d = Design::new(p)?;
    Ok(d.chunk(0, p.cells))
}

/// Simulate straight to a cells table file, chunk by chunk (bounded memory).
pub fn simulate_to(path: &Path, p: &SimParams, provenance: Vec<Step>) -> Result<SimSummary> {
    let d = Design::new(p)?;
    let header = d.header(provenance);
    let fp = fingerprint(&d.cell_ids());
    let (mut nnz, mut total) = (0u64, 0f64);
    let chunk = p.chunk_cells.max(1);
    let pb = crate::cli::progress(p.cells as u64, "cells");
    crate::io::table::write_cells_streaming(path, &header, p.cells, &fp, |sink| {
        let mut start = 0;
        while start < p.cells {
            let end = (start + chunk).min(p.cells);
            let mut t = d.chunk(start, end);
            t.provenance = header.provenance.clone();
            nnz += t.x.nnz() as u64;
            total += t.x.data.iter().map(|&v| v as f64).sum::<f64>();
            sink(&t)?;
            pb.inc((end - start) as u64);
            start = end;
        }
        Ok(())
    })?;
    pb.finish_and_clear();
    Ok(SimSummary {
        cells: p.cells,
        genes: p.genes,
        nnz,
        density: nnz as f64 / (p.cells as f64 * p.genes as f64),
        total_counts: total,
        shift: d.shift,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SimParams {
        SimParams {
            cells: 3000,
            genes: 800,
            batches: 3,
            cell_types: 4,
            density: 0.1,
            seed: 7,
            ..Default::default()
        }
    }

    #[test]
    fn density_and_structure() {
        let t = simulate(&small()).unwrap();
        t.validate().unwrap();
        let dens = t.x.nnz() as f64 / (3000.0 * 800.0);
        assert!((dens - 0.1).abs() < 0.02, "density {dens}");
        assert!(t.x.data.iter().all(|&v| v >= 1.0 && v.fract() == 0.0));
        assert_eq!(t.batch.categories, vec!["b0", "b1", "b2"]);
        // the last type is absent from the last batch
        let ct = match &t.obs[0].1 {
            Column::Cat(c) => c.clone(),
            _ => unreachable!(),
        };
        let last = (0..3000)
            .filter(|&i| t.batch.codes[i] == 2 && ct.codes[i] == 3)
            .count();
        assert_eq!(last, 0);
        assert!((0..3000).any(|i| ct.codes[i] == 3));
    }

    #[test]
    fn deterministic_and_chunking_invariant() {
        let p = small();
        let d = Design::new(&p).unwrap();
        let whole = d.chunk(0, 3000);
        let a = d.chunk(0, 1234);
        let b = d.chunk(1234, 3000);
        assert_eq!(&whole.x.data[..a.x.nnz()], &a.x.data[..]);
        assert_eq!(&whole.x.indices[a.x.nnz()..], &b.x.indices[..]);
        let again = simulate(&p).unwrap();
        assert_eq!(whole.x, again.x);
        let one = crate::numerics::with_threads(1, || simulate(&p).unwrap());
        assert_eq!(one.x, whole.x);
        let other = simulate(&SimParams { seed: 8, ..p }).unwrap();
        assert_ne!(other.x, whole.x);
    }

    #[test]
    fn batch_effect_zero_removes_batch_differences() {
        // with no batch effect, per-batch mean expression of each gene agrees closely
        let p = SimParams {
            cells: 6000,
            genes: 300,
            batches: 2,
            cell_types: 1,
            batch_effect: 0.0,
            density: 0.3,
            ..Default::default()
        };
        let t = simulate(&p).unwrap();
        let mut sums = vec![vec![0f64; 300]; 2];
        let mut n = [0f64; 2];
        for r in 0..t.n_cells() {
            let b = t.batch.codes[r] as usize;
            n[b] += 1.0;
            let (i, v) = t.x.row(r);
            for (&g, &x) in i.iter().zip(v) {
                sums[b][g as usize] += x as f64;
            }
        }
        let tot: Vec<f64> = (0..2).map(|b| sums[b].iter().sum::<f64>() / n[b]).collect();
        assert!(
            (tot[0] / tot[1] - 1.0).abs() < 0.05,
            "library sizes {tot:?}"
        );
        let with = simulate(&SimParams {
            batch_effect: 1.0,
            ..p
        })
        .unwrap();
        assert_ne!(with.x, t.x);
    }

    /// Mean over genes of |log mean(batch 0) - log mean(batch 1)| on one cell type.
    fn batch_gap(batch_effect: f64) -> f64 {
        let p = SimParams {
            cells: 4000,
            genes: 300,
            batches: 2,
            cell_types: 1,
            batch_effect,
            density: 0.3,
            ..Default::default()
        };
        let t = simulate(&p).unwrap();
        let mut sums = vec![vec![1f64; 300]; 2];
        for r in 0..t.n_cells() {
            let (i, v) = t.x.row(r);
            for (&g, &x) in i.iter().zip(v) {
                sums[t.batch.codes[r] as usize][g as usize] += x as f64;
            }
        }
        (0..300)
            .map(|g| (sums[0][g].ln() - sums[1][g].ln()).abs())
            .sum::<f64>()
            / 300.0
    }

    #[test]
    fn batch_effect_strength_scales_the_gap() {
        let (weak, strong) = (batch_gap(0.5), batch_gap(2.0));
        assert!(strong > 2.5 * weak, "gap {weak} at 0.5, {strong} at 2");
    }

    #[test]
    fn dropout_removes_counts() {
        let p = small();
        let a = simulate(&p).unwrap();
        let b = simulate(&SimParams { dropout: 0.5, ..p }).unwrap();
        let ratio = b.x.nnz() as f64 / a.x.nnz() as f64;
        assert!((ratio - 0.5).abs() < 0.05, "kept {ratio}");
    }

    fn type_counts(t: &CellsTable, batches: usize, types: usize) -> Vec<Vec<usize>> {
        let ct = match &t.obs[0].1 {
            Column::Cat(c) => c.clone(),
            _ => unreachable!(),
        };
        let mut n = vec![vec![0usize; types]; batches];
        for i in 0..t.n_cells() {
            n[t.batch.codes[i] as usize][ct.codes[i] as usize] += 1;
        }
        n
    }

    #[test]
    fn absent_types_and_weights() {
        let p = SimParams {
            absent: Some("0:3,1:0,1:1".into()),
            type_weights: Some("10,1,1,1/1,1,1,10/1,1,1,1".into()),
            ..small()
        };
        let n = type_counts(&simulate(&p).unwrap(), 3, 4);
        assert_eq!(n[0][3], 0);
        assert_eq!((n[1][0], n[1][1]), (0, 0));
        // 10:1 weights: about 10 / 12 of batch 0 is type 0, 10 / 11 of batch 1 is type 3
        let f0 = n[0][0] as f64 / n[0].iter().sum::<usize>() as f64;
        let f1 = n[1][3] as f64 / n[1].iter().sum::<usize>() as f64;
        assert!((f0 - 10.0 / 12.0).abs() < 0.04, "{f0}");
        assert!((f1 - 10.0 / 11.0).abs() < 0.04, "{f1}");
        // `none`: the last batch keeps the last type; one weight list applies to all batches
        let all = SimParams {
            absent: Some("none".into()),
            type_weights: Some("1,1,1,1".into()),
            ..small()
        };
        let n = type_counts(&simulate(&all).unwrap(), 3, 4);
        assert!(n.iter().flatten().all(|&c| c > 150), "{n:?}");
    }

    #[test]
    fn bad_type_options() {
        for (absent, weights) in [
            (Some("3:0"), None),
            (Some("0:9"), None),
            (Some("x"), None),
            (Some("0:0,0:1,0:2,0:3"), None),
            (None, Some("1,1")),
            (None, Some("1,1,1,1/1,1,1,1")),
            (None, Some("1,-1,1,1")),
        ] {
            let p = SimParams {
                absent: absent.map(String::from),
                type_weights: weights.map(String::from),
                ..small()
            };
            let e = Design::new(&p).err().expect("must fail").to_string();
            assert!(
                e.contains("--absent") || e.contains("--type-weights"),
                "{e}"
            );
        }
    }

    #[test]
    fn bad_parameters() {
        assert!(Design::new(&SimParams {
            density: 1.5,
            ..Default::default()
        })
        .is_err());
        assert!(Design::new(&SimParams {
            cells: 0,
            ..Default::default()
        })
        .is_err());
    }
}
