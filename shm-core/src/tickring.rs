//! The tick ring of one symbol: every tick the feed delivered, in order, each once.
//!
//! Ticks are only ever appended, never corrected, so the ring needs no sequence per slot. Two
//! counters guard it instead (offsets in [`off`]):
//! - `begun`: positions whose write has started (the newest is `begun - 1`);
//! - `head`: positions whose write has finished (the newest readable is `head - 1`).
//!
//! Position `p` lives in slot `p % capacity`. The writer moves `begun` to `p + 1` before it
//! touches slot `p % capacity`, which destroys position `p - capacity`, and `head` after. A
//! reader loads `head`, copies slots, and then loads `begun`: a slot it copied is intact if
//! its position is at least `begun - capacity`, and it drops any older one.
//!
//! | writer (position `p = head`)          | reader                                         |
//! |---------------------------------------|------------------------------------------------|
//! | `begun.store(p + 1, Relaxed)`         | `h = head.load(Acquire)`                       |
//! | `fence(Release)`                      | copy slots of positions `< h`, `Relaxed`       |
//! | slot stores, `Relaxed`                | `fence(Acquire)`                               |
//! | `head.store(p + 1, Release)`          | `b = begun.load(Relaxed)`; keep positions `≥ b − capacity` |
//!
//! Why it is enough, on ARM as on x86 (both implement the C++/Rust model these pairings are
//! stated in):
//! - `head`'s Release store ↔ the reader's Acquire load: every slot store of positions below
//!   `h` happens-before the copy, so the copy sees them or later stores.
//! - the writer's `fence(Release)` ↔ the reader's `fence(Acquire)`: if a copied load read a
//!   value stored by the write of a later position `q` (which shares the slot, so
//!   `q ≥ p + capacity`), the fences synchronise, `begun = q + 1` happens-before the reader's
//!   load of `begun`, which then returns at least `q + 1 > p + capacity`: position `p` is
//!   dropped. So a kept position's copy holds only stores of that position's own write.
//!
//! A writer killed inside a write leaves `begun = head + 1`. The slot it was writing belongs
//! to position `head`, not readable (`≥ head`), and the position it destroyed, `head − capacity`,
//! is below `begun − capacity`: neither is ever served, and nothing needs repairing. The next
//! writer's first tick stores `begun = head + 1` again and overwrites that slot.

use std::hint::spin_loop;
use std::sync::atomic::{fence, Ordering};

use crate::mem::{Mem, MemMut};
use crate::tick::{self, Tick, TICK_WORDS};

/// Byte offsets inside a tick ring (docs/LAYOUT.md, "Tick ring").
pub(crate) mod off {
    pub const BEGUN: usize = 0;
    pub const HEAD: usize = 8;
    pub const LAST_CHANGE_NS: usize = 16;
    pub const SLOTS: usize = 64;
}

/// Size of one tick slot: the record alone.
pub const TICK_SLOT_SIZE: usize = 8 * TICK_WORDS;

/// Bytes taken by a tick ring of `capacity` slots (a multiple of 64).
pub(crate) fn tick_ring_size(capacity: u32) -> usize {
    off::SLOTS + capacity as usize * TICK_SLOT_SIZE
}

/// What a reader found wrong with a tick ring's counters: only a damaged or forged file holds
/// a `begun` below `head`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadCounters {
    pub begun: u64,
    pub head: u64,
}

/// Which positions a tick read copied: ticks `first..head` of the ring's history, where
/// `head` is the next position to ask for with
/// [`TickRingReader::read_from`](crate::TickRingReader::read_from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickSpan {
    /// The position of the first tick copied (`head` when none was).
    pub first: u64,
    /// Ticks ever written, as of the copy; the next position to ask for.
    pub head: u64,
}

/// Where to start a copy, given the readable positions `oldest..head`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum From {
    /// The newest `n` ticks.
    Newest(usize),
    /// From this position on (the oldest readable one if it is older).
    Position(u64),
    /// From the first tick at or after this server time, ms.
    Time(i64),
}

/// Where one tick ring lives in a mapping: as [`RingRef`](crate::ring::RingRef), checked once
/// by [`TickRingRef::new`] to lie inside the region it remembers, so that every offset
/// computed below (a field below 64, or a slot of a position modulo the capacity) is in
/// bounds whatever a racing or forged word holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TickRingRef {
    base: usize,
    capacity: u64,
    mem_addr: usize,
    mem_len: usize,
}

