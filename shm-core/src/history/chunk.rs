//! One chunk file of a stream: the writer's view ([`ChunkMut`], appends) and a reader's
//! ([`Chunk`], checked once, then read through atomic loads with no system call).
//!
//! ## Orderings
//!
//! | word | writer | reader | why it is enough |
//! |---|---|---|---|
//! | records `[count, count + n)` | Relaxed stores | Relaxed loads, only below the count it loaded | the count's Release store orders them before it |
//! | `count` | Release store, after the records | Acquire load, before any record | pairs with the Release: on ARM as on x86, a reader that sees count `c` sees every word of the records below `c` |
//! | `magic` | Release store, after every other header word | Acquire load, first | a reader that sees the magic sees the header it completes |
//! | `Area::ready` (in this process, not the file) | the helper's Release `fetch_max`, after its reservation and fault-in returned | the writer's Acquire load before it uses records below it | the helper's system calls are done before the writer stores into those records; a reservation not yet seen is made again by the writer (idempotent) |
//!
//! Records below the count are never written again, so a reader that checked them once (their
//! check word, their order) may serve them without checking them again.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::files;
use crate::history::format::{
    self, hw, StreamKind, CHUNK_HEADER_SIZE, HISTORY_MAGIC, HISTORY_VERSION, STORED_RECORD_SIZE,
    STORED_WORDS,
};
use crate::history::helper::Helper;
use crate::history::HistoryError;
use crate::mem::{Mapping, MappingMut, Mem};
use crate::trust::Trust;

/// Records reserved on disk at a time ahead of the writer: a full disk is an error of the
/// reservation, never a SIGBUS of a store into the mapping. The reserved records' pages are
/// faulted in for writing at once (`MappingMut::prefault`), so an append is stores, not a
/// page fault every 56 records: two system calls every 4,096 ticks (288 KB), or every 512
/// bars, which come one a minute.
fn reserve_step(kind: StreamKind) -> u64 {
    match kind {
        StreamKind::Ticks => 4096,
        StreamKind::Bars(_) => 512,
    }
}

/// How many records ahead an append asks for the cache lines it will write (about 300
/// bytes: a few appends' time to fetch them).
const PREFETCH_AHEAD: u64 = 4;

/// The largest capacity a reader accepts from a header: the writer's are far below it.
const MAX_CAPACITY: u64 = 1 << 24;

/// Bytes of a chunk of `capacity` records.
pub(crate) fn chunk_len(capacity: u64) -> u64 {
    CHUNK_HEADER_SIZE as u64 + capacity * STORED_RECORD_SIZE as u64
}

/// The byte offset of record `i`.
#[inline(always)]
fn record_at(i: u64) -> usize {
    CHUNK_HEADER_SIZE + i as usize * STORED_RECORD_SIZE
}

/// Record `i`'s words, loaded one by one (Relaxed: see the table above). The caller has
/// checked that `i` is below the capacity the mapping was checked against.
#[inline(always)]
fn load_record(mem: &Mem, i: u64) -> [u64; STORED_WORDS] {
    let at = record_at(i);
    let mut w = [0u64; STORED_WORDS];
    for (k, word) in w.iter_mut().enumerate() {
        *word = mem.load(at + 8 * k, Ordering::Relaxed);
    }
    w
}

/// A chunk's file and writable mapping, shared by its writer and the store's helper thread
/// (`history::helper`), which makes the next records ready ahead of the writer.
#[derive(Debug)]
pub(crate) struct Area {
    file: File,
    map: MappingMut,
    /// Records the helper has reserved on disk and faulted in (see the table above).
    ready: AtomicU64,
}

impl Area {
    /// Reserves the disk blocks of the records below `upto` and faults in the pages of
    /// records `from..upto` for writing. Idempotent: the writer and the helper may both do it.
    pub(crate) fn prepare(&self, from: u64, upto: u64) -> std::io::Result<()> {
        files::reserve(&self.file, record_at(upto))?;
        self.map
            .prefault(record_at(from), record_at(upto) - record_at(from));
        // Release: the reservation and fault-in above are done before a writer that loads
        // this count stores into those records (see the table above).
        self.ready.fetch_max(upto, Ordering::Release);
        Ok(())
    }
}

