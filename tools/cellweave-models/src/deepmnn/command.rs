//! What `cellweave-train --model deepmnn` and `cellweave-embed` do with a deepMNN model.

use candle_core::{Device, Tensor};
use cellweave::contract::{
    CellsTable, Column, Csr, EmbeddingTable, PairKind, PairsTable, Step, ValueKind,
};
use cellweave::integrate::deepmnn::Scaling;
use cellweave::io::rows::{read_cells_rows, Rows};
use cellweave::io::{atomic, table};
use cellweave::numerics::pca::{pca_with, Solver};
use cellweave::{info, Error, Result, ResultExt};
use std::collections::HashMap;
use std::path::Path;

use super::autoencoder::AeParams;
use super::network::{Network, Shape};
use super::train::{self, Cells, Data, DeepmnnParams, PairInput, PairSpaceKind, Trainer};
use crate::command::{EmbedRun, TrainRun};
use crate::engine::card::{Genes, Head};
use crate::engine::checkpoint::load_tensors;
use crate::engine::finish::Finish;
use crate::{CandleExt, ModelKind};

pub use crate::engine::finish::{TRAINING_LOG, WEIGHTS};
/// The model card format version.
pub const CARD_VERSION: u32 = 1;
/// Default principal components of the embedding (`--latent`).
pub const EMBEDDING_PCS: usize = 50;

/// deepMNN's own flags of `cellweave-train` (the shared ones are [`crate::command::Hyper`]:
/// --epochs 200 at most (fewer above 30,720 pairs: at most 6,000 steps), --lr 0.1, --batch-size 1024 pairs, --weight-decay 1e-4, --latent
/// 50 principal components of the corrected values; no dropout).
#[derive(clap::Args, serde::Serialize, serde::Deserialize, Debug, Clone)]
#[command(next_help_heading = "deepMNN options (--model deepmnn; needs --pairs)")]
pub struct DeepmnnArgs {
    /// Residual blocks on the gene space (at least 1)
    #[arg(value_parser = cellweave::cli::range::at_least_1, long,
          default_value_t = DeepmnnParams::default().blocks, value_name = "N")]
    pub blocks: usize,
    /// Where the pair term compares the two corrected cells of a pair: pcs (deepMNN, and the
    /// default of --model bcscetm) or autoencoder (the batch-corrected scETM report's form:
    /// the codes of an autoencoder pre-trained on the log1p values, then frozen; with its
    /// weights 0.1 / 0.99 stage 1 stays near the identity, docs/models.md) [default: pcs]
    #[arg(long, value_enum, value_name = "SPACE")]
    pub pair_space: Option<PairSpaceKind>,
    /// Weight of the L1 pair term (>= 0) [default: 1; autoencoder pair space: 0.1]
    #[arg(value_parser = cellweave::cli::range::non_negative::<f64>, long, value_name = "W")]
    pub pair_weight: Option<f64>,
    /// Weight of the L1 identity term (corrected cell to its input) (>= 0) [default: 0.001;
    /// autoencoder pair space: 0.99]
    #[arg(value_parser = cellweave::cli::range::non_negative::<f64>, long, value_name = "W")]
    pub identity_weight: Option<f64>,
    /// Units of the autoencoder's code (at least 1; --pair-space autoencoder) [default: 50]
    #[arg(value_parser = cellweave::cli::range::at_least_1, long, value_name = "N")]
    pub ae_latent: Option<usize>,
    /// Epochs of the autoencoder's pre-training (at least 1; --pair-space autoencoder)
    /// [default: 100]
    #[arg(value_parser = cellweave::cli::range::at_least_1, long, value_name = "N")]
    pub ae_epochs: Option<usize>,
    /// Adam learning rate of the autoencoder's pre-training (> 0; --pair-space autoencoder)
    /// [default: 0.001]
    #[arg(value_parser = cellweave::cli::range::positive::<f64>, long, value_name = "LR")]
    pub ae_lr: Option<f64>,
    /// Cells per minibatch of the autoencoder's pre-training (at least 2; --pair-space
    /// autoencoder) [default: 128]
    #[arg(value_parser = cellweave::cli::range::at_least_2, long, value_name = "N")]
    pub ae_batch_size: Option<usize>,
    /// Principal components the pair term compares the corrected cells on (at least 1)
    #[arg(value_parser = cellweave::cli::range::at_least_1, long,
          default_value_t = DeepmnnParams::default().projection_pcs, value_name = "N")]
    pub projection_pcs: usize,
    /// Stop after this many epochs without an improvement of the epoch loss (0: never)
    #[arg(long, default_value_t = DeepmnnParams::default().patience, value_name = "N")]
    pub patience: usize,
    /// Smallest decrease of the epoch loss that counts as an improvement (>= 0)
    #[arg(value_parser = cellweave::cli::range::non_negative::<f64>, long,
          default_value_t = DeepmnnParams::default().min_improvement, value_name = "D")]
    pub min_improvement: f64,
    /// Also write the corrected expression as a cells table (values: corrected, on the
    /// input's log1p scale; the model's genes)
    #[arg(long, value_name = "CELLS")]
    pub corrected: Option<std::path::PathBuf>,
}

