//! What the push endpoints send, apart from how: a [`Watcher`] follows a set of rings and the
//! writer's status and turns their changes into [`Event`]s, which `sse.rs` frames as server-sent
//! events and `ws.rs` as WebSocket messages.
//!
//! - Each closed bar goes out exactly once, in order, as far as the ring still holds it when the
//!   watcher looks; a closed bar amended afterwards is not sent again.
//! - Forming-bar updates are coalesced: at most one per ring every `interval`, always the
//!   latest, and the last one of a burst is sent once the interval has passed.
//! - A `status` event goes out when the writer's liveness or feed state changes.
//! - The resume point is the open time of the newest closed bar sent, per ring, in subscription
//!   order: `1795849200,1795849140`. A client that reconnects with it (`Last-Event-ID`) is sent
//!   the closed bars it missed first.
//!
//! Nothing is queued: the watcher reads the rings when it looks, so a slow client gets fewer
//! forming updates, never a growing backlog.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shm_core::{Candle, ChangeToken, FeedState, Liveness, Reader, Timeframe, WaitOutcome};

use super::cache::same_bits;
use super::json::write_candle;

/// The version of the events' JSON (`v`), shared by every transport that carries them: server-
/// sent events, WebSocket and NATS (docs/NATS.md).
pub const EVENT_VERSION: u64 = 1;

/// `interval_ms` when none is given.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);
/// The least `interval_ms` accepted.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// How often a stream with nothing to send writes a heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// The longest a watcher sleeps without looking at the writer's status.
const STATUS_LOOK: Duration = Duration::from_millis(250);
/// Closed bars one look sends per ring, at most: a client resuming far back (or a new
/// segment's whole history) gets its backlog in pieces, each written before the next is read,
/// so that a stream never holds a ring's whole history in memory at once.
pub const BACKLOG_CHUNK: usize = 256;

/// One ring a stream follows.
#[derive(Debug)]
struct Followed {
    symbol: String,
    timeframe: Timeframe,
    /// The ring's index in the reader the watcher last looked with.
    index: Option<usize>,
    /// Open time of the newest closed bar sent (or skipped, at the start).
    last_closed: i64,
    /// Closed bars the ring had when last looked at.
    head: u64,
    /// The forming candle sent last, and when.
    forming_sent: Option<Candle>,
    forming_sent_at: Option<Instant>,
}

/// Something to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A candle of one ring: a closed bar (`complete`), or the forming one.
    Candle {
        /// Which of the watcher's pairs it belongs to.
        pair: usize,
        /// The event's JSON.
        json: String,
        /// The resume point after this event, for closed bars.
        id: Option<String>,
    },
    /// The writer's liveness or feed state changed.
    Status(String),
}

/// The writer's state as streams report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shown {
    liveness: Option<Liveness>,
    feed: Option<FeedState>,
}

/// Follows rings and turns their changes into events.
#[derive(Debug)]
pub struct Watcher {
    rings: Vec<Followed>,
    interval: Duration,
    shown: Option<Shown>,
    /// The reader the indexes belong to.
    reader: Option<Arc<Reader>>,
}

/// The pairs a stream follows, validated against the segment by the endpoint.
pub type Pairs = Vec<(String, Timeframe)>;

impl Watcher {
    /// A watcher of `pairs`, starting now, or from `resume` (a `Last-Event-ID`) if it names
    /// one closed-bar time per pair.
    pub fn new(pairs: Pairs, interval: Duration, resume: Option<&str>) -> Watcher {
        let times: Option<Vec<i64>> = resume.and_then(|r| {
            let t: Result<Vec<i64>, _> = r.split(',').map(|x| x.trim().parse::<i64>()).collect();
            t.ok().filter(|t| t.len() == pairs.len())
        });
        let rings = pairs
            .into_iter()
            .enumerate()
            .map(|(i, (symbol, timeframe))| Followed {
                symbol,
                timeframe,
                index: None,
                // i64::MIN marks "start from now" until the first look sets it.
                last_closed: times.as_ref().map_or(i64::MIN, |t| t[i]),
                head: 0,
                forming_sent: None,
                forming_sent_at: None,
            })
            .collect();
        Watcher {
            rings,
            interval,
            shown: None,
            reader: None,
        }
    }

    /// The pairs followed, in order.
    pub fn pairs(&self) -> Pairs {
        self.rings
            .iter()
            .map(|f| (f.symbol.clone(), f.timeframe))
            .collect()
    }

