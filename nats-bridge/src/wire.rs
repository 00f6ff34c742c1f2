//! What travels over NATS: subjects and payloads (docs/NATS.md is the reference for clients in
//! other languages).
//!
//! - `mtf.<segment>.candles.<SYMBOL>.<TF>`: one message per change of a ring, the JSON of the
//!   HTTP push events: `{"v":1,"type":"candle","symbol":…,"timeframe":…,"complete":…,
//!   "candle":{…}}`. Closed bars (`complete: true`) once each, in order; forming bars at most
//!   once per ring every `--nats-interval-ms`.
//! - `mtf.<segment>.status`: `{"v":1,"type":"status",…}` on every change and every second.
//! - `mtf.<segment>.ticks.<SYMBOL>`: the symbol's ticks, each once, in order, in batches
//!   that say the origin position of their first tick: `{"v":1,"type":"ticks","symbol":…,
//!   "first":P,"ticks":[…]}`.
//! - `mtf.<segment>.req.<KIND>[.<MIRROR-ID>]` (`layout`, `history`, `ticks`, `symbol`):
//!   requests answered by the origin, for mirrors that start late or come back
//!   (`crate::subjects` says why a mirror names itself).
//!
//! JSON, because it is what every other reader of this project already speaks, and because it
//! costs nothing that matters here: the origin writes it once per change, not per tick, and a
//! 200-byte message is far below what the link carries (docs/BENCHMARKS.md).

use serde::{Deserialize, Serialize};
use shm_core::{Candle, Tick};

/// The payload version; a message of another version is refused with a typed error.
pub const VERSION: u64 = 1;

/// A tick, with short keys: a batch of them is most of the traffic.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct WireTick {
    /// `time_msc`.
    pub t: i64,
    /// `bid`.
    pub b: f64,
    /// `ask`.
    pub a: f64,
    /// `last`.
    pub l: f64,
    /// `volume`.
    pub v: u64,
    /// `volume_real`.
    pub vr: f64,
    /// `flags`.
    pub f: u32,
}

impl From<&Tick> for WireTick {
    fn from(t: &Tick) -> WireTick {
        WireTick {
            t: t.time_msc,
            b: t.bid,
            a: t.ask,
            l: t.last,
            v: t.volume,
            vr: t.volume_real,
            f: t.flags,
        }
    }
}

impl From<&WireTick> for Tick {
    fn from(w: &WireTick) -> Tick {
        Tick {
            time_msc: w.t,
            bid: w.b,
            ask: w.a,
            last: w.l,
            volume: w.v,
            volume_real: w.vr,
            flags: w.f,
            published_ns: 0,
        }
    }
}

/// A batch of one symbol's ticks: positions `first`, `first + 1`, … of the origin's ring.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TickBatch {
    /// Payload version.
    pub v: u64,
    /// The symbol.
    pub symbol: String,
    /// The origin position of the first tick.
    pub first: u64,
    /// The ticks, oldest first.
    pub ticks: Vec<WireTick>,
}

/// A tick history request: at most `limit` ticks from origin position `from` on (or from the
/// oldest the origin holds, if it is older); or, with `from_msc`, from that millisecond on,
/// the first `skip` ticks at it left out, from the origin's store and ring (a mirror's copy
/// of the store; `from` is then 0 and the answer's `first` too).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TickHistoryRequest {
    /// Payload version.
    pub v: u64,
    /// The symbol.
    pub symbol: String,
    /// The first position wanted.
    pub from: u64,
    /// Instead, the first millisecond wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_msc: Option<i64>,
    /// With `from_msc`: the ticks at it the asker holds already.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skip: u64,
    /// Most ticks in the answer.
    pub limit: usize,
    /// A number the requester chose at random, echoed by the answer (see [`Echo`]).
    #[serde(default)]
    pub nonce: u64,
}

/// The answer to a tick history request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TickHistoryReply {
    /// Payload version.
    pub v: u64,
    /// The request answered, as the origin read it.
    #[serde(default)]
    pub answers: Option<serde_json::Value>,
    /// The origin position of the first tick.
    pub first: u64,
    /// Ticks the origin had written, as of the answer.
    pub head: u64,
    /// The ticks, oldest first.
    pub ticks: Vec<WireTick>,
}

