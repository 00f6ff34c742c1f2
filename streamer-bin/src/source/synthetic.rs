//! A seeded random-walk feed at realistic prices, with history backfill so that every ring is
//! full at start.
//!
//! The price path depends only on the seed and the symbol; times follow the clock (server time =
//! UTC + the configured offset). Markets never close here: weekends tick like weekdays.

use std::time::{Duration, Instant};

use shm_core::{Candle, FeedState, Timeframe};

use super::{Event, Source, SourceError};
use crate::aggregate::{Bar, Resume, Tick};

/// Price, point size and typical spread (points) of a symbol the demo knows.
pub fn profile(symbol: &str) -> SymbolProfile {
    let upper = symbol.to_ascii_uppercase();
    let (start_price, point, spread_points, daily_volatility) = if upper.starts_with("BTC") {
        (90_000.0, 0.01, 1500.0, 0.03)
    } else if upper.starts_with("ETH") {
        (3_000.0, 0.01, 150.0, 0.04)
    } else if upper.starts_with("XAU") {
        (4_000.0, 0.01, 20.0, 0.01)
    } else if upper.starts_with("XAG") {
        (50.0, 0.001, 30.0, 0.015)
    } else if upper.contains("JPY") {
        (150.0, 0.001, 15.0, 0.005)
    } else if upper.len() >= 6 && upper.bytes().take(6).all(|b| b.is_ascii_alphabetic()) {
        (1.1, 0.00001, 12.0, 0.005)
    } else {
        (100.0, 0.01, 10.0, 0.01)
    };
    SymbolProfile {
        start_price,
        point,
        spread_points,
        daily_volatility,
    }
}

/// What a symbol looks like, guessed from its name: a start price for the synthetic feed, the
/// size of a point (for spreads in points), a typical spread and volatility.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SymbolProfile {
    /// A plausible price to start a synthetic path at.
    pub start_price: f64,
    /// One point: 0.00001 for 5-digit FX, 0.01 for metals and crypto, ...
    pub point: f64,
    /// A typical spread, in points.
    pub spread_points: f64,
    /// Standard deviation of a day's relative move.
    pub daily_volatility: f64,
}

/// splitmix64: small, fast, and good enough for a demo feed; fixed so the seed means the same
/// path on every platform and version.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

#[derive(Debug)]
struct Walker {
    index: usize,
    price: f64,
    point: f64,
    spread: f64,
    /// Volatility of one tick (log return standard deviation).
    sigma_tick: f64,
    rng: Rng,
}

impl Walker {
    /// `p` on the point grid. Dividing by the inverse point (an integer such as 100) gives
    /// the double nearest the decimal, so prices print as `80365.4`, not `80365.40000000001`.
    fn round(&self, p: f64) -> f64 {
        let per_unit = (1.0 / self.point).round();
        (p * per_unit).round() / per_unit
    }

    fn step(&mut self, sigma: f64) -> f64 {
        self.price *= (sigma * self.rng.normal()).exp();
        self.price = self.round(self.price).max(self.point);
        self.price
    }
}

/// The synthetic feed.
#[derive(Debug)]
pub struct Synthetic {
    walkers: Vec<Walker>,
    tick_rate: f64,
    offset_s: i64,
    /// Minutes of M1 history to generate before going live.
    history_minutes: i64,
    resume: Vec<Option<Resume>>,
    /// Backfill progress: the next bar time of each walker, and the end (the current minute).
    /// `None` before the backfill starts and after it ends.
    backfill: Option<(Vec<i64>, i64)>,
    live: bool,
    next_tick: Instant,
    interval: Duration,
    clock: SteadyClock,
}

/// The feed's clock: the wall clock, except that it never goes back. It runs on the monotonic
/// clock from the last time it agreed with the wall clock, and follows the wall clock forward
/// (an NTP correction, a resume from suspend) but not back: a wall clock stepped back by an
/// hour would otherwise date every tick before the forming bar, and the writer would refuse
/// them all for that hour. The writer counts the step (`clock_jumps_back`) and readers see it.
#[derive(Debug)]
struct SteadyClock {
    /// Wall-clock ms at `at`.
    anchor_ms: i64,
    at: Instant,
}

impl SteadyClock {
    fn new() -> SteadyClock {
        SteadyClock {
            anchor_ms: (shm_core::now_ns() / 1_000_000) as i64,
            at: Instant::now(),
        }
    }

    /// Unix ms, never less than the last answer.
    fn now_ms(&mut self) -> i64 {
        let steady = self.anchor_ms + self.at.elapsed().as_millis() as i64;
        let wall = (shm_core::now_ns() / 1_000_000) as i64;
        if wall > steady {
            self.anchor_ms = wall;
            self.at = Instant::now();
            return wall;
        }
        steady
    }
}

