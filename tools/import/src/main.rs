//! cellweave-import: bring 10x MTX folders, 10x `.h5`, AnnData `.h5ad` and dense CSV/TSV
//! matrices into a cells table (`.arrow` or `.parquet`).

use cellweave::cli;
use cellweave::contract::Step;
use cellweave::convert::import::{import_lazy, summary, summary_of, write_imported, ImportOptions};
use cellweave::convert::samplesheet::read_samplesheet;
use cellweave::io::atomic::{Kind, Outputs};
use cellweave::io::{table, Format};
use cellweave::{info, Error};
use clap::Parser;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
    #[command(flatten)]
    #[serde(flatten)]
    options: ImportOptions,
    /// Recorded as `"common": {}` in the provenance
    #[arg(skip)]
    common: cli::NoCommon,
}

fn main() -> ExitCode {
    cli::main(|args: Args| {
        if !matches!(
            Format::of(&args.output),
            Some(Format::Arrow | Format::Parquet)
        ) {
            return Err(
                Error::new("must be a cells table, .arrow or .parquet (cellweave-export writes .h5ad, .tsv and 10x folders)").flag("--output").file(&args.output),
            );
        }
        let samples = match &args.samplesheet {
            Some(sheet) => read_samplesheet(sheet)?,
            None => Vec::new(),
        };
        let mut opts = args.options.clone();
        let paths = if samples.is_empty() {
            args.inputs.clone()
        } else {
            opts.batch = samples.iter().map(|s| s.name.clone()).collect();
            samples.iter().map(|s| s.path.clone()).collect()
        };
        opts.samples = samples;
        let mut inputs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        inputs.extend(opts.obs.as_deref());
        inputs.extend(opts.samples.iter().filter_map(|s| s.obs.as_deref()));
        inputs.extend(args.samplesheet.as_deref());
        let mut outputs = Outputs::new(&inputs)?;
        outputs.file(&args.output, Kind::Table)?;
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

cellweave::help_test!(Args);
