//! What a quote may be: the price and volume ranges every tick and bar keeps, a bid not above
//! its ask, and how far one tick may move a symbol before the market must confirm it. The
//! aggregator applies these (`aggregate.rs`, feed hygiene rules).

/// The prices a candle may hold: no instrument quotes above a billion units or below a
/// billionth of one (the attack stored 1e300, 1.7e308 and 1e-300, finite and absurd).
pub const PRICE_RANGE: std::ops::RangeInclusive<f64> = 1e-9..=1e9;

/// The largest volume of a tick or a bar (`u64::MAX` was stored too).
pub const MAX_VOLUME: u64 = 1_000_000_000_000_000;

/// How far one tick may move a symbol's price from the quote it follows, as a factor either
/// way: further is a bad quote, not a market, unless the market confirms it (see
/// [`JUMP_CONFIRMATIONS`]). The largest real moves between two ticks are a few percent even
/// in a crash (the Swiss franc's 30 % of January 2015 took many ticks); a forged quote of the
/// attack round was 7 times the price.
pub const MAX_TICK_JUMP: f64 = 1.25;

/// How many ticks in a row, agreeing with each other, must quote a level past
/// [`MAX_TICK_JUMP`] before it is taken as the market's (a gap over a weekend, a crash): the
/// first of them are refused and counted, the last is accepted, and the symbol moves on. One
/// bad quote never moves a symbol.
pub const JUMP_CONFIRMATIONS: u32 = 3;

/// Whether `p` is a price a candle may hold.
pub(crate) fn good_price(p: f64) -> bool {
    PRICE_RANGE.contains(&p)
}

/// A quote a market can have: prices in range, a volume in bounds, bid not above the ask.
pub(crate) fn quote_good(bid: f64, ask: f64, volume: u64) -> bool {
    good_price(bid) && good_price(ask) && volume <= MAX_VOLUME && bid <= ask
}

/// A symbol's run of ticks past [`MAX_TICK_JUMP`] that agree with each other: their bid, and
/// how many.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct JumpGuard(Option<(f64, u32)>);

impl JumpGuard {
    /// Whether `bid` is within [`MAX_TICK_JUMP`] of `last` (the symbol's last price; any bid
    /// is, before there is one), or the [`JUMP_CONFIRMATIONS`]th tick in a row to quote a new
    /// level (each within the bound of the one before); counts the run.
    pub(crate) fn confirmed(&mut self, last: Option<f64>, bid: f64) -> bool {
        let near = |a: f64, b: f64| a <= b * MAX_TICK_JUMP && a * MAX_TICK_JUMP >= b;
        let Some(last) = last else {
            return true;
        };
        if near(bid, last) {
            self.0 = None;
            return true;
        }
        let run = match self.0 {
            Some((level, n)) if near(bid, level) => n + 1,
            _ => 1,
        };
        if run >= JUMP_CONFIRMATIONS {
            self.0 = None;
            return true;
        }
        self.0 = Some((bid, run));
        false
    }
}
