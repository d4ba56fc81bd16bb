//! The training loop: schedule (stage 1, refinement, stage 2), epochs of MoCo steps on
//! mixed-up views, checkpoints that resume bit for bit, and the model directory outputs.
//!
//! Randomness: the initial weights come from `Rng::derive(seed, [INIT])`; epoch `e` draws
//! its anchor order and views from `Rng::derive(seed, [e, VIEWS])` and its dropout masks
//! from `Rng::derive(seed, [e, DROPOUT])`. Checkpoints are taken between epochs, so the
//! random state to restore is just the epoch counter.

use crate::engine::log::LogTable;
use candle_core::{Device, Tensor};
use cellweave::contract::{CellsTable, EmbeddingTable, Frame, PairKind, PairsTable, Step};
use cellweave::integrate::seed_check;
use cellweave::io::rows::{CellsRows, Rows};
use cellweave::{bail, info, Error, Result, ResultExt};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::augment::{augment, Augment};
use super::cpu_step::{Precision, Workspace};
use super::encoder::{widths, Encoder};
use super::moco::{Moco, MocoParams};
use super::model::{self, Architecture, Card, TrainingSummary};
use super::views::{batch_views, relative_nearest_partners, PairSets};
use super::CandleExt;
use crate::engine::checkpoint::Checkpoints;
use crate::engine::state;
use crate::engine::{self, EpochRecord, Schedule, Trainable};
use crate::optim::AdamConfig;
use crate::rng::Rng;

const STREAM_INIT: u64 = u64::MAX;
const STREAM_VIEWS: u64 = 1;
const STREAM_DROPOUT: u64 = 2;
const STREAM_AUGMENT: u64 = 3;

/// Which encoder gives the output embedding and the saved model. (The refinement inside
/// the one-call schedule always uses the query encoder, as CLAIRE.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EmbedWith {
    /// The momentum encoder once it is mostly trained weights: when the share of the
    /// weights it started from, `m^steps`, is below `1/e` (after `1 / -ln m` steps: ~1,000
    /// at m = 0.999); the query encoder before that (e.g. a short stage-1 run).
    #[default]
    Auto,
    /// The momentum (key) encoder: an exponential moving average of the query encoder's
    /// weights over the last ~1 / (1 - m) steps, less noisy than the last step's weights.
    /// On the shared data (3 data sets x 3 seeds) it raised the classic scIB bio score of
    /// every run (docs/claire.md).
    Momentum,
    /// The query encoder, as CLAIRE's released code.
    Query,
}

impl EmbedWith {
    /// `Momentum` or `Query`: what `self` means after `steps` momentum updates at `m`.
    pub fn resolve(self, m: f32, steps: u64) -> EmbedWith {
        match self {
            EmbedWith::Auto => {
                let start_share = (m as f64).clamp(0.0, 1.0).powf(steps as f64);
                if start_share <= (-1f64).exp() {
                    EmbedWith::Momentum
                } else {
                    EmbedWith::Query
                }
            }
            other => other,
        }
    }
}

