//! Symbol information (MT5's `symbol_info()`) and the terminal's identity: the values, and
//! their fixed records (docs/LAYOUT.md, "Symbol information" and "Terminal record").
//!
//! The field list is the MetaTrader5 Python package's `SymbolInfo` named tuple, in its order:
//! 31 integers and booleans, then 52 doubles, then 13 strings. MetaQuotes documents the
//! properties under `SymbolInfoInteger`/`SymbolInfoDouble`/`SymbolInfoString` ("Symbol
//! Properties"); the Python package returns all of them in one tuple ("symbol_info").

use std::fmt;

/// How a field of [`SymbolInfo`] is stored and handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// An integer (`int` in Python), stored as an `i64`.
    Int,
    /// A boolean, stored as 0 or 1.
    Bool,
    /// A double, stored as its IEEE 754 bits.
    Float,
    /// A string of at most [`INFO_STRING_MAX`] bytes of UTF-8.
    Str,
}

use FieldKind::{Bool as B, Float as F, Int as I, Str as S};

/// Every field of MT5's `SymbolInfo`, in the package's order.
pub const SYMBOL_INFO_FIELDS: [(&str, FieldKind); 96] = [
    ("custom", B),
    ("chart_mode", I),
    ("select", B),
    ("visible", B),
    ("session_deals", I),
    ("session_buy_orders", I),
    ("session_sell_orders", I),
    ("volume", I),
    ("volumehigh", I),
    ("volumelow", I),
    ("time", I),
    ("digits", I),
    ("spread", I),
    ("spread_float", B),
    ("ticks_bookdepth", I),
    ("trade_calc_mode", I),
    ("trade_mode", I),
    ("start_time", I),
    ("expiration_time", I),
    ("trade_stops_level", I),
    ("trade_freeze_level", I),
    ("trade_exemode", I),
    ("swap_mode", I),
    ("swap_rollover3days", I),
    ("margin_hedged_use_leg", B),
    ("expiration_mode", I),
    ("filling_mode", I),
    ("order_mode", I),
    ("order_gtc_mode", I),
    ("option_mode", I),
    ("option_right", I),
    ("bid", F),
    ("bidhigh", F),
    ("bidlow", F),
    ("ask", F),
    ("askhigh", F),
    ("asklow", F),
    ("last", F),
    ("lasthigh", F),
    ("lastlow", F),
    ("volume_real", F),
    ("volumehigh_real", F),
    ("volumelow_real", F),
    ("option_strike", F),
    ("point", F),
    ("trade_tick_value", F),
    ("trade_tick_value_profit", F),
    ("trade_tick_value_loss", F),
    ("trade_tick_size", F),
    ("trade_contract_size", F),
    ("trade_accrued_interest", F),
    ("trade_face_value", F),
    ("trade_liquidity_rate", F),
    ("volume_min", F),
    ("volume_max", F),
    ("volume_step", F),
    ("volume_limit", F),
    ("swap_long", F),
    ("swap_short", F),
    ("margin_initial", F),
    ("margin_maintenance", F),
    ("session_volume", F),
    ("session_turnover", F),
    ("session_interest", F),
    ("session_buy_orders_volume", F),
    ("session_sell_orders_volume", F),
    ("session_open", F),
    ("session_close", F),
    ("session_aw", F),
    ("session_price_settlement", F),
    ("session_price_limit_min", F),
    ("session_price_limit_max", F),
    ("margin_hedged", F),
    ("price_change", F),
    ("price_volatility", F),
    ("price_theoretical", F),
    ("price_greeks_delta", F),
    ("price_greeks_theta", F),
    ("price_greeks_gamma", F),
    ("price_greeks_vega", F),
    ("price_greeks_rho", F),
    ("price_greeks_omega", F),
    ("price_sensitivity", F),
    ("basis", S),
    ("category", S),
    ("currency_base", S),
    ("currency_profit", S),
    ("currency_margin", S),
    ("bank", S),
    ("description", S),
    ("exchange", S),
    ("formula", S),
    ("isin", S),
    ("name", S),
    ("page", S),
    ("path", S),
];

/// Numeric fields (integers, booleans, doubles): the first 83 of the table.
pub(crate) const INFO_NUMBERS: usize = 83;
/// String fields: the last 13 of the table.
pub(crate) const INFO_STRINGS: usize = 13;
/// Bytes of one string field: at most 127 bytes of UTF-8, NUL-padded.
pub(crate) const INFO_STRING_SIZE: usize = 128;
/// The longest string a record keeps, in bytes.
pub const INFO_STRING_MAX: usize = INFO_STRING_SIZE - 1;

/// One field's value, as read from or given to a [`SymbolInfo`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InfoValue<'a> {
    /// An integer field.
    Int(i64),
    /// A boolean field.
    Bool(bool),
    /// A double field.
    Float(f64),
    /// A string field.
    Str(&'a str),
}

