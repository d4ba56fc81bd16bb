//! AnnData `.h5ad` files (the on-disk format of anndata >= 0.8), read and written with the
//! `hdf5` crate. The mapping between AnnData elements and the cells table is documented in
//! `schemas/h5ad-mapping.md`.
//!
//! Reading: `X` or a layer (CSR, CSC or dense), `obs` (index, categoricals, string,
//! numeric, boolean and nullable columns; the pre-0.7 `__categories` layout too) and `var`
//! (index plus a gene-id or gene-name column). Writing: `X` and `layers` as CSR, `obs` and
//! `var` dataframes, `obsm` dense arrays and `uns` strings, with the `encoding-type` /
//! `encoding-version` attributes anndata expects on every element.

use super::single_file_table;
use crate::contract::{Categorical, CellsTable, Column, Csr, Named, ValueKind};
use crate::io::table::ListRows;
use crate::{bail, Error, Result};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use hdf5::types::{FixedAscii, FixedUnicode, IntSize, TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{Dataset, File, Group, Location, LocationType};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

// ------------------------------------------------------------------ HDF5 helpers

/// What an HDF5 error means to a user opening a file.
pub(crate) fn open_h5(path: &Path) -> Result<File> {
    if !path.exists() {
        return Err(Error::new("no such file").file(path));
    }
    hdf5::silence_errors(true);
    // Read without HDF5's file lock: a file being read cannot be corrupted by it, and the lock
    // fails on some network file systems and whenever another process holds a descriptor of
    // the file (e.g. inherited through fork from the process that wrote it).
    File::with_options()
        .with_fapl(|p| p.file_locking(false))
        .open(path)
        .map_err(|e| {
            let msg = e.to_string();
            let err = if msg.contains("truncated file") {
                let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                let expected = msg
                    .rsplit("stored_eof = ")
                    .next()
                    .and_then(|s| s.trim().parse::<u64>().ok());
                match expected {
                    Some(x) => Error::new(format!(
                        "the file is truncated ({len} bytes; its HDF5 header promises {x})"
                    )),
                    None => Error::new(format!("the file is truncated ({msg})")),
                }
                .field("file size")
            } else {
                Error::new(format!(
                    "not a readable HDF5 file (expected .h5ad/.h5: {msg})"
                ))
                .field("HDF5 header")
            };
            err.file(path)
        })
}

/// An error about element `elem` of an HDF5 file.
fn elem_err(elem: &str, msg: impl std::fmt::Display) -> Error {
    Error::new(msg.to_string()).field(elem.to_string())
}

/// A string attribute (variable or fixed length), if present.
pub(crate) fn attr_string(loc: &Location, name: &str) -> Option<String> {
    let a = loc.attr(name).ok()?;
    let td = a.dtype().ok()?.to_descriptor().ok()?;
    if a.ndim() != 0 {
        return None;
    }
    match td {
        TypeDescriptor::VarLenUnicode => a
            .read_scalar::<VarLenUnicode>()
            .ok()
            .map(|s| s.as_str().to_string()),
        TypeDescriptor::VarLenAscii => a
            .read_scalar::<VarLenAscii>()
            .ok()
            .map(|s| s.as_str().to_string()),
        TypeDescriptor::FixedAscii(_) | TypeDescriptor::FixedUnicode(_) => {
            read_fixed_strings(&a, &td)
                .ok()
                .and_then(|v| v.into_iter().next())
        }
        _ => None,
    }
}

/// A string-array attribute (e.g. `column-order`); None when absent.
pub(crate) fn attr_strings(loc: &Location, name: &str) -> Result<Option<Vec<String>>> {
    let Ok(a) = loc.attr(name) else {
        return Ok(None);
    };
    if a.size() == 0 {
        return Ok(Some(Vec::new()));
    }
    let td = a.dtype()?.to_descriptor()?;
    if a.ndim() == 0 {
        return Ok(attr_string(loc, name).map(|s| vec![s]));
    }
    Ok(Some(read_strings_of(&a, &td)?))
}

/// Read fixed-length strings of any width up to 64 KiB (HDF5 converts between widths).
fn read_fixed_strings(c: &hdf5::Container, td: &TypeDescriptor) -> Result<Vec<String>> {
    let (n, unicode) = match *td {
        TypeDescriptor::FixedAscii(n) => (n, false),
        TypeDescriptor::FixedUnicode(n) => (n, true),
        _ => bail!("expected fixed-length strings"),
    };
    macro_rules! by_width {
        ($($w:literal),*) => {
            $(
                if n <= $w {
                    return Ok(if unicode {
                        c.read_raw::<FixedUnicode<$w>>()?.iter().map(|s| String::from_utf8_lossy(s.as_bytes()).into_owned()).collect()
                    } else {
                        c.read_raw::<FixedAscii<$w>>()?.iter().map(|s| String::from_utf8_lossy(s.as_bytes()).into_owned()).collect()
                    });
                }
            )*
        };
    }
    by_width!(16, 32, 64, 128, 256, 1024, 65536);
    bail!("fixed-length strings of {n} bytes are too long")
}

fn read_strings_of(c: &hdf5::Container, td: &TypeDescriptor) -> Result<Vec<String>> {
    Ok(match td {
        TypeDescriptor::VarLenUnicode => c
            .read_raw::<VarLenUnicode>()?
            .iter()
            .map(|s| s.as_str().to_string())
            .collect(),
        TypeDescriptor::VarLenAscii => c
            .read_raw::<VarLenAscii>()?
            .iter()
            .map(|s| s.as_str().to_string())
            .collect(),
        TypeDescriptor::FixedAscii(_) | TypeDescriptor::FixedUnicode(_) => {
            read_fixed_strings(c, td)?
        }
        other => bail!("expected strings, found {other}"),
    })
}

fn is_string(td: &TypeDescriptor) -> bool {
    matches!(
        td,
        TypeDescriptor::VarLenUnicode
            | TypeDescriptor::VarLenAscii
            | TypeDescriptor::FixedAscii(_)
            | TypeDescriptor::FixedUnicode(_)
    )
}

/// A 1-D dataset of strings; numbers are turned into their text (some files index by number).
pub(crate) fn read_strings(ds: &Dataset) -> Result<Vec<String>> {
    let td = ds.dtype()?.to_descriptor()?;
    if is_string(&td) {
        return read_strings_of(ds, &td);
    }
    match read_column(ds)? {
        Column::Str(v) => Ok(v.into_iter().map(Option::unwrap_or_default).collect()),
        col => Ok((0..col.len())
            .map(|i| col.text(i).unwrap_or_default())
            .collect()),
    }
}

/// A 1-D dataset as a column: strings, numbers or booleans.
fn read_column(ds: &Dataset) -> Result<Column> {
    let td = ds.dtype()?.to_descriptor()?;
    if ds.ndim() != 1 {
        bail!("expected a 1-D array, found shape {:?}", ds.shape());
    }
    Ok(match td {
        t if is_string(&t) => Column::Str(read_strings_of(ds, &t)?.into_iter().map(Some).collect()),
        TypeDescriptor::Boolean => {
            Column::Bool(ds.read_raw::<bool>()?.into_iter().map(Some).collect())
        }
        TypeDescriptor::Integer(_)
        | TypeDescriptor::Unsigned(IntSize::U1 | IntSize::U2 | IntSize::U4) => {
            Column::I64(ds.read_raw::<i64>()?.into_iter().map(Some).collect())
        }
        TypeDescriptor::Unsigned(_) => Column::F64(ds.read_raw::<f64>()?),
        TypeDescriptor::Float(hdf5::types::FloatSize::U4) => Column::F32(ds.read_raw::<f32>()?),
        TypeDescriptor::Float(_) => Column::F64(ds.read_raw::<f64>()?),
        other => bail!("unsupported element type {other}"),
    })
}

fn kind_of(g: &Group, name: &str) -> Option<LocationType> {
    if !g.link_exists(name) {
        return None;
    }
    g.loc_type_by_name(name).ok()
}

// ------------------------------------------------------------------ dataframes

/// An AnnData dataframe: its index and columns, in `column-order`.
pub struct DataFrame {
    pub index: Vec<String>,
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
        Column::I64(v) => Column::I64(
            v.into_iter()
                .zip(&mask)
                .map(|(x, &m)| if m { None } else { x })
                .collect(),
        ),
        Column::Bool(v) => Column::Bool(
            v.into_iter()
                .zip(&mask)
                .map(|(x, &m)| if m { None } else { x })
                .collect(),
        ),
        Column::Str(v) => Column::Str(
            v.into_iter()
                .zip(&mask)
                .map(|(x, &m)| if m { None } else { x })
                .collect(),
        ),
        Column::F64(v) => Column::F64(
            v.into_iter()
                .zip(&mask)
                .map(|(x, &m)| if m { f64::NAN } else { x })
                .collect(),
        ),
        Column::F32(v) => Column::F32(
            v.into_iter()
                .zip(&mask)
                .map(|(x, &m)| if m { f32::NAN } else { x })
                .collect(),
        ),
        other => other,
    })
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

