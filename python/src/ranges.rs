//! The range calls (`copy_rates_*`, `copy_ticks_*`): a ring's answer, joined with the history
//! store's where the range reaches past the ring (`store.rs` says where the seam is).

use numpy::PyArray1;
use pyo3::prelude::*;
use shm_core::history::{BarSeam, TickSeam};
use shm_core::{Tick, Timeframe, Timeline};

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
    let mut rows: Vec<Rate> = Vec::new();
    {
        let mut store = seg.store()?;
        let stored = match stored_timeframe(&inner, symbol, timeframe) {
            // Only where the ring ran out are the positions past it the store's.
            Some(tf) if inner.scratch.len() < want => Some(store.bars(symbol, tf)?),
            _ => None,
        };
        BarSeam::new(&inner.scratch, stored).last_as(i64::MAX, want, &mut rows, |c| Rate::from(c));
    }
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
    if end >= count {
        return Ok(rates(py, &inner.scratch[end - count..end]));
    }
    // The ring runs out before `count`: the store's bars before its oldest come first.
    let mut rows = Vec::new();
    {
        let mut store = seg.store()?;
        let stored = match stored_timeframe(&inner, symbol, timeframe) {
            Some(tf) => Some(store.bars(symbol, tf)?),
            None => None,
        };
        BarSeam::new(&inner.scratch, stored).last_as(date, count, &mut rows, |c| Rate::from(c));
    }
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
    let ring_oldest = inner.scratch.first().map(|c| c.time);
    let tf = stored_timeframe(&inner, symbol, timeframe);
    let deeper = ring_oldest.is_none_or(|o| from < o);
    if deeper && tf.is_none() {
        if let Some(rows) = built_range(seg, &inner, symbol, timeframe, from, to)? {
            return Ok(PyArray1::from_vec(py, rows));
        }
    }
    let (Some(tf), true) = (tf, deeper) else {
        let begin = inner.scratch.partition_point(|c| c.time < from);
        let end = inner.scratch.partition_point(|c| c.time <= to).max(begin);
        return Ok(rates(py, &inner.scratch[begin..end]));
    };
    let mut store = seg.store()?;
    let seam = BarSeam::new(&inner.scratch, Some(store.bars(symbol, tf)?));
    let n = seam.count(from, to);
    if n > MOST_BARS as u64 {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "{symbol} {}: {n} bars from {from} to {to}, more than the {MOST_BARS} one call \
             returns; ask for a shorter range",
            tf.name()
        )));
    }
    let mut rows = Vec::new();
    seam.range_as(from, to, usize::MAX, &mut rows, |c| Rate::from(c));
    Ok(PyArray1::from_vec(py, rows))
}

/// The bars of a timeframe built on read (H2 from H1, W1 from D1) from `from` to `to`, built
/// from its source ring's bars and the store's before them, as the ring's own are built
/// (`shm_core::group_bars`); `None` when the timeframe is not built from a ring.
fn built_range(
    seg: &Segment,
    inner: &Inner,
    symbol: &str,
    timeframe: u32,
    from: i64,
    to: i64,
) -> PyResult<Option<Vec<Rate>>> {
    let Some(Timeline::Built {
        source,
        timeframe: tf,
    }) = Timeframe::from_mt5_code(timeframe).and_then(|tf| inner.reader.timeline(symbol, tf))
    else {
        return Ok(None);
    };
    let mut ring = Vec::new();
    source
        .read_last(source.capacity() as usize + 1, &mut ring)
        .map_err(busy)?;
    // Whole bars of `tf` around the range: from the open of the one `from` falls in to the
    // end of the one `to` falls in.
    let (lo, hi) = (tf.bar_start(from), tf.next_bar_start(tf.bar_start(to)) - 1);
    let mut store = seg.store()?;
    let seam = BarSeam::new(&ring, Some(store.bars(symbol, source.timeframe())?));
    let n = seam.count(lo, hi);
    if n > MOST_BARS as u64 {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "{symbol} {}: {n} {} bars to build it from {from} to {to}, more than the \
             {MOST_BARS} one call reads; ask for a shorter range",
            tf.name(),
            source.timeframe().name()
        )));
    }
    let mut bars = Vec::new();
    seam.range_as(lo, hi, usize::MAX, &mut bars, |c| *c);
    let mut built = Vec::new();
    shm_core::group_bars(&bars, tf, false, &mut built);
    Ok(Some(
        built
            .iter()
            .filter(|c| (from..=to).contains(&c.time))
            .map(Rate::from)
            .collect(),
    ))
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
    let seam = TickSeam::new(&ring_ticks, false, Some(store.ticks(symbol)?));
    let n = seam.count(from_msc, to_msc);
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
    let rows = match keep {
        None => {
            let mut rows = Vec::new();
            seam.range_as(from_msc, to_msc, count, &mut rows, |t| TickRow::from(t));
            rows
        }
        Some(_) => {
            let mut all: Vec<Tick> = Vec::new();
            seam.range_as(from_msc, to_msc, usize::MAX, &mut all, |t| *t);
            tick_rows(&all, keep, count)
        }
    };
    Ok(PyArray1::from_vec(py, rows))
}

/// The open time of the oldest bar held for the pair, in the store or the ring; for a
/// timeframe built from a ring, the oldest bar built from its source's store and ring (the
/// first whole group: `group_bars` drops one that lacks its start).
pub(crate) fn oldest_bar(seg: &Segment, symbol: &str, timeframe: u32) -> PyResult<Option<i64>> {
    let mut inner = seg.inner()?;
    let built =
        Timeframe::from_mt5_code(timeframe).and_then(|tf| inner.reader.timeline(symbol, tf));
    if let Some(Timeline::Built {
        source,
        timeframe: tf,
    }) = built
    {
        let mut ring = Vec::new();
        source
            .read_last(source.capacity() as usize + 1, &mut ring)
            .map_err(busy)?;
        let mut store = seg.store()?;
        let stored = store.bars(symbol, source.timeframe())?;
        return Ok(BarSeam::new(&ring, Some(stored)).oldest().map(|o| {
            let open = tf.bar_start(o);
            if open == o {
                o
            } else {
                tf.next_bar_start(open)
            }
        }));
    }
    seg.read_all(&mut inner, symbol, timeframe)?;
    let mut store = seg.store()?;
    let stored = match stored_timeframe(&inner, symbol, timeframe) {
        Some(tf) => Some(store.bars(symbol, tf)?),
        None => None,
    };
    Ok(BarSeam::new(&inner.scratch, stored).oldest())
}
