//! The secured configuration of docs/NATS.md, run on a real `nats-server`: the origin and the
//! mirror log in with their own users, a client without credentials is refused, and a client
//! with the mirror's credentials can neither forge a candle or a status nor answer a request.
//! Passwords are generated per run; no secret reaches a banner.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::{Event, ServerError};
use mtf_tests::{free_port, wait_for_running, workspace_bin, ChildGuard, TempSegment};
use shm_core::{Candle, Reader, SegmentPath};

/// The bundled day of EURUSD M1 bars (the repository's test data).
const CSV: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/EURUSD_M1_202401020000_202401022359.csv"
);

/// A directory for the server's configuration, removed afterwards.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The configuration of docs/NATS.md for segment `desk`, on `port`.
fn config(port: u16, origin: &str, mirror: &str) -> String {
    format!(
        r#"listen: 127.0.0.1:{port}
authorization {{
  users = [
    {{ user: origin, password: "{origin}",
      permissions: {{
        publish:   {{ allow: ["mtf.desk.candles.>", "mtf.desk.ticks.>", "mtf.desk.status"] }}
        subscribe: {{ allow: ["mtf.desk.req.>"] }}
        allow_responses: true
      }} }}
    {{ user: mirror, password: "{mirror}",
      permissions: {{
        publish:   {{ allow: ["mtf.desk.req.>"] }}
        subscribe: {{ allow: ["mtf.desk.candles.>", "mtf.desk.ticks.>", "mtf.desk.status", "_INBOX.>"] }}
      }} }}
  ]
}}
"#
    )
}

fn secret(tag: &str) -> String {
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        shm_core::now_ns() % 1_000_000_007
    )
}

