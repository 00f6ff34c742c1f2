//! The source chain: try each source in order, skip the unusable, remember who served each
//! symbol so that a change is reported once, and count what happened.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::bar::{utc_time, Candle};
use crate::source::{BarSource, Origin, Skip};

/// How far in the future a bar's open time may be, for clock drift between hosts.
const FUTURE_SLACK_S: i64 = 60;

/// When a source's answer is good enough.

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Bars asked for.
    pub count: usize,
    /// Fewer bars than this and the source is skipped.
    pub min_bars: usize,
    /// A newest bar whose open time is older than this (seconds) and the source is skipped.
    pub max_age_s: i64,
}

impl Default for Policy {
    /// 50 bars asked, at least 10, the newest at most 90 s old.
    fn default() -> Policy {
        Policy {
            count: 50,
            min_bars: 10,
            max_age_s: 90,
        }
    }
}

/// The source that served a symbol, and what it gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    /// Which source.
    pub kind: Origin,
    /// The bars, oldest first, in the source's server time.
    pub bars: Vec<Candle>,
    /// The source's server-time offset (server time minus UTC, seconds).
    pub offset_s: i64,
    /// The segment's writer generation, where known.
    pub generation: Option<u64>,
    /// Time the serving source took, parsing included.
    pub latency: Duration,
    /// Age of the newest bar's open time, seconds.
    pub age_s: i64,
}

/// One symbol's result of one cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The symbol.
    pub symbol: String,
    /// Who served it, if anyone.
    pub served: Option<Served>,
    /// The sources tried before (or, with no server, instead of) it, and why each was skipped.
    pub skipped: Vec<(Origin, Skip)>,
    /// A line to log because the serving source changed (or this is the first cycle).
    pub transition: Option<String>,
    /// With no live source: the last candles a stopped (or dead) segment keeps, labelled stale.
    pub last_known: Option<LastKnown>,
}

/// Candles that are not live: the last a segment kept after its writer stopped or died.
#[derive(Debug, Clone, PartialEq)]
pub struct LastKnown {
    /// Which source kept them.
    pub kind: Origin,
    /// The bars, oldest first, in the source's server time.
    pub bars: Vec<Candle>,
    /// The source's server-time offset (server time minus UTC, seconds).
    pub offset_s: i64,
    /// Why they are not live (`writer stopped`, `writer gone`).
    pub why: String,
    /// Age of the newest bar's open time, seconds.
    pub age_s: i64,
}

/// Per-source counts since the start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceCounters {
    /// Symbol-cycles served.
    pub served: u64,
    /// Skips, by [`Skip::class`].
    pub skipped: Vec<(&'static str, u64)>,
    /// Sum of the serving latencies.
    pub latency_total: Duration,
    /// Longest serving latency.
    pub latency_max: Duration,
}

impl SourceCounters {
    fn skip(&mut self, class: &'static str) {
        match self.skipped.iter_mut().find(|(c, _)| *c == class) {
            Some((_, n)) => *n += 1,
            None => self.skipped.push((class, 1)),
        }
    }

    /// Mean serving latency.
    pub fn latency_mean(&self) -> Option<Duration> {
        (self.served > 0).then(|| self.latency_total / self.served as u32)
    }
}

/// The sources in order, with what each symbol last used.
pub struct Chain {
    sources: Vec<Box<dyn BarSource>>,
    policy: Policy,
    last: HashMap<String, Option<Origin>>,
    counters: Vec<SourceCounters>,
    unserved: u64,
}

impl Chain {
    /// A chain trying `sources` in order.
    pub fn new(sources: Vec<Box<dyn BarSource>>, policy: Policy) -> Chain {
        let counters = vec![SourceCounters::default(); sources.len()];
        Chain {
            sources,
            policy,
            last: HashMap::new(),
            counters,
            unserved: 0,
        }
    }

    /// The policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Each source's counters, in chain order.
    pub fn counters(&self) -> impl Iterator<Item = (Origin, &SourceCounters)> {
        self.sources
            .iter()
            .map(|s| s.kind())
            .zip(self.counters.iter())
    }

    /// Symbol-cycles no source served.
    pub fn unserved(&self) -> u64 {
        self.unserved
    }

