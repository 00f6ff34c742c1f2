//! The segment's life cycle as users meet it: create, read, second writer, stop, warm restart,
//! replacement, permissions, and every kind of bad file.

use std::fs;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use shm_core::{
    Candle, Counter, CreateError, FeedState, Layout, Liveness, OpenError, Reader, SegmentPath,
    Start, Timeframe, Writer, WriterOptions, WriterState,
};

/// A uniquely named segment in /dev/shm, removed on drop even if the test panics.
struct TempSegment {
    path: SegmentPath,
}

impl TempSegment {
    fn new(tag: &str) -> TempSegment {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "shm-core-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        TempSegment {
            path: SegmentPath::named(&name).unwrap(),
        }
    }

    fn file(&self) -> PathBuf {
        self.path.path().to_owned()
    }
}

impl Drop for TempSegment {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.path.path());
    }
}

/// Files beside the segment whose names start with its name (temporary files of a build).
fn leftovers(seg: &TempSegment) -> Vec<std::ffi::OsString> {
    let stem = seg.file().file_name().unwrap().to_owned();
    let dir = seg.file().parent().unwrap().to_owned();
    fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n != &stem && n.to_string_lossy().starts_with(&*stem.to_string_lossy()))
        .collect()
}

fn layout(symbols: &[&str], m1_capacity: u32) -> Layout {
    let mut l = Layout::new();
    for s in symbols {
        l.add_ring(s, Timeframe::M1, m1_capacity).unwrap();
        l.add_ring(s, Timeframe::H1, 10).unwrap();
    }
    l
}

fn candle(i: i64) -> Candle {
    Candle {
        tick_volume: i as u64,
        ..Candle::flat(i * 60, 100.0 + i as f64)
    }
}

fn closes(reader: &Reader, symbol: &str, n: usize) -> Vec<(i64, bool)> {
    let mut out = Vec::new();
    reader
        .ring(symbol, Timeframe::M1)
        .unwrap()
        .read_last(n, &mut out)
        .unwrap();
    out.iter().map(|c| (c.time / 60, c.forming)).collect()
}

#[test]
fn reader_sees_what_the_writer_published() {
    let seg = TempSegment::new("basic");
    let mut w = Writer::create(
        &seg.path,
        &layout(&["EURUSD", "XAUUSDc"], 5),
        &Default::default(),
    )
    .unwrap();
    assert_eq!((w.start(), w.generation()), (Start::Fresh, 1));
    let m1 = w.ring("EURUSD", Timeframe::M1).unwrap();
    for i in 0..7 {
        w.push_closed(m1, &candle(i));
    }
    w.update_forming(m1, &candle(7));
    let sym = w.symbol("EURUSD").unwrap();
    w.heartbeat();
    w.record_tick(sym, 7 * 60_000 + 5, 1.1, 1.2);
    w.add(Counter::TicksProcessed, 3);
    w.set_feed_state(FeedState::Live);
    w.set_server_time_offset(7200);

    let r = Reader::open(&seg.path).unwrap();
    let status = r.status();
    assert_eq!(status.writer_state, Some(WriterState::Initializing));
    assert_eq!(status.liveness, Liveness::Alive);
    w.set_running();
    let status = r.status();
    assert_eq!(status.writer_state, Some(WriterState::Running));
    assert_eq!(status.writer_pid, std::process::id());
    assert_eq!(status.generation, 1);
    assert_eq!(status.counters.get(Counter::TicksProcessed), 3);
    assert_eq!(status.feed_state, Some(FeedState::Live));
    assert_eq!(status.server_time_offset_s, 7200);
    assert!(status.last_update_ns > 0);

    // Capacity 5: the two oldest closed candles are gone; the forming one is newest.
    assert_eq!(
        closes(&r, "EURUSD", 100),
        [
            (2, false),
            (3, false),
            (4, false),
            (5, false),
            (6, false),
            (7, true)
        ]
    );
    assert_eq!(closes(&r, "EURUSD", 3), [(5, false), (6, false), (7, true)]);
    assert_eq!(closes(&r, "EURUSD", 0), []);
    assert_eq!(closes(&r, "XAUUSDc", 10), []);

    let ring = r.ring("EURUSD", Timeframe::M1).unwrap();
    let mut closed = Vec::new();
    let forming = ring.snapshot(2, &mut closed).unwrap();
    assert_eq!(closed, [candle(5), candle(6)]);
    assert_eq!(
        forming,
        Some(Candle {
            forming: true,
            ..candle(7)
        })
    );
    let stats = ring.stats().unwrap();
    assert_eq!(
        (stats.closed_total, stats.buffered, stats.newest_time),
        (7, 6, Some(420))
    );
    let tick = r.last_tick("EURUSD").unwrap();
    assert_eq!(
        (tick.server_time_ms, tick.bid, tick.ask),
        (420_005, 1.1, 1.2)
    );
    assert_eq!(r.last_tick("XAUUSDc"), None);
    assert!(r.ring("EURUSD", Timeframe::M5).is_none());
    assert!(
        r.ring("eurusd", Timeframe::M1).is_none(),
        "symbols match exactly"
    );
    assert_eq!(
        r.layout().symbols().collect::<Vec<_>>(),
        ["EURUSD", "XAUUSDc"]
    );
}

