//! Faults a cluster job meets (issue 20): a failed or killed run leaves the previous outputs
//! exactly as they were, outputs are checked before any work, no panic or signal reaches the
//! user (never exit 101 or 135), inputs that change underneath a stage give one line, every
//! reader checks the contract, and `score --knn approx` is reproducible.
//!
//! The full-disk and read-only cases mount a small tmpfs: they need root (CI runs as root)
//! and are skipped loudly otherwise. The checkpoint faults of `cellweave-train` are in the
//! training tests.

use arrow_array::{Array, ArrayRef, ListArray, RecordBatch};
use arrow_schema::Schema;
use cellweave::io::table;
use cellweave_tests::{command, missing, run, run_ok, s};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A small data set taken through simulate, filter, normalize, hvg and pairs (built once).
struct Fx {
    dir: PathBuf,
}

impl Fx {
    fn p(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn fx() -> &'static Fx {
    static FX: OnceLock<Fx> = OnceLock::new();
    FX.get_or_init(|| {
        // In the target's scratch folder, rebuilt by every run (not left in /tmp).
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("faults-fx");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = |n: &str| dir.join(n);
        let (sim, filt, norm, hvg, pairs) = (
            p("sim.arrow"),
            p("filt.arrow"),
            p("norm.arrow"),
            p("hvg.arrow"),
            p("pairs.arrow"),
        );
        run_ok(
            "simulate",
            &[
                "-o",
                s(&sim),
                "--cells",
                "600",
                "--genes",
                "2000",
                "--batches",
                "2",
                "--cell-types",
                "3",
                "--density",
                "0.1",
                "--seed",
                "3",
                "-q",
            ],
        );
        run_ok(
            "filter",
            &[s(&sim), "-o", s(&filt), "--min-cells", "1", "-q"],
        );
        run_ok("normalize", &[s(&filt), "-o", s(&norm), "-q"]);
        run_ok(
            "hvg",
            &[s(&norm), "-o", s(&hvg), "--n-top-genes", "200", "-q"],
        );
        run_ok(
            "pairs",
            &[
                s(&hvg),
                "-o",
                s(&pairs),
                "--n-pcs",
                "10",
                "--n-cca",
                "5",
                "-q",
            ],
        );
        Fx { dir }
    })
}

/// A large raw-counts table (~30 MB), for faults that must land while a stage reads.
fn big() -> &'static PathBuf {
    static BIG: OnceLock<PathBuf> = OnceLock::new();
    BIG.get_or_init(|| {
        let p = fx().p("big.arrow");
        run_ok(
            "simulate",
            &[
                "-o",
                s(&p),
                "--cells",
                "20000",
                "--genes",
                "2000",
                "--density",
                "0.1",
                "--seed",
                "1",
                "-q",
            ],
        );
        p
    })
}

/// The arguments of `cellweave-train` on the fixture (model directory `m`, embedding `emb`),
/// then `extra`.
fn train_args(m: &Path, emb: &Path, extra: &[&str]) -> Vec<String> {
    let fx = fx();
    let (hvg, pairs) = (fx.p("hvg.arrow"), fx.p("pairs.arrow"));
    let mut a = vec![
        s(&hvg),
        "--pairs",
        s(&pairs),
        "-o",
        s(m),
        "--embedding",
        s(emb),
    ];
    a.extend(extra);
    a.into_iter().map(String::from).collect()
}

/// Owned command-line arguments.
fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// `INPUT -o OUTPUT EXTRA...`, owned.
fn io_args(input: &Path, output: &Path, extra: &[&str]) -> Vec<String> {
    strings(&[&[s(input), "-o", s(output)], extra].concat())
}

/// `cellweave-filter INPUT -o F --qc-report Q --genes-out G -q`: a run with three outputs.
fn filter_args<'a>(input: &'a Path, f: &'a Path, q: &'a Path, g: &'a Path) -> [&'a str; 8] {
    [
        s(input),
        "-o",
        s(f),
        "--qc-report",
        s(q),
        "--genes-out",
        s(g),
        "-q",
    ]
}

