//! Load harness: the figures criterion does not give. Prints markdown tables for
//! docs/BENCHMARKS.md.
//!
//! 1. Per-call latency percentiles of reading 50 candles, with an idle and a busy writer.
//! 2. HTTP: 64 keep-alive clients on `/streamer/candles/BTCUSDc/M1?limit=50`: requests/s and
//!    latency percentiles.
//! 3. The shim against Redis in the same run: `wrk -t2 -c64 -d10s` on `limit=50` (dicts, and
//!    raw arrays of about Redis's value size), against `redis-benchmark -t set,get -d 3072
//!    -c 50` on a `redis-server` started on a free port and stopped after.
//! 4. HTTP with 1,000 idle connections held open: latency of a normal client.
//! 5. `mtf-streamer` start-up to state `running`, synthetic backfill.
//! 6. `mtf-streamer` memory with 20 symbols.
//!
//! Run: `cargo bench -p mtf-benches --bench load` (it builds the release streamer itself).

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http_shim::{Shim, ShimConfig};
use mtf_benches::{
    keep_alive_request, quantiles, release_streamer, save_rows, Row, CANDLES_REQUEST,
};
use mtf_tests::{ChildGuard, TempSegment};
use shm_core::{Candle, Layout, Reader, Timeframe, Writer, WriterState};

fn full_writer(seg: &TempSegment) -> Writer {
    let mut layout = Layout::new();
    for (tf, cap) in [
        (Timeframe::M1, 1440),
        (Timeframe::M5, 300),
        (Timeframe::H1, 100),
    ] {
        layout.add_ring("BTCUSDc", tf, cap).unwrap();
    }
    let mut w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    let now_min = Timeframe::M1.bar_start((shm_core::now_ns() / 1_000_000_000) as i64);
    let m1 = w.ring("BTCUSDc", Timeframe::M1).unwrap();
    for k in (1..=1440).rev() {
        w.push_closed(
            m1,
            &Candle {
                tick_volume: 600,
                spread: 1500,
                ..Candle::flat(now_min - k * 60, 90_000.0 + k as f64 * 0.25)
            },
        );
    }
    w.update_forming(m1, &Candle::flat(now_min, 90_000.0));
    w.set_running();
    w
}

/// A thread that keeps the writer heartbeating, and optionally updates the forming candle as
/// fast as it can.
fn drive(mut w: Writer, busy: bool, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let m1 = w.ring("BTCUSDc", Timeframe::M1).unwrap();
        let mut c = w.forming(m1).unwrap();
        let mut updates = 0u64;
        while !stop.load(Ordering::Relaxed) {
            if busy {
                for _ in 0..1000 {
                    c.close += 0.01;
                    c.high = c.high.max(c.close);
                    c.tick_volume += 1;
                    w.update_forming(m1, &c);
                }
                updates += 1000;
            } else {
                std::thread::sleep(Duration::from_millis(100)); // 10 ticks/s
                c.close += 0.01;
                c.high = c.high.max(c.close);
                w.update_forming(m1, &c);
                updates += 1;
            }
            w.heartbeat();
        }
        updates
    })
}

fn read_latency() {
    println!("\n### 1. Reading the newest 50 M1 candles, per call (one reader thread, writer in another thread)\n");
    // The cost of the clock itself, to read the figures against.
    let mut clock = Histogram::<u64>::new(3).unwrap();
    for _ in 0..200_000 {
        let t = Instant::now();
        let d = t.elapsed();
        clock.record(d.as_nanos() as u64).unwrap();
    }
    println!(
        "- clock overhead (Instant::now + elapsed): {}",
        quantiles(&clock, "ns", 1.0)
    );
    for busy in [false, true] {
        let seg = TempSegment::new("load-read");
        let stop = Arc::new(AtomicBool::new(false));
        let driver = drive(full_writer(&seg), busy, Arc::clone(&stop));
        let reader = Reader::open(&seg.path).unwrap();
        let ring = reader.ring("BTCUSDc", Timeframe::M1).unwrap();
        let mut out = Vec::with_capacity(64);
        let mut h = Histogram::<u64>::new(3).unwrap();
        let mut busy_errors = 0;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            let t = Instant::now();
            let r = ring.read_last(50, &mut out);
            let d = t.elapsed().as_nanos() as u64;
            match r {
                Ok(()) => h.record(d).unwrap(),
                Err(_) => busy_errors += 1,
            }
        }
        stop.store(true, Ordering::Relaxed);
        let updates = driver.join().unwrap();
        let label = if busy {
            format!(
                "writer updating the forming candle flat out ({:.1} M updates/s)",
                updates as f64 / 3e6
            )
        } else {
            "writer at 10 ticks/s".to_owned()
        };
        println!(
            "- {label}: {}; retries {}, busy errors {busy_errors}",
            quantiles(&h, "ns", 1.0),
            reader.retries()
        );
    }
}

