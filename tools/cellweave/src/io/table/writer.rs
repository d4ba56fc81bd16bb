//! A cells table written chunk by chunk (tables larger than memory).

use super::*;

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
