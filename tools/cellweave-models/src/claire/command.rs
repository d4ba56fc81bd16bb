//! What `cellweave-train` and `cellweave-embed` do, given their parsed options.

use cellweave::contract::{Categorical, EmbeddingTable, PairsTable, Step, ValueKind};
use cellweave::io::{atomic, table};
use cellweave::{info, Error, Result, ResultExt};
use std::path::Path;

use super::augment::Augment;
use super::cpu_step::Precision;
use super::moco::MocoParams;
use super::model;
use super::train::{EmbedWith, Refined, Start, TrainParams, Trainer};
use crate::command::{EmbedRun, Hyper, TrainRun};
use crate::engine::checkpoint;
use crate::ModelKind;

/// CLAIRE's own flags of `cellweave-train` (the shared ones are [`Hyper`]).
#[derive(clap::Args, serde::Serialize, serde::Deserialize, Debug, Clone)]
#[command(next_help_heading = "CLAIRE options (--model claire)")]
pub struct ClaireArgs {
    /// With automatic --epochs: run at least this many steps
    #[arg(long, default_value_t = TrainParams::default().min_steps, value_name = "N")]
    pub min_steps: usize,
    /// With automatic --epochs: run at most this many steps (whole epochs, at least one;
    /// at least --min-steps), so that the length stops growing with the number of cells
    #[arg(value_parser = cellweave::cli::range::at_least_1, long, default_value_t = TrainParams::default().max_steps, value_name = "N")]
    pub max_steps: usize,
    /// Epochs before refinement [default: 3, fewer (at least 1) when 3 epochs run more than
    /// 600 steps, more when they run fewer than 100] (at least 1)
    #[arg(value_parser = cellweave::cli::range::at_least_1, long, value_name = "N")]
    pub stage1_epochs: Option<usize>,
    /// Do not refine the seed pairs (one stage; for stage-by-stage workflows)
    #[arg(long)]
    pub no_refine: bool,
    /// Run only stage 1 (--stage1-epochs: by default 3, fewer when they run more than 600 steps, more when fewer than 100), without
    /// refinement, embedding with the query encoder unless --embed-with says otherwise: the
    /// first call of a stage-by-stage run (train, refine, then train --init). Conflicts with
    /// --epochs
    #[arg(long, conflicts_with = "epochs")]
    pub stage1_only: bool,
    /// Keep seed pairs whose posterior of the high-similarity component is at least this (0 to 1)
    #[arg(value_parser = cellweave::cli::range::fraction::<f64>, long,
          default_value_t = TrainParams::default().refine_threshold, value_name = "P")]
    pub refine_threshold: f64,
    /// Refine only when the seed-similarity mixture's two components overlap at most this
    /// much (the share of seeds the mixture itself misassigns, 0 to 0.5); beyond it the
    /// mixture cuts one group of seeds in two and every seed is kept. 1 refines always (the
    /// published method)
    #[arg(value_parser = cellweave::cli::range::fraction::<f64>, long,
          default_value_t = TrainParams::default().refine_max_overlap, value_name = "P")]
    #[serde(default = "max_overlap_default")]
    pub refine_max_overlap: f64,
    /// Probability that an anchor's second view comes from its relative-nearest seed
    /// partner (smallest distance over its batch pair's median seed distance) instead of a
    /// uniformly drawn partner (0 to 1; 0: CLAIRE)
    #[arg(value_parser = cellweave::cli::range::fraction::<f32>, long, default_value_t = 0.0, value_name = "P")]
    #[serde(default)]
    pub nearest_share: f32,
    /// Mix-up coefficients are drawn from U(alpha, 1) (0 to 1)
    #[arg(value_parser = cellweave::cli::range::fraction::<f32>, long,
          default_value_t = TrainParams::default().alpha)]
    pub alpha: f32,
    /// Negatives in the MoCo queue (at least 1)
    #[arg(value_parser = cellweave::cli::range::at_least_1, long,
          default_value_t = MocoParams::default().queue_size)]
    pub queue: usize,
    /// Softmax temperature (> 0)
    #[arg(value_parser = cellweave::cli::range::positive::<f64>, long,
          default_value_t = MocoParams::default().temperature)]
    pub temperature: f64,
    /// Key encoder momentum (0 to 1)
    #[arg(value_parser = cellweave::cli::range::fraction::<f32>, long,
          default_value_t = MocoParams::default().momentum)]
    pub momentum: f32,
    /// Encoder whose output is the embedding and the saved model: the momentum encoder (a
    /// moving average of the query encoder's weights, less noisy), the query encoder
    /// (CLAIRE's released code), or auto: momentum once the momentum encoder has averaged
    /// ~1 / -ln(m) steps (~1,000 at m = 0.999), query before (a short stage-1 run). The
    /// refinement inside this call always uses the query encoder
    #[arg(long, value_enum, default_value_t = EmbedWith::default())]
    pub embed_with: EmbedWith,
    /// Augment the views with batch-styles standardization: bss standardizes each view to
    /// one batch's per-gene mean and sd (blended by U(0, 1)), bss-rank (label-free) mixes
    /// each cell's sorted values with an anchor cell's, keeping its gene ranks
    #[arg(long, value_enum, default_value_t = Augment::default())]
    pub augment: Augment,
    /// Arithmetic of the CPU step's first-layer forward product (x W1^T, the largest of the
    /// step; bf16 is about 2.5x faster). Every other product, the gradients and a CUDA
    /// device compute in f32. The card records what it came to (precision_used)
    #[arg(long, value_enum, default_value_t = Precision::Auto)]
    #[serde(default = "precision_f32")]
    pub precision: Precision,
}

