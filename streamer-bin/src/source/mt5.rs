//! MetaTrader 5 through the MT5 gateway: backfill every timeframe with `copy_rates_from_pos`,
//! then live ticks from `subscribe_ticks`; the terminal's own bars correct the forming and the
//! just-closed candle at every new minute; after a disconnect the gap is backfilled.
//!
//! A worker thread does the talking, so a slow or dead gateway never stalls the publishing
//! loop (which must keep heartbeating); a gateway that is down shows as feed state
//! `disconnected` and is retried with backoff, never fatal.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mt5_gateway_client::{Client, Config, Event as GwEvent, Rate};
use shm_core::{Counter, FeedState, Timeframe};

use super::{Event, Source, SourceError};
use crate::aggregate::{Bar, Tick};

/// What to fetch for one symbol: its timeframes with their ring capacities, and where its
/// rings already stand (after a warm restart).
#[derive(Debug, Clone)]
pub struct SymbolPlan {
    /// The symbol.
    pub symbol: String,
    /// Timeframes and ring capacities.
    pub timeframes: Vec<(Timeframe, u32)>,
    /// Newest bar time per timeframe already in the rings.
    pub known: HashMap<Timeframe, i64>,
}

/// The mt5 source.
#[derive(Debug)]
pub struct Mt5Source {
    rx: Receiver<Event>,
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<()>>,
    addr: String,
}

/// Events buffered between the worker and the publishing loop; the worker blocks beyond that,
/// which is the back-pressure we want.
const CHANNEL: usize = 65_536;

impl Mt5Source {
    /// Starts the worker for `plans` against the gateway at `addr`.
    pub fn start(addr: &str, plans: Vec<SymbolPlan>) -> Mt5Source {
        let (tx, rx) = mpsc::sync_channel(CHANNEL);
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let (stop, config) = (Arc::clone(&stop), Config::new(addr));
            std::thread::Builder::new()
                .name("mt5-source".into())
                .spawn(move || {
                    Worker {
                        tx,
                        stop,
                        config,
                        plans,
                        latest_minute: HashMap::new(),
                    }
                    .run()
                })
                .ok()
        };
        Mt5Source {
            rx,
            stop,
            worker,
            addr: addr.to_owned(),
        }
    }
}

