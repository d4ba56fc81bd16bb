//! Principal component analysis, and the dense linear algebra it shares with CCA.
//!
//! [`pca`] centres (does not scale) the data and returns the top components like
//! scanpy's `sc.pp.pca(svd_solver='arpack')` / sklearn's `PCA`: scores = U S, components =
//! V^T, explained variance = S^2 / (n - 1), ratio over the total variance (ddof 1), with
//! sklearn's sign rule (`svd_flip(u_based_decision=False)`: the largest-magnitude entry of
//! each component is positive) so results do not depend on the solver.
//!
//! Two routes: an exact one (the d x d covariance in f64 and its symmetric eigen
//! decomposition, for moderate sizes) and randomized SVD (Musco & Musco 2015)
//! (block Krylov) with implicit centring for large data. [`pca`] picks by cost.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

/// Result of [`pca`]. Matrices are row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    /// Number of components kept (`min(n_comps, n, d)`).
    pub k: usize,
    /// `n x k` projections of the centred rows.
    pub scores: Vec<f32>,
    /// `k x d` unit principal axes.
    pub components: Vec<f32>,
    /// Variance along each axis (ddof 1).
    pub explained_variance: Vec<f32>,
    /// Fraction of the total variance along each axis.
    pub explained_variance_ratio: Vec<f32>,
    /// Column means that were subtracted (`d`).
    pub mean: Vec<f32>,
}

/// Which algorithm [`pca_with`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Solver {
    /// Covariance matrix + symmetric eigendecomposition (f64).
    Covariance,
    /// Randomized block Krylov SVD of this depth (implicit centring).
    Randomized {
        /// Products with the centred matrix after the first.
        n_iter: usize,
    },
    /// Covariance when cheap, else block Krylov (see [`auto_solver`]).
    Auto,
}

/// PCA of `n x d` row-major data (see the module notes); `seed` drives the randomized
/// solver (the exact route does not use it).
pub fn pca(data: &[f32], n: usize, d: usize, n_comps: usize, seed: u64) -> Pca {
    pca_with(data, n, d, n_comps, seed, Solver::Auto)
}

/// The solver [`Solver::Auto`] picks: the exact covariance route while it costs at most a
/// few seconds (it resolves components with nearly equal variances, as ARPACK does), else
/// block Krylov SVD of depth 4.
pub fn auto_solver(n: usize, d: usize, _k: usize) -> Solver {
    if d <= 4096 && (n as f64) * (d as f64) * (d as f64) <= 1.5e11 {
        Solver::Covariance
    } else {
        Solver::Randomized { n_iter: 4 }
    }
}

/// [`pca`] with an explicit solver.
pub fn pca_with(
    data: &[f32],
    n: usize,
    d: usize,
    n_comps: usize,
    seed: u64,
    solver: Solver,
) -> Pca {
    assert_eq!(data.len(), n * d, "pca: data is not n x d");
    let k = n_comps.min(n).min(d);
    let mean = column_means(data, n, d);
    if k == 0 {
        return Pca {
            k,
            scores: vec![],
            components: vec![],
            explained_variance: vec![],
            explained_variance_ratio: vec![],
            mean,
        };
    }
    let total_var = total_variance(data, n, d, &mean);
    let solver = match solver {
        Solver::Auto => auto_solver(n, d, k),
        s => s,
    };
    // components (k x d) and the variance along each
    let (mut components, variance) = match solver {
        Solver::Randomized { n_iter } => {
            let op = Centered {
                x: data,
                n,
                d,
                mean: &mean,
            };
            let svd = block_krylov_svd(&op, k, k + 10, n_iter, seed);
            let var = svd
                .s
                .iter()
                .map(|s| (s * s) / (n.max(2) - 1) as f64)
                .collect::<Vec<_>>();
            (svd.vt, var)
        }
        _ => covariance_eigen(data, n, d, &mean, k),
    };
    flip_signs(&mut components, k, d);
    let scores = project(data, n, d, &mean, &components, k);
    let explained_variance: Vec<f32> = variance.iter().map(|&v| v as f32).collect();
    let explained_variance_ratio = variance_ratio(&variance, total_var);
    Pca {
        k,
        scores,
        components,
        explained_variance,
        explained_variance_ratio,
        mean,
    }
}

