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

/// Flags every cellweave binary takes, added by [`main`] after the binary's own (they are
/// never recorded in a provenance).
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Worker threads (default: all cores) (at least 1)
    #[arg(value_parser = crate::cli::range::at_least_1, long, value_name = "N")]
    pub threads: Option<usize>,
    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,
}

/// The `"common": {}` that the parameters of some tools (import, export, pairs, refine,
/// impute, score) record in their provenance: a field `#[arg(skip)] common: cli::NoCommon`
/// keeps their provenance as it was. The common flags themselves are never recorded.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct NoCommon {}

/// The `main` of a binary: parse its arguments `A` followed by the common flags ([`Common`]),
/// apply those, run `body` and exit as [`run`] does. The tool's name (in error lines) is the
/// command's name, `cellweave-<tool>`.
pub fn main<A: clap::Parser>(body: impl FnOnce(A) -> Result<()>) -> ExitCode {
    let (args, common) = parse::<A>();
    init(&common);
    let tool = A::command().get_name().to_string();
    run(&tool, || body(args))
}

/// The `main` of a stage ([`stage_main!`]): as [`main`], with the run's provenance step (the
/// tool's name and its parsed arguments `A`) handed to `body` with the arguments.
pub fn stage<A: clap::Parser + serde::Serialize>(
    body: impl FnOnce(&A, crate::contract::Step) -> Result<()>,
) -> ExitCode {
    main(|args: A| {
        let step = crate::contract::Step::new(A::command().get_name(), &args);
        body(&args, step)
    })
}

/// The command of a binary: its arguments `A`, then the common flags (the description stays
/// the binary's).
pub fn command<A: clap::CommandFactory>() -> clap::Command {
    use clap::builder::Resettable;
    use clap::Args as _;
    let cmd = A::command();
    let text = |t: Option<&clap::builder::StyledStr>| {
        t.cloned().map_or(Resettable::Reset, Resettable::Value)
    };
    let (about, long_about) = (text(cmd.get_about()), text(cmd.get_long_about()));
    Common::augment_args(cmd)
        .about(about)
        .long_about(long_about)
}

/// Parse the command line: the binary's arguments and the common flags. A usage error (an
/// unknown flag, a value out of its range) is one line, `cellweave-<tool>: error: ...`, with
/// exit status 1 like every other error; `--help` and `--version` print as usual.
fn parse<A: clap::Parser>() -> (A, Common) {
    use clap::error::ErrorKind as K;
    use clap::FromArgMatches as _;
    let mut cmd = command::<A>();
    let parsed = cmd
        .try_get_matches_from_mut(std::env::args_os())
        .and_then(|m| Ok((A::from_arg_matches(&m)?, Common::from_arg_matches(&m)?)));
    match parsed.map_err(|e| e.format(&mut cmd)) {
        Ok(parsed) => parsed,
        Err(e) if matches!(e.kind(), K::DisplayHelp | K::DisplayVersion) => e.exit(),
        Err(e) => {
            let text = e.to_string();
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| {
                    !l.is_empty()
                        && !l.starts_with("Usage:")
                        && !l.starts_with("For more information")
                })
                .collect();
            let line = lines.join(" ");
            let line = line.strip_prefix("error: ").unwrap_or(&line);
            let tool = cmd.get_name().to_string();
            log(format_args!("{tool}: error: {line}"));
            std::process::exit(1)
        }
    }
}

/// A parameter struct as the command line gives it when none of its flags is set: the
/// defaults its `#[arg]` attributes declare. `Default` of a library parameter struct is this,
/// so that a default is written once, on its flag.
pub fn defaults<T: clap::Args + clap::FromArgMatches>() -> T {
    let cmd = T::augment_args(clap::Command::new("defaults").no_binary_name(true));
    let matches = cmd
        .try_get_matches_from(std::iter::empty::<&str>())
        .expect("every flag of a parameter struct has a default or is optional");
    T::from_arg_matches(&matches).expect("the defaults of a parameter struct parse")
}

/// The arguments of a command (and of its subcommands) that have no help text, as `--name`
/// (or the id of a positional argument); clap's own `--help` and `--version` are not counted.
pub fn undocumented(cmd: &clap::Command) -> Vec<String> {
    let mut missing: Vec<String> = cmd
        .get_arguments()
        .filter(|a| a.get_help().is_none())
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .map(|a| match a.get_long() {
            Some(long) => format!("--{long}"),
            None => a.get_id().to_string(),
        })
        .collect();
    for sub in cmd.get_subcommands() {
        missing.extend(undocumented(sub));
    }
    missing
}

