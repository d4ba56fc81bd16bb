//! The data contract: the in-memory form of every table that stages exchange.
//!
//! The on-disk form (Arrow IPC or Parquet) is described in `schemas/*.md` and read and
//! written by [`crate::io::table`]. Each table records its kind, the contract version,
//! and the provenance (every stage that touched it) in the schema metadata.

use crate::{bail, Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Contract version written into every file; readers accept the same major version.
pub const SCHEMA_VERSION: &str = "1.0";

/// Schema-metadata keys.
pub mod meta {
    /// The table kind: cells, genes, pairs, embedding, scores, training_log or qc.
    pub const TABLE: &str = "cellweave.table";
    /// The contract version the file was written with ([`SCHEMA_VERSION`](super::SCHEMA_VERSION)).
    pub const VERSION: &str = "cellweave.schema_version";
    /// The provenance: a JSON list of [`Step`](super::Step)s, oldest first.
    pub const PROVENANCE: &str = "cellweave.provenance";
    /// The gene ids of a cells table, as a JSON list (the columns of its CSR matrix).
    pub const GENE_IDS: &str = "cellweave.gene_ids";
    /// The gene names of a cells table, as a JSON list, parallel to the gene ids.
    pub const GENE_NAMES: &str = "cellweave.gene_names";
    /// What the values of a cells table are ([`ValueKind`](super::ValueKind)).
    pub const VALUES: &str = "cellweave.values";
    /// The number of genes of a cells table.
    pub const N_GENES: &str = "cellweave.n_genes";
    /// The fingerprint of the cell ids a table refers to ([`fingerprint`](super::fingerprint)).
    pub const FINGERPRINT: &str = "cellweave.cells_fingerprint";
    /// The number of cells of a cells table.
    pub const N_CELLS: &str = "cellweave.n_cells";
    /// The name of an embedding (e.g. `claire`, `umap`).
    pub const EMBEDDING_NAME: &str = "cellweave.embedding_name";
    /// The per-cell column that held the batches a genes table was computed per.
    pub const BATCH_KEY: &str = "cellweave.batch_key";
}

/// What kind of table a file holds (`cellweave.table` in its metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// One row per cell, expression as CSR lists.
    Cells,
    /// One row per gene (HVG statistics, per-gene QC, gene embeddings).
    Genes,
    /// Pairs of cells (seed pairs and nearest neighbours).
    Pairs,
    /// A per-cell embedding.
    Embedding,
    /// Scores of embeddings or imputations.
    Scores,
    /// Losses per epoch of a training run.
    TrainingLog,
    /// The QC report of cellweave-filter.
    Qc,
}

impl TableKind {
    /// The name written into the metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            TableKind::Cells => "cells",
            TableKind::Genes => "genes",
            TableKind::Pairs => "pairs",
            TableKind::Embedding => "embedding",
            TableKind::Scores => "scores",
            TableKind::TrainingLog => "training_log",
            TableKind::Qc => "qc",
        }
    }
    /// The kind of a metadata name, `None` for an unknown one.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "cells" => TableKind::Cells,
            "genes" => TableKind::Genes,
            "pairs" => TableKind::Pairs,
            "embedding" => TableKind::Embedding,
            "scores" => TableKind::Scores,
            "training_log" => TableKind::TrainingLog,
            "qc" => TableKind::Qc,
            _ => return None,
        })
    }
}

/// What the expression values of a cells table are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueKind {
    /// Raw (integer) counts.
    Counts,
    /// Total-count normalized, not logged.
    Normalized,
    /// Total-count normalized then natural log1p (scanpy's `log1p`).
    Log1p,
    /// log10(x + 1) of raw counts (LATE's input scale).
    Log10p,
    /// Values written by an imputation model (on the scale named in the provenance).
    Imputed,
    /// Batch-corrected expression written by an integration model (deepMNN: on the log1p
    /// scale of its input, values may be negative).
    Corrected,
}

