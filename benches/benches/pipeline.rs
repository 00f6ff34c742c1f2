//! The streamer's and the shim's hot paths: one tick through the aggregator into 7 timeframes,
//! CSV replay of bars, serialising 50 candles to JSON, and the shim's whole answer to a
//! 50-candle request (from the closed-candle cache, as a 304, and gzipped).

use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mtf_tests::TempSegment;
use shm_core::{Candle, Timeframe, Writer};
use streamer_bin::aggregate::{Aggregator, Bar, Tick};
use streamer_bin::config::DEFAULT_TIMEFRAMES;
use streamer_bin::source::csv::{CsvFile, CsvReplay, Speed};
use streamer_bin::source::{Event, Source};

/// A segment laid out exactly as the streamer lays out its defaults (M1 to D1).
fn writer(tag: &str, symbols: &[&str]) -> (TempSegment, Writer) {
    let seg = TempSegment::new(tag);
    let config = streamer_bin::config::Config::default();
    let symbols: Vec<String> = symbols.iter().map(|s| s.to_string()).collect();
    let tfs = vec![DEFAULT_TIMEFRAMES.to_vec(); symbols.len()];
    let layout = streamer_bin::layout(&config, &symbols, &tfs).unwrap();
    let w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    (seg, w)
}

fn aggregator_ticks(c: &mut Criterion) {
    let (_seg, mut w) = writer("bench-agg", &["BTCUSDc"]);
    let mut agg = Aggregator::new(&w, &[("BTCUSDc".into(), 0.01)], &DEFAULT_TIMEFRAMES);
    let start_ms = shm_core::days_from_civil(2024, 3, 4) * 86_400_000;
    let mut i: i64 = 0;
    let mut group = c.benchmark_group("aggregator");
    group.throughput(Throughput::Elements(1));
    // 100 ms between ticks: a new M1 bar every 600 ticks, so rolls are in the mix.
    group.bench_function("tick_into_7_timeframes", |b| {
        b.iter(|| {
            i += 1;
            let bid = 90_000.0 + (i % 1000) as f64 * 0.5;
            agg.on_tick(
                &mut w,
                black_box(&Tick::quote(0, start_ms + i * 100, bid, bid + 15.0, 0)),
            );
        })
    });
    group.finish();
}