/// A tiny, one-epoch model.
const TINY: [&str; 8] = [
    "--epochs",
    "1",
    "--latent",
    "8",
    "--queue",
    "64",
    "--batch-size",
    "64",
];

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

/// Exit status 1 and exactly one line on stderr, which contains every one of `what`.
fn one_line_error(out: &Output, what: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(code(out), Some(1), "expected exit status 1, stderr: {err}");
    assert_eq!(err.lines().count(), 1, "expected one error line:\n{err}");
    for w in what {
        assert!(err.contains(w), "the error should mention {w:?}: {err}");
    }
    err
}

/// Files in `dir` that are temporary outputs (`.NAME.tmp-PID`).
fn temps(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with('.') && n.contains(".tmp-"))
        .collect()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A tmpfs of `size` (e.g. "16k") mounted at a fresh directory, read-only if asked; unmounted
/// on drop. None (skipped loudly, or a failure under CI=true) when this cannot mount.
struct Mount(tempfile::TempDir);

impl Mount {
    fn new(size: &str, read_only: bool) -> Option<Mount> {
        let d = tempfile::tempdir().unwrap();
        let opts = format!("size={size}{}", if read_only { ",ro" } else { "" });
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &opts, "tmpfs", s(d.path())])
            .stderr(Stdio::null())
            .status()
            .map(|st| st.success())
            .unwrap_or(false);
        if ok {
            Some(Mount(d))
        } else {
            missing(&format!(
                "cannot mount a {size} tmpfs (needs root): the full-disk and read-only cases are not run"
            ))
        }
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

// ------------------------------------------------------------------ one commit per run

/// Run filter with its main output and QC report (holding "previous" contents) in a fresh
/// directory and its genes table in `genes_dir`; returns the run, that directory and the
/// checks that the previous outputs are intact and no temporary file is left.
fn filter_with_genes_in(genes_dir: &Path) -> (Output, tempfile::TempDir, impl Fn()) {
    let d = tempfile::tempdir().unwrap();
    let (f, q, g) = (
        d.path().join("f.arrow"),
        d.path().join("q.tsv"),
        genes_dir.join("g.arrow"),
    );
    write(&f, "previous f");
    write(&q, "previous q");
    let sim = fx().p("sim.arrow");
    let out = run("filter", &filter_args(&sim, &f, &q, &g));
    let dir = d.path().to_path_buf();
    let intact = move || {
        assert_eq!(read(&f), "previous f");
        assert_eq!(read(&q), "previous q");
        assert!(!g.exists());
        assert_eq!(temps(&dir), Vec::<String>::new());
    };
    (out, d, intact)
}

/// Item 3: a run that fails on its last output (a full disk) leaves the outputs it wrote
/// before that exactly as the previous run left them, reports the full disk as such, and
/// leaves no temporary file.
#[test]
fn full_disk_keeps_every_previous_output() {
    let Some(m) = Mount::new("16k", false) else {
        return;
    };
    let (out, _d, intact) = filter_with_genes_in(m.path());
    let err = one_line_error(&out, &["g.arrow", "No space left on device"]);
    assert!(!err.contains("not a readable"), "{err}");
    intact();
    assert_eq!(temps(m.path()), Vec::<String>::new());
}

/// Item 3: an output in a read-only place fails the run before any work, and the other
/// outputs keep their previous contents.
#[test]
fn read_only_output_fails_before_work() {
    let Some(m) = Mount::new("64k", true) else {
        return;
    };
    let (out, _d, intact) = filter_with_genes_in(m.path());
    one_line_error(&out, &["g.arrow"]);
    intact();
}

