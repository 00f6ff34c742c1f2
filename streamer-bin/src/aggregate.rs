//! Ticks and bars into candles of every timeframe, published the moment they change.
//!
//! Feed hygiene rules (each has a counter in the segment header):
//!
//! | input | rule | counter |
//! |---|---|---|
//! | a price that is NaN, infinite, or outside 10^-9 .. 10^9; a volume over 10^15; a bar with a negative spread, `high < max(open, close)` or `low > min(open, close)`; a crossed quote (bid above a non-zero ask); a tick whose bid is more than 1.25 times (or less than 1/1.25 of) the symbol's last price, until 3 ticks in a row confirm the new level | dropped | `rejected_bad_price` |
//! | a tick older than the symbol's newest tick, or older than a forming candle | dropped | `rejected_out_of_order` |
//! | a bar with the time of the newest closed bar | dropped, or with `amend` (authoritative sources) replaces it when it differs | `rejected_duplicate_bar` / `corrections` |
//! | a bar older than the newest closed bar | dropped | `rejected_backwards_bar` |
//! | a bar more than one period after the previous one, on the feed's own timeframe | kept; no filler candles are invented (MT5 makes none either) | `gaps_detected` |
//! | a tick or bar dated after UTC+14 h + 5 min by the writer's clock, later than any broker's server time can be; a bar, once the feed's own offset is known (an MT5 gateway reports it), more than 2 h after the feed's clock; a live feed's tick more than 10 s ahead of the feed's clock as its own ticks show it (`feedclock.rs`) | dropped, so one bad stamp never freezes a symbol | `rejected_future_time` |
//!
//! A closed bar that arrives between the newest closed bar and the forming one (a gap being
//! backfilled after a disconnect) is inserted in order.

use shm_core::{Candle, CandleDefect, Counter, RingId, SymbolId, Timeframe, Writer};

use crate::feedclock::FeedClock;

mod stored;
use crate::quote::{good_price, quote_good, JumpGuard};
pub use crate::quote::{JUMP_CONFIRMATIONS, MAX_TICK_JUMP, MAX_VOLUME, PRICE_RANGE};

/// How far ahead of the writer's UTC clock a server time may be: the largest offset there is
/// (UTC+14) plus 5 minutes for clock drift between the broker and this host. The bound does
/// not depend on the configured offset, so a wrong `--server-offset` cannot reject good data.
pub const FUTURE_TOLERANCE_S: i64 = 14 * 3600 + 300;

/// How far ahead of its own clock (this host's UTC plus the feed's server-time offset) a feed's
/// tick or bar may be, once that offset is known: room for a broker clock that drifts and an
/// offset estimate an hour off at a DST switch, and none for a bar stamped half a day ahead
/// (the attack's now + 13 h passed the UTC+14 h bound, and froze the symbol).
pub const FEED_CLOCK_TOLERANCE_S: i64 = 2 * 3600;

/// The latest server time (epoch seconds) a tick or bar may carry when the writer's clock says
/// `now_ns`.
pub fn latest_plausible_server_time(now_ns: u64) -> i64 {
    (now_ns / 1_000_000_000) as i64 + FUTURE_TOLERANCE_S
}

/// One price update: MT5's tick, of the symbol at `symbol` in the streamer's list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tick {
    /// Index of the symbol in the streamer's symbol list.
    pub symbol: usize,
    /// The tick as the feed gave it. Candles are built from its bid, as MT5's are, and its
    /// `volume` is summed into their `real_volume`. `flags` 0 means a feed that has none
    /// (synthetic, CSV): they are then derived from what changed since the symbol's tick
    /// before (see `record`). `published_ns` is the writer's to set.
    pub tick: shm_core::Tick,
}

impl Tick {
    /// A quote tick: bid and ask, no deal, flags to be derived.
    pub fn quote(symbol: usize, time_msc: i64, bid: f64, ask: f64, volume: u64) -> Tick {
        Tick {
            symbol,
            tick: shm_core::Tick {
                time_msc,
                bid,
                ask,
                last: 0.0,
                volume,
                volume_real: volume as f64,
                flags: 0,
                published_ns: 0,
            },
        }
    }
}

