//! One pass over all cell pairs that feeds every all-pairs metric at once.
//!
//! Silhouettes need, for every cell, the summed distance to each label and, within its own
//! label, to each batch (Euclidean for the silhouettes, cosine for BRAS); the exact kNN needs
//! every distance too. Computing the n x n distances once, in blocks (dot products by matrix
//! multiplication: `|x|^2 + |y|^2 - 2 x.y`), and reducing each block immediately keeps memory
//! at O(n) and makes the whole set cost one distance matrix instead of four. Each unordered
//! pair is computed once (a block of rows against the columns from its own position on) and
//! credited to both cells.
//!
//! Cells are first ordered by (label, batch) so that every label and every (label, batch)
//! group is a contiguous run of columns and the sums are plain slice sums. Sums from different
//! blocks meet in fixed-point 64-bit integers, whose addition does not depend on the order, so
//! the results are the same for every thread count.
//!
//! kNN: candidates are taken on the block distances (float32) with a safety margin of
//! [`KNN_MARGIN`] extra neighbours, then their distances are recomputed exactly in float64 and
//! re-sorted, so the result is the exact kNN unless more than `KNN_MARGIN` points tie within
//! float32 rounding of the k-th distance. The cell itself comes first at distance 0.

use crate::numerics::neighbors::Knn;
use crate::numerics::simd::multiversion;
use crate::numerics::stats::n_codes;
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;
use std::cmp::Ordering;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering::Relaxed};
use std::sync::Mutex;

/// Extra kNN candidates kept on the float32 pass before the exact float64 re-ranking.
pub const KNN_MARGIN: usize = 8;
/// Rows per block: the matrix product packs a block of columns once per block of rows, so
/// more rows amortise the packing; rows x columns floats (two buffers) stay within L2.
const ROW_BLOCK: usize = 128;
const COL_BLOCK: usize = 1024;
/// Width of the band of neighbouring rows that sets the initial kNN bounds.
const BAND: usize = 2048;

/// What to compute in the pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct Needs {
    /// Per cell, summed Euclidean distance to every label.
    pub label_sums: bool,
    /// Per cell, summed Euclidean distance to every batch, within the cell's own label.
    pub batch_sums: bool,
    /// Per cell, summed cosine distance to every batch, within the cell's own label.
    pub batch_sums_cosine: bool,
    /// Neighbours per cell, self included (0: none).
    pub knn: usize,
}

/// Results, indexed by the original cell order.
#[derive(Debug, Clone, Default)]
pub struct Pairwise {
    /// Number of labels.
    pub n_labels: usize,
    /// Number of batches.
    pub n_batches: usize,
    /// `n x n_labels`.
    pub label_sums: Vec<f64>,
    /// `n x n_batches` (zero for batches outside the cell's label).
    pub batch_sums: Vec<f64>,
    /// `batch_sums` with cosine distances (when needed).
    pub batch_sums_cosine: Vec<f64>,
    /// The kNN graph found in the same pass (when needed).
    pub knn: Option<Knn>,
}

/// A contiguous run of (sorted) cells sharing a key.
#[derive(Debug, Clone, Copy)]
struct Run {
    start: usize,
    end: usize,
    id: usize,
}

/// Runs of equal keys over `range`.
fn runs_of(
    range: std::ops::Range<usize>,
    key: impl Fn(usize) -> (u32, u32),
    id: impl Fn(usize) -> usize,
) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for j in range {
        match out.last_mut() {
            Some(r) if key(r.start) == key(j) => r.end = j + 1,
            _ => out.push(Run {
                start: j,
                end: j + 1,
                id: id(j),
            }),
        }
    }
    out
}

