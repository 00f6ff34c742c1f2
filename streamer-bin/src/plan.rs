//! The plan of a run: which symbols, timeframes and files, the layout of the segment, and
//! whether a restart continues the rings or starts clean.

use shm_core::{FeedKind, Layout, Reader, Timeframe};

use crate::config::{Config, ConfigError, SourceKind};
use crate::error::StreamerError;
use crate::source::csv::CsvFile;
use crate::{aggregate, config, source};

/// What a run publishes: its symbols and timeframes, and the files of a CSV replay.
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
    layout
        .set_tick_depth(config.tick_depth)
        .map_err(StreamerError::Layout)?;
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
pub(crate) fn feed_kind(source: SourceKind) -> FeedKind {
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
