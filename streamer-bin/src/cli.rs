//! The command line of `mtf-streamer`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use mtf_cli::SegmentArgs;
use serde_json::Value;

use crate::config::{Config, ConfigError, SourceKind};
use crate::settings;

/// Multi-timeframe candles from a feed into shared memory, for every process on the host.
///
/// With no arguments: a synthetic feed for BTCUSDc and XAUUSDc on M1..D1, published to the
/// segment /dev/shm/mtf-candles, with the HTTP API on 127.0.0.1:8000.
#[derive(Debug, Parser)]
#[command(name = "mtf-streamer", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the segment: writer liveness, generation, feed, counters, and every ring.
    Inspect {
        #[command(flatten)]
        segment: SegmentArgs,
    },
    /// Delete a segment and its lock file. Refused while a writer runs on it.
    Remove {
        #[command(flatten)]
        segment: SegmentArgs,
    },
    /// Print the candles of one ring, or a symbol's ticks (`tail SYMBOL ticks`), as they
    /// change, until Ctrl-C.
    Tail {
        /// Symbol, matched exactly (e.g. BTCUSDc).
        symbol: String,
        /// A timeframe (M1 to MN1, any case), or `ticks` for every tick as it arrives.
        timeframe: crate::ops::TailWhat,
        #[command(flatten)]
        segment: SegmentArgs,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// JSON config file; the original multi_tf_streamer_config.json is accepted as it is.
    /// Flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Feed: synthetic (seeded random walk), csv (MT5 export replay), mt5 (MT5 gateway).
    #[arg(long, value_name = "SOURCE")]
    source: Option<String>,
    /// Symbols, comma-separated (default BTCUSDc,XAUUSDc; for csv, taken from the file names).
    #[arg(long, value_delimiter = ',', value_name = "SYMBOLS")]
    symbols: Option<Vec<String>>,
    /// Timeframes to publish, comma-separated (default M1,M5,M15,M30,H1,H4,D1).
    #[arg(long, value_delimiter = ',', value_name = "TFS")]
    timeframes: Option<Vec<String>>,
    /// Ring size of one timeframe, e.g. --buffer M1=20160 (repeatable). Defaults: M1 10080,
    /// M5 2016, 1000 for every other timeframe.
    #[arg(long, value_name = "TF=N")]
    buffer: Vec<String>,
    /// Seed of the synthetic feed (same seed, same price path).
    #[arg(long, value_name = "N")]
    seed: Option<String>,
    /// Synthetic ticks per second per symbol (default 10).
    #[arg(long, value_name = "N")]
    tick_rate: Option<String>,
    /// Ticks each symbol's tick ring keeps (default 4096, MT5's fast tick cache).
    #[arg(long, value_name = "N")]
    tick_depth: Option<String>,
    /// MT5 export files to replay (bars or ticks); implies --source csv.
    #[arg(long, num_args = 1.., value_name = "FILE")]
    csv: Vec<PathBuf>,
    /// Symbol of the CSV files, when their names do not follow MT5's SYMBOL_TF_FROM_TO.csv.
    #[arg(long, value_name = "SYMBOL")]
    csv_symbol: Option<String>,
    /// Timeframe of the CSV bar files, when their names do not say it.
    #[arg(long, value_name = "TF")]
    csv_timeframe: Option<String>,
    /// CSV replay speed: N for N x real time, or max (default).
    #[arg(long, value_name = "N|max")]
    speed: Option<String>,
    /// A terminal's symbol_info() for each symbol, as JSON ({"EURUSD": {...}, ...}, exported
    /// with MetaTrader5's symbol_info(s)._asdict()), for a synthetic or CSV feed.
    #[arg(long, value_name = "FILE")]
    symbol_info: Option<PathBuf>,
    /// MT5 gateway address for --source mt5 (default 127.0.0.1:18812, the gateway's default; set
    /// MT5_GATEWAY_TOKEN if it has a token).
    #[arg(long, value_name = "HOST:PORT")]
    gateway: Option<String>,
    #[command(flatten)]
    segment: SegmentArgs,
    /// Permission bits of a new segment file, octal (default 0600; 0640 lets the group read).
    #[arg(long, value_name = "OCTAL")]
    segment_mode: Option<String>,
    /// Address of the HTTP API (default 127.0.0.1:8000).
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// Do not start the HTTP API.
    #[arg(long, conflicts_with = "http")]
    no_http: bool,
    /// Allow --http on a non-loopback address; requests then need the bearer token from the
    /// MTF_SHIM_TOKEN environment variable, if set.
    #[arg(long)]
    http_allow_remote: bool,
    /// Serve a non-loopback --http without MTF_SHIM_TOKEN, on a network you trust.
    #[arg(long, requires = "http_allow_remote")]
    http_allow_remote_without_token: bool,
    /// Broker server time minus UTC, as +HH:MM or seconds (default +00:00). MT5 bar times are
    /// server time; this lets every reader compute true ages.
    #[arg(long, value_name = "OFFSET", allow_hyphen_values = true)]
    server_offset: Option<String>,
    /// Publish every candle change to this NATS server, for mtf-mirror on other hosts
    /// (nats://HOST:4222). The writer never waits for it.
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// The segment's name in the NATS subjects (default: the segment's name).
    #[arg(long, value_name = "NAME", requires = "nats")]
    nats_name: Option<String>,
    /// Forming-bar updates on NATS, at most one per ring every this many ms (default 50).
    #[arg(long, value_name = "MS", requires = "nats")]
    nats_interval_ms: Option<String>,
    #[command(flatten)]
    nats_auth: nats_bridge::NatsAuth,
}

