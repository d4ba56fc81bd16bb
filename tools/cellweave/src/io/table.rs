//! Contract tables on disk: Arrow IPC files (`.arrow`) or Parquet (`.parquet`).
//!
//! Layouts are documented in `schemas/`. Reading validates the table kind, the contract
//! version and the required fields, and reports the first problem with file and field.
//! The expression matrix is stored as two list columns whose child arrays are exactly
//! the CSR `indices` and `data` buffers, so reading and writing copy whole buffers and
//! never convert value by value.

use super::{atomic, Format};
use crate::contract::{
    check_unique, meta, Categorical, CellsTable, Column, EmbeddingTable, Frame, Named, PairKind,
    PairsTable, Step, TableKind, ValueKind, SCHEMA_VERSION,
};
use crate::{bail, Error, Result, ResultExt};
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::*;
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

/// Rows per record batch when writing (bounded further by non-zeros per batch, so that a
/// batch's buffers stay small: a stage that streams holds a few batches at a time).
const ROWS_PER_BATCH: usize = 16_384;
const NNZ_PER_BATCH: usize = 1 << 21;

pub const COL_CELL_ID: &str = "cell_id";
pub const COL_BATCH: &str = "batch";
pub const COL_GENE_INDEX: &str = "gene_index";
pub const COL_EXPRESSION: &str = "expression";
pub const COL_EMBEDDING: &str = "embedding";

// ---------------------------------------------------------------- file level

/// How contract tables are written as Parquet: Snappy-compressed, and the contract keys of
/// the schema metadata (`cellweave.*`) also as the file's own key-value metadata, where
/// readers that do not decode the embedded Arrow schema (polars, DuckDB) find them.
fn parquet_properties(schema: &Schema) -> parquet::file::properties::WriterProperties {
    let kv: Vec<parquet::file::metadata::KeyValue> = schema
        .metadata()
        .iter()
        .filter(|(k, _)| k.starts_with("cellweave."))
        .map(|(k, v)| parquet::file::metadata::KeyValue::new(k.clone(), v.clone()))
        .collect();
    parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_key_value_metadata(Some(kv))
        .build()
}

/// Write record batches to `path` as Arrow IPC or Parquet (by extension), atomically.
pub fn write_batches(path: &Path, schema: SchemaRef, batches: &[RecordBatch]) -> Result<()> {
    write_batch_iter(path, schema, batches.iter().cloned().map(Ok))
}

/// Write batches produced one at a time (bounded memory), atomically.
pub fn write_batch_iter(
    path: &Path,
    schema: SchemaRef,
    batches: impl Iterator<Item = Result<RecordBatch>>,
) -> Result<()> {
    let format = Format::of(path);
    atomic::write_file(path, |w| {
        match format {
            Some(Format::Parquet) => {
                let props = parquet_properties(&schema);
                let mut pw = parquet::arrow::ArrowWriter::try_new(w, schema, Some(props))?;
                for b in batches {
                    pw.write(&b?)?;
                }
                pw.close()?;
            }
            Some(Format::Arrow) => {
                let mut fw = arrow_ipc::writer::FileWriter::try_new(w, &schema)?;
                for b in batches {
                    fw.write(&b?)?;
                    atomic::start_writeback(fw.get_ref().get_ref());
                }
                fw.finish()?;
            }
            _ => bail!(
                "cannot write a contract table here: expected a .arrow or .parquet output name"
            ),
        }
        Ok(())
    })
}

/// Write a cells table (or any table) of `n` batches made by `make(i)`, in order, atomically:
/// a second thread makes batch `i + 1` while this one writes batch `i`. `written(i)` is
/// called once batch `i` is written (to hand back input pages).
pub fn write_stream(
    path: &Path,
    schema: SchemaRef,
    n: usize,
    make: impl Fn(usize) -> Result<RecordBatch> + Sync,
    written: impl Fn(usize),
) -> Result<()> {
    keep_freed_memory();
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<RecordBatch>>(1);
        let make = &make;
        s.spawn(move || {
            for i in 0..n {
                let b = make(i);
                let failed = b.is_err();
                if tx.send(b).is_err() || failed {
                    break;
                }
            }
        });
        let next = std::cell::Cell::new(0usize);
        let batches = rx.into_iter().inspect(|_| {
            if next.get() > 0 {
                written(next.get() - 1);
            }
            next.set(next.get() + 1);
        });
        write_batch_iter(path, schema, batches)?;
        if next.get() > 0 {
            written(next.get() - 1);
        }
        Ok(())
    })
}

/// Ask the C allocator to keep memory freed by one batch for the next (glibc returns it to
/// the OS, and takes fresh zeroed pages again, for every batch otherwise: page faults that
/// cost more than the work on the batch).
pub(crate) fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    static ONCE: std::sync::Once = std::sync::Once::new();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    ONCE.call_once(|| {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only changes allocator parameters; called once, before the threads.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, 1 << 30);
        }
    });
}

/// Read every record batch of an Arrow IPC (file or stream) or Parquet file.
pub fn read_batches(path: &Path) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let inner = || -> Result<(SchemaRef, Vec<RecordBatch>)> {
        match Format::of(path) {
            Some(Format::Parquet) => {
                let file = File::open(path)?;
                let builder =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?;
                // The builder's schema carries the Arrow schema metadata (the contract:
                // table kind, genes, provenance); the built reader's schema does not.
                let schema = builder.schema().clone();
                let reader = builder.with_batch_size(ROWS_PER_BATCH).build()?;
                let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
                Ok((schema, batches))
            }
            Some(Format::Arrow) => {
                let file = File::open(path)?;
                let mut head = [0u8; 6];
                {
                    use std::io::Read;
                    let mut f = &file;
                    let n = f.read(&mut head)?;
                    if n < 6 {
                        bail!("file is empty or truncated (expected an Arrow IPC file)");
                    }
                }
                if &head == b"ARROW1" {
                    let m = map_ipc_file(&file)?;
                    Ok((m.schema, m.batches))
                } else {
                    let buffered = std::io::BufReader::with_capacity(1 << 20, File::open(path)?);
                    let reader = arrow_ipc::reader::StreamReader::try_new(buffered, None)?;
                    let schema = reader.schema();
                    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
                    Ok((schema, batches))
                }
            }
            _ => bail!("expected a contract table (.arrow or .parquet)"),
        }
    };
    if !path.exists() {
        return Err(Error::new("no such file").file(path));
    }
    inner().at(path)
}

/// An Arrow IPC file read through a memory map.
pub(crate) struct MappedIpc {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub map: Arc<memmap2::Mmap>,
    /// Where each record batch lies in the map (offset, length).
    pub blocks: Vec<(usize, usize)>,
}

