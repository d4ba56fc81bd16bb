//! cellweave-export: write a cells or embedding table as AnnData `.h5ad`, a 10x MTX
//! folder, or a dense TSV.

use cellweave::cli;
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
    /// Cells table of raw counts for layers['counts'] (aligned by cell and gene id)
    #[arg(long, value_name = "RAW")]
    counts: Option<PathBuf>,
    /// Embedding table for obsm['X_<name>'] (aligned by cell id; repeatable)
    #[arg(long, value_name = "EMB")]
    embedding: Vec<PathBuf>,
    /// Genes table of cellweave-hvg (--genes-out): scanpy's HVG columns in var, uns['hvg']
    #[arg(long, value_name = "GENES")]
    hvg: Option<PathBuf>,
    /// Neighbours per cell of the graph in obsp (scanpy's n_neighbors; 0: no graph)
    #[arg(long, default_value_t = 15)]
    n_neighbors: usize,
    /// obsm entry to build the neighbour graph on (default: the first non-UMAP embedding)
    #[arg(long, value_name = "NAME")]
    neighbors_of: Option<String>,
    /// Principal components of the highly variable genes (with --hvg) in obsm['X_pca'],
    /// varm['PCs'], uns['pca'], as scanpy's sc.pp.pca (0: none)
    #[arg(long, default_value_t = 50)]
    n_pcs: usize,
    /// Name prefix of mitochondrial genes (obs pct_counts_mt, var mt)
    #[arg(long, default_value = "MT-")]
    mito_prefix: String,
    /// Recorded as `"common": {}` in the provenance
    #[arg(skip)]
    common: cli::NoCommon,
}

fn main() -> ExitCode {
    cli::main(|args: Args| {
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
            hvg: args.hvg.clone(),
            n_neighbors: args.n_neighbors,
            neighbors_of: args.neighbors_of.clone(),
            mito_prefix: args.mito_prefix.clone(),
            n_pcs: args.n_pcs,
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

cellweave::help_test!(Args);
