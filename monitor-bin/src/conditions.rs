//! The micro-scalp conditions, computed from one symbol's M1 bars (oldest first, the newest
//! possibly forming, as every source returns them).
//!
//! Definitions, so that a trader can check every figure by hand:
//!
//! - **typical price** of a bar: (high + low + close) / 3.
//! - **VWAP**: Σ(typical × tick volume) / Σ tick volume over all bars given (the monitor asks
//!   for 50). Bars with no volume weigh nothing. `None` if no bar has volume.
//! - **σ**: the volume-weighted standard deviation of the typical price over the last 20 bars,
//!   around those bars' own VWAP: √(Σ v·(tp − vwap₂₀)² / Σ v).
//! - **distance**: (last close − VWAP) / σ. `None` when σ is 0.
//! - **true range** of a bar: max(high − low, |high − previous close|, |low − previous close|);
//!   the first bar given has no previous close and uses high − low.
//! - **ATR(1)**: the last bar's true range. **ATR(14)**: the mean true range of the last 14
//!   bars (a simple mean; 50 bars are too few for Wilder's smoothing to settle).
//! - **compression**: ATR(1) / ATR(14); below 1 the market is quieter than usual.
//! - **volume ratio**: the last bar's tick volume ÷ the mean tick volume of up to 20 bars
//!   before it; a **spike** at 2× or more.
//! - **spread**: the last bar's spread, in points.
//!
//! The last bar is the forming one when the source has it, as MT5's position 0: a spike or a
//! range that is already large while the bar forms can only grow.
//!
//! ```
//! use monitor_bin::{bar::Candle, conditions::Conditions};
//! let bars: Vec<Candle> = (0..30)
//!     .map(|i| Candle { time: i * 60, open: 100.0, high: 101.0, low: 99.0, close: 100.0,
//!                    tick_volume: 10, spread: 2, real_volume: 0, forming: false, repaired: false })
//!     .collect();
//! let c = Conditions::compute(&bars).unwrap();
//! assert_eq!(c.vwap, Some(100.0));
//! assert_eq!(c.atr14, 2.0);
//! assert_eq!(c.volume_ratio, Some(1.0));
//! assert!(!c.volume_spike);
//! ```

use crate::bar::Candle;

/// Bars in the σ window.
pub const SIGMA_BARS: usize = 20;
/// Bars in the ATR window.
pub const ATR_BARS: usize = 14;
/// Bars before the last one that the volume ratio compares against.
pub const VOLUME_BARS: usize = 20;
/// Volume ratio at which a spike is flagged.
pub const SPIKE_RATIO: f64 = 2.0;

/// The conditions of one symbol at one cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conditions {
    /// Volume-weighted average of the typical price over all bars; `None` without volume.
    pub vwap: Option<f64>,
    /// Volume-weighted σ of the typical price over the last 20 bars; `None` without volume.
    pub sigma: Option<f64>,
    /// Last close minus VWAP, in σ; `None` if either is missing or σ is 0.
    pub distance_sigma: Option<f64>,
    /// True range of the last bar.
    pub atr1: f64,
    /// Mean true range of the last 14 bars (fewer if fewer are given).
    pub atr14: f64,
    /// `atr1 / atr14`; `None` when ATR(14) is 0.
    pub compression: Option<f64>,
    /// Tick volume of the last bar.
    pub volume: u64,
    /// Mean tick volume of the bars before the last (up to 20); `None` if there are none.
    pub volume_mean: Option<f64>,
    /// `volume / volume_mean`; `None` when the mean is 0 or missing.
    pub volume_ratio: Option<f64>,
    /// `volume_ratio >= 2`.
    pub volume_spike: bool,
    /// Spread of the last bar, points.
    pub spread: i32,
    /// Last close.
    pub last_close: f64,
}

