//! `GET /streamer/stream` (server-sent events) and `GET /streamer/ws` (WebSocket): the push
//! endpoints. Both validate like `/streamer/candles` before the stream starts, take a place
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

use serde_json::{json, Value};
use shm_core::Reader;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use super::json::{error, ErrorCode};
use mtf_watch::{Pairs, Watcher, BACKLOG_CHUNK, LOOK_CLOSED};

use super::push::{look_bytes, StreamSlot, HEARTBEAT};
use super::push_events::framed;
use super::request::{PairsRequest, StreamRequest};
use super::status::{not_running, not_running_reason};
use super::Api;
use crate::budget::Reservation;
use crate::message::{Request, Response, Takeover};

/// Bytes an event stream's write buffer keeps between looks.
const FIXED_BUFFER: usize = 4096;

/// Longest a WebSocket client's thread sleeps before it reads what the client sent.
const WS_LOOK: Duration = Duration::from_millis(50);

/// Largest message a WebSocket client may send (a subscription is a few hundred bytes).
const WS_MAX_MESSAGE: usize = 64 * 1024;

/// Most bytes queued for a WebSocket client whose socket is full; past it, the client is
/// disconnected. Nothing is read from the client nor looked up for it while its queue is not
/// written out, so the queue holds one look's events and the replies of one read at most.
const WS_MAX_BUFFERED: usize = 1024 * 1024;

/// Bytes a WebSocket client may send without completing a message before it is closed with
/// 1008 (policy): a stream of empty fragments never completes one, and would hold its place
/// for ever.
const WS_MAX_INCOMPLETE: u64 = 1 << 20;

/// A socket that counts the bytes read from it, for [`WS_MAX_INCOMPLETE`].
struct Counted {
    inner: TcpStream,
    read: u64,
}

impl io::Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

