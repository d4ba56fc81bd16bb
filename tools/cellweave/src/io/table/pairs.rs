//! Pairs tables.

use super::*;

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
    write_one_batch(path, fields, md, arrays)
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
