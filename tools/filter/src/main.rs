//! cellweave-filter: cell QC (genes detected, total counts, mitochondrial share) then the
//! gene filter (cells expressing), with a QC report of what was removed and why.

use cellweave::cli;
use cellweave::contract::Step;
use cellweave::info;
use cellweave::io::atomic::{Kind, Outputs};
use cellweave::io::stream::CellsInput;
use cellweave::io::table;
use cellweave::preprocess::qc::{self, QcParams};
use clap::Parser;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

/// Filter cells (min/max genes, min/max counts, max mitochondrial %) then genes (min cells),
/// on raw counts, in scanpy's order and with scanpy's comparisons (bounds are inclusive).
#[derive(Parser, Serialize, Debug)]
#[command(name = "cellweave-filter", version = cellweave::cli::LONG_VERSION)]
struct Args {
    /// Input cells table of raw counts (.arrow or .parquet)
    input: PathBuf,
    /// Output cells table (.arrow or .parquet)
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    #[serde(flatten)]
    params: QcParams,
    /// Write the QC report here (.tsv, .arrow or .parquet)
    #[arg(long)]
    qc_report: Option<PathBuf>,
    /// Write per-gene QC (n_cells, total_counts, mito, kept) here (.tsv, .arrow or .parquet)
    #[arg(long)]
    genes_out: Option<PathBuf>,
}

fn main() -> ExitCode {
    cli::main(|args: Args| {
        let mut outputs = Outputs::new(&[&args.input])?;
        outputs
            .file(&args.output, Kind::Table)?
            .file_opt(args.qc_report.as_deref(), Kind::TableOrTsv)?
            .file_opt(args.genes_out.as_deref(), Kind::TableOrTsv)?;
        let timer = cli::Timer::start("filter");
        let input = CellsInput::open(&args.input)?;
        let params = &args.params;
        let step = Step::new("cellweave-filter", &args);
        let out = qc::filter_file(&input, &args.output, params, step)?;
        for w in &out.report.warnings {
            info!("cellweave-filter: warning: {w}");
        }
        for line in out.report.lines() {
            info!("{line}");
        }
        if let Some(p) = &args.qc_report {
            let mut f = out.report.to_frame(params);
            f.provenance = out.provenance.clone();
            table::write_side(p, &f)?;
        }
        if let Some(p) = &args.genes_out {
            let mut genes = out.genes;
            genes.provenance = out.provenance.clone();
            table::write_side(p, &genes)?;
        }
        outputs.commit()?;
        timer.done();
        Ok(())
    })
}

cellweave::help_test!(Args);
