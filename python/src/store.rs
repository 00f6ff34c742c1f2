//! The history store beside the segment (shm-core's `history`), read where a range reaches
//! past what a ring holds: the seam rules of docs/LAYOUT.md, "History store".
//!
//! - Bars: the store gives the bars that open before the ring's oldest bar, the ring the rest
//!   (its closed bars and the forming one). A ring is complete for a range that starts at or
//!   after its oldest bar, and the store is not read.
//! - Ticks: the writer appends each tick to the store before the ring, so the store holds every
//!   tick the ring does (as of the ring's copy, which is made first). A range is read from the
//!   store, and the ring adds only ticks newer than the store's newest (a store that stopped
//!   growing: a full disk, or a writer without one). A ring that still holds a tick older than
//!   the range's start is complete, and the store is not read.

use std::path::PathBuf;

use pyo3::prelude::*;
use shm_core::history::{StoredBars, StoredTicks, StreamCache};
use shm_core::{HistoryError, Timeframe, Trust};

use crate::errors::SegmentError;

/// The streams of one store, mapped as they are first read and kept for the next calls.
pub(crate) struct Store(StreamCache);

fn store_error(e: HistoryError) -> PyErr {
    SegmentError::new_err(e.to_string())
}

impl Store {
    pub(crate) fn new(dir: PathBuf, trust: Trust) -> Store {
        Store(StreamCache::at(dir, trust))
    }

    /// The store's directory.
    pub(crate) fn dir(&self) -> &std::path::Path {
        self.0.history().dir()
    }

    /// A ring's stored bars, brought up to date.
    pub(crate) fn bars(&mut self, symbol: &str, tf: Timeframe) -> PyResult<&StoredBars> {
        self.0.bars(symbol, tf).map_err(store_error)
    }

    /// A symbol's stored ticks, brought up to date.
    pub(crate) fn ticks(&mut self, symbol: &str) -> PyResult<&StoredTicks> {
        self.0.ticks(symbol).map_err(store_error)
    }
}
