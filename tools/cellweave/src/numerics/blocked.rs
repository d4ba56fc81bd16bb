//! Linear algebra over a matrix read a block of rows at a time, for data too large to
//! densify: products with it, PCA of the rows of a CSR matrix, and a block Krylov SVD whose
//! memory is the Krylov basis (`n x w` in f32) and no more.
//!
//! A [`RowSource`] fills dense row-major blocks of [`BLOCK`] rows on demand (from a sparse
//! matrix, possibly transformed row by row), so a product with it costs one dense block per
//! thread and never the `n x d` matrix. Peak memory is `O(nnz + n x k)`.
//!
//! [`pca_rows`] gives what [`pca::pca_with`] gives on the dense copy of the same rows (scores,
//! components): with the exact covariance route the same numbers bit for bit (the same blocks
//! summed in the same order), with the randomized route the same block Krylov method, whose
//! products here sum the rows in another order, so equal within float rounding.
//! [`krylov_svd`] is [`pca::block_krylov_svd`] with the Krylov basis orthonormalised by a
//! tall-skinny QR in row chunks (TSQR), in place, instead of a dense f64 copy and QR of the
//! whole basis (which at a million rows and 300 columns takes 7 GB).

use crate::contract::Csr;
use crate::numerics::pca::{self, flip_signs, gemm, LinearOperator, Solver, TruncatedSvd};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

/// Rows per block of a product (the row blocks of [`pca::gemm`]).
pub const BLOCK: usize = 256;

/// Fixed number of row ranges whose partial sums `A^T y` adds in order (so results do not
/// depend on the number of threads).
const PARTS: usize = 16;

/// A matrix whose rows are produced a block at a time.
pub trait RowSource: Sync {
    /// Number of rows.
    fn n_rows(&self) -> usize;
    /// Number of columns.
    fn n_cols(&self) -> usize;
    /// Rows `start .. start + out.len() / n_cols` as a dense row-major block.
    fn fill(&self, start: usize, out: &mut [f32]);
}

/// Some rows of a CSR matrix, in a given order, all columns.
#[derive(Debug, Clone, Copy)]
pub struct CsrRows<'a> {
    /// The matrix.
    pub x: &'a Csr,
    /// Its rows, in the order of the source's rows.
    pub rows: &'a [usize],
}

impl RowSource for CsrRows<'_> {
    fn n_rows(&self) -> usize {
        self.rows.len()
    }
    fn n_cols(&self) -> usize {
        self.x.n_cols
    }
    fn fill(&self, start: usize, out: &mut [f32]) {
        let d = self.x.n_cols;
        out.fill(0.0);
        if d == 0 {
            return;
        }
        for (o, &r) in out.chunks_mut(d).zip(&self.rows[start..]) {
            let (idx, val) = self.x.row(r);
            for (&c, &v) in idx.iter().zip(val) {
                o[c as usize] = v;
            }
        }
    }
}

/// `A . b` (`n x b.ncols()`, row-major), one block of [`BLOCK`] rows of `A` at a time.
pub fn apply(a: &impl RowSource, b: MatRef<'_, f32>) -> Vec<f32> {
    let (n, d, l) = (a.n_rows(), a.n_cols(), b.ncols());
    assert_eq!(b.nrows(), d, "blocked apply: inner dimensions");
    let mut out = vec![0f32; n * l];
    if n == 0 || l == 0 {
        return out;
    }
    out.par_chunks_mut(BLOCK * l).enumerate().for_each_init(
        || vec![0f32; BLOCK * d],
        |buf, (c, o)| {
            let rows = o.len() / l;
            let blk = &mut buf[..rows * d];
            a.fill(c * BLOCK, blk);
            matmul(
                MatMut::from_row_major_slice_mut(o, rows, l),
                Accum::Replace,
                MatRef::from_row_major_slice(blk, rows, d),
                b,
                1.0f32,
                Par::Seq,
            );
        },
    );
    out
}