/// Project rows onto components: `(x - mean) . components^T` (`n x k`).
pub fn project(
    data: &[f32],
    n: usize,
    d: usize,
    mean: &[f32],
    components: &[f32],
    k: usize,
) -> Vec<f32> {
    let mut scores = vec![0f32; n * k];
    if n == 0 || k == 0 {
        return scores;
    }
    gemm(
        &mut scores,
        MatRef::from_row_major_slice(data, n, d),
        MatRef::from_row_major_slice(components, k, d).transpose(),
    );
    let shift: Vec<f32> = components
        .chunks(d)
        .map(|c| dot64(c, mean) as f32)
        .collect();
    scores
        .par_chunks_mut(k)
        .for_each(|row| row.iter_mut().zip(&shift).for_each(|(s, m)| *s -= m));
    scores
}

fn dot64(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// Column means (f64 accumulation).
pub fn column_means(data: &[f32], n: usize, d: usize) -> Vec<f32> {
    let sums = column_sums(data, d, |v| v as f64);
    sums.iter().map(|s| (s / n.max(1) as f64) as f32).collect()
}

fn column_sums(data: &[f32], d: usize, f: impl Fn(f32) -> f64 + Sync) -> Vec<f64> {
    if d == 0 {
        return vec![];
    }
    data.par_chunks(d * 1024)
        .map(|block| {
            let mut s = vec![0f64; d];
            for row in block.chunks(d) {
                for (acc, &v) in s.iter_mut().zip(row) {
                    *acc += f(v);
                }
            }
            s
        })
        .reduce(
            || vec![0f64; d],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        )
}

/// Sum over columns of the variance (ddof 1).
fn total_variance(data: &[f32], n: usize, d: usize, mean: &[f32]) -> f64 {
    if n < 2 {
        return 0.0;
    }
    let ss = data
        .par_chunks(d * 1024)
        .map(|block| {
            let mut s = 0f64;
            for row in block.chunks(d) {
                for (&v, &m) in row.iter().zip(mean) {
                    let c = (v - m) as f64;
                    s += c * c;
                }
            }
            s
        })
        .sum::<f64>();
    ss / (n - 1) as f64
}

/// sklearn's `svd_flip(u_based_decision=False)`: make the largest-|.| entry of each
/// component positive (the first such entry on exact ties).
pub fn flip_signs(components: &mut [f32], k: usize, d: usize) {
    for c in components.chunks_mut(d).take(k) {
        let mut best = 0;
        for (j, v) in c.iter().enumerate() {
            if v.abs() > c[best].abs() {
                best = j;
            }
        }
        if c[best] < 0.0 {
            c.iter_mut().for_each(|v| *v = -*v);
        }
    }
}

/// Top-k eigenvectors (k x d, row-major) and eigenvalues of the covariance (ddof 1).
fn covariance_eigen(
    data: &[f32],
    n: usize,
    d: usize,
    mean: &[f32],
    k: usize,
) -> (Vec<f32>, Vec<f64>) {
    covariance_eigen_of(n, d, mean, k, |start, block| {
        block.copy_from_slice(&data[start * d..start * d + block.len()])
    })
}

/// [`covariance_eigen`] of `n x d` rows that `fill(start, block)` writes into `block`
/// (row-major, `block.len() / d` rows from row `start`) on demand: the dense rows, or a
/// sparse matrix's (`numerics::blocked`), without a whole-data copy.
pub(crate) fn covariance_eigen_of(
    n: usize,
    d: usize,
    mean: &[f32],
    k: usize,
    fill: impl Fn(usize, &mut [f32]) + Sync,
) -> (Vec<f32>, Vec<f64>) {
    // a fixed number of row groups of 1,024-row blocks summed in order: deterministic
    // whatever the threads
    const BLOCK: usize = 1024;
    const GROUPS: usize = 8;
    let per_group = n.div_ceil(GROUPS).max(1);
    let partial: Vec<Mat<f64>> = (0..n.div_ceil(per_group))
        .into_par_iter()
        .map(|gi| {
            let mut cov = Mat::<f64>::zeros(d, d);
            let mut buf = vec![0f32; BLOCK * d];
            let end = ((gi + 1) * per_group).min(n);
            let mut start = gi * per_group;
            while start < end {
                let rows = BLOCK.min(end - start);
                let block = &mut buf[..rows * d];
                fill(start, block);
                let b = Mat::<f64>::from_fn(rows, d, |i, j| (block[i * d + j] - mean[j]) as f64);
                matmul(
                    cov.as_mut(),
                    Accum::Add,
                    b.transpose(),
                    b.as_ref(),
                    1.0f64,
                    Par::Seq,
                );
                start += rows;
            }
            cov
        })
        .collect();
    let mut cov = Mat::<f64>::zeros(d, d);
    for p in &partial {
        cov += p;
    }
    let scale = 1.0 / (n.max(2) - 1) as f64;
    let eig = cov
        .self_adjoint_eigen(Side::Lower)
        .expect("eigendecomposition of the covariance");
    let (u, s) = (eig.U(), eig.S());
    let s = s.column_vector();
    let mut comps = vec![0f32; k * d];
    let mut var = Vec::with_capacity(k);
    for c in 0..k {
        let col = d - 1 - c; // eigenvalues ascend
        var.push((s[col] * scale).max(0.0));
        for j in 0..d {
            comps[c * d + j] = u[(j, col)] as f32;
        }
    }
    (comps, var)
}

/// `dst (m x n, row-major) = a . b`, f32, in parallel over fixed blocks (rows of the
/// result, or else slices of the inner dimension summed in order) with a sequential
/// kernel in each: results do not depend on the number of threads, and no kernel spins
/// waiting for busy cores.
pub fn gemm(dst: &mut [f32], a: MatRef<'_, f32>, b: MatRef<'_, f32>) {
    const ROWS: usize = 256;
    const DEPTH: usize = 4096;
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    assert_eq!(dst.len(), m * n);
    if m == 0 || n == 0 {
        return;
    }
    if m >= 2 * ROWS {
        dst.par_chunks_mut(ROWS * n).enumerate().for_each(|(c, d)| {
            let rows = d.len() / n;
            let out = MatMut::from_row_major_slice_mut(d, rows, n);
            matmul(
                out,
                Accum::Replace,
                a.subrows(c * ROWS, rows),
                b,
                1.0f32,
                Par::Seq,
            );
        });
    } else if k >= 2 * DEPTH {
        let parts: Vec<Vec<f32>> = (0..k.div_ceil(DEPTH))
            .into_par_iter()
            .map(|c| {
                let (k0, kk) = (c * DEPTH, DEPTH.min(k - c * DEPTH));
                let mut part = vec![0f32; m * n];
                let out = MatMut::from_row_major_slice_mut(&mut part, m, n);
                matmul(
                    out,
                    Accum::Replace,
                    a.subcols(k0, kk),
                    b.subrows(k0, kk),
                    1.0f32,
                    Par::Seq,
                );
                part
            })
            .collect();
        dst.copy_from_slice(&parts[0]);
        for part in &parts[1..] {
            dst.iter_mut().zip(part).for_each(|(x, y)| *x += y);
        }
    } else {
        let out = MatMut::from_row_major_slice_mut(dst, m, n);
        matmul(out, Accum::Replace, a, b, 1.0f32, Par::Seq);
    }
}

/// A matrix known only through products with it (row-major blocks of vectors).
pub trait LinearOperator: Sync {
    /// Number of rows of the matrix.
    fn nrows(&self) -> usize;
    /// Number of columns of the matrix.
    fn ncols(&self) -> usize;
    /// `A . x` for `x` of shape `ncols x l`; returns `nrows x l`.
    fn apply(&self, x: &[f32], l: usize) -> Vec<f32>;
    /// `A^T . y` for `y` of shape `nrows x l`; returns `ncols x l`.
    fn apply_t(&self, y: &[f32], l: usize) -> Vec<f32>;
}

/// Rows of `x` minus `mean`, without forming the centred matrix.
struct Centered<'a> {
    x: &'a [f32],
    n: usize,
    d: usize,
    mean: &'a [f32],
}

