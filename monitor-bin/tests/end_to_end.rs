//! `mtf-monitor` against real processes: the streamer, the shim and the Python gateway (csv
//! backend), on temporary segment names and free ports.
// Some tests here are Unix-only (marked): their helpers go unused on Windows.
#![cfg_attr(not(unix), allow(unused))]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use monitor_bin::source::{BarSource, HttpSource, Mt5Source, ShmSource};
use mtf_tests::{
    free_port, python3_available, spawn_csv_gateway, spawn_shim, wait_for_running, wait_for_status,
    workspace_bin, ChildGuard, TempSegment,
};
use serde_json::Value;

const MONITOR: &str = env!("CARGO_BIN_EXE_mtf-monitor");
/// Broker server time minus UTC used throughout: two hours, so a mix-up shows as 7200 s.
const OFFSET: i64 = 7200;

fn now_s() -> i64 {
    (shm_core::now_ns() / 1_000_000_000) as i64
}

/// The synthetic streamer on `seg`, without HTTP.
fn streamer(seg: &TempSegment) -> ChildGuard {
    let file = seg.file();
    ChildGuard::spawn(
        workspace_bin("mtf-streamer"),
        &["--segment-path", file.to_str().unwrap(), "--no-http"],
    )
}

/// `mtf-shim` for `seg` on a free port; returns it and its base URL.
fn shim(seg: &TempSegment) -> (ChildGuard, String) {
    let (shim, addr) = spawn_shim(&seg.file());
    (shim, format!("http://{addr}"))
}

/// A folder of MT5 exports, removed when dropped.
struct Exports(PathBuf);

