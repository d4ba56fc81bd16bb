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

/// The colour each category of `cat` gets in a scatter panel, in `cat`'s own category order
/// (what `uns['<key>_colors']` of an exported `.h5ad` holds).
pub fn category_colours(cat: &Categorical) -> Vec<RGBColor> {
    let n = cat.categories.len();
    let identity = Categorical {
        codes: (0..n as u32).collect(),
        categories: cat.categories.clone(),
    };
    let (rank, _) = natural_order(&identity);
    let palette = style::categorical(n);
    rank.iter().map(|&r| palette[r as usize]).collect()
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
    /// Dots per inch: every length of the design (480-pixel panels at 120 dpi) scales with it.
    pub dpi: Option<f64>,
    /// Axis names (default UMAP1, UMAP2).
    pub axes: Option<(String, String)>,
    /// Seed of the drawing order.
    pub seed: u64,
}

/// The layout's lengths at `dpi / 120` times the design's pixels (480-pixel panels: 4
/// inches at 120 dpi, the default; text sizes in pixels per em).
#[derive(Debug, Clone, Copy)]
struct Units(f64);

impl Units {
    fn px(self, v: f64) -> u32 {
        (v * self.0).round().max(1.0) as u32
    }
    fn i(self, v: f64) -> i32 {
        (v * self.0).round() as i32
    }
    fn size(self, v: f64) -> f64 {
        v * self.0
    }
}

const SIDE: f64 = 480.0;
const MARGIN: f64 = 12.0;
const TITLE: f64 = 18.0;
const LABEL: f64 = 14.0;
const ROW: f64 = 20.0;
/// The dots per inch the design's pixel sizes are for.
pub const DESIGN_DPI: f64 = 120.0;