/// `A^T . y` for `y` of shape `n x l` (row-major); returns `d x l`. The rows are cut into
/// [`PARTS`] ranges whose partial products are summed in order.
pub fn apply_t(a: &impl RowSource, y: &[f32], l: usize) -> Vec<f32> {
    let (n, d) = (a.n_rows(), a.n_cols());
    assert_eq!(y.len(), n * l, "blocked apply_t: y is not n x l");
    if n == 0 || d == 0 || l == 0 {
        return vec![0f32; d * l];
    }
    let per = n.div_ceil(PARTS).div_ceil(BLOCK) * BLOCK;
    let parts: Vec<Vec<f32>> = (0..n.div_ceil(per))
        .into_par_iter()
        .map(|p| {
            let mut part = vec![0f32; d * l];
            let mut buf = vec![0f32; BLOCK * d];
            let end = ((p + 1) * per).min(n);
            let mut start = p * per;
            while start < end {
                let rows = BLOCK.min(end - start);
                let blk = &mut buf[..rows * d];
                a.fill(start, blk);
                matmul(
                    MatMut::from_row_major_slice_mut(&mut part, d, l),
                    Accum::Add,
                    MatRef::from_row_major_slice(blk, rows, d).transpose(),
                    MatRef::from_row_major_slice(&y[start * l..(start + rows) * l], rows, l),
                    1.0f32,
                    Par::Seq,
                );
                start += rows;
            }
            part
        })
        .collect();
    let mut out = parts[0].clone();
    for part in &parts[1..] {
        out.iter_mut().zip(part).for_each(|(x, y)| *x += y);
    }
    out
}

/// The rows of a source minus `mean`, as an operator (never formed).
struct Centered<'a, S: RowSource> {
    src: &'a S,
    mean: &'a [f32],
}

impl<S: RowSource> LinearOperator for Centered<'_, S> {
    fn nrows(&self) -> usize {
        self.src.n_rows()
    }
    fn ncols(&self) -> usize {
        self.src.n_cols()
    }
    fn apply(&self, v: &[f32], l: usize) -> Vec<f32> {
        let d = self.src.n_cols();
        let mut out = apply(self.src, MatRef::from_row_major_slice(v, d, l));
        // subtract 1 (mean . v)
        let mut mv = vec![0f64; l];
        for (j, &m) in self.mean.iter().enumerate() {
            for c in 0..l {
                mv[c] += m as f64 * v[j * l + c] as f64;
            }
        }
        out.par_chunks_mut(l.max(1))
            .for_each(|row| row.iter_mut().zip(&mv).for_each(|(o, m)| *o -= *m as f32));
        out
    }
    fn apply_t(&self, y: &[f32], l: usize) -> Vec<f32> {
        let mut out = apply_t(self.src, y, l);
        // subtract mean (1^T y)
        let mut colsum = vec![0f64; l];
        for row in y.chunks(l.max(1)) {
            colsum
                .iter_mut()
                .zip(row)
                .for_each(|(s, &v)| *s += v as f64);
        }
        out.par_chunks_mut(l.max(1))
            .enumerate()
            .for_each(|(j, row)| {
                let m = self.mean[j] as f64;
                row.iter_mut()
                    .zip(&colsum)
                    .for_each(|(o, s)| *o -= (m * s) as f32);
            });
        out
    }
}

/// Column means of a CSR matrix's rows (f64 sums: the same as [`pca::column_means`] of their
/// dense copy, the sums of f32 values being exact in f64).
pub fn column_means(x: &Csr, rows: &[usize]) -> Vec<f32> {
    let mut s = vec![0f64; x.n_cols];
    for &r in rows {
        let (idx, val) = x.row(r);
        for (&c, &v) in idx.iter().zip(val) {
            s[c as usize] += v as f64;
        }
    }
    let n = rows.len().max(1) as f64;
    s.iter().map(|v| (v / n) as f32).collect()
}