#[test]
fn second_writer_is_refused_with_the_holders_pid() {
    let seg = TempSegment::new("second");
    let l = layout(&["EURUSD"], 5);
    let _w = Writer::create(&seg.path, &l, &Default::default()).unwrap();
    match Writer::create(&seg.path, &l, &Default::default()) {
        Err(e @ CreateError::AlreadyRunning { pid: Some(pid), .. }) => {
            assert_eq!(pid, std::process::id());
            assert!(e.to_string().contains(&format!("pid {pid}")), "{e}");
        }
        other => panic!("expected AlreadyRunning, got {other:?}"),
    }
    // A different layout is refused too: the lock is checked before anything is replaced.
    assert!(matches!(
        Writer::create(&seg.path, &layout(&["GBPUSD"], 5), &Default::default()),
        Err(CreateError::AlreadyRunning { .. })
    ));
}

#[test]
fn stop_keeps_the_file_and_a_warm_restart_keeps_the_candles() {
    let seg = TempSegment::new("warm");
    let l = layout(&["EURUSD"], 50);
    let mut w = Writer::create(&seg.path, &l, &Default::default()).unwrap();
    let m1 = w.ring("EURUSD", Timeframe::M1).unwrap();
    for i in 0..10 {
        w.push_closed(m1, &candle(i));
    }
    w.update_forming(m1, &candle(10));
    w.set_running();
    let r = Reader::open(&seg.path).unwrap();
    w.stop();

    assert!(seg.file().exists());
    assert_eq!(r.status().liveness, Liveness::Stopped);
    assert_eq!(closes(&r, "EURUSD", 2), [(9, false), (10, true)]);

    let mut w = Writer::create(&seg.path, &l, &Default::default()).unwrap();
    assert_eq!(w.start(), Start::Warm { repaired: 0 });
    assert_eq!(w.generation(), 2);
    let m1 = w.ring("EURUSD", Timeframe::M1).unwrap();
    assert_eq!(w.last_closed(m1), Some(candle(9)));
    assert_eq!(
        w.forming(m1),
        Some(Candle {
            forming: true,
            ..candle(10)
        })
    );
    assert_eq!(w.closed_total(m1), 10);
    w.set_running();
    // The old mapping follows: same file, new generation.
    let status = r.status();
    assert_eq!((status.generation, status.liveness), (2, Liveness::Alive));
    w.roll(m1, &candle(10), Some(&candle(11)));
    assert_eq!(
        closes(&r, "EURUSD", 3),
        [(9, false), (10, false), (11, true)]
    );
}