/// A `nats-server` with the configuration file `conf`, once it accepts connections on `port`.
fn nats_server(conf: &std::path::Path, port: u16) -> ChildGuard {
    let server = ChildGuard::spawn("nats-server", &["-c", conf.to_str().unwrap()]);
    let until = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

/// A `nats-server` running the secured configuration of docs/NATS.md, with passwords of this
/// run; stopped and its directory removed when dropped.
struct Secured {
    url: String,
    origin_pw: String,
    mirror_pw: String,
    _server: ChildGuard,
    _dir: TempDir,
}

impl Secured {
    fn start(tag: &str) -> Secured {
        if Command::new("nats-server")
            .arg("--version")
            .output()
            .is_err()
        {
            panic!("nats-server is not installed; ./scripts/setup installs it");
        }
        let (origin_pw, mirror_pw) = (secret("origin"), secret("mirror"));
        let port = free_port();
        let dir = TempDir(std::env::temp_dir().join(format!("mtf-nats-{tag}-{port}")));
        std::fs::create_dir_all(&dir.0).unwrap();
        let conf = dir.0.join("nats.conf");
        std::fs::write(&conf, config(port, &origin_pw, &mirror_pw)).unwrap();
        Secured {
            _server: nats_server(&conf, port),
            _dir: dir,
            url: format!("nats://127.0.0.1:{port}"),
            origin_pw,
            mirror_pw,
        }
    }

    /// `program` with `args`, its NATS password in the environment.
    fn spawn(&self, program: &str, args: &[&str], password: &str) -> ChildGuard {
        let child = Command::new(workspace_bin(program))
            .args(args)
            .env("MTF_NATS_PASSWORD", password)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        ChildGuard(Some(child))
    }

    /// The origin: the bundled CSV replayed into `seg` at full speed, published as `desk`.
    fn origin(&self, seg: &TempSegment) -> ChildGuard {
        let origin = self.spawn(
            "mtf-streamer",
            &[
                "--segment-path",
                seg.path.path().to_str().unwrap(),
                "--no-http",
                "--nats",
                &self.url,
                "--nats-user",
                "origin",
                "--nats-name",
                "desk",
                "--csv",
                CSV,
                "--speed",
                "max",
                "--timeframes",
                "M1,M5,H1",
            ],
            &self.origin_pw,
        );
        wait_for_running(&seg.path);
        origin
    }

    /// A mirror of `desk` into `seg`.
    fn mirror(&self, seg: &TempSegment) -> ChildGuard {
        self.spawn(
            "mtf-mirror",
            &[
                "--nats",
                &self.url,
                "--nats-user",
                "mirror",
                "--source-segment",
                "desk",
                "--segment-path",
                seg.path.path().to_str().unwrap(),
            ],
            &self.mirror_pw,
        )
    }
}

fn all_candles(path: &SegmentPath) -> Option<Vec<Vec<Candle>>> {
    let r = Reader::open(path).ok()?;
    let mut out = Vec::new();
    for ring in r.rings() {
        let mut c = Vec::new();
        ring.read_last(ring.capacity() as usize + 1, &mut c).ok()?;
        out.push(c);
    }
    Some(out)
}

fn wait_identical(origin: &SegmentPath, mirror: &SegmentPath) {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let a = all_candles(origin);
        if a.is_some() && a == all_candles(mirror) {
            return;
        }
        assert!(
            Instant::now() < until,
            "the mirror never matched its origin"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn only_the_origin_can_change_a_mirror_on_a_secured_server() {
    let nats = Secured::start("secured");
    let (url, mirror_pw) = (nats.url.clone(), nats.mirror_pw.clone());
    let (origin_seg, mirror_seg) = (
        TempSegment::new("sec-origin"),
        TempSegment::new("sec-mirror"),
    );
    let _origin = nats.origin(&origin_seg);
    let mut mirror = nats.mirror(&mirror_seg);
    let banner = mirror.first_line();
    assert!(banner.contains("(user mirror)"), "{banner}");
    assert!(
        !banner.contains(&mirror_pw),
        "the banner shows the password: {banner}"
    );
    wait_identical(&origin_seg.path, &mirror_seg.path);
    let before = all_candles(&mirror_seg.path).unwrap();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // No credentials: refused by the server.
        let anonymous = async_nats::ConnectOptions::new()
            .connect(url.as_str())
            .await
            .map(|_| ());
        let refused = anonymous.expect_err("a client without credentials was let in");
        assert_eq!(
            refused.kind(),
            async_nats::ConnectErrorKind::AuthorizationViolation,
            "{refused}"
        );

        // The mirror's credentials: every forgery is refused by the server, and said.
        let (tx, mut violations) = tokio::sync::mpsc::unbounded_channel::<String>();
        let forger = async_nats::ConnectOptions::with_user_and_password("mirror".into(), mirror_pw.clone())
            .event_callback(move |e| {
                let tx = tx.clone();
                async move {
                    if let Event::ServerError(ServerError::Other(text)) = e {
                        let _ = tx.send(text);
                    }
                }
            })
            .connect(url.as_str())
            .await
            .expect("the mirror's credentials are good");
        let forged_bar = r#"{"v":1,"type":"candle","symbol":"EURUSD","timeframe":"M1","complete":true,"candle":{"time":1704239940,"open":9.0,"high":9.0,"low":9.0,"close":9.0,"volume":1,"spread":0,"real_volume":0,"complete":true}}"#;
        let forged_status = r#"{"v":1,"type":"status","running":true,"liveness":"stopped","feed_state":"stopped","server_time_offset_seconds":0}"#;
        for (subject, body) in [
            ("mtf.desk.candles.EURUSD.M1", forged_bar),
            ("mtf.desk.status", forged_status),
            ("mtf.desk.ticks.EURUSD", r#"{"v":1,"symbol":"EURUSD","first":0,"ticks":[{"t":1704239940000,"b":9.0,"a":9.1,"l":0.0,"v":0,"vr":0.0,"f":6}]}"#),
            ("_INBOX.forged.1", r#"{"v":1,"rings":[{"symbol":"PWNED","timeframe":"M1","capacity":1048576}]}"#),
        ] {
            forger.publish(subject, body.as_bytes().to_vec().into()).await.unwrap();
            forger.flush().await.unwrap();
            let said = tokio::time::timeout(Duration::from_secs(30), violations.recv())
                .await
                .expect("the server said nothing of a forged publish")
                .unwrap();
            assert!(
                said.to_lowercase().contains("permissions violation") && said.contains(subject),
                "{said}"
            );
        }
    });
    // The mirror still holds exactly the origin's candles, and is still in step with it.
    assert_eq!(all_candles(&mirror_seg.path).unwrap(), before);
    wait_identical(&origin_seg.path, &mirror_seg.path);
    let st = Reader::open(&mirror_seg.path).unwrap().status();
    assert_eq!(st.counters.get(shm_core::Counter::RejectedMessages), 0);
}

/// SIGTERM stops the streamer and the mirror whatever their NATS client is doing: here, trying
/// to reach a server that is not there (and a login it will never get to make).
#[cfg(unix)]
#[test]
fn sigterm_stops_both_ends_while_nats_is_unreachable() {
    let nowhere = format!("nats://127.0.0.1:{}", free_port());
    let seg = TempSegment::new("sec-term");
    let mut streamer = ChildGuard::spawn(
        workspace_bin("mtf-streamer"),
        &[
            "--segment-path",
            seg.path.path().to_str().unwrap(),
            "--no-http",
            "--nats",
            &nowhere,
            "--tick-rate",
            "200",
        ],
    );
    wait_for_running(&seg.path);
    // Let the publisher fill its queue against the absent server first.
    let r = Reader::open(&seg.path).unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while r.status().counters.get(shm_core::Counter::TicksProcessed) < 500 {
        assert!(Instant::now() < until, "the streamer did not tick");
        std::thread::sleep(Duration::from_millis(20));
    }
    streamer.stop();
    let (status, _, stderr) = streamer
        .wait_for(Duration::from_secs(30))
        .expect("mtf-streamer ignored SIGTERM with NATS unreachable");
    assert!(status.success(), "{stderr}");
    assert_eq!(r.status().liveness, shm_core::Liveness::Stopped);

    let mirror_seg = TempSegment::new("sec-term-mirror");
    let mut mirror = ChildGuard::spawn(
        workspace_bin("mtf-mirror"),
        &[
            "--nats",
            &nowhere,
            "--segment-path",
            mirror_seg.path.path().to_str().unwrap(),
        ],
    );
    let _ = mirror.first_line(); // the banner: its signal handlers are in place
    mirror.stop();
    let (status, _, stderr) = mirror
        .wait_for(Duration::from_secs(30))
        .expect("mtf-mirror ignored SIGTERM with NATS unreachable");
    assert!(status.success(), "{stderr}");
}

/// Runs `openssl` with `args` in `dir`; panics with its message if it fails.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is not installed (./scripts/setup installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn origin_and_mirror_speak_tls_with_a_private_ca() {
    let port = free_port();
    let dir = TempDir(std::env::temp_dir().join(format!("mtf-nats-tls-{port}")));
    std::fs::create_dir_all(&dir.0).unwrap();
    // A CA of the test's own, and a server certificate for 127.0.0.1 signed by it.
    for args in [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=mtf-test-ca",
        ][..],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ][..],
    ] {
        openssl(&dir.0, args);
    }
    std::fs::write(
        dir.0.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        &dir.0,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
        ],
    );
    let conf = dir.0.join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: 127.0.0.1:{port}\ntls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
            dir.0.join("server.pem").display(),
            dir.0.join("server.key").display()
        ),
    )
    .unwrap();
    let _server = nats_server(&conf, port);
    let url = format!("tls://127.0.0.1:{port}");
    let ca = dir.0.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let (origin_seg, mirror_seg) = (
        TempSegment::new("tls-origin"),
        TempSegment::new("tls-mirror"),
    );
    let _origin = ChildGuard::spawn(
        workspace_bin("mtf-streamer"),
        &[
            "--segment-path",
            origin_seg.path.path().to_str().unwrap(),
            "--no-http",
            "--nats",
            &url,
            "--nats-ca",
            ca,
            "--nats-name",
            "desk",
            "--csv",
            CSV,
            "--speed",
            "max",
            "--timeframes",
            "M1,H1",
        ],
    );
    wait_for_running(&origin_seg.path);
    let _mirror = ChildGuard::spawn(
        workspace_bin("mtf-mirror"),
        &[
            "--nats",
            &url,
            "--nats-ca",
            ca,
            "--source-segment",
            "desk",
            "--segment-path",
            mirror_seg.path.path().to_str().unwrap(),
        ],
    );
    wait_identical(&origin_seg.path, &mirror_seg.path);
}

