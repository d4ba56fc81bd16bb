//! UMAP: clusters stay apart, a seed fixes the picture, and the fuzzy graph equals
//! umap-learn's (when the reference Python environment is there to ask).

use cellweave::numerics::graph::fuzzy_connectivities;
use cellweave::numerics::neighbors::{knn, Metric};
use cellweave::viz::umap::{umap, SplitMix, UmapParams};
use cellweave_tests::{output_ok, run_ok, s};
use std::process::Command;

/// `k` Gaussian blobs in `d` dimensions, `m` points each, centres 10 sd apart.
fn blobs(k: usize, m: usize, d: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
    let mut rng = SplitMix::new(seed);
    let centres: Vec<f64> = (0..k * d).map(|_| rng.normal() * 10.0).collect();
    let mut data = Vec::new();
    let mut label = Vec::new();
    for c in 0..k {
        for _ in 0..m {
            for t in 0..d {
                data.push((centres[c * d + t] + rng.normal()) as f32);
            }
            label.push(c);
        }
    }
    (data, label)
}

/// Fraction of each point's `k` nearest neighbours in `d` dimensions (itself excluded)
/// sharing its label.
fn label_purity<L: PartialEq>(data: &[f32], d: usize, label: &[L], k: usize) -> f64 {
    let g = knn(data, d, k, Metric::Euclidean, false);
    let same: usize = (0..g.n())
        .map(|i| {
            g.row(i)
                .0
                .iter()
                .filter(|&&j| label[j as usize] == label[i])
                .count()
        })
        .sum();
    same as f64 / (g.n() * g.k) as f64
}

#[test]
fn separated_blobs_stay_separated() {
    let (data, label) = blobs(3, 200, 10, 7);
    let xy = umap(&data, 10, &UmapParams::default());
    assert_eq!(xy.len(), 600 * 2);
    assert!(xy.iter().all(|v| v.is_finite()));
    let p = label_purity(&xy, 2, &label, 10);
    assert!(p > 0.95, "2-D kNN purity {p}");
    // And the blobs are apart: the gap between clusters exceeds every cluster's spread.
    let centroid = |c: usize| {
        let pts: Vec<usize> = (0..600).filter(|&i| label[i] == c).collect();
        let mx = pts.iter().map(|&i| xy[2 * i] as f64).sum::<f64>() / pts.len() as f64;
        let my = pts.iter().map(|&i| xy[2 * i + 1] as f64).sum::<f64>() / pts.len() as f64;
        let spread = pts
            .iter()
            .map(|&i| {
                ((xy[2 * i] as f64 - mx).powi(2) + (xy[2 * i + 1] as f64 - my).powi(2)).sqrt()
            })
            .sum::<f64>()
            / pts.len() as f64;
        (mx, my, spread)
    };
    let cs: Vec<_> = (0..3).map(centroid).collect();
    for a in 0..3 {
        for b in a + 1..3 {
            let gap = ((cs[a].0 - cs[b].0).powi(2) + (cs[a].1 - cs[b].1).powi(2)).sqrt();
            assert!(
                gap > 2.0 * cs[a].2.max(cs[b].2),
                "clusters {a} and {b}: centroid gap {gap}, spreads {:?}",
                cs
            );
        }
    }
}

#[test]
fn a_connected_manifold_is_not_torn() {
    // Points along a noisy circle in 5-D: neighbours along the circle stay neighbours.
    let mut rng = SplitMix::new(3);
    let n = 400;
    let mut data = Vec::new();
    let mut angle = Vec::new();
    for i in 0..n {
        let t = std::f64::consts::TAU * i as f64 / n as f64;
        angle.push(i);
        data.extend(
            [
                t.cos() * 10.0,
                t.sin() * 10.0,
                rng.normal() * 0.1,
                rng.normal() * 0.1,
                rng.normal() * 0.1,
            ]
            .map(|v| v as f32),
        );
    }
    let xy = umap(&data, 5, &UmapParams::default());
    let g = knn(&xy, 2, 5, Metric::Euclidean, false);
    // Each point's 2-D neighbours are within 10 steps along the circle.
    let close: usize = (0..n)
        .map(|i| {
            g.row(i)
                .0
                .iter()
                .filter(|&&j| {
                    let d = (angle[i] as i64 - angle[j as usize] as i64).rem_euclid(n as i64);
                    d.min(n as i64 - d) <= 10
                })
                .count()
        })
        .sum();
    let frac = close as f64 / (n * 5) as f64;
    assert!(
        frac > 0.95,
        "fraction of 2-D neighbours that are near on the circle: {frac}"
    );
}

#[test]
fn a_seed_fixes_the_layout() {
    let (data, _) = blobs(4, 60, 6, 11);
    let p = UmapParams {
        seed: 5,
        ..UmapParams::default()
    };
    let a = umap(&data, 6, &p);
    let b = umap(&data, 6, &p);
    assert_eq!(a, b, "same seed, different layouts");
    let c = umap(&data, 6, &UmapParams { seed: 6, ..p });
    assert_ne!(a, c, "a different seed should move points");
}