/// Item 4: output names are checked before any work: a bad name fails the run at once and
/// no other output (written earlier in the run, before) appears.
#[test]
fn output_names_are_checked_before_work() {
    let fx = fx();
    let d = tempfile::tempdir().unwrap();
    let o = |n: &str| d.path().join(n);
    let cases: Vec<(&str, Vec<String>, &str, Vec<PathBuf>)> = vec![
        (
            "hvg",
            io_args(
                &fx.p("norm.arrow"),
                &o("h.xyz"),
                &["--genes-out", s(&o("hg.tsv"))],
            ),
            "h.xyz",
            vec![o("hg.tsv")],
        ),
        (
            "impute",
            io_args(
                &fx.p("filt.arrow"),
                &o("i.xyz"),
                &["--log", s(&o("il.tsv")), "--epochs", "1"],
            ),
            "i.xyz",
            vec![o("il.tsv")],
        ),
        (
            "train",
            train_args(
                &o("m1"),
                &o("e1.arrow"),
                &[&["--log", s(&o("l.xyz"))][..], &TINY].concat(),
            ),
            "l.xyz",
            vec![o("e1.arrow"), o("m1")],
        ),
        (
            "train",
            train_args(&o("m2"), &o("e.xyz"), &TINY),
            "e.xyz",
            vec![o("m2")],
        ),
    ];
    for (tool, args, bad, others) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(tool, &args);
        one_line_error(&out, &[bad]);
        for p in others {
            assert!(
                !p.exists(),
                "{tool}: {} written by a run that failed",
                p.display()
            );
        }
    }
}

/// Item 14: one path given as two outputs is refused, not silently overwritten.
#[test]
fn one_path_for_two_outputs_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let x = d.path().join("x.arrow");
    let args = train_args(&d.path().join("m"), &x, &["--log", s(&x), "--epochs", "1"]);
    let out = run(
        "train",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    one_line_error(&out, &["x.arrow", "two outputs"]);
    assert!(!x.exists());
}

// ------------------------------------------------------------------ kills and stale temps

fn dead_pid() -> u32 {
    (4_000_000..4_100_000)
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .unwrap()
}

/// Item 12: the temporary outputs of dead processes are removed by the next run on the same
/// output; those of live processes stay.
#[test]
fn stale_temps_of_dead_processes_are_removed() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("n.arrow");
    let dead = d.path().join(format!(".n.arrow.tmp-{}", dead_pid()));
    let live = d
        .path()
        .join(format!(".n.arrow.tmp-{}", std::process::id()));
    let other = d.path().join(format!(".other.arrow.tmp-{}", dead_pid()));
    for p in [&dead, &live, &other] {
        write(p, "partial");
    }
    run_ok(
        "normalize",
        &[s(&fx().p("filt.arrow")), "-o", s(&out), "-q"],
    );
    assert!(out.exists());
    assert!(!dead.exists(), "a dead process's temp file was left");
    assert!(live.exists(), "a live process's temp file was removed");
    assert!(other.exists(), "another output's temp file was removed");
}

/// kill -9 in the middle of a run with several outputs: every previous output is intact;
/// the rerun removes what the killed run left and writes complete outputs.
#[test]
fn kill_mid_run_keeps_previous_outputs() {
    let d = tempfile::tempdir().unwrap();
    let (f, q, g) = (
        d.path().join("f.arrow"),
        d.path().join("q.tsv"),
        d.path().join("g.tsv"),
    );
    for p in [&f, &q, &g] {
        write(p, "previous");
    }
    let args = filter_args(big(), &f, &q, &g);
    let mut child = command("filter", &args).spawn().unwrap();
    // Kill once the run has begun writing (a temporary output exists).
    let t0 = std::time::Instant::now();
    while temps(d.path()).is_empty() && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let st = child.wait().unwrap();
    assert!(!st.success());
    for p in [&f, &q, &g] {
        assert_eq!(
            read(p),
            "previous",
            "{} changed by a killed run",
            p.display()
        );
    }
    run_ok("filter", &args);
    assert_eq!(temps(d.path()), Vec::<String>::new());
    assert!(table::read_cells(&f).is_ok());
    assert!(read(&q).lines().count() > 1 && read(&g).lines().count() > 1);
}

// ------------------------------------------------------------------ no panics

