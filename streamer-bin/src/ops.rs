//! Operator commands: `inspect` (one screen of segment state) and `tail` (candles as they
//! change). Both are ordinary readers.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shm_core::{iso8601_ms, now_ns, Candle, Counter, OpenError, Reader, SegmentPath, Timeframe};

fn ago(ns: u64) -> String {
    if ns == 0 {
        return "never".into();
    }
    format!(
        "{} ago",
        age(Duration::from_nanos(now_ns().saturating_sub(ns)))
    )
}

/// `12 ms`, `3.4 s`, `7 min`.
fn age(d: Duration) -> String {
    match d.as_nanos() {
        d if d < 1_000_000_000 => format!("{} ms", d / 1_000_000),
        d if d < 120_000_000_000 => format!("{:.1} s", d as f64 / 1e9),
        d => format!("{} min", d / 60_000_000_000),
    }
}

fn server_time(secs: i64) -> String {
    if !(0..=shm_core::LATEST_TIME).contains(&secs) {
        return format!("an impossible time ({secs})");
    }
    let iso = iso8601_ms(secs * 1000);
    // Server time is not UTC: drop the `Z` and the milliseconds.
    format!("{} {}", &iso[..10], &iso[11..19])
}

/// A tick's server time to the millisecond, or what is wrong with it.
fn server_time_ms(ms: i64) -> String {
    if !(0..=shm_core::LATEST_TIME.saturating_mul(1000)).contains(&ms) {
        return format!("an impossible time ({ms})");
    }
    iso8601_ms(ms)[..23].replace('T', " ")
}

/// The `inspect` report of the segment at `path`.
pub fn inspect(path: &SegmentPath) -> Result<String, OpenError> {
    let reader = Reader::open(path)?;
    let st = reader.status();
    let mut out = String::new();
    let offset = st.server_time_offset_s;
    let _ = writeln!(out, "segment    {}", reader.path().display());
    let _ = writeln!(
        out,
        "writer     {} (pid {}, generation {}, state {}, heartbeat {} ago)",
        st.liveness,
        st.writer_pid,
        st.generation,
        st.writer_state.map_or("unknown", |s| s.as_str()),
        age(st.heartbeat_age)
    );
    let _ = writeln!(
        out,
        "started    {}   segment created {}",
        iso8601_ms((st.writer_start_ns / 1_000_000) as i64),
        iso8601_ms((st.created_ns / 1_000_000) as i64)
    );
    let _ = writeln!(
        out,
        "feed       {} ({})   server time {}   last change {}",
        st.feed_state.map_or("unknown", |s| s.as_str()),
        st.feed_kind.map_or("unknown", |k| k.as_str()),
        shm_core::format_server_offset(offset),
        ago(st.last_update_ns)
    );
    if st.counters.get(Counter::ClockJumpsBack) > 0 {
        let _ = writeln!(
            out,
            "clock      the writer's wall clock went back {} time(s) while it ran: times it \
             stamped since may be off by the step",
            st.counters.get(Counter::ClockJumpsBack)
        );
    }
    let counters: Vec<String> = Counter::ALL
        .iter()
        .map(|&c| (c, st.counters.get(c)))
        .filter(|&(c, v)| v > 0 || matches!(c, Counter::TicksProcessed | Counter::BarsClosed))
        .map(|(c, v)| format!("{c} {v}"))
        .collect();
    let _ = writeln!(out, "counters   {}", counters.join("  "));
    let _ = writeln!(
        out,
        "\n{:<14} {:>24} {:>14} {:>14} {:>12}",
        "symbol", "last tick (server)", "bid", "ask", "processed"
    );
    for symbol in reader.layout().symbols() {
        match reader.last_tick(symbol) {
            Some(t) => {
                let _ = writeln!(
                    out,
                    "{symbol:<14} {:>24} {:>14} {:>14} {:>12}",
                    &server_time_ms(t.server_time_ms),
                    t.bid,
                    t.ask,
                    ago(t.received_ns)
                );
            }
            None => {
                let _ = writeln!(out, "{symbol:<14} {:>24}", "no tick yet");
            }
        }
    }
    write_ticks_and_info(&mut out, &reader);
    // The oldest bar is the depth of history the ring holds (a reader asking further back
    // gets it from the terminal, where the MetaTrader5 package is installed, or not at all).
    let _ = writeln!(
        out,
        "\n{:<20} {:>14} {:>10} {:>20} {:>20} {:>14}",
        "ring", "closed/cap", "pushed", "oldest bar (server)", "newest bar (server)", "changed"
    );
    for ring in reader.rings() {
        let name = format!("{} {}", ring.symbol(), ring.timeframe());
        match ring.stats() {
            Ok(s) => {
                // Held closed candles against the capacity; the forming candle is kept beside
                // them, not in one of the `capacity` slots, so it is shown apart.
                let held = s.closed_total.min(u64::from(ring.capacity()));
                let forming = s.buffered > held;
                let note = if ring.unknown_to_source() {
                    "  (unknown to the source)"
                } else {
                    ""
                };
                let oldest = match ring.closed_at(s.closed_total - held) {
                    Ok(Some(c)) => server_time(c.time),
                    _ => s.newest_time.map_or("-".into(), server_time),
                };
                let _ = writeln!(
                    out,
                    "{name:<20} {:>14} {:>10} {:>20} {:>20} {:>14}{note}",
                    format!(
                        "{held}/{}{}",
                        ring.capacity(),
                        if forming { " +1" } else { "" }
                    ),
                    s.closed_total,
                    oldest,
                    s.newest_time.map_or("-".into(), server_time),
                    ago(s.last_change_ns)
                );
            }
            Err(e) => {
                let _ = writeln!(out, "{name:<20} {e}");
            }
        }
    }
    write_history(&mut out, path, &reader);
    Ok(out)
}

