//! cellweave-filter: cell QC (genes detected, total counts, mitochondrial share) then the
//! gene filter (cells expressing), with a QC report of what was removed and why.

use cellweave::cli::{self, Common};
use cellweave::contract::{Frame, Step};
use cellweave::io::stream::CellsInput;
use cellweave::io::{atomic, table, Format};
use cellweave::preprocess::qc::{self, QcParams};
use cellweave::{info, Error, Result};
use clap::Parser;
use serde::Serialize;
use std::path::{Path, PathBuf};
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
    /// Keep genes detected (> 0) in at least this many of the kept cells
    #[arg(long, default_value_t = 3)]
    min_cells: u64,
    /// Keep cells with at least this many genes detected
    #[arg(long)]
    min_genes: Option<u64>,
    /// Keep cells with at most this many genes detected
    #[arg(long)]
    max_genes: Option<u64>,
    /// Keep cells with at least this many counts
    #[arg(long)]
    min_counts: Option<f64>,
    /// Keep cells with at most this many counts
    #[arg(long)]
    max_counts: Option<f64>,
    /// Keep cells with at most this percentage of counts in mitochondrial genes
    #[arg(long)]
    max_mito_pct: Option<f64>,
    /// Mitochondrial genes: gene names starting with this (any case)
    #[arg(long, default_value = "MT-")]
    mito_prefix: String,
    /// Write the QC report here (.tsv, .arrow or .parquet)
    #[arg(long)]
    qc_report: Option<PathBuf>,
    /// Write per-gene QC (n_cells, total_counts, mito, kept) here (.tsv, .arrow or .parquet)
    #[arg(long)]
    genes_out: Option<PathBuf>,
    #[command(flatten)]
    #[serde(skip)]
    common: Common,
}

fn check_side(path: &Path) -> Result<()> {
    match Format::of(path) {
        Some(Format::Tsv | Format::Arrow | Format::Parquet) => Ok(()),
        _ => Err(Error::new("expected a .tsv, .arrow or .parquet file name").file(path)),
    }
}

fn write_side(path: &Path, f: &Frame) -> Result<()> {
    match Format::of(path) {
        Some(Format::Tsv) => table::write_frame_tsv(path, f),
        _ => table::write_frame(path, f),
    }
}

fn main() -> ExitCode {
    cli::run("cellweave-filter", || {
        let args = Args::parse();
        cli::init(&args.common);
        for p in [
            Some(&args.output),
            args.qc_report.as_ref(),
            args.genes_out.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            atomic::check_not_input(p, &[&args.input])?;
        }
        for p in [args.qc_report.as_ref(), args.genes_out.as_ref()]
            .into_iter()
            .flatten()
        {
            check_side(p)?;
        }
        let timer = cli::Timer::start("filter");
        let input = CellsInput::open(&args.input)?;
        let params = QcParams {
            min_cells: args.min_cells,
            min_genes: args.min_genes,
            max_genes: args.max_genes,
            min_counts: args.min_counts,
            max_counts: args.max_counts,
            max_mito_pct: args.max_mito_pct,
            mito_prefix: args.mito_prefix.clone(),
        };
        let step = Step::new("cellweave-filter", &args);
        let out = qc::filter_file(&input, &args.output, &params, step)?;
        for w in &out.report.warnings {
            info!("cellweave-filter: warning: {w}");
        }
        for line in out.report.lines() {
            info!("{line}");
        }
        if let Some(p) = &args.qc_report {
            let mut f = out.report.to_frame(&params);
            f.provenance = out.provenance.clone();
            write_side(p, &f)?;
        }
        if let Some(p) = &args.genes_out {
            let mut genes = out.genes;
            genes.provenance = out.provenance.clone();
            write_side(p, &genes)?;
        }
        timer.done();
        Ok(())
    })
}
