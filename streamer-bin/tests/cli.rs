//! The `mtf-streamer` binary as an operator runs it.
// Some tests here are Unix-only (marked): their helpers go unused on Windows.
#![cfg_attr(not(unix), allow(unused))]

use std::time::{Duration, Instant};

use mtf_tests::{ChildGuard, TempSegment};
use shm_core::{Liveness, Reader, WriterState};

const BIN: &str = env!("CARGO_BIN_EXE_mtf-streamer");

fn wait_running(seg: &TempSegment) -> Reader {
    mtf_tests::wait_for_running(&seg.path)
}

// Unix only: stops the child with SIGTERM, which Windows has not (ChildGuard::stop).
#[cfg(unix)]
#[test]
fn sigterm_stops_cleanly_and_leaves_the_segment_readable() {
    let seg = TempSegment::new("sigterm");
    // The original system's config file, as it is.
    let config = std::env::temp_dir().join(format!("mtf-test-config-{}.json", std::process::id()));
    std::fs::write(
        &config,
        r#"{"symbols": ["BTCUSDc", "EURUSDc"], "buffer_sizes": {"M1": 1440, "M5": 300, "M15": 150, "M30": 100, "H1": 100, "H4": 50},
            "refresh_intervals": {"M1": 60}, "enable_database": true, "db_path": "x.db", "retention_days": 30,
            "max_memory_mb": 512, "max_db_size_mb": 1024, "batch_write_size": 100}"#,
    )
    .unwrap();
    let file = seg.file();
    let child = ChildGuard::spawn(
        BIN,
        &[
            "--config",
            config.to_str().unwrap(),
            "--no-http",
            "--segment-path",
            file.to_str().unwrap(),
            "--tick-rate",
            "100",
        ],
    );
    let reader = wait_running(&seg);
    assert_eq!(
        reader.layout().symbols().collect::<Vec<_>>(),
        ["BTCUSDc", "EURUSDc"]
    );
    // Live ticks arrive.
    let start = Instant::now();
    while reader
        .status()
        .counters
        .get(shm_core::Counter::TicksProcessed)
        < 20
    {
        assert!(start.elapsed() < Duration::from_secs(10), "no ticks");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.sigterm();
    let (status, stdout, stderr) = child
        .wait_for(Duration::from_secs(10))
        .expect("exits after SIGTERM");
    let _ = std::fs::remove_file(&config);
    assert!(status.success(), "{status}: {stderr}");
    assert!(stdout.contains("stopped:"), "{stdout}");
    // One warning per original field that does not apply.
    for key in [
        "refresh_intervals",
        "enable_database",
        "db_path",
        "retention_days",
        "max_db_size_mb",
        "batch_write_size",
    ] {
        assert_eq!(
            stderr.matches(&format!("`{key}`")).count(),
            1,
            "{key}: {stderr}"
        );
    }
    let st = reader.status();
    assert_eq!(
        (st.liveness, st.writer_state),
        (Liveness::Stopped, Some(WriterState::Stopped))
    );
    assert!(file.exists(), "the segment stays");
    let mut candles = Vec::new();
    reader
        .ring("BTCUSDc", shm_core::Timeframe::M1)
        .unwrap()
        .read_last(1440, &mut candles)
        .unwrap();
    assert!(
        candles.len() >= 1440,
        "the rings stay full: {}",
        candles.len()
    );
}

