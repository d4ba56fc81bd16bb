//! Exact distance scans shared by the neighbour searches: a bounded top-k per query row, and
//! the blocked scan that offers every reference row to it, one matrix multiply per tile of
//! reference rows (`|q|^2 + |r|^2 - 2 q.r`; see [`super::neighbors`] for the exact search
//! built on it and [`super::ivf`] for the inverted file).

use super::simd::multiversion;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

/// Reference rows per matrix multiply.
pub(crate) const REF_TILE: usize = 1024;

/// The `k` smallest `(distance, index)` pairs seen so far, sorted ascending.
pub(crate) struct TopK {
    k: usize,
    pub(crate) items: Vec<(f32, u32)>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        TopK {
            k,
            items: Vec::with_capacity(k + 1),
        }
    }
    /// Worst kept distance once full (candidates at or above it with a higher index lose).
    #[inline]
    pub(crate) fn bound(&self) -> f32 {
        if self.items.len() < self.k {
            f32::INFINITY
        } else {
            self.items[self.k - 1].0
        }
    }
    /// Offer a candidate. The kept set is the `k` smallest under the (distance, index)
    /// order whatever the order of offers, so results do not depend on scheduling.
    #[inline]
    pub(crate) fn push(&mut self, dist: f32, idx: u32) {
        if self.k == 0 {
            return;
        }
        let less = |a: (f32, u32), b: (f32, u32)| a.0 < b.0 || (a.0 == b.0 && a.1 < b.1);
        if self.items.len() == self.k && !less((dist, idx), self.items[self.k - 1]) {
            return;
        }
        let pos = self.items.partition_point(|&it| less(it, (dist, idx)));
        self.items.insert(pos, (dist, idx));
        self.items.truncate(self.k);
    }
    /// Merge another top-k of the same query.
    pub(crate) fn merge(&mut self, other: &TopK) {
        for &(d, j) in &other.items {
            self.push(d, j);
        }
    }
}

multiversion! {
    /// Offer one query row's tile of candidates (`|r|^2 - 2 q.r`, shifted by `|q|^2`) to its
    /// top-k. Lanes of 16 are screened against the current bound first (vectorised), so only
    /// the rare lanes holding a better candidate are walked one by one.
    fn scan_tile(top: &mut TopK, dots: &[f32], r_norm: &[f32], q_norm: f32, start: usize) {
        const L: usize = 16;
        let mut bound = top.bound() - q_norm;
        let dc = dots.chunks_exact(L);
        let rc = r_norm.chunks_exact(L);
        let (dr, rr) = (dc.remainder(), rc.remainder());
        for (c, (dch, rch)) in dc.zip(rc).enumerate() {
            let dch: &[f32; L] = dch.try_into().unwrap();
            let rch: &[f32; L] = rch.try_into().unwrap();
            let mut hits = 0u32;
            for l in 0..L {
                hits |= (rch[l] - 2.0 * dch[l] < bound) as u32;
            }
            if hits != 0 {
                for l in 0..L {
                    let x = rch[l] - 2.0 * dch[l];
                    if x < bound {
                        top.push((x + q_norm).max(0.0), (start + c * L + l) as u32);
                        bound = top.bound() - q_norm;
                    }
                }
            }
        }
        let base = start + dots.len() - dr.len();
        for (t, (&dp, &rn)) in dr.iter().zip(rr).enumerate() {
            let x = rn - 2.0 * dp;
            if x < bound {
                top.push((x + q_norm).max(0.0), (base + t) as u32);
                bound = top.bound() - q_norm;
            }
        }
    }

    /// Offer row `i`'s distances to each column's top-k (bounds cached in `bound`).
    fn scan_columns(
        cols: &mut [TopK],
        bound: &mut [f32],
        dots: &[f32],
        b_norm: &[f32],
        a_norm: f32,
        i: u32
    ) {
        const L: usize = 16;
        let n = dots.len();
        let full = n / L * L;
        let mut t = 0;
        while t < full {
            let (dch, bch, cb) = (&dots[t..t + L], &b_norm[t..t + L], &bound[t..t + L]);
            let mut hits = 0u32;
            for l in 0..L {
                hits |= (a_norm + bch[l] - 2.0 * dch[l] < cb[l]) as u32;
            }
            if hits != 0 {
                for l in t..t + L {
                    let x = a_norm + b_norm[l] - 2.0 * dots[l];
                    if x < bound[l] {
                        cols[l].push(x.max(0.0), i);
                        bound[l] = cols[l].bound();
                    }
                }
            }
            t += L;
        }
        for l in full..n {
            let x = a_norm + b_norm[l] - 2.0 * dots[l];
            if x < bound[l] {
                cols[l].push(x.max(0.0), i);
                bound[l] = cols[l].bound();
            }
        }
    }
}

/// Squared Euclidean length of every row of `x` (`d` numbers each).
pub(crate) fn norms(x: &[f32], d: usize) -> Vec<f32> {
    x.par_chunks(d.max(1))
        .map(|r| super::distance::dot(r, r))
        .collect()
}

/// Columns' top-k, their cached bounds, and the index of the first query row.
pub(crate) type Cols<'a> = (&'a mut [TopK], &'a mut [f32], usize);

/// Offer every row of `rb` (reference rows `base..`, squared norms `b_norm`) to the top-k of
/// each query row of `qb` (squared norms `q_norm`), one matrix multiply per tile of `rb`;
/// with `cols`, also each distance to the columns' top-k.
#[allow(clippy::too_many_arguments)]
pub(crate) fn tiles(
    tops: &mut [TopK],
    rb: &[f32],
    b_norm: &[f32],
    qb: &[f32],
    q_norm: &[f32],
    base: usize,
    d: usize,
    mut cols: Option<Cols>,
) {
    let nq = q_norm.len();
    let n_b = b_norm.len();
    let tile = REF_TILE.min(n_b);
    let mut dots = vec![0f32; nq * tile];
    let lhs = MatRef::from_row_major_slice(qb, nq, d);
    let mut start = 0;
    while start < n_b {
        let nt = tile.min(n_b - start);
        let rhs = MatRef::from_row_major_slice(&rb[start * d..(start + nt) * d], nt, d).transpose();
        let dst = MatMut::from_row_major_slice_mut(&mut dots[..nq * nt], nq, nt);
        faer::linalg::matmul::matmul(dst, Accum::Replace, lhs, rhs, 1.0f32, Par::Seq);
        let bn = &b_norm[start..start + nt];
        for (qi, top) in tops.iter_mut().enumerate() {
            let row = &dots[qi * nt..(qi + 1) * nt];
            scan_tile(top, row, bn, q_norm[qi], base + start);
            if let Some((cols, bound, first)) = cols.as_mut() {
                scan_columns(
                    &mut cols[start..start + nt],
                    &mut bound[start..start + nt],
                    row,
                    bn,
                    q_norm[qi],
                    (*first + qi) as u32,
                );
            }
        }
        start += nt;
    }
}