// ------------------------------------------------------------------ matrices

/// Smallest and largest value (a reduction the compiler vectorizes).
fn min_max<T: Copy + Ord>(v: &[T], lo: T, hi: T) -> (T, T) {
    v.iter().fold((hi, lo), |(a, b), &x| (a.min(x), b.max(x)))
}

/// Positions `range` of a 1-D dataset.
fn read_range<T: hdf5::H5Type>(ds: &Dataset, range: std::ops::Range<usize>) -> Result<Vec<T>> {
    Ok(ds.read_slice_1d::<T, _>(range)?.into_raw_vec_and_offset().0)
}

fn read_index_array(
    ds: &Dataset,
    elem: &str,
    bound: u64,
    range: std::ops::Range<usize>,
) -> Result<Vec<u32>> {
    let td = ds.dtype()?.to_descriptor()?;
    let (lo, hi, out): (i64, i64, Vec<u32>) = match td {
        TypeDescriptor::Integer(IntSize::U4) => {
            let v = read_range::<i32>(ds, range)?;
            let (lo, hi) = min_max(&v, i32::MIN, i32::MAX);
            // Same-size map: collected in place, no second buffer.
            (
                lo as i64,
                hi as i64,
                v.into_iter().map(|x| x as u32).collect(),
            )
        }
        TypeDescriptor::Unsigned(IntSize::U4) => {
            let v = read_range::<u32>(ds, range)?;
            let (_, hi) = min_max(&v, 0, u32::MAX);
            (0, hi as i64, v)
        }
        TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => {
            let v = read_range::<i64>(ds, range)?;
            let (lo, hi) = min_max(&v, i64::MIN, i64::MAX);
            (lo, hi, v.into_iter().map(|x| x as u32).collect())
        }
        other => {
            return Err(elem_err(
                elem,
                format!("expected integer positions, found {other}"),
            ))
        }
    };
    if !out.is_empty() && (lo < 0 || hi as u64 >= bound) {
        let b = if lo < 0 { lo } else { hi };
        return Err(elem_err(
            elem,
            format!("position {b} is outside 0..{bound}"),
        ));
    }
    Ok(out)
}

