//! `mtf-mirror`: rebuilds an origin's segment on this host from NATS, through shm-core's
//! writer, so that every local reader (the monitor, the shim, the Python package) reads it
//! unchanged and in nanoseconds.
//!
//! - **Start and catch-up.** It subscribes first, then asks the origin for its layout and,
//!   ring by ring, the closed bars newer than its own newest (paged, newest pages first);
//!   candle messages that arrive meanwhile wait in the subscription and are applied after.
//!   A bar already held (by open time) is never written twice, so a restart of the mirror, of
//!   NATS or of the origin leaves neither a gap (as far as the origin's rings reach) nor a
//!   duplicate. It syncs again after every reconnection.
//! - **Honest status.** The segment says `feed_kind: mirror`. The mirror heartbeats only while
//!   the link is up and the origin's status (sent every second) says its writer is alive; so
//!   when the origin or the link goes, readers see `feed_state: disconnected` at once and the
//!   writer `stalled` a second later: stale data never passes as live.

mod ask;
mod history;
mod ticks;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::connection::State;
use futures_util::StreamExt;
use shm_core::{
    Candle, FeedKind, FeedState, Layout, Liveness, RingId, SegmentPath, Timeframe, Writer,
    WriterOptions,
};

use crate::subjects::{MirrorId, RequestKind, Subjects};
use crate::wire::{
    CandleMessage, HistoryReply, HistoryRequest, LayoutReply, StatusMessage, HISTORY_PAGE, VERSION,
};
use crate::{BridgeError, NatsSettings};
use ask::{request, request_raw};

/// The origin counts as gone when no status came for this long (it sends one every second).
pub const ORIGIN_SILENT: Duration = Duration::from_secs(3);

/// How long one request to the origin may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// How far a candle may open after the origin's clock (this host's clock plus the origin's
/// server-time offset) before the mirror refuses it: the hosts' clocks may differ by this much.
pub const CLOCK_TOLERANCE_S: i64 = 120;

/// The most a mirror accepts from an origin's layout, unless told otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Rings.
    pub rings: usize,
    /// Bytes of the whole segment.
    pub bytes: usize,
}

impl Default for Budget {
    /// 4,096 rings and 256 MiB: about 300 symbols at every timeframe with the streamer's
    /// default depths fit many times over.
    fn default() -> Budget {
        Budget {
            rings: 4096,
            bytes: 256 << 20,
        }
    }
}

/// What the mirror needs.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// The NATS server and how to log in to it.
    pub nats: NatsSettings,
    /// The origin segment's name, as its streamer publishes it.
    pub source: String,
    /// The local segment to write.
    pub segment: SegmentPath,
    /// How the local segment is created.
    pub options: WriterOptions,
    /// The most of an origin's layout the mirror builds.
    pub budget: Budget,
    /// The id this mirror asks under (`--nats-mirror-id`): its requests name it, and its
    /// client's inbox is `_INBOX.<ID>` (docs/NATS.md).
    pub id: Option<MirrorId>,
    /// Where the mirror keeps its own history store (`--history-dir`, `--no-history`): every
    /// bar and tick it mirrors, from the rings' depth at its first sync on.
    pub history: shm_core::history::HistoryPlace,
}

/// The mirror's state between messages.
struct Mirror {
    config: MirrorConfig,
    writer: Option<Writer>,
    rings: HashMap<(String, Timeframe), RingId>,
    /// When the origin's last status came, and whether it said alive.
    origin_seen: Option<Instant>,
    origin_alive: bool,
    origin_feed: Option<FeedState>,
    /// Messages refused, and the kinds already logged (each kind is said once).
    refused: u64,
    refused_kinds: Vec<&'static str>,
    /// The origin's server-time offset, from its last status.
    offset_s: i64,
    /// The next sync builds the segment anew (it held bars the origin never had).
    rebuild: bool,
    /// Per symbol, the origin position of the next tick expected.
    tick_next: HashMap<String, u64>,
    /// When the symbols' information and the terminal were last asked for.
    records_synced: Option<Instant>,
    /// The origin's terminal, from its last layout answer.
    terminal: Option<shm_core::TerminalInfo>,
    /// The copy of the origin's history store into the mirror's, while it runs.
    store_copy: Option<history::StoreCopy>,
}