/// Scores (`n x k`) and components (`k x d`) of the PCA of `rows` of `x`, centred and not
/// scaled, as [`pca::pca_with`] on their dense copy (see the module notes); memory
/// `O(nnz + n x k)` plus the Krylov basis on the randomized route.
pub fn pca_rows(
    x: &Csr,
    rows: &[usize],
    n_comps: usize,
    seed: u64,
    solver: Solver,
) -> (usize, Vec<f32>, Vec<f32>) {
    let p = pca_rows_inner(x, rows, n_comps, seed, solver, false);
    (p.k, p.scores, p.components)
}

/// [`pca_rows`] with everything [`pca::pca_with`] returns: the variance along each axis
/// (ddof 1) and its fraction of the total variance (summed a block of rows at a time).
pub fn pca_of_rows(x: &Csr, rows: &[usize], n_comps: usize, seed: u64, solver: Solver) -> pca::Pca {
    pca_rows_inner(x, rows, n_comps, seed, solver, true)
}

/// The PCA of [`pca_rows`]; the total variance (one more pass over the rows) only when
/// `ratio`, else the ratios are 0.
fn pca_rows_inner(
    x: &Csr,
    rows: &[usize],
    n_comps: usize,
    seed: u64,
    solver: Solver,
    ratio: bool,
) -> pca::Pca {
    let src = CsrRows { x, rows };
    let (n, d) = (rows.len(), x.n_cols);
    let k = n_comps.min(n).min(d);
    let mean = column_means(x, rows);
    if k == 0 {
        return pca::Pca {
            k: 0,
            scores: vec![],
            components: vec![],
            explained_variance: vec![],
            explained_variance_ratio: vec![],
            mean,
        };
    }
    let solver = match solver {
        Solver::Auto => pca::auto_solver(n, d, k),
        s => s,
    };
    let (mut components, variance) = match solver {
        Solver::Randomized { n_iter } => {
            let op = Centered {
                src: &src,
                mean: &mean,
            };
            let svd = krylov_svd(&op, k, k + 10, n_iter, seed, false);
            let var = svd
                .s
                .iter()
                .map(|s| (s * s) / (n.max(2) - 1) as f64)
                .collect::<Vec<_>>();
            (svd.vt, var)
        }
        _ => pca::covariance_eigen_of(src.n_rows(), d, &mean, k, |start, block| {
            src.fill(start, block)
        }),
    };
    flip_signs(&mut components, k, d);
    // scores = (x - mean) . components^T, as pca::project
    let mut scores = apply(
        &src,
        MatRef::from_row_major_slice(&components, k, d).transpose(),
    );
    let shift: Vec<f32> = components
        .chunks(d)
        .map(|c| {
            c.iter()
                .zip(&mean)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum::<f64>() as f32
        })
        .collect();
    scores
        .par_chunks_mut(k)
        .for_each(|row| row.iter_mut().zip(&shift).for_each(|(s, m)| *s -= m));
    let total_var = if ratio {
        total_variance_of(&src, &mean)
    } else {
        0.0
    };
    let explained_variance_ratio = pca::variance_ratio(&variance, total_var);
    pca::Pca {
        k,
        scores,
        components,
        explained_variance: variance.iter().map(|&v| v as f32).collect(),
        explained_variance_ratio,
        mean,
    }
}

/// Total variance (ddof 1) of the rows of `src` about `mean`, as `pca`'s: blocks of 1,024
/// rows densified one at a time, summed in f64.
fn total_variance_of(src: &impl RowSource, mean: &[f32]) -> f64 {
    let (n, d) = (src.n_rows(), src.n_cols());
    if n < 2 || d == 0 {
        return 0.0;
    }
    const ROWS: usize = 1024;
    let parts: Vec<f64> = (0..n.div_ceil(ROWS))
        .into_par_iter()
        .map(|b| {
            let start = b * ROWS;
            let rows = ROWS.min(n - start);
            let mut buf = vec![0f32; rows * d];
            src.fill(start, &mut buf);
            let mut s = 0f64;
            for row in buf.chunks(d) {
                for (&v, &m) in row.iter().zip(mean) {
                    let c = (v - m) as f64;
                    s += c * c;
                }
            }
            s
        })
        .collect();
    parts.iter().sum::<f64>() / (n - 1) as f64
}

