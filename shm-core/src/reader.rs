//! Readers: attaching to a segment, validating it, and taking snapshots of its rings.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::candle::Candle;
use crate::files::{self, Untrusted};
use crate::header::Header;
use crate::layout::{
    self, dir, hdr, sym, Layout, RingSpec, HEADER_SIZE, LAYOUT_VERSION, MAGIC, MAX_CAPACITY,
    MAX_RINGS, MAX_SYMBOLS,
};
use crate::lock::{self, Probe};
use crate::mem::{Mapping, Mem};
use crate::process::{self, PidState};
use crate::ring::{Busy, Control, RingRef, Slot};
use crate::status::{Counters, FeedKind, FeedState, Liveness, Status, WriterState};
use crate::trust::{Trust, TrustError};
use crate::validate::{self, Checked, InvalidRecord};
use crate::wake::{self, Waiter};
use crate::{now_ns, SegmentPath, Timeframe};

/// Default number of tries before a read gives up with [`ReadError::Busy`].
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10_000;
/// Default heartbeat age after which a writer holding the lock counts as stalled.
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(1);

/// Why [`Reader::open`] refused a segment. Every variant says what was found and expected.
#[derive(Debug)]
pub enum OpenError {
    /// No file at the path: the writer has not started yet.
    NotFound {
        /// The segment file.
        path: PathBuf,
    },
    /// The file could not be opened, inspected or mapped.
    Io {
        /// The segment file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file is shorter than its header says (or than a header).
    Truncated {
        /// The segment file.
        path: PathBuf,
        /// Its length in bytes.
        found: u64,
        /// The length it must have.
        expected: u64,
    },
    /// The first 8 bytes are not `MTFCANDL`: not a candle segment.
    BadMagic {
        /// The segment file.
        path: PathBuf,
        /// The first 8 bytes, as a little-endian word.
        found: u64,
    },
    /// The version word is 0: a writer is still initialising the segment.
    Initializing {
        /// The segment file.
        path: PathBuf,
    },
    /// A layout version this reader does not understand.
    VersionMismatch {
        /// The segment file.
        path: PathBuf,
        /// The version in the file.
        found: u64,
        /// The version this reader reads.
        expected: u64,
    },
    /// The stored layout hash differs from the one computed from the directory and this
    /// reader's record sizes: the writer was built with another layout definition.
    LayoutHashMismatch {
        /// The segment file.
        path: PathBuf,
        /// The hash in the file.
        found: u64,
        /// The hash this reader computes.
        expected: u64,
    },
    /// The file at the segment's name is not one a reader may trust: not a regular file (a
    /// FIFO would hang every reader), or writable by others than its owner.
    Untrusted {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: Untrusted,
    },
    /// The list of trusted accounts (`MTF_TRUST`) is malformed.
    Trust(TrustError),
    /// A header, symbol or directory field holds an impossible value.
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Which field, and what it holds.
        what: String,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::NotFound { path } => {
                write!(
                    f,
                    "no segment at {} (is the streamer running?)",
                    path.display()
                )
            }
            OpenError::Io { path, .. } => write!(f, "could not open segment {}", path.display()),
            OpenError::Truncated {
                path,
                found,
                expected,
            } => write!(
                f,
                "segment {} is truncated: {found} bytes, expected at least {expected}",
                path.display()
            ),
            OpenError::BadMagic { path, found } => write!(
                f,
                "{} is not a candle segment: magic {:?}, expected \"MTFCANDL\"",
                path.display(),
                String::from_utf8_lossy(&found.to_le_bytes())
            ),
            OpenError::Initializing { path } => {
                write!(f, "segment {} is still being initialised", path.display())
            }
            OpenError::VersionMismatch {
                path,
                found,
                expected,
            } => write!(
                f,
                "segment {} has layout version {found}, this reader reads version {expected}",
                path.display()
            ),
            OpenError::LayoutHashMismatch {
                path,
                found,
                expected,
            } => write!(
                f,
                "segment {} has layout hash {found:#018x}, this reader computes {expected:#018x} \
                 (writer and reader were built with different layouts)",
                path.display()
            ),
            OpenError::Untrusted { path, why } => {
                write!(f, "refusing to read segment {}: {why}", path.display())
            }
            OpenError::Corrupt { path, what } => {
                write!(f, "segment {} is corrupt: {what}", path.display())
            }
            OpenError::Trust(e) => write!(f, "bad list of trusted accounts: {e}"),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Io { source, .. } => Some(source),
            OpenError::Trust(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a ring read returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// The ring stayed mid-write for `attempts` tries. Either the writer is extremely busy or it
    /// died inside a write; [`Reader::status`] tells which.
    Busy {
        /// Tries made.
        attempts: u32,
    },
    /// A candle of the snapshot breaks a rule the writer keeps (see [`InvalidRecord`]): the
    /// segment is damaged or forged, and nothing of the snapshot is handed out.
    Invalid {
        /// The offending candle's time, as stored.
        time: i64,
        /// What is wrong with it.
        why: InvalidRecord,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Busy { attempts } => write!(
                f,
                "ring stayed mid-write for {attempts} attempts (writer overloaded or killed mid-write)"
            ),
            ReadError::Invalid { time, why } => {
                write!(f, "damaged or forged candle at time {time}: {why}")
            }
        }
    }
}

impl std::error::Error for ReadError {}

impl From<Busy> for ReadError {
    fn from(b: Busy) -> Self {
        ReadError::Busy {
            attempts: b.attempts,
        }
    }
}

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
    symbols_offset: usize,
    max_attempts: u32,
    stall_after: Duration,
    /// Failed attempts of all reads so far (see [`Reader::retries`]).
    retries: AtomicU64,
    /// Per ring: which positions an earlier read has checked (see [`Checked`]).
    checked: Vec<AtomicU64>,
}

