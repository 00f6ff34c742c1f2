//! The range calls (`copy_rates_*`, `copy_ticks_*`): a ring's answer, joined with the history
//! store's where the range reaches past the ring (`store.rs` says where the seam is).

use numpy::PyArray1;
use pyo3::prelude::*;
use shm_core::{Candle, Tick, Timeframe};

use crate::errors::busy;
use crate::rows::{rates, tick_rows, Rate, TickRow};
use crate::{Inner, Segment};

/// The most bars one call returns: twice shm-core's largest ring, and 20 times MT5's default
/// "Max bars in chart" (100,000).
pub(crate) const MOST_BARS: usize = 1 << 21;

/// The most ticks one call returns: 50 million rows are 3 GB. A range over more is refused
/// before the rows exist, saying so.
pub(crate) const MOST_TICKS: u64 = 50_000_000;

/// The timeframe of a real ring of `symbol` (not one built on read), whose bars the store
/// keeps.
fn stored_timeframe(inner: &Inner, symbol: &str, timeframe: u32) -> Option<Timeframe> {
    Timeframe::from_mt5_code(timeframe).filter(|&tf| inner.reader.ring(symbol, tf).is_some())
}

/// `count` bars from position `start` back (0 is the newest), oldest first.
pub(crate) fn rates_from_pos<'py>(
    seg: &Segment,
    py: Python<'py>,
    symbol: &str,
    timeframe: u32,
    start: usize,
    count: usize,
) -> PyResult<Bound<'py, PyArray1<Rate>>> {
    let mut inner = seg.inner()?;
    let want = start.saturating_add(count).min(MOST_BARS);
    seg.read(&mut inner, symbol, timeframe, want)?;
    let held = inner.scratch.len();
    let mut rows: Vec<Rate> = Vec::new();
    if held < want {
        // The ring ran out: the positions past it are the store's, back from the ring's
        // oldest bar.
        if let Some(tf) = stored_timeframe(&inner, symbol, timeframe) {
            let before = inner.scratch.first().map_or(i64::MAX, |c| c.time - 1);
            let mut store = seg.store()?;
            store
                .bars(symbol, tf)?
                .last_as(before, want - held, &mut rows, |c| Rate::from(&c));
        }
    }
    rows.extend(inner.scratch.iter().map(Rate::from));
    // Positions count back from the newest: drop the `start` newest ones.
    let end = rows.len().saturating_sub(start);
    let begin = end.saturating_sub(count);
    rows.truncate(end);
    rows.drain(..begin);
    Ok(PyArray1::from_vec(py, rows))
}

/// The `count` newest bars that open at or before `date`, oldest first.
pub(crate) fn rates_from<'py>(
    seg: &Segment,
    py: Python<'py>,
    symbol: &str,
    timeframe: u32,
    date: i64,
    count: usize,
) -> PyResult<Bound<'py, PyArray1<Rate>>> {
    let mut inner = seg.inner()?;
    seg.read_all(&mut inner, symbol, timeframe)?;
    let end = inner.scratch.partition_point(|c| c.time <= date);
    let begin = end.saturating_sub(count);
    let got = end - begin;
    if got == count || begin > 0 {
        return Ok(rates(py, &inner.scratch[begin..end]));
    }
    // The ring ran out before `count`: the store's bars before its oldest come first.
    let mut rows = Vec::new();
    if let Some(tf) = stored_timeframe(&inner, symbol, timeframe) {
        let before = inner.scratch.first().map_or(date, |c| date.min(c.time - 1));
        let mut store = seg.store()?;
        store
            .bars(symbol, tf)?
            .last_as(before, count - got, &mut rows, |c| Rate::from(&c));
    }
    rows.extend(inner.scratch[begin..end].iter().map(Rate::from));
    Ok(PyArray1::from_vec(py, rows))
}