/// The writer's chunk: the last of its stream, appended to.
#[derive(Debug)]
pub(crate) struct ChunkMut {
    pub(crate) path: PathBuf,
    area: Arc<Area>,
    pub(crate) capacity: u64,
    /// Records committed (published with the count word).
    pub(crate) count: u64,
    /// Records whose disk blocks are reserved.
    reserved: u64,
    /// Records reserved at a time.
    step: u64,
    /// The key (time, or time_msc) of the newest record.
    pub(crate) newest: Option<i64>,
    /// The key of the oldest record.
    pub(crate) oldest: Option<i64>,
}

impl ChunkMut {
    /// Creates chunk `sequence` of a stream at `path`: built under a temporary name and given
    /// its name complete, so a reader never finds a half-made header.
    pub(crate) fn create(
        path: &Path,
        kind: StreamKind,
        symbol: &str,
        sequence: u64,
        created_ns: u64,
        mode: u32,
    ) -> Result<ChunkMut, HistoryError> {
        let io = |source| HistoryError::io(path, source);
        let capacity = kind.capacity();
        let len = chunk_len(capacity);
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let file = files::create_new(&tmp, mode).map_err(io)?;
        let built = (|| {
            file.set_len(len)?;
            let reserved = reserve_step(kind).min(capacity);
            files::reserve(&file, record_at(reserved))?;
            // Its pages are faulted in by the helper at the first append (see `append`).
            let map = MappingMut::read_write(&file, len as usize)?;
            let mem = map.mem();
            let h = |off, v| mem.store(off, v, Ordering::Relaxed);
            h(hw::VERSION, HISTORY_VERSION);
            h(hw::KIND, kind.word());
            h(hw::RECORD_SIZE, STORED_RECORD_SIZE as u64);
            h(hw::CAPACITY, capacity);
            h(hw::TIMEFRAME, kind.timeframe_word());
            h(hw::SEQUENCE, sequence);
            h(hw::CREATED_NS, created_ns);
            for (i, w) in format::symbol_words(symbol).iter().enumerate() {
                h(hw::SYMBOL + 8 * i, *w);
            }
            h(hw::COUNT, 0);
            // Release: the header words above are visible to whoever sees the magic.
            mem.store(hw::MAGIC, HISTORY_MAGIC, Ordering::Release);
            Ok::<_, std::io::Error>((map, reserved))
        })();
        let (map, reserved) = match built.and_then(|m| files::publish_new(&tmp, path).map(|()| m)) {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(io(e));
            }
        };
        Ok(ChunkMut {
            path: path.to_owned(),
            area: Arc::new(Area {
                file,
                map,
                ready: AtomicU64::new(reserved),
            }),
            capacity,
            count: 0,
            reserved,
            step: reserve_step(kind),
            newest: None,
            oldest: None,
        })
    }

    /// Opens the newest chunk of a stream to go on appending, after checking it as a reader
    /// would. Records past the first one that fails its check (a power cut lost its page) are
    /// dropped: the count goes back to the intact prefix, and the number dropped is returned.
    pub(crate) fn reopen(
        path: &Path,
        kind: StreamKind,
        symbol: &str,
    ) -> Result<(ChunkMut, u64), HistoryError> {
        let io = |source| HistoryError::io(path, source);
        let file = files::open(path, true).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        files::regular(&meta)
            .and_then(|()| files::owned_by_us(&meta))
            .map_err(|why| HistoryError::Untrusted {
                path: path.to_owned(),
                why,
            })?;
        let capacity = kind.capacity();
        let len = chunk_len(capacity);
        if meta.len() < len {
            return Err(HistoryError::Damaged {
                path: path.to_owned(),
                why: format!("{} bytes, where its chunk has {len}", meta.len()),
            });
        }
        let map = MappingMut::read_write(&file, len as usize).map_err(io)?;
        check_header(map.mem(), path, kind, symbol, Some(capacity))?;
        let stored = map.mem().load(hw::COUNT, Ordering::Acquire).min(capacity);
        let (intact, oldest, newest) = intact_prefix(map.mem(), kind, stored);
        if intact < stored {
            map.mem().store(hw::COUNT, intact, Ordering::Release);
        }
        let reserved = (intact + reserve_step(kind)).min(capacity);
        files::reserve(&file, record_at(reserved)).map_err(io)?;
        map.prefault(record_at(intact), record_at(reserved) - record_at(intact));
        Ok((
            ChunkMut {
                path: path.to_owned(),
                area: Arc::new(Area {
                    file,
                    map,
                    ready: AtomicU64::new(reserved),
                }),
                capacity,
                count: intact,
                reserved,
                step: reserve_step(kind),
                newest,
                oldest,
            },
            stored - intact,
        ))
    }

    /// The chunk's file and mapping, for the helper to drop when the chunk is sealed.
    pub(crate) fn area(&self) -> Arc<Area> {
        Arc::clone(&self.area)
    }

    /// Whether every record is used.
    pub(crate) fn full(&self) -> bool {
        self.count == self.capacity
    }

    /// How many of the last records share the newest key (the ticks of the newest stored
    /// millisecond, which a source resending from that millisecond must not store twice).
    pub(crate) fn at_newest(&self) -> u64 {
        let Some(newest) = self.newest else {
            return 0;
        };
        let mem = self.area.map.mem();
        let mut n = 0;
        // Relaxed: this writer wrote (or reopened and checked) every record below `count`.
        while n < self.count
            && mem.load(record_at(self.count - 1 - n), Ordering::Relaxed) as i64 == newest
        {
            n += 1;
        }
        n
    }

    /// Bytes this chunk takes on disk, about: its header and its reserved records.
    pub(crate) fn bytes(&self) -> u64 {
        record_at(self.reserved) as u64
    }

    /// Appends one record (built for index [`count`](Self::count)), its blocks reserved
    /// first: on a full disk the error comes back and nothing is written. At the first
    /// record of a reserved step, `helper` is asked to make the next one ready; a step it has
    /// not made ready when the writer gets there is reserved here.
    #[inline]
    pub(crate) fn append(
        &mut self,
        words: &[u64; STORED_WORDS],
        key: i64,
        helper: &Helper,
    ) -> std::io::Result<()> {
        debug_assert!(!self.full());
        if self.count == self.reserved {
            let next = (self.reserved + self.step).min(self.capacity);
            // Acquire: see `Area::prepare` and the table above.
            if self.area.ready.load(Ordering::Acquire) < next {
                self.area.prepare(self.reserved, next)?;
            }
            self.reserved = next;
        }
        if self.count == 0 {
            // A new chunk: its first step's pages (reserved when it was made).
            helper.prepare(&self.area, 0, self.reserved);
        }
        if self.count + self.step == self.reserved && self.reserved < self.capacity {
            let next = (self.reserved + self.step).min(self.capacity);
            helper.prepare(&self.area, self.reserved, next);
        }
        let at = record_at(self.count);
        let mem = self.area.map.mem();
        // The record four ahead: its lines are fetched for writing while these are written.
        if self.count + PREFETCH_AHEAD < self.reserved {
            mem.prefetch_write(record_at(self.count + PREFETCH_AHEAD), STORED_RECORD_SIZE);
        }
        for (k, &w) in words.iter().enumerate() {
            // Relaxed: published by the count's Release store below.
            mem.store(at + 8 * k, w, Ordering::Relaxed);
        }
        self.count += 1;
        // Release: the record's words above are visible to a reader that sees this count.
        mem.store(hw::COUNT, self.count, Ordering::Release);
        self.newest = Some(key);
        self.oldest.get_or_insert(key);
        Ok(())
    }
}

