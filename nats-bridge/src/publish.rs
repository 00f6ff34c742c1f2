//! The origin side: publishes every candle change of a segment to NATS, and answers the
//! layout and history requests of mirrors.
//!
//! The publisher is one more **reader** of the segment, in threads of its own; the writer does
//! not know it exists. So a NATS server that is slow, down or unreachable cannot slow the
//! writer's tick path, by construction: the worst it can do is make the publisher fall behind,
//! and the rings hold what it has not sent yet.
//!
//! - A watcher thread follows every ring with the same [`Watcher`] as the HTTP push endpoints
//!   (each closed bar once, forming bars coalesced per ring every `interval`), woken by the
//!   writer's futex, and hands events to the NATS task through a bounded queue of
//!   [`QUEUE`] events. When the queue is full, forming updates and status changes are
//!   dropped (and counted); a closed bar waits for room, so none is lost while the ring
//!   holds it.
//! - The NATS task (a small tokio runtime in its own thread) publishes them, republishes the
//!   status every second as the origin's heartbeat, and answers requests. `async-nats`
//!   reconnects by itself, with backoff; while it is away, the queue fills and the rules
//!   above apply.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mtf_watch::{Change, Watcher};
use shm_core::history::StreamCache;
use shm_core::{Reader, SegmentPath, Timeframe};
use tokio::sync::mpsc;

use crate::limit::{Client, Refusal, RequestLimit, CLIENT_PER_SECOND, QUEUED, TOTAL_PER_SECOND};
use crate::subjects::{MirrorId, RequestKind, Subjects};
use crate::ticks::{
    symbol_reply, terminal_of, tick_history_reply, tick_request_cost, TickFollower,
};
use crate::wire::{
    CandleEvent, HistoryReply, HistoryRequest, LayoutReply, StatusEvent, TickHistoryRequest,
    WireCandle, WireRing, HISTORY_PAGE, VERSION,
};
use crate::{BridgeError, NatsSettings};

/// Events waiting for the NATS task, at most.
pub const QUEUE: usize = 4096;

/// How often the origin's status goes out when nothing changes: the mirrors' proof that the
/// origin lives.
pub const STATUS_EVERY: Duration = Duration::from_secs(1);

/// What the publisher needs.
#[derive(Debug, Clone)]
pub struct PublishConfig {
    /// The NATS server and how to log in to it.
    pub nats: NatsSettings,
    /// The segment to publish.
    pub segment: SegmentPath,
    /// Its name in the subjects (the segment's name on the origin).
    pub name: String,
    /// Forming updates per ring, at most one every this long.
    pub interval: Duration,
    /// The segment's history store, if it has one: mirrors copy it, paged (`crate::store`).
    pub history: Option<std::path::PathBuf>,
}

/// Counts of a publisher. Relaxed throughout: independent statistics, read only for display.
#[derive(Debug, Default)]
pub struct PublishCounts {
    /// Messages handed to the NATS client.
    pub published: AtomicU64,
    /// Forming updates and status changes dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Requests of mirrors dropped unanswered by the request limit (`limit.rs`).
    pub refused_requests: AtomicU64,
}

/// A running publisher; dropping it stops it.
#[derive(Debug)]
pub struct Publisher {
    stop: Arc<AtomicBool>,
    counts: Arc<PublishCounts>,
    watch: Option<JoinHandle<()>>,
    nats: Option<JoinHandle<()>>,
}

/// One message for the NATS task.
#[derive(Debug)]
struct Outgoing {
    subject: String,
    payload: String,
    /// A status message: kept as the latest, republished every second.
    status: bool,
}

