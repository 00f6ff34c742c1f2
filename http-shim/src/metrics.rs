//! Request counters and a latency histogram, lock-free, rendered in Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
    /// `/metrics`
    Metrics,
    /// Anything else.
    Other,
}

const ENDPOINTS: [(Endpoint, &str); 7] = [
    (Endpoint::Candles, "candles"),
    (Endpoint::CandlesBatch, "candles_batch"),
    (Endpoint::Status, "status"),
    (Endpoint::Available, "available"),
    (Endpoint::Health, "health"),
    (Endpoint::Metrics, "metrics"),
    (Endpoint::Other, "other"),
];

/// Statuses the shim answers with; anything else is counted as the last slot.
const STATUSES: [u16; 12] = [200, 400, 401, 404, 405, 408, 413, 414, 431, 503, 505, 500];

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
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
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

    /// Appends the request metrics in Prometheus text format. The loads are Relaxed like the
    /// increments: each counter is read on its own, and a scrape may see some of them a
    /// request ahead of others, as Prometheus expects of counters.
    pub fn render(&self, out: &mut String) {
        out.push_str(
            "# HELP mtf_shim_requests_total HTTP requests answered, by endpoint and status.\n",
        );
        out.push_str("# TYPE mtf_shim_requests_total counter\n");
        for (e, (_, name)) in ENDPOINTS.iter().enumerate() {
            for (s, status) in STATUSES.iter().enumerate() {
                let n = self.requests[e][s].load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "mtf_shim_requests_total{{endpoint=\"{name}\",status=\"{status}\"}} {n}"
                    );
                }
            }
        }
        out.push_str("# HELP mtf_shim_request_duration_seconds Time from request head parsed to response built.\n");
        out.push_str("# TYPE mtf_shim_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (b, le) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[b].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "mtf_shim_request_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "mtf_shim_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "mtf_shim_request_duration_seconds_sum {}",
            self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9
        );
        let _ = writeln!(out, "mtf_shim_request_duration_seconds_count {count}");
    }
}
