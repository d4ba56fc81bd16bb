//! Cells tables streamed batch by batch: read without materializing the matrix, written as
//! the batches are produced.
//!
//! An Arrow IPC file in the contract's own column types (what every cellweave stage writes)
//! is read through a memory map: each record batch's arrays point into the mapped file, so
//! reading costs no copy and no value conversion, and a stage hands a batch's pages back to
//! the OS once it has written it (it holds a few batches of the input at a time, not the
//! file). Any other input (Parquet, an IPC stream, another writer's column types) is read
//! and validated whole by [`table::read_cells`] and cut into batches of the contract's
//! layout, so that every stage has one code path.
//!
//! The rows of a batch are validated (positions ascending and in range, values finite,
//! counts non-negative) when a stage asks for them, once per run; outputs derived from
//! validated rows are not validated again.

use super::table::{self, CellsMeta, COL_BATCH, COL_CELL_ID, COL_EXPRESSION, COL_GENE_INDEX};
use super::{atomic, Format};
use crate::contract::{check_unique_of, fingerprint_of, Column, CsrView, Step, ValueKind};
use crate::{Error, Result, ResultExt};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    ArrowPrimitiveType, Float32Type, Float64Type, Int32Type, Int64Type, UInt32Type,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, DictionaryArray, Int32Array, PrimitiveArray, RecordBatch,
    StringArray,
};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, SchemaRef};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A cells table opened for streaming.
pub struct CellsInput {
    path: PathBuf,
    schema: SchemaRef,
    /// Gene ids (the columns of the expression lists).
    pub gene_ids: Vec<String>,
    /// Gene names, parallel to the ids.
    pub gene_names: Vec<String>,
    /// What the values are.
    pub values: ValueKind,
    /// Every stage that produced the table, oldest first.
    pub provenance: Vec<Step>,
    batches: Vec<RecordBatch>,
    /// First row of every batch, then the number of rows.
    starts: Vec<usize>,
    /// Positions of `cell_id`, `batch` and the other per-cell columns, in output order.
    per_cell: Vec<usize>,
    gene_index: usize,
    expression: usize,
    /// Output fields of the per-cell columns other than `cell_id` and `batch`.
    obs_fields: Vec<Field>,
    /// The file, its memory map, and where each batch lies in it.
    map: Option<Mapped>,
    /// Which batches' rows are validated (all when the table was read whole).
    checked: Vec<AtomicBool>,
    fingerprint: String,
}

/// A memory-mapped input: the file, the map, where each batch lies in it.
type Mapped = (std::fs::File, Arc<memmap2::Mmap>, Vec<(usize, usize)>);

/// Dictionary columns the contract writes (and passes through unchanged).
fn dict_utf8() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

fn is_list_of(item: &DataType, dt: &DataType) -> bool {
    matches!(dt, DataType::List(f) if f.data_type() == item)
}

/// Whether batches can be streamed as they are: the contract's column types, and one
/// dictionary per dictionary column (an IPC file allows no other).
fn streamable(schema: &arrow_schema::Schema, batches: &[RecordBatch]) -> bool {
    let dt = |name: &str| schema.field_with_name(name).ok().map(|f| f.data_type());
    let types_ok = dt(COL_CELL_ID) == Some(&DataType::Utf8)
        && dt(COL_BATCH) == Some(&dict_utf8())
        && dt(COL_GENE_INDEX).is_some_and(|t| is_list_of(&DataType::UInt32, t))
        && dt(COL_EXPRESSION).is_some_and(|t| is_list_of(&DataType::Float32, t))
        && schema.fields().iter().all(|f| {
            [COL_GENE_INDEX, COL_EXPRESSION].contains(&f.name().as_str())
                || f.data_type() == &dict_utf8()
                || matches!(
                    f.data_type(),
                    DataType::Utf8
                        | DataType::Float64
                        | DataType::Float32
                        | DataType::Int64
                        | DataType::UInt32
                        | DataType::Boolean
                )
        });
    let one_dictionary = |c: usize| {
        let dicts: Vec<&ArrayRef> = batches
            .iter()
            .map(|b| b.column(c).as_dictionary::<Int32Type>().values())
            .collect();
        dicts
            .windows(2)
            .all(|w| Arc::ptr_eq(w[0], w[1]) || w[0].to_data() == w[1].to_data())
    };
    types_ok
        && schema
            .fields()
            .iter()
            .enumerate()
            .all(|(c, f)| f.data_type() != &dict_utf8() || one_dictionary(c))
}