impl ValueKind {
    /// The name written into the metadata and accepted by `--values`.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueKind::Counts => "counts",
            ValueKind::Normalized => "normalized",
            ValueKind::Log1p => "log1p",
            ValueKind::Log10p => "log10p",
            ValueKind::Imputed => "imputed",
            ValueKind::Corrected => "corrected",
        }
    }
    /// The kind of a name, `None` for an unknown one.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "counts" => ValueKind::Counts,
            "normalized" => ValueKind::Normalized,
            "log1p" => ValueKind::Log1p,
            "log10p" => ValueKind::Log10p,
            "imputed" => ValueKind::Imputed,
            "corrected" => ValueKind::Corrected,
            _ => return None,
        })
    }
}

/// One stage that touched a file: the tool, its version and its parameters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Step {
    /// The binary, e.g. `cellweave-hvg`.
    pub tool: String,
    /// The cellweave version that ran it.
    pub version: String,
    /// Its parameters (the parsed arguments).
    pub params: serde_json::Value,
}

impl Step {
    /// A provenance step for `tool` with its parsed arguments as parameters.
    pub fn new(tool: &str, params: &impl Serialize) -> Self {
        Step {
            tool: tool.to_string(),
            version: crate::VERSION.to_string(),
            params: serde_json::to_value(params).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// Compressed sparse rows: row `r` holds `indices[indptr[r]..indptr[r+1]]` (ascending
/// column positions) and the matching `data`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Csr {
    /// Number of columns.
    pub n_cols: usize,
    /// Row offsets into `indices` and `data` (`n_rows + 1` entries, starting at 0).
    pub indptr: Vec<u64>,
    /// Column position of each stored value, ascending within a row.
    pub indices: Vec<u32>,
    /// The stored values.
    pub data: Vec<f32>,
}

impl Csr {
    /// A matrix of no rows and `n_cols` columns.
    pub fn empty(n_cols: usize) -> Self {
        Csr {
            n_cols,
            indptr: vec![0],
            indices: Vec::new(),
            data: Vec::new(),
        }
    }
    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.indptr.len() - 1
    }
    /// Number of stored values.
    pub fn nnz(&self) -> usize {
        self.data.len()
    }
    /// Column positions and values of row `r`.
    #[inline]
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[r] as usize, self.indptr[r + 1] as usize);
        (&self.indices[a..b], &self.data[a..b])
    }
    /// The values of row `r`, to change in place.
    #[inline]
    pub fn row_mut(&mut self, r: usize) -> &mut [f32] {
        let (a, b) = (self.indptr[r] as usize, self.indptr[r + 1] as usize);
        &mut self.data[a..b]
    }
    /// Build from dense row-major values, keeping non-zeros.
    pub fn from_dense(n_rows: usize, n_cols: usize, dense: &[f32]) -> Self {
        assert_eq!(dense.len(), n_rows * n_cols);
        let mut m = Csr::empty(n_cols);
        for r in 0..n_rows {
            for (c, &v) in dense[r * n_cols..(r + 1) * n_cols].iter().enumerate() {
                if v != 0.0 {
                    m.indices.push(c as u32);
                    m.data.push(v);
                }
            }
            m.indptr.push(m.indices.len() as u64);
        }
        m
    }
    /// Dense row-major copy of the given rows (all columns).
    pub fn to_dense_rows(&self, rows: &[usize]) -> Vec<f32> {
        let mut out = vec![0f32; rows.len() * self.n_cols];
        for (o, &r) in rows.iter().enumerate() {
            let (idx, val) = self.row(r);
            let dst = &mut out[o * self.n_cols..(o + 1) * self.n_cols];
            for (&c, &v) in idx.iter().zip(val) {
                dst[c as usize] = v;
            }
        }
        out
    }
    /// Dense row-major copy of the whole matrix.
    pub fn to_dense(&self) -> Vec<f32> {
        let rows: Vec<usize> = (0..self.n_rows()).collect();
        self.to_dense_rows(&rows)
    }
    /// Keep the given rows, in the given order.
    pub fn select_rows(&self, rows: &[usize]) -> Csr {
        let mut m = Csr::empty(self.n_cols);
        let nnz: usize = rows
            .iter()
            .map(|&r| (self.indptr[r + 1] - self.indptr[r]) as usize)
            .sum();
        m.indices.reserve(nnz);
        m.data.reserve(nnz);
        m.indptr.reserve(rows.len());
        for &r in rows {
            let (i, v) = self.row(r);
            m.indices.extend_from_slice(i);
            m.data.extend_from_slice(v);
            m.indptr.push(m.indices.len() as u64);
        }
        m
    }
    /// Keep the given columns (ascending positions); columns are renumbered 0..cols.len().
    pub fn select_cols(&self, cols: &[usize]) -> Csr {
        let mut map = vec![None; self.n_cols];
        for (new, &old) in cols.iter().enumerate() {
            map[old] = Some(new as u32);
        }
        let mut m = Csr::empty(cols.len());
        m.extend_remapped(self, &map);
        m
    }
    /// Append the rows of `src` with column `c` renamed `map[c]` (left out where None), each
    /// row sorted by its new columns.
    pub fn extend_remapped(&mut self, src: &Csr, map: &[Option<u32>]) {
        let ascending = map
            .iter()
            .flatten()
            .collect::<Vec<_>>()
            .windows(2)
            .all(|w| w[0] < w[1]);
        let mut row: Vec<(u32, f32)> = Vec::new();
        for r in 0..src.n_rows() {
            let (idx, val) = src.row(r);
            row.clear();
            row.extend(
                idx.iter()
                    .zip(val)
                    .filter_map(|(&c, &v)| map[c as usize].map(|n| (n, v))),
            );
            if !ascending {
                row.sort_unstable_by_key(|p| p.0);
            }
            for &(c, v) in &row {
                self.indices.push(c);
                self.data.push(v);
            }
            self.indptr.push(self.indices.len() as u64);
        }
    }
    /// Check the structure: monotone indptr, ascending in-range column positions.
    pub fn validate(&self) -> Result<()> {
        if self.indptr.first() != Some(&0)
            || *self.indptr.last().unwrap() as usize != self.data.len()
        {
            bail!("row offsets do not cover the values");
        }
        if self.indices.len() != self.data.len() {
            bail!(
                "{} gene positions but {} values",
                self.indices.len(),
                self.data.len()
            );
        }
        for r in 0..self.n_rows() {
            if self.indptr[r] > self.indptr[r + 1] {
                bail!("row offsets decrease at row {r}");
            }
            let (idx, _) = self.row(r);
            for w in idx.windows(2) {
                if w[0] >= w[1] {
                    bail!(
                        "gene positions in row {r} are not strictly ascending ({} then {})",
                        w[0],
                        w[1]
                    );
                }
            }
            if let Some(&last) = idx.last() {
                if last as usize >= self.n_cols {
                    bail!(
                        "row {r} refers to gene position {last} but there are {} genes",
                        self.n_cols
                    );
                }
            }
        }
        Ok(())
    }
}

