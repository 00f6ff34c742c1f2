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

use crate::candle::{Candle, CandleDefect, LATEST_TIME};
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

/// The closed positions `lo..hi` of one ring that a reader has checked, each against its
/// predecessor: packed in one word, so that threads sharing a reader never mix two claims.
/// `hi` takes the upper 43 bits (8.8 × 10^12 pushes, 278 years at one a millisecond; past
/// that nothing is remembered and every read checks everything) and `hi − lo` the lower 21
/// (a ring holds at most 2^20 candles). The newest closed position (`head − 1`) is never
/// included, since a correction may rewrite it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checked {
    lo: u64,
    hi: u64,
}

const SPAN_BITS: u32 = 21;

impl Checked {
    pub(crate) fn unpack(w: u64) -> Checked {
        let hi = w >> SPAN_BITS;
        Checked {
            lo: hi - (w & ((1 << SPAN_BITS) - 1)),
            hi,
        }
    }

    /// The word, if the range fits in it.
    pub(crate) fn pack(self) -> Option<u64> {
        let span = self.hi - self.lo;
        (self.hi < 1 << (64 - SPAN_BITS) && span < 1 << SPAN_BITS)
            .then_some(self.hi << SPAN_BITS | span)
    }

    /// How many candles of a snapshot starting at position `first` need no new check: those
    /// inside the range, but the last of them, kept as the new candles' predecessor.
    pub(crate) fn skippable(self, first: u64) -> usize {
        if self.lo <= first && first < self.hi {
            (self.hi - 1 - first) as usize
        } else {
            0
        }
    }

