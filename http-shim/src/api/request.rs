//! Each endpoint's request, parsed into a type before its handler runs (after mini-redis's
//! `Command::from_frame`): the type names the query parameters it knows, and every check that
//! needs no segment is made here, once. Checks that need the segment (which rings exist, the
//! largest `limit`) are the handler's, with the one reader it takes.

use std::time::Duration;

use serde_json::{json, Value};
use shm_core::{validate_symbol, SymbolError, Timeframe, UnknownTimeframe};

use super::json::{error, ErrorCode};
use super::push::{DEFAULT_INTERVAL, MIN_INTERVAL};
use super::query::{list_param, only_known, param, percent_decode};
use crate::message::Response;

/// Most (symbol, timeframe) pairs in one batch request or stream, after duplicates are
/// dropped.
pub const MAX_BATCH_PAIRS: usize = 100;

/// `limit` when none is given.
const DEFAULT_LIMIT: usize = 50;

/// The longest `interval_ms` of a stream.
const MAX_INTERVAL_MS: u64 = 60_000;

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

/// `/streamer/stream?symbols=&timeframes=&interval_ms=`, or a WebSocket `subscribe` message.
#[derive(Debug)]
pub(super) struct StreamRequest {
    pub pairs: PairsRequest,
    pub interval: Duration,
    /// Also send the symbols' ticks (`ticks=1`), coalesced per interval.
    pub ticks: bool,
}

/// Symbols and timeframes of a batch or a stream, validated: both given, at most
/// [`MAX_BATCH_PAIRS`] pairs once duplicates are dropped (the first kept), every symbol well
/// formed and every timeframe known.
#[derive(Debug)]
pub(super) struct PairsRequest {
    pub symbols: Vec<String>,
    pub timeframes: Vec<Timeframe>,
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

impl StreamRequest {
    /// The query parameters it knows.
    pub const KNOWN: &'static [&'static str] = &["symbols", "timeframes", "interval_ms", "ticks"];

    /// Parses the query parameters of `/streamer/stream`.
    pub fn parse(params: &[(String, String)]) -> Result<StreamRequest, Response> {
        only_known(params, Self::KNOWN)?;
        let interval = match param(params, "interval_ms") {
            None => DEFAULT_INTERVAL,
            Some(text) => {
                let ms = text.parse::<u64>().ok();
                interval(ms).ok_or_else(|| {
                    bad_interval(format!(
                        ", got {:?}",
                        text.chars().take(50).collect::<String>()
                    ))
                })?
            }
        };
        let ticks = match param(params, "ticks") {
            None | Some("0" | "false") => false,
            Some("1" | "true") => true,
            Some(other) => {
                return Err(error(
                    ErrorCode::InvalidParameter,
                    format!(
                        "ticks must be 1 or 0, got {:?}",
                        other.chars().take(50).collect::<String>()
                    ),
                    json!({}),
                ))
            }
        };
        Ok(StreamRequest {
            pairs: PairsRequest::parse(
                list_param(params, "symbols"),
                list_param(params, "timeframes"),
            )?,
            interval,
            ticks,
        })
    }

    /// Parses a WebSocket `subscribe` or `unsubscribe` message: `symbols` and `timeframes`
    /// as lists of strings, `interval_ms` as a number.
    pub fn from_message(v: &Value) -> Result<StreamRequest, Response> {
        let list = |name: &str| -> Option<Vec<String>> {
            v.get(name)?
                .as_array()?
                .iter()
                .map(|x| x.as_str().map(str::to_owned))
                .collect()
        };
        let (Some(symbols), Some(timeframes)) = (list("symbols"), list("timeframes")) else {
            return Err(error(
                ErrorCode::InvalidParameter,
                "symbols and timeframes are lists of strings",
                json!({}),
            ));
        };
        let interval = match v.get("interval_ms") {
            None => DEFAULT_INTERVAL,
            Some(ms) => interval(ms.as_u64()).ok_or_else(|| bad_interval(String::new()))?,
        };
        let ticks = match v.get("ticks") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(error(
                    ErrorCode::InvalidParameter,
                    "ticks is true or false",
                    json!({}),
                ))
            }
        };
        Ok(StreamRequest {
            pairs: PairsRequest::parse(symbols, timeframes)?,
            interval,
            ticks,
        })
    }
}

