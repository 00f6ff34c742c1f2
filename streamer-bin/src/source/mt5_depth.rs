//! History as deep as the terminal's (`--history-bars`, `--history-ticks`): what the mt5
//! source copies into the history store beyond what the rings hold, at start and for the gap
//! after a restart or a reconnection.
//!
//! - **Bars.** For a timeframe whose store is empty, the `--history-bars` newest bars (MT5's
//!   "Max bars in chart", 100,000 by default): the ring's backfill, and before it the older
//!   ones, fetched back in time with `copy_rates_range` pages (a range by time, so that a bar
//!   closing meanwhile shifts nothing, as it would shift positions). For a store that holds
//!   bars, the bars between its newest and the ring's backfill. Sent oldest first, before the
//!   ring's bars: the store is append-only.
//! - **Ticks.** From `--history-ticks` before the terminal's latest tick (the current and the
//!   previous trading day by default), or from the store's newest, or from the last tick this
//!   source sent (after a reconnection: that millisecond's ticks it had are skipped, so none
//!   is stored twice), up to and with the latest tick: the gateway's paged `copy_ticks_range`,
//!   a page at a time in memory. The live stream then starts after that tick.

use std::sync::mpsc::SyncSender;

use mt5_gateway_client::{Client, Error as GwError, Tick};
use shm_core::{Candle, Timeframe};

use super::{Event, StoredTicks};
use crate::config::TickDepth;

/// What the source copies into the store beyond the rings; `None` without a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    /// Bars per timeframe, the ring's included.
    pub bars: u32,
    /// How far back ticks go.
    pub ticks: TickDepth,
}

/// Bars one `copy_rates_range` page spans at most, by nominal length: within the gateway's
/// 50,000 (months of 28 days hold more bars than 30-day spans would say).
const PAGE_BARS: i64 = 40_000;

/// Bars a `StoredBars` event carries at most, so that one event stays small in the channel.
const EVENT_BARS: usize = 8192;

/// Why copying stopped: the worker stops, or the gateway failed (a reconnection follows).
pub(super) enum Stop {
    Asked,
    Gateway(GwError),
}

fn send(tx: &SyncSender<Event>, ev: Event) -> Result<(), Stop> {
    tx.send(ev).map_err(|_| Stop::Asked)
}

/// The bars of `symbol`'s `tf` the store lacks before `ring_first` (the oldest bar of the
/// ring's backfill), sent as `StoredBars`: down to `want` bars back when the store holds none
/// (`stored` is `None`), else from after its newest. Returns how many were sent. A terminal
/// without that history (an MT5 error) ends the copy; the rings are unaffected.
pub(super) fn bars(
    client: &mut Client,
    tx: &SyncSender<Event>,
    (index, symbol): (usize, &str),
    tf: Timeframe,
    ring_first: i64,
    stored: Option<i64>,
    want: u64,
) -> Result<u64, Stop> {
    let step = PAGE_BARS * tf.nominal_seconds();
    let mut older: Vec<Candle> = Vec::new();
    match stored {
        // Back in time from the ring's first bar, newest page first, until `want` or the
        // terminal's first bar (an empty page: a span of 40,000 bars with none is no market).
        None => {
            let mut to = ring_first - 1;
            let mut pages: Vec<Vec<Candle>> = Vec::new();
            let mut held = 0u64;
            while held < want && to >= 0 {
                let from = (to - step + 1).max(0);
                let page = match client.copy_rates_range(symbol, tf, from, to) {
                    Ok(p) => p,
                    Err(GwError::Mt5 { .. }) => break,
                    Err(e) => return Err(Stop::Gateway(e)),
                };
                if page.is_empty() {
                    break;
                }
                held += page.len() as u64;
                to = page[0].time - 1;
                pages.push(page);
            }
            for page in pages.into_iter().rev() {
                older.extend(page);
            }
            let extra = older.len().saturating_sub(want as usize);
            older.drain(..extra);
        }
        // Forward from the store's newest to the ring's first bar, at most `want` back.
        Some(newest) => {
            let mut from = (newest + 1)
                .max(ring_first.saturating_sub(
                    step.saturating_mul((want as i64 + PAGE_BARS - 1) / PAGE_BARS),
                ));
            while from < ring_first {
                let to = (from + step - 1).min(ring_first - 1);
                let page = match client.copy_rates_range(symbol, tf, from, to) {
                    Ok(p) => p,
                    Err(GwError::Mt5 { .. }) => break,
                    Err(e) => return Err(Stop::Gateway(e)),
                };
                older.extend(page.into_iter().filter(|c| c.time > newest));
                from = to + 1;
            }
        }
    }
    let sent = older.len() as u64;
    for part in older.chunks(EVENT_BARS) {
        send(
            tx,
            Event::StoredBars {
                symbol: index,
                timeframe: tf,
                bars: part.to_vec(),
            },
        )?;
    }
    Ok(sent)
}

/// Where a symbol's tick copy starts: a millisecond, and how many of its ticks are had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cursor {
    pub(super) ms: i64,
    pub(super) had: u32,
}

impl Cursor {
    /// Moves past `t`, the next tick in time order.
    pub(super) fn pass(&mut self, t: &Tick) {
        if t.time_msc == self.ms {
            self.had = self.had.saturating_add(1);
        } else {
            *self = Cursor {
                ms: t.time_msc,
                had: 1,
            };
        }
    }
}

/// The ticks of `symbol` from `from` up to `latest` (the terminal's latest tick) and with
/// every tick at its millisecond, sent as `StoredTicks` but for the last one, which is
/// returned (it goes to the ring as the symbol's latest tick). `None` when no new tick came.
pub(super) fn ticks(
    client: &mut Client,
    tx: &SyncSender<Event>,
    index: usize,
    symbol: &str,
    from: Cursor,
    latest_ms: i64,
) -> Result<Option<Tick>, Stop> {
    let mut last: Option<Tick> = None;
    let mut stopped = false;
    let result = client.ticks_between(symbol, from.ms, from.had, latest_ms, |page| {
        let mut batch = Vec::with_capacity(page.len());
        batch.extend(last.take());
        batch.extend_from_slice(page);
        last = batch.pop();
        let ok = batch.is_empty()
            || tx
                .send(Event::StoredTicks(StoredTicks {
                    symbol: index,
                    ticks: batch,
                }))
                .is_ok();
        stopped = !ok;
        ok
    });
    if stopped {
        return Err(Stop::Asked);
    }
    match result {
        Ok(()) => Ok(last),
        // A terminal without those ticks, or a gateway older than the operation: the store
        // has what the stream brings from now on.
        Err(GwError::Mt5 { .. }) => Ok(last),
        Err(GwError::Gateway { code, message }) if code == "UNKNOWN_OP" => {
            eprintln!(
                "warning: the MT5 gateway cannot page ticks ({message}); the history store \
                 keeps the ticks streamed from now on"
            );
            Ok(last)
        }
        Err(e) => Err(Stop::Gateway(e)),
    }
}