/// Side-by-side scatter panels of `n x 2` coordinates.
pub struct Scatter {
    u: Units,
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
        let u = Units(opts.dpi.unwrap_or(DESIGN_DPI) / DESIGN_DPI);
        let margin = u.px(MARGIN);
        let n_panels = panels.len().max(1) as u32;
        let axis = if text { u.px(28.0) } else { margin };
        let suptitle = if text && opts.title.is_some() {
            u.px(36.0)
        } else {
            0
        };
        let top = suptitle + if text { u.px(40.0) } else { margin };
        let side_for = |legends: &[u32]| -> u32 {
            match (opts.width, opts.height) {
                (None, None) => u.px(SIDE),
                (w, h) => {
                    let fixed: u32 = legends.iter().map(|l| axis + 2 * margin + l).sum();
                    let from_w = w.map(|w| w.saturating_sub(fixed) / n_panels);
                    let from_h = h.map(|h| h.saturating_sub(top + axis + margin));
                    from_w
                        .into_iter()
                        .chain(from_h)
                        .min()
                        .unwrap_or(u.px(SIDE))
                        .max(60)
                }
            }
        };
        // A legend's width depends on how many rows fit next to the panel, so on its side.
        let mut side = side_for(&[]);
        let mut legend_w = Vec::new();
        for _ in 0..3 {
            legend_w = panels.iter().map(|p| legend_width(p, side, u)).collect();
            side = side_for(&legend_w);
        }
        let natural: u32 = legend_w.iter().map(|l| axis + side + 2 * margin + l).sum();
        // Never narrower than the panels and their legends: a legend never covers data.
        let width = opts.width.unwrap_or(0).max(natural.max(1));
        let height = opts.height.unwrap_or(top + side + axis + margin);
        Scatter {
            u,
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

    /// Point radius in pixels: `--point-size`, else [`point_radius`].
    fn radius(&self) -> i32 {
        match self.opts.point_radius {
            Some(r) => r.round().max(1.0) as i32,
            None => point_radius(self.n(), self.side),
        }
    }

    /// Left edge of each panel, the spare width shared out evenly between panels.
    fn panel_x(&self) -> Vec<i32> {
        let widths: Vec<u32> = self
            .legend_w
            .iter()
            .map(|l| self.axis + self.side + 2 * self.u.px(MARGIN) + l)
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

/// Point radius in pixels for `n` cells on a panel `side` pixels wide, as scanpy sizes
/// them: marker size `120000 / n` points² with the "." marker (a circle of half the marker
/// size, so `0.5 sqrt(120000 / n)` points across) on a 4-inch (288-point) panel; at least
/// 1 pixel.
pub fn point_radius(n: usize, side: u32) -> i32 {
    let diameter_pt = 0.5 * (120_000.0 / n.max(1) as f64).sqrt();
    let r = 0.5 * diameter_pt / 288.0 * side as f64;
    r.round().max(1.0) as i32
}

/// Opacity of the points: opaque up to 2,000 cells, then falling with the square root of
/// the number of cells (0.58 at 6,000; 0.2 from 50,000), so that dense regions read as
/// denser instead of one flat colour.
pub fn point_alpha(n: usize) -> f64 {
    (2_000.0 / n.max(1) as f64).sqrt().clamp(0.2, 1.0)
}

fn legend_rows(side: u32, u: Units) -> usize {
    ((side.saturating_sub(u.px(10.0))) / u.px(ROW)).max(1) as usize
}

fn legend_width(p: &Panel, side: u32, u: Units) -> u32 {
    if !style::text_available() {
        return 0;
    }
    match &p.colouring {
        Colouring::Categories { names, codes } => {
            let missing = codes.contains(&Categorical::MISSING);
            let n = names.len() + missing as usize;
            let widest = names
                .iter()
                .map(|s| text_size(s, u.size(LABEL), false).0)
                .chain([text_size("NA", u.size(LABEL), false).0])
                .max()
                .unwrap_or(0);
            let cols = n.div_ceil(legend_rows(side, u)) as u32;
            cols * (widest + u.px(30.0)) + u.px(8.0)
        }
        Colouring::Continuous { values } => {
            let (lo, hi) = finite_range(values);
            let w = [lo, hi]
                .iter()
                .map(|v| text_size(&style::tick_text(*v), u.size(LABEL), false).0)
                .max()
                .unwrap_or(0);
            w + u.px(44.0)
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
        let u = self.u;
        let r = self.radius();
        let alpha = point_alpha(n);
        let (ax, ay) = self
            .opts
            .axes
            .clone()
            .unwrap_or(("UMAP1".into(), "UMAP2".into()));
        if let Some(t) = &self.opts.title {
            let (w, _) = self.size();
            c.title(t, (w as i32 / 2, u.i(20.0)), u.size(20.0))?;
        }
        let panel_x = self.panel_x();
        for (p, panel) in self.panels.iter().enumerate() {
            let ox = panel_x[p];
            let legend_w = self.legend_w[p];
            let x0 = ox + self.axis as i32 + u.i(MARGIN);
            let y0 = self.top as i32;
            let (x1, y1) = (x0 + self.side as i32, y0 + self.side as i32);
            c.title(&panel.title, ((x0 + x1) / 2, y0 - u.i(18.0)), u.size(TITLE))?;
            c.stroke_rect((x0, y0), (x1, y1), RGBColor(0x99, 0x99, 0x99), 1)?;
            c.text(
                &ax,
                ((x0 + x1) / 2, y1 + self.axis as i32 / 2 + u.i(2.0)),
                u.size(LABEL),
                Anchor::Centre,
                INK,
                false,
            )?;
            c.text_up(
                &ay,
                (
                    ox + u.i(MARGIN) + self.axis as i32 / 2 - u.i(4.0),
                    (y0 + y1) / 2,
                ),
                u.size(LABEL),
                INK,
            )?;
            let px = |i: usize| {
                (
                    scale(self.xy[2 * i] as f64, xlo, xhi, x0, x1),
                    scale(self.xy[2 * i + 1] as f64, ylo, yhi, y1, y0),
                )
            };
            let lx = x1 + u.i(MARGIN + 6.0);
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
                    let rows = legend_rows(self.side, u);
                    let col_w = (legend_w.saturating_sub(u.px(8.0))) as i32
                        / entries.len().div_ceil(rows).max(1) as i32;
                    for (e, (name, colour, shape)) in entries.iter().enumerate() {
                        let (cx, cy) = (
                            lx + (e / rows) as i32 * col_w,
                            y0 + u.i(10.0) + (e % rows) as i32 * u.i(ROW),
                        );
                        if c.text {
                            let at = (cx + u.i(6.0), cy);
                            c.marker(*shape, at, u.i(6.0), colour.to_rgba())?;
                            let at = (cx + u.i(18.0), cy);
                            c.text(name, at, u.size(LABEL), Anchor::Left, INK, false)?;
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
                        let (bt, bb) =
                            (y0 + u.i(10.0), y0 + u.i(10.0) + (self.side as i32 * 6 / 10));
                        let bw = u.i(16.0);
                        for y in bt..bb {
                            let v = 1.0 - (y - bt) as f64 / (bb - bt).max(1) as f64;
                            c.fill_rect((lx, y), (lx + bw, y + 1), style::viridis(v).to_rgba())?;
                        }
                        c.stroke_rect((lx, bt), (lx + bw, bb), RGBColor(0x99, 0x99, 0x99), 1)?;
                        // The bar's ends: the highest value at its top, the lowest at its foot.
                        for (v, y) in [(hi, bt), (lo, bb)] {
                            let at = (lx + u.i(22.0), y);
                            let text = style::tick_text(v);
                            c.text(&text, at, u.size(LABEL), Anchor::Left, INK, false)?;
                        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn clusters(n: usize, k: usize) -> Panel {
        let names: Vec<String> = (0..n)
            .map(|i| format!("cluster_number_{}", i % k))
            .collect();
        Panel::from_column(
            "cluster",
            &Column::Str(names.into_iter().map(Some).collect()),
        )
    }

    #[test]
    fn points_shrink_with_the_number_of_cells_as_in_scanpy() {
        // 120000 / n points² with scanpy's "." marker on a 4-inch panel of 480 pixels.
        assert_eq!(point_radius(3_000, 480), 3);
        assert_eq!(point_radius(1_500, 480), 4);
        assert_eq!(point_radius(30_000, 480), 1);
        assert_eq!(point_radius(1_000_000, 480), 1);
        assert_eq!(point_radius(3_000, 960), 5);
        assert_eq!(point_alpha(1_000), 1.0);
        assert!((point_alpha(8_000) - 0.5).abs() < 1e-12);
        assert_eq!(point_alpha(1_000_000), 0.2);
    }

    #[test]
    fn legends_fit_beside_their_panels_at_any_width_and_dpi() {
        let n = 300;
        let xy: Vec<f32> = (0..2 * n).map(|i| (i % 17) as f32).collect();
        for width in [None, Some(150), Some(500), Some(1400)] {
            for dpi in [None, Some(60.0), Some(300.0)] {
                let panels = vec![clusters(n, 25), clusters(n, 3)];
                let opts = ScatterOptions {
                    width,
                    dpi,
                    ..Default::default()
                };
                let s = Scatter::new(xy.clone(), panels, opts);
                let xs = s.panel_x();
                let margin = s.u.px(MARGIN);
                for p in 0..2 {
                    let end = xs[p] as u32 + s.axis + s.side + 2 * margin + s.legend_w[p];
                    let next = xs.get(p + 1).map(|&x| x as u32).unwrap_or(s.width);
                    assert!(
                        end <= next,
                        "width {width:?} dpi {dpi:?}: panel {p}'s legend ends at {end}, next starts at {next}"
                    );
                }
            }
        }
        // The picture grows with the dots per inch.
        let at = |dpi| {
            Scatter::new(
                xy.clone(),
                vec![clusters(n, 3)],
                ScatterOptions {
                    dpi,
                    ..Default::default()
                },
            )
        };
        let (a, b) = (at(None), at(Some(240.0)));
        assert_eq!(b.side, 2 * a.side);
        assert!(b.width >= 2 * a.width - 2 && b.height >= 2 * a.height - 2);
        assert!((b.radius() - 2 * a.radius()).abs() <= 1);
    }

    #[test]
    fn category_colours_follow_the_panel_order() {
        let cat = Categorical::from_strings(&["b10", "b2", "a", "b2"]);
        let pal = style::categorical(3);
        // Natural order: a, b2, b10.
        assert_eq!(category_colours(&cat), vec![pal[2], pal[1], pal[0]]);
    }
}
