//! Word access to memory that other processes may read or write at the same time.
//!
//! Every access to the segment goes through [`Mem::word`] (bounds-checked) or
//! [`Mem::word_unchecked`] (for the rings, whose extent [`RingRef`](crate::ring::RingRef)
//! checked once), which hand out a short-lived `&AtomicU64`. No `&[u8]` or `&T` of a plain type is ever made over the segment: another
//! process may change any byte of it at any moment, and only atomic accesses make that defined
//! behaviour.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

/// A shared read-only mapping of a segment file, and the word view of it: one value, so the
/// view can never outlive the memory it points to.
#[derive(Debug)]
pub(crate) struct Mapping {
    mem: Mem,
    _map: MmapRaw,
}

/// A shared writable mapping (the writer's): its view is a [`MemMut`], the only type with
/// stores, so code holding a reader's [`Mapping`] cannot even express a write.
#[derive(Debug)]
pub(crate) struct MappingMut {
    mem: MemMut,
    _map: MmapRaw,
}

impl Mapping {
    /// Maps the first `len` bytes of `file` shared and read-only (readers). The caller has
    /// checked that the file is at least `len` bytes long: a page past its end is SIGBUS.
    pub(crate) fn read_only(file: &File, len: usize) -> io::Result<Mapping> {
        let map = MmapOptions::new().len(len).map_raw_read_only(file)?;
        if map.len() < len {
            return Err(io::Error::other("mapping shorter than the segment"));
        }
        // SAFETY: `map` is a shared mapping of `map.len()` bytes, page-aligned and so
        // 8-aligned, readable; it is stored beside `mem` in this struct and unmapped only when
        // the struct is dropped, so it outlives every use of `mem`. Every process accesses the
        // segment only through atomic word operations (the crate's protocol, docs/LAYOUT.md).
        let mem = unsafe { Mem::new(map.as_mut_ptr(), map.len()) };
        Ok(Mapping { mem, _map: map })
    }

    /// The word view.
    #[inline(always)]
    pub(crate) fn mem(&self) -> &Mem {
        &self.mem
    }
}

impl MappingMut {
    /// Maps the first `len` bytes of `file` shared and writable (the writer).
    pub(crate) fn read_write(file: &File, len: usize) -> io::Result<MappingMut> {
        let map = MmapOptions::new().len(len).map_raw(file)?;
        if map.len() < len {
            return Err(io::Error::other("mapping shorter than the segment"));
        }
        // SAFETY: as in `Mapping::read_only`, and the mapping is writable, as `MemMut::new`
        // requires.
        let mem = unsafe { MemMut::new(map.as_mut_ptr(), map.len()) };
        Ok(MappingMut { mem, _map: map })
    }

    /// Faults in `len` bytes from `offset` for writing ahead of the stores to them (Linux's
    /// `MADV_POPULATE_WRITE`), so that the writer's appends do not each take a page fault
    /// into the file. Only an optimization: where the kernel cannot (before Linux 5.14, other
    /// systems), the first store to each page faults it in as before.
    pub(crate) fn prefault(&self, offset: usize, len: usize) {
        #[cfg(target_os = "linux")]
        {
            let _ = self
                ._map
                .advise_range(memmap2::Advice::PopulateWrite, offset, len);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (offset, len);
    }

    /// The word view, with stores.
    #[inline(always)]
    pub(crate) fn mem(&self) -> &MemMut {
        &self.mem
    }
}

/// A region of 8-byte words shared with other processes.
///
/// Invariants (established by [`Mem::new`]'s caller):
/// - `base` is 8-byte aligned and valid for reads of `len` bytes for as long as the `Mem` lives;
///   if `writable`, also for writes;
/// - every access to the region, from this or any other process, is an atomic access of a whole
///   aligned word (64 bits, but for the 32-bit wake word: see [`Mem::futex_word`]).
#[derive(Debug)]
pub(crate) struct Mem {
    base: *mut u8,
    len: usize,
}

/// A [`Mem`] that may also be stored to: only a writable mapping (or test memory) makes one.
/// It dereferences to [`Mem`] for loads.
#[derive(Debug)]
pub(crate) struct MemMut(Mem);

impl std::ops::Deref for MemMut {
    type Target = Mem;
    #[inline(always)]
    fn deref(&self) -> &Mem {
        &self.0
    }
}

// SAFETY: `Mem` is a pointer to memory that is only ever accessed through atomic operations
// (see the invariants above), which are sound from any thread; the mapping it points to is owned
// by the struct that owns the `Mem` and outlives it.
unsafe impl Send for Mem {}
// SAFETY: as for `Send`: `&Mem` only gives out `&AtomicU64`, which is `Sync`.
unsafe impl Sync for Mem {}

impl Mem {
    /// # Safety
    /// `base` must be 8-byte aligned and valid for reads of `len` bytes until the returned
    /// value is dropped, and all other accesses to that memory, from any thread or process,
    /// must be atomic word accesses.
    pub(crate) unsafe fn new(base: *mut u8, len: usize) -> Mem {
        debug_assert_eq!(base as usize % 8, 0, "segment base must be 8-byte aligned");
        Mem { base, len }
    }

