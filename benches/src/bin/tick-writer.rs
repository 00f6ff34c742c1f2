//! The writer process of the cross-process latency harness (`benches/benches/xproc.rs`).
//!
//! Usage: `tick-writer SEGMENT_FILE RATE_PER_S SECONDS CPU [notify]`
//!
//! Creates a one-ring segment, waits for the reader to say it is ready (it creates
//! `SEGMENT_FILE.ready`), then publishes tick k at its intended time t0 + k / RATE by updating
//! the forming candle: `tick_volume` = k, `real_volume` = the intended time on
//! `CLOCK_MONOTONIC`. A tick that is late is published at once, and its lateness counts in
//! the reader's figure, since the reader measures from the intended time.
//! With `notify`, each tick is followed by [`Writer::notify`], as the streamer does after each
//! batch, so readers sleeping in `wait_for_change` wake.
//! Prints `sent N late_max_ns L preempted P` at the end (P: times the scheduler took its CPU).

use std::path::PathBuf;
use std::time::Duration;

use mtf_benches::{mono_ns, pin_to_cpu, preemptions};
use shm_core::{Candle, Layout, SegmentPath, Timeframe, Writer};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (file, rate, seconds, cpu, notify) = match &args[..] {
        [f, r, s, c] => (f, r, s, c, false),
        [f, r, s, c, n] if n == "notify" => (f, r, s, c, true),
        _ => {
            eprintln!("usage: tick-writer SEGMENT_FILE RATE_PER_S SECONDS CPU [notify]");
            return std::process::ExitCode::from(2);
        }
    };
    let (Ok(rate), Ok(seconds), Ok(cpu)) = (
        rate.parse::<u64>(),
        seconds.parse::<u64>(),
        cpu.parse::<usize>(),
    ) else {
        eprintln!("tick-writer: RATE, SECONDS and CPU must be whole numbers");
        return std::process::ExitCode::from(2);
    };
    pin_to_cpu(cpu);
    let mut layout = Layout::new();
    layout
        .add_ring("BENCH", Timeframe::M1, 16)
        .expect("valid ring");
    let path = SegmentPath::at(file);
    let mut w = match Writer::create(&path, &layout, &Default::default()) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("tick-writer: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let ring = w.ring("BENCH", Timeframe::M1).expect("the ring");
    w.update_forming(ring, &Candle::flat(0, 1.0));
    w.set_running();
    let ready = PathBuf::from(format!("{file}.ready"));
    while !ready.exists() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = std::fs::remove_file(&ready);
    let period = 1_000_000_000 / rate.max(1);
    let total = rate * seconds;
    let t0 = mono_ns() + 1_000_000;
    let mut late_max = 0;
    let preempted = preemptions();
    let mut c = Candle::flat(0, 1.0);
    for k in 0..total {
        let due = t0 + k * period;
        let mut now = mono_ns();
        while now < due {
            std::hint::spin_loop();
            now = mono_ns();
        }
        late_max = late_max.max(now - due);
        c.tick_volume = k;
        c.real_volume = due;
        c.close = 1.0 + k as f64 * 1e-6;
        c.high = c.close;
        w.update_forming(ring, &c);
        if notify {
            w.notify();
        }
    }
    println!(
        "sent {total} late_max_ns {late_max} preempted {}",
        preemptions() - preempted
    );
    std::process::ExitCode::SUCCESS
}
