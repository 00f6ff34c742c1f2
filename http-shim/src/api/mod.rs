//! The `/streamer/*` endpoints and `/metrics`, answered from the segment alone.
//!
//! One file per concern, after mini-redis: `request.rs` parses each endpoint's request into a
//! type (its known parameters, every check that needs no segment), with the helpers of
//! `query.rs`; `candles.rs` answers the candle endpoints, `stream.rs` the push ones (events
//! from `push.rs`), `status.rs` the status, available, health and metrics ones; `json.rs`
//! writes candles (the error envelope is `crate::reply`'s); this file routes, checks the host
//! and the token, and keeps the reader attached. Prometheus text is written by
//! [`crate::metrics`].

mod cache;
mod candles;
mod etag;
mod json;
mod page;
pub mod push;
mod push_events;
mod query;
mod request;
mod status;
mod stream;
mod ticks;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::json;
use shm_core::{now_ns, OpenError, Reader, SegmentPath};

use crate::budget::{Budget, MAX_INFLIGHT_BYTES};
use crate::message::{Request, Response};
use crate::metrics::{Endpoint, Metrics};
use crate::server::DEFAULT_MAX_STREAMS;

pub use cache::{
    CacheStats, CandleCache, MAX_BYTES as CACHE_MAX_BYTES, MAX_DEPTH as CACHE_MAX_DEPTH,
};
pub use candles::MAX_RESPONSE_BYTES;
use json::error;
pub use json::{write_candles, ErrorCode};
pub use push::PushCounts;
use query::{only_known, query_params};
pub use request::MAX_BATCH_PAIRS;
use request::{BatchRequest, CandlesRequest, StreamRequest};

/// Settings of the API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The segment to read.
    pub segment: SegmentPath,
    /// Largest `limit` accepted.
    pub max_limit: usize,
    /// If set, every request needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Push streams (server-sent events and WebSocket) served at once.
    pub max_streams: usize,
    /// How long a push stream's socket may stay full before the client is dropped.
    pub stream_write_timeout: Duration,
    /// Host names served without a token besides addresses and `localhost`.
    pub allowed_hosts: Vec<String>,
    /// The bytes of answers being built or written, shared with the server: a large answer
    /// reserves its estimate here before it is built.
    pub budget: Arc<Budget>,
    /// The request counters, shared with the server, which counts its own replies there.
    pub metrics: Arc<Metrics>,
}

impl ApiConfig {
    /// The settings of `segment`, with the defaults of everything else.
    pub fn new(segment: SegmentPath) -> ApiConfig {
        ApiConfig {
            segment,
            max_limit: 10_000,
            token: None,
            max_streams: DEFAULT_MAX_STREAMS,
            stream_write_timeout: Duration::from_secs(10),
            allowed_hosts: Vec::new(),
            budget: Arc::new(Budget::new(MAX_INFLIGHT_BYTES)),
            metrics: Arc::default(),
        }
    }
}

/// The API's state, shared by all connection threads.
#[derive(Debug)]
pub struct Api {
    config: ApiConfig,
    /// The attached reader; `None` while there is no segment. Requests and streams take a
    /// clone of the `Arc` under the read lock and let the lock go at once, so that a stream
    /// waiting for changes never holds it; re-attaching swaps in a new reader under the write
    /// lock, at most every `REFRESH_NS`, and streams pick it up at their next look.
    reader: RwLock<Option<Arc<Reader>>>,
    last_refresh_ns: AtomicU64,
    metrics: Arc<Metrics>,
    /// The JSON of closed candles, per ring and answer shape.
    cache: CandleCache,
    /// Push streams: the open count under the cap, and what they sent.
    push: Arc<PushCounts>,
    started: Instant,
}

/// How often a request may trigger a check for a replaced or new segment.
const REFRESH_NS: u64 = 250_000_000;

impl Api {
    /// The API over `config.segment`; it attaches on the first request that finds the segment.
    pub fn new(config: ApiConfig) -> Api {
        let reader = Reader::open(&config.segment).ok().map(Arc::new);
        let metrics = Arc::clone(&config.metrics);
        Api {
            config,
            reader: RwLock::new(reader),
            last_refresh_ns: AtomicU64::new(now_ns()),
            metrics,
            cache: CandleCache::default(),
            push: Arc::default(),
            started: Instant::now(),
        }
    }

