//! A reader's view of a store: [`History`] names the directory and the accounts trusted to
//! have written it; [`Stored`] maps one stream's chunks and answers ranges by time, with
//! binary searches over the mapped records and no system call unless a new chunk appeared.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use crate::candle::Candle;
use crate::history::chunk::Chunk;
use crate::history::format::{self, StreamKind, STORED_WORDS};
use crate::history::{list_chunks, HistoryError};
use crate::tick::Tick;
use crate::timeframe::Timeframe;
use crate::trust::Trust;

/// A store, as a reader sees it.
#[derive(Debug, Clone)]
pub struct History {
    dir: PathBuf,
    trust: Trust,
}

impl History {
    /// The store at `dir`, whose chunks are read if their owner is one of `trust`'s accounts
    /// (the segment's rule). Nothing is opened until a stream is read.
    pub fn at(dir: impl Into<PathBuf>, trust: Trust) -> History {
        History {
            dir: dir.into(),
            trust,
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The closed bars stored for one ring.
    pub fn bars(&self, symbol: &str, timeframe: Timeframe) -> StoredBars {
        Stored::new(self, symbol, StreamKind::Bars(timeframe))
    }

    /// The ticks stored for one symbol.
    pub fn ticks(&self, symbol: &str) -> StoredTicks {
        Stored::new(self, symbol, StreamKind::Ticks)
    }
}

/// A record a stream stores: a closed bar ([`Candle`]) or a [`Tick`].
pub trait StoredRecord: Copy + private::Sealed {
    /// Decodes checked stored words.
    #[doc(hidden)]
    fn from_stored(w: &[u64; STORED_WORDS]) -> Self;
}

mod private {
    pub trait Sealed {}
    impl Sealed for crate::Candle {}
    impl Sealed for crate::Tick {}
}

impl StoredRecord for Candle {
    #[inline(always)]
    fn from_stored(w: &[u64; STORED_WORDS]) -> Candle {
        format::bar_from(w).0
    }
}

impl StoredRecord for Tick {
    #[inline(always)]
    fn from_stored(w: &[u64; STORED_WORDS]) -> Tick {
        format::tick_from(w).0
    }
}

/// One stream of a store, mapped. Keys are bar open times (seconds) or tick times
/// (milliseconds), server time as the segment's.
#[derive(Debug)]
pub struct Stored<R> {
    dir: PathBuf,
    symbol: String,
    kind: StreamKind,
    trust: Trust,
    /// The mapped chunks, oldest first, with the count each had at the last [`sync`](Self::sync).
    chunks: Vec<(u64, Chunk, u64)>,
    _record: PhantomData<R>,
}

/// A ring's stored closed bars.
pub type StoredBars = Stored<Candle>;
/// A symbol's stored ticks.
pub type StoredTicks = Stored<Tick>;

impl<R: StoredRecord> Stored<R> {
    fn new(history: &History, symbol: &str, kind: StreamKind) -> Stored<R> {
        Stored {
            dir: history.dir.clone(),
            symbol: symbol.to_owned(),
            kind,
            trust: history.trust.clone(),
            chunks: Vec::new(),
            _record: PhantomData,
        }
    }

    /// Brings the view up to date: the counts of the mapped chunks (one atomic load each, and
    /// a check of each record the first time it is seen), and the directory listed again only
    /// when there is no chunk yet or the newest is full. A damaged chunk is an error, so a
    /// range across it is never answered short.
    pub fn sync(&mut self) -> Result<(), HistoryError> {
        let relist = self.chunks.last().is_none_or(|(_, c, n)| *n == c.capacity);
        if relist {
            self.relist()?;
        }
        let mut previous: Option<i64> = None;
        for (_, chunk, count) in &mut self.chunks {
            *count = chunk.count()?;
            if *count == 0 {
                continue;
            }
            let first = chunk.key(0);
            if previous.is_some_and(|p| match self.kind {
                StreamKind::Bars(_) => first <= p,
                StreamKind::Ticks => first < p,
            }) {
                return Err(HistoryError::Damaged {
                    path: chunk.path.clone(),
                    why: "its first record is older than the previous chunk's last".into(),
                });
            }
            previous = Some(chunk.key(*count - 1));
        }
        Ok(())
    }

    fn relist(&mut self) -> Result<(), HistoryError> {
        let listed = list_chunks(&self.dir, &self.symbol, self.kind)
            .map_err(|e| HistoryError::io(&self.dir, e))?;
        // Chunks retention removed are dropped (their mappings with them); new ones mapped.
        self.chunks
            .retain(|(seq, _, _)| listed.iter().any(|(s, _)| s == seq));
        for (seq, path) in listed {
            if self.chunks.iter().any(|(s, _, _)| *s == seq) {
                continue;
            }
            let chunk = Chunk::open(&path, &self.trust, self.kind, &self.symbol)?;
            let at = self.chunks.partition_point(|(s, _, _)| *s < seq);
            self.chunks.insert(at, (seq, chunk, 0));
        }
        Ok(())
    }

    /// Records held (at the last sync).
    pub fn len(&self) -> u64 {
        self.chunks.iter().map(|(_, _, n)| n).sum()
    }

    /// Whether the stream holds nothing (at the last sync).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The oldest key held.
    pub fn oldest(&self) -> Option<i64> {
        self.chunks
            .iter()
            .find(|(_, _, n)| *n > 0)
            .map(|(_, c, _)| c.key(0))
    }

    /// The newest key held.
    pub fn newest(&self) -> Option<i64> {
        self.chunks
            .iter()
            .rev()
            .find(|(_, _, n)| *n > 0)
            .map(|(_, c, n)| c.key(n - 1))
    }

    /// The first position whose key is at least `key` (`below` false) or more than `key`
    /// (`below` true): positions count records from the oldest held.
    fn bound(&self, key: i64, past: bool) -> u64 {
        let mut base = 0;
        for (_, chunk, n) in &self.chunks {
            let n = *n;
            if n == 0 {
                continue;
            }
            let last = chunk.key(n - 1);
            if (past && last <= key) || (!past && last < key) {
                base += n;
                continue;
            }
            let (mut lo, mut hi) = (0u64, n);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                let k = chunk.key(mid);
                if (past && k <= key) || (!past && k < key) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            return base + lo;
        }
        base
    }

    /// Calls `f` with the records at positions `[from, to)`, oldest first.
    fn each(&self, mut from: u64, to: u64, mut f: impl FnMut(&[u64; STORED_WORDS])) {
        let mut base = 0;
        for (_, chunk, n) in &self.chunks {
            let end = base + n;
            while from < to && from < end {
                f(&chunk.words(from - base));
                from += 1;
            }
            base = end;
            if from >= to {
                break;
            }
        }
    }

    /// How many records have keys from `from` to `to` (both inclusive).
    pub fn count_range(&self, from: i64, to: i64) -> u64 {
        self.bound(to, true).saturating_sub(self.bound(from, false))
    }

    /// Appends `f` of each record with a key from `from` to `to` (both inclusive), oldest
    /// first; at most `max` of them, the oldest.
    pub fn range_as<T>(
        &self,
        from: i64,
        to: i64,
        max: usize,
        out: &mut Vec<T>,
        mut f: impl FnMut(R) -> T,
    ) {
        let (a, b) = (self.bound(from, false), self.bound(to, true));
        let b = b.max(a).min(a.saturating_add(max as u64));
        out.reserve((b - a) as usize);
        self.each(a, b, |w| out.push(f(R::from_stored(w))));
    }

    /// Appends `f` of the newest `n` records with keys at most `to`, oldest first.
    pub fn last_as<T>(&self, to: i64, n: usize, out: &mut Vec<T>, mut f: impl FnMut(R) -> T) {
        let b = self.bound(to, true);
        let a = b.saturating_sub(n as u64);
        out.reserve((b - a) as usize);
        self.each(a, b, |w| out.push(f(R::from_stored(w))));
    }

    /// Appends `f` of the first `n` records with keys at least `from`, oldest first.
    pub fn first_as<T>(&self, from: i64, n: usize, out: &mut Vec<T>, mut f: impl FnMut(R) -> T) {
        let a = self.bound(from, false);
        let b = self.len().min(a.saturating_add(n as u64));
        out.reserve(b.saturating_sub(a) as usize);
        self.each(a, b, |w| out.push(f(R::from_stored(w))));
    }

    /// The keys after which the store may lack records (a writer restart, or a stretch a full
    /// disk cost): `(previous key, key)` pairs from `from` to `to`.
    pub fn holes(&self, from: i64, to: i64) -> Vec<(Option<i64>, i64)> {
        let (a, b) = (self.bound(from, false), self.bound(to, true));
        let mut out = Vec::new();
        let mut previous = None;
        let start = a.saturating_sub(1);
        let mut at = start;
        self.each(start, b, |w| {
            let marked = match self.kind {
                StreamKind::Bars(_) => format::bar_from(w).1,
                StreamKind::Ticks => format::tick_from(w).1,
            };
            let key = w[0] as i64;
            if marked && at >= a {
                out.push((previous, key));
            }
            previous = Some(key);
            at += 1;
        });
        out
    }
}