/// Memory-map an input file, with the map as an Arrow buffer (slices of it share the map).
pub(crate) fn map_file(file: &File) -> std::io::Result<(Arc<memmap2::Mmap>, arrow_buffer::Buffer)> {
    // SAFETY: the file is opened read-only; cellweave never modifies files in place (outputs
    // are written to a temporary file and renamed), so the mapping stays valid while used.
    // Another program that truncates it raises SIGBUS, which `mapped` reports as an error.
    let mmap = Arc::new(unsafe { memmap2::Mmap::map(file)? });
    super::mapped::watch(mmap.as_ptr(), mmap.len(), file);
    let ptr =
        std::ptr::NonNull::new(mmap.as_ptr() as *mut u8).unwrap_or(std::ptr::NonNull::dangling());
    // SAFETY: `ptr` points to `mmap.len()` readable bytes owned by the mapping the Arc keeps.
    let buffer =
        unsafe { arrow_buffer::Buffer::from_custom_allocation(ptr, mmap.len(), mmap.clone()) };
    Ok((mmap, buffer))
}

/// Read an Arrow IPC file through a memory map: the arrays point into the mapped file, so
/// reading costs no copy and no parsing of the values (the OS pages data in on use).
pub(crate) fn map_ipc_file(file: &File) -> Result<MappedIpc> {
    use arrow_ipc::reader::{read_footer_length, FileDecoder};
    let (mmap, buffer) = map_file(file)?;
    let len = mmap.len();
    if len < 16 {
        bail!("file is truncated (expected an Arrow IPC file)");
    }
    let truncated = || Error::new("file is truncated or corrupt (no valid Arrow IPC footer)");
    let trailer: [u8; 10] = buffer[len - 10..].try_into().unwrap();
    if &trailer[4..] != b"ARROW1" {
        return Err(truncated());
    }
    let footer_len = read_footer_length(trailer).map_err(|_| truncated())?;
    if footer_len + 10 > len {
        return Err(truncated());
    }
    let footer = arrow_ipc::root_as_footer(&buffer[len - 10 - footer_len..len - 10])
        .map_err(|_| truncated())?;
    let schema = Arc::new(arrow_ipc::convert::try_fb_to_schema(
        footer.schema().ok_or_else(truncated)?,
    )?);
    let mut decoder = FileDecoder::new(schema.clone(), footer.version());
    let block_data = |b: &arrow_ipc::Block| -> Result<arrow_buffer::Buffer> {
        let start = b.offset() as usize;
        let size = b.metaDataLength() as usize + b.bodyLength() as usize;
        if start + size > len {
            return Err(truncated());
        }
        Ok(buffer.slice_with_length(start, size))
    };
    for b in footer.dictionaries().iter().flatten() {
        decoder.read_dictionary(b, &block_data(b)?)?;
    }
    let (mut batches, mut blocks) = (Vec::new(), Vec::new());
    for b in footer.recordBatches().iter().flatten() {
        if let Some(batch) = decoder.read_record_batch(b, &block_data(b)?)? {
            batches.push(batch);
            blocks.push((
                b.offset() as usize,
                b.metaDataLength() as usize + b.bodyLength() as usize,
            ));
        }
    }
    Ok(MappedIpc {
        schema,
        batches,
        map: mmap,
        blocks,
    })
}

/// The table kind a file holds, from its metadata (for tools that accept several kinds).
pub fn peek_kind(path: &Path) -> Result<TableKind> {
    let schema = match Format::of(path) {
        Some(Format::Parquet) => {
            let file = File::open(path).at(path)?;
            let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .at(path)?;
            b.schema().clone()
        }
        Some(Format::Arrow) => {
            let file = File::open(path).at(path)?;
            let r = arrow_ipc::reader::FileReader::try_new(std::io::BufReader::new(file), None)
                .at(path)?;
            r.schema()
        }
        _ => return Err(Error::new("expected a contract table (.arrow or .parquet)").file(path)),
    };
    let kind = schema
        .metadata()
        .get(meta::TABLE)
        .cloned()
        .unwrap_or_default();
    TableKind::parse(&kind).ok_or_else(|| {
        Error::new(format!(
            "'{}' is not a cellweave table kind (is this a cellweave file?)",
            kind
        ))
        .field(meta::TABLE)
        .file(path)
    })
}

fn base_metadata(kind: TableKind, provenance: &[Step]) -> HashMap<String, String> {
    let mut m = HashMap::new();
    m.insert(meta::TABLE.to_string(), kind.as_str().to_string());
    m.insert(meta::VERSION.to_string(), SCHEMA_VERSION.to_string());
    m.insert(
        meta::PROVENANCE.to_string(),
        serde_json::to_string(provenance).unwrap(),
    );
    m
}

/// Check kind and version; return the provenance.
pub(crate) fn check_metadata(schema: &Schema, expected: TableKind) -> Result<Vec<Step>> {
    let md = schema.metadata();
    let kind = md.get(meta::TABLE).ok_or_else(|| {
        Error::new(format!(
            "missing (expected a cellweave '{}' table; was this file written by cellweave?)",
            expected.as_str()
        ))
        .field(meta::TABLE)
    })?;
    if kind != expected.as_str() {
        return Err(Error::new(format!(
            "this is a '{kind}' table, expected a '{}' table",
            expected.as_str()
        ))
        .field(meta::TABLE));
    }
    let version = md.get(meta::VERSION).map(String::as_str).unwrap_or("");
    let major = |v: &str| v.split('.').next().unwrap_or("").to_string();
    if major(version) != major(SCHEMA_VERSION) {
        return Err(Error::new(format!(
            "contract version '{version}' is not readable by this cellweave (reads {SCHEMA_VERSION})"
        ))
        .field(meta::VERSION));
    }
    match md.get(meta::PROVENANCE) {
        Some(p) => serde_json::from_str(p).in_field(meta::PROVENANCE),
        None => Ok(Vec::new()),
    }
}

fn json_list(schema: &Schema, key: &str) -> Result<Vec<String>> {
    let s = schema
        .metadata()
        .get(key)
        .ok_or_else(|| Error::new("missing from the schema metadata").field(key))?;
    serde_json::from_str(s).in_field(key)
}

// ---------------------------------------------------------------- columns

