//! The training log table every model writes (`training_log.arrow` in its model directory,
//! and `--log`): one row per epoch, the model's own columns, built column by column from
//! its per-epoch records.

use cellweave::contract::{meta, Column, Frame, Step, TableKind};

use super::EpochRecord;

/// One row of a training log: the epoch, its steps and mean loss, the model's own terms
/// (`T`, flattened in between: the row's fields keep their order in `state.json`) and the
/// epoch's seconds. It reads as its terms (`row.nll`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Row<T> {
    /// Global epoch (1-based).
    pub epoch: usize,
    /// Minibatches of the epoch.
    pub steps: usize,
    /// Mean training loss of the epoch.
    pub loss: f64,
    /// The model's own columns.
    #[serde(flatten)]
    pub terms: T,
    /// Wall-clock seconds of the epoch.
    pub seconds: f64,
}

impl<T> Row<T> {
    /// The row of the finished epoch `r` with the model's `terms`.
    pub fn new(r: &EpochRecord, terms: T) -> Self {
        Row {
            epoch: r.epoch,
            steps: r.steps,
            loss: r.train_loss,
            terms,
            seconds: r.seconds,
        }
    }
}

impl<T> std::ops::Deref for Row<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.terms
    }
}

/// A training log under construction over the per-epoch records `rows`.
pub struct LogTable<'a, R> {
    rows: &'a [R],
    frame: Frame,
}

impl<'a, R> LogTable<'a, R> {
    /// An empty log of `model` (recorded as the `cellweave.model` metadata).
    pub fn new(model: &str, rows: &'a [R]) -> Self {
        let mut frame = Frame::new(TableKind::TrainingLog);
        frame.meta.insert("cellweave.model".into(), model.into());
        LogTable { rows, frame }
    }

    /// A count column (epoch, steps, cells).
    pub fn count(mut self, name: &str, f: impl Fn(&R) -> usize) -> Self {
        let c = Column::U32(self.rows.iter().map(|r| f(r) as u32).collect());
        self.frame = self.frame.with(name, c);
        self
    }

    /// A number column (losses, learning rate, seconds).
    pub fn value(mut self, name: &str, f: impl Fn(&R) -> f64) -> Self {
        let c = Column::F64(self.rows.iter().map(f).collect());
        self.frame = self.frame.with(name, c);
        self
    }

    /// A yes/no column.
    pub fn flag(mut self, name: &str, f: impl Fn(&R) -> bool) -> Self {
        let c = Column::Bool(self.rows.iter().map(|r| Some(f(r))).collect());
        self.frame = self.frame.with(name, c);
        self
    }

    /// The finished table, made by `step` from the cells of `fingerprint` (when known).
    pub fn finish(mut self, fingerprint: Option<String>, step: &Step) -> Frame {
        if let Some(fp) = fingerprint {
            self.frame.meta.insert(meta::FINGERPRINT.into(), fp);
        }
        self.frame.provenance = vec![step.clone()];
        self.frame
    }
}

impl<'a, T> LogTable<'a, Row<T>> {
    /// A log of [`Row`]s of `model`: its first columns `epoch`, `steps`, `loss`; the
    /// model's terms follow, then [`LogTable::end`].
    pub fn epochs(model: &str, rows: &'a [Row<T>]) -> Self {
        LogTable::new(model, rows)
            .count("epoch", |r| r.epoch)
            .count("steps", |r| r.steps)
            .value("loss", |r| r.loss)
    }

    /// The finished table with its last column, `seconds` (see [`LogTable::finish`]).
    pub fn end(self, fingerprint: String, step: &Step) -> Frame {
        self.value("seconds", |r| r.seconds)
            .finish(Some(fingerprint), step)
    }
}