impl Reader {
    /// Maps the segment at `path` read-only and checks its owner (one of the accounts
    /// [`Trust::for_process`] trusts), magic, version, size, layout hash and directory.
    pub fn open(path: &SegmentPath) -> Result<Reader, OpenError> {
        let trust = Trust::for_process().map_err(OpenError::Trust)?;
        Reader::open_trusting(path, &trust)
    }

    /// As [`open`](Self::open), trusting exactly the accounts of `trust`.
    pub fn open_trusting(path: &SegmentPath, trust: &Trust) -> Result<Reader, OpenError> {
        let path = path.path();
        // O_NONBLOCK: a FIFO planted at the name must not hang the reader; O_NOFOLLOW: nor
        // may a symlink point it elsewhere.
        let file = files::open(path, false).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => OpenError::NotFound {
                path: path.to_owned(),
            },
            _ => OpenError::Io {
                path: path.to_owned(),
                source,
            },
        })?;
        let io = |source| OpenError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = file.metadata().map_err(io)?;
        // Only a regular file can be mapped safely, and only one that nobody but its owner can
        // write: anyone else who can write it can forge candles or truncate it (SIGBUS).
        // And only one whose owner we trust: anyone can create a name in /dev/shm first.
        let owner = files::owner(&meta);
        files::regular(&meta)
            .and_then(|()| files::owner_only_writes(&meta))
            .and_then(|()| {
                if trust.allows(owner) {
                    Ok(())
                } else {
                    Err(Untrusted::UntrustedOwner {
                        uid: owner,
                        name: crate::trust::name_of(owner),
                    })
                }
            })
            .map_err(|why| OpenError::Untrusted {
                path: path.to_owned(),
                why,
            })?;
        let lock_probe = lock::open_probe(path, owner);
        let wake = Waiter::open(path, owner);
        // Check the length before mapping: touching a page past the end of the file is SIGBUS.
        let len = meta.len();
        let truncated = |expected: u64| OpenError::Truncated {
            path: path.to_owned(),
            found: len,
            expected,
        };
        if len < HEADER_SIZE as u64 {
            return Err(truncated(HEADER_SIZE as u64));
        }
        let len = usize::try_from(len).map_err(|_| truncated(len))?;
        let map = Mapping::read_only(&file, len).map_err(io)?;
        let mem = map.mem();
        // The header, version first with Acquire (see `Header::load`): if we see version 1, we
        // see the whole initialised header and directory.
        let h = Header::load(mem);
        let word = |off| mem.load(off, Ordering::Relaxed);
        let version = h.version;
        let magic = h.magic;
        if magic != MAGIC {
            return Err(OpenError::BadMagic {
                path: path.to_owned(),
                found: magic,
            });
        }
        if version == 0 {
            return Err(OpenError::Initializing {
                path: path.to_owned(),
            });
        }
        if version != LAYOUT_VERSION {
            return Err(OpenError::VersionMismatch {
                path: path.to_owned(),
                found: version,
                expected: LAYOUT_VERSION,
            });
        }
        let corrupt = |what: String| OpenError::Corrupt {
            path: path.to_owned(),
            what,
        };
        let total = h.total_size;
        if (len as u64) < total {
            return Err(truncated(total));
        }
        if h.header_size != HEADER_SIZE as u64 {
            return Err(corrupt(format!(
                "header_size is {}, expected {HEADER_SIZE}",
                h.header_size
            )));
        }
        let (symbol_count, ring_count) = (h.symbol_count, h.ring_count);
        if symbol_count > MAX_SYMBOLS as u64 || ring_count == 0 || ring_count > MAX_RINGS as u64 {
            return Err(corrupt(format!(
                "{symbol_count} symbols and {ring_count} rings"
            )));
        }
        let (symbol_count, ring_count) = (symbol_count as usize, ring_count as usize);
        // Everything read below lies inside the header, symbol table and directory, whose
        // extent is checked against the file length first.
        let symbols_offset = HEADER_SIZE;
        let directory_offset = symbols_offset + symbol_count * layout::SYMBOL_ENTRY_SIZE;
        let directory_end = directory_offset + ring_count * layout::DIR_ENTRY_SIZE;
        if h.symbols_offset != symbols_offset as u64
            || h.directory_offset != directory_offset as u64
        {
            return Err(corrupt("symbol table or directory offset".into()));
        }
        if directory_end as u64 > total {
            return Err(corrupt(format!(
                "directory ends at {directory_end}, segment at {total}"
            )));
        }

        let mut symbols = Vec::with_capacity(symbol_count);
        for i in 0..symbol_count {
            let at = symbols_offset + i * layout::SYMBOL_ENTRY_SIZE + sym::NAME;
            let words = std::array::from_fn(|k| word(at + 8 * k));
            let name = layout::name_from_words(words)
                .ok_or_else(|| corrupt(format!("symbol {i} has an invalid name")))?;
            symbols.push(name);
        }
        let mut specs = Vec::with_capacity(ring_count);
        let mut stored_offsets = Vec::with_capacity(ring_count);
        for i in 0..ring_count {
            let at = directory_offset + i * layout::DIR_ENTRY_SIZE;
            let symbol_index = word(at + dir::SYMBOL_INDEX);
            let tf = word(at + dir::TIMEFRAME);
            let capacity = word(at + dir::CAPACITY);
            if symbol_index >= symbol_count as u64 {
                return Err(corrupt(format!("ring {i} names symbol {symbol_index}")));
            }
            let timeframe = u32::try_from(tf)
                .ok()
                .and_then(Timeframe::from_mt5_code)
                .ok_or_else(|| corrupt(format!("ring {i} has timeframe code {tf}")))?;
            if !(1..=u64::from(MAX_CAPACITY)).contains(&capacity) {
                return Err(corrupt(format!("ring {i} has capacity {capacity}")));
            }
            specs.push(RingSpec {
                symbol_index: symbol_index as u32,
                timeframe,
                capacity: capacity as u32,
            });
            stored_offsets.push(word(at + dir::RING_OFFSET));
        }
        // One name per symbol, one ring per symbol and timeframe: a reader looks rings up by
        // name, so a repeat would let one of two rings answer for both.
        let mut seen = std::collections::HashSet::with_capacity(symbols.len());
        if let Some(dup) = symbols.iter().find(|s| !seen.insert(s.as_str())) {
            return Err(corrupt(format!("symbol {dup} appears twice")));
        }
        let mut seen = std::collections::HashSet::with_capacity(specs.len());
        if let Some(dup) = specs
            .iter()
            .find(|r| !seen.insert((r.symbol_index, r.timeframe)))
        {
            return Err(corrupt(format!(
                "two {} {} rings",
                symbols[dup.symbol_index as usize], dup.timeframe
            )));
        }
        let layout = Layout::from_parts(symbols, specs);
        let placement = layout.placement();
        let stored_hash = h.layout_hash;
        if stored_hash != placement.hash {
            return Err(OpenError::LayoutHashMismatch {
                path: path.to_owned(),
                found: stored_hash,
                expected: placement.hash,
            });
        }
        // Ring offsets are not trusted from the file: they must equal the computed placement,
        // which lies inside `total`, which lies inside the mapping.
        if placement.total_size as u64 != total
            || stored_offsets
                .iter()
                .zip(&placement.ring_offsets)
                .any(|(&s, &c)| s != c as u64)
        {
            return Err(corrupt("ring offsets differ from the layout".into()));
        }
        let rings = layout
            .rings()
            .iter()
            .zip(&placement.ring_offsets)
            .map(|(r, &base)| RingRef::new(base, r.capacity, mem))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| corrupt("a ring lies outside the file".into()))?;
        Ok(Reader {
            map,
            file,
            lock_probe,
            wake,
            path: path.to_owned(),
            trust: trust.clone(),
            layout,
            rings,
            symbols_offset,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            stall_after: DEFAULT_STALL_AFTER,
            retries: AtomicU64::new(0),
            checked: (0..ring_count).map(|_| AtomicU64::new(0)).collect(),
        })
    }

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

    /// Sets how many tries a read makes before returning [`ReadError::Busy`] (at least 1).
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

    /// Where the segment stands now, to wait from with [`wait_for_change`](Self::wait_for_change).
    pub fn changes(&self) -> ChangeToken {
        match self.wake_word() {
            // Acquire: the reader's half of the wake protocol (see `wake.rs`).
            Some(w) => ChangeToken(u64::from(w.load(Ordering::Acquire))),
            None => ChangeToken(self.mem().load(hdr::LAST_UPDATE_NS, Ordering::Acquire)),
        }
    }

    /// The header's wake word, if the writer keeps it (see `wake.rs`).
    fn wake_word(&self) -> Option<&std::sync::atomic::AtomicU32> {
        // Relaxed: a flag set once per file; either answer is safe (see `wake.rs`).
        (self.mem().load(hdr::WAKE_KIND, Ordering::Relaxed) == 1)
            .then(|| self.mem().futex_word(hdr::WAKE_WORD))
    }

    /// Sleeps until the writer publishes a change after `since`, at most `timeout`; never
    /// longer, whatever the writer does. The writer wakes sleeping readers through a futex
    /// on a word of the segment's header (microseconds after it publishes); nothing a reader
    /// may write takes part, so no other reader can delay or spin this one. A writer that
    /// stops or dies while the reader sleeps is reported within [`crate::MAX_WAIT_SLICE`]
    /// (100 ms).
    ///
    /// ```
    /// use std::time::Duration;
    /// use shm_core::{Candle, Layout, Reader, SegmentPath, Timeframe, WaitOutcome, Writer};
    ///
    /// # let dir = std::env::temp_dir().join(format!("shm-core-doc-wait-{}", std::process::id()));
    /// # let path = SegmentPath::at(&dir);
    /// let mut layout = Layout::new();
    /// layout.add_ring("EURUSD", Timeframe::M1, 100)?;
    /// let mut writer = Writer::create(&path, &layout, &Default::default())?;
    /// writer.set_running();
    /// let reader = Reader::open(&path)?;
    /// let since = reader.changes();
    ///
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         let m1 = writer.ring("EURUSD", Timeframe::M1).unwrap();
    ///         writer.update_forming(m1, &Candle::flat(60, 1.1));
    ///         writer.notify(); // after each batch of changes
    ///     });
    ///     let woke = reader.wait_for_change(since, Duration::from_secs(10));
    ///     assert!(matches!(woke, WaitOutcome::Changed(_)));
    /// });
    /// # drop(writer); shm_core::remove_segment(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_for_change(&self, since: ChangeToken, timeout: Duration) -> WaitOutcome {
        let deadline = Instant::now() + timeout;
        let not_publishing = |r: &Reader| {
            let l = r.status().liveness;
            (!l.is_publishing()).then_some(l)
        };
        if let Some(l) = not_publishing(self) {
            return WaitOutcome::WriterGone(l);
        }
        let changed = match (&self.wake, self.wake_word()) {
            (Some(w), Some(word)) if since.0 <= u64::from(u32::MAX) => w
                .wait(word, since.0 as u32, deadline, || {
                    not_publishing(self).is_some()
                })
                .map(|v| ChangeToken(u64::from(v))),
            _ => {
                let mut slept = Duration::ZERO;
                loop {
                    let now = self.changes();
                    if now != since {
                        break Some(now);
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break None;
                    }
                    if slept >= wake::MAX_SLICE {
                        slept = Duration::ZERO;
                        if not_publishing(self).is_some() {
                            break None;
                        }
                    }
                    let step = left.min(Duration::from_millis(1));
                    std::thread::sleep(step);
                    slept += step;
                }
            }
        };
        match changed {
            // A change came from a writer that was publishing a moment ago; only its state
            // word (a stop it announced with its last wake-up) is checked, not the lock, so
            // the wake-up path makes no system call.
            Some(token) => match self.writer_state() {
                Some(WriterState::Stopped) => WaitOutcome::WriterGone(Liveness::Stopped),
                Some(WriterState::Replaced) => WaitOutcome::WriterGone(Liveness::Replaced),
                _ => WaitOutcome::Changed(token),
            },
            None => match not_publishing(self) {
                Some(l) => WaitOutcome::WriterGone(l),
                None => WaitOutcome::TimedOut,
            },
        }
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

