//! Every setting of the streamer, each parsed by one function whether it comes from a flag or
//! from the config file: a table of key, flag and parse function (the other of the two ways
//! ripgrep's config file shows). A flag's text goes to the same function as the file's JSON
//! value, which takes either (`"tick_rate": 2.5` and `--tick-rate 2.5` meet the same range
//! check), so the two sources cannot drift apart.

use std::path::PathBuf;

use serde_json::{Map, Value};
use shm_core::{validate_symbol, SegmentPath, Timeframe, MAX_CAPACITY, SERVER_OFFSET_RANGE};

use crate::config::{
    parse_mode, parse_nats_interval, parse_nats_url, parse_speed, parse_symbols, parse_timeframes,
    Config, ConfigError, HttpBind,
};

/// Why a value was refused: the message, and the part of the setting it concerns, if one
/// (`M1` of `buffer_sizes`).
#[derive(Debug)]
pub struct Refusal {
    at: Option<String>,
    message: String,
}

impl From<String> for Refusal {
    fn from(message: String) -> Refusal {
        Refusal { at: None, message }
    }
}

type Apply = fn(&mut Config, &Value) -> Result<(), Refusal>;

/// One setting: its key in the config file, its flag (if it has one), and the one function
/// that applies a value of it.
pub struct Setting {
    /// The key in the JSON config file.
    pub key: &'static str,
    /// The command-line flag, if any.
    pub flag: Option<&'static str>,
    apply: Apply,
}

/// Every setting.
pub const SETTINGS: &[Setting] = &[
    setting("symbols", Some("--symbols"), |c, v| {
        c.symbols = Some(parse_symbols(&strings(v)?)?);
        Ok(())
    }),
    setting("timeframes", Some("--timeframes"), |c, v| {
        c.timeframes = parse_timeframes(&strings(v)?)?;
        Ok(())
    }),
    setting("buffer_sizes", Some("--buffer"), apply_buffer_sizes),
    setting("source", Some("--source"), |c, v| {
        c.source = text(v)?.parse()?;
        Ok(())
    }),
    setting("seed", Some("--seed"), |c, v| {
        c.seed = number_text(v)?
            .parse()
            .map_err(|_| format!("expected a non-negative integer, found {v}"))?;
        Ok(())
    }),
    setting("tick_rate", Some("--tick-rate"), |c, v| {
        c.tick_rate = match number_text(v)?.parse::<f64>() {
            Ok(r) if r > 0.0 && r <= 100_000.0 => r,
            _ => {
                return Err(format!(
                    "expected a number of ticks per second in (0, 100000], found {v}"
                )
                .into())
            }
        };
        Ok(())
    }),
    setting("tick_depth", Some("--tick-depth"), |c, v| {
        c.tick_depth = match number_text(v)?.parse::<u32>() {
            Ok(d) if (1..=shm_core::MAX_TICK_DEPTH).contains(&d) => d,
            _ => {
                return Err(format!(
                    "expected the ticks each symbol keeps, 1 to {}, found {v}",
                    shm_core::MAX_TICK_DEPTH
                )
                .into())
            }
        };
        Ok(())
    }),
    setting("csv", Some("--csv"), |c, v| {
        c.csv_files = strings(v)?.into_iter().map(PathBuf::from).collect();
        Ok(())
    }),
    setting("csv_symbol", Some("--csv-symbol"), |c, v| {
        let s = text(v)?;
        validate_symbol(&s).map_err(|e| e.to_string())?;
        c.csv_symbol = Some(s);
        Ok(())
    }),
    setting("csv_timeframe", Some("--csv-timeframe"), |c, v| {
        c.csv_timeframe = Some(timeframe(&text(v)?)?);
        Ok(())
    }),
    setting("speed", Some("--speed"), |c, v| {
        c.speed = parse_speed(&number_text(v)?)?;
        Ok(())
    }),
    setting("symbol_info", Some("--symbol-info"), |c, v| {
        c.symbol_info = Some(PathBuf::from(text(v)?));
        Ok(())
    }),
    setting("gateway", Some("--gateway"), |c, v| {
        c.gateway = text(v)?;
        Ok(())
    }),
    setting("segment", Some("--segment"), |c, v| {
        c.segment = SegmentPath::named(&text(v)?).map_err(|e| e.to_string())?;
        Ok(())
    }),
    setting("segment_path", Some("--segment-path"), |c, v| {
        c.segment = SegmentPath::at(text(v)?);
        Ok(())
    }),
    setting("segment_mode", Some("--segment-mode"), |c, v| {
        c.segment_mode = parse_mode(&number_text(v)?)?;
        Ok(())
    }),
    setting("http", Some("--http"), |c, v| {
        c.http =
            match v {
                Value::Null | Value::Bool(false) => HttpBind::Off,
                other => HttpBind::Asked(text(other)?.parse().map_err(|_| {
                    format!("expected an address like 127.0.0.1:8000, found {other}")
                })?),
            };
        Ok(())
    }),
    setting("http_allow_remote", Some("--http-allow-remote"), |c, v| {
        c.http_allow_remote = boolean(v)?;
        Ok(())
    }),
    setting(
        "http_allow_remote_without_token",
        Some("--http-allow-remote-without-token"),
        |c, v| {
            c.http_allow_remote_without_token = boolean(v)?;
            Ok(())
        },
    ),
    setting("server_time_offset", Some("--server-offset"), |c, v| {
        c.server_time_offset_s = match v {
            // A JSON number is seconds, whatever its sign; the same range as `+HH:MM`.
            Value::Number(n) => n
                .as_i64()
                .filter(|s| SERVER_OFFSET_RANGE.contains(s))
                .ok_or_else(|| {
                    format!("expected seconds from -43200 (UTC-12) to 50400 (UTC+14), found {n}")
                })?,
            other => shm_core::parse_server_offset(&text(other)?).map_err(|e| e.to_string())?,
        };
        Ok(())
    }),
    setting("max_memory_mb", None, |c, v| {
        c.max_memory_mb = Some(
            number_text(v)?
                .parse::<u64>()
                .ok()
                .filter(|&m| m > 0)
                .ok_or_else(|| format!("expected a positive integer, found {v}"))?,
        );
        Ok(())
    }),
    setting("nats", Some("--nats"), |c, v| {
        c.nats = match v {
            Value::Null => None,
            other => Some(parse_nats_url(&text(other)?)?),
        };
        Ok(())
    }),
    setting("nats_name", Some("--nats-name"), |c, v| {
        c.nats_name = Some(text(v)?);
        Ok(())
    }),
    setting("nats_interval_ms", Some("--nats-interval-ms"), |c, v| {
        let n = number_text(v)?
            .parse::<u64>()
            .map_err(|_| format!("expected milliseconds, found {v}"))?;
        c.nats_interval_ms = parse_nats_interval(n)?;
        Ok(())
    }),
    setting("nats_user", Some("--nats-user"), |c, v| {
        c.nats_auth.nats_user = optional_text(v)?;
        Ok(())
    }),
    setting("nats_creds", Some("--nats-creds"), |c, v| {
        c.nats_auth.nats_creds = optional_path(v)?;
        Ok(())
    }),
    setting("nats_nkey", Some("--nats-nkey"), |c, v| {
        c.nats_auth.nats_nkey = optional_path(v)?;
        Ok(())
    }),
    setting(
        "nats_password_file",
        Some("--nats-password-file"),
        |c, v| {
            c.nats_auth.nats_password_file = optional_path(v)?;
            Ok(())
        },
    ),
    setting("nats_token_file", Some("--nats-token-file"), |c, v| {
        c.nats_auth.nats_token_file = optional_path(v)?;
        Ok(())
    }),
    setting("nats_ca", Some("--nats-ca"), |c, v| {
        c.nats_auth.nats_ca = optional_path(v)?;
        Ok(())
    }),
    setting("nats_cert", Some("--nats-cert"), |c, v| {
        c.nats_auth.nats_cert = optional_path(v)?;
        Ok(())
    }),
    setting("nats_key", Some("--nats-key"), |c, v| {
        c.nats_auth.nats_key = optional_path(v)?;
        Ok(())
    }),
];

