//! The JSON of the push events (`/streamer/stream`, `/streamer/ws`): candles, ticks, and the
//! resume point a client sends back as `Last-Event-ID`.

use serde_json::{json, Value};
use shm_core::{Candle, Timeframe};

use super::json::write_candle;
use super::push::EVENT_VERSION;

/// One tick event's JSON: MT5's Tick fields per tick, oldest first, and how many ticks since
/// the last event were left out to keep the stream bounded.
pub(super) fn ticks_event(symbol: &str, ticks: &[shm_core::Tick], skipped: u64) -> String {
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
pub(super) fn resume_id(times: &[i64]) -> String {
    let times: Vec<String> = times.iter().map(|t| t.max(&0).to_string()).collect();
    times.join(",")
}

/// One candle event's JSON: the candle as `/streamer/candles` writes it, with its ring.
pub(super) fn candle_event(symbol: &str, timeframe: Timeframe, c: &Candle) -> String {
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
