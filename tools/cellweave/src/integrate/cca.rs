//! Canonical correlation analysis of two batches as Seurat's `FindIntegrationAnchors` does
//! it (Stuart et al. 2019, "diagonal CCA"): each batch's genes are z-scored within the
//! batch (clipped at 10, Seurat's `ScaleData`), genes constant in either batch are dropped,
//! each cell is then standardised across genes, and the canonical vectors are the top
//! singular vectors of `Z_a Z_b^T` (cells of a x cells of b), found here by randomized SVD
//! without forming that matrix. Cell embeddings are the singular vectors themselves (not
//! scaled by the singular values); gene loadings are the scaled data projected on them
//! (Seurat's `ProjectDim`), used to pick the genes of the anchor filter.

use crate::contract::Csr;
use crate::numerics::blocked::{self, RowSource};
use crate::numerics::pca::{block_krylov_svd, gemm, LinearOperator};
use faer::MatRef;
use rayon::prelude::*;

/// Seurat's `scale.max`.
pub const SCALE_MAX: f32 = 10.0;

/// CCA of two batches.
#[derive(Debug, Clone)]
pub struct Cca {
    /// Canonical vectors computed.
    pub k: usize,
    /// `n_a x k` cell embeddings of batch a (row-major, not normalised).
    pub emb_a: Vec<f32>,
    /// `n_b x k` cell embeddings of batch b.
    pub emb_b: Vec<f32>,
    /// Canonical correlations (singular values), descending.
    pub d: Vec<f64>,
    /// Gene positions (into the input columns) that entered the CCA.
    pub genes: Vec<usize>,
    /// `genes.len() x k` loadings: scaled expression projected on the cell embeddings.
    pub loadings: Vec<f32>,
}

impl Cca {
    /// No canonical vector (no cell or no shared varying gene): empty embeddings and
    /// loadings over `genes`.
    fn none(genes: Vec<usize>) -> Self {
        Cca {
            k: 0,
            emb_a: vec![],
            emb_b: vec![],
            d: vec![],
            genes,
            loadings: vec![],
        }
    }
}

/// Per-gene z-scores within one batch (sd with ddof 1), clipped above at [`SCALE_MAX`];
/// returns the scaled `n x g` matrix and whether each gene varies in this batch.
pub fn scale_genes(x: &[f32], n: usize, g: usize) -> (Vec<f32>, Vec<bool>) {
    let mut sum = vec![0f64; g];
    let mut sq = vec![0f64; g];
    for row in x.chunks(g) {
        for j in 0..g {
            let v = row[j] as f64;
            sum[j] += v;
            sq[j] += v * v;
        }
    }
    let (mean, sd, varies) = finish_gene_stats(&sum, &sq, n);
    let mut out = vec![0f32; n * g];
    out.par_chunks_mut(g)
        .zip(x.par_chunks(g))
        .for_each(|(o, row)| {
            for j in 0..g {
                o[j] = if varies[j] {
                    (((row[j] as f64 - mean[j]) / sd[j]) as f32).min(SCALE_MAX)
                } else {
                    0.0
                };
            }
        });
    (out, varies)
}

/// Keep columns `cols` of a row-major `n x g` matrix.
pub fn select_columns(x: &[f32], g: usize, cols: &[usize]) -> Vec<f32> {
    let m = cols.len();
    let mut out = vec![0f32; x.len() / g.max(1) * m];
    out.par_chunks_mut(m.max(1))
        .zip(x.par_chunks(g.max(1)))
        .for_each(|(o, row)| {
            for (oj, &c) in o.iter_mut().zip(cols) {
                *oj = row[c];
            }
        });
    out
}

/// Standardise each row (mean 0, sd 1 with ddof 1; constant rows become 0).
pub fn standardize_rows(x: &mut [f32], g: usize) {
    if g == 0 {
        return;
    }
    x.par_chunks_mut(g).for_each(standardize_row);
}

/// Standardise one row (see [`standardize_rows`]).
fn standardize_row(row: &mut [f32]) {
    let g = row.len();
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / g as f64;
    let ss = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>();
    let sd = if g > 1 {
        (ss / (g - 1) as f64).sqrt()
    } else {
        0.0
    };
    row.iter_mut().for_each(|v| {
        *v = if sd > 0.0 {
            ((*v as f64 - mean) / sd) as f32
        } else {
            0.0
        }
    });
}

