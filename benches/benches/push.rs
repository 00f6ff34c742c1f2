//! Push harness: the live endpoints of a release `mtf-shim` process, fed by a writer in this
//! process. Prints markdown for docs/BENCHMARKS.md and leaves its rows for `bench-table`.
//!
//! 1. Tick → server-sent event at a local client: a tick every 20 ms (longer than the
//!    stream's 10 ms interval, so that no tick waits for coalescing), each carrying its
//!    sequence number as its tick volume; the client times each event against the tick's send
//!    time.
//! 2. Fan-out: 1,000 event-stream clients, each on 2 rings, the writer at 10 ticks/s and a bar
//!    closing on both rings every second, for 10 s. Every client must receive every closed bar;
//!    the shim's CPU and memory are read from /proc.
//!
//! Run: `cargo bench -p mtf-benches --bench push` (it builds the release shim itself).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mtf_benches::{quantiles, release_bin, save_rows, Row};
use mtf_tests::{ChildGuard, TempSegment};
use shm_core::{Candle, Layout, Timeframe, Writer};

/// A writer of BTCUSDc M1 and M5, running.
fn writer(seg: &TempSegment) -> (Writer, i64) {
    let mut layout = Layout::new();
    layout.add_ring("BTCUSDc", Timeframe::M1, 1000).unwrap();
    layout.add_ring("BTCUSDc", Timeframe::M5, 1000).unwrap();
    let mut w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    let start = Timeframe::M5.bar_start((shm_core::now_ns() / 1_000_000_000) as i64);
    for tf in [Timeframe::M1, Timeframe::M5] {
        let r = w.ring("BTCUSDc", tf).unwrap();
        w.update_forming(r, &Candle::flat(start, 90_000.0));
    }
    w.set_running();
    w.notify();
    (w, start)
}

/// Opens an event stream; returns the reader positioned after the response head.
fn open_stream(port: u16, query: &str) -> BufReader<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::with_capacity(16 * 1024, s);
    write!(
        r.get_mut(),
        "GET /streamer/stream?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.contains(" 200 "), "stream refused: {line}");
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line.trim_end().is_empty() {
            return r;
        }
    }
}

/// The `data:` lines of candle events, one at a time; `None` at the end of the stream.
fn next_candle(r: &mut BufReader<TcpStream>, line: &mut String) -> Option<serde_json::Value> {
    loop {
        line.clear();
        if r.read_line(line).ok()? == 0 {
            return None;
        }
        if let Some(data) = line.strip_prefix("data: ") {
            let v: serde_json::Value = serde_json::from_str(data).ok()?;
            if v["type"] == "candle" {
                return Some(v);
            }
        }
    }
}

/// A release `mtf-shim` on `seg`, on a port of its choosing; and that port.
fn spawn_shim(seg: &TempSegment) -> (ChildGuard, u16) {
    let bin = release_bin("http-shim", "mtf-shim");
    let mut shim = ChildGuard::spawn(
        &bin,
        &[
            "--segment-path",
            seg.path.path().to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
            "--max-streams",
            "2000",
        ],
    );
    let line = shim.first_line();
    let port = line
        .rsplit_once("127.0.0.1:")
        .and_then(|(_, rest)| rest.split('/').next()?.parse().ok())
        .unwrap_or_else(|| panic!("mtf-shim said {line:?}"));
    (shim, port)
}

/// Raises this process's soft limit on open files to its hard limit: the fan-out holds a
/// thousand client sockets. (Windows has no such limit.)
#[cfg(not(unix))]
fn raise_open_files() {}

/// Raises this process's soft limit on open files to its hard limit: the fan-out holds a
/// thousand client sockets.
#[cfg(unix)]
fn raise_open_files() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    l.current = l.maximum;
    let _ = setrlimit(Resource::Nofile, l);
}

/// utime + stime of `pid`, in seconds, and its VmHWM and VmRSS in kB.
fn proc_usage(pid: u32) -> (f64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name's closing parenthesis; utime and stime are 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let hz = 100.0; // USER_HZ on Linux
    let cpu = (ticks(11) + ticks(12)) / hz;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    (cpu, kb("VmHWM:"), kb("VmRSS:"))
}

fn latency(rows: &mut Vec<Row>) {
    const TICKS: u64 = 500;
    println!("\n### 1. Tick → server-sent event at a local client ({TICKS} ticks, one every 20 ms, `interval_ms=10`, release `mtf-shim` process)\n");
    let seg = TempSegment::new("push-latency");
    let (mut w, start) = writer(&seg);
    let (shim, port) = spawn_shim(&seg);
    // A fresh heartbeat: building the shim may have taken longer than the stall threshold.
    w.heartbeat();
    let mut stream = open_stream(port, "symbols=BTCUSDc&timeframes=M1&interval_ms=10");
    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = {
        let (sent, stop) = (Arc::clone(&sent), Arc::clone(&stop));
        std::thread::spawn(move || {
            let m1 = w.ring("BTCUSDc", Timeframe::M1).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            for seq in 1..=TICKS {
                // Relaxed: a stop flag, no data with it.
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let c = Candle {
                    tick_volume: seq,
                    ..Candle::flat(start, 90_000.0 + seq as f64 * 0.01)
                };
                sent.lock().unwrap().insert(seq, Instant::now());
                w.update_forming(m1, &c);
                w.heartbeat();
                w.notify();
                std::thread::sleep(Duration::from_millis(20));
            }
            w
        })
    };
    let mut h = Histogram::<u64>::new(3).unwrap();
    let mut line = String::new();
    let mut seen = 0;
    while seen < TICKS {
        let Some(v) = next_candle(&mut stream, &mut line) else {
            break;
        };
        let now = Instant::now();
        let seq = v["candle"]["volume"].as_u64().unwrap_or(0);
        if let Some(t) = sent.lock().unwrap().get(&seq) {
            h.record(now.duration_since(*t).as_nanos() as u64).unwrap();
        }
        seen = seq;
    }
    stop.store(true, Ordering::Relaxed);
    let _w = ticker.join().unwrap();
    drop(shim);
    let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    println!(
        "- {} events timed: {}",
        h.len(),
        quantiles(&h, "µs", 1000.0)
    );
    rows.push(Row {
        measure: "tick → SSE event at a local client, p50 / p99".into(),
        result: format!("{:.0} µs / {:.0} µs ({} events)", q(0.5), q(0.99), h.len()),
        target: "p50 ≤ 200 µs, p99 ≤ 2 ms".into(),
        met: Some(q(0.5) <= 200.0 && q(0.99) <= 2000.0),
    });
}

