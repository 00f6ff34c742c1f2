//! The error envelope every error answer takes, `{"success": false, "error", "error_code",
//! "details"}`, and its codes: one [`ErrorCode`] per `error_code`, with its status. The API's
//! answers and the server's own replies are built here alike.

use serde_json::{json, Value};

use crate::message::Response;

/// Every `error_code` the shim answers with, and its HTTP status: the API's, and those of the
/// replies the server makes before any endpoint is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// A symbol that breaks the naming rule.
    InvalidSymbol,
    /// A timeframe name that does not exist.
    InvalidTimeframe,
    /// A `limit` out of range or not a number.
    InvalidLimit,
    /// An unknown, repeated-badly or malformed query parameter.
    InvalidParameter,
    /// A well-formed symbol the segment does not hold.
    SymbolNotFound,
    /// A timeframe the segment holds no ring of for the symbol.
    TimeframeNotAvailable,
    /// No live writer (with `details.reason`).
    StreamerNotRunning,
    /// No such route.
    NotFound,
    /// A method other than GET or HEAD.
    MethodNotAllowed,
    /// The bearer token is missing or wrong.
    Unauthorized,
    /// Without a token, a `Host` that is not an address, `localhost` or an `--allowed-host`
    /// name: a page of another site reaching the API by DNS rebinding.
    HostNotAllowed,
    /// The answer would pass the byte budget of one response.
    ResponseTooLarge,
    /// A stored candle breaks the writer's invariants (a damaged or forged segment).
    InvalidStoredData,
    /// A record (a tick ring, a symbol's information) found mid-write at every try: its
    /// writer is writing it faster than it can be copied, or died inside the write (the next
    /// writer repairs it). The writer itself may be running: not `STREAMER_NOT_RUNNING`.
    RecordBusy,
    /// Every place for a push stream is taken (`--max-streams`).
    TooManyStreams,
    /// A WebSocket endpoint asked for without a WebSocket handshake, or of another version.
    UpgradeRequired,
    /// A request head the server cannot read (malformed, smuggling-shaped, no `Host`).
    BadRequest,
    /// A request head not received within the head timeout.
    RequestTimeout,
    /// A request body on a GET or HEAD, or one too large to read.
    BodyTooLarge,
    /// A request line longer than the server reads.
    UriTooLong,
    /// A request head with too many or too large headers.
    HeadersTooLarge,
    /// An HTTP version other than 1.0 and 1.1.
    VersionNotSupported,
    /// Every connection the server serves at once is taken.
    TooManyConnections,
    /// The byte budget of answers being written is spent; retry shortly.
    ServerBusy,
    /// A handler failed (a bug): one `500`, not a silent connection.
    Internal,
}

impl ErrorCode {
    /// The `error_code` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidSymbol => "INVALID_SYMBOL",
            ErrorCode::InvalidTimeframe => "INVALID_TIMEFRAME",
            ErrorCode::InvalidLimit => "INVALID_LIMIT",
            ErrorCode::InvalidParameter => "INVALID_PARAMETER",
            ErrorCode::SymbolNotFound => "SYMBOL_NOT_FOUND",
            ErrorCode::TimeframeNotAvailable => "TIMEFRAME_NOT_AVAILABLE",
            ErrorCode::StreamerNotRunning => "STREAMER_NOT_RUNNING",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::HostNotAllowed => "HOST_NOT_ALLOWED",
            ErrorCode::ResponseTooLarge => "RESPONSE_TOO_LARGE",
            ErrorCode::InvalidStoredData => "INVALID_STORED_DATA",
            ErrorCode::RecordBusy => "RECORD_BUSY",
            ErrorCode::TooManyStreams => "TOO_MANY_STREAMS",
            ErrorCode::UpgradeRequired => "UPGRADE_REQUIRED",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::RequestTimeout => "REQUEST_TIMEOUT",
            ErrorCode::BodyTooLarge => "BODY_TOO_LARGE",
            ErrorCode::UriTooLong => "URI_TOO_LONG",
            ErrorCode::HeadersTooLarge => "HEADERS_TOO_LARGE",
            ErrorCode::VersionNotSupported => "HTTP_VERSION_NOT_SUPPORTED",
            ErrorCode::TooManyConnections => "TOO_MANY_CONNECTIONS",
            ErrorCode::ServerBusy => "SERVER_BUSY",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    /// The HTTP status that goes with it.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidSymbol
            | ErrorCode::InvalidTimeframe
            | ErrorCode::InvalidLimit
            | ErrorCode::InvalidParameter
            | ErrorCode::ResponseTooLarge
            | ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::HostNotAllowed => 421,
            ErrorCode::SymbolNotFound | ErrorCode::TimeframeNotAvailable | ErrorCode::NotFound => {
                404
            }
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::BodyTooLarge => 413,
            ErrorCode::UriTooLong => 414,
            ErrorCode::HeadersTooLarge => 431,
            ErrorCode::VersionNotSupported => 505,
            ErrorCode::UpgradeRequired => 426,
            ErrorCode::InvalidStoredData | ErrorCode::Internal => 500,
            ErrorCode::StreamerNotRunning
            | ErrorCode::RecordBusy
            | ErrorCode::TooManyStreams
            | ErrorCode::TooManyConnections
            | ErrorCode::ServerBusy => 503,
        }
    }
}

/// An error answer in the documented shape, with the code's status.
pub fn error(code: ErrorCode, message: impl Into<String>, extra: Value) -> Response {
    let mut body = json!({"success": false, "error": message.into(), "error_code": code.as_str(), "details": {}});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        for (k, v) in e {
            b.insert(k, v);
        }
    }
    Response::json(code.status(), body.to_string())
}

/// `503 SERVER_BUSY`: the byte budget of all answers is spent; retry in a second.
pub fn server_busy() -> Response {
    let mut busy = error(
        ErrorCode::ServerBusy,
        "the server is busy writing other answers; retry shortly",
        json!({}),
    );
    busy.extra_headers.push("Retry-After: 1".into());
    busy
}
