//! Scatter panels of a 2-D embedding (UMAP), one per colouring, side by side.
//!
//! Categorical columns get a legend with a colour-blind-safe palette
//! ([`super::style::categorical`]); numeric columns with more than 12 distinct values get the
//! viridis scale and a colour bar. Points are drawn in a seeded random order (so no batch
//! hides another), missing values first in grey, with a radius that shrinks with the number
//! of cells.

use super::style::{self, text_size, INK, MISSING};
use super::{numbers, scale, Anchor, Canvas, Figure};
use crate::contract::{Categorical, Column};
use crate::viz::umap::SplitMix;
use crate::Result;
use plotters::prelude::*;

/// How a panel colours the cells.
#[derive(Debug, Clone)]
pub enum Colouring {
    /// `codes[i]` indexes `names`; [`Categorical::MISSING`] is a missing value.
    Categories { codes: Vec<u32>, names: Vec<String> },
    /// NaN is a missing value.
    Continuous { values: Vec<f64> },
}

/// One panel: a title and a colouring of every cell.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub colouring: Colouring,
}

impl Panel {
    /// A panel colouring cells by a per-cell column. Numbers with more than 12 distinct values
    /// are continuous; everything else is categorical, categories in natural order (numeric
    /// when they all are numbers, else alphabetical).
    pub fn from_column(title: &str, col: &Column) -> Panel {
        if let Some(values) = numbers(col) {
            let mut distinct: Vec<u64> = values
                .iter()
                .filter(|v| v.is_finite())
                .map(|v| v.to_bits())
                .collect();
            distinct.sort_unstable();
            distinct.dedup();
            if distinct.len() > 12 {
                return Panel {
                    title: title.to_string(),
                    colouring: Colouring::Continuous { values },
                };
            }
        }
        let cat = col.to_categorical();
        let (codes, names) = natural_order(&cat);
        Panel {
            title: title.to_string(),
            colouring: Colouring::Categories { codes, names },
        }
    }
}

/// Categories sorted naturally (numbers numerically, text alphabetically), codes remapped.
fn natural_order(cat: &Categorical) -> (Vec<u32>, Vec<String>) {
    let mut order: Vec<usize> = (0..cat.categories.len()).collect();
    let nums: Option<Vec<f64>> = cat
        .categories
        .iter()
        .map(|c| c.parse::<f64>().ok())
        .collect();
    match nums {
        Some(n) => order.sort_by(|&a, &b| n[a].total_cmp(&n[b])),
        None => order.sort_by(|&a, &b| natural_cmp(&cat.categories[a], &cat.categories[b])),
    }
    let mut remap = vec![0u32; order.len()];
    for (new, &old) in order.iter().enumerate() {
        remap[old] = new as u32;
    }
    let codes = cat
        .codes
        .iter()
        .map(|&c| {
            if c == Categorical::MISSING {
                c
            } else {
                remap[c as usize]
            }
        })
        .collect();
    (
        codes,
        order.iter().map(|&o| cat.categories[o].clone()).collect(),
    )
}

/// Compare text with runs of digits as numbers (`c2` < `c10`), ignoring case first.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, String)> {
        let mut out: Vec<(bool, String)> = Vec::new();
        for ch in s.chars() {
            let digit = ch.is_ascii_digit();
            match out.last_mut() {
                Some((d, run)) if *d == digit => run.push(ch),
                _ => out.push((digit, ch.to_string())),
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let ord = match (x.0, y.0) {
            (true, true) => {
                let (p, q) = (x.1.trim_start_matches('0'), y.1.trim_start_matches('0'));
                p.len().cmp(&q.len()).then_with(|| p.cmp(q))
            }
            _ => x.1.to_lowercase().cmp(&y.1.to_lowercase()),
        };
        if ord != std::cmp::Ordering::Equal {
            return ord;
        }
    }
    ca.len().cmp(&cb.len()).then_with(|| a.cmp(b))
}

