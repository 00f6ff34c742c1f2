//! What the HTTP test files share: a live writer with candles near the current time, a shim on
//! a free loopback port, and clients.

#![allow(dead_code)] // each test file uses its own part of these helpers

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_shim::{Shim, ShimConfig};
use mtf_tests::TempSegment;
use serde_json::Value;
use shm_core::{Candle, Counter, Layout, Timeframe, Writer};

/// Broker server time minus UTC in the test segments.
pub const SERVER_OFFSET: i64 = 7200;

/// A live writer with candles near the current time, heartbeating until dropped: rings
/// BTCUSDc M1 (30 closed and a forming one), BTCUSDc M5 and XAUUSDc M1 (empty).
pub struct Feed {
    pub writer: Arc<Mutex<Option<Writer>>>,
    stop: Arc<AtomicBool>,
    beat: Option<std::thread::JoinHandle<()>>,
}

impl Feed {
    pub fn start(seg: &TempSegment) -> Feed {
        let mut layout = Layout::new();
        layout.add_ring("BTCUSDc", Timeframe::M1, 100).unwrap();
        layout.add_ring("BTCUSDc", Timeframe::M5, 10).unwrap();
        layout.add_ring("XAUUSDc", Timeframe::M1, 100).unwrap();
        let mut w = Writer::create(&seg.path, &layout, &Default::default()).unwrap();
        // Candle times are broker server time, two hours ahead of UTC here.
        let now_min =
            Timeframe::M1.bar_start((shm_core::now_ns() / 1_000_000_000) as i64 + SERVER_OFFSET);
        let m1 = w.ring("BTCUSDc", Timeframe::M1).unwrap();
        for k in (1..=30).rev() {
            w.push_closed(m1, &candle(now_min - k * 60, 90_000.0 - k as f64));
        }
        w.update_forming(m1, &candle(now_min, 90_000.0));
        let sym = w.symbol("BTCUSDc").unwrap();
        w.heartbeat();
        w.record_tick(sym, now_min * 1000, 90_000.0, 90_015.0);
        w.add(Counter::TicksProcessed, 42);
        w.set_server_time_offset(SERVER_OFFSET);
        w.set_running();
        let writer = Arc::new(Mutex::new(Some(w)));
        let stop = Arc::new(AtomicBool::new(false));
        let beat = {
            let (writer, stop) = (Arc::clone(&writer), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(w) = writer.lock().unwrap().as_mut() {
                        w.heartbeat();
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Feed {
            writer,
            stop,
            beat: Some(beat),
        }
    }

    /// Stops heartbeating (the writer stays, so it becomes stalled).
    pub fn pause(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(b) = self.beat.take() {
            b.join().unwrap();
        }
    }

    /// Drops the writer: a clean stop.
    pub fn stop_writer(&mut self) {
        self.pause();
        self.writer.lock().unwrap().take();
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.pause();
    }
}

pub fn candle(time: i64, close: f64) -> Candle {
    Candle {
        time,
        open: close - 1.0,
        high: close + 2.0,
        low: close - 3.0,
        close,
        tick_volume: 10,
        spread: 1500,
        real_volume: 0,
        ..Candle::default()
    }
}

pub fn shim(seg: &TempSegment) -> Shim {
    shim_with(seg, |_| {})
}

pub fn shim_with(seg: &TempSegment, tweak: impl FnOnce(&mut ShimConfig)) -> Shim {
    let mut c = ShimConfig {
        segment: seg.path.clone(),
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..ShimConfig::default()
    };
    tweak(&mut c);
    Shim::start(c).unwrap()
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        // Generous: the Windows build's tests run under Wine, on a machine that may be busy.
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent()
}

/// GET `path`: status and JSON body.
pub fn get(shim: &Shim, path: &str) -> (u16, Value) {
    let mut resp = agent()
        .get(&format!("http://{}{path}", shim.local_addr()))
        .call()
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}")),
    )
}

/// The newest BTCUSDc M1 candle of the feed (its forming one).
pub fn forming(seg: &TempSegment) -> Candle {
    shm_core::Reader::open(&seg.path)
        .unwrap()
        .ring("BTCUSDc", Timeframe::M1)
        .unwrap()
        .latest()
        .unwrap()
        .unwrap()
}

/// Reads a response's status line and headers from `conn` (names lower-cased), leaving the
/// body to read.
pub fn read_response_head(
    conn: &mut std::io::BufReader<TcpStream>,
) -> (u16, Vec<(String, String)>) {
    use std::io::BufRead;
    let mut line = String::new();
    conn.read_line(&mut line).unwrap();
    let status = line.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
    let mut headers = Vec::new();
    loop {
        line.clear();
        conn.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            return (status, headers);
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
}

/// Sends raw bytes, returns everything the server sent until it closed.
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

pub fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