#[test]
fn a_new_layout_replaces_the_file_and_readers_follow_on_refresh() {
    let seg = TempSegment::new("replace");
    let mut w = Writer::create(&seg.path, &layout(&["EURUSD"], 5), &Default::default()).unwrap();
    let m1 = w.ring("EURUSD", Timeframe::M1).unwrap();
    w.push_closed(m1, &candle(1));
    drop(w);
    let mut r = Reader::open(&seg.path).unwrap();
    assert!(!r.refresh().unwrap(), "nothing changed yet");

    let w = Writer::create(
        &seg.path,
        &layout(&["EURUSD", "GBPUSD"], 8),
        &Default::default(),
    )
    .unwrap();
    assert_eq!((w.start(), w.generation()), (Start::Replaced, 2));
    // The old file was marked before the rename, so the old mapping says so.
    assert_eq!(r.status().liveness, Liveness::Replaced);
    assert!(r.refresh().unwrap());
    assert_eq!(
        r.layout().symbols().collect::<Vec<_>>(),
        ["EURUSD", "GBPUSD"]
    );
    assert_eq!(r.ring("EURUSD", Timeframe::M1).unwrap().capacity(), 8);
    assert_eq!(r.status().liveness, Liveness::Alive);
    assert_eq!(closes(&r, "EURUSD", 5), [], "a new layout starts empty");
    // No temporary file is left beside the segment.
    assert_eq!(leftovers(&seg), Vec::<std::ffi::OsString>::new());
}

#[test]
fn mode_is_set_at_creation_whatever_the_umask() {
    let seg = TempSegment::new("mode");
    let _w = Writer::create(&seg.path, &layout(&["EURUSD"], 5), &Default::default()).unwrap();
    assert_eq!(
        fs::metadata(seg.file()).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let seg = TempSegment::new("mode-group");
    let _w = Writer::create(
        &seg.path,
        &layout(&["EURUSD"], 5),
        &WriterOptions { mode: 0o660 },
    )
    .unwrap();
    assert_eq!(
        fs::metadata(seg.file()).unwrap().permissions().mode() & 0o777,
        0o660
    );
}

/// Access modes (`O_ACCMODE` bits of `flags` in /proc/self/fdinfo) of this process's open
/// descriptors of `file`'s inode.
fn access_modes(file: &std::path::Path) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let target = fs::metadata(file).unwrap();
    let mut modes = Vec::new();
    for entry in fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok())
    {
        // metadata() follows the fd's magic link to the open inode, even an unlinked name.
        match fs::metadata(entry.path()) {
            Ok(m) if m.dev() == target.dev() && m.ino() == target.ino() => {}
            _ => continue,
        }
        let info = fs::read_to_string(format!(
            "/proc/self/fdinfo/{}",
            entry.file_name().to_string_lossy()
        ));
        if let Some(flags) = info.ok().and_then(|i| {
            i.lines()
                .find_map(|l| l.strip_prefix("flags:").map(|f| f.trim().to_owned()))
        }) {
            modes.push(u32::from_str_radix(&flags, 8).unwrap() & 0o3);
        }
    }
    modes.sort();
    modes
}

#[test]
fn readers_open_the_segment_read_only() {
    let seg = TempSegment::new("readonly");
    let _w = Writer::create(&seg.path, &layout(&["EURUSD"], 5), &Default::default()).unwrap();
    let before = access_modes(&seg.file());
    assert_eq!(before, [0o2], "the writer's descriptor is read-write");
    let r = Reader::open(&seg.path).unwrap();
    assert_eq!(
        access_modes(&seg.file()),
        [0o0, 0o2],
        "the reader added one read-only descriptor"
    );
    assert_eq!(r.status().liveness, Liveness::Alive);
}

/// Writes a valid segment, then corrupts one header word of it.
fn corrupted(tag: &str, offset: u64, value: u64) -> (TempSegment, OpenError) {
    let seg = TempSegment::new(tag);
    drop(Writer::create(&seg.path, &layout(&["EURUSD"], 5), &Default::default()).unwrap());
    let f = fs::OpenOptions::new().write(true).open(seg.file()).unwrap();
    f.write_at(&value.to_le_bytes(), offset).unwrap();
    let err = Reader::open(&seg.path).unwrap_err();
    (seg, err)
}