/// Borrowed CSR rows, e.g. one record batch of a cells table read through a memory map:
/// row `r` holds `indices[a..b]` and `data[a..b]` with `a = offsets[r] - offsets[0]` and
/// `b = offsets[r + 1] - offsets[0]` (Arrow list offsets need not start at zero).
#[derive(Debug, Clone, Copy)]
pub struct CsrView<'a> {
    /// Arrow list offsets of the rows (`n_rows + 1` entries).
    pub offsets: &'a [i32],
    /// Column positions of the stored values.
    pub indices: &'a [u32],
    /// The stored values.
    pub data: &'a [f32],
}

impl<'a> CsrView<'a> {
    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.offsets.len() - 1
    }
    /// Where row `r` lies in `indices` and `data`.
    #[inline]
    pub fn range(&self, r: usize) -> std::ops::Range<usize> {
        let o = self.offsets[0];
        (self.offsets[r] - o) as usize..(self.offsets[r + 1] - o) as usize
    }
    /// Column positions and values of row `r`.
    #[inline]
    pub fn row(&self, r: usize) -> (&'a [u32], &'a [f32]) {
        let k = self.range(r);
        (&self.indices[k.clone()], &self.data[k])
    }
}

/// A categorical column: codes into `categories`; [`Categorical::MISSING`] marks a null.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Categorical {
    /// Per row, the position of its value in `categories` (or [`Categorical::MISSING`]).
    pub codes: Vec<u32>,
    /// The distinct values.
    pub categories: Vec<String>,
}

