//! The push endpoints with real clients over loopback: server-sent events through a plain
//! socket and `curl -N`, WebSocket through tungstenite's client. Event order, coalescing,
//! resume, validation, the stream cap and slow consumers.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use http_shim::Limits;
use mtf_tests::TempSegment;
use serde_json::Value;
use shm_core::{Candle, Layout, Timeframe, Writer};

/// One server-sent event.
#[derive(Debug, Clone)]
struct Sse {
    event: String,
    id: Option<String>,
    data: Value,
}

/// An event-stream client on a plain socket.
struct SseClient {
    conn: BufReader<TcpStream>,
    status: u16,
    /// The whole body when the answer was not a stream (an error).
    body: String,
}

impl SseClient {
    fn open(shim: &http_shim::Shim, query: &str, last_event_id: Option<&str>) -> SseClient {
        let s = TcpStream::connect(shim.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut conn = BufReader::new(s);
        let mut request = format!("GET /streamer/stream?{query} HTTP/1.1\r\nHost: localhost\r\n");
        if let Some(id) = last_event_id {
            request.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        request.push_str("\r\n");
        conn.get_mut().write_all(request.as_bytes()).unwrap();
        let (status, headers) = read_response_head(&mut conn);
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse::<usize>().unwrap());
        let mut body = String::new();
        if let Some(n) = length {
            let mut b = vec![0; n];
            conn.read_exact(&mut b).unwrap();
            body = String::from_utf8(b).unwrap();
        }
        SseClient { conn, status, body }
    }

    /// The next event (comments and `retry` skipped), or `None` if none came within `wait`.
    fn next(&mut self, wait: Duration) -> Option<Sse> {
        self.conn.get_ref().set_read_timeout(Some(wait)).unwrap();
        let (mut event, mut id, mut data) = (String::new(), None, String::new());
        let mut line = String::new();
        loop {
            line.clear();
            match self.conn.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let l = line.trim_end_matches('\n');
            if l.is_empty() {
                if !data.is_empty() {
                    return Some(Sse {
                        event,
                        id,
                        data: serde_json::from_str(&data).unwrap(),
                    });
                }
                continue;
            }
            if let Some(v) = l.strip_prefix("event: ") {
                event = v.to_owned();
            } else if let Some(v) = l.strip_prefix("id: ") {
                id = Some(v.to_owned());
            } else if let Some(v) = l.strip_prefix("data: ") {
                data.push_str(v);
            }
        }
    }

    /// Candle events until `done` says so, within `wait` overall.
    fn candles_until(&mut self, wait: Duration, mut done: impl FnMut(&[Sse]) -> bool) -> Vec<Sse> {
        let until = Instant::now() + wait;
        let mut got = Vec::new();
        while !done(&got) {
            let left = until.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "events so far: {got:?}");
            if let Some(e) = self.next(left) {
                if e.event == "candle" {
                    got.push(e);
                }
            }
        }
        got
    }
}

/// Runs `f` on the feed's writer, then wakes the readers, as the streamer does after a batch.
fn write(feed: &Feed, f: impl FnOnce(&mut Writer)) {
    let mut guard = feed.writer.lock().unwrap();
    let w = guard.as_mut().unwrap();
    f(w);
    w.notify();
}

