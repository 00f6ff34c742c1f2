//! Configuration: defaults, then an optional JSON file, then command-line flags, each setting
//! parsed by the one function `settings.rs` gives it.
//!
//! The file accepts the original system's `multi_tf_streamer_config.json` unchanged. Its fields
//! that do not apply here each produce one warning line; our own fields sit beside them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use shm_core::{validate_symbol, SegmentPath, Timeframe};

use crate::source::csv::Speed;

/// Where candles come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// Seeded random walk (the default).
    Synthetic,
    /// MT5 CSV exports.
    Csv,
    /// The MT5 gateway.
    Mt5,
}

impl std::str::FromStr for SourceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "synthetic" => Ok(SourceKind::Synthetic),
            "csv" => Ok(SourceKind::Csv),
            "mt5" => Ok(SourceKind::Mt5),
            other => Err(format!(
                "unknown source {other:?} (expected synthetic, csv or mt5)"
            )),
        }
    }
}

/// Everything the streamer needs to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Symbols, in order, as asked for by the file or a flag. `None`: [`DEFAULT_SYMBOLS`] for
    /// the synthetic and mt5 feeds, the file names for a CSV replay.
    pub symbols: Option<Vec<String>>,
    /// Timeframes, shortest first.
    pub timeframes: Vec<Timeframe>,
    /// Ring capacity per timeframe.
    pub buffer_sizes: BTreeMap<Timeframe, u32>,
    /// The source.
    pub source: SourceKind,
    /// Seed of the synthetic feed.
    pub seed: u64,
    /// Ticks per second per symbol of the synthetic feed.
    pub tick_rate: f64,
    /// Ticks each symbol's tick ring keeps.
    pub tick_depth: u32,
    /// CSV files to replay.
    pub csv_files: Vec<PathBuf>,
    /// Symbol of the CSV files, overriding their names.
    pub csv_symbol: Option<String>,
    /// Timeframe of the CSV bar files, overriding their names.
    pub csv_timeframe: Option<Timeframe>,
    /// CSV replay speed.
    pub speed: Speed,
    /// MT5 gateway address.
    pub gateway: String,
    /// The segment.
    pub segment: SegmentPath,
    /// Mode of a newly created segment file.
    pub segment_mode: u32,
    /// The built-in HTTP API.
    pub http: HttpBind,
    /// Let the HTTP shim bind a non-loopback address (set `MTF_SHIM_TOKEN` too).
    pub http_allow_remote: bool,
    /// Serve a non-loopback `http` address without a token.
    pub http_allow_remote_without_token: bool,
    /// Broker server time minus UTC, seconds.
    pub server_time_offset_s: i64,
    /// Refuse a layout larger than this many MiB (`max_memory_mb` of the original config).
    pub max_memory_mb: Option<u64>,
    /// Publish candle changes to this NATS server (`nats://HOST:PORT`).
    pub nats: Option<String>,
    /// The segment's name in the NATS subjects (default: the segment's file name).
    pub nats_name: Option<String>,
    /// Forming updates per ring on NATS, at most one every this many milliseconds.
    pub nats_interval_ms: u64,
    /// How to log in to NATS, and its TLS (`nats_creds`, `nats_user`, ... in the file).
    pub nats_auth: nats_bridge::NatsAuth,
    /// A terminal's `symbol_info()` export, for a feed without a terminal (`exported.rs`).
    pub symbol_info: Option<PathBuf>,
    /// Where the history store goes: its default place, a directory, or nowhere.
    pub history: HistoryPlace,
    /// How much history the store keeps.
    pub history_keep: shm_core::Keep,
    /// Bars per timeframe the store is backfilled with from the terminal (mt5 source).
    pub history_bars: u32,
    /// How far back the store is backfilled with the terminal's ticks (mt5 source).
    pub history_ticks: TickDepth,
}