/// Everything that decides the result of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainParams {
    /// Epochs to run in this call (stage 1 and stage 2 together); `None`: automatic,
    /// [`auto_epochs`] of `default_epochs`, `min_steps` and `max_steps`.
    pub epochs: Option<usize>,
    /// The epochs of an automatic `epochs` unless a step bound moves it (80).
    pub default_epochs: usize,
    /// The fewest steps of an automatic `epochs` (`--min-steps`).
    pub min_steps: usize,
    /// The most steps of an automatic `epochs` (`--max-steps`; whole epochs, at least one).
    #[serde(default = "default_max_steps")]
    pub max_steps: usize,
    /// Refine the seeds after this many epochs of this call; `None`: automatic,
    /// `max(3, enough epochs for stage1_min_steps steps)`.
    pub stage1_epochs: Option<usize>,
    /// The fewest steps of an automatic `stage1_epochs` (100).
    pub stage1_min_steps: usize,
    /// Run stage 1 alone (its length as `stage1_epochs` decides) and stop without refining,
    /// embedding with the query encoder when `embed_with` is `Auto`: the first call of a
    /// stage-by-stage run (workflows), `--stage1-only`.
    #[serde(default)]
    pub stage1_only: bool,
    /// Refine the seed pairs between the stages (`--no-refine` turns it off).
    pub refine: bool,
    /// Refinement keeps the seeds whose posterior of the high-similarity component is at
    /// least this.
    pub refine_threshold: f64,
    /// Refinement drops seeds only when the similarity mixture's components overlap at most
    /// this (`Gmm::overlap`); else it keeps every seed.
    #[serde(default = "max_overlap_default")]
    pub refine_max_overlap: f64,
    /// The probability that an anchor's view 2 comes from its relative-nearest seed partner
    /// instead of a uniformly drawn one (`--nearest-share`; 0: CLAIRE).
    #[serde(default)]
    pub nearest_share: f32,
    /// Anchors per step (each gives two views, so a step encodes `2 x batch_size` rows).
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// L2 weight decay, added to the gradient as torch's Adam does.
    pub weight_decay: f64,
    /// Mix-up coefficients are drawn from U(alpha, 1).
    pub alpha: f32,
    /// Width of the embedding.
    pub latent: usize,
    /// Momentum, temperature, queue size and dropout.
    pub moco: MocoParams,
    /// Encoder of the embedding (and of the saved weights).
    #[serde(default)]
    pub embed_with: EmbedWith,
    /// Augmentation of the views (batch-styles standardization).
    #[serde(default)]
    pub augment: Augment,
    /// The fused CPU step's first-layer forward arithmetic (`--precision`); checkpoints of
    /// cellweave before the option computed in f32.
    #[serde(default = "precision_before_option")]
    pub precision: Precision,
    /// Seed of every random draw (initial weights, anchor order, views, dropout).
    pub seed: u64,
}

/// The default of `--max-steps`: the step budget of an automatic length (docs/scale.md).
pub fn default_max_steps() -> usize {
    DEFAULT_MAX_STEPS
}

/// Steps of an automatic length at most (`--max-steps`'s default).
pub const DEFAULT_MAX_STEPS: usize = 6000;
/// Steps of an automatic stage 1 at most (whole epochs, at least one).
pub const STAGE1_MAX_STEPS: usize = 600;

pub use crate::engine::auto_epochs;

fn max_overlap_default() -> f64 {
    seed_check::MAX_OVERLAP
}

fn precision_before_option() -> Precision {
    Precision::F32
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            epochs: None,
            default_epochs: 80,
            min_steps: 1500,
            max_steps: default_max_steps(),
            stage1_epochs: None,
            stage1_min_steps: 100,
            stage1_only: false,
            refine: true,
            refine_threshold: 0.5,
            refine_max_overlap: seed_check::MAX_OVERLAP,
            nearest_share: 0.0,
            batch_size: 256,
            lr: 1e-4,
            weight_decay: 1e-5,
            alpha: 0.5,
            latent: 128,
            moco: MocoParams::default(),
            embed_with: EmbedWith::default(),
            augment: Augment::None,
            precision: Precision::Auto,
            seed: 0,
        }
    }
}

impl TrainParams {
    /// The optimiser's settings: torch's Adam with L2 weight decay.
    pub fn adam(&self) -> AdamConfig {
        AdamConfig::l2(self.lr, self.weight_decay)
    }
    /// Check the ranges the flags do not check themselves; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |f: &str, m: &str| Err(Error::new(m.to_string()).field(f.to_string()));
        crate::engine::check_batch_and_lr(self.batch_size, self.lr)?;
        if !(0.0..=1.0).contains(&self.alpha) {
            return bad("alpha", "must be in [0, 1]");
        }
        if !(0.0..1.0).contains(&self.moco.dropout) {
            return bad("dropout", "must be in [0, 1)");
        }
        if !(0.0..=1.0).contains(&self.refine_threshold) {
            return bad("refine-threshold", "must be in [0, 1]");
        }
        if !(0.0..=1.0).contains(&self.nearest_share) {
            return bad("nearest-share", "must be in [0, 1]");
        }
        if !(0.0..=1.0).contains(&self.refine_max_overlap) {
            return bad("refine-max-overlap", "must be in [0, 1]");
        }
        if self.moco.queue_size == 0 || self.moco.temperature <= 0.0 {
            return bad("queue", "queue size and temperature must be positive");
        }
        Ok(())
    }
}

