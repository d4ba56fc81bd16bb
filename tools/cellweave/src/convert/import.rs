//! What `cellweave-import` does: read every input in its own format, align genes by id,
//! concatenate the cells, join per-cell metadata, decide each cell's batch, and check the
//! result against the contract.

use crate::contract::{check_unique, Categorical, CellsTable, Column, Csr, Named, ValueKind};
use crate::convert::samplesheet::Sample;
use crate::io::formats::h5ad::H5Csr;
use crate::io::formats::mtx::Orientation;
use crate::io::formats::obs::{infer_column, join_obs, read_obs_rows, ObsJoin};
use crate::io::formats::{dense, h5ad, mtx, stem_of, tenx_h5};
use crate::io::{table, Format};
use crate::{info, Error, Result};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// How gene sets of several inputs are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum GeneJoin {
    /// Genes present in every input (order of the first input).
    Intersection,
    /// Genes present in any input; absent genes count zero.
    Union,
}

/// `--values`: a [`ValueKind`] by its name.
fn parse_values(s: &str) -> Result<ValueKind, String> {
    ValueKind::parse(s)
        .ok_or_else(|| format!("'{s}' is not one of counts, normalized, log1p, log10p, imputed"))
}

/// A [`ValueKind`] in provenance: its name.
fn serialize_values<S: serde::Serializer>(v: &ValueKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}

/// Options of an import (the flags of `cellweave-import`).
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct ImportOptions {
    /// .h5ad: read this layer instead of X (`raw` reads raw/X with raw/var)
    #[arg(long, value_name = "NAME")]
    pub layer: Option<String>,
    /// Per-cell metadata to join by cell id (TSV/CSV, first column = cell id)
    #[arg(long, value_name = "FILE")]
    pub obs: Option<PathBuf>,
    /// How obs rows are matched to cells: id, position (row i is cell i, its id must be
    /// cell i's), or auto (by id; by position when the obs ids repeat)
    #[arg(long, value_enum, default_value = "auto")]
    pub obs_join: ObsJoin,
    /// Rows of a samplesheet, one per input (its obs file and per-sample columns); empty
    /// without one (set from `--samplesheet`, not a flag of its own).
    #[arg(skip)]
    #[serde(skip)]
    pub samples: Vec<Sample>,
    /// Per-cell column holding the batch (default: `batch` if such a column exists)
    #[arg(long, value_name = "KEY")]
    pub batch_key: Option<String>,
    /// Batch name of all cells of an input (give one per input)
    #[arg(long, value_name = "NAME")]
    pub batch: Vec<String>,
    /// Suffix duplicate cell ids (and gene ids) with -1, -2, ... instead of failing
    #[arg(long)]
    pub make_unique: bool,
    /// How gene sets of several inputs are combined (union fills absent genes with zeros)
    #[arg(long, value_enum, default_value = "intersection")]
    pub join: GeneJoin,
    /// Matrix rows are genes (dense text: header of cell ids; MTX: forces the 10x layout)
    #[arg(long, conflicts_with = "cells_as_rows")]
    pub genes_as_rows: bool,
    /// MTX: matrix rows are cells (the default is detected from the file sizes)
    #[arg(long)]
    pub cells_as_rows: bool,
    /// What the values are; `counts` requires finite non-negative numbers
    #[arg(long, value_parser = parse_values, default_value = "counts")]
    #[serde(serialize_with = "serialize_values")]
    pub values: ValueKind,
}

impl Default for ImportOptions {
    fn default() -> Self {
        crate::cli::defaults()
    }
}

impl ImportOptions {
    /// The matrix orientation the flags force (`None`: detected, or cells as rows).
    pub fn orientation(&self) -> Option<Orientation> {
        match (self.genes_as_rows, self.cells_as_rows) {
            (true, _) => Some(Orientation::GenesByCells),
            (_, true) => Some(Orientation::CellsByGenes),
            _ => None,
        }
    }
}

/// A Cell Ranger sample folder or its `outs/` folder: the filtered matrix inside it
/// (`filtered_feature_bc_matrix/`, else `filtered_feature_bc_matrix.h5`); any other path
/// as it is.
pub fn cellranger_matrix(path: &Path) -> PathBuf {
    if !path.is_dir() || mtx::locate(path).is_ok() {
        return path.to_path_buf();
    }
    ["outs", "."]
        .iter()
        .flat_map(|d| {
            [
                "filtered_feature_bc_matrix",
                "filtered_feature_bc_matrix.h5",
            ]
            .map(|m| path.join(d).join(m))
        })
        .find(|p| p.exists())
        .unwrap_or_else(|| path.to_path_buf())
}

