//! LATE's minibatches as both training engines read them: the non-zero entries of the
//! chosen cells ([`Batch`]) and the dropout multipliers drawn for them ([`Masks`]).

use super::LateConfig;
use cellweave::contract::Csr;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// A mini-batch: the non-zero entries of the chosen cells (CSR) and their batch codes.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Cells in the batch.
    pub n: usize,
    /// Row `i`'s entries are `indptr[i]..indptr[i + 1]` (`n + 1` offsets).
    pub indptr: Vec<usize>,
    /// The gene (column) of each entry.
    pub idx: Vec<u32>,
    /// The value of each entry (non-zero).
    pub val: Vec<f32>,
    /// The row of each entry.
    pub row: Vec<u32>,
    /// Batch code per cell (empty when the model is not batch-aware).
    pub cov: Vec<u32>,
}

impl Batch {
    /// The non-zero entries of the cells `rows` of `x`, in that order, with their batch
    /// codes when `codes` is given.
    pub fn gather(x: &Csr, rows: &[usize], codes: Option<&[u32]>) -> Batch {
        let mut b = Batch {
            n: rows.len(),
            indptr: Vec::with_capacity(rows.len() + 1),
            idx: Vec::new(),
            val: Vec::new(),
            row: Vec::new(),
            cov: codes
                .map(|c| rows.iter().map(|&r| c[r]).collect())
                .unwrap_or_default(),
        };
        b.indptr.push(0);
        for (i, &r) in rows.iter().enumerate() {
            let (idx, val) = x.row(r);
            for (&c, &v) in idx.iter().zip(val) {
                if v != 0.0 {
                    b.idx.push(c);
                    b.val.push(v);
                    b.row.push(i as u32);
                }
            }
            b.indptr.push(b.idx.len());
        }
        b
    }

    /// Entry positions grouped by gene (a CSC view): `order[start[j]..start[j+1]]`.
    pub(crate) fn by_gene(&self, n_genes: usize) -> (Vec<usize>, Vec<u32>) {
        let mut start = vec![0usize; n_genes + 1];
        for &c in &self.idx {
            start[c as usize + 1] += 1;
        }
        for j in 0..n_genes {
            start[j + 1] += start[j];
        }
        let mut fill = start.clone();
        let mut order = vec![0u32; self.idx.len()];
        for (k, &c) in self.idx.iter().enumerate() {
            order[fill[c as usize]] = k as u32;
            fill[c as usize] += 1;
        }
        (start, order)
    }
}

/// Dropout multipliers (0 or 1/keep): `input[k]` for the batch's k-th entry, `hidden[l - 1]`
/// (`n x dims[l]`, row-major) for the input of layer `l >= 1`.
#[derive(Debug, Clone, PartialEq)]
pub struct Masks {
    /// One multiplier per entry of the batch (the zeros are never read).
    pub input: Vec<f32>,
    /// One `n x dims[l]` buffer per layer `l >= 1`.
    pub hidden: Vec<Vec<f32>>,
}

impl Masks {
    /// Draw masks for `batch`: one number from `rng` seeds a generator per (layer, row), so
    /// the rows are drawn in parallel and the result does not depend on the thread count.
    /// Both engines draw the same masks.
    pub fn sample(rng: &mut SmallRng, cfg: &LateConfig, batch: &Batch) -> Masks {
        let base: u64 = rng.random();
        let dims = cfg.dims();
        let draw_rows = |layer: usize,
                         bounds: &(dyn Fn(usize) -> (usize, usize) + Sync),
                         len: usize|
         -> Vec<f32> {
            let keep = cfg.keep(layer);
            // Four 16-bit draws per random u64: an entry is kept when its draw is below
            // round(keep * 2^16) (keep probability exact to 1e-5).
            let threshold = (keep as f64 * 65536.0).round() as u64;
            let inv = 1.0 / keep;
            let mut v = vec![0f32; len];
            let mut rows: Vec<&mut [f32]> = Vec::with_capacity(batch.n);
            let mut rest: &mut [f32] = &mut v;
            for i in 0..batch.n {
                let (lo, hi) = bounds(i);
                let (a, b) = rest.split_at_mut(hi - lo);
                rows.push(a);
                rest = b;
            }
            rows.into_par_iter().enumerate().for_each(|(i, row)| {
                let seed =
                    base ^ ((layer as u64) << 56) ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let mut r = SmallRng::seed_from_u64(seed);
                for chunk in row.chunks_mut(4) {
                    let bits: u64 = r.random();
                    for (q, x) in chunk.iter_mut().enumerate() {
                        *x = inv * (((bits >> (16 * q)) & 0xffff) < threshold) as u32 as f32;
                    }
                }
            });
            v
        };
        let input = draw_rows(
            0,
            &|i| (batch.indptr[i], batch.indptr[i + 1]),
            batch.idx.len(),
        );
        let hidden = (1..cfg.n_layers())
            .map(|l| draw_rows(l, &|i| (i * dims[l], (i + 1) * dims[l]), batch.n * dims[l]))
            .collect();
        Masks { input, hidden }
    }
}
