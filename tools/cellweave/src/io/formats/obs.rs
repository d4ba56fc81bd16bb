//! Per-cell metadata from delimited text (`--obs obs.tsv`): reading, type inference and
//! the join onto a cells table by cell id. Also the small text helpers the other text
//! readers share (gzip-transparent opening, splitting a CSV/TSV record).

use crate::contract::{rows_of, Categorical, CellsTable, Column, Named};
use crate::{Error, Result, ResultExt};
use flate2::read::MultiGzDecoder;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

/// Buffer size for text readers.
pub(crate) const BUF: usize = 1 << 20;

/// True when the file starts with the gzip magic bytes.
pub(crate) fn is_gzip(path: &Path) -> Result<bool> {
    let mut f = File::open(path).at(path)?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic).at(path)?;
    Ok(n == 2 && magic == [0x1f, 0x8b])
}

/// Open a text file, decompressing gzip (by content, not by name) transparently.
pub(crate) fn open_text(path: &Path) -> Result<Box<dyn BufRead + Send>> {
    if !path.exists() {
        return Err(Error::new("no such file").file(path));
    }
    let gz = is_gzip(path)?;
    let f = File::open(path).at(path)?;
    Ok(if gz {
        Box::new(BufReader::with_capacity(
            BUF,
            MultiGzDecoder::new(BufReader::with_capacity(BUF, f)),
        ))
    } else {
        Box::new(BufReader::with_capacity(BUF, f))
    })
}

/// Read all lines of a (possibly gzipped) text file; `\r\n` endings are accepted.
/// Errors (including a truncated gzip stream) name the file and the line reached.
pub(crate) fn read_lines(path: &Path) -> Result<Vec<String>> {
    let mut r = open_text(path)?;
    let mut out = Vec::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = r.read_until(b'\n', &mut buf).map_err(|e| {
            Error::new(format!(
                "line {}: unreadable ({e}; truncated or corrupt file?)",
                out.len() + 1
            ))
            .file(path)
        })?;
        if n == 0 {
            break;
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        let s = String::from_utf8(std::mem::take(&mut buf)).map_err(|_| {
            Error::new(format!("line {}: not valid UTF-8 text", out.len() + 1)).file(path)
        })?;
        out.push(s);
    }
    Ok(out)
}

/// The field delimiter of a delimited text file: `,` for `.csv[.gz]`, otherwise tab.
pub(crate) fn delimiter_of(path: &Path) -> u8 {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".csv") {
        b','
    } else {
        b'\t'
    }
}

