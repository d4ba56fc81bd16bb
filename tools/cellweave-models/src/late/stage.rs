//! The `cellweave-impute` stage: read a cells table, fill its zeros (LATE, TRANSLATE, or a
//! baseline), write the dense imputed table, and optionally the model, the training log and
//! a held-out evaluation against a truth table.

use super::{
    device, train, Engine, EpochLog, Late, LateConfig, ModelCard, TrainOptions, TrainSummary,
};
use crate::engine::log::LogTable;
use cellweave::contract::{rows_of, CellsTable, Step};
use cellweave::impute::{self, Method, Scale};
use cellweave::io::{atomic, table, Format};
use cellweave::{bail, info, Error, Result, ResultExt};
use std::path::{Path, PathBuf};

/// `--engine`: an [`Engine`] by its name.
fn parse_engine(s: &str) -> std::result::Result<Engine, String> {
    Engine::parse(s).ok_or_else(|| format!("'{s}' is not one of auto, fast, autograd"))
}

/// Everything the stage needs: the arguments of `cellweave-impute` (the paths of the input,
/// the output and the truth are not recorded in provenance).
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct Options {
    /// Input cells table (.arrow or .parquet) of raw counts
    #[arg(value_name = "CELLS")]
    #[serde(skip)]
    pub input: PathBuf,
    /// Output cells table with the imputed values
    #[arg(short, long, value_name = "IMPUTED")]
    #[serde(skip)]
    pub output: PathBuf,
    /// late (autoencoder), gene-mean (each gene's mean of its observed values) or knn (average
    /// over the nearest cells in the PCA of the input)
    #[arg(long, value_enum, default_value = "late")]
    pub method: Method,
    /// Value scale: log10 = log10(x+1) (LATE), log1p = ln(x+1)
    #[arg(long, value_enum, default_value = "log10")]
    pub scale: Scale,
    /// Hidden layer widths [default: 800,400,800] (at least 1)
    #[arg(value_parser = cellweave::cli::range::at_least_1, long, value_delimiter = ',', value_name = "W,W,...")]
    pub hidden: Option<Vec<usize>>,
    /// Maximum training epochs [default: 100, fewer on large data so that at most --max-steps
    /// steps run] (0: apply the --init model as it is)
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Bound of the automatic length in optimiser steps (whole epochs, at least one; ignored
    /// with --epochs) (at least 1)
    #[arg(value_parser = cellweave::cli::range::at_least_1, long, default_value_t = DEFAULT_MAX_STEPS)]
    pub max_steps: usize,
    /// Stop after this many epochs without a lower validation loss (0: never)
    #[arg(long, default_value_t = 10)]
    pub patience: usize,
    /// Adam learning rate [default: 3e-4, or 3e-5 with --init] (> 0)
    #[arg(value_parser = cellweave::cli::range::positive::<f64>, long)]
    pub lr: Option<f64>,
    /// Cells per training step (at least 1)
    #[arg(value_parser = cellweave::cli::range::at_least_1, long, default_value_t = 256)]
    pub batch_size: usize,
    /// Fraction of cells held out for early stopping (0 to 1, below 1)
    #[arg(value_parser = cellweave::cli::range::fraction_below_1::<f64>, long, default_value_t = 0.15)]
    pub val_fraction: f64,
    /// Start from a saved model (TRANSLATE: pre-trained on a reference)
    #[arg(long, value_name = "MODEL_DIR")]
    pub init: Option<PathBuf>,
    /// Save the best model (model.safetensors + card.yaml) into this directory
    #[arg(long, value_name = "MODEL_DIR")]
    pub model_out: Option<PathBuf>,
    /// Write the training log (.tsv, .arrow or .parquet)
    #[arg(long, value_name = "LOG")]
    pub log: Option<PathBuf>,
    /// Keep the observed (non-zero) values exactly; impute only the zeros
    #[arg(long)]
    pub only_zeros: bool,
    /// Give the network a one-hot batch covariate (encoder and decoder input)
    #[arg(long)]
    pub batch_aware: bool,
    /// Per-cell column holding the batch, for --batch-aware
    #[arg(long, default_value = "batch")]
    pub batch_key: String,
    /// Neighbours for --method knn (the cell itself included) (at least 1)
    #[arg(value_parser = cellweave::cli::range::at_least_1, long, default_value_t = 15)]
    pub knn: usize,
    /// Principal components for --method knn (at least 1)
    #[arg(value_parser = cellweave::cli::range::at_least_1, long, default_value_t = 30)]
    pub n_pcs: usize,
    /// cpu, or cuda (builds with the `cuda` feature)
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Training implementation: auto, fast (hand-written, CPU) or autograd (candle autograd)
    #[arg(long, default_value = "auto", value_parser = parse_engine, hide = true)]
    pub engine: Engine,
    /// Random seed (split, initial weights, dropout, batch order)
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Truth cells table (raw counts): print a JSON line with the held-out MSE (log10(x+1))
    /// and median Pearson per gene and per cell, on entries non-zero in the truth and zero in
    /// the input
    #[arg(long, value_name = "TRUTH")]
    #[serde(skip)]
    pub truth: Option<PathBuf>,
}

/// Learning rate when training from scratch (LATE).
pub const LR_LATE: f64 = 3e-4;
/// Learning rate when continuing from a model (TRANSLATE).
pub const LR_TRANSLATE: f64 = 3e-5;
/// Hidden layer widths when `--hidden` is not given.
pub const DEFAULT_HIDDEN: [usize; 3] = [800, 400, 800];

/// LATE's maximum length without `--epochs` (early stopping usually ends it sooner).
pub const DEFAULT_EPOCHS: usize = 100;

/// The step bound of the automatic length (`--max-steps`): on 100,000 simulated cells x
/// 1,000 genes the validation loss flattened after 5,000-7,000 steps (docs/scale.md), and
/// this is about three times that, as CLAIRE's 6,000 is for its curves. It binds from about
/// 60,000 cells (200 steps of 256 training cells per epoch), so smaller data train as before.
pub const DEFAULT_MAX_STEPS: usize = 20_000;

/// The epochs LATE trains: `--epochs` when given, else [`DEFAULT_EPOCHS`] cut to the whole
/// epochs that fit in `--max-steps` (at least one) for `n_cells` cells.
pub fn resolved_epochs(o: &Options, n_cells: usize) -> usize {
    o.epochs.unwrap_or_else(|| {
        let train = n_cells - crate::late::n_validation(n_cells, o.val_fraction);
        let per_epoch = train.div_ceil(o.batch_size);
        crate::engine::auto_epochs(DEFAULT_EPOCHS, 0, o.max_steps, per_epoch)
    })
}

/// Option values that cannot work, before any file is read.
fn check_options(o: &Options) -> Result<()> {
    let bad = |flag: &str, msg: String| Err(Error::new(msg).flag(flag));
    if o.batch_size == 0 {
        return bad("batch-size", "must be at least 1".into());
    }
    if !(0.0..1.0).contains(&o.val_fraction) {
        return bad(
            "val-fraction",
            format!("{} (expected 0 <= f < 1)", o.val_fraction),
        );
    }
    if let Some(lr) = o.lr {
        if !(lr > 0.0 && lr.is_finite()) {
            return bad("lr", format!("{lr} (expected a positive number)"));
        }
    }
    if o.knn == 0 {
        return bad("knn", "must be at least 1".into());
    }
    if o.n_pcs == 0 {
        return bad("n-pcs", "must be at least 1".into());
    }
    Ok(())
}

fn resolved_lr(o: &Options) -> f64 {
    o.lr.unwrap_or(if o.init.is_some() {
        LR_TRANSLATE
    } else {
        LR_LATE
    })
}

/// Run the stage. `step` is the provenance entry of this run (tool, version, arguments).
pub fn run(o: &Options, mut step: Step) -> Result<()> {
    check_options(o)?;
    for out in [Some(&o.output), o.model_out.as_ref(), o.log.as_ref()]
        .into_iter()
        .flatten()
    {
        atomic::check_not_input(out, &[&o.input])?;
        // Temporaries that killed runs left beside this output.
        crate::engine::checkpoint::clean_stale(out)?;
    }
    if o.method != Method::Late {
        for (set, flag) in [
            (o.init.is_some(), "init"),
            (o.model_out.is_some(), "model-out"),
            (o.log.is_some(), "log"),
            (o.batch_aware, "batch-aware"),
        ] {
            if set {
                return Err(Error::new(format!(
                    "only used with --method late (not {})",
                    o.method.as_str()
                ))
                .flag(flag));
            }
        }
    }
    if let Some(log) = &o.log {
        if !matches!(
            Format::of(log),
            Some(Format::Tsv | Format::Arrow | Format::Parquet)
        ) {
            return Err(Error::new("expected a .tsv, .arrow or .parquet path")
                .flag("--log")
                .file(log));
        }
    }
    // The device first: a binary built without CUDA says so before reading anything.
    let dev = device(&o.device)?;
    let mut cells = table::read_cells(&o.input)?;
    if cells.n_cells() == 0 || cells.n_genes() == 0 {
        return Err(Error::new("no cells or no genes to impute").file(&o.input));
    }
    // TRANSLATE: the model decides genes, scale, architecture and batches.
    let loaded = match &o.init {
        Some(dir) => {
            let (model, card) = Late::load(dir, &dev)?;
            if card.scale != o.scale.as_str() {
                return Err(Error::new(format!(
                    "the model was trained on the {} scale, not {} (pass --scale {})",
                    card.scale,
                    o.scale.as_str(),
                    card.scale
                ))
                .flag("--scale")
                .file(dir.join("card.yaml")));
            }
            if let Some(h) = &o.hidden {
                if *h != card.hidden {
                    return Err(Error::new(format!(
                        "{h:?} differs from the model's {:?}",
                        card.hidden
                    ))
                    .flag("--hidden"));
                }
            }
            cells = genes_in_model_order(&cells, &card).at(&o.input)?;
            Some((model, card))
        }
        None => None,
    };
    let truth = match &o.truth {
        Some(path) => Some(
            impute::aligned_truth(&table::read_cells(path)?, &cells.cell_ids, &cells.gene_ids)
                .at(path)?,
        ),
        None => None,
    };
    let x = impute::scaled_values(&cells, o.scale).at(&o.input)?;
    // Provenance: the scale of the output values, and the learning rate actually used.
    if let serde_json::Value::Object(m) = &mut step.params {
        m.insert("value_scale".into(), o.scale.as_str().into());
        if o.method == Method::Late {
            m.insert("lr".into(), resolved_lr(o).into());
            m.insert("epochs".into(), resolved_epochs(o, cells.n_cells()).into());
        }
    }

    let timer = std::time::Instant::now();
    let mut dense = match o.method {
        Method::GeneMean => impute::impute_gene_mean(&x),
        Method::Knn => impute::impute_knn_smoothing(&x, o.knn, o.n_pcs).at(&o.input)?,
        Method::Late => run_late(o, &cells, &x, loaded, &dev, &step)?,
    };
    if o.only_zeros {
        impute::keep_observed(&x, &mut dense);
    }
    info!(
        "{}: {} cells x {} genes in {:.2} s",
        o.method.as_str(),
        cells.n_cells(),
        cells.n_genes(),
        timer.elapsed().as_secs_f64()
    );

    if let Some(t) = &truth {
        let to10 = |v: &[f32]| v.iter().map(|&y| o.scale.to_log10(y)).collect::<Vec<f32>>();
        let mut masked = x.clone();
        masked.data = to10(&masked.data);
        let y = to10(&dense);
        let r = impute::evaluate(&method_label(o), t, &masked, &y)?;
        let batches = (cells.batch.categories.len() >= 2)
            .then(|| (&cells.batch.codes[..], cells.batch.categories.len()));
        let d = impute::evaluate_detail(t, &masked, &y, batches)?;
        let to_json = |e: serde_json::Error| Error::new(e.to_string());
        let mut line = serde_json::to_value(&r).map_err(to_json)?;
        if let (serde_json::Value::Object(a), serde_json::Value::Object(b)) =
            (&mut line, serde_json::to_value(&d).map_err(to_json)?)
        {
            a.extend(b);
        }
        cellweave::cli::print(format_args!("{line}"));
    }

    let mut out = impute::dense_cells(&cells, dense)?;
    out.provenance.push(step);
    table::write_cells(&o.output, &out)
}

/// The method as the evaluation line names it: `late`, `translate` (with `--init`) or the
/// baseline's name, then `+batch` with `--batch-aware` and `+only-zeros` with `--only-zeros`.
fn method_label(o: &Options) -> String {
    let mut s = match (o.method, &o.init) {
        (Method::Late, Some(_)) => "translate".to_string(),
        (m, _) => m.as_str().to_string(),
    };
    if o.batch_aware {
        s.push_str("+batch");
    }
    if o.only_zeros {
        s.push_str("+only-zeros");
    }
    s
}

/// The input's genes in the model's order; an error names a gene the input lacks.
fn genes_in_model_order(cells: &CellsTable, card: &ModelCard) -> Result<CellsTable> {
    let cols = rows_of(&card.gene_ids, &cells.gene_ids).map_err(|(missing, g)| {
        Error::new(format!(
            "the model's gene '{g}' is not in the input ({missing} of the model's {} genes missing); \
             impute the same genes the model was trained on",
            card.gene_ids.len()
        ))
        .field("gene_ids")
    })?;
    if cols.len() != cells.n_genes() {
        info!(
            "using the model's {} genes of the input's {}",
            cols.len(),
            cells.n_genes()
        );
    }
    Ok(cells.select_genes(&cols))
}

/// Batch codes of the cells in the order of `categories` (a cell of an unknown batch gets
/// code `categories.len()`, an all-zero one-hot row).
fn batch_codes(
    cells: &CellsTable,
    key: &str,
    categories: Option<&[String]>,
) -> Result<(Vec<u32>, Vec<String>)> {
    let col = cells.require_column(key)?.to_categorical();
    let cats = match categories {
        Some(c) => c.to_vec(),
        None => col.categories.clone(),
    };
    let mut unknown = 0usize;
    let codes = col
        .codes
        .iter()
        .map(|&c| {
            let name = col.categories.get(c as usize);
            match name.and_then(|n| cats.iter().position(|x| x == n)) {
                Some(p) => p as u32,
                None => {
                    unknown += 1;
                    cats.len() as u32
                }
            }
        })
        .collect();
    if unknown > 0 {
        info!("warning: {unknown} cells are in batches the model was not trained on (no batch covariate for them)");
    }
    Ok((codes, cats))
}

fn run_late(
    o: &Options,
    cells: &CellsTable,
    x: &cellweave::contract::Csr,
    loaded: Option<(Late, ModelCard)>,
    dev: &candle_core::Device,
    step: &Step,
) -> Result<Vec<f32>> {
    let init_from = o.init.as_ref().map(|p| p.display().to_string());
    let (mut model, codes, batches) = match loaded {
        Some((model, card)) => {
            if o.batch_aware && card.batches.is_empty() {
                return Err(
                    Error::new("the initial model is not batch-aware").flag("--batch-aware")
                );
            }
            let (codes, batches) = if card.batches.is_empty() {
                (None, Vec::new())
            } else {
                let key = card
                    .batch_key
                    .clone()
                    .unwrap_or_else(|| o.batch_key.clone());
                let (c, b) = batch_codes(cells, &key, Some(&card.batches)).at(&o.input)?;
                (Some(c), b)
            };
            (model, codes, batches)
        }
        None => {
            let (codes, batches) = if o.batch_aware {
                let (c, b) = batch_codes(cells, &o.batch_key, None).at(&o.input)?;
                (Some(c), b)
            } else {
                (None, Vec::new())
            };
            let hidden = o.hidden.clone().unwrap_or_else(|| DEFAULT_HIDDEN.to_vec());
            let config = LateConfig::new(cells.n_genes(), hidden, batches.len());
            config.check()?;
            (Late::init(config, o.seed, dev)?, codes, batches)
        }
    };
    let opts = TrainOptions {
        epochs: resolved_epochs(o, x.n_rows()),
        patience: o.patience,
        lr: resolved_lr(o),
        batch_size: o.batch_size,
        val_fraction: o.val_fraction,
        seed: o.seed,
        ..TrainOptions::default()
    };
    if opts.epochs > 0 && x.n_rows() < 2 {
        bail!("training needs at least 2 cells");
    }
    info!(
        "LATE {:?} on {} cells x {} genes{}, lr {:.0e}, batch {}, up to {} epochs{} (patience {})",
        model.config.dims(),
        x.n_rows(),
        x.n_cols,
        if batches.is_empty() {
            String::new()
        } else {
            format!(" + {} batches", batches.len())
        },
        opts.lr,
        opts.batch_size,
        opts.epochs,
        if o.epochs.is_none() && opts.epochs < DEFAULT_EPOCHS {
            format!(" (at most --max-steps {} steps)", o.max_steps)
        } else {
            String::new()
        },
        opts.patience
    );
    let t0 = std::time::Instant::now();
    let report = train(
        &mut model,
        x,
        codes.as_deref(),
        &opts,
        o.engine,
        &mut |_| {},
    )?;
    let monitored = opts.monitored();
    let seconds = t0.elapsed().as_secs_f64();
    info!(
        "trained {} epochs in {:.1} s; best epoch {} ({} loss {:.6}){}",
        report.log.len(),
        seconds,
        report.best_epoch,
        monitored,
        report.best_val_loss,
        if report.stopped_early {
            ", stopped early"
        } else {
            ""
        }
    );
    if let Some(path) = &o.log {
        write_log(
            path,
            &report.log,
            report.n_train.div_ceil(opts.batch_size),
            opts.lr,
            step,
        )?;
    }
    if let Some(dir) = &o.model_out {
        let card = ModelCard {
            model: "late".into(),
            card_version: 1,
            cellweave_version: cellweave::VERSION.into(),
            scale: o.scale.as_str().into(),
            gene_ids: cells.gene_ids.clone(),
            hidden: model.config.hidden.clone(),
            keep_input: model.config.keep_input,
            keep_hidden: model.config.keep_hidden,
            batches: batches.clone(),
            batch_key: (!batches.is_empty()).then(|| o.batch_key.clone()),
            activation: "relu on every layer, the output too".into(),
            weight_layout: "layers.{l}.weight is out x in (y = relu(x W^T + b)); on a batch-aware model \
                            the one-hot batch columns come last on layer 0 and on the first decoder layer"
                .into(),
            training: TrainSummary {
                init_from,
                seed: o.seed,
                lr: opts.lr,
                batch_size: opts.batch_size,
                n_train: report.n_train,
                n_val: report.n_val,
                epochs_run: report.log.len(),
                best_epoch: report.best_epoch,
                best_val_loss: report.best_val_loss,
                stopped_early: report.stopped_early,
                seconds,
            },
        };
        atomic::write_dir(dir, |tmp| model.save(tmp, &card))?;
    }
    model.impute(x, codes.as_deref(), 2048)
}

/// The training log as a table (`.tsv`, `.arrow` or `.parquet`).
fn write_log(path: &Path, log: &[EpochLog], steps: usize, lr: f64, step: &Step) -> Result<()> {
    let f = LogTable::new("late", log)
        .count("epoch", |e| e.epoch)
        .count("steps", |_| steps)
        .value("train_loss", |e| e.train_loss)
        .value("val_loss", |e| e.val_loss)
        .flag("best", |e| e.best)
        .value("lr", |_| lr)
        .value("seconds", |e| e.seconds)
        .finish(None, step);
    crate::engine::write_log(path, &f)
}