/// Arrow field and array for a column.
pub fn column_to_arrow(name: &str, col: &Column) -> (Field, ArrayRef) {
    let (dt, arr): (DataType, ArrayRef) = match col {
        Column::Cat(c) => {
            let keys: Int32Array = c
                .codes
                .iter()
                .map(|&k| (k != Categorical::MISSING).then_some(k as i32))
                .collect();
            let values = StringArray::from_iter_values(c.categories.iter());
            let arr =
                DictionaryArray::<Int32Type>::try_new(keys, Arc::new(values)).expect("valid codes");
            (
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                Arc::new(arr),
            )
        }
        Column::Str(v) => (
            DataType::Utf8,
            Arc::new(v.iter().map(|s| s.as_deref()).collect::<StringArray>()),
        ),
        Column::F64(v) => (DataType::Float64, Arc::new(Float64Array::from(v.clone()))),
        Column::F32(v) => (DataType::Float32, Arc::new(Float32Array::from(v.clone()))),
        Column::I64(v) => (DataType::Int64, Arc::new(Int64Array::from(v.clone()))),
        Column::U32(v) => (DataType::UInt32, Arc::new(UInt32Array::from(v.clone()))),
        Column::Bool(v) => (DataType::Boolean, Arc::new(BooleanArray::from(v.clone()))),
    };
    (Field::new(name, dt, true), arr)
}

fn slice_column(col: &Column, start: usize, len: usize) -> Column {
    let rows: Vec<usize> = (start..start + len).collect();
    col.select(&rows)
}

/// Read a column spread over record batches into one [`Column`].
pub fn column_from_arrow(name: &str, arrays: &[&ArrayRef]) -> Result<Column> {
    let dt = arrays
        .first()
        .map(|a| a.data_type().clone())
        .unwrap_or(DataType::Utf8);
    let err = |what: &str| Error::new(what.to_string()).field(name);
    Ok(match &dt {
        DataType::Dictionary(_, _) => {
            let mut index: HashMap<String, u32> = HashMap::new();
            let mut cat = Categorical::default();
            for a in arrays {
                let strings = dict_to_strings(a).map_err(|e| e.field(name))?;
                for s in strings {
                    let code = match s {
                        None => Categorical::MISSING,
                        Some(s) => *index.entry(s.clone()).or_insert_with(|| {
                            cat.categories.push(s);
                            (cat.categories.len() - 1) as u32
                        }),
                    };
                    cat.codes.push(code);
                }
            }
            // Keep the dictionary's own order when there is one batch (categories as the writer had them).
            if arrays.len() == 1 {
                if let Some(values) = dict_values(arrays[0]) {
                    reorder_categories(&mut cat, &values);
                }
            }
            Column::Cat(cat)
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let mut v = Vec::new();
            for a in arrays {
                v.extend(strings_of(a).map_err(|e| e.field(name))?);
            }
            Column::Str(v)
        }
        DataType::Float64 => Column::F64(
            arrays
                .iter()
                .flat_map(|a| {
                    a.as_primitive::<Float64Type>()
                        .iter()
                        .map(|x| x.unwrap_or(f64::NAN))
                })
                .collect(),
        ),
        DataType::Float32 => Column::F32(
            arrays
                .iter()
                .flat_map(|a| {
                    a.as_primitive::<Float32Type>()
                        .iter()
                        .map(|x| x.unwrap_or(f32::NAN))
                })
                .collect(),
        ),
        DataType::UInt32 => {
            let mut v = Vec::new();
            for a in arrays {
                if a.null_count() > 0 {
                    return Err(err("unexpected null"));
                }
                v.extend_from_slice(a.as_primitive::<UInt32Type>().values());
            }
            Column::U32(v)
        }
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt64 => {
            let mut v = Vec::new();
            for a in arrays {
                let a = arrow_cast_i64(a).map_err(|e| e.field(name))?;
                v.extend(a);
            }
            Column::I64(v)
        }
        DataType::Boolean => Column::Bool(
            arrays
                .iter()
                .flat_map(|a| a.as_boolean().iter().collect::<Vec<_>>())
                .collect(),
        ),
        other => return Err(err(&format!("unsupported column type {other}"))),
    })
}

fn arrow_cast_i64(a: &ArrayRef) -> Result<Vec<Option<i64>>> {
    macro_rules! conv {
        ($t:ty) => {
            a.as_primitive::<$t>()
                .iter()
                .map(|x| x.map(|v| v as i64))
                .collect()
        };
    }
    Ok(match a.data_type() {
        DataType::Int8 => conv!(Int8Type),
        DataType::Int16 => conv!(Int16Type),
        DataType::Int32 => conv!(Int32Type),
        DataType::Int64 => conv!(Int64Type),
        DataType::UInt8 => conv!(UInt8Type),
        DataType::UInt16 => conv!(UInt16Type),
        DataType::UInt64 => conv!(UInt64Type),
        other => bail!("expected an integer column, found {other}"),
    })
}

fn strings_of(a: &ArrayRef) -> Result<Vec<Option<String>>> {
    Ok(match a.data_type() {
        DataType::Utf8 => a
            .as_string::<i32>()
            .iter()
            .map(|s| s.map(str::to_string))
            .collect(),
        DataType::LargeUtf8 => a
            .as_string::<i64>()
            .iter()
            .map(|s| s.map(str::to_string))
            .collect(),
        DataType::Utf8View => a
            .as_string_view()
            .iter()
            .map(|s| s.map(str::to_string))
            .collect(),
        other => bail!("expected strings, found {other}"),
    })
}

fn dict_values(a: &ArrayRef) -> Option<Vec<String>> {
    let d = a.as_any_dictionary_opt()?;
    strings_of(d.values())
        .ok()
        .map(|v| v.into_iter().map(|s| s.unwrap_or_default()).collect())
}

fn dict_to_strings(a: &ArrayRef) -> Result<Vec<Option<String>>> {
    let d = a
        .as_any_dictionary_opt()
        .ok_or_else(|| Error::new("expected a dictionary column"))?;
    let values = strings_of(d.values())?;
    if values.is_empty() {
        // An all-null categorical (no categories): arrow's normalized_keys() panics on it.
        return Ok(vec![None; a.len()]);
    }
    let keys = d.normalized_keys();
    Ok((0..a.len())
        .map(|i| {
            if a.is_null(i) {
                None
            } else {
                values.get(keys[i]).cloned().flatten()
            }
        })
        .collect())
}

fn reorder_categories(cat: &mut Categorical, order: &[String]) {
    let pos: HashMap<&str, u32> = order
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i as u32))
        .collect();
    if cat.categories.iter().any(|c| !pos.contains_key(c.as_str())) {
        return;
    }
    let remap: Vec<u32> = cat.categories.iter().map(|c| pos[c.as_str()]).collect();
    for c in &mut cat.codes {
        if *c != Categorical::MISSING {
            *c = remap[*c as usize];
        }
    }
    cat.categories = order.to_vec();
    cat.compact();
}

