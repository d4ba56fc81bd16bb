//! Intermediate files in the Arrow ecosystem (issue 13): a Parquet cells table carries the
//! contract keys as Parquet key-value metadata, so the genes of a cells table are a table in
//! polars and in DuckDB with the one-line recipes of schemas/README.md (run here verbatim).

use cellweave::io::table;
use cellweave_tests::{run_ok, s};
use std::path::PathBuf;
use std::process::Command;

/// A Python with polars and duckdb: `$CELLWEAVE_ARROW_VENV` (default
/// `~/.cache/cellweave-arrowpy`), created from scripts/requirements-arrow.txt when missing.
fn arrow_python() -> Option<PathBuf> {
    let venv = std::env::var_os("CELLWEAVE_ARROW_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/cellweave-arrowpy"))
        })?;
    let py = venv.join("bin/python");
    let ok = |py: &PathBuf| {
        Command::new(py)
            .args(["-c", "import polars, duckdb"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !ok(&py) && std::env::var_os("CELLWEAVE_NO_SETUP").is_none() {
        let req =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/requirements-arrow.txt");
        let _ = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .output();
        let _ = Command::new(&py)
            .args(["-m", "pip", "install", "--quiet", "-r"])
            .arg(&req)
            .output();
    }
    if ok(&py) {
        Some(py)
    } else {
        cellweave_tests::missing(&format!(
            "no Python with polars and duckdb at {} (pip install -r scripts/requirements-arrow.txt)",
            venv.display()
        ))
    }
}

/// The recipes of schemas/README.md, verbatim; prints the gene ids (polars), names (polars)
/// and ids (DuckDB), one JSON line.
const RECIPES: &str = r#"
import json, sys
import polars as pl, duckdb
path = sys.argv[1]
genes = pl.DataFrame({c: json.loads(pl.read_parquet_metadata(path)[f"cellweave.{c}s"]) for c in ["gene_id", "gene_name"]})
ids = duckdb.sql(f"SELECT unnest(CAST(decode(value) AS JSON)::VARCHAR[]) AS gene_id FROM parquet_kv_metadata('{path}') WHERE decode(key) = 'cellweave.gene_ids'").fetchall()
cells = pl.read_parquet(path)
print(json.dumps({"polars_ids": genes["gene_id"].to_list(), "polars_names": genes["gene_name"].to_list(),
                  "duckdb_ids": [r[0] for r in ids], "n_cells": cells.height,
                  "table": pl.read_parquet_metadata(path)["cellweave.table"]}))
"#;

#[test]
fn genes_of_a_parquet_cells_table_from_polars_and_duckdb() {
    let Some(py) = arrow_python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sim = tmp.path().join("sim.parquet");
    run_ok(
        "simulate",
        &[
            "--cells",
            "60",
            "--genes",
            "40",
            "--batches",
            "2",
            "-q",
            "-o",
            s(&sim),
        ],
    );
    // A table written whole (normalize) as well as one streamed (simulate).
    let norm = tmp.path().join("norm.parquet");
    run_ok("normalize", &[s(&sim), "-q", "-o", s(&norm)]);
    for p in [&sim, &norm] {
        let t = table::read_cells(p).unwrap();
        let out = Command::new(&py)
            .args(["-c", RECIPES])
            .arg(p)
            .output()
            .expect("python");
        assert!(
            out.status.success(),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(r["polars_ids"], serde_json::json!(t.gene_ids), "{r}");
        assert_eq!(r["duckdb_ids"], serde_json::json!(t.gene_ids), "{r}");
        assert_eq!(r["polars_names"], serde_json::json!(t.gene_names), "{r}");
        assert_eq!(r["n_cells"], t.n_cells(), "{r}");
        assert_eq!(r["table"], "cells", "{r}");
    }
}
