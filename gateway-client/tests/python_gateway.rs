//! The client against the real Python gateway (csv backend) over loopback: rates and ticks
//! checked field by field against the files the gateway serves.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mt5_gateway_client::{Client, Config, Error, Event};
use mtf_tests::{python3_available, spawn_csv_gateway, ChildGuard};
use shm_core::{days_from_civil, Timeframe};

fn python() -> Option<&'static str> {
    python3_available("the gateway client tests").then_some("python3")
}

/// A temporary folder of MT5 exports, removed on drop.
struct Exports(PathBuf);

impl Drop for Exports {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const BAR_HEADER: &str =
    "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>";
const TICK_HEADER: &str = "<DATE>\t<TIME>\t<BID>\t<ASK>\t<LAST>\t<VOLUME>\t<FLAGS>";

/// Writes 300 M1 bars and 500 ticks of EURUSD, and returns their rows as the file says them.
fn exports(tag: &str) -> (Exports, Vec<Vec<String>>, Vec<Vec<String>>) {
    let dir = std::env::temp_dir().join(format!("mtf-gw-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut bars = Vec::new();
    let mut text = format!("{BAR_HEADER}\r\n");
    for i in 0..300u32 {
        let (h, m) = (i / 60, i % 60);
        let o = 1.05 + f64::from(i % 17) * 0.0001;
        let row = vec![
            "2024.03.04".to_owned(),
            format!("{:02}:{:02}:00", 10 + h, m),
            format!("{o:.5}"),
            format!("{:.5}", o + 0.0003),
            format!("{:.5}", o - 0.0002),
            format!("{:.5}", o + 0.0001),
            format!("{}", 50 + i),
            "0".into(),
            format!("{}", i % 13),
        ];
        text.push_str(&row.join("\t"));
        text.push_str("\r\n");
        bars.push(row);
    }
    std::fs::write(dir.join("EURUSD_M1_202403041000_202403041459.csv"), text).unwrap();
    let mut ticks = Vec::new();
    let mut text = format!("{TICK_HEADER}\n");
    for i in 0..500u32 {
        let ms = i * 137;
        let bid = 1.08 + f64::from(i % 23) * 0.00001;
        let row = vec![
            "2024.03.04".to_owned(),
            format!(
                "15:{:02}:{:02}.{:03}",
                ms / 60_000,
                ms / 1000 % 60,
                ms % 1000
            ),
            format!("{bid:.5}"),
            format!("{:.5}", bid + 0.00012),
            String::new(),
            String::new(),
            "6".into(),
        ];
        text.push_str(&row.join("\t"));
        text.push('\n');
        ticks.push(row);
    }
    std::fs::write(dir.join("EURUSD_202403041500_202403041501.csv"), text).unwrap();
    (Exports(dir), bars, ticks)
}

/// Starts the gateway on `port` (0 for any) and returns it with its address.
fn gateway(_python: &str, data: &Path, port: u16, extra: &[&str]) -> (ChildGuard, String) {
    spawn_csv_gateway(data, port, extra)
}

fn epoch(date: &str, time: &str) -> i64 {
    let d: Vec<u32> = date.split('.').map(|x| x.parse().unwrap()).collect();
    let (hms, ms) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    (days_from_civil(i64::from(d[0]), d[1], d[2]) * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1000
        + ms.parse::<i64>().unwrap()
}

#[test]
fn rates_and_ticks_match_the_files_field_by_field() {
    let Some(py) = python() else { return };
    let (data, bars, ticks) = exports("fields");
    let (_gw, addr) = gateway(py, &data.0, 0, &[]);
    let mut client = Client::new(Config::new(addr));

    let hello = client.hello().unwrap();
    assert_eq!(
        (
            hello.protocol,
            hello.backend.as_str(),
            hello.symbols.as_slice()
        ),
        (1, "csv", &["EURUSD".to_owned()][..])
    );
    assert!(client.ping().unwrap() > 1_700_000_000_000);

    let rates = client
        .copy_rates_from_pos("EURUSD", Timeframe::M1, 0, 300)
        .unwrap();
    assert_eq!(rates.len(), 300);
    for (r, row) in rates.iter().zip(&bars) {
        assert_eq!(r.time, epoch(&row[0], &row[1]) / 1000);
        assert_eq!(r.open, row[2].parse::<f64>().unwrap());
        assert_eq!(r.high, row[3].parse::<f64>().unwrap());
        assert_eq!(r.low, row[4].parse::<f64>().unwrap());
        assert_eq!(r.close, row[5].parse::<f64>().unwrap());
        assert_eq!(r.tick_volume, row[6].parse::<u64>().unwrap());
        assert_eq!(r.real_volume, row[7].parse::<u64>().unwrap());
        assert_eq!(r.spread, row[8].parse::<i32>().unwrap());
    }
    // Position 0 is the newest (forming) bar; positions count back from it.
    let last_two = client
        .copy_rates_from_pos("EURUSD", Timeframe::M1, 0, 2)
        .unwrap();
    assert_eq!(last_two, rates[298..]);
    assert_eq!(
        client
            .copy_rates_from_pos("EURUSD", Timeframe::M1, 1, 1)
            .unwrap(),
        rates[298..299]
    );
    let range = client
        .copy_rates_range("EURUSD", Timeframe::M1, rates[10].time, rates[19].time)
        .unwrap();
    assert_eq!(range, rates[10..20], "inclusive at both ends");
    // H1 built from the M1 file by the gateway.
    let h1 = client
        .copy_rates_from_pos("EURUSD", Timeframe::H1, 0, 10)
        .unwrap();
    assert_eq!(h1.len(), 5);
    assert_eq!(
        h1[0].tick_volume,
        rates[..60].iter().map(|r| r.tick_volume).sum::<u64>()
    );

    let last = client.symbol_info_tick("EURUSD").unwrap();
    let row = ticks.last().unwrap();
    assert_eq!(
        (last.time_msc, last.bid, last.ask),
        (
            epoch(&row[0], &row[1]),
            row[2].parse().unwrap(),
            row[3].parse().unwrap()
        )
    );

    let mut stream = client.subscribe_ticks(&["EURUSD"]).unwrap();
    let mut got = Vec::new();
    loop {
        match stream.next_event().unwrap() {
            Event::Tick { symbol, tick } => {
                assert_eq!(symbol, "EURUSD");
                got.push(tick);
            }
            Event::Heartbeat => {}
            Event::End { .. } => break,
            Event::Refused { symbol, why } => {
                panic!("the real gateway's tick refused: {symbol}: {why}")
            }
        }
    }
    assert_eq!(got.len(), ticks.len());
    for (t, row) in got.iter().zip(&ticks) {
        let ms = epoch(&row[0], &row[1]);
        assert_eq!((t.time_msc, t.time()), (ms, ms.div_euclid(1000)));
        assert_eq!(t.bid, row[2].parse::<f64>().unwrap());
        assert_eq!(t.ask, row[3].parse::<f64>().unwrap());
        assert_eq!(t.flags, 6);
    }
    // The request connection is still usable beside the stream.
    assert_eq!(
        client
            .copy_rates_from_pos("EURUSD", Timeframe::M1, 0, 1)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn errors_are_typed() {
    let Some(py) = python() else { return };
    let (data, _, _) = exports("errors");
    let (_gw, addr) = gateway(py, &data.0, 0, &[]);
    let mut client = Client::new(Config::new(addr));
    match client.copy_rates_from_pos("GBPUSD", Timeframe::M1, 0, 10) {
        Err(Error::Mt5 { code: -4, .. }) => {}
        other => panic!("expected MT5 error -4, got {other:?}"),
    }
    match client.copy_rates_from_pos("EURUSD", Timeframe::M1, 0, 0) {
        Err(Error::Gateway { code, .. }) => assert_eq!(code, "BAD_REQUEST"),
        other => panic!("expected BAD_REQUEST, got {other:?}"),
    }
    match client.subscribe_ticks(&["GBPUSD"]) {
        Err(Error::Mt5 { code: -4, .. }) => {}
        other => panic!("expected MT5 error -4, got {other:?}"),
    }
    // After errors the connection still works.
    assert!(client.ping().is_ok());
}

#[test]
fn an_unreachable_gateway_is_reported_and_retried_with_backoff() {
    // A port nothing listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = Config::new(format!("127.0.0.1:{port}"));
    config.backoff_initial = Duration::from_millis(100);
    let mut client = Client::new(config);
    match client.ping() {
        // Half the step plus a random part of the other half (jitter).
        Err(Error::Unreachable {
            retry_in: Some(d), ..
        }) => assert!(
            (Duration::from_millis(50)..=Duration::from_millis(100)).contains(&d),
            "{d:?}"
        ),
        other => panic!("{other:?}"),
    }
    // Within the backoff the client does not even try.
    match client.ping() {
        Err(Error::Unreachable { reason, .. }) => {
            // ... and still says why the last attempt failed.
            assert!(reason.starts_with("last attempt: "), "{reason}");
            assert!(reason.contains("refused"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    std::thread::sleep(Duration::from_millis(120));
    match client.ping() {
        Err(Error::Unreachable {
            retry_in: Some(d), ..
        }) => assert!(
            (Duration::from_millis(100)..=Duration::from_millis(200)).contains(&d),
            "doubled: {d:?}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_silent_gateway_times_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = Config::new(listener.local_addr().unwrap().to_string());
    config.read_timeout = Duration::from_millis(200);
    let mut client = Client::new(config);
    let start = Instant::now();
    match client.ping() {
        Err(Error::Timeout { op }) => assert_eq!(op, "ping"),
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(!client.is_connected(), "a timed-out connection is dropped");
}

#[test]
fn the_client_reconnects_after_the_gateway_restarts() {
    let Some(py) = python() else { return };
    let (data, _, _) = exports("restart");
    let (gw, addr) = gateway(py, &data.0, 0, &[]);
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let mut config = Config::new(addr);
    config.backoff_initial = Duration::from_millis(50);
    let mut client = Client::new(config);
    assert!(client.ping().is_ok());
    drop(gw); // killed
    assert!(client.ping().is_err(), "the old connection is gone");
    let (_gw, _) = gateway(py, &data.0, port, &[]);
    let start = Instant::now();
    loop {
        match client.ping() {
            Ok(_) => break,
            Err(e) => assert!(
                start.elapsed() < Duration::from_secs(10),
                "never reconnected: {e}"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_gateway_with_a_token_serves_only_clients_that_send_it() {
    let Some(py) = python() else { return };
    let (data, _, _) = exports("token");
    let (_gw, addr) = gateway(py, &data.0, 0, &["--token", "s3cret"]);
    let mut without = Client::new(Config::new(addr.clone()));
    match without.ping() {
        Err(Error::Gateway { code, .. }) => assert_eq!(code, "UNAUTHORIZED"),
        other => panic!("expected UNAUTHORIZED, got {other:?}"),
    }
    let mut config = Config::new(addr);
    config.token = Some("s3cret".into());
    let mut with = Client::new(config);
    assert!(with.ping().is_ok());
    let stream = with.subscribe_ticks(&["EURUSD"]);
    assert!(stream.is_ok(), "streams too: {:?}", stream.err());
}
