//! The `/streamer/*` endpoints and `/metrics`, answered from the segment alone.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Instant;

use serde_json::{json, Map, Value};
use shm_core::{
    iso8601_ms, now_ns, validate_symbol, Candle, Counter, FeedState, Liveness, OpenError,
    ReadError, Reader, RingReader, SegmentPath, Status, Timeframe,
};

use crate::metrics::{Endpoint, Metrics};
use crate::server::{Request, Response};

/// Settings of the API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The segment to read.
    pub segment: SegmentPath,
    /// Largest `limit` accepted.
    pub max_limit: usize,
    /// If set, every request needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

/// The API's state, shared by all connection threads.
#[derive(Debug)]
pub struct Api {
    config: ApiConfig,
    /// The attached reader; `None` while there is no segment. Requests take the read lock;
    /// re-attaching takes the write lock, at most every `REFRESH_NS`.
    reader: RwLock<Option<Reader>>,
    last_refresh_ns: AtomicU64,
    metrics: Metrics,
    started: Instant,
}

/// `limit` when none is given.
const DEFAULT_LIMIT: usize = 50;

/// Most bytes one candles answer may take, estimated before it is built (about 170 bytes a
/// candle): a batch of many rings at a high limit is refused rather than built.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// Bytes of JSON per candle, at the most, for the estimate above.
const CANDLE_BYTES: usize = 170;

/// Most (symbol, timeframe) pairs in one batch request, after duplicates are dropped.
pub const MAX_BATCH_PAIRS: usize = 100;

/// How often a request may trigger a check for a replaced or new segment.
const REFRESH_NS: u64 = 250_000_000;

/// The candle fields of the `raw` format, in order.
const FIELDS: [&str; 9] = [
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

fn iso_now() -> String {
    iso8601_ms((now_ns() / 1_000_000) as i64)
}

/// An error answer in the documented shape.
fn error(status: u16, code: &str, message: impl Into<String>, extra: Value) -> Response {
    let mut body =
        json!({"success": false, "error": message.into(), "error_code": code, "details": {}});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        for (k, v) in e {
            b.insert(k, v);
        }
    }
    Response::json(status, body.to_string())
}

/// Decodes `%XX` escapes and `+` (in queries); `None` for malformed escapes or non-UTF-8.
fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                // Exactly two hex digits: from_str_radix alone would take "+1" as 1.
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Query parameters; the last of repeated names wins. `Err` names a malformed one.
fn query_params(query: &str) -> Result<Vec<(String, String)>, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match (percent_decode(k, true), percent_decode(v, true)) {
                (Some(k), Some(v)) => Ok((k, v)),
                _ => Err(p.chars().take(100).collect()),
            }
        })
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
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

