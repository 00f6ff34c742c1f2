//! The one candle type every source is normalised to.
//!
//! The original monitor's three fallbacks disagreed: ISO strings or epoch ints, server time or
//! UTC, newest first or oldest first. Here every source returns [`M1Bar`]s with the open time in
//! true UTC epoch seconds (the source's server-time offset already taken off), oldest first,
//! the newest possibly still forming.

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

    /// Why the bar cannot be used, if its prices are impossible: the rule every candle keeps
    /// ([`shm_core::CandleDefect::of_prices`]).
    pub fn defect(&self) -> Option<String> {
        shm_core::CandleDefect::of_prices(self.open, self.high, self.low, self.close)
            .map(|d| format!("bar at {} has {d}", self.time))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
