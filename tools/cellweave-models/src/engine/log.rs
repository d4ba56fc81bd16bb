//! The training log table every model writes (`training_log.arrow` in its model directory,
//! and `--log`): one row per epoch, the model's own columns, built column by column from
//! its per-epoch records.

use cellweave::contract::{meta, Column, Frame, Step, TableKind};

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