/// One row of the training log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRow {
    /// 1 before the seed pairs are refined, 2 after.
    pub stage: u32,
    /// Global epoch number (1-based, continued runs keep counting).
    pub epoch: usize,
    /// Optimiser steps in the epoch.
    pub steps: usize,
    /// Cells in at least one seed pair during the epoch.
    pub training_cells: usize,
    /// Mean loss over the epoch's steps.
    pub loss: f64,
    /// Learning rate of the epoch.
    pub lr: f64,
    /// Wall-clock seconds of the epoch.
    pub seconds: f64,
}

/// Where a run stands (saved in `state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Epochs done (global).
    pub epoch: usize,
    /// Epoch at which this run ends (global).
    pub end_epoch: usize,
    /// Refine the seeds before this global epoch.
    pub refine_at: Option<usize>,
    /// Whether this run has refined the seeds.
    pub refined: bool,
    /// The current stage: 1 before refinement, 2 after (or from refined seeds).
    pub stage: u32,
    /// Steps of this call (of the whole run when resumed).
    pub steps: u64,
    /// Momentum updates of the key encoder since it was a copy of the query encoder
    /// (continued runs included): decides what `EmbedWith::Auto` means.
    #[serde(default)]
    pub momentum_steps: u64,
    /// Seed pairs (MNN rows of the pairs table) the run started from.
    pub seeds: usize,
    /// Seed pairs kept by refinement, once it has run.
    pub refined_seeds: Option<usize>,
    /// Seconds of training (of the whole run when resumed).
    pub seconds: f64,
    /// One row per epoch done.
    pub log: Vec<LogRow>,
    /// Lines of advice on the seeds' reliability (`cellweave::integrate::seed_check`).
    #[serde(default)]
    pub seed_advice: Vec<String>,
}

/// `state.json`: what a resumed run must agree with, and the progress.
type StateFile = state::StateFile<TrainParams, Progress>;

crate::engine::state::run_progress!(Progress);

/// How a run starts.
#[derive(Debug, Clone)]
pub enum Start {
    /// New weights (a previous run in the model directory is discarded).
    Fresh,
    /// Continue the training state saved in another model directory (a stage-by-stage
    /// workflow); epochs keep counting from it.
    Init(PathBuf),
    /// Continue the interrupted run in the output directory (fresh if it holds none).
    Resume,
}

/// Refines seed pairs given the pairs table in use and the embedding of every cell:
/// returns the pairs table with the kept seeds (KNN rows may be included; they are not
/// used: the KNN lists of the original pairs stay).
pub type Refiner<'a> = dyn FnMut(&PairsTable, &EmbeddingTable) -> Result<Refined> + 'a;

/// What a [`Refiner`] returns: the kept pairs, and a line of advice when the seeds look
/// unreliable (recorded in the model card).
pub struct Refined {
    /// The pairs table with only the kept seeds (and their posteriors).
    pub pairs: PairsTable,
    /// Why the seeds look unreliable, when they do.
    pub advice: Option<String>,
}

/// A training run over one cells table.
pub struct Trainer<'a> {
    /// The run's parameters.
    pub params: TrainParams,
    /// The cells' metadata (its matrix is empty when the rows are mapped: read them
    /// through `x`).
    cells: &'a CellsTable,
    /// The expression rows of the cells (mapped from the file, or `cells.x`).
    x: &'a dyn Rows,
    /// The pairs given (seeds and KNN lists).
    pairs: PairsTable,
    /// The seed pairs in use (MNN rows only).
    seeds: PairsTable,
    sets: PairSets,
    ws: Workspace,
    /// The training state: both encoders, the queue and the optimiser.
    pub moco: Moco,
    /// Where the run stands.
    pub progress: Progress,
    /// The model directory (written only by [`Trainer::finish`]'s caller, at the end).
    dir: PathBuf,
    /// Where the checkpoints of this model directory live.
    ckpt: Checkpoints,
    device: Device,
    /// The refined pairs table, and the bytes of its file when it was read from a
    /// checkpoint (written back as they were: a table read and written again may differ
    /// in its encoding).
    refined_table: Option<(PairsTable, Option<Vec<u8>>)>,
}

fn seed_rows(p: &PairsTable) -> PairsTable {
    let mut out = PairsTable {
        n_cells: p.n_cells,
        fingerprint: p.fingerprint.clone(),
        provenance: p.provenance.clone(),
        ..Default::default()
    };
    for r in 0..p.len() {
        if p.kind[r] == PairKind::Mnn {
            out.push(PairKind::Mnn, p.i[r], p.j[r], p.distance[r], p.posterior[r]);
        }
    }
    out
}

