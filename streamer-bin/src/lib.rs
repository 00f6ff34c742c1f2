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
mod banner;
pub mod cli;
pub mod config;
mod config_file;
pub mod derive;
mod error;
pub mod exported;
pub mod feedclock;
pub mod ops;
mod plan;
mod pump;
mod quote;
pub mod settings;
pub mod source;
mod start;

pub use banner::self_command;
pub use error::StreamerError;
pub use plan::{layout, plan, start_clean_reason, Plan};

use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use shm_core::Counter;

use aggregate::Aggregator;
use banner::print_banner;
use config::Config;
use pump::Pump;
use source::synthetic::profile;
use start::{open_segment, open_source, start_api, start_nats};

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
    // A terminal's exported records are checked whole before anything starts.
    let exported = match &config.symbol_info {
        Some(path) if config.source != config::SourceKind::Mt5 => {
            exported::load(path, &plan.symbols).map_err(StreamerError::Config)?
        }
        _ => Default::default(),
    };
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
    let mut agg = Aggregator::new(&writer, &points, &config.timeframes);
    if config.source != config::SourceKind::Csv {
        // Server time runs with the wall clock: a tick far ahead of the feed's is wrong.
        agg.follow_feed_clock();
    }
    // A terminal's feed brings its own symbol information; the others' is derived from their
    // prices (the synthetic feed's precision is known from the start).
    let known_digits = plan
        .symbols
        .iter()
        .map(|s| match config.source {
            config::SourceKind::Synthetic => Some(derive::price_digits(profile(s).point)),
            _ => None,
        })
        .collect();
    let mut derive = derive::Derive::new(&writer, &plan.symbols, known_digits, exported);
    if config.source == config::SourceKind::Mt5 {
        derive = derive::Derive::new(&writer, &[], Vec::new(), Default::default());
    }
    let mut writer = writer;
    derive.publish_known(&mut writer);
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
        derive,
        source,
        banner,
        started,
        running: false,
        bad_rows_reported: 0,
        offset_warned: false,
        last_progress: Instant::now(),
        finished_reported: false,
        history_warned: None,
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
