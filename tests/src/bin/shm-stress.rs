//! Helper process for the cross-process tests.
//!
//! - `shm-stress writer PATH SECONDS`: publishes derived candles as fast as it can.
//! - `shm-stress forever PATH`: the same until killed.
//! - `shm-stress reader PATH SECONDS`: reads continuously and checks every snapshot; exits 1
//!   on the first inconsistent one. Prints `checked N busy M`.
//! - `shm-stress idle PATH`: a writer that heartbeats and publishes nothing, until killed.
//! - `shm-stress ticks PATH SECONDS RATE`: writes derived ticks at RATE ticks a second (0:
//!   as fast as it can) into a tick ring of 256; `ticks PATH forever RATE` until killed.
//! - `shm-stress tick-reader PATH SECONDS`: follows the tick ring and takes newest-N copies,
//!   checking that every tick is whole and each follows the one before it; exits 1 on the
//!   first that is not. Prints `checked N ticks M`.
//! - `shm-stress wait PATH SECONDS`: prints `waiting`, waits for one change at most SECONDS,
//!   then prints `changed`, `timed out` or `gone LIVENESS`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use mtf_tests::{check_snapshot, derived, derived_tick};
use shm_core::{Layout, Liveness, Reader, SegmentPath, Tick, Timeframe, Writer};

const SYMBOL: &str = "STRESS";