impl Drop for Mt5Source {
    fn drop(&mut self) {
        // Relaxed: a flag with no data behind it, checked by the worker between calls.
        self.stop.store(true, Ordering::Relaxed);
        // Unblock a worker waiting on a full channel, then wait for it (its reads time out
        // within a second: the gateway heartbeats).
        while self.rx.try_recv().is_ok() {}
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl Source for Mt5Source {
    fn poll(&mut self, out: &mut Vec<Event>, wait: Duration) -> Result<(), SourceError> {
        match self.rx.recv_timeout(wait) {
            Ok(ev) => out.push(ev),
            Err(RecvTimeoutError::Timeout) => return Ok(()),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(SourceError("the MT5 source worker stopped".into()))
            }
        }
        while out.len() < 4096 {
            match self.rx.try_recv() {
                Ok(ev) => out.push(ev),
                Err(_) => break,
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("mt5 via gateway {}", self.addr)
    }
}

struct Worker {
    tx: SyncSender<Event>,
    stop: Arc<AtomicBool>,
    config: Config,
    plans: Vec<SymbolPlan>,
    /// Per symbol, the M1 bar of the newest tick seen (to correct bars at each new minute).
    latest_minute: HashMap<usize, i64>,
}

/// Why a session with the gateway ended.
enum Ended {
    Stop,
    Disconnected(String),
    Finished,
}

impl Worker {
    fn send(&self, ev: Event) -> bool {
        self.tx.send(ev).is_ok()
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn run(mut self) {
        let mut client = Client::new(self.config.clone());
        let mut first = true;
        let mut warned = false;
        while !self.stopped() {
            if !first {
                self.send(Event::Count(Counter::Reconnects, 1));
            }
            match self.session(&mut client) {
                Ended::Stop => return,
                Ended::Finished => {
                    self.send(Event::Feed(FeedState::Finished));
                    while !self.stopped() {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    return;
                }
                Ended::Disconnected(why) => {
                    if !warned {
                        eprintln!(
                            "warning: MT5 gateway {}: {why}; retrying with backoff",
                            self.config.addr
                        );
                        warned = true;
                    }
                    if !self.send(Event::Feed(FeedState::Disconnected)) {
                        return;
                    }
                    // The client enforces the backoff; poll it gently meanwhile.
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            first = false;
        }
    }

    /// One connected session: hello, (gap) backfill, then the tick stream until it breaks.
    fn session(&mut self, client: &mut Client) -> Ended {
        let hello = match client.hello() {
            Ok(h) => h,
            Err(e) => return Ended::Disconnected(e.to_string()),
        };
        if let Some(offset) = hello.server_time_offset_seconds {
            self.send(Event::ServerTimeOffset(offset));
        }
        self.send(Event::Feed(FeedState::Backfilling));
        for i in 0..self.plans.len() {
            if let Err(e) = self.backfill(client, i) {
                return e;
            }
        }
        let symbols: Vec<&str> = self.plans.iter().map(|p| p.symbol.as_str()).collect();
        let mut stream = match client.subscribe_ticks(&symbols) {
            Ok(s) => s,
            Err(e) => return Ended::Disconnected(e.to_string()),
        };
        eprintln!(
            "MT5 gateway {}: {} backend, streaming {}",
            self.config.addr,
            hello.backend,
            symbols.join(", ")
        );
        self.send(Event::Feed(FeedState::Live));
        let index: HashMap<String, usize> = self
            .plans
            .iter()
            .enumerate()
            .map(|(i, p)| (p.symbol.clone(), i))
            .collect();
        loop {
            if self.stopped() {
                return Ended::Stop;
            }
            match stream.next_event() {
                Ok(GwEvent::Tick { symbol, tick }) => {
                    let Some(&i) = index.get(&symbol) else {
                        continue;
                    };
                    let minute = Timeframe::M1.bar_start(tick.time_msc.div_euclid(1000));
                    let t = Tick {
                        symbol: i,
                        time_ms: tick.time_msc,
                        bid: tick.bid,
                        ask: tick.ask,
                        volume: tick.volume,
                    };
                    if !self.send(Event::Tick(t)) {
                        return Ended::Stop;
                    }
                    let previous = self.latest_minute.insert(i, minute);
                    if previous.is_some_and(|p| minute > p) {
                        if let Err(e) = self.correct(client, i, minute) {
                            return e;
                        }
                    }
                }
                Ok(GwEvent::Heartbeat) => {}
                Ok(GwEvent::End { .. }) => return Ended::Finished,
                Err(e) => return Ended::Disconnected(e.to_string()),
            }
        }
    }

    /// Fetches what the rings of symbol `i` lack: everything on a cold start, the gap since
    /// the newest known bar after a restart or reconnect.
    fn backfill(&mut self, client: &mut Client, i: usize) -> Result<(), Ended> {
        let plan = self.plans[i].clone();
        for &(tf, capacity) in &plan.timeframes {
            if self.stopped() {
                return Err(Ended::Stop);
            }
            let known = plan.known.get(&tf).copied();
            let count = match known {
                // Bars since the newest known one, plus it (to correct it), plus slack.
                Some(t) => {
                    // Server offsets run from UTC-12 to UTC+14; without trusting ours, take
                    // UTC+14 as "now", so the gap is covered whatever it is (bars already held
                    // are skipped below).
                    let latest_server_now = (shm_core::now_ns() / 1_000_000_000) as i64 + 14 * 3600;
                    ((latest_server_now - t) / tf.nominal_seconds() + 3)
                        .clamp(2, i64::from(capacity) + 1) as u32
                }
                None => capacity + 1,
            };
            let rates = match client.copy_rates_from_pos(&plan.symbol, tf, 0, count) {
                Ok(r) => r,
                // MT5 has no history for this one (-4): leave the ring to the ticks.
                Err(mt5_gateway_client::Error::Mt5 { .. }) => continue,
                Err(e) => return Err(Ended::Disconnected(e.to_string())),
            };
            let n = rates.len();
            for (k, r) in rates.into_iter().enumerate() {
                if known.is_some_and(|t| r.time < t) {
                    continue; // already in the ring
                }
                // Position 0, the newest, is the bar still forming.
                if !self.send(bar(i, tf, &r, k + 1 == n)) {
                    return Err(Ended::Stop);
                }
                self.plans[i].known.insert(tf, r.time);
            }
            self.send(Event::Count(Counter::BarsBackfilled, n as u64));
        }
        Ok(())
    }

    /// At a new minute: MT5's final word on the bar just closed and its view of the new one,
    /// for every timeframe whose bars these are.
    fn correct(&mut self, client: &mut Client, i: usize, minute: i64) -> Result<(), Ended> {
        let plan = self.plans[i].clone();
        for &(tf, _) in &plan.timeframes {
            let current = tf.bar_start(minute);
            if tf != Timeframe::M1 && current != minute {
                continue; // this timeframe's bars did not change hands
            }
            let rates = match client.copy_rates_from_pos(&plan.symbol, tf, 0, 2) {
                Ok(r) => r,
                Err(mt5_gateway_client::Error::Mt5 { .. }) => continue,
                Err(e) => return Err(Ended::Disconnected(e.to_string())),
            };
            // Only bars that are this minute's business; a replayed history (csv) may lag.
            for r in rates {
                let forming = r.time == current;
                if (forming || tf.next_bar_start(r.time) == current)
                    && !self.send(bar(i, tf, &r, forming))
                {
                    return Err(Ended::Stop);
                }
            }
        }
        Ok(())
    }
}

fn bar(symbol: usize, timeframe: Timeframe, r: &Rate, forming: bool) -> Event {
    Event::Bar(Bar {
        symbol,
        timeframe,
        candle: r.to_candle(forming),
        fold_up: false,
        amend: true,
    })
}
