//! What `cellweave-pairs` does: read the cells table, compute CLAIRE's seed pairs and KNN
//! lists (one shard of them, or all) or deepMNN's pairs, log what was found and write the
//! pairs table; or join shards into what one run writes.

use crate::contract::{CellsTable, PairKind, PairsTable, Step};
use crate::integrate::deepmnn::{self, DeepMnnPairs};
use crate::integrate::pairs::{self, Params, Shard, Space};
use crate::integrate::seed_check::{self, PairCount};
use crate::io::atomic::{Kind, Outputs};
use crate::io::table;
use crate::numerics::neighbors::{Method, Metric, Search};
use crate::{info, Error, Result, ResultExt};
use std::path::{Path, PathBuf};

/// Which pairs `cellweave-pairs` computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Definition {
    /// CLAIRE's seed pairs (filtered MNN) and intra-batch KNN lists
    Claire,
    /// deepMNN's mutual neighbours (k = 20, all batch pairs, a batch pair kept when more
    /// than 10% of one of its batches is matched); no KNN rows
    Deepmnn,
}

/// The flags of `cellweave-pairs`: its inputs and output, and what to compute and how.
#[derive(clap::Args, serde::Serialize, Debug, Clone)]
pub struct PairsArgs {
    /// Cells table (log-normalized, HVG subset), or the shards to join with --merge
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Output pairs table (.arrow or .parquet)
    #[arg(short, long, value_name = "OUTPUT")]
    pub output: PathBuf,
    /// Join pairs tables written with --batch-a/--batch-b and --knn-only
    #[arg(long, conflicts_with_all = ["batch_a", "batch_b", "knn_only"])]
    pub merge: bool,
    /// Space of the seed search (auto: CCA, or the joint PCA when every batch is at most
    /// --k-filter cells, where the filter cannot act)
    #[arg(long, value_enum, default_value = "auto")]
    pub space: seed_check::SpaceChoice,
    /// Neighbours checked for mutuality (Seurat's k.anchor) (at least 1)
    #[arg(value_parser = crate::cli::range::at_least_1, long, default_value_t = 5, value_name = "K")]
    pub k_anchor: usize,
    /// Keep a seed only if the partner is among this many neighbours in gene space (0: no filter)
    #[arg(long, default_value_t = 200, value_name = "K")]
    pub k_filter: usize,
    /// Scale the filter with the partner batch: k = ceil(F x its cells), at least --k-anchor and
    /// at most --k-filter (0: a fixed --k-filter)
    #[arg(value_parser = crate::cli::range::fraction::<f64>, long, default_value_t = 0.0, value_name = "F")]
    pub k_filter_frac: f64,
    /// Genes used by the filter at most (Seurat's max.features) (at least 1)
    #[arg(value_parser = crate::cli::range::at_least_1, long, default_value_t = 200, value_name = "N")]
    pub max_features: usize,
    /// Canonical vectors (or PCs with --space pca) of the seed search (at least 1)
    #[arg(value_parser = crate::cli::range::at_least_1, long, default_value_t = 30, value_name = "N")]
    pub n_cca: usize,
    /// Power iterations of the randomized SVD behind the CCA
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub cca_iters: usize,
    /// Intra-batch neighbours per cell (at least 1)
    #[arg(value_parser = crate::cli::range::at_least_1, long, default_value_t = 10, value_name = "K")]
    pub knn: usize,
    /// Principal components of the KNN space (at least 1)
    #[arg(value_parser = crate::cli::range::at_least_1, long, default_value_t = 50, value_name = "N")]
    pub n_pcs: usize,
    /// Distance of the intra-batch KNN (on L2-normalized PCs; CLAIRE's code used manhattan)
    #[arg(long, value_enum, default_value = "euclidean")]
    pub knn_metric: Metric,
    /// Only the seeds between this batch ...
    #[arg(long, value_name = "BATCH", requires = "batch_b")]
    pub batch_a: Option<String>,
    /// ... and this batch
    #[arg(long, value_name = "BATCH", requires = "batch_a")]
    pub batch_b: Option<String>,
    /// Only the intra-batch KNN lists
    #[arg(long, conflicts_with_all = ["batch_a", "batch_b"])]
    pub knn_only: bool,
    /// Nearest-neighbour search: exact, ivf, nndescent or hnsw (approximate), or auto: exact
    /// for small batches, ivf for large ones (recorded in provenance as nn_used)
    #[arg(long, value_enum, default_value = "auto")]
    pub nn: Method,
    /// Per-cell column of labels for the seed-accuracy report (never used otherwise)
    #[arg(long, default_value = "cell_type", value_name = "COLUMN")]
    pub labels: String,
    /// Random seed (randomized SVD, HNSW)
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Pairs definition: claire (seed pairs and KNN lists, above) or deepmnn (deepMNN's
    /// mutual neighbours on the L2-normalized PCA of the scaled values; its own flags below)
    #[arg(long, value_enum, default_value = "claire")]
    pub definition: Definition,
    /// The flags of `--definition deepmnn` (under their own heading)
    #[command(flatten)]
    pub deepmnn: DeepMnnPairs,
    /// Densify at most this many MiB of expression (cells x genes, f32) for one batch pair's
    /// CCA or the joint PCA; above, compute them on blocks of rows of the sparse matrix
    /// (same results within float rounding; memory O(non-zeros + cells x components))
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    pub max_dense_mb: usize,
}

impl PairsArgs {
    /// The parameters of [`pairs::compute`] (`--k-filter 0`: no filter).
    pub fn params(&self) -> Params {
        Params {
            space: match self.space {
                seed_check::SpaceChoice::Pca => Space::Pca,
                _ => Space::Cca,
            },
            k_anchor: self.k_anchor,
            k_filter: if self.k_filter == 0 {
                usize::MAX
            } else {
                self.k_filter
            },
            k_filter_frac: self.k_filter_frac,
            max_features: self.max_features,
            n_cca: self.n_cca,
            cca_iters: self.cca_iters,
            knn: self.knn,
            n_pcs: self.n_pcs,
            knn_metric: self.knn_metric,
            seed: self.seed,
            search: Search::new(self.nn, self.seed),
            max_dense_mb: self.max_dense_mb,
        }
    }
}

/// `cellweave-pairs`: the pairs of the one cells table in `args.inputs` (or, with `--merge`,
/// the join of the pairs tables in `args.inputs`) written to `args.output`; `step` (the
/// tool's parsed arguments) goes in its provenance with what the run computed.
pub fn run_pairs(args: &PairsArgs, step: &Step) -> Result<()> {
    let (inputs, output) = (&args.inputs, args.output.as_path());
    let paths: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let mut outputs = Outputs::new(&paths)?;
    outputs.file(output, Kind::Table)?;
    if args.merge {
        merge_shards(inputs, output, step)?;
        return outputs.commit();
    }
    if inputs.len() != 1 {
        return Err(Error::new(format!(
            "expected one cells table, got {} inputs (use --merge to join shards)",
            inputs.len()
        )));
    }
    let input = &inputs[0];
    let timer = crate::cli::Timer::start("read");
    let cells = table::read_cells(input)?;
    timer.done();
    pairs::check_input(&cells).at(input)?;
    if args.definition == Definition::Deepmnn {
        run_deepmnn(args, &cells, input, output, step)?;
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
    let mut params = args.params();
    params.space = seed_check::choose_space(args.space, &cells.batch, |n| params.k_filter_for(n));
    if args.space == seed_check::SpaceChoice::Auto {
        info!(
            "seed space (--space auto): {}",
            if params.space == Space::Pca {
                "joint PCA (every batch has at most --k-filter cells: the filter cannot act)"
            } else {
                "CCA"
            }
        );
    }
    let labels = pairs::labels(&cells, &args.labels);
    info!(
        "{} cells, {} genes, {} batches; {} batch pair(s){}",
        cells.n_cells(),
        cells.n_genes(),
        cells.batch.categories.len(),
        shard.pairs.len(),
        if shard.knn { " + KNN" } else { "" }
    );
    let timer = crate::cli::Timer::start("pairs");
    let mut counts = Vec::new();
    let mut t = pairs::compute(&cells, &shard, &params, labels.as_ref(), |r| {
        counts.push(PairCount {
            a: r.a.clone(),
            b: r.b.clone(),
            seeds: r.kept,
            mutual: Some(r.mutual),
        });
        let acc = r
            .accuracy
            .map(|a| format!(", seed accuracy {}", pairs::accuracy_text(a)))
            .unwrap_or_default();
        let [c, m, f] = r.seconds;
        info!(
            "seeds {} / {}: {} mutual, {} after the filter{acc} ({}: {c:.2} s, mutual: {m:.2} s, filter: {f:.2} s)",
            r.a,
            r.b,
            r.mutual,
            r.kept,
            if params.space == Space::Cca { "CCA" } else { "PCA" }
        );
    })
    .at(input)?;
    timer.done();
    report(&t, labels.as_ref());
    let advice = seed_check::pairs_advice(&counts, Some(params.space));
    if let Some(advice) = &advice {
        crate::cli::log(format_args!("{advice}"));
    }
    t.provenance = cells.provenance.clone();
    let mut step = pairs::step_with_shard(&step.tool, &step.params, &shard);
    if let serde_json::Value::Object(m) = &mut step.params {
        m.insert(
            "nn_used".into(),
            pairs::searches_used(&cells, &shard, &params.search),
        );
        // for cellweave-train's log and model card (seed_check::recorded_pairs_advice),
        // and for --merge to judge the shards together (seed_check::merged_advice)
        if !shard.pairs.is_empty() {
            seed_check::record(m, &counts, params.space, advice.as_deref());
        }
    }
    t.provenance.push(step);
    table::write_pairs(output, &t)?;
    outputs.commit()
}

/// Log the seed and KNN rows of `t` (and the seed accuracy, with labels).
fn report(t: &PairsTable, labels: Option<&crate::contract::Categorical>) {
    let seeds = t.kind.iter().filter(|k| **k == PairKind::Mnn).count();
    info!("{} seed pairs, {} KNN rows", seeds, t.len() - seeds);
    if let Some(l) = labels {
        let accuracy = pairs::seed_accuracy(t, l);
        info!("seed accuracy {}", pairs::accuracy_text(accuracy));
    }
}

/// `--merge`: join the pairs tables `shards` into `output`.
fn merge_shards(shards: &[PathBuf], output: &Path, step: &Step) -> Result<()> {
    let tables = shards
        .iter()
        .map(|p| table::read_pairs(p))
        .collect::<Result<Vec<_>>>()?;
    let names: Vec<String> = shards.iter().map(|p| p.display().to_string()).collect();
    let (mut t, full) = pairs::merge(&tables, &names)?;
    report(&t, None);
    let own: Vec<&Step> = tables.iter().filter_map(|t| t.provenance.last()).collect();
    let advice = seed_check::merged_advice(&own, &full.pairs);
    if let Some(advice) = &advice {
        crate::cli::log(format_args!("{advice}"));
    }
    let mut step = pairs::step_with_shard(&step.tool, &step.params, &full);
    if let (serde_json::Value::Object(m), Some(a)) = (&mut step.params, advice) {
        // what one run over every batch pair would have recorded
        m.insert(seed_check::ADVICE_KEY.into(), a.into());
    }
    t.provenance.push(step);
    table::write_pairs(output, &t)
}

/// `--definition deepmnn`: deepMNN's pairs of `cells` ([`deepmnn::compute`]), one table of
/// `mnn` rows, the per-batch-pair fractions in the provenance.
fn run_deepmnn(
    args: &PairsArgs,
    cells: &CellsTable,
    input: &Path,
    output: &Path,
    step: &Step,
) -> Result<()> {
    if args.batch_a.is_some() || args.knn_only {
        return Err(Error::new(
            "--definition deepmnn searches every batch pair at once (no --batch-a/--batch-b/--knn-only shards)",
        )
        .flag("--definition"));
    }
    info!(
        "deepMNN pairs: {} cells, {} genes, {} batches",
        cells.n_cells(),
        cells.n_genes(),
        cells.batch.categories.len()
    );
    let timer = crate::cli::Timer::start("pairs");
    let search = Search::new(args.nn, args.seed);
    let (mut t, reports) = deepmnn::compute(cells, &args.deepmnn, args.seed, &search).at(input)?;
    timer.done();
    for r in &reports {
        info!(
            "{} / {}: {} mutual pairs, {:.1}% matched: {}",
            r.a,
            r.b,
            r.mutual,
            100.0 * r.fraction,
            if r.used { "used" } else { "dropped" }
        );
    }
    info!("{} pairs", t.len());
    t.provenance = cells.provenance.clone();
    let mut step = step.clone();
    if let serde_json::Value::Object(m) = &mut step.params {
        m.insert(
            "deepmnn_batch_pairs".into(),
            serde_json::to_value(&reports).unwrap_or_default(),
        );
    }
    t.provenance.push(step);
    table::write_pairs(output, &t)
}