/// Where a reader stands in the stream of changes, for [`Reader::wait_for_change`]: the
/// header's wake word, or (from a writer that does not keep it) the time of the last candle
/// change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeToken(u64);

impl ChangeToken {
    /// How many times the writer published between `earlier` and this token: exact with the
    /// wake word (its 32-bit counter, wrapping), else 1 for any difference.
    pub fn steps_since(self, earlier: ChangeToken) -> u64 {
        if self.0 <= u64::from(u32::MAX) && earlier.0 <= u64::from(u32::MAX) {
            u64::from((self.0 as u32).wrapping_sub(earlier.0 as u32))
        } else {
            u64::from(self != earlier)
        }
    }
}

/// How [`Reader::wait_for_change`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// Candles changed; wait from this token next.
    Changed(ChangeToken),
    /// Nothing changed before the timeout.
    TimedOut,
    /// The writer is not publishing any more: stopped, gone or replaced (see the liveness).
    WriterGone(Liveness),
}

/// Each candle a ring closes, as it closes (see [`RingReader::closed_bars`]).
#[derive(Debug)]
pub struct ClosedBars<'a> {
    ring: RingReader<'a>,
    /// The position of the next closed candle to hand out.
    next: u64,
    token: ChangeToken,
}

/// What [`ClosedBars::next_bar`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NextBar {
    /// A newly closed candle.
    Closed(Candle),
    /// None closed before the timeout.
    TimedOut,
    /// The writer is not publishing any more.
    WriterGone(Liveness),
}

