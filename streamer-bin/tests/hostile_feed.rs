//! Wrong data is never served, and one bad field must not cost the stream (issue 40): a
//! hostile gateway (a test double that speaks docs/MT5_GATEWAY.md, `hostile_gateway.py`)
//! sends a tick with a negative volume, a tick whose `time` disagrees with its `time_msc`, a
//! tick stamped 5 minutes ahead at a forged price, crossed quotes, or a symbol_info answer
//! that is NaN, over 64 KiB, not Unicode, 30 s late, or impossible (a negative point). The
//! streamer refuses that one tick or record, counts it, and keeps the tick stream, with no
//! reconnect; readers (Rust here, Python and HTTP through the same checks) see none of it.

use std::time::Duration;

use mtf_tests::{wait_for_status, ChildGuard, TempSegment};
use shm_core::{Counter, FeedState};

const BIN: &str = env!("CARGO_BIN_EXE_mtf-streamer");

fn run(mode: &str) -> (shm_core::Reader, TempSegment, ChildGuard, ChildGuard) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile_gateway.py");
    let mut gw = ChildGuard::spawn("python3", &[script.to_str().unwrap(), "--mode", mode]);
    let addr = mtf_tests::listening_address(&mut gw);
    let seg = TempSegment::new(&format!("hostile-{mode}"));
    let streamer = mtf_tests::spawn_mt5_streamer(
        BIN,
        &addr,
        &seg,
        &["--symbols", "EURUSD", "--timeframes", "M1"],
    );
    // Ticks keep coming (the gateway sends 50 a second): 150 processed is 3 s of stream.
    let reader = wait_for_status(
        &seg.path,
        "the stream to keep going",
        Duration::from_secs(120),
        |s| s.feed_state == Some(FeedState::Live) && s.counters.get(Counter::TicksProcessed) >= 150,
    );
    (reader, seg, gw, streamer)
}

#[test]
fn a_tick_with_a_bad_field_is_refused_alone() {
    let (r, _seg, _gw, _s) = run("bad_tick");
    let st = r.status();
    assert_eq!(
        st.counters.get(Counter::Reconnects),
        0,
        "the stream was kept"
    );
    assert!(st.counters.get(Counter::RejectedBadPrice) >= 10);
    let mut ticks = Vec::new();
    r.ticks("EURUSD")
        .unwrap()
        .read_last(10_000, &mut ticks)
        .unwrap();
    assert!(ticks.len() >= 100);
    assert!(
        ticks.iter().all(|t| t.volume == 0),
        "no refused tick stored"
    );
}

fn info_refused_and_stream_kept(mode: &str) {
    let (r, _seg, _gw, _s) = run(mode);
    let st = r.status();
    assert_eq!(
        st.counters.get(Counter::Reconnects),
        0,
        "{mode}: the stream was kept"
    );
    assert!(
        st.counters.get(Counter::RejectedSymbolInfo) >= 1,
        "{mode}: the record was refused and counted"
    );
    assert_eq!(
        r.symbol_info("EURUSD").unwrap(),
        None,
        "{mode}: nothing served"
    );
}

#[test]
fn a_symbol_info_answer_with_a_nan_costs_only_the_record() {
    info_refused_and_stream_kept("nan_info");
}

#[test]
fn a_symbol_info_answer_over_64_kib_costs_only_the_record() {
    info_refused_and_stream_kept("huge_info");
}

#[test]
fn a_symbol_info_answer_that_is_not_unicode_costs_only_the_record() {
    info_refused_and_stream_kept("surrogate");
}

#[test]
fn a_slow_symbol_info_answer_costs_only_the_record() {
    info_refused_and_stream_kept("slow_info");
}

#[test]
fn a_tick_five_minutes_ahead_at_a_forged_price_never_freezes_the_symbol() {
    let (r, _seg, _gw, _s) = run("future_tick");
    let st = r.status();
    assert!(st.counters.get(Counter::RejectedFutureTime) >= 5);
    assert_eq!(
        st.counters.get(Counter::RejectedOutOfOrder),
        0,
        "nothing froze"
    );
    let mut ticks = Vec::new();
    r.ticks("EURUSD")
        .unwrap()
        .read_last(10_000, &mut ticks)
        .unwrap();
    assert!(
        ticks.iter().all(|t| t.bid != 1.12),
        "no forged price stored"
    );
    // The newest tick is an honest one, and recent.
    let now_ms = (shm_core::now_ns() / 1_000_000) as i64;
    let newest = r.ticks("EURUSD").unwrap().latest().unwrap().unwrap();
    assert!(newest.time_msc <= now_ms + 1_000 && newest.time_msc > now_ms - 60_000);
}

#[test]
fn crossed_quotes_are_never_stored() {
    let (r, _seg, _gw, _s) = run("crossed");
    assert!(r.status().counters.get(Counter::RejectedBadPrice) >= 40);
    let mut ticks = Vec::new();
    r.ticks("EURUSD")
        .unwrap()
        .read_last(10_000, &mut ticks)
        .unwrap();
    assert!(ticks.len() >= 100 && ticks.iter().all(|t| t.bid <= t.ask));
}

#[test]
fn impossible_symbol_information_is_never_served() {
    info_refused_and_stream_kept("bad_info");
}
