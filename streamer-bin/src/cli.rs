//! The command line of `mtf-streamer`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use mtf_cli::SegmentArgs;
use shm_core::{SegmentPath, Timeframe};

use crate::config::{self, Config, ConfigError, SourceKind};

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
    /// Print the candles of one ring as they change, until Ctrl-C.
    Tail {
        /// Symbol, matched exactly (e.g. BTCUSDc).
        symbol: String,
        /// Timeframe (M1, M5, M15, M30, H1, H4, D1, W1, MN1; any case).
        timeframe: Timeframe,
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
    source: Option<SourceKind>,
    /// Symbols, comma-separated (default BTCUSDc,XAUUSDc; for csv, taken from the file names).
    #[arg(long, value_delimiter = ',', value_name = "SYMBOLS")]
    symbols: Option<Vec<String>>,
    /// Timeframes to publish, comma-separated (default M1,M5,M15,M30,H1,H4,D1).
    #[arg(long, value_delimiter = ',', value_name = "TFS")]
    timeframes: Option<Vec<String>>,
    /// Ring size of one timeframe, e.g. --buffer M1=2880 (repeatable). Defaults: M1 1440,
    /// M5 300, M15 150, M30 100, H1 100, H4 50, D1 30, W1 52, MN1 12.
    #[arg(long, value_name = "TF=N")]
    buffer: Vec<String>,
    /// Seed of the synthetic feed (same seed, same price path).
    #[arg(long)]
    seed: Option<u64>,
    /// Synthetic ticks per second per symbol (default 10).
    #[arg(long, value_name = "N")]
    tick_rate: Option<f64>,
    /// MT5 export files to replay (bars or ticks); implies --source csv.
    #[arg(long, num_args = 1.., value_name = "FILE")]
    csv: Vec<PathBuf>,
    /// Symbol of the CSV files, when their names do not follow MT5's SYMBOL_TF_FROM_TO.csv.
    #[arg(long, value_name = "SYMBOL")]
    csv_symbol: Option<String>,
    /// Timeframe of the CSV bar files, when their names do not say it.
    #[arg(long, value_name = "TF")]
    csv_timeframe: Option<Timeframe>,
    /// CSV replay speed: N for N x real time, or max (default).
    #[arg(long, value_name = "N|max")]
    speed: Option<String>,
    /// MT5 gateway address for --source mt5 (default 127.0.0.1:18812, the gateway's default; set
    /// MT5_GATEWAY_TOKEN if it has a token).
    #[arg(long, value_name = "HOST:PORT")]
    gateway: Option<String>,
    /// Segment name in /dev/shm, or %LOCALAPPDATA%\mtf-candles on Windows (default mtf-candles).
    #[arg(long, value_name = "NAME")]
    segment: Option<String>,
    /// Segment file path, instead of a name in the segment directory.
    #[arg(long, value_name = "PATH")]
    segment_path: Option<PathBuf>,
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
    nats_interval_ms: Option<u64>,
    #[command(flatten)]
    nats_auth: nats_bridge::NatsAuth,
}

fn flag<T>(field: &str, r: Result<T, String>) -> Result<T, ConfigError> {
    r.map_err(|message| ConfigError {
        field: field.into(),
        message,
    })
}

impl RunArgs {
    /// Defaults, then the config file, then these flags. Returns the warnings to print.
    fn config(&self) -> Result<(Config, Vec<String>), ConfigError> {
        let mut c = Config::default();
        let warnings = match &self.config {
            Some(path) => c.apply_file(path)?,
            None => Vec::new(),
        };
        if let Some(s) = self.source {
            c.source = s;
        }
        if let Some(s) = &self.symbols {
            c.symbols = Some(flag("--symbols", config::parse_symbols(s))?);
        }
        if let Some(t) = &self.timeframes {
            c.timeframes = flag("--timeframes", config::parse_timeframes(t))?;
        }
        c.apply_buffer_flags(&self.buffer)?;
        if let Some(s) = self.seed {
            c.seed = s;
        }
        if let Some(r) = self.tick_rate {
            if !(r > 0.0 && r <= 100_000.0) {
                return Err(ConfigError {
                    field: "--tick-rate".into(),
                    message: format!("{r} is not in (0, 100000]"),
                });
            }
            c.tick_rate = r;
        }
        if !self.csv.is_empty() {
            c.csv_files = self.csv.clone();
            if self.source.is_none() {
                c.source = SourceKind::Csv;
            }
        }
        if let Some(s) = &self.csv_symbol {
            flag(
                "--csv-symbol",
                shm_core::validate_symbol(s).map_err(|e| e.to_string()),
            )?;
            c.csv_symbol = Some(s.clone());
        }
        if let Some(t) = self.csv_timeframe {
            c.csv_timeframe = Some(t);
        }
        if let Some(s) = &self.speed {
            c.speed = flag("--speed", config::parse_speed(s))?;
        }
        if let Some(g) = &self.gateway {
            c.gateway = g.clone();
        }
        if let Some(n) = &self.segment {
            c.segment = flag(
                "--segment",
                SegmentPath::named(n).map_err(|e| e.to_string()),
            )?;
        }
        if let Some(p) = &self.segment_path {
            c.segment = SegmentPath::at(p);
        }
        if let Some(m) = &self.segment_mode {
            c.segment_mode = flag("--segment-mode", config::parse_mode(m))?;
        }
        if let Some(h) = &self.http {
            c.http = config::HttpBind::Asked(flag(
                "--http",
                h.parse()
                    .map_err(|_| format!("expected an address like 127.0.0.1:8000, found {h:?}")),
            )?);
        }
        if self.no_http {
            c.http = config::HttpBind::Off;
        }
        c.http_allow_remote |= self.http_allow_remote;
        c.http_allow_remote_without_token |= self.http_allow_remote_without_token;
        if let Some(u) = &self.nats {
            c.nats = Some(flag("--nats", config::parse_nats_url(u))?);
        }
        if let Some(n) = &self.nats_name {
            c.nats_name = Some(n.clone());
        }
        // Each login or TLS flag given overrides the config file's key of the same name.
        let (a, f) = (&mut c.nats_auth, &self.nats_auth);
        for (to, from) in [
            (&mut a.nats_creds, &f.nats_creds),
            (&mut a.nats_nkey, &f.nats_nkey),
            (&mut a.nats_password_file, &f.nats_password_file),
            (&mut a.nats_token_file, &f.nats_token_file),
            (&mut a.nats_ca, &f.nats_ca),
            (&mut a.nats_cert, &f.nats_cert),
            (&mut a.nats_key, &f.nats_key),
        ] {
            if from.is_some() {
                to.clone_from(from);
            }
        }
        if f.nats_user.is_some() {
            a.nats_user.clone_from(&f.nats_user);
        }
        if let Some(ms) = self.nats_interval_ms {
            c.nats_interval_ms = flag("--nats-interval-ms", config::parse_nats_interval(ms))?;
        }
        if let Some(o) = &self.server_offset {
            c.server_time_offset_s = flag(
                "--server-offset",
                shm_core::parse_server_offset(o).map_err(|e| e.to_string()),
            )?;
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
            match crate::ops::tail(&path, &symbol, timeframe, &stop, &mut std::io::stdout()) {
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
