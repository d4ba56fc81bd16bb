//! cellweave-import: bring 10x MTX folders, 10x `.h5`, AnnData `.h5ad` and dense CSV/TSV
//! matrices into a cells table (`.arrow` or `.parquet`).

use cellweave::cli::{self, Common};
use cellweave::contract::{Step, ValueKind};
use cellweave::convert::import::{
    import_lazy, summary, summary_of, write_imported, GeneJoin, ImportOptions,
};
use cellweave::convert::samplesheet::read_samplesheet;
use cellweave::io::atomic::{Kind, Outputs};
use cellweave::io::formats::mtx::Orientation;
use cellweave::io::formats::obs::ObsJoin;
use cellweave::io::{table, Format};
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
/// table. Several inputs are concatenated with genes aligned by id. Many samples: a
/// samplesheet (`--samplesheet sheet.csv`, columns sample,path[,obs] and any per-sample
/// columns), each sample a batch.
#[derive(Parser, Serialize, Debug)]
#[command(name = "cellweave-import", version = cellweave::cli::LONG_VERSION)]
struct Args {
    /// Input files or 10x folders
    #[arg(required_unless_present = "samplesheet", value_name = "INPUT")]
    inputs: Vec<PathBuf>,
    /// CSV/TSV with one row per sample: columns sample (the batch), path (its matrix or Cell
    /// Ranger folder), optionally obs (its per-cell metadata file) and any per-sample
    /// columns (e.g. condition), added to every cell of the sample; relative paths from the
    /// sheet's folder
    #[arg(long, value_name = "SHEET", conflicts_with_all = ["inputs", "batch", "batch_key"])]
    samplesheet: Option<PathBuf>,
    /// Output cells table (.arrow or .parquet)
    #[arg(short, long, value_name = "OUTPUT")]
    output: PathBuf,
    /// .h5ad: read this layer instead of X (`raw` reads raw/X with raw/var)
    #[arg(long, value_name = "NAME")]
    layer: Option<String>,
    /// Per-cell metadata to join by cell id (TSV/CSV, first column = cell id)
    #[arg(long, value_name = "FILE")]
    obs: Option<PathBuf>,
    /// How obs rows are matched to cells: id, position (row i is cell i, its id must be
    /// cell i's), or auto (by id; by position when the obs ids repeat)
    #[arg(long, value_enum, default_value = "auto")]
    obs_join: ObsJoin,
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
    let args = cli::parse::<Args>();
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
        let samples = match &args.samplesheet {
            Some(sheet) => read_samplesheet(sheet)?,
            None => Vec::new(),
        };
        let (paths, batch) = if samples.is_empty() {
            (args.inputs.clone(), args.batch.clone())
        } else {
            samples
                .iter()
                .map(|s| (s.path.clone(), s.name.clone()))
                .unzip()
        };
        let mut inputs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        inputs.extend(args.obs.as_deref());
        inputs.extend(samples.iter().filter_map(|s| s.obs.as_deref()));
        inputs.extend(args.samplesheet.as_deref());
        let mut outputs = Outputs::new(&inputs)?;
        outputs.file(&args.output, Kind::Table)?;
        let opts = ImportOptions {
            layer: args.layer.clone(),
            obs: args.obs.clone(),
            obs_join: args.obs_join,
            samples,
            batch_key: args.batch_key.clone(),
            batch,
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
        let (mut t, rows) = import_lazy(&paths, &opts)?;
        t.provenance.push(Step::new("cellweave-import", &args));
        match rows {
            // one .h5ad with a CSR matrix: its rows go from the file to the output batch by batch
            Some(rows) => {
                let (nnz, sum) = write_imported(&args.output, &t, &rows, &paths[0])?;
                info!("{}", summary_of(&t, nnz, sum));
            }
            None => {
                info!("{}", summary(&t));
                table::write_cells(&args.output, &t)?;
            }
        }
        outputs.commit()?;
        timer.done();
        Ok(())
    })
}
