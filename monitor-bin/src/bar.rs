//! The one candle type every source is normalised to: shm-core's [`Candle`].
//!
//! The original monitor's three fallbacks disagreed: ISO strings or epoch ints, server time or
//! UTC, newest first or oldest first. Here every source returns candles oldest first, the
//! newest possibly still forming, with their open times in the source's server time, as MT5
//! and the segment stamp them, and the source's server-time offset beside them
//! (`Fetched::offset_s`): [`utc_time`] is a bar's time in UTC, for ages and reports.

pub use shm_core::Candle;

/// A bar's open time in true UTC epoch seconds: its server time less the source's offset
/// (server time minus UTC).
pub fn utc_time(bar: &Candle, offset_s: i64) -> i64 {
    bar.time - offset_s
}

/// Why the bar cannot be used, if its prices are impossible: the rule every candle keeps
/// ([`shm_core::CandleDefect::of_prices`]).
pub fn defect(bar: &Candle) -> Option<String> {
    shm_core::CandleDefect::of_prices(bar.open, bar.high, bar.low, bar.close)
        .map(|d| format!("bar at {} has {d}", bar.time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_bars_are_named() {
        let good = Candle {
            time: 60,
            open: 1.0,
            high: 1.5,
            low: 0.5,
            close: 1.2,
            tick_volume: 1,
            ..Candle::default()
        };
        assert_eq!(defect(&good), None);
        assert!(defect(&Candle { high: 1.1, ..good }).is_some());
        assert!(defect(&Candle { low: 1.1, ..good }).is_some());
        assert!(defect(&Candle {
            close: f64::NAN,
            ..good
        })
        .is_some());
        assert!(defect(&Candle { open: 0.0, ..good }).is_some());
        assert_eq!(utc_time(&good, 3600), 60 - 3600);
    }
}
