//! Aggregation checked against an independent computation, boundary cases, and feed hygiene.

use mtf_tests::TempSegment;
use shm_core::{days_from_civil, Candle, Counter, Layout, Reader, Timeframe, Writer};
use streamer_bin::aggregate::{Aggregator, Bar, Tick};

/// All of MT5's 21 timeframes: each is built by the aggregator and checked against an
/// independent grouping of the same bars or ticks.
const TFS: [Timeframe; 21] = Timeframe::ALL;

fn setup(tag: &str, capacity: u32) -> (TempSegment, Writer, Aggregator) {
    let seg = TempSegment::new(tag);
    let mut layout = Layout::new();
    for tf in TFS {
        layout.add_ring("EURUSD", tf, capacity).unwrap();
    }
    let w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    let agg = Aggregator::new(&w, &[("EURUSD".into(), 0.00001)], &TFS);
    (seg, w, agg)
}

fn ring(seg: &TempSegment, tf: Timeframe) -> Vec<Candle> {
    let r = Reader::open(&seg.path).unwrap();
    let mut out = Vec::new();
    r.ring("EURUSD", tf)
        .unwrap()
        .read_last(100_000, &mut out)
        .unwrap();
    out
}

/// A deterministic, valid M1 bar stream over `minutes` minutes from `start`, with a hole.
fn m1_bars(start: i64, minutes: i64) -> Vec<Candle> {
    let mut x: u64 = 12345;
    let mut price = 1.1;
    let mut out = Vec::new();
    for i in 0..minutes {
        if (600..660).contains(&(i % 5000)) {
            continue; // an hour without bars, several times
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let step = ((x % 2001) as f64 - 1000.0) * 1e-7;
        let open = price;
        let close = (price + step).max(0.5);
        out.push(Candle {
            time: start + i * 60,
            open,
            high: open.max(close) + (x % 7) as f64 * 1e-5,
            low: open.min(close) - (x % 5) as f64 * 1e-5,
            close,
            tick_volume: 1 + x % 100,
            spread: (x % 20) as i32,
            real_volume: x % 3,
            ..Candle::default()
        });
        price = close;
    }
    out
}

/// Feeds closed M1 bars to the aggregator, folded into every longer timeframe.
fn fold_m1(w: &mut Writer, agg: &mut Aggregator, bars: &[Candle]) {
    for b in bars {
        agg.on_bar(
            w,
            &Bar {
                symbol: 0,
                timeframe: Timeframe::M1,
                candle: *b,
                fold_up: true,
                amend: false,
            },
        );
    }
}

/// The independent computation: group by `bar_start`, in a plain loop.
fn group(bars: &[Candle], tf: Timeframe) -> Vec<Candle> {
    let mut out: Vec<Candle> = Vec::new();
    for b in bars {
        let t = tf.bar_start(b.time);
        match out.last_mut() {
            Some(g) if g.time == t => {
                g.high = g.high.max(b.high);
                g.low = g.low.min(b.low);
                g.close = b.close;
                g.tick_volume += b.tick_volume;
                g.real_volume += b.real_volume;
                g.spread = g.spread.min(b.spread);
            }
            _ => out.push(Candle { time: t, ..*b }),
        }
    }
    out
}

/// `got` must be the newest `got.len()` of `want`, and not empty; reports the first difference.
fn assert_suffix(got: &[Candle], want: &[Candle], what: impl std::fmt::Display) {
    assert!(
        !got.is_empty() && got.len() <= want.len(),
        "{what}: {} candles, expected at most {}",
        got.len(),
        want.len()
    );
    let want = &want[want.len() - got.len()..];
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        panic!(
            "{what}: candle {i} of {} differs:\n got  {:?}\n want {:?}",
            got.len(),
            got[i],
            want[i]
        );
    }
}

fn strip(cs: &[Candle]) -> Vec<Candle> {
    cs.iter()
        .map(|c| Candle {
            forming: false,
            ..*c
        })
        .collect()
}

