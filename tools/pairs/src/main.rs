//! cellweave-pairs: CLAIRE's seed pairs (mutual nearest neighbours between every pair of
//! batches) and intra-batch nearest neighbours, as one pairs table.

use cellweave::cli;
use cellweave::info;
use cellweave::integrate::pairs::{self, Params, Shard, Space};
use cellweave::integrate::seed_check::{self, PairCount};
use cellweave::io::atomic::{Kind, Outputs};
use cellweave::io::table;
use cellweave::numerics::neighbors::{Method, Metric, Search};
use cellweave::{Error, ResultExt};
use clap::Parser;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod deepmnn_pairs;

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
pub(crate) struct Args {
    /// Cells table (log-normalized, HVG subset), or the shards to join with --merge
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
    /// Output pairs table (.arrow or .parquet)
    #[arg(short, long, value_name = "OUTPUT")]
    output: PathBuf,
    /// Join pairs tables written with --batch-a/--batch-b and --knn-only
    #[arg(long, conflicts_with_all = ["batch_a", "batch_b", "knn_only"])]
    merge: bool,
    /// Space of the seed search
    #[arg(long, value_enum, default_value = "cca")]
    space: Space,
    /// Neighbours checked for mutuality (Seurat's k.anchor) (at least 1)
    #[arg(value_parser = cli::range::at_least_1, long, default_value_t = 5, value_name = "K")]
    k_anchor: usize,
    /// Keep a seed only if the partner is among this many neighbours in gene space (0: no filter)
    #[arg(long, default_value_t = 200, value_name = "K")]
    k_filter: usize,
    /// Scale the filter with the partner batch: k = ceil(F x its cells), at least --k-anchor and
    /// at most --k-filter (0: a fixed --k-filter)
    #[arg(value_parser = cli::range::fraction::<f64>, long, default_value_t = 0.0, value_name = "F")]
    k_filter_frac: f64,
    /// Genes used by the filter at most (Seurat's max.features) (at least 1)
    #[arg(value_parser = cli::range::at_least_1, long, default_value_t = 200, value_name = "N")]
    max_features: usize,
    /// Canonical vectors (or PCs with --space pca) of the seed search (at least 1)
    #[arg(value_parser = cli::range::at_least_1, long, default_value_t = 30, value_name = "N")]
    n_cca: usize,
    /// Power iterations of the randomized SVD behind the CCA
    #[arg(long, default_value_t = 3, value_name = "N")]
    cca_iters: usize,
    /// Intra-batch neighbours per cell (at least 1)
    #[arg(value_parser = cli::range::at_least_1, long, default_value_t = 10, value_name = "K")]
    knn: usize,
    /// Principal components of the KNN space (at least 1)
    #[arg(value_parser = cli::range::at_least_1, long, default_value_t = 50, value_name = "N")]
    n_pcs: usize,
    /// Distance of the intra-batch KNN (on L2-normalized PCs; CLAIRE's code used manhattan)
    #[arg(long, value_enum, default_value = "euclidean")]
    knn_metric: Metric,
    /// Only the seeds between this batch ...
    #[arg(long, value_name = "BATCH", requires = "batch_b")]
    batch_a: Option<String>,
    /// ... and this batch
    #[arg(long, value_name = "BATCH", requires = "batch_a")]
    batch_b: Option<String>,
    /// Only the intra-batch KNN lists
    #[arg(long, conflicts_with_all = ["batch_a", "batch_b"])]
    knn_only: bool,
    /// Nearest-neighbour search: exact, ivf, nndescent or hnsw (approximate), or auto: exact
    /// for small batches, ivf for large ones (recorded in provenance as nn_used)
    #[arg(long, value_enum, default_value = "auto")]
    nn: Method,
    /// Per-cell column of labels for the seed-accuracy report (never used otherwise)
    #[arg(long, default_value = "cell_type", value_name = "COLUMN")]
    labels: String,
    /// Random seed (randomized SVD, HNSW)
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Pairs definition: claire (seed pairs and KNN lists, above) or deepmnn (deepMNN's
    /// mutual neighbours on the L2-normalized PCA of the scaled values; its own flags below)
    #[arg(long, value_enum, default_value = "claire")]
    definition: deepmnn_pairs::Definition,
    #[command(flatten)]
    deepmnn: cellweave::integrate::deepmnn::DeepMnnPairs,
    /// Recorded as `"common": {}` in the provenance
    #[arg(skip)]
    common: cli::NoCommon,
}

fn main() -> ExitCode {
    cli::main(|args: Args| {
        let inputs: Vec<&Path> = args.inputs.iter().map(PathBuf::as_path).collect();
        let mut outputs = Outputs::new(&inputs)?;
        outputs.file(&args.output, Kind::Table)?;
        if args.merge {
            merge(&args)?;
            return outputs.commit();
        }
        if args.inputs.len() != 1 {
            return Err(Error::new(format!(
                "expected one cells table, got {} inputs (use --merge to join shards)",
                args.inputs.len()
            )));
        }
        let input = &args.inputs[0];
        let timer = cli::Timer::start("read");
        let cells = table::read_cells(input)?;
        timer.done();
        pairs::check_input(&cells).at(input)?;
        if args.definition == deepmnn_pairs::Definition::Deepmnn {
            deepmnn_pairs::run(&args, &cells, input)?;
            return outputs.commit();
        }
        let batches = cells.batch.categories.clone();
        let shard = match (&args.batch_a, &args.batch_b) {
            (Some(a), Some(b)) => Shard::pair(&batches, a, b).at(input)?,
            _ if args.knn_only => Shard {
                batches,
                pairs: vec![],
                knn: true,
            },
            _ => Shard::full(&batches),
        };
        let params = Params {
            space: args.space,
            k_anchor: args.k_anchor,
            k_filter: if args.k_filter == 0 {
                usize::MAX
            } else {
                args.k_filter
            },
            k_filter_frac: args.k_filter_frac,
            max_features: args.max_features,
            n_cca: args.n_cca,
            cca_iters: args.cca_iters,
            knn: args.knn,
            n_pcs: args.n_pcs,
            knn_metric: args.knn_metric,
            seed: args.seed,
            search: Search::new(args.nn, args.seed),
        };
        let labels = pairs::labels(&cells, &args.labels);
        info!(
            "{} cells, {} genes, {} batches; {} batch pair(s){}",
            cells.n_cells(),
            cells.n_genes(),
            cells.batch.categories.len(),
            shard.pairs.len(),
            if shard.knn { " + KNN" } else { "" }
        );
        let timer = cli::Timer::start("pairs");
        let mut counts = Vec::new();
        let mut t = pairs::compute(&cells, &shard, &params, labels.as_ref(), |r| {
            counts.push(PairCount {
                a: r.a.clone(),
                b: r.b.clone(),
                seeds: r.kept,
                mutual: Some(r.mutual),
            });
            let acc = r.accuracy.map(|(s, n)| format!(", seed accuracy {}", pct(s, n))).unwrap_or_default();
            let [c, m, f] = r.seconds;
            info!(
                "seeds {} / {}: {} mutual, {} after the filter{acc} ({}: {c:.2} s, mutual: {m:.2} s, filter: {f:.2} s)",
                r.a,
                r.b,
                r.mutual,
                r.kept,
                if args.space == Space::Cca { "CCA" } else { "PCA" }
            );
        })
        .at(input)?;
        timer.done();
        report(&t, labels.as_ref());
        if let Some(advice) = seed_check::pairs_advice(&counts) {
            cli::log(format_args!("{advice}"));
        }
        t.provenance = cells.provenance.clone();
        let mut step = pairs::step_with_shard("cellweave-pairs", &args, &shard);
        if let serde_json::Value::Object(m) = &mut step.params {
            m.insert(
                "nn_used".into(),
                pairs::searches_used(&cells, &shard, &params.search),
            );
        }
        t.provenance.push(step);
        table::write_pairs(&args.output, &t)?;
        outputs.commit()
    })
}

fn pct(same: usize, total: usize) -> String {
    if total == 0 {
        "n/a".into()
    } else {
        format!("{:.3} ({same}/{total})", same as f64 / total as f64)
    }
}

fn report(t: &cellweave::contract::PairsTable, labels: Option<&cellweave::contract::Categorical>) {
    let seeds = t
        .kind
        .iter()
        .filter(|k| **k == cellweave::contract::PairKind::Mnn)
        .count();
    info!("{} seed pairs, {} KNN rows", seeds, t.len() - seeds);
    if let Some(l) = labels {
        let (s, n) = pairs::seed_accuracy(t, l);
        info!("seed accuracy {}", pct(s, n));
    }
}

fn merge(args: &Args) -> cellweave::Result<()> {
    let shards = args
        .inputs
        .iter()
        .map(|p| table::read_pairs(p))
        .collect::<cellweave::Result<Vec<_>>>()?;
    let names: Vec<String> = args
        .inputs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let (mut t, full) = pairs::merge(&shards, &names)?;
    report(&t, None);
    t.provenance
        .push(pairs::step_with_shard("cellweave-pairs", args, &full));
    table::write_pairs(&args.output, &t)
}

cellweave::help_test!(Args);