impl CellsInput {
    /// Open a cells table (`.arrow` or `.parquet`) and check everything but the rows.
    pub fn open(path: &Path) -> Result<CellsInput> {
        table::keep_freed_memory();
        match Self::open_mapped(path)? {
            Some(input) => Ok(input),
            None => {
                let t = table::read_cells(path)?;
                let (schema, batches) = table::cells_to_batches(&t).at(path)?;
                Self::new(path, schema, batches, None, true).at(path)
            }
        }
    }

    /// Open a cells table through a memory map when it is an Arrow IPC file in the
    /// contract's own column types (what every cellweave stage writes), checking everything
    /// but the rows; `None` for any other input (read it whole with [`table::read_cells`]).
    pub fn open_mapped(path: &Path) -> Result<Option<CellsInput>> {
        if !path.exists() {
            return Err(Error::new("no such file").file(path));
        }
        let mapped = match Format::of(path) {
            Some(Format::Arrow) => {
                let file = std::fs::File::open(path).at(path)?;
                let mut head = [0u8; 6];
                let n = std::io::Read::read(&mut &file, &mut head).at(path)?;
                if n == 6 && &head == b"ARROW1" {
                    Some((table::map_ipc_file(&file).at(path)?, file))
                } else {
                    None
                }
            }
            _ => None,
        };
        match mapped {
            Some((m, file)) if streamable(&m.schema, &m.batches) => Self::new(
                path,
                m.schema,
                m.batches,
                Some((file, m.map, m.blocks)),
                false,
            )
            .map(Some)
            .at(path),
            _ => Ok(None),
        }
    }

