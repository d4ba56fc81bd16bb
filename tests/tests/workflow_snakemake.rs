//! The Snakemake workflow, planned (dry runs: the scatter of the pairs stage, the config schema)
//! and run on a small simulated data set where a rule fails (no half-written output).
//! The full run on the shared data is in workflow_snakemake_run.rs.

mod workflow_support;

use std::path::Path;
use workflow_support::{job_counts, repo, snakemake, text, venv_bin};

fn write(path: &Path, s: &str) {
    std::fs::write(path, s).expect("write");
}

#[test]
fn dry_run_on_the_multi_config_shows_the_scatter() {
    let Some(shared) = cellweave_tests::shared() else {
        return;
    };
    let Some(smk) = venv_bin("snakemake") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let config = repo().join("workflows/snakemake/config/multi.yaml");
    let out = snakemake(
        &smk,
        work.path(),
        Some(&shared),
        &["--configfile", config.to_str().unwrap(), "--dry-run"],
    );
    let t = text(&out);
    assert!(out.status.success(), "dry run failed:\n{t}");
    let jobs = job_counts(&t);
    // cellbench_3tech: 3 batches (obs TSV) -> 3 shards; kang_ifnb: 4 -> 6; 6 simulated -> 15.
    assert_eq!(jobs.get("pairs_shard"), Some(&(3 + 6 + 15)), "{jobs:?}");
    assert_eq!(jobs.get("pairs_knn"), Some(&3), "{jobs:?}");
    assert_eq!(jobs.get("pairs_merge"), Some(&3), "{jobs:?}");
    // Two batches (cellbench_2tech_fullgenes) or unknown batches (pbmc_ctrl_stim, pbmc_impute): one job.
    assert_eq!(jobs.get("pairs_all"), Some(&3), "{jobs:?}");
    assert_eq!(jobs.get("import_data"), Some(&5), "{jobs:?}");
    assert_eq!(jobs.get("simulate"), Some(&1), "{jobs:?}");
    assert_eq!(jobs.get("train_stage1"), Some(&6), "{jobs:?}");
    assert_eq!(jobs.get("train_stage2"), Some(&6), "{jobs:?}");
    assert_eq!(jobs.get("export"), Some(&6), "{jobs:?}");
    assert_eq!(
        jobs.get("score"),
        Some(&4),
        "data sets with a label_key: {jobs:?}"
    );
    assert_eq!(jobs.get("impute"), Some(&1), "{jobs:?}");
    for shard in [
        "kang_ifnb: seed pairs between two batches (ctrl101--stim107)",
        "simulated_6: seed pairs between two batches (b4--b5)",
    ] {
        assert!(t.contains(shard), "no job {shard:?} in:\n{t}");
    }
}

#[test]
fn dry_run_prints_the_shard_commands() {
    let Some(smk) = venv_bin("snakemake") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("sim.yaml");
    write(
        &config,
        "outdir: out\ndatasets:\n  four: {simulate: {batches: 4}, label_key: cell_type}\n  two: {simulate: {batches: 2}}\n",
    );
    let out = snakemake(
        &smk,
        work.path(),
        None,
        &[
            "--configfile",
            config.to_str().unwrap(),
            "--dry-run",
            "--printshellcmds",
        ],
    );
    let t = text(&out);
    assert!(out.status.success(), "dry run failed:\n{t}");
    let jobs = job_counts(&t);
    assert_eq!(jobs.get("pairs_shard"), Some(&6), "{jobs:?}");
    assert_eq!(jobs.get("pairs_all"), Some(&1), "{jobs:?}");
    assert_eq!(jobs.get("score"), Some(&1), "{jobs:?}");
    assert!(
        t.contains("--batch-a b0 --batch-b b3") && t.contains("-o out/four/05_pairs/b0--b3.arrow"),
        "{t}"
    );
    assert!(
        t.contains("--merge") && t.contains("out/four/05_pairs/knn.arrow"),
        "{t}"
    );
}

