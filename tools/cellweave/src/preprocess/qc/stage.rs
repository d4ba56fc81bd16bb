//! What `cellweave-filter` does: filter the cells then the genes of a streamed input, log
//! the report, write the filtered table and the optional QC report and per-gene table.

use super::{filter_file, QcParams};
use crate::contract::Step;
use crate::info;
use crate::io::atomic::{Kind, Outputs};
use crate::io::stream::CellsInput;
use crate::io::table;
use crate::Result;
use std::path::PathBuf;

/// The flags of `cellweave-filter`, as clap parses them for [`run_filter`].
#[derive(clap::Args, serde::Serialize, Debug, Clone)]
pub struct FilterArgs {
    /// Input cells table of raw counts (.arrow or .parquet)
    input: PathBuf,
    /// Output cells table (.arrow or .parquet)
    #[arg(short, long)]
    output: PathBuf,
    /// The filters (cells, then genes)
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

/// `cellweave-filter`: filter `args.input` into `args.output` and write the side outputs;
/// `step` (the tool's parsed arguments) goes in their provenance.
pub fn run_filter(args: &FilterArgs, step: Step) -> Result<()> {
    let mut outputs = Outputs::new(&[&args.input])?;
    outputs
        .file(&args.output, Kind::Table)?
        .file_opt(args.qc_report.as_deref(), Kind::TableOrTsv)?
        .file_opt(args.genes_out.as_deref(), Kind::TableOrTsv)?;
    let timer = crate::cli::Timer::start("filter");
    let input = CellsInput::open(&args.input)?;
    let params = &args.params;
    let out = filter_file(&input, &args.output, params, step)?;
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
}
