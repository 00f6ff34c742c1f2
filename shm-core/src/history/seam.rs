//! Reading across a ring and its store, seamlessly (docs/LAYOUT.md, "History store", the seam
//! with the rings): every reader that answers a range deeper than a ring (mtf_candles, the
//! HTTP API) joins the two here, so there is one rule and one place it is kept.
//!
//! The writer appends to the store before it publishes to a ring, so the store holds whatever
//! the ring holds (but for the newest closed bar, held back until the next closes):
//!
//! - **bars**: the store's bars strictly older than the ring's oldest, then the ring's;
//! - **ticks**: where the ring reaches back past the range's start (it holds a tick older
//!   than `from`), the ring's alone; else the store's, then the ring's newer than the store's
//!   newest. A millisecond may hold several ticks; the store's newest millisecond is whole in
//!   the store (the writer appends it before the ring), so the seam never splits one.

use crate::candle::Candle;
use crate::history::read::{StoredBars, StoredTicks};
use crate::tick::Tick;

/// A ring's bars (closed, and the forming one last, oldest first, as read) and the store's
/// bars of the same ring.
#[derive(Debug, Clone, Copy)]
pub struct BarSeam<'a> {
    ring: &'a [Candle],
    stored: Option<&'a StoredBars>,
}

impl<'a> BarSeam<'a> {
    /// The seam of `ring`'s candles (as read, oldest first) and its `stored` bars, if there
    /// is a store.
    pub fn new(ring: &'a [Candle], stored: Option<&'a StoredBars>) -> BarSeam<'a> {
        BarSeam { ring, stored }
    }

    /// The newest time the store answers for: before the ring's oldest bar.
    fn store_to(&self, to: i64) -> i64 {
        self.ring.first().map_or(to, |c| to.min(c.time - 1))
    }

    fn ring_part(&self, from: i64, to: i64) -> &'a [Candle] {
        let begin = self.ring.partition_point(|c| c.time < from);
        let end = self.ring.partition_point(|c| c.time <= to).max(begin);
        &self.ring[begin..end]
    }

    /// How many bars open from `from` to `to` (both inclusive): to budget an answer before
    /// it is built.
    pub fn count(&self, from: i64, to: i64) -> u64 {
        let stored = self
            .stored
            .map_or(0, |s| s.count_range(from, self.store_to(to)));
        stored + self.ring_part(from, to).len() as u64
    }

    /// Appends `f` of the bars that open from `from` to `to` (both inclusive), oldest first,
    /// at most `max` of them (the oldest).
    pub fn range_as<T>(
        &self,
        from: i64,
        to: i64,
        max: usize,
        out: &mut Vec<T>,
        mut f: impl FnMut(&Candle) -> T,
    ) {
        let start = out.len();
        if let Some(s) = self.stored {
            s.range_as(from, self.store_to(to), max, out, |c: Candle| f(&c));
        }
        let room = max.saturating_sub(out.len() - start);
        out.extend(self.ring_part(from, to).iter().take(room).map(f));
    }

    /// Appends `f` of the newest `n` bars that open at or before `to`, oldest first.
    pub fn last_as<T>(&self, to: i64, n: usize, out: &mut Vec<T>, mut f: impl FnMut(&Candle) -> T) {
        let ring = self.ring_part(i64::MIN, to);
        let from_ring = &ring[ring.len().saturating_sub(n)..];
        if from_ring.len() < n {
            if let Some(s) = self.stored {
                s.last_as(self.store_to(to), n - from_ring.len(), out, |c: Candle| {
                    f(&c)
                });
            }
        }
        out.extend(from_ring.iter().map(f));
    }

    /// The open time of the oldest bar held, in the store or the ring.
    pub fn oldest(&self) -> Option<i64> {
        let ring = self.ring.first().map(|c| c.time);
        match (self.stored.and_then(StoredBars::oldest), ring) {
            (Some(s), Some(r)) => Some(s.min(r)),
            (s, r) => s.or(r),
        }
    }
}

/// A tick ring's ticks from a range's start on (as read, oldest first), whether the ring
/// reaches back past that start, and the store's ticks of the symbol.
#[derive(Debug, Clone, Copy)]
pub struct TickSeam<'a> {
    ring: &'a [Tick],
    reaches_back: bool,
    stored: Option<&'a StoredTicks>,
}

impl<'a> TickSeam<'a> {
    /// The seam of `ring` (the ring's ticks at or after the range's start, oldest first),
    /// `reaches_back` (the ring also holds a tick before that start, so it has every tick
    /// of the range) and the `stored` ticks, if there is a store.
    pub fn new(
        ring: &'a [Tick],
        reaches_back: bool,
        stored: Option<&'a StoredTicks>,
    ) -> TickSeam<'a> {
        TickSeam {
            ring,
            reaches_back,
            stored,
        }
    }

    /// The store's part, if it answers: the store, and the ring's ticks newer than its newest.
    fn parts(&self, to: i64) -> Option<(&'a StoredTicks, &'a [Tick])> {
        if self.reaches_back {
            return None;
        }
        let s = self.stored?;
        let newest = s.newest()?;
        let ring = self.ring_to(to);
        let after = ring.partition_point(|t| t.time_msc <= newest);
        Some((s, &ring[after..]))
    }

    fn ring_to(&self, to: i64) -> &'a [Tick] {
        &self.ring[..self.ring.partition_point(|t| t.time_msc <= to)]
    }

    /// How many ticks there are from `from` to `to` (ms, both inclusive).
    pub fn count(&self, from: i64, to: i64) -> u64 {
        match self.parts(to) {
            Some((s, newer)) => s.count_range(from, to) + newer.len() as u64,
            None => self.ring_to(to).len() as u64,
        }
    }

    /// Appends `f` of the ticks from `from` to `to` (ms, both inclusive), oldest first, at
    /// most `max` of them (the oldest).
    pub fn range_as<T>(
        &self,
        from: i64,
        to: i64,
        max: usize,
        out: &mut Vec<T>,
        mut f: impl FnMut(&Tick) -> T,
    ) {
        let start = out.len();
        let newer = match self.parts(to) {
            Some((s, newer)) => {
                s.range_as(from, to, max, out, |t: Tick| f(&t));
                newer
            }
            None => self.ring_to(to),
        };
        let room = max.saturating_sub(out.len() - start);
        out.extend(newer.iter().take(room).map(f));
    }
}
