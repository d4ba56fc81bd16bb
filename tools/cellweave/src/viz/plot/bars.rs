//! A bar chart of integration metrics from a scores table: one group of horizontal bars per
//! metric, one bar per embedding, the value written at the end of each bar.
//!
//! The table may be long (columns `embedding`, `metric`, `value` and optionally `group`, as
//! cellweave-score writes it) or wide (one row per embedding, one numeric column per
//! metric; `n_cells` and `dim` columns are not metrics). With groups, metrics are shown
//! group by group (bio, batch, claire, aggregate, then others) under a group heading.

use super::style::{self, text_size, GREY, GRID, INK};
use super::{numbers, scale, Anchor, Canvas, Figure};
use crate::contract::{Column, Frame};
use crate::{Error, Result};
use plotters::prelude::*;

/// Metric values per embedding: `values[m][e]` (None when missing).
#[derive(Debug, Clone)]
pub struct Bars {
    pub metrics: Vec<String>,
    pub embeddings: Vec<String>,
    pub values: Vec<Vec<Option<f64>>>,
    /// The group of each metric (`bio`, `batch`, ...; empty when the table has none).
    pub groups: Vec<String>,
    pub title: String,
    pub width: Option<u32>,
}

fn texts(col: &Column) -> Vec<String> {
    (0..col.len())
        .map(|i| col.text(i).unwrap_or_else(|| "NA".into()))
        .collect()
}

/// The width of the widest of `names` in 14-pixel text (0: none).
fn widest(names: &[String]) -> u32 {
    names
        .iter()
        .map(|n| text_size(n, 14.0, false).0)
        .max()
        .unwrap_or(0)
}

fn index_of(list: &mut Vec<String>, s: &str) -> usize {
    list.iter().position(|x| x == s).unwrap_or_else(|| {
        list.push(s.to_string());
        list.len() - 1
    })
}

impl Bars {
    /// Read a scores table, long or wide (see the module documentation).
    pub fn from_frame(f: &Frame) -> Result<Bars> {
        let label_col = ["embedding", "method", "name"]
            .iter()
            .find_map(|n| f.column(n));
        let mut metrics = Vec::new();
        let mut embeddings = Vec::new();
        let mut cells: Vec<(usize, usize, f64)> = Vec::new();
        let mut group_of: Vec<String> = Vec::new();
        if let (Some(metric), Some(value)) = (
            f.column("metric"),
            f.column("value").or_else(|| f.column("score")),
        ) {
            let v = numbers(value).ok_or_else(|| Error::new("expected numbers").field("value"))?;
            let m = texts(metric);
            let e = label_col
                .map(texts)
                .unwrap_or_else(|| vec!["embedding".into(); f.n_rows()]);
            let g = f.column("group").map(texts);
            for r in 0..f.n_rows() {
                let mi = index_of(&mut metrics, &m[r]);
                if mi == group_of.len() {
                    group_of.push(g.as_ref().map(|g| g[r].clone()).unwrap_or_default());
                }
                let ei = index_of(&mut embeddings, &e[r]);
                cells.push((mi, ei, v[r]));
            }
        } else {
            let e = label_col
                .or_else(|| {
                    f.columns
                        .iter()
                        .map(|(_, c)| c)
                        .find(|c| numbers(c).is_none())
                })
                .map(texts)
                .unwrap_or_else(|| (1..=f.n_rows()).map(|i| format!("row {i}")).collect());
            for (name, col) in &f.columns {
                // Table shape and the workflow benchmark's resource use are not metrics.
                if ["n_cells", "dim", "wall_s", "max_rss_mb"].contains(&name.as_str()) {
                    continue;
                }
                if let Some(v) = numbers(col) {
                    let mi = index_of(&mut metrics, name);
                    group_of.resize(metrics.len(), String::new());
                    for (r, x) in v.iter().enumerate() {
                        let ei = index_of(&mut embeddings, &e[r]);
                        cells.push((mi, ei, *x));
                    }
                }
            }
        }
        if metrics.is_empty() {
            let names: Vec<&str> = f.columns.iter().map(|(n, _)| n.as_str()).collect();
            return Err(Error::new(format!(
                "no metric values found (expected columns embedding, metric, value, or numeric metric columns; found: {})",
                names.join(", ")
            ))
            .field("metric"));
        }
        let mut values = vec![vec![None; embeddings.len()]; metrics.len()];
        for (m, e, v) in cells {
            values[m][e] = v.is_finite().then_some(v);
        }
        // Group by group, in a fixed order of the known groups, stable within a group.
        const ORDER: [&str; 4] = ["bio", "batch", "claire", "aggregate"];
        let rank = |g: &str| ORDER.iter().position(|o| *o == g).unwrap_or(ORDER.len());
        let mut order: Vec<usize> = (0..metrics.len()).collect();
        order.sort_by_key(|&m| rank(&group_of[m]));
        Ok(Bars {
            metrics: order.iter().map(|&m| metrics[m].clone()).collect(),
            values: order.iter().map(|&m| values[m].clone()).collect(),
            groups: order.iter().map(|&m| group_of[m].clone()).collect(),
            embeddings,
            title: "Integration metrics".into(),
            width: None,
        })
    }

    /// Rows top to bottom: a heading where the group changes, then the metric.
    fn rows(&self) -> Vec<(Option<&str>, usize)> {
        let mut out = Vec::new();
        for m in 0..self.metrics.len() {
            let g = self.groups.get(m).map(String::as_str).unwrap_or("");
            if !g.is_empty() && (m == 0 || self.groups[m - 1] != g) && style::text_available() {
                out.push((Some(g), m));
            }
            out.push((None, m));
        }
        out
    }

