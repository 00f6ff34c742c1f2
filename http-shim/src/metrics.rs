//! Prometheus text: the request counters and latency histogram (lock-free), the segment's
//! metrics, and the [`Exposition`] writer that gives every family its `# HELP` and `# TYPE`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shm_core::{Counter, Liveness, Reader};

use crate::reply::ErrorCode;

/// The endpoints counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/streamer/candles/{symbol}/{timeframe}`
    Candles,
    /// `/streamer/candles?symbols=...`
    CandlesBatch,
    /// `/streamer/status`
    Status,
    /// `/streamer/available`
    Available,
    /// `/streamer/health`
    Health,
    /// `/streamer/ticks/{symbol}`
    Ticks,
    /// `/streamer/symbols/{symbol}`
    Symbol,
    /// `/metrics`
    Metrics,
    /// `/streamer/stream` (server-sent events)
    Stream,
    /// `/streamer/ws` (WebSocket)
    WebSocket,
    /// The chart page and its assets
    Page,
    /// Anything else.
    Other,
}

const ENDPOINTS: [(Endpoint, &str); 12] = [
    (Endpoint::Candles, "candles"),
    (Endpoint::CandlesBatch, "candles_batch"),
    (Endpoint::Status, "status"),
    (Endpoint::Available, "available"),
    (Endpoint::Health, "health"),
    (Endpoint::Ticks, "ticks"),
    (Endpoint::Symbol, "symbols"),
    (Endpoint::Metrics, "metrics"),
    (Endpoint::Stream, "stream"),
    (Endpoint::WebSocket, "websocket"),
    (Endpoint::Page, "page"),
    (Endpoint::Other, "other"),
];

/// Statuses the shim answers with; anything else is counted as the last slot, `other`.
const STATUSES: [u16; 17] = [
    101, 200, 304, 400, 401, 404, 405, 408, 413, 414, 421, 426, 431, 500, 503, 505, 0,
];

/// The replies the server makes itself, without (or instead of) the handler's answer.
const SERVER_REPLIES: [ErrorCode; 9] = [
    ErrorCode::BadRequest,
    ErrorCode::RequestTimeout,
    ErrorCode::BodyTooLarge,
    ErrorCode::UriTooLong,
    ErrorCode::HeadersTooLarge,
    ErrorCode::VersionNotSupported,
    ErrorCode::TooManyConnections,
    ErrorCode::ServerBusy,
    ErrorCode::Internal,
];

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 1.0,
];

