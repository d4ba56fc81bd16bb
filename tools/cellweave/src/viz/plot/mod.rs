//! Pictures: UMAP scatter panels ([`scatter`], one row per embedding with [`rows`]), a
//! metrics bar chart ([`bars`]), training-loss curves ([`curves`]), one cell type's
//! counterfactual cells across batches ([`counterfactual`]) and scETM's top genes per topic
//! ([`topics`]), drawn with plotters to PNG or SVG (chosen by the output's extension) and
//! written atomically.
//!
//! Every figure is laid out in pixels by hand (no plotters chart builder) so that the same
//! code draws with and without a font ([`style::text_available`]).

pub mod bars;
pub mod counterfactual;
pub mod curves;
pub mod glyphs;
pub mod input;
pub mod png;
pub mod rows;
pub mod scatter;
pub mod stage;
pub mod style;
pub mod summary;
pub mod topics;

use crate::contract::Column;
use crate::io::atomic;
use crate::{bail, Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::io::Write;
use std::path::Path;

/// A figure of known pixel size that can draw itself on any plotters backend.
pub trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, canvas: &Canvas<DB>) -> Result<()>;
}

/// Image formats by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Svg,
}

impl ImageFormat {
    pub fn of(path: &Path) -> Result<ImageFormat> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "png" => Ok(ImageFormat::Png),
            "svg" => Ok(ImageFormat::Svg),
            _ => Err(Error::new(format!(
                "unknown image format '.{ext}' (expected .png or .svg)"
            ))
            .file(path)),
        }
    }
}

/// Draw `fig` and write it to `path` (PNG or SVG by extension), atomically.
pub fn save(fig: &impl Figure, path: &Path) -> Result<()> {
    save_scaled(fig, path, 1.0)
}

/// [`save`] with every length of the figure (positions, text, lines, markers) multiplied
/// by `scale`: a figure laid out in pixels at 120 dpi saved at `dpi / 120`.
pub fn save_scaled(fig: &impl Figure, path: &Path, scale: f64) -> Result<()> {
    let format = ImageFormat::of(path)?;
    let (w, h) = fig.size();
    let (w, h) = (
        (w as f64 * scale).round() as u32,
        (h as f64 * scale).round() as u32,
    );
    if w == 0 || h == 0 || w > 20_000 || h > 20_000 {
        return Err(Error::new(format!(
            "image size {w}x{h} out of range (1..20000 pixels a side)"
        ))
        .file(path));
    }
    match format {
        ImageFormat::Png => {
            let mut buf = vec![255u8; w as usize * h as usize * 3];
            {
                let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
                let mut canvas = Canvas::new(root);
                canvas.raster = true;
                canvas.scale = scale;
                fig.draw(&canvas)?;
                canvas.area.present().map_err(drawing)?;
            }
            atomic::write_file(path, |f| png::write_rgb(f, w, h, &buf))
        }
        ImageFormat::Svg => {
            let mut s = String::new();
            {
                let root = SVGBackend::with_string(&mut s, (w, h)).into_drawing_area();
                let mut canvas = Canvas::new(root);
                canvas.scale = scale;
                canvas.area.fill(&WHITE).map_err(drawing)?;
                fig.draw(&canvas)?;
                canvas.area.present().map_err(drawing)?;
            }
            atomic::write_file(path, |f| Ok(f.write_all(s.as_bytes())?))
        }
    }
}

fn drawing(e: impl std::fmt::Debug) -> Error {
    Error::new(format!("drawing failed ({e:?})"))
}

/// A drawing area with pixel-coordinate helpers; text is skipped when no font is available.
pub struct Canvas<DB: DrawingBackend> {
    pub area: DrawingArea<DB, Shift>,
    pub text: bool,
    /// Pixels (PNG): text is rasterized by [`glyphs`]; else (SVG) it stays text.
    pub raster: bool,
    /// Every length drawn is multiplied by this (1: the figure's own pixels).
    pub scale: f64,
}

