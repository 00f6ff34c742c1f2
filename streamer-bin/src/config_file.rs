//! The streamer's JSON config file (`--config FILE`): each key goes through its setting's one
//! parser (`settings.rs`), as the flags do; keys of the original system's file that mean
//! nothing here are named in a warning, and unknown keys warned about, never fatal.

use std::path::Path;

use serde_json::Value;

use crate::config::{Config, ConfigError};
use crate::settings;

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// Fields of the original config that have no meaning here, and why.
const IGNORED: [(&str, &str); 6] = [
    (
        "refresh_intervals",
        "candles are pushed as ticks arrive, not polled on a timer",
    ),
    (
        "enable_database",
        "there is no database; the shared-memory segment holds the buffers",
    ),
    (
        "db_path",
        "there is no database; the shared-memory segment holds the buffers",
    ),
    (
        "retention_days",
        "there is no database; each ring keeps its buffer size",
    ),
    ("max_db_size_mb", "there is no database"),
    ("batch_write_size", "every change is published at once"),
];

impl Config {
    /// Applies a JSON config file. Returns the warnings to print, one line each.
    pub fn apply_file(&mut self, path: &Path) -> Result<Vec<String>, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err("--config", format!("cannot read {}: {e}", path.display())))?;
        self.apply_json(&text)
    }

    /// Applies the text of a JSON config file. Returns the warnings to print.
    pub fn apply_json(&mut self, text: &str) -> Result<Vec<String>, ConfigError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| err("(file)", format!("not valid JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(err("(file)", "expected a JSON object at the top level"));
        };
        let mut warnings = Vec::new();
        for (key, value) in &map {
            if let Some((_, why)) = IGNORED.iter().find(|(k, _)| k == key) {
                warnings.push(format!("config field `{key}` is ignored: {why}"));
                continue;
            }
            match settings::by_key(key) {
                Some(setting) => setting.apply(self, value, false)?,
                None => warnings.push(format!("config field `{key}` is unknown and ignored")),
            }
        }
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HttpBind, SourceKind};
    use crate::source::csv::Speed;
    use shm_core::Timeframe;

    /// The original system's config file, as users have it.
    const ORIGINAL: &str = r#"{
        "symbols": ["BTCUSDc", "XAUUSDc", "EURUSDc"],
        "buffer_sizes": {"M1": 1440, "M5": 300, "M15": 150, "M30": 100, "H1": 100, "H4": 50},
        "refresh_intervals": {"M1": 60, "M5": 300, "M15": 900, "M30": 1800, "H1": 3600, "H4": 14400},
        "enable_database": true,
        "db_path": "data/multi_tf_candles.db",
        "retention_days": 30,
        "max_memory_mb": 512,
        "max_db_size_mb": 1024,
        "batch_write_size": 100
    }"#;

    #[test]
    fn the_original_config_is_accepted_as_it_is() {
        let mut c = Config::default();
        let warnings = c.apply_json(ORIGINAL).unwrap();
        assert_eq!(
            c.symbols.as_deref(),
            Some(&["BTCUSDc".to_owned(), "XAUUSDc".into(), "EURUSDc".into()][..])
        );
        assert_eq!(c.buffer_sizes[&Timeframe::M1], 1440);
        assert_eq!(
            c.buffer_sizes[&Timeframe::D1],
            1_000,
            "defaults fill what the file leaves out"
        );
        assert_eq!(c.max_memory_mb, Some(512));
        // One warning per field that does not apply, naming it.
        assert_eq!(warnings.len(), 6, "{warnings:#?}");
        for key in [
            "refresh_intervals",
            "enable_database",
            "db_path",
            "retention_days",
            "max_db_size_mb",
            "batch_write_size",
        ] {
            assert_eq!(
                warnings
                    .iter()
                    .filter(|w| w.contains(&format!("`{key}`")))
                    .count(),
                1,
                "{key}"
            );
        }
    }

    #[test]
    fn our_fields_sit_beside_the_original_ones() {
        let mut c = Config::default();
        let w = c
            .apply_json(
                r#"{"symbols": ["EURUSD"], "source": "csv", "csv": ["a.csv"], "speed": 10,
                    "segment": "desk-1", "segment_mode": "0640", "http": "127.0.0.1:9000",
                    "server_time_offset": "+02:00", "timeframes": ["h1", "M1"], "seed": 7, "tick_rate": 2.5}"#,
            )
            .unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.source, SourceKind::Csv);
        assert_eq!(c.speed, Speed::Times(10.0));
        assert_eq!(c.segment.path().file_name().unwrap(), "desk-1");
        assert_eq!(c.segment_mode, 0o640);
        assert_eq!(c.http, HttpBind::Asked("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(c.server_time_offset_s, 7200);
        assert_eq!(c.timeframes, [Timeframe::M1, Timeframe::H1]);
        assert_eq!((c.seed, c.tick_rate), (7, 2.5));
        let mut c = Config::default();
        c.apply_json(r#"{"http": null}"#).unwrap();
        assert_eq!(c.http, HttpBind::Off);
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            (r#"{"symbols": ["BTC/USD"]}"#, "symbols"),
            (r#"{"symbols": "BTCUSD"}"#, "symbols"),
            (r#"{"buffer_sizes": {"M1": 0}}"#, "buffer_sizes.M1"),
            (r#"{"buffer_sizes": {"M7": 10}}"#, "buffer_sizes.M7"),
            (r#"{"buffer_sizes": {"H1": -5}}"#, "buffer_sizes.H1"),
            (r#"{"source": "mt4"}"#, "source"),
            (r#"{"tick_rate": 0}"#, "tick_rate"),
            (r#"{"segment_mode": "999"}"#, "segment_mode"),
            (r#"{"segment": "../x"}"#, "segment"),
            (r#"{"http": "localhost"}"#, "http"),
            (r#"{"server_time_offset": "+25:00"}"#, "server_time_offset"),
            (r#"{"speed": "fast"}"#, "speed"),
            ("[1, 2]", "(file)"),
            ("{", "(file)"),
        ];
        for (json, field) in cases {
            let e = Config::default().apply_json(json).unwrap_err();
            assert_eq!(e.field, field, "{json}: {e}");
            assert!(e.to_string().contains(field), "{e}");
        }
    }

    #[test]
    fn unknown_fields_warn_but_do_not_fail() {
        let w = Config::default()
            .apply_json(r#"{"colour": "blue"}"#)
            .unwrap();
        assert_eq!(w, ["config field `colour` is unknown and ignored"]);
    }
}
