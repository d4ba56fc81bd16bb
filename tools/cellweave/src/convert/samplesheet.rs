//! Samplesheets (`cellweave-import --samplesheet sheet.csv`): one row per sample, as
//! nf-core pipelines and Cell Ranger multi users keep them. Columns: `sample` (the batch
//! name), `path` (the sample's matrix: a Cell Ranger sample or `outs/` folder, a 10x folder
//! or `.h5`, an `.h5ad`, ...), optionally `obs` (a per-cell metadata file of that sample,
//! joined by its barcodes), and any other column, whose value becomes a per-cell column of
//! every cell of the sample (e.g. `condition`, `donor`). Relative paths are read from the
//! samplesheet's folder.

use crate::io::formats::obs::{delimiter_of, header_index, read_lines, split_record};
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One row of a samplesheet.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name (its batch).
    pub name: String,
    /// Its matrix or Cell Ranger folder.
    pub path: PathBuf,
    /// Its per-cell metadata file, if any.
    pub obs: Option<PathBuf>,
    /// The other columns: (name, this sample's value).
    pub columns: Vec<(String, String)>,
}

/// The column names a samplesheet must have.
const REQUIRED: [&str; 2] = ["sample", "path"];

/// Read a samplesheet (CSV by the `.csv` extension, else tab-separated; gzip allowed).
/// Errors are one line naming the sheet, the column and the line.
pub fn read_samplesheet(sheet: &Path) -> Result<Vec<Sample>> {
    let delim = delimiter_of(sheet);
    let lines = read_lines(sheet).map_err(|e| e.field("samplesheet"))?;
    let mut rows = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    let (_, header) = rows.next().ok_or_else(|| {
        Error::new("empty samplesheet (expected a header row: sample,path[,obs,...])")
            .field("header")
            .file(sheet)
    })?;
    let header: Vec<String> = split_record(header, delim)
        .into_iter()
        .map(|h| h.trim().to_string())
        .collect();
    for need in REQUIRED {
        if !header.iter().any(|h| h == need) {
            return Err(Error::new(format!(
                "no '{need}' column (header: {}; expected sample,path[,obs] and any per-sample columns, {} separated)",
                header.join(", "),
                if delim == b',' { "comma" } else { "tab" }
            ))
            .field(need)
            .file(sheet));
        }
    }
    let seen = header_index(&header, 0, sheet)?;
    let base = sheet.parent().unwrap_or(Path::new("."));
    let mut samples: Vec<Sample> = Vec::new();
    let mut lines_of: HashMap<String, usize> = HashMap::new();
    for (ln, line) in rows {
        let ln = ln + 1;
        let f: Vec<String> = split_record(line, delim)
            .into_iter()
            .map(|v| v.trim().to_string())
            .collect();
        if f.len() != header.len() {
            return Err(Error::new(format!(
                "line {ln}: {} fields (expected {}, as in the header)",
                f.len(),
                header.len()
            ))
            .field("columns")
            .file(sheet));
        }
        let get = |c: &str| f[seen[c]].as_str();
        let name = get("sample").to_string();
        if name.is_empty() {
            return Err(Error::new(format!("line {ln}: empty sample name"))
                .field("sample")
                .file(sheet));
        }
        if let Some(first) = lines_of.insert(name.clone(), ln) {
            return Err(Error::new(format!(
                "line {ln}: sample '{name}' again (first on line {first}; each sample is one row, its name the batch)"
            ))
            .field("sample")
            .file(sheet));
        }
        let path = locate(base, get("path"), ln, "path", sheet)?;
        let obs = match seen.get("obs").map(|&i| f[i].as_str()) {
            Some(o) if !o.is_empty() => Some(locate(base, o, ln, "obs", sheet)?),
            _ => None,
        };
        let columns = header
            .iter()
            .zip(&f)
            .filter(|(h, _)| !matches!(h.as_str(), "sample" | "path" | "obs"))
            .map(|(h, v)| (h.clone(), v.clone()))
            .collect();
        samples.push(Sample {
            name,
            path,
            obs,
            columns,
        });
    }
    if samples.is_empty() {
        return Err(
            Error::new("no samples after the header (expected one row per sample)")
                .field("sample")
                .file(sheet),
        );
    }
    Ok(samples)
}

/// A path of the sheet: relative ones from the sheet's folder; it must exist.
fn locate(base: &Path, value: &str, ln: usize, column: &str, sheet: &Path) -> Result<PathBuf> {
    if value.is_empty() {
        return Err(Error::new(format!("line {ln}: empty {column}"))
            .field(column)
            .file(sheet));
    }
    let p = Path::new(value);
    let p = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    if !p.exists() {
        return Err(Error::new(format!(
            "line {ln}: no such file or folder '{}'{}",
            p.display(),
            if Path::new(value).is_absolute() {
                String::new()
            } else {
                format!(
                    " (relative paths are read from the samplesheet's folder {})",
                    base.display()
                )
            }
        ))
        .field(column)
        .file(sheet));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rows_and_names_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/outs")).unwrap();
        std::fs::write(dir.path().join("b.h5ad"), "").unwrap();
        std::fs::write(dir.path().join("b_obs.tsv"), "").unwrap();
        let sheet = dir.path().join("sheet.csv");
        std::fs::write(
            &sheet,
            "sample,path,obs,condition\nA,a,,ctrl\n\"B\",b.h5ad,b_obs.tsv,stim\n",
        )
        .unwrap();
        let s = read_samplesheet(&sheet).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "A");
        assert_eq!(s[0].path, dir.path().join("a"));
        assert_eq!(s[0].obs, None);
        assert_eq!(s[1].obs, Some(dir.path().join("b_obs.tsv")));
        assert_eq!(s[1].columns, vec![("condition".into(), "stim".into())]);

        let bad = |text: &str, needles: &[&str]| {
            std::fs::write(&sheet, text).unwrap();
            let e = read_samplesheet(&sheet).unwrap_err().to_string();
            assert!(e.contains("sheet.csv"), "{e}");
            for n in needles {
                assert!(e.contains(n), "no '{n}' in: {e}");
            }
        };
        bad(
            "sample,fastq_1\nA,a\n",
            &["field 'path'", "no 'path' column", "sample, fastq_1"],
        );
        bad(
            "sample,path\nA,a\nB,missing\n",
            &["field 'path'", "line 3", "missing", "samplesheet's folder"],
        );
        bad(
            "sample,path\nA,a\nA,b.h5ad\n",
            &["field 'sample'", "line 3", "first on line 2"],
        );
        bad("sample,path\nA\n", &["field 'columns'", "line 2"]);
        bad(
            "sample,path,obs\nA,a,nope.tsv\n",
            &["field 'obs'", "nope.tsv"],
        );
        bad("sample,path\n", &["field 'sample'", "no samples"]);
    }
}