fn read_indptr(ds: &Dataset, elem: &str, n: usize, nnz: usize) -> Result<Vec<u64>> {
    let v = ds.read_raw::<i64>().map_err(|e| elem_err(elem, e))?;
    if v.len() != n + 1 {
        return Err(elem_err(
            elem,
            format!("{} offsets (expected {} for {n} rows)", v.len(), n + 1),
        ));
    }
    if v[0] != 0 || *v.last().unwrap() as usize != nnz || v.windows(2).any(|w| w[0] > w[1]) {
        return Err(elem_err(
            elem,
            format!("offsets must rise from 0 to the {nnz} stored values"),
        ));
    }
    Ok(v.into_iter().map(|x| x as u64).collect())
}

/// Check values that must be raw counts.
pub(crate) fn check_counts(data: &[f32], elem: &str) -> Result<()> {
    check_counts_at(data, elem, 0)
}

/// [`check_counts`] of the values that start at position `first` of `elem`.
fn check_counts_at(data: &[f32], elem: &str, first: usize) -> Result<()> {
    // Branch-free per block so that it vectorizes; locate the culprit only on failure.
    let ok = data.chunks(4096).all(|c| {
        c.iter()
            .fold(true, |acc, &v| acc & (0.0..=f32::MAX).contains(&v))
    });
    if !ok {
        let p = data
            .iter()
            .position(|v| !(*v >= 0.0 && v.is_finite()))
            .unwrap_or(0);
        return Err(Error::new(format!(
            "{elem} holds {} at position {} (expected raw counts: finite and non-negative; pass --values for other data)",
            data[p],
            first + p
        ))
        .field("values"));
    }
    Ok(())
}

/// A CSR matrix of an `.h5ad` (cells x genes), read a slice of rows at a time.
pub struct H5Csr {
    elem: String,
    data: Dataset,
    indices: Dataset,
    /// Row offsets, checked (rising from 0 to the number of stored values).
    pub indptr: Vec<u64>,
    pub n_cols: usize,
    counts: bool,
    /// The file and where `data` and `indices` lie in it, with their item sizes, when both
    /// are stored contiguously (for [`H5Csr::forget`]).
    cache: Option<(std::fs::File, [(u64, u64); 2])>,
    /// `data` and `indices` in a memory map of the file, when they can be used in place.
    map: Option<MappedLists>,
}

/// The `data` (float32) and `indices` (32-bit) datasets of a CSR matrix, memory-mapped:
/// both stored contiguously, little-endian, 4-byte aligned, so that batches of rows are
/// slices of the file's pages (no read into a buffer, no conversion).
struct MappedLists {
    map: Arc<memmap2::Mmap>,
    /// The whole map as an Arrow buffer (slices of it share the map).
    bytes: arrow_buffer::Buffer,
    data: usize,
    indices: usize,
}

