//! cellweave-impute on the shared pbmc_g949_impute data (2,000 10x PBMCs x 949 genes, 90% of
//! the entries zero in the input, two batches ctrl / stim): the baselines reproduce the
//! reference numbers of `impute_eval.py`, LATE (with and without the batch covariate) beats
//! the best baseline on held-out MSE and on the median Pearson correlation per gene, and
//! `impute_eval.py` itself scores the exported imputation the same.

use cellweave_tests::{reference_python, run_ok, shared};
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
    // Exact PCA here, randomized in scikit-learn: a few neighbours differ. Stated tolerance:
    // 1e-3 on the MSE, 5e-3 on the Pearson medians.
    let close = |ours: &Value, theirs: &Value, what: &str| {
        assert_eq!(ours["n_heldout"], theirs["n_heldout"]);
        for (k, tol) in [
            ("mse_heldout", 1e-3),
            ("median_pearson_gene", 5e-3),
            ("median_pearson_cell", 5e-3),
        ] {
            let (a, b) = (f(ours, k), f(theirs, k));
            assert!((a - b).abs() < tol, "{what} {k}: {a} vs {b}");
        }
    };
    let knn_ref = reference(&shared, "knn15_smoothing");
    close(&knn, &knn_ref, "knn");
    let knn0 = evaluate(
        &masked,
        &truth,
        &dir.path().join("knn0.arrow"),
        &["--method", "knn", "--only-zeros"],
    );
    close(
        &knn0,
        &reference(&shared, "knn15_smoothing_zeros_only"),
        "knn --only-zeros",
    );
    let none = reference(&shared, "no_imputation");
    let refs = [&gm_ref, &knn_ref, &none];
    let best_mse = refs
        .iter()
        .map(|v| f(v, "mse_heldout"))
        .fold(f64::INFINITY, f64::min);
    let best_pg = refs
        .iter()
        .map(|v| f(v, "median_pearson_gene"))
        .fold(f64::NEG_INFINITY, f64::max);

    // LATE with the default architecture, optimiser and schedule, observed values kept;
    // then the same with the batch (ctrl / stim) as a covariate.
    let mut slopes = Vec::new();
    for (name, extra) in [
        ("late", &["--only-zeros", "--seed", "0"][..]),
        (
            "late_batch",
            &["--only-zeros", "--seed", "0", "--batch-aware"][..],
        ),
    ] {
        let out = dir.path().join(format!("{name}.arrow"));
        let late = evaluate(&masked, &truth, &out, extra);
        assert!(
            f(&late, "mse_heldout") < best_mse,
            "{name} MSE {} vs best baseline {best_mse}",
            f(&late, "mse_heldout")
        );
        assert!(
            f(&late, "median_pearson_gene") > best_pg,
            "{name} Pearson per gene {} vs best baseline {best_pg}",
            f(&late, "median_pearson_gene")
        );
        slopes.push(f(&late, "batch_effect_slope"));
        if name == "late" {
            check_with_impute_eval(&data, &out, &late, dir.path());
        }
    }
    // The differences between ctrl and stim at the held-out entries: the gene mean erases
    // them by construction; LATE without the covariate nearly as much (measured: slope
    // about 0); with it, the imputation keeps a good part of them (measured: about 0.5).
    assert_eq!(f(&gm, "batch_effect_slope"), 0.0);
    let (plain, aware) = (slopes[0], slopes[1]);
    assert!(
        aware > 0.3 && aware > plain + 0.25,
        "batch effect slope: LATE {plain}, batch-aware LATE {aware}"
    );
}

/// `impute_eval.py` (the reference Python stack) scores the exported imputation exactly as
/// `cellweave-impute --truth` did.
fn check_with_impute_eval(data: &Path, imputed: &Path, ours: &Value, dir: &Path) {
    let Some(python) = reference_python(&["anndata", "sklearn"]) else {
        return;
    };
    let Some(shared) = shared() else { return };
    let h5ad = dir.join("imputed.h5ad");
    run_ok("export", &[s(imputed), "-o", s(&h5ad)]);
    let script = shared.join("reference/tools/impute_eval.py");
    let out = std::process::Command::new(python)
        .args([
            s(&script),
            s(&data.join("truth.h5ad")),
            s(&data.join("masked.h5ad")),
            s(&h5ad),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "impute_eval.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().rev().find(|l| l.contains("imputed.h5ad"));
    let theirs: Value = serde_json::from_str(line.unwrap_or_else(|| panic!("{stdout}"))).unwrap();
    eprintln!("impute_eval.py: {theirs}");
    assert_eq!(ours["n_heldout"], theirs["n_heldout"]);
    for k in ["mse_heldout", "median_pearson_gene", "median_pearson_cell"] {
        let (a, b) = (f(ours, k), f(&theirs, k));
        assert!(
            (a - b).abs() < 1e-6,
            "{k}: cellweave {a}, impute_eval.py {b}"
        );
    }
}