multiversion! {
    /// Sum of f32 values into f64 (16 float32 lanes).
    fn sum32(v: &[f32]) -> f64 {
        let mut acc = [0f32; 16];
        let mut chunks = v.chunks_exact(16);
        for c in &mut chunks {
            for k in 0..16 {
                acc[k] += c[k];
            }
        }
        let tail: f32 = chunks.remainder().iter().sum();
        acc.iter().map(|&a| a as f64).sum::<f64>() + tail as f64
    }

    /// Dot products of one row to squared distances: `max(|x_i|^2 + |x_j|^2 - 2 x_i.x_j, 0)`.
    fn dots_to_sq(row: &mut [f32], sq_i: f32, sq_j: &[f32]) {
        for (v, &s) in row.iter_mut().zip(sq_j) {
            *v = (sq_i + s - 2.0 * *v).max(0.0);
        }
    }

    /// `dst = sqrt(src)`, element-wise.
    fn sqrt_into(dst: &mut [f32], src: &[f32]) {
        for (o, &v) in dst.iter_mut().zip(src) {
            *o = v.sqrt();
        }
    }

    /// `acc += v`, element-wise.
    fn add_into(acc: &mut [f32], v: &[f32]) {
        for (a, &x) in acc.iter_mut().zip(v) {
            *a += x;
        }
    }
}

/// Order-independent (so deterministic) parallel sums: fixed point in 64-bit integers.
struct FixedSums {
    cells: Vec<AtomicI64>,
    scale: f64,
}

impl FixedSums {
    fn new(len: usize, max_total: f64) -> Self {
        // The largest power of two that keeps every total below 2^62.
        let scale = 2f64.powi(((2f64.powi(62) / max_total.max(1.0)).log2().floor() as i32).min(52));
        FixedSums {
            cells: (0..len).map(|_| AtomicI64::new(0)).collect(),
            scale,
        }
    }
    #[inline]
    fn add(&self, at: usize, v: f64) {
        if v != 0.0 {
            self.cells[at].fetch_add((v * self.scale).round() as i64, Relaxed);
        }
    }
    fn into_f64(self) -> Vec<f64> {
        let s = self.scale;
        self.cells
            .into_iter()
            .map(|a| a.into_inner() as f64 / s)
            .collect()
    }
}

/// Total order of kNN candidates: squared distance, then position.
#[inline]
fn cand_cmp(a: &(f32, u32), b: &(f32, u32)) -> Ordering {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
}

/// The best candidates of each row seen so far: an unsorted buffer compacted to the `k`
/// smallest whenever it doubles; `tau` (mirrored in an atomic for lock-free filtering) is the
/// k-th smallest at the last compaction, so nothing above it can still make the cut.
struct Best {
    buf: Vec<(f32, u32)>,
}

fn compact(best: &mut Best, k: usize) -> f32 {
    if best.buf.len() > k {
        best.buf.select_nth_unstable_by(k - 1, cand_cmp);
        best.buf.truncate(k);
    }
    if best.buf.len() == k {
        best.buf
            .iter()
            .map(|c| c.0)
            .fold(f32::NEG_INFINITY, f32::max)
    } else {
        f32::INFINITY
    }
}

/// Add candidates for one row (position `row`) under its block's lock; the buffer is
/// compacted once it holds half as many again as are kept.
fn offer_row(best: &mut Best, tau: &AtomicU32, items: &[(f32, u32)], k: usize) {
    let limit = k + (k / 2).max(8);
    for &c in items {
        best.buf.push(c);
        if best.buf.len() >= limit {
            let t = compact(best, k).min(f32::from_bits(tau.load(Relaxed)));
            tau.store(t.to_bits(), Relaxed);
        }
    }
}

/// Positions `p` with `values[p] <= bounds[p]` (scanned 16 at a time: most blocks have none).
#[inline]
fn below(values: &[f32], bounds: impl Fn(usize) -> f32, mut hit: impl FnMut(usize, f32)) {
    let mut start = 0;
    for chunk in values.chunks(16) {
        let mut any = false;
        for (p, &v) in chunk.iter().enumerate() {
            any |= v <= bounds(start + p);
        }
        if any {
            for (p, &v) in chunk.iter().enumerate() {
                if v <= bounds(start + p) {
                    hit(start + p, v);
                }
            }
        }
        start += chunk.len();
    }
}

