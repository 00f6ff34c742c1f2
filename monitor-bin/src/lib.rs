//! The micro-scalp monitor: every few seconds, each symbol's last 50 M1 candles from the first
//! source that has fresh ones (the shared-memory segment, then the HTTP shim, then the MT5
//! gateway), normalised to one [`bar::Candle`] type, and the micro-scalp
//! [`conditions::Conditions`] computed from them.
//!
//! The original monitor ran beside the streamer and could not see its buffers ("No M1 candles
//! available"); its fallbacks disagreed on time types and order. Here each source is a
//! [`source::BarSource`] returning the same bars (UTC open times, oldest first), the
//! [`chain::Chain`] picks the first usable one and reports a change once, and [`Monitor`] ties
//! them to a configuration.
//!
//! ```
//! use monitor_bin::{Config, Monitor};
//!
//! let mut config = Config::default();
//! config.segment = shm_core::SegmentPath::at("/nonexistent/segment");
//! config.api_url = None; // no shim
//! config.symbols = vec!["BTCUSDc".into()];
//! let mut monitor = Monitor::new(config)?;
//! let outcomes = monitor.cycle();
//! assert!(outcomes[0].served.is_none(), "no source has candles");
//! assert_eq!(outcomes[0].skipped[0].1.class(), "unavailable");
//! # Ok::<(), monitor_bin::ConfigError>(())
//! ```

pub mod bar;
pub mod chain;
pub mod cli;
pub mod conditions;
pub mod on_bar;
pub mod report;
pub mod source;

use std::fmt;
use std::time::Duration;

use chain::{Chain, Outcome, Policy};
use source::{BarSource, HttpSource, Mt5Source, Origin, ShmSource, Unconfigured};

/// Everything the monitor needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Symbols to watch.
    pub symbols: Vec<String>,
    /// The segment to read first.
    pub segment: shm_core::SegmentPath,
    /// Base URL of the HTTP shim (`http://host:port`); `None` leaves it out.
    pub api_url: Option<String>,
    /// Bearer token for the shim.
    pub api_token: Option<String>,
    /// The MT5 gateway's `HOST:PORT`; `None` leaves it out.
    pub gateway: Option<String>,
    /// Sources in the order tried.
    pub sources: Vec<Origin>,
    /// Time allowed for an HTTP answer (and an MT5 gateway connection; its answer gets twice).
    pub timeout: Duration,
    /// Seconds between cycles.
    pub interval: Duration,
    /// Bars asked, minimum bars, maximum age.
    pub policy: Policy,
    /// Broker server time minus UTC, replacing what each source reports.
    pub server_offset_s: Option<i64>,
}

impl Default for Config {
    /// BTCUSDc and XAUUSDc every 5 s from `mtf-candles`, `http://localhost:8000`, no gateway.
    fn default() -> Config {
        Config {
            symbols: vec!["BTCUSDc".into(), "XAUUSDc".into()],
            segment: shm_core::SegmentPath::named(shm_core::DEFAULT_SEGMENT_NAME)
                .expect("the default name is valid"),
            api_url: Some("http://localhost:8000".into()),
            api_token: None,
            gateway: None,
            sources: Origin::ALL.to_vec(),
            timeout: Duration::from_secs(1),
            interval: Duration::from_secs(5),
            policy: Policy::default(),
            server_offset_s: None,
        }
    }
}

