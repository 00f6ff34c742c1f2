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
    Config, ConfigError, HistoryPlace, HttpBind, MOST_HISTORY_BARS,
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

/// How a flag takes its value on the command line, and so what value its setting is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One value: the setting gets its text.
    One,
    /// One value that may start with `-` (a negative offset).
    Signed,
    /// Comma-separated values: the setting gets a list of texts.
    List,
    /// One or more values after the flag (`--csv A.csv B.csv`): a list of texts.
    Many,
    /// `TF=N`, repeatable: the object `{"TF": "N", ...}` ([`buffer_flags`]).
    Pairs,
    /// Declared by an argument group other binaries share (mtf-cli's `SegmentArgs`,
    /// nats-bridge's `NatsAuth`), not built from here; its value is its text.
    Shared,
    /// No value: the setting gets `true` (it adds to the file's setting, never clears it).
    Switch,
}

/// A setting's command-line flag: its name, the value's name and shape, its help, and what it
/// needs or excludes. The streamer's command line is built from these (`cli.rs`).
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// The flag, `--tick-rate`.
    pub name: &'static str,
    /// The value's name in the help (`N`, `FILE`); empty for a switch.
    pub value_name: &'static str,
    /// The help line (the first sentence is the short help).
    pub help: &'static str,
    /// How the value is given.
    pub shape: Shape,
    /// A switch that turns the setting off (the setting gets `null`): `--no-http`, with its help.
    pub off: Option<(&'static str, &'static str)>,
    /// The key of a setting whose flag this one needs.
    pub requires: Option<&'static str>,
}

const fn flag(
    name: &'static str,
    value_name: &'static str,
    shape: Shape,
    help: &'static str,
) -> Flag {
    Flag {
        name,
        value_name,
        help,
        shape,
        off: None,
        requires: None,
    }
}

/// One setting, declared once: its key in the config file, its flag (if it has one), and the
/// one function that applies a value of it, whichever of the two it came from.
pub struct Setting {
    /// The key in the JSON config file.
    pub key: &'static str,
    /// The command-line flag, if any.
    pub flag: Option<Flag>,
    apply: Apply,
}