/// One keep-alive candles request; its status.
fn request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> u16 {
    keep_alive_request(stream, CANDLES_REQUEST, buf).0
}

fn shim_for(seg: &TempSegment) -> Shim {
    Shim::start(ShimConfig {
        segment: seg.path.clone(),
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..ShimConfig::default()
    })
    .unwrap()
}

fn http_load(rows: &mut Vec<Row>) {
    let clients: usize = std::env::var("MTF_BENCH_CLIENTS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|&c| c > 0)
        .unwrap_or(64);
    println!("\n### 2. HTTP: {clients} keep-alive clients, `GET /streamer/candles/BTCUSDc/M1?limit=50`, 10 s (clients and server share the 2 cores)\n");
    let seg = TempSegment::new("load-http");
    let stop = Arc::new(AtomicBool::new(false));
    let driver = drive(full_writer(&seg), false, Arc::clone(&stop));
    let shim = shim_for(&seg);
    let addr = shim.local_addr();
    let barrier = Arc::new(Barrier::new(clients + 1));
    let run_for = Duration::from_secs(10);
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_nodelay(true).unwrap();
                let mut buf = Vec::with_capacity(16 * 1024);
                let mut h = Histogram::<u64>::new(3).unwrap();
                request(&mut s, &mut buf); // warm the connection
                barrier.wait();
                let start = Instant::now();
                while start.elapsed() < run_for {
                    let t = Instant::now();
                    assert_eq!(request(&mut s, &mut buf), 200);
                    h.record(t.elapsed().as_micros() as u64).unwrap();
                }
                h
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let mut total = Histogram::<u64>::new(3).unwrap();
    for h in handles {
        total.add(h.join().unwrap()).unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let per_s = total.len() as f64 / secs;
    println!(
        "- {per_s:.0} requests/s; latency {}",
        quantiles(&total, "ms", 1000.0)
    );
    let p99_ms = total.value_at_quantile(0.99) as f64 / 1000.0;
    rows.push(Row {
        measure: format!(
            "HTTP throughput, {clients} keep-alive clients (built-in load generator), p99"
        ),
        result: format!("{per_s:.0} req/s, p99 {p99_ms:.2} ms"),
        target: "≥ 30k req/s".into(),
        met: Some(per_s >= 30_000.0),
    });
    drop(shim);
    stop.store(true, Ordering::Relaxed);
    driver.join().unwrap();
}

/// What `wrk --latency` printed: requests/s and the p50 and p99 latency in ms.
fn parse_wrk(out: &str) -> Option<(f64, f64, f64)> {
    let ms = |v: &str| -> Option<f64> {
        let (n, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
        let n: f64 = n.parse().ok()?;
        Some(match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            _ => return None,
        })
    };
    let field = |prefix: &str| {
        out.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
    };
    let rps = field("Requests/sec:")?.parse().ok()?;
    Some((rps, ms(field("50%")?)?, ms(field("99%")?)?))
}

/// A program on the PATH, or why not.
fn tool(name: &str) -> Result<(), String> {
    match std::process::Command::new(name).arg("--version").output() {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "{name} is not installed ({e}); ./scripts/setup --bench installs it"
        )),
    }
}

