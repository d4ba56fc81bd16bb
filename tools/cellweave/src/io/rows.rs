//! Expression rows read one at a time, from a matrix in memory ([`Csr`]) or from the record
//! batches of a memory-mapped cells table ([`MappedRows`]) without a copy of the values: a
//! trainer that draws minibatches of rows reads them through [`Rows`] either way.
//!
//! A cells table written by cellweave (an Arrow IPC file in the contract's own column types)
//! is mapped, its rows validated batch by batch as [`table::read_cells`] validates them, and
//! its list columns' buffers kept as they are: they point into the mapped file, so the
//! expression costs clean file pages that the OS can drop and read back, not anonymous
//! memory. Any other input (Parquet, an IPC stream, other column types) is read whole.

use super::stream::CellsInput;
use super::table::{self, ListRows};
use crate::contract::{CellsTable, Csr};
use crate::Result;
use std::path::Path;

/// Rows of a sparse matrix: column positions (ascending) and values of row `r`.
pub trait Rows: Sync {
    /// Number of rows.
    fn n_rows(&self) -> usize;
    /// Number of columns.
    fn n_cols(&self) -> usize;
    /// Column positions and values of row `r`.
    fn row(&self, r: usize) -> (&[u32], &[f32]);
    /// Dense row-major copy of the given rows (all columns).
    fn to_dense_rows(&self, rows: &[usize]) -> Vec<f32> {
        let g = self.n_cols();
        let mut out = vec![0f32; rows.len() * g];
        for (o, &r) in rows.iter().enumerate() {
            let (idx, val) = self.row(r);
            let dst = &mut out[o * g..(o + 1) * g];
            for (&c, &v) in idx.iter().zip(val) {
                dst[c as usize] = v;
            }
        }
        out
    }
    /// An owned copy of every row.
    fn to_csr(&self) -> Csr {
        let mut m = Csr::empty(self.n_cols());
        let nnz = (0..self.n_rows()).map(|r| self.row(r).0.len()).sum();
        m.indices.reserve_exact(nnz);
        m.data.reserve_exact(nnz);
        m.indptr.reserve_exact(self.n_rows());
        for r in 0..self.n_rows() {
            let (idx, val) = self.row(r);
            m.indices.extend_from_slice(idx);
            m.data.extend_from_slice(val);
            m.indptr.push(m.indices.len() as u64);
        }
        m
    }
}

impl Rows for Csr {
    fn n_rows(&self) -> usize {
        Csr::n_rows(self)
    }
    fn n_cols(&self) -> usize {
        self.n_cols
    }
    #[inline]
    fn row(&self, r: usize) -> (&[u32], &[f32]) {
        Csr::row(self, r)
    }
}

/// The expression rows of a memory-mapped cells table: each record batch's list columns as
/// stored (offsets from 0, gene positions, values), pointing into the map.
pub struct MappedRows {
    n_cols: usize,
    /// First row of every batch, then the number of rows.
    starts: Vec<usize>,
    chunks: Vec<ListRows>,
}

impl MappedRows {
    /// The rows of every batch of `input`, validated (each batch's pages are handed back
    /// to the OS once checked: they come back from the page cache when a row is read).
    pub fn new(input: &CellsInput) -> Result<MappedRows> {
        let mut starts = vec![0];
        let mut chunks = Vec::with_capacity(input.n_batches());
        for i in 0..input.n_batches() {
            let n = input.rows(i)?.n_rows();
            chunks.push(ListRows {
                offsets: input.offsets(i),
                indices: input.gene_index_values(i),
                values: input.expression_values(i),
            });
            starts.push(starts[i] + n);
            input.release(i);
        }
        Ok(MappedRows {
            n_cols: input.n_genes(),
            starts,
            chunks,
        })
    }
}

impl Rows for MappedRows {
    fn n_rows(&self) -> usize {
        *self.starts.last().unwrap()
    }
    fn n_cols(&self) -> usize {
        self.n_cols
    }
    #[inline]
    fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let i = self.starts.partition_point(|&s| s <= r) - 1;
        let c = &self.chunks[i];
        let k = r - self.starts[i];
        let (a, b) = (c.offsets[k] as usize, c.offsets[k + 1] as usize);
        (&c.indices[a..b], &c.values[a..b])
    }
}

/// A cells table and its expression rows: mapped from the file (`cells.x` then has the
/// genes and no rows: read the rows through [`CellsRows::x`]) or the table's own matrix.
pub struct CellsRows {
    /// The cells table (its matrix empty when the rows are mapped).
    pub cells: CellsTable,
    mapped: Option<MappedRows>,
}