impl Categorical {
    /// The code of a missing value.
    pub const MISSING: u32 = u32::MAX;

    /// Build from string values; categories in order of first appearance.
    pub fn from_strings<S: AsRef<str>>(values: &[S]) -> Self {
        let mut index: BTreeMap<&str, u32> = BTreeMap::new();
        let mut categories = Vec::new();
        let codes = values
            .iter()
            .map(|v| {
                let v = v.as_ref();
                *index.entry(v).or_insert_with(|| {
                    categories.push(v.to_string());
                    (categories.len() - 1) as u32
                })
            })
            .collect();
        Categorical { codes, categories }
    }
    /// A single category repeated `n` times.
    pub fn constant(name: &str, n: usize) -> Self {
        Categorical {
            codes: vec![0; n],
            categories: vec![name.to_string()],
        }
    }
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.codes.len()
    }
    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }
    /// The value of row `i` (`None` when missing).
    pub fn get(&self, i: usize) -> Option<&str> {
        let c = self.codes[i];
        (c != Self::MISSING).then(|| self.categories[c as usize].as_str())
    }
    /// The rows `rows`, in that order (categories unchanged).
    pub fn select(&self, rows: &[usize]) -> Self {
        Categorical {
            codes: rows.iter().map(|&r| self.codes[r]).collect(),
            categories: self.categories.clone(),
        }
    }
    /// Drop categories that no row uses, keeping the order of the rest.
    pub fn compact(&mut self) {
        let mut used = vec![false; self.categories.len()];
        for &c in &self.codes {
            if c != Self::MISSING {
                used[c as usize] = true;
            }
        }
        let mut remap = vec![Self::MISSING; self.categories.len()];
        let mut cats = Vec::new();
        for (i, u) in used.iter().enumerate() {
            if *u {
                remap[i] = cats.len() as u32;
                cats.push(self.categories[i].clone());
            }
        }
        for c in &mut self.codes {
            if *c != Self::MISSING {
                *c = remap[*c as usize];
            }
        }
        self.categories = cats;
    }
}

/// The values of one per-cell (or per-gene) column.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Strings as categories (Arrow dictionary).
    Cat(Categorical),
    /// Strings, with nulls.
    Str(Vec<Option<String>>),
    /// 64-bit floats.
    F64(Vec<f64>),
    /// 32-bit floats.
    F32(Vec<f32>),
    /// 64-bit integers, with nulls.
    I64(Vec<Option<i64>>),
    /// 32-bit unsigned integers.
    U32(Vec<u32>),
    /// Booleans, with nulls.
    Bool(Vec<Option<bool>>),
}