impl Publisher {
    /// Starts publishing `config.segment`, which must exist (the streamer starts this after
    /// creating it). The NATS server need not be up: the client connects when it can.
    pub fn start(config: PublishConfig) -> Result<Publisher, BridgeError> {
        let reader = Arc::new(Reader::open(&config.segment).map_err(BridgeError::Open)?);
        let subjects = Subjects::new(&config.name);
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(PublishCounts::default());
        let (tx, rx) = mpsc::channel::<Outgoing>(QUEUE);
        let watch = {
            let (stop, counts, subjects) =
                (Arc::clone(&stop), Arc::clone(&counts), subjects.clone());
            let (reader, interval) = (Arc::clone(&reader), config.interval);
            std::thread::Builder::new()
                .name("mtf-nats-watch".into())
                .spawn(move || watch(reader, subjects, interval, &tx, &stop, &counts))
                .map_err(BridgeError::Thread)?
        };
        let nats = {
            let (stop, counts, reader) =
                (Arc::clone(&stop), Arc::clone(&counts), Arc::clone(&reader));
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(BridgeError::Thread)?;
            std::thread::Builder::new()
                .name("mtf-nats".into())
                .spawn(move || {
                    // Whatever the client is doing (connecting, TLS, a publish waiting for
                    // room while the server is away), the stop flag ends the task: the
                    // pending future is dropped, which cancels it.
                    runtime.block_on(async {
                        tokio::select! {
                            () = serve(config, subjects, reader, rx, Arc::clone(&stop), counts) => {}
                            () = crate::stopped(&stop) => {}
                        }
                    });
                })
                .map_err(BridgeError::Thread)?
        };
        Ok(Publisher {
            stop,
            counts,
            watch: Some(watch),
            nats: Some(nats),
        })
    }