/// The flood of the attack: a client with the mirror's credentials sends history requests as
/// fast as it can. The origin answers it within its own rate (limit.rs), so a mirror that
/// starts during the flood still syncs.
#[test]
fn a_request_flood_from_a_mirror_account_does_not_keep_a_mirror_from_syncing() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let nats = Secured::start("flood");
    let (origin_seg, mirror_seg) = (
        TempSegment::new("flood-origin"),
        TempSegment::new("flood-mirror"),
    );
    let _origin = nats.origin(&origin_seg);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flooder = {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        let (url, password) = (nats.url.clone(), nats.mirror_pw.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let client =
                    async_nats::ConnectOptions::with_user_and_password("mirror".into(), password)
                        .connect(url.as_str())
                        .await
                        .expect("the mirror's credentials are good");
                let inbox = client.new_inbox();
                let body = br#"{"v":1,"symbol":"EURUSD","timeframe":"M1","limit":1000}"#;
                let mut k = 0u64;
                // Relaxed: a stop flag and a count, no data with them.
                while !stop.load(Ordering::Relaxed) {
                    // 200 requests every 100 ms, each for a page of 1,000 bars: 2 million
                    // candles a second asked for, and CPU left to the others on a busy
                    // machine (the test's debug build parses far fewer messages a second than
                    // a release build).
                    for _ in 0..200 {
                        k += 1;
                        let reply = format!("{inbox}.{k}");
                        client
                            .publish_with_reply("mtf.desk.req.history", reply, body.to_vec().into())
                            .await
                            .unwrap();
                    }
                    client.flush().await.unwrap();
                    sent.store(k, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        })
    };
    // The flood is going before the mirror starts.
    let until = Instant::now() + Duration::from_secs(60);
    // Relaxed: a count.
    while sent.load(Ordering::Relaxed) < 2_000 {
        assert!(Instant::now() < until, "the flood did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _mirror = nats.mirror(&mirror_seg);
    wait_identical(&origin_seg.path, &mirror_seg.path);
    // Relaxed: a stop flag.
    stop.store(true, Ordering::Relaxed);
    flooder.join().unwrap();
    assert!(sent.load(Ordering::Relaxed) >= 2_000);
}
