//! `mtf_candles._native`: the candle segment read from Python through [`shm_core::Reader`],
//! returning MetaTrader 5's own rates arrays. The MT5-style functions (`initialize`,
//! `copy_rates_from_pos`, `last_error`, ...) are written in Python on top of the [`Segment`]
//! class here (`mtf_candles/__init__.py`); this file parses no layout of its own.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use numpy::PyArray1;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyTuple};
mod errors;
mod names;
mod ranges;
mod rows;
mod status;
mod store;

use errors::{
    busy, open_error, NotFound, SegmentError, SegmentNotFound, SegmentVersionError, WriterGone,
};
use rows::{rate_dtype, tick_dtype, tick_filter, Rate, TickRow};
use shm_core::{
    Candle, InfoValue, ReadError, Reader, SegmentPath, Tick, Timeframe, Trust, WaitOutcome,
};

/// One field's value as the Python object MT5's tuple holds.
fn py_value(py: Python<'_>, v: InfoValue<'_>) -> PyResult<Py<PyAny>> {
    Ok(match v {
        InfoValue::Int(n) => n.into_pyobject(py)?.into_any().unbind(),
        InfoValue::Bool(b) => PyBool::new(py, b).to_owned().into_any().unbind(),
        InfoValue::Float(x) => x.into_pyobject(py)?.into_any().unbind(),
        InfoValue::Str(s) => pyo3::types::PyString::new(py, s).into_any().unbind(),
    })
}

/// The reader and the buffer a read copies into.
struct Inner<'a> {
    reader: Arc<Reader>,
    scratch: MutexGuard<'a, Vec<Candle>>,
}

/// A segment, attached read-only. Reads take no lock of the writer's and make no system call;
/// a few hundred nanoseconds for 50 candles.
#[pyclass(module = "mtf_candles._native", frozen)]
pub struct Segment {
    /// The current reader. The lock is held only to clone or swap the `Arc`, never across a
    /// read or a wait: a process forked while another thread waits must not inherit it held
    /// (a child's `refresh` would then block for ever).
    reader: RwLock<Arc<Reader>>,
    /// The buffer reads copy into, one read at a time. Reads hold the GIL, which `fork`
    /// also holds, so a child never inherits it locked.
    scratch: Mutex<Vec<Candle>>,
    /// The buffer tick reads copy into, as `scratch`.
    tick_scratch: Mutex<Vec<Tick>>,
    /// Per symbol, its information as Python values, with the record's version they were
    /// decoded from (`Reader::symbol_info_version`): decoded again only when it changed.
    info_cache: Mutex<std::collections::HashMap<String, CachedInfo>>,
    path: String,
    /// The history store beside the segment, read where a range reaches past a ring.
    store: Mutex<store::Store>,
}

/// A symbol's information, decoded: the version, the record (for its moving fields), its
/// values as Python objects in MT5's order, and its source.
struct CachedInfo {
    version: u64,
    info: shm_core::SymbolInfo,
    values: Vec<Py<PyAny>>,
    source: &'static str,
}

/// A Python integer argument as an integer: `True` and `False` are refused (Python counts
/// them as 1 and 0, MT5 would not take them for a timeframe or a position).
fn int_arg(value: &Bound<'_, PyAny>, name: &str) -> PyResult<i64> {
    if value.is_instance_of::<PyBool>() {
        return Err(PyValueError::new_err(format!(
            "{name} must be an integer, not a bool"
        )));
    }
    value.extract()
}

/// A timeframe argument: an integer (not a bool) in the range of MT5's `u32` codes.
fn timeframe_arg(value: &Bound<'_, PyAny>) -> PyResult<u32> {
    let code = int_arg(value, "timeframe")?;
    u32::try_from(code)
        .map_err(|_| PyValueError::new_err(format!("no timeframe with MT5 code {code}")))
}

