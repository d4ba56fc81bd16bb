//! cellweave-train: train an integration model (`--model`, CLAIRE by default) and write
//! the model directory and the embedding of every cell.

use cellweave::cli;
use cellweave::contract::Step;
use cellweave::io::atomic::{Kind, Outputs};
use cellweave_models::claire::command::{self as claire, ClaireArgs};
use cellweave_models::command::{Hyper, TrainRun};
use cellweave_models::deepmnn::command::{self as deepmnn, DeepmnnArgs};
use cellweave_models::invae::command::{self as invae, InvaeArgs};
use cellweave_models::medl::command::{self as medl, MedlArgs};
use cellweave_models::scetm::command::{self as scetm, ScetmArgs};
use cellweave_models::ModelKind;
use clap::Parser;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

/// Train an integration model on a log-normalized, HVG-subset cells table. CLAIRE (the
/// default) also takes the seed pairs and KNN lists of cellweave-pairs: by default one call
/// runs stage 1, refines the seed pairs with a Gaussian mixture on their similarities, then
/// continues with stage 2. Writes the model directory (-o: weights, model card, training
/// state, log) and the embedding (--embedding).
#[derive(Parser, Serialize, Debug)]
#[command(name = "cellweave-train", version = cellweave::cli::LONG_VERSION)]
struct Args {
    /// Cells table (log1p values, HVG subset)
    #[arg(value_name = "CELLS")]
    cells: PathBuf,
    /// Pairs table of the same cells (cellweave-pairs or cellweave-refine; claire)
    #[arg(long, value_name = "PAIRS")]
    pairs: Option<PathBuf>,
    /// Raw counts of the same cells (the cellweave-filter output; models of counts)
    #[arg(long, value_name = "COUNTS")]
    counts: Option<PathBuf>,
    /// Model directory to write
    #[arg(short, long, value_name = "MODEL_DIR")]
    output: PathBuf,
    /// Embedding table of every cell (.arrow or .parquet)
    #[arg(long, value_name = "EMB")]
    embedding: PathBuf,
    /// Model to train
    #[arg(long, value_enum, default_value = "claire")]
    model: ModelKind,
    /// Continue the training state of this model directory (epochs keep counting)
    #[arg(long, value_name = "MODEL_DIR")]
    init: Option<PathBuf>,
    /// Continue an interrupted run of -o from its last checkpoint (exactly)
    #[arg(long)]
    resume: bool,
    /// Write a checkpoint every N epochs (0: only at the end)
    #[arg(long, default_value_t = 5, value_name = "N")]
    checkpoint_every: usize,
    /// Also write the per-epoch training log here (.arrow, .parquet or .tsv)
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// cpu, or cuda[:N] (needs a build with --features cuda)
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Seed of every random draw (same seed, same output on the CPU)
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Per-cell labels for reports such as the seed accuracy (never used for training)
    #[arg(long, default_value = "cell_type", value_name = "COLUMN")]
    labels: String,
    /// Per-cell batch column (for models that read the batches themselves; CLAIRE's come
    /// with its pairs)
    #[arg(long, default_value = "batch", value_name = "COLUMN")]
    batch_key: String,
    /// Stop after this many epochs as if killed (tests crash recovery)
    #[arg(long, hide = true, value_name = "N")]
    #[serde(skip)]
    stop_after_epoch: Option<usize>,
    #[command(flatten)]
    hyper: Hyper,
    #[command(flatten)]
    claire: ClaireArgs,
    #[command(flatten)]
    invae: InvaeArgs,
    #[command(flatten)]
    medl: MedlArgs,
    #[command(flatten)]
    scetm: ScetmArgs,
    #[command(flatten)]
    deepmnn: DeepmnnArgs,
}

fn main() -> ExitCode {
    cli::main(|a: Args| {
        let run = TrainRun {
            cells: a.cells.clone(),
            pairs: a.pairs.clone(),
            counts: a.counts.clone(),
            model_dir: a.output.clone(),
            embedding: a.embedding.clone(),
            log: a.log.clone(),
            device: a.device.clone(),
            seed: a.seed,
            init: a.init.clone(),
            resume: a.resume,
            checkpoint_every: a.checkpoint_every,
            labels: a.labels.clone(),
            batch_key: a.batch_key.clone(),
            stop_after: a.stop_after_epoch,
            hyper: a.hyper.clone(),
        };
        let mut outputs = Outputs::new(&run.inputs())?;
        outputs
            .file(&a.embedding, Kind::Table)?
            .file_opt(a.log.as_deref(), Kind::TableOrTsv)?
            .file_opt(a.medl.re_embedding.as_deref(), Kind::Table)?
            .file_opt(a.scetm.genes_out.as_deref(), Kind::TableOrTsv)?
            .file_opt(a.deepmnn.corrected.as_deref(), Kind::Table)?;
        let step = Step::new("cellweave-train", &a);
        match a.model {
            ModelKind::Claire => claire::train(&run, &a.claire, &step)?,
            ModelKind::Invae => invae::train(&run, &a.invae, &step)?,
            ModelKind::Medl => medl::train(&run, &a.medl, &step)?,
            ModelKind::Scetm => scetm::train(&run, &a.scetm, &step)?,
            ModelKind::Deepmnn => deepmnn::train(&run, &a.deepmnn, &step)?,
        }
        outputs.commit()
    })
}

cellweave::help_test!(Args);