/// Rows per chunk of the tall-skinny QR at least (and at least twice the columns).
const TSQR_ROWS: usize = 8192;

/// Orthonormalise the columns of a row-major `n x l` matrix in place (`n >= 2 l`): Householder
/// QR (f64) of row chunks, then of their stacked R factors, each chunk's Q times its slice
/// of the second Q (TSQR). The same basis as [`pca::orthonormalize`] up to column signs;
/// memory a few chunks instead of three f64 copies of the matrix.
pub fn tsqr_in_place(y: &mut [f32], n: usize, l: usize) {
    assert_eq!(y.len(), n * l);
    assert!(
        n >= 2 * l,
        "tsqr: needs at least twice as many rows as columns"
    );
    if l == 0 {
        return;
    }
    let min_rows = TSQR_ROWS.max(2 * l);
    let chunks = (n / min_rows).max(1);
    let per = n / chunks; // at least min_rows; the last chunk takes the remainder too
    let rs: Vec<Mat<f64>> = tsqr_chunks(y, chunks, per * l)
        .into_par_iter()
        .map(|c| {
            let rows = c.len() / l;
            let m = Mat::<f64>::from_fn(rows, l, |i, j| c[i * l + j] as f64);
            let qr = m.qr();
            let q = qr.compute_thin_Q();
            for i in 0..rows {
                for j in 0..l {
                    c[i * l + j] = q[(i, j)] as f32;
                }
            }
            qr.thin_R().to_owned()
        })
        .collect();
    if rs.len() == 1 {
        return;
    }
    let stack = Mat::<f64>::from_fn(rs.len() * l, l, |i, j| rs[i / l][(i % l, j)]);
    let qs = stack.qr().compute_thin_Q();
    tsqr_chunks(y, chunks, per * l)
        .into_par_iter()
        .enumerate()
        .for_each(|(c, chunk)| {
            let rows = chunk.len() / l;
            let s = Mat::<f32>::from_fn(l, l, |i, j| qs[(c * l + i, j)] as f32);
            let mut out = vec![0f32; rows * l];
            matmul(
                MatMut::from_row_major_slice_mut(&mut out, rows, l),
                Accum::Replace,
                MatRef::from_row_major_slice(chunk, rows, l),
                s.as_ref(),
                1.0f32,
                Par::Seq,
            );
            chunk.copy_from_slice(&out);
        });
}

/// `chunks` pieces of `y`: `chunks - 1` of `len` values, the last with the rest.
fn tsqr_chunks(y: &mut [f32], chunks: usize, len: usize) -> Vec<&mut [f32]> {
    let (head, tail) = y.split_at_mut((chunks - 1) * len);
    let mut parts: Vec<&mut [f32]> = head.chunks_mut(len.max(1)).collect();
    parts.push(tail);
    parts
}

