//! The `/streamer/*` endpoints and `/metrics`, answered from the segment alone.
//!
//! One file per endpoint family, after mini-redis: each has its request types, their parsing
//! (the query parameters it knows, every check that needs no segment) and its handler, and a
//! `serve` that parses and then answers: `candles.rs` (one ring, and batches), `ticks.rs`
//! (ticks and symbol information), `status.rs` (status, available, health, metrics),
//! `stream.rs` (server-sent events) and `ws.rs` (WebSocket), `page.rs` (the chart page).
//! `request.rs` holds what several families take (symbol and timeframe pairs), `query.rs` the
//! parsing helpers; `json.rs` writes candles (the error envelope is `crate::reply`'s). This
//! file has the one table of routes (path, what it is counted as, its family's `serve`),
//! checks the host, the token and the method, and keeps the reader attached. Prometheus text
//! is written by [`crate::metrics`].

mod cache;
mod candles;
mod etag;
mod json;
mod page;
pub mod push;
mod push_events;
mod query;
mod range;
mod request;
mod status;
mod stream;
mod ticks;
mod ws;

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
    /// The history store read for time ranges deeper than the rings (`None`: the rings
    /// alone). By default the streamer's default place for the segment.
    pub history_dir: Option<std::path::PathBuf>,
}

impl ApiConfig {
    /// The settings of `segment`, with the defaults of everything else.
    pub fn new(segment: SegmentPath) -> ApiConfig {
        ApiConfig {
            max_limit: 10_000,
            token: None,
            max_streams: DEFAULT_MAX_STREAMS,
            stream_write_timeout: Duration::from_secs(10),
            allowed_hosts: Vec::new(),
            budget: Arc::new(Budget::new(MAX_INFLIGHT_BYTES)),
            metrics: Arc::default(),
            history_dir: Some(shm_core::default_history_dir(&segment)),
            segment,
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
    /// The history store's streams, mapped once (`range.rs`).
    history: range::HistoryLock,
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
            history: Default::default(),
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
        let route = route_of(path);
        let endpoint = route.map_or(Endpoint::Other, |(r, _)| r.endpoint);
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
        self.refresh();
        let response = match route {
            // Each family's `serve` parses the request into its type first (refusing the
            // parameters it does not know, and every check that needs no segment), then
            // answers it.
            Some((route, rest)) => (route.serve)(self, rest, &params, req),
            None => only_known(&params, &[]).err().unwrap_or_else(|| {
                error(
                    ErrorCode::NotFound,
                    format!("no route {}", path.chars().take(200).collect::<String>()),
                    json!({}),
                )
            }),
        };
        (endpoint, response)
    }
}

/// Answers a request of a route: `rest` is the path after the route's prefix (the whole path
/// for the page), `params` the query's parameters.
type Serve = fn(&Arc<Api>, &str, &[(String, String)], &Request) -> Response;

/// How a route matches a path.
enum Path {
    /// This path only.
    Exact(&'static str),
    /// Paths below this prefix.
    Below(&'static str),
    /// The chart page and its assets.
    Page,
}

/// One route: its path, what it is counted as, and its family's `serve`.
struct Route {
    path: Path,
    endpoint: Endpoint,
    serve: Serve,
}

/// Every route, in the order they are tried.
const ROUTES: &[Route] = &[
    route(
        Path::Exact("/streamer/candles"),
        Endpoint::CandlesBatch,
        candles::serve_batch,
    ),
    route(
        Path::Below("/streamer/candles/"),
        Endpoint::Candles,
        candles::serve,
    ),
    route(
        Path::Exact("/streamer/status"),
        Endpoint::Status,
        status::serve_status,
    ),
    route(
        Path::Exact("/streamer/available"),
        Endpoint::Available,
        status::serve_available,
    ),
    route(
        Path::Exact("/streamer/health"),
        Endpoint::Health,
        status::serve_health,
    ),
    route(
        Path::Exact("/streamer/stream"),
        Endpoint::Stream,
        stream::serve_sse,
    ),
    route(
        Path::Exact("/streamer/ws"),
        Endpoint::WebSocket,
        ws::serve_websocket,
    ),
    route(
        Path::Below("/streamer/ticks/"),
        Endpoint::Ticks,
        ticks::serve_ticks,
    ),
    route(
        Path::Below("/streamer/symbols/"),
        Endpoint::Symbol,
        ticks::serve_symbol,
    ),
    route(
        Path::Exact("/metrics"),
        Endpoint::Metrics,
        status::serve_metrics,
    ),
    route(Path::Page, Endpoint::Page, page::serve_route),
];

const fn route(path: Path, endpoint: Endpoint, serve: Serve) -> Route {
    Route {
        path,
        endpoint,
        serve,
    }
}

/// The route of `path`, and the rest of the path after its prefix.
fn route_of(path: &str) -> Option<(&'static Route, &str)> {
    ROUTES.iter().find_map(|r| match r.path {
        Path::Exact(p) => (path == p).then_some((r, "")),
        Path::Below(p) => path.strip_prefix(p).map(|rest| (r, rest)),
        Path::Page => page::asset(path).is_some().then_some((r, path)),
    })
}

/// An endpoint that takes no parameters: `answer`, or the refusal of a parameter.
fn bare(params: &[(String, String)], answer: impl FnOnce() -> Response) -> Response {
    match only_known(params, &[]) {
        Ok(()) => answer(),
        Err(refused) => refused,
    }
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
