//! `cellweave-score --impute` on the shared pbmc_g949_impute data (2,000 PBMCs x 949 genes,
//! 90% of the truth's non-zero entries hidden): the held-out MSE and median Pearson per gene
//! and per cell equal `../shared/reference/tools/impute_eval.py`'s numbers in
//! `../shared/reference/pbmc_g949_impute/baselines.jsonl` (no imputation, gene mean of the
//! observed values), whatever format and scale the imputed matrix comes in; and, when the
//! reference Python is installed, equal what impute_eval.py computes on an imputation that
//! replaces every entry (kNN smoothing).

use cellweave_tests::{output_ok, reference_python, run_ok, s, shared};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

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

/// `cellweave-impute INPUT --method METHOD EXTRA... -o OUT -q`.
fn impute(input: &Path, method: &str, extra: &[&str], out: &Path) {
    let args = [
        &[s(input), "--method", method],
        extra,
        &["-o", s(out), "-q"],
    ]
    .concat();
    run_ok("impute", &args);
}

/// `cellweave-export INPUT -o OUT -q`.
fn export(input: &Path, out: &Path) {
    run_ok("export", &[s(input), "-o", s(out), "-q"]);
}

/// `cellweave-score --impute IMPUTED... --truth TRUTH --masked MASKED -o OUT EXTRA... -q`:
/// the JSON it writes to `out`.
fn score_impute(
    imputed: &[&Path],
    truth: &Path,
    masked: &Path,
    out: &Path,
    extra: &[&str],
) -> Value {
    let mut args = vec!["--impute"];
    args.extend(imputed.iter().map(|p| s(p)));
    args.extend(["--truth", s(truth), "--masked", s(masked), "-o", s(out)]);
    args.extend(extra);
    args.push("-q");
    run_ok("score", &args);
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
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
    let (masked, gm, gm_ln, gm_tsv) = (
        p("masked.arrow"),
        p("gm.arrow"),
        p("gm_ln.arrow"),
        p("gm.tsv"),
    );

    // The imputation input itself (no imputation), and the gene-mean baseline written on
    // log10(x+1) and on ln(x+1) (scale from the provenance), and as a plain TSV.
    run_ok("import", &[s(&masked_h5ad), "-o", s(&masked), "-q"]);
    for (out, scale) in [(&gm, "log10"), (&gm_ln, "log1p")] {
        impute(&masked, "gene-mean", &["--scale", scale], out);
    }
    export(&gm, &gm_tsv);
    let j = score_impute(
        &[&masked, &gm, &gm_ln, &gm_tsv],
        &truth,
        &masked_h5ad,
        &p("scores.json"),
        &["--tsv"],
    );
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
    let Some(python) = reference_python(&["anndata", "scipy", "sklearn"]) else {
        return;
    };
    let (knn, knn_tsv) = (p("knn.arrow"), p("knn.tsv"));
    impute(&masked, "knn", &[], &knn);
    export(&knn, &knn_tsv);
    let script = shared.join("reference/tools/impute_eval.py");
    let args = [s(&script), s(&truth), s(&masked_h5ad), s(&knn_tsv)];
    let r = output_ok(Command::new(&python).args(args));
    let theirs = jsonl(&String::from_utf8_lossy(&r.stdout));
    let theirs = by_method(&theirs, s(&knn_tsv));
    let j = score_impute(&[&knn], &truth, &masked_h5ad, &p("knn.json"), &[]);
    assert_same(&j["embeddings"]["knn"]["metrics"], theirs, "knn smoothing");
}