impl MappedLists {
    /// Map `file` if `data` and `indices` (`nnz` items each, at the byte `offsets`) qualify,
    /// checking the first items against what HDF5 reads.
    fn open(
        file: &std::fs::File,
        data: &Dataset,
        indices: &Dataset,
        offsets: [u64; 2],
        nnz: usize,
    ) -> Option<MappedLists> {
        use hdf5::datatype::ByteOrder;
        use hdf5::types::FloatSize;
        let little = |d: &Dataset| {
            d.dtype()
                .is_ok_and(|t| t.byte_order() == ByteOrder::LittleEndian)
        };
        let float32 = matches!(
            data.dtype().ok()?.to_descriptor().ok()?,
            TypeDescriptor::Float(FloatSize::U4)
        );
        let int32 = matches!(
            indices.dtype().ok()?.to_descriptor().ok()?,
            TypeDescriptor::Integer(IntSize::U4) | TypeDescriptor::Unsigned(IntSize::U4)
        );
        if !(cfg!(target_endian = "little") && float32 && int32 && little(data) && little(indices))
            || nnz == 0
        {
            return None;
        }
        let [d, i] = offsets.map(|o| o as usize);
        let (map, bytes) = crate::io::table::map_file(file).ok()?;
        let fits = |o: usize| o % 4 == 0 && o.checked_add(nnz * 4).is_some_and(|e| e <= map.len());
        if !(fits(d) && fits(i)) {
            return None;
        }
        let m = MappedLists {
            map,
            bytes,
            data: d,
            indices: i,
        };
        // where HDF5 says the datasets lie must hold what HDF5 reads there
        let k = nnz.min(64);
        let same_data = read_range::<f32>(data, 0..k).is_ok_and(|v| {
            v.iter()
                .map(|x| x.to_bits())
                .eq(m.values(0, k).iter().map(|x| x.to_bits()))
        });
        let same_indices =
            read_range::<u32>(indices, 0..k).is_ok_and(|v| v[..] == m.indices(0, k)[..]);
        (same_data && same_indices).then_some(m)
    }

    fn slice<T: arrow_buffer::ArrowNativeType>(
        &self,
        at: usize,
        a: usize,
        b: usize,
    ) -> ScalarBuffer<T> {
        ScalarBuffer::new(
            self.bytes.slice_with_length(at + a * 4, (b - a) * 4),
            0,
            b - a,
        )
    }
    fn values(&self, a: usize, b: usize) -> ScalarBuffer<f32> {
        self.slice(self.data, a, b)
    }
    fn indices(&self, a: usize, b: usize) -> ScalarBuffer<u32> {
        self.slice(self.indices, a, b)
    }
}

impl H5Csr {
    /// Open the sparse group `g` at `elem` (`major` rows of `minor` positions).
    fn open(
        path: &Path,
        g: &Group,
        elem: &str,
        major: usize,
        minor: usize,
        counts: bool,
    ) -> Result<H5Csr> {
        let ds = |n: &str| {
            g.dataset(n)
                .map_err(|_| elem_err(&format!("{elem}/{n}"), "missing"))
        };
        let (data, indices) = (ds("data")?, ds("indices")?);
        if indices.size() != data.size() {
            return Err(elem_err(
                elem,
                format!("{} positions but {} values", indices.size(), data.size()),
            ));
        }
        let indptr = read_indptr(
            &ds("indptr")?,
            &format!("{elem}/indptr"),
            major,
            data.size(),
        )?;
        let place = |d: &Dataset| Some((d.offset()?, d.dtype().ok()?.size() as u64));
        let cache = match (place(&data), place(&indices), std::fs::File::open(path)) {
            (Some(a), Some(b), Ok(f)) => Some((f, [a, b])),
            _ => None,
        };
        let nnz = *indptr.last().unwrap_or(&0) as usize;
        let map = cache
            .as_ref()
            .and_then(|(f, [a, b])| MappedLists::open(f, &data, &indices, [a.0, b.0], nnz));
        Ok(H5Csr {
            elem: elem.to_string(),
            data,
            indices,
            indptr,
            n_cols: minor,
            counts,
            cache,
            map,
        })
    }

    pub fn n_rows(&self) -> usize {
        self.indptr.len() - 1
    }
    pub fn nnz(&self) -> usize {
        *self.indptr.last().unwrap() as usize
    }
    /// Whether [`lists`](Self::lists) can hand out slices of the mapped file (contiguous
    /// little-endian float32 values and 32-bit positions).
    pub fn in_place(&self) -> bool {
        self.map.is_some()
    }

