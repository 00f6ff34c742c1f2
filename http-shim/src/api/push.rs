//! The push endpoints' own parts: their settings, the byte budget of what one look can send,
//! and their counts and cap for `/metrics`. What changed comes from `mtf_watch::Watcher`;
//! `push_events.rs` writes it as JSON, which `stream.rs` frames as server-sent events and
//! WebSocket messages.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Exposition;

/// The version of the events' JSON (`v`), shared by every transport that carries them: server-
/// sent events, WebSocket and NATS (docs/NATS.md).
pub const EVENT_VERSION: u64 = 1;

/// `interval_ms` when none is given.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);
/// The least `interval_ms` accepted.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// How often a stream with nothing to send writes a heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// The most bytes one event of a stream of `pairs` rings can take once framed: a candle's JSON
/// (a symbol of at most 31 plain characters, four prices and four integers at their longest)
/// and a resume id of one time per pair; SSE framing included. An upper bound, not an
/// estimate: a reservation of `look_bytes` is never overrun.
pub fn event_bytes(pairs: usize) -> usize {
    512 + 21 * pairs
}

/// The most bytes one look can produce, with at most `max_closed` closed bars: those, a
/// forming bar per ring and a status event.
pub fn look_bytes(pairs: usize, max_closed: usize) -> usize {
    (max_closed + pairs + 1) * event_bytes(pairs)
}

/// Counts of the push endpoints, for `/metrics`, and the cap on streams. Relaxed throughout:
/// `open` is a count compared with a cap (see [`StreamSlot::take`]) and the others are
/// statistics; none publishes other memory.
#[derive(Debug, Default)]
pub struct PushCounts {
    /// Streams open now (SSE and WebSocket).
    pub open: AtomicUsize,
    /// Streams opened since start.
    pub opened: AtomicU64,
    /// Events sent.
    pub events: AtomicU64,
    /// Clients dropped because their socket stayed full.
    pub dropped_slow: AtomicU64,
    /// Clients refused because the cap was reached.
    pub refused: AtomicU64,
}

/// A stream's place under the cap; dropping it frees the place.
#[derive(Debug)]
pub struct StreamSlot(Arc<PushCounts>);

impl StreamSlot {
    /// A place, if fewer than `cap` streams are open.
    pub fn take(counts: &Arc<PushCounts>, cap: usize) -> Option<StreamSlot> {
        // Relaxed: a count compared with a cap; it publishes no other memory. The
        // compare-exchange loop makes the cap exact.
        let mut open = counts.open.load(Ordering::Relaxed);
        loop {
            if open >= cap {
                counts.refused.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            match counts.open.compare_exchange_weak(
                open,
                open + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => open = now,
            }
        }
        counts.opened.fetch_add(1, Ordering::Relaxed);
        Some(StreamSlot(Arc::clone(counts)))
    }

    /// Counts `n` events sent.
    pub fn sent(&self, n: usize) {
        self.0.events.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts this client as dropped for a full socket.
    pub fn dropped_slow(&self) {
        self.0.dropped_slow.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PushCounts {
    /// Writes The push streams' counts (see `api::push`).
    pub fn render(&self, e: &mut Exposition) {
        // Relaxed loads: independent statistics, as the increments.
        e.family(
            "mtf_shim_streams_open",
            "gauge",
            "Push streams open now (server-sent events and WebSocket).",
        )
        .sample(&[], self.open.load(Ordering::Relaxed));
        e.family(
            "mtf_shim_streams_total",
            "counter",
            "Push streams opened, and refused because --max-streams were open.",
        )
        .sample(
            &[("outcome", "opened")],
            self.opened.load(Ordering::Relaxed),
        )
        .sample(
            &[("outcome", "refused")],
            self.refused.load(Ordering::Relaxed),
        );
        e.family(
            "mtf_shim_stream_events_total",
            "counter",
            "Events sent on push streams (candles and status).",
        )
        .sample(&[], self.events.load(Ordering::Relaxed));
        e.family(
            "mtf_shim_stream_clients_dropped_total",
            "counter",
            "Stream clients disconnected because their socket stayed full past the write timeout.",
        )
        .sample(&[], self.dropped_slow.load(Ordering::Relaxed));
    }
}