/// Split one record on `delim`, honouring double quotes (`"a,b"`, `""` for a quote).
pub(crate) fn split_record(line: &str, delim: u8) -> Vec<String> {
    let delim = delim as char;
    if !line.contains('"') {
        return line.split(delim).map(str::to_string).collect();
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                cur.push(c);
            }
        } else if c == '"' {
            quoted = true;
        } else if c == delim {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

/// Values read as missing in text metadata.
pub fn is_missing(s: &str) -> bool {
    matches!(
        s,
        "" | "NA" | "NaN" | "nan" | "N/A" | "null" | "NULL" | "None"
    )
}

/// Infer a column's type from its text values: integers, then floats, else a categorical.
/// Missing values (see [`is_missing`]) are nulls (NaN for floats).
pub fn infer_column(values: &[&str]) -> Column {
    let present = || values.iter().filter(|v| !is_missing(v));
    let any = present().next().is_some();
    if any && present().all(|v| v.parse::<i64>().is_ok()) {
        return Column::I64(
            values
                .iter()
                .map(|v| if is_missing(v) { None } else { v.parse().ok() })
                .collect(),
        );
    }
    if any && present().all(|v| v.parse::<f64>().is_ok()) {
        return Column::F64(
            values
                .iter()
                .map(|v| {
                    if is_missing(v) {
                        f64::NAN
                    } else {
                        v.parse().unwrap()
                    }
                })
                .collect(),
        );
    }
    let texts: Vec<&str> = values
        .iter()
        .map(|v| if is_missing(v) { "" } else { v })
        .collect();
    let mut cat = Categorical::from_strings(&texts);
    for (i, v) in values.iter().enumerate() {
        if is_missing(v) {
            cat.codes[i] = Categorical::MISSING;
        }
    }
    cat.compact();
    Column::Cat(cat)
}

/// A per-cell metadata table read from text: cell ids (first column) and named columns.
#[derive(Debug, Clone)]
pub struct ObsTable {
    /// Cell ids, in file order.
    pub cell_ids: Vec<String>,
    /// The other columns, typed.
    pub columns: Vec<Named>,
}

/// Read a TSV/CSV (optionally gzipped) whose first column is the cell id and whose first
/// row names the columns. Column types are inferred (see [`infer_column`]). The ids must
/// be unique (see [`read_obs_rows`] for a table joined by position).
pub fn read_obs(path: &Path) -> Result<ObsTable> {
    let t = read_obs_rows(path)?;
    crate::contract::check_unique(&t.cell_ids).map_err(|e| e.field("cell_id").file(path))?;
    Ok(t)
}

/// Each header name's position among `names` (the header's columns from column `first`,
/// counted from 0, on); an error naming `path` for an empty or a repeated name.
pub(crate) fn header_index<'a>(
    names: &'a [String],
    first: usize,
    path: &Path,
) -> Result<HashMap<&'a str, usize>> {
    let mut seen = HashMap::new();
    for (i, n) in names.iter().enumerate() {
        if n.is_empty() {
            return Err(Error::new(format!(
                "column {} has no name in the header",
                i + first + 1
            ))
            .field("header")
            .file(path));
        }
        if seen.insert(n.as_str(), i).is_some() {
            return Err(Error::new("column name appears twice in the header")
                .field(n.clone())
                .file(path));
        }
    }
    Ok(seen)
}
/// [`read_obs`] without the uniqueness check: the rows as they are, ids possibly repeated
/// (plates that reuse well barcodes), for [`join_obs`] to match by id or by position.
pub fn read_obs_rows(path: &Path) -> Result<ObsTable> {
    let delim = delimiter_of(path);
    let lines = read_lines(path).map_err(|e| e.field("obs"))?;
    let mut rows = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = rows.next().ok_or_else(|| {
        Error::new("empty file (expected a header row)")
            .field("header")
            .file(path)
    })?;
    let mut header = split_record(header, delim);
    // R's write.table omits the header's first cell: accept a header one shorter than the rows.
    if let Some((_, first)) = rows.clone().next() {
        if split_record(first, delim).len() == header.len() + 1 {
            header.insert(0, "cell_id".to_string());
        }
    }
    if header.len() < 2 {
        return Err(Error::new(format!(
            "the header has {} column(s) (expected the cell id column then at least one metadata column, {} separated)",
            header.len(),
            if delim == b',' { "comma" } else { "tab" }
        ))
        .field("header").file(path));
    }
    let names: Vec<String> = header[1..].iter().map(|s| s.trim().to_string()).collect();
    header_index(&names, 1, path)?;
    let mut cell_ids = Vec::new();
    let mut cells: Vec<Vec<String>> = vec![Vec::new(); names.len()];
    for (ln, line) in rows {
        let mut f = split_record(line, delim);
        if f.len() != names.len() + 1 {
            return Err(Error::new(format!(
                "line {}: {} fields (expected {}: the cell id and {} column(s) named in the header)",
                ln + 1,
                f.len(),
                names.len() + 1,
                names.len()
            ))
            .field("columns").file(path));
        }
        let id = std::mem::take(&mut f[0]);
        if id.is_empty() {
            return Err(Error::new(format!("line {}: empty cell id", ln + 1))
                .field("cell_id")
                .file(path));
        }
        cell_ids.push(id);
        for (c, v) in f.into_iter().skip(1).enumerate() {
            cells[c].push(v);
        }
    }
    if cell_ids.is_empty() {
        return Err(
            Error::new("no rows after the header (expected one row per cell)")
                .field("cell_id")
                .file(path),
        );
    }
    let columns = names
        .into_iter()
        .zip(cells)
        .map(|(n, vals)| {
            let refs: Vec<&str> = vals.iter().map(String::as_str).collect();
            (n, infer_column(&refs))
        })
        .collect();
    Ok(ObsTable { cell_ids, columns })
}