/// `Z_a Z_b^T` as an operator (never formed).
struct CrossProduct<'a> {
    za: &'a [f32],
    zb: &'a [f32],
    n_a: usize,
    n_b: usize,
    g: usize,
}

impl LinearOperator for CrossProduct<'_> {
    fn nrows(&self) -> usize {
        self.n_a
    }
    fn ncols(&self) -> usize {
        self.n_b
    }
    fn apply(&self, x: &[f32], l: usize) -> Vec<f32> {
        // Z_a (Z_b^T x)
        self.through((self.za, self.n_a), (self.zb, self.n_b), x, l)
    }
    fn apply_t(&self, y: &[f32], l: usize) -> Vec<f32> {
        // Z_b (Z_a^T y)
        self.through((self.zb, self.n_b), (self.za, self.n_a), y, l)
    }
}

impl CrossProduct<'_> {
    /// `P (Q^T x)` for row-major `P` (`n_p x g`), `Q` (`n_q x g`) and `x` (`n_q x l`).
    fn through(
        &self,
        (p, n_p): (&[f32], usize),
        (q, n_q): (&[f32], usize),
        x: &[f32],
        l: usize,
    ) -> Vec<f32> {
        let mut t = vec![0f32; self.g * l];
        let qm = MatRef::from_row_major_slice(q, n_q, self.g);
        gemm(
            &mut t,
            qm.transpose(),
            MatRef::from_row_major_slice(x, n_q, l),
        );
        let mut out = vec![0f32; n_p * l];
        let pm = MatRef::from_row_major_slice(p, n_p, self.g);
        gemm(&mut out, pm, MatRef::from_row_major_slice(&t, self.g, l));
        out
    }
}

/// Settings of [`cca`].
#[derive(Debug, Clone, Copy)]
pub struct CcaOptions {
    /// Canonical vectors (Seurat: 30).
    pub k: usize,
    /// Extra columns of the random block (block Krylov SVD).
    pub oversample: usize,
    /// Krylov depth: products with `Z_a Z_b^T Z_b Z_a^T` after the first.
    pub n_iter: usize,
    /// Seed of the random block.
    pub seed: u64,
}

impl Default for CcaOptions {
    fn default() -> Self {
        CcaOptions {
            k: 30,
            oversample: 10,
            n_iter: 3,
            seed: 0,
        }
    }
}

/// CCA of batch a (`n_a x g` log-normalised values, row-major) and batch b (`n_b x g`).
pub fn cca(xa: &[f32], xb: &[f32], g: usize, opts: &CcaOptions) -> Cca {
    let n_a = xa.len().checked_div(g).unwrap_or(0);
    let n_b = xb.len().checked_div(g).unwrap_or(0);
    let (sa, va) = scale_genes(xa, n_a, g);
    let (sb, vb) = scale_genes(xb, n_b, g);
    let genes: Vec<usize> = (0..g).filter(|&j| va[j] && vb[j]).collect();
    let m = genes.len();
    let (sa, sb) = if m == g {
        (sa, sb)
    } else {
        (
            select_columns(&sa, g, &genes),
            select_columns(&sb, g, &genes),
        )
    };
    let k = opts.k.min(n_a).min(n_b).min(m);
    if k == 0 {
        return Cca::none(genes);
    }
    let mut za = sa.clone();
    standardize_rows(&mut za, m);
    let mut zb = sb.clone();
    standardize_rows(&mut zb, m);
    let op = CrossProduct {
        za: &za,
        zb: &zb,
        n_a,
        n_b,
        g: m,
    };
    let svd = block_krylov_svd(&op, k, k + opts.oversample, opts.n_iter, opts.seed);
    drop((za, zb));
    let (emb_a, emb_b) = embeddings(svd.u, &svd.vt, n_b, k);
    // loadings = S_a^T E_a + S_b^T E_b (genes x k)
    let mut la = vec![0f32; m * k];
    gemm(
        &mut la,
        MatRef::from_row_major_slice(&sa, n_a, m).transpose(),
        MatRef::from_row_major_slice(&emb_a, n_a, k),
    );
    let mut lb = vec![0f32; m * k];
    gemm(
        &mut lb,
        MatRef::from_row_major_slice(&sb, n_b, m).transpose(),
        MatRef::from_row_major_slice(&emb_b, n_b, k),
    );
    let loadings = la.iter().zip(&lb).map(|(x, y)| x + y).collect();
    Cca {
        k,
        emb_a,
        emb_b,
        d: svd.s,
        genes,
        loadings,
    }
}

