//! The three places M1 bars come from, each normalised to [`Candle`]s: the shared-memory segment,
//! the HTTP shim, and the MT5 gateway.

use std::fmt;
use std::time::Duration;

use mt5_gateway_client as gateway;
use serde_json::Value;
use shm_core::{Liveness, OpenError, ReadError, Reader, SegmentPath, Status, Timeframe};

use crate::bar::Candle;
use shm_core::time::parse_iso8601;

/// Which source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// The shared-memory segment.
    Shm,
    /// The HTTP shim.
    Http,
    /// The MT5 gateway.
    Mt5,
}

impl Origin {
    /// Every source, in the default order.
    pub const ALL: [Origin; 3] = [Origin::Shm, Origin::Http, Origin::Mt5];

    /// `shm`, `http` or `mt5`.
    pub fn name(self) -> &'static str {
        match self {
            Origin::Shm => "shm",
            Origin::Http => "http",
            Origin::Mt5 => "mt5",
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so that `{:<4}` lines the sources up in columns.
        f.pad(self.name())
    }
}

impl std::str::FromStr for Origin {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Origin::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown source {s:?} (expected shm, http or mt5)"))
    }
}

/// Why a source did not serve a symbol this cycle.
#[derive(Debug, Clone, PartialEq)]
pub enum Skip {
    /// No address was given for it.
    NotConfigured,
    /// It could not be reached, its writer is not live, or it answered with an error.
    Unavailable(String),
    /// It sent something that is not bars: a malformed answer or an impossible price.
    BadData(String),
    /// It returned fewer bars than the minimum.
    TooFew {
        /// Bars returned.
        got: usize,
        /// The minimum.
        need: usize,
    },
    /// Its newest bar is older than the limit.
    Stale {
        /// Age of the newest bar's open time, seconds.
        age_s: i64,
        /// The limit.
        max_age_s: i64,
    },
}

impl Skip {
    /// A short machine name: `not_configured`, `unavailable`, `bad_data`, `too_few`, `stale`.
    pub fn class(&self) -> &'static str {
        match self {
            Skip::NotConfigured => "not_configured",
            Skip::Unavailable(_) => "unavailable",
            Skip::BadData(_) => "bad_data",
            Skip::TooFew { .. } => "too_few",
            Skip::Stale { .. } => "stale",
        }
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::NotConfigured => f.write_str("not configured"),
            Skip::Unavailable(why) => write!(f, "unavailable ({why})"),
            Skip::BadData(why) => write!(f, "sent bad data ({why})"),
            Skip::TooFew { got, need } => write!(f, "has too few candles ({got} < {need})"),
            Skip::Stale { age_s, max_age_s } => {
                write!(f, "stale (newest M1 is {age_s} s old, limit {max_age_s} s")?;
                if *age_s >= 3000 {
                    f.write_str("; is the server-time offset right?")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// What a source returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    /// The bars, oldest first, times in UTC.
    pub bars: Vec<Candle>,
    /// The server-time offset that was taken off (server time minus UTC, seconds).
    pub offset_s: i64,
    /// The segment's writer generation, where the source knows it.
    pub generation: Option<u64>,
}

/// A place M1 bars come from.
pub trait BarSource {
    /// Which one it is.
    fn kind(&self) -> Origin;
    /// The newest `count` M1 bars of `symbol`, oldest first, the newest possibly forming.
    fn fetch(&mut self, symbol: &str, count: usize) -> Result<Fetched, Skip>;

    /// The last candles of a source whose writer has stopped or died, for when no source is
    /// live: `(bars, why they are not live)`. Only a segment keeps candles after its writer.
    fn last_known(&mut self, _symbol: &str, _count: usize) -> Option<(Fetched, String)> {
        None
    }
}

/// Checks the order and values of normalised bars.
fn checked(mut bars: Vec<Candle>) -> Result<Vec<Candle>, Skip> {
    // Sources differ in order (the original API answered newest first); sort, then insist on
    // one bar per minute.
    bars.sort_by_key(|b| b.time);
    if let Some(w) = bars.windows(2).find(|w| w[0].time == w[1].time) {
        return Err(Skip::BadData(format!("two bars at {}", w[0].time)));
    }
    if let Some(why) = bars.iter().find_map(crate::bar::defect) {
        return Err(Skip::BadData(why));
    }
    Ok(bars)
}

/// A source without an address: always [`Skip::NotConfigured`].
#[derive(Debug, Clone, Copy)]
pub struct Unconfigured(pub Origin);

impl BarSource for Unconfigured {
    fn kind(&self) -> Origin {
        self.0
    }

    fn fetch(&mut self, _: &str, _: usize) -> Result<Fetched, Skip> {
        Err(Skip::NotConfigured)
    }
}

/// The segment, read in place: no syscall per read, a few hundred nanoseconds for 50 bars.
#[derive(Debug)]
pub struct ShmSource {
    path: SegmentPath,
    reader: Option<Reader>,
    offset_override: Option<i64>,
    scratch: Vec<shm_core::Candle>,
}

impl ShmSource {
    /// A source reading `path`; `offset_override` replaces the offset the writer publishes.
    pub fn new(path: SegmentPath, offset_override: Option<i64>) -> ShmSource {
        ShmSource {
            path,
            reader: None,
            offset_override,
            scratch: Vec::new(),
        }
    }
}

/// The newest `count` M1 candles of `ring` as checked bars.
fn read_bars(
    ring: shm_core::RingReader<'_>,
    count: usize,
    scratch: &mut Vec<shm_core::Candle>,
) -> Result<Vec<Candle>, Skip> {
    ring.read_last(count, scratch)
        .map_err(|e: ReadError| Skip::Unavailable(e.to_string()))?;
    checked(scratch.clone())
}

/// The reader in `slot`, attached first if need be, and its status. When the writer is not
/// live, the file may have been replaced (a restarted streamer with another layout, or a file
/// deleted and created anew): re-attach then, and read the status again. One liveness probe
/// per call while the writer is alive.
fn attach<'a>(
    slot: &'a mut Option<Reader>,
    path: &SegmentPath,
) -> Result<(&'a Reader, Status), Skip> {
    let reader = match slot {
        Some(r) => r,
        None => slot.insert(Reader::open(path).map_err(|e| {
            Skip::Unavailable(match e {
                OpenError::NotFound { .. } => format!("no segment {path}"),
                OpenError::Initializing { .. } => "segment initialising".to_owned(),
                other => other.to_string(),
            })
        })?),
    };
    let mut status = reader.status();
    // A refresh error keeps the old mapping, whose status then says why.
    if status.liveness != Liveness::Alive && matches!(reader.refresh(), Ok(true)) {
        status = reader.status();
    }
    Ok((reader, status))
}

impl BarSource for ShmSource {
    fn kind(&self) -> Origin {
        Origin::Shm
    }

