//! What the server and the API exchange: a parsed [`Request`], and the [`Response`] to write
//! (or the [`Takeover`] of a push endpoint).

use std::net::TcpStream;
use std::sync::atomic::AtomicBool;

use crate::budget::Reservation;

/// A parsed request head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// The method, as sent.
    pub method: String,
    /// The request target (path and query), as sent.
    pub target: String,
    /// `Authorization` header, if any.
    pub authorization: Option<String>,
    /// `If-None-Match` header, if any.
    pub if_none_match: Option<String>,
    /// Whether `Accept-Encoding` accepts gzip.
    pub accepts_gzip: bool,
    /// `Last-Event-ID` header (a server-sent events client resuming), if any.
    pub last_event_id: Option<String>,
    /// `Sec-WebSocket-Key`, if the request asks to upgrade to a WebSocket (`Upgrade:
    /// websocket`).
    pub websocket_key: Option<String>,
    /// `Sec-WebSocket-Version`, if any.
    pub websocket_version: Option<String>,
    /// `Host` (exactly one in HTTP/1.1; none is possible in HTTP/1.0).
    pub host: Option<String>,
}

/// What a push endpoint does with the connection after its head is written: it owns the socket
/// until it returns, and the server then closes it. It gets the bytes the client sent after
/// the request head, and the server's stop flag, which it must watch.
pub struct Takeover(pub Box<PushFn>);

/// The function of a [`Takeover`]: the socket, the bytes read past the head, the stop flag.
pub type PushFn = dyn FnOnce(TcpStream, Vec<u8>, &AtomicBool) + Send;

impl std::fmt::Debug for Takeover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Takeover")
    }
}

/// A response to write.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
    /// Extra headers, complete lines without CRLF.
    pub extra_headers: Vec<String>,
    /// The entity tag, for answers a client may revalidate: sent as `ETag`, with
    /// `Cache-Control: no-cache` (keep it, but ask again each time) instead of `no-store`.
    pub etag: Option<String>,
    /// For a push endpoint: the head goes out without a `Content-Length` (the body is what the
    /// takeover writes, until the connection closes; `101` for a WebSocket), then the takeover
    /// runs on this connection's thread.
    pub takeover: Option<Takeover>,
    /// Bytes of the [`Budget`](crate::budget::Budget) the handler reserved before it built the body (large
    /// answers); released once the answer is written. Without one, the server reserves the
    /// body's size itself, after the handler.
    /// Boxed: it is rare, and every error path moves responses around by value.
    pub reservation: Option<Box<Reservation>>,
}

impl Response {
    /// A response of `content_type`.
    pub fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type,
            body,
            extra_headers: Vec::new(),
            etag: None,
            takeover: None,
            reservation: None,
        }
    }

    /// A JSON response.
    pub fn json(status: u16, body: String) -> Response {
        Response::new(status, "application/json", body.into_bytes())
    }

    /// `304 Not Modified` for a request whose `If-None-Match` named the current `etag`.
    pub fn not_modified(etag: String) -> Response {
        Response {
            etag: Some(etag),
            ..Response::new(304, "application/json", Vec::new())
        }
    }
}

/// What a handler is: called from connection threads, concurrently.
pub type Handler = dyn Fn(&Request) -> Response + Send + Sync;
