//! `GET /streamer/stream` (server-sent events), and what it shares with `GET /streamer/ws`
//! (WebSocket, `ws.rs`): the push endpoints. Both validate like `/streamer/candles` before the stream starts, take a place
//! under `--max-streams`, and then run on the connection's own thread, fed by a
//! [`Watcher`](super::push::Watcher).
//!
//! A slow consumer costs only itself: events are read from the rings when the client's thread
//! looks, never queued, and a client whose socket stays full for the write timeout (10 s) is
//! disconnected with a logged reason.

use std::io::{self, Write as _};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mtf_watch::{Pairs, Watcher, BACKLOG_CHUNK, LOOK_CLOSED};
use serde_json::{json, Value};
use shm_core::Reader;

use super::json::{error, ErrorCode};
use super::push::{look_bytes, StreamSlot, DEFAULT_INTERVAL, HEARTBEAT, MIN_INTERVAL};
use super::push_events::framed;
use super::query::{list_param, only_known, param};
use super::request::PairsRequest;
use super::status::{not_running, not_running_reason};
use super::Api;
use crate::budget::Reservation;
use crate::message::{Request, Response, Takeover};

/// Bytes an event stream's write buffer keeps between looks.
const FIXED_BUFFER: usize = 4096;

impl Api {
    /// The pairs a stream asks for, each held by the segment; or the answer that refuses it.
    pub(super) fn stream_pairs(
        &self,
        asked: &PairsRequest,
        reader: Option<&Reader>,
    ) -> Result<Pairs, Response> {
        let Some(reader) = reader else {
            return Err(not_running("no_segment", None));
        };
        asked
            .iter()
            .map(|(symbol, tf)| match self.lookup(reader, symbol, tf) {
                Ok(_) => Ok((symbol.to_owned(), tf)),
                Err(missing) => Err(missing.response(symbol, tf)),
            })
            .collect()
    }

    /// A place under the stream cap, or the `503` that says it is full.
    pub(super) fn stream_slot(&self) -> Result<StreamSlot, Response> {
        StreamSlot::take(&self.push, self.config.max_streams).ok_or_else(|| {
            let mut r = error(
                ErrorCode::TooManyStreams,
                format!(
                    "{} streams are open, the most this server allows (--max-streams); retry later",
                    self.config.max_streams
                ),
                json!({"details": {"max_streams": self.config.max_streams}}),
            );
            r.extra_headers.push("Retry-After: 5".into());
            r
        })
    }

    /// `GET /streamer/stream?symbols=…&timeframes=…[&interval_ms=…]`.
    pub(super) fn stream(self: &Arc<Self>, asked: StreamRequest, req: &Request) -> Response {
        let reader = self.reader();
        let pairs = match self.stream_pairs(&asked.pairs, reader.as_deref()) {
            Ok(p) => p,
            Err(r) => return r,
        };
        if let Some(status) = reader.map(|r| r.status()) {
            if let Some(reason) = not_running_reason(&status) {
                return not_running(reason, Some(&status));
            }
        }
        let interval = asked.interval;
        let slot = match self.stream_slot() {
            Ok(s) => s,
            Err(r) => return r,
        };
        let mut watcher = Watcher::new(pairs, interval, req.last_event_id.as_deref());
        watcher.follow_ticks(asked.ticks);
        let api = Arc::clone(self);
        let mut r = Response::new(200, "text/event-stream", Vec::new());
        r.extra_headers.push("X-Accel-Buffering: no".into());
        r.takeover = Some(Takeover(Box::new(move |stream, _, stop| {
            api.run_sse(stream, stop, &slot, watcher);
        })));
        r
    }

    /// How many closed bars the next look of `watcher` may send, and the reservation that
    /// pays for them: a stream behind by more than [`LOOK_CLOSED`] bars takes a chunk's worth
    /// of the byte budget before the chunk exists, or goes on a few bars a look when the budget
    /// is spent; its socket's write timeout drops it if it does not drain them.
    pub(super) fn look_room(&self, watcher: &Watcher) -> (usize, Option<Reservation>) {
        if watcher.behind() {
            let bytes = look_bytes(watcher.ring_count(), BACKLOG_CHUNK);
            if let Some(h) = self.config.budget.reserve(bytes) {
                return (BACKLOG_CHUNK, Some(h));
            }
        }
        (LOOK_CLOSED, None)
    }

    /// The current reader, after following a replaced segment (a stream may be the only
    /// client, so it refreshes as requests do).
    pub(super) fn current_reader(&self) -> Option<Arc<Reader>> {
        self.refresh();
        self.reader()
    }