/// The history store's depth, stream by stream: where it is, and for each ring and each
/// symbol's ticks how many records it holds from when to when (a damaged file is named with
/// its error). The store is the one the streamer keeps by default for this segment (or
/// `MTF_HISTORY_DIR`).
fn write_history(out: &mut String, path: &SegmentPath, reader: &Reader) {
    let dir = shm_core::default_history_dir(path);
    let Ok(trust) = shm_core::Trust::for_process() else {
        return;
    };
    let history = shm_core::History::at(&dir, trust);
    let _ = writeln!(out, "\nhistory store {}", dir.display());
    let _ = writeln!(
        out,
        "{:<20} {:>10} {:>24} {:>24}",
        "stream", "records", "oldest (server)", "newest (server)"
    );
    let mut line =
        |name: String, held: Result<(u64, Option<i64>, Option<i64>), String>, ms: bool| {
            let when = |t: Option<i64>| match t {
                Some(t) if ms => server_time_ms(t),
                Some(t) => server_time(t),
                None => "-".into(),
            };
            let _ = match held {
                Ok((n, oldest, newest)) => writeln!(
                    out,
                    "{name:<20} {n:>10} {:>24} {:>24}",
                    when(oldest),
                    when(newest)
                ),
                Err(e) => writeln!(out, "{name:<20} {e}"),
            };
        };
    let mut symbols: Vec<String> = Vec::new();
    for ring in reader.rings() {
        let mut bars = history.bars(ring.symbol(), ring.timeframe());
        let held = bars
            .sync()
            .map(|()| (bars.len(), bars.oldest(), bars.newest()));
        line(
            format!("{} {}", ring.symbol(), ring.timeframe()),
            held.map_err(|e| e.to_string()),
            false,
        );
        if !symbols.iter().any(|s| s == ring.symbol()) {
            symbols.push(ring.symbol().to_owned());
        }
    }
    for symbol in symbols {
        let mut ticks = history.ticks(&symbol);
        let held = ticks
            .sync()
            .map(|()| (ticks.len(), ticks.oldest(), ticks.newest()));
        line(
            format!("{symbol} ticks"),
            held.map_err(|e| e.to_string()),
            true,
        );
    }
}

/// One line for `tail`.
pub fn candle_line(c: &Candle) -> String {
    format!(
        "{}  O {}  H {}  L {}  C {}  V {}  S {}  {}",
        server_time(c.time),
        c.open,
        c.high,
        c.low,
        c.close,
        c.tick_volume,
        c.spread,
        if c.forming { "forming" } else { "closed" }
    )
}

