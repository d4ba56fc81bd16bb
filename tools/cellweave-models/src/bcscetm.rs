//! The batch-corrected scETM (issue 15; the method note `more-models.md`), a chain of two
//! models of their own:
//!
//! 1. deepMNN (`--model deepmnn`), which writes the corrected expression (`--corrected`,
//!    `values: corrected`, on the log1p scale). Its pair term is deepMNN's own by default
//!    (`--pair-space pcs`: the L1 distance of the pair's corrected cells projected on the
//!    PCs, weights 1 / 0.001). The report's form is `--pair-space autoencoder`
//!    ([`crate::deepmnn::autoencoder`]): the codes of a frozen autoencoder pre-trained on
//!    the expression, `L = 0.1 L_batch + 0.99 L_rec` (`L_rec` deepMNN's L1 identity term).
//!    With those weights stage 1 stays near the identity on every data set we tried, and
//!    the chain is scETM without lambda_s (docs/models.md), so it is not the default; the
//!    report's own code has the PC term as a commented-out line beside it;
//! 2. scETM without the per-batch bias lambda_s (`--no-batch-bias`) on that corrected table,
//!    its values read as the weights scETM models: `max(v, 0)` (`--corrected-as log1p`, as
//!    the report's scETM reads them) or `expm1(max(v, 0))` (`--corrected-as expm1`), each
//!    cell rescaled to a total of 1e4 ([`crate::scetm::command::corrected_weights`]).
//!
//! By hand, stage by stage:
//!
//! ```text
//! cellweave-train hvg.arrow --model deepmnn --pairs pairs_deepmnn.arrow \
//!     --corrected corrected.arrow -o stage1 --embedding deepmnn.arrow
//! cellweave-train corrected.arrow --model scetm --no-batch-bias -o stage2 --embedding bcscetm.arrow
//! ```
//!
//! `cellweave-train hvg.arrow --model bcscetm --pairs pairs_deepmnn.arrow` runs the same two
//! calls' code in one (what the workflows run): stage 1 with deepMNN's flags (`--pair-space`,
//! `--deepmnn-epochs`, ...), stage 2 with scETM's and the shared
//! flags (`--epochs`, `--lr`, `--latent`, ...), both with `--seed`, and gives the same
//! embedding, bit for bit. Its model directory holds both stages' model directories
//! (`deepmnn/`, `scetm/`) and a card with both stages' parameters and summaries; until it is
//! complete, the stages live beside it in `.MODEL_DIR.stages/` (stage 1's model directory
//! and checkpoints, the corrected table, stage 2's checkpoints), which `--resume` continues
//! (a finished stage 1 is not run again) and a new run discards. `cellweave-embed` applies
//! both stages to new cells of the batches stage 1 was trained on.

use cellweave::contract::{Csr, EmbeddingTable, Step};
use cellweave::io::{atomic, table};
use cellweave::{info, Error, Result, ResultExt};
use std::path::{Path, PathBuf};

use crate::command::{EmbedRun, Hyper, TrainRun};
use crate::deepmnn::command::{self as deepmnn, DeepmnnArgs};
use crate::deepmnn::train::DeepmnnParams;
use crate::engine::card::{self, Genes, Head};
use crate::engine::checkpoint::write_model_dir;
use crate::scetm::command::{self as scetm, ScetmArgs};
use crate::scetm::train::{CorrectedAs, ScetmParams};
use crate::ModelKind;

/// The model card format version.
pub const CARD_VERSION: u32 = 1;
/// Stage 1's model directory inside the model directory.
pub const DEEPMNN: &str = "deepmnn";
/// Stage 2's model directory inside the model directory.
pub const SCETM: &str = "scetm";
/// The corrected cells table among the stages of an unfinished run.
const CORRECTED: &str = "corrected.arrow";
/// How stage 2 reads the corrected values, in words (recorded in the card).
pub fn stage2_input(how: CorrectedAs) -> &'static str {
    match how {
        CorrectedAs::Log1p => "max(corrected, 0), each cell rescaled to a total of 1e4",
        CorrectedAs::Expm1 => "expm1(max(corrected, 0)), each cell rescaled to a total of 1e4",
    }
}

