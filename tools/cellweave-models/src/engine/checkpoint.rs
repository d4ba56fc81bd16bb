//! Checkpoints that cannot tear, and model directories that appear whole.
//!
//! The checkpoints of a model directory `DIR/NAME` live beside it, in `DIR/.NAME.checkpoint/`
//! (the model directory itself appears only once a run has succeeded):
//!
//! ```text
//! DIR/.NAME.checkpoint/
//!   epoch-000004/          one checkpoint: the state after global epoch 4
//!     manifest.json        written last: format, model, epoch, and the size and XXH64 of
//!                          every other file of the checkpoint
//!     state.safetensors    ... the model's files (CLAIRE: state.safetensors, state.json,
//!     state.json               refined_pairs.arrow)
//! ```
//!
//! A checkpoint is written into `.epoch-000004.tmp-PID`, each file and then the folder
//! fsynced, and renamed to `epoch-000004` in one step (the parent folder fsynced after);
//! the older checkpoints are removed only after that. A kill at any point leaves either
//! the previous checkpoint or the new one, never a mix; [`Checkpoints::latest`] takes the
//! newest and checks every file against the manifest, so a damaged or hand-mixed
//! checkpoint is refused with one line instead of resuming into a different model.
//!
//! A finished model directory is assembled under `.NAME.tmp-PID` and put in place by one
//! rename ([`commit_dir`]: an atomic exchange with the previous directory where the file
//! system supports it), so a run that fails leaves the previous model as it was. Hidden
//! temporaries of processes that no longer run (`.NAME.tmp-PID`) are removed by the next
//! run on the same output ([`clean_stale`]).
//!
//! XXH64 (the `twox-hash` crate) is a fast non-cryptographic checksum: it detects a torn,
//! truncated, corrupted or swapped file with probability 1 - 2^-64; it is not meant to
//! resist a deliberate forgery.

use crate::CandleExt;
use cellweave::io::atomic::{exchange, process_alive, temp_sibling};
use cellweave::{info, Error, Result, ResultExt};
use std::collections::BTreeMap;
use std::fs::File;
use std::hash::Hasher;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";
/// Version of the checkpoint layout.
pub const FORMAT: u32 = 1;

/// Size and checksum of one file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileSum {
    /// Size in bytes.
    pub bytes: u64,
    /// XXH64 (seed 0) of the file's bytes, 16 hex digits.
    pub xxh64: String,
}

/// `manifest.json`: what a checkpoint holds.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// The manifest format version.
    pub format: u32,
    /// The model that wrote it (`claire`).
    pub model: String,
    /// Global epochs done at the checkpoint.
    pub epoch: usize,
    /// Every other file of the checkpoint.
    pub files: BTreeMap<String, FileSum>,
}

/// Size and XXH64 of a file.
pub fn file_sum(path: &Path) -> Result<FileSum> {
    let mut f = File::open(path).at(path)?;
    let mut h = twox_hash::XxHash64::with_seed(0);
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).at(path)?;
        if n == 0 {
            break;
        }
        h.write(&buf[..n]);
        bytes += n as u64;
    }
    Ok(FileSum {
        bytes,
        xxh64: format!("{:016x}", h.finish()),
    })
}

/// Flush a file's data to disk.
fn sync_file(path: &Path) -> Result<()> {
    File::open(path).and_then(|f| f.sync_all()).at(path)
}

/// Flush a folder's entries (names created or renamed in it) to disk.
pub fn sync_dir(path: &Path) -> Result<()> {
    // Opening a folder read-only and fsyncing it is how POSIX makes a rename durable.
    File::open(path).and_then(|f| f.sync_all()).at(path)
}

fn sibling(path: &Path, what: &str, pid: u32) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{what}-{pid}"))
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn remove_any(p: &Path) -> Result<()> {
    if p.is_dir() {
        std::fs::remove_dir_all(p).at(p)
    } else {
        std::fs::remove_file(p).at(p)
    }
}

/// Remove the hidden temporaries `.NAME.tmp-PID` that processes no longer running left
/// beside `path` (an output file or folder). A previous model directory that a killed
/// swap left as `.NAME.old-PID` is put back when `path` is missing.
pub fn clean_stale(path: &Path) -> Result<()> {
    let name = match path.file_name() {
        Some(n) => n.to_string_lossy().to_string(),
        None => return Ok(()),
    };
    let dir = parent_of(path);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().to_string();
        let Some(rest) = file.strip_prefix(&format!(".{name}.")) else {
            continue;
        };
        let Some((what, pid)) = rest.split_once('-') else {
            continue;
        };
        let (Ok(pid), true) = (pid.parse::<u32>(), what == "tmp" || what == "old") else {
            continue;
        };
        if process_alive(pid) {
            continue;
        }
        let p = entry.path();
        if what == "old" && !path.exists() {
            std::fs::rename(&p, path).at(path)?;
            info!(
                "restored {} from an interrupted replacement",
                path.display()
            );
        } else {
            remove_any(&p)?;
            info!("removed {} (left by a process that ended)", p.display());
        }
    }
    Ok(())
}