    fn new(
        path: &Path,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        map: Option<Mapped>,
        checked: bool,
    ) -> Result<CellsInput> {
        let (provenance, gene_ids, gene_names, values) = table::cells_header(&schema)?;
        let col = |name: &str| -> Result<usize> {
            schema.index_of(name).map_err(|_| {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                Error::new(format!(
                    "required column is missing (columns: {})",
                    names.join(", ")
                ))
                .field(name)
            })
        };
        let (id_col, batch_col) = (col(COL_CELL_ID)?, col(COL_BATCH)?);
        let (gene_index, expression) = (col(COL_GENE_INDEX)?, col(COL_EXPRESSION)?);
        let mut per_cell = vec![id_col, batch_col];
        let mut obs_fields = Vec::new();
        for (c, f) in schema.fields().iter().enumerate() {
            if ![id_col, batch_col, gene_index, expression].contains(&c) {
                per_cell.push(c);
                obs_fields.push(Field::new(f.name(), f.data_type().clone(), true));
            }
        }
        let n_batches = batches.len();
        let mut starts = vec![0];
        for b in &batches {
            starts.push(starts.last().unwrap() + b.num_rows());
        }
        // cell ids: present and unique; every cell has a batch
        let ids: Vec<&StringArray> = batches
            .iter()
            .map(|b| b.column(id_col).as_string::<i32>())
            .collect();
        for (k, a) in ids.iter().enumerate() {
            if let Some(i) = (0..a.len()).find(|&i| a.is_null(i)) {
                return Err(Error::new(format!("null at row {}", starts[k] + i)).field(COL_CELL_ID));
            }
        }
        let all_ids = || ids.iter().flat_map(|a| a.iter().flatten());
        check_unique_of(all_ids()).map_err(|e| e.field(COL_CELL_ID))?;
        for (b, a) in batches.iter().zip(&ids) {
            let keys = b.column(batch_col);
            if let Some(i) = (0..keys.len()).find(|&i| keys.is_null(i)) {
                return Err(
                    Error::new(format!("cell '{}' has no batch", a.value(i))).field(COL_BATCH)
                );
            }
        }
        let fingerprint = fingerprint_of(all_ids());
        table::check_cells_meta(&schema, starts[n_batches], &fingerprint)?;
        Ok(CellsInput {
            path: path.to_path_buf(),
            schema,
            gene_ids,
            gene_names,
            values,
            provenance,
            batches,
            starts,
            per_cell,
            gene_index,
            expression,
            obs_fields,
            map,
            checked: (0..n_batches).map(|_| AtomicBool::new(checked)).collect(),
            fingerprint,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Number of cells.
    pub fn n_cells(&self) -> usize {
        *self.starts.last().unwrap()
    }
    /// Number of genes.
    pub fn n_genes(&self) -> usize {
        self.gene_ids.len()
    }
    /// Number of record batches.
    pub fn n_batches(&self) -> usize {
        self.batches.len()
    }
    /// The first row of batch `i`.
    pub fn start(&self, i: usize) -> usize {
        self.starts[i]
    }
    /// The fingerprint of the cell ids (from the schema metadata).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
    /// The cell ids of batch `i`.
    pub fn cell_ids(&self, i: usize) -> &StringArray {
        self.batches[i].column(self.per_cell[0]).as_string::<i32>()
    }
    /// The id of cell `row` (counted over the whole table).
    pub fn cell_id(&self, row: usize) -> &str {
        let i = self.starts.partition_point(|&s| s <= row) - 1;
        self.cell_ids(i).value(row - self.starts[i])
    }

    /// A per-cell column over the whole table (`batch` and `cell_id` included); the error
    /// lists the columns there are.
    pub fn column(&self, name: &str) -> Result<Column> {
        let field = |c: usize| self.schema.field(c).name();
        let Some(c) = self.per_cell.iter().copied().find(|&c| field(c) == name) else {
            let names: Vec<&str> = self.per_cell.iter().map(|&c| field(c).as_str()).collect();
            return Err(
                Error::new(format!("column not found (columns: {})", names.join(", "))).field(name),
            );
        };
        let arrays: Vec<&ArrayRef> = self.batches.iter().map(|b| b.column(c)).collect();
        table::column_from_arrow(name, &arrays)
    }

    /// The table without its expression rows (`x` has the genes and no rows): the
    /// metadata and the per-cell columns, as [`table::read_cells`] reads them.
    pub fn table_without_rows(&self) -> Result<crate::contract::CellsTable> {
        table::cells_without_rows(&self.schema, &self.batches).at(&self.path)
    }

    /// Batch `i`'s expression values (shared with the input, not copied).
    pub fn expression_values(&self, i: usize) -> ScalarBuffer<f32> {
        let l = self.batches[i].column(self.expression).as_list::<i32>();
        let o = l.offsets();
        let (a, b) = (o[0] as usize, o[o.len() - 1] as usize);
        l.values()
            .as_primitive::<Float32Type>()
            .values()
            .slice(a, b - a)
    }

    /// The per-cell columns of batch `i` (`cell_id`, `batch`, then the others), as stored.
    pub fn per_cell_columns(&self, i: usize) -> Vec<ArrayRef> {
        let b = &self.batches[i];
        self.per_cell.iter().map(|&c| b.column(c).clone()).collect()
    }

    /// The schema of an output with the same per-cell columns and metadata `meta`.
    pub fn output_schema(&self, meta: &CellsMeta) -> SchemaRef {
        table::cells_schema(meta, &self.obs_fields)
    }

    /// The expression rows of batch `i`, validated against the contract (once per run).
    pub fn rows(&self, i: usize) -> Result<CsrView<'_>> {
        let b = &self.batches[i];
        // Errors name the input: the caller may be writing an output as it reads.
        let (go, gv) =
            list_parts::<UInt32Type>(b.column(self.gene_index), COL_GENE_INDEX).at(&self.path)?;
        let (eo, ev) =
            list_parts::<Float32Type>(b.column(self.expression), COL_EXPRESSION).at(&self.path)?;
        let aligned =
            go.len() == eo.len() && go.iter().zip(eo).all(|(a, e)| a - go[0] == e - eo[0]);
        if !aligned {
            return Err(Error::new("row lengths differ from those of 'gene_index'")
                .field(COL_EXPRESSION)
                .file(&self.path));
        }
        let (n, m) = (go.len() - 1, eo.len() - 1);
        let v = CsrView {
            offsets: go,
            indices: &gv[go[0] as usize..go[n] as usize],
            data: &ev[eo[0] as usize..eo[m] as usize],
        };
        if !self.checked[i].load(Ordering::Relaxed) {
            check_rows(&v, self.starts[i], self.n_genes(), self.values).at(&self.path)?;
            self.checked[i].store(true, Ordering::Relaxed);
        }
        Ok(v)
    }

    /// The values of the dictionary column `name` (as every batch shares them).
    pub fn dictionary(&self, name: &str) -> Vec<Option<String>> {
        let Some(b) = self.batches.first() else {
            return Vec::new();
        };
        let values = b
            .column_by_name(name)
            .map(|a| a.as_dictionary::<Int32Type>().values());
        values.map_or_else(Vec::new, |v| {
            v.as_string::<i32>()
                .iter()
                .map(|s| s.map(str::to_string))
                .collect()
        })
    }

    /// Batch `i`'s two list columns, as stored (not copied).
    pub fn lists(&self, i: usize) -> (ArrayRef, ArrayRef) {
        let offsets = self.offsets(i);
        (
            table::list_of::<UInt32Type>(offsets.clone(), self.gene_index_values(i)),
            table::list_of::<Float32Type>(offsets, self.expression_values(i)),
        )
    }

    /// Batch `i`'s list offsets, starting at zero (shared with the input when they do).
    pub fn offsets(&self, i: usize) -> OffsetBuffer<i32> {
        let l = self.batches[i].column(self.gene_index).as_list::<i32>();
        let o = l.offsets();
        if o[0] == 0 {
            o.clone()
        } else {
            OffsetBuffer::new(o.iter().map(|&x| x - o[0]).collect())
        }
    }

    /// Batch `i`'s gene positions (shared with the input, not copied).
    pub fn gene_index_values(&self, i: usize) -> ScalarBuffer<u32> {
        let l = self.batches[i].column(self.gene_index).as_list::<i32>();
        let o = l.offsets();
        let (a, b) = (o[0] as usize, o[o.len() - 1] as usize);
        l.values()
            .as_primitive::<UInt32Type>()
            .values()
            .slice(a, b - a)
    }

    /// Hand the pages of batch `i` back to the OS (a stage that will read it again): they
    /// stay in the page cache and come back on the next access.
    pub fn release(&self, i: usize) {
        if let Some((_, map, blocks)) = &self.map {
            let (offset, len) = blocks[i];
            // SAFETY: the map is read-only and shared with the file, so MADV_DONTNEED only
            // drops this process's page mappings; the arrays still pointing there see the
            // same bytes again (read back from the page cache) if they are used later.
            unsafe {
                let _ = map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len);
            }
        }
    }

    /// [`release`](Self::release) batch `i` after its last use in this stage, and drop its
    /// pages from the page cache too (see [`atomic::drop_cached`]).
    pub fn done(&self, i: usize) {
        self.release(i);
        if let Some((file, _, blocks)) = &self.map {
            let (offset, len) = blocks[i];
            atomic::drop_cached(file, offset as u64, len as u64);
        }
    }
}

/// Offsets and values of a list column of primitive items.
fn list_parts<'a, T: ArrowPrimitiveType>(
    a: &'a ArrayRef,
    name: &str,
) -> Result<(&'a [i32], &'a [T::Native])> {
    let l = a.as_list_opt::<i32>().ok_or_else(|| {
        Error::new(format!(
            "expected a list of {}, found {}",
            T::DATA_TYPE,
            a.data_type()
        ))
        .field(name)
    })?;
    if l.null_count() > 0 {
        return Err(Error::new(
            "null expression row (use an empty list for a cell with no counts)",
        )
        .field(name));
    }
    let values = l.values().as_primitive_opt::<T>().ok_or_else(|| {
        Error::new(format!("expected list items of type {}", T::DATA_TYPE)).field(name)
    })?;
    if values.null_count() > 0 {
        return Err(Error::new("null inside an expression row").field(name));
    }
    Ok((l.value_offsets(), values.values()))
}

