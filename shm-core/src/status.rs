//! Writer state, feed state, counters and liveness, as stored in and read from the header.

use std::fmt;
use std::time::Duration;

use crate::layout::COUNTER_SLOTS;

macro_rules! word_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $value:expr, $text:expr;)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $variant = $value,)*
        }

        impl $name {
            /// Decodes the header word; `None` for a value this version does not know.
            pub fn from_word(w: u64) -> Option<$name> {
                match w {
                    $($value => Some($name::$variant),)*
                    _ => None,
                }
            }

            /// The value of a lower-case name (what [`as_str`](Self::as_str) writes);
            /// `None` for a name this version does not know.
            pub fn from_name(name: &str) -> Option<$name> {
                match name {
                    $($text => Some($name::$variant),)*
                    _ => None,
                }
            }

            /// Lower-case name, as used in JSON and metrics.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

word_enum! {
    /// What the writer says it is doing (header word `writer_state`).
    WriterState {
        /// Created or restarted, still backfilling; candles may be incomplete.
        Initializing = 0, "initializing";
        /// Publishing.
        Running = 1, "running";
        /// Exited cleanly; the data is the last it published.
        Stopped = 2, "stopped";
        /// A writer with another layout replaced this file; re-open the segment by name.
        Replaced = 3, "replaced";
    }
}

word_enum! {
    /// The state of the writer's data source (header word `feed_state`).
    FeedState {
        /// Not started yet.
        Starting = 0, "starting";
        /// Loading history.
        Backfilling = 1, "backfilling";
        /// Receiving live data.
        Live = 2, "live";
        /// A finite source (a file replay) has ended; the data stays served.
        Finished = 3, "finished";
        /// The source is unreachable; the writer keeps retrying.
        Disconnected = 4, "disconnected";
        /// The writer exited cleanly; nothing more will arrive until a writer starts again.
        Stopped = 5, "stopped";
    }
}

word_enum! {
    /// What kind of feed wrote the candles (header word `feed_kind`), so that a restart with
    /// another kind never mixes, say, demo prices into a real broker's symbols.
    FeedKind {
        /// Not recorded (a segment written before the word existed).
        Unrecorded = 0, "unrecorded";
        /// Generated prices for demos and tests.
        Synthetic = 1, "synthetic";
        /// A replay of MT5 export files.
        Csv = 2, "csv";
        /// A live MetaTrader 5 terminal, through the gateway.
        Mt5 = 3, "mt5";
        /// `mtf-mirror`: another host's segment, rebuilt from NATS.
        Mirror = 4, "mirror";
    }
}

word_enum! {
    /// The header's counters, by slot index. Slots not listed here are reserved and zero.
    Counter {
        /// Ticks accepted.
        TicksProcessed = 0, "ticks_processed";
        /// Candles closed, over all rings.
        BarsClosed = 1, "bars_closed";
        /// Ticks or bars refused for a NaN, infinite, zero or negative price, or high < low.
        RejectedBadPrice = 2, "rejected_bad_price";
        /// Ticks older than the newest tick of their symbol.
        RejectedOutOfOrder = 3, "rejected_out_of_order";
        /// Bars with the time of a bar already closed.
        RejectedDuplicateBar = 4, "rejected_duplicate_bar";
        /// Bars older than the newest closed bar.
        RejectedBackwardsBar = 5, "rejected_backwards_bar";
        /// Gaps: a new bar more than one bar after the previous one.
        GapsDetected = 6, "gaps_detected";
        /// Input rows that could not be parsed (CSV and the like).
        BadRows = 7, "bad_rows";
        /// Bars written from history (backfill).
        BarsBackfilled = 8, "bars_backfilled";
        /// Forming or just-closed candles replaced by an authoritative bar.
        Corrections = 9, "corrections";
        /// Reconnections to the source.
        Reconnects = 10, "reconnects";
        /// Ticks or bars dated further ahead of the clock than any broker's server time can
        /// be (more than UTC+14 h plus 5 min; see the streamer's feed hygiene rules).
        RejectedFutureTime = 11, "rejected_future_time";
        /// Times the writer's wall clock went back by more than a second between two
        /// heartbeats (an NTP step, an operator's `date -s`); see `Status::clock_jumped_back`.
        ClockJumpsBack = 12, "clock_jumps_back";
        /// Messages a mirror refused from NATS (malformed, another version, or candles that
        /// break the rules: misaligned, implausibly late, out of range).
        RejectedMessages = 13, "rejected_messages";
        /// Symbol information records refused from the source (a string too long, a field
        /// of the wrong type, too many fields); the record held before stays.
        RejectedSymbolInfo = 14, "rejected_symbol_info";
        /// Ticks written into the symbols' tick rings (version 2).
        TicksRecorded = 15, "ticks_recorded";
        /// Ticks refused for flag bits MT5 does not define (`TICK_FLAG_*` is 0x7E); a
        /// reserved slot until December 2026, so older readers see 0.
        RejectedBadFlags = 16, "rejected_bad_flags";
        /// Appends the history store could not make (a full disk, an I/O error): the store
        /// lacks what the rings got meanwhile. A reserved slot until December 2026.
        HistoryErrors = 17, "history_errors";
    }
}

impl Counter {
    /// Every counter, in slot order.
    pub const ALL: [Counter; 18] = [
        Counter::TicksProcessed,
        Counter::BarsClosed,
        Counter::RejectedBadPrice,
        Counter::RejectedOutOfOrder,
        Counter::RejectedDuplicateBar,
        Counter::RejectedBackwardsBar,
        Counter::GapsDetected,
        Counter::BadRows,
        Counter::BarsBackfilled,
        Counter::Corrections,
        Counter::Reconnects,
        Counter::RejectedFutureTime,
        Counter::ClockJumpsBack,
        Counter::RejectedMessages,
        Counter::RejectedSymbolInfo,
        Counter::TicksRecorded,
        Counter::RejectedBadFlags,
        Counter::HistoryErrors,
    ];

    /// The counters of refused input, whose sum is "rejected" in summaries.
    pub const REJECTS: [Counter; 6] = [
        Counter::RejectedBadPrice,
        Counter::RejectedOutOfOrder,
        Counter::RejectedDuplicateBar,
        Counter::RejectedBackwardsBar,
        Counter::BadRows,
        Counter::RejectedFutureTime,
    ];
}

/// A copy of the header's counter words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters(pub(crate) [u64; COUNTER_SLOTS]);

impl Counters {
    /// The value of one counter.
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }
}

