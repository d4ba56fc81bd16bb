//! What `cellweave-train --model scetm` and `cellweave-embed` do with a scETM model.

use cellweave::contract::{
    CellsTable, Column, Csr, EmbeddingTable, Frame, Step, TableKind, ValueKind,
};
use cellweave::io::rows::Rows;
use cellweave::io::{atomic, table};
use cellweave::{info, Error, Result, ResultExt};
use std::path::Path;

use super::network::{Network, Shape};
use super::train::{self, default_epochs, CorrectedAs, Data, ScetmParams, Trainer};
use crate::claire::model::{align_gene_lists, aligned_matrix};
use crate::command::{EmbedRun, TrainRun};
use crate::engine::card::{Genes, Head};
use crate::engine::checkpoint::load_tensors;
use crate::engine::finish::Finish;
use crate::{CandleExt, ModelKind};

pub use crate::engine::finish::{TRAINING_LOG, WEIGHTS};
/// The genes table's file name in the model directory.
pub const GENES: &str = "genes.arrow";
/// The model card format version.
pub const CARD_VERSION: u32 = 1;

/// Which cell embedding scETM gives.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Embed {
    /// mu, the posterior mean of the unnormalized topic mixture delta (scETM's
    /// clustering input)
    #[default]
    Mu,
    /// theta = softmax(mu), the topic proportions
    Theta,
}

/// scETM's own flags of `cellweave-train` (the shared ones are [`crate::command::Hyper`]:
/// --epochs (automatic: [`default_epochs`], 6,000 steps), --lr 5e-3, --batch-size 2000, --dropout 0.1, --latent = --topics; no
/// weight decay).
#[derive(clap::Args, serde::Serialize, serde::Deserialize, Debug, Clone)]
#[command(next_help_heading = "scETM options (--model scetm; needs --counts)")]
pub struct ScetmArgs {
    /// Topics K, the embedding's dimensions [default: --latent, else 50]
    #[arg(value_parser = cellweave::cli::range::at_least_1, long, value_name = "K")]
    pub topics: Option<usize>,
    /// Dimensions L of the gene and topic embeddings rho and alpha (at least 1)
    #[arg(value_parser = cellweave::cli::range::at_least_1, long,
          default_value_t = ScetmParams::default().emb_dim, value_name = "L")]
    pub gene_embedding_dim: usize,
    /// Without scETM's per-batch decoder bias lambda_s (on by default)
    #[arg(long)]
    pub no_batch_bias: bool,
    /// Cell embedding written: mu (posterior mean of delta) or theta (topic proportions)
    #[arg(long, value_enum, default_value_t = Embed::default())]
    pub embed: Embed,
    /// Largest KL weight, reached linearly over the first third of the epochs (>= 0)
    #[arg(value_parser = cellweave::cli::range::non_negative::<f64>, long,
          default_value_t = ScetmParams::default().max_kl_weight, value_name = "W")]
    pub max_kl_weight: f64,
    /// Also write the genes table (gene embedding rho_0.., topic-gene matrix topic_0..;
    /// the model directory always holds it as genes.arrow)
    #[arg(long, value_name = "GENES")]
    pub genes_out: Option<std::path::PathBuf>,
    /// How a corrected cells table (deepMNN's --corrected output: the batch-corrected
    /// scETM's stage 2) is read: log1p (its values, negatives as 0) or expm1 (pseudo-counts)
    /// [default: log1p; only for corrected cells]
    #[arg(long, value_enum, value_name = "HOW")]
    pub corrected_as: Option<CorrectedAs>,
}