fn http_against_redis(rows: &mut Vec<Row>) {
    println!("\n### 3. The shim against Redis, same machine, same run (`wrk -t2 -c64 -d10s --latency`; `redis-benchmark -t set,get -d 3072 -c 50 -n 500000`)\n");
    if let Err(why) = tool("wrk")
        .and(tool("redis-server"))
        .and(tool("redis-benchmark"))
    {
        println!("- NOT MEASURED: {why}");
        rows.push(Row {
            measure: "HTTP against Redis".into(),
            result: format!("NOT MEASURED: {why}"),
            target: String::new(),
            met: None,
        });
        return;
    }
    let seg = TempSegment::new("load-redis");
    let stop = Arc::new(AtomicBool::new(false));
    let driver = drive(full_writer(&seg), false, Arc::clone(&stop));
    let shim = shim_for(&seg);
    let mut shim_rps = Vec::new();
    for (label, query) in [
        ("dicts, 6.9 KB", "limit=50"),
        ("raw arrays, 3.2 KB", "limit=50&format=raw"),
    ] {
        let url = format!(
            "http://{}/streamer/candles/BTCUSDc/M1?{query}",
            shim.local_addr()
        );
        let out = std::process::Command::new("wrk")
            .args(["-t2", "-c64", "-d10s", "--latency", &url])
            .output()
            .expect("run wrk");
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("Non-2xx") {
            println!("- shim, {label}: wrk saw errors:\n{text}");
        }
        match parse_wrk(&text) {
            Some((rps, p50, p99)) => {
                println!("- shim, {label}: {rps:.0} req/s, p50 {p50:.3} ms, p99 {p99:.2} ms");
                shim_rps.push((label, rps, p99));
            }
            None => println!("- shim, {label}: wrk printed nothing usable:\n{text}"),
        }
    }
    drop(shim);
    stop.store(true, Ordering::Relaxed);
    driver.join().unwrap();

    let port = mtf_tests::free_port().to_string();
    let mut redis = ChildGuard::spawn(
        "redis-server",
        &[
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--loglevel",
            "warning",
        ],
    );
    let up = Instant::now();
    while TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).is_err() {
        assert!(
            up.elapsed() < Duration::from_secs(10),
            "redis-server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = std::process::Command::new("redis-benchmark")
        .args([
            "-p", &port, "-t", "set,get", "-d", "3072", "-c", "50", "-n", "500000", "--csv",
        ])
        .output()
        .expect("run redis-benchmark");
    redis.stop();
    let _ = redis.wait_for(Duration::from_secs(10));
    let text = String::from_utf8_lossy(&out.stdout);
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",
    // "p99_latency_ms","max_latency_ms"
    let get = text.lines().find(|l| l.starts_with("\"GET\"")).map(|l| {
        l.split(',')
            .map(|f| f.trim_matches('"').parse::<f64>().unwrap_or(f64::NAN))
            .collect::<Vec<f64>>()
    });
    let Some(get) = get.filter(|f| f.len() >= 7) else {
        println!("- redis-benchmark printed nothing usable:\n{text}");
        return;
    };
    let (redis_rps, redis_p50, redis_p99) = (get[1], get[4], get[6]);
    println!(
        "- Redis GET, 3072-byte value: {redis_rps:.0} req/s, p50 {redis_p50:.3} ms, p99 {redis_p99:.2} ms"
    );
    for (label, rps, p99) in shim_rps {
        let ratio = rps / redis_rps;
        println!("- shim ({label}) / Redis: {ratio:.2}");
        rows.push(Row {
            measure: format!(
                "HTTP limit=50 ({label}), wrk -c64, against Redis GET -d 3072 -c 50, same run"
            ),
            result: format!(
                "{rps:.0} req/s (p99 {p99:.2} ms) vs {redis_rps:.0} GET/s: {ratio:.2}×"
            ),
            target: "≥ 1.00×, p99 ≤ 2 ms".into(),
            met: Some(ratio >= 1.0 && p99 <= 2.0),
        });
    }
}

fn idle_connections() {
    println!("\n### 4. HTTP with 1,000 idle connections held open: one client, 500 sequential requests\n");
    let seg = TempSegment::new("load-idle");
    let stop = Arc::new(AtomicBool::new(false));
    let driver = drive(full_writer(&seg), false, Arc::clone(&stop));
    let shim = shim_for(&seg);
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(shim.local_addr()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut h = Histogram::<u64>::new(3).unwrap();
    for _ in 0..500 {
        // A new connection each time: the worst case, accept and thread start included.
        let t = Instant::now();
        let mut s = TcpStream::connect(shim.local_addr()).unwrap();
        let mut buf = Vec::new();
        assert_eq!(request(&mut s, &mut buf), 200);
        h.record(t.elapsed().as_micros() as u64).unwrap();
    }
    println!(
        "- new connection + request each time: {}",
        quantiles(&h, "ms", 1000.0)
    );
    drop(idle);
    drop(shim);
    stop.store(true, Ordering::Relaxed);
    driver.join().unwrap();
}

fn wait_running(seg: &TempSegment, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if let Ok(r) = Reader::open(&seg.path) {
            if r.status().writer_state == Some(WriterState::Running) {
                return start.elapsed();
            }
        }
        assert!(start.elapsed() < limit, "streamer did not reach running");
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn startup_and_memory(rows: &mut Vec<Row>) {
    let bin = release_streamer();
    println!("\n### 5. `mtf-streamer` start-up to state running (synthetic, 2 symbols, 30 days of M1 backfill, new segment each time)\n");
    let mut h = Histogram::<u64>::new(3).unwrap();
    for _ in 0..10 {
        let seg = TempSegment::new("load-start");
        let file = seg.file();
        let t = Instant::now();
        let mut child = ChildGuard::spawn(
            bin.to_str().unwrap(),
            &["--no-http", "--segment-path", file.to_str().unwrap()],
        );
        wait_running(&seg, Duration::from_secs(30));
        h.record(t.elapsed().as_micros() as u64).unwrap();
        child.stop();
        child.wait_for(Duration::from_secs(10)).unwrap();
    }
    println!("- spawn to running: {}", quantiles(&h, "ms", 1000.0));
    rows.push(Row {
        measure: "mtf-streamer spawn to running (30 days of synthetic backfill), p50".into(),
        result: format!("{:.1} ms", h.value_at_quantile(0.5) as f64 / 1000.0),
        target: String::new(),
        met: None,
    });

    println!(
        "\n### 6. `mtf-streamer` memory with 20 symbols, 7 timeframes (synthetic, HTTP shim on)\n"
    );
    let symbols: Vec<String> = (0..20).map(|i| format!("SYM{i:02}USD")).collect();
    let seg = TempSegment::new("load-rss");
    let file = seg.file();
    let joined = symbols.join(",");
    let mut child = ChildGuard::spawn(
        bin.to_str().unwrap(),
        &[
            "--http",
            "127.0.0.1:0",
            "--segment-path",
            file.to_str().unwrap(),
            "--symbols",
            &joined,
        ],
    );
    wait_running(&seg, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    let pid = child.0.as_ref().unwrap().id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map_or("?".into(), |l| l[name.len()..].trim().to_owned())
    };
    let seg_size = std::fs::metadata(&file).unwrap().len();
    println!(
        "- VmRSS {} (RssAnon {}, RssFile {}, RssShmem {}); VmHWM {}; segment file {:.1} MiB",
        field("VmRSS:"),
        field("RssAnon:"),
        field("RssFile:"),
        field("RssShmem:"),
        field("VmHWM:"),
        seg_size as f64 / 1048576.0
    );
    rows.push(Row {
        measure: "mtf-streamer memory, 20 symbols × 7 timeframes, HTTP on".into(),
        result: format!("VmRSS {}", field("VmRSS:")),
        target: String::new(),
        met: None,
    });
    child.stop();
    child.wait_for(Duration::from_secs(10)).unwrap();
}

fn main() {
    // `cargo bench` passes criterion-style flags; this harness takes none.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!(
        "## Load harness ({})",
        shm_core::iso8601_ms((shm_core::now_ns() / 1_000_000) as i64)
    );
    let mut rows = Vec::new();
    read_latency();
    http_load(&mut rows);
    http_against_redis(&mut rows);
    idle_connections();
    startup_and_memory(&mut rows);
    save_rows("load", &rows);
}
