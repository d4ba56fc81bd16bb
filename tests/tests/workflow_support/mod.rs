//! Shared by the workflow tests: the Python venv of the workflow engines (scripts/setup.sh),
//! the built binaries, and running Snakemake / the Nextflow check as a user would.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

/// An executable of the workflow venv (`$CELLWEAVE_VENV` or `.venv`, made by scripts/setup.sh).
/// When the venv is absent, it is created once with scripts/setup.sh (pip, about a minute;
/// `CELLWEAVE_NO_SETUP=1` turns that off). If there is still none: a loud skip (None), or a
/// panic under CI=true.
pub fn venv_bin(name: &str) -> Option<PathBuf> {
    let venv = std::env::var_os("CELLWEAVE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv"));
    let p = venv.join("bin").join(name);
    if !p.exists() && std::env::var_os("CELLWEAVE_NO_SETUP").is_none() {
        static SETUP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        SETUP.get_or_init(|| {
            eprintln!("{} is missing: running scripts/setup.sh", p.display());
            let out = Command::new("bash")
                .arg(repo().join("scripts/setup.sh"))
                .output();
            match out {
                Ok(o) if o.status.success() => true,
                Ok(o) => {
                    eprintln!("scripts/setup.sh failed:\n{}", text(&o));
                    false
                }
                Err(e) => {
                    eprintln!("cannot run scripts/setup.sh: {e}");
                    false
                }
            }
        });
    }
    if p.exists() {
        return Some(p);
    }
    cellweave_tests::missing(&format!(
        "{} is missing (run scripts/setup.sh to create the venv)",
        p.display()
    ))
}

/// The folder of the built cellweave binaries (next to this test's executable).
pub fn bin_dir() -> PathBuf {
    cellweave_tests::bin("import")
        .parent()
        .expect("bin dir")
        .to_path_buf()
}

/// PATH with the built binaries first.
pub fn path_with_bins() -> std::ffi::OsString {
    let mut paths = vec![bin_dir()];
    if let Some(p) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(paths).expect("PATH")
}

/// Run `snakemake -s workflows/snakemake/Snakefile --cores 2 ARGS` in `workdir`, with the built
/// binaries on PATH and the shared data at `shared` (when given).
pub fn snakemake(snakemake: &Path, workdir: &Path, shared: Option<&Path>, args: &[&str]) -> Output {
    let snakefile = repo().join("workflows/snakemake/Snakefile");
    let mut cmd = Command::new(snakemake);
    cmd.arg("-s")
        .arg(&snakefile)
        .args(["--cores", "2"])
        .arg("--directory")
        .arg(workdir)
        .args(args);
    cmd.env("PATH", path_with_bins())
        .env("RAYON_NUM_THREADS", "2");
    if let Some(s) = shared {
        cmd.env("CELLWEAVE_SHARED", s);
    }
    cmd.output().expect("spawn snakemake")
}

/// stdout + stderr of a command, for assertions and failure messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Job counts of a Snakemake dry run ("job count" table): rule name -> count.
pub fn job_counts(dry_run: &str) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    let mut in_table = false;
    for line in dry_run.lines() {
        let t = line.trim();
        if t.starts_with("job") && t.ends_with("count") {
            in_table = true;
            continue;
        }
        if in_table {
            if t.starts_with("---") {
                continue;
            }
            let f: Vec<&str> = t.split_whitespace().collect();
            match f.as_slice() {
                [name, n] if *name != "total" => {
                    counts.insert(name.to_string(), n.parse().expect("count"));
                }
                _ => break,
            }
        }
    }
    counts
}

/// Copy a folder recursively.
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for e in std::fs::read_dir(src).expect("read_dir") {
        let e = e.expect("entry");
        let to = dst.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).expect("copy");
        }
    }
}
