//! `/streamer/status`, `/streamer/available`, `/streamer/health` and `/metrics`, and the
//! reasons a segment is not served.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use shm_core::{
    iso8601_ms, now_ns, Counter, FeedState, Liveness, OpenError, Reader, Status, Timeframe,
};

use super::json::{error, iso_now, ErrorCode};
use super::{bare, Api};
use crate::message::{Request, Response};

/// Symbols whose rings the writer flagged as unknown to its source.
fn unknown_symbols(reader: &Reader) -> Vec<String> {
    let mut out: Vec<String> = reader
        .rings()
        .filter(|r| r.unknown_to_source())
        .map(|r| r.symbol().to_owned())
        .collect();
    out.dedup();
    out
}

/// Why the streamer is not serving, for `STREAMER_NOT_RUNNING`.
pub(super) fn not_running_reason(status: &Status) -> Option<&'static str> {
    match status.liveness {
        Liveness::Alive => None,
        Liveness::Stalled => Some("writer_stalled"),
        Liveness::Stopped => Some("writer_stopped"),
        Liveness::Gone => Some("writer_gone"),
        Liveness::Replaced => Some("segment_replaced"),
    }
}

pub(super) fn not_running(reason: &str, status: Option<&Status>) -> Response {
    let mut details = json!({"reason": reason});
    if let Some(s) = status {
        details["heartbeat_age_ms"] = json!(s.heartbeat_age.as_millis() as u64);
        details["writer_pid"] = json!(s.writer_pid);
        details["last_update"] = last_update(s);
    }
    error(
        ErrorCode::StreamerNotRunning,
        format!("the streamer is not running ({reason})"),
        json!({"details": details}),
    )
}

fn last_update(s: &Status) -> Value {
    if s.last_update_ns == 0 {
        Value::Null
    } else {
        json!(iso8601_ms((s.last_update_ns / 1_000_000) as i64))
    }
}

pub(super) fn open_error_reason(e: &OpenError) -> &'static str {
    match e {
        OpenError::NotFound { .. } => "no_segment",
        OpenError::Initializing { .. } => "segment_initializing",
        _ => "segment_unreadable",
    }
}

impl Api {
    pub(super) fn status(&self) -> Response {
        let guard = self.reader();
        let Some(reader) = guard.as_ref() else {
            let body = json!({"success": true, "running": false, "symbols": [], "timeframes": [], "metrics": {}, "details": {"reason": "no_segment"}, "timestamp": iso_now()});
            return Response::json(200, body.to_string());
        };
        let st = reader.status();
        let mut timeframes: Vec<Timeframe> = reader.rings().map(|r| r.timeframe()).collect();
        timeframes.sort();
        timeframes.dedup();
        let buffered: u64 = reader
            .rings()
            .filter_map(|r| r.stats().ok())
            .map(|s| s.buffered)
            .sum();
        let rejects: Map<String, Value> = Counter::REJECTS
            .iter()
            .map(|&c| {
                (
                    c.as_str().trim_start_matches("rejected_").to_owned(),
                    json!(st.counters.get(c)),
                )
            })
            .collect();
        let body = json!({
            "success": true,
            "running": st.liveness == Liveness::Alive,
            "symbols": reader.layout().symbols().collect::<Vec<_>>(),
            "unknown_to_source": unknown_symbols(reader),
            "feed_kind": st.feed_kind.map_or("unknown", |k| k.as_str()),
            "timeframes": timeframes.iter().map(|t| t.name()).collect::<Vec<_>>(),
            "metrics": {
                "total_candles_buffered": buffered,
                "last_update": last_update(&st),
                "uptime_seconds": now_ns().saturating_sub(st.writer_start_ns) as f64 / 1e9,
                "ticks_processed": st.counters.get(Counter::TicksProcessed),
                "bars_closed": st.counters.get(Counter::BarsClosed),
                "gaps_detected": st.counters.get(Counter::GapsDetected),
                "corrections": st.counters.get(Counter::Corrections),
                "rejects": rejects,
                "writer_pid": st.writer_pid,
                "generation": st.generation,
                "heartbeat_age_ms": st.heartbeat_age.as_millis() as u64,
                "feed_state": st.feed_state.map_or("unknown", |f| f.as_str()),
                "writer_state": st.writer_state.map_or("unknown", |w| w.as_str()),
                "liveness": st.liveness.as_str(),
                "server_time_offset_seconds": st.server_time_offset_s,
            },
            "timestamp": iso_now(),
        });
        Response::json(200, body.to_string())
    }

    pub(super) fn available(&self) -> Response {
        let guard = self.reader();
        let mut symbols = Map::new();
        let mut unknown = Vec::new();
        if let Some(reader) = guard.as_ref() {
            for s in reader.layout().symbols() {
                let tfs: Vec<&str> = reader
                    .rings()
                    .filter(|r| r.symbol() == s)
                    .map(|r| r.timeframe().name())
                    .collect();
                symbols.insert(s.to_owned(), json!(tfs));
            }
            unknown = unknown_symbols(reader);
        }
        // `unknown_to_source`: symbols the writer's source (the MT5 terminal) does not know;
        // their rings exist but receive nothing.
        Response::json(
            200,
            json!({"success": true, "symbols": symbols, "unknown_to_source": unknown}).to_string(),
        )
    }