/// All counters.
#[derive(Debug)]
pub struct Metrics {
    requests: [[AtomicU64; STATUSES.len()]; ENDPOINTS.len()],
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
    /// Answers sent gzipped, and their bytes before and after.
    gzip_answers: AtomicU64,
    gzip_bytes_in: AtomicU64,
    gzip_bytes_out: AtomicU64,
    /// The server's own replies, by [`SERVER_REPLIES`].
    replies: [AtomicU64; SERVER_REPLIES.len()],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
            gzip_answers: AtomicU64::new(0),
            gzip_bytes_in: AtomicU64::new(0),
            gzip_bytes_out: AtomicU64::new(0),
            replies: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Metrics {
    /// Counts one answered request.
    pub fn record(&self, endpoint: Endpoint, status: u16, took: Duration) {
        let e = ENDPOINTS
            .iter()
            .position(|(x, _)| *x == endpoint)
            .unwrap_or(ENDPOINTS.len() - 1);
        let s = STATUSES
            .iter()
            .position(|&x| x == status)
            .unwrap_or(STATUSES.len() - 1);
        // Relaxed everywhere: independent statistics, read only for display.
        self.requests[e][s].fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        if let Some(b) = BUCKETS.iter().position(|&le| secs <= le) {
            self.buckets[b].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Counts one reply the server made itself (a malformed or slow head, a full server, a
    /// handler that failed). Codes the server never makes are not counted.
    pub fn record_reply(&self, code: ErrorCode) {
        if let Some(i) = SERVER_REPLIES.iter().position(|&c| c == code) {
            // Relaxed: independent statistics, as above.
            self.replies[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one answer sent gzipped, `before` bytes as JSON and `after` compressed.
    pub fn record_gzip(&self, before: usize, after: usize) {
        // Relaxed: independent statistics, as above.
        self.gzip_answers.fetch_add(1, Ordering::Relaxed);
        self.gzip_bytes_in
            .fetch_add(before as u64, Ordering::Relaxed);
        self.gzip_bytes_out
            .fetch_add(after as u64, Ordering::Relaxed);
    }

    /// Writes the request metrics. The loads are Relaxed like the increments: each counter
    /// is read on its own, and a scrape may see some of them a request ahead of others, as
    /// Prometheus expects of counters.
    pub fn render(&self, e: &mut Exposition) {
        e.family(
            "mtf_shim_requests_total",
            "counter",
            "HTTP requests answered, by endpoint and status.",
        );
        for (i, (_, name)) in ENDPOINTS.iter().enumerate() {
            for (k, status) in STATUSES.iter().enumerate() {
                let n = self.requests[i][k].load(Ordering::Relaxed);
                if n > 0 {
                    let status = match status {
                        0 => "other".to_owned(),
                        s => s.to_string(),
                    };
                    e.sample(&[("endpoint", name), ("status", &status)], n);
                }
            }
        }
        let name = "mtf_shim_request_duration_seconds";
        e.family(
            name,
            "histogram",
            "Time from request head parsed to response built.",
        );
        let mut cumulative = 0;
        for (b, le) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[b].load(Ordering::Relaxed);
            e.line(&format!("{name}_bucket{{le=\"{le}\"}} {cumulative}"));
        }
        let count = self.count.load(Ordering::Relaxed);
        e.line(&format!("{name}_bucket{{le=\"+Inf\"}} {count}"));
        e.line(&format!(
            "{name}_sum {}",
            self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9
        ));
        e.line(&format!("{name}_count {count}"));
        e.family(
            "mtf_shim_server_replies_total",
            "counter",
            "Replies the server made itself, by error_code: heads it could not read or that came \
             too slowly, connections over the cap, answers over the byte budget, handler failures.",
        );
        for (i, code) in SERVER_REPLIES.iter().enumerate() {
            e.sample(
                &[("code", code.as_str())],
                self.replies[i].load(Ordering::Relaxed),
            );
        }
        e.family(
            "mtf_shim_gzip_answers_total",
            "counter",
            "Answers sent gzipped (Accept-Encoding: gzip, body over 1 KiB).",
        )
        .sample(&[], self.gzip_answers.load(Ordering::Relaxed));
        e.family(
            "mtf_shim_gzip_bytes_total",
            "counter",
            "Bytes of the gzipped answers, before (json) and after (gzip) compression.",
        )
        .sample(
            &[("form", "json")],
            self.gzip_bytes_in.load(Ordering::Relaxed),
        )
        .sample(
            &[("form", "gzip")],
            self.gzip_bytes_out.load(Ordering::Relaxed),
        );
    }
}

/// Prometheus text exposition, one family at a time: [`family`](Self::family) always writes
/// the family's `# HELP` and `# TYPE`, so no series can go out without them.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
    /// The family whose samples are being written.
    family: String,
}

impl Exposition {
    /// Starts the family `name` of `kind` (`counter`, `gauge`, `histogram`).
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        self.family = name.to_owned();
        self
    }

    /// One sample of the current family, with `labels` (values escaped as the format says).
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl std::fmt::Display) -> &mut Self {
        self.out.push_str(&self.family);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{k}=\"{v}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }

    /// A line written as it is (the `_bucket`, `_sum` and `_count` series of a histogram).
    fn line(&mut self, text: &str) {
        self.out.push_str(text);
        self.out.push('\n');
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// The segment's metrics: the reader's retries, the writer's liveness, generation, heartbeat,
/// every counter, and the candles each ring holds.
pub fn render_segment(e: &mut Exposition, reader: Option<&Reader>) {
    let Some(reader) = reader else {
        return;
    };
    let st = reader.status();
    e.family(
        "mtf_shim_reader_retries_total",
        "counter",
        "Failed seqlock read attempts (retried).",
    )
    .sample(&[], reader.retries());
    e.family("mtf_streamer_up", "gauge", "1 while the writer is alive.")
        .sample(&[], u8::from(st.liveness == Liveness::Alive));
    e.family(
        "mtf_streamer_generation",
        "gauge",
        "Writer starts on this segment (1 for a new one).",
    )
    .sample(&[], st.generation);
    e.family(
        "mtf_streamer_heartbeat_age_seconds",
        "gauge",
        "Age of the writer's last heartbeat.",
    )
    .sample(&[], st.heartbeat_age.as_secs_f64());
    for c in Counter::ALL {
        e.family(
            &format!("mtf_streamer_{c}_total"),
            "counter",
            &format!("The writer's {c} counter (docs/LAYOUT.md)."),
        )
        .sample(&[], st.counters.get(c));
    }
    e.family(
        "mtf_streamer_candles_buffered",
        "gauge",
        "Candles a ring holds: closed ones and the forming one.",
    );
    for ring in reader.rings() {
        if let Ok(s) = ring.stats() {
            let tf = ring.timeframe().to_string();
            e.sample(&[("symbol", ring.symbol()), ("timeframe", &tf)], s.buffered);
        }
    }
}