/// MT5's default "Max bars in chart", which bounds what the terminal answers
/// `copy_rates_*` with (Tools > Options > Charts): the default of `--history-bars`.
pub const DEFAULT_HISTORY_BARS: u32 = 100_000;

/// Most bars per timeframe `--history-bars` may ask for (MT5's own setting stops at
/// "Unlimited", but a backfill of more than this is a bulk import, not a start).
pub const MOST_HISTORY_BARS: u32 = 10_000_000;

/// How far back the terminal's ticks are copied into the store at start (`--history-ticks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickDepth {
    /// None.
    Off,
    /// This many trading days, the newest tick's included (`2td`, the default: the current
    /// and the previous trading day, Saturdays and Sundays not counted).
    TradingDays(u32),
    /// This many seconds before the newest tick (`36h`, `3d`).
    Seconds(i64),
}

impl TickDepth {
    /// The first millisecond to copy, for a newest tick at `newest_ms` (server time).
    pub fn start_ms(self, newest_ms: i64) -> Option<i64> {
        const DAY_MS: i64 = 86_400_000;
        match self {
            TickDepth::Off => None,
            TickDepth::Seconds(s) => Some(newest_ms.saturating_sub(s.saturating_mul(1000))),
            TickDepth::TradingDays(n) => {
                let mut day = newest_ms.div_euclid(DAY_MS);
                let mut left = n.saturating_sub(1);
                while left > 0 {
                    day -= 1;
                    // 1970-01-01 was a Thursday: day % 7 is 2 on Saturdays, 3 on Sundays.
                    if !matches!(day.rem_euclid(7), 2 | 3) {
                        left -= 1;
                    }
                }
                Some(day * DAY_MS)
            }
        }
    }
}

impl std::str::FromStr for TickDepth {
    type Err = String;

    fn from_str(s: &str) -> Result<TickDepth, String> {
        let t = s.trim();
        let bad = || {
            format!("expected off, a number of trading days (2td) or a span (36h, 3d), found {s:?}")
        };
        if t.eq_ignore_ascii_case("off") || t == "0" {
            return Ok(TickDepth::Off);
        }
        if let Some(n) = t.strip_suffix("td") {
            return match n.parse::<u32>() {
                Ok(n @ 1..=3660) => Ok(TickDepth::TradingDays(n)),
                _ => Err(bad()),
            };
        }
        match t.parse::<shm_core::Keep>() {
            Ok(shm_core::Keep::Seconds(s)) => Ok(TickDepth::Seconds(s)),
            _ => Err(bad()),
        }
    }
}

pub use shm_core::history::HistoryPlace;

/// `nats_interval_ms` when none is given.
pub const DEFAULT_NATS_INTERVAL_MS: u64 = 50;

/// A NATS server address, checked: `nats://HOST:PORT`, `tls://HOST:PORT` (TLS to the server,
/// which async-nats speaks through rustls), or `HOST:PORT`.
pub fn parse_nats_url(s: &str) -> Result<String, String> {
    if let Some(rest) = s.strip_prefix("tls://") {
        return parse_nats_url(rest).map(|u| u.replacen("nats://", "tls://", 1));
    }
    let rest = s.strip_prefix("nats://").unwrap_or(s);
    let ok = !rest.is_empty()
        && !rest.contains(char::is_whitespace)
        && rest.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
    if ok {
        Ok(format!("nats://{rest}"))
    } else {
        Err(format!(
            "expected a NATS address like nats://127.0.0.1:4222, found {s:?}"
        ))
    }
}

/// A `nats_interval_ms`, checked: 1 ms to 60 s.
pub fn parse_nats_interval(n: u64) -> Result<u64, String> {
    if (1..=60_000).contains(&n) {
        Ok(n)
    } else {
        Err(format!("expected milliseconds from 1 to 60000, found {n}"))
    }
}