/// Long flags, short flags or argument ids that a command (or one of its subcommands) declares
/// more than once. clap checks this only in debug builds (`debug_assert` does nothing in a
/// release build, where the tests run), and a flattened struct can silently take another's
/// flag: a flag of one model once shadowed CLAIRE's flag of the same name.
pub fn duplicated(cmd: &clap::Command) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut twice = Vec::new();
    for a in cmd.get_arguments() {
        let mut names = vec![format!("id {}", a.get_id())];
        names.extend(a.get_long().map(|l| format!("--{l}")));
        names.extend(a.get_short().map(|c| format!("-{c}")));
        for name in names {
            if !seen.insert(name.clone()) {
                twice.push(name);
            }
        }
    }
    for sub in cmd.get_subcommands() {
        twice.extend(duplicated(sub));
    }
    twice
}

/// A test that fails when a flag of the binary's command (its `Args` and the common flags)
/// has no help text, when a flag is declared twice ([`duplicated`]), or when clap finds the
/// command malformed (debug builds only):
/// `cellweave::help_test!(Args);` at the end of a `main.rs`.
#[macro_export]
macro_rules! help_test {
    ($args:ident) => {
        #[cfg(test)]
        mod help_test {
            #[test]
            fn every_flag_has_help() {
                let cmd = $crate::cli::command::<super::$args>();
                cmd.clone().debug_assert();
                let missing = $crate::cli::undocumented(&cmd);
                assert!(missing.is_empty(), "flags without help text: {missing:?}");
                let twice = $crate::cli::duplicated(&cmd);
                assert!(twice.is_empty(), "flags declared twice: {twice:?}");
            }
        }
    };
}

/// The whole `main.rs` of a stage whose flags are one library struct: `Args`, that struct
/// flattened (the doc comment and `#[command]` attributes before `struct` make the binary's
/// description, name and version), a `main` that runs `run(&args, step)` through [`stage`]
/// (`step`: the provenance step of the run), and [`help_test!`]. `common: NoCommon` after the
/// struct adds the `"common": {}` that some stages record in their provenance ([`NoCommon`]).
///
/// ```ignore
/// cellweave::stage_main! {
///     /// Select highly variable genes; ...
///     #[command(name = "cellweave-hvg", version = cellweave::cli::LONG_VERSION)]
///     struct Args { hvg: HvgArgs }
///     run: |args, step| run_hvg(&args.hvg, &step)
/// }
/// ```
#[macro_export]
macro_rules! stage_main {
    (
        $(#[$attr:meta])*
        struct Args { $field:ident: $params:ty $(, $common:ident: NoCommon)? }
        run: $run:expr
    ) => {
        #[derive(clap::Parser, serde::Serialize, Debug)]
        $(#[$attr])*
        struct Args {
            #[command(flatten)]
            #[serde(flatten)]
            $field: $params,
            $(
                #[arg(skip)]
                $common: $crate::cli::NoCommon,
            )?
        }

        fn main() -> std::process::ExitCode {
            let run: fn(&Args, $crate::contract::Step) -> $crate::Result<()> = $run;
            $crate::cli::stage(run)
        }

        $crate::help_test!(Args);
    };
}

/// Apply the common flags: thread pool size and verbosity.
fn init(common: &Common) {
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

/// Whether `--quiet` was given.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Log a line to stderr unless `--quiet`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => {
        if !$crate::cli::quiet() { $crate::cli::log(format_args!($($arg)*)); }
    };
}

/// Write one line to stderr. A closed or full stderr (`2>&1 | head -1`, a vanished log
/// file) loses the line but never stops the run: logging is not the work.
pub fn log(line: std::fmt::Arguments) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Write one line of a report to stdout. A reader that stopped reading (`| head -1`) loses
/// the rest; the run goes on (its outputs are files).
pub fn print(line: std::fmt::Arguments) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
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
    crate::io::mapped::install(tool);
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // An input rewritten while the run read it explains whatever went wrong.
            let e = crate::io::atomic::input_changed().unwrap_or(e);
            // A closed pipe (e.g. `| head`) is a normal way to stop reading: known by the
            // error's kind, never by its text.
            if e.is(std::io::ErrorKind::BrokenPipe) {
                return ExitCode::SUCCESS;
            }
            log(format_args!("{tool}: error: {e}"));
            ExitCode::from(1)
        }
    }
}