    fn last_known(&mut self, symbol: &str, count: usize) -> Option<(Fetched, String)> {
        let (reader, status) = attach(&mut self.reader, &self.path).ok()?;
        if !matches!(status.liveness, Liveness::Stopped | Liveness::Gone) {
            return None;
        }
        let ring = reader.ring(symbol, Timeframe::M1)?;
        let offset_s = self.offset_override.unwrap_or(status.server_time_offset_s);
        let bars = read_bars(ring, count, &mut self.scratch).ok()?;
        (!bars.is_empty()).then(|| {
            (
                Fetched {
                    bars,
                    offset_s,
                    generation: Some(status.generation),
                },
                format!("writer {}", status.liveness),
            )
        })
    }

    fn fetch(&mut self, symbol: &str, count: usize) -> Result<Fetched, Skip> {
        let (reader, status) = attach(&mut self.reader, &self.path)?;
        if status.liveness != Liveness::Alive {
            return Err(Skip::Unavailable(format!("writer {}", status.liveness)));
        }
        let ring = reader
            .ring(symbol, Timeframe::M1)
            .ok_or_else(|| Skip::Unavailable(format!("the segment has no M1 ring for {symbol}")))?;
        if ring.unknown_to_source() {
            return Err(Skip::Unavailable(format!(
                "the streamer's source does not know {symbol}"
            )));
        }
        let offset_s = self.offset_override.unwrap_or(status.server_time_offset_s);
        Ok(Fetched {
            bars: read_bars(ring, count, &mut self.scratch)?,
            offset_s,
            generation: Some(status.generation),
        })
    }
}

/// The HTTP shim's `/streamer/candles/{symbol}/M1`, over one keep-alive connection.
#[derive(Debug)]
pub struct HttpSource {
    base: String,
    agent: ureq::Agent,
    token: Option<String>,
    offset_override: Option<i64>,
}

/// The largest answer read (500 candles are about 80 kB).
const MAX_BODY: u64 = 4 << 20;

impl HttpSource {
    /// A source asking the shim at `base` (`http://host:port`), giving up after `timeout`.
    pub fn new(
        base: &str,
        timeout: Duration,
        token: Option<String>,
        offset_override: Option<i64>,
    ) -> HttpSource {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent(concat!("mtf-monitor/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        HttpSource {
            base: base.trim_end_matches('/').to_owned(),
            agent,
            token,
            offset_override,
        }
    }

    /// Turns one candle object into a bar. `time` may be epoch seconds or ISO 8601, volume
    /// may be named `volume` or `tick_volume`, so that the original Python API reads too.
    fn bar(v: &Value) -> Result<Candle, String> {
        let num = |k: &str| {
            v[k].as_f64()
                .ok_or_else(|| format!("candle without a numeric {k:?}: {v}"))
        };
        let time = match &v["time"] {
            Value::Number(n) => n.as_i64().ok_or_else(|| format!("bad time {n}"))?,
            Value::String(s) => parse_iso8601(s).map_err(|e| e.to_string())?,
            other => return Err(format!("candle without a time: {other}")),
        };
        let volume = v
            .get("volume")
            .or_else(|| v.get("tick_volume"))
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("candle without a volume: {v}"))?;
        Ok(Candle {
            time,
            open: num("open")?,
            high: num("high")?,
            low: num("low")?,
            close: num("close")?,
            tick_volume: volume,
            spread: v["spread"]
                .as_i64()
                .and_then(|s| i32::try_from(s).ok())
                .unwrap_or(0),
            real_volume: v["real_volume"].as_u64().unwrap_or(0),
            forming: !v["complete"].as_bool().unwrap_or(true),
            repaired: false,
        })
    }
}

impl BarSource for HttpSource {
    fn kind(&self) -> Origin {
        Origin::Http
    }

