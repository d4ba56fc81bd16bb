//! What `cellweave-refine` does: score each seed pair by the cosine similarity of its cells
//! in an embedding, keep the seeds a two-component mixture calls true, log the mixture and
//! the seeds kept, and write the pairs table.

use crate::contract::{fingerprint, rows_of, Categorical, EmbeddingTable, PairsTable, Step};
use crate::integrate::{pairs, seed_check};
use crate::io::atomic::{Kind, Outputs};
use crate::io::table;
use crate::{info, Error, Result, ResultExt};
use std::path::{Path, PathBuf};

/// The flags of `cellweave-refine`.
#[derive(clap::Args, serde::Serialize, Debug, Clone)]
pub struct RefineArgs {
    /// Cells table the pairs were computed on
    #[arg(value_name = "CELLS")]
    pub cells: PathBuf,
    /// Pairs table (cellweave-pairs)
    #[arg(long, value_name = "PAIRS")]
    pub pairs: PathBuf,
    /// Embedding table of the same cells (cellweave-train --embedding, cellweave-embed)
    #[arg(long, value_name = "EMB")]
    pub embedding: PathBuf,
    /// Output pairs table (.arrow or .parquet)
    #[arg(short, long, value_name = "OUTPUT")]
    pub output: PathBuf,
    /// Keep seeds whose posterior of the high-similarity component is at least this (0 to 1)
    #[arg(value_parser = crate::cli::range::fraction::<f64>, long, default_value_t = 0.5, value_name = "P")]
    pub threshold: f64,
    /// Drop seeds only when the mixture's two components overlap at most this much (the
    /// share of seeds the mixture itself misassigns, 0 to 0.5); beyond it every seed is
    /// kept. 1 refines always (the published method)
    #[arg(value_parser = crate::cli::range::fraction::<f64>, long,
          default_value_t = seed_check::MAX_OVERLAP, value_name = "P")]
    pub max_overlap: f64,
    /// Per-cell column of labels for the seed-accuracy report (never used otherwise)
    #[arg(long, default_value = "cell_type", value_name = "COLUMN")]
    pub labels: String,
}

/// Refine the seeds of `args.pairs` with `args.embedding` and write the pairs table
/// `args.output`, with `step` as its last provenance step.
pub fn run_refine(args: &RefineArgs, step: Step) -> Result<()> {
    let mut outputs = Outputs::new(&[
        args.cells.as_path(),
        args.pairs.as_path(),
        args.embedding.as_path(),
    ])?;
    outputs.file(&args.output, Kind::Table)?;
    if !(0.0..=1.0).contains(&args.threshold) {
        return Err(Error::new(format!(
            "{} is not a probability (expected 0..1)",
            args.threshold
        ))
        .flag("--threshold"));
    }
    let cells = table::read_cells(&args.cells)?;
    let t = table::read_pairs(&args.pairs)?;
    t.check_cells(&cells.fingerprint()).at(&args.pairs)?;
    let emb = table::read_embedding(&args.embedding)?;
    let data = aligned(&emb, &cells.cell_ids, &args.embedding)?;
    let (mut out, rep) =
        pairs::refine(&t, &data, emb.dim, args.threshold, args.max_overlap).at(&args.pairs)?;
    match (&rep.gmm, rep.overlap) {
        (Some(g), Some(overlap)) => {
            info!(
                "mixture of seed similarities: low {:.3} (sd {:.3}, weight {:.2}), high {:.3} (sd {:.3}, weight {:.2}); overlap {overlap:.3}; {} EM iterations{}",
                g.means[0],
                g.variances[0].sqrt(),
                g.weights[0],
                g.means[1],
                g.variances[1].sqrt(),
                g.weights[1],
                g.iterations,
                if g.converged { "" } else { " (not converged)" }
            );
            if rep.kept_all {
                info!(
                    "the components overlap more than {} (--max-overlap): they do not separate \
                     true from false seeds; every seed kept",
                    args.max_overlap
                );
            }
        }
        _ => info!("fewer than two distinct seed similarities: every seed kept"),
    }
    if let Some(advice) = rep.gmm.as_ref().and_then(seed_check::mixture_advice) {
        crate::cli::log(format_args!("{advice}"));
    }
    info!(
        "seeds kept: {} of {} (mean cosine similarity {:.3} -> {:.3})",
        rep.seeds_after, rep.seeds_before, rep.mean_similarity[0], rep.mean_similarity[1]
    );
    if let Some(l) = pairs::labels(&cells, &args.labels) {
        info!(
            "seed accuracy: {} -> {}",
            accuracy(&t, &l),
            accuracy(&out, &l)
        );
    }
    out.provenance.push(step);
    table::write_pairs(&args.output, &out)?;
    outputs.commit()
}

/// Embedding rows in the order of the cells table (the embedding may list them in another
/// order, but must hold every cell).
fn aligned(emb: &EmbeddingTable, ids: &[String], path: &Path) -> Result<Vec<f32>> {
    if fingerprint(&emb.cell_ids) == fingerprint(ids) {
        return Ok(emb.data.clone());
    }
    let rows = rows_of(ids, &emb.cell_ids).map_err(|(_, id)| {
        Error::new(format!(
            "cell '{id}' of the cells table is not in the embedding"
        ))
        .field("cell_id")
        .file(path)
    })?;
    let mut out = Vec::with_capacity(ids.len() * emb.dim);
    for r in rows {
        out.extend_from_slice(emb.row(r));
    }
    Ok(out)
}

fn accuracy(t: &PairsTable, labels: &Categorical) -> String {
    pairs::accuracy_text(pairs::seed_accuracy(t, labels))
}
