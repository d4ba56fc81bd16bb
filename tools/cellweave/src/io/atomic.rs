//! Outputs appear whole or not at all, and all of a run's outputs together.
//!
//! A stage that fails half-way (bad input, a full disk, a killed job) must leave no file that
//! a workflow engine could mistake for a finished output, and must leave the outputs of an
//! earlier run exactly as they were. A binary declares every output of its run in one
//! [`Outputs`] before any work: each is checked (file name, format, not an input, not given
//! twice, writable place) and gets a temporary sibling `.NAME.tmp-PID`. The writers
//! ([`write_file`], [`write_path`], [`write_dir`]) write a declared output into its temporary
//! sibling and leave it there; [`Outputs::commit`] renames them all into place once the whole
//! run has succeeded. Dropping an uncommitted [`Outputs`] (an error, a panic) removes them.
//! A path nobody declared (a checkpoint) is renamed into place as soon as it is written.
//!
//! A killed run leaves its temporary siblings behind: the next write of the same output
//! removes those of processes that no longer exist.

use crate::{Error, Result, ResultExt};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The hidden temporary sibling of `path` this process writes: `.NAME.tmp-PID`.
pub fn temp_sibling(path: &Path) -> PathBuf {
    path.with_file_name(format!(".{}.tmp-{}", file_name(path), std::process::id()))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

fn ensure_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            std::fs::create_dir_all(parent).at(parent)?;
        }
    }
    Ok(())
}

/// Remove the temporary siblings of `path` (`.NAME.tmp-PID`) that processes which no longer
/// exist left behind (a kill -9, a SIGTERM, a lost node). Those of live processes stay.
pub fn remove_stale(path: &Path) {
    let prefix = format!(".{}.tmp-", file_name(path));
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let digits = rest.split(|c: char| !c.is_ascii_digit()).next();
        let Some(pid) = digits.and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !process_alive(pid) {
            let p = e.path();
            let _ = std::fs::remove_file(&p).or_else(|_| std::fs::remove_dir_all(&p));
        }
    }
}

/// Whether process `pid` may still run (unix: `kill(pid, 0)`; elsewhere assume so).
pub fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        // SAFETY: signal 0 only checks that the process exists; nothing is sent.
        let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// An output declared in the running [`Outputs`].
struct Declared {
    /// The [`Outputs`] that declared it.
    run: u64,
    path: PathBuf,
    /// `path` made absolute, to recognise it whatever way a writer names it.
    key: PathBuf,
    tmp: PathBuf,
    dir: bool,
    written: bool,
}

/// The outputs of the run in progress (one per process: a binary runs one stage).
static RUN: Mutex<Vec<Declared>> = Mutex::new(Vec::new());

fn run_state() -> std::sync::MutexGuard<'static, Vec<Declared>> {
    RUN.lock().unwrap_or_else(|e| e.into_inner())
}

fn key(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The temporary sibling of `path` if the running [`Outputs`] declared it.
fn staged(path: &Path, dir: bool) -> Option<PathBuf> {
    let k = key(path);
    run_state()
        .iter()
        .find(|d| d.key == k && d.dir == dir)
        .map(|d| d.tmp.clone())
}

fn mark_written(path: &Path) {
    let k = key(path);
    if let Some(d) = run_state().iter_mut().find(|d| d.key == k) {
        d.written = true;
    }
}

/// What an input looked like when the run began; a change by commit time means the run read
/// a file that was being rewritten.
#[derive(Clone)]
struct Stamp {
    path: PathBuf,
    meta: Option<(u64, Option<std::time::SystemTime>, u64)>,
}

/// The inputs of the runs of this process, as they were when each began.
static INPUTS: Mutex<Vec<Stamp>> = Mutex::new(Vec::new());

/// The error to report if an input of this process's run changed since the run began (was
/// rewritten or truncated in place while read): it explains any other error the run met,
/// such as a write from a mapped page that vanished ("Bad address").
pub fn input_changed() -> Option<Error> {
    changed(&INPUTS.lock().unwrap_or_else(|e| e.into_inner()))
}

fn changed(inputs: &[Stamp]) -> Option<Error> {
    inputs
        .iter()
        .find(|s| s.meta.is_some() && stamp(&s.path) != s.meta)
        .map(|s| {
            Error::new(
                "the file shrank or was rewritten while this run read it; run again on the complete file",
            )
            .file(&s.path)
        })
}

fn stamp(path: &Path) -> Option<(u64, Option<std::time::SystemTime>, u64)> {
    let m = std::fs::metadata(path).ok()?;
    if m.is_dir() {
        return None;
    }
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let ino = 0;
    Some((m.len(), m.modified().ok(), ino))
}

/// The file names an output may have, by format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A contract table: `.arrow` (`.ipc`, `.feather`) or `.parquet`.
    Table,
    /// A contract table or a TSV (side tables: QC report, genes, training log).
    TableOrTsv,
    /// Scores: a table, a wide TSV or JSON.
    Scores,
    /// An image: `.png` or `.svg`.
    Image,
    /// An embedding table or a TSV/CSV of coordinates.
    TableOrText,
    /// A directory (a model, a 10x folder).
    Dir,
    /// Any file name (the writer checks it).
    Any,
}

