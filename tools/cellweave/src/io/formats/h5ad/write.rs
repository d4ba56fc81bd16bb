//! Writing an `.h5ad`: dataframes, CSR matrices, dense arrays and `uns` with the
//! `encoding-type` / `encoding-version` attributes anndata expects.

use super::*;

fn vlen(s: &str) -> Result<VarLenUnicode> {
    VarLenUnicode::from_str(s)
        .map_err(|_| Error::new(format!("text '{s}' cannot be stored (contains a NUL byte)")))
}

fn set_attr_str(loc: &Location, name: &str, value: &str) -> Result<()> {
    loc.new_attr::<VarLenUnicode>()
        .shape(())
        .create(name)?
        .write_scalar(&vlen(value)?)?;
    Ok(())
}

/// Text as HDF5 variable-length strings.
fn vlens(values: &[String]) -> Result<Vec<VarLenUnicode>> {
    values.iter().map(|s| vlen(s)).collect()
}

fn set_attr_strs(loc: &Location, name: &str, values: &[String]) -> Result<()> {
    let v = vlens(values)?;
    let a = loc
        .new_attr::<VarLenUnicode>()
        .shape(v.len())
        .create(name)?;
    if !v.is_empty() {
        a.write_raw(&v)?;
    }
    Ok(())
}

fn encode(loc: &Location, kind: &str, version: &str) -> Result<()> {
    set_attr_str(loc, "encoding-type", kind)?;
    set_attr_str(loc, "encoding-version", version)
}

fn dict(parent: &Group, name: &str) -> Result<Group> {
    let g = parent.create_group(name)?;
    encode(&g, "dict", "0.1.0")?;
    Ok(g)
}

/// A 1-D dataset `name` holding `data` (written only when there is something to write).
fn dataset<T: hdf5::H5Type>(g: &Group, name: &str, data: &[T]) -> Result<Dataset> {
    let ds = g.new_dataset::<T>().shape(data.len()).create(name)?;
    if !data.is_empty() {
        ds.write_raw(data)?;
    }
    Ok(ds)
}

fn write_array<T: hdf5::H5Type>(g: &Group, name: &str, data: &[T]) -> Result<Dataset> {
    let ds = dataset(g, name, data)?;
    encode(&ds, "array", "0.2.0")?;
    Ok(ds)
}

fn write_strings(g: &Group, name: &str, values: &[String]) -> Result<()> {
    let ds = dataset(g, name, &vlens(values)?)?;
    encode(&ds, "string-array", "0.2.0")
}

fn write_categorical(g: &Group, name: &str, c: &Categorical) -> Result<()> {
    let cg = g.create_group(name)?;
    encode(&cg, "categorical", "0.2.0")?;
    cg.new_attr::<bool>()
        .shape(())
        .create("ordered")?
        .write_scalar(&false)?;
    write_strings(&cg, "categories", &c.categories)?;
    let code = |k: u32| {
        if k == Categorical::MISSING {
            -1i64
        } else {
            k as i64
        }
    };
    let n = c.categories.len();
    if n < 128 {
        write_array(
            &cg,
            "codes",
            &c.codes.iter().map(|&k| code(k) as i8).collect::<Vec<_>>(),
        )?;
    } else if n < 32768 {
        write_array(
            &cg,
            "codes",
            &c.codes.iter().map(|&k| code(k) as i16).collect::<Vec<_>>(),
        )?;
    } else {
        write_array(
            &cg,
            "codes",
            &c.codes.iter().map(|&k| code(k) as i32).collect::<Vec<_>>(),
        )?;
    }
    Ok(())
}

fn write_nullable<T: hdf5::H5Type + Copy + Default>(
    g: &Group,
    name: &str,
    enc: &str,
    v: &[Option<T>],
) -> Result<()> {
    let cg = g.create_group(name)?;
    encode(&cg, enc, "0.1.0")?;
    let values: Vec<T> = v.iter().map(|x| x.unwrap_or_default()).collect();
    let mask: Vec<bool> = v.iter().map(Option::is_none).collect();
    dataset(&cg, "values", &values)?;
    dataset(&cg, "mask", &mask)?;
    Ok(())
}

