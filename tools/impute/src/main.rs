//! cellweave-impute: fill dropout zeros with LATE / TRANSLATE (an autoencoder trained on the
//! observed entries) or a baseline, optionally scoring the result against held-out truth.

use cellweave::cli;
use cellweave::contract::Step;
use cellweave::io::atomic::{Kind, Outputs};
use cellweave_models::late::stage;
use clap::Parser;
use serde::Serialize;
use std::path::Path;
use std::process::ExitCode;

/// Impute dropout zeros of a cells table with LATE/TRANSLATE or a baseline.
///
/// Values are log10(x+1) of the raw counts by default (--scale log1p for ln(x+1)); the output
/// is a cells table with a dense row of imputed values per cell on that scale (values
/// `imputed`; the scale is in its provenance).
#[derive(Parser, Serialize, Debug)]
#[command(name = "cellweave-impute", version = cellweave::cli::LONG_VERSION, about, long_about = None)]
struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    options: stage::Options,
    /// Recorded as `"common": {}` in the provenance
    #[arg(skip)]
    common: cli::NoCommon,
}

fn main() -> ExitCode {
    cli::main(|args: Args| {
        cellweave_models::kernels::huge::reuse_freed_memory();
        let o = &args.options;
        let mut inputs: Vec<&Path> = vec![o.input.as_path()];
        inputs.extend(o.init.as_deref());
        inputs.extend(o.truth.as_deref());
        let mut outputs = Outputs::new(&inputs)?;
        outputs
            .file(&o.output, Kind::Table)?
            .file_opt(o.log.as_deref(), Kind::TableOrTsv)?;
        if let Some(dir) = &o.model_out {
            outputs.dir(dir)?;
        }
        stage::run(o, Step::new("cellweave-impute", &args))?;
        outputs.commit()
    })
}

cellweave::help_test!(Args);