/// Batch names for inputs without batch information: their stems, lengthened with parent
/// folders where two inputs would otherwise share a name.
fn input_names(inputs: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = inputs.iter().map(|p| stem_of(p)).collect();
    for depth in 1..4 {
        let dup: HashSet<&String> = {
            let mut seen = HashSet::new();
            names.iter().filter(|n| !seen.insert(*n)).collect()
        };
        if dup.is_empty() {
            break;
        }
        let dup: HashSet<String> = dup.into_iter().cloned().collect();
        for (i, p) in inputs.iter().enumerate() {
            if dup.contains(&names[i]) {
                let comps: Vec<String> = p
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().to_string())
                    .collect();
                let k = comps.len().saturating_sub(depth);
                let mut parts = comps[k..comps.len().saturating_sub(1)].to_vec();
                parts.push(stem_of(p));
                names[i] = parts.join("/");
            }
        }
    }
    names
}

/// Read one input in its format (by extension; a folder is a 10x MTX folder). An MTX
/// folder's own `obs.tsv` is joined unless `skip_folder_obs`.
pub fn read_input(path: &Path, opts: &ImportOptions, skip_folder_obs: bool) -> Result<CellsTable> {
    let (mut t, rows) = open_input(path, opts, skip_folder_obs, false)?;
    if let Some(r) = rows {
        t.x = r.read(0, r.n_rows()).map_err(|e| e.file(path))?;
    }
    Ok(t)
}

/// [`read_input`]; with `lazy`, the CSR matrix of an `.h5ad` stays on disk (the table has
/// empty rows and the rows are read from the returned [`H5Csr`]).
fn open_input(
    path: &Path,
    opts: &ImportOptions,
    skip_folder_obs: bool,
    lazy: bool,
) -> Result<(CellsTable, Option<H5Csr>)> {
    let values = opts.values;
    let format = Format::of(path).ok_or_else(|| {
        Error::new("unknown input format (expected a 10x folder or matrix.mtx[.gz], .h5ad, .h5, .csv/.tsv[.gz], .arrow or .parquet)").field("format").file(path)
    })?;
    if !path.exists() {
        return Err(Error::new("no such file or folder")
            .field("path")
            .file(path));
    }
    if opts.layer.is_some() && format != Format::H5ad {
        return Err(Error::new("--layer applies to .h5ad inputs only")
            .flag("--layer")
            .file(path));
    }
    let mut rows = None;
    let mut t = match format {
        Format::MtxDir => {
            let mut t = mtx::read_mtx_dir(path, opts.orientation(), values)?;
            if !skip_folder_obs {
                if let Some(obs_path) = mtx::locate(path)?.obs {
                    let obs = read_obs_rows(&obs_path)?;
                    join_obs(&mut t, &obs, &obs_path, opts.obs_join)?;
                    info!(
                        "{}: joined {} column(s) from {}",
                        path.display(),
                        obs.columns.len(),
                        obs_path.display()
                    );
                }
            }
            t
        }
        Format::H5ad if lazy => {
            let (t, r) = h5ad::open_h5ad(path, opts.layer.as_deref(), values)?;
            rows = r;
            t
        }
        Format::H5ad => h5ad::read_h5ad(path, opts.layer.as_deref(), values)?,
        Format::TenxH5 => tenx_h5::read_tenx_h5(path, values)?,
        Format::Tsv | Format::Csv => dense::read_dense(
            path,
            opts.orientation() == Some(Orientation::GenesByCells),
            values,
        )?,
        Format::Arrow | Format::Parquet => {
            let mut t = table::read_cells(path)?;
            // A cells table's batch is real information: carry it as a column.
            t.obs
                .insert(0, ("batch".to_string(), Column::Cat(t.batch.clone())));
            t
        }
    };
    if t.n_cells() == 0 {
        return Err(
            Error::new("no cells (an input must contribute at least one cell)")
                .field("cell_id")
                .file(path),
        );
    }
    if t.n_genes() == 0 {
        return Err(Error::new("no genes").field("genes").file(path));
    }
    // An .h5ad is scanned as it is opened (it may hold counts elsewhere); a cells table
    // says what its values are.
    if opts.values == ValueKind::Counts
        && !matches!(format, Format::H5ad | Format::Arrow | Format::Parquet)
    {
        let bad = t.x.data.iter().filter(|&&v| !h5ad::is_count(v)).count();
        if bad > 0 {
            return Err(Error::new(format!(
                "{bad} of the {} stored values are not counts (non-negative integers); if the values are normalized, say so with --values log1p or --values normalized",
                t.x.data.len()
            ))
            .field("values")
            .file(path));
        }
    }
    if let Err(e) = check_unique(&t.gene_ids) {
        if !opts.make_unique {
            return Err(e.field("gene_ids").file(path));
        }
        let n = crate::contract::make_unique(&mut t.gene_ids);
        info!("{}: suffixed {n} duplicate gene id(s)", path.display());
    }
    Ok((t, rows))
}