/// Item 5: every numeric flag out of its range is a one-line usage error (exit 1) naming the
/// flag and its range, never a panic (exit 101).
#[test]
fn numeric_flags_out_of_range_are_usage_errors() {
    let fx = fx();
    let d = tempfile::tempdir().unwrap();
    let (hvg, filt) = (fx.p("hvg.arrow"), fx.p("filt.arrow"));
    let o = d.path().join("o.arrow");
    let emb = d.path().join("e.arrow");
    let m = d.path().join("m");
    let train = |flag: &'static str, v: &'static str| ("train", train_args(&m, &emb, &[flag, v]));
    let one = |tool: &'static str, input: &Path, flag: &'static str, v: &'static str| {
        (tool, io_args(input, &o, &[flag, v]))
    };
    let cases = vec![
        one("pairs", &hvg, "--n-pcs", "0"),
        one("pairs", &hvg, "--knn", "0"),
        one("pairs", &hvg, "--k-anchor", "0"),
        one("pairs", &hvg, "--n-cca", "0"),
        one("pairs", &hvg, "--max-features", "0"),
        train("--latent", "0"),
        train("--batch-size", "1"),
        train("--epochs", "0"),
        train("--queue", "0"),
        train("--lr", "0"),
        train("--lr", "nan"),
        train("--temperature", "0"),
        train("--momentum", "1.5"),
        train("--dropout", "1"),
        one("hvg", &fx.p("norm.arrow"), "--n-top-genes", "0"),
        one("hvg", &fx.p("norm.arrow"), "--n-bins", "0"),
        one("hvg", &fx.p("norm.arrow"), "--span", "0"),
        one("normalize", &filt, "--target-sum", "0"),
        one("filter", &filt, "--max-mito-pct", "101"),
        one("filter", &filt, "--min-counts", "inf"),
        one("impute", &filt, "--hidden", "10,0,10"),
        one("impute", &filt, "--knn", "0"),
        one("plot", &fx.p("sim.arrow"), "--n-neighbors", "1"),
        one("plot", &fx.p("sim.arrow"), "--spread", "0"),
        one("simulate", &fx.p("sim.arrow"), "--cells", "0"),
        one("simulate", &fx.p("sim.arrow"), "--density", "0"),
        one("normalize", &filt, "--threads", "0"),
    ];
    for (tool, mut args) in cases {
        if tool == "simulate" {
            args.remove(0);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(tool, &args);
        let err = stderr(&out);
        assert_eq!(code(&out), Some(1), "cellweave-{tool} {args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line expected: {err}");
        let flag = args[args.len() - 2];
        assert!(
            err.lines().next().unwrap_or("").contains(flag) && err.contains("expected"),
            "cellweave-{tool} {args:?} should name {flag} and its range: {err}"
        );
    }
}

/// Run with stderr a pipe whose reader has gone (`2>&1 | head -1`).
fn with_closed_stderr(tool: &str, args: &[&str]) -> std::process::ExitStatus {
    let mut child = command(tool, args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    child.wait().unwrap()
}

/// Item 5: logging to a closed stderr never aborts a run.
#[test]
fn closed_stderr_does_not_abort() {
    let fx = fx();
    let d = tempfile::tempdir().unwrap();
    let o = |n: &str| d.path().join(n);
    // TOOL FIXTURE_INPUT -o OUTPUT EXTRA..., and the output to look for.
    let case = |tool: &'static str, input: &str, output: &str, extra: &[&str]| {
        (tool, io_args(&fx.p(input), &o(output), extra), o(output))
    };
    let cases: Vec<(&str, Vec<String>, PathBuf)> = vec![
        case(
            "pairs",
            "hvg.arrow",
            "p.arrow",
            &["--n-pcs", "10", "--n-cca", "5"],
        ),
        (
            "train",
            train_args(&o("m"), &o("e.arrow"), &TINY),
            o("e.arrow"),
        ),
        case(
            "impute",
            "filt.arrow",
            "i.arrow",
            &["--epochs", "1", "--hidden", "16,8,16"],
        ),
        case("filter", "sim.arrow", "f.arrow", &[]),
    ];
    for (tool, args, output) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let st = with_closed_stderr(tool, &args);
        assert_eq!(
            st.code(),
            Some(0),
            "cellweave-{tool} with a closed stderr: {st:?}"
        );
        assert!(output.exists(), "cellweave-{tool}: no output");
    }
    // A failing run with a closed stderr still fails with status 1 (not a panic).
    let st = with_closed_stderr(
        "hvg",
        &[
            s(&fx.p("norm.arrow")),
            "-o",
            s(&o("h.arrow")),
            "--flavor",
            "x",
        ],
    );
    assert_eq!(st.code(), Some(1));
}

