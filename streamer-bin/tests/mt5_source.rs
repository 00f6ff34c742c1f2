//! `--source mt5` against the real Python gateway (csv backend): a gateway that is down is
//! not fatal, backfill fills every timeframe from the terminal's bars, live ticks follow, and a
//! gateway restart is survived.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mtf_tests::{
    python3_available, spawn_csv_gateway, spawn_standin_gateway, wait_for_status, ChildGuard,
    TempSegment,
};
use shm_core::{Candle, Counter, FeedState, Reader, Status, Timeframe};

const BIN: &str = env!("CARGO_BIN_EXE_mtf-streamer");

fn python_available() -> bool {
    python3_available("the mt5 source tests")
}

struct Exports(PathBuf);

impl Drop for Exports {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// 300 M1 bars from 10:00 and 400 ticks from 15:00:00, as MT5 exports.
fn exports(tag: &str) -> (Exports, Vec<Candle>) {
    let dir = std::env::temp_dir().join(format!("mtf-mt5src-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let day = shm_core::days_from_civil(2024, 3, 4) * 86_400;
    let mut text = String::from(
        "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\r\n",
    );
    let mut bars = Vec::new();
    for i in 0..300i64 {
        let o = 1.05 + (i % 17) as f64 * 0.0001;
        // The expected candle is what the file says: prices as their 5-decimal text.
        let p = |x: f64| format!("{x:.5}").parse::<f64>().unwrap();
        let c = Candle {
            time: day + 10 * 3600 + i * 60,
            open: p(o),
            high: p(o + 0.0003),
            low: p(o - 0.0002),
            close: p(o + 0.0001),
            tick_volume: 50 + i as u64,
            spread: (i % 13) as i32,
            ..Candle::default()
        };
        text.push_str(&format!(
            "2024.03.04\t{:02}:{:02}:00\t{:.5}\t{:.5}\t{:.5}\t{:.5}\t{}\t0\t{}\r\n",
            10 + i / 60,
            i % 60,
            c.open,
            c.high,
            c.low,
            c.close,
            c.tick_volume,
            c.spread
        ));
        bars.push(c);
    }
    std::fs::write(dir.join("EURUSD_M1_202403041000_202403041459.csv"), text).unwrap();
    let mut text = String::from("<DATE>\t<TIME>\t<BID>\t<ASK>\t<LAST>\t<VOLUME>\t<FLAGS>\n");
    for i in 0..400u32 {
        let ms = i * 250;
        let bid = 1.08 + f64::from(i % 23) * 0.00001;
        text.push_str(&format!(
            "2024.03.04\t15:{:02}:{:02}.{:03}\t{bid:.5}\t{:.5}\t\t\t6\n",
            ms / 60_000,
            ms / 1000 % 60,
            ms % 1000,
            bid + 0.00012
        ));
    }
    std::fs::write(dir.join("EURUSD_202403041500_202403041502.csv"), text).unwrap();
    (Exports(dir), bars)
}

fn start_gateway(data: &Path, port: u16, speed: &str) -> ChildGuard {
    spawn_csv_gateway(data, port, &["--speed", speed]).0
}

fn wait_for(
    seg: &TempSegment,
    what: &str,
    limit: Duration,
    ok: impl Fn(&Status) -> bool,
) -> Reader {
    wait_for_status(&seg.path, what, limit, ok)
}

/// `mtf-streamer --source mt5` for EURUSD into `seg`, without HTTP.
fn streamer(gateway: &str, seg: &TempSegment, extra: &[&str]) -> ChildGuard {
    let mut args = vec!["--symbols", "EURUSD"];
    args.extend(extra);
    mtf_tests::spawn_mt5_streamer(BIN, gateway, seg, &args)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn candles(r: &Reader, tf: Timeframe) -> Vec<Candle> {
    let mut out = Vec::new();
    r.ring("EURUSD", tf)
        .unwrap()
        .read_last(2000, &mut out)
        .unwrap();
    out
}

#[test]
fn backfills_from_the_terminal_streams_ticks_and_survives_a_down_gateway() {
    if !python_available() {
        return;
    }
    let (data, bars) = exports("main");
    let seg = TempSegment::new("mt5src");
    let port = free_port();
    let gateway = format!("127.0.0.1:{port}");
    let _streamer = streamer(&gateway, &seg, &["--timeframes", "M1,M5,H1"]);
    // Nobody listens yet: the streamer runs and says so.
    wait_for(&seg, "feed disconnected", Duration::from_secs(20), |s| {
        s.feed_state == Some(FeedState::Disconnected)
    });

    let _gw = start_gateway(&data.0, port, "max");
    let reader = wait_for(&seg, "replay finished", Duration::from_secs(30), |s| {
        s.feed_state == Some(FeedState::Finished)
    });
    let st = reader.status();
    assert_eq!(st.counters.get(Counter::TicksProcessed), 400);
    assert!(
        st.counters.get(Counter::Reconnects) >= 1,
        "the first attempt failed"
    );
    assert!(st.counters.get(Counter::BarsBackfilled) >= 300);

    // M1: the terminal's 300 bars, field by field, then candles built from the ticks.
    let m1 = candles(&reader, Timeframe::M1);
    let from_file: Vec<Candle> = m1
        .iter()
        .take(300)
        .map(|c| Candle {
            forming: false,
            ..*c
        })
        .collect();
    assert_eq!(from_file, bars, "backfilled M1 equals the export");
    let live: Vec<_> = m1[300..]
        .iter()
        .map(|c| (c.time - bars[0].time - 5 * 3600, c.forming))
        .collect();
    assert_eq!(
        live,
        [(0, false), (60, true)],
        "15:00 closed, 15:01 forming, from ticks"
    );
    assert_eq!(
        m1[300].tick_volume, 240,
        "one minute of ticks at 4 per second"
    );
    // H1 came from the terminal's own H1 bars (built by the gateway), then the ticks' hour.
    let h1 = candles(&reader, Timeframe::H1);
    assert_eq!(h1.len(), 6);
    assert_eq!(
        h1[0].tick_volume,
        bars[..60].iter().map(|b| b.tick_volume).sum::<u64>()
    );
    assert!(h1[5].forming);

    // Every tick the terminal delivered, in its tick ring: in order, each once, as the file
    // has them (the csv gateway's flags, 6: bid and ask).
    let mut ticks = Vec::new();
    reader
        .ticks("EURUSD")
        .unwrap()
        .read_last(4096, &mut ticks)
        .unwrap();
    assert_eq!(ticks.len(), 400);
    let day = shm_core::days_from_civil(2024, 3, 4) * 86_400_000;
    for (i, t) in ticks.iter().enumerate() {
        let bid = format!("{:.5}", 1.08 + (i % 23) as f64 * 0.00001);
        assert_eq!(
            t.time_msc,
            day + 15 * 3_600_000 + i as i64 * 250,
            "tick {i}"
        );
        assert_eq!(format!("{:.5}", t.bid), bid, "tick {i}");
        assert_eq!(t.flags, 6);
    }
    // The csv gateway's symbol information: what its export shows.
    let info = reader.symbol_info("EURUSD").unwrap().expect("a record");
    assert_eq!(info.source, shm_core::InfoSource::Terminal);
    assert_eq!(info.info.get("digits"), Some(shm_core::InfoValue::Int(5)));
    assert_eq!(
        info.info.get("currency_profit"),
        Some(shm_core::InfoValue::Str("USD"))
    );
    // A csv gateway has no terminal.
    assert_eq!(reader.terminal().unwrap(), None);
}

#[test]
fn a_gateway_restart_is_followed_by_a_reconnect() {
    if !python_available() {
        return;
    }
    let (data, _) = exports("restart");
    let seg = TempSegment::new("mt5restart");
    let port = free_port();
    let gw = start_gateway(&data.0, port, "1");
    let gateway = format!("127.0.0.1:{port}");
    let _streamer = streamer(&gateway, &seg, &[]);
    wait_for(&seg, "live", Duration::from_secs(20), |s| {
        s.feed_state == Some(FeedState::Live) && s.counters.get(Counter::TicksProcessed) > 0
    });
    drop(gw);
    wait_for(&seg, "disconnected", Duration::from_secs(20), |s| {
        s.feed_state == Some(FeedState::Disconnected)
    });
    let _gw = start_gateway(&data.0, port, "1");
    let r = wait_for(&seg, "live again", Duration::from_secs(30), |s| {
        s.feed_state == Some(FeedState::Live) && s.counters.get(Counter::Reconnects) >= 1
    });
    assert_eq!(r.status().liveness, shm_core::Liveness::Alive);
}

/// A tick export for EURUSD covering the 3 minutes that end now (server time = UTC), 2 ticks a
/// second, written into a folder of its own.
fn ticks_ending_now(tag: &str) -> Exports {
    let dir = std::env::temp_dir().join(format!("mtf-mt5now-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let now_ms = (shm_core::now_ns() / 1_000_000) as i64;
    let first = now_ms - 180_000;
    let mut text = String::from("<DATE>\t<TIME>\t<BID>\t<ASK>\t<LAST>\t<VOLUME>\t<FLAGS>\n");
    let mut t = first - first.rem_euclid(500);
    let mut k = 0u32;
    while t < now_ms - 500 {
        let (day, ms) = (t.div_euclid(86_400_000), t.rem_euclid(86_400_000));
        let (y, m, d) = shm_core::civil_from_days(day);
        let bid = 1.08 + f64::from(k % 31) * 0.00001;
        text.push_str(&format!(
            "{y:04}.{m:02}.{d:02}\t{:02}:{:02}:{:02}.{:03}\t{bid:.5}\t{:.5}\t\t\t6\n",
            ms / 3_600_000,
            ms / 60_000 % 60,
            ms / 1000 % 60,
            ms % 1000,
            bid + 0.0001
        ));
        t += 500;
        k += 1;
    }
    std::fs::write(dir.join("EURUSD_202401010000_202401010000.csv"), text).unwrap();
    Exports(dir)
}

#[test]
fn every_candle_equals_the_terminals_with_no_tick_counted_twice_at_the_backfill_seam() {
    if !python_available() {
        return;
    }
    let data = ticks_ending_now("seam");
    let (_gw, addr) = spawn_csv_gateway(&data.0, 0, &["--speed", "max"]);
    let seg = TempSegment::new("mt5seam");
    let _streamer = streamer(&addr, &seg, &["--timeframes", "M1,M5"]);
    let reader = wait_for(&seg, "replay finished", Duration::from_secs(30), |s| {
        s.feed_state == Some(FeedState::Finished)
    });
    let mut client = mt5_gateway_client::Client::new(mt5_gateway_client::Config::new(&addr));
    for tf in [Timeframe::M1, Timeframe::M5] {
        // Oldest first; the last (MT5's position 0) is the bar still forming.
        let rates = client.copy_rates_from_pos("EURUSD", tf, 0, 100).unwrap();
        let terminal: Vec<Candle> = rates
            .iter()
            .enumerate()
            .map(|(k, r)| shm_core::Candle {
                forming: k + 1 == rates.len(),
                ..*r
            })
            .collect();
        let ours = candles(&reader, tf);
        assert_eq!(
            ours, terminal,
            "{tf}: the streamer's candles and the terminal's"
        );
    }
    assert_eq!(reader.status().counters.get(Counter::Corrections), 0);
}

// Unix only: stops the child with SIGTERM, which Windows has not (ChildGuard::stop).
#[cfg(unix)]
#[test]
fn a_symbol_the_gateway_does_not_know_stops_no_other_symbol() {
    if !python_available() {
        return;
    }
    let (data, _) = exports("unknown");
    let (_gw, addr) = spawn_csv_gateway(&data.0, 0, &["--speed", "max"]);
    let seg = TempSegment::new("mt5unknown");
    let streamer =
        mtf_tests::spawn_mt5_streamer(BIN, &addr, &seg, &["--symbols", "EURUSD,EURUSDm"]);
    let reader = wait_for(
        &seg,
        "EURUSD replay finished",
        Duration::from_secs(30),
        |s| s.feed_state == Some(FeedState::Finished),
    );
    let st = reader.status();
    assert_eq!(
        st.counters.get(Counter::TicksProcessed),
        400,
        "EURUSD streamed"
    );
    assert_eq!(st.counters.get(Counter::Reconnects), 0, "no reconnect loop");
    for ring in reader.rings() {
        assert_eq!(
            ring.unknown_to_source(),
            ring.symbol() == "EURUSDm",
            "{} {}",
            ring.symbol(),
            ring.timeframe()
        );
    }
    streamer.sigterm();
    let (_, _, stderr) = streamer.wait_for(Duration::from_secs(10)).expect("stops");
    let reports: Vec<&str> = stderr.lines().filter(|l| l.contains("EURUSDm")).collect();
    assert_eq!(reports.len(), 1, "reported once: {stderr}");
    assert!(
        reports[0].contains("MT5 error -4") && reports[0].contains("did you mean EURUSD?"),
        "{}",
        reports[0]
    );
}

// Unix only: stops the child with SIGTERM, which Windows has not (ChildGuard::stop).
#[cfg(unix)]
#[test]
fn a_gateway_that_trickles_bytes_never_delays_shutdown() {
    use std::io::Write;
    // A "gateway" that accepts, then sends one byte every half second, for ever.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            std::thread::spawn(move || {
                while s.write_all(b" ").is_ok() {
                    std::thread::sleep(Duration::from_millis(500));
                }
            });
        }
    });
    let seg = TempSegment::new("mt5trickle");
    let streamer = streamer(&addr, &seg, &[]);
    wait_for(&seg, "running", Duration::from_secs(20), |s| {
        s.writer_state == Some(shm_core::WriterState::Running)
            || s.feed_state == Some(FeedState::Starting)
    });
    std::thread::sleep(Duration::from_secs(2));
    let asked = std::time::Instant::now();
    streamer.sigterm();
    let (status, _, stderr) = streamer
        .wait_for(Duration::from_secs(10))
        .expect("the streamer stops");
    let took = asked.elapsed();
    assert!(status.success(), "{stderr}");
    // It used to take 24.6 s: the worker waited on the gateway.
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
}

/// Two terminals on one host (stand-ins, with other symbols and prices), a gateway and a
/// streamer each: each segment holds its own terminal's symbols only, and its own terminal's
/// live ticks. A bot picks a terminal by segment name.
#[test]
fn two_terminals_on_one_host_each_fill_their_own_segment() {
    if !python_available() {
        return;
    }
    let terminals = [
        (
            "EURUSD=40,GBPUSD=40",
            "1.1",
            "1001",
            &["EURUSD", "GBPUSD"][..],
        ),
        ("XAUUSD=40", "2000", "1002", &["XAUUSD"][..]),
    ];
    // Built before the terminals start making ticks.
    let streamer_bin = mtf_tests::workspace_bin("mtf-streamer");
    let mut running = Vec::new();
    for (k, (symbols, price, login, names)) in terminals.iter().enumerate() {
        let (gw, addr) = spawn_standin_gateway(
            &[
                ("MT5_STANDIN_SYMBOLS", symbols),
                ("MT5_STANDIN_PRICE", price),
                ("MT5_STANDIN_LOGIN", login),
                ("MT5_STANDIN_SEED", &(k + 7).to_string()),
            ],
            &[],
        );
        let seg = TempSegment::new(&format!("terminal-{k}"));
        let symbols = names.join(",");
        let streamer = mtf_tests::spawn_mt5_streamer(
            streamer_bin.to_str().unwrap(),
            &addr,
            &seg,
            &["--symbols", &symbols, "--timeframes", "M1,M5"],
        );
        running.push((
            gw,
            addr,
            seg,
            streamer,
            names.to_vec(),
            price.parse::<f64>().unwrap(),
        ));
    }
    for (_gw, addr, seg, _streamer, names, price) in &running {
        let mut client = mt5_gateway_client::Client::new(mt5_gateway_client::Config::new(addr));
        let r = wait_for_status(
            &seg.path,
            "the mt5 feed to be live",
            Duration::from_secs(60),
            |s| s.feed_state == Some(FeedState::Live),
        );
        let held: Vec<&str> = r.layout().symbols().collect();
        assert_eq!(
            held, *names,
            "a segment holds its own terminal's symbols only"
        );
        for (i, name) in names.iter().enumerate() {
            // Each symbol's prices are its terminal's: 1.1, 11, ... or 2000, 20000, ...
            let near = price * 10f64.powi(i as i32);
            // A tick the terminal makes after the feed went live reaches the segment: wait
            // for one newer than the terminal's newest now (the terminal ticks on).
            let then = client
                .symbol_info_tick(name)
                .expect("the stand-in's tick")
                .time_msc;
            let until = Instant::now() + Duration::from_secs(60);
            let seen = loop {
                if let Some(t) = r.last_tick(name).filter(|t| t.server_time_ms > then) {
                    break t;
                }
                assert!(
                    Instant::now() < until,
                    "{name}: no tick after {then} reached the segment: {:?}",
                    r.last_tick(name)
                );
                std::thread::sleep(Duration::from_millis(20));
            };
            assert!(
                (seen.bid / near - 1.0).abs() < 0.5,
                "{name} at {}",
                seen.bid
            );
        }
        assert!(r.status().counters.get(Counter::TicksProcessed) > 0);
    }
}

#[test]
fn symbol_information_and_identity_equal_what_the_terminal_serves_and_a_bad_record_is_refused() {
    if !python_available() {
        return;
    }
    let (_gw, addr) = spawn_standin_gateway(
        &[
            ("MT5_STANDIN_SYMBOLS", "EURUSD=50,GBPUSD=50"),
            ("MT5_STANDIN_LOGIN", "777"),
            ("MT5_STANDIN_NAME", "Terminal Q"),
        ],
        &[],
    );
    let seg = TempSegment::new("mt5info");
    let _streamer = streamer(&addr, &seg, &["--timeframes", "M1"]);
    let reader = wait_for(&seg, "running", Duration::from_secs(30), |s| {
        s.writer_state == Some(shm_core::WriterState::Running)
    });
    let mut client = mt5_gateway_client::Client::new(mt5_gateway_client::Config::new(&addr));
    let served = client.symbol_info("EURUSD").unwrap();
    assert_eq!(served.len(), 96);
    let record = reader.symbol_info("EURUSD").unwrap().expect("a record");
    // Every field the terminal served, except those that move with each tick.
    let moving = [
        "bid",
        "ask",
        "time",
        "spread",
        "last",
        "volume",
        "volume_real",
    ];
    for (name, field) in &served {
        if moving.contains(&name.as_str()) {
            continue;
        }
        let ours = record.info.get(name).unwrap_or_else(|| panic!("{name}"));
        let same = match (field, ours) {
            (mt5_gateway_client::InfoField::Bool(a), shm_core::InfoValue::Bool(b)) => *a == b,
            (mt5_gateway_client::InfoField::Int(a), shm_core::InfoValue::Int(b)) => *a == b,
            (mt5_gateway_client::InfoField::Int(a), shm_core::InfoValue::Float(b)) => {
                *a as f64 == b
            }
            (mt5_gateway_client::InfoField::Float(a), shm_core::InfoValue::Float(b)) => *a == b,
            (mt5_gateway_client::InfoField::Str(a), shm_core::InfoValue::Str(b)) => a == b,
            _ => false,
        };
        assert!(same, "{name}: served {field:?}, stored {ours:?}");
    }
    let terminal = reader.terminal().unwrap().expect("a terminal record");
    assert_eq!(
        (
            terminal.info.name.as_str(),
            terminal.info.login,
            terminal.info.server.as_str()
        ),
        ("Terminal Q", 777, "StandIn-Demo")
    );
    assert!(terminal.info.connected && terminal.info.build == 4755);
    let tick = reader
        .ticks("EURUSD")
        .unwrap()
        .latest()
        .unwrap()
        .expect("a tick at running");
    assert_eq!(
        tick.flags,
        shm_core::TICK_FLAG_BID | shm_core::TICK_FLAG_ASK
    );

    // A terminal whose description does not fit the record (200 bytes): refused, counted, and
    // the symbol has no record rather than a cut one.
    let long = "d".repeat(200);
    let (_gw2, addr2) = spawn_standin_gateway(
        &[
            ("MT5_STANDIN_SYMBOLS", "EURUSD=50"),
            ("MT5_STANDIN_DESCRIPTION", long.as_str()),
        ],
        &[],
    );
    let seg2 = TempSegment::new("mt5info-long");
    let _streamer2 = streamer(&addr2, &seg2, &["--timeframes", "M1"]);
    let reader2 = wait_for(&seg2, "running", Duration::from_secs(30), |s| {
        s.writer_state == Some(shm_core::WriterState::Running)
    });
    assert!(reader2.status().counters.get(Counter::RejectedSymbolInfo) >= 1);
    assert_eq!(reader2.symbol_info("EURUSD").unwrap(), None);
    assert!(reader2.ticks("EURUSD").unwrap().latest().unwrap().is_some());
}
