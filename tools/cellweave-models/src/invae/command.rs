//! What `cellweave-train --model invae` and `cellweave-embed` (on an inVAE model) do.
//!
//! ```text
//! MODEL_DIR/            assembled beside its place and renamed into it whole at the end
//!   card.yaml            model card (model: invae, shape, covariates and their levels,
//!                        genes, every resolved parameter, training summary)
//!   model.safetensors    weights and batch-norm running statistics
//!   state.safetensors    the same plus the Adam moments (what --resume continues)
//!   state.json           progress (epochs done, log so far) and parameters
//!   training_log.arrow   per-epoch loss, NB negative log-likelihood, KL estimate, beta
//! ```

use crate::engine::log::LogTable;
use cellweave::contract::{CellsTable, Column, Csr, EmbeddingTable, Frame, Step, ValueKind};
use cellweave::io::rows::Rows;
use cellweave::io::{atomic, table};
use cellweave::{info, Error, Result, ResultExt};
use std::path::{Path, PathBuf};

use super::net::{Net, Shape};
use super::train::{self, Covariate, Data, Params, Trainer};
use crate::command::{EmbedRun, TrainRun};
use crate::engine::finish::Finish;
use crate::CandleExt;

pub use crate::engine::card::CARD;
pub use crate::engine::finish::{TRAINING_LOG, WEIGHTS};
/// The model card format version.
pub const CARD_VERSION: u32 = 1;

/// Default sizes and optimiser settings (the reference package's `FinVAE` defaults, and
/// the method note's encoder of two hidden layers).
pub const DEFAULT_LATENT_INV: usize = 9;
/// Default dimensions of z_spur.
pub const DEFAULT_LATENT_SPUR: usize = 1;
/// Default Adam learning rate.
pub const DEFAULT_LR: f64 = 1e-3;
/// Default Adam L2 weight decay.
pub const DEFAULT_WEIGHT_DECAY: f64 = 1e-4;
/// Default cells per minibatch.
pub const DEFAULT_BATCH: usize = 256;
/// Default dropout probability.
pub const DEFAULT_DROPOUT: f32 = 0.1;

/// inVAE's own flags of `cellweave-train`.
#[derive(clap::Args, serde::Serialize, serde::Deserialize, Debug, Clone, Default)]
#[command(next_help_heading = "inVAE options (--model invae)")]
pub struct InvaeArgs {
    /// Covariates of the invariant prior p(z_inv | u_inv), comma-separated obs columns
    /// (e.g. condition,cell_type) [default: none, N(0, 1)]
    #[arg(long, value_delimiter = ',', value_name = "COLUMNS")]
    pub inv_covariates: Vec<String>,
    /// Covariates of the spurious prior p(z_spur | u_spur), comma-separated obs columns
    /// [default: the --batch-key column; "none": N(0, 1)]
    #[arg(long, value_delimiter = ',', value_name = "COLUMNS")]
    pub spur_covariates: Option<Vec<String>>,
    /// Dimensions of z_spur (z_inv has --latent, default 9) (at least 1)
    #[arg(value_parser = cellweave::cli::range::at_least_1, long, value_name = "N")]
    pub latent_spur: Option<usize>,
    /// Width of the hidden layers [default: 128] (at least 1)
    #[arg(value_parser = cellweave::cli::range::at_least_1, long, value_name = "N")]
    pub hidden: Option<usize>,
    /// Hidden layers of the encoder [default: 2; the reference package's default n_layers=2
    /// gives 1]
    #[arg(value_parser = cellweave::cli::range::at_least_1, long, value_name = "N")]
    pub encoder_layers: Option<usize>,
    /// Weight of the prior / posterior terms of the ELBO (>= 0) [default: 1]
    #[arg(value_parser = cellweave::cli::range::non_negative::<f64>, long)]
    pub beta: Option<f64>,
    /// KL warm-up: beta rises linearly over the first N epochs [default: 0, none]
    #[arg(long, value_name = "N")]
    pub kl_warmup: Option<usize>,
    /// Give the spurious covariates' one-hots to the decoder instead of a z_spur block with
    /// a covariate prior (the reference's inject_covar_in_latent; z_spur is then empty)
    /// [default: auto, on when there are spurious covariates and neither --latent-spur nor
    /// --spur-embedding asks for a z_spur block]
    #[arg(long, value_enum, value_name = "WHEN")]
    pub inject_covariates: Option<Inject>,
    /// The priors' means: fixed at 0 with learned variances (the reference's default), or
    /// learned from the covariates as well (its fix_mean_prior=False) [default: auto,
    /// learned when there are --inv-covariates and the spurious ones go to the decoder]
    #[arg(long, value_enum, value_name = "MEAN")]
    pub prior_mean: Option<PriorMean>,
    /// Also write the posterior means of z_spur (the batch-like part) here
    #[arg(long, value_name = "EMB")]
    pub spur_embedding: Option<PathBuf>,
}

