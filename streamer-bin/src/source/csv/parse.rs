//! Reading MT5's CSV exports: encodings, headers, file names, and each row into a bar or a
//! tick, with the reason a row cannot be used.

use std::fmt;
use std::path::{Path, PathBuf};

use shm_core::{days_from_civil, Candle, Timeframe};

use crate::aggregate::{Bar, Tick};
use crate::source::Event;

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bars of one timeframe.
    Bars(Timeframe),
    /// Ticks.
    Ticks,
}

/// Why a CSV file could not be used at all.
#[derive(Debug)]
pub enum CsvError {
    /// The file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The first line is not an MT5 export header.
    NoHeader {
        /// The file.
        path: PathBuf,
        /// What the first line holds.
        found: String,
    },
    /// The symbol or timeframe is neither in the file name nor given.
    Unnamed {
        /// The file.
        path: PathBuf,
        /// What is missing.
        what: &'static str,
    },
    /// The file's symbol is not one the streamer publishes.
    UnknownSymbol {
        /// The file.
        path: PathBuf,
        /// Its symbol.
        symbol: String,
    },
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CsvError::Io { path, .. } => write!(f, "could not read {}", path.display()),
            CsvError::NoHeader { path, found } => write!(
                f,
                "{}: the first line is not an MT5 export header (expected <DATE> <TIME> <OPEN> ... or <DATE> <TIME> <BID> <ASK> ...), found {found:?}",
                path.display()
            ),
            CsvError::Unnamed { path, what } => write!(
                f,
                "{}: no {what} in the file name (MT5 names files SYMBOL_TF_FROM_TO.csv); give it with --csv-{what}",
                path.display()
            ),
            CsvError::UnknownSymbol { path, symbol } => write!(
                f,
                "{}: symbol {symbol:?} is not in the streamer's symbol list",
                path.display()
            ),
        }
    }
}

impl std::error::Error for CsvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CsvError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Decodes a file's bytes: UTF-8 (BOM optional), or UTF-16 with a BOM.
pub fn decode(bytes: &[u8]) -> String {
    let utf16 = |rest: &[u8], le: bool| {
        let units = rest.chunks_exact(2).map(|c| {
            if le {
                u16::from_le_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], c[1]])
            }
        });
        char::decode_utf16(units)
            .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect()
    };
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => String::from_utf8_lossy(rest).into_owned(),
        [0xFF, 0xFE, rest @ ..] => utf16(rest, true),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, false),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Symbol and kind from an MT5 export file name; either may be missing.
pub fn parse_file_name(path: &Path) -> (Option<String>, Option<Kind>) {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let parts: Vec<&str> = stem.split('_').collect();
    let is_stamp = |s: &str| s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit());
    let n = parts.len();
    // Strip the FROM_TO stamps if present.
    let core = if n >= 3 && is_stamp(parts[n - 1]) && is_stamp(parts[n - 2]) {
        &parts[..n - 2]
    } else {
        &parts[..]
    };
    match core {
        [] => (None, None),
        [symbol] => (
            Some((*symbol).to_owned()).filter(|s| !s.is_empty()),
            (core.len() < n).then_some(Kind::Ticks),
        ),
        [symbol @ .., last] => match last.parse::<Timeframe>() {
            Ok(tf) => (Some(symbol.join("_")), Some(Kind::Bars(tf))),
            Err(_) => (
                Some(core.join("_")),
                (core.len() < n).then_some(Kind::Ticks),
            ),
        },
    }
}

/// Where the columns of a file are, found in its header: bars or ticks, each with only the
/// columns it has.
#[derive(Debug, Clone, Copy)]
pub(super) enum Columns {
    /// An "Export bars" file.
    Bars {
        date: usize,
        /// `None` in D1 (and longer) exports, which drop `<TIME>`.
        time: Option<usize>,
        open: usize,
        high: usize,
        low: usize,
        close: usize,
        tickvol: Option<usize>,
        vol: Option<usize>,
        spread: Option<usize>,
    },
    /// An "Export ticks" file.
    Ticks {
        date: usize,
        time: usize,
        bid: usize,
        ask: usize,
        last: Option<usize>,
        volume: Option<usize>,
        flags: Option<usize>,
    },
}