/// Size and look of a scatter figure.
#[derive(Debug, Clone, Default)]
pub struct ScatterOptions {
    /// Total width and height in pixels (default: 480-pixel square panels plus legends).
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Point radius in pixels (default: from the number of cells and the panel size).
    pub point_radius: Option<f64>,
    /// A title above all panels.
    pub title: Option<String>,
    /// Axis names (default UMAP1, UMAP2).
    pub axes: Option<(String, String)>,
    /// Seed of the drawing order.
    pub seed: u64,
}

const SIDE: u32 = 480;
const MARGIN: u32 = 12;
const TITLE: f64 = 18.0;
const LABEL: f64 = 14.0;
const ROW: u32 = 20;

/// Side-by-side scatter panels of `n x 2` coordinates.
pub struct Scatter {
    xy: Vec<f32>,
    panels: Vec<Panel>,
    opts: ScatterOptions,
    // Layout in pixels: square plot areas of `side`, each panel followed by its legend.
    side: u32,
    legend_w: Vec<u32>,
    top: u32,
    axis: u32,
    width: u32,
    height: u32,
}

impl Scatter {
    pub fn new(xy: Vec<f32>, panels: Vec<Panel>, opts: ScatterOptions) -> Scatter {
        let text = style::text_available();
        let n_panels = panels.len().max(1) as u32;
        let axis = if text { 28 } else { MARGIN };
        let suptitle = if text && opts.title.is_some() { 36 } else { 0 };
        let top = suptitle + if text { 40 } else { MARGIN };
        let side_for = |legends: &[u32]| -> u32 {
            match (opts.width, opts.height) {
                (None, None) => SIDE,
                (w, h) => {
                    let fixed: u32 = legends.iter().map(|l| axis + 2 * MARGIN + l).sum();
                    let from_w = w.map(|w| w.saturating_sub(fixed) / n_panels);
                    let from_h = h.map(|h| h.saturating_sub(top + axis + MARGIN));
                    from_w
                        .into_iter()
                        .chain(from_h)
                        .min()
                        .unwrap_or(SIDE)
                        .max(60)
                }
            }
        };
        // A legend's width depends on how many rows fit next to the panel, so on its side.
        let mut side = side_for(&[]);
        let mut legend_w = Vec::new();
        for _ in 0..3 {
            legend_w = panels.iter().map(|p| legend_width(p, side)).collect();
            side = side_for(&legend_w);
        }
        let natural: u32 = legend_w.iter().map(|l| axis + side + 2 * MARGIN + l).sum();
        let width = opts.width.unwrap_or(natural.max(1));
        let height = opts.height.unwrap_or(top + side + axis + MARGIN);
        Scatter {
            xy,
            panels,
            opts,
            side,
            legend_w,
            top,
            axis,
            width,
            height,
        }
    }

    fn n(&self) -> usize {
        self.xy.len() / 2
    }

    /// Point radius: 0.4 x the side of the square each cell would get (1 to 6 pixels).
    fn radius(&self) -> i32 {
        match self.opts.point_radius {
            Some(r) => r.round().max(1.0) as i32,
            None => {
                let per_cell = (self.side as f64).powi(2) / self.n().max(1) as f64;
                (0.4 * per_cell.sqrt()).clamp(1.0, 6.0).round() as i32
            }
        }
    }

    /// Left edge of each panel, the spare width shared out evenly between panels.
    fn panel_x(&self) -> Vec<i32> {
        let widths: Vec<u32> = self
            .legend_w
            .iter()
            .map(|l| self.axis + self.side + 2 * MARGIN + l)
            .collect();
        let spare = self.width.saturating_sub(widths.iter().sum()) / widths.len().max(1) as u32;
        let mut x = spare / 2;
        widths
            .iter()
            .map(|w| {
                let at = x as i32;
                x += w + spare;
                at
            })
            .collect()
    }
}

fn legend_rows(side: u32) -> usize {
    ((side.saturating_sub(10)) / ROW).max(1) as usize
}