impl Drop for Exports {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `minutes` M1 bars of `symbol` ending with the current minute, in server time, as an MT5
/// export. Volumes vary, and the last bar trades three times the usual volume.
fn exports(tag: &str, symbol: &str, minutes: i64) -> Exports {
    let dir = std::env::temp_dir().join(format!("mtf-monitor-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let last = (now_s() + OFFSET).div_euclid(60) * 60;
    let first = last - (minutes - 1) * 60;
    let mut text = String::from(
        "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\r\n",
    );
    for i in 0..minutes {
        let t = first + i * 60;
        let (y, m, d) = shm_core::civil_from_days(t.div_euclid(86_400));
        let sod = t.rem_euclid(86_400);
        let o = 1.08 + (i % 11) as f64 * 0.0002;
        let volume = if i == minutes - 1 {
            300
        } else {
            80 + (i % 7) * 5
        };
        text.push_str(&format!(
            "{y:04}.{m:02}.{d:02}\t{:02}:{:02}:00\t{o:.5}\t{:.5}\t{:.5}\t{:.5}\t{volume}\t0\t{}\r\n",
            sod / 3600,
            sod % 3600 / 60,
            o + 0.0004,
            o - 0.0003,
            o + 0.0001,
            10 + i % 5
        ));
    }
    let fmt = |t: i64| {
        let (y, m, d) = shm_core::civil_from_days(t.div_euclid(86_400));
        let sod = t.rem_euclid(86_400);
        format!("{y:04}{m:02}{d:02}{:02}{:02}", sod / 3600, sod % 3600 / 60)
    };
    let name = format!("{symbol}_M1_{}_{}.csv", fmt(first), fmt(last));
    std::fs::write(dir.join(name), text).unwrap();
    Exports(dir)
}

fn gateway(data: &Exports) -> (ChildGuard, String) {
    spawn_csv_gateway(&data.0, 0, &["--server-offset", "+02:00"])
}

/// Runs `mtf-monitor --once --json` with `args`; returns the exit code and the cycle lines.
fn monitor_once(args: &[&str]) -> (i32, Vec<Value>, String) {
    let mut all = vec!["--once", "--json"];
    all.extend(args);
    let (status, stdout, stderr) = ChildGuard::spawn(MONITOR, &all)
        .wait_for(Duration::from_secs(30))
        .expect("the monitor finishes one cycle");
    let cycles = stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v| v["type"] == "cycle")
        .collect();
    (status.code().unwrap_or(-1), cycles, stderr)
}

fn source_of(cycles: &[Value], symbol: &str) -> Value {
    cycles
        .iter()
        .find(|v| v["symbol"] == symbol)
        .unwrap_or_else(|| panic!("no line for {symbol} in {cycles:?}"))["source"]
        .clone()
}

#[test]
fn a_running_streamer_serves_from_shared_memory() {
    let seg = TempSegment::new("mon-shm");
    let _streamer = streamer(&seg);
    wait_for_running(&seg.path);
    let file = seg.file();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let (code, cycles, stderr) =
        monitor_once(&["--segment-path", file.to_str().unwrap(), "--api-url", &dead]);
    assert_eq!(code, 0, "{stderr}");
    for symbol in ["BTCUSDc", "XAUUSDc"] {
        let v = cycles.iter().find(|v| v["symbol"] == symbol).unwrap();
        assert_eq!(v["source"], "shm", "{v}");
        assert_eq!(v["count"], 50);
        assert!(v["age_seconds"].as_i64().unwrap() <= 90, "{v}");
        assert_eq!(v["last_complete"], false, "the forming bar is last");
        assert!(v["conditions"]["vwap"].as_f64().unwrap() > 0.0, "{v}");
        assert!(v["skipped"].as_object().unwrap().is_empty(), "{v}");
    }
}

#[test]
fn no_segment_but_a_live_shim_serves_from_http() {
    let seg = TempSegment::new("mon-http");
    let elsewhere = TempSegment::new("mon-http-none");
    let _streamer = streamer(&seg);
    wait_for_running(&seg.path);
    let (_shim, url) = shim(&seg);
    let file = elsewhere.file();
    let (code, cycles, stderr) = monitor_once(&[
        "--segment-path",
        file.to_str().unwrap(),
        "--api-url",
        &url,
        "--symbols",
        "BTCUSDc",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let v = &cycles[0];
    assert_eq!(v["source"], "http", "{v}");
    assert_eq!(v["skipped"]["shm"]["class"], "unavailable");
    assert!(
        v["skipped"]["shm"]["reason"]
            .as_str()
            .unwrap()
            .contains("no segment"),
        "{v}"
    );
    assert_eq!(v["count"], 50);
}

#[test]
#[cfg_attr(
    windows,
    ignore = "starts the Python MT5 gateway, which a Windows process cannot run under Wine here"
)]
fn a_killed_streamer_without_a_shim_falls_back_to_the_gateway() {
    if !python3_available("the MT5 fallback test") {
        return;
    }
    let data = exports("kill", "BTCUSDc", 120);
    let (_gw, gw_addr) = gateway(&data);
    let seg = TempSegment::new("mon-kill");
    let mut streamer = streamer(&seg);
    wait_for_running(&seg.path);
    let file = seg.file();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let args = [
        "--segment-path",
        file.to_str().unwrap(),
        "--api-url",
        &dead,
        "--gateway",
        &gw_addr,
        "--symbols",
        "BTCUSDc",
    ];
    let (_, cycles, _) = monitor_once(&args);
    assert_eq!(source_of(&cycles, "BTCUSDc"), "shm");

    streamer.0.as_mut().unwrap().kill().unwrap(); // SIGKILL
    streamer.0.as_mut().unwrap().wait().unwrap();
    let (code, cycles, stderr) = monitor_once(&args);
    assert_eq!(code, 0, "{stderr}");
    let v = &cycles[0];
    assert_eq!(v["source"], "mt5", "{v}");
    assert_eq!(
        v["skipped"]["shm"]["reason"], "unavailable (writer gone)",
        "{v}"
    );
    assert_eq!(v["skipped"]["http"]["class"], "unavailable", "{v}");
    assert_eq!(v["server_time_offset_seconds"], OFFSET);
    assert!(
        v["age_seconds"].as_i64().unwrap() < 90,
        "times are UTC: {v}"
    );
    assert_eq!(
        v["conditions"]["volume_spike"], true,
        "the last bar trades 3x: {v}"
    );

    // With the gateway gone too, no source serves and --once says so.
    drop(_gw);
    let (code, cycles, _) = monitor_once(&args);
    assert_eq!(code, 1);
    assert_eq!(cycles[0]["source"], Value::Null);
    assert_eq!(cycles[0]["skipped"]["mt5"]["class"], "unavailable");
}

/// Reads `mtf-monitor --json` lines as they come.
fn lines_of(child: &mut ChildGuard) -> mpsc::Receiver<Value> {
    let stdout = child.0.as_mut().unwrap().stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::String(line));
            if tx.send(v).is_err() {
                return;
            }
        }
    });
    rx
}

