//! The single writer: creating, warm-restarting or replacing a segment, and publishing to it.

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::candle::Candle;
use crate::files::{self, Untrusted};
use crate::header::Header;
use crate::layout::{self, hdr, sym, Layout, Placement, HEADER_SIZE, LAYOUT_VERSION, MAGIC};
use crate::lock::{self, LockError, WriterLock};
use crate::mem::{Mapping, Mem};
use crate::process::{self, PidState};
use crate::ring::{RingRef, Slot};
use crate::status::{Counter, FeedKind, FeedState, WriterState};
use crate::wake::{self, Waker};
use crate::{now_ns, SegmentPath, Timeframe};

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

/// Why [`Writer::create`] failed.
#[derive(Debug)]
pub enum CreateError {
    /// Another live writer holds the segment.
    AlreadyRunning {
        /// The segment file.
        path: PathBuf,
        /// The holder's pid, as written in the header (if it could be read).
        pid: Option<u32>,
    },
    /// The writer lock is held, but not by a live writer: the process named in the header is
    /// gone, so something else (a reader of the same account, most likely) holds the lock file.
    LockHeld {
        /// The segment file.
        path: PathBuf,
        /// The lock file.
        lock_path: PathBuf,
        /// The pid of the last writer, as written in the header.
        last_pid: u32,
    },
    /// The file at the segment's (or lock file's) name is not ours to use.
    Untrusted {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: Untrusted,
    },
    /// The permission bits asked for would let others write the segment, or deny its owner.
    InsecureMode {
        /// The bits asked for.
        mode: u32,
    },
    /// The filesystem holding the segment has no room for it.
    NoSpace {
        /// The segment file.
        path: PathBuf,
        /// Bytes needed.
        bytes: u64,
        /// The error of the reservation.
        source: io::Error,
    },
    /// The layout has no rings.
    EmptyLayout,
    /// A file operation failed.
    Io {
        /// What was being done.
        action: &'static str,
        /// The file it was done to.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateError::AlreadyRunning {
                path,
                pid: Some(pid),
            } => write!(
                f,
                "segment {} is already being written by pid {pid}; stop that writer first",
                path.display()
            ),
            CreateError::AlreadyRunning { path, pid: None } => {
                write!(f, "segment {} is locked by another writer", path.display())
            }
            CreateError::LockHeld {
                path,
                lock_path,
                last_pid,
            } => write!(
                f,
                "segment {} is locked by a process that is not its writer: the last writer, pid \
                 {last_pid}, is gone, yet {} is still locked. Find the holder with `fuser -v {}` \
                 and stop it",
                path.display(),
                lock_path.display(),
                lock_path.display()
            ),
            CreateError::Untrusted { path, why } => write!(
                f,
                "refusing to use {}: {why}; remove it (as its owner or root) or choose another \
                 segment name",
                path.display()
            ),
            CreateError::InsecureMode { mode } => write!(
                f,
                "segment mode {mode:04o} is refused: only the owner may write a segment, and the \
                 owner must read and write it (use 0600, or 0640 to let a group read)"
            ),
            CreateError::NoSpace { path, bytes, .. } => write!(
                f,
                "could not reserve {bytes} bytes for segment {}: is {} full?{}",
                path.display(),
                path.parent()
                    .map_or_else(|| ".".into(), |d| d.display().to_string()),
                if cfg!(windows) {
                    ""
                } else {
                    " (Docker gives /dev/shm 64 MB by default; see --shm-size)"
                }
            ),
            CreateError::EmptyLayout => f.write_str("the segment layout has no rings"),
            CreateError::Io { action, path, .. } => {
                write!(f, "could not {action} {}", path.display())
            }
        }
    }
}

