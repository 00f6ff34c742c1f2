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
            // Relaxed: only uniqueness matters, which fetch_add gives at any ordering.
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
        // The segment and its writer lock file (`NAME.lock`).
        let _ = std::fs::remove_file(self.path.path());
        for extra in [".lock", ".wake"] {
            let mut file = self.path.path().as_os_str().to_owned();
            file.push(extra);
            let _ = std::fs::remove_file(file);
        }
        // The history store a streamer on it kept in its default place (for a named segment,
        // under ~/.local/share/mtf-candles): a test leaves nothing behind there either.
        let _ = std::fs::remove_dir_all(shm_core::default_history_dir(&self.path));
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

/// Whether this process runs as root (and so may run helpers as another account).
pub fn running_as_root() -> bool {
    #[cfg(unix)]
    return rustix::process::geteuid().is_root();
    #[cfg(not(unix))]
    return false;
}

/// A child process that is killed and reaped if the test ends before it does.
pub struct ChildGuard(pub Option<Child>);

/// Starts `command`. Under Wine (the Windows build's tests), `CreateProcess` now and then fails
/// with `ERROR_INTERNAL_ERROR` (1359) while the machine is loaded, before the program runs at
/// all; that one error is tried again, up to ten times, 100 ms apart. Every other error, and
/// every error elsewhere, is returned at once.
pub fn spawn(command: &mut Command) -> std::io::Result<std::process::Child> {
    let mut tries = 0;
    loop {
        match command.spawn() {
            Err(e) if cfg!(windows) && e.raw_os_error() == Some(1359) && tries < 10 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

impl ChildGuard {
    /// Spawns `program` with `args`, stdout and stderr captured.
    pub fn spawn(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> ChildGuard {
        let program = program.as_ref();
        let child = spawn(
            Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.to_string_lossy()));
        ChildGuard(Some(child))
    }

    /// The child's stdout, taken: it is read by the caller from now on.
    fn take_stdout(&mut self) -> std::process::ChildStdout {
        self.0
            .as_mut()
            .expect("running")
            .stdout
            .take()
            .expect("piped, and not taken yet")
    }

    /// The first line the child prints on stdout. The rest is read and dropped on a thread
    /// until the child ends: a closed pipe would make its next line an error (EPIPE), which
    /// is not what a test of anything else means to try.
    pub fn first_line(&mut self) -> String {
        use std::io::BufRead;
        let mut stdout = std::io::BufReader::new(self.take_stdout());
        let mut line = String::new();
        stdout.read_line(&mut line).expect("child output");
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        line
    }

    /// Waits up to `limit` for a line of the child's stdout that contains `text` (the other
    /// lines are read and dropped, until the child ends, as in [`first_line`]). Panics naming
    /// `text` after `limit`, or if the child's stdout ends first.
    ///
    /// [`first_line`]: ChildGuard::first_line
    pub fn wait_for_line(&mut self, text: &str, limit: Duration) -> String {
        use std::io::BufRead;
        let stdout = self.take_stdout();
        let (tx, rx) = std::sync::mpsc::channel();
        let wanted = text.to_owned();
        // The thread ends with the child's stdout (the guard kills the child at the latest).
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains(&wanted) {
                    let _ = tx.send(line);
                }
            }
        });
        rx.recv_timeout(limit).unwrap_or_else(|e| {
            panic!("no line with {text:?} from the child within {limit:?}: {e}")
        })
    }

    /// Asks the child to stop: SIGTERM on Unix. Windows has no signal to send another
    /// process (Ctrl-Break reaches only processes of the sender's console), so there the
    /// child is terminated; tests of a clean stop are Unix-only for that reason.
    pub fn stop(&mut self) {
        #[cfg(unix)]
        self.sigterm();
        #[cfg(not(unix))]
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
        }
    }

    /// Sends SIGTERM.
    #[cfg(unix)]
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

