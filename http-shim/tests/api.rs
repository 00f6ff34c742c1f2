//! The HTTP API against a real segment, over loopback, with a real HTTP client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use http_shim::{Limits, Shim, ShimConfig, StartError};
use mtf_tests::{Lcg, TempSegment};
use serde_json::{json, Value};
use shm_core::{Candle, Layout, Timeframe, Writer};

mod common;

use common::*;

/// A shim allowing `cap` connections, with every one of them taken by a client that has
/// sent nothing (yet), once the shim has accepted them all.
fn shim_at_its_cap(seg: &TempSegment, cap: usize) -> (Shim, Vec<TcpStream>) {
    let shim = shim_with(seg, |c| {
        c.limits = Limits {
            max_connections: cap,
            ..Limits::default()
        }
    });
    let idle = (0..cap)
        .map(|_| TcpStream::connect(shim.local_addr()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    (shim, idle)
}

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
fn a_token_is_required_when_set_and_remote_binds_need_a_flag() {
    let seg = TempSegment::new("shim-token");
    let _feed = Feed::start(&seg);
    let shim = shim_with(&seg, |c| c.token = Some("s3cret".into()));
    let url = format!("http://{}/streamer/status", shim.local_addr());
    let r = agent().get(&url).call().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = agent()
        .get(&url)
        .header("Authorization", "Bearer wrong")
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = agent()
        .get(&url)
        .header("Authorization", "Bearer s3cret")
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let remote = ShimConfig {
        segment: seg.path.clone(),
        bind: "0.0.0.0:0".parse().unwrap(),
        ..ShimConfig::default()
    };
    assert!(matches!(
        Shim::start(remote),
        Err(StartError::RemoteNotAllowed(_))
    ));
}

#[test]
fn oversized_slow_and_bodied_requests_are_refused_without_harm() {
    let seg = TempSegment::new("shim-limits");
    let _feed = Feed::start(&seg);
    let shim = shim_with(&seg, |c| {
        c.limits = Limits {
            head_timeout: Duration::from_millis(300),
            ..Limits::default()
        }
    });
    let a = shim.local_addr();
    let long_url = format!(
        "GET /streamer/candles/{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "x".repeat(5000)
    );
    assert_eq!(status_of(&raw(a, long_url.as_bytes())), 414);
    let big_headers = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
        "X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
            .repeat(200)
    );
    assert_eq!(status_of(&raw(a, big_headers.as_bytes())), 431);
    // A method other than GET or HEAD is 405 with Allow, body or not.
    let r = raw(
        a,
        b"POST /streamer/status HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789",
    );
    assert_eq!(status_of(&r), 405, "{r}");
    assert!(r.contains("Allow: GET, HEAD"), "{r}");
    // A 1 MB body or a chunked one, which the server does not read: a POST still gets its
    // 405 with Allow, and it arrives, not a connection reset.
    for head in [
        "POST /streamer/status HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1048576\r\n\r\n",
        "PUT /streamer/candles/EURUSD/M1 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        let mut big = head.as_bytes().to_vec();
        big.extend(std::iter::repeat_n(b'x', 1 << 20));
        let r = raw(a, &big);
        assert_eq!(status_of(&r), 405, "{r}");
        assert!(r.contains("Allow: GET, HEAD"), "{r}");
    }
    // A GET with such a body is refused as such.
    let mut big =
        b"GET /streamer/status HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1048576\r\n\r\n"
            .to_vec();
    big.extend(std::iter::repeat_n(b'x', 1 << 20));
    let r = raw(a, &big);
    assert_eq!(status_of(&r), 413, "{r}");
    assert!(r.contains("BODY_TOO_LARGE"), "{r}");
    assert_eq!(status_of(&raw(a, b"GET / HTTP/2.0\r\n\r\n")), 505);
    assert_eq!(status_of(&raw(a, b"garbage\r\n\r\n")), 400);
    // Slowloris: half a head, then nothing: 408 after the head timeout.
    assert_eq!(
        status_of(&raw(
            a,
            b"GET /streamer/status HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
        )),
        408
    );
    // Still serving.
    assert_eq!(get(&shim, "/streamer/status").0, 200);
    // Each of those replies of the server's own is counted in /metrics, by its code.
    let metrics = raw(
        a,
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    for (code, n) in [
        ("URI_TOO_LONG", 1),
        ("HEADERS_TOO_LARGE", 1),
        ("BODY_TOO_LARGE", 1),
        ("HTTP_VERSION_NOT_SUPPORTED", 1),
        ("BAD_REQUEST", 1),
        ("REQUEST_TIMEOUT", 1),
        ("TOO_MANY_CONNECTIONS", 0),
    ] {
        let line = format!("mtf_shim_server_replies_total{{code=\"{code}\"}} {n}\n");
        assert!(metrics.contains(&line), "no {line:?} in:\n{metrics}");
    }
}

#[test]
fn keep_alive_and_pipelined_requests_are_answered_in_order() {
    let seg = TempSegment::new("shim-pipe");
    let _feed = Feed::start(&seg);
    let shim = shim(&seg);
    let r = raw(
        shim.local_addr(),
        b"GET /streamer/available HTTP/1.1\r\nHost: localhost\r\n\r\nGET /nope HTTP/1.1\r\nHost: localhost\r\n\r\nGET /streamer/available HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    let statuses: Vec<u16> = r
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| r[i + 9..i + 12].parse().unwrap())
        .collect();
    assert_eq!(statuses, [200, 404, 200], "{r}");
}

#[test]
fn a_thousand_idle_connections_do_not_stop_normal_requests() {
    let seg = TempSegment::new("shim-idle");
    let _feed = Feed::start(&seg);
    let shim = shim(&seg);
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(shim.local_addr()).unwrap())
        .collect();
    // Some idle ones have sent half a request, some nothing at all.
    for s in idle.iter().step_by(3) {
        let mut s = s;
        s.write_all(b"GET /streamer/status HTTP/1.1\r\nHost: localhost\r\n")
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let (status, v) = get(&shim, "/streamer/candles/BTCUSDc/M1?limit=50");
    assert_eq!((status, v["count"].as_u64()), (200, Some(31)));
    drop(idle);
}

#[test]
fn clients_that_never_finish_a_head_cannot_lock_out_whole_requests() {
    // The attack: every connection sends the start of a head and holds it for the whole head
    // timeout (here two minutes, so that only eviction can let the request below in).
    let seg = TempSegment::new("shim-partial");
    let _feed = Feed::start(&seg);
    let shim = shim_with(&seg, |c| {
        c.limits = Limits {
            max_connections: 40,
            head_timeout: Duration::from_secs(120),
            ..Limits::default()
        }
    });
    let a = shim.local_addr();
    let mut partial: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut s = TcpStream::connect(a).unwrap();
            s.write_all(b"GET /streamer/status HTTP/1.1\r\nX: ")
                .unwrap();
            s
        })
        .collect();
    // Until the server has taken the partial heads in, a newcomer may still be refused; then
    // the oldest partial head gives way to it.
    let until = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = raw(
            a,
            b"GET /streamer/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        );
        if status_of(&r) == 200 {
            break;
        }
        assert_eq!(status_of(&r), 503, "{r}");
        assert!(
            std::time::Instant::now() < until,
            "locked out by partial heads"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // And one of the partial heads was the one closed.
    let closed = partial.iter_mut().any(|s| {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut b = [0u8; 1];
        match s.read(&mut b) {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    });
    assert!(closed, "no partial head was closed");
}

#[test]
fn connections_beyond_the_cap_get_503_at_once() {
    let seg = TempSegment::new("shim-cap");
    let _feed = Feed::start(&seg);
    let (shim, idle) = shim_at_its_cap(&seg, 20);
    let r = raw(
        shim.local_addr(),
        b"GET /streamer/status HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert_eq!(status_of(&r), 503, "{r}");
    assert!(r.contains("TOO_MANY_CONNECTIONS"));
    drop(idle);
    // Served again once the idle connections' threads have seen them close.
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while raw_status(shim.local_addr(), "/streamer/status") != 200 {
        assert!(
            std::time::Instant::now() < until,
            "not served again after the connections closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let metrics = raw(
        shim.local_addr(),
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    // The refusal above, and any of the polls that met the cap still full.
    assert!(
        metrics.contains("mtf_shim_server_replies_total{code=\"TOO_MANY_CONNECTIONS\"} "),
        "{metrics}"
    );
    assert!(
        !metrics.contains("mtf_shim_server_replies_total{code=\"TOO_MANY_CONNECTIONS\"} 0\n"),
        "{metrics}"
    );
}

/// The status of a GET of `path` on a connection of its own.
fn raw_status(a: std::net::SocketAddr, path: &str) -> u16 {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    status_of(&raw(a, request.as_bytes()))
}

#[test]
fn random_paths_queries_and_methods_never_get_a_500() {
    let seg = TempSegment::new("shim-fuzz");
    let _feed = Feed::start(&seg);
    let shim = shim(&seg);
    let mut rng = Lcg(7);
    let methods = [
        "GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "get", "G3T", "",
    ];
    let segments = [
        "streamer",
        "candles",
        "status",
        "health",
        "available",
        "metrics",
        "BTCUSDc",
        "XAUUSDc",
        "M1",
        "m5",
        "H4",
        "MN1",
        "W1",
        "%00",
        "%ZZ",
        "%F0%9F%92%A5",
        "..",
        ".",
        "",
        "A#B",
        "%23",
        "x".repeat(40).leak(),
        "é",
        "%2F",
        "?",
        "&",
        "=",
        ";",
    ];
    let keys = [
        "limit",
        "format",
        "order",
        "symbols",
        "timeframes",
        "x",
        "",
        "limit%00",
        "%",
    ];
    let values = [
        "0",
        "1",
        "50",
        "500",
        "501",
        "-1",
        "abc",
        "raw",
        "dict",
        "asc",
        "desc",
        "BTCUSDc,XAUUSDc",
        "M1,M5",
        "%",
        "%zz",
        "",
        "1e3",
        "99999999999999999999",
    ];
    for i in 0..1500 {
        let depth = 1 + rng.next() % 5;
        let mut path = String::new();
        if !rng.next().is_multiple_of(4) {
            path.push_str("/streamer");
        }
        for _ in 0..depth {
            path.push('/');
            path.push_str(rng.pick(&segments));
        }
        let nq = rng.next() % 4;
        for q in 0..nq {
            path.push(if q == 0 { '?' } else { '&' });
            path.push_str(rng.pick(&keys));
            path.push('=');
            path.push_str(rng.pick(&values));
        }
        // Raw bytes, so the client does not tidy anything up.
        let method = rng.pick(&methods);
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let r = raw(shim.local_addr(), request.as_bytes());
        let status = status_of(&r);
        assert!(
            (200..600).contains(&status),
            "#{i} {request:?}: no status line: {r:?}"
        );
        assert_ne!(status, 500, "#{i} {request:?}: {r}");
        if method != "HEAD" && status != 200 || path.starts_with("/streamer") && method == "GET" {
            let body = r.split_once("\r\n\r\n").map_or("", |b| b.1);
            assert!(
                serde_json::from_str::<Value>(body).is_ok(),
                "#{i} {request:?}: body is not JSON: {body:?}"
            );
        }
    }
    assert_eq!(get(&shim, "/streamer/status").0, 200, "still serving");
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
fn header_lines_are_strict_so_no_proxy_in_front_can_be_desynchronised() {
    let seg = TempSegment::new("shim-headers");
    let _feed = Feed::start(&seg);
    let shim = shim(&seg);
    let a = shim.local_addr();
    for head in [
        "GET /streamer/status HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding : chunked\r\n\r\n",
        "GET /streamer/status HTTP/1.1\r\nHost: localhost\r\nX-A\t: 1\r\n\r\n",
        "GET /streamer/status HTTP/1.1\r\nHost: localhost\r\nX-A: 1\r\n folded\r\n\r\n",
        "GET /streamer/status HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
    ] {
        // Exactly one answer, a 400, and nothing parsed from what followed the bad line.
        let r = raw(a, head.as_bytes());
        assert_eq!(status_of(&r), 400, "{head:?}: {r}");
        assert_eq!(r.matches("HTTP/1.1 ").count(), 1, "{head:?}: {r}");
    }
}

#[test]
fn bare_cr_nul_and_missing_or_repeated_hosts_are_400() {
    let seg = TempSegment::new("shim-cr");
    let _feed = Feed::start(&seg);
    let shim = shim(&seg);
    let a = shim.local_addr();
    for head in [
        // The attack's shape: a proxy treating CR as a line end would see a body here.
        "GET /streamer/status HTTP/1.1\r\nHost: localhost\r\nX-A: a\rContent-Length: 45\r\n\r\nGET /streamer/status HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "GET /streamer/status HTTP/1.1\r\nHost: localhost\r\nX-A: a\0b\r\n\r\n",
        "GET /streamer/status HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /streamer/status HTTP/1.1\r\nHost: localhost\r\nHost: other\r\n\r\n",
    ] {
        let r = raw(a, head.as_bytes());
        assert_eq!(status_of(&r), 400, "{head:?}: {r}");
        assert_eq!(r.matches("HTTP/1.1 ").count(), 1, "{head:?}: {r}");
    }
    // An HTTP/1.0 request may come without Host, and every answer says nosniff.
    let r = raw(a, b"GET /streamer/status HTTP/1.0\r\n\r\n");
    assert_eq!(status_of(&r), 200, "{r}");
    assert!(r.contains("X-Content-Type-Options: nosniff"), "{r}");
}

#[test]
fn without_a_token_only_addresses_localhost_and_allowed_names_are_served() {
    let seg = TempSegment::new("shim-rebind");
    let _feed = Feed::start(&seg);
    let shim = shim_with(&seg, |c| c.allowed_hosts = vec!["desk.lan".into()]);
    let a = shim.local_addr();
    let with_host = |host: &str| {
        let r = raw(
            a,
            format!("GET /streamer/status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        (status_of(&r), r)
    };
    for served in [
        "127.0.0.1",
        &a.to_string(),
        "localhost:8000",
        "LOCALHOST",
        "[::1]:8000",
        "192.168.1.20",
        "desk.lan",
        "desk.lan:8000",
    ] {
        assert_eq!(with_host(served).0, 200, "{served}");
    }
    // DNS rebinding: another site's name resolving to this host.
    for refused in [
        "evil.example",
        "evil.example:8000",
        "localhost.evil.example",
        "[evil]",
    ] {
        let (status, r) = with_host(refused);
        assert_eq!(status, 421, "{refused}: {r}");
        assert!(
            r.contains("HOST_NOT_ALLOWED") && r.contains("--allowed-host"),
            "{r}"
        );
    }
    // With a token, the token decides whatever the name.
    let tokened = shim_with(&seg, |c| c.token = Some("s3cret".into()));
    let r = raw(
        tokened.local_addr(),
        b"GET /streamer/status HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer s3cret\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&r), 200, "{r}");
}

#[test]
fn the_token_scheme_is_case_insensitive_and_auth_comes_before_the_method() {
    let seg = TempSegment::new("shim-auth");
    let _feed = Feed::start(&seg);
    let shim = shim_with(&seg, |c| c.token = Some("s3cret".into()));
    let a = shim.local_addr();
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = raw(
            a,
            format!("GET /streamer/status HTTP/1.1\r\nHost: localhost\r\nAuthorization: {scheme} s3cret\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(status_of(&r), 200, "{scheme}: {r}");
    }
    // Without the token, a POST learns nothing about which methods exist.
    let r = raw(
        a,
        b"POST /streamer/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&r), 401, "{r}");
}

#[test]
fn a_remote_bind_without_a_token_is_refused_unless_said_so() {
    let seg = TempSegment::new("shim-remote");
    let remote = |tweak: fn(&mut ShimConfig)| {
        let mut c = ShimConfig {
            segment: seg.path.clone(),
            bind: "0.0.0.0:0".parse().unwrap(),
            allow_remote: true,
            ..ShimConfig::default()
        };
        tweak(&mut c);
        Shim::start(c)
    };
    match remote(|_| {}) {
        Err(e @ StartError::RemoteWithoutToken(_)) => {
            let text = e.to_string();
            assert!(text.contains("MTF_SHIM_TOKEN"), "{text}");
            assert!(text.contains("--http-allow-remote-without-token"), "{text}");
        }
        other => panic!("expected RemoteWithoutToken, got {other:?}"),
    }
    assert!(remote(|c| c.token = Some("t".into())).is_ok());
    assert!(remote(|c| c.allow_remote_without_token = true).is_ok());
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

#[test]
fn idle_connections_near_the_cap_give_way_within_seconds() {
    let seg = TempSegment::new("shim-cap-idle");
    let _feed = Feed::start(&seg);
    // Every slot held by a client that never sends a byte: the lock-out the cap invites.
    let (shim, idle) = shim_at_its_cap(&seg, 20);
    assert_eq!(
        status_of(&raw(
            shim.local_addr(),
            b"GET /streamer/status HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )),
        503
    );
    // Near the cap the idle timeout is 1 s, not 60: the idle ones are closed...
    std::thread::sleep(Duration::from_millis(2500));
    let r = raw(
        shim.local_addr(),
        b"GET /streamer/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&r), 200, "{r}");
    // ...as many as it takes to be below three quarters of the cap again (15 of 20); the
    // others keep the ordinary idle timeout.
    let mut closed = 0;
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        if matches!(s.read(&mut [0u8; 1]), Ok(0)) {
            closed += 1;
        }
    }
    assert!(
        (5..=20).contains(&closed),
        "{closed} idle connections closed"
    );
}
