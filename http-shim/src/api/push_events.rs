//! The JSON of the push events (`/streamer/stream`, `/streamer/ws`): candles, ticks, and the
//! resume point a client sends back as `Last-Event-ID`.

use mtf_watch::{Change, Watcher};
use serde_json::{json, Value};
use shm_core::{Candle, Liveness, Status, Timeframe};

use super::json::write_candle;
use super::push::EVENT_VERSION;

/// A change as the push endpoints send it: the event's name (SSE `event:`), its JSON, and for
/// a closed bar the resume point (SSE `id:`).
pub(super) struct Framed {
    /// `candle`, `status` or `ticks`.
    pub kind: &'static str,
    /// The event's JSON.
    pub json: String,
    /// The resume point after a closed bar.
    pub id: Option<String>,
}

/// `change`, from `watcher`, as the push endpoints send it.
pub(super) fn framed(watcher: &Watcher, change: Change) -> Framed {
    match change {
        Change::Candle {
            pair,
            candle,
            resume,
        } => {
            let (symbol, timeframe) = watcher
                .pair(pair)
                .expect("a change names one of its watcher's pairs");
            Framed {
                kind: "candle",
                json: candle_event(symbol, timeframe, &candle),
                id: resume.as_deref().map(resume_id),
            }
        }
        Change::Status(status) => Framed {
            kind: "status",
            json: status_event(status.as_deref()),
            id: None,
        },
        Change::Ticks {
            symbol,
            ticks,
            skipped,
        } => Framed {
            kind: "ticks",
            json: ticks_event(&symbol, &ticks, skipped),
            id: None,
        },
    }
}

/// The status event's JSON: the writer's liveness and feed, or `no_segment`.
fn status_event(status: Option<&Status>) -> String {
    match status {
        Some(s) => json!({
            "v": EVENT_VERSION,
            "type": "status",
            "running": s.liveness == Liveness::Alive,
            "liveness": s.liveness.as_str(),
            "feed_state": s.feed_state.map_or("unknown", |f| f.as_str()),
            "feed_kind": s.feed_kind.map_or("unknown", |k| k.as_str()),
            "last_update_ms": (s.last_update_ns / 1_000_000),
            "server_time_offset_seconds": s.server_time_offset_s,
            "writer_pid": s.writer_pid,
        }),
        None => {
            json!({"v": EVENT_VERSION, "type": "status", "running": false, "liveness": "no_segment"})
        }
    }
    .to_string()
}

/// One tick event's JSON: MT5's Tick fields per tick, oldest first, and how many ticks since
/// the last event were left out to keep the stream bounded.
fn ticks_event(symbol: &str, ticks: &[shm_core::Tick], skipped: u64) -> String {
    let list: Vec<Value> = ticks
        .iter()
        .map(|t| {
            json!({"time": t.time(), "bid": t.bid, "ask": t.ask, "last": t.last, "volume": t.volume,
                   "time_msc": t.time_msc, "flags": t.flags, "volume_real": t.volume_real})
        })
        .collect();
    json!({"v": EVENT_VERSION, "type": "ticks", "symbol": symbol, "skipped": skipped, "ticks": list})
        .to_string()
}

/// The resume point: the newest closed-bar time sent, per ring, in subscription order.
fn resume_id(times: &[i64]) -> String {
    let times: Vec<String> = times.iter().map(|t| t.max(&0).to_string()).collect();
    times.join(",")
}

/// One candle event's JSON: the candle as `/streamer/candles` writes it, with its ring.
fn candle_event(symbol: &str, timeframe: Timeframe, c: &Candle) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("{\"v\":1,\"type\":\"candle\",\"symbol\":");
    out.push_str(&Value::String(symbol.to_owned()).to_string());
    out.push_str(",\"timeframe\":\"");
    out.push_str(timeframe.name());
    out.push_str("\",\"complete\":");
    out.push_str(if c.forming { "false" } else { "true" });
    out.push_str(",\"candle\":");
    write_candle(&mut out, c, false);
    out.push('}');
    out
}
