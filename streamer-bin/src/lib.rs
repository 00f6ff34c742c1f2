//! The MultiTimeframeStreamer: turns a feed into M1…MN1 candles and publishes them, as the single
//! writer, into a shared-memory segment that any process on the host can read.
//!
//! A feed ([`source::Source`]: synthetic, MT5 CSV replay or the MT5 gateway) produces ticks and
//! bars; the [`aggregate::Aggregator`] folds each into the forming candle of every timeframe and
//! publishes every change at once. [`run`] ties them together until asked to stop.
//!
//! ```
//! use std::sync::{atomic::AtomicBool, Arc};
//! use streamer_bin::{config::Config, run};
//!
//! # let dir = std::env::temp_dir().join(format!("streamer-doc-{}", std::process::id()));
//! let mut config = Config::default();
//! config.segment = shm_core::SegmentPath::at(&dir);
//! config.http = streamer_bin::config::HttpBind::Off;
//! let stop = Arc::new(AtomicBool::new(true)); // already asked to stop: one pass, then exit
//! let summary = run(&config, &stop, &mut std::io::sink())?;
//! assert!(summary.bars_closed > 0, "the backfill closed bars");
//! # shm_core::remove_segment(&shm_core::SegmentPath::at(&dir))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod aggregate;
pub mod cli;
pub mod config;
pub mod ops;
pub mod settings;
pub mod source;

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shm_core::{
    Counter, CreateError, FeedKind, FeedState, Layout, LayoutError, Reader, Timeframe, Writer,
    WriterOptions,
};

use aggregate::Aggregator;
use config::{Config, ConfigError, HttpBind, SourceKind};
use source::csv::{CsvError, CsvFile, CsvReplay};
use source::synthetic::{profile, Synthetic};
use source::{Event, Source, SourceError};

/// Why the streamer stopped with an error.
#[derive(Debug)]
pub enum StreamerError {
    /// A configuration value is unusable.
    Config(ConfigError),
    /// The symbols and buffer sizes do not make a valid segment layout.
    Layout(LayoutError),
    /// The segment could not be created or taken over.
    Segment(CreateError),
    /// A CSV file could not be used at all.
    Csv(CsvError),
    /// The source failed for good.
    Source(SourceError),
    /// The embedded HTTP shim could not start.
    Http(http_shim::StartError),
    /// The NATS publisher could not start.
    Nats(nats_bridge::BridgeError),
}

impl fmt::Display for StreamerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamerError::Config(e) => e.fmt(f),
            StreamerError::Layout(e) => write!(f, "bad segment layout: {e}"),
            StreamerError::Segment(e @ CreateError::AlreadyRunning { .. }) => write!(
                f,
                "{e}; or run this one beside it on another segment and port \
                 (--segment NAME --http 127.0.0.1:PORT, or --no-http)"
            ),
            StreamerError::Segment(e) => e.fmt(f),
            StreamerError::Csv(e) => e.fmt(f),
            StreamerError::Source(e) => write!(f, "source failed: {e}"),
            StreamerError::Http(e) => write!(f, "HTTP API: {e}"),
            StreamerError::Nats(e) => write!(f, "NATS: {e}"),
        }
    }
}

impl std::error::Error for StreamerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StreamerError::Segment(e) => e.source(),
            StreamerError::Csv(e) => e.source(),
            StreamerError::Http(e) => e.source(),
            StreamerError::Nats(e) => e.source(),
            _ => None,
        }
    }
}

/// What a run did, for the exit message and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Ticks accepted.
    pub ticks: u64,
    /// Candles closed.
    pub bars_closed: u64,
    /// Rows and values rejected, over all reasons.
    pub rejected: u64,
}

/// What to publish.
#[derive(Debug)]
pub struct Plan {
    /// The symbols, in order.
    pub symbols: Vec<String>,
    /// The timeframes of each symbol (a bar file feeds only its own and longer ones).
    pub timeframes: Vec<Vec<Timeframe>>,
    /// The CSV files, if that is the source.
    pub files: Vec<CsvFile>,
}

