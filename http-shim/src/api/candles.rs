//! `/streamer/candles/{symbol}/{timeframe}` and the batch `/streamer/candles?symbols=…`.

use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{json, Value};
use shm_core::{validate_symbol, Candle, ReadError, Reader, RingReader, Timeframe, Timeline};

use super::etag::{none_match_hits, EtagInput};
use super::json::{error, iso_now, write_candles, ErrorCode, FIELDS};
use super::query::{list_param, only_known, param, percent_decode};
use super::request::{bad_symbol, bad_timeframe, PairsRequest};
use super::status::{not_running, not_running_reason, open_error_reason};
use super::Api;
use crate::message::{Request, Response};

/// Most bytes one candles answer may take, estimated before it is built (about 170 bytes a
/// candle): a batch of many rings at a high limit is refused rather than built.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// Bytes of JSON per candle, at the most, for the estimate above.
const CANDLE_BYTES: usize = 170;

/// One pair's error inside a batch answer.
fn inline_error(body: &mut String, symbol: &str, tf: Timeframe, code: ErrorCode, message: &str) {
    let _ = write!(
        body,
        "{{\"symbol\":\"{symbol}\",\"timeframe\":\"{tf}\",\"success\":false,\"error\":{},\"error_code\":\"{}\"}}",
        Value::String(message.to_owned()),
        code.as_str()
    );
}

/// The `500 INVALID_STORED_DATA` of a snapshot the reader refused (a damaged or forged
/// segment: a candle that breaks the writer's rules, or disordered times): such data is never
/// served as `success: true`.
fn refuse_damaged(why: &ReadError, symbol: &str, timeframe: Timeframe) -> Response {
    error(
        ErrorCode::InvalidStoredData,
        format!("the segment's {symbol} {timeframe} ring: {why}"),
        json!({"symbol": symbol, "timeframe": timeframe.name()}),
    )
}

/// Why a (symbol, timeframe) pair has no ring: a 404 of the single endpoint, or an inline
/// error of the batch one.
pub(super) struct Missing {
    code: ErrorCode,
    message: String,
    /// The symbols, or the symbol's timeframes, that the segment does hold.
    available: Vec<String>,
}

impl Missing {
    pub(super) fn response(&self, symbol: &str, timeframe: Timeframe) -> Response {
        let mut extra = json!({"symbol": symbol, "details": {"available": self.available}});
        if self.code == ErrorCode::TimeframeNotAvailable {
            extra["timeframe"] = json!(timeframe.name());
        }
        error(self.code, self.message.clone(), extra)
    }
}

impl Api {
    /// The largest `limit` a candles request may ask for: what the largest ring of `reader`
    /// holds (its capacity and the forming candle), at most `--max-limit`.
    fn max_limit(&self, reader: Option<&Reader>) -> usize {
        let largest = reader.and_then(|r| r.rings().map(|ring| ring.capacity() as usize + 1).max());
        largest.map_or(self.config.max_limit, |l| l.min(self.config.max_limit))
    }

    pub(super) fn candles(&self, req: CandlesRequest, if_none_match: Option<&str>) -> Response {
        let CandlesRequest {
            symbol,
            timeframe,
            shape,
        } = req;
        let guard = self.reader();
        let q = match shape.resolve(self.max_limit(guard.as_deref())) {
            Ok(q) => q,
            Err(r) => return r,
        };
        // The answer's bytes are reserved before it is built (see `server::Budget`).
        let Some(held) = self
            .config
            .budget
            .reserve(q.limit.saturating_add(1).saturating_mul(CANDLE_BYTES) + 1024)
        else {
            return crate::reply::server_busy();
        };
        let Some(reader) = guard.as_ref() else {
            let reason = Reader::open(&self.config.segment)
                .err()
                .map_or("no_segment", |e| open_error_reason(&e));
            return not_running(reason, None);
        };
        let timeline = match self.lookup_timeline(reader, &symbol, timeframe) {
            Ok(t) => t,
            Err(missing) => return missing.response(&symbol, timeframe),
        };
        let status = reader.status();
        if let Some(reason) = not_running_reason(&status) {
            return not_running(reason, Some(&status));
        }
        let mut candles = Vec::with_capacity(q.limit);
        match timeline.read_last(q.limit, &mut candles) {
            Ok(()) => {}
            Err(ReadError::Busy { .. }) => return not_running("ring_busy", Some(&status)),
            Err(e) => return refuse_damaged(&e, &symbol, timeframe),
        }
        let mut tag = EtagInput::new(&q, status.server_time_offset_s, 1);
        tag.ring(tag_index(&timeline), &candles);
        let etag = tag.finish();
        if if_none_match.is_some_and(|h| none_match_hits(h, &etag)) {
            return Response::not_modified(etag);
        }
        let mut body = String::with_capacity(200 + candles.len() * 160);
        let _ = write!(body, "{{\"success\":true,\"symbol\":\"{symbol}\",\"timeframe\":\"{timeframe}\",\"count\":{},", candles.len());
        if q.raw {
            body.push_str("\"fields\":");
            body.push_str(&serde_json::to_string(&FIELDS).unwrap_or_default());
            body.push(',');
        }
        body.push_str("\"candles\":");
        self.write_timeline(&mut body, &timeline, &candles, q.raw, q.asc);
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
        Response {
            etag: Some(etag),
            reservation: Some(Box::new(held)),
            ..Response::json(200, body)
        }
    }

