//! The HTTP server against hostile and heavy clients, over loopback: tokens and allowed hosts,
//! strict heads, oversized and slow requests, idle connections and the connection cap. The
//! endpoints themselves are in api.rs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use http_shim::{Limits, Shim, ShimConfig, StartError};
use mtf_tests::{Lcg, TempSegment};
use serde_json::Value;

mod common;

use common::*;

/// A shim allowing `cap` connections, with every one of them taken by a client that has
/// sent nothing (yet), once the shim has accepted them all.
fn shim_at_its_cap(seg: &TempSegment, cap: usize) -> (Shim, Vec<TcpStream>) {
    let shim = shim_with(seg, |c| {
        c.limits = Limits {
            max_connections: cap,
            ..Limits::default()
        }
    });
    let idle = (0..cap)
        .map(|_| TcpStream::connect(shim.local_addr()).unwrap())
        .collect();
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while shim.open_connections() < cap {
        assert!(
            std::time::Instant::now() < until,
            "the shim accepted {} of {cap} connections",
            shim.open_connections()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    (shim, idle)
}

#[test]
fn a_token_is_required_when_set_and_remote_binds_need_a_flag() {
    let seg = TempSegment::new("shim-token");
    let _feed = Feed::start(&seg);
    let shim = shim_with(&seg, |c| c.token = Some("s3cret".into()));
    let url = format!("http://{}/streamer/status", shim.local_addr());
    let r = agent().get(&url).call().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = agent()
        .get(&url)
        .header("Authorization", "Bearer wrong")
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = agent()
        .get(&url)
        .header("Authorization", "Bearer s3cret")
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let remote = ShimConfig {
        segment: seg.path.clone(),
        bind: "0.0.0.0:0".parse().unwrap(),
        ..ShimConfig::default()
    };
    assert!(matches!(
        Shim::start(remote),
        Err(StartError::RemoteNotAllowed(_))
    ));
}

#[test]
fn oversized_slow_and_bodied_requests_are_refused_without_harm() {
    let seg = TempSegment::new("shim-limits");
    let _feed = Feed::start(&seg);
    let shim = shim_with(&seg, |c| {
        c.limits = Limits {
            head_timeout: Duration::from_millis(300),
            ..Limits::default()
        }
    });
    let a = shim.local_addr();
    let long_url = format!(
        "GET /streamer/candles/{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "x".repeat(5000)
    );
    assert_eq!(status_of(&raw(a, long_url.as_bytes())), 414);
    let big_headers = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
        "X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
            .repeat(200)
    );
    assert_eq!(status_of(&raw(a, big_headers.as_bytes())), 431);
    // A method other than GET or HEAD is 405 with Allow, body or not.
    let r = raw(
        a,
        b"POST /streamer/status HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789",
    );
    assert_eq!(status_of(&r), 405, "{r}");
    assert!(r.contains("Allow: GET, HEAD"), "{r}");
    // A 1 MB body or a chunked one, which the server does not read: a POST still gets its
    // 405 with Allow, and it arrives, not a connection reset.
    for head in [
        "POST /streamer/status HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1048576\r\n\r\n",
        "PUT /streamer/candles/EURUSD/M1 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        let mut big = head.as_bytes().to_vec();
        big.extend(std::iter::repeat_n(b'x', 1 << 20));
        let r = raw(a, &big);
        assert_eq!(status_of(&r), 405, "{r}");
        assert!(r.contains("Allow: GET, HEAD"), "{r}");
    }
    // A GET with such a body is refused as such.
    let mut big =
        b"GET /streamer/status HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1048576\r\n\r\n"
            .to_vec();
    big.extend(std::iter::repeat_n(b'x', 1 << 20));
    let r = raw(a, &big);
    assert_eq!(status_of(&r), 413, "{r}");
    assert!(r.contains("BODY_TOO_LARGE"), "{r}");
    assert_eq!(status_of(&raw(a, b"GET / HTTP/2.0\r\n\r\n")), 505);
    assert_eq!(status_of(&raw(a, b"garbage\r\n\r\n")), 400);
    // Slowloris: half a head, then nothing: 408 after the head timeout.
    assert_eq!(
        status_of(&raw(
            a,
            b"GET /streamer/status HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
        )),
        408
    );
    // Still serving.
    assert_eq!(get(&shim, "/streamer/status").0, 200);
    // Each of those replies of the server's own is counted in /metrics, by its code.
    let metrics = raw(
        a,
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    for (code, n) in [
        ("URI_TOO_LONG", 1),
        ("HEADERS_TOO_LARGE", 1),
        ("BODY_TOO_LARGE", 1),
        ("HTTP_VERSION_NOT_SUPPORTED", 1),
        ("BAD_REQUEST", 1),
        ("REQUEST_TIMEOUT", 1),
        ("TOO_MANY_CONNECTIONS", 0),
    ] {
        let line = format!("mtf_shim_server_replies_total{{code=\"{code}\"}} {n}\n");
        assert!(metrics.contains(&line), "no {line:?} in:\n{metrics}");
    }
}

#[test]
fn keep_alive_and_pipelined_requests_are_answered_in_order() {
    let seg = TempSegment::new("shim-pipe");
    let _feed = Feed::start(&seg);
    let shim = shim(&seg);
    let r = raw(
        shim.local_addr(),
        b"GET /streamer/available HTTP/1.1\r\nHost: localhost\r\n\r\nGET /nope HTTP/1.1\r\nHost: localhost\r\n\r\nGET /streamer/available HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    let statuses: Vec<u16> = r
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| r[i + 9..i + 12].parse().unwrap())
        .collect();
    assert_eq!(statuses, [200, 404, 200], "{r}");
}

#[test]
fn a_thousand_idle_connections_do_not_stop_normal_requests() {
    let seg = TempSegment::new("shim-idle");
    let _feed = Feed::start(&seg);
    let shim = shim(&seg);
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(shim.local_addr()).unwrap())
        .collect();
    // Some idle ones have sent half a request, some nothing at all.
    for s in idle.iter().step_by(3) {
        let mut s = s;
        s.write_all(b"GET /streamer/status HTTP/1.1\r\nHost: localhost\r\n")
            .unwrap();
    }
    // Every idle connection accepted and being served (the cap is 4,096) before the request.
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while shim.open_connections() < 1000 {
        assert!(
            std::time::Instant::now() < until,
            "{} of 1,000 connections accepted",
            shim.open_connections()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let (status, v) = get(&shim, "/streamer/candles/BTCUSDc/M1?limit=50");
    assert_eq!((status, v["count"].as_u64()), (200, Some(31)));
    drop(idle);
}

#[test]
fn clients_that_never_finish_a_head_cannot_lock_out_whole_requests() {
    // The attack: every connection sends the start of a head and holds it for the whole head
    // timeout (here two minutes, so that only eviction can let the request below in).
    let seg = TempSegment::new("shim-partial");
    let _feed = Feed::start(&seg);
    let shim = shim_with(&seg, |c| {
        c.limits = Limits {
            max_connections: 40,
            head_timeout: Duration::from_secs(120),
            ..Limits::default()
        }
    });
    let a = shim.local_addr();
    let mut partial: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut s = TcpStream::connect(a).unwrap();
            s.write_all(b"GET /streamer/status HTTP/1.1\r\nX: ")
                .unwrap();
            s
        })
        .collect();
    // Until the server has taken the partial heads in, a newcomer may still be refused; then
    // the oldest partial head gives way to it.
    let until = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = raw(
            a,
            b"GET /streamer/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        );
        if status_of(&r) == 200 {
            break;
        }
        assert_eq!(status_of(&r), 503, "{r}");
        assert!(
            std::time::Instant::now() < until,
            "locked out by partial heads"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // And one of the partial heads was the one closed.
    let closed = partial.iter_mut().any(|s| {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut b = [0u8; 1];
        match s.read(&mut b) {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    });
    assert!(closed, "no partial head was closed");
}

#[test]
fn connections_beyond_the_cap_get_503_at_once() {
    let seg = TempSegment::new("shim-cap");
    let _feed = Feed::start(&seg);
    let (shim, idle) = shim_at_its_cap(&seg, 20);
    let r = raw(
        shim.local_addr(),
        b"GET /streamer/status HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert_eq!(status_of(&r), 503, "{r}");
    assert!(r.contains("TOO_MANY_CONNECTIONS"));
    drop(idle);
    // Served again once the idle connections' threads have seen them close.
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while raw_status(shim.local_addr(), "/streamer/status") != 200 {
        assert!(
            std::time::Instant::now() < until,
            "not served again after the connections closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let metrics = raw(
        shim.local_addr(),
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    // The refusal above, and any of the polls that met the cap still full.
    assert!(
        metrics.contains("mtf_shim_server_replies_total{code=\"TOO_MANY_CONNECTIONS\"} "),
        "{metrics}"
    );
    assert!(
        !metrics.contains("mtf_shim_server_replies_total{code=\"TOO_MANY_CONNECTIONS\"} 0\n"),
        "{metrics}"
    );
}

/// The status of a GET of `path` on a connection of its own.
fn raw_status(a: std::net::SocketAddr, path: &str) -> u16 {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    status_of(&raw(a, request.as_bytes()))
}

#[test]
fn random_paths_queries_and_methods_never_get_a_500() {
    let seg = TempSegment::new("shim-fuzz");
    let _feed = Feed::start(&seg);
    let shim = shim(&seg);
    let mut rng = Lcg(7);
    let methods = [
        "GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "get", "G3T", "",
    ];
    let segments = [
        "streamer",
        "candles",
        "status",
        "health",
        "available",
        "metrics",
        "BTCUSDc",
        "XAUUSDc",
        "M1",
        "m5",
        "H4",
        "MN1",
        "W1",
        "%00",
        "%ZZ",
        "%F0%9F%92%A5",
        "..",
        ".",
        "",
        "A#B",
        "%23",
        "x".repeat(40).leak(),
        "é",
        "%2F",
        "?",
        "&",
        "=",
        ";",
    ];
    let keys = [
        "limit",
        "format",
        "order",
        "symbols",
        "timeframes",
        "x",
        "",
        "limit%00",
        "%",
    ];
    let values = [
        "0",
        "1",
        "50",
        "500",
        "501",
        "-1",
        "abc",
        "raw",
        "dict",
        "asc",
        "desc",
        "BTCUSDc,XAUUSDc",
        "M1,M5",
        "%",
        "%zz",
        "",
        "1e3",
        "99999999999999999999",
    ];
    for i in 0..1500 {
        let depth = 1 + rng.next() % 5;
        let mut path = String::new();
        if !rng.next().is_multiple_of(4) {
            path.push_str("/streamer");
        }
        for _ in 0..depth {
            path.push('/');
            path.push_str(rng.pick(&segments));
        }
        let nq = rng.next() % 4;
        for q in 0..nq {
            path.push(if q == 0 { '?' } else { '&' });
            path.push_str(rng.pick(&keys));
            path.push('=');
            path.push_str(rng.pick(&values));
        }
        // Raw bytes, so the client does not tidy anything up.
        let method = rng.pick(&methods);
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let r = raw(shim.local_addr(), request.as_bytes());
        let status = status_of(&r);
        assert!(
            (200..600).contains(&status),
            "#{i} {request:?}: no status line: {r:?}"
        );
        assert_ne!(status, 500, "#{i} {request:?}: {r}");
        if method != "HEAD" && status != 200 || path.starts_with("/streamer") && method == "GET" {
            let body = r.split_once("\r\n\r\n").map_or("", |b| b.1);
            assert!(
                serde_json::from_str::<Value>(body).is_ok(),
                "#{i} {request:?}: body is not JSON: {body:?}"
            );
        }
    }
    assert_eq!(get(&shim, "/streamer/status").0, 200, "still serving");
}

#[test]
fn header_lines_are_strict_so_no_proxy_in_front_can_be_desynchronised() {
    let seg = TempSegment::new("shim-headers");
    let _feed = Feed::start(&seg);
    let shim = shim(&seg);
    let a = shim.local_addr();
    for head in [
        "GET /streamer/status HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding : chunked\r\n\r\n",
        "GET /streamer/status HTTP/1.1\r\nHost: localhost\r\nX-A\t: 1\r\n\r\n",
        "GET /streamer/status HTTP/1.1\r\nHost: localhost\r\nX-A: 1\r\n folded\r\n\r\n",
        "GET /streamer/status HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
    ] {
        // Exactly one answer, a 400, and nothing parsed from what followed the bad line.
        let r = raw(a, head.as_bytes());
        assert_eq!(status_of(&r), 400, "{head:?}: {r}");
        assert_eq!(r.matches("HTTP/1.1 ").count(), 1, "{head:?}: {r}");
    }
}

#[test]
fn bare_cr_nul_and_missing_or_repeated_hosts_are_400() {
    let seg = TempSegment::new("shim-cr");
    let _feed = Feed::start(&seg);
    let shim = shim(&seg);
    let a = shim.local_addr();
    for head in [
        // The attack's shape: a proxy treating CR as a line end would see a body here.
        "GET /streamer/status HTTP/1.1\r\nHost: localhost\r\nX-A: a\rContent-Length: 45\r\n\r\nGET /streamer/status HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "GET /streamer/status HTTP/1.1\r\nHost: localhost\r\nX-A: a\0b\r\n\r\n",
        "GET /streamer/status HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /streamer/status HTTP/1.1\r\nHost: localhost\r\nHost: other\r\n\r\n",
    ] {
        let r = raw(a, head.as_bytes());
        assert_eq!(status_of(&r), 400, "{head:?}: {r}");
        assert_eq!(r.matches("HTTP/1.1 ").count(), 1, "{head:?}: {r}");
    }
    // An HTTP/1.0 request may come without Host, and every answer says nosniff.
    let r = raw(a, b"GET /streamer/status HTTP/1.0\r\n\r\n");
    assert_eq!(status_of(&r), 200, "{r}");
    assert!(r.contains("X-Content-Type-Options: nosniff"), "{r}");
}

#[test]
fn without_a_token_only_addresses_localhost_and_allowed_names_are_served() {
    let seg = TempSegment::new("shim-rebind");
    let _feed = Feed::start(&seg);
    let shim = shim_with(&seg, |c| c.allowed_hosts = vec!["desk.lan".into()]);
    let a = shim.local_addr();
    let with_host = |host: &str| {
        let r = raw(
            a,
            format!("GET /streamer/status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        (status_of(&r), r)
    };
    for served in [
        "127.0.0.1",
        &a.to_string(),
        "localhost:8000",
        "LOCALHOST",
        "[::1]:8000",
        "192.168.1.20",
        "desk.lan",
        "desk.lan:8000",
    ] {
        assert_eq!(with_host(served).0, 200, "{served}");
    }
    // DNS rebinding: another site's name resolving to this host.
    for refused in [
        "evil.example",
        "evil.example:8000",
        "localhost.evil.example",
        "[evil]",
    ] {
        let (status, r) = with_host(refused);
        assert_eq!(status, 421, "{refused}: {r}");
        assert!(
            r.contains("HOST_NOT_ALLOWED") && r.contains("--allowed-host"),
            "{r}"
        );
    }
    // With a token, the token decides whatever the name.
    let tokened = shim_with(&seg, |c| c.token = Some("s3cret".into()));
    let r = raw(
        tokened.local_addr(),
        b"GET /streamer/status HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer s3cret\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&r), 200, "{r}");
}

#[test]
fn the_token_scheme_is_case_insensitive_and_auth_comes_before_the_method() {
    let seg = TempSegment::new("shim-auth");
    let _feed = Feed::start(&seg);
    let shim = shim_with(&seg, |c| c.token = Some("s3cret".into()));
    let a = shim.local_addr();
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = raw(
            a,
            format!("GET /streamer/status HTTP/1.1\r\nHost: localhost\r\nAuthorization: {scheme} s3cret\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(status_of(&r), 200, "{scheme}: {r}");
    }
    // Without the token, a POST learns nothing about which methods exist.
    let r = raw(
        a,
        b"POST /streamer/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&r), 401, "{r}");
}

#[test]
fn a_remote_bind_without_a_token_is_refused_unless_said_so() {
    let seg = TempSegment::new("shim-remote");
    let remote = |tweak: fn(&mut ShimConfig)| {
        let mut c = ShimConfig {
            segment: seg.path.clone(),
            bind: "0.0.0.0:0".parse().unwrap(),
            allow_remote: true,
            ..ShimConfig::default()
        };
        tweak(&mut c);
        Shim::start(c)
    };
    match remote(|_| {}) {
        Err(e @ StartError::RemoteWithoutToken(_)) => {
            let text = e.to_string();
            assert!(text.contains("MTF_SHIM_TOKEN"), "{text}");
            assert!(text.contains("--http-allow-remote-without-token"), "{text}");
        }
        other => panic!("expected RemoteWithoutToken, got {other:?}"),
    }
    assert!(remote(|c| c.token = Some("t".into())).is_ok());
    assert!(remote(|c| c.allow_remote_without_token = true).is_ok());
}

#[test]
fn idle_connections_near_the_cap_give_way_within_seconds() {
    let seg = TempSegment::new("shim-cap-idle");
    let _feed = Feed::start(&seg);
    // Every slot held by a client that never sends a byte: the lock-out the cap invites.
    let (shim, idle) = shim_at_its_cap(&seg, 20);
    assert_eq!(
        status_of(&raw(
            shim.local_addr(),
            b"GET /streamer/status HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )),
        503
    );
    // Near the cap the idle timeout is 1 s, not 60: the idle ones are closed...
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while shim.open_connections() > 15 {
        assert!(
            std::time::Instant::now() < until,
            "{} idle connections still open after 30 s",
            shim.open_connections()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = raw(
        shim.local_addr(),
        b"GET /streamer/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&r), 200, "{r}");
    // ...as many as it takes to be below three quarters of the cap again (15 of 20); the
    // others keep the ordinary idle timeout.
    let mut closed = 0;
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        if matches!(s.read(&mut [0u8; 1]), Ok(0)) {
            closed += 1;
        }
    }
    assert!(
        (5..=20).contains(&closed),
        "{closed} idle connections closed"
    );
}