/// Item 6: an error whose text says "Broken pipe" is an error like any other; only a closed
/// pipe (by its kind) ends a run quietly.
#[test]
fn broken_pipe_is_recognised_by_kind_not_text() {
    let d = tempfile::tempdir().unwrap();
    let x = d.path().join("x.arrow");
    let out = run(
        "hvg",
        &[
            s(&fx().p("norm.arrow")),
            "--flavor",
            "Broken pipe",
            "-o",
            s(&x),
        ],
    );
    one_line_error(&out, &["--flavor", "Broken pipe"]);
    assert!(!x.exists());
}

// ------------------------------------------------------------------ inputs that change

/// Item 7: an input truncated or rewritten in place while a stage reads it gives one line
/// naming it (exit 1), never SIGBUS (exit 135), and no temporary output is left.
#[test]
fn input_changed_while_read_is_one_line() {
    let d = tempfile::tempdir().unwrap();
    let mut hit = 0;
    for (round, delay_ms) in [0u64, 5, 20, 50, 100, 200, 400, 5, 20, 50, 100, 200]
        .into_iter()
        .enumerate()
    {
        let input = d.path().join(format!("in{round}.arrow"));
        std::fs::copy(big(), &input).unwrap();
        let len = std::fs::metadata(&input).unwrap().len();
        let out = d.path().join(format!("out{round}.arrow"));
        let child = command("normalize", &[s(&input), "-o", s(&out), "-q"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        // In place (same inode): truncate, as `cp other input` does first, or halve it.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&input)
            .unwrap();
        f.set_len(if round % 2 == 0 { len / 2 } else { 0 }).unwrap();
        drop(f);
        let o = child.wait_with_output().unwrap();
        let err = stderr(&o);
        assert_ne!(code(&o), Some(135), "SIGBUS reached the user");
        assert!(
            o.status.code().is_some(),
            "killed by a signal: {:?} {err}",
            o.status
        );
        match code(&o) {
            Some(0) => {}
            Some(1) => {
                assert_eq!(err.lines().count(), 1, "{err}");
                assert!(err.contains(&format!("in{round}.arrow")), "{err}");
                if err.contains("while this run read it") {
                    hit += 1;
                }
                assert!(!out.exists());
            }
            other => panic!("exit {other:?}: {err}"),
        }
        assert_eq!(temps(d.path()), Vec::<String>::new(), "{err}");
    }
    assert!(hit > 0, "no run was caught reading a changing input");
}

// ------------------------------------------------------------------ contract rules

/// Rewrite a table with its schema metadata changed by `edit` (and its batches by `batches`).
fn rewrite(
    src: &Path,
    dst: &Path,
    edit: impl FnOnce(&mut HashMap<String, String>),
    batches: impl FnOnce(Vec<RecordBatch>) -> Vec<RecordBatch>,
) {
    let (schema, b) = table::read_batches(src).unwrap();
    let mut md: HashMap<String, String> = schema.metadata().clone().into();
    edit(&mut md);
    let schema = Arc::new(Schema::new_with_metadata(schema.fields().clone(), md));
    let b: Vec<RecordBatch> = batches(b)
        .into_iter()
        .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()).unwrap())
        .collect();
    table::write_batches(dst, schema, &b).unwrap();
}

fn gene_ids_with_duplicate(md: &mut HashMap<String, String>) {
    let key = "cellweave.gene_ids";
    let mut ids: Vec<String> = serde_json::from_str(&md[key]).unwrap();
    ids[1] = ids[0].clone();
    md.insert(key.into(), serde_json::to_string(&ids).unwrap());
}

