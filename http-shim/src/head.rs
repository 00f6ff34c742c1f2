//! Request heads: parsed by `httparse` (the parser hyper uses: strict and fuzzed), then held
//! to the rules the API adds.
//!
//! - Header lines are strict (RFC 9112 5.1, 5.2): whitespace before the colon, a folded line,
//!   or a control character in a value (a bare CR, a NUL) is a `400`, so that no proxy in
//!   front can be made to read the head differently from us.
//! - An HTTP/1.1 request carries exactly one `Host` (RFC 9112 3.2); none or two is a `400`.
//! - Both `Transfer-Encoding` and `Content-Length`, or two different lengths, is a `400`
//!   (the classic request-smuggling shapes, RFC 9112 6.1).

use crate::message::Request;
use crate::reply::ErrorCode;

/// Largest request head (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// Longest request line, and so URL.
pub const MAX_REQUEST_LINE: usize = 4 * 1024;
/// Most headers in a request.
pub const MAX_HEADERS: usize = 64;
/// Largest request body read (and discarded); a larger one is not read (see server.rs).
pub const MAX_BODY: usize = 64 * 1024;

/// Why reading a request head stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// The peer closed or went idle: close quietly.
    Closed,
    /// A protocol error to answer with this code (and its status), then close.
    Reply(ErrorCode, &'static str),
}

/// What the head says of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    None,
    /// `Content-Length` bytes, at most `MAX_BODY`.
    Length(usize),
    /// Chunked, or longer than `MAX_BODY`: not read; the connection closes after the answer.
    Unread,
}

/// A complete head: the request, whether to keep the connection, the bytes it took, and its
/// body.
pub(crate) type Parsed = (Request, bool, usize, Body);

/// Parses the head at the start of `buf`: `Ok(None)` while it is incomplete.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<Parsed>, HeadError> {
    let line_end = buf.iter().position(|&b| b == b'\n');
    if line_end.unwrap_or(buf.len()) > MAX_REQUEST_LINE + 1 {
        return Err(HeadError::Reply(
            ErrorCode::UriTooLong,
            "request line too long",
        ));
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let end = match req.parse(buf) {
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(end)) => end,
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::Reply(
                ErrorCode::HeadersTooLarge,
                "too many headers",
            ))
        }
        Err(httparse::Error::Version) => {
            let line = &buf[..line_end.unwrap_or(buf.len())];
            return Err(if line.windows(6).any(|w| w == b" HTTP/") {
                HeadError::Reply(
                    ErrorCode::VersionNotSupported,
                    "only HTTP/1.0 and HTTP/1.1 are supported",
                )
            } else {
                HeadError::Reply(ErrorCode::BadRequest, "malformed request line")
            });
        }
        Err(httparse::Error::HeaderValue) => {
            return Err(HeadError::Reply(
                ErrorCode::BadRequest,
                "a control character (CR, NUL, ...) in a header value",
            ))
        }
        Err(httparse::Error::HeaderName) => {
            return Err(HeadError::Reply(
                ErrorCode::BadRequest,
                "malformed header name",
            ))
        }
        Err(_) => {
            return Err(HeadError::Reply(
                ErrorCode::BadRequest,
                "malformed request head",
            ))
        }
    };
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Reply(
            ErrorCode::BadRequest,
            "malformed request line",
        ));
    };
    if !method.bytes().all(|b| b.is_ascii_uppercase()) || target.is_empty() {
        return Err(HeadError::Reply(
            ErrorCode::BadRequest,
            "malformed request line",
        ));
    }
    let http10 = minor == 0;
    let mut request = Request {
        method: method.to_owned(),
        target: target.to_owned(),
        ..Request::default()
    };
    let mut keep_alive = !http10;
    let mut upgrade_websocket = false;
    let mut length: Option<&str> = None;
    let mut chunked = false;
    let mut hosts = 0;
    for h in req.headers.iter() {
        // httparse refused every byte a value may not hold; what is left is visible ASCII,
        // spaces, tabs and obs-text. Only UTF-8 is used.
        let Ok(value) = std::str::from_utf8(h.value) else {
            return Err(HeadError::Reply(
                ErrorCode::BadRequest,
                "a header value that is not UTF-8",
            ));
        };
        let value = value.trim_matches([' ', '\t']);
        let name = h.name;
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("host") {
            hosts += 1;
            request.host = Some(value.to_owned());
        } else if is("connection") {
            if value.eq_ignore_ascii_case("close") {
                keep_alive = false;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                keep_alive = true;
            }
        } else if is("content-length") {
            if length.is_some_and(|l| l != value) {
                return Err(HeadError::Reply(
                    ErrorCode::BadRequest,
                    "conflicting Content-Length headers",
                ));
            }
            length = Some(value);
        } else if is("transfer-encoding") {
            chunked = true;
        } else if is("authorization") {
            request.authorization = Some(value.to_owned());
        } else if is("if-none-match") {
            request.if_none_match = Some(value.to_owned());
        } else if is("accept-encoding") {
            request.accepts_gzip |= accepts_gzip_in(value);
        } else if is("last-event-id") {
            request.last_event_id = Some(value.to_owned());
        } else if is("upgrade") {
            upgrade_websocket |= value
                .split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"));
        } else if is("sec-websocket-key") {
            request.websocket_key = Some(value.to_owned());
        } else if is("sec-websocket-version") {
            request.websocket_version = Some(value.to_owned());
        }
    }
    if !upgrade_websocket {
        request.websocket_key = None;
    }
    if hosts > 1 || (hosts == 0 && !http10) {
        return Err(HeadError::Reply(
            ErrorCode::BadRequest,
            "a request needs exactly one Host header (RFC 9112 3.2)",
        ));
    }
    let mut body = Body::None;
    if chunked {
        if length.is_some() {
            return Err(HeadError::Reply(
                ErrorCode::BadRequest,
                "both Transfer-Encoding and Content-Length",
            ));
        }
        body = Body::Unread;
    }
    if let Some(l) = length {
        if l.is_empty() || !l.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HeadError::Reply(
                ErrorCode::BadRequest,
                "malformed Content-Length",
            ));
        }
        match l.parse::<usize>() {
            Ok(0) => {}
            Ok(n) if n <= MAX_BODY => body = Body::Length(n),
            _ => body = Body::Unread,
        }
    }
    Ok(Some((request, keep_alive, end, body)))
}