    /// Where the region starts, as a number: what a [`RingRef`](crate::ring::RingRef)
    /// remembers of the region it was checked against.
    #[inline(always)]
    pub(crate) fn addr(&self) -> usize {
        self.base as usize
    }

    /// Length of the region in bytes.
    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The word at byte offset `off`, checked: a bad offset panics instead of touching memory
    /// outside the region. For the header, the symbol table and the directory, which are
    /// accessed a few words at a time.
    #[inline(always)]
    fn word(&self, off: usize) -> &AtomicU64 {
        if !(off.is_multiple_of(8) && off < self.len && self.len - off >= 8) {
            out_of_bounds(off, self.len);
        }
        // SAFETY: checked just above: aligned and in bounds.
        unsafe { self.word_unchecked(off) }
    }

    /// The word at byte offset `off`, unchecked: for the ring protocol's hot paths, where
    /// [`RingRef`](crate::ring::RingRef) checked its whole extent once. A bounds check per
    /// word cost 6 to 11 % on reads and doubled the writer's tick update (docs/BENCHMARKS.md).
    ///
    /// # Safety
    /// `off` is a multiple of 8 and `off + 8 <= self.len()`.
    #[inline(always)]
    pub(crate) unsafe fn word_unchecked(&self, off: usize) -> &AtomicU64 {
        debug_assert!(
            off.is_multiple_of(8) && off + 8 <= self.len,
            "word {off} outside {}",
            self.len
        );
        // SAFETY: `off + 8 <= len` and `off` is a multiple of 8 (the caller's contract), so the
        // pointer is aligned and in bounds. The memory stays mapped for the lifetime of
        // `&self`, and every access to it is atomic (type invariant), as
        // `AtomicU64::from_ptr` requires. On a read-only mapping only loads are issued (stores
        // exist only on `MemMut`), and the standard library permits atomic loads of at most
        // pointer size on read-only memory.
        unsafe { AtomicU64::from_ptr(self.base.add(off).cast::<u64>()) }
    }

    /// The 32-bit futex word at `off`, checked: the header's wake word (docs/LAYOUT.md,
    /// "Waiting for a change"), the one place of the segment accessed in 32 bits, because the
    /// futex system call takes a 32-bit word. Every process accesses that word only through
    /// this view (and its 64-bit slot's upper half never), so the region's accesses stay
    /// atomic and of one size per location.
    pub(crate) fn futex_word(&self, off: usize) -> &AtomicU32 {
        if !(off.is_multiple_of(8) && off < self.len && self.len - off >= 8) {
            out_of_bounds(off, self.len);
        }
        // SAFETY: checked just above: 8-aligned (so 4-aligned) and in bounds. The memory stays
        // mapped for the lifetime of `&self`; every access to these 4 bytes, in any process, is
        // a 32-bit atomic one (see above), as `AtomicU32::from_ptr` requires. On a read-only
        // mapping only loads (and `FUTEX_WAIT`, which only reads) are issued.
        unsafe { AtomicU32::from_ptr(self.base.add(off).cast::<u32>()) }
    }

