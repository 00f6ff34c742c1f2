//! MetaTrader 5's numpy rows (rates and ticks), byte for byte, and the tick filters.

use numpy::{Element, PyArray1, PyArrayDescr};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PyTuple};
use shm_core::{Candle, Tick};

/// One row of MetaTrader 5's rates array, byte for byte as numpy lays out its dtype
/// `[('time','<i8'),('open','<f8'),('high','<f8'),('low','<f8'),('close','<f8'),
/// ('tick_volume','<u8'),('spread','<i4'),('real_volume','<u8')]`: packed (numpy's default for
/// a structured dtype), 60 bytes, fields at 0, 8, 16, 24, 32, 40, 48 and 52.
#[repr(C, packed)]
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    time: i64,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    tick_volume: u64,
    spread: i32,
    real_volume: u64,
}

impl From<&Candle> for Rate {
    fn from(c: &Candle) -> Rate {
        Rate {
            time: c.time,
            open: c.open,
            high: c.high,
            low: c.low,
            close: c.close,
            tick_volume: c.tick_volume,
            spread: c.spread,
            real_volume: c.real_volume,
        }
    }
}

/// MT5's rates dtype, built once.
static RATE_DTYPE: PyOnceLock<Py<PyArrayDescr>> = PyOnceLock::new();