#[test]
fn bars_fold_into_longer_timeframes_exactly_as_an_independent_grouping() {
    let (seg, mut w, mut agg) = setup("fold", 20_000);
    // 2017-01-01 is a Sunday; 20,000 minutes cross weeks and a month end.
    let start = days_from_civil(2017, 1, 1) * 86_400;
    let bars = m1_bars(start, 20_000 + 43_200);
    fold_m1(&mut w, &mut agg, &bars);
    for tf in TFS {
        let got = ring(&seg, tf);
        let want = if tf == Timeframe::M1 {
            bars.clone()
        } else {
            group(&bars, tf)
        };
        assert_suffix(&strip(&got), &want, tf);
        // The closed ones up to the capacity, and the forming one of a longer timeframe.
        assert_eq!(
            got.len(),
            want.len().min(20_000 + usize::from(tf != Timeframe::M1)),
            "{tf}: the ring holds all, or its capacity"
        );
        // Everything closed except the newest of each longer timeframe, which is still forming.
        let forming = got.iter().filter(|c| c.forming).count();
        assert_eq!(forming, usize::from(tf != Timeframe::M1), "{tf}");
        assert!(got.last().unwrap().forming || tf == Timeframe::M1);
    }
    assert_eq!(
        w.counter(Counter::GapsDetected),
        13,
        "the hour-long holes on M1"
    );
}

#[test]
fn ticks_build_every_timeframe_as_an_independent_grouping_of_the_ticks() {
    let (seg, mut w, mut agg) = setup("ticks", 5000);
    let start_ms = days_from_civil(2024, 2, 28) * 86_400_000;
    let mut ticks = Vec::new();
    let mut x: u64 = 99;
    let mut t = start_ms;
    for i in 0..50_000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        t += (x >> 60) as i64 * 700; // 0 to 10.5 s apart, often several per second
        let bid = 1.1 + ((x >> 20) % 1000) as f64 * 1e-5;
        ticks.push(Tick::quote(0, t, bid, bid + 0.00012, i % 2));
    }
    for tick in &ticks {
        agg.on_tick(&mut w, tick);
    }
    // Independent: each tick as a one-tick bar, grouped.
    let as_bars: Vec<Candle> = ticks
        .iter()
        .map(|t| Candle {
            time: t.tick.time(),
            tick_volume: 1,
            real_volume: t.tick.volume,
            spread: 12,
            ..Candle::flat(0, t.tick.bid)
        })
        .collect();
    for tf in TFS {
        let got = strip(&ring(&seg, tf));
        let want = group(&as_bars, tf);
        assert_suffix(&got, &want, tf);
        assert_eq!(
            got.len(),
            want.len().min(5001),
            "{tf}: capacity 5000 closed plus the forming one"
        );
    }
    assert_eq!(w.counter(Counter::TicksProcessed), 50_000);
}

fn tick(ms: i64, bid: f64) -> Tick {
    Tick::quote(0, ms, bid, bid + 0.0001, 0)
}

#[test]
fn a_tick_exactly_on_a_boundary_opens_the_new_bar() {
    let (seg, mut w, mut agg) = setup("boundary", 100);
    let day = days_from_civil(2024, 3, 4) * 86_400_000; // a Monday
    agg.on_tick(&mut w, &tick(day + 59_999, 1.0));
    agg.on_tick(&mut w, &tick(day + 60_000, 1.2));
    let m1 = ring(&seg, Timeframe::M1);
    assert_eq!(m1.len(), 2);
    assert_eq!(
        (m1[0].time, m1[0].close, m1[0].forming),
        (day / 1000, 1.0, false)
    );
    assert_eq!(
        (m1[1].time, m1[1].open, m1[1].forming),
        (day / 1000 + 60, 1.2, true)
    );
    let h1 = ring(&seg, Timeframe::H1);
    assert_eq!(h1.len(), 1, "still the same hour");
    assert_eq!((h1[0].open, h1[0].close, h1[0].tick_volume), (1.0, 1.2, 2));
}

#[test]
fn a_gap_of_several_bars_closes_one_candle_and_invents_none() {
    let (seg, mut w, mut agg) = setup("gap", 100);
    let t0 = days_from_civil(2024, 3, 4) * 86_400_000;
    agg.on_tick(&mut w, &tick(t0, 1.0));
    agg.on_tick(&mut w, &tick(t0 + 7 * 60_000 + 5, 1.2));
    let m1 = ring(&seg, Timeframe::M1);
    assert_eq!(
        m1.iter()
            .map(|c| (c.time - t0 / 1000) / 60)
            .collect::<Vec<_>>(),
        [0, 7]
    );
    assert_eq!(w.counter(Counter::GapsDetected), 1);
    let m5 = ring(&seg, Timeframe::M5);
    assert_eq!(
        m5.iter()
            .map(|c| (c.time - t0 / 1000) / 60)
            .collect::<Vec<_>>(),
        [0, 5]
    );
}

