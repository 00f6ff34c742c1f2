//! MetaTrader 5 through the MT5 gateway: backfill every timeframe with `copy_rates_from_pos`,
//! then live ticks from `subscribe_ticks`; the terminal's own closed bars correct the bar that
//! closes at every new minute; after a disconnect only the gap is backfilled.
//!
//! A worker thread does the talking, so a slow or dead gateway never stalls the publishing
//! loop (which must keep heartbeating); a gateway that is down shows as feed state
//! `disconnected` and is retried with backoff (exponential, capped, with jitter), never fatal.
//!
//! Rules that keep the candles identical to the terminal's:
//! - **Symbols the gateway does not know** (MT5 error -4, usually a broker suffix typo) are
//!   reported once, flagged in the segment, and left out of the subscription, so every other
//!   symbol streams. They are asked about again every [`UNKNOWN_RETRY`].
//! - **The backfill seam.** The forming M1 bar of the backfill already counts the ticks of its
//!   minute up to the terminal's latest tick. Stream ticks of that minute at or before that
//!   tick are skipped, so no tick is counted twice (a replay gateway sends them again).
//! - **Corrections** at a new minute replace only *closed* bars. The forming bars stay built
//!   from the ticks: replacing them with the terminal's view would count again every tick the
//!   stream delivers after the terminal's answer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mt5_gateway_client::{Backoff, Client, Config, Error as GwError, Event as GwEvent};
use shm_core::{Candle, Counter, FeedState, Timeframe};

use super::{Event, Source, SourceError};
use crate::aggregate::{Bar, Tick};

/// How often symbols the gateway did not know are asked about again.
pub const UNKNOWN_RETRY: Duration = Duration::from_secs(60);

pub use super::mt5_depth::Depth;
use super::mt5_depth::{self, Cursor, Stop};
pub use super::mt5_info::INFO_REFRESH;
use super::mt5_info::{self, knows, suggest, Infos, Refresher, MT5_NOT_FOUND};

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
    /// Newest bar time per timeframe already in the history store.
    pub stored: HashMap<Timeframe, i64>,
    /// Newest tick time (ms) already in the history store.
    pub stored_tick: Option<i64>,
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
        Mt5Source::with_config(Config::new(addr), plans, None)
    }

    /// Starts the worker with a client configuration of the caller's (timeouts, backoff),
    /// copying history into the store as deep as `depth` says (`None`: no store).
    pub fn with_config(config: Config, plans: Vec<SymbolPlan>, depth: Option<Depth>) -> Mt5Source {
        let (tx, rx) = mpsc::sync_channel(CHANNEL);
        let stop = Arc::new(AtomicBool::new(false));
        let addr = config.addr.clone();
        let worker = {
            let stop = Arc::clone(&stop);
            let n = plans.len();
            std::thread::Builder::new()
                .name("mt5-source".into())
                .spawn(move || {
                    Worker {
                        tx,
                        stop,
                        config,
                        plans,
                        latest_minute: HashMap::new(),
                        unknown: vec![false; n],
                        included: vec![None; n],
                        depth,
                        cursor: vec![None; n],
                    }
                    .run()
                })
                .ok()
        };
        Mt5Source {
            rx,
            stop,
            worker,
            addr,
        }
    }
}