impl ClosedBars<'_> {
    /// The next candle the ring closes, waiting at most `timeout`. Candles the ring no longer
    /// holds (a reader far behind a fast writer) are skipped, oldest first.
    pub fn next_bar(&mut self, timeout: Duration) -> Result<NextBar, ReadError> {
        let deadline = Instant::now() + timeout;
        loop {
            let head = self.ring.stats()?.closed_total;
            if self.next < head {
                let oldest = head.saturating_sub(u64::from(self.ring.capacity()));
                self.next = self.next.max(oldest);
                match self.ring.slot_at(self.next)? {
                    Slot::Candle(c) => {
                        self.next += 1;
                        return Ok(NextBar::Closed(c));
                    }
                    // A slot a restart dropped is passed over.
                    Slot::Dropped => self.next += 1,
                    // Lapped while reading: the head, looked at again, moves `next` on.
                    Slot::Lapped => {}
                }
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.ring.reader.wait_for_change(self.token, left) {
                WaitOutcome::Changed(t) => self.token = t,
                WaitOutcome::TimedOut => return Ok(NextBar::TimedOut),
                WaitOutcome::WriterGone(l) => {
                    // Bars closed before the writer went are still handed out.
                    if self.ring.stats()?.closed_total > self.next {
                        continue;
                    }
                    return Ok(NextBar::WriterGone(l));
                }
            }
        }
    }
}