/// [`pca::block_krylov_svd`] (same random block, same Krylov space, same Rayleigh-Ritz step)
/// with the basis orthonormalised in place by [`tsqr_in_place`]: memory the `n x w` basis in
/// f32 (`w = block x (depth + 1)`) and one product. `u` is computed only with `want_u`
/// (else empty). Small problems (fewer than twice `w` rows) go to `pca::block_krylov_svd`.
pub fn krylov_svd(
    op: &impl LinearOperator,
    k: usize,
    block: usize,
    depth: usize,
    seed: u64,
    want_u: bool,
) -> TruncatedSvd {
    let (m, n) = (op.nrows(), op.ncols());
    let k = k.min(m).min(n);
    let b = block.max(k).min(m).min(n);
    let wide = b * (depth + 1);
    if m < 2 * wide || b == 0 {
        return pca::block_krylov_svd(op, k, block, depth, seed);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let omega: Vec<f32> = (0..n * b)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    let mut kry = vec![0f32; m * wide];
    let mut y = op.apply(&omega, b);
    drop(omega);
    for t in 0..=depth {
        if t > 0 {
            let z = op.apply_t(&y, b);
            y = op.apply(&z, b);
        }
        tsqr_in_place(&mut y, m, b);
        kry.par_chunks_mut(wide)
            .zip(y.par_chunks(b))
            .for_each(|(dst, src)| dst[t * b..(t + 1) * b].copy_from_slice(src));
    }
    drop(y);
    tsqr_in_place(&mut kry, m, wide);
    let q = kry;
    let bt = op.apply_t(&q, wide); // n x w
    let btm = Mat::<f64>::from_fn(n, wide, |i, j| bt[i * wide + j] as f64);
    drop(bt);
    let svd = btm.thin_svd().expect("SVD of the Krylov projection");
    let (wu, s, z) = (svd.U(), svd.S().column_vector(), svd.V());
    let mut vt = vec![0f32; k * n];
    for c in 0..k {
        for i in 0..n {
            vt[c * n + i] = wu[(i, c)] as f32;
        }
    }
    let u = if want_u {
        let zk = Mat::<f32>::from_fn(wide, k, |i, j| z[(i, j)] as f32);
        let mut u = vec![0f32; m * k];
        gemm(
            &mut u,
            MatRef::from_row_major_slice(&q, m, wide),
            zk.as_ref(),
        );
        u
    } else {
        vec![]
    };
    TruncatedSvd {
        k,
        u,
        s: (0..k).map(|c| s[c]).collect(),
        vt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numerics::pca::{orthonormalize, pca_with};
    use crate::numerics::with_threads;
    use rand::Rng;

    /// Sparse low-rank-ish data with a column offset: `n x d` dense and its CSR.
    fn data(n: usize, d: usize, seed: u64) -> (Vec<f32>, Csr) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let f: Vec<f32> = (0..n * 4)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let l: Vec<f32> = (0..4 * d)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let mut x = vec![0f32; n * d];
        for i in 0..n {
            for j in 0..d {
                if rng.random::<f32>() < 0.35 {
                    let s: f32 = (0..4)
                        .map(|r| f[i * 4 + r] * l[r * d + j] * (4 - r) as f32)
                        .sum();
                    x[i * d + j] = (s.abs() + 1.0).ln() + 0.01 * j as f32;
                }
            }
        }
        let csr = Csr::from_dense(n, d, &x);
        (x, csr)
    }

    #[test]
    fn products_match_dense() {
        let (n, d, l) = (1000, 37, 5);
        let (x, csr) = data(n, d, 1);
        let rows: Vec<usize> = (0..n).rev().collect();
        let src = CsrRows {
            x: &csr,
            rows: &rows,
        };
        let dense_rows = csr.to_dense_rows(&rows);
        let v: Vec<f32> = (0..d * l).map(|i| (i as f32 * 0.37).sin()).collect();
        let y: Vec<f32> = (0..n * l).map(|i| (i as f32 * 0.11).cos()).collect();
        let av = apply(&src, MatRef::from_row_major_slice(&v, d, l));
        let mut want = vec![0f32; n * l];
        gemm(
            &mut want,
            MatRef::from_row_major_slice(&dense_rows, n, d),
            MatRef::from_row_major_slice(&v, d, l),
        );
        assert_eq!(av, want, "row blocks of A v are the dense blocks");
        let aty = apply_t(&src, &y, l);
        let mut want_t = vec![0f32; d * l];
        gemm(
            &mut want_t,
            MatRef::from_row_major_slice(&dense_rows, n, d).transpose(),
            MatRef::from_row_major_slice(&y, n, l),
        );
        for (a, b) in aty.iter().zip(&want_t) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
        assert!(x.contains(&0.0));
        // independent of the number of threads
        let one = with_threads(1, || apply_t(&src, &y, l));
        let two = with_threads(2, || apply_t(&src, &y, l));
        assert_eq!(one, two);
    }

    #[test]
    fn tsqr_is_an_orthonormal_basis_of_the_same_span() {
        let (n, l) = (26_001, 12);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let y: Vec<f32> = (0..n * l)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let mut q = y.clone();
        tsqr_in_place(&mut q, n, l);
        let reference = orthonormalize(&y, n, l);
        // Q^T Q = I and |Q_ref^T Q| = I (same columns up to sign)
        for a in 0..l {
            for b in 0..l {
                let qq: f64 = (0..n)
                    .map(|i| q[i * l + a] as f64 * q[i * l + b] as f64)
                    .sum();
                let rq: f64 = (0..n)
                    .map(|i| reference[i * l + a] as f64 * q[i * l + b] as f64)
                    .sum();
                let want = if a == b { 1.0 } else { 0.0 };
                assert!((qq - want).abs() < 1e-5, "Q^T Q [{a},{b}] = {qq}");
                assert!((rq.abs() - want).abs() < 1e-4, "Q_ref^T Q [{a},{b}] = {rq}");
            }
        }
    }

    #[test]
    fn pca_of_csr_rows_matches_dense_pca() {
        // exact route: bit for bit; randomized route: within float rounding
        let (n, d, k) = (3000, 40, 6);
        let (_, csr) = data(n, d, 2);
        let rows: Vec<usize> = (0..n).filter(|i| i % 7 != 3).collect();
        let dense = csr.to_dense_rows(&rows);
        let nr = rows.len();
        let want = pca_with(&dense, nr, d, k, 5, Solver::Covariance);
        let (kk, scores, comps) = pca_rows(&csr, &rows, k, 5, Solver::Covariance);
        assert_eq!(kk, want.k);
        assert_eq!(comps, want.components);
        assert_eq!(scores, want.scores);
        let solver = Solver::Randomized { n_iter: 4 };
        let want = pca_with(&dense, nr, d, k, 5, solver);
        let (_, scores, comps) = pca_rows(&csr, &rows, k, 5, solver);
        for c in 0..k {
            let cos: f64 = (0..d)
                .map(|j| comps[c * d + j] as f64 * want.components[c * d + j] as f64)
                .sum();
            assert!(cos > 0.9999, "component {c}: cos {cos}");
        }
        let scale = want.scores.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (a, b) in scores.iter().zip(&want.scores) {
            assert!((a - b).abs() < 1e-3 * scale, "{a} vs {b}");
        }
        // deterministic whatever the threads
        let one = with_threads(1, || pca_rows(&csr, &rows, k, 5, solver));
        let two = with_threads(2, || pca_rows(&csr, &rows, k, 5, solver));
        assert_eq!(one, two);
    }

    #[test]
    fn pca_of_rows_gives_the_dense_pcas_variances() {
        // what the h5ad export stores in uns['pca']: variance and ratio as pca_with's
        let (n, d, k) = (2500, 30, 5);
        let (_, csr) = data(n, d, 3);
        let rows: Vec<usize> = (0..n).collect();
        let dense = csr.to_dense_rows(&rows);
        for solver in [Solver::Covariance, Solver::Randomized { n_iter: 4 }] {
            let want = pca_with(&dense, n, d, k, 1, solver);
            let got = pca_of_rows(&csr, &rows, k, 1, solver);
            assert_eq!(got.k, want.k);
            assert_eq!(got.mean, want.mean);
            if solver == Solver::Covariance {
                assert_eq!(got.components, want.components);
                assert_eq!(got.explained_variance, want.explained_variance);
            }
            for c in 0..k {
                let (a, b) = (got.explained_variance[c], want.explained_variance[c]);
                assert!(
                    (a - b).abs() <= 1e-4 * b,
                    "{solver:?} variance {c}: {a} vs {b}"
                );
                let (a, b) = (
                    got.explained_variance_ratio[c],
                    want.explained_variance_ratio[c],
                );
                assert!(
                    a > 0.0 && (a - b).abs() <= 1e-5 * b.max(1e-3),
                    "{solver:?} ratio {c}: {a} vs {b}"
                );
            }
        }
    }
}
