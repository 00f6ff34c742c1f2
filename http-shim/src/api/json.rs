//! Candle JSON (dicts or raw arrays, either order); the error envelope is `crate::reply`'s.

use shm_core::{iso8601_ms, now_ns, Candle};

pub(super) use crate::reply::error;
pub use crate::reply::ErrorCode;

/// The candle fields of the `raw` format, in order.
pub(super) const FIELDS: [&str; 9] = [
    "time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "spread",
    "real_volume",
    "complete",
];

pub(super) fn iso_now() -> String {
    iso8601_ms((now_ns() / 1_000_000) as i64)
}

/// Writes a finite f64 as a JSON number that stays a float in every client (`2.0`, never
/// `2`), in shortest round-trip form; `null` otherwise, which the streamer never stores.
fn num(out: &mut String, x: f64) {
    if x.is_finite() {
        out.push_str(ryu::Buffer::new().format_finite(x));
    } else {
        out.push_str("null");
    }
}

fn int(out: &mut String, x: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(x));
}

/// Field separators of the two formats: dict keys, or bare commas for raw arrays.
const DICT_SEPARATORS: [&str; 9] = [
    "{\"time\":",
    ",\"open\":",
    ",\"high\":",
    ",\"low\":",
    ",\"close\":",
    ",\"volume\":",
    ",\"spread\":",
    ",\"real_volume\":",
    ",\"complete\":",
];
const RAW_SEPARATORS: [&str; 9] = ["[", ",", ",", ",", ",", ",", ",", ",", ","];

/// Appends one candle as a JSON dict, or as a raw array in the order of [`FIELDS`].
pub(super) fn write_candle(out: &mut String, c: &Candle, raw: bool) {
    let sep = if raw {
        &RAW_SEPARATORS
    } else {
        &DICT_SEPARATORS
    };
    out.push_str(sep[0]);
    int(out, c.time);
    out.push_str(sep[1]);
    num(out, c.open);
    out.push_str(sep[2]);
    num(out, c.high);
    out.push_str(sep[3]);
    num(out, c.low);
    out.push_str(sep[4]);
    num(out, c.close);
    out.push_str(sep[5]);
    int(out, c.tick_volume);
    out.push_str(sep[6]);
    int(out, c.spread);
    out.push_str(sep[7]);
    int(out, c.real_volume);
    out.push_str(sep[8]);
    out.push_str(if c.forming { "false" } else { "true" });
    out.push_str(if raw { "]" } else { "}" });
}

/// Appends candles (given oldest first) as a JSON array, newest first unless `asc`, as dicts
/// or raw arrays.
pub fn write_candles(out: &mut String, candles: &[Candle], asc: bool, raw: bool) {
    out.reserve(candles.len() * 170);
    out.push('[');
    let mut emit = |i: usize, c: &Candle| {
        if i > 0 {
            out.push(',');
        }
        write_candle(out, c, raw);
    };
    if asc {
        candles.iter().enumerate().for_each(|(i, c)| emit(i, c));
    } else {
        candles
            .iter()
            .rev()
            .enumerate()
            .for_each(|(i, c)| emit(i, c));
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn candles_serialise_in_both_formats_and_orders() {
        let c = [
            Candle {
                time: 60,
                open: 1.5,
                high: 2.0,
                low: 1.0,
                close: 1.25,
                tick_volume: 3,
                spread: 2,
                real_volume: 7,
                forming: false,
                repaired: false,
            },
            Candle {
                time: 120,
                forming: true,
                ..Candle::flat(120, 90_000.0)
            },
        ];
        let mut s = String::new();
        write_candles(&mut s, &c, false, false);
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v[0]["time"], 120);
        assert_eq!(v[0]["complete"], false);
        assert_eq!(
            v[1],
            json!({"time": 60, "open": 1.5, "high": 2.0, "low": 1.0, "close": 1.25, "volume": 3, "spread": 2, "real_volume": 7, "complete": true})
        );
        s.clear();
        write_candles(&mut s, &c, true, true);
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v[0], json!([60, 1.5, 2.0, 1.0, 1.25, 3, 2, 7, true]));
        assert_eq!(v[1][0], 120);
    }
}
