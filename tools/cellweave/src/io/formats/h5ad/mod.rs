//! AnnData `.h5ad` files (the on-disk format of anndata >= 0.8), read and written with the
//! `hdf5` crate. The mapping between AnnData elements and the cells table is documented in
//! `schemas/h5ad-mapping.md`.
//!
//! Reading: `X` or a layer (CSR, CSC or dense), `obs` (index, categoricals, string,
//! numeric, boolean and nullable columns; the pre-0.7 `__categories` layout too) and `var`
//! (index plus a gene-id or gene-name column). Writing: `X` and `layers` as CSR, `obs` and
//! `var` dataframes, `obsm` dense arrays and `uns` strings, with the `encoding-type` /
//! `encoding-version` attributes anndata expects on every element.

use super::single_file_table;
use crate::contract::{Categorical, CellsTable, Column, Csr, Named, ValueKind};
use crate::io::table::ListRows;
use crate::{bail, Error, Result};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use hdf5::types::{FixedAscii, FixedUnicode, IntSize, TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{Dataset, File, Group, Location, LocationType};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

mod counts;
mod frame;
mod h5;
mod matrix;
mod write;

pub(crate) use counts::*;
pub use frame::*;
pub(crate) use h5::*;
pub use matrix::*;
pub use write::*;

/// Read an `.h5ad` file as a cells table (one batch named after the file; the importer
/// picks the batch column). `layer`: None = `X`, `raw` = `raw/X`, else `layers/<name>`.
pub fn read_h5ad(path: &Path, layer: Option<&str>, values: ValueKind) -> Result<CellsTable> {
    let (mut t, rows) = open_h5ad(path, layer, values)?;
    if let Some(r) = rows {
        t.x = r.read(0, r.n_rows()).map_err(|e| e.file(path))?;
    }
    Ok(t)
}

/// [`read_h5ad`], but a CSR matrix stays on disk: the table then has empty rows, and the
/// rows are read from the [`H5Csr`] returned beside it (errors need the path attached).
pub fn open_h5ad(
    path: &Path,
    layer: Option<&str>,
    values: ValueKind,
) -> Result<(CellsTable, Option<H5Csr>)> {
    let file = open_h5(path)?;
    (|| {
        let (elem, var_elem) = matrix_location(&file, layer)?;
        let obs = read_dataframe(&file, "obs")?;
        let var = read_dataframe(&file, var_elem)?;
        let (n_obs, n_vars) = (obs.index.len(), var.index.len());
        let counts = values == ValueKind::Counts;
        if counts {
            check_holds_counts(&file, &elem)?;
        }
        let (x, rows) = match open_matrix(&file, &elem, n_obs, n_vars, counts)? {
            Matrix::Whole(m) => (m, None),
            Matrix::Rows(r) => (empty_rows(n_obs, n_vars), Some(r)),
        };
        let genes = genes_from_var(&var);
        let t = single_file_table(path, obs.index, obs.columns, genes, x, values);
        Ok((t, rows))
    })()
    .map_err(|e: Error| e.file(path))
}

/// `n` rows without values.
fn empty_rows(n: usize, n_cols: usize) -> Csr {
    Csr {
        n_cols,
        indptr: vec![0; n + 1],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> CellsTable {
        CellsTable {
            cell_ids: vec!["a".into(), "b".into(), "c".into()],
            batch: Categorical {
                codes: vec![1, 0, 1],
                categories: vec!["s1".into(), "s2".into()],
            },
            obs: vec![
                (
                    "cell_type".into(),
                    Column::Cat(Categorical {
                        codes: vec![0, Categorical::MISSING, 0],
                        categories: vec!["T".into()],
                    }),
                ),
                ("n".into(), Column::I64(vec![Some(1), None, Some(3)])),
                ("score".into(), Column::F64(vec![0.5, f64::NAN, 2.0])),
                (
                    "flag".into(),
                    Column::Bool(vec![Some(true), Some(false), Some(true)]),
                ),
            ],
            gene_ids: vec!["E1".into(), "E2".into()],
            gene_names: vec!["G1".into(), "G2".into()],
            x: Csr::from_dense(3, 2, &[1.0, 0.0, 0.0, 2.0, 3.0, 4.0]),
            values: ValueKind::Counts,
            provenance: vec![],
        }
    }

    #[test]
    fn write_then_read_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.h5ad");
        let t = table();
        let mut a = anndata_of(&t);
        a.layers.push(("counts".into(), &t.x));
        let emb = [0.1f32, 0.2, 0.3, 0.4, 0.5, 0.6];
        a.obsm.push(("X_test".into(), 2, &emb));
        write_h5ad(&p, &a).unwrap();
        let back = read_h5ad(&p, None, ValueKind::Counts).unwrap();
        assert_eq!(back.cell_ids, t.cell_ids);
        assert_eq!(back.gene_ids, t.gene_ids);
        assert_eq!(back.gene_names, t.gene_names);
        assert_eq!(back.x, t.x);
        assert_eq!(
            back.obs[0],
            ("batch".to_string(), Column::Cat(t.batch.clone()))
        );
        assert_eq!(back.obs[1], t.obs[0]);
        assert_eq!(back.obs[2], t.obs[1]);
        match &back.obs[3].1 {
            Column::F64(v) => assert!(v[0] == 0.5 && v[1].is_nan()),
            other => panic!("{other:?}"),
        }
        assert_eq!(back.obs[4], t.obs[3]);
        let layer = read_h5ad(&p, Some("counts"), ValueKind::Counts).unwrap();
        assert_eq!(layer.x, t.x);
        let e = read_h5ad(&p, Some("nope"), ValueKind::Counts)
            .unwrap_err()
            .to_string();
        crate::assert_has(&e, &["layers/nope", "counts"]);
    }

    #[test]
    fn truncated_file_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.h5ad");
        let t = table();
        write_h5ad(&p, &anndata_of(&t)).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let e = read_h5ad(&p, None, ValueKind::Counts)
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.h5ad"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn negative_counts_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.h5ad");
        let mut t = table();
        t.x.data[1] = -2.0;
        write_h5ad(&p, &anndata_of(&t)).unwrap();
        let e = read_h5ad(&p, None, ValueKind::Counts)
            .unwrap_err()
            .to_string();
        crate::assert_has(&e, &["field 'values'", "X/data"]);
        assert!(read_h5ad(&p, None, ValueKind::Normalized).is_ok());
    }
}
