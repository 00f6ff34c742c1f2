//! `/streamer/candles/{symbol}/{timeframe}` and the batch `/streamer/candles?symbols=…`.

use std::fmt::Write as _;

use serde_json::{json, Value};
use shm_core::{
    validate_symbol, Candle, ReadError, Reader, RingReader, SymbolError, Timeframe,
    UnknownTimeframe,
};

use super::json::{error, iso_now, write_candles, ErrorCode, FIELDS};
use super::query::{param, percent_decode};
use super::status::{not_running, not_running_reason, open_error_reason};
use super::Api;
use crate::server::Response;

/// Most bytes one candles answer may take, estimated before it is built (about 170 bytes a
/// candle): a batch of many rings at a high limit is refused rather than built.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// Bytes of JSON per candle, at the most, for the estimate above.
const CANDLE_BYTES: usize = 170;

/// Most (symbol, timeframe) pairs in one batch request, after duplicates are dropped.
pub const MAX_BATCH_PAIRS: usize = 100;

/// One pair's error inside a batch answer.
fn inline_error(body: &mut String, symbol: &str, tf: Timeframe, code: ErrorCode, message: &str) {
    let _ = write!(
        body,
        "{{\"symbol\":\"{symbol}\",\"timeframe\":\"{tf}\",\"success\":false,\"error\":{},\"error_code\":\"{}\"}}",
        Value::String(message.to_owned()),
        code.as_str()
    );
}

/// `400 INVALID_SYMBOL`, worded by the naming rule's own error.
fn bad_symbol(shown: String) -> Response {
    let e = SymbolError {
        symbol: shown.clone(),
    };
    error(
        ErrorCode::InvalidSymbol,
        e.to_string(),
        json!({"symbol": shown}),
    )
}

/// `400 INVALID_TIMEFRAME`, worded by the timeframe parser's own error.
fn bad_timeframe(text: &str, symbol: Option<&str>) -> Response {
    let shown: String = text.chars().take(16).collect();
    let mut extra = json!({"timeframe": shown});
    if let Some(s) = symbol {
        extra["symbol"] = json!(s);
    }
    error(
        ErrorCode::InvalidTimeframe,
        UnknownTimeframe(shown).to_string(),
        extra,
    )
}

/// A `500 INVALID_STORED_DATA` if a candle breaks a rule the writer guarantees (a damaged or
/// forged segment): such data is never served as `success: true`.
fn refuse_damaged(candles: &[Candle], symbol: &str, timeframe: Timeframe) -> Option<Response> {
    let (c, defect) = candles.iter().find_map(|c| c.defect().map(|d| (c, d)))?;
    Some(error(
        ErrorCode::InvalidStoredData,
        format!(
            "the segment holds a damaged {symbol} {timeframe} candle (time {}): {defect}",
            c.time
        ),
        json!({"symbol": symbol, "timeframe": timeframe.name()}),
    ))
}

/// Why a (symbol, timeframe) pair has no ring: a 404 of the single endpoint, or an inline
/// error of the batch one.
struct Missing {
    code: ErrorCode,
    message: String,
    /// The symbols, or the symbol's timeframes, that the segment does hold.
    available: Vec<String>,
}

impl Missing {
    fn response(&self, symbol: &str, timeframe: Timeframe) -> Response {
        let mut extra = json!({"symbol": symbol, "details": {"available": self.available}});
        if self.code == ErrorCode::TimeframeNotAvailable {
            extra["timeframe"] = json!(timeframe.name());
        }
        error(self.code, self.message.clone(), extra)
    }
}

impl Api {
    pub(super) fn candles(&self, rest: &str, params: &[(String, String)]) -> Response {
        let mut parts = rest.split('/');
        let (Some(sym), Some(tf), None) = (parts.next(), parts.next(), parts.next()) else {
            return error(
                ErrorCode::NotFound,
                "expected /streamer/candles/{symbol}/{timeframe}",
                json!({}),
            );
        };
        let symbol = match percent_decode(sym, false).filter(|s| validate_symbol(s).is_ok()) {
            Some(s) => s,
            None => {
                let shown: String = percent_decode(sym, false)
                    .unwrap_or_else(|| sym.to_owned())
                    .chars()
                    .take(64)
                    .collect();
                return bad_symbol(shown);
            }
        };
        let tf_text = percent_decode(tf, false).unwrap_or_else(|| tf.to_owned());
        let Ok(timeframe) = tf_text.parse::<Timeframe>() else {
            return bad_timeframe(&tf_text, Some(&symbol));
        };
        let q = match self.candle_query(params) {
            Ok(q) => q,
            Err(r) => return r,
        };
        let guard = self.reader();
        let Some(reader) = guard.as_ref() else {
            let reason = Reader::open(&self.config.segment)
                .err()
                .map_or("no_segment", |e| open_error_reason(&e));
            return not_running(reason, None);
        };
        let ring = match self.lookup(reader, &symbol, timeframe) {
            Ok(ring) => ring,
            Err(missing) => return missing.response(&symbol, timeframe),
        };
        let status = reader.status();
        if let Some(reason) = not_running_reason(&status) {
            return not_running(reason, Some(&status));
        }
        let mut candles = Vec::with_capacity(q.limit);
        if let Err(ReadError::Busy { .. }) = ring.read_last(q.limit, &mut candles) {
            return not_running("ring_busy", Some(&status));
        }
        if let Some(r) = refuse_damaged(&candles, &symbol, timeframe) {
            return r;
        }
        let mut body = String::with_capacity(200 + candles.len() * 160);
        let _ = write!(body, "{{\"success\":true,\"symbol\":\"{symbol}\",\"timeframe\":\"{timeframe}\",\"count\":{},", candles.len());
        if q.raw {
            body.push_str("\"fields\":");
            body.push_str(&serde_json::to_string(&FIELDS).unwrap_or_default());
            body.push(',');
        }
        body.push_str("\"candles\":");
        write_candles(&mut body, &candles, q.asc, q.raw);
        if candles.len() < q.limit {
            let _ = write!(
                body,
                ",\"warning\":\"only {} of {} candles available\"",
                candles.len(),
                q.limit
            );
        }
        // The offset travels with the candles, so that a client can turn their server-time
        // stamps into true ages without a second request.
        let _ = write!(
            body,
            ",\"server_time_offset_seconds\":{},\"timestamp\":\"{}\",\"source\":\"streamer_buffer\"}}",
            status.server_time_offset_s,
            iso_now()
        );
        Response::json(200, body)
    }

