//! Waking readers when candles change, across processes: a sleeping reader wakes on a change,
//! keeps its timeout, learns of a killed writer, and no wake-up is lost to a racing writer.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mtf_tests::{wait_for_running, ChildGuard, TempSegment};
use shm_core::{Candle, Layout, Liveness, Reader, Timeframe, WaitOutcome, Writer};

const HELPER: &str = env!("CARGO_BIN_EXE_shm-stress");

fn writer(seg: &TempSegment) -> Writer {
    let mut layout = Layout::new();
    layout.add_ring("STRESS", Timeframe::M1, 100).unwrap();
    let mut w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    w.set_running();
    w
}

/// `shm-stress wait` in another process, once it says it is waiting, with its output.
struct Waiter {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn waiter(seg: &TempSegment, secs: &str) -> Waiter {
    let file = seg.file();
    let mut child = mtf_tests::spawn(
        Command::new(HELPER)
            .args(["wait", file.to_str().unwrap(), secs])
            .stdout(Stdio::piped()),
    )
    .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "waiting");
    Waiter { child, out }
}

/// What the waiter says when it is done.
fn answer(mut w: Waiter) -> String {
    let mut line = String::new();
    w.out.read_line(&mut line).unwrap();
    assert!(w.child.wait().unwrap().success());
    line.trim().to_owned()
}

#[test]
fn a_reader_in_another_process_sleeps_until_a_change_and_wakes_on_it() {
    let seg = TempSegment::new("wake-xproc");
    let mut w = writer(&seg);
    let mut child = waiter(&seg, "10");
    // It sleeps (no change yet) ...
    std::thread::sleep(Duration::from_millis(200));
    assert!(child.child.try_wait().unwrap().is_none(), "still asleep");
    // ... until the writer publishes.
    let m1 = w.ring("STRESS", Timeframe::M1).unwrap();
    let published = Instant::now();
    w.update_forming(m1, &Candle::flat(60, 1.0));
    w.notify();
    assert_eq!(answer(child), "changed");
    assert!(published.elapsed() < Duration::from_secs(5));
}

#[test]
fn the_timeout_holds_when_nothing_changes() {
    let seg = TempSegment::new("wake-timeout");
    let _w = writer(&seg);
    let started = Instant::now();
    let child = waiter(&seg, "0.3");
    assert_eq!(answer(child), "timed out");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
}

#[test]
fn a_writer_killed_while_readers_wait_is_reported_within_the_timeout() {
    let seg = TempSegment::new("wake-kill");
    let file = seg.file();
    let mut idle = ChildGuard::spawn(HELPER, &["idle", file.to_str().unwrap()]);
    assert_eq!(idle.first_line().trim(), "running");
    let reader = wait_for_running(&seg.path);
    let since = reader.changes();
    let mut child = idle.0.take().unwrap();
    let waiting = std::thread::spawn(move || {
        let started = Instant::now();
        (
            reader.wait_for_change(since, Duration::from_secs(10)),
            started.elapsed(),
        )
    });
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (outcome, took) = waiting.join().unwrap();
    assert_eq!(outcome, WaitOutcome::WriterGone(Liveness::Gone));
    assert!(
        took < Duration::from_secs(10),
        "learnt within the timeout: {took:?}"
    );
}

#[test]
fn a_clean_stop_wakes_every_waiter_at_once() {
    let seg = TempSegment::new("wake-stop");
    let w = writer(&seg);
    let reader = Reader::open(&seg.path).unwrap();
    let since = reader.changes();
    std::thread::scope(|s| {
        let waiting = s.spawn(|| reader.wait_for_change(since, Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(100));
        drop(w);
        assert_eq!(
            waiting.join().unwrap(),
            WaitOutcome::WriterGone(Liveness::Stopped)
        );
    });
}

#[test]
fn a_hundred_waiters_in_threads_and_processes_all_wake() {
    let seg = TempSegment::new("wake-many");
    let mut w = writer(&seg);
    let reader = Reader::open(&seg.path).unwrap();
    let since = reader.changes();
    let processes: Vec<Waiter> = (0..20).map(|_| waiter(&seg, "20")).collect();
    let woke = std::thread::scope(|s| {
        let threads: Vec<_> = (0..80)
            .map(|_| s.spawn(|| reader.wait_for_change(since, Duration::from_secs(20))))
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let m1 = w.ring("STRESS", Timeframe::M1).unwrap();
        w.update_forming(m1, &Candle::flat(60, 2.0));
        w.notify();
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or(WaitOutcome::TimedOut))
            .filter(|o| matches!(o, WaitOutcome::Changed(_)))
            .count()
    });
    let woke_processes = processes
        .into_iter()
        .map(answer)
        .filter(|a| a == "changed")
        .count();
    assert_eq!((woke, woke_processes), (80, 20));
}

