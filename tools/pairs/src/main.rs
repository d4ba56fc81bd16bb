//! cellweave-pairs: CLAIRE's seed pairs (mutual nearest neighbours between every pair of
//! batches) and intra-batch nearest neighbours, as one pairs table.

use cellweave::cli;
use cellweave::contract::Step;
use cellweave::integrate::stage::{run_pairs, PairsArgs};
use clap::Parser;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

/// Compute CLAIRE's seed pairs and intra-batch KNN lists from a log-normalized cells table.
///
/// Seeds: for every pair of batches, Seurat-style CCA (features z-scored per batch, 30
/// canonical vectors, L2-normalized; or the joint PCA with --space pca), mutual nearest
/// neighbours (k.anchor), kept when the partner is among the cell's k.filter nearest
/// neighbours in the L2-normalized expression of the top CCA-loading genes. KNN: per
/// batch, the nearest cells (self excluded) in the L2-normalized joint PCA.
///
/// Scatter/gather: `--batch-a A --batch-b B` computes one batch pair, `--knn-only` the KNN
/// lists; `--merge SHARD... -o PAIRS` joins them into what one run writes.
#[derive(Parser, Serialize, Debug)]
#[command(name = "cellweave-pairs", version = cellweave::cli::LONG_VERSION)]
struct Args {
    /// Cells table (log-normalized, HVG subset), or the shards to join with --merge
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
    /// Output pairs table (.arrow or .parquet)
    #[arg(short, long, value_name = "OUTPUT")]
    output: PathBuf,
    /// Join pairs tables written with --batch-a/--batch-b and --knn-only
    #[arg(long, conflicts_with_all = ["batch_a", "batch_b", "knn_only"])]
    merge: bool,
    #[command(flatten)]
    #[serde(flatten)]
    pairs: PairsArgs,
    /// Recorded as `"common": {}` in the provenance
    #[arg(skip)]
    common: cli::NoCommon,
}

fn main() -> ExitCode {
    cli::main(|args: Args| {
        let step = Step::new("cellweave-pairs", &args);
        run_pairs(&args.inputs, &args.output, args.merge, &args.pairs, &step)
    })
}

cellweave::help_test!(Args);
