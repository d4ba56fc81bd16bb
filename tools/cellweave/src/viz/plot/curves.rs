//! Training curves from a training-log table: one panel per `stage`, one line per loss
//! column against `epoch` (or `step`, or the row number).
//!
//! The log is read loosely: columns whose name contains `loss` are plotted (every other
//! numeric column when none does); `stage` splits the panels when present. A y axis
//! spanning more than two decades of positive values is drawn on a log scale.

use super::style::{self, GREY, GRID, INK};
use super::{numbers, scale, Anchor, Canvas, Figure};
use crate::contract::Frame;
use crate::{Error, Result};
use plotters::prelude::*;

/// Lines per panel.
#[derive(Debug, Clone)]
pub struct CurvePanel {
    pub title: String,
    /// (series name, points (x, y)).
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

#[derive(Debug, Clone)]
pub struct Curves {
    pub panels: Vec<CurvePanel>,
    pub x_label: String,
    pub title: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

impl Curves {
    pub fn from_frame(f: &Frame) -> Result<Curves> {
        let n = f.n_rows();
        let x_name = ["epoch", "step", "iteration"]
            .iter()
            .find(|n| f.column(n).and_then(numbers).is_some());
        let xs: Vec<f64> = match x_name {
            Some(name) => numbers(f.column(name).unwrap()).unwrap(),
            None => (0..n).map(|i| i as f64).collect(),
        };
        let stages: Vec<String> = match f.column("stage") {
            Some(c) => (0..n)
                .map(|i| c.text(i).unwrap_or_else(|| "NA".into()))
                .collect(),
            None => vec![String::new(); n],
        };
        let skip = |name: &str| Some(name) == x_name.copied() || name == "stage";
        let numeric: Vec<(&String, Vec<f64>)> = f
            .columns
            .iter()
            .filter(|(name, _)| !skip(name))
            .filter_map(|(name, c)| numbers(c).map(|v| (name, v)))
            .collect();
        let losses: Vec<&(&String, Vec<f64>)> = numeric
            .iter()
            .filter(|(name, _)| name.to_lowercase().contains("loss"))
            .collect();
        let chosen: Vec<&(&String, Vec<f64>)> = if losses.is_empty() {
            numeric.iter().collect()
        } else {
            losses
        };
        if chosen.is_empty() || n == 0 {
            let names: Vec<&str> = f.columns.iter().map(|(n, _)| n.as_str()).collect();
            return Err(Error::new(format!(
                "no loss values to plot (expected numeric columns such as epoch and loss; found: {})",
                names.join(", ")
            ))
            .field("loss"));
        }
        let mut stage_names: Vec<String> = Vec::new();
        for s in &stages {
            if !stage_names.contains(s) {
                stage_names.push(s.clone());
            }
        }
        let panels = stage_names
            .iter()
            .map(|st| CurvePanel {
                title: if st.is_empty() {
                    String::new()
                } else {
                    format!("stage {st}")
                },
                series: chosen
                    .iter()
                    .map(|(name, ys)| {
                        let pts = (0..n)
                            .filter(|&r| &stages[r] == st && xs[r].is_finite() && ys[r].is_finite())
                            .map(|r| (xs[r], ys[r]))
                            .collect();
                        (name.to_string(), pts)
                    })
                    .filter(|(_, p): &(String, Vec<(f64, f64)>)| !p.is_empty())
                    .collect(),
            })
            .collect();
        Ok(Curves {
            panels,
            x_label: x_name
                .map(|s| s.to_string())
                .unwrap_or_else(|| "row".into()),
            title: "Training".into(),
            width: None,
            height: None,
        })
    }
}

/// Ticks of a log10 axis spanning [lo, hi] (in log10 units): (position, value) at 1, 2 and
/// 5 times the powers of ten, or the powers alone when the axis spans more than 3 decades.
fn log_ticks(lo: f64, hi: f64) -> Vec<(f64, f64)> {
    let mantissas: &[f64] = if hi - lo > 3.0 {
        &[1.0]
    } else {
        &[1.0, 2.0, 5.0]
    };
    let mut out = Vec::new();
    for p in lo.floor() as i32..=hi.ceil() as i32 {
        for m in mantissas {
            let v = m * 10f64.powi(p);
            let at = v.log10();
            if at >= lo && at <= hi {
                out.push((at, v));
            }
        }
    }
    out
}

const PANEL_W: u32 = 520;
const PANEL_H: u32 = 380;

impl Figure for Curves {
    fn size(&self) -> (u32, u32) {
        let n = self.panels.len().max(1) as u32;
        (
            self.width.unwrap_or(PANEL_W * n),
            self.height.unwrap_or(PANEL_H + 40),
        )
    }

