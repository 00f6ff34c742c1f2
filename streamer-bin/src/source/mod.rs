//! Feeds behind one trait: `synthetic` (the default), `csv` (MT5 export replay), and `mt5`
//! (the MT5 gateway).

use std::fmt;
use std::time::Duration;

use shm_core::{Candle, Counter, FeedState, Timeframe};

use crate::aggregate::{Bar, Tick};

pub mod csv;
pub mod mt5;
mod mt5_depth;
mod mt5_info;
pub mod synthetic;

/// What a source delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A price update.
    Tick(Tick),
    /// The feed's newest tick, which the bars it backfilled already count (MT5's latest tick
    /// at the end of a backfill): recorded as the symbol's last tick, never folded into a
    /// candle, so that readers have a tick from the moment the segment runs, as MT5 does.
    LatestTick(Tick),
    /// A bar (closed or forming).
    Bar(Bar),
    /// Closed bars older than the symbol's ring holds, oldest first (a deep backfill from the
    /// terminal): for the history store alone.
    StoredBars {
        /// Index of the symbol in the streamer's symbol list.
        symbol: usize,
        /// Their timeframe.
        timeframe: Timeframe,
        /// The bars.
        bars: Vec<Candle>,
    },
    /// Ticks older than the symbol's tick ring holds (a deep backfill): for the store alone.
    StoredTicks(StoredTicks),
    /// The terminal's information on a symbol (MT5's `symbol_info`), already checked to fit
    /// the segment's record.
    SymbolInfo {
        /// Index of the symbol in the streamer's symbol list.
        symbol: usize,
        /// The record.
        info: Box<shm_core::SymbolInfo>,
    },
    /// The terminal and its account, as the gateway's `hello` reported them just now.
    Terminal(shm_core::TerminalInfo),
    /// The feed changed state (backfilling, live, finished, disconnected).
    Feed(FeedState),
    /// Something to count in the segment header (reconnects, backfilled bars).
    Count(Counter, u64),
    /// The source learned the broker's server-time offset (seconds).
    ServerTimeOffset(i64),
    /// The source does not know a symbol (or knows it again): MT5's -4 for a misspelt name or
    /// broker suffix. Its rings are flagged for readers; the other symbols are unaffected.
    SymbolUnknown {
        /// Index of the symbol in the streamer's symbol list.
        symbol: usize,
        /// Unknown (true) or known again (false).
        unknown: bool,
    },
    /// An input row that could not be used; counted and reported, never fatal.
    BadRow {
        /// The file.
        file: String,
        /// 1-based line number.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
}

/// Ticks of one symbol for the history store alone, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTicks {
    /// Index of the symbol in the streamer's symbol list.
    pub symbol: usize,
    /// The ticks, as the terminal gave them.
    pub ticks: Vec<shm_core::Tick>,
}

/// A source failed in a way it cannot recover from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceError {
    /// The thread that talks to the MT5 gateway ended (it only ends when asked to, or by a
    /// panic, which is a bug).
    WorkerStopped,
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::WorkerStopped => f.write_str("the MT5 source worker stopped"),
        }
    }
}

impl std::error::Error for SourceError {}

/// A feed of ticks and bars.
pub trait Source: Send {
    /// Appends the events that are due to `out`, waiting at most `wait` for the first one.
    /// Returning with nothing is fine; the caller heartbeats and calls again.
    fn poll(&mut self, out: &mut Vec<Event>, wait: Duration) -> Result<(), SourceError>;

    /// One line for the banner.
    fn describe(&self) -> String;

    /// How far a finite source (a file replay) has come; `None` for live feeds.
    fn progress(&self) -> Option<Progress> {
        None
    }
}

/// How far a replay has come.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Events (bars or ticks) replayed so far.
    pub events: u64,
    /// Fraction of the input read, 0 to 1.
    pub fraction: f64,
}
