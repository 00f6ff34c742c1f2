//! Timeframes, bar alignment and the small amount of calendar arithmetic they need.

use std::fmt;
use std::str::FromStr;

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

/// Days since 1970-01-01 of the proleptic Gregorian date `y-m-d` (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `(year, month, day)` of a count of days since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Formats unix milliseconds as ISO 8601 UTC with millisecond precision:
/// `2026-11-21T16:05:00.123Z`.
///
/// ```
/// assert_eq!(shm_core::iso8601_ms(0), "1970-01-01T00:00:00.000Z");
/// assert_eq!(shm_core::iso8601_ms(1_483_315_200_500), "2017-01-02T00:00:00.500Z");
/// ```
pub fn iso8601_ms(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        unix_ms.rem_euclid(1000)
    )
}

/// The broker server-time offsets that exist: UTC-12 to UTC+14, in seconds.
pub const SERVER_OFFSET_RANGE: std::ops::RangeInclusive<i64> = -12 * 3600..=14 * 3600;

/// Why a server-time offset was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetError {
    /// A bare number small enough to be meant as hours (`2`): say `+2` or `2s`.
    Ambiguous(i64),
    /// Outside UTC-12 to UTC+14.
    OutOfRange(i64),
    /// Not an offset at all.
    Malformed(String),
}

impl fmt::Display for OffsetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OffsetError::Ambiguous(n) => write!(
                f,
                "{n:?} is ambiguous: write +{n} (or +{n:02}:00) for hours, or {n}s for seconds"
            ),
            OffsetError::OutOfRange(s) => write!(
                f,
                "{s} s is outside UTC-12:00 to UTC+14:00, where every broker's clock is"
            ),
            OffsetError::Malformed(t) => write!(
                f,
                "bad offset {t:?} (expected +HH:MM, +H, or seconds such as 7200s)"
            ),
        }
    }
}

impl std::error::Error for OffsetError {}

/// Parses a broker server-time offset (server time minus UTC): `±HH:MM` or `±H` (a sign means
/// hours), or seconds: `7200s`, or a bare number of at least 15 (so `3600` is an hour). A
/// bare number from 1 to 14 is refused as ambiguous: `2` is far more likely meant as hours.
///
/// ```
/// use shm_core::{parse_server_offset, OffsetError};
/// assert_eq!(parse_server_offset("+02:00"), Ok(7200));
/// assert_eq!(parse_server_offset("-3"), Ok(-10800));
/// assert_eq!(parse_server_offset("7200s"), Ok(7200));
/// assert_eq!(parse_server_offset("3600"), Ok(3600));
/// assert_eq!(parse_server_offset("2"), Err(OffsetError::Ambiguous(2)));
/// assert!(parse_server_offset("two").is_err());
/// ```
pub fn parse_server_offset(text: &str) -> Result<i64, OffsetError> {
    let s = text.trim();
    let malformed = || OffsetError::Malformed(s.to_owned());
    let in_range = |secs: i64| {
        if SERVER_OFFSET_RANGE.contains(&secs) {
            Ok(secs)
        } else {
            Err(OffsetError::OutOfRange(secs))
        }
    };
    if let Some(secs) = s.strip_suffix('s') {
        return in_range(secs.parse::<i64>().map_err(|_| malformed())?);
    }
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => {
            let n = s.parse::<i64>().map_err(|_| malformed())?;
            return match n {
                0 => Ok(0),
                1..=14 => Err(OffsetError::Ambiguous(n)),
                _ => in_range(n),
            };
        }
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    match (h.parse::<i64>(), m.parse::<i64>()) {
        (Ok(h), Ok(m)) if (0..100).contains(&h) && (0..60).contains(&m) => {
            in_range(sign * (h * 3600 + m * 60))
        }
        _ => Err(malformed()),
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
    fn civil_dates_round_trip() {
        for days in [
            -800_000, -1, 0, 1, 59, 365, 10_957, 17_167, 20_000, 2_000_000,
        ] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
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

    #[test]
    fn server_offsets_parse_as_hours_and_minutes_or_seconds() {
        assert_eq!(parse_server_offset("+03:00"), Ok(10_800));
        assert_eq!(parse_server_offset("-05:30"), Ok(-19_800));
        assert_eq!(parse_server_offset("+2"), Ok(7200));
        assert_eq!(parse_server_offset("3600"), Ok(3600));
        assert_eq!(parse_server_offset("7200s"), Ok(7200));
        assert_eq!(parse_server_offset("0"), Ok(0));
        assert_eq!(parse_server_offset("2"), Err(OffsetError::Ambiguous(2)));
        assert_eq!(
            parse_server_offset("+15"),
            Err(OffsetError::OutOfRange(54_000))
        );
        assert_eq!(
            parse_server_offset("-13:00"),
            Err(OffsetError::OutOfRange(-46_800))
        );
        assert!(parse_server_offset("+2:75").is_err());
        assert!(parse_server_offset("+").is_err());
    }
}