/// Upper bounds of each row's `k`-th neighbour distance (squared) before the main pass: the
/// `k`-th smallest distance to a band of [`BAND`] rows around it (in the (label, batch)
/// order those are cells of the same group), slightly inflated against rounding differences
/// between this and the main pass. Candidates above the bound can never be among the `k`
/// nearest, so the main pass skips them from the start. Only the bounds are kept (no
/// candidates), so no pair is offered twice.
fn initial_bounds(xs: &[f32], d: usize, sq: &[f32], k: usize, tau: &[AtomicU32]) {
    let n = sq.len();
    let width = BAND.min(n);
    if width <= k {
        return;
    }
    (0..n.div_ceil(ROW_BLOCK))
        .into_par_iter()
        .with_max_len(1)
        .for_each(|bi| {
            let (r0, r1) = (bi * ROW_BLOCK, ((bi + 1) * ROW_BLOCK).min(n));
            let rows = r1 - r0;
            let c0 = r0.saturating_sub(width / 2).min(n - width);
            let c1 = c0 + width;
            let mut buf = vec![0f32; rows * width];
            {
                let dst = MatMut::from_column_major_slice_mut(&mut buf, width, rows);
                let a = MatRef::from_row_major_slice(&xs[c0 * d..c1 * d], width, d);
                let b = MatRef::from_column_major_slice(&xs[r0 * d..r1 * d], d, rows);
                matmul(dst, Accum::Replace, a, b, 1.0f32, Par::Seq);
            }
            for r in 0..rows {
                let i = r0 + r;
                let row = &mut buf[r * width..(r + 1) * width];
                dots_to_sq(row, sq[i], &sq[c0..c1]);
                if (c0..c1).contains(&i) {
                    row[i - c0] = f32::INFINITY;
                }
                let (_, kth, _) = row.select_nth_unstable_by(k - 1, |a, b| a.total_cmp(b));
                let bound = *kth * (1.0 + 1e-4) + 1e-12;
                tau[i].store(bound.to_bits(), Relaxed);
            }
        });
}

