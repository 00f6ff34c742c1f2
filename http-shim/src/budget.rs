//! The byte budget of answers being built or written, over all connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Most bytes of responses being written at once, over all connections.
pub const MAX_INFLIGHT_BYTES: usize = 64 * 1024 * 1024;

/// The bytes of answers being built or written, over all connections, at most `max`: a
/// reservation is taken before an answer's bytes exist (by the handler, from its estimate)
/// or at the latest before they are written, and given back when they are gone. Clients that
/// send requests and never read the answers therefore cannot make the process hold more.
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    max: usize,
}

impl Budget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Budget {
        Budget {
            used: AtomicUsize::new(0),
            max,
        }
    }

    /// `bytes` of the budget, or `None` if they would pass it.
    pub fn reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        // Relaxed: a count compared with a limit; no other memory is published through it.
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                let after = used.checked_add(bytes)?;
                (after <= self.max).then_some(after)
            })
            .ok()?;
        Some(Reservation {
            budget: Arc::clone(self),
            bytes,
        })
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        // Relaxed: as in `reserve`.
        self.used.load(Ordering::Relaxed)
    }
}

/// Bytes held of a [`Budget`], given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Gives back what is held beyond `bytes` (the answer came out smaller than reserved).
    pub fn shrink_to(&mut self, bytes: usize) {
        if bytes < self.bytes {
            // Relaxed: as in `Budget::reserve`.
            self.budget
                .used
                .fetch_sub(self.bytes - bytes, Ordering::Relaxed);
            self.bytes = bytes;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // Relaxed: as in `Budget::reserve`.
        self.budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}
