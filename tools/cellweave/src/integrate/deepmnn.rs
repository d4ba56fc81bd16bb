//! deepMNN's pairs (Zou et al., Frontiers in Genetics 2021) and the space they live in.
//!
//! The space: every gene z-scored over all cells (sample standard deviation, a constant
//! gene divided by 1, values clipped above at 10: scanpy's `scale(max_value=10)`), then the
//! joint PCA (50 components) of the scaled values; each cell's scores L2-normalized.
//!
//! The pairs, as deepMNN's `find_alignments`: for each batch `i`, every cell's `k` (20)
//! nearest cells (Manhattan distance) among the union of the batches after `i`, and among
//! the union of the batches before `i`; a pair (a in batch i, b in batch j > i) is mutual
//! when b is among a's neighbours after i and a among b's neighbours before j. A batch pair
//! contributes its pairs only when more than `min_fraction` (10%) of the cells of one of its
//! two batches are matched (deepMNN's `alpha`). deepMNN's search is approximate (Annoy);
//! this one is the search chosen by `--nn` (exact for small batches).

use crate::contract::{CellsTable, PairKind, PairsTable};
use crate::numerics::neighbors::{knn_query_with, l2_normalize_rows, Metric, Search};
use crate::numerics::pca::{pca_with, Pca, Solver};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Largest scaled value (scanpy's `scale(max_value=10)`).
pub const SCALE_MAX: f32 = 10.0;

/// The pairs definition's own flags of `cellweave-pairs --definition deepmnn`.
#[derive(clap::Args, Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
#[command(next_help_heading = "deepMNN pairs (--definition deepmnn)")]
pub struct DeepMnnPairs {
    /// Neighbours of each cell among the other batches (deepMNN's k) (at least 1)
    #[arg(id = "deepmnn_k", long = "deepmnn-k", value_parser = crate::cli::range::at_least_1,
          default_value_t = 20, value_name = "K")]
    pub k: usize,
    /// A batch pair is used only when more than this fraction of the cells of one of its
    /// batches are matched (deepMNN's alpha) (0 to 1)
    #[arg(id = "deepmnn_min_fraction", long = "deepmnn-min-fraction", value_parser = crate::cli::range::fraction::<f64>,
          default_value_t = 0.1, value_name = "FRACTION")]
    pub min_fraction: f64,
    /// Principal components of the search space (at least 1)
    #[arg(id = "deepmnn_pcs", long = "deepmnn-pcs", value_parser = crate::cli::range::at_least_1,
          default_value_t = 50, value_name = "N")]
    pub n_pcs: usize,
}

impl Default for DeepMnnPairs {
    fn default() -> Self {
        crate::cli::defaults()
    }
}

/// Per-gene z-scoring (mean and sample standard deviation of the training cells).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaling {
    /// Gene means.
    pub mean: Vec<f32>,
    /// Gene standard deviations (1 for a constant gene).
    pub sd: Vec<f32>,
}

impl Scaling {
    /// Fit to dense row-major `n x g` values.
    pub fn fit(x: &[f32], g: usize) -> Scaling {
        let n = x.len() / g.max(1);
        let mut sum = vec![0f64; g];
        let mut sq = vec![0f64; g];
        for row in x.chunks(g) {
            for (j, &v) in row.iter().enumerate() {
                sum[j] += v as f64;
                sq[j] += v as f64 * v as f64;
            }
        }
        Self::from_sums(n, &sum, &sq)
    }
    /// [`Scaling::fit`] of sparse rows, bit for bit as of their dense copy: the same f64 sums
    /// in the same row order (the zeros the dense copy adds change no sum).
    pub fn fit_rows(x: &dyn crate::io::rows::Rows) -> Scaling {
        let g = x.n_cols();
        let mut sum = vec![0f64; g];
        let mut sq = vec![0f64; g];
        for r in 0..x.n_rows() {
            let (idx, val) = x.row(r);
            for (&c, &v) in idx.iter().zip(val) {
                sum[c as usize] += v as f64;
                sq[c as usize] += v as f64 * v as f64;
            }
        }
        Self::from_sums(x.n_rows(), &sum, &sq)
    }
    /// The mean and sample sd (1 where it is 0) of `n` rows from their per-gene sums and
    /// sums of squares.
    fn from_sums(n: usize, sum: &[f64], sq: &[f64]) -> Scaling {
        let nf = n as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / nf.max(1.0)).collect();
        let sd = (0..sum.len())
            .map(|j| {
                let var = if n > 1 {
                    ((sq[j] - nf * mean[j] * mean[j]) / (nf - 1.0)).max(0.0)
                } else {
                    0.0
                };
                if var > 0.0 {
                    var.sqrt() as f32
                } else {
                    1.0
                }
            })
            .collect();
        Scaling {
            mean: mean.iter().map(|&m| m as f32).collect(),
            sd,
        }
    }
    /// Scale dense rows in place (clipped above at [`SCALE_MAX`]).
    pub fn apply(&self, x: &mut [f32]) {
        let g = self.mean.len();
        for row in x.chunks_mut(g) {
            for (j, v) in row.iter_mut().enumerate() {
                *v = ((*v - self.mean[j]) / self.sd[j]).min(SCALE_MAX);
            }
        }
    }
    /// Back to the input scale, in place.
    pub fn invert(&self, x: &mut [f32]) {
        let g = self.mean.len();
        for row in x.chunks_mut(g) {
            for (j, v) in row.iter_mut().enumerate() {
                *v = *v * self.sd[j] + self.mean[j];
            }
        }
    }
}