impl Iterator for ClosedBars<'_> {
    type Item = Candle;

    /// Waits as long as it takes; `None` once the writer stops or dies (or a read stays busy).
    fn next(&mut self) -> Option<Candle> {
        loop {
            match self.next_bar(Duration::from_secs(3600)) {
                Ok(NextBar::Closed(c)) => return Some(c),
                Ok(NextBar::TimedOut) => continue,
                Ok(NextBar::WriterGone(_)) | Err(_) => return None,
            }
        }
    }
}

/// The last tick of a symbol, as recorded by the writer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TickInfo {
    /// The tick's time, epoch ms, server time.
    pub server_time_ms: i64,
    /// When the writer processed it (unix ns, writer clock at its last heartbeat).
    pub received_ns: u64,
    /// Bid price.
    pub bid: f64,
    /// Ask price.
    pub ask: f64,
}

/// Counts and times of one ring.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RingStats {
    /// Closed candles ever pushed into the ring.
    pub closed_total: u64,
    /// Candles held now: closed ones (at most the capacity) plus the forming one.
    pub buffered: u64,
    /// When the ring last changed (unix ns); 0 if never.
    pub last_change_ns: u64,
    /// Open time of the newest candle (forming if any), server time.
    pub newest_time: Option<i64>,
}

/// One ring of a [`Reader`].
#[derive(Debug, Clone, Copy)]
pub struct RingReader<'a> {
    reader: &'a Reader,
    /// Index into `reader.rings` and `reader.layout.rings()`; in bounds by construction.
    index: usize,
}