    fn row_h(&self, heading: bool) -> u32 {
        if heading {
            26
        } else {
            self.group_h()
        }
    }

    fn plot_h(&self) -> u32 {
        self.rows()
            .iter()
            .map(|(h, _)| self.row_h(h.is_some()))
            .sum()
    }

    fn bar_h(&self) -> u32 {
        if self.embeddings.len() == 1 {
            18
        } else {
            14
        }
    }
    fn group_h(&self) -> u32 {
        self.bar_h() * self.embeddings.len() as u32 + 12
    }
    fn left(&self) -> u32 {
        widest(&self.metrics) + 24
    }
    fn legend_h(&self) -> u32 {
        if style::text_available() && self.embeddings.len() > 1 {
            24 * self.legend_rows() as u32
        } else {
            0
        }
    }
    fn legend_rows(&self) -> usize {
        let w = self.size().0.saturating_sub(40).max(100);
        let per_row = (w / self.legend_item_w()).max(1) as usize;
        self.embeddings.len().div_ceil(per_row)
    }
    fn legend_item_w(&self) -> u32 {
        widest(&self.embeddings) + 40
    }
    fn top(&self) -> u32 {
        if style::text_available() {
            44
        } else {
            12
        }
    }
    fn range(&self) -> (f64, f64) {
        let all = self.values.iter().flatten().flatten();
        let lo = all.clone().fold(0f64, |m, &v| m.min(v));
        let hi = all.fold(1f64, |m, &v| m.max(v));
        (lo, hi)
    }
}

impl Figure for Bars {
    fn size(&self) -> (u32, u32) {
        let w = self.width.unwrap_or(860);
        let plot_h = self.plot_h();
        // legend_h needs the width only.
        let legend = if style::text_available() && self.embeddings.len() > 1 {
            let per_row = (w.saturating_sub(40).max(100) / self.legend_item_w()).max(1) as usize;
            24 * self.embeddings.len().div_ceil(per_row) as u32
        } else {
            0
        };
        (w, self.top() + legend + plot_h + 44)
    }

    fn draw<DB: DrawingBackend>(&self, c: &Canvas<DB>) -> Result<()> {
        let (w, _) = self.size();
        let colours = style::categorical(self.embeddings.len());
        c.title(&self.title, (w as i32 / 2, 22), 18.0)?;
        // Legend rows under the title.
        let item_w = self.legend_item_w() as i32;
        let per_row = ((w as i32 - 40).max(100) / item_w).max(1) as usize;
        if self.legend_h() > 0 {
            let row_w = item_w * per_row.min(self.embeddings.len()) as i32;
            let start = (w as i32 - row_w) / 2;
            for (e, name) in self.embeddings.iter().enumerate() {
                let (x, y) = (
                    start + (e % per_row) as i32 * item_w,
                    self.top() as i32 + 12 + (e / per_row) as i32 * 24,
                );
                c.fill_rect((x, y - 7), (x + 14, y + 7), colours[e].to_rgba())?;
                c.text(name, (x + 20, y), 14.0, Anchor::Left, INK, false)?;
            }
        }
        let y0 = (self.top() + self.legend_h() + 6) as i32;
        let x0 = self.left() as i32;
        let x1 = w as i32 - 56;
        let y1 = y0 + self.plot_h() as i32;
        let (lo, hi) = self.range();
        let ticks = style::nice_ticks(lo, hi, 5);
        for &t in &ticks {
            let x = scale(t, lo, hi, x0, x1);
            c.line(vec![(x, y0), (x, y1)], GRID.to_rgba(), 1)?;
            c.tick(t, (x, y1 + 14), Anchor::Centre)?;
        }
        let zero = scale(0.0, lo, hi, x0, x1);
        let bar_h = self.bar_h() as i32;
        let mut gy = y0;
        for (heading, m) in self.rows() {
            if let Some(g) = heading {
                c.text(g, (12, gy + 15), 14.0, Anchor::Left, INK, true)?;
                gy += self.row_h(true) as i32;
                continue;
            }
            let metric = &self.metrics[m];
            gy += self.group_h() as i32;
            let gy = gy - self.group_h() as i32 + 6;
            let mid = gy + bar_h * self.embeddings.len() as i32 / 2;
            c.text(metric, (x0 - 10, mid), 14.0, Anchor::Right, INK, false)?;
            for (e, colour) in colours.iter().enumerate() {
                let by = gy + e as i32 * bar_h;
                match self.values[m][e] {
                    Some(v) => {
                        let x = scale(v, lo, hi, x0, x1);
                        c.fill_rect(
                            (zero.min(x), by + 1),
                            (zero.max(x), by + bar_h - 1),
                            colour.to_rgba(),
                        )?;
                        let (tx, anchor) = if v >= 0.0 {
                            (x.max(zero) + 4, Anchor::Left)
                        } else {
                            (x.min(zero) - 4, Anchor::Right)
                        };
                        c.text(
                            &format!("{v:.3}"),
                            (tx, by + bar_h / 2),
                            11.0,
                            anchor,
                            INK,
                            false,
                        )?;
                    }
                    None => c.text(
                        "NA",
                        (zero + 4, by + bar_h / 2),
                        11.0,
                        Anchor::Left,
                        GREY,
                        false,
                    )?,
                }
            }
        }
        c.line(vec![(zero, y0), (zero, y1)], INK.to_rgba(), 1)?;
        c.text(
            "score",
            ((x0 + x1) / 2, y1 + 32),
            13.0,
            Anchor::Centre,
            INK,
            false,
        )?;
        Ok(())
    }
}
