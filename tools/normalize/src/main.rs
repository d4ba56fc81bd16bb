//! cellweave-normalize: total-count normalization then natural log1p, with scanpy's
//! float32 arithmetic.

use cellweave::cli;
use cellweave::contract::Step;
use cellweave::io::atomic::{Kind, Outputs};
use cellweave::io::stream::CellsInput;
use cellweave::preprocess::normalize;
use clap::Parser;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

/// Scale every cell to --target-sum counts, then take log(1 + x) (as scanpy's
/// normalize_total + log1p on float32). Cells without counts stay empty.
#[derive(Parser, Serialize, Debug)]
#[command(name = "cellweave-normalize", version = cellweave::cli::LONG_VERSION)]
struct Args {
    /// Input cells table of raw counts (.arrow or .parquet)
    input: PathBuf,
    /// Output cells table (.arrow or .parquet)
    #[arg(short, long)]
    output: PathBuf,
    /// Total counts of every cell after scaling (> 0)
    #[arg(value_parser = cli::range::positive::<f64>, long, default_value_t = 1e4)]
    target_sum: f64,
    /// Skip the log1p (values are then 'normalized')
    #[arg(long)]
    no_log: bool,
}

fn main() -> ExitCode {
    cli::main(|args: Args| {
        let mut outputs = Outputs::new(&[&args.input])?;
        outputs.file(&args.output, Kind::Table)?;
        let timer = cli::Timer::start("normalize");
        let input = CellsInput::open(&args.input)?;
        let step = Step::new("cellweave-normalize", &args);
        normalize::normalize_file(&input, &args.output, args.target_sum, !args.no_log, step)?;
        outputs.commit()?;
        timer.done();
        Ok(())
    })
}

cellweave::help_test!(Args);