/// The newest key of the sealed chunk at `path` and how many of its last records share it
/// (`None` if it holds none, or cannot be read as a chunk of this stream written by this
/// account): what a writer reopening the next chunk, empty or holding only that key, must know
/// of the one before.
pub(crate) fn tail_of(path: &Path, kind: StreamKind, symbol: &str) -> Option<(i64, u64)> {
    let trust = Trust::for_process().ok()?;
    let mut chunk = Chunk::open(path, &trust, kind, symbol).ok()?;
    let count = chunk.count().ok()?;
    let newest = chunk.key(count.checked_sub(1)?);
    let at = (0..count)
        .rev()
        .take_while(|&i| chunk.key(i) == newest)
        .count();
    Some((newest, at as u64))
}

/// The longest prefix of `count` records that are intact and in order, with its first and
/// last keys.
fn intact_prefix(mem: &Mem, kind: StreamKind, count: u64) -> (u64, Option<i64>, Option<i64>) {
    let (mut oldest, mut newest) = (None, None::<i64>);
    for i in 0..count {
        let w = load_record(mem, i);
        let key = w[0] as i64;
        let ordered = newest.is_none_or(|n| match kind {
            StreamKind::Bars(_) => key > n,
            StreamKind::Ticks => key >= n,
        });
        if !format::intact(i, &w) || !ordered || !record_valid(kind, &w) {
            return (i, oldest, newest);
        }
        oldest.get_or_insert(key);
        newest = Some(key);
    }
    (count, oldest, newest)
}