fn seed_list(p: &PairsTable) -> Vec<(u32, u32)> {
    (0..p.len())
        .filter(|&r| p.kind[r] == PairKind::Mnn)
        .map(|r| (p.i[r], p.j[r]))
        .collect()
}

/// Each cell's relative-nearest partner among `seeds`, drawn with probability `share`.
fn set_nearest(sets: &mut PairSets, seeds: &PairsTable, cells: &CellsTable, share: f32) {
    sets.nearest_share = share;
    sets.nearest = if share > 0.0 {
        relative_nearest_partners(seeds, &cells.batch.codes)
    } else {
        Vec::new()
    };
}

/// Steps per epoch and batch size for `n` training cells (drop last).
fn batching(n: usize, batch_size: usize) -> (usize, usize) {
    let b = batch_size.min(n);
    if b < 2 {
        return (0, b);
    }
    (n / b, b)
}

impl<'a> Trainer<'a> {
    /// Prepare a run over `input`'s cells and the pairs table `pairs` (kept, not copied)
    /// writing into `dir`.
    pub fn new(
        input: &'a CellsRows,
        pairs: PairsTable,
        params: TrainParams,
        dir: &Path,
        start: Start,
        device: Device,
    ) -> Result<Self> {
        params.validate()?;
        let cells = &input.cells;
        pairs.check_cells(&cells.fingerprint())?;
        if pairs.n_cells != cells.n_cells() {
            bail!(
                "the pairs table has {} cells, the cells table {}",
                pairs.n_cells,
                cells.n_cells()
            );
        }
        let sets = PairSets::from_pairs(&pairs)?;
        let seeds = seed_rows(&pairs);
        let n_train = sets.training_cells().len();
        if n_train < 2 {
            bail!("only {n_train} cell(s) are in a seed pair: nothing to train on (check the pairs stage)");
        }
        // Seeds carrying posteriors were refined already (stage 2 of a workflow).
        let pre_refined = seeds.posterior.iter().any(|p| p.is_finite());
        let (spe, _) = batching(n_train, params.batch_size);
        let stage1 = params
            .stage1_epochs
            .unwrap_or_else(|| auto_epochs(3, params.stage1_min_steps, STAGE1_MAX_STEPS, spe));
        let epochs = if params.stage1_only {
            stage1
        } else {
            params.epochs.unwrap_or_else(|| {
                auto_epochs(
                    params.default_epochs,
                    params.min_steps,
                    params.max_steps,
                    spe,
                )
            })
        };

        let ckpt = Checkpoints::of(dir, "claire");
        if let Start::Resume = start {
            // The newest checkpoint, or else the end state of a finished model directory.
            let from = match ckpt.latest()? {
                Some(c) => Some(c),
                None if dir.join(model::CARD).exists() && dir.join(model::STATE).exists() => {
                    Some(dir.to_path_buf())
                }
                None => None,
            };
            if let Some(from) = from {
                let (moco, progress, refined) = Self::restore(cells, &params, &device, &from)?;
                let seeds = match &refined {
                    Some((r, _)) => seed_rows(r),
                    None => seeds,
                };
                let t = (moco, progress, refined, seeds);
                return Ok(Self::assemble(
                    input, pairs, params, dir, ckpt, device, sets, t,
                ));
            }
            if dir.join(model::STATE_JSON).exists() && !dir.join(model::CARD).exists() {
                return Err(Error::new(
                    "holds the checkpoint of an older cellweave (state.json beside \
                     state.safetensors, no checksums), which cannot be verified: rerun without --resume",
                )
                .file(dir));
            }
            info!("no checkpoint for {}: starting a new run", dir.display());
        }
        let (moco, epoch0, stage0, momentum_steps) = match &start {
            Start::Init(init) => {
                let (moco, epoch, stage, msteps) = Self::load_init(init, cells, &params, &device)?;
                (
                    moco,
                    epoch,
                    stage.max(if pre_refined { 2 } else { 1 }),
                    msteps,
                )
            }
            _ => {
                let mut rng = Rng::derive(params.seed, &[STREAM_INIT]);
                let enc = Encoder::init(cells.n_genes(), params.latent, &mut rng, &device).ce()?;
                (
                    Moco::new(enc, params.moco, params.adam()).ce()?,
                    0,
                    if pre_refined { 2 } else { 1 },
                    0,
                )
            }
        };
        let refine = params.refine && !params.stage1_only;
        let refine_at = (refine && stage1 < epochs).then_some(epoch0 + stage1);
        if refine && refine_at.is_none() {
            info!("note: {epochs} epoch(s) leave no room for refinement after {stage1} stage-1 epochs: no refinement");
        }
        // A new run discards the checkpoints of an earlier one (the model directory stays
        // until this run has finished).
        ckpt.remove_all()?;
        let progress = Progress {
            epoch: epoch0,
            end_epoch: epoch0 + epochs,
            refine_at,
            refined: false,
            stage: stage0,
            steps: 0,
            momentum_steps,
            seeds: seeds.len(),
            refined_seeds: None,
            seconds: 0.0,
            log: Vec::new(),
            // the pairs stage's own line (it knows whether its filter acted), else the
            // seeds-per-batch-pair check on the table
            seed_advice: seed_check::recorded_pairs_advice(&pairs)
                .or_else(|| {
                    seed_check::pairs_advice(
                        &seed_check::count_by_batch_pair(&pairs, &cells.batch),
                        None,
                    )
                })
                .into_iter()
                .collect(),
        };
        let t = (moco, progress, None, seeds);
        Ok(Self::assemble(
            input, pairs, params, dir, ckpt, device, sets, t,
        ))
    }