/// A flag's text as the value its setting takes.
fn text(s: &Option<String>) -> Option<Value> {
    s.clone().map(Value::String)
}

/// A list flag's items.
fn list(items: &Option<Vec<String>>) -> Option<Value> {
    items
        .as_ref()
        .map(|v| Value::Array(v.iter().cloned().map(Value::String).collect()))
}

/// A path as the text its setting takes (a path that is not UTF-8 is refused, not mangled).
fn utf8(flag: &str, p: &std::path::Path) -> Result<Value, ConfigError> {
    p.to_str()
        .map(|s| Value::String(s.to_owned()))
        .ok_or_else(|| ConfigError {
            field: flag.into(),
            message: format!("{} is not UTF-8", p.display()),
        })
}

/// A path flag's text, if given.
fn path(flag: &str, p: &Option<PathBuf>) -> Result<Option<Value>, ConfigError> {
    p.as_deref().map(|p| utf8(flag, p)).transpose()
}

/// A switch: only when given (it adds to the file's setting, never clears it).
fn switch(on: bool) -> Option<Value> {
    on.then_some(Value::Bool(true))
}

impl RunArgs {
    /// Each flag given, as (config key, value), in the order they apply: `--segment-path`
    /// after `--segment`, `--no-http` after `--http`.
    fn given(&self) -> Result<Vec<(&'static str, Value)>, ConfigError> {
        let csv = self
            .csv
            .iter()
            .map(|p| utf8("--csv", p))
            .collect::<Result<Vec<_>, _>>()?;
        let a = &self.nats_auth;
        let all = [
            ("source", text(&self.source)),
            ("symbols", list(&self.symbols)),
            ("timeframes", list(&self.timeframes)),
            (
                "buffer_sizes",
                (!self.buffer.is_empty())
                    .then(|| settings::buffer_flags(&self.buffer))
                    .transpose()?,
            ),
            ("seed", text(&self.seed)),
            ("tick_rate", text(&self.tick_rate)),
            ("tick_depth", text(&self.tick_depth)),
            ("csv", (!csv.is_empty()).then_some(Value::Array(csv))),
            ("csv_symbol", text(&self.csv_symbol)),
            ("csv_timeframe", text(&self.csv_timeframe)),
            ("speed", text(&self.speed)),
            ("symbol_info", path("--symbol-info", &self.symbol_info)?),
            ("gateway", text(&self.gateway)),
            ("segment", text(&self.segment.segment)),
            (
                "segment_path",
                path("--segment-path", &self.segment.segment_path)?,
            ),
            ("segment_mode", text(&self.segment_mode)),
            ("http", text(&self.http)),
            ("http", self.no_http.then_some(Value::Null)),
            ("http_allow_remote", switch(self.http_allow_remote)),
            (
                "http_allow_remote_without_token",
                switch(self.http_allow_remote_without_token),
            ),
            ("server_time_offset", text(&self.server_offset)),
            ("nats", text(&self.nats)),
            ("nats_name", text(&self.nats_name)),
            ("nats_interval_ms", text(&self.nats_interval_ms)),
            ("nats_user", text(&a.nats_user)),
            ("nats_creds", path("--nats-creds", &a.nats_creds)?),
            ("nats_nkey", path("--nats-nkey", &a.nats_nkey)?),
            (
                "nats_password_file",
                path("--nats-password-file", &a.nats_password_file)?,
            ),
            (
                "nats_token_file",
                path("--nats-token-file", &a.nats_token_file)?,
            ),
            ("nats_ca", path("--nats-ca", &a.nats_ca)?),
            ("nats_cert", path("--nats-cert", &a.nats_cert)?),
            ("nats_key", path("--nats-key", &a.nats_key)?),
        ];
        Ok(all
            .into_iter()
            .filter_map(|(key, v)| v.map(|v| (key, v)))
            .collect())
    }