#[test]
fn closed_bars_come_once_in_order_and_forming_updates_are_coalesced() {
    let seg = TempSegment::new("push-order");
    let feed = Feed::start(&seg);
    let shim = shim(&seg);
    let mut client = SseClient::open(&shim, "symbols=BTCUSDc&timeframes=M1&interval_ms=200", None);
    assert_eq!(client.status, 200);
    let first = client.next(Duration::from_secs(5)).expect("a status event");
    assert_eq!(first.event, "status");
    assert_eq!(first.data["liveness"], "alive");
    // The current forming candle first.
    let start = forming(&seg);
    let got = client.candles_until(Duration::from_secs(5), |e| !e.is_empty());
    assert_eq!(got[0].data["complete"], false);
    assert_eq!(got[0].data["candle"]["time"], start.time);

    // 40 ticks in about 400 ms: at most one forming event per 200 ms reaches the client, and
    // the last one carries the last tick.
    let began = Instant::now();
    for i in 1..=40 {
        write(&feed, |w| {
            let m1 = w.ring("BTCUSDc", Timeframe::M1).unwrap();
            w.update_forming(m1, &candle(start.time, 90_000.0 + f64::from(i)));
        });
        std::thread::sleep(Duration::from_millis(10));
    }
    let spent = began.elapsed();
    let got = client.candles_until(Duration::from_secs(5), |e| {
        e.last()
            .is_some_and(|e| e.data["candle"]["close"] == 90_040.0)
    });
    let most = (spent.as_millis() / 200) as usize + 2;
    assert!(
        got.len() <= most,
        "{} forming events in {spent:?}: {got:?}",
        got.len()
    );
    assert!(got
        .iter()
        .all(|e| e.data["complete"] == false && e.id.is_none()));

    // Three bars close: each exactly once, in order, with its resume id.
    write(&feed, |w| {
        let m1 = w.ring("BTCUSDc", Timeframe::M1).unwrap();
        for k in 0..3 {
            w.push_closed(m1, &candle(start.time + k * 60, 90_100.0 + k as f64));
        }
        w.update_forming(m1, &candle(start.time + 180, 90_200.0));
    });
    let got = client.candles_until(Duration::from_secs(5), |e| {
        e.iter().filter(|e| e.data["complete"] == true).count() >= 3
            && e.last()
                .is_some_and(|e| e.data["candle"]["close"] == 90_200.0)
    });
    let closed: Vec<&Sse> = got.iter().filter(|e| e.data["complete"] == true).collect();
    let times: Vec<i64> = closed
        .iter()
        .map(|e| e.data["candle"]["time"].as_i64().unwrap())
        .collect();
    assert_eq!(times, [start.time, start.time + 60, start.time + 120]);
    assert_eq!(
        closed[2].id.as_deref(),
        Some((start.time + 120).to_string().as_str())
    );
    assert_eq!(closed[0].data["symbol"], "BTCUSDc");
    assert_eq!(closed[0].data["timeframe"], "M1");
    // The candle is the same JSON as /streamer/candles writes.
    let (_, answer) = get(&shim, "/streamer/candles/BTCUSDc/M1?limit=4&order=asc");
    assert_eq!(answer["candles"][2], closed[2].data["candle"]);
    // Nothing more is sent twice.
    let more = client.next(Duration::from_millis(500));
    assert!(
        more.as_ref().is_none_or(|e| e.data["complete"] != true),
        "{more:?}"
    );
}

#[test]
fn a_client_resuming_with_last_event_id_gets_the_bars_it_missed_first() {
    let seg = TempSegment::new("push-resume");
    let feed = Feed::start(&seg);
    let shim = shim(&seg);
    let start = forming(&seg);
    let mut client = SseClient::open(&shim, "symbols=BTCUSDc,XAUUSDc&timeframes=M1", None);
    client.next(Duration::from_secs(5)).expect("status");
    write(&feed, |w| {
        let m1 = w.ring("BTCUSDc", Timeframe::M1).unwrap();
        w.push_closed(m1, &candle(start.time, 90_001.0));
    });
    let got = client.candles_until(Duration::from_secs(5), |e| {
        e.iter().any(|e| e.data["complete"] == true)
    });
    let id = got
        .iter()
        .find_map(|e| e.id.clone())
        .expect("a closed bar carries an id");
    // One time per ring, in subscription order; XAUUSDc has no closed bar yet.
    assert_eq!(id, format!("{},0", start.time));
    drop(client);

    // Two bars close while the client is away.
    write(&feed, |w| {
        let m1 = w.ring("BTCUSDc", Timeframe::M1).unwrap();
        w.push_closed(m1, &candle(start.time + 60, 90_002.0));
        w.push_closed(m1, &candle(start.time + 120, 90_003.0));
    });
    let mut back = SseClient::open(&shim, "symbols=BTCUSDc,XAUUSDc&timeframes=M1", Some(&id));
    let got = back.candles_until(Duration::from_secs(5), |e| {
        e.iter().filter(|e| e.data["complete"] == true).count() >= 2
    });
    let closed: Vec<i64> = got
        .iter()
        .filter(|e| e.data["complete"] == true)
        .map(|e| e.data["candle"]["time"].as_i64().unwrap())
        .collect();
    assert_eq!(
        closed,
        [start.time + 60, start.time + 120],
        "missed bars, in order, once"
    );
    assert_eq!(
        got.iter().position(|e| e.data["complete"] == true),
        Some(0),
        "the missed bars come first"
    );
}

