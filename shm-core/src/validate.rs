//! What a reader checks of every snapshot before it hands one out: the rules the writer keeps
//! for each record ([`Candle::defect`]), and the order of the ring. A damaged or forged
//! segment gets an error, never a plausible-looking answer (docs/LAYOUT.md, "What the writer
//! guarantees").
//!
//! The order rules: times strictly increase from the oldest candle to the forming one, and
//! each time is the start of a bar of the ring's timeframe. `copy_rates_from` and
//! `copy_rates_range` binary-search a snapshot, so a disordered one would give wrong slices
//! without any error.

use std::fmt;

use crate::candle::{Candle, CandleDefect};
use crate::Timeframe;

/// Why a snapshot was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidRecord {
    /// A record breaks one of the writer's rules for a single candle.
    Defect(CandleDefect),
    /// The time is not the start of a bar of the ring's timeframe.
    Misaligned,
    /// The record carries the *repaired* flag, which writers before version 0.2 set on a torn
    /// record they kept; such a record may be half of two candles.
    Repaired,
    /// The time is not later than the candle before it.
    OutOfOrder {
        /// The time of the candle before it.
        previous: i64,
    },
}

impl fmt::Display for InvalidRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidRecord::Defect(d) => d.fmt(f),
            InvalidRecord::Misaligned => f.write_str("a time that is not the start of a bar"),
            InvalidRecord::Repaired => f.write_str("a record torn by a killed writer"),
            InvalidRecord::OutOfOrder { previous } => {
                write!(f, "a time not later than the candle before it ({previous})")
            }
        }
    }
}

/// Checks `closed` (oldest first) and then `forming`, which must follow them. Returns the
/// first offending candle's time and what is wrong with it.
#[inline]
pub(crate) fn check(
    tf: Timeframe,
    closed: &[Candle],
    forming: Option<&Candle>,
) -> Result<(), (i64, InvalidRecord)> {
    let mut previous = i64::MIN;
    for c in closed.iter().chain(forming) {
        if let Some(d) = c.defect() {
            return Err((c.time, InvalidRecord::Defect(d)));
        }
        if c.repaired {
            return Err((c.time, InvalidRecord::Repaired));
        }
        if c.time <= previous {
            return Err((c.time, InvalidRecord::OutOfOrder { previous }));
        }
        if !aligned(tf, c.time) {
            return Err((c.time, InvalidRecord::Misaligned));
        }
        previous = c.time;
    }
    Ok(())
}

/// Whether `t` (0 to 2100, checked before) opens a bar of `tf`. Each arm divides by a
/// constant, which the compiler turns into a multiplication: the check costs a few cycles a
/// candle (docs/BENCHMARKS.md).
#[inline]
fn aligned(tf: Timeframe, t: i64) -> bool {
    match tf {
        Timeframe::M1 => t % 60 == 0,
        Timeframe::M5 => t % 300 == 0,
        Timeframe::M15 => t % 900 == 0,
        Timeframe::M30 => t % 1800 == 0,
        Timeframe::H1 => t % 3600 == 0,
        Timeframe::H4 => t % 14_400 == 0,
        Timeframe::D1 => t % 86_400 == 0,
        // Sunday 00:00, as MT5's weeks; 1970-01-04 was a Sunday.
        Timeframe::W1 => (t - 3 * 86_400) % 604_800 == 0,
        Timeframe::MN1 => tf.bar_start(t) == t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(minute: i64) -> Candle {
        Candle::flat(minute * 60, 1.5)
    }

    #[test]
    fn order_alignment_and_defects_are_each_refused() {
        let tf = Timeframe::M1;
        assert_eq!(check(tf, &[m(1), m(2), m(3)], Some(&m(4))), Ok(()));
        assert_eq!(check(tf, &[], None), Ok(()));
        // The attack's forged cases: +7 s off the minute, a repeated time, two swapped times,
        // a forming candle older than the closed ones.
        let off = Candle::flat(120 + 7, 1.5);
        assert_eq!(
            check(tf, &[m(1), off], None),
            Err((127, InvalidRecord::Misaligned))
        );
        assert_eq!(
            check(tf, &[m(1), m(2), m(2)], None),
            Err((120, InvalidRecord::OutOfOrder { previous: 120 }))
        );
        assert_eq!(
            check(tf, &[m(1), m(3), m(2)], None),
            Err((120, InvalidRecord::OutOfOrder { previous: 180 }))
        );
        assert_eq!(
            check(tf, &[m(1), m(3)], Some(&m(2))),
            Err((120, InvalidRecord::OutOfOrder { previous: 180 }))
        );
        let bad = Candle { high: 1.0, ..m(5) };
        assert_eq!(
            check(tf, &[m(1), bad], None),
            Err((300, InvalidRecord::Defect(CandleDefect::HighLow)))
        );
        // A misaligned M5 that is a whole minute.
        assert_eq!(
            check(Timeframe::M5, &[m(5), m(11)], None),
            Err((660, InvalidRecord::Misaligned))
        );
    }

    #[test]
    fn every_timeframe_takes_its_own_bar_starts_and_no_other() {
        // 2024-03-03 is a Sunday, 2024-03-01 a Friday and the 1st of a month.
        let sunday = 1_709_424_000;
        let first = 1_709_251_200;
        for tf in Timeframe::ALL {
            for t in [
                sunday,
                first,
                sunday + 3600,
                first + 60,
                1_709_510_400 + 14_400,
            ] {
                assert_eq!(aligned(tf, t), tf.bar_start(t) == t, "{tf} {t}");
            }
        }
        assert!(aligned(Timeframe::W1, sunday) && !aligned(Timeframe::W1, first));
        assert!(aligned(Timeframe::MN1, first) && !aligned(Timeframe::MN1, sunday));
    }
}
