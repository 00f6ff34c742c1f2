//! The exceptions `mtf_candles._native` raises, and what each reader error becomes.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyLookupError};
use pyo3::prelude::*;
use shm_core::{OpenError, ReadError};

create_exception!(
    _native,
    SegmentError,
    PyException,
    "The segment cannot be used: the message says what was found and expected."
);
create_exception!(
    _native,
    SegmentNotFound,
    SegmentError,
    "No segment at the name or path (is the streamer running?)."
);
create_exception!(
    _native,
    SegmentVersionError,
    SegmentError,
    "A segment of a layout version this package does not read."
);
create_exception!(
    _native,
    WriterGone,
    SegmentError,
    "The segment's writer died (or was killed) while waiting for an update."
);
create_exception!(
    _native,
    NotFound,
    PyLookupError,
    "The segment has no such symbol, or no ring of that timeframe for it."
);

pub(crate) fn open_error(e: OpenError) -> PyErr {
    match e {
        OpenError::NotFound { .. } => SegmentNotFound::new_err(e.to_string()),
        OpenError::VersionMismatch { .. } => SegmentVersionError::new_err(e.to_string()),
        other => SegmentError::new_err(other.to_string()),
    }
}

pub(crate) fn busy(e: ReadError) -> PyErr {
    SegmentError::new_err(e.to_string())
}