#[test]
fn no_wake_up_is_lost_to_a_racing_writer() {
    let seg = TempSegment::new("wake-race");
    let mut w = writer(&seg);
    let reader = Reader::open(&seg.path).unwrap();
    const CHANGES: u32 = 20_000;
    let start = reader.changes();
    let seen = std::thread::scope(|s| {
        let counting = s.spawn(|| {
            // Counts changes by the counter's steps; a lost wake-up would leave this asleep
            // with changes pending, until the (long) timeout, and fail below.
            let mut token = start;
            let mut seen = 0u64;
            let mut slept_through = 0;
            while seen < u64::from(CHANGES) {
                match reader.wait_for_change(token, Duration::from_secs(5)) {
                    WaitOutcome::Changed(t) => {
                        seen += t.steps_since(token);
                        token = t;
                    }
                    WaitOutcome::TimedOut => {
                        slept_through += 1;
                        break;
                    }
                    WaitOutcome::WriterGone(l) => panic!("writer {l}"),
                }
            }
            (seen, slept_through)
        });
        let m1 = w.ring("STRESS", Timeframe::M1).unwrap();
        let mut lcg = mtf_tests::Lcg(7);
        for k in 0..CHANGES {
            w.update_forming(m1, &Candle::flat(60, 1.0 + f64::from(k) * 1e-5));
            w.notify();
            // Now and then give the reader time to fall asleep, so that the race between its
            // going to sleep and our wake-up is run many times.
            if lcg.next().is_multiple_of(64) {
                std::thread::sleep(Duration::from_micros(lcg.next() % 200));
            }
        }
        counting.join().unwrap()
    });
    assert_eq!(seen, (u64::from(CHANGES), 0));
}

#[test]
#[cfg_attr(
    windows,
    ignore = "measures CPU time from /proc/PID/stat, which Windows has not"
)]
fn an_idle_waiter_uses_no_cpu() {
    let seg = TempSegment::new("wake-idle");
    let _w = writer(&seg);
    let file = seg.file();
    let mut child = mtf_tests::spawn(
        Command::new(HELPER)
            .args(["wait", file.to_str().unwrap(), "3"])
            .stdout(Stdio::piped()),
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ticks = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap() // utime + stime
    };
    let before = ticks(child.id());
    std::thread::sleep(Duration::from_secs(2));
    let after = ticks(child.id());
    let _ = child.wait();
    // Clock ticks are 10 ms: a waiter that spun would use ~200 in 2 s; a sleeping one ~0
    // (it looks at the writer's liveness every 100 ms, a few microseconds each).
    assert!(
        after - before <= 5,
        "{} ticks of CPU in 2 s",
        after - before
    );
}

/// `mtf-monitor --on-bar --json` on the segment, for `symbols`, reading shared memory only,
/// with an interval long enough that every cycle it runs was woken by a close.
fn monitor_on_bar(seg: &TempSegment, symbols: &str) -> std::process::Child {
    mtf_tests::spawn(
        Command::new(mtf_tests::workspace_bin("mtf-monitor"))
            .args([
                "--on-bar",
                "--json",
                "--interval",
                "300",
                "--stats-every",
                "0",
            ])
            .args(["--symbols", symbols, "--sources", "shm"])
            .args(["--segment-path", seg.file().to_str().unwrap()])
            .stdout(Stdio::piped()),
    )
    .unwrap()
}

