//! The store's own tests: round trips, restarts, torn and damaged records, chunk rotation,
//! retention and the trust rules, on real files in a temporary directory.

use std::path::{Path, PathBuf};

use super::*;
use crate::{Candle, Layout, Tick, Timeframe, Trust};

/// A temporary directory removed when the test ends, passed or failed.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        // Relaxed: only uniqueness matters.
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("mtf-history-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn layout() -> Layout {
    let mut l = Layout::new();
    l.add_ring("EURUSD", Timeframe::M1, 16).unwrap();
    l
}

fn tick(ms: i64) -> Tick {
    Tick {
        time_msc: ms,
        bid: 1.0 + ms as f64 * 1e-6,
        ask: 1.0001 + ms as f64 * 1e-6,
        flags: 6,
        ..Tick::default()
    }
}

fn bar(k: i64) -> Candle {
    Candle::flat(k * 60, 1.0 + k as f64 * 1e-4)
}

fn stored_ticks(dir: &Path) -> Result<Vec<Tick>, HistoryError> {
    let mut s = History::at(dir, Trust::for_process().unwrap()).ticks("EURUSD");
    s.sync()?;
    let mut out = Vec::new();
    s.range_as(i64::MIN, i64::MAX, usize::MAX, &mut out, |t| t);
    Ok(out)
}

fn stored_bars(dir: &Path) -> Vec<Candle> {
    let mut s = History::at(dir, Trust::for_process().unwrap()).bars("EURUSD", Timeframe::M1);
    s.sync().unwrap();
    let mut out = Vec::new();
    s.range_as(i64::MIN, i64::MAX, usize::MAX, &mut out, |c| c);
    out
}

#[test]
fn ticks_and_bars_come_back_as_written_and_bars_wait_for_their_successor() {
    let t = TempDir::new("roundtrip");
    let mut w = HistoryWriter::open(&t.0, &layout(), Keep::All, 0o600).unwrap();
    for ms in 0..1000 {
        w.tick(0, &tick(1_000_000 + ms * 7), 0).unwrap();
    }
    for k in 0..10 {
        w.bar_closed(0, &bar(k), 0).unwrap();
    }
    let ticks = stored_ticks(&t.0).unwrap();
    assert_eq!(ticks.len(), 1000);
    assert_eq!(ticks[999].time_msc, 1_000_000 + 999 * 7);
    // The newest closed bar is held back for a correction...
    assert_eq!(stored_bars(&t.0).len(), 9);
    w.bar_amended(
        0,
        &Candle {
            close: 9.0,
            high: 9.0,
            ..bar(9)
        },
    );
    // ...and a clean stop stores it, corrected.
    w.flush(0).unwrap();
    let bars = stored_bars(&t.0);
    assert_eq!(bars.len(), 10);
    assert_eq!(bars[9].close, 9.0);
    assert_eq!(bars[3], bar(3));
}

#[test]
fn ranges_answer_by_time_across_chunks() {
    let t = TempDir::new("chunks");
    let mut w = HistoryWriter::open(&t.0, &layout(), Keep::All, 0o600).unwrap();
    let n = StreamKind::Ticks.capacity() as i64 + 5000;
    for k in 0..n {
        // Two ticks a millisecond: the range must keep both at its edges.
        w.tick(0, &tick(k / 2), 0).unwrap();
    }
    let mut s = History::at(&t.0, Trust::for_process().unwrap()).ticks("EURUSD");
    s.sync().unwrap();
    assert_eq!(s.len(), n as u64);
    assert_eq!(
        list_chunks(&t.0, "EURUSD", StreamKind::Ticks)
            .unwrap()
            .len(),
        2
    );
    let mut out = Vec::new();
    let seam = StreamKind::Ticks.capacity() as i64 / 2;
    s.range_as(seam - 10, seam + 10, usize::MAX, &mut out, |t| t.time_msc);
    assert_eq!(out.len(), 42);
    assert_eq!((out[0], out[41]), (seam - 10, seam + 10));
    assert_eq!(s.count_range(seam - 10, seam + 10), 42);
    out.clear();
    s.last_as(seam, 3, &mut out, |t| t.time_msc);
    assert_eq!(out, [seam - 1, seam, seam]);
    out.clear();
    s.first_as(seam, 3, &mut out, |t| t.time_msc);
    assert_eq!(out, [seam, seam, seam + 1]);
}