/// Run the pass over `n x d` rows (`x`, row-major); `labels` and `batches` are codes
/// `0..n_labels` / `0..n_batches` (pass all zeros when a grouping is not needed).
pub fn pairwise(x: &[f32], d: usize, labels: &[u32], batches: &[u32], needs: Needs) -> Pairwise {
    let n = labels.len();
    let nl = n_codes(labels);
    let nb = n_codes(batches);
    // Order cells by (label, batch, index).
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (labels[i], batches[i], i));
    let xs: Vec<f32> = order
        .iter()
        .flat_map(|&i| x[i * d..(i + 1) * d].iter().copied())
        .collect();
    let lab: Vec<u32> = order.iter().map(|&i| labels[i]).collect();
    let bat: Vec<u32> = order.iter().map(|&i| batches[i]).collect();
    let label_runs = runs_of(0..n, |j| (lab[j], 0), |j| lab[j] as usize);
    let mut label_range = vec![(0usize, 0usize); nl];
    for r in &label_runs {
        label_range[r.id] = (r.start, r.end);
    }
    let group_runs = runs_of(0..n, |j| (lab[j], bat[j]), |j| bat[j] as usize);
    let mut groups_of_label: Vec<Vec<Run>> = vec![Vec::new(); nl];
    for r in &group_runs {
        groups_of_label[lab[r.start] as usize].push(*r);
    }
    let sq: Vec<f32> = (0..n)
        .map(|i| xs[i * d..(i + 1) * d].iter().map(|v| v * v).sum())
        .collect();
    let inv_norm: Vec<f32> = sq
        .iter()
        .map(|&s| if s > 0.0 { 1.0 / s.sqrt() } else { 0.0 })
        .collect();
    let any_zero_norm = inv_norm.contains(&0.0);
    let k_cand = if needs.knn > 1 {
        (needs.knn - 1 + KNN_MARGIN).min(n.saturating_sub(1))
    } else {
        0
    };

    let max_norm = sq.iter().fold(0f32, |m, &s| m.max(s)).sqrt() as f64;
    let max_total = n as f64 * (2.0 * max_norm).max(2.0) * 1.01;
    let acc_label = FixedSums::new(if needs.label_sums { n * nl } else { 0 }, max_total);
    let acc_batch = FixedSums::new(if needs.batch_sums { n * nb } else { 0 }, max_total);
    let acc_cos = FixedSums::new(if needs.batch_sums_cosine { n * nb } else { 0 }, max_total);
    let n_blocks = n.div_ceil(ROW_BLOCK);
    let best: Vec<Mutex<Vec<Best>>> = (0..n_blocks)
        .map(|b| {
            let rows = ROW_BLOCK.min(n - b * ROW_BLOCK);
            Mutex::new(
                (0..if k_cand > 0 { rows } else { 0 })
                    .map(|_| Best {
                        buf: Vec::with_capacity(2 * k_cand + 8),
                    })
                    .collect(),
            )
        })
        .collect();
    let tau: Vec<AtomicU32> = (0..n)
        .map(|_| AtomicU32::new(f32::INFINITY.to_bits()))
        .collect();
    if k_cand > 0 {
        initial_bounds(&xs, d, &sq, k_cand, &tau);
    }
    // Cosine distance of a pair from its dot product.
    let cosd = |i: usize, j: usize, dot: f32| -> f32 {
        if i == j {
            0.0
        } else if inv_norm[i] == 0.0 || inv_norm[j] == 0.0 {
            1.0
        } else {
            (1.0 - dot * inv_norm[i] * inv_norm[j]).clamp(0.0, 2.0)
        }
    };

    (0..n_blocks)
        .into_par_iter()
        .with_max_len(1)
        .for_each(|bi| {
            let (r0, r1) = (bi * ROW_BLOCK, ((bi + 1) * ROW_BLOCK).min(n));
            let rows = r1 - r0;
            let row_label_runs = runs_of(r0..r1, |j| (lab[j], 0), |j| lab[j] as usize);
            let row_group_runs = runs_of(r0..r1, |j| (lab[j], bat[j]), |j| bat[j] as usize);
            let mut row_label = vec![0f64; if needs.label_sums { rows * nl } else { 0 }];
            let mut row_batch = vec![0f64; if needs.batch_sums { rows * nb } else { 0 }];
            let mut row_cos = vec![
                0f64;
                if needs.batch_sums_cosine {
                    rows * nb
                } else {
                    0
                }
            ];
            let mut buf = vec![0f32; rows * COL_BLOCK]; // dots, then squared distances
            let mut dist = vec![0f32; rows * COL_BLOCK];
            let mut colacc = vec![0f32; COL_BLOCK];
            let mut tmp = vec![0f32; COL_BLOCK];
            let mut per_row: Vec<Vec<(f32, u32)>> = vec![Vec::new(); rows];
            let mut per_col: Vec<Vec<(f32, u32)>> = vec![Vec::new(); COL_BLOCK];
            let rhs = MatRef::from_column_major_slice(&xs[r0 * d..r1 * d], d, rows);
            for c0 in (r0..n).step_by(COL_BLOCK) {
                let c1 = (c0 + COL_BLOCK).min(n);
                let cols = c1 - c0;
                // Pairs with a column before r1 lie in the diagonal square: credited to the row
                // only (the square holds both orders); later columns to both cells.
                let both_from = r1.max(c0);
                {
                    let dst =
                        MatMut::from_column_major_slice_mut(&mut buf[..rows * cols], cols, rows);
                    let a = MatRef::from_row_major_slice(&xs[c0 * d..c1 * d], cols, d);
                    matmul(dst, Accum::Replace, a, rhs, 1.0f32, Par::Seq);
                }
                // Cosine distances within each label (before the dots become distances).
                if needs.batch_sums_cosine {
                    for r in 0..rows {
                        let i = r0 + r;
                        for run in &groups_of_label[lab[i] as usize] {
                            let (s, e) = (run.start.max(c0), run.end.min(c1));
                            if s >= e {
                                continue;
                            }
                            let dots = &buf[r * cols + s - c0..r * cols + e - c0];
                            let v = if any_zero_norm {
                                (s..e).map(|j| cosd(i, j, dots[j - s]) as f64).sum::<f64>()
                            } else {
                                let a = inv_norm[i];
                                let t = &mut tmp[..e - s];
                                for ((o, &dt), &b) in t.iter_mut().zip(dots).zip(&inv_norm[s..e]) {
                                    *o = (1.0 - dt * a * b).clamp(0.0, 2.0);
                                }
                                if (s..e).contains(&i) {
                                    t[i - s] = 0.0;
                                }
                                sum32(t)
                            };
                            row_cos[r * nb + run.id] += v;
                        }
                    }
                    for run in &row_group_runs {
                        let (ls, le) = label_range[lab[run.start] as usize];
                        let (s, e) = (ls.max(both_from), le.min(c1));
                        if s >= e {
                            continue;
                        }
                        let ca = &mut colacc[..e - s];
                        ca.iter_mut().for_each(|v| *v = 0.0);
                        for i in run.start..run.end {
                            let dots = &buf[(i - r0) * cols + s - c0..(i - r0) * cols + e - c0];
                            if any_zero_norm {
                                for (jj, (o, &dt)) in ca.iter_mut().zip(dots).enumerate() {
                                    *o += cosd(i, s + jj, dt);
                                }
                            } else {
                                let a = inv_norm[i];
                                for ((o, &dt), &b) in ca.iter_mut().zip(dots).zip(&inv_norm[s..e]) {
                                    *o += (1.0 - dt * a * b).clamp(0.0, 2.0);
                                }
                            }
                        }
                        for (jj, &v) in ca.iter().enumerate() {
                            acc_cos.add((s + jj) * nb + run.id, v as f64);
                        }
                    }
                }
                // Squared distances.
                for r in 0..rows {
                    dots_to_sq(&mut buf[r * cols..(r + 1) * cols], sq[r0 + r], &sq[c0..c1]);
                }
                if k_cand > 0 {
                    // Row side, then column side, each filtered by the targets' current bounds.
                    for (r, pr) in per_row.iter_mut().enumerate() {
                        let i = r0 + r;
                        let t = f32::from_bits(tau[i].load(Relaxed));
                        below(
                            &buf[r * cols..(r + 1) * cols],
                            |_| t,
                            |jj, d2| {
                                if c0 + jj != i {
                                    pr.push((d2, (c0 + jj) as u32));
                                }
                            },
                        );
                    }
                    {
                        let mut guard = best[bi].lock().expect("kNN lock");
                        for (r, pr) in per_row.iter_mut().enumerate() {
                            offer_row(&mut guard[r], &tau[r0 + r], pr, k_cand);
                            pr.clear();
                        }
                    }
                    if both_from < c1 {
                        let taus: Vec<f32> = (both_from..c1)
                            .map(|j| f32::from_bits(tau[j].load(Relaxed)))
                            .collect();
                        for r in 0..rows {
                            let row = &buf[r * cols + both_from - c0..(r + 1) * cols];
                            below(
                                row,
                                |p| taus[p],
                                |jj, d2| per_col[jj].push((d2, (r0 + r) as u32)),
                            );
                        }
                        let mut j = both_from;
                        while j < c1 {
                            let blk = j / ROW_BLOCK;
                            let end = ((blk + 1) * ROW_BLOCK).min(c1);
                            let mut guard = best[blk].lock().expect("kNN lock");
                            for jj in j..end {
                                let pc = &mut per_col[jj - both_from];
                                if !pc.is_empty() {
                                    offer_row(&mut guard[jj % ROW_BLOCK], &tau[jj], pc, k_cand);
                                    pc.clear();
                                }
                            }
                            j = end;
                        }
                    }
                }
                if !(needs.label_sums || needs.batch_sums) {
                    continue;
                }
                sqrt_into(&mut dist[..rows * cols], &buf[..rows * cols]);
                for r in 0..rows {
                    let i = r0 + r;
                    if (c0..c1).contains(&i) {
                        dist[r * cols + i - c0] = 0.0;
                    }
                }
                let drow =
                    |r: usize, s: usize, e: usize| &dist[r * cols + s - c0..r * cols + e - c0];
                // Row side.
                for r in 0..rows {
                    if needs.label_sums {
                        for run in &label_runs {
                            let (s, e) = (run.start.max(c0), run.end.min(c1));
                            if s < e {
                                row_label[r * nl + run.id] += sum32(drow(r, s, e));
                            }
                        }
                    }
                    if needs.batch_sums {
                        for run in &groups_of_label[lab[r0 + r] as usize] {
                            let (s, e) = (run.start.max(c0), run.end.min(c1));
                            if s < e {
                                row_batch[r * nb + run.id] += sum32(drow(r, s, e));
                            }
                        }
                    }
                }
                // Column side: for each run of rows, the column sums of its distances.
                if both_from < c1 {
                    let mut col_sums = |runs: &[Run],
                                        cols_of: &dyn Fn(&Run) -> (usize, usize),
                                        acc: &FixedSums,
                                        width: usize| {
                        for run in runs {
                            let (s, e) = cols_of(run);
                            let (s, e) = (s.max(both_from), e.min(c1));
                            if s >= e {
                                continue;
                            }
                            let ca = &mut colacc[..e - s];
                            ca.iter_mut().for_each(|v| *v = 0.0);
                            for i in run.start..run.end {
                                add_into(ca, drow(i - r0, s, e));
                            }
                            for (jj, &v) in ca.iter().enumerate() {
                                acc.add((s + jj) * width + run.id, v as f64);
                            }
                        }
                    };
                    if needs.label_sums {
                        col_sums(&row_label_runs, &|_: &Run| (both_from, c1), &acc_label, nl);
                    }
                    if needs.batch_sums {
                        col_sums(
                            &row_group_runs,
                            &|run: &Run| label_range[lab[run.start] as usize],
                            &acc_batch,
                            nb,
                        );
                    }
                }
            }
            for r in 0..rows {
                let i = r0 + r;
                for l in 0..if needs.label_sums { nl } else { 0 } {
                    acc_label.add(i * nl + l, row_label[r * nl + l]);
                }
                for b in 0..if needs.batch_sums { nb } else { 0 } {
                    acc_batch.add(i * nb + b, row_batch[r * nb + b]);
                }
                for b in 0..if needs.batch_sums_cosine { nb } else { 0 } {
                    acc_cos.add(i * nb + b, row_cos[r * nb + b]);
                }
            }
        });

    // Back to the original order.
    let unsort = |v: Vec<f64>, width: usize| -> Vec<f64> {
        let mut out = vec![0f64; v.len()];
        for (p, &i) in order.iter().enumerate() {
            out[i * width..(i + 1) * width].copy_from_slice(&v[p * width..(p + 1) * width]);
        }
        out
    };
    let mut out = Pairwise {
        n_labels: nl,
        n_batches: nb,
        ..Default::default()
    };
    if needs.label_sums {
        out.label_sums = unsort(acc_label.into_f64(), nl);
    }
    if needs.batch_sums {
        out.batch_sums = unsort(acc_batch.into_f64(), nb);
    }
    if needs.batch_sums_cosine {
        out.batch_sums_cosine = unsort(acc_cos.into_f64(), nb);
    }
    if needs.knn > 0 {
        let mut cands: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (bi, blk) in best.into_iter().enumerate() {
            for (r, mut b) in blk.into_inner().expect("kNN lock").into_iter().enumerate() {
                compact(&mut b, k_cand);
                cands[order[bi * ROW_BLOCK + r]] = b
                    .buf
                    .into_iter()
                    .map(|c| order[c.1 as usize] as u32)
                    .collect();
            }
        }
        out.knn = Some(exact_rerank(x, d, &cands, needs.knn));
    }
    out
}