#[test]
fn without_a_configfile_the_demo_is_planned() {
    let Some(smk) = venv_bin("snakemake") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let out = snakemake(&smk, work.path(), None, &["--dry-run"]);
    let t = text(&out);
    assert!(out.status.success(), "dry run failed:\n{t}");
    assert!(
        t.contains("results/demo/demo/integrated.h5ad")
            && t.contains("results/demo/demo/scores.tsv"),
        "{t}"
    );
    assert_eq!(job_counts(&t).get("simulate"), Some(&1), "{t}");
}

#[test]
fn config_errors_are_reported_before_anything_runs() {
    let Some(smk) = venv_bin("snakemake") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let obs = work.path().join("obs.tsv");
    write(&obs, "cell_id\tsample\nc1\ta\n");
    let cases = [
        (
            "datasets:\n  x: {simulate: {}}\nfilter: {min_cell: 3}\n",
            "min_cell",
        ),
        ("datasets:\n  x: {obs: obs.tsv}\n", "input"),
        (
            "datasets:\n  x: {simulate: {}}\ntrain: {device: tpu}\n",
            "tpu",
        ),
        (
            "datasets:\n  x: {input: in.h5ad, obs: obs.tsv, batch_key: donor}\n",
            "field 'donor'",
        ),
    ];
    for (i, (yaml, expected)) in cases.iter().enumerate() {
        let config = work.path().join(format!("bad{i}.yaml"));
        write(&config, yaml);
        let out = snakemake(
            &smk,
            work.path(),
            None,
            &["--configfile", config.to_str().unwrap(), "--dry-run"],
        );
        let t = text(&out);
        assert!(!out.status.success(), "config {yaml:?} was accepted:\n{t}");
        assert!(
            t.contains(expected),
            "config {yaml:?}: expected {expected:?} in:\n{t}"
        );
    }
}

#[test]
fn a_failing_rule_leaves_no_output_and_the_rerun_resumes() {
    let Some(smk) = venv_bin("snakemake") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("fail.yaml");
    // Every cell fails min_genes: cellweave-filter exits 1 after cellweave-simulate succeeded.
    write(
        &config,
        "outdir: out\ndatasets:\n  sim: {simulate: {cells: 300, genes: 200, batches: 3, cell_types: 3}}\nfilter: {min_genes: 100000}\n",
    );
    let out = snakemake(
        &smk,
        work.path(),
        None,
        &["--configfile", config.to_str().unwrap()],
    );
    let t = text(&out);
    assert!(!out.status.success(), "the workflow did not fail:\n{t}");
    let d = work.path().join("out/sim");
    assert!(
        d.join("01_raw.arrow").is_file(),
        "the simulate output is missing"
    );
    for f in [
        "02_filtered.arrow",
        "02_qc.tsv",
        "02_genes_qc.tsv",
        "03_normalized.arrow",
    ] {
        assert!(
            !d.join(f).exists(),
            "{f} was left behind by the failing rule"
        );
    }
    let log = std::fs::read_to_string(d.join("logs/02_filter.log")).expect("filter log");
    assert!(
        log.contains("cellweave-filter: error:") && log.contains("fail the cell filters"),
        "{log}"
    );
    // No stray temporary files of the atomic writers either.
    let stray: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert!(
        stray.iter().all(|n| !n.to_string_lossy().contains("tmp")),
        "{stray:?}"
    );

    // Fixed config: the next run starts at filter, simulate is not re-run.
    write(&config, "outdir: out\ndatasets:\n  sim: {simulate: {cells: 300, genes: 200, batches: 3, cell_types: 3}}\n");
    let out = snakemake(
        &smk,
        work.path(),
        None,
        &["--configfile", config.to_str().unwrap(), "--dry-run"],
    );
    let t = text(&out);
    let jobs = job_counts(&t);
    assert_eq!(jobs.get("simulate"), None, "simulate would re-run:\n{t}");
    assert_eq!(jobs.get("filter_cells"), Some(&1), "{t}");
}

#[test]
fn snakemake_lint_is_clean() {
    let Some(smk) = venv_bin("snakemake") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let config = repo().join("workflows/snakemake/config/default.yaml");
    let out = snakemake(
        &smk,
        work.path(),
        None,
        &["--configfile", config.to_str().unwrap(), "--lint"],
    );
    let t = text(&out);
    assert!(
        out.status.success() && t.contains("your workflow is in a good condition"),
        "snakemake --lint:\n{t}"
    );
}