    /// The ring of `symbol` at `timeframe`, or why the segment does not hold it.
    fn lookup<'r>(
        &self,
        reader: &'r Reader,
        symbol: &str,
        timeframe: Timeframe,
    ) -> Result<RingReader<'r>, Missing> {
        if let Some(ring) = reader.ring(symbol, timeframe) {
            return Ok(ring);
        }
        if !reader.layout().symbols().any(|s| s == symbol) {
            return Err(Missing {
                code: ErrorCode::SymbolNotFound,
                message: format!("symbol {symbol} is not streamed"),
                available: reader.layout().symbols().map(str::to_owned).collect(),
            });
        }
        Err(Missing {
            code: ErrorCode::TimeframeNotAvailable,
            message: format!("timeframe {timeframe} is not streamed for {symbol}"),
            available: reader
                .rings()
                .filter(|r| r.symbol() == symbol)
                .map(|r| r.timeframe().name().to_owned())
                .collect(),
        })
    }

    pub(super) fn candles_batch(&self, params: &[(String, String)]) -> Response {
        let list = |name: &str| -> Vec<String> {
            param(params, name)
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        // Duplicates are dropped (first one kept): `symbols=A,A,A...` must not multiply the work.
        let dedup = |mut v: Vec<String>| {
            let mut seen = std::collections::HashSet::new();
            v.retain(|s| seen.insert(s.clone()));
            v
        };
        let (symbols, tfs) = (dedup(list("symbols")), dedup(list("timeframes")));
        if symbols.is_empty() || tfs.is_empty() {
            return error(ErrorCode::InvalidParameter, "symbols and timeframes are required, e.g. ?symbols=BTCUSDc,XAUUSDc&timeframes=M1,M5", json!({}));
        }
        if symbols.len() * tfs.len() > MAX_BATCH_PAIRS {
            return error(
                ErrorCode::InvalidParameter,
                format!("at most {MAX_BATCH_PAIRS} symbol and timeframe pairs per request"),
                json!({}),
            );
        }
        if let Some(bad) = symbols.iter().find(|s| validate_symbol(s).is_err()) {
            return bad_symbol(bad.chars().take(64).collect());
        }
        let mut timeframes = Vec::new();
        for t in &tfs {
            match t.parse::<Timeframe>() {
                Ok(tf) => timeframes.push(tf),
                Err(_) => return bad_timeframe(t, None),
            }
        }
        let q = match self.candle_query(params) {
            Ok(q) => q,
            Err(r) => return r,
        };
        let pairs = symbols.len() * timeframes.len();
        if pairs.saturating_mul(q.limit).saturating_mul(CANDLE_BYTES) > MAX_RESPONSE_BYTES {
            return error(
                ErrorCode::ResponseTooLarge,
                format!(
                    "{pairs} rings of {} candles would exceed {} MiB; ask for fewer rings or a \
                     lower limit",
                    q.limit,
                    MAX_RESPONSE_BYTES >> 20
                ),
                json!({"details": {"max_bytes": MAX_RESPONSE_BYTES}}),
            );
        }
        let guard = self.reader();
        let Some(reader) = guard.as_ref() else {
            return not_running("no_segment", None);
        };
        let status = reader.status();
        if let Some(reason) = not_running_reason(&status) {
            return not_running(reason, Some(&status));
        }
        let mut body = String::from("{\"success\":true,\"results\":[");
        let mut candles = Vec::with_capacity(q.limit);
        let mut first = true;
        for symbol in &symbols {
            for &tf in &timeframes {
                if !first {
                    body.push(',');
                }
                first = false;
                let ring = match self.lookup(reader, symbol, tf) {
                    Ok(ring) => ring,
                    Err(missing) => {
                        inline_error(&mut body, symbol, tf, missing.code, &missing.message);
                        continue;
                    }
                };
                if ring.read_last(q.limit, &mut candles).is_err() {
                    inline_error(
                        &mut body,
                        symbol,
                        tf,
                        ErrorCode::StreamerNotRunning,
                        "ring busy",
                    );
                    continue;
                }
                if let Some((c, defect)) = candles.iter().find_map(|c| c.defect().map(|d| (c, d))) {
                    let message = format!("damaged candle (time {}): {defect}", c.time);
                    inline_error(
                        &mut body,
                        symbol,
                        tf,
                        ErrorCode::InvalidStoredData,
                        &message,
                    );
                    continue;
                }
                let _ = write!(body, "{{\"symbol\":\"{symbol}\",\"timeframe\":\"{tf}\",\"success\":true,\"count\":{},\"candles\":", candles.len());
                write_candles(&mut body, &candles, q.asc, q.raw);
                body.push('}');
            }
        }
        let _ = write!(
            body,
            "],\"server_time_offset_seconds\":{},\"timestamp\":\"{}\",\"source\":\"streamer_buffer\"}}",
            status.server_time_offset_s,
            iso_now()
        );
        Response::json(200, body)
    }
}