    pub(super) fn health(&self) -> Response {
        let guard = self.reader();
        let Some(reader) = guard.as_ref() else {
            let body = json!({"status": "unhealthy", "streamer_running": false, "buffer_status": {}, "last_check": iso_now(), "reasons": ["no segment"]});
            return Response::json(503, body.to_string());
        };
        let st = reader.status();
        let now_server = (now_ns() / 1_000_000_000) as i64 + st.server_time_offset_s;
        let mut reasons: Vec<String> = Vec::new();
        let mut unhealthy = false;
        if let Some(r) = not_running_reason(&st) {
            reasons.push(r.replace('_', " "));
            unhealthy = true;
        }
        match st.feed_state {
            Some(FeedState::Disconnected) => reasons.push("feed disconnected".into()),
            Some(FeedState::Finished) => reasons.push("feed finished (replay ended)".into()),
            _ => {}
        }
        let jumps = st.counters.get(Counter::ClockJumpsBack);
        if jumps > 0 {
            reasons.push(format!(
                "the writer's wall clock went back {jumps} time(s) while it ran"
            ));
        }
        let mut buffers = Map::new();
        let mut tick_ages = Map::new();
        let (mut m1_rings, mut m1_stale) = (0, 0);
        for s in reader.layout().symbols() {
            let mut per_tf = Map::new();
            for ring in reader.rings().filter(|r| r.symbol() == s) {
                let Ok(stats) = ring.stats() else { continue };
                let tf = ring.timeframe();
                // Fresh while the newest bar is at most one bar plus 30 s old (M1 1.5 min, M5
                // 5.5 min, ...). A bar that opens in the future (beyond a minute of clock
                // drift) is an error: a wrong server offset, or a bad stamp.
                let age = stats.newest_time.map(|t| now_server - t);
                let future = age.is_some_and(|a| a < -60);
                let fresh = age.is_some_and(|a| (-60..=tf.nominal_seconds() + 30).contains(&a));
                if future {
                    reasons.push(format!(
                        "{s} {tf} opens {} s in the future: the server-time offset or a stamp is wrong",
                        -age.unwrap_or(0)
                    ));
                    unhealthy = true;
                } else if tf == Timeframe::M1 && !fresh {
                    reasons.push(format!("{s} M1 is stale"));
                    m1_stale += 1;
                }
                if tf == Timeframe::M1 {
                    m1_rings += 1;
                }
                per_tf.insert(
                    tf.name().to_owned(),
                    json!({"count": stats.buffered, "capacity": ring.capacity(), "newest_time": stats.newest_time, "age_seconds": age, "fresh": fresh}),
                );
            }
            buffers.insert(s.to_owned(), Value::Object(per_tf));
            let age = reader
                .last_tick(s)
                .map(|t| now_ns().saturating_sub(t.received_ns) as f64 / 1e9);
            tick_ages.insert(s.to_owned(), json!(age));
        }
        if m1_rings > 0 && m1_stale == m1_rings {
            // Nothing fresh at all: a reader polling this gets no usable data.
            reasons.push("no fresh data: every M1 ring is stale".into());
            unhealthy = true;
        }
        let state = if unhealthy {
            "unhealthy"
        } else if reasons.is_empty() {
            "healthy"
        } else {
            "degraded"
        };
        let body = json!({
            "status": state,
            "streamer_running": st.liveness == Liveness::Alive,
            "liveness": st.liveness.as_str(),
            "feed_state": st.feed_state.map_or("unknown", |f| f.as_str()),
            "heartbeat_age_ms": st.heartbeat_age.as_millis() as u64,
            "last_tick_age_seconds": tick_ages,
            "buffer_status": buffers,
            "reasons": reasons,
            "last_check": iso_now(),
        });
        Response::json(if unhealthy { 503 } else { 200 }, body.to_string())
    }

    pub(super) fn prometheus(&self) -> Response {
        let mut e = crate::metrics::Exposition::default();
        self.metrics.render(&mut e);
        e.family(
            "mtf_shim_uptime_seconds",
            "gauge",
            "Time since the shim started.",
        )
        .sample(&[], self.started.elapsed().as_secs_f64());
        self.cache.stats().render(&mut e);
        self.push.render(&mut e);
        crate::metrics::render_segment(&mut e, self.reader().as_deref());
        Response::new(200, "text/plain; version=0.0.4", e.finish().into_bytes())
    }
}

/// `/streamer/status` (no parameters).
pub(super) fn serve_status(
    api: &Arc<Api>,
    _: &str,
    params: &[(String, String)],
    _: &Request,
) -> Response {
    bare(params, || api.status())
}

/// `/streamer/available` (no parameters).
pub(super) fn serve_available(
    api: &Arc<Api>,
    _: &str,
    params: &[(String, String)],
    _: &Request,
) -> Response {
    bare(params, || api.available())
}

/// `/streamer/health` (no parameters).
pub(super) fn serve_health(
    api: &Arc<Api>,
    _: &str,
    params: &[(String, String)],
    _: &Request,
) -> Response {
    bare(params, || api.health())
}

/// `/metrics` (no parameters).
pub(super) fn serve_metrics(
    api: &Arc<Api>,
    _: &str,
    params: &[(String, String)],
    _: &Request,
) -> Response {
    bare(params, || api.prometheus())
}