pub(crate) fn get_arrays<'a>(
    batches: &'a [RecordBatch],
    schema: &Schema,
    name: &str,
) -> Result<Vec<&'a ArrayRef>> {
    let idx = schema.index_of(name).map_err(|_| {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        Error::new(format!(
            "required column is missing (columns: {})",
            names.join(", ")
        ))
        .field(name)
    })?;
    Ok(batches.iter().map(|b| b.column(idx)).collect())
}

fn required_strings(batches: &[RecordBatch], schema: &Schema, name: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for a in get_arrays(batches, schema, name)? {
        for (i, s) in strings_of(a)
            .map_err(|e| e.field(name))?
            .into_iter()
            .enumerate()
        {
            match s {
                Some(s) => out.push(s),
                None => {
                    return Err(Error::new(format!("null at row {}", out.len() + i)).field(name))
                }
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- cells

/// What the schema metadata of a cells table holds: everything but the rows.
#[derive(Debug, Clone)]
pub struct CellsMeta<'a> {
    pub gene_ids: &'a [String],
    pub gene_names: &'a [String],
    pub values: ValueKind,
    pub provenance: &'a [Step],
    pub n_cells: usize,
    pub fingerprint: String,
}

impl<'a> CellsMeta<'a> {
    pub fn of(t: &'a CellsTable) -> Self {
        CellsMeta {
            gene_ids: &t.gene_ids,
            gene_names: &t.gene_names,
            values: t.values,
            provenance: &t.provenance,
            n_cells: t.n_cells(),
            fingerprint: t.fingerprint(),
        }
    }
}

/// The schema of a cells table: `cell_id`, `batch`, the other per-cell columns
/// (`obs_fields`), the two list columns, and the metadata.
pub fn cells_schema(m: &CellsMeta, obs_fields: &[Field]) -> SchemaRef {
    let mut md = base_metadata(TableKind::Cells, m.provenance);
    md.insert(
        meta::GENE_IDS.into(),
        serde_json::to_string(m.gene_ids).unwrap(),
    );
    md.insert(
        meta::GENE_NAMES.into(),
        serde_json::to_string(m.gene_names).unwrap(),
    );
    md.insert(meta::N_GENES.into(), m.gene_ids.len().to_string());
    md.insert(meta::VALUES.into(), m.values.as_str().into());
    md.insert(meta::FINGERPRINT.into(), m.fingerprint.clone());
    md.insert(meta::N_CELLS.into(), m.n_cells.to_string());
    let mut fields = vec![
        Field::new(COL_CELL_ID, DataType::Utf8, false),
        Field::new(
            COL_BATCH,
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            false,
        ),
    ];
    fields.extend(obs_fields.iter().cloned());
    fields.push(Field::new(
        COL_GENE_INDEX,
        DataType::List(list_item(DataType::UInt32)),
        false,
    ));
    fields.push(Field::new(
        COL_EXPRESSION,
        DataType::List(list_item(DataType::Float32)),
        false,
    ));
    Arc::new(Schema::new_with_metadata(fields, md))
}

fn list_item(dt: DataType) -> Arc<Field> {
    Arc::new(Field::new("item", dt, false))
}

/// A list column of the cells table (`gene_index` or `expression`) from its offsets and
/// values, without copying either.
pub fn list_of<T: ArrowPrimitiveType>(
    offsets: OffsetBuffer<i32>,
    values: ScalarBuffer<T::Native>,
) -> ArrayRef {
    let child = PrimitiveArray::<T>::new(values, None);
    Arc::new(ListArray::new(
        list_item(T::DATA_TYPE),
        offsets,
        Arc::new(child),
        None,
    ))
}

/// Row ranges of the record batches a table of `indptr` is written in.
fn batch_ranges(indptr: &[u64]) -> Vec<(usize, usize)> {
    let n = indptr.len() - 1;
    let mut out = Vec::new();
    let mut start = 0;
    while start < n || (n == 0 && out.is_empty()) {
        let mut end = (start + ROWS_PER_BATCH).min(n);
        while end > start + 1 && (indptr[end] - indptr[start]) as usize > NNZ_PER_BATCH {
            end = start + (end - start) / 2;
        }
        out.push((start, end));
        if n == 0 {
            break;
        }
        start = end;
    }
    out
}

fn list_array<T: ArrowPrimitiveType>(
    indptr: &[u64],
    start: usize,
    end: usize,
    values: &[T::Native],
) -> ArrayRef {
    let base = indptr[start];
    let offsets: Vec<i32> = indptr[start..=end]
        .iter()
        .map(|&o| (o - base) as i32)
        .collect();
    let slice = &values[base as usize..indptr[end] as usize];
    list_of::<T>(
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        ScalarBuffer::from(slice.to_vec()),
    )
}

/// Record batches of a cells table (used for both file formats).
pub fn cells_to_batches(t: &CellsTable) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let (schema, it) = cells_batches(t)?;
    Ok((schema, it.collect::<Result<Vec<_>>>()?))
}

/// The schema of a cells table (its per-cell columns' types and its metadata).
fn table_schema(t: &CellsTable) -> Result<SchemaRef> {
    let reserved = [COL_CELL_ID, COL_BATCH, COL_GENE_INDEX, COL_EXPRESSION];
    for (name, _) in &t.obs {
        if reserved.contains(&name.as_str()) {
            return Err(
                Error::new("per-cell column name is reserved by the cells table")
                    .field(name.clone()),
            );
        }
    }
    let obs_fields: Vec<Field> = t
        .obs
        .iter()
        .map(|(n, c)| column_to_arrow(n, &slice_column(c, 0, 0)).0)
        .collect();
    Ok(cells_schema(&CellsMeta::of(t), &obs_fields))
}

/// The per-cell columns of rows `start..end`.
fn per_cell_arrays(t: &CellsTable, start: usize, end: usize) -> Vec<ArrayRef> {
    let rows: Vec<usize> = (start..end).collect();
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(t.cell_ids[start..end].iter())),
        column_to_arrow(COL_BATCH, &Column::Cat(t.batch.select(&rows))).1,
    ];
    for (n, c) in &t.obs {
        cols.push(column_to_arrow(n, &slice_column(c, start, end - start)).1);
    }
    cols
}