#[test]
fn the_weekend_gap_closes_friday_and_the_week() {
    let (seg, mut w, mut agg) = setup("weekend", 100);
    let friday = days_from_civil(2024, 3, 8) * 86_400_000;
    let monday = days_from_civil(2024, 3, 11) * 86_400_000;
    agg.on_tick(&mut w, &tick(friday + 23 * 3_600_000 + 59 * 60_000, 1.0));
    agg.on_tick(&mut w, &tick(monday + 1_000, 1.2));
    let d1 = ring(&seg, Timeframe::D1);
    assert_eq!(
        d1.iter()
            .map(|c| (c.time * 1000, c.forming))
            .collect::<Vec<_>>(),
        [(friday, false), (monday, true)]
    );
    let w1 = ring(&seg, Timeframe::W1);
    let sunday_before = days_from_civil(2024, 3, 3) * 86_400;
    assert_eq!(
        w1.iter().map(|c| c.time).collect::<Vec<_>>(),
        [sunday_before, sunday_before + 7 * 86_400]
    );
    let mn1 = ring(&seg, Timeframe::MN1);
    assert_eq!(mn1.len(), 1, "same month");
}

#[test]
fn bad_prices_and_out_of_order_ticks_are_counted_and_change_nothing() {
    let (seg, mut w, mut agg) = setup("hygiene", 100);
    let t0 = days_from_civil(2024, 3, 4) * 86_400_000;
    agg.on_tick(&mut w, &tick(t0 + 5_000, 1.0));
    let before = ring(&seg, Timeframe::M1);
    for bad in [f64::NAN, f64::INFINITY, 0.0, -1.0] {
        agg.on_tick(&mut w, &tick(t0 + 6_000, bad));
        agg.on_tick(&mut w, &{
            let mut t = tick(t0 + 6_000, 1.0);
            t.tick.ask = bad;
            t
        });
    }
    assert_eq!(w.counter(Counter::RejectedBadPrice), 8);
    agg.on_tick(&mut w, &tick(t0 + 4_000, 1.2));
    assert_eq!(w.counter(Counter::RejectedOutOfOrder), 1);
    assert_eq!(
        ring(&seg, Timeframe::M1),
        before,
        "rejected input changed nothing"
    );
    assert_eq!(w.counter(Counter::TicksProcessed), 1);
    // Equal timestamps are fine (several ticks in one millisecond happen).
    agg.on_tick(&mut w, &tick(t0 + 5_000, 1.1));
    assert_eq!(w.counter(Counter::TicksProcessed), 2);
}

#[test]
fn finite_but_absurd_values_are_refused_and_counted() {
    // The attack's values, each finite: 1e300, 1.7e308, 1e-300, u64::MAX volume, a negative
    // spread, and a tick twenty times the last price.
    let (seg, mut w, mut agg) = setup("absurd", 100);
    let t0 = days_from_civil(2024, 3, 4) * 86_400_000;
    agg.on_tick(&mut w, &tick(t0 + 5_000, 1.0));
    let before = ring(&seg, Timeframe::M1);
    for bad in [1e300, 1.7e308, 1e-300, 20.0, 0.05] {
        agg.on_tick(&mut w, &tick(t0 + 6_000, bad));
    }
    agg.on_tick(&mut w, &{
        let mut t = tick(t0 + 6_000, 1.0);
        t.tick.volume = u64::MAX;
        t
    });
    assert_eq!(w.counter(Counter::RejectedBadPrice), 6);
    assert_eq!(ring(&seg, Timeframe::M1), before, "nothing stored");
    // A move the market can make is taken.
    agg.on_tick(&mut w, &tick(t0 + 7_000, 1.2));
    assert_eq!(w.counter(Counter::TicksProcessed), 2);
    let t = days_from_civil(2024, 3, 4) * 86_400 + 3600;
    for absurd in [
        Candle {
            high: 1e300,
            ..bar(t, 1.0).candle
        },
        Candle {
            tick_volume: u64::MAX,
            ..bar(t, 1.0).candle
        },
        Candle {
            real_volume: u64::MAX,
            ..bar(t, 1.0).candle
        },
        Candle {
            spread: i32::MIN,
            ..bar(t, 1.0).candle
        },
    ] {
        agg.on_bar(
            &mut w,
            &Bar {
                candle: absurd,
                ..bar(t, 1.0)
            },
        );
    }
    assert_eq!(w.counter(Counter::RejectedBadPrice), 10);
}