#[test]
fn streams_are_validated_before_they_start_and_capped() {
    let seg = TempSegment::new("push-cap");
    let feed = Feed::start(&seg);
    let shim = shim_with(&seg, |c| {
        c.limits = Limits {
            max_streams: 1,
            ..Limits::default()
        }
    });
    let refused = |query: &str| {
        let c = SseClient::open(&shim, query, None);
        let v: Value = serde_json::from_str(&c.body).unwrap();
        (
            c.status,
            v["error_code"].as_str().unwrap_or_default().to_owned(),
        )
    };
    assert_eq!(
        refused("symbols=NOPE&timeframes=M1"),
        (404, "SYMBOL_NOT_FOUND".into())
    );
    assert_eq!(
        refused("symbols=XAUUSDc&timeframes=M5"),
        (404, "TIMEFRAME_NOT_AVAILABLE".into())
    );
    assert_eq!(
        refused("symbols=BTCUSDc&timeframes=M7"),
        (400, "INVALID_TIMEFRAME".into())
    );
    assert_eq!(
        refused("symbols=BTCUSDc"),
        (400, "INVALID_PARAMETER".into())
    );
    assert_eq!(
        refused("symbols=BTCUSDc&timeframes=M1&interval_ms=5"),
        (400, "INVALID_PARAMETER".into())
    );

    let mut one = SseClient::open(&shim, "symbols=BTCUSDc&timeframes=M1", None);
    assert_eq!(one.status, 200);
    one.next(Duration::from_secs(5)).expect("status");
    assert_eq!(
        refused("symbols=BTCUSDc&timeframes=M1"),
        (503, "TOO_MANY_STREAMS".into())
    );
    // A client that leaves frees its place at once, not at the next write.
    drop(one);
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let c = SseClient::open(&shim, "symbols=BTCUSDc&timeframes=M1", None);
        if c.status == 200 {
            break;
        }
        assert!(Instant::now() < until, "the place was not freed");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A writer that is not running: 503 before the stream starts.
    let mut feed = feed;
    feed.stop_writer();
    let stopped = common::shim(&seg);
    assert_eq!(
        refused_on(&stopped, "symbols=BTCUSDc&timeframes=M1"),
        (503, "STREAMER_NOT_RUNNING".into())
    );
}

fn refused_on(shim: &http_shim::Shim, query: &str) -> (u16, String) {
    let c = SseClient::open(shim, query, None);
    let v: Value = serde_json::from_str(&c.body).unwrap();
    (
        c.status,
        v["error_code"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn a_stream_reports_the_writer_going_away() {
    let seg = TempSegment::new("push-status");
    let mut feed = Feed::start(&seg);
    let shim = shim(&seg);
    let mut client = SseClient::open(&shim, "symbols=BTCUSDc&timeframes=M1", None);
    assert_eq!(
        client.next(Duration::from_secs(5)).unwrap().data["liveness"],
        "alive"
    );
    feed.stop_writer();
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let e = client.next(Duration::from_secs(5)).expect("an event");
        if e.event == "status" {
            assert_eq!(e.data["liveness"], "stopped");
            assert_eq!(e.data["running"], false);
            break;
        }
        assert!(Instant::now() < until);
    }
}

#[test]
#[cfg_attr(
    windows,
    ignore = "runs curl.exe, which Windows 10 and later ship and Wine does not"
)]
fn curl_prints_candle_events_as_they_happen() {
    let seg = TempSegment::new("push-curl");
    let feed = Feed::start(&seg);
    let shim = shim(&seg);
    let url = format!(
        "http://{}/streamer/stream?symbols=BTCUSDc&timeframes=M1&interval_ms=10",
        shim.local_addr()
    );
    let curl = match std::process::Command::new("curl")
        .args(["-sN", "--max-time", "3", &url])
        .stdout(std::process::Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!("curl is needed for this test (./scripts/setup installs it): {e}"),
    };
    let start = forming(&seg);
    for i in 0..10 {
        std::thread::sleep(Duration::from_millis(100));
        write(&feed, |w| {
            let m1 = w.ring("BTCUSDc", Timeframe::M1).unwrap();
            w.update_forming(m1, &candle(start.time, 91_000.0 + f64::from(i)));
        });
    }
    let out = curl.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("event: status"), "{text}");
    assert!(
        text.contains("\"close\":91009.0"),
        "the last tick reached curl: {text}"
    );
}

