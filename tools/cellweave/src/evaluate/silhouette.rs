//! Silhouette-based scores from the summed distances of [`super::pairwise`]:
//! `silhouette_label`, `isolated_labels`, `silhouette_batch` and `bras`, as scib-metrics
//! defines them.
//!
//! Silhouette of cell i: `s = (b - a) / max(a, b)`, `a` = mean distance to the other cells of
//! its group, `b` = mean distance to the nearest other group (`bras`: to all cells of the
//! other groups); a cell alone in its group scores 0.

use crate::numerics::stats::label_groups;

/// Counts of each code `0..k`.
pub fn counts(codes: &[u32], k: usize) -> Vec<usize> {
    let mut c = vec![0usize; k];
    for &x in codes {
        c[x as usize] += 1;
    }
    c
}

/// How the between-group distance is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Between {
    /// Mean distance to the nearest other group (the standard silhouette).
    Nearest,
    /// Mean distance to all cells outside the group (BRAS).
    MeanOther,
}

/// One silhouette value from the summed distances of a cell to each group (`sums`), the group
/// sizes (`cnt`, groups of size 0 are absent) and the cell's own group.
fn silhouette_one(sums: &[f64], cnt: &[usize], own: usize, between: Between) -> f64 {
    if cnt[own] <= 1 {
        return 0.0;
    }
    let a = sums[own] / (cnt[own] - 1) as f64;
    let b = match between {
        Between::Nearest => {
            let mut b = f64::INFINITY;
            for (c, (&s, &k)) in sums.iter().zip(cnt).enumerate() {
                if c != own && k > 0 {
                    b = b.min(s / k as f64);
                }
            }
            b
        }
        Between::MeanOther => {
            let others: usize = cnt.iter().sum::<usize>() - cnt[own];
            let total: f64 = sums
                .iter()
                .enumerate()
                .filter(|&(c, _)| c != own)
                .map(|(_, s)| s)
                .sum();
            total / others as f64
        }
    };
    let s = (b - a) / a.max(b);
    if s.is_finite() {
        s
    } else {
        0.0
    }
}

/// Per-cell silhouette with respect to the labels (`label_sums`: `n x n_labels`).
pub fn silhouette_samples(label_sums: &[f64], labels: &[u32], n_labels: usize) -> Vec<f64> {
    let cnt = counts(labels, n_labels);
    labels
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            silhouette_one(
                &label_sums[i * n_labels..(i + 1) * n_labels],
                &cnt,
                l as usize,
                Between::Nearest,
            )
        })
        .collect()
}

/// `silhouette_label`: mean of `(s + 1) / 2`.
pub fn silhouette_label(samples: &[f64]) -> f64 {
    samples.iter().map(|s| (s + 1.0) / 2.0).sum::<f64>() / samples.len() as f64
}

/// Labels seen in the fewest batches (scib-metrics' isolated labels with the default
/// threshold).
pub fn isolated_label_set(
    labels: &[u32],
    batches: &[u32],
    n_labels: usize,
    n_batches: usize,
) -> Vec<usize> {
    let mut seen = vec![false; n_labels * n_batches];
    for (&l, &b) in labels.iter().zip(batches) {
        seen[l as usize * n_batches + b as usize] = true;
    }
    let per: Vec<usize> = (0..n_labels)
        .map(|l| {
            seen[l * n_batches..(l + 1) * n_batches]
                .iter()
                .filter(|&&s| s)
                .count()
        })
        .collect();
    let present: Vec<usize> = (0..n_labels).filter(|&l| per[l] > 0).collect();
    let min = present.iter().map(|&l| per[l]).min().unwrap_or(0);
    present.into_iter().filter(|&l| per[l] <= min).collect()
}

/// `isolated_labels`: for each isolated label, the mean rescaled label silhouette of its
/// cells; then the mean over those labels.
pub fn isolated_labels(
    samples: &[f64],
    labels: &[u32],
    batches: &[u32],
    n_labels: usize,
    n_batches: usize,
) -> f64 {
    let iso = isolated_label_set(labels, batches, n_labels, n_batches);
    let per_label: Vec<f64> = iso
        .iter()
        .map(|&l| {
            let v: Vec<f64> = labels
                .iter()
                .zip(samples)
                .filter(|(&x, _)| x as usize == l)
                .map(|(_, s)| (s + 1.0) / 2.0)
                .collect();
            v.iter().sum::<f64>() / v.len() as f64
        })
        .collect();
    per_label.iter().sum::<f64>() / per_label.len() as f64
}

/// `silhouette_batch` (Euclidean sums, [`Between::Nearest`]) and `bras` (cosine sums,
/// [`Between::MeanOther`]): within each label seen in more than one batch (and not one cell
/// per batch), `1 - |s|` of the batch silhouette, averaged per label, then over labels.
/// `batch_sums`: `n x n_batches`, distances to the cell's own label only. NaN if no label
/// qualifies.
pub fn batch_silhouette(
    batch_sums: &[f64],
    labels: &[u32],
    batches: &[u32],
    n_labels: usize,
    n_batches: usize,
    between: Between,
) -> f64 {
    let mut group_means = Vec::new();
    for (_, members) in label_groups(labels, n_labels) {
        let mut cnt = vec![0usize; n_batches];
        for &i in &members {
            cnt[batches[i] as usize] += 1;
        }
        let nb = cnt.iter().filter(|&&c| c > 0).count();
        if nb == 1 || nb == members.len() {
            continue;
        }
        let sum: f64 = members
            .iter()
            .map(|&i| {
                1.0 - silhouette_one(
                    &batch_sums[i * n_batches..(i + 1) * n_batches],
                    &cnt,
                    batches[i] as usize,
                    between,
                )
                .abs()
            })
            .sum();
        group_means.push(sum / members.len() as f64);
    }
    if group_means.is_empty() {
        f64::NAN
    } else {
        group_means.iter().sum::<f64>() / group_means.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silhouette_of_two_points_per_group() {
        // 1-D points: group 0 at {0, 1}, group 1 at {10, 11}.
        let x = [0.0f64, 1.0, 10.0, 11.0];
        let labels = [0u32, 0, 1, 1];
        let mut sums = vec![0f64; 8];
        for i in 0..4 {
            for j in 0..4 {
                sums[i * 2 + labels[j] as usize] += (x[i] - x[j]).abs();
            }
        }
        let s = silhouette_samples(&sums, &labels, 2);
        // cell 0: a = 1, b = 10.5 -> 0.9047619
        assert!((s[0] - 9.5 / 10.5).abs() < 1e-12);
        assert!(
            (silhouette_label(&s) - (s.iter().map(|v| (v + 1.0) / 2.0).sum::<f64>() / 4.0)).abs()
                < 1e-12
        );
    }

    #[test]
    fn isolated_set_is_the_rarest_in_batches() {
        let labels = [0u32, 0, 1, 1, 2];
        let batches = [0u32, 1, 0, 1, 0];
        assert_eq!(isolated_label_set(&labels, &batches, 3, 2), vec![2]);
    }
}
