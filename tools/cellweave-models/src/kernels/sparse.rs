//! Matrix products whose left operand is mostly zeros: `dst = a * b` where `a` (`m x k`)
//! is a dense buffer with many exact zeros (a gradient behind ReLU and dropout) and `b`
//! (`k x n`) is dense (row-major or transposed). Only the non-zero entries of `a` are
//! multiplied.
//!
//! The non-zeros of `a` are listed once per product, by blocks of `KB` rows of `b`
//! ([`SparseLeft`]); the product then runs over column blocks of `b` of `16 * NV` columns,
//! so that the `KB x 16 NV` block of `b` stays in the L1 cache while the rows of `a` walk
//! over it, each non-zero `a[i, r]` adding `a[i, r] * b[r, block]` into `NV` AVX-512
//! accumulators. Each entry of `dst` sums its terms in increasing `r`, whatever the number
//! of threads (the threads split the rows of `dst`), so the result is the same bits at any
//! thread count. It differs from the dense product only by the order of the sums (and by
//! skipping `0 * b` terms, which matters only where `b` holds an infinity or a NaN).
//!
//! Without AVX-512, or when more than 45% of `a` is non-zero (the dense product is faster
//! then), the product is the dense one ([`gemm_on`]). The choice
//! depends only on the operands: the same operands give the same bits.

use super::{gemm_on, has_avx512, Op};

/// Rows of `b` per block: the `KB x COLS` block of `b` (24 KiB) stays in the L1 cache.
const KB: usize = 48;
/// Vectors of 16 columns per column block.
const NV: usize = 8;
/// Columns per column block.
const COLS: usize = 16 * NV;
/// Above this fraction of non-zeros in the left operand, the dense product is faster.
const DENSE_ABOVE: f64 = 0.45;

/// The non-zeros of an `m x k` left operand, listed by blocks of [`KB`] of its columns
/// (rows of the right operand): for block `kb` and row `i`, the entries
/// `seg[kb * m + i].0 .. seg[kb * m + i].1` of `offs` and `vals`, in increasing `r`, where
/// `offs` holds `(r - kb * KB) * COLS`, the offset of row `r` in the packed block. Kept
/// between products to reuse its buffers.
#[derive(Default)]
pub struct SparseLeft {
    m: usize,
    k: usize,
    seg: Vec<(u32, u32)>,
    offs: Vec<u32>,
    vals: Vec<f32>,
    /// A block of a transposed operand, transposed back (`m x KB`).
    tbuf: Vec<f32>,
}

impl SparseLeft {
    /// List the non-zeros of `a` as the product reads it (`m x k`), unless more than
    /// [`DENSE_ABOVE`] of its entries are non-zero; returns whether it did.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn build(&mut self, a: Op) -> bool {
        let (m, k) = if a.t {
            (a.cols, a.rows)
        } else {
            (a.rows, a.cols)
        };
        let data = &a.data[..m * k];
        let nnz = data.iter().filter(|&&v| v != 0.0).count();
        self.m = m;
        self.k = k;
        if nnz as f64 > DENSE_ABOVE * (m * k) as f64 {
            return false;
        }
        self.seg.clear();
        // 16 spare slots: the compressed stores write whole vectors.
        self.offs.resize(nnz + 16, 0);
        self.vals.resize(nnz + 16, 0.0);
        if a.t {
            self.tbuf.resize(m * KB, 0.0);
        }
        let mut next = 0usize;
        for k0 in (0..k).step_by(KB) {
            let kn = KB.min(k - k0);
            if a.t {
                // Stored `k x m`: the block's columns into rows of `tbuf` (`m x KB`), 16
                // of them at a time.
                for i0 in (0..m).step_by(16) {
                    let i1 = (i0 + 16).min(m);
                    for r in 0..kn {
                        let src = &data[(k0 + r) * m + i0..(k0 + r) * m + i1];
                        for (di, &v) in src.iter().enumerate() {
                            self.tbuf[(i0 + di) * KB + r] = v;
                        }
                    }
                }
            }
            for i in 0..m {
                let row = if a.t {
                    &self.tbuf[i * KB..i * KB + kn]
                } else {
                    &data[i * k + k0..i * k + k0 + kn]
                };
                let end = compress_row(row, &mut self.offs, &mut self.vals, next);
                self.seg.push((next as u32, end as u32));
                next = end;
            }
        }
        debug_assert_eq!(next, nnz);
        true
    }
}

