//! cellweave-import: bring 10x MTX folders, 10x `.h5`, AnnData `.h5ad` and dense CSV/TSV
//! matrices into a cells table (`.arrow` or `.parquet`).

use cellweave::cli::{self, Common};
use cellweave::contract::Step;
use cellweave::convert::import::{import_lazy, summary, summary_of, write_imported, ImportOptions};
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
    #[command(flatten)]
    #[serde(flatten)]
    options: ImportOptions,
    #[command(flatten)]
    common: Common,
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
                Error::new("must be a cells table, .arrow or .parquet (cellweave-export writes .h5ad, .tsv and 10x folders)").flag("--output").file(&args.output),
            );
        }
        let mut inputs: Vec<&Path> = args.inputs.iter().map(PathBuf::as_path).collect();
        inputs.extend(args.options.obs.as_deref());
        let mut outputs = Outputs::new(&inputs)?;
        outputs.file(&args.output, Kind::Table)?;
        let opts = &args.options;
        let timer = cli::Timer::start("import");
        let (mut t, rows) = import_lazy(&args.inputs, opts)?;
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
        outputs.commit()?;
        timer.done();
        Ok(())
    })
}

cellweave::help_test!(Args);
