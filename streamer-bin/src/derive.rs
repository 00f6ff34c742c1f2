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
//! - the fields a bot sizes a lot with, which must never be 0 (issue 39: a bot divides by
//!   them), at the common retail values of the symbol's class, as the major brokers list them:
//!   FX (six upper-case letters) a contract of 100,000; gold (`XAU…`) 100 oz, silver (`XAG…`)
//!   5,000 oz, platinum and palladium (`XPT…`, `XPD…`) 100 oz; crypto (`BTC…`, `ETH…`, …) and
//!   anything else 1; volumes 0.01 to 100 by 0.01 for all; `trade_tick_value` (and its profit
//!   and loss twins) the tick size times the contract, which is exact for an account in the
//!   profit currency.
//!
//! Everything else (trade modes, swaps, margins, …) is not in a price feed, so it is 0, false
//! or empty, as MT5 gives a property the server does not set; a bot that needs it must read a
//! terminal's record. `inspect` and `/streamer/symbols` say such a record is `derived`.
//! Documented in DESIGN.md.

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

/// Crypto currencies' codes, as brokers prefix their symbols (`BTCUSD`, `ETHUSDT`, …).
const CRYPTO: [&str; 12] = [
    "BTC", "ETH", "LTC", "XRP", "BCH", "ADA", "DOT", "SOL", "DOGE", "BNB", "XLM", "LINK",
];

/// The contract size of one lot of `name`'s class (see the module's documentation).
pub fn contract_size(name: &str) -> f64 {
    let upper = name.to_ascii_uppercase();
    if upper.starts_with("XAU") || upper.starts_with("XPT") || upper.starts_with("XPD") {
        100.0
    } else if upper.starts_with("XAG") {
        5_000.0
    } else if CRYPTO.iter().any(|c| upper.starts_with(c)) {
        1.0
    } else if name.len() >= 6 && name.bytes().take(6).all(|b| b.is_ascii_uppercase()) {
        100_000.0
    } else {
        1.0
    }
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
    let contract = contract_size(name);
    set("trade_contract_size", InfoValue::Float(contract));
    for field in [
        "trade_tick_value",
        "trade_tick_value_profit",
        "trade_tick_value_loss",
    ] {
        set(field, InfoValue::Float(point * contract));
    }
    set("volume_min", InfoValue::Float(0.01));
    set("volume_max", InfoValue::Float(100.0));
    set("volume_step", InfoValue::Float(0.01));
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
    /// Records given whole (`--symbol-info`): published as they are, never derived over.
    exported: Vec<Option<SymbolInfo>>,
    ids: Vec<Option<SymbolId>>,
    digits: Vec<Option<u32>>,
    seen: Vec<u32>,
}

impl Derive {
    /// For `symbols`, starting from `digits` where the feed knows them (synthetic), and with
    /// the `exported` records of those that have one.
    pub fn new(
        writer: &Writer,
        symbols: &[String],
        digits: Vec<Option<u32>>,
        mut exported: std::collections::HashMap<String, SymbolInfo>,
    ) -> Derive {
        Derive {
            exported: symbols.iter().map(|s| exported.remove(s)).collect(),
            ids: symbols.iter().map(|s| writer.symbol(s)).collect(),
            names: symbols.to_vec(),
            seen: vec![0; symbols.len()],
            digits,
        }
    }

    /// Writes the records known from the start.
    pub fn publish_known(&self, writer: &mut Writer) {
        for i in 0..self.names.len() {
            match (self.ids[i], &self.exported[i], self.digits[i]) {
                (Some(id), Some(info), _) => publish(writer, id, info, InfoSource::Exported),
                (Some(id), None, Some(d)) => {
                    publish(writer, id, &derived(&self.names[i], d), InfoSource::Derived);
                }
                _ => {}
            }
        }
    }

    /// Looks at prices of symbol `i`; rewrites its record when they show more decimals.
    #[inline]
    pub fn observe(&mut self, writer: &mut Writer, i: usize, prices: &[f64]) {
        let Some(seen) = self.seen.get_mut(i) else {
            return;
        };
        if *seen >= LOOK_AT || self.exported[i].is_some() {
            return;
        }
        *seen += 1;
        let d = prices.iter().map(|&p| price_digits(p)).max().unwrap_or(0);
        if self.digits[i].is_none_or(|known| d > known) {
            self.digits[i] = Some(d);
            if let Some(id) = self.ids[i] {
                publish(writer, id, &derived(&self.names[i], d), InfoSource::Derived);
            }
        }
    }
}

/// Writes a derived or exported record; one the writer refuses (it never should: a feed's
/// prices show at most 15 digits, and an export was checked when loaded) is counted, as a
/// terminal's would be.
fn publish(writer: &mut Writer, id: SymbolId, info: &SymbolInfo, source: InfoSource) {
    if writer.set_symbol_info(id, info, source).is_err() {
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

    #[test]
    fn no_field_a_bot_sizes_a_lot_with_is_zero() {
        for (name, digits, contract) in [
            ("EURUSD", 5, 100_000.0),
            ("USDJPY", 3, 100_000.0),
            ("XAUUSD", 2, 100.0),
            ("XAGUSD", 3, 5_000.0),
            ("BTCUSDc", 2, 1.0),
            ("ETHUSD", 2, 1.0),
            ("US30.cash", 1, 1.0),
            ("de40", 1, 1.0),
        ] {
            let info = derived(name, digits);
            let float = |f: &str| match info.get(f) {
                Some(InfoValue::Float(v)) => v,
                other => panic!("{name} {f}: {other:?}"),
            };
            assert_eq!(float("trade_contract_size"), contract, "{name}");
            for f in [
                "volume_min",
                "volume_max",
                "volume_step",
                "trade_tick_value",
                "trade_tick_value_profit",
                "trade_tick_value_loss",
                "trade_tick_size",
                "point",
            ] {
                assert!(float(f) > 0.0, "{name} {f}");
            }
            assert!(float("volume_min") <= float("volume_max"));
        }
        // EURUSD: a pip (10 points) of one lot is worth 10 units of USD.
        let eurusd = derived("EURUSD", 5);
        assert_eq!(eurusd.get("trade_tick_value"), Some(InfoValue::Float(1.0)));
    }
}