/// Whether a row keeps the contract (a branch-free test that vectorizes).
#[inline]
pub(crate) fn row_ok(idx: &[u32], val: &[f32], n_genes: usize, counts: bool) -> bool {
    let ascending = idx.windows(2).fold(true, |ok, w| ok & (w[0] < w[1]));
    let in_range = idx.last().is_none_or(|&g| (g as usize) < n_genes);
    let values = if counts {
        val.iter()
            .fold(true, |ok, &v| ok & (0.0..=f32::MAX).contains(&v))
    } else {
        val.iter().fold(true, |ok, &v| ok & v.is_finite())
    };
    ascending & in_range & values
}

/// Validate rows as [`crate::contract::CellsTable::validate`] does, naming the first bad row.
fn check_rows(v: &CsrView, first_row: usize, n_genes: usize, values: ValueKind) -> Result<()> {
    let counts = values == ValueKind::Counts;
    let bad = (0..v.n_rows())
        .into_par_iter()
        .with_min_len(64)
        .find_first(|&r| {
            let (idx, val) = v.row(r);
            !row_ok(idx, val, n_genes, counts)
        });
    let Some(r) = bad else { return Ok(()) };
    let (idx, val) = v.row(r);
    let row = first_row + r;
    if let Some(w) = idx.windows(2).find(|w| w[0] >= w[1]) {
        return Err(Error::new(format!(
            "gene positions in row {row} are not strictly ascending ({} then {})",
            w[0], w[1]
        ))
        .field(COL_EXPRESSION));
    }
    if let Some(&g) = idx.last().filter(|&&g| g as usize >= n_genes) {
        return Err(Error::new(format!(
            "row {row} refers to gene position {g} but there are {n_genes} genes"
        ))
        .field(COL_EXPRESSION));
    }
    if let Some(x) = val.iter().find(|x| !x.is_finite()) {
        return Err(
            Error::new(format!("non-finite value {x} in the expression values")).field("values"),
        );
    }
    let x = val.iter().find(|&&x| x < 0.0).copied().unwrap_or(f32::NAN);
    Err(Error::new(format!(
        "negative count {x} (expected non-negative raw counts)"
    ))
    .field("values"))
}