    /// The ring of `symbol` at `timeframe`, or why the segment does not hold it.
    pub(super) fn lookup<'r>(
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

    /// The candles of `symbol` at `timeframe`: its ring, or built on read from a ring that
    /// tiles it (H2 from H1, W1 from D1); or why the segment holds neither.
    fn lookup_timeline<'r>(
        &self,
        reader: &'r Reader,
        symbol: &str,
        timeframe: Timeframe,
    ) -> Result<Timeline<'r>, Missing> {
        match reader.timeline(symbol, timeframe) {
            Some(t) => Ok(t),
            None => self.lookup(reader, symbol, timeframe).map(Timeline::Ring),
        }
    }

    /// Writes candles as JSON: a ring's closed ones through the cache, a built timeline's
    /// directly (they are not a ring's, and change with its source).
    fn write_timeline(
        &self,
        out: &mut String,
        timeline: &Timeline<'_>,
        candles: &[Candle],
        raw: bool,
        asc: bool,
    ) {
        match timeline {
            Timeline::Ring(ring) => self.cache.write(out, ring, candles, raw, asc),
            Timeline::Built { .. } => write_candles(out, candles, asc, raw),
        }
    }

    pub(super) fn candles_batch(&self, req: BatchRequest, if_none_match: Option<&str>) -> Response {
        let guard = self.reader();
        let q = match req.shape.resolve(self.max_limit(guard.as_deref())) {
            Ok(q) => q,
            Err(r) => return r,
        };
        let pairs = req.pairs.count();
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
        // The answer's bytes are reserved before it is built (see `server::Budget`).
        let Some(held) = self.config.budget.reserve(
            pairs
                .saturating_mul(q.limit.saturating_add(1))
                .saturating_mul(CANDLE_BYTES)
                + 1024,
        ) else {
            return crate::reply::server_busy();
        };
        let Some(reader) = guard.as_ref() else {
            return not_running("no_segment", None);
        };
        let status = reader.status();
        if let Some(reason) = not_running_reason(&status) {
            return not_running(reason, Some(&status));
        }
        // Every ring is read first, so that the tag can be checked before anything is written.
        let mut parts = Vec::with_capacity(pairs);
        let mut tag = EtagInput::new(&q, status.server_time_offset_s, pairs);
        // An answer with an inline error gets no tag: its messages depend on more than the
        // candles (what the segment holds), which the tag does not cover.
        let mut taggable = true;
        for (symbol, tf) in req.pairs.iter() {
            let part = self.batch_part(reader, symbol, tf, q.limit);
            match &part {
                BatchPart::Candles(timeline, candles) => tag.ring(tag_index(timeline), candles),
                BatchPart::Error(..) => taggable = false,
            }
            parts.push((symbol, tf, part));
        }
        let etag = taggable.then(|| tag.finish());
        if let (Some(etag), Some(h)) = (&etag, if_none_match) {
            if none_match_hits(h, etag) {
                return Response::not_modified(etag.clone());
            }
        }
        let mut body = String::from("{\"success\":true,\"results\":[");
        for (i, (symbol, tf, part)) in parts.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            match part {
                BatchPart::Error(code, message) => {
                    inline_error(&mut body, symbol, *tf, *code, message)
                }
                BatchPart::Candles(timeline, candles) => {
                    let _ = write!(body, "{{\"symbol\":\"{symbol}\",\"timeframe\":\"{tf}\",\"success\":true,\"count\":{},\"candles\":", candles.len());
                    self.write_timeline(&mut body, timeline, candles, q.raw, q.asc);
                    body.push('}');
                }
            }
        }
        let _ = write!(
            body,
            "],\"server_time_offset_seconds\":{},\"timestamp\":\"{}\",\"source\":\"streamer_buffer\"}}",
            status.server_time_offset_s,
            iso_now()
        );
        Response {
            etag,
            reservation: Some(Box::new(held)),
            ..Response::json(200, body)
        }
    }

    /// One pair of a batch: its ring's newest `limit` candles, or why there are none.
    fn batch_part<'r>(
        &self,
        reader: &'r Reader,
        symbol: &str,
        tf: Timeframe,
        limit: usize,
    ) -> BatchPart<'r> {
        let timeline = match self.lookup_timeline(reader, symbol, tf) {
            Ok(t) => t,
            Err(missing) => return BatchPart::Error(missing.code, missing.message),
        };
        let mut candles = Vec::with_capacity(limit);
        match timeline.read_last(limit, &mut candles) {
            Ok(()) => {}
            Err(ReadError::Busy { .. }) => {
                return BatchPart::Error(ErrorCode::StreamerNotRunning, "ring busy".into())
            }
            Err(e) => return BatchPart::Error(ErrorCode::InvalidStoredData, e.to_string()),
        }
        BatchPart::Candles(timeline, candles)
    }
}