/// Appends candles as JSON, newest first unless `asc`, as dicts or raw arrays.
pub fn write_candles(out: &mut String, candles: &[Candle], asc: bool, raw: bool) {
    // Field separators of the two formats: dict keys, or bare commas for raw arrays.
    let sep: [&str; 9] = if raw {
        ["[", ",", ",", ",", ",", ",", ",", ",", ","]
    } else {
        [
            "{\"time\":",
            ",\"open\":",
            ",\"high\":",
            ",\"low\":",
            ",\"close\":",
            ",\"volume\":",
            ",\"spread\":",
            ",\"real_volume\":",
            ",\"complete\":",
        ]
    };
    let close = if raw { "]" } else { "}" };
    out.reserve(candles.len() * 170);
    out.push('[');
    let mut emit = |i: usize, c: &Candle| {
        if i > 0 {
            out.push(',');
        }
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
        out.push_str(close);
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

/// A `500 INVALID_STORED_DATA` if a candle breaks a rule the writer guarantees (a damaged or
/// forged segment): such data is never served as `success: true`.
fn refuse_damaged(candles: &[Candle], symbol: &str, timeframe: Timeframe) -> Option<Response> {
    let (c, defect) = candles.iter().find_map(|c| c.defect().map(|d| (c, d)))?;
    Some(error(
        500,
        "INVALID_STORED_DATA",
        format!(
            "the segment holds a damaged {symbol} {timeframe} candle (time {}): {defect}",
            c.time
        ),
        json!({"symbol": symbol, "timeframe": timeframe.name()}),
    ))
}

/// Symbols whose rings the writer flagged as unknown to its source.
fn unknown_symbols(reader: &Reader) -> Vec<String> {
    let mut out: Vec<String> = reader
        .rings()
        .filter(|r| r.unknown_to_source())
        .map(|r| r.symbol().to_owned())
        .collect();
    out.dedup();
    out
}

/// Why the streamer is not serving, for `STREAMER_NOT_RUNNING`.
fn not_running_reason(status: &Status) -> Option<&'static str> {
    match status.liveness {
        Liveness::Alive => None,
        Liveness::Stalled => Some("writer_stalled"),
        Liveness::Stopped => Some("writer_stopped"),
        Liveness::Gone => Some("writer_gone"),
        Liveness::Replaced => Some("segment_replaced"),
    }
}

fn not_running(reason: &str, status: Option<&Status>) -> Response {
    let mut details = json!({"reason": reason});
    if let Some(s) = status {
        details["heartbeat_age_ms"] = json!(s.heartbeat_age.as_millis() as u64);
        details["writer_pid"] = json!(s.writer_pid);
        details["last_update"] = last_update(s);
    }
    error(
        503,
        "STREAMER_NOT_RUNNING",
        format!("the streamer is not running ({reason})"),
        json!({"details": details}),
    )
}

fn last_update(s: &Status) -> Value {
    if s.last_update_ns == 0 {
        Value::Null
    } else {
        json!(iso8601_ms((s.last_update_ns / 1_000_000) as i64))
    }
}

fn open_error_reason(e: &OpenError) -> &'static str {
    match e {
        OpenError::NotFound { .. } => "no_segment",
        OpenError::Initializing { .. } => "segment_initializing",
        _ => "segment_unreadable",
    }
}

/// Why a (symbol, timeframe) pair has no ring: a 404 of the single endpoint, or an inline
/// error of the batch one.
struct Missing {
    code: &'static str,
    message: String,
    /// The symbols, or the symbol's timeframes, that the segment does hold.
    available: Vec<String>,
}

impl Missing {
    fn response(&self, symbol: &str, timeframe: Timeframe) -> Response {
        let mut extra = json!({"symbol": symbol, "details": {"available": self.available}});
        if self.code == "TIMEFRAME_NOT_AVAILABLE" {
            extra["timeframe"] = json!(timeframe.name());
        }
        error(404, self.code, self.message.clone(), extra)
    }
}

/// What a candles request asks for, validated.
struct CandleQuery {
    limit: usize,
    asc: bool,
    raw: bool,
}

impl Api {
    /// The API over `config.segment`; it attaches on the first request that finds the segment.
    pub fn new(config: ApiConfig) -> Api {
        let reader = Reader::open(&config.segment).ok();
        Api {
            config,
            reader: RwLock::new(reader),
            last_refresh_ns: AtomicU64::new(now_ns()),
            metrics: Metrics::default(),
            started: Instant::now(),
        }
    }

    /// Answers one request and counts it.
    pub fn handle(&self, req: &Request) -> Response {
        let start = Instant::now();
        let (endpoint, response) = self.route(req);
        self.metrics
            .record(endpoint, response.status, start.elapsed());
        response
    }

    /// Re-attaches if the segment was replaced or appeared, at most every 250 ms.
    fn refresh(&self) {
        let now = now_ns();
        // Relaxed: the timestamp only elects which request refreshes; the reader itself is
        // handed over by the RwLock, whose lock and unlock order everything that matters.
        let last = self.last_refresh_ns.load(Ordering::Relaxed);
        if now.saturating_sub(last) < REFRESH_NS {
            return;
        }
        // One thread wins the right to refresh; the others go on with the current reader.
        if self
            .last_refresh_ns
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let Ok(mut guard) = self.reader.write() else {
            return;
        };
        match guard.as_mut() {
            Some(r) => {
                if let Err(OpenError::NotFound { .. }) = r.refresh() {
                    *guard = None;
                }
            }
            None => *guard = Reader::open(&self.config.segment).ok(),
        }
    }