    /// Follows `pairs` from now on: rings followed already keep their place (no closed bar is
    /// skipped or sent twice), new ones start after their newest closed bar.
    pub fn set_pairs(&mut self, pairs: Pairs, interval: Duration) {
        let mut old = std::mem::take(&mut self.rings);
        self.rings = Watcher::new(pairs, interval, None)
            .rings
            .into_iter()
            .map(|new| {
                match old
                    .iter()
                    .position(|f| f.symbol == new.symbol && f.timeframe == new.timeframe)
                {
                    Some(i) => old.swap_remove(i),
                    None => Followed {
                        // Looked up at the next poll, with the reader of that moment.
                        index: None,
                        ..new
                    },
                }
            })
            .collect();
        self.interval = interval;
        // New rings need their indexes: look them up again at the next poll.
        self.reader = None;
    }

    /// Looks at the rings and the writer with `reader` (the shim's current one), appends what
    /// changed to `out`, and returns when to look again at the latest.
    pub fn poll(&mut self, reader: Option<&Arc<Reader>>, out: &mut Vec<Event>) -> Instant {
        let now = Instant::now();
        let mut next = now + STATUS_LOOK;
        let Some(reader) = reader else {
            self.show(
                Shown {
                    liveness: None,
                    feed: None,
                },
                None,
                out,
            );
            self.reader = None;
            return next;
        };
        if !self.reader.as_ref().is_some_and(|r| Arc::ptr_eq(r, reader)) {
            // Another segment (or the first look): ring indexes are looked up again, and
            // positions start over; the times sent stay, so no bar goes out twice.
            for f in &mut self.rings {
                f.index = reader
                    .rings()
                    .find(|r| r.symbol() == f.symbol && r.timeframe() == f.timeframe)
                    .map(|r| r.index());
                f.head = 0;
            }
            self.reader = Some(Arc::clone(reader));
        }
        let status = reader.status();
        self.show(
            Shown {
                liveness: Some(status.liveness),
                feed: status.feed_state,
            },
            Some(&status),
            out,
        );
        let rings: Vec<_> = reader.rings().collect();
        let mut candles = Vec::new();
        let mut times: Vec<i64> = self.rings.iter().map(|f| f.last_closed).collect();
        for (k, f) in self.rings.iter_mut().enumerate() {
            let Some(ring) = f.index.and_then(|i| rings.get(i)) else {
                continue;
            };
            let Ok(stats) = ring.stats() else {
                continue;
            };
            if f.last_closed == i64::MIN {
                // A new stream starts after the newest closed bar.
                f.last_closed = match stats.closed_total {
                    0 => 0,
                    n => ring.closed_at(n - 1).ok().flatten().map_or(0, |c| c.time),
                };
                f.head = stats.closed_total;
                times[k] = f.last_closed;
            }
            if stats.closed_total != f.head {
                // Bars closed since the last look, or a first look after a resume or a new
                // segment (head 0), or a restart that moved the count back: read what the ring
                // holds past the last time sent, oldest first.
                let want = if f.head == 0 || stats.closed_total < f.head {
                    ring.capacity() as usize
                } else {
                    (stats.closed_total - f.head).min(u64::from(ring.capacity())) as usize
                };
                candles.clear();
                if ring.snapshot(want, &mut candles).is_ok() {
                    let mut sent = 0;
                    let mut whole = true;
                    for c in &candles {
                        if c.time <= f.last_closed || c.defect().is_some() {
                            continue;
                        }
                        if sent == BACKLOG_CHUNK {
                            whole = false;
                            break;
                        }
                        sent += 1;
                        f.last_closed = c.time;
                        times[k] = c.time;
                        out.push(Event::Candle {
                            pair: k,
                            json: candle_event(&f.symbol, f.timeframe, c),
                            id: Some(resume_id(&times)),
                        });
                    }
                    if whole {
                        f.head = stats.closed_total;
                    } else {
                        // More to send: the next look reads the ring again from the last time
                        // sent (head 0), at once, and the forming bar waits until the closed
                        // ones before it are out.
                        f.head = 0;
                        next = now;
                        continue;
                    }
                }
            }
            let Ok(Some(latest)) = ring.latest() else {
                continue;
            };
            if !latest.forming
                || latest.defect().is_some()
                || f.forming_sent.is_some_and(|s| same_bits(&s, &latest))
            {
                continue;
            }
            let due = f.forming_sent_at.map_or(now, |t| t + self.interval);
            if due <= now {
                out.push(Event::Candle {
                    pair: k,
                    json: candle_event(&f.symbol, f.timeframe, &latest),
                    id: None,
                });
                f.forming_sent = Some(latest);
                f.forming_sent_at = Some(now);
            } else {
                next = next.min(due);
            }
        }
        next
    }