/// Gene ids and names of the combined table and, per input, the combined position of each
/// of its genes (None = dropped).
type Alignment = (Vec<String>, Vec<String>, Vec<Vec<Option<u32>>>);

fn align_genes(tables: &[CellsTable], join: GeneJoin) -> Result<Alignment> {
    let mut ids: Vec<String> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut pos: HashMap<String, u32> = HashMap::new();
    match join {
        GeneJoin::Union => {
            for t in tables {
                for (id, name) in t.gene_ids.iter().zip(&t.gene_names) {
                    if !pos.contains_key(id) {
                        pos.insert(id.clone(), ids.len() as u32);
                        ids.push(id.clone());
                        names.push(name.clone());
                    }
                }
            }
        }
        GeneJoin::Intersection => {
            let sets: Vec<HashSet<&str>> = tables
                .iter()
                .map(|t| t.gene_ids.iter().map(String::as_str).collect())
                .collect();
            for (id, name) in tables[0].gene_ids.iter().zip(&tables[0].gene_names) {
                if sets.iter().all(|s| s.contains(id.as_str())) {
                    pos.insert(id.clone(), ids.len() as u32);
                    ids.push(id.clone());
                    names.push(name.clone());
                }
            }
            if ids.is_empty() {
                return Err(Error::new("the inputs have no gene id in common (check that they name genes the same way, or use --join union)").field("gene_ids"));
            }
        }
    }
    let maps = tables
        .iter()
        .map(|t| t.gene_ids.iter().map(|g| pos.get(g).copied()).collect())
        .collect();
    Ok((ids, names, maps))
}

/// Concatenate per-input versions of one column; inputs without it get missing values.
/// Columns of different types become the common numeric type or a categorical of text.
fn concat_column(parts: &[Option<&Column>], lens: &[usize]) -> Column {
    let present: Vec<&Column> = parts.iter().flatten().copied().collect();
    let all = |f: fn(&Column) -> bool| present.iter().all(|c| f(c));
    let numeric = |c: &Column| {
        matches!(
            c,
            Column::F64(_) | Column::F32(_) | Column::I64(_) | Column::U32(_)
        )
    };
    let integer = |c: &Column| matches!(c, Column::I64(_) | Column::U32(_));
    if present.len() == 1 && parts.len() == 1 {
        return present[0].clone();
    }
    // The parts' values one after the other (`missing` for an input without the column).
    fn joined<T: Clone>(
        parts: &[Option<&Column>],
        lens: &[usize],
        missing: T,
        values: impl Fn(&Column) -> Vec<T>,
    ) -> Vec<T> {
        let mut v = Vec::new();
        for (p, &n) in parts.iter().zip(lens) {
            match p {
                Some(c) => v.extend(values(c)),
                None => v.extend(std::iter::repeat_n(missing.clone(), n)),
            }
        }
        v
    }
    if all(integer) {
        return Column::I64(joined(parts, lens, None, |c| match c {
            Column::I64(x) => x.clone(),
            Column::U32(x) => x.iter().map(|&a| Some(a as i64)).collect(),
            _ => vec![None; c.len()],
        }));
    }
    if all(numeric) {
        return Column::F64(joined(parts, lens, f64::NAN, |c| {
            (0..c.len())
                .map(|i| {
                    c.text(i)
                        .and_then(|s| s.parse::<f64>().ok())
                        .unwrap_or(f64::NAN)
                })
                .collect()
        }));
    }
    if all(|c| matches!(c, Column::Bool(_))) {
        return Column::Bool(joined(parts, lens, None, |c| match c {
            Column::Bool(x) => x.clone(),
            _ => vec![None; c.len()],
        }));
    }
    if all(|c| matches!(c, Column::Str(_))) {
        return Column::Str(joined(parts, lens, None, |c| match c {
            Column::Str(x) => x.clone(),
            _ => vec![None; c.len()],
        }));
    }
    // Categorical of text: categories in order of first appearance across inputs.
    let mut cat = Categorical::default();
    let mut index: HashMap<String, u32> = HashMap::new();
    for (p, &n) in parts.iter().zip(lens) {
        match p {
            Some(c) => {
                let c = c.to_categorical();
                let remap: Vec<u32> = c
                    .categories
                    .iter()
                    .map(|s| {
                        *index.entry(s.clone()).or_insert_with(|| {
                            cat.categories.push(s.clone());
                            (cat.categories.len() - 1) as u32
                        })
                    })
                    .collect();
                cat.codes.extend(c.codes.iter().map(|&k| {
                    if k == Categorical::MISSING {
                        k
                    } else {
                        remap[k as usize]
                    }
                }));
            }
            None => cat
                .codes
                .extend(std::iter::repeat_n(Categorical::MISSING, n)),
        }
    }
    Column::Cat(cat)
}