    /// The trainer from its parts: the restored or new training state `(moco, progress,
    /// refined pairs, seeds in use)`.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn assemble(
        input: &'a CellsRows,
        pairs: PairsTable,
        params: TrainParams,
        dir: &Path,
        ckpt: Checkpoints,
        device: Device,
        mut sets: PairSets,
        (moco, progress, refined_table, seeds): (
            Moco,
            Progress,
            Option<(PairsTable, Option<Vec<u8>>)>,
            PairsTable,
        ),
    ) -> Self {
        sets.set_seeds(&seed_list(&seeds));
        set_nearest(&mut sets, &seeds, &input.cells, params.nearest_share);
        let ws = Workspace::with_precision(params.precision);
        Trainer {
            params,
            cells: &input.cells,
            x: input.x(),
            pairs,
            seeds,
            sets,
            ws,
            moco,
            progress,
            dir: dir.to_path_buf(),
            ckpt,
            device,
            refined_table,
        }
    }

    fn load_init(
        init: &Path,
        cells: &CellsTable,
        params: &TrainParams,
        device: &Device,
    ) -> Result<(Moco, usize, u32, u64)> {
        let card: model::Card = crate::engine::card::read(init)?;
        if card.gene_ids != cells.gene_ids {
            return Err(Error::new(format!(
                "the model to continue was trained on other genes ({} genes; this table has {}): \
                 --init needs the same gene list in the same order",
                card.n_genes,
                cells.n_genes()
            ))
            .file(init));
        }
        let st = init.join(model::STATE);
        if st.exists() {
            let t = crate::engine::checkpoint::load_tensors(&st)?;
            let moco = Moco::from_state(&t, params.moco, params.adam(), device)
                .ce()
                .at(&st)?;
            let s: StateFile = state::read_json(init)?;
            let msteps = s.progress.momentum_steps.max(s.progress.steps);
            Ok((moco, s.progress.epoch, s.progress.stage, msteps))
        } else {
            info!("note: {} has weights but no training state: key encoder, queue and optimiser start fresh", init.display());
            let m = model::load(init, device)?;
            Ok((
                Moco::new(m.encoder, params.moco, params.adam()).ce()?,
                0,
                1,
                0,
            ))
        }
    }

    /// The training state saved in the folder `from` (a verified checkpoint, or a
    /// finished model directory): model, progress and refined pairs.
    #[allow(clippy::type_complexity)]
    fn restore(
        cells: &CellsTable,
        params: &TrainParams,
        device: &Device,
        from: &Path,
    ) -> Result<(Moco, Progress, Option<(PairsTable, Option<Vec<u8>>)>)> {
        let s: StateFile = state::read_checked(from, &cells.fingerprint(), params, true)?;
        let st = from.join(model::STATE);
        let t = crate::engine::checkpoint::load_tensors(&st)?;
        let moco = Moco::from_state(&t, params.moco, params.adam(), device)
            .ce()
            .at(&st)?;
        let mut refined = None;
        if s.progress.refined {
            let rp = from.join(model::REFINED_PAIRS);
            let r = cellweave::io::table::read_pairs(&rp)?;
            refined = Some((r, Some(std::fs::read(&rp).at(&rp)?)));
        }
        state::say_resuming(&s.progress);
        Ok((moco, s.progress, refined))
    }

    /// `Momentum` or `Query`: the encoder that gives the embedding now.
    pub fn output_encoder(&self) -> EmbedWith {
        // A stage-1-only run gives what the one-call schedule refines with: the query encoder.
        if self.params.stage1_only && self.params.embed_with == EmbedWith::Auto {
            return EmbedWith::Query;
        }
        self.params
            .embed_with
            .resolve(self.params.moco.momentum, self.progress.momentum_steps)
    }

    /// The encoder that gives the embedding now (`params.embed_with`).
    pub fn encoder(&self) -> &Encoder {
        match self.output_encoder() {
            EmbedWith::Momentum => &self.moco.key,
            _ => &self.moco.query,
        }
    }

    /// Eval-mode embedding of every cell by the output encoder.
    pub fn embed_all(&self) -> Result<Vec<f32>> {
        model::embed_rows(self.encoder(), self.x, &self.device)
    }

    /// The embedding table of every cell (name "claire", obs carried from the cells).
    pub fn embedding_table(&self, step: &Step) -> Result<EmbeddingTable> {
        self.table_of(self.embed_all()?, step)
    }

    fn table_of(&self, data: Vec<f32>, step: &Step) -> Result<EmbeddingTable> {
        Ok(EmbeddingTable::of_cells(
            self.cells,
            "claire",
            self.encoder().latent(),
            data,
            step,
        ))
    }

    fn refine_now(&mut self, refiner: &mut Refiner, step: &Step) -> Result<()> {
        let query = model::embed_rows(&self.moco.query, self.x, &self.device)?;
        let emb = self.table_of(query, step)?;
        let Refined {
            pairs: mut kept,
            advice,
        } = refiner(&self.pairs, &emb)?;
        self.progress.seed_advice.extend(advice);
        if kept.fingerprint != self.seeds.fingerprint || kept.n_cells != self.seeds.n_cells {
            bail!("refinement returned pairs over other cells");
        }
        kept.provenance.push(step.clone());
        let before = self.sets.n_seeds();
        self.seeds = seed_rows(&kept);
        self.sets.set_seeds(&seed_list(&self.seeds));
        set_nearest(
            &mut self.sets,
            &self.seeds,
            self.cells,
            self.params.nearest_share,
        );
        let n_train = self.sets.training_cells().len();
        info!(
            "refinement kept {} of {} seed pairs; {} training cells",
            self.sets.n_seeds(),
            before,
            n_train
        );
        if n_train < 2 {
            bail!("refinement left {n_train} training cell(s): lower --refine-threshold or use --no-refine");
        }
        self.progress.refined = true;
        self.progress.refined_seeds = Some(self.seeds.len());
        self.progress.stage = 2;
        self.refined_table = Some((kept, None));
        Ok(())
    }

    /// Run epochs until the end of the schedule (or until `stop_after` global epochs, to
    /// test crash recovery) on the training engine; checkpoints every `checkpoint_every`
    /// epochs. Returns whether the schedule is complete.
    pub fn run(
        &mut self,
        refiner: &mut Refiner,
        step: &Step,
        checkpoint_every: usize,
        stop_after: Option<usize>,
    ) -> Result<bool> {
        let schedule = Schedule {
            start: self.progress.epoch,
            end: self.progress.end_epoch,
            patience: 0,
            checkpoint_every,
            stop_after,
            label: "claire",
        };
        let mut run = Epochs {
            t: self,
            refiner,
            step,
            anchors: Vec::new(),
            batch: 0,
            rng_views: Rng::derive(0, &[]),
            rng_drop: Rng::derive(0, &[]),
            rng_aug: Rng::derive(0, &[]),
            buf: Vec::new(),
            sources: Vec::new(),
        };
        Ok(engine::fit(&mut run, &schedule)?.complete)
    }

    /// Write a checkpoint of the full training state (see [`crate::engine::checkpoint`]).
    pub fn save_checkpoint(&self) -> Result<()> {
        self.ckpt.save(self.progress.epoch, |d| self.write_state(d))
    }

    /// The checkpoints of this run.
    pub fn checkpoints(&self) -> &Checkpoints {
        &self.ckpt
    }

    /// Write the training state into the folder `d`: both encoders, queue and optimiser
    /// (`state.safetensors`), progress and parameters (`state.json`), and the refined seed
    /// pairs once refinement has run.
    fn write_state(&self, d: &Path) -> Result<()> {
        let t = self.moco.state().ce()?;
        state::write(
            d,
            &t,
            &self.cells.fingerprint(),
            &self.params,
            &self.progress,
        )?;
        let rp = d.join(model::REFINED_PAIRS);
        match &self.refined_table {
            Some((_, Some(bytes))) => std::fs::write(&rp, bytes).at(&rp)?,
            Some((r, None)) => cellweave::io::table::write_pairs(&rp, r)?,
            None => {}
        }
        Ok(())
    }

    /// The training log as a table.
    pub fn log_frame(&self, step: &Step) -> Frame {
        LogTable::new("claire", &self.progress.log)
            .count("stage", |r| r.stage as usize)
            .count("epoch", |r| r.epoch)
            .count("steps", |r| r.steps)
            .count("training_cells", |r| r.training_cells)
            .value("loss", |r| r.loss)
            .value("lr", |r| r.lr)
            .value("seconds", |r| r.seconds)
            .finish(Some(self.cells.fingerprint()), step)
    }

    /// The model card of the current state.
    pub fn card(&self, hyperparameters: serde_json::Value) -> Card {
        let enc = self.encoder();
        Card {
            model: "claire".into(),
            card_version: model::CARD_VERSION,
            cellweave_version: cellweave::VERSION.into(),
            architecture: Architecture {
                widths: widths(enc.n_genes(), enc.latent()).to_vec(),
                activation: "relu".into(),
                dropout: self.params.moco.dropout,
                output: "l2-normalized".into(),
            },
            values: self.cells.values,
            n_genes: self.cells.n_genes(),
            gene_ids: self.cells.gene_ids.clone(),
            gene_names: self.cells.gene_names.clone(),
            hyperparameters,
            training: TrainingSummary {
                cells: self.cells.n_cells(),
                cells_fingerprint: self.cells.fingerprint(),
                seed: self.params.seed,
                epochs: self.progress.epoch,
                steps: self.progress.steps,
                final_loss: self.progress.log.last().map(|r| r.loss).unwrap_or(f64::NAN),
                seed_pairs: self.progress.seeds,
                refined_seed_pairs: self.progress.refined_seeds,
                seed_advice: self.progress.seed_advice.clone(),
                training_cells: self.sets.training_cells().len(),
                seconds: self.progress.seconds,
                device: format!("{:?}", self.device.location()),
                encoder: match self.output_encoder() {
                    EmbedWith::Momentum => "momentum".into(),
                    _ => "query".into(),
                },
            },
        }
    }

    /// Write the finished model directory's files (state, weights, log, card last) into
    /// the folder `staged` (which the caller then puts in place of the model directory)
    /// and return the embedding table for the caller to write.
    pub fn finish(&self, staged: &Path, step: &Step) -> Result<EmbeddingTable> {
        self.write_state(staged)?;
        model::save_weights(staged, self.encoder())?;
        cellweave::io::table::write_frame(
            &staged.join(model::TRAINING_LOG),
            &self.log_frame(step),
        )?;
        let emb = self.embedding_table(step)?;
        let mut hyper = serde_json::to_value(&self.params)?;
        // What `precision` came to on this machine (the candle-ops step of other devices
        // computes in f32).
        let used = if self.device.is_cpu() {
            self.params.precision.resolved()
        } else {
            "f32"
        };
        if let Some(h) = hyper.as_object_mut() {
            h.insert("precision_used".into(), used.into());
        }
        crate::engine::card::write(staged, &self.card(hyper))?;
        Ok(emb)
    }

    /// The model directory this run writes.
    pub fn model_dir(&self) -> &Path {
        &self.dir
    }

    /// The pairs table after refinement, once the seeds have been refined.
    pub fn refined_pairs(&self) -> Option<&PairsTable> {
        self.refined_table.as_ref().map(|(t, _)| t)
    }

    /// Number of cells in at least one seed pair in use (the anchors of an epoch).
    pub fn training_cells(&self) -> usize {
        self.sets.training_cells().len()
    }
}