/// The batch-corrected scETM's own flags of `cellweave-train` (deepMNN's flags shape stage
/// 1, scETM's and the shared ones stage 2).
#[derive(clap::Args, serde::Serialize, serde::Deserialize, Debug, Clone)]
#[command(
    next_help_heading = "Batch-corrected scETM options (--model bcscetm; needs --pairs from cellweave-pairs --definition deepmnn; deepMNN's flags shape stage 1, scETM's and the shared ones stage 2)"
)]
pub struct BcscetmArgs {
    /// Epochs of stage 1, deepMNN (at most: its plateau rule may stop it earlier) (at least
    /// 1) [default: deepMNN's 200]
    #[arg(value_parser = cellweave::cli::range::at_least_1, long, value_name = "N")]
    pub deepmnn_epochs: Option<usize>,
}

impl BcscetmArgs {
    /// Refuse this model's flags given to another model.
    pub fn check_unused(&self, model: ModelKind) -> Result<()> {
        if model != ModelKind::Bcscetm && self.deepmnn_epochs.is_some() {
            return Err(Error::new(format!(
                "is a flag of --model bcscetm, not of --model {}",
                model.name()
            ))
            .flag("--deepmnn-epochs"));
        }
        Ok(())
    }
}

/// The model card.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Card {
    /// `model: bcscetm`, the card version, the cellweave version.
    #[serde(flatten)]
    pub head: Head,
    /// The batches stage 1 corrects (cells of other batches are refused).
    pub batches: Vec<String>,
    /// The stages' model directories inside this one, in order.
    pub stages: Vec<String>,
    /// How stage 2 reads stage 1's corrected values (`pseudo_counts` in cards written
    /// before `--corrected-as`).
    #[serde(alias = "pseudo_counts")]
    pub stage2_input: String,
    /// The genes of both stages.
    #[serde(flatten)]
    pub genes: Genes,
    /// Every resolved parameter of each stage.
    pub hyperparameters: StageParams,
    /// How each stage's training went.
    pub training: StageSummaries,
}

/// Both stages' parameters.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageParams {
    /// Stage 1.
    pub deepmnn: DeepmnnParams,
    /// Stage 2.
    pub scetm: ScetmParams,
}

/// Both stages' training summaries.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageSummaries {
    /// Stage 1.
    pub deepmnn: deepmnn::Summary,
    /// Stage 2.
    pub scetm: scetm::Summary,
}

card::model_card!(Card: head, genes; "bcscetm", "batch-corrected scETM", CARD_VERSION);

/// Where the stages of an unfinished run of `model_dir` live: `.NAME.stages` beside it.
pub fn stages_dir(model_dir: &Path) -> PathBuf {
    let name = model_dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    model_dir.with_file_name(format!(".{name}.stages"))
}

/// `step` marked as the stage `stage` of the chain (the provenance of each stage's outputs).
fn stage_step(step: &Step, stage: &str) -> Step {
    let mut s = step.clone();
    if let Some(p) = s.params.as_object_mut() {
        p.insert("stage".into(), format!("bcscetm {stage}").into());
    }
    s
}

