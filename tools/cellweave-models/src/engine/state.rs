//! A run's training state, as a checkpoint and the finished model directory hold it: the
//! named tensors (weights, running statistics, optimiser moments) in `state.safetensors`,
//! and `state.json` with the fingerprint of the cells, the parameters and the progress.
//! A resumed run reads it back and refuses a state of other cells or other parameters.

use candle_core::Tensor;
use cellweave::{info, Error, Result, ResultExt};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::checkpoint::{load_tensors, save_tensors, write_json, Checkpoints};
use super::optim::{Adam, AdamConfig};
use crate::CandleExt;

/// The tensors of the training state.
pub const STATE: &str = "state.safetensors";
/// The progress and what a resumed run must agree with.
pub const STATE_JSON: &str = "state.json";

/// Named tensors, as safetensors files hold them.
pub type Tensors = HashMap<String, Tensor>;

/// `state.json`: what a resumed run must agree with (the cells and the parameters), and
/// the progress.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StateFile<P, G> {
    /// Fingerprint of the training cells.
    pub cells_fingerprint: String,
    /// Every parameter that decides the result of the run.
    pub params: P,
    /// Where the run stands.
    pub progress: G,
}

/// Where a run stands, for the line a resumed run prints.
pub trait RunProgress {
    /// Global epochs done.
    fn epoch(&self) -> usize;
    /// The global epoch at which the run ends.
    fn end_epoch(&self) -> usize;
    /// Optimiser steps done.
    fn steps(&self) -> u64;
    /// Seconds of training.
    fn seconds(&self) -> f64;
}

/// The progress most models keep: epochs and steps done, seconds of training, and the
/// training log rows so far.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Progress<R> {
    /// Global epochs done.
    pub epoch: usize,
    /// The global epoch at which the run ends.
    pub end_epoch: usize,
    /// Optimiser steps done.
    pub steps: u64,
    /// Seconds of training.
    pub seconds: f64,
    /// The training log rows, one per epoch.
    pub log: Vec<R>,
}

impl<R> Progress<R> {
    /// A new run of `epochs` epochs.
    pub fn new(epochs: usize) -> Self {
        Progress {
            epoch: 0,
            end_epoch: epochs,
            steps: 0,
            seconds: 0.0,
            log: Vec::new(),
        }
    }

    /// Record the finished epoch `r` (its number and seconds) and its log row; the model
    /// counts its steps as it takes them.
    pub fn record(&mut self, r: &super::EpochRecord, row: R) {
        self.epoch = r.epoch;
        self.seconds += r.seconds;
        self.log.push(row);
    }
}

impl<T> Progress<super::log::Row<T>> {
    /// The last epoch's loss (NaN before the first epoch).
    pub fn final_loss(&self) -> f64 {
        self.log.last().map(|r| r.loss).unwrap_or(f64::NAN)
    }
}

/// Implements [`RunProgress`] for a progress type with the fields `epoch`, `end_epoch`,
/// `steps` and `seconds`.
macro_rules! run_progress {
    ($progress:ty $(, $g:ident)?) => {
        impl$(<$g>)? $crate::engine::state::RunProgress for $progress {
            fn epoch(&self) -> usize {
                self.epoch
            }
            fn end_epoch(&self) -> usize {
                self.end_epoch
            }
            fn steps(&self) -> u64 {
                self.steps
            }
            fn seconds(&self) -> f64 {
                self.seconds
            }
        }
    };
}
pub(crate) use run_progress;

run_progress!(Progress<R>, R);

/// Write the training state into the folder `d`: `tensors` as `state.safetensors`, then
/// `state.json`.
pub fn write<P: serde::Serialize, G: serde::Serialize>(
    d: &Path,
    tensors: &Tensors,
    fingerprint: &str,
    params: &P,
    progress: &G,
) -> Result<()> {
    save_tensors(&d.join(STATE), tensors)?;
    let s = StateFile {
        cells_fingerprint: fingerprint.to_string(),
        params,
        progress,
    };
    write_json(&d.join(STATE_JSON), &s)
}

/// Read the `state.json` of the folder `from`.
pub fn read_json<S: serde::de::DeserializeOwned>(from: &Path) -> Result<S> {
    let sj = from.join(STATE_JSON);
    let text = std::fs::read_to_string(&sj).at(&sj)?;
    serde_json::from_str(&text).at(&sj)
}

/// The `state.json` of the folder `from`, checked against the run: the same cells
/// (`fingerprint`) and the same parameters (`name_params`: the message shows the saved
/// ones).
pub fn read_checked<P, G>(
    from: &Path,
    fingerprint: &str,
    params: &P,
    name_params: bool,
) -> Result<StateFile<P, G>>
where
    P: serde::Serialize + serde::de::DeserializeOwned + PartialEq,
    G: serde::de::DeserializeOwned,
{
    let sj = from.join(STATE_JSON);
    let s: StateFile<P, G> = read_json(from)?;
    if s.cells_fingerprint != fingerprint {
        return Err(Error::new(
            "the checkpoint was trained on other cells: rerun without --resume",
        )
        .file(&sj));
    }
    if s.params != *params {
        let msg = if name_params {
            format!(
                "the checkpoint was written with other parameters ({}); rerun with the same ones or without --resume",
                serde_json::to_string(&s.params).unwrap_or_default()
            )
        } else {
            "the checkpoint was written with other parameters: rerun with the same ones or without --resume".to_string()
        };
        return Err(Error::new(msg).file(&sj));
    }
    Ok(s)
}

/// Print the line of a run that resumes at `p`.
pub fn say_resuming(p: &impl RunProgress) {
    info!("resuming after epoch {} of {}", p.epoch(), p.end_epoch());
}

