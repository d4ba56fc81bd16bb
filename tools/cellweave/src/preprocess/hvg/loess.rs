//! One-predictor local quadratic regression (loess) as computed by the dloess library that
//! scikit-misc wraps (`loess(x, y, span, degree=2)`, gaussian family, default
//! `surface="interpolate"`, `cell=0.2`), used by the `seurat_v3` flavor.
//!
//! The fitted values are not local fits at every point: dloess builds a k-d tree over x
//! (here a set of split points), fits the local quadratic at the tree's vertices (value and
//! slope), and evaluates the fit at each x by cubic Hermite interpolation between the two
//! vertices of its cell. This module follows that construction:
//! - the neighbourhood of a point q is the `floor(n*span + 1e-5)` nearest x; `h` their
//!   largest distance; weights tricube(|x-q|/h); weighted least squares on 1, (x-q), (x-q)^2
//!   (a minimum-norm solution when the fit is singular);
//! - the vertices start as the data range widened by 0.5% on each side; a cell with more
//!   than `floor(n*span*cell)` points is split at its median point (moving to the nearest
//!   position between two different values when the median is tied, as dloess since 2006);
//!   a cell whose split point would fall on its boundary stays a leaf;
//! - a point on a split goes to the lower cell.
//!
//! The least-squares solve differs from dloess' QR + SVD in rounding only (about 1e-13).

use crate::{bail, Result};

/// dloess' default `cell`.
const CELL: f64 = 0.2;

/// Value and slope of the local quadratic fit at `q` (`xs` sorted ascending).
fn local_fit(xs: &[f64], ys: &[f64], q: f64, nf: usize) -> (f64, f64) {
    let n = xs.len();
    // the nf nearest points form a contiguous window of the sorted x
    let mut lo = xs.partition_point(|&x| x < q);
    let mut hi = lo; // window [lo, hi)
    while hi - lo < nf {
        let take_left = if lo == 0 {
            false
        } else if hi == n {
            true
        } else {
            (q - xs[lo - 1]).powi(2) <= (xs[hi] - q).powi(2)
        };
        if take_left {
            lo -= 1;
        } else {
            hi += 1;
        }
    }
    let rho = (xs[lo] - q).powi(2).max((xs[hi - 1] - q).powi(2));
    let scale = rho.sqrt();
    // normal equations in u = (x - q) / scale
    let mut a = [[0f64; 3]; 3];
    let mut b = [0f64; 3];
    for i in lo..hi {
        let d2 = (xs[i] - q).powi(2);
        let r = (d2 / rho).sqrt();
        let w = (1.0 - r * r * r).powi(3);
        if w <= 0.0 {
            continue;
        }
        let u = (xs[i] - q) / scale;
        let basis = [1.0, u, u * u];
        for j in 0..3 {
            b[j] += w * basis[j] * ys[i];
            for k in 0..3 {
                a[j][k] += w * basis[j] * basis[k];
            }
        }
    }
    let coef = solve_min_norm(a, b);
    (coef[0], coef[1] / scale)
}

/// Minimum-norm solution of the symmetric positive semi-definite system `a c = b`
/// (after equilibration; eigenvalues below `(100 eps)^2` of the largest are dropped,
/// as dloess drops singular values below `100 eps` of the largest).
fn solve_min_norm(mut a: [[f64; 3]; 3], mut b: [f64; 3]) -> [f64; 3] {
    let mut s = [1f64; 3];
    for j in 0..3 {
        if a[j][j] > 0.0 {
            s[j] = a[j][j].sqrt();
        }
    }
    for j in 0..3 {
        b[j] /= s[j];
        for k in 0..3 {
            a[j][k] /= s[j] * s[k];
        }
    }
    let (vals, vecs) = jacobi_eigen(a);
    let top = vals.iter().cloned().fold(0f64, f64::max);
    let tol = top * (100.0 * f64::EPSILON).powi(2);
    let mut c = [0f64; 3];
    for e in 0..3 {
        if vals[e] <= tol || vals[e] <= 0.0 {
            continue;
        }
        let proj: f64 = (0..3).map(|j| vecs[j][e] * b[j]).sum::<f64>() / vals[e];
        for j in 0..3 {
            c[j] += vecs[j][e] * proj;
        }
    }
    for j in 0..3 {
        c[j] /= s[j];
    }
    c
}

/// Eigen-decomposition of a symmetric 3x3 matrix (cyclic Jacobi): eigenvalues and
/// eigenvectors as columns.
#[allow(clippy::needless_range_loop)]
fn jacobi_eigen(mut a: [[f64; 3]; 3]) -> ([f64; 3], [[f64; 3]; 3]) {
    let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for _sweep in 0..50 {
        let off = a[0][1].abs() + a[0][2].abs() + a[1][2].abs();
        if off == 0.0 {
            break;
        }
        for (p, q) in [(0, 1), (0, 2), (1, 2)] {
            if a[p][q] == 0.0 {
                continue;
            }
            let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
            let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
            let t = if theta == 0.0 { 1.0 } else { t };
            let c = 1.0 / (t * t + 1.0).sqrt();
            let s = t * c;
            for k in 0..3 {
                let (akp, akq) = (a[k][p], a[k][q]);
                a[k][p] = c * akp - s * akq;
                a[k][q] = s * akp + c * akq;
            }
            for k in 0..3 {
                let (apk, aqk) = (a[p][k], a[q][k]);
                a[p][k] = c * apk - s * aqk;
                a[q][k] = s * apk + c * aqk;
            }
            for row in v.iter_mut() {
                let (vkp, vkq) = (row[p], row[q]);
                row[p] = c * vkp - s * vkq;
                row[q] = s * vkp + c * vkq;
            }
        }
    }
    ([a[0][0], a[1][1], a[2][2]], v)
}