impl Synthetic {
    /// A feed for `symbols` (in streamer order) ticking `tick_rate` times a second per symbol.
    /// `history` is how far back to backfill; `resume` continues rings a warm segment already
    /// holds.
    pub fn new(
        symbols: &[String],
        seed: u64,
        tick_rate: f64,
        server_time_offset_s: i64,
        history: Duration,
        resume: Vec<Option<Resume>>,
    ) -> Synthetic {
        let tick_rate = tick_rate.clamp(0.001, 100_000.0);
        let walkers = symbols
            .iter()
            .enumerate()
            .map(|(index, name)| {
                let SymbolProfile {
                    start_price: price,
                    point,
                    spread_points: spread,
                    daily_volatility: vol_day,
                } = profile(name);
                let mut h = seed ^ 0xcbf2_9ce4_8422_2325;
                for b in name.bytes() {
                    h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
                }
                let ticks_per_day = tick_rate * 86_400.0;
                let mut w = Walker {
                    index,
                    price,
                    point,
                    spread,
                    sigma_tick: vol_day / ticks_per_day.sqrt(),
                    rng: Rng(h),
                };
                if let Some(r) = resume.get(index).copied().flatten() {
                    w.price = r.close;
                }
                w
            })
            .collect();
        Synthetic {
            walkers,
            tick_rate,
            offset_s: server_time_offset_s,
            history_minutes: (history.as_secs() as i64 / 60).max(1),
            resume,
            backfill: None,
            live: false,
            next_tick: Instant::now(),
            interval: Duration::from_secs_f64(1.0 / tick_rate),
            clock: SteadyClock::new(),
        }
    }

    fn server_now_ms(&mut self) -> i64 {
        self.clock.now_ms() + self.offset_s * 1000
    }

    /// Where each walker's backfill starts: the history start, or just after the resume point.
    fn backfill_plan(&mut self) -> (Vec<i64>, i64) {
        let now_minute = Timeframe::M1.bar_start(self.server_now_ms().div_euclid(1000));
        let earliest = now_minute - self.history_minutes * 60;
        let starts = self
            .walkers
            .iter()
            .map(|w| match self.resume.get(w.index).copied().flatten() {
                Some(r) => (r.time + 60).max(earliest),
                None => earliest,
            })
            .collect();
        (starts, now_minute)
    }

    /// Appends up to `limit` closed M1 bars of history, walker by walker; `true` when done.
    /// Done in batches so that a long history for many symbols never sits in memory at once.
    fn backfill_some(&mut self, out: &mut Vec<Event>, limit: usize) -> bool {
        let Some((next, end)) = self.backfill.as_mut() else {
            return true;
        };
        let ticks_per_minute = self.tick_rate * 60.0;
        let mut budget = limit;
        for (w, t) in self.walkers.iter_mut().zip(next.iter_mut()) {
            let sigma_minute = w.sigma_tick * ticks_per_minute.sqrt();
            while *t < *end && budget > 0 {
                let open = w.price;
                let close = w.step(sigma_minute);
                let wick = |rng: &mut Rng| (rng.normal().abs() * sigma_minute * 0.5).exp();
                let (up, down) = (wick(&mut w.rng), wick(&mut w.rng));
                let high = w.round(open.max(close) * up);
                let low = w.round(open.min(close) / down).max(w.point);
                let volume = (ticks_per_minute * (0.5 + w.rng.unit())).round().max(1.0) as u64;
                let candle = Candle {
                    time: *t,
                    open,
                    high,
                    low,
                    close,
                    tick_volume: volume,
                    spread: w.spread as i32,
                    ..Candle::default()
                };
                out.push(Event::Bar(Bar {
                    symbol: w.index,
                    timeframe: Timeframe::M1,
                    candle,
                    fold_up: true,
                    amend: false,
                }));
                *t += 60;
                budget -= 1;
            }
        }
        budget > 0
    }
}

impl Synthetic {
    /// `due` ticks of every symbol, stamped `time_ms`.
    fn ticks(&mut self, due: usize, time_ms: i64, out: &mut Vec<Event>) {
        for _ in 0..due {
            for w in &mut self.walkers {
                let bid = w.step(w.sigma_tick);
                let jitter = 1.0 + 0.2 * w.rng.normal().clamp(-2.0, 2.0);
                let ask = w.round(bid + (w.spread * jitter).max(1.0) * w.point);
                out.push(Event::Tick(Tick::quote(w.index, time_ms, bid, ask, 0)));
            }
        }
    }
}

/// Events per poll while backfilling, so the caller heartbeats in between and memory stays flat.
const BACKFILL_BATCH: usize = 8192;

