//! cellweave-impute on the shared pbmc_g949_impute data (2,000 10x PBMCs x 949 genes, 90% of
//! the entries zero in the input): the baselines reproduce the reference numbers of
//! `impute_eval.py`, and LATE beats the best baseline on held-out MSE and on the median
//! Pearson correlation per gene.

use cellweave_tests::{run_ok, shared};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The reference line for `method` in baselines.jsonl.
fn reference(shared: &Path, method: &str) -> Value {
    let text =
        std::fs::read_to_string(shared.join("reference/pbmc_g949_impute/baselines.jsonl")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["method"] == method)
        .unwrap_or_else(|| panic!("no reference for {method}"))
}

fn evaluate(masked: &Path, truth: &Path, out: &Path, extra: &[&str]) -> Value {
    let mut args = vec![s(masked), "-o", s(out), "--truth", s(truth)];
    args.extend_from_slice(extra);
    let r = run_ok("impute", &args);
    let line = String::from_utf8_lossy(&r.stdout);
    let v: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"));
    eprintln!("{}", line.trim());
    v
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

fn import(src: PathBuf, dst: &Path) {
    run_ok("import", &[s(&src), "-o", s(dst)]);
}

#[test]
fn late_beats_the_baselines_on_pbmc_g949() {
    let Some(shared) = shared() else { return };
    let data = shared.join("data/pbmc_g949_impute");
    let dir = tempfile::tempdir().unwrap();
    let (truth, masked) = (
        dir.path().join("truth.arrow"),
        dir.path().join("masked.arrow"),
    );
    import(data.join("truth.h5ad"), &truth);
    import(data.join("masked.h5ad"), &masked);

    // Baselines and evaluation agree with impute_eval.py.
    let gm = evaluate(
        &masked,
        &truth,
        &dir.path().join("gm.arrow"),
        &["--method", "gene-mean"],
    );
    let gm_ref = reference(&shared, "gene_mean_of_observed");
    assert_eq!(gm["n_heldout"], gm_ref["n_heldout"]);
    for k in ["mse_heldout", "median_pearson_gene", "median_pearson_cell"] {
        assert!(
            (f(&gm, k) - f(&gm_ref, k)).abs() < 1e-5,
            "gene mean {k}: {} vs {}",
            f(&gm, k),
            f(&gm_ref, k)
        );
    }
    let knn = evaluate(
        &masked,
        &truth,
        &dir.path().join("knn.arrow"),
        &["--method", "knn"],
    );
    let knn_ref = reference(&shared, "knn15_smoothing");
    // Exact PCA here, randomized in scikit-learn: neighbours differ slightly.
    assert!((f(&knn, "mse_heldout") - f(&knn_ref, "mse_heldout")).abs() < 0.003);
    assert!((f(&knn, "median_pearson_cell") - f(&knn_ref, "median_pearson_cell")).abs() < 0.01);
    let none = reference(&shared, "no_imputation");

    // LATE with the default architecture and optimiser, observed values kept.
    let late = evaluate(
        &masked,
        &truth,
        &dir.path().join("late.arrow"),
        &["--only-zeros", "--epochs", "60", "--seed", "0"],
    );
    let best_mse = [&gm_ref, &knn_ref, &none]
        .iter()
        .map(|v| f(v, "mse_heldout"))
        .fold(f64::INFINITY, f64::min);
    let best_pg = [&gm_ref, &knn_ref, &none]
        .iter()
        .map(|v| f(v, "median_pearson_gene"))
        .fold(f64::NEG_INFINITY, f64::max);
    assert!(
        f(&late, "mse_heldout") < best_mse,
        "LATE MSE {} vs best baseline {best_mse}",
        f(&late, "mse_heldout")
    );
    assert!(
        f(&late, "median_pearson_gene") > best_pg,
        "LATE Pearson per gene {} vs best baseline {best_pg}",
        f(&late, "median_pearson_gene")
    );
}
