//! The seqlock protocol of one candle ring.
//!
//! A ring has three parts (offsets in [`crate::layout::ring`]):
//! - a **control block** guarded by the ring sequence `seq`: `head` (closed candles ever
//!   pushed), the time of the last change, and the **forming** record;
//! - `capacity` **slots**, each guarded by its own sequence, holding the closed candle at
//!   position `p` in slot `p % capacity` together with `p` itself.
//!
//! Splitting the locks means a reader copying 500 closed candles is not starved by a writer that
//! updates the forming candle on every tick: the hot control block is a dozen words, and a
//! closed slot changes only when it is pushed, amended, or lapped by the ring.
//!
//! Both sequences follow the classic seqlock, with the payload copied through relaxed atomic
//! loads and stores so that racing accesses are defined behaviour (Boehm, 2012):
//!
//! | writer                               | reader                                  |
//! |--------------------------------------|-----------------------------------------|
//! | `seq.store(s + 1, Relaxed)`          | `s1 = seq.load(Acquire)`; odd: retry    |
//! | `fence(Release)`                     | payload loads, `Relaxed`                |
//! | payload stores, `Relaxed`            | `fence(Acquire)`                        |
//! | `seq.store(s + 2, Release)`          | `s2 = seq.load(Relaxed)`; `s1 != s2`: retry |
//!
//! Pairing (these hold on ARM's weak memory model as well as on x86, because they are stated in
//! the C++/Rust model, which both architectures' mappings implement):
//! - writer's final `Release` store ↔ reader's first `Acquire` load: a reader that sees the even
//!   value `s + 2` sees every payload store before it, so an unchanged sequence means a
//!   complete payload.
//! - writer's `fence(Release)` ↔ reader's `fence(Acquire)`: if any payload load read a value
//!   stored after the writer's fence, the fences synchronise, so the odd store `s + 1`
//!   happens-before the reader's second load of `seq`, which therefore cannot return `s1`.
//!   The fences must sit *between* the sequence access and the payload on each side; on the
//!   other side of it they order nothing useful (the ARM-only bug seen in public seqlocks).
//!
//! The sequences are 64-bit and only ever grow, so they cannot wrap in practice (2^63 writes at
//! one per nanosecond take 292 years), and an ABA on the sequence cannot let a torn read pass.

use std::hint::spin_loop;
use std::sync::atomic::{fence, AtomicU64, Ordering};

use crate::candle::{Candle, FLAG_REPAIRED, RECORD_WORDS};
use crate::layout::{ring as off, ring_size, SLOT_SIZE};
use crate::mem::{Mem, MemMut};

/// Failed tries in a row after which a reader yields the CPU instead of spinning: on a busy
/// machine the writer may have been descheduled inside its write section, and spinning then
/// only keeps it off the core (docs/LAYOUT.md, "Retries").
const SPIN_TRIES: u32 = 100;

/// The pause after failed try number `attempt`.
#[inline]
fn pause(attempt: u32) {
    if attempt < SPIN_TRIES {
        spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// Where one ring lives in a mapping.
///
/// Invariant, checked once by [`RingRef::new`]: the whole ring (`ring_size(capacity)` bytes
/// from `base`) lies inside the mapping, `base` is 8-aligned, and `capacity >= 1`. So every
/// offset computed below is in bounds, whatever position or sequence a torn read produced.
/// The ring remembers the region it was checked against (its start and length), and every
/// method refuses another one ([`RingRef::bound`]), so no safe call can aim its unchecked
/// accesses at memory the check did not cover.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingRef {
    base: usize,
    capacity: u64,
    /// The start of the region checked by `new`, and its length.
    mem_addr: usize,
    mem_len: usize,
}

/// An open write section on one sequence word (the control block's or a slot's): made by
/// [`RingRef::write_section`], closed when dropped, after crossbeam's `SeqLockWriteGuard`. The
/// payload stores go through it, so none can happen outside a section.
struct WriteSection<'a> {
    ring: &'a RingRef,
    mem: &'a MemMut,
    /// The sequence word.
    seq: usize,
    /// Its even value before the section opened.
    s: u64,
}