/// The bars that open from `from` to `to` (both inclusive), oldest first.
pub(crate) fn rates_range<'py>(
    seg: &Segment,
    py: Python<'py>,
    symbol: &str,
    timeframe: u32,
    from: i64,
    to: i64,
) -> PyResult<Bound<'py, PyArray1<Rate>>> {
    let mut inner = seg.inner()?;
    seg.read_all(&mut inner, symbol, timeframe)?;
    let begin = inner.scratch.partition_point(|c| c.time < from);
    let end = inner.scratch.partition_point(|c| c.time <= to).max(begin);
    let ring_oldest = inner.scratch.first().map(|c| c.time);
    let tf = stored_timeframe(&inner, symbol, timeframe);
    let (Some(tf), true) = (tf, ring_oldest.is_none_or(|o| from < o)) else {
        return Ok(rates(py, &inner.scratch[begin..end]));
    };
    let upto = ring_oldest.map_or(to, |o| to.min(o - 1));
    let mut rows = Vec::new();
    {
        let mut store = seg.store()?;
        let bars = store.bars(symbol, tf)?;
        let n = bars.count_range(from, upto);
        if n > MOST_BARS as u64 {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "{symbol} {}: {n} bars from {from} to {to}, more than the {MOST_BARS} one call \
                 returns; ask for a shorter range",
                tf.name()
            )));
        }
        bars.range_as(from, upto, usize::MAX, &mut rows, |c: Candle| {
            Rate::from(&c)
        });
    }
    rows.extend(inner.scratch[begin..end].iter().map(Rate::from));
    Ok(PyArray1::from_vec(py, rows))
}

/// Ticks from `from_msc`: the first `count` that pass `keep`, or every one to `to_msc`
/// (`count` is then `usize::MAX`), oldest first.
pub(crate) fn ticks<'py>(
    seg: &Segment,
    py: Python<'py>,
    symbol: &str,
    from_msc: i64,
    to_msc: i64,
    count: usize,
    keep: Option<u32>,
) -> PyResult<Bound<'py, PyArray1<TickRow>>> {
    let reader = seg.reader()?;
    let ring = seg.tick_ring(&reader, symbol)?;
    let mut ring_ticks = seg.tick_scratch.lock().unwrap_or_else(|p| p.into_inner());
    let span = ring
        .read_since(from_msc, usize::MAX, &mut ring_ticks)
        .map_err(busy)?;
    let in_range = ring_ticks.partition_point(|t| t.time_msc <= to_msc);
    ring_ticks.truncate(in_range);
    // The ring holds a tick older than `from_msc`: it has every one after it.
    let oldest_held = span.head.saturating_sub(ring.capacity());
    if span.first > oldest_held {
        return Ok(PyArray1::from_vec(py, tick_rows(&ring_ticks, keep, count)));
    }
    let mut store = seg.store()?;
    let stored = store.ticks(symbol)?;
    let Some(newest) = stored.newest() else {
        return Ok(PyArray1::from_vec(py, tick_rows(&ring_ticks, keep, count)));
    };
    let n = stored.count_range(from_msc, to_msc);
    let most = match keep {
        None => (count as u64).min(n),
        Some(_) => n,
    };
    if most > MOST_TICKS {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "{symbol}: {n} ticks in the range, more than the {MOST_TICKS} one call returns; \
             ask for a shorter range"
        )));
    }
    let after = ring_ticks.partition_point(|t| t.time_msc <= newest);
    let newer = &ring_ticks[after..];
    let rows = match keep {
        None => {
            let mut rows = Vec::new();
            stored.range_as(from_msc, to_msc, count, &mut rows, |t: Tick| {
                TickRow::from(&t)
            });
            let room = count.saturating_sub(rows.len());
            rows.extend(newer.iter().take(room).map(TickRow::from));
            rows
        }
        Some(_) => {
            let mut all: Vec<Tick> = Vec::new();
            stored.range_as(from_msc, to_msc, usize::MAX, &mut all, |t| t);
            all.extend_from_slice(newer);
            tick_rows(&all, keep, count)
        }
    };
    Ok(PyArray1::from_vec(py, rows))
}

/// The open time of the oldest bar held for the pair, in the store or the ring.
pub(crate) fn oldest_bar(seg: &Segment, symbol: &str, timeframe: u32) -> PyResult<Option<i64>> {
    let mut inner = seg.inner()?;
    seg.read_all(&mut inner, symbol, timeframe)?;
    let ring = inner.scratch.first().map(|c| c.time);
    let Some(tf) = stored_timeframe(&inner, symbol, timeframe) else {
        return Ok(ring);
    };
    let mut store = seg.store()?;
    let stored = store.bars(symbol, tf)?.oldest();
    Ok(match (stored, ring) {
        (Some(s), Some(r)) => Some(s.min(r)),
        (s, r) => s.or(r),
    })
}
