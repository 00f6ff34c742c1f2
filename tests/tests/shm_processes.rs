//! Cross-process proofs for the segment: no torn snapshot under a writer at full speed, and a
//! SIGKILLed writer neither hangs readers nor loses its candles.

use std::time::{Duration, Instant};

use mtf_tests::{check_snapshot, derived, derived_tick, wait_for_running, ChildGuard, TempSegment};
use shm_core::{Layout, Liveness, Reader, Start, Timeframe, Writer};

const HELPER: &str = env!("CARGO_BIN_EXE_shm-stress");

fn spawn(args: &[&str]) -> ChildGuard {
    ChildGuard::spawn(HELPER, args)
}

/// Waits for the child to exit (at most 60 s) and returns whether it succeeded, and its output.
fn finish(child: ChildGuard) -> (bool, String) {
    let (status, out, err) = child
        .wait_for(Duration::from_secs(60))
        .expect("helper exits");
    (status.success(), format!("{out}{err}"))
}

#[test]
fn readers_in_other_processes_never_see_a_torn_snapshot() {
    let seg = TempSegment::new("stress");
    let file = seg.file();
    let path = file.to_str().unwrap();
    let writer = spawn(&["writer", path, "3"]);
    wait_for_running(&seg.path);
    let readers: Vec<_> = (0..2).map(|_| spawn(&["reader", path, "3"])).collect();

    let (ok, text) = finish(writer);
    assert!(ok, "writer failed: {text}");
    println!("writer: {}", text.trim());
    let mut total = 0;
    for r in readers {
        let (ok, text) = finish(r);
        assert!(ok, "reader found an inconsistent snapshot: {text}");
        println!("reader: {}", text.trim());
        let checked: u64 = text
            .split_whitespace()
            .skip_while(|w| *w != "checked")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("reader prints its count");
        assert!(checked > 0, "a reader completed no snapshot: {text}");
        total += checked;
    }
    println!("{total} snapshots checked across 2 reader processes");
}

#[test]
fn sigkilled_writer_is_reported_gone_and_its_candles_survive() {
    let seg = TempSegment::new("sigkill");
    let file = seg.file();
    let mut writer = spawn(&["forever", file.to_str().unwrap()]);
    let reader = wait_for_running(&seg.path);
    let ring = reader.ring("STRESS", Timeframe::M1).unwrap();
    let mut out = Vec::new();
    // Let it write a few full rings' worth.
    // Busy counts as "not yet": the writer is hammering this very ring.
    while ring.stats().map_or(0, |s| s.closed_total) < 1000 {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(reader.status().liveness, Liveness::Alive);
    let generation = reader.status().generation;

    let mut child = writer.0.take().unwrap();
    let killed_at = Instant::now();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // Gone, as soon as the kernel has released the lock (it has, once wait() returned).
    let mut liveness = reader.status().liveness;
    while liveness != Liveness::Gone && killed_at.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(10));
        liveness = reader.status().liveness;
    }
    assert_eq!(liveness, Liveness::Gone, "not reported gone within 1 s");

    // Reads finish: either a consistent snapshot, or Busy if the kill hit mid-write.
    let mut small_budget = Reader::open(&seg.path).unwrap();
    small_budget.set_max_attempts(1000);
    let before_restart = match small_budget
        .ring("STRESS", Timeframe::M1)
        .unwrap()
        .read_last(50, &mut out)
    {
        Ok(()) => {
            check_snapshot(&out).unwrap();
            Some(out.clone())
        }
        Err(e) => {
            println!("killed mid-write: {e}");
            None
        }
    };

    // A new writer takes over with generation + 1 and the old candles.
    let mut layout = Layout::new();
    layout.add_ring("STRESS", Timeframe::M1, 100).unwrap();
    let mut w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    assert!(matches!(w.start(), Start::Warm { .. }), "{:?}", w.start());
    assert_eq!(w.generation(), generation + 1);
    w.set_running();
    assert_eq!(reader.status().liveness, Liveness::Alive);
    assert_eq!(reader.status().generation, generation + 1);
    ring.read_last(100, &mut out).unwrap();
    assert!(out.len() >= 99, "old candles kept: {}", out.len());
    check_snapshot(&out).unwrap();
    if let Some(before) = before_restart {
        // Closed candles are untouched by the restart; only a torn forming one may be dropped.
        let closed: Vec<_> = before.iter().filter(|c| !c.forming).collect();
        assert!(
            closed.iter().all(|c| out.contains(c)),
            "closed candles changed across restart"
        );
    }
    let last = w
        .last_closed(w.ring("STRESS", Timeframe::M1).unwrap())
        .unwrap();
    assert_eq!(last, derived(last.time as u64 / 60));
}

