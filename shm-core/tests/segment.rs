//! The segment's life cycle as users meet it: create, read, second writer, stop, warm restart,
//! replacement, permissions, and every kind of bad file.

use std::fs;
#[cfg(unix)]
use std::os::unix::fs::PermissionsExt;

use mtf_tests::TempSegment;
#[cfg(unix)]
use shm_core::WriterOptions;
use shm_core::{
    Candle, Counter, CreateError, FeedState, Layout, Liveness, OpenError, Reader, SegmentPath,
    Start, Timeframe, Writer, WriterState,
};

/// Writes `bytes` at `offset` of `file`, as a hostile or crashed process would.
fn write_at(file: &std::path::Path, bytes: &[u8], offset: u64) {
    let f = fs::OpenOptions::new().write(true).open(file).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::FileExt::write_all_at(&f, bytes, offset).unwrap();
    #[cfg(windows)]
    assert_eq!(
        std::os::windows::fs::FileExt::seek_write(&f, bytes, offset).unwrap(),
        bytes.len()
    );
}

/// Files beside the segment whose names start with its name (temporary files of a build),
/// other than its lock file.
fn leftovers(seg: &TempSegment) -> Vec<std::ffi::OsString> {
    let stem = seg.file().file_name().unwrap().to_owned();
    let lock = format!("{}.lock", stem.to_string_lossy());
    let dir = seg.file().parent().unwrap().to_owned();
    fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| {
            n != &stem
                && n.to_string_lossy() != lock
                && n.to_string_lossy() != format!("{}.wake", stem.to_string_lossy())
                && n.to_string_lossy().starts_with(&*stem.to_string_lossy())
        })
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

// Unix permission bits; on Windows access is the per-user directory's ACL (files.rs).
#[cfg(unix)]
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
        &WriterOptions {
            mode: 0o640,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        fs::metadata(seg.file()).unwrap().permissions().mode() & 0o777,
        0o640
    );
    // A mode that lets others write is refused before anything is created.
    let seg = TempSegment::new("mode-insecure");
    assert!(matches!(
        Writer::create(
            &seg.path,
            &layout(&["EURUSD"], 5),
            &WriterOptions {
                mode: 0o660,
                ..Default::default()
            }
        ),
        Err(CreateError::InsecureMode { mode: 0o660 })
    ));
    assert!(!seg.file().exists());
}

/// Access modes (`O_ACCMODE` bits of `flags` in /proc/self/fdinfo) of this process's open
/// descriptors of `file`'s inode.
#[cfg(target_os = "linux")]
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

// Reads /proc/self/fdinfo, which only Linux has.
#[cfg(target_os = "linux")]
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
    write_at(&seg.file(), &value.to_le_bytes(), offset);
    let err = Reader::open(&seg.path).unwrap_err();
    (seg, err)
}