impl ScetmArgs {
    /// The run's parameters: the shared flags (each `None` takes scETM's default) and
    /// scETM's own.
    pub fn params(&self, run: &TrainRun) -> Result<ScetmParams> {
        let d = ScetmParams::default();
        let h = &run.hyper;
        if let (Some(t), Some(l)) = (self.topics, h.latent) {
            if t != l {
                return Err(Error::new(format!(
                    "--topics {t} and --latent {l} disagree (scETM's embedding has one dimension per topic)"
                ))
                .field("topics"));
            }
        }
        if h.weight_decay.is_some_and(|w| w != 0.0) {
            return Err(Error::new("scETM trains without weight decay").field("weight-decay"));
        }
        Ok(ScetmParams {
            epochs: h.epochs.unwrap_or(d.epochs),
            batch_size: h.batch_size.unwrap_or(d.batch_size),
            lr: h.lr.unwrap_or(d.lr),
            topics: self.topics.or(h.latent).unwrap_or(d.topics),
            emb_dim: self.gene_embedding_dim,
            dropout: h.dropout.unwrap_or(d.dropout),
            max_kl_weight: self.max_kl_weight,
            batch_bias: !self.no_batch_bias,
            seed: run.seed,
            ..d
        })
    }
}

/// The model card.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Card {
    /// `model: scetm`, the card version, the cellweave version.
    #[serde(flatten)]
    pub head: Head,
    /// The network's shape.
    pub shape: Shape,
    /// Batches of the batch bias rows, in order (empty without a bias).
    pub batches: Vec<String>,
    /// Scale the inputs must be on: raw counts, or (the batch-corrected scETM's stage 2)
    /// corrected values, read as `hyperparameters.corrected_as` says ([`corrected_weights`]).
    pub values: ValueKind,
    /// The genes it models.
    #[serde(flatten)]
    pub genes: Genes,
    /// The cell embedding it gives.
    pub embed: Embed,
    /// Every resolved parameter.
    pub hyperparameters: ScetmParams,
    /// How the training went.
    pub training: Summary,
}

/// The `training:` section of a scETM card: the cells and how the run went.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Training cells.
    pub cells: usize,
    /// Fingerprint of the training cells.
    pub cells_fingerprint: String,
    /// Global epochs done.
    pub epochs: usize,
    /// Optimiser steps done.
    pub steps: u64,
    /// The last epoch's loss.
    pub final_loss: f64,
    /// Seconds of training.
    pub seconds: f64,
    /// The device it was trained on.
    pub device: String,
}

/// Refuse values that are not raw counts: the declared kind, then the values.
pub fn check_counts(x: &Csr, values: ValueKind, path: &Path) -> Result<()> {
    if values != ValueKind::Counts {
        return Err(Error::new(format!(
            "holds {} values; scETM models raw counts (give the cellweave-filter output)",
            values.as_str()
        ))
        .file(path)
        .field("values"));
    }
    if let Some(v) = x
        .data
        .iter()
        .find(|v| !(v.is_finite() && **v >= 0.0 && v.fract() == 0.0))
    {
        return Err(Error::new(format!(
            "holds the value {v}, not a count (raw counts are non-negative integers)"
        ))
        .file(path)
        .field("values"));
    }
    Ok(())
}

/// Total of every cell's weights read from a corrected table ([`corrected_weights`]).
pub const PSEUDO_LIBRARY: f64 = 1e4;

/// The weights scETM models for corrected expression on the log1p scale (deepMNN's
/// `--corrected` output, the batch-corrected scETM's stage 2 input), each cell rescaled to a
/// total of [`PSEUDO_LIBRARY`] (in float64); a value below the log1p zero (deepMNN's output
/// can be negative) counts as none:
/// - [`CorrectedAs::Log1p`] (the default): `max(v, 0)`, the corrected values themselves, as
///   the batch-corrected scETM report's scETM reads deepMNN's output;
/// - [`CorrectedAs::Expm1`]: the pseudo-counts `expm1(max(v, 0))`. deepMNN constrains its
///   output only on the principal axes of its pair term (the identity term weighs 0.001), so
///   off them corrected values leave the data's range (cellbench_3tech, 20 epochs: -26 to
///   38 against 0 to 8 in the input), and expm1 turns one such gene into most of its cell
///   (median largest share of a cell 0.82-0.87, against 0.064 for the input's
///   `expm1(log1p)`; 0.013 for the log1p reading, 0.007 in the input).
///
/// scETM reads a cell only through `x / library` (its encoder's input and the weights of
/// its likelihood terms), so the rescaling changes nothing but keeps a cell finite whatever
/// its corrected values (a value above 88 would overflow float32 after expm1).
pub fn corrected_weights(x: &dyn Rows, path: &Path, how: CorrectedAs) -> Result<Csr> {
    let values = || (0..x.n_rows()).flat_map(|r| x.row(r).1);
    if let Some(v) = values().find(|v| !v.is_finite()) {
        return Err(Error::new(format!(
            "holds the value {v}, not a corrected expression value"
        ))
        .file(path)
        .field("values"));
    }
    let weight = |v: f32| {
        let v = v.max(0.0) as f64;
        match how {
            CorrectedAs::Log1p => v,
            CorrectedAs::Expm1 => v.exp_m1(),
        }
    };
    let mut out = Csr::empty(x.n_cols());
    for r in 0..x.n_rows() {
        let (idx, val) = x.row(r);
        let row: Vec<f64> = val.iter().map(|&v| weight(v)).collect();
        let total: f64 = row.iter().sum();
        let scale = if total > 0.0 {
            PSEUDO_LIBRARY / total
        } else {
            0.0
        };
        out.indices.extend_from_slice(idx);
        out.data.extend(row.iter().map(|v| (v * scale) as f32));
        out.indptr.push(out.indices.len() as u64);
    }
    Ok(out)
}

