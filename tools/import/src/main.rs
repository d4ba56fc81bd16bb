//! cellweave-import: bring 10x MTX folders, 10x `.h5`, AnnData `.h5ad` and dense CSV/TSV
//! matrices into a cells table (`.arrow` or `.parquet`).

use cellweave::cli::{self, Common};
use cellweave::contract::{Step, ValueKind};
use cellweave::convert::import::{
    import_lazy, summary, summary_of, write_imported, GeneJoin, ImportOptions,
};
use cellweave::io::formats::mtx::Orientation;
use cellweave::io::{atomic, table, Format};
use cellweave::{info, Error};
use clap::Parser;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn value_kind(s: &str) -> Result<ValueKind, String> {
    ValueKind::parse(s)
        .ok_or_else(|| format!("'{s}' is not one of counts, normalized, log1p, log10p, imputed"))
}

/// Import single-cell expression matrices into a cellweave cells table.
///
/// Inputs: a 10x folder (matrix.mtx[.gz], features.tsv[.gz] or genes.tsv[.gz],
/// barcodes.tsv[.gz]; an obs.tsv inside it is joined), a `<prefix>matrix.mtx[.gz]` file,
/// a 10x `.h5`, an AnnData `.h5ad`, a dense `.csv`/`.tsv[.gz]` (cells as rows), or a cells
/// table. Several inputs are concatenated with genes aligned by id.
#[derive(Parser, Serialize, Debug)]
#[command(name = "cellweave-import", version = cellweave::cli::LONG_VERSION)]
struct Args {
    /// Input files or 10x folders
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
    /// Output cells table (.arrow or .parquet)
    #[arg(short, long, value_name = "OUTPUT")]
    output: PathBuf,
    /// .h5ad: read this layer instead of X (`raw` reads raw/X with raw/var)
    #[arg(long, value_name = "NAME")]
    layer: Option<String>,
    /// Per-cell metadata to join by cell id (TSV/CSV, first column = cell id)
    #[arg(long, value_name = "FILE")]
    obs: Option<PathBuf>,
    /// Per-cell column holding the batch (default: `batch` if such a column exists)
    #[arg(long, value_name = "KEY")]
    batch_key: Option<String>,
    /// Batch name of all cells of an input (give one per input)
    #[arg(long, value_name = "NAME")]
    batch: Vec<String>,
    /// Suffix duplicate cell ids (and gene ids) with -1, -2, ... instead of failing
    #[arg(long)]
    make_unique: bool,
    /// How gene sets of several inputs are combined (union fills absent genes with zeros)
    #[arg(long, value_enum, default_value = "intersection")]
    join: GeneJoin,
    /// Matrix rows are genes (dense text: header of cell ids; MTX: forces the 10x layout)
    #[arg(long, conflicts_with = "cells_as_rows")]
    genes_as_rows: bool,
    /// MTX: matrix rows are cells (the default is detected from the file sizes)
    #[arg(long)]
    cells_as_rows: bool,
    /// What the values are; `counts` requires finite non-negative numbers
    #[arg(long, value_parser = value_kind, default_value = "counts")]
    #[serde(serialize_with = "ser_kind")]
    values: ValueKind,
    #[command(flatten)]
    common: Common,
}

fn ser_kind<S: serde::Serializer>(v: &ValueKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init(&args.common);
    cli::run("cellweave-import", || {
        if !matches!(
            Format::of(&args.output),
            Some(Format::Arrow | Format::Parquet)
        ) {
            return Err(
                Error::new("must be a cells table, .arrow or .parquet (cellweave-export writes .h5ad, .tsv and 10x folders)").field("output").file(&args.output),
            );
        }
        let inputs: Vec<&Path> = args.inputs.iter().map(PathBuf::as_path).collect();
        atomic::check_not_input(&args.output, &inputs)?;
        let opts = ImportOptions {
            layer: args.layer.clone(),
            obs: args.obs.clone(),
            batch_key: args.batch_key.clone(),
            batch: args.batch.clone(),
            make_unique: args.make_unique,
            join: args.join,
            orientation: match (args.genes_as_rows, args.cells_as_rows) {
                (true, _) => Some(Orientation::GenesByCells),
                (_, true) => Some(Orientation::CellsByGenes),
                _ => None,
            },
            values: args.values,
        };
        let timer = cli::Timer::start("import");
        let (mut t, rows) = import_lazy(&args.inputs, &opts)?;
        t.provenance.push(Step::new("cellweave-import", &args));
        match rows {
            // one .h5ad with a CSR matrix: its rows go from the file to the output batch by batch
            Some(rows) => {
                let (nnz, sum) = write_imported(&args.output, &t, &rows, &args.inputs[0])?;
                info!("{}", summary_of(&t, nnz, sum));
            }
            None => {
                info!("{}", summary(&t));
                table::write_cells(&args.output, &t)?;
            }
        }
        timer.done();
        Ok(())
    })
}