impl Column {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Column::Cat(c) => c.len(),
            Column::Str(v) => v.len(),
            Column::F64(v) => v.len(),
            Column::F32(v) => v.len(),
            Column::I64(v) => v.len(),
            Column::U32(v) => v.len(),
            Column::Bool(v) => v.len(),
        }
    }
    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The rows `rows`, in that order.
    pub fn select(&self, rows: &[usize]) -> Column {
        fn pick<T: Clone>(v: &[T], rows: &[usize]) -> Vec<T> {
            rows.iter().map(|&r| v[r].clone()).collect()
        }
        match self {
            Column::Cat(c) => Column::Cat(c.select(rows)),
            Column::Str(v) => Column::Str(pick(v, rows)),
            Column::F64(v) => Column::F64(pick(v, rows)),
            Column::F32(v) => Column::F32(pick(v, rows)),
            Column::I64(v) => Column::I64(pick(v, rows)),
            Column::U32(v) => Column::U32(pick(v, rows)),
            Column::Bool(v) => Column::Bool(pick(v, rows)),
        }
    }
    /// The value of row `i` as text (for TSV output and for label lookups).
    pub fn text(&self, i: usize) -> Option<String> {
        match self {
            Column::Cat(c) => c.get(i).map(str::to_string),
            Column::Str(v) => v[i].clone(),
            Column::F64(v) => (!v[i].is_nan()).then(|| v[i].to_string()),
            Column::F32(v) => (!v[i].is_nan()).then(|| v[i].to_string()),
            Column::I64(v) => v[i].map(|x| x.to_string()),
            Column::U32(v) => Some(v[i].to_string()),
            Column::Bool(v) => v[i].map(|x| x.to_string()),
        }
    }
    /// As a categorical (labels such as batch or cell type); numbers become their text.
    pub fn to_categorical(&self) -> Categorical {
        match self {
            Column::Cat(c) => c.clone(),
            other => {
                let texts: Vec<Option<String>> = (0..other.len()).map(|i| other.text(i)).collect();
                let present: Vec<&str> = texts.iter().map(|t| t.as_deref().unwrap_or("")).collect();
                let mut cat = Categorical::from_strings(&present);
                for (i, t) in texts.iter().enumerate() {
                    if t.is_none() {
                        cat.codes[i] = Categorical::MISSING;
                    }
                }
                cat.compact();
                cat
            }
        }
    }
}

/// A named column.
pub type Named = (String, Column);

/// The cells table: one row per cell, expression as CSR over `gene_ids`.
#[derive(Debug, Clone, PartialEq)]
pub struct CellsTable {
    /// Cell ids, unique.
    pub cell_ids: Vec<String>,
    /// The batch of each cell (column `batch` on disk).
    pub batch: Categorical,
    /// Every other per-cell column, carried through untouched, in order.
    pub obs: Vec<Named>,
    /// Gene ids, unique: the columns of `x`.
    pub gene_ids: Vec<String>,
    /// Gene names, parallel to `gene_ids` (not necessarily unique).
    pub gene_names: Vec<String>,
    /// Expression, cells x genes.
    pub x: Csr,
    /// What the values of `x` are.
    pub values: ValueKind,
    /// Every stage that produced this table, oldest first.
    pub provenance: Vec<Step>,
}