fn fan_out(rows: &mut Vec<Row>) {
    const CLIENTS: usize = 1000;
    const SECONDS: u64 = 10;
    println!("\n### 2. {CLIENTS} event-stream clients on 2 rings each, 10 ticks/s, a bar closing on both rings every second, {SECONDS} s\n");
    let seg = TempSegment::new("push-fanout");
    let (mut w, start) = writer(&seg);
    let (shim, port) = spawn_shim(&seg);
    let pid = shim.0.as_ref().expect("running").id();
    // The writer: heartbeats while the clients connect, then on `go` ticks 10 times a second
    // and closes a bar on both rings every second; returns the closed bars it wrote.
    let go = Arc::new(AtomicBool::new(false));
    let feed = {
        let go = Arc::clone(&go);
        std::thread::spawn(move || {
            // Relaxed: a start flag, no data with it.
            while !go.load(Ordering::Relaxed) {
                w.heartbeat();
                std::thread::sleep(Duration::from_millis(100));
            }
            let m1 = w.ring("BTCUSDc", Timeframe::M1).unwrap();
            let m5 = w.ring("BTCUSDc", Timeframe::M5).unwrap();
            let mut closes = 0u64;
            for tick in 1..=SECONDS * 10 {
                let bar = (tick / 10) as i64;
                let price = 90_000.0 + tick as f64 * 0.01;
                if tick % 10 == 0 {
                    // Close the bars of both rings, open the next ones.
                    w.push_closed(m1, &Candle::flat(start + (bar - 1) * 60, price));
                    w.push_closed(m5, &Candle::flat(start + (bar - 1) * 300, price));
                    closes += 2;
                }
                w.update_forming(m1, &Candle::flat(start + bar * 60, price));
                w.update_forming(m5, &Candle::flat(start + bar * 300, price));
                w.heartbeat();
                w.notify();
                std::thread::sleep(Duration::from_millis(100));
            }
            // Time for the last events to reach every client.
            for _ in 0..10 {
                w.heartbeat();
                std::thread::sleep(Duration::from_millis(100));
            }
            closes
        })
    };
    // The clients: one thread each with a small stack, counting the closed bars they get.
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let mut s = open_stream(port, "symbols=BTCUSDc&timeframes=M1,M5");
                    let mut line = String::new();
                    let mut closed = 0u64;
                    while let Some(v) = next_candle(&mut s, &mut line) {
                        if v["complete"] == true {
                            closed += 1;
                        }
                    }
                    closed
                })
                .expect("a client thread")
        })
        .collect();
    // All connected and past their first events; the writer heartbeats meanwhile.
    std::thread::sleep(Duration::from_secs(2));
    let (cpu_before, _, _) = proc_usage(pid);
    let began = Instant::now();
    go.store(true, Ordering::Relaxed);
    let closes = feed.join().expect("the writer thread");
    std::thread::sleep(Duration::from_secs(1));
    let wall = began.elapsed().as_secs_f64();
    let (cpu_after, hwm, rss) = proc_usage(pid);
    drop(shim); // ends every stream
    let got: Vec<u64> = clients.into_iter().map(|c| c.join().unwrap_or(0)).collect();
    let complete = got.iter().filter(|&&n| n == closes).count();
    let cpu = (cpu_after - cpu_before) / wall * 100.0;
    println!(
        "- closed bars sent by the writer: {closes}; clients that got every one: {complete} of {CLIENTS} (fewest {}, most {})",
        got.iter().min().unwrap_or(&0),
        got.iter().max().unwrap_or(&0)
    );
    println!(
        "- mtf-shim CPU: {cpu:.1} % of one core over {wall:.1} s; VmHWM {hwm} kB, VmRSS {rss} kB"
    );
    rows.push(Row {
        measure: format!("{CLIENTS} SSE clients × 2 rings, 10 ticks/s: closed bars delivered"),
        result: format!("{complete} of {CLIENTS} clients got all {closes}"),
        target: "every client, every bar".into(),
        met: Some(complete == CLIENTS),
    });
    rows.push(Row {
        measure: format!("{CLIENTS} SSE clients: mtf-shim CPU and peak memory"),
        result: format!("{cpu:.1} % of a core, VmHWM {:.0} MB", hwm as f64 / 1024.0),
        target: "RSS ≤ 300 MB".into(),
        met: Some(hwm <= 300 * 1024),
    });
}

fn main() {
    // `cargo bench` passes criterion-style flags; this harness takes none.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!(
        "## Push harness ({})",
        shm_core::iso8601_ms((shm_core::now_ns() / 1_000_000) as i64)
    );
    raise_open_files();
    // Built before any writer exists, so that no writer waits for the compiler.
    release_bin("http-shim", "mtf-shim");
    let mut rows = Vec::new();
    latency(&mut rows);
    fan_out(&mut rows);
    save_rows("push", &rows);
}
