//! Embedding tables.

use super::*;

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
    write_one_batch(path, fields, md, cols)
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