/// Cell embeddings from the SVD of `Z_a Z_b^T`: `u` (`n_a x k`) and `vt` (`k x n_b`)
/// transposed, with Seurat's sign rule (the first cell of batch a is non-negative on every
/// vector).
fn embeddings(u: Vec<f32>, vt: &[f32], n_b: usize, k: usize) -> (Vec<f32>, Vec<f32>) {
    let mut emb_a = u; // n_a x k
    let mut emb_b = vec![0f32; n_b * k]; // vt is k x n_b
    for c in 0..k {
        for i in 0..n_b {
            emb_b[i * k + c] = vt[c * n_b + i];
        }
    }
    for c in 0..k {
        if emb_a[c] < 0.0 {
            emb_a.iter_mut().skip(c).step_by(k).for_each(|v| *v = -*v);
            emb_b.iter_mut().skip(c).step_by(k).for_each(|v| *v = -*v);
        }
    }
    (emb_a, emb_b)
}

/// Per-gene mean and sd (ddof 1) of some rows of a CSR matrix, and whether each gene varies,
/// as [`scale_genes`] computes them on the dense rows (the same f64 sums: zeros add nothing).
fn gene_stats(x: &Csr, rows: &[usize]) -> (Vec<f64>, Vec<f64>, Vec<bool>) {
    let g = x.n_cols;
    let n = rows.len();
    let mut sum = vec![0f64; g];
    let mut sq = vec![0f64; g];
    for &r in rows {
        let (idx, val) = x.row(r);
        for (&c, &v) in idx.iter().zip(val) {
            let v = v as f64;
            sum[c as usize] += v;
            sq[c as usize] += v * v;
        }
    }
    finish_gene_stats(&sum, &sq, n)
}

/// Per-gene mean, sd (ddof 1) and whether the gene varies, from the sums and sums of
/// squares of `n` rows.
fn finish_gene_stats(sum: &[f64], sq: &[f64], n: usize) -> (Vec<f64>, Vec<f64>, Vec<bool>) {
    let mean: Vec<f64> = sum.iter().map(|s| s / n.max(1) as f64).collect();
    let sd: Vec<f64> = mean
        .iter()
        .zip(sq)
        .map(|(&m, &q)| {
            if n > 1 {
                ((q - n as f64 * m * m) / (n - 1) as f64).max(0.0).sqrt()
            } else {
                0.0
            }
        })
        .collect();
    // "varies": a relative tolerance so that float noise on a constant gene does not count
    let varies = (0..mean.len())
        .map(|j| sd[j] > 1e-6 * (1.0 + mean[j].abs()))
        .collect();
    (mean, sd, varies)
}

/// One batch's scaled rows (`S`, genes z-scored and clipped, the CCA's genes only) or their
/// row-standardised version (`Z`), produced a block at a time from the CSR matrix.
struct ScaledRows<'a> {
    x: &'a Csr,
    rows: &'a [usize],
    mean: Vec<f64>,
    sd: Vec<f64>,
    /// input column -> position among the CCA's genes (`u32::MAX`: not used)
    pos: Vec<u32>,
    /// the scaled value of a zero, per CCA gene
    at_zero: Vec<f32>,
    /// standardise each row (Z) or not (S)
    standardize: bool,
}

impl<'a> ScaledRows<'a> {
    fn new(x: &'a Csr, rows: &'a [usize], stats: (Vec<f64>, Vec<f64>), genes: &[usize]) -> Self {
        let (mean, sd) = stats;
        let mut pos = vec![u32::MAX; x.n_cols];
        for (t, &j) in genes.iter().enumerate() {
            pos[j] = t as u32;
        }
        let at_zero = genes
            .iter()
            .map(|&j| (((0.0 - mean[j]) / sd[j]) as f32).min(SCALE_MAX))
            .collect();
        ScaledRows {
            x,
            rows,
            mean,
            sd,
            pos,
            at_zero,
            standardize: true,
        }
    }
}