/// How a scETM model of `values` read corrected cells: its card's choice, or, for a card
/// that predates the choice, [`CorrectedAs::Expm1`] (what every such model read).
pub fn reading(params: &ScetmParams) -> CorrectedAs {
    params.corrected_as.unwrap_or(CorrectedAs::Expm1)
}

/// scETM's input: the raw counts of `--counts` (matched to the cells and genes of the
/// cells table), or, for the batch-corrected scETM, the weights of a corrected cells table
/// given as the cells table itself, read as `how` says ([`corrected_weights`]).
fn input(
    run: &TrainRun,
    cells: &CellsTable,
    x: &dyn Rows,
    how: Option<CorrectedAs>,
) -> Result<(Csr, ValueKind)> {
    if cells.values == ValueKind::Corrected {
        if run.counts.is_some() {
            return Err(Error::new(
                "the cells table holds corrected values, which scETM reads itself (the batch-corrected scETM): leave out --counts",
            )
            .flag("--counts"));
        }
        let how = how.unwrap_or_default();
        return Ok((corrected_weights(x, &run.cells, how)?, ValueKind::Corrected));
    }
    if how.is_some() {
        return Err(Error::new(format!(
            "is for a cells table of corrected values (deepMNN's --corrected output); {} holds {} values",
            run.cells.display(),
            cells.values.as_str()
        ))
        .flag("--corrected-as"));
    }
    let counts_path = run.require_counts(ModelKind::Scetm)?;
    let (counts, values) = cellweave::convert::export::read_aligned_counts(
        &cells.cell_ids,
        &cells.gene_ids,
        counts_path,
    )?;
    check_counts(&counts, values, counts_path)?;
    Ok((counts, ValueKind::Counts))
}

/// The name of the embedding of a scETM of `values`: `scetm` on counts, `bcscetm` (the
/// batch-corrected scETM) on corrected values.
pub fn embedding_name(values: ValueKind) -> &'static str {
    if values == ValueKind::Corrected {
        "bcscetm"
    } else {
        "scetm"
    }
}

/// The batch of every cell (`key`), as codes and names.
fn batches(cells: &CellsTable, key: &str, path: &Path) -> Result<(Vec<u32>, Vec<String>)> {
    let cat = if key == "batch" {
        cells.batch.clone()
    } else {
        cellweave::integrate::pairs::labels(cells, key)
            .ok_or_else(|| Error::new("no such per-cell column").file(path).field(key))?
    };
    if let Some(r) = cat
        .codes
        .iter()
        .position(|&c| c == cellweave::contract::Categorical::MISSING)
    {
        return Err(
            Error::new(format!("cell '{}' has no batch", cells.cell_ids[r]))
                .file(path)
                .field(key),
        );
    }
    Ok((cat.codes, cat.categories))
}

