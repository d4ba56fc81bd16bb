//! 10x Genomics MatrixMarket folders: `matrix.mtx[.gz]` (coordinate, genes x cells as
//! CellRanger writes it), `features.tsv[.gz]` (id, name, type) or `genes.tsv[.gz]`, and
//! `barcodes.tsv[.gz]`.
//!
//! The matrix is parsed with a hand-written integer scanner while a second thread reads
//! (and gunzips) the file in large blocks. Entries sorted by cell go straight into CSR;
//! other orders are bucketed in place by cell afterwards.

use super::obs::{open_text, read_lines, BUF};
use super::single_file_table;
use crate::contract::{CellsTable, Csr, ValueKind};
use crate::{bail, Error, Result, ResultExt};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};

/// Size of the blocks the reader thread hands to the parser.
const BLOCK: usize = 8 << 20;

/// Which axis of a matrix file holds the cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Orientation {
    /// Rows are genes, columns are cells (10x / CellRanger).
    GenesByCells,
    /// Rows are cells, columns are genes (AnnData).
    CellsByGenes,
}

/// The files of one 10x MTX folder (or of a `<prefix>matrix.mtx.gz` file with siblings).
#[derive(Debug, Clone)]
pub struct MtxFiles {
    /// `matrix.mtx[.gz]`.
    pub matrix: PathBuf,
    /// `features.tsv[.gz]` or `genes.tsv[.gz]`.
    pub features: PathBuf,
    /// `barcodes.tsv[.gz]`.
    pub barcodes: PathBuf,
    /// `obs.tsv` next to the matrix, if any (joined by the importer unless `--obs` is given).
    pub obs: Option<PathBuf>,
}

fn first_existing(dir: &Path, prefix: &str, names: &[&str]) -> Option<PathBuf> {
    names
        .iter()
        .map(|n| dir.join(format!("{prefix}{n}")))
        .find(|p| p.is_file())
}

/// Locate the files of a 10x folder, or of a `<prefix>matrix.mtx[.gz]` file and its
/// `<prefix>features.tsv[.gz]` / `<prefix>barcodes.tsv[.gz]` siblings (GEO style).
pub fn locate(path: &Path) -> Result<MtxFiles> {
    let (dir, prefix) = if path.is_dir() {
        (path.to_path_buf(), String::new())
    } else {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let stem = name.strip_suffix(".gz").unwrap_or(&name);
        let prefix = stem
            .strip_suffix("matrix.mtx")
            .or_else(|| stem.strip_suffix(".mtx"))
            .unwrap_or("")
            .to_string();
        (
            path.parent().map(Path::to_path_buf).unwrap_or_default(),
            prefix,
        )
    };
    let matrix = if path.is_dir() {
        first_existing(&dir, "", &["matrix.mtx.gz", "matrix.mtx"])
    } else {
        path.is_file().then(|| path.to_path_buf())
    };
    let missing = |what: &str| {
        Error::new(format!("no {what} found (expected a 10x folder with matrix.mtx[.gz], features.tsv[.gz] or genes.tsv[.gz], and barcodes.tsv[.gz])"))
            .field(what.to_string())
            .file(path)
    };
    let matrix = matrix.ok_or_else(|| missing("matrix.mtx[.gz]"))?;
    let features = first_existing(
        &dir,
        &prefix,
        &[
            "features.tsv.gz",
            "features.tsv",
            "genes.tsv.gz",
            "genes.tsv",
        ],
    )
    .ok_or_else(|| {
        missing(&format!(
            "{prefix}features.tsv[.gz] or {prefix}genes.tsv[.gz]"
        ))
    })?;
    let barcodes = first_existing(&dir, &prefix, &["barcodes.tsv.gz", "barcodes.tsv"])
        .ok_or_else(|| missing(&format!("{prefix}barcodes.tsv[.gz]")))?;
    let obs = if path.is_dir() {
        first_existing(&dir, "", &["obs.tsv"])
    } else {
        None
    };
    Ok(MtxFiles {
        matrix,
        features,
        barcodes,
        obs,
    })
}

/// How a 10x id file (features or barcodes) is named in errors.
struct IdFile {
    /// The field of the file as a whole (unreadable, no lines).
    field: &'static str,
    /// The field of an empty id on one line.
    id_field: &'static str,
    /// "line N: empty {empty_id}".
    empty_id: &'static str,
    /// The error of a file without lines.
    no_lines: &'static str,
}

