//! Total-count normalization and natural log1p, with scanpy's float32 arithmetic.
//!
//! scanpy 1.11 (`normalize_total` then `log1p` on a float32 CSR matrix) does, per cell:
//! `total` = a float64 running sum of the float32 values, stored as float32;
//! `scale` = `total / target_sum` in float32 (a zero scale becomes 1, so empty cells stay
//! empty); each value becomes `value / scale` in float32, then `log1p` in float32.
//! The same operations in the same precision give the same bits here.

use crate::contract::{CellsTable, Csr, CsrView, Step, ValueKind};
use crate::io::stream::{self, CellsInput};
use crate::io::table::{self, CellsMeta};
use crate::{Error, Result};
use arrow_array::types::{Float32Type, UInt32Type};
use arrow_array::RecordBatch;
use arrow_buffer::ScalarBuffer;
use rayon::prelude::*;
use std::path::Path;

/// Non-zeros per parallel work item (rows are grouped until they hold about this many).
const NNZ_PER_TASK: usize = 1 << 16;

/// Cut `vals` (row `r` is `vals[starts[r]..starts[r + 1]]`, `starts[0] == 0`) into runs of
/// whole rows of about [`NNZ_PER_TASK`] values: each run's slice of `starts` (still relative
/// to `vals`) with its slice of `vals`.
fn row_runs<'a, T>(mut vals: &'a mut [T], starts: &'a [usize]) -> Vec<(&'a [usize], &'a mut [T])> {
    let n = starts.len() - 1;
    let mut pieces = Vec::new();
    let mut a = 0;
    while a < n {
        let mut b = a + 1;
        while b < n && starts[b] - starts[a] < NNZ_PER_TASK {
            b += 1;
        }
        let (head, tail) = std::mem::take(&mut vals).split_at_mut(starts[b] - starts[a]);
        pieces.push((&starts[a..=b], head));
        vals = tail;
        a = b;
    }
    pieces
}

/// A small direct-mapped cache of `f(x)` keyed by the bits of `x`. Expression rows repeat
/// a few values (most counts are 1, 2 or 3), so a cache per worker skips most
/// calls to `log1p`/`expm1` while giving the very same bits.
pub(crate) struct Memo<F: Fn(f32) -> f32> {
    keys: [u32; 64],
    vals: [f32; 64],
    f: F,
}