impl Drop for Mt5Source {
    fn drop(&mut self) {
        // Relaxed: a flag with no data behind it, checked by the worker between calls.
        self.stop.store(true, Ordering::Relaxed);
        // Unblock a worker waiting on a full channel, then give it a moment to finish. A
        // worker stuck in a call to a gateway that trickles bytes is left behind (it ends at
        // the client's deadline, or with the process): shutdown never waits on the gateway.
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            while self.rx.try_recv().is_ok() {}
            if self.worker.as_ref().is_none_or(|w| w.is_finished()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(w) = self.worker.take().filter(|w| w.is_finished()) {
            let _ = w.join();
        }
    }
}

impl Source for Mt5Source {
    fn poll(&mut self, out: &mut Vec<Event>, wait: Duration) -> Result<(), SourceError> {
        match self.rx.recv_timeout(wait) {
            Ok(ev) => out.push(ev),
            Err(RecvTimeoutError::Timeout) => return Ok(()),
            Err(RecvTimeoutError::Disconnected) => return Err(SourceError::WorkerStopped),
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
    /// Per symbol: the gateway said it does not know it.
    unknown: Vec<bool>,
    /// Per symbol: the minute of the backfilled forming M1 bar and the time (ms) of the
    /// terminal's latest tick, which that bar already counts.
    included: Vec<Option<(i64, i64)>>,
    /// How deep history is copied into the store (`mt5_depth`), if there is a store.
    depth: Option<Depth>,
    /// Per symbol, the last tick sent (its millisecond, and how many of it), once ticks are
    /// copied into the store: where the copy after a reconnection starts.
    cursor: Vec<Option<Cursor>>,
}

/// Why a session with the gateway ended.
enum Ended {
    Stop,
    Disconnected(String),
    Finished,
    /// A symbol the gateway did not know is known now: subscribe again, at once.
    Resubscribe,
}

impl Worker {
    fn send(&self, ev: Event) -> bool {
        self.tx.send(ev).is_ok()
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps `d` in short steps, returning early (false) when asked to stop.
    fn wait(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.stopped() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
        }
        !self.stopped()
    }

    fn run(mut self) {
        let mut client = Client::new(self.config.clone());
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
        let mut first = true;
        let mut last_warning: Option<Instant> = None;
        while !self.stopped() {
            if !first {
                self.send(Event::Count(Counter::Reconnects, 1));
            }
            first = false;
            match self.session(&mut client, &mut backoff) {
                Ended::Stop => return,
                Ended::Finished => {
                    self.send(Event::Feed(FeedState::Finished));
                    while self.wait(Duration::from_millis(100)) {}
                    return;
                }
                Ended::Resubscribe => {}
                Ended::Disconnected(why) => {
                    if !self.send(Event::Feed(FeedState::Disconnected)) {
                        return;
                    }
                    let pause = backoff.fail();
                    // Once at the first failure, then at most once a minute while it lasts.
                    if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                        eprintln!(
                            "warning: MT5 gateway {}: {why}; next attempt in {} ms (backing off \
                             up to 30 s)",
                            self.config.addr,
                            pause.as_millis()
                        );
                        last_warning = Some(Instant::now());
                    }
                    if !self.wait(pause) {
                        return;
                    }
                }
            }
        }
    }

    /// One connected session: hello, which symbols exist, (gap) backfill, then the tick stream
    /// of the known symbols until it breaks.
    fn session(&mut self, client: &mut Client, backoff: &mut Backoff) -> Ended {
        let hello = match client.hello() {
            Ok(h) => h,
            Err(e) => return Ended::Disconnected(why(&e)),
        };
        if let Some(offset) = hello.server_time_offset_seconds {
            self.send(Event::ServerTimeOffset(offset));
        }
        if let Some(t) = mt5_info::terminal(&hello) {
            self.send(Event::Terminal(t));
        }
        for i in 0..self.plans.len() {
            let symbol = self.plans[i].symbol.clone();
            let known = match knows(client, &symbol, &hello.symbols) {
                Ok(k) => k,
                Err(e) => return Ended::Disconnected(why(&e)),
            };
            if known == self.unknown[i] {
                // Changed: report it once.
                if known {
                    eprintln!("MT5 gateway {}: {symbol} is known now", self.config.addr);
                } else {
                    eprintln!(
                        "warning: MT5 gateway {}: {symbol}: not found (MT5 error {MT5_NOT_FOUND}); \
                         {}; the other symbols stream, and {symbol} is asked about again every \
                         {} s",
                        self.config.addr,
                        suggest(&symbol, &hello.symbols),
                        UNKNOWN_RETRY.as_secs()
                    );
                }
                self.unknown[i] = !known;
                self.send(Event::SymbolUnknown {
                    symbol: i,
                    unknown: !known,
                });
            }
        }
        let live: Vec<usize> = (0..self.plans.len())
            .filter(|&i| !self.unknown[i])
            .collect();
        if live.is_empty() {
            return Ended::Disconnected("the gateway knows none of the symbols".into());
        }
        self.send(Event::Feed(FeedState::Backfilling));
        // The symbols' information on a connection of its own (see `mt5_info`): first here,
        // so the records are there when the feed goes live, then each minute beside it.
        let mut infos = Infos::new(
            &self.config,
            live.iter()
                .map(|&i| (i, self.plans[i].symbol.clone()))
                .collect(),
            self.plans.len(),
        );
        if !infos.refresh(&self.tx, &self.stop) {
            return Ended::Stop;
        }
        for &i in &live {
            if let Err(e) = self.backfill(client, i) {
                return e;
            }
        }
        let symbols: Vec<&str> = live
            .iter()
            .map(|&i| self.plans[i].symbol.as_str())
            .collect();
        // From the newest tick each symbol's backfill recorded: the ticks the terminal made
        // after it, while the other symbols backfilled, come with the stream.
        let since: Vec<(&str, i64)> = live
            .iter()
            .filter_map(|&i| Some((self.plans[i].symbol.as_str(), self.included[i]?.1)))
            .collect();
        let mut stream = match client.subscribe_ticks_since(&symbols, &since) {
            Ok(s) => s,
            Err(e) => return Ended::Disconnected(why(&e)),
        };
        eprintln!(
            "MT5 gateway {}: {} backend, streaming {}",
            self.config.addr,
            hello.backend,
            symbols.join(", ")
        );
        self.send(Event::Feed(FeedState::Live));
        backoff.reset();
        let _refresher = match Refresher::start(infos, self.tx.clone(), Arc::clone(&self.stop)) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!(
                    "warning: MT5 gateway {}: no thread for the minute refresh of symbol                      information ({e}); the records from the start of the session stay",
                    self.config.addr
                );
                None
            }
        };
        let mut refused_said = false;
        let index: HashMap<String, usize> = live
            .iter()
            .map(|&i| (self.plans[i].symbol.clone(), i))
            .collect();
        let mut next_unknown_check = Instant::now() + UNKNOWN_RETRY;
        loop {
            if self.stopped() {
                return Ended::Stop;
            }
            if Instant::now() >= next_unknown_check {
                next_unknown_check = Instant::now() + UNKNOWN_RETRY;
                for i in 0..self.plans.len() {
                    if self.unknown[i] {
                        match knows(client, &self.plans[i].symbol.clone(), &[]) {
                            Ok(true) => return Ended::Resubscribe,
                            Ok(false) => {}
                            Err(e) => return Ended::Disconnected(why(&e)),
                        }
                    }
                }
            }
            match stream.next_event() {
                Ok(GwEvent::Tick { symbol, tick }) => {
                    let Some(&i) = index.get(&symbol) else {
                        continue;
                    };
                    let minute = Timeframe::M1.bar_start(tick.time_msc.div_euclid(1000));
                    match self.included[i] {
                        // Already counted by the backfilled forming bar.
                        Some((bar, upto)) if minute == bar && tick.time_msc <= upto => continue,
                        Some((bar, _)) if minute > bar => self.included[i] = None,
                        _ => {}
                    }
                    if let Some(c) = self.cursor[i].as_mut() {
                        c.pass(&tick);
                    }
                    let t = feed_tick(i, &tick);
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
                Ok(GwEvent::Refused { symbol, why }) => {
                    // One bad tick is refused alone; the stream goes on (issue 40).
                    if !refused_said {
                        refused_said = true;
                        eprintln!(
                            "warning: MT5 gateway {}: a tick of {symbol} refused ({why}); later                              ones are counted (rejected_bad_price)",
                            self.config.addr
                        );
                    }
                    self.send(Event::Count(Counter::RejectedBadPrice, 1));
                }
                Ok(GwEvent::Heartbeat) => {}
                Ok(GwEvent::End { .. }) => return Ended::Finished,
                Err(e) => return Ended::Disconnected(why(&e)),
            }
        }
    }

