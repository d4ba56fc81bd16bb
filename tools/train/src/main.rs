//! cellweave-train: train a CLAIRE model (MoCo contrastive encoder on mixed-up positive
//! pairs) and write the model directory and the embedding of every cell.

use cellweave::cli::{self, Common};
use cellweave::contract::Step;
use cellweave::io::atomic::{Kind, Outputs};
use cellweave_models::claire::command::{self, TrainOptions};
use cellweave_models::claire::moco::MocoParams;
use cellweave_models::claire::train::{EmbedWith, TrainParams};
use cellweave_models::ModelKind;
use clap::Parser;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

/// Train CLAIRE on a log-normalized, HVG-subset cells table with the seed pairs and KNN
/// lists of cellweave-pairs. By default one call runs stage 1, refines the seed pairs with
/// a Gaussian mixture on their similarities, then continues with stage 2. Writes the model
/// directory (-o: weights, model card, training state, log) and the embedding (--embedding).
#[derive(Parser, Serialize, Debug)]
#[command(name = "cellweave-train", version = cellweave::cli::LONG_VERSION)]
struct Args {
    /// Cells table (log1p values, HVG subset)
    #[arg(value_name = "CELLS")]
    cells: PathBuf,
    /// Pairs table of the same cells (cellweave-pairs or cellweave-refine)
    #[arg(long, value_name = "PAIRS")]
    pairs: PathBuf,
    /// Model directory to write
    #[arg(short, long, value_name = "MODEL_DIR")]
    output: PathBuf,
    /// Embedding table of every cell (.arrow or .parquet)
    #[arg(long, value_name = "EMB")]
    embedding: PathBuf,
    /// Model to train
    #[arg(long, value_enum, default_value = "claire")]
    model: ModelKind,
    /// Epochs in this call, stage 1 and 2 together [default: 80, or more on small data so
    /// that at least --min-steps steps run] (at least 1)
    #[arg(value_parser = cli::range::at_least_1, long, value_name = "N")]
    epochs: Option<usize>,
    /// With automatic --epochs: run at least this many steps
    #[arg(long, default_value_t = 1500, value_name = "N")]
    min_steps: usize,
    /// Epochs before refinement [default: 3, or more so that at least 100 steps run] (at least 1)
    #[arg(value_parser = cli::range::at_least_1, long, value_name = "N")]
    stage1_epochs: Option<usize>,
    /// Do not refine the seed pairs (one stage; for stage-by-stage workflows)
    #[arg(long)]
    no_refine: bool,
    /// Run only stage 1 (--stage1-epochs, by default 3 or enough for 100 steps), without
    /// refinement, embedding with the query encoder unless --embed-with says otherwise: the
    /// first call of a stage-by-stage run (train, refine, then train --init). Conflicts with
    /// --epochs
    #[arg(long, conflicts_with = "epochs")]
    stage1_only: bool,
    /// Keep seed pairs whose posterior of the high-similarity component is at least this (0 to 1)
    #[arg(value_parser = cli::range::fraction::<f64>, long, default_value_t = 0.5, value_name = "P")]
    refine_threshold: f64,
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
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Anchor cells per step (each gives two views); the last partial batch is dropped (at least 2)
    #[arg(value_parser = cli::range::at_least_2, long, default_value_t = 256, value_name = "N")]
    batch_size: usize,
    /// Adam learning rate (> 0)
    #[arg(value_parser = cli::range::positive::<f64>, long, default_value_t = 1e-4)]
    lr: f64,
    /// Adam L2 weight decay (>= 0)
    #[arg(value_parser = cli::range::non_negative::<f64>, long, default_value_t = 1e-5)]
    weight_decay: f64,
    /// Mix-up coefficients are drawn from U(alpha, 1) (0 to 1)
    #[arg(value_parser = cli::range::fraction::<f32>, long, default_value_t = 0.5)]
    alpha: f32,
    /// Embedding dimensions (at least 1)
    #[arg(value_parser = cli::range::at_least_1, long, default_value_t = 128)]
    latent: usize,
    /// Negatives in the MoCo queue (at least 1)
    #[arg(value_parser = cli::range::at_least_1, long, default_value_t = 2048)]
    queue: usize,
    /// Softmax temperature (> 0)
    #[arg(value_parser = cli::range::positive::<f64>, long, default_value_t = 0.07)]
    temperature: f64,
    /// Key encoder momentum (0 to 1)
    #[arg(value_parser = cli::range::fraction::<f32>, long, default_value_t = 0.999)]
    momentum: f32,
    /// Dropout after the first two layers (0 to 1, below 1)
    #[arg(value_parser = cli::range::fraction_below_1::<f32>, long, default_value_t = 0.3)]
    dropout: f32,
    /// Encoder whose output is the embedding and the saved model: the momentum encoder (a
    /// moving average of the query encoder's weights, less noisy), the query encoder
    /// (CLAIRE's released code), or auto: momentum once the momentum encoder has averaged
    /// ~1 / -ln(m) steps (~1,000 at m = 0.999), query before (a short stage-1 run). The
    /// refinement inside this call always uses the query encoder
    #[arg(long, value_enum, default_value = "auto")]
    embed_with: Encoder,
    /// Per-cell labels for the seed-accuracy report (never used for training)
    #[arg(long, default_value = "cell_type", value_name = "COLUMN")]
    labels: String,
    /// Stop after this many epochs as if killed (tests crash recovery)
    #[arg(long, hide = true, value_name = "N")]
    #[serde(skip)]
    stop_after_epoch: Option<usize>,
    #[command(flatten)]
    #[serde(skip)]
    common: Common,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
enum Encoder {
    Auto,
    Momentum,
    Query,
}

fn main() -> ExitCode {
    cli::run("cellweave-train", || {
        let a = cli::parse::<Args>();
        cli::init(&a.common);
        // --model takes the variants of ModelKind; each model gets its arm here (a `match`
        // once there are two).
        if a.model != ModelKind::Claire {
            return Err(
                cellweave::Error::new("this build trains --model claire only").field("model"),
            );
        }
        let mut inputs = vec![a.cells.as_path(), a.pairs.as_path()];
        inputs.extend(a.init.as_deref());
        let mut outputs = Outputs::new(&inputs)?;
        outputs
            .file(&a.embedding, Kind::Table)?
            .file_opt(a.log.as_deref(), Kind::TableOrTsv)?;
        let defaults = TrainParams::default();
        let params = TrainParams {
            epochs: a.epochs,
            min_steps: a.min_steps,
            stage1_epochs: a.stage1_epochs,
            stage1_only: a.stage1_only,
            refine: !a.no_refine,
            refine_threshold: a.refine_threshold,
            batch_size: a.batch_size,
            lr: a.lr,
            weight_decay: a.weight_decay,
            alpha: a.alpha,
            latent: a.latent,
            moco: MocoParams {
                momentum: a.momentum,
                temperature: a.temperature,
                queue_size: a.queue,
                dropout: a.dropout,
            },
            embed_with: match a.embed_with {
                Encoder::Auto => EmbedWith::Auto,
                Encoder::Momentum => EmbedWith::Momentum,
                Encoder::Query => EmbedWith::Query,
            },
            seed: a.seed,
            ..defaults
        };
        let opts = TrainOptions {
            cells: a.cells.clone(),
            pairs: a.pairs.clone(),
            model_dir: a.output.clone(),
            embedding: a.embedding.clone(),
            params,
            init: a.init.clone(),
            resume: a.resume,
            checkpoint_every: a.checkpoint_every,
            log: a.log.clone(),
            device: a.device.clone(),
            labels: a.labels.clone(),
            stop_after: a.stop_after_epoch,
        };
        command::train(&opts, &Step::new("cellweave-train", &a))?;
        outputs.commit()
    })
}
