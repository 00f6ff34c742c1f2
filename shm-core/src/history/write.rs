//! The store's writer: one stream per ring and one per symbol's ticks, each appending to its
//! newest chunk and starting the next when it is full; retention drops whole sealed chunks,
//! oldest first.
//!
//! A restart goes on where the last run stopped: each stream reopens its newest chunk, keeps
//! its intact prefix (a SIGKILL mid-append leaves at most a record past the count, which no
//! reader serves), and appends only what is newer than what it holds, so nothing is stored
//! twice. The first record a run appends to a stream that held records carries the
//! after-hole mark: what the feed gave while no writer ran may be missing before it.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use crate::candle::Candle;
use crate::history::chunk::{chunk_len, tail_of, ChunkMut};
use crate::history::format::{self, StreamKind, MARK_AFTER_HOLE};
use crate::history::helper::Helper;
use crate::history::keep::Keep;
use crate::history::{chunk_path, list_chunks, symbol_dir, HistoryError};
use crate::layout::Layout;
use crate::tick::Tick;

/// A sealed (full) chunk, by what retention needs of it.
#[derive(Debug)]
struct Sealed {
    path: PathBuf,
    /// The newest key, in seconds.
    newest_s: i64,
    bytes: u64,
}

/// How long a failed stream waits before it tries its disk again.
const RETRY_NS: u64 = 5_000_000_000;

/// One stream's writer.
#[derive(Debug)]
struct StreamWriter {
    symbol: String,
    kind: StreamKind,
    /// Permission bits of new chunks.
    mode: u32,
    sealed: VecDeque<Sealed>,
    current: Option<ChunkMut>,
    next_sequence: u64,
    /// The newest key stored (bars: time; ticks: time_msc).
    newest: Option<i64>,
    /// Records stored at the newest key (ticks sharing the newest millisecond), across
    /// chunks.
    at_newest: u64,
    /// Ticks at the newest stored millisecond that the run before stored and this one has not
    /// been sent again yet: a source that resends from that millisecond (a restart's copy
    /// from the terminal, a replay) has its first this many there skipped, and the rest of
    /// that millisecond stored. Zero once this run appended, until `resend_from_newest`.
    skip_at_newest: u64,
    /// The mark the next record carries.
    mark: u64,
    /// The closed bar held back: the source may still correct it (`amend_last_closed`).
    pending: Option<Candle>,
    /// When the stream failed (writer clock, ns); it retries after [`RETRY_NS`].
    failed_at: Option<u64>,
}

impl StreamWriter {
    fn open(
        dir: &Path,
        symbol: &str,
        kind: StreamKind,
        mode: u32,
    ) -> Result<(StreamWriter, u64), HistoryError> {
        let folder = symbol_dir(dir, symbol);
        make_dir(&folder, mode)?;
        let chunks = list_chunks(dir, symbol, kind).map_err(|e| HistoryError::io(&folder, e))?;
        let mut s = StreamWriter {
            symbol: symbol.to_owned(),
            kind,
            sealed: VecDeque::new(),
            current: None,
            mode,
            next_sequence: chunks.last().map_or(1, |(seq, _)| seq + 1),
            newest: None,
            at_newest: 0,
            skip_at_newest: 0,
            mark: 0,
            pending: None,
            failed_at: None,
        };
        let mut dropped = 0;
        if let Some((_, newest_path)) = chunks.last() {
            for (_, path) in &chunks[..chunks.len() - 1] {
                let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
                // The newest key of a sealed chunk is learnt lazily: retention by age reads
                // it when it first needs it. Until then it counts as old as the next one.
                s.sealed.push_back(Sealed {
                    path: path.clone(),
                    newest_s: i64::MIN,
                    bytes,
                });
            }
            match ChunkMut::reopen(newest_path, kind, symbol) {
                Ok((chunk, lost)) => {
                    dropped = lost;
                    s.newest = chunk.newest;
                    s.at_newest = chunk.at_newest();
                    // A kill between a chunk's creation and its first record leaves it empty,
                    // and a run of ticks at one millisecond may have begun in the chunk before:
                    // the stream's newest key, and the records at it, are then the previous
                    // chunk's too (else the next run would store them again, or store older
                    // records into the empty chunk, out of order).
                    // (Bars never share a key: only an empty chunk sends them back.)
                    let may_go_back = s.newest.is_none()
                        || (kind == StreamKind::Ticks && s.at_newest == chunk.count);
                    if let Some((_, before)) = chunks.len().checked_sub(2).map(|i| &chunks[i]) {
                        if may_go_back {
                            match (s.newest, tail_of(before, kind, symbol)) {
                                (None, Some((key, at))) => {
                                    (s.newest, s.at_newest) = (Some(key), at)
                                }
                                (Some(n), Some((key, at))) if n == key => s.at_newest += at,
                                _ => {}
                            }
                        }
                    }
                    if kind == StreamKind::Ticks {
                        s.skip_at_newest = s.at_newest;
                    }
                    if chunk.full() {
                        s.seal(chunk);
                    } else {
                        s.current = Some(chunk);
                    }
                }
                // A damaged newest chunk is put aside under another name (no reader lists
                // it, and it is there to look at); the stream goes on in a fresh chunk.
                Err(HistoryError::Damaged { .. } | HistoryError::Version { .. }) => {
                    let mut aside = newest_path.as_os_str().to_owned();
                    aside.push(".damaged");
                    std::fs::rename(newest_path, &aside)
                        .map_err(|e| HistoryError::io(newest_path, e))?;
                    dropped = 1;
                }
                Err(e) => return Err(e),
            }
            s.mark = MARK_AFTER_HOLE;
        }
        Ok((s, dropped))
    }

