//! Generic frames (genes, scores, QC, training log) as Arrow, Parquet or TSV.

use super::*;

/// Write a generic table (genes, scores, QC, training log).
pub fn write_frame(path: &Path, f: &Frame) -> Result<()> {
    let mut md = base_metadata(f.kind, &f.provenance);
    for (k, v) in &f.meta {
        md.insert(k.clone(), v.clone());
    }
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) =
        f.columns.iter().map(|(n, c)| column_to_arrow(n, c)).unzip();
    write_one_batch(path, fields, md, arrays)
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

/// Write a side table (a QC report, a genes table, a training log): tab-separated text for a
/// `.tsv` (`.txt`, `.tab`) path, else Arrow or Parquet by the extension.
pub fn write_side(path: &Path, f: &Frame) -> Result<()> {
    match Format::of(path) {
        Some(Format::Tsv) => write_frame_tsv(path, f),
        _ => write_frame(path, f),
    }
}