/// Every setting.
pub const SETTINGS: &[Setting] = &[
    setting("symbols", Some(flag("--symbols", "SYMBOLS", Shape::List, "Symbols, comma-separated (default BTCUSDc,XAUUSDc; for csv, taken from the file names).")), |c, v| {
        c.symbols = Some(parse_symbols(&strings(v)?)?);
        Ok(())
    }),
    setting("timeframes", Some(flag("--timeframes", "TFS", Shape::List, "Timeframes to publish, comma-separated (default M1,M5,M15,M30,H1,H4,D1).")), |c, v| {
        c.timeframes = parse_timeframes(&strings(v)?)?;
        Ok(())
    }),
    setting("buffer_sizes", Some(flag("--buffer", "TF=N", Shape::Pairs, "Ring size of one timeframe, e.g. --buffer M1=20160 (repeatable). Defaults: M1 10080, M5 2016, 1000 for every other timeframe.")), apply_buffer_sizes),
    setting("source", Some(flag("--source", "SOURCE", Shape::One, "Feed: synthetic (seeded random walk), csv (MT5 export replay), mt5 (MT5 gateway).")), |c, v| {
        c.source = text(v)?.parse()?;
        Ok(())
    }),
    setting("seed", Some(flag("--seed", "N", Shape::One, "Seed of the synthetic feed (same seed, same price path).")), |c, v| {
        c.seed = number_text(v)?
            .parse()
            .map_err(|_| format!("expected a non-negative integer, found {v}"))?;
        Ok(())
    }),
    setting("tick_rate", Some(flag("--tick-rate", "N", Shape::One, "Synthetic ticks per second per symbol (default 10).")), |c, v| {
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
    setting("tick_depth", Some(flag("--tick-depth", "N", Shape::One, "Ticks each symbol's tick ring keeps (default 4096, MT5's fast tick cache).")), |c, v| {
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
    setting("csv", Some(flag("--csv", "FILE", Shape::Many, "MT5 export files to replay (bars or ticks); implies --source csv.")), |c, v| {
        c.csv_files = strings(v)?.into_iter().map(PathBuf::from).collect();
        Ok(())
    }),
    setting("csv_symbol", Some(flag("--csv-symbol", "SYMBOL", Shape::One, "Symbol of the CSV files, when their names do not follow MT5's SYMBOL_TF_FROM_TO.csv.")), |c, v| {
        let s = text(v)?;
        validate_symbol(&s).map_err(|e| e.to_string())?;
        c.csv_symbol = Some(s);
        Ok(())
    }),
    setting("csv_timeframe", Some(flag("--csv-timeframe", "TF", Shape::One, "Timeframe of the CSV bar files, when their names do not say it.")), |c, v| {
        c.csv_timeframe = Some(timeframe(&text(v)?)?);
        Ok(())
    }),
    setting("speed", Some(flag("--speed", "N|max", Shape::One, "CSV replay speed: N for N x real time, or max (default).")), |c, v| {
        c.speed = parse_speed(&number_text(v)?)?;
        Ok(())
    }),
    setting("symbol_info", Some(flag("--symbol-info", "FILE", Shape::One, "A terminal's symbol_info() for each symbol, as JSON ({\"EURUSD\": {...}, ...}, exported with MetaTrader5's symbol_info(s)._asdict()), for a synthetic or CSV feed.")), |c, v| {
        c.symbol_info = Some(PathBuf::from(text(v)?));
        Ok(())
    }),
    setting("gateway", Some(flag("--gateway", "HOST:PORT", Shape::One, "MT5 gateway address for --source mt5 (default 127.0.0.1:18812, the gateway's default; set MT5_GATEWAY_TOKEN if it has a token).")), |c, v| {
        c.gateway = text(v)?;
        Ok(())
    }),
    setting("segment", Some(flag("--segment", "NAME", Shape::Shared, "")), |c, v| {
        c.segment = SegmentPath::named(&text(v)?).map_err(|e| e.to_string())?;
        Ok(())
    }),
    setting("segment_path", Some(flag("--segment-path", "PATH", Shape::Shared, "")), |c, v| {
        c.segment = SegmentPath::at(text(v)?);
        Ok(())
    }),
    setting("history_dir", Some(Flag { off: Some(("--no-history", "Keep no history store: readers get what the rings hold.")), ..flag("--history-dir", "DIR", Shape::One, "Directory of the history store, where every closed bar and tick is kept on disk (default: beside a segment given by path, else ~/.local/share/mtf-candles/NAME, or MTF_HISTORY_DIR; readers find it the same way).") }), |c, v| {
        c.history = match v {
            Value::Null | Value::Bool(false) => HistoryPlace::Off,
            other => HistoryPlace::Dir(PathBuf::from(text(other)?)),
        };
        Ok(())
    }),
    setting("history_keep", Some(flag("--history-keep", "KEEP", Shape::One, "How much history the store keeps: all (the default), a span of each stream (90d, 12h) or a total size (2GB, 500MiB); the oldest files go first.")), |c, v| {
        c.history_keep = text(v)?.parse().map_err(|e: shm_core::history::KeepError| e.to_string())?;
        Ok(())
    }),
    setting("history_bars", Some(flag("--history-bars", "N", Shape::One, "Bars per timeframe the history store is backfilled with from the terminal at start, and the gap after a restart (default 100000, MT5's default Max bars in chart; 0: none beyond the rings).")), |c, v| {
        c.history_bars = match number_text(v)?.parse::<u32>() {
            Ok(n) if n <= MOST_HISTORY_BARS => n,
            _ => return Err(format!("expected a whole number of bars from 0 to {MOST_HISTORY_BARS}, found {v}").into()),
        };
        Ok(())
    }),
    setting("history_ticks", Some(flag("--history-ticks", "DEPTH", Shape::One, "How far back the terminal's ticks are copied into the history store at start: 2td (the default: the current and the previous trading day), a span (36h, 7d) or off.")), |c, v| {
        c.history_ticks = text(v)?.parse()?;
        Ok(())
    }),
    setting("segment_mode", Some(flag("--segment-mode", "OCTAL", Shape::One, "Permission bits of a new segment file, octal (default 0600; 0640 lets the group read).")), |c, v| {
        c.segment_mode = parse_mode(&number_text(v)?)?;
        Ok(())
    }),
    setting("http", Some(Flag { off: Some(("--no-http", "Do not start the HTTP API.")), ..flag("--http", "ADDR", Shape::One, "Address of the HTTP API (default 127.0.0.1:8000).") }), |c, v| {
        c.http =
            match v {
                Value::Null | Value::Bool(false) => HttpBind::Off,
                other => HttpBind::Asked(text(other)?.parse().map_err(|_| {
                    format!("expected an address like 127.0.0.1:8000, found {other}")
                })?),
            };
        Ok(())
    }),
    setting("http_allow_remote", Some(flag("--http-allow-remote", "", Shape::Switch, "Allow --http on a non-loopback address; requests then need the bearer token from the MTF_SHIM_TOKEN environment variable, if set.")), |c, v| {
        c.http_allow_remote = boolean(v)?;
        Ok(())
    }),
    setting("http_allow_remote_without_token", Some(Flag { requires: Some("http_allow_remote"), ..flag("--http-allow-remote-without-token", "", Shape::Switch, "Serve a non-loopback --http without MTF_SHIM_TOKEN, on a network you trust.") }),
        |c, v| {
            c.http_allow_remote_without_token = boolean(v)?;
            Ok(())
        },
    ),
    setting("server_time_offset", Some(flag("--server-offset", "OFFSET", Shape::Signed, "Broker server time minus UTC, as +HH:MM or seconds (default +00:00). MT5 bar times are server time; this lets every reader compute true ages.")), |c, v| {
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
    setting("nats", Some(flag("--nats", "URL", Shape::One, "Publish every candle change to this NATS server, for mtf-mirror on other hosts (nats://HOST:4222). The writer never waits for it.")), |c, v| {
        c.nats = match v {
            Value::Null => None,
            other => Some(parse_nats_url(&text(other)?)?),
        };
        Ok(())
    }),
    setting("nats_name", Some(Flag { requires: Some("nats"), ..flag("--nats-name", "NAME", Shape::One, "The segment's name in the NATS subjects (default: the segment's name).") }), |c, v| {
        c.nats_name = Some(text(v)?);
        Ok(())
    }),
    setting("nats_interval_ms", Some(Flag { requires: Some("nats"), ..flag("--nats-interval-ms", "MS", Shape::One, "Forming-bar updates on NATS, at most one per ring every this many ms (default 50).") }), |c, v| {
        let n = number_text(v)?
            .parse::<u64>()
            .map_err(|_| format!("expected milliseconds, found {v}"))?;
        c.nats_interval_ms = parse_nats_interval(n)?;
        Ok(())
    }),
    setting("nats_user", Some(flag("--nats-user", "", Shape::Shared, "")), |c, v| {
        c.nats_auth.nats_user = optional_text(v)?;
        Ok(())
    }),
    setting("nats_creds", Some(flag("--nats-creds", "", Shape::Shared, "")), |c, v| {
        c.nats_auth.nats_creds = optional_path(v)?;
        Ok(())
    }),
    setting("nats_nkey", Some(flag("--nats-nkey", "", Shape::Shared, "")), |c, v| {
        c.nats_auth.nats_nkey = optional_path(v)?;
        Ok(())
    }),
    setting("nats_password_file", Some(flag("--nats-password-file", "", Shape::Shared, "")),
        |c, v| {
            c.nats_auth.nats_password_file = optional_path(v)?;
            Ok(())
        },
    ),
    setting("nats_token_file", Some(flag("--nats-token-file", "", Shape::Shared, "")), |c, v| {
        c.nats_auth.nats_token_file = optional_path(v)?;
        Ok(())
    }),
    setting("nats_ca", Some(flag("--nats-ca", "", Shape::Shared, "")), |c, v| {
        c.nats_auth.nats_ca = optional_path(v)?;
        Ok(())
    }),
    setting("nats_cert", Some(flag("--nats-cert", "", Shape::Shared, "")), |c, v| {
        c.nats_auth.nats_cert = optional_path(v)?;
        Ok(())
    }),
    setting("nats_key", Some(flag("--nats-key", "", Shape::Shared, "")), |c, v| {
        c.nats_auth.nats_key = optional_path(v)?;
        Ok(())
    }),
];

const fn setting(key: &'static str, flag: Option<Flag>, apply: Apply) -> Setting {
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
                (true, Some(flag)) => flag.name.to_owned(),
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
            ("history_keep", Value::from("90d"), true),
            ("history_keep", Value::from("2GiB"), true),
            ("history_keep", Value::from("forever"), false),
            ("history_keep", Value::from("0d"), false),
            ("history_bars", Value::from(100_000), true),
            ("history_bars", Value::from("0"), true),
            ("history_bars", Value::from(10_000_001), false),
            ("history_bars", Value::from(-1), false),
            ("history_ticks", Value::from("2td"), true),
            ("history_ticks", Value::from("36h"), true),
            ("history_ticks", Value::from("off"), true),
            ("history_ticks", Value::from("0td"), false),
            ("history_ticks", Value::from("2GB"), false),
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
                        setting.flag.unwrap().name
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
        let mut flags: Vec<_> = SETTINGS
            .iter()
            .filter_map(|s| s.flag)
            .flat_map(|f| [Some(f.name), f.off.map(|o| o.0)])
            .flatten()
            .collect();
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
