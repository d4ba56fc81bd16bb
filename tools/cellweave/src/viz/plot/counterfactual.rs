//! One cell type across all batches, from counterfactual cells (MEDL's view of a cell "as if"
//! measured in every batch): `cellweave-plot cf_b1.arrow cf_b2.arrow ... --across-batches
//! cell_type=T`, each input the cells table `cellweave-embed MODEL --as-batch B` writes (every
//! cell decoded as from batch B; `batch` = B, the cell's own batch in `source_batch`).
//!
//! The cells of type T are taken from every table, stacked (one row per cell and target
//! batch) and projected on the first two principal components of that stack, so that the
//! batch effects are the main axes of the picture when the model puts them there. Two panels
//! share the coordinates: one coloured by the batch the cells are shown as from, one by the
//! batch they were measured in. How far the copies of one cell spread by target batch, set
//! against how far the measured batches lie apart, shows how much of the batch effect the
//! random effects carry.

use super::scatter::Panel;
use crate::contract::{CellsTable, Column};
use crate::numerics::pca;
use crate::{Error, Result};
use std::path::PathBuf;

/// `COLUMN=VALUE` (or `VALUE`, the column then `cell_type`) of `--across-batches`.
pub fn parse_selector(s: &str) -> (String, String) {
    match s.split_once('=') {
        Some((c, v)) => (c.to_string(), v.to_string()),
        None => ("cell_type".to_string(), s.to_string()),
    }
}