/// The next line for which `ok` holds, within `limit`.
fn next_line(rx: &mpsc::Receiver<Value>, limit: Duration, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(v) if ok(&v) => return v,
            Ok(_) => {}
            Err(e) => panic!("no such line within {limit:?}: {e}"),
        }
    }
}

// Unix only: stops the child with SIGTERM, which Windows has not (ChildGuard::stop).
#[cfg(unix)]
#[test]
fn a_restarted_streamer_is_back_on_shm_within_one_cycle() {
    let seg = TempSegment::new("mon-restart");
    let mut first = streamer(&seg);
    wait_for_running(&seg.path);
    let file = seg.file();
    let mut monitor = ChildGuard::spawn(
        MONITOR,
        &[
            "--json",
            "--interval",
            "1",
            "--segment-path",
            file.to_str().unwrap(),
            "--api-url",
            "none",
            "--symbols",
            "BTCUSDc",
        ],
    );
    let rx = lines_of(&mut monitor);
    let cycle = |v: &Value| v["type"] == "cycle";
    let v = next_line(&rx, Duration::from_secs(10), cycle);
    assert_eq!(v["source"], "shm", "{v}");
    let generation = v["generation"].as_u64().unwrap();

    first.0.as_mut().unwrap().kill().unwrap();
    first.0.as_mut().unwrap().wait().unwrap();
    let change = next_line(&rx, Duration::from_secs(10), |v| {
        v["type"] == "source_change"
    });
    assert_eq!(
        change["message"],
        "BTCUSDc: no source (shm unavailable (writer gone); http not configured; mt5 not configured)"
    );

    let _second = streamer(&seg);
    wait_for_status(&seg.path, "the restart", Duration::from_secs(20), |s| {
        s.generation > generation && s.liveness == shm_core::Liveness::Alive
    });
    // The cycle under way when the streamer came back may still miss it; the next may not.
    let a = next_line(&rx, Duration::from_secs(5), cycle);
    let b = if a["source"] == "shm" {
        a
    } else {
        next_line(&rx, Duration::from_secs(5), cycle)
    };
    assert_eq!(b["source"], "shm", "{b}");
    assert_eq!(b["generation"].as_u64(), Some(generation + 1));

    // SIGTERM: the counters are printed at exit.
    monitor.sigterm();
    let stats = next_line(&rx, Duration::from_secs(5), |v| v["type"] == "stats");
    assert!(
        stats["sources"]["shm"]["served"].as_u64().unwrap() >= 2,
        "{stats}"
    );
    assert!(
        stats["sources"]["shm"]["skipped"]["unavailable"]
            .as_u64()
            .unwrap()
            >= 1,
        "{stats}"
    );
    assert!(stats["no_source"].as_u64().unwrap() >= 1, "{stats}");
    let (status, _, _) = monitor.wait_for(Duration::from_secs(5)).expect("exits");
    assert!(status.success());
}

