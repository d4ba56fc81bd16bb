//! A matrix product with bf16 operands and f32 accumulation on CPUs with AVX512_BF16:
//! `C (n x m) = A (n x k) B^T` for row-major `A (n x k)` and `B (m x k)`, both rounded to
//! bf16 (round to nearest even, as `VCVTNEPS2BF16` does: subnormals become zero), the
//! products of pairs summed into f32 by `VDPBF16PS`, which does twice the multiply-adds
//! per cycle of an f32 FMA.
//!
//! The operands are packed once per product: `A` row-major in bf16 pairs
//! ([`pack_rows`]: each `u32` holds `A[i, 2p]` and `A[i, 2p + 1]`, `k` padded to even), `B`
//! in panels of 16 rows ([`pack_panels`]: for each pair `p`, the 16 rows' pairs side by
//! side, the layout `VDPBF16PS` multiplies against a broadcast pair of `A`). Every element
//! of `C` is summed in the same order whatever the thread count or the tile it falls in,
//! so the result does not depend on them.

/// Whether the CPU runs this module's kernels (AVX-512F/BW/VL and AVX512_BF16).
#[inline]
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Pairs per row of a packed operand with `k` columns.
#[inline]
pub fn pairs(k: usize) -> usize {
    k.div_ceil(2)
}

/// Rows per panel of a packed `B`.
pub const PANEL: usize = 16;
/// Rows of `A` per register tile.
const MR: usize = 8;
/// Panels of `B` per register tile (`MR x NV` accumulators of 16 lanes).
const NV: usize = 3;
/// Pairs per block of the sum (the tile's slice of `B`, `NV x 16 x KC` pairs, stays in L1).
const KC: usize = 128;

/// `a (rows x k, row-major f32)` rounded to bf16 into `out`: `rows x pairs(k)` pairs, row-major.
/// Panics (as every function of this module) when the CPU lacks [`available`]'s features.
pub fn pack_rows(a: &[f32], rows: usize, k: usize, out: &mut Vec<u32>) {
    assert!(available(), "bf16 kernels need AVX512_BF16");
    assert!(
        a.len() >= rows * k,
        "pack_rows: {} values for {rows} x {k}",
        a.len()
    );
    let kp = pairs(k);
    out.resize(rows * kp, 0);
    // SAFETY: the CPU has the features (asserted above); the slices have the lengths used.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        imp::pack_rows(a, rows, k, out)
    }
}

/// `b (rows x k, row-major f32)` rounded to bf16 into `out` in panels of [`PANEL`] rows:
/// `out[(q * pairs(k) + p) * 16 + l]` = the pair `p` of row `16 q + l` (zero past `rows`).
pub fn pack_panels(b: &[f32], rows: usize, k: usize, out: &mut Vec<u32>) {
    assert!(available(), "bf16 kernels need AVX512_BF16");
    assert!(
        b.len() >= rows * k,
        "pack_panels: {} values for {rows} x {k}",
        b.len()
    );
    let kp = pairs(k);
    out.resize(rows.div_ceil(PANEL) * kp * PANEL, 0);
    // SAFETY: as in `pack_rows`.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        imp::pack_panels(b, rows, k, out)
    }
}

/// `c (n x m, row-major) = A B^T` from `a` packed by [`pack_rows`] (`n` rows) and `b` by
/// [`pack_panels`] (`m` rows), both of `k` columns, on at most `threads` threads (1: the
/// calling thread). The bits do not depend on `threads`.
pub fn gemm_nt(c: &mut [f32], n: usize, m: usize, k: usize, a: &[u32], b: &[u32], threads: usize) {
    assert!(available(), "bf16 kernels need AVX512_BF16");
    let kp = pairs(k);
    assert!(
        c.len() >= n * m && a.len() >= n * kp && b.len() >= m.div_ceil(PANEL) * kp * PANEL,
        "gemm_nt: buffers too short for {n} x {m} x {k}"
    );
    if n == 0 || m == 0 {
        return;
    }
    let c = &mut c[..n * m];
    // Row blocks of whole register tiles, one per thread.
    let parts = threads.max(1).min(n.div_ceil(MR));
    let rows_per = n.div_ceil(MR).div_ceil(parts) * MR;
    let run = |c: &mut [f32], r0: usize| {
        let rows = c.len() / m;
        // SAFETY: the CPU has the features (asserted above); the lengths are checked above.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            imp::gemm_rows(c, rows, m, kp, &a[r0 * kp..(r0 + rows) * kp], b)
        }
    };
    if parts <= 1 {
        run(c, 0);
    } else {
        rayon::scope(|s| {
            for (t, chunk) in c.chunks_mut(rows_per * m).enumerate() {
                let run = &run;
                s.spawn(move |_| run(chunk, t * rows_per));
            }
        });
    }
}