#[test]
fn a_restart_goes_on_with_no_duplicate_and_marks_where_it_began() {
    let t = TempDir::new("restart");
    let mut w = HistoryWriter::open(&t.0, &layout(), Keep::All, 0o600).unwrap();
    for ms in 0..100 {
        w.tick(0, &tick(ms), 0).unwrap();
    }
    drop(w);
    let mut w = HistoryWriter::open(&t.0, &layout(), Keep::All, 0o600).unwrap();
    // The overlap a restart replays (the same millisecond included) is not stored again.
    for ms in 90..200 {
        w.tick(0, &tick(ms), 0).unwrap();
    }
    let ticks = stored_ticks(&t.0).unwrap();
    let times: Vec<i64> = ticks.iter().map(|t| t.time_msc).collect();
    assert_eq!(times, (0..200).collect::<Vec<_>>());
    let mut s = History::at(&t.0, Trust::for_process().unwrap()).ticks("EURUSD");
    s.sync().unwrap();
    assert_eq!(s.holes(0, 1000), vec![(Some(99), 100)]);
}

#[test]
fn a_record_torn_by_a_kill_is_never_served_and_the_restart_overwrites_it() {
    let t = TempDir::new("torn");
    let mut w = HistoryWriter::open(&t.0, &layout(), Keep::All, 0o600).unwrap();
    for ms in 0..10 {
        w.tick(0, &tick(ms), 0).unwrap();
    }
    drop(w);
    // A writer killed mid-append: half a record past the count.
    let path = chunk_path(&t.0, "EURUSD", StreamKind::Ticks, 1);
    let at = CHUNK_HEADER_SIZE as u64 + 10 * STORED_RECORD_SIZE as u64;
    crate::files::write_at(&crate::files::open(&path, true).unwrap(), &[0xAB; 40], at).unwrap();
    assert_eq!(stored_ticks(&t.0).unwrap().len(), 10);
    let mut w = HistoryWriter::open(&t.0, &layout(), Keep::All, 0o600).unwrap();
    w.tick(0, &tick(10), 0).unwrap();
    let ticks = stored_ticks(&t.0).unwrap();
    assert_eq!(ticks.len(), 11);
    assert_eq!(
        ticks[10],
        Tick {
            published_ns: 0,
            ..tick(10)
        }
    );
}

#[test]
fn a_damaged_record_is_a_typed_error_and_the_next_writer_keeps_the_intact_part() {
    let t = TempDir::new("damaged");
    let mut w = HistoryWriter::open(&t.0, &layout(), Keep::All, 0o600).unwrap();
    for ms in 0..10 {
        w.tick(0, &tick(ms), 0).unwrap();
    }
    drop(w);
    // A lost page, as a power cut leaves it: record 7's bid changed under its check word.
    let path = chunk_path(&t.0, "EURUSD", StreamKind::Ticks, 1);
    let at = CHUNK_HEADER_SIZE as u64 + 7 * STORED_RECORD_SIZE as u64 + 8;
    crate::files::write_at(&crate::files::open(&path, true).unwrap(), &[0x42; 8], at).unwrap();
    match stored_ticks(&t.0) {
        Err(HistoryError::Damaged { why, .. }) => assert!(why.contains("record 7"), "{why}"),
        other => panic!("expected Damaged, got {other:?}"),
    }
    let w = HistoryWriter::open(&t.0, &layout(), Keep::All, 0o600).unwrap();
    assert_eq!(w.dropped_at_open(), 3);
    assert_eq!(w.newest_tick(0), Some(6));
    assert_eq!(stored_ticks(&t.0).unwrap().len(), 7);
}

