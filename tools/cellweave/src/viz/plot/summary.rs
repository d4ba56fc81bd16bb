//! The scib-style summary of a benchmark (`cellweave-plot --scores`): one row per method,
//! highest total first (the classic scIB total when present); one column per metric with a
//! circle whose area and colour show the value; the aggregate scores (`agg_*`, or bio,
//! batch, total) as bars with their value.
//!
//! Reads the same tables as [`super::bars::Bars`] (long or wide scores tables, e.g. the
//! workflow's benchmark.tsv, whose `wall_s` and `max_rss_mb` columns are not metrics).

use super::bars::Bars;
use super::style::{self, GRID, INK};
use super::{Anchor, Canvas, Figure};
use crate::contract::Frame;
use crate::{Error, Result};
use plotters::prelude::*;

/// Plain aggregate columns, drawn as bars (besides cellweave-score's `agg_*` ones).
const AGGREGATES: [&str; 3] = ["bio", "batch", "total"];
/// The total the rows are sorted by: the first of these present.
const SORT_BY: [&str; 3] = [
    "agg_scib_classic_total",
    "total",
    "agg_benchmarker_default_total",
];

fn is_aggregate(m: &str) -> bool {
    AGGREGATES.contains(&m) || m.starts_with("agg_")
}

const ROW_H: i32 = 34;
const CELL_W: i32 = 54;
const BAR_W: i32 = 110;

#[derive(Debug, Clone)]
pub struct Summary {
    /// Rows (methods), highest total first.
    pub methods: Vec<String>,
    /// Circle columns.
    pub metrics: Vec<String>,
    /// Bar columns (those of [`AGGREGATES`] present).
    pub aggregates: Vec<String>,
    /// `values[row][col]` over `metrics` then `aggregates`.
    pub values: Vec<Vec<Option<f64>>>,
    pub title: String,
}

impl Summary {
    pub fn from_frame(f: &Frame) -> Result<Summary> {
        let b = Bars::from_frame(f)?;
        let col = |name: &str| b.metrics.iter().position(|m| m == name);
        let aggregates: Vec<String> = b
            .metrics
            .iter()
            .filter(|m| is_aggregate(m))
            .cloned()
            .collect();
        if aggregates.is_empty() {
            return Err(Error::new(
                "no aggregate score (agg_*, bio, batch or total): a summary needs cellweave-score's table",
            )
            .field("total"));
        }
        let metrics: Vec<String> = b
            .metrics
            .iter()
            .filter(|m| !is_aggregate(m))
            .cloned()
            .collect();
        let order_cols: Vec<usize> = metrics
            .iter()
            .chain(&aggregates)
            .filter_map(|m| col(m))
            .collect();
        let sort_col = SORT_BY
            .iter()
            .find_map(|n| col(n))
            .or_else(|| col(&aggregates[0]));
        let mut rows: Vec<usize> = (0..b.embeddings.len()).collect();
        if let Some(t) = sort_col {
            rows.sort_by(|&x, &y| {
                let v = |e: usize| b.values[t][e].unwrap_or(f64::NEG_INFINITY);
                v(y).total_cmp(&v(x))
            });
        }
        Ok(Summary {
            methods: rows.iter().map(|&e| b.embeddings[e].clone()).collect(),
            values: rows
                .iter()
                .map(|&e| order_cols.iter().map(|&m| b.values[m][e]).collect())
                .collect(),
            metrics,
            aggregates,
            title: "Benchmark".into(),
        })
    }

    fn left(&self) -> i32 {
        self.methods
            .iter()
            .map(|m| style::text_size(m, 14.0, true).0)
            .max()
            .unwrap_or(0) as i32
            + 24
    }

    fn header_h(&self) -> i32 {
        self.metrics
            .iter()
            .chain(&self.aggregates)
            .map(|m| style::text_size(m, 12.0, false).0)
            .max()
            .unwrap_or(0) as i32
            + 16
    }

    fn top(&self) -> i32 {
        40
    }
}