    /// Answers one request and counts it. A push endpoint's answer carries the
    /// [`Takeover`](crate::message::Takeover) that streams on the connection, which is why
    /// the API is shared behind an `Arc`.
    pub fn handle(self: &Arc<Self>, req: &Request) -> Response {
        let start = Instant::now();
        let (endpoint, mut response) = self.route(req);
        if let Some((before, after)) = crate::gzip::encode(&mut response, req.accepts_gzip) {
            self.metrics.record_gzip(before, after);
        }
        self.metrics
            .record(endpoint, response.status, start.elapsed());
        response
    }

    /// The attached reader (`None` while there is no segment), for one request or one look
    /// of a stream. A panic in another request while it held the write lock poisons nothing
    /// that matters here: the reader is either the old one or the new one, both whole.
    fn reader(&self) -> Option<Arc<Reader>> {
        self.reader
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-attaches if the segment was replaced or appeared, at most every 250 ms.
    fn refresh(&self) {
        let now = now_ns();
        // Relaxed: the timestamp only elects which request refreshes; the reader itself is
        // handed over by the RwLock, whose lock and unlock order everything that matters.
        let last = self.last_refresh_ns.load(Ordering::Relaxed);
        if now.saturating_sub(last) < REFRESH_NS {
            return;
        }
        // One thread wins the right to refresh; the others go on with the current reader.
        if self
            .last_refresh_ns
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        // The checks and the opening happen outside the lock; only the swap is inside it.
        let next = match self.reader() {
            Some(r) if !r.needs_reopen() => return,
            Some(r) => match r.reopen() {
                Ok(fresh) => Some(Arc::new(fresh)),
                Err(OpenError::NotFound { .. }) => None,
                // Initializing, say: keep serving the current one and look again later.
                Err(_) => return,
            },
            None => match Reader::open(&self.config.segment) {
                Ok(r) => Some(Arc::new(r)),
                Err(_) => return,
            },
        };
        *self.reader.write().unwrap_or_else(|p| p.into_inner()) = next;
        self.cache.clear();
    }

    /// DNS rebinding: a page of another site that makes its own name resolve to this host
    /// would reach a token-less API with its own name in `Host`. Without a token, only an IP
    /// address (no site's page can be named so), `localhost`, or a name given by
    /// `--allowed-host` is served. With a token, the token decides. A request without `Host`
    /// (HTTP/1.0) comes from no browser and is served.
    fn host_allowed(&self, req: &Request) -> bool {
        if self.config.token.is_some() {
            return true;
        }
        let Some(host) = req.host.as_deref() else {
            return true;
        };
        // `[::1]:8000`
        if let Some(rest) = host.strip_prefix('[') {
            return rest
                .split(']')
                .next()
                .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
        }
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        name.parse::<std::net::Ipv4Addr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || self
                .config
                .allowed_hosts
                .iter()
                .any(|a| a.eq_ignore_ascii_case(name))
    }

    fn authorized(&self, req: &Request) -> bool {
        let Some(token) = &self.config.token else {
            return true;
        };
        // The scheme is case-insensitive (RFC 9110 11.1); the token is compared exactly.
        let given = req
            .authorization
            .as_deref()
            .and_then(|h| h.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map_or("", |(_, t)| t.trim());
        constant_time_eq(given.as_bytes(), token.as_bytes())
    }

    fn route(self: &Arc<Self>, req: &Request) -> (Endpoint, Response) {
        let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
        let endpoint = match path {
            "/streamer/candles" => Endpoint::CandlesBatch,
            p if p.starts_with("/streamer/candles/") => Endpoint::Candles,
            "/streamer/status" => Endpoint::Status,
            "/streamer/available" => Endpoint::Available,
            "/streamer/health" => Endpoint::Health,
            "/streamer/stream" => Endpoint::Stream,
            "/streamer/ws" => Endpoint::WebSocket,
            p if p.starts_with("/streamer/ticks/") => Endpoint::Ticks,
            p if p.starts_with("/streamer/symbols/") => Endpoint::Symbol,
            "/metrics" => Endpoint::Metrics,
            p if page::asset(p).is_some() => Endpoint::Page,
            _ => Endpoint::Other,
        };
        if !self.host_allowed(req) {
            let host: String = req.host.as_deref().unwrap_or("").chars().take(64).collect();
            return (
                endpoint,
                error(
                    ErrorCode::HostNotAllowed,
                    format!(
                        "Host {host:?} is not served without a token: name the server by its \
                         address or localhost, or start it with --allowed-host NAME"
                    ),
                    json!({}),
                ),
            );
        }
        // The page and its assets hold no data: they are served without the token, and the
        // page asks for it (and sends it in a header, never in a URL) for its data calls.
        if endpoint != Endpoint::Page && !self.authorized(req) {
            let mut r = error(
                ErrorCode::Unauthorized,
                "a valid bearer token is required",
                json!({}),
            );
            r.extra_headers.push("WWW-Authenticate: Bearer".into());
            return (endpoint, r);
        }
        if req.method != "GET" && req.method != "HEAD" {
            let mut r = error(
                ErrorCode::MethodNotAllowed,
                format!("method {} is not allowed; use GET or HEAD", req.method),
                json!({}),
            );
            r.extra_headers.push("Allow: GET, HEAD".into());
            return (endpoint, r);
        }
        let params = match query_params(query) {
            Ok(p) => p,
            Err(bad) => {
                return (
                    endpoint,
                    error(
                        ErrorCode::InvalidParameter,
                        format!("malformed query parameter {bad:?}"),
                        json!({}),
                    ),
                )
            }
        };
        // Each endpoint's request is parsed into its type first (request.rs), which refuses
        // parameters it does not know; the others take none.
        let parsed = match endpoint {
            Endpoint::Candles => {
                CandlesRequest::parse(&path["/streamer/candles/".len()..], &params)
                    .map(Parsed::Candles)
            }
            Endpoint::CandlesBatch => BatchRequest::parse(&params).map(Parsed::Batch),
            Endpoint::Stream => StreamRequest::parse(&params).map(Parsed::Stream),
            Endpoint::Ticks => {
                ticks::TicksRequest::parse(&path["/streamer/ticks/".len()..], &params)
                    .map(Parsed::Ticks)
            }
            Endpoint::Symbol => {
                ticks::SymbolRequest::parse(&path["/streamer/symbols/".len()..], &params)
                    .map(Parsed::Symbol)
            }
            _ => only_known(&params, &[]).map(|()| Parsed::Bare),
        };
        let parsed = match parsed {
            Ok(p) => p,
            Err(r) => return (endpoint, r),
        };
        self.refresh();
        let response = match (endpoint, parsed) {
            (_, Parsed::Candles(c)) => self.candles(c, req.if_none_match.as_deref()),
            (_, Parsed::Batch(b)) => self.candles_batch(b, req.if_none_match.as_deref()),
            (_, Parsed::Stream(s)) => self.stream(s, req),
            (_, Parsed::Ticks(t)) => self.ticks(t, req.if_none_match.as_deref()),
            (_, Parsed::Symbol(s)) => self.symbol(s, req.if_none_match.as_deref()),
            (Endpoint::Status, _) => self.status(),
            (Endpoint::Available, _) => self.available(),
            (Endpoint::Health, _) => self.health(),
            (Endpoint::Metrics, _) => self.prometheus(),
            (Endpoint::WebSocket, _) => self.websocket(req),
            (Endpoint::Page, _) => page::serve(path),
            _ => error(
                ErrorCode::NotFound,
                format!("no route {}", path.chars().take(200).collect::<String>()),
                json!({}),
            ),
        };
        (endpoint, response)
    }
}

/// A request parsed for its endpoint.
enum Parsed {
    Candles(CandlesRequest),
    Batch(BatchRequest),
    Stream(StreamRequest),
    Ticks(ticks::TicksRequest),
    Symbol(ticks::SymbolRequest),
    /// An endpoint that takes no parameters.
    Bare,
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