    fn authorized(&self, req: &Request) -> bool {
        let Some(token) = &self.config.token else {
            return true;
        };
        // The scheme is case-insensitive (RFC 9110 11.1); the token is compared exactly.
        let given = req
            .authorization
            .as_deref()
            .and_then(|h| h.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map_or("", |(_, t)| t.trim());
        constant_time_eq(given.as_bytes(), token.as_bytes())
    }

    fn route(&self, req: &Request) -> (Endpoint, Response) {
        let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
        let endpoint = match path {
            "/streamer/candles" => Endpoint::CandlesBatch,
            p if p.starts_with("/streamer/candles/") => Endpoint::Candles,
            "/streamer/status" => Endpoint::Status,
            "/streamer/available" => Endpoint::Available,
            "/streamer/health" => Endpoint::Health,
            "/metrics" => Endpoint::Metrics,
            _ => Endpoint::Other,
        };
        if !self.authorized(req) {
            let mut r = error(
                401,
                "UNAUTHORIZED",
                "a valid bearer token is required",
                json!({}),
            );
            r.extra_headers.push("WWW-Authenticate: Bearer".into());
            return (endpoint, r);
        }
        if req.method != "GET" && req.method != "HEAD" {
            let mut r = error(
                405,
                "METHOD_NOT_ALLOWED",
                format!("method {} is not allowed; use GET or HEAD", req.method),
                json!({}),
            );
            r.extra_headers.push("Allow: GET, HEAD".into());
            return (endpoint, r);
        }
        let params = match query_params(query) {
            Ok(p) => p,
            Err(bad) => {
                return (
                    endpoint,
                    error(
                        400,
                        "INVALID_PARAMETER",
                        format!("malformed query parameter {bad:?}"),
                        json!({}),
                    ),
                )
            }
        };
        let known: &[&str] = match endpoint {
            Endpoint::Candles => &["limit", "format", "order"],
            Endpoint::CandlesBatch => &["symbols", "timeframes", "limit", "format", "order"],
            _ => &[],
        };
        if let Some((bad, _)) = params.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            let shown: String = bad.chars().take(50).collect();
            let hint = if known.is_empty() {
                "this endpoint takes no parameters".to_owned()
            } else {
                format!("known parameters: {}", known.join(", "))
            };
            return (
                endpoint,
                error(
                    400,
                    "INVALID_PARAMETER",
                    format!("unknown query parameter {shown:?}; {hint}"),
                    json!({"details": {"parameter": shown, "known": known}}),
                ),
            );
        }
        self.refresh();
        let response = match endpoint {
            Endpoint::Candles => self.candles(&path["/streamer/candles/".len()..], &params),
            Endpoint::CandlesBatch => self.candles_batch(&params),
            Endpoint::Status => self.status(),
            Endpoint::Available => self.available(),
            Endpoint::Health => self.health(),
            Endpoint::Metrics => self.prometheus(),
            Endpoint::Other => error(
                404,
                "NOT_FOUND",
                format!("no route {}", path.chars().take(200).collect::<String>()),
                json!({}),
            ),
        };
        (endpoint, response)
    }

    /// The largest `limit`: what the largest ring can hold (its capacity and the forming
    /// candle), at most the configured `max_limit`.
    fn max_limit(&self) -> usize {
        let guard = self.reader.read().unwrap_or_else(|p| p.into_inner());
        let largest = guard
            .as_ref()
            .and_then(|r| r.rings().map(|ring| ring.capacity() as usize + 1).max());
        largest.map_or(self.config.max_limit, |l| l.min(self.config.max_limit))
    }