impl Segment {
    /// The current reader, shared. A panic while the lock was held left nothing half-done:
    /// the `Arc` is swapped whole.
    fn tick_ring<'r>(
        &self,
        reader: &'r Reader,
        symbol: &str,
    ) -> PyResult<shm_core::TickRingReader<'r>> {
        reader
            .ticks(symbol)
            .ok_or_else(|| NotFound::new_err(format!("the segment has no symbol {symbol}")))
    }

    fn attached(&self) -> Arc<Reader> {
        Arc::clone(&self.reader.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The reader for one call, following the segment if its writer replaced the file (a
    /// restart with another layout marks the old file `replaced`): one load of the header's
    /// state word a call. A bot written for MT5 never calls a refresh, so a replaced file is
    /// never served as current: it is followed, or the call fails saying why.
    fn reader(&self) -> PyResult<Arc<Reader>> {
        let current = self.attached();
        if current.writer_state() != Some(shm_core::WriterState::Replaced) {
            return Ok(current);
        }
        self.follow(&current)?;
        Ok(self.attached())
    }

    /// Attaches to the segment that replaced `current` at its path.
    fn follow(&self, current: &Reader) -> PyResult<()> {
        let fresh = Arc::new(current.reopen().map_err(open_error)?);
        *self.reader.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        // Another file: its records' versions say nothing of the ones decoded from the old.
        self.info_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(())
    }

    /// The history store, for one read.
    fn store(&self) -> PyResult<MutexGuard<'_, store::Store>> {
        Ok(self.store.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The reader and the scratch buffer, for one read.
    fn inner(&self) -> PyResult<Inner<'_>> {
        Ok(Inner {
            reader: self.reader()?,
            scratch: self.scratch.lock().unwrap_or_else(|p| p.into_inner()),
        })
    }

    /// The newest `n` candles of `symbol` at `timeframe` (MT5 code), oldest first, into the
    /// scratch buffer.
    fn read(&self, inner: &mut Inner, symbol: &str, timeframe: u32, n: usize) -> PyResult<()> {
        let tf = Timeframe::from_mt5_code(timeframe)
            .ok_or_else(|| NotFound::new_err(format!("no timeframe with MT5 code {timeframe}")))?;
        let Inner { reader, scratch } = inner;
        // Its ring, or one that tiles it (H2 from H1, W1 from D1: built on read).
        let timeline = reader.timeline(symbol, tf).ok_or_else(|| {
            NotFound::new_err(format!(
                "the segment has no {symbol} {}, nor a shorter timeframe of it to build it from",
                tf.name()
            ))
        })?;
        // The reader refuses a snapshot that breaks the writer's rules (a damaged or forged
        // segment: a bad record, disordered or misaligned times): the caller gets an error,
        // never a plausible-looking array.
        timeline.read_last(n, &mut *scratch).map_err(|e| match e {
            ReadError::Invalid { time, why } => SegmentError::new_err(format!(
                "damaged {symbol} {} candle at {time}: {why}",
                tf.name()
            )),
            other => busy(other),
        })
    }

    /// Every candle a timeline holds, oldest first (a ring's capacity and the forming one; what
    /// its source gives for one built on read).
    fn read_all(&self, inner: &mut Inner, symbol: &str, timeframe: u32) -> PyResult<()> {
        let most = Timeframe::from_mt5_code(timeframe)
            .and_then(|tf| inner.reader.timeline(symbol, tf))
            .map_or(1, |t| t.max_candles());
        self.read(inner, symbol, timeframe, most)
    }
}

#[pymethods]
impl Segment {
    /// Attaches to the segment `name` (in /dev/shm, or %LOCALAPPDATA%\mtf-candles), or the
    /// one at `path` (absolute, or relative to the working directory). `trust` names further
    /// accounts whose segments may be read, comma-separated (as `MTF_TRUST`, which is read
    /// besides); by default only this account's and root's are.
    #[new]
    #[pyo3(signature = (name=None, path=None, trust=None, history_dir=None))]
    fn new(
        name: Option<&str>,
        path: Option<&str>,
        trust: Option<&str>,
        history_dir: Option<&str>,
    ) -> PyResult<Segment> {
        let path = match (name, path) {
            (_, Some(p)) => SegmentPath::at(p),
            (Some(n), None) => {
                SegmentPath::named(n).map_err(|e| PyValueError::new_err(e.to_string()))?
            }
            (None, None) => SegmentPath::named(shm_core::DEFAULT_SEGMENT_NAME)
                .map_err(|e| SegmentError::new_err(e.to_string()))?,
        };
        let mut trusted = Trust::for_process().map_err(|e| SegmentError::new_err(e.to_string()))?;
        if let Some(list) = trust {
            let named =
                Trust::parse(list, "trust").map_err(|e| PyValueError::new_err(e.to_string()))?;
            for &uid in named.uids() {
                trusted.add(uid);
            }
        }
        let reader = Reader::open_trusting(&path, &trusted).map_err(open_error)?;
        let history = history_dir.map_or_else(
            || shm_core::default_history_dir(&path),
            std::path::PathBuf::from,
        );
        Ok(Segment {
            store: Mutex::new(store::Store::new(history, trusted)),
            reader: RwLock::new(Arc::new(reader)),
            scratch: Mutex::new(Vec::with_capacity(1500)),
            tick_scratch: Mutex::new(Vec::new()),
            info_cache: Mutex::new(std::collections::HashMap::new()),
            path: path.to_string(),
        })
    }

    /// The segment file.
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    /// `count` bars from position `start_pos` back (0 is the newest, the bar still forming),
    /// oldest first, as MT5's rates array; past the ring, from the history store.
    fn copy_rates_from_pos<'py>(
        &self,
        py: Python<'py>,
        symbol: &str,
        timeframe: &Bound<'py, PyAny>,
        start_pos: &Bound<'py, PyAny>,
        count: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<Rate>>> {
        let timeframe = timeframe_arg(timeframe)?;
        let start_pos = int_arg(start_pos, "start_pos")?;
        let count = int_arg(count, "count")?;
        let (Ok(start), Ok(count)) = (usize::try_from(start_pos), usize::try_from(count)) else {
            return Err(PyValueError::new_err(
                "start_pos and count must not be negative",
            ));
        };
        ranges::rates_from_pos(self, py, symbol, timeframe, start, count)
    }

    /// The `count` newest bars that open at or before `date` (epoch seconds, server time),
    /// oldest first; past the ring, from the history store.
    fn copy_rates_from<'py>(
        &self,
        py: Python<'py>,
        symbol: &str,
        timeframe: &Bound<'py, PyAny>,
        date: i64,
        count: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<Rate>>> {
        let timeframe = timeframe_arg(timeframe)?;
        let count = int_arg(count, "count")?;
        let count = usize::try_from(count)
            .map_err(|_| PyValueError::new_err("count must not be negative"))?;
        ranges::rates_from(
            self,
            py,
            symbol,
            timeframe,
            date,
            count.min(ranges::MOST_BARS),
        )
    }

    /// The bars that open from `date_from` to `date_to` (epoch seconds, server time, both
    /// inclusive), oldest first; past the ring, from the history store.
    fn copy_rates_range<'py>(
        &self,
        py: Python<'py>,
        symbol: &str,
        timeframe: &Bound<'py, PyAny>,
        date_from: i64,
        date_to: i64,
    ) -> PyResult<Bound<'py, PyArray1<Rate>>> {
        let timeframe = timeframe_arg(timeframe)?;
        ranges::rates_range(self, py, symbol, timeframe, date_from, date_to)
    }

    /// The open time of the oldest bar held for the pair, in the history store or the ring
    /// (epoch seconds, server time), or `None`.
    fn oldest_bar(&self, symbol: &str, timeframe: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
        ranges::oldest_bar(self, symbol, timeframe_arg(timeframe)?)
    }

    /// The history store's directory.
    #[getter]
    fn history_dir(&self) -> String {
        self.store()
            .map_or_else(|_| String::new(), |s| s.dir().display().to_string())
    }

    /// The latest tick the writer recorded for `symbol`: `(time_msc, bid, ask)` in server
    /// time, or `None` before the first tick.
    fn last_tick(&self, symbol: &str) -> PyResult<Option<(i64, f64, f64)>> {
        let reader = self.reader()?;
        if !reader.layout().symbols().any(|s| s == symbol) {
            return Err(NotFound::new_err(format!(
                "the segment has no symbol {symbol}"
            )));
        }
        Ok(reader
            .last_tick(symbol)
            .map(|t| (t.server_time_ms, t.bid, t.ask)))
    }

    /// At most `count` ticks from the first at or after `from_msc` (server time, ms) that
    /// pass MT5's `flags` filter, oldest first, as MT5's ticks array; past the ring, from the
    /// history store.
    fn copy_ticks_from<'py>(
        &self,
        py: Python<'py>,
        symbol: &str,
        from_msc: i64,
        count: &Bound<'py, PyAny>,
        flags: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<TickRow>>> {
        let count = usize::try_from(int_arg(count, "count")?)
            .map_err(|_| PyValueError::new_err("count must not be negative"))?;
        let keep = tick_filter(int_arg(flags, "flags")?)?;
        ranges::ticks(self, py, symbol, from_msc, i64::MAX, count, keep)
    }

    /// The ticks from `from_msc` to `to_msc` (server time, ms, both inclusive) that pass
    /// MT5's `flags` filter, oldest first; past the ring, from the history store.
    fn copy_ticks_range<'py>(
        &self,
        py: Python<'py>,
        symbol: &str,
        from_msc: i64,
        to_msc: i64,
        flags: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<TickRow>>> {
        let keep = tick_filter(int_arg(flags, "flags")?)?;
        ranges::ticks(self, py, symbol, from_msc, to_msc, usize::MAX, keep)
    }

    /// The newest tick as MT5's Tick fields `(time, bid, ask, last, volume, time_msc, flags,
    /// volume_real)`, or `None` if the tick ring holds none.
    #[allow(clippy::type_complexity)]
    // The tuple's order is `names::TICK_FIELDS`', which names it in Python.
    fn tick(&self, symbol: &str) -> PyResult<Option<(i64, f64, f64, f64, u64, i64, u32, f64)>> {
        let reader = self.reader()?;
        let ring = self.tick_ring(&reader, symbol)?;
        Ok(ring.latest().map_err(busy)?.map(|t| {
            (
                t.time(),
                t.bid,
                t.ask,
                t.last,
                t.volume,
                t.time_msc,
                t.flags,
                t.volume_real,
            )
        }))
    }

    /// MT5's SymbolInfo fields, in its order, with the moving ones from the newest tick; and
    /// where the record came from (`terminal` or `derived`). `None` if the feed gave none.
    fn symbol_info<'py>(
        &self,
        py: Python<'py>,
        symbol: &str,
    ) -> PyResult<Option<(Bound<'py, PyTuple>, &'static str)>> {
        let reader = self.reader()?;
        let ring = self.tick_ring(&reader, symbol)?;
        let mut cache = self.info_cache.lock().unwrap_or_else(|p| p.into_inner());
        // The record is decoded (96 fields, 13 strings) only when its version moved; a cached
        // one made under the version read now is still the record (`Reader::symbol_info_version`).
        let version = reader.symbol_info_version(symbol);
        let fresh = cache
            .get(symbol)
            .is_some_and(|c| Some(c.version) == version && c.version % 2 == 0);
        if !fresh {
            let Some(record) = reader.symbol_info(symbol).map_err(busy)? else {
                cache.remove(symbol);
                return Ok(None);
            };
            let values = record
                .info
                .fields()
                .map(|(_, v)| py_value(py, v))
                .collect::<PyResult<Vec<_>>>()?;
            let source = match record.source {
                shm_core::InfoSource::Terminal => "terminal",
                shm_core::InfoSource::Derived => "derived",
                shm_core::InfoSource::Exported => "exported",
            };
            // Kept only if no write came between the version and the copy: else the next call
            // decodes again.
            let after = reader.symbol_info_version(symbol);
            let cached = CachedInfo {
                version: if after == version {
                    version.unwrap_or(1)
                } else {
                    1
                },
                info: record.info,
                values,
                source,
            };
            cache.insert(symbol.to_owned(), cached);
        }
        let Some(cached) = cache.get(symbol) else {
            return Ok(None);
        };
        // The moving fields from the newest tick, never stale.
        let mut values: Vec<Bound<'py, PyAny>> =
            cached.values.iter().map(|v| v.bind(py).clone()).collect();
        if let Some(tick) = ring.latest().map_err(busy)? {
            for (i, v) in cached.info.moving_fields(&tick).into_iter().flatten() {
                values[i] = py_value(py, v)?.into_bound(py);
            }
        }
        Ok(Some((PyTuple::new(py, values)?, cached.source)))
    }

    /// The terminal that feeds the segment: `(name, company, build, connected, server, login,
    /// confirmed_ns)`, or `None` for a feed without one.
    #[allow(clippy::type_complexity)]
    // The tuple's order is `names::TERMINAL_FIELDS`', which names it in Python.
    fn terminal(&self) -> PyResult<Option<(String, String, i64, bool, String, i64, u64)>> {
        Ok(self.reader()?.terminal().map_err(busy)?.map(|t| {
            let i = t.info;
            (
                i.name,
                i.company,
                i.build,
                i.connected,
                i.server,
                i.login,
                t.confirmed_ns,
            )
        }))
    }

    /// The symbols, in segment order.
    fn symbols(&self) -> PyResult<Vec<String>> {
        Ok(self
            .reader()?
            .layout()
            .symbols()
            .map(str::to_owned)
            .collect())
    }

    /// The MT5 timeframe codes of `symbol`'s rings, shortest first.
    fn timeframes(&self, symbol: &str) -> PyResult<Vec<u32>> {
        let reader = self.reader()?;
        let mut tfs: Vec<Timeframe> = reader
            .rings()
            .filter(|r| r.symbol() == symbol)
            .map(|r| r.timeframe())
            .collect();
        tfs.sort();
        Ok(tfs.into_iter().map(Timeframe::mt5_code).collect())
    }

    /// Liveness, feed, offset, counters: a dict.
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let reader = self.reader()?;
        let d = status::status_dict(py, &reader)?;
        d.set_item(
            "history",
            status::history_dict(py, &reader, &mut *self.store()?)?,
        )?;
        Ok(d)
    }

    /// Follows the segment if its writer replaced the file (another layout); `True` if it
    /// re-attached.
    fn refresh(&self) -> PyResult<bool> {
        let current = self.attached();
        if !current.needs_reopen() {
            return Ok(false);
        }
        self.follow(&current)?;
        Ok(true)
    }

    /// Waits, without holding the GIL, until the writer publishes a change or `timeout`
    /// seconds pass; `True` if something changed. With `symbol`, a change of another symbol
    /// wakes it too but does not count: it waits on for one of `symbol`'s rings (an unknown
    /// symbol raises `NotFound` at once). Raises `WriterGone` if the writer stops or dies
    /// meanwhile (learnt within 100 ms). The writer wakes it through a futex, microseconds
    /// after it publishes. It sleeps in slices of at most 100 ms and checks for signals
    /// between them, so Ctrl-C raises `KeyboardInterrupt` within 100 ms.
    #[pyo3(signature = (timeout, symbol=None))]
    fn wait_for_update(
        &self,
        py: Python<'_>,
        timeout: f64,
        symbol: Option<&str>,
    ) -> PyResult<bool> {
        if !(timeout.is_finite() && timeout >= 0.0) {
            return Err(PyValueError::new_err(
                "timeout must be a number of seconds, >= 0",
            ));
        }
        let ring_stamp = |reader: &Reader| -> u64 {
            symbol.map_or(0, |s| {
                reader
                    .rings()
                    .filter(|r| r.symbol() == s)
                    .filter_map(|r| r.stats().ok())
                    .map(|st| st.last_change_ns)
                    .max()
                    .unwrap_or(0)
            })
        };
        // The reader of the whole wait: a `refresh` meanwhile swaps in another for later calls.
        let reader = self.reader()?;
        if let Some(s) = symbol {
            if !reader.layout().symbols().any(|name| name == s) {
                return Err(NotFound::new_err(format!("the segment has no symbol {s}")));
            }
        }
        let (mut token, since) = (reader.changes(), ring_stamp(&reader));
        let deadline = Instant::now() + Duration::from_secs_f64(timeout.min(86_400.0));
        loop {
            let slice_end = deadline.min(Instant::now() + SIGNAL_SLICE);
            let step = py.detach(|| loop {
                let left = slice_end.saturating_duration_since(Instant::now());
                match reader.wait_for_change(token, left) {
                    WaitOutcome::Changed(t) => {
                        if symbol.is_none() || ring_stamp(&reader) != since {
                            return Some(Ok(true));
                        }
                        token = t;
                    }
                    WaitOutcome::TimedOut => return None,
                    WaitOutcome::WriterGone(l) => {
                        return Some(Err(format!("the writer of {} is {l}", self.path)))
                    }
                }
            });
            match step {
                Some(Ok(changed)) => return Ok(changed),
                Some(Err(message)) => return Err(WriterGone::new_err(message)),
                None if Instant::now() >= deadline => return Ok(false),
                // A slice ended: a pending Ctrl-C raises here.
                None => py.check_signals()?,
            }
        }
    }
}

/// The longest a wait goes without checking for signals (Ctrl-C).
const SIGNAL_SLICE: Duration = Duration::from_millis(100);

/// The module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    // Built (and checked) now, so that no read can fail on it later.
    m.add("RATES_DTYPE", rate_dtype(py)?)?;
    m.add("TICKS_DTYPE", tick_dtype(py)?)?;
    m.add_class::<Segment>()?;
    m.add("SegmentError", py.get_type::<SegmentError>())?;
    m.add("SegmentNotFound", py.get_type::<SegmentNotFound>())?;
    m.add("SegmentVersionError", py.get_type::<SegmentVersionError>())?;
    m.add("WriterGone", py.get_type::<WriterGone>())?;
    m.add("NotFound", py.get_type::<NotFound>())?;
    m.add("LAYOUT_VERSION", shm_core::LAYOUT_VERSION)?;
    names::add(m)?;
    Ok(())
}
