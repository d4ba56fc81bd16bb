//! What `cellweave-train` and `cellweave-embed` do: their flags ([`TrainArgs`],
//! [`EmbedArgs`]) and their runs ([`run_train`], [`run_embed`]): declare the outputs, hand
//! the run to the model (`--model` for training, the model directory's card for embedding)
//! and commit the outputs together.

use crate::bcscetm::{self, BcscetmArgs};
use crate::claire::command::{self as claire, ClaireArgs};
use crate::command::{model_kind, EmbedRun, Hyper, TrainRun};
use crate::deepmnn::command::{self as deepmnn, DeepmnnArgs};
use crate::invae::command::{self as invae, InvaeArgs};
use crate::medl::command::{self as medl, MedlArgs, MedlEmbedArgs};
use crate::scetm::command::{self as scetm, ScetmArgs};
use crate::ModelKind;
use cellweave::contract::Step;
use cellweave::io::atomic::{Kind, Outputs};
use cellweave::Result;
use std::path::PathBuf;

/// The flags of `cellweave-train`, as clap parses them for [`run_train`] (the provenance
/// records them, each model's own under its name).
#[derive(clap::Args, serde::Serialize, Debug, Clone)]
pub struct TrainArgs {
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
    /// The hyperparameters every model shares
    #[command(flatten)]
    hyper: Hyper,
    /// CLAIRE's flags
    #[command(flatten)]
    claire: ClaireArgs,
    /// inVAE's flags
    #[command(flatten)]
    invae: InvaeArgs,
    /// MEDL's flags
    #[command(flatten)]
    medl: MedlArgs,
    /// scETM's flags
    #[command(flatten)]
    scetm: ScetmArgs,
    /// DeepMNN's flags
    #[command(flatten)]
    deepmnn: DeepmnnArgs,
    /// The batch-corrected scETM's flags
    #[command(flatten)]
    bcscetm: BcscetmArgs,
}

impl TrainArgs {
    /// The inputs and outputs of the run, as every model takes them.
    fn run(&self) -> TrainRun {
        TrainRun {
            cells: self.cells.clone(),
            pairs: self.pairs.clone(),
            counts: self.counts.clone(),
            model_dir: self.output.clone(),
            embedding: self.embedding.clone(),
            log: self.log.clone(),
            device: self.device.clone(),
            seed: self.seed,
            init: self.init.clone(),
            resume: self.resume,
            checkpoint_every: self.checkpoint_every,
            labels: self.labels.clone(),
            batch_key: self.batch_key.clone(),
            stop_after: self.stop_after_epoch,
            hyper: self.hyper.clone(),
        }
    }
}

/// `cellweave-train`: train the model `args.model` and write its directory, the embedding
/// and the side outputs; `step` (the tool's parsed arguments) goes in their provenance.
pub fn run_train(args: &TrainArgs, step: &Step) -> Result<()> {
    if matches!(args.model, ModelKind::Claire) && args.device == "cpu" {
        // The fused CPU step's long-lived buffers on huge pages (when the binary installs
        // kernels::huge::HugePageAlloc); the candle models' short-lived tensors are not.
        crate::kernels::huge::enable();
    }
    let run = args.run();
    let mut outputs = Outputs::new(&run.inputs())?;
    outputs
        .file(&args.embedding, Kind::Table)?
        .file_opt(args.log.as_deref(), Kind::TableOrTsv)?
        .file_opt(args.medl.re_embedding.as_deref(), Kind::Table)?
        .file_opt(args.scetm.genes_out.as_deref(), Kind::TableOrTsv)?
        .file_opt(args.deepmnn.corrected.as_deref(), Kind::Table)?;
    args.bcscetm.check_unused(args.model)?;
    match args.model {
        ModelKind::Claire => claire::train(&run, &args.claire, step)?,
        ModelKind::Invae => invae::train(&run, &args.invae, step)?,
        ModelKind::Medl => medl::train(&run, &args.medl, step)?,
        ModelKind::Scetm => scetm::train(&run, &args.scetm, step)?,
        ModelKind::Deepmnn => deepmnn::train(&run, &args.deepmnn, step)?,
        ModelKind::Bcscetm => {
            bcscetm::train(&run, &args.bcscetm, &args.deepmnn, &args.scetm, step)?
        }
    }
    outputs.commit()
}

/// The flags of `cellweave-embed`, as clap parses them for [`run_embed`].
#[derive(clap::Args, serde::Serialize, Debug, Clone)]
pub struct EmbedArgs {
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
    #[arg(value_parser = cellweave::cli::range::fraction::<f64>, long, default_value_t = 0.5, value_name = "FRACTION")]
    max_missing: f64,
    /// MEDL's flags
    #[command(flatten)]
    medl: MedlEmbedArgs,
}

impl EmbedArgs {
    /// The inputs and outputs of the run, as every model takes them.
    fn run(&self) -> EmbedRun {
        EmbedRun {
            cells: self.cells.clone(),
            model_dir: self.model.clone(),
            output: self.output.clone(),
            device: self.device.clone(),
            max_missing: self.max_missing,
        }
    }
}

/// `cellweave-embed`: embed the cells of `args.cells` with the model of `args.model` (its
/// card names which) and write the embedding; `step` goes in its provenance.
pub fn run_embed(args: &EmbedArgs, step: &Step) -> Result<()> {
    let mut outputs = Outputs::new(&[args.cells.as_path()])?;
    outputs.file(&args.output, Kind::Table)?;
    let run = args.run();
    let kind = model_kind(&args.model)?;
    if kind != ModelKind::Medl {
        args.medl.check_unused(kind.name())?;
    }
    match kind {
        ModelKind::Claire => claire::embed(&run, step)?,
        ModelKind::Medl => medl::embed(&run, &args.medl, step)?,
        ModelKind::Invae => invae::embed(&run, step)?,
        ModelKind::Deepmnn => deepmnn::embed(&run, step)?,
        ModelKind::Scetm => scetm::embed(&run, step)?,
        ModelKind::Bcscetm => bcscetm::embed(&run, step)?,
    }
    outputs.commit()
}
