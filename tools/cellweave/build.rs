//! Records the git commit the binaries are built from, for `--version`.
//!
//! `CELLWEAVE_GIT_COMMIT` (when set and not empty) wins, so a build from a source archive
//! (a conda recipe, say) can still name its commit; otherwise `git rev-parse HEAD` in this
//! checkout; with neither, `--version` prints the package version alone.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CELLWEAVE_GIT_COMMIT");
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    let commit = std::env::var("CELLWEAVE_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .map(|c| c.trim().to_string())
        .or_else(|| commit_from_git(&dir));
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let long = match commit {
        Some(c) => format!("{version} (git {c})"),
        None => version,
    };
    println!("cargo:rustc-env=CELLWEAVE_LONG_VERSION={long}");
}

/// The checkout's HEAD commit (12 hex digits), and rebuild hints for when HEAD moves.
fn commit_from_git(dir: &Path) -> Option<String> {
    let commit = git(dir, &["rev-parse", "--short=12", "HEAD"])?;
    // HEAD itself (a checkout), the branch it points to (a commit) and packed-refs (a gc).
    let mut watch = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watch.push(branch);
    }
    for name in watch {
        if let Some(path) = git(dir, &["rev-parse", "--git-path", &name]) {
            let path = dir.join(path);
            // Cargo reruns a build script on every build when a watched path is missing.
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    Some(commit)
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}