/// `--precision` of the provenance of runs before the option (f32).
fn precision_f32() -> Precision {
    Precision::F32
}

fn max_overlap_default() -> f64 {
    TrainParams::default().refine_max_overlap
}

impl ClaireArgs {
    /// The training parameters of a run: the shared flags (each `None` takes CLAIRE's
    /// default) and CLAIRE's own.
    pub fn params(&self, hyper: &Hyper, seed: u64) -> TrainParams {
        let d = TrainParams::default();
        TrainParams {
            epochs: hyper.epochs,
            min_steps: self.min_steps,
            max_steps: self.max_steps,
            stage1_epochs: self.stage1_epochs,
            stage1_only: self.stage1_only,
            refine: !self.no_refine,
            refine_threshold: self.refine_threshold,
            refine_max_overlap: self.refine_max_overlap,
            nearest_share: self.nearest_share,
            batch_size: hyper.batch_size.unwrap_or(d.batch_size),
            lr: hyper.lr.unwrap_or(d.lr),
            weight_decay: hyper.weight_decay.unwrap_or(d.weight_decay),
            alpha: self.alpha,
            latent: hyper.latent.unwrap_or(d.latent),
            moco: MocoParams {
                momentum: self.momentum,
                temperature: self.temperature,
                queue_size: self.queue,
                dropout: hyper.dropout.unwrap_or(d.moco.dropout),
            },
            embed_with: self.embed_with,
            augment: self.augment,
            precision: self.precision,
            seed,
            ..d
        }
    }
}

fn seed_accuracy(t: &PairsTable, labels: &Categorical) -> String {
    let (same, total) = cellweave::integrate::pairs::seed_accuracy(t, labels);
    if total == 0 {
        "n/a".into()
    } else {
        format!("{:.3} ({same}/{total})", same as f64 / total as f64)
    }
}