fn write_column(g: &Group, name: &str, col: &Column, as_categorical: bool) -> Result<()> {
    match col {
        Column::Cat(c) => write_categorical(g, name, c),
        // Gene ids and other var text: plain string arrays, kept exactly.
        Column::Str(v) if v.iter().all(Option::is_some) && !as_categorical => write_strings(
            g,
            name,
            &v.iter()
                .map(|s| s.clone().unwrap_or_default())
                .collect::<Vec<_>>(),
        ),
        Column::Str(v) => {
            let mut c = Categorical::from_strings(
                &v.iter()
                    .map(|s| s.as_deref().unwrap_or(""))
                    .collect::<Vec<_>>(),
            );
            for (i, s) in v.iter().enumerate() {
                if s.is_none() {
                    c.codes[i] = Categorical::MISSING;
                }
            }
            c.compact();
            write_categorical(g, name, &c)
        }
        Column::F64(v) => write_array(g, name, v).map(|_| ()),
        Column::F32(v) => write_array(g, name, v).map(|_| ()),
        Column::U32(v) => write_array(g, name, v).map(|_| ()),
        Column::I64(v) if v.iter().all(Option::is_some) => {
            write_array(g, name, &v.iter().map(|x| x.unwrap()).collect::<Vec<_>>()).map(|_| ())
        }
        Column::I64(v) => write_nullable(g, name, "nullable-integer", v),
        Column::Bool(v) if v.iter().all(Option::is_some) => {
            write_array(g, name, &v.iter().map(|x| x.unwrap()).collect::<Vec<_>>()).map(|_| ())
        }
        Column::Bool(v) => write_nullable(g, name, "nullable-boolean", v),
    }
}

fn write_dataframe(
    parent: &Group,
    elem: &str,
    index_name: &str,
    index: &[String],
    columns: &[Named],
) -> Result<()> {
    let g = parent.create_group(elem)?;
    encode(&g, "dataframe", "0.2.0")?;
    set_attr_str(&g, "_index", index_name)?;
    let names: Vec<String> = columns.iter().map(|(n, _)| n.clone()).collect();
    set_attr_strs(&g, "column-order", &names)?;
    write_strings(&g, index_name, index)?;
    for (n, c) in columns {
        if n == index_name {
            return Err(
                Error::new(format!("column name clashes with the {elem} index name"))
                    .field(n.clone()),
            );
        }
        if n.contains('/') || n.is_empty() {
            return Err(
                Error::new("column names in .h5ad may not be empty or contain '/'")
                    .field(n.clone()),
            );
        }
        write_column(&g, n, c, elem == "obs").map_err(|e| e.field(format!("{elem}/{n}")))?;
    }
    Ok(())
}

fn write_csr(parent: &Group, name: &str, m: &Csr, n_rows: usize) -> Result<()> {
    let g = parent.create_group(name)?;
    encode(&g, "csr_matrix", "0.1.0")?;
    g.new_attr::<i64>()
        .shape(2)
        .create("shape")?
        .write_raw(&[n_rows as i64, m.n_cols as i64])?;
    let nnz = m.nnz();
    let ds = g.new_dataset::<f32>().shape(nnz).create("data")?;
    if nnz > 0 {
        ds.write_raw(&m.data)?;
    }
    // Positions as int32 (what anndata writes; HDF5 converts from u32 while writing).
    let ds = g.new_dataset::<i32>().shape(nnz).create("indices")?;
    if nnz > 0 {
        ds.as_writer().write_raw(&m.indices)?;
    }
    if nnz < i32::MAX as usize {
        g.new_dataset::<i32>()
            .shape(m.indptr.len())
            .create("indptr")?
            .as_writer()
            .write_raw(&m.indptr)?;
    } else {
        g.new_dataset::<i64>()
            .shape(m.indptr.len())
            .create("indptr")?
            .as_writer()
            .write_raw(&m.indptr)?;
    }
    Ok(())
}

