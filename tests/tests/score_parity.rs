//! cellweave-score against scib-metrics 0.5.10 (exact kNN) on the shared data: for the PCA,
//! Harmony and Scanorama embeddings of cellbench_3tech and kang_ifnb, every metric and every
//! aggregate in `../shared/reference/<dataset>/score_<method>.json` must be matched within
//! 0.01 absolute (k-means and Leiden NMI/ARI within 0.03: their random seeds differ from
//! scib-metrics'). A metric of the reference that cellweave-score does not report fails.

use cellweave_tests::{run_ok, shared};
use serde_json::Value;
use std::path::Path;

const METHODS: [&str; 3] = ["pca", "harmony", "scanorama"];
const TOL: f64 = 0.01;
const TOL_CLUSTERING: f64 = 0.03;

fn tolerance(metric: &str) -> f64 {
    if metric.contains("kmeans") || metric.contains("leiden") {
        TOL_CLUSTERING
    } else {
        TOL
    }
}

fn read_json(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn parity(dataset: &str) {
    let Some(shared) = shared() else { return };
    let reference = shared.join("reference").join(dataset);
    let embed = reference.join("embed");
    let obs = shared.join("data").join(dataset).join("obs.tsv");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("scores.json");
    let embs: Vec<String> = METHODS
        .iter()
        .map(|m| embed.join(format!("{m}.tsv")).display().to_string())
        .collect();
    let pca = embed.join("pca.tsv").display().to_string();
    let mut args: Vec<&str> = embs.iter().map(String::as_str).collect();
    args.extend([
        "--unintegrated",
        &pca,
        "--obs",
        obs.to_str().unwrap(),
        "--seed",
        "0",
        "-o",
        out.to_str().unwrap(),
    ]);
    run_ok("score", &args);
    let ours = read_json(&out);

    let mut report = Vec::new();
    let mut failures = Vec::new();
    let mut compared = 0;
    for m in METHODS {
        let refj = read_json(&reference.join(format!("score_{m}.json")));
        let emb = &ours["embeddings"][m];
        assert!(emb.is_object(), "{dataset}: no embedding '{m}' in {ours}");
        assert_eq!(
            emb["n_cells"].as_u64(),
            refj["n_cells"].as_u64(),
            "{dataset}/{m}: cell count"
        );
        // Every reference metric, then the aggregates (bio, batch, total of both sets).
        let mut pairs: Vec<(String, f64, Option<f64>)> = Vec::new();
        let metrics = refj["metrics"].as_object().expect("reference metrics");
        assert!(
            metrics.len() >= 13,
            "{dataset}/{m}: reference has {metrics:?}"
        );
        for (name, v) in metrics {
            pairs.push((
                name.clone(),
                v.as_f64().expect("numeric reference"),
                emb["metrics"][name].as_f64(),
            ));
        }
        for agg in ["agg_benchmarker_default", "agg_scib_classic"] {
            for part in ["bio", "batch", "total"] {
                let name = format!("{agg}_{part}");
                let v = refj[agg][part]
                    .as_f64()
                    .unwrap_or_else(|| panic!("reference {m}: no {agg}.{part}"));
                pairs.push((name.clone(), v, emb["aggregates"][&name].as_f64()));
            }
        }
        for (name, want, got) in pairs {
            compared += 1;
            let tol = tolerance(&name);
            match got {
                None => failures.push(format!(
                    "{dataset}/{m}: {name} MISSING from cellweave-score's output"
                )),
                Some(g) => {
                    let diff = g - want;
                    let bad = diff.is_nan() || diff.abs() > tol;
                    report.push(format!(
                        "{dataset:16} {m:10} {name:40} ref {want:.4} ours {g:.4} diff {diff:+.4}{}",
                        if bad { "  <-- over tolerance" } else { "" }
                    ));
                    if bad {
                        failures.push(format!(
                            "{dataset}/{m}: {name} = {g:.4}, scib-metrics {want:.4} (|diff| {:.4} > {tol})",
                            diff.abs()
                        ));
                    }
                }
            }
        }
    }
    eprintln!("{}", report.join("\n"));
    assert_eq!(
        compared,
        3 * 19,
        "{dataset}: 13 metrics + 6 aggregates per embedding"
    );
    assert!(
        failures.is_empty(),
        "{} mismatch(es):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn cellbench_3tech_matches_scib_metrics() {
    parity("cellbench_3tech");
}

#[test]
fn kang_ifnb_matches_scib_metrics() {
    parity("kang_ifnb");
}
