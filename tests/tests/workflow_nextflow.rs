//! The Nextflow pipeline, checked statically (the engine cannot run here): scripts/check_nextflow.py
//! passes on workflows/nextflow and fails on deliberately broken copies of it.

mod workflow_support;

use std::path::Path;
use std::process::{Command, Output};
use workflow_support::{bin_dir, copy_dir, repo, text, venv_bin};

fn check(pipeline: &Path) -> Option<Output> {
    let python = venv_bin("python")?;
    let out = Command::new(python)
        .arg(repo().join("scripts/check_nextflow.py"))
        .arg("--pipeline")
        .arg(pipeline)
        .arg("--bin-dir")
        .arg(bin_dir())
        .output()
        .expect("spawn check_nextflow.py");
    Some(out)
}

#[test]
fn nextflow_pipeline_passes_the_static_check() {
    let Some(out) = check(&repo().join("workflows/nextflow")) else {
        return;
    };
    let t = text(&out);
    assert!(out.status.success(), "check_nextflow.py failed:\n{t}");
    assert!(t.contains("check_nextflow: OK"), "{t}");
    // Every module was parsed and every cellweave stage of the chain is called by some process.
    for tool in [
        "import",
        "simulate",
        "filter",
        "normalize",
        "hvg",
        "pairs",
        "train",
        "refine",
        "plot",
        "export",
        "score",
        "impute",
    ] {
        assert!(t.contains(tool), "no process calls cellweave-{tool}:\n{t}");
    }
}

/// Replace `from` by `to` in `file` of a copy of the pipeline (the text must be there).
fn edit(root: &Path, file: &str, from: &str, to: &str) {
    let p = root.join(file);
    let s = std::fs::read_to_string(&p).expect("read");
    assert!(
        s.contains(from),
        "{file} no longer contains {from:?}: update this test"
    );
    std::fs::write(&p, s.replacen(from, to, 1)).expect("write");
}

#[test]
fn nextflow_check_fails_on_broken_modules() {
    if venv_bin("python").is_none() {
        return;
    }
    type Breakage = (&'static str, fn(&Path), &'static str);
    let cases: Vec<Breakage> = vec![
        (
            "a flag the binary does not have",
            |r| {
                edit(
                    r,
                    "modules/local/filter/main.nf",
                    "--qc-report",
                    "--qc-reprot",
                )
            },
            "cellweave-filter has no flag --qc-reprot",
        ),
        (
            "a generated module with a flag typo, included by main.nf",
            |r| {
                let m = r.join("modules/local/typo");
                std::fs::create_dir_all(&m).unwrap();
                let src =
                    std::fs::read_to_string(r.join("modules/local/normalize/main.nf")).unwrap();
                std::fs::write(
                    m.join("main.nf"),
                    src.replace("CELLWEAVE_NORMALIZE", "CELLWEAVE_TYPO")
                        .replace("--threads", "--thread"),
                )
                .unwrap();
                edit(
                    r,
                    "main.nf",
                    "include { CELLWEAVE_HVG ",
                    "include { CELLWEAVE_TYPO } from './modules/local/typo'\ninclude { CELLWEAVE_HVG ",
                );
            },
            "cellweave-normalize has no flag --thread",
        ),
        (
            "a flag typo in a model's training call",
            |r| {
                edit(
                    r,
                    "modules/local/train/model/main.nf",
                    "--model ${model}",
                    "--modle ${model}",
                )
            },
            "cellweave-train has no flag --modle",
        ),
        (
            "a flag typo in the benchmark's scoring call (its python3 call is not checked)",
            |r| {
                edit(
                    r,
                    "modules/local/benchmark/main.nf",
                    "--label-key '${meta.label_key}'",
                    "--label-kye '${meta.label_key}'",
                )
            },
            "cellweave-score has no flag --label-kye",
        ),
        (
            "a Nextflow syntax error",
            |r| {
                edit(
                    r,
                    "modules/local/refine/main.nf",
                    "    input:\n",
                    "    input:\n    tuple val(meta), path(x\n",
                )
            },
            "Nextflow parse error",
        ),
        (
            "an include that resolves to nothing",
            |r| {
                edit(
                    r,
                    "main.nf",
                    "'./modules/local/plot'",
                    "'./modules/local/plots'",
                )
            },
            "unresolved include",
        ),
        (
            "a module without a stub block",
            |r| edit(r, "modules/local/hvg/main.nf", "    stub:\n", ""),
            "no stub: block",
        ),
        (
            "a process that calls no cellweave binary",
            |r| {
                edit(
                    r,
                    "modules/local/refine/main.nf",
                    "cellweave-refine \\\\",
                    "python3 refine.py \\\\",
                )
            },
            "must call exactly one cellweave binary",
        ),
        (
            "a parameter that is not in the schema",
            |r| {
                edit(
                    r,
                    "conf/base.config",
                    "cpus   = { params.threads }",
                    "cpus   = { params.n_threads }",
                )
            },
            "params.n_threads is not in the config schema",
        ),
        (
            "a stage option that is not in the schema",
            |r| edit(r, "main.nf", "o.refine.threshold", "o.refine.cutoff"),
            "option refine.cutoff is not in the config schema",
        ),
        (
            "nextflow_schema.json out of step with schemas/config.schema.yaml",
            |r| {
                edit(
                    r,
                    "nextflow_schema.json",
                    "\"default\": 2000",
                    "\"default\": 3000",
                )
            },
            "nextflow_schema.json: differs",
        ),
    ];
    for (what, breakage, expected) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("nextflow");
        copy_dir(&repo().join("workflows/nextflow"), &root);
        breakage(&root);
        let out = check(&root).expect("venv");
        let t = text(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{what}: the check did not fail:\n{t}"
        );
        assert!(
            t.contains(expected),
            "{what}: expected {expected:?} in:\n{t}"
        );
    }
}
