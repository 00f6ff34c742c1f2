//! `GET /streamer/ticks/{symbol}?limit=N` or `?since_msc=T`, and `GET /streamer/symbols/{symbol}`:
//! a symbol's ticks and its MT5 information, from the segment.

use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{json, Value};
use shm_core::{InfoValue, ReadError, Reader, Tick};
use xxhash_rust::xxh3::xxh3_64;

use super::etag::none_match_hits;
use super::json::{error, iso_now, ErrorCode};
use super::query::{only_known, param, percent_decode};
use super::status::{not_running, not_running_reason, open_error_reason};
use super::Api;
use crate::message::{Request, Response};

/// Most ticks one answer holds: the ring's depth can be far larger (up to 2^20), and an
/// answer is built in memory; a client pages with `since_msc`.
pub const MAX_TICKS: usize = 10_000;

/// `limit` when neither it nor `since_msc` is given.
const DEFAULT_TICKS: usize = 100;

/// Bytes of JSON per tick, at the most, for the budget's reservation.
const TICK_BYTES: usize = 200;

/// `/streamer/ticks/{symbol}?limit=&since_msc=&from_position=`.
#[derive(Debug)]
pub(super) struct TicksRequest {
    pub symbol: String,
    pub limit: usize,
    pub from: TicksFrom,
}

/// Where an answer of ticks starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum TicksFrom {
    /// The newest `limit`.
    Newest,
    /// The first tick at or after this server time (ms).
    Time(i64),
    /// This ring position (every answer's `next_position`): the cursor that pages without
    /// a duplicate and without stalling, however many ticks share a millisecond.
    Position(u64),
}

/// `/streamer/symbols/{symbol}`.
#[derive(Debug)]
pub(super) struct SymbolRequest {
    pub symbol: String,
}

/// The symbol of a path's last segment, checked as every symbol is.
pub(super) fn symbol_of(rest: &str, shape: &str) -> Result<String, Response> {
    if rest.is_empty() || rest.contains('/') {
        return Err(error(
            ErrorCode::NotFound,
            format!("expected {shape}"),
            json!({}),
        ));
    }
    match percent_decode(rest, false).filter(|s| shm_core::validate_symbol(s).is_ok()) {
        Some(s) => Ok(s),
        None => Err(error(
            ErrorCode::InvalidSymbol,
            format!(
                "invalid symbol {:?}: expected 1 to 31 characters of A-Z a-z 0-9 . _ # -",
                rest.chars().take(64).collect::<String>()
            ),
            json!({}),
        )),
    }
}

impl TicksRequest {
    /// The query parameters it knows.
    pub const KNOWN: &'static [&'static str] = &["limit", "since_msc", "from_position"];

    /// Parses the path after `/streamer/ticks/` and the query parameters.
    pub fn parse(rest: &str, params: &[(String, String)]) -> Result<TicksRequest, Response> {
        only_known(params, Self::KNOWN)?;
        let symbol = symbol_of(rest, "/streamer/ticks/{symbol}")?;
        let limit = match param(params, "limit") {
            None => None,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_TICKS).contains(&n) => Some(n),
                _ => {
                    return Err(error(
                        ErrorCode::InvalidLimit,
                        format!("limit must be an integer from 1 to {MAX_TICKS}, found {text:?}"),
                        json!({}),
                    ))
                }
            },
        };
        let since_msc = match param(params, "since_msc") {
            None => None,
            Some(text) => match text.parse::<i64>() {
                // The times a tick record may hold (1970 to 2100): a later one is a mistake,
                // answered as such, not with an empty list.
                Ok(t) if (0..=shm_core::LATEST_TIME * 1000).contains(&t) => Some(t),
                _ => {
                    return Err(error(
                        ErrorCode::InvalidParameter,
                        format!(
                        "since_msc must be a server time in ms from 1970 to 2100, found {text:?}"
                    ),
                        json!({}),
                    ))
                }
            },
        };
        let from_position = match param(params, "from_position") {
            None => None,
            Some(text) => match text.parse::<u64>() {
                Ok(p) if p <= 1 << 62 => Some(p),
                _ => {
                    return Err(error(
                        ErrorCode::InvalidParameter,
                        format!("from_position must be a ring position (an answer's next_position), found {text:?}"),
                        json!({}),
                    ))
                }
            },
        };
        let from = match (since_msc, from_position) {
            (Some(_), Some(_)) => {
                return Err(error(
                    ErrorCode::InvalidParameter,
                    "give since_msc or from_position, not both".to_owned(),
                    json!({}),
                ))
            }
            (Some(t), None) => TicksFrom::Time(t),
            (None, Some(p)) => TicksFrom::Position(p),
            (None, None) => TicksFrom::Newest,
        };
        let limit = limit.unwrap_or(if from == TicksFrom::Newest {
            DEFAULT_TICKS
        } else {
            MAX_TICKS
        });
        Ok(TicksRequest {
            symbol,
            limit,
            from,
        })
    }
}

