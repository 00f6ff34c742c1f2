//! Time ranges as deep as the history store (issue 38):
//!
//! - `GET /streamer/candles/{symbol}/{timeframe}?from=T&to=T&limit=N`: the bars that open from
//!   `from` to `to` (server epoch seconds, both inclusive, as MT5's `copy_rates_range`);
//! - `GET /streamer/ticks/{symbol}?from_msc=T&to_msc=T&skip=K&limit=N`: the ticks from
//!   `from_msc` to `to_msc` (server epoch ms, both inclusive), less the first `skip` at
//!   `from_msc`.
//!
//! Both join the store and the ring at the seam (`shm_core::history::{BarSeam, TickSeam}`),
//! answer at most `limit` (the oldest), and say where the next page starts (`next_from`, or
//! `next_from_msc` with `next_skip`: no tick twice, however many share a millisecond). The
//! answer's bytes are reserved before it is built; a damaged store file is a `500
//! INVALID_STORED_DATA`, never data.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::json;
use shm_core::history::{BarSeam, StreamCache, TickSeam};
use shm_core::{Candle, HistoryError, ReadError, Tick, Timeframe, Trust};

use super::json::{error, iso_now, write_candle, ErrorCode};
use super::query::{only_known, param};
use super::status::not_running;
use super::ticks::{live_reader, symbol_of, write_tick};
use super::Api;
use crate::message::Response;

/// Most bars one page holds (about 3.4 MB of JSON).
pub const MAX_RANGE_BARS: usize = 20_000;

/// Most ticks one page holds (about 2 MB of JSON).
pub const MAX_RANGE_TICKS: usize = 10_000;

/// `limit` when none is given.
const DEFAULT_RANGE: usize = 1000;

/// Bytes of JSON per bar and per tick, at the most, for the budget's reservation.
const BAR_BYTES: usize = 170;
const TICK_BYTES: usize = 200;

/// The store's streams this process keeps mapped ([`StreamCache`]), made on first use.
#[derive(Debug, Default)]
pub(super) struct HistoryCache {
    streams: Option<StreamCache>,
}

impl HistoryCache {
    /// The streams of the store at `dir`, if this process's trust can be worked out (else the
    /// rings answer alone).
    fn streams(&mut self, dir: Option<&Path>) -> Option<&mut StreamCache> {
        if self.streams.is_none() {
            let trust = Trust::for_process().ok()?;
            self.streams = Some(StreamCache::at(dir?, trust));
        }
        self.streams.as_mut()
    }
}

/// A bars request with a time range.
#[derive(Debug)]
pub(super) struct BarRange {
    symbol: String,
    timeframe: Timeframe,
    from: i64,
    to: i64,
    limit: usize,
}

/// A ticks request with a time range.
#[derive(Debug)]
pub(super) struct TickRange {
    symbol: String,
    from_msc: i64,
    to_msc: i64,
    skip: usize,
    limit: usize,
}

/// An integer parameter within `range`, or the refusal naming it.
fn int(
    params: &[(String, String)],
    name: &str,
    range: std::ops::RangeInclusive<i64>,
    default: Option<i64>,
) -> Result<i64, Response> {
    let refuse = |found: &str| {
        error(
            ErrorCode::InvalidParameter,
            format!(
                "{name} must be an integer from {} to {}, found {found:?}",
                range.start(),
                range.end()
            ),
            json!({}),
        )
    };
    match param(params, name) {
        None => default.ok_or_else(|| refuse("nothing")),
        Some(text) => match text.parse::<i64>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(refuse(&text.chars().take(40).collect::<String>())),
        },
    }
}

/// Whether a candles request asks for a time range.
pub(super) fn is_bar_range(params: &[(String, String)]) -> bool {
    params.iter().any(|(k, _)| k == "from" || k == "to")
}

/// Whether a ticks request asks for a time range.
pub(super) fn is_tick_range(params: &[(String, String)]) -> bool {
    params.iter().any(|(k, _)| k == "from_msc" || k == "to_msc")
}