#[test]
fn a_damaged_header_is_put_aside_and_a_fresh_chunk_begins() {
    let t = TempDir::new("header");
    let mut w = HistoryWriter::open(&t.0, &layout(), Keep::All, 0o600).unwrap();
    w.tick(0, &tick(1), 0).unwrap();
    drop(w);
    let path = chunk_path(&t.0, "EURUSD", StreamKind::Ticks, 1);
    crate::files::write_at(&crate::files::open(&path, true).unwrap(), b"NOTHIST!", 0).unwrap();
    assert!(matches!(
        stored_ticks(&t.0),
        Err(HistoryError::Damaged { .. })
    ));
    let mut w = HistoryWriter::open(&t.0, &layout(), Keep::All, 0o600).unwrap();
    assert_eq!(w.dropped_at_open(), 1);
    w.tick(0, &tick(2), 0).unwrap();
    assert_eq!(stored_ticks(&t.0).unwrap().len(), 1);
    let mut aside = path.into_os_string();
    aside.push(".damaged");
    assert!(Path::new(&aside).exists());
}

#[test]
fn retention_drops_the_oldest_sealed_chunks_by_size_and_by_age() {
    let t = TempDir::new("keep");
    let per_chunk = StreamKind::Ticks.capacity() as i64;
    let mut w = HistoryWriter::open(&t.0, &layout(), Keep::All, 0o600).unwrap();
    for k in 0..per_chunk * 3 + 10 {
        w.tick(0, &tick(k), 0).unwrap();
    }
    drop(w);
    assert_eq!(
        list_chunks(&t.0, "EURUSD", StreamKind::Ticks)
            .unwrap()
            .len(),
        4
    );
    // About two chunks' worth: the two oldest go.
    let two = 2 * chunk::chunk_len(per_chunk as u64);
    let w = HistoryWriter::open(&t.0, &layout(), Keep::Bytes(two), 0o600).unwrap();
    assert!(w.bytes() <= two, "{} > {two}", w.bytes());
    drop(w);
    let left = list_chunks(&t.0, "EURUSD", StreamKind::Ticks).unwrap();
    assert_eq!(left.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [3, 4]);
    let ticks = stored_ticks(&t.0).unwrap();
    assert_eq!(ticks[0].time_msc, 2 * per_chunk);
    // By age: keep 1 s before the newest tick, so only the newest chunk is needed, but the
    // sealed one before it holds ticks within that second too and stays.
    let w = HistoryWriter::open(&t.0, &layout(), Keep::Seconds(1), 0o600).unwrap();
    drop(w);
    assert_eq!(
        list_chunks(&t.0, "EURUSD", StreamKind::Ticks)
            .unwrap()
            .len(),
        2
    );
}

#[cfg(unix)]
#[test]
fn a_chunk_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let t = TempDir::new("trust");
    let mut w = HistoryWriter::open(&t.0, &layout(), Keep::All, 0o600).unwrap();
    w.tick(0, &tick(1), 0).unwrap();
    drop(w);
    let path = chunk_path(&t.0, "EURUSD", StreamKind::Ticks, 1);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert!(matches!(
        stored_ticks(&t.0),
        Err(HistoryError::Untrusted { .. })
    ));
}