impl Figure for Summary {
    fn size(&self) -> (u32, u32) {
        let w = self.left()
            + CELL_W * self.metrics.len() as i32
            + (BAR_W + 12) * self.aggregates.len() as i32
            + 20;
        let h = self.top() + self.header_h() + ROW_H * self.methods.len() as i32 + 20;
        (w.max(360) as u32, h as u32)
    }

    fn draw<DB: DrawingBackend>(&self, c: &Canvas<DB>) -> Result<()> {
        let (w, _) = self.size();
        c.title(&self.title, (w as i32 / 2, 20), 18.0)?;
        let y0 = self.top() + self.header_h();
        let x0 = self.left();
        let bar_x =
            |k: usize| x0 + CELL_W * self.metrics.len() as i32 + (BAR_W + 12) * k as i32 + 6;
        // Column headers, written upwards.
        // text_up centres the text on the point: lift each label by half its length.
        let up = |m: &str| y0 - 8 - style::text_size(m, 12.0, false).0 as i32 / 2;
        for (k, m) in self.metrics.iter().enumerate() {
            let x = x0 + CELL_W * k as i32 + CELL_W / 2 + 5;
            c.text_up(m, (x, up(m)), 12.0, INK)?;
        }
        for (k, a) in self.aggregates.iter().enumerate() {
            c.text_up(a, (bar_x(k) + 5, up(a)), 12.0, INK)?;
        }
        for (r, method) in self.methods.iter().enumerate() {
            let yc = y0 + ROW_H * r as i32 + ROW_H / 2;
            if r % 2 == 0 {
                let band = RGBColor(246, 246, 246).to_rgba();
                c.fill_rect((4, yc - ROW_H / 2), (w as i32 - 4, yc + ROW_H / 2), band)?;
            }
            c.text(method, (x0 - 12, yc), 14.0, Anchor::Right, INK, true)?;
            for (k, _) in self.metrics.iter().enumerate() {
                let xc = x0 + CELL_W * k as i32 + CELL_W / 2;
                match self.values[r][k] {
                    Some(v) => {
                        let t = v.clamp(0.0, 1.0);
                        let radius = (3.0 + t.sqrt() * (ROW_H as f64 / 2.0 - 4.0)) as i32;
                        c.marker(0, (xc, yc), radius, style::viridis(t).to_rgba())?;
                    }
                    None => c.text("NA", (xc, yc), 11.0, Anchor::Centre, INK, false)?,
                }
            }
            for (k, _) in self.aggregates.iter().enumerate() {
                let x = bar_x(k);
                c.fill_rect((x, yc - 9), (x + BAR_W - 40, yc + 9), GRID.to_rgba())?;
                if let Some(v) = self.values[r][self.metrics.len() + k] {
                    let t = v.clamp(0.0, 1.0);
                    let len = ((BAR_W - 40) as f64 * t) as i32;
                    c.fill_rect((x, yc - 9), (x + len, yc + 9), style::viridis(t).to_rgba())?;
                    c.text(
                        &format!("{v:.3}"),
                        (x + BAR_W - 36, yc),
                        11.0,
                        Anchor::Left,
                        INK,
                        false,
                    )?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Column, TableKind};

    #[test]
    fn rows_sorted_by_total_and_usage_columns_are_not_metrics() {
        let f = Frame::new(TableKind::Scores)
            .with(
                "embedding",
                Column::Str(vec![Some("pca".into()), Some("a".into()), Some("b".into())]),
            )
            .with("ari", Column::F64(vec![0.2, 0.5, 0.9]))
            .with("total", Column::F64(vec![0.4, 0.7, 0.6]))
            .with("wall_s", Column::F64(vec![f64::NAN, 12.0, 40.0]))
            .with("max_rss_mb", Column::F64(vec![f64::NAN, 100.0, 300.0]));
        let s = Summary::from_frame(&f).unwrap();
        assert_eq!(s.methods, ["a", "b", "pca"]);
        assert_eq!(s.metrics, ["ari"]);
        assert_eq!(s.aggregates, ["total"]);
        assert_eq!(s.values[0], [Some(0.5), Some(0.7)]);
        let (w, h) = s.size();
        assert!(w >= 360 && h > 3 * ROW_H as u32);
    }
}