/// Waits until the segment at `path` opens and `ok` holds for its status; panics after `limit`
/// naming `what`.
pub fn wait_for_status(
    path: &shm_core::SegmentPath,
    what: &str,
    limit: Duration,
    ok: impl Fn(&shm_core::Status) -> bool,
) -> shm_core::Reader {
    let start = Instant::now();
    loop {
        if let Ok(r) = shm_core::Reader::open(path) {
            if ok(&r.status()) {
                return r;
            }
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until a writer has marked the segment running.
pub fn wait_for_running(path: &shm_core::SegmentPath) -> shm_core::Reader {
    wait_for_status(path, "the writer to run", Duration::from_secs(20), |s| {
        s.writer_state == Some(shm_core::WriterState::Running)
    })
}

/// Whether `python3` runs here. If not, says plainly that `what` is skipped.
pub fn python3_available(what: &str) -> bool {
    let ok = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    // A test that cannot run fails, saying why: a skip would pass unseen (cargo shows a
    // passing test's output to nobody). ./scripts/setup installs python3.
    assert!(
        ok,
        "python3 is not installed, so {what} cannot run: ./scripts/setup installs it"
    );
    ok
}

/// The project's Python, with numpy (the MetaTrader5 package's own dependency, so the stand-in
/// terminal's too): `MTF_PYTHON`, else the `.venv` that `./scripts/python-env` makes. Panics,
/// saying how to make it, where there is none: a test that needs it fails loudly, never skips.
pub fn project_python() -> PathBuf {
    if let Some(p) = std::env::var_os("MTF_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "NOT RUN: the stand-in terminal needs the project's Python with numpy, and {} does not \
         exist: run ./scripts/python-env (./scripts/test does), or set MTF_PYTHON",
        venv.display()
    );
    venv
}

/// Starts `gateway/mt5_gateway.py --backend csv` on 127.0.0.1:`port` (0 for any) serving
/// `data`, with `extra` arguments; returns it and the address it listens on.
pub fn spawn_csv_gateway(
    data: &std::path::Path,
    port: u16,
    extra: &[&str],
) -> (ChildGuard, String) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../gateway/mt5_gateway.py");
    let bind = format!("127.0.0.1:{port}");
    let mut args = vec![
        script.to_str().expect("utf-8 path"),
        "--backend",
        "csv",
        "--data",
    ];
    args.extend([data.to_str().expect("utf-8 path"), "--bind", &bind]);
    args.extend(extra);
    let mut gw = ChildGuard::spawn("python3", &args);
    let addr = listening_address(&mut gw);
    (gw, addr)
}

/// The address a gateway says it listens on, in its first line (`listening on HOST:PORT`).
pub fn listening_address(gw: &mut ChildGuard) -> String {
    let line = gw.first_line();
    line.trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("the gateway said {line:?}"))
        .to_owned()
}

/// The streamer `bin` fed by the MT5 gateway at `gateway` (`--source mt5`), writing `seg`,
/// without HTTP, with `extra` flags (`--symbols`, `--timeframes`, ...).
pub fn spawn_mt5_streamer(
    bin: &str,
    gateway: &str,
    seg: &TempSegment,
    extra: &[&str],
) -> ChildGuard {
    let path = seg.file();
    let mut args = vec![
        "--source",
        "mt5",
        "--gateway",
        gateway,
        "--no-http",
        "--segment-path",
        path.to_str().expect("a temporary path is UTF-8"),
    ];
    args.extend_from_slice(extra);
    ChildGuard::spawn(bin, &args)
}

/// Starts `gateway/mt5_gateway.py --backend metatrader5` on 127.0.0.1 (a free port) over the
/// stand-in terminal (`gateway/standin/MetaTrader5.py`, first on `PYTHONPATH`), configured by
/// `env` (`MT5_STANDIN_SYMBOLS`, ...), with `extra` arguments; returns it and its address.
/// The stand-in returns numpy arrays, as MetaQuotes' package does, so it runs in the
/// project's Python ([`project_python`]), which has numpy.
pub fn spawn_standin_gateway(env: &[(&str, &str)], extra: &[&str]) -> (ChildGuard, String) {
    let gateway = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../gateway");
    let script = gateway.join("mt5_gateway.py");
    let mut command = Command::new(project_python());
    command
        .args([
            script.to_str().expect("utf-8 path"),
            "--backend",
            "metatrader5",
            "--bind",
            "127.0.0.1:0",
        ])
        .args(extra)
        .env("PYTHONPATH", gateway.join("standin"))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut gw = ChildGuard(Some(command.spawn().expect("spawn python3")));
    let addr = listening_address(&mut gw);
    (gw, addr)
}

/// The path of a workspace binary (`mtf-streamer`, `mtf-shim`, `mtf-monitor`), built first
/// with the profile of the running test, so that a test of one package can spawn another's.
/// Built once per test process.
pub fn workspace_bin(name: &str) -> PathBuf {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(p) = built.get(name) {
        return p.clone();
    }
    // The test executable is target/<profile>/deps/<test>; binaries sit in target/<profile>.
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>/deps");
    let release = dir.file_name().is_some_and(|n| n == "release");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if cfg!(windows) {
        // Under Wine the test cannot run the Linux cargo that built it: the binaries are
        // built beforehand (`scripts/test-windows`).
        assert!(
            path.exists(),
            "{} was not built: run `cargo build --target x86_64-pc-windows-gnu --bins` first",
            path.display()
        );
        built.insert(name.to_owned(), path.clone());
        return path;
    }
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args(["build", "--quiet", "--bin", name]);
    if release {
        cargo.arg("--release");
    }
    let status = cargo.status().expect("run cargo build");
    assert!(status.success(), "cargo build --bin {name} failed");
    assert!(path.exists(), "{} was not built", path.display());
    built.insert(name.to_owned(), path.clone());
    path
}

/// A loopback port that was free a moment ago (bound, noted, closed): for a server a test
/// starts, or as an address where nothing listens.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// Starts `mtf-shim` for the segment file `segment` on a free loopback port; returns it and
/// the `HOST:PORT` it serves on (read from its first line).
pub fn spawn_shim(segment: &std::path::Path) -> (ChildGuard, String) {
    let file = segment.to_str().expect("utf-8 path");
    let mut shim = ChildGuard::spawn(
        workspace_bin("mtf-shim"),
        &["--segment-path", file, "--bind", "127.0.0.1:0"],
    );
    let line = shim.first_line();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("the shim said {line:?}"))
        .to_owned();
    (shim, addr)
}