#[test]
fn bad_segments_get_typed_errors_saying_found_and_expected() {
    let (_s, e) = corrupted("magic", 0, u64::from_le_bytes(*b"NOTCANDL"));
    assert!(matches!(e, OpenError::BadMagic { .. }), "{e:?}");
    assert!(e.to_string().contains("NOTCANDL"), "{e}");

    let (_s, e) = corrupted("version", 8, 2);
    assert!(
        matches!(
            e,
            OpenError::VersionMismatch {
                found: 2,
                expected: 1,
                ..
            }
        ),
        "{e:?}"
    );

    let (_s, e) = corrupted("init", 8, 0);
    assert!(matches!(e, OpenError::Initializing { .. }), "{e:?}");

    let (_s, e) = corrupted("hash", 16, 12345);
    assert!(
        matches!(e, OpenError::LayoutHashMismatch { found: 12345, .. }),
        "{e:?}"
    );

    // A directory entry claiming another capacity changes the computed hash.
    let (_s, e) = corrupted("capacity", 512 + 64 + 16, 6);
    assert!(matches!(e, OpenError::LayoutHashMismatch { .. }), "{e:?}");

    let (_s, e) = corrupted("tf", 512 + 64 + 8, 2);
    assert!(matches!(e, OpenError::Corrupt { .. }), "{e:?}");

    let (_s, e) = corrupted("rings", 48, 0);
    assert!(matches!(e, OpenError::Corrupt { .. }), "{e:?}");
}

#[test]
fn truncated_and_missing_files_are_errors_not_sigbus() {
    let seg = TempSegment::new("trunc");
    drop(Writer::create(&seg.path, &layout(&["EURUSD"], 5), &Default::default()).unwrap());
    let full = fs::metadata(seg.file()).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(seg.file()).unwrap();
    f.set_len(full - 64).unwrap();
    match Reader::open(&seg.path).unwrap_err() {
        OpenError::Truncated {
            found, expected, ..
        } => assert_eq!((found, expected), (full - 64, full)),
        e => panic!("{e:?}"),
    }
    f.set_len(100).unwrap();
    assert!(matches!(
        Reader::open(&seg.path).unwrap_err(),
        OpenError::Truncated {
            found: 100,
            expected: 512,
            ..
        }
    ));
    f.set_len(0).unwrap();
    assert!(matches!(
        Reader::open(&seg.path).unwrap_err(),
        OpenError::Truncated { found: 0, .. }
    ));

    let missing = TempSegment::new("missing");
    assert!(matches!(
        Reader::open(&missing.path).unwrap_err(),
        OpenError::NotFound { .. }
    ));
}

#[test]
fn a_writer_replaces_a_file_that_is_not_a_segment() {
    let seg = TempSegment::new("garbage");
    fs::write(seg.file(), b"hello").unwrap();
    let w = Writer::create(&seg.path, &layout(&["EURUSD"], 5), &Default::default()).unwrap();
    assert_eq!((w.start(), w.generation()), (Start::Replaced, 1));
    assert!(Reader::open(&seg.path).is_ok());
}

#[test]
fn segment_names_are_plain_file_names() {
    assert!(SegmentPath::named("mtf-candles").is_ok());
    for bad in ["", "../etc/passwd", "a/b", ".hidden", "sp ace"] {
        assert!(SegmentPath::named(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn of_writers_racing_to_create_a_segment_exactly_one_wins() {
    let seg = TempSegment::new("race");
    let l = layout(&["EURUSD"], 5);
    let barrier = std::sync::Barrier::new(8);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    Writer::create(&seg.path, &l, &Default::default())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(_) | Err(CreateError::AlreadyRunning { .. }))),
        "{results:?}"
    );
    assert_eq!(
        leftovers(&seg),
        Vec::<std::ffi::OsString>::new(),
        "temporary files left behind"
    );
}

#[test]
fn a_symlink_planted_at_the_segment_name_is_not_written_through() {
    let seg = TempSegment::new("symlink");
    let victim = std::env::temp_dir().join(format!("shm-core-victim-{}", std::process::id()));
    fs::write(&victim, b"precious").unwrap();
    std::os::unix::fs::symlink(&victim, seg.file()).unwrap();
    let result = Writer::create(&seg.path, &layout(&["EURUSD"], 5), &Default::default());
    let victim_after = fs::read(&victim).unwrap();
    let _ = fs::remove_file(&victim);
    assert!(
        matches!(result, Err(CreateError::Io { action: "open", .. })),
        "{result:?}"
    );
    assert_eq!(victim_after, b"precious");
}