/// The separator and the columns of a header line; `None` if it is not an MT5 export header.
pub(super) fn header(line: &str) -> Option<(char, Columns)> {
    let sep = if line.contains('\t') {
        '\t'
    } else if line.contains(';') {
        ';'
    } else {
        ','
    };
    let names: Vec<String> = line
        .split(sep)
        .map(|s| s.trim().to_ascii_uppercase())
        .collect();
    let find = |n: &str| names.iter().position(|x| x == n);
    let date = find("<DATE>")?;
    if let (Some(open), Some(high), Some(low), Some(close)) = (
        find("<OPEN>"),
        find("<HIGH>"),
        find("<LOW>"),
        find("<CLOSE>"),
    ) {
        return Some((
            sep,
            Columns::Bars {
                date,
                time: find("<TIME>"),
                open,
                high,
                low,
                close,
                tickvol: find("<TICKVOL>"),
                vol: find("<VOL>"),
                spread: find("<SPREAD>"),
            },
        ));
    }
    if let (Some(bid), Some(ask), Some(time)) = (find("<BID>"), find("<ASK>"), find("<TIME>")) {
        return Some((
            sep,
            Columns::Ticks {
                date,
                time,
                bid,
                ask,
                last: find("<LAST>"),
                volume: find("<VOLUME>"),
                flags: find("<FLAGS>"),
            },
        ));
    }
    None
}

/// `YYYY.MM.DD` (or `YYYY-MM-DD`) to days since the epoch.
pub(super) fn parse_date(s: &str) -> Result<i64, String> {
    let mut it = s.split(['.', '-']);
    let (Some(y), Some(m), Some(d), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(format!("bad date {s:?}"));
    };
    let (y, m, d) = (y.parse::<i64>(), m.parse::<u32>(), d.parse::<u32>());
    match (y, m, d) {
        (Ok(y), Ok(m), Ok(d))
            if (1970..=9999).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d) =>
        {
            let days = days_from_civil(y, m, d);
            // Reject 2017.02.30 and the like: they do not round-trip.
            if shm_core::civil_from_days(days) != (y, m, d) {
                return Err(format!("no such date {s:?}"));
            }
            Ok(days)
        }
        _ => Err(format!("bad date {s:?}")),
    }
}

/// `HH:MM[:SS[.mmm]]` to milliseconds of the day.
pub(super) fn parse_time(s: &str) -> Result<i64, String> {
    let bad = || format!("bad time {s:?}");
    let (hms, ms) = match s.split_once('.') {
        Some((hms, frac))
            if !frac.is_empty() && frac.len() <= 3 && frac.bytes().all(|b| b.is_ascii_digit()) =>
        {
            (
                hms,
                frac.parse::<i64>().map_err(|_| bad())? * 10i64.pow(3 - frac.len() as u32),
            )
        }
        Some(_) => return Err(bad()),
        None => (s, 0),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    let nums: Vec<i64> = parts
        .iter()
        .map(|p| p.parse::<i64>().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let (h, m, sec) = match nums[..] {
        [h, m] => (h, m, 0),
        [h, m, sec] => (h, m, sec),
        _ => return Err(bad()),
    };
    if !(0..24).contains(&h) || !(0..60).contains(&m) || !(0..60).contains(&sec) {
        return Err(bad());
    }
    Ok(((h * 60 + m) * 60 + sec) * 1000 + ms)
}

pub(super) fn field<'a>(fields: &[&'a str], i: usize, name: &str) -> Result<&'a str, String> {
    fields
        .get(i)
        .map(|s| s.trim())
        .ok_or_else(|| format!("missing {name} column"))
}

pub(super) fn price(fields: &[&str], i: usize, name: &str) -> Result<f64, String> {
    let s = field(fields, i, name)?;
    s.parse::<f64>().map_err(|_| format!("bad {name} {s:?}"))
}

pub(super) fn optional_u64(fields: &[&str], i: Option<usize>, name: &str) -> Result<u64, String> {
    match i.map(|i| fields.get(i).map_or("", |s| s.trim())) {
        None | Some("") => Ok(0),
        Some(s) => match s.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(v.round() as u64),
            _ => Err(format!("bad {name} {s:?}")),
        },
    }
}