#[test]
fn inspect_reports_liveness_and_every_ring() {
    let seg = TempSegment::new("inspect");
    let file = seg.file();
    let _child = ChildGuard::spawn(
        BIN,
        &[
            "--no-http",
            "--segment-path",
            file.to_str().unwrap(),
            "--symbols",
            "XAUUSDc",
        ],
    );
    wait_running(&seg);
    let out = std::process::Command::new(BIN)
        .args(["inspect", "--segment-path", file.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("writer     alive"), "{text}");
    for tf in ["M1", "M5", "M15", "M30", "H1", "H4", "D1"] {
        assert!(text.contains(&format!("XAUUSDc {tf} ")), "{tf}: {text}");
    }
    assert!(
        text.contains("10080/10080 +1"),
        "M1 full, and the forming candle beside it: {text}"
    );
    // The depth held: the M1 ring's oldest bar is a week (10,080 bars) before its newest.
    let m1 = text.lines().find(|l| l.starts_with("XAUUSDc M1 ")).unwrap();
    let minutes: Vec<i64> = m1
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter_map(|w| {
            let (d, t) = (w[0], w[1]);
            let date: Vec<i64> = d.split('-').filter_map(|x| x.parse().ok()).collect();
            let time: Vec<i64> = t.split(':').filter_map(|x| x.parse().ok()).collect();
            (date.len() == 3 && time.len() == 3).then(|| {
                let days = shm_core::days_from_civil(date[0], date[1] as u32, date[2] as u32);
                days * 1440 + time[0] * 60 + time[1]
            })
        })
        .collect();
    assert_eq!(minutes.len(), 2, "oldest and newest bar: {m1}");
    assert_eq!(minutes[1] - minutes[0], 10_080, "{m1}");
}

#[test]
fn bad_configuration_fails_with_the_field_named() {
    let seg = TempSegment::new("badcfg");
    let file = seg.file();
    for (args, field) in [
        (vec!["--symbols", "BTC/USD"], "--symbols"),
        (vec!["--buffer", "M1=0"], "--buffer"),
        (vec!["--server-offset", "+99:00"], "--server-offset"),
        (vec!["--segment-mode", "0999"], "--segment-mode"),
    ] {
        let mut all = vec!["--no-http", "--segment-path", file.to_str().unwrap()];
        all.extend(args);
        let out = std::process::Command::new(BIN).args(&all).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&format!("`{field}`")), "{field}: {stderr}");
        assert!(!file.exists(), "nothing was created");
    }
}

#[test]
fn a_second_streamer_on_the_same_segment_names_the_first_ones_pid() {
    let seg = TempSegment::new("second");
    let file = seg.file();
    let first = ChildGuard::spawn(
        BIN,
        &["--no-http", "--segment-path", file.to_str().unwrap()],
    );
    wait_running(&seg);
    let pid = first.0.as_ref().unwrap().id();
    let out = std::process::Command::new(BIN)
        .args(["--no-http", "--segment-path", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains(&format!("pid {pid}")), "{stderr}");
}

#[test]
fn tail_prints_history_then_each_change_until_stopped() {
    use shm_core::{Candle, Layout, Timeframe, Writer};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let seg = TempSegment::new("tail");
    let mut layout = Layout::new();
    layout.add_ring("EURUSD", Timeframe::M1, 50).unwrap();
    let mut w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    let m1 = w.ring("EURUSD", Timeframe::M1).unwrap();
    for k in 0..10 {
        w.push_closed(m1, &Candle::flat(k * 60, 1.0 + k as f64 / 100.0));
    }
    w.update_forming(m1, &Candle::flat(600, 1.5));
    w.set_running();

    let out = Shared(Arc::new(Mutex::new(Vec::new())));
    let stop = Arc::new(AtomicBool::new(false));
    let text = || String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let tail = {
        let (path, stop, mut sink) = (seg.path.clone(), Arc::clone(&stop), out.clone());
        std::thread::spawn(move || {
            streamer_bin::ops::tail(&path, "EURUSD", Timeframe::M1, &stop, &mut sink)
        })
    };
    let wait_for = |needle: &str| out.wait_for(needle);
    wait_for("forming");
    w.roll(m1, &Candle::flat(600, 1.5), Some(&Candle::flat(660, 1.75)));
    wait_for("C 1.75");
    stop.store(true, Ordering::Relaxed);
    tail.join().unwrap().unwrap();
    let lines: Vec<String> = text().lines().map(str::to_owned).collect();
    assert_eq!(lines[0], "# writer alive");
    // Five closed candles of history, then the forming one, then the roll: closed 00:10, forming 00:11.
    assert!(
        lines[1].starts_with("1970-01-01 00:05:00") && lines[1].ends_with("closed"),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("1970-01-01 00:10:00  O 1.5") && l.ends_with("closed")),
        "{lines:#?}"
    );
    assert!(
        lines.last().unwrap().starts_with("1970-01-01 00:11:00")
            && lines.last().unwrap().ends_with("forming"),
        "{lines:#?}"
    );
    // An unknown ring is an error that lists what there is.
    let err = streamer_bin::ops::tail(
        &seg.path,
        "EURUSD",
        Timeframe::H1,
        &stop,
        &mut std::io::sink(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("has: EURUSD M1"), "{err}");
}

#[test]
fn a_busy_default_http_port_turns_the_api_off_but_a_requested_one_is_an_error() {
    use std::sync::atomic::AtomicBool;
    use streamer_bin::config::{Config, HttpBind};

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let seg = TempSegment::new("busyport");
    let mut config = Config {
        segment: seg.path.clone(),
        http: HttpBind::Default(taken.local_addr().unwrap()),
        ..Config::default()
    };
    // Not asked for (the default): the streamer runs without HTTP.
    let summary = streamer_bin::run(&config, &AtomicBool::new(true), &mut std::io::sink()).unwrap();
    assert!(summary.bars_closed > 0);
    // Asked for: a clear error that names the address.
    config.http = HttpBind::Asked(taken.local_addr().unwrap());
    let err = streamer_bin::run(&config, &AtomicBool::new(true), &mut std::io::sink()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&taken.local_addr().unwrap().to_string()),
        "{text}"
    );
    // ... and says who holds it (this test process; found in /proc, so on Linux only) and
    // what to do.
    #[cfg(target_os = "linux")]
    assert!(
        text.contains(&format!("by pid {}", std::process::id())),
        "{text}"
    );
    assert!(text.contains("--no-http"), "{text}");
}

