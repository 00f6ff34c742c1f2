//! The candle value and its fixed 64-byte record encoding.

/// Words in one candle record.
pub(crate) const RECORD_WORDS: usize = 8;

/// Bit 0 of the flags field: the candle is still forming.
pub(crate) const FLAG_FORMING: u32 = 1;
/// Bit 1 of the flags field: a writer restart found this record half-written and kept the
/// words it found; the next authoritative bar for its time replaces it.
pub(crate) const FLAG_REPAIRED: u32 = 2;

/// One OHLC candle, with MetaTrader 5's rate fields.
///
/// `time` is the bar's open time in epoch seconds of the broker's *server* time, exactly as MT5
/// reports it; the segment header carries the server-time offset for computing true ages.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
// With the `serde` feature: MT5's rate as JSON (`time`, `open`, …, `real_volume`), closed
// unless `forming` says otherwise.
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
pub struct Candle {
    /// Open time, epoch seconds, server time.
    pub time: i64,
    /// First price of the bar.
    pub open: f64,
    /// Highest price of the bar.
    pub high: f64,
    /// Lowest price of the bar.
    pub low: f64,
    /// Last price of the bar.
    pub close: f64,
    /// Number of ticks (MT5 `tick_volume`).
    pub tick_volume: u64,
    /// Spread in points (MT5 `spread`).
    pub spread: i32,
    /// Exchange volume (MT5 `real_volume`); 0 for most FX and CFD symbols.
    pub real_volume: u64,
    /// `true` for the bar still forming, `false` for a closed bar.
    #[cfg_attr(feature = "serde", serde(default))]
    pub forming: bool,
    /// `true` if a writer restart found this record half-written (see `docs/LAYOUT.md`).
    #[cfg_attr(feature = "serde", serde(default))]
    pub repaired: bool,
}

/// The latest candle time a reader accepts: 2100-01-01T00:00:00, epoch seconds.
pub const LATEST_TIME: i64 = 4_102_444_800;

/// A rule of [`Candle::defect`] that a stored record breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandleDefect {
    /// A price that is NaN, infinite, zero or negative.
    BadPrice,
    /// `high` below the open or close, or `low` above them.
    HighLow,
    /// A time before 1970 or after 2100.
    Time,
}

impl CandleDefect {
    /// The rule every bar keeps on its prices, wherever it comes from (the writer, a reader,
    /// the monitor's sources, the streamer's feeds): every price finite and positive, and the
    /// high and low around the open and close (so the low is at most the high).
    pub fn of_prices(open: f64, high: f64, low: f64, close: f64) -> Option<CandleDefect> {
        if [open, high, low, close]
            .iter()
            .any(|p| !p.is_finite() || *p <= 0.0)
        {
            return Some(CandleDefect::BadPrice);
        }
        if high < open.max(close) || low > open.min(close) {
            return Some(CandleDefect::HighLow);
        }
        None
    }
}

impl std::fmt::Display for CandleDefect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CandleDefect::BadPrice => "a price that is not finite and positive",
            CandleDefect::HighLow => "high or low outside open and close",
            CandleDefect::Time => "a time outside 1970 to 2100",
        })
    }
}

impl Candle {
    /// Whether `other` is the same candle to the bit: every field equal, prices by their bits
    /// (so `-0.0` and `0.0`, which print differently, are told apart). What a stream or a cache
    /// compares to tell whether a candle changed.
    pub fn same_bits(&self, other: &Candle) -> bool {
        self.time == other.time
            && self.open.to_bits() == other.open.to_bits()
            && self.high.to_bits() == other.high.to_bits()
            && self.low.to_bits() == other.low.to_bits()
            && self.close.to_bits() == other.close.to_bits()
            && self.tick_volume == other.tick_volume
            && self.spread == other.spread
            && self.real_volume == other.real_volume
            && self.forming == other.forming
    }

    /// A candle whose four prices are all `price`, as a new bar opened by one tick.
    pub fn flat(time: i64, price: f64) -> Candle {
        Candle {
            time,
            open: price,
            high: price,
            low: price,
            close: price,
            ..Candle::default()
        }
    }

    /// What is wrong with this candle, if it breaks a rule the writer guarantees for every
    /// record it stores: prices finite and positive, `low ≤ min(open, close)`, `high ≥
    /// max(open, close)`, and a time from 1970 to 2100. A reader that finds one is reading a
    /// damaged (or forged) segment, and should refuse the record rather than serve it.
    ///
    /// ```
    /// use shm_core::Candle;
    /// assert_eq!(Candle::flat(60, 1.5).defect(), None);
    /// assert!(Candle { high: 1.0, ..Candle::flat(60, 1.5) }.defect().is_some());
    /// assert!(Candle::flat(i64::MAX, 1.5).defect().is_some());
    /// ```
    pub fn defect(&self) -> Option<CandleDefect> {
        if let Some(d) = CandleDefect::of_prices(self.open, self.high, self.low, self.close) {
            return Some(d);
        }
        if !(0..=LATEST_TIME).contains(&self.time) {
            return Some(CandleDefect::Time);
        }
        None
    }

    /// The record words, in layout order (see `docs/LAYOUT.md`).
    pub(crate) fn to_words(self) -> [u64; RECORD_WORDS] {
        let flags =
            (u32::from(self.forming) * FLAG_FORMING) | (u32::from(self.repaired) * FLAG_REPAIRED);
        [
            self.time as u64,
            self.open.to_bits(),
            self.high.to_bits(),
            self.low.to_bits(),
            self.close.to_bits(),
            self.tick_volume,
            self.real_volume,
            u64::from(self.spread as u32) | u64::from(flags) << 32,
        ]
    }

    /// Decodes record words written by [`to_words`](Self::to_words).
    pub(crate) fn from_words(w: &[u64; RECORD_WORDS]) -> Candle {
        let flags = (w[7] >> 32) as u32;
        Candle {
            time: w[0] as i64,
            open: f64::from_bits(w[1]),
            high: f64::from_bits(w[2]),
            low: f64::from_bits(w[3]),
            close: f64::from_bits(w[4]),
            tick_volume: w[5],
            real_volume: w[6],
            spread: w[7] as u32 as i32,
            forming: flags & FLAG_FORMING != 0,
            repaired: flags & FLAG_REPAIRED != 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_words_round_trip_every_field() {
        let c = Candle {
            time: -5,
            open: 1.5,
            high: f64::MAX,
            low: -0.0,
            close: 90_000.25,
            tick_volume: u64::MAX,
            spread: -7,
            real_volume: 42,
            forming: true,
            repaired: false,
        };
        assert_eq!(Candle::from_words(&c.to_words()), c);
        let closed = Candle {
            forming: false,
            repaired: true,
            ..c
        };
        assert_eq!(Candle::from_words(&closed.to_words()), closed);
    }

    #[test]
    fn spread_and_flags_share_the_last_word_little_endian() {
        let c = Candle {
            spread: 3,
            forming: true,
            ..Candle::default()
        };
        let w = c.to_words()[7].to_le_bytes();
        assert_eq!(w, [3, 0, 0, 0, 1, 0, 0, 0]);
    }
}