/// How often a synced mirror asks the origin for its symbols' information and terminal again
/// (the origin's own records change at most each minute).
const RECORDS_EVERY: Duration = Duration::from_secs(60);

/// Runs the mirror until `stop` is set.
pub fn run(config: MirrorConfig, stop: &AtomicBool) -> Result<(), BridgeError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BridgeError::Thread)?;
    // The stop flag ends the mirror whatever the client is doing (see `crate::stopped`).
    runtime.block_on(async {
        tokio::select! {
            r = mirror(config, stop) => r,
            () = crate::stopped(stop) => Ok(()),
        }
    })
}

async fn mirror(config: MirrorConfig, stop: &AtomicBool) -> Result<(), BridgeError> {
    let mut options = config
        .nats
        .options("mtf-mirror")
        .await
        .map_err(BridgeError::NatsConfig)?;
    if let Some(id) = &config.id {
        options = options.custom_inbox_prefix(id.inbox());
    }
    let client = options
        .connect(config.nats.url())
        .await
        .map_err(BridgeError::Connect)?;
    let subjects = Subjects::for_mirror(&config.source, config.id.clone());
    let mut candles = client
        .subscribe(subjects.all_candles())
        .await
        .map_err(BridgeError::Subscribe)?;
    let mut status = client
        .subscribe(subjects.status())
        .await
        .map_err(BridgeError::Subscribe)?;
    let mut m = Mirror {
        config,
        writer: None,
        rings: HashMap::new(),
        origin_seen: None,
        origin_alive: false,
        origin_feed: None,
        refused: 0,
        refused_kinds: Vec::new(),
        offset_s: 0,
        rebuild: false,
        tick_next: HashMap::new(),
        records_synced: None,
        terminal: None,
        store_copy: None,
    };
    let mut tick_batches = client
        .subscribe(subjects.all_ticks())
        .await
        .map_err(BridgeError::Subscribe)?;
    let mut synced = false;
    // The page of the history store's copy being asked for (`history.rs`).
    let mut copying: Option<tokio::task::JoinHandle<history::Answer>> = None;
    let mut last_sync_try: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            Some(msg) = candles.next() => {
                // Before the first sync the origin's history answers for these.
                if synced {
                    m.apply_candle(&msg.payload);
                }
            }
            Some(msg) = tick_batches.next() => {
                if synced && m.apply_ticks(&msg.payload) == ticks::Applied::Gap {
                    // Ticks were missed (the link or this mirror fell behind the origin's
                    // ring): catch up from the ring at the next sync.
                    synced = false;
                }
            }
            Some(msg) = status.next() => m.apply_status(&msg.payload),
            answer = copy_answer(&mut copying) => {
                copying = None;
                m.take_copy(answer);
            }
            _ = tick.tick() => {
                // Relaxed: the signal handler's flag carries no data with it.
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let connected = client.connection_state() == State::Connected;
                if !connected || !m.origin_is_alive() {
                    // Candle messages are ignored from now until the next sync, which catches
                    // up from the origin's rings: after an outage of the link or of the
                    // origin, a message that arrives before that sync could be newer than bars
                    // lost meanwhile, and writing it first would leave a gap behind it.
                    synced = false;
                }
                let due = last_sync_try.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
                if connected && !synced && due && m.origin_is_alive() {
                    last_sync_try = Some(Instant::now());
                    match m.sync(&client, &subjects).await {
                        Ok(()) => {
                            mtf_cli::say(format_args!(
                                "mtf-mirror: caught up with {}: {} rings",
                                m.config.source,
                                m.rings.len()
                            ));
                            synced = true;
                        }
                        Err(e) => eprintln!("mtf-mirror: catching up from the origin failed ({e}); retrying"),
                    }
                }
                if synced && m.records_synced.is_some_and(|t| t.elapsed() >= RECORDS_EVERY) {
                    let terminal = m.terminal.clone();
                    if let Err(e) = m.sync_records(&client, &subjects, terminal.as_ref()).await {
                        eprintln!("mtf-mirror: refreshing the symbols' information failed ({e})");
                    }
                }
                if synced && copying.is_none() {
                    copying = m.ask_copy(&client, &subjects);
                }
                m.beat(connected && synced);
            }
        }
    }
    Ok(())
}

