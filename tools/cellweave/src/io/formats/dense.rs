//! Dense delimited text matrices (CSV/TSV, optionally gzipped) in and out.
//!
//! Input layout: a header row of gene names and one row per cell starting with the cell
//! id (`genes_as_rows` reads the transposed layout: a header of cell ids and one row per
//! gene). The header's first cell (a corner label such as `cell_id`) may be omitted, as R's
//! `write.table` does. Output: cells as rows, gene ids in the header.

use super::mtx::{push_value, LineBlocks};
use super::obs::{delimiter_of, split_record};
use super::single_file_table;
use crate::contract::{CellsTable, Csr, EmbeddingTable, ValueKind};
use crate::{Error, Result, ResultExt};
use std::io::Write;
use std::path::Path;

/// Transpose a CSR matrix whose rows are `m.n_rows()` and columns `m.n_cols`.
pub fn transpose(m: &Csr) -> Csr {
    let (nr, nc) = (m.n_rows(), m.n_cols);
    let mut counts = vec![0u64; nc + 1];
    for &c in &m.indices {
        counts[c as usize + 1] += 1;
    }
    for i in 0..nc {
        counts[i + 1] += counts[i];
    }
    let mut next = counts.clone();
    let mut indices = vec![0u32; m.nnz()];
    let mut data = vec![0f32; m.nnz()];
    for r in 0..nr {
        let (idx, val) = m.row(r);
        for (&c, &v) in idx.iter().zip(val) {
            let p = next[c as usize] as usize;
            indices[p] = r as u32;
            data[p] = v;
            next[c as usize] += 1;
        }
    }
    Csr {
        n_cols: nr,
        indptr: counts,
        indices,
        data,
    }
}