/// Write `value` as pretty JSON to `path`, atomically (a training state file).
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    cellweave::io::atomic::write_file(path, |w| {
        use std::io::Write;
        w.write_all(text.as_bytes())?;
        Ok(())
    })
}

/// Write a model directory so that a run that fails leaves the previous one as it was:
/// `write` fills a fresh folder beside `dest` (with every other output of the run), then
/// the folder becomes `dest` in one step ([`commit_dir`]); on an error the folder is
/// removed and the error returned.
pub fn write_model_dir(dest: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let staged = temp_sibling(dest);
    if staged.exists() {
        std::fs::remove_dir_all(&staged).at(&staged)?;
    }
    std::fs::create_dir_all(&staged).at(dest)?;
    let written = write(&staged).and_then(|()| commit_dir(&staged, dest));
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&staged);
    }
    written
}

/// Make the finished folder `staged` the folder `dest` in one step: fsync its files and
/// itself, then rename it onto `dest` (exchanging it with an existing `dest`, whose old
/// content is then removed), then fsync the parent.
pub fn commit_dir(staged: &Path, dest: &Path) -> Result<()> {
    for entry in std::fs::read_dir(staged).at(staged)?.flatten() {
        if entry.path().is_file() {
            sync_file(&entry.path())?;
        }
    }
    sync_dir(staged)?;
    if dest.exists() {
        if exchange(staged, dest).is_ok() {
            // `staged` now holds the previous directory.
            remove_any(staged)?;
        } else {
            // No atomic exchange here: move the old folder aside first; a kill between the
            // two renames is repaired by the next run (`clean_stale` puts it back).
            let old = sibling(dest, "old", std::process::id());
            std::fs::rename(dest, &old).at(dest)?;
            std::fs::rename(staged, dest).at(dest)?;
            remove_any(&old)?;
        }
    } else {
        std::fs::rename(staged, dest).at(dest)?;
    }
    sync_dir(&parent_of(dest))
}

/// The checkpoints of one model directory.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    root: PathBuf,
    model: String,
}

fn epoch_dir_name(epoch: usize) -> String {
    format!("epoch-{epoch:06}")
}

impl Checkpoints {
    /// The checkpoints of the model directory `model_dir` (of model `model`).
    pub fn of(model_dir: &Path, model: &str) -> Self {
        Checkpoints {
            root: sibling_named(model_dir, "checkpoint"),
            model: model.to_string(),
        }
    }

