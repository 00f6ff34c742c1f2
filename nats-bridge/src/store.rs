//! The origin's answers from its history store (docs/NATS.md, "The history store"): pages
//! forward in time across the store and the rings, joined at the seam every reader uses
//! (`shm_core::history::{BarSeam, TickSeam}`), so a mirror copies the origin's store with no
//! gap and no duplicate, as deep as the origin keeps it. An origin without a store answers
//! from its rings alone.

use shm_core::history::{BarSeam, StreamCache, TickSeam};
use shm_core::{Candle, Reader, Tick, Timeframe};

use crate::wire::{
    HistoryReply, HistoryRequest, TickHistoryReply, TickHistoryRequest, WireCandle, WireTick,
    HISTORY_PAGE, MAX_SKIP, TICK_PAGE, VERSION,
};

/// The closed bars of `req`'s ring opened after `after`, oldest first, at most a page.
pub(crate) fn bars_after(
    reader: &Reader,
    store: Option<&mut StreamCache>,
    req: &HistoryRequest,
    tf: Timeframe,
    after: i64,
) -> Result<HistoryReply, &'static str> {
    let ring = reader.ring(&req.symbol, tf).ok_or("no such ring")?;
    let mut candles: Vec<Candle> = Vec::new();
    ring.read_last(ring.capacity() as usize + 1, &mut candles)
        .map_err(|_| "ring busy")?;
    // Closed bars only: the forming one is the live stream's.
    candles.retain(|c| !c.forming);
    let stored = match store {
        Some(s) => Some(
            s.bars(&req.symbol, tf)
                .map_err(|_| "the history store refused a file")?,
        ),
        None => None,
    };
    let mut page: Vec<Candle> = Vec::new();
    let keep = req.limit.min(HISTORY_PAGE);
    BarSeam::new(&candles, stored).range_as(
        after.saturating_add(1),
        i64::MAX,
        keep,
        &mut page,
        |c| *c,
    );
    Ok(HistoryReply {
        v: VERSION,
        answers: serde_json::to_value(req).ok(),
        closed: page
            .iter()
            .filter(|c| c.defect().is_none())
            .map(WireCandle::from)
            .collect(),
        forming: None,
    })
}

/// The ticks of `req`'s symbol from `from_msc` on, the first `req.skip` at it left out, oldest
/// first, at most a page.
pub(crate) fn ticks_from(
    reader: &Reader,
    store: Option<&mut StreamCache>,
    req: &TickHistoryRequest,
    from_msc: i64,
) -> Result<TickHistoryReply, &'static str> {
    if req.skip > MAX_SKIP {
        return Err("skip is more ticks than one millisecond holds");
    }
    let ring = reader.ticks(&req.symbol).ok_or("no such symbol")?;
    let limit = req.limit.min(TICK_PAGE);
    // At most the ticks the answer can hold are read (the oldest of the range come first).
    let want = req.skip as usize + limit;
    let mut newer: Vec<Tick> = Vec::new();
    let span = ring
        .read_since(from_msc, want, &mut newer)
        .map_err(|_| "tick ring unreadable")?;
    // The ring holds a tick older than `from_msc`: it has every one after it.
    let reaches_back = span.first > span.head.saturating_sub(ring.capacity());
    let stored = match store {
        Some(s) if !reaches_back => Some(
            s.ticks(&req.symbol)
                .map_err(|_| "the history store refused a file")?,
        ),
        _ => None,
    };
    let mut page: Vec<Tick> = Vec::new();
    TickSeam::new(&newer, reaches_back, stored).range_as(
        from_msc,
        i64::MAX,
        want,
        &mut page,
        |t| *t,
    );
    let had = page
        .iter()
        .take(req.skip as usize)
        .take_while(|t| t.time_msc == from_msc)
        .count();
    page.drain(..had);
    page.truncate(limit);
    Ok(TickHistoryReply {
        v: VERSION,
        answers: serde_json::to_value(req).ok(),
        first: 0,
        head: span.head,
        ticks: page.iter().map(WireTick::from).collect(),
    })
}
