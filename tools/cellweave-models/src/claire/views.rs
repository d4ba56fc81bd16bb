//! Positive views by mix-up with intra-batch neighbours (CLAIRE's construction strategy).
//!
//! For anchor `i`: `view1 = l1 * x_i + (1 - l1) * x_n` with `n` a random KNN neighbour of
//! `i`; `p` a random seed partner of `i` (`i` itself if none); `view2 = l2 * x_p +
//! (1 - l2) * x_n'` with `n'` a random KNN neighbour of `p`; `l1, l2 ~ U(alpha, 1)`.
//! The training cells (anchors) are the cells in at least one seed pair. With
//! `--nearest-share P > 0`, `p` is instead, with probability `P`, the anchor's
//! relative-nearest seed partner ([`relative_nearest_partners`]).

use cellweave::contract::{PairKind, PairsTable};
use cellweave::io::rows::Rows;
use cellweave::{bail, Result};

use crate::rng::Rng;

/// Per-cell neighbour lists taken from a pairs table.
#[derive(Debug, Clone, PartialEq)]
pub struct PairSets {
    /// Intra-batch nearest neighbours of each cell.
    pub knn: Vec<Vec<u32>>,
    /// Seed partners of each cell (both ends of every seed pair, without repeats).
    pub partners: Vec<Vec<u32>>,
    /// Each cell's relative-nearest seed partner ([`relative_nearest_partners`];
    /// `u32::MAX`: none), drawn with probability `nearest_share` instead of a uniform
    /// partner; empty when unused.
    pub nearest: Vec<u32>,
    /// The probability of drawing `nearest` (0: CLAIRE's uniform draw, no extra random draw).
    pub nearest_share: f32,
}

impl PairSets {
    /// Read the KNN lists and the seed pairs of a pairs table over `n_cells` cells.
    pub fn from_pairs(p: &PairsTable) -> Result<Self> {
        let n = p.n_cells;
        let mut knn = vec![Vec::new(); n];
        let mut seeds = Vec::new();
        for r in 0..p.len() {
            let (i, j) = (p.i[r] as usize, p.j[r] as usize);
            if i >= n || j >= n {
                bail!(
                    "pair {r} refers to cell {} but there are {n} cells",
                    i.max(j)
                );
            }
            match p.kind[r] {
                PairKind::Knn => {
                    if i != j {
                        knn[i].push(j as u32)
                    }
                }
                PairKind::Mnn => seeds.push((i as u32, j as u32)),
            }
        }
        for l in &mut knn {
            l.sort_unstable();
            l.dedup();
        }
        let mut s = PairSets {
            knn,
            partners: Vec::new(),
            nearest: Vec::new(),
            nearest_share: 0.0,
        };
        s.set_seeds(&seeds);
        Ok(s)
    }

    /// Replace the seed pairs (after refinement); the KNN lists stay.
    pub fn set_seeds(&mut self, seeds: &[(u32, u32)]) {
        let mut partners = vec![Vec::new(); self.knn.len()];
        for &(i, j) in seeds {
            if i != j {
                partners[i as usize].push(j);
                partners[j as usize].push(i);
            }
        }
        for l in &mut partners {
            l.sort_unstable();
            l.dedup();
        }
        self.partners = partners;
    }

    /// Cells in at least one seed pair, ascending.
    pub fn training_cells(&self) -> Vec<u32> {
        (0..self.partners.len() as u32)
            .filter(|&i| !self.partners[i as usize].is_empty())
            .collect()
    }

    /// Number of distinct seed pairs.
    pub fn n_seeds(&self) -> usize {
        self.partners.iter().map(Vec::len).sum::<usize>() / 2
    }
}