/// Whether a writer is publishing, as a reader can tell without disturbing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Liveness {
    /// The writer holds the lock and its heartbeat is fresh.
    Alive,
    /// The writer holds the lock but its heartbeat is older than the stall threshold.
    Stalled,
    /// The writer exited cleanly (state `stopped`).
    Stopped,
    /// Nobody holds the lock and the writer did not stop cleanly: it crashed or was killed.
    Gone,
    /// This file was replaced by a segment of another layout; call [`Reader::refresh`](crate::Reader::refresh).
    Replaced,
}

impl Liveness {
    /// Lower-case name, as used in JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Stalled => "stalled",
            Liveness::Stopped => "stopped",
            Liveness::Gone => "gone",
            Liveness::Replaced => "replaced",
        }
    }

    /// Whether the writer may still publish: alive, or stalled but holding the lock.
    pub fn is_publishing(self) -> bool {
        matches!(self, Liveness::Alive | Liveness::Stalled)
    }
}

impl fmt::Display for Liveness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The segment header as one reader saw it (see [`Reader::status`](crate::Reader::status)).
///
/// Each word is read atomically; the words are not one snapshot, which is fine for
/// independent counters and timestamps.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// Alive, stalled, stopped, gone or replaced.
    pub liveness: Liveness,
    /// The writer's own state word; `None` if it holds a value this version does not know.
    pub writer_state: Option<WriterState>,
    /// Incremented at every writer start on this segment.
    pub generation: u64,
    /// Process id of the current or last writer.
    pub writer_pid: u32,
    /// When the current or last writer started (unix ns).
    pub writer_start_ns: u64,
    /// The writer's last heartbeat (unix ns).
    pub heartbeat_ns: u64,
    /// Age of the heartbeat: by the boot-time clock the writer stamps beside it where it does
    /// (Linux), else by this process's wall clock (zero if the heartbeat is in the future,
    /// which then does not count as fresh).
    pub heartbeat_age: Duration,
    /// When any candle last changed (unix ns); 0 if none has.
    pub last_update_ns: u64,
    /// When the segment file was created (unix ns).
    pub created_ns: u64,
    /// Broker server time minus UTC, in seconds, as configured in the writer.
    pub server_time_offset_s: i64,
    /// The source's state; `None` for an unknown value.
    pub feed_state: Option<FeedState>,
    /// What kind of feed wrote the candles; `None` for an unknown value.
    pub feed_kind: Option<FeedKind>,
    /// The counters.
    pub counters: Counters,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_to_their_values() {
        for s in [
            FeedState::Starting,
            FeedState::Live,
            FeedState::Finished,
            FeedState::Disconnected,
        ] {
            assert_eq!(FeedState::from_name(s.as_str()), Some(s));
        }
        assert_eq!(FeedKind::from_name("mirror"), Some(FeedKind::Mirror));
        assert_eq!(FeedKind::from_word(4), Some(FeedKind::Mirror));
        assert_eq!(FeedState::from_name("Live"), None, "names are lower-case");
        assert_eq!(WriterState::from_name("nonsense"), None);
    }
}