impl WriteSection<'_> {
    /// A payload store. Relaxed: the section's fence and closing Release order it.
    #[inline(always)]
    fn store(&self, off: usize, value: u64) {
        self.ring.store(self.mem, off, value, Ordering::Relaxed);
    }

    /// Stores a whole record at `at`, word by word.
    #[inline(always)]
    fn store_record(&self, at: usize, words: &[u64; RECORD_WORDS]) {
        for (i, &w) in words.iter().enumerate() {
            self.store(at + 8 * i, w);
        }
    }
}

impl Drop for WriteSection<'_> {
    /// Closes the section. Release (write side of the load pair): a reader that
    /// Acquire-loads `s + 2` sees all payload stores of this section.
    #[inline(always)]
    fn drop(&mut self) {
        self.ring.store(
            self.mem,
            self.seq,
            self.s.wrapping_add(2),
            Ordering::Release,
        );
    }
}

/// The reader gave up: a sequence stayed odd or kept changing for `attempts` tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Busy {
    pub attempts: u32,
}

/// The `position` word of a slot that a restarting writer found half-written and dropped: no
/// position is ever that large (2^64 − 1 pushes), so no reader takes it for a candle.
pub(crate) const DROPPED: u64 = u64::MAX;

/// What a slot held when it was read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Slot {
    /// The closed candle at the position asked for.
    Candle(Candle),
    /// A later position: the writer lapped the reader, which must start again from a fresh
    /// control copy.
    Lapped,
    /// A restarting writer found the slot torn and dropped it (see [`RingRef::repair`]): the
    /// position asked for has no candle. Nothing older than the slot's last write can be
    /// there either, so the reader skips it.
    Dropped,
}

/// A consistent copy of a ring's control block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Control {
    /// Closed candles ever pushed; the newest is at position `head - 1`.
    pub head: u64,
    /// Writer clock (unix ns) of the last change to the ring.
    pub last_change_ns: u64,
    /// The forming candle, if there is one.
    pub forming: Option<Candle>,
    /// Of a [`snapshot`](RingRef::snapshot): the position of its oldest closed candle (`head`
    /// when it holds none, and for [`read_control`](RingRef::read_control)).
    pub first: u64,
    /// Of a snapshot: whether a dropped slot was left out, so that its candles are not the
    /// positions `first..head` one for one.
    pub dropped: bool,
}

impl RingRef {
    /// The ring of `capacity` slots at `base` in `mem`, if it fits there.
    pub(crate) fn new(base: usize, capacity: u32, mem: &Mem) -> Option<RingRef> {
        let end = base.checked_add(ring_size(capacity))?;
        (capacity >= 1 && base.is_multiple_of(8) && end <= mem.len()).then_some(RingRef {
            base,
            capacity: u64::from(capacity),
            mem_addr: mem.addr(),
            mem_len: mem.len(),
        })
    }

    /// Refuses (panics on) a region other than the one `new` checked: a programming error,
    /// and the one way a safe call could send this ring's unchecked accesses elsewhere. Two
    /// compares a call, not a word.
    #[inline(always)]
    fn bound(&self, mem: &Mem) {
        if mem.addr() != self.mem_addr || mem.len() != self.mem_len {
            another_region();
        }
    }

    /// Closed candles the ring keeps.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Whether byte offset `off` is one of this ring's words.
    #[inline(always)]
    fn owns(&self, off: usize) -> bool {
        off >= self.base
            && off.is_multiple_of(8)
            && off + 8 <= self.base + ring_size(self.capacity as u32)
    }

    /// Loads one of this ring's words. Every caller below computes `off` from `self.base`
    /// and a field offset of the ring's layout (below 128), or from [`slot`](Self::slot)
    /// (a position modulo the capacity) and a field offset below the slot size: always a word
    /// of this ring, whatever a torn read left in a position or sequence. Every caller is a
    /// method that called [`bound`](Self::bound) with `mem` first.
    #[inline(always)]
    fn load(&self, mem: &Mem, off: usize, order: Ordering) -> u64 {
        debug_assert!(self.owns(off), "word {off} is not this ring's");
        debug_assert_eq!(mem.addr(), self.mem_addr, "another region");
        // SAFETY: `off` is one of this ring's words (see above); `RingRef::new` checked that
        // the whole ring lies inside the region it was given and that `base` is 8-aligned, and
        // `bound` checked that `mem` is that region.
        unsafe { mem.load_unchecked(off, order) }
    }

