//! Readers: attaching to a segment, validating it, and taking snapshots of its rings.
//!
//! - `open.rs`: attaching, and every check a segment must pass first;
//! - `wait.rs`: waiting for the writer (the futex wake-up) and following closed bars;
//! - `ring.rs`: the reads of one ring;
//! - `built.rs`: timeframes without a ring, built on read from one that tiles them.

mod built;
mod open;
mod ring;
mod ticks;
mod wait;

pub use built::{group_bars, tiles, Timeline};
pub use ring::{RingReader, RingStats, TickInfo};
pub use ticks::{SymbolRecord, TerminalRecord, TickRingReader, TickSpan};
pub use wait::{ChangeToken, ClosedBars, NextBar, WaitOutcome};

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::OpenError;
use crate::files::{self};
use crate::header::Header;
use crate::layout::{self, hdr, sym, Layout};
use crate::lock::{self, Probe};
use crate::mem::{Mapping, Mem};
use crate::process::{self, PidState};
use crate::record::Block;
use crate::ring::RingRef;
use crate::status::{Counters, FeedKind, FeedState, Liveness, Status, WriterState};
use crate::tickring::TickRingRef;
use crate::trust::Trust;
use crate::wake::Waiter;
use crate::{now_ns, SegmentPath, Timeframe};

/// Default number of tries before a read gives up with [`ReadError::Busy`](crate::ReadError::Busy).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10_000;
/// Default heartbeat age after which a writer holding the lock counts as stalled.
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(1);

/// A process's view of a segment: read-only, lock-free, syscall-free on the read path.
///
/// Reads never re-attach by themselves. The mapping stays valid across a warm restart of the
/// writer (same file, generation + 1), so nothing needs doing then. If the writer restarts
/// with another layout, it replaces the file and marks the old one
/// [`Liveness::Replaced`]; call [`refresh`](Self::refresh) (one `stat`) to follow it.
///
/// ```no_run
/// use shm_core::{Reader, SegmentPath, Timeframe};
///
/// let reader = Reader::open(&SegmentPath::named("mtf-candles")?)?;
/// let mut candles = Vec::new();
/// if let Some(m1) = reader.ring("BTCUSDc", Timeframe::M1) {
///     m1.read_last(50, &mut candles)?;
/// }
/// println!("{} candles, writer {}", candles.len(), reader.status().liveness);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Reader {
    /// The segment, mapped read-only, with its word view: only loads are issued.
    map: Mapping,
    /// Kept open for comparing inodes in `refresh`.
    file: File,
    /// The writer's lock file, where this process may open it (see `lock.rs`).
    lock_probe: Option<File>,
    /// The sleep on the header's wake word, where the platform has one (see `wake.rs`).
    wake: Option<Waiter>,
    path: PathBuf,
    /// The accounts trusted at `open`, kept for `reopen`.
    trust: Trust,
    layout: Layout,
    /// Validated against the mapping's length in `open`.
    rings: Vec<RingRef>,
    /// One per symbol, validated likewise.
    tick_rings: Vec<TickRingRef>,
    /// One information record per symbol.
    infos: Vec<Block>,
    /// The terminal record.
    terminal: Block,
    symbols_offset: usize,
    max_attempts: u32,
    stall_after: Duration,
    /// Failed attempts of all reads so far (see [`Reader::retries`]).
    retries: AtomicU64,
    /// Per ring: which positions an earlier read has checked (see [`Checked`]).
    checked: Vec<AtomicU64>,
}

impl Reader {
    /// The word view of the segment.
    fn mem(&self) -> &Mem {
        self.map.mem()
    }

    /// Re-opens the segment if its file was replaced (by a writer with another layout, or
    /// deleted and recreated). Returns `Ok(true)` if it re-attached. On error the reader keeps
    /// its current mapping.
    pub fn refresh(&mut self) -> Result<bool, OpenError> {
        if !self.needs_reopen() {
            return Ok(false);
        }
        *self = self.reopen()?;
        Ok(true)
    }

    /// Whether the segment's file was replaced since this reader attached (by a writer with
    /// another layout, or deleted and recreated), so that [`reopen`](Self::reopen) would
    /// attach to another segment. One `stat` of the path (on Windows, an open of it and a
    /// query of both files' ids).
    pub fn needs_reopen(&self) -> bool {
        let replaced = self.writer_state() == Some(WriterState::Replaced);
        let moved = !matches!(files::same_file(&self.file, &self.path), Ok(true));
        replaced || moved
    }

    /// A new reader of the segment now at this reader's path, with this reader's settings and
    /// retry count: for readers shared behind an `Arc`, which cannot [`refresh`](Self::refresh)
    /// in place.
    pub fn reopen(&self) -> Result<Reader, OpenError> {
        let mut fresh = Reader::open_trusting(&SegmentPath::at(&self.path), &self.trust)?;
        fresh.max_attempts = self.max_attempts;
        fresh.stall_after = self.stall_after;
        fresh.retries = AtomicU64::new(self.retries());
        Ok(fresh)
    }

    /// Failed read attempts so far (a sequence was odd or changed during a copy, or the
    /// writer lapped a slot), over all rings. Retries are normal under load; a steady climb
    /// with no new data means a writer died mid-write.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Sets how many tries a read makes before returning [`ReadError::Busy`](crate::ReadError::Busy) (at least 1).
    pub fn set_max_attempts(&mut self, attempts: u32) {
        self.max_attempts = attempts.max(1);
    }

