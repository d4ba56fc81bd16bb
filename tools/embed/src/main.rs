//! cellweave-embed: apply a trained model to a cells table (e.g. map new batches onto a
//! trained reference).

use cellweave::cli;
use cellweave::contract::Step;
use cellweave::io::atomic::{Kind, Outputs};
use cellweave_models::claire::command as claire;
use cellweave_models::command::{model_kind, EmbedRun};
use cellweave_models::invae::command as invae;
use cellweave_models::medl::command::{self as medl, MedlEmbedArgs};
use cellweave_models::ModelKind;
use clap::Parser;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

/// Embed the cells of a table with a model written by cellweave-train (the model's card
/// says which). Genes are matched to the model's by id (by name when no id matches); genes
/// the table lacks count as 0.
#[derive(Parser, Serialize, Debug)]
#[command(name = "cellweave-embed", version = cellweave::cli::LONG_VERSION)]
struct Args {
    /// Cells table on the model's scale (log1p)
    #[arg(value_name = "CELLS")]
    cells: PathBuf,
    /// Model directory (cellweave-train -o)
    #[arg(long, value_name = "MODEL_DIR")]
    model: PathBuf,
    /// Embedding table to write (.arrow or .parquet)
    #[arg(short, long, value_name = "EMB")]
    output: PathBuf,
    /// cpu, or cuda[:N] (needs a build with --features cuda)
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Error when more than this fraction of the model's genes is missing (0 to 1)
    #[arg(value_parser = cli::range::fraction::<f64>, long, default_value_t = 0.5, value_name = "FRACTION")]
    max_missing: f64,
    #[command(flatten)]
    medl: MedlEmbedArgs,
}

fn main() -> ExitCode {
    cli::main(|a: Args| {
        let mut outputs = Outputs::new(&[a.cells.as_path()])?;
        outputs.file(&a.output, Kind::Table)?;
        let run = EmbedRun {
            cells: a.cells.clone(),
            model_dir: a.model.clone(),
            output: a.output.clone(),
            device: a.device.clone(),
            max_missing: a.max_missing,
        };
        let step = Step::new("cellweave-embed", &a);
        match model_kind(&a.model)? {
            ModelKind::Claire => {
                a.medl.check_unused("claire")?;
                claire::embed(&run, &step)?
            }
            ModelKind::Medl => medl::embed(&run, &a.medl, &step)?,
            ModelKind::Invae => {
                a.medl.check_unused("invae")?;
                invae::embed(&run, &step)?
            }
            ModelKind::Deepmnn => {
                a.medl.check_unused("deepmnn")?;
                cellweave_models::deepmnn::command::embed(&run, &step)?
            }
            ModelKind::Scetm => {
                a.medl.check_unused("scetm")?;
                cellweave_models::scetm::command::embed(&run, &step)?
            }
        }
        outputs.commit()
    })
}

cellweave::help_test!(Args);