impl LinearOperator for Centered<'_> {
    fn nrows(&self) -> usize {
        self.n
    }
    fn ncols(&self) -> usize {
        self.d
    }
    fn apply(&self, v: &[f32], l: usize) -> Vec<f32> {
        let mut out = vec![0f32; self.n * l];
        gemm(
            &mut out,
            MatRef::from_row_major_slice(self.x, self.n, self.d),
            MatRef::from_row_major_slice(v, self.d, l),
        );
        // subtract 1 (mean . v)
        let mut mv = vec![0f64; l];
        for (j, &m) in self.mean.iter().enumerate() {
            for c in 0..l {
                mv[c] += m as f64 * v[j * l + c] as f64;
            }
        }
        out.par_chunks_mut(l)
            .for_each(|row| row.iter_mut().zip(&mv).for_each(|(o, m)| *o -= *m as f32));
        out
    }
    fn apply_t(&self, y: &[f32], l: usize) -> Vec<f32> {
        let mut out = vec![0f32; self.d * l];
        gemm(
            &mut out,
            MatRef::from_row_major_slice(self.x, self.n, self.d).transpose(),
            MatRef::from_row_major_slice(y, self.n, l),
        );
        // subtract mean (1^T y)
        let colsum = column_sums(y, l, |v| v as f64);
        out.par_chunks_mut(l).enumerate().for_each(|(j, row)| {
            let m = self.mean[j] as f64;
            row.iter_mut()
                .zip(&colsum)
                .for_each(|(o, s)| *o -= (m * s) as f32);
        });
        out
    }
}