impl DeepmnnArgs {
    /// The run's parameters: the shared flags (each `None` takes deepMNN's default) and
    /// deepMNN's own.
    pub fn params(&self, run: &TrainRun) -> Result<DeepmnnParams> {
        let d = DeepmnnParams::default();
        let h = &run.hyper;
        if h.dropout.is_some() {
            return Err(Error::new("deepMNN has no dropout").flag("--dropout"));
        }
        let space = self.pair_space.unwrap_or_default();
        let (alpha, beta) = space.weights();
        let ae_flags = [
            self.ae_latent.is_some(),
            self.ae_epochs.is_some(),
            self.ae_lr.is_some(),
            self.ae_batch_size.is_some(),
        ];
        let a = AeParams::default();
        let autoencoder = match space {
            PairSpaceKind::Autoencoder => Some(AeParams {
                latent: self.ae_latent.unwrap_or(a.latent),
                epochs: self.ae_epochs.unwrap_or(a.epochs),
                lr: self.ae_lr.unwrap_or(a.lr),
                batch_size: self.ae_batch_size.unwrap_or(a.batch_size),
            }),
            PairSpaceKind::Pcs if ae_flags.contains(&true) => {
                return Err(Error::new(
                    "the --ae-* flags shape the autoencoder of --pair-space autoencoder",
                )
                .flag("--pair-space"))
            }
            PairSpaceKind::Pcs => None,
        };
        Ok(DeepmnnParams {
            epochs: h.epochs.unwrap_or(d.epochs),
            batch_size: h.batch_size.unwrap_or(d.batch_size),
            lr: h.lr.unwrap_or(d.lr),
            weight_decay: h.weight_decay.unwrap_or(d.weight_decay),
            patience: self.patience,
            min_improvement: self.min_improvement,
            blocks: self.blocks,
            pair_space: space,
            pair_weight: self.pair_weight.unwrap_or(alpha),
            identity_weight: self.identity_weight.unwrap_or(beta),
            projection_pcs: self.projection_pcs,
            autoencoder,
            seed: run.seed,
            ..d
        })
    }
}

/// The model card.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Card {
    /// `model: deepmnn`, the card version, the cellweave version.
    #[serde(flatten)]
    pub head: Head,
    /// The network's shape.
    pub shape: Shape,
    /// The batches the model corrects (cells of other batches are refused).
    pub batches: Vec<String>,
    /// Scale the inputs must be on.
    pub values: ValueKind,
    /// The genes it corrects.
    #[serde(flatten)]
    pub genes: Genes,
    /// Principal components of the embedding (PCA of the corrected training cells).
    pub embedding_pcs: usize,
    /// Every resolved parameter.
    pub hyperparameters: DeepmnnParams,
    /// How the training went.
    pub training: Summary,
}

/// The `training:` section of a deepMNN card: the cells, the pairs and how the run went.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Training cells.
    pub cells: usize,
    /// Fingerprint of the training cells.
    pub cells_fingerprint: String,
    /// Mutual-neighbour pairs trained on.
    pub pairs: usize,
    /// The pairs' definition (`deepmnn`, or the CLAIRE pairs' `cca`/`pca` seeds).
    pub pairs_definition: String,
    /// Global epochs done.
    pub epochs: usize,
    /// Whether the plateau rule ended the run.
    pub stopped_early: bool,
    /// The autoencoder pair space: the autoencoder's mean squared error after its last
    /// pre-training epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoencoder_mse: Option<f64>,
    /// Optimiser steps done.
    pub steps: u64,
    /// The last epoch's loss.
    pub final_loss: f64,
    /// Seconds of training.
    pub seconds: f64,
    /// The device it was trained on.
    pub device: String,
}