/// Append the non-zeros of `row` (and `r * COLS` for each, `r` its index) to `offs` and
/// `vals` from slot `at`; returns the slot after them. Writes up to 16 slots past the
/// last non-zero (it panics when `vals` or `offs` lacks them).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn compress_row(row: &[f32], offs: &mut [u32], vals: &mut [f32], mut at: usize) -> usize {
    use std::arch::x86_64::*;
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let mut rv = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(COLS as i32));
    let step = _mm512_set1_epi32(16 * COLS as i32);
    for chunk in row.chunks(16) {
        let load = ((1u32 << chunk.len()) - 1) as __mmask16;
        assert!(at + 16 <= vals.len() && at + 16 <= offs.len());
        // SAFETY: only the lanes of `load`, inside `chunk`, are read.
        let v = unsafe { _mm512_maskz_loadu_ps(load, chunk.as_ptr()) };
        let nz = _mm512_mask_cmp_ps_mask::<_CMP_NEQ_UQ>(load, v, _mm512_setzero_ps());
        // SAFETY: 16 slots from `at` lie inside `vals` and `offs` (asserted above).
        unsafe {
            _mm512_storeu_ps(vals.as_mut_ptr().add(at), _mm512_maskz_compress_ps(nz, v));
            _mm512_storeu_si512(
                offs.as_mut_ptr().add(at) as *mut __m512i,
                _mm512_maskz_compress_epi32(nz, rv),
            );
        }
        at += nz.count_ones() as usize;
        rv = _mm512_add_epi32(rv, step);
    }
    at
}

/// `dst (m x n, row-major) = a * b` reading only the non-zeros of `a` (see the module
/// documentation), on at most `threads` threads; `scratch` holds the list of non-zeros.
/// The result does not depend on the thread count.
pub fn gemm_sparse_left(
    dst: &mut [f32],
    m: usize,
    n: usize,
    a: Op,
    b: Op,
    threads: usize,
    scratch: &mut SparseLeft,
) {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU has AVX-512F (checked just above).
        let sparse = unsafe { scratch.build(a) };
        let (bk, bn) = if b.t {
            (b.cols, b.rows)
        } else {
            (b.rows, b.cols)
        };
        assert!(
            scratch.m == m && bn == n && scratch.k == bk,
            "gemm_sparse_left: shapes do not match"
        );
        if sparse {
            sparse_product(&mut dst[..m * n], n, b, threads, scratch);
            return;
        }
    }
    gemm_on(dst, m, n, a, b, false, threads)
}

/// `dst (m x n) = a * b` with the non-zeros of `a` listed in `a`; `threads` threads share
/// the rows of `dst`.
#[cfg(target_arch = "x86_64")]
fn sparse_product(dst: &mut [f32], n: usize, b: Op, threads: usize, a: &SparseLeft) {
    if n == 0 || a.m == 0 {
        return;
    }
    let threads = threads.clamp(1, a.m);
    let per = a.m.div_ceil(threads);
    if threads == 1 {
        return row_block(dst, 0, n, b, a);
    }
    rayon::scope(|s| {
        for (t, rows) in dst.chunks_mut(per * n).enumerate() {
            s.spawn(move |_| row_block(rows, t * per, n, b, a));
        }
    });
}

/// Rows `i0 ..` of `dst = a * b` into `dst` (those rows only), by column blocks.
#[cfg(target_arch = "x86_64")]
fn row_block(dst: &mut [f32], i0: usize, n: usize, b: Op, a: &SparseLeft) {
    assert!(has_avx512(), "the sparse product needs AVX-512F");
    for cb in 0..n.div_ceil(COLS) {
        // SAFETY: the CPU has AVX-512F (asserted above).
        unsafe { column_block(dst, i0, b, n, cb, a) };
    }
}

/// Column block `cb` (columns `cb * COLS ..`, at most `n`) of rows `i0 ..` of
/// `dst = a * b` (`dst` holds those rows).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn column_block(dst: &mut [f32], i0: usize, b: Op, n: usize, cb: usize, a: &SparseLeft) {
    let c0 = cb * COLS;
    let width = COLS.min(n - c0);
    let (m, k, rows) = (a.m, a.k, dst.len() / n);
    assert!(i0 + rows <= m && c0 + width <= n);
    // The block of `b` in a contiguous buffer (zeros right of `width`), so that it sits in
    // the L1 cache without conflicts.
    let mut buf = vec![0f32; KB * COLS + 16];
    // 64-byte aligned, so that no load of 16 values straddles two cache lines.
    let skip = buf.as_ptr().align_offset(64).min(16);
    let pack = &mut buf[skip..skip + KB * COLS];
    for (blk, k0) in (0..a.k).step_by(KB).enumerate() {
        let kn = KB.min(k - k0);
        if b.t {
            // `b` stored `n x k`: its rows are the columns of the block.
            for c in 0..width {
                let col = &b.data[(c0 + c) * k + k0..][..kn];
                for (r, &v) in col.iter().enumerate() {
                    pack[r * COLS + c] = v;
                }
            }
        } else {
            for (r, prow) in pack.chunks_exact_mut(COLS).take(kn).enumerate() {
                prow[..width].copy_from_slice(&b.data[(k0 + r) * n + c0..][..width]);
            }
        }
        for i in 0..rows {
            let (s, e) = a.seg[blk * m + i0 + i];
            let (s, e) = (s as usize, e as usize);
            let (offs, vals) = (&a.offs[s..e], &a.vals[s..e]);
            if i + 2 < rows {
                prefetch(&dst[(i + 2) * n + c0..(i + 2) * n + c0 + width]);
            }
            let out = &mut dst[i * n + c0..i * n + c0 + width];
            if width == COLS {
                tile::<true>(out, pack, offs, vals, blk == 0)
            } else {
                tile::<false>(out, pack, offs, vals, blk == 0)
            }
        }
    }
}

