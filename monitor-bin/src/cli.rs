//! The `mtf-monitor` command line and its loop.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;

use crate::chain::Policy;
use crate::on_bar::{BarWaiter, Woken};
use crate::source::Origin;
use crate::{report, Config, ConfigError, Monitor};

/// The micro-scalp monitor: each symbol's last M1 candles from shared memory, else the HTTP
/// shim, else the MT5 gateway, with VWAP, σ distance, ATR compression, volume spike and spread.
#[derive(Debug, Parser)]
#[command(name = "mtf-monitor", version, about, long_about = None)]
pub struct Cli {
    /// Symbols, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "BTCUSDc,XAUUSDc")]
    pub symbols: Vec<String>,
    /// Seconds between cycles (1 to 300).
    #[arg(long, default_value_t = 5)]
    pub interval: u64,
    /// The segment read first.
    #[command(flatten)]
    pub segment: mtf_cli::SegmentArgs,
    /// The HTTP shim; "none" leaves it out.
    #[arg(
        long,
        env = "STREAMER_API_URL",
        default_value = "http://localhost:8000"
    )]
    pub api_url: String,
    /// Bearer token for the shim.
    #[arg(long, env = "MTF_SHIM_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// The MT5 gateway, HOST:PORT (the final fallback; left out if not given).
    #[arg(long, env = "MT5_GATEWAY_ADDR")]
    pub gateway: Option<String>,
    /// Sources in the order tried, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "shm,http,mt5")]
    pub sources: Vec<Origin>,
    /// Seconds allowed for an HTTP answer and a gateway connection.
    #[arg(long, default_value_t = 1.0)]
    pub timeout: f64,
    /// Candles asked of each source.
    #[arg(long, default_value_t = 50)]
    pub count: usize,
    /// Fewer candles than this and the source is skipped.
    #[arg(long, default_value_t = 10)]
    pub min_candles: usize,
    /// A newest M1 older than this many seconds (by true UTC) and the source is skipped.
    #[arg(long, default_value_t = 90)]
    pub max_age: i64,
    /// Broker server time minus UTC (+HH:MM or seconds), replacing what the sources report.
    #[arg(long, value_name = "OFFSET")]
    pub server_offset: Option<String>,
    /// Print NDJSON (one object per symbol and cycle, plus source changes and counters).
    #[arg(long)]
    pub json: bool,
    /// Run one cycle and exit: status 1 if any symbol had no source.
    #[arg(long)]
    pub once: bool,
    /// Print the per-source counters every N cycles (0: only at exit).
    #[arg(long, default_value_t = 12, value_name = "N")]
    pub stats_every: u64,
    /// Also run a cycle the moment any symbol closes an M1 candle in the segment (woken by the
    /// streamer, no polling); --interval still bounds the gap between cycles.
    #[arg(long, conflicts_with = "once")]
    pub on_bar: bool,
}

impl Cli {
    /// The configuration these flags ask for.
    pub fn config(&self) -> Result<Config, ConfigError> {
        let segment = self.segment.path().map_err(ConfigError::Segment)?;
        let server_offset_s = self
            .server_offset
            .as_deref()
            .map(shm_core::parse_server_offset)
            .transpose()
            .map_err(ConfigError::ServerOffset)?;
        if !(self.timeout.is_finite() && (0.01..=60.0).contains(&self.timeout)) {
            return Err(ConfigError::Timeout(self.timeout));
        }
        let api_url = (!self.api_url.eq_ignore_ascii_case("none")).then(|| self.api_url.clone());
        let gateway = self.gateway.clone().filter(|g| !g.is_empty());
        Ok(Config {
            symbols: self.symbols.iter().map(|s| s.trim().to_owned()).collect(),
            segment,
            api_url,
            api_token: self.api_token.clone(),
            gateway,
            sources: self.sources.clone(),
            timeout: Duration::from_secs_f64(self.timeout),
            interval: Duration::from_secs(self.interval),
            policy: Policy {
                count: self.count,
                min_bars: self.min_candles,
                max_age_s: self.max_age,
            },
            server_offset_s,
        })
    }
}

/// How the loop prints and when it ends.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// NDJSON instead of text.
    pub json: bool,
    /// One cycle only.
    pub once: bool,
    /// Counters every N cycles (0: only at exit).
    pub stats_every: u64,
    /// Cycle on each M1 close in the segment too.
    pub on_bar: bool,
}