impl<F: Fn(f32) -> f32> Memo<F> {
    pub(crate) fn new(f: F) -> Self {
        // NaN bits never come from a finite input, so they mark empty slots
        Memo {
            keys: [0x7fc0_0001; 64],
            vals: [0.0; 64],
            f,
        }
    }
    #[inline]
    pub(crate) fn get(&mut self, x: f32) -> f32 {
        let k = x.to_bits();
        let slot = (k.wrapping_mul(0x9E37_79B9) >> 26) as usize;
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

/// A cell's divisor: its total (a float64 sum stored as float32) over `target_sum`, or 1
/// for an empty cell.
#[inline]
fn row_scale(row: &[f32], target_sum: f32) -> f32 {
    let total = row.iter().fold(0f64, |s, &a| s + a as f64) as f32;
    let scale = total / target_sum;
    if scale == 0.0 {
        1.0
    } else {
        scale
    }
}

/// Normalize rows from `src` into `dst` (both laid out by `starts`, as in [`row_runs`]), in
/// parallel: each value becomes `value / scale`, then its log1p when `log` (scanpy's float32
/// arithmetic, see the module documentation). Every slot of `dst` is written.
fn normalize_into(
    src: &[f32],
    dst: &mut [std::mem::MaybeUninit<f32>],
    starts: &[usize],
    target_sum: f32,
    log: bool,
) {
    row_runs(dst, starts).into_par_iter().for_each(|(st, out)| {
        // the cache is keyed by the scaled value, so it stays valid across rows
        let mut memo = Memo::new(f32::ln_1p);
        for w in st.windows(2) {
            let row = &src[w[0]..w[1]];
            let out = &mut out[w[0] - st[0]..w[1] - st[0]];
            let scale = row_scale(row, target_sum);
            if log {
                out.iter_mut()
                    .zip(row)
                    .for_each(|(o, &v)| _ = o.write(memo.get(v / scale)));
            } else {
                out.iter_mut()
                    .zip(row)
                    .for_each(|(o, &v)| _ = o.write(v / scale));
            }
        }
    });
}

/// The normalized values of `src` (rows laid out by `starts`): one read of the input and
/// one write of the output, no zero-filling or copy in between.
fn normalized(src: &[f32], starts: &[usize], target_sum: f32, log: bool) -> Vec<f32> {
    let n = *starts.last().unwrap_or(&0);
    assert_eq!(n, src.len(), "rows must cover the values");
    let mut out = Vec::with_capacity(n);
    normalize_into(
        src,
        &mut out.spare_capacity_mut()[..n],
        starts,
        target_sum,
        log,
    );
    // SAFETY: the rows cover 0..n (checked above) and normalize_into writes every slot of
    // every row.
    unsafe { out.set_len(n) };
    out
}

/// Scale every cell to `target_sum` total counts and, when `log`, take the natural log1p.
pub fn normalize_total(x: &mut Csr, target_sum: f32, log: bool) {
    let starts: Vec<usize> = x.indptr.iter().map(|&o| o as usize).collect();
    x.data = normalized(&x.data, &starts, target_sum, log);
}

/// The normalized values of borrowed rows (same layout as `v.data`).
pub fn normalize_view(v: &CsrView, target_sum: f32, log: bool) -> Vec<f32> {
    let base = v.offsets[0];
    let starts: Vec<usize> = v.offsets.iter().map(|&o| (o - base) as usize).collect();
    normalized(v.data, &starts, target_sum, log)
}

/// Natural log1p of every value, in place (float32, as numpy's `log1p`).
pub fn log1p(x: &mut Csr) {
    x.data.par_iter_mut().for_each(|v| *v = v.ln_1p());
}

fn check_input(values: ValueKind, target_sum: f64) -> Result<()> {
    if values != ValueKind::Counts {
        return Err(Error::new(format!(
            "the values are '{}', expected raw counts (normalize runs once, on counts)",
            values.as_str()
        ))
        .field(crate::contract::meta::VALUES));
    }
    if !(target_sum.is_finite() && target_sum > 0.0) {
        return Err(
            Error::new(format!("{target_sum} is not a positive number")).flag("--target-sum")
        );
    }
    Ok(())
}

fn output_kind(log: bool) -> ValueKind {
    if log {
        ValueKind::Log1p
    } else {
        ValueKind::Normalized
    }
}

/// Normalize a cells table of raw counts: total-count scaling to `target_sum`, then log1p
/// unless `log` is false. Sets `values` to `log1p` or `normalized`.
pub fn normalize_cells(t: &mut CellsTable, target_sum: f64, log: bool) -> Result<()> {
    check_input(t.values, target_sum)?;
    normalize_total(&mut t.x, target_sum as f32, log);
    t.values = output_kind(log);
    Ok(())
}

/// [`normalize_cells`] from a streamed input to `output`, batch by batch: the per-cell
/// columns and gene positions are written from the input's buffers, only the values are new.
pub fn normalize_file(
    input: &CellsInput,
    output: &Path,
    target_sum: f64,
    log: bool,
    step: Step,
) -> Result<()> {
    check_input(input.values, target_sum).map_err(|e| e.file(input.path()))?;
    let mut provenance = input.provenance.clone();
    provenance.push(step);
    let schema = input.output_schema(&CellsMeta {
        gene_ids: &input.gene_ids,
        gene_names: &input.gene_names,
        values: output_kind(log),
        provenance: &provenance,
        n_cells: input.n_cells(),
        fingerprint: input.fingerprint().to_string(),
    });
    let make = |i: usize| -> Result<RecordBatch> {
        let v = input.rows(i)?;
        let values = normalize_view(&v, target_sum as f32, log);
        let offsets = input.offsets(i);
        stream::out_batch(
            &schema,
            input.per_cell_columns(i),
            table::list_of::<UInt32Type>(offsets.clone(), input.gene_index_values(i)),
            table::list_of::<Float32Type>(offsets, ScalarBuffer::from(values)),
        )
    };
    table::write_stream(output, schema.clone(), input.n_batches(), make, |i| {
        input.done(i)
    })
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