impl BarRange {
    /// Parses the path after `/streamer/candles/` and the range's parameters.
    pub fn parse(rest: &str, params: &[(String, String)]) -> Result<BarRange, Response> {
        only_known(params, &["from", "to", "limit"])?;
        let (symbol, timeframe) = super::candles::pair_of(rest)?;
        let latest = shm_core::LATEST_TIME;
        let from = int(params, "from", 0..=latest, None)?;
        let to = int(params, "to", 0..=latest, Some(latest))?;
        let limit = int(
            params,
            "limit",
            1..=MAX_RANGE_BARS as i64,
            Some(DEFAULT_RANGE as i64),
        )?;
        Ok(BarRange {
            symbol,
            timeframe,
            from,
            to,
            limit: limit as usize,
        })
    }
}

impl TickRange {
    /// Parses the path after `/streamer/ticks/` and the range's parameters.
    pub fn parse(rest: &str, params: &[(String, String)]) -> Result<TickRange, Response> {
        only_known(params, &["from_msc", "to_msc", "skip", "limit"])?;
        let symbol = symbol_of(rest, "/streamer/ticks/{symbol}")?;
        let latest = shm_core::LATEST_TIME * 1000;
        let from_msc = int(params, "from_msc", 0..=latest, None)?;
        let to_msc = int(params, "to_msc", 0..=latest, Some(latest))?;
        let skip = int(params, "skip", 0..=MAX_RANGE_TICKS as i64, Some(0))?;
        let limit = int(
            params,
            "limit",
            1..=MAX_RANGE_TICKS as i64,
            Some(DEFAULT_RANGE as i64),
        )?;
        Ok(TickRange {
            symbol,
            from_msc,
            to_msc,
            skip: skip as usize,
            limit: limit as usize,
        })
    }
}

/// The `500 INVALID_STORED_DATA` of a store file a reader refused.
fn refuse_store(e: &HistoryError, symbol: &str) -> Response {
    error(
        ErrorCode::InvalidStoredData,
        format!("the history store of {symbol}: {e}"),
        json!({"symbol": symbol}),
    )
}

