//! The HTTP API against a real segment, over loopback, with a real HTTP client.

use std::time::Duration;

use mtf_tests::TempSegment;
use serde_json::json;
use shm_core::{Candle, Layout, Timeframe, Writer};

mod common;

use common::*;

#[test]
fn candles_come_newest_first_as_dicts_with_the_documented_envelope() {
    let seg = TempSegment::new("shim-candles");
    let _feed = Feed::start(&seg);
    let shim = shim(&seg);
    let (status, v) = get(&shim, "/streamer/candles/BTCUSDc/M1?limit=5");
    assert_eq!(status, 200);
    assert_eq!(v["success"], true);
    assert_eq!(v["symbol"], "BTCUSDc");
    assert_eq!(v["timeframe"], "M1");
    assert_eq!(v["count"], 5);
    assert_eq!(v["source"], "streamer_buffer");
    assert_eq!(v["server_time_offset_seconds"], SERVER_OFFSET);
    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(v.get("warning").is_none());
    let candles = v["candles"].as_array().unwrap();
    assert_eq!(candles.len(), 5);
    let keys: Vec<&str> = candles[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = [
        "time",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "spread",
        "real_volume",
        "complete",
    ];
    expected.sort();
    let mut keys_sorted = keys.clone();
    keys_sorted.sort();
    assert_eq!(keys_sorted, expected);
    assert_eq!(
        candles[0]["complete"], false,
        "the forming candle comes first"
    );
    assert_eq!(candles[0]["close"], 90_000.0);
    assert!(candles[0]["time"].is_i64(), "time is epoch seconds");
    assert_eq!(candles[1]["complete"], true);
    assert_eq!(
        candles[0]["time"].as_i64().unwrap() - candles[1]["time"].as_i64().unwrap(),
        60
    );
    assert_eq!(
        candles[1],
        json!({"time": candles[1]["time"], "open": 89_998.0, "high": 90_001.0, "low": 89_996.0, "close": 89_999.0, "volume": 10, "spread": 1500, "real_volume": 0, "complete": true})
    );

    // Timeframes match case-insensitively; order=asc gives oldest first.
    let (_, asc) = get(&shim, "/streamer/candles/BTCUSDc/m1?limit=5&order=asc");
    let asc = asc["candles"].as_array().unwrap().clone();
    assert_eq!(asc.iter().rev().cloned().collect::<Vec<_>>(), *candles);

    // Fewer than asked: 200 with the real count and a warning; the default limit is 50.
    let (status, v) = get(&shim, "/streamer/candles/BTCUSDc/M1");
    assert_eq!((status, v["count"].as_u64()), (200, Some(31)));
    assert!(v["warning"].as_str().unwrap().contains("31 of 50"));
}

#[test]
fn raw_format_gives_arrays_in_field_order() {
    let seg = TempSegment::new("shim-raw");
    let _feed = Feed::start(&seg);
    let shim = shim(&seg);
    let (status, v) = get(&shim, "/streamer/candles/BTCUSDc/M1?limit=2&format=raw");
    assert_eq!(status, 200);
    assert_eq!(
        v["fields"],
        json!([
            "time",
            "open",
            "high",
            "low",
            "close",
            "volume",
            "spread",
            "real_volume",
            "complete"
        ])
    );
    assert_eq!(v["candles"][0].as_array().unwrap().len(), 9);
    assert_eq!(v["candles"][0][4], 90_000.0);
    assert_eq!(v["candles"][0][8], false);
}

#[test]
fn batch_returns_one_object_per_pair_with_errors_inline() {
    let seg = TempSegment::new("shim-batch");
    let _feed = Feed::start(&seg);
    let shim = shim(&seg);
    let (status, v) = get(
        &shim,
        "/streamer/candles?symbols=BTCUSDc,XAUUSDc,ETHUSDc&timeframes=M1,m5&limit=3",
    );
    assert_eq!(status, 200);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 6);
    assert_eq!(
        (
            results[0]["symbol"].as_str(),
            results[0]["timeframe"].as_str(),
            results[0]["count"].as_u64()
        ),
        (Some("BTCUSDc"), Some("M1"), Some(3))
    );
    assert_eq!(results[1]["count"], 0, "BTCUSDc M5 exists but is empty");
    // XAUUSDc has no M5 ring: its M5 is built on read from its M1 ring.
    assert_eq!(
        (
            results[3]["success"].as_bool(),
            results[3]["timeframe"].as_str()
        ),
        (Some(true), Some("M5"))
    );
    assert_eq!(results[4]["error_code"], "SYMBOL_NOT_FOUND");
    assert_eq!(results[4]["success"], false);
    let (status, v) = get(&shim, "/streamer/candles?symbols=BTCUSDc");
    assert_eq!(
        (status, v["error_code"].as_str()),
        (400, Some("INVALID_PARAMETER"))
    );
}

