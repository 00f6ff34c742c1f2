//! Timeframes a segment has no ring for, built on read from a ring whose bars tile them: H2
//! from H1, M10 from M5, W1 and MN1 from D1. MT5's own rules for a bar of a longer timeframe:
//! the first open, the last close, the highest high and lowest low, the volumes summed, the
//! smallest spread, and the open time aligned as MT5 aligns it (`Timeframe::bar_start`).

use super::{Reader, RingReader};
use crate::candle::Candle;
use crate::error::ReadError;
use crate::Timeframe;

/// Where the candles of one (symbol, timeframe) come from.
#[derive(Debug, Clone, Copy)]
pub enum Timeline<'a> {
    /// The segment holds a ring of that timeframe.
    Ring(RingReader<'a>),
    /// Built on read from `source`, a ring of a shorter timeframe that tiles it.
    Built {
        /// The ring read.
        source: RingReader<'a>,
        /// The timeframe built.
        timeframe: Timeframe,
    },
}

/// Whether bars of `short` tile bars of `long` exactly: each bar of `short` lies inside one bar
/// of `long`. Intraday timeframes all divide a day and start at midnight, so one tiles another
/// when its length divides the other's; a day, and anything shorter, tiles weeks and months.
pub fn tiles(short: Timeframe, long: Timeframe) -> bool {
    let (s, l) = (short.nominal_seconds(), long.nominal_seconds());
    if short == long || s > 86_400 {
        return false;
    }
    match long {
        Timeframe::W1 | Timeframe::MN1 => true,
        _ => l % s == 0,
    }
}

/// How many bars of `short` one bar of `long` holds at most.
fn ratio(short: Timeframe, long: Timeframe) -> usize {
    let l = match long {
        Timeframe::MN1 => 31 * 86_400,
        other => other.nominal_seconds(),
    };
    (l / short.nominal_seconds()).max(1) as usize
}

impl Reader {
    /// The candles of `symbol` at `timeframe`: its ring, or else built on read from the longest
    /// of the symbol's rings that tiles it; `None` if neither exists.
    pub fn timeline(&self, symbol: &str, timeframe: Timeframe) -> Option<Timeline<'_>> {
        if let Some(ring) = self.ring(symbol, timeframe) {
            return Some(Timeline::Ring(ring));
        }
        self.rings()
            .filter(|r| r.symbol() == symbol && tiles(r.timeframe(), timeframe))
            .max_by_key(|r| r.timeframe().nominal_seconds())
            .map(|source| Timeline::Built { source, timeframe })
    }
}

impl Timeline<'_> {
    /// The timeframe of the candles.
    pub fn timeframe(&self) -> Timeframe {
        match self {
            Timeline::Ring(r) => r.timeframe(),
            Timeline::Built { timeframe, .. } => *timeframe,
        }
    }

    /// Candles it can give at most: a ring's capacity and its forming candle; for one built,
    /// what its source's candles can make.
    pub fn max_candles(&self) -> usize {
        match self {
            Timeline::Ring(r) => r.capacity() as usize + 1,
            Timeline::Built { source, timeframe } => {
                (source.capacity() as usize + 1).div_ceil(ratio(source.timeframe(), *timeframe)) + 1
            }
        }
    }

    /// Fills `out` with the newest `n` candles, oldest first, the newest the forming one when
    /// there is one, as [`RingReader::read_last`] does. A built timeline reads its source and
    /// groups it; its newest candle is forming (as the writer keeps a longer timeframe's), and
    /// its oldest is left out when the source may not hold the start of it (a ring that has
    /// lapped), so every candle given is whole.
    pub fn read_last(&self, n: usize, out: &mut Vec<Candle>) -> Result<(), ReadError> {
        match self {
            Timeline::Ring(r) => r.read_last(n, out),
            Timeline::Built { source, timeframe } => read_built(source, *timeframe, n, out),
        }
    }
}

fn read_built(
    source: &RingReader<'_>,
    timeframe: Timeframe,
    n: usize,
    out: &mut Vec<Candle>,
) -> Result<(), ReadError> {
    out.clear();
    if n == 0 {
        return Ok(());
    }
    let per = ratio(source.timeframe(), timeframe);
    let most = source.capacity() as usize + 1;
    let mut want = n.saturating_mul(per).saturating_add(per).min(most);
    let mut read = Vec::with_capacity(want);
    loop {
        source.read_last(want, &mut read)?;
        // Everything the ring has ever held is in `read` when it has not lapped and `read`
        // took it all: then the oldest group is whole, whatever it starts with.
        let closed_read = read.iter().filter(|c| !c.forming).count() as u64;
        let all_history = source.stats()?.closed_total <= closed_read;
        group_bars(&read, timeframe, all_history, out);
        // Gaps (weekends, holidays) make fewer groups than the ratio promises: read further
        // back while the ring holds more.
        if out.len() >= n || want >= most || read.len() < want {
            break;
        }
        want = want.saturating_mul(2).min(most);
    }
    if out.len() > n {
        out.drain(..out.len() - n);
    }
    Ok(())
}

/// Groups `candles` (oldest first, of a timeframe that tiles `timeframe`) into bars of
/// `timeframe`, into `out`, by MT5's rules (see the module), the newest marked forming. The
/// first group is dropped unless `all_history` or it starts at its bar's open (it may lack its
/// start). For readers that build from more than a ring holds (the history store's bars).
pub fn group_bars(
    candles: &[Candle],
    timeframe: Timeframe,
    all_history: bool,
    out: &mut Vec<Candle>,
) {
    out.clear();
    for c in candles {
        let start = timeframe.bar_start(c.time);
        match out.last_mut() {
            Some(b) if b.time == start => {
                b.high = b.high.max(c.high);
                b.low = b.low.min(c.low);
                b.close = c.close;
                b.tick_volume = b.tick_volume.saturating_add(c.tick_volume);
                b.real_volume = b.real_volume.saturating_add(c.real_volume);
                b.spread = b.spread.min(c.spread);
            }
            _ => out.push(Candle {
                time: start,
                repaired: false,
                ..*c
            }),
        }
    }
    // The newest bar is forming, as the writer keeps it: a bar of a longer timeframe closes
    // only when a bar of the next period arrives, and then that one is the newest.
    if let Some(newest) = out.last_mut() {
        newest.forming = true;
    }
    let whole_first = all_history
        || candles
            .first()
            .is_some_and(|c| c.time == timeframe.bar_start(c.time));
    if !whole_first && !out.is_empty() {
        out.remove(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_timeframes_tile_which() {
        use Timeframe::*;
        assert!(tiles(H1, H2) && tiles(M5, M10) && tiles(H4, H12) && tiles(M10, M20));
        assert!(tiles(D1, W1) && tiles(D1, MN1) && tiles(H1, W1) && tiles(H12, D1));
        assert!(!tiles(M3, M10) && !tiles(H2, H3) && !tiles(W1, MN1) && !tiles(H1, H1));
        assert!(!tiles(H4, H6) && !tiles(M4, M6));
    }
}
