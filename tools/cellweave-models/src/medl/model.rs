//! The MEDL model directory and applying a saved model: the FE latent, the RE latent and
//! counterfactual reconstructions, a chunk of rows at a time (memory bounded by the chunk).
//!
//! ```text
//! MODEL_DIR/             assembled beside its place, renamed into it once a run succeeded
//!   card.yaml             model card: model: medl, architecture, input scaling (global
//!                         min/max), batches, genes, resolved hyperparameters, summary
//!   model.safetensors     every weight and batch-norm running statistic (fe.*, adversary.*,
//!                         re.*, classifier.*)
//!   state.safetensors     the three Adam optimisers' moments
//!   state.json            progress (epochs, log) and what a resumed run must agree with
//!   training_log.arrow    per-epoch losses (both adversarial cross-entropies included)
//! ```

use candle_core::{Device, Tensor};
use cellweave::contract::ValueKind;
use cellweave::io::rows::Rows;
use cellweave::{Result, ResultExt};
use std::collections::HashMap;
use std::path::Path;

use super::layers::Pass;
use super::net::{one_hot, Arch, Effects, Medl};
use super::scaling::Scaling;
use super::train::{MedlParams, Progress};
use crate::CandleExt;

pub use crate::engine::card::CARD;
pub use crate::engine::finish::{TRAINING_LOG, WEIGHTS};
pub use crate::engine::state::{STATE, STATE_JSON};
/// The model card format version.
pub const CARD_VERSION: u32 = 1;

/// The model card (YAML).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Card {
    /// `model: medl`, the card version, the cellweave version.
    #[serde(flatten)]
    pub head: Head,
    /// The layer sizes.
    pub architecture: Arch,
    /// Scale the inputs must be on (as the training cells), before the min-max scaling.
    pub values: ValueKind,
    /// The global min-max scaling applied to every input value.
    pub scaling: Scaling,
    /// The batch column the model was trained with, and its batches (one-hot order).
    pub batch_key: String,
    /// The batches, in one-hot order.
    pub batches: Vec<String>,
    /// The genes it reads.
    #[serde(flatten)]
    pub genes: Genes,
    /// Every resolved parameter.
    pub hyperparameters: MedlParams,
    /// How the training went.
    pub training: Summary,
}

pub use crate::engine::card::{Genes, Head, Summary};

/// `state.json`: what a resumed run must agree with, and the progress.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StateFile {
    /// Fingerprint of the training cells.
    pub cells_fingerprint: String,
    /// Every parameter of the run.
    pub params: MedlParams,
    /// The layer sizes.
    pub arch: Arch,
    /// The input scaling.
    pub scaling: Scaling,
    /// The batches, in one-hot order.
    pub batches: Vec<String>,
    /// Where the run stands.
    pub progress: Progress,
}

crate::engine::card::model_card!(
    Card: head, genes;
    "medl",
    "MEDL",
    CARD_VERSION,
    architecture,
    |c: &Card| -> std::result::Result<(), (&'static str, String)> {
        if c.batches.len() != c.architecture.n_batches {
            return Err((
                "batches",
                "the batch list does not match the architecture".into(),
            ));
        }
        Ok(())
    }
);

use crate::engine::checkpoint::load_tensors;

/// A model of `arch` with the weights of `path` (a `model.safetensors`).
pub fn load_weights(arch: &Arch, path: &Path, dev: &Device) -> Result<Medl> {
    let t = load_tensors(path)?;
    // The initial values are overwritten: any seed will do.
    let mut m = Medl::init(arch, &mut crate::rng::Rng::new(0), dev).ce()?;
    m.load(&t).ce().at(path)?;
    Ok(m)
}

/// A saved model: its card and network.
pub struct Model {
    /// The model card.
    pub card: Card,
    /// The network.
    pub net: Medl,
}

/// Load the model directory `dir` (card and weights) onto `dev`.
pub fn load(dir: &Path, dev: &Device) -> Result<Model> {
    let card: Card = crate::engine::card::read(dir)?;
    let net = load_weights(&card.architecture, &dir.join(WEIGHTS), dev)?;
    Ok(Model { card, net })
}