/// Train both stages and write the model directory, the embedding, the log (stage 2's),
/// the genes table (`--genes-out`) and the corrected cells (`--corrected`).
pub fn train(
    run: &TrainRun,
    args: &BcscetmArgs,
    deep: &DeepmnnArgs,
    sc: &ScetmArgs,
    step: &Step,
) -> Result<()> {
    run.require_pairs(ModelKind::Bcscetm)?;
    if run.init.is_some() {
        return Err(
            Error::new("bcscetm does not continue another model directory (use --resume)")
                .flag("--init"),
        );
    }
    run.check_outputs(&run.inputs(), &[deep.corrected.as_deref()])?;
    run.clean_stale()?;
    // (created by stage 1's first write: a run refused before it leaves nothing)
    let work = stages_dir(&run.model_dir);
    if !run.resume && work.exists() {
        std::fs::remove_dir_all(&work).at(&work)?;
    }
    let (dir1, dir2, corrected) = (work.join(DEEPMNN), work.join(SCETM), work.join(CORRECTED));

    // Stage 1: deepMNN (its pair space the autoencoder unless asked otherwise).
    if run.resume && dir1.join(card::CARD).exists() && corrected.exists() {
        info!(
            "bcscetm: stage 1 (deepMNN) is done in {}: continuing with stage 2",
            dir1.display()
        );
    } else {
        let run1 = TrainRun {
            model_dir: dir1.clone(),
            embedding: work.join("deepmnn_embedding.arrow"),
            log: None,
            counts: None,
            hyper: Hyper {
                epochs: args.deepmnn_epochs,
                ..Hyper::default()
            },
            ..run.clone()
        };
        let deep1 = DeepmnnArgs {
            corrected: Some(corrected.clone()),
            ..deep.clone()
        };
        deepmnn::train(&run1, &deep1, &stage_step(step, "stage 1 of 2 (deepmnn)"))?;
    }
    let card1: deepmnn::Card = card::read(&dir1)?;

    // Stage 2: scETM without the batch bias on the corrected table; a --stop-after-epoch
    // counts the epochs of both stages.
    let e1 = card1.training.epochs;
    let stop_after = match run.stop_after {
        Some(s) if s <= e1 => return Err(crate::engine::stopped_as_asked(e1)),
        s => s.map(|s| s - e1),
    };
    let run2 = TrainRun {
        cells: corrected.clone(),
        pairs: None,
        counts: None,
        model_dir: dir2.clone(),
        stop_after,
        ..run.clone()
    };
    let sc2 = ScetmArgs {
        no_batch_bias: true,
        ..sc.clone()
    };
    scetm::train(&run2, &sc2, &stage_step(step, "stage 2 of 2 (scetm)"))?;
    let card2: scetm::Card = card::read(&dir2)?;

    if let Some(out) = &deep.corrected {
        table::write_cells(out, &table::read_cells(&corrected)?)?;
    }
    let card = Card {
        head: Head::of::<Card>(),
        batches: card1.batches.clone(),
        stages: vec![DEEPMNN.into(), SCETM.into()],
        stage2_input: stage2_input(scetm::reading(&card2.hyperparameters)).into(),
        genes: card2.genes.clone(),
        hyperparameters: StageParams {
            deepmnn: card1.hyperparameters,
            scetm: card2.hyperparameters,
        },
        training: StageSummaries {
            deepmnn: card1.training,
            scetm: card2.training,
        },
    };
    write_model_dir(&run.model_dir, |staged| {
        std::fs::rename(&dir1, staged.join(DEEPMNN)).at(&dir1)?;
        std::fs::rename(&dir2, staged.join(SCETM)).at(&dir2)?;
        card::write(staged, &card)
    })?;
    std::fs::remove_dir_all(&work).at(&work)?;
    info!(
        "bcscetm: stage 1 {} epochs, stage 2 {} epochs; model in {}",
        card.training.deepmnn.epochs,
        card.training.scetm.epochs,
        run.model_dir.display()
    );
    Ok(())
}

/// Embed new cells of the batches stage 1 was trained on: corrected by stage 1, read by
/// stage 2 as it read its training cells.
pub fn embed(run: &EmbedRun, step: &Step) -> Result<()> {
    atomic::check_not_input(&run.output, &[run.cells.as_path()])?;
    let device = crate::device(&run.device)?;
    let _card: Card = card::read(&run.model_dir)?;
    let m = deepmnn::load(&run.model_dir.join(DEEPMNN), &device)?;
    let (card2, net) = scetm::load(&run.model_dir.join(SCETM), &device)?;
    if card2.genes.gene_ids != m.card.genes.gene_ids {
        return Err(Error::new("the two stages' genes differ")
            .file(run.model_dir.join(SCETM).join(card::CARD))
            .field("gene_ids"));
    }
    let cells = table::read_cells(&run.cells)?;
    let mut x = deepmnn::correct_cells(&m, &cells, &run.cells, &device)?;
    m.scaling.invert(&mut x);
    let (n, g) = (cells.n_cells(), m.card.genes.n_genes);
    let how = scetm::reading(&card2.hyperparameters);
    let counts = scetm::corrected_weights(&Csr::from_dense(n, g, &x), &run.cells, how)?;
    let values = scetm::embed_values(&card2, &net, counts, &device)?;
    let k = card2.shape.topics;
    table::write_embedding(
        &run.output,
        &EmbeddingTable::of_cells(&cells, "bcscetm", k, values, step),
    )?;
    info!(
        "corrected and embedded {n} cells with the batch-corrected scETM {} into {}",
        run.model_dir.display(),
        run.output.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_live_beside_the_model_directory() {
        assert_eq!(
            stages_dir(Path::new("out/m")),
            PathBuf::from("out/.m.stages")
        );
    }
}
