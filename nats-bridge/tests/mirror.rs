//! The origin streamer publishing to a real `nats-server`, and `mtf-mirror` processes
//! rebuilding its segment: identical candle by candle after a CSV replay, history for a
//! mirror that starts late, restarts of the mirror and of NATS mid-stream, and a writer that
//! never waits for an absent or stuck NATS. Every process is started on free loopback ports
//! and temporary segments, and stopped even when a test fails.

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use mtf_tests::{
    free_port, spawn_mirror, spawn_nats_server, wait_for_running, workspace_bin, ChildGuard,
    TempSegment,
};
use shm_core::{
    Candle, FeedKind, FeedState, InfoSource, Liveness, Reader, SegmentPath, SymbolInfo,
    TerminalInfo, Tick,
};

/// The bundled day of EURUSD M1 bars (the repository's test data), folded into M5 to D1.
const CSV: &str = "examples/EURUSD_M1_202401020000_202401022359.csv";

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// A `nats-server` on a free loopback port.
struct Nats {
    port: u16,
    child: Option<ChildGuard>,
}

impl Nats {
    fn start() -> Nats {
        let mut n = Nats {
            port: free_port(),
            child: None,
        };
        n.restart();
        n
    }

    fn restart(&mut self) {
        self.child = Some(spawn_nats_server(self.port).unwrap_or_else(|why| panic!("{why}")));
    }