/// Refuse values deepMNN cannot correct: it works on log-normalized expression.
pub fn check_values(values: ValueKind, path: &Path) -> Result<()> {
    if values != ValueKind::Log1p && values != ValueKind::Normalized {
        return Err(Error::new(format!(
            "holds {} values; deepMNN corrects log-normalized expression (the cellweave-hvg output)",
            values.as_str()
        ))
        .file(path)
        .field("values"));
    }
    Ok(())
}

/// The definition the pairs were made with (the last cellweave-pairs step's
/// `definition`, `space` for CLAIRE's).
fn pairs_definition(p: &PairsTable) -> String {
    let step = p
        .provenance
        .iter()
        .rev()
        .find(|s| s.tool == "cellweave-pairs");
    let get = |k: &str| {
        step.and_then(|s| s.params.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    get("definition")
        .filter(|d| d != "claire")
        .or_else(|| get("space"))
        .unwrap_or_else(|| "unknown".into())
}

/// The mutual-neighbour rows of a pairs table, as cell pairs.
fn seed_pairs(p: &PairsTable) -> Vec<(u32, u32)> {
    (0..p.len())
        .filter(|&r| p.kind[r] == PairKind::Mnn)
        .map(|r| (p.i[r], p.j[r]))
        .collect()
}

/// `g x k` axes (the transposed PCA components).
fn axes(components: &[f32], k: usize, g: usize) -> Vec<f32> {
    let mut out = vec![0f32; g * k];
    for c in 0..k {
        for j in 0..g {
            out[j * k + c] = components[c * g + j];
        }
    }
    out
}

/// Scores of centred rows on stored axes: `(x - mean) components^T`.
fn project(x: &[f32], g: usize, mean: &[f32], components: &[f32], k: usize) -> Vec<f32> {
    let n = x.len() / g.max(1);
    let mut out = vec![0f32; n * k];
    for r in 0..n {
        let row = &x[r * g..(r + 1) * g];
        for c in 0..k {
            let comp = &components[c * g..(c + 1) * g];
            let mut s = 0f64;
            for j in 0..g {
                s += ((row[j] - mean[j]) * comp[j]) as f64;
            }
            out[r * k + c] = s as f32;
        }
    }
    out
}

fn host_tensor(v: &[f32], dims: &[usize]) -> Result<Tensor> {
    Tensor::from_vec(v.to_vec(), dims, &Device::Cpu).ce()
}

fn host_vec(t: &HashMap<String, Tensor>, name: &str, len: usize, path: &Path) -> Result<Vec<f32>> {
    let x = t
        .get(name)
        .ok_or_else(|| Error::new(format!("missing tensor '{name}'")).file(path))?;
    let v = x.flatten_all().ce()?.to_vec1::<f32>().ce()?;
    if v.len() != len {
        return Err(Error::new(format!(
            "tensor '{name}' has {} values, expected {len}",
            v.len()
        ))
        .file(path));
    }
    Ok(v)
}

/// Cells per record batch of the corrected cells table.
const WRITE_CHUNK: usize = 8192;

/// Write the corrected values (input scale, `n x g`) as a cells table (`values:
/// corrected`), a record batch of [`WRITE_CHUNK`] cells at a time: only one chunk's
/// sparse copy is held, not the whole table's.
fn write_corrected(path: &Path, cells: &CellsTable, values: &[f32], step: &Step) -> Result<()> {
    let (n, g) = (cells.n_cells(), cells.n_genes());
    let mut provenance = cells.provenance.clone();
    provenance.push(step.clone());
    let obs = |rows: &[usize]| -> Vec<(String, Column)> {
        cells
            .obs
            .iter()
            .map(|(k, c)| (k.clone(), c.select(rows)))
            .collect()
    };
    let header = CellsTable {
        cell_ids: Vec::new(),
        batch: cells.batch.select(&[]),
        obs: obs(&[]),
        gene_ids: cells.gene_ids.clone(),
        gene_names: cells.gene_names.clone(),
        x: Csr::empty(g),
        values: ValueKind::Corrected,
        provenance,
    };
    table::write_cells_streaming(path, &header, n, &cells.fingerprint(), |put| {
        for a in (0..n).step_by(WRITE_CHUNK) {
            let b = (a + WRITE_CHUNK).min(n);
            let rows: Vec<usize> = (a..b).collect();
            let chunk = CellsTable {
                cell_ids: cells.cell_ids[a..b].to_vec(),
                batch: cells.batch.select(&rows),
                obs: obs(&rows),
                x: Csr::from_dense(b - a, g, &values[a * g..b * g]),
                ..header.clone()
            };
            put(&chunk)?;
        }
        Ok(())
    })
}

/// Train deepMNN and write the model directory, the embedding, the log and (when asked)
/// the corrected cells table.
pub fn train(run: &TrainRun, args: &DeepmnnArgs, step: &Step) -> Result<()> {
    let pairs_path = run.require_pairs(ModelKind::Deepmnn)?;
    if run.init.is_some() {
        return Err(
            Error::new("deepmnn does not continue another model directory (use --resume)")
                .flag("--init"),
        );
    }
    if run.batch_key != "batch" {
        return Err(Error::new(
            "deepMNN corrects the batches its pairs join (the cells table's batch column)",
        )
        .flag("--batch-key"));
    }
    let mut params = args.params(run)?;
    params.validate()?;
    let emb_pcs = run.hyper.latent.unwrap_or(EMBEDDING_PCS);
    run.check_outputs(&run.inputs(), &[args.corrected.as_deref()])?;
    let device = crate::device(&run.device)?;
    // The rows stay in the (memory-mapped) table: they are z-scored when a minibatch or a
    // chunk of the final correction reads them.
    let input = read_cells_rows(&run.cells)?;
    let (cells, x) = (&input.cells, input.x());
    check_values(cells.values, &run.cells)?;
    if cells.n_genes() == 0 {
        return Err(Error::new("no genes").file(&run.cells));
    }
    let pairs = table::read_pairs(pairs_path)?;
    pairs.check_cells(&cells.fingerprint()).at(pairs_path)?;
    let definition = pairs_definition(&pairs);
    if definition != "deepmnn" {
        info!(
            "warning: {}: pairs made with '{definition}', not deepMNN's definition (cellweave-pairs --definition deepmnn)",
            pairs_path.display()
        );
    }
    let seeds = seed_pairs(&pairs);
    if seeds.is_empty() {
        return Err(Error::new(
            "no mutual-neighbour pairs (no batch pair reached --deepmnn-min-fraction?)",
        )
        .file(pairs_path)
        .field("kind"));
    }
    if run.hyper.epochs.is_none() {
        params.epochs = train::default_epochs(seeds.len(), params.batch_size);
    }
    let (n, g) = (cells.n_cells(), cells.n_genes());
    let scaling = Scaling::fit_rows(x);
    let all: Vec<usize> = (0..n).collect();
    let pair_input = match params.pair_space {
        PairSpaceKind::Pcs => {
            // The projection's PCA (`deepmnn::space`'s, bit for bit) still reads a dense
            // copy of the scaled values, dropped before the training starts.
            let mut scaled = x.to_dense_rows(&all);
            scaling.apply(&mut scaled);
            let pca = pca_with(
                &scaled,
                n,
                g,
                params.projection_pcs,
                params.seed,
                Solver::Auto,
            );
            drop(scaled);
            PairInput::Axes {
                pcs: axes(&pca.components, pca.k, g),
                k: pca.k,
            }
        }
        PairSpaceKind::Autoencoder => PairInput::Autoencoder {
            log1p: x.to_dense_rows(&all),
            scaling: scaling.clone(),
        },
    };
    drop(all);
    let data = Data {
        x: Cells::Rows {
            rows: x,
            scaling: scaling.clone(),
        },
        g,
        pairs: seeds,
        pair_input,
    };
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
        "deepmnn: {} cells x {} genes {}, {} batches, {} pairs ({definition}), pair space {}; epochs {}..{} (at most) of {} minibatch(es)",
        cells.n_cells(),
        g,
        if input.is_mapped() {
            "(rows read from the mapped file)"
        } else {
            "(rows in memory)"
        },
        cells.batch.categories.len(),
        data.pairs.len(),
        match params.pair_space {
            PairSpaceKind::Pcs => format!("{} principal axes", params.projection_pcs),
            PairSpaceKind::Autoencoder => "a frozen autoencoder's codes".to_string(),
        },
        t.progress.epoch + 1,
        t.progress.end_epoch,
        data.pairs.len().div_ceil(params.batch_size)
    );
    if !t.run(run.checkpoint_every, run.stop_after)? {
        return Err(crate::engine::stopped_as_asked(t.progress.epoch));
    }
    let corrected = train::correct_rows(&t.net, &data.x, g, &device)?;
    // The embedding's PCA reads the corrected values of every cell (dense).
    let pca = pca_with(&corrected, n, g, emb_pcs, params.seed, Solver::Auto);
    let k = pca.k;
    let emb = EmbeddingTable::of_cells(cells, "deepmnn", k, pca.scores.clone(), step);
    let mut on_input_scale = corrected;
    scaling.invert(&mut on_input_scale);
    let card = Card {
        head: Head::of::<Card>(),
        shape: t.net.shape,
        batches: cells.batch.categories.clone(),
        values: cells.values,
        genes: Genes::of(cells),
        embedding_pcs: k,
        hyperparameters: params,
        training: Summary {
            cells: cells.n_cells(),
            cells_fingerprint: cells.fingerprint(),
            pairs: data.pairs.len(),
            pairs_definition: definition,
            epochs: t.progress.epoch,
            stopped_early: t.progress.stopped,
            autoencoder_mse: t.progress.autoencoder_mse.last().copied(),
            steps: t.progress.steps,
            final_loss: t.progress.log.last().map(|r| r.loss).unwrap_or(f64::NAN),
            seconds: t.progress.seconds,
            device: format!("{:?}", device.location()),
        },
    };
    let mut weights = t.net.named().ce()?;
    weights.insert("scaling.mean".into(), host_tensor(&scaling.mean, &[g])?);
    weights.insert("scaling.sd".into(), host_tensor(&scaling.sd, &[g])?);
    weights.insert("embedding.mean".into(), host_tensor(&pca.mean, &[g])?);
    weights.insert(
        "embedding.components".into(),
        host_tensor(&pca.components, &[k, g])?,
    );
    let log = t.log_frame(step);
    Finish {
        model: "deepmnn",
        model_dir: &run.model_dir,
        checkpoints: t.checkpoints(),
        weights: Some(&weights),
        log: &log,
        log_out: run.log.as_deref(),
        embeddings: vec![(&run.embedding, emb)],
        progress: &t.progress,
        note: if t.progress.stopped {
            " (stopped on a plateau)"
        } else {
            ""
        },
        final_loss: card.training.final_loss,
    }
    .write(
        &card,
        |staged| t.write_state(staged),
        |_| Ok(()),
        || match &args.corrected {
            Some(c) => write_corrected(c, cells, &on_input_scale, step),
            None => Ok(()),
        },
    )
}

crate::engine::card::model_card!(Card: head, genes; "deepmnn", "deepMNN", CARD_VERSION, shape);

/// A saved model, ready to correct cells.
pub struct Saved {
    /// The model card.
    pub card: Card,
    /// The network.
    pub net: Network,
    /// The per-gene scaling of the inputs.
    pub scaling: Scaling,
    /// The embedding's PCA: mean and `k x g` components.
    pub mean: Vec<f32>,
    /// The embedding's `k x g` principal components.
    pub components: Vec<f32>,
}

/// Load a deepMNN model directory.
pub fn load(dir: &Path, device: &Device) -> Result<Saved> {
    let card: Card = crate::engine::card::read(dir)?;
    let wpath = dir.join(WEIGHTS);
    let t = load_tensors(&wpath)?;
    let net = Network::from_named(&t, card.shape, device)
        .ce()
        .at(&wpath)?;
    let g = card.genes.n_genes;
    Ok(Saved {
        scaling: Scaling {
            mean: host_vec(&t, "scaling.mean", g, &wpath)?,
            sd: host_vec(&t, "scaling.sd", g, &wpath)?,
        },
        mean: host_vec(&t, "embedding.mean", g, &wpath)?,
        components: host_vec(&t, "embedding.components", card.embedding_pcs * g, &wpath)?,
        card,
        net,
    })
}

/// The positions in `cells` of the model's genes, in the model's order, exactly: deepMNN
/// corrects the genes it was trained on and no others.
fn gene_columns(card: &Card, cells: &CellsTable, path: &Path) -> Result<Vec<usize>> {
    let pos: HashMap<&str, usize> = cells
        .gene_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut cols = Vec::with_capacity(card.genes.n_genes);
    for id in &card.genes.gene_ids {
        match pos.get(id.as_str()) {
            Some(&c) => cols.push(c),
            None => {
                return Err(Error::new(format!(
                    "gene '{id}' of the model is missing (deepMNN corrects exactly the genes it was trained on, listed in its card)"
                ))
                .file(path)
                .field("gene_ids"))
            }
        }
    }
    Ok(cols)
}

/// The dense values (`rows.len() x cols.len()`) of the model's genes (`cols`, their
/// positions in the input) in the given rows of `x`.
fn model_rows(x: &dyn Rows, cols: &[usize], rows: std::ops::Range<usize>) -> Vec<f32> {
    let mut to_model = vec![None; x.n_cols()];
    for (j, &c) in cols.iter().enumerate() {
        to_model[c] = Some(j);
    }
    let g = cols.len();
    let mut out = vec![0f32; rows.len() * g];
    for (o, r) in rows.enumerate() {
        let (idx, val) = x.row(r);
        for (&c, &v) in idx.iter().zip(val) {
            if let Some(j) = to_model[c as usize] {
                out[o * g + j] = v;
            }
        }
    }
    out
}

/// Refuse cells deepMNN model `m` cannot correct: other values than log-normalized, or
/// a batch it was not trained on.
fn check_cells(m: &Saved, cells: &CellsTable, path: &Path) -> Result<()> {
    check_values(cells.values, path)?;
    if let Some(b) = cells
        .batch
        .categories
        .iter()
        .find(|b| !m.card.batches.contains(b))
    {
        return Err(Error::new(format!(
            "batch '{b}' is not one the model was trained on ({}); deepMNN corrects only its training batches",
            m.card.batches.join(", ")
        ))
        .file(path)
        .field("batch"));
    }
    Ok(())
}

/// The corrected values (on the scaled scale, the model's genes in its order) of new
/// cells of the batches `m` was trained on; a cell of another batch is refused.
pub fn correct_cells(
    m: &Saved,
    cells: &CellsTable,
    path: &Path,
    device: &Device,
) -> Result<Vec<f32>> {
    check_cells(m, cells, path)?;
    let cols = gene_columns(&m.card, cells, path)?;
    let mut x = model_rows(&cells.x, &cols, 0..cells.n_cells());
    m.scaling.apply(&mut x);
    train::correct_rows(&m.net, &Cells::Dense(x), m.card.genes.n_genes, device)
}

/// Correct and embed new cells of the batches the model was trained on, a chunk of
/// [`train::CORRECT_CHUNK`] rows at a time (the rows read from the memory-mapped table
/// when it allows it): the same scores as correcting them all at once.
pub fn embed(run: &EmbedRun, step: &Step) -> Result<()> {
    atomic::check_not_input(&run.output, &[run.cells.as_path()])?;
    let device = crate::device(&run.device)?;
    let m = load(&run.model_dir, &device)?;
    let input = read_cells_rows(&run.cells)?;
    let cells = &input.cells;
    check_cells(&m, cells, &run.cells)?;
    let cols = gene_columns(&m.card, cells, &run.cells)?;
    let (n, g, k) = (cells.n_cells(), m.card.genes.n_genes, m.card.embedding_pcs);
    let mut scores = Vec::with_capacity(n * k);
    for a in (0..n).step_by(train::CORRECT_CHUNK) {
        let b = (a + train::CORRECT_CHUNK).min(n);
        let mut x = model_rows(input.x(), &cols, a..b);
        m.scaling.apply(&mut x);
        let corrected = train::correct_rows(&m.net, &Cells::Dense(x), g, &device)?;
        scores.extend(project(&corrected, g, &m.mean, &m.components, k));
    }
    table::write_embedding(
        &run.output,
        &EmbeddingTable::of_cells(cells, "deepmnn", k, scores, step),
    )?;
    info!(
        "corrected and embedded {} cells with deepMNN {} into {}",
        cells.n_cells(),
        run.model_dir.display(),
        run.output.display()
    );
    Ok(())
}
