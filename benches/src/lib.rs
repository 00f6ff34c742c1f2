//! Helpers of the benchmarks in `benches/` (run them all with `./scripts/bench`, which ends
//! with one table): a monotonic clock that two processes share, CPU pinning, and the results
//! file each harness adds its rows to. Figures and the machine they were taken on are in
//! `docs/BENCHMARKS.md`.
//!
//! ```
//! let a = mtf_benches::mono_ns();
//! assert!(mtf_benches::mono_ns() >= a);
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;

use serde_json::{json, Value};

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process on the host, unlike
/// `Instant`, whose values cannot leave the process.
#[cfg(unix)]
pub fn mono_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// On Windows, the precise system time (`GetSystemTimePreciseAsFileTime`, 100 ns steps) in
/// nanoseconds: shared by every process like `CLOCK_MONOTONIC`, but a clock step during a
/// run would show as one wrong latency.
#[cfg(not(unix))]
pub fn mono_ns() -> u64 {
    shm_core::now_ns()
}

/// Pins the calling thread to `cpu`, if the machine has it; says so if it could not.
#[cfg(unix)]
pub fn pin_to_cpu(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
        eprintln!("note: could not pin to CPU {cpu}: {e}");
    }
}

/// Not on Windows: the figures there are taken unpinned.
#[cfg(not(unix))]
pub fn pin_to_cpu(cpu: usize) {
    eprintln!("note: not pinning to CPU {cpu} on this platform");
}

/// How often the scheduler took the CPU from this process (`nonvoluntary_ctxt_switches` of
/// `/proc/self/status`, summed over its threads); 0 if unknown.
pub fn preemptions() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Nanoseconds the calling thread has spent on a CPU (from `/proc/thread-self/schedstat`).
pub fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// `target/mtf-bench`, where harnesses leave their rows for the summary table.
pub fn results_dir() -> PathBuf {
    // Bench executables run from target/<profile>/deps.
    let exe = std::env::current_exe().expect("own path");
    let target = exe
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "target"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("mtf-bench")
}

/// One row of the summary table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured.
    pub measure: String,
    /// The figure, with its unit.
    pub result: String,
    /// The target it is held against, if any.
    pub target: String,
    /// Whether the target was met (`None` without one).
    pub met: Option<bool>,
}

/// The percentiles of `h` in `unit` (its values divided by `div`): p50, p90, p99, p99.9, max,
/// and the count.
pub fn quantiles(h: &hdrhistogram::Histogram<u64>, unit: &str, div: f64) -> String {
    let q = |p: f64| h.value_at_quantile(p) as f64 / div;
    format!(
        "p50 {:.2} {unit}, p90 {:.2} {unit}, p99 {:.2} {unit}, p99.9 {:.2} {unit}, max {:.2} {unit} ({} samples)",
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        h.max() as f64 / div,
        h.len()
    )
}

/// Writes `rows` as `target/mtf-bench/<name>.json` for `bench-table`.
pub fn save_rows(name: &str, rows: &[Row]) {
    let dir = results_dir();
    let _ = std::fs::create_dir_all(&dir);
    let rows: Vec<Value> = rows
        .iter()
        .map(
            |r| json!({"measure": r.measure, "result": r.result, "target": r.target, "met": r.met}),
        )
        .collect();
    let doc = json!({"when": shm_core::iso8601_ms((shm_core::now_ns() / 1_000_000) as i64), "rows": rows});
    if let Err(e) = std::fs::write(dir.join(format!("{name}.json")), doc.to_string()) {
        eprintln!("note: could not save the {name} results: {e}");
    }
}

/// Formats nanoseconds with a unit that keeps three significant digits.
pub fn human_ns(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

/// The request both HTTP benchmarks send: the latest 50 M1 candles of BTCUSDc.
pub const CANDLES_REQUEST: &[u8] =
    b"GET /streamer/candles/BTCUSDc/M1?limit=50 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// Sends `request` on a keep-alive connection and reads the whole response into `buf`;
/// returns the status and the body length. Panics if the server closes the connection.
pub fn keep_alive_request(
    stream: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> (u16, usize) {
    stream.write_all(request).expect("send the request");
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut chunk).expect("read the response");
        assert!(n > 0, "server closed");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).expect("ASCII head");
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .expect("a Content-Length");
            if buf.len() >= end + 4 + len {
                let status = head
                    .get(9..12)
                    .and_then(|c| c.parse().ok())
                    .expect("a status");
                return (status, len);
            }
        }
    }
}

/// Builds a release binary of the workspace (cargo's own up-to-date check makes it cheap
/// when nothing changed) and returns its path.
pub fn release_bin(package: &str, name: &str) -> PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--release", "-q", "-p", package, "--bin", name])
        .current_dir(&root)
        .status()
        .expect("run cargo");
    assert!(
        status.success(),
        "cargo build --release -p {package} --bin {name} failed"
    );
    root.join("target/release").join(name)
}

/// The release `mtf-streamer`.
pub fn release_streamer() -> PathBuf {
    release_bin("streamer-bin", "mtf-streamer")
}