impl Conditions {
    /// The conditions of `bars` (oldest first); `None` for no bars.
    pub fn compute(bars: &[Candle]) -> Option<Conditions> {
        let last = bars.last()?;
        let vwap = vwap_of(bars);
        let recent = &bars[bars.len().saturating_sub(SIGMA_BARS)..];
        let sigma = vwap_of(recent).map(|mean| {
            let (mut num, mut den) = (0.0, 0.0);
            for b in recent {
                let v = b.tick_volume as f64;
                num += v * (typical(b) - mean).powi(2);
                den += v;
            }
            (num / den).sqrt()
        });
        let distance_sigma = match (vwap, sigma) {
            (Some(m), Some(s)) if s > 0.0 => Some((last.close - m) / s),
            _ => None,
        };
        let trs: Vec<f64> = bars
            .iter()
            .enumerate()
            .map(|(i, b)| true_range(b, i.checked_sub(1).map(|p| bars[p].close)))
            .collect();
        let atr1 = trs[trs.len() - 1];
        let window = &trs[trs.len().saturating_sub(ATR_BARS)..];
        let atr14 = window.iter().sum::<f64>() / window.len() as f64;
        let compression = (atr14 > 0.0).then(|| atr1 / atr14);
        let before = &bars[..bars.len() - 1];
        let before = &before[before.len().saturating_sub(VOLUME_BARS)..];
        let volume_mean = (!before.is_empty()).then(|| {
            before.iter().map(|b| b.tick_volume as f64).sum::<f64>() / before.len() as f64
        });
        let volume_ratio = volume_mean
            .filter(|m| *m > 0.0)
            .map(|m| last.tick_volume as f64 / m);
        Some(Conditions {
            vwap,
            sigma,
            distance_sigma,
            atr1,
            atr14,
            compression,
            volume: last.tick_volume,
            volume_mean,
            volume_ratio,
            volume_spike: volume_ratio.is_some_and(|r| r >= SPIKE_RATIO),
            spread: last.spread,
            last_close: last.close,
        })
    }
}

fn typical(b: &Candle) -> f64 {
    (b.high + b.low + b.close) / 3.0
}

/// VWAP of `bars`, skipping bars without volume.
fn vwap_of(bars: &[Candle]) -> Option<f64> {
    let (mut num, mut den) = (0.0, 0.0);
    for b in bars.iter().filter(|b| b.tick_volume > 0) {
        let v = b.tick_volume as f64;
        num += typical(b) * v;
        den += v;
    }
    (den > 0.0).then(|| num / den)
}