const FEATURES: IdFile = IdFile {
    field: "gene_ids",
    id_field: "gene_id",
    empty_id: "gene id (expected 'id<TAB>name[<TAB>type]')",
    no_lines: "no genes (expected one line per gene)",
};

const BARCODES: IdFile = IdFile {
    field: "cell_id",
    id_field: "cell_id",
    empty_id: "barcode (expected one cell id per line)",
    no_lines: "no barcodes (expected one cell id per line)",
};

/// The lines of a 10x id file up to its last non-blank one: the first tab-separated field
/// (the id, required) and the second when it is not empty.
fn read_ids(path: &Path, file: &IdFile) -> Result<Vec<(String, Option<String>)>> {
    let lines = read_lines(path).map_err(|e| e.field(file.field))?;
    let n = lines
        .iter()
        .rposition(|l| !l.is_empty())
        .map(|i| i + 1)
        .unwrap_or(0);
    let mut out = Vec::with_capacity(n);
    for (i, line) in lines[..n].iter().enumerate() {
        let mut f = line.split('\t');
        let id = f.next().unwrap_or("");
        if id.is_empty() {
            return Err(
                Error::new(format!("line {}: empty {}", i + 1, file.empty_id))
                    .field(file.id_field)
                    .file(path),
            );
        }
        let second = f.next().filter(|s| !s.is_empty()).map(str::to_string);
        out.push((id.to_string(), second));
    }
    if out.is_empty() {
        return Err(Error::new(file.no_lines).field(file.field).file(path));
    }
    Ok(out)
}

/// Gene ids and names from `features.tsv` (id, name, type) or `genes.tsv` (id, name); a
/// single column is both id and name.
pub fn read_features(path: &Path) -> Result<(Vec<String>, Vec<String>)> {
    Ok(read_ids(path, &FEATURES)?
        .into_iter()
        .map(|(id, name)| {
            let name = name.unwrap_or_else(|| id.clone());
            (id, name)
        })
        .unzip())
}

/// Cell barcodes: the first column of `barcodes.tsv`.
pub fn read_barcodes(path: &Path) -> Result<Vec<String>> {
    Ok(read_ids(path, &BARCODES)?
        .into_iter()
        .map(|(id, _)| id)
        .collect())
}

/// Read a 10x MTX folder (see [`locate`]) into a cells table with one batch named after
/// the folder; `orientation` None = decide from the number of genes and barcodes.
pub fn read_mtx_dir(
    path: &Path,
    orientation: Option<Orientation>,
    values: ValueKind,
) -> Result<CellsTable> {
    let files = locate(path)?;
    let genes = read_features(&files.features)?;
    let cell_ids = read_barcodes(&files.barcodes)?;
    let x = read_matrix(
        &files.matrix,
        cell_ids.len(),
        genes.0.len(),
        orientation,
        values == ValueKind::Counts,
    )?;
    Ok(single_file_table(
        path,
        cell_ids,
        Vec::new(),
        genes,
        x,
        values,
    ))
}

mod blocks;
mod parse;
mod write;

pub(crate) use blocks::*;
pub use parse::*;
pub use write::*;

#[cfg(test)]
mod tests {
    use super::*;

    fn write_gz(path: &Path, text: &str) {
        let mut w = flate2::write::GzEncoder::new(
            std::fs::File::create(path).unwrap(),
            flate2::Compression::fast(),
        );
        w.write_all(text.as_bytes()).unwrap();
        w.finish().unwrap();
    }

    fn folder(matrix: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        write_gz(&d.path().join("matrix.mtx.gz"), matrix);
        write_gz(
            &d.path().join("features.tsv.gz"),
            "g1\tA\tGene Expression\ng2\tB\tGene Expression\ng3\tC\tGene Expression\n",
        );
        std::fs::write(d.path().join("barcodes.tsv"), "c1\nc2\n").unwrap();
        d
    }

    #[test]
    fn reads_unsorted_entries_into_csr() {
        let d = folder("%%MatrixMarket matrix coordinate real general\n% comment\n3 2 4\n3 2 5\n1 1 1\n2 2 7\n1 2 2.5\n");
        let t = read_mtx_dir(d.path(), None, ValueKind::Counts).unwrap();
        assert_eq!(t.cell_ids, vec!["c1", "c2"]);
        assert_eq!(t.gene_ids, vec!["g1", "g2", "g3"]);
        assert_eq!(t.gene_names, vec!["A", "B", "C"]);
        assert_eq!(t.x.to_dense(), vec![1.0, 0.0, 0.0, 2.5, 7.0, 5.0]);
        t.validate().unwrap();
    }