/// Python that takes an OFD read lock (`F_OFD_SETLK`, 37) on the whole file named by argv[1],
/// reports whether it may open the writer's lock file beside it, then holds on.
const SQUATTER: &str = r#"
import fcntl, os, struct, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.fcntl(fd, 37, struct.pack("hhqqi4x", fcntl.F_RDLCK, 0, 0, 0, 0))
try:
    os.close(os.open(sys.argv[1] + ".lock", os.O_RDONLY))
    print("locked; lock file readable", flush=True)
except PermissionError:
    print("locked; lock file denied", flush=True)
time.sleep(60)
"#;

/// Kills a streamer on `file`, has `squatter` read-lock the segment, then starts a second
/// streamer on it: it must start, and readers must have said `gone` in between.
fn restart_past_a_squatter(
    seg: &TempSegment,
    squatter: &mut std::process::Command,
    once_running: impl FnOnce(&std::path::Path),
) -> String {
    let file = seg.file();
    let path = file.to_str().unwrap();
    let first = ChildGuard::spawn(
        BIN,
        &[
            "--no-http",
            "--segment-path",
            path,
            "--segment-mode",
            "0640",
        ],
    );
    let reader = wait_running(seg);
    once_running(&file);
    let mut child = first;
    let mut killed = child.0.take().unwrap();
    killed.kill().unwrap();
    killed.wait().unwrap();

    let mut squat = ChildGuard(Some(
        squatter
            .arg(path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the squatter"),
    ));
    let said = squat.first_line();
    assert!(said.starts_with("locked"), "squatter: {said:?}");
    assert_eq!(
        reader.status().liveness,
        Liveness::Gone,
        "a read lock must not make the dead writer look alive"
    );

    let second = ChildGuard::spawn(BIN, &["--no-http", "--segment-path", path]);
    let start = Instant::now();
    loop {
        let st = reader.status();
        if st.liveness == Liveness::Alive && st.writer_pid == second.0.as_ref().unwrap().id() {
            break;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let (_, out, err) = second.wait_for(Duration::from_secs(1)).unwrap_or_default();
            panic!("the second streamer did not start past the squatter: {out}{err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(second);
    said
}

#[test]
#[cfg_attr(
    windows,
    ignore = "the squatter is a Python program taking an OFD lock, a Linux lock"
)]
fn a_reader_holding_a_read_lock_cannot_keep_the_streamer_from_restarting() {
    if !mtf_tests::python3_available("the read-lock squatter of this test") {
        return;
    }
    let seg = TempSegment::new("squat");
    let said = restart_past_a_squatter(
        &seg,
        std::process::Command::new("python3").args(["-c", SQUATTER]),
        |_| {},
    );
    assert!(said.contains("lock file readable"), "same account: {said}");
}

// Unix only: runs the squatter as another account (setuid), as root.
#[cfg(unix)]
#[test]
fn a_read_lock_squatter_in_another_account_cannot_block_a_restart_nor_open_the_lock_file() {
    if !mtf_tests::running_as_root() {
        println!(
            "SKIPPED a_read_lock_squatter_in_another_account_...: running a process as another \
             account (nobody) needs root"
        );
        return;
    }
    // /usr/bin/python3, not a shim under root's home that `nobody` cannot reach.
    let python = std::path::Path::new("/usr/bin/python3");
    if !python.exists() {
        println!(
            "SKIPPED a_read_lock_squatter_in_another_account_...: /usr/bin/python3 is missing"
        );
        return;
    }
    use std::os::unix::process::CommandExt;
    let seg = TempSegment::new("squat-other");
    // The reader's account reads the segment through its group: the README's 0640 set-up.
    let mut cmd = std::process::Command::new(python);
    cmd.args(["-c", SQUATTER]).uid(65534).gid(65534);
    // The segment's group is nobody's, so that account reads it as the README's 0640 set-up
    // intends; the lock file stays 0600 and root's.
    let said = restart_past_a_squatter(&seg, &mut cmd, |file| {
        std::os::unix::fs::chown(file, None, Some(65534)).unwrap()
    });
    assert_eq!(said.trim(), "locked; lock file denied");
}

// Unix only: stops the child with SIGTERM, which Windows has not (ChildGuard::stop).
#[cfg(unix)]
#[test]
fn remove_refuses_a_running_writer_and_deletes_the_segment_after_it_stops() {
    let seg = TempSegment::new("remove");
    let file = seg.file();
    let path = file.to_str().unwrap();
    let writer = ChildGuard::spawn(BIN, &["--no-http", "--segment-path", path]);
    wait_running(&seg);
    let refused = std::process::Command::new(BIN)
        .args(["remove", "--segment-path", path])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(file.exists());
    writer.sigterm();
    writer.wait_for(Duration::from_secs(10)).expect("stops");
    let removed = std::process::Command::new(BIN)
        .args(["remove", "--segment-path", path])
        .output()
        .unwrap();
    assert!(removed.status.success(), "{removed:?}");
    assert!(!file.exists());
    assert!(!std::path::Path::new(&format!("{path}.lock")).exists());
}

#[test]
fn tail_ticks_prints_every_tick_once_in_order_as_it_arrives() {
    use shm_core::{Layout, Tick, Timeframe, Writer};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let seg = TempSegment::new("tail-ticks");
    let mut layout = Layout::new();
    layout.add_ring("EURUSD", Timeframe::M1, 10).unwrap();
    let mut w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    let sym = w.symbol("EURUSD").unwrap();
    let tick = |k: i64| Tick {
        time_msc: 1_700_000_000_000 + k * 100,
        bid: (110_000 + k) as f64 / 100_000.0,
        ask: 1.2,
        flags: shm_core::TICK_FLAG_BID,
        ..Tick::default()
    };
    for k in 0..8 {
        w.push_tick(sym, &tick(k)).unwrap();
    }
    w.set_running();

    let out = Shared(Arc::new(Mutex::new(Vec::new())));
    let stop = Arc::new(AtomicBool::new(false));
    let text = || String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let tail = {
        let (path, stop, mut sink) = (seg.path.clone(), Arc::clone(&stop), out.clone());
        std::thread::spawn(move || streamer_bin::ops::tail_ticks(&path, "EURUSD", &stop, &mut sink))
    };
    let wait_for = |needle: &str| out.wait_for(needle);
    wait_for("bid 1.10007");
    for k in 8..11 {
        w.push_tick(sym, &tick(k)).unwrap();
    }
    w.notify();
    wait_for("bid 1.1001 ");
    stop.store(true, Ordering::Relaxed);
    tail.join().unwrap().unwrap();
    let bids: Vec<String> = text()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split("  ").nth(1).unwrap().to_owned())
        .collect();
    // The newest five of the first eight, then the three new ones: each once, in order.
    assert_eq!(
        bids,
        [
            "bid 1.10003",
            "bid 1.10004",
            "bid 1.10005",
            "bid 1.10006",
            "bid 1.10007",
            "bid 1.10008",
            "bid 1.10009",
            "bid 1.1001"
        ]
    );
    assert!(text().contains("flags BID"), "{}", text());
    // A symbol the segment lacks: the error names the ones it has.
    let err = streamer_bin::ops::tail_ticks(&seg.path, "GBPUSD", &stop, &mut std::io::sink())
        .unwrap_err();
    assert!(err.to_string().contains("EURUSD"), "{err}");
}

/// A `Write` whose bytes a test can look at while `tail` writes to it from another thread.
#[derive(Clone)]
struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Shared {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// Waits until the text holds `needle` (polled every 10 ms, at most 30 s).
    fn wait_for(&self, needle: &str) {
        let start = Instant::now();
        while !self.text().contains(needle) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no {needle:?} in:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl std::io::Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