/// Runs cycles until `stop` is set (or once). Data lines go to `out`; in text mode source
/// changes and counters go to `log`, in JSON mode to `out` as typed lines. Returns whether
/// every symbol of the last cycle was served.
pub fn run(
    monitor: &mut Monitor,
    options: RunOptions,
    stop: &AtomicBool,
    out: &mut dyn Write,
    log: &mut dyn Write,
) -> std::io::Result<bool> {
    let interval = monitor.config().interval;
    let mut bars = options.on_bar.then(|| {
        let config = monitor.config();
        BarWaiter::new(config.segment.clone(), config.symbols.clone())
    });
    let start = Instant::now();
    let mut all_served = true;
    let mut next = 0u32;
    // The M1 closes that woke this cycle: symbols and when the first was published.
    let mut woken_by: Option<(Vec<String>, u64)> = None;
    // Relaxed: the signal handler's flag carries no data with it.
    while !stop.load(Ordering::Relaxed) {
        let outcomes = monitor.cycle();
        let now_s = (shm_core::now_ns() / 1_000_000_000) as i64;
        all_served = outcomes.iter().all(|o| o.served.is_some());
        for o in &outcomes {
            // One cycle has no change of source to tell: its line says it all.
            if let Some(t) = o.transition.as_ref().filter(|_| !options.once) {
                if options.json {
                    let v = serde_json::json!({"type": "source_change", "time": now_s, "symbol": o.symbol, "source": o.served.as_ref().map(|s| s.kind.name()), "message": t});
                    writeln!(out, "{v}")?;
                } else {
                    writeln!(log, "{t}")?;
                }
            }
            if options.json {
                writeln!(out, "{}", report::json_line(o, now_s))?;
            } else {
                writeln!(out, "{}", report::text_line(o, now_s))?;
            }
        }
        out.flush()?;
        if let Some((symbols, closed_ns)) = woken_by.take() {
            // From the close's publication to the conditions printed (one host, one clock).
            let reaction_ns = shm_core::now_ns().saturating_sub(closed_ns);
            report_bar_close(&symbols, reaction_ns, options.json, out, log)?;
        }
        if options.once {
            return Ok(all_served);
        }
        let cycles = monitor.cycles();
        if options.stats_every > 0 && cycles.is_multiple_of(options.stats_every) {
            print_stats(monitor, options, out, log)?;
        }
        // Cycles keep to a fixed schedule; one that overran skips the slots it missed rather
        // than running late ones back to back.
        let elapsed = start.elapsed();
        next = next.max((elapsed.as_secs_f64() / interval.as_secs_f64()) as u32) + 1;
        let due = start + interval * next;
        match bars.as_mut() {
            Some(bars) => {
                if let Woken::BarClosed { symbols, closed_ns } = bars.wait(due, stop) {
                    woken_by = Some((symbols, closed_ns));
                    // An extra cycle: the timed slot it came before still runs on time
                    // (the schedule above moves past `next` only once it is due).
                    next = next.saturating_sub(1);
                }
            }
            None => {
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if now >= due {
                        break;
                    }
                    std::thread::sleep((due - now).min(Duration::from_millis(100)));
                }
            }
        }
    }
    print_stats(monitor, options, out, log)?;
    Ok(all_served)
}

/// Says which symbols closed a candle, after the cycle it started: how long from the close's
/// publication to the conditions printed.
fn report_bar_close(
    symbols: &[String],
    reaction_ns: u64,
    json: bool,
    out: &mut dyn Write,
    log: &mut dyn Write,
) -> std::io::Result<()> {
    let reaction_us = reaction_ns as f64 / 1e3;
    if json {
        let now_s = (shm_core::now_ns() / 1_000_000_000) as i64;
        let v = serde_json::json!({"type": "bar_close", "time": now_s, "symbols": symbols, "reaction_us": (reaction_us * 10.0).round() / 10.0});
        writeln!(out, "{v}")
    } else {
        writeln!(
            log,
            "M1 closed: {} (conditions printed {reaction_us:.1} µs after the close was published)",
            symbols.join(", ")
        )
    }
}

fn print_stats(
    monitor: &Monitor,
    options: RunOptions,
    out: &mut dyn Write,
    log: &mut dyn Write,
) -> std::io::Result<()> {
    if options.json {
        writeln!(
            out,
            "{}",
            report::stats_json(monitor.chain(), monitor.cycles())
        )?;
        out.flush()
    } else {
        writeln!(
            log,
            "{}",
            report::stats_text(monitor.chain(), monitor.cycles())
        )
    }
}

/// What the monitor will read, for the first line it prints.
fn banner(config: &Config, once: bool, on_bar: bool) -> String {
    let place = |k: &Origin| match k {
        Origin::Shm => format!("shm {}", config.segment),
        Origin::Http => match &config.api_url {
            Some(u) => format!("http {u}"),
            None => "http (not configured)".into(),
        },
        Origin::Mt5 => match &config.gateway {
            Some(g) => format!("mt5 {g}"),
            None => "mt5 (not configured: --gateway or MT5_GATEWAY_ADDR)".into(),
        },
    };
    let chain: Vec<String> = config.sources.iter().map(place).collect();
    let when = if once {
        "once".to_owned()
    } else if on_bar {
        format!(
            "on each M1 close in the segment and at least every {} s",
            config.interval.as_secs()
        )
    } else {
        format!("every {} s", config.interval.as_secs())
    };
    format!(
        "mtf-monitor: {} {when} from {}",
        config.symbols.join(", "),
        chain.join(" → ")
    )
}

/// The whole program: parse, validate, loop until SIGINT or SIGTERM, return the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let monitor = cli.config().and_then(Monitor::new);
    let mut monitor = match monitor {
        Ok(m) => m,
        Err(e) => return mtf_cli::report("mtf-monitor", &e, mtf_cli::EXIT_CONFIG),
    };
    let options = RunOptions {
        json: cli.json,
        once: cli.once,
        stats_every: cli.stats_every,
        on_bar: cli.on_bar,
    };
    let stop = mtf_cli::stop_flag();
    if !cli.json {
        eprintln!("{}", banner(monitor.config(), cli.once, cli.on_bar));
    }
    let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
    match run(
        &mut monitor,
        options,
        &stop,
        &mut stdout.lock(),
        &mut stderr.lock(),
    ) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) if !cli.once => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        // A closed stdout (`mtf-monitor | head`) ends the program without a fuss.
        Err(e) => mtf_cli::report("mtf-monitor", &e, mtf_cli::EXIT_FAILURE),
    }
}