/// The genes table: ids, names, rho (`rho_0..`) and alpha rho (`topic_0..`) per gene.
fn genes_frame(net: &Network, cells: &CellsTable, step: &Step) -> Result<Frame> {
    let host = |t: &candle_core::Tensor| -> Result<(Vec<f32>, usize)> {
        let t = t.to_device(&candle_core::Device::Cpu).ce()?;
        let rows = t.dim(0).ce()?;
        Ok((t.flatten_all().ce()?.to_vec1::<f32>().ce()?, rows))
    };
    let g = cells.n_genes();
    let strs = |v: &[String]| Column::Str(v.iter().cloned().map(Some).collect());
    let mut f = Frame::new(TableKind::Genes)
        .with("gene_id", strs(&cells.gene_ids))
        .with("gene_name", strs(&cells.gene_names));
    for (prefix, (m, rows)) in [
        ("rho", host(net.rho())?),
        ("topic", host(&net.beta().ce()?)?),
    ] {
        for r in 0..rows {
            f = f.with(
                &format!("{prefix}_{r}"),
                Column::F32(m[r * g..(r + 1) * g].to_vec()),
            );
        }
    }
    f.meta.insert("cellweave.model".into(), "scetm".into());
    f.provenance = cells.provenance.clone();
    f.provenance.push(step.clone());
    Ok(f)
}

/// Train scETM and write the model directory, the embedding, the log and the genes table.
pub fn train(run: &TrainRun, args: &ScetmArgs, step: &Step) -> Result<()> {
    if run.init.is_some() {
        return Err(
            Error::new("scetm does not continue another model directory (use --resume)")
                .field("init"),
        );
    }
    let params = args.params(run)?;
    params.validate()?;
    run.check_outputs(&run.inputs(), &[args.genes_out.as_deref()])?;
    let device = crate::device(&run.device)?;
    // The rows stay in the memory-mapped file when it is one (a cellweave Arrow table):
    // scETM reads only the corrected values' weights from them, or none (--counts).
    let input_rows = cellweave::io::rows::read_cells_rows(&run.cells)?;
    let cells = &input_rows.cells;
    if cells.n_genes() == 0 {
        return Err(Error::new("no genes").file(&run.cells));
    }
    let (counts, values) = input(run, cells, input_rows.x(), args.corrected_as)?;
    let (codes, batch_names) = batches(cells, &run.batch_key, &run.cells)?;
    let data = Data::new(counts, codes, batch_names.len());
    let mut params = params;
    params.corrected_as =
        (values == ValueKind::Corrected).then(|| args.corrected_as.unwrap_or_default());
    if run.hyper.epochs.is_none() {
        params.epochs = default_epochs(cells.n_cells(), params.batch_size);
    }
    run.clean_stale()?;
    let mut t = Trainer::new(
        &data,
        params.clone(),
        cells.fingerprint(),
        &run.model_dir,
        run.resume,
        device.clone(),
    )?;
    info!(
        "scetm: {} cells x {} genes{}, {} batches{}, {} topics; epochs {}..{} of {} minibatch(es)",
        cells.n_cells(),
        cells.n_genes(),
        match params.corrected_as {
            Some(CorrectedAs::Log1p) => " (corrected values, read as log1p weights)",
            Some(CorrectedAs::Expm1) => " (corrected values, read as pseudo-counts)",
            None => "",
        },
        batch_names.len(),
        if t.net.shape.bias_batches > 0 {
            " (batch bias)"
        } else {
            ""
        },
        params.topics,
        t.progress.epoch + 1,
        t.progress.end_epoch,
        train::parts(cells.n_cells(), params.batch_size).len() - 1
    );
    if !t.run(run.checkpoint_every, run.stop_after)? {
        return Err(crate::engine::stopped_as_asked(t.progress.epoch));
    }
    let mu = t.embed_mu()?;
    let data_emb = match args.embed {
        Embed::Mu => mu,
        Embed::Theta => train::softmax_rows(&mu, params.topics),
    };
    let name = embedding_name(values);
    let emb = EmbeddingTable::of_cells(cells, name, params.topics, data_emb, step);
    let genes = genes_frame(&t.net, cells, step)?;
    let card = Card {
        head: Head::of::<Card>(),
        shape: t.net.shape,
        batches: if t.net.shape.bias_batches > 0 {
            batch_names
        } else {
            Vec::new()
        },
        values,
        genes: Genes::of(cells),
        embed: args.embed,
        hyperparameters: params,
        training: Summary {
            cells: cells.n_cells(),
            cells_fingerprint: cells.fingerprint(),
            epochs: t.progress.epoch,
            steps: t.progress.steps,
            final_loss: t.progress.final_loss(),
            seconds: t.progress.seconds,
            device: format!("{:?}", device.location()),
        },
    };
    // Assembled beside its place, renamed into it once every other output is written.
    let log = t.log_frame(step);
    Finish {
        model: "scetm",
        model_dir: &run.model_dir,
        checkpoints: t.checkpoints(),
        weights: Some(&t.net.named().ce()?),
        log: &log,
        log_out: run.log.as_deref(),
        embeddings: vec![(&run.embedding, emb)],
        progress: &t.progress,
        note: "",
        final_loss: card.training.final_loss,
    }
    .write(
        &card,
        |staged| t.write_state(staged),
        |staged| table::write_frame(&staged.join(GENES), &genes),
        || match &args.genes_out {
            Some(g) => crate::engine::write_log(g, &genes),
            None => Ok(()),
        },
    )
}

