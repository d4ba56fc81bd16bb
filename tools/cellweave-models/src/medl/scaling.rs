//! MEDL's input scale: the log values min-max scaled by one global minimum and maximum
//! (of the training cells, implicit zeros included), recorded in the model card so that
//! `cellweave-embed` applies the same map.

use cellweave::io::rows::Rows;
use cellweave::{bail, Result};

/// The global min-max scaling of the input values.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scaling {
    /// The smallest value of the training cells.
    pub min: f32,
    /// The largest value of the training cells.
    pub max: f32,
}

impl Scaling {
    /// The global minimum and maximum of `x` (a row with fewer stored values than columns
    /// has zeros).
    pub fn of(x: &dyn Rows) -> Result<Self> {
        let values = || (0..x.n_rows()).flat_map(|r| x.row(r).1);
        let sparse = values().count() < x.n_rows() * x.n_cols();
        let (mut lo, mut hi) = if sparse {
            (0f32, 0f32)
        } else {
            (f32::INFINITY, f32::NEG_INFINITY)
        };
        for &v in values() {
            if !v.is_finite() {
                bail!("a value is {v}: the cells table must hold finite values");
            }
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
            bail!("every value is the same ({lo}): nothing to scale");
        }
        Ok(Scaling { min: lo, max: hi })
    }

    /// `(v - min) / (max - min)` in place.
    pub fn apply(&self, v: &mut [f32]) {
        let inv = 1.0 / (self.max - self.min);
        for x in v {
            *x = (*x - self.min) * inv;
        }
    }

    /// Back to the log scale: `min + v (max - min)`, no lower than `min`.
    pub fn invert(&self, v: &mut [f32]) {
        let span = self.max - self.min;
        for x in v {
            *x = self.min + x.max(0.0) * span;
        }
    }
}
