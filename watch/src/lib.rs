//! Follows a segment's rings, ticks and writer status, and says what changed: the one
//! watcher behind every push transport (the HTTP API's server-sent events and WebSocket in
//! `http-shim`, NATS in `nats-bridge`), each of which frames the [`Change`]s its own way.
//!
//! - Each closed bar goes out exactly once, in order, as far as the ring still holds it when the
//!   watcher looks; a closed bar amended afterwards is not sent again.
//! - Forming-bar updates are coalesced: at most one per ring every `interval`, always the
//!   latest, and the last one of a burst is sent once the interval has passed.
//! - A status change goes out when the writer's liveness or feed state changes.
//! - The resume point is the open time of the newest closed bar sent, per ring, in subscription
//!   order. A watcher started from one ([`Watcher::new`]) sends the closed bars missed first.
//!
//! Nothing is queued: the watcher reads the rings when it looks, so a slow client gets fewer
//! forming updates, never a growing backlog.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shm_core::{
    Candle, ChangeToken, FeedState, Liveness, Reader, Status, Tick, Timeframe, WaitOutcome,
};

/// The longest a watcher sleeps without looking at the writer's status.
const STATUS_LOOK: Duration = Duration::from_millis(250);
/// Closed bars one look sends over all rings, at most, when its user has room for them (the
/// HTTP API reserves it in its byte budget of answers): a client resuming far back (or a new
/// segment's whole history) gets its backlog in pieces, each written before the next is read,
/// so that a stream never holds a ring's whole history in memory at once.
pub const BACKLOG_CHUNK: usize = 256;
/// Closed bars one look sends over all rings without such room: what any stream may hold
/// unbudgeted, part of its fixed cost per connection (docs/DESIGN.md, "Bounded answers").
pub const LOOK_CLOSED: usize = 16;

/// The first position in `lo..hi` whose closed bar opens after `time` (`hi` if none): times
/// rise with positions, so a binary search, where a slot with no candle (lapped while
/// searching, or dropped at a restart) takes the time of the next slot that has one.
pub fn first_after(ring: &shm_core::RingReader<'_>, lo: u64, hi: u64, time: i64) -> u64 {
    let (mut lo, mut hi) = (lo, hi);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let mut probe = mid;
        let newer = loop {
            if probe == hi {
                // Nothing readable from `mid` up: the answer is at or before `mid`.
                break true;
            }
            match ring.closed_at(probe) {
                Ok(Some(c)) => break c.time > time,
                // Unreadable: search from the low end rather than guess.
                Err(_) => return lo,
                Ok(None) => probe += 1,
            }
        };
        if newer {
            hi = mid;
        } else {
            lo = probe + 1;
        }
    }
    lo
}

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

/// What changed, for a transport to frame (server-sent events, WebSocket, NATS).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A candle of one ring: a closed bar (`forming` false: each once, in order), or the
    /// forming one (coalesced: at most one per ring and interval).
    Candle {
        /// Which of the watcher's pairs it belongs to ([`Watcher::pair`]).
        pair: usize,
        /// The candle.
        candle: Candle,
        /// For a closed bar, the resume point after it: the open time of the newest closed bar
        /// sent per pair, in subscription order (never negative).
        resume: Option<Vec<i64>>,
    },
    /// The writer's liveness or feed state changed: its status, or `None` when there is no
    /// segment to read.
    Status(Option<Box<Status>>),
    /// A symbol's newest ticks since the last such change (`follow_ticks`).
    Ticks {
        /// The symbol.
        symbol: String,
        /// The ticks, oldest first, at most [`TICK_EVENT_MAX`].
        ticks: Vec<Tick>,
        /// Ticks since the last change left out to keep the stream bounded.
        skipped: u64,
    },
}

/// The writer's state as streams report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shown {
    liveness: Option<Liveness>,
    feed: Option<FeedState>,
}

/// Ticks one tick event carries at most: a stream that asks for ticks gets, per symbol and
/// interval, the newest ticks since its last event, and the number it skipped, never a
/// backlog (every tick is in `/streamer/ticks`, NATS and the segment itself).
pub const TICK_EVENT_MAX: usize = 32;

/// One symbol whose ticks a stream follows.
#[derive(Debug)]
struct FollowedTicks {
    symbol: String,
    /// The next position to send (`None` until the first look, which starts at the head).
    next: Option<u64>,
    sent_at: Option<Instant>,
}