fn bar(t: i64, close: f64) -> Bar {
    Bar {
        symbol: 0,
        timeframe: Timeframe::H1,
        candle: Candle {
            time: t,
            open: 1.0,
            high: 2.0,
            low: 0.5,
            close,
            tick_volume: 10,
            ..Candle::default()
        },
        fold_up: true,
        amend: false,
    }
}

#[test]
fn duplicate_backwards_and_inconsistent_bars_are_counted() {
    let (seg, mut w, mut agg) = setup("bars", 100);
    let t0 = days_from_civil(2024, 3, 4) * 86_400;
    agg.on_bar(&mut w, &bar(t0, 1.0));
    agg.on_bar(&mut w, &bar(t0 + 3600, 1.1));
    agg.on_bar(&mut w, &bar(t0 + 3600, 1.2));
    assert_eq!(w.counter(Counter::RejectedDuplicateBar), 1);
    agg.on_bar(&mut w, &bar(t0, 1.3));
    assert_eq!(w.counter(Counter::RejectedBackwardsBar), 1);
    let mut bad = bar(t0 + 7200, 1.0);
    bad.candle.high = 0.9; // below the open
    agg.on_bar(&mut w, &bad);
    let mut nan = bar(t0 + 7200, f64::NAN);
    nan.candle.close = f64::NAN;
    agg.on_bar(&mut w, &nan);
    assert_eq!(w.counter(Counter::RejectedBadPrice), 2);
    let h1 = ring(&seg, Timeframe::H1);
    assert_eq!(h1.iter().map(|c| c.close).collect::<Vec<_>>(), [1.0, 1.1]);
    assert!(
        ring(&seg, Timeframe::M1).is_empty(),
        "bars never build shorter timeframes"
    );
}

#[test]
fn an_authoritative_source_corrects_the_forming_and_the_just_closed_bar() {
    let (seg, mut w, mut agg) = setup("amend", 100);
    let t0 = days_from_civil(2024, 3, 4) * 86_400;
    let forming = |t, close| Bar {
        candle: Candle {
            forming: true,
            ..bar(t, close).candle
        },
        fold_up: false,
        amend: true,
        ..bar(t, close)
    };
    agg.on_bar(&mut w, &forming(t0, 1.0));
    agg.on_bar(&mut w, &forming(t0, 1.05)); // the forming bar moves
    assert_eq!(
        ring(&seg, Timeframe::H1)
            .last()
            .map(|c| (c.close, c.forming)),
        Some((1.05, true))
    );
    // Ticks moved us into the next hour; then the terminal's final word on the closed hour.
    agg.on_tick(&mut w, &Tick::quote(0, (t0 + 3600) * 1000, 1.2, 1.2001, 0));
    let closed_final = Bar {
        amend: true,
        fold_up: false,
        ..bar(t0, 1.07)
    };
    agg.on_bar(&mut w, &closed_final);
    let h1 = ring(&seg, Timeframe::H1);
    assert_eq!(
        h1.iter().map(|c| (c.close, c.forming)).collect::<Vec<_>>(),
        [(1.07, false), (1.2, true)]
    );
    assert_eq!(w.counter(Counter::Corrections), 2);
    // A closed bar missed during a disconnect slots in before the forming one.
    let (seg2, mut w2, mut agg2) = setup("backfill", 100);
    agg2.on_bar(
        &mut w2,
        &Bar {
            amend: true,
            fold_up: false,
            ..bar(t0, 1.0)
        },
    );
    agg2.on_bar(&mut w2, &forming(t0 + 7200, 1.2));
    agg2.on_bar(
        &mut w2,
        &Bar {
            amend: true,
            fold_up: false,
            ..bar(t0 + 3600, 1.1)
        },
    );
    let h1 = ring(&seg2, Timeframe::H1);
    assert_eq!(
        h1.iter()
            .map(|c| (c.time - t0, c.forming))
            .collect::<Vec<_>>(),
        [(0, false), (3600, false), (7200, true)]
    );
    assert_eq!(w2.counter(Counter::BarsBackfilled), 1);
}