    /// Defaults, then the config file, then these flags, each through its setting's one
    /// parser (`settings.rs`). Returns the warnings to print.
    fn config(&self) -> Result<(Config, Vec<String>), ConfigError> {
        let mut c = Config::default();
        let warnings = match &self.config {
            Some(path) => c.apply_file(path)?,
            None => Vec::new(),
        };
        for (key, value) in self.given()? {
            let setting = settings::by_key(key).ok_or_else(|| ConfigError {
                field: key.into(),
                message: "no such setting (a bug: every flag names one)".into(),
            })?;
            setting.apply(&mut c, &value, true)?;
        }
        if !self.csv.is_empty() && self.source.is_none() {
            c.source = SourceKind::Csv;
        }
        if let Some(trust) = &self.segment.trust {
            shm_core::set_process_trust(trust);
        }
        Ok((c, warnings))
    }
}

/// Prints `error` and its causes once; exit status 1.
fn report(error: &(dyn std::error::Error + 'static)) -> ExitCode {
    mtf_cli::report("mtf-streamer", error, mtf_cli::EXIT_FAILURE)
}

/// A bad flag or configuration: exit status 2, as in every binary.
fn report_config(error: &(dyn std::error::Error + 'static)) -> ExitCode {
    mtf_cli::report("mtf-streamer", error, mtf_cli::EXIT_CONFIG)
}

/// The whole program: parse arguments, run, and turn the outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Inspect { segment }) => {
            let path = match segment.path() {
                Ok(p) => p,
                Err(e) => return report_config(&e),
            };
            match crate::ops::inspect(&path) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => report(&e),
            }
        }
        Some(Command::Remove { segment }) => {
            let path = match segment.path() {
                Ok(p) => p,
                Err(e) => return report_config(&e),
            };
            match shm_core::remove_segment(&path) {
                Ok(()) => {
                    println!("removed {path} and its lock file");
                    ExitCode::SUCCESS
                }
                Err(e) => report(&e),
            }
        }
        Some(Command::Tail {
            symbol,
            timeframe,
            segment,
        }) => {
            let path = match segment.path() {
                Ok(p) => p,
                Err(e) => return report_config(&e),
            };
            let stop = mtf_cli::stop_flag();
            let mut stdout = std::io::stdout();
            let done = match timeframe {
                crate::ops::TailWhat::Candles(tf) => {
                    crate::ops::tail(&path, &symbol, tf, &stop, &mut stdout)
                }
                crate::ops::TailWhat::Ticks => {
                    crate::ops::tail_ticks(&path, &symbol, &stop, &mut stdout)
                }
            };
            match done {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => report(&e),
            }
        }
        None => {
            let (config, warnings) = match cli.run.config() {
                Ok(c) => c,
                Err(e) => return report_config(&e),
            };
            for w in warnings {
                eprintln!("warning: {w}");
            }
            let stop = mtf_cli::stop_flag();
            let mut stdout = std::io::stdout();
            match crate::run(&config, &stop, &mut stdout) {
                Ok(summary) => {
                    let _ = writeln!(
                        stdout,
                        "stopped: {} ticks, {} candles closed, {} rejected; segment left readable",
                        summary.ticks, summary.bars_closed, summary.rejected
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => report(&e),
            }
        }
    }
}