/// The split points and cells of dloess' k-d tree over sorted `xs`: returns the vertex
/// positions (sorted; the first and last are the widened data range).
fn vertices(xs: &[f64], fc: usize) -> Vec<f64> {
    let n = xs.len();
    let (mn, mx) = (xs[0], xs[n - 1]);
    let mu = 0.005 * (mx - mn).max(1e-10 * mn.abs().max(mx.abs()) + 1e-30);
    let mut verts = vec![mn - mu, mx + mu];
    let limit = n.max(200); // dloess' nvmax = ncmax
                            // cells: (l, u) 1-based inclusive ranges of sorted points, with their bounds
    let mut cells = vec![(1usize, n, mn - mu, mx + mu)];
    let mut p = 0;
    let mut n_cells = 1;
    let x1 = |i: usize| xs[i - 1];
    while p < cells.len() {
        let (l, u, vlo, vhi) = cells[p];
        p += 1;
        if u < l || u - l < fc || limit < n_cells + 2 || limit <= verts.len() {
            continue;
        }
        let mut m = (l + u) / 2;
        let mut offset: i64 = 0;
        loop {
            let mo = m as i64 + offset;
            if mo >= u as i64 || mo < l as i64 {
                break;
            }
            let mo = mo as usize;
            if x1(mo) == x1(mo + 1) {
                offset = -offset;
                if offset >= 0 {
                    offset += 1;
                }
            } else {
                m = mo;
                break;
            }
        }
        let xi = x1(m);
        if vlo == xi || vhi == xi {
            continue;
        }
        verts.push(xi);
        cells.push((l, m, vlo, xi));
        cells.push((m + 1, u, xi, vhi));
        n_cells += 2;
    }
    verts.sort_by(|a, b| a.total_cmp(b));
    verts
}

/// Fitted values of loess(x, y, span, degree 2) at every x, in input order.
pub fn fit(x: &[f64], y: &[f64], span: f64) -> Result<Vec<f64>> {
    let n = x.len();
    if n != y.len() {
        bail!("loess: {} x values but {} y values", n, y.len());
    }
    if x.iter().chain(y).any(|v| !v.is_finite()) {
        bail!("loess: non-finite input");
    }
    let nf = n.min((n as f64 * span + 1e-5).floor() as usize);
    if nf < 4 {
        bail!("loess: span {span} leaves {nf} points per local fit among {n} (need at least 4)");
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let xs: Vec<f64> = order.iter().map(|&i| x[i]).collect();
    let ys: Vec<f64> = order.iter().map(|&i| y[i]).collect();
    let fc = (n as f64 * (span * CELL)).floor() as usize;
    let verts = vertices(&xs, fc);
    let vals: Vec<(f64, f64)> = verts.iter().map(|&q| local_fit(&xs, &ys, q, nf)).collect();
    Ok(x.iter()
        .map(|&z| {
            // the cell [verts[k], verts[k+1]] holding z; a point on a split goes low
            let k = verts.partition_point(|&v| v < z).clamp(1, verts.len() - 1) - 1;
            let (v0, v1) = (verts[k], verts[k + 1]);
            let (g0, d0) = vals[k];
            let (g1, d1) = vals[k + 1];
            let w = v1 - v0;
            let h = (z - v0) / w;
            let phi0 = (1.0 - h).powi(2) * (1.0 + 2.0 * h);
            let phi1 = h * h * (3.0 - 2.0 * h);
            let psi0 = h * (1.0 - h).powi(2);
            let psi1 = h * h * (h - 1.0);
            phi0 * g0 + phi1 * g1 + (psi0 * d0 + psi1 * d1) * w
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproduces_a_quadratic_exactly() {
        let x: Vec<f64> = (0..300)
            .map(|i| (i as f64 * 0.37).sin() * 3.0 + i as f64 * 0.01)
            .collect();
        let y: Vec<f64> = x.iter().map(|&v| 1.5 - 0.3 * v + 0.2 * v * v).collect();
        let f = fit(&x, &y, 0.3).unwrap();
        for (a, b) in f.iter().zip(&y) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
    }

    #[test]
    fn smooths_noise_towards_the_trend() {
        // deterministic pseudo-noise around a line
        let x: Vec<f64> = (0..2000).map(|i| i as f64 / 100.0).collect();
        let y: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| 2.0 * v + ((i * 7919) % 101) as f64 / 101.0 - 0.5)
            .collect();
        let f = fit(&x, &y, 0.3).unwrap();
        let err: f64 = f
            .iter()
            .zip(&x)
            .map(|(a, &v)| (a - 2.0 * v).abs())
            .sum::<f64>()
            / x.len() as f64;
        assert!(err < 0.05, "mean abs error from the trend {err}");
    }

    #[test]
    fn tied_medians_split_between_different_values() {
        let mut xs = vec![1.0; 50];
        xs.extend((0..50).map(|i| 2.0 + i as f64));
        let v = vertices(&xs, 10);
        assert!(v.windows(2).all(|w| w[0] < w[1]));
        assert!(
            v.contains(&1.0),
            "a split at the end of the tied run: {v:?}"
        );
    }

    #[test]
    fn rejects_too_few_points() {
        assert!(fit(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0], 0.3).is_err());
    }
}
