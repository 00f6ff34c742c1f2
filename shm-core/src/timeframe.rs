//! Timeframes and bar alignment (the calendar arithmetic lives in [`crate::time`]).

use std::fmt;
use std::str::FromStr;

use crate::time::{civil_from_days, days_from_civil};

/// A candle timeframe, numbered with MetaTrader 5's own `TIMEFRAME_*` constants.
///
/// The number is what the segment directory stores, so a reader in any language can use MT5's
/// documentation to decode it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum Timeframe {
    /// One minute.
    M1 = 1,
    /// Five minutes.
    M5 = 5,
    /// Fifteen minutes.
    M15 = 15,
    /// Thirty minutes.
    M30 = 30,
    /// One hour.
    H1 = 16385,
    /// Four hours.
    H4 = 16388,
    /// One day, starting at 00:00 server time.
    D1 = 16408,
    /// One week, starting on Sunday 00:00 server time (as MT5 does).
    W1 = 32769,
    /// One calendar month.
    MN1 = 49153,
}

impl Timeframe {
    /// Every timeframe, shortest first.
    pub const ALL: [Timeframe; 9] = [
        Timeframe::M1,
        Timeframe::M5,
        Timeframe::M15,
        Timeframe::M30,
        Timeframe::H1,
        Timeframe::H4,
        Timeframe::D1,
        Timeframe::W1,
        Timeframe::MN1,
    ];

    /// MT5's `TIMEFRAME_*` constant.
    pub const fn mt5_code(self) -> u32 {
        self as u32
    }

    /// The timeframe with MT5 constant `code`, if there is one.
    pub fn from_mt5_code(code: u32) -> Option<Timeframe> {
        Timeframe::ALL.into_iter().find(|tf| tf.mt5_code() == code)
    }

    /// The upper-case name used on the wire and in file names (`M1`, `H4`, `MN1`).
    pub const fn name(self) -> &'static str {
        match self {
            Timeframe::M1 => "M1",
            Timeframe::M5 => "M5",
            Timeframe::M15 => "M15",
            Timeframe::M30 => "M30",
            Timeframe::H1 => "H1",
            Timeframe::H4 => "H4",
            Timeframe::D1 => "D1",
            Timeframe::W1 => "W1",
            Timeframe::MN1 => "MN1",
        }
    }

    /// Nominal bar length in seconds. A month is taken as 30 days; use
    /// [`bar_start`](Self::bar_start) and [`next_bar_start`](Self::next_bar_start) for exact
    /// boundaries.
    pub const fn nominal_seconds(self) -> i64 {
        match self {
            Timeframe::M1 => 60,
            Timeframe::M5 => 300,
            Timeframe::M15 => 900,
            Timeframe::M30 => 1800,
            Timeframe::H1 => 3600,
            Timeframe::H4 => 14_400,
            Timeframe::D1 => 86_400,
            Timeframe::W1 => 604_800,
            Timeframe::MN1 => 2_592_000,
        }
    }

    /// Open time of the bar that contains `t` (epoch seconds, server time): `t` floored to the
    /// bar boundary. D1 starts at 00:00, W1 on Sunday 00:00, MN1 on the 1st at 00:00.
    pub fn bar_start(self, t: i64) -> i64 {
        match self {
            Timeframe::W1 => {
                // 1970-01-04 was the first Sunday after the epoch.
                const SUNDAY: i64 = 3 * 86_400;
                SUNDAY + (t - SUNDAY).div_euclid(604_800) * 604_800
            }
            Timeframe::MN1 => {
                let (y, m, _) = civil_from_days(t.div_euclid(86_400));
                days_from_civil(y, m, 1) * 86_400
            }
            fixed => t - t.rem_euclid(fixed.nominal_seconds()),
        }
    }

    /// Open time of the bar after the one that contains `t`.
    pub fn next_bar_start(self, t: i64) -> i64 {
        match self {
            Timeframe::MN1 => {
                let (y, m, _) = civil_from_days(t.div_euclid(86_400));
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(y, m, 1) * 86_400
            }
            fixed => fixed.bar_start(t) + fixed.nominal_seconds(),
        }
    }
}

impl fmt::Display for Timeframe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing a timeframe name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTimeframe(pub String);

impl fmt::Display for UnknownTimeframe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown timeframe {:?} (expected one of M1, M5, M15, M30, H1, H4, D1, W1, MN1)",
            self.0
        )
    }
}

impl std::error::Error for UnknownTimeframe {}

impl FromStr for Timeframe {
    type Err = UnknownTimeframe;

    /// Parses a name case-insensitively: `m1`, `H4`, `mn1`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timeframe::ALL
            .into_iter()
            .find(|tf| tf.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownTimeframe(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_case_insensitively_and_round_trip() {
        for tf in Timeframe::ALL {
            assert_eq!(tf.name().parse::<Timeframe>(), Ok(tf));
            assert_eq!(tf.name().to_lowercase().parse::<Timeframe>(), Ok(tf));
            assert_eq!(Timeframe::from_mt5_code(tf.mt5_code()), Some(tf));
        }
        assert!("M2".parse::<Timeframe>().is_err());
        assert!("".parse::<Timeframe>().is_err());
        assert_eq!(Timeframe::from_mt5_code(2), None);
    }

    #[test]
    fn mt5_constants_match_the_terminal() {
        assert_eq!(Timeframe::H1.mt5_code(), 16385);
        assert_eq!(Timeframe::H4.mt5_code(), 16388);
        assert_eq!(Timeframe::D1.mt5_code(), 16408);
        assert_eq!(Timeframe::W1.mt5_code(), 32769);
        assert_eq!(Timeframe::MN1.mt5_code(), 49153);
    }

    #[test]
    fn bars_align_on_their_boundaries() {
        // 2017-01-02 13:47:12 (a Monday).
        let t = days_from_civil(2017, 1, 2) * 86_400 + 13 * 3600 + 47 * 60 + 12;
        let day = days_from_civil(2017, 1, 2) * 86_400;
        assert_eq!(Timeframe::M1.bar_start(t), day + 13 * 3600 + 47 * 60);
        assert_eq!(Timeframe::M5.bar_start(t), day + 13 * 3600 + 45 * 60);
        assert_eq!(Timeframe::H4.bar_start(t), day + 12 * 3600);
        assert_eq!(Timeframe::D1.bar_start(t), day);
        assert_eq!(
            Timeframe::W1.bar_start(t),
            days_from_civil(2017, 1, 1) * 86_400
        );
        assert_eq!(
            Timeframe::MN1.bar_start(t),
            days_from_civil(2017, 1, 1) * 86_400
        );
        assert_eq!(
            Timeframe::MN1.next_bar_start(t),
            days_from_civil(2017, 2, 1) * 86_400
        );
        let dec = days_from_civil(2016, 12, 31) * 86_400;
        assert_eq!(
            Timeframe::MN1.next_bar_start(dec),
            days_from_civil(2017, 1, 1) * 86_400
        );
        // A time exactly on a boundary opens that bar.
        assert_eq!(Timeframe::H1.bar_start(day + 3600), day + 3600);
        assert_eq!(Timeframe::H1.next_bar_start(day + 3600), day + 7200);
        // Times before the epoch floor downwards, not towards zero.
        assert_eq!(Timeframe::M1.bar_start(-1), -60);
    }
}