/// The answer to the copy's page being asked for; never ready while none is. A task that
/// ended without one (it cannot panic; a runtime shutting down) answers a timeout.
async fn copy_answer(
    copying: &mut Option<tokio::task::JoinHandle<history::Answer>>,
) -> history::Answer {
    match copying.as_mut() {
        Some(task) => task
            .await
            .unwrap_or(history::Answer::Bars(Err(BridgeError::RequestTimedOut))),
        None => std::future::pending().await,
    }
}

impl Mirror {
    fn origin_is_alive(&self) -> bool {
        self.origin_alive
            && self
                .origin_seen
                .is_some_and(|t| t.elapsed() < ORIGIN_SILENT)
    }

    /// Says what the readers should see: live data only while the link is up and the origin's
    /// writer alive; otherwise `disconnected`, and no heartbeat, so that the writer reads as
    /// stalled within a second.
    fn beat(&mut self, linked: bool) {
        let live = linked && self.origin_is_alive();
        let feed = self.origin_feed;
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        if live {
            w.set_feed_state(feed.unwrap_or(FeedState::Live));
            w.heartbeat();
        } else if w.feed_state() != Some(FeedState::Disconnected) {
            w.set_feed_state(FeedState::Disconnected);
            w.notify();
        }
    }

    /// Counts a refused message (in the segment's `rejected_messages` too), and says the
    /// first of each kind.
    fn refuse(&mut self, what: &'static str, e: impl std::fmt::Display) {
        self.refused += 1;
        if let Some(w) = self.writer.as_mut() {
            w.add(shm_core::Counter::RejectedMessages, 1);
        }
        if !self.refused_kinds.contains(&what) {
            self.refused_kinds.push(what);
            eprintln!(
                "mtf-mirror: refused a {what} message ({e}); later ones of this kind are counted \
                 only (rejected_messages)"
            );
        }
    }

