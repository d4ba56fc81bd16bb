//! The MatrixMarket parser: the banner, a hand-written integer scanner, entries into CSR.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Field {
    Integer,
    Real,
    Pattern,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Header {
    rows: u64,
    cols: u64,
    nnz: u64,
    field: Field,
}

pub(super) fn parse_banner(line: &str) -> std::result::Result<Field, String> {
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
pub(super) struct Coo {
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

pub(super) struct Scan<'a> {
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
    (|| -> Result<Csr> {
        let file_len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let gz = super::super::obs::is_gzip(path)?;
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
                if h.field == Field::Integer && v.fract() != 0.0 {
                    return Err(err_at(
                        line,
                        format!(
                            "value {v} is not an integer (the header line declares integer values)"
                        ),
                    )
                    .field("values"));
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
    })()
    .map_err(|e| e.file(path))
}

/// True when the matrix rows are cells.
pub(super) fn decide_orientation(
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