impl CellsTable {
    /// Number of cells.
    pub fn n_cells(&self) -> usize {
        self.cell_ids.len()
    }
    /// Number of genes.
    pub fn n_genes(&self) -> usize {
        self.gene_ids.len()
    }
    /// The fingerprint of the cell ids (see [`fingerprint`]).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cell_ids)
    }
    /// A per-cell column by name (`batch` and `cell_id` included).
    pub fn column(&self, name: &str) -> Option<Column> {
        match name {
            "batch" => Some(Column::Cat(self.batch.clone())),
            "cell_id" => Some(Column::Str(
                self.cell_ids.iter().cloned().map(Some).collect(),
            )),
            _ => self
                .obs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, c)| c.clone()),
        }
    }
    /// Like [`CellsTable::column`] but an error that lists the columns that exist.
    pub fn require_column(&self, name: &str) -> Result<Column> {
        self.column(name).ok_or_else(|| {
            let mut names = vec!["cell_id".to_string(), "batch".to_string()];
            names.extend(self.obs.iter().map(|(n, _)| n.clone()));
            Error::new(format!("column not found (columns: {})", names.join(", "))).field(name)
        })
    }
    /// Keep the given cells, in the given order.
    pub fn select_cells(&self, rows: &[usize]) -> CellsTable {
        let mut batch = self.batch.select(rows);
        batch.compact();
        CellsTable {
            cell_ids: rows.iter().map(|&r| self.cell_ids[r].clone()).collect(),
            batch,
            obs: self
                .obs
                .iter()
                .map(|(n, c)| (n.clone(), c.select(rows)))
                .collect(),
            gene_ids: self.gene_ids.clone(),
            gene_names: self.gene_names.clone(),
            x: self.x.select_rows(rows),
            values: self.values,
            provenance: self.provenance.clone(),
        }
    }
    /// Keep the given genes (ascending positions).
    pub fn select_genes(&self, cols: &[usize]) -> CellsTable {
        self.with_genes(cols, self.x.select_cols(cols))
    }
    /// The table with only the given genes (ascending positions), whose values are `x`.
    pub fn with_genes(&self, cols: &[usize], x: Csr) -> CellsTable {
        CellsTable {
            cell_ids: self.cell_ids.clone(),
            batch: self.batch.clone(),
            obs: self.obs.clone(),
            gene_ids: cols.iter().map(|&c| self.gene_ids[c].clone()).collect(),
            gene_names: cols.iter().map(|&c| self.gene_names[c].clone()).collect(),
            x,
            values: self.values,
            provenance: self.provenance.clone(),
        }
    }
    /// Check everything the contract promises; `raw counts` are checked for being
    /// finite, non-negative numbers.
    pub fn validate(&self) -> Result<()> {
        let n = self.n_cells();
        if self.x.n_rows() != n {
            bail!("{} cells but {} expression rows", n, self.x.n_rows());
        }
        if self.batch.len() != n {
            return Err(
                Error::new(format!("{} values for {} cells", self.batch.len(), n)).field("batch"),
            );
        }
        for (name, col) in &self.obs {
            if col.len() != n {
                return Err(
                    Error::new(format!("{} values for {} cells", col.len(), n)).field(name.clone())
                );
            }
        }
        if self.gene_names.len() != self.gene_ids.len() || self.x.n_cols != self.gene_ids.len() {
            return Err(Error::new(format!(
                "{} gene ids, {} gene names, matrix has {} columns",
                self.gene_ids.len(),
                self.gene_names.len(),
                self.x.n_cols
            ))
            .field("genes"));
        }
        check_unique(&self.cell_ids).map_err(|e| e.field("cell_id"))?;
        check_unique(&self.gene_ids).map_err(|e| e.field("gene_ids"))?;
        if let Some(i) = self
            .batch
            .codes
            .iter()
            .position(|&c| c == Categorical::MISSING)
        {
            return Err(
                Error::new(format!("cell '{}' has no batch", self.cell_ids[i])).field("batch"),
            );
        }
        self.x.validate().map_err(|e| e.field("expression"))?;
        if let Some(p) = self.x.data.iter().position(|v| !v.is_finite()) {
            return Err(Error::new(format!(
                "non-finite value {} in the expression values",
                self.x.data[p]
            ))
            .field("values"));
        }
        if self.values == ValueKind::Counts {
            if let Some(p) = self.x.data.iter().position(|&v| v < 0.0) {
                return Err(Error::new(format!(
                    "negative count {} (expected non-negative raw counts)",
                    self.x.data[p]
                ))
                .field("values"));
            }
        }
        Ok(())
    }
}

/// The row of each of `ids` among `have`; when some have none, how many and the first of
/// them (for the caller's error).
pub fn rows_of<'a>(
    ids: &'a [String],
    have: &[String],
) -> std::result::Result<Vec<usize>, (usize, &'a str)> {
    let index: HashMap<&str, usize> = have
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    let rows: Vec<Option<usize>> = ids
        .iter()
        .map(|id| index.get(id.as_str()).copied())
        .collect();
    match rows.iter().position(Option::is_none) {
        Some(first) => Err((
            rows.iter().filter(|r| r.is_none()).count(),
            ids[first].as_str(),
        )),
        None => Ok(rows.into_iter().flatten().collect()),
    }
}

