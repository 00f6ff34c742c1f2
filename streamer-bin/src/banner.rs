//! The banner a run prints: what it publishes, where, and how to read it.

use std::io::Write;

use shm_core::{Timeframe, Writer};

use crate::config::{Config, SourceKind};
use crate::source::Source;

/// An error and its causes on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

pub(crate) fn print_banner(
    out: &mut dyn Write,
    config: &Config,
    http: Option<std::net::SocketAddr>,
    writer: &Writer,
    symbols: &[String],
    tfs: &[Vec<Timeframe>],
    source: &dyn Source,
) {
    let start = match writer.start() {
        shm_core::Start::Fresh => "new".to_owned(),
        shm_core::Start::Warm { repaired: 0 } => "warm restart, candles kept".to_owned(),
        shm_core::Start::Warm { repaired } => {
            format!("warm restart, {repaired} torn write(s) dropped")
        }
        shm_core::Start::Replaced => "replaced (layout changed)".to_owned(),
    };
    let rings: Vec<String> = tfs
        .first()
        .map(|t| {
            t.iter()
                .map(|tf| {
                    format!(
                        "{tf} {}",
                        config.buffer_sizes.get(tf).copied().unwrap_or(100)
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let offset = config.server_time_offset_s;
    let sign = if offset < 0 { '-' } else { '+' };
    let _ = writeln!(
        out,
        "mtf-streamer {}: multi-timeframe candles in shared memory",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        out,
        "  segment   {} (mode {:04o}, generation {}, {start})",
        writer.path().display(),
        config.segment_mode,
        writer.generation()
    );
    let _ = writeln!(out, "  source    {}", source.describe());
    let _ = writeln!(out, "  symbols   {}", symbols.join(", "));
    let _ = writeln!(out, "  rings     {}", rings.join(", "));
    match writer.history() {
        Some(h) => {
            let _ = writeln!(
                out,
                "  history   {} ({:.1} MB on disk)",
                h.dir().display(),
                h.bytes() as f64 / 1e6
            );
        }
        None => {
            let _ = writeln!(out, "  history   off: readers get what the rings hold");
        }
    }
    let from_gateway = if config.source == SourceKind::Mt5 && offset == 0 {
        " (the gateway's estimate replaces it once connected; set --server-offset to fix it)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "  server    UTC{sign}{:02}:{:02}{from_gateway}",
        offset.abs() / 3600,
        offset.abs() % 3600 / 60
    );
    match http {
        Some(addr) => {
            let _ = writeln!(out, "  http      http://{addr}/streamer/status");
        }
        None => {
            let _ = writeln!(out, "  http      off");
        }
    }
    let seg = segment_flag(config);
    let first = symbols.first().map_or("SYMBOL", String::as_str);
    let tf = tfs
        .first()
        .and_then(|t| t.first())
        .copied()
        .unwrap_or(Timeframe::M1);
    let me = self_command();
    let _ = writeln!(
        out,
        "  watch     {me} inspect{seg}\n            {me} tail {first} {tf}{seg}"
    );
    let _ = writeln!(
        out,
        "Ctrl-C stops; the segment stays readable, marked stopped."
    );
}

/// How to run this program again, as the user can type it: `mtf-streamer` when it was
/// installed, the `cargo run` line when it runs from the workspace's `target/` folder (where it
/// is not on the PATH).
pub fn self_command() -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    let parts: Vec<String> = exe
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let in_target = parts.windows(2).find_map(|w| {
        (w[0] == "target" && (w[1] == "release" || w[1] == "debug")).then(|| w[1].clone())
    });
    match in_target.as_deref() {
        Some("release") => "cargo run --release --bin mtf-streamer --".into(),
        Some(_) => "cargo run --bin mtf-streamer --".into(),
        None => "mtf-streamer".into(),
    }
}

/// The `--segment`/`--segment-path` flag that names a non-default segment, for hints.
pub(crate) fn segment_flag(config: &Config) -> String {
    let path = config.segment.path();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if config.segment == Config::default().segment {
        String::new()
    } else if shm_core::SegmentPath::named(name).is_ok_and(|named| named == config.segment) {
        format!(" --segment {name}")
    } else {
        format!(" --segment-path {}", path.display())
    }
}
