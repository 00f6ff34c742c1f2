//! Segment read and write costs: the latest 1, 50 and 500 M1 candles, and one tick's forming
//! update across 7 timeframes, and the writer's wake-up call when no reader sleeps.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use shm_core::{Candle, Counter, Layout, Reader, SegmentPath, Tick, Timeframe, Writer};

/// The streamer's default rings, M1 to D1.
fn timeframes() -> impl Iterator<Item = (Timeframe, u32)> {
    streamer_bin::config::DEFAULT_BUFFER_SIZES
        .into_iter()
        .filter(|(tf, _)| *tf <= Timeframe::D1)
}

struct Seg(SegmentPath);
impl Drop for Seg {
    fn drop(&mut self) {
        let _ = shm_core::remove_segment(&self.0);
    }
}

fn full_segment(tag: &str) -> (Seg, Writer) {
    let seg = Seg(SegmentPath::named(&format!("mtf-bench-{tag}-{}", std::process::id())).unwrap());
    let mut layout = Layout::new();
    for (tf, cap) in timeframes() {
        layout.add_ring("BTCUSDc", tf, cap).unwrap();
    }
    let mut w = Writer::create(&seg.0, &layout, &Default::default()).unwrap();
    for (tf, cap) in timeframes() {
        let ring = w.ring("BTCUSDc", tf).unwrap();
        for i in 0..i64::from(cap) {
            w.push_closed(ring, &Candle::flat(i * 60, 90_000.0 + i as f64));
        }
        w.update_forming(ring, &Candle::flat(i64::from(cap) * 60, 90_000.0));
    }
    w.set_running();
    (seg, w)
}

fn read_latest(c: &mut Criterion) {
    let (seg, _writer) = full_segment("read");
    let reader = Reader::open(&seg.0).unwrap();
    let ring = reader.ring("BTCUSDc", Timeframe::M1).unwrap();
    let mut group = c.benchmark_group("read_latest_m1");
    for n in [1usize, 50, 500] {
        let mut out = Vec::with_capacity(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| {
                ring.read_last(black_box(n), &mut out).unwrap();
                black_box(&out);
            })
        });
    }
    group.finish();
}

/// What the streamer does per tick, minus bar-boundary arithmetic: fold the price into each
/// forming candle and publish it, then record the tick.
struct TickLoop {
    rings: Vec<shm_core::RingId>,
    forming: Vec<Candle>,
    sym: shm_core::SymbolId,
    price: f64,
    ms: i64,
}

impl TickLoop {
    fn step(&mut self, w: &mut Writer, ring_too: bool, notify: bool) {
        self.price += 0.5;
        let price = self.price;
        for (ring, f) in self.rings.iter().zip(self.forming.iter_mut()) {
            f.high = f.high.max(price);
            f.low = f.low.min(price);
            f.close = price;
            f.tick_volume += 1;
            w.update_forming(*ring, f);
        }
        if ring_too {
            self.ms += 1;
            let tick = Tick {
                time_msc: self.ms,
                bid: price,
                ask: price + 1.0,
                flags: 6,
                ..Tick::default()
            };
            w.push_tick(self.sym, &tick).unwrap();
        } else {
            w.record_tick(self.sym, 0, price, price + 1.0);
        }
        w.add(Counter::TicksProcessed, 1);
        if notify {
            w.notify();
        }
    }
}

/// Ticks a paced run times back to back, between pauses.
const BURST: u64 = 64;
/// The pause between bursts, not timed: 64 ticks every 50 µs is 1.3 M ticks a second, far
/// above any feed, and still leaves the store's helper thread time to keep ahead.
const PAUSE: std::time::Duration = std::time::Duration::from_micros(50);

fn tick_update(c: &mut Criterion) {
    let (_seg, mut w) = full_segment("write");
    let mut t = TickLoop {
        rings: timeframes()
            .map(|(tf, _)| w.ring("BTCUSDc", tf).unwrap())
            .collect(),
        forming: Vec::new(),
        sym: w.symbol("BTCUSDc").unwrap(),
        price: 90_000.0,
        ms: 0,
    };
    t.forming = t.rings.iter().map(|&r| w.forming(r).unwrap()).collect();
    // The same tick without and with the wake-up call the streamer makes after each batch
    // (nobody waiting), and with the tick written into the symbol's tick ring (what the
    // streamer does per tick since layout version 2) instead of only its last-tick words, one
    // after the other in one run.
    // Then the same with the history store attached (issue 38): each tick appended to its
    // chunk file too, the store bounded to 64 MB so that the run's ticks rotate through
    // chunks (their creation and retention included, as in a streamer that runs for days).
    // Back to back, the store's helper thread cannot keep ahead and the loop faults pages in
    // itself; paced (bursts of 64 ticks, timed, between pauses of 50 µs, not timed), as a
    // feed comes, it does not: both are measured, each beside the same without the store.
    let store = std::env::temp_dir().join(format!("mtf-bench-history-{}", std::process::id()));
    for (notify, ring_too, stored, paced) in [
        (false, false, false, false),
        (true, false, false, false),
        (false, true, false, false),
        (false, true, false, true),
        (false, true, true, false),
        (false, true, true, true),
    ] {
        let name = match (notify, ring_too, stored, paced) {
            (true, ..) => "tick_update_7_timeframes_then_notify",
            (false, false, ..) => "tick_update_7_timeframes",
            (false, true, false, false) => "tick_update_7_timeframes_and_tick_ring",
            (false, true, false, true) => "tick_update_7_timeframes_and_tick_ring_paced",
            (false, true, true, false) => "tick_update_7_timeframes_tick_ring_and_store",
            (false, true, true, true) => "tick_update_7_timeframes_tick_ring_and_store_paced",
        };
        if stored && w.history().is_none() {
            let mut layout = Layout::new();
            for (tf, cap) in timeframes() {
                layout.add_ring("BTCUSDc", tf, cap).unwrap();
            }
            let keep = shm_core::Keep::Bytes(64 << 20);
            w.attach_history(shm_core::HistoryWriter::open(&store, &layout, keep, 0o600).unwrap());
        }
        c.bench_function(name, |b| {
            if !paced {
                b.iter(|| t.step(&mut w, ring_too, notify));
                return;
            }
            b.iter_custom(|iters| {
                let mut timed = std::time::Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(BURST);
                    let start = std::time::Instant::now();
                    for _ in 0..n {
                        t.step(&mut w, ring_too, notify);
                    }
                    timed += start.elapsed();
                    left -= n;
                    std::thread::sleep(PAUSE);
                }
                timed
            });
        });
    }
    drop(w);
    let _ = std::fs::remove_dir_all(&store);
}