impl RowSource for ScaledRows<'_> {
    fn n_rows(&self) -> usize {
        self.rows.len()
    }
    fn n_cols(&self) -> usize {
        self.at_zero.len()
    }
    fn fill(&self, start: usize, out: &mut [f32]) {
        let m = self.at_zero.len();
        if m == 0 {
            return;
        }
        for (o, &r) in out.chunks_mut(m).zip(&self.rows[start..]) {
            o.copy_from_slice(&self.at_zero);
            let (idx, val) = self.x.row(r);
            for (&c, &v) in idx.iter().zip(val) {
                let c = c as usize;
                let t = self.pos[c];
                if t != u32::MAX {
                    o[t as usize] =
                        (((v as f64 - self.mean[c]) / self.sd[c]) as f32).min(SCALE_MAX);
                }
            }
            if self.standardize {
                standardize_row(o);
            }
        }
    }
}

/// `Z_a Z_b^T` of two [`ScaledRows`] sources (never formed, nor Z).
struct CrossRows<'a> {
    a: &'a ScaledRows<'a>,
    b: &'a ScaledRows<'a>,
}

impl LinearOperator for CrossRows<'_> {
    fn nrows(&self) -> usize {
        self.a.n_rows()
    }
    fn ncols(&self) -> usize {
        self.b.n_rows()
    }
    fn apply(&self, x: &[f32], l: usize) -> Vec<f32> {
        let t = blocked::apply_t(self.b, x, l);
        blocked::apply(self.a, MatRef::from_row_major_slice(&t, self.a.n_cols(), l))
    }
    fn apply_t(&self, y: &[f32], l: usize) -> Vec<f32> {
        let t = blocked::apply_t(self.a, y, l);
        blocked::apply(self.b, MatRef::from_row_major_slice(&t, self.b.n_cols(), l))
    }
}

/// [`cca`] of rows `rows_a` and `rows_b` of a log-normalised CSR matrix without their dense
/// copies: the scaled and standardised rows are made a block at a time inside each product
/// ([`crate::numerics::blocked`]), so memory is `O(nnz + n x k)`. The same scaling and the
/// same Krylov method as [`cca`]; products sum in another order, so results agree within
/// float rounding.
pub fn cca_csr(x: &Csr, rows_a: &[usize], rows_b: &[usize], opts: &CcaOptions) -> Cca {
    let g = x.n_cols;
    let (n_a, n_b) = (rows_a.len(), rows_b.len());
    let (mean_a, sd_a, va) = gene_stats(x, rows_a);
    let (mean_b, sd_b, vb) = gene_stats(x, rows_b);
    let genes: Vec<usize> = (0..g).filter(|&j| va[j] && vb[j]).collect();
    let m = genes.len();
    let k = opts.k.min(n_a).min(n_b).min(m);
    if k == 0 {
        return Cca::none(genes);
    }
    let mut za = ScaledRows::new(x, rows_a, (mean_a, sd_a), &genes);
    let mut zb = ScaledRows::new(x, rows_b, (mean_b, sd_b), &genes);
    let op = CrossRows { a: &za, b: &zb };
    let svd = blocked::krylov_svd(&op, k, k + opts.oversample, opts.n_iter, opts.seed, true);
    let (emb_a, emb_b) = embeddings(svd.u, &svd.vt, n_b, k);
    // loadings = S_a^T E_a + S_b^T E_b (genes x k)
    za.standardize = false;
    zb.standardize = false;
    let la = blocked::apply_t(&za, &emb_a, k);
    let lb = blocked::apply_t(&zb, &emb_b, k);
    let loadings = la.iter().zip(&lb).map(|(x, y)| x + y).collect();
    Cca {
        k,
        emb_a,
        emb_b,
        d: svd.s,
        genes,
        loadings,
    }
}

/// R's `round()` (halves to even), which Seurat's balanced `Top` uses.
fn round_half_even(x: f64) -> usize {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && (r as i64) % 2 != 0 {
        (r - 1.0) as usize
    } else {
        r as usize
    }
}