/// An `interval_ms` within range.
fn interval(ms: Option<u64>) -> Option<Duration> {
    ms.filter(|ms| (MIN_INTERVAL.as_millis() as u64..=MAX_INTERVAL_MS).contains(ms))
        .map(Duration::from_millis)
}

fn bad_interval(got: String) -> Response {
    error(
        ErrorCode::InvalidParameter,
        format!(
            "interval_ms must be an integer from {} to {MAX_INTERVAL_MS}{got}",
            MIN_INTERVAL.as_millis()
        ),
        json!({}),
    )
}

impl PairsRequest {
    /// Validates the lists given.
    pub fn parse(symbols: Vec<String>, timeframes: Vec<String>) -> Result<PairsRequest, Response> {
        // Duplicates are dropped: `symbols=A,A,A...` must not multiply the work.
        let dedup = |mut v: Vec<String>| {
            let mut seen = std::collections::HashSet::new();
            v.retain(|s| seen.insert(s.clone()));
            v
        };
        let (symbols, tfs) = (dedup(symbols), dedup(timeframes));
        if symbols.is_empty() || tfs.is_empty() {
            return Err(error(
                ErrorCode::InvalidParameter,
                "symbols and timeframes are required, e.g. ?symbols=BTCUSDc,XAUUSDc&timeframes=M1,M5",
                json!({}),
            ));
        }
        if symbols.len() * tfs.len() > MAX_BATCH_PAIRS {
            return Err(error(
                ErrorCode::InvalidParameter,
                format!("at most {MAX_BATCH_PAIRS} symbol and timeframe pairs per request"),
                json!({}),
            ));
        }
        if let Some(bad) = symbols.iter().find(|s| validate_symbol(s).is_err()) {
            return Err(bad_symbol(bad.chars().take(64).collect()));
        }
        let timeframes = tfs
            .iter()
            .map(|t| t.parse::<Timeframe>().map_err(|_| bad_timeframe(t, None)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PairsRequest {
            symbols,
            timeframes,
        })
    }

    /// How many (symbol, timeframe) pairs.
    pub fn count(&self) -> usize {
        self.symbols.len() * self.timeframes.len()
    }

    /// Every pair, symbols first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Timeframe)> + '_ {
        self.symbols
            .iter()
            .flat_map(|s| self.timeframes.iter().map(move |&tf| (s.as_str(), tf)))
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
        let s = StreamRequest::parse(&params("symbols=A,A,B&timeframes=M1,H1&interval_ms=250"))
            .unwrap();
        assert_eq!(s.pairs.count(), 4, "duplicates dropped");
        assert_eq!(s.interval, Duration::from_millis(250));
    }

    #[test]
    fn a_websocket_message_is_held_to_the_same_rules_as_the_query() {
        let ok = json!({"op": "subscribe", "symbols": ["EURUSD"], "timeframes": ["M1"], "interval_ms": 50});
        assert_eq!(
            StreamRequest::from_message(&ok).unwrap().interval,
            Duration::from_millis(50)
        );
        for bad in [
            json!({"symbols": ["EURUSD"], "timeframes": ["M1"], "interval_ms": 5}),
            json!({"symbols": ["EURUSD"], "timeframes": ["M7"]}),
            json!({"symbols": "EURUSD", "timeframes": ["M1"]}),
            json!({"symbols": ["EUR USD"], "timeframes": ["M1"]}),
        ] {
            assert!(StreamRequest::from_message(&bad).is_err(), "{bad}");
        }
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