impl Kind {
    fn accepts(self, path: &Path) -> bool {
        use super::Format as F;
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let table = matches!(F::of(path), Some(F::Arrow | F::Parquet));
        let tsv = matches!(F::of(path), Some(F::Tsv));
        match self {
            Kind::Table => table,
            Kind::TableOrTsv => table || tsv,
            Kind::Scores => table || tsv || ext == "json",
            Kind::Image => ext == "png" || ext == "svg",
            Kind::TableOrText => table || tsv || matches!(F::of(path), Some(F::Csv)),
            Kind::Dir | Kind::Any => true,
        }
    }
    fn expected(self) -> &'static str {
        match self {
            Kind::Table => "a .arrow or .parquet file name",
            Kind::TableOrTsv => "a .arrow, .parquet or .tsv file name",
            Kind::Scores => "a .arrow, .parquet, .tsv or .json file name",
            Kind::Image => "a .png or .svg file name",
            Kind::TableOrText => "a .arrow, .parquet, .tsv or .csv file name",
            Kind::Dir => "a directory",
            Kind::Any => "a file name",
        }
    }
}

/// The outputs of one run, committed together (see the module's documentation).
///
/// ```ignore
/// let mut outputs = Outputs::new(&[&args.input])?;
/// outputs.file(&args.output, Kind::Table)?;
/// outputs.file_opt(args.qc_report.as_deref(), Kind::TableOrTsv)?;
/// // ... the work; the writers stage every declared output ...
/// outputs.commit()
/// ```
pub struct Outputs {
    id: u64,
    inputs: Vec<Stamp>,
    committed: bool,
}

static NEXT_RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Outputs {
    /// Begin a run that reads `inputs` (outputs may not overwrite them, and they must not
    /// change while the run reads them).
    pub fn new(inputs: &[&Path]) -> Result<Outputs> {
        let stamps: Vec<Stamp> = inputs
            .iter()
            .map(|p| Stamp {
                path: p.to_path_buf(),
                meta: stamp(p),
            })
            .collect();
        INPUTS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(stamps.iter().cloned());
        Ok(Outputs {
            id: NEXT_RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            inputs: stamps,
            committed: false,
        })
    }

    /// Declare the output file `path`: check it now, before any work, and stage its writes.
    pub fn file(&mut self, path: &Path, kind: Kind) -> Result<&mut Self> {
        self.declare(path, kind)?;
        Ok(self)
    }

    /// [`Outputs::file`] for an optional output.
    pub fn file_opt(&mut self, path: Option<&Path>, kind: Kind) -> Result<&mut Self> {
        match path {
            Some(p) => self.file(p, kind),
            None => Ok(self),
        }
    }

    /// Declare the output directory `path` (a model, a 10x folder) and return its staging
    /// directory, created empty: write the directory's files there (or through
    /// [`write_dir`]`(path, ..)`); the commit swaps it into place whole.
    pub fn dir(&mut self, path: &Path) -> Result<PathBuf> {
        self.declare(path, Kind::Dir)
    }

    fn declare(&mut self, path: &Path, kind: Kind) -> Result<PathBuf> {
        if path.as_os_str().is_empty() || path.file_name().is_none() {
            return Err(Error::new(format!("expected {}", kind.expected())).file(path));
        }
        if !kind.accepts(path) {
            return Err(Error::new(format!("expected {}", kind.expected())).file(path));
        }
        let inputs: Vec<&Path> = self.inputs.iter().map(|s| s.path.as_path()).collect();
        check_not_input(path, &inputs)?;
        let k = key(path);
        if run_state().iter().any(|d| d.key == k) {
            return Err(Error::new(
                "given as two outputs of this run (one would overwrite the other)",
            )
            .file(path));
        }
        let dir = kind == Kind::Dir;
        if path.is_dir() != dir && path.exists() {
            let msg = if dir {
                "exists and is not a directory"
            } else {
                "is a directory (expected a file name)"
            };
            return Err(Error::new(msg).file(path));
        }
        ensure_parent(path)?;
        remove_stale(path);
        let tmp = temp_sibling(path);
        // Create the temporary sibling now: a place the run cannot write to (a read-only
        // directory, a missing mount) fails here, before the work.
        if dir {
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir(&tmp).at(path)?;
        } else {
            File::create(&tmp).at(path)?;
            super::mapped::note_temp(&tmp);
        }
        run_state().push(Declared {
            run: self.id,
            path: path.to_path_buf(),
            key: k,
            tmp: tmp.clone(),
            dir,
            written: false,
        });
        Ok(tmp)
    }

    /// Mark a declared directory as complete (for callers that fill [`Outputs::dir`]'s
    /// staging directory themselves rather than through [`write_dir`]).
    pub fn dir_done(&mut self, path: &Path) {
        mark_written(path);
    }

    /// Rename every written output into place (the first declared, by convention the main
    /// output, last). Fails, leaving the earlier outputs as they were, if an input changed
    /// while the run read it.
    pub fn commit(mut self) -> Result<()> {
        if let Some(e) = changed(&self.inputs) {
            return Err(e);
        }
        let declared = self.take();
        self.committed = true;
        let mut result = Ok(());
        for d in declared.iter().rev() {
            if result.is_err() || !d.written {
                remove_temp(d);
                continue;
            }
            result = if d.dir {
                swap_dir(&d.tmp, &d.path)
            } else {
                std::fs::rename(&d.tmp, &d.path).at(&d.path)
            };
            if result.is_err() {
                remove_temp(d);
            }
        }
        result
    }
}

