//! The whole system as a user runs it, every part a real process: the Python gateway (csv
//! backend) feeding `mtf-streamer --source mt5`, whose built-in API and a separate `mtf-shim`
//! serve the segment, and `mtf-monitor` reading it. Then SIGKILL and restart, and bad input
//! at every edge: HTTP requests, configuration, CSV rows, and a segment of another version.
//!
//! Temporary segment names, free ports and temporary folders throughout, removed even when
//! a test fails, so these run in parallel with everything else.
// Some tests here are Unix-only (marked): their helpers go unused on Windows.
#![cfg_attr(not(unix), allow(unused))]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mtf_tests::{
    free_port, python3_available, spawn_csv_gateway, spawn_shim, wait_for_running, wait_for_status,
    workspace_bin, ChildGuard, TempSegment,
};
use serde_json::Value;
use shm_core::{Liveness, Reader, Timeframe};

/// Broker server time minus UTC in these tests.
const OFFSET: i64 = 7200;

fn now_s() -> i64 {
    (shm_core::now_ns() / 1_000_000_000) as i64
}

/// A temporary folder, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("mtf-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// MT5's date and time columns for server epoch seconds `t`.
fn mt5_stamp(t: i64) -> (String, String) {
    let (y, m, d) = shm_core::civil_from_days(t.div_euclid(86_400));
    let sod = t.rem_euclid(86_400);
    (
        format!("{y:04}.{m:02}.{d:02}"),
        format!("{:02}:{:02}:{:02}", sod / 3600, sod % 3600 / 60, sod % 60),
    )
}

