//! The single writer: publishing candles, ticks and the writer's state into a segment.
//! Creating, warm-restarting or replacing the segment is `create.rs`.

mod create;
mod history;
mod ticks;

use create::Held;

pub use create::remove_segment;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::candle::Candle;
use crate::error::{io_err, CreateError};
use crate::history::HistoryWriter;
use crate::layout::{self, hdr, sym, Layout, Placement};
use crate::lock::WriterLock;
use crate::mem::{MappingMut, MemMut};
use crate::process::{self};
use crate::record::{Block, Parts};
use crate::ring::{RingRef, Slot};
use crate::status::{Counter, FeedKind, FeedState, WriterState};
use crate::tickring::TickRingRef;
use crate::wake::Waker;
use crate::{now_ns, Timeframe};

/// How far the wall clock must go back between two heartbeats to count as a jump: more than
/// the scheduling noise between the two clock reads, less than any step a human would notice.
const CLOCK_JUMP_NS: i128 = 1_000_000_000;

/// Options for [`Writer::create`].
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Permission bits of a newly created segment file, e.g. `0o640` to let a group read.
    /// Applied at creation, whatever the umask. Default `0o600`. Bits that let the group or
    /// others write are refused ([`CreateError::InsecureMode`]).
    pub mode: u32,
    /// Build a new, empty segment even if one with the same layout exists (which is then
    /// replaced, and its readers told so), instead of a warm restart that keeps its candles.
    /// Default `false`.
    pub start_clean: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            mode: 0o600,
            start_clean: false,
        }
    }
}

/// How [`Writer::create`] found the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// There was no segment; a new one was created.
    Fresh,
    /// A segment with the same layout was reused with its candles (generation + 1).
    /// `repaired` counts write sections a killed writer had left open; what they held was
    /// dropped, never served (see `docs/LAYOUT.md`, "Torn records").
    Warm {
        /// Open write sections found and closed.
        repaired: u32,
    },
    /// A segment with another layout (or an unreadable file) was replaced by a new file.
    Replaced,
}

/// A ring of the writer's segment. Ids are only meaningful to the writer that made them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RingId(u32);

/// A symbol of the writer's segment. Ids are only meaningful to the writer that made them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SymbolId(u32);

/// The one process that publishes candles into a segment.
///
/// It holds the segment's exclusive lock until it is dropped; dropping it marks the segment
/// `stopped` and leaves the file in place, so readers keep the last data.
///
/// Timestamps it writes (ring changes, tick receipt, last update) come from a clock refreshed
/// by [`heartbeat`](Self::heartbeat), which keeps clock reads off the per-tick path. Call it at
/// least every 250 ms, from the loop that publishes, so that a stuck loop shows as stalled.
///
/// ```
/// use shm_core::{Candle, Layout, Reader, SegmentPath, Timeframe, Writer, WriterOptions};
///
/// # let dir = std::env::temp_dir().join(format!("shm-core-doc-writer-{}", std::process::id()));
/// let path = SegmentPath::at(&dir);
/// let mut layout = Layout::new();
/// layout.add_ring("EURUSD", Timeframe::M1, 100)?;
/// let mut writer = Writer::create(&path, &layout, &WriterOptions::default())?;
/// let m1 = writer.ring("EURUSD", Timeframe::M1).unwrap();
/// writer.update_forming(m1, &Candle::flat(60, 1.1));
/// writer.roll(m1, &Candle::flat(60, 1.1), Some(&Candle::flat(120, 1.2)));
/// writer.set_running();
///
/// let reader = Reader::open(&path)?;
/// let mut candles = Vec::new();
/// reader.ring("EURUSD", Timeframe::M1).unwrap().read_last(10, &mut candles)?;
/// assert_eq!(candles.len(), 2);
/// assert!(!candles[0].forming && candles[1].forming);
/// # drop(writer); shm_core::remove_segment(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Writer {
    /// The segment, mapped read-write, with its word view.
    map: MappingMut,
    /// The segment file.
    _file: File,
    /// The exclusive writer lock, held for the writer's whole life.
    _lock: WriterLock,
    /// Wakes the readers sleeping on the header's wake word (see `wake.rs`).
    wake: Waker,
    path: PathBuf,
    layout: Layout,
    /// One entry per directory entry, validated against the mapping's length at creation.
    rings: Vec<RingRef>,
    /// One tick ring per symbol, validated likewise.
    tick_rings: Vec<TickRingRef>,
    /// The newest tick time (ms) of each symbol's tick ring, which every later tick follows.
    newest_tick_msc: Vec<Option<i64>>,
    /// Each tick ring's `head` and its slot (`head % capacity`), kept so that the tick path
    /// has no division.
    tick_cursor: Vec<(u64, usize)>,
    /// One information record per symbol.
    infos: Vec<Block>,
    /// The terminal record.
    terminal: Block,
    symbols_offset: usize,
    generation: u64,
    start: Start,
    /// The clock of the last `heartbeat()`, in unix ns.
    now_ns: u64,
    /// The boot-time clock of the last `heartbeat()`, where the platform has one.
    boot_ns: Option<u64>,
    /// Retries of the writer's reads of its own rings: always zero, as nothing races them.
    own_retries: AtomicU64,
    /// The history store, if one is attached (`history.rs`).
    history: Option<Box<HistoryWriter>>,
    /// The newest store error not yet taken by the caller.
    history_error: Option<crate::history::HistoryError>,
}

