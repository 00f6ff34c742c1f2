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

/// The mirror accounts of the tests: `mirror-a` attacks, `mirror-b` mirrors.
const MIRRORS: [&str; 2] = ["mirror-a", "mirror-b"];

/// The configuration of docs/NATS.md for segment `desk`, on `port`, with one user per mirror
/// id of [`MIRRORS`].
fn config(port: u16, origin: &str, mirrors: &[String; 2]) -> String {
    let mut users = String::new();
    for (id, password) in MIRRORS.iter().zip(mirrors) {
        users.push_str(&format!(
            r#"    {{ user: {id}, password: "{password}",
      permissions: {{
        publish:   {{ allow: ["mtf.desk.req.*.{id}"] }}
        subscribe: {{ allow: ["mtf.desk.candles.>", "mtf.desk.ticks.>", "mtf.desk.status", "_INBOX.{id}.>"] }}
      }} }}
"#
        ));
    }
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
{users}  ]
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
    /// The passwords of [`MIRRORS`].
    mirror_pw: [String; 2],
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
        let (origin_pw, mirror_pw) = (secret("origin"), MIRRORS.map(secret));
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

    /// A mirror of `desk` into `seg`, as `mirror-b`.
    fn mirror(&self, seg: &TempSegment) -> ChildGuard {
        self.spawn(
            "mtf-mirror",
            &[
                "--nats",
                &self.url,
                "--nats-user",
                MIRRORS[1],
                "--nats-mirror-id",
                MIRRORS[1],
                "--source-segment",
                "desk",
                "--segment-path",
                seg.path.path().to_str().unwrap(),
            ],
            &self.mirror_pw[1],
        )
    }

    /// A client of `program`'s own, logged in as mirror account `k` of [`MIRRORS`] with that
    /// id's inbox, its server errors sent to the channel returned.
    async fn client_as(
        &self,
        k: usize,
    ) -> (
        async_nats::Client,
        tokio::sync::mpsc::UnboundedReceiver<String>,
    ) {
        let (tx, errors) = tokio::sync::mpsc::unbounded_channel::<String>();
        let client = async_nats::ConnectOptions::with_user_and_password(
            MIRRORS[k].into(),
            self.mirror_pw[k].clone(),
        )
        .custom_inbox_prefix(format!("_INBOX.{}", MIRRORS[k]))
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                if let Event::ServerError(ServerError::Other(text)) = e {
                    let _ = tx.send(text);
                }
            }
        })
        .connect(self.url.as_str())
        .await
        .expect("the mirror's credentials are good");
        (client, errors)
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
    let (url, mirror_pw) = (nats.url.clone(), nats.mirror_pw[1].clone());
    let (origin_seg, mirror_seg) = (
        TempSegment::new("sec-origin"),
        TempSegment::new("sec-mirror"),
    );
    let _origin = nats.origin(&origin_seg);
    let mut mirror = nats.mirror(&mirror_seg);
    let banner = mirror.first_line();
    assert!(banner.contains("(user mirror-b)"), "{banner}");
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

        // Another mirror's credentials: every forgery is refused by the server, and said,
        // and so is a request under no id or another mirror's.
        let (forger, mut violations) = nats.client_as(0).await;
        let forged_bar = r#"{"v":1,"type":"candle","symbol":"EURUSD","timeframe":"M1","complete":true,"candle":{"time":1704239940,"open":9.0,"high":9.0,"low":9.0,"close":9.0,"volume":1,"spread":0,"real_volume":0,"complete":true}}"#;
        let forged_status = r#"{"v":1,"type":"status","running":true,"liveness":"stopped","feed_state":"stopped","server_time_offset_seconds":0}"#;
        for (subject, body) in [
            ("mtf.desk.candles.EURUSD.M1", forged_bar),
            ("mtf.desk.status", forged_status),
            ("mtf.desk.ticks.EURUSD", r#"{"v":1,"symbol":"EURUSD","first":0,"ticks":[{"t":1704239940000,"b":9.0,"a":9.1,"l":0.0,"v":0,"vr":0.0,"f":6}]}"#),
            ("_INBOX.forged.1", r#"{"v":1,"rings":[{"symbol":"PWNED","timeframe":"M1","capacity":1048576}]}"#),
            ("_INBOX.mirror-b.x.1", r#"{"v":1,"rings":[{"symbol":"PWNED","timeframe":"M1","capacity":1048576}]}"#),
            ("mtf.desk.req.layout", "{}"),
            ("mtf.desk.req.layout.mirror-b", "{}"),
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

/// The flood of the attack (issue 40, item 11): a client with another mirror's credentials
/// sends history requests as fast as it can, each with a reply subject of its own, so that a
/// limit keyed by reply subject would see thousands of clients. The origin keys it by the
/// mirror id the server lets that account name, so a mirror that starts during the flood
/// still syncs.
#[test]
fn a_request_flood_from_a_mirror_account_does_not_keep_a_mirror_from_syncing() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let nats = Arc::new(Secured::start("flood"));
    let (origin_seg, mirror_seg) = (
        TempSegment::new("flood-origin"),
        TempSegment::new("flood-mirror"),
    );
    let _origin = nats.origin(&origin_seg);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flooder = {
        let (stop, sent, nats) = (Arc::clone(&stop), Arc::clone(&sent), Arc::clone(&nats));
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let (client, _) = nats.client_as(0).await;
                let body = br#"{"v":1,"symbol":"EURUSD","timeframe":"M1","limit":1000}"#;
                let mut k = 0u64;
                // Relaxed: a stop flag and a count, no data with them.
                while !stop.load(Ordering::Relaxed) {
                    // 200 requests every 100 ms, each for a page of 1,000 bars and each with a
                    // reply prefix never used before: 2 million candles a second asked for, and
                    // CPU left to the others on a busy machine (the test's debug build parses
                    // far fewer messages a second than a release build).
                    for _ in 0..200 {
                        k += 1;
                        let reply = format!("_INBOX.mirror-a.p{k}.1");
                        client
                            .publish_with_reply(
                                "mtf.desk.req.history.mirror-a",
                                reply,
                                body.to_vec().into(),
                            )
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

/// Issue 40, item 10: a mirror account asks, under its own id, with another mirror's inbox as
/// its reply subject, so that the victim would take the answer as its own. The origin answers
/// only into the inbox of the id the request names; the attacker cannot read the victim's
/// inbox either.
#[test]
fn the_origin_answers_no_request_into_another_mirrors_inbox() {
    let nats = Secured::start("aimed");
    let origin_seg = TempSegment::new("aimed-origin");
    let _origin = nats.origin(&origin_seg);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use futures_util::StreamExt;
        let (attacker, mut violations) = nats.client_as(0).await;
        let (victim, _) = nats.client_as(1).await;
        let mut victim_inbox = victim.subscribe("_INBOX.mirror-b.>").await.unwrap();
        victim.flush().await.unwrap();
        // The attacker cannot listen in on the victim's inbox.
        let _spy = attacker.subscribe("_INBOX.mirror-b.>").await.unwrap();
        attacker.flush().await.unwrap();
        let said = tokio::time::timeout(Duration::from_secs(30), violations.recv())
            .await
            .expect("the server said nothing of a subscription to another's inbox")
            .unwrap();
        assert!(
            said.to_lowercase().contains("permissions violation")
                && said.contains("_INBOX.mirror-b.>"),
            "{said}"
        );

        let subject = "mtf.desk.req.symbol.mirror-a";
        let body = br#"{"v":1,"symbol":"EURUSD","nonce":7}"#;
        // Aimed at the victim: never answered.
        attacker
            .publish_with_reply(subject, "_INBOX.mirror-b.next.1", body.to_vec().into())
            .await
            .unwrap();
        // Then the same request into the attacker's own inbox: answered. The origin handles
        // one connection's requests in order, and the server passes on what the origin
        // publishes in order, so once this answer is here and a round trip of the victim's
        // is done, an answer to the first would have reached the victim.
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            attacker.request(subject, body.to_vec().into()),
        )
        .await
        .expect("the origin did not answer the attacker's own request")
        .unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap();
        assert_eq!(answer["info"]["name"], "EURUSD", "{answer}");
        victim.flush().await.unwrap();
        let stray = tokio::time::timeout(Duration::from_millis(1), victim_inbox.next()).await;
        assert!(
            stray.is_err(),
            "the origin answered into another mirror's inbox: {stray:?}"
        );
    });
}