/// `out (width <= COLS values) (= or +=) sum_p vals[p] * pack[offs[p] ..][..width]`, in
/// the order of `p`, on `NV` AVX-512 accumulators (the first `out.len()` lanes).
/// `FULL`: `out` holds `COLS` values. An offset past the last row of `pack` reads the last
/// row (never happens with the offsets of [`SparseLeft`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn tile<const FULL: bool>(out: &mut [f32], pack: &[f32], offs: &[u32], vals: &[f32], first: bool) {
    use std::arch::x86_64::*;
    let width = out.len();
    assert!(width <= COLS && (!FULL || width == COLS) && pack.len() >= COLS);
    let last = pack.len() - COLS;
    let o = out.as_mut_ptr();
    let mut acc = [_mm512_setzero_ps(); NV];
    let mask = |j: usize| {
        if FULL {
            0xffff
        } else {
            let lanes = width.saturating_sub(16 * j).min(16);
            ((1u32 << lanes) - 1) as __mmask16
        }
    };
    if !first {
        for (j, a) in acc.iter_mut().enumerate() {
            // SAFETY: masked lanes are not read; the others are inside `out`.
            *a = unsafe { _mm512_maskz_loadu_ps(mask(j), o.add(16 * j)) };
        }
    }
    for (&off, &v) in offs.iter().zip(vals) {
        let va = _mm512_set1_ps(v);
        let row = pack.as_ptr().wrapping_add((off as usize).min(last));
        for (j, a) in acc.iter_mut().enumerate() {
            // SAFETY: `row[.. COLS]` lies inside `pack` (its offset is at most
            // `pack.len() - COLS`).
            let x = unsafe { _mm512_loadu_ps(row.add(16 * j)) };
            *a = _mm512_fmadd_ps(va, x, *a);
        }
    }
    for (j, a) in acc.iter().enumerate() {
        // SAFETY: only the lanes of `mask(j)`, inside `out`, are written.
        unsafe { _mm512_mask_storeu_ps(o.add(16 * j), mask(j), *a) };
    }
}

/// Ask for the cache lines of `v` ahead of their use.
#[cfg(target_arch = "x86_64")]
fn prefetch(v: &[f32]) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    for c in v.chunks(16) {
        // SAFETY: a prefetch never faults; the address is inside `v`.
        unsafe { _mm_prefetch(c.as_ptr() as *const i8, _MM_HINT_T0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the dense product, on shapes with partial column blocks and row blocks, at
    /// one and three threads (the same bits).
    #[test]
    fn sparse_left_matches_dense() {
        for &(m, k, n, t) in &[(7, 5, 3, false), (33, 100, 150, true), (20, 97, 300, false)] {
            let mut rng = crate::rng::Rng::new(3);
            let (sr, sc) = if t { (k, m) } else { (m, k) };
            let a: Vec<f32> = (0..sr * sc)
                .map(|_| {
                    let v = rng.f32() - 0.5;
                    if v < 0.15 {
                        0.0
                    } else {
                        v
                    }
                })
                .collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.f32() - 0.5).collect();
            let op = if t {
                Op::t(&a, sr, sc)
            } else {
                Op::n(&a, sr, sc)
            };
            let mut want = vec![0f32; m * n];
            gemm_on(&mut want, m, n, op, Op::n(&b, k, n), false, 1);
            let mut s = SparseLeft::default();
            let mut got = vec![f32::NAN; m * n];
            gemm_sparse_left(&mut got, m, n, op, Op::n(&b, k, n), 1, &mut s);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-5, "{g} vs {w}");
            }
            let mut got3 = vec![f32::NAN; m * n];
            gemm_sparse_left(&mut got3, m, n, op, Op::n(&b, k, n), 3, &mut s);
            let same =
                |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits());
            assert!(same(&got, &got3));
            // The right operand stored transposed: the same product, the same bits.
            let mut bt = vec![0f32; k * n];
            for (r, row) in b.chunks_exact(n).enumerate() {
                for (c, &v) in row.iter().enumerate() {
                    bt[c * k + r] = v;
                }
            }
            let mut got_t = vec![f32::NAN; m * n];
            gemm_sparse_left(&mut got_t, m, n, op, Op::t(&bt, n, k), 2, &mut s);
            assert!(same(&got, &got_t));
        }
    }
}