/// The streamer takes its bars from the gateway, the shim serves the streamer's segment: all
/// three sources then hold the same minutes, and must hand the monitor identical bars.
#[test]
#[cfg_attr(
    windows,
    ignore = "starts the Python MT5 gateway, which a Windows process cannot run under Wine here"
)]
fn all_three_sources_return_identical_bars() {
    if !python3_available("the three-source comparison") {
        return;
    }
    let data = exports("same", "EURUSD", 200);
    let (_gw, gw_addr) = gateway(&data);
    let seg = TempSegment::new("mon-same");
    let file = seg.file();
    let _streamer = ChildGuard::spawn(
        workspace_bin("mtf-streamer"),
        &[
            "--source",
            "mt5",
            "--gateway",
            &gw_addr,
            "--symbols",
            "EURUSD",
            "--no-http",
            "--segment-path",
            file.to_str().unwrap(),
        ],
    );
    let reader = wait_for_status(&seg.path, "the backfill", Duration::from_secs(20), |s| {
        // The exports hold bars only, so the tick stream may end at once (`finished`).
        s.writer_state == Some(shm_core::WriterState::Running)
            && matches!(
                s.feed_state,
                Some(shm_core::FeedState::Live | shm_core::FeedState::Finished)
            )
    });
    let ring = reader.ring("EURUSD", shm_core::Timeframe::M1).unwrap();
    let start = Instant::now();
    while ring.stats().unwrap().buffered < 200 {
        assert!(start.elapsed() < Duration::from_secs(20), "backfill");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_shim, url) = shim(&seg);

    let timeout = Duration::from_secs(2);
    let mut sources: Vec<Box<dyn BarSource>> = vec![
        Box::new(ShmSource::new(seg.path.clone(), None)),
        Box::new(HttpSource::new(&url, timeout, None, None)),
        Box::new(Mt5Source::new(&gw_addr, timeout, None)),
    ];
    let fetched: Vec<_> = sources
        .iter_mut()
        .map(|s| {
            s.fetch("EURUSD", 50)
                .unwrap_or_else(|e| panic!("{}: {e}", s.kind()))
        })
        .collect();
    for f in &fetched[1..] {
        assert_eq!(f.bars, fetched[0].bars);
        assert_eq!(f.offset_s, OFFSET);
    }
    let bars = &fetched[0].bars;
    assert_eq!(bars.len(), 50);
    assert!(
        bars.windows(2).all(|w| w[1].time - w[0].time == 60),
        "oldest first"
    );
    let newest = bars.last().unwrap();
    assert!(newest.forming && bars[..49].iter().all(|b| !b.forming));
    // Server time, as the segment, HTTP and MT5 stamp it; the offset beside it gives UTC.
    let utc = monitor_bin::bar::utc_time(newest, fetched[0].offset_s);
    assert!((now_s() - utc) < 120, "the offset gives UTC");
    assert_eq!(newest.time - utc, OFFSET);
    assert_eq!(newest.tick_volume, 300);

    // The same through the binary: identical conditions whichever source serves.
    let lines: Vec<Value> = ["shm", "http", "mt5"]
        .iter()
        .map(|source| {
            let (code, cycles, stderr) = monitor_once(&[
                "--sources",
                source,
                "--segment-path",
                file.to_str().unwrap(),
                "--api-url",
                &url,
                "--gateway",
                &gw_addr,
                "--symbols",
                "EURUSD",
                "--max-age",
                "600",
            ]);
            assert_eq!(code, 0, "{source}: {stderr}");
            assert_eq!(cycles[0]["source"], *source);
            cycles[0].clone()
        })
        .collect();
    for v in &lines[1..] {
        for field in ["conditions", "last_close", "last_time", "count"] {
            assert_eq!(v[field], lines[0][field], "{field}");
        }
    }
}

#[test]
fn bad_flags_are_refused_with_the_flag_named() {
    for (args, needle) in [
        (&["--interval", "0"][..], "--interval 0"),
        (&["--interval", "301"][..], "--interval 301"),
        (&["--symbols", "BTC/USD"][..], "--symbols"),
        (&["--api-url", "https://example.com"][..], "--api-url"),
        (&["--gateway", "nowhere"][..], "--gateway"),
        (&["--min-candles", "60"][..], "--min-candles"),
        (&["--server-offset", "+25:00"][..], "--server-offset"),
        (&["--sources", "shm,shm"][..], "listed twice"),
        (&["--sources", "redis"][..], "unknown source"),
    ] {
        let mut all = vec!["--once"];
        all.extend(args);
        let (status, stdout, stderr) = ChildGuard::spawn(MONITOR, &all)
            .wait_for(Duration::from_secs(10))
            .unwrap();
        assert_eq!(status.code(), Some(2), "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
    }
}

// Unix only: stops the child with SIGTERM, which Windows has not (ChildGuard::stop).
#[cfg(unix)]
#[test]
fn with_nothing_live_left_a_stopped_segments_candles_are_shown_labelled_stale() {
    let seg = TempSegment::new("mon-stale");
    let streamer = streamer(&seg);
    wait_for_running(&seg.path);
    streamer.sigterm();
    streamer
        .wait_for(Duration::from_secs(10))
        .expect("the streamer stops");
    let file = seg.file();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let (code, cycles, stderr) =
        monitor_once(&["--segment-path", file.to_str().unwrap(), "--api-url", &dead]);
    assert_eq!(code, 1, "stale data is no live source: {stderr}");
    let v = cycles.iter().find(|v| v["symbol"] == "BTCUSDc").unwrap();
    assert_eq!(v["source"], Value::Null, "{v}");
    assert_eq!(v["stale"]["source"], "shm", "{v}");
    assert_eq!(v["stale"]["reason"], "writer stopped", "{v}");
    assert_eq!(v["stale"]["count"], 50, "{v}");
    // The text line says so in words.
    let out = std::process::Command::new(MONITOR)
        .args([
            "--once",
            "--segment-path",
            file.to_str().unwrap(),
            "--api-url",
            &dead,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("STALE shm (writer stopped)"), "{text}");
}
