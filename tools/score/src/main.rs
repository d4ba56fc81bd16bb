//! cellweave-score: integration metrics (scib-metrics' definitions, the CLAIRE paper's set)
//! of one or more embeddings, in one comparison table.

use cellweave::cli;
use cellweave::contract::Step;
use cellweave::evaluate::stage::{run_score, ScoreArgs};
use clap::Parser;
use serde::Serialize;
use std::process::ExitCode;

const TOOL: &str = "cellweave-score";

/// Score how well embeddings mix batches and keep cell types apart (scIB metrics as
/// scib-metrics defines them, and the CLAIRE paper's set), one row per embedding.
#[derive(Parser, Serialize, Debug)]
#[command(name = TOOL, version = cellweave::cli::LONG_VERSION, about, long_about = None)]
struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    score: ScoreArgs,
    /// Recorded as `"common": {}` in the provenance
    #[arg(skip)]
    common: cli::NoCommon,
}

fn main() -> ExitCode {
    cli::main(|args: Args| run_score(&args.score, Step::new(TOOL, &args)))
}

cellweave::help_test!(Args);
