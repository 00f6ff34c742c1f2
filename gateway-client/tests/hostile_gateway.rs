//! The client against gateways that break the protocol on purpose: a line that never ends, a
//! gateway that drips one byte at a time, answers without or with the wrong id, junk. Each
//! must end in a typed error within the client's limits, and every failure backs off.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mt5_gateway_client::{Client, Config, Error, MAX_LINE};

/// A gateway on a free loopback port that answers every request line with `answer(line)`
/// (written by `send`), counting connections. It stops when the test process ends.
fn fake(send: impl Fn(&mut TcpStream, &str) + Send + Sync + 'static) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let connects = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connects);
    let send = Arc::new(send);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            // Relaxed: a statistic read after the fact.
            counted.fetch_add(1, Ordering::Relaxed);
            let send = Arc::clone(&send);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    send(&mut stream, &line);
                    line.clear();
                }
            });
        }
    });
    (addr, connects)
}

fn client(addr: &str) -> Client {
    let mut config = Config::new(addr);
    config.read_timeout = Duration::from_millis(300);
    config.request_deadline = Duration::from_millis(800);
    config.backoff_initial = Duration::from_millis(200);
    Client::new(config)
}

fn id_of(request: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(request).unwrap()["id"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_line_longer_than_the_protocol_allows_is_refused_without_reading_it_all() {
    let (addr, _) = fake(|s, _| {
        // 50 MB without a newline, as fast as the socket takes it.
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..50 {
            if s.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let mut c = client(&addr);
    match c.ping() {
        Err(Error::Protocol(m)) => assert!(m.contains(&MAX_LINE.to_string()), "{m}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[test]
fn a_gateway_that_drips_bytes_times_out_at_the_request_deadline() {
    let (addr, _) = fake(|s, _| {
        // One byte every 100 ms: each read succeeds, the line never completes in time.
        for _ in 0..100 {
            if s.write_all(b" ").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let mut c = client(&addr);
    let start = Instant::now();
    match c.ping() {
        Err(Error::Timeout { op }) => assert_eq!(op, "ping"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    let took = start.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn answers_without_or_with_another_id_are_protocol_errors() {
    let (addr, _) = fake(|s, _| {
        let _ = s.write_all(b"{\"ok\":true,\"result\":{\"time_ms\":1}}\n");
    });
    match client(&addr).ping() {
        Err(Error::Protocol(m)) => assert!(m.contains("without an id"), "{m}"),
        other => panic!("{other:?}"),
    }
    let (addr, _) = fake(|s, req| {
        let line = format!(
            "{{\"id\":{},\"ok\":true,\"result\":{{\"time_ms\":1}}}}\n",
            id_of(req) + 7
        );
        let _ = s.write_all(line.as_bytes());
    });
    match client(&addr).ping() {
        Err(Error::Protocol(m)) => assert!(m.contains("expected"), "{m}"),
        other => panic!("{other:?}"),
    }
    // The right id is accepted.
    let (addr, _) = fake(|s, req| {
        let line = format!(
            "{{\"id\":{},\"ok\":true,\"result\":{{\"time_ms\":5}}}}\n",
            id_of(req)
        );
        let _ = s.write_all(line.as_bytes());
    });
    assert_eq!(client(&addr).ping().unwrap(), 5);
}

#[test]
fn junk_answers_back_off_instead_of_reconnecting_at_once() {
    let (addr, connects) = fake(|s, _| {
        let _ = s.write_all(b"this is not json\n");
    });
    let mut c = client(&addr);
    let start = Instant::now();
    let mut refused_by_backoff = 0;
    while start.elapsed() < Duration::from_secs(1) {
        match c.ping() {
            Err(Error::Protocol(_)) => {}
            Err(Error::Unreachable {
                retry_in: Some(_), ..
            }) => refused_by_backoff += 1,
            other => panic!("{other:?}"),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Backoff 200 ms doubling (with jitter): at most a handful of connections in 1 s, not
    // the hundred an immediate reconnect would make.
    let n = connects.load(Ordering::Relaxed);
    assert!((1..=5).contains(&n), "{n} connections in 1 s");
    assert!(refused_by_backoff > 10);
}