#[test]
fn the_seam_joins_store_and_ring_with_no_gap_and_no_duplicate() {
    let dir = TempDir::new("seam");
    {
        let mut w = HistoryWriter::open(&dir.0, &layout(), Keep::All, 0o600).unwrap();
        for k in 1..=100 {
            w.bar_closed(0, &bar(k), 1).unwrap();
        }
        // Ticks 1..=50 ms, two of them at 50: the store's newest millisecond, whole.
        for ms in (1..=50).chain([50]) {
            w.tick(0, &tick(ms), 1).unwrap();
        }
        w.flush(1).unwrap();
    }
    let history = History::at(&dir.0, Trust::for_process().unwrap());
    let mut bars = history.bars("EURUSD", Timeframe::M1);
    bars.sync().unwrap();
    // A ring of bars 91..=105, the last one forming: the store answers before 91.
    let ring: Vec<Candle> = (91..=105).map(bar).collect();
    let seam = BarSeam::new(&ring, Some(&bars));
    let mut got = Vec::new();
    seam.range_as(50 * 60, 103 * 60, usize::MAX, &mut got, |c| c.time / 60);
    assert_eq!(got, (50..=103).collect::<Vec<_>>());
    assert_eq!(seam.count(50 * 60, 103 * 60), 54);
    let mut last = Vec::new();
    seam.last_as(95 * 60, 10, &mut last, |c| c.time / 60);
    assert_eq!(last, (86..=95).collect::<Vec<_>>());
    let mut capped = Vec::new();
    seam.range_as(i64::MIN, i64::MAX, 3, &mut capped, |c| c.time / 60);
    assert_eq!(capped, [1, 2, 3]);
    assert_eq!(seam.oldest(), Some(60));

    let mut ticks = history.ticks("EURUSD");
    ticks.sync().unwrap();
    // The ring from 40 ms on holds 40..=50 (both at 50) and 51..=60: it does not reach back
    // past 30, so the store answers up to its newest (50), and the ring after.
    let ring: Vec<Tick> = (40..=50).chain([50]).chain(51..=60).map(tick).collect();
    let seam = TickSeam::new(&ring[..], false, Some(&ticks));
    let mut got = Vec::new();
    seam.range_as(30, 55, usize::MAX, &mut got, |t| t.time_msc);
    let want: Vec<i64> = (30..=50).chain([50]).chain(51..=55).collect();
    assert_eq!(got, want);
    assert_eq!(seam.count(30, 55), want.len() as u64);
    // A ring that reaches back answers alone.
    let alone = TickSeam::new(&ring[..], true, Some(&ticks));
    let mut got = Vec::new();
    alone.range_as(40, 45, usize::MAX, &mut got, |t| t.time_msc);
    assert_eq!(got, (40..=45).collect::<Vec<_>>());
}

#[test]
fn a_restart_resending_a_millisecond_stores_only_the_ticks_it_lacked() {
    // The run before stored the first of two ticks sharing a millisecond, then died.
    let dir = TempDir::new("same-ms");
    let second = |ms: i64| Tick {
        ask: 2.0,
        ..tick(ms)
    };
    {
        let mut w = HistoryWriter::open(&dir.0, &layout(), Keep::All, 0o600).unwrap();
        for t in [tick(1), tick(2)] {
            w.tick(0, &t, 1).unwrap();
        }
    }
    // The next run's source resends from that millisecond: both ticks at 2, then 3.
    let mut w = HistoryWriter::open(&dir.0, &layout(), Keep::All, 0o600).unwrap();
    for t in [tick(1), tick(2), second(2), tick(3)] {
        w.tick(0, &t, 2).unwrap();
    }
    drop(w);
    let got: Vec<(i64, f64)> = stored_ticks(&dir.0)
        .unwrap()
        .iter()
        .map(|t| (t.time_msc, t.ask))
        .collect();
    assert_eq!(
        got,
        [
            (1, tick(1).ask),
            (2, tick(2).ask),
            (2, 2.0),
            (3, tick(3).ask)
        ]
    );
}