/// The scaled values of every cell (`n x g`), their scaling and their PCA.
pub struct Space {
    /// Scaled values, row-major.
    pub scaled: Vec<f32>,
    /// The scaling applied.
    pub scaling: Scaling,
    /// PCA of the scaled values.
    pub pca: Pca,
}

/// The scaled values and their PCA (`n_pcs` components, seeded solver).
pub fn space(cells: &CellsTable, n_pcs: usize, seed: u64) -> Space {
    let (n, g) = (cells.n_cells(), cells.n_genes());
    let rows: Vec<usize> = (0..n).collect();
    let mut scaled = cells.x.to_dense_rows(&rows);
    let scaling = Scaling::fit(&scaled, g);
    scaling.apply(&mut scaled);
    let pca = pca_with(&scaled, n, g, n_pcs, seed, Solver::Auto);
    Space {
        scaled,
        scaling,
        pca,
    }
}

/// What one batch pair gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchPair {
    /// First batch (batch order).
    pub a: String,
    /// Second batch.
    pub b: String,
    /// Mutual pairs found.
    pub mutual: usize,
    /// Largest fraction of matched cells of the two batches.
    pub fraction: f64,
    /// Whether the pairs are kept (`fraction > min_fraction`).
    pub used: bool,
}

/// Rows of `members` batches' cells (global ids) and their stacked scores.
fn stack(
    members: &[Vec<usize>],
    which: &[usize],
    scores: &[f32],
    d: usize,
) -> (Vec<usize>, Vec<f32>) {
    let ids: Vec<usize> = which
        .iter()
        .flat_map(|&b| members[b].iter().copied())
        .collect();
    let mut e = Vec::with_capacity(ids.len() * d);
    for &c in &ids {
        e.extend_from_slice(&scores[c * d..(c + 1) * d]);
    }
    (ids, e)
}

