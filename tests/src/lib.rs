//! Helpers for the end-to-end tests: locate the built binaries and the shared data.

use std::path::PathBuf;
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

/// Run `cellweave-<tool>` with arguments; returns the output.
pub fn run(tool: &str, args: &[&str]) -> Output {
    Command::new(bin(tool))
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .expect("spawn")
}

/// Run and assert success, printing stderr on failure.
pub fn run_ok(tool: &str, args: &[&str]) -> Output {
    let out = run(tool, args);
    assert!(
        out.status.success(),
        "cellweave-{tool} {:?} failed:\n{}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    out
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
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!(
            "CI=true but the shared data is not at {} (set CELLWEAVE_SHARED)",
            p.display()
        );
    }
    eprintln!(
        "\n!!!!! SKIPPING: shared data not found at {} (set CELLWEAVE_SHARED) !!!!!\n",
        p.display()
    );
    None
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
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!("CI=true but {msg}");
    }
    eprintln!("\n!!!!! SKIPPING: {msg} !!!!!\n");
    None
}
