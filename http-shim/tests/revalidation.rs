//! Candle answers from the closed-candle cache, entity tags with `304 Not Modified`, and gzip:
//! each checked against what a freshly written answer says, over loopback.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use http_shim::api::write_candles;
use mtf_tests::TempSegment;
use serde_json::Value;
use shm_core::{Layout, Reader, Timeframe, Writer};

/// One answer on a keep-alive connection: status, headers (names lower-cased), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// Sends `GET path` (or another method) with `headers` on `conn` and reads the answer.
fn exchange(
    conn: &mut BufReader<TcpStream>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    for (n, v) in headers {
        request.push_str(&format!("{n}: {v}\r\n"));
    }
    request.push_str("\r\n");
    conn.get_mut().write_all(request.as_bytes()).unwrap();
    let (status, headers) = read_response_head(conn);
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse::<usize>().unwrap());
    let mut body = vec![0; if method == "HEAD" { 0 } else { length }];
    conn.read_exact(&mut body).unwrap();
    Answer {
        status,
        headers,
        body,
    }
}

fn connect(shim: &http_shim::Shim) -> BufReader<TcpStream> {
    let s = TcpStream::connect(shim.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    BufReader::new(s)
}

/// The `candles` array a freshly written answer would carry, from the segment itself.
fn expected_candles(seg: &TempSegment, limit: usize, asc: bool, raw: bool) -> Value {
    let reader = Reader::open(&seg.path).unwrap();
    let ring = reader.ring("BTCUSDc", Timeframe::M1).unwrap();
    let mut candles = Vec::new();
    ring.read_last(limit, &mut candles).unwrap();
    let mut json = String::new();
    write_candles(&mut json, &candles, asc, raw);
    serde_json::from_str(&json).unwrap()
}

/// Every format, order and a spread of limits (inside, at and past the cache's first depth,
/// and the whole ring) answer exactly what a fresh serialisation of the segment says.
fn check_every_shape(seg: &TempSegment, conn: &mut BufReader<TcpStream>, when: &str) {
    for limit in [1, 2, 30, 50, 64, 65, 101] {
        for (format, raw) in [("dict", false), ("raw", true)] {
            for (order, asc) in [("desc", false), ("asc", true)] {
                let path = format!(
                    "/streamer/candles/BTCUSDc/M1?limit={limit}&format={format}&order={order}"
                );
                let a = exchange(conn, "GET", &path, &[]);
                assert_eq!(a.status, 200, "{when}: {path}");
                assert_eq!(
                    a.json()["candles"],
                    expected_candles(seg, limit, asc, raw),
                    "{when}: {path}"
                );
            }
        }
    }
}

#[test]
fn cached_answers_equal_fresh_ones_through_ticks_closes_amends_and_restarts() {
    let seg = TempSegment::new("shim-cache");
    let mut feed = Feed::start(&seg);
    let shim = shim(&seg);
    let mut conn = connect(&shim);
    check_every_shape(&seg, &mut conn, "first answers (the cache builds)");
    check_every_shape(&seg, &mut conn, "second answers (from the cache)");

    let now_min = forming(&seg).time;
    let with_writer = |f: &mut dyn FnMut(&mut Writer)| {
        let mut guard = feed.writer.lock().unwrap();
        f(guard.as_mut().unwrap());
    };
    with_writer(&mut |w| {
        let m1 = w.ring("BTCUSDc", Timeframe::M1).unwrap();
        w.update_forming(m1, &candle(now_min, 90_100.0));
    });
    check_every_shape(&seg, &mut conn, "after a tick");
    with_writer(&mut |w| {
        let m1 = w.ring("BTCUSDc", Timeframe::M1).unwrap();
        w.push_closed(m1, &candle(now_min, 90_100.0));
        w.update_forming(m1, &candle(now_min + 60, 90_101.0));
    });
    check_every_shape(&seg, &mut conn, "after a closed bar");
    with_writer(&mut |w| {
        let m1 = w.ring("BTCUSDc", Timeframe::M1).unwrap();
        // A late tick amends the bar just closed: same count of closed bars, other content.
        assert!(w.amend_last_closed(m1, &candle(now_min, 90_222.5)));
    });
    check_every_shape(&seg, &mut conn, "after an amended bar");

    // A new writer replaces the segment: same ring at the same index, other history.
    feed.stop_writer();
    let mut layout = Layout::new();
    layout.add_ring("BTCUSDc", Timeframe::M1, 100).unwrap();
    let mut w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    let m1 = w.ring("BTCUSDc", Timeframe::M1).unwrap();
    for k in (1..=40).rev() {
        w.push_closed(m1, &candle(now_min - k * 60, 50_000.0 + k as f64));
    }
    w.update_forming(m1, &candle(now_min, 50_000.0));
    w.set_server_time_offset(SERVER_OFFSET);
    w.set_running();
    std::thread::sleep(Duration::from_millis(300));
    check_every_shape(&seg, &mut conn, "after a restart with other history");

    let m = exchange(&mut conn, "GET", "/metrics", &[]);
    let text = String::from_utf8(m.body).unwrap();
    let sample = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
    };
    assert!(sample("mtf_shim_cache_entries ") >= 4.0);
    assert!(sample("mtf_shim_cache_bytes ") > 10_000.0);
    assert!(sample("mtf_shim_cache_answers_total{outcome=\"hit\"}") > 0.0);
    assert!(sample("mtf_shim_cache_answers_total{outcome=\"build\"}") > 0.0);
    drop(w);
}