/// A column of `n` missing values of the same type as `like`.
pub fn missing_like(like: &Column, n: usize) -> Column {
    match like {
        Column::Cat(c) => Column::Cat(Categorical {
            codes: vec![Categorical::MISSING; n],
            categories: c.categories.clone(),
        }),
        Column::Str(_) => Column::Str(vec![None; n]),
        Column::F64(_) => Column::F64(vec![f64::NAN; n]),
        Column::F32(_) => Column::F32(vec![f32::NAN; n]),
        Column::I64(_) => Column::I64(vec![None; n]),
        Column::U32(_) => Column::I64(vec![None; n]),
        Column::Bool(_) => Column::Bool(vec![None; n]),
    }
}

/// Pick rows of `col` by optional index (None = missing value).
pub fn take_optional(col: &Column, rows: &[Option<usize>]) -> Column {
    match col {
        Column::Cat(c) => Column::Cat(Categorical {
            codes: rows
                .iter()
                .map(|r| r.map(|r| c.codes[r]).unwrap_or(Categorical::MISSING))
                .collect(),
            categories: c.categories.clone(),
        }),
        Column::Str(v) => Column::Str(rows.iter().map(|r| r.and_then(|r| v[r].clone())).collect()),
        Column::F64(v) => Column::F64(
            rows.iter()
                .map(|r| r.map(|r| v[r]).unwrap_or(f64::NAN))
                .collect(),
        ),
        Column::F32(v) => Column::F32(
            rows.iter()
                .map(|r| r.map(|r| v[r]).unwrap_or(f32::NAN))
                .collect(),
        ),
        Column::I64(v) => Column::I64(rows.iter().map(|r| r.and_then(|r| v[r])).collect()),
        Column::U32(v) => Column::I64(rows.iter().map(|r| r.map(|r| v[r] as i64)).collect()),
        Column::Bool(v) => Column::Bool(rows.iter().map(|r| r.and_then(|r| v[r])).collect()),
    }
}

/// How the rows of an obs table are matched to the cells (`--obs-join`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ObsJoin {
    /// By id when the obs ids are unique; when they repeat, by position if they are the
    /// cells' own ids in the cells' order (else an error).
    #[default]
    Auto,
    /// By cell id: every cell needs a row, rows for other cells are ignored, ids unique.
    Id,
    /// Row i describes cell i: the same number of rows as cells, and row i's id must be
    /// cell i's id (an error names the first row that differs).
    Position,
}

