//! The feed's clock, learned from the feed's own ticks, and how far ahead of it a tick may be.
//!
//! A live feed's ticks are stamped with the broker's server time, a fixed distance (the
//! broker's offset, and this host's clock error) ahead of this host's clock, less the time the
//! tick took to arrive. That distance, the *lead*, is what a tick's stamp says of the feed's
//! clock: `server_ms − host_ms`. Honest ticks arrive with a lead at most the largest one seen
//! recently (arrival only ever adds delay); a tick stamped minutes ahead shows a lead minutes
//! larger. Refusing a tick more than [`AHEAD_TOLERANCE_MS`] ahead of the feed's clock stops one
//! forged or broken stamp from becoming the symbol's newest tick, after which every honest tick
//! would be refused as out of order until the wall clock caught up (the freeze of issue 40).
//!
//! Learned from the feed, not from this host's clock against an offset: a trader's PC whose
//! clock is half a minute off must not lose its feed. Rules:
//!
//! - Before the first tick, the clock is the feed's reported offset (the gateway's `hello`),
//!   held loosely ([`SEED_TOLERANCE_MS`], for a host clock that is off); without one, the
//!   first tick is bounded only by the any-broker rule of `aggregate.rs` (nothing here can
//!   know better). From the first accepted tick on, the ticks set the clock.
//! - The clock is the largest lead of the live ticks accepted (a tick that may be old, the
//!   terminal's latest at a backfill, is held to the clock but teaches it nothing), lowered
//!   to a window's largest lead only when a whole [`WINDOW_NS`] stayed below it.
//! - A real jump of the broker's clock (a daylight-saving switch, this host's clock stepped
//!   back) looks like every tick ahead. When ticks keep arriving ahead, agreeing with each
//!   other within the tolerance, for [`ADOPT_AFTER_NS`] and at least [`ADOPT_AFTER_TICKS`]
//!   ticks, with no tick at the old clock among them, the feed's clock moves to them: the
//!   feed keeps moving after about half a minute, and one bad stamp never moves it.

/// How far ahead of the feed's clock a tick may be stamped: the jitter of a broker's clock
/// between two ticks, with room; a forged stamp of the attack round was 5 minutes ahead.
pub const AHEAD_TOLERANCE_MS: i64 = 10_000;

/// How far ahead of a clock known only from the feed's reported offset (no live tick learned
/// yet) a tick may be: this host's clock may be off by tens of seconds (a PC's often is), and
/// the offset says nothing of that.
pub const SEED_TOLERANCE_MS: i64 = 120_000;

/// A window with no tick within the tolerance of the clock lowers the clock to that window's
/// largest lead (the broker's clock went back, or this host's jumped forward). Long, so that
/// a gateway that delivered a minute of ticks late does not pull the clock back.
pub const WINDOW_NS: u64 = 300_000_000_000;

/// How long ticks must keep agreeing on a new clock ahead before it is adopted.
pub const ADOPT_AFTER_NS: u64 = 30_000_000_000;

/// How many ticks must agree on a new clock ahead before it is adopted.
pub const ADOPT_AFTER_TICKS: u32 = 10;

/// A run of ticks ahead of the clock that agree with each other.
#[derive(Debug, Clone, Copy)]
struct Shift {
    /// The largest and smallest lead of the run, ms.
    high: i64,
    low: i64,
    /// When the run began (host ns), and how many ticks it holds.
    since_ns: u64,
    ticks: u32,
}

/// The feed's clock (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct FeedClock {
    /// The feed's clock as a lead over the host's, ms; `None` before the first tick.
    lead_ms: Option<i64>,
    /// Whether `lead_ms` was learned from live ticks (else it is the reported offset's seed).
    learned: bool,
    /// The current window: when it began (host ns) and its largest learned lead.
    window: Option<(u64, i64)>,
    shift: Option<Shift>,
}

impl FeedClock {
    /// A clock that starts from the feed's reported offset (seconds): used only before the
    /// first live tick, since the ticks say better.
    pub fn start_from_offset(&mut self, offset_s: i64) {
        if !self.learned {
            self.lead_ms = Some(offset_s.saturating_mul(1000));
        }
    }

    /// The feed's clock, as a lead over the host's clock (ms), if known.
    pub fn lead_ms(&self) -> Option<i64> {
        self.lead_ms
    }

    /// Whether a tick stamped `time_ms` (server time), arriving when the host's clock says
    /// `now_ns`, is not too far ahead of the feed's clock. With `live`, the tick has just
    /// happened (a live stream's): the clock learns from it. A tick that may be old (the
    /// terminal's latest at a backfill, which can be hours old for a quiet symbol) is held to
    /// the clock but teaches it nothing: a tick's lead is only a lower bound of the clock's.
    pub fn admit(&mut self, time_ms: i64, now_ns: u64, live: bool) -> bool {
        let lead = time_ms.saturating_sub((now_ns / 1_000_000) as i64);
        let Some(clock) = self.lead_ms else {
            if live {
                self.learn(lead, now_ns);
            }
            return true;
        };
        let tolerance = if self.learned {
            AHEAD_TOLERANCE_MS
        } else {
            SEED_TOLERANCE_MS
        };
        if lead <= clock.saturating_add(tolerance) {
            if live {
                self.shift = None;
                self.learn(lead, now_ns);
            }
            return true;
        }
        if !live {
            return false;
        }
        let run = match self.shift {
            Some(s) if lead.max(s.high).saturating_sub(lead.min(s.low)) <= AHEAD_TOLERANCE_MS => {
                Shift {
                    high: s.high.max(lead),
                    low: s.low.min(lead),
                    ticks: s.ticks + 1,
                    ..s
                }
            }
            _ => Shift {
                high: lead,
                low: lead,
                since_ns: now_ns,
                ticks: 1,
            },
        };
        if run.ticks >= ADOPT_AFTER_TICKS && now_ns.saturating_sub(run.since_ns) >= ADOPT_AFTER_NS {
            // The feed's clock really moved: follow it, from a fresh window.
            self.shift = None;
            self.learned = true;
            self.lead_ms = Some(run.high);
            self.window = Some((now_ns, run.high));
            return true;
        }
        self.shift = Some(run);
        false
    }