/// deepMNN's pairs of `cells` (module documentation): the table (`mnn` rows only) and one
/// report per batch pair.
pub fn compute(
    cells: &CellsTable,
    p: &DeepMnnPairs,
    seed: u64,
    search: &Search,
) -> Result<(PairsTable, Vec<BatchPair>)> {
    crate::integrate::pairs::check_input(cells)?;
    let names = &cells.batch.categories;
    let nb = names.len();
    if nb < 2 {
        return Err(Error::new(format!(
            "deepMNN pairs join batches: the table has {nb} batch(es)"
        ))
        .field("batch"));
    }
    let n = cells.n_cells();
    let sp = space(cells, p.n_pcs, seed);
    let d = sp.pca.k;
    let mut scores = sp.pca.scores;
    l2_normalize_rows(&mut scores, d);
    let mut members = vec![Vec::new(); nb];
    for (c, &b) in cells.batch.codes.iter().enumerate() {
        members[b as usize].push(c);
    }
    // after[c] / before[c]: neighbours of cell c among the later / earlier batches
    let mut after: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n];
    let mut before: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n];
    for i in 0..nb {
        let (q_ids, q) = stack(&members, &[i], &scores, d);
        for (others, lists) in [
            ((i + 1..nb).collect::<Vec<_>>(), &mut after),
            ((0..i).collect::<Vec<_>>(), &mut before),
        ] {
            let (r_ids, r) = stack(&members, &others, &scores, d);
            if r_ids.is_empty() || q_ids.is_empty() {
                continue;
            }
            let nn = knn_query_with(&r, &q, d, p.k, Metric::Manhattan, search);
            nn.relabel_into(lists, &q_ids, &r_ids);
        }
    }
    let code = |c: u32| cells.batch.codes[c as usize] as usize;
    let mut found: Vec<Vec<(u32, u32, f32)>> = vec![Vec::new(); nb * nb];
    for (a, list) in after.iter().enumerate() {
        for &(b, dist) in list {
            if before[b as usize].iter().any(|&(x, _)| x as usize == a) {
                found[code(a as u32) * nb + code(b)].push((a as u32, b, dist));
            }
        }
    }
    let mut reports = Vec::new();
    let mut rows = Vec::new();
    for i in 0..nb {
        for j in i + 1..nb {
            let m = &found[i * nb + j];
            let distinct = |f: fn(&(u32, u32, f32)) -> u32| {
                let mut v: Vec<u32> = m.iter().map(f).collect();
                v.sort_unstable();
                v.dedup();
                v.len()
            };
            let fa = distinct(|t| t.0) as f64 / members[i].len().max(1) as f64;
            let fb = distinct(|t| t.1) as f64 / members[j].len().max(1) as f64;
            let fraction = fa.max(fb);
            let used = fraction > p.min_fraction;
            if used {
                rows.extend(m.iter().map(|&(a, b, dd)| (a.min(b), a.max(b), dd)));
            }
            reports.push(BatchPair {
                a: names[i].clone(),
                b: names[j].clone(),
                mutual: m.len(),
                fraction,
                used,
            });
        }
    }
    rows.sort_by_key(|&(a, b, _)| (a, b));
    let mut t = PairsTable {
        n_cells: n,
        fingerprint: cells.fingerprint(),
        ..Default::default()
    };
    for (a, b, dd) in rows {
        t.push(PairKind::Mnn, a, b, dd, f32::NAN);
    }
    Ok((t, reports))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Categorical, Csr, ValueKind};
    use crate::numerics::neighbors::Method;

    /// Three batches: two copies of the same two clusters (shifted a little) and a third
    /// batch far from everything.
    fn cells() -> CellsTable {
        let g = 6;
        let mut dense = Vec::new();
        let mut codes = Vec::new();
        let mut x = 1u64;
        let mut noise = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 0.2
        };
        for b in 0..3u32 {
            for c in 0..40 {
                let cluster = c % 2;
                for j in 0..g {
                    let base = match (b, cluster, j) {
                        (2, _, j) if j >= 4 => 8.0,
                        (2, _, _) => 0.0,
                        (_, 0, j) if j < 2 => 3.0,
                        (_, 1, j) if (2..4).contains(&j) => 3.0,
                        _ => 0.0,
                    };
                    dense.push(base + 0.1 * b as f32 + noise());
                }
                codes.push(b);
            }
        }
        let n = codes.len();
        let t = CellsTable {
            cell_ids: (0..n).map(|i| format!("c{i}")).collect(),
            gene_ids: (0..g).map(|j| format!("g{j}")).collect(),
            gene_names: (0..g).map(|j| format!("G{j}")).collect(),
            x: Csr::from_dense(n, g, &dense),
            batch: Categorical {
                codes,
                categories: vec!["a".into(), "b".into(), "c".into()],
            },
            obs: Vec::new(),
            values: ValueKind::Log1p,
            provenance: Vec::new(),
        };
        t
    }

    #[test]
    fn scaling_round_trips_and_clips() {
        let x = vec![1.0, 5.0, 3.0, 5.0, 2.0, 5.0];
        let s = Scaling::fit(&x, 2);
        assert_eq!(s.sd[1], 1.0, "constant gene divided by 1");
        assert!((s.mean[0] - 2.0).abs() < 1e-6 && (s.sd[0] - 1.0).abs() < 1e-6);
        let mut y = x.clone();
        s.apply(&mut y);
        assert_eq!(y, vec![-1.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        s.invert(&mut y);
        assert_eq!(y, x);
        let mut big = vec![100.0, 5.0];
        s.apply(&mut big);
        assert_eq!(big[0], SCALE_MAX);
    }

    #[test]
    fn pairs_join_matching_batches_and_drop_unmatched_pairs() {
        let t = cells();
        let p = DeepMnnPairs {
            k: 5,
            ..Default::default()
        };
        let (pairs, rep) = compute(&t, &p, 0, &Search::new(Method::Exact, 0)).unwrap();
        assert_eq!(rep.len(), 3);
        let ab = &rep[0];
        assert!(ab.used && ab.fraction > 0.5, "{ab:?}");
        assert!(pairs.len() > 20);
        for r in 0..pairs.len() {
            let (i, j) = (pairs.i[r] as usize, pairs.j[r] as usize);
            assert!(i < j);
            assert_ne!(t.batch.codes[i], t.batch.codes[j]);
            // mutual pairs of a and b join the same cluster
            if t.batch.codes[j] == 1 {
                assert_eq!(i % 2, j % 2, "pair {i}-{j} joins two clusters");
            }
        }
        // with a threshold above every fraction, no pair is kept
        let none = DeepMnnPairs {
            min_fraction: 1.0,
            ..p
        };
        let (empty, rep) = compute(&t, &none, 0, &Search::new(Method::Exact, 0)).unwrap();
        assert_eq!(empty.len(), 0);
        assert!(rep.iter().all(|r| !r.used));
    }
}