    /// Stores one of this ring's words; `off` and `mem` as for [`load`](Self::load).
    #[inline(always)]
    fn store(&self, mem: &MemMut, off: usize, value: u64, order: Ordering) {
        debug_assert!(self.owns(off), "word {off} is not this ring's");
        debug_assert_eq!(mem.addr(), self.mem_addr, "another region");
        // SAFETY: as in `load`.
        unsafe { mem.store_unchecked(off, value, order) }
    }

    /// Copies the record at `at` (the forming record, or a slot's record) word by word.
    #[inline(always)]
    fn load_record(&self, mem: &Mem, at: usize) -> [u64; RECORD_WORDS] {
        // Relaxed: see the callers; consistency comes from the sequence check.
        std::array::from_fn(|i| self.load(mem, at + 8 * i, Ordering::Relaxed))
    }

    /// The ring's `source_flags` word (docs/LAYOUT.md).
    pub(crate) fn source_flags(&self, mem: &Mem) -> u64 {
        self.bound(mem);
        // Relaxed: an independent flag word outside the seqlock; readers load it once.
        self.load(mem, self.base + off::SOURCE_FLAGS, Ordering::Relaxed)
    }

    /// Stores the ring's `source_flags` word. Only the writer calls this.
    pub(crate) fn set_source_flags(&self, mem: &MemMut, flags: u64) {
        self.bound(mem);
        // Relaxed: as in `source_flags`.
        self.store(mem, self.base + off::SOURCE_FLAGS, flags, Ordering::Relaxed);
    }

    fn slot(&self, position: u64) -> usize {
        debug_assert!(self.capacity >= 1, "a ring has at least one slot");
        self.base + off::SLOTS + (position % self.capacity) as usize * SLOT_SIZE
    }

    // ---------------------------------------------------------------- write side

