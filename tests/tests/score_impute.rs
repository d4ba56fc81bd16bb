//! `cellweave-score --impute` on the shared pbmc_g949_impute data (2,000 PBMCs x 949 genes,
//! 90% of the truth's non-zero entries hidden): the held-out MSE and median Pearson per gene
//! and per cell equal `../shared/reference/tools/impute_eval.py`'s numbers in
//! `../shared/reference/pbmc_g949_impute/baselines.jsonl` (no imputation, gene mean of the
//! observed values), whatever format and scale the imputed matrix comes in; and, when the
//! reference Python is installed, equal what impute_eval.py computes on an imputation that
//! replaces every entry (kNN smoothing).

use cellweave_tests::{run_ok, shared};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn jsonl(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn by_method<'a>(rows: &'a [Value], method: &str) -> &'a Value {
    rows.iter()
        .find(|v| v["method"] == method)
        .unwrap_or_else(|| panic!("no line for {method}"))
}

const KEYS: [&str; 4] = [
    "mse_heldout",
    "n_heldout",
    "median_pearson_gene",
    "median_pearson_cell",
];

fn assert_same(ours: &Value, theirs: &Value, what: &str) {
    for k in KEYS {
        let (a, b) = (
            ours[k]
                .as_f64()
                .unwrap_or_else(|| panic!("{what}: {k} missing in {ours}")),
            theirs[k].as_f64().unwrap(),
        );
        assert!(
            (a - b).abs() <= 1e-5 * b.abs().max(1.0),
            "{what}: {k} = {a}, impute_eval.py {b}"
        );
    }
}

/// The reference Python (`$CELLWEAVE_REF_PYTHON`, else the default refenv) if it exists.
fn reference_python() -> Option<PathBuf> {
    let p = std::env::var_os("CELLWEAVE_REF_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/cellweave-refenv/bin/python"))
        })?;
    if p.exists() {
        return Some(p);
    }
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!("CI=true but no reference Python at {}", p.display());
    }
    eprintln!(
        "\n!!!!! SKIPPING the live impute_eval.py comparison: no reference Python at {} !!!!!\n",
        p.display()
    );
    None
}

#[test]
fn impute_scores_match_impute_eval_py() {
    let Some(shared) = shared() else { return };
    let data = shared.join("data/pbmc_g949_impute");
    let (truth, masked_h5ad) = (data.join("truth.h5ad"), data.join("masked.h5ad"));
    let baselines = jsonl(
        &std::fs::read_to_string(shared.join("reference/pbmc_g949_impute/baselines.jsonl"))
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);

    // The imputation input itself (no imputation), and the gene-mean baseline written on
    // log10(x+1) and on ln(x+1) (scale from the provenance), and as a plain TSV.
    run_ok(
        "import",
        &[s(&masked_h5ad), "-o", s(&p("masked.arrow")), "-q"],
    );
    for (out, scale) in [("gm.arrow", "log10"), ("gm_ln.arrow", "log1p")] {
        run_ok(
            "impute",
            &[
                s(&p("masked.arrow")),
                "--method",
                "gene-mean",
                "--scale",
                scale,
                "-o",
                s(&p(out)),
                "-q",
            ],
        );
    }
    run_ok("export", &[s(&p("gm.arrow")), "-o", s(&p("gm.tsv")), "-q"]);
    let out = p("scores.json");
    run_ok(
        "score",
        &[
            "--impute",
            s(&p("masked.arrow")),
            s(&p("gm.arrow")),
            s(&p("gm_ln.arrow")),
            s(&p("gm.tsv")),
            "--truth",
            s(&truth),
            "--masked",
            s(&masked_h5ad),
            "-o",
            s(&out),
            "--tsv",
            "-q",
        ],
    );
    let j: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let e = &j["embeddings"];
    assert_eq!(e.as_object().unwrap().len(), 4, "{j}");
    assert_same(
        &e["masked"]["metrics"],
        by_method(&baselines, "no_imputation"),
        "no imputation",
    );
    for name in ["gm", "gm_ln", "gm_2"] {
        assert_same(
            &e[name]["metrics"],
            by_method(&baselines, "gene_mean_of_observed"),
            name,
        );
    }
    assert_eq!(e["gm_ln"]["kind"], "imputed (log1p)");
    assert_eq!(e["gm_2"]["kind"], "imputed (log10)");
    // The wide TSV: one row per imputed matrix.
    let tsv = std::fs::read_to_string(p("scores.tsv")).unwrap();
    assert_eq!(tsv.lines().count(), 5, "{tsv}");
    assert!(tsv.lines().nth(2).unwrap().contains("\t429116\t"), "{tsv}");

    // Live: impute_eval.py and cellweave-score on the same kNN-smoothed matrix.
    let Some(python) = reference_python() else {
        return;
    };
    run_ok(
        "impute",
        &[
            s(&p("masked.arrow")),
            "--method",
            "knn",
            "-o",
            s(&p("knn.arrow")),
            "-q",
        ],
    );
    run_ok(
        "export",
        &[s(&p("knn.arrow")), "-o", s(&p("knn.tsv")), "-q"],
    );
    let script = shared.join("reference/tools/impute_eval.py");
    let r = Command::new(&python)
        .args([s(&script), s(&truth), s(&masked_h5ad), s(&p("knn.tsv"))])
        .output()
        .unwrap();
    assert!(
        r.status.success(),
        "impute_eval.py failed: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    let theirs = jsonl(&String::from_utf8_lossy(&r.stdout));
    let theirs = by_method(&theirs, s(&p("knn.tsv")));
    let out = p("knn.json");
    run_ok(
        "score",
        &[
            "--impute",
            s(&p("knn.arrow")),
            "--truth",
            s(&truth),
            "--masked",
            s(&masked_h5ad),
            "-o",
            s(&out),
            "-q",
        ],
    );
    let j: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_same(&j["embeddings"]["knn"]["metrics"], theirs, "knn smoothing");
}
