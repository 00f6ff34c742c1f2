//! `--symbol-info FILE`: a real terminal's symbol information, for a feed without one.
//!
//! A synthetic or CSV feed knows a symbol's prices, not its broker's contract. The file holds
//! what the MetaTrader5 package gives for each symbol, exported once where a terminal runs:
//!
//! ```python
//! json.dump({s: mt5.symbol_info(s)._asdict() for s in ("EURUSD", "XAUUSD")}, open("info.json", "w"))
//! ```
//!
//! A symbol it names is published with that record (source `exported`), in place of the one
//! derived from its prices; the others keep theirs. The fields that move with each tick (bid,
//! ask, time, …) are taken from the newest tick by every reader, as for a terminal's record.
//! The file is checked whole before the streamer starts: a field MT5 does not have, a value of
//! the wrong type, or one no symbol can have (`SymbolInfo::impossible`) is refused with the symbol
//! and field named, and so is a file over [`MAX_FILE`] bytes, before it is read.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use serde_json::Value;
use shm_core::{FieldKind, InfoValue, SymbolInfo, SYMBOL_INFO_FIELDS};

use crate::config::ConfigError;

/// The largest file taken: about 6 kB a symbol as JSON, so some 2,500 symbols.
pub const MAX_FILE: u64 = 16 << 20;

fn refused(message: String) -> ConfigError {
    ConfigError {
        field: "symbol_info".into(),
        message,
    }
}

/// The records the file at `path` gives for `symbols` (it may name others: they are left out).
pub fn load(path: &Path, symbols: &[String]) -> Result<HashMap<String, SymbolInfo>, ConfigError> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| refused(format!("{shown}: {e}")))?;
    let len = file
        .metadata()
        .map_err(|e| refused(format!("{shown}: {e}")))?
        .len();
    if len > MAX_FILE {
        return Err(refused(format!(
            "{shown} is {len} bytes; at most {MAX_FILE} are read"
        )));
    }
    let mut text = String::new();
    file.take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| refused(format!("{shown}: {e}")))?;
    let all: serde_json::Map<String, Value> = serde_json::from_str(&text).map_err(|e| {
        refused(format!(
            "{shown}: not a JSON object of symbols ({e}); export it as the documentation shows"
        ))
    })?;
    let mut out = HashMap::new();
    for symbol in symbols {
        let Some(fields) = all.get(symbol) else {
            continue;
        };
        let info = record(symbol, fields).map_err(|why| refused(format!("{shown}: {why}")))?;
        out.insert(symbol.clone(), info);
    }
    Ok(out)
}

/// One symbol's record from its JSON object.
fn record(symbol: &str, fields: &Value) -> Result<SymbolInfo, String> {
    let Some(fields) = fields.as_object() else {
        return Err(format!("{symbol}: not an object of SymbolInfo fields"));
    };
    let mut info = SymbolInfo::new(symbol);
    for (name, value) in fields {
        let kind = SYMBOL_INFO_FIELDS
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, k)| k)
            .ok_or_else(|| format!("{symbol}: {name:?} is not a SymbolInfo field"))?;
        if name == "name" {
            if value.as_str() != Some(symbol) {
                return Err(format!("{symbol}: its name is {value}"));
            }
            continue;
        }
        let wrong = || format!("{symbol}.{name}: {value} is not a {kind:?}");
        let v = match kind {
            FieldKind::Bool => InfoValue::Bool(value.as_bool().ok_or_else(wrong)?),
            FieldKind::Int => InfoValue::Int(value.as_i64().ok_or_else(wrong)?),
            // `_asdict()` gives floats, but a hand-written 100 is as good as 100.0.
            FieldKind::Float => InfoValue::Float(value.as_f64().ok_or_else(wrong)?),
            FieldKind::Str => InfoValue::Str(value.as_str().ok_or_else(wrong)?),
        };
        info.set(name, v).map_err(|e| format!("{symbol}: {e}"))?;
    }
    if let Some(field) = info.impossible() {
        return Err(format!("{symbol}: {field}: a value no symbol can have"));
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile_path::Path {
        tempfile_path::Path::with(text)
    }

    /// A file of the test's own, removed when dropped.
    mod tempfile_path {
        pub struct Path(pub std::path::PathBuf);
        impl Path {
            pub fn with(text: &str) -> Path {
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                // Relaxed: a counter for unique names.
                let k = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let p = std::env::temp_dir()
                    .join(format!("mtf-symbol-info-{}-{k}.json", std::process::id()));
                std::fs::write(&p, text).unwrap();
                Path(p)
            }
        }
        impl Drop for Path {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    fn symbols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_exported_record_is_taken_for_the_symbols_streamed() {
        let f = file(
            r#"{"EURUSD": {"name": "EURUSD", "digits": 5, "point": 0.00001,
                "trade_contract_size": 100000.0, "volume_min": 0.01, "volume_max": 50,
                "volume_step": 0.01, "trade_tick_value": 1.0, "spread_float": true,
                "description": "Euro vs US Dollar", "bid": 1.1},
               "GBPUSD": {"digits": 5}}"#,
        );
        let got = load(&f.0, &symbols(&["EURUSD", "XAUUSD"])).unwrap();
        assert_eq!(
            got.len(),
            1,
            "GBPUSD is not streamed, XAUUSD not in the file"
        );
        let info = &got["EURUSD"];
        assert_eq!(info.get("volume_max"), Some(InfoValue::Float(50.0)));
        assert_eq!(
            info.get("description"),
            Some(InfoValue::Str("Euro vs US Dollar"))
        );
        assert_eq!(info.get("digits"), Some(InfoValue::Int(5)));
    }

    #[test]
    fn a_bad_file_is_refused_with_the_symbol_and_field_named() {
        for (text, says) in [
            (
                r#"{"EURUSD": {"digitz": 5}}"#,
                "\"digitz\" is not a SymbolInfo field",
            ),
            (r#"{"EURUSD": {"digits": "5"}}"#, "EURUSD.digits"),
            (r#"{"EURUSD": {"point": -0.1}}"#, "EURUSD: point"),
            (r#"{"EURUSD": {"name": "GBPUSD"}}"#, "its name"),
            (r#"{"EURUSD": [1, 2]}"#, "not an object"),
            (r#"[1, 2]"#, "not a JSON object of symbols"),
            (
                r#"{"EURUSD": {"volume_min": 1.0, "volume_max": 0.5}}"#,
                "EURUSD",
            ),
        ] {
            let f = file(text);
            let e = load(&f.0, &symbols(&["EURUSD"])).unwrap_err();
            assert!(e.message.contains(says), "{text}: {}", e.message);
        }
        let missing = std::env::temp_dir().join("mtf-no-such-symbol-info.json");
        assert!(load(&missing, &symbols(&["EURUSD"])).is_err());
    }
}