    /// Whether `c`, of timeframe `tf`, is a candle the origin can have sent: the writer's
    /// rules, the start of a bar, and not opening (nor, closed, ending) later than the
    /// origin's clock allows.
    fn plausible(&self, tf: Timeframe, c: &Candle) -> Result<(), &'static str> {
        if c.defect().is_some() {
            return Err("a candle that breaks the writer's rules");
        }
        if tf.bar_start(c.time) != c.time {
            return Err("a candle that does not open at the start of a bar");
        }
        let now = (shm_core::now_ns() / 1_000_000_000) as i64 + self.offset_s + CLOCK_TOLERANCE_S;
        let ends = if c.forming {
            c.time
        } else {
            tf.next_bar_start(c.time)
        };
        if ends > now {
            return Err("a candle later than the origin's clock");
        }
        Ok(())
    }

    fn apply_status(&mut self, payload: &[u8]) {
        let s: StatusMessage = match serde_json::from_slice(payload) {
            Ok(s) => s,
            Err(e) => return self.refuse("status", e),
        };
        if s.v != VERSION {
            return self.refuse("status", BridgeError::Version { found: s.v });
        }
        if !shm_core::SERVER_OFFSET_RANGE.contains(&s.server_time_offset_seconds) {
            return self.refuse("status", "a server-time offset outside UTC-12..UTC+14");
        }
        self.offset_s = s.server_time_offset_seconds;
        self.origin_seen = Some(Instant::now());
        self.origin_alive = s.liveness == Liveness::Alive.as_str();
        // A state this build does not know is not live data.
        self.origin_feed = s
            .feed_state
            .as_deref()
            .map(|f| FeedState::from_name(f).unwrap_or(FeedState::Disconnected));
        if let Some(w) = self.writer.as_mut() {
            w.set_server_time_offset(s.server_time_offset_seconds);
        }
    }

    fn apply_candle(&mut self, payload: &[u8]) {
        let m: CandleMessage = match serde_json::from_slice(payload) {
            Ok(m) => m,
            Err(e) => return self.refuse("candle", e),
        };
        if m.v != VERSION {
            return self.refuse("candle", BridgeError::Version { found: m.v });
        }
        let Ok(tf) = m.timeframe.parse::<Timeframe>() else {
            return self.refuse("candle", "unknown timeframe");
        };
        let candle = Candle::from(&m.candle);
        if let Err(why) = self.plausible(tf, &candle) {
            return self.refuse("candle", why);
        }
        let Some(&ring) = self.rings.get(&(m.symbol, tf)) else {
            // A ring the origin's layout did not have at the last sync: the next sync (after
            // a restart of the origin with another layout) brings it.
            return;
        };
        if let Some(w) = self.writer.as_mut() {
            apply(w, ring, &candle);
            w.notify();
        }
    }

    /// Catches up from the origin: its layout (a new local segment if it changed), then every
    /// ring's closed bars newer than ours, and its forming bar.
    async fn sync(
        &mut self,
        client: &async_nats::Client,
        subjects: &Subjects,
    ) -> Result<(), BridgeError> {
        // The layout names what it is (rings, depth): a history answer sent here instead does
        // not parse as one.
        let layout: LayoutReply = request_raw(
            client,
            subjects.request(RequestKind::Layout),
            b"{}".to_vec(),
        )
        .await?;
        if layout.v != VERSION {
            return Err(BridgeError::Version { found: layout.v });
        }
        if layout.rings.len() > self.config.budget.rings {
            return Err(BridgeError::OverBudget {
                what: "rings",
                found: layout.rings.len() as u64,
                most: self.config.budget.rings as u64,
            });
        }
        let mut wanted = Layout::new();
        for r in &layout.rings {
            let tf = r
                .timeframe
                .parse::<Timeframe>()
                .map_err(BridgeError::Timeframe)?;
            wanted
                .add_ring(&r.symbol, tf, r.capacity)
                .map_err(BridgeError::Layout)?;
        }
        wanted
            .set_tick_depth(layout.tick_depth)
            .map_err(BridgeError::Layout)?;
        if wanted.segment_bytes() > self.config.budget.bytes {
            return Err(BridgeError::OverBudget {
                what: "bytes",
                found: wanted.segment_bytes() as u64,
                most: self.config.budget.bytes as u64,
            });
        }
        let capacities: HashMap<(String, Timeframe), usize> = layout
            .rings
            .iter()
            .filter_map(|r| {
                let tf = r.timeframe.parse::<Timeframe>().ok()?;
                Some(((r.symbol.clone(), tf), r.capacity as usize))
            })
            .collect();
        if self.rebuild || self.writer.as_ref().is_none_or(|w| *w.layout() != wanted) {
            // Drop the old writer first: its lock must be free for the new one.
            self.writer = None;
            let options = WriterOptions {
                start_clean: self.config.options.start_clean || self.rebuild,
                ..self.config.options.clone()
            };
            self.rebuild = false;
            let mut w = Writer::create(&self.config.segment, &wanted, &options)
                .map_err(BridgeError::Create)?;
            w.set_feed_kind(FeedKind::Mirror);
            w.set_feed_state(FeedState::Backfilling);
            self.open_history(&mut w, &wanted, options.start_clean);
            self.rings = layout
                .rings
                .iter()
                .filter_map(|r| {
                    let tf = r.timeframe.parse::<Timeframe>().ok()?;
                    Some(((r.symbol.clone(), tf), w.ring(&r.symbol, tf)?))
                })
                .collect();
            self.writer = Some(w);
        }
        let rings: Vec<((String, Timeframe), RingId)> =
            self.rings.iter().map(|(k, v)| (k.clone(), *v)).collect();
        for ((symbol, tf), ring) in rings {
            let newest = self
                .writer
                .as_ref()
                .and_then(|w| w.last_closed(ring))
                .map_or(i64::MIN, |c| c.time);
            // Newest page first, back until we reach what we hold or the origin's oldest. Every
            // page must go back in time, and no more pages than the ring can hold are taken:
            // an origin answering the same page for ever is refused, not followed.
            let capacity = capacities.get(&(symbol.clone(), tf)).copied().unwrap_or(0);
            let most_pages = capacity / HISTORY_PAGE + 2;
            let mut pages: Vec<HistoryReply> = Vec::new();
            let mut before: Option<i64> = None;
            loop {
                if pages.len() >= most_pages {
                    return Err(BridgeError::BadHistory {
                        ring: format!("{symbol} {tf}"),
                        why: "more pages than the ring holds",
                    });
                }
                let req = HistoryRequest {
                    v: VERSION,
                    symbol: symbol.clone(),
                    timeframe: tf.name().to_owned(),
                    before,
                    after: None,
                    limit: HISTORY_PAGE,
                    nonce: crate::wire::nonce(),
                };
                let page: HistoryReply =
                    request(client, subjects.request(RequestKind::History), &req).await?;
                if let Err(why) = self.check_page(tf, &page, before) {
                    return Err(BridgeError::BadHistory {
                        ring: format!("{symbol} {tf}"),
                        why,
                    });
                }
                if before.is_none() && self.holds_what_the_origin_never_had(ring, &page) {
                    // Kept from a forged or damaged run: rebuilt from the origin, not kept.
                    self.rebuild = true;
                    return Err(BridgeError::AheadOfOrigin {
                        ring: format!("{symbol} {tf}"),
                    });
                }
                let oldest = page.closed.first().map(|c| c.time);
                let full = page.closed.len() >= HISTORY_PAGE;
                pages.push(page);
                match oldest {
                    Some(t) if full && t > newest => before = Some(t),
                    _ => break,
                }
            }
            let Some(w) = self.writer.as_mut() else {
                break;
            };
            let forming = pages.first().and_then(|p| p.forming);
            for page in pages.iter().rev() {
                for c in &page.closed {
                    apply(w, ring, &Candle::from(c));
                }
            }
            if let Some(f) = forming {
                apply(w, ring, &Candle::from(&f));
            }
        }
        self.terminal = layout.terminal.clone();
        self.sync_ticks(client, subjects, layout.tick_depth).await?;
        self.sync_records(client, subjects, layout.terminal.as_ref())
            .await?;
        if let Some(w) = self.writer.as_mut() {
            w.set_running();
            w.notify();
        }
        Ok(())
    }
}

