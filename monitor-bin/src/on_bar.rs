//! `--on-bar`: a cycle as soon as any watched symbol closes an M1 candle, woken by the
//! streamer through the segment's wake futex instead of polling on a timer.
//!
//! The interval still bounds the gap between cycles, so the HTTP and MT5 fallbacks (which
//! cannot wake anyone) keep being read, and a segment that is missing or whose writer has
//! stopped is looked for again every 100 ms.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shm_core::{Reader, SegmentPath, Timeframe, WaitOutcome, WriterState};

/// How often a missing or stopped segment is looked for again, and the longest sleep between
/// two looks at the stop flag.
const RETRY: Duration = Duration::from_millis(100);

/// What ended a wait.
#[derive(Debug, Clone, PartialEq)]
pub enum Woken {
    /// These symbols closed an M1 candle.
    BarClosed {
        /// The symbols whose M1 closed count grew, in the order watched.
        symbols: Vec<String>,
        /// When the first of those closes was published (unix ns, the writer's clock: the
        /// ring's last change), to time the reaction from.
        closed_ns: u64,
    },
    /// The interval passed with no close (or without a segment to wait on).
    Interval,
    /// The stop flag was set.
    Stopped,
}

/// Sleeps on one segment until a watched symbol closes an M1 candle.
pub struct BarWaiter {
    path: SegmentPath,
    symbols: Vec<String>,
    reader: Option<Reader>,
    /// Each symbol's M1 closed count when last looked at; `None` for a symbol the segment
    /// does not carry.
    seen: Vec<Option<u64>>,
}

impl BarWaiter {
    /// A waiter for `symbols` on the segment at `path`; nothing is opened until the first wait.
    pub fn new(path: SegmentPath, symbols: Vec<String>) -> BarWaiter {
        let seen = vec![None; symbols.len()];
        BarWaiter {
            path,
            symbols,
            reader: None,
            seen,
        }
    }

    /// Whether a segment with a publishing writer is open now.
    pub fn attached(&self) -> bool {
        self.reader.is_some()
    }

    /// Waits until a watched symbol closes an M1 candle, `until` passes, or `stop` is set.
    pub fn wait(&mut self, until: Instant, stop: &AtomicBool) -> Woken {
        // Relaxed: the signal handler's flag carries no data with it.
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= until {
                return Woken::Interval;
            }
            let slice = (until - now).min(RETRY);
            let Some(reader) = self.reader.as_ref() else {
                if !self.attach() {
                    std::thread::sleep(slice);
                }
                continue;
            };
            // The token is taken before the counts are read: a close published in between
            // moves the token, so the wait below returns at once instead of missing it.
            let token = reader.changes();
            if let Some(woken) = self.closes() {
                return woken;
            }
            let Some(reader) = self.reader.as_ref() else {
                continue;
            };
            match reader.wait_for_change(token, slice) {
                WaitOutcome::Changed(_) | WaitOutcome::TimedOut => {}
                // Stopped, dead or replaced: drop the mapping (a restarted streamer makes a
                // new segment file) and look for a live one again.
                WaitOutcome::WriterGone(_) => self.reader = None,
            }
        }
        Woken::Stopped
    }

    /// Opens the segment if its writer is publishing, and records where each ring stands so
    /// only closes from now on wake the monitor.
    fn attach(&mut self) -> bool {
        let Ok(reader) = Reader::open(&self.path) else {
            return false;
        };
        if !reader.status().liveness.is_publishing() {
            return false;
        }
        self.seen = self
            .symbols
            .iter()
            .map(|s| {
                let ring = reader.ring(s, Timeframe::M1)?;
                ring.stats().ok().map(|st| st.closed_total)
            })
            .collect();
        self.reader = Some(reader);
        true
    }

    /// The symbols whose M1 closed count grew since last looked at, if any. Only closes
    /// published while the writer runs count: a restarted streamer's backfill (history, not
    /// live bars) moves the counts on without a word.
    fn closes(&mut self) -> Option<Woken> {
        let reader = self.reader.as_ref()?;
        let live = reader.writer_state() == Some(WriterState::Running);
        let mut symbols = Vec::new();
        let mut first_change_ns = u64::MAX;
        for (symbol, seen) in self.symbols.iter().zip(self.seen.iter_mut()) {
            let Some(ring) = reader.ring(symbol, Timeframe::M1) else {
                continue;
            };
            // A read kept busy by the writer is tried again on the next change.
            let Ok(stats) = ring.stats() else { continue };
            match *seen {
                Some(before) if live && stats.closed_total > before => {
                    symbols.push(symbol.clone());
                    first_change_ns = first_change_ns.min(stats.last_change_ns);
                }
                _ => {}
            }
            *seen = Some(stats.closed_total);
        }
        if symbols.is_empty() {
            return None;
        }
        Some(Woken::BarClosed {
            symbols,
            closed_ns: first_change_ns,
        })
    }
}
