//! cellweave-refine: CLAIRE's refinement of seed pairs with a stage-1 embedding.

use cellweave::cli;
use cellweave::contract::{fingerprint, Categorical, Step};
use cellweave::integrate::pairs;
use cellweave::integrate::seed_check;
use cellweave::io::atomic::{Kind, Outputs};
use cellweave::io::table;
use cellweave::{info, Error, ResultExt};
use clap::Parser;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Refine seed pairs: cosine similarity of each seed in an embedding (e.g. after a few
/// epochs of cellweave-train), a two-component Gaussian mixture fitted to them, and the
/// seeds whose posterior of the higher-similarity component is >= --threshold kept (with
/// that posterior). KNN rows are kept unchanged.
#[derive(Parser, Serialize, Debug)]
#[command(name = "cellweave-refine", version = cellweave::cli::LONG_VERSION)]
struct Args {
    /// Cells table the pairs were computed on
    #[arg(value_name = "CELLS")]
    cells: PathBuf,
    /// Pairs table (cellweave-pairs)
    #[arg(long, value_name = "PAIRS")]
    pairs: PathBuf,
    /// Embedding table of the same cells (cellweave-train --embedding, cellweave-embed)
    #[arg(long, value_name = "EMB")]
    embedding: PathBuf,
    /// Output pairs table (.arrow or .parquet)
    #[arg(short, long, value_name = "OUTPUT")]
    output: PathBuf,
    /// Keep seeds whose posterior of the high-similarity component is at least this (0 to 1)
    #[arg(value_parser = cli::range::fraction::<f64>, long, default_value_t = 0.5, value_name = "P")]
    threshold: f64,
    /// Per-cell column of labels for the seed-accuracy report (never used otherwise)
    #[arg(long, default_value = "cell_type", value_name = "COLUMN")]
    labels: String,
    /// Recorded as `"common": {}` in the provenance
    #[arg(skip)]
    common: cli::NoCommon,
}

fn main() -> ExitCode {
    cli::main(|args: Args| {
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
        let (mut out, rep) = pairs::refine(&t, &data, emb.dim, args.threshold).at(&args.pairs)?;
        match &rep.gmm {
            Some(g) => info!(
                "mixture of seed similarities: low {:.3} (sd {:.3}, weight {:.2}), high {:.3} (sd {:.3}, weight {:.2}); {} EM iterations{}",
                g.means[0],
                g.variances[0].sqrt(),
                g.weights[0],
                g.means[1],
                g.variances[1].sqrt(),
                g.weights[1],
                g.iterations,
                if g.converged { "" } else { " (not converged)" }
            ),
            None => info!("fewer than two distinct seed similarities: every seed kept"),
        }
        if let Some(advice) = rep.gmm.as_ref().and_then(seed_check::mixture_advice) {
            cellweave::cli::log(format_args!("{advice}"));
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
        out.provenance.push(Step::new("cellweave-refine", &args));
        table::write_pairs(&args.output, &out)?;
        outputs.commit()
    })
}

/// Embedding rows in the order of the cells table (the embedding may list them in another
/// order, but must hold every cell).
fn aligned(
    emb: &cellweave::contract::EmbeddingTable,
    ids: &[String],
    path: &Path,
) -> cellweave::Result<Vec<f32>> {
    if fingerprint(&emb.cell_ids) == fingerprint(ids) {
        return Ok(emb.data.clone());
    }
    let pos: std::collections::HashMap<&str, usize> = emb
        .cell_ids
        .iter()
        .enumerate()
        .map(|(r, id)| (id.as_str(), r))
        .collect();
    let mut out = Vec::with_capacity(ids.len() * emb.dim);
    for id in ids {
        let r = pos.get(id.as_str()).ok_or_else(|| {
            Error::new(format!(
                "cell '{id}' of the cells table is not in the embedding"
            ))
            .field("cell_id")
            .file(path)
        })?;
        out.extend_from_slice(emb.row(*r));
    }
    Ok(out)
}

fn accuracy(t: &cellweave::contract::PairsTable, labels: &Categorical) -> String {
    pairs::accuracy_text(pairs::seed_accuracy(t, labels))
}

cellweave::help_test!(Args);