impl<'a> RingReader<'a> {
    fn spec(&self) -> &RingSpec {
        &self.reader.layout.rings()[self.index]
    }

    fn raw(&self) -> &RingRef {
        &self.reader.rings[self.index]
    }

    /// The ring's position in the segment's layout (`reader.layout().rings()`), stable for as
    /// long as the reader stays attached to the same segment.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The ring's symbol.
    pub fn symbol(&self) -> &str {
        self.reader.layout.symbol(self.spec().symbol_index)
    }

    /// The ring's timeframe.
    pub fn timeframe(&self) -> Timeframe {
        self.spec().timeframe
    }

    /// Whether the writer's source said it does not know this ring's symbol (a misspelt symbol
    /// or broker suffix, say). The ring then only holds what it held before, if anything.
    pub fn unknown_to_source(&self) -> bool {
        self.raw().source_flags(self.reader.mem()) & 1 != 0
    }

    /// How many closed candles the ring keeps.
    pub fn capacity(&self) -> u32 {
        self.spec().capacity
    }

    /// Fills `out` with the newest `n` candles, oldest first. The newest is the forming candle
    /// (`forming == true`) when there is one. Fewer than `n` if the ring holds fewer (or a
    /// restart dropped a torn one). Every candle is checked first ([`ReadError::Invalid`]).
    pub fn read_last(&self, n: usize, out: &mut Vec<Candle>) -> Result<(), ReadError> {
        if n == 0 {
            out.clear();
            return Ok(());
        }
        let r = self.raw();
        let control = r.snapshot(
            self.reader.mem(),
            n,
            true,
            out,
            self.reader.max_attempts,
            &self.reader.retries,
        )?;
        // Checked before the forming candle joins `out`: it is still in registers.
        self.check(out, control.forming.as_ref(), &control)?;
        out.extend(control.forming);
        Ok(())
    }