fn legend_width(p: &Panel, side: u32) -> u32 {
    if !style::text_available() {
        return 0;
    }
    match &p.colouring {
        Colouring::Categories { names, codes } => {
            let missing = codes.contains(&Categorical::MISSING);
            let n = names.len() + missing as usize;
            let widest = names
                .iter()
                .map(|s| text_size(s, LABEL, false).0)
                .chain([text_size("NA", LABEL, false).0])
                .max()
                .unwrap_or(0);
            let cols = n.div_ceil(legend_rows(side)) as u32;
            cols * (widest + 30) + 8
        }
        Colouring::Continuous { values } => {
            let (lo, hi) = finite_range(values);
            let w = [lo, hi]
                .iter()
                .map(|v| text_size(&style::tick_text(*v), LABEL, false).0)
                .max()
                .unwrap_or(0);
            w + 44
        }
    }
}

fn finite_range(v: &[f64]) -> (f64, f64) {
    v.iter()
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
            (l.min(x), h.max(x))
        })
}

impl Figure for Scatter {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn draw<DB: DrawingBackend>(&self, c: &Canvas<DB>) -> Result<()> {
        let n = self.n();
        let (xlo, xhi) = finite_range(
            &self
                .xy
                .iter()
                .step_by(2)
                .map(|&v| v as f64)
                .collect::<Vec<_>>(),
        );
        let (ylo, yhi) = finite_range(
            &self
                .xy
                .iter()
                .skip(1)
                .step_by(2)
                .map(|&v| v as f64)
                .collect::<Vec<_>>(),
        );
        let pad = |lo: f64, hi: f64| {
            let p = if hi > lo { 0.04 * (hi - lo) } else { 1.0 };
            (lo - p, hi + p)
        };
        let ((xlo, xhi), (ylo, yhi)) = (pad(xlo, xhi), pad(ylo, yhi));
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = SplitMix::new(self.opts.seed);
        for i in (1..n).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let r = self.radius();
        let alpha = if n > 20_000 { 0.6 } else { 0.85 };
        let (ax, ay) = self
            .opts
            .axes
            .clone()
            .unwrap_or(("UMAP1".into(), "UMAP2".into()));
        if let Some(t) = &self.opts.title {
            let (w, _) = self.size();
            c.text(t, (w as i32 / 2, 20), 20.0, Anchor::Centre, INK, true)?;
        }
        let panel_x = self.panel_x();
        for (p, panel) in self.panels.iter().enumerate() {
            let ox = panel_x[p];
            let legend_w = self.legend_w[p];
            let x0 = ox + self.axis as i32 + MARGIN as i32;
            let y0 = self.top as i32;
            let (x1, y1) = (x0 + self.side as i32, y0 + self.side as i32);
            c.text(
                &panel.title,
                ((x0 + x1) / 2, y0 - 18),
                TITLE,
                Anchor::Centre,
                INK,
                true,
            )?;
            c.stroke_rect((x0, y0), (x1, y1), RGBColor(0x99, 0x99, 0x99), 1)?;
            c.text(
                &ax,
                ((x0 + x1) / 2, y1 + self.axis as i32 / 2 + 2),
                LABEL,
                Anchor::Centre,
                INK,
                false,
            )?;
            c.text_up(
                &ay,
                (ox + MARGIN as i32 + self.axis as i32 / 2 - 4, (y0 + y1) / 2),
                LABEL,
                INK,
            )?;
            let px = |i: usize| {
                (
                    scale(self.xy[2 * i] as f64, xlo, xhi, x0, x1),
                    scale(self.xy[2 * i + 1] as f64, ylo, yhi, y1, y0),
                )
            };
            let lx = x1 + MARGIN as i32 + 6;
            match &panel.colouring {
                Colouring::Categories { codes, names } => {
                    let colours = style::categorical(names.len());
                    for &i in order.iter().filter(|&&i| codes[i] == Categorical::MISSING) {
                        c.marker(0, px(i), r, MISSING.mix(alpha))?;
                    }
                    for &i in order.iter().filter(|&&i| codes[i] != Categorical::MISSING) {
                        let k = codes[i] as usize;
                        c.marker(
                            style::marker_of(k, names.len()),
                            px(i),
                            r,
                            colours[k].mix(alpha),
                        )?;
                    }
                    let mut entries: Vec<(String, RGBColor, usize)> = names
                        .iter()
                        .enumerate()
                        .map(|(k, s)| (s.clone(), colours[k], style::marker_of(k, names.len())))
                        .collect();
                    if codes.contains(&Categorical::MISSING) {
                        entries.push(("NA".into(), MISSING, 0));
                    }
                    let rows = legend_rows(self.side);
                    let col_w = (legend_w.saturating_sub(8)) as i32
                        / entries.len().div_ceil(rows).max(1) as i32;
                    for (e, (name, colour, shape)) in entries.iter().enumerate() {
                        let (cx, cy) = (
                            lx + (e / rows) as i32 * col_w,
                            y0 + 10 + (e % rows) as i32 * ROW as i32,
                        );
                        if c.text {
                            c.marker(*shape, (cx + 6, cy), 6, colour.to_rgba())?;
                            c.text(name, (cx + 18, cy), LABEL, Anchor::Left, INK, false)?;
                        }
                    }
                }
                Colouring::Continuous { values } => {
                    let (lo, hi) = finite_range(values);
                    let t = |v: f64| if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                    for &i in order.iter().filter(|&&i| !values[i].is_finite()) {
                        c.marker(0, px(i), r, MISSING.mix(alpha))?;
                    }
                    // Low values first, high values on top (as scanpy does).
                    let mut by_value: Vec<usize> = order
                        .iter()
                        .copied()
                        .filter(|&i| values[i].is_finite())
                        .collect();
                    by_value.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
                    for i in by_value {
                        c.marker(0, px(i), r, style::viridis(t(values[i])).mix(alpha))?;
                    }
                    if c.text && lo.is_finite() {
                        let (bt, bb) = (y0 + 10, y0 + 10 + (self.side as i32 * 6 / 10));
                        for y in bt..bb {
                            let v = 1.0 - (y - bt) as f64 / (bb - bt).max(1) as f64;
                            c.fill_rect((lx, y), (lx + 16, y + 1), style::viridis(v).to_rgba())?;
                        }
                        c.stroke_rect((lx, bt), (lx + 16, bb), RGBColor(0x99, 0x99, 0x99), 1)?;
                        c.text(
                            &style::tick_text(hi),
                            (lx + 22, bt),
                            LABEL,
                            Anchor::Left,
                            INK,
                            false,
                        )?;
                        c.text(
                            &style::tick_text(lo),
                            (lx + 22, bb),
                            LABEL,
                            Anchor::Left,
                            INK,
                            false,
                        )?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Panels for the requested obs columns of an embedding. With none requested: `batch` and
/// `cell_type` where present, else the first categorical column, else one plain panel.
pub fn panels_for(emb: &crate::contract::EmbeddingTable, colours: &[String]) -> Result<Vec<Panel>> {
    let n = emb.n_cells();
    let mut names: Vec<String> = colours.to_vec();
    if names.is_empty() {
        names = ["batch", "cell_type"]
            .iter()
            .filter(|c| emb.column(c).is_some())
            .map(|c| c.to_string())
            .collect();
    }
    if names.is_empty() {
        if let Some((name, _)) = emb
            .obs
            .iter()
            .find(|(_, c)| matches!(c, Column::Cat(_) | Column::Str(_)))
        {
            names.push(name.clone());
        }
    }
    if names.is_empty() {
        let all = Categorical::constant("cells", n);
        return Ok(vec![Panel::from_column(&emb.name, &Column::Cat(all))]);
    }
    names
        .iter()
        .map(|name| match emb.column(name) {
            Some(col) => Ok(Panel::from_column(name, col)),
            None => {
                let have: Vec<&str> = emb.obs.iter().map(|(n, _)| n.as_str()).collect();
                Err(crate::Error::new(format!(
                    "no such per-cell column (columns: {}; add --obs obs.tsv for text embeddings)",
                    if have.is_empty() {
                        "none".to_string()
                    } else {
                        have.join(", ")
                    }
                ))
                .field(name.clone()))
            }
        })
        .collect()
}
