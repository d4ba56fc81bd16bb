//! Total-count normalization and natural log1p, with scanpy's float32 arithmetic.
//!
//! scanpy 1.11 (`normalize_total` then `log1p` on a float32 CSR matrix) does, per cell:
//! `total` = a float64 running sum of the float32 values, stored as float32;
//! `scale` = `total / target_sum` in float32 (a zero scale becomes 1, so empty cells stay
//! empty); each value becomes `value / scale` in float32, then `log1p` in float32.
//! The same operations in the same precision give the same bits here.

use crate::contract::{CellsTable, Csr, ValueKind};
use crate::{Error, Result};
use rayon::prelude::*;

/// Non-zeros per parallel work item (rows are grouped until they hold about this many).
const NNZ_PER_TASK: usize = 1 << 16;

/// Split the values of `x` into runs of whole rows and call `f(first_row, indptr, values)`
/// on each run in parallel (`indptr` is the run's slice of row offsets, absolute).
pub(crate) fn par_row_runs(x: &mut Csr, f: impl Fn(usize, &[u64], &mut [f32]) + Sync) {
    let n = x.n_rows();
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && ((x.indptr[end] - x.indptr[start]) as usize) < NNZ_PER_TASK {
            end += 1;
        }
        runs.push((start, end));
        start = end;
    }
    let indptr = &x.indptr;
    let mut rest: &mut [f32] = &mut x.data;
    let mut pieces = Vec::with_capacity(runs.len());
    let mut offset = 0u64;
    for &(a, b) in &runs {
        let len = (indptr[b] - indptr[a]) as usize;
        debug_assert_eq!(indptr[a], offset);
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
        pieces.push((a, &indptr[a..=b], head));
        rest = tail;
        offset += len as u64;
    }
    pieces
        .into_par_iter()
        .for_each(|(a, ip, vals)| f(a, ip, vals));
}

/// A small direct-mapped cache of `f(x)` keyed by the bits of `x`. Expression rows repeat
/// a few values (most counts are 1, 2 or 3), so a cache per worker skips most
/// calls to `log1p`/`expm1` while giving the very same bits.
pub(crate) struct Memo<F: Fn(f32) -> f32> {
    keys: [u32; 16],
    vals: [f32; 16],
    f: F,
}

impl<F: Fn(f32) -> f32> Memo<F> {
    pub(crate) fn new(f: F) -> Self {
        // NaN bits never come from a finite input, so they mark empty slots
        Memo {
            keys: [0x7fc0_0001; 16],
            vals: [0.0; 16],
            f,
        }
    }
    #[inline]
    pub(crate) fn get(&mut self, x: f32) -> f32 {
        let k = x.to_bits();
        let slot = (k.wrapping_mul(0x9E37_79B9) >> 28) as usize;
        if self.keys[slot] == k {
            return self.vals[slot];
        }
        let v = (self.f)(x);
        self.keys[slot] = k;
        self.vals[slot] = v;
        v
    }
}

/// Per-cell totals as scanpy computes them (float64 running sum, stored as float32).
pub fn cell_totals(x: &Csr) -> Vec<f32> {
    (0..x.n_rows())
        .into_par_iter()
        .map(|r| {
            let (_, v) = x.row(r);
            v.iter().fold(0f64, |s, &a| s + a as f64) as f32
        })
        .collect()
}

/// Scale every cell to `target_sum` total counts and, when `log`, take the natural log1p,
/// in place (one pass over the values).
pub fn normalize_total(x: &mut Csr, target_sum: f32, log: bool) {
    let totals = cell_totals(x);
    par_row_runs(x, |first, indptr, vals| {
        let base = indptr[0];
        let mut memo = Memo::new(f32::ln_1p);
        for k in 0..indptr.len() - 1 {
            let mut scale = totals[first + k] / target_sum;
            if scale == 0.0 {
                scale = 1.0;
            }
            let row = &mut vals[(indptr[k] - base) as usize..(indptr[k + 1] - base) as usize];
            if log {
                // the cache is keyed by the scaled value, so it stays valid across rows
                row.iter_mut().for_each(|v| *v = memo.get(*v / scale));
            } else {
                row.iter_mut().for_each(|v| *v /= scale);
            }
        }
    });
}