impl Writer {
    fn new(
        held: Held,
        map: MappingMut,
        path: &Path,
        layout: &Layout,
        p: &Placement,
        start: Start,
    ) -> Result<Writer, CreateError> {
        let rings = layout
            .rings()
            .iter()
            .zip(&p.ring_offsets)
            .map(|(r, &base)| RingRef::new(base, r.capacity, map.mem()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                io_err("map", path)(io::Error::other("mapping shorter than the layout"))
            })?;
        let Parts {
            tick_rings,
            infos,
            terminal,
        } = p.parts(layout, map.mem()).ok_or_else(|| {
            io_err("map", path)(io::Error::other("mapping shorter than the layout"))
        })?;
        let tick_cursor = tick_rings
            .iter()
            .map(|r| {
                let head = r.counters(map.mem()).1;
                (head, (head % r.capacity()) as usize)
            })
            .collect();
        // Relaxed: this process wrote it, or holds the lock of the process that did.
        let generation = map.mem().load(hdr::GENERATION, Ordering::Relaxed);
        // Relaxed: a flag for readers, set once per file and never cleared; a reader that
        // loads it before this store looks at `last_update_ns` meanwhile (see `wake.rs`).
        map.mem().store(hdr::WAKE_KIND, 1, Ordering::Relaxed);
        let boot_ns = crate::time::boot_ns();
        // Relaxed: as in `heartbeat`.
        map.mem().store(
            hdr::HEARTBEAT_BOOT_NS,
            boot_ns.unwrap_or(0),
            Ordering::Relaxed,
        );
        Ok(Writer {
            map,
            _file: held.file,
            _lock: held.lock,
            wake: held.wake,
            path: path.to_owned(),
            layout: layout.clone(),
            rings,
            newest_tick_msc: vec![None; tick_rings.len()],
            tick_cursor,
            tick_rings,
            infos,
            terminal,
            symbols_offset: p.symbols_offset,
            generation,
            start,
            now_ns: now_ns(),
            boot_ns,
            own_retries: AtomicU64::new(0),
            history: None,
            history_error: None,
        })
    }

    /// The word view of the segment.
    #[inline(always)]
    fn mem(&self) -> &MemMut {
        self.map.mem()
    }