fn unquote(s: &[u8]) -> &[u8] {
    if s.len() >= 2 && s[0] == b'"' && s[s.len() - 1] == b'"' {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

/// Parse one number field; integers take a fast path.
#[inline]
fn number(field: &[u8]) -> Option<f64> {
    if !field.is_empty() && field.len() < 16 && field.iter().all(u8::is_ascii_digit) {
        let mut v = 0u64;
        for &d in field {
            v = v * 10 + (d - b'0') as u64;
        }
        return Some(v as f64);
    }
    std::str::from_utf8(field).ok()?.trim().parse::<f64>().ok()
}

/// Read a dense CSV/TSV matrix (delimiter by extension: `.csv` comma, otherwise tab).
pub fn read_dense(path: &Path, genes_as_rows: bool, values: ValueKind) -> Result<CellsTable> {
    read_dense_inner(path, genes_as_rows, values).map_err(|e| e.file(path))
}

fn read_dense_inner(path: &Path, genes_as_rows: bool, values: ValueKind) -> Result<CellsTable> {
    let delim = delimiter_of(path);
    let counts = values == ValueKind::Counts;
    let mut header: Option<Vec<String>> = None;
    let mut row_ids: Vec<String> = Vec::new();
    // Rows as they come: CSR over the header's columns.
    let mut m = Csr::empty(0);
    let mut line = 0usize;
    let mut corner_checked = false;
    for block in LineBlocks::open(path)? {
        let block = block.map_err(|e| {
            Error::new(format!(
                "line {}: unreadable ({e}; truncated or corrupt file?)",
                line + 1
            ))
            .field("values")
        })?;
        for raw in block.split(|&b| b == b'\n') {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.is_empty() {
                line += 1;
                continue;
            }
            line += 1;
            let Some(head) = &mut header else {
                let text = std::str::from_utf8(raw)
                    .map_err(|_| Error::new("line 1: header is not UTF-8 text").field("header"))?;
                let h = split_record(text, delim);
                m.n_cols = h.len();
                header = Some(h);
                continue;
            };
            let mut fields = raw.split(|&b| b == delim);
            let id = unquote(fields.next().unwrap_or(b""));
            if id.is_empty() {
                return Err(Error::new(format!(
                    "line {line}: empty {} id in the first field",
                    if genes_as_rows { "gene" } else { "cell" }
                )));
            }
            let mut n = 0usize;
            for (col, f) in fields.enumerate() {
                n += 1;
                let Some(v) = number(f) else {
                    return Err(Error::new(format!(
                        "line {line}, column {}: '{}' is not a number",
                        col + 2,
                        String::from_utf8_lossy(&f[..f.len().min(40)])
                    ))
                    .field("values"));
                };
                if counts && !(v >= 0.0 && v.is_finite()) {
                    return Err(Error::new(format!(
                        "line {line}, column {}: value {v} is not a raw count (expected a finite non-negative number)",
                        col + 2
                    ))
                    .field("values"));
                }
                if v != 0.0 && col < m.n_cols {
                    m.indices.push(col as u32);
                    m.data.push(v as f32);
                }
            }
            if !corner_checked {
                // The header either labels the id column (one more field than values) or not.
                corner_checked = true;
                if head.len() == n + 1 {
                    head.remove(0);
                    m.n_cols = head.len();
                }
            }
            if n != head.len() {
                return Err(Error::new(format!(
                    "line {line}: {} values (expected {}, one per {} in the header)",
                    n,
                    head.len(),
                    if genes_as_rows { "cell" } else { "gene" }
                ))
                .field("values"));
            }
            row_ids.push(String::from_utf8_lossy(id).into_owned());
            m.indptr.push(m.indices.len() as u64);
        }
    }
    let Some(header) = header else {
        return Err(Error::new("empty file (expected a header row)").field("header"));
    };
    if row_ids.is_empty() {
        return Err(Error::new("no rows after the header").field("values"));
    }
    let (cell_ids, genes, x) = if genes_as_rows {
        (header, row_ids, transpose(&m))
    } else {
        (row_ids, header, m)
    };
    Ok(single_file_table(
        path,
        cell_ids,
        Vec::new(),
        (genes.clone(), genes),
        x,
        values,
    ))
}

/// Write the expression matrix as a dense TSV: header `cell_id` and the gene ids, one row per cell.
pub fn write_dense_tsv(path: &Path, t: &CellsTable) -> Result<()> {
    crate::io::check_text_fields(t.cell_ids.iter().map(String::as_str), "cell_id").at(path)?;
    crate::io::check_text_fields(t.gene_ids.iter().map(String::as_str), "gene_ids").at(path)?;
    crate::io::atomic::write_file(path, |w| {
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
        buf.extend_from_slice(b"cell_id");
        for g in &t.gene_ids {
            buf.push(b'\t');
            buf.extend_from_slice(g.as_bytes());
        }
        buf.push(b'\n');
        for r in 0..t.n_cells() {
            buf.extend_from_slice(t.cell_ids[r].as_bytes());
            let (idx, val) = t.x.row(r);
            let mut k = 0;
            for g in 0..t.n_genes() {
                buf.push(b'\t');
                if k < idx.len() && idx[k] as usize == g {
                    push_value(&mut buf, val[k]);
                    k += 1;
                } else {
                    buf.push(b'0');
                }
            }
            buf.push(b'\n');
            if buf.len() > 1 << 20 {
                w.write_all(&buf).at(path)?;
                buf.clear();
            }
        }
        w.write_all(&buf).at(path)?;
        Ok(())
    })
}

/// Write an embedding as TSV: header `cell_id`, `<name>_1` .. `<name>_d`.
pub fn write_embedding_tsv(path: &Path, e: &EmbeddingTable) -> Result<()> {
    crate::io::check_text_fields(e.cell_ids.iter().map(String::as_str), "cell_id").at(path)?;
    crate::io::check_text_fields([e.name.as_str()], "name").at(path)?;
    crate::io::atomic::write_file(path, |w| {
        write!(w, "cell_id").at(path)?;
        for k in 0..e.dim {
            write!(w, "\t{}_{}", e.name, k + 1).at(path)?;
        }
        writeln!(w).at(path)?;
        for (i, id) in e.cell_ids.iter().enumerate() {
            write!(w, "{id}").at(path)?;
            for v in e.row(i) {
                write!(w, "\t{v}").at(path)?;
            }
            writeln!(w).at(path)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_round_trip() {
        let m = Csr::from_dense(2, 3, &[1.0, 0.0, 2.0, 0.0, 3.0, 4.0]);
        let t = transpose(&m);
        assert_eq!(t.to_dense(), vec![1.0, 0.0, 0.0, 3.0, 2.0, 4.0]);
        assert_eq!(transpose(&t), m);
    }

    #[test]
    fn reads_both_layouts() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.csv");
        std::fs::write(&p, "cell,g1,g2,g3\n\"c1\",1,0,2\nc2,0,3,0\n").unwrap();
        let t = read_dense(&p, false, ValueKind::Counts).unwrap();
        assert_eq!(t.cell_ids, vec!["c1", "c2"]);
        assert_eq!(t.gene_ids, vec!["g1", "g2", "g3"]);
        assert_eq!(t.x.to_dense(), vec![1.0, 0.0, 2.0, 0.0, 3.0, 0.0]);
        // Transposed, without the corner cell (R write.table style).
        let p2 = d.path().join("m.tsv");
        std::fs::write(&p2, "c1\tc2\ng1\t1\t0\ng2\t0\t3\ng3\t2\t0\n").unwrap();
        let t2 = read_dense(&p2, true, ValueKind::Counts).unwrap();
        assert_eq!(t2.x, t.x);
        assert_eq!(t2.cell_ids, t.cell_ids);
        assert_eq!(t2.gene_ids, t.gene_ids);
        // And back out.
        let p3 = d.path().join("out.tsv");
        write_dense_tsv(&p3, &t).unwrap();
        let t3 = read_dense(&p3, false, ValueKind::Counts).unwrap();
        assert_eq!(t3.x, t.x);
    }

    #[test]
    fn bad_dense_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.tsv");
        std::fs::write(&p, "id\tg1\tg2\nc1\t1\t2\nc2\t1\n").unwrap();
        let e = read_dense(&p, false, ValueKind::Counts)
            .unwrap_err()
            .to_string();
        crate::assert_has(&e, &["line 3", "m.tsv"]);
        std::fs::write(&p, "id\tg1\tg2\nc1\t1\t-2\n").unwrap();
        let e = read_dense(&p, false, ValueKind::Counts)
            .unwrap_err()
            .to_string();
        crate::assert_has(&e, &["field 'values'", "line 2"]);
        std::fs::write(&p, "id\tg1\tg2\nc1\t1\tNaN\n").unwrap();
        let e = read_dense(&p, false, ValueKind::Counts)
            .unwrap_err()
            .to_string();
        assert!(e.contains("field 'values'"), "{e}");
    }
}