/// 300 M1 bars of EURUSD ending with the current minute (server time) as an MT5 export;
/// returns the folder and the last bar's close.
fn eurusd_export() -> (TempDir, f64) {
    let dir = TempDir::new("export");
    let last = (now_s() + OFFSET).div_euclid(60) * 60;
    let mut text = String::from(
        "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\r\n",
    );
    let mut close = 0.0;
    for i in 0..300 {
        let t = last - (299 - i) * 60;
        let (date, time) = mt5_stamp(t);
        let o = 1.08 + (i % 13) as f64 * 0.0001;
        close = format!("{:.5}", o + 0.00007).parse().unwrap();
        text.push_str(&format!(
            "{date}\t{time}\t{o:.5}\t{:.5}\t{:.5}\t{close:.5}\t{}\t0\t{}\r\n",
            o + 0.0003,
            o - 0.0002,
            60 + i % 9,
            8 + i % 3
        ));
    }
    let name = format!(
        "EURUSD_M1_{}_{}.csv",
        mt5_stamp(last - 299 * 60).0.replace('.', "") + "0000",
        mt5_stamp(last).0.replace('.', "") + "2359"
    );
    std::fs::write(dir.0.join(name), text).unwrap();
    (dir, close)
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`); the status and body.
fn http(addr: &str, raw: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    (status, body)
}

fn get(addr: &str, path: &str) -> (u16, Value) {
    let (status, body) = http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, v)
}

/// Waits until something answers on `addr`.
fn wait_listening(addr: &str) {
    let start = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{addr} never listened"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `mtf-monitor --once --json` with `args`: the exit code and the first cycle line.
fn monitor_once(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--once", "--json", "--symbols", "EURUSD"];
    all.extend(args);
    let (status, stdout, stderr) = ChildGuard::spawn(workspace_bin("mtf-monitor"), &all)
        .wait_for(Duration::from_secs(30))
        .expect("one cycle ends");
    let cycle = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "cycle")
        .unwrap_or_else(|| panic!("no cycle line: {stdout} {stderr}"));
    (status.code().unwrap_or(-1), cycle)
}

#[test]
#[cfg_attr(
    windows,
    ignore = "starts the Python MT5 gateway, which a Windows process cannot run under Wine here"
)]
fn gateway_to_streamer_to_http_and_monitor_through_a_kill_and_a_restart() {
    if !python3_available("the end-to-end flow") {
        return;
    }
    let (data, last_close) = eurusd_export();
    let (_gateway, gw) = spawn_csv_gateway(&data.0, 0, &["--server-offset", "+02:00"]);
    let seg = TempSegment::new("e2e-flow");
    let file = seg.file();
    let http_addr = format!("127.0.0.1:{}", free_port());
    let streamer_args = [
        "--source",
        "mt5",
        "--gateway",
        &gw,
        "--symbols",
        "EURUSD",
        "--http",
        &http_addr,
        "--segment-path",
        file.to_str().unwrap(),
    ];
    let mut streamer = ChildGuard::spawn(workspace_bin("mtf-streamer"), &streamer_args);
    let reader = wait_for_status(&seg.path, "the backfill", Duration::from_secs(30), |s| {
        s.writer_state == Some(shm_core::WriterState::Running)
            && s.counters.get(shm_core::Counter::BarsClosed) >= 299
    });
    let generation = reader.status().generation;
    wait_listening(&http_addr);

    // The built-in API serves the gateway's bars, with the offset that makes them UTC.
    let (status, v) = get(&http_addr, "/streamer/candles/EURUSD/M1?limit=5");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["count"], 5);
    assert_eq!(v["server_time_offset_seconds"], OFFSET);
    assert_eq!(v["candles"][0]["close"], last_close, "newest first");
    assert_eq!(v["candles"][0]["complete"], false, "position 0 is forming");
    let (status, v) = get(&http_addr, "/streamer/status");
    assert_eq!(status, 200);
    assert_eq!(v["metrics"]["liveness"], "alive");
    assert_eq!(v["metrics"]["generation"], generation);
    let (status, v) = get(&http_addr, "/streamer/health");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["buffer_status"]["EURUSD"]["M1"]["fresh"], true, "{v}");

    // The monitor reads shared memory, and its figures are the file's.
    let dead_http = format!("http://127.0.0.1:{}", free_port());
    let monitor_args = [
        "--segment-path",
        file.to_str().unwrap(),
        "--api-url",
        &dead_http,
        "--gateway",
        &gw,
    ];
    let (code, v) = monitor_once(&monitor_args);
    assert_eq!(code, 0);
    assert_eq!(v["source"], "shm", "{v}");
    assert_eq!(v["last_close"], last_close);
    assert!(v["age_seconds"].as_i64().unwrap() < 90, "{v}");

    // SIGKILL: the API dies with the streamer; readers see `gone`, the monitor falls back to
    // the gateway, and a separate shim explains the 503.
    streamer.0.as_mut().unwrap().kill().unwrap();
    streamer.0.as_mut().unwrap().wait().unwrap();
    assert_eq!(reader.status().liveness, Liveness::Gone);
    let (code, v) = monitor_once(&monitor_args);
    assert_eq!(code, 0);
    assert_eq!(v["source"], "mt5", "{v}");
    assert_eq!(
        v["last_close"], last_close,
        "the same bar from the terminal"
    );
    let (_shim, shim_addr) = spawn_shim(&file);
    let (status, v) = get(&shim_addr, "/streamer/candles/EURUSD/M1?limit=5");
    assert_eq!(status, 503);
    assert_eq!(v["error_code"], "STREAMER_NOT_RUNNING");
    assert_eq!(v["details"]["reason"], "writer_gone");

    // Restart: candles kept, generation + 1, everyone back without being restarted.
    let _streamer = ChildGuard::spawn(workspace_bin("mtf-streamer"), &streamer_args);
    wait_for_status(&seg.path, "the restart", Duration::from_secs(30), |s| {
        s.generation == generation + 1 && s.liveness == Liveness::Alive
    });
    let (code, v) = monitor_once(&monitor_args);
    assert_eq!(code, 0);
    assert_eq!(v["source"], "shm", "{v}");
    assert_eq!(v["generation"], generation + 1);
    let (status, _) = get(&shim_addr, "/streamer/candles/EURUSD/M1?limit=5");
    assert_eq!(status, 200, "the separate shim follows the restart");
    wait_listening(&http_addr);
    let (status, v) = get(&http_addr, "/streamer/candles/EURUSD/M1?limit=300");
    assert_eq!(status, 200);
    assert_eq!(v["count"], 300, "no candle lost across the kill");
}

#[test]
fn bad_http_requests_get_typed_answers_and_the_server_stays_up() {
    let seg = TempSegment::new("e2e-http");
    let addr = format!("127.0.0.1:{}", free_port());
    let file = seg.file();
    let _streamer = ChildGuard::spawn(
        workspace_bin("mtf-streamer"),
        &["--segment-path", file.to_str().unwrap(), "--http", &addr],
    );
    wait_for_running(&seg.path);
    wait_listening(&addr);
    let long_header = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX: {}\r\n\r\n",
        "a".repeat(10_000)
    );
    let cases: &[(&[u8], u16, Option<&str>)] = &[
        (
            b"GET /streamer/candles/BTCUSDc/M7 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            400,
            Some("INVALID_TIMEFRAME"),
        ),
        (
            b"GET /streamer/candles/BTCUSDc/M1?limit=abc HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            400,
            Some("INVALID_LIMIT"),
        ),
        (
            b"GET /streamer/candles/NOPE/M1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            404,
            Some("SYMBOL_NOT_FOUND"),
        ),
        (
            b"GET /streamer/candles/%FF%FE/M1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            400,
            Some("INVALID_SYMBOL"),
        ),
        (
            b"DELETE /streamer/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            405,
            Some("METHOD_NOT_ALLOWED"),
        ),
        (b"garbage\r\n\r\n", 400, None),
        (b"GET / HTTP/9.9\r\n\r\n", 505, None),
        (
            b"POST /streamer/status HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            405,
            Some("METHOD_NOT_ALLOWED"),
        ),
        (long_header.as_bytes(), 431, None),
        (b"\xff\xfe\r\n\r\n", 400, None),
    ];
    for (raw, want, code) in cases {
        let (status, body) = http(&addr, raw);
        let shown = String::from_utf8_lossy(&raw[..raw.len().min(60)]).into_owned();
        assert_eq!(status, *want, "{shown:?}: {body}");
        if let Some(code) = code {
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["error_code"], *code, "{shown:?}");
            assert_eq!(v["success"], false);
        }
    }
    let (status, v) = get(&addr, "/streamer/candles/BTCUSDc/M1?limit=2");
    assert_eq!(status, 200, "still serving: {v}");
}

#[test]
fn bad_configuration_is_refused_with_the_field_named() {
    let dir = TempDir::new("config");
    let seg = TempSegment::new("e2e-config");
    let file = seg.file();
    let cases = [
        (r#"{"symbols": "BTCUSDc"}"#, "symbols"),
        (r#"{"buffer_sizes": {"M1": -5}}"#, "buffer_sizes"),
        (r#"{"source": "bloomberg"}"#, "source"),
        (r#"{"server_time_offset": "+99:00"}"#, "server_time_offset"),
        (r#"{"symbols": ["BTCUSDc"], "#, "JSON"),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let path = dir.0.join(format!("bad{i}.json"));
        std::fs::write(&path, text).unwrap();
        let (status, _, stderr) = ChildGuard::spawn(
            workspace_bin("mtf-streamer"),
            &[
                "--config",
                path.to_str().unwrap(),
                "--no-http",
                "--segment-path",
                file.to_str().unwrap(),
            ],
        )
        .wait_for(Duration::from_secs(20))
        .expect("refused at once");
        assert_eq!(
            status.code(),
            Some(2),
            "{text}: a configuration error is status 2"
        );
        assert!(stderr.contains(needle), "{text}: {stderr}");
        assert!(!file.exists(), "{text}: a segment was created");
    }
    // The monitor and the shim refuse theirs too, with status 2 and no output.
    for (program, args) in [
        ("mtf-monitor", &["--interval", "0"][..]),
        ("mtf-shim", &["--bind", "not-an-address"][..]),
    ] {
        let (status, stdout, stderr) = ChildGuard::spawn(workspace_bin(program), args)
            .wait_for(Duration::from_secs(20))
            .expect("refused at once");
        assert_eq!(status.code(), Some(2), "{program}: {stderr}");
        assert!(stdout.is_empty(), "{program}: {stdout}");
    }
}

// Unix only: stops the child with SIGTERM, which Windows has not (ChildGuard::stop).
#[cfg(unix)]
#[test]
fn bad_csv_rows_are_reported_by_line_and_lose_no_good_row() {
    let dir = TempDir::new("csv");
    let seg = TempSegment::new("e2e-csv");
    let file = seg.file();
    let text = "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\r\n\
        2024.03.04\t10:00:00\t1.1\t1.2\t1.0\t1.15\t10\t0\t2\r\n\
        2024.03.04\t10:01:00\t1.15\tabc\t1.1\t1.12\t10\t0\t2\r\n\
        2024.03.04\t10:02:00\t1.12\t1.3\t1.1\t1.25\t11\t0\t2\r\n\
        2024.03.04\t10:03:00\t1.25\t1.2\t1.3\t1.22\t12\t0\t2\r\n\
        2024.13.04\t10:04:00\t1.2\t1.3\t1.1\t1.22\t12\t0\t2\r\n\
        2024.03.04\t10:05:00\t1.22\t1.4\t1.2\t1.35\t13\t0\t2\r\n";
    let csv = dir.0.join("EURUSD_M1_202403041000_202403041005.csv");
    std::fs::write(&csv, text).unwrap();
    let streamer = ChildGuard::spawn(
        workspace_bin("mtf-streamer"),
        &[
            "--csv",
            csv.to_str().unwrap(),
            "--no-http",
            "--segment-path",
            file.to_str().unwrap(),
        ],
    );
    let reader: Reader = wait_for_status(&seg.path, "the replay", Duration::from_secs(20), |s| {
        s.feed_state == Some(shm_core::FeedState::Finished)
    });
    let mut candles = Vec::new();
    reader
        .ring("EURUSD", Timeframe::M1)
        .unwrap()
        .read_last(10, &mut candles)
        .unwrap();
    let closes: Vec<f64> = candles.iter().map(|c| c.close).collect();
    assert_eq!(closes, [1.15, 1.25, 1.35], "exactly the three good rows");
    // Lines 3 and 6 do not parse; line 5 parses but its high is below its open.
    let counters = reader.status().counters;
    assert_eq!(counters.get(shm_core::Counter::BadRows), 2);
    assert_eq!(counters.get(shm_core::Counter::RejectedBadPrice), 1);
    streamer.sigterm();
    let (status, _, stderr) = streamer.wait_for(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{stderr}");
    for line in [3, 6] {
        assert!(
            stderr.contains(&format!(":{line}: skipped")),
            "line {line}: {stderr}"
        );
    }
}

#[test]
fn a_segment_of_another_version_is_named_not_read() {
    let seg = TempSegment::new("e2e-version");
    // A header whose magic is right and whose version is 99.
    let mut bytes = vec![0u8; 4096];
    bytes[..8].copy_from_slice(b"MTFCANDL");
    bytes[8..16].copy_from_slice(&99u64.to_le_bytes());
    bytes[24..32].copy_from_slice(&4096u64.to_le_bytes());
    bytes[32..40].copy_from_slice(&512u64.to_le_bytes());
    std::fs::write(seg.file(), &bytes).unwrap();
    let file = seg.file();
    let (code, v) = monitor_once(&[
        "--segment-path",
        file.to_str().unwrap(),
        "--api-url",
        "none",
    ]);
    assert_eq!(code, 1, "no source");
    let reason = v["skipped"]["shm"]["reason"].as_str().unwrap();
    assert!(reason.contains("version 99"), "{reason}");
    let (_shim, addr) = spawn_shim(&file);
    let (status, v) = get(&addr, "/streamer/candles/EURUSD/M1");
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error_code"], "STREAMER_NOT_RUNNING");
    // The file is left as it was: nothing here may overwrite a segment it cannot read.
    assert_eq!(std::fs::read(seg.file()).unwrap(), bytes);
}
