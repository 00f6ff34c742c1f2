//! Closed candles kept as JSON, per ring and answer shape, so that a candles answer writes
//! only its forming candle and its envelope.
//!
//! Of the 50 candles a poller asks for, 49 are closed and do not change until the next bar
//! closes (or the writer amends the newest one). Each [`Entry`] holds the JSON of a ring's
//! newest closed candles, in one format (dicts or raw arrays) and one order, together with
//! the candles it was written from. A request reads its candles from the segment as before,
//! then takes the JSON of the closed ones from the entry **if the entry holds exactly those
//! candles, bit for bit**. The check is by content rather than by a count or a generation
//! because content is what the JSON is a function of: it stays right across an amended
//! closed bar (same count), a writer restart (same count, maybe other history), a replaced
//! segment or a new layout (ring indexes mean other rings), where a key of counts would have
//! to be trusted to change. It costs one comparison of the candles a request has read anyway
//! (about 0.1 µs for 50), against about 10 µs to write them.
//!
//! An entry is built once per closed bar, from a snapshot of at least [`MIN_DEPTH`] closed
//! candles, so that every limit up to that depth shares it; a request for more closed candles
//! than [`MAX_DEPTH`] is written without the cache. All entries together stay under
//! [`MAX_BYTES`]: an insert past it empties the cache, which the following requests refill.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use shm_core::{Candle, RingReader};

use super::json::{write_candle, write_candles};
use crate::metrics::Exposition;

/// Most closed candles one entry holds; a request for more is written without the cache.
pub const MAX_DEPTH: usize = 1024;

/// Fewest closed candles an entry is built with, so that the usual limits share one entry.
pub const MIN_DEPTH: usize = 64;

/// Most bytes all entries take together (JSON, candle copies and offsets), 32 MiB: room for
/// every variant of a hundred rings at the default depth, or about a hundred at the largest.
pub const MAX_BYTES: usize = 32 * 1024 * 1024;

/// The answers an entry serves: one ring, one format, one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Shape {
    /// The ring's index in the attached segment's layout.
    ring: usize,
    raw: bool,
    asc: bool,
}

/// The JSON of a ring's newest closed candles in one shape.
#[derive(Debug)]
struct Entry {
    /// The closed candles, oldest first, as read from the ring.
    candles: Vec<Candle>,
    /// Their JSON in answer order (newest first unless `asc`), comma-separated, unbracketed.
    json: String,
    /// Where each candle's JSON starts in `json`, in answer order.
    starts: Vec<u32>,
    asc: bool,
}

impl Entry {
    fn build(candles: Vec<Candle>, raw: bool, asc: bool) -> Entry {
        let mut json = String::with_capacity(candles.len() * 170);
        let mut starts = Vec::with_capacity(candles.len());
        let mut emit = |c: &Candle| {
            if !json.is_empty() {
                json.push(',');
            }
            // At most MAX_DEPTH candles of at most a few hundred bytes: far below u32::MAX.
            starts.push(json.len() as u32);
            write_candle(&mut json, c, raw);
        };
        if asc {
            candles.iter().for_each(&mut emit);
        } else {
            candles.iter().rev().for_each(&mut emit);
        }
        Entry {
            candles,
            json,
            starts,
            asc,
        }
    }

    /// Bytes the entry takes.
    fn bytes(&self) -> usize {
        std::mem::size_of::<Entry>()
            + self.json.capacity()
            + self.starts.capacity() * 4
            + self.candles.capacity() * std::mem::size_of::<Candle>()
    }

    /// The JSON of `closed` (a ring's newest closed candles, oldest first), if they are this
    /// entry's newest candles, bit for bit.
    fn json_of(&self, closed: &[Candle]) -> Option<&str> {
        let k = closed.len();
        let n = self.candles.len();
        if k == 0 {
            return Some("");
        }
        if k > n
            || !self.candles[n - k..]
                .iter()
                .zip(closed)
                .all(|(a, b)| a.same_bits(b))
        {
            return None;
        }
        let range = if self.asc {
            self.starts[n - k] as usize..self.json.len()
        } else {
            // The newest k are the first k in answer order; the candle after them starts one
            // byte after the comma that ends them.
            0..self
                .starts
                .get(k)
                .map_or(self.json.len(), |&s| s as usize - 1)
        };
        self.json.get(range)
    }
}