/// Concatenate tables (already read) with genes aligned by id.
pub fn concatenate(tables: Vec<CellsTable>, join: GeneJoin) -> Result<CellsTable> {
    if tables.len() == 1 {
        return Ok(tables.into_iter().next().unwrap());
    }
    let (gene_ids, gene_names, maps) = align_genes(&tables, join)?;
    let n_genes = gene_ids.len();
    let mut x = Csr::empty(n_genes);
    let nnz: usize = tables.iter().map(|t| t.x.nnz()).sum();
    x.indices.reserve(nnz);
    x.data.reserve(nnz);
    for (t, map) in tables.iter().zip(&maps) {
        x.extend_remapped(&t.x, map);
    }
    let mut names: Vec<String> = Vec::new();
    for t in &tables {
        for (n, _) in &t.obs {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    let lens: Vec<usize> = tables.iter().map(CellsTable::n_cells).collect();
    let obs: Vec<Named> = names
        .iter()
        .map(|n| {
            let parts: Vec<Option<&Column>> = tables
                .iter()
                .map(|t| t.obs.iter().find(|(m, _)| m == n).map(|(_, c)| c))
                .collect();
            (n.clone(), concat_column(&parts, &lens))
        })
        .collect();
    let mut batch = Categorical::default();
    let mut cell_ids = Vec::with_capacity(lens.iter().sum());
    for t in &tables {
        let off = batch.categories.len() as u32;
        batch.categories.extend(t.batch.categories.iter().cloned());
        batch.codes.extend(t.batch.codes.iter().map(|&c| c + off));
        cell_ids.extend(t.cell_ids.iter().cloned());
    }
    let values = tables[0].values;
    Ok(CellsTable {
        cell_ids,
        batch,
        obs,
        gene_ids,
        gene_names,
        x,
        values,
        provenance: Vec::new(),
    })
}

/// Columns the cells table reserves; obs columns with these names are renamed.
const RESERVED: [&str; 4] = ["cell_id", "batch", "gene_index", "expression"];

/// Import `inputs` into one cells table.
pub fn import(inputs: &[PathBuf], opts: &ImportOptions) -> Result<CellsTable> {
    let (mut t, rows) = import_lazy(inputs, opts)?;
    if let Some(r) = rows {
        t.x = r.read(0, r.n_rows()).map_err(|e| e.file(&inputs[0]))?;
    }
    Ok(t)
}

/// [`import`], but when the only input is an `.h5ad` with a CSR matrix, its rows stay on
/// disk: the table (checked) has empty rows, to be filled from the returned [`H5Csr`] (whose
/// reads check the rows), e.g. batch by batch by [`write_imported`].
pub fn import_lazy(
    inputs: &[PathBuf],
    opts: &ImportOptions,
) -> Result<(CellsTable, Option<H5Csr>)> {
    if inputs.is_empty() {
        return Err(Error::new("no input given"));
    }
    if !opts.batch.is_empty() && opts.batch.len() != 1 && opts.batch.len() != inputs.len() {
        return Err(Error::new(format!(
            "{} --batch names for {} inputs (give one per input)",
            opts.batch.len(),
            inputs.len()
        ))
        .field("batch"));
    }
    if !opts.batch.is_empty() && opts.batch_key.is_some() {
        return Err(Error::new("give either --batch or --batch-key, not both").field("batch"));
    }
    if opts.batch.len() == 1 && inputs.len() > 1 {
        return Err(Error::new(format!(
            "one --batch name for {} inputs (give one per input, or use --batch-key)",
            inputs.len()
        ))
        .field("batch"));
    }
    if !opts.samples.is_empty() && opts.samples.len() != inputs.len() {
        return Err(Error::new("one samplesheet row per input").field("samplesheet"));
    }
    let stems = input_names(inputs);
    let mut tables = Vec::with_capacity(inputs.len());
    let mut rows = None;
    for (i, p) in inputs.iter().enumerate() {
        let p = &cellranger_matrix(p);
        let sample = opts.samples.get(i);
        let own_obs = opts.obs.is_some() || sample.is_some_and(|s| s.obs.is_some());
        let (mut t, r) = open_input(p, opts, own_obs, inputs.len() == 1)?;
        rows = r;
        if let Some(sample) = sample {
            add_sample_columns(&mut t, sample, opts.obs_join)?;
        }
        let name = opts
            .batch
            .get(i)
            .cloned()
            .unwrap_or_else(|| stems[i].clone());
        t.batch = Categorical::constant(&name, t.n_cells());
        let nnz = rows.as_ref().map_or(t.x.nnz(), H5Csr::nnz);
        info!(
            "{}: {} cells x {} genes, {} non-zeros",
            p.display(),
            t.n_cells(),
            t.n_genes(),
            nnz
        );
        tables.push(t);
    }
    let n_inputs = tables.len();
    suffix_shared_ids(&mut tables);
    let mut t = concatenate(tables, opts.join)?;
    if n_inputs > 1 {
        info!("genes aligned by id ({:?}): {}", opts.join, t.n_genes());
    }
    if let Some(obs_path) = &opts.obs {
        let obs = read_obs_rows(obs_path)?;
        let ignored = join_obs(&mut t, &obs, obs_path, opts.obs_join)?;
        info!(
            "{}: joined {} column(s){}",
            obs_path.display(),
            obs.columns.len(),
            if ignored > 0 {
                format!(" ({ignored} rows for other cells ignored)")
            } else {
                String::new()
            }
        );
    }
    assign_batch(&mut t, opts, &inputs[0])?;
    for (name, _) in t.obs.iter_mut() {
        if RESERVED.contains(&name.as_str()) {
            let new = format!("{name}_orig");
            info!("per-cell column '{name}' renamed to '{new}' ('{name}' is reserved by the cells table)");
            *name = new;
        }
    }
    if let Err(e) = check_unique(&t.cell_ids) {
        if !opts.make_unique {
            return Err(e.field("cell_id").file(&inputs[0]));
        }
        let n = crate::contract::make_unique(&mut t.cell_ids);
        info!("suffixed {n} duplicate cell id(s)");
    }
    t.values = opts.values;
    t.validate().map_err(|e| e.file(&inputs[0]))?;
    Ok((t, rows))
}

/// A samplesheet row's per-cell information for its sample's cells: its obs file (joined
/// onto the sample's own barcodes) and its other columns (one value for every cell).
fn add_sample_columns(t: &mut CellsTable, sample: &Sample, how: ObsJoin) -> Result<()> {
    if let Some(obs_path) = &sample.obs {
        let obs = read_obs_rows(obs_path)?;
        join_obs(t, &obs, obs_path, how)?;
    }
    for (name, value) in &sample.columns {
        let values = vec![value.as_str(); t.n_cells()];
        t.obs.retain(|(n, _)| n != name);
        t.obs.push((name.clone(), infer_column(&values)));
    }
    Ok(())
}

/// Cell ids that repeat across samples (each unique within its sample, e.g. 10x barcodes)
/// become `<id>-<sample>` in every sample, as anndata's `concat(index_unique='-')` names
/// them; repeats within one sample, or samples of the same name, are left for
/// `--make-unique`.
fn suffix_shared_ids(tables: &mut [CellsTable]) {
    let samples: Vec<String> = tables
        .iter()
        .map(|t| t.batch.get(0).unwrap_or_default().to_string())
        .collect();
    let named = samples.iter().collect::<HashSet<_>>().len() == samples.len();
    if tables.len() < 2 || !named || tables.iter().any(|t| check_unique(&t.cell_ids).is_err()) {
        return;
    }
    let mut seen: HashSet<&str> = HashSet::new();
    let shared = tables
        .iter()
        .flat_map(|t| t.cell_ids.iter())
        .filter(|id| !seen.insert(id.as_str()))
        .count();
    if shared == 0 {
        return;
    }
    for (t, sample) in tables.iter_mut().zip(&samples) {
        for id in t.cell_ids.iter_mut() {
            *id = format!("{id}-{sample}");
        }
    }
    info!("{shared} cell id(s) repeat across samples: every id is now <id>-<sample>");
}

/// Write an imported table whose rows are read from `rows`, batch by batch (reading the next
/// batch while writing one); returns the number of non-zeros and their sum, for the log.
pub fn write_imported(
    path: &Path,
    t: &CellsTable,
    rows: &H5Csr,
    input: &Path,
) -> Result<(usize, f64)> {
    let totals = std::sync::Mutex::new((0usize, 0f64));
    let read = |start: usize, end: usize| {
        let m = rows.lists(start, end).map_err(|e| e.file(input))?;
        let mut tot = totals.lock().unwrap();
        tot.0 += m.values.len();
        tot.1 += sum(&m.values);
        Ok(m)
    };
    // the input's pages are dropped where the output is written, to be recycled there
    table::write_cells_rows(path, t, &rows.indptr, read, |a, b| rows.forget(a, b))?;
    Ok(totals.into_inner().unwrap())
}

/// The sum of the values in float64 (eight running sums, so that it vectorizes).
fn sum(v: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = v.chunks_exact(8);
    let rest: f64 = chunks.remainder().iter().map(|&x| x as f64).sum();
    for c in chunks {
        acc.iter_mut().zip(c).for_each(|(a, &x)| *a += x as f64);
    }
    acc.iter().sum::<f64>() + rest
}

/// Decide the batch of every cell: `--batch` names, or the `--batch-key` column (default
/// `batch` when such a column exists), or else the input names already set.
fn assign_batch(t: &mut CellsTable, opts: &ImportOptions, first: &Path) -> Result<()> {
    if !opts.batch.is_empty() {
        return Ok(());
    }
    let key = match &opts.batch_key {
        Some(k) => k.clone(),
        None if t.obs.iter().any(|(n, _)| n == "batch") => "batch".to_string(),
        None => {
            info!("no batch column: each input is its own batch");
            return Ok(());
        }
    };
    let Some(pos) = t.obs.iter().position(|(n, _)| *n == key) else {
        let names: Vec<&str> = t.obs.iter().map(|(n, _)| n.as_str()).collect();
        let cols = if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        };
        return Err(
            Error::new(format!("no such per-cell column (columns: {cols})"))
                .field(key)
                .file(first),
        );
    };
    let (_, col) = t.obs.remove(pos);
    let mut cat = col.to_categorical();
    if let Column::Cat(c) = &col {
        let mut used = vec![false; c.categories.len()];
        for &k in &c.codes {
            if k != Categorical::MISSING {
                used[k as usize] = true;
            }
        }
        let empty: Vec<&str> = c
            .categories
            .iter()
            .zip(&used)
            .filter(|(_, u)| !**u)
            .map(|(s, _)| s.as_str())
            .collect();
        if !empty.is_empty() {
            return Err(Error::new(format!(
                "batch(es) with no cells: {} (remove unused categories, e.g. adata.obs['{key}'].cat.remove_unused_categories())",
                empty.join(", ")
            ))
            .field(key)
            .file(first));
        }
    }
    let missing = cat
        .codes
        .iter()
        .filter(|&&c| c == Categorical::MISSING)
        .count();
    if missing > 0 {
        let i = cat
            .codes
            .iter()
            .position(|&c| c == Categorical::MISSING)
            .unwrap();
        return Err(Error::new(format!(
            "{missing} cell(s) have no batch value (first: '{}')",
            t.cell_ids[i]
        ))
        .field(key)
        .file(first));
    }
    cat.compact();
    t.batch = cat;
    Ok(())
}

/// One line per batch plus totals, for the log.
pub fn summary(t: &CellsTable) -> String {
    let total: f64 = t.x.data.iter().map(|&v| v as f64).sum();
    summary_of(t, t.x.nnz(), total)
}

/// [`summary`] with the number of non-zeros and their sum given.
pub fn summary_of(t: &CellsTable, nnz: usize, total: f64) -> String {
    let mut sizes = vec![0usize; t.batch.categories.len()];
    for &c in &t.batch.codes {
        sizes[c as usize] += 1;
    }
    let batches: Vec<String> = t
        .batch
        .categories
        .iter()
        .zip(&sizes)
        .map(|(b, n)| format!("{b}={n}"))
        .collect();
    format!(
        "{} cells x {} genes, {} non-zeros (sum {}), {} batch(es): {}",
        t.n_cells(),
        t.n_genes(),
        nnz,
        total,
        t.batch.categories.len(),
        batches.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ids: &[&str], genes: &[&str], dense: &[f32], obs: Vec<Named>) -> CellsTable {
        CellsTable {
            cell_ids: ids.iter().map(|s| s.to_string()).collect(),
            batch: Categorical::constant("x", ids.len()),
            obs,
            gene_ids: genes.iter().map(|s| s.to_string()).collect(),
            gene_names: genes.iter().map(|s| s.to_lowercase()).collect(),
            x: Csr::from_dense(ids.len(), genes.len(), dense),
            values: ValueKind::Counts,
            provenance: vec![],
        }
    }

    #[test]
    fn stems() {
        assert_eq!(stem_of(Path::new("/d/kang.h5ad")), "kang");
        assert_eq!(stem_of(Path::new("/d/s1/matrix.mtx.gz")), "s1");
        assert_eq!(stem_of(Path::new("/d/GSM1_matrix.mtx.gz")), "GSM1");
        assert_eq!(stem_of(Path::new("/d/counts.csv.gz")), "counts");
        let names = input_names(&[
            PathBuf::from("a/s1/filtered"),
            PathBuf::from("a/s2/filtered"),
        ]);
        assert_eq!(names, vec!["s1/filtered", "s2/filtered"]);
    }

    #[test]
    fn unique_suffixes() {
        let mut ids: Vec<String> = ["a", "b", "a", "a-1", "a"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(crate::contract::make_unique(&mut ids), 2);
        assert_eq!(ids, vec!["a", "b", "a-2", "a-1", "a-3"]);
        check_unique(&ids).unwrap();
    }

    #[test]
    fn union_and_intersection() {
        let a = t(
            &["c1"],
            &["G1", "G2"],
            &[1.0, 2.0],
            vec![("k".into(), Column::I64(vec![Some(1)]))],
        );
        let b = t(
            &["c2"],
            &["G3", "G2"],
            &[3.0, 4.0],
            vec![("k".into(), Column::F64(vec![2.5]))],
        );
        let i = concatenate(vec![a.clone(), b.clone()], GeneJoin::Intersection).unwrap();
        assert_eq!(i.gene_ids, vec!["G2"]);
        assert_eq!(i.x.to_dense(), vec![2.0, 4.0]);
        let u = concatenate(vec![a, b], GeneJoin::Union).unwrap();
        assert_eq!(u.gene_ids, vec!["G1", "G2", "G3"]);
        assert_eq!(u.gene_names, vec!["g1", "g2", "g3"]);
        assert_eq!(u.x.to_dense(), vec![1.0, 2.0, 0.0, 0.0, 4.0, 3.0]);
        assert_eq!(u.obs[0].1, Column::F64(vec![1.0, 2.5]));
        u.x.validate().unwrap();
    }

    #[test]
    fn h5ad_rows_streamed_to_the_output_as_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let dense: Vec<f32> = (0..2000)
            .map(|i| ((i * 7919) % 13 * (i % 3)) as f32)
            .collect();
        let (ids, genes): (Vec<String>, Vec<String>) = (
            (0..100).map(|i| format!("c{i}")).collect(),
            (0..20).map(|i| format!("G{i}")).collect(),
        );
        let (ids, genes): (Vec<&str>, Vec<&str>) = (
            ids.iter().map(String::as_str).collect(),
            genes.iter().map(String::as_str).collect(),
        );
        let k = Column::F64((0..100).map(|i| i as f64).collect());
        let mut t = t(&ids, &genes, &dense, vec![("k".into(), k)]);
        let batch: Vec<&str> = (0..100).map(|i| ["a", "b"][i % 2]).collect();
        t.batch = Categorical::from_strings(&batch);
        let h = dir.path().join("in.h5ad");
        h5ad::write_h5ad(&h, &h5ad::anndata_of(&t)).unwrap();
        let inputs = vec![h.clone()];
        let opts = ImportOptions::default();
        let whole = import(&inputs, &opts).unwrap();
        let (lazy, rows) = import_lazy(&inputs, &opts).unwrap();
        let rows = rows.expect("a CSR matrix stays on disk");
        assert_eq!(lazy.x.nnz(), 0);
        let out = dir.path().join("out.arrow");
        let (nnz, sum) = write_imported(&out, &lazy, &rows, &h).unwrap();
        assert_eq!(nnz, whole.x.nnz());
        assert_eq!(sum, whole.x.data.iter().map(|&v| v as f64).sum::<f64>());
        let p = dir.path().join("whole.arrow");
        table::write_cells(&p, &whole).unwrap();
        let back = table::read_cells(&out).unwrap();
        assert_eq!(back, table::read_cells(&p).unwrap());
        assert_eq!(back.x, t.x);
    }

    #[test]
    fn h5ad_rows_in_place_unless_they_need_sorting_or_are_bad() {
        let dir = tempfile::tempdir().unwrap();
        let dense: Vec<f32> = (0..4000).map(|i| ((i * 31) % 7 % 3) as f32).collect();
        let ids: Vec<String> = (0..200).map(|i| format!("c{i}")).collect();
        let genes: Vec<String> = (0..20).map(|i| format!("G{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let genes: Vec<&str> = genes.iter().map(String::as_str).collect();
        let t = t(&ids, &genes, &dense, vec![]);
        let (r0, r5) = (t.x.indptr[0] as usize, t.x.indptr[5] as usize);
        assert!(t.x.indptr[1] as usize - r0 >= 3 && t.x.indptr[6] as usize - r5 >= 3);
        let h = dir.path().join("in.h5ad");
        h5ad::write_h5ad(&h, &h5ad::anndata_of(&t)).unwrap();
        let opts = ImportOptions::default();
        let streamed = |h: &Path, out: &Path| -> Result<CellsTable> {
            let (lazy, rows) = import_lazy(&[h.to_path_buf()], &opts)?;
            let rows = rows.expect("a CSR matrix stays on disk");
            assert!(
                rows.in_place(),
                "float32 values and 32-bit positions are used in place"
            );
            write_imported(out, &lazy, &rows, h)?;
            table::read_cells(out)
        };
        // rows that keep the contract: the file's own bytes
        let out = dir.path().join("out.arrow");
        assert_eq!(streamed(&h, &out).unwrap().x, t.x);

        // row 0 out of order and row 5 with a repeated position: sorted and added up, as
        // when the matrix is read whole
        let f = hdf5::File::open_rw(&h).unwrap();
        let ds = f.dataset("X/indices").unwrap();
        let mut idx: Vec<i64> = ds.read_raw().unwrap();
        idx.swap(r0, r0 + 1);
        idx[r5 + 1] = idx[r5];
        let dtype = ds.dtype().unwrap().to_descriptor().unwrap();
        match dtype {
            hdf5::types::TypeDescriptor::Unsigned(_) => {
                ds.write_raw(&idx.iter().map(|&x| x as u32).collect::<Vec<_>>())
            }
            _ => ds.write_raw(&idx.iter().map(|&x| x as i32).collect::<Vec<_>>()),
        }
        .unwrap();
        drop((ds, f));
        let got = streamed(&h, &out).unwrap();
        let whole = import(std::slice::from_ref(&h), &opts).unwrap();
        assert_eq!(got.x, whole.x);
        got.x.validate().unwrap();
        assert_eq!(got.x.nnz(), t.x.nnz() - 1);
        let (g5, v5) = got.x.row(5);
        assert_eq!(g5[0], idx[r5] as u32);
        assert_eq!(v5[0], t.x.data[r5] + t.x.data[r5 + 1]);

        // a negative count in the last row: named, and no output file
        let f = hdf5::File::open_rw(&h).unwrap();
        let ds = f.dataset("X/data").unwrap();
        let mut v: Vec<f32> = ds.read_raw().unwrap();
        let last = v.len() - 1;
        v[last] = -1.0;
        ds.write_raw(&v).unwrap();
        drop((ds, f));
        let bad = dir.path().join("bad.arrow");
        let e = streamed(&h, &bad).unwrap_err().to_string();
        crate::assert_has(&e, &["X/data", "field 'values'"]);
        assert!(e.contains(&format!("position {last}")), "{e}");
        assert!(!bad.exists());
    }

    #[test]
    fn mixed_columns_become_categorical() {
        let a = Column::I64(vec![Some(1)]);
        let b = Column::Cat(Categorical::from_strings(&["x", "y"]));
        match concat_column(&[Some(&a), Some(&b), None], &[1, 2, 1]) {
            Column::Cat(c) => {
                assert_eq!(c.categories, vec!["1", "x", "y"]);
                assert_eq!(c.codes, vec![0, 1, 2, Categorical::MISSING]);
            }
            other => panic!("{other:?}"),
        }
    }
}