/// Where a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfoSource {
    /// From the terminal, as it gave it.
    Terminal = 1,
    /// Made by the streamer from what its feed shows (a synthetic or CSV feed): the name, the
    /// prices' precision and, for a six-letter FX name, the currencies; the rest is MT5's
    /// value for a missing property (0, false or empty).
    Derived = 2,
    /// A terminal's record exported to a file and given to a feed without a terminal
    /// (`mtf-streamer --symbol-info FILE`).
    Exported = 3,
}

impl InfoSource {
    pub(crate) fn from_word(w: u64) -> Option<InfoSource> {
        match w {
            1 => Some(InfoSource::Terminal),
            2 => Some(InfoSource::Derived),
            3 => Some(InfoSource::Exported),
            _ => None,
        }
    }
}

/// Why a value was refused for a [`SymbolInfo`] or [`TerminalInfo`] field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InfoError {
    /// No such field in MT5's `SymbolInfo`.
    UnknownField {
        /// The name given.
        name: String,
    },
    /// A value of another kind than the field's (a string for `digits`, …).
    WrongKind {
        /// The field.
        field: &'static str,
    },
    /// A double that is NaN or infinite.
    NotFinite {
        /// The field.
        field: &'static str,
    },
    /// A value no symbol can have: a negative `point`, `digits`, contract size, volume or
    /// spread, more than 15 digits, or a smallest volume above the largest.
    Impossible {
        /// The field.
        field: &'static str,
    },
    /// A string longer than [`INFO_STRING_MAX`] bytes, or holding a NUL.
    BadString {
        /// The field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
}

impl fmt::Display for InfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InfoError::UnknownField { name } => write!(f, "{name:?} is not a SymbolInfo field"),
            InfoError::WrongKind { field } => write!(f, "{field}: a value of the wrong type"),
            InfoError::NotFinite { field } => write!(f, "{field}: not a finite number"),
            InfoError::Impossible { field } => {
                write!(f, "{field}: a value no symbol can have")
            }
            InfoError::BadString { field, len } => write!(
                f,
                "{field}: a string of {len} bytes (at most {INFO_STRING_MAX}, without NUL)"
            ),
        }
    }
}

impl std::error::Error for InfoError {}

/// MT5's information on one symbol, as the segment keeps it.
///
/// ```
/// use shm_core::{InfoValue, SymbolInfo};
///
/// let mut info = SymbolInfo::new("EURUSD");
/// info.set("digits", InfoValue::Int(5))?;
/// info.set("point", InfoValue::Float(0.00001))?;
/// assert_eq!(info.get("digits"), Some(InfoValue::Int(5)));
/// assert_eq!(info.get("name"), Some(InfoValue::Str("EURUSD")));
/// assert!(info.set("digits", InfoValue::Str("5")).is_err());
/// # Ok::<(), shm_core::InfoError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolInfo {
    pub(crate) numbers: [u64; INFO_NUMBERS],
    pub(crate) strings: [String; INFO_STRINGS],
}

impl SymbolInfo {
    /// A record with MT5's values for missing properties (0, false, empty) and the name.
    pub fn new(name: &str) -> SymbolInfo {
        let mut info = SymbolInfo {
            numbers: [0; INFO_NUMBERS],
            strings: Default::default(),
        };
        // A symbol name is at most 31 bytes; longer ones are never given here.
        let _ = info.set("name", InfoValue::Str(name));
        info
    }

    /// The index of a field in [`SYMBOL_INFO_FIELDS`].
    pub fn field_index(name: &str) -> Option<usize> {
        SYMBOL_INFO_FIELDS.iter().position(|(n, _)| *n == name)
    }