/// When a read-ahead event is due: a bad row at once (it is reported where it was found),
/// anything else at its server time in ms. Derived order: every `Now` before every `At`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum When {
    Now,
    At(i64),
}

/// The latest bid, ask and last of a tick file: MT5's export leaves a cell empty when the
/// tick did not change it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Quote {
    bid: Option<f64>,
    ask: Option<f64>,
    last: f64,
}

/// One parsed, replayable file.
#[derive(Debug)]
pub struct CsvFile {
    pub(super) name: String,
    pub(super) symbol: usize,
    /// The bars' timeframe; M1 for ticks, which build M1 and up.
    pub(super) timeframe: Timeframe,
    pub(super) sep: char,
    pub(super) columns: Columns,
    /// Decoded text and the byte offset of the next unread line.
    pub(super) text: String,
    pub(super) pos: usize,
    pub(super) line: u64,
    pub(super) quote: Quote,
    /// The next event, read ahead so files can be merged by time.
    pub(super) pending: Option<(When, Event)>,
}

impl CsvFile {
    /// Opens `path`. `symbols` is the streamer's symbol list; `symbol` and `timeframe` override
    /// the file name.
    pub fn open(
        path: &Path,
        symbols: &[String],
        symbol: Option<&str>,
        timeframe: Option<Timeframe>,
    ) -> Result<CsvFile, CsvError> {
        let bytes = std::fs::read(path).map_err(|source| CsvError::Io {
            path: path.to_owned(),
            source,
        })?;
        let text = decode(&bytes);
        let first_end = text.find('\n').unwrap_or(text.len());
        let first = text[..first_end].trim_end_matches('\r');
        let (sep, columns) = header(first).ok_or_else(|| CsvError::NoHeader {
            path: path.to_owned(),
            found: first.chars().take(80).collect(),
        })?;
        let (name_symbol, name_kind) = parse_file_name(path);
        let symbol_name = symbol
            .map(str::to_owned)
            .or(name_symbol)
            .ok_or(CsvError::Unnamed {
                path: path.to_owned(),
                what: "symbol",
            })?;
        let timeframe = match columns {
            Columns::Ticks { .. } => Timeframe::M1,
            Columns::Bars { time, .. } => match timeframe.or(match name_kind {
                Some(Kind::Bars(tf)) => Some(tf),
                _ => None,
            }) {
                Some(tf) => tf,
                // No <TIME> column: MT5 writes D1 (and longer) that way.
                None if time.is_none() => Timeframe::D1,
                None => {
                    return Err(CsvError::Unnamed {
                        path: path.to_owned(),
                        what: "timeframe",
                    })
                }
            },
        };
        let index = symbols
            .iter()
            .position(|s| *s == symbol_name)
            .ok_or_else(|| CsvError::UnknownSymbol {
                path: path.to_owned(),
                symbol: symbol_name.clone(),
            })?;
        let file = CsvFile {
            name: path.display().to_string(),
            symbol: index,
            timeframe,
            sep,
            columns,
            pos: (first_end + 1).min(text.len()),
            text,
            line: 1,
            quote: Quote::default(),
            pending: None,
        };
        Ok(file)
    }

    /// The index of the file's symbol in the streamer's list.
    pub fn symbol_index(&self) -> usize {
        self.symbol
    }

    /// The shortest timeframe the file feeds: its bars' timeframe, or M1 for ticks.
    pub fn timeframe(&self) -> Timeframe {
        self.timeframe
    }

    /// The next event and when it is due: a bar or a tick at its server time in ms, or a bad
    /// row, due at once (so that it is reported where it was found in the replay). `None` at
    /// the end of the file.
    fn read_next(&mut self) -> Option<(When, Event)> {
        loop {
            if self.pos >= self.text.len() {
                return None;
            }
            let end = self.text[self.pos..]
                .find('\n')
                .map_or(self.text.len(), |i| self.pos + i);
            let raw = &self.text[self.pos..end];
            self.pos = end + 1;
            self.line += 1;
            let row = raw.trim_end_matches('\r');
            if row.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = row.split(self.sep).collect();
            match parse_row(
                self.timeframe,
                &self.columns,
                self.symbol,
                &mut self.quote,
                &fields,
            ) {
                Ok((t, ev)) => return Some((When::At(t), ev)),
                Err(reason) => {
                    return Some((
                        When::Now,
                        Event::BadRow {
                            file: self.name.clone(),
                            line: self.line,
                            reason,
                        },
                    ));
                }
            }
        }
    }

