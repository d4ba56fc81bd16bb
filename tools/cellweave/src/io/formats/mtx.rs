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
    pub matrix: PathBuf,
    pub features: PathBuf,
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

// ------------------------------------------------------------------ block reader

/// Blocks of whole lines read (and gunzipped) by a background thread.
pub(crate) struct LineBlocks {
    rx: Receiver<std::result::Result<Vec<u8>, String>>,
}

impl LineBlocks {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let mut r = open_text(path)?;
        let (tx, rx) = sync_channel(2);
        std::thread::spawn(move || {
            let mut carry: Vec<u8> = Vec::new();
            loop {
                let mut block = Vec::with_capacity(BLOCK + carry.len() + 4096);
                block.append(&mut carry);
                let target = block.len() + BLOCK;
                let mut eof = false;
                while block.len() < target {
                    let start = block.len();
                    block.resize(target, 0);
                    match r.read(&mut block[start..]) {
                        Ok(0) => {
                            block.truncate(start);
                            eof = true;
                            break;
                        }
                        Ok(n) => block.truncate(start + n),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                            block.truncate(start)
                        }
                        Err(e) => {
                            // Hand over the whole lines read so far, so that the error names the line reached.
                            block.truncate(start);
                            if let Some(p) = block.iter().rposition(|&b| b == b'\n') {
                                block.truncate(p + 1);
                                let _ = tx.send(Ok(block));
                            }
                            let _ = tx.send(Err(e.to_string()));
                            return;
                        }
                    }
                }
                if !eof {
                    match block.iter().rposition(|&b| b == b'\n') {
                        Some(p) => carry.extend_from_slice(&block[p + 1..]),
                        None => {
                            // A line longer than a block: keep reading into it.
                            carry = block;
                            continue;
                        }
                    }
                    let keep = block.len() - carry.len();
                    block.truncate(keep);
                }
                if tx.send(Ok(block)).is_err() || eof {
                    return;
                }
            }
        });
        Ok(LineBlocks { rx })
    }
}

impl Iterator for LineBlocks {
    type Item = std::result::Result<Vec<u8>, String>;
    fn next(&mut self) -> Option<Self::Item> {
        self.rx.recv().ok()
    }
}

// ------------------------------------------------------------------ matrix parser

#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    Integer,
    Real,
    Pattern,
}

#[derive(Debug, Clone, Copy)]
struct Header {
    rows: u64,
    cols: u64,
    nnz: u64,
    field: Field,
}

fn parse_banner(line: &str) -> std::result::Result<Field, String> {
    let t: Vec<String> = line.split_whitespace().map(|s| s.to_lowercase()).collect();
    if t.first().map(String::as_str) != Some("%%matrixmarket") || t.len() < 5 {
        return Err(format!("not a MatrixMarket file: the first line is '{}' (expected '%%MatrixMarket matrix coordinate integer general')", line.chars().take(60).collect::<String>()));
    }
    if t[1] != "matrix" || t[2] != "coordinate" {
        return Err(format!(
            "'{} {}' is not supported (expected 'matrix coordinate')",
            t[1], t[2]
        ));
    }
    let field = match t[3].as_str() {
        "integer" => Field::Integer,
        "real" | "double" => Field::Real,
        "pattern" => Field::Pattern,
        other => {
            return Err(format!(
                "value type '{other}' is not supported (expected integer, real or pattern)"
            ))
        }
    };
    if t[4] != "general" {
        return Err(format!(
            "symmetry '{}' is not supported (expected 'general')",
            t[4]
        ));
    }
    Ok(field)
}

/// Collects (cell, gene, value) entries and builds the cells x genes CSR.
struct Coo {
    n_cells: usize,
    counts: Vec<u64>,
    cells: Vec<u32>,
    genes: Vec<u32>,
    vals: Vec<f32>,
    sorted: bool,
    last_cell: u32,
}

impl Coo {
    fn new(n_cells: usize, reserve: usize) -> Self {
        Coo {
            n_cells,
            counts: vec![0; n_cells],
            cells: Vec::new(),
            genes: Vec::with_capacity(reserve),
            vals: Vec::with_capacity(reserve),
            sorted: true,
            last_cell: 0,
        }
    }