/// A `nats-server` on `port` of the loopback, once it accepts connections; `Err` says why not
/// (not installed: `./scripts/setup` installs Debian's `nats-server`).
pub fn spawn_nats_server(port: u16) -> Result<ChildGuard, String> {
    Command::new("nats-server")
        .arg("--version")
        .output()
        .map_err(|e| format!("nats-server is not installed ({e}); ./scripts/setup installs it"))?;
    let p = port.to_string();
    let child = ChildGuard::spawn("nats-server", &["-a", "127.0.0.1", "-p", &p]);
    let until = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > until {
            return Err(format!("nats-server did not start on port {port}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

/// An `mtf-mirror` (the binary at `bin`) rebuilding segment `source` of the NATS server at
/// `url` into `segment`.
pub fn spawn_mirror(
    bin: &std::path::Path,
    url: &str,
    source: &str,
    segment: &shm_core::SegmentPath,
) -> ChildGuard {
    ChildGuard::spawn(
        bin,
        &[
            "--nats",
            url,
            "--source-segment",
            source,
            "--segment-path",
            segment.path().to_str().expect("utf-8 path"),
        ],
    )
}

/// A small deterministic generator for randomized tests (a 64-bit LCG; fixed, so a failure
/// replays exactly).
pub struct Lcg(pub u64);

impl Lcg {
    /// The next 31 random bits.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    /// A random element of `items`.
    pub fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.next() as usize % items.len()]
    }
}

/// A system account made for one test and deleted when dropped, even when the test panics:
/// the "other account" of the owner tests (`useradd --system`, no home, no login shell).
pub struct TestAccount {
    /// The account's name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
}

impl TestAccount {
    /// Creates a fresh account, or says why it cannot (not root, no `useradd`); the caller
    /// then prints that it did not run, with the reason.
    pub fn create() -> Result<TestAccount, String> {
        static N: AtomicU32 = AtomicU32::new(0);
        if !running_as_root() {
            return Err("creating a test account needs root".into());
        }
        // Relaxed: only uniqueness matters.
        let name = format!(
            "mtft{}x{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        // useradd takes a lock on /etc/passwd and gives up at once if another test holds it
        // (exit 10): try again until it answers otherwise, within a bound.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                ])
                .arg(&name)
                .output()
                .map_err(|e| format!("cannot run useradd: {e}"))?;
            if out.status.success() {
                break;
            }
            if out.status.code() != Some(10) || Instant::now() > deadline {
                return Err(format!(
                    "useradd {name} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // From here on, dropping `account` deletes it.
        let mut account = TestAccount { name, uid: 0 };
        let out = Command::new("id")
            .args(["-u", &account.name])
            .output()
            .map_err(|e| format!("cannot run id: {e}"))?;
        account.uid = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| format!("id -u {} said nothing useful", account.name))?;
        Ok(account)
    }
}

impl Drop for TestAccount {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Ok(out) = Command::new("userdel").arg(&self.name).output() {
            // 10: /etc/passwd locked by another test's useradd; try again.
            if out.status.code() != Some(10) || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The body of `GET path` from the HTTP server at `addr` (`HOST:PORT`), read to the end of
/// the connection; panics on a status other than 200.
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the HTTP API");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the answer");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "GET {path}: {head}\n{body}"
    );
    body.to_owned()
}

/// Tick number `k` of the tick stress tests (`shm-stress ticks`): every field follows from `k`
/// (its `volume`), four ticks share each millisecond, so a torn record or a reordered pair
/// shows.
pub fn derived_tick(k: u64) -> shm_core::Tick {
    shm_core::Tick {
        time_msc: 1_600_000_000_000 + (k / 4) as i64,
        bid: 1.0 + k as f64,
        ask: 1.5 + k as f64,
        last: 0.0,
        volume: k,
        volume_real: k as f64 * 0.25,
        flags: if k.is_multiple_of(2) { 6 } else { 2 },
        published_ns: 0,
    }
}