/// `--inject-covariates`.
#[derive(clap::ValueEnum, serde::Serialize, serde::Deserialize, Debug, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Inject {
    /// On when there are spurious covariates and no --latent-spur or --spur-embedding.
    Auto,
    /// Always (needs spurious covariates).
    On,
    /// Never: z_spur with its covariate prior, as the reference's default.
    Off,
}

/// `--prior-mean`.
#[derive(clap::ValueEnum, serde::Serialize, serde::Deserialize, Debug, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum PriorMean {
    /// Learned with --inv-covariates and injected spurious covariates, else fixed.
    Auto,
    /// N(0, sigma^2(u)): only the variances depend on the covariates.
    Fixed,
    /// N(mu(u), sigma^2(u)): a shared layer, then a mean and a log-variance head.
    Learned,
}

/// The model card.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Card {
    /// `model: invae`, the card version, the cellweave version.
    #[serde(flatten)]
    pub head: Head,
    /// The network's shape.
    pub shape: Shape,
    /// The invariant prior's covariates and their levels.
    pub inv_covariates: Vec<Covariate>,
    /// The spurious prior's (or the decoder's) covariates and their levels.
    pub spur_covariates: Vec<Covariate>,
    /// The model reads raw counts.
    pub values: ValueKind,
    /// The genes it models.
    #[serde(flatten)]
    pub genes: Genes,
    /// Every resolved parameter.
    pub hyperparameters: Params,
    /// How the training went.
    pub training: Summary,
}

pub use crate::engine::card::Summary;
use crate::engine::card::{Genes, Head};

/// Epochs when `--epochs` is not given: enough for about 3,000 steps, between 20 and 200
/// (the reference trains 500 epochs; scVI's rule gives 400 up to 20,000 cells), then cut to
/// the whole epochs that fit in [`MAX_STEPS`] (at least one; `engine::auto_epochs`, as
/// CLAIRE and MEDL), so that the length stops growing with the number of cells: the
/// 20-epoch floor alone would run 20 passes over any data set (about 78,000 steps at a
/// million cells). Below about 77,000 cells (300 steps of 256 per epoch) nothing changes.
pub fn default_epochs(n_cells: usize, batch_size: usize) -> usize {
    let steps = n_cells.div_ceil(batch_size.max(1)).max(1);
    let epochs = 3000usize.div_ceil(steps).clamp(20, 200);
    crate::engine::auto_epochs(epochs, 0, MAX_STEPS, steps)
}

/// The most steps a run with automatic epochs takes (whole epochs, at least one): twice the
/// 3,000 steps a small data set trains, the budget of CLAIRE and MEDL.
pub const MAX_STEPS: usize = 6000;

/// The raw counts of `cells` (its cells and genes, by id): `--counts`, or a copy of the
/// table's rows `x` when it holds counts. Anything but non-negative integer counts is
/// refused.
pub fn counts_of(
    cells: &CellsTable,
    x: &dyn Rows,
    cells_path: &Path,
    counts: Option<&Path>,
) -> Result<Csr> {
    let (x, path) = match counts {
        Some(p) => {
            let raw = table::read_cells(p)?;
            if raw.values != ValueKind::Counts {
                return Err(Error::new(format!(
                    "holds '{}' values, not raw counts (give the counts, e.g. cellweave-filter's output)",
                    raw.values.as_str()
                ))
                .file(p)
                .field("values"));
            }
            let x = cellweave::convert::export::align_to(&raw, &cells.cell_ids, &cells.gene_ids, p)?;
            (x, p)
        }
        None if cells.values == ValueKind::Counts => (x.to_csr(), cells_path),
        None => {
            return Err(Error::new(format!(
                "holds '{}' values; this model reads raw counts: give them with --counts FILTERED.arrow (cellweave-filter's output)",
                cells.values.as_str()
            ))
            .file(cells_path)
            .field("values"))
        }
    };
    if let Some(v) = x.data.iter().find(|v| !(**v >= 0.0 && v.fract() == 0.0)) {
        return Err(Error::new(format!(
            "holds the value {v}, not a count (expected non-negative integers)"
        ))
        .file(path)
        .field("values"));
    }
    Ok(x)
}