/// The record batches of a cells table, built one at a time (writing streams them, so a
/// write holds at most one batch's copy of the values at a time).
pub fn cells_batches(
    t: &CellsTable,
) -> Result<(SchemaRef, impl Iterator<Item = Result<RecordBatch>> + '_)> {
    let schema = table_schema(t)?;
    let schema2 = schema.clone();
    let it = batch_ranges(&t.x.indptr)
        .into_iter()
        .map(move |(start, end)| {
            let mut cols = per_cell_arrays(t, start, end);
            cols.push(list_array::<UInt32Type>(
                &t.x.indptr,
                start,
                end,
                &t.x.indices,
            ));
            cols.push(list_array::<Float32Type>(
                &t.x.indptr,
                start,
                end,
                &t.x.data,
            ));
            Ok(RecordBatch::try_new(schema2.clone(), cols)?)
        });
    Ok((schema, it))
}

/// A slice of expression rows as the parts of the two list columns: row offsets from 0, gene
/// positions and values (owned, or pointing into a memory-mapped input file).
pub struct ListRows {
    pub offsets: OffsetBuffer<i32>,
    pub indices: ScalarBuffer<u32>,
    pub values: ScalarBuffer<f32>,
}

impl From<crate::contract::Csr> for ListRows {
    fn from(m: crate::contract::Csr) -> Self {
        let offsets: Vec<i32> = m.indptr.iter().map(|&o| o as i32).collect();
        ListRows {
            offsets: OffsetBuffer::new(ScalarBuffer::from(offsets)),
            indices: m.indices.into(),
            values: m.data.into(),
        }
    }
}

/// Write a cells table whose rows are made by `rows(start, end)` (rows `start..end`, offsets
/// from 0), batch by batch; `indptr` holds the row offsets of the whole matrix (for the batch
/// sizes) and `t` everything else (its own rows are not used). The rows are written as they
/// come: `rows` checks them. `written(start, end)` is called once they are written.
pub fn write_cells_rows(
    path: &Path,
    t: &CellsTable,
    indptr: &[u64],
    rows: impl Fn(usize, usize) -> Result<ListRows> + Sync,
    written: impl Fn(usize, usize),
) -> Result<()> {
    let schema = table_schema(t).at(path)?;
    let ranges = batch_ranges(indptr);
    let make = |i: usize| -> Result<RecordBatch> {
        let (start, end) = ranges[i];
        let m = rows(start, end)?;
        let mut cols = per_cell_arrays(t, start, end);
        cols.push(list_of::<UInt32Type>(m.offsets.clone(), m.indices));
        cols.push(list_of::<Float32Type>(m.offsets, m.values));
        Ok(RecordBatch::try_new(schema.clone(), cols)?)
    };
    write_stream(path, schema.clone(), ranges.len(), make, |i| {
        written(ranges[i].0, ranges[i].1)
    })
}

/// Write a cells table (`.arrow` or `.parquet`), atomically, after validating it.
pub fn write_cells(path: &Path, t: &CellsTable) -> Result<()> {
    t.validate().at(path)?;
    let (schema, batches) = cells_batches(t).at(path)?;
    write_batch_iter(path, schema, batches)
}

/// Append the list column's child values and offsets to a CSR under construction.
fn append_list<T: ArrowPrimitiveType>(
    a: &ArrayRef,
    indptr: &mut Vec<u64>,
    out: &mut Vec<T::Native>,
    name: &str,
) -> Result<()> {
    let (offsets, values): (Vec<i64>, &ArrayRef) = match a.data_type() {
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            (
                l.value_offsets().iter().map(|&o| o as i64).collect(),
                l.values(),
            )
        }
        DataType::LargeList(_) => {
            let l = a.as_list::<i64>();
            (l.value_offsets().to_vec(), l.values())
        }
        other => {
            return Err(Error::new(format!(
                "expected a list of {}, found {other}",
                T::DATA_TYPE
            ))
            .field(name))
        }
    };
    if a.null_count() > 0 {
        return Err(Error::new(
            "null expression row (use an empty list for a cell with no counts)",
        )
        .field(name));
    }
    if values.data_type() != &T::DATA_TYPE {
        return Err(Error::new(format!(
            "expected list items of type {}, found {}",
            T::DATA_TYPE,
            values.data_type()
        ))
        .field(name));
    }
    if values.null_count() > 0 {
        return Err(Error::new("null inside an expression row").field(name));
    }
    let prim = values.as_primitive::<T>().values();
    let (lo, hi) = (offsets[0] as usize, *offsets.last().unwrap() as usize);
    let base = out.len() as i64 - offsets[0];
    out.extend_from_slice(&prim[lo..hi]);
    indptr.extend(offsets[1..].iter().map(|&o| (o + base) as u64));
    Ok(())
}

/// The metadata of a cells table: (provenance, gene ids, gene names, values), checked.
pub(crate) type CellsHeader = (Vec<Step>, Vec<String>, Vec<String>, ValueKind);

/// Read and check the metadata of a cells table.
pub(crate) fn cells_header(schema: &Schema) -> Result<CellsHeader> {
    let provenance = check_metadata(schema, TableKind::Cells)?;
    let md = schema.metadata();
    let gene_ids = json_list(schema, meta::GENE_IDS)?;
    let gene_names = match md.get(meta::GENE_NAMES) {
        Some(_) => json_list(schema, meta::GENE_NAMES)?,
        None => gene_ids.clone(),
    };
    let values = md
        .get(meta::VALUES)
        .and_then(|v| ValueKind::parse(v))
        .ok_or_else(|| {
            Error::new("missing or unknown (expected counts, normalized, log1p, log10p or imputed)")
                .field(meta::VALUES)
        })?;
    if gene_names.len() != gene_ids.len() {
        return Err(Error::new(format!(
            "{} gene ids but {} gene names",
            gene_ids.len(),
            gene_names.len()
        ))
        .field("genes"));
    }
    if let Some(n) = md.get(meta::N_GENES) {
        if n.parse::<usize>().ok() != Some(gene_ids.len()) {
            return Err(Error::new(format!(
                "says {n}, but the table lists {} gene ids",
                gene_ids.len()
            ))
            .field(meta::N_GENES));
        }
    }
    check_unique(&gene_ids).map_err(|e| e.field(meta::GENE_IDS))?;
    Ok((provenance, gene_ids, gene_names, values))
}

/// The cell count and fingerprint a table's metadata records must be those of its rows
/// (a table edited by hand, or put together from pieces, is caught here).
pub(crate) fn check_cells_meta(schema: &Schema, n_rows: usize, fingerprint: &str) -> Result<()> {
    let md = schema.metadata();
    if let Some(n) = md.get(meta::N_CELLS) {
        if n.parse::<usize>().ok() != Some(n_rows) {
            return Err(
                Error::new(format!("says {n}, but the table has {n_rows} rows"))
                    .field(meta::N_CELLS),
            );
        }
    }
    if let Some(f) = md.get(meta::FINGERPRINT) {
        if f != fingerprint {
            return Err(Error::new(format!(
                "says {f}, but the table's cell ids give {fingerprint}"
            ))
            .field(meta::FINGERPRINT));
        }
    }
    Ok(())
}

