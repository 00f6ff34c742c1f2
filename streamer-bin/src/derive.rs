//! Symbol information for feeds without a terminal (synthetic, CSV): what the feed shows of
//! each symbol, the rest MT5's value for a missing property (0, false, empty).
//!
//! - `name`; `digits` and `point` (10^−digits) from the prices' precision: the most decimal
//!   places any price of the symbol's first ticks or bars shows (at most 8), and
//!   `trade_tick_size` equal to `point`;
//! - `currency_base`, `currency_margin` and `currency_profit` from a name whose first six
//!   characters are upper-case letters (`EURUSD`: EUR, EUR, USD), as FX symbols are named;
//! - `select` and `visible` true (the symbol is the streamer's), `spread_float` true (a feed's
//!   spread is whatever its bid and ask say), `chart_mode` 0 (bars from bids).
//!
//! Everything else (contract size, volumes, trade modes, swaps, …) is not in a price feed, so
//! it is 0, false or empty, as MT5 gives a property the server does not set; a bot that needs
//! it must read a terminal's record. Documented in DESIGN.md.

use shm_core::{InfoSource, InfoValue, SymbolId, SymbolInfo, Writer};

/// Observations of a symbol after which its digits are taken as known: enough to see the
/// precision of any real price series, and nothing on the hot path after that.
const LOOK_AT: u32 = 1000;

/// Powers of ten, exact as literals: `powi` is the platform's, and on some (Windows) its
/// 10⁻⁵ is not the double nearest to 0.00001.
const TENS: [f64; 9] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8];
const TENTHS: [f64; 9] = [1.0, 0.1, 0.01, 0.001, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8];

/// The most decimal places `price` shows, at most 8: the smallest `d` for which
/// `price × 10^d` is a whole number (to the double's own precision).
pub fn price_digits(price: f64) -> u32 {
    (0..8)
        .find(|&d| {
            let scaled = price * TENS[d as usize];
            (scaled - scaled.round()).abs() <= scaled.abs() * 1e-12
        })
        .unwrap_or(8)
}

/// The record of a symbol whose prices show `digits` decimal places.
pub fn derived(name: &str, digits: u32) -> SymbolInfo {
    let mut info = SymbolInfo::new(name);
    let point = TENTHS[digits.min(8) as usize];
    let mut set = |field: &str, value: InfoValue<'_>| {
        // Every field and value below is one of MT5's: a failure is a bug of this table.
        let _ = info.set(field, value);
    };
    set("digits", InfoValue::Int(i64::from(digits)));
    set("point", InfoValue::Float(point));
    set("trade_tick_size", InfoValue::Float(point));
    set("select", InfoValue::Bool(true));
    set("visible", InfoValue::Bool(true));
    set("spread_float", InfoValue::Bool(true));
    let fx = name.len() >= 6 && name.bytes().take(6).all(|b| b.is_ascii_uppercase());
    if fx {
        set("currency_base", InfoValue::Str(&name[..3]));
        set("currency_margin", InfoValue::Str(&name[..3]));
        set("currency_profit", InfoValue::Str(&name[3..6]));
    }
    info
}

/// Keeps each symbol's derived record up to date with the precision its prices show.
#[derive(Debug)]
pub struct Derive {
    names: Vec<String>,
    ids: Vec<Option<SymbolId>>,
    digits: Vec<Option<u32>>,
    seen: Vec<u32>,
}

impl Derive {
    /// For `symbols`, starting from `digits` where the feed knows them (synthetic).
    pub fn new(writer: &Writer, symbols: &[String], digits: Vec<Option<u32>>) -> Derive {
        Derive {
            ids: symbols.iter().map(|s| writer.symbol(s)).collect(),
            names: symbols.to_vec(),
            seen: vec![0; symbols.len()],
            digits,
        }
    }

    /// Writes the records known from the start.
    pub fn publish_known(&self, writer: &mut Writer) {
        for i in 0..self.names.len() {
            if let (Some(id), Some(d)) = (self.ids[i], self.digits[i]) {
                publish(writer, id, &derived(&self.names[i], d));
            }
        }
    }

    /// Looks at prices of symbol `i`; rewrites its record when they show more decimals.
    #[inline]
    pub fn observe(&mut self, writer: &mut Writer, i: usize, prices: &[f64]) {
        let Some(seen) = self.seen.get_mut(i) else {
            return;
        };
        if *seen >= LOOK_AT {
            return;
        }
        *seen += 1;
        let d = prices.iter().map(|&p| price_digits(p)).max().unwrap_or(0);
        if self.digits[i].is_none_or(|known| d > known) {
            self.digits[i] = Some(d);
            if let Some(id) = self.ids[i] {
                publish(writer, id, &derived(&self.names[i], d));
            }
        }
    }
}

/// Writes a derived record; one the writer refuses (it never should: a feed's prices show
/// at most 15 digits) is counted, as a terminal's would be.
fn publish(writer: &mut Writer, id: SymbolId, info: &SymbolInfo) {
    if writer
        .set_symbol_info(id, info, InfoSource::Derived)
        .is_err()
    {
        writer.add(shm_core::Counter::RejectedSymbolInfo, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_the_decimals_prices_show() {
        assert_eq!(price_digits(1.10234), 5);
        assert_eq!(price_digits(1.1), 1);
        assert_eq!(price_digits(90_000.0), 0);
        assert_eq!(price_digits(4012.35), 2);
        assert_eq!(price_digits(0.123456789123), 8);
        let info = derived("EURUSD", 5);
        assert_eq!(info.get("point"), Some(InfoValue::Float(0.00001)));
        assert_eq!(info.get("currency_profit"), Some(InfoValue::Str("USD")));
        assert_eq!(
            derived("XAUUSDc", 2).get("currency_base"),
            Some(InfoValue::Str("XAU"))
        );
        assert_eq!(
            derived("US30.cash", 2).get("currency_base"),
            Some(InfoValue::Str(""))
        );
    }
}