/// Whether an intact record keeps the segment's rules for its kind (a forged or buggy one
/// that hashes right is still refused).
fn record_valid(kind: StreamKind, w: &[u64; STORED_WORDS]) -> bool {
    match kind {
        StreamKind::Bars(tf) => {
            let (c, _) = format::bar_from(w);
            c.defect().is_none() && tf.bar_start(c.time) == c.time
        }
        StreamKind::Ticks => format::tick_from(w).0.defect().is_none(),
    }
}

/// Checks a mapped header against the stream it should belong to.
fn check_header(
    mem: &Mem,
    path: &Path,
    kind: StreamKind,
    symbol: &str,
    capacity: Option<u64>,
) -> Result<u64, HistoryError> {
    let damaged = |why: String| HistoryError::Damaged {
        path: path.to_owned(),
        why,
    };
    let magic = mem.load(hw::MAGIC, Ordering::Acquire);
    if magic != HISTORY_MAGIC {
        return Err(damaged(format!("magic {magic:#018x}, not MTFHIST1")));
    }
    let version = mem.load(hw::VERSION, Ordering::Relaxed);
    if version != HISTORY_VERSION {
        return Err(HistoryError::Version {
            path: path.to_owned(),
            found: version,
        });
    }
    let want = [
        (hw::KIND, kind.word(), "kind"),
        (hw::RECORD_SIZE, STORED_RECORD_SIZE as u64, "record size"),
        (hw::TIMEFRAME, kind.timeframe_word(), "timeframe"),
    ];
    for (off, expected, what) in want {
        let found = mem.load(off, Ordering::Relaxed);
        if found != expected {
            return Err(damaged(format!("{what} {found}, expected {expected}")));
        }
    }
    let words = format::symbol_words(symbol);
    for (i, w) in words.iter().enumerate() {
        if mem.load(hw::SYMBOL + 8 * i, Ordering::Relaxed) != *w {
            return Err(damaged(format!(
                "it belongs to another symbol than {symbol}"
            )));
        }
    }
    let cap = mem.load(hw::CAPACITY, Ordering::Relaxed);
    if cap == 0 || cap > MAX_CAPACITY || capacity.is_some_and(|c| c != cap) {
        return Err(damaged(format!("capacity {cap}")));
    }
    Ok(cap)
}

/// A reader's chunk: mapped read-only after its header and length were checked.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub(crate) path: PathBuf,
    map: Mapping,
    pub(crate) capacity: u64,
    pub(crate) kind: StreamKind,
    /// Records below this index were checked (check word, order, rules): served unchecked.
    verified: u64,
    /// The key of the newest checked record.
    verified_newest: Option<i64>,
}

