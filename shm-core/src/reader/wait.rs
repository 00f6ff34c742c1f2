//! Waiting for the writer: the wake-up (see `wake.rs`), liveness on the way, and the closed
//! bars of a ring as they close.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Reader, RingReader};
use crate::candle::Candle;
use crate::error::ReadError;
use crate::layout::hdr;
use crate::ring::Slot;
use crate::status::{Liveness, WriterState};
use crate::wake::{self};

impl Reader {
    /// Where the segment stands now, to wait from with [`wait_for_change`](Self::wait_for_change).
    pub fn changes(&self) -> ChangeToken {
        match self.wake_word() {
            // Acquire: the reader's half of the wake protocol (see `wake.rs`).
            Some(w) => ChangeToken(u64::from(w.load(Ordering::Acquire))),
            None => ChangeToken(self.mem().load(hdr::LAST_UPDATE_NS, Ordering::Acquire)),
        }
    }

    /// The header's wake word, if the writer keeps it (see `wake.rs`).
    fn wake_word(&self) -> Option<&std::sync::atomic::AtomicU32> {
        // Relaxed: a flag set once per file; either answer is safe (see `wake.rs`).
        (self.mem().load(hdr::WAKE_KIND, Ordering::Relaxed) == 1)
            .then(|| self.mem().futex_word(hdr::WAKE_WORD))
    }

    /// Sleeps until the writer publishes a change after `since`, at most `timeout`; never
    /// longer, whatever the writer does. The writer wakes sleeping readers through a futex
    /// on a word of the segment's header (microseconds after it publishes); nothing a reader
    /// may write takes part, so no other reader can delay or spin this one. A writer that
    /// stops or dies while the reader sleeps is reported within [`crate::MAX_WAIT_SLICE`]
    /// (100 ms).
    ///
    /// ```
    /// use std::time::Duration;
    /// use shm_core::{Candle, Layout, Reader, SegmentPath, Timeframe, WaitOutcome, Writer};
    ///
    /// # let dir = std::env::temp_dir().join(format!("shm-core-doc-wait-{}", std::process::id()));
    /// # let path = SegmentPath::at(&dir);
    /// let mut layout = Layout::new();
    /// layout.add_ring("EURUSD", Timeframe::M1, 100)?;
    /// let mut writer = Writer::create(&path, &layout, &Default::default())?;
    /// writer.set_running();
    /// let reader = Reader::open(&path)?;
    /// let since = reader.changes();
    ///
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         let m1 = writer.ring("EURUSD", Timeframe::M1).unwrap();
    ///         writer.update_forming(m1, &Candle::flat(60, 1.1));
    ///         writer.notify(); // after each batch of changes
    ///     });
    ///     let woke = reader.wait_for_change(since, Duration::from_secs(10));
    ///     assert!(matches!(woke, WaitOutcome::Changed(_)));
    /// });
    /// # drop(writer); shm_core::remove_segment(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_for_change(&self, since: ChangeToken, timeout: Duration) -> WaitOutcome {
        let deadline = Instant::now() + timeout;
        let not_publishing = |r: &Reader| {
            let l = r.status().liveness;
            (!l.is_publishing()).then_some(l)
        };
        if let Some(l) = not_publishing(self) {
            return WaitOutcome::WriterGone(l);
        }
        let changed = match (&self.wake, self.wake_word()) {
            (Some(w), Some(word)) if since.0 <= u64::from(u32::MAX) => w
                .wait(word, since.0 as u32, deadline, || {
                    not_publishing(self).is_some()
                })
                .map(|v| ChangeToken(u64::from(v))),
            _ => {
                let mut slept = Duration::ZERO;
                loop {
                    let now = self.changes();
                    if now != since {
                        break Some(now);
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break None;
                    }
                    if slept >= wake::MAX_SLICE {
                        slept = Duration::ZERO;
                        if not_publishing(self).is_some() {
                            break None;
                        }
                    }
                    let step = left.min(Duration::from_millis(1));
                    std::thread::sleep(step);
                    slept += step;
                }
            }
        };
        match changed {
            // A change came from a writer that was publishing a moment ago; only its state
            // word (a stop it announced with its last wake-up) is checked, not the lock, so
            // the wake-up path makes no system call.
            Some(token) => match self.writer_state() {
                Some(WriterState::Stopped) => WaitOutcome::WriterGone(Liveness::Stopped),
                Some(WriterState::Replaced) => WaitOutcome::WriterGone(Liveness::Replaced),
                _ => WaitOutcome::Changed(token),
            },
            None => match not_publishing(self) {
                Some(l) => WaitOutcome::WriterGone(l),
                None => WaitOutcome::TimedOut,
            },
        }
    }
}