/// Most ticks in one tick history answer: about 200 KB of JSON.
pub const TICK_PAGE: usize = 2000;

/// The most ticks at one millisecond a store request may say it holds (`skip`): answering
/// reads them again. No market prints 100,000 ticks in one millisecond.
pub const MAX_SKIP: u64 = 100_000;

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A symbol information request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SymbolRequest {
    /// Payload version.
    pub v: u64,
    /// The symbol.
    pub symbol: String,
    /// A number the requester chose at random, echoed by the answer (see [`Echo`]).
    #[serde(default)]
    pub nonce: u64,
}

/// The answer to a symbol information request: MT5's fields by name, and where the origin's
/// record came from (`terminal` or `derived`); `info` is `null` when it has none.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SymbolReply {
    /// Payload version.
    pub v: u64,
    /// The request answered, as the origin read it.
    #[serde(default)]
    pub answers: Option<serde_json::Value>,
    /// `terminal` or `derived`.
    pub source: String,
    /// The fields.
    pub info: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The tick depth a layout answer without one means (an origin before tick rings).
fn default_tick_depth() -> u32 {
    shm_core::DEFAULT_TICK_DEPTH
}

/// A candle as the JSON API writes it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct WireCandle {
    /// Open time, epoch seconds, server time.
    pub time: i64,
    /// Open.
    pub open: f64,
    /// High.
    pub high: f64,
    /// Low.
    pub low: f64,
    /// Close.
    pub close: f64,
    /// Tick volume.
    pub volume: u64,
    /// Spread in points.
    pub spread: i32,
    /// Exchange volume.
    pub real_volume: u64,
    /// Closed (`true`) or forming.
    pub complete: bool,
}

impl From<&Candle> for WireCandle {
    fn from(c: &Candle) -> WireCandle {
        WireCandle {
            time: c.time,
            open: c.open,
            high: c.high,
            low: c.low,
            close: c.close,
            volume: c.tick_volume,
            spread: c.spread,
            real_volume: c.real_volume,
            complete: !c.forming,
        }
    }
}

impl From<&WireCandle> for Candle {
    fn from(w: &WireCandle) -> Candle {
        Candle {
            time: w.time,
            open: w.open,
            high: w.high,
            low: w.low,
            close: w.close,
            tick_volume: w.volume,
            spread: w.spread,
            real_volume: w.real_volume,
            forming: !w.complete,
            repaired: false,
        }
    }
}

/// A candle event as the origin publishes it: the JSON of the HTTP push events (docs/NATS.md),
/// written here from the watcher's typed change.
#[derive(Debug, Serialize)]
pub struct CandleEvent<'a> {
    /// Payload version.
    pub v: u64,
    /// `candle`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The ring's symbol.
    pub symbol: &'a str,
    /// The ring's timeframe, by name.
    pub timeframe: &'static str,
    /// Closed (`true`) or forming.
    pub complete: bool,
    /// The candle.
    pub candle: WireCandle,
}

impl CandleEvent<'_> {
    /// The event's JSON for `candle` of ring `symbol` `timeframe`.
    pub fn json(symbol: &str, timeframe: shm_core::Timeframe, candle: &Candle) -> String {
        let event = CandleEvent {
            v: VERSION,
            kind: "candle",
            symbol,
            timeframe: timeframe.name(),
            complete: !candle.forming,
            candle: WireCandle::from(candle),
        };
        serde_json::to_string(&event).unwrap_or_default()
    }
}

/// A status event as the origin publishes it (the HTTP push events' status, docs/NATS.md).
#[derive(Debug, Serialize)]
pub struct StatusEvent {
    /// Payload version.
    pub v: u64,
    /// `status`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Whether the writer is alive.
    pub running: bool,
    /// `alive`, `stalled`, `stopped`, `gone`, `replaced`, or `no_segment`.
    pub liveness: &'static str,
    /// The feed's state (absent without a segment).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feed_state: Option<&'static str>,
    /// The feed's kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feed_kind: Option<&'static str>,
    /// When the writer last published, unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_update_ms: Option<u64>,
    /// Broker server time minus UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_time_offset_seconds: Option<i64>,
    /// The writer's process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writer_pid: Option<u32>,
}