/// Error when ids repeat, saying how many and suggesting the fix.
pub fn check_unique(ids: &[String]) -> Result<()> {
    check_unique_of(ids.iter().map(String::as_str))
}

/// [`check_unique`] of ids given one by one.
pub fn check_unique_of<'a>(ids: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let ids = ids.into_iter();
    let mut seen = HashSet::with_capacity(ids.size_hint().0);
    let mut dups = 0usize;
    let mut first = None;
    for id in ids {
        if !seen.insert(id) {
            dups += 1;
            first.get_or_insert(id);
        }
    }
    if dups > 0 {
        bail!(
            "{dups} duplicate id(s), first '{}' (use --make-unique to suffix duplicates with -1, -2, ...)",
            first.unwrap()
        );
    }
    Ok(())
}

/// Stable fingerprint of an ordered list of cell ids: `<count>:<fnv1a64 hex>`.
/// Tables that refer to cells by row position carry it; a mismatch is a clear error.
pub fn fingerprint(ids: &[String]) -> String {
    fingerprint_of(ids.iter().map(String::as_str))
}

/// [`fingerprint`] of ids given one by one (e.g. straight from Arrow string arrays).
pub fn fingerprint_of<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let (mut h, mut n): (u64, usize) = (0xcbf29ce484222325, 0);
    for id in ids {
        n += 1;
        for &b in id.as_bytes().iter().chain(std::iter::once(&0u8)) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    format!("{n}:{h:016x}")
}

/// A per-cell embedding: `dim` numbers per cell, row-major, plus the cells' obs.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingTable {
    /// The embedding's name (`claire`, `umap`, ...).
    pub name: String,
    /// Cell ids, in row order.
    pub cell_ids: Vec<String>,
    /// Per-cell columns carried from the cells table (`batch`, `cell_type`, ...).
    pub obs: Vec<Named>,
    /// Numbers per cell.
    pub dim: usize,
    /// Row-major values, `n_cells x dim`.
    pub data: Vec<f32>,
    /// Every stage that produced this table, oldest first.
    pub provenance: Vec<Step>,
}

impl EmbeddingTable {
    /// Number of cells.
    pub fn n_cells(&self) -> usize {
        self.cell_ids.len()
    }
    /// The `dim` values of row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
    /// A carried per-cell column by name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.obs.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }
    /// The embedding `name` of every cell of `cells` (`data`: `n_cells x dim`, row-major),
    /// carrying its per-cell columns, with `step` appended to its provenance.
    pub fn of_cells(
        cells: &CellsTable,
        name: &str,
        dim: usize,
        data: Vec<f32>,
        step: &Step,
    ) -> EmbeddingTable {
        let mut provenance = cells.provenance.clone();
        provenance.push(step.clone());
        EmbeddingTable {
            name: name.into(),
            cell_ids: cells.cell_ids.clone(),
            obs: EmbeddingTable::obs_from_cells(cells),
            dim,
            data,
            provenance,
        }
    }
    /// Per-cell columns of a cells table, to carry into an embedding (batch first).
    pub fn obs_from_cells(cells: &CellsTable) -> Vec<Named> {
        let mut obs = vec![("batch".to_string(), Column::Cat(cells.batch.clone()))];
        obs.extend(cells.obs.iter().cloned());
        obs
    }
}

/// What a row of a pairs table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairKind {
    /// A seed pair: mutual nearest neighbours across two batches.
    Mnn,
    /// An intra-batch nearest neighbour (i's neighbour j).
    Knn,
}

impl PairKind {
    /// The name written into the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            PairKind::Mnn => "mnn",
            PairKind::Knn => "knn",
        }
    }
}

