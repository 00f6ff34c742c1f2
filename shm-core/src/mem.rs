//! Word access to memory that other processes may read or write at the same time.
//!
//! Every access to the segment goes through [`Mem::word`], which hands out a short-lived
//! `&AtomicU64`. No `&[u8]` or `&T` of a plain type is ever made over the segment: another
//! process may change any byte of it at any moment, and only atomic accesses make that defined
//! behaviour.

use std::sync::atomic::{AtomicU64, Ordering};

/// A region of 8-byte words shared with other processes.
///
/// Invariants (established by [`Mem::new`]'s caller):
/// - `base` is 8-byte aligned and valid for reads of `len` bytes for as long as the `Mem` lives;
///   if `writable`, also for writes;
/// - every access to the region, from this or any other process, is an atomic access of a whole
///   aligned word.
#[derive(Debug)]
pub(crate) struct Mem {
    base: *mut u8,
    len: usize,
    writable: bool,
}

// SAFETY: `Mem` is a pointer to memory that is only ever accessed through atomic operations
// (see the invariants above), which are sound from any thread; the mapping it points to is owned
// by the struct that owns the `Mem` and outlives it.
unsafe impl Send for Mem {}
// SAFETY: as for `Send`: `&Mem` only gives out `&AtomicU64`, which is `Sync`.
unsafe impl Sync for Mem {}

impl Mem {
    /// # Safety
    /// `base` must be 8-byte aligned and valid for reads (and writes, if `writable`) of `len`
    /// bytes until the returned value is dropped, and all other accesses to that memory, from
    /// any thread or process, must be atomic word accesses.
    pub(crate) unsafe fn new(base: *mut u8, len: usize, writable: bool) -> Mem {
        debug_assert_eq!(base as usize % 8, 0, "segment base must be 8-byte aligned");
        Mem {
            base,
            len,
            writable,
        }
    }

    /// Length of the region in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The word at byte offset `off`.
    ///
    /// Callers pass offsets computed from a validated [`Placement`](crate::layout::Placement);
    /// the assertion checks that in debug builds.
    #[inline(always)]
    pub(crate) fn word(&self, off: usize) -> &AtomicU64 {
        debug_assert!(
            off.is_multiple_of(8) && off + 8 <= self.len,
            "word {off} outside {}",
            self.len
        );
        // SAFETY: `off + 8 <= len` and `off` is a multiple of 8 (checked in debug builds; every
        // caller derives `off` from a placement validated against `len`), so the pointer is
        // aligned and in bounds. The memory stays mapped for the lifetime of `&self`, and every
        // access to it is atomic (type invariant), as `AtomicU64::from_ptr` requires. On a
        // read-only mapping only loads are issued (see `store`), and the standard library
        // permits atomic loads of at most pointer size on read-only memory.
        unsafe { AtomicU64::from_ptr(self.base.add(off).cast::<u64>()) }
    }

    /// Loads the word at `off`.
    #[inline(always)]
    pub(crate) fn load(&self, off: usize, order: Ordering) -> u64 {
        self.word(off).load(order)
    }

    /// Stores `value` at `off`. Only a writable region may be stored to.
    #[inline(always)]
    pub(crate) fn store(&self, off: usize, value: u64, order: Ordering) {
        debug_assert!(self.writable, "store to a read-only mapping");
        self.word(off).store(value, order);
    }
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

        pub(crate) fn mem(&self) -> Mem {
            // SAFETY: the boxed slice is 8-aligned, `len` bytes long, lives as long as `self`
            // (callers keep `self` alive while they use the `Mem`), and is only accessed
            // atomically.
            unsafe { Mem::new(self.words.as_ptr() as *mut u8, self.words.len() * 8, true) }
        }
    }
}
