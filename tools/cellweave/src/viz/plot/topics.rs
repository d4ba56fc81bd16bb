//! Each topic's top genes from scETM's genes table (`cellweave-train --model scetm
//! --genes-out`): a heatmap with one column per topic and one row per chosen gene.
//!
//! The values are the topic-gene matrix alpha rho (`topic_0` .. `topic_{K-1}`), each topic's
//! column centred on its mean over all genes: scETM's decoder takes a softmax over genes of
//! theta (alpha rho), and theta sums to one, so a shift of one topic's column changes nothing
//! and only the differences between genes mean something. The rows are the `top` genes with
//! the largest values of topic 0, then those of topic 1, and so on; a gene already listed by
//! an earlier topic is not repeated, so the rows of a later topic can be fewer than `top`.
//! The colour scale is diverging (blue below the topic's mean, red above), symmetric about 0.

use super::style::{self, GREY, INK};
use super::{numbers, Anchor, Canvas, Figure};
use crate::contract::Frame;
use crate::{Error, Result};
use plotters::prelude::*;

/// The heatmap: `genes.len()` rows x `topics` columns of centred values, row-major.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Row labels (gene names, or ids where the name is missing).
    pub genes: Vec<String>,
    /// The topic whose top list brought each row in.
    pub group: Vec<usize>,
    /// Number of topics (columns).
    pub topics: usize,
    /// Centred alpha rho, `genes.len() x topics`, row-major.
    pub values: Vec<f64>,
    pub title: String,
}

impl Topics {
    /// The top `top` genes of every topic from a genes table with `topic_0..` columns.
    pub fn from_frame(f: &Frame, top: usize) -> Result<Topics> {
        let mut columns: Vec<Vec<f64>> = Vec::new();
        while let Some(col) = f.column(&format!("topic_{}", columns.len())) {
            let name = format!("topic_{}", columns.len());
            let v =
                numbers(col).ok_or_else(|| Error::new("expected numbers").field(name.clone()))?;
            if let Some(r) = v.iter().position(|x| !x.is_finite()) {
                return Err(
                    Error::new(format!("missing or non-finite value in row {}", r + 1)).field(name),
                );
            }
            columns.push(v);
        }
        if columns.is_empty() {
            return Err(Error::new(
                "no topic_0 column (expected scETM's genes table: cellweave-train --model scetm \
                 --genes-out, or genes.arrow in its model directory)",
            )
            .field("topic_0"));
        }
        let n = f.n_rows();
        if n == 0 {
            return Err(Error::new("no genes (expected one row per gene)"));
        }
        let label = |r: usize| {
            let pick = |c: &str| {
                f.column(c)
                    .and_then(|c| c.text(r))
                    .filter(|s| !s.is_empty())
            };
            pick("gene_name")
                .or_else(|| pick("gene_id"))
                .unwrap_or_else(|| format!("row {}", r + 1))
        };
        for col in &mut columns {
            let mean = col.iter().sum::<f64>() / n as f64;
            col.iter_mut().for_each(|v| *v -= mean);
        }
        let k = columns.len();
        let mut rows: Vec<usize> = Vec::new();
        let mut group = Vec::new();
        for (t, col) in columns.iter().enumerate() {
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| col[b].total_cmp(&col[a]).then(a.cmp(&b)));
            for &r in order.iter().take(top) {
                if !rows.contains(&r) {
                    rows.push(r);
                    group.push(t);
                }
            }
        }
        let values = rows
            .iter()
            .flat_map(|&r| columns.iter().map(move |c| c[r]))
            .collect();
        Ok(Topics {
            genes: rows.iter().map(|&r| label(r)).collect(),
            group,
            topics: k,
            values,
            title: format!("Top {top} genes per topic"),
        })
    }

    /// The largest absolute value shown (the colour scale's end).
    fn limit(&self) -> f64 {
        let m = self.values.iter().fold(0f64, |m, v| m.max(v.abs()));
        if m > 0.0 {
            m
        } else {
            1.0
        }
    }

    fn label_width(&self) -> u32 {
        let widest = self
            .genes
            .iter()
            .map(|g| style::text_size(g, FONT, false).0)
            .max()
            .unwrap_or(0);
        widest + 12
    }
}

const CELL_W: u32 = 16;
const CELL_H: u32 = 12;
const FONT: f64 = 10.0;
const TOP: u32 = 64;
const BAR_W: u32 = 90;