const CHUNK: usize = 1024;

/// Run `f` on the scaled dense rows of `x`, `CHUNK` rows at a time, and concatenate
/// what it returns.
fn by_chunks(
    x: &dyn Rows,
    scaling: &Scaling,
    dev: &Device,
    mut f: impl FnMut(&Tensor, std::ops::Range<usize>) -> candle_core::Result<Tensor>,
) -> Result<Vec<f32>> {
    let n = x.n_rows();
    let mut out = Vec::new();
    let mut start = 0;
    while start < n {
        let end = (start + CHUNK).min(n);
        let rows: Vec<usize> = (start..end).collect();
        let mut dense = x.to_dense_rows(&rows);
        scaling.apply(&mut dense);
        let t = Tensor::from_vec(dense, (end - start, x.n_cols()), dev).ce()?;
        let y = f(&t, start..end).ce()?;
        out.extend(y.flatten_all().ce()?.to_vec1::<f32>().ce()?);
        start = end;
    }
    Ok(out)
}

/// The FE latent of every row of `x` (log values on the model's genes).
pub fn fe_latent(m: &mut Medl, x: &dyn Rows, scaling: &Scaling, dev: &Device) -> Result<Vec<f32>> {
    by_chunks(x, scaling, dev, |t, _| {
        Ok(m.fe.encode(t, Pass::Eval)?.latent().clone())
    })
}

/// The RE latent of every row of `x` from batch `codes[row]` (a code past the model's
/// batches: an unseen batch, the zero vector).
pub fn re_latent(
    m: &mut Medl,
    x: &dyn Rows,
    codes: &[u32],
    scaling: &Scaling,
    dev: &Device,
) -> Result<Vec<f32>> {
    let k = m.arch.n_batches;
    by_chunks(x, scaling, dev, |t, r| {
        let z = one_hot(&codes[r], k, dev)?;
        let re = Effects { z: &z, noise: None };
        Ok(m.re.encode(t, re, Pass::Eval)?.latent().clone())
    })
}

/// The RE autoencoder's reconstruction of every row of `x` (from batch `codes[row]`),
/// decoded as from batch `as_codes[row]`, on the log scale (`scaling` inverted, no lower
/// than its minimum): `as_codes == codes` is the plain reconstruction, another batch a
/// counterfactual.
pub fn reconstruct(
    m: &mut Medl,
    x: &dyn Rows,
    codes: &[u32],
    as_codes: &[u32],
    scaling: &Scaling,
    dev: &Device,
) -> Result<Vec<f32>> {
    let k = m.arch.n_batches;
    let mut v = by_chunks(x, scaling, dev, |t, r| {
        let z = one_hot(&codes[r.clone()], k, dev)?;
        let za = one_hot(&as_codes[r], k, dev)?;
        let l = m.re.encode(t, Effects { z: &z, noise: None }, Pass::Eval)?;
        m.re.decode(
            l.latent(),
            Effects {
                z: &za,
                noise: None,
            },
            Pass::Eval,
        )
    })?;
    scaling.invert(&mut v);
    Ok(v)
}

/// The cells' batch codes in the model's batch order (a batch the model has not seen:
/// `n_batches`, i.e. the zero one-hot row); and how many cells are in unseen batches.
pub fn batch_codes(card: &Card, names: &[String], codes: &[u32]) -> (Vec<u32>, usize) {
    let index: HashMap<&str, u32> = card
        .batches
        .iter()
        .enumerate()
        .map(|(i, b)| (b.as_str(), i as u32))
        .collect();
    let unseen = card.batches.len() as u32;
    let mut n_unseen = 0;
    let out = codes
        .iter()
        .map(|&c| {
            let code = names
                .get(c as usize)
                .and_then(|n| index.get(n.as_str()).copied());
            code.unwrap_or_else(|| {
                n_unseen += 1;
                unseen
            })
        })
        .collect();
    (out, n_unseen)
}