#[test]
fn a_client_that_never_reads_is_dropped_and_slows_nobody() {
    let seg = TempSegment::new("push-slow");
    // 100 rings whose forming candles change every few milliseconds: several MB/s of events.
    let mut layout = Layout::new();
    let symbols: Vec<String> = (0..100).map(|i| format!("SYM{i}")).collect();
    for s in &symbols {
        layout.add_ring(s, Timeframe::M1, 10).unwrap();
    }
    let mut w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    w.set_running();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let rings: Vec<_> = (0..100)
                .map(|i| w.ring(&format!("SYM{i}"), Timeframe::M1).unwrap())
                .collect();
            let t = Timeframe::M1.bar_start((shm_core::now_ns() / 1_000_000_000) as i64);
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                for &r in &rings {
                    w.update_forming(
                        r,
                        &Candle {
                            tick_volume: n,
                            ..candle(t, 100.0 + (n % 1000) as f64)
                        },
                    );
                }
                w.heartbeat();
                w.notify();
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let shim = shim_with(&seg, |c| {
        c.limits = Limits {
            write_timeout: Duration::from_millis(500),
            ..Limits::default()
        }
    });
    let all = symbols.join(",");
    let query = format!("symbols={all}&timeframes=M1&interval_ms=10");
    // The slow one: opens the stream and never reads again.
    let slow = SseClient::open(&shim, &query, None);
    assert_eq!(slow.status, 200);
    let mut healthy = SseClient::open(&shim, "symbols=SYM7&timeframes=M1&interval_ms=10", None);
    let until = Instant::now() + Duration::from_secs(60);
    let mut events = 0;
    let dropped = loop {
        if healthy.next(Duration::from_secs(5)).is_some() {
            events += 1;
        }
        let (_, text) = metrics_text(&shim);
        let dropped = text
            .lines()
            .find(|l| l.starts_with("mtf_shim_stream_clients_dropped_total "))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap();
        if dropped >= 1 || Instant::now() > until {
            break dropped;
        }
    };
    assert_eq!(dropped, 1, "the client that never reads is dropped");
    // The healthy client kept getting events all along, and still does.
    assert!(events > 10, "{events} events");
    assert!(healthy.next(Duration::from_secs(5)).is_some());
    drop(slow);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
}

fn metrics_text(shim: &http_shim::Shim) -> (u16, String) {
    let mut resp = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
        .get(&format!("http://{}/metrics", shim.local_addr()))
        .call()
        .unwrap();
    (
        resp.status().as_u16(),
        resp.body_mut().read_to_string().unwrap(),
    )
}

mod websocket {
    use super::*;
    use tungstenite::{Message, WebSocket};