impl SymbolRequest {
    /// Parses the path after `/streamer/symbols/`; it takes no parameters.
    pub fn parse(rest: &str, params: &[(String, String)]) -> Result<SymbolRequest, Response> {
        only_known(params, &[])?;
        Ok(SymbolRequest {
            symbol: symbol_of(rest, "/streamer/symbols/{symbol}")?,
        })
    }
}

/// One tick as MT5's `Tick` fields, in its order.
pub(super) fn write_tick(out: &mut String, t: &Tick) {
    let _ = write!(
        out,
        "{{\"time\":{},\"bid\":{},\"ask\":{},\"last\":{},\"volume\":{},\"time_msc\":{},\"flags\":{},\"volume_real\":{}}}",
        t.time(),
        Value::from(t.bid),
        Value::from(t.ask),
        Value::from(t.last),
        t.volume,
        t.time_msc,
        t.flags,
        Value::from(t.volume_real)
    );
}

/// The reader, or the answer that says why there is none or why it is not to be trusted now.
pub(super) fn live_reader(api: &Api) -> Result<std::sync::Arc<Reader>, Response> {
    let Some(reader) = api.reader() else {
        let reason = Reader::open(&api.config.segment)
            .err()
            .map_or("no_segment", |e| open_error_reason(&e));
        return Err(not_running(reason, None));
    };
    let status = reader.status();
    if let Some(reason) = not_running_reason(&status) {
        return Err(not_running(reason, Some(&status)));
    }
    Ok(reader)
}

fn unknown_symbol(reader: &Reader, symbol: &str) -> Response {
    let available: Vec<&str> = reader.layout().symbols().collect();
    error(
        ErrorCode::SymbolNotFound,
        format!("symbol {symbol} is not streamed"),
        json!({"symbol": symbol, "details": {"available": available}}),
    )
}

fn damaged(symbol: &str, e: &ReadError) -> Response {
    match e {
        ReadError::Busy { .. } => error(
            ErrorCode::RecordBusy,
            format!("the segment's {symbol} record stayed mid-write at every try; retry"),
            json!({"symbol": symbol}),
        ),
        _ => error(
            ErrorCode::InvalidStoredData,
            format!("the segment's {symbol} record: {e}"),
            json!({"symbol": symbol}),
        ),
    }
}

impl Api {
    pub(super) fn ticks(&self, req: TicksRequest, if_none_match: Option<&str>) -> Response {
        let Some(held) = self
            .config
            .budget
            .reserve(req.limit.saturating_mul(TICK_BYTES) + 1024)
        else {
            return crate::reply::server_busy();
        };
        let reader = match live_reader(self) {
            Ok(r) => r,
            Err(r) => return r,
        };
        let Some(ring) = reader.ticks(&req.symbol) else {
            return unknown_symbol(&reader, &req.symbol);
        };
        let mut ticks = Vec::with_capacity(req.limit.min(ring.capacity() as usize));
        let read = match req.from {
            TicksFrom::Time(t) => ring.read_since(t, req.limit, &mut ticks),
            TicksFrom::Position(p) => ring.read_from(p, req.limit, &mut ticks),
            TicksFrom::Newest => ring.read_last(req.limit, &mut ticks),
        };
        let span = match read {
            Ok(span) => span,
            Err(e) => return damaged(&req.symbol, &e),
        };
        // The cursor: the position of the first tick answered, and the one to ask from next.
        let next = span.first + ticks.len() as u64;
        let symbol = &req.symbol;
        let mut data = String::with_capacity(64 + ticks.len() * 160);
        let _ = write!(
            data,
            "\"symbol\":\"{symbol}\",\"count\":{},\"first_position\":{},\"next_position\":{next},\"ticks\":[",
            ticks.len(),
            span.first
        );
        for (i, t) in ticks.iter().enumerate() {
            if i > 0 {
                data.push(',');
            }
            write_tick(&mut data, t);
        }
        data.push(']');
        let etag = format!("W/\"{:016x}\"", xxh3_64(data.as_bytes()));
        if if_none_match.is_some_and(|h| none_match_hits(h, &etag)) {
            return Response::not_modified(etag);
        }
        let body = format!(
            "{{\"success\":true,{data},\"depth\":{},\"server_time_offset_seconds\":{},\"timestamp\":\"{}\"}}",
            ring.capacity(),
            reader.status().server_time_offset_s,
            iso_now()
        );
        Response {
            etag: Some(etag),
            reservation: Some(Box::new(held)),
            ..Response::json(200, body)
        }
    }