/// Where the built-in HTTP API listens, and how hard to insist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpBind {
    /// Nobody asked: this (default) address, and if its port is taken the API is turned off
    /// with a warning rather than stopping the candles.
    Default(SocketAddr),
    /// Asked for by the file or a flag: it must work.
    Asked(SocketAddr),
    /// No API (`--no-http`, or `"http": null`).
    Off,
}

/// The symbols published when none are asked for (real broker names, with demo prices from the
/// synthetic feed).
pub const DEFAULT_SYMBOLS: [&str; 2] = ["BTCUSDc", "XAUUSDc"];

/// The address of the built-in API when none is asked for.
pub const DEFAULT_HTTP: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8000);

/// Closed candles kept per ring unless told otherwise: the history bots ask for. A week of
/// M1 (10,080 bars) and of M5 (2,016), and 1,000 bars of every other timeframe (MT5's own
/// default "max bars in chart" is 100,000; `--buffer` holds more). About 1.6 MB a symbol with
/// the default tick ring (README, "How much memory").
pub const DEFAULT_BUFFER_SIZES: [(Timeframe, u32); 9] = [
    (Timeframe::M1, 10_080),
    (Timeframe::M5, 2_016),
    (Timeframe::M15, 1_000),
    (Timeframe::M30, 1_000),
    (Timeframe::H1, 1_000),
    (Timeframe::H4, 1_000),
    (Timeframe::D1, 1_000),
    (Timeframe::W1, 1_000),
    (Timeframe::MN1, 1_000),
];

/// The timeframes published by default: M1 to D1. W1 and MN1 are available with
/// `--timeframes` (they make the synthetic backfill a year long).
pub const DEFAULT_TIMEFRAMES: [Timeframe; 7] = [
    Timeframe::M1,
    Timeframe::M5,
    Timeframe::M15,
    Timeframe::M30,
    Timeframe::H1,
    Timeframe::H4,
    Timeframe::D1,
];

impl Config {
    /// The ring capacity of `tf`: the one asked for, else the default of the original system.
    pub fn capacity(&self, tf: Timeframe) -> u32 {
        self.buffer_sizes.get(&tf).copied().unwrap_or_else(|| {
            DEFAULT_BUFFER_SIZES
                .iter()
                .find(|(t, _)| *t == tf)
                .map_or(100, |&(_, n)| n)
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            symbols: None,
            timeframes: DEFAULT_TIMEFRAMES.to_vec(),
            buffer_sizes: DEFAULT_BUFFER_SIZES.into_iter().collect(),
            source: SourceKind::Synthetic,
            seed: 42,
            tick_rate: 10.0,
            tick_depth: shm_core::DEFAULT_TICK_DEPTH,
            csv_files: Vec::new(),
            csv_symbol: None,
            csv_timeframe: None,
            speed: Speed::Max,
            gateway: "127.0.0.1:18812".into(),
            segment: SegmentPath::named(shm_core::DEFAULT_SEGMENT_NAME)
                .expect("valid default name"),
            segment_mode: 0o600,
            http: HttpBind::Default(DEFAULT_HTTP),
            http_allow_remote: false,
            http_allow_remote_without_token: false,
            server_time_offset_s: 0,
            max_memory_mb: None,
            nats: None,
            nats_name: None,
            nats_interval_ms: DEFAULT_NATS_INTERVAL_MS,
            nats_auth: nats_bridge::NatsAuth::default(),
            symbol_info: None,
            history: HistoryPlace::Default,
            history_keep: shm_core::Keep::All,
            history_bars: DEFAULT_HISTORY_BARS,
            history_ticks: TickDepth::TradingDays(2),
        }
    }
}

/// A configuration value that cannot be used, with the field it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The field (`buffer_sizes.M1`, `--tick-rate`, ...).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A flag is named as a flag, a key of the JSON file as a config field.
        let what = if self.field.starts_with("--") {
            "flag"
        } else {
            "config field"
        };
        write!(f, "{what} `{}`: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Parses an octal file mode such as `0640` or `640`.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.trim().trim_start_matches("0o");
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 && m & 0o400 != 0 => Ok(m),
        Ok(_) => Err(format!(
            "mode {s} must be at most 0777 and let the owner read"
        )),
        Err(_) => Err(format!("bad mode {s:?} (expected octal, e.g. 0640)")),
    }
}