    #[test]
    fn sorted_entries_and_duplicates() {
        let d = folder(
            "%%MatrixMarket matrix coordinate real general\n3 2 4\n2 1 1\n1 1 2\n1 1 3\n3 2 1e1\n",
        );
        let t = read_mtx_dir(d.path(), None, ValueKind::Counts).unwrap();
        assert_eq!(t.x.to_dense(), vec![5.0, 1.0, 0.0, 0.0, 0.0, 10.0]);
        assert_eq!(t.x.nnz(), 3);
    }

    #[test]
    fn cells_as_rows_detected() {
        let d = folder("%%MatrixMarket matrix coordinate pattern general\n2 3 2\n1 3\n2 1\n");
        let t = read_mtx_dir(d.path(), None, ValueKind::Counts).unwrap();
        assert_eq!(t.x.to_dense(), vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
    }

    fn err(matrix: &str) -> String {
        let d = folder(matrix);
        read_mtx_dir(d.path(), None, ValueKind::Counts)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn malformed_files_name_file_line_and_field() {
        let e = err("%%MatrixMarket matrix coordinate integer general\n3 2 3\n1 1 1\n2 x 1\n");
        crate::assert_has(&e, &["matrix.mtx.gz", "line 4", "'entries'"]);
        let e = err("%%MatrixMarket matrix coordinate integer general\n3 2 3\n1 1 1\n");
        crate::assert_has(&e, &["after 1 of the 3 entries", "truncated"]);
        let e = err("%%MatrixMarket matrix coordinate integer general\n3 2 1\n1 1 1.5\n");
        assert!(e.contains("not an integer"), "{e}");
        let e = err("%%MatrixMarket matrix coordinate integer general\n3 2 1\n1 1 -4\n");
        crate::assert_has(&e, &["field 'values'", "line 3"]);
        let e = err("%%MatrixMarket matrix coordinate real general\n3 2 1\n1 1 nan\n");
        assert!(e.contains("field 'values'"), "{e}");
        let e = err("%%MatrixMarket matrix coordinate integer general\n3 2 1\n4 1 1\n");
        assert!(e.contains("outside the 3 x 2"), "{e}");
        let e = err("%%MatrixMarket matrix coordinate integer general\n4 2 1\n1 1 1\n");
        crate::assert_has(&e, &["4 x 2", "3 genes"]);
        let e = err("hello\n");
        crate::assert_has(&e, &["not a MatrixMarket file", "line 1"]);
        let e = err("%%MatrixMarket matrix coordinate integer symmetric\n3 2 1\n1 1 1\n");
        assert!(e.contains("symmetric"), "{e}");
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        let d = folder("%%MatrixMarket matrix coordinate integer general\n3 2 2\n1 1 1\n2 2 2\n");
        let p = d.path().join("matrix.mtx.gz");
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 12]).unwrap();
        let e = read_mtx_dir(d.path(), None, ValueKind::Counts)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("matrix.mtx.gz") && (e.contains("truncated") || e.contains("corrupt")),
            "{e}"
        );
    }

    #[test]
    fn write_then_read_round_trip() {
        let d = folder(
            "%%MatrixMarket matrix coordinate real general\n3 2 3\n1 1 1.25\n3 1 2\n2 2 3\n",
        );
        let t = read_mtx_dir(d.path(), None, ValueKind::Counts).unwrap();
        let out = tempfile::tempdir().unwrap();
        let o = out.path().join("mtx");
        write_mtx_dir(&o, &t).unwrap();
        let back = read_mtx_dir(&o, None, ValueKind::Counts).unwrap();
        assert_eq!(back.x, t.x);
        assert_eq!(back.gene_names, t.gene_names);
        assert_eq!(back.cell_ids, t.cell_ids);
    }

    #[test]
    fn push_value_formats() {
        let mut b = Vec::new();
        push_value(&mut b, 12.0);
        b.push(b' ');
        push_value(&mut b, 0.1);
        b.push(b' ');
        push_uint(&mut b, 0);
        assert_eq!(String::from_utf8(b).unwrap(), "12 0.1 0");
    }
}