    /// Stamps this process into the header of a reused segment.
    fn begin_generation(&mut self, generation: u64) {
        let h = |off, v| self.mem().store(off, v, Ordering::Relaxed);
        h(hdr::WRITER_STATE, WriterState::Initializing as u64);
        h(hdr::WRITER_PID, u64::from(std::process::id()));
        h(hdr::WRITER_START_NS, self.now_ns);
        h(hdr::HEARTBEAT_NS, self.now_ns);
        h(hdr::HEARTBEAT_BOOT_NS, self.boot_ns.unwrap_or(0));
        h(hdr::FEED_STATE, FeedState::Starting as u64);
        let me = process::this_process();
        h(hdr::WRITER_PIDNS, me.pidns);
        h(hdr::WRITER_START_TICKS, me.start_ticks);
        // Release: a reader that sees the new generation sees the pid and start time above.
        self.mem()
            .store(hdr::GENERATION, generation, Ordering::Release);
        self.generation = generation;
    }

    /// How the segment was found at creation.
    pub fn start(&self) -> Start {
        self.start
    }

    /// This writer's generation (1 for a fresh segment, +1 at every restart).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The segment file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The layout being written.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The ring of `symbol` at `timeframe`, if the layout has it.
    pub fn ring(&self, symbol: &str, timeframe: Timeframe) -> Option<RingId> {
        let s = self.layout.symbols().position(|s| s == symbol)? as u32;
        let i = self
            .layout
            .rings()
            .iter()
            .position(|r| r.symbol_index == s && r.timeframe == timeframe)?;
        Some(RingId(i as u32))
    }

    /// The symbol named `symbol`, if the layout has it.
    pub fn symbol(&self, symbol: &str) -> Option<SymbolId> {
        Some(SymbolId(
            self.layout.symbols().position(|s| s == symbol)? as u32
        ))
    }

    fn r(&self, id: RingId) -> &RingRef {
        // Panics only for an id of another writer with more rings: a programming error.
        &self.rings[id.0 as usize]
    }

    fn touched(&self) {
        // Relaxed: an independent timestamp word.
        self.mem()
            .store(hdr::LAST_UPDATE_NS, self.now_ns, Ordering::Relaxed);
    }

    /// Sets (or replaces) the forming candle of a ring. The candle is stored flagged forming.
    #[inline]
    pub fn update_forming(&mut self, ring: RingId, candle: &Candle) {
        self.r(ring)
            .set_forming(self.mem(), Some(candle), self.now_ns);
        self.touched();
    }

    /// Removes the forming candle of a ring.
    pub fn clear_forming(&mut self, ring: RingId) {
        self.r(ring).set_forming(self.mem(), None, self.now_ns);
        self.touched();
    }

    /// Appends a closed candle, leaving the forming candle as it is (for backfill) unless it
    /// does not open after the closed one, when it is removed.
    pub fn push_closed(&mut self, ring: RingId, candle: &Candle) {
        // A forming candle that does not open after the closed one cannot follow it: readers
        // would refuse the ring as out of order.
        let forming = self.forming(ring).filter(|f| f.time > candle.time);
        self.history_bar(ring, candle);
        self.r(ring)
            .push(self.mem(), candle, forming.as_ref(), self.now_ns);
        self.touched();
    }

    /// Closes the forming candle as `closed` and makes `next` the forming candle, as one step:
    /// a reader sees either the old forming candle or the closed one plus `next`, never both
    /// or neither.
    #[inline]
    pub fn roll(&mut self, ring: RingId, closed: &Candle, next: Option<&Candle>) {
        self.history_bar(ring, closed);
        self.r(ring).push(self.mem(), closed, next, self.now_ns);
        self.touched();
    }

    /// Replaces the newest closed candle, e.g. with the source's authoritative bar. Returns
    /// `false` (and changes nothing) if the ring has no closed candle, or if a restart dropped
    /// the newest one as torn and `candle` is not newer than every candle still held (so the
    /// ring's times keep increasing).
    pub fn amend_last_closed(&mut self, ring: RingId, candle: &Candle) -> bool {
        let r = self.r(ring);
        let Ok(control) = r.read_control(self.mem(), 1, &self.own_retries) else {
            return false;
        };
        let Some(newest) = control.head.checked_sub(1) else {
            return false;
        };
        if let Ok(Slot::Dropped) = r.read_slot(self.mem(), newest, 1, &self.own_retries) {
            if self
                .last_closed(ring)
                .is_some_and(|held| candle.time <= held.time)
            {
                return false;
            }
        }
        let done = self.r(ring).amend_last(self.mem(), candle, self.now_ns);
        if done {
            self.history_amend(ring, candle);
            self.touched();
        }
        done
    }