/// The 2-D coordinates (`n x 2`, PCA of the stacked counterfactuals) and the two panels
/// (target batch, source batch) of the cells whose `column` is `value`, from counterfactual
/// cells tables of one model (the same genes in each), each with the file it came from (named
/// by the errors).
pub fn across_batches(
    tables: &[(PathBuf, CellsTable)],
    column: &str,
    value: &str,
    seed: u64,
) -> Result<(Vec<f32>, Vec<Panel>)> {
    let (first_path, first) = tables
        .first()
        .ok_or_else(|| Error::new("no counterfactual cells table given"))?;
    let (mut rows, mut target, mut source) = (Vec::new(), Vec::new(), Vec::new());
    for (path, cells) in tables {
        let src = cells.column("source_batch").ok_or_else(|| {
            Error::new(
                "not a counterfactual cells table (no source_batch column; make one with \
                 cellweave-embed MODEL cells.arrow --as-batch B -o cf.arrow)",
            )
            .file(path)
        })?;
        if cells.gene_ids != first.gene_ids {
            return Err(Error::new(format!(
                "other genes than {} (counterfactuals of one model expected)",
                first_path.display()
            ))
            .file(path));
        }
        let label = cells.require_column(column).map_err(|e| e.file(path))?;
        let label = label.to_categorical();
        let picked: Vec<usize> = (0..cells.n_cells())
            .filter(|&i| label.get(i) == Some(value))
            .collect();
        if picked.is_empty() {
            let mut have = label.categories.clone();
            have.sort();
            return Err(Error::new(format!(
                "no cell has {column} {value} (values: {})",
                have.join(", ")
            ))
            .file(path));
        }
        let src = src.to_categorical();
        for &i in &picked {
            target.push(cells.batch.get(i).unwrap_or("NA").to_string());
            source.push(src.get(i).unwrap_or("NA").to_string());
        }
        rows.extend(cells.x.to_dense_rows(&picked));
    }
    let (n, d) = (target.len(), first.n_genes());
    let p = pca::pca(&rows, n, d, 2, seed);
    let mut xy = vec![0f32; 2 * n];
    for i in 0..n {
        for c in 0..p.k {
            xy[2 * i + c] = p.scores[i * p.k + c];
        }
    }
    let col = |v: Vec<String>| Column::Str(v.into_iter().map(Some).collect());
    let panels = vec![
        Panel::from_column("shown as from batch", &col(target)),
        Panel::from_column("measured in batch", &col(source)),
    ];
    Ok((xy, panels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Categorical, Csr, ValueKind};
    use crate::viz::plot::scatter::Colouring;

    /// A counterfactual table as `cellweave-embed --as-batch` writes it: 4 cells (types a, a,
    /// b, b from batches s0, s1, s0, s1), 3 genes, the target batch's style added to gene 0.
    fn cf(target: &str, shift: f32) -> (PathBuf, CellsTable) {
        let n = 4;
        let x: Vec<f32> = (0..n)
            .flat_map(|i| [shift + 0.01 * i as f32, 1.0 + (i % 2) as f32 * 0.1, 0.5])
            .collect();
        let path = PathBuf::from(format!("cf_{target}.arrow"));
        let table = CellsTable {
            cell_ids: (0..n).map(|i| format!("c{i}")).collect(),
            batch: Categorical::from_strings(&vec![target; n]),
            obs: vec![
                (
                    "source_batch".into(),
                    Column::Cat(Categorical::from_strings(&["s0", "s1", "s0", "s1"])),
                ),
                (
                    "cell_type".into(),
                    Column::Cat(Categorical::from_strings(&["a", "a", "b", "b"])),
                ),
            ],
            gene_ids: vec!["g0".into(), "g1".into(), "g2".into()],
            gene_names: vec!["g0".into(), "g1".into(), "g2".into()],
            x: Csr::from_dense(n, 3, &x),
            values: ValueKind::Log1p,
            provenance: vec![],
        };
        (path, table)
    }

    fn names(p: &Panel) -> Vec<String> {
        match &p.colouring {
            Colouring::Categories { codes, names } => {
                codes.iter().map(|&c| names[c as usize].clone()).collect()
            }
            Colouring::Continuous { .. } => panic!("categorical expected"),
        }
    }

    #[test]
    fn one_cell_type_from_every_batch_on_the_batch_axis() {
        let tables = [cf("b0", 0.0), cf("b1", 5.0), cf("b2", 10.0)];
        let (xy, panels) = across_batches(&tables, "cell_type", "a", 0).unwrap();
        // Two cells of type a, shown as from each of the three batches.
        assert_eq!(xy.len(), 2 * 6);
        assert_eq!(names(&panels[0]), ["b0", "b0", "b1", "b1", "b2", "b2"]);
        assert_eq!(names(&panels[1]), ["s0", "s1", "s0", "s1", "s0", "s1"]);
        // The first component is the batches' style: the three targets in order along it.
        let pc1: Vec<f32> = xy.iter().step_by(2).copied().collect();
        let (lo, hi) = (pc1[0].min(pc1[4]), pc1[0].max(pc1[4]));
        assert!(
            pc1[2] > lo && pc1[2] < hi,
            "b1 not between b0 and b2: {pc1:?}"
        );
        assert!((pc1[0] - pc1[1]).abs() < 0.1 * (hi - lo));
    }

    #[test]
    fn errors_name_what_is_missing() {
        let tables = [cf("b0", 0.0)];
        let named = |e: &str, what: &[&str]| {
            assert!(e.contains("cf_b"), "no file named: {e}");
            for w in what {
                assert!(e.contains(w), "{w:?} not in: {e}");
            }
        };
        let err = |t: &[(PathBuf, CellsTable)], col: &str, v: &str| {
            across_batches(t, col, v, 0).unwrap_err().to_string()
        };
        named(
            &err(&tables, "cell_type", "z"),
            &["cell_type z", "values: a, b"],
        );
        named(&err(&tables, "tissue", "a"), &["tissue"]);
        let mut plain = cf("b0", 0.0);
        plain.1.obs.remove(0);
        named(
            &err(&[plain], "cell_type", "a"),
            &["source_batch", "--as-batch"],
        );
        let mut other = cf("b1", 1.0);
        other.1.gene_ids[2] = "g9".into();
        named(
            &err(&[cf("b0", 0.0), other], "cell_type", "a"),
            &["cf_b1.arrow", "other genes than cf_b0.arrow"],
        );
        assert_eq!(
            parse_selector("H1975"),
            ("cell_type".into(), "H1975".into())
        );
        assert_eq!(
            parse_selector("label=B cell"),
            ("label".into(), "B cell".into())
        );
    }
}