/// Start timing a stage; `done` logs the elapsed time.
pub struct Timer(std::time::Instant, &'static str);

impl Timer {
    /// Start timing `what`.
    pub fn start(what: &'static str) -> Self {
        Timer(std::time::Instant::now(), what)
    }
    /// Log `what: <seconds> s`.
    pub fn done(self) {
        crate::info!("{}: {:.2} s", self.1, self.0.elapsed().as_secs_f64());
    }
}

/// Value parsers of numeric flags (`#[arg(value_parser = range::at_least_1)]`): a value
/// outside the flag's range, which its help text states, is a usage error before any work,
/// never a panic half-way.
pub mod range {
    use std::str::FromStr;

    fn number<T: FromStr + Copy + Into<f64>>(
        s: &str,
        ok: impl Fn(f64) -> bool,
        expected: &str,
    ) -> Result<T, String> {
        let v: T = s
            .trim()
            .parse()
            .map_err(|_| format!("'{s}' is not a number (expected {expected})"))?;
        let f: f64 = v.into();
        if f.is_finite() && ok(f) {
            Ok(v)
        } else {
            Err(format!("{s} is out of range (expected {expected})"))
        }
    }

    /// Dots per inch of a picture, 10 to 1200.
    pub fn dpi(s: &str) -> Result<f64, String> {
        number(
            s,
            |v| (10.0..=1200.0).contains(&v),
            "dots per inch from 10 to 1200",
        )
    }

    /// An integer of at least 1.
    pub fn at_least_1(s: &str) -> Result<usize, String> {
        match s.trim().parse::<usize>() {
            Ok(v) if v >= 1 => Ok(v),
            Ok(_) => Err(format!("{s} is out of range (expected at least 1)")),
            Err(_) => Err(format!("'{s}' is not a whole number (expected at least 1)")),
        }
    }

    /// An integer of at least 2.
    pub fn at_least_2(s: &str) -> Result<usize, String> {
        match s.trim().parse::<usize>() {
            Ok(v) if v >= 2 => Ok(v),
            Ok(_) => Err(format!("{s} is out of range (expected at least 2)")),
            Err(_) => Err(format!("'{s}' is not a whole number (expected at least 2)")),
        }
    }

    /// A finite number > 0.
    pub fn positive<T: FromStr + Copy + Into<f64>>(s: &str) -> Result<T, String> {
        number(s, |v| v > 0.0, "a number > 0")
    }

    /// A finite number >= 0.
    pub fn non_negative<T: FromStr + Copy + Into<f64>>(s: &str) -> Result<T, String> {
        number(s, |v| v >= 0.0, "a number >= 0")
    }

    /// A fraction in [0, 1].
    pub fn fraction<T: FromStr + Copy + Into<f64>>(s: &str) -> Result<T, String> {
        number(s, |v| (0.0..=1.0).contains(&v), "a number in [0, 1]")
    }

    /// A fraction in [0, 1).
    pub fn fraction_below_1<T: FromStr + Copy + Into<f64>>(s: &str) -> Result<T, String> {
        number(s, |v| (0.0..1.0).contains(&v), "a number in [0, 1)")
    }

    /// A fraction in (0, 1].
    pub fn fraction_above_0<T: FromStr + Copy + Into<f64>>(s: &str) -> Result<T, String> {
        number(s, |v| v > 0.0 && v <= 1.0, "a number in (0, 1]")
    }

    /// A percentage in [0, 100].
    pub fn percent(s: &str) -> Result<f64, String> {
        number(s, |v| (0.0..=100.0).contains(&v), "a number in [0, 100]")
    }
}

#[cfg(test)]
mod duplicate_tests {
    use clap::{Arg, Command};

    #[test]
    fn a_flag_declared_twice_is_found() {
        let ok = Command::new("t")
            .arg(Arg::new("a").long("alpha").short('a'))
            .arg(Arg::new("b").long("beta"));
        assert!(super::duplicated(&ok).is_empty());
        let twice = Command::new("t")
            .arg(Arg::new("a").long("epochs"))
            .arg(Arg::new("b").long("epochs"));
        assert_eq!(super::duplicated(&twice), vec!["--epochs".to_string()]);
        let in_sub = Command::new("t").subcommand(
            Command::new("s")
                .arg(Arg::new("x").short('x'))
                .arg(Arg::new("x").long("other")),
        );
        assert_eq!(super::duplicated(&in_sub), vec!["id x".to_string()]);
    }
}