    /// Opens a write section on the sequence at `seq`; the section closes when the returned
    /// guard is dropped.
    #[inline(always)]
    fn write_section<'a>(&'a self, mem: &'a MemMut, seq: usize) -> WriteSection<'a> {
        // Relaxed: the single writer is the only one that stores to the sequence, so it reads
        // back its own last value.
        let s = self.load(mem, seq, Ordering::Relaxed);
        debug_assert!(s.is_multiple_of(2), "write section opened twice");
        // Relaxed store + Release fence (write side of the fence pair): the fence orders the
        // odd value before every payload store that follows, for any reader whose
        // `fence(Acquire)` comes after loading one of those payload values.
        self.store(mem, seq, s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        WriteSection {
            ring: self,
            mem,
            seq,
            s,
        }
    }

    /// A section a writer that died left open: the sequence at `seq` holds the odd value
    /// `odd`. Its payload stores are ordered like those of a section opened here, because the
    /// closing Release is what readers pair with (they retried while the value was odd); the
    /// guard closes it with `odd + 1`.
    fn torn_section<'a>(&'a self, mem: &'a MemMut, seq: usize, odd: u64) -> WriteSection<'a> {
        debug_assert!(odd % 2 == 1, "not an open section");
        WriteSection {
            ring: self,
            mem,
            seq,
            s: odd.wrapping_sub(1),
        }
    }

    /// Opens a section on the control block, stamped with the time of the change.
    #[inline(always)]
    fn control_section<'a>(&'a self, mem: &'a MemMut, now_ns: u64) -> WriteSection<'a> {
        let section = self.write_section(mem, self.base + off::SEQ);
        section.store(self.base + off::LAST_CHANGE_NS, now_ns);
        section
    }

    /// Replaces the forming candle (or removes it, with `None`).
    #[inline]
    pub(crate) fn set_forming(&self, mem: &MemMut, forming: Option<&Candle>, now_ns: u64) {
        self.bound(mem);
        let words = forming_record(forming);
        self.control_section(mem, now_ns)
            .store_record(self.base + off::FORMING, &words);
    }

    /// Appends `closed` at position `head` and, in the same control update, makes `forming` the
    /// forming candle. Readers see either the old head and old forming candle, or both new.
    #[inline]
    pub(crate) fn push(
        &self,
        mem: &MemMut,
        closed: &Candle,
        forming: Option<&Candle>,
        now_ns: u64,
    ) {
        self.bound(mem);
        // Relaxed: only this writer stores `head`.
        let head = self.load(mem, self.base + off::HEAD, Ordering::Relaxed);
        self.write_slot(
            mem,
            head,
            &Candle {
                forming: false,
                ..*closed
            },
        );
        // The slot's closing Release store is sequenced before the control section below, so a
        // reader that sees the new head (through the control sequence's Acquire) sees the slot.
        let words = forming_record(forming);
        let control = self.control_section(mem, now_ns);
        control.store(self.base + off::HEAD, head + 1);
        control.store_record(self.base + off::FORMING, &words);
    }

    /// Rewrites the newest closed candle in place. Returns `false` if the ring has none.
    pub(crate) fn amend_last(&self, mem: &MemMut, closed: &Candle, now_ns: u64) -> bool {
        self.bound(mem);
        let head = self.load(mem, self.base + off::HEAD, Ordering::Relaxed);
        if head == 0 {
            return false;
        }
        self.write_slot(
            mem,
            head - 1,
            &Candle {
                forming: false,
                ..*closed
            },
        );
        // Bump the control sequence too, so that readers polling `last_change_ns` see it.
        drop(self.control_section(mem, now_ns));
        true
    }

    fn write_slot(&self, mem: &MemMut, position: u64, c: &Candle) {
        let at = self.slot(position);
        let slot = self.write_section(mem, at + off::SLOT_SEQ);
        slot.store(at + off::SLOT_POSITION, position);
        slot.store_record(at + off::SLOT_RECORD, &c.to_words());
    }

    /// Makes every odd sequence even again after a writer died inside a write section.
    /// Nobody can tell which half of a torn record was written, so neither is served: a torn
    /// forming record is removed, and a torn slot is **dropped** (its position word set to
    /// [`DROPPED`], its record zeroed), so readers skip that position from then on rather
    /// than serve half of a candle or stall on a position word that names a push that never
    /// happened. The next push into the slot, or a correction of the newest candle from the
    /// feed, fills it again. Returns how many sections were repaired. Only the (new) single
    /// writer may call this.
    pub(crate) fn repair(&self, mem: &MemMut) -> u32 {
        self.bound(mem);
        let mut repaired = 0;
        let seq = self.base + off::SEQ;
        let s = self.load(mem, seq, Ordering::Relaxed);
        if s % 2 == 1 {
            // `head` is a single word, so it is either the old or the new value, and both are
            // consistent with the slots (a slot is complete before head moves past it).
            self.torn_section(mem, seq, s)
                .store_record(self.base + off::FORMING, &[0; RECORD_WORDS]);
            repaired += 1;
        }
        // Relaxed: only this writer stores `head`, and the section above left it whole.
        let head = self.load(mem, self.base + off::HEAD, Ordering::Relaxed);
        for i in 0..self.capacity {
            let at = self.base + off::SLOTS + i as usize * SLOT_SIZE;
            let seq = at + off::SLOT_SEQ;
            let s = self.load(mem, seq, Ordering::Relaxed);
            // Writers before this one kept a torn record and flagged it repaired: drop those
            // too, under a section of their own.
            let flags = self.load(
                mem,
                at + off::SLOT_RECORD + 8 * (RECORD_WORDS - 1),
                Ordering::Relaxed,
            ) >> 32;
            // A push whose slot was written whole but whose head never moved (the writer died
            // between the two sections): the slot of position `head` names `head`, and the
            // position it held, the oldest below `head`, is gone. Readers would take it as
            // lapped and start again for ever; it is dropped like a torn one. (A slot never
            // written has sequence 0 and position 0, which is no push at all.)
            let position = self.load(mem, at + off::SLOT_POSITION, Ordering::Relaxed);
            let unpublished =
                s != 0 && s.is_multiple_of(2) && position == head && self.slot(head) == at;
            let section = if s % 2 == 1 {
                Some(self.torn_section(mem, seq, s))
            } else if flags & u64::from(FLAG_REPAIRED) != 0 || unpublished {
                Some(self.write_section(mem, seq))
            } else {
                None
            };
            if let Some(slot) = section {
                slot.store(at + off::SLOT_POSITION, DROPPED);
                slot.store_record(at + off::SLOT_RECORD, &[0; RECORD_WORDS]);
                repaired += 1;
            }
        }
        repaired
    }

    // ---------------------------------------------------------------- read side

    /// Copies the control block, retrying up to `max_attempts` times.
    #[inline]
    pub(crate) fn read_control(
        &self,
        mem: &Mem,
        max_attempts: u32,
        retries: &AtomicU64,
    ) -> Result<Control, Busy> {
        self.bound(mem);
        let seq = self.base + off::SEQ;
        for attempt in 0..max_attempts {
            // Acquire (read side of the load pair): pairs with the writer's closing Release.
            let s1 = self.load(mem, seq, Ordering::Acquire);
            if s1 % 2 == 1 {
                retried(retries);
                pause(attempt);
                continue;
            }
            // Relaxed payload loads; whether they are consistent is decided below.
            let head = self.load(mem, self.base + off::HEAD, Ordering::Relaxed);
            let last_change_ns = self.load(mem, self.base + off::LAST_CHANGE_NS, Ordering::Relaxed);
            let words = self.load_record(mem, self.base + off::FORMING);
            // Acquire fence (read side of the fence pair): pairs with the writer's Release fence
            // after its odd store, so a payload load that saw a newer write forces `s2 != s1`.
            fence(Ordering::Acquire);
            // Relaxed is enough after the fence.
            let s2 = self.load(mem, seq, Ordering::Relaxed);
            if s1 == s2 {
                // Only now are `head` and the record trusted.
                let forming = Candle::from_words(&words);
                return Ok(Control {
                    head,
                    last_change_ns,
                    forming: forming.forming.then_some(forming),
                    first: head,
                    dropped: false,
                });
            }
            retried(retries);
            pause(attempt);
        }
        Err(Busy {
            attempts: max_attempts,
        })
    }

    /// Copies the closed candle at `position` (see [`Slot`] for what else a slot may hold).
    #[inline]
    pub(crate) fn read_slot(
        &self,
        mem: &Mem,
        position: u64,
        max_attempts: u32,
        retries: &AtomicU64,
    ) -> Result<Slot, Busy> {
        self.bound(mem);
        // `slot()` takes the position modulo capacity, so even a position from a torn read could
        // not leave the ring; callers only pass positions below a validated head.
        let at = self.slot(position);
        let seq = at + off::SLOT_SEQ;
        for attempt in 0..max_attempts {
            // Acquire / Relaxed / fence(Acquire) / Relaxed: the same pairs as in `read_control`,
            // with the slot's own sequence.
            let s1 = self.load(mem, seq, Ordering::Acquire);
            if s1 % 2 == 1 {
                retried(retries);
                pause(attempt);
                continue;
            }
            let stored_position = self.load(mem, at + off::SLOT_POSITION, Ordering::Relaxed);
            let words = self.load_record(mem, at + off::SLOT_RECORD);
            fence(Ordering::Acquire);
            let s2 = self.load(mem, seq, Ordering::Relaxed);
            if s1 == s2 {
                return Ok(match stored_position {
                    p if p == position => Slot::Candle(Candle::from_words(&words)),
                    DROPPED => Slot::Dropped,
                    _ => Slot::Lapped,
                });
            }
            retried(retries);
            pause(attempt);
        }
        Err(Busy {
            attempts: max_attempts,
        })
    }

    /// Fills `out` with up to `closed` of the newest closed candles, oldest first, and returns
    /// the forming candle of the same control snapshot (not pushed to `out`). With
    /// `forming_takes_a_place`, one closed candle fewer is read when there is a forming one.
    ///
    /// Consistency: the closed positions are exactly those below the snapshot's head, each read
    /// under its own slot sequence; if the writer laps a slot while it is read, the whole read
    /// starts again. So the result is the ring as it stood when the control block was read,
    /// except that a closed candle amended since then may appear in its amended form. A
    /// dropped slot (see [`repair`](Self::repair)) is left out, so the result may hold fewer
    /// candles than asked for.
    pub(crate) fn snapshot(
        &self,
        mem: &Mem,
        closed: usize,
        forming_takes_a_place: bool,
        out: &mut Vec<Candle>,
        max_attempts: u32,
        retries: &AtomicU64,
    ) -> Result<Control, Busy> {
        'restart: for attempt in 0..max_attempts {
            let mut control = self.read_control(mem, max_attempts, retries)?;
            let closed = if forming_takes_a_place && control.forming.is_some() {
                closed.saturating_sub(1)
            } else {
                closed
            };
            let n = (closed as u64).min(control.head).min(self.capacity);
            out.clear();
            out.reserve(n as usize + 1);
            control.first = control.head - n;
            for position in control.first..control.head {
                match self.read_slot(mem, position, max_attempts, retries)? {
                    Slot::Candle(c) => out.push(c),
                    Slot::Dropped => control.dropped = true,
                    Slot::Lapped => {
                        retried(retries);
                        pause(attempt);
                        continue 'restart;
                    }
                }
            }
            return Ok(control);
        }
        Err(Busy {
            attempts: max_attempts,
        })
    }
}