    /// Learns from a live tick's lead: the clock is the largest lead seen (ticks arrive after
    /// they are stamped, never before), lowered only when a whole window stayed below it.
    fn learn(&mut self, lead: i64, now_ns: u64) {
        if !self.learned {
            // The first live tick says more of the feed's clock than the offset did.
            self.learned = true;
            self.lead_ms = Some(lead);
            self.window = Some((now_ns, lead));
            return;
        }
        let clock = self.lead_ms.unwrap_or(lead).max(lead);
        self.lead_ms = Some(clock);
        match self.window {
            Some((start, high)) if now_ns.saturating_sub(start) < WINDOW_NS => {
                self.window = Some((start, high.max(lead)));
            }
            Some((_, high)) => {
                if high.max(lead) < clock.saturating_sub(AHEAD_TOLERANCE_MS) {
                    self.lead_ms = Some(high.max(lead));
                }
                self.window = Some((now_ns, lead));
            }
            None => self.window = Some((now_ns, lead)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl FeedClock {
        fn admit_live(&mut self, time_ms: i64, now_ns: u64) -> bool {
            self.admit(time_ms, now_ns, true)
        }
    }

    #[test]
    fn an_old_latest_tick_teaches_the_clock_nothing() {
        // A quiet symbol's latest tick, an hour old at the backfill, then live ticks.
        let mut c = FeedClock::default();
        c.start_from_offset(2 * 3600);
        assert!(c.admit(SERVER_MS - 3_600_000, HOST, false));
        assert!(c.admit_live(SERVER_MS - 20, HOST));
        assert!(c.admit_live(SERVER_MS + 980, HOST + S));
        // Nor does a backfill's tick ahead of the clock count towards a shift.
        for k in 0..40u64 {
            assert!(!c.admit(SERVER_MS + 600_000, HOST + k * S, false));
        }
    }

    const S: u64 = 1_000_000_000;
    /// Host time 1,000,000 s; the broker two hours ahead.
    const HOST: u64 = 1_000_000 * S;
    const SERVER_MS: i64 = 1_000_000_000 + 7_200_000;

    #[test]
    fn a_tick_minutes_ahead_is_refused_and_the_honest_ones_after_it_pass() {
        let mut c = FeedClock::default();
        for k in 0..20u64 {
            // Honest ticks, 10-60 ms late.
            assert!(c.admit_live(SERVER_MS + k as i64 * 100 - 30, HOST + k * 100_000_000));
        }
        let now = HOST + 2 * S;
        assert!(
            !c.admit_live(SERVER_MS + 2_000 + 300_000, now),
            "5 minutes ahead"
        );
        assert!(c.admit_live(SERVER_MS + 2_050, now + 100_000_000));
        // A clock a few seconds fast is a broker's jitter, not a forgery.
        assert!(c.admit_live(SERVER_MS + 2_200 + 8_000, now + 200_000_000));
    }

    #[test]
    fn the_first_lead_comes_from_the_offset_and_a_wrong_one_corrects_itself() {
        let mut c = FeedClock::default();
        // Before any tick, the offset bounds the first one (loosely: a host clock is often
        // off): +2 h reported, a first tick 5 minutes past it is refused.
        c.start_from_offset(2 * 3600);
        assert!(!c.admit_live(SERVER_MS + 300_000, HOST));
        // The gateway said +3 h, the broker is at +2 h: its ticks are behind, and pass; the
        // first one sets the clock, and +1 h is refused.
        let mut c = FeedClock::default();
        c.start_from_offset(3 * 3600);
        assert!(c.admit_live(SERVER_MS, HOST));
        assert!(c.admit_live(SERVER_MS + 61_000, HOST + 61 * S));
        assert!(!c.admit_live(SERVER_MS + 62_000 + 3_600_000, HOST + 62 * S));
        // The offset only seeds a clock not yet learned.
        c.start_from_offset(-5 * 3600);
        assert!(c.lead_ms().unwrap() > 7_000_000);
    }

    #[test]
    fn a_real_jump_of_the_brokers_clock_is_followed_after_half_a_minute() {
        let mut c = FeedClock::default();
        assert!(c.admit_live(SERVER_MS, HOST));
        // Daylight saving: the broker's clock an hour ahead from now on.
        let mut refused = 0;
        let mut t = 0;
        while !c.admit_live(SERVER_MS + 3_600_000 + t * 1000, HOST + t as u64 * S) {
            refused += 1;
            t += 1;
            assert!(t < 60, "never followed");
        }
        assert_eq!((refused, t), (30, 30));
        assert!(c.admit_live(SERVER_MS + 3_600_000 + 31_000, HOST + 31 * S));
    }

    #[test]
    fn scattered_forgeries_never_move_the_clock() {
        let mut c = FeedClock::default();
        for k in 0..200u64 {
            let now = HOST + k * S;
            assert!(c.admit_live(SERVER_MS + k as i64 * 1000, now));
            // A forged tick every second, each at another distance ahead: no run agrees.
            let ahead = 60_000 + (k as i64 % 7) * 20_000;
            assert!(!c.admit_live(SERVER_MS + k as i64 * 1000 + ahead, now + 1));
        }
    }
}
