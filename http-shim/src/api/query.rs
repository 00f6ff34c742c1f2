//! What a request asks for: percent-decoding, query parameters, and the validated
//! [`CandleQuery`] of the candle endpoints.

use serde_json::json;

use super::json::{error, ErrorCode};
use super::Api;
use crate::message::Response;

/// `limit` when none is given.
const DEFAULT_LIMIT: usize = 50;

/// Decodes `%XX` escapes and `+` (in queries); `None` for malformed escapes or non-UTF-8.
pub(super) fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
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
pub(super) fn query_params(query: &str) -> Result<Vec<(String, String)>, String> {
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

pub(super) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// What a candles request asks for, validated.
pub(super) struct CandleQuery {
    pub(super) limit: usize,
    pub(super) asc: bool,
    pub(super) raw: bool,
}

impl Api {
    /// The largest `limit`: what the largest ring can hold (its capacity and the forming
    /// candle), at most the configured `max_limit`.
    fn max_limit(&self) -> usize {
        let guard = self.reader();
        let largest = guard
            .as_ref()
            .and_then(|r| r.rings().map(|ring| ring.capacity() as usize + 1).max());
        largest.map_or(self.config.max_limit, |l| l.min(self.config.max_limit))
    }

    pub(super) fn candle_query(
        &self,
        params: &[(String, String)],
    ) -> Result<CandleQuery, Response> {
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
        Ok(CandleQuery { limit, asc, raw })
    }
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
        assert!(
            query_params("a=%+1").is_err(),
            "two hex digits, nothing else"
        );
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
    }
}
