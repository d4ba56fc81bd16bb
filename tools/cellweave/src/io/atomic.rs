//! Outputs appear whole or not at all: write to a temporary sibling, then rename.
//!
//! A stage that fails half-way (bad input, a killed job) must leave no file that a
//! workflow engine could mistake for a finished output.

use crate::{Error, Result, ResultExt};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn ensure_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            std::fs::create_dir_all(parent).at(parent)?;
        }
    }
    Ok(())
}

/// Write a file through `f` into a temporary sibling and rename it onto `path` on success.
pub fn write_file<T>(path: &Path, f: impl FnOnce(&mut BufWriter<File>) -> Result<T>) -> Result<T> {
    ensure_parent(path)?;
    let tmp = temp_sibling(path);
    let result = (|| -> Result<T> {
        let file = File::create(&tmp).at(path)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let out = f(&mut w)?;
        w.flush().at(path)?;
        Ok(out)
    })();
    match result {
        Ok(out) => {
            std::fs::rename(&tmp, path).at(path)?;
            Ok(out)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e.file(path))
        }
    }
}

/// Like [`write_file`] for writers that need a `std::fs::File` (HDF5 needs a path: see
/// [`write_path`]).
pub fn write_path<T>(path: &Path, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    ensure_parent(path)?;
    let tmp = temp_sibling(path);
    let _ = std::fs::remove_file(&tmp);
    match f(&tmp) {
        Ok(out) => {
            std::fs::rename(&tmp, path).at(path)?;
            Ok(out)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e.file(path))
        }
    }
}

/// Write a directory (a 10x MTX folder) into a temporary sibling and rename it into place.
/// An existing directory at `path` is replaced only after the new one is complete.
pub fn write_dir<T>(path: &Path, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    ensure_parent(path)?;
    let tmp = temp_sibling(path);
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).at(path)?;
    match f(&tmp) {
        Ok(out) => {
            if path.exists() {
                std::fs::remove_dir_all(path).at(path)?;
            }
            std::fs::rename(&tmp, path).at(path)?;
            Ok(out)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e.file(path))
        }
    }
}

/// Refuse to overwrite an input with an output (the tools never write in place).
pub fn check_not_input(output: &Path, inputs: &[&Path]) -> Result<()> {
    for i in inputs {
        if let (Ok(a), Ok(b)) = (output.canonicalize(), i.canonicalize()) {
            if a == b {
                return Err(
                    Error::new("the output would overwrite an input; choose another -o")
                        .file(output),
                );
            }
        }
    }
    Ok(())
}

/// Start writing `file`'s dirty pages to disk now, without waiting (a streaming writer calls
/// it as it goes, so that the pages are clean, and can be dropped, by the time the next stage
/// has read them).
pub fn start_writeback(file: &File) {
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    // SAFETY: a plain system call on an open descriptor; it only starts I/O.
    unsafe {
        os::sync_file_range(
            std::os::fd::AsRawFd::as_raw_fd(file),
            0,
            0,
            os::SYNC_FILE_RANGE_WRITE,
        );
    }
    #[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
    let _ = file;
}

/// Drop the clean cached pages of `len` bytes of `file` from `offset`, once a stage has read
/// them for the last time: they are recycled for the stage's own output instead of the kernel
/// taking fresh memory (which costs more than the copy into it on a virtual machine). A later
/// reader reads them from disk again.
pub fn drop_cached(file: &File, offset: u64, len: u64) {
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    // SAFETY: a plain system call on an open descriptor; it is only advice.
    unsafe {
        os::posix_fadvise(
            std::os::fd::AsRawFd::as_raw_fd(file),
            offset as i64,
            len as i64,
            os::POSIX_FADV_DONTNEED,
        );
    }
    #[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
    let _ = (file, offset, len);
}

#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
mod os {
    // From the C library (the values of Linux's headers; `off_t` is 64-bit on 64-bit Linux).
    pub const POSIX_FADV_DONTNEED: i32 = 4;
    pub const SYNC_FILE_RANGE_WRITE: u32 = 2;
    extern "C" {
        pub fn posix_fadvise(fd: i32, offset: i64, len: i64, advice: i32) -> i32;
        pub fn sync_file_range(fd: i32, offset: i64, nbytes: i64, flags: u32) -> i32;
    }
}
