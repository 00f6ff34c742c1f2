//! A small HTTP/1.1 server for GET and HEAD, bounded in every dimension.
//!
//! - One thread per connection, with a small stack, up to `max_connections`; beyond that a
//!   connection gets `503` at once and is closed, so the accept loop never stalls.
//! - A request head must arrive within `head_timeout` and fit `MAX_HEAD` bytes, with a request
//!   line of at most `MAX_REQUEST_LINE` bytes and at most `MAX_HEADERS` headers.
//! - An idle keep-alive connection is closed after `idle_timeout`; writes time out too.
//! - Request bodies of up to `MAX_BODY` bytes are read and discarded (the API has no use for
//!   one; the handler then answers, typically `405`). A larger or chunked body is not read:
//!   a GET or HEAD carrying one gets `413`, any other method the handler's answer (`405`
//!   with `Allow` on a known path), and the connection is then drained for a moment before
//!   it closes, so that the client reads the answer instead of a reset.
//! - Heads are parsed by `httparse` and held to strict rules (`head.rs`): no proxy in front
//!   can be made to read a head differently from us.
//! - Near the connection cap (three quarters of it), idle keep-alive connections are closed
//!   after 1 s instead of `idle_timeout`, so that idle sockets cannot lock other clients out.
//! - At the cap, the connection whose request head has been unfinished the longest is closed
//!   to make room for a newcomer (`PartialHeads`): clients that send a few bytes of a head and
//!   hold it for the whole head timeout cannot lock out those that send whole requests.
//! - The bytes of responses being written, over all connections, are bounded: beyond
//!   `MAX_INFLIGHT_BYTES` a request gets a small `503` at once, so that clients that send
//!   requests and never read the answers cannot make the process hold unbounded memory.
//! - Accept errors (such as running out of file descriptors) are logged and retried after a
//!   pause; they never stop the server.
//! - A push endpoint's answer carries a [`Takeover`](crate::message::Takeover): its head goes out without a length (or as
//!   `101` for a WebSocket), and the takeover then owns the socket on this connection's thread
//!   until it returns; the connection still counts under the cap.

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::budget::Budget;
use crate::head::{self, Body, HeadError};
pub use crate::head::{MAX_BODY, MAX_HEAD, MAX_HEADERS, MAX_REQUEST_LINE};
use crate::message::{Handler, Request, Response};
use crate::metrics::Metrics;
use crate::reply::{error, server_busy, ErrorCode};
use crate::respond::{linger, write_response};

/// Push streams (server-sent events and WebSocket) served at once when `--max-streams` is
/// not given.
pub const DEFAULT_MAX_STREAMS: usize = 1024;

/// Connections over the cap while the heads evicted to make room are still closing.
const EVICTION_SLACK: usize = 64;

/// Connections waiting to be accepted, at most.
const LISTEN_BACKLOG: i32 = 4096;
/// Idle keep-alive timeout when the server is near its connection cap.
const BUSY_IDLE_TIMEOUT: Duration = Duration::from_secs(1);

/// Limits of the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time allowed for a whole request head, from its first byte.
    pub head_timeout: Duration,
    /// Time a keep-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// Time allowed for writing one response, and for which a push stream's socket may stay
    /// full before its client is dropped.
    pub write_timeout: Duration,
    /// Push streams (server-sent events and WebSocket) served at once; each also counts as a
    /// connection.
    pub max_streams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            max_streams: DEFAULT_MAX_STREAMS,
        }
    }
}

