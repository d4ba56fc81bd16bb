//! What every binary shares: common flags, logging to stderr, progress bars, and the
//! `main` wrapper that turns an error into one line and a non-zero exit code.

use crate::Result;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

/// What `--version` prints after the binary's name: the package version and, when it was built
/// from a git checkout, the commit (`0.1.0 (git 1a2b3c4d5e6f)`; see build.rs).
pub const LONG_VERSION: &str = env!("CELLWEAVE_LONG_VERSION");

/// Flags every cellweave binary takes.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct Common {
    /// Worker threads (default: all cores)
    #[arg(long, value_name = "N")]
    #[serde(skip)]
    pub threads: Option<usize>,
    /// Print nothing but errors
    #[arg(short, long)]
    #[serde(skip)]
    pub quiet: bool,
}

/// Apply the common flags: thread pool size and verbosity.
pub fn init(common: &Common) {
    QUIET.store(common.quiet, Ordering::Relaxed);
    if let Some(n) = common.threads {
        let n = n.max(1);
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
        // Matrix kernels (faer/gemm in candle) read this too.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
}

pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Log a line to stderr unless `--quiet`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => {
        if !$crate::cli::quiet() { eprintln!($($arg)*); }
    };
}

/// A progress bar on stderr when it is a terminal (hidden under `--quiet` or when piped,
/// so workflow logs stay clean).
pub fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    if quiet() || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>12} [{bar:30}] {pos}/{len} ({elapsed}, eta {eta})",
        )
        .unwrap()
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Run a tool's body; print an error as `cellweave-<tool>: error: <one line>` and exit 1.
pub fn run(tool: &str, body: impl FnOnce() -> Result<()>) -> ExitCode {
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed pipe (e.g. `| head`) is a normal way to stop reading.
            if e.msg.contains("Broken pipe") {
                return ExitCode::SUCCESS;
            }
            eprintln!("{tool}: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Start timing a stage; `done` logs the elapsed time.
pub struct Timer(std::time::Instant, &'static str);

impl Timer {
    pub fn start(what: &'static str) -> Self {
        Timer(std::time::Instant::now(), what)
    }
    pub fn done(self) {
        crate::info!("{}: {:.2} s", self.1, self.0.elapsed().as_secs_f64());
    }
}