/// The per-cell arrays of the given rows (positions in the batch), keeping dictionaries.
pub fn take_rows(a: &ArrayRef, rows: &[usize]) -> ArrayRef {
    fn prim<T: ArrowPrimitiveType>(a: &ArrayRef, rows: &[usize]) -> ArrayRef {
        let p = a.as_primitive::<T>();
        Arc::new(
            rows.iter()
                .map(|&r| p.is_valid(r).then(|| p.value(r)))
                .collect::<PrimitiveArray<T>>(),
        )
    }
    match a.data_type() {
        DataType::Utf8 => {
            let s = a.as_string::<i32>();
            Arc::new(
                rows.iter()
                    .map(|&r| s.is_valid(r).then(|| s.value(r)))
                    .collect::<StringArray>(),
            )
        }
        DataType::Dictionary(_, _) => {
            let d = a.as_dictionary::<Int32Type>();
            let k = d.keys();
            let keys: Int32Array = rows
                .iter()
                .map(|&r| k.is_valid(r).then(|| k.value(r)))
                .collect();
            Arc::new(DictionaryArray::<Int32Type>::new(keys, d.values().clone()))
        }
        DataType::Float64 => prim::<Float64Type>(a, rows),
        DataType::Float32 => prim::<Float32Type>(a, rows),
        DataType::Int64 => prim::<Int64Type>(a, rows),
        DataType::UInt32 => prim::<UInt32Type>(a, rows),
        DataType::Boolean => {
            let b = a.as_boolean();
            Arc::new(
                rows.iter()
                    .map(|&r| b.is_valid(r).then(|| b.value(r)))
                    .collect::<BooleanArray>(),
            )
        }
        other => unreachable!("not a streamable column type: {other}"),
    }
}