/// A truncated SVD: `u` (rows x k), `s` (k, descending), `vt` (k x cols), row-major.
#[derive(Debug, Clone)]
pub struct TruncatedSvd {
    /// Number of singular values kept.
    pub k: usize,
    /// Left singular vectors, `rows x k`.
    pub u: Vec<f32>,
    /// Singular values, descending.
    pub s: Vec<f64>,
    /// Right singular vectors, `k x cols`.
    pub vt: Vec<f32>,
}

/// Orthonormal basis of the columns of a row-major `n x l` matrix (Householder QR in f64).
pub fn orthonormalize(y: &[f32], n: usize, l: usize) -> Vec<f32> {
    let m = Mat::<f64>::from_fn(n, l, |i, j| y[i * l + j] as f64);
    let q = m.qr().compute_thin_Q();
    let l2 = q.ncols();
    let mut out = vec![0f32; n * l2];
    for j in 0..l2 {
        let col = q.col(j);
        for i in 0..n {
            out[i * l2 + j] = col[i] as f32;
        }
    }
    out
}

/// Block Krylov SVD (Musco & Musco 2015): the top `k` triplets from the Krylov space
/// `[A W, (A A^T) A W, ..., (A A^T)^depth A W]` of a Gaussian block `W` of `block` columns.
/// For flat spectra (canonical correlations) it converges far faster than power
/// iterations at the same number of products.
pub fn block_krylov_svd(
    op: &impl LinearOperator,
    k: usize,
    block: usize,
    depth: usize,
    seed: u64,
) -> TruncatedSvd {
    let (m, n) = (op.nrows(), op.ncols());
    let k = k.min(m).min(n);
    let b = block.max(k).min(m).min(n);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let omega: Vec<f32> = (0..n * b)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    let mut y = orthonormalize(&op.apply(&omega, b), m, b);
    let mut blocks = vec![y.clone()];
    for _ in 0..depth {
        let z = op.apply_t(&y, b);
        y = orthonormalize(&op.apply(&z, b), m, b);
        blocks.push(y.clone());
    }
    // Q = orth([Y_0 .. Y_depth]) (m x w)
    let mut kry = vec![0f32; m * b * blocks.len()];
    let wide = b * blocks.len();
    for (t, blk) in blocks.iter().enumerate() {
        for i in 0..m {
            kry[i * wide + t * b..i * wide + (t + 1) * b].copy_from_slice(&blk[i * b..(i + 1) * b]);
        }
    }
    let q = orthonormalize(&kry, m, wide);
    let w = q.len() / m.max(1);
    let bt = op.apply_t(&q, w); // n x w
    let btm = Mat::<f64>::from_fn(n, w, |i, j| bt[i * w + j] as f64);
    let svd = btm.thin_svd().expect("SVD of the Krylov projection");
    let (wu, s, z) = (svd.U(), svd.S().column_vector(), svd.V());
    let mut vt = vec![0f32; k * n];
    for c in 0..k {
        for i in 0..n {
            vt[c * n + i] = wu[(i, c)] as f32;
        }
    }
    let zk = Mat::<f32>::from_fn(w, k, |i, j| z[(i, j)] as f32);
    let mut u = vec![0f32; m * k];
    gemm(&mut u, MatRef::from_row_major_slice(&q, m, w), zk.as_ref());
    TruncatedSvd {
        k,
        u,
        s: (0..k).map(|c| s[c]).collect(),
        vt,
    }
}