    /// Drop the cached pages of rows `start..end` from the page cache, once read for the
    /// last time (see [`crate::io::atomic::drop_cached`]).
    pub fn forget(&self, start: usize, end: usize) {
        if let Some((file, places)) = &self.cache {
            let (a, b) = (self.indptr[start], self.indptr[end]);
            if let Some(m) = &self.map {
                for at in [m.data, m.indices] {
                    // SAFETY: the map is read-only and shared with the file: MADV_DONTNEED
                    // only drops this process's mappings of the pages (read back if used).
                    unsafe {
                        let _ = m.map.unchecked_advise_range(
                            memmap2::UncheckedAdvice::DontNeed,
                            at + a as usize * 4,
                            (b - a) as usize * 4,
                        );
                    }
                }
            }
            for (offset, size) in places {
                crate::io::atomic::drop_cached(file, offset + a * size, (b - a) * size);
            }
        }
    }

    /// Rows `start..end` as [`read`](Self::read) gives them, as slices of the mapped file
    /// when it can be used in place and the rows already keep the contract (positions
    /// strictly ascending and in range, values finite and, for counts, non-negative);
    /// otherwise read, sorted and checked by [`read`](Self::read), which names what is wrong.
    pub fn lists(&self, start: usize, end: usize) -> Result<ListRows> {
        if let Some(m) = &self.map {
            let (a, b) = (self.indptr[start] as usize, self.indptr[end] as usize);
            let offsets: Vec<i32> = self.indptr[start..=end]
                .iter()
                .map(|&o| (o as usize - a) as i32)
                .collect();
            let (indices, values) = (m.indices(a, b), m.values(a, b));
            let keeps_contract = offsets.windows(2).all(|w| {
                let k = w[0] as usize..w[1] as usize;
                crate::io::stream::row_ok(&indices[k.clone()], &values[k], self.n_cols, self.counts)
            });
            if keeps_contract {
                return Ok(ListRows {
                    offsets: OffsetBuffer::new(offsets.into()),
                    indices,
                    values,
                });
            }
        }
        self.read(start, end).map(ListRows::from)
    }

    /// Rows `start..end`, checked (positions in range, values finite and, for counts,
    /// non-negative) and with each row's positions sorted (repeats added up).
    pub fn read(&self, start: usize, end: usize) -> Result<Csr> {
        let (a, b) = (self.indptr[start] as usize, self.indptr[end] as usize);
        let data_elem = format!("{}/data", self.elem);
        let data: Vec<f32> = read_range(&self.data, a..b).map_err(|e| elem_err(&data_elem, e))?;
        if self.counts {
            check_counts_at(&data, &data_elem, a)?;
        } else if let Some(v) = data.iter().find(|v| !v.is_finite()) {
            return Err(
                Error::new(format!("non-finite value {v} in the expression values"))
                    .field("values"),
            );
        }
        let indices = read_index_array(
            &self.indices,
            &format!("{}/indices", self.elem),
            self.n_cols as u64,
            a..b,
        )?;
        let mut m = Csr {
            n_cols: self.n_cols,
            indptr: self.indptr[start..=end]
                .iter()
                .map(|&o| o - a as u64)
                .collect(),
            indices,
            data,
        };
        super::mtx::sort_rows(&mut m);
        Ok(m)
    }
}

/// A matrix element: read whole (CSC, dense), or CSR rows to read a slice at a time.
pub enum Matrix {
    Whole(Csr),
    Rows(H5Csr),
}

/// Read the matrix element at `elem` (CSR, CSC or dense) as cells x genes CSR.
pub fn read_matrix(
    file: &File,
    elem: &str,
    n_obs: usize,
    n_vars: usize,
    counts: bool,
) -> Result<Csr> {
    match open_matrix(file, elem, n_obs, n_vars, counts)? {
        Matrix::Whole(m) => Ok(m),
        Matrix::Rows(r) => r.read(0, n_obs),
    }
}