    /// The forming candle of a ring, as stored.
    pub fn forming(&self, ring: RingId) -> Option<Candle> {
        // The single writer reads its own, quiescent ring: one attempt always succeeds.
        self.r(ring)
            .read_control(self.mem(), 1, &self.own_retries)
            .ok()
            .and_then(|c| c.forming)
    }

    /// The newest closed candle a ring holds, as stored. Slots a restart dropped as torn
    /// (see [`Start::Warm`]) are passed over, so this is the candle every later one must
    /// follow.
    pub fn last_closed(&self, ring: RingId) -> Option<Candle> {
        let r = self.r(ring);
        let head = r.read_control(self.mem(), 1, &self.own_retries).ok()?.head;
        let oldest = head.saturating_sub(r.capacity());
        (oldest..head)
            .rev()
            .find_map(|p| match r.read_slot(self.mem(), p, 1, &self.own_retries) {
                Ok(Slot::Candle(c)) => Some(c),
                _ => None,
            })
    }

    /// Closed candles ever pushed into a ring (not capped by its capacity).
    pub fn closed_total(&self, ring: RingId) -> u64 {
        self.r(ring)
            .read_control(self.mem(), 1, &self.own_retries)
            .map_or(0, |c| c.head)
    }

    /// Marks every ring of `symbol` as unknown to the source (the broker or gateway has no such
    /// symbol), or known again. Readers see it through
    /// [`RingReader::unknown_to_source`](crate::RingReader::unknown_to_source); the candles
    /// already held stay readable.
    pub fn set_unknown_to_source(&mut self, symbol: SymbolId, unknown: bool) {
        for (spec, r) in self.layout.rings().iter().zip(&self.rings) {
            if spec.symbol_index == symbol.0 {
                r.set_source_flags(self.map.mem(), u64::from(unknown));
            }
        }
    }

    /// Records the latest tick of a symbol: its server time in ms and its prices.
    #[inline]
    pub fn record_tick(&mut self, symbol: SymbolId, server_time_ms: i64, bid: f64, ask: f64) {
        let at = self.symbols_offset + symbol.0 as usize * layout::SYMBOL_ENTRY_SIZE;
        // Release: stored after the tick ring's `head` (`push_tick`), so that a reader whose
        // Acquire load sees this time also sees the tick in the ring, and can refuse a ring
        // whose newest tick is older (a `head` set back). The other words are independent
        // (Relaxed): readers need no consistency between them.
        self.mem().store(
            at + sym::LAST_TICK_MS,
            server_time_ms as u64,
            Ordering::Release,
        );
        self.mem()
            .store(at + sym::LAST_TICK_WALL_NS, self.now_ns, Ordering::Relaxed);
        self.mem()
            .store(at + sym::LAST_BID, bid.to_bits(), Ordering::Relaxed);
        self.mem()
            .store(at + sym::LAST_ASK, ask.to_bits(), Ordering::Relaxed);
    }

    /// Adds `n` to a counter.
    #[inline]
    pub fn add(&mut self, counter: Counter, n: u64) {
        let off = hdr::COUNTERS + counter as usize * 8;
        // Load + store rather than fetch_add: only this writer changes counters, so no
        // read-modify-write (and no lock prefix) is needed. Relaxed: independent statistics.
        let v = self.mem().load(off, Ordering::Relaxed);
        self.mem().store(off, v.wrapping_add(n), Ordering::Relaxed);
    }

    /// The current value of a counter.
    pub fn counter(&self, counter: Counter) -> u64 {
        self.mem()
            .load(hdr::COUNTERS + counter as usize * 8, Ordering::Relaxed)
    }

    /// The feed state last published.
    pub fn feed_state(&self) -> Option<FeedState> {
        // Relaxed: this process is the only writer of the word.
        FeedState::from_word(self.mem().load(hdr::FEED_STATE, Ordering::Relaxed))
    }

