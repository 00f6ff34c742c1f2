//! The reference Python reader (python/tests/layout_reader.py), written from docs/LAYOUT.md
//! alone with the standard library, agrees with the
//! Rust reader on the same segment: proof that the document is enough to write a reader.
//!
//! Unix only: the test drives the Linux Python, and its hostile-file cases (a file
//! truncated under the reader, a FIFO) are Unix objects.
#![cfg(unix)]

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use mtf_tests::{derived, python3_available, TempSegment};
use serde_json::Value;
use shm_core::{Candle, Counter, FeedState, Layout, Reader, Timeframe, Writer};

fn script() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../python/tests/layout_reader.py")
        .to_string_lossy()
        .into_owned()
}

fn python(seg: &TempSegment, symbol: &str, tf: &str, n: usize) -> Result<Value, String> {
    let out = Command::new("python3")
        .args([
            &script(),
            symbol,
            tf,
            &n.to_string(),
            "--segment",
            seg.file().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn as_json(c: &Candle) -> Value {
    serde_json::json!({
        "time": c.time, "open": c.open, "high": c.high, "low": c.low, "close": c.close, "volume": c.tick_volume,
        "spread": c.spread, "real_volume": c.real_volume, "complete": !c.forming, "repaired": c.repaired,
    })
}

#[test]
fn the_python_reader_matches_the_rust_reader() {
    if !python3_available("the Python reader test") {
        return;
    }
    let seg = TempSegment::new("pyreader");
    let mut layout = Layout::new();
    layout.add_ring("BTCUSDc", Timeframe::M1, 10).unwrap();
    layout.add_ring("BTCUSDc", Timeframe::H1, 5).unwrap();
    layout.add_ring("XAUUSD.m#", Timeframe::D1, 3).unwrap();
    let mut w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    let m1 = w.ring("BTCUSDc", Timeframe::M1).unwrap();
    for k in 1..=15 {
        // Negative spreads and odd values exercise the encoding.
        w.push_closed(
            m1,
            &Candle {
                spread: -(k as i32),
                ..derived(k)
            },
        );
    }
    w.update_forming(m1, &derived(16));
    let d1 = w.ring("XAUUSD.m#", Timeframe::D1).unwrap();
    w.push_closed(d1, &Candle::flat(86_400, 4000.5));
    w.add(Counter::TicksProcessed, 77);
    w.set_feed_state(FeedState::Live);
    w.set_server_time_offset(-3600);
    w.set_running();

    let reader = Reader::open(&seg.path).unwrap();
    let mut rust = Vec::new();
    for (symbol, tf, n) in [
        ("BTCUSDc", Timeframe::M1, 1),
        ("BTCUSDc", Timeframe::M1, 5),
        ("BTCUSDc", Timeframe::M1, 11),
        ("BTCUSDc", Timeframe::M1, 50),
        ("BTCUSDc", Timeframe::H1, 5),
        ("XAUUSD.m#", Timeframe::D1, 3),
    ] {
        reader
            .ring(symbol, tf)
            .unwrap()
            .read_last(n, &mut rust)
            .unwrap();
        let py = python(&seg, symbol, tf.name(), n).unwrap();
        let want: Vec<Value> = rust.iter().map(as_json).collect();
        assert_eq!(
            py["candles"].as_array().unwrap(),
            &want,
            "{symbol} {tf} {n}"
        );
    }
    let py = python(&seg, "BTCUSDc", "M1", 1).unwrap();
    let st = &py["status"];
    assert_eq!(st["generation"], 1);
    assert_eq!(st["writer_pid"], std::process::id());
    assert_eq!(st["writer_state"], "running");
    assert_eq!(st["feed_state"], "live");
    assert_eq!(st["server_time_offset_s"], -3600);
    assert_eq!(st["counters"]["ticks_processed"], 77);
    assert_eq!(
        py["rings"],
        serde_json::json!([
            ["BTCUSDc", "M1", 10],
            ["BTCUSDc", "H1", 5],
            ["XAUUSD.m#", "D1", 3]
        ])
    );
}

#[test]
fn the_python_reader_refuses_a_corrupt_segment_with_the_reason() {
    if !python3_available("the Python reader test") {
        return;
    }
    let seg = TempSegment::new("pyreader-bad");
    let mut layout = Layout::new();
    layout.add_ring("EURUSD", Timeframe::M1, 10).unwrap();
    drop(Writer::create(&seg.path, &layout, &Default::default()).unwrap());
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(seg.file())
        .unwrap();
    // Capacity 10 -> 11 in the directory: the computed hash (and offsets) no longer match.
    f.write_at(&11u64.to_le_bytes(), 512 + 64 + 16).unwrap();
    let err = python(&seg, "EURUSD", "M1", 1).unwrap_err();
    assert!(
        err.contains("layout hash") || err.contains("offsets differ from the layout"),
        "{err}"
    );
    f.write_at(b"NOTCANDL", 0).unwrap();
    let err = python(&seg, "EURUSD", "M1", 1).unwrap_err();
    assert!(err.contains("not a candle segment"), "{err}");
}

/// Runs `code` in python3 with the reader importable and `PATH` set to the segment file;
/// returns stdout, or stderr on failure. At most 10 s: a reader that hangs fails the test.
fn python_code(seg: &std::path::Path, code: &str) -> Result<String, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../python/tests");
    let child = Command::new("timeout")
        .args(["10", "python3", "-c", code])
        .env("PYTHONPATH", dir)
        .env("SEGMENT", seg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).trim().to_owned();
    if out.status.success() {
        Ok(text(out.stdout))
    } else {
        Err(text(out.stderr))
    }
}

const LIVENESS: &str =
    "import os, layout_reader as m; print(m.Segment(os.environ['SEGMENT']).status()['liveness'])";

#[test]
fn the_python_reader_tells_alive_gone_and_stopped_apart_as_layout_md_says() {
    if !python3_available("the Python reader test") {
        return;
    }
    let seg = TempSegment::new("pyreader-live");
    let mut layout = Layout::new();
    layout.add_ring("EURUSD", Timeframe::M1, 10).unwrap();
    let mut w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    w.set_running();
    assert_eq!(python_code(&seg.file(), LIVENESS).unwrap(), "alive");
    drop(w);
    assert_eq!(python_code(&seg.file(), LIVENESS).unwrap(), "stopped");
    // A writer that died: state still running, the lock free.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(seg.file())
        .unwrap();
    f.write_at(&1u64.to_le_bytes(), 112).unwrap();
    assert_eq!(python_code(&seg.file(), LIVENESS).unwrap(), "gone");
}

#[test]
fn the_python_reader_refuses_fifos_foreign_writable_files_bad_names_and_damaged_records() {
    if !python3_available("the Python reader test") {
        return;
    }
    let fifo = TempSegment::new("pyreader-fifo");
    assert!(Command::new("mkfifo")
        .arg(fifo.file())
        .status()
        .unwrap()
        .success());
    let err = python_code(&fifo.file(), LIVENESS).unwrap_err();
    assert!(err.contains("not a regular file"), "{err}");

    let seg = TempSegment::new("pyreader-damaged");
    let mut layout = Layout::new();
    layout.add_ring("EURUSD", Timeframe::M1, 10).unwrap();
    let mut w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    let m1 = w.ring("EURUSD", Timeframe::M1).unwrap();
    w.push_closed(m1, &Candle::flat(60, f64::INFINITY));
    drop(w);
    let read = "import os, layout_reader as m; print(m.Segment(os.environ['SEGMENT']).read_last('EURUSD', 'M1', 5))";
    let err = python_code(&seg.file(), read).unwrap_err();
    assert!(
        err.contains("DamagedRecord") && err.contains("not finite"),
        "{err}"
    );

    // A symbol name that is not UTF-8: an error that says so, no traceback of a decoder.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(seg.file())
        .unwrap();
    f.write_at(&[0xFF, 0xFE], 512).unwrap();
    let err = python_code(&seg.file(), LIVENESS).unwrap_err();
    assert!(err.contains("invalid name"), "{err}");

    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(seg.file(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = python_code(&seg.file(), LIVENESS).unwrap_err();
    assert!(err.contains("writable by its group or by others"), "{err}");
}
