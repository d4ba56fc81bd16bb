//! cellweave-simulate: a multi-batch negative-binomial simulator with known cell types.

use cellweave::cli;
use cellweave::contract::Step;
use cellweave::info;
use cellweave::io::atomic::{Kind, Outputs};
use cellweave::preprocess::simulate::{self, SimParams};
use clap::Parser;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

/// Simulate raw counts of several batches with known cell types (obs `cell_type`),
/// gene-wise and library-size batch effects, dropout and any size (streamed to disk).
#[derive(Parser, Serialize, Debug)]
#[command(name = "cellweave-simulate", version = cellweave::cli::LONG_VERSION)]
struct Args {
    /// Output cells table (.arrow or .parquet)
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    #[serde(flatten)]
    params: SimParams,
}

fn main() -> ExitCode {
    cli::main(|args: Args| {
        let mut outputs = Outputs::new(&[])?;
        outputs.file(&args.output, Kind::Table)?;
        let timer = cli::Timer::start("simulate");
        let s = simulate::simulate_to(
            &args.output,
            &args.params,
            vec![Step::new("cellweave-simulate", &args)],
        )?;
        info!(
            "{} cells x {} genes, {} non-zeros (density {:.4}), {:.0} counts",
            s.cells, s.genes, s.nnz, s.density, s.total_counts
        );
        outputs.commit()?;
        timer.done();
        Ok(())
    })
}

cellweave::help_test!(Args);