impl Source for Synthetic {
    fn poll(&mut self, out: &mut Vec<Event>, wait: Duration) -> Result<(), SourceError> {
        if !self.live {
            if self.backfill.is_none() {
                self.backfill = Some(self.backfill_plan());
                out.push(Event::Feed(FeedState::Backfilling));
            }
            if self.backfill_some(out, BACKFILL_BATCH) {
                self.backfill = None;
                self.live = true;
                // A tick exists from the moment the segment says running, as MT5 always has a
                // latest tick for a selected symbol: one at the newest price, before `live`.
                let time_ms = self.server_now_ms();
                self.ticks(1, time_ms, out);
                out.push(Event::Feed(FeedState::Live));
                self.next_tick = Instant::now() + self.interval;
            }
            return Ok(());
        }
        let now = Instant::now();
        if now < self.next_tick {
            std::thread::sleep((self.next_tick - now).min(wait));
            if Instant::now() < self.next_tick {
                return Ok(());
            }
        }
        // Catch up on at most one second of missed ticks (e.g. after the process was stopped).
        let mut due = 0;
        while self.next_tick <= Instant::now() && due < self.tick_rate.ceil() as usize + 1 {
            self.next_tick += self.interval;
            due += 1;
        }
        if self.next_tick <= Instant::now() {
            self.next_tick = Instant::now() + self.interval;
        }
        let time_ms = self.server_now_ms();
        self.ticks(due, time_ms, out);
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "synthetic: {} symbol(s) x {} ticks/s, {} min of M1 history",
            self.walkers.len(),
            self.tick_rate,
            self.history_minutes
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(seed: u64) -> Vec<Event> {
        let mut s = Synthetic::new(
            &["BTCUSDc".into(), "EURUSDc".into()],
            seed,
            10.0,
            0,
            Duration::from_secs(3600),
            vec![None, None],
        );
        let mut out = Vec::new();
        while out.last() != Some(&Event::Feed(FeedState::Live)) {
            s.poll(&mut out, Duration::ZERO).unwrap();
        }
        out
    }

    fn prices(events: &[Event]) -> Vec<(usize, u64)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Bar(b) => Some((b.symbol, b.candle.close.to_bits())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_path() {
        let (a, b, c) = (collect(7), collect(7), collect(8));
        assert_eq!(prices(&a), prices(&b));
        assert_ne!(prices(&a), prices(&c));
    }

    #[test]
    fn backfill_covers_the_history_with_valid_bars_at_realistic_prices() {
        let events = collect(1);
        assert_eq!(events.first(), Some(&Event::Feed(FeedState::Backfilling)));
        assert_eq!(events.last(), Some(&Event::Feed(FeedState::Live)));
        let bars: Vec<_> = events
            .iter()
            .filter_map(|e| if let Event::Bar(b) = e { Some(b) } else { None })
            .collect();
        assert_eq!(bars.len(), 2 * 60);
        for b in &bars {
            let c = b.candle;
            assert!(
                c.low <= c.open.min(c.close) && c.high >= c.open.max(c.close),
                "{c:?}"
            );
            assert_eq!(c.time % 60, 0);
            let expected = if b.symbol == 0 { 90_000.0 } else { 1.1 };
            assert!((c.close / expected - 1.0).abs() < 0.1, "{c:?}");
        }
        // Contiguous minutes per symbol.
        let btc: Vec<_> = bars
            .iter()
            .filter(|b| b.symbol == 0)
            .map(|b| b.candle.time)
            .collect();
        assert!(btc.windows(2).all(|w| w[1] == w[0] + 60));
    }

    #[test]
    fn the_live_feed_ticks_at_the_configured_rate() {
        let mut s = Synthetic::new(
            &["XAUUSDc".into()],
            1,
            200.0,
            3600,
            Duration::from_secs(60),
            vec![None],
        );
        let mut out = Vec::new();
        while out.last() != Some(&Event::Feed(FeedState::Live)) {
            s.poll(&mut out, Duration::ZERO).unwrap(); // backfill
        }
        out.clear();
        // Ticks come at the rate (200/s): never more than it allows, however the machine's
        // load delays the polls; the wait is for ticks to come, with a deadline.
        let start = Instant::now();
        let ticks = |out: &Vec<Event>| out.iter().filter(|e| matches!(e, Event::Tick(_))).count();
        while ticks(&out) < 10 {
            assert!(start.elapsed() < Duration::from_secs(30), "no ticks");
            s.poll(&mut out, Duration::from_millis(10)).unwrap();
        }
        let allowed = (start.elapsed().as_secs_f64() * 200.0).ceil() as usize + 2;
        assert!(
            ticks(&out) <= allowed,
            "{} ticks, at most {allowed}",
            ticks(&out)
        );
        let Event::Tick(t) = out[0] else { panic!() };
        let t = t.tick;
        assert!(t.ask > t.bid && t.bid > 3000.0);
        assert!(
            format!("{}", t.bid).split('.').nth(1).map_or(0, str::len) <= 2,
            "on the 0.01 grid: {}",
            t.bid
        );
        let utc_ms = (shm_core::now_ns() / 1_000_000) as i64;
        assert!(
            (t.time_msc - utc_ms - 3_600_000).abs() < 5_000,
            "server time is UTC + offset"
        );
    }
}