    /// Loads the word at `off` (checked).
    #[inline(always)]
    pub(crate) fn load(&self, off: usize, order: Ordering) -> u64 {
        self.word(off).load(order)
    }

    /// Loads the word at `off`, unchecked.
    ///
    /// # Safety
    /// As for [`word_unchecked`](Self::word_unchecked).
    #[inline(always)]
    pub(crate) unsafe fn load_unchecked(&self, off: usize, order: Ordering) -> u64 {
        // SAFETY: the caller's contract is `word_unchecked`'s.
        unsafe { self.word_unchecked(off) }.load(order)
    }
}

impl MemMut {
    /// Asks the CPU to bring the cache lines of bytes `off..off + len` in for writing
    /// (x86-64's `PREFETCHW`), so that a store there soon does not wait for the line to be
    /// fetched; elsewhere, nothing. A hint: it reads and writes nothing. A range outside the
    /// region is ignored.
    #[inline(always)]
    pub(crate) fn prefetch_write(&self, off: usize, len: usize) {
        #[cfg(target_arch = "x86_64")]
        if off.checked_add(len).is_some_and(|end| end <= self.0.len) && len > 0 {
            use core::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0};
            for at in [off, off + len - 1] {
                // SAFETY: `at` is inside the region (checked above), so the pointer stays
                // within the mapping; a prefetch is a hint that neither faults nor reads or
                // writes memory, so it races with no access of another thread or process.
                unsafe { _mm_prefetch::<_MM_HINT_ET0>(self.0.base.add(at).cast::<i8>()) };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (off, len);
    }

    /// # Safety
    /// As for [`Mem::new`], and `base` must be valid for writes of `len` bytes too.
    pub(crate) unsafe fn new(base: *mut u8, len: usize) -> MemMut {
        // SAFETY: the caller's contract includes `Mem::new`'s.
        MemMut(unsafe { Mem::new(base, len) })
    }

    /// Stores `value` at `off`, unchecked.
    ///
    /// # Safety
    /// As for [`Mem::word_unchecked`].
    #[inline(always)]
    pub(crate) unsafe fn store_unchecked(&self, off: usize, value: u64, order: Ordering) {
        // SAFETY: the caller's contract is `word_unchecked`'s; the region is writable (type
        // invariant).
        unsafe { self.0.word_unchecked(off) }.store(value, order);
    }

    /// Stores `value` at `off` (checked).
    #[inline(always)]
    pub(crate) fn store(&self, off: usize, value: u64, order: Ordering) {
        self.0.word(off).store(value, order);
    }
}

/// The panic of a word offset outside the region, out of line so that the check in
/// [`Mem::word`] stays a compare and a branch that is never taken.
#[cold]
#[inline(never)]
fn out_of_bounds(off: usize, len: usize) -> ! {
    panic!("word {off} outside a region of {len} bytes")
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// Ordinary heap memory standing in for a mapping, so the protocol runs under Miri.
    pub(crate) struct HeapMem {
        words: Box<[AtomicU64]>,
    }

    impl HeapMem {
        pub(crate) fn new(bytes: usize) -> HeapMem {
            HeapMem {
                words: (0..bytes.div_ceil(8)).map(|_| AtomicU64::new(0)).collect(),
            }
        }

        pub(crate) fn mem(&self) -> MemMut {
            // SAFETY: the boxed slice is 8-aligned, `len` bytes long, writable through its
            // atomics, lives as long as `self` (callers keep `self` alive while they use the
            // `MemMut`), and is only accessed atomically.
            unsafe { MemMut::new(self.words.as_ptr() as *mut u8, self.words.len() * 8) }
        }
    }
}