/// Open the matrix element at `elem`: CSR stays on disk to be read by rows.
pub fn open_matrix(
    file: &File,
    elem: &str,
    n_obs: usize,
    n_vars: usize,
    counts: bool,
) -> Result<Matrix> {
    let shape_err = |shape: &[u64]| {
        elem_err(
            elem,
            format!("shape {shape:?} does not match obs x var ({n_obs} x {n_vars})"),
        )
    };
    match file
        .loc_type_by_name(elem)
        .map_err(|_| elem_err(elem, "missing"))?
    {
        LocationType::Group => {
            let g = file.group(elem)?;
            let enc = attr_string(&g, "encoding-type")
                .or_else(|| attr_string(&g, "h5sparse_format").map(|f| format!("{f}_matrix")))
                .unwrap_or_default();
            let shape: Vec<u64> = g
                .attr("shape")
                .or_else(|_| g.attr("h5sparse_shape"))
                .and_then(|a| a.read_raw::<u64>())
                .map_err(|_| elem_err(elem, "sparse matrix without a 'shape' attribute"))?;
            if shape != [n_obs as u64, n_vars as u64] {
                return Err(shape_err(&shape));
            }
            let csr = match enc.as_str() {
                "csr_matrix" => true,
                "csc_matrix" => false,
                other => return Err(elem_err(elem, format!("encoding '{other}' is not supported (expected csr_matrix, csc_matrix or a dense array)"))),
            };
            let (major, minor) = if csr {
                (n_obs, n_vars)
            } else {
                (n_vars, n_obs)
            };
            let path = file.filename();
            let rows = H5Csr::open(Path::new(&path), &g, elem, major, minor, counts)?;
            if csr {
                return Ok(Matrix::Rows(rows));
            }
            let m = rows.read(0, major)?;
            Ok(Matrix::Whole(super::dense::transpose(&m)))
        }
        LocationType::Dataset => {
            let ds = file.dataset(elem)?;
            let shape: Vec<u64> = ds.shape().iter().map(|&s| s as u64).collect();
            if shape != [n_obs as u64, n_vars as u64] {
                return Err(shape_err(&shape));
            }
            let mut m = Csr::empty(n_vars);
            let rows_per = (1usize << 24) / n_vars.max(1) + 1;
            let mut start = 0;
            while start < n_obs {
                let end = (start + rows_per).min(n_obs);
                let sel = hdf5::Hyperslab::from(vec![(start..end).into(), (..).into()]);
                let block = ds
                    .read_slice_2d::<f32, _>(hdf5::Selection::from(sel))
                    .map_err(|e| elem_err(elem, e))?;
                for row in block.outer_iter() {
                    for (c, &v) in row.iter().enumerate() {
                        if v != 0.0 {
                            m.indices.push(c as u32);
                            m.data.push(v);
                        }
                    }
                    m.indptr.push(m.indices.len() as u64);
                }
                start = end;
            }
            if counts {
                check_counts(&m.data, elem)?;
            }
            Ok(Matrix::Whole(m))
        }
        _ => Err(elem_err(elem, "not a matrix")),
    }
}

/// Where the expression matrix of `layer` lives, and the var dataframe that describes it.
fn matrix_location(file: &File, layer: Option<&str>) -> Result<(String, &'static str)> {
    let layers = || -> String {
        let mut v: Vec<String> = file
            .group("layers")
            .and_then(|g| g.member_names())
            .unwrap_or_default();
        if file.link_exists("X") {
            v.insert(0, "X".into());
        }
        if file.link_exists("raw") {
            v.push("raw".into());
        }
        if v.is_empty() {
            "none".into()
        } else {
            v.join(", ")
        }
    };
    let (elem, var) = match layer {
        None | Some("X") => ("X".to_string(), "var"),
        Some("raw") | Some("raw/X") => ("raw/X".to_string(), "raw/var"),
        Some(l) => (format!("layers/{}", l.trim_start_matches("layers/")), "var"),
    };
    if !file.link_exists(elem.split('/').next().unwrap()) || !file.link_exists(&elem) {
        let hint = if layer.is_none() {
            " (choose one with --layer)"
        } else {
            ""
        };
        return Err(elem_err(
            &elem,
            format!("not in this file; available: {}{hint}", layers()),
        ));
    }
    Ok((elem, var))
}

/// How many stored values of a matrix the import scans for values that are not counts.
const COUNT_SCAN: usize = 1 << 22;

/// Whether `v` can be a raw count: a finite non-negative integer.
#[inline]
pub(crate) fn is_count(v: f32) -> bool {
    v >= 0.0 && v.is_finite() && v.fract() == 0.0
}

/// What [`scan_counts`] found: values scanned, values that are not counts, the first of
/// them with its position, and the name of what was scanned.
struct CountScan {
    scanned: usize,
    bad: usize,
    first: Option<(usize, f32)>,
    what: String,
}

/// The first stored values (at most [`COUNT_SCAN`]) of the matrix at `elem`, checked for
/// values that are not counts.
fn scan_counts(file: &File, elem: &str) -> Result<CountScan> {
    let (data, what) = if let Ok(g) = file.group(elem) {
        let ds = g
            .dataset("data")
            .map_err(|_| elem_err(elem, "sparse matrix without 'data'"))?;
        let n = ds.size().min(COUNT_SCAN);
        (read_range::<f32>(&ds, 0..n)?, format!("{elem}/data"))
    } else {
        let ds = file.dataset(elem)?;
        let shape = ds.shape();
        let (rows, cols) = (
            shape.first().copied().unwrap_or(0),
            shape.get(1).copied().unwrap_or(1),
        );
        let take = (COUNT_SCAN / cols.max(1)).clamp(1, rows.max(1)).min(rows);
        let sel = hdf5::Hyperslab::from(vec![(0..take).into(), (..).into()]);
        let block = ds
            .read_slice_2d::<f32, _>(hdf5::Selection::from(sel))
            .map_err(|e| elem_err(elem, e))?;
        let v: Vec<f32> = block.iter().copied().filter(|&x| x != 0.0).collect();
        (v, elem.to_string())
    };
    let bad = data.iter().filter(|&&v| !is_count(v)).count();
    let first = data
        .iter()
        .position(|&v| !is_count(v))
        .map(|p| (p, data[p]));
    Ok(CountScan {
        scanned: data.len(),
        bad,
        first,
        what,
    })
}