/// One call's epochs on the training engine: the trainer, the refiner it calls before
/// the refinement epoch, and the epoch in progress (anchor order, random streams, views).
struct Epochs<'r, 'f, 't, 'a> {
    t: &'t mut Trainer<'a>,
    refiner: &'r mut Refiner<'f>,
    step: &'r Step,
    anchors: Vec<u32>,
    /// Anchors per step.
    batch: usize,
    rng_views: Rng,
    rng_drop: Rng,
    rng_aug: Rng,
    /// The two views of the current step's anchors (`2 * batch` rows).
    buf: Vec<f32>,
    /// The cell each row of `buf` comes from (its batch, for the augmentation).
    sources: Vec<u32>,
}

impl Trainable for Epochs<'_, '_, '_, '_> {
    fn before_epoch(&mut self, e: usize) -> Result<()> {
        let t = &mut *self.t;
        if t.progress.refine_at == Some(e) && !t.progress.refined {
            t.refine_now(self.refiner, self.step)?;
        }
        Ok(())
    }

    fn start_epoch(&mut self, e: usize) -> Result<usize> {
        self.anchors = self.t.sets.training_cells();
        let (spe, b) = batching(self.anchors.len(), self.t.params.batch_size);
        self.batch = b;
        self.rng_views = Rng::derive(self.t.params.seed, &[e as u64, STREAM_VIEWS]);
        self.rng_drop = Rng::derive(self.t.params.seed, &[e as u64, STREAM_DROPOUT]);
        self.rng_aug = Rng::derive(self.t.params.seed, &[e as u64, STREAM_AUGMENT]);
        self.rng_views.shuffle(&mut self.anchors);
        Ok(spe)
    }