impl Api {
    /// Bars of a time range, from the store and the ring.
    pub(super) fn bar_range(&self, q: BarRange) -> Response {
        let Some(held) = self.config.budget.reserve((q.limit + 1) * BAR_BYTES + 1024) else {
            return crate::reply::server_busy();
        };
        let reader = match live_reader(self) {
            Ok(r) => r,
            Err(refused) => return refused,
        };
        let ring = match self.lookup(&reader, &q.symbol, q.timeframe) {
            Ok(r) => r,
            Err(missing) => return missing.response(&q.symbol, q.timeframe),
        };
        let mut candles: Vec<Candle> = Vec::new();
        match ring.read_last(ring.capacity() as usize + 1, &mut candles) {
            Ok(()) => {}
            Err(ReadError::Busy { .. }) => return not_running("ring_busy", None),
            Err(e) => {
                return error(
                    ErrorCode::InvalidStoredData,
                    format!("the segment's {} {} ring: {e}", q.symbol, q.timeframe),
                    json!({"symbol": q.symbol, "timeframe": q.timeframe.name()}),
                )
            }
        }
        let mut page: Vec<Candle> = Vec::new();
        {
            let mut cache = self.history.lock().unwrap_or_else(|p| p.into_inner());
            let stored = match cache.streams(self.config.history_dir.as_deref()) {
                Some(streams) => match streams.bars(&q.symbol, q.timeframe) {
                    Ok(s) => Some(s),
                    Err(e) => return refuse_store(&e, &q.symbol),
                },
                None => None,
            };
            BarSeam::new(&candles, stored).range_as(q.from, q.to, q.limit + 1, &mut page, |c| *c);
        }
        let more = page.len() > q.limit;
        page.truncate(q.limit);
        let mut body = String::with_capacity(300 + page.len() * BAR_BYTES);
        let _ = write!(
            body,
            "{{\"success\":true,\"symbol\":\"{}\",\"timeframe\":\"{}\",\"from\":{},\"to\":{},\"count\":{},\"candles\":[",
            q.symbol,
            q.timeframe,
            q.from,
            q.to,
            page.len()
        );
        for (i, c) in page.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            write_candle(&mut body, c, false);
        }
        let next = match page.last() {
            Some(c) if more => c.time.saturating_add(1).to_string(),
            _ => "null".into(),
        };
        let _ = write!(
            body,
            "],\"next_from\":{next},\"server_time_offset_seconds\":{},\"timestamp\":\"{}\",\"source\":\"history_store\"}}",
            reader.status().server_time_offset_s,
            iso_now()
        );
        Response {
            reservation: Some(Box::new(held)),
            ..Response::json(200, body)
        }
    }

    /// Ticks of a time range, from the store and the tick ring.
    pub(super) fn tick_range(&self, q: TickRange) -> Response {
        let Some(held) = self
            .config
            .budget
            .reserve((q.limit + 1) * TICK_BYTES + 1024)
        else {
            return crate::reply::server_busy();
        };
        let reader = match live_reader(self) {
            Ok(r) => r,
            Err(refused) => return refused,
        };
        let Some(ring) = reader.ticks(&q.symbol) else {
            return error(
                ErrorCode::SymbolNotFound,
                format!("symbol {} is not streamed", q.symbol),
                json!({"symbol": q.symbol}),
            );
        };
        let mut newer: Vec<Tick> = Vec::new();
        let span = match ring.read_since(q.from_msc, usize::MAX, &mut newer) {
            Ok(s) => s,
            Err(_) => return not_running("ring_busy", None),
        };
        // The ring holds a tick older than `from_msc`: it has every one after it.
        let reaches_back = span.first > span.head.saturating_sub(ring.capacity());
        let want = q.skip + q.limit + 1;
        let mut page: Vec<Tick> = Vec::new();
        {
            let mut cache = self.history.lock().unwrap_or_else(|p| p.into_inner());
            let streams = cache
                .streams(self.config.history_dir.as_deref())
                .filter(|_| !reaches_back);
            let stored = match streams {
                Some(streams) => match streams.ticks(&q.symbol) {
                    Ok(s) => Some(s),
                    Err(e) => return refuse_store(&e, &q.symbol),
                },
                None => None,
            };
            TickSeam::new(&newer, reaches_back, stored).range_as(
                q.from_msc,
                q.to_msc,
                want,
                &mut page,
                |t| *t,
            );
        }
        // The first `skip` at `from_msc` were had.
        let had = page
            .iter()
            .take(q.skip)
            .take_while(|t| t.time_msc == q.from_msc)
            .count();
        page.drain(..had);
        let more = page.len() > q.limit;
        page.truncate(q.limit);
        let mut body = String::with_capacity(300 + page.len() * TICK_BYTES);
        let _ = write!(
            body,
            "{{\"success\":true,\"symbol\":\"{}\",\"from_msc\":{},\"to_msc\":{},\"count\":{},\"ticks\":[",
            q.symbol,
            q.from_msc,
            q.to_msc,
            page.len()
        );
        for (i, t) in page.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            write_tick(&mut body, t);
        }
        let (next_from, next_skip) = match page.last() {
            Some(last) if more => {
                let at_last = page
                    .iter()
                    .rev()
                    .take_while(|t| t.time_msc == last.time_msc)
                    .count();
                let skip = if last.time_msc == q.from_msc {
                    had + at_last
                } else {
                    at_last
                };
                (last.time_msc.to_string(), skip.to_string())
            }
            _ => ("null".into(), "null".into()),
        };
        let _ = write!(
            body,
            "],\"next_from_msc\":{next_from},\"next_skip\":{next_skip},\"timestamp\":\"{}\",\"source\":\"history_store\"}}",
            iso_now()
        );
        Response {
            reservation: Some(Box::new(held)),
            ..Response::json(200, body)
        }
    }
}

/// `/streamer/candles/{symbol}/{timeframe}?from=&to=`: parsed, then answered.
pub(super) fn serve_bars(api: &Arc<Api>, rest: &str, params: &[(String, String)]) -> Response {
    match BarRange::parse(rest, params) {
        Ok(q) => api.bar_range(q),
        Err(refused) => refused,
    }
}

/// `/streamer/ticks/{symbol}?from_msc=&to_msc=`: parsed, then answered.
pub(super) fn serve_ticks(api: &Arc<Api>, rest: &str, params: &[(String, String)]) -> Response {
    match TickRange::parse(rest, params) {
        Ok(q) => api.tick_range(q),
        Err(refused) => refused,
    }
}

/// The lock the API keeps its store streams under.
pub(super) type HistoryLock = Mutex<HistoryCache>;