/// A `batch` column with new dictionary values: key `k` becomes `remap[k]`.
pub fn remap_dictionary(
    a: &ArrayRef,
    rows: &[usize],
    remap: &[i32],
    values: &ArrayRef,
) -> ArrayRef {
    let keys = a.as_dictionary::<Int32Type>().keys();
    let keys: Int32Array = rows
        .iter()
        .map(|&r| remap[keys.value(r) as usize])
        .collect();
    Arc::new(DictionaryArray::<Int32Type>::new(keys, values.clone()))
}

/// Keep some rows (all when `keep` is None) and the columns whose `col_map` entry is not
/// `u32::MAX` (renumbered to it): the two list columns of the result. (One thread: the
/// writer works on the previous batch meanwhile.)
pub fn subset_rows(v: &CsrView, keep: Option<&[bool]>, col_map: &[u32]) -> (ArrayRef, ArrayRef) {
    let n = v.n_rows();
    let mut offsets = Vec::with_capacity(n + 1);
    offsets.push(0i32);
    // not zero-filled: every slot below `w` is written before `w` passes it
    let (mut idx, mut val) = (
        Vec::<u32>::with_capacity(v.indices.len()),
        Vec::<f32>::with_capacity(v.data.len()),
    );
    let (di, dv) = (idx.spare_capacity_mut(), val.spare_capacity_mut());
    let mut w = 0;
    for r in 0..n {
        if keep.is_some_and(|m| !m[r]) {
            continue;
        }
        let (i, x) = v.row(r);
        // branch-free: write every entry, advance past the kept ones
        for (&c, &y) in i.iter().zip(x) {
            let m = col_map[c as usize];
            di[w].write(m);
            dv[w].write(y);
            w += (m != u32::MAX) as usize;
        }
        offsets.push(w as i32);
    }
    // SAFETY: slots 0..w of both vectors were written above (w never exceeds the number of
    // entries read, which is at most the capacity).
    unsafe {
        idx.set_len(w);
        val.set_len(w);
    }
    let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
    (
        table::list_of::<UInt32Type>(offsets.clone(), ScalarBuffer::from(idx)),
        table::list_of::<Float32Type>(offsets, ScalarBuffer::from(val)),
    )
}