/// The `--layer` values under which this file holds counts (by [`scan_counts`]), other
/// than `elem`.
fn counts_elsewhere(file: &File, elem: &str) -> Vec<String> {
    let mut candidates: Vec<(String, String)> = file
        .group("layers")
        .and_then(|g| g.member_names())
        .unwrap_or_default()
        .into_iter()
        .map(|l| (format!("layers/{l}"), l))
        .collect();
    candidates.sort_by_key(|(_, l)| l != "counts");
    candidates.push(("raw/X".into(), "raw".into()));
    candidates.push(("X".into(), "X".into()));
    candidates
        .into_iter()
        .filter(|(e, _)| e != elem && file.link_exists(e.split('/').next().unwrap_or(e)))
        .filter(|(e, _)| file.link_exists(e))
        .filter(|(e, _)| matches!(scan_counts(file, e), Ok(c) if c.scanned > 0 && c.bad == 0))
        .map(|(_, l)| l)
        .collect()
}

/// Refuse a matrix read as counts whose first stored values are not all counts, in one line
/// that says where this file holds counts, if anywhere.
fn check_holds_counts(file: &File, elem: &str) -> Result<()> {
    let CountScan {
        scanned: n,
        bad,
        first,
        what,
    } = scan_counts(file, elem)?;
    let Some((at, v)) = first else {
        return Ok(());
    };
    let scanned = if n >= COUNT_SCAN {
        format!("of the first {n}")
    } else {
        format!("of the {n}")
    };
    let elsewhere = counts_elsewhere(file, elem);
    let hint = match elsewhere.first() {
        Some(l) => {
            let place = match l.as_str() {
                "raw" => "raw/X".to_string(),
                "X" => "X".to_string(),
                l => format!("layers['{l}']"),
            };
            format!("this file holds counts in {place}: use --layer {l}")
        }
        None => "this file holds no counts elsewhere (layers, raw/X); if the values are normalized, say so with --values log1p or --values normalized".to_string(),
    };
    Err(Error::new(format!(
        "{what}: {bad} {scanned} stored values are not counts (non-negative integers; the first is {v} at position {at}); {hint}"
    ))
    .field("values"))
}

/// Read an `.h5ad` file as a cells table (one batch named after the file; the importer
/// picks the batch column). `layer`: None = `X`, `raw` = `raw/X`, else `layers/<name>`.
pub fn read_h5ad(path: &Path, layer: Option<&str>, values: ValueKind) -> Result<CellsTable> {
    let (mut t, rows) = open_h5ad(path, layer, values)?;
    if let Some(r) = rows {
        t.x = r.read(0, r.n_rows()).map_err(|e| e.file(path))?;
    }
    Ok(t)
}

/// [`read_h5ad`], but a CSR matrix stays on disk: the table then has empty rows, and the
/// rows are read from the [`H5Csr`] returned beside it (errors need the path attached).
pub fn open_h5ad(
    path: &Path,
    layer: Option<&str>,
    values: ValueKind,
) -> Result<(CellsTable, Option<H5Csr>)> {
    let file = open_h5(path)?;
    (|| {
        let (elem, var_elem) = matrix_location(&file, layer)?;
        let obs = read_dataframe(&file, "obs")?;
        let var = read_dataframe(&file, var_elem)?;
        let (n_obs, n_vars) = (obs.index.len(), var.index.len());
        let counts = values == ValueKind::Counts;
        if counts {
            check_holds_counts(&file, &elem)?;
        }
        let (x, rows) = match open_matrix(&file, &elem, n_obs, n_vars, counts)? {
            Matrix::Whole(m) => (m, None),
            Matrix::Rows(r) => (empty_rows(n_obs, n_vars), Some(r)),
        };
        let genes = genes_from_var(&var);
        let t = single_file_table(path, obs.index, obs.columns, genes, x, values);
        Ok((t, rows))
    })()
    .map_err(|e: Error| e.file(path))
}

/// `n` rows without values.
fn empty_rows(n: usize, n_cols: usize) -> Csr {
    Csr {
        n_cols,
        indptr: vec![0; n + 1],
        ..Default::default()
    }
}

// ------------------------------------------------------------------ writing

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