/// Resolves the symbols, their timeframes and the CSV files of `config`.
pub fn plan(config: &Config) -> Result<Plan, StreamerError> {
    if config.source != SourceKind::Csv {
        let symbols: Vec<String> = config.symbols.clone().unwrap_or_else(|| {
            config::DEFAULT_SYMBOLS
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
        });
        let timeframes = vec![config.timeframes.clone(); symbols.len()];
        return Ok(Plan {
            symbols,
            timeframes,
            files: Vec::new(),
        });
    }
    if config.csv_files.is_empty() {
        return Err(StreamerError::Config(ConfigError {
            field: "--csv".into(),
            message: "the csv source needs at least one file".into(),
        }));
    }
    // Without an explicit symbol list, the files name the symbols.
    let symbols = if let Some(asked) = &config.symbols {
        asked.clone()
    } else {
        let mut names: Vec<String> = Vec::new();
        for path in &config.csv_files {
            let name = config
                .csv_symbol
                .clone()
                .or(source::csv::parse_file_name(path).0);
            if let Some(n) =
                name.filter(|n| shm_core::validate_symbol(n).is_ok() && !names.contains(n))
            {
                names.push(n);
            }
        }
        names
    };
    let files = config
        .csv_files
        .iter()
        .map(|p| {
            CsvFile::open(
                p,
                &symbols,
                config.csv_symbol.as_deref(),
                config.csv_timeframe,
            )
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(StreamerError::Csv)?;
    // A bar source builds only its own timeframe and longer ones.
    let tfs = (0..symbols.len())
        .map(|i| {
            let shortest = files
                .iter()
                .filter(|f| f.symbol_index() == i)
                .map(CsvFile::timeframe)
                .min()
                .unwrap_or(Timeframe::M1);
            let mut own: Vec<_> = config
                .timeframes
                .iter()
                .copied()
                .filter(|&tf| tf >= shortest)
                .collect();
            if own.is_empty() {
                own.push(shortest);
            }
            own
        })
        .collect();
    Ok(Plan {
        symbols,
        timeframes: tfs,
        files,
    })
}

/// The segment layout for `symbols` with their timeframes.
pub fn layout(
    config: &Config,
    symbols: &[String],
    tfs: &[Vec<Timeframe>],
) -> Result<Layout, StreamerError> {
    let mut layout = Layout::new();
    for (symbol, tfs) in symbols.iter().zip(tfs) {
        for &tf in tfs {
            let capacity = config.capacity(tf);
            layout
                .add_ring(symbol, tf, capacity)
                .map_err(StreamerError::Layout)?;
        }
    }
    Ok(layout)
}

/// The segment's record of this run's feed.
fn feed_kind(source: SourceKind) -> FeedKind {
    match source {
        SourceKind::Synthetic => FeedKind::Synthetic,
        SourceKind::Csv => FeedKind::Csv,
        SourceKind::Mt5 => FeedKind::Mt5,
    }
}

/// Why the candles of the segment already at `path` must not be continued by a feed of
/// `kind`, if they must not; `None` for a warm restart (or no usable segment).
///
/// - Another kind of feed wrote them (or a version that did not record it, unless this run
///   is synthetic too): the default symbols are real broker names, so demo prices must never
///   mix with a terminal's.
/// - This run replays CSV files: a replay publishes everything from the files again, so the
///   rings start empty rather than refusing every bar as already seen.
/// - A ring holds a candle dated beyond what any broker's clock can show (a bad tick of an
///   earlier run): continuing would refuse every later tick as out of order.
/// - `offset`, the server-time offset this run stamps (`None` when the feed will say), is
///   not the one the candles were stamped with: their times are another clock's, and the
///   new offset would relabel them (an hour's worth of ticks refused as older, too).
pub fn start_clean_reason(
    path: &shm_core::SegmentPath,
    kind: FeedKind,
    offset: Option<i64>,
) -> Option<String> {
    let reader = Reader::open(path).ok()?;
    let st = reader.status();
    let before = st.feed_kind.unwrap_or(FeedKind::Unrecorded);
    if let Some(new) = offset.filter(|&o| o != st.server_time_offset_s) {
        return Some(format!(
            "the segment's candles are in server time {} and this run's is {}; times of two \
             clocks never mix",
            shm_core::format_server_offset(st.server_time_offset_s),
            shm_core::format_server_offset(new)
        ));
    }
    if kind == FeedKind::Csv {
        return Some("a CSV replay always starts from empty rings".into());
    }
    if before != kind && !(before == FeedKind::Unrecorded && kind == FeedKind::Synthetic) {
        return Some(format!(
            "the segment holds {before} candles and this run's feed is {kind}; they never mix"
        ));
    }
    // A candle past the feed's own clock (this run's offset, else the one the segment
    // recorded, with the aggregator's tolerance), or past any broker's, was stamped wrong (by
    // an earlier version without these bounds, or a hostile gateway): it would refuse every
    // honest tick until its time came. Starting clean fetches the history again from the feed
    // (the mt5 source backfills every ring from the terminal).
    let now_ns = shm_core::now_ns();
    let any_broker = aggregate::latest_plausible_server_time(now_ns);
    let clock = offset.unwrap_or(st.server_time_offset_s);
    let feed = ((now_ns / 1_000_000_000) as i64)
        .saturating_add(clock)
        .saturating_add(aggregate::FEED_CLOCK_TOLERANCE_S);
    for ring in reader.rings() {
        if let Ok(stats) = ring.stats() {
            let Some(t) = stats.newest_time else { continue };
            let beyond = if t > any_broker {
                "beyond any broker's clock".to_owned()
            } else if t > feed {
                format!(
                    "more than {} h after the feed's clock ({})",
                    aggregate::FEED_CLOCK_TOLERANCE_S / 3600,
                    shm_core::format_server_offset(clock)
                )
            } else {
                continue;
            };
            return Some(format!(
                "{} {} holds a candle dated {} (server time), {beyond}; its history is read again",
                ring.symbol(),
                ring.timeframe(),
                shm_core::iso8601_ms(t.saturating_mul(1000))
            ));
        }
    }
    None
}

/// How often a replay reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// `3 min 20 s`, `2 h 05 min`, `12 s`.
fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

/// How often the writer heartbeats, at the least (the segment promises 250 ms).
const HEARTBEAT: Duration = Duration::from_millis(100);

/// Runs the streamer until `stop` is set: creates the segment, starts the API, opens the
/// source, then publishes the feed. The banner goes to `banner`, warnings and bad rows to
/// stderr.
pub fn run(
    config: &Config,
    stop: &AtomicBool,
    banner: &mut dyn Write,
) -> Result<Summary, StreamerError> {
    let started = Instant::now();
    let plan = plan(config)?;
    let writer = open_segment(config, &plan, banner)?;
    // The API is one more reader of the segment just created; it stops when dropped.
    let shim = start_api(config)?;
    // So is the NATS publisher: the writer never waits for it.
    let nats = start_nats(config)?;
    let points: Vec<(String, f64)> = plan
        .symbols
        .iter()
        .map(|s| (s.clone(), profile(s).point))
        .collect();
    let agg = Aggregator::new(&writer, &points, &config.timeframes);
    let source = open_source(
        config,
        plan.files,
        &plan.symbols,
        &plan.timeframes,
        &writer,
        &agg,
    );
    print_banner(
        banner,
        config,
        shim.as_ref().map(http_shim::Shim::local_addr),
        &writer,
        &plan.symbols,
        &plan.timeframes,
        source.as_ref(),
    );
    let mut pump = Pump {
        config,
        symbols: &plan.symbols,
        writer,
        agg,
        source,
        banner,
        started,
        running: false,
        bad_rows_reported: 0,
        offset_warned: false,
        last_progress: Instant::now(),
        finished_reported: false,
    };
    pump.run(stop)?;
    let w = &pump.writer;
    let summary = Summary {
        ticks: w.counter(Counter::TicksProcessed),
        bars_closed: w.counter(Counter::BarsClosed),
        rejected: Counter::REJECTS.iter().map(|&c| w.counter(c)).sum(),
    };
    drop(shim);
    if let Some(p) = nats {
        let (published, dropped) = p.counts();
        drop(p);
        let _ = writeln!(
            pump.banner,
            "nats: {published} messages published, {dropped} forming updates dropped"
        );
    }
    pump.writer.stop();
    Ok(summary)
}

/// Starts publishing to NATS if `config.nats` says so.
fn start_nats(config: &Config) -> Result<Option<nats_bridge::Publisher>, StreamerError> {
    let Some(url) = &config.nats else {
        return Ok(None);
    };
    let name = config.nats_name.clone().unwrap_or_else(|| {
        config.segment.path().file_name().map_or_else(
            || "mtf-candles".into(),
            |n| n.to_string_lossy().into_owned(),
        )
    });
    let nats = nats_bridge::NatsSettings::new(url, &config.nats_auth)
        .map_err(|e| StreamerError::Nats(nats_bridge::BridgeError::NatsConfig(e)))?;
    nats_bridge::Publisher::start(nats_bridge::PublishConfig {
        nats,
        segment: config.segment.clone(),
        name,
        interval: std::time::Duration::from_millis(config.nats_interval_ms),
    })
    .map(Some)
    .map_err(StreamerError::Nats)
}

/// Creates (or continues, or starts clean) the segment for `plan`, with the feed kind and the
/// server offset recorded.
fn open_segment(
    config: &Config,
    plan: &Plan,
    banner: &mut dyn Write,
) -> Result<Writer, StreamerError> {
    let layout = layout(config, &plan.symbols, &plan.timeframes)?;
    let kind = feed_kind(config.source);
    // The offset this run stamps, where it is known before the feed speaks: an mt5 feed with
    // none configured takes the gateway's (and keeps the segment's until then).
    let offset = (config.source != SourceKind::Mt5 || config.server_time_offset_s != 0)
        .then_some(config.server_time_offset_s);
    let clean = start_clean_reason(&config.segment, kind, offset);
    if let Some(why) = &clean {
        let _ = writeln!(banner, "starting clean: {why}");
    }
    let mut writer = Writer::create(
        &config.segment,
        &layout,
        &WriterOptions {
            mode: config.segment_mode,
            start_clean: clean.is_some(),
        },
    )
    .map_err(StreamerError::Segment)?;
    writer.set_feed_kind(kind);
    // On a warm restart of the mt5 feed with no offset configured, the gateway's offset of the
    // last run stays until the gateway is asked again: readers never see a wrong 0 meanwhile.
    let keep_offset = config.source == SourceKind::Mt5
        && config.server_time_offset_s == 0
        && matches!(writer.start(), shm_core::Start::Warm { .. });
    if !keep_offset {
        writer.set_server_time_offset(config.server_time_offset_s);
    }
    Ok(writer)
}

/// Starts the built-in API as `config.http` says: an address asked for must work; the default
/// one may be taken by something else on this host, which should not stop the candles.
fn start_api(config: &Config) -> Result<Option<http_shim::Shim>, StreamerError> {
    let (bind, asked) = match config.http {
        HttpBind::Off => return Ok(None),
        HttpBind::Default(a) => (a, false),
        HttpBind::Asked(a) => (a, true),
    };
    let started = http_shim::Shim::start(http_shim::ShimConfig {
        segment: config.segment.clone(),
        bind,
        allow_remote: config.http_allow_remote,
        allow_remote_without_token: config.http_allow_remote_without_token,
        token: std::env::var("MTF_SHIM_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        ..http_shim::ShimConfig::default()
    });
    match started {
        Ok(shim) => Ok(Some(shim)),
        Err(e) if !asked => {
            eprintln!(
                "warning: HTTP API off: {}; choose another address with --http ADDR",
                error_chain(&e)
            );
            Ok(None)
        }
        Err(e) => Err(StreamerError::Http(e)),
    }
}

/// The feed `config` asks for, continuing from what the segment holds.
fn open_source(
    config: &Config,
    files: Vec<CsvFile>,
    symbols: &[String],
    tfs: &[Vec<Timeframe>],
    writer: &Writer,
    agg: &Aggregator,
) -> Box<dyn Source> {
    match config.source {
        SourceKind::Synthetic => {
            // Enough M1 history to fill the longest-reaching ring.
            let span = tfs[0]
                .iter()
                .map(|&tf| tf.nominal_seconds() * i64::from(config.capacity(tf)))
                .max()
                .unwrap_or(86_400);
            Box::new(Synthetic::new(
                symbols,
                config.seed,
                config.tick_rate,
                config.server_time_offset_s,
                Duration::from_secs(span as u64 + 60),
                agg.resume_points(writer),
            ))
        }
        SourceKind::Csv => Box::new(CsvReplay::new(files, config.speed)),
        SourceKind::Mt5 => {
            let plans = symbols
                .iter()
                .zip(tfs)
                .map(|(symbol, tfs)| {
                    let mut known = std::collections::HashMap::new();
                    let mut timeframes = Vec::new();
                    for &tf in tfs {
                        timeframes.push((tf, config.capacity(tf)));
                        if let Some(ring) = writer.ring(symbol, tf) {
                            if let Some(c) =
                                writer.forming(ring).or_else(|| writer.last_closed(ring))
                            {
                                known.insert(tf, c.time);
                            }
                        }
                    }
                    source::mt5::SymbolPlan {
                        symbol: symbol.clone(),
                        timeframes,
                        known,
                    }
                })
                .collect();
            let mut gateway = mt5_gateway_client::Config::new(&config.gateway);
            gateway.client_name = concat!("mtf-streamer/", env!("CARGO_PKG_VERSION")).into();
            // The gateway's shared secret, from the environment so that it stays out of `ps`.
            gateway.token = std::env::var("MT5_GATEWAY_TOKEN")
                .ok()
                .filter(|t| !t.is_empty());
            Box::new(source::mt5::Mt5Source::with_config(gateway, plans))
        }
    }
}

/// The publishing loop and its state: events from the source into the aggregator and the
/// writer, heartbeats, and what is reported along the way.
struct Pump<'a> {
    config: &'a Config,
    symbols: &'a [String],
    writer: Writer,
    agg: Aggregator,
    source: Box<dyn Source>,
    banner: &'a mut dyn Write,
    started: Instant,
    /// Whether the writer has been marked running (the source is past its backfill).
    running: bool,
    bad_rows_reported: u32,
    offset_warned: bool,
    last_progress: Instant,
    finished_reported: bool,
}

impl Pump<'_> {
    /// The writer's heartbeat, and a word on stderr when the wall clock went back (the
    /// segment counts it too: `inspect` and `/streamer/health` show it).
    fn beat(&mut self) {
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
    fn run(&mut self, stop: &AtomicBool) -> Result<(), StreamerError> {
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
            Event::Tick(t) => self.agg.on_tick(writer, &t),
            Event::Bar(b) => self.agg.on_bar(writer, &b),
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

/// An error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn print_banner(
    out: &mut dyn Write,
    config: &Config,
    http: Option<std::net::SocketAddr>,
    writer: &Writer,
    symbols: &[String],
    tfs: &[Vec<Timeframe>],
    source: &dyn Source,
) {
    let start = match writer.start() {
        shm_core::Start::Fresh => "new".to_owned(),
        shm_core::Start::Warm { repaired: 0 } => "warm restart, candles kept".to_owned(),
        shm_core::Start::Warm { repaired } => {
            format!("warm restart, {repaired} torn write(s) dropped")
        }
        shm_core::Start::Replaced => "replaced (layout changed)".to_owned(),
    };
    let rings: Vec<String> = tfs
        .first()
        .map(|t| {
            t.iter()
                .map(|tf| {
                    format!(
                        "{tf} {}",
                        config.buffer_sizes.get(tf).copied().unwrap_or(100)
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let offset = config.server_time_offset_s;
    let sign = if offset < 0 { '-' } else { '+' };
    let _ = writeln!(
        out,
        "mtf-streamer {}: multi-timeframe candles in shared memory",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        out,
        "  segment   {} (mode {:04o}, generation {}, {start})",
        writer.path().display(),
        config.segment_mode,
        writer.generation()
    );
    let _ = writeln!(out, "  source    {}", source.describe());
    let _ = writeln!(out, "  symbols   {}", symbols.join(", "));
    let _ = writeln!(out, "  rings     {}", rings.join(", "));
    let from_gateway = if config.source == SourceKind::Mt5 && offset == 0 {
        " (the gateway's estimate replaces it once connected; set --server-offset to fix it)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "  server    UTC{sign}{:02}:{:02}{from_gateway}",
        offset.abs() / 3600,
        offset.abs() % 3600 / 60
    );
    match http {
        Some(addr) => {
            let _ = writeln!(out, "  http      http://{addr}/streamer/status");
        }
        None => {
            let _ = writeln!(out, "  http      off");
        }
    }
    let seg = segment_flag(config);
    let first = symbols.first().map_or("SYMBOL", String::as_str);
    let tf = tfs
        .first()
        .and_then(|t| t.first())
        .copied()
        .unwrap_or(Timeframe::M1);
    let me = self_command();
    let _ = writeln!(
        out,
        "  watch     {me} inspect{seg}\n            {me} tail {first} {tf}{seg}"
    );
    let _ = writeln!(
        out,
        "Ctrl-C stops; the segment stays readable, marked stopped."
    );
}

/// How to run this program again, as the user can type it: `mtf-streamer` when it was
/// installed, the `cargo run` line when it runs from the workspace's `target/` folder (where it
/// is not on the PATH).
pub fn self_command() -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    let parts: Vec<String> = exe
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let in_target = parts.windows(2).find_map(|w| {
        (w[0] == "target" && (w[1] == "release" || w[1] == "debug")).then(|| w[1].clone())
    });
    match in_target.as_deref() {
        Some("release") => "cargo run --release --bin mtf-streamer --".into(),
        Some(_) => "cargo run --bin mtf-streamer --".into(),
        None => "mtf-streamer".into(),
    }
}

/// The `--segment`/`--segment-path` flag that names a non-default segment, for hints.
fn segment_flag(config: &Config) -> String {
    let path = config.segment.path();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if config.segment == Config::default().segment {
        String::new()
    } else if shm_core::SegmentPath::named(name).is_ok_and(|named| named == config.segment) {
        format!(" --segment {name}")
    } else {
        format!(" --segment-path {}", path.display())
    }
}