    fn candle_query(&self, params: &[(String, String)]) -> Result<CandleQuery, Response> {
        let max = self.max_limit();
        let limit = match param(params, "limit") {
            None => DEFAULT_LIMIT.min(max),
            // Digits only: `usize::from_str` would also take "+5".
            Some(s) => match s
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| s.parse::<usize>().ok())
                .flatten()
            {
                Some(n) if (1..=max).contains(&n) => n,
                _ => {
                    return Err(error(
                        400,
                        "INVALID_LIMIT",
                        format!(
                            "limit must be an integer from 1 to {max} (the largest ring's \
                             capacity plus the forming candle, at most --max-limit), got {:?}",
                            s.chars().take(50).collect::<String>()
                        ),
                        json!({"details": {"min": 1, "max": max}}),
                    ))
                }
            },
        };
        let raw = match param(params, "format").unwrap_or("dict") {
            "dict" => false,
            "raw" => true,
            other => {
                return Err(error(
                    400,
                    "INVALID_PARAMETER",
                    format!(
                        "format must be dict or raw, got {:?}",
                        other.chars().take(50).collect::<String>()
                    ),
                    json!({}),
                ))
            }
        };
        let asc = match param(params, "order").unwrap_or("desc") {
            "desc" => false,
            "asc" => true,
            other => {
                return Err(error(
                    400,
                    "INVALID_PARAMETER",
                    format!(
                        "order must be desc or asc, got {:?}",
                        other.chars().take(50).collect::<String>()
                    ),
                    json!({}),
                ))
            }
        };
        Ok(CandleQuery { limit, asc, raw })
    }

    fn candles(&self, rest: &str, params: &[(String, String)]) -> Response {
        let mut parts = rest.split('/');
        let (Some(sym), Some(tf), None) = (parts.next(), parts.next(), parts.next()) else {
            return error(
                404,
                "NOT_FOUND",
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
                return error(400, "INVALID_SYMBOL", format!("invalid symbol {shown:?}: expected 1 to 31 characters of A-Z a-z 0-9 . _ # -"), json!({"symbol": shown}));
            }
        };
        let tf_text = percent_decode(tf, false).unwrap_or_else(|| tf.to_owned());
        let Ok(timeframe) = tf_text.parse::<Timeframe>() else {
            let shown: String = tf_text.chars().take(16).collect();
            return error(
                400,
                "INVALID_TIMEFRAME",
                format!(
                    "unknown timeframe {shown:?}; expected M1, M5, M15, M30, H1, H4, D1, W1 or MN1"
                ),
                json!({"timeframe": shown, "symbol": symbol}),
            );
        };
        let q = match self.candle_query(params) {
            Ok(q) => q,
            Err(r) => return r,
        };
        let guard = self.reader.read().unwrap_or_else(|p| p.into_inner());
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
                code: "SYMBOL_NOT_FOUND",
                message: format!("symbol {symbol} is not streamed"),
                available: reader.layout().symbols().map(str::to_owned).collect(),
            });
        }
        Err(Missing {
            code: "TIMEFRAME_NOT_AVAILABLE",
            message: format!("timeframe {timeframe} is not streamed for {symbol}"),
            available: reader
                .rings()
                .filter(|r| r.symbol() == symbol)
                .map(|r| r.timeframe().name().to_owned())
                .collect(),
        })
    }

    fn candles_batch(&self, params: &[(String, String)]) -> Response {
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
            return error(400, "INVALID_PARAMETER", "symbols and timeframes are required, e.g. ?symbols=BTCUSDc,XAUUSDc&timeframes=M1,M5", json!({}));
        }
        if symbols.len() * tfs.len() > MAX_BATCH_PAIRS {
            return error(
                400,
                "INVALID_PARAMETER",
                format!("at most {MAX_BATCH_PAIRS} symbol and timeframe pairs per request"),
                json!({}),
            );
        }
        if let Some(bad) = symbols.iter().find(|s| validate_symbol(s).is_err()) {
            let shown: String = bad.chars().take(64).collect();
            return error(
                400,
                "INVALID_SYMBOL",
                format!("invalid symbol {shown:?}"),
                json!({"symbol": shown}),
            );
        }
        let mut timeframes = Vec::new();
        for t in &tfs {
            match t.parse::<Timeframe>() {
                Ok(tf) => timeframes.push(tf),
                Err(_) => {
                    let shown: String = t.chars().take(16).collect();
                    return error(
                        400,
                        "INVALID_TIMEFRAME",
                        format!("unknown timeframe {shown:?}"),
                        json!({"timeframe": shown}),
                    );
                }
            }
        }
        let q = match self.candle_query(params) {
            Ok(q) => q,
            Err(r) => return r,
        };
        let pairs = symbols.len() * timeframes.len();
        if pairs.saturating_mul(q.limit).saturating_mul(CANDLE_BYTES) > MAX_RESPONSE_BYTES {
            return error(
                400,
                "RESPONSE_TOO_LARGE",
                format!(
                    "{pairs} rings of {} candles would exceed {} MiB; ask for fewer rings or a \
                     lower limit",
                    q.limit,
                    MAX_RESPONSE_BYTES >> 20
                ),
                json!({"details": {"max_bytes": MAX_RESPONSE_BYTES}}),
            );
        }
        let guard = self.reader.read().unwrap_or_else(|p| p.into_inner());
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
                        let _ = write!(
                            body,
                            "{{\"symbol\":\"{symbol}\",\"timeframe\":\"{tf}\",\"success\":false,\"error\":{},\"error_code\":\"{}\"}}",
                            Value::String(missing.message),
                            missing.code
                        );
                        continue;
                    }
                };
                if ring.read_last(q.limit, &mut candles).is_err() {
                    let _ = write!(body, "{{\"symbol\":\"{symbol}\",\"timeframe\":\"{tf}\",\"success\":false,\"error\":\"ring busy\",\"error_code\":\"STREAMER_NOT_RUNNING\"}}");
                    continue;
                }
                if let Some((c, defect)) = candles.iter().find_map(|c| c.defect().map(|d| (c, d))) {
                    let message = format!("damaged candle (time {}): {defect}", c.time);
                    let _ = write!(body, "{{\"symbol\":\"{symbol}\",\"timeframe\":\"{tf}\",\"success\":false,\"error\":{},\"error_code\":\"INVALID_STORED_DATA\"}}", Value::String(message));
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

    fn status(&self) -> Response {
        let guard = self.reader.read().unwrap_or_else(|p| p.into_inner());
        let Some(reader) = guard.as_ref() else {
            let body = json!({"success": true, "running": false, "symbols": [], "timeframes": [], "metrics": {}, "details": {"reason": "no_segment"}, "timestamp": iso_now()});
            return Response::json(200, body.to_string());
        };
        let st = reader.status();
        let mut timeframes: Vec<Timeframe> = reader.rings().map(|r| r.timeframe()).collect();
        timeframes.sort();
        timeframes.dedup();
        let buffered: u64 = reader
            .rings()
            .filter_map(|r| r.stats().ok())
            .map(|s| s.buffered)
            .sum();
        let rejects: Map<String, Value> = Counter::REJECTS
            .iter()
            .map(|&c| {
                (
                    c.as_str().trim_start_matches("rejected_").to_owned(),
                    json!(st.counters.get(c)),
                )
            })
            .collect();
        let body = json!({
            "success": true,
            "running": st.liveness == Liveness::Alive,
            "symbols": reader.layout().symbols().collect::<Vec<_>>(),
            "unknown_to_source": unknown_symbols(reader),
            "feed_kind": st.feed_kind.map_or("unknown", |k| k.as_str()),
            "timeframes": timeframes.iter().map(|t| t.name()).collect::<Vec<_>>(),
            "metrics": {
                "total_candles_buffered": buffered,
                "last_update": last_update(&st),
                "uptime_seconds": now_ns().saturating_sub(st.writer_start_ns) as f64 / 1e9,
                "ticks_processed": st.counters.get(Counter::TicksProcessed),
                "bars_closed": st.counters.get(Counter::BarsClosed),
                "gaps_detected": st.counters.get(Counter::GapsDetected),
                "corrections": st.counters.get(Counter::Corrections),
                "rejects": rejects,
                "writer_pid": st.writer_pid,
                "generation": st.generation,
                "heartbeat_age_ms": st.heartbeat_age.as_millis() as u64,
                "feed_state": st.feed_state.map_or("unknown", |f| f.as_str()),
                "writer_state": st.writer_state.map_or("unknown", |w| w.as_str()),
                "liveness": st.liveness.as_str(),
                "server_time_offset_seconds": st.server_time_offset_s,
            },
            "timestamp": iso_now(),
        });
        Response::json(200, body.to_string())
    }

    fn available(&self) -> Response {
        let guard = self.reader.read().unwrap_or_else(|p| p.into_inner());
        let mut symbols = Map::new();
        let mut unknown = Vec::new();
        if let Some(reader) = guard.as_ref() {
            for s in reader.layout().symbols() {
                let tfs: Vec<&str> = reader
                    .rings()
                    .filter(|r| r.symbol() == s)
                    .map(|r| r.timeframe().name())
                    .collect();
                symbols.insert(s.to_owned(), json!(tfs));
            }
            unknown = unknown_symbols(reader);
        }
        // `unknown_to_source`: symbols the writer's source (the MT5 terminal) does not know;
        // their rings exist but receive nothing.
        Response::json(
            200,
            json!({"success": true, "symbols": symbols, "unknown_to_source": unknown}).to_string(),
        )
    }

    fn health(&self) -> Response {
        let guard = self.reader.read().unwrap_or_else(|p| p.into_inner());
        let Some(reader) = guard.as_ref() else {
            let body = json!({"status": "unhealthy", "streamer_running": false, "buffer_status": {}, "last_check": iso_now(), "reasons": ["no segment"]});
            return Response::json(503, body.to_string());
        };
        let st = reader.status();
        let now_server = (now_ns() / 1_000_000_000) as i64 + st.server_time_offset_s;
        let mut reasons: Vec<String> = Vec::new();
        let mut unhealthy = false;
        if let Some(r) = not_running_reason(&st) {
            reasons.push(r.replace('_', " "));
            unhealthy = true;
        }
        match st.feed_state {
            Some(FeedState::Disconnected) => reasons.push("feed disconnected".into()),
            Some(FeedState::Finished) => reasons.push("feed finished (replay ended)".into()),
            _ => {}
        }
        let mut buffers = Map::new();
        let mut tick_ages = Map::new();
        let (mut m1_rings, mut m1_stale) = (0, 0);
        for s in reader.layout().symbols() {
            let mut per_tf = Map::new();
            for ring in reader.rings().filter(|r| r.symbol() == s) {
                let Ok(stats) = ring.stats() else { continue };
                let tf = ring.timeframe();
                // Fresh while the newest bar is at most one bar plus 30 s old (M1 1.5 min, M5
                // 5.5 min, ...). A bar that opens in the future (beyond a minute of clock
                // drift) is an error: a wrong server offset, or a bad stamp.
                let age = stats.newest_time.map(|t| now_server - t);
                let future = age.is_some_and(|a| a < -60);
                let fresh = age.is_some_and(|a| (-60..=tf.nominal_seconds() + 30).contains(&a));
                if future {
                    reasons.push(format!(
                        "{s} {tf} opens {} s in the future: the server-time offset or a stamp is wrong",
                        -age.unwrap_or(0)
                    ));
                    unhealthy = true;
                } else if tf == Timeframe::M1 && !fresh {
                    reasons.push(format!("{s} M1 is stale"));
                    m1_stale += 1;
                }
                if tf == Timeframe::M1 {
                    m1_rings += 1;
                }
                per_tf.insert(
                    tf.name().to_owned(),
                    json!({"count": stats.buffered, "capacity": ring.capacity(), "newest_time": stats.newest_time, "age_seconds": age, "fresh": fresh}),
                );
            }
            buffers.insert(s.to_owned(), Value::Object(per_tf));
            let age = reader
                .last_tick(s)
                .map(|t| now_ns().saturating_sub(t.received_ns) as f64 / 1e9);
            tick_ages.insert(s.to_owned(), json!(age));
        }
        if m1_rings > 0 && m1_stale == m1_rings {
            // Nothing fresh at all: a reader polling this gets no usable data.
            reasons.push("no fresh data: every M1 ring is stale".into());
            unhealthy = true;
        }
        let state = if unhealthy {
            "unhealthy"
        } else if reasons.is_empty() {
            "healthy"
        } else {
            "degraded"
        };
        let body = json!({
            "status": state,
            "streamer_running": st.liveness == Liveness::Alive,
            "liveness": st.liveness.as_str(),
            "feed_state": st.feed_state.map_or("unknown", |f| f.as_str()),
            "heartbeat_age_ms": st.heartbeat_age.as_millis() as u64,
            "last_tick_age_seconds": tick_ages,
            "buffer_status": buffers,
            "reasons": reasons,
            "last_check": iso_now(),
        });
        Response::json(if unhealthy { 503 } else { 200 }, body.to_string())
    }

    fn prometheus(&self) -> Response {
        let mut out = String::with_capacity(4096);
        self.metrics.render(&mut out);
        let guard = self.reader.read().unwrap_or_else(|p| p.into_inner());
        out.push_str("# HELP mtf_shim_uptime_seconds Time since the shim started.\n# TYPE mtf_shim_uptime_seconds gauge\n");
        let _ = writeln!(
            out,
            "mtf_shim_uptime_seconds {}",
            self.started.elapsed().as_secs_f64()
        );
        if let Some(reader) = guard.as_ref() {
            let st = reader.status();
            out.push_str("# HELP mtf_shim_reader_retries_total Failed seqlock read attempts (retried).\n# TYPE mtf_shim_reader_retries_total counter\n");
            let _ = writeln!(out, "mtf_shim_reader_retries_total {}", reader.retries());
            out.push_str("# HELP mtf_streamer_up 1 while the writer is alive.\n# TYPE mtf_streamer_up gauge\n");
            let _ = writeln!(
                out,
                "mtf_streamer_up {}",
                u8::from(st.liveness == Liveness::Alive)
            );
            out.push_str("# TYPE mtf_streamer_generation gauge\n");
            let _ = writeln!(out, "mtf_streamer_generation {}", st.generation);
            out.push_str("# TYPE mtf_streamer_heartbeat_age_seconds gauge\n");
            let _ = writeln!(
                out,
                "mtf_streamer_heartbeat_age_seconds {}",
                st.heartbeat_age.as_secs_f64()
            );
            for c in Counter::ALL {
                let _ = writeln!(
                    out,
                    "# TYPE mtf_streamer_{c}_total counter\nmtf_streamer_{c}_total {}",
                    st.counters.get(c)
                );
            }
            out.push_str("# TYPE mtf_streamer_candles_buffered gauge\n");
            for ring in reader.rings() {
                if let Ok(s) = ring.stats() {
                    let _ = writeln!(
                        out,
                        "mtf_streamer_candles_buffered{{symbol=\"{}\",timeframe=\"{}\"}} {}",
                        ring.symbol(),
                        ring.timeframe(),
                        s.buffered
                    );
                }
            }
        }
        Response {
            status: 200,
            content_type: "text/plain; version=0.0.4",
            body: out.into_bytes(),
            extra_headers: Vec::new(),
        }
    }
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_percent_and_plus() {
        let p = query_params("symbols=US30%23,BTCUSDc&limit=5&x").unwrap();
        assert_eq!(param(&p, "symbols"), Some("US30#,BTCUSDc"));
        assert_eq!(param(&p, "x"), Some(""));
        assert!(query_params("a=%zz").is_err());
        assert!(query_params("a=%FF").is_err(), "not UTF-8");
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }

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