/// Item 9 and 14: duplicate gene ids and a wrong n_genes are refused by every reader.
#[test]
fn cells_tables_breaking_the_contract_are_refused() {
    let fx = fx();
    let d = tempfile::tempdir().unwrap();
    // Each stage gets the values it takes: raw counts or log1p.
    let broken = |src: &str, name: &str, edit: fn(&mut HashMap<String, String>)| {
        let p = d.path().join(name);
        rewrite(&fx.p(src), &p, edit, |b| b);
        p
    };
    let wrong_n_genes = |md: &mut HashMap<String, String>| {
        md.insert("cellweave.n_genes".into(), "7".into());
    };
    let cases = [
        (
            broken("filt.arrow", "dup_counts.arrow", gene_ids_with_duplicate),
            broken("norm.arrow", "dup_log.arrow", gene_ids_with_duplicate),
            "duplicate",
        ),
        (
            broken("filt.arrow", "n_counts.arrow", wrong_n_genes),
            broken("norm.arrow", "n_log.arrow", wrong_n_genes),
            "cellweave.n_genes",
        ),
    ];
    let o = d.path().join("o.arrow");
    let h5ad = d.path().join("o.h5ad");
    for (counts, log, what) in &cases {
        for (tool, input, extra) in [
            ("filter", counts, vec![]),
            ("normalize", counts, vec![]),
            ("impute", counts, vec!["--method", "gene-mean"]),
            ("hvg", log, vec!["--n-top-genes", "50"]),
            ("pairs", log, vec!["--n-pcs", "10"]),
            ("score", log, vec![]),
            ("export", log, vec![]),
        ] {
            let out_path = if tool == "export" { &h5ad } else { &o };
            let mut args = vec![s(input), "-o", s(out_path), "-q"];
            args.extend(extra);
            let out = run(tool, &args);
            one_line_error(&out, &[s(input), what]);
            assert!(!out_path.exists(), "{tool}");
        }
    }
}

/// Item 14: a pairs shard whose n_cells disagrees with its cells is refused by
/// `pairs --merge`, naming the shard; an empty pairs table (no record batch) reads as a table
/// of no pairs.
#[test]
fn pairs_shards_are_checked() {
    let fx = fx();
    let d = tempfile::tempdir().unwrap();
    let (knn, ab, bad, out) = (
        d.path().join("knn.arrow"),
        d.path().join("ab.arrow"),
        d.path().join("bad.arrow"),
        d.path().join("merged.arrow"),
    );
    let hvg = fx.p("hvg.arrow");
    let common = ["--n-pcs", "10", "--n-cca", "5", "-q"];
    let mut a = vec![s(&hvg), "-o", s(&knn), "--knn-only"];
    a.extend(common);
    run_ok("pairs", &a);
    let cells = table::read_cells(&hvg).unwrap();
    let batches = cells.batch.categories.clone();
    let mut a = vec![
        s(&hvg),
        "-o",
        s(&ab),
        "--batch-a",
        &batches[0],
        "--batch-b",
        &batches[1],
    ];
    a.extend(common);
    run_ok("pairs", &a);
    run_ok("pairs", &["--merge", s(&knn), s(&ab), "-o", s(&out), "-q"]);
    let n = cells.n_cells() + 1;
    rewrite(
        &ab,
        &bad,
        |md| {
            md.insert("cellweave.n_cells".into(), n.to_string());
        },
        |b| b,
    );
    std::fs::remove_file(&out).unwrap();
    let o = run("pairs", &["--merge", s(&knn), s(&bad), "-o", s(&out)]);
    one_line_error(&o, &["bad.arrow", "n_cells"]);
    assert!(!out.exists());

    let empty = d.path().join("empty.arrow");
    rewrite(&knn, &empty, |_| {}, |_| Vec::new());
    let t = table::read_pairs(&empty).unwrap_or_else(|e| panic!("{e}"));
    assert!(t.is_empty());
}