    /// The folder that holds them (`.NAME.checkpoint`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Write the checkpoint of global epoch `epoch`: `write` puts the model's files into
    /// the folder it is given; then the manifest, fsync, one rename, and the older
    /// checkpoints go.
    pub fn save(&self, epoch: usize, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        std::fs::create_dir_all(&self.root).at(&self.root)?;
        let dest = self.root.join(epoch_dir_name(epoch));
        let tmp = temp_sibling(&dest);
        if tmp.exists() {
            remove_any(&tmp)?;
        }
        std::fs::create_dir(&tmp).at(&tmp)?;
        let result = (|| -> Result<()> {
            write(&tmp)?;
            let mut files = BTreeMap::new();
            for entry in std::fs::read_dir(&tmp).at(&tmp)?.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                files.insert(name, file_sum(&entry.path())?);
            }
            let manifest = Manifest {
                format: FORMAT,
                model: self.model.clone(),
                epoch,
                files,
            };
            let mp = tmp.join(MANIFEST);
            std::fs::write(&mp, serde_json::to_string_pretty(&manifest)?).at(&mp)?;
            commit_dir(&tmp, &dest)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        for (e, p) in self.list()? {
            if e != epoch {
                remove_any(&p)?;
            }
        }
        Ok(())
    }

    /// The complete checkpoints (renamed into place), newest first.
    fn list(&self) -> Result<Vec<(usize, PathBuf)>> {
        self.list_with("epoch-")
    }

    /// The entries `<prefix>NNNNNN[.anything]` of the root with their epoch, newest first.
    fn list_with(&self, prefix: &str) -> Result<Vec<(usize, PathBuf)>> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Ok(out);
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let epoch = name
                .strip_prefix(prefix)
                .map(|rest| rest.split('.').next().unwrap_or(rest))
                .and_then(|e| e.parse().ok());
            if let Some(e) = epoch {
                out.push((e, entry.path()));
            }
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.0));
        Ok(out)
    }

    /// The newest checkpoint, verified against its manifest (`None`: there is none).
    /// A checkpoint that fails the check is an error naming the file.
    pub fn latest(&self) -> Result<Option<PathBuf>> {
        // Temporaries of writers that were killed are not checkpoints.
        for (epoch, _) in self.list_with(".epoch-")? {
            clean_stale(&self.root.join(epoch_dir_name(epoch)))?;
        }
        match self.list()?.into_iter().next() {
            Some((epoch, dir)) => {
                self.verify(&dir, epoch)?;
                Ok(Some(dir))
            }
            None => Ok(None),
        }
    }

    /// Check a checkpoint folder against its manifest.
    pub fn verify(&self, dir: &Path, epoch: usize) -> Result<Manifest> {
        let mp = dir.join(MANIFEST);
        let refuse = |what: String| {
            Err(Error::new(format!(
                "{what}: the checkpoint is damaged or not this run's; rerun without --resume"
            ))
            .file(dir))
        };
        let text = match std::fs::read_to_string(&mp) {
            Ok(t) => t,
            Err(_) => return refuse(format!("no readable {MANIFEST}")),
        };
        let m: Manifest = match serde_json::from_str(&text) {
            Ok(m) => m,
            Err(e) => return refuse(format!("invalid {MANIFEST} ({e})")),
        };
        if m.format != FORMAT || m.model != self.model || m.epoch != epoch {
            return refuse(format!(
                "{MANIFEST} says format {} model {} epoch {} (expected format {FORMAT}, model {}, epoch {epoch})",
                m.format, m.model, m.epoch, self.model
            ));
        }
        let mut present: Vec<String> = std::fs::read_dir(dir)
            .at(dir)?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n != MANIFEST)
            .collect();
        present.sort();
        let listed: Vec<String> = m.files.keys().cloned().collect();
        if present != listed {
            return refuse(format!(
                "files {present:?} differ from the manifest's {listed:?}"
            ));
        }
        for (name, want) in &m.files {
            let got = file_sum(&dir.join(name))?;
            if &got != want {
                return refuse(format!(
                    "{name} has {} bytes, XXH64 {} (the manifest says {} bytes, {})",
                    got.bytes, got.xxh64, want.bytes, want.xxh64
                ));
            }
        }
        Ok(m)
    }

    /// Remove every checkpoint (a new run, or a run that has finished).
    pub fn remove_all(&self) -> Result<()> {
        if self.root.exists() {
            std::fs::remove_dir_all(&self.root).at(&self.root)?;
        }
        Ok(())
    }
}

/// `DIR/.NAME.<what>` beside `path`.
fn sibling_named(path: &Path, what: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{what}"))
}

/// Save named tensors as safetensors, atomically.
pub fn save_tensors(
    path: &Path,
    tensors: &std::collections::HashMap<String, candle_core::Tensor>,
) -> Result<()> {
    cellweave::io::atomic::write_path(path, |tmp| {
        candle_core::safetensors::save(tensors, tmp).ce().at(path)
    })
}

/// Load the named tensors of a safetensors file onto the CPU.
pub fn load_tensors(path: &Path) -> Result<std::collections::HashMap<String, candle_core::Tensor>> {
    if !path.exists() {
        return Err(Error::new("file not found").file(path));
    }
    candle_core::safetensors::load(path, &candle_core::Device::Cpu)
        .ce()
        .at(path)
}

/// The tensor `name` of `tensors`, which must have the dimensions `dims` (the messages show
/// the name in quotes when `quoted`).
pub fn named_tensor<'t>(
    tensors: &'t std::collections::HashMap<String, candle_core::Tensor>,
    name: &str,
    dims: &[usize],
    quoted: bool,
) -> candle_core::Result<&'t candle_core::Tensor> {
    let shown = if quoted {
        format!("'{name}'")
    } else {
        name.to_string()
    };
    let x = tensors
        .get(name)
        .ok_or_else(|| candle_core::Error::Msg(format!("missing tensor {shown}")))?;
    if x.dims() != dims {
        return Err(candle_core::Error::Msg(format!(
            "tensor {shown} has shape {:?}, expected {dims:?}",
            x.dims()
        )));
    }
    Ok(x)
}