    /// Gets `symbol`'s bars from the first usable source; `now_s` is the current UTC time in
    /// epoch seconds.
    pub fn poll(&mut self, symbol: &str, now_s: i64) -> Outcome {
        let mut skipped = Vec::new();
        let mut served = None;
        for (i, source) in self.sources.iter_mut().enumerate() {
            let kind = source.kind();
            let start = Instant::now();
            let result = source.fetch(symbol, self.policy.count);
            let latency = start.elapsed();
            let verdict = result.and_then(|f| {
                let age_s = f
                    .bars
                    .last()
                    .map_or(i64::MAX, |b| now_s - utc_time(b, f.offset_s));
                if f.bars.len() < self.policy.min_bars {
                    Err(Skip::TooFew {
                        got: f.bars.len(),
                        need: self.policy.min_bars,
                    })
                } else if age_s < -FUTURE_SLACK_S {
                    // A negative age is never fresh: a wrong offset or a bad stamp.
                    Err(Skip::BadData(format!(
                        "newest M1 opens {} s in the future (wrong server-time offset?)",
                        -age_s
                    )))
                } else if age_s > self.policy.max_age_s {
                    Err(Skip::Stale {
                        age_s,
                        max_age_s: self.policy.max_age_s,
                    })
                } else {
                    Ok(Served {
                        kind,
                        bars: f.bars,
                        offset_s: f.offset_s,
                        generation: f.generation,
                        latency,
                        age_s,
                    })
                }
            });
            match verdict {
                Ok(s) => {
                    let c = &mut self.counters[i];
                    c.served += 1;
                    c.latency_total += latency;
                    c.latency_max = c.latency_max.max(latency);
                    served = Some(s);
                    break;
                }
                Err(skip) => {
                    if skip != Skip::NotConfigured {
                        self.counters[i].skip(skip.class());
                    }
                    skipped.push((kind, skip));
                }
            }
        }
        let mut last_known = None;
        if served.is_none() {
            self.unserved += 1;
            for source in &mut self.sources {
                if let Some((f, why)) = source.last_known(symbol, self.policy.count) {
                    let age_s = f
                        .bars
                        .last()
                        .map_or(i64::MAX, |b| now_s - utc_time(b, f.offset_s));
                    last_known = Some(LastKnown {
                        kind: source.kind(),
                        offset_s: f.offset_s,
                        bars: f.bars,
                        why,
                        age_s,
                    });
                    break;
                }
            }
        }
        let now = served.as_ref().map(|s| s.kind);
        let previous = self.last.insert(symbol.to_owned(), now);
        let transition = match previous {
            Some(p) if p == now => None,
            previous => Some(transition(symbol, previous.flatten(), &served, &skipped)),
        };
        Outcome {
            symbol: symbol.to_owned(),
            served,
            skipped,
            transition,
            last_known,
        }
    }
}