impl std::error::Error for CreateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CreateError::Io { source, .. } | CreateError::NoSpace { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> CreateError + 'p {
    move |source| CreateError::Io {
        action,
        path: path.to_owned(),
        source,
    }
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
    map: Mapping,
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
    symbols_offset: usize,
    generation: u64,
    start: Start,
    /// The clock of the last `heartbeat()`, in unix ns.
    now_ns: u64,
    /// The boot-time clock of the last `heartbeat()`, where the platform has one.
    boot_ns: Option<u64>,
    /// Retries of the writer's reads of its own rings: always zero, as nothing races them.
    own_retries: AtomicU64,
}

impl Writer {
    /// Creates the segment at `path`, or takes over an existing one.
    ///
    /// First the writer lock is taken, in the lock file beside the segment (`NAME.lock`,
    /// mode 0600, whatever the segment's mode): no reader can open it, so none can block or
    /// forge it. Then:
    /// - No file: a new segment is built in a temporary file and linked into place, so readers
    ///   never see it half-initialised.
    /// - A segment of ours with the same layout: it is reused with its candles (warm restart).
    /// - A file owned by another account: refused ([`CreateError::Untrusted`]); it may hold
    ///   anything, and in a sticky `/dev/shm` it cannot be removed by us anyway.
    /// - Anything else of ours (another layout, not a segment, writable by others, a FIFO): a
    ///   new segment is built and renamed over it; an old segment is marked `replaced` first
    ///   so that attached readers know to re-open it.
    ///
    /// The writer starts in state `initializing`; call [`set_running`](Self::set_running) once
    /// the rings hold what they should.
    pub fn create(
        path: &SegmentPath,
        layout: &Layout,
        options: &WriterOptions,
    ) -> Result<Writer, CreateError> {
        if layout.rings().is_empty() {
            return Err(CreateError::EmptyLayout);
        }
        if options.mode & 0o7022 != 0 || options.mode & 0o600 != 0o600 {
            return Err(CreateError::InsecureMode { mode: options.mode });
        }
        let path = path.path();
        // The segment directory of a first run on Windows; never another (a mistyped path
        // should fail, not grow directories).
        let dir = crate::segment_dir();
        if path.parent() == Some(dir.as_path()) && !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(io_err("create the directory", &dir))?;
        }
        let lock = take_lock(path)?;
        let wake = Waker::create(path, options.mode)
            .map_err(io_err("prepare the wake-up of", &wake::wake_path(path)))?;
        // Under the lock no other writer builds here, so every temporary file of this
        // segment is a leftover of a writer killed while building one.
        remove_leftovers(path);
        let placement = layout.placement();
        // Each pass either finishes or observed another process changing the file between two
        // steps; a handful of passes is plenty unless something is badly wrong.
        for _ in 0..16 {
            // Never through a symlink (ELOOP), never waiting on a FIFO (O_NONBLOCK).
            let file = match files::open(path, true) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let (file, map, tmp) = build(path, layout, &placement, options, 1)?;
                    // Fails if the name exists: if someone else put a file there meanwhile,
                    // go round again and judge it.
                    match files::publish_new(&tmp, path) {
                        Ok(()) => {
                            return Writer::new(
                                Held { file, lock, wake },
                                map,
                                path,
                                layout,
                                &placement,
                                Start::Fresh,
                            )
                        }
                        Err(e) => {
                            // Unmapped and closed first: Windows will not delete a mapped file.
                            drop((file, map));
                            let _ = fs::remove_file(&tmp);
                            if e.kind() == io::ErrorKind::AlreadyExists {
                                continue;
                            }
                            return Err(io_err("link the new segment to", path)(e));
                        }
                    }
                }
                Err(e) if files::is_a_directory(&e, path) => {
                    return Err(CreateError::Untrusted {
                        path: path.to_owned(),
                        why: Untrusted::NotRegular {
                            kind: "a directory",
                        },
                    })
                }
                Err(e) => return Err(io_err("open", path)(e)),
            };
            let ours = file.metadata().map_err(io_err("stat", path))?;
            // Decided on the object opened, not on the name: another account's file is never
            // ours to write or replace.
            files::owned_by_us(&ours).map_err(|why| CreateError::Untrusted {
                path: path.to_owned(),
                why,
            })?;
            // Warm restart only into a regular file that nobody else could have written.
            let trusted = files::regular(&ours).is_ok() && files::owner_only_writes(&ours).is_ok();
            let same_layout = trusted
                && ours.len() == placement.total_size as u64
                && peek(&file, hdr::MAGIC) == Some(MAGIC)
                && peek(&file, hdr::VERSION) == Some(LAYOUT_VERSION)
                && peek(&file, hdr::LAYOUT_HASH) == Some(placement.hash)
                && peek(&file, hdr::TOTAL_SIZE) == Some(placement.total_size as u64);
            let is_segment = trusted && peek(&file, hdr::MAGIC) == Some(MAGIC);
            let old_generation = if is_segment {
                peek(&file, hdr::GENERATION).unwrap_or(0)
            } else {
                0
            };

            if same_layout && options.start_clean {
                if let Some(pid) = live_writer(&file) {
                    return Err(CreateError::AlreadyRunning {
                        path: path.to_owned(),
                        pid: Some(pid),
                    });
                }
            }
            if same_layout && !options.start_clean {
                if let Some(pid) = live_writer(&file) {
                    // The lock file was removed by hand while that writer runs: two writers
                    // would corrupt each other's rings.
                    return Err(CreateError::AlreadyRunning {
                        path: path.to_owned(),
                        pid: Some(pid),
                    });
                }
                // The mode asked for now, not the one of the run that created the file.
                files::set_mode(&file, options.mode).map_err(io_err("set the mode of", path))?;
                let map = Mapping::read_write(&file, placement.total_size)
                    .map_err(io_err("map", path))?;
                let mut w = Writer::new(
                    Held { file, lock, wake },
                    map,
                    path,
                    layout,
                    &placement,
                    Start::Fresh,
                )?;
                let repaired = w.rings.iter().map(|r| r.repair(w.mem())).sum();
                w.start = Start::Warm { repaired };
                w.begin_generation(old_generation + 1);
                return Ok(w);
            }

            let (new_file, map, tmp) =
                build(path, layout, &placement, options, old_generation + 1)?;
            // Tell readers still mapping the old file to re-open by name. Done before the
            // rename so that no reader can miss it; a pwrite of one word, no mapping needed.
            if is_segment && old_generation > 0 {
                let state = (WriterState::Replaced as u64).to_le_bytes();
                let _ = files::write_at(&file, &state, hdr::WRITER_STATE as u64);
            }
            drop(file);
            if let Err(e) = files::replace(&tmp, path, &tmp_path(path)) {
                let _ = fs::remove_file(&tmp);
                return Err(io_err("rename the new segment over", path)(e));
            }
            return Writer::new(
                Held {
                    file: new_file,
                    lock,
                    wake,
                },
                map,
                path,
                layout,
                &placement,
                Start::Replaced,
            );
        }
        Err(io_err("take over", path)(io::Error::other(
            "the segment file kept changing under us; is another program replacing it?",
        )))
    }

    fn new(
        held: Held,
        map: Mapping,
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
            symbols_offset: p.symbols_offset,
            generation,
            start,
            now_ns: now_ns(),
            boot_ns,
            own_retries: AtomicU64::new(0),
        })
    }

    /// The word view of the segment.
    fn mem(&self) -> &Mem {
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
        self.r(ring)
            .push(self.mem(), candle, forming.as_ref(), self.now_ns);
        self.touched();
    }

    /// Closes the forming candle as `closed` and makes `next` the forming candle, as one step:
    /// a reader sees either the old forming candle or the closed one plus `next`, never both
    /// or neither.
    #[inline]
    pub fn roll(&mut self, ring: RingId, closed: &Candle, next: Option<&Candle>) {
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
        // Relaxed: independent words; readers need no consistency between them.
        self.mem().store(
            at + sym::LAST_TICK_MS,
            server_time_ms as u64,
            Ordering::Relaxed,
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

/// The writer recorded in the header of `file`, if its process still runs.
fn live_writer(file: &File) -> Option<u32> {
    let state = WriterState::from_word(peek(file, hdr::WRITER_STATE)?);
    if !matches!(
        state,
        Some(WriterState::Initializing | WriterState::Running)
    ) {
        return None;
    }
    let pid = peek(file, hdr::WRITER_PID)? as u32;
    let who = process::Identity {
        pidns: peek(file, hdr::WRITER_PIDNS)?,
        start_ticks: peek(file, hdr::WRITER_START_TICKS)?,
    };
    (process::check(pid, who) == PidState::Running).then_some(pid)
}

/// What a writer holds open besides its mapping.
struct Held {
    /// The segment file.
    file: File,
    /// The writer lock.
    lock: WriterLock,
    /// The wake-up.
    wake: Waker,
}

/// Takes the writer lock of the segment at `path`, or says why not.
fn take_lock(path: &Path) -> Result<WriterLock, CreateError> {
    WriterLock::acquire(path).map_err(|e| match e {
        LockError::Held => held(path),
        LockError::Untrusted(why) => CreateError::Untrusted {
            path: lock::lock_path(path),
            why,
        },
        LockError::Io(action, source) => CreateError::Io {
            action,
            path: lock::lock_path(path),
            source,
        },
    })
}

/// The error for a writer lock held by another description: a live writer, or a squatter.
fn held(path: &Path) -> CreateError {
    let recorded = || {
        let file = files::open(path, false).ok()?;
        let pid = peek(&file, hdr::WRITER_PID)? as u32;
        let who = process::Identity {
            pidns: peek(&file, hdr::WRITER_PIDNS)?,
            start_ticks: peek(&file, hdr::WRITER_START_TICKS)?,
        };
        Some((pid, process::check(pid, who)))
    };
    let mut seen = recorded();
    if matches!(seen, Some((_, PidState::Dead))) {
        // A writer that has just taken the lock stamps its pid a moment later: look again
        // before blaming anyone.
        std::thread::sleep(std::time::Duration::from_millis(50));
        seen = recorded();
    }
    match seen {
        Some((last_pid, PidState::Dead)) => CreateError::LockHeld {
            path: path.to_owned(),
            lock_path: lock::lock_path(path),
            last_pid,
        },
        Some((pid, _)) => CreateError::AlreadyRunning {
            path: path.to_owned(),
            pid: Some(pid),
        },
        None => CreateError::AlreadyRunning {
            path: path.to_owned(),
            pid: None,
        },
    }
}

/// Removes the temporary files of earlier builds of the segment at `path` (a writer killed
/// while building one leaves a file the size of the segment). Called under the writer lock.
fn remove_leftovers(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) else {
        return;
    };
    for entry in entries.flatten() {
        let n = entry.file_name();
        let n = n.to_string_lossy();
        let Some(rest) = n.strip_prefix(&prefix) else {
            continue;
        };
        // `NAME.PID-N.tmp`, as made by `tmp_path`, and owned by us.
        let ours = entry
            .metadata()
            .is_ok_and(|m| m.is_file() && files::owner(&m) == files::euid());
        let shaped = rest.strip_suffix(".tmp").is_some_and(|mid| {
            mid.split_once('-').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a.bytes().all(|c| c.is_ascii_digit())
                    && b.bytes().all(|c| c.is_ascii_digit())
            })
        });
        if ours && shaped {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Removes the segment at `path` and its lock file, unless a writer holds it.
///
/// Removing the files by hand while a writer runs would let a second writer start beside it;
/// this takes the writer lock first, so it cannot happen. Readers that still map the segment
/// keep their view until they re-open. A missing segment is not an error.
pub fn remove_segment(path: &SegmentPath) -> Result<(), CreateError> {
    let path = path.path();
    let lock = take_lock(path)?;
    remove_leftovers(path);
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove", path)(e)),
    }
    match fs::remove_file(wake::wake_path(path)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove", &wake::wake_path(path))(e)),
    }
    // Unlinked while held, so that no writer can lock it between our check and the removal.
    fs::remove_file(lock.path()).map_err(io_err("remove", lock.path()))?;
    Ok(())
}

/// A temporary name beside `path`, unique to this process and call, so that concurrent
/// creators (other processes, or threads of this one) never share one.
fn tmp_path(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{}-{n}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Reads one header word with a plain file read (no mapping), if the file is long enough.
fn peek(file: &File, off: usize) -> Option<u64> {
    let mut buf = [0u8; 8];
    files::read_at(file, &mut buf, off as u64).ok()?;
    Some(u64::from_le_bytes(buf))
}

/// Builds a complete segment in the temporary file beside `path`, locked, with the version word
/// stored last.
fn build(
    path: &Path,
    layout: &Layout,
    p: &Placement,
    options: &WriterOptions,
    generation: u64,
) -> Result<(File, Mapping, PathBuf), CreateError> {
    let tmp = tmp_path(path);
    let _ = fs::remove_file(&tmp); // a leftover of a crashed start of a process with our pid
    let file = files::create_new(&tmp, options.mode).map_err(io_err("create", &tmp))?;
    let fail = |e: CreateError| {
        let _ = fs::remove_file(&tmp);
        e
    };
    // The umask may have cleared bits of `mode`; set them exactly, before any data is written.
    files::set_mode(&file, options.mode).map_err(|e| fail(io_err("set the mode of", &tmp)(e)))?;
    file.set_len(p.total_size as u64)
        .map_err(|e| fail(io_err("size", &tmp)(e)))?;
    // tmpfs allocates pages on first touch; a full /dev/shm (Docker's default is 64 MB) would
    // then kill the writer with SIGBUS mid-run. Reserve them now and fail with a clear error.
    files::reserve(&file, p.total_size).map_err(|source| {
        fail(CreateError::NoSpace {
            path: path.to_owned(),
            bytes: p.total_size as u64,
            source,
        })
    })?;
    let map = Mapping::read_write(&file, p.total_size).map_err(|e| fail(io_err("map", &tmp)(e)))?;
    let mem = map.mem();
    let now = now_ns();
    let me = process::this_process();
    let h = |off, v| mem.store(off, v, Ordering::Relaxed);
    for (i, name) in layout.symbols().enumerate() {
        let at = p.symbols_offset + i * layout::SYMBOL_ENTRY_SIZE;
        for (k, w) in layout::name_words(name).into_iter().enumerate() {
            h(at + sym::NAME + 8 * k, w);
        }
    }
    for (i, (r, &off)) in layout.rings().iter().zip(&p.ring_offsets).enumerate() {
        let at = p.directory_offset + i * layout::DIR_ENTRY_SIZE;
        h(at + layout::dir::SYMBOL_INDEX, u64::from(r.symbol_index));
        h(
            at + layout::dir::TIMEFRAME,
            u64::from(r.timeframe.mt5_code()),
        );
        h(at + layout::dir::CAPACITY, u64::from(r.capacity));
        h(at + layout::dir::RING_OFFSET, off as u64);
    }
    // The header last, its version word last of all (see `Header::store`): the file only
    // gets its public name after this, so in practice no reader ever finds version 0.
    Header {
        magic: MAGIC,
        version: LAYOUT_VERSION,
        layout_hash: p.hash,
        total_size: p.total_size as u64,
        header_size: HEADER_SIZE as u64,
        symbol_count: layout.symbols().len() as u64,
        ring_count: layout.rings().len() as u64,
        symbols_offset: p.symbols_offset as u64,
        directory_offset: p.directory_offset as u64,
        created_ns: now,
        generation,
        writer_pid: u64::from(std::process::id()),
        writer_start_ns: now,
        heartbeat_ns: now,
        writer_state: WriterState::Initializing as u64,
        feed_state: FeedState::Starting as u64,
        writer_pidns: me.pidns,
        writer_start_ticks: me.start_ticks,
        ..Header::default()
    }
    .store(mem);
    Ok((file, map, tmp))
}