#[test]
fn an_unchanged_answer_is_304_until_a_tick_changes_it() {
    let seg = TempSegment::new("shim-etag");
    let feed = Feed::start(&seg);
    let shim = shim(&seg);
    let mut conn = connect(&shim);
    let path = "/streamer/candles/BTCUSDc/M1?limit=10";
    let first = exchange(&mut conn, "GET", path, &[]);
    assert_eq!(first.status, 200);
    let tag = first.header("etag").expect("an ETag").to_owned();
    assert!(tag.starts_with("W/\""), "{tag}");
    assert_eq!(first.header("cache-control"), Some("no-cache"));

    let again = exchange(&mut conn, "GET", path, &[("If-None-Match", &tag)]);
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(tag.as_str()));
    assert_eq!(again.header("content-length"), None);
    // The connection goes on after a 304: the next answer is read whole.
    let head = exchange(&mut conn, "HEAD", path, &[("If-None-Match", &tag)]);
    assert_eq!(head.status, 304);
    // Another shape of the same ring is another answer.
    let raw = exchange(
        &mut conn,
        "GET",
        "/streamer/candles/BTCUSDc/M1?limit=10&format=raw",
        &[("If-None-Match", &tag)],
    );
    assert_eq!(raw.status, 200);
    assert_ne!(raw.header("etag"), Some(tag.as_str()));

    {
        let mut guard = feed.writer.lock().unwrap();
        let w = guard.as_mut().unwrap();
        let m1 = w.ring("BTCUSDc", Timeframe::M1).unwrap();
        let forming = forming(&seg);
        w.update_forming(m1, &candle(forming.time, forming.close + 0.5));
    }
    let ticked = exchange(&mut conn, "GET", path, &[("If-None-Match", &tag)]);
    assert_eq!(ticked.status, 200, "a tick changes the answer");
    let new_tag = ticked.header("etag").unwrap().to_owned();
    assert_ne!(new_tag, tag);
    assert_eq!(
        exchange(&mut conn, "GET", path, &[("If-None-Match", &new_tag)]).status,
        304
    );

    // The batch endpoint revalidates the same way; status answers are never stored.
    let batch = "/streamer/candles?symbols=BTCUSDc&timeframes=M1,M5&limit=5";
    let b = exchange(&mut conn, "GET", batch, &[]);
    let btag = b.header("etag").expect("a batch ETag").to_owned();
    assert_eq!(
        exchange(&mut conn, "GET", batch, &[("If-None-Match", &btag)]).status,
        304
    );
    let s = exchange(&mut conn, "GET", "/streamer/status", &[]);
    assert_eq!(
        (s.header("etag"), s.header("cache-control")),
        (None, Some("no-store"))
    );
}

