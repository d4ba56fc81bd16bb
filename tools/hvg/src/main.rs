//! cellweave-hvg: highly variable genes as scanpy 1.11 selects them (flavors seurat,
//! cell_ranger, seurat_v3; per batch by default).

use cellweave::cli;
use cellweave::contract::Step;
use cellweave::preprocess::hvg::stage::{run_hvg, HvgArgs};
use clap::Parser;
use serde::Serialize;
use std::process::ExitCode;

/// Select highly variable genes; write the cells table restricted to them (genes keep
/// their order) and, with --genes-out, the per-gene statistics with the selection order
/// (`highly_variable_rank`).
#[derive(Parser, Serialize, Debug)]
#[command(name = "cellweave-hvg", version = cellweave::cli::LONG_VERSION)]
struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    hvg: HvgArgs,
}

fn main() -> ExitCode {
    cli::main(|args: Args| run_hvg(&args.hvg, &Step::new("cellweave-hvg", &args)))
}

cellweave::help_test!(Args);
