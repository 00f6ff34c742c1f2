//! The writer's side of the history store: each closed bar and each tick goes to the store
//! before the rings get it, so that a reader who finds a tick in a ring finds it in the store
//! too (the seam rule of `docs/LAYOUT.md`, "History store").
//!
//! A store that fails (a full disk) never holds the rings up: the error is counted in the
//! header (`history_errors`, which `inspect`, `/metrics` and `status()` show) and kept for the
//! streamer to print, and the failing stream tries again every 5 s.

use crate::candle::Candle;
use crate::history::{HistoryError, HistoryWriter};
use crate::status::Counter;
use crate::tick::{Tick, TickDefect};
use crate::writer::{RingId, SymbolId, Writer};

impl Writer {
    /// Attaches a history store: from now on every closed bar and every tick is appended to
    /// it too.
    pub fn attach_history(&mut self, history: HistoryWriter) {
        self.history = Some(Box::new(history));
    }

    /// The attached store.
    pub fn history(&self) -> Option<&HistoryWriter> {
        self.history.as_deref()
    }

    /// The newest bar time the store holds for `ring`, if there is a store.
    pub fn stored_bar(&self, ring: RingId) -> Option<i64> {
        self.history.as_ref()?.newest_bar(ring.0 as usize)
    }

    /// The newest tick time (ms) the store holds for `symbol`, if there is a store.
    pub fn stored_tick(&self, symbol: SymbolId) -> Option<i64> {
        self.history.as_ref()?.newest_tick(symbol.0 as usize)
    }

    /// The newest store error since the last call, for the caller to report once.
    pub fn take_history_error(&mut self) -> Option<HistoryError> {
        self.history_error.take()
    }

    fn history_failed(&mut self, e: HistoryError) {
        self.add(Counter::HistoryErrors, 1);
        self.history_error = Some(e);
    }

    /// A bar of `ring` closed.
    #[inline]
    pub(crate) fn history_bar(&mut self, ring: RingId, bar: &Candle) {
        let now = self.now_ns;
        if let Some(h) = self.history.as_mut() {
            if let Err(e) = h.bar_closed(ring.0 as usize, bar, now) {
                self.history_failed(e);
            }
        }
    }

    /// The newest closed bar of `ring` was corrected.
    pub(crate) fn history_amend(&mut self, ring: RingId, bar: &Candle) {
        if let Some(h) = self.history.as_mut() {
            h.bar_amended(ring.0 as usize, bar);
        }
    }

    /// A tick of symbol index `symbol`, already checked.
    #[inline]
    pub(crate) fn history_tick(&mut self, symbol: usize, tick: &Tick) {
        let now = self.now_ns;
        if let Some(h) = self.history.as_mut() {
            if let Err(e) = h.tick(symbol, tick, now) {
                self.history_failed(e);
            }
        }
    }

    /// A closed bar older than `ring` holds, from a source's deep backfill: to the store
    /// alone, oldest first. One not newer than the store's newest is already there. The
    /// caller has checked it as it checks the bars it publishes.
    pub fn store_bar(&mut self, ring: RingId, bar: &Candle) {
        self.history_bar(ring, bar);
    }

    /// A tick older than the tick ring holds, from a source's deep backfill: to the store
    /// alone, oldest first; refused as the tick ring refuses one (the store's own order rule
    /// drops one older than it holds).
    pub fn store_tick(&mut self, symbol: SymbolId, tick: &Tick) -> Result<(), TickDefect> {
        if let Some(d) = tick.defect() {
            return Err(d);
        }
        self.history_tick(
            symbol.0 as usize,
            &Tick {
                published_ns: self.now_ns,
                ..*tick
            },
        );
        Ok(())
    }

    /// Stores the bars the store held back (a clean stop).
    pub(crate) fn history_flush(&mut self) {
        let now = self.now_ns;
        if let Some(h) = self.history.as_mut() {
            if let Err(e) = h.flush(now) {
                eprintln!("warning: {e}");
                self.add(Counter::HistoryErrors, 1);
            }
        }
    }
}