    /// The range once a snapshot of `first..head` has passed its check: joined to this one if
    /// they overlap (so that the order across the seam was checked too), else the snapshot's
    /// own (a reader that skipped far ahead). The newest position stays out.
    pub(crate) fn extended(self, first: u64, head: u64) -> Checked {
        if first >= head {
            return self; // no closed candle was read
        }
        let hi = head - 1;
        if self.lo <= first && first < self.hi && hi >= self.hi {
            Checked { lo: self.lo, hi }
        } else if hi > first {
            Checked { lo: first, hi }
        } else {
            self
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
    let follows = match (closed.last(), forming) {
        (Some(last), Some(f)) => f.time > last.time,
        _ => true,
    };
    if follows
        && all_good(tf, closed)
        && forming.is_none_or(|f| all_good(tf, std::slice::from_ref(f)))
    {
        return Ok(());
    }
    find_fault(tf, closed, forming)
}

/// Whether every candle keeps every rule: the hot path, one pass with no early exit and no
/// branch per candle, which the compiler keeps in registers (docs/BENCHMARKS.md has its
/// cost). The divisor of each timeframe is a constant of its own copy of the loop.
#[inline(always)]
fn all_good(tf: Timeframe, candles: &[Candle]) -> bool {
    match tf {
        Timeframe::M1 => all_good_fixed::<60, 0>(candles),
        Timeframe::M2 => all_good_fixed::<120, 0>(candles),
        Timeframe::M3 => all_good_fixed::<180, 0>(candles),
        Timeframe::M4 => all_good_fixed::<240, 0>(candles),
        Timeframe::M5 => all_good_fixed::<300, 0>(candles),
        Timeframe::M6 => all_good_fixed::<360, 0>(candles),
        Timeframe::M10 => all_good_fixed::<600, 0>(candles),
        Timeframe::M12 => all_good_fixed::<720, 0>(candles),
        Timeframe::M15 => all_good_fixed::<900, 0>(candles),
        Timeframe::M20 => all_good_fixed::<1_200, 0>(candles),
        Timeframe::M30 => all_good_fixed::<1_800, 0>(candles),
        Timeframe::H1 => all_good_fixed::<3_600, 0>(candles),
        Timeframe::H2 => all_good_fixed::<7_200, 0>(candles),
        Timeframe::H3 => all_good_fixed::<10_800, 0>(candles),
        Timeframe::H4 => all_good_fixed::<14_400, 0>(candles),
        Timeframe::H6 => all_good_fixed::<21_600, 0>(candles),
        Timeframe::H8 => all_good_fixed::<28_800, 0>(candles),
        Timeframe::H12 => all_good_fixed::<43_200, 0>(candles),
        Timeframe::D1 => all_good_fixed::<86_400, 0>(candles),
        // Sunday 00:00, as MT5's weeks; 1970-01-04 was a Sunday.
        Timeframe::W1 => all_good_fixed::<604_800, { 3 * 86_400 }>(candles),
        // Calendar months: the careful path (a monthly ring is a few hundred bars at most).
        Timeframe::MN1 => find_fault(tf, candles, None).is_ok(),
    }
}

/// [`all_good`] for bars that start at `BASE` plus a multiple of `PERIOD` seconds.
#[inline(always)]
fn all_good_fixed<const PERIOD: u64, const BASE: u64>(candles: &[Candle]) -> bool {
    let mut ok = true;
    let mut previous: i64 = -1;
    for c in candles {
        // `low > 0`, `high` finite, and `low ≤ open, close ≤ high` make all four prices finite
        // and positive; a NaN anywhere fails a comparison.
        let prices = (c.low > 0.0)
            & (c.high < f64::INFINITY)
            & (c.low <= c.open)
            & (c.low <= c.close)
            & (c.high >= c.open)
            & (c.high >= c.close);
        // As unsigned, a time before 1970 is past 2100 too, and fails the first test; the
        // addition wraps for those (its result is then not used), and below 2100 it is exact.
        let t = c.time as u64;
        let time = (t <= LATEST_TIME as u64) & t.wrapping_add(PERIOD - BASE).is_multiple_of(PERIOD);
        ok &= prices & time & !c.repaired & (c.time > previous);
        previous = c.time;
    }
    ok
}

/// The first candle that breaks a rule, and which: the slow path, run only when
/// [`all_good`] said something is wrong (or for MN1).
#[cold]
fn find_fault(
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
        Timeframe::M2 => t % 120 == 0,
        Timeframe::M3 => t % 180 == 0,
        Timeframe::M4 => t % 240 == 0,
        Timeframe::M5 => t % 300 == 0,
        Timeframe::M6 => t % 360 == 0,
        Timeframe::M10 => t % 600 == 0,
        Timeframe::M12 => t % 720 == 0,
        Timeframe::M15 => t % 900 == 0,
        Timeframe::M20 => t % 1_200 == 0,
        Timeframe::M30 => t % 1_800 == 0,
        Timeframe::H1 => t % 3_600 == 0,
        Timeframe::H2 => t % 7_200 == 0,
        Timeframe::H3 => t % 10_800 == 0,
        Timeframe::H4 => t % 14_400 == 0,
        Timeframe::H6 => t % 21_600 == 0,
        Timeframe::H8 => t % 28_800 == 0,
        Timeframe::H12 => t % 43_200 == 0,
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
    fn the_fast_pass_and_the_careful_one_agree() {
        // Candles near the rules' edges, from a fixed LCG: each pair of passes must agree.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            x >> 33
        };
        let prices = [1.0, 2.0, 0.0, -1.0, f64::NAN, f64::INFINITY, 1.5];
        for _ in 0..if cfg!(miri) { 200 } else { 20_000 } {
            let tf = Timeframe::ALL[next() as usize % Timeframe::ALL.len()];
            let n = 1 + next() as usize % 4;
            let candles: Vec<Candle> = (0..n)
                .map(|i| {
                    let base = 1_709_424_000 + i as i64 * tf.nominal_seconds();
                    let time = match next() % 6 {
                        0 => base + 7,
                        1 => -60,
                        2 => LATEST_TIME + 60,
                        _ => tf.bar_start(base),
                    };
                    let p = |k: u64| prices[(k % prices.len() as u64) as usize];
                    let (o, c) = (p(next() % 3 + 6), p(next() % 3 + 6));
                    Candle {
                        time,
                        open: o,
                        close: c,
                        high: if next() % 5 == 0 { p(next()) } else { o.max(c) },
                        low: if next() % 5 == 0 { p(next()) } else { o.min(c) },
                        repaired: next() % 10 == 0,
                        ..Candle::default()
                    }
                })
                .collect();
            assert_eq!(
                all_good(tf, &candles),
                find_fault(tf, &candles, None).is_ok(),
                "{tf} {candles:?}"
            );
        }
    }

    #[test]
    fn the_checked_range_joins_only_across_a_checked_seam() {
        let none = Checked::unpack(0);
        assert_eq!(none.skippable(0), 0);
        // A first read of positions 10..60: 10..59 are known (59 may still be corrected).
        let a = none.extended(10, 60);
        assert_eq!(a, Checked { lo: 10, hi: 59 });
        assert_eq!(Checked::unpack(a.pack().unwrap()), a);
        // The next read of 11..61 skips 11..57 and checks 58 (the seam), 59 and 60.
        assert_eq!(a.skippable(11), 47);
        assert_eq!(a.extended(11, 61), Checked { lo: 10, hi: 60 });
        // A read that starts at the end of the range has no seam with it: its own range.
        assert_eq!(a.skippable(59), 0);
        assert_eq!(a.extended(59, 70), Checked { lo: 59, hi: 69 });
        // One that starts below the range is checked whole.
        assert_eq!(a.skippable(5), 0);
        // No closed candle read: nothing learnt.
        assert_eq!(a.extended(60, 60), a);
        // Ranges that do not fit the word are not kept.
        assert_eq!(Checked { lo: 0, hi: 1 << 43 }.pack(), None);
        assert_eq!(Checked { lo: 0, hi: 1 << 21 }.pack(), None);
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