/// Each component's share of the total variance (all 0 when the total is 0).
pub(crate) fn variance_ratio(variance: &[f64], total_var: f64) -> Vec<f32> {
    variance
        .iter()
        .map(|&v| {
            if total_var > 0.0 {
                (v / total_var) as f32
            } else {
                0.0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    /// Low-rank signal plus noise: `n x d`.
    fn synthetic(n: usize, d: usize, rank: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let f: Vec<f32> = (0..n * rank)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let l: Vec<f32> = (0..rank * d)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let mut x = vec![0f32; n * d];
        for i in 0..n {
            for r in 0..rank {
                let w = f[i * rank + r] * (rank - r) as f32;
                for j in 0..d {
                    x[i * d + j] += w * l[r * d + j];
                }
            }
            for j in 0..d {
                x[i * d + j] += 0.1 * rng.random::<f32>() + 3.0 + j as f32 * 0.01;
            }
        }
        x
    }

    /// Plain f64 reference: eigen of the covariance built element by element.
    fn reference(x: &[f32], n: usize, d: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
        let mean: Vec<f64> = (0..d)
            .map(|j| (0..n).map(|i| x[i * d + j] as f64).sum::<f64>() / n as f64)
            .collect();
        let cov = Mat::<f64>::from_fn(d, d, |a, b| {
            (0..n)
                .map(|i| (x[i * d + a] as f64 - mean[a]) * (x[i * d + b] as f64 - mean[b]))
                .sum::<f64>()
                / (n - 1) as f64
        });
        let e = cov.self_adjoint_eigen(Side::Lower).unwrap();
        let s = e.S().column_vector();
        let vals: Vec<f64> = (0..d).rev().map(|c| s[c]).collect();
        let vecs = (0..d)
            .rev()
            .map(|c| (0..d).map(|j| e.U()[(j, c)]).collect())
            .collect();
        (vals, vecs)
    }

    #[test]
    fn both_solvers_match_a_plain_reference() {
        let (n, d, k) = (400, 60, 5);
        let x = synthetic(n, d, 5, 1);
        let (vals, vecs) = reference(&x, n, d);
        let total: f64 = vals.iter().sum();
        for solver in [Solver::Covariance, Solver::Randomized { n_iter: 7 }] {
            let p = pca_with(&x, n, d, k, 0, solver);
            for c in 0..k {
                let rel = (p.explained_variance[c] as f64 - vals[c]).abs() / vals[c];
                assert!(
                    rel < 1e-4,
                    "{solver:?} variance {c}: {} vs {}",
                    p.explained_variance[c],
                    vals[c]
                );
                assert!((p.explained_variance_ratio[c] as f64 - vals[c] / total).abs() < 1e-5);
                let cos: f64 = (0..d)
                    .map(|j| p.components[c * d + j] as f64 * vecs[c][j])
                    .sum();
                assert!(cos.abs() > 0.9999, "{solver:?} component {c}: |cos| {cos}");
            }
            // scores are the centred data projected
            for i in [0, 17, n - 1] {
                for c in 0..k {
                    let s: f64 = (0..d)
                        .map(|j| (x[i * d + j] - p.mean[j]) as f64 * p.components[c * d + j] as f64)
                        .sum();
                    assert!((p.scores[i * k + c] as f64 - s).abs() < 1e-3 * (1.0 + s.abs()));
                }
            }
        }
    }

    #[test]
    fn signs_are_deterministic_and_sklearn_like() {
        let (n, d) = (300, 40);
        let x = synthetic(n, d, 3, 2);
        let a = pca_with(&x, n, d, 3, 1, Solver::Randomized { n_iter: 7 });
        let b = pca_with(&x, n, d, 3, 99, Solver::Covariance);
        for c in 0..3 {
            let comp = &a.components[c * d..(c + 1) * d];
            let big = comp
                .iter()
                .cloned()
                .fold(0f32, |m, v| if v.abs() > m.abs() { v } else { m });
            assert!(big > 0.0);
            // same sign whatever the solver and seed
            let cos: f32 = comp
                .iter()
                .zip(&b.components[c * d..(c + 1) * d])
                .map(|(p, q)| p * q)
                .sum();
            assert!(cos > 0.999, "component {c}: {cos}");
        }
        let again = pca_with(&x, n, d, 3, 1, Solver::Randomized { n_iter: 7 });
        assert_eq!(a, again);
    }

    #[test]
    fn degenerate_shapes() {
        let x = vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let p = pca(&x, 3, 2, 50, 0);
        assert_eq!(p.k, 2);
        assert_eq!(p.scores.len(), 6);
        let one = pca(&x[..2], 1, 2, 5, 0);
        assert_eq!(one.k, 1);
        assert!(one.explained_variance_ratio.iter().all(|v| v.is_finite()));
    }
}
