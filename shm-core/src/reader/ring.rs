//! The reads of one ring: snapshots, single slots and counts, each checked (`validate.rs`).

use std::sync::atomic::Ordering;

use super::{ClosedBars, Reader};
use crate::candle::Candle;
use crate::error::ReadError;
use crate::layout::RingSpec;
use crate::ring::{Control, RingRef, Slot};
use crate::validate::{self, Checked};
use crate::Timeframe;

/// The last tick of a symbol, as recorded by the writer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TickInfo {
    /// The tick's time, epoch ms, server time.
    pub server_time_ms: i64,
    /// When the writer processed it (unix ns, writer clock at its last heartbeat).
    pub received_ns: u64,
    /// Bid price.
    pub bid: f64,
    /// Ask price.
    pub ask: f64,
}

/// Counts and times of one ring.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RingStats {
    /// Closed candles ever pushed into the ring.
    pub closed_total: u64,
    /// Candles held now: closed ones (at most the capacity) plus the forming one.
    pub buffered: u64,
    /// When the ring last changed (unix ns); 0 if never.
    pub last_change_ns: u64,
    /// Open time of the newest candle (forming if any), server time.
    pub newest_time: Option<i64>,
}

/// One ring of a [`Reader`].
#[derive(Debug, Clone, Copy)]
pub struct RingReader<'a> {
    pub(super) reader: &'a Reader,
    /// Index into `reader.rings` and `reader.layout.rings()`; in bounds by construction.
    pub(super) index: usize,
}

impl<'a> RingReader<'a> {
    fn spec(&self) -> &RingSpec {
        &self.reader.layout.rings()[self.index]
    }

    fn raw(&self) -> &RingRef {
        &self.reader.rings[self.index]
    }

    /// The ring's position in the segment's layout (`reader.layout().rings()`), stable for as
    /// long as the reader stays attached to the same segment.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The ring's symbol.
    pub fn symbol(&self) -> &str {
        self.reader.layout.symbol(self.spec().symbol_index)
    }

    /// The ring's timeframe.
    pub fn timeframe(&self) -> Timeframe {
        self.spec().timeframe
    }

    /// Whether the writer's source said it does not know this ring's symbol (a misspelt symbol
    /// or broker suffix, say). The ring then only holds what it held before, if anything.
    pub fn unknown_to_source(&self) -> bool {
        self.raw().source_flags(self.reader.mem()) & 1 != 0
    }

    /// How many closed candles the ring keeps.
    pub fn capacity(&self) -> u32 {
        self.spec().capacity
    }

    /// Fills `out` with the newest `n` candles, oldest first. The newest is the forming candle
    /// (`forming == true`) when there is one. Fewer than `n` if the ring holds fewer (or a
    /// restart dropped a torn one). Every candle is checked first ([`ReadError::Invalid`]).
    pub fn read_last(&self, n: usize, out: &mut Vec<Candle>) -> Result<(), ReadError> {
        if n == 0 {
            out.clear();
            return Ok(());
        }
        let r = self.raw();
        let control = r.snapshot(
            self.reader.mem(),
            n,
            true,
            out,
            self.reader.max_attempts,
            &self.reader.retries,
        )?;
        // Checked before the forming candle joins `out`: it is still in registers.
        self.check(out, control.forming.as_ref(), &control)?;
        out.extend(control.forming);
        Ok(())
    }