/// Item 11: an expression row whose two lists differ in length is reported against the
/// input (not the output, not no file) by the streaming stages.
#[test]
fn row_errors_name_the_input() {
    let fx = fx();
    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("bad.arrow");
    rewrite(
        &fx.p("sim.arrow"),
        &bad,
        |_| {},
        |batches| {
            batches
                .into_iter()
                .map(|b| {
                    let i = b.schema().index_of("expression").unwrap();
                    let l = b.column(i).as_any().downcast_ref::<ListArray>().unwrap();
                    let mut offsets: Vec<i32> = l.value_offsets().to_vec();
                    // Move one value from the second row into the first.
                    if offsets.len() > 2 && offsets[2] > offsets[1] {
                        offsets[1] += 1;
                    }
                    let field = match b.schema().field(i).data_type() {
                        arrow_schema::DataType::List(f) => f.clone(),
                        _ => unreachable!(),
                    };
                    let new = ListArray::new(
                        field,
                        arrow_buffer::OffsetBuffer::new(offsets.into()),
                        l.values().clone(),
                        None,
                    );
                    let mut cols: Vec<ArrayRef> = b.columns().to_vec();
                    cols[i] = Arc::new(new);
                    RecordBatch::try_new(b.schema(), cols).unwrap()
                })
                .collect()
        },
    );
    let o = d.path().join("o.arrow");
    for tool in ["filter", "normalize"] {
        let out = run(tool, &[s(&bad), "-o", s(&o)]);
        let err = one_line_error(&out, &["bad.arrow"]);
        assert!(!err.contains("o.arrow"), "{err}");
    }
}

/// Item 8 and 14: score and plot match rows only with tables of the same cells: a baseline
/// of other cells, an embedding with duplicate ids and a raw-counts baseline are refused.
#[test]
fn rows_are_matched_only_with_the_same_cells() {
    let fx = fx();
    let d = tempfile::tempdir().unwrap();
    let hvg = table::read_cells(&fx.p("hvg.arrow")).unwrap();
    let n = hvg.n_cells();
    let emb_of = |ids: Vec<String>| cellweave::contract::EmbeddingTable {
        name: "e".into(),
        obs: cellweave::contract::EmbeddingTable::obs_from_cells(
            &hvg.select_cells(&(0..ids.len()).collect::<Vec<_>>()),
        ),
        dim: 2,
        data: (0..ids.len() * 2).map(|v| (v % 17) as f32).collect(),
        cell_ids: ids,
        provenance: vec![],
    };
    // Another data set whose ids happen to be among the baseline's.
    let sub = d.path().join("sub.arrow");
    table::write_embedding(&sub, &emb_of(hvg.cell_ids[..n / 2].to_vec())).unwrap();
    let o = d.path().join("scores.tsv");
    let out = run(
        "score",
        &[
            s(&sub),
            "--unintegrated",
            s(&fx.p("hvg.arrow")),
            "-o",
            s(&o),
            "--metrics",
            "pcr_comparison",
            "-q",
        ],
    );
    one_line_error(&out, &["hvg.arrow", "fingerprint"]);
    assert!(!o.exists());

    let mut ids = hvg.cell_ids.clone();
    ids[1] = ids[0].clone();
    let dup = d.path().join("dup.arrow");
    table::write_embedding(&dup, &emb_of(ids)).unwrap();
    let out = run(
        "score",
        &[s(&dup), "-o", s(&o), "--metrics", "silhouette_label", "-q"],
    );
    one_line_error(&out, &["dup.arrow", "duplicate"]);
    let png = d.path().join("p.png");
    let out = run("plot", &[s(&dup), "-o", s(&png), "--no-umap", "-q"]);
    one_line_error(&out, &["dup.arrow", "duplicate"]);
    assert!(!png.exists());

    let out = run(
        "score",
        &[
            s(&fx.p("hvg.arrow")),
            "--unintegrated",
            s(&fx.p("sim.arrow")),
            "-o",
            s(&o),
            "-q",
        ],
    );
    one_line_error(&out, &["sim.arrow", "raw counts"]);
}