impl TickRingRef {
    /// The ring of `capacity` slots at `base` in `mem`, if it fits there.
    pub(crate) fn new(base: usize, capacity: u32, mem: &Mem) -> Option<TickRingRef> {
        let end = base.checked_add(tick_ring_size(capacity))?;
        (capacity >= 1 && base.is_multiple_of(8) && end <= mem.len()).then_some(TickRingRef {
            base,
            capacity: u64::from(capacity),
            mem_addr: mem.addr(),
            mem_len: mem.len(),
        })
    }

    /// Refuses (panics on) a region other than the one `new` checked: a programming error.
    #[inline(always)]
    fn bound(&self, mem: &Mem) {
        assert!(
            mem.addr() == self.mem_addr && mem.len() == self.mem_len,
            "a tick ring used with another mapping than the one it was checked against"
        );
    }

    /// Ticks the ring keeps.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Loads one of this ring's words: `off` is `base` plus a field offset below 64, or a slot
    /// of [`slot`](Self::slot) plus a word below the slot size; callers called `bound` first.
    #[inline(always)]
    fn load(&self, mem: &Mem, off: usize, order: Ordering) -> u64 {
        debug_assert!(
            off >= self.base && off + 8 <= self.base + tick_ring_size(self.capacity as u32)
        );
        // SAFETY: `off` is one of this ring's words (see above); `new` checked that the whole
        // ring lies inside the region it was given and that `base` is 8-aligned, and `bound`
        // checked that `mem` is that region.
        unsafe { mem.load_unchecked(off, order) }
    }

    /// Stores one of this ring's words; `off` and `mem` as for [`load`](Self::load).
    #[inline(always)]
    fn store(&self, mem: &MemMut, off: usize, value: u64, order: Ordering) {
        debug_assert!(
            off >= self.base && off + 8 <= self.base + tick_ring_size(self.capacity as u32)
        );
        // SAFETY: as in `load`.
        unsafe { mem.store_unchecked(off, value, order) }
    }

    #[inline(always)]
    fn slot(&self, position: u64) -> usize {
        self.base + off::SLOTS + (position % self.capacity) as usize * TICK_SLOT_SIZE
    }

    /// The counters as the writer left them: `(begun, head)`. Relaxed: for the writer itself
    /// (it stored them) and for checks at creation, under the writer lock.
    pub(crate) fn counters(&self, mem: &Mem) -> (u64, u64) {
        self.bound(mem);
        (
            self.load(mem, self.base + off::BEGUN, Ordering::Relaxed),
            self.load(mem, self.base + off::HEAD, Ordering::Relaxed),
        )
    }

    /// The writer's clock at the last tick.
    pub(crate) fn last_change_ns(&self, mem: &Mem) -> u64 {
        self.bound(mem);
        // Relaxed: an independent timestamp.
        self.load(mem, self.base + off::LAST_CHANGE_NS, Ordering::Relaxed)
    }

    // ---------------------------------------------------------------- write side

    /// Empties a ring whose counters no writer leaves (a damaged file): the slots first, the
    /// counters last. Only a starting writer calls this, under the writer lock and before
    /// `running`; readers refuse the ring until the counters are consistent again.
    pub(crate) fn clear(&self, mem: &MemMut) {
        self.bound(mem);
        let end = self.base + tick_ring_size(self.capacity as u32);
        for off in (self.base + 8..end).step_by(8).rev() {
            // Relaxed: see above; `begun` (word 0) goes last, equal to the zero `head`.
            self.store(mem, off, 0, Ordering::Relaxed);
        }
        self.store(mem, self.base + off::BEGUN, 0, Ordering::Relaxed);
    }

    /// Appends `tick` at position `head` (the tests' way; the writer keeps a cursor and calls
    /// [`push_at`](Self::push_at)).
    #[cfg(test)]
    pub(crate) fn push(&self, mem: &MemMut, tick: &Tick, now_ns: u64) {
        self.bound(mem);
        // Relaxed: only this writer stores `head`.
        let head = self.load(mem, self.base + off::HEAD, Ordering::Relaxed);
        let words = Tick {
            published_ns: now_ns,
            ..*tick
        }
        .to_words();
        self.push_at(mem, &words, now_ns, head, (head % self.capacity) as usize);
    }