/// Seurat's `TopDimFeatures`: for each of the `k` dimensions take the `round(y/2)` genes
/// with the highest and the `round(y/2)` with the lowest loading, for the largest `y`
/// (at most `per_dim`) whose union over dimensions has fewer than
/// `max(max_features, 2k)` genes. `loadings` is `n_genes x k`; returns gene rows
/// (ascending). Ties in loading keep the lower gene first.
pub fn top_dim_features(
    loadings: &[f32],
    n_genes: usize,
    k: usize,
    per_dim: usize,
    max_features: usize,
) -> Vec<usize> {
    if n_genes == 0 || k == 0 {
        return vec![];
    }
    let max_features = max_features.max(2 * k);
    // genes of each dimension ordered by decreasing loading (stable)
    let orders: Vec<Vec<usize>> = (0..k)
        .map(|c| {
            let mut o: Vec<usize> = (0..n_genes).collect();
            o.sort_by(|&x, &y| loadings[y * k + c].total_cmp(&loadings[x * k + c]));
            o
        })
        .collect();
    let union = |y: usize| -> Vec<usize> {
        let num = round_half_even(y as f64 / 2.0).min(n_genes);
        let mut set = vec![false; n_genes];
        for o in &orders {
            for &gene in o.iter().take(num) {
                set[gene] = true;
            }
            for &gene in o.iter().rev().take(num) {
                set[gene] = true;
            }
        }
        (0..n_genes).filter(|&gene| set[gene]).collect()
    };
    // sizes grow with y: the largest y with fewer than max_features genes
    let mut best = union(1);
    for y in 2..=per_dim {
        let u = union(y);
        if u.len() >= max_features {
            break;
        }
        if u.len() > best.len() {
            best = u;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::{Distribution, StandardNormal};

    #[test]
    fn scaling_and_standardising() {
        let x = vec![1.0, 5.0, 2.0, 3.0, 5.0, 4.0, 5.0, 5.0, 6.0];
        let (s, v) = scale_genes(&x, 3, 3);
        assert_eq!(v, vec![true, false, true]);
        // gene 0: values 1,3,5 -> mean 3, sd 2 -> -1,0,1
        assert!((s[0] + 1.0).abs() < 1e-6 && s[3].abs() < 1e-6 && (s[6] - 1.0).abs() < 1e-6);
        assert_eq!(s[1], 0.0);
        let mut r = vec![1.0, 2.0, 3.0, 4.0, 4.0, 4.0];
        standardize_rows(&mut r, 3);
        assert_eq!(r, vec![-1.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        // clipping at 10
        let mut big = vec![0f32; 200];
        big[0] = 100.0;
        let (s, _) = scale_genes(&big, 200, 1);
        assert_eq!(s[0], SCALE_MAX);
    }

    #[test]
    fn canonical_vectors_match_a_dense_svd() {
        // Two batches sharing 3 cell states, different gene offsets (the batch effect).
        let (g, n_a, n_b) = (40, 150, 120);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let states: Vec<f32> = (0..3 * g).map(|_| 2.0 * rng.random::<f32>()).collect();
        let mut make = |n: usize, shift: f32| -> Vec<f32> {
            (0..n)
                .flat_map(|i| {
                    let s = i % 3;
                    (0..g)
                        .map(|j| {
                            let e: f32 = StandardNormal.sample(&mut rng);
                            (states[s * g + j] + shift * (j % 5) as f32 + 0.3 * e).max(0.0)
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let xa = make(n_a, 0.0);
        let xb = make(n_b, 0.7);
        let k = 5;
        let c = cca(
            &xa,
            &xb,
            g,
            &CcaOptions {
                k,
                oversample: 10,
                n_iter: 6,
                seed: 1,
            },
        );
        // dense reference: SVD of Z_a Z_b^T in f64
        let (sa, _) = scale_genes(&xa, n_a, g);
        let (sb, _) = scale_genes(&xb, n_b, g);
        let (mut za, mut zb) = (
            select_columns(&sa, g, &c.genes),
            select_columns(&sb, g, &c.genes),
        );
        let m = c.genes.len();
        standardize_rows(&mut za, m);
        standardize_rows(&mut zb, m);
        let mat = faer::Mat::<f64>::from_fn(n_a, n_b, |i, j| {
            (0..m)
                .map(|t| za[i * m + t] as f64 * zb[j * m + t] as f64)
                .sum::<f64>()
        });
        let svd = mat.thin_svd().unwrap();
        let s = svd.S().column_vector();
        for t in 0..k {
            assert!(
                (c.d[t] - s[t]).abs() / s[t] < 1e-3,
                "singular value {t}: {} vs {}",
                c.d[t],
                s[t]
            );
        }
        // the leading vectors (well separated singular values) agree up to sign
        for t in 0..2 {
            let cos: f64 = (0..n_a)
                .map(|i| c.emb_a[i * k + t] as f64 * svd.U()[(i, t)])
                .sum();
            assert!(cos.abs() > 0.999, "vector {t}: {cos}");
        }
        // Seurat's sign rule
        assert!((0..k).all(|t| c.emb_a[t] >= 0.0));
    }

    #[test]
    fn cca_of_csr_rows_matches_the_dense_cca() {
        // sparse data (zeros after the shift), rows of two batches interleaved in the matrix
        let (g, n) = (40, 1300);
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let states: Vec<f32> = (0..3 * g)
            .map(|_| 2.0 * rng.random::<f32>() - 0.6)
            .collect();
        let mut x = vec![0f32; n * g];
        for i in 0..n {
            let shift = if i % 2 == 0 { 0.0 } else { 0.5 };
            for j in 0..g {
                let e: f32 = StandardNormal.sample(&mut rng);
                x[i * g + j] =
                    (states[(i % 3) * g + j] + shift * (j % 5) as f32 + 0.4 * e).max(0.0);
            }
        }
        // gene 7 constant (zero) in batch b: dropped by both
        for i in (1..n).step_by(2) {
            x[i * g + 7] = 0.0;
        }
        let csr = Csr::from_dense(n, g, &x);
        assert!(csr.nnz() < n * g * 9 / 10, "the data should be sparse");
        let rows_a: Vec<usize> = (0..n).step_by(2).collect();
        let rows_b: Vec<usize> = (1..n).step_by(2).take(500).collect();
        let opts = CcaOptions {
            k: 5,
            oversample: 10,
            n_iter: 4,
            seed: 2,
        };
        let want = cca(
            &csr.to_dense_rows(&rows_a),
            &csr.to_dense_rows(&rows_b),
            g,
            &opts,
        );
        let got = cca_csr(&csr, &rows_a, &rows_b, &opts);
        assert_eq!(got.genes, want.genes);
        assert!(!got.genes.contains(&7));
        assert_eq!(got.k, want.k);
        let k = got.k;
        for t in 0..k {
            assert!(
                (got.d[t] - want.d[t]).abs() <= 1e-4 * want.d[t],
                "{t}: {:?} vs {:?}",
                got.d,
                want.d
            );
        }
        // the leading vectors (well separated) agree, same signs (Seurat's rule)
        for t in 0..2 {
            let cos = |p: &[f32], q: &[f32]| -> f64 {
                let dot: f64 = (0..p.len() / k)
                    .map(|i| p[i * k + t] as f64 * q[i * k + t] as f64)
                    .sum();
                let n1: f64 = (0..p.len() / k)
                    .map(|i| (p[i * k + t] as f64).powi(2))
                    .sum();
                let n2: f64 = (0..q.len() / k)
                    .map(|i| (q[i * k + t] as f64).powi(2))
                    .sum();
                dot / (n1 * n2).sqrt()
            };
            assert!(cos(&got.emb_a, &want.emb_a) > 0.9999, "emb_a {t}");
            assert!(cos(&got.emb_b, &want.emb_b) > 0.9999, "emb_b {t}");
            assert!(cos(&got.loadings, &want.loadings) > 0.9999, "loadings {t}");
        }
    }

    #[test]
    fn top_features_follow_seurat() {
        assert_eq!(round_half_even(0.5), 0);
        assert_eq!(round_half_even(1.5), 2);
        assert_eq!(round_half_even(2.5), 2);
        assert_eq!(round_half_even(3.0), 3);
        // 10 genes, 1 dimension with loadings 0..9: y=2 -> top 1 + bottom 1, ...
        let l: Vec<f32> = (0..10).map(|x| x as f32).collect();
        // max_features 5 (raised to 2k = 2): largest union below 5 has 4 genes (y=4: 2+2)
        assert_eq!(top_dim_features(&l, 10, 1, 100, 5), vec![0, 1, 8, 9]);
    }
}