/// Horizontal and vertical text anchors.
#[derive(Debug, Clone, Copy)]
pub enum Anchor {
    Left,
    Centre,
    Right,
}

impl<DB: DrawingBackend> Canvas<DB> {
    pub fn new(area: DrawingArea<DB, Shift>) -> Self {
        Canvas {
            area,
            text: style::text_available(),
            raster: false,
            scale: 1.0,
        }
    }

    /// A point of the figure's layout in the image's pixels.
    fn at(&self, (x, y): (i32, i32)) -> (i32, i32) {
        (self.len(x), self.len(y))
    }

    /// A length of the figure's layout in the image's pixels.
    fn len(&self, v: i32) -> i32 {
        (v as f64 * self.scale).round() as i32
    }

    /// A line width in the image's pixels (at least 1).
    fn width(&self, w: u32) -> u32 {
        ((w as f64 * self.scale).round() as u32).max(1)
    }

    /// Rasterized text centred vertically at (x, y) with the horizontal anchor `h`; None:
    /// centred and reading upwards (a quarter turn anticlockwise about (x, y)).
    fn raster_text(
        &self,
        s: &str,
        (x, y): (i32, i32),
        size: f64,
        h: Option<Anchor>,
        colour: RGBColor,
        bold: bool,
    ) -> Result<()> {
        let Some(font) = style::face(bold) else {
            return Ok(());
        };
        let (w, _) = glyphs::measure(font, size, s);
        let up = h.is_none();
        let du = match h.unwrap_or(Anchor::Centre) {
            Anchor::Left => 0.0,
            Anchor::Centre => -w / 2.0,
            Anchor::Right => -w,
        };
        let base = glyphs::centre_baseline(font, size);
        for (u, v, c) in glyphs::raster(font, size, s) {
            let (u, v) = (
                (u as f32 + du).round() as i32,
                (v as f32 + base).round() as i32,
            );
            let at = if up { (x + v, y - u) } else { (x + u, y + v) };
            self.area
                .draw_pixel(at, &colour.mix(c as f64))
                .map_err(drawing)?;
        }
        Ok(())
    }

    /// Text with its anchor at (x, y): `h` picks the horizontal anchor, vertically centred.
    pub fn text(
        &self,
        s: &str,
        (x, y): (i32, i32),
        size: f64,
        h: Anchor,
        colour: RGBColor,
        bold: bool,
    ) -> Result<()> {
        if !self.text || s.is_empty() {
            return Ok(());
        }
        let ((x, y), size) = (self.at((x, y)), size * self.scale);
        if self.raster {
            return self.raster_text(s, (x, y), size, Some(h), colour, bold);
        }
        let hpos = match h {
            Anchor::Left => HPos::Left,
            Anchor::Centre => HPos::Center,
            Anchor::Right => HPos::Right,
        };
        let font = FontDesc::new(
            FontFamily::Name(style::FAMILY),
            size,
            if bold {
                FontStyle::Bold
            } else {
                FontStyle::Normal
            },
        );
        let st = TextStyle::from(font)
            .color(&colour)
            .pos(Pos::new(hpos, VPos::Center));
        self.area.draw_text(s, &st, (x, y)).map_err(drawing)
    }

    /// A title: bold, in ink, centred at (x, y).
    pub fn title(&self, s: &str, at: (i32, i32), size: f64) -> Result<()> {
        self.text(s, at, size, Anchor::Centre, style::INK, true)
    }

    /// An axis tick's value in grey, anchored at (x, y) by `h`.
    pub fn tick(&self, value: f64, at: (i32, i32), h: Anchor) -> Result<()> {
        self.text(&style::tick_text(value), at, 12.0, h, style::GREY, false)
    }