    /// Fetches what the rings of symbol `i` lack: everything on a cold start, the gap since
    /// the newest known bar after a restart or reconnect.
    fn backfill(&mut self, client: &mut Client, i: usize) -> Result<(), Ended> {
        let plan = self.plans[i].clone();
        let mut forming_m1 = None;
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
                Err(GwError::Mt5 { .. }) => continue,
                Err(e) => return Err(Ended::Disconnected(why(&e))),
            };
            if let (Some(depth), Some(first)) = (self.depth, rates.first()) {
                let stored = plan.stored.get(&tf).copied();
                let want = u64::from(depth.bars).saturating_sub(rates.len() as u64);
                if stored.is_some_and(|s| s < first.time) || (stored.is_none() && want > 0) {
                    let deep = mt5_depth::bars(
                        client,
                        &self.tx,
                        (i, &plan.symbol),
                        tf,
                        first.time,
                        stored,
                        want,
                    )
                    .map_err(ended)?;
                    self.send(Event::Count(Counter::BarsBackfilled, deep));
                }
                // Whatever is older than this backfill is the store's now.
                self.plans[i].stored.insert(tf, first.time);
            }
            let n = rates.len();
            let mut sent = 0;
            for (k, r) in rates.into_iter().enumerate() {
                if known.is_some_and(|t| r.time < t) {
                    continue; // already in the ring
                }
                // Position 0, the newest, is the bar still forming.
                let forming = k + 1 == n;
                if forming && tf == Timeframe::M1 {
                    forming_m1 = Some(r.time);
                }
                if !self.send(bar(i, tf, &r, forming)) {
                    return Err(Ended::Stop);
                }
                sent += 1;
                self.plans[i].known.insert(tf, r.time);
            }
            self.send(Event::Count(Counter::BarsBackfilled, sent));
        }
        // The terminal's latest tick, which the forming M1 bar above already counts: recorded
        // as the symbol's last tick (readers have one from the moment the segment runs), and
        // not counted again when the stream sends it.
        let latest = match client.symbol_info_tick(&plan.symbol) {
            Ok(t) => Some(t),
            Err(GwError::Mt5 { .. }) => None,
            Err(e) => return Err(Ended::Disconnected(why(&e))),
        };
        // A terminal's latest tick is in its newest bar (ticks make bars); one that is not (a
        // csv gateway whose tick file runs past its bars) is not counted by it.
        let in_forming = |t: &shm_core::Tick| {
            forming_m1 == Some(Timeframe::M1.bar_start(t.time_msc.div_euclid(1000)))
        };
        let mut newest = latest;
        if let (Some(depth), Some(t)) = (self.depth, latest) {
            // The store's ticks up to the latest, and with it (`mt5_depth`): the last of them
            // is the latest as the copy saw it, sent below as the ring's latest tick.
            let start = self.cursor[i].or_else(|| {
                let from = depth.ticks.start_ms(t.time_msc)?;
                Some(Cursor {
                    ms: plan.stored_tick.map_or(from, |s| s.max(from)),
                    had: 0,
                })
            });
            if let Some(start) = start {
                let last = mt5_depth::ticks(client, &self.tx, i, &plan.symbol, start, t.time_msc)
                    .map_err(ended)?;
                let mut cursor = start;
                if let Some(l) = &last {
                    cursor.pass(l);
                    if !in_forming(l) {
                        self.send(Event::StoredTicks(super::StoredTicks {
                            symbol: i,
                            ticks: vec![*l],
                        }));
                    }
                }
                self.cursor[i] = Some(cursor);
                // Only a tick the copy found new is the ring's to record.
                newest = last;
            }
        }
        self.included[i] = match (forming_m1, latest) {
            (Some(minute), Some(t)) => {
                if let Some(n) = newest.filter(|n| in_forming(n)) {
                    if !self.send(Event::LatestTick(feed_tick(i, &n))) {
                        return Err(Ended::Stop);
                    }
                }
                Some((
                    minute,
                    newest.map_or(t.time_msc, |n| n.time_msc.max(t.time_msc)),
                ))
            }
            // No forming bar counts it, but the copy above ends with it: the stream starts
            // after it.
            (None, Some(t)) if self.cursor[i].is_some() => Some((i64::MIN, t.time_msc)),
            _ => None,
        };
        Ok(())
    }

    /// At a new minute: MT5's final word on the bars that just closed, for every timeframe
    /// whose bar changed hands. Only closed bars: see the module documentation.
    fn correct(&mut self, client: &mut Client, i: usize, minute: i64) -> Result<(), Ended> {
        let plan = self.plans[i].clone();
        for &(tf, _) in &plan.timeframes {
            let current = tf.bar_start(minute);
            if tf != Timeframe::M1 && current != minute {
                continue; // this timeframe's bars did not change hands
            }
            let rates = match client.copy_rates_from_pos(&plan.symbol, tf, 0, 2) {
                Ok(r) => r,
                Err(GwError::Mt5 { .. }) => continue,
                Err(e) => return Err(Ended::Disconnected(why(&e))),
            };
            // Only bars that are this minute's business; a replayed history (csv) may lag.
            for r in rates {
                if tf.next_bar_start(r.time) == current && !self.send(bar(i, tf, &r, false)) {
                    return Err(Ended::Stop);
                }
            }
        }
        Ok(())
    }
}

/// How a copy into the store that stopped ends the session.
fn ended(stop: Stop) -> Ended {
    match stop {
        Stop::Asked => Ended::Stop,
        Stop::Gateway(e) => Ended::Disconnected(why(&e)),
    }
}

/// Why a call failed, for the worker's warning, which says itself when it tries again (the
/// client's own "retrying in" would say it twice).
fn why(e: &GwError) -> String {
    match e {
        GwError::Unreachable { reason, .. } => format!("unreachable ({reason})"),
        other => other.to_string(),
    }
}

fn bar(symbol: usize, timeframe: Timeframe, r: &Candle, forming: bool) -> Event {
    Event::Bar(Bar {
        symbol,
        timeframe,
        candle: Candle { forming, ..*r },
        fold_up: false,
        amend: true,
    })
}

/// A terminal's tick as the streamer's, with every field MT5 gave it. A terminal tick
/// without flags (never seen, but the wire allows it) has them derived like a CSV feed's.
fn feed_tick(symbol: usize, t: &shm_core::Tick) -> Tick {
    Tick { symbol, tick: *t }
}
