//! D5 of the local attack: the writer's wall clock may be wrong or jump. Real streamers run
//! under libfaketime (Debian's `faketime`, LD_PRELOAD), which moves their wall clock only
//! (`FAKETIME_DONT_FAKE_MONOTONIC=1`: the monotonic and boot-time clocks stay the kernel's),
//! read afresh from a file at every call, so a test can step it while the streamer runs.
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mtf_tests::{wait_for_running, workspace_bin, ChildGuard, TempSegment};
use shm_core::{Counter, Liveness, Reader};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The file whose content is the streamer's clock offset (`+1d`, `-1h`, `+0`), removed with
/// the guard.
struct FakeClock(PathBuf);

impl FakeClock {
    fn new(tag: &str, offset: &str) -> FakeClock {
        let path = std::env::temp_dir().join(format!("mtf-faketime-{tag}-{}", std::process::id()));
        let clock = FakeClock(path);
        clock.set(offset);
        clock
    }

    fn set(&self, offset: &str) {
        std::fs::write(&self.0, format!("{offset}\n")).unwrap();
    }
}

impl Drop for FakeClock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn faketime_or_say_why() -> bool {
    if Path::new(LIBFAKETIME).exists() {
        return true;
    }
    eprintln!("SKIPPED LOUDLY: {LIBFAKETIME} is missing (./scripts/setup installs `faketime`)");
    false
}

/// A streamer under libfaketime. libfaketime keeps two files of its own in /dev/shm per
/// process (`faketime_shm_PID`, `sem.faketime_sem_PID`) and removes them only at a clean
/// exit: they are removed here after the process ends, however it ended.
struct Faked(ChildGuard);

impl Drop for Faked {
    fn drop(&mut self) {
        let pid = self.0 .0.as_ref().map(|c| c.id());
        drop(self.0 .0.take().map(|c| ChildGuard(Some(c)))); // killed and reaped
        if let Some(pid) = pid {
            let _ = std::fs::remove_file(format!("/dev/shm/faketime_shm_{pid}"));
            let _ = std::fs::remove_file(format!("/dev/shm/sem.faketime_sem_{pid}"));
        }
    }
}

/// A synthetic streamer whose wall clock is read from `clock`.
fn streamer(seg: &TempSegment, clock: &FakeClock) -> Faked {
    let child = Command::new(workspace_bin("mtf-streamer"))
        .args(["--segment-path", seg.file().to_str().unwrap()])
        .args(["--no-http", "--tick-rate", "50", "--symbols", "BTCUSDc"])
        .env("LD_PRELOAD", LIBFAKETIME)
        .env("FAKETIME_TIMESTAMP_FILE", &clock.0)
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mtf-streamer");
    Faked(ChildGuard(Some(child)))
}

/// Waits (bounded) until `ok` holds of the segment's status.
fn wait_until(r: &Reader, what: &str, ok: impl Fn(&shm_core::Status) -> bool) {
    let start = Instant::now();
    while !ok(&r.status()) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what}: {:?}",
            r.status()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_writer_whose_clock_runs_ahead_is_stalled_when_it_stops() {
    if !faketime_or_say_why() {
        return;
    }
    let seg = TempSegment::new("clock-ahead");
    let clock = FakeClock::new("ahead", "+1d");
    let child = streamer(&seg, &clock);
    let mut r = wait_for_running(&seg.path);
    r.set_stall_after(Duration::from_millis(500));
    assert_eq!(r.status().liveness, Liveness::Alive);
    // SIGSTOP: its heartbeat (a day ahead by the wall clock) stops. By its boot-time clock
    // it ages, so it is stalled within the limit, not "heartbeat 0 ms ago" for a day.
    let pid = rustix::process::Pid::from_child(child.0 .0.as_ref().unwrap());
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    wait_until(&r, "a stopped writer stayed alive", |s| {
        s.liveness == Liveness::Stalled
    });
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
    wait_until(&r, "a resumed writer stayed stalled", |s| {
        s.liveness == Liveness::Alive
    });
}

#[test]
fn a_clock_stepped_back_an_hour_is_counted_and_freezes_nothing() {
    if !faketime_or_say_why() {
        return;
    }
    let seg = TempSegment::new("clock-back");
    let clock = FakeClock::new("back", "+0");
    let mut child = streamer(&seg, &clock);
    let r = wait_for_running(&seg.path);
    let ticks = |s: &shm_core::Status| s.counters.get(Counter::TicksProcessed);
    let before = ticks(&r.status());
    clock.set("-1h");
    wait_until(&r, "the step back was not counted", |s| {
        s.counters.get(Counter::ClockJumpsBack) == 1
    });
    // The feed goes on: ticks keep being accepted, none is refused as older than the
    // forming bar, and the writer stays alive to a reader whose clock did not move.
    let after = ticks(&r.status());
    wait_until(&r, "ticks stopped after the step", |s| {
        ticks(s) >= after + 100
    });
    let st = r.status();
    assert!(ticks(&st) > before);
    assert_eq!(st.counters.get(Counter::RejectedOutOfOrder), 0, "{st:?}");
    assert_eq!(st.liveness, Liveness::Alive);
    // And it said so.
    child.0.stop();
    let stderr = {
        let mut c = child.0 .0.take().unwrap();
        c.wait().unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut c.stderr.take().unwrap(), &mut text).unwrap();
        text
    };
    assert!(stderr.contains("clock went back by"), "{stderr}");
}