/// A record batch of `schema` from per-cell columns and the two list columns.
pub fn out_batch(
    schema: &SchemaRef,
    mut per_cell: Vec<ArrayRef>,
    gene_index: ArrayRef,
    expression: ArrayRef,
) -> Result<RecordBatch> {
    per_cell.push(gene_index);
    per_cell.push(expression);
    Ok(RecordBatch::try_new(schema.clone(), per_cell)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Categorical, CellsTable, Csr};
    use crate::preprocess::{hvg, normalize, qc};

    /// 400 cells x 60 genes of small counts in 3 batches (one batch category unused by the
    /// last cells), with per-cell columns of every kind, written in 4 record batches.
    fn table_in_batches(dir: &Path) -> (CellsTable, PathBuf) {
        let (n, g) = (400, 60);
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        let mut dense = vec![0f32; n * g];
        for (i, v) in dense.iter_mut().enumerate() {
            let r = next() % 100;
            let gene = i % g;
            *v = if r < 30 + gene as u32 % 40 {
                (1 + next() % 6) as f32
            } else {
                0.0
            };
        }
        let names: Vec<String> = (0..g)
            .map(|k| {
                if k < 3 {
                    format!("MT-{k}")
                } else {
                    format!("G{k}")
                }
            })
            .collect();
        let batch: Vec<&str> = (0..n).map(|i| ["b2", "b0", "b1"][i % 3]).collect();
        let t = CellsTable {
            cell_ids: (0..n).map(|i| format!("c{i}")).collect(),
            batch: Categorical::from_strings(&batch),
            obs: vec![
                (
                    "cell_type".into(),
                    Column::Cat(Categorical {
                        codes: (0..n as u32).map(|i| i % 2).collect(),
                        categories: vec!["T".into(), "B".into(), "unused".into()],
                    }),
                ),
                (
                    "score".into(),
                    Column::F64(
                        (0..n)
                            .map(|i| if i % 7 == 0 { f64::NAN } else { i as f64 })
                            .collect(),
                    ),
                ),
                (
                    "n".into(),
                    Column::I64((0..n).map(|i| (i % 5 != 0).then_some(i as i64)).collect()),
                ),
                (
                    "note".into(),
                    Column::Str(
                        (0..n)
                            .map(|i| (i % 3 != 0).then(|| format!("x{i}")))
                            .collect(),
                    ),
                ),
            ],
            gene_ids: (0..g).map(|k| format!("ENS{k}")).collect(),
            gene_names: names,
            x: Csr::from_dense(n, g, &dense),
            values: ValueKind::Counts,
            provenance: vec![Step::new("test", &1)],
        };
        let p = dir.join("cells.arrow");
        table::write_cells_streaming(&p, &t, n, &t.fingerprint(), |put| {
            for (a, b) in [(0, 90), (90, 200), (200, 201), (201, 400)] {
                let rows: Vec<usize> = (a..b).collect();
                let mut chunk = t.select_cells(&rows);
                chunk.batch = t.batch.select(&rows);
                put(&chunk)?;
            }
            Ok(())
        })
        .unwrap();
        (t, p)
    }

    fn same_cells(a: &CellsTable, b: &CellsTable) {
        assert_eq!(a.cell_ids, b.cell_ids);
        assert_eq!(a.batch, b.batch);
        assert_eq!(format!("{:?}", a.obs), format!("{:?}", b.obs));
        assert_eq!((&a.gene_ids, &a.gene_names), (&b.gene_ids, &b.gene_names));
        assert_eq!((&a.x.indptr, &a.x.indices), (&b.x.indptr, &b.x.indices));
        let bits = |x: &Csr| x.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a.x), bits(&b.x));
        assert_eq!((a.values, &a.provenance), (b.values, &b.provenance));
    }

    #[test]
    fn streamed_stages_equal_the_whole_table_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (t, p) = table_in_batches(dir.path());
        // the whole-table stages, as the tools ran them, on the table read back
        let t = {
            let back = table::read_cells(&p).unwrap();
            same_cells(
                &back,
                &CellsTable {
                    obs: back.obs.clone(),
                    ..t
                },
            );
            back
        };
        let input = CellsInput::open(&p).unwrap();
        assert!(input.map.is_some(), "read through the memory map");
        assert_eq!(input.n_batches(), 4);
        assert_eq!(input.fingerprint(), t.fingerprint());
        let step = Step::new("s", &2);

        // filter: cell and gene criteria that remove some of both
        let params = qc::QcParams {
            min_cells: 150,
            min_genes: Some(24),
            max_mito_pct: Some(12.0),
            ..Default::default()
        };
        let out = dir.path().join("f.arrow");
        let r = qc::filter_file(&input, &out, &params, step.clone()).unwrap();
        let mut want = qc::filter(t.clone(), &params).unwrap();
        want.cells.provenance.push(step.clone());
        let got = table::read_cells(&out).unwrap();
        assert!(got.n_cells() < t.n_cells() && got.n_genes() < t.n_genes());
        same_cells(&got, &want.cells);
        assert_eq!(r.report.lines(), want.report.lines());
        assert_eq!(format!("{:?}", r.genes), format!("{:?}", want.genes));

        // normalize, then hvg (seurat and cell_ranger, by batch and not) on the result
        let out = dir.path().join("n.arrow");
        normalize::normalize_file(&input, &out, 1e4, true, step.clone()).unwrap();
        let mut want = t.clone();
        normalize::normalize_cells(&mut want, 1e4, true).unwrap();
        want.provenance.push(step.clone());
        let normalized = table::read_cells(&out).unwrap();
        same_cells(&normalized, &want);
        let input = CellsInput::open(&out).unwrap();
        for flavor in [hvg::Flavor::Seurat, hvg::Flavor::CellRanger] {
            let params = hvg::HvgParams {
                n_top_genes: 10,
                flavor,
                ..Default::default()
            };
            for groups in [
                hvg::Groups::by_column(&normalized, "batch").unwrap(),
                hvg::Groups::single(normalized.n_cells()),
            ] {
                let got = hvg::highly_variable_genes_stream(&input, &groups, &params).unwrap();
                let (x, ids, names) = (&normalized.x, &normalized.gene_ids, &normalized.gene_names);
                let want = hvg::highly_variable_genes(x, ids, names, &groups, &params).unwrap();
                assert_eq!(format!("{:?}", got.genes), format!("{:?}", want.genes));
                assert_eq!((&got.selected, &got.order), (&want.selected, &want.order));
            }
        }
        let keep = [1, 5, 17, 59];
        let out = dir.path().join("h.arrow");
        hvg::subset_file(&input, &out, Some(&keep), &normalized.provenance).unwrap();
        same_cells(
            &table::read_cells(&out).unwrap(),
            &hvg::subset_genes(&normalized, &keep),
        );
    }

    #[test]
    fn bad_rows_are_named_and_leave_no_output() {
        let dir = tempfile::tempdir().unwrap();
        let (t, _) = table_in_batches(dir.path());
        // a table whose row 2 has a repeated gene position and row 5 a negative count
        let mut bad = t.clone();
        let k = bad.x.indptr[2] as usize;
        bad.x.indices[k + 1] = bad.x.indices[k];
        let (schema, batches) = table::cells_to_batches(&bad).unwrap();
        let p = dir.path().join("bad.arrow");
        table::write_batches(&p, schema, &batches).unwrap();
        let input = CellsInput::open(&p).unwrap();
        let out = dir.path().join("out.arrow");
        let e = normalize::normalize_file(&input, &out, 1e4, true, Step::new("s", &0))
            .unwrap_err()
            .to_string();
        crate::assert_has(&e, &["bad.arrow", "row 2", "ascending"]);
        assert!(!out.exists());
        let mut bad = t.clone();
        bad.x.data[bad.x.indptr[5] as usize] = -1.0;
        let (schema, batches) = table::cells_to_batches(&bad).unwrap();
        table::write_batches(&p, schema, &batches).unwrap();
        let input = CellsInput::open(&p).unwrap();
        let e = qc::filter_file(&input, &out, &qc::QcParams::default(), Step::new("s", &0))
            .err()
            .unwrap()
            .to_string();
        crate::assert_has(&e, &["bad.arrow", "negative count -1"]);
        assert!(!out.exists());
    }

    #[test]
    fn parquet_and_other_layouts_are_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (t, _) = table_in_batches(dir.path());
        let p = dir.path().join("c.parquet");
        table::write_cells(&p, &t).unwrap();
        let input = CellsInput::open(&p).unwrap();
        assert!(input.map.is_none());
        let out = dir.path().join("n.arrow");
        normalize::normalize_file(&input, &out, 1e4, false, Step::new("s", &0)).unwrap();
        let mut want = t.clone();
        normalize::normalize_cells(&mut want, 1e4, false).unwrap();
        assert_eq!(table::read_cells(&out).unwrap().x, want.x);
    }
}