    fn fetch(&mut self, symbol: &str, count: usize) -> Result<Fetched, Skip> {
        let url = format!(
            "{}/streamer/candles/{symbol}/M1?limit={count}&order=asc",
            self.base
        );
        let mut request = self.agent.get(&url);
        if let Some(t) = &self.token {
            request = request.header("Authorization", format!("Bearer {t}"));
        }
        let mut response = request.call().map_err(|e| {
            Skip::Unavailable(match e {
                ureq::Error::Timeout(_) => format!("no answer from {} in time", self.base),
                ureq::Error::Io(io) => format!("{}: {io}", self.base),
                other => format!("{}: {other}", self.base),
            })
        })?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
            .map_err(|e| Skip::Unavailable(format!("reading the answer: {e}")))?;
        let v: Value = serde_json::from_str(&body).map_err(|e| {
            Skip::BadData(format!(
                "HTTP {status}, not JSON ({e}): {:.80}",
                body.trim()
            ))
        })?;
        if status != 200 || v["success"] == Value::Bool(false) {
            let code = v["error_code"].as_str().unwrap_or("?");
            return Err(Skip::Unavailable(match v["details"]["reason"].as_str() {
                // `writer_gone` reads as "writer gone", `no_segment` as "no segment".
                Some(reason) if code == "STREAMER_NOT_RUNNING" => reason.replace('_', " "),
                _ => format!(
                    "HTTP {status} {code}: {}",
                    v["error"].as_str().unwrap_or("no message")
                ),
            }));
        }
        let offset_s = self
            .offset_override
            .or_else(|| v["server_time_offset_seconds"].as_i64())
            .unwrap_or(0);
        let candles = v["candles"]
            .as_array()
            .ok_or_else(|| Skip::BadData("answer without a candles array".into()))?;
        let bars = candles
            .iter()
            .map(HttpSource::bar)
            .collect::<Result<Vec<_>, _>>()
            .map_err(Skip::BadData)?;
        Ok(Fetched {
            bars: checked(bars)?,
            offset_s,
            generation: None,
        })
    }
}

/// The MT5 gateway's `copy_rates_from_pos(symbol, M1, 0, count)`: position 0 is the bar
/// still forming, so the last bar returned is marked incomplete.
#[derive(Debug)]
pub struct Mt5Source {
    client: gateway::Client,
    /// The gateway's offset, asked once per connection.
    offset: Option<i64>,
    offset_override: Option<i64>,
}

impl Mt5Source {
    /// A source asking the gateway at `addr` (`HOST:PORT`).
    pub fn new(addr: &str, timeout: Duration, offset_override: Option<i64>) -> Mt5Source {
        let mut config = gateway::Config::new(addr);
        config.connect_timeout = timeout;
        config.read_timeout = timeout * 2;
        config.write_timeout = timeout;
        // A whole answer within the same bound, however slowly its bytes arrive, so that one
        // cycle (and a SIGTERM during it) never waits on a trickling gateway.
        config.request_deadline = timeout * 2;
        config.client_name = concat!("mtf-monitor/", env!("CARGO_PKG_VERSION")).into();
        config.token = std::env::var("MT5_GATEWAY_TOKEN")
            .ok()
            .filter(|t| !t.is_empty());
        Mt5Source {
            client: gateway::Client::new(config),
            offset: None,
            offset_override,
        }
    }
}

impl BarSource for Mt5Source {
    fn kind(&self) -> Origin {
        Origin::Mt5
    }