impl Mirror {
    /// What is wrong with a page of the origin's history, if anything: its candles must be
    /// plausible, closed, strictly increasing, older than `before`, and at most a page; the
    /// forming bar (first page only) plausible and after them.
    fn check_page(
        &self,
        tf: Timeframe,
        page: &HistoryReply,
        before: Option<i64>,
    ) -> Result<(), &'static str> {
        if page.closed.len() > HISTORY_PAGE {
            return Err("a page longer than asked for");
        }
        let mut previous = i64::MIN;
        for c in &page.closed {
            let c = Candle::from(c);
            if c.forming {
                return Err("a forming candle among the closed ones");
            }
            self.plausible(tf, &c)?;
            if c.time <= previous || before.is_some_and(|b| c.time >= b) {
                return Err("candles out of order, or not before the page asked for");
            }
            previous = c.time;
        }
        if let Some(f) = &page.forming {
            let f = Candle::from(f);
            if before.is_some() || !f.forming || f.time <= previous {
                return Err("a forming candle where none can be");
            }
            self.plausible(tf, &f)?;
        }
        Ok(())
    }

    /// Whether the mirror holds a closed bar newer than anything the origin has (its newest
    /// page): a bar of a forged or damaged run, which must not outlive a restart.
    fn holds_what_the_origin_never_had(&self, ring: RingId, newest_page: &HistoryReply) -> bool {
        let Some(held) = self.writer.as_ref().and_then(|w| w.last_closed(ring)) else {
            return false;
        };
        let origin = newest_page
            .forming
            .as_ref()
            .map(|f| f.time)
            .or_else(|| newest_page.closed.last().map(|c| c.time));
        origin.is_some_and(|o| held.time > o)
    }
}

/// Writes one candle of the origin into `ring`, keeping the ring's order: a closed bar newer
/// than the newest held is appended (ending a forming bar of the same or an earlier time); a
/// forming bar newer than the newest closed one replaces the forming bar. Anything else is
/// already held, and is not written twice.
fn apply(w: &mut Writer, ring: RingId, c: &Candle) {
    let newest = w.last_closed(ring).map_or(i64::MIN, |l| l.time);
    if c.time <= newest {
        return;
    }
    if c.forming {
        w.update_forming(ring, c);
    } else {
        if w.forming(ring).is_some_and(|f| f.time <= c.time) {
            w.clear_forming(ring);
        }
        w.push_closed(ring, c);
    }
}
