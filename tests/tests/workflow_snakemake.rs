//! The Snakemake workflow, planned (dry runs: the scatter of the pairs stage, the config schema)
//! and run on a small simulated data set where a rule fails (no half-written output).
//! The full run on the shared data is in workflow_snakemake_run.rs.

mod workflow_support;

use cellweave_tests::{assert_has, shared};
use std::path::{Path, PathBuf};
use tempfile::TempDir;
use workflow_support::{job_counts, repo, snakemake, text, venv_bin};

/// The venv's snakemake run in a fresh work folder, with the shared data or without.
struct Workflow {
    smk: PathBuf,
    work: TempDir,
    shared: Option<PathBuf>,
}

impl Workflow {
    /// None (a loud skip) without the venv.
    fn new(shared: Option<PathBuf>) -> Option<Self> {
        let smk = venv_bin("snakemake")?;
        let work = tempfile::tempdir().unwrap();
        Some(Workflow { smk, work, shared })
    }

    /// `text` written to `name` in the work folder.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.work.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    /// Snakemake with `args`: (success, stdout + stderr).
    fn run(&self, args: &[&str]) -> (bool, String) {
        let out = snakemake(&self.smk, self.work.path(), self.shared.as_deref(), args);
        (out.status.success(), text(&out))
    }

    /// Snakemake with `--configfile config` and `extra`.
    fn with_config(&self, config: &Path, extra: &[&str]) -> (bool, String) {
        self.run(&[&["--configfile", config.to_str().unwrap()], extra].concat())
    }

    /// A dry run with `--configfile config` and `extra` that must succeed: its output.
    fn dry_run(&self, config: &Path, extra: &[&str]) -> String {
        let (ok, t) = self.with_config(config, &[&["--dry-run"], extra].concat());
        assert!(ok, "dry run failed:\n{t}");
        t
    }
}

#[test]
fn dry_run_on_the_multi_config_shows_the_scatter() {
    let Some(shared) = shared() else { return };
    let Some(w) = Workflow::new(Some(shared)) else {
        return;
    };
    let t = w.dry_run(&repo().join("workflows/snakemake/config/multi.yaml"), &[]);
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
    let Some(w) = Workflow::new(None) else { return };
    let config = w.file(
        "sim.yaml",
        "outdir: out\ndatasets:\n  four: {simulate: {batches: 4}, label_key: cell_type}\n  two: {simulate: {batches: 2}}\n",
    );
    let t = w.dry_run(&config, &["--printshellcmds"]);
    let jobs = job_counts(&t);
    assert_eq!(jobs.get("pairs_shard"), Some(&6), "{jobs:?}");
    assert_eq!(jobs.get("pairs_all"), Some(&1), "{jobs:?}");
    assert_eq!(jobs.get("score"), Some(&1), "{jobs:?}");
    assert_has(
        &t,
        &[
            "--batch-a b0 --batch-b b3",
            "-o out/four/05_pairs/b0--b3.arrow",
        ],
    );
    assert_has(&t, &["--merge", "out/four/05_pairs/knn.arrow"]);
}

#[test]
fn without_a_configfile_the_demo_is_planned() {
    let Some(w) = Workflow::new(None) else { return };
    let (ok, t) = w.run(&["--dry-run"]);
    assert!(ok, "dry run failed:\n{t}");
    assert_has(
        &t,
        &[
            "results/demo/demo/integrated.h5ad",
            "results/demo/demo/scores.tsv",
        ],
    );
    assert_eq!(job_counts(&t).get("simulate"), Some(&1), "{t}");
}

#[test]
fn config_errors_are_reported_before_anything_runs() {
    let Some(w) = Workflow::new(None) else { return };
    w.file("obs.tsv", "cell_id\tsample\nc1\ta\n");
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
        let config = w.file(&format!("bad{i}.yaml"), yaml);
        let (ok, t) = w.with_config(&config, &["--dry-run"]);
        assert!(!ok, "config {yaml:?} was accepted:\n{t}");
        assert!(
            t.contains(expected),
            "config {yaml:?}: expected {expected:?} in:\n{t}"
        );
    }
}

#[test]
fn a_failing_rule_leaves_no_output_and_the_rerun_resumes() {
    let Some(w) = Workflow::new(None) else { return };
    let sim = "outdir: out\ndatasets:\n  sim: {simulate: {cells: 300, genes: 200, batches: 3, cell_types: 3}}\n";
    // Every cell fails min_genes: cellweave-filter exits 1 after cellweave-simulate succeeded.
    let failing = w.file(
        "fail.yaml",
        &format!("{sim}filter: {{min_genes: 100000}}\n"),
    );
    let (ok, t) = w.with_config(&failing, &[]);
    assert!(!ok, "the workflow did not fail:\n{t}");
    let d = w.work.path().join("out/sim");
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
    assert_has(&log, &["cellweave-filter: error:", "fail the cell filters"]);
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
    let fixed = w.file("fail.yaml", sim);
    let (_, t) = w.with_config(&fixed, &["--dry-run"]);
    let jobs = job_counts(&t);
    assert_eq!(jobs.get("simulate"), None, "simulate would re-run:\n{t}");
    assert_eq!(jobs.get("filter_cells"), Some(&1), "{t}");
}

#[test]
fn snakemake_lint_is_clean() {
    let Some(w) = Workflow::new(None) else { return };
    let config = repo().join("workflows/snakemake/config/default.yaml");
    let (ok, t) = w.with_config(&config, &["--lint"]);
    assert!(
        ok && t.contains("your workflow is in a good condition"),
        "snakemake --lint:\n{t}"
    );
}

#[test]
fn every_rule_names_the_conda_env_that_installs_this_version() {
    let rules = repo().join("workflows/snakemake/rules");
    let mut checked = 0;
    for entry in std::fs::read_dir(&rules).expect("rules folder") {
        let path = entry.expect("rules entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("smk") {
            continue;
        }
        let src = std::fs::read_to_string(&path).expect("rule file");
        // Each rule's text runs from its `rule` line to the next one.
        for block in src.split("\nrule ").skip(1) {
            let name = block.split(':').next().unwrap_or("?");
            if block.contains("\n    shell:") {
                assert!(
                    block.contains("\n    conda:\n        CONDA_ENV\n"),
                    "{}: rule {name} has a shell command but no `conda: CONDA_ENV`",
                    path.display()
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 10,
        "only {checked} rules with a shell command found"
    );
    let common = std::fs::read_to_string(rules.join("common.smk")).expect("common.smk");
    assert!(
        common.contains(r#"CONDA_ENV = str(WORKFLOW_DIR / "envs" / "cellweave.yaml")"#),
        "common.smk does not define CONDA_ENV as envs/cellweave.yaml"
    );
    let env = repo().join("workflows/snakemake/envs/cellweave.yaml");
    let env = std::fs::read_to_string(&env).expect("envs/cellweave.yaml");
    let pin = format!("- cellweave=={}", env!("CARGO_PKG_VERSION"));
    assert!(
        env.lines().any(|l| l.trim() == pin),
        "envs/cellweave.yaml does not pin `{pin}`:\n{env}"
    );
}