pub(crate) fn rate_dtype(py: Python<'_>) -> PyResult<Bound<'_, PyArrayDescr>> {
    let dtype = RATE_DTYPE.get_or_try_init(py, || -> PyResult<Py<PyArrayDescr>> {
        let fields = [
            ("time", "<i8"),
            ("open", "<f8"),
            ("high", "<f8"),
            ("low", "<f8"),
            ("close", "<f8"),
            ("tick_volume", "<u8"),
            ("spread", "<i4"),
            ("real_volume", "<u8"),
        ];
        let list = PyList::empty(py);
        for (name, code) in fields {
            list.append(PyTuple::new(py, [name, code])?)?;
        }
        let dtype = PyArrayDescr::new(py, list)?;
        let itemsize: usize = dtype.getattr("itemsize")?.extract()?;
        if itemsize != std::mem::size_of::<Rate>() {
            return Err(PyValueError::new_err(format!(
                "numpy lays MT5's rates out in {itemsize} bytes, this package in {}",
                std::mem::size_of::<Rate>()
            )));
        }
        Ok(dtype.unbind())
    })?;
    Ok(dtype.bind(py).clone())
}

// SAFETY: `Rate` is `repr(C, packed)` with exactly the fields, types and order of the dtype
// that `get_dtype` returns, so each of its 60 bytes means what numpy thinks (`rate_dtype`
// checks the item size when it builds the dtype, and the package's tests compare the fields);
// it holds no Python object and is `Copy`, which is what `IS_COPY = true` promises.
unsafe impl Element for Rate {
    const IS_COPY: bool = true;

    fn get_dtype(py: Python<'_>) -> Bound<'_, PyArrayDescr> {
        // The dtype is built (and checked) when the module loads, so this cannot fail here.
        rate_dtype(py).expect("the rates dtype was built when the module loaded")
    }

    fn clone_ref(&self, _py: Python<'_>) -> Self {
        *self
    }
}

/// One row of MetaTrader 5's ticks array, byte for byte as numpy lays out its dtype
/// `[('time','<i8'),('bid','<f8'),('ask','<f8'),('last','<f8'),('volume','<u8'),
/// ('time_msc','<i8'),('flags','<u4'),('volume_real','<f8')]`: packed, 60 bytes.
#[repr(C, packed)]
#[derive(Debug, Clone, Copy)]
pub struct TickRow {
    time: i64,
    bid: f64,
    ask: f64,
    last: f64,
    volume: u64,
    time_msc: i64,
    flags: u32,
    volume_real: f64,
}

impl From<&Tick> for TickRow {
    fn from(t: &Tick) -> TickRow {
        TickRow {
            time: t.time(),
            bid: t.bid,
            ask: t.ask,
            last: t.last,
            volume: t.volume,
            time_msc: t.time_msc,
            flags: t.flags,
            volume_real: t.volume_real,
        }
    }
}

/// MT5's ticks dtype, built once.
static TICK_DTYPE: PyOnceLock<Py<PyArrayDescr>> = PyOnceLock::new();

pub(crate) fn tick_dtype(py: Python<'_>) -> PyResult<Bound<'_, PyArrayDescr>> {
    let dtype = TICK_DTYPE.get_or_try_init(py, || -> PyResult<Py<PyArrayDescr>> {
        let fields = [
            ("time", "<i8"),
            ("bid", "<f8"),
            ("ask", "<f8"),
            ("last", "<f8"),
            ("volume", "<u8"),
            ("time_msc", "<i8"),
            ("flags", "<u4"),
            ("volume_real", "<f8"),
        ];
        let list = PyList::empty(py);
        for (name, code) in fields {
            list.append(PyTuple::new(py, [name, code])?)?;
        }
        let dtype = PyArrayDescr::new(py, list)?;
        let itemsize: usize = dtype.getattr("itemsize")?.extract()?;
        if itemsize != std::mem::size_of::<TickRow>() {
            return Err(PyValueError::new_err(format!(
                "numpy lays MT5's ticks out in {itemsize} bytes, this package in {}",
                std::mem::size_of::<TickRow>()
            )));
        }
        Ok(dtype.unbind())
    })?;
    Ok(dtype.bind(py).clone())
}

// SAFETY: as for `Rate`: `TickRow` is `repr(C, packed)` with exactly the fields, types and
// order of `tick_dtype`, whose item size is checked against it when it is built; it holds no
// Python object and is `Copy`.
unsafe impl Element for TickRow {
    const IS_COPY: bool = true;

    fn get_dtype(py: Python<'_>) -> Bound<'_, PyArrayDescr> {
        // Built (and checked) when the module loads, so this cannot fail here.
        tick_dtype(py).expect("the ticks dtype was built when the module loaded")
    }

    fn clone_ref(&self, _py: Python<'_>) -> Self {
        *self
    }
}

/// MT5's `COPY_TICKS_*` filter (`flags` of `copy_ticks_from`): the flag bits a tick must have
/// one of to pass, or `None` for every tick. ALL (-1) every tick; INFO (1) ticks that changed
/// bid or ask; TRADE (2) ticks that changed last or volume (MQL5 reference, `CopyTicks`).
pub(crate) fn tick_filter(flags: i64) -> PyResult<Option<u32>> {
    match flags {
        -1 => Ok(None),
        1 => Ok(Some(shm_core::TICK_FLAG_BID | shm_core::TICK_FLAG_ASK)),
        2 => Ok(Some(shm_core::TICK_FLAG_LAST | shm_core::TICK_FLAG_VOLUME)),
        other => Err(PyValueError::new_err(format!(
            "flags must be COPY_TICKS_ALL (-1), COPY_TICKS_INFO (1) or COPY_TICKS_TRADE (2), not {other}"
        ))),
    }
}

/// At most `count` of `ticks` that pass `filter`, as MT5's rows: without a filter a plain
/// copy of a known length (no check per row).
pub(crate) fn tick_rows(ticks: &[Tick], filter: Option<u32>, count: usize) -> Vec<TickRow> {
    match filter {
        None => {
            let n = ticks.len().min(count);
            let mut rows = Vec::with_capacity(n);
            rows.extend(ticks[..n].iter().map(TickRow::from));
            rows
        }
        Some(bits) => ticks
            .iter()
            .filter(|t| t.flags & bits != 0)
            .take(count)
            .map(TickRow::from)
            .collect(),
    }
}

pub(crate) fn rates<'py>(py: Python<'py>, candles: &[Candle]) -> Bound<'py, PyArray1<Rate>> {
    let rows: Vec<Rate> = candles.iter().map(Rate::from).collect();
    PyArray1::from_vec(py, rows)
}
