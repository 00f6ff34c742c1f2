//! The tick value, MT5's `MqlTick`, and its fixed 64-byte record encoding.
//!
//! Field names, types and flag bits are MetaQuotes' own: `MqlTick` in the MQL5 reference
//! ("Structure for Current Prices") and the `TICK_FLAG_*` constants of the Python package's
//! `copy_ticks_from` page. `time` is `time_msc / 1000`, so it is not stored twice.

use std::fmt;

use crate::candle::LATEST_TIME;

/// Words in one tick record.
pub(crate) const TICK_WORDS: usize = 8;

/// `TICK_FLAG_BID`: the tick changed the bid price.
pub const TICK_FLAG_BID: u32 = 0x02;
/// `TICK_FLAG_ASK`: the tick changed the ask price.
pub const TICK_FLAG_ASK: u32 = 0x04;
/// `TICK_FLAG_LAST`: the tick changed the last deal price.
pub const TICK_FLAG_LAST: u32 = 0x08;
/// `TICK_FLAG_VOLUME`: the tick changed the volume.
pub const TICK_FLAG_VOLUME: u32 = 0x10;
/// `TICK_FLAG_BUY`: the tick is the result of a buy deal.
pub const TICK_FLAG_BUY: u32 = 0x20;
/// `TICK_FLAG_SELL`: the tick is the result of a sell deal.
pub const TICK_FLAG_SELL: u32 = 0x40;
/// Every flag bit MT5 defines; a record with any other bit is refused.
pub const TICK_FLAGS_KNOWN: u32 = 0x7E;

/// One tick as MT5 gives it (`MqlTick`), plus when the writer published it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
// With the `serde` feature: MT5's tick as JSON (`MqlTick`'s fields), its `time` checked
// against its `time_msc`.
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(try_from = "MqlTick")
)]
pub struct Tick {
    /// Server time of the tick, epoch milliseconds (MT5 `time_msc`; `time` is this / 1000).
    pub time_msc: i64,
    /// Bid price (0 where the feed has none, e.g. a trade-only tick of an exchange symbol).
    pub bid: f64,
    /// Ask price (0 where the feed has none).
    pub ask: f64,
    /// Price of the last deal (0 for most FX and CFD symbols).
    pub last: f64,
    /// Volume of the last deal (MT5 `volume`).
    pub volume: u64,
    /// Volume of the last deal with greater accuracy (MT5 `volume_real`).
    pub volume_real: f64,
    /// `TICK_FLAG_*` bits: what the tick changed.
    pub flags: u32,
    /// The writer's clock (unix ns) when it published the tick: set by the writer, ignored in
    /// what is passed to [`Writer::push_tick`](crate::Writer::push_tick).
    pub published_ns: u64,
}

/// MT5's tick as JSON (the MT5 gateway's `tick`, docs/MT5_GATEWAY.md), before its `time` is
/// checked: a tick whose `time` is not its `time_msc` in whole seconds is refused.
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
struct MqlTick {
    time: Option<i64>,
    bid: f64,
    ask: f64,
    last: f64,
    volume: u64,
    time_msc: i64,
    flags: u32,
    volume_real: f64,
}

#[cfg(feature = "serde")]
impl TryFrom<MqlTick> for Tick {
    type Error = String;

    fn try_from(t: MqlTick) -> Result<Tick, String> {
        match t.time {
            Some(time) if time != t.time_msc.div_euclid(1000) => Err(format!(
                "time {time} disagrees with time_msc {}",
                t.time_msc
            )),
            _ => Ok(Tick {
                time_msc: t.time_msc,
                bid: t.bid,
                ask: t.ask,
                last: t.last,
                volume: t.volume,
                volume_real: t.volume_real,
                flags: t.flags,
                published_ns: 0,
            }),
        }
    }
}

/// A rule of the tick record that a tick breaks (docs/LAYOUT.md, "Tick record").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickDefect {
    /// A price or real volume that is NaN, infinite or negative.
    BadValue,
    /// No price at all: bid, ask and last all zero.
    NoPrice,
    /// A crossed quote: bid above ask, both non-zero. No market quotes one; a feed that
    /// sends it is wrong, and serving it would make every spread negative.
    Crossed,
    /// A flag bit MT5 does not define, or reserved bits set.
    Flags,
    /// A time before 1970 or after 2100.
    Time,
    /// A time before the tick it follows.
    OutOfOrder {
        /// The time of the tick before it, ms.
        previous: i64,
    },
}