    /// Vertical text (reading upwards) centred at (x, y).
    pub fn text_up(&self, s: &str, (x, y): (i32, i32), size: f64, colour: RGBColor) -> Result<()> {
        if !self.text || s.is_empty() {
            return Ok(());
        }
        let ((x, y), size) = (self.at((x, y)), size * self.scale);
        if self.raster {
            return self.raster_text(s, (x, y), size, None, colour, false);
        }
        let font = FontDesc::new(FontFamily::Name(style::FAMILY), size, FontStyle::Normal)
            .transform(FontTransform::Rotate270);
        let st = TextStyle::from(font)
            .color(&colour)
            .pos(Pos::new(HPos::Center, VPos::Center));
        self.area.draw_text(s, &st, (x, y)).map_err(drawing)
    }

    pub fn fill_rect(
        &self,
        (x0, y0): (i32, i32),
        (x1, y1): (i32, i32),
        colour: RGBAColor,
    ) -> Result<()> {
        let (a, b) = (self.at((x0, y0)), self.at((x1, y1)));
        self.area
            .draw(&Rectangle::new([a, b], colour.filled()))
            .map_err(drawing)
    }

    pub fn stroke_rect(
        &self,
        (x0, y0): (i32, i32),
        (x1, y1): (i32, i32),
        colour: RGBColor,
        width: u32,
    ) -> Result<()> {
        let (a, b) = (self.at((x0, y0)), self.at((x1, y1)));
        self.area
            .draw(&Rectangle::new(
                [a, b],
                colour.stroke_width(self.width(width)),
            ))
            .map_err(drawing)
    }

    pub fn line(&self, points: Vec<(i32, i32)>, colour: RGBAColor, width: u32) -> Result<()> {
        let points: Vec<(i32, i32)> = points.into_iter().map(|p| self.at(p)).collect();
        self.area
            .draw(&PathElement::new(
                points,
                colour.stroke_width(self.width(width)),
            ))
            .map_err(drawing)
    }

    /// A filled marker: 0 circle, 1 triangle, 2 square, `r` its radius in pixels.
    pub fn marker(
        &self,
        shape: usize,
        (x, y): (i32, i32),
        r: i32,
        colour: RGBAColor,
    ) -> Result<()> {
        let st = colour.filled();
        let ((x, y), r) = (self.at((x, y)), self.len(r));
        match shape {
            1 => self.area.draw(&Polygon::new(
                vec![(x, y - r), (x - r, y + r - r / 3), (x + r, y + r - r / 3)],
                st,
            )),
            2 => self.area.draw(&Rectangle::new(
                [
                    (x - r + r / 5, y - r + r / 5),
                    (x + r - r / 5, y + r - r / 5),
                ],
                st,
            )),
            _ => self.area.draw(&Circle::new((x, y), r.max(1), st)),
        }
        .map_err(drawing)
    }
}

/// The values of a numeric column as f64 (a missing integer is NaN); None for text and
/// categories.
pub(crate) fn numbers(col: &Column) -> Option<Vec<f64>> {
    match col {
        Column::F64(v) => Some(v.clone()),
        Column::F32(v) => Some(v.iter().map(|&x| x as f64).collect()),
        Column::I64(v) => Some(
            v.iter()
                .map(|x| x.map(|x| x as f64).unwrap_or(f64::NAN))
                .collect(),
        ),
        Column::U32(v) => Some(v.iter().map(|&x| x as f64).collect()),
        _ => None,
    }
}

/// Map `v` in [lo, hi] onto pixels [p0, p1].
pub fn scale(v: f64, lo: f64, hi: f64, p0: i32, p1: i32) -> i32 {
    let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
    (p0 as f64 + t * (p1 - p0) as f64).round() as i32
}

/// Check user-given image sizes.
pub fn check_size(width: Option<u32>, height: Option<u32>) -> Result<()> {
    for (n, v) in [("--width", width), ("--height", height)] {
        if let Some(v) = v {
            if !(64..=20_000).contains(&v) {
                bail!("{n} {v} out of range (64..20000 pixels)");
            }
        }
    }
    Ok(())
}