fn true_range(b: &Candle, prev_close: Option<f64>) -> f64 {
    let hl = b.high - b.low;
    match prev_close {
        Some(pc) => hl.max((b.high - pc).abs()).max((b.low - pc).abs()),
        None => hl,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(i: i64, high: f64, low: f64, close: f64, volume: u64) -> Candle {
        Candle {
            time: i * 60,
            open: close,
            high,
            low,
            close,
            tick_volume: volume,
            spread: i as i32,
            real_volume: 0,
            forming: false,
            repaired: false,
        }
    }

    /// Three bars, every figure worked out by hand:
    ///
    /// | bar | H | L | C | v | typical | TR |
    /// |---|---|---|---|---|---|---|
    /// | 0 | 12 | 9 | 9 | 1 | 10 | 3 (H−L) |
    /// | 1 | 14 | 11 | 14 | 3 | 13 | max(3, 5, 2) = 5 |
    /// | 2 | 15 | 12 | 12 | 2 | 13 | max(3, 1, 2) = 3 |
    ///
    /// VWAP = (10·1 + 13·3 + 13·2) / 6 = 75 / 6 = 12.5.
    /// σ² = (1·2.5² + 3·0.5² + 2·0.5²) / 6 = (6.25 + 0.75 + 0.5) / 6 = 1.25, σ = √1.25.
    /// distance = (12 − 12.5) / √1.25 = −0.4472…
    /// ATR(1) = 3, ATR(14) = (3 + 5 + 3) / 3 = 11/3, compression = 9/11.
    /// volume ratio = 2 / mean(1, 3) = 1, no spike. Spread = 2 (the last bar's).
    #[test]
    fn three_bars_match_the_hand_computed_values() {
        let bars = [
            bar(0, 12.0, 9.0, 9.0, 1),
            bar(1, 14.0, 11.0, 14.0, 3),
            bar(2, 15.0, 12.0, 12.0, 2),
        ];
        let c = Conditions::compute(&bars).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(c.vwap.unwrap(), 12.5));
        assert!(close(c.sigma.unwrap(), 1.25f64.sqrt()));
        assert!(close(c.distance_sigma.unwrap(), -0.5 / 1.25f64.sqrt()));
        assert!(close(c.atr1, 3.0));
        assert!(close(c.atr14, 11.0 / 3.0));
        assert!(close(c.compression.unwrap(), 9.0 / 11.0));
        assert_eq!(c.volume, 2);
        assert!(close(c.volume_mean.unwrap(), 2.0));
        assert!(close(c.volume_ratio.unwrap(), 1.0));
        assert!(!c.volume_spike);
        assert_eq!(c.spread, 2);
        assert_eq!(c.last_close, 12.0);
    }

    /// 30 bars: the first 8 have volume 100 (outside every window), the next 21 have volume
    /// 10 and range 2, the last has volume 20 and range 1 with a gap from the close before.
    /// The volume mean covers exactly the 20 bars before the last, so the 100s must not count;
    /// ATR(14) covers exactly the last 14 true ranges.
    #[test]
    fn windows_take_exactly_their_bars() {
        let mut bars: Vec<Candle> = (0..29)
            .map(|i| {
                let v = if i < 8 { 100 } else { 10 };
                bar(i, 101.0, 99.0, 100.0, v)
            })
            .collect();
        // Previous close 100; this bar's range is 103..104, so TR = |104 − 100| = 4.
        bars.push(bar(29, 104.0, 103.0, 103.5, 20));
        let c = Conditions::compute(&bars).unwrap();
        assert_eq!(c.volume_mean, Some(10.0));
        assert_eq!(c.volume_ratio, Some(2.0));
        assert!(c.volume_spike, "2x is a spike");
        assert_eq!(c.atr1, 4.0);
        // 13 bars of TR 2 and the last of TR 4.
        assert!((c.atr14 - (13.0 * 2.0 + 4.0) / 14.0).abs() < 1e-12);
        // VWAP over all 30: 8·100 + 21·10 bars at typical 100, then 20 at (104+103+103.5)/3.
        let tp_last = (104.0 + 103.0 + 103.5) / 3.0;
        let want = (1010.0 * 100.0 + 20.0 * tp_last) / 1030.0;
        assert!((c.vwap.unwrap() - want).abs() < 1e-9);
    }

    #[test]
    fn zero_volume_and_flat_markets_give_none_not_nan() {
        let flat: Vec<Candle> = (0..25).map(|i| bar(i, 100.0, 100.0, 100.0, 0)).collect();
        let c = Conditions::compute(&flat).unwrap();
        assert_eq!(c.vwap, None);
        assert_eq!(c.sigma, None);
        assert_eq!(c.distance_sigma, None);
        assert_eq!(c.atr14, 0.0);
        assert_eq!(c.compression, None);
        assert_eq!(c.volume_ratio, None);
        assert!(!c.volume_spike);
        let one = [bar(0, 101.0, 99.0, 100.0, 5)];
        let c = Conditions::compute(&one).unwrap();
        assert_eq!(c.volume_mean, None, "no bars before the only one");
        assert_eq!(c.sigma, Some(0.0));
        assert_eq!(c.distance_sigma, None, "σ = 0 gives no distance");
        assert!(Conditions::compute(&[]).is_none());
    }
}