    fn key_s(&self, key: i64) -> i64 {
        match self.kind {
            StreamKind::Bars(_) => key,
            StreamKind::Ticks => key.div_euclid(1000),
        }
    }

    fn seal(&mut self, chunk: ChunkMut) {
        let newest_s = chunk.newest.map_or(i64::MIN, |k| self.key_s(k));
        self.sealed.push_back(Sealed {
            path: chunk.path.clone(),
            newest_s,
            bytes: chunk.bytes(),
        });
    }

    /// Appends one record's words (built by `build` for its index), starting a chunk if
    /// needed.
    fn append(
        &mut self,
        (dir, helper): (&Path, &Helper),
        key: i64,
        now_ns: u64,
        build: impl Fn(u64, u64) -> [u64; format::STORED_WORDS],
    ) -> Result<(), HistoryError> {
        if let Some(at) = self.failed_at {
            if now_ns.saturating_sub(at) < RETRY_NS {
                // Still failing: the record is not stored, and the next one that is will say
                // a hole may be before it.
                return Ok(());
            }
        }
        let result = self.try_append((dir, helper), key, now_ns, &build);
        match result {
            Ok(()) => {
                self.failed_at = None;
                self.at_newest = if self.newest == Some(key) {
                    self.at_newest + 1
                } else {
                    1
                };
                self.newest = Some(key);
                self.skip_at_newest = 0;
                self.mark = 0;
                Ok(())
            }
            Err(e) => {
                self.failed_at = Some(now_ns);
                self.mark = MARK_AFTER_HOLE;
                Err(e)
            }
        }
    }

    fn try_append(
        &mut self,
        (dir, helper): (&Path, &Helper),
        key: i64,
        now_ns: u64,
        build: &impl Fn(u64, u64) -> [u64; format::STORED_WORDS],
    ) -> Result<(), HistoryError> {
        if self.current.as_ref().is_none_or(ChunkMut::full) {
            if let Some(full) = self.current.take() {
                // Its mapping is unmapped on the helper (4.7 MB of a tick chunk's pages).
                helper.retire(full.area());
                self.seal(full);
            }
            let path = chunk_path(dir, &self.symbol, self.kind, self.next_sequence);
            let chunk = ChunkMut::create(
                &path,
                self.kind,
                &self.symbol,
                self.next_sequence,
                now_ns,
                self.mode,
            )?;
            self.next_sequence += 1;
            self.current = Some(chunk);
        }
        let chunk = self.current.as_mut().expect("a chunk was just made");
        let words = build(chunk.count, self.mark);
        chunk
            .append(&words, key, helper)
            .map_err(|e| HistoryError::io(&chunk.path, e))
    }

    /// Bytes on disk.
    fn bytes(&self) -> u64 {
        self.sealed.iter().map(|s| s.bytes).sum::<u64>()
            + self.current.as_ref().map_or(0, ChunkMut::bytes)
    }
}

/// The store's writer. Errors are returned to the caller (the segment's writer counts them
/// and keeps the newest for the streamer to report); a failing stream retries every 5 s and
/// the rings are never held up by it.
#[derive(Debug)]
pub struct HistoryWriter {
    dir: PathBuf,
    keep: Keep,
    /// One per ring, in the layout's ring order.
    bars: Vec<StreamWriter>,
    /// One per symbol, in the layout's symbol order.
    ticks: Vec<StreamWriter>,
    /// Records found past the intact part of the newest chunks when the store was opened.
    dropped_at_open: u64,
    /// Makes the next records ready, and deletes what retention drops, off the caller's
    /// thread (`history::helper`). Declared last: dropped after the chunks' writers.
    helper: Helper,
}