    fn kill(&mut self) {
        self.child = None; // ChildGuard kills and reaps on drop
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

/// An origin streamer on `seg`, publishing to `url` as segment name `name`, once running.
fn origin(seg: &TempSegment, url: &str, name: &str, feed: &[&str]) -> ChildGuard {
    let csv = root().join(CSV);
    let feed: Vec<&str> = feed
        .iter()
        .map(|a| if *a == CSV { csv.to_str().unwrap() } else { a })
        .collect();
    let mut args = vec![
        "--segment-path",
        seg.path.path().to_str().unwrap(),
        "--no-http",
        "--nats",
        url,
        "--nats-name",
        name,
    ];
    args.extend_from_slice(&feed);
    let child = ChildGuard::spawn(workspace_bin("mtf-streamer"), &args);
    wait_for_running(&seg.path);
    child
}

fn mirror(seg: &TempSegment, url: &str, source: &str) -> ChildGuard {
    spawn_mirror(&workspace_bin("mtf-mirror"), url, source, &seg.path)
}

/// Every candle of every ring, oldest first (closed, then the forming one).
fn all_candles(path: &SegmentPath) -> Option<Vec<(String, Vec<Candle>)>> {
    let r = Reader::open(path).ok()?;
    let mut out = Vec::new();
    for ring in r.rings() {
        let mut c = Vec::new();
        ring.read_last(ring.capacity() as usize + 1, &mut c).ok()?;
        out.push((format!("{} {}", ring.symbol(), ring.timeframe()), c));
    }
    Some(out)
}

/// Every tick of every symbol (without the writer's own publication stamp), its symbol
/// information, and the terminal record.
type Records = Vec<(String, Vec<Tick>, Option<(SymbolInfo, InfoSource)>)>;

fn all_records(path: &SegmentPath) -> Option<(Records, Option<TerminalInfo>)> {
    let r = Reader::open(path).ok()?;
    let mut out = Vec::new();
    for symbol in r.layout().symbols() {
        let ring = r.ticks(symbol)?;
        let mut ticks = Vec::new();
        ring.read_last(ring.capacity() as usize, &mut ticks).ok()?;
        for t in &mut ticks {
            t.published_ns = 0;
        }
        let info = r
            .symbol_info(symbol)
            .ok()?
            .map(|rec| (rec.info, rec.source));
        out.push((symbol.to_owned(), ticks, info));
    }
    Some((out, r.terminal().ok()?.map(|t| t.info)))
}

/// Waits until the mirror at `path` says it is not live: `disconnected`, and its writer
/// stalled (no heartbeat), so that no reader takes its candles for live ones.
fn wait_not_live(path: &SegmentPath, when: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let st = Reader::open(path).unwrap().status();
        if st.feed_state == Some(FeedState::Disconnected) && st.liveness == Liveness::Stalled {
            return;
        }
        assert!(
            Instant::now() < until,
            "the mirror still looks live {when}: {st:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn feed_state(path: &SegmentPath) -> Option<FeedState> {
    Reader::open(path).ok()?.status().feed_state
}

/// Waits until the mirror holds exactly the origin's candles; fails with the first
/// difference.
fn wait_identical(origin: &SegmentPath, mirror: &SegmentPath, within: Duration) {
    let until = Instant::now() + within;
    loop {
        let (a, b) = (all_candles(origin), all_candles(mirror));
        let (ra, rb) = (all_records(origin), all_records(mirror));
        if a.is_some() && a == b && ra.is_some() && ra == rb {
            return;
        }
        if Instant::now() > until {
            let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
            let diff = a.iter().zip(&b).find(|(x, y)| x != y).map(|(x, y)| {
                format!(
                    "{}: origin {} candles, mirror {} ({:?} vs {:?})",
                    x.0,
                    x.1.len(),
                    y.1.len(),
                    x.1.last(),
                    y.1.last()
                )
            });
            let ticks = |r: &Option<(Records, Option<TerminalInfo>)>| {
                r.as_ref().map(|(v, t)| {
                    let counts: Vec<_> = v
                        .iter()
                        .map(|(s, ticks, i)| (s.clone(), ticks.len(), i.is_some()))
                        .collect();
                    (counts, t.clone())
                })
            };
            panic!(
                "the mirror is not identical: rings {} vs {}; first difference: {diff:?}; \
                 ticks and records {:?} vs {:?}",
                a.len(),
                b.len(),
                ticks(&ra),
                ticks(&rb)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_mirror_is_identical_after_a_csv_replay_and_a_late_one_gets_the_history() {
    let nats = Nats::start();
    let (o, m1, m2) = (
        TempSegment::new("nats-origin"),
        TempSegment::new("nats-mirror"),
        TempSegment::new("nats-late"),
    );
    let _mirror = mirror(&m1, &nats.url(), "replay");
    let _origin = origin(
        &o,
        &nats.url(),
        "replay",
        &[
            "--csv",
            CSV,
            "--speed",
            "max",
            "--timeframes",
            "M1,M5,M15,M30,H1,H4,D1",
        ],
    );
    let until = Instant::now() + Duration::from_secs(60);
    while feed_state(&o.path) != Some(FeedState::Finished) {
        assert!(Instant::now() < until, "the replay did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_identical(&o.path, &m1.path, Duration::from_secs(30));
    let r = Reader::open(&m1.path).unwrap();
    // The origin's feed state comes with its status (once a second), which may come after
    // the last candles on a busy machine: wait for it, with a deadline.
    let until = Instant::now() + Duration::from_secs(30);
    while r.status().feed_state != Some(FeedState::Finished) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let st = r.status();
    assert_eq!(st.feed_kind, Some(FeedKind::Mirror));
    assert_eq!(st.liveness, Liveness::Alive);
    assert_eq!(
        st.feed_state,
        Some(FeedState::Finished),
        "the origin's feed state"
    );
    // The day has 1,440 M1 bars: the mirror's M1 ring holds them.
    let m1_ring = r.rings().next().unwrap();
    assert!(m1_ring.stats().unwrap().buffered >= 1000);

    // A mirror started after the replay ended gets the whole history; its stdout closed at
    // once (a pipe whose reader left) does not stop it: what it says there is for a watcher.
    let mut late = mirror(&m2, &nats.url(), "replay");
    drop(late.0.as_mut().unwrap().stdout.take());
    wait_identical(&o.path, &m2.path, Duration::from_secs(30));
    assert!(
        late.0.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the mirror ended when its stdout closed"
    );
}

/// `n` EURUSD ticks as MT5 exports them, a quarter second apart from 2024-03-04 10:00, a
/// new price each (so that no two are equal); returns the file and the ticks' times and bids.
fn tick_export(dir: &Path, n: u32) -> (std::path::PathBuf, Vec<(i64, f64)>) {
    let mut text = String::from("<DATE>\t<TIME>\t<BID>\t<ASK>\t<LAST>\t<VOLUME>\t<FLAGS>\n");
    let day = shm_core::days_from_civil(2024, 3, 4) * 86_400_000;
    let mut expected = Vec::new();
    for i in 0..n {
        let ms = 10 * 3_600_000 + i64::from(i) * 250;
        let bid = 1.08 + f64::from(i % 997) * 0.00001;
        let bid_text = format!("{bid:.5}");
        text.push_str(&format!(
            "2024.03.04\t{:02}:{:02}:{:02}.{:03}\t{bid_text}\t{:.5}\t\t\t6\n",
            ms / 3_600_000,
            ms / 60_000 % 60,
            ms / 1000 % 60,
            ms % 1000,
            bid + 0.00012
        ));
        expected.push((day + ms, bid_text.parse().unwrap()));
    }
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("EURUSD_202403041000_202403041400.csv");
    std::fs::write(&file, text).unwrap();
    (file, expected)
}

#[test]
fn every_tick_of_a_tick_replay_reaches_the_segment_http_and_mirrors_in_order_each_once() {
    let nats = Nats::start();
    let dir = std::env::temp_dir().join(format!("mtf-nats-ticks-{}", std::process::id()));
    let _cleanup = Cleanup(dir.clone());
    // More ticks than one page of the origin's tick answers (2,000), fewer than the ring's
    // depth, so that a late mirror pages through all of them.
    let (file, expected) = tick_export(&dir, 4500);
    let (o, m1, m2) = (
        TempSegment::new("nats-tick-origin"),
        TempSegment::new("nats-tick-mirror"),
        TempSegment::new("nats-tick-late"),
    );
    let _mirror = mirror(&m1, &nats.url(), "ticks");
    let port = free_port();
    let http = format!("127.0.0.1:{port}");
    let _origin = ChildGuard::spawn(
        workspace_bin("mtf-streamer"),
        &[
            "--segment-path",
            o.path.path().to_str().unwrap(),
            "--http",
            &http,
            "--nats",
            &nats.url(),
            "--nats-name",
            "ticks",
            "--csv",
            file.to_str().unwrap(),
            "--speed",
            "200",
            "--tick-depth",
            "5000",
            "--timeframes",
            "M1,M5",
        ],
    );
    wait_for_running(&o.path);
    let until = Instant::now() + Duration::from_secs(60);
    while feed_state(&o.path) != Some(FeedState::Finished) {
        assert!(Instant::now() < until, "the replay did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The segment: every tick of the file, in order, once.
    let (records, _) = all_records(&o.path).unwrap();
    let got: Vec<(i64, f64)> = records[0].1.iter().map(|t| (t.time_msc, t.bid)).collect();
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, expected, "the segment's ticks are the file's");
    // HTTP: the same, from the first.
    let body = mtf_tests::http_get(&http, "/streamer/ticks/EURUSD?since_msc=0&limit=10000");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let over_http: Vec<(i64, f64)> = v["ticks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["time_msc"].as_i64().unwrap(), t["bid"].as_f64().unwrap()))
        .collect();
    assert_eq!(over_http, expected, "the HTTP API's ticks are the file's");
    // A mirror that followed the replay, and one that starts after it.
    wait_identical(&o.path, &m1.path, Duration::from_secs(30));
    let _late = mirror(&m2, &nats.url(), "ticks");
    wait_identical(&o.path, &m2.path, Duration::from_secs(30));
    let (mirrored, _) = all_records(&m2.path).unwrap();
    assert_eq!(mirrored[0].1.len(), 4500);
    assert_eq!(
        mirrored[0].2.as_ref().map(|i| i.1),
        Some(InfoSource::Derived)
    );
    // Each mirror keeps its own history store, in the default place of its segment: every
    // tick it mirrored, the origin's (issue 38).
    assert_eq!(stored_ticks(&o.path), expected, "the origin's store");
    for m in [&m1, &m2] {
        wait_for_store(&m.path, Duration::from_secs(60), |s| s.ticks == expected);
    }
}

/// What the history store of the segment at `path` holds (its default place): EURUSD's ticks
/// (time and bid) and its M1 and M5 bars.
#[derive(Debug, PartialEq)]
struct Store {
    ticks: Vec<(i64, f64)>,
    m1: Vec<Candle>,
    m5: Vec<Candle>,
}

fn store_of(path: &SegmentPath) -> Store {
    let trust = shm_core::Trust::for_process().unwrap();
    let history = shm_core::History::at(shm_core::default_history_dir(path), trust);
    let bars = |tf| {
        let mut s = history.bars("EURUSD", tf);
        s.sync().unwrap();
        let mut out = Vec::new();
        s.range_as(i64::MIN, i64::MAX, usize::MAX, &mut out, |c| c);
        out
    };
    Store {
        ticks: stored_ticks(path),
        m1: bars(shm_core::Timeframe::M1),
        m5: bars(shm_core::Timeframe::M5),
    }
}

/// Waits until the store of the segment at `path` passes `done`; fails with what it holds.
fn wait_for_store(path: &SegmentPath, within: Duration, done: impl Fn(&Store) -> bool) {
    let until = Instant::now() + within;
    loop {
        let s = store_of(path);
        if done(&s) {
            return;
        }
        assert!(
            Instant::now() < until,
            "{path}'s store: {} ticks, {} M1 and {} M5 bars",
            s.ticks.len(),
            s.m1.len(),
            s.m5.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_mirror_copies_the_origins_store_deeper_than_its_rings_and_a_restart_repeats_nothing() {
    let nats = Nats::start();
    let dir = std::env::temp_dir().join(format!("mtf-nats-store-{}", std::process::id()));
    let _cleanup = Cleanup(dir.clone());
    // 9,000 ticks over 37 minutes: the origin's rings keep 1,000 ticks, 10 M1 and 3 M5 bars;
    // its store keeps them all.
    let (file, expected) = tick_export(&dir, 9000);
    let (o, m) = (
        TempSegment::new("nats-store-origin"),
        TempSegment::new("nats-store-mirror"),
    );
    let _origin = origin(
        &o,
        &nats.url(),
        "deep",
        &[
            "--csv",
            file.to_str().unwrap(),
            "--speed",
            "max",
            "--tick-depth",
            "1000",
            "--timeframes",
            "M1,M5",
            "--buffer",
            "M1=10",
            "--buffer",
            "M5=3",
        ],
    );
    let until = Instant::now() + Duration::from_secs(60);
    while feed_state(&o.path) != Some(FeedState::Finished) {
        assert!(Instant::now() < until, "the replay did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    let origin_store = store_of(&o.path);
    assert_eq!(origin_store.ticks, expected, "the origin's store");
    // Every bar but the newest closed one, which the store holds back for a correction.
    assert_eq!(origin_store.m1.len(), 36);
    assert_eq!(origin_store.m5.len(), 6);
    // A mirror started after the replay: its rings as the origin's, its store as the
    // origin's store, far deeper than the rings it synced from.
    let mut mirror_process = Some(mirror(&m, &nats.url(), "deep"));
    wait_identical(&o.path, &m.path, Duration::from_secs(30));
    wait_for_store(&m.path, Duration::from_secs(60), |s| *s == origin_store);
    // Killed and started again, it copies on from its store's newest record: nothing twice.
    drop(mirror_process.take());
    let mut again = mirror(&m, &nats.url(), "deep");
    again.wait_for_line("history store copied", Duration::from_secs(60));
    wait_identical(&o.path, &m.path, Duration::from_secs(30));
    assert_eq!(store_of(&m.path), origin_store, "the store after a restart");
}

/// The ticks of EURUSD the history store of the segment at `path` holds (its default place).
fn stored_ticks(path: &SegmentPath) -> Vec<(i64, f64)> {
    let trust = shm_core::Trust::for_process().unwrap();
    let history = shm_core::History::at(shm_core::default_history_dir(path), trust);
    let mut ticks = history.ticks("EURUSD");
    ticks.sync().unwrap();
    let mut out = Vec::new();
    ticks.range_as(i64::MIN, i64::MAX, usize::MAX, &mut out, |t| {
        (t.time_msc, t.bid)
    });
    out
}

/// Removes a directory when dropped.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn restarts_of_the_mirror_and_of_nats_leave_no_gap_and_no_duplicate() {
    let mut nats = Nats::start();
    let (o, m) = (TempSegment::new("nats-o2"), TempSegment::new("nats-m2"));
    // A replay slow enough to run through the restarts: 1,440 bars at 200 bars/s.
    let _origin = origin(
        &o,
        &nats.url(),
        "slow",
        &["--csv", CSV, "--speed", "12000", "--timeframes", "M1,M5,H1"],
    );
    let first = mirror(&m, &nats.url(), "slow");
    std::thread::sleep(Duration::from_millis(1500));
    // Kill the mirror mid-stream (ChildGuard kills on drop), and bring it back.
    drop(first);
    std::thread::sleep(Duration::from_millis(1000));
    let mirror_proc = mirror(&m, &nats.url(), "slow");
    std::thread::sleep(Duration::from_millis(1500));
    // Kill NATS mid-stream, and bring it back on the same port.
    nats.kill();
    std::thread::sleep(Duration::from_millis(1500));
    // Without the link the mirror says so, and its data is not live.
    wait_not_live(&m.path, "without NATS");
    nats.restart();
    let until = Instant::now() + Duration::from_secs(60);
    while feed_state(&o.path) != Some(FeedState::Finished) {
        assert!(Instant::now() < until, "the replay did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_identical(&o.path, &m.path, Duration::from_secs(30));
    // No duplicate: every ring strictly increasing in time.
    for (ring, candles) in all_candles(&m.path).unwrap() {
        assert!(
            candles.windows(2).all(|w| w[0].time < w[1].time),
            "{ring} has a repeated or backwards bar"
        );
    }
    drop(mirror_proc);
}

#[test]
fn a_mirror_catches_up_after_its_origin_is_killed_and_restarted() {
    let nats = Nats::start();
    let (o, m) = (TempSegment::new("nats-o3"), TempSegment::new("nats-m3"));
    let feed = ["--csv", CSV, "--speed", "12000", "--timeframes", "M1,M5,H1"];
    let first = origin(&o, &nats.url(), "restart", &feed);
    let _mirror = mirror(&m, &nats.url(), "restart");
    std::thread::sleep(Duration::from_millis(2000));
    // SIGKILL: no clean stop, no last status.
    drop(first);
    // The mirror notices within the origin's silence limit, and says so.
    wait_not_live(&m.path, "without its origin");
    // The origin comes back on its segment (a warm restart) and replays to the end.
    let _second = origin(&o, &nats.url(), "restart", &feed);
    let until = Instant::now() + Duration::from_secs(60);
    while feed_state(&o.path) != Some(FeedState::Finished) {
        assert!(Instant::now() < until, "the replay did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_identical(&o.path, &m.path, Duration::from_secs(30));
    assert_eq!(
        Reader::open(&m.path).unwrap().status().liveness,
        Liveness::Alive
    );
}

#[test]
fn an_absent_or_stuck_nats_never_stalls_the_writer() {
    // A port where nothing listens, and one where a server accepts and never answers.
    let absent = format!("nats://127.0.0.1:{}", free_port());
    let stuck = TcpListener::bind("127.0.0.1:0").unwrap();
    let stuck_url = format!("nats://{}", stuck.local_addr().unwrap());
    for url in [absent, stuck_url] {
        let o = TempSegment::new("nats-absent");
        let _origin = origin(&o, &url, "x", &["--csv", CSV, "--speed", "max"]);
        let until = Instant::now() + Duration::from_secs(30);
        while feed_state(&o.path) != Some(FeedState::Finished) {
            assert!(
                Instant::now() < until,
                "the replay stalled with NATS at {url}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let st = Reader::open(&o.path).unwrap().status();
        assert_eq!(st.liveness, Liveness::Alive);
        assert!(st.counters.get(shm_core::Counter::BarsClosed) > 1000);
    }
    drop(stuck);
}