/// The covariates `names` of `cells` with their levels (from `known` at embedding time,
/// else the table's own) and per-cell codes. A column missing at embedding time counts
/// as unknown levels (zero one-hots) with a warning.
fn covariates(
    cells: &CellsTable,
    names: &[String],
    known: Option<&[Covariate]>,
) -> Result<Vec<(Covariate, Vec<u32>)>> {
    let mut out = Vec::new();
    for (k, name) in names.iter().enumerate() {
        let col = match (cells.column(name), known) {
            (Some(c), _) => c,
            (None, Some(kn)) => {
                info!(
                    "warning: no column '{name}' in the cells: its one-hot is zero for every cell"
                );
                out.push((kn[k].clone(), vec![u32::MAX; cells.n_cells()]));
                continue;
            }
            (None, None) => cells.require_column(name)?,
        };
        let cat = match col {
            Column::Cat(c) => c,
            other => other.to_categorical(),
        };
        let cov = match known {
            Some(kn) => kn[k].clone(),
            None => Covariate {
                name: name.clone(),
                levels: cat.categories.clone(),
            },
        };
        let codes = Data::codes(&cat, &cov.levels);
        out.push((cov, codes));
    }
    Ok(out)
}

/// The spurious covariates: `--spur-covariates`, the batch column by default, none for "none".
fn spur_covariates(i: &TrainRun, a: &InvaeArgs) -> Vec<String> {
    match &a.spur_covariates {
        None => vec![i.batch_key.clone()],
        Some(v) if v.iter().all(|s| s == "none" || s.is_empty()) => Vec::new(),
        Some(v) => v.clone(),
    }
}

/// Whether the spurious one-hots go to the decoder (`--inject-covariates`); a contradictory
/// combination of flags is refused (before any data is read).
pub fn inject(i: &TrainRun, a: &InvaeArgs) -> Result<bool> {
    let spur = spur_covariates(i, a);
    let inject = match a.inject_covariates.unwrap_or(Inject::Auto) {
        Inject::Off => false,
        Inject::Auto => {
            !spur.is_empty() && a.latent_spur.is_none() && a.spur_embedding.is_none()
        }
        Inject::On if spur.is_empty() => {
            return Err(Error::new(
                "--inject-covariates on needs spurious covariates (--spur-covariates is none)",
            )
            .flag("--inject-covariates"))
        }
        Inject::On if a.latent_spur.is_some() => {
            return Err(Error::new(
                "--inject-covariates on leaves no z_spur block: drop --latent-spur or use --inject-covariates off",
            )
            .flag("--latent-spur"))
        }
        Inject::On => true,
    };
    if inject && a.spur_embedding.is_some() {
        return Err(Error::new(
            "the spurious covariates go to the decoder (--inject-covariates), so there is no z_spur to write: drop --spur-embedding or use --inject-covariates off",
        )
        .flag("--spur-embedding"));
    }
    Ok(inject)
}

/// Resolve the parameters from the options (`inject` from [`inject`]).
pub fn params(i: &TrainRun, a: &InvaeArgs, n_cells: usize, inject: bool) -> Params {
    let h = &i.hyper;
    let batch_size = h.batch_size.unwrap_or(DEFAULT_BATCH);
    Params {
        inv_covariates: a.inv_covariates.clone(),
        spur_covariates: spur_covariates(i, a),
        latent_inv: h.latent.unwrap_or(DEFAULT_LATENT_INV),
        latent_spur: if inject {
            0
        } else {
            a.latent_spur.unwrap_or(DEFAULT_LATENT_SPUR)
        },
        inject_spur: inject,
        learned_prior_mean: match a.prior_mean.unwrap_or(PriorMean::Auto) {
            PriorMean::Auto => inject && !a.inv_covariates.is_empty(),
            PriorMean::Fixed => false,
            PriorMean::Learned => true,
        },
        hidden: a.hidden.unwrap_or(128),
        encoder_layers: a.encoder_layers.unwrap_or(2),
        dropout: h.dropout.unwrap_or(DEFAULT_DROPOUT),
        beta: a.beta.unwrap_or(1.0),
        kl_warmup: a.kl_warmup.unwrap_or(0),
        epochs: h
            .epochs
            .unwrap_or_else(|| default_epochs(n_cells, batch_size)),
        batch_size,
        lr: h.lr.unwrap_or(DEFAULT_LR),
        weight_decay: h.weight_decay.unwrap_or(DEFAULT_WEIGHT_DECAY),
        seed: i.seed,
    }
}

