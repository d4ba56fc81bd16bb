//! Cells tables: schema, record batches, reading and writing whole.

use super::*;

/// What the schema metadata of a cells table holds: everything but the rows.
#[derive(Debug, Clone)]
pub struct CellsMeta<'a> {
    /// Gene ids.
    pub gene_ids: &'a [String],
    /// Gene names, parallel to the ids.
    pub gene_names: &'a [String],
    /// What the values are.
    pub values: ValueKind,
    /// Every stage that produced the table, oldest first.
    pub provenance: &'a [Step],
    /// Number of cells.
    pub n_cells: usize,
    /// Fingerprint of the cell ids.
    pub fingerprint: String,
}

impl<'a> CellsMeta<'a> {
    /// The metadata of a table in memory.
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

pub(super) fn list_item(dt: DataType) -> Arc<Field> {
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
pub(super) fn batch_ranges(indptr: &[u64]) -> Vec<(usize, usize)> {
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

pub(super) fn list_array<T: ArrowPrimitiveType>(
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
pub(super) fn table_schema(t: &CellsTable) -> Result<SchemaRef> {
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
pub(super) fn per_cell_arrays(t: &CellsTable, start: usize, end: usize) -> Vec<ArrayRef> {
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
    /// Row offsets, from 0.
    pub offsets: OffsetBuffer<i32>,
    /// Gene positions.
    pub indices: ScalarBuffer<u32>,
    /// Values.
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
pub(super) fn append_list<T: ArrowPrimitiveType>(
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
    cells_from_batches_releasing(schema, batches, |_| {})
}

/// [`cells_from_batches`], calling `release(i)` once record batch `i`'s matrix is copied (a
/// memory-mapped file hands that batch's pages back, so the mapped file and its copy are not
/// both resident: peak memory is the table plus one batch, not twice the table).
pub(crate) fn cells_from_batches_releasing(
    schema: &Schema,
    batches: &[RecordBatch],
    release: impl Fn(usize),
) -> Result<CellsTable> {
    let mut t = cells_without_rows(schema, batches)?;
    let mut indptr2 = vec![0u64];
    let genes = get_arrays(batches, schema, COL_GENE_INDEX)?;
    let exprs = get_arrays(batches, schema, COL_EXPRESSION)?;
    let x = &mut t.x;
    for (i, (g, v)) in genes.into_iter().zip(exprs).enumerate() {
        append_list::<UInt32Type>(g, &mut x.indptr, &mut x.indices, COL_GENE_INDEX)?;
        append_list::<Float32Type>(v, &mut indptr2, &mut x.data, COL_EXPRESSION)?;
        release(i);
    }
    if indptr2 != x.indptr {
        return Err(
            Error::new("row lengths differ from those of 'gene_index'").field(COL_EXPRESSION)
        );
    }
    t.validate()?;
    Ok(t)
}

/// A cells table from record batches without its expression rows: the metadata and the
/// per-cell columns, read as [`cells_from_batches`] reads them, and `x` a matrix of the
/// table's genes with no rows (`x.n_rows()` is 0, not the number of cells). The checks of
/// the whole table (unique cell ids, a batch for every cell) are the caller's:
/// `CellsTable::validate` after the rows, or `io::stream::CellsInput`'s.
pub(crate) fn cells_without_rows(schema: &Schema, batches: &[RecordBatch]) -> Result<CellsTable> {
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
    Ok(CellsTable {
        cell_ids,
        batch,
        obs,
        x: crate::contract::Csr::empty(gene_ids.len()),
        gene_ids,
        gene_names,
        values,
        provenance,
    })
}

/// Read and validate a cells table.
pub fn read_cells(path: &Path) -> Result<CellsTable> {
    if let Some(m) = super::map_arrow_file(path)? {
        // each record batch's pages handed back once copied (MADV_DONTNEED: they stay in
        // the page cache; the map is read-only and shared, so the bytes are unchanged)
        let release = |i: usize| {
            let (offset, len) = m.blocks[i];
            // SAFETY: see io::stream::CellsInput::release; nothing is written through the map.
            unsafe {
                let _ =
                    m.map
                        .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len);
            }
        };
        return cells_from_batches_releasing(&m.schema, &m.batches, release).at(path);
    }
    let (schema, batches) = read_batches(path)?;
    cells_from_batches(&schema, &batches).at(path)
}