/// Join `obs` onto the cells, matched as `how` says (see [`ObsJoin`]). By id, every cell
/// must have a row (else an error saying how many do not, with an example) and rows for
/// other cells are ignored. A column that already exists on the cells table is replaced.
/// Returns the number of ignored rows.
pub fn join_obs(
    cells: &mut CellsTable,
    obs: &ObsTable,
    path: &Path,
    how: ObsJoin,
) -> Result<usize> {
    let repeats = crate::contract::check_unique(&obs.cell_ids).is_err();
    let by_position = match how {
        ObsJoin::Position => true,
        ObsJoin::Id => false,
        ObsJoin::Auto => repeats,
    };
    if !by_position {
        if let Err(e) = crate::contract::check_unique(&obs.cell_ids) {
            let msg = e.to_string();
            let what = msg.split(" (").next().unwrap_or(&msg);
            return Err(Error::new(format!(
                "{what} here: ids that repeat cannot be matched by id (if row i describes cell i of the matrix, use --obs-join position)"
            ))
            .field("cell_id")
            .file(path));
        }
        return join_columns(
            &cells.cell_ids,
            "cell ids of the expression data",
            &mut cells.obs,
            obs,
            path,
        );
    }
    let n = cells.n_cells();
    let why = if repeats {
        " (its ids repeat, so they cannot be matched by id)"
    } else {
        " (its ids are unique: --obs-join id matches them in any order)"
    };
    if obs.cell_ids.len() != n {
        return Err(Error::new(format!(
            "{} rows for {n} cells: joined by position, row i describes cell i{why}",
            obs.cell_ids.len(),
        ))
        .field("cell_id")
        .file(path));
    }
    if let Some(i) = (0..n).find(|&i| obs.cell_ids[i] != cells.cell_ids[i]) {
        return Err(Error::new(format!(
            "row {} has id '{}' where cell {} of the matrix is '{}': joined by position, the ids must be the matrix's in its order{why}",
            i + 1,
            obs.cell_ids[i],
            i + 1,
            cells.cell_ids[i],
        ))
        .field("cell_id")
        .file(path));
    }
    for (name, col) in &obs.columns {
        match cells.obs.iter_mut().find(|(m, _)| m == name) {
            Some(slot) => slot.1 = col.clone(),
            None => cells.obs.push((name.clone(), col.clone())),
        }
    }
    Ok(0)
}

/// Join the columns of `obs` onto `columns`, whose rows are the cells `ids`, matching by
/// cell id: a column of the same name is replaced, others are appended. Every id must have a
/// row of `obs`, else an error (`what` names the ids in it: "cells of the embedding").
/// Returns the number of `obs` rows no id matched.
pub fn join_columns(
    ids: &[String],
    what: &str,
    columns: &mut Vec<(String, Column)>,
    obs: &ObsTable,
    path: &Path,
) -> Result<usize> {
    let rows = rows_of(ids, &obs.cell_ids).map_err(|(missing, first)| {
        Error::new(format!(
            "{missing} of {} {what} have no row here (first missing: '{first}')",
            ids.len()
        ))
        .field("cell_id")
        .file(path)
    })?;
    let rows: Vec<Option<usize>> = rows.into_iter().map(Some).collect();
    let used: std::collections::HashSet<usize> = rows.iter().flatten().copied().collect();
    for (name, col) in &obs.columns {
        let mut joined = take_optional(col, &rows);
        if let Column::Cat(c) = &mut joined {
            c.compact();
        }
        match columns.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = joined,
            None => columns.push((name.clone(), joined)),
        }
    }
    Ok(obs.cell_ids.len() - used.len())
}