#[test]
fn large_answers_are_gzipped_for_clients_that_ask() {
    let seg = TempSegment::new("shim-gzip");
    let _feed = Feed::start(&seg);
    let shim = shim(&seg);
    let mut conn = connect(&shim);
    let path = "/streamer/candles/BTCUSDc/M1?limit=31";
    let plain = exchange(&mut conn, "GET", path, &[]);
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary"), Some("Accept-Encoding"));

    let gz = exchange(&mut conn, "GET", path, &[("Accept-Encoding", "br, gzip")]);
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("vary"), Some("Accept-Encoding"));
    assert!(
        gz.body.len() * 3 < plain.body.len(),
        "{} of {}",
        gz.body.len(),
        plain.body.len()
    );
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_string(&mut text)
        .unwrap();
    let unzipped: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(unzipped["candles"], plain.json()["candles"]);

    // A small answer, and a client refusing gzip, get plain JSON.
    let small = exchange(
        &mut conn,
        "GET",
        "/streamer/candles/BTCUSDc/M1?limit=1",
        &[("Accept-Encoding", "gzip")],
    );
    assert_eq!(small.header("content-encoding"), None);
    small.json();
    let refused = exchange(&mut conn, "GET", path, &[("Accept-Encoding", "gzip;q=0")]);
    assert_eq!(refused.header("content-encoding"), None);
    refused.json();
    // HEAD says what GET would send.
    let head = exchange(&mut conn, "HEAD", path, &[("Accept-Encoding", "gzip")]);
    assert_eq!(head.header("content-encoding"), Some("gzip"));
}