    pub(super) fn symbol(&self, req: SymbolRequest, if_none_match: Option<&str>) -> Response {
        let reader = match live_reader(self) {
            Ok(r) => r,
            Err(r) => return r,
        };
        let symbol = &req.symbol;
        if reader.ticks(symbol).is_none() {
            return unknown_symbol(&reader, symbol);
        }
        let record = match reader.symbol_info(symbol) {
            Ok(Some(r)) => r,
            Ok(None) => {
                return error(
                    ErrorCode::SymbolNotFound,
                    format!("the feed has not given {symbol}'s information yet"),
                    json!({"symbol": symbol}),
                )
            }
            Err(e) => return damaged(symbol, &e),
        };
        // The fields that move with every tick come from the newest tick, never stale.
        let info = match reader.ticks(symbol).map(|r| r.latest()) {
            Some(Ok(Some(tick))) => record.info.with_tick(&tick),
            Some(Err(e)) => return damaged(symbol, &e),
            _ => record.info,
        };
        let mut fields = serde_json::Map::new();
        for (name, value) in info.fields() {
            let v = match value {
                InfoValue::Int(n) => Value::from(n),
                InfoValue::Bool(b) => Value::from(b),
                InfoValue::Float(x) => Value::from(x),
                InfoValue::Str(s) => Value::from(s),
            };
            fields.insert(name.to_owned(), v);
        }
        let source = match record.source {
            shm_core::InfoSource::Terminal => "terminal",
            shm_core::InfoSource::Derived => "derived",
            shm_core::InfoSource::Exported => "exported",
        };
        let data = json!({"symbol": symbol, "info": fields, "source": source});
        let data_text = data.to_string();
        let etag = format!("W/\"{:016x}\"", xxh3_64(data_text.as_bytes()));
        if if_none_match.is_some_and(|h| none_match_hits(h, &etag)) {
            return Response::not_modified(etag);
        }
        let mut body = data;
        body["success"] = json!(true);
        body["updated"] = json!(shm_core::iso8601_ms((record.updated_ns / 1_000_000) as i64));
        body["timestamp"] = json!(iso_now());
        Response {
            etag: Some(etag),
            ..Response::json(200, body.to_string())
        }
    }
}

/// `/streamer/ticks/{symbol}`: parsed, then answered.
pub(super) fn serve_ticks(
    api: &Arc<Api>,
    rest: &str,
    params: &[(String, String)],
    req: &Request,
) -> Response {
    if super::range::is_tick_range(params) {
        return super::range::serve_ticks(api, rest, params);
    }
    match TicksRequest::parse(rest, params) {
        Ok(t) => api.ticks(t, req.if_none_match.as_deref()),
        Err(refused) => refused,
    }
}

/// `/streamer/symbols/{symbol}`: parsed, then answered.
pub(super) fn serve_symbol(
    api: &Arc<Api>,
    rest: &str,
    params: &[(String, String)],
    req: &Request,
) -> Response {
    match SymbolRequest::parse(rest, params) {
        Ok(s) => api.symbol(s, req.if_none_match.as_deref()),
        Err(refused) => refused,
    }
}