impl CellsRows {
    /// A table in memory, its rows its own matrix.
    pub fn owned(cells: CellsTable) -> Self {
        CellsRows {
            cells,
            mapped: None,
        }
    }
    /// The expression rows, one per cell.
    pub fn x(&self) -> &dyn Rows {
        match &self.mapped {
            Some(m) => m,
            None => &self.cells.x,
        }
    }
    /// Whether the rows are read from the memory-mapped file.
    pub fn is_mapped(&self) -> bool {
        self.mapped.is_some()
    }
}

/// Read a cells table, its rows mapped when the file allows it (an Arrow IPC file in the
/// contract's column types), whole otherwise; validated as [`table::read_cells`] does.
pub fn read_cells_rows(path: &Path) -> Result<CellsRows> {
    match CellsInput::open_mapped(path)? {
        Some(input) => {
            let cells = input.table_without_rows()?;
            let rows = MappedRows::new(&input)?;
            Ok(CellsRows {
                cells,
                mapped: Some(rows),
            })
        }
        None => Ok(CellsRows::owned(table::read_cells(path)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Categorical, Column, ValueKind};
    use crate::io::table::{cells_to_batches, write_batches, write_cells};

    fn table(n: usize, g: usize) -> CellsTable {
        let mut dense = vec![0f32; n * g];
        for (k, v) in dense.iter_mut().enumerate() {
            if (k * 7 + k / g) % 5 == 0 {
                *v = (k % 13) as f32 * 0.25 + 0.5;
            }
        }
        let cell_ids: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
        let batch: Vec<&str> = (0..n).map(|i| ["a", "b", "c"][i % 3]).collect();
        CellsTable {
            cell_ids,
            batch: Categorical::from_strings(&batch),
            obs: vec![(
                "score".into(),
                Column::F64((0..n).map(|i| i as f64 / 2.0).collect()),
            )],
            gene_ids: (0..g).map(|j| format!("g{j}")).collect(),
            gene_names: (0..g).map(|j| format!("G{j}")).collect(),
            x: Csr::from_dense(n, g, &dense),
            values: ValueKind::Log1p,
            provenance: Vec::new(),
        }
    }

    fn same_rows(a: &dyn Rows, b: &dyn Rows) {
        assert_eq!((a.n_rows(), a.n_cols()), (b.n_rows(), b.n_cols()));
        for r in 0..a.n_rows() {
            assert_eq!(a.row(r), b.row(r), "row {r}");
        }
        let rows = [3, 0, a.n_rows() - 1, 3];
        assert_eq!(a.to_dense_rows(&rows), b.to_dense_rows(&rows));
        assert_eq!(a.to_csr(), b.to_csr());
    }

    #[test]
    fn mapped_rows_equal_the_table_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let t = table(50, 9);
        // One file of three record batches (sliced: their list offsets do not start at 0
        // in memory; the writer stores them from 0), one Parquet file.
        let (schema, batches) = cells_to_batches(&t).unwrap();
        let b = &batches[0];
        let pieces = [b.slice(0, 17), b.slice(17, 1), b.slice(18, 32)];
        let arrow = dir.path().join("cells.arrow");
        write_batches(&arrow, schema, &pieces).unwrap();
        let parquet = dir.path().join("cells.parquet");
        write_cells(&parquet, &t).unwrap();

        let m = read_cells_rows(&arrow).unwrap();
        assert!(m.is_mapped());
        assert_eq!(m.cells.x.n_rows(), 0);
        same_rows(m.x(), &t.x);
        assert_eq!(m.x().to_csr(), t.x);
        let whole = table::read_cells(&arrow).unwrap();
        let mut meta = whole.clone();
        meta.x = Csr::empty(t.n_genes());
        assert_eq!(m.cells, meta);

        let p = read_cells_rows(&parquet).unwrap();
        assert!(!p.is_mapped());
        assert_eq!(p.cells, table::read_cells(&parquet).unwrap());
        same_rows(p.x(), &t.x);
    }

    #[test]
    fn bad_rows_of_a_mapped_table_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = table(20, 6);
        let path = dir.path().join("bad.arrow");
        let k = t.x.indptr[4] as usize;
        t.x.data[k] = f32::NAN;
        let (schema, batches) = cells_to_batches(&t).unwrap();
        write_batches(&path, schema, &batches).unwrap();
        let whole = table::read_cells(&path).unwrap_err().to_string();
        let mapped = read_cells_rows(&path).err().unwrap().to_string();
        assert!(mapped.contains("non-finite value NaN"), "{mapped}");
        assert!(mapped.contains("bad.arrow"), "{mapped}");
        assert!(whole.contains("non-finite value NaN"), "{whole}");
    }
}