/// `mtf-monitor --on-bar` runs a cycle when a watched symbol closes an M1 candle, long before
/// its interval, says so, and ignores changes that close nothing.
#[test]
fn the_monitor_on_bar_cycles_when_a_candle_closes_not_on_every_tick() {
    let seg = TempSegment::new("onbar");
    let mut layout = Layout::new();
    layout.add_ring("EURUSD", Timeframe::M1, 100).unwrap();
    layout.add_ring("GBPUSD", Timeframe::M1, 100).unwrap();
    let mut w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    w.set_running();
    let (eur, gbp) = (
        w.ring("EURUSD", Timeframe::M1).unwrap(),
        w.ring("GBPUSD", Timeframe::M1).unwrap(),
    );
    let minute = |k: i64| (shm_core::now_ns() as i64 / 1_000_000_000 / 60 + k) * 60;
    for k in -20..0 {
        w.push_closed(eur, &Candle::flat(minute(k), 1.1));
    }
    w.update_forming(eur, &Candle::flat(minute(0), 1.1));
    w.notify();

    let mut monitor = monitor_on_bar(&seg, "EURUSD,GBPUSD");
    let mut out = BufReader::new(monitor.stdout.take().unwrap());
    let mut monitor = ChildGuard(Some(monitor)); // killed on any exit from the test
                                                 // The next line that is not a change of source.
    let next_json = |out: &mut BufReader<std::process::ChildStdout>| loop {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let v = serde_json::from_str::<serde_json::Value>(&line)
            .unwrap_or_else(|e| panic!("{e}: {line:?}"));
        if v["type"] != "source_change" {
            break v;
        }
    };
    // The first cycle runs at once; then the monitor sleeps on the segment.
    for _ in 0..2 {
        assert_eq!(next_json(&mut out)["type"], "cycle");
    }
    std::thread::sleep(Duration::from_millis(300));
    // Ticks that only move the forming candle wake the monitor but start no cycle.
    for i in 0..50 {
        w.update_forming(eur, &Candle::flat(minute(0), 1.1 + f64::from(i) * 1e-5));
        w.notify();
    }
    std::thread::sleep(Duration::from_millis(300));
    w.push_closed(gbp, &Candle::flat(minute(-1), 1.3));
    w.heartbeat(); // a writer quiet for over a second counts as stalled, and is not read
    w.notify();

    // Well before the 300 s interval: a cycle for each symbol, then what woke it.
    let cycle: Vec<_> = (0..2).map(|_| next_json(&mut out)).collect();
    assert!(cycle.iter().all(|c| c["type"] == "cycle"), "{cycle:?}");
    assert_eq!(cycle[0]["symbol"], "EURUSD");
    assert_eq!(cycle[0]["source"], "shm", "{:?}", cycle[0]);
    let close = next_json(&mut out);
    assert_eq!(close["type"], "bar_close", "{close}");
    assert_eq!(close["symbols"], serde_json::json!(["GBPUSD"]));
    assert!(close["reaction_us"].as_f64().unwrap() >= 0.0);

    // A stopped streamer does not end the monitor: it keeps its timed cycles.
    drop(w);
    std::thread::sleep(Duration::from_millis(300));
    let child = monitor.0.as_mut().unwrap();
    assert!(child.try_wait().unwrap().is_none(), "the monitor exited");
}