/// Build a cells table from record batches read from `path` (errors name the path).
pub fn cells_from_batches(schema: &Schema, batches: &[RecordBatch]) -> Result<CellsTable> {
    let (provenance, gene_ids, gene_names, values) = cells_header(schema)?;
    let cell_ids = required_strings(batches, schema, COL_CELL_ID)?;
    check_cells_meta(
        schema,
        cell_ids.len(),
        &crate::contract::fingerprint(&cell_ids),
    )?;
    let batch =
        column_from_arrow(COL_BATCH, &get_arrays(batches, schema, COL_BATCH)?)?.to_categorical();
    let mut obs = Vec::new();
    for f in schema.fields() {
        let n = f.name().as_str();
        if [COL_CELL_ID, COL_BATCH, COL_GENE_INDEX, COL_EXPRESSION].contains(&n) {
            continue;
        }
        obs.push((
            n.to_string(),
            column_from_arrow(n, &get_arrays(batches, schema, n)?)?,
        ));
    }
    let mut x = crate::contract::Csr {
        n_cols: gene_ids.len(),
        indptr: vec![0],
        ..Default::default()
    };
    let mut indptr2 = vec![0u64];
    for a in get_arrays(batches, schema, COL_GENE_INDEX)? {
        append_list::<UInt32Type>(a, &mut x.indptr, &mut x.indices, COL_GENE_INDEX)?;
    }
    for a in get_arrays(batches, schema, COL_EXPRESSION)? {
        append_list::<Float32Type>(a, &mut indptr2, &mut x.data, COL_EXPRESSION)?;
    }
    if indptr2 != x.indptr {
        return Err(
            Error::new("row lengths differ from those of 'gene_index'").field(COL_EXPRESSION)
        );
    }
    let t = CellsTable {
        cell_ids,
        batch,
        obs,
        gene_ids,
        gene_names,
        x,
        values,
        provenance,
    };
    t.validate()?;
    Ok(t)
}

/// Read and validate a cells table.
pub fn read_cells(path: &Path) -> Result<CellsTable> {
    let (schema, batches) = read_batches(path)?;
    cells_from_batches(&schema, &batches).at(path)
}

// ---------------------------------------------------------------- embedding

/// Write an embedding table (cell ids, carried obs, a fixed-size list column `embedding`).
pub fn write_embedding(path: &Path, t: &EmbeddingTable) -> Result<()> {
    if t.data.len() != t.n_cells() * t.dim {
        return Err(Error::new("embedding size does not match cells x dim").file(path));
    }
    let mut md = base_metadata(TableKind::Embedding, &t.provenance);
    md.insert(
        meta::FINGERPRINT.into(),
        crate::contract::fingerprint(&t.cell_ids),
    );
    md.insert(meta::N_CELLS.into(), t.n_cells().to_string());
    md.insert(meta::EMBEDDING_NAME.into(), t.name.clone());
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let mut fields = vec![Field::new(COL_CELL_ID, DataType::Utf8, false)];
    let mut cols: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values(t.cell_ids.iter()))];
    for (n, c) in &t.obs {
        let (f, a) = column_to_arrow(n, c);
        fields.push(f);
        cols.push(a);
    }
    fields.push(Field::new(
        COL_EMBEDDING,
        DataType::FixedSizeList(item.clone(), t.dim as i32),
        false,
    ));
    let child = Float32Array::new(ScalarBuffer::from(t.data.clone()), None);
    cols.push(Arc::new(FixedSizeListArray::new(
        item,
        t.dim as i32,
        Arc::new(child),
        None,
    )));
    let schema = Arc::new(Schema::new_with_metadata(fields, md));
    let batch = RecordBatch::try_new(schema.clone(), cols).at(path)?;
    write_batches(path, schema, &[batch])
}

/// Read an embedding table.
pub fn read_embedding(path: &Path) -> Result<EmbeddingTable> {
    let (schema, batches) = read_batches(path)?;
    (|| {
        let provenance = check_metadata(&schema, TableKind::Embedding)?;
        let name = schema
            .metadata()
            .get(meta::EMBEDDING_NAME)
            .cloned()
            .unwrap_or_else(|| "embedding".into());
        let cell_ids = required_strings(&batches, &schema, COL_CELL_ID)?;
        check_unique(&cell_ids).map_err(|e| e.field(COL_CELL_ID))?;
        check_cells_meta(
            &schema,
            cell_ids.len(),
            &crate::contract::fingerprint(&cell_ids),
        )?;
        let mut obs: Vec<Named> = Vec::new();
        for f in schema.fields() {
            let n = f.name().as_str();
            if n == COL_CELL_ID || n == COL_EMBEDDING {
                continue;
            }
            obs.push((
                n.to_string(),
                column_from_arrow(n, &get_arrays(&batches, &schema, n)?)?,
            ));
        }
        let mut dim = 0;
        let mut data = Vec::new();
        for a in get_arrays(&batches, &schema, COL_EMBEDDING)? {
            let l = a.as_fixed_size_list_opt().ok_or_else(|| {
                Error::new(format!(
                    "expected fixed_size_list<float32>, found {}",
                    a.data_type()
                ))
                .field(COL_EMBEDDING)
            })?;
            dim = l.value_length() as usize;
            let v = l
                .values()
                .as_primitive_opt::<Float32Type>()
                .ok_or_else(|| Error::new("expected float32 items").field(COL_EMBEDDING))?;
            let off = l.offset() * dim;
            data.extend_from_slice(&v.values()[off..off + l.len() * dim]);
        }
        if data.iter().any(|v| !v.is_finite()) {
            return Err(Error::new("non-finite value in the embedding").field(COL_EMBEDDING));
        }
        Ok(EmbeddingTable {
            name,
            cell_ids,
            obs,
            dim,
            data,
            provenance,
        })
    })()
    .at(path)
}

// ---------------------------------------------------------------- pairs