/// Everything an `.h5ad` written by cellweave holds.
pub struct AnnData<'a> {
    /// The obs index.
    pub cell_ids: &'a [String],
    /// obs columns in order (batch first).
    pub obs: Vec<Named>,
    /// The `gene_ids` var column.
    pub gene_ids: &'a [String],
    /// The var index (made unique as anndata does).
    pub gene_names: &'a [String],
    /// var columns after `gene_ids` (e.g. scanpy's highly-variable-gene statistics).
    pub var: Vec<Named>,
    /// X (None: no X, e.g. an embedding-only export).
    pub x: Option<&'a Csr>,
    /// layers entries: name and a matrix shaped as X.
    pub layers: Vec<(String, &'a Csr)>,
    /// obsm entries: name (e.g. `X_claire`), dimension, row-major values.
    pub obsm: Vec<(String, usize, &'a [f32])>,
    /// varm entries: name (e.g. `PCs`), dimension, row-major values (genes x dimension).
    pub varm: Vec<(String, usize, &'a [f32])>,
    /// obsp entries: cells x cells sparse matrices (e.g. `connectivities`).
    pub obsp: Vec<(String, &'a Csr)>,
    /// uns entries, nested as anndata stores Python dicts ([`write_uns`]).
    pub uns: Vec<(String, serde_json::Value)>,
}

/// The var index: gene names made unique as anndata's `var_names_make_unique` does
/// (repeats get `-1`, `-2`, ...); the ids go in `gene_ids`.
fn var_frame(ids: &[String], names: &[String]) -> (Vec<String>, Vec<Named>) {
    let mut index = names.to_vec();
    crate::contract::make_unique(&mut index);
    let col = |v: &[String]| Column::Str(v.iter().cloned().map(Some).collect());
    (index, vec![("gene_ids".to_string(), col(ids))])
}

/// One `uns` element from a JSON value, as anndata writes the Python equivalent: a mapping
/// is a `dict` group, text a `string`, a number or boolean a `numeric-scalar`, a list of
/// text a `string-array`, a list of numbers or booleans an `array`, any other list a
/// `dict` keyed by position. `null` is not written (anndata skips `None` too, so
/// `{'base': None}` reads back as an empty dict, as scanpy's own files do).
pub fn write_uns(parent: &Group, name: &str, v: &serde_json::Value) -> Result<()> {
    use serde_json::Value;
    if name.is_empty() || name.contains('/') || name == "." {
        return Err(elem_err(
            &format!("uns/{name}"),
            "keys in .h5ad may not be empty or contain '/'",
        ));
    }
    let scalar = |ds: Dataset, enc: &str| encode(&ds, enc, "0.2.0");
    match v {
        Value::Null => Ok(()),
        Value::Object(m) => {
            let g = dict(parent, name)?;
            m.iter().try_for_each(|(k, x)| write_uns(&g, k, x))
        }
        Value::String(s) => {
            let ds = parent
                .new_dataset::<VarLenUnicode>()
                .shape(())
                .create(name)?;
            ds.write_scalar(&vlen(s)?)?;
            scalar(ds, "string")
        }
        Value::Bool(b) => {
            let ds = parent.new_dataset::<bool>().shape(()).create(name)?;
            ds.write_scalar(b)?;
            scalar(ds, "numeric-scalar")
        }
        Value::Number(n) => {
            let ds = match n.as_i64() {
                Some(i) => {
                    let ds = parent.new_dataset::<i64>().shape(()).create(name)?;
                    ds.write_scalar(&i)?;
                    ds
                }
                None => {
                    let ds = parent.new_dataset::<f64>().shape(()).create(name)?;
                    ds.write_scalar(&n.as_f64().unwrap_or(f64::NAN))?;
                    ds
                }
            };
            scalar(ds, "numeric-scalar")
        }
        Value::Array(a) => {
            if !a.is_empty() && a.iter().all(Value::is_string) {
                let v: Vec<String> = a
                    .iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect();
                write_strings(parent, name, &v)
            } else if !a.is_empty() && a.iter().all(Value::is_boolean) {
                let v: Vec<bool> = a.iter().filter_map(Value::as_bool).collect();
                write_array(parent, name, &v).map(|_| ())
            } else if a.iter().all(Value::is_i64) {
                let v: Vec<i64> = a.iter().filter_map(Value::as_i64).collect();
                write_array(parent, name, &v).map(|_| ())
            } else if a.iter().all(Value::is_number) {
                let v: Vec<f64> = a.iter().filter_map(Value::as_f64).collect();
                write_array(parent, name, &v).map(|_| ())
            } else {
                let g = dict(parent, name)?;
                a.iter()
                    .enumerate()
                    .try_for_each(|(i, x)| write_uns(&g, &i.to_string(), x))
            }
        }
    }
}

fn write_h5ad_to(path: &Path, a: &AnnData) -> Result<()> {
    let n = a.cell_ids.len();
    let file =
        File::create(path).map_err(|e| Error::new(format!("cannot create the HDF5 file ({e})")))?;
    encode(&file, "anndata", "0.1.0")?;
    write_dataframe(&file, "obs", "cell_id", a.cell_ids, &a.obs)?;
    let (var_index, mut var_cols) = var_frame(a.gene_ids, a.gene_names);
    for (name, col) in &a.var {
        if col.len() != a.gene_ids.len() {
            return Err(elem_err(
                &format!("var/{name}"),
                format!("{} values for {} genes", col.len(), a.gene_ids.len()),
            ));
        }
        var_cols.push((name.clone(), col.clone()));
    }
    write_dataframe(&file, "var", "_index", &var_index, &var_cols)?;
    if let Some(x) = a.x {
        if x.n_rows() != n || x.n_cols != a.gene_ids.len() {
            bail!(
                "X is {} x {} but there are {n} cells and {} genes",
                x.n_rows(),
                x.n_cols,
                a.gene_ids.len()
            );
        }
        write_csr(&file, "X", x, n)?;
    }
    let layers = dict(&file, "layers")?;
    for (name, m) in &a.layers {
        if m.n_rows() != n || m.n_cols != a.gene_ids.len() {
            return Err(elem_err(
                &format!("layers/{name}"),
                "shape does not match X",
            ));
        }
        write_csr(&layers, name, m, n)?;
    }
    write_arrays(&dict(&file, "obsm")?, "obsm", "cells", n, &a.obsm)?;
    write_arrays(
        &dict(&file, "varm")?,
        "varm",
        "genes",
        a.gene_ids.len(),
        &a.varm,
    )?;
    let obsp = dict(&file, "obsp")?;
    for (name, m) in &a.obsp {
        if m.n_rows() != n || m.n_cols != n {
            return Err(elem_err(
                &format!("obsp/{name}"),
                format!("{} x {} for {n} cells", m.n_rows(), m.n_cols),
            ));
        }
        write_csr(&obsp, name, m, n)?;
    }
    dict(&file, "varp")?;
    let uns = dict(&file, "uns")?;
    for (k, v) in &a.uns {
        write_uns(&uns, k, v)?;
    }
    file.close()?;
    Ok(())
}

/// The dense arrays of `obsm` or `varm` (`what`), `n` rows (`rows`: cells or genes) each.
fn write_arrays(
    group: &Group,
    what: &str,
    rows: &str,
    n: usize,
    arrays: &[(String, usize, &[f32])],
) -> Result<()> {
    for (name, dim, data) in arrays {
        if data.len() != n * dim {
            return Err(elem_err(
                &format!("{what}/{name}"),
                format!("{} values for {n} {rows} x {dim}", data.len()),
            ));
        }
        let ds = group
            .new_dataset::<f32>()
            .shape((n, *dim))
            .create(name.as_str())?;
        if !data.is_empty() {
            ds.write_raw(data)?;
        }
        encode(&ds, "array", "0.2.0")?;
    }
    Ok(())
}

/// Write an `.h5ad` file atomically.
pub fn write_h5ad(path: &Path, a: &AnnData) -> Result<()> {
    hdf5::silence_errors(true);
    crate::io::atomic::write_path(path, |tmp| write_h5ad_to(tmp, a))
}

/// Provenance as a nested mapping for `uns`: one entry per stage, keyed by its position
/// and tool (`00_cellweave-import`), holding `tool`, `version` and `params`.
pub fn provenance_mapping(steps: &[crate::contract::Step]) -> serde_json::Value {
    let width = steps.len().saturating_sub(1).to_string().len().max(2);
    let m: serde_json::Map<String, serde_json::Value> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                format!("{i:0width$}_{}", s.tool),
                serde_json::to_value(s).unwrap_or_default(),
            )
        })
        .collect();
    serde_json::Value::Object(m)
}

/// The AnnData view of a cells table: X = its values, obs = batch then the other columns,
/// provenance and value kind in `uns`.
pub fn anndata_of(t: &CellsTable) -> AnnData<'_> {
    let mut obs = vec![("batch".to_string(), Column::Cat(t.batch.clone()))];
    obs.extend(t.obs.iter().cloned());
    AnnData {
        cell_ids: &t.cell_ids,
        obs,
        gene_ids: &t.gene_ids,
        gene_names: &t.gene_names,
        var: Vec::new(),
        x: Some(&t.x),
        layers: Vec::new(),
        obsm: Vec::new(),
        varm: Vec::new(),
        obsp: Vec::new(),
        uns: vec![
            (
                "cellweave_provenance".to_string(),
                provenance_mapping(&t.provenance),
            ),
            ("cellweave_values".to_string(), t.values.as_str().into()),
        ],
    }
}