impl fmt::Display for TickDefect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TickDefect::BadValue => f.write_str("a price or volume that is not finite and ≥ 0"),
            TickDefect::NoPrice => f.write_str("no price (bid, ask and last all 0)"),
            TickDefect::Crossed => f.write_str("a crossed quote (bid above ask)"),
            TickDefect::Flags => f.write_str("flag bits MT5 does not define"),
            TickDefect::Time => f.write_str("a time outside 1970 to 2100"),
            TickDefect::OutOfOrder { previous } => {
                write!(f, "a time before the tick it follows ({previous} ms)")
            }
        }
    }
}

impl std::error::Error for TickDefect {}

impl Tick {
    /// MT5's `time`: the tick's server time in whole seconds.
    #[inline]
    pub fn time(&self) -> i64 {
        self.time_msc.div_euclid(1000)
    }

    /// The first rule this single tick breaks, if any (order is checked across ticks).
    #[inline]
    pub fn defect(&self) -> Option<TickDefect> {
        // Finite and not negative, `-0.0` included (see `words_good`).
        let fine = |x: f64| x.is_finite() && x.is_sign_positive();
        if !(fine(self.bid) && fine(self.ask) && fine(self.last) && fine(self.volume_real)) {
            return Some(TickDefect::BadValue);
        }
        if self.bid == 0.0 && self.ask == 0.0 && self.last == 0.0 {
            return Some(TickDefect::NoPrice);
        }
        if self.ask != 0.0 && self.bid > self.ask {
            return Some(TickDefect::Crossed);
        }
        if self.flags & !TICK_FLAGS_KNOWN != 0 {
            return Some(TickDefect::Flags);
        }
        if !(0..=LATEST_TIME * 1000).contains(&self.time_msc) {
            return Some(TickDefect::Time);
        }
        None
    }

    /// The record's words (docs/LAYOUT.md, "Tick record").
    pub(crate) fn to_words(self) -> [u64; TICK_WORDS] {
        [
            self.time_msc as u64,
            self.bid.to_bits(),
            self.ask.to_bits(),
            self.last.to_bits(),
            self.volume,
            self.volume_real.to_bits(),
            u64::from(self.flags),
            self.published_ns,
        ]
    }

    /// A tick from its record's words; the upper half of the flags word is reserved, and a
    /// record with any bit set there keeps it visible to [`defect`](Self::defect).
    pub(crate) fn from_words(w: &[u64; TICK_WORDS]) -> Tick {
        Tick {
            time_msc: w[0] as i64,
            bid: f64::from_bits(w[1]),
            ask: f64::from_bits(w[2]),
            last: f64::from_bits(w[3]),
            volume: w[4],
            volume_real: f64::from_bits(w[5]),
            // A reserved bit set maps to an undefined flag bit, which `defect` refuses.
            flags: if w[6] >> 32 == 0 {
                w[6] as u32
            } else {
                u32::MAX
            },
            published_ns: w[7],
        }
    }
}

/// Checks a snapshot of ticks, oldest first: each keeps the record's rules and none is
/// older than the one before it (MT5 gives several ticks the same millisecond).
#[inline]
pub(crate) fn check(ticks: &[Tick]) -> Result<(), (i64, TickDefect)> {
    if all_good(ticks) {
        return Ok(());
    }
    find_fault(ticks)
}

/// Whether every tick keeps every rule: one pass without a branch per tick (as the candles'
/// `validate::all_good`); [`find_fault`] says which rule broke, only when one did.
#[inline(always)]
fn all_good(ticks: &[Tick]) -> bool {
    let mut previous = i64::MIN;
    ticks
        .iter()
        .fold(true, |ok, t| ok & words_good(&t.to_words(), &mut previous))
}