/// Squared Euclidean distance in float64 (four independent sums, so that it vectorises).
#[inline]
fn sq_dist64(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            let t = x[k] as f64 - y[k] as f64;
            acc[k] += t * t;
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Exact float64 distances to the candidates, sorted, the cell itself first at 0.
fn exact_rerank(x: &[f32], d: usize, cands: &[Vec<u32>], k: usize) -> Knn {
    let n = cands.len();
    let k = k.min(n);
    let rows: Vec<(Vec<u32>, Vec<f32>)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let xi = &x[i * d..(i + 1) * d];
            let mut c: Vec<(f64, u32)> = cands[i]
                .iter()
                .map(|&j| {
                    (
                        sq_dist64(xi, &x[j as usize * d..(j as usize + 1) * d]).sqrt(),
                        j,
                    )
                })
                .collect();
            c.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let mut idx = Vec::with_capacity(k);
            let mut dist = Vec::with_capacity(k);
            idx.push(i as u32);
            dist.push(0f32);
            for &(dd, j) in c.iter().take(k - 1) {
                idx.push(j);
                dist.push(dd as f32);
            }
            (idx, dist)
        })
        .collect();
    let mut out = Knn {
        k,
        indices: Vec::with_capacity(n * k),
        distances: Vec::with_capacity(n * k),
    };
    for (i, dd) in rows {
        out.indices.extend(i);
        out.distances.extend(dd);
    }
    out
}