/// Write the per-cell columns (`cell_id`, `batch`, then the others) as TSV; missing = `NA`.
pub fn write_obs_tsv(path: &Path, t: &CellsTable) -> Result<()> {
    let text = |values: &mut dyn Iterator<Item = &str>, field: &str| {
        crate::io::check_text_fields(values, field).at(path)
    };
    text(&mut t.cell_ids.iter().map(String::as_str), "cell_id")?;
    text(&mut t.batch.categories.iter().map(String::as_str), "batch")?;
    for (name, c) in &t.obs {
        text(&mut std::iter::once(name.as_str()), name)?;
        let values: Vec<String> = (0..c.len()).filter_map(|i| c.text(i)).collect();
        text(&mut values.iter().map(String::as_str), name)?;
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).at(path)?);
    let mut head = vec!["cell_id".to_string(), "batch".to_string()];
    head.extend(t.obs.iter().map(|(n, _)| n.clone()));
    writeln!(f, "{}", head.join("\t")).at(path)?;
    let mut buf = Vec::new();
    for i in 0..t.n_cells() {
        buf.clear();
        buf.extend_from_slice(t.cell_ids[i].as_bytes());
        buf.push(b'\t');
        buf.extend_from_slice(t.batch.get(i).unwrap_or("NA").as_bytes());
        for (_, c) in &t.obs {
            buf.push(b'\t');
            buf.extend_from_slice(c.text(i).unwrap_or_else(|| "NA".into()).as_bytes());
        }
        buf.push(b'\n');
        f.write_all(&buf).at(path)?;
    }
    f.flush().at(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_quoted_records() {
        assert_eq!(split_record("a,b,c", b','), vec!["a", "b", "c"]);
        assert_eq!(
            split_record("\"a,1\",b,\"say \"\"hi\"\"\"", b','),
            vec!["a,1", "b", "say \"hi\""]
        );
        assert_eq!(split_record("a\t\tc", b'\t'), vec!["a", "", "c"]);
    }

    #[test]
    fn infers_types_and_missing_values() {
        match infer_column(&["1", "NA", "3"]) {
            Column::I64(v) => assert_eq!(v, vec![Some(1), None, Some(3)]),
            other => panic!("{other:?}"),
        }
        match infer_column(&["1.5", "", "3"]) {
            Column::F64(v) => {
                assert_eq!(v[0], 1.5);
                assert!(v[1].is_nan());
            }
            other => panic!("{other:?}"),
        }
        match infer_column(&["B", "A", "NA", "B"]) {
            Column::Cat(c) => {
                assert_eq!(c.categories, vec!["B", "A"]);
                assert_eq!(c.codes, vec![0, 1, Categorical::MISSING, 0]);
            }
            other => panic!("{other:?}"),
        }
        // All missing: a categorical with no categories.
        match infer_column(&["NA", ""]) {
            Column::Cat(c) => assert!(c.categories.is_empty()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_and_joins_obs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("obs.tsv");
        std::fs::write(&p, "cell_id\tbatch\tn\nc1\tx\t1\nc2\ty\t2\nc3\tx\tNA\n").unwrap();
        let obs = read_obs(&p).unwrap();
        assert_eq!(obs.cell_ids, vec!["c1", "c2", "c3"]);
        let mut cells = CellsTable {
            cell_ids: vec!["c3".into(), "c1".into()],
            batch: Categorical::constant("b", 2),
            obs: vec![],
            gene_ids: vec![],
            gene_names: vec![],
            x: crate::contract::Csr {
                n_cols: 0,
                indptr: vec![0, 0, 0],
                indices: vec![],
                data: vec![],
            },
            values: crate::contract::ValueKind::Counts,
            provenance: vec![],
        };
        let ignored = join_obs(&mut cells, &obs, &p, ObsJoin::Auto).unwrap();
        assert_eq!(ignored, 1);
        assert_eq!(cells.column("n").unwrap(), Column::I64(vec![None, Some(1)]));
        assert_eq!(cells.column("batch").unwrap().text(0).as_deref(), Some("b"));
        let b = cells.obs.iter().find(|(n, _)| n == "batch").unwrap();
        assert_eq!(b.1.text(0).as_deref(), Some("x"));
        cells.cell_ids[0] = "zz".into();
        let e = join_obs(&mut cells, &obs, &p, ObsJoin::Auto)
            .unwrap_err()
            .to_string();
        crate::assert_has(&e, &["1 of 2 cell ids", "'zz'", "obs.tsv"]);
    }

    #[test]
    fn bad_obs_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("obs.csv");
        std::fs::write(&p, "cell_id,a\nc1,1\nc2,1,2\n").unwrap();
        let e = read_obs(&p).unwrap_err().to_string();
        crate::assert_has(&e, &["line 3", "obs.csv"]);
        // R's write.table header (no corner cell) is accepted.
        std::fs::write(&p, "a,b\nc1,1,x\n").unwrap();
        let o = read_obs(&p).unwrap();
        assert_eq!(o.columns.len(), 2);
        std::fs::write(&p, "cell_id,a\nc1,1\nc1,2\n").unwrap();
        let e = read_obs(&p).unwrap_err().to_string();
        assert!(e.contains("duplicate"), "{e}");
    }
}