#[test]
fn a_tick_or_bar_dated_far_in_the_future_is_refused_and_freezes_nothing() {
    let (seg, mut w, mut agg) = setup("future", 50);
    w.heartbeat();
    let now_s = (shm_core::now_ns() / 1_000_000_000) as i64;
    let tick = |s: i64, bid: f64| Tick::quote(0, s * 1000, bid, bid + 0.0001, 0);
    agg.on_tick(&mut w, &tick(now_s - 120, 1.1));
    // 50 years ahead: once it was accepted, every later tick was "out of order".
    agg.on_tick(&mut w, &tick(now_s + 50 * 365 * 86_400, 1.15));
    agg.on_bar(
        &mut w,
        &Bar {
            symbol: 0,
            timeframe: Timeframe::M1,
            candle: Candle::flat(Timeframe::M1.bar_start(now_s + 86_400), 1.15),
            fold_up: false,
            amend: true,
        },
    );
    agg.on_tick(&mut w, &tick(now_s - 60, 1.2));
    assert_eq!(w.counter(Counter::RejectedFutureTime), 2);
    assert_eq!(w.counter(Counter::RejectedOutOfOrder), 0);
    assert_eq!(w.counter(Counter::TicksProcessed), 2);
    let m1 = ring(&seg, Timeframe::M1);
    assert_eq!(m1.last().map(|c| (c.close, c.forming)), Some((1.2, true)));
    // A broker at UTC+14 is still accepted.
    agg.on_tick(&mut w, &tick(now_s + 14 * 3600, 1.3));
    assert_eq!(w.counter(Counter::TicksProcessed), 3);
}

#[test]
fn once_the_feeds_clock_is_known_a_bar_half_a_day_ahead_of_it_is_refused() {
    // The attack: a forming M1 bar at now + 13 h passed the UTC+14 h bound and froze the
    // symbol. The gateway reports its offset (+02:00 here): the bound is then its clock.
    let (seg, mut w, mut agg) = setup("feed-clock", 50);
    w.heartbeat();
    agg.set_feed_offset(7200);
    let now_s = (shm_core::now_ns() / 1_000_000_000) as i64 + 7200;
    let bar = |t: i64, close: f64| Bar {
        symbol: 0,
        timeframe: Timeframe::M1,
        candle: Candle {
            forming: true,
            ..Candle::flat(Timeframe::M1.bar_start(t), close)
        },
        fold_up: false,
        amend: true,
    };
    agg.on_bar(&mut w, &bar(now_s - 60, 1.1));
    agg.on_bar(&mut w, &bar(now_s + 11 * 3600, 9.9));
    assert_eq!(w.counter(Counter::RejectedFutureTime), 1);
    // The next real bar is taken: nothing froze.
    agg.on_bar(&mut w, &bar(now_s, 1.2));
    let m1 = ring(&seg, Timeframe::M1);
    assert_eq!(m1.last().map(|c| c.close), Some(1.2));
    // A broker clock an hour off the reported offset (a DST switch) is still accepted.
    agg.on_bar(&mut w, &bar(now_s + 3600 + 60, 1.3));
    assert_eq!(w.counter(Counter::RejectedFutureTime), 1);
}

