//! The `mtf-shim` binary as an operator runs it.
// Some tests here are Unix-only (marked): their helpers go unused on Windows.
#![cfg_attr(not(unix), allow(unused))]

use std::io::{BufRead, BufReader};
use std::time::Duration;

use mtf_tests::{ChildGuard, TempSegment};

const BIN: &str = env!("CARGO_BIN_EXE_mtf-shim");

// Unix only: stops the child with SIGTERM, which Windows has not (ChildGuard::stop).
#[cfg(unix)]
#[test]
fn serves_until_sigterm_and_answers_503_without_a_streamer() {
    let seg = TempSegment::new("shim-cli");
    let file = seg.file();
    let mut shim = ChildGuard::spawn(
        BIN,
        &[
            "--segment-path",
            file.to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
        ],
    );
    let mut line = String::new();
    BufReader::new(shim.0.as_mut().unwrap().stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/streamer/status"),
        "{line}"
    );
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let health = url.replace("/status", "/health");
    assert_eq!(agent.get(&health).call().unwrap().status().as_u16(), 503);
    shim.sigterm();
    let (status, _, stderr) = shim
        .wait_for(Duration::from_secs(10))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_remote_bind_needs_the_flag() {
    let out = std::process::Command::new(BIN)
        .args(["--bind", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--allow-remote"), "{stderr}");
}

/// Resident memory of a process, from /proc (kB).
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// The highest RSS of process `pid`, sampled every 100 ms until it has not grown for a second
/// (the server has produced all it will), or for 30 s at most.
fn settled_peak_rss_kb(pid: u32) -> u64 {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    let mut peak = rss_kb(pid);
    let mut grew_at = std::time::Instant::now();
    while std::time::Instant::now() < until && grew_at.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(100));
        let now = rss_kb(pid);
        if now > peak {
            peak = now;
            grew_at = std::time::Instant::now();
        }
    }
    peak
}

/// A running writer on `seg` with `rings` M1 rings `S0`, `S1`, … of 1,440 closed candles each,
/// the newest opening at `last_open` (epoch seconds).
fn full_m1_rings(seg: &TempSegment, rings: usize, last_open: i64) -> shm_core::Writer {
    use shm_core::{Candle, Layout, Timeframe, Writer};
    let mut layout = Layout::new();
    for s in 0..rings {
        layout
            .add_ring(&format!("S{s}"), Timeframe::M1, 1440)
            .unwrap();
    }
    let mut w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    for s in 0..rings {
        let ring = w.ring(&format!("S{s}"), Timeframe::M1).unwrap();
        for k in (0..1440).rev() {
            w.push_closed(ring, &Candle::flat(last_open - k * 60, 1000.0 + k as f64));
        }
    }
    w.set_running();
    w
}

#[test]
#[cfg_attr(
    windows,
    ignore = "measures the shim's memory in /proc/PID/status, which Windows has not"
)]
fn a_thousand_resuming_streams_that_never_read_stay_within_the_budget() {
    // The attack: 1,000 event streams resuming from the very start (`Last-Event-ID: 0,…`) on
    // 14 rings, never reading. Backlogs go out in chunks charged to the byte budget.
    use shm_core::Timeframe;
    use std::io::Write;
    let seg = TempSegment::new("shim-1000-sse");
    let now_min = Timeframe::M1.bar_start((shm_core::now_ns() / 1_000_000_000) as i64);
    let w = full_m1_rings(&seg, 14, now_min - 60);
    // Keep the writer's heartbeat fresh, or the streams refuse to start.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let beat = {
        let stop = std::sync::Arc::clone(&stop);
        let mut w = w;
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                w.heartbeat();
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let (shim, addr) = mtf_tests::spawn_shim(&seg.file());
    let pid = shim.0.as_ref().unwrap().id();
    let before = rss_kb(pid);
    let symbols: Vec<String> = (0..14).map(|s| format!("S{s}")).collect();
    let request = format!(
        "GET /streamer/stream?symbols={}&timeframes=M1 HTTP/1.1\r\nHost: localhost\r\nLast-Event-ID: {}\r\n\r\n",
        symbols.join(","),
        vec!["0"; 14].join(",")
    );
    let sockets: Vec<std::net::TcpStream> = (0..1000)
        .filter_map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).ok()?;
            s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(request.as_bytes()).ok()?;
            Some(s)
        })
        .collect();
    // What the server holds once it has produced all it will while nobody reads.
    let during = settled_peak_rss_kb(pid);
    drop(sockets);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    beat.join().unwrap();
    println!("shim RSS: {before} kB before, {during} kB with 1,000 non-reading resuming streams");
    // The attack took the process to 2.1 GB. The bound (docs/DESIGN.md): the 64 MiB budget
    // plus a fixed amount per stream, well under 64 kB.
    assert!(
        during < before + 64 * 1024 + 1000 * 64,
        "RSS grew from {before} kB to {during} kB"
    );
}