#[test]
fn ticks_and_symbol_information_answer_with_validation_etags_and_gzip() {
    use shm_core::{InfoSource, InfoValue, SymbolInfo, Tick};
    let seg = TempSegment::new("shim-ticks");
    let feed = Feed::start(&seg);
    let shim = shim(&seg);
    let mut conn = connect(&shim);
    // No record yet: 404 with the reason; a symbol the segment lacks: SYMBOL_NOT_FOUND.
    let none = exchange(&mut conn, "GET", "/streamer/symbols/BTCUSDc", &[]);
    assert_eq!(none.status, 404);
    let missing = exchange(&mut conn, "GET", "/streamer/ticks/EURUSD", &[]);
    assert_eq!(
        (missing.status, missing.json()["error_code"].as_str()),
        (404, Some("SYMBOL_NOT_FOUND"))
    );
    for bad in [
        "/streamer/ticks/BTCUSDc?limit=0",
        "/streamer/ticks/BTCUSDc?limit=10001",
        "/streamer/ticks/BTCUSDc?since_msc=-1",
        "/streamer/ticks/BTCUSDc?since_msc=x",
        "/streamer/ticks/BTCUSDc?format=raw",
        "/streamer/ticks/BTC%2FUSD",
        "/streamer/symbols/BTCUSDc?limit=1",
        // Issue 40: a repeated parameter, a time past any a tick may hold, two cursors.
        "/streamer/ticks/BTCUSDc?limit=5&limit=7",
        "/streamer/ticks/BTCUSDc?since_msc=100000000000000000",
        "/streamer/ticks/BTCUSDc?since_msc=1&from_position=0",
        "/streamer/ticks/BTCUSDc?from_position=-1",
    ] {
        let a = exchange(&mut conn, "GET", bad, &[]);
        assert_eq!(
            a.status,
            400,
            "{bad}: {:?}",
            String::from_utf8_lossy(&a.body)
        );
    }
    {
        let mut guard = feed.writer.lock().unwrap();
        let w = guard.as_mut().unwrap();
        let sym = w.symbol("BTCUSDc").unwrap();
        for k in 0..300i64 {
            let t = Tick {
                time_msc: 1_700_000_000_000 + k * 10,
                bid: 90_000.0 + k as f64,
                ask: 90_015.0 + k as f64,
                flags: 6,
                ..Tick::default()
            };
            w.push_tick(sym, &t).unwrap();
        }
        let mut info = SymbolInfo::new("BTCUSDc");
        info.set("digits", InfoValue::Int(2)).unwrap();
        info.set("point", InfoValue::Float(0.01)).unwrap();
        info.set("spread_float", InfoValue::Bool(true)).unwrap();
        info.set("description", InfoValue::Str("Bitcoin vs US Dollar"))
            .unwrap();
        w.set_symbol_info(sym, &info, InfoSource::Terminal).unwrap();
    }
    let last = exchange(&mut conn, "GET", "/streamer/ticks/BTCUSDc?limit=3", &[]);
    assert_eq!(last.status, 200);
    let v = last.json();
    assert_eq!(v["count"], 3);
    let bids: Vec<f64> = v["ticks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["bid"].as_f64().unwrap())
        .collect();
    assert_eq!(bids, [90_297.0, 90_298.0, 90_299.0]);
    assert_eq!(v["ticks"][2]["time"], 1_700_000_002);
    assert_eq!(v["ticks"][2]["time_msc"], 1_700_000_002_990i64);
    let since = exchange(
        &mut conn,
        "GET",
        "/streamer/ticks/BTCUSDc?since_msc=1700000002950",
        &[],
    );
    assert_eq!(since.json()["count"], 5);
    // Unchanged: 304; a new tick changes it.
    let tag = last.header("etag").expect("an ETag").to_owned();
    let again = exchange(
        &mut conn,
        "GET",
        "/streamer/ticks/BTCUSDc?limit=3",
        &[("If-None-Match", &tag)],
    );
    assert_eq!(again.status, 304);
    // Gzip for a client that takes it, the same JSON inside.
    let zipped = exchange(
        &mut conn,
        "GET",
        "/streamer/ticks/BTCUSDc?limit=300",
        &[("Accept-Encoding", "gzip")],
    );
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(&zipped.body[..])
        .read_to_string(&mut text)
        .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["count"], 300);
    // The symbol record: MT5's 96 fields, the moving ones from the newest tick.
    let info = exchange(&mut conn, "GET", "/streamer/symbols/BTCUSDc", &[]);
    assert_eq!(info.status, 200);
    let v = info.json();
    assert_eq!(v["source"], "terminal");
    assert_eq!(v["info"].as_object().unwrap().len(), 96);
    assert_eq!(v["info"]["description"], "Bitcoin vs US Dollar");
    assert_eq!(v["info"]["bid"], 90_299.0);
    assert_eq!(v["info"]["spread"], 1500);
    assert_eq!(v["info"]["time"], 1_700_000_002);
    // Paging by the cursor every answer carries: 40 more ticks in one millisecond, read 3 at
    // a time from position 0, come back whole, each once, in order, and the paging ends
    // (`since_msc` paging repeated the boundary ticks, and stalled within one millisecond).
    {
        let mut guard = feed.writer.lock().unwrap();
        let w = guard.as_mut().unwrap();
        let sym = w.symbol("BTCUSDc").unwrap();
        for k in 0..40i64 {
            let t = Tick {
                time_msc: 1_700_000_003_000,
                bid: 91_000.0 + k as f64,
                ask: 91_015.0 + k as f64,
                flags: 6,
                ..Tick::default()
            };
            w.push_tick(sym, &t).unwrap();
        }
    }
    let (mut position, mut paged, mut pages) = (0u64, Vec::new(), 0);
    loop {
        let page = exchange(
            &mut conn,
            "GET",
            &format!("/streamer/ticks/BTCUSDc?from_position={position}&limit=3"),
            &[],
        )
        .json();
        assert_eq!(page["first_position"], position, "no tick was lost");
        let ticks = page["ticks"].as_array().unwrap().clone();
        if ticks.is_empty() {
            break;
        }
        paged.extend(ticks.iter().map(|t| t["bid"].as_f64().unwrap()));
        position = page["next_position"].as_u64().unwrap();
        pages += 1;
        assert!(pages <= 200, "the paging never ended");
    }
    // A symbol record stuck mid-write (its sequence odd, as a writer killed inside the write
    // leaves it): 503 RECORD_BUSY, not STREAMER_NOT_RUNNING (the writer runs).
    let infos_off = {
        let bytes = std::fs::read(seg.file()).unwrap();
        u64::from_le_bytes(bytes[208..216].try_into().unwrap())
    };
    let seq = {
        let bytes = std::fs::read(seg.file()).unwrap();
        let at = infos_off as usize;
        u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
    };
    write_word(&seg.file(), infos_off, seq | 1);
    let stuck = exchange(&mut conn, "GET", "/streamer/symbols/BTCUSDc", &[]);
    assert_eq!(
        (stuck.status, stuck.json()["error_code"].as_str()),
        (503, Some("RECORD_BUSY"))
    );
    write_word(&seg.file(), infos_off, seq);
    let want: Vec<f64> = (0..300)
        .map(|k| 90_000.0 + k as f64)
        .chain((0..40).map(|k| 91_000.0 + k as f64))
        .collect();
    assert_eq!(paged, want);
}

/// Writes one 64-bit word into the segment file at `at`, as a damaged or forged file has it.
fn write_word(file: &std::path::Path, at: u64, value: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&value.to_le_bytes()).unwrap();
}
