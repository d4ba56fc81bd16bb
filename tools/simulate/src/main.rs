//! cellweave-simulate: a multi-batch negative-binomial simulator with known cell types.

use cellweave::cli::{self, Common};
use cellweave::contract::Step;
use cellweave::info;
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
    #[arg(long, default_value_t = 5000)]
    cells: usize,
    #[arg(long, default_value_t = 3000)]
    genes: usize,
    #[arg(long, default_value_t = 3)]
    batches: usize,
    #[arg(long, default_value_t = 6)]
    cell_types: usize,
    /// Strength of the batch effect (0 = none; 1 = gene-wise log-effects of sd 0.5 and
    /// batch depths 0.8, 1.0, 1.25, ...)
    #[arg(long, default_value_t = 1.0)]
    batch_effect: f64,
    /// Probability that a non-zero count is dropped
    #[arg(long, default_value_t = 0.0)]
    dropout: f64,
    /// Expected fraction of non-zero entries before dropout
    #[arg(long, default_value_t = 0.05)]
    density: f64,
    /// Negative-binomial inverse dispersion
    #[arg(long, default_value_t = 4.0)]
    theta: f64,
    /// Fraction of genes that mark each cell type
    #[arg(long, default_value_t = 0.05)]
    markers_frac: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Cells generated and written per chunk (memory is about chunk x non-zeros per cell)
    #[arg(long, default_value_t = 8192)]
    chunk_cells: usize,
    #[command(flatten)]
    #[serde(skip)]
    common: Common,
}

fn main() -> ExitCode {
    cli::run("cellweave-simulate", || {
        let args = Args::parse();
        cli::init(&args.common);
        let timer = cli::Timer::start("simulate");
        let p = SimParams {
            cells: args.cells,
            genes: args.genes,
            batches: args.batches,
            cell_types: args.cell_types,
            batch_effect: args.batch_effect,
            density: args.density,
            dropout: args.dropout,
            theta: args.theta,
            markers_frac: args.markers_frac,
            seed: args.seed,
            chunk_cells: args.chunk_cells,
        };
        let s = simulate::simulate_to(
            &args.output,
            &p,
            vec![Step::new("cellweave-simulate", &args)],
        )?;
        info!(
            "{} cells x {} genes, {} non-zeros (density {:.4}), {:.0} counts",
            s.cells, s.genes, s.nnz, s.density, s.total_counts
        );
        timer.done();
        Ok(())
    })
}