fn csv_replay(c: &mut Criterion) {
    const BARS: usize = 200_000;
    let dir = std::env::temp_dir().join(format!("mtf-bench-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("EURUSD_M1_202001010000_202012312359.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    writeln!(
        f,
        "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\r"
    )
    .unwrap();
    let day0 = shm_core::days_from_civil(2020, 1, 1);
    for i in 0..BARS as i64 {
        let (d, m) = (day0 + i / 1440, i % 1440);
        let (y, mo, dd) = shm_core::civil_from_days(d);
        let o = 1.1 + (i % 100) as f64 * 0.0001;
        writeln!(
            f,
            "{y}.{mo:02}.{dd:02}\t{:02}:{:02}:00\t{o:.5}\t{:.5}\t{:.5}\t{:.5}\t{}\t0\t{}\r",
            m / 60,
            m % 60,
            o + 0.0002,
            o - 0.0002,
            o + 0.0001,
            100 + i % 50,
            i % 9
        )
        .unwrap();
    }
    drop(f);
    let mut group = c.benchmark_group("csv_replay");
    group.throughput(Throughput::Elements(BARS as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("parse_and_publish_m1_bars_into_7_timeframes", |b| {
        b.iter(|| {
            let (_seg, mut w) = writer("bench-csv", &["EURUSD"]);
            let mut agg = Aggregator::new(&w, &[("EURUSD".into(), 0.00001)], &DEFAULT_TIMEFRAMES);
            let file = CsvFile::open(&path, &["EURUSD".into()], None, None).unwrap();
            let mut replay = CsvReplay::new(vec![file], Speed::Max);
            let mut events = Vec::with_capacity(4096);
            let mut bars = 0;
            loop {
                replay.poll(&mut events, Duration::ZERO).unwrap();
                let mut finished = false;
                for ev in events.drain(..) {
                    match ev {
                        Event::Bar(b) => {
                            agg.on_bar(&mut w, &b);
                            bars += 1;
                        }
                        Event::Feed(shm_core::FeedState::Finished) => finished = true,
                        _ => {}
                    }
                }
                if finished {
                    break;
                }
            }
            assert_eq!(bars, BARS);
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn bars_in_memory(c: &mut Criterion) {
    // The aggregator alone on bars (no parsing), for comparison with the full replay.
    // Bars only go forward, and the streamer refuses any dated after today (UTC+14 h): a run
    // of criterion's length would pass that, so the segment starts over every 5 million bars
    // (9.5 years of minutes from 2000), which costs a few milliseconds in seconds of bars.
    const FRESH_EVERY: i64 = 5_000_000;
    let fresh = || {
        let (seg, w) = writer("bench-bars", &["EURUSD"]);
        let agg = Aggregator::new(&w, &[("EURUSD".into(), 0.00001)], &DEFAULT_TIMEFRAMES);
        (seg, w, agg)
    };
    let (mut _seg, mut w, mut agg) = fresh();
    let t0 = shm_core::days_from_civil(2000, 1, 1) * 86_400;
    let mut i = 0i64;
    let mut group = c.benchmark_group("aggregator");
    group.throughput(Throughput::Elements(1));
    group.bench_function("m1_bar_into_7_timeframes", |b| {
        b.iter(|| {
            i += 1;
            if i == FRESH_EVERY {
                (_seg, w, agg) = fresh();
                i = 1;
            }
            let candle = Candle {
                time: t0 + i * 60,
                open: 1.1,
                high: 1.2,
                low: 1.0,
                close: 1.15,
                tick_volume: 10,
                ..Candle::default()
            };
            agg.on_bar(
                &mut w,
                black_box(&Bar {
                    symbol: 0,
                    timeframe: Timeframe::M1,
                    candle,
                    fold_up: true,
                    amend: false,
                }),
            );
        })
    });
    group.finish();
}

fn serialise(c: &mut Criterion) {
    let candles: Vec<Candle> = (0..50)
        .map(|i| Candle {
            time: 1_700_000_000 + i * 60,
            open: 90_123.45,
            high: 90_200.5,
            low: 90_001.25,
            close: 90_150.75,
            tick_volume: 600,
            spread: 1500,
            real_volume: 0,
            forming: i == 49,
            repaired: false,
        })
        .collect();
    let mut out = String::with_capacity(16 * 1024);
    c.bench_function("serialise_50_candles_dict", |b| {
        b.iter(|| {
            out.clear();
            http_shim::api::write_candles(&mut out, black_box(&candles), false, false);
            black_box(&out);
        })
    });
}

/// `Api::handle` on `GET /streamer/candles/BTCUSDc/M1?limit=50` against a live segment: the
/// whole answer (routing, query, reading the ring, the tag, the cache, the envelope), with no
/// socket. The writer heartbeats from its own thread, as the streamer does.
fn api_answers(c: &mut Criterion) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let (seg, mut w) = writer("bench-api", &["BTCUSDc"]);
    let m1 = w.ring("BTCUSDc", Timeframe::M1).unwrap();
    let now = (shm_core::now_ns() / 1_000_000_000) as i64;
    let start = Timeframe::M1.bar_start(now) - 100 * 60;
    for i in 0..100 {
        w.push_closed(
            m1,
            &Candle::flat(start + i * 60, 90_123.45 + i as f64 * 0.25),
        );
    }
    w.update_forming(m1, &Candle::flat(start + 100 * 60, 90_150.75));
    w.set_running();
    let stop = Arc::new(AtomicBool::new(false));
    let beat = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            // Relaxed: a stop flag, no data with it.
            while !stop.load(Ordering::Relaxed) {
                w.heartbeat();
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let api = Arc::new(http_shim::Api::new(http_shim::ApiConfig::new(
        seg.path.clone(),
    )));
    let request = |if_none_match: Option<String>, accepts_gzip: bool| http_shim::message::Request {
        method: "GET".into(),
        target: "/streamer/candles/BTCUSDc/M1?limit=50".into(),
        if_none_match,
        accepts_gzip,
        ..Default::default()
    };
    let plain = request(None, false);
    let first = api.handle(&plain);
    assert_eq!(first.status, 200);
    let tag = first.etag.clone().expect("an ETag");
    let revalidate = request(Some(tag), false);
    assert_eq!(api.handle(&revalidate).status, 304);
    let gzip = request(None, true);

    let mut group = c.benchmark_group("api_answer_50_candles");
    group.bench_function("cached", |b| {
        b.iter(|| black_box(api.handle(black_box(&plain))))
    });
    group.bench_function("not_modified_304", |b| {
        b.iter(|| black_box(api.handle(black_box(&revalidate))))
    });
    group.bench_function("cached_gzip", |b| {
        b.iter(|| black_box(api.handle(black_box(&gzip))))
    });
    group.finish();
    let g = api.handle(&gzip);
    println!(
        "api_answer_50_candles: {} bytes of JSON, {} gzipped",
        first.body.len(),
        g.body.len()
    );
    stop.store(true, Ordering::Relaxed);
    let _ = beat.join();
}

criterion_group!(
    benches,
    aggregator_ticks,
    bars_in_memory,
    csv_replay,
    serialise,
    api_answers
);
criterion_main!(benches);