    #[inline]
    fn push(&mut self, cell: u32, gene: u32, v: f32) {
        if self.sorted {
            if cell < self.last_cell {
                // First entry out of cell order: spell out the cells of what came before.
                self.sorted = false;
                self.cells.reserve(self.genes.capacity());
                for (c, &n) in self.counts.iter().enumerate() {
                    self.cells.extend(std::iter::repeat_n(c as u32, n as usize));
                }
                self.cells.push(cell);
            }
            self.last_cell = cell;
        } else {
            self.cells.push(cell);
        }
        self.counts[cell as usize] += 1;
        self.genes.push(gene);
        self.vals.push(v);
    }

    /// The CSR matrix; `dups` receives the number of repeated (cell, gene) entries summed.
    fn finish(mut self, n_genes: usize, dups: &mut usize) -> Csr {
        let mut indptr = Vec::with_capacity(self.n_cells + 1);
        indptr.push(0u64);
        for &c in &self.counts {
            indptr.push(indptr.last().unwrap() + c);
        }
        if !self.sorted {
            // In-place bucket sort by cell: every swap puts one entry into its final bucket.
            let mut next: Vec<u64> = indptr[..self.n_cells].to_vec();
            for c in 0..self.n_cells {
                let end = indptr[c + 1];
                while next[c] < end {
                    let i = next[c] as usize;
                    let d = self.cells[i] as usize;
                    if d == c {
                        next[c] += 1;
                    } else {
                        let j = next[d] as usize;
                        self.cells.swap(i, j);
                        self.genes.swap(i, j);
                        self.vals.swap(i, j);
                        next[d] += 1;
                    }
                }
            }
            self.cells = Vec::new();
        }
        let mut m = Csr {
            n_cols: n_genes,
            indptr,
            indices: self.genes,
            data: self.vals,
        };
        *dups = sort_rows(&mut m);
        m
    }
}

/// Make every row strictly ascending: sort unsorted rows and sum repeated positions.
/// Returns how many repeated entries were merged.
pub(crate) fn sort_rows(m: &mut Csr) -> usize {
    let n = m.n_rows();
    let clean = (0..n).all(|r| m.row(r).0.windows(2).all(|w| w[0] < w[1]));
    if clean {
        return 0;
    }
    let mut merged = 0;
    let mut w = 0usize;
    let mut pairs: Vec<(u32, f32)> = Vec::new();
    let mut start = 0usize;
    for r in 0..n {
        let end = m.indptr[r + 1] as usize;
        pairs.clear();
        pairs.extend((start..end).map(|i| (m.indices[i], m.data[i])));
        pairs.sort_by_key(|p| p.0);
        let row_start = w;
        for &(c, v) in &pairs {
            if w > row_start && m.indices[w - 1] == c {
                m.data[w - 1] += v;
                merged += 1;
            } else {
                m.indices[w] = c;
                m.data[w] = v;
                w += 1;
            }
        }
        start = end;
        m.indptr[r + 1] = w as u64;
    }
    m.indices.truncate(w);
    m.data.truncate(w);
    merged
}

struct Scan<'a> {
    s: &'a [u8],
    p: usize,
}

impl Scan<'_> {
    #[inline]
    fn skip_blanks(&mut self) {
        while self.p < self.s.len() && (self.s[self.p] == b' ' || self.s[self.p] == b'\t') {
            self.p += 1;
        }
    }
    #[inline]
    fn uint(&mut self) -> Option<u64> {
        self.skip_blanks();
        let start = self.p;
        let mut v: u64 = 0;
        while self.p < self.s.len() {
            let d = self.s[self.p].wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            v = v.wrapping_mul(10).wrapping_add(d as u64);
            self.p += 1;
        }
        (self.p > start && self.p - start < 20).then_some(v)
    }
    /// A number token: integers take the fast path, anything else goes through `f64` parsing.
    #[inline]
    fn value(&mut self) -> Option<f64> {
        self.skip_blanks();
        let start = self.p;
        if let Some(v) = self.uint() {
            if self.p >= self.s.len() || matches!(self.s[self.p], b' ' | b'\t' | b'\n' | b'\r') {
                return Some(v as f64);
            }
        }
        self.p = start;
        while self.p < self.s.len() && !matches!(self.s[self.p], b' ' | b'\t' | b'\n' | b'\r') {
            self.p += 1;
        }
        std::str::from_utf8(&self.s[start..self.p])
            .ok()?
            .parse::<f64>()
            .ok()
    }
    /// Skip to the end of the line; false if anything but blanks came before it.
    #[inline]
    fn end_of_line(&mut self) -> bool {
        self.skip_blanks();
        if self.p < self.s.len() && self.s[self.p] == b'\r' {
            self.p += 1;
        }
        if self.p >= self.s.len() {
            return true;
        }
        if self.s[self.p] == b'\n' {
            self.p += 1;
            return true;
        }
        false
    }
    fn rest_of_line(&self, from: usize) -> String {
        let end = self.s[from..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|e| from + e)
            .unwrap_or(self.s.len());
        String::from_utf8_lossy(&self.s[from..end.min(from + 60)])
            .trim_end()
            .to_string()
    }
}