    /// Appends a status event if what is shown changed.
    fn show(&mut self, now: Shown, status: Option<&shm_core::Status>, out: &mut Vec<Event>) {
        if self.shown == Some(now) {
            return;
        }
        self.shown = Some(now);
        let body = match (now.liveness, status) {
            (Some(l), Some(s)) => json!({
                "v": EVENT_VERSION,
                "type": "status",
                "running": l == Liveness::Alive,
                "liveness": l.as_str(),
                "feed_state": s.feed_state.map_or("unknown", |f| f.as_str()),
                "feed_kind": s.feed_kind.map_or("unknown", |k| k.as_str()),
                "last_update_ms": (s.last_update_ns / 1_000_000),
                "server_time_offset_seconds": s.server_time_offset_s,
                "writer_pid": s.writer_pid,
            }),
            _ => {
                json!({"v": EVENT_VERSION, "type": "status", "running": false, "liveness": "no_segment"})
            }
        };
        out.push(Event::Status(body.to_string()));
    }
}

/// The resume point: the newest closed-bar time sent, per ring, in subscription order.
fn resume_id(times: &[i64]) -> String {
    let times: Vec<String> = times.iter().map(|t| t.max(&0).to_string()).collect();
    times.join(",")
}

/// One candle event's JSON: the candle as `/streamer/candles` writes it, with its ring.
fn candle_event(symbol: &str, timeframe: Timeframe, c: &Candle) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("{\"v\":1,\"type\":\"candle\",\"symbol\":");
    out.push_str(&Value::String(symbol.to_owned()).to_string());
    out.push_str(",\"timeframe\":\"");
    out.push_str(timeframe.name());
    out.push_str("\",\"complete\":");
    out.push_str(if c.forming { "false" } else { "true" });
    out.push_str(",\"candle\":");
    write_candle(&mut out, c, false);
    out.push('}');
    out
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

/// Sleeps until `until`, waking early when the writer publishes a change after `since` (taken
/// before the last look, so that no change falls between the look and the sleep); never past
/// `until`, and never spinning when there is no writer.
pub fn wait(reader: Option<&Arc<Reader>>, since: Option<ChangeToken>, until: Instant) {
    let left = until.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return;
    }
    match (reader, since) {
        (Some(r), Some(since)) => {
            // A writer that is not publishing returns at once: sleep instead.
            if matches!(r.wait_for_change(since, left), WaitOutcome::WriterGone(_)) {
                std::thread::sleep(left.min(STATUS_LOOK));
            }
        }
        _ => std::thread::sleep(left.min(STATUS_LOOK)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shm_core::{Candle, Layout, SegmentPath, Writer};

    /// A segment that removes itself.
    struct Temp(SegmentPath);
    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = shm_core::remove_segment(&self.0);
        }
    }

    #[test]
    fn a_long_backlog_goes_out_in_chunks_in_order_and_once() {
        let seg =
            Temp(SegmentPath::named(&format!("mtf-test-backlog-{}", std::process::id())).unwrap());
        let mut layout = Layout::new();
        layout.add_ring("EURUSD", Timeframe::M1, 1000).unwrap();
        let mut w = Writer::create(&seg.0, &layout, &Default::default()).unwrap();
        let m1 = w.ring("EURUSD", Timeframe::M1).unwrap();
        for k in 1..=1000 {
            w.push_closed(m1, &Candle::flat(k * 60, 1.5));
        }
        w.heartbeat();
        w.set_running();
        let reader = Arc::new(shm_core::Reader::open(&seg.0).unwrap());
        // A client resuming from the very start.
        let mut watcher = Watcher::new(
            vec![("EURUSD".to_owned(), Timeframe::M1)],
            Duration::from_millis(100),
            Some("0"),
        );
        let mut times = Vec::new();
        let mut events = Vec::new();
        for _ in 0..10 {
            watcher.poll(Some(&reader), &mut events);
            let closed: Vec<i64> = events
                .drain(..)
                .filter_map(|e| match e {
                    Event::Candle {
                        id: Some(_), json, ..
                    } => {
                        let v: Value = serde_json::from_str(&json).unwrap();
                        v["candle"]["time"].as_i64()
                    }
                    _ => None,
                })
                .collect();
            assert!(
                closed.len() <= BACKLOG_CHUNK,
                "{} in one look",
                closed.len()
            );
            times.extend(closed);
        }
        let want: Vec<i64> = (1..=1000).map(|k| k * 60).collect();
        assert_eq!(times, want, "every bar, in order, once");
    }
}
