//! The streams of one store a process keeps mapped between reads: each chunk is checked once
//! when first mapped (its records never change), and each read after that costs a few atomic
//! loads (`Stored::sync`). The HTTP API's ranges and the NATS origin's pages read through it.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::history::read::{History, StoredBars, StoredTicks};
use crate::history::HistoryError;
use crate::timeframe::Timeframe;
use crate::trust::Trust;

/// A store's streams, mapped on first use and kept.
#[derive(Debug)]
pub struct StreamCache {
    history: History,
    bars: HashMap<(String, Timeframe), StoredBars>,
    ticks: HashMap<String, StoredTicks>,
}

impl StreamCache {
    /// The streams of the store at `dir` written by one of `trust`'s accounts
    /// ([`History::at`]), none mapped yet. The caller names only symbols and rings of its
    /// segment's layout, which bounds what is kept.
    pub fn at(dir: impl Into<PathBuf>, trust: Trust) -> StreamCache {
        StreamCache {
            history: History::at(dir, trust),
            bars: HashMap::new(),
            ticks: HashMap::new(),
        }
    }

    /// The store.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The stored bars of `symbol`'s `timeframe` ring, brought up to date.
    pub fn bars(
        &mut self,
        symbol: &str,
        timeframe: Timeframe,
    ) -> Result<&StoredBars, HistoryError> {
        let history = &self.history;
        let s = self
            .bars
            .entry((symbol.to_owned(), timeframe))
            .or_insert_with(|| history.bars(symbol, timeframe));
        s.sync()?;
        Ok(s)
    }

    /// The stored ticks of `symbol`, brought up to date.
    pub fn ticks(&mut self, symbol: &str) -> Result<&StoredTicks, HistoryError> {
        let history = &self.history;
        let s = self
            .ticks
            .entry(symbol.to_owned())
            .or_insert_with(|| history.ticks(symbol));
        s.sync()?;
        Ok(s)
    }
}
