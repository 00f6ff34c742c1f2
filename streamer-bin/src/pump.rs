//! The pump: the loop that moves the feed's events into the aggregator and the segment,
//! heartbeats, and reports a replay's progress.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shm_core::{Counter, FeedState, Writer};

use crate::aggregate::Aggregator;
use crate::banner::self_command;
use crate::config::Config;
use crate::error::StreamerError;
use crate::source::{Event, Source};

/// How often a replay reports its progress.
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// `3 min 20 s`, `2 h 05 min`, `12 s`.
pub(crate) fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

/// How often the writer heartbeats, at the least (the segment promises 250 ms).
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(100);

/// The publishing loop and its state: events from the source into the aggregator and the
/// writer, heartbeats, and what is reported along the way.
pub(crate) struct Pump<'a> {
    pub(crate) config: &'a Config,
    pub(crate) symbols: &'a [String],
    pub(crate) writer: Writer,
    pub(crate) agg: Aggregator,
    /// Symbol information of a feed without a terminal (none is derived for the mt5 feed).
    pub(crate) derive: crate::derive::Derive,
    pub(crate) source: Box<dyn Source>,
    pub(crate) banner: &'a mut dyn Write,
    pub(crate) started: Instant,
    /// Whether the writer has been marked running (the source is past its backfill).
    pub(crate) running: bool,
    pub(crate) bad_rows_reported: u32,
    pub(crate) offset_warned: bool,
    pub(crate) last_progress: Instant,
    pub(crate) finished_reported: bool,
    /// When a history store error was last said on stderr.
    pub(crate) history_warned: Option<Instant>,
}

