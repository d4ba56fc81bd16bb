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

/// Column of the cell ids.
pub const COL_CELL_ID: &str = "cell_id";
/// Column of the batches.
pub const COL_BATCH: &str = "batch";
/// List column of each cell's gene positions.
pub const COL_GENE_INDEX: &str = "gene_index";
/// List column of each cell's values.
pub const COL_EXPRESSION: &str = "expression";
/// Fixed-size list column of an embedding's values.
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

/// Write `columns` (with their `fields` and the schema metadata `md`) to `path` as one
/// record batch ([`write_batches`]).
pub(super) fn write_one_batch(
    path: &Path,
    fields: Vec<Field>,
    md: HashMap<String, String>,
    columns: Vec<ArrayRef>,
) -> Result<()> {
    let schema = Arc::new(Schema::new_with_metadata(fields, md));
    let batch = RecordBatch::try_new(schema.clone(), columns).at(path)?;
    write_batches(path, schema, &[batch])
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

/// `path` memory-mapped when it is an Arrow IPC file (None for Parquet or an IPC stream:
/// read those with [`read_batches`]).
pub(crate) fn map_arrow_file(path: &Path) -> Result<Option<MappedIpc>> {
    if Format::of(path) != Some(Format::Arrow) || !path.exists() {
        return Ok(None);
    }
    let inner = || -> Result<Option<MappedIpc>> {
        let file = File::open(path)?;
        let mut head = [0u8; 6];
        let n = {
            use std::io::Read;
            let mut f = &file;
            f.read(&mut head)?
        };
        if n < 6 || &head != b"ARROW1" {
            return Ok(None);
        }
        Ok(Some(map_ipc_file(&file)?))
    };
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

mod cells;
mod columns;
mod embedding;
mod frame;
mod pairs;
mod writer;

pub use cells::*;
pub use columns::*;
pub use embedding::*;
pub use frame::*;
pub use pairs::*;
pub use writer::*;

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
        crate::assert_has(&e, &["p.arrow", "cellweave.table", "'pairs'"]);
    }

    #[test]
    fn invalid_table_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = small();
        t.cell_ids[1] = "a".into();
        let p = dir.path().join("bad.arrow");
        let e = write_cells(&p, &t).unwrap_err().to_string();
        crate::assert_has(&e, &["cell_id", "--make-unique"]);
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
