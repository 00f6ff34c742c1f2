//! NATS harness: a writer in this process publishing through the streamer's `Publisher` to a
//! real `nats-server`, and release `mtf-mirror` processes rebuilding its segment.
//!
//! 1. The writer's tick path with the publisher on and off, side by side: the time of one
//!    `update_forming` + `notify`, in alternating blocks of 20,000 ticks.
//! 2. Origin tick → visible in the mirror's segment: a tick every 20 ms carrying its sequence
//!    number as its tick volume; a reader of the mirror's segment in this process times each.
//! 3. One origin, 10 mirrors: a bar closes every 100 ms for 5 s; every mirror must hold every
//!    one.
//!
//! Run: `cargo bench -p mtf-benches --bench nats` (it builds the release mirror itself; it
//! needs `nats-server`, which ./scripts/setup installs).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mtf_benches::{quantiles, release_bin, save_rows, Row};
use mtf_tests::{free_port, spawn_mirror, spawn_nats_server, ChildGuard, TempSegment};
use nats_bridge::{PublishConfig, Publisher};
use shm_core::{Candle, Layout, Reader, Timeframe, Writer};

fn nats_server() -> Result<(ChildGuard, String), String> {
    let port = free_port();
    let child = spawn_nats_server(port)?;
    Ok((child, format!("nats://127.0.0.1:{port}")))
}

fn writer(seg: &TempSegment) -> (Writer, i64) {
    let mut layout = Layout::new();
    layout.add_ring("BTCUSDc", Timeframe::M1, 1000).unwrap();
    let mut w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    let start = Timeframe::M1.bar_start((shm_core::now_ns() / 1_000_000_000) as i64);
    let m1 = w.ring("BTCUSDc", Timeframe::M1).unwrap();
    w.update_forming(m1, &Candle::flat(start, 90_000.0));
    w.set_running();
    (w, start)
}

fn publisher(seg: &TempSegment, url: &str, name: &str, interval: Duration) -> Publisher {
    Publisher::start(PublishConfig {
        nats: nats_bridge::NatsSettings::new(url, &Default::default()).expect("a NATS address"),
        segment: seg.path.clone(),
        name: name.into(),
        interval,
        history: None,
    })
    .expect("publisher")
}

fn mirror(url: &str, source: &str, seg: &TempSegment) -> ChildGuard {
    spawn_mirror(
        &release_bin("nats-bridge", "mtf-mirror"),
        url,
        source,
        &seg.path,
    )
}

/// Per-tick times, in ns, of blocks of 20,000 ticks: `update_forming` alone with one
/// `notify` per block (a batch, as the streamer publishes), or with a `notify` after every
/// tick.
fn tick_times(w: &mut Writer, start: i64, blocks: usize, notify_each: bool) -> Histogram<u64> {
    let m1 = w.ring("BTCUSDc", Timeframe::M1).unwrap();
    let mut h = Histogram::<u64>::new(3).unwrap();
    let mut c = Candle::flat(start, 90_000.0);
    for _ in 0..blocks {
        let t = Instant::now();
        for _ in 0..20_000 {
            c.close += 0.01;
            c.high = c.high.max(c.close);
            c.tick_volume += 1;
            w.update_forming(m1, &c);
            if notify_each {
                w.notify();
            }
        }
        w.notify();
        h.record(t.elapsed().as_nanos() as u64 / 20_000).unwrap();
        w.heartbeat();
    }
    h
}

fn tick_path(rows: &mut Vec<Row>, url: &str) {
    println!("\n### 1. The writer's tick path, publisher off and on, alternating (per tick, median of 40 blocks of 20,000 ticks written flat out)\n");
    let seg = TempSegment::new("nats-tick");
    let (mut w, start) = writer(&seg);
    for (label, notify_each) in [
        ("update_forming, one notify per block (a batch)", false),
        ("update_forming + notify after every tick", true),
    ] {
        let mut off = Histogram::<u64>::new(3).unwrap();
        let mut on = Histogram::<u64>::new(3).unwrap();
        for round in 0..4 {
            off.add(tick_times(&mut w, start, 10, notify_each)).unwrap();
            let p = publisher(
                &seg,
                url,
                &format!("tick{round}"),
                Duration::from_millis(50),
            );
            std::thread::sleep(Duration::from_millis(200));
            on.add(tick_times(&mut w, start, 10, notify_each)).unwrap();
            drop(p);
        }
        let (a, b) = (off.value_at_quantile(0.5), on.value_at_quantile(0.5));
        let ratio = b as f64 / a.max(1) as f64;
        println!(
            "- {label}: off median {a} ns (p90 {} ns); on median {b} ns (p90 {} ns); on/off {ratio:.2}",
            off.value_at_quantile(0.9),
            on.value_at_quantile(0.9)
        );
        rows.push(Row {
            measure: format!("writer tick, NATS publisher off / on: {label}, median"),
            result: format!("{a} ns / {b} ns ({ratio:.2}×)"),
            target: "within 10 %".into(),
            met: Some(ratio <= 1.10),
        });
    }
}