/// Natural log1p of every value, in place (float32, as numpy's `log1p`).
pub fn log1p(x: &mut Csr) {
    x.data.par_iter_mut().for_each(|v| *v = v.ln_1p());
}

/// Normalize a cells table of raw counts: total-count scaling to `target_sum`, then log1p
/// unless `log` is false. Sets `values` to `log1p` or `normalized`.
pub fn normalize_cells(t: &mut CellsTable, target_sum: f64, log: bool) -> Result<()> {
    if t.values != ValueKind::Counts {
        return Err(Error::new(format!(
            "the values are '{}', expected raw counts (normalize runs once, on counts)",
            t.values.as_str()
        ))
        .field(crate::contract::meta::VALUES));
    }
    if !(target_sum.is_finite() && target_sum > 0.0) {
        return Err(
            Error::new(format!("{target_sum} is not a positive number")).field("--target-sum")
        );
    }
    normalize_total(&mut t.x, target_sum as f32, log);
    t.values = if log {
        ValueKind::Log1p
    } else {
        ValueKind::Normalized
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(rows: &[&[(u32, f32)]], n_cols: usize) -> Csr {
        let mut m = Csr::empty(n_cols);
        for r in rows {
            for &(c, v) in *r {
                m.indices.push(c);
                m.data.push(v);
            }
            m.indptr.push(m.indices.len() as u64);
        }
        m
    }

    #[test]
    fn rows_sum_to_target_and_empty_rows_stay_empty() {
        let mut x = csr(&[&[(0, 1.0), (2, 3.0)], &[], &[(1, 7.0)]], 3);
        normalize_total(&mut x, 1e4, false);
        assert_eq!(x.row(0).1, &[2500.0, 7500.0]);
        assert!(x.row(1).1.is_empty());
        assert_eq!(x.row(2).1, &[10000.0]);
    }

    #[test]
    fn float32_arithmetic_as_scanpy() {
        // total 3 -> scale = 3/1e4 in f32; value = 1 / scale in f32; log1p in f32
        let mut x = csr(&[&[(0, 1.0), (1, 2.0)]], 2);
        normalize_total(&mut x, 1e4, true);
        let scale = 3f32 / 1e4f32;
        assert_eq!(x.data[0], (1f32 / scale).ln_1p());
        assert_eq!(x.data[1], (2f32 / scale).ln_1p());
    }

    #[test]
    fn memo_gives_the_same_bits() {
        let mut m = Memo::new(f32::ln_1p);
        for i in 0..10_000u32 {
            let x = (i % 37) as f32 * 0.37 + (i % 5) as f32;
            assert_eq!(m.get(x).to_bits(), x.ln_1p().to_bits());
        }
    }

    #[test]
    fn many_rows_parallel_runs_cover_everything() {
        let n = 5000;
        let rows: Vec<Vec<(u32, f32)>> = (0..n)
            .map(|r| (0..(r % 40) as u32).map(|c| (c, (c + 1) as f32)).collect())
            .collect();
        let refs: Vec<&[(u32, f32)]> = rows.iter().map(|r| r.as_slice()).collect();
        let mut x = csr(&refs, 40);
        normalize_total(&mut x, 100.0, false);
        for r in 0..n {
            let s: f64 = x.row(r).1.iter().map(|&v| v as f64).sum();
            if r % 40 == 0 {
                assert_eq!(s, 0.0);
            } else {
                assert!((s - 100.0).abs() < 1e-3, "row {r} sums to {s}");
            }
        }
    }

    #[test]
    fn refuses_values_that_are_not_counts() {
        let mut t = CellsTable {
            cell_ids: vec!["a".into()],
            batch: crate::contract::Categorical::constant("b", 1),
            obs: vec![],
            gene_ids: vec!["g".into()],
            gene_names: vec!["g".into()],
            x: csr(&[&[(0, 1.0)]], 1),
            values: ValueKind::Log1p,
            provenance: vec![],
        };
        let e = normalize_cells(&mut t, 1e4, true).unwrap_err();
        assert!(e.to_string().contains("expected raw counts"), "{e}");
        t.values = ValueKind::Counts;
        normalize_cells(&mut t, 1e4, true).unwrap();
        assert_eq!(t.values, ValueKind::Log1p);
    }
}
