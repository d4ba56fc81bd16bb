//! Batch-styles standardization (BSS; Scalbert et al., ICLR 2024) adapted to expression
//! vectors: an augmentation of CLAIRE's views that gives every view of a minibatch one
//! batch "style", so that negatives share a style and positives differ in style.
//!
//! - [`Augment::Bss`]: per view (each half of the `2B` rows), pick a reference batch `b*`
//!   among the batches present in that half and map every row of batch `b` to
//!   `x' = mu_b* + sigma_b* / sigma_b (x - mu_b)` (per-gene mean and standard deviation of
//!   the half's rows of each batch), blended with `x` by `lambda ~ U(0, 1)` per row.
//! - [`Augment::BssRank`] (needs no batch labels): per view, pick an anchor row; every row's
//!   values become `(1 - lambda) own_sorted[rank] + lambda anchor_sorted[rank]` at each
//!   gene's rank, `lambda ~ U(0, 1)` per row: the gene ranks are kept (a sum of two sorted
//!   profiles is sorted), the value profile moves towards the anchor's.
//!
//! The draws come from a stream of their own, so `--augment none` leaves every other draw
//! (and CLAIRE's output) unchanged.

use crate::rng::Rng;
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// CLAIRE's view augmentation (`cellweave-train --model claire --augment`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Augment {
    /// Mix-up views only (CLAIRE)
    #[default]
    None,
    /// Standardize each view to one batch's per-gene style (mean, sd), blended by U(0, 1)
    Bss,
    /// Label-free: mix each cell's sorted value profile with an anchor cell's, keeping ranks
    BssRank,
}

/// Smallest standard deviation divided by (a batch with one row, or a constant gene).
const MIN_SD: f32 = 1e-6;

/// Augment the views in `buf` (`2B x g`, rows of view 1 then view 2) in place; `batch[r]`
/// is row `r`'s batch (used by [`Augment::Bss`] only).
pub fn augment(kind: Augment, buf: &mut [f32], g: usize, batch: &[u32], rng: &mut Rng) {
    if kind == Augment::None || g == 0 {
        return;
    }
    let rows = buf.len() / g;
    let half = rows / 2;
    for (v, part) in buf.chunks_mut(half * g).take(2).enumerate() {
        let b = &batch[v * half..(v + 1) * half];
        match kind {
            Augment::Bss => standardize(part, g, b, rng),
            Augment::BssRank => rank_mix(part, g, rng),
            Augment::None => {}
        }
    }
}

