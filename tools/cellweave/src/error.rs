//! One error type for the whole toolkit.
//!
//! Every error a user sees is one line that names the file, the field and what was
//! expected, e.g. `data/obs.tsv: field 'batch': column not found (expected one of: cell_id, donor)`.
//! Library code builds errors with [`Error::new`] and attaches the file and field as the
//! error travels up, so that the place that knows the path adds it.

use std::fmt;
use std::path::Path;

/// An error as users see it: one line naming the file, the field (or flag) and the problem.
#[derive(Debug, Clone)]
pub struct Error {
    /// The file the error is about, as given.
    pub file: Option<String>,
    /// The field, key or flag inside it (`gene_ids`, `--lr`).
    pub field: Option<String>,
    /// What went wrong and what was expected.
    pub msg: String,
    /// The kind of the operating-system error behind this one, if any (a closed pipe, a full
    /// disk, a missing file): decisions are made on it, never on the message's text.
    pub kind: Option<std::io::ErrorKind>,
}

/// The result of every fallible cellweave function.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with this message (no file, no field yet).
    pub fn new(msg: impl Into<String>) -> Self {
        Error {
            file: None,
            field: None,
            msg: msg.into(),
            kind: None,
        }
    }
    /// Whether an operating-system error of this kind is behind this error.
    pub fn is(&self, kind: std::io::ErrorKind) -> bool {
        self.kind == Some(kind)
    }
    /// Attach the file (kept if one is already set: the innermost file is the precise one).
    pub fn file(mut self, path: impl AsRef<Path>) -> Self {
        if self.file.is_none() {
            self.file = Some(path.as_ref().display().to_string());
        }
        self
    }
    /// Attach the field: a column, a key or a part of a file (kept if one is already set).
    pub fn field(mut self, field: impl Into<String>) -> Self {
        if self.field.is_none() {
            self.field = Some(field.into());
        }
        self
    }
    /// Attach the command-line flag whose value is wrong, named as the user types it:
    /// `flag("--lr")` and `flag("lr")` both show `field '--lr'` (kept if a field is already
    /// set).
    pub fn flag(self, flag: &str) -> Self {
        let name = flag.trim_start_matches('-');
        self.field(format!("--{name}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "field '{field}': ")?;
        }
        // Errors are printed on one line: fold any newline a dependency put in its message.
        let msg = self.msg.replace('\n', " ");
        write!(f, "{msg}")
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        let kind = e.kind();
        // An error a dependency wrapped in an io::Error keeps its own kind.
        if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<std::io::Error>()) {
            return Error::from(std::io::Error::new(inner.kind(), e.to_string()));
        }
        Error {
            kind: Some(kind),
            ..Error::new(e.to_string())
        }
    }
}
impl From<arrow_schema::ArrowError> for Error {
    fn from(e: arrow_schema::ArrowError) -> Self {
        match e {
            // Reading or writing failed in the operating system (a full disk, a closed pipe):
            // say that, not that the file is unreadable.
            arrow_schema::ArrowError::IoError(_, io) => Error::from(io),
            arrow_schema::ArrowError::ExternalError(ext) => {
                match ext.downcast::<std::io::Error>() {
                    Ok(io) => Error::from(*io),
                    Err(ext) => Error::new(format!("not a readable Arrow file or table ({ext})")),
                }
            }
            e => Error::new(format!("not a readable Arrow file or table ({e})")),
        }
    }
}
impl From<parquet::errors::ParquetError> for Error {
    fn from(e: parquet::errors::ParquetError) -> Self {
        match e {
            parquet::errors::ParquetError::External(ext) => {
                match ext.downcast::<std::io::Error>() {
                    Ok(io) => Error::from(*io),
                    Err(ext) => Error::new(format!("not a readable Parquet file ({ext})")),
                }
            }
            e => Error::new(format!("not a readable Parquet file ({e})")),
        }
    }
}
impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::new(format!("invalid JSON ({e})"))
    }
}
impl From<hdf5::Error> for Error {
    fn from(e: hdf5::Error) -> Self {
        Error::new(format!("HDF5 error ({e})"))
    }
}

/// Attach a path to any error convertible into [`Error`].
pub trait ResultExt<T> {
    /// Attach the file `path` to the error.
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
    /// Attach the field `field` to the error.
    fn in_field(self, field: &str) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| e.into().file(path))
    }
    fn in_field(self, field: &str) -> Result<T> {
        self.map_err(|e| e.into().field(field))
    }
}

/// `bail!("...")` returns an [`Error`] built from a format string.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::Error::new(format!($($arg)*))) };
}
