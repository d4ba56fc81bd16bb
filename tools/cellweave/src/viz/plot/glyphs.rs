//! Text in raster (PNG) pictures, laid out and rasterized here from the font's outlines.
//!
//! plotters' own raster text drops each glyph's left side bearing (it puts the glyph's ink
//! box, not its origin, at the pen position), so letters drift into each other ("cl" reads
//! as "d"). Here every glyph's outline is placed at its origin on the pen, the pen moves by
//! the advance plus kerning, and the coverage of overlapping glyphs is merged, so the PNG
//! shows the same text the SVG does. Sizes are pixels per em, as in SVG (`font-size`).

use ab_glyph::{point, Font, FontRef, GlyphId, PxScale, PxScaleFont, ScaleFont};
use std::collections::HashMap;

/// The ab_glyph scale of `size` pixels per em.
fn scale_of(font: &FontRef, size: f64) -> PxScale {
    let upem = font.units_per_em().unwrap_or(1000.0);
    PxScale::from(size as f32 * font.height_unscaled() / upem)
}

/// The glyphs of `text`, each with the pen's x position where it is set (the advances and
/// kerning before it), and the pen's position after the last one (the text's width).
fn pen_positions(sf: &PxScaleFont<&FontRef>, text: &str) -> (Vec<(GlyphId, f32)>, f32) {
    let (mut pen, mut prev, mut glyphs) = (0f32, None, Vec::new());
    for ch in text.chars() {
        let id = sf.glyph_id(ch);
        if let Some(p) = prev {
            pen += sf.kern(p, id);
        }
        glyphs.push((id, pen));
        pen += sf.h_advance(id);
        prev = Some(id);
    }
    (glyphs, pen)
}

/// Width (advances plus kerning) and height (ascent to descent) of `text` in pixels.
pub fn measure(font: &FontRef, size: f64, text: &str) -> (f32, f32) {
    let sf = font.as_scaled(scale_of(font, size));
    let (_, width) = pen_positions(&sf, text);
    (width, sf.ascent() - sf.descent())
}

/// The covered pixels of `text` set from the pen at x = 0 on the baseline y = 0:
/// `(x, y, coverage)`, each pixel once (the largest coverage where glyphs overlap), in
/// row-major order.
pub fn raster(font: &FontRef, size: f64, text: &str) -> Vec<(i32, i32, f32)> {
    let scale = scale_of(font, size);
    let sf = font.as_scaled(scale);
    let mut cover: HashMap<(i32, i32), f32> = HashMap::new();
    for (id, pen) in pen_positions(&sf, text).0 {
        let glyph = id.with_scale_and_position(scale, point(pen, 0.0));
        if let Some(outline) = font.outline_glyph(glyph) {
            let b = outline.px_bounds();
            outline.draw(|x, y, c| {
                let at = (b.min.x as i32 + x as i32, b.min.y as i32 + y as i32);
                let e = cover.entry(at).or_insert(0.0);
                *e = e.max(c.min(1.0));
            });
        }
    }
    let mut out: Vec<(i32, i32, f32)> = cover
        .into_iter()
        .filter(|&(_, c)| c > 0.0)
        .map(|((x, y), c)| (x, y, c))
        .collect();
    out.sort_unstable_by_key(|&(x, y, _)| (y, x));
    out
}

/// Where the baseline goes below a line of text vertically centred at 0.
pub fn centre_baseline(font: &FontRef, size: f64) -> f32 {
    let sf = font.as_scaled(scale_of(font, size));
    (sf.ascent() + sf.descent()) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::viz::plot::style;

    /// Runs of ink columns (separated by columns without ink) of a rasterized text.
    fn ink_runs(px: &[(i32, i32, f32)]) -> usize {
        let mut cols: Vec<i32> = px.iter().filter(|p| p.2 > 0.35).map(|p| p.0).collect();
        cols.sort_unstable();
        cols.dedup();
        1 + cols.windows(2).filter(|w| w[1] > w[0] + 1).count()
    }

    #[test]
    fn letters_stay_apart_and_fill_their_measured_width() {
        let Some(font) = style::face(false) else {
            eprintln!("no font: skipped");
            return;
        };
        // At 40 px per em the letters of these words have a blank column between them
        // (glyphs drawn without their side bearings touch: "cl" became one "d" run).
        for (text, letters) in [("cl", 2), ("isol", 4), ("claire", 6), ("cl24", 4)] {
            let px = raster(font, 40.0, text);
            assert_eq!(ink_runs(&px), letters, "{text}: letters touch");
            let (w, _) = measure(font, 40.0, text);
            let lo = px.iter().map(|p| p.0).min().unwrap() as f32;
            let hi = px.iter().map(|p| p.0).max().unwrap() as f32;
            // Ink starts within the first glyph's bearing and ends within the last one's.
            assert!((0.0..6.0).contains(&lo), "{text}: ink starts at {lo}");
            assert!(hi <= w && hi > w - 8.0, "{text}: ink ends at {hi} of {w}");
        }
        // Same text, same pixels; a longer text is wider by the added advances.
        assert_eq!(
            raster(font, 14.0, "disi_knn"),
            raster(font, 14.0, "disi_knn")
        );
        let (a, _) = measure(font, 14.0, "cl");
        let (b, _) = measure(font, 14.0, "cl0");
        assert!(b > a + 5.0, "{a} {b}");
    }
}
