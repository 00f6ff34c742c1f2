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
    /// 1 minute (MT5 `TIMEFRAME_M1`).
    M1 = 1,
    /// 2 minutes (MT5 `TIMEFRAME_M2`).
    M2 = 2,
    /// 3 minutes (MT5 `TIMEFRAME_M3`).
    M3 = 3,
    /// 4 minutes (MT5 `TIMEFRAME_M4`).
    M4 = 4,
    /// 5 minutes (MT5 `TIMEFRAME_M5`).
    M5 = 5,
    /// 6 minutes (MT5 `TIMEFRAME_M6`).
    M6 = 6,
    /// 10 minutes (MT5 `TIMEFRAME_M10`).
    M10 = 10,
    /// 12 minutes (MT5 `TIMEFRAME_M12`).
    M12 = 12,
    /// 15 minutes (MT5 `TIMEFRAME_M15`).
    M15 = 15,
    /// 20 minutes (MT5 `TIMEFRAME_M20`).
    M20 = 20,
    /// 30 minutes (MT5 `TIMEFRAME_M30`).
    M30 = 30,
    /// 1 hour (MT5 `TIMEFRAME_H1`).
    H1 = 16385,
    /// 2 hours (MT5 `TIMEFRAME_H2`).
    H2 = 16386,
    /// 3 hours (MT5 `TIMEFRAME_H3`).
    H3 = 16387,
    /// 4 hours (MT5 `TIMEFRAME_H4`).
    H4 = 16388,
    /// 6 hours (MT5 `TIMEFRAME_H6`).
    H6 = 16390,
    /// 8 hours (MT5 `TIMEFRAME_H8`).
    H8 = 16392,
    /// 12 hours (MT5 `TIMEFRAME_H12`).
    H12 = 16396,
    /// 1 day (MT5 `TIMEFRAME_D1`).
    D1 = 16408,
    /// 1 week, from Sunday 00:00 (MT5 `TIMEFRAME_W1`).
    W1 = 32769,
    /// 1 calendar month, from the 1st (MT5 `TIMEFRAME_MN1`).
    MN1 = 49153,
}

impl Timeframe {
    /// Every timeframe, shortest first.
    pub const ALL: [Timeframe; 21] = [
        Timeframe::M1,
        Timeframe::M2,
        Timeframe::M3,
        Timeframe::M4,
        Timeframe::M5,
        Timeframe::M6,
        Timeframe::M10,
        Timeframe::M12,
        Timeframe::M15,
        Timeframe::M20,
        Timeframe::M30,
        Timeframe::H1,
        Timeframe::H2,
        Timeframe::H3,
        Timeframe::H4,
        Timeframe::H6,
        Timeframe::H8,
        Timeframe::H12,
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
            Timeframe::M2 => "M2",
            Timeframe::M3 => "M3",
            Timeframe::M4 => "M4",
            Timeframe::M5 => "M5",
            Timeframe::M6 => "M6",
            Timeframe::M10 => "M10",
            Timeframe::M12 => "M12",
            Timeframe::M15 => "M15",
            Timeframe::M20 => "M20",
            Timeframe::M30 => "M30",
            Timeframe::H1 => "H1",
            Timeframe::H2 => "H2",
            Timeframe::H3 => "H3",
            Timeframe::H4 => "H4",
            Timeframe::H6 => "H6",
            Timeframe::H8 => "H8",
            Timeframe::H12 => "H12",
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
            Timeframe::M2 => 120,
            Timeframe::M3 => 180,
            Timeframe::M4 => 240,
            Timeframe::M5 => 300,
            Timeframe::M6 => 360,
            Timeframe::M10 => 600,
            Timeframe::M12 => 720,
            Timeframe::M15 => 900,
            Timeframe::M20 => 1200,
            Timeframe::M30 => 1800,
            Timeframe::H1 => 3600,
            Timeframe::H2 => 7200,
            Timeframe::H3 => 10800,
            Timeframe::H4 => 14400,
            Timeframe::H6 => 21600,
            Timeframe::H8 => 28800,
            Timeframe::H12 => 43200,
            Timeframe::D1 => 86400,
            Timeframe::W1 => 604800,
            Timeframe::MN1 => 2592000,
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
            "unknown timeframe {:?} (expected one of M1, M2, M3, M4, M5, M6, M10, M12, M15, M20, \
             M30, H1, H2, H3, H4, H6, H8, H12, D1, W1, MN1)",
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
        assert!("M7".parse::<Timeframe>().is_err());
        assert!("".parse::<Timeframe>().is_err());
        assert_eq!(Timeframe::from_mt5_code(7), None);
        // MT5's 21 timeframes, shortest first (the order rings are sorted in).
        assert_eq!(Timeframe::ALL.len(), 21);
        assert!(Timeframe::ALL
            .windows(2)
            .all(|w| w[0] < w[1] && w[0].nominal_seconds() < w[1].nominal_seconds()));
        // The intraday ones divide a day, so their bars start at midnight as MT5's do.
        for tf in Timeframe::ALL
            .into_iter()
            .filter(|tf| tf.nominal_seconds() < 86_400)
        {
            assert_eq!(86_400 % tf.nominal_seconds(), 0, "{tf}");
        }
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