/// Read a MatrixMarket coordinate file into a cells x genes CSR, checking its size against
/// the numbers of barcodes and genes. With `counts`, negative or non-finite values are errors.
pub fn read_matrix(
    path: &Path,
    n_cells: usize,
    n_genes: usize,
    orientation: Option<Orientation>,
    counts: bool,
) -> Result<Csr> {
    read_matrix_inner(path, n_cells, n_genes, orientation, counts).map_err(|e| e.file(path))
}

fn read_matrix_inner(
    path: &Path,
    n_cells: usize,
    n_genes: usize,
    orientation: Option<Orientation>,
    counts: bool,
) -> Result<Csr> {
    let file_len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let gz = super::obs::is_gzip(path)?;
    let mut header: Option<Header> = None;
    let mut banner: Option<Field> = None;
    let mut line: u64 = 0; // lines completed before the current position
    let mut seen: u64 = 0;
    let mut coo: Option<Coo> = None;
    let mut cells_are_rows = false;
    let err_at = |line: u64, msg: String| Error::new(format!("line {}: {msg}", line + 1));
    for block in LineBlocks::open(path)? {
        let block = block.map_err(|e| {
            err_at(
                line,
                format!("unreadable ({e}; truncated or corrupt file?)"),
            )
            .field("entries")
        })?;
        let mut sc = Scan { s: &block, p: 0 };
        // Header lines: banner, comments, size line.
        while header.is_none() && sc.p < block.len() {
            let end = block[sc.p..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|e| sc.p + e)
                .unwrap_or(block.len());
            let text = String::from_utf8_lossy(&block[sc.p..end])
                .trim_end_matches('\r')
                .to_string();
            sc.p = (end + 1).min(block.len());
            line += 1;
            match banner {
                None => {
                    banner =
                        Some(parse_banner(&text).map_err(|m| err_at(line - 1, m).field("header"))?)
                }
                Some(field) => {
                    if text.starts_with('%') || text.trim().is_empty() {
                        continue;
                    }
                    let nums: Vec<u64> = text
                        .split_whitespace()
                        .filter_map(|t| t.parse().ok())
                        .collect();
                    if nums.len() != 3 || text.split_whitespace().count() != 3 {
                        return Err(err_at(
                            line - 1,
                            format!("size line is '{text}' (expected 'rows columns entries')"),
                        )
                        .field("header"));
                    }
                    let h = Header {
                        rows: nums[0],
                        cols: nums[1],
                        nnz: nums[2],
                        field,
                    };
                    cells_are_rows = decide_orientation(&h, n_cells, n_genes, orientation)
                        .map_err(|e| e.field("shape"))?;
                    let per_entry = if gz { 1.0 } else { 6.0 };
                    let cap = if gz {
                        h.nnz
                    } else {
                        ((file_len as f64 / per_entry) as u64).min(h.nnz)
                    };
                    coo = Some(Coo::new(n_cells, cap as usize));
                    header = Some(h);
                }
            }
        }
        let (Some(h), Some(coo)) = (header, coo.as_mut()) else {
            continue;
        };
        let (nr, nc) = (h.rows, h.cols);
        while sc.p < block.len() {
            let start = sc.p;
            if block[start] == b'\n' || block[start] == b'\r' {
                sc.end_of_line();
                line += 1;
                continue;
            }
            let bad = |sc: &Scan, what: &str| {
                err_at(
                    line,
                    format!("expected {what}, found '{}'", sc.rest_of_line(start)),
                )
                .field("entries")
            };
            let Some(r) = sc.uint() else {
                return Err(bad(
                    &sc,
                    "'row column value' (positive integers then a number)",
                ));
            };
            let Some(c) = sc.uint() else {
                return Err(bad(
                    &sc,
                    "'row column value' (positive integers then a number)",
                ));
            };
            let v = if h.field == Field::Pattern {
                1.0
            } else {
                match sc.value() {
                    Some(v) => v,
                    None => return Err(bad(&sc, "a number as the third field")),
                }
            };
            if !sc.end_of_line() {
                return Err(bad(
                    &sc,
                    &format!("{} fields", if h.field == Field::Pattern { 2 } else { 3 }),
                ));
            }
            if r == 0 || r > nr || c == 0 || c > nc {
                return Err(err_at(line, format!("entry ({r}, {c}) is outside the {nr} x {nc} matrix declared in the size line")).field("entries"));
            }
            if counts && !(v >= 0.0 && v.is_finite()) {
                return Err(err_at(
                    line,
                    format!("value {v} is not a raw count (expected a finite non-negative number)"),
                )
                .field("values"));
            }
            seen += 1;
            if seen > h.nnz {
                return Err(err_at(
                    line,
                    format!("more entries than the {} declared in the size line", h.nnz),
                )
                .field("entries"));
            }
            let (cell, gene) = if cells_are_rows {
                (r - 1, c - 1)
            } else {
                (c - 1, r - 1)
            };
            coo.push(cell as u32, gene as u32, v as f32);
            line += 1;
        }
    }
    let Some(h) = header else {
        return Err(Error::new(if banner.is_none() {
            "empty file (expected a MatrixMarket header)"
        } else {
            "no size line (truncated file?)"
        })
        .field("header"));
    };
    if seen < h.nnz {
        return Err(Error::new(format!(
            "line {}: file ends after {seen} of the {} entries declared in the size line (truncated file?)",
            line + 1,
            h.nnz
        ))
        .field("entries"));
    }
    let mut dups = 0;
    let m = coo.unwrap().finish(n_genes, &mut dups);
    if dups > 0 {
        crate::info!(
            "{}: {dups} repeated (cell, gene) entries were summed",
            path.display()
        );
    }
    Ok(m)
}