impl StatusEvent {
    /// The event's JSON for the writer's `status`, or for no segment.
    pub fn json(status: Option<&shm_core::Status>) -> String {
        let event = match status {
            Some(s) => StatusEvent {
                v: VERSION,
                kind: "status",
                running: s.liveness == shm_core::Liveness::Alive,
                liveness: s.liveness.as_str(),
                feed_state: Some(s.feed_state.map_or("unknown", |f| f.as_str())),
                feed_kind: Some(s.feed_kind.map_or("unknown", |k| k.as_str())),
                last_update_ms: Some(s.last_update_ns / 1_000_000),
                server_time_offset_seconds: Some(s.server_time_offset_s),
                writer_pid: Some(s.writer_pid),
            },
            None => StatusEvent {
                v: VERSION,
                kind: "status",
                running: false,
                liveness: "no_segment",
                feed_state: None,
                feed_kind: None,
                last_update_ms: None,
                server_time_offset_seconds: None,
                writer_pid: None,
            },
        };
        serde_json::to_string(&event).unwrap_or_default()
    }
}

/// A candle message.
#[derive(Debug, Clone, Deserialize)]
pub struct CandleMessage {
    /// Payload version.
    pub v: u64,
    /// The ring's symbol.
    pub symbol: String,
    /// The ring's timeframe, by name.
    pub timeframe: String,
    /// The candle.
    pub candle: WireCandle,
}

/// A status message (the fields a mirror uses; the rest are for people).
#[derive(Debug, Clone, Deserialize)]
pub struct StatusMessage {
    /// Payload version.
    pub v: u64,
    /// `alive`, `stalled`, `stopped`, `gone`, `replaced` or `no_segment`.
    pub liveness: String,
    /// The origin's feed state.
    #[serde(default)]
    pub feed_state: Option<String>,
    /// Broker server time minus UTC.
    #[serde(default)]
    pub server_time_offset_seconds: i64,
}

/// One ring of the origin's layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireRing {
    /// Symbol.
    pub symbol: String,
    /// Timeframe name.
    pub timeframe: String,
    /// Closed candles the ring keeps.
    pub capacity: u32,
}

/// The answer to a layout request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayoutReply {
    /// Payload version.
    pub v: u64,
    /// The rings, in layout order.
    pub rings: Vec<WireRing>,
    /// Ticks each symbol's tick ring keeps.
    #[serde(default = "default_tick_depth")]
    pub tick_depth: u32,
    /// The terminal behind the origin, if it has one.
    #[serde(default)]
    pub terminal: Option<shm_core::TerminalInfo>,
}

/// A history request: the newest `limit` closed bars of a ring older than `before` (all if
/// `None`), with the forming bar; or, with `after`, the oldest `limit` closed bars newer than
/// it, from the origin's store and ring.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryRequest {
    /// Payload version.
    pub v: u64,
    /// Symbol.
    pub symbol: String,
    /// Timeframe name.
    pub timeframe: String,
    /// Only bars opened before this time.
    pub before: Option<i64>,
    /// Instead, the oldest closed bars opened after this time, from the origin's history
    /// store and its ring (a mirror's copy of the store, forward in time; no forming bar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
    /// Most bars in the answer.
    pub limit: usize,
    /// A number the requester chose at random, echoed by the answer (see [`Echo`]).
    #[serde(default)]
    pub nonce: u64,
}

/// The answer to a history request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryReply {
    /// Payload version.
    pub v: u64,
    /// The request answered, as the origin read it.
    #[serde(default)]
    pub answers: Option<serde_json::Value>,
    /// Closed bars, oldest first.
    pub closed: Vec<WireCandle>,
    /// The forming bar, if any.
    pub forming: Option<WireCandle>,
}