/// Write a pairs table.
pub fn write_pairs(path: &Path, t: &PairsTable) -> Result<()> {
    let mut md = base_metadata(TableKind::Pairs, &t.provenance);
    md.insert(meta::FINGERPRINT.into(), t.fingerprint.clone());
    md.insert(meta::N_CELLS.into(), t.n_cells.to_string());
    let kinds = Categorical {
        codes: t
            .kind
            .iter()
            .map(|k| matches!(k, PairKind::Knn) as u32)
            .collect(),
        categories: vec!["mnn".into(), "knn".into()],
    };
    let cols: Vec<(&str, Column)> = vec![
        ("kind", Column::Cat(kinds)),
        ("i", Column::U32(t.i.clone())),
        ("j", Column::U32(t.j.clone())),
        ("distance", Column::F32(t.distance.clone())),
        ("posterior", Column::F32(t.posterior.clone())),
    ];
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) =
        cols.iter().map(|(n, c)| column_to_arrow(n, c)).unzip();
    let schema = Arc::new(Schema::new_with_metadata(fields, md));
    let batch = RecordBatch::try_new(schema.clone(), arrays).at(path)?;
    write_batches(path, schema, &[batch])
}

/// Read a pairs table.
pub fn read_pairs(path: &Path) -> Result<PairsTable> {
    let (schema, batches) = read_batches(path)?;
    (|| {
        let provenance = check_metadata(&schema, TableKind::Pairs)?;
        let md = schema.metadata();
        let fingerprint = md
            .get(meta::FINGERPRINT)
            .cloned()
            .ok_or_else(|| Error::new("missing").field(meta::FINGERPRINT))?;
        let n_cells: usize = md
            .get(meta::N_CELLS)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::new("missing").field(meta::N_CELLS))?;
        let counted = fingerprint.split(':').next().and_then(|c| c.parse().ok());
        if counted != Some(n_cells) {
            return Err(Error::new(format!(
                "says {n_cells}, but the cells fingerprint {fingerprint} is of another number of cells"
            ))
            .field(meta::N_CELLS));
        }
        if batches.is_empty() {
            // No record batch at all: a table of no pairs (as one empty batch would be).
            return Ok(PairsTable {
                n_cells,
                fingerprint,
                provenance,
                ..PairsTable::default()
            });
        }
        let col = |n: &str| -> Result<Column> {
            column_from_arrow(n, &get_arrays(&batches, &schema, n)?)
        };
        let kind = match col("kind")? {
            Column::Cat(c) => c
                .codes
                .iter()
                .map(
                    |&k| match c.categories.get(k as usize).map(String::as_str) {
                        Some("mnn") => Ok(PairKind::Mnn),
                        Some("knn") => Ok(PairKind::Knn),
                        other => Err(Error::new(format!(
                            "unknown pair kind {other:?} (expected mnn or knn)"
                        ))
                        .field("kind")),
                    },
                )
                .collect::<Result<Vec<_>>>()?,
            _ => return Err(Error::new("expected a dictionary column").field("kind")),
        };
        let u32col = |n: &str| -> Result<Vec<u32>> {
            match col(n)? {
                Column::U32(v) => {
                    if let Some(bad) = v.iter().find(|&&x| x as usize >= n_cells) {
                        return Err(Error::new(format!(
                            "row {bad} out of range for {n_cells} cells"
                        ))
                        .field(n));
                    }
                    Ok(v)
                }
                _ => Err(Error::new("expected uint32").field(n)),
            }
        };
        let f32col = |n: &str| -> Result<Vec<f32>> {
            match col(n)? {
                Column::F32(v) => Ok(v),
                _ => Err(Error::new("expected float32").field(n)),
            }
        };
        Ok(PairsTable {
            n_cells,
            fingerprint,
            kind,
            i: u32col("i")?,
            j: u32col("j")?,
            distance: f32col("distance")?,
            posterior: f32col("posterior")?,
            provenance,
        })
    })()
    .at(path)
}

// ---------------------------------------------------------------- generic frames

/// Write a generic table (genes, scores, QC, training log).
pub fn write_frame(path: &Path, f: &Frame) -> Result<()> {
    let mut md = base_metadata(f.kind, &f.provenance);
    for (k, v) in &f.meta {
        md.insert(k.clone(), v.clone());
    }
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) =
        f.columns.iter().map(|(n, c)| column_to_arrow(n, c)).unzip();
    let schema = Arc::new(Schema::new_with_metadata(fields, md));
    let batch = RecordBatch::try_new(schema.clone(), arrays).at(path)?;
    write_batches(path, schema, &[batch])
}

/// Read a generic table of the expected kind.
pub fn read_frame(path: &Path, kind: TableKind) -> Result<Frame> {
    let (schema, batches) = read_batches(path)?;
    (|| -> Result<Frame> {
        let provenance = check_metadata(&schema, kind)?;
        let mut columns = Vec::new();
        for fld in schema.fields() {
            let n = fld.name().as_str();
            columns.push((
                n.to_string(),
                column_from_arrow(n, &get_arrays(&batches, &schema, n)?)?,
            ));
        }
        let reserved = [meta::TABLE, meta::VERSION, meta::PROVENANCE];
        let meta: BTreeMap<String, String> = schema
            .metadata()
            .iter()
            .filter(|(k, _)| !reserved.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Frame {
            kind,
            columns,
            meta,
            provenance,
        })
    })()
    .at(path)
}