    /// Refuses a snapshot that breaks the writer's rules (see `validate.rs`), and clears it.
    /// Closed candles an earlier read of this reader checked are not checked again: a closed
    /// position is written once (only the newest is ever corrected, and it is always checked),
    /// so this costs a few candles a read rather than all of them (docs/BENCHMARKS.md).
    #[inline]
    fn check(
        &self,
        out: &mut Vec<Candle>,
        forming: Option<&Candle>,
        control: &Control,
    ) -> Result<(), ReadError> {
        let checked = &self.reader.checked[self.index];
        // Relaxed: every value ever stored is a true statement about positions that do not
        // change, so an old one only costs a few more candles checked.
        let known = Checked::unpack(checked.load(Ordering::Relaxed));
        let skip = if control.dropped {
            0
        } else {
            known.skippable(control.first)
        };
        let skip = skip.min(out.len());
        validate::check(self.timeframe(), &out[skip..], forming).map_err(|(time, why)| {
            out.clear();
            ReadError::Invalid { time, why }
        })?;
        if !control.dropped {
            let now = known.extended(control.first, control.head);
            if now != known {
                if let Some(w) = now.pack() {
                    checked.store(w, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }

    /// Fills `out` with the newest `closed` closed candles, oldest first, and returns the
    /// forming candle of the same snapshot; checked as in [`read_last`](Self::read_last).
    pub fn snapshot(
        &self,
        closed: usize,
        out: &mut Vec<Candle>,
    ) -> Result<Option<Candle>, ReadError> {
        let r = self.raw();
        let control = r.snapshot(
            self.reader.mem(),
            closed,
            false,
            out,
            self.reader.max_attempts,
            &self.reader.retries,
        )?;
        self.check(out, control.forming.as_ref(), &control)?;
        Ok(control.forming)
    }

    /// The newest candle: the forming one if any, else the newest closed one.
    pub fn latest(&self) -> Result<Option<Candle>, ReadError> {
        let mut one = Vec::with_capacity(2);
        self.read_last(1, &mut one)?;
        Ok(one.pop())
    }

    /// The closed candle at `position` (0 is the first ever pushed; the newest is
    /// `closed_total - 1`), or `None` if the ring no longer holds it (it was lapped, or a
    /// restart dropped it as torn). The candle is checked on its own ([`Candle::defect`] and
    /// alignment).
    pub fn closed_at(&self, position: u64) -> Result<Option<Candle>, ReadError> {
        Ok(match self.slot_at(position)? {
            Slot::Candle(c) => Some(c),
            Slot::Lapped | Slot::Dropped => None,
        })
    }

    /// What the slot of `position` holds; a candle is checked on its own first.
    fn slot_at(&self, position: u64) -> Result<Slot, ReadError> {
        let slot = self.raw().read_slot(
            self.reader.mem(),
            position,
            self.reader.max_attempts,
            &self.reader.retries,
        )?;
        if let Slot::Candle(c) = &slot {
            validate::check(self.timeframe(), std::slice::from_ref(c), None)
                .map_err(|(time, why)| ReadError::Invalid { time, why })?;
        }
        Ok(slot)
    }

    /// Each candle this ring closes from now on, in order, as it closes: the writer wakes the
    /// iterator (see [`Reader::wait_for_change`]), nothing polls. The iterator ends when the
    /// writer stops or dies; [`ClosedBars::next_bar`] waits with a timeout instead.
    ///
    /// ```
    /// use shm_core::{Candle, Layout, Reader, SegmentPath, Timeframe, Writer};
    ///
    /// # let dir = std::env::temp_dir().join(format!("shm-core-doc-bars-{}", std::process::id()));
    /// # let path = SegmentPath::at(&dir);
    /// let mut layout = Layout::new();
    /// layout.add_ring("EURUSD", Timeframe::M1, 100)?;
    /// let mut writer = Writer::create(&path, &layout, &Default::default())?;
    /// writer.set_running();
    /// let reader = Reader::open(&path)?;
    /// let bars = reader.ring("EURUSD", Timeframe::M1).unwrap().closed_bars();
    ///
    /// std::thread::scope(|s| {
    ///     s.spawn(move || {
    ///         let m1 = writer.ring("EURUSD", Timeframe::M1).unwrap();
    ///         for minute in 1..=3 {
    ///             writer.push_closed(m1, &Candle::flat(minute * 60, 1.1));
    ///             writer.notify();
    ///         }
    ///         // Dropping the writer (a clean stop) ends the iteration.
    ///     });
    ///     let times: Vec<i64> = bars.map(|c| c.time).collect();
    ///     assert_eq!(times, [60, 120, 180]);
    /// });
    /// # shm_core::remove_segment(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn closed_bars(self) -> ClosedBars<'a> {
        // The token first, then the head: a bar closed between the two wakes the first wait.
        let token = self.reader.changes();
        let next = self.stats().map_or(0, |s| s.closed_total);
        ClosedBars {
            ring: self,
            next,
            token,
        }
    }

    /// Counts and times.
    pub fn stats(&self) -> Result<RingStats, ReadError> {
        let r = self.raw();
        let mem = self.reader.mem();
        let control = r.read_control(mem, self.reader.max_attempts, &self.reader.retries)?;
        let newest_time = match control.forming {
            Some(f) => Some(f.time),
            None if control.head > 0 => match r.read_slot(
                mem,
                control.head - 1,
                self.reader.max_attempts,
                &self.reader.retries,
            )? {
                Slot::Candle(c) => Some(c.time),
                Slot::Lapped | Slot::Dropped => None,
            },
            None => None,
        };
        Ok(RingStats {
            closed_total: control.head,
            buffered: control.head.min(r.capacity()) + u64::from(control.forming.is_some()),
            last_change_ns: control.last_change_ns,
            newest_time,
        })
    }
}