    /// Messages published, and forming updates dropped for a full queue.
    pub fn counts(&self) -> (u64, u64) {
        // Relaxed: statistics.
        (
            self.counts.published.load(Ordering::Relaxed),
            self.counts.dropped.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // Relaxed: a stop flag, no data with it; both threads look at it at least every
        // 250 ms.
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.watch.take() {
            let _ = t.join();
        }
        if let Some(t) = self.nats.take() {
            let _ = t.join();
        }
    }
}

/// The watcher thread: every ring of the segment, into the queue.
fn watch(
    mut reader: Arc<Reader>,
    subjects: Subjects,
    interval: Duration,
    tx: &mpsc::Sender<Outgoing>,
    stop: &AtomicBool,
    counts: &PublishCounts,
) {
    let pairs: Vec<(String, Timeframe)> = reader
        .rings()
        .map(|r| (r.symbol().to_owned(), r.timeframe()))
        .collect();
    let mut watcher = Watcher::new(pairs.clone(), interval, None);
    let mut ticks = TickFollower::new(&reader);
    let mut batches = Vec::new();
    let mut events = Vec::new();
    // Relaxed: a stop flag.
    while !stop.load(Ordering::Relaxed) {
        if reader.needs_reopen() {
            if let Ok(fresh) = reader.reopen() {
                reader = Arc::new(fresh);
                ticks = TickFollower::new(&reader);
            }
        }
        // Every tick once: a batch waits for room in the queue, as a closed bar does.
        ticks.poll(&reader, &subjects, &mut batches);
        for (subject, payload) in batches.drain(..) {
            let out = Outgoing {
                subject,
                payload,
                status: false,
            };
            if tx.blocking_send(out).is_err() {
                return;
            }
        }
        let since = reader.changes();
        // A chunk a look: the events then wait in the bounded queue, never more.
        let next = watcher.poll(Some(&reader), &mut events, mtf_watch::BACKLOG_CHUNK);
        for e in events.drain(..) {
            let (out, must) = match e {
                Change::Candle {
                    pair,
                    candle,
                    resume,
                } => {
                    let (symbol, tf) = &pairs[pair];
                    (
                        Outgoing {
                            subject: subjects.candles(symbol, *tf),
                            payload: CandleEvent::json(symbol, *tf, &candle),
                            status: false,
                        },
                        // A closed bar carries its resume point; it must not be dropped.
                        resume.is_some(),
                    )
                }
                Change::Status(status) => (
                    Outgoing {
                        subject: subjects.status(),
                        payload: StatusEvent::json(status.as_deref()),
                        status: true,
                    },
                    false,
                ),
                // This watcher follows no ticks (every tick goes out through `TickFollower`).
                Change::Ticks { .. } => continue,
            };
            if must {
                // Waits for room: only this thread waits, never the writer.
                if tx.blocking_send(out).is_err() {
                    return;
                }
            } else if tx.try_send(out).is_err() {
                counts.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        mtf_watch::wait(Some(&reader), Some(since), next);
    }
}

/// The NATS task: connect, publish what the watcher sends, the status every second, and
/// answer requests.
async fn serve(
    config: PublishConfig,
    subjects: Subjects,
    mut reader: Arc<Reader>,
    mut rx: mpsc::Receiver<Outgoing>,
    stop: Arc<AtomicBool>,
    counts: Arc<PublishCounts>,
) {
    let options = match config.nats.options("mtf-streamer").await {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "mtf-streamer: NATS {}: {e}; candles are not published",
                config.nats.shown()
            );
            return;
        }
    };
    // Requests past the limit's rate are dropped without an answer; the client need not
    // hold more of them than a flood's first second.
    let options = options.subscription_capacity(QUEUED);
    let client = match options.connect(config.nats.url()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "mtf-streamer: NATS {}: {e}; candles are not published",
                config.nats.shown()
            );
            return;
        }
    };
    let Ok(mut requests) = client.subscribe(subjects.all_requests()).await else {
        eprintln!("mtf-streamer: NATS: could not subscribe to the request subjects");
        return;
    };
    // The store's streams are mapped once and kept (its files are the streamer's own: this
    // process's account is the one trusted).
    let mut store = config.history.as_ref().and_then(|dir| {
        let trust = shm_core::Trust::for_process().ok()?;
        Some(StreamCache::at(dir, trust))
    });
    let mut limit = RequestLimit::new(Instant::now());
    let mut last_status: Option<String> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut status_sent = Instant::now();
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(out) = out else { break };
                if out.status {
                    last_status = Some(out.payload.clone());
                    status_sent = Instant::now();
                }
                if client.publish(out.subject, out.payload.into()).await.is_ok() {
                    counts.published.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(msg) = requests.next() => {
                // A subject that is not a request of ours (`req.orders`, a bad id) is dropped.
                let Some(asked) = subjects.parse_request(&msg.subject) else {
                    // Relaxed: a statistic.
                    counts.refused_requests.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let (cost, body): (usize, Answer) = match asked.kind {
                    RequestKind::Layout => (reader.layout().rings().len(), |r, _, _| layout_reply(r)),
                    // An answer reads its page (and a binary search's few slots; a page of the
                    // store, the ring's closed bars once, a copy at memory speed).
                    RequestKind::History => (
                        serde_json::from_slice::<HistoryRequest>(&msg.payload)
                            .map_or(1, |r| r.limit.clamp(1, HISTORY_PAGE) + 32),
                        |r, s, p| history_reply(r, s, serde_json::from_slice(p).ok()),
                    ),
                    RequestKind::Ticks => (
                        tick_request_cost(
                            serde_json::from_slice::<TickHistoryRequest>(&msg.payload)
                                .ok()
                                .as_ref(),
                        ),
                        |r, s, p| tick_history_reply(r, s, serde_json::from_slice(p).ok()),
                    ),
                    // One record: about as much to read as a page of candles' tenth.
                    RequestKind::Symbol => {
                        (100, |r, _, p| symbol_reply(r, serde_json::from_slice(p).ok()))
                    }
                };
                let whom = asked.mirror.as_ref();
                if let Some(reply) = admitted(&subjects, &mut limit, whom, msg.reply, cost, &counts) {
                    let _ = client.publish(reply, body(&reader, store.as_mut(), &msg.payload).into()).await;
                }
            }
            _ = tick.tick() => {
                // Relaxed: a stop flag.
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if reader.needs_reopen() {
                    if let Ok(fresh) = reader.reopen() {
                        reader = Arc::new(fresh);
                    }
                }
                if status_sent.elapsed() >= STATUS_EVERY {
                    if let Some(s) = &last_status {
                        let _ = client.publish(subjects.status(), s.clone().into()).await;
                    }
                    status_sent = Instant::now();
                }
            }
        }
    }
    // What was published reaches the server before the process goes, if it can soon.
    if client.connection_state() == async_nats::connection::State::Connected {
        let _ = tokio::time::timeout(Duration::from_millis(500), client.flush()).await;
    }
}

/// Builds the answer to a request from the segment, its store and the request's payload.
type Answer = fn(&Reader, Option<&mut StreamCache>, &[u8]) -> String;