/// Whether an `Accept-Encoding` value accepts gzip (RFC 9110 12.5.3): `gzip`, `x-gzip` or
/// `*`, with no `q=0`.
fn accepts_gzip_in(value: &str) -> bool {
    value.split(',').any(|item| {
        let mut parts = item.split(';').map(|p| p.trim_matches([' ', '\t']));
        let coding = parts.next().unwrap_or_default();
        let named = ["gzip", "x-gzip", "*"]
            .iter()
            .any(|c| coding.eq_ignore_ascii_case(c));
        // A weight of zero refuses the coding; any other weight, or none, accepts it.
        let refused = parts.any(|p| {
            p.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("q") && v.trim().parse::<f32>() == Ok(0.0)
            })
        });
        named && !refused
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_full(s: &str) -> Result<(Request, bool, Body), u16> {
        match parse(s.as_bytes()) {
            Ok(Some((r, k, _, b))) => Ok((r, k, b)),
            Ok(None) => Err(0),
            Err(HeadError::Reply(c, _)) => Err(c.status()),
            Err(HeadError::Closed) => Err(1),
        }
    }

    fn status(s: &str) -> Result<(Request, bool), u16> {
        parse_full(s).map(|(r, k, _)| (r, k))
    }

    #[test]
    fn heads_parse_with_keep_alive_rules() {
        let (r, k) = status("GET /streamer/status HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(
            (r.method.as_str(), r.target.as_str(), k, r.host.as_deref()),
            ("GET", "/streamer/status", true, Some("x"))
        );
        assert!(!status("GET / HTTP/1.0\r\n\r\n").unwrap().1);
        assert!(
            status("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .unwrap()
                .1
        );
        assert!(
            !status("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap()
                .1
        );
        let (r, _) = status("GET / HTTP/1.1\nHost: x\nAuthorization: Bearer abc\n\n").unwrap();
        assert_eq!(r.authorization.as_deref(), Some("Bearer abc"));
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        let Ok(Some((_, _, end, _))) = parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest") else {
            panic!()
        };
        assert_eq!(end, 27);
    }

    #[test]
    fn bad_heads_get_the_right_status() {
        let h = "Host: x\r\n";
        assert_eq!(status("GET /\r\n\r\n"), Err(400));
        assert_eq!(status(&format!("get / HTTP/1.1\r\n{h}\r\n")), Err(400));
        assert_eq!(status(&format!("GET / HTTP/2.0\r\n{h}\r\n")), Err(505));
        assert_eq!(
            status(&format!("GET / HTTP/1.1\r\n{h}broken\r\n\r\n")),
            Err(400)
        );
        // Host: none, or two, in HTTP/1.1 (RFC 9112 3.2).
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), Err(400));
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Err(400)
        );
        // A bare CR or a NUL in a value: the attack's `X-A: a\rContent-Length: 45`.
        assert_eq!(
            status(&format!(
                "GET / HTTP/1.1\r\n{h}X-A: a\rContent-Length: 45\r\n\r\n"
            )),
            Err(400)
        );
        assert_eq!(
            status(&format!("GET / HTTP/1.1\r\n{h}X-A: a\0b\r\n\r\n")),
            Err(400)
        );
        // A small body is read and dropped; the handler answers (405 for a POST).
        assert!(status(&format!("POST / HTTP/1.1\r\n{h}Content-Length: 5\r\n\r\n")).is_ok());
        assert_eq!(
            parse_full(&format!(
                "POST / HTTP/1.1\r\n{h}Content-Length: 1000000\r\n\r\n"
            ))
            .map(|p| p.2),
            Ok(Body::Unread)
        );
        assert_eq!(
            status(&format!("POST / HTTP/1.1\r\n{h}Content-Length: +5\r\n\r\n")),
            Err(400)
        );
        assert_eq!(
            status(&format!(
                "POST / HTTP/1.1\r\n{h}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
            )),
            Err(400)
        );
        // Whitespace before the colon, a tab in the name, and folded lines (RFC 9112 5.1, 5.2).
        assert_eq!(
            status(&format!(
                "GET / HTTP/1.1\r\n{h}Transfer-Encoding : chunked\r\n\r\n"
            )),
            Err(400)
        );
        assert_eq!(
            status(&format!("GET / HTTP/1.1\r\n{h}X\tY: 1\r\n\r\n")),
            Err(400)
        );
        assert_eq!(
            status(&format!("GET / HTTP/1.1\r\n{h}X-A: 1\r\n  folded\r\n\r\n")),
            Err(400)
        );
        assert_eq!(
            parse_full(&format!(
                "POST / HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n"
            ))
            .map(|p| p.2),
            Ok(Body::Unread)
        );
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(65));
        assert_eq!(status(&many), Err(431));
        let long = format!("GET /{} HTTP/1.1\r\n{h}\r\n", "a".repeat(MAX_REQUEST_LINE));
        assert_eq!(status(&long), Err(414));
    }
}