#[test]
fn bad_segments_get_typed_errors_saying_found_and_expected() {
    let (_s, e) = corrupted("magic", 0, u64::from_le_bytes(*b"NOTCANDL"));
    assert!(matches!(e, OpenError::BadMagic { .. }), "{e:?}");
    assert!(e.to_string().contains("NOTCANDL"), "{e}");

    // A version-1 file (no tick rings) is another layout: refused, never misread.
    let (_s, e) = corrupted("version", 8, 1);
    assert!(
        matches!(
            e,
            OpenError::VersionMismatch {
                found: 1,
                expected: 2,
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

    let (_s, e) = corrupted("tf", 512 + 64 + 8, 7); // no MT5 timeframe has code 7
    assert!(matches!(e, OpenError::Corrupt { .. }), "{e:?}");

    let (_s, e) = corrupted("rings", 48, 0);
    assert!(matches!(e, OpenError::Corrupt { .. }), "{e:?}");

    // Version 2's header words: a tick depth out of range, and offsets that are not the
    // computed ones.
    let (_s, e) = corrupted("depth", 192, 0);
    assert!(matches!(e, OpenError::Corrupt { .. }), "{e:?}");
    let (_s, e) = corrupted("depth-big", 192, 1 << 21);
    assert!(matches!(e, OpenError::Corrupt { .. }), "{e:?}");
    for (tag, off) in [("term", 200), ("infos", 208), ("ticks", 216)] {
        let (_s, e) = corrupted(tag, off, 64);
        assert!(matches!(e, OpenError::Corrupt { .. }), "{tag}: {e:?}");
    }
}

#[test]
fn damaged_tick_and_symbol_records_are_refused_with_a_typed_error() {
    use shm_core::{InfoSource, InfoValue, ReadError, SymbolInfo, Tick, TickDefect};
    let seg = TempSegment::new("damaged-v2");
    let mut l = layout(&["EURUSD"], 5);
    l.set_tick_depth(8).unwrap();
    let mut w = Writer::create(&seg.path, &l, &Default::default()).unwrap();
    let sym = w.symbol("EURUSD").unwrap();
    for ms in 1..=3 {
        let t = Tick {
            time_msc: ms * 1000,
            bid: 1.1,
            ask: 1.2,
            flags: 6,
            ..Tick::default()
        };
        w.push_tick(sym, &t).unwrap();
    }
    // The writer refuses what the record may not hold.
    let nan = Tick {
        time_msc: 5000,
        bid: f64::NAN,
        ask: 1.2,
        ..Tick::default()
    };
    assert_eq!(w.push_tick(sym, &nan), Err(TickDefect::BadValue));
    let mut info = SymbolInfo::new("EURUSD");
    info.set("digits", InfoValue::Int(5)).unwrap();
    w.set_symbol_info(sym, &info, InfoSource::Terminal).unwrap();
    // And a record no symbol can have (issue 40): refused whole, the one stored stays.
    for (field, value) in [
        ("point", InfoValue::Float(-0.00001)),
        ("digits", InfoValue::Int(-5)),
        ("trade_contract_size", InfoValue::Float(-100_000.0)),
        ("volume_min", InfoValue::Float(-0.01)),
    ] {
        let mut bad = info.clone();
        bad.set(field, value).unwrap();
        assert_eq!(
            w.set_symbol_info(sym, &bad, InfoSource::Terminal),
            Err(shm_core::InfoError::Impossible { field })
        );
    }
    assert_eq!(
        w.symbol_info(sym),
        Some((info.clone(), InfoSource::Terminal))
    );
    drop(w);
    let file = seg.file();
    let r = Reader::open(&seg.path).unwrap();
    let (ticks_off, infos_off) = {
        let bytes = fs::read(&file).unwrap();
        let word = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap()) as usize;
        (word(216), word(208))
    };
    let mut out = Vec::new();
    r.ticks("EURUSD").unwrap().read_last(8, &mut out).unwrap();
    assert_eq!(out.len(), 3);
    assert_eq!(r.symbol_info("EURUSD").unwrap().unwrap().info, info);

    // Every reader of the newest tick checks it against the symbol table (issue 40): a head
    // set back by one, or a newest tick dated a millisecond back, is refused, not served.
    write_at(&file, &2u64.to_le_bytes(), (ticks_off + 8) as u64);
    let damaged = |r: Result<(), ReadError>| matches!(r, Err(ReadError::Damaged { .. }));
    assert!(damaged(r.ticks("EURUSD").unwrap().latest().map(|_| ())));
    assert!(damaged(
        r.ticks("EURUSD")
            .unwrap()
            .read_last(8, &mut out)
            .map(|_| ())
    ));
    let mut rows = Vec::new();
    assert!(damaged(
        r.ticks("EURUSD")
            .unwrap()
            .read_since_as(0, 8, &mut rows, |t| t.time_msc)
            .map(|_| ())
    ));
    write_at(&file, &3u64.to_le_bytes(), (ticks_off + 8) as u64);
    write_at(
        &file,
        &2_999i64.to_le_bytes(),
        (ticks_off + 64 + 2 * 64) as u64,
    );
    assert!(damaged(r.ticks("EURUSD").unwrap().latest().map(|_| ())));
    write_at(
        &file,
        &3_000i64.to_le_bytes(),
        (ticks_off + 64 + 2 * 64) as u64,
    );
    assert_eq!(
        r.ticks("EURUSD")
            .unwrap()
            .latest()
            .unwrap()
            .unwrap()
            .time_msc,
        3_000
    );
    // A read that ends before the newest is not the newest's: older ticks still read.
    r.ticks("EURUSD")
        .unwrap()
        .read_range(0, 2_000, 8, &mut out)
        .unwrap();
    assert_eq!(out.len(), 2);

    // A tick's bid made NaN (slot 1 holds position 1): the whole snapshot is refused.
    write_at(
        &file,
        &f64::NAN.to_bits().to_le_bytes(),
        (ticks_off + 64 + 64 + 8) as u64,
    );
    match r.ticks("EURUSD").unwrap().read_last(8, &mut out) {
        Err(ReadError::InvalidTick {
            time_msc: 2000,
            why: TickDefect::BadValue,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(
        out.is_empty(),
        "nothing of a refused snapshot is handed out"
    );
    // Times that go back.
    write_at(
        &file,
        &1.1f64.to_bits().to_le_bytes(),
        (ticks_off + 64 + 64 + 8) as u64,
    );
    write_at(&file, &9_000i64.to_le_bytes(), (ticks_off + 64) as u64);
    assert!(matches!(
        r.ticks("EURUSD").unwrap().read_last(8, &mut out),
        Err(ReadError::InvalidTick {
            why: TickDefect::OutOfOrder { .. },
            ..
        })
    ));
    // Counters no writer leaves.
    write_at(&file, &0u64.to_le_bytes(), ticks_off as u64);
    assert!(matches!(
        r.ticks("EURUSD").unwrap().read_last(8, &mut out),
        Err(ReadError::Damaged { .. })
    ));
    // A forged record no symbol can have (`digits` -1, field 11): refused by the reader too.
    write_at(&file, &(-1i64).to_le_bytes(), (infos_off + 64 + 88) as u64);
    assert!(matches!(
        r.symbol_info("EURUSD"),
        Err(ReadError::Damaged { what: "digits" })
    ));
    write_at(&file, &5i64.to_le_bytes(), (infos_off + 64 + 88) as u64);
    assert_eq!(r.symbol_info("EURUSD").unwrap().unwrap().info, info);
    // A boolean field that is not 0 or 1 (`select`, field 2), and a string without its NUL.
    write_at(&file, &7u64.to_le_bytes(), (infos_off + 64 + 16) as u64);
    assert!(matches!(
        r.symbol_info("EURUSD"),
        Err(ReadError::Damaged { what: "select" })
    ));
    write_at(&file, &1u64.to_le_bytes(), (infos_off + 64 + 16) as u64);
    write_at(&file, &[b'x'; 128], (infos_off + 728) as u64);
    assert!(matches!(
        r.symbol_info("EURUSD"),
        Err(ReadError::Damaged { what: "basis" })
    ));
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

// A planted link needs SeCreateSymbolicLinkPrivilege on Windows; /dev/shm is world-writable only on Unix.
#[cfg(unix)]
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

/// Stamps a header as a writer killed while running would leave it: state running, the pid of
/// a process that has exited, a stale heartbeat.
fn as_if_killed(seg: &TempSegment) -> u32 {
    let exits_at_once = if cfg!(windows) {
        std::process::Command::new("cmd")
            .args(["/c", "exit"])
            .spawn()
    } else {
        std::process::Command::new("true").spawn()
    };
    let mut child = exits_at_once.unwrap();
    let dead = child.id();
    child.wait().unwrap();
    write_at(&seg.file(), &1u64.to_le_bytes(), 112); // writer_state: running
    write_at(&seg.file(), &u64::from(dead).to_le_bytes(), 88); // writer_pid
    write_at(&seg.file(), &1u64.to_le_bytes(), 104); // heartbeat_ns: long ago
    write_at(&seg.file(), &1u64.to_le_bytes(), 184); // heartbeat_boot_ns: long ago
    dead
}

#[test]
fn a_read_lock_on_the_segment_blocks_no_restart_and_fakes_no_writer() {
    let seg = TempSegment::new("squat-seg");
    let l = layout(&["EURUSD"], 5);
    drop(Writer::create(&seg.path, &l, &Default::default()).unwrap());
    as_if_killed(&seg);
    // Any reader may take a read lock on the segment file (here through flock and OFD locks
    // alike); neither is the writer lock any more.
    let squatter = fs::File::open(seg.file()).unwrap();
    squatter.try_lock_shared().unwrap();
    let r = Reader::open(&seg.path).unwrap();
    assert_eq!(r.status().liveness, Liveness::Gone);
    let w = Writer::create(&seg.path, &l, &Default::default()).unwrap();
    assert_eq!(w.start(), Start::Warm { repaired: 0 });
    assert_eq!(r.status().liveness, Liveness::Alive);
}

#[test]
fn a_squatter_on_the_lock_file_is_named_and_never_makes_a_dead_writer_look_alive() {
    let seg = TempSegment::new("squat-lock");
    let l = layout(&["EURUSD"], 5);
    drop(Writer::create(&seg.path, &l, &Default::default()).unwrap());
    // Only the owner's account can open the lock file, so the squatter is a process of that
    // account: here a writer of this process holds the lock, and the header is then made to
    // name a writer that has died, as if the lock holder were something else.
    let holder = Writer::create(&seg.path, &l, &Default::default()).unwrap();
    let dead = as_if_killed(&seg);
    let r = Reader::open(&seg.path).unwrap();
    assert_eq!(
        r.status().liveness,
        Liveness::Gone,
        "lock held, but the recorded writer is dead"
    );
    match Writer::create(&seg.path, &l, &Default::default()) {
        Err(e @ CreateError::LockHeld { last_pid, .. }) => {
            assert_eq!(last_pid, dead);
            let text = e.to_string();
            assert!(
                text.contains("not its writer") && text.contains("fuser"),
                "{text}"
            );
            assert!(!text.contains("being written by"), "{text}");
        }
        other => panic!("expected LockHeld, got {other:?}"),
    }
    drop(holder);
}

// FIFOs are Unix objects.
#[cfg(unix)]
#[test]
fn a_fifo_at_the_segment_name_hangs_nobody() {
    let seg = TempSegment::new("fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(seg.file())
        .status()
        .unwrap();
    assert!(status.success());
    // Opening a FIFO without O_NONBLOCK would wait here for ever.
    match Reader::open(&seg.path) {
        Err(e @ OpenError::Untrusted { .. }) => {
            assert!(e.to_string().contains("a FIFO"), "{e}")
        }
        other => panic!("expected Untrusted, got {other:?}"),
    }
    // The writer owns it, so it replaces it with a real segment.
    let w = Writer::create(&seg.path, &layout(&["EURUSD"], 5), &Default::default()).unwrap();
    assert_eq!(w.start(), Start::Replaced);
    assert!(fs::metadata(seg.file()).unwrap().is_file());
    assert_eq!(
        Reader::open(&seg.path).unwrap().status().liveness,
        Liveness::Alive
    );
}

// Unix permission bits (see the mode test).
#[cfg(unix)]
#[test]
fn a_segment_writable_by_others_is_refused_by_readers_and_replaced_by_the_writer() {
    let seg = TempSegment::new("worldwritable");
    let l = layout(&["EURUSD"], 5);
    let mut w = Writer::create(&seg.path, &l, &Default::default()).unwrap();
    let m1 = w.ring("EURUSD", Timeframe::M1).unwrap();
    w.push_closed(m1, &candle(1));
    drop(w);
    fs::set_permissions(seg.file(), fs::Permissions::from_mode(0o666)).unwrap();
    match Reader::open(&seg.path) {
        Err(e @ OpenError::Untrusted { .. }) => {
            assert!(e.to_string().contains("mode 0666"), "{e}")
        }
        other => panic!("expected Untrusted, got {other:?}"),
    }
    // Anyone could have written candles into it: start clean rather than warm.
    let w = Writer::create(&seg.path, &l, &Default::default()).unwrap();
    assert_eq!(w.start(), Start::Replaced);
    assert_eq!(
        fs::metadata(seg.file()).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let r = Reader::open(&seg.path).unwrap();
    assert_eq!(closes(&r, "EURUSD", 5), []);
}

// Needs chown and a world-writable directory: Unix only.
#[cfg(unix)]
#[test]
fn a_file_planted_by_another_account_is_refused_and_left_alone() {
    use std::os::unix::fs::MetadataExt;
    let seg = TempSegment::new("planted");
    let l = layout(&["EURUSD"], 5);
    drop(Writer::create(&seg.path, &l, &Default::default()).unwrap());
    let me = fs::metadata(seg.file()).unwrap().uid();
    if me != 0 {
        println!(
            "SKIPPED a_file_planted_by_another_account_is_refused_and_left_alone: giving a file \
             to another account needs root, and this test runs as uid {me}"
        );
        return;
    }
    // uid 65534 is `nobody` on Debian.
    std::os::unix::fs::chown(seg.file(), Some(65534), Some(65534)).unwrap();
    let before = fs::read(seg.file()).unwrap();
    match Writer::create(&seg.path, &l, &Default::default()) {
        Err(e @ CreateError::Untrusted { .. }) => {
            assert!(e.to_string().contains("owned by uid 65534"), "{e}")
        }
        other => panic!("expected Untrusted, got {other:?}"),
    }
    assert_eq!(fs::read(seg.file()).unwrap(), before, "left as it was");
    // The same for a lock file planted under the segment's lock name.
    let seg2 = TempSegment::new("planted-lock");
    let mut lock_path = seg2.file().into_os_string();
    lock_path.push(".lock");
    fs::write(&lock_path, b"").unwrap();
    std::os::unix::fs::chown(&lock_path, Some(65534), Some(65534)).unwrap();
    assert!(matches!(
        Writer::create(&seg2.path, &l, &Default::default()),
        Err(CreateError::Untrusted { .. })
    ));
}

#[test]
fn a_restart_removes_the_temporary_files_of_a_killed_build() {
    let seg = TempSegment::new("leftover");
    let l = layout(&["EURUSD"], 5);
    drop(Writer::create(&seg.path, &l, &Default::default()).unwrap());
    let mut tmp = seg.file().into_os_string();
    tmp.push(".4242-0.tmp");
    fs::write(&tmp, vec![0u8; 4096]).unwrap();
    let mut unrelated = seg.file().into_os_string();
    unrelated.push(".notes.tmp");
    fs::write(&unrelated, b"keep").unwrap();
    let _w = Writer::create(&seg.path, &l, &Default::default()).unwrap();
    assert!(!std::path::Path::new(&tmp).exists(), "leftover removed");
    assert!(
        std::path::Path::new(&unrelated).exists(),
        "other files kept"
    );
    fs::remove_file(&unrelated).unwrap();
}

#[test]
fn remove_segment_refuses_a_running_writer_and_removes_both_files_after() {
    let seg = TempSegment::new("remove");
    let w = Writer::create(&seg.path, &layout(&["EURUSD"], 5), &Default::default()).unwrap();
    assert!(matches!(
        shm_core::remove_segment(&seg.path),
        Err(CreateError::AlreadyRunning { .. })
    ));
    assert!(seg.file().exists());
    drop(w);
    shm_core::remove_segment(&seg.path).unwrap();
    let mut lock_path = seg.file().into_os_string();
    lock_path.push(".lock");
    assert!(!seg.file().exists() && !std::path::Path::new(&lock_path).exists());
    shm_core::remove_segment(&seg.path).unwrap(); // nothing there: fine
}

#[test]
fn a_symbol_unknown_to_the_source_is_flagged_on_each_of_its_rings() {
    let seg = TempSegment::new("unknown");
    let mut w = Writer::create(
        &seg.path,
        &layout(&["EURUSD", "XAUUSDm"], 5),
        &Default::default(),
    )
    .unwrap();
    let r = Reader::open(&seg.path).unwrap();
    assert!(r.rings().all(|ring| !ring.unknown_to_source()));
    w.set_unknown_to_source(w.symbol("XAUUSDm").unwrap(), true);
    let flagged: Vec<_> = r
        .rings()
        .filter(|ring| ring.unknown_to_source())
        .map(|ring| (ring.symbol().to_owned(), ring.timeframe()))
        .collect();
    assert_eq!(
        flagged,
        [
            ("XAUUSDm".to_owned(), Timeframe::M1),
            ("XAUUSDm".to_owned(), Timeframe::H1)
        ]
    );
    w.set_unknown_to_source(w.symbol("XAUUSDm").unwrap(), false);
    assert!(r.rings().all(|ring| !ring.unknown_to_source()));
}

/// The byte offset of ring `index`'s slot `slot` in the segment file, from its directory.
fn slot_offset(seg: &TempSegment, index: u64, slot: u64) -> u64 {
    let bytes = fs::read(seg.file()).unwrap();
    let word =
        |at: u64| u64::from_le_bytes(bytes[at as usize..at as usize + 8].try_into().unwrap());
    let directory = word(64);
    let ring = word(directory + index * 32 + 24);
    ring + 128 + slot * 80
}

/// Leaves slot `slot` of ring `index` as a writer killed inside its write would: the
/// sequence odd, `position_word` written, and the first half of a record that is a day newer
/// than anything near it, with an absurd high.
fn tear(seg: &TempSegment, index: u64, slot: u64, position_word: u64) {
    let at = slot_offset(seg, index, slot);
    let bytes = fs::read(seg.file()).unwrap();
    let seq = u64::from_le_bytes(bytes[at as usize..at as usize + 8].try_into().unwrap());
    write_at(&seg.file(), &(seq + 1).to_le_bytes(), at);
    write_at(&seg.file(), &position_word.to_le_bytes(), at + 8);
    let half = [
        (7 * 60 + 86_400) as u64,
        1.0f64.to_bits(),
        120_545.0f64.to_bits(),
    ];
    for (i, w) in half.iter().enumerate() {
        write_at(&seg.file(), &w.to_le_bytes(), at + 16 + 8 * i as u64);
    }
}

#[test]
fn torn_writes_are_dropped_at_a_warm_restart_and_the_ring_reads_at_once() {
    // The attack's W3, C5 and C6, built by hand in the file: an amendment of the newest
    // closed candle torn with its old position word, and a push torn after its position word
    // (into the slot that held the oldest candle).
    let seg = TempSegment::new("torn");
    let l = layout(&["EURUSD"], 5);
    let mut w = Writer::create(&seg.path, &l, &Default::default()).unwrap();
    let m1 = w.ring("EURUSD", Timeframe::M1).unwrap();
    for i in 0..8 {
        w.push_closed(m1, &candle(i));
    }
    w.update_forming(m1, &candle(8));
    w.set_running();
    let before = Reader::open(&seg.path).unwrap();
    drop(w);
    tear(&seg, 0, 7 % 5, 7); // amendment of position 7
    tear(&seg, 0, 8 % 5, 8); // push of position 8, over position 3
    as_if_killed(&seg);
    let mut out = Vec::new();
    let m1r = before.ring("EURUSD", Timeframe::M1).unwrap();
    assert!(matches!(
        m1r.read_last(10, &mut out),
        Err(shm_core::ReadError::Busy { .. })
    ));

    let mut w = Writer::create(&seg.path, &l, &Default::default()).unwrap();
    assert_eq!(w.start(), Start::Warm { repaired: 2 });
    // Both torn candles are gone, to the reader that was attached and to a new one; nothing
    // half-written is served, and nothing waits for the ring to lap.
    for r in [&before, &Reader::open(&seg.path).unwrap()] {
        assert_eq!(
            closes(r, "EURUSD", 10),
            [(4, false), (5, false), (6, false), (8, true)]
        );
    }
    // The writer continues after the newest candle it still holds, and a correction cannot
    // slip a bar in behind it through the dropped slot.
    assert_eq!(w.last_closed(m1), Some(candle(6)));
    assert!(!w.amend_last_closed(m1, &candle(6)));
    w.set_running();
    w.roll(m1, &candle(8), Some(&candle(9)));
    assert_eq!(
        closes(&before, "EURUSD", 10),
        [(4, false), (5, false), (6, false), (8, false), (9, true)]
    );
}