/// A running server; dropping it stops accepting and lets open connections finish.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Connections being served (see `accept_loop`).
    open: Arc<AtomicUsize>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` and serves `handler` from a background thread.
    pub fn start(
        addr: SocketAddr,
        limits: Limits,
        handler: Arc<Handler>,
        budget: Arc<Budget>,
        metrics: Arc<Metrics>,
    ) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        // std listens with a backlog of 128; a burst of clients (a thousand event streams
        // reconnecting after a restart) would overflow it and see resets. Listening again
        // only raises the queue's length (the kernel caps it at net.core.somaxconn).
        let _ = rustix::net::listen(&listener, LISTEN_BACKLOG);
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(AtomicUsize::new(0));
        let accept = {
            let (stop, open) = (Arc::clone(&stop), Arc::clone(&open));
            std::thread::Builder::new()
                .name("mtf-shim-accept".into())
                .spawn(move || {
                    accept_loop(listener, limits, handler, stop, open, budget, metrics)
                })?
        };
        Ok(Server {
            addr,
            stop,
            open,
            accept: Some(accept),
        })
    }

    /// Connections accepted and being served now.
    pub fn open_connections(&self) -> usize {
        // Relaxed: a count, as in `accept_loop`.
        self.open.load(Ordering::Relaxed)
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Relaxed: a stop flag publishes no data; the threads only need to see it eventually,
        // and the wake-up connection below makes the accept loop look at once.
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept with a connection of our own.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    limits: Limits,
    handler: Arc<Handler>,
    stop: Arc<AtomicBool>,
    open: Arc<AtomicUsize>,
    budget: Arc<Budget>,
    metrics: Arc<Metrics>,
) {
    // `open`: connections being served. Relaxed throughout: it is a count compared with a
    // limit, and no other memory is published through it; a momentarily stale value only lets
    // the cap be off by the connections closing at that instant.
    let partial = Arc::new(PartialHeads::default());
    let mut logged_error = false;
    // Relaxed: the stop flag carries no data with it.
    while !stop.load(Ordering::Relaxed) {
        let stream = match listener.accept() {
            Ok((s, _)) => {
                logged_error = false;
                s
            }
            Err(e) => {
                // EMFILE and friends: wait for connections to close rather than give up.
                if !logged_error {
                    eprintln!("mtf-shim: accept failed ({e}); retrying");
                    logged_error = true;
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let _ = stream.set_nodelay(true);
        // At the cap, the oldest unfinished head gives way: its thread sees its socket shut and
        // leaves at once, so the cap is passed by at most the threads still leaving (bounded
        // by EVICTION_SLACK).
        let at_cap = open.load(Ordering::Relaxed) >= limits.max_connections;
        let room = !at_cap
            || (open.load(Ordering::Relaxed) < limits.max_connections + EVICTION_SLACK
                && partial.evict_oldest());
        if !room {
            let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
            metrics.record_reply(ErrorCode::TooManyConnections);
            let refusal = error(
                ErrorCode::TooManyConnections,
                "too many connections",
                json!({}),
            );
            let _ = write_response(&stream, &refusal, false, false);
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let conn = Shared {
            handler: Arc::clone(&handler),
            limits: limits.clone(),
            open: Arc::clone(&open),
            budget: Arc::clone(&budget),
            metrics: Arc::clone(&metrics),
            stop: Arc::clone(&stop),
            partial: Arc::clone(&partial),
        };
        let spawned = std::thread::Builder::new()
            .name("mtf-shim-conn".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                serve(stream, &conn);
                conn.open.fetch_sub(1, Ordering::Relaxed);
            });
        if spawned.is_err() {
            open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// What every connection thread shares.
struct Shared {
    handler: Arc<Handler>,
    limits: Limits,
    /// Connections being served.
    open: Arc<AtomicUsize>,
    /// Bytes of answers being built or written (see [`Budget`]).
    budget: Arc<Budget>,
    /// Where the server's own replies are counted.
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    /// Connections whose request head has begun but not ended.
    partial: Arc<PartialHeads>,
}

/// The connections in the middle of a request head, oldest first: at the connection cap the
/// oldest is closed to make room, so that clients that never finish a head (a few bytes, then
/// nothing, for the whole head timeout) cannot lock out those that send whole requests.
#[derive(Default)]
struct PartialHeads {
    /// By registration order (so by age): a handle to each socket, to shut it down.
    heads: std::sync::Mutex<(u64, std::collections::BTreeMap<u64, TcpStream>)>,
}

impl PartialHeads {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, std::collections::BTreeMap<u64, TcpStream>)> {
        // A panic while held leaves a map that is whole.
        self.heads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `stream` as in the middle of a head; the guard unregisters it.
    fn begin<'a>(&'a self, stream: &TcpStream) -> Option<PartialGuard<'a>> {
        let handle = stream.try_clone().ok()?;
        let mut g = self.lock();
        let id = g.0;
        g.0 += 1;
        g.1.insert(id, handle);
        Some(PartialGuard { heads: self, id })
    }

    /// Closes the oldest connection in the middle of a head; whether there was one.
    fn evict_oldest(&self) -> bool {
        let oldest = self.lock().1.pop_first();
        match oldest {
            Some((_, stream)) => {
                let _ = stream.shutdown(Shutdown::Both);
                true
            }
            None => false,
        }
    }
}

/// Unregisters a partial head when its head is complete, refused, or its connection gone.
struct PartialGuard<'a> {
    heads: &'a PartialHeads,
    id: u64,
}

impl Drop for PartialGuard<'_> {
    fn drop(&mut self) {
        self.heads.lock().1.remove(&self.id);
    }
}

impl Shared {
    /// A reply of the server's own (not the handler's), counted in `/metrics`.
    fn reply(&self, code: ErrorCode, message: &str) -> Response {
        self.metrics.record_reply(code);
        if code == ErrorCode::ServerBusy {
            return server_busy();
        }
        error(code, message, json!({}))
    }

    /// The idle timeout now: short when the server is near its connection cap.
    fn idle_timeout(&self) -> Duration {
        // Relaxed: see `accept_loop`.
        if self.open.load(Ordering::Relaxed) * 4 >= self.limits.max_connections * 3 {
            BUSY_IDLE_TIMEOUT.min(self.limits.idle_timeout)
        } else {
            self.limits.idle_timeout
        }
    }
}

/// Serves one connection until it closes, errs, or asks to close.
fn serve(mut stream: TcpStream, shared: &Shared) {
    let limits = &shared.limits;
    let _ = stream.set_write_timeout(Some(limits.write_timeout));
    let mut buf = Vec::with_capacity(1024);
    // Relaxed: the stop flag carries no data with it.
    while !shared.stop.load(Ordering::Relaxed) {
        let (request, keep_alive, consumed, body) = match read_head(&mut stream, &mut buf, shared) {
            Ok(r) => r,
            Err(HeadError::Closed) => break,
            Err(HeadError::Reply(code, message)) => {
                let _ = write_response(&stream, &shared.reply(code, message), false, false);
                break;
            }
        };
        buf.drain(..consumed);
        match body {
            Body::None => {}
            Body::Length(n) => {
                if discard_body(&mut stream, &mut buf, n, limits.head_timeout).is_err() {
                    break;
                }
            }
            // A GET or HEAD has no business with a body this size: 413. Any other method gets
            // the handler's answer (its 405 names the allowed methods), as with a small body;
            // either way the body is not read, and the connection closes after the answer.
            Body::Unread => {
                let response = if matches!(request.method.as_str(), "GET" | "HEAD") {
                    shared.reply(ErrorCode::BodyTooLarge, "request bodies are not accepted")
                } else {
                    answer(shared, &request)
                };
                let _ = write_response(&stream, &response, false, false);
                linger(&mut stream);
                break;
            }
        }
        let head_only = request.method == "HEAD";
        let mut response = answer(shared, &request);
        if response.takeover.is_some() {
            let written = write_response(&stream, &response, false, head_only);
            if let (Ok(()), false, Some(takeover)) = (written, head_only, response.takeover.take())
            {
                let _ = stream.set_read_timeout(None);
                (takeover.0)(stream, std::mem::take(&mut buf), &shared.stop);
            }
            return;
        }
        // The response's bytes are held in the budget of all connections until written: the
        // handler reserved its estimate before building a large answer; otherwise they are
        // reserved now. Past the budget, a small 503 goes out instead and the body is dropped.
        let size = response.body.len();
        let held = response
            .reservation
            .take()
            .or_else(|| shared.budget.reserve(size).map(Box::new));
        let written = if held.is_none() && size > 4096 {
            drop(response);
            let busy = shared.reply(ErrorCode::ServerBusy, "");
            write_response(&stream, &busy, keep_alive, head_only)
        } else {
            let r = write_response(&stream, &response, keep_alive, head_only);
            drop(held);
            r
        };
        if written.is_err() || !keep_alive {
            break;
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// The handler's answer; a bug in a handler costs one `500`, not the connection thread's
/// silence.
fn answer(shared: &Shared, request: &Request) -> Response {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (shared.handler)(request)))
        .unwrap_or_else(|_| {
            eprintln!(
                "mtf-shim: handler panicked on {} {}",
                request.method,
                request.target.chars().take(200).collect::<String>()
            );
            shared.reply(ErrorCode::Internal, "internal error")
        })
}

/// Reads and drops a body of `len` bytes, part of which may already be in `buf`.
fn discard_body(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    len: usize,
    within: Duration,
) -> Result<(), ()> {
    let have = buf.len().min(len);
    buf.drain(..have);
    let mut left = len - have;
    let until = Instant::now() + within;
    let mut sink = [0u8; 4096];
    while left > 0 {
        let time = until.saturating_duration_since(Instant::now());
        if time.is_zero() {
            return Err(());
        }
        let _ = stream.set_read_timeout(Some(time));
        match stream.read(&mut sink[..left.min(4096)]) {
            Ok(0) | Err(_) => return Err(()),
            Ok(n) => left -= n,
        }
    }
    Ok(())
}

/// Reads until `buf` holds a complete head; returns the request, whether to keep the
/// connection, and the bytes the head took.
fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    shared: &Shared,
) -> Result<(Request, bool, usize, Body), HeadError> {
    let limits = &shared.limits;
    let idle_since = Instant::now();
    let mut started: Option<Instant> = if buf.is_empty() {
        None
    } else {
        Some(Instant::now())
    };
    let mut chunk = [0u8; 4096];
    // Registered while the head is unfinished (see `PartialHeads`).
    let mut partial = if buf.is_empty() {
        None
    } else {
        shared.partial.begin(stream)
    };
    loop {
        if let Some(parsed) = head::parse(buf)? {
            return Ok(parsed);
        }
        if buf.len() >= MAX_HEAD {
            return Err(
                if buf.iter().take(MAX_REQUEST_LINE).all(|&b| b != b'\n')
                    && buf.len() >= MAX_REQUEST_LINE
                {
                    HeadError::Reply(ErrorCode::UriTooLong, "request line too long")
                } else {
                    HeadError::Reply(ErrorCode::HeadersTooLarge, "request head too large")
                },
            );
        }
        let timeout = match started {
            // Waited in slices of at most 1 s, so that an idle connection notices when the
            // server comes near its cap and its idle time shrinks.
            None => match shared.idle_timeout().checked_sub(idle_since.elapsed()) {
                Some(left) if !left.is_zero() => left.min(BUSY_IDLE_TIMEOUT),
                _ => return Err(HeadError::Closed),
            },
            Some(t) => match limits.head_timeout.checked_sub(t.elapsed()) {
                Some(left) if !left.is_zero() => left,
                _ => {
                    return Err(HeadError::Reply(
                        ErrorCode::RequestTimeout,
                        "request head not received in time",
                    ))
                }
            },
        };
        let _ = stream.set_read_timeout(Some(timeout));
        match stream.read(&mut chunk) {
            Ok(0) => return Err(HeadError::Closed),
            Ok(n) => {
                started.get_or_insert_with(Instant::now);
                if partial.is_none() {
                    partial = shared.partial.begin(stream);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if started.is_none()
                    && matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
            Err(e)
                if started.is_some()
                    && matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
            {
                return Err(HeadError::Reply(
                    ErrorCode::RequestTimeout,
                    "request head not received in time",
                ));
            }
            Err(_) => return Err(HeadError::Closed),
        }
    }
}