fn read_ticks(c: &mut Criterion) {
    let (seg, mut w) = full_segment("ticks");
    let sym = w.symbol("BTCUSDc").unwrap();
    // A full ring of the default depth (4,096).
    for k in 0..5000i64 {
        let t = Tick {
            time_msc: k * 100,
            bid: 90_000.0 + k as f64,
            ask: 90_001.0 + k as f64,
            flags: 6,
            ..Tick::default()
        };
        w.push_tick(sym, &t).unwrap();
    }
    let reader = Reader::open(&seg.0).unwrap();
    let ring = reader.ticks("BTCUSDc").unwrap();
    let mut group = c.benchmark_group("read_ticks");
    for n in [1usize, 100, 1000] {
        let mut out = Vec::with_capacity(n);
        group.bench_with_input(BenchmarkId::new("newest", n), &n, |b, &n| {
            b.iter(|| {
                ring.read_last(black_box(n), &mut out).unwrap();
                black_box(&out);
            })
        });
    }
    let mut out = Vec::with_capacity(1000);
    group.bench_function("since_time_1000", |b| {
        b.iter(|| {
            ring.read_since(black_box(400_000), 1000, &mut out).unwrap();
            black_box(&out);
        })
    });
    group.finish();
}

fn notify(c: &mut Criterion) {
    let (_seg, w) = full_segment("notify");
    // What each published batch adds for readers that sleep: with nobody waiting, one atomic
    // increment and one load in the wake file, no system call.
    c.bench_function("notify_no_waiter", |b| b.iter(|| w.notify()));
}

/// Ranges from the history store (issue 38): 30 days of M1 (43,200 bars) and 20,000 ticks,
/// decoded from the mapped chunks into a vector, as `mtf_candles` does before its numpy copy.
fn read_store(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("mtf-bench-store-{}", std::process::id()));
    let mut layout = Layout::new();
    layout.add_ring("EURUSD", Timeframe::M1, 10_080).unwrap();
    {
        let mut w =
            shm_core::HistoryWriter::open(&dir, &layout, shm_core::Keep::All, 0o600).unwrap();
        for k in 0..43_201i64 {
            let p = 1.1 + (k % 100) as f64 * 1e-5;
            let bar = Candle {
                time: 1_700_000_000 - 1_700_000_000 % 60 + k * 60,
                open: p,
                high: p + 1e-4,
                low: p - 1e-4,
                close: p,
                tick_volume: 10,
                ..Candle::default()
            };
            w.bar_closed(0, &bar, 1).unwrap();
            let t = Tick {
                time_msc: 1_700_000_000_000 + k * 100,
                bid: p,
                ask: p + 1e-5,
                flags: 6,
                ..Tick::default()
            };
            w.tick(0, &t, 1).unwrap();
        }
        w.flush(1).unwrap();
    }
    let trust = shm_core::Trust::for_process().unwrap();
    let history = shm_core::History::at(&dir, trust);
    let mut bars = history.bars("EURUSD", Timeframe::M1);
    bars.sync().unwrap();
    let mut ticks = history.ticks("EURUSD");
    ticks.sync().unwrap();
    let (lo, hi) = (bars.oldest().unwrap(), bars.newest().unwrap());
    let mut group = c.benchmark_group("read_store");
    group.bench_function("rates_43200", |b| {
        b.iter(|| {
            let mut out: Vec<Candle> = Vec::new();
            bars.range_as(lo, hi, usize::MAX, &mut out, |c| c);
            black_box(out)
        })
    });
    // The same into a vector kept from one call to the next: the decoding alone, without the
    // page faults of a fresh 3 MB allocation.
    let mut kept: Vec<Candle> = Vec::new();
    group.bench_function("rates_43200_reused_buffer", |b| {
        b.iter(|| {
            kept.clear();
            bars.range_as(lo, hi, usize::MAX, &mut kept, |c| c);
            black_box(kept.len())
        })
    });
    let mut times: Vec<i64> = Vec::new();
    group.bench_function("rates_43200_times_only", |b| {
        b.iter(|| {
            times.clear();
            bars.range_as(lo, hi, usize::MAX, &mut times, |c| c.time);
            black_box(times.len())
        })
    });
    let t_lo = ticks.oldest().unwrap();
    group.bench_function("ticks_20000", |b| {
        b.iter(|| {
            let mut out: Vec<Tick> = Vec::new();
            ticks.first_as(t_lo, 20_000, &mut out, |t| t);
            black_box(out)
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(
    benches,
    read_latest,
    tick_update,
    read_ticks,
    notify,
    read_store
);
criterion_main!(benches);
