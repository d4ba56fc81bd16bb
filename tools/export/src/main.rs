//! cellweave-export: write a cells or embedding table as AnnData `.h5ad`, a 10x MTX
//! folder, or a dense TSV.

use cellweave::cli::{self, Common};
use cellweave::contract::Step;
use cellweave::convert::export::{export, output_format, ExportOptions};
use cellweave::info;
use cellweave::io::atomic::{Kind, Outputs};
use cellweave::io::Format;
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
#[derive(Parser, Serialize, Debug)]
#[command(name = "cellweave-export", version = cellweave::cli::LONG_VERSION)]
struct Args {
    /// Cells table or embedding table (.arrow or .parquet)
    #[arg(value_name = "INPUT")]
    input: PathBuf,
    /// Output: out.h5ad, out.tsv, or a folder for 10x MTX
    #[arg(short, long, value_name = "OUTPUT")]
    output: PathBuf,
    /// Cells table of raw counts for layers['counts'] (aligned by cell and gene id)
    #[arg(long, value_name = "RAW")]
    counts: Option<PathBuf>,
    /// Embedding table for obsm['X_<name>'] (aligned by cell id; repeatable)
    #[arg(long, value_name = "EMB")]
    embedding: Vec<PathBuf>,
    #[command(flatten)]
    common: Common,
}

fn main() -> ExitCode {
    let args = cli::parse::<Args>();
    cli::init(&args.common);
    cli::run("cellweave-export", || {
        let mut inputs = vec![args.input.as_path()];
        inputs.extend(args.counts.as_deref());
        inputs.extend(args.embedding.iter().map(|p| p.as_path()));
        let mut outputs = Outputs::new(&inputs)?;
        if output_format(&args.output)? == Format::MtxDir {
            outputs.dir(&args.output)?;
        } else {
            outputs.file(&args.output, Kind::Any)?;
        }
        let timer = cli::Timer::start("export");
        let opts = ExportOptions {
            counts: args.counts.clone(),
            embeddings: args.embedding.clone(),
        };
        let what = export(
            &args.input,
            &args.output,
            &opts,
            &Step::new("cellweave-export", &args),
        )?;
        outputs.commit()?;
        info!("{}: {what}", args.output.display());
        timer.done();
        Ok(())
    })
}
