//! cellweave-export: write a cells or embedding table as AnnData `.h5ad`, a 10x MTX
//! folder, or a dense TSV.

use cellweave::cli;
use cellweave::contract::Step;
use cellweave::convert::export::{run_export, ExportOptions};
use clap::Parser;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

/// Export a cellweave table for scanpy, Seurat and other tools.
///
/// Output by name: `.h5ad` (X = the table's values, obs columns as categoricals,
/// provenance in uns), `.tsv` (dense, cells as rows), or a folder name (10x MTX, gzipped,
/// genes x cells, plus obs.tsv). An embedding table as INPUT gives obs + obsm only (no X),
/// or X = the raw counts with --counts.
///
/// The .h5ad of an integration run, as scanpy's tutorial ends with it: INPUT = the
/// normalized table of every kept gene (cellweave-normalize's output), --counts the
/// filtered counts, --hvg the genes table of cellweave-hvg, --embedding the integrated
/// embedding and its UMAP. The neighbour graph of the first embedding that is not a UMAP
/// goes in obsp/uns['neighbors'], so sc.tl.leiden runs without sc.pp.neighbors.
#[derive(Parser, Serialize, Debug)]
#[command(name = "cellweave-export", version = cellweave::cli::LONG_VERSION)]
struct Args {
    /// Cells table or embedding table (.arrow or .parquet)
    #[arg(value_name = "INPUT")]
    input: PathBuf,
    /// Output: out.h5ad, out.tsv, or a folder for 10x MTX
    #[arg(short, long, value_name = "OUTPUT")]
    output: PathBuf,
    #[command(flatten)]
    #[serde(flatten)]
    options: ExportOptions,
    /// Recorded as `"common": {}` in the provenance
    #[arg(skip)]
    common: cli::NoCommon,
}

fn main() -> ExitCode {
    cli::main(|args: Args| {
        let step = Step::new("cellweave-export", &args);
        run_export(&args.input, &args.output, &args.options, &step)
    })
}

cellweave::help_test!(Args);