/// Train a CLAIRE model and write the model directory, the embedding and the log.
pub fn train(o: &TrainRun, args: &ClaireArgs, step: &Step) -> Result<()> {
    let pairs_path = o.require_pairs(ModelKind::Claire)?;
    let params = args.params(&o.hyper, o.seed);
    let inputs = [o.cells.as_path(), pairs_path];
    o.check_outputs(&inputs, &[])?;
    if o.resume && o.init.is_some() {
        return Err(Error::new(
            "--resume continues this model directory's own run; it cannot be combined with --init",
        )
        .field("resume"));
    }
    let device = crate::device(&o.device)?;
    // The rows stay in the memory-mapped file when it is one (a cellweave Arrow table).
    let input = cellweave::io::rows::read_cells_rows(&o.cells)?;
    let cells = &input.cells;
    let pairs = table::read_pairs(pairs_path)?;
    pairs.check_cells(&cells.fingerprint()).at(pairs_path)?;
    if cells.n_genes() == 0 {
        return Err(Error::new("no genes").file(&o.cells));
    }
    if cells.values == ValueKind::Counts {
        return Err(Error::new(
            "raw counts: CLAIRE trains on log-normalized values (run cellweave-normalize first)",
        )
        .file(&o.cells)
        .field("values"));
    }
    let labels = cellweave::integrate::pairs::labels(cells, &o.labels);
    let start = match (&o.init, o.resume) {
        (Some(d), _) => Start::Init(d.clone()),
        (None, true) => Start::Resume,
        (None, false) => Start::Fresh,
    };
    o.clean_stale()?;
    let mut trainer =
        Trainer::new(&input, pairs, params.clone(), &o.model_dir, start, device).at(pairs_path)?;
    info!(
        "claire: {} cells x {} genes (rows {}), {} seed pairs, {} training cells; epochs {}..{} of batch {}{}",
        cells.n_cells(),
        cells.n_genes(),
        if input.is_mapped() { "read from the mapped file" } else { "in memory" },
        trainer.progress.seeds,
        trainer.training_cells(),
        trainer.progress.epoch + 1,
        trainer.progress.end_epoch,
        params.batch_size.min(trainer.training_cells()),
        match trainer.progress.refine_at {
            Some(e) if !trainer.progress.refined => format!(", refinement after epoch {e}"),
            _ => String::new(),
        }
    );
    if !trainer.progress.refined {
        for line in &trainer.progress.seed_advice {
            cellweave::cli::log(format_args!("{line}"));
        }
    }
    let threshold = params.refine_threshold;
    let max_overlap = params.refine_max_overlap;
    let mut refiner = |p: &PairsTable, emb: &EmbeddingTable| -> Result<Refined> {
        let (out, rep) =
            cellweave::integrate::pairs::refine(p, &emb.data, emb.dim, threshold, max_overlap)?;
        let mut advice = None;
        if let (Some(g), Some(overlap)) = (&rep.gmm, rep.overlap) {
            info!(
                "refinement: seed similarity mixture low {:.3} (sd {:.3}, weight {:.2}), high {:.3} (sd {:.3}, weight {:.2}); overlap {overlap:.3}",
                g.means[0], g.variances[0].sqrt(), g.weights[0], g.means[1], g.variances[1].sqrt(), g.weights[1]
            );
            advice = cellweave::integrate::seed_check::mixture_advice(g);
            if let Some(a) = &advice {
                cellweave::cli::log(format_args!("{a}"));
            }
            if rep.kept_all {
                info!(
                    "refinement: the components overlap more than {max_overlap} (--refine-max-overlap): \
                     they do not separate true from false seeds; every seed kept"
                );
            }
        }
        info!(
            "refinement: seeds kept {} of {}",
            rep.seeds_after, rep.seeds_before
        );
        if let Some(l) = &labels {
            info!(
                "refinement: seed accuracy {} -> {}",
                seed_accuracy(p, l),
                seed_accuracy(&out, l)
            );
        }
        Ok(Refined { pairs: out, advice })
    };
    let complete = trainer.run(&mut refiner, step, o.checkpoint_every, o.stop_after)?;
    if !complete {
        // As if killed: only the periodic checkpoints are on disk.
        return Err(crate::engine::stopped_as_asked(trainer.progress.epoch));
    }
    // The model directory is assembled beside its final place and put there in one
    // step after every other output is written: a run that fails leaves the previous
    // model directory as it was.
    checkpoint::write_model_dir(&o.model_dir, |staged| {
        let emb = trainer.finish(staged, step)?;
        table::write_embedding(&o.embedding, &emb)?;
        if let Some(l) = &o.log {
            crate::engine::write_log(l, &trainer.log_frame(step))?;
        }
        Ok(())
    })?;
    trainer.checkpoints().remove_all()?;
    let last = trainer
        .progress
        .log
        .last()
        .map(|r| r.loss)
        .unwrap_or(f64::NAN);
    info!(
        "claire: {} epochs, {} steps, final loss {last:.4}, {:.1} s of training; model in {}",
        trainer.progress.epoch,
        trainer.progress.steps,
        trainer.progress.seconds,
        o.model_dir.display()
    );
    Ok(())
}

/// Apply a saved model to a cells table and write the embedding.
pub fn embed(o: &EmbedRun, step: &Step) -> Result<()> {
    atomic::check_not_input(&o.output, &[o.cells.as_path()])?;
    if !(0.0..=1.0).contains(&o.max_missing) {
        return Err(Error::new(format!(
            "{} is not a fraction (expected 0..1)",
            o.max_missing
        ))
        .field("max-missing"));
    }
    let device = crate::device(&o.device)?;
    let m = model::load(&o.model_dir, &device)?;
    // The rows stay in the memory-mapped file when it is one (a cellweave Arrow table) and
    // its genes are the model's; else they are copied onto the model's genes.
    let input = cellweave::io::rows::read_cells_rows(&o.cells)?;
    let cells = &input.cells;
    let c = &m.card;
    let a = model::alignment_for(
        &c.gene_ids,
        &c.gene_names,
        c.values,
        cells,
        &o.cells,
        o.max_missing,
    )?;
    let aligned = model::aligned_rows(input.x(), &a);
    let x: &dyn cellweave::io::rows::Rows = match &aligned {
        Some(m) => m,
        None => input.x(),
    };
    let data = model::embed_rows(&m.encoder, x, &device)?;
    let emb = EmbeddingTable::of_cells(cells, &m.card.model, m.encoder.latent(), data, step);
    table::write_embedding(&o.output, &emb)?;
    info!(
        "embedded {} cells with {} into {}",
        cells.n_cells(),
        display(&o.model_dir),
        display(&o.output)
    );
    Ok(())
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