/// Pairs of cells referred to by row position in the cells table whose fingerprint is kept.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PairsTable {
    /// Cells of the cells table the pairs refer to.
    pub n_cells: usize,
    /// Fingerprint of that cells table's cell ids.
    pub fingerprint: String,
    /// What each row is.
    pub kind: Vec<PairKind>,
    /// Row position of the first cell.
    pub i: Vec<u32>,
    /// Row position of the second cell.
    pub j: Vec<u32>,
    /// Distance between the two cells in the space they were found in.
    pub distance: Vec<f32>,
    /// Posterior of the "true pair" component after refinement (NaN before).
    pub posterior: Vec<f32>,
    /// Every stage that produced this table, oldest first.
    pub provenance: Vec<Step>,
}

impl PairsTable {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.i.len()
    }
    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.i.is_empty()
    }
    /// Append a row.
    pub fn push(&mut self, kind: PairKind, i: u32, j: u32, distance: f32, posterior: f32) {
        self.kind.push(kind);
        self.i.push(i);
        self.j.push(j);
        self.distance.push(distance);
        self.posterior.push(posterior);
    }
    /// Error unless this table refers to exactly these cells.
    pub fn check_cells(&self, cells_fingerprint: &str) -> Result<()> {
        if self.fingerprint != cells_fingerprint {
            bail!(
                "the pairs refer to other cells (fingerprint {} here, {} in the cells table): \
                 recompute the pairs on this cells table",
                self.fingerprint,
                cells_fingerprint
            );
        }
        Ok(())
    }
}

/// A generic table of named columns (genes, scores, QC reports, training logs).
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// What the table holds.
    pub kind: TableKind,
    /// The columns, in order, all of the same length.
    pub columns: Vec<Named>,
    /// Extra schema metadata (e.g. the cells fingerprint, gene scale).
    pub meta: BTreeMap<String, String>,
    /// Every stage that produced this table, oldest first.
    pub provenance: Vec<Step>,
}

impl Frame {
    /// An empty table of this kind.
    pub fn new(kind: TableKind) -> Self {
        Frame {
            kind,
            columns: Vec::new(),
            meta: BTreeMap::new(),
            provenance: Vec::new(),
        }
    }
    /// Number of rows (0 without columns).
    pub fn n_rows(&self) -> usize {
        self.columns.first().map(|(_, c)| c.len()).unwrap_or(0)
    }
    /// The table with one more column.
    pub fn with(mut self, name: &str, col: Column) -> Self {
        self.columns.push((name.to_string(), col));
        self
    }
    /// [`Frame::with`] for several columns, in order.
    pub fn with_all(mut self, cols: Vec<(&str, Column)>) -> Self {
        for (name, col) in cols {
            self.columns.push((name.to_string(), col));
        }
        self
    }
    /// A column by name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }
    /// A column by name, or an error naming the missing column and listing the others.
    pub fn require(&self, name: &str) -> Result<&Column> {
        self.column(name).ok_or_else(|| {
            let names: Vec<&str> = self.columns.iter().map(|(n, _)| n.as_str()).collect();
            Error::new(format!("column not found (columns: {})", names.join(", "))).field(name)
        })
    }
}

/// Suffix repeated ids with `-1`, `-2`, ... (first occurrence unchanged), avoiding clashes
/// with ids that already exist. Returns how many were renamed.
pub fn make_unique(ids: &mut [String]) -> usize {
    let mut taken: HashSet<String> = ids.iter().cloned().collect();
    let mut seen: HashSet<String> = HashSet::with_capacity(ids.len());
    let mut next: HashMap<String, usize> = HashMap::new();
    let mut renamed = 0;
    for id in ids.iter_mut() {
        if seen.insert(id.clone()) {
            continue;
        }
        let k = next.entry(id.clone()).or_insert(0);
        let new = loop {
            *k += 1;
            let cand = format!("{id}-{k}");
            if !taken.contains(&cand) {
                break cand;
            }
        };
        taken.insert(new.clone());
        seen.insert(new.clone());
        *id = new;
        renamed += 1;
    }
    renamed
}