/// What the entity tag says a timeline is: its ring's index, or for one built on read, its
/// source's index and its timeframe (so that H2 and H3 built from one H1 ring differ).
fn tag_index(timeline: &Timeline<'_>) -> usize {
    match timeline {
        Timeline::Ring(ring) => ring.index(),
        Timeline::Built { source, timeframe } => {
            source.index() | (timeframe.mt5_code() as usize) << 32
        }
    }
}

/// One (symbol, timeframe) pair of a batch answer, read and checked.
enum BatchPart<'r> {
    /// Where the candles came from, and the candles, oldest first.
    Candles(Timeline<'r>, Vec<Candle>),
    /// An inline error.
    Error(ErrorCode, String),
}

/// `limit` when none is given.
const DEFAULT_LIMIT: usize = 50;

/// `/streamer/candles/{symbol}/{timeframe}?limit=&format=&order=`.
#[derive(Debug)]
pub(super) struct CandlesRequest {
    pub symbol: String,
    pub timeframe: Timeframe,
    pub shape: CandleShape,
}

/// `/streamer/candles?symbols=&timeframes=&limit=&format=&order=`.
#[derive(Debug)]
pub(super) struct BatchRequest {
    pub pairs: PairsRequest,
    pub shape: CandleShape,
}

/// What a candles answer should look like; `limit` is checked by the handler, against the
/// largest ring of the segment it reads ([`CandleShape::resolve`]).
#[derive(Debug)]
pub(super) struct CandleShape {
    limit: Option<String>,
    asc: bool,
    raw: bool,
}

/// A candles answer's shape, resolved: the `limit` within range.
#[derive(Debug, Clone, Copy)]
pub(super) struct CandleQuery {
    pub limit: usize,
    pub asc: bool,
    pub raw: bool,
}

impl CandlesRequest {
    /// The query parameters it knows.
    pub const KNOWN: &'static [&'static str] = &["limit", "format", "order"];

    /// Parses the path after `/streamer/candles/` and the query parameters.
    pub fn parse(rest: &str, params: &[(String, String)]) -> Result<CandlesRequest, Response> {
        only_known(params, Self::KNOWN)?;
        let (symbol, timeframe) = pair_of(rest)?;
        Ok(CandlesRequest {
            symbol,
            timeframe,
            shape: CandleShape::parse(params)?,
        })
    }
}

impl BatchRequest {
    /// The query parameters it knows.
    pub const KNOWN: &'static [&'static str] =
        &["symbols", "timeframes", "limit", "format", "order"];

    /// Parses the query parameters.
    pub fn parse(params: &[(String, String)]) -> Result<BatchRequest, Response> {
        only_known(params, Self::KNOWN)?;
        Ok(BatchRequest {
            pairs: PairsRequest::parse(
                list_param(params, "symbols"),
                list_param(params, "timeframes"),
            )?,
            shape: CandleShape::parse(params)?,
        })
    }
}

