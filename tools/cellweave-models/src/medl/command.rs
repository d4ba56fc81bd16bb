//! What `cellweave-train --model medl` and `cellweave-embed` (on a MEDL model) do.

use cellweave::contract::{Categorical, CellsTable, Column, Csr, EmbeddingTable, Step};
use cellweave::io::{atomic, table};
use cellweave::{info, Error, Result, ResultExt};
use std::path::PathBuf;

use super::fit::{train_rows, Outputs, RunOptions};
use super::model;
use super::train::{self, MedlParams};
use crate::command::{EmbedRun, Hyper, TrainRun};

/// MEDL's own flags of `cellweave-train` (the shared ones are [`Hyper`]; MEDL's defaults:
/// 500 epochs bounded to 1,500-6,000 steps, lr 1e-4, batch 512, weight decay 0, latent 50,
/// no dropout).
#[derive(clap::Args, serde::Serialize, serde::Deserialize, Debug, Clone)]
#[command(next_help_heading = "MEDL options (--model medl)")]
pub struct MedlArgs {
    /// Also write the random-effects (batch-specific) latent of every cell here (.arrow or
    /// .parquet); --embedding gets the fixed-effects (integrated) latent
    #[arg(long, value_name = "EMB")]
    pub re_embedding: Option<PathBuf>,
    /// Fixed effects: weight of the reconstruction MSE (>= 0)
    #[arg(value_parser = cellweave::cli::range::non_negative::<f64>, long,
          default_value_t = MedlParams::default().lambda_rec)]
    pub lambda_rec: f64,
    /// Fixed effects: weight of the adversary's cross-entropy, subtracted (>= 0)
    #[arg(value_parser = cellweave::cli::range::non_negative::<f64>, long,
          default_value_t = MedlParams::default().lambda_adv)]
    pub lambda_adv: f64,
    /// Random effects: weight of the reconstruction MSE (>= 0)
    #[arg(value_parser = cellweave::cli::range::non_negative::<f64>, long,
          default_value_t = MedlParams::default().re_rec)]
    pub re_rec: f64,
    /// Random effects: weight of the latent batch classifier's cross-entropy (>= 0)
    #[arg(value_parser = cellweave::cli::range::non_negative::<f64>, long,
          default_value_t = MedlParams::default().re_ce)]
    pub re_ce: f64,
    /// Random effects: weight of the KL term of the variational weights (>= 0)
    #[arg(value_parser = cellweave::cli::range::non_negative::<f64>, long,
          default_value_t = MedlParams::default().kl_weight)]
    pub kl_weight: f64,
}

impl MedlArgs {
    /// The parameters of a run on `n_cells` cells: the shared flags (`None`: MEDL's
    /// default; the epochs from [`train::default_epochs`]) and MEDL's own.
    pub fn params(&self, hyper: &Hyper, seed: u64, n_cells: usize) -> MedlParams {
        let d = MedlParams::default();
        let batch_size = hyper.batch_size.unwrap_or(d.batch_size);
        MedlParams {
            epochs: hyper
                .epochs
                .unwrap_or_else(|| train::default_epochs(n_cells, batch_size)),
            batch_size,
            lr: hyper.lr.unwrap_or(d.lr),
            weight_decay: hyper.weight_decay.unwrap_or(d.weight_decay),
            latent: hyper.latent.unwrap_or(d.latent),
            lambda_rec: self.lambda_rec,
            lambda_adv: self.lambda_adv,
            re_rec: self.re_rec,
            re_ce: self.re_ce,
            kl_weight: self.kl_weight,
            seed,
        }
    }
}

/// Train MEDL: the model directory, the FE latent (`--embedding`), the RE latent
/// (`--re-embedding`) and the log.
pub fn train(run: &TrainRun, args: &MedlArgs, step: &Step) -> Result<()> {
    if run.hyper.dropout.is_some() {
        return Err(Error::new("MEDL has no dropout").field("dropout"));
    }
    if run.init.is_some() {
        return Err(Error::new(
            "MEDL trains in one call (continue an interrupted run with --resume)",
        )
        .field("init"));
    }
    run.check_outputs(&run.inputs(), &[args.re_embedding.as_deref()])?;
    if args.re_embedding.as_ref() == Some(&run.embedding) {
        return Err(Error::new("--re-embedding is the --embedding file").field("re-embedding"));
    }
    if run.pairs.is_some() || run.counts.is_some() {
        info!("note: MEDL uses neither --pairs nor --counts (ignored)");
    }
    // The rows stay in the memory-mapped file when it is one (a cellweave Arrow table).
    let input = cellweave::io::rows::read_cells_rows(&run.cells)?;
    let cells = &input.cells;
    let params = args.params(&run.hyper, run.seed, cells.n_cells());
    let opts = RunOptions {
        batch_key: run.batch_key.clone(),
        resume: run.resume,
        device: run.device.clone(),
        checkpoint_every: run.checkpoint_every,
        stop_after: run.stop_after,
    };
    let out = Outputs {
        model_dir: run.model_dir.clone(),
        embedding: run.embedding.clone(),
        re_embedding: args.re_embedding.clone(),
        log: run.log.clone(),
    };
    train_rows(cells, input.x(), &params, &opts, &out, step).at(&run.cells)?;
    Ok(())
}

