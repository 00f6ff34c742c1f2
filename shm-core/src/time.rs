//! Calendar and clock helpers shared by the writer, the readers and the tools: civil dates,
//! ISO 8601 in and out, the wall clock, and broker server-time offsets. Proleptic Gregorian,
//! UTC, no leap seconds: what MT5 and unix time use.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time in unix nanoseconds (`CLOCK_REALTIME`; 0 before 1970).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The boot-time clock in ns: monotonic, counting suspend, and the same for every process of
/// the host (one kernel clock, `CLOCK_BOOTTIME`), so a reader can compare the writer's reading
/// with its own whatever the wall clock does. `None` where the platform has no such clock.
#[cfg(target_os = "linux")]
pub(crate) fn boot_ns() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec that outlives the call; clock_gettime only
    // writes it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// See the Linux version: elsewhere the heartbeat's age is judged by the wall clock.
#[cfg(not(target_os = "linux"))]
pub(crate) fn boot_ns() -> Option<u64> {
    None
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
/// assert_eq!(shm_core::time::iso8601_ms(0), "1970-01-01T00:00:00.000Z");
/// assert_eq!(shm_core::time::iso8601_ms(1_483_315_200_500), "2017-01-02T00:00:00.500Z");
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

/// `UTC+02:00`, `UTC-03:30`: an offset as `inspect` and messages show it. An offset outside
/// [`SERVER_OFFSET_RANGE`] (a damaged or forged header) is shown as its number of seconds,
/// never wrapped into an impossible clock.
///
/// ```
/// assert_eq!(shm_core::format_server_offset(7200), "UTC+02:00");
/// assert_eq!(shm_core::format_server_offset(-12_600), "UTC-03:30");
/// assert_eq!(shm_core::format_server_offset(i64::MAX), "an impossible offset of 9223372036854775807 s");
/// ```
pub fn format_server_offset(seconds: i64) -> String {
    if !SERVER_OFFSET_RANGE.contains(&seconds) {
        return format!("an impossible offset of {seconds} s");
    }
    let sign = if seconds < 0 { '-' } else { '+' };
    let a = seconds.abs();
    format!("UTC{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
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
/// use shm_core::time::{parse_server_offset, OffsetError};
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

/// A time stamp a source sent that is neither epoch seconds nor ISO 8601.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadTime(pub String);

impl fmt::Display for BadTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "time {:?} is neither epoch seconds nor ISO 8601 (YYYY-MM-DDTHH:MM:SS)",
            self.0
        )
    }
}

impl std::error::Error for BadTime {}

/// Epoch seconds of an ISO 8601 date-time such as `2024-03-04T10:00:00`,
/// `2024-03-04 10:00:00.250Z` or `2024-03-04T12:00:00+02:00`. A stamp without a zone is taken
/// as written (the original API wrote server time without one); a zone is applied.
///
/// ```
/// use shm_core::time::parse_iso8601;
/// assert_eq!(parse_iso8601("1970-01-02T00:00:00"), Ok(86_400));
/// assert_eq!(parse_iso8601("1970-01-01T02:00:00+02:00"), Ok(0));
/// assert!(parse_iso8601("yesterday").is_err());
/// ```
pub fn parse_iso8601(s: &str) -> Result<i64, BadTime> {
    let bad = || BadTime(s.chars().take(40).collect());
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b' ') {
        return Err(bad());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, BadTime> {
        let part = &s[r];
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        rest = &frac[digits..];
    }
    let zone = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return Err(bad()),
            };
            let z = &rest[1..];
            if z.is_empty() || !z.bytes().all(|c| c.is_ascii_digit() || c == b':') {
                return Err(bad());
            }
            let (zh, zm) = z.split_once(':').unwrap_or((z, "00"));
            match (zh.parse::<i64>(), zm.parse::<i64>()) {
                (Ok(zh), Ok(zm)) if zh <= 14 && zm < 60 => sign * (zh * 3600 + zm * 60),
                _ => return Err(bad()),
            }
        }
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    Ok(days * 86_400 + h * 3600 + mi * 60 + sec - zone)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    #[test]
    fn iso_stamps_with_and_without_zones_and_fractions() {
        let base = days_from_civil(2024, 3, 4) * 86_400 + 10 * 3600;
        assert_eq!(parse_iso8601("2024-03-04T10:00:00"), Ok(base));
        assert_eq!(parse_iso8601("2024-03-04 10:00:00"), Ok(base));
        assert_eq!(parse_iso8601("2024-03-04T10:00:00Z"), Ok(base));
        assert_eq!(parse_iso8601("2024-03-04T10:00:00.123Z"), Ok(base));
        assert_eq!(parse_iso8601("2024-03-04T12:30:00+02:30"), Ok(base));
        assert_eq!(parse_iso8601("2024-03-04T07:00:00-03:00"), Ok(base));
        for bad in [
            "",
            "2024-03-04",
            "2024-13-04T10:00:00",
            "2024-03-04T25:00:00",
            "2024-03-04T10:00:00.",
            "2024-03-04T10:00:00+2x",
            "2024-03-04T10:00:00+-1",
            "2024/03/04T10:00:00",
            "२०२४-03-04T10:00:00",
        ] {
            assert!(parse_iso8601(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
