//! Memory-mapped inputs that change underneath a stage.
//!
//! Reading a mapped page of a file that another process has truncated raises SIGBUS, which
//! would kill the stage without a word (exit 135). [`install`] (called by `cli::run`) turns it
//! into the toolkit's one-line error naming the file, removes the run's temporary outputs
//! and exits 1. A file rewritten in place without shrinking raises nothing; the run's
//! `Outputs::commit` notices the change of size or time and refuses to commit.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

const SLOTS: usize = 64;

/// The mapped ranges (start, length) and their files, in a ring (a signal handler reads them:
/// only atomics and leaked C strings).
static STARTS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
static LENS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
static NAMES: [AtomicPtr<libc::c_char>; SLOTS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; SLOTS];
static NEXT: AtomicUsize = AtomicUsize::new(0);
/// Temporary outputs of the running process to remove before exiting.
static TEMPS: [AtomicPtr<libc::c_char>; SLOTS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; SLOTS];
static NEXT_TEMP: AtomicUsize = AtomicUsize::new(0);
static TOOL: AtomicPtr<libc::c_char> = AtomicPtr::new(std::ptr::null_mut());
/// Set by the first thread to fault: the others wait for it to end the process.
static FAULTED: AtomicBool = AtomicBool::new(false);

fn leak(s: &str) -> *mut libc::c_char {
    CString::new(s.replace('\0', ""))
        .unwrap_or_default()
        .into_raw()
}

/// Remember that `len` bytes from `start` map `file` (named in the error if they vanish).
pub(crate) fn watch(start: *const u8, len: usize, file: &std::fs::File) {
    #[cfg(unix)]
    let name = {
        let fd = std::os::fd::AsRawFd::as_raw_fd(file);
        std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "an input file".into())
    };
    #[cfg(not(unix))]
    let name = {
        let _ = file;
        "an input file".to_string()
    };
    let i = NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS;
    LENS[i].store(0, Ordering::SeqCst);
    STARTS[i].store(start as usize, Ordering::SeqCst);
    // The previous name of a reused slot is leaked: a handful of bytes per mapped file.
    NAMES[i].store(leak(&name), Ordering::SeqCst);
    LENS[i].store(len, Ordering::SeqCst);
}

/// Remember a temporary output to remove if the process dies of a changed input.
pub(crate) fn note_temp(path: &std::path::Path) {
    let i = NEXT_TEMP.fetch_add(1, Ordering::Relaxed) % SLOTS;
    TEMPS[i].store(leak(&path.display().to_string()), Ordering::SeqCst);
}

/// Turn SIGBUS into `TOOL: error: FILE: ...` and exit status 1.
pub fn install(tool: &str) {
    TOOL.store(leak(tool), Ordering::SeqCst);
    #[cfg(unix)]
    // SAFETY: installs a handler that only reads atomics and calls async-signal-safe
    // functions (write, unlink, _exit).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigbus as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
    }
}

#[cfg(unix)]
fn put(s: *const libc::c_char) {
    if s.is_null() {
        return;
    }
    // SAFETY: `s` is a leaked, NUL-terminated C string.
    unsafe {
        libc::write(2, s as *const libc::c_void, libc::strlen(s));
    }
}

#[cfg(unix)]
fn put_str(s: &str) {
    // SAFETY: writes `s.len()` bytes of a valid string.
    unsafe {
        libc::write(2, s.as_ptr() as *const libc::c_void, s.len());
    }
}

#[cfg(unix)]
extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    if FAULTED.swap(true, Ordering::SeqCst) {
        // Another thread is reporting; it ends the process.
        loop {
            // SAFETY: waits for a signal (the process's end), async-signal-safe.
            unsafe { libc::pause() };
        }
    }
    // SAFETY: the kernel passes a valid siginfo for a SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    let mut name: *const libc::c_char = std::ptr::null();
    for i in 0..SLOTS {
        let (s, l) = (
            STARTS[i].load(Ordering::SeqCst),
            LENS[i].load(Ordering::SeqCst),
        );
        if l > 0 && addr >= s && addr < s + l {
            name = NAMES[i].load(Ordering::SeqCst);
        }
    }
    let tool = TOOL.load(Ordering::SeqCst);
    put(tool);
    put_str(if tool.is_null() {
        "error: "
    } else {
        ": error: "
    });
    if name.is_null() {
        put_str("an input file");
    } else {
        put(name);
    }
    put_str(": the file shrank or was rewritten while this run read it; run again on the complete file\n");
    for t in &TEMPS {
        let p = t.load(Ordering::SeqCst);
        if !p.is_null() {
            // SAFETY: a leaked, NUL-terminated path.
            unsafe {
                libc::unlink(p);
            }
        }
    }
    // SAFETY: ends the process at once (no destructors, nothing that could take a lock).
    unsafe { libc::_exit(1) }
}
