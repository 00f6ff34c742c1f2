//! Wrong data is never served as good (issue 40): a tick stamped minutes ahead of a live feed's
//! clock, a crossed quote, a quote far from the one it follows. Each is dropped and counted,
//! and the symbol keeps moving with the honest ticks after it.

use mtf_tests::TempSegment;
use shm_core::{Counter, Layout, Reader, Timeframe, Writer};
use streamer_bin::aggregate::{Aggregator, Tick};

fn setup(tag: &str) -> (TempSegment, Writer, Aggregator) {
    let seg = TempSegment::new(tag);
    let mut layout = Layout::new();
    layout.add_ring("EURUSD", Timeframe::M1, 100).unwrap();
    layout.add_ring("EURUSD", Timeframe::H1, 100).unwrap();
    let w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    let mut agg = Aggregator::new(
        &w,
        &[("EURUSD".into(), 0.00001)],
        &[Timeframe::M1, Timeframe::H1],
    );
    agg.follow_feed_clock();
    (seg, w, agg)
}

fn ticks(seg: &TempSegment) -> Vec<(i64, f64, f64)> {
    let mut out = Vec::new();
    Reader::open(&seg.path)
        .unwrap()
        .ticks("EURUSD")
        .unwrap()
        .read_last(10_000, &mut out)
        .unwrap();
    out.iter().map(|t| (t.time_msc, t.bid, t.ask)).collect()
}

fn now_ms(w: &mut Writer) -> i64 {
    w.heartbeat();
    (w.clock_ns() / 1_000_000) as i64
}

#[test]
fn a_tick_five_minutes_ahead_with_a_forged_price_freezes_nothing() {
    let (seg, mut w, mut agg) = setup("future-forged");
    // The broker is at UTC+2 and says so; its honest ticks arrive 20 ms after their stamp.
    agg.set_feed_offset(7200);
    let lead = 7_200_000 - 20;
    let mut honest = Vec::new();
    for k in 0..5 {
        let t = now_ms(&mut w) + lead;
        agg.on_tick(&mut w, &Tick::quote(0, t, 1.1 + k as f64 * 1e-5, 1.1002, 0));
        honest.push(t);
    }
    // The attack: 5 minutes ahead, at a price the market could have (and at the round's 7.77).
    let t = now_ms(&mut w) + lead;
    agg.on_tick(&mut w, &Tick::quote(0, t + 300_000, 1.12, 1.1202, 0));
    agg.on_tick(&mut w, &Tick::quote(0, t + 300_000, 7.77, 7.7702, 0));
    assert_eq!(w.counter(Counter::RejectedFutureTime), 1);
    assert_eq!(w.counter(Counter::RejectedBadPrice), 1);
    // Every honest tick after it is taken: the symbol keeps moving.
    for k in 0..5 {
        let t = now_ms(&mut w) + lead;
        agg.on_tick(
            &mut w,
            &Tick::quote(0, t, 1.1001 + k as f64 * 1e-5, 1.1003, 0),
        );
        honest.push(t);
    }
    assert_eq!(w.counter(Counter::RejectedOutOfOrder), 0);
    assert_eq!(w.counter(Counter::TicksProcessed), 10);
    let stored: Vec<i64> = ticks(&seg).iter().map(|t| t.0).collect();
    assert_eq!(stored, honest, "the ring holds the honest ticks only");
}

#[test]
fn a_host_clock_half_a_minute_off_loses_nothing() {
    // The feed's clock is learned from its ticks, not from this host's clock plus the
    // offset: a PC 40 s slow sees the broker's ticks 40 s "ahead", every one of them honest.
    let (seg, mut w, mut agg) = setup("clock-off");
    agg.set_feed_offset(0);
    for k in 0..20 {
        let t = now_ms(&mut w) + 40_000 + k;
        agg.on_tick(&mut w, &Tick::quote(0, t, 1.1, 1.1002, 0));
    }
    assert_eq!(w.counter(Counter::RejectedFutureTime), 0);
    assert_eq!(ticks(&seg).len(), 20);
}

#[test]
fn crossed_quotes_are_refused_and_counted_and_a_zero_spread_is_a_market() {
    let (seg, mut w, mut agg) = setup("crossed");
    let t = now_ms(&mut w);
    agg.on_tick(&mut w, &Tick::quote(0, t, 1.1, 1.1002, 0));
    agg.on_tick(&mut w, &Tick::quote(0, t + 1, 1.1003, 1.1001, 0));
    agg.on_latest_tick(&mut w, &Tick::quote(0, t + 2, 1.1003, 1.1001, 0));
    assert_eq!(w.counter(Counter::RejectedBadPrice), 2);
    agg.on_tick(&mut w, &Tick::quote(0, t + 3, 1.1001, 1.1001, 0));
    let stored = ticks(&seg);
    assert_eq!(stored, [(t, 1.1, 1.1002), (t + 3, 1.1001, 1.1001)]);
    assert!(stored.iter().all(|&(_, bid, ask)| bid <= ask));
}

#[test]
fn one_far_quote_is_dropped_and_a_level_the_market_confirms_is_taken() {
    let (seg, mut w, mut agg) = setup("jump");
    let t = now_ms(&mut w);
    agg.on_tick(&mut w, &Tick::quote(0, t, 1.10, 1.1002, 0));
    // One quote 40 % up, then the market where it was: the quote is dropped.
    agg.on_tick(&mut w, &Tick::quote(0, t + 1, 1.54, 1.5402, 0));
    agg.on_tick(&mut w, &Tick::quote(0, t + 2, 1.1001, 1.1003, 0));
    assert_eq!(w.counter(Counter::RejectedBadPrice), 1);
    // A real gap (a weekend, a crash): three ticks in a row at the new level take it.
    for k in 0..3 {
        agg.on_tick(&mut w, &Tick::quote(0, t + 10 + k, 0.70, 0.7002, 0));
    }
    assert_eq!(w.counter(Counter::RejectedBadPrice), 3);
    agg.on_tick(&mut w, &Tick::quote(0, t + 20, 0.7001, 0.7003, 0));
    let bids: Vec<f64> = ticks(&seg).iter().map(|t| t.1).collect();
    assert_eq!(bids, [1.10, 1.1001, 0.70, 0.7001]);
}

#[test]
fn flags_mt5_does_not_define_are_counted_as_such_and_fold_into_no_candle() {
    let (seg, mut w, mut agg) = setup("flags");
    let t = now_ms(&mut w);
    agg.on_tick(&mut w, &Tick::quote(0, t, 1.1, 1.1002, 0));
    agg.on_tick(&mut w, &{
        let mut bad = Tick::quote(0, t + 1, 1.1001, 1.1003, 0);
        bad.tick.flags = 0xFFFF;
        bad
    });
    assert_eq!(w.counter(Counter::RejectedBadFlags), 1);
    assert_eq!(w.counter(Counter::RejectedBadPrice), 0);
    assert_eq!(w.counter(Counter::TicksProcessed), 1);
    assert_eq!(ticks(&seg).len(), 1);
}