    fn run_sse(
        &self,
        mut stream: TcpStream,
        stop: &AtomicBool,
        slot: &StreamSlot,
        mut watcher: Watcher,
    ) {
        let peer = peer(&stream);
        let _ = stream.set_write_timeout(Some(self.config.stream_write_timeout));
        let mut events = Vec::new();
        let mut out = Vec::with_capacity(4096);
        // Reconnect after 1 s if the connection drops.
        out.extend_from_slice(b"retry: 1000\n\n");
        let mut last_write = Instant::now();
        // Relaxed: a stop flag carries no data with it.
        while !stop.load(Ordering::Relaxed) {
            let reader = self.current_reader();
            // The token before the look: a change during the look wakes the next wait.
            let since = reader.as_ref().map(|r| r.changes());
            let (max_closed, mut held) = self.look_room(&watcher);
            if let Some(h) = &held {
                // The chunk's buffer is made the size paid for at once: grown by doubling,
                // it would hold up to twice that while the socket stays full.
                out.reserve_exact(h.bytes());
            }
            let next = watcher.poll(reader.as_ref(), &mut events, max_closed);
            let sent = events.len();
            for change in events.drain(..) {
                let e = framed(&watcher, change);
                out.extend_from_slice(b"event: ");
                out.extend_from_slice(e.kind.as_bytes());
                out.push(b'\n');
                if let Some(id) = e.id {
                    out.extend_from_slice(format!("id: {id}\n").as_bytes());
                }
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(e.json.as_bytes());
                out.extend_from_slice(b"\n\n");
            }
            if client_left(&stream) {
                return;
            }
            if out.is_empty() && last_write.elapsed() >= HEARTBEAT {
                out.extend_from_slice(b": heartbeat\n\n");
            }
            if !out.is_empty() {
                // A backlog chunk was paid for before it was built; what it did not use goes
                // back at once.
                if let Some(h) = held.as_mut() {
                    out.shrink_to_fit();
                    h.shrink_to(out.capacity());
                }
                let written = stream.write_all(&out);
                drop(held);
                match written {
                    Ok(()) => {
                        slot.sent(sent);
                        last_write = Instant::now();
                        out.clear();
                        // A chunk's buffers are not kept for the quiet stream that follows.
                        out.shrink_to(FIXED_BUFFER);
                        events.shrink_to(LOOK_CLOSED);
                    }
                    Err(e) => {
                        if stalled(&e) {
                            slot.dropped_slow();
                            eprintln!("mtf-shim: event stream to {peer} dropped: its socket stayed full past the write timeout");
                        }
                        return;
                    }
                }
            }
            mtf_watch::wait(reader.as_ref(), since, next.min(last_write + HEARTBEAT));
        }
    }
}

/// Whether a write failed because the socket stayed full (the write timeout), not because the
/// client went away.
pub(super) fn stalled(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Whether an event-stream client closed its end (it sends nothing, so any readable end of
/// stream means it left): looked at on every pass, so that a closed client frees its place
/// under the cap at once rather than at the next write.
#[cfg(unix)]
pub(super) fn client_left(stream: &TcpStream) -> bool {
    use rustix::net::{recv, RecvFlags};
    let mut byte = [0u8; 1];
    // PEEK leaves any bytes in place; DONTWAIT makes it a look, not a wait.
    match recv(stream, &mut byte, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
        Ok((0, _)) => true,
        Ok(_) => false,
        Err(e) => e != rustix::io::Errno::AGAIN && e != rustix::io::Errno::INTR,
    }
}

/// As on Unix, but Winsock's `recv` has no per-call "don't wait": the socket is made
/// non-blocking for the look and blocking again after.
#[cfg(not(unix))]
pub(super) fn client_left(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let left = match stream.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        ),
    };
    let _ = stream.set_nonblocking(false);
    left
}

pub(super) fn peer(stream: &TcpStream) -> String {
    stream
        .peer_addr()
        .map_or_else(|_| "a client".to_owned(), |a| a.to_string())
}

/// The longest `interval_ms` of a stream.
const MAX_INTERVAL_MS: u64 = 60_000;

/// `/streamer/stream?symbols=&timeframes=&interval_ms=`, or a WebSocket `subscribe` message.
#[derive(Debug)]
pub(super) struct StreamRequest {
    pub pairs: PairsRequest,
    pub interval: Duration,
    /// Also send the symbols' ticks (`ticks=1`), coalesced per interval.
    pub ticks: bool,
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

/// `/streamer/stream`: parsed, then streamed as server-sent events.
pub(super) fn serve_sse(
    api: &Arc<Api>,
    _: &str,
    params: &[(String, String)],
    req: &Request,
) -> Response {
    match StreamRequest::parse(params) {
        Ok(s) => api.stream(s, req),
        Err(refused) => refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Vec<(String, String)> {
        super::super::query::query_params(q).unwrap()
    }

    #[test]
    fn each_request_knows_its_parameters_and_refuses_others() {
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
}
