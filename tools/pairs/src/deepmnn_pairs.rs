//! `cellweave-pairs --definition deepmnn`: deepMNN's pairs
//! ([`cellweave::integrate::deepmnn`]), one table of `mnn` rows, the per-batch-pair
//! fractions in the provenance.

use cellweave::contract::CellsTable;
use cellweave::info;
use cellweave::integrate::deepmnn;
use cellweave::io::table;
use cellweave::numerics::neighbors::Search;
use cellweave::{Error, Result, ResultExt};
use std::path::Path;

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

/// Compute and write deepMNN's pairs of `cells`.
pub fn run(args: &super::Args, cells: &CellsTable, input: &Path) -> Result<()> {
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
    let timer = cellweave::cli::Timer::start("pairs");
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
    let mut step = cellweave::contract::Step::new("cellweave-pairs", args);
    if let serde_json::Value::Object(m) = &mut step.params {
        m.insert(
            "deepmnn_batch_pairs".into(),
            serde_json::to_value(&reports).unwrap_or_default(),
        );
    }
    t.provenance.push(step);
    table::write_pairs(&args.output, &t)
}