/// The line that reports a change of source, e.g. `BTCUSDc: shm unavailable (writer gone) → http`.
fn transition(
    symbol: &str,
    previous: Option<Origin>,
    served: &Option<Served>,
    skipped: &[(Origin, Skip)],
) -> String {
    let reasons = |only: Option<Origin>| {
        let parts: Vec<String> = skipped
            .iter()
            .filter(|(k, _)| only.is_none_or(|o| o == *k))
            .map(|(k, s)| format!("{k} {s}"))
            .collect();
        parts.join("; ")
    };
    match (previous, served) {
        (_, None) => format!("{symbol}: no source ({})", reasons(None)),
        (Some(p), Some(s)) if s.kind < p => {
            let generation = s
                .generation
                .map(|g| format!(", generation {g}"))
                .unwrap_or_default();
            format!(
                "{symbol}: {p} → {} ({} is back{generation})",
                s.kind, s.kind
            )
        }
        (Some(p), Some(s)) => {
            let why = reasons(Some(p));
            let why = if why.is_empty() { reasons(None) } else { why };
            format!("{symbol}: {why} → {}", s.kind)
        }
        (None, Some(s)) if skipped.is_empty() => format!("{symbol}: reading from {}", s.kind),
        (None, Some(s)) => format!("{symbol}: {} → {}", reasons(None), s.kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Fetched;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A source whose next answers a test sets.
    struct Scripted {
        kind: Origin,
        answer: Rc<RefCell<Result<Fetched, Skip>>>,
    }

    impl BarSource for Scripted {
        fn kind(&self) -> Origin {
            self.kind
        }
        fn fetch(&mut self, _: &str, _: usize) -> Result<Fetched, Skip> {
            self.answer.borrow().clone()
        }
    }

    fn bars(n: usize, newest: i64) -> Fetched {
        let bars = (0..n as i64)
            .map(|i| Candle {
                time: newest - (n as i64 - 1 - i) * 60,
                open: 1.0,
                high: 1.0,
                low: 1.0,
                close: 1.0,
                tick_volume: 1,
                spread: 0,
                real_volume: 0,
                forming: false,
                repaired: false,
            })
            .collect();
        Fetched {
            bars,
            offset_s: 0,
            generation: Some(1),
        }
    }

    type Answer = Rc<RefCell<Result<Fetched, Skip>>>;

    fn chain() -> (Chain, Answer, Answer) {
        let shm: Answer = Rc::new(RefCell::new(Ok(bars(50, 1000))));
        let http: Answer = Rc::new(RefCell::new(Ok(bars(50, 1000))));
        let sources: Vec<Box<dyn BarSource>> = vec![
            Box::new(Scripted {
                kind: Origin::Shm,
                answer: Rc::clone(&shm),
            }),
            Box::new(Scripted {
                kind: Origin::Http,
                answer: Rc::clone(&http),
            }),
        ];
        (Chain::new(sources, Policy::default()), shm, http)
    }

    #[test]
    fn a_change_of_source_is_reported_once_each_way() {
        let (mut chain, shm, _http) = chain();
        let o = chain.poll("BTCUSDc", 1010);
        assert_eq!(o.served.unwrap().kind, Origin::Shm);
        assert_eq!(o.transition.as_deref(), Some("BTCUSDc: reading from shm"));
        assert_eq!(chain.poll("BTCUSDc", 1010).transition, None);

        *shm.borrow_mut() = Err(Skip::Unavailable("writer gone".into()));
        let o = chain.poll("BTCUSDc", 1010);
        assert_eq!(o.served.as_ref().unwrap().kind, Origin::Http);
        assert_eq!(
            o.transition.as_deref(),
            Some("BTCUSDc: shm unavailable (writer gone) → http")
        );
        assert_eq!(chain.poll("BTCUSDc", 1010).transition, None, "said once");

        *shm.borrow_mut() = Ok(bars(50, 1000));
        let o = chain.poll("BTCUSDc", 1010);
        assert_eq!(
            o.transition.as_deref(),
            Some("BTCUSDc: http → shm (shm is back, generation 1)")
        );
        let shm_counts = chain.counters().next().unwrap().1.clone();
        assert_eq!(shm_counts.served, 3);
        assert_eq!(shm_counts.skipped, [("unavailable", 2)]);
    }

    #[test]
    fn too_few_and_stale_answers_fall_through_and_none_is_reported() {
        let (mut chain, shm, http) = chain();
        *shm.borrow_mut() = Ok(bars(9, 1000));
        let o = chain.poll("XAUUSDc", 1010);
        assert_eq!(o.served.unwrap().kind, Origin::Http);
        assert_eq!(
            o.skipped,
            [(Origin::Shm, Skip::TooFew { got: 9, need: 10 })]
        );

        *shm.borrow_mut() = Ok(bars(50, 1000));
        let o = chain.poll("XAUUSDc", 1091);
        assert!(o.served.is_none(), "both 91 s old");
        assert_eq!(
            o.skipped[1],
            (
                Origin::Http,
                Skip::Stale {
                    age_s: 91,
                    max_age_s: 90
                }
            )
        );
        assert_eq!(
            o.transition.as_deref(),
            Some("XAUUSDc: no source (shm stale (newest M1 is 91 s old, limit 90 s); http stale (newest M1 is 91 s old, limit 90 s))")
        );
        assert_eq!(chain.unserved(), 1);
        *http.borrow_mut() = Ok(bars(50, 1100));
        let o = chain.poll("XAUUSDc", 1101);
        assert_eq!(o.served.unwrap().age_s, 1);
        assert!(o.transition.unwrap().ends_with("→ http"));
    }

    #[test]
    fn a_newest_bar_in_the_future_is_bad_data_never_fresh() {
        let (mut chain, shm, http) = chain();
        // The newest bar opens 3 h after "now": a wrong offset, or a poisoned stamp.
        *shm.borrow_mut() = Ok(bars(50, 1000 + 3 * 3600));
        *http.borrow_mut() = Ok(bars(50, 1000));
        let o = chain.poll("XAUUSDc", 1010);
        assert_eq!(o.served.unwrap().kind, Origin::Http);
        assert_eq!(o.skipped[0].1.class(), "bad_data");
        assert!(o.skipped[0].1.to_string().contains("in the future"));
        // Within a minute of drift is still fine.
        *shm.borrow_mut() = Ok(bars(50, 1050));
        assert_eq!(
            chain.poll("XAUUSDc", 1010).served.unwrap().kind,
            Origin::Shm
        );
    }
}
