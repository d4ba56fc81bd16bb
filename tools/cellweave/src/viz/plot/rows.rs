//! Figures stacked in rows, one below the other, each as wide as it lays itself out: the UMAP
//! panels of several embeddings (one row per model, `cellweave-plot A.arrow B.arrow ...`).

use super::{Canvas, Figure};
use crate::Result;
use plotters::prelude::*;

/// Figures drawn top to bottom, left-aligned; the picture is as wide as the widest.
pub struct Rows<F: Figure>(pub Vec<F>);

impl<F: Figure> Figure for Rows<F> {
    fn size(&self) -> (u32, u32) {
        self.0.iter().fold((1, 0), |(w, h), f| {
            let (fw, fh) = f.size();
            (w.max(fw), h + fh)
        })
    }

    fn draw<DB: DrawingBackend>(&self, c: &Canvas<DB>) -> Result<()> {
        let mut top = 0u32;
        for f in &self.0 {
            let (w, h) = f.size();
            // The row's area in the image's pixels (the canvas scales the layout's lengths).
            let px = |v: u32| (v as f64 * c.scale).round() as u32;
            let area = c.area.clone().shrink((0, px(top)), (px(w), px(h)));
            let sub = Canvas {
                area,
                text: c.text,
                raster: c.raster,
                scale: c.scale,
            };
            f.draw(&sub)?;
            top += h;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Categorical, Column};
    use crate::viz::plot::scatter::{Panel, Scatter, ScatterOptions};

    fn scatter(n: usize, title: &str) -> Scatter {
        let xy: Vec<f32> = (0..2 * n).map(|i| (i % 7) as f32).collect();
        let cat =
            Categorical::from_strings(&(0..n).map(|i| format!("b{}", i % 3)).collect::<Vec<_>>());
        let opts = ScatterOptions {
            title: Some(title.into()),
            ..Default::default()
        };
        Scatter::new(
            xy,
            vec![Panel::from_column("batch", &Column::Cat(cat))],
            opts,
        )
    }

    #[test]
    fn rows_stack_heights_and_take_the_widest_width() {
        let (a, b) = (scatter(50, "claire"), scatter(50, "invae"));
        let ((wa, ha), (wb, hb)) = (a.size(), b.size());
        let rows = Rows(vec![a, b]);
        assert_eq!(rows.size(), (wa.max(wb), ha + hb));
        // Both rows are drawn: the PNG differs from one row drawn above white.
        let dir = tempfile::tempdir().unwrap();
        let two = dir.path().join("two.png");
        crate::viz::plot::save(&rows, &two).unwrap();
        let img = crate::viz::plot::png::read(&std::fs::read(&two).unwrap()).unwrap();
        assert_eq!((img.width, img.height), (wa.max(wb), ha + hb));
        let lower = &img.rgb[(ha * img.width) as usize..];
        let upper = &img.rgb[..(ha * img.width) as usize];
        for (half, name) in [(upper, "first"), (lower, "second")] {
            assert!(
                half.iter().any(|p| *p != [255; 3]),
                "the {name} row is blank"
            );
        }
    }
}
