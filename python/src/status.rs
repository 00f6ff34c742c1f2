//! `Segment.status()`'s dictionary: the writer's liveness, feed and counters, and the depth of
//! history each ring holds.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use shm_core::{Counter, Reader};

use crate::store::Store;

/// The status of `reader`'s segment as a dict (see `Segment.status`).
pub(crate) fn status_dict<'py>(py: Python<'py>, reader: &Reader) -> PyResult<Bound<'py, PyDict>> {
    let st = reader.status();
    let d = PyDict::new(py);
    d.set_item("liveness", st.liveness.as_str())?;
    d.set_item("writer_state", st.writer_state.map(|s| s.as_str()))?;
    d.set_item("generation", st.generation)?;
    d.set_item("writer_pid", st.writer_pid)?;
    d.set_item("heartbeat_age_s", st.heartbeat_age.as_secs_f64())?;
    d.set_item("feed_state", st.feed_state.map(|s| s.as_str()))?;
    d.set_item("feed_kind", st.feed_kind.map(|k| k.as_str()))?;
    d.set_item("server_time_offset_s", st.server_time_offset_s)?;
    d.set_item("last_update_ns", st.last_update_ns)?;
    let counters = PyDict::new(py);
    for c in Counter::ALL {
        counters.set_item(c.as_str(), st.counters.get(c))?;
    }
    d.set_item("counters", counters)?;
    // The depth of history each ring holds: its oldest closed bar's open time (server
    // time), by symbol and timeframe; `None` for a ring with none yet.
    let depth = PyDict::new(py);
    for ring in reader.rings() {
        let oldest = ring.stats().ok().and_then(|s| {
            let held = s.closed_total.min(u64::from(ring.capacity()));
            ring.closed_at(s.closed_total - held).ok().flatten()
        });
        let of_symbol = match depth.get_item(ring.symbol())? {
            Some(d) => d.cast_into::<PyDict>()?,
            None => {
                let d = PyDict::new(py);
                depth.set_item(ring.symbol(), &d)?;
                d
            }
        };
        of_symbol.set_item(ring.timeframe().name(), oldest.map(|c| c.time))?;
    }
    d.set_item("oldest_bar", depth)?;
    Ok(d)
}

/// The depth the history store holds, for `status()["history"]`: its directory, and by symbol
/// and timeframe (and `ticks`) the oldest and newest record's time (seconds for bars, ms for
/// ticks) and how many it holds; a stream the store cannot serve (a damaged file) gives its
/// error instead, so that a status call itself never fails on one.
pub(crate) fn history_dict<'py>(
    py: Python<'py>,
    reader: &Reader,
    store: &mut Store,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("dir", store.dir().display().to_string())?;
    let entry =
        |held: Result<(Option<i64>, Option<i64>, u64), PyErr>| -> PyResult<Bound<'py, PyDict>> {
            let e = PyDict::new(py);
            match held {
                Ok((oldest, newest, count)) => {
                    e.set_item("oldest", oldest)?;
                    e.set_item("newest", newest)?;
                    e.set_item("count", count)?;
                }
                Err(err) => e.set_item("error", err.value(py).to_string())?,
            }
            Ok(e)
        };
    for ring in reader.rings() {
        let symbol = ring.symbol();
        let of_symbol = match d.get_item(symbol)? {
            Some(s) => s.cast_into::<PyDict>()?,
            None => {
                let s = PyDict::new(py);
                let ticks = store
                    .ticks(symbol)
                    .map(|t| (t.oldest(), t.newest(), t.len()));
                s.set_item("ticks", entry(ticks)?)?;
                d.set_item(symbol, &s)?;
                s
            }
        };
        let bars = store
            .bars(symbol, ring.timeframe())
            .map(|b| (b.oldest(), b.newest(), b.len()));
        of_symbol.set_item(ring.timeframe().name(), entry(bars)?)?;
    }
    Ok(d)
}