impl Chunk {
    /// Maps the chunk at `path`, if its owner is trusted, its header is the stream's and its
    /// length holds its capacity (a page past the end would be SIGBUS).
    pub(crate) fn open(
        path: &Path,
        trust: &Trust,
        kind: StreamKind,
        symbol: &str,
    ) -> Result<Chunk, HistoryError> {
        let io = |source| HistoryError::io(path, source);
        let file = files::open(path, false).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        crate::history::trusted(path, &meta, trust)?;
        if meta.len() < CHUNK_HEADER_SIZE as u64 {
            return Err(HistoryError::Damaged {
                path: path.to_owned(),
                why: format!("{} bytes, shorter than a header", meta.len()),
            });
        }
        let head = Mapping::read_only(&file, CHUNK_HEADER_SIZE).map_err(io)?;
        let capacity = check_header(head.mem(), path, kind, symbol, None)?;
        let len = chunk_len(capacity);
        if meta.len() < len {
            return Err(HistoryError::Damaged {
                path: path.to_owned(),
                why: format!("{} bytes, where its capacity needs {len}", meta.len()),
            });
        }
        let map = Mapping::read_only(&file, len as usize).map_err(io)?;
        Ok(Chunk {
            path: path.to_owned(),
            map,
            capacity,
            kind,
            verified: 0,
            verified_newest: None,
        })
    }

    /// The committed count, with every record below it checked: a record that fails is a
    /// typed error naming the file and the record, never served.
    pub(crate) fn count(&mut self) -> Result<u64, HistoryError> {
        // Acquire: pairs with the writer's Release store (see the table above).
        let count = self.map.mem().load(hw::COUNT, Ordering::Acquire);
        if count > self.capacity {
            return Err(HistoryError::Damaged {
                path: self.path.clone(),
                why: format!("count {count} over its capacity {}", self.capacity),
            });
        }
        while self.verified < count {
            let i = self.verified;
            let w = load_record(self.map.mem(), i);
            let key = w[0] as i64;
            let ordered = self.verified_newest.is_none_or(|n| match self.kind {
                StreamKind::Bars(_) => key > n,
                StreamKind::Ticks => key >= n,
            });
            if !format::intact(i, &w) || !ordered || !record_valid(self.kind, &w) {
                return Err(HistoryError::Damaged {
                    path: self.path.clone(),
                    why: format!(
                        "record {i} {}",
                        if format::intact(i, &w) {
                            "is out of order or breaks the record's rules"
                        } else {
                            "fails its check word"
                        }
                    ),
                });
            }
            self.verified_newest = Some(key);
            self.verified += 1;
        }
        Ok(count)
    }

    /// Record `i`'s words; `i` is below a count [`count`](Self::count) returned.
    #[inline(always)]
    pub(crate) fn words(&self, i: u64) -> [u64; STORED_WORDS] {
        assert!(i < self.verified, "record {i} was not checked");
        let at = record_at(i);
        let mem = self.map.mem();
        let mut w = [0u64; STORED_WORDS];
        for (k, word) in w.iter_mut().enumerate() {
            // SAFETY: `i < verified <= count <= capacity` (`count` refuses a larger count),
            // and `open` mapped `chunk_len(capacity)` = 128 + 72 × capacity bytes, so the
            // record's nine words, at `record_at(i) + 8k` (8-aligned: the header and the
            // records are whole words), end at or before the mapping's end. One bounds check
            // above for nine loads: a check per word cost a third of a long read.
            *word = unsafe { mem.load_unchecked(at + 8 * k, Ordering::Relaxed) };
        }
        w
    }

    /// Record `i`'s key (time, or time_msc).
    #[inline(always)]
    pub(crate) fn key(&self, i: u64) -> i64 {
        debug_assert!(i < self.verified);
        self.map.mem().load(record_at(i), Ordering::Relaxed) as i64
    }
}
