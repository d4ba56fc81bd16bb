//! LATE's minibatches as both training engines read them: the non-zero entries of the
//! chosen cells ([`Batch`]) and the dropout multipliers drawn for them ([`Masks`]).

use super::LateConfig;
use cellweave::contract::Csr;
use cellweave::io::formats::dense::transpose;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use std::ops::Range;

/// A mini-batch: the non-zero entries of the chosen cells and their batch codes.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The chosen cells' non-zero values, one row per cell (`n x G`, explicit zeros of the
    /// input left out); entry `k` is the k-th stored value.
    pub x: Csr,
    /// Batch code per cell (empty when the model is not batch-aware).
    pub cov: Vec<u32>,
}

impl Batch {
    /// The non-zero entries of the cells `rows` of `x`, in that order, with their batch
    /// codes when `codes` is given.
    pub fn gather(x: &Csr, rows: &[usize], codes: Option<&[u32]>) -> Batch {
        let mut entries = Csr::empty(x.n_cols);
        for &r in rows {
            let (idx, val) = x.row(r);
            for (&c, &v) in idx.iter().zip(val) {
                if v != 0.0 {
                    entries.indices.push(c);
                    entries.data.push(v);
                }
            }
            entries.indptr.push(entries.indices.len() as u64);
        }
        Batch {
            x: entries,
            cov: codes
                .map(|c| rows.iter().map(|&r| c[r]).collect())
                .unwrap_or_default(),
        }
    }

    /// Cells in the batch.
    pub fn n(&self) -> usize {
        self.x.n_rows()
    }

    /// The entries of cell `i`.
    pub fn range(&self, i: usize) -> Range<usize> {
        self.x.indptr[i] as usize..self.x.indptr[i + 1] as usize
    }

    /// The entries grouped by gene (`G x n`): row `j` lists the cells where gene `j` is
    /// non-zero, ascending, with `values[k]` of each of those entries (one value per
    /// entry, in the batch's order).
    pub fn by_gene(&self, values: &[f32]) -> Csr {
        transpose(&Csr {
            n_cols: self.x.n_cols,
            indptr: self.x.indptr.clone(),
            indices: self.x.indices.clone(),
            data: values.to_vec(),
        })
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
            let mut rows: Vec<&mut [f32]> = Vec::with_capacity(batch.n());
            let mut rest: &mut [f32] = &mut v;
            for i in 0..batch.n() {
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
            &|i| (batch.range(i).start, batch.range(i).end),
            batch.x.nnz(),
        );
        let hidden = (1..cfg.n_layers())
            .map(|l| {
                draw_rows(
                    l,
                    &|i| (i * dims[l], (i + 1) * dims[l]),
                    batch.n() * dims[l],
                )
            })
            .collect();
        Masks { input, hidden }
    }
}