/// `x` rounded to bf16 and back, as [`pack_rows`] rounds (for references and tests).
pub fn round(x: f32) -> f32 {
    let mut v = Vec::new();
    pack_rows(&[x], 1, 1, &mut v);
    f32::from_bits(v[0] << 16)
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::{KC, MR, NV, PANEL};
    use std::arch::x86_64::*;

    /// 32 floats (zero past `src.len()`) to 16 bf16 pairs.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    unsafe fn cvt32(src: &[f32]) -> __m512i {
        if src.len() >= 32 {
            let lo = _mm512_loadu_ps(src.as_ptr());
            let hi = _mm512_loadu_ps(src.as_ptr().add(16));
            std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo))
        } else {
            let mut t = [0f32; 32];
            t[..src.len()].copy_from_slice(src);
            let lo = _mm512_loadu_ps(t.as_ptr());
            let hi = _mm512_loadu_ps(t.as_ptr().add(16));
            std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo))
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub(super) unsafe fn pack_rows(a: &[f32], rows: usize, k: usize, out: &mut [u32]) {
        let kp = super::pairs(k);
        for r in 0..rows {
            let src = &a[r * k..(r + 1) * k];
            let dst = &mut out[r * kp..(r + 1) * kp];
            let mut p = 0;
            while p + 16 <= kp {
                let v = cvt32(&src[2 * p..(2 * p + 32).min(k)]);
                _mm512_storeu_si512(dst.as_mut_ptr().add(p) as *mut _, v);
                p += 16;
            }
            if p < kp {
                let mut t = [0u32; 16];
                _mm512_storeu_si512(t.as_mut_ptr() as *mut _, cvt32(&src[2 * p..]));
                dst[p..].copy_from_slice(&t[..kp - p]);
            }
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub(super) unsafe fn pack_panels(b: &[f32], rows: usize, k: usize, out: &mut [u32]) {
        let kp = super::pairs(k);
        for q in 0..rows.div_ceil(PANEL) {
            let panel = &mut out[q * kp * PANEL..(q + 1) * kp * PANEL];
            let r0 = q * PANEL;
            let nr = PANEL.min(rows - r0);
            for p0 in (0..kp).step_by(16) {
                let np = 16.min(kp - p0);
                // r[l]: pairs p0 .. p0 + 16 of row r0 + l (zero past the last row).
                let mut r = [_mm512_setzero_si512(); PANEL];
                for (l, v) in r.iter_mut().enumerate().take(nr) {
                    let src = &b[(r0 + l) * k..(r0 + l + 1) * k];
                    *v = cvt32(&src[2 * p0..(2 * p0 + 32).min(k)]);
                }
                let o = transpose16(&r);
                for (j, v) in o.iter().enumerate().take(np) {
                    _mm512_storeu_si512(panel.as_mut_ptr().add((p0 + j) * PANEL) as *mut _, *v);
                }
            }
        }
    }

    /// The transpose of a 16 x 16 matrix of 32-bit values held as 16 rows: `o[j][l] = r[l][j]`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    unsafe fn transpose16(r: &[__m512i; 16]) -> [__m512i; 16] {
        // t[2i], t[2i + 1]: rows 2i and 2i + 1 interleaved, per 128-bit lane L, at columns
        // 4L, 4L + 1 and 4L + 2, 4L + 3.
        let mut t = [_mm512_setzero_si512(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
        }
        // u[4g + c], lane L: rows 4g .. 4g + 4 at column 4L + c.
        let mut u = [_mm512_setzero_si512(); 16];
        for g in 0..4 {
            let t = &t[4 * g..4 * g + 4];
            u[4 * g] = _mm512_unpacklo_epi64(t[0], t[2]);
            u[4 * g + 1] = _mm512_unpackhi_epi64(t[0], t[2]);
            u[4 * g + 2] = _mm512_unpacklo_epi64(t[1], t[3]);
            u[4 * g + 3] = _mm512_unpackhi_epi64(t[1], t[3]);
        }
        // Column 4L + c: lane L of u[c], u[4 + c], u[8 + c], u[12 + c].
        let mut o = [_mm512_setzero_si512(); 16];
        for c in 0..4 {
            let va = _mm512_shuffle_i32x4::<0x44>(u[c], u[4 + c]);
            let vb = _mm512_shuffle_i32x4::<0xEE>(u[c], u[4 + c]);
            let wa = _mm512_shuffle_i32x4::<0x44>(u[8 + c], u[12 + c]);
            let wb = _mm512_shuffle_i32x4::<0xEE>(u[8 + c], u[12 + c]);
            o[c] = _mm512_shuffle_i32x4::<0x88>(va, wa);
            o[4 + c] = _mm512_shuffle_i32x4::<0xDD>(va, wa);
            o[8 + c] = _mm512_shuffle_i32x4::<0x88>(vb, wb);
            o[12 + c] = _mm512_shuffle_i32x4::<0xDD>(vb, wb);
        }
        o
    }

    /// `c (rows x m) = A B^T` for `a` (`rows x kp` pairs) and all of `b`'s panels.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub(super) unsafe fn gemm_rows(
        c: &mut [f32],
        rows: usize,
        m: usize,
        kp: usize,
        a: &[u32],
        b: &[u32],
    ) {
        let panels = m.div_ceil(PANEL);
        for k0 in (0..kp).step_by(KC) {
            let kl = KC.min(kp - k0);
            let first = k0 == 0;
            let mut q = 0;
            while q < panels {
                let nv = NV.min(panels - q);
                let mut i = 0;
                while i < rows {
                    let mr = MR.min(rows - i);
                    let t = Tile {
                        a: a.as_ptr().add(i * kp + k0),
                        kp,
                        b: b.as_ptr().add((q * kp + k0) * PANEL),
                        c: c.as_mut_ptr().add(i * m + q * PANEL),
                        m,
                        cols: (m - q * PANEL).min(nv * PANEL),
                        kl,
                        first,
                    };
                    match (mr, nv) {
                        (MR, NV) => tile::<MR, NV>(&t),
                        (MR, 2) => tile::<MR, 2>(&t),
                        (MR, 1) => tile::<MR, 1>(&t),
                        (r, v) => small(&t, r, v),
                    }
                    i += mr;
                }
                q += nv;
            }
        }
    }

    /// One register tile: `R` rows of `A` against `V` panels of `B` over `kl` pairs.
    #[derive(Clone, Copy)]
    struct Tile {
        a: *const u32,
        kp: usize,
        b: *const u32,
        c: *mut f32,
        m: usize,
        /// Columns of `C` inside this tile (`<= 16 V`).
        cols: usize,
        kl: usize,
        /// Whether the sum starts here (else it adds to `C`).
        first: bool,
    }

    /// The tile for the remainders of rows (`r < MR`) and panels, one row at a time (the
    /// same per-element order as the full tiles).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    unsafe fn small(t: &Tile, r: usize, v: usize) {
        for i in 0..r {
            let ti = Tile {
                a: t.a.add(i * t.kp),
                c: t.c.add(i * t.m),
                ..*t
            };
            match v {
                3 => tile::<1, 3>(&ti),
                2 => tile::<1, 2>(&ti),
                _ => tile::<1, 1>(&ti),
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    unsafe fn tile<const R: usize, const V: usize>(t: &Tile) {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        let bstride = t.kp * PANEL;
        for p in 0..t.kl {
            let mut bv = [_mm512_setzero_ps(); V];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(t.b.add(v * bstride + p * PANEL) as *const f32);
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let ap = _mm512_set1_epi32(*t.a.add(r * t.kp + p) as i32);
                let ap = std::mem::transmute::<__m512i, __m512bh>(ap);
                for (v, x) in row.iter_mut().enumerate() {
                    *x = _mm512_dpbf16_ps(*x, ap, std::mem::transmute::<__m512, __m512bh>(bv[v]));
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            let cr = t.c.add(r * t.m);
            for (v, x) in row.iter().enumerate() {
                let n = t.cols.saturating_sub(v * PANEL).min(PANEL);
                if n == 0 {
                    continue;
                }
                let mask: __mmask16 = if n == PANEL { 0xffff } else { (1u16 << n) - 1 };
                let dst = cr.add(v * PANEL);
                let s = if t.first {
                    *x
                } else {
                    _mm512_add_ps(_mm512_maskz_loadu_ps(mask, dst), *x)
                };
                _mm512_mask_storeu_ps(dst, mask, s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32
                    / 16_777_216.0
                    - 0.3
            })
            .collect()
    }

    /// Round to nearest even, on normal numbers.
    fn rne(x: f32) -> f32 {
        let b = x.to_bits();
        f32::from_bits((b + 0x7fff + ((b >> 16) & 1)) & 0xffff_0000)
    }

    #[test]
    fn rounding_is_nearest_even() {
        if !available() {
            return;
        }
        for x in data(5000, 3)
            .into_iter()
            .chain([1.0, -2.5, 1.0 + 1.0 / 256.0, 3.0e-3])
        {
            assert_eq!(round(x).to_bits(), rne(x).to_bits(), "{x}");
        }
        // Ties go to even: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7.
        assert_eq!(round(1.0 + 1.0 / 256.0), 1.0);
        assert_eq!(round(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0);
    }

    #[test]
    fn panels_hold_the_rows_pairs() {
        if !available() {
            return;
        }
        let (rows, k) = (37, 71);
        let b = data(rows * k, 4);
        let (mut p, mut r) = (Vec::new(), Vec::new());
        pack_panels(&b, rows, k, &mut p);
        pack_rows(&b, rows, k, &mut r);
        let kp = pairs(k);
        assert_eq!(p.len(), rows.div_ceil(PANEL) * kp * PANEL);
        for q in 0..rows.div_ceil(PANEL) {
            for pp in 0..kp {
                for l in 0..PANEL {
                    let row = q * PANEL + l;
                    let want = if row < rows { r[row * kp + pp] } else { 0 };
                    assert_eq!(p[(q * kp + pp) * PANEL + l], want, "row {row} pair {pp}");
                }
            }
        }
        // The pairs: (even column, odd column) in the (low, high) halves, zero past k.
        assert_eq!(r[0] & 0xffff, round(b[0]).to_bits() >> 16);
        assert_eq!(r[0] >> 16, round(b[1]).to_bits() >> 16);
        assert_eq!(r[kp - 1] >> 16, 0);
    }

    fn product(a: &[f32], b: &[f32], n: usize, m: usize, k: usize, threads: usize) -> Vec<f32> {
        let (mut pa, mut pb) = (Vec::new(), Vec::new());
        pack_rows(a, n, k, &mut pa);
        pack_panels(b, m, k, &mut pb);
        let mut c = vec![f32::NAN; n * m];
        gemm_nt(&mut c, n, m, k, &pa, &pb, threads);
        c
    }

    #[test]
    fn matches_f64_reference_on_odd_shapes() {
        if !available() {
            return;
        }
        for &(n, m, k) in &[
            (1, 1, 1),
            (3, 5, 7),
            (8, 48, 32),
            (13, 37, 301),
            (17, 50, 258),
            (9, 33, 2 * KC * 2 + 3),
        ] {
            let (a, b) = (data(n * k, 1), data(m * k, 2));
            let c = product(&a, &b, n, m, k, 1);
            for i in 0..n {
                for j in 0..m {
                    let (mut exact, mut rounded, mut mag) = (0f64, 0f64, 0f64);
                    for l in 0..k {
                        let (x, y) = (a[i * k + l], b[j * k + l]);
                        exact += x as f64 * y as f64;
                        rounded += rne(x) as f64 * rne(y) as f64;
                        mag += (x as f64 * y as f64).abs();
                    }
                    let got = c[i * m + j] as f64;
                    // The f32 sum of the rounded products: f32 accumulation error only.
                    let sum_bound = (k as f64 + 2.0) * (2f64).powi(-24) * mag;
                    assert!(
                        (got - rounded).abs() <= sum_bound,
                        "{n}x{m}x{k} [{i},{j}]: {got} vs {rounded}"
                    );
                    // Against the unrounded operands: each bf16 operand within 2^-8
                    // relative (8 significant bits), so each product within about 2^-7.
                    assert!(
                        (got - exact).abs() <= (2f64).powi(-7) * 1.01 * mag + sum_bound,
                        "{n}x{m}x{k} [{i},{j}]: {got} vs {exact}"
                    );
                }
            }
        }
    }

    #[test]
    fn threads_give_the_same_bits() {
        if !available() {
            return;
        }
        let (n, m, k) = (45, 70, 519);
        let (a, b) = (data(n * k, 5), data(m * k, 6));
        let one = product(&a, &b, n, m, k, 1);
        for t in [2, 3] {
            let many = product(&a, &b, n, m, k, t);
            assert!(one
                .iter()
                .zip(&many)
                .all(|(x, y)| x.to_bits() == y.to_bits()));
        }
    }
}