/// Item 10: ids that a text format cannot hold are refused with one line by the text
/// exports (and the .h5ad export keeps them).
#[test]
fn export_refuses_ids_text_cannot_hold() {
    let fx = fx();
    let d = tempfile::tempdir().unwrap();
    let mut t = table::read_cells(&fx.p("filt.arrow")).unwrap();
    t.cell_ids[3] = "cell\twith a tab".into();
    t.cell_ids[4] = "cell\nwith a newline".into();
    let input = d.path().join("odd.arrow");
    table::write_cells(&input, &t).unwrap();
    for out in [d.path().join("x.tsv"), d.path().join("mtx")] {
        let o = run("export", &[s(&input), "-o", s(&out)]);
        one_line_error(&o, &["cell_id", "tab or a line break"]);
        assert!(!out.exists());
    }
    run_ok(
        "export",
        &[s(&input), "-o", s(&d.path().join("x.h5ad")), "-q"],
    );
}

/// Item 14: an MTX file whose header says integer but which holds 1.5 is refused.
#[test]
fn mtx_integer_header_with_fractions_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("m");
    std::fs::create_dir(&m).unwrap();
    write(
        &m.join("matrix.mtx"),
        "%%MatrixMarket matrix coordinate integer general\n2 2 2\n1 1 1.5\n2 2 3\n",
    );
    write(
        &m.join("features.tsv"),
        "g1\tA\tGene Expression\ng2\tB\tGene Expression\n",
    );
    write(&m.join("barcodes.tsv"), "c1\nc2\n");
    let o = d.path().join("o.arrow");
    let out = run("import", &[s(&m), "-o", s(&o), "--genes-as-rows", "-q"]);
    one_line_error(&out, &["matrix.mtx", "not an integer"]);
}

/// Item 14: train's parameter errors do not name the pairs file.
#[test]
fn parameter_errors_name_no_input_file() {
    let d = tempfile::tempdir().unwrap();
    let (m, e) = (d.path().join("m"), d.path().join("e.arrow"));
    let args = train_args(&m, &e, &["--batch-size", "1"]);
    let out = run(
        "train",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let err = stderr(&out);
    assert_ne!(code(&out), Some(0));
    assert!(
        err.contains("--batch-size") && !err.contains("pairs.arrow"),
        "{err}"
    );
}

// ------------------------------------------------------------------ determinism

/// Item 13: `score --knn approx` gives the same scores for a seed whatever the threads.
#[test]
fn approx_knn_scores_are_reproducible() {
    let fx = fx();
    let d = tempfile::tempdir().unwrap();
    let emb = d.path().join("big_pca.arrow");
    // A larger embedding (an HNSW graph built in parallel differs from run to run).
    let mut t = table::read_cells(&fx.p("hvg.arrow")).unwrap();
    let reps = 6;
    let n = t.n_cells();
    let rows: Vec<usize> = (0..n * reps).map(|i| i % n).collect();
    t = t.select_cells(&rows);
    for (i, id) in t.cell_ids.iter_mut().enumerate() {
        *id = format!("{id}-{}", i / n);
    }
    let x = t.x.to_dense();
    let g = t.n_genes();
    let data: Vec<f32> = x
        .chunks(g)
        .enumerate()
        .flat_map(|(i, r)| r[..16].iter().map(move |v| v + (i % 97) as f32 * 1e-3))
        .collect();
    let e = cellweave::contract::EmbeddingTable {
        name: "e".into(),
        obs: cellweave::contract::EmbeddingTable::obs_from_cells(&t),
        dim: 16,
        data,
        cell_ids: t.cell_ids.clone(),
        provenance: vec![],
    };
    table::write_embedding(&emb, &e).unwrap();
    let mut outs = Vec::new();
    for (k, threads) in ["1", "2", "4", "4"].iter().enumerate() {
        let o = d.path().join(format!("s{k}.tsv"));
        run_ok(
            "score",
            &[
                s(&emb),
                "-o",
                s(&o),
                "--knn",
                "approx",
                "--seed",
                "5",
                "--threads",
                threads,
                "--metrics",
                "ilisi_knn,clisi_knn,graph_connectivity",
                "-q",
            ],
        );
        outs.push(read(&o));
    }
    for o in &outs[1..] {
        assert_eq!(o, &outs[0], "approx kNN scores differ between runs");
    }
}
