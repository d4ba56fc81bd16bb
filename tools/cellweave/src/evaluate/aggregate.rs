//! Aggregate scores over metrics (and, for min-max scaling and the CLAIRE F1, over the
//! embeddings compared in one call).
//!
//! - `agg_benchmarker_default_*`: scib-metrics 0.5 Benchmarker's default metric set (BRAS
//!   rather than the batch silhouette, no Leiden): bio = mean of isolated_labels, k-means
//!   NMI/ARI, silhouette_label, clisi_knn; batch = mean of bras, ilisi_knn, kbet_per_label,
//!   graph_connectivity, pcr_comparison (when present).
//! - `agg_scib_classic_*`: the classic scIB set: bio adds the Leiden NMI/ARI; batch uses
//!   silhouette_batch instead of bras.
//! - total = 0.6 bio + 0.4 batch. Means are taken over the metrics that were computed; the
//!   values are not min-max scaled unless asked (`Benchmarker.get_results(min_max_scale=False)`,
//!   how the reference JSONs were made; the Benchmarker's own default scales each metric to
//!   [0, 1] across the embeddings first).
//! - CLAIRE F1: batch mixing = mean of bASW and kBET (k = 15), bio conservation = mean of cASW
//!   and the Louvain NMI/ARI, each metric min-max scaled across the embeddings when two or
//!   more are compared (raw otherwise); F1 = 2 mix bio / (mix + bio).

/// One embedding's values, by name.
pub type Values = Vec<(String, f64)>;

fn get(v: &Values, name: &str) -> Option<f64> {
    v.iter()
        .find(|(n, _)| n == name)
        .map(|(_, x)| *x)
        .filter(|x| !x.is_nan())
}

fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Metric sets of the two scib aggregates: (name, bio metrics, batch metrics).
pub fn scib_sets() -> [(&'static str, Vec<&'static str>, Vec<&'static str>); 2] {
    let km = [
        "nmi_ari_cluster_labels_kmeans_nmi",
        "nmi_ari_cluster_labels_kmeans_ari",
    ];
    let ld = [
        "nmi_ari_cluster_labels_leiden_nmi",
        "nmi_ari_cluster_labels_leiden_ari",
    ];
    [
        (
            "agg_benchmarker_default",
            vec![
                "isolated_labels",
                km[0],
                km[1],
                "silhouette_label",
                "clisi_knn",
            ],
            vec![
                "bras",
                "ilisi_knn",
                "kbet_per_label",
                "graph_connectivity",
                "pcr_comparison",
            ],
        ),
        (
            "agg_scib_classic",
            vec![
                "isolated_labels",
                ld[0],
                ld[1],
                km[0],
                km[1],
                "silhouette_label",
                "clisi_knn",
            ],
            vec![
                "silhouette_batch",
                "ilisi_knn",
                "kbet_per_label",
                "graph_connectivity",
                "pcr_comparison",
            ],
        ),
    ]
}

/// Min-max scale every metric to [0, 1] across the embeddings (constant metric: 0, as
/// scikit-learn's `minmax_scale`).
pub fn min_max_scaled(all: &[Values]) -> Vec<Values> {
    let mut out: Vec<Values> = all.to_vec();
    if all.is_empty() {
        return out;
    }
    let names: Vec<String> = all[0].iter().map(|(n, _)| n.clone()).collect();
    for name in names {
        let vals: Vec<f64> = all.iter().filter_map(|v| get(v, &name)).collect();
        let (lo, hi) = vals
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        for v in out.iter_mut() {
            if let Some(e) = v.iter_mut().find(|(n, _)| *n == name) {
                if !e.1.is_nan() {
                    e.1 = if hi > lo { (e.1 - lo) / (hi - lo) } else { 0.0 };
                }
            }
        }
    }
    out
}

/// [`min_max_scaled`] when `scale`, else the values as they are.
fn scaled_if(all: &[Values], scale: bool) -> Vec<Values> {
    if scale {
        min_max_scaled(all)
    } else {
        all.to_vec()
    }
}

/// The scib aggregates (`<set>_bio`, `<set>_batch`, `<set>_total`) of each embedding.
pub fn scib_aggregates(all: &[Values], scale: bool) -> Vec<Values> {
    scaled_if(all, scale)
        .iter()
        .map(|v| {
            let mut out = Values::new();
            for (set, bio, batch) in scib_sets() {
                let b: Vec<f64> = bio.iter().filter_map(|m| get(v, m)).collect();
                let t: Vec<f64> = batch.iter().filter_map(|m| get(v, m)).collect();
                let (mb, mt) = (mean(&b), mean(&t));
                out.push((format!("{set}_bio"), mb.unwrap_or(f64::NAN)));
                out.push((format!("{set}_batch"), mt.unwrap_or(f64::NAN)));
                let total = match (mb, mt) {
                    (Some(x), Some(y)) => 0.6 * x + 0.4 * y,
                    _ => f64::NAN,
                };
                out.push((format!("{set}_total"), total));
            }
            out
        })
        .collect()
}

/// The CLAIRE paper's batch mixing, bio conservation and their F1, per embedding.
pub fn claire_f1(all: &[Values]) -> Vec<Values> {
    let mix_names = ["claire_basw", "claire_kbet"];
    let bio_names = ["claire_casw", "claire_louvain_nmi", "claire_louvain_ari"];
    scaled_if(all, all.len() >= 2)
        .iter()
        .map(|v| {
            let mix: Vec<f64> = mix_names.iter().filter_map(|m| get(v, m)).collect();
            let bio: Vec<f64> = bio_names.iter().filter_map(|m| get(v, m)).collect();
            if mix.len() < mix_names.len() || bio.len() < bio_names.len() {
                return Values::new();
            }
            let (m, b) = (mean(&mix).unwrap(), mean(&bio).unwrap());
            let f1 = if m + b > 0.0 {
                2.0 * m * b / (m + b)
            } else {
                0.0
            };
            vec![
                ("claire_batch_mixing".into(), m),
                ("claire_bio_conservation".into(), b),
                ("claire_f1".into(), f1),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_and_scaling() {
        let a: Values = vec![
            ("silhouette_label".into(), 0.8),
            ("bras".into(), 0.4),
            ("silhouette_batch".into(), 0.6),
        ];
        let b: Values = vec![
            ("silhouette_label".into(), 0.6),
            ("bras".into(), 0.8),
            ("silhouette_batch".into(), 0.6),
        ];
        let agg = scib_aggregates(&[a.clone(), b.clone()], false);
        let total = agg[0]
            .iter()
            .find(|(n, _)| n == "agg_benchmarker_default_total")
            .unwrap()
            .1;
        assert!((total - (0.6 * 0.8 + 0.4 * 0.4)).abs() < 1e-12);
        let scaled = min_max_scaled(&[a, b]);
        assert_eq!(scaled[0][0].1, 1.0);
        assert_eq!(scaled[1][0].1, 0.0);
        assert_eq!(scaled[0][2].1, 0.0); // constant metric
    }
}