/// Whether one record's words keep every rule, after the record whose time was `previous`
/// (updated). On the bits, where a float comparison costs several times more: a double is
/// finite and not negative exactly when its bits, as an unsigned number, are below those of
/// infinity (`0x7FF0…`: the sign bit clear, the exponent not all ones), and all three prices
/// are 0 exactly when their bits are. So `-0.0` is refused, as [`Tick::defect`] refuses it.
/// A crossed quote (bid above a non-zero ask) is refused too.
#[inline(always)]
pub(crate) fn words_good(w: &[u64; TICK_WORDS], previous: &mut i64) -> bool {
    const INFINITY_BITS: u64 = 0x7FF0_0000_0000_0000;
    let (bid, ask, last, real) = (w[1], w[2], w[3], w[5]);
    let values = bid.max(ask).max(last).max(real) < INFINITY_BITS;
    let priced = (bid | ask | last) != 0;
    // On finite, non-negative doubles the bits order as the values do; an ask of 0 (a
    // trade-only tick) is no quote to cross.
    let uncrossed = (ask == 0) | (bid <= ask);
    let flags = w[6] & !u64::from(TICK_FLAGS_KNOWN) == 0;
    // As unsigned, a time before 1970 is past 2100 too.
    let time = w[0] <= (LATEST_TIME * 1000) as u64;
    let ordered = w[0] as i64 >= *previous;
    *previous = w[0] as i64;
    values & priced & uncrossed & flags & time & ordered
}

/// The first tick that breaks a rule, and which: the slow path.
#[cold]
fn find_fault(ticks: &[Tick]) -> Result<(), (i64, TickDefect)> {
    let mut previous = i64::MIN;
    for t in ticks {
        if let Some(d) = t.defect() {
            return Err((t.time_msc, d));
        }
        if t.time_msc < previous {
            return Err((t.time_msc, TickDefect::OutOfOrder { previous }));
        }
        previous = t.time_msc;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(ms: i64) -> Tick {
        Tick {
            time_msc: ms,
            bid: 1.1,
            ask: 1.2,
            last: 0.0,
            volume: 3,
            volume_real: 3.5,
            flags: TICK_FLAG_BID | TICK_FLAG_ASK,
            published_ns: 9,
        }
    }

    #[test]
    fn a_tick_round_trips_through_its_record() {
        let t = tick(1_700_000_000_123);
        assert_eq!(Tick::from_words(&t.to_words()), t);
        assert_eq!(t.time(), 1_700_000_000);
        assert_eq!(Tick { time_msc: -1, ..t }.time(), -1);
    }

    #[test]
    fn damaged_ticks_are_named() {
        let t = tick(5);
        assert_eq!(t.defect(), None);
        assert_eq!(
            Tick { bid: f64::NAN, ..t }.defect(),
            Some(TickDefect::BadValue)
        );
        assert_eq!(
            Tick { last: -1.0, ..t }.defect(),
            Some(TickDefect::BadValue)
        );
        let none = Tick {
            bid: 0.0,
            ask: 0.0,
            ..t
        };
        assert_eq!(none.defect(), Some(TickDefect::NoPrice));
        let crossed = Tick {
            bid: 1.3,
            ask: 1.2,
            ..t
        };
        assert_eq!(crossed.defect(), Some(TickDefect::Crossed));
        // A zero spread, and a trade-only tick without an ask, are markets.
        assert_eq!(Tick { bid: 1.2, ..t }.defect(), None);
        assert_eq!(Tick { ask: 0.0, ..t }.defect(), None);
        assert!(all_good(&[
            t,
            Tick { bid: 1.2, ..t },
            Tick { ask: 0.0, ..t }
        ]));
        assert_eq!(Tick { flags: 1, ..t }.defect(), Some(TickDefect::Flags));
        let mut words = t.to_words();
        words[6] |= 1 << 40;
        assert_eq!(Tick::from_words(&words).defect(), Some(TickDefect::Flags));
        assert_eq!(Tick { time_msc: -5, ..t }.defect(), Some(TickDefect::Time));
        assert!(check(&[tick(5), tick(5), tick(6)]).is_ok());
        // The fast pass and the careful one agree on every defect.
        for bad in [
            Tick { bid: f64::NAN, ..t },
            Tick {
                ask: f64::INFINITY,
                ..t
            },
            Tick {
                volume_real: -0.5,
                ..t
            },
            none,
            crossed,
            Tick { flags: 0x80, ..t },
            Tick { time_msc: -1, ..t },
            Tick {
                time_msc: LATEST_TIME * 1000 + 1,
                ..t
            },
            Tick { bid: -0.0, ..t },
        ] {
            assert!(!all_good(&[t, bad]), "{bad:?}");
            assert!(find_fault(&[t, bad]).is_err(), "{bad:?}");
        }
        assert!(!all_good(&[tick(6), tick(5)]));
        assert_eq!(
            check(&[tick(6), tick(5)]),
            Err((5, TickDefect::OutOfOrder { previous: 6 }))
        );
    }
}
