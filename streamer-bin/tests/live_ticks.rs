//! The live path as traders run it: a terminal whose package returns numpy arrays (the
//! stand-in, `gateway/standin/MetaTrader5.py`, keeps MetaQuotes' types) → the real gateway →
//! `mtf-streamer --source mt5` → the segment. Every tick the terminal makes after the feed is
//! live reaches the tick ring, once, in order, with its prices and flags, for 2 and for 20
//! symbols.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mtf_tests::{spawn_standin_gateway, wait_for_status, TempSegment};
use shm_core::{FeedState, Reader};

const BIN: &str = env!("CARGO_BIN_EXE_mtf-streamer");

/// A tick as the stand-in reports it: `[time_msc, bid, ask, flags]`.
type Made = (i64, f64, f64, u32);

struct Report(std::path::PathBuf);

impl Drop for Report {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_file(self.0.with_extension("json.tmp"));
    }
}

/// The stand-in's report, once it has made every tick (it writes it then, whole).
fn made_ticks(report: &Report, limit: Duration) -> HashMap<String, Vec<Made>> {
    let until = Instant::now() + limit;
    let text = loop {
        if let Ok(text) = std::fs::read_to_string(&report.0) {
            break text;
        }
        assert!(
            Instant::now() < until,
            "the stand-in did not make its ticks in {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let json: serde_json::Value = serde_json::from_str(&text).expect("the report is JSON");
    let mut out = HashMap::new();
    for (name, ticks) in json["ticks"].as_object().expect("ticks by symbol") {
        let ticks = ticks
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t[0].as_i64().unwrap(),
                    t[1].as_f64().unwrap(),
                    t[2].as_f64().unwrap(),
                    t[3].as_u64().unwrap() as u32,
                )
            })
            .collect();
        out.insert(name.clone(), ticks);
    }
    out
}

fn segment_ticks(reader: &Reader, symbol: &str) -> Vec<Made> {
    let mut out = Vec::new();
    reader
        .ticks(symbol)
        .expect("a tick ring")
        .read_last(100_000, &mut out)
        .expect("a clean read");
    out.iter()
        .map(|t| (t.time_msc, t.bid, t.ask, t.flags))
        .collect()
}

/// `n` symbols at `rate` ticks a second each, `per_symbol` ticks each. With `hold`, the
/// terminal makes each symbol's later ticks only once the feed is live; without, it ticks on
/// while the streamer backfills one symbol after another.
fn every_tick_reaches_the_segment(n: usize, rate: u32, per_symbol: u32, hold: bool) {
    let names: Vec<String> = (0..n).map(|i| format!("SYM{i:02}")).collect();
    let spec = names
        .iter()
        .map(|s| format!("{s}={rate}"))
        .collect::<Vec<_>>()
        .join(",");
    let report = Report(
        std::env::temp_dir().join(format!("mtf-live-ticks-{n}-{}.json", std::process::id())),
    );
    // The terminal makes each symbol's first tick, then holds the rest until the feed is
    // live: every later tick is made after the subscription, however loaded the machine.
    let hold_file = report.0.with_extension("hold");
    let _release = Report(hold_file.clone());
    let held = if hold {
        hold_file.to_str().unwrap()
    } else {
        ""
    };
    let (_gw, addr) = spawn_standin_gateway(
        &[
            ("MT5_STANDIN_SYMBOLS", &spec),
            ("MT5_STANDIN_PRICE_STEP", "1"),
            ("MT5_STANDIN_SAME_MS", "0.2"),
            ("MT5_STANDIN_MAX_TICKS", &per_symbol.to_string()),
            ("MT5_STANDIN_REPORT", report.0.to_str().unwrap()),
            ("MT5_STANDIN_HOLD", held),
        ],
        &["--log-level", "WARNING"],
    );
    let seg = TempSegment::new(&format!("live-ticks-{n}"));
    let symbols = names.join(",");
    let _streamer = mtf_tests::spawn_mt5_streamer(
        BIN,
        &addr,
        &seg,
        &["--symbols", &symbols, "--timeframes", "M1"],
    );
    let reader = wait_for_status(
        &seg.path,
        "the mt5 feed to be live",
        Duration::from_secs(120),
        |s| s.feed_state == Some(FeedState::Live),
    );
    std::fs::write(&hold_file, b"").expect("release the terminal's ticks");
    let made = made_ticks(&report, Duration::from_secs(180));
    for name in &names {
        let made = &made[name];
        assert_eq!(
            made.len(),
            per_symbol as usize,
            "{name}: the stand-in's ticks"
        );
        let last = *made.last().unwrap();
        // Wait, with a deadline, until the newest tick the terminal made is in the ring.
        let until = Instant::now() + Duration::from_secs(60);
        let got = loop {
            let got = segment_ticks(&reader, name);
            if got.last() == Some(&last) {
                break got;
            }
            assert!(
                Instant::now() < until,
                "{name}: the terminal's last tick {last:?} never reached the segment (newest there: {:?})",
                got.last()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // The ring holds a contiguous run of the terminal's ticks, ending at its last and
        // starting at the latest tick the backfill recorded: in order, none twice, none left
        // out (those the terminal made while other symbols backfilled included), each with
        // its prices and flags.
        let start = made.len().checked_sub(got.len()).unwrap_or_else(|| {
            panic!(
                "{name}: {} ticks in the segment, the terminal made {} (counters {:?})",
                got.len(),
                made.len(),
                reader.status().counters
            )
        });
        assert_eq!(
            got,
            made[start..],
            "{name}: the segment's ticks are not the terminal's from {start} on (counters {:?})",
            reader.status().counters
        );
        if hold {
            // Held: only the first tick was made before the feed was live.
            assert!(
                start <= 1,
                "{name}: ticks made after the feed went live are missing"
            );
        }
    }
}

#[test]
fn every_tick_of_two_symbols_reaches_the_segment_once_in_order() {
    every_tick_reaches_the_segment(2, 20, 240, true);
}

#[test]
fn every_tick_of_twenty_symbols_reaches_the_segment_once_in_order() {
    every_tick_reaches_the_segment(20, 5, 60, false);
}