/// The first `k` neighbours of each row of a kNN result.
pub fn truncate(knn: &Knn, k: usize) -> Knn {
    let k = k.min(knn.k);
    let n = knn.n();
    let mut out = Knn {
        k,
        indices: Vec::with_capacity(n * k),
        distances: Vec::with_capacity(n * k),
    };
    for i in 0..n {
        let (idx, dist) = knn.row(i);
        out.indices.extend_from_slice(&idx[..k]);
        out.distances.extend_from_slice(&dist[..k]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numerics::neighbors::{knn, Metric};

    fn data(n: usize, d: usize) -> Vec<f32> {
        let mut s = 12345u64;
        (0..n * d)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    #[test]
    fn sums_and_knn_match_brute_force() {
        // Several row blocks and two column chunks.
        let (n, d) = (2600, 7);
        let x = data(n, d);
        let labels: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
        let batches: Vec<u32> = (0..n).map(|i| ((i / 7) % 2) as u32).collect();
        let p = pairwise(
            &x,
            d,
            &labels,
            &batches,
            Needs {
                label_sums: true,
                batch_sums: true,
                batch_sums_cosine: true,
                knn: 12,
            },
        );
        let dist = |i: usize, j: usize| -> f64 {
            x[i * d..(i + 1) * d]
                .iter()
                .zip(&x[j * d..(j + 1) * d])
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let cosd = |i: usize, j: usize| -> f64 {
            let (a, b) = (&x[i * d..(i + 1) * d], &x[j * d..(j + 1) * d]);
            let ab: f64 = a.iter().zip(b).map(|(p, q)| (p * q) as f64).sum();
            let aa: f64 = a.iter().map(|p| (p * p) as f64).sum();
            let bb: f64 = b.iter().map(|p| (p * p) as f64).sum();
            1.0 - ab / (aa * bb).sqrt()
        };
        for i in [0usize, 17, 123, 299, 1500, 2047, 2048, 2599] {
            for l in 0..3 {
                let want: f64 = (0..n)
                    .filter(|&j| labels[j] == l as u32)
                    .map(|j| dist(i, j))
                    .sum();
                assert!(
                    (p.label_sums[i * 3 + l] - want).abs() < 1e-3 * want.max(1.0),
                    "{i} {l}"
                );
            }
            for b in 0..2 {
                let same = |j: usize| labels[j] == labels[i] && batches[j] == b as u32 && j != i;
                let want: f64 = (0..n).filter(|&j| same(j)).map(|j| dist(i, j)).sum();
                assert!((p.batch_sums[i * 2 + b] - want).abs() < 1e-3 * want.max(1.0));
                let want: f64 = (0..n).filter(|&j| same(j)).map(|j| cosd(i, j)).sum();
                assert!((p.batch_sums_cosine[i * 2 + b] - want).abs() < 1e-3 * want.max(1.0));
            }
        }
        let ours = p.knn.clone().unwrap();
        let brute = knn(&x, d, 12, Metric::Euclidean, true);
        assert_eq!(ours.indices, brute.indices);
        for (a, b) in ours.distances.iter().zip(&brute.distances) {
            assert!((a - b).abs() < 1e-5);
        }
        // Same bits with one thread and with three.
        let needs = Needs {
            label_sums: true,
            batch_sums: true,
            batch_sums_cosine: true,
            knn: 12,
        };
        let run = |t: usize| {
            crate::numerics::with_threads(t, || pairwise(&x, d, &labels, &batches, needs))
        };
        let (a, b) = (run(1), run(3));
        assert_eq!(a.label_sums, b.label_sums);
        assert_eq!(a.batch_sums_cosine, b.batch_sums_cosine);
        assert_eq!(a.knn, b.knn);
    }
}