    /// The value of field `name`.
    pub fn get(&self, name: &str) -> Option<InfoValue<'_>> {
        Some(self.at(Self::field_index(name)?))
    }

    /// The value of field number `i` of [`SYMBOL_INFO_FIELDS`].
    pub fn at(&self, i: usize) -> InfoValue<'_> {
        let (_, kind) = SYMBOL_INFO_FIELDS[i];
        match kind {
            I => InfoValue::Int(self.numbers[i] as i64),
            B => InfoValue::Bool(self.numbers[i] != 0),
            F => InfoValue::Float(f64::from_bits(self.numbers[i])),
            S => InfoValue::Str(&self.strings[i - INFO_NUMBERS]),
        }
    }

    /// Every field, in MT5's order.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, InfoValue<'_>)> {
        (0..SYMBOL_INFO_FIELDS.len()).map(|i| (SYMBOL_INFO_FIELDS[i].0, self.at(i)))
    }

    /// Sets field `name`. An integer is accepted for a double field and 0 or 1 for a boolean
    /// (JSON does not tell `1` from `1.0` or `true`), nothing else across kinds.
    pub fn set(&mut self, name: &str, value: InfoValue<'_>) -> Result<(), InfoError> {
        let i = Self::field_index(name).ok_or_else(|| InfoError::UnknownField {
            name: name.to_owned(),
        })?;
        let (field, kind) = SYMBOL_INFO_FIELDS[i];
        let wrong = InfoError::WrongKind { field };
        match (kind, value) {
            (I, InfoValue::Int(v)) => self.numbers[i] = v as u64,
            (B, InfoValue::Bool(v)) => self.numbers[i] = u64::from(v),
            (B, InfoValue::Int(v @ (0 | 1))) => self.numbers[i] = v as u64,
            (F, InfoValue::Float(v)) if v.is_finite() => self.numbers[i] = v.to_bits(),
            (F, InfoValue::Float(_)) => return Err(InfoError::NotFinite { field }),
            (F, InfoValue::Int(v)) => self.numbers[i] = (v as f64).to_bits(),
            (S, InfoValue::Str(s)) => {
                check_string(field, s)?;
                self.strings[i - INFO_NUMBERS] = s.to_owned();
            }
            _ => return Err(wrong),
        }
        Ok(())
    }

    /// The first field whose value no symbol can have (MT5's `SymbolInfoInteger` and
    /// `SymbolInfoDouble` define these as sizes and counts): `digits` negative or above 15,
    /// a negative `spread`, `point`, `trade_tick_size`, `trade_contract_size`, `volume_min`,
    /// `volume_max`, `volume_step` or `volume_limit`, or `volume_min` above a non-zero
    /// `volume_max`. Zero stays allowed everywhere: it is MT5's value for "not known".
    pub fn impossible(&self) -> Option<&'static str> {
        let int = |name| match self.get(name) {
            Some(InfoValue::Int(v)) => v,
            _ => 0,
        };
        let float = |name| match self.get(name) {
            Some(InfoValue::Float(v)) => v,
            _ => 0.0,
        };
        if !(0..=15).contains(&int("digits")) {
            return Some("digits");
        }
        if int("spread") < 0 {
            return Some("spread");
        }
        for name in [
            "point",
            "trade_tick_size",
            "trade_contract_size",
            "volume_min",
            "volume_max",
            "volume_step",
            "volume_limit",
        ] {
            if float(name) < 0.0 {
                return Some(name);
            }
        }
        let (min, max) = (float("volume_min"), float("volume_max"));
        (max > 0.0 && min > max).then_some("volume_min")
    }

    /// The record with the fields that move with every tick taken from `tick`, the symbol's
    /// newest: `bid`, `ask`, `last`, `time`, `volume`, `volume_real`, and `spread` (in points,
    /// from the bid and ask) where the spread floats. So they are never staler than the ring.
    pub fn with_tick(mut self, tick: &crate::Tick) -> SymbolInfo {
        for (i, value) in self.moving_fields(tick).into_iter().flatten() {
            self.numbers[i] = match value {
                InfoValue::Int(n) => n as u64,
                InfoValue::Float(x) => x.to_bits(),
                InfoValue::Bool(b) => u64::from(b),
                InfoValue::Str(_) => continue,
            };
        }
        self
    }

    /// The fields `tick` gives new values (see [`with_tick`](Self::with_tick)), by index in
    /// [`SYMBOL_INFO_FIELDS`]: for a reader that keeps the rest of a record and updates only
    /// these. `spread` is `None` where the record's spread is fixed or its point unknown.
    pub fn moving_fields(&self, tick: &crate::Tick) -> [Option<(usize, InfoValue<'static>)>; 7] {
        // Indexes in MT5's order (checked by the table's test).
        const VOLUME: usize = 7;
        const TIME: usize = 10;
        const SPREAD: usize = 12;
        const BID: usize = 31;
        const ASK: usize = 34;
        const LAST: usize = 37;
        const VOLUME_REAL: usize = 40;
        let floating = self.numbers[13] != 0; // spread_float
        let point = f64::from_bits(self.numbers[44]); // point
        let spread =
            (floating && point > 0.0 && tick.ask >= tick.bid && tick.bid > 0.0).then(|| {
                let points = ((tick.ask - tick.bid) / point).round().min(i32::MAX as f64);
                (SPREAD, InfoValue::Int(points as i64))
            });
        [
            Some((BID, InfoValue::Float(tick.bid))),
            Some((ASK, InfoValue::Float(tick.ask))),
            Some((LAST, InfoValue::Float(tick.last))),
            Some((TIME, InfoValue::Int(tick.time()))),
            Some((VOLUME, InfoValue::Int(tick.volume as i64))),
            Some((VOLUME_REAL, InfoValue::Float(tick.volume_real))),
            spread,
        ]
    }
}