/// The one-ring segment every mode writes: a small ring, so readers of 64 candles are lapped
/// often.
fn create(path: &str) -> Result<Writer, String> {
    let mut layout = Layout::new();
    layout
        .add_ring(SYMBOL, Timeframe::M1, 100)
        .map_err(|e| e.to_string())?;
    Writer::create(&SegmentPath::at(path), &layout, &Default::default()).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let secs =
        |i: usize| Duration::from_secs_f64(args.get(i).and_then(|s| s.parse().ok()).unwrap_or(1.0));
    let result = match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("writer"), Some(path)) => write(path, Some(secs(3))),
        (Some("forever"), Some(path)) => write(path, None),
        (Some("reader"), Some(path)) => read(path, secs(3)),
        (Some("idle"), Some(path)) => idle(path),
        (Some("wait"), Some(path)) => wait(path, secs(3)),
        (Some("ticks"), Some(path)) => write_ticks(
            path,
            (args.get(3).map(String::as_str) != Some("forever")).then(|| secs(3)),
            args.get(4).and_then(|s| s.parse().ok()).unwrap_or(0),
        ),
        (Some("tick-reader"), Some(path)) => read_ticks(path, secs(3)),
        _ => Err(
            "usage: shm-stress writer|forever|reader|idle|wait|ticks|tick-reader PATH [SECONDS]"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shm-stress: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write(path: &str, run_for: Option<Duration>) -> Result<(), String> {
    let mut w = create(path)?;
    let ring = w.ring(SYMBOL, Timeframe::M1).ok_or("no ring")?;
    // Continue where a killed predecessor stopped, so the sequence of k stays contiguous.
    let mut k = w.last_closed(ring).map_or(1, |c| c.time as u64 / 60 + 1);
    w.update_forming(ring, &derived(k));
    w.set_running();
    let start = Instant::now();
    let mut writes = 0u64;
    loop {
        for _ in 0..4 {
            w.update_forming(ring, &derived(k));
        }
        w.roll(ring, &derived(k), Some(&derived(k + 1)));
        k += 1;
        writes += 5;
        if k % 1024 == 0 {
            w.heartbeat();
            if run_for.is_some_and(|d| start.elapsed() >= d) {
                break;
            }
        }
    }
    println!("writes {writes} closed {k}");
    Ok(())
}

fn read(path: &str, run_for: Duration) -> Result<(), String> {
    let start = Instant::now();
    let reader = open_within(path, Duration::from_secs(10))?;
    let ring = reader.ring(SYMBOL, Timeframe::M1).ok_or("no ring")?;
    let mut out = Vec::new();
    let (mut checked, mut busy) = (0u64, 0u64);
    let sizes = [1, 2, 16, 64, 101];
    while start.elapsed() < run_for {
        for &n in &sizes {
            match ring.read_last(n, &mut out) {
                Ok(()) => {
                    check_snapshot(&out)
                        .map_err(|e| format!("after {checked} good snapshots: {e}"))?;
                    checked += 1;
                }
                Err(_) => busy += 1,
            }
        }
        if reader.status().liveness == Liveness::Stopped {
            break;
        }
    }
    println!("checked {checked} busy {busy}");
    Ok(())
}

fn idle(path: &str) -> Result<(), String> {
    let mut w = create(path)?;
    w.set_running();
    println!("running");
    loop {
        w.heartbeat();
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait(path: &str, timeout: Duration) -> Result<(), String> {
    use std::io::Write;
    let reader = Reader::open(&SegmentPath::at(path)).map_err(|e| e.to_string())?;
    let since = reader.changes();
    println!("waiting");
    let _ = std::io::stdout().flush();
    match reader.wait_for_change(since, timeout) {
        shm_core::WaitOutcome::Changed(_) => println!("changed"),
        shm_core::WaitOutcome::TimedOut => println!("timed out"),
        shm_core::WaitOutcome::WriterGone(l) => println!("gone {l}"),
    }
    Ok(())
}

fn write_ticks(path: &str, run_for: Option<Duration>, rate: u64) -> Result<(), String> {
    let mut layout = Layout::new();
    layout
        .add_ring(SYMBOL, Timeframe::M1, 10)
        .and_then(|l| l.set_tick_depth(256))
        .map_err(|e| e.to_string())?;
    let mut w = Writer::create(&SegmentPath::at(path), &layout, &Default::default())
        .map_err(|e| e.to_string())?;
    let sym = w.symbol(SYMBOL).ok_or("no symbol")?;
    // Continue where a killed predecessor stopped.
    let mut k = w.newest_tick(sym).map_or(0, |t| t.volume + 1);
    w.set_running();
    let start = Instant::now();
    loop {
        // Paced in batches of 100: at RATE a second, batch n is due at n * 100 / RATE s.
        if rate > 0 {
            let due = Duration::from_secs_f64(k as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        for _ in 0..100 {
            w.push_tick(sym, &derived_tick(k))
                .map_err(|e| e.to_string())?;
            k += 1;
        }
        w.heartbeat();
        w.notify();
        if run_for.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
    }
    println!("ticks {k}");
    Ok(())
}

fn read_ticks(path: &str, run_for: Duration) -> Result<(), String> {
    let start = Instant::now();
    let reader = open_within(path, Duration::from_secs(10))?;
    let ring = reader.ticks(SYMBOL).ok_or("no tick ring")?;
    let mut out = Vec::new();
    let (mut copies, mut ticks, mut next) = (0u64, 0u64, 0u64);
    let check = |out: &[Tick]| -> Result<(), String> {
        for pair in out.windows(2) {
            if pair[1].volume != pair[0].volume + 1 {
                return Err(format!(
                    "tick {} follows tick {}",
                    pair[1].volume, pair[0].volume
                ));
            }
        }
        for t in out {
            if *t
                != (Tick {
                    published_ns: t.published_ns,
                    ..derived_tick(t.volume)
                })
            {
                return Err(format!("torn tick {t:?}"));
            }
        }
        Ok(())
    };
    while start.elapsed() < run_for {
        for n in [1, 64, 256] {
            ring.read_last(n, &mut out).map_err(|e| e.to_string())?;
            check(&out).map_err(|e| format!("after {copies} good copies: {e}"))?;
            copies += 1;
        }
        // Following: every tick from `next` on, or from the oldest still held.
        let span = ring
            .read_from(next, 256, &mut out)
            .map_err(|e| e.to_string())?;
        check(&out).map_err(|e| format!("following, after {copies} good copies: {e}"))?;
        if let Some(first) = out.first() {
            if span.first == next && next > 0 && first.volume != next {
                return Err(format!("position {next} holds tick {}", first.volume));
            }
        }
        ticks += out.len() as u64;
        next = span.first + out.len() as u64;
        copies += 1;
        if reader.status().liveness == Liveness::Stopped {
            break;
        }
    }
    println!("checked {copies} ticks {ticks}");
    Ok(())
}

/// The segment at `path`, once its writer has made it (within `limit`).
fn open_within(path: &str, limit: Duration) -> Result<Reader, String> {
    let start = Instant::now();
    loop {
        match Reader::open(&SegmentPath::at(path)) {
            Ok(r) => return Ok(r),
            Err(e) if start.elapsed() > limit => return Err(e.to_string()),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}