/// Follows rings and turns their changes into events.
#[derive(Debug)]
pub struct Watcher {
    rings: Vec<Followed>,
    ticks: Vec<FollowedTicks>,
    interval: Duration,
    shown: Option<Shown>,
    /// The reader the indexes belong to.
    reader: Option<Arc<Reader>>,
    /// The last look left closed bars unsent for want of room.
    behind: bool,
}

/// The pairs a stream follows, validated against the segment by its user.
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
            ticks: Vec::new(),
            interval,
            shown: None,
            reader: None,
            // A resuming stream starts with its backlog.
            behind: times.is_some(),
        }
    }

    /// Also follows the ticks of the symbols of its pairs (or stops, with `false`): an event
    /// per symbol at most every interval, with the ticks since the last one.
    pub fn follow_ticks(&mut self, on: bool) {
        let mut symbols: Vec<String> = Vec::new();
        if on {
            for f in &self.rings {
                if !symbols.contains(&f.symbol) {
                    symbols.push(f.symbol.clone());
                }
            }
        }
        let mut old = std::mem::take(&mut self.ticks);
        self.ticks = symbols
            .into_iter()
            .map(|symbol| match old.iter().position(|t| t.symbol == symbol) {
                Some(i) => old.swap_remove(i),
                None => FollowedTicks {
                    symbol,
                    next: None,
                    sent_at: None,
                },
            })
            .collect();
    }

    /// Whether the last look stopped short of the closed bars it could have sent: the next
    /// look may send a whole chunk, if the stream can pay for it (the HTTP API budgets it: `http_shim::api::push::look_bytes`).
    pub fn behind(&self) -> bool {
        self.behind
    }

    /// How many rings it follows.
    pub fn ring_count(&self) -> usize {
        self.rings.len()
    }

    /// Pair `k`: its symbol and timeframe.
    pub fn pair(&self, k: usize) -> Option<(&str, Timeframe)> {
        self.rings.get(k).map(|f| (f.symbol.as_str(), f.timeframe))
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
    /// changed to `out`, with at most `max_closed` closed bars over all rings, and returns when
    /// to look again at the latest.
    pub fn poll(
        &mut self,
        reader: Option<&Arc<Reader>>,
        out: &mut Vec<Change>,
        max_closed: usize,
    ) -> Instant {
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
        let mut room = max_closed;
        self.behind = false;
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
                // Bars closed since the last look, or a first look after a resume, a new
                // segment (head 0) or a restart that moved the count back: send what the ring
                // holds past the last time sent, oldest first, a slot at a time, at most
                // `max_closed` bars per look over all rings.
                let total = stats.closed_total;
                let oldest = total.saturating_sub(u64::from(ring.capacity()));
                let mut at = if f.head == 0 || f.head > total || f.head < oldest {
                    first_after(ring, oldest, total, f.last_closed)
                } else {
                    f.head
                };
                while at < total && room > 0 {
                    match ring.closed_at(at) {
                        Ok(Some(c)) if c.time > f.last_closed => {
                            room -= 1;
                            f.last_closed = c.time;
                            times[k] = c.time;
                            out.push(Change::Candle {
                                pair: k,
                                candle: c,
                                resume: Some(times.iter().map(|&t| t.max(0)).collect()),
                            });
                        }
                        // Sent already, lapped or dropped at a restart: nothing to send.
                        Ok(_) => {}
                        // A slot being rewritten past the retries, or stored data the reader
                        // refuses: looked at again next time, not skipped.
                        Err(_) => break,
                    }
                    at += 1;
                }
                f.head = at;
                if at < total {
                    // More to send: the next look goes on at once (unless this one stopped at
                    // an unreadable slot), and the forming bar waits until the closed ones
                    // before it are out.
                    if room == 0 {
                        self.behind = true;
                        next = now;
                    }
                    continue;
                }
            }
            let Ok(Some(latest)) = ring.latest() else {
                continue;
            };
            if !latest.forming
                || latest.defect().is_some()
                || f.forming_sent.is_some_and(|s| s.same_bits(&latest))
            {
                continue;
            }
            let due = f.forming_sent_at.map_or(now, |t| t + self.interval);
            if due <= now {
                out.push(Change::Candle {
                    pair: k,
                    candle: latest,
                    resume: None,
                });
                f.forming_sent = Some(latest);
                f.forming_sent_at = Some(now);
            } else {
                next = next.min(due);
            }
        }
        self.poll_ticks(reader, now, &mut next, out);
        next
    }

    /// The tick events that are due.
    fn poll_ticks(
        &mut self,
        reader: &Reader,
        now: Instant,
        next: &mut Instant,
        out: &mut Vec<Change>,
    ) {
        let mut ticks = Vec::with_capacity(TICK_EVENT_MAX);
        for f in &mut self.ticks {
            let Some(ring) = reader.ticks(&f.symbol) else {
                continue;
            };
            let head = ring.total();
            let from = *f.next.get_or_insert(head);
            if head <= from {
                // Nothing new; or a new segment whose ring starts again: follow it from now.
                f.next = Some(head);
                continue;
            }
            let due = f.sent_at.map_or(now, |t| t + self.interval);
            if due > now {
                *next = (*next).min(due);
                continue;
            }
            // The newest ticks since the last event, at most TICK_EVENT_MAX of them.
            let start = from.max(head.saturating_sub(TICK_EVENT_MAX as u64));
            let Ok(span) = ring.read_from(start, TICK_EVENT_MAX, &mut ticks) else {
                continue;
            };
            let skipped = span.first - from.min(span.first);
            f.next = Some(span.first + ticks.len() as u64);
            f.sent_at = Some(now);
            out.push(Change::Ticks {
                symbol: f.symbol.clone(),
                ticks: std::mem::replace(&mut ticks, Vec::with_capacity(TICK_EVENT_MAX)),
                skipped,
            });
        }
    }

    /// Appends a status change if what is shown changed.
    fn show(&mut self, now: Shown, status: Option<&Status>, out: &mut Vec<Change>) {
        if self.shown == Some(now) {
            return;
        }
        self.shown = Some(now);
        out.push(Change::Status(status.map(|s| Box::new(s.clone()))));
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
    use shm_core::{Layout, SegmentPath, Writer};

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
            watcher.poll(Some(&reader), &mut events, BACKLOG_CHUNK);
            let closed: Vec<i64> = events
                .drain(..)
                .filter_map(|e| match e {
                    Change::Candle {
                        resume: Some(_),
                        candle,
                        ..
                    } => Some(candle.time),
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
        assert!(!watcher.behind(), "all sent");
    }

    #[test]
    fn a_look_without_a_reservation_sends_a_few_bars_over_all_rings_and_says_it_is_behind() {
        let seg = Temp(
            SegmentPath::named(&format!("mtf-test-backlog-few-{}", std::process::id())).unwrap(),
        );
        let mut layout = Layout::new();
        layout.add_ring("EURUSD", Timeframe::M1, 100).unwrap();
        layout.add_ring("GBPUSD", Timeframe::M1, 100).unwrap();
        let mut w = Writer::create(&seg.0, &layout, &Default::default()).unwrap();
        for symbol in ["EURUSD", "GBPUSD"] {
            let ring = w.ring(symbol, Timeframe::M1).unwrap();
            for k in 1..=100 {
                w.push_closed(ring, &Candle::flat(k * 60, 1.5));
            }
        }
        w.heartbeat();
        w.set_running();
        let reader = Arc::new(shm_core::Reader::open(&seg.0).unwrap());
        let pairs = vec![
            ("EURUSD".to_owned(), Timeframe::M1),
            ("GBPUSD".to_owned(), Timeframe::M1),
        ];
        // Resuming both rings from their 50th bar.
        let mut watcher = Watcher::new(pairs, Duration::from_millis(100), Some("3000,3000"));
        assert!(watcher.behind(), "a resuming stream starts behind");
        let mut events = Vec::new();
        let mut sent = 0;
        let mut looks = 0;
        loop {
            looks += 1;
            watcher.poll(Some(&reader), &mut events, LOOK_CLOSED);
            let closed = events
                .drain(..)
                .filter(|e| {
                    matches!(
                        e,
                        Change::Candle {
                            resume: Some(_),
                            ..
                        }
                    )
                })
                .count();
            assert!(closed <= LOOK_CLOSED, "{closed} in one look");
            sent += closed;
            if !watcher.behind() {
                break;
            }
            assert!(looks < 100, "never caught up");
        }
        assert_eq!(sent, 100, "50 bars of each ring, once");
        assert_eq!(looks, 100usize.div_ceil(LOOK_CLOSED));
    }
}
