//! The cluster path of the Snakemake workflow: a small simulated data set run through the
//! cluster-generic executor with the `local-cluster` profile (workflows/snakemake/profiles/),
//! whose submit script stands in for sbatch. Every job must have been submitted as its own
//! process, with the threads its rule declares and a mem_mb computed from its input size,
//! stayed within that memory, and the chain must produce its results.

mod workflow_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use workflow_support::{repo, snakemake, text, venv_bin};

const CONFIG: &str = "outdir: results/cluster
threads: 2
mem_mb: {per_input_mb: 4}
datasets:
  tiny:
    simulate: {cells: 600, genes: 300, batches: 2, cell_types: 3, seed: 3}
    batch_key: batch
    label_key: cell_type
train: {stage1_epochs: 1, epochs: 2}
";

/// `key\tvalue` lines of a job record file.
fn record(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn snakemake_through_a_cluster_executor() {
    let Some(smk) = venv_bin("snakemake") else {
        return;
    };
    let python = venv_bin("python").expect("venv python");
    let plugin = std::process::Command::new(&python)
        .args(["-c", "import snakemake_executor_plugin_cluster_generic"])
        .status()
        .expect("run python");
    if !plugin.success() {
        cellweave_tests::missing::<()>(
            "snakemake-executor-plugin-cluster-generic is not installed (run scripts/setup.sh)",
        );
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("cluster.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let profile = repo().join("workflows/snakemake/profiles/local-cluster");
    let out = snakemake(
        &smk,
        work.path(),
        None,
        &[
            "--profile",
            profile.to_str().unwrap(),
            "--configfile",
            config.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "the cluster run failed:\n{}",
        text(&out)
    );
    let results = work.path().join("results/cluster/tiny");
    for f in ["integrated.h5ad", "scores.tsv", "umap.png"] {
        assert!(results.join(f).is_file(), "{f} missing:\n{}", text(&out));
    }

    // One record per submitted job.
    let jobs_dir = work.path().join(".snakemake/local-cluster");
    let jobs: Vec<_> = std::fs::read_dir(&jobs_dir)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", jobs_dir.display(), text(&out)))
        .map(|e| e.unwrap().path())
        .collect();
    let submitted = text(&out).matches("with external jobid").count();
    assert_eq!(jobs.len(), submitted, "{}", text(&out));
    let mut rules: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    let mut pids = BTreeSet::new();
    for job in &jobs {
        let req = record(&job.join("request.tsv"));
        let usage = record(&job.join("usage.tsv"));
        let verdict = std::fs::read_to_string(job.join("verdict")).unwrap_or_default();
        assert_eq!(verdict.trim(), "ok", "{}: {req:?} {usage:?}", job.display());
        assert_eq!(
            std::fs::read_to_string(job.join("exit")).unwrap().trim(),
            "0"
        );
        let pid: u32 = std::fs::read_to_string(job.join("pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(pids.insert(pid), "two jobs in one process {pid}");
        let threads: usize = req["threads"].parse().unwrap();
        let mem_mb: u64 = req["mem_mb"].parse().unwrap();
        let rss_kb: u64 = usage["max_rss_kb"].parse().unwrap();
        assert!(
            rss_kb <= mem_mb * 1024,
            "{}: {rss_kb} kB > {mem_mb} MB",
            req["rule"]
        );
        rules.insert(req["rule"].clone(), (threads, mem_mb));
    }
    eprintln!("jobs (rule: threads, mem_mb): {rules:?}");
    // Threads as the rules declare them (single-threaded stages ask for 1).
    assert_eq!(rules["filter_cells"].0, 1, "{rules:?}");
    assert_eq!(rules["pairs_all"].0, 2, "{rules:?}");
    assert_eq!(rules["train_stage2"].0, 2, "{rules:?}");
    // mem_mb grows with the input: floor (4000 MB, 8000 for train and score) + 4 MB per MB.
    let input_mb = |p: &str| std::fs::metadata(results.join(p)).unwrap().len() as f64 / 1048576.0;
    let want = 4000 + (4.0 * input_mb("02_filtered.arrow")).round() as u64;
    assert_eq!(rules["normalize"].1, want, "{rules:?}");
    assert!(rules.values().all(|&(_, m)| m >= 4000), "{rules:?}");
}