    /// Refuses a snapshot that breaks the writer's rules (see `validate.rs`), and clears it.
    /// Closed candles an earlier read of this reader checked are not checked again: a closed
    /// position is written once (only the newest is ever corrected, and it is always checked),
    /// so this costs a few candles a read rather than all of them (docs/BENCHMARKS.md).
    #[inline]
    fn check(
        &self,
        out: &mut Vec<Candle>,
        forming: Option<&Candle>,
        control: &Control,
    ) -> Result<(), ReadError> {
        let checked = &self.reader.checked[self.index];
        // Relaxed: every value ever stored is a true statement about positions that do not
        // change, so an old one only costs a few more candles checked.
        let known = Checked::unpack(checked.load(Ordering::Relaxed));
        let skip = if control.dropped {
            0
        } else {
            known.skippable(control.first)
        };
        let skip = skip.min(out.len());
        validate::check(self.timeframe(), &out[skip..], forming).map_err(|(time, why)| {
            out.clear();
            ReadError::Invalid { time, why }
        })?;
        if !control.dropped {
            let now = known.extended(control.first, control.head);
            if now != known {
                if let Some(w) = now.pack() {
                    checked.store(w, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }

    /// Fills `out` with the newest `closed` closed candles, oldest first, and returns the
    /// forming candle of the same snapshot; checked as in [`read_last`](Self::read_last).
    pub fn snapshot(
        &self,
        closed: usize,
        out: &mut Vec<Candle>,
    ) -> Result<Option<Candle>, ReadError> {
        let r = self.raw();
        let control = r.snapshot(
            self.reader.mem(),
            closed,
            false,
            out,
            self.reader.max_attempts,
            &self.reader.retries,
        )?;
        self.check(out, control.forming.as_ref(), &control)?;
        Ok(control.forming)
    }

    /// The newest candle: the forming one if any, else the newest closed one.
    pub fn latest(&self) -> Result<Option<Candle>, ReadError> {
        let mut one = Vec::with_capacity(2);
        self.read_last(1, &mut one)?;
        Ok(one.pop())
    }

    /// The closed candle at `position` (0 is the first ever pushed; the newest is
    /// `closed_total - 1`), or `None` if the ring no longer holds it (it was lapped, or a
    /// restart dropped it as torn). The candle is checked on its own ([`Candle::defect`] and
    /// alignment).
    pub fn closed_at(&self, position: u64) -> Result<Option<Candle>, ReadError> {
        Ok(match self.slot_at(position)? {
            Slot::Candle(c) => Some(c),
            Slot::Lapped | Slot::Dropped => None,
        })
    }

    /// What the slot of `position` holds; a candle is checked on its own first.
    pub(super) fn slot_at(&self, position: u64) -> Result<Slot, ReadError> {
        let slot = self.raw().read_slot(
            self.reader.mem(),
            position,
            self.reader.max_attempts,
            &self.reader.retries,
        )?;
        if let Slot::Candle(c) = &slot {
            validate::check(self.timeframe(), std::slice::from_ref(c), None)
                .map_err(|(time, why)| ReadError::Invalid { time, why })?;
        }
        Ok(slot)
    }

    /// Each candle this ring closes from now on, in order, as it closes: the writer wakes the
    /// iterator (see [`Reader::wait_for_change`]), nothing polls. The iterator ends when the
    /// writer stops or dies; [`ClosedBars::next_bar`] waits with a timeout instead.
    ///
    /// ```
    /// use shm_core::{Candle, Layout, Reader, SegmentPath, Timeframe, Writer};
    ///
    /// # let dir = std::env::temp_dir().join(format!("shm-core-doc-bars-{}", std::process::id()));
    /// # let path = SegmentPath::at(&dir);
    /// let mut layout = Layout::new();
    /// layout.add_ring("EURUSD", Timeframe::M1, 100)?;
    /// let mut writer = Writer::create(&path, &layout, &Default::default())?;
    /// writer.set_running();
    /// let reader = Reader::open(&path)?;
    /// let bars = reader.ring("EURUSD", Timeframe::M1).unwrap().closed_bars();
    ///
    /// std::thread::scope(|s| {
    ///     s.spawn(move || {
    ///         let m1 = writer.ring("EURUSD", Timeframe::M1).unwrap();
    ///         for minute in 1..=3 {
    ///             writer.push_closed(m1, &Candle::flat(minute * 60, 1.1));
    ///             writer.notify();
    ///         }
    ///         // Dropping the writer (a clean stop) ends the iteration.
    ///     });
    ///     let times: Vec<i64> = bars.map(|c| c.time).collect();
    ///     assert_eq!(times, [60, 120, 180]);
    /// });
    /// # shm_core::remove_segment(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn closed_bars(self) -> ClosedBars<'a> {
        // The token first, then the head: a bar closed between the two wakes the first wait.
        let token = self.reader.changes();
        let next = self.stats().map_or(0, |s| s.closed_total);
        ClosedBars {
            ring: self,
            next,
            token,
        }
    }

    /// Counts and times.
    pub fn stats(&self) -> Result<RingStats, ReadError> {
        let r = self.raw();
        let mem = self.reader.mem();
        let control = r.read_control(mem, self.reader.max_attempts, &self.reader.retries)?;
        let newest_time = match control.forming {
            Some(f) => Some(f.time),
            None if control.head > 0 => match r.read_slot(
                mem,
                control.head - 1,
                self.reader.max_attempts,
                &self.reader.retries,
            )? {
                Slot::Candle(c) => Some(c.time),
                Slot::Lapped | Slot::Dropped => None,
            },
            None => None,
        };
        Ok(RingStats {
            closed_total: control.head,
            buffered: control.head.min(r.capacity()) + u64::from(control.forming.is_some()),
            last_change_ns: control.last_change_ns,
            newest_time,
        })
    }
}
