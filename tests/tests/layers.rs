//! The layer check (scripts/check_layers.py): the library's modules import each other without
//! a cycle, and the check fails, naming the modules, on small fabricated crates that have one.

use cellweave_tests::missing;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn check(src: &Path) -> Option<(Output, String)> {
    let out = match Command::new("python3")
        .arg(repo().join("scripts/check_layers.py"))
        .arg(src)
        .output()
    {
        Ok(out) => out,
        Err(e) => return missing(&format!("python3 cannot be started: {e}")),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out, text))
}

/// The check's output on a crate where it must fail (exit code 1); None without python3.
fn check_fails(src: &Path) -> Option<String> {
    let (out, t) = check(src)?;
    assert_eq!(out.status.code(), Some(1), "{t}");
    Some(t)
}

/// A crate's src folder made of `(path, contents)` files.
fn fabricate(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    dir
}

#[test]
fn the_library_has_no_import_cycle() {
    let Some((out, t)) = check(&repo().join("tools/cellweave/src")) else {
        return;
    };
    assert!(out.status.success(), "check_layers.py failed:\n{t}");
    // The crate's layers, and io's, are listed (lowest first).
    let top = t.lines().find(|l| l.starts_with("crate: ")).expect(&t);
    let pos = |m: &str| {
        top.find(&format!(" {m}"))
            .unwrap_or_else(|| panic!("{m}: {top}"))
    };
    assert!(pos("contract") < pos("numerics"), "{top}");
    assert!(pos("io") < pos("convert"), "{top}");
    assert!(pos("numerics") < pos("evaluate"), "{top}");
    assert!(t.contains("crate::io: "), "{t}");
    assert!(t.contains("crate::io::formats: "), "{t}");
}

#[test]
fn a_cycle_among_top_level_modules_fails_and_is_named() {
    let dir = fabricate(&[
        ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\npub mod d;\n"),
        ("a.rs", "use crate::b::B;\npub fn f() {}\n"),
        ("b.rs", "pub struct B;\npub fn g() { super::c::h() }\n"),
        ("c.rs", "pub fn h() {\n    crate::a::f()\n}\n"),
        ("d.rs", "use crate::{a, c::{self}};\n"),
    ]);
    let Some(t) = check_fails(dir.path()) else {
        return;
    };
    assert!(
        t.contains("import cycle among the modules of crate: a <-> b <-> c"),
        "{t}"
    );
    assert!(t.contains("a -> b  (a.rs: crate::b::B)"), "{t}");
    assert!(t.contains("b -> c  (b.rs: super::c::h)"), "{t}");
    assert!(t.contains("c -> a  (c.rs: crate::a::f)"), "{t}");
    // d uses the cycle but is not part of it.
    assert!(!t.contains("d ->"), "{t}");
}

#[test]
fn a_cycle_between_submodules_fails_and_is_named() {
    let dir = fabricate(&[
        ("lib.rs", "pub mod io;\n"),
        ("io/mod.rs", "pub mod formats;\npub mod table;\n"),
        ("io/table.rs", "pub fn t() { crate::io::formats::x::r() }\n"),
        ("io/formats/mod.rs", "pub mod x;\n"),
        (
            "io/formats/x.rs",
            "use super::super::table;\npub fn r() {}\n",
        ),
    ]);
    let Some(t) = check_fails(dir.path()) else {
        return;
    };
    assert!(
        t.contains("import cycle among the modules of crate::io: formats <-> table"),
        "{t}"
    );
}

#[test]
fn tests_comments_and_parents_are_not_edges() {
    let dir = fabricate(&[
        (
            "lib.rs",
            "pub mod high;\npub mod low;\npub use low::Item;\n",
        ),
        ("low/mod.rs", "pub mod part;\npub struct Item;\n"),
        (
            "low/part.rs",
            "//! Used by [`crate::high::run`].\nuse super::Item;\n/* crate::high */\n\
             #[cfg(test)]\nmod tests {\n    use crate::high::run;\n    fn t() { run() }\n}\n",
        ),
        (
            "high.rs",
            "use crate::low::{part, Item};\npub fn run() {}\n",
        ),
    ]);
    let Some((out, t)) = check(dir.path()) else {
        return;
    };
    assert!(out.status.success(), "{t}");
    assert!(t.contains("crate: low < high"), "{t}");
}