    /// Publishes the state of the data source.
    pub fn set_feed_state(&mut self, state: FeedState) {
        self.mem()
            .store(hdr::FEED_STATE, state as u64, Ordering::Relaxed);
    }

    /// Records what kind of feed writes the candles (see [`FeedKind`]).
    pub fn set_feed_kind(&mut self, kind: FeedKind) {
        // Relaxed: an independent header word.
        self.mem()
            .store(hdr::FEED_KIND, kind as u64, Ordering::Relaxed);
    }

    /// Publishes the broker's server-time offset (server time minus UTC, seconds).
    pub fn set_server_time_offset(&mut self, seconds: i64) {
        self.mem()
            .store(hdr::SERVER_TIME_OFFSET, seconds as u64, Ordering::Relaxed);
    }

    /// Marks the writer `running`: the rings now hold what they should.
    pub fn set_running(&mut self) {
        self.heartbeat();
        self.mem().store(
            hdr::WRITER_STATE,
            WriterState::Running as u64,
            Ordering::Relaxed,
        );
    }

    /// Wakes the readers waiting for a change ([`Reader::wait_for_change`]). Call it after
    /// publishing a batch of changes: it bumps the header's wake word and makes one
    /// `FUTEX_WAKE` system call (always: readers cannot say that they wait, see `wake.rs`).
    ///
    /// [`Reader::wait_for_change`]: crate::Reader::wait_for_change
    pub fn notify(&self) {
        self.wake.notify(self.mem().futex_word(hdr::WAKE_WORD));
    }

    /// Refreshes the writer's clock and stores it as the heartbeat, with the boot-time clock
    /// beside it (readers judge the heartbeat's age by that one). A wall clock that went back
    /// by more than a second since the last heartbeat, by the boot-time clock, is counted
    /// ([`Counter::ClockJumpsBack`]) and returned: how far it went back.
    pub fn heartbeat(&mut self) -> Option<Duration> {
        let (wall, boot) = (now_ns(), crate::time::boot_ns());
        // How far the wall clock moved, against how far it should have (the boot-time clock;
        // without one, not at all backwards).
        let wall_step = i128::from(wall) - i128::from(self.now_ns);
        let true_step = match (boot, self.boot_ns) {
            (Some(b), Some(before)) => i128::from(b.saturating_sub(before)),
            _ => 0,
        };
        let jump = (self.now_ns != 0 && wall_step < true_step - CLOCK_JUMP_NS)
            .then(|| Duration::from_nanos((true_step - wall_step) as u64));
        self.now_ns = wall;
        self.boot_ns = boot;
        // Relaxed: readers only compare them with their own clocks.
        self.mem()
            .store(hdr::HEARTBEAT_NS, self.now_ns, Ordering::Relaxed);
        self.mem()
            .store(hdr::HEARTBEAT_BOOT_NS, boot.unwrap_or(0), Ordering::Relaxed);
        if jump.is_some() {
            self.add(Counter::ClockJumpsBack, 1);
        }
        jump
    }

    /// The writer clock as of the last [`heartbeat`](Self::heartbeat) (unix ns).
    pub fn clock_ns(&self) -> u64 {
        self.now_ns
    }

    /// Marks the segment stopped and releases the lock (the same as dropping the writer).
    pub fn stop(self) {}
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.heartbeat();
        self.history_flush();
        // A feed that had finished (a replay that reached its end) stays `finished`: its data
        // is complete. Any other becomes `stopped`, never a `live` that nobody feeds.
        // Relaxed: published by the Release store of the state just below.
        if self.mem().load(hdr::FEED_STATE, Ordering::Relaxed) != FeedState::Finished as u64 {
            self.mem().store(
                hdr::FEED_STATE,
                FeedState::Stopped as u64,
                Ordering::Relaxed,
            );
        }
        self.mem().store(
            hdr::WRITER_STATE,
            WriterState::Stopped as u64,
            Ordering::Release,
        );
        // Waiting readers learn at once that nothing more will come.
        self.notify();
        // The lock goes with `_lock`, after this.
    }
}