const fn setting(key: &'static str, flag: Option<&'static str>, apply: Apply) -> Setting {
    Setting { key, flag, apply }
}

/// The setting of config key `key`, if there is one.
pub fn by_key(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

impl Setting {
    /// Applies `value`, from the config file (`from_flag` false) or from the setting's flag;
    /// a refusal names the key or the flag.
    pub fn apply(&self, c: &mut Config, value: &Value, from_flag: bool) -> Result<(), ConfigError> {
        (self.apply)(c, value).map_err(|r| {
            let name = match (from_flag, self.flag) {
                (true, Some(flag)) => flag.to_owned(),
                _ => self.key.to_owned(),
            };
            match r.at {
                // A part of the setting: `buffer_sizes.M1` in the file, `--buffer M1=0` as a
                // flag.
                Some(at) if !from_flag => ConfigError {
                    field: format!("{name}.{at}"),
                    message: r.message,
                },
                Some(at) => ConfigError {
                    field: name,
                    message: format!("{at}: {}", r.message),
                },
                None => ConfigError {
                    field: name,
                    message: r.message,
                },
            }
        })
    }
}

/// `buffer_sizes`: `{"M1": 1440, ...}`, or from `--buffer M1=1440` (repeatable), the same
/// object with text values.
fn apply_buffer_sizes(c: &mut Config, v: &Value) -> Result<(), Refusal> {
    let Value::Object(sizes) = v else {
        return Err(format!("expected an object like {{\"M1\": 1440}}, found {v}").into());
    };
    for (tf, n) in sizes {
        let at = |message: String| Refusal {
            at: Some(tf.clone()),
            message,
        };
        let timeframe = timeframe(tf).map_err(at)?;
        let n = number_text(n)
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
            .filter(|&n| (1..=u64::from(MAX_CAPACITY)).contains(&n))
            .ok_or_else(|| {
                at(format!(
                    "expected an integer from 1 to {MAX_CAPACITY}, found {n}"
                ))
            })?;
        c.buffer_sizes.insert(timeframe, n as u32);
    }
    Ok(())
}

/// The `--buffer TF=N` items as the object `buffer_sizes` takes.
pub fn buffer_flags(items: &[String]) -> Result<Value, ConfigError> {
    let mut map = Map::new();
    for item in items {
        let (tf, n) = item.split_once('=').ok_or_else(|| ConfigError {
            field: "--buffer".into(),
            message: format!("expected TF=N, found {item:?}"),
        })?;
        map.insert(tf.to_owned(), Value::String(n.to_owned()));
    }
    Ok(Value::Object(map))
}

fn timeframe(text: &str) -> Result<Timeframe, String> {
    text.parse()
        .map_err(|e: shm_core::UnknownTimeframe| e.to_string())
}

fn text(v: &Value) -> Result<String, String> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("expected a string, found {v}"))
}