#[test]
fn a_segment_holding_a_future_candle_or_another_feed_starts_clean() {
    use shm_core::FeedKind;
    use streamer_bin::start_clean_reason;
    let seg = TempSegment::new("future-restart");
    let mut layout = Layout::new();
    layout.add_ring("EURUSD", Timeframe::M1, 10).unwrap();
    let mut w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    w.set_feed_kind(FeedKind::Mt5);
    let m1 = w.ring("EURUSD", Timeframe::M1).unwrap();
    let now_s = (shm_core::now_ns() / 1_000_000_000) as i64;
    w.push_closed(m1, &Candle::flat(Timeframe::M1.bar_start(now_s - 60), 1.1));
    drop(w);
    assert_eq!(
        start_clean_reason(&seg.path, FeedKind::Mt5, None),
        None,
        "warm"
    );
    let why = start_clean_reason(&seg.path, FeedKind::Synthetic, None).expect("another feed");
    assert!(
        why.contains("mt5 candles") && why.contains("synthetic"),
        "{why}"
    );
    assert!(start_clean_reason(&seg.path, FeedKind::Csv, None).is_some());
    // D6: the same feed with another server offset starts clean and says so; the same
    // offset, or none known yet (an mt5 feed that asks the gateway), continues.
    let mut w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    w.set_server_time_offset(7200);
    drop(w);
    assert_eq!(
        start_clean_reason(&seg.path, FeedKind::Mt5, Some(7200)),
        None
    );
    let why = start_clean_reason(&seg.path, FeedKind::Mt5, Some(3600)).expect("another offset");
    assert!(why.contains("+02:00") && why.contains("+01:00"), "{why}");

    let mut w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    let m1 = w.ring("EURUSD", Timeframe::M1).unwrap();
    // As an earlier version, without the bound, could have stored it.
    w.update_forming(
        m1,
        &Candle::flat(Timeframe::M1.bar_start(now_s + 50 * 365 * 86_400), 9.9),
    );
    drop(w);
    let why = start_clean_reason(&seg.path, FeedKind::Mt5, None).expect("a future candle");
    assert!(why.contains("beyond any broker's clock"), "{why}");
    let w = Writer::create(
        &seg.path,
        &layout,
        &shm_core::WriterOptions {
            start_clean: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(w.start(), shm_core::Start::Replaced);
    assert_eq!(w.forming(m1), None);
    drop(w);

    // The attack's shape: a forming bar 13 h ahead, inside any broker's bound (UTC+14), stored
    // for a feed whose clock is UTC+2. A restart against an honest gateway starts clean (and
    // backfills from the terminal) instead of refusing every tick for 11 h.
    let mut w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    w.set_feed_kind(FeedKind::Mt5);
    w.set_server_time_offset(7200);
    w.update_forming(
        m1,
        &Candle::flat(Timeframe::M1.bar_start(now_s + 13 * 3600), 1.1),
    );
    drop(w);
    let why = start_clean_reason(&seg.path, FeedKind::Mt5, None).expect("a bar 11 h ahead");
    assert!(why.contains("after the feed's clock (UTC+02:00)"), "{why}");
    // A bar an hour ahead of the recorded clock (a DST switch the offset has not caught up
    // with) is kept.
    let mut w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    w.set_server_time_offset(7200);
    w.update_forming(
        m1,
        &Candle::flat(Timeframe::M1.bar_start(now_s + 3 * 3600), 1.1),
    );
    drop(w);
    assert_eq!(start_clean_reason(&seg.path, FeedKind::Mt5, None), None);
}

/// Every timeframe that another tiles, built on read from it (`Timeline::Built`), equals the
/// ring the aggregator wrote for it: every candle, the forming flag included, over what the
/// source ring still holds (a lapped source gives fewer, never a partial bar).
#[test]
fn a_timeframe_built_on_read_equals_the_ring_written_for_it() {
    let (seg, mut w, mut agg) = setup("built", 20_000);
    let start = days_from_civil(2017, 1, 1) * 86_400;
    fold_m1(&mut w, &mut agg, &m1_bars(start, 20_000 + 43_200));
    let r = Reader::open(&seg.path).unwrap();
    let mut pairs = 0;
    for target in TFS {
        let mut written = Vec::new();
        r.ring("EURUSD", target)
            .unwrap()
            .read_last(100_000, &mut written)
            .unwrap();
        for source in TFS.into_iter().filter(|&s| shm_core::tiles(s, target)) {
            let built = shm_core::Timeline::Built {
                source: r.ring("EURUSD", source).unwrap(),
                timeframe: target,
            };
            let mut got = Vec::new();
            built.read_last(100_000, &mut got).unwrap();
            assert!(!got.is_empty(), "{target} from {source}");
            let tail = &written[written.len() - got.len()..];
            if let Some(k) = (0..got.len()).find(|&k| got[k] != tail[k]) {
                panic!(
                    "{target} built from {source}: candle {k} of {}: {:?} against {:?}",
                    got.len(),
                    got[k],
                    tail[k]
                );
            }
            // A source that never lapped gives the whole of it.
            if r.ring("EURUSD", source)
                .unwrap()
                .stats()
                .unwrap()
                .closed_total
                < 20_000
            {
                assert_eq!(got.len(), written.len(), "{target} from {source}");
            }
            // The newest n, as a ring gives them.
            let mut three = Vec::new();
            built.read_last(3, &mut three).unwrap();
            assert_eq!(
                three,
                got[got.len().saturating_sub(3)..],
                "{target} from {source}, newest 3"
            );
            pairs += 1;
        }
    }
    assert!(pairs > 100, "{pairs} pairs");
    // The segment's own answer: a timeframe without a ring is built from the longest that
    // tiles it.
    assert!(matches!(
        r.timeline("EURUSD", Timeframe::H4),
        Some(shm_core::Timeline::Ring(_))
    ));
}