/// A configuration value the monitor cannot use.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigError {
    /// `--interval` outside 1..=300 seconds.
    Interval(u64),
    /// A symbol that no segment, shim or terminal could hold.
    Symbol(String),
    /// No symbols.
    NoSymbols,
    /// The shim URL is not `http://host[:port]`.
    ApiUrl(String),
    /// The gateway address is not `HOST:PORT`.
    Gateway(String),
    /// `--count`, `--min-candles` or `--max-age` out of range.
    Policy(String),
    /// The segment name is not a valid name in /dev/shm.
    Segment(shm_core::SegmentNameError),
    /// The server-time offset is not `+HH:MM` or seconds within 14 hours.
    ServerOffset(shm_core::OffsetError),
    /// `--timeout` outside 0.01 to 60 seconds.
    Timeout(f64),
    /// No sources, or one listed twice.
    Sources(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Interval(s) => {
                write!(f, "--interval {s}: must be 1 to 300 seconds")
            }
            ConfigError::Symbol(why) => write!(f, "--symbols: {why}"),
            ConfigError::NoSymbols => f.write_str("--symbols: no symbols given"),
            ConfigError::ApiUrl(u) => write!(
                f,
                "--api-url {u:?}: expected http://HOST[:PORT] (the shim speaks plain HTTP)"
            ),
            ConfigError::Gateway(a) => write!(f, "--gateway {a:?}: expected HOST:PORT"),
            ConfigError::Policy(why) => f.write_str(why),
            ConfigError::Segment(why) => write!(f, "--segment: {why}"),
            ConfigError::ServerOffset(why) => write!(f, "--server-offset: {why}"),
            ConfigError::Timeout(s) => write!(f, "--timeout {s}: must be 0.01 to 60 seconds"),
            ConfigError::Sources(why) => write!(f, "--sources: {why}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Checks every value; the first bad one is named.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let secs = self.interval.as_secs();
        if !(1..=300).contains(&secs) || self.interval.subsec_nanos() != 0 {
            return Err(ConfigError::Interval(secs));
        }
        if self.symbols.is_empty() {
            return Err(ConfigError::NoSymbols);
        }
        for s in &self.symbols {
            shm_core::validate_symbol(s).map_err(|e| ConfigError::Symbol(e.to_string()))?;
        }
        if let Some(url) = &self.api_url {
            let rest = url.strip_prefix("http://").unwrap_or("");
            let host = rest.trim_end_matches('/');
            if host.is_empty() || host.contains(['/', '?', '#', ' ']) {
                return Err(ConfigError::ApiUrl(url.clone()));
            }
        }
        if let Some(addr) = &self.gateway {
            let ok = addr
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok {
                return Err(ConfigError::Gateway(addr.clone()));
            }
        }
        let p = self.policy;
        if !(1..=500).contains(&p.count) {
            return Err(ConfigError::Policy(format!(
                "--count {}: must be 1 to 500 candles",
                p.count
            )));
        }
        if p.min_bars == 0 || p.min_bars > p.count {
            return Err(ConfigError::Policy(format!(
                "--min-candles {}: must be 1 to --count ({})",
                p.min_bars, p.count
            )));
        }
        if p.max_age_s < 1 {
            return Err(ConfigError::Policy(format!(
                "--max-age {}: must be at least 1 second",
                p.max_age_s
            )));
        }
        if self.sources.is_empty() {
            return Err(ConfigError::Sources("no sources".into()));
        }
        for (i, k) in self.sources.iter().enumerate() {
            if self.sources[..i].contains(k) {
                return Err(ConfigError::Sources(format!("{k} listed twice")));
            }
        }
        Ok(())
    }
}

/// The monitor: a configuration and its source chain.
pub struct Monitor {
    config: Config,
    chain: Chain,
    cycles: u64,
}

impl Monitor {
    /// Builds the sources of a valid `config`.
    pub fn new(config: Config) -> Result<Monitor, ConfigError> {
        config.validate()?;
        let offset = config.server_offset_s;
        let sources = config
            .sources
            .iter()
            .map(|&k| -> Box<dyn BarSource> {
                match (k, &config.api_url, &config.gateway) {
                    (Origin::Shm, _, _) => Box::new(ShmSource::new(config.segment.clone(), offset)),
                    (Origin::Http, Some(url), _) => Box::new(HttpSource::new(
                        url,
                        config.timeout,
                        config.api_token.clone(),
                        offset,
                    )),
                    (Origin::Mt5, _, Some(addr)) => {
                        Box::new(Mt5Source::new(addr, config.timeout, offset))
                    }
                    (kind, _, _) => Box::new(Unconfigured(kind)),
                }
            })
            .collect();
        Ok(Monitor {
            chain: Chain::new(sources, config.policy),
            config,
            cycles: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The chain, with its counters.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// Cycles run.
    pub fn cycles(&self) -> u64 {
        self.cycles
    }

    /// One cycle: every symbol through the chain, at the current time.
    pub fn cycle(&mut self) -> Vec<Outcome> {
        self.cycles += 1;
        let now_s = (shm_core::now_ns() / 1_000_000_000) as i64;
        self.config
            .symbols
            .iter()
            .map(|s| self.chain.poll(s, now_s))
            .collect()
    }
}