    fn connect(shim: &http_shim::Shim) -> WebSocket<TcpStream> {
        let s = TcpStream::connect(shim.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let url = format!("ws://{}/streamer/ws", shim.local_addr());
        tungstenite::client(url.as_str(), s).expect("handshake").0
    }

    fn next_json(ws: &mut WebSocket<TcpStream>) -> Value {
        loop {
            match ws.read().expect("a message") {
                Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn send(ws: &mut WebSocket<TcpStream>, text: &str) {
        ws.send(Message::text(text)).unwrap();
    }

    /// The close frame the server sends next (pings skipped), or what came instead.
    fn close_code(ws: &mut WebSocket<TcpStream>) -> Option<u16> {
        loop {
            match ws.read() {
                Ok(Message::Close(Some(f))) => return Some(f.code.into()),
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Text(_)) => continue,
                _ => return None,
            }
        }
    }

    #[test]
    fn protocol_errors_and_endless_fragments_get_the_close_code_rfc_6455_names() {
        let seg = TempSegment::new("push-ws-close");
        let _feed = Feed::start(&seg);
        let shim = shim(&seg);
        // An unmasked frame from a client (RFC 6455 5.1): 1002, not a bare end of stream.
        let mut ws = connect(&shim);
        ws.get_mut().write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
        assert_eq!(close_code(&mut ws), Some(1002));
        // A message that never completes: a text frame without FIN, then empty continuation
        // frames (masked, as a client's must be), more than a megabyte of them: 1008.
        let mut ws = connect(&shim);
        let mut frames = vec![0x01, 0x80, 1, 2, 3, 4];
        for _ in 0..200_000 {
            frames.extend_from_slice(&[0x00, 0x80, 1, 2, 3, 4]);
        }
        ws.get_mut()
            .set_write_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let _ = ws.get_mut().write_all(&frames); // the server may close before the end
        ws.get_mut()
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        assert_eq!(close_code(&mut ws), Some(1008));
    }

    #[test]
    fn a_subscription_with_ticks_gets_tick_events() {
        let seg = TempSegment::new("push-ws-ticks");
        let feed = Feed::start(&seg);
        let shim = shim(&seg);
        let mut ws = connect(&shim);
        send(
            &mut ws,
            r#"{"op":"subscribe","symbols":["BTCUSDc"],"timeframes":["M1"],"ticks":"yes"}"#,
        );
        assert_eq!(next_json(&mut ws)["error_code"], "INVALID_PARAMETER");
        send(
            &mut ws,
            r#"{"op":"subscribe","symbols":["BTCUSDc"],"timeframes":["M1"],"interval_ms":50,"ticks":true}"#,
        );
        // The stream follows each ring from its head at its first look, which may come after
        // a write: write a tick, look for a tick event, and again, until one comes.
        ws.get_mut()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        for k in 0i64.. {
            assert!(Instant::now() < until, "no tick event");
            write(&feed, |w| {
                let sym = w.symbol("BTCUSDc").unwrap();
                let t = shm_core::Tick {
                    time_msc: 1_700_000_000_000 + k,
                    bid: 90_000.5,
                    ask: 90_010.0,
                    flags: 6,
                    ..shm_core::Tick::default()
                };
                w.push_tick(sym, &t).unwrap();
            });
            let m = match ws.read() {
                Ok(Message::Text(t)) => serde_json::from_str::<Value>(t.as_str()).unwrap(),
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => panic!("{e}"),
            };
            if m["type"] == "ticks" {
                assert_eq!(m["symbol"], "BTCUSDc");
                assert_eq!(m["ticks"][0]["bid"], 90_000.5);
                assert_eq!(m["ticks"][0]["flags"], 6);
                break;
            }
        }
    }

    #[test]
    fn subscribe_receive_unsubscribe_and_errors_keep_the_connection() {
        let seg = TempSegment::new("push-ws");
        let feed = Feed::start(&seg);
        let shim = shim(&seg);
        let mut ws = connect(&shim);

        send(&mut ws, "not json");
        let e = next_json(&mut ws);
        assert_eq!(
            (e["type"].as_str(), e["error_code"].as_str()),
            (Some("error"), Some("INVALID_PARAMETER"))
        );
        send(
            &mut ws,
            r#"{"op":"subscribe","symbols":["NOPE"],"timeframes":["M1"]}"#,
        );
        let e = next_json(&mut ws);
        assert_eq!(e["error_code"], "SYMBOL_NOT_FOUND", "the HTTP codes: {e}");
        ws.send(Message::Binary(vec![1, 2, 3].into())).unwrap();
        assert_eq!(next_json(&mut ws)["type"], "error");

        // Still connected: a subscription works.
        send(
            &mut ws,
            r#"{"op":"subscribe","symbols":["BTCUSDc"],"timeframes":["M1"]}"#,
        );
        let ok = next_json(&mut ws);
        assert_eq!(ok["type"], "subscribed");
        assert_eq!(ok["pairs"][0]["symbol"], "BTCUSDc");
        let start = forming(&seg);
        write(&feed, |w| {
            let m1 = w.ring("BTCUSDc", Timeframe::M1).unwrap();
            w.push_closed(m1, &candle(start.time, 90_500.0));
        });
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let m = next_json(&mut ws);
            if m["type"] == "candle" && m["complete"] == true {
                assert_eq!(m["candle"]["time"], start.time);
                break;
            }
            assert!(Instant::now() < until);
        }
        // Ping, answered by a pong.
        ws.send(Message::Ping(b"hi".to_vec().into())).unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            match ws.read().unwrap() {
                Message::Pong(p) => {
                    assert_eq!(&p[..], b"hi");
                    break;
                }
                _ => assert!(Instant::now() < until),
            }
        }
        send(
            &mut ws,
            r#"{"op":"unsubscribe","symbols":["BTCUSDc"],"timeframes":["M1"]}"#,
        );
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let m = next_json(&mut ws);
            if m["type"] == "subscribed" {
                assert_eq!(m["pairs"], serde_json::json!([]));
                break;
            }
            assert!(Instant::now() < until);
        }
        ws.close(None).unwrap();
        // The server answers the close.
        let until = Instant::now() + Duration::from_secs(5);
        while !matches!(ws.read(), Err(tungstenite::Error::ConnectionClosed)) {
            assert!(Instant::now() < until);
        }
    }

