//! History older than the rings, from a source's deep backfill (`--history-bars`,
//! `--history-ticks`): checked by the rules every published bar and tick keeps, then written
//! to the history store alone. The rings, and the aggregator's state, are left as they are.

use shm_core::{Candle, CandleDefect, Counter, Timeframe, Writer};

use super::Aggregator;
use crate::quote::{good_price, quote_good};
use crate::source::StoredTicks;

impl Aggregator {
    /// Closed bars of one symbol's timeframe, oldest first, older than its ring holds.
    pub fn on_stored_bars(
        &mut self,
        w: &mut Writer,
        symbol: usize,
        tf: Timeframe,
        bars: &[Candle],
    ) {
        let latest = self.latest_time(w.clock_ns());
        let Some(ring) = self
            .symbols
            .get(symbol)
            .and_then(|s| s.frames.iter().find(|f| f.tf == tf))
            .map(|f| f.ring)
        else {
            return;
        };
        for b in bars {
            let c = Candle {
                forming: false,
                repaired: false,
                ..*b
            };
            if CandleDefect::of_prices(c.open, c.high, c.low, c.close).is_some()
                || ![c.open, c.high, c.low, c.close].into_iter().all(good_price)
                || c.tick_volume > super::MAX_VOLUME
                || c.real_volume > super::MAX_VOLUME
                || c.spread < 0
            {
                w.add(Counter::RejectedBadPrice, 1);
            } else if c.time > latest {
                w.add(Counter::RejectedFutureTime, 1);
            } else {
                w.store_bar(ring, &c);
            }
        }
    }

    /// Ticks of one symbol, oldest first, older than its tick ring holds.
    pub fn on_stored_ticks(&mut self, w: &mut Writer, ticks: &StoredTicks) {
        let latest = self.latest_time(w.clock_ns());
        let Some(id) = self.symbols.get(ticks.symbol).map(|s| s.id) else {
            return;
        };
        for t in &ticks.ticks {
            if t.flags & !shm_core::TICK_FLAGS_KNOWN != 0 {
                w.add(Counter::RejectedBadFlags, 1);
            } else if !quote_good(t.bid, t.ask, t.volume) {
                w.add(Counter::RejectedBadPrice, 1);
            } else if t.time_msc.div_euclid(1000) > latest {
                w.add(Counter::RejectedFutureTime, 1);
            } else if w.store_tick(id, t).is_err() {
                w.add(Counter::RejectedBadPrice, 1);
            }
        }
    }
}
