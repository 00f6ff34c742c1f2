//! The parsing helpers of requests: percent-decoding, query parameters, lists, and the check
//! that every parameter is one the endpoint knows (see `request.rs` for the typed requests).

use serde_json::json;

use super::json::{error, ErrorCode};
use crate::message::Response;

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

/// A comma-separated list parameter, trimmed, without empty items.
pub(super) fn list_param(params: &[(String, String)], name: &str) -> Vec<String> {
    param(params, name)
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Refuses a parameter not in `known` (a misspelt `limt=5` must not be ignored silently).
pub(super) fn only_known(params: &[(String, String)], known: &[&str]) -> Result<(), Response> {
    // A parameter given twice (`limit=5&limit=7`) is refused: taking either one silently is
    // answering a question the client may not have asked.
    if let Some((k, _)) = params
        .iter()
        .enumerate()
        .find(|(i, (k, _))| params[..*i].iter().any(|(earlier, _)| earlier == k))
        .map(|(_, p)| p)
    {
        let shown: String = k.chars().take(50).collect();
        return Err(error(
            ErrorCode::InvalidParameter,
            format!("query parameter {shown:?} is given more than once"),
            json!({"details": {"parameter": shown}}),
        ));
    }
    let Some((bad, _)) = params.iter().find(|(k, _)| !known.contains(&k.as_str())) else {
        return Ok(());
    };
    let shown: String = bad.chars().take(50).collect();
    let hint = if known.is_empty() {
        "this endpoint takes no parameters".to_owned()
    } else {
        format!("known parameters: {}", known.join(", "))
    };
    Err(error(
        ErrorCode::InvalidParameter,
        format!("unknown query parameter {shown:?}; {hint}"),
        json!({"details": {"parameter": shown, "known": known}}),
    ))
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