/// Where a reader stands in the stream of changes, for [`Reader::wait_for_change`]: the
/// header's wake word, or (from a writer that does not keep it) the time of the last candle
/// change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeToken(u64);

impl ChangeToken {
    /// How many times the writer published between `earlier` and this token: exact with the
    /// wake word (its 32-bit counter, wrapping), else 1 for any difference.
    pub fn steps_since(self, earlier: ChangeToken) -> u64 {
        if self.0 <= u64::from(u32::MAX) && earlier.0 <= u64::from(u32::MAX) {
            u64::from((self.0 as u32).wrapping_sub(earlier.0 as u32))
        } else {
            u64::from(self != earlier)
        }
    }
}

/// How [`Reader::wait_for_change`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// Candles changed; wait from this token next.
    Changed(ChangeToken),
    /// Nothing changed before the timeout.
    TimedOut,
    /// The writer is not publishing any more: stopped, gone or replaced (see the liveness).
    WriterGone(Liveness),
}

/// Each candle a ring closes, as it closes (see [`RingReader::closed_bars`]).
#[derive(Debug)]
pub struct ClosedBars<'a> {
    pub(super) ring: RingReader<'a>,
    /// The position of the next closed candle to hand out.
    pub(super) next: u64,
    pub(super) token: ChangeToken,
}

/// What [`ClosedBars::next_bar`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NextBar {
    /// A newly closed candle.
    Closed(Candle),
    /// None closed before the timeout.
    TimedOut,
    /// The writer is not publishing any more.
    WriterGone(Liveness),
}

impl ClosedBars<'_> {
    /// The next candle the ring closes, waiting at most `timeout`. Candles the ring no longer
    /// holds (a reader far behind a fast writer) are skipped, oldest first.
    pub fn next_bar(&mut self, timeout: Duration) -> Result<NextBar, ReadError> {
        let deadline = Instant::now() + timeout;
        loop {
            let head = self.ring.stats()?.closed_total;
            if self.next < head {
                let oldest = head.saturating_sub(u64::from(self.ring.capacity()));
                self.next = self.next.max(oldest);
                match self.ring.slot_at(self.next)? {
                    Slot::Candle(c) => {
                        self.next += 1;
                        return Ok(NextBar::Closed(c));
                    }
                    // A slot a restart dropped is passed over.
                    Slot::Dropped => self.next += 1,
                    // Lapped while reading: the head, looked at again, moves `next` on.
                    Slot::Lapped => {}
                }
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.ring.reader.wait_for_change(self.token, left) {
                WaitOutcome::Changed(t) => self.token = t,
                WaitOutcome::TimedOut => return Ok(NextBar::TimedOut),
                WaitOutcome::WriterGone(l) => {
                    // Bars closed before the writer went are still handed out.
                    if self.ring.stats()?.closed_total > self.next {
                        continue;
                    }
                    return Ok(NextBar::WriterGone(l));
                }
            }
        }
    }
}

impl Iterator for ClosedBars<'_> {
    type Item = Candle;

    /// Waits as long as it takes; `None` once the writer stops or dies (or a read stays busy).
    fn next(&mut self) -> Option<Candle> {
        loop {
            match self.next_bar(Duration::from_secs(3600)) {
                Ok(NextBar::Closed(c)) => return Some(c),
                Ok(NextBar::TimedOut) => continue,
                Ok(NextBar::WriterGone(_)) | Err(_) => return None,
            }
        }
    }
}
