//! What the three binaries (`mtf-streamer`, `mtf-shim`, `mtf-monitor`) share on the command
//! line, so that each behaves the same way: the segment flags, the stop flag that SIGINT and
//! SIGTERM set (Ctrl-C, Ctrl-Break and closing the console on Windows), the exit codes, and
//! one error report that prints the cause chain once.
//!
//! ```
//! use clap::Parser;
//! use mtf_cli::SegmentArgs;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     segment: SegmentArgs,
//! }
//!
//! let cli = Cli::parse_from(["demo", "--segment", "desk-1"]);
//! assert!(cli.segment.path()?.path().ends_with("desk-1"));
//! # Ok::<(), shm_core::SegmentNameError>(())
//! ```

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Args;
use shm_core::{SegmentNameError, SegmentPath, Trust, TrustError};

/// Exit status of a bad flag or configuration, in every binary (as clap's own).
pub const EXIT_CONFIG: u8 = 2;
/// Exit status of any other failure.
pub const EXIT_FAILURE: u8 = 1;

/// `--segment NAME` / `--segment-path PATH`: which segment to use; `--trust ACCOUNTS`: whose.
#[derive(Debug, Clone, Args)]
pub struct SegmentArgs {
    /// Segment name, in /dev/shm (Linux) or %LOCALAPPDATA%\mtf-candles (Windows) [default:
    /// mtf-candles]. Without a default value here, so that a program with a config file can
    /// tell whether it was given.
    #[arg(long, value_name = "NAME")]
    pub segment: Option<String>,
    /// Segment file path (overrides --segment).
    #[arg(long, value_name = "PATH")]
    pub segment_path: Option<PathBuf>,
    /// Accounts whose segments this program reads besides its own and root's: names or uids,
    /// comma-separated (as MTF_TRUST, which is read besides). A segment owned by any other
    /// account is refused: another account could have taken the name first.
    #[arg(long, value_name = "ACCOUNTS", value_parser = parse_trust)]
    pub trust: Option<Trust>,
}

/// `--trust`'s parser: the one shm-core uses for `MTF_TRUST`.
fn parse_trust(list: &str) -> Result<Trust, TrustError> {
    Trust::parse(list, "--trust")
}

impl SegmentArgs {
    /// The segment these flags name. Every reader this process opens from now on also trusts
    /// the accounts `--trust` names ([`shm_core::set_process_trust`]).
    pub fn path(&self) -> Result<SegmentPath, SegmentNameError> {
        if let Some(trust) = &self.trust {
            shm_core::set_process_trust(trust);
        }
        match &self.segment_path {
            Some(p) => Ok(SegmentPath::at(p)),
            None => SegmentPath::named(
                self.segment
                    .as_deref()
                    .unwrap_or(shm_core::DEFAULT_SEGMENT_NAME),
            ),
        }
    }
}

/// A flag that SIGINT and SIGTERM set, for loops that check it.
#[cfg(unix)]
pub fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registration only fails for forbidden signals, which these are not.
        let _ = signal_hook::flag::register(signal, Arc::clone(&stop));
    }
    stop
}

/// A flag that Ctrl-C, Ctrl-Break and closing the console window set, for loops that check
/// it. On a close, Windows ends the process once the handler returns (or after 5 s at most),
/// so a writer may not get to mark its segment stopped: readers then see it `gone`, as after
/// any crash, and the candles stay for a warm restart.
#[cfg(windows)]
pub fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    // Relaxed: the flag carries no data with it. Setting a handler fails only if one is set
    // already, and then that one stops the program.
    let _ = ctrlc::set_handler(move || flag.store(true, std::sync::atomic::Ordering::Relaxed));
    stop
}

/// Prints a line on stdout for whoever watches a long-running program, and goes on if nobody
/// does: a closed stdout (a pipe whose reader left, `| head -1`) makes `println!` panic, and
/// must never stop a daemon that only says how it is doing.
pub fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Prints `program: error: …` and each cause once, and returns `code`. A closed output pipe
/// (`mtf-monitor | head`) is no failure: it returns success and prints nothing.
pub fn report(program: &str, error: &(dyn Error + 'static), code: u8) -> ExitCode {
    let mut cause: Option<&dyn Error> = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return ExitCode::SUCCESS;
            }
        }
        cause = e.source();
    }
    eprintln!("{program}: error: {error}");
    let mut cause = error.source();
    while let Some(e) = cause {
        eprintln!("  caused by: {e}");
        cause = e.source();
    }
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_pipe_anywhere_in_the_chain_is_success() {
        let e = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert_eq!(report("t", &e, EXIT_FAILURE), ExitCode::SUCCESS);
        let other = std::io::Error::other("disk on fire");
        assert_eq!(report("t", &other, EXIT_CONFIG), ExitCode::from(2));
    }

    #[test]
    fn a_path_wins_over_a_name_and_bad_names_are_refused() {
        let a = SegmentArgs {
            segment: Some("x".into()),
            segment_path: Some("/tmp/y".into()),
            trust: None,
        };
        assert_eq!(a.path().unwrap().path(), std::path::Path::new("/tmp/y"));
        let bad = SegmentArgs {
            segment: Some("../etc".into()),
            segment_path: None,
            trust: None,
        };
        assert!(bad.path().is_err());
    }
}