#[test]
fn tick_readers_against_a_writer_at_100k_ticks_a_second_find_no_torn_or_reordered_tick() {
    let seg = TempSegment::new("tickstress");
    let file = seg.file();
    let path = file.to_str().unwrap();
    let writer = spawn(&["ticks", path, "3", "100000"]);
    wait_for_running(&seg.path);
    let readers: Vec<_> = (0..2).map(|_| spawn(&["tick-reader", path, "3"])).collect();
    let (ok, text) = finish(writer);
    assert!(ok, "writer failed: {text}");
    println!("writer: {}", text.trim());
    for r in readers {
        let (ok, text) = finish(r);
        assert!(ok, "a reader found a torn or reordered tick: {text}");
        println!("reader: {}", text.trim());
        let ticks: u64 = text
            .split_whitespace()
            .skip_while(|w| *w != "ticks")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("reader prints its count");
        assert!(ticks > 0, "a reader followed no tick: {text}");
    }
}

#[test]
fn a_writer_sigkilled_among_ticks_leaves_no_torn_tick_and_a_restart_keeps_the_ring() {
    let seg = TempSegment::new("tickkill");
    let file = seg.file();
    let mut writer = spawn(&["ticks", file.to_str().unwrap(), "forever", "0"]);
    let reader = wait_for_running(&seg.path);
    let ring = reader.ticks("STRESS").unwrap();
    // Busy-free: the tick ring never makes a reader wait; wait for a few laps of it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while ring.total() < 10_000 {
        assert!(Instant::now() < deadline, "the writer wrote no ticks");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut child = writer.0.take().unwrap();
    child.kill().unwrap(); // SIGKILL, somewhere among the ticks
    child.wait().unwrap();

    let mut before = Vec::new();
    ring.read_last(256, &mut before).unwrap();
    assert!(
        before.len() >= 255,
        "a killed write costs at most one tick: {}",
        before.len()
    );
    for pair in before.windows(2) {
        assert_eq!(pair[1].volume, pair[0].volume + 1);
    }
    for t in &before {
        assert_eq!(
            *t,
            shm_core::Tick {
                published_ns: t.published_ns,
                ..derived_tick(t.volume)
            }
        );
    }

    // A new writer keeps the ring and continues after its newest tick.
    let mut layout = Layout::new();
    layout.add_ring("STRESS", Timeframe::M1, 10).unwrap();
    layout.set_tick_depth(256).unwrap();
    let mut w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    assert!(matches!(w.start(), Start::Warm { .. }), "{:?}", w.start());
    let sym = w.symbol("STRESS").unwrap();
    let newest = w.newest_tick(sym).unwrap();
    assert_eq!(newest, *before.last().unwrap());
    let mut after = Vec::new();
    ring.read_last(256, &mut after).unwrap();
    assert_eq!(after, before, "the restart changed the ring");
    w.push_tick(sym, &derived_tick(newest.volume + 1)).unwrap();
    // An older tick is refused, and nothing is written.
    assert!(w.push_tick(sym, &derived_tick(0)).is_err());
    ring.read_last(2, &mut after).unwrap();
    assert_eq!(after[1].volume, newest.volume + 1);
    assert_eq!(after[0], newest);
}