/// Writes an accepted tick into its symbol's tick ring, with the feed's flags or, for a feed
/// without them, flags derived from what changed: `TICK_FLAG_BID`, `_ASK` and `_LAST` for a
/// changed price (every non-zero one on a symbol's first tick), `_VOLUME` for a deal volume.
fn record(w: &mut Writer, s: &mut SymbolState, t: &shm_core::Tick) {
    let flags = if t.flags != 0 {
        t.flags
    } else {
        let (bid, ask, last) = s.last_prices.unwrap_or((0.0, 0.0, 0.0));
        let changed = |now: f64, before: f64, flag: u32| if now != before { flag } else { 0 };
        changed(t.bid, bid, shm_core::TICK_FLAG_BID)
            | changed(t.ask, ask, shm_core::TICK_FLAG_ASK)
            | changed(t.last, last, shm_core::TICK_FLAG_LAST)
            | if t.volume > 0 {
                shm_core::TICK_FLAG_VOLUME
            } else {
                0
            }
    };
    s.last_prices = Some((t.bid, t.ask, t.last));
    let tick = shm_core::Tick { flags, ..*t };
    // The checks above are the ring's own (prices, order), so this is refused only for a
    // value the candles accept and the ring does not (a flag MT5 does not define).
    if let Err(defect) = w.push_tick(s.id, &tick) {
        w.add(
            match defect {
                shm_core::TickDefect::Flags => Counter::RejectedBadFlags,
                _ => Counter::RejectedBadPrice,
            },
            1,
        );
    }
}

/// A bar from a source that delivers bars (CSV exports, the MT5 gateway).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    /// Index of the symbol in the streamer's symbol list.
    pub symbol: usize,
    /// The bar's timeframe.
    pub timeframe: Timeframe,
    /// The bar; `candle.forming` tells a bar still forming from a closed one.
    pub candle: Candle,
    /// Also build the longer timeframes from this bar (CSV replay). Without it only the bar's
    /// own ring is written (the MT5 gateway delivers every timeframe itself).
    pub fold_up: bool,
    /// The source is authoritative: a bar with the time of the newest closed bar replaces it.
    pub amend: bool,
}

/// Per-timeframe state of one symbol.
#[derive(Debug, Clone)]
struct Frame {
    tf: Timeframe,
    ring: RingId,
    /// The forming candle as published.
    forming: Option<Candle>,
    /// Start of the bar after `forming`: a tick before it (and not before `forming.time`)
    /// belongs to `forming`, without any calendar arithmetic.
    forming_end: i64,
    /// Open time of the newest closed candle.
    last_closed: Option<i64>,
    /// For timeframes built from bars: the closed source bars of the current period merged.
    base: Option<Candle>,
}

#[derive(Debug)]
struct SymbolState {
    id: SymbolId,
    /// Price of one point, for spreads in points.
    point: f64,
    last_tick_ms: Option<i64>,
    /// The newest tick's bid, ask and last, for deriving the flags of a feed without them.
    last_prices: Option<(f64, f64, f64)>,
    /// The run of ticks past [`MAX_TICK_JUMP`] that agree with each other.
    jump: JumpGuard,
    /// Ascending by timeframe.
    frames: Vec<Frame>,
}

/// Builds candles for every (symbol, timeframe) ring of a writer.
#[derive(Debug)]
pub struct Aggregator {
    symbols: Vec<SymbolState>,
    /// The feed's server-time offset, once known (see [`Aggregator::set_feed_offset`]).
    feed_offset_s: Option<i64>,
    /// The live feed's clock, learned from its ticks; `None` for a replay, whose server time
    /// runs at its own speed.
    clock: Option<FeedClock>,
}

/// How far a symbol's rings already go (after a warm restart).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resume {
    /// Open time of the newest candle of the shortest timeframe.
    pub time: i64,
    /// Its close.
    pub close: f64,
}