#[test]
fn tiny_inputs_do_not_fail() {
    assert_eq!(umap(&[], 3, &UmapParams::default()).len(), 0);
    assert_eq!(umap(&[1.0, 2.0], 2, &UmapParams::default()).len(), 2);
    let xy = umap(
        &[0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 5.0, 5.0],
        2,
        &UmapParams::default(),
    );
    assert!(xy.len() == 10 && xy.iter().all(|v| v.is_finite()));
    // Identical points everywhere.
    let xy = umap(&vec![1.0; 40 * 3], 3, &UmapParams::default());
    assert!(xy.iter().all(|v| v.is_finite()));
}

const ORACLE: &str = r#"
import sys, json, numpy as np
from sklearn.neighbors import NearestNeighbors
from umap.umap_ import fuzzy_simplicial_set
X = np.loadtxt(sys.argv[1], dtype=np.float32)
k = int(sys.argv[2])
d, i = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(X).kneighbors(X)
g, _, _ = fuzzy_simplicial_set(X, k, 0, "euclidean", knn_indices=i, knn_dists=d.astype(np.float32))
g = g.tocoo()
json.dump({"knn": i.tolist(), "i": g.row.tolist(), "j": g.col.tolist(), "w": g.data.tolist()}, sys.stdout)
"#;

#[test]
fn connectivities_match_umap_learn() {
    let Some(python) = cellweave_tests::reference_python(&["umap", "sklearn"]) else {
        return;
    };
    let (data, _) = blobs(3, 100, 6, 21);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.txt");
    let text: String = data
        .chunks(6)
        .map(|r| {
            r.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(" ")
                + "\n"
        })
        .collect();
    std::fs::write(&path, text).unwrap();
    let out = output_ok(Command::new(python).args(["-c", ORACLE, s(&path), "15"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let g = knn(&data, 6, 15, Metric::Euclidean, true);
    let theirs_knn: Vec<Vec<u32>> = serde_json::from_value(v["knn"].clone()).unwrap();
    for (q, row) in theirs_knn.iter().enumerate() {
        assert_eq!(g.row(q).0, &row[..], "kNN of cell {q} differs");
    }
    let c = fuzzy_connectivities(&g);
    let (ii, jj, ww): (Vec<usize>, Vec<usize>, Vec<f64>) = (
        serde_json::from_value(v["i"].clone()).unwrap(),
        serde_json::from_value(v["j"].clone()).unwrap(),
        serde_json::from_value(v["w"].clone()).unwrap(),
    );
    assert_eq!(c.nnz(), ww.len(), "number of edges");
    let mut worst = 0f64;
    for ((&i, &j), &w) in ii.iter().zip(&jj).zip(&ww) {
        let (idx, val) = c.row(i);
        let p = idx
            .iter()
            .position(|&x| x as usize == j)
            .unwrap_or_else(|| panic!("edge {i}-{j} missing"));
        worst = worst.max((val[p] as f64 - w).abs());
    }
    assert!(worst < 1e-4, "largest weight difference {worst}");
}

#[test]
fn shared_data_umap_keeps_cell_types_together() {
    let Some(shared) = cellweave_tests::shared() else {
        return;
    };
    let emb = shared.join("reference/cellbench_3tech/embed/harmony.tsv");
    let obs = shared.join("data/cellbench_3tech/obs.tsv");
    let dir = tempfile::tempdir().unwrap();
    let (png, tsv) = (dir.path().join("umap.png"), dir.path().join("umap.tsv"));
    let args = [
        s(&emb),
        "--obs",
        s(&obs),
        "-o",
        s(&png),
        "--umap-out",
        s(&tsv),
    ];
    run_ok("plot", &args);
    let high = cellweave::viz::plot::input::read_embedding_any(&emb, Some(&obs)).unwrap();
    let low = cellweave::viz::plot::input::read_embedding_any(&tsv, None).unwrap();
    assert_eq!(low.cell_ids, high.cell_ids);
    assert_eq!(low.dim, 2);
    let label: Vec<String> = {
        let c = high.column("cell_type").unwrap();
        (0..high.n_cells()).map(|i| c.text(i).unwrap()).collect()
    };
    let (p_high, p_low) = (
        label_purity(&high.data, high.dim, &label, 15),
        label_purity(&low.data, 2, &label, 15),
    );
    eprintln!(
        "cell-type purity of 15 neighbours: {p_high:.3} in Harmony space, {p_low:.3} in the UMAP"
    );
    assert!(
        p_low > 0.97 * p_high,
        "UMAP purity {p_low} vs {p_high} in the embedding"
    );
    let img = cellweave::viz::plot::png::read(&std::fs::read(&png).unwrap()).unwrap();
    assert!(img.distinct_colours() > 20);
}
