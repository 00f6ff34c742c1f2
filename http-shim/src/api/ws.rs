//! `GET /streamer/ws`: the push endpoint over WebSocket (RFC 6455, framed by tungstenite on
//! the connection's own socket). A client subscribes by message, validated as the query of
//! `/streamer/stream` is, and then gets the same changes as JSON messages; `stream.rs` has
//! the parts the two push endpoints share.

use std::io;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mtf_watch::{Pairs, Watcher, LOOK_CLOSED};
use serde_json::{json, Value};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use super::json::{error, ErrorCode};
use super::push::{StreamSlot, HEARTBEAT};
use super::push_events::framed;
use super::stream::{peer, StreamRequest};
use super::{bare, Api};
use crate::budget::Reservation;
use crate::message::{Request, Response, Takeover};

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

/// `/streamer/ws` (no parameters: a client subscribes by message).
pub(super) fn serve_websocket(
    api: &Arc<Api>,
    _: &str,
    params: &[(String, String)],
    req: &Request,
) -> Response {
    bare(params, || api.websocket(req))
}