/// MEDL's own flags of `cellweave-embed`.
#[derive(clap::Args, serde::Serialize, serde::Deserialize, Debug, Clone, Default)]
#[command(next_help_heading = "MEDL options")]
pub struct MedlEmbedArgs {
    /// Write counterfactual cells instead of the embedding: every cell's reconstruction as
    /// if measured in this batch (a cells table of log1p values on the model's genes;
    /// column `batch` = this batch, `source_batch` = the cell's own)
    #[arg(long, value_name = "BATCH")]
    pub as_batch: Option<String>,
    /// Write the random-effects latent instead of the fixed-effects one
    #[arg(long, conflicts_with = "as_batch")]
    pub random_effects: bool,
}

impl MedlEmbedArgs {
    /// An error when a MEDL-only flag is given for a model of another kind.
    pub fn check_unused(&self, model: &str) -> Result<()> {
        let flag = if self.as_batch.is_some() {
            "as-batch"
        } else if self.random_effects {
            "random-effects"
        } else {
            return Ok(());
        };
        Err(Error::new(format!(
            "only MEDL models take --{flag}; this is a {model} model"
        ))
        .field(flag))
    }
}

/// Apply a MEDL model: the FE latent (or the RE latent, or counterfactual cells).
pub fn embed(run: &EmbedRun, args: &MedlEmbedArgs, step: &Step) -> Result<()> {
    atomic::check_not_input(&run.output, &[run.cells.as_path()])?;
    let dev = crate::device(&run.device)?;
    let mut m = model::load(&run.model_dir, &dev)?;
    // The rows stay in the memory-mapped file when it is one (a cellweave Arrow table) and
    // its genes are the model's; else they are copied onto the model's genes.
    let input = cellweave::io::rows::read_cells_rows(&run.cells)?;
    let cells = &input.cells;
    let a = crate::claire::model::alignment_for(
        &m.card.genes.gene_ids,
        &m.card.genes.gene_names,
        m.card.values,
        cells,
        &run.cells,
        run.max_missing,
    )?;
    let aligned = crate::claire::model::aligned_rows(input.x(), &a);
    let x: &dyn cellweave::io::rows::Rows = match &aligned {
        Some(m) => m,
        None => input.x(),
    };
    let batch = crate::medl::fit::batches_of(cells, &m.card.batch_key).at(&run.cells)?;
    let (codes, unseen) = model::batch_codes(&m.card, &batch.categories, &batch.codes);
    if unseen > 0 {
        info!(
            "note: {unseen} cell(s) are from batches the model has not seen (random effects of a zero batch vector)"
        );
    }
    let s = m.card.scaling;
    if let Some(b) = &args.as_batch {
        let Some(target) = m.card.batches.iter().position(|x| x == b) else {
            return Err(Error::new(format!(
                "batch '{b}' is not one of the model's {} batches ({})",
                m.card.batches.len(),
                preview(&m.card.batches)
            ))
            .field("as-batch"));
        };
        let as_codes = vec![target as u32; codes.len()];
        let v = model::reconstruct(&mut m.net, x, &codes, &as_codes, &s, &dev)?;
        let out = counterfactual_table(cells, &m.card, b, v, step);
        table::write_cells(&run.output, &out)?;
        info!(
            "{} counterfactual cells as if from batch {b} ({} values) into {}",
            cells.n_cells(),
            out.values.as_str(),
            run.output.display()
        );
        return Ok(());
    }
    let (data, name) = if args.random_effects {
        (
            model::re_latent(&mut m.net, x, &codes, &s, &dev)?,
            "medl_re",
        )
    } else {
        (model::fe_latent(&mut m.net, x, &s, &dev)?, "medl")
    };
    let emb = EmbeddingTable::of_cells(cells, name, m.card.architecture.latent, data, step);
    table::write_embedding(&run.output, &emb)?;
    info!(
        "embedded {} cells ({} latent) into {}",
        cells.n_cells(),
        if args.random_effects {
            "random-effects"
        } else {
            "fixed-effects"
        },
        run.output.display()
    );
    Ok(())
}

fn preview(v: &[String]) -> String {
    let mut s: Vec<&str> = v.iter().take(5).map(String::as_str).collect();
    if v.len() > 5 {
        s.push("...");
    }
    s.join(", ")
}

/// The counterfactual cells: the model's genes, `batch` = the target batch, the cells' own
/// batch in `source_batch`, every other per-cell column carried.
fn counterfactual_table(
    cells: &CellsTable,
    card: &model::Card,
    target: &str,
    values: Vec<f32>,
    step: &Step,
) -> CellsTable {
    let n = cells.n_cells();
    let mut obs = vec![("source_batch".to_string(), Column::Cat(cells.batch.clone()))];
    obs.extend(
        cells
            .obs
            .iter()
            .filter(|(k, _)| k != "source_batch")
            .cloned(),
    );
    let mut provenance = cells.provenance.clone();
    provenance.push(step.clone());
    CellsTable {
        cell_ids: cells.cell_ids.clone(),
        batch: Categorical::from_strings(&vec![target; n]),
        obs,
        gene_ids: card.genes.gene_ids.clone(),
        gene_names: card.genes.gene_names.clone(),
        x: Csr::from_dense(n, card.genes.n_genes, &values),
        values: card.values,
        provenance,
    }
}