impl io::Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Ends a WebSocket with the close frame and code RFC 6455 (7.4.1) names for why, and tries
/// for a moment to get it out (the socket is non-blocking).
fn close_with(ws: &mut WebSocket<Counted>, code: CloseCode, reason: &str) {
    let _ = ws.close(Some(CloseFrame {
        code,
        reason: reason.to_owned().into(),
    }));
    let until = Instant::now() + Duration::from_millis(500);
    while let Err(tungstenite::Error::Io(e)) = ws.flush() {
        if e.kind() != io::ErrorKind::WouldBlock || Instant::now() > until {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl Api {
    /// The pairs a stream asks for, each held by the segment; or the answer that refuses it.
    fn stream_pairs(
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
    fn stream_slot(&self) -> Result<StreamSlot, Response> {
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
    fn look_room(&self, watcher: &Watcher) -> (usize, Option<Reservation>) {
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
    fn current_reader(&self) -> Option<Arc<Reader>> {
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
                    h.shrink_to(out.len());
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

    /// `GET /streamer/ws`: the WebSocket handshake, then subscriptions and events.
    pub(super) fn websocket(self: &Arc<Self>, req: &Request) -> Response {
        let Some(key) = req.websocket_key.as_deref() else {
            let mut r = error(
                ErrorCode::UpgradeRequired,
                "this is a WebSocket endpoint: connect with a WebSocket client (Upgrade: websocket)",
                json!({}),
            );
            r.extra_headers.push("Upgrade: websocket".into());
            return r;
        };
        if req.websocket_version.as_deref() != Some("13") {
            let mut r = error(
                ErrorCode::UpgradeRequired,
                "only WebSocket version 13 (RFC 6455) is supported",
                json!({}),
            );
            r.extra_headers.push("Sec-WebSocket-Version: 13".into());
            return r;
        }
        let slot = match self.stream_slot() {
            Ok(s) => s,
            Err(r) => return r,
        };
        let api = Arc::clone(self);
        let mut r = Response::new(101, "application/json", Vec::new());
        r.extra_headers.push("Upgrade: websocket".into());
        r.extra_headers.push(format!(
            "Sec-WebSocket-Accept: {}",
            tungstenite::handshake::derive_accept_key(key.as_bytes())
        ));
        r.takeover = Some(Takeover(Box::new(move |stream, leftover, stop| {
            api.run_websocket(stream, leftover, stop, &slot);
        })));
        r
    }

    fn run_websocket(
        &self,
        stream: TcpStream,
        leftover: Vec<u8>,
        stop: &AtomicBool,
        slot: &StreamSlot,
    ) {
        let peer = peer(&stream);
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let config = WebSocketConfig::default()
            .max_message_size(Some(WS_MAX_MESSAGE))
            .max_frame_size(Some(WS_MAX_MESSAGE))
            .max_write_buffer_size(WS_MAX_BUFFERED);
        let counted = Counted {
            inner: stream,
            read: 0,
        };
        let mut ws = WebSocket::from_partially_read(counted, leftover, Role::Server, Some(config));
        // Bytes read when the last whole message (data or control) had arrived.
        let mut whole_at = 0u64;
        let mut watcher: Option<Watcher> = None;
        let mut events = Vec::new();
        let mut full_since: Option<Instant> = None;
        // The byte budget paid for the events waiting in the write buffer, if a chunk.
        let mut held: Option<Reservation> = None;
        let mut last_write = Instant::now();
        let write_limit = self.config.stream_write_timeout;
        loop {
            // Relaxed: a stop flag carries no data with it.
            if stop.load(Ordering::Relaxed) {
                close_with(&mut ws, CloseCode::Away, "server stopping");
                return;
            }
            // What the client sent: subscriptions, pings (answered by tungstenite), a close;
            // read only while the client reads what it is sent, so that replies to a client
            // that never reads cannot pile up.
            while full_since.is_none() {
                let message = ws.read();
                if message.is_ok() {
                    whole_at = ws.get_ref().read;
                }
                match message {
                    Ok(Message::Text(text)) => {
                        let reply = self.ws_command(text.as_str(), &mut watcher);
                        if ws.write(Message::text(reply)).is_err() {
                            return;
                        }
                    }
                    Ok(Message::Binary(_)) => {
                        let reply = ws_error(
                            ErrorCode::InvalidParameter,
                            "binary messages are not understood; send JSON text",
                        );
                        if ws.write(Message::text(reply)).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        break
                    }
                    Err(
                        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                    ) => return,
                    Err(e) => {
                        // A protocol error: the close frame with the code RFC 6455 names for
                        // it (7.4.1), not a bare end of stream.
                        let code = match &e {
                            tungstenite::Error::Capacity(_) => CloseCode::Size,
                            tungstenite::Error::Utf8(_) => CloseCode::Invalid,
                            _ => CloseCode::Protocol,
                        };
                        eprintln!("mtf-shim: WebSocket client {peer} closed: {e}");
                        slot.dropped_slow();
                        close_with(&mut ws, code, "protocol error");
                        return;
                    }
                }
            }
            if ws.get_ref().read - whole_at > WS_MAX_INCOMPLETE {
                eprintln!("mtf-shim: WebSocket client {peer} closed: {WS_MAX_INCOMPLETE} bytes without a whole message");
                slot.dropped_slow();
                close_with(
                    &mut ws,
                    CloseCode::Policy,
                    "fragments that never complete a message",
                );
                return;
            }
            let reader = self.current_reader();
            let since = reader.as_ref().map(|r| r.changes());
            let mut next = Instant::now() + WS_LOOK;
            // A look only once the last one's events are out: what waits for the client is
            // at most one look (a chunk it paid for, or a few bars) and the replies above.
            if let Some(w) = watcher.as_mut().filter(|_| full_since.is_none()) {
                let (max_closed, reservation) = self.look_room(w);
                held = reservation;
                next = next.min(w.poll(reader.as_ref(), &mut events, max_closed));
                let messages: Vec<String> = events.drain(..).map(|c| framed(w, c).json).collect();
                let n = messages.len();
                if let Some(h) = held.as_mut() {
                    // A frame's head is at most 14 bytes.
                    h.shrink_to(messages.iter().map(|m| m.len() + 14).sum());
                }
                for json in messages {
                    if ws.write(Message::text(json)).is_err() {
                        slot.dropped_slow();
                        eprintln!("mtf-shim: WebSocket client {peer} dropped: {WS_MAX_BUFFERED} bytes of events waiting");
                        return;
                    }
                }
                slot.sent(n);
            }
            if last_write.elapsed() >= HEARTBEAT {
                let _ = ws.write(Message::Ping(Vec::new().into()));
                last_write = Instant::now();
            }
            match ws.flush() {
                Ok(()) => {
                    full_since = None;
                    drop(held.take());
                    events.shrink_to(LOOK_CLOSED);
                }
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    if full_since.get_or_insert_with(Instant::now).elapsed() > write_limit {
                        slot.dropped_slow();
                        eprintln!("mtf-shim: WebSocket client {peer} dropped: its socket stayed full past the write timeout");
                        return;
                    }
                }
                Err(_) => return,
            }
            mtf_watch::wait(reader.as_ref(), since, next);
        }
    }

    /// Answers one client message: `subscribe` or `unsubscribe`.
    fn ws_command(&self, text: &str, watcher: &mut Option<Watcher>) -> String {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            return ws_error(ErrorCode::InvalidParameter, "messages are JSON, e.g. {\"op\":\"subscribe\",\"symbols\":[\"BTCUSDc\"],\"timeframes\":[\"M1\"]}");
        };
        let op = v.get("op").and_then(Value::as_str).unwrap_or("");
        if !matches!(op, "subscribe" | "unsubscribe") {
            return ws_error(
                ErrorCode::InvalidParameter,
                "op must be subscribe or unsubscribe",
            );
        }
        // The same rules, codes and messages as the HTTP endpoints, as a message.
        let as_message = |r: Response| {
            let mut body: Value = serde_json::from_slice(&r.body).unwrap_or_default();
            body["type"] = json!("error");
            body.to_string()
        };
        let asked = match StreamRequest::from_message(&v) {
            Ok(a) => a,
            Err(r) => return as_message(r),
        };
        let interval = asked.interval;
        let pairs = match self.stream_pairs(&asked.pairs, self.reader().as_deref()) {
            Ok(p) => p,
            Err(r) => return as_message(r),
        };
        let mut now: Pairs = watcher.as_ref().map(Watcher::pairs).unwrap_or_default();
        if op == "subscribe" {
            for p in pairs {
                if !now.contains(&p) {
                    now.push(p);
                }
            }
        } else {
            now.retain(|p| !pairs.contains(p));
        }
        let w = watcher.get_or_insert_with(|| Watcher::new(Vec::new(), interval, None));
        w.set_pairs(now.clone(), interval);
        // Ticks follow the symbols of the pairs, as the last message asked.
        w.follow_ticks(asked.ticks);
        let listed: Vec<Value> = now
            .iter()
            .map(|(s, tf)| json!({"symbol": s, "timeframe": tf.name()}))
            .collect();
        json!({"type": "subscribed", "pairs": listed}).to_string()
    }
}

/// An error message for a WebSocket client, in the HTTP error shape.
fn ws_error(code: ErrorCode, message: &str) -> String {
    json!({"type": "error", "success": false, "error": message, "error_code": code.as_str()})
        .to_string()
}

/// Whether a write failed because the socket stayed full (the write timeout), not because the
/// client went away.
fn stalled(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Whether an event-stream client closed its end (it sends nothing, so any readable end of
/// stream means it left): looked at on every pass, so that a closed client frees its place
/// under the cap at once rather than at the next write.
#[cfg(unix)]
fn client_left(stream: &TcpStream) -> bool {
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
fn client_left(stream: &TcpStream) -> bool {
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

fn peer(stream: &TcpStream) -> String {
    stream
        .peer_addr()
        .map_or_else(|_| "a client".to_owned(), |a| a.to_string())
}