    #[test]
    fn a_plain_get_on_the_websocket_endpoint_is_426() {
        let seg = TempSegment::new("push-ws-plain");
        let _feed = Feed::start(&seg);
        let shim = shim(&seg);
        let (status, v) = get(&shim, "/streamer/ws");
        assert_eq!(
            (status, v["error_code"].as_str()),
            (426, Some("UPGRADE_REQUIRED"))
        );
    }
}

#[test]
fn a_stream_that_asks_for_ticks_gets_them_coalesced_and_bounded() {
    let seg = TempSegment::new("push-ticks");
    let feed = Feed::start(&seg);
    let shim = shim(&seg);
    let tick = |k: u64| shm_core::Tick {
        time_msc: 1_700_000_000_000 + k as i64,
        bid: 90_000.0 + k as f64,
        ask: 90_010.0 + k as f64,
        flags: 6,
        ..shm_core::Tick::default()
    };
    let mut client = SseClient::open(
        &shim,
        "symbols=BTCUSDc&timeframes=M1&interval_ms=100&ticks=1",
        None,
    );
    assert_eq!(client.status, 200);
    // A stream without ticks=1 gets none.
    let mut quiet = SseClient::open(&shim, "symbols=BTCUSDc&timeframes=M1&interval_ms=100", None);
    // Each stream's first look sends its status event, in the look that also starts its
    // tick follower at the ring's head: after it, every tick written reaches the stream.
    for c in [&mut client, &mut quiet] {
        let first = c.next(Duration::from_secs(30)).expect("a first event");
        assert_eq!(first.event, "status");
    }
    // Five ticks, then a burst of 500 in one batch: the newest 32 reach the client, with the
    // number left out; never a backlog.
    write(&feed, |w| {
        let sym = w.symbol("BTCUSDc").unwrap();
        for k in 0..5 {
            w.push_tick(sym, &tick(k)).unwrap();
        }
    });
    // Tick events until the last tick written has come: (bids, skipped) of each.
    let tick_events = |client: &mut SseClient, last: f64| {
        let mut got: Vec<(Vec<f64>, u64)> = Vec::new();
        let until = Instant::now() + Duration::from_secs(30);
        while got
            .last()
            .is_none_or(|(bids, _)| bids.last() != Some(&last))
        {
            assert!(Instant::now() < until, "no tick event with {last}: {got:?}");
            if let Some(e) = client.next(Duration::from_secs(1)) {
                if e.event == "ticks" {
                    assert_eq!(e.data["symbol"], "BTCUSDc");
                    assert_eq!(e.data["ticks"][0]["flags"], 6);
                    let bids = e.data["ticks"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t["bid"].as_f64().unwrap())
                        .collect();
                    got.push((bids, e.data["skipped"].as_u64().unwrap()));
                }
            }
        }
        got
    };
    // Few ticks: every one, in order, none left out (in one event, or a few if a look came
    // between the writes).
    let got = tick_events(&mut client, 90_004.0);
    let bids: Vec<f64> = got.iter().flat_map(|(b, _)| b.clone()).collect();
    assert_eq!(bids, [90_000.0, 90_001.0, 90_002.0, 90_003.0, 90_004.0]);
    assert!(got.iter().all(|(_, skipped)| *skipped == 0));
    // A burst of 500: never more than 32 an event; what is sent and what is left out add up
    // to the burst, in order, ending with the newest.
    write(&feed, |w| {
        let sym = w.symbol("BTCUSDc").unwrap();
        for k in 5..505 {
            w.push_tick(sym, &tick(k)).unwrap();
        }
    });
    let got = tick_events(&mut client, 90_504.0);
    let max = mtf_watch::TICK_EVENT_MAX;
    assert!(got.iter().all(|(bids, _)| bids.len() <= max), "{got:?}");
    let sent: usize = got.iter().map(|(b, _)| b.len()).sum();
    let skipped: u64 = got.iter().map(|(_, s)| s).sum();
    assert_eq!(sent as u64 + skipped, 500, "{got:?}");
    let bids: Vec<f64> = got.iter().flat_map(|(b, _)| b.clone()).collect();
    assert!(bids.windows(2).all(|w| w[0] < w[1]), "in order, none twice");
    // The other stream saw no tick event.
    while let Some(e) = quiet.next(Duration::from_millis(300)) {
        assert_ne!(e.event, "ticks");
    }
    // A bad value of ticks is refused before the stream starts.
    let bad = SseClient::open(&shim, "symbols=BTCUSDc&timeframes=M1&ticks=yes", None);
    assert_eq!(bad.status, 400);
}