    fn step(&mut self, e: usize, s: usize) -> Result<(f64, usize)> {
        let (t, b) = (&mut *self.t, self.batch);
        batch_views(
            t.x,
            &t.sets,
            &self.anchors[s * b..(s + 1) * b],
            t.params.alpha,
            &mut self.rng_views,
            &mut self.buf,
            &mut self.sources,
        );
        if t.params.augment != Augment::None {
            let codes = &t.cells.batch.codes;
            let rows: Vec<u32> = self.sources.iter().map(|&c| codes[c as usize]).collect();
            let g = t.cells.n_genes();
            augment(t.params.augment, &mut self.buf, g, &rows, &mut self.rng_aug);
        }
        let loss = if t.device.is_cpu() {
            t.moco
                .step_cpu(&self.buf, 2 * b, &mut self.rng_drop, &mut t.ws)
                .ce()?
        } else {
            let g = t.cells.n_genes();
            let x = Tensor::from_slice(&self.buf, (2 * b, g), &t.device).ce()?;
            t.moco.step(&x, &mut self.rng_drop).ce()?
        };
        if !loss.is_finite() {
            bail!(
                "the loss became {loss} at epoch {} step {}: lower --lr",
                e + 1,
                s + 1
            );
        }
        Ok((loss, 1))
    }

    fn end_epoch(&mut self, r: &EpochRecord) -> Result<Option<String>> {
        let t = &mut *self.t;
        let n_train = t.sets.training_cells().len();
        let p = &mut t.progress;
        p.epoch = r.epoch;
        p.steps += r.steps as u64;
        p.momentum_steps += r.steps as u64;
        p.seconds += r.seconds;
        p.log.push(LogRow {
            stage: p.stage,
            epoch: r.epoch,
            steps: r.steps,
            training_cells: n_train,
            loss: r.train_loss,
            lr: t.params.lr,
            seconds: r.seconds,
        });
        Ok(Some(format!(
            "claire stage {} epoch {}/{}: loss {:.4} ({} steps, {} cells, {:.2} s)",
            p.stage, r.epoch, p.end_epoch, r.train_loss, r.steps, n_train, r.seconds
        )))
    }

    fn checkpoint(&mut self) -> Result<()> {
        self.t.save_checkpoint()
    }
}