impl CandleShape {
    fn parse(params: &[(String, String)]) -> Result<CandleShape, Response> {
        let raw = match param(params, "format").unwrap_or("dict") {
            "dict" => false,
            "raw" => true,
            other => {
                return Err(error(
                    ErrorCode::InvalidParameter,
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
                    ErrorCode::InvalidParameter,
                    format!(
                        "order must be desc or asc, got {:?}",
                        other.chars().take(50).collect::<String>()
                    ),
                    json!({}),
                ))
            }
        };
        Ok(CandleShape {
            limit: param(params, "limit").map(str::to_owned),
            asc,
            raw,
        })
    }

    /// The shape with `limit` checked: from 1 to `max` (the largest ring's capacity plus the
    /// forming candle, at most `--max-limit`), 50 (or `max`) when not given.
    pub fn resolve(&self, max: usize) -> Result<CandleQuery, Response> {
        let limit = match self.limit.as_deref() {
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
                        ErrorCode::InvalidLimit,
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
        Ok(CandleQuery {
            limit,
            asc: self.asc,
            raw: self.raw,
        })
    }
}

/// The symbol and timeframe of `/streamer/candles/{symbol}/{timeframe}` (the path after
/// `/streamer/candles/`), each checked.
pub(super) fn pair_of(rest: &str) -> Result<(String, Timeframe), Response> {
    let mut parts = rest.split('/');
    let (Some(sym), Some(tf), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(error(
            ErrorCode::NotFound,
            "expected /streamer/candles/{symbol}/{timeframe}",
            json!({}),
        ));
    };
    let symbol = match percent_decode(sym, false).filter(|s| validate_symbol(s).is_ok()) {
        Some(s) => s,
        None => {
            let shown: String = percent_decode(sym, false)
                .unwrap_or_else(|| sym.to_owned())
                .chars()
                .take(64)
                .collect();
            return Err(bad_symbol(shown));
        }
    };
    let tf_text = percent_decode(tf, false).unwrap_or_else(|| tf.to_owned());
    let Ok(timeframe) = tf_text.parse::<Timeframe>() else {
        return Err(bad_timeframe(&tf_text, Some(&symbol)));
    };
    Ok((symbol, timeframe))
}

/// `/streamer/candles/{symbol}/{timeframe}`: parsed, then answered.
pub(super) fn serve(
    api: &Arc<Api>,
    rest: &str,
    params: &[(String, String)],
    req: &Request,
) -> Response {
    if super::range::is_bar_range(params) {
        return super::range::serve_bars(api, rest, params);
    }
    match CandlesRequest::parse(rest, params) {
        Ok(c) => api.candles(c, req.if_none_match.as_deref()),
        Err(refused) => refused,
    }
}

/// `/streamer/candles?symbols=&timeframes=`: parsed, then answered.
pub(super) fn serve_batch(
    api: &Arc<Api>,
    _: &str,
    params: &[(String, String)],
    req: &Request,
) -> Response {
    match BatchRequest::parse(params) {
        Ok(b) => api.candles_batch(b, req.if_none_match.as_deref()),
        Err(refused) => refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Vec<(String, String)> {
        super::super::query::query_params(q).unwrap()
    }

    fn code(r: Response) -> String {
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        v["error_code"].as_str().unwrap().to_owned()
    }

    #[test]
    fn each_request_knows_its_parameters_and_refuses_others() {
        assert!(CandlesRequest::parse("EURUSD/M1", &params("limit=5&order=asc")).is_ok());
        let r = CandlesRequest::parse("EURUSD/M1", &params("limt=5")).unwrap_err();
        assert_eq!(code(r), "INVALID_PARAMETER");
        let r = BatchRequest::parse(&params("symbols=A&timeframes=M1&interval_ms=5")).unwrap_err();
        assert_eq!(code(r), "INVALID_PARAMETER");
    }

    #[test]
    fn a_limit_is_checked_against_the_largest_ring() {
        let shape = CandleShape::parse(&params("limit=1441")).unwrap();
        assert_eq!(shape.resolve(1441).unwrap().limit, 1441);
        assert_eq!(code(shape.resolve(100).unwrap_err()), "INVALID_LIMIT");
        for bad in ["0", "+5", "abc", "99999999999999999999999"] {
            let shape = CandleShape::parse(&params(&format!("limit={bad}"))).unwrap();
            assert!(shape.resolve(1441).is_err(), "{bad}");
        }
        let none = CandleShape::parse(&params("")).unwrap();
        assert_eq!(none.resolve(10).unwrap().limit, 10);
        assert_eq!(none.resolve(1441).unwrap().limit, DEFAULT_LIMIT);
    }
}