impl HistoryWriter {
    /// Opens (creating it if missing) the store at `dir` for the rings and symbols of
    /// `layout`, reopening each stream's newest chunk, and applies `keep`.
    /// Files are made with the permission bits `mode` (the segment's), folders with those
    /// and the search bit where it may read.
    pub fn open(
        dir: &Path,
        layout: &Layout,
        keep: Keep,
        mode: u32,
    ) -> Result<HistoryWriter, HistoryError> {
        make_dir(dir, mode)?;
        let symbols: Vec<&str> = layout.symbols().collect();
        let mut dropped_at_open = 0;
        let mut bars = Vec::new();
        for spec in layout.rings() {
            let symbol = symbols[spec.symbol_index as usize];
            let (s, lost) =
                StreamWriter::open(dir, symbol, StreamKind::Bars(spec.timeframe), mode)?;
            dropped_at_open += lost;
            bars.push(s);
        }
        let mut ticks = Vec::new();
        for symbol in &symbols {
            let (s, lost) = StreamWriter::open(dir, symbol, StreamKind::Ticks, mode)?;
            dropped_at_open += lost;
            ticks.push(s);
        }
        let mut w = HistoryWriter {
            dir: dir.to_owned(),
            keep,
            bars,
            ticks,
            dropped_at_open,
            helper: Helper::start(),
        };
        w.retain();
        Ok(w)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records dropped as damaged or torn when the store was opened.
    pub fn dropped_at_open(&self) -> u64 {
        self.dropped_at_open
    }

    /// The newest bar time stored for ring `ring` (layout order).
    pub fn newest_bar(&self, ring: usize) -> Option<i64> {
        let s = self.bars.get(ring)?;
        s.pending.map(|c| c.time).or(s.newest)
    }

    /// The newest tick time (ms) stored for symbol `symbol` (layout order).
    pub fn newest_tick(&self, symbol: usize) -> Option<i64> {
        self.ticks.get(symbol)?.newest
    }

    /// The newest tick time (ms) stored for symbol `symbol`, with the store made ready for
    /// that millisecond to be sent again whole: the first ticks sent at it, as many as are
    /// stored there, are taken as those already stored (the rule a restart's resend follows).
    /// A copy that goes on from a store's newest tick, whatever it appended before, starts
    /// from here.
    pub fn resend_from_newest(&mut self, symbol: usize) -> Option<i64> {
        let s = self.ticks.get_mut(symbol)?;
        s.skip_at_newest = s.at_newest;
        s.newest
    }

    /// A bar of ring `ring` closed. It is held back until the next one closes (the source may
    /// still correct it); a bar not newer than the store's newest is already stored.
    pub fn bar_closed(
        &mut self,
        ring: usize,
        bar: &Candle,
        now_ns: u64,
    ) -> Result<(), HistoryError> {
        let Some(s) = self.bars.get_mut(ring) else {
            return Ok(());
        };
        let newest = s.pending.map(|c| c.time).or(s.newest);
        if newest.is_some_and(|n| bar.time <= n) {
            if let Some(p) = s.pending.as_mut().filter(|p| p.time == bar.time) {
                *p = *bar;
            }
            return Ok(());
        }
        match s.pending.replace(*bar) {
            Some(ready) => self.store_bar(ring, ready, now_ns),
            None => Ok(()),
        }
    }

    /// The source corrected the newest closed bar of ring `ring`.
    pub fn bar_amended(&mut self, ring: usize, bar: &Candle) {
        if let Some(p) = self
            .bars
            .get_mut(ring)
            .and_then(|s| s.pending.as_mut())
            .filter(|p| p.time == bar.time)
        {
            *p = *bar;
        }
    }

    fn store_bar(&mut self, ring: usize, bar: Candle, now_ns: u64) -> Result<(), HistoryError> {
        let s = &mut self.bars[ring];
        let sealed = s.sealed.len();
        let r = s.append((&self.dir, &self.helper), bar.time, now_ns, |i, mark| {
            format::bar_words(i, &bar, mark)
        });
        if self.bars[ring].sealed.len() != sealed {
            self.retain();
        }
        r
    }

    /// A tick of symbol `symbol`, before the tick ring gets it. One older than the store's
    /// newest is already stored (a restart's overlap), and so are the first ticks resent at
    /// the newest millisecond, as many as the run before stored there; the rest of that
    /// millisecond is new.
    #[inline]
    pub fn tick(&mut self, symbol: usize, tick: &Tick, now_ns: u64) -> Result<(), HistoryError> {
        let Some(s) = self.ticks.get_mut(symbol) else {
            return Ok(());
        };
        if let Some(n) = s.newest {
            if tick.time_msc < n {
                return Ok(());
            }
            if tick.time_msc == n && s.skip_at_newest > 0 {
                s.skip_at_newest -= 1;
                return Ok(());
            }
        }
        let sealed = s.sealed.len();
        let r = s.append(
            (&self.dir, &self.helper),
            tick.time_msc,
            now_ns,
            |i, mark| format::tick_words(i, tick, mark),
        );
        if self.ticks[symbol].sealed.len() != sealed {
            self.retain();
        }
        r
    }

    /// Stores the bars held back (a clean stop).
    pub fn flush(&mut self, now_ns: u64) -> Result<(), HistoryError> {
        let mut first = Ok(());
        for ring in 0..self.bars.len() {
            if let Some(bar) = self.bars[ring].pending.take() {
                if let Err(e) = self.store_bar(ring, bar, now_ns) {
                    if first.is_ok() {
                        first = Err(e);
                    }
                }
            }
        }
        first
    }

    /// Bytes the store takes on disk, about (headers and reserved records).
    pub fn bytes(&self) -> u64 {
        self.bars
            .iter()
            .chain(&self.ticks)
            .map(StreamWriter::bytes)
            .sum()
    }

    /// Drops sealed chunks past the retention, oldest first.
    fn retain(&mut self) {
        match self.keep {
            Keep::All => {}
            Keep::Seconds(span) => {
                for s in self.bars.iter_mut().chain(self.ticks.iter_mut()) {
                    let Some(newest) = s.newest.map(|k| s.key_s(k)) else {
                        continue;
                    };
                    while let Some(old) = s.sealed.front_mut() {
                        if old.newest_s == i64::MIN {
                            old.newest_s = sealed_newest_s(&old.path, s.kind);
                        }
                        if old.newest_s >= newest.saturating_sub(span) {
                            break;
                        }
                        if let Some(gone) = s.sealed.pop_front() {
                            self.helper.remove(gone.path);
                        }
                    }
                }
            }
            Keep::Bytes(limit) => {
                let mut total = self.bytes();
                while total > limit {
                    // The stream whose oldest sealed chunk is oldest.
                    let mut oldest: Option<(i64, usize)> = None;
                    let streams: Vec<&mut StreamWriter> =
                        self.bars.iter_mut().chain(self.ticks.iter_mut()).collect();
                    let mut streams = streams;
                    for (k, s) in streams.iter_mut().enumerate() {
                        let kind = s.kind;
                        if let Some(front) = s.sealed.front_mut() {
                            if front.newest_s == i64::MIN {
                                front.newest_s = sealed_newest_s(&front.path, kind);
                            }
                            if oldest.is_none_or(|(t, _)| front.newest_s < t) {
                                oldest = Some((front.newest_s, k));
                            }
                        }
                    }
                    let Some((_, k)) = oldest else { break };
                    if let Some(gone) = streams[k].sealed.pop_front() {
                        self.helper.remove(gone.path);
                        total = total.saturating_sub(gone.bytes);
                    }
                }
            }
        }
    }
}

/// Creates `dir` and its parents if missing, with `mode` plus the search bit wherever it may
/// read (0600 gives 0700, 0640 gives 0750).
fn make_dir(dir: &Path, mode: u32) -> Result<(), HistoryError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(mode | (mode & 0o444) >> 2);
    }
    #[cfg(not(unix))]
    let _ = mode;
    b.create(dir).map_err(|e| HistoryError::io(dir, e))
}