/// D4: a streamer restarted with a larger ring backfills hundreds of bars; the monitor takes
/// none of them for a live close, and reports the first bar closed once the writer runs.
#[test]
fn the_monitor_on_bar_takes_a_restarts_backfill_for_history_not_closes() {
    let seg = TempSegment::new("onbar-restart");
    let minute = |k: i64| (shm_core::now_ns() as i64 / 1_000_000_000 / 60 + k) * 60;
    let layout = |capacity| {
        let mut l = Layout::new();
        l.add_ring("EURUSD", Timeframe::M1, capacity).unwrap();
        l
    };
    let mut w = Writer::create(&seg.path, &layout(100), &Default::default()).unwrap();
    let eur = w.ring("EURUSD", Timeframe::M1).unwrap();
    for k in -20..0 {
        w.push_closed(eur, &Candle::flat(minute(k), 1.1));
    }
    w.set_running();
    w.notify();

    let mut monitor = monitor_on_bar(&seg, "EURUSD");
    let out = BufReader::new(monitor.stdout.take().unwrap());
    let _monitor = ChildGuard(Some(monitor));
    let (tx, lines) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                if tx.send(v).is_err() {
                    return;
                }
            }
        }
    });
    // The next line that is not a change of source.
    let next = |what: &str| loop {
        let v = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no {what} within a minute"));
        if v["type"] != "source_change" {
            break v;
        }
    };
    assert_eq!(next("first cycle")["type"], "cycle");

    // The restart: another layout (a ring of 2,000), so a new file; history pushed in
    // batches while the writer initializes, each batch published and woken as a backfill is.
    drop(w);
    let mut w = Writer::create(&seg.path, &layout(2000), &Default::default()).unwrap();
    let eur = w.ring("EURUSD", Timeframe::M1).unwrap();
    for batch in 0..30 {
        for k in 0..20 {
            w.push_closed(eur, &Candle::flat(minute(-700 + batch * 20 + k), 1.2));
        }
        w.heartbeat();
        w.notify();
        std::thread::sleep(Duration::from_millis(20));
    }
    w.update_forming(eur, &Candle::flat(minute(-1), 1.2));
    w.set_running();
    w.notify();
    // One live close.
    w.roll(
        eur,
        &Candle::flat(minute(-1), 1.2),
        Some(&Candle::flat(minute(0), 1.2)),
    );
    w.heartbeat();
    w.notify();
    let mut closes = 0;
    loop {
        let v = next("bar_close of the live bar");
        if v["type"] == "bar_close" {
            closes += 1;
            break;
        }
    }
    // Nothing more closes: anything still queued would be a backfill taken for closes.
    w.update_forming(eur, &Candle::flat(minute(0), 1.25));
    w.heartbeat();
    w.notify();
    while let Ok(v) = lines.recv_timeout(Duration::from_millis(500)) {
        closes += usize::from(v["type"] == "bar_close");
    }
    assert_eq!(closes, 1, "the backfill was reported as closes");
}

/// What a reader account could do to the wake file of the first design (issue C1, C2, D1–D3):
/// plant one, truncate it, fill it with junk. The wake-up is a word of the read-only segment
/// now, so none of it reaches the writer or another reader.
#[cfg(unix)]
#[test]
fn a_planted_truncated_or_scribbled_wake_file_disturbs_no_one() {
    let seg = TempSegment::new("wake-hostile");
    let mut wake = seg.file().into_os_string();
    wake.push(".wake");
    // Planted before the writer starts (an older writer's leftover looks the same): removed.
    std::fs::write(&wake, [0xffu8; 64]).unwrap();
    let mut w = writer(&seg);
    assert!(
        std::fs::metadata(&wake).is_err(),
        "the writer removed the wake file and made none"
    );
    // The writer needs no file beside the segment but its lock: a tmpfs that fits only the
    // segment cannot fail it later (C2).
    let dir = seg.file().parent().unwrap().to_owned();
    let stem = seg
        .file()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut beside: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&stem))
        .collect();
    beside.sort();
    assert_eq!(beside, [stem.clone(), format!("{stem}.lock")]);

    // Planted again while it runs, then truncated to nothing (the SIGBUS of C1) and scribbled
    // on (the pinned, zeroed and bumped counters of D1–D3), while another process waits.
    std::fs::write(&wake, [0u8; 64]).unwrap();
    let m1 = w.ring("STRESS", Timeframe::M1).unwrap();
    for round in 0..3u8 {
        let child = waiter(&seg, "10");
        match round {
            0 => std::fs::File::create(&wake).unwrap().set_len(0).unwrap(),
            1 => std::fs::write(&wake, [0xffu8; 64]).unwrap(),
            _ => std::fs::write(&wake, [0u8; 64]).unwrap(),
        }
        w.update_forming(m1, &Candle::flat(60 * (i64::from(round) + 1), 1.0));
        w.notify();
        assert_eq!(answer(child), "changed", "round {round}");
    }
    let _ = std::fs::remove_file(&wake);
}
