//! The protocol's messages (docs/MT5_GATEWAY.md): bars, ticks, the hello, and the envelopes
//! answers and stream lines come in.

use crate::error::Error;
use serde::Deserialize;
use serde_json::Value;

/// The protocol version this client speaks.
pub const PROTOCOL: u32 = 1;
/// The longest response line accepted for rates: the protocol's 50,000 bars at about 200
/// bytes each is 10 MB; this leaves room for longer symbol names and number forms.
pub const MAX_RATES_LINE: usize = 16 * 1024 * 1024;
/// The longest line accepted for any other answer (hello, ping, a tick, a stream event).
pub const MAX_LINE: usize = 64 * 1024;

/// One bar: MT5's rate, as the segment's [`Candle`] (closed unless the caller says it is the
/// forming one). One tick: MT5's tick, as the segment's [`Tick`], its `time` checked against
/// its `time_msc` as it is read (shm-core's `serde` feature).
pub use shm_core::{Candle, Tick};

/// What `hello` tells about the gateway.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Hello {
    /// Protocol version served.
    pub protocol: u32,
    /// Gateway name and version.
    pub gateway: String,
    /// `metatrader5`, `mt5linux` or `csv`.
    pub backend: String,
    /// Terminal details, where there is a terminal.
    pub terminal: Option<Value>,
    /// Account server and login, where there is an account.
    pub account: Option<Value>,
    /// Broker server time minus UTC, if known.
    pub server_time_offset_seconds: Option<i64>,
    /// Known symbols.
    #[serde(default)]
    pub symbols: Vec<String>,
}

/// The `error` object of an `ok: false` answer.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub(crate) code: Option<String>,
    #[serde(default)]
    pub(crate) message: Option<String>,
    #[serde(default)]
    mt5_code: Option<i64>,
    #[serde(default)]
    mt5_message: Option<String>,
}

impl ErrorBody {
    pub(crate) fn into_error(self) -> Error {
        let code = self.code.unwrap_or_else(|| "UNKNOWN".into());
        let message = self.message.unwrap_or_default();
        match (code.as_str(), self.mt5_code) {
            ("MT5_ERROR", Some(mt5)) => Error::Mt5 {
                code: mt5,
                message: self.mt5_message.unwrap_or(message),
            },
            _ => Error::Gateway { code, message },
        }
    }
}

/// Every answer line: the request's id, and a result or an error.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope<T> {
    #[serde(default)]
    pub(crate) id: Option<u64>,
    #[serde(default)]
    pub(crate) ok: Option<bool>,
    #[serde(default = "none")]
    pub(crate) result: Option<T>,
    #[serde(default)]
    pub(crate) error: Option<ErrorBody>,
}

pub(crate) fn none<T>() -> Option<T> {
    None
}

#[derive(Deserialize)]
pub(crate) struct Rates {
    pub(crate) rates: Vec<Candle>,
}

#[derive(Deserialize)]
pub(crate) struct InfoResult {
    pub(crate) info: serde_json::Map<String, serde_json::Value>,
}

/// Most fields a `symbol_info` answer may have (MT5's SymbolInfo has 96).
pub const MAX_INFO_FIELDS: usize = 256;

/// One field of a `symbol_info` answer, as the terminal gave it.
#[derive(Debug, Clone, PartialEq)]
pub enum InfoField {
    /// A boolean (`select`, `spread_float`, …).
    Bool(bool),
    /// An integer (`digits`, `trade_mode`, …).
    Int(i64),
    /// A double (`point`, `volume_min`, …).
    Float(f64),
    /// A string (`description`, `path`, …).
    Str(String),
}

/// A `symbol_info` answer's fields, in the order the gateway sent them: scalars only, at most
/// [`MAX_INFO_FIELDS`]. What each must be is the caller's to check (the segment keeps MT5's
/// 96 fields, and strings of at most 127 bytes).
pub(crate) fn info_fields(
    map: serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<(String, InfoField)>, String> {
    use serde_json::Value;
    if map.len() > MAX_INFO_FIELDS {
        return Err(format!("{} fields, at most {MAX_INFO_FIELDS}", map.len()));
    }
    map.into_iter()
        .map(|(name, v)| {
            let field = match v {
                Value::Bool(b) => InfoField::Bool(b),
                Value::Number(n) => match n.as_i64() {
                    Some(i) => InfoField::Int(i),
                    None => InfoField::Float(n.as_f64().unwrap_or(f64::NAN)),
                },
                Value::String(s) => InfoField::Str(s),
                _ => return Err(format!("field {name:?} is not a number or string")),
            };
            Ok((name, field))
        })
        .collect()
}

#[derive(Deserialize)]
pub(crate) struct TickPage {
    pub(crate) ticks: Vec<Tick>,
}

/// Ticks one `copy_ticks_range` page holds at most (the gateway's `MAX_TICK_PAGE`).
pub const MAX_TICK_PAGE: u32 = 20_000;

#[derive(Deserialize)]
pub(crate) struct TickResult {
    pub(crate) tick: Tick,
}

/// One line of a tick stream.
#[derive(Debug, Deserialize)]
pub(crate) struct StreamLine {
    #[serde(default)]
    pub(crate) event: Option<String>,
    #[serde(default)]
    pub(crate) symbol: Option<String>,
    #[serde(default)]
    pub(crate) tick: Option<Tick>,
    #[serde(default)]
    pub(crate) reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_ticks_read_as_the_segments_records() {
        let c: Candle = serde_json::from_str(
            r#"{"time": 1704153600, "open": 1.1, "high": 1.2, "low": 1.0, "close": 1.15,
                "tick_volume": 42, "spread": 3, "real_volume": 0}"#,
        )
        .unwrap();
        assert_eq!(
            (c.time, c.tick_volume, c.forming),
            (1_704_153_600, 42, false)
        );
        let tick = r#"{"time": 1704153600, "bid": 1.1, "ask": 1.2, "last": 0.0, "volume": 0,
                       "time_msc": 1704153600123, "flags": 6, "volume_real": 0.0}"#;
        let t: Tick = serde_json::from_str(tick).unwrap();
        assert_eq!(
            (t.time_msc, t.flags, t.time()),
            (1_704_153_600_123, 6, 1_704_153_600)
        );
        // A `time` that is not its `time_msc` in whole seconds: refused as it is read.
        let e =
            serde_json::from_str::<Tick>(&tick.replace("1704153600,", "1704153601,")).unwrap_err();
        assert!(e.to_string().contains("disagrees"), "{e}");
    }
}