/// Every answer names what it answers (issue 40): the request as the origin read it, its
/// `nonce` included. A mirror takes an answer only if that is its own request. Reply subjects
/// are guessable, and an account that can ask can name another's as its reply-to: without the
/// echo, a mirror stored EURUSD's record as USDJPY's.
pub trait Echo {
    /// The request this answer says it answers.
    fn answers(&self) -> Option<&serde_json::Value>;
}

impl Echo for HistoryReply {
    fn answers(&self) -> Option<&serde_json::Value> {
        self.answers.as_ref()
    }
}

impl Echo for TickHistoryReply {
    fn answers(&self) -> Option<&serde_json::Value> {
        self.answers.as_ref()
    }
}

impl Echo for SymbolReply {
    fn answers(&self) -> Option<&serde_json::Value> {
        self.answers.as_ref()
    }
}

/// A random number for a request's `nonce`: the standard library's per-process random keys,
/// hashed with a counter (no two requests of a process share one).
pub fn nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    // Relaxed: only distinctness matters.
    h.write_u64(COUNT.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// Most bars in one history answer: about 200 KB of JSON, a fifth of NATS's default payload
/// limit of 1 MB.
pub const HISTORY_PAGE: usize = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_taken_only_for_the_request_it_names() {
        let asked = SymbolRequest {
            v: VERSION,
            symbol: "USDJPY".into(),
            nonce: nonce(),
        };
        let echo = |req: &SymbolRequest| SymbolReply {
            v: VERSION,
            answers: serde_json::to_value(req).ok(),
            source: "terminal".into(),
            info: None,
        };
        let mine = serde_json::to_value(&asked).unwrap();
        assert_eq!(echo(&asked).answers(), Some(&mine));
        // The attack: another symbol's answer sent to this mirror's reply subject.
        let other = SymbolRequest {
            symbol: "EURUSD".into(),
            ..asked.clone()
        };
        assert_ne!(echo(&other).answers(), Some(&mine));
        // The same symbol asked by someone else: another nonce.
        let theirs = SymbolRequest {
            nonce: nonce(),
            ..asked.clone()
        };
        assert_ne!(echo(&theirs).answers(), Some(&mine));
        // An origin that echoes nothing.
        assert_eq!(
            SymbolReply {
                answers: None,
                ..echo(&asked)
            }
            .answers(),
            None
        );
    }

    #[test]
    fn published_events_have_the_documented_fields_and_read_back() {
        let c = Candle::flat(1_704_239_940, 1.10234);
        let json = CandleEvent::json("EURUSD.pro", shm_core::Timeframe::M5, &c);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["v"], 1);
        assert_eq!(v["type"], "candle");
        assert_eq!(v["timeframe"], "M5");
        assert_eq!(v["complete"], true);
        let fields: Vec<&str> = v["candle"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(fields.len(), 9, "{fields:?}");
        let back: CandleMessage = serde_json::from_str(&json).unwrap();
        assert_eq!(Candle::from(&back.candle), c);
        let none: serde_json::Value = serde_json::from_str(&StatusEvent::json(None)).unwrap();
        assert_eq!(
            none,
            serde_json::json!({"v": 1, "type": "status", "running": false, "liveness": "no_segment"})
        );
        let back: StatusMessage = serde_json::from_str(&StatusEvent::json(None)).unwrap();
        assert_eq!(back.liveness, "no_segment");
    }

    #[test]
    fn candles_survive_the_wire_bit_for_bit() {
        let c = Candle {
            time: 1_700_000_040,
            open: 0.1 + 0.2,
            high: 1.234_567_890_123_456_7,
            low: 5e-324_f64.max(0.000_001),
            close: 90_123.456_789,
            tick_volume: 42,
            spread: -3,
            real_volume: 7,
            forming: true,
            repaired: false,
        };
        let json = serde_json::to_string(&WireCandle::from(&c)).unwrap();
        let back: WireCandle = serde_json::from_str(&json).unwrap();
        let back = Candle::from(&back);
        assert_eq!(back.open.to_bits(), c.open.to_bits());
        assert_eq!(back.high.to_bits(), c.high.to_bits());
        assert_eq!(back, c);
    }
}