/// A number, or its text (a flag's value).
fn number_text(v: &Value) -> Result<String, String> {
    match v {
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) => Ok(s.trim().to_owned()),
        other => Err(format!("expected a number, found {other}")),
    }
}

fn boolean(v: &Value) -> Result<bool, String> {
    v.as_bool()
        .ok_or_else(|| format!("expected true or false, found {v}"))
}

fn strings(v: &Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = v else {
        return Err(format!("expected a list of strings, found {v}"));
    };
    items
        .iter()
        .map(|i| {
            i.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("expected strings, found {i}"))
        })
        .collect()
}

fn optional_text(v: &Value) -> Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        other => text(other).map(Some),
    }
}

fn optional_path(v: &Value) -> Result<Option<PathBuf>, String> {
    Ok(optional_text(v)?.map(PathBuf::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The drift the second code-shape pass found: the file took an offset the flag refused.
    #[test]
    fn a_flag_and_its_key_accept_and_refuse_the_same_values() {
        let cases: &[(&str, Value, bool)] = &[
            ("server_time_offset", Value::from(-13 * 3600), false),
            ("server_time_offset", Value::from(14 * 3600), true),
            ("server_time_offset", Value::from("-13:00"), false),
            ("server_time_offset", Value::from("+05:30"), true),
            ("tick_rate", Value::from(0), false),
            ("tick_rate", Value::from("0"), false),
            ("tick_rate", Value::from("2.5"), true),
            ("tick_rate", Value::from(100_001), false),
            ("segment", Value::from("../x"), false),
            ("nats_interval_ms", Value::from(0), false),
            ("nats_interval_ms", Value::from("50"), true),
        ];
        for (key, value, ok) in cases {
            let setting = by_key(key).unwrap();
            for from_flag in [false, true] {
                let got = setting.apply(&mut Config::default(), value, from_flag);
                assert_eq!(
                    got.is_ok(),
                    *ok,
                    "{key} = {value} (flag: {from_flag}): {got:?}"
                );
                if let Err(e) = got {
                    let name = if from_flag {
                        setting.flag.unwrap()
                    } else {
                        setting.key
                    };
                    assert_eq!(e.field, name);
                }
            }
        }
    }

    #[test]
    fn every_key_and_flag_is_named_once() {
        let mut keys: Vec<_> = SETTINGS.iter().map(|s| s.key).collect();
        let mut flags: Vec<_> = SETTINGS.iter().filter_map(|s| s.flag).collect();
        let (k, f) = (keys.len(), flags.len());
        keys.sort_unstable();
        keys.dedup();
        flags.sort_unstable();
        flags.dedup();
        assert_eq!((keys.len(), flags.len()), (k, f));
    }

    #[test]
    fn buffer_flags_name_the_flag_and_the_timeframe() {
        let mut c = Config::default();
        let v = buffer_flags(&["M1=2000".into()]).unwrap();
        by_key("buffer_sizes")
            .unwrap()
            .apply(&mut c, &v, true)
            .unwrap();
        assert_eq!(c.buffer_sizes[&Timeframe::M1], 2000);
        assert_eq!(buffer_flags(&["M1".into()]).unwrap_err().field, "--buffer");
        let v = buffer_flags(&["M1=0".into()]).unwrap();
        let e = by_key("buffer_sizes")
            .unwrap()
            .apply(&mut c, &v, true)
            .unwrap_err();
        assert_eq!(e.field, "--buffer");
        assert!(e.message.starts_with("M1: "), "{e}");
    }
}