/// The terminal that feeds the segment, and its account, as the gateway's `hello` reports
/// them (MT5's `terminal_info()` and `account_info()`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TerminalInfo {
    /// The terminal's name (`terminal_info().name`).
    pub name: String,
    /// The broker company (`terminal_info().company`).
    pub company: String,
    /// The terminal's build.
    pub build: i64,
    /// Whether the terminal is connected to the trade server.
    pub connected: bool,
    /// The account's trade server (`account_info().server`); empty where none is known.
    pub server: String,
    /// The account number (`account_info().login`); 0 where none is known.
    pub login: i64,
}

impl TerminalInfo {
    /// Checks the strings fit their fields.
    pub fn check(&self) -> Result<(), InfoError> {
        check_string("name", &self.name)?;
        check_string("company", &self.company)?;
        check_string("server", &self.server)
    }
}

fn check_string(field: &'static str, s: &str) -> Result<(), InfoError> {
    if s.len() > INFO_STRING_MAX || s.contains('\0') {
        return Err(InfoError::BadString {
            field,
            len: s.len(),
        });
    }
    Ok(())
}

/// A string as the 16 words of its NUL-padded field.
pub(crate) fn string_words(s: &str) -> [u64; INFO_STRING_SIZE / 8] {
    let mut bytes = [0u8; INFO_STRING_SIZE];
    let n = s.len().min(INFO_STRING_MAX);
    bytes[..n].copy_from_slice(&s.as_bytes()[..n]);
    std::array::from_fn(|k| {
        u64::from_le_bytes(bytes[8 * k..8 * k + 8].try_into().unwrap_or([0; 8]))
    })
}

/// A string field back from its words: `None` unless it is UTF-8 ending in NULs only.
pub(crate) fn string_from_words(words: &[u64]) -> Option<String> {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let len = bytes.iter().position(|&b| b == 0)?;
    if bytes[len..].iter().any(|&b| b != 0) {
        return None;
    }
    String::from_utf8(bytes[..len].to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_mt5s_ninety_six_fields_ints_then_doubles_then_strings() {
        assert_eq!(SYMBOL_INFO_FIELDS.len(), INFO_NUMBERS + INFO_STRINGS);
        assert!(SYMBOL_INFO_FIELDS[..31]
            .iter()
            .all(|(_, k)| matches!(k, I | B)));
        assert!(SYMBOL_INFO_FIELDS[31..83].iter().all(|(_, k)| *k == F));
        assert!(SYMBOL_INFO_FIELDS[83..].iter().all(|(_, k)| *k == S));
        assert_eq!(SYMBOL_INFO_FIELDS[0].0, "custom");
        assert_eq!(SYMBOL_INFO_FIELDS[95].0, "path");
        // The indexes `moving_fields` uses.
        for (i, name) in [
            (7, "volume"),
            (10, "time"),
            (12, "spread"),
            (13, "spread_float"),
            (31, "bid"),
            (34, "ask"),
            (37, "last"),
            (40, "volume_real"),
            (44, "point"),
        ] {
            assert_eq!(SYMBOL_INFO_FIELDS[i].0, name);
        }
    }

    #[test]
    fn strings_round_trip_and_bad_ones_are_refused() {
        for s in ["", "EUR", "Forex\\Majors\\EURUSD", &"é".repeat(63)] {
            assert_eq!(string_from_words(&string_words(s)).as_deref(), Some(s));
        }
        let mut info = SymbolInfo::new("X");
        let long = "x".repeat(128);
        assert_eq!(
            info.set("description", InfoValue::Str(&long)),
            Err(InfoError::BadString {
                field: "description",
                len: 128
            })
        );
        assert!(info.set("point", InfoValue::Float(f64::NAN)).is_err());
        assert!(info.set("nonsense", InfoValue::Int(1)).is_err());
        let mut words = string_words("ab");
        words[3] = 1; // a byte after the NUL
        assert_eq!(string_from_words(&words), None);
    }

    #[test]
    fn the_moving_fields_come_from_the_newest_tick() {
        let mut info = SymbolInfo::new("EURUSD");
        info.set("point", InfoValue::Float(0.00001)).unwrap();
        info.set("spread_float", InfoValue::Bool(true)).unwrap();
        let tick = crate::Tick {
            time_msc: 1_700_000_000_500,
            bid: 1.10000,
            ask: 1.10012,
            volume: 4,
            ..crate::Tick::default()
        };
        let info = info.with_tick(&tick);
        assert_eq!(info.get("spread"), Some(InfoValue::Int(12)));
        assert_eq!(info.get("time"), Some(InfoValue::Int(1_700_000_000)));
        assert_eq!(info.get("ask"), Some(InfoValue::Float(1.10012)));
        assert_eq!(info.get("volume"), Some(InfoValue::Int(4)));
    }
}
