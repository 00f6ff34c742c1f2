//! The wiring of a run's parts: the segment, the built-in API, the NATS publisher and the
//! feed, each started from the configuration.

use std::io::Write;
use std::time::Duration;

use shm_core::{Layout, Timeframe, Writer, WriterOptions};

use crate::aggregate::Aggregator;
use crate::banner::error_chain;
use crate::config::{Config, HistoryPlace, HttpBind, SourceKind};
use crate::error::StreamerError;
use crate::plan::{feed_kind, layout, start_clean_reason, Plan};
use crate::source;
use crate::source::csv::{CsvFile, CsvReplay};
use crate::source::synthetic::Synthetic;
use crate::source::Source;

/// Starts publishing to NATS if `config.nats` says so.
pub(crate) fn start_nats(config: &Config) -> Result<Option<nats_bridge::Publisher>, StreamerError> {
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
        history: config.history.dir(&config.segment),
    })
    .map(Some)
    .map_err(StreamerError::Nats)
}

/// Creates (or continues, or starts clean) the segment for `plan`, with the feed kind and the
/// server offset recorded.
pub(crate) fn open_segment(
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
    attach_history(config, &layout, &mut writer);
    Ok(writer)
}

/// Opens the history store and attaches it to the writer. A store that cannot be opened (a
/// directory not writable, a full disk) is a warning: the rings work without it, and
/// `history_errors` counts it so that `inspect`, `/metrics` and `status()` show it.
fn attach_history(config: &Config, layout: &Layout, writer: &mut Writer) {
    let dir = match &config.history {
        HistoryPlace::Off => return,
        place => place.dir(&config.segment).unwrap_or_default(),
    };
    match shm_core::HistoryWriter::open(&dir, layout, config.history_keep, config.segment_mode) {
        Ok(h) => {
            if h.dropped_at_open() > 0 {
                eprintln!(
                    "warning: history store {}: {} damaged or torn records were dropped from \
                     the newest chunks; the store goes on after the intact part",
                    dir.display(),
                    h.dropped_at_open()
                );
            }
            writer.attach_history(h);
        }
        Err(e) => {
            writer.add(shm_core::Counter::HistoryErrors, 1);
            eprintln!(
                "warning: no history store: {}; readers get what the rings hold",
                error_chain(&e)
            );
        }
    }
}

/// Starts the built-in API as `config.http` says: an address asked for must work; the default
/// one may be taken by something else on this host, which should not stop the candles.
pub(crate) fn start_api(config: &Config) -> Result<Option<http_shim::Shim>, StreamerError> {
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
        history: config.history.clone(),
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
pub(crate) fn open_source(
    config: &Config,
    files: Vec<CsvFile>,
    symbols: &[String],
    tfs: &[Vec<Timeframe>],
    writer: &Writer,
    agg: &Aggregator,
) -> Box<dyn Source> {
    match config.source {
        SourceKind::Synthetic => {
            // Enough history to fill the shortest timeframe's ring (a week of M1 by default);
            // the longer rings fill as far as that reaches, and then as it runs. Filling the
            // longest-reaching ring (1,000 D1 bars: three years of M1) would hold up the start
            // for the sake of a made-up past.
            let span = tfs[0].iter().min().map_or(86_400, |&tf| {
                tf.nominal_seconds() * i64::from(config.capacity(tf))
            });
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
                    let mut stored = std::collections::HashMap::new();
                    let mut timeframes = Vec::new();
                    for &tf in tfs {
                        timeframes.push((tf, config.capacity(tf)));
                        if let Some(ring) = writer.ring(symbol, tf) {
                            if let Some(t) = writer.stored_bar(ring) {
                                stored.insert(tf, t);
                            }
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
                        stored,
                        stored_tick: writer.symbol(symbol).and_then(|id| writer.stored_tick(id)),
                    }
                })
                .collect();
            let mut gateway = mt5_gateway_client::Config::new(&config.gateway);
            gateway.client_name = concat!("mtf-streamer/", env!("CARGO_PKG_VERSION")).into();
            // The gateway's shared secret, from the environment so that it stays out of `ps`.
            gateway.token = std::env::var("MT5_GATEWAY_TOKEN")
                .ok()
                .filter(|t| !t.is_empty());
            // History beyond the rings goes to the store: without one, none is copied.
            let depth = writer.history().map(|_| source::mt5::Depth {
                bars: config.history_bars,
                ticks: config.history_ticks,
            });
            Box::new(source::mt5::Mt5Source::with_config(gateway, plans, depth))
        }
    }
}