/// Blue (-1) through white (0) to red (+1), colour-blind safe (ColorBrewer RdBu ends).
fn diverging(t: f64) -> RGBColor {
    let t = if t.is_finite() {
        t.clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let (end, f) = if t < 0.0 {
        ((0x21, 0x66, 0xAC), -t)
    } else {
        ((0xB2, 0x18, 0x2B), t)
    };
    let mix = |e: u8| (255.0 + (e as f64 - 255.0) * f).round() as u8;
    RGBColor(mix(end.0), mix(end.1), mix(end.2))
}

impl Figure for Topics {
    fn size(&self) -> (u32, u32) {
        let w = self.label_width() + CELL_W * self.topics as u32 + BAR_W + 24;
        let h = TOP + CELL_H * self.genes.len() as u32 + 48;
        (w.max(320), h.max(240))
    }

    fn draw<DB: DrawingBackend>(&self, c: &Canvas<DB>) -> Result<()> {
        let (w, _) = self.size();
        c.title(&self.title, (w as i32 / 2, 20), 16.0)?;
        let x0 = self.label_width() as i32;
        let (cw, ch) = (CELL_W as i32, CELL_H as i32);
        let k = self.topics as i32;
        let lim = self.limit();
        // Topic numbers above the columns (every one while they fit, else every fifth).
        let every = if k <= 60 { 1 } else { 5 };
        for t in (0..k).filter(|t| t % every == 0) {
            c.text(
                &t.to_string(),
                (x0 + t * cw + cw / 2, TOP as i32 - 10),
                FONT,
                Anchor::Centre,
                GREY,
                false,
            )?;
        }
        c.text(
            "topic",
            (x0 + k * cw / 2, TOP as i32 - 26),
            12.0,
            Anchor::Centre,
            INK,
            false,
        )?;
        for (r, gene) in self.genes.iter().enumerate() {
            let y = TOP as i32 + r as i32 * ch;
            for t in 0..self.topics {
                let v = self.values[r * self.topics + t] / lim;
                let x = x0 + t as i32 * cw;
                c.fill_rect((x, y), (x + cw, y + ch), diverging(v).to_rgba())?;
            }
            c.text(gene, (x0 - 6, y + ch / 2), FONT, Anchor::Right, INK, false)?;
            // A line above the first row of each topic's group.
            if r > 0 && self.group[r] != self.group[r - 1] {
                c.line(vec![(x0, y), (x0 + k * cw, y)], GREY.to_rgba(), 1)?;
            }
        }
        let y1 = TOP as i32 + self.genes.len() as i32 * ch;
        c.stroke_rect((x0, TOP as i32), (x0 + k * cw, y1), GREY, 1)?;
        // Colour bar: +limit at the top, -limit at the bottom.
        let (bx, bh) = (x0 + k * cw + 20, (y1 - TOP as i32).clamp(60, 200));
        for i in 0..bh {
            let v = 1.0 - 2.0 * i as f64 / (bh - 1).max(1) as f64;
            let y = TOP as i32 + i;
            c.fill_rect((bx, y), (bx + 14, y + 1), diverging(v).to_rgba())?;
        }
        c.stroke_rect((bx, TOP as i32), (bx + 14, TOP as i32 + bh), GREY, 1)?;
        for (v, y) in [(lim, 0), (0.0, bh / 2), (-lim, bh)] {
            c.tick(v, (bx + 18, TOP as i32 + y), Anchor::Left)?;
        }
        c.text(
            "alpha rho - topic mean",
            (bx, TOP as i32 + bh + 16),
            10.0,
            Anchor::Left,
            GREY,
            false,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Column, TableKind};

    /// 6 genes, 3 topics: topic t is high on genes 2t and 2t+1, gene 1 also tops topic 2;
    /// every topic's column is shifted by its own constant.
    fn frame() -> Frame {
        let names = ["A", "B", "C", "D", "E", "F"];
        let mut f = Frame::new(TableKind::Genes)
            .with(
                "gene_id",
                Column::Str(names.iter().map(|n| Some(format!("id{n}"))).collect()),
            )
            .with(
                "gene_name",
                Column::Str(
                    names
                        .iter()
                        .enumerate()
                        .map(|(i, n)| (i != 3).then(|| n.to_string()))
                        .collect(),
                ),
            );
        for t in 0..3 {
            let v: Vec<f32> = (0..6)
                .map(|g| {
                    if g / 2 == t {
                        5.0 - g as f32 * 0.1
                    } else if t == 2 && g == 1 {
                        9.0
                    } else {
                        0.0
                    }
                })
                .map(|x| x + 100.0 + 10.0 * t as f32)
                .collect();
            f = f.with(&format!("topic_{t}"), Column::F32(v));
        }
        f
    }

    #[test]
    fn top_genes_per_topic_without_repeats_centred_per_topic() {
        let t = Topics::from_frame(&frame(), 2).unwrap();
        assert_eq!(t.topics, 3);
        // Topic 0: A, B; topic 1: C, then D (named by its id); topic 2: B (already
        // listed) then E.
        assert_eq!(t.genes, ["A", "B", "C", "idD", "E"]);
        assert_eq!(t.group, [0, 0, 1, 1, 2]);
        for k in 0..3 {
            // Centred: the shown values are the raw values less the topic's mean over all
            // genes; check on gene A (row 0).
            let raw: Vec<f64> = numbers(frame().column(&format!("topic_{k}")).unwrap()).unwrap();
            let mean = raw.iter().sum::<f64>() / 6.0;
            assert!((t.values[k] - (raw[0] - mean)).abs() < 1e-9);
        }
        assert!(t.limit() > 0.0);
    }

    #[test]
    fn a_table_without_topics_or_with_gaps_is_refused() {
        let f = Frame::new(TableKind::Genes).with("gene_id", Column::Str(vec![Some("a".into())]));
        let e = Topics::from_frame(&f, 5).unwrap_err().to_string();
        assert!(e.contains("topic_0") && e.contains("scetm"), "{e}");
        let f = f.with("topic_0", Column::F64(vec![f64::NAN]));
        let e = Topics::from_frame(&f, 5).unwrap_err().to_string();
        assert!(e.contains("non-finite") && e.contains("topic_0"), "{e}");
    }

    #[test]
    fn diverging_scale_is_white_at_zero_and_saturates() {
        assert_eq!(diverging(0.0), RGBColor(255, 255, 255));
        assert_eq!(diverging(1.0), RGBColor(0xB2, 0x18, 0x2B));
        assert_eq!(diverging(-3.0), RGBColor(0x21, 0x66, 0xAC));
    }
}