fn latency(rows: &mut Vec<Row>, url: &str) {
    const TICKS: u64 = 300;
    println!("\n### 2. Origin tick → visible in a mirror's segment ({TICKS} ticks, one every 25 ms, publisher interval 10 ms so that no tick waits for coalescing; release mtf-mirror)\n");
    let (o, m) = (
        TempSegment::new("nats-lat-o"),
        TempSegment::new("nats-lat-m"),
    );
    let (mut w, start) = writer(&o);
    let p = publisher(&o, url, "lat", Duration::from_millis(10));
    let _mirror = mirror(url, "lat", &m);
    // Until the mirror is up and synced.
    let until = Instant::now() + Duration::from_secs(30);
    let reader = loop {
        w.heartbeat();
        w.notify();
        if let Ok(r) = Reader::open(&m.path) {
            if r.status().writer_state == Some(shm_core::WriterState::Running) {
                break r;
            }
        }
        assert!(Instant::now() < until, "the mirror did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    let stop = Arc::new(AtomicBool::new(false));
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..=TICKS).map(|_| AtomicU64::new(0)).collect());
    let base = Instant::now();
    let watcher = {
        let (stop, sent_at) = (Arc::clone(&stop), Arc::clone(&sent_at));
        std::thread::spawn(move || {
            let ring = reader.ring("BTCUSDc", Timeframe::M1).unwrap();
            let mut h = Histogram::<u64>::new(3).unwrap();
            let mut last = 0;
            // Relaxed: a stop flag; the sequence numbers travel through the segment.
            while !stop.load(Ordering::Relaxed) {
                let since = reader.changes();
                if let Ok(Some(c)) = ring.latest() {
                    if c.tick_volume > last && c.tick_volume <= TICKS {
                        let now = base.elapsed().as_nanos() as u64;
                        let t = sent_at[c.tick_volume as usize].load(Ordering::Acquire);
                        if t > 0 {
                            h.record(now.saturating_sub(t)).unwrap();
                        }
                        last = c.tick_volume;
                    }
                }
                reader.wait_for_change(since, Duration::from_millis(50));
            }
            h
        })
    };
    let m1 = w.ring("BTCUSDc", Timeframe::M1).unwrap();
    for seq in 1..=TICKS {
        let c = Candle {
            tick_volume: seq,
            ..Candle::flat(start, 90_000.0 + seq as f64 * 0.01)
        };
        // Release: the watcher's Acquire load sees the time before it can see the tick.
        sent_at[seq as usize].store(base.elapsed().as_nanos() as u64, Ordering::Release);
        w.update_forming(m1, &c);
        w.heartbeat();
        w.notify();
        std::thread::sleep(Duration::from_millis(25));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let h = watcher.join().unwrap();
    drop(p);
    let q = |x: f64| h.value_at_quantile(x) as f64 / 1000.0;
    println!("- of {TICKS} ticks, timed: {}", quantiles(&h, "µs", 1000.0));
    rows.push(Row {
        measure: "origin tick → visible in the mirror's segment (NATS, loopback), p50 / p99".into(),
        result: format!("{:.0} µs / {:.0} µs", q(0.5), q(0.99)),
        target: "p50 ≤ 300 µs, p99 ≤ 3 ms".into(),
        met: Some(q(0.5) <= 300.0 && q(0.99) <= 3000.0),
    });
}

fn ten_mirrors(rows: &mut Vec<Row>, url: &str) {
    const MIRRORS: usize = 10;
    const BARS: i64 = 50;
    println!("\n### 3. One origin, {MIRRORS} mirrors: {BARS} bars closing 100 ms apart\n");
    let o = TempSegment::new("nats-ten-o");
    let (mut w, start) = writer(&o);
    let p = publisher(&o, url, "ten", Duration::from_millis(50));
    let segs: Vec<TempSegment> = (0..MIRRORS)
        .map(|i| TempSegment::new(&format!("nats-ten-{i}")))
        .collect();
    let _mirrors: Vec<ChildGuard> = segs.iter().map(|s| mirror(url, "ten", s)).collect();
    let until = Instant::now() + Duration::from_secs(30);
    while !segs.iter().all(|s| {
        Reader::open(&s.path)
            .is_ok_and(|r| r.status().writer_state == Some(shm_core::WriterState::Running))
    }) {
        w.heartbeat();
        assert!(Instant::now() < until, "the mirrors did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let m1 = w.ring("BTCUSDc", Timeframe::M1).unwrap();
    for k in 0..BARS {
        w.push_closed(m1, &Candle::flat(start + k * 60, 90_000.0 + k as f64));
        w.update_forming(m1, &Candle::flat(start + (k + 1) * 60, 90_000.0));
        w.heartbeat();
        w.notify();
        std::thread::sleep(Duration::from_millis(100));
    }
    let until = Instant::now() + Duration::from_secs(10);
    let complete = loop {
        w.heartbeat();
        let n = segs
            .iter()
            .filter(|s| {
                Reader::open(&s.path)
                    .ok()
                    .and_then(|r| r.ring("BTCUSDc", Timeframe::M1)?.stats().ok())
                    .is_some_and(|st| st.closed_total == BARS as u64)
            })
            .count();
        if n == MIRRORS || Instant::now() > until {
            break n;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(p);
    println!("- mirrors holding all {BARS} bars: {complete} of {MIRRORS}");
    rows.push(Row {
        measure: format!("one origin, {MIRRORS} mirrors: every closed bar in every mirror"),
        result: format!("{complete} of {MIRRORS} mirrors hold all {BARS} bars"),
        target: "all".into(),
        met: Some(complete == MIRRORS),
    });
}

fn main() {
    // `cargo bench` passes criterion-style flags; this harness takes none.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!(
        "## NATS harness ({})",
        shm_core::iso8601_ms((shm_core::now_ns() / 1_000_000) as i64)
    );
    // Built before any writer exists, so that no writer waits for the compiler.
    release_bin("nats-bridge", "mtf-mirror");
    let mut rows = Vec::new();
    match nats_server() {
        Ok((_server, url)) => {
            tick_path(&mut rows, &url);
            latency(&mut rows, &url);
            ten_mirrors(&mut rows, &url);
        }
        Err(why) => {
            println!("- NOT MEASURED: {why}");
            rows.push(Row {
                measure: "NATS harness".into(),
                result: format!("NOT MEASURED: {why}"),
                target: String::new(),
                met: None,
            });
        }
    }
    save_rows("nats", &rows);
}