#[test]
fn a_copy_going_on_from_the_newest_millisecond_mid_run_stores_it_once() {
    // A mirror's copy appends two ticks at 5 in this run, then goes on from the store's
    // newest: the source sends that millisecond again whole, with a third tick at 5.
    let dir = TempDir::new("resend");
    let nth = |ms: i64, n: u32| Tick {
        ask: 2.0 + f64::from(n),
        ..tick(ms)
    };
    let mut w = HistoryWriter::open(&dir.0, &layout(), Keep::All, 0o600).unwrap();
    for t in [tick(4), nth(5, 0), nth(5, 1)] {
        w.tick(0, &t, 1).unwrap();
    }
    assert_eq!(w.resend_from_newest(0), Some(5));
    for t in [nth(5, 0), nth(5, 1), nth(5, 2), tick(6)] {
        w.tick(0, &t, 2).unwrap();
    }
    // Without the call, a resend stores the millisecond twice: the rule is the caller's to ask.
    assert_eq!(w.resend_from_newest(0), Some(6));
    drop(w);
    let got: Vec<(i64, f64)> = stored_ticks(&dir.0)
        .unwrap()
        .iter()
        .map(|t| (t.time_msc, t.ask))
        .collect();
    assert_eq!(
        got,
        [
            (4, tick(4).ask),
            (5, 2.0),
            (5, 3.0),
            (5, 4.0),
            (6, tick(6).ask)
        ]
    );
}

#[test]
fn a_millisecond_split_across_chunks_is_resent_once_after_a_restart() {
    // Four ticks at one millisecond, two at the end of the first chunk and two at the start of
    // the second; the run is killed; the next one resends that millisecond whole.
    let dir = TempDir::new("split-ms");
    let per_chunk = StreamKind::Ticks.capacity() as i64;
    let at = |n: u32| Tick {
        ask: 3.0 + f64::from(n),
        ..tick(per_chunk)
    };
    {
        let mut w = HistoryWriter::open(&dir.0, &layout(), Keep::All, 0o600).unwrap();
        for k in 0..per_chunk - 2 {
            w.tick(0, &tick(k), 1).unwrap();
        }
        for n in 0..4 {
            w.tick(0, &at(n), 1).unwrap();
        }
    }
    assert_eq!(
        list_chunks(&dir.0, "EURUSD", StreamKind::Ticks)
            .unwrap()
            .len(),
        2
    );
    let mut w = HistoryWriter::open(&dir.0, &layout(), Keep::All, 0o600).unwrap();
    assert_eq!(w.newest_tick(0), Some(per_chunk));
    for n in 0..4 {
        w.tick(0, &at(n), 2).unwrap();
    }
    w.tick(0, &tick(per_chunk + 1), 2).unwrap();
    drop(w);
    let got = stored_ticks(&dir.0).unwrap();
    assert_eq!(got.len() as i64, per_chunk - 2 + 4 + 1);
    let at_ms: Vec<f64> = got
        .iter()
        .filter(|t| t.time_msc == per_chunk)
        .map(|t| t.ask)
        .collect();
    assert_eq!(at_ms, [3.0, 4.0, 5.0, 6.0]);
}

#[test]
fn an_empty_newest_chunk_left_by_a_kill_goes_on_from_the_chunk_before() {
    // The first chunk is full; the writer made the second and was killed before its first
    // record. The next run must know the store's newest (else its source resends everything,
    // older than the first chunk's last record, into the second: out of order for readers).
    let dir = TempDir::new("empty-newest");
    let per_chunk = StreamKind::Ticks.capacity() as i64;
    {
        let mut w = HistoryWriter::open(&dir.0, &layout(), Keep::All, 0o600).unwrap();
        for k in 0..per_chunk {
            w.tick(0, &tick(k), 1).unwrap();
        }
    }
    let empty = chunk_path(&dir.0, "EURUSD", StreamKind::Ticks, 2);
    drop(chunk::ChunkMut::create(&empty, StreamKind::Ticks, "EURUSD", 2, 1, 0o600).unwrap());
    let mut w = HistoryWriter::open(&dir.0, &layout(), Keep::All, 0o600).unwrap();
    assert_eq!(w.newest_tick(0), Some(per_chunk - 1));
    // The source resends from the store's newest millisecond, then goes on.
    for k in per_chunk - 1..per_chunk + 3 {
        w.tick(0, &tick(k), 2).unwrap();
    }
    drop(w);
    let got = stored_ticks(&dir.0).unwrap();
    let times: Vec<i64> = got.iter().map(|t| t.time_msc).collect();
    assert_eq!(times, (0..per_chunk + 3).collect::<Vec<_>>());
}