    /// [`push`](Self::push) of a record's words (its `published_ns` set), for a writer that
    /// knows `head` and its slot (`head % capacity`, kept as a cursor so that the tick path
    /// has no division).
    #[inline]
    pub(crate) fn push_at(
        &self,
        mem: &MemMut,
        words: &[u64; TICK_WORDS],
        now_ns: u64,
        head: u64,
        slot: usize,
    ) {
        self.bound(mem);
        debug_assert_eq!(head % self.capacity, slot as u64);
        // Bounds: the slot must be one of the ring's, whatever the caller says.
        let slot = if (slot as u64) < self.capacity {
            slot
        } else {
            0
        };
        // Relaxed store + Release fence (write side of the fence pair in the module table):
        // a reader that copies any store below sees `begun > head` after its Acquire fence.
        self.store(mem, self.base + off::BEGUN, head + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        let at = self.base + off::SLOTS + slot * TICK_SLOT_SIZE;
        for (i, &w) in words.iter().enumerate() {
            // Relaxed: ordered by the fence above and the Release store of `head` below.
            self.store(mem, at + 8 * i, w, Ordering::Relaxed);
        }
        // Relaxed: an independent timestamp word.
        self.store(
            mem,
            self.base + off::LAST_CHANGE_NS,
            now_ns,
            Ordering::Relaxed,
        );
        // Release (write side of the head pair): whoever sees `head + 1` sees the slot.
        self.store(mem, self.base + off::HEAD, head + 1, Ordering::Release);
    }

    // ---------------------------------------------------------------- read side

    /// Copies at most `max` ticks chosen by `from` into `out` (which is cleared first), oldest
    /// first, torn-free. Ticks the writer overwrote during the copy are dropped from the
    /// front and the copy is tried again, up to `attempts` times; after that the intact rest
    /// is returned. Also says whether every tick copied keeps the record's rules (`false`
    /// means: look with `tick::check`, which says which). `Err` only for counters no writer
    /// leaves.
    pub(crate) fn read(
        &self,
        mem: &Mem,
        from: From,
        max: usize,
        out: &mut Vec<Tick>,
        attempts: u32,
    ) -> Result<(TickSpan, u32, bool), BadCounters> {
        self.read_as(mem, from, max, out, attempts, |t| *t)
    }

    /// [`read`](Self::read) into rows of the caller's type, each made by `map` from a tick as
    /// it is copied (a reader that hands out its own layout saves a pass over the ticks).
    pub(crate) fn read_as<T>(
        &self,
        mem: &Mem,
        from: From,
        max: usize,
        out: &mut Vec<T>,
        attempts: u32,
        map: impl Fn(&Tick) -> T,
    ) -> Result<(TickSpan, u32, bool), BadCounters> {
        self.bound(mem);
        let mut retries = 0;
        loop {
            out.clear();
            // Acquire (read side of the head pair).
            let head = self.load(mem, self.base + off::HEAD, Ordering::Acquire);
            // Where the intact positions begin as far as `begun` says now. Relaxed: only a
            // hint of where to start (it never grows smaller); what the copy may use is
            // decided by the load of `begun` after the Acquire fence below. Without it, a
            // writer killed mid-write (`begun = head + 1`, docs/LAYOUT.md) would leave the
            // oldest slot of a full ring forever "being overwritten": every read from the
            // oldest tick (a time search, `copy_ticks_from(…, 0, …)`) would retry to its
            // limit instead of dropping that one slot.
            let begun_hint = self.load(mem, self.base + off::BEGUN, Ordering::Relaxed);
            let oldest = head
                .saturating_sub(self.capacity)
                .max(begun_hint.saturating_sub(self.capacity).min(head));
            let first = match from {
                From::Newest(n) => head.saturating_sub(n.min(max) as u64).max(oldest),
                From::Position(p) => p.clamp(oldest, head),
                From::Time(t) => self.search(mem, oldest, head, t),
            };
            let end = head.min(first.saturating_add(max as u64));
            // At most two runs of slots (the ring wraps once), each extended from a range, so
            // that the copy has no division and no capacity check per tick. The records are
            // checked as they are copied (`tick::words_good`), while their words are in
            // registers: a second pass over them would cost as much as the copy.
            let n = (end - first) as usize;
            let capacity = self.capacity as usize;
            let start = (first % self.capacity) as usize;
            let run = n.min(capacity - start);
            let (mut previous, mut good) = (i64::MIN, true);
            out.reserve(n);
            for slots in [start..start + run, 0..n - run] {
                for slot in slots {
                    let words = self.load_words_at(mem, slot);
                    good &= tick::words_good(&words, &mut previous);
                    out.push(map(&Tick::from_words(&words)));
                }
            }
            // Acquire fence (read side of the fence pair), then `begun`.
            fence(Ordering::Acquire);
            let begun = self.load(mem, self.base + off::BEGUN, Ordering::Relaxed);
            if begun < head {
                return Err(BadCounters { begun, head });
            }
            // Positions the writer may have started to overwrite while we copied or searched.
            let intact_from = begun.saturating_sub(self.capacity);
            let searched_from = match from {
                From::Time(_) => oldest,
                _ => first,
            };
            if searched_from >= intact_from || first >= end {
                return Ok((TickSpan { first, head }, retries, good));
            }
            retries += 1;
            if retries >= attempts {
                let lost = intact_from.min(end).saturating_sub(first) as usize;
                out.drain(..lost);
                let first = first.max(intact_from.min(end));
                // Checked again whole: the copy's check covered the dropped ones too.
                return Ok((TickSpan { first, head }, retries, false));
            }
            pause(retries);
        }
    }

    /// The first position in `lo..hi` whose tick is at or after `time_msc` (`hi` if none), by
    /// binary search over the slots' time words. The caller checks afterwards that no probed
    /// slot was overwritten meanwhile (all probes are at or after `lo`).
    fn search(&self, mem: &Mem, mut lo: u64, mut hi: u64, time_msc: i64) -> u64 {
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            // Relaxed: validated with the copy, as above.
            let t = self.load(mem, self.slot(mid), Ordering::Relaxed) as i64;
            if t < time_msc {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The record's words in slot `slot` (below the capacity: the callers' ranges end there).
    #[inline(always)]
    fn load_words_at(&self, mem: &Mem, slot: usize) -> [u64; TICK_WORDS] {
        debug_assert!((slot as u64) < self.capacity);
        let at = self.base + off::SLOTS + slot * TICK_SLOT_SIZE;
        // Relaxed: validated by the `begun` check after the Acquire fence.
        std::array::from_fn(|i| self.load(mem, at + 8 * i, Ordering::Relaxed))
    }
}

/// The pause after failed try number `attempt`: spin, then yield (see `ring.rs`).
fn pause(attempt: u32) {
    if attempt < 100 {
        spin_loop();
    } else {
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::test_support::HeapMem;
    use crate::tick::TICK_FLAG_BID;

    fn tick(ms: i64) -> Tick {
        Tick {
            time_msc: ms,
            bid: 1.0 + ms as f64,
            ask: 2.0 + ms as f64,
            flags: TICK_FLAG_BID,
            ..Tick::default()
        }
    }

    #[test]
    fn newest_since_and_from_a_position() {
        let heap = HeapMem::new(tick_ring_size(4));
        let mem = heap.mem();
        let r = TickRingRef::new(0, 4, &mem).unwrap();
        let mut out = Vec::new();
        let (span, _, _) = r.read(&mem, From::Newest(3), 10, &mut out, 10).unwrap();
        assert_eq!((out.len(), span.first, span.head), (0, 0, 0));
        for ms in [10, 20, 20, 30, 40, 50] {
            r.push(&mem, &tick(ms), 7);
        }
        let times = |out: &Vec<Tick>| out.iter().map(|t| t.time_msc).collect::<Vec<_>>();
        let (span, _, _) = r.read(&mem, From::Newest(3), 10, &mut out, 10).unwrap();
        assert_eq!(
            (times(&out), span.first, span.head),
            (vec![30, 40, 50], 3, 6)
        );
        assert!(out.iter().all(|t| t.published_ns == 7));
        // Only four are kept: the oldest readable is position 2 (time 20).
        r.read(&mem, From::Newest(100), 100, &mut out, 10).unwrap();
        assert_eq!(times(&out), [20, 30, 40, 50]);
        r.read(&mem, From::Time(25), 100, &mut out, 10).unwrap();
        assert_eq!(times(&out), [30, 40, 50]);
        r.read(&mem, From::Time(0), 2, &mut out, 10).unwrap();
        assert_eq!(times(&out), [20, 30]);
        r.read(&mem, From::Time(51), 2, &mut out, 10).unwrap();
        assert!(out.is_empty());
        let (span, _, _) = r.read(&mem, From::Position(5), 9, &mut out, 10).unwrap();
        assert_eq!((times(&out), span.first), (vec![50], 5));
        let (span, _, _) = r.read(&mem, From::Position(0), 1, &mut out, 10).unwrap();
        assert_eq!((times(&out), span.first), (vec![20], 2));
    }

    /// A writer and two readers on threads (under Miri, few writes): every copy is whole
    /// ticks of consecutive writes, whatever the writer did meanwhile.
    #[test]
    fn concurrent_readers_never_see_a_torn_or_reordered_tick() {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let writes: u64 = if cfg!(miri) { 200 } else { 200_000 };
        let heap = Arc::new(HeapMem::new(tick_ring_size(8)));
        let r = TickRingRef::new(0, 8, &heap.mem()).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let derived = |k: u64| Tick {
            time_msc: k as i64 / 2,
            bid: 1.0 + k as f64,
            ask: 2.0 + k as f64,
            volume: k,
            flags: TICK_FLAG_BID,
            ..Tick::default()
        };
        let writer = {
            let (heap, done) = (Arc::clone(&heap), Arc::clone(&done));
            std::thread::spawn(move || {
                let mem = heap.mem();
                for k in 0..writes {
                    r.push(&mem, &derived(k), k);
                }
                done.store(true, Ordering::Relaxed);
            })
        };
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (heap, done) = (Arc::clone(&heap), Arc::clone(&done));
                std::thread::spawn(move || {
                    let mem = heap.mem();
                    let mut out = Vec::new();
                    let mut copies = 0u64;
                    // Relaxed: a stop flag.
                    while !done.load(Ordering::Relaxed) || copies == 0 {
                        let (span, _, _) = r.read(&mem, From::Newest(8), 8, &mut out, 10).unwrap();
                        for (i, t) in out.iter().enumerate() {
                            let k = t.volume;
                            assert_eq!(k, span.first + i as u64, "position and tick agree");
                            assert_eq!(
                                *t,
                                Tick {
                                    published_ns: k,
                                    ..derived(k)
                                },
                                "torn"
                            );
                        }
                        copies += 1;
                    }
                    copies
                })
            })
            .collect();
        writer.join().unwrap();
        for reader in readers {
            assert!(reader.join().unwrap() > 0);
        }
    }

    #[test]
    fn a_write_killed_midway_serves_neither_of_the_two_positions_it_touched() {
        let heap = HeapMem::new(tick_ring_size(4));
        let mem = heap.mem();
        let r = TickRingRef::new(0, 4, &mem).unwrap();
        for ms in 0..6 {
            r.push(&mem, &tick(ms), 1);
        }
        // A writer killed after `begun` and half a slot: position 6 (slot 2, which held 2).
        mem.store(off::BEGUN, 7, Ordering::Relaxed);
        mem.store(
            off::SLOTS + 2 * TICK_SLOT_SIZE + 8,
            999f64.to_bits(),
            Ordering::Relaxed,
        );
        let mut out = Vec::new();
        r.read(&mem, From::Newest(10), 10, &mut out, 3).unwrap();
        let times: Vec<_> = out.iter().map(|t| t.time_msc).collect();
        assert_eq!(times, [3, 4, 5]);
        // From the oldest tick, as `copy_ticks_from(…, 0, …)` asks after a crash: the slot
        // being written is dropped at once, not retried to the limit.
        let (span, retries, good) = r.read(&mem, From::Time(0), 10, &mut out, 3).unwrap();
        let times: Vec<_> = out.iter().map(|t| t.time_msc).collect();
        assert_eq!(
            (times, span.first, retries, good),
            (vec![3, 4, 5], 3, 0, true)
        );
        // The next writer's tick takes the slot again.
        r.push(&mem, &tick(6), 1);
        r.read(&mem, From::Newest(10), 10, &mut out, 3).unwrap();
        let times: Vec<_> = out.iter().map(|t| t.time_msc).collect();
        assert_eq!(times, [3, 4, 5, 6]);
        assert_eq!(r.counters(&mem), (7, 7));
        // Counters no writer leaves are refused, and a starting writer empties the ring.
        mem.store(off::BEGUN, 3, Ordering::Relaxed);
        assert!(r.read(&mem, From::Newest(1), 1, &mut out, 3).is_err());
        r.clear(&mem);
        assert_eq!(r.counters(&mem), (0, 0));
        r.read(&mem, From::Newest(10), 10, &mut out, 3).unwrap();
        assert!(out.is_empty());
    }
}