/// Write a frame as TSV (header row; for humans, MultiQC and spreadsheets), atomically.
pub fn write_frame_tsv(path: &Path, f: &Frame) -> Result<()> {
    use std::io::Write;
    atomic::write_file(path, |w| {
        let names: Vec<&str> = f.columns.iter().map(|(n, _)| n.as_str()).collect();
        writeln!(w, "{}", names.join("\t"))?;
        for r in 0..f.n_rows() {
            let row: Vec<String> = f
                .columns
                .iter()
                .map(|(_, c)| c.text(r).unwrap_or_else(|| "NA".into()))
                .collect();
            writeln!(w, "{}", row.join("\t"))?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------- streaming cells writer
// (added by the preprocess engineer for cellweave-simulate; additive, uses the same schema)

/// Write a cells table chunk by chunk, so that tables bigger than memory can be produced
/// (the simulator streams millions of cells this way). `header` gives everything but the
/// rows: gene ids and names, value kind, provenance, the per-cell columns (no rows, but
/// their types; categoricals with all their categories) and the batch categories.
/// `n_cells` and `fingerprint` (of all cell ids, in order) go into the schema metadata,
/// which is written first. `fill` is called once with a sink that takes chunks (cells
/// tables with the header's genes, columns and categories); the file appears, atomically,
/// only when `fill` succeeds and exactly `n_cells` rows were written. Cell ids are not
/// checked for uniqueness across chunks.
pub fn write_cells_streaming(
    path: &Path,
    header: &CellsTable,
    n_cells: usize,
    fingerprint: &str,
    fill: impl FnOnce(&mut dyn FnMut(&CellsTable) -> Result<()>) -> Result<()>,
) -> Result<()> {
    let obs_fields: Vec<Field> = header
        .obs
        .iter()
        .map(|(n, c)| column_to_arrow(n, &slice_column(c, 0, 0)).0)
        .collect();
    let base = cells_schema(&CellsMeta::of(header), &obs_fields);
    let mut md: HashMap<String, String> = base.metadata().clone().into();
    md.insert(meta::FINGERPRINT.to_string(), fingerprint.to_string());
    md.insert(meta::N_CELLS.to_string(), n_cells.to_string());
    let schema: SchemaRef = Arc::new(Schema::new_with_metadata(base.fields().clone(), md));
    let format = Format::of(path);
    atomic::write_file(path, |w| {
        enum Sink<'a> {
            Arrow(arrow_ipc::writer::FileWriter<&'a mut std::io::BufWriter<File>>),
            Parquet(parquet::arrow::ArrowWriter<&'a mut std::io::BufWriter<File>>),
        }
        let mut sink = match format {
            Some(Format::Arrow) => Sink::Arrow(arrow_ipc::writer::FileWriter::try_new(w, &schema)?),
            Some(Format::Parquet) => {
                let props = parquet_properties(&schema);
                Sink::Parquet(parquet::arrow::ArrowWriter::try_new(
                    w,
                    schema.clone(),
                    Some(props),
                )?)
            }
            _ => bail!(
                "cannot write a contract table here: expected a .arrow or .parquet output name"
            ),
        };
        let mut written = 0usize;
        {
            let mut put = |chunk: &CellsTable| -> Result<()> {
                if chunk.gene_ids.len() != header.gene_ids.len()
                    || chunk.batch.categories != header.batch.categories
                    || chunk.obs.len() != header.obs.len()
                {
                    bail!("a chunk does not match the table header (genes, batch categories or columns)");
                }
                chunk.validate()?;
                let (chunk_schema, batches) = cells_to_batches(chunk)?;
                if chunk_schema.fields() != schema.fields() {
                    bail!("a chunk's columns differ from the table header");
                }
                for b in batches {
                    let b = RecordBatch::try_new(schema.clone(), b.columns().to_vec())?;
                    match &mut sink {
                        Sink::Arrow(fw) => fw.write(&b)?,
                        Sink::Parquet(pw) => pw.write(&b)?,
                    }
                }
                written += chunk.n_cells();
                Ok(())
            };
            fill(&mut put)?;
        }
        if written != n_cells {
            bail!("{written} cells written but the header announced {n_cells}");
        }
        match sink {
            Sink::Arrow(mut fw) => fw.finish()?,
            Sink::Parquet(pw) => {
                pw.close()?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Csr;

    fn small() -> CellsTable {
        let dense = [1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 3.0, 4.0, 0.0];
        CellsTable {
            cell_ids: vec!["a".into(), "b".into(), "c".into()],
            batch: Categorical::from_strings(&["s1", "s2", "s1"]),
            obs: vec![
                (
                    "cell_type".into(),
                    Column::Cat(Categorical::from_strings(&["T", "B", "T"])),
                ),
                ("score".into(), Column::F64(vec![0.5, f64::NAN, 2.0])),
                ("n".into(), Column::I64(vec![Some(1), None, Some(3)])),
            ],
            gene_ids: vec!["g1".into(), "g2".into(), "g3".into()],
            gene_names: vec!["A".into(), "B".into(), "C".into()],
            x: Csr::from_dense(3, 3, &dense),
            values: ValueKind::Counts,
            provenance: vec![Step::new("test", &serde_json::json!({"k": 1}))],
        }
    }

    fn same(a: &CellsTable, b: &CellsTable) {
        assert_eq!(a.cell_ids, b.cell_ids);
        assert_eq!(a.batch, b.batch);
        assert_eq!(a.x, b.x);
        assert_eq!(a.gene_ids, b.gene_ids);
        assert_eq!(a.gene_names, b.gene_names);
        assert_eq!(a.provenance, b.provenance);
        assert_eq!(a.obs.len(), b.obs.len());
        assert_eq!(format!("{:?}", a.obs), format!("{:?}", b.obs)); // NaN-tolerant comparison
    }

    #[test]
    fn cells_round_trip_arrow_and_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let t = small();
        for name in ["c.arrow", "c.parquet"] {
            let p = dir.path().join(name);
            write_cells(&p, &t).unwrap();
            same(&read_cells(&p).unwrap(), &t);
        }
    }

    #[test]
    fn wrong_kind_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.arrow");
        write_pairs(
            &p,
            &PairsTable {
                n_cells: 3,
                fingerprint: "3:x".into(),
                ..Default::default()
            },
        )
        .unwrap();
        let e = read_cells(&p).unwrap_err().to_string();
        assert!(
            e.contains("p.arrow") && e.contains("cellweave.table") && e.contains("'pairs'"),
            "{e}"
        );
    }

    #[test]
    fn invalid_table_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = small();
        t.cell_ids[1] = "a".into();
        let p = dir.path().join("bad.arrow");
        let e = write_cells(&p, &t).unwrap_err().to_string();
        assert!(e.contains("cell_id") && e.contains("--make-unique"), "{e}");
        assert!(!p.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "temp file left behind"
        );
    }

    #[test]
    fn truncated_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.arrow");
        write_cells(&p, &small()).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let e = read_cells(&p).unwrap_err().to_string();
        assert!(e.starts_with(&p.display().to_string()), "{e}");
    }

    #[test]
    fn embedding_and_pairs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let t = small();
        let e = EmbeddingTable {
            name: "claire".into(),
            cell_ids: t.cell_ids.clone(),
            obs: EmbeddingTable::obs_from_cells(&t),
            dim: 2,
            data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            provenance: vec![],
        };
        let p = dir.path().join("e.parquet");
        write_embedding(&p, &e).unwrap();
        let back = read_embedding(&p).unwrap();
        assert_eq!(back.data, e.data);
        assert_eq!(back.name, "claire");
        assert_eq!(back.column("batch").unwrap().to_categorical(), t.batch);
        let mut pairs = PairsTable {
            n_cells: 3,
            fingerprint: t.fingerprint(),
            ..Default::default()
        };
        pairs.push(PairKind::Mnn, 0, 1, 0.5, f32::NAN);
        pairs.push(PairKind::Knn, 2, 0, 0.25, f32::NAN);
        let p = dir.path().join("p.arrow");
        write_pairs(&p, &pairs).unwrap();
        let back = read_pairs(&p).unwrap();
        assert_eq!(back.kind, pairs.kind);
        assert_eq!(back.i, pairs.i);
        back.check_cells(&t.fingerprint()).unwrap();
        assert!(back.check_cells("3:0").is_err());
    }
}
