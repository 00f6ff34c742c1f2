//! Helpers shared by the cross-process tests: self-cleaning segment names and candles whose
//! every field derives from one counter, so that a torn read is detectable.
//!
//! ```
//! use mtf_tests::{derived, is_derived};
//! assert!(is_derived(&derived(42)));
//! ```

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shm_core::{Candle, SegmentPath};

/// A uniquely named segment in /dev/shm, removed when dropped, even when the test panics.
pub struct TempSegment {
    /// The segment.
    pub path: SegmentPath,
}

impl TempSegment {
    /// A fresh name tagged with the test, the pid and a counter.
    pub fn new(tag: &str) -> TempSegment {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "mtf-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        TempSegment {
            path: SegmentPath::named(&name).expect("valid name"),
        }
    }

    /// The file.
    pub fn file(&self) -> PathBuf {
        self.path.path().to_owned()
    }
}

impl Drop for TempSegment {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path.path());
    }
}

/// The candle for counter value `k`: time `k * 60`, and every other field a function of `k`.
pub fn derived(k: u64) -> Candle {
    let base = 1000.0 + k as f64;
    Candle {
        time: k as i64 * 60,
        open: base,
        high: base + 0.5,
        low: base - 0.5,
        close: base + 0.25,
        tick_volume: k.wrapping_mul(7),
        spread: (k % 97) as i32,
        real_volume: k ^ 0x5555,
        forming: false,
        repaired: false,
    }
}

/// Whether `c` is exactly `derived(c.time / 60)`, apart from its forming flag.
pub fn is_derived(c: &Candle) -> bool {
    c.time >= 0
        && c.time % 60 == 0
        && *c
            == Candle {
                forming: c.forming,
                ..derived(c.time as u64 / 60)
            }
}

/// Checks one `read_last` result of the stress protocol: every candle derived, closed ones
/// contiguous, and the forming candle (if any) exactly one bar after the newest closed one.
pub fn check_snapshot(candles: &[Candle]) -> Result<(), String> {
    if let Some(bad) = candles.iter().find(|c| !is_derived(c)) {
        return Err(format!("torn candle {bad:?}"));
    }
    for pair in candles.windows(2) {
        if pair[1].time != pair[0].time + 60 || pair[0].forming {
            return Err(format!(
                "inconsistent neighbours {:?} then {:?}",
                pair[0], pair[1]
            ));
        }
    }
    Ok(())
}

/// A child process that is killed and reaped if the test ends before it does.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    /// Spawns `program` with `args`, stdout and stderr captured.
    pub fn spawn(program: &str, args: &[&str]) -> ChildGuard {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        ChildGuard(Some(child))
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let child = self.0.as_ref().expect("running");
        rustix::process::kill_process(
            rustix::process::Pid::from_child(child),
            rustix::process::Signal::TERM,
        )
        .expect("send SIGTERM");
    }

    /// Waits up to `limit` for the exit; `None` (and the child killed) if it did not exit.
    pub fn wait_for(mut self, limit: Duration) -> Option<(ExitStatus, String, String)> {
        let mut child = self.0.take().expect("running");
        let start = Instant::now();
        while start.elapsed() < limit {
            if child.try_wait().ok().flatten().is_some() {
                let out = child.wait_with_output().expect("collect output");
                let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
                return Some((out.status, text(out.stdout), text(out.stderr)));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