impl Pump<'_> {
    /// The writer's heartbeat, and a word on stderr when the wall clock went back (the
    /// segment counts it too: `inspect` and `/streamer/health` show it).
    fn beat(&mut self) {
        // A history store failing (a full disk): said on stderr at once, then once a minute
        // while it lasts; `history_errors` counts every failed append.
        if let Some(e) = self.writer.take_history_error() {
            if self
                .history_warned
                .is_none_or(|at| at.elapsed() >= Duration::from_secs(60))
            {
                eprintln!(
                    "warning: {e} ({} failed appends so far)",
                    self.writer.counter(Counter::HistoryErrors)
                );
                self.history_warned = Some(Instant::now());
            }
        }
        if let Some(step) = self.writer.heartbeat() {
            eprintln!(
                "warning: the system clock went back by {:.1} s; candle times continue from \
                 where they were (the synthetic feed keeps its own steady clock, a terminal \
                 sends its server's), and change times stamped by this host are off by that much",
                step.as_secs_f64()
            );
        }
    }

    /// Publishes until `stop` is set: once the source is past its backfill (or 2 s after the
    /// request, whichever is first), so that a `stop` set before `run` still publishes the
    /// backfill: a one-shot run.
    pub(crate) fn run(&mut self, stop: &AtomicBool) -> Result<(), StreamerError> {
        let mut events = Vec::with_capacity(8192);
        let mut last_beat = Instant::now();
        let mut stop_asked: Option<Instant> = None;
        loop {
            self.source
                .poll(&mut events, HEARTBEAT)
                .map_err(StreamerError::Source)?;
            let published = !events.is_empty();
            for (i, ev) in events.drain(..).enumerate() {
                self.apply(ev);
                // Keep the clock (and so candle change times) fresh during long batches, and
                // let waiting readers see them.
                if i % 1024 == 1023 {
                    self.beat();
                    self.writer.notify();
                }
            }
            // Wake the readers waiting for a change: one counter bump per batch, and a system
            // call only when someone waits.
            if published {
                self.writer.notify();
            }
            self.report_progress();
            if last_beat.elapsed() >= HEARTBEAT / 2 {
                self.beat();
                last_beat = Instant::now();
            }
            // Relaxed: the signal handler's flag carries no data with it.
            if stop.load(Ordering::Relaxed) {
                let asked = *stop_asked.get_or_insert_with(Instant::now);
                if self.running || asked.elapsed() > Duration::from_secs(2) {
                    return Ok(());
                }
            }
        }
    }

    /// One event of the source.
    fn apply(&mut self, ev: Event) {
        let writer = &mut self.writer;
        match ev {
            Event::Tick(t) => {
                self.derive
                    .observe(writer, t.symbol, &[t.tick.bid, t.tick.ask]);
                self.agg.on_tick(writer, &t);
            }
            Event::LatestTick(t) => {
                self.derive
                    .observe(writer, t.symbol, &[t.tick.bid, t.tick.ask]);
                self.agg.on_latest_tick(writer, &t);
            }
            Event::Bar(b) => {
                let c = &b.candle;
                self.derive
                    .observe(writer, b.symbol, &[c.open, c.high, c.low, c.close]);
                self.agg.on_bar(writer, &b);
            }
            Event::StoredBars {
                symbol,
                timeframe,
                bars,
            } => self.agg.on_stored_bars(writer, symbol, timeframe, &bars),
            Event::StoredTicks(ticks) => self.agg.on_stored_ticks(writer, &ticks),
            Event::SymbolInfo { symbol, info } => {
                if let Some(id) = self.symbols.get(symbol).and_then(|s| writer.symbol(s)) {
                    if let Err(e) =
                        writer.set_symbol_info(id, &info, shm_core::InfoSource::Terminal)
                    {
                        // A record no symbol can have is never served: the old one stays.
                        writer.add(Counter::RejectedSymbolInfo, 1);
                        eprintln!(
                            "warning: {}'s symbol information was refused: {e}",
                            self.symbols[symbol]
                        );
                    }
                }
            }
            Event::Terminal(terminal) => {
                if let Err(e) = writer.set_terminal(&terminal) {
                    writer.add(Counter::RejectedSymbolInfo, 1);
                    eprintln!("warning: the terminal's identity was refused: {e}");
                }
            }
            Event::Feed(state) => {
                writer.set_feed_state(state);
                if state != FeedState::Backfilling && !self.running {
                    writer.set_running();
                    self.running = true;
                    let _ = writeln!(
                        self.banner,
                        "running after {} ms",
                        self.started.elapsed().as_millis()
                    );
                }
            }
            Event::Count(counter, n) => writer.add(counter, n),
            Event::ServerTimeOffset(seconds) => {
                // The operator's setting wins; the gateway's only fills in a default, and only
                // within the offsets that exist (UTC-12 to UTC+14).
                if !shm_core::SERVER_OFFSET_RANGE.contains(&seconds) {
                    if !self.offset_warned {
                        eprintln!(
                            "warning: the source reported a server-time offset of {seconds} s, \
                             outside UTC-12..UTC+14; ignored (set --server-offset)"
                        );
                        self.offset_warned = true;
                    }
                } else {
                    if self.config.server_time_offset_s == 0 && seconds != 0 {
                        writer.set_server_time_offset(seconds);
                    }
                    // The feed's clock is known: bars far ahead of it are refused from now on.
                    let offset = match self.config.server_time_offset_s {
                        0 => seconds,
                        configured => configured,
                    };
                    self.agg.set_feed_offset(offset);
                }
            }
            Event::SymbolUnknown { symbol, unknown } => {
                if let Some(id) = self.symbols.get(symbol).and_then(|s| writer.symbol(s)) {
                    writer.set_unknown_to_source(id, unknown);
                }
            }
            Event::BadRow { file, line, reason } => {
                writer.add(Counter::BadRows, 1);
                if self.bad_rows_reported < 20 {
                    eprintln!("warning: {file}:{line}: skipped: {reason}");
                } else if self.bad_rows_reported == 20 {
                    eprintln!(
                        "warning: more bad rows; `{} inspect` counts them",
                        self_command()
                    );
                }
                self.bad_rows_reported += 1;
            }
        }
    }

    /// A replay's progress every few seconds, and its last line when it is done.
    fn report_progress(&mut self) {
        let Some(p) = self.source.progress() else {
            return;
        };
        let finished = self.writer.feed_state() == Some(FeedState::Finished);
        if finished && !self.finished_reported {
            self.finished_reported = true;
            let _ = writeln!(
                self.banner,
                "replay finished: {} bars and ticks in {:.1} s; the candles stay served until \
                 Ctrl-C",
                p.events,
                self.started.elapsed().as_secs_f64()
            );
            // Rings that dropped their oldest candles: say how to keep them all.
            let mut short: Vec<String> = Vec::new();
            let layout = self.writer.layout();
            for spec in layout.rings() {
                let symbol = layout
                    .symbols()
                    .nth(spec.symbol_index as usize)
                    .unwrap_or_default();
                if let Some(ring) = self.writer.ring(symbol, spec.timeframe) {
                    let total = self.writer.closed_total(ring);
                    if total > u64::from(spec.capacity)
                        && !short.iter().any(|s| s.starts_with(spec.timeframe.name()))
                    {
                        short.push(format!("{}={total}", spec.timeframe));
                    }
                }
            }
            if !short.is_empty() {
                let _ = writeln!(
                    self.banner,
                    "  the rings keep only their newest candles; to keep every one, add \
                     --buffer {}",
                    short.join(" --buffer ")
                );
            }
        } else if !finished && self.last_progress.elapsed() >= PROGRESS_EVERY {
            self.last_progress = Instant::now();
            let run_s = self.started.elapsed().as_secs_f64();
            let eta = if p.fraction > 0.0 {
                format!(
                    ", about {} left",
                    human_duration(run_s * (1.0 - p.fraction) / p.fraction)
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                self.banner,
                "replay {:.0}%: {} bars and ticks{eta}",
                p.fraction * 100.0,
                p.events
            );
        }
    }
}