impl Drop for Outputs {
    fn drop(&mut self) {
        if !self.committed {
            for d in self.take() {
                remove_temp(&d);
            }
        }
    }
}

impl Outputs {
    /// This run's declared outputs, taken out of the process's list.
    fn take(&self) -> Vec<Declared> {
        let mut all = run_state();
        let (mine, others) = std::mem::take(&mut *all)
            .into_iter()
            .partition(|d| d.run == self.id);
        *all = others;
        mine
    }
}

fn remove_temp(d: &Declared) {
    if d.dir {
        let _ = std::fs::remove_dir_all(&d.tmp);
    } else {
        let _ = std::fs::remove_file(&d.tmp);
    }
}

/// Swap two existing paths in one atomic step (Linux `renameat2(RENAME_EXCHANGE)`); an
/// error where the system or file system has no such call.
pub fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let ca = std::ffi::CString::new(a.as_os_str().as_bytes())?;
        let cb = std::ffi::CString::new(b.as_os_str().as_bytes())?;
        // SAFETY: two valid NUL-terminated paths that outlive the call; it only renames.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                ca.as_ptr(),
                libc::AT_FDCWD,
                cb.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (a, b);
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }
}

/// Put the complete directory `tmp` in the place of `path`: one atomic exchange where the
/// system has one, so that `path` is never missing; the old directory is then removed.
fn swap_dir(tmp: &Path, path: &Path) -> Result<()> {
    if !path.exists() {
        return std::fs::rename(tmp, path).at(path);
    }
    if exchange(tmp, path).is_ok() {
        // `tmp` now holds the old directory.
        let _ = std::fs::remove_dir_all(tmp);
        return Ok(());
    }
    // No exchange here (another system, a file system without it): move the old directory
    // aside (it is removed as a stale sibling if a kill comes now), then move the new one in.
    let old = path.with_file_name(format!(
        ".{}.tmp-{}-old",
        file_name(path),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&old);
    std::fs::rename(path, &old).at(path)?;
    std::fs::rename(tmp, path).at(path)?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Write a file through `f` into a temporary sibling and rename it onto `path` on success
/// (or, for an output the running [`Outputs`] declared, when the run commits).
pub fn write_file<T>(path: &Path, f: impl FnOnce(&mut BufWriter<File>) -> Result<T>) -> Result<T> {
    write_path(path, |tmp| {
        let file = File::create(tmp).at(path)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let out = f(&mut w)?;
        w.flush().at(path)?;
        Ok(out)
    })
}

/// Like [`write_file`] for writers that need a path (HDF5): `f` writes the file at the
/// temporary path it is given.
pub fn write_path<T>(path: &Path, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    write_staged(path, false, f)
}

/// Write a directory (a 10x MTX folder, a model) into a temporary sibling and put it in
/// place whole. An existing directory at `path` is replaced only once the new one is
/// complete (when the run commits, for a declared output).
pub fn write_dir<T>(path: &Path, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    write_staged(path, true, f)
}

/// [`write_path`] (a file) or, with `dir`, [`write_dir`]: `f` writes at a temporary place
/// (the run's staging place for a declared output, else a sibling), put in place on success
/// (at once, or when the run commits); on failure what `f` left is removed.
fn write_staged<T>(path: &Path, dir: bool, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    ensure_parent(path)?;
    remove_stale(path);
    let (tmp, deferred) = match staged(path, dir) {
        Some(t) => (t, true),
        None => (temp_sibling(path), false),
    };
    if dir {
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).at(path)?;
    } else {
        let _ = std::fs::remove_file(&tmp);
    }
    match f(&tmp) {
        Ok(out) if deferred => {
            mark_written(path);
            Ok(out)
        }
        Ok(out) => {
            if dir {
                swap_dir(&tmp, path)?;
            } else {
                std::fs::rename(&tmp, path).at(path)?;
            }
            Ok(out)
        }
        Err(e) => {
            if !dir {
                let _ = std::fs::remove_file(&tmp);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn put(path: &Path, text: &str) -> Result<()> {
        write_file(path, |w| Ok(w.write_all(text.as_bytes())?))
    }

    fn get(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn a_run_commits_all_its_outputs_or_none() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.tsv"), d.path().join("b.tsv"));
        put(&a, "old a").unwrap();
        put(&b, "old b").unwrap();
        {
            let mut run = Outputs::new(&[]).unwrap();
            run.file(&a, Kind::TableOrTsv).unwrap();
            run.file(&b, Kind::TableOrTsv).unwrap();
            put(&a, "new a").unwrap();
            assert_eq!(get(&a), "old a", "a declared output waits for the commit");
            // The run fails here: dropped without a commit.
        }
        assert_eq!((get(&a), get(&b)), ("old a".into(), "old b".into()));
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            2,
            "no temp left"
        );
        let mut run = Outputs::new(&[]).unwrap();
        run.file(&a, Kind::TableOrTsv).unwrap();
        run.file(&b, Kind::TableOrTsv).unwrap();
        put(&a, "new a").unwrap();
        put(&b, "new b").unwrap();
        run.commit().unwrap();
        assert_eq!((get(&a), get(&b)), ("new a".into(), "new b".into()));
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
    }

    #[test]
    fn outputs_are_checked_when_declared() {
        let d = tempfile::tempdir().unwrap();
        let input = d.path().join("in.arrow");
        put(&input, "x").unwrap();
        let mut run = Outputs::new(&[&input]).unwrap();
        let e = run.file(&input, Kind::Table).err().unwrap();
        assert!(e.to_string().contains("overwrite an input"), "{e}");
        let e = run
            .file(&d.path().join("o.xyz"), Kind::Table)
            .err()
            .unwrap();
        assert!(e.to_string().contains(".arrow or .parquet"), "{e}");
        run.file(&d.path().join("o.arrow"), Kind::Table).unwrap();
        let e = run
            .file(&d.path().join("./o.arrow"), Kind::Table)
            .err()
            .unwrap();
        assert!(e.to_string().contains("two outputs"), "{e}");
    }

    #[test]
    fn a_declared_directory_is_swapped_in_whole() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("model");
        std::fs::create_dir(&m).unwrap();
        std::fs::write(m.join("old"), "1").unwrap();
        let mut run = Outputs::new(&[]).unwrap();
        let staged = run.dir(&m).unwrap();
        std::fs::write(staged.join("new"), "2").unwrap();
        run.dir_done(&m);
        assert!(m.join("old").exists());
        run.commit().unwrap();
        assert!(m.join("new").exists() && !m.join("old").exists());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_temps_of_dead_processes_go() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("o.tsv");
        let dead = (4_000_000u32..4_100_000)
            .find(|p| !process_alive(*p))
            .unwrap();
        let stale = d.path().join(format!(".o.tsv.tmp-{dead}"));
        std::fs::write(&stale, "partial").unwrap();
        std::fs::create_dir(d.path().join(format!(".o.tsv.tmp-{dead}-old"))).unwrap();
        put(&out, "x").unwrap();
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