/// The folder a run continues from: with `resume`, the newest checkpoint of `ckpt` (else,
/// with `finished`, the model directory `dir` itself when it holds a card and the file
/// `finished` names). `None`: a new run, after saying so when `resume`.
pub fn resume_from(
    ckpt: &Checkpoints,
    dir: &Path,
    resume: bool,
    finished: Option<&str>,
) -> Result<Option<PathBuf>> {
    if !resume {
        return Ok(None);
    }
    let from = match ckpt.latest()? {
        Some(c) => Some(c),
        None if finished
            .is_some_and(|f| dir.join(super::card::CARD).exists() && dir.join(f).exists()) =>
        {
            Some(dir.to_path_buf())
        }
        None => None,
    };
    if from.is_none() {
        info!("no checkpoint for {}: starting a new run", dir.display());
    }
    Ok(from)
}

/// The start of a run whose whole state is `state.safetensors` + `state.json`: with
/// `resume` and a checkpoint of `ckpt`, its state checked against the run and `restore`
/// building the model from its tensors (and the path of their file, for errors); else the
/// earlier checkpoints removed and `init` giving a new model and progress.
#[allow(clippy::too_many_arguments)]
pub fn start<P, G, M>(
    ckpt: &Checkpoints,
    dir: &Path,
    resume: bool,
    fingerprint: &str,
    params: &P,
    name_params: bool,
    restore: impl FnOnce(&Tensors, &Path) -> Result<M>,
    init: impl FnOnce() -> Result<(M, G)>,
) -> Result<(M, G)>
where
    P: serde::Serialize + serde::de::DeserializeOwned + PartialEq,
    G: serde::de::DeserializeOwned + RunProgress,
{
    if let Some(from) = resume_from(ckpt, dir, resume, None)? {
        let s: StateFile<P, G> = read_checked(&from, fingerprint, params, name_params)?;
        let st = from.join(STATE);
        let t = load_tensors(&st)?;
        let m = restore(&t, &st)?;
        say_resuming(&s.progress);
        return Ok((m, s.progress));
    }
    ckpt.remove_all()?;
    init()
}

/// A network whose parameters are saved and optimised by name.
pub trait Network {
    /// Its parameters and running statistics, by name.
    fn named(&self) -> candle_core::Result<Tensors>;
    /// Its trainable variables, in the optimiser's order.
    fn vars(&self) -> Vec<candle_core::Var>;
}

/// What a run of one network with one Adam keeps, saves in its checkpoints and restores:
/// the network, the optimiser, the parameters, the progress, the fingerprint of the cells
/// and the checkpoints of the model directory.
pub struct RunState<N, P, G> {
    /// The network.
    pub net: N,
    /// Its optimiser.
    pub adam: Adam,
    /// Every parameter that decides the result.
    pub params: P,
    /// Where the run stands.
    pub progress: G,
    /// Fingerprint of the training cells.
    pub fingerprint: String,
    /// The checkpoints of the model directory.
    pub ckpt: Checkpoints,
}

impl<N, P, G> RunState<N, P, G>
where
    N: Network,
    P: serde::Serialize + serde::de::DeserializeOwned + PartialEq,
    G: serde::Serialize + serde::de::DeserializeOwned + RunProgress,
{
    /// A run of `model` writing its checkpoints beside `dir` (see [`start`]): with
    /// `resume`, the newest checkpoint's network (`restore`), optimiser and progress; else
    /// a new network (`init`), optimiser (`adam`) and progress (`fresh`).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        model: &str,
        dir: &Path,
        resume: bool,
        fingerprint: String,
        params: P,
        name_params: bool,
        adam: AdamConfig,
        restore: impl FnOnce(&Tensors) -> candle_core::Result<N>,
        init: impl FnOnce() -> candle_core::Result<N>,
        fresh: G,
    ) -> Result<Self> {
        let ckpt = Checkpoints::of(dir, model);
        let ((net, adam), progress) = start(
            &ckpt,
            dir,
            resume,
            &fingerprint,
            &params,
            name_params,
            |t, st| {
                let net = restore(t).ce().at(st)?;
                let mut opt = Adam::new(net.vars(), adam).ce()?;
                opt.load_state("adam.", t).ce().at(st)?;
                Ok((net, opt))
            },
            || {
                let net = init().ce()?;
                let opt = Adam::new(net.vars(), adam).ce()?;
                Ok(((net, opt), fresh))
            },
        )?;
        Ok(RunState {
            net,
            adam,
            params,
            progress,
            fingerprint,
            ckpt,
        })
    }

    /// Write the training state (the network's tensors, the Adam moments, `state.json`)
    /// into the folder `d`.
    pub fn write_state(&self, d: &Path) -> Result<()> {
        let mut t = self.net.named().ce()?;
        t.extend(self.adam.state("adam.").ce()?);
        write(d, &t, &self.fingerprint, &self.params, &self.progress)
    }

    /// Write a checkpoint after the current epoch.
    pub fn checkpoint(&self) -> Result<()> {
        self.ckpt
            .save(self.progress.epoch(), |d| self.write_state(d))
    }

    /// The checkpoints of this run.
    pub fn checkpoints(&self) -> &Checkpoints {
        &self.ckpt
    }
}

/// Lets a model's trainer (`$trainer<'_>`, holding its [`RunState`] in the field `s`) be
/// used as its run state: `t.net`, `t.progress`, `t.params`, `t.write_state(d)`.
macro_rules! deref_run_state {
    ($trainer:ident, $state:ty) => {
        impl std::ops::Deref for $trainer<'_> {
            type Target = $state;
            fn deref(&self) -> &Self::Target {
                &self.s
            }
        }
        impl std::ops::DerefMut for $trainer<'_> {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.s
            }
        }
    };
}
pub(crate) use deref_run_state;