/// Why `tail` stopped.
#[derive(Debug)]
pub enum TailError {
    /// The segment could not be opened.
    Open(OpenError),
    /// The segment has no such ring.
    NoRing {
        /// The symbol asked for.
        symbol: String,
        /// The timeframe asked for.
        timeframe: Timeframe,
        /// What it has.
        available: String,
    },
    /// The segment has no such symbol.
    NoSymbol {
        /// The symbol asked for.
        symbol: String,
        /// The symbols it has.
        available: String,
    },
}

impl std::fmt::Display for TailError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TailError::Open(e) => e.fmt(f),
            TailError::NoRing {
                symbol,
                timeframe,
                available,
            } => {
                write!(
                    f,
                    "the segment has no {symbol} {timeframe} ring; it has: {available}"
                )
            }
            TailError::NoSymbol { symbol, available } => {
                write!(f, "the segment has no symbol {symbol}; it has: {available}")
            }
        }
    }
}

impl std::error::Error for TailError {}

/// Prints the candles of one ring as they change until `stop` is set.
pub fn tail(
    path: &SegmentPath,
    symbol: &str,
    tf: Timeframe,
    stop: &AtomicBool,
    out: &mut dyn Write,
) -> Result<(), TailError> {
    let mut reader = Reader::open(path).map_err(TailError::Open)?;
    if reader.ring(symbol, tf).is_none() {
        let available: Vec<String> = reader
            .rings()
            .map(|r| format!("{} {}", r.symbol(), r.timeframe()))
            .collect();
        return Err(TailError::NoRing {
            symbol: symbol.into(),
            timeframe: tf,
            available: available.join(", "),
        });
    }
    let mut closed = Vec::new();
    let mut last_closed: Option<Candle> = None;
    let mut last_forming: Option<Candle> = None;
    let mut last_liveness = None;
    let mut first = true;
    // Relaxed: the stop flag carries no data with it.
    while !stop.load(Ordering::Relaxed) {
        let _ = reader.refresh();
        let liveness = reader.status().liveness;
        if last_liveness != Some(liveness) {
            let _ = writeln!(out, "# writer {liveness}");
            last_liveness = Some(liveness);
        }
        if let Some(ring) = reader.ring(symbol, tf) {
            // The first screen shows a little history; then only changes.
            let want = if first { 5 } else { 3 };
            if let Ok(forming) = ring.snapshot(want, &mut closed) {
                for c in &closed {
                    if last_closed.is_none_or(|l| c.time > l.time || (c.time == l.time && *c != l))
                    {
                        let _ = writeln!(out, "{}", candle_line(c));
                        last_closed = Some(*c);
                    }
                }
                if let Some(f) = forming.filter(|_| forming != last_forming) {
                    let _ = writeln!(out, "{}", candle_line(&f));
                }
                last_forming = forming;
                first = false;
            }
        }
        let _ = out.flush();
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// What `tail` follows: a ring's candles, or a symbol's ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailWhat {
    /// The candles of the ring of this timeframe.
    Candles(Timeframe),
    /// Every tick of the symbol's tick ring.
    Ticks,
}

impl std::str::FromStr for TailWhat {
    type Err = shm_core::UnknownTimeframe;

    fn from_str(s: &str) -> Result<TailWhat, Self::Err> {
        if s.eq_ignore_ascii_case("ticks") {
            return Ok(TailWhat::Ticks);
        }
        s.parse().map(TailWhat::Candles)
    }
}

/// One tick as `tail SYMBOL ticks` prints it: server time, prices, volume and MT5's flags.
fn tick_line(t: &shm_core::Tick) -> String {
    let names = [
        (shm_core::TICK_FLAG_BID, "BID"),
        (shm_core::TICK_FLAG_ASK, "ASK"),
        (shm_core::TICK_FLAG_LAST, "LAST"),
        (shm_core::TICK_FLAG_VOLUME, "VOLUME"),
        (shm_core::TICK_FLAG_BUY, "BUY"),
        (shm_core::TICK_FLAG_SELL, "SELL"),
    ];
    let flags: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| t.flags & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    format!(
        "{}  bid {}  ask {}  last {}  volume {}  flags {}",
        server_time_ms(t.time_msc),
        t.bid,
        t.ask,
        t.last,
        t.volume_real,
        flags.join("|")
    )
}

/// Prints a symbol's ticks as they arrive (the newest five first) until `stop` is set: each
/// once, in order; a line says so when the ring lapped the printer (a slow terminal).
pub fn tail_ticks(
    path: &SegmentPath,
    symbol: &str,
    stop: &AtomicBool,
    out: &mut dyn Write,
) -> Result<(), TailError> {
    let mut reader = Reader::open(path).map_err(TailError::Open)?;
    if reader.ticks(symbol).is_none() {
        let available: Vec<&str> = reader.layout().symbols().collect();
        return Err(TailError::NoSymbol {
            symbol: symbol.into(),
            available: available.join(", "),
        });
    }
    let mut ticks = Vec::new();
    let mut next: Option<u64> = None;
    let mut last_liveness = None;
    // Relaxed: the stop flag carries no data with it.
    while !stop.load(Ordering::Relaxed) {
        if reader.refresh().unwrap_or(false) {
            next = None; // another segment: its positions start again
        }
        let liveness = reader.status().liveness;
        if last_liveness != Some(liveness) {
            let _ = writeln!(out, "# writer {liveness}");
            last_liveness = Some(liveness);
        }
        let since = reader.changes();
        if let Some(ring) = reader.ticks(symbol) {
            let from = *next.get_or_insert_with(|| ring.total().saturating_sub(5));
            if let Ok(span) = ring.read_from(from, 4096, &mut ticks) {
                if span.first > from {
                    let _ = writeln!(out, "# {} ticks passed while printing", span.first - from);
                }
                for t in &ticks {
                    let _ = writeln!(out, "{}", tick_line(t));
                }
                next = Some(span.first + ticks.len() as u64);
            }
        }
        let _ = out.flush();
        reader.wait_for_change(since, Duration::from_millis(100));
    }
    Ok(())
}

/// The tick rings (held against their depth, ticks ever written) and each symbol's key
/// information, and the terminal that feeds the segment.
fn write_ticks_and_info(out: &mut String, reader: &Reader) {
    match reader.terminal() {
        Ok(Some(t)) => {
            let i = &t.info;
            let _ = writeln!(
                out,
                "\nterminal   {} ({}, build {}, {}), account {} on {}, confirmed {}",
                i.name,
                i.company,
                i.build,
                if i.connected {
                    "connected"
                } else {
                    "disconnected"
                },
                i.login,
                i.server,
                ago(t.confirmed_ns)
            );
        }
        Ok(None) => {}
        Err(e) => {
            let _ = writeln!(out, "\nterminal   unreadable: {e}");
        }
    }
    let _ = writeln!(
        out,
        "\n{:<14} {:>16} {:>12} {:>7} {:>12} {:>10} {:>10}",
        "ticks", "held/depth", "written", "digits", "point", "info", "updated"
    );
    for symbol in reader.layout().symbols() {
        let Some(ticks) = reader.ticks(symbol) else {
            continue;
        };
        let total = ticks.total();
        let held = format!("{}/{}", total.min(ticks.capacity()), ticks.capacity());
        let (digits, point, source, updated) = match reader.symbol_info(symbol) {
            Ok(Some(r)) => (
                match r.info.get("digits") {
                    Some(shm_core::InfoValue::Int(d)) => d.to_string(),
                    _ => "-".into(),
                },
                match r.info.get("point") {
                    Some(shm_core::InfoValue::Float(p)) => p.to_string(),
                    _ => "-".into(),
                },
                match r.source {
                    shm_core::InfoSource::Terminal => "terminal",
                    shm_core::InfoSource::Derived => "derived",
                    shm_core::InfoSource::Exported => "exported",
                },
                ago(r.updated_ns),
            ),
            Ok(None) => ("-".into(), "-".into(), "none", "-".into()),
            Err(_) => ("-".into(), "-".into(), "damaged", "-".into()),
        };
        let _ = writeln!(
            out,
            "{symbol:<14} {held:>16} {total:>12} {digits:>7} {point:>12} {source:>10} {updated:>10}"
        );
    }
}