impl Aggregator {
    /// An aggregator for `symbols` (name, point size) on those of `timeframes` the writer has
    /// rings for, continuing from whatever the rings hold.
    ///
    /// # Panics
    /// If a symbol is not in the writer's layout.
    pub fn new(writer: &Writer, symbols: &[(String, f64)], timeframes: &[Timeframe]) -> Aggregator {
        let mut tfs = timeframes.to_vec();
        tfs.sort();
        tfs.dedup();
        let symbols = symbols
            .iter()
            .map(|(name, point)| {
                let id = writer
                    .symbol(name)
                    .expect("layout built from the same symbols");
                let newest = writer.newest_tick(id);
                SymbolState {
                    id,
                    point: *point,
                    // A warm ring's ticks are the ones later ticks must follow.
                    last_tick_ms: newest.map(|t| t.time_msc),
                    last_prices: newest.map(|t| (t.bid, t.ask, t.last)),
                    jump: JumpGuard::default(),
                    // A symbol fed by bars has no rings below the bars' timeframe.
                    frames: tfs
                        .iter()
                        .filter_map(|&tf| Some((tf, writer.ring(name, tf)?)))
                        .map(|(tf, ring)| {
                            let forming = writer.forming(ring).map(|c| Candle {
                                forming: false,
                                ..c
                            });
                            Frame {
                                tf,
                                ring,
                                forming_end: forming
                                    .map_or(i64::MIN, |c| tf.next_bar_start(c.time)),
                                forming,
                                last_closed: writer.last_closed(ring).map(|c| c.time),
                                base: forming,
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        Aggregator {
            symbols,
            feed_offset_s: None,
            clock: None,
        }
    }

    /// Holds a live feed's ticks to the feed's own clock (see `feedclock.rs`): for feeds whose
    /// server time runs with the wall clock (a terminal, the synthetic feed), not replays.
    pub fn follow_feed_clock(&mut self) {
        self.clock.get_or_insert_with(FeedClock::default);
    }

    /// Where each symbol's shortest ring stands, for sources that continue a warm segment.
    pub fn resume_points(&self, writer: &Writer) -> Vec<Option<Resume>> {
        self.symbols
            .iter()
            .map(|s| {
                let f = s.frames.first()?;
                let c = f.forming.or_else(|| writer.last_closed(f.ring))?;
                Some(Resume {
                    time: c.time,
                    close: c.close,
                })
            })
            .collect()
    }

    /// Says the feed's server-time offset (from the feed itself, or the operator's): from now
    /// on, ticks and bars more than [`FEED_CLOCK_TOLERANCE_S`] after the feed's clock are
    /// refused, not only those past any broker's.
    pub fn set_feed_offset(&mut self, seconds: i64) {
        self.feed_offset_s = Some(seconds);
        if let Some(clock) = &mut self.clock {
            clock.start_from_offset(seconds);
        }
    }

    /// The latest server time (epoch s) a tick or bar may carry now.
    fn latest_time(&self, now_ns: u64) -> i64 {
        let any_broker = latest_plausible_server_time(now_ns);
        self.feed_offset_s.map_or(any_broker, |o| {
            ((now_ns / 1_000_000_000) as i64 + o + FEED_CLOCK_TOLERANCE_S).min(any_broker)
        })
    }

    /// Folds one tick into the forming candle of every timeframe of its symbol.
    #[inline]
    pub fn on_tick(&mut self, w: &mut Writer, tick: &Tick) {
        let t = &tick.tick;
        let now_ns = w.clock_ns();
        let latest = self.latest_time(now_ns);
        let Some(s) = self.symbols.get_mut(tick.symbol) else {
            return;
        };
        if t.flags & !shm_core::TICK_FLAGS_KNOWN != 0 {
            // Before any candle counts it: a tick the ring refuses is in no candle either.
            w.add(Counter::RejectedBadFlags, 1);
            return;
        }
        let last = s.frames.first().and_then(|f| f.forming).map(|c| c.close);
        if !quote_good(t.bid, t.ask, t.volume) || !s.jump.confirmed(last, t.bid) {
            w.add(Counter::RejectedBadPrice, 1);
            return;
        }
        let sec = t.time_msc.div_euclid(1000);
        if sec > latest
            || self
                .clock
                .as_mut()
                .is_some_and(|c| !c.admit(t.time_msc, now_ns, true))
        {
            w.add(Counter::RejectedFutureTime, 1);
            return;
        }
        let behind = s.last_tick_ms.is_some_and(|last| t.time_msc < last)
            || s.frames.iter().any(|f| {
                f.forming.is_some_and(|c| sec < c.time) || f.last_closed.is_some_and(|c| sec < c)
            });
        if behind {
            w.add(Counter::RejectedOutOfOrder, 1);
            return;
        }
        s.last_tick_ms = Some(t.time_msc);
        let spread = ((t.ask - t.bid) / s.point)
            .round()
            .clamp(0.0, i32::MAX as f64) as i32;
        let mut closed = 0;
        for (i, f) in s.frames.iter_mut().enumerate() {
            match &mut f.forming {
                Some(c) if sec < f.forming_end => {
                    c.high = c.high.max(t.bid);
                    c.low = c.low.min(t.bid);
                    c.close = t.bid;
                    c.tick_volume += 1;
                    c.real_volume += t.volume;
                    c.spread = c.spread.min(spread);
                    w.update_forming(f.ring, c);
                }
                prev => {
                    let start = f.tf.bar_start(sec);
                    let next = Candle {
                        tick_volume: 1,
                        real_volume: t.volume,
                        spread,
                        ..Candle::flat(start, t.bid)
                    };
                    match prev.take() {
                        Some(old) => {
                            if i == 0 && start > f.forming_end {
                                w.add(Counter::GapsDetected, 1);
                            }
                            w.roll(f.ring, &old, Some(&next));
                            f.last_closed = Some(old.time);
                            closed += 1;
                        }
                        None => w.update_forming(f.ring, &next),
                    }
                    f.forming = Some(next);
                    f.forming_end = f.tf.next_bar_start(start);
                    f.base = None;
                }
            }
        }
        if closed > 0 {
            w.add(Counter::BarsClosed, closed);
        }
        record(w, s, t);
        w.add(Counter::TicksProcessed, 1);
    }

    /// Records `t` as its symbol's newest tick without folding it into a candle: the feed's
    /// backfilled bars already count it. Held to the checks of [`on_tick`](Self::on_tick)
    /// (prices, the feed's clock, order).
    pub fn on_latest_tick(&mut self, w: &mut Writer, tick: &Tick) {
        let t = &tick.tick;
        let now_ns = w.clock_ns();
        let latest = self.latest_time(now_ns);
        let Some(s) = self.symbols.get_mut(tick.symbol) else {
            return;
        };
        if t.flags & !shm_core::TICK_FLAGS_KNOWN != 0 {
            w.add(Counter::RejectedBadFlags, 1);
            return;
        }
        if !quote_good(t.bid, t.ask, t.volume) {
            w.add(Counter::RejectedBadPrice, 1);
            return;
        }
        if t.time_msc.div_euclid(1000) > latest
            || self
                .clock
                .as_mut()
                .is_some_and(|c| !c.admit(t.time_msc, now_ns, false))
        {
            w.add(Counter::RejectedFutureTime, 1);
            return;
        }
        if s.last_tick_ms.is_some_and(|last| t.time_msc < last) {
            w.add(Counter::RejectedOutOfOrder, 1);
            return;
        }
        s.last_tick_ms = Some(t.time_msc);
        record(w, s, t);
    }

    /// Applies a bar to its own ring and, with `fold_up`, to every longer timeframe.
    pub fn on_bar(&mut self, w: &mut Writer, b: &Bar) {
        let latest = self.latest_time(w.clock_ns());
        let Some(s) = self.symbols.get_mut(b.symbol) else {
            return;
        };
        let c = Candle {
            forming: false,
            repaired: false,
            ..b.candle
        };
        // The rule every candle keeps, then this feed's tighter bounds.
        if CandleDefect::of_prices(c.open, c.high, c.low, c.close).is_some()
            || ![c.open, c.high, c.low, c.close].into_iter().all(good_price)
            || c.tick_volume > MAX_VOLUME
            || c.real_volume > MAX_VOLUME
            || c.spread < 0
        {
            w.add(Counter::RejectedBadPrice, 1);
            return;
        }
        if c.time > latest {
            w.add(Counter::RejectedFutureTime, 1);
            return;
        }
        let Some(i) = s.frames.iter().position(|f| f.tf == b.timeframe) else {
            return;
        };
        let f = &mut s.frames[i];
        if let Some(lc) = f.last_closed {
            if c.time < lc {
                w.add(Counter::RejectedBackwardsBar, 1);
                return;
            }
            if c.time == lc {
                if !b.amend {
                    w.add(Counter::RejectedDuplicateBar, 1);
                } else if !b.candle.forming && w.last_closed(f.ring) != Some(c) {
                    w.amend_last_closed(f.ring, &c);
                    w.add(Counter::Corrections, 1);
                }
                return;
            }
        }
        let previous = f.forming.map(|p| p.time).or(f.last_closed);
        if previous.is_some_and(|p| c.time > f.tf.next_bar_start(p)) {
            w.add(Counter::GapsDetected, 1);
        }
        match f.forming {
            Some(old) if old.time == c.time => {
                if b.candle.forming {
                    if b.amend && old != c {
                        w.add(Counter::Corrections, 1);
                    }
                    w.update_forming(f.ring, &c);
                    f.forming = Some(c);
                } else {
                    w.roll(f.ring, &c, None);
                    w.add(Counter::BarsClosed, 1);
                    f.forming = None;
                    f.last_closed = Some(c.time);
                }
            }
            Some(old) if old.time > c.time => {
                // Older than the forming bar but newer than the last closed one: a missed bar
                // (backfill after a gap). Closed ones slot in before the forming bar.
                if b.candle.forming {
                    w.add(Counter::RejectedBackwardsBar, 1);
                    return;
                }
                w.push_closed(f.ring, &c);
                w.add(Counter::BarsBackfilled, 1);
                f.last_closed = Some(c.time);
                return; // Longer timeframes already cover this period.
            }
            Some(old) => {
                // The source moved on: the forming bar closes as it stands.
                let next = b.candle.forming.then_some(c);
                w.roll(f.ring, &old, next.as_ref());
                w.add(Counter::BarsClosed, 1);
                f.last_closed = Some(old.time);
                f.forming = next;
                if !b.candle.forming {
                    w.push_closed(f.ring, &c);
                    w.add(Counter::BarsClosed, 1);
                    f.last_closed = Some(c.time);
                }
            }
            None if b.candle.forming => {
                w.update_forming(f.ring, &c);
                f.forming = Some(c);
            }
            None => {
                w.push_closed(f.ring, &c);
                w.add(Counter::BarsClosed, 1);
                f.last_closed = Some(c.time);
            }
        }
        f.forming_end = f.forming.map_or(i64::MIN, |c| f.tf.next_bar_start(c.time));
        if b.fold_up {
            for f in &mut s.frames[i + 1..] {
                fold(w, f, &c, b.candle.forming);
            }
            // A replay of bars has no ticks: its newest price is the bar's close, recorded as
            // the symbol's last quote (not as a tick of its ring, which holds only ticks the
            // feed delivered), stamped with the bar's open time, the one time it knows. So
            // readers have a latest price from the moment the segment runs.
            if s.last_tick_ms.is_none() {
                let ask = c.close + f64::from(c.spread) * s.point;
                w.record_tick(s.id, c.time * 1000, c.close, ask);
            }
        }
    }
}

/// Merges source bar `c` into the forming candle of the longer timeframe `f`.
fn fold(w: &mut Writer, f: &mut Frame, c: &Candle, source_forming: bool) {
    let start = f.tf.bar_start(c.time);
    match f.forming {
        Some(old) if old.time > start => return, // a backfilled bar of an already closed period
        Some(old) if old.time < start => {
            w.roll(f.ring, &old, None);
            w.add(Counter::BarsClosed, 1);
            f.last_closed = Some(old.time);
            f.forming = None;
            f.base = None;
        }
        _ => {}
    }
    let base = f.base.filter(|b| b.time == start);
    let forming = merge(base, start, c);
    if !source_forming {
        f.base = Some(forming);
    }
    f.forming = Some(forming);
    f.forming_end = f.tf.next_bar_start(start);
    w.update_forming(f.ring, &forming);
}

/// `base` (the merged bars so far in the period starting at `start`) extended by `c`.
fn merge(base: Option<Candle>, start: i64, c: &Candle) -> Candle {
    match base {
        None => Candle {
            time: start,
            forming: false,
            ..*c
        },
        Some(b) => Candle {
            time: start,
            open: b.open,
            high: b.high.max(c.high),
            low: b.low.min(c.low),
            close: c.close,
            tick_volume: b.tick_volume + c.tick_volume,
            spread: b.spread.min(c.spread),
            real_volume: b.real_volume + c.real_volume,
            forming: false,
            repaired: false,
        },
    }
}