/// The words of the forming-candle record: `forming` marked as forming, or all zeros (the
/// record's "none") without one.
#[inline(always)]
fn forming_record(forming: Option<&Candle>) -> [u64; RECORD_WORDS] {
    forming.map_or([0; RECORD_WORDS], |c| {
        Candle {
            forming: true,
            ..*c
        }
        .to_words()
    })
}

/// The panic of a ring handed a region other than its own, out of line (see
/// [`RingRef::bound`]).
#[cold]
#[inline(never)]
fn another_region() -> ! {
    panic!("a ring was handed a region other than the one it was checked against")
}

/// Counts one failed attempt. Only the retry path pays for it.
#[cold]
fn retried(retries: &AtomicU64) {
    // Relaxed: a statistic.
    retries.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::ring_size;
    use crate::mem::test_support::HeapMem;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    /// Loop counts shrink under Miri, which is ~1000x slower.
    const fn scaled(native: u64, miri: u64) -> u64 {
        if cfg!(miri) {
            miri
        } else {
            native
        }
    }

    /// A candle whose every field derives from `k`, so a torn copy is detectable.
    fn derived(k: u64) -> Candle {
        let base = k as f64;
        Candle {
            time: k as i64 * 60,
            open: base,
            high: base + 2.0,
            low: base - 2.0,
            close: base + 1.0,
            tick_volume: k * 3,
            spread: (k % 1000) as i32,
            real_volume: k ^ 0xABCD,
            forming: false,
            repaired: false,
        }
    }

    fn is_derived(c: &Candle) -> bool {
        let k = (c.time / 60) as u64;
        *c == Candle {
            forming: c.forming,
            ..derived(k)
        }
    }

    static RETRIES: AtomicU64 = AtomicU64::new(0);

    fn ring(capacity: u64) -> (HeapMem, RingRef) {
        let heap = HeapMem::new(ring_size(capacity as u32));
        let ring = RingRef::new(0, capacity as u32, &heap.mem()).expect("fits");
        (heap, ring)
    }

    #[test]
    #[should_panic(expected = "a region other than the one it was checked against")]
    fn a_ring_refuses_a_region_it_was_not_checked_against() {
        let (_heap, r) = ring(4);
        // Another region of the same size: the ring's unchecked accesses would land in it.
        let other = HeapMem::new(ring_size(4));
        let _ = r.read_control(&other.mem(), 1, &RETRIES);
    }

    #[test]
    fn empty_ring_reads_as_empty() {
        let (heap, r) = ring(4);
        let mem = heap.mem();
        let mut out = Vec::new();
        let c = r.snapshot(&mem, 10, false, &mut out, 10, &RETRIES).unwrap();
        assert_eq!((c.head, c.forming, out.len()), (0, None, 0));
    }

    #[test]
    fn push_and_forming_keep_order_and_wrap() {
        let (heap, r) = ring(3);
        let mem = heap.mem();
        for k in 1..=5 {
            r.push(&mem, &derived(k), Some(&derived(k + 1)), k);
        }
        let mut out = Vec::new();
        let c = r.snapshot(&mem, 10, false, &mut out, 10, &RETRIES).unwrap();
        assert_eq!(c.head, 5);
        assert_eq!(
            out.iter().map(|c| c.time / 60).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert!(out.iter().all(|c| !c.forming));
        assert_eq!(
            c.forming,
            Some(Candle {
                forming: true,
                ..derived(6)
            })
        );
        assert_eq!(c.last_change_ns, 5);

        r.snapshot(&mem, 2, false, &mut out, 10, &RETRIES).unwrap();
        assert_eq!(out.iter().map(|c| c.time / 60).collect::<Vec<_>>(), [4, 5]);

        assert!(r.amend_last(&mem, &derived(50), 9));
        r.snapshot(&mem, 1, false, &mut out, 10, &RETRIES).unwrap();
        assert_eq!(out, [derived(50)]);

        r.set_forming(&mem, None, 10);
        assert_eq!(r.read_control(&mem, 10, &RETRIES).unwrap().forming, None);
    }

    #[test]
    fn lapped_slot_reads_as_none() {
        let (heap, r) = ring(2);
        let mem = heap.mem();
        for k in 0..3 {
            r.push(&mem, &derived(k), None, 0);
        }
        assert_eq!(r.read_slot(&mem, 0, 10, &RETRIES).unwrap(), Slot::Lapped);
        assert_eq!(
            r.read_slot(&mem, 2, 10, &RETRIES).unwrap(),
            Slot::Candle(derived(2))
        );
    }

    #[test]
    fn odd_sequence_makes_readers_give_up_not_hang() {
        let (heap, r) = ring(2);
        let mem = heap.mem();
        r.push(&mem, &derived(1), None, 0);
        // A writer that died inside a section leaves the sequence odd: its guard never drops.
        std::mem::forget(r.write_section(&mem, r.base + off::SEQ));
        assert_eq!(
            r.read_control(&mem, 100, &RETRIES),
            Err(Busy { attempts: 100 })
        );
        let mut out = Vec::new();
        assert!(r.snapshot(&mem, 5, false, &mut out, 100, &RETRIES).is_err());

        // The next writer repairs it; the closed candle survives, the torn forming one does not.
        assert_eq!(r.repair(&mem), 1);
        let c = r.snapshot(&mem, 5, false, &mut out, 100, &RETRIES).unwrap();
        assert_eq!((c.head, c.forming), (1, None));
        assert_eq!(out, [derived(1)]);
    }

    /// Writes half of `c` into the slot of `position` and leaves the section open, as a writer
    /// killed there would; `position_word` is what it had written into the position word.
    fn tear_slot(r: &RingRef, mem: &MemMut, position: u64, position_word: u64, c: &Candle) {
        let at = r.slot(position);
        let section = r.write_section(mem, at + off::SLOT_SEQ);
        section.store(at + off::SLOT_POSITION, position_word);
        for (i, w) in c.to_words().iter().enumerate().take(RECORD_WORDS / 2) {
            section.store(at + off::SLOT_RECORD + 8 * i, *w);
        }
        // Killed here: the section stays open.
        std::mem::forget(section);
    }

    fn times(out: &[Candle]) -> Vec<i64> {
        out.iter().map(|c| c.time / 60).collect()
    }

    #[test]
    fn a_torn_amendment_is_dropped_not_served() {
        // The attack's W3/C6: the newest closed slot torn during a correction (old position
        // word, half a new record).
        let (heap, r) = ring(4);
        let mem = heap.mem();
        for k in 1..=3 {
            r.push(&mem, &derived(k), Some(&derived(k + 1)), k);
        }
        tear_slot(&r, &mem, 2, 2, &derived(1440));
        let mut out = Vec::new();
        assert!(r.snapshot(&mem, 10, false, &mut out, 50, &RETRIES).is_err());
        assert_eq!(r.repair(&mem), 1);
        // Readable at once; the torn candle is gone, the others are untouched.
        let c = r.snapshot(&mem, 10, false, &mut out, 50, &RETRIES).unwrap();
        assert_eq!(times(&out), [1, 2]);
        assert_eq!(c.head, 3);
        assert!(out.iter().all(|c| *c == derived(c.time as u64 / 60)));
        assert_eq!(r.read_slot(&mem, 2, 10, &RETRIES).unwrap(), Slot::Dropped);
        // A correction from the feed fills it again.
        assert!(r.amend_last(&mem, &derived(3), 9));
        r.snapshot(&mem, 10, false, &mut out, 50, &RETRIES).unwrap();
        assert_eq!(times(&out), [1, 2, 3]);
    }

    #[test]
    fn a_torn_push_is_dropped_and_the_ring_reads_at_once() {
        // C5: a push torn after its position word (the slot of position `head`, which still
        // held position `head − capacity`).
        let (heap, r) = ring(3);
        let mem = heap.mem();
        for k in 0..5 {
            r.push(&mem, &derived(k), None, k);
        }
        tear_slot(&r, &mem, 5, 5, &derived(5));
        assert_eq!(r.repair(&mem), 1);
        let mut out = Vec::new();
        let c = r.snapshot(&mem, 10, false, &mut out, 50, &RETRIES).unwrap();
        // Position 2 (lost with its slot) is skipped; 3 and 4 are intact.
        assert_eq!((c.head, times(&out)), (5, vec![3, 4]));
        // The next push fills the slot again.
        r.push(&mem, &derived(5), None, 6);
        r.snapshot(&mem, 10, false, &mut out, 50, &RETRIES).unwrap();
        assert_eq!(times(&out), [3, 4, 5]);
    }

    #[test]
    fn a_push_killed_between_its_slot_and_its_head_is_dropped_and_the_ring_reads_at_once() {
        // The slot of position 5 (which held position 2) was written whole, and the writer
        // died before the control section moved the head to 6.
        let (heap, r) = ring(3);
        let mem = heap.mem();
        for k in 0..5 {
            r.push(&mem, &derived(k), None, k);
        }
        r.write_slot(&mem, 5, &derived(5));
        let mut out = Vec::new();
        assert!(
            r.snapshot(&mem, 10, false, &mut out, 50, &RETRIES).is_err(),
            "lapped for ever"
        );
        assert_eq!(r.repair(&mem), 1);
        let c = r.snapshot(&mem, 10, false, &mut out, 50, &RETRIES).unwrap();
        assert_eq!((c.head, times(&out)), (5, vec![3, 4]));
        r.push(&mem, &derived(5), None, 6);
        r.snapshot(&mem, 10, false, &mut out, 50, &RETRIES).unwrap();
        assert_eq!(times(&out), [3, 4, 5]);
    }

    #[test]
    fn a_record_an_older_writer_flagged_repaired_is_dropped_at_restart() {
        let (heap, r) = ring(4);
        let mem = heap.mem();
        r.push(&mem, &derived(1), None, 0);
        let flagged = Candle {
            repaired: true,
            ..derived(2)
        };
        r.push(&mem, &flagged, None, 0);
        assert_eq!(r.repair(&mem), 1);
        let mut out = Vec::new();
        r.snapshot(&mem, 10, false, &mut out, 10, &RETRIES).unwrap();
        assert_eq!(times(&out), [1]);
    }

    /// One writer thread pushes and updates the forming candle as fast as it can while two
    /// readers check that every snapshot is untorn, contiguous and ordered.
    #[test]
    fn concurrent_readers_never_see_a_torn_snapshot() {
        let capacity = 8;
        let (heap, r) = ring(capacity);
        let heap = Arc::new(heap);
        let done = Arc::new(AtomicBool::new(false));
        let writes = scaled(200_000, 300);

        let writer = {
            let (heap, done) = (Arc::clone(&heap), Arc::clone(&done));
            std::thread::spawn(move || {
                let mem = heap.mem();
                let mut k = 1;
                while k < writes {
                    // Three forming updates per closed candle, all derived from the same k.
                    for _ in 0..3 {
                        r.set_forming(&mem, Some(&derived(k)), k);
                    }
                    r.push(&mem, &derived(k), Some(&derived(k + 1)), k);
                    k += 1;
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
                    let (mut checked, mut busy) = (0u64, 0u64);
                    loop {
                        let finished = done.load(Ordering::Relaxed);
                        match r.snapshot(&mem, 5, false, &mut out, 1000, &RETRIES) {
                            Ok(c) => {
                                assert!(out.iter().all(is_derived), "torn closed: {out:?}");
                                for pair in out.windows(2) {
                                    assert_eq!(pair[0].time + 60, pair[1].time, "gap: {out:?}");
                                }
                                if let Some(f) = c.forming {
                                    assert!(is_derived(&f), "torn forming: {f:?}");
                                    if let Some(last) = out.last() {
                                        // The forming candle is always the one after the
                                        // newest closed one: a reader never sees a new head
                                        // with an old forming candle, or the reverse.
                                        assert_eq!(f.time, last.time + 60, "{f:?} vs {last:?}");
                                    }
                                }
                                checked += 1;
                            }
                            Err(_) => busy += 1,
                        }
                        if finished {
                            return (checked, busy);
                        }
                    }
                })
            })
            .collect();
        writer.join().unwrap();
        for reader in readers {
            let (checked, _busy) = reader.join().unwrap();
            assert!(checked > 0, "reader never completed a snapshot");
        }
    }
}