/// Parses `max` or a positive number.
pub fn parse_speed(s: &str) -> Result<Speed, String> {
    if s.eq_ignore_ascii_case("max") {
        return Ok(Speed::Max);
    }
    match s.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(Speed::Times(n)),
        _ => Err(format!(
            "bad speed {s:?} (expected a positive number or max)"
        )),
    }
}

/// Parses a list of timeframe names.
pub fn parse_timeframes(items: &[String]) -> Result<Vec<Timeframe>, String> {
    let mut tfs = items
        .iter()
        .map(|s| s.trim().parse::<Timeframe>().map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    if tfs.is_empty() {
        return Err("at least one timeframe is needed".into());
    }
    tfs.sort();
    tfs.dedup();
    Ok(tfs)
}

/// Validates a list of symbols.
pub fn parse_symbols(items: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for s in items {
        let s = s.trim();
        validate_symbol(s).map_err(|e| e.to_string())?;
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    if out.is_empty() {
        return Err("at least one symbol is needed".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::TickDepth;

    #[test]
    fn trading_days_skip_saturdays_and_sundays() {
        let day = |y: i32, m: u32, d: u32| {
            // Days since 1970-01-01 of a date in December 2026 or January 2027.
            let base = 20_788; // 2026-12-01
            i64::from(match (y, m) {
                (2026, 12) => base + d as i32 - 1,
                _ => base + 31 + d as i32 - 1,
            }) * 86_400_000
        };
        let at = |ms: i64, depth: TickDepth| depth.start_ms(ms).unwrap();
        // Monday 2026-12-07 10:00: the previous trading day is Friday the 4th.
        let monday = day(2026, 12, 7) + 36_000_000;
        assert_eq!(at(monday, TickDepth::TradingDays(2)), day(2026, 12, 4));
        assert_eq!(at(monday, TickDepth::TradingDays(1)), day(2026, 12, 7));
        // Wednesday the 9th: Tuesday.
        assert_eq!(
            at(day(2026, 12, 9) + 5, TickDepth::TradingDays(2)),
            day(2026, 12, 8)
        );
        assert_eq!(at(monday, TickDepth::Seconds(3600)), monday - 3_600_000);
        assert_eq!(TickDepth::Off.start_ms(monday), None);
        assert_eq!("2td".parse(), Ok(TickDepth::TradingDays(2)));
        assert_eq!("12h".parse(), Ok(TickDepth::Seconds(43_200)));
    }

    use super::*;

    #[test]
    fn modes_and_speeds_parse() {
        assert_eq!(parse_mode("0640"), Ok(0o640));
        assert!(
            parse_mode("0200").is_err(),
            "the owner must be able to read"
        );
        assert_eq!(parse_speed("MAX"), Ok(Speed::Max));
        assert!(parse_speed("-1").is_err());
    }

    #[test]
    fn nats_addresses_are_checked() {
        assert_eq!(
            parse_nats_url("127.0.0.1:4222").as_deref(),
            Ok("nats://127.0.0.1:4222")
        );
        assert_eq!(
            parse_nats_url("nats://h:4222").as_deref(),
            Ok("nats://h:4222")
        );
        assert_eq!(
            parse_nats_url("tls://h:4222").as_deref(),
            Ok("tls://h:4222")
        );
        for bad in [
            "",
            "nats://",
            "h",
            "h:0",
            "h:99999",
            "nats://a b:1",
            "tls://x",
        ] {
            assert!(parse_nats_url(bad).is_err(), "{bad:?}");
        }
        assert!(parse_nats_interval(0).is_err());
        assert_eq!(parse_nats_interval(50), Ok(50));
    }
}