/// Per-gene mean and standard deviation (population) of the rows of `x` in `rows`.
fn moments(x: &[f32], g: usize, rows: &[usize]) -> (Vec<f32>, Vec<f32>) {
    let n = rows.len().max(1) as f64;
    let mut mean = vec![0f64; g];
    for &r in rows {
        for (m, &v) in mean.iter_mut().zip(&x[r * g..(r + 1) * g]) {
            *m += v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0f64; g];
    for &r in rows {
        for ((s, &v), &m) in var.iter_mut().zip(&x[r * g..(r + 1) * g]).zip(&mean) {
            *s += (v as f64 - m).powi(2);
        }
    }
    let sd = var.iter().map(|s| (s / n).sqrt() as f32).collect();
    (mean.iter().map(|&m| m as f32).collect(), sd)
}

/// BSS on one view (`x`: its rows, `batch`: their batches).
fn standardize(x: &mut [f32], g: usize, batch: &[u32], rng: &mut Rng) {
    let mut present: Vec<u32> = batch.to_vec();
    present.sort_unstable();
    present.dedup();
    if present.is_empty() {
        return;
    }
    let reference = rng.pick(&present);
    let rows_of = |b: u32| -> Vec<usize> { (0..batch.len()).filter(|&r| batch[r] == b).collect() };
    let (mu_ref, sd_ref) = moments(x, g, &rows_of(reference));
    let lambdas: Vec<f32> = (0..batch.len()).map(|_| rng.f32()).collect();
    for &b in &present {
        let rows = rows_of(b);
        let (mu, sd) = moments(x, g, &rows);
        for &r in &rows {
            let l = lambdas[r];
            for (j, v) in x[r * g..(r + 1) * g].iter_mut().enumerate() {
                let styled = mu_ref[j] + sd_ref[j] / sd[j].max(MIN_SD) * (*v - mu[j]);
                *v = (1.0 - l) * *v + l * styled;
            }
        }
    }
}

/// The rank-keeping profile mix on one view.
fn rank_mix(x: &mut [f32], g: usize, rng: &mut Rng) {
    let rows = x.len() / g;
    if rows == 0 {
        return;
    }
    let anchor = rng.below(rows);
    let mut anchor_sorted = x[anchor * g..(anchor + 1) * g].to_vec();
    anchor_sorted.sort_unstable_by(f32::total_cmp);
    let mut order: Vec<u32> = Vec::with_capacity(g);
    for r in 0..rows {
        let l = rng.f32();
        let row = &mut x[r * g..(r + 1) * g];
        order.clear();
        order.extend(0..g as u32);
        // Ties keep gene order (a stable sort): the rank of every gene is well defined.
        order.sort_by(|&a, &b| row[a as usize].total_cmp(&row[b as usize]));
        let own: Vec<f32> = order.iter().map(|&j| row[j as usize]).collect();
        for (k, &j) in order.iter().enumerate() {
            row[j as usize] = (1.0 - l) * own[k] + l * anchor_sorted[k];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(rows: usize, g: usize) -> Vec<f32> {
        let mut r = Rng::new(2);
        (0..rows * g).map(|_| r.f32() * 4.0).collect()
    }

    #[test]
    fn none_changes_nothing() {
        let mut x = data(8, 5);
        let before = x.clone();
        augment(Augment::None, &mut x, 5, &[0; 8], &mut Rng::new(1));
        assert_eq!(x, before);
    }

    #[test]
    fn bss_at_full_strength_gives_the_reference_style() {
        // One view of 6 rows (the second view is its copy): batches 0 and 1.
        let g = 4;
        let view = data(6, g);
        let batch = [0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1];
        let mut x = [view.clone(), view.clone()].concat();
        let mut rng = Rng::new(9);
        // Re-draw what `standardize` draws to know the reference and the lambdas.
        let mut probe = rng.clone();
        let reference = probe.pick(&[0u32, 1]);
        let lambdas: Vec<f32> = (0..6).map(|_| probe.f32()).collect();
        augment(Augment::Bss, &mut x, g, &batch, &mut rng);
        let rows: Vec<usize> = (0..6).filter(|&r| batch[r] == reference).collect();
        let (mu_ref, sd_ref) = moments(&view, g, &rows);
        for b in [0u32, 1] {
            let rows: Vec<usize> = (0..6).filter(|&r| batch[r] == b).collect();
            let (mu, sd) = moments(&view, g, &rows);
            for &r in &rows {
                for j in 0..g {
                    let v = view[r * g + j];
                    let styled = mu_ref[j] + sd_ref[j] / sd[j] * (v - mu[j]);
                    let want = (1.0 - lambdas[r]) * v + lambdas[r] * styled;
                    assert!((x[r * g + j] - want).abs() < 1e-5);
                }
            }
        }
        // Rows of the reference batch keep their values.
        for &r in &(0..6)
            .filter(|&r| batch[r] == reference)
            .collect::<Vec<_>>()
        {
            for j in 0..g {
                assert!((x[r * g + j] - view[r * g + j]).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn bss_rank_keeps_every_rows_gene_ranks() {
        let g = 7;
        let mut x = data(10, g);
        let before = x.clone();
        augment(Augment::BssRank, &mut x, g, &[0; 10], &mut Rng::new(4));
        assert_ne!(x, before);
        for r in 0..10 {
            let rank = |v: &[f32]| {
                let mut o: Vec<usize> = (0..g).collect();
                o.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
                o
            };
            assert_eq!(
                rank(&before[r * g..(r + 1) * g]),
                rank(&x[r * g..(r + 1) * g])
            );
        }
    }
}