/// True when the matrix rows are cells.
fn decide_orientation(
    h: &Header,
    n_cells: usize,
    n_genes: usize,
    forced: Option<Orientation>,
) -> Result<bool> {
    let (r, c) = (h.rows as usize, h.cols as usize);
    let genes_by_cells = r == n_genes && c == n_cells;
    let cells_by_genes = r == n_cells && c == n_genes;
    let what =
        format!("the matrix is {r} x {c} but there are {n_genes} genes and {n_cells} barcodes");
    match forced {
        Some(Orientation::GenesByCells) if genes_by_cells => Ok(false),
        Some(Orientation::CellsByGenes) if cells_by_genes => Ok(true),
        Some(o) => bail!("{what} (expected {} with {o:?})", if o == Orientation::GenesByCells { "genes x cells" } else { "cells x genes" }),
        None => match (genes_by_cells, cells_by_genes) {
            (true, false) => Ok(false),
            (false, true) => Ok(true),
            (true, true) => bail!("{what}: the orientation is ambiguous (say --genes-as-rows for the 10x layout or --cells-as-rows)"),
            (false, false) => bail!("{what} (expected genes x cells as 10x writes it, or cells x genes)"),
        },
    }
}

// ------------------------------------------------------------------ writer

/// Append the decimal digits of `v` to `out`.
#[inline]
pub(crate) fn push_uint(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Append a value: integers without a decimal point, others in the shortest form that
/// reads back to the same `f32`.
#[inline]
pub(crate) fn push_value(out: &mut Vec<u8>, v: f32) {
    if v >= 0.0 && v.fract() == 0.0 && v < 1e15 {
        push_uint(out, v as u64);
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Matrix entries per gzip member when writing (each member is compressed on its own thread).
const MEMBER_ENTRIES: u64 = 1 << 21;

/// `bytes` as one complete gzip member.
fn gz_member(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 3 + 64),
        flate2::Compression::new(1),
    );
    e.write_all(bytes).expect("writing to memory");
    e.finish().expect("writing to memory")
}

fn gz_writer(path: &Path) -> Result<flate2::write::GzEncoder<std::io::BufWriter<std::fs::File>>> {
    let f = std::fs::File::create(path).at(path)?;
    Ok(flate2::write::GzEncoder::new(
        std::io::BufWriter::with_capacity(BUF, f),
        flate2::Compression::new(1),
    ))
}

/// Write the three 10x files (gzipped, genes x cells) plus `obs.tsv` into `dir`.
pub fn write_mtx_files(dir: &Path, t: &CellsTable) -> Result<()> {
    use rayon::prelude::*;
    let integer = t.x.data.iter().all(|v| v.fract() == 0.0);
    let mpath = dir.join("matrix.mtx.gz");
    let mut w = std::io::BufWriter::with_capacity(BUF, std::fs::File::create(&mpath).at(&mpath)?);
    let mut head = Vec::new();
    let _ = writeln!(
        head,
        "%%MatrixMarket matrix coordinate {} general\n%metadata_json: {{\"software_version\": \"cellweave-{}\", \"values\": \"{}\"}}\n{} {} {}",
        if integer { "integer" } else { "real" },
        crate::VERSION,
        t.values.as_str(),
        t.n_genes(),
        t.n_cells(),
        t.x.nnz()
    );
    w.write_all(&gz_member(&head)).at(&mpath)?;
    // Entries in chunks of cells, each formatted and compressed on its own thread into one
    // gzip member (a multi-member gzip file, which zcat, Python and R read as one stream).
    let mut ranges = Vec::new();
    let mut start = 0;
    while start < t.n_cells() {
        let mut end = start + 1;
        while end < t.n_cells() && t.x.indptr[end] - t.x.indptr[start] < MEMBER_ENTRIES {
            end += 1;
        }
        ranges.push((start, end));
        start = end;
    }
    let per_round = 2 * rayon::current_num_threads();
    for round in ranges.chunks(per_round) {
        let parts: Vec<Vec<u8>> = round
            .par_iter()
            .map(|&(a, b)| {
                let mut buf = Vec::with_capacity(((t.x.indptr[b] - t.x.indptr[a]) * 16) as usize);
                for cell in a..b {
                    let (idx, val) = t.x.row(cell);
                    for (&g, &v) in idx.iter().zip(val) {
                        push_uint(&mut buf, g as u64 + 1);
                        buf.push(b' ');
                        push_uint(&mut buf, cell as u64 + 1);
                        buf.push(b' ');
                        push_value(&mut buf, v);
                        buf.push(b'\n');
                    }
                }
                gz_member(&buf)
            })
            .collect();
        for p in parts {
            w.write_all(&p).at(&mpath)?;
        }
    }
    w.flush().at(&mpath)?;

    let fpath = dir.join("features.tsv.gz");
    let mut w = gz_writer(&fpath)?;
    for (id, name) in t.gene_ids.iter().zip(&t.gene_names) {
        writeln!(w, "{id}\t{name}\tGene Expression").at(&fpath)?;
    }
    w.finish().at(&fpath)?.flush().at(&fpath)?;

    let bpath = dir.join("barcodes.tsv.gz");
    let mut w = gz_writer(&bpath)?;
    for id in &t.cell_ids {
        writeln!(w, "{id}").at(&bpath)?;
    }
    w.finish().at(&bpath)?.flush().at(&bpath)?;
    super::obs::write_obs_tsv(&dir.join("obs.tsv"), t)
}

/// Write a cells table as a 10x MTX folder, atomically.
pub fn write_mtx_dir(path: &Path, t: &CellsTable) -> Result<()> {
    crate::io::atomic::write_dir(path, |tmp| write_mtx_files(tmp, t))
}

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
        let d = folder("%%MatrixMarket matrix coordinate integer general\n% comment\n3 2 4\n3 2 5\n1 1 1\n2 2 7\n1 2 2.5\n");
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
        assert!(
            e.contains("matrix.mtx.gz") && e.contains("line 4") && e.contains("'entries'"),
            "{e}"
        );
        let e = err("%%MatrixMarket matrix coordinate integer general\n3 2 3\n1 1 1\n");
        assert!(
            e.contains("after 1 of the 3 entries") && e.contains("truncated"),
            "{e}"
        );
        let e = err("%%MatrixMarket matrix coordinate integer general\n3 2 1\n1 1 -4\n");
        assert!(e.contains("field 'values'") && e.contains("line 3"), "{e}");
        let e = err("%%MatrixMarket matrix coordinate real general\n3 2 1\n1 1 nan\n");
        assert!(e.contains("field 'values'"), "{e}");
        let e = err("%%MatrixMarket matrix coordinate integer general\n3 2 1\n4 1 1\n");
        assert!(e.contains("outside the 3 x 2"), "{e}");
        let e = err("%%MatrixMarket matrix coordinate integer general\n4 2 1\n1 1 1\n");
        assert!(e.contains("4 x 2") && e.contains("3 genes"), "{e}");
        let e = err("hello\n");
        assert!(
            e.contains("not a MatrixMarket file") && e.contains("line 1"),
            "{e}"
        );
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
