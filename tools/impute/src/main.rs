//! cellweave-impute: fill dropout zeros with LATE / TRANSLATE (an autoencoder trained on the
//! observed entries) or a baseline, optionally scoring the result against held-out truth.

use cellweave::cli::{self, Common};
use cellweave::contract::Step;
use cellweave::impute::{Method, Scale};
use cellweave_models::late::{stage, Engine};
use clap::Parser;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

const TOOL: &str = "cellweave-impute";

/// Impute dropout zeros of a cells table with LATE/TRANSLATE or a baseline.
///
/// Values are log10(x+1) of the raw counts by default (--scale log1p for ln(x+1)); the output
/// is a cells table with a dense row of imputed values per cell on that scale (values
/// `imputed`; the scale is in its provenance).
#[derive(Parser, Serialize, Debug)]
#[command(name = TOOL, version = cellweave::cli::LONG_VERSION, about, long_about = None)]
struct Args {
    /// Input cells table (.arrow or .parquet) of raw counts
    #[serde(skip)]
    cells: PathBuf,
    /// Output cells table with the imputed values
    #[arg(short, long, value_name = "IMPUTED")]
    #[serde(skip)]
    output: PathBuf,
    /// late (autoencoder), gene-mean (each gene's mean of its observed values) or knn (average
    /// over the nearest cells in the PCA of the input)
    #[arg(long, value_enum, default_value = "late")]
    method: Method,
    /// Value scale: log10 = log10(x+1) (LATE), log1p = ln(x+1)
    #[arg(long, value_enum, default_value = "log10")]
    scale: Scale,
    /// Hidden layer widths [default: 800,400,800]
    #[arg(long, value_delimiter = ',', value_name = "W,W,...")]
    hidden: Option<Vec<usize>>,
    /// Maximum training epochs
    #[arg(long, default_value_t = 100)]
    epochs: usize,
    /// Stop after this many epochs without a lower validation loss (0: never)
    #[arg(long, default_value_t = 10)]
    patience: usize,
    /// Adam learning rate [default: 3e-4, or 3e-5 with --init]
    #[arg(long)]
    lr: Option<f64>,
    /// Cells per training step
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Fraction of cells held out for early stopping
    #[arg(long, default_value_t = 0.15)]
    val_fraction: f64,
    /// Start from a saved model (TRANSLATE: pre-trained on a reference)
    #[arg(long, value_name = "MODEL_DIR")]
    init: Option<PathBuf>,
    /// Save the best model (model.safetensors + card.yaml) into this directory
    #[arg(long, value_name = "MODEL_DIR")]
    model_out: Option<PathBuf>,
    /// Write the training log (.tsv, .arrow or .parquet)
    #[arg(long, value_name = "LOG")]
    log: Option<PathBuf>,
    /// Keep the observed (non-zero) values exactly; impute only the zeros
    #[arg(long)]
    only_zeros: bool,
    /// Give the network a one-hot batch covariate (encoder and decoder input)
    #[arg(long)]
    batch_aware: bool,
    /// Per-cell column holding the batch, for --batch-aware
    #[arg(long, default_value = "batch")]
    batch_key: String,
    /// Neighbours for --method knn (the cell itself included)
    #[arg(long, default_value_t = 15)]
    knn: usize,
    /// Principal components for --method knn
    #[arg(long, default_value_t = 30)]
    n_pcs: usize,
    /// cpu, or cuda (builds with the `cuda` feature)
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Training implementation: auto, fast (hand-written, CPU) or autograd (candle autograd)
    #[arg(long, default_value = "auto", value_parser = parse_engine, hide = true)]
    engine: Engine,
    /// Random seed (split, initial weights, dropout, batch order)
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Truth cells table (raw counts): print a JSON line with the held-out MSE (log10(x+1))
    /// and median Pearson per gene and per cell, on entries non-zero in the truth and zero in
    /// the input
    #[arg(long, value_name = "TRUTH")]
    #[serde(skip)]
    truth: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

fn parse_engine(s: &str) -> Result<Engine, String> {
    Engine::parse(s).ok_or_else(|| format!("'{s}' is not one of auto, fast, autograd"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::run(TOOL, || {
        cli::init(&args.common);
        let o = stage::Options {
            input: args.cells.clone(),
            output: args.output.clone(),
            method: args.method,
            scale: args.scale,
            hidden: args.hidden.clone(),
            epochs: args.epochs,
            patience: args.patience,
            lr: args.lr,
            batch_size: args.batch_size,
            val_fraction: args.val_fraction,
            init: args.init.clone(),
            model_out: args.model_out.clone(),
            log: args.log.clone(),
            only_zeros: args.only_zeros,
            batch_aware: args.batch_aware,
            batch_key: args.batch_key.clone(),
            knn: args.knn,
            n_pcs: args.n_pcs,
            device: args.device.clone(),
            engine: args.engine,
            seed: args.seed,
            truth: args.truth.clone(),
        };
        stage::run(&o, Step::new(TOOL, &args))
    })
}
