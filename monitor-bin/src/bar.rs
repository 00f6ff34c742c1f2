//! The one candle type every source is normalised to.
//!
//! The original monitor's three fallbacks disagreed: ISO strings or epoch ints, server time or
//! UTC, newest first or oldest first. Here every source returns [`M1Bar`]s with the open time in
//! true UTC epoch seconds (the source's server-time offset already taken off), oldest first,
//! the newest possibly still forming.

use std::fmt;

/// One M1 bar, as every source delivers it to the monitor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct M1Bar {
    /// Open time, UTC epoch seconds (broker server time minus the server-time offset).
    pub time: i64,
    /// First price.
    pub open: f64,
    /// Highest price.
    pub high: f64,
    /// Lowest price.
    pub low: f64,
    /// Last price.
    pub close: f64,
    /// Ticks in the bar (MT5 `tick_volume`), the volume the conditions weigh by.
    pub tick_volume: u64,
    /// Spread in points (MT5 `spread`).
    pub spread: i32,
    /// Exchange volume (MT5 `real_volume`).
    pub real_volume: u64,
    /// `false` for the bar still forming.
    pub complete: bool,
}

impl M1Bar {
    /// A segment candle, with `offset_s` (server time minus UTC) taken off its time.
    pub fn from_segment(c: &shm_core::Candle, offset_s: i64) -> M1Bar {
        M1Bar {
            time: c.time - offset_s,
            open: c.open,
            high: c.high,
            low: c.low,
            close: c.close,
            tick_volume: c.tick_volume,
            spread: c.spread,
            real_volume: c.real_volume,
            complete: !c.forming,
        }
    }

    /// Why the bar cannot be used, if its values are impossible (a non-finite or non-positive
    /// price, or a high below another price).
    pub fn defect(&self) -> Option<String> {
        let prices = [self.open, self.high, self.low, self.close];
        if prices.iter().any(|p| !p.is_finite() || *p <= 0.0) {
            return Some(format!(
                "bar at {} has a non-positive or non-finite price",
                self.time
            ));
        }
        let top = self.open.max(self.close).max(self.low);
        let bottom = self.open.min(self.close).min(self.high);
        if self.high < top || self.low > bottom {
            return Some(format!(
                "bar at {} has high/low outside open/close",
                self.time
            ));
        }
        None
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
/// use monitor_bin::bar::parse_iso8601;
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
    let days = shm_core::days_from_civil(y, mo as u32, d as u32);
    Ok(days * 86_400 + h * 3600 + mi * 60 + sec - zone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_stamps_with_and_without_zones_and_fractions() {
        let base = shm_core::days_from_civil(2024, 3, 4) * 86_400 + 10 * 3600;
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

    #[test]
    fn impossible_bars_are_named() {
        let good = M1Bar {
            time: 60,
            open: 1.0,
            high: 1.5,
            low: 0.5,
            close: 1.2,
            tick_volume: 1,
            spread: 0,
            real_volume: 0,
            complete: true,
        };
        assert_eq!(good.defect(), None);
        assert!(M1Bar { high: 1.1, ..good }.defect().is_some());
        assert!(M1Bar { low: 1.1, ..good }.defect().is_some());
        assert!(M1Bar {
            close: f64::NAN,
            ..good
        }
        .defect()
        .is_some());
        assert!(M1Bar { open: 0.0, ..good }.defect().is_some());
    }
}