#[test]
fn status_available_and_health_report_the_segment() {
    let seg = TempSegment::new("shim-status");
    let _feed = Feed::start(&seg);
    let shim = shim(&seg);
    let (status, v) = get(&shim, "/streamer/status");
    assert_eq!(status, 200);
    assert_eq!(
        (v["success"].as_bool(), v["running"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(v["symbols"], json!(["BTCUSDc", "XAUUSDc"]));
    assert_eq!(v["timeframes"], json!(["M1", "M5"]));
    let m = &v["metrics"];
    assert_eq!(
        m["total_candles_buffered"], 31,
        "30 closed plus the forming one"
    );
    assert_eq!(m["ticks_processed"], 42);
    assert_eq!(m["writer_pid"], std::process::id());
    assert_eq!(m["generation"], 1);
    assert_eq!(m["feed_state"], "starting");
    assert!(m["last_update"].as_str().unwrap().ends_with('Z'));
    assert!(m["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert!(m["heartbeat_age_ms"].as_u64().unwrap() < 1000);

    let (status, v) = get(&shim, "/streamer/available");
    assert_eq!(status, 200);
    assert_eq!(
        v,
        json!({"success": true, "symbols": {"BTCUSDc": ["M1", "M5"], "XAUUSDc": ["M1"]}, "unknown_to_source": []})
    );

    let (status, v) = get(&shim, "/streamer/health");
    assert_eq!(status, 200);
    // XAUUSDc has no candles, so its M1 is stale: degraded, still 200.
    assert_eq!(v["status"], "degraded", "{v}");
    assert_eq!(v["streamer_running"], true);
    assert_eq!(v["buffer_status"]["BTCUSDc"]["M1"]["fresh"], true);
    assert_eq!(v["buffer_status"]["BTCUSDc"]["M1"]["count"], 31);
    assert!(v["last_tick_age_seconds"]["BTCUSDc"].as_f64().is_some());
    assert!(v["last_check"].as_str().is_some());
}

#[test]
fn every_error_code_has_its_status_and_shape() {
    let seg = TempSegment::new("shim-errors");
    let _feed = Feed::start(&seg);
    let shim = shim(&seg);
    let cases = [
        ("/streamer/candles/BTCUSDc/M7", 400, "INVALID_TIMEFRAME"),
        ("/streamer/candles/BTCUSDc/M1?limit=0", 400, "INVALID_LIMIT"),
        (
            "/streamer/candles/BTCUSDc/M1?limit=501",
            400,
            "INVALID_LIMIT",
        ),
        (
            "/streamer/candles/BTCUSDc/M1?limit=abc",
            400,
            "INVALID_LIMIT",
        ),
        ("/streamer/candles/BTC%2FUSD/M1", 400, "INVALID_SYMBOL"),
        (
            "/streamer/candles/ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/M1",
            400,
            "INVALID_SYMBOL",
        ),
        (
            "/streamer/candles/BTCUSDc/M1?format=xml",
            400,
            "INVALID_PARAMETER",
        ),
        (
            "/streamer/candles/BTCUSDc/M1?order=up",
            400,
            "INVALID_PARAMETER",
        ),
        ("/streamer/candles/ETHUSDc/M1", 404, "SYMBOL_NOT_FOUND"),
        ("/streamer/candles/btcusdc/M1", 404, "SYMBOL_NOT_FOUND"),
        ("/streamer/nothing", 404, "NOT_FOUND"),
        ("/nothing-here", 404, "NOT_FOUND"),
    ];
    for (path, status, code) in cases {
        let (s, v) = get(&shim, path);
        assert_eq!(
            (s, v["error_code"].as_str()),
            (status, Some(code)),
            "{path}: {v}"
        );
        assert_eq!(v["success"], false);
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()));
        assert!(v["details"].is_object());
    }
    let (_, v) = get(&shim, "/streamer/candles/BTCUSDc/M7");
    assert_eq!(
        (v["symbol"].as_str(), v["timeframe"].as_str()),
        (Some("BTCUSDc"), Some("M7"))
    );
    // A timeframe without a ring is built on read from one that tiles it (XAUUSDc H1 from M1);
    // a push stream carries rings only, so there it is TIMEFRAME_NOT_AVAILABLE (push.rs).
    let (s, v) = get(&shim, "/streamer/candles/XAUUSDc/H1");
    assert_eq!((s, v["timeframe"].as_str()), (200, Some("H1")), "{v}");

    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let r = raw(
            shim.local_addr(),
            format!("{method} /streamer/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(status_of(&r), 405, "{method}: {r}");
        assert!(r.contains("Allow: GET, HEAD"));
        assert!(r.contains("METHOD_NOT_ALLOWED"));
    }
    // HEAD: the GET's headers, no body.
    let r = raw(
        shim.local_addr(),
        b"HEAD /streamer/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&r), 200);
    assert!(r.ends_with("\r\n\r\n"), "{r}");
}

#[test]
fn no_live_writer_means_503_streamer_not_running_with_the_reason() {
    let seg = TempSegment::new("shim-down");
    let shim = shim(&seg);
    let (s, v) = get(&shim, "/streamer/candles/BTCUSDc/M1");
    assert_eq!(
        (s, v["error_code"].as_str(), v["details"]["reason"].as_str()),
        (503, Some("STREAMER_NOT_RUNNING"), Some("no_segment"))
    );
    let (s, v) = get(&shim, "/streamer/health");
    assert_eq!((s, v["status"].as_str()), (503, Some("unhealthy")));

    // The streamer appears: the shim attaches by itself.
    let mut feed = Feed::start(&seg);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(&shim, "/streamer/candles/BTCUSDc/M1").0, 200);

    // Stalled: the lock is held but the heartbeat stops.
    feed.pause();
    std::thread::sleep(Duration::from_millis(1300));
    let (s, v) = get(&shim, "/streamer/candles/BTCUSDc/M1");
    assert_eq!(
        (s, v["details"]["reason"].as_str()),
        (503, Some("writer_stalled")),
        "{v}"
    );
    assert_eq!(get(&shim, "/streamer/health").0, 503);

    // Stopped cleanly: still 503, and status says not running.
    feed.stop_writer();
    let (s, v) = get(&shim, "/streamer/candles/BTCUSDc/M1");
    assert_eq!(
        (s, v["details"]["reason"].as_str()),
        (503, Some("writer_stopped"))
    );
    let (s, v) = get(&shim, "/streamer/status");
    assert_eq!((s, v["running"].as_bool()), (200, Some(false)));
}

#[test]
fn metrics_are_prometheus_text_with_requests_latency_and_streamer_counters() {
    let seg = TempSegment::new("shim-metrics");
    let _feed = Feed::start(&seg);
    let shim = shim(&seg);
    get(&shim, "/streamer/candles/BTCUSDc/M1");
    get(&shim, "/streamer/candles/BTCUSDc/M9");
    let mut resp = agent()
        .get(&format!("http://{}/metrics", shim.local_addr()))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.body_mut().read_to_string().unwrap();
    for needle in [
        "mtf_shim_requests_total{endpoint=\"candles\",status=\"200\"} 1",
        "mtf_shim_requests_total{endpoint=\"candles\",status=\"400\"} 1",
        "mtf_shim_request_duration_seconds_bucket{le=\"+Inf\"} 2",
        "mtf_shim_request_duration_seconds_count 2",
        "mtf_shim_reader_retries_total 0",
        "mtf_streamer_up 1",
        "mtf_streamer_ticks_processed_total 42",
        "mtf_streamer_candles_buffered{symbol=\"BTCUSDc\",timeframe=\"M1\"} 31",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // Every series belongs to a family with its HELP and TYPE.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let series = line.split(['{', ' ']).next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| series.strip_suffix(s))
            .filter(|f| text.contains(&format!("# TYPE {f} histogram")))
            .unwrap_or(series);
        for what in ["HELP", "TYPE"] {
            assert!(
                text.contains(&format!("# {what} {family} ")),
                "{series} has no {what}:\n{text}"
            );
        }
    }
}

#[test]
fn the_shim_follows_a_streamer_restart_with_a_new_layout() {
    let seg = TempSegment::new("shim-restart");
    let mut feed = Feed::start(&seg);
    let shim = shim(&seg);
    assert_eq!(
        get(&shim, "/streamer/available").1["symbols"]
            .as_object()
            .unwrap()
            .len(),
        2
    );
    feed.stop_writer();
    // A new writer with other symbols replaces the file.
    let mut layout = Layout::new();
    layout.add_ring("EURUSD", Timeframe::H1, 10).unwrap();
    let mut w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    assert_eq!(w.start(), shm_core::Start::Replaced);
    w.set_running();
    std::thread::sleep(Duration::from_millis(300));
    let (status, v) = get(&shim, "/streamer/available");
    assert_eq!(
        (status, v["symbols"].clone()),
        (200, json!({"EURUSD": ["H1"]}))
    );
    let (status, v) = get(&shim, "/streamer/status");
    assert_eq!(
        (
            status,
            v["metrics"]["generation"].as_u64(),
            v["running"].as_bool()
        ),
        (200, Some(2), Some(true))
    );
}

#[test]
fn queries_are_strict_percent_escapes_limits_and_parameter_names() {
    let seg = TempSegment::new("shim-strict");
    let _feed = Feed::start(&seg);
    let shim = shim(&seg);
    for (path, code) in [
        ("/streamer/candles/BTCUSDc/M1?limit=%2B5", "INVALID_LIMIT"),
        ("/streamer/candles/BTCUSDc/M1?limit=+5", "INVALID_LIMIT"),
        (
            "/streamer/candles/BTCUSDc/M1?limit=%+1",
            "INVALID_PARAMETER",
        ),
        ("/streamer/candles/BTCUSDc/M1?limt=5", "INVALID_PARAMETER"),
        ("/streamer/status?verbose=1", "INVALID_PARAMETER"),
    ] {
        let (status, v) = get(&shim, path);
        assert_eq!(
            (status, v["error_code"].as_str()),
            (400, Some(code)),
            "{path}: {v}"
        );
    }
    let (_, v) = get(&shim, "/streamer/candles/BTCUSDc/M1?limt=5");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("limit, format, order"),
        "{v}"
    );
    // The cap follows the largest ring: 100 closed candles plus the forming one.
    assert_eq!(get(&shim, "/streamer/candles/BTCUSDc/M1?limit=101").0, 200);
    let (status, v) = get(&shim, "/streamer/candles/BTCUSDc/M1?limit=102");
    assert_eq!(
        (status, v["details"]["max"].as_u64()),
        (400, Some(101)),
        "{v}"
    );
}

#[test]
fn a_small_batch_request_cannot_ask_for_a_huge_answer() {
    let seg = TempSegment::new("shim-amplify");
    let _feed = Feed::start(&seg);
    let shim = shim_with(&seg, |c| c.max_limit = 100_000);
    // 100 copies of one symbol are one pair, not a hundred.
    let many = vec!["BTCUSDc"; 100].join(",");
    let (status, v) = get(
        &shim,
        &format!("/streamer/candles?symbols={many}&timeframes=M1,M1,M1&limit=50"),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["results"].as_array().unwrap().len(), 1, "deduplicated");
    // Pairs times limit beyond the byte budget is refused before anything is built.
    let symbols: Vec<String> = (0..100).map(|i| format!("S{i}")).collect();
    let (status, v) = get(
        &shim,
        &format!(
            "/streamer/candles?symbols={}&timeframes=M1&limit=101",
            symbols.join(",")
        ),
    );
    assert_eq!(status, 200, "100 rings of 101 fit: {v}");
    let (status, v) = get(
        &shim,
        &format!(
            "/streamer/candles?symbols={},BTCUSDc&timeframes=M1&limit=101",
            symbols.join(",")
        ),
    );
    assert_eq!(
        (status, v["error_code"].as_str()),
        (400, Some("INVALID_PARAMETER")),
        "101 pairs: {v}"
    );
}

#[test]
fn an_answer_over_the_byte_budget_is_refused_before_it_is_built() {
    let seg = TempSegment::new("shim-budget");
    let mut layout = Layout::new();
    layout.add_ring("BIG", Timeframe::M1, 20_000).unwrap();
    let mut w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    w.set_running();
    let shim = shim(&seg);
    let symbols: Vec<String> = (0..10).map(|i| format!("S{i}")).collect();
    // 10 rings of 10,000 candles at about 170 bytes each: 17 MB, over the 8 MiB budget.
    let (status, v) = get(
        &shim,
        &format!(
            "/streamer/candles?symbols=BIG,{}&timeframes=M1&limit=10000",
            symbols.join(",")
        ),
    );
    assert_eq!(
        (status, v["error_code"].as_str()),
        (400, Some("RESPONSE_TOO_LARGE")),
        "{v}"
    );
    // One such ring is fine.
    let (status, _) = get(&shim, "/streamer/candles/BIG/M1?limit=10000");
    assert_eq!(status, 200);
    drop(w);
}

#[test]
fn health_is_unhealthy_when_nothing_is_fresh_or_a_bar_is_dated_in_the_future() {
    let now = (shm_core::now_ns() / 1_000_000_000) as i64;
    for (tag, bar_time, reason) in [
        // A finished replay of 2017: every ring is stale.
        ("old", 1_483_315_200, "no fresh data"),
        // An hour ahead of the clock (offset 0 here): a negative age is an error.
        (
            "future",
            Timeframe::M1.bar_start(now + 3600),
            "in the future",
        ),
    ] {
        let seg = TempSegment::new(&format!("shim-health-{tag}"));
        let mut layout = Layout::new();
        layout.add_ring("EURUSD", Timeframe::M1, 10).unwrap();
        let mut w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
        let m1 = w.ring("EURUSD", Timeframe::M1).unwrap();
        w.update_forming(m1, &candle(bar_time, 1.1));
        w.set_running();
        let shim = shim(&seg);
        let (status, v) = get(&shim, "/streamer/health");
        assert_eq!(
            (status, v["status"].as_str()),
            (503, Some("unhealthy")),
            "{tag}: {v}"
        );
        assert!(
            v["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r.as_str().unwrap().contains(reason)),
            "{tag}: {v}"
        );
        assert_eq!(v["buffer_status"]["EURUSD"]["M1"]["fresh"], false, "{tag}");
        drop(w);
    }
}

#[test]
fn damaged_stored_candles_are_refused_not_served_as_success() {
    let seg = TempSegment::new("shim-damaged");
    let mut layout = Layout::new();
    layout.add_ring("EURUSD", Timeframe::M1, 10).unwrap();
    let mut w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    let m1 = w.ring("EURUSD", Timeframe::M1).unwrap();
    let now = Timeframe::M1.bar_start((shm_core::now_ns() / 1_000_000_000) as i64);
    // Written straight through the writer API, past the aggregator's checks, as a damaged or
    // forged file would hold them.
    w.push_closed(m1, &candle(now - 60, f64::NAN));
    w.update_forming(m1, &Candle::flat(now, 1.1));
    w.set_running();
    let shim = shim(&seg);
    // No heartbeat thread here: the writer beats before each request, so that a slow machine
    // (Wine under load) never sees it stalled.
    w.heartbeat();
    let (status, v) = get(&shim, "/streamer/candles/EURUSD/M1?limit=5");
    assert_eq!(
        (status, v["error_code"].as_str()),
        (500, Some("INVALID_STORED_DATA")),
        "{v}"
    );
    w.heartbeat();
    let (status, v) = get(
        &shim,
        "/streamer/candles?symbols=EURUSD&timeframes=M1&limit=5",
    );
    assert_eq!(status, 200);
    assert_eq!(v["results"][0]["error_code"], "INVALID_STORED_DATA", "{v}");
    assert_eq!(
        v["server_time_offset_seconds"], 0,
        "the batch carries the offset too"
    );
    // The newest candle alone is sound, and is served.
    w.heartbeat();
    assert_eq!(get(&shim, "/streamer/candles/EURUSD/M1?limit=1").0, 200);
    drop(w);
}