fn set_attr_strs(loc: &Location, name: &str, values: &[String]) -> Result<()> {
    let v = values.iter().map(|s| vlen(s)).collect::<Result<Vec<_>>>()?;
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

fn write_array<T: hdf5::H5Type>(g: &Group, name: &str, data: &[T]) -> Result<Dataset> {
    let ds = g.new_dataset::<T>().shape(data.len()).create(name)?;
    if !data.is_empty() {
        ds.write_raw(data)?;
    }
    encode(&ds, "array", "0.2.0")?;
    Ok(ds)
}

fn write_strings(g: &Group, name: &str, values: &[String]) -> Result<()> {
    let v = values.iter().map(|s| vlen(s)).collect::<Result<Vec<_>>>()?;
    let ds = g
        .new_dataset::<VarLenUnicode>()
        .shape(v.len())
        .create(name)?;
    if !v.is_empty() {
        ds.write_raw(&v)?;
    }
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
    let ds = cg.new_dataset::<T>().shape(values.len()).create("values")?;
    if !values.is_empty() {
        ds.write_raw(&values)?;
    }
    let ds = cg.new_dataset::<bool>().shape(mask.len()).create("mask")?;
    if !mask.is_empty() {
        ds.write_raw(&mask)?;
    }
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
    pub cell_ids: &'a [String],
    /// obs columns in order (batch first).
    pub obs: Vec<Named>,
    pub gene_ids: &'a [String],
    pub gene_names: &'a [String],
    /// var columns after `gene_ids` (e.g. scanpy's highly-variable-gene statistics).
    pub var: Vec<Named>,
    /// X (None: no X, e.g. an embedding-only export).
    pub x: Option<&'a Csr>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> CellsTable {
        CellsTable {
            cell_ids: vec!["a".into(), "b".into(), "c".into()],
            batch: Categorical {
                codes: vec![1, 0, 1],
                categories: vec!["s1".into(), "s2".into()],
            },
            obs: vec![
                (
                    "cell_type".into(),
                    Column::Cat(Categorical {
                        codes: vec![0, Categorical::MISSING, 0],
                        categories: vec!["T".into()],
                    }),
                ),
                ("n".into(), Column::I64(vec![Some(1), None, Some(3)])),
                ("score".into(), Column::F64(vec![0.5, f64::NAN, 2.0])),
                (
                    "flag".into(),
                    Column::Bool(vec![Some(true), Some(false), Some(true)]),
                ),
            ],
            gene_ids: vec!["E1".into(), "E2".into()],
            gene_names: vec!["G1".into(), "G2".into()],
            x: Csr::from_dense(3, 2, &[1.0, 0.0, 0.0, 2.0, 3.0, 4.0]),
            values: ValueKind::Counts,
            provenance: vec![],
        }
    }

    #[test]
    fn write_then_read_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.h5ad");
        let t = table();
        let mut a = anndata_of(&t);
        a.layers.push(("counts".into(), &t.x));
        let emb = [0.1f32, 0.2, 0.3, 0.4, 0.5, 0.6];
        a.obsm.push(("X_test".into(), 2, &emb));
        write_h5ad(&p, &a).unwrap();
        let back = read_h5ad(&p, None, ValueKind::Counts).unwrap();
        assert_eq!(back.cell_ids, t.cell_ids);
        assert_eq!(back.gene_ids, t.gene_ids);
        assert_eq!(back.gene_names, t.gene_names);
        assert_eq!(back.x, t.x);
        assert_eq!(
            back.obs[0],
            ("batch".to_string(), Column::Cat(t.batch.clone()))
        );
        assert_eq!(back.obs[1], t.obs[0]);
        assert_eq!(back.obs[2], t.obs[1]);
        match &back.obs[3].1 {
            Column::F64(v) => assert!(v[0] == 0.5 && v[1].is_nan()),
            other => panic!("{other:?}"),
        }
        assert_eq!(back.obs[4], t.obs[3]);
        let layer = read_h5ad(&p, Some("counts"), ValueKind::Counts).unwrap();
        assert_eq!(layer.x, t.x);
        let e = read_h5ad(&p, Some("nope"), ValueKind::Counts)
            .unwrap_err()
            .to_string();
        assert!(e.contains("layers/nope") && e.contains("counts"), "{e}");
    }

    #[test]
    fn truncated_file_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.h5ad");
        let t = table();
        write_h5ad(&p, &anndata_of(&t)).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let e = read_h5ad(&p, None, ValueKind::Counts)
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.h5ad"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn negative_counts_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.h5ad");
        let mut t = table();
        t.x.data[1] = -2.0;
        write_h5ad(&p, &anndata_of(&t)).unwrap();
        let e = read_h5ad(&p, None, ValueKind::Counts)
            .unwrap_err()
            .to_string();
        assert!(e.contains("field 'values'") && e.contains("X/data"), "{e}");
        assert!(read_h5ad(&p, None, ValueKind::Normalized).is_ok());
    }
}
