//! W1 of the local attack: another account creates the segment's name first and keeps a fake
//! writer heartbeating. Readers serve a segment only when its owner is an account they trust
//! (their own and root by default; others named by `--trust`, `MTF_TRUST` or Python's
//! `trust=`). A second account is created for the test and removed afterwards.
#![cfg(unix)]

use std::os::unix::fs::chown;
use std::time::Duration;

use mtf_tests::{derived, workspace_bin, TempSegment, TestAccount};
use shm_core::{Layout, OpenError, Reader, Timeframe, Trust, Untrusted, Writer};

/// A live segment whose files belong to `account`, as if that account's process had made it
/// (the writer stays alive, so its heartbeat is fresh and its lock held).
fn squatted(seg: &TempSegment, account: &TestAccount) -> Writer {
    let mut layout = Layout::new();
    layout.add_ring("BTCUSDc", Timeframe::M1, 16).unwrap();
    let mut w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
    let m1 = w.ring("BTCUSDc", Timeframe::M1).unwrap();
    for k in 1..=5 {
        w.push_closed(m1, &derived(k));
    }
    w.set_running();
    let mut lock = seg.file().into_os_string();
    lock.push(".lock");
    chown(seg.file(), Some(account.uid), None).unwrap();
    chown(&lock, Some(account.uid), None).unwrap();
    w
}

fn account_or_say_why() -> Option<TestAccount> {
    match TestAccount::create() {
        Ok(a) => Some(a),
        Err(why) => {
            eprintln!("SKIPPED LOUDLY: the owner tests need a second account and {why}");
            None
        }
    }
}

#[test]
fn a_segment_of_another_account_is_refused_until_that_account_is_trusted() {
    let Some(account) = account_or_say_why() else {
        return;
    };
    let seg = TempSegment::new("trust");
    let _w = squatted(&seg, &account);

    let refused = Reader::open(&seg.path).expect_err("another account's segment was served");
    match &refused {
        OpenError::Untrusted {
            why: Untrusted::UntrustedOwner { uid, name },
            ..
        } => {
            assert_eq!(*uid, account.uid);
            assert_eq!(name.as_deref(), Some(account.name.as_str()));
        }
        other => panic!("refused for the wrong reason: {other}"),
    }
    // The message names the owner and how to trust it.
    let text = refused.to_string();
    assert!(
        text.contains(&account.name) && text.contains("MTF_TRUST"),
        "{text}"
    );

    // Named, by name or by uid, it is served.
    for list in [account.name.clone(), account.uid.to_string()] {
        let trust = Trust::parse(&list, "test").unwrap();
        let r = Reader::open_trusting(&seg.path, &trust).expect("trusted owner");
        let mut out = Vec::new();
        r.ring("BTCUSDc", Timeframe::M1)
            .unwrap()
            .read_last(10, &mut out)
            .unwrap();
        assert_eq!(out.len(), 5);
    }
}

#[test]
fn the_command_line_refuses_and_trusts_the_same_way() {
    let Some(account) = account_or_say_why() else {
        return;
    };
    let seg = TempSegment::new("trust-cli");
    let _w = squatted(&seg, &account);
    let streamer = workspace_bin("mtf-streamer");
    let file = seg.file();
    let path = file.to_str().unwrap();

    let run = |args: &[&str], env: Option<&str>| {
        let mut cmd = std::process::Command::new(&streamer);
        cmd.args(args).env_remove("MTF_TRUST");
        if let Some(list) = env {
            cmd.env("MTF_TRUST", list);
        }
        cmd.output().expect("run mtf-streamer inspect")
    };
    let out = run(&["inspect", "--segment-path", path], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "inspect served a squatted segment");
    assert!(err.contains(&account.name), "{err}");

    let out = run(
        &["inspect", "--segment-path", path, "--trust", &account.name],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["inspect", "--segment-path", path], Some(&account.name));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A name no account has is a configuration error, said before anything is opened.
    let out = run(
        &[
            "inspect",
            "--segment-path",
            path,
            "--trust",
            "no-such-account-x",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));

    // The shim refuses it too: it never serves a squatted segment's candles, and says why.
    let (mut shim, addr) = mtf_tests::spawn_shim(&file);
    let head = http_status(&addr, "/streamer/candles/BTCUSDc/M1?limit=5");
    assert_ne!(head, 200, "the shim served a squatted segment");
    shim.stop();
    let (_, _, stderr) = shim
        .wait_for(Duration::from_secs(60))
        .expect("mtf-shim did not stop on SIGTERM");
    assert!(stderr.contains(&account.name), "{stderr}");
}

/// The status code of a GET.
fn http_status(addr: &str, target: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the shim");
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}