    /// Sets the heartbeat age after which a locked writer counts as [`Liveness::Stalled`].
    pub fn set_stall_after(&mut self, age: Duration) {
        self.stall_after = age;
    }

    /// The segment file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The segment's symbols and rings.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Every ring, in directory order.
    pub fn rings(&self) -> impl ExactSizeIterator<Item = RingReader<'_>> {
        (0..self.rings.len()).map(move |index| RingReader {
            reader: self,
            index,
        })
    }

    /// The ring of `symbol` (matched exactly) at `timeframe`.
    pub fn ring(&self, symbol: &str, timeframe: Timeframe) -> Option<RingReader<'_>> {
        self.rings()
            .find(|r| r.symbol() == symbol && r.timeframe() == timeframe)
    }

    /// The latest tick the writer recorded for `symbol`.
    pub fn last_tick(&self, symbol: &str) -> Option<TickInfo> {
        let i = self.layout.symbols().position(|s| s == symbol)?;
        let at = self.symbols_offset + i * layout::SYMBOL_ENTRY_SIZE;
        // Relaxed: independent words (see `Writer::record_tick`).
        let word = |off| self.mem().load(at + off, Ordering::Relaxed);
        let wall = word(sym::LAST_TICK_WALL_NS);
        (wall != 0).then(|| TickInfo {
            server_time_ms: word(sym::LAST_TICK_MS) as i64,
            received_ns: wall,
            bid: f64::from_bits(word(sym::LAST_BID)),
            ask: f64::from_bits(word(sym::LAST_ASK)),
        })
    }

    /// The writer's own state word (initializing, running, stopped, replaced): one load, no
    /// system call. `Initializing` means the candles written now are history (a backfill),
    /// not live closes.
    pub fn writer_state(&self) -> Option<WriterState> {
        WriterState::from_word(self.mem().load(hdr::WRITER_STATE, Ordering::Acquire))
    }

    /// Reads the header: liveness, generation, heartbeat, counters. Costs one `fcntl` (the lock
    /// probe) on Linux while the writer is alive; a read of `/proc/PID/stat` more when the
    /// lock cannot be probed (a reader in another account) or the heartbeat is stale. The
    /// candle reads cost none.
    pub fn status(&self) -> Status {
        let h = Header::load(self.mem());
        let writer_state = WriterState::from_word(h.writer_state);
        let (heartbeat_age, stale) = heartbeat_age(&h, self.stall_after);
        let liveness = match writer_state {
            Some(WriterState::Replaced) => Liveness::Replaced,
            Some(WriterState::Stopped) => Liveness::Stopped,
            _ => match lock::probe(self.lock_probe.as_ref()) {
                Probe::Free => Liveness::Gone,
                // Held with a fresh heartbeat: the writer (one fcntl, the common case).
                Probe::Held if !stale => Liveness::Alive,
                // The lock cannot be seen (another account), or it is held but the heartbeat
                // stopped: ask /proc whether the recorded process still runs. A lock held by
                // something else than a live writer never makes a dead writer look alive.
                _ => match writer_process(&h) {
                    PidState::Dead => Liveness::Gone,
                    PidState::Running | PidState::Unknown if stale => Liveness::Stalled,
                    PidState::Running | PidState::Unknown => Liveness::Alive,
                },
            },
        };
        Status {
            liveness,
            writer_state,
            generation: h.generation,
            writer_pid: h.writer_pid as u32,
            writer_start_ns: h.writer_start_ns,
            heartbeat_ns: h.heartbeat_ns,
            heartbeat_age,
            last_update_ns: h.last_update_ns,
            created_ns: h.created_ns,
            server_time_offset_s: h.server_time_offset_s,
            feed_state: FeedState::from_word(h.feed_state),
            feed_kind: FeedKind::from_word(h.feed_kind),
            counters: Counters(h.counters),
        }
    }
}

/// How old the writer's heartbeat is, and whether it is too old to count as alive. By the
/// boot-time clock where the writer keeps it (one kernel clock for every process: a wall
/// clock set ahead or back changes nothing); else by the wall clock, where a heartbeat from
/// the future is not trusted at all (a writer whose clock runs ahead, then stalls, would
/// otherwise look alive until the wall clock caught up).
fn heartbeat_age(h: &Header, stall_after: Duration) -> (Duration, bool) {
    let slack = stall_after.as_nanos().min(u128::from(u64::MAX)) as u64;
    if let Some(now) = crate::time::boot_ns().filter(|_| h.heartbeat_boot_ns != 0) {
        // A reading ahead of ours comes from another clock (another time namespace): fall
        // through to the wall clock rather than trust it.
        if h.heartbeat_boot_ns <= now.saturating_add(1_000_000_000) {
            let age = Duration::from_nanos(now.saturating_sub(h.heartbeat_boot_ns));
            return (age, age > stall_after);
        }
    }
    let now = now_ns();
    if h.heartbeat_ns > now.saturating_add(slack) {
        return (Duration::ZERO, true);
    }
    let age = Duration::from_nanos(now.saturating_sub(h.heartbeat_ns));
    (age, age > stall_after)
}

/// What `/proc` says of the writer a header names.
fn writer_process(h: &Header) -> PidState {
    let who = process::Identity {
        pidns: h.writer_pidns,
        start_ticks: h.writer_start_ticks,
    };
    process::check(h.writer_pid as u32, who)
}
