//! AnnData dataframes (`obs`, `var`): index, categoricals, plain and nullable columns.

use super::*;

/// An AnnData dataframe: its index and columns, in `column-order`.
pub struct DataFrame {
    /// The index (cell or gene names).
    pub index: Vec<String>,
    /// The columns, each as long as the index.
    pub columns: Vec<Named>,
}

fn read_categorical(g: &Group, elem: &str) -> Result<Categorical> {
    let cats = g
        .dataset("categories")
        .map_err(|_| elem_err(elem, "categorical without 'categories'"))?;
    let categories = read_strings(&cats).map_err(|e| e.field(format!("{elem}/categories")))?;
    let codes = g
        .dataset("codes")
        .map_err(|_| elem_err(elem, "categorical without 'codes'"))?;
    codes_to_categorical(
        codes.read_raw::<i64>()?,
        categories,
        &format!("{elem}/codes"),
    )
}

fn codes_to_categorical(
    codes: Vec<i64>,
    categories: Vec<String>,
    elem: &str,
) -> Result<Categorical> {
    let n = categories.len() as i64;
    let mut out = Vec::with_capacity(codes.len());
    for (i, c) in codes.into_iter().enumerate() {
        out.push(match c {
            -1 => Categorical::MISSING,
            c if (0..n).contains(&c) => c as u32,
            c => {
                return Err(elem_err(
                    elem,
                    format!("code {c} at row {i} is outside the {n} categories"),
                ))
            }
        });
    }
    Ok(Categorical {
        codes: out,
        categories,
    })
}

fn read_nullable(g: &Group, elem: &str, enc: &str) -> Result<Column> {
    let values = g
        .dataset("values")
        .map_err(|_| elem_err(elem, format!("{enc} without 'values'")))?;
    let mask = match g.dataset("mask") {
        Ok(m) => m.read_raw::<bool>()?,
        Err(_) => vec![false; values.size()],
    };
    let col = read_column(&values).map_err(|e| e.field(format!("{elem}/values")))?;
    if mask.len() != col.len() {
        return Err(elem_err(
            elem,
            format!("mask has {} entries for {} values", mask.len(), col.len()),
        ));
    }
    Ok(match col {
        Column::I64(v) => Column::I64(masked(v, &mask, None)),
        Column::Bool(v) => Column::Bool(masked(v, &mask, None)),
        Column::Str(v) => Column::Str(masked(v, &mask, None)),
        Column::F64(v) => Column::F64(masked(v, &mask, f64::NAN)),
        Column::F32(v) => Column::F32(masked(v, &mask, f32::NAN)),
        other => other,
    })
}

/// `v` with `missing` where `mask` is set.
fn masked<T: Clone>(v: Vec<T>, mask: &[bool], missing: T) -> Vec<T> {
    v.into_iter()
        .zip(mask)
        .map(|(x, &m)| if m { missing.clone() } else { x })
        .collect()
}

/// Read the dataframe at `elem` (`obs`, `var`, `raw/var`).
pub fn read_dataframe(file: &File, elem: &str) -> Result<DataFrame> {
    let g = file
        .group(elem)
        .map_err(|_| elem_err(elem, "missing (expected an AnnData dataframe group)"))?;
    let index_name = attr_string(&g, "_index").unwrap_or_else(|| "_index".to_string());
    let index_ds = g
        .dataset(&index_name)
        .map_err(|_| elem_err(&format!("{elem}/{index_name}"), "index dataset is missing"))?;
    let index = read_strings(&index_ds).map_err(|e| e.field(format!("{elem}/{index_name}")))?;
    let order = match attr_strings(&g, "column-order")? {
        Some(o) => o,
        None => g
            .member_names()?
            .into_iter()
            .filter(|n| n != &index_name && n != "__categories")
            .collect(),
    };
    let old_cats = g.group("__categories").ok();
    let mut columns = Vec::new();
    for name in order {
        let path = format!("{elem}/{name}");
        let col = match kind_of(&g, &name) {
            Some(LocationType::Group) => {
                let cg = g.group(&name)?;
                let enc = attr_string(&cg, "encoding-type").unwrap_or_default();
                match enc.as_str() {
                    "categorical" => Column::Cat(read_categorical(&cg, &path)?),
                    "nullable-integer" | "nullable-boolean" | "nullable-string-array" => {
                        read_nullable(&cg, &path, &enc)?
                    }
                    other => {
                        crate::info!("warning: skipping {path}: unsupported encoding '{other}'");
                        continue;
                    }
                }
            }
            Some(LocationType::Dataset) => {
                let ds = g.dataset(&name)?;
                match old_cats.as_ref().and_then(|c| c.dataset(&name).ok()) {
                    // Pre-0.7 anndata: codes here, categories under __categories/.
                    Some(cats) => {
                        let categories = read_strings(&cats)?;
                        Column::Cat(codes_to_categorical(
                            ds.read_raw::<i64>()?,
                            categories,
                            &path,
                        )?)
                    }
                    None => read_column(&ds).map_err(|e| e.field(path.clone()))?,
                }
            }
            _ => return Err(elem_err(&path, "listed in column-order but missing")),
        };
        if col.len() != index.len() {
            return Err(elem_err(
                &path,
                format!(
                    "{} values but the index has {} entries",
                    col.len(),
                    index.len()
                ),
            ));
        }
        columns.push((name, col));
    }
    Ok(DataFrame { index, columns })
}

/// Gene ids and names from a var dataframe: `gene_ids` (or a similar id column) gives the
/// ids and the index the names; a symbol column gives the names and the index the ids;
/// otherwise both are the index.
pub fn genes_from_var(var: &DataFrame) -> (Vec<String>, Vec<String>) {
    let text = |c: &Column| -> Vec<Option<String>> {
        (0..c.len())
            .map(|i| c.text(i).filter(|s| !s.is_empty()))
            .collect()
    };
    let find = |names: &[&str]| {
        var.columns
            .iter()
            .find(|(n, _)| names.contains(&n.as_str()))
            .map(|(_, c)| text(c))
    };
    let fill = |v: Vec<Option<String>>| -> Vec<String> {
        v.into_iter()
            .zip(&var.index)
            .map(|(s, i)| s.unwrap_or_else(|| i.clone()))
            .collect()
    };
    if let Some(ids) = find(&[
        "gene_ids",
        "gene_id",
        "feature_id",
        "ensembl_id",
        "gene_ids-0",
    ]) {
        return (fill(ids), var.index.clone());
    }
    if let Some(names) = find(&[
        "gene_symbols",
        "gene_symbol",
        "gene_name",
        "gene_names",
        "feature_name",
        "symbol",
    ]) {
        return (var.index.clone(), fill(names));
    }
    (var.index.clone(), var.index.clone())
}