/// The entries, and the bytes they take.
#[derive(Debug, Default)]
struct Entries {
    map: HashMap<Shape, Arc<Entry>>,
    bytes: usize,
}

/// Counts of the cache, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Entries held.
    pub entries: usize,
    /// Bytes they take.
    pub bytes: usize,
    /// Answers whose closed candles came from an entry.
    pub hits: u64,
    /// Answers that built (or rebuilt) an entry first.
    pub builds: u64,
    /// Answers written without the cache: more than [`MAX_DEPTH`] closed candles, or a bar
    /// closed between the request's read and the entry's build.
    pub bypasses: u64,
    /// Times the cache was emptied to stay under [`MAX_BYTES`].
    pub evictions: u64,
}

/// The closed-candle JSON of every ring and shape asked for so far.
#[derive(Debug, Default)]
pub struct CandleCache {
    entries: Mutex<Entries>,
    // Relaxed counters: independent statistics, read only for display.
    hits: AtomicU64,
    builds: AtomicU64,
    bypasses: AtomicU64,
    evictions: AtomicU64,
}

impl CandleCache {
    /// The entries; a panic elsewhere while holding the lock leaves a map of whole entries
    /// (each is built before it is inserted), so a poisoned lock is used as it is.
    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `candles` (read from `ring` just now, oldest first, the forming one last if any)
    /// as a JSON array in the asked format and order, taking the closed ones' JSON from the
    /// cache and building the entry first if it does not hold them.
    pub(super) fn write(
        &self,
        out: &mut String,
        ring: &RingReader<'_>,
        candles: &[Candle],
        raw: bool,
        asc: bool,
    ) {
        let (closed, forming) = match candles.split_last() {
            Some((last, rest)) if last.forming => (rest, Some(last)),
            _ => (candles, None),
        };
        if closed.len() > MAX_DEPTH {
            self.bypasses.fetch_add(1, Ordering::Relaxed);
            write_candles(out, candles, asc, raw);
            return;
        }
        let shape = Shape {
            ring: ring.index(),
            raw,
            asc,
        };
        let cached = self.lock().map.get(&shape).cloned();
        let entry = match cached {
            Some(e) if e.json_of(closed).is_some() => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                e
            }
            old => {
                let depth = closed
                    .len()
                    .max(old.map_or(0, |e| e.candles.len()))
                    .clamp(MIN_DEPTH, MAX_DEPTH);
                let Some(e) = self.build(shape, ring, depth) else {
                    self.bypasses.fetch_add(1, Ordering::Relaxed);
                    write_candles(out, candles, asc, raw);
                    return;
                };
                self.builds.fetch_add(1, Ordering::Relaxed);
                e
            }
        };
        let Some(json) = entry.json_of(closed) else {
            // A bar closed (or was amended) between this request's read and the build: the
            // entry is right for the requests that follow, this one is written as it was read.
            self.bypasses.fetch_add(1, Ordering::Relaxed);
            write_candles(out, candles, asc, raw);
            return;
        };
        out.reserve(json.len() + 200);
        out.push('[');
        let comma = !json.is_empty() && forming.is_some();
        if asc {
            out.push_str(json);
            if comma {
                out.push(',');
            }
        }
        if let Some(f) = forming {
            write_candle(out, f, raw);
        }
        if !asc {
            if comma {
                out.push(',');
            }
            out.push_str(json);
        }
        out.push(']');
    }

    /// Builds and inserts the entry of `shape` from the ring's newest `depth` closed candles;
    /// `None` if the ring stayed busy.
    fn build(&self, shape: Shape, ring: &RingReader<'_>, depth: usize) -> Option<Arc<Entry>> {
        let mut closed = Vec::with_capacity(depth);
        ring.snapshot(depth, &mut closed).ok()?;
        let entry = Arc::new(Entry::build(closed, shape.raw, shape.asc));
        let size = entry.bytes();
        let mut entries = self.lock();
        if let Some(old) = entries.map.remove(&shape) {
            entries.bytes -= old.bytes();
        }
        if entries.bytes + size > MAX_BYTES {
            entries.map.clear();
            entries.bytes = 0;
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        entries.bytes += size;
        entries.map.insert(shape, Arc::clone(&entry));
        Some(entry)
    }

    /// Empties the cache (the reader attached to another segment, whose ring indexes mean other
    /// rings: the content check would catch it, this saves the misses' memory).
    pub(super) fn clear(&self) {
        let mut entries = self.lock();
        entries.map.clear();
        entries.bytes = 0;
    }

    /// The cache's counts.
    pub fn stats(&self) -> CacheStats {
        let (entries, bytes) = {
            let e = self.lock();
            (e.map.len(), e.bytes)
        };
        CacheStats {
            entries,
            bytes,
            hits: self.hits.load(Ordering::Relaxed),
            builds: self.builds.load(Ordering::Relaxed),
            bypasses: self.bypasses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}

impl CacheStats {
    /// Writes The closed-candle cache's size and counts (see `api::cache`).
    pub fn render(&self, e: &mut Exposition) {
        e.family(
            "mtf_shim_cache_entries",
            "gauge",
            "Closed-candle JSON entries held (one per ring, format and order asked for).",
        )
        .sample(&[], self.entries);
        e.family(
            "mtf_shim_cache_bytes",
            "gauge",
            "Bytes the closed-candle cache holds (at most 32 MiB).",
        )
        .sample(&[], self.bytes);
        e.family(
            "mtf_shim_cache_answers_total",
            "counter",
            "Rings written into candle answers, by how the cache served their closed candles: hit, build (the entry \
             was built first) or bypass (written without it).",
        )
        .sample(&[("outcome", "hit")], self.hits)
        .sample(&[("outcome", "build")], self.builds)
        .sample(&[("outcome", "bypass")], self.bypasses);
        e.family(
            "mtf_shim_cache_evictions_total",
            "counter",
            "Times the cache was emptied to stay under its byte limit.",
        )
        .sample(&[], self.evictions);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(t: i64, price: f64) -> Candle {
        Candle::flat(t, price)
    }

    #[test]
    fn an_entry_serves_any_newest_run_it_holds_in_both_orders() {
        let candles: Vec<Candle> = (1..=5).map(|i| closed(i * 60, 1.0 + i as f64)).collect();
        for raw in [false, true] {
            for asc in [false, true] {
                let entry = Entry::build(candles.clone(), raw, asc);
                for k in 0..=5 {
                    let tail = &candles[5 - k..];
                    let mut expected = String::new();
                    write_candles(&mut expected, tail, asc, raw);
                    let got = format!("[{}]", entry.json_of(tail).unwrap());
                    assert_eq!(got, expected, "raw {raw} asc {asc} k {k}");
                }
            }
        }
    }

    #[test]
    fn an_entry_refuses_candles_it_does_not_hold_bit_for_bit() {
        let candles: Vec<Candle> = (1..=3).map(|i| closed(i * 60, 2.0)).collect();
        let entry = Entry::build(candles.clone(), false, false);
        // An amended newest bar: same count, other content.
        let mut amended = candles.clone();
        amended[2].close = 2.5;
        assert!(entry.json_of(&amended).is_none());
        // A bar closed since: the newest run is not the entry's.
        let newer = vec![candles[2], closed(240, 2.0)];
        assert!(entry.json_of(&newer).is_none());
        // More than it holds.
        let mut four = vec![closed(0, 2.0)];
        four.extend_from_slice(&candles);
        assert!(entry.json_of(&four).is_none());
        // Zero that prints otherwise than minus zero.
        let mut signed = candles.clone();
        signed[2].open = -0.0;
        let mut entry_zero = candles.clone();
        entry_zero[2].open = 0.0;
        assert!(Entry::build(entry_zero, false, false)
            .json_of(&signed)
            .is_none());
    }
}