/// The newest key (seconds) of a sealed chunk, read from its last record; a chunk that cannot
/// be read counts as oldest, so retention drops it first.
fn sealed_newest_s(path: &Path, kind: StreamKind) -> i64 {
    let read = || -> std::io::Result<i64> {
        let file = crate::files::open(path, false)?;
        let cap = kind.capacity();
        if file.metadata()?.len() < chunk_len(cap) {
            return Ok(i64::MIN + 1);
        }
        let mut buf = [0u8; 8];
        let at = chunk_len(cap) - format::STORED_RECORD_SIZE as u64;
        crate::files::read_at(&file, &mut buf, at)?;
        let key = i64::from_le_bytes(buf);
        Ok(match kind {
            StreamKind::Bars(_) => key,
            StreamKind::Ticks => key.div_euclid(1000),
        })
    };
    read().unwrap_or(i64::MIN + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_parses_durations_sizes_and_all() {
        assert_eq!("all".parse(), Ok(Keep::All));
        assert_eq!("90d".parse(), Ok(Keep::Seconds(90 * 86_400)));
        assert_eq!("12h".parse(), Ok(Keep::Seconds(12 * 3600)));
        assert_eq!("2w".parse(), Ok(Keep::Seconds(14 * 86_400)));
        assert_eq!("500MB".parse(), Ok(Keep::Bytes(500_000_000)));
        assert_eq!("1GiB".parse(), Ok(Keep::Bytes(1 << 30)));
        for bad in ["", "0d", "-3d", "5 parsecs", "99999999999999999999d", "d"] {
            assert!(bad.parse::<Keep>().is_err(), "{bad}");
        }
    }
}