    fn fetch(&mut self, symbol: &str, count: usize) -> Result<Fetched, Skip> {
        let client = &mut self.client;
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        let result = (|| {
            let offset_s = match (self.offset_override, self.offset) {
                (Some(o), _) | (None, Some(o)) => o,
                (None, None) => {
                    // A gateway that cannot tell the offset (no terminal clock yet) counts as
                    // UTC; `--server-offset` overrides.
                    let o = client.hello()?.server_time_offset_seconds.unwrap_or(0);
                    *self.offset.insert(o)
                }
            };
            Ok((
                client.copy_rates_from_pos(symbol, Timeframe::M1, 0, count)?,
                offset_s,
            ))
        })();
        let (rates, offset_s) = result.map_err(|e: gateway::Error| {
            // Ask the offset again after any failure: the next connection may be another
            // terminal.
            self.offset = None;
            match e {
                gateway::Error::Protocol(m) => Skip::BadData(m),
                other => Skip::Unavailable(other.to_string()),
            }
        })?;
        let last = rates.len().saturating_sub(1);
        let bars = rates
            .iter()
            .enumerate()
            .map(|(i, r)| Candle {
                forming: i == last,
                ..*r
            })
            .collect();
        Ok(Fetched {
            bars: checked(bars)?,
            offset_s,
            generation: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_candles_of_both_apis_normalise_alike() {
        // Ours: epoch seconds in server time, with the offset beside them.
        let ours = serde_json::json!({"time": 7260, "open": 1.0, "high": 2.0, "low": 0.5,
            "close": 1.5, "volume": 3, "spread": 4, "real_volume": 5, "complete": false});
        // The original: ISO strings, the same instant.
        let original = serde_json::json!({"time": "1970-01-01T02:01:00", "open": 1.0,
            "high": 2.0, "low": 0.5, "close": 1.5, "tick_volume": 3, "spread": 4,
            "real_volume": 5, "complete": false});
        let a = HttpSource::bar(&ours).unwrap();
        let b = HttpSource::bar(&original).unwrap();
        assert_eq!(a, b);
        assert_eq!(crate::bar::utc_time(&a, 7200), 60);
        assert!(a.forming);
        for bad in [
            serde_json::json!({"open": 1.0}),
            serde_json::json!({"time": "soon", "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1}),
            serde_json::json!({"time": 60, "open": "1", "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1}),
            serde_json::json!({"time": 60, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0}),
        ] {
            assert!(HttpSource::bar(&bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn bars_are_sorted_and_duplicates_or_impossible_prices_refused() {
        let bar = |time, close| Candle {
            time,
            tick_volume: 1,
            ..Candle::flat(0, close)
        };
        let sorted = checked(vec![bar(120, 1.0), bar(60, 1.0)]).unwrap();
        assert_eq!(sorted.iter().map(|b| b.time).collect::<Vec<_>>(), [60, 120]);
        assert!(matches!(
            checked(vec![bar(60, 1.0), bar(60, 2.0)]),
            Err(Skip::BadData(_))
        ));
        assert!(matches!(
            checked(vec![bar(60, -1.0)]),
            Err(Skip::BadData(_))
        ));
    }

    #[test]
    fn skips_read_as_a_sentence() {
        assert_eq!(
            Skip::Unavailable("writer gone".into()).to_string(),
            "unavailable (writer gone)"
        );
        assert_eq!(
            Skip::TooFew { got: 3, need: 10 }.to_string(),
            "has too few candles (3 < 10)"
        );
        assert_eq!(
            Skip::Stale {
                age_s: 7230,
                max_age_s: 90
            }
            .to_string(),
            "stale (newest M1 is 7230 s old, limit 90 s; is the server-time offset right?)"
        );
        assert_eq!("HTTP".parse::<Origin>(), Ok(Origin::Http));
        assert!("redis".parse::<Origin>().is_err());
    }
}