    fn draw<DB: DrawingBackend>(&self, c: &Canvas<DB>) -> Result<()> {
        let (w, h) = self.size();
        let text = c.text;
        c.title(&self.title, (w as i32 / 2, 20), 18.0)?;
        let names: Vec<&String> = {
            let mut v: Vec<&String> = Vec::new();
            for p in &self.panels {
                for (s, _) in &p.series {
                    if !v.contains(&s) {
                        v.push(s);
                    }
                }
            }
            v
        };
        let colours = style::categorical(names.len());
        let pw = w as i32 / self.panels.len().max(1) as i32;
        for (p, panel) in self.panels.iter().enumerate() {
            let (left, top) = (if text { 64 } else { 12 }, if text { 64 } else { 12 });
            let x0 = p as i32 * pw + left;
            let x1 = (p as i32 + 1) * pw - 16;
            let (y0, y1) = (top, h as i32 - if text { 48 } else { 12 });
            c.title(&panel.title, ((x0 + x1) / 2, 46), 15.0)?;
            let pts = panel.series.iter().flat_map(|(_, p)| p.iter());
            let (xlo, xhi) = pts
                .clone()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), p| {
                    (l.min(p.0), h.max(p.0))
                });
            let (ylo, yhi) = pts.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), p| {
                (l.min(p.1), h.max(p.1))
            });
            if !xlo.is_finite() {
                continue;
            }
            let log = ylo > 0.0 && yhi / ylo > 100.0;
            let fy = |y: f64| if log { y.log10() } else { y };
            let (mut ylo, mut yhi) = (fy(ylo), fy(yhi));
            let pad = if yhi > ylo { 0.05 * (yhi - ylo) } else { 0.5 };
            ylo -= pad;
            yhi += pad;
            let (xlo, xhi) = if xhi > xlo {
                (xlo, xhi)
            } else {
                (xlo - 0.5, xhi + 0.5)
            };
            let yticks: Vec<(f64, f64)> = if log {
                log_ticks(ylo, yhi)
            } else {
                style::nice_ticks(ylo, yhi, 5)
                    .into_iter()
                    .map(|t| (t, t))
                    .collect()
            };
            for (at, value) in yticks {
                let y = scale(at, ylo, yhi, y1, y0);
                c.line(vec![(x0, y), (x1, y)], GRID.to_rgba(), 1)?;
                c.tick(value, (x0 - 6, y), Anchor::Right)?;
            }
            for t in style::nice_ticks(xlo, xhi, 6) {
                let x = scale(t, xlo, xhi, x0, x1);
                c.line(vec![(x, y1), (x, y1 + 4)], GREY.to_rgba(), 1)?;
                c.tick(t, (x, y1 + 14), Anchor::Centre)?;
            }
            c.stroke_rect((x0, y0), (x1, y1), RGBColor(0x99, 0x99, 0x99), 1)?;
            c.text(
                &self.x_label,
                ((x0 + x1) / 2, y1 + 34),
                13.0,
                Anchor::Centre,
                INK,
                false,
            )?;
            c.text_up(
                if log { "loss (log scale)" } else { "loss" },
                (p as i32 * pw + 16, (y0 + y1) / 2),
                13.0,
                INK,
            )?;
            for (name, points) in &panel.series {
                let k = names.iter().position(|n| *n == name).unwrap_or(0);
                let line: Vec<(i32, i32)> = points
                    .iter()
                    .map(|&(x, y)| (scale(x, xlo, xhi, x0, x1), scale(fy(y), ylo, yhi, y1, y0)))
                    .collect();
                c.line(line.clone(), colours[k].to_rgba(), 2)?;
                if points.len() <= 40 {
                    for pt in line {
                        c.marker(0, pt, 3, colours[k].to_rgba())?;
                    }
                }
            }
            // Legend inside the panel, top right.
            if names.len() > 1 {
                for (k, name) in names.iter().enumerate() {
                    let tw = style::text_size(name, 12.0, false).0 as i32;
                    let (lx, ly) = (x1 - tw - 36, y0 + 14 + 18 * k as i32);
                    if text {
                        c.fill_rect((lx - 4, ly - 9), (x1 - 6, ly + 9), WHITE.mix(0.85))?;
                        c.line(vec![(lx, ly), (lx + 20, ly)], colours[k].to_rgba(), 3)?;
                        c.text(name, (lx + 26, ly), 12.0, Anchor::Left, INK, false)?;
                    }
                }
            }
        }
        Ok(())
    }
}
