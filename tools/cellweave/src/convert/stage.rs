//! What `cellweave-import` does: read the samplesheet when there is one, import every input
//! and write the cells table (row range by row range when it comes from one `.h5ad`).

use crate::cli;
use crate::contract::Step;
use crate::convert::import::{import_lazy, summary, summary_of, write_imported, ImportOptions};
use crate::convert::samplesheet::read_samplesheet;
use crate::io::atomic::{Kind, Outputs};
use crate::io::{table, Format};
use crate::{info, Error, Result};
use std::path::{Path, PathBuf};

/// The flags of `cellweave-import`: the inputs (or a samplesheet), the output and how the
/// inputs are read and joined.
#[derive(clap::Args, serde::Serialize, Debug, Clone)]
pub struct ImportArgs {
    /// Input files or 10x folders
    #[arg(required_unless_present = "samplesheet", value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// CSV/TSV with one row per sample: columns sample (the batch), path (its matrix or Cell
    /// Ranger folder), optionally obs (its per-cell metadata file) and any per-sample
    /// columns (e.g. condition), added to every cell of the sample; relative paths from the
    /// sheet's folder
    #[arg(long, value_name = "SHEET", conflicts_with_all = ["inputs", "batch", "batch_key"])]
    pub samplesheet: Option<PathBuf>,
    /// Output cells table (.arrow or .parquet)
    #[arg(short, long, value_name = "OUTPUT")]
    pub output: PathBuf,
    /// How the inputs are read and joined
    #[command(flatten)]
    #[serde(flatten)]
    pub options: ImportOptions,
}

/// Import `args.inputs` (or the samples of `args.samplesheet`, each sample a batch) into the
/// cells table `args.output`, with `step` as its last provenance step.
pub fn run_import(args: &ImportArgs, step: Step) -> Result<()> {
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
    t.provenance.push(step);
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
}
