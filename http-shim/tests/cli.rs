//! The `mtf-shim` binary as an operator runs it.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use mtf_tests::{ChildGuard, TempSegment};

const BIN: &str = env!("CARGO_BIN_EXE_mtf-shim");

#[test]
fn serves_until_sigterm_and_answers_503_without_a_streamer() {
    let seg = TempSegment::new("shim-cli");
    let file = seg.file();
    let mut shim = ChildGuard::spawn(
        BIN,
        &[
            "--segment-path",
            file.to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
        ],
    );
    let mut line = String::new();
    BufReader::new(shim.0.as_mut().unwrap().stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/streamer/status"),
        "{line}"
    );
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let health = url.replace("/status", "/health");
    assert_eq!(agent.get(&health).call().unwrap().status().as_u16(), 503);
    shim.sigterm();
    let (status, _, stderr) = shim
        .wait_for(Duration::from_secs(10))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_remote_bind_needs_the_flag() {
    let out = std::process::Command::new(BIN)
        .args(["--bind", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--allow-remote"), "{stderr}");
}