fn log_frame(t: &Trainer, step: &Step) -> Frame {
    LogTable::epochs("invae", &t.progress.log)
        .value("nll", |r| r.recon)
        .value("kl", |r| r.kl)
        .value("beta", |r| r.beta)
        .end(t.fingerprint.clone(), step)
}

/// Train inVAE and write the model directory, the embedding(s) and the log.
pub fn train(i: &TrainRun, a: &InvaeArgs, step: &Step) -> Result<()> {
    if i.init.is_some() {
        return Err(Error::new(
            "--model invae does not continue another model directory; --resume continues an interrupted run",
        )
        .field("init"));
    }
    let mut inputs = vec![i.cells.as_path()];
    inputs.extend(i.counts.as_deref());
    i.check_outputs(&inputs, &[a.spur_embedding.as_deref()])?;
    let inject_spur = inject(i, a)?;
    let device = crate::device(&i.device)?;
    // The rows stay in the memory-mapped file when it is one (a cellweave Arrow table): with
    // --counts they are not read, else the counts are one copy of them.
    let input = cellweave::io::rows::read_cells_rows(&i.cells)?;
    let cells = &input.cells;
    if cells.n_genes() == 0 {
        return Err(Error::new("no genes").file(&i.cells));
    }
    let counts = counts_of(cells, input.x(), &i.cells, i.counts.as_deref())?;
    let p = params(i, a, cells.n_cells(), inject_spur);
    let data = Data {
        counts,
        inv: covariates(cells, &p.inv_covariates, None)?,
        spur: covariates(cells, &p.spur_covariates, None)?,
    };
    i.clean_stale()?;
    let mut t = Trainer::new(
        &data,
        p.clone(),
        cells.fingerprint(),
        &i.model_dir,
        i.resume,
        device,
    )?;
    let level_text = |b: &[(Covariate, Vec<u32>)]| -> String {
        if b.is_empty() {
            "none, N(0,1)".into()
        } else {
            b.iter()
                .map(|(c, _)| format!("{} ({} levels)", c.name, c.levels.len()))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let spur_text = if p.inject_spur {
        format!("none ({} to the decoder)", level_text(&data.spur))
    } else {
        format!("{} (prior on {})", p.latent_spur, level_text(&data.spur))
    };
    info!(
        "invae: {} cells x {} genes; z_inv {} (prior on {}), z_spur {}; epochs {}..{} of batch {}",
        cells.n_cells(),
        cells.n_genes(),
        p.latent_inv,
        level_text(&data.inv),
        spur_text,
        t.progress.epoch + 1,
        t.progress.end_epoch,
        p.batch_size
    );
    if !train::run(&mut t, i.checkpoint_every, i.stop_after)? {
        return Err(crate::engine::stopped_as_asked(t.progress.epoch));
    }
    let z = t.posterior_means()?;
    let (zi, zs) = train::split(&z, p.latent_inv, p.latent_spur);
    let card = Card {
        head: Head::of::<Card>(),
        shape: t.net.shape.clone(),
        inv_covariates: data.inv.iter().map(|(c, _)| c.clone()).collect(),
        spur_covariates: data.spur.iter().map(|(c, _)| c.clone()).collect(),
        values: ValueKind::Counts,
        genes: Genes::of(cells),
        hyperparameters: p.clone(),
        training: Summary::new(
            cells,
            p.seed,
            &t.progress,
            t.progress.final_loss(),
            &t.device,
        ),
    };
    let log = log_frame(&t, step);
    let mut embeddings = vec![(
        i.embedding.as_path(),
        EmbeddingTable::of_cells(cells, "invae", p.latent_inv, zi, step),
    )];
    if let Some(sp) = &a.spur_embedding {
        embeddings.push((
            sp.as_path(),
            EmbeddingTable::of_cells(cells, "invae_spur", p.latent_spur, zs, step),
        ));
    }
    Finish {
        model: "invae",
        model_dir: &i.model_dir,
        checkpoints: t.checkpoints(),
        weights: Some(&t.net.tensors().ce()?),
        log: &log,
        log_out: i.log.as_deref(),
        embeddings,
        progress: &t.progress,
        note: "",
        final_loss: card.training.final_loss,
    }
    .write(&card, |staged| t.write_state(staged), |_| Ok(()), || Ok(()))
}

crate::engine::card::model_card!(Card: head, genes; "invae", "inVAE", CARD_VERSION, shape);

/// What `cellweave-embed` needs for an inVAE model.
#[derive(Debug, Clone)]
pub struct EmbedInputs {
    /// The cells to map (their genes are matched to the model's by id, else by name), the
    /// model, the embedding of z_inv to write, the device and the missing-gene limit.
    pub run: EmbedRun,
    /// Raw counts of those cells; `None`: `run.cells` holds counts.
    pub counts: Option<PathBuf>,
    /// Also write z_spur here.
    pub spur_output: Option<PathBuf>,
}

/// `cellweave-embed` on an inVAE model directory: CELLS holds the raw counts of the cells to
/// map (e.g. cellweave-filter's output; the model's genes are picked by id).
pub fn embed(run: &EmbedRun, step: &Step) -> Result<()> {
    embed_with(
        &EmbedInputs {
            run: run.clone(),
            counts: None,
            spur_output: None,
        },
        step,
    )
}

/// Map new cells with a trained inVAE: posterior means of z_inv (and z_spur). Levels of a
/// covariate the model has not seen get a zero one-hot.
pub fn embed_with(e: &EmbedInputs, step: &Step) -> Result<()> {
    let (o, counts) = (&e.run, e.counts.as_deref());
    let mut inputs = vec![o.cells.as_path()];
    inputs.extend(counts);
    atomic::check_not_input(&o.output, &inputs)?;
    let device = crate::device(&o.device)?;
    let card: Card = crate::engine::card::read(&o.model_dir)?;
    let cells = table::read_cells(&o.cells)?;
    let genes = &card.genes;
    let a = crate::claire::model::align_gene_lists(&genes.gene_ids, &genes.gene_names, &cells);
    let frac = a.missing as f64 / genes.n_genes.max(1) as f64;
    if frac > o.max_missing {
        return Err(Error::new(format!(
            "{} of the model's {} genes are missing (more than {:.0}%; matched by {})",
            a.missing,
            genes.n_genes,
            o.max_missing * 100.0,
            a.by
        ))
        .file(&o.cells)
        .field("genes"));
    }
    let mut model_cells = cells.clone();
    let cols: Vec<usize> = a.columns.iter().flatten().copied().collect();
    model_cells = model_cells.select_genes(&cols);
    let counts_sub = counts_of(&model_cells, &model_cells.x, &o.cells, counts)?;
    // Back onto the model's gene order, missing genes zero.
    let x = place_columns(&counts_sub, &a.columns);
    let names = |b: &[Covariate]| b.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    let data = Data {
        counts: x,
        inv: covariates(
            &cells,
            &names(&card.inv_covariates),
            Some(&card.inv_covariates),
        )?,
        spur: covariates(
            &cells,
            &names(&card.spur_covariates),
            Some(&card.spur_covariates),
        )?,
    };
    let wpath = o.model_dir.join(WEIGHTS);
    let t = crate::engine::checkpoint::load_tensors(&wpath)?;
    let net = Net::from_tensors(&card.shape, &t, &device)
        .ce()
        .at(&wpath)?;
    let z = train::posterior_means(&net, &data, &device)?;
    let (li, ls) = (card.shape.latent_inv, card.shape.latent_spur);
    let (zi, zs) = train::split(&z, li, ls);
    table::write_embedding(
        &o.output,
        &EmbeddingTable::of_cells(&cells, "invae", li, zi, step),
    )?;
    if let Some(sp) = &e.spur_output {
        table::write_embedding(
            sp,
            &EmbeddingTable::of_cells(&cells, "invae_spur", ls, zs, step),
        )?;
    }
    info!(
        "embedded {} cells with {} into {}",
        cells.n_cells(),
        o.model_dir.display(),
        o.output.display()
    );
    Ok(())
}

/// `x` (its columns = the found model genes, in model order) spread onto the model's
/// gene list: column `m` of the result is the `k`-th found gene when `columns[m]` is the
/// `k`-th `Some`; missing genes stay zero.
fn place_columns(x: &Csr, columns: &[Option<usize>]) -> Csr {
    let map: Vec<Option<u32>> = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_some())
        .map(|(m, _)| Some(m as u32))
        .collect();
    let mut out = Csr::empty(columns.len());
    out.extend_remapped(x, &map);
    out
}
