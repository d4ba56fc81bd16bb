//! HDF5 helpers: opening a file with errors a user can read, string attributes, string
//! and column datasets.

use super::*;

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
pub(super) fn elem_err(elem: &str, msg: impl std::fmt::Display) -> Error {
    Error::new(msg.to_string()).field(elem.to_string())
}

/// The dataset `name` of the group `g` at `elem`; an error naming `elem/name` when missing.
pub(crate) fn member(g: &Group, elem: &str, name: &str) -> Result<Dataset> {
    g.dataset(name)
        .map_err(|_| elem_err(&format!("{elem}/{name}"), "missing"))
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
pub(super) fn read_column(ds: &Dataset) -> Result<Column> {
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

/// What `name` is in `g` (group or dataset); None when absent.
pub(super) fn kind_of(g: &Group, name: &str) -> Option<LocationType> {
    if !g.link_exists(name) {
        return None;
    }
    g.loc_type_by_name(name).ok()
}