#[test]
#[cfg_attr(
    windows,
    ignore = "measures the shim's memory in /proc/PID/status, which Windows has not"
)]
fn three_hundred_pipeliners_of_large_gzip_answers_stay_within_the_budget() {
    // The attack: 300 connections, each pipelining three batch requests of 611 kB answers
    // (two of them gzip), never reading. Answers are reserved before they are built, so the
    // shim holds at most its 64 MiB budget of answers, plus what each connection costs.
    use std::io::Write;
    let seg = TempSegment::new("shim-300-rss");
    let w = full_m1_rings(&seg, 14, 1439 * 60);
    let (shim, addr) = mtf_tests::spawn_shim(&seg.file());
    let pid = shim.0.as_ref().unwrap().id();
    let before = rss_kb(pid);
    let symbols: Vec<String> = (0..14).map(|s| format!("S{s}")).collect();
    let request = |gzip: bool| {
        format!(
            "GET /streamer/candles?symbols={}&timeframes=M1&limit=1441 HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
            symbols.join(","),
            if gzip { "Accept-Encoding: gzip\r\n" } else { "" }
        )
    };
    let pipelined = format!("{}{}{}", request(false), request(true), request(true));
    let sockets: Vec<std::net::TcpStream> = (0..300)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(pipelined.as_bytes());
            s
        })
        .collect();
    // What the server holds once it has produced all it will while nobody reads.
    let during = settled_peak_rss_kb(pid);
    drop(sockets);
    println!("shim RSS: {before} kB before, {during} kB with 300 non-reading pipeliners");
    // The attack took the process to 566 MB; the budget is 64 MiB, and each connection's
    // thread, buffers and half-built state add a little.
    assert!(
        during < before + 200 * 1024,
        "RSS grew from {before} kB to {during} kB"
    );
    drop(w);
}

#[test]
#[cfg_attr(
    windows,
    ignore = "measures the shim's memory in /proc/PID/status, which Windows has not"
)]
fn clients_that_pipeline_large_requests_and_never_read_cannot_grow_memory_without_bound() {
    use std::io::Write;
    let seg = TempSegment::new("shim-amplify-rss");
    let w = full_m1_rings(&seg, 10, 1439 * 60);
    let (shim, addr) = mtf_tests::spawn_shim(&seg.file());
    let pid = shim.0.as_ref().unwrap().id();
    let before = rss_kb(pid);
    // Each request names 10 rings ten times over, at 1,441 candles: 24 MB of JSON if the
    // repeats were served, about 2.4 MB once they are dropped.
    let symbols: Vec<String> = (0..100).map(|s| format!("S{}", s % 10)).collect();
    let request = format!(
        "GET /streamer/candles?symbols={}&timeframes=M1&limit=1441 HTTP/1.1\r\nHost: localhost\r\n\r\n",
        symbols.join(",")
    );
    let pipelined = request.repeat(50);
    let sockets: Vec<std::net::TcpStream> = (0..60)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(pipelined.as_bytes());
            s
        })
        .collect();
    // What the server holds once it has produced all it will while nobody reads.
    let during = settled_peak_rss_kb(pid);
    // The answers are real ones (200 or, past the budget, 503), not refusals of the request.
    let mut first = String::new();
    BufReader::new(&sockets[0]).read_line(&mut first).unwrap();
    assert!(
        first.starts_with("HTTP/1.1 200") || first.starts_with("HTTP/1.1 503"),
        "{first}"
    );
    drop(sockets);
    println!("shim RSS: {before} kB before, {during} kB with 60 non-reading pipeliners");
    // Without a bound this reached 1 GB; the in-flight budget is 64 MiB.
    assert!(
        during < before + 150 * 1024,
        "RSS grew from {before} kB to {during} kB"
    );
    drop(w);
}