/// Every seed row, and each cell's nearest seed by *relative* distance (its row;
/// `usize::MAX` for a cell in no seed): the seed's distance (in the space it was found in)
/// over the median distance of the seeds of its batch pair. Dividing by the batch pair's
/// median keeps batch pairs that are far apart as a whole (two technologies) in the
/// running, where the plain nearest seed always falls in the closest batch; among a cell's
/// seeds, one closer than its batch pair's typical seed marks a batch pair that matches
/// this cell's neighbourhood. Ties go to the first row. `batch`: the batch code of each cell.
pub fn relative_best(p: &PairsTable, batch: &[u32]) -> (Vec<usize>, Vec<usize>) {
    let rows: Vec<usize> = (0..p.len())
        .filter(|&r| p.kind[r] == PairKind::Mnn && p.i[r] != p.j[r])
        .collect();
    let key = |r: usize| {
        let (a, b) = (batch[p.i[r] as usize], batch[p.j[r] as usize]);
        (a.min(b), a.max(b))
    };
    let mut by_pair: std::collections::BTreeMap<(u32, u32), Vec<f32>> = Default::default();
    for &r in &rows {
        by_pair.entry(key(r)).or_default().push(p.distance[r]);
    }
    let median: std::collections::BTreeMap<(u32, u32), f32> = by_pair
        .into_iter()
        .map(|(k, mut d)| {
            d.sort_by(f32::total_cmp);
            let m = d.len() / 2;
            let med = if d.len() % 2 == 1 {
                d[m]
            } else {
                0.5 * (d[m - 1] + d[m])
            };
            (k, med)
        })
        .collect();
    let mut best = vec![(f32::INFINITY, usize::MAX); p.n_cells];
    for &r in &rows {
        let m = median[&key(r)];
        let rel = if m > 0.0 {
            p.distance[r] / m
        } else {
            p.distance[r]
        };
        for c in [p.i[r] as usize, p.j[r] as usize] {
            if rel < best[c].0 || best[c].1 == usize::MAX {
                best[c] = (rel, r);
            }
        }
    }
    (rows, best.into_iter().map(|(_, r)| r).collect())
}

/// Each cell's relative-nearest seed partner ([`relative_best`]), `u32::MAX` for a cell
/// in no seed.
pub fn relative_nearest_partners(p: &PairsTable, batch: &[u32]) -> Vec<u32> {
    let (_, best) = relative_best(p, batch);
    best.iter()
        .enumerate()
        .map(|(c, &r)| {
            if r == usize::MAX {
                u32::MAX
            } else if p.i[r] as usize == c {
                p.j[r]
            } else {
                p.i[r]
            }
        })
        .collect()
}

/// One row of a view: `l * x_a + (1 - l) * x_b`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mix {
    /// The first cell (row of the cells table); the row mostly comes from it.
    pub a: u32,
    /// The second cell.
    pub b: u32,
    /// The weight of `a`, in `[alpha, 1]`.
    pub l: f32,
}

fn neighbour(knn: &[Vec<u32>], i: u32, rng: &mut Rng) -> u32 {
    let l = &knn[i as usize];
    if l.is_empty() {
        i
    } else {
        rng.pick(l)
    }
}

/// Draw the two views of anchor `i` (in a fixed order of random draws).
pub fn draw_views(sets: &PairSets, i: u32, alpha: f32, rng: &mut Rng) -> (Mix, Mix) {
    let n1 = neighbour(&sets.knn, i, rng);
    let l1 = alpha + (1.0 - alpha) * rng.f32();
    let parts = &sets.partners[i as usize];
    let p = if parts.is_empty() {
        i
    } else if sets.nearest_share > 0.0
        && rng.f32() < sets.nearest_share
        && sets.nearest.get(i as usize).is_some_and(|&q| q != u32::MAX)
    {
        sets.nearest[i as usize]
    } else {
        rng.pick(parts)
    };
    let n2 = neighbour(&sets.knn, p, rng);
    let l2 = alpha + (1.0 - alpha) * rng.f32();
    (Mix { a: i, b: n1, l: l1 }, Mix { a: p, b: n2, l: l2 })
}

/// Dense rows `[view1 of every anchor; view2 of every anchor]` (`2B x G`, row-major) into
/// `out`, and the cell each row mainly comes from into `sources` (`sources[r]`: the mix's
/// first cell, of the same batch as its second): the batch of every row.
pub fn batch_views(
    x: &dyn Rows,
    sets: &PairSets,
    anchors: &[u32],
    alpha: f32,
    rng: &mut Rng,
    out: &mut Vec<f32>,
    sources: &mut Vec<u32>,
) {
    let b = anchors.len();
    let g = x.n_cols();
    out.clear();
    out.resize(2 * b * g, 0.0);
    sources.clear();
    sources.resize(2 * b, 0);
    for (r, &i) in anchors.iter().enumerate() {
        let (v1, v2) = draw_views(sets, i, alpha, rng);
        mix_into(x, v1, &mut out[r * g..(r + 1) * g]);
        mix_into(x, v2, &mut out[(b + r) * g..(b + r + 1) * g]);
        sources[r] = v1.a;
        sources[b + r] = v2.a;
    }
}

/// Add `l * x_a + (1 - l) * x_b` into a zeroed dense row.
pub fn mix_into(x: &dyn Rows, m: Mix, row: &mut [f32]) {
    let (ia, va) = x.row(m.a as usize);
    for (&c, &v) in ia.iter().zip(va) {
        row[c as usize] += m.l * v;
    }
    let (ib, vb) = x.row(m.b as usize);
    let w = 1.0 - m.l;
    for (&c, &v) in ib.iter().zip(vb) {
        row[c as usize] += w * v;
    }
}