/// The reply subject of a request within the limit (see `limit.rs`); a refusal is counted,
/// and said once a minute at most. A request that names a mirror is answered only into that
/// mirror's inbox, and none into the origin's own subjects (issue 40).
fn admitted(
    subjects: &Subjects,
    limit: &mut RequestLimit,
    mirror: Option<&MirrorId>,
    reply: Option<async_nats::Subject>,
    cost: usize,
    counts: &PublishCounts,
) -> Option<async_nats::Subject> {
    let reply = reply?;
    let aimed_elsewhere = mirror.is_some_and(|id| !id.owns_reply(&reply));
    if subjects.owns(&reply) || aimed_elsewhere {
        // A reply-to inside the origin's own subjects would have it publish an answer as one
        // of its candle, tick or status messages; one outside the named mirror's inbox would
        // have it answer into another mirror's.
        // Relaxed: a statistic.
        counts.refused_requests.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    let client = match mirror {
        Some(id) => Client::Mirror(id.as_str()),
        None => Client::Reply(&reply),
    };
    let now = Instant::now();
    match limit.admit(client, cost, now) {
        Ok(()) => Some(reply),
        Err(why) => {
            // Relaxed: a statistic.
            counts.refused_requests.fetch_add(1, Ordering::Relaxed);
            if limit.should_say(now) {
                let whom = match why {
                    Refusal::Client => {
                        format!(
                            "one client asked for more than {CLIENT_PER_SECOND} candles a second"
                        )
                    }
                    Refusal::Total => {
                        format!(
                            "all clients asked for more than {TOTAL_PER_SECOND} candles a second"
                        )
                    }
                };
                eprintln!(
                    "mtf-streamer: NATS: requests dropped unanswered: {whom} ({} so far)",
                    limit.refused()
                );
            }
            None
        }
    }
}

fn layout_reply(reader: &Reader) -> String {
    let rings = reader
        .rings()
        .map(|r| WireRing {
            symbol: r.symbol().to_owned(),
            timeframe: r.timeframe().name().to_owned(),
            capacity: r.capacity(),
        })
        .collect();
    serde_json::to_string(&LayoutReply {
        v: VERSION,
        rings,
        tick_depth: reader.layout().tick_depth(),
        terminal: terminal_of(reader),
    })
    .unwrap_or_default()
}

fn history_reply(
    reader: &Reader,
    store: Option<&mut StreamCache>,
    req: Option<HistoryRequest>,
) -> String {
    let error = |message: &str| serde_json::json!({"v": VERSION, "error": message}).to_string();
    let Some(req) = req else {
        return error("a history request is {\"v\":1,\"symbol\":…,\"timeframe\":…,\"before\":null,\"limit\":N}");
    };
    if req.v != VERSION {
        return error("unsupported version");
    }
    let Ok(tf) = req.timeframe.parse::<Timeframe>() else {
        return error("unknown timeframe");
    };
    if let Some(after) = req.after {
        return match crate::store::bars_after(reader, store, &req, tf, after) {
            Ok(page) => serde_json::to_string(&page).unwrap_or_default(),
            Err(why) => error(why),
        };
    }
    let Some(ring) = reader.ring(&req.symbol, tf) else {
        return error("no such ring");
    };
    // Only the page is read, never the whole ring: an answer costs what it holds (its cost
    // to the request limit is the same, see `history_cost`).
    let keep = req.limit.min(HISTORY_PAGE);
    let mut closed = Vec::with_capacity(keep);
    let forming = match req.before {
        // The newest page and the forming bar, from one snapshot: no bar that closes during
        // the answer falls between them.
        None => match ring.snapshot(keep, &mut closed) {
            Ok(f) => f,
            Err(_) => return error("ring busy"),
        },
        // An older page: the bars before `before`, found by binary search, read slot by slot
        // (a slot lapped meanwhile is left out; the page stays in order).
        Some(before) => {
            let Ok(stats) = ring.stats() else {
                return error("ring busy");
            };
            let total = stats.closed_total;
            let oldest = total.saturating_sub(u64::from(ring.capacity()));
            let end = mtf_watch::first_after(&ring, oldest, total, before.saturating_sub(1));
            for p in end.saturating_sub(keep as u64).max(oldest)..end {
                match ring.closed_at(p) {
                    Ok(Some(c)) if c.time < before => closed.push(c),
                    Ok(_) => {}
                    Err(_) => return error("ring busy"),
                }
            }
            None
        }
    };
    let page: Vec<WireCandle> = closed
        .iter()
        .filter(|c| c.defect().is_none())
        .map(WireCandle::from)
        .collect();
    serde_json::to_string(&HistoryReply {
        v: VERSION,
        answers: serde_json::to_value(&req).ok(),
        closed: page,
        forming: forming.as_ref().map(WireCandle::from),
    })
    .unwrap_or_default()
}