    pub(super) fn peek(&mut self) -> Option<&(When, Event)> {
        if self.pending.is_none() {
            self.pending = self.read_next();
        }
        self.pending.as_ref()
    }
}

/// Parses one data row of a file of `timeframe` with `columns`. `quote` carries bid and ask
/// forward over the empty cells of tick rows.
pub(super) fn parse_row(
    timeframe: Timeframe,
    columns: &Columns,
    symbol: usize,
    quote: &mut Quote,
    f: &[&str],
) -> Result<(i64, Event), String> {
    let (date, time) = match *columns {
        Columns::Bars { date, time, .. } => (date, time),
        Columns::Ticks { date, time, .. } => (date, Some(time)),
    };
    let day = parse_date(field(f, date, "date")?)?;
    let tod = match time {
        Some(i) => parse_time(field(f, i, "time")?)?,
        None => 0,
    };
    let time_ms = day * 86_400_000 + tod;
    match *columns {
        Columns::Bars {
            open,
            high,
            low,
            close,
            tickvol,
            vol,
            spread,
            ..
        } => {
            let tf = timeframe;
            let candle = Candle {
                time: time_ms.div_euclid(1000),
                open: price(f, open, "open")?,
                high: price(f, high, "high")?,
                low: price(f, low, "low")?,
                close: price(f, close, "close")?,
                tick_volume: optional_u64(f, tickvol, "tick volume")?,
                real_volume: optional_u64(f, vol, "volume")?,
                spread: optional_u64(f, spread, "spread")?.min(i32::MAX as u64) as i32,
                ..Candle::default()
            };
            if tf.bar_start(candle.time) != candle.time {
                return Err(format!("bar time is not on a {tf} boundary"));
            }
            Ok((
                time_ms,
                Event::Bar(Bar {
                    symbol,
                    timeframe: tf,
                    candle,
                    fold_up: true,
                    amend: false,
                }),
            ))
        }
        Columns::Ticks {
            bid: bid_at,
            ask: ask_at,
            last: last_at,
            volume: volume_at,
            flags: flags_at,
            ..
        } => {
            let cell = |i: usize| f.get(i).map_or("", |s| s.trim());
            let parse =
                |s: &str, name: &str| s.parse::<f64>().map_err(|_| format!("bad {name} {s:?}"));
            if !cell(bid_at).is_empty() {
                quote.bid = Some(parse(cell(bid_at), "bid")?);
            }
            if !cell(ask_at).is_empty() {
                quote.ask = Some(parse(cell(ask_at), "ask")?);
            }
            let (Some(bid), Some(ask)) = (quote.bid, quote.ask) else {
                return Err("no bid and ask yet (a tick export must start with both)".into());
            };
            if let Some(i) = last_at.filter(|&i| !cell(i).is_empty()) {
                quote.last = parse(cell(i), "last")?;
            }
            let volume = optional_u64(f, volume_at, "volume")?;
            // MT5's own TICK_FLAG_* bits, as the export has them; bits MT5 does not define
            // are left out (the tick ring keeps only MT5's), and an empty cell leaves the
            // flags to be derived from what changed.
            let flags = match flags_at.map(cell).filter(|c| !c.is_empty()) {
                Some(c) => {
                    c.parse::<u32>().map_err(|_| format!("bad flags {c:?}"))?
                        & shm_core::TICK_FLAGS_KNOWN
                }
                None => 0,
            };
            Ok((
                time_ms,
                Event::Tick({
                    let mut t = Tick::quote(symbol, time_ms, bid, ask, volume);
                    (t.tick.last, t.tick.flags) = (quote.last, flags);
                    t
                }),
            ))
        }
    }
}