crate::engine::card::model_card!(Card: head, genes; "scetm", "scETM", CARD_VERSION, shape);

/// Load a scETM model directory: its card and network.
pub fn load(dir: &Path, device: &candle_core::Device) -> Result<(Card, Network)> {
    let card: Card = crate::engine::card::read(dir)?;
    let wpath = dir.join(WEIGHTS);
    let net = Network::from_named(&load_tensors(&wpath)?, card.shape, device)
        .ce()
        .at(&wpath)?;
    Ok((card, net))
}

/// The embedding (the card's mu or theta) of the cells of `x` (the model's genes: counts,
/// or the weights of corrected values for a model of them, [`corrected_weights`]).
pub fn embed_values(
    card: &Card,
    net: &Network,
    x: Csr,
    device: &candle_core::Device,
) -> Result<Vec<f32>> {
    let n = x.n_rows();
    let data = Data::new(x, vec![0; n], 1);
    let mu = train::embed_rows(net, &data, device)?;
    Ok(match card.embed {
        Embed::Mu => mu,
        Embed::Theta => train::softmax_rows(&mu, card.shape.topics),
    })
}

/// Embed a cells table with a saved scETM model: raw counts, or corrected values for a
/// model trained on them (the encoder reads no batch: cells of any batch, seen or not).
pub fn embed(run: &EmbedRun, step: &Step) -> Result<()> {
    atomic::check_not_input(&run.output, &[run.cells.as_path()])?;
    let device = crate::device(&run.device)?;
    let (card, net) = load(&run.model_dir, &device)?;
    let cells = table::read_cells(&run.cells)?;
    let a = align_gene_lists(&card.genes.gene_ids, &card.genes.gene_names, &cells);
    if a.missing as f64 > run.max_missing * card.genes.n_genes as f64 {
        return Err(Error::new(format!(
            "{} of the model's {} genes are missing (more than {:.0}%; matched by {})",
            a.missing,
            card.genes.n_genes,
            run.max_missing * 100.0,
            a.by
        ))
        .file(&run.cells)
        .field("genes"));
    }
    let x = aligned_matrix(&cells, &a);
    let x = if card.values == ValueKind::Corrected {
        if cells.values != ValueKind::Corrected {
            return Err(Error::new(format!(
                "holds {} values; this scETM was trained on corrected values (give deepMNN-corrected cells, or embed with the bcscetm model)",
                cells.values.as_str()
            ))
            .file(&run.cells)
            .field("values"));
        }
        corrected_weights(&x, &run.cells, reading(&card.hyperparameters))?
    } else {
        check_counts(&x, cells.values, &run.cells)?;
        x
    };
    let n = cells.n_cells();
    let values = embed_values(&card, &net, x, &device)?;
    let k = card.shape.topics;
    table::write_embedding(
        &run.output,
        &EmbeddingTable::of_cells(&cells, embedding_name(card.values), k, values, step),
    )?;
    info!(
        "embedded {n} cells with scETM {} into {}",
        run.model_dir.display(),
        run.output.display()
    );
    Ok(())
}
