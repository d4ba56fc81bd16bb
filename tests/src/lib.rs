//! Helpers for the end-to-end tests: locate the built binaries and the shared data.

use cellweave::contract::EmbeddingTable;
use cellweave::io::table::write_embedding;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of a built binary `cellweave-<tool>` (same profile directory as the test).
pub fn bin(tool: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .to_path_buf();
    let p = dir.join(format!("cellweave-{tool}"));
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --release --workspace` first",
        p.display()
    );
    p
}

/// `cellweave-<tool> ARGS` as a command (two Rayon threads), for callers that add to it.
pub fn command(tool: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin(tool));
    cmd.args(args).env("RAYON_NUM_THREADS", "2");
    cmd
}

/// Run `cellweave-<tool>` with arguments; returns the output.
pub fn run(tool: &str, args: &[&str]) -> Output {
    command(tool, args).output().expect("spawn")
}

/// Run and assert success, printing stderr on failure.
pub fn run_ok(tool: &str, args: &[&str]) -> Output {
    output_ok(&mut command(tool, args))
}

/// Run any command and assert success, printing the command and its stderr on failure.
pub fn output_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run `cellweave-<tool>` expecting it to fail and leave no `output` behind; returns its
/// stderr, trimmed.
pub fn run_fails(tool: &str, args: &[&str], output: &Path) -> String {
    let out = run(tool, args);
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(
        !out.status.success(),
        "cellweave-{tool} {args:?} succeeded:\n{err}"
    );
    assert!(
        !output.exists(),
        "cellweave-{tool} {args:?} failed but left {}",
        output.display()
    );
    err
}

/// As [`run_fails`], and the error is one stderr line: returns it.
pub fn run_fails_one_line(tool: &str, args: &[&str], output: &Path) -> String {
    let err = run_fails(tool, args, output);
    assert_eq!(
        err.lines().count(),
        1,
        "expected one error line, got:\n{err}"
    );
    err
}

/// Assert that `text` contains each of `parts` (the message names the first one missing
/// and shows `text`).
#[track_caller]
pub fn assert_has(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "'{part}' not in:\n{text}");
    }
}

/// A path as the `&str` argument of a command.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// Write an embedding table without obs columns or provenance.
pub fn write_plain_embedding(
    path: &Path,
    name: &str,
    cell_ids: Vec<String>,
    dim: usize,
    data: Vec<f32>,
) {
    let emb = EmbeddingTable {
        name: name.into(),
        cell_ids,
        obs: vec![],
        dim,
        data,
        provenance: vec![],
    };
    write_embedding(path, &emb).unwrap_or_else(|e| panic!("{e}"));
}

/// The arguments of `cellweave-refine CELLS --pairs PAIRS --embedding EMBEDDING -o OUT`.
pub fn refine_args<'a>(
    cells: &'a Path,
    pairs: &'a Path,
    embedding: &'a Path,
    out: &'a Path,
) -> [&'a str; 7] {
    [
        s(cells),
        "--pairs",
        s(pairs),
        "--embedding",
        s(embedding),
        "-o",
        s(out),
    ]
}

/// `true` when running under CI (`CI=true`), where nothing may be skipped.
pub fn ci() -> bool {
    std::env::var("CI").map(|v| v == "true").unwrap_or(false)
}

/// Something a test needs is not here (`what`): a loud skip notice and None, or a panic
/// under `CI=true`.
pub fn missing<T>(what: &str) -> Option<T> {
    if ci() {
        panic!("CI=true but {what}");
    }
    eprintln!("\n!!!!! SKIPPING: {what} !!!!!\n");
    None
}

/// The shared data folder (`$CELLWEAVE_SHARED` or `../shared` from the repository root).
/// When absent: prints a loud notice and returns None, or panics under `CI=true`.
pub fn shared() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let p = std::env::var_os("CELLWEAVE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared"));
    if p.join("data").is_dir() {
        return Some(p);
    }
    missing(&format!(
        "the shared data is not at {} (set CELLWEAVE_SHARED)",
        p.display()
    ))
}

/// The Python of the reference stack (scanpy, anndata, scib-metrics, umap-learn; built by
/// `../shared/reference/tools/setup_env.sh`): `$CELLWEAVE_REF_PYTHON`, else `$CELLWEAVE_PYTHON`,
/// else that script's default `~/.cache/cellweave-refenv`, else `../venv-ref` beside the
/// repository. It must be able to `import` every module in `modules`. When absent: prints a
/// loud notice and returns None, or panics under `CI=true` (`.ci/run` builds it).
pub fn reference_python(modules: &[&str]) -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut candidates: Vec<PathBuf> = ["CELLWEAVE_REF_PYTHON", "CELLWEAVE_PYTHON"]
        .iter()
        .filter_map(std::env::var_os)
        .map(PathBuf::from)
        .collect();
    if candidates.is_empty() {
        if let Some(home) = std::env::var_os("HOME") {
            candidates.push(PathBuf::from(home).join(".cache/cellweave-refenv/bin/python"));
        }
        candidates.push(root.join("../venv-ref/bin/python"));
    }
    let probe = format!("import {}", modules.join(", "));
    for p in &candidates {
        let ok = Command::new(p)
            .args(["-c", &probe])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Some(p.clone());
        }
    }
    let msg = format!(
        "no reference Python that can `{probe}` (tried {candidates:?}; build it with \
         ../shared/reference/tools/setup_env.sh, or set CELLWEAVE_REF_PYTHON)"
    );
    missing(&msg)
}

/// Borrowed views of owned arguments (for [`run`] and friends).
pub fn strs(a: &[String]) -> Vec<&str> {
    a.iter().map(String::as_str).collect()
}

/// The bit patterns of an embedding table's values (for bit-identity checks).
pub fn embedding_bits(p: &Path) -> Vec<u32> {
    cellweave::io::table::read_embedding(p)
        .unwrap()
        .data
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// The cells table at `cells` (one record batch) written again as an Arrow file of several
/// record batches, cut before the rows `cuts` (`split`: rows read through the map across
/// batches), and as Parquet (`parquet`: a table read whole), so that a test can check that
/// all three inputs give the same results.
pub fn write_split_and_parquet(cells: &Path, cuts: &[usize], split: &Path, parquet: &Path) {
    use cellweave::io::table::{cells_to_batches, read_cells, write_batches, write_cells};
    let t = read_cells(cells).unwrap();
    let (schema, batches) = cells_to_batches(&t).unwrap();
    assert_eq!(batches.len(), 1);
    let b = &batches[0];
    let bounds: Vec<usize> = std::iter::once(0)
        .chain(cuts.iter().copied())
        .chain(std::iter::once(b.num_rows()))
        .collect();
    let pieces: Vec<_> = bounds
        .windows(2)
        .map(|w| b.slice(w[0], w[1] - w[0]))
        .collect();
    write_batches(split, schema, &pieces).unwrap();
    write_cells(parquet, &t).unwrap();
}

/// Run `cellweave-train` with `args` (the cells table first), check that its log says how
/// the rows were read (from the memory-mapped file, or in memory for Parquet), and return
/// the model's weights (the bytes of `model.safetensors`) and its training log's losses, for
/// the checks that mapped and whole rows train to the same bits.
pub fn train_reading_rows(args: &[String], model_dir: &Path) -> (Vec<u8>, String) {
    use cellweave::contract::TableKind;
    use cellweave::io::table::read_frame;
    let out = run_ok("train", &strs(args));
    let mapped = !args[0].ends_with(".parquet");
    let rows = ["(rows in memory)", "(rows read from the mapped file)"][mapped as usize];
    assert_has(&String::from_utf8_lossy(&out.stderr), &[rows]);
    let weights = std::fs::read(model_dir.join("model.safetensors")).unwrap();
    let log = read_frame(
        &model_dir.join("training_log.arrow"),
        TableKind::TrainingLog,
    );
    let loss = log.unwrap().column("loss").cloned().unwrap();
    (weights, format!("{loss:?}"))
}
