//! Fonts, colours and sizes shared by every plot.
//!
//! Text needs a TrueType font: one is loaded at run time from `$CELLWEAVE_FONT` or the usual
//! system places (Debian/Ubuntu `fonts-dejavu-core`, Fedora, Arch, macOS, Windows). Without
//! one, plots are drawn without text and a warning is printed once. `CELLWEAVE_FONT=none`
//! forces text off (used by the tests of that path).

use ab_glyph::FontRef;
use plotters::style::{FontStyle, RGBColor};
use std::sync::OnceLock;

/// The family name fonts are registered under.
pub const FAMILY: &str = "sans-serif";

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/usr/local/share/fonts/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// The bold face that goes with a regular font file, if it sits next to it.
fn bold_sibling(regular: &str) -> Vec<String> {
    [
        ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"),
        ("Regular", "Bold"),
        ("FreeSans.ttf", "FreeSansBold.ttf"),
        ("Arial.ttf", "Arial Bold.ttf"),
        ("arial.ttf", "arialbd.ttf"),
    ]
    .iter()
    .filter(|(r, _)| regular.contains(r))
    .map(|(r, b)| regular.replace(r, b))
    .collect()
}

/// The regular and bold faces text is drawn with (the bold one may be the regular one).
struct Faces {
    normal: FontRef<'static>,
    bold: FontRef<'static>,
}

/// Read a font file and register it with plotters (which draws SVG text) under [`FAMILY`].
fn load(path: &str, style: FontStyle) -> Option<FontRef<'static>> {
    let bytes = std::fs::read(path).ok()?;
    // Fonts are kept for the life of the process (plotters requires it).
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    let face = FontRef::try_from_slice(bytes).ok()?;
    plotters::style::register_font(FAMILY, style, bytes).ok()?;
    Some(face)
}

fn faces() -> Option<&'static Faces> {
    static FACES: OnceLock<Option<Faces>> = OnceLock::new();
    FACES
        .get_or_init(|| {
            let env = std::env::var("CELLWEAVE_FONT").ok().filter(|s| !s.is_empty());
            if env.as_deref() == Some("none") {
                return None;
            }
            let mut candidates: Vec<String> = env.into_iter().collect();
            candidates.extend(FONT_PATHS.iter().map(|s| s.to_string()));
            for path in &candidates {
                if let Some(normal) = load(path, FontStyle::Normal) {
                    let bold = bold_sibling(path)
                        .iter()
                        .find_map(|b| load(b, FontStyle::Bold))
                        .or_else(|| load(path, FontStyle::Bold))
                        .unwrap_or_else(|| normal.clone());
                    return Some(Faces { normal, bold });
                }
            }
            crate::info!(
                "warning: no TrueType font found (set CELLWEAVE_FONT or install fonts-dejavu-core); drawing without text"
            );
            None
        })
        .as_ref()
}

/// Whether text can be drawn: loads a font the first time (and warns once if none).
pub fn text_available() -> bool {
    faces().is_some()
}

/// The face text of this weight is drawn with (None without fonts).
pub fn face(bold: bool) -> Option<&'static FontRef<'static>> {
    faces().map(|f| if bold { &f.bold } else { &f.normal })
}

/// Width and height in pixels of `text` at `size` pixels per em (0 without fonts).
pub fn text_size(text: &str, size: f64, bold: bool) -> (u32, u32) {
    match face(bold) {
        Some(f) => {
            let (w, h) = super::glyphs::measure(f, size, text);
            (w.ceil() as u32, h.ceil() as u32)
        }
        None => (0, 0),
    }
}

const fn hex(c: u32) -> RGBColor {
    RGBColor((c >> 16) as u8, (c >> 8) as u8, c as u8)
}

/// Okabe & Ito (2008), safe for the common colour-vision deficiencies; yellow and black last.
pub const OKABE_ITO: [RGBColor; 8] = [
    hex(0x0072B2),
    hex(0xE69F00),
    hex(0x009E73),
    hex(0xCC79A7),
    hex(0x56B4E9),
    hex(0xD55E00),
    hex(0xF0E442),
    hex(0x000000),
];

/// Paul Tol's "muted" scheme: 9 colours distinct under colour-vision deficiencies.
pub const TOL_MUTED: [RGBColor; 9] = [
    hex(0x332288),
    hex(0x88CCEE),
    hex(0x44AA99),
    hex(0x117733),
    hex(0x999933),
    hex(0xDDCC77),
    hex(0xCC6677),
    hex(0x882255),
    hex(0xAA4499),
];

/// Colour for missing values.
pub const MISSING: RGBColor = hex(0xBBBBBB);
pub const INK: RGBColor = hex(0x222222);
pub const GREY: RGBColor = hex(0x666666);
pub const GRID: RGBColor = hex(0xE5E5E5);

/// Colours for `n` categories: Okabe-Ito up to 8, Tol muted for 9, both together (17)
/// beyond. No palette keeps more than ~9 colours apart for colour-blind readers, so past 17
/// categories colours repeat and [`marker_of`] changes the marker shape instead.
pub fn categorical(n: usize) -> Vec<RGBColor> {
    let base: Vec<RGBColor> = if n <= 8 {
        OKABE_ITO.to_vec()
    } else if n <= 9 {
        TOL_MUTED.to_vec()
    } else {
        TOL_MUTED.iter().chain(OKABE_ITO.iter()).copied().collect()
    };
    (0..n).map(|i| base[i % base.len()]).collect()
}

/// Marker shape of category `i` of `n`: 0 circle, 1 triangle, 2 square.
pub fn marker_of(i: usize, n: usize) -> usize {
    if n <= 17 {
        0
    } else {
        (i / 17) % 3
    }
}

/// Viridis (perceptually uniform, colour-blind safe) at `t` in [0, 1].
pub fn viridis(t: f64) -> RGBColor {
    const STOPS: [u32; 9] = [
        0x440154, 0x472D7B, 0x3B528B, 0x2C728E, 0x21918C, 0x28AE80, 0x5EC962, 0xADDC30, 0xFDE725,
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (hex(STOPS[i]), hex(STOPS[i + 1]));
    let mix = |p: u8, q: u8| (p as f64 + (q as f64 - p as f64) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// About `target` round tick values covering [lo, hi].
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// A tick value as short text (`0.25`, `1e-3`, `1200`).
pub fn tick_text(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e6).contains(&a) {
        return format!("{v:.0e}");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}
