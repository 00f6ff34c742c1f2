//! The origin's limit on the requests it answers (`req.layout`, `req.history`, `req.ticks`,
//! `req.symbol`).
//!
//! Only mirror accounts may send requests (docs/NATS.md), but one of them can still send them
//! by the hundred thousand: each history answer is a page of up to 1,000 candles, and a queue
//! of them once kept every mirror from syncing for 30 s after the flood ended. So:
//!
//! - a request is answered only within a token bucket per client and one for all clients; the
//!   others are dropped at once, without building an answer (the asker times out and asks again,
//!   as after a lost message), counted, and said once a minute at most. A request costs what
//!   answering it reads: a history page the slots of its ring, a layout its number of rings;
//! - a client is, best, the mirror id its request subject names (`req.<KIND>.<ID>`,
//!   `crate::subjects`): on the secured server of docs/NATS.md only that mirror's account may
//!   publish it, so it cannot be forged or multiplied. A request without an id (an open
//!   server) is keyed by its reply subject without the last token: async-nats gives each
//!   connection one inbox prefix, so an honest client keeps its share while another floods, but
//!   a flooder that invents a prefix per request escapes its own bucket (issue 40);
//! - so such anonymous requests may spend only the upper half of the shared bucket: the lower
//!   half is kept for named mirrors, and a flood of invented prefixes cannot starve one;
//! - the NATS connection queues at most [`QUEUED`] requests (async-nats drops the rest as a
//!   slow consumer), so what arrived during a flood is gone within a fraction of a second.
//!
//! A mirror's sync asks one question at a time (a layout, then history pages, tick pages and
//! symbol records), and each answer costs what it holds. With the default rings a symbol costs
//! about 20,000 (eleven pages of a week of M1, three of M5, one of each longer timeframe), so
//! the rates below let a mirror of ten symbols sync at once and one of 100 in about 90 s,
//! while one flooding client costs the origin at most 20,000 candles a second: a fiftieth of
//! a core in release builds (about 1 µs a candle read and written out), a fifth in the tests'
//! debug builds, which must keep up on a busy machine. Ten mirror accounts flooding together
//! reach the shared limit; accounts are the operator's to hand out. A mirror's copy of the
//! origin's history store (`crate::mirror`) asks a page of 1,000 every 100 ms once synced:
//! half of its own bucket's rate, so its next sync still finds the burst.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Candles read per second to answer all clients.
pub const TOTAL_PER_SECOND: f64 = 200_000.0;
/// The burst over all clients.
pub const TOTAL_BURST: f64 = 1_000_000.0;
/// Candles read per second to answer one client (one mirror id, or one reply-subject prefix).
pub const CLIENT_PER_SECOND: f64 = 20_000.0;
/// The burst of one client: a sync of ten symbols with the default rings goes through at once.
pub const CLIENT_BURST: f64 = 200_000.0;
/// Requests the NATS client holds for the origin before it drops more.
pub const QUEUED: usize = 1024;
/// Clients remembered, at most; past it the table starts again (each client with a full
/// bucket), so that invented prefixes cannot grow it.
const CLIENTS: usize = 4096;
/// How often a refusal is said, at most.
const SAY_EVERY: Duration = Duration::from_secs(60);

/// A token bucket: `rate` tokens a second, at most `burst` held.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    /// Whether `cost` tokens are there, after refilling to `now`; does not take them.
    fn has(&mut self, cost: f64, rate: f64, burst: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
        self.tokens >= cost
    }
}

/// Who asks, as far as the origin can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client<'a> {
    /// A mirror id from the request's subject (unforgeable on the secured server).
    Mirror(&'a str),
    /// A request without an id: its reply subject (keyed without its last token).
    Reply(&'a str),
}

/// Why a request was not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its client asked more than [`CLIENT_PER_SECOND`].
    Client,
    /// All clients together asked more than [`TOTAL_PER_SECOND`] (for a request without a
    /// mirror id: more than the upper half of the shared bucket).
    Total,
}

/// The origin's request limit (see the module's documentation).
#[derive(Debug)]
pub struct RequestLimit {
    total: Bucket,
    /// Named mirrors' buckets, by id.
    mirrors: HashMap<String, Bucket>,
    /// Anonymous clients' buckets, by reply prefix.
    clients: HashMap<String, Bucket>,
    refused: u64,
    said_at: Option<Instant>,
}

impl RequestLimit {
    /// A limit with every bucket full at `now`.
    pub fn new(now: Instant) -> RequestLimit {
        RequestLimit {
            total: Bucket::full(TOTAL_BURST, now),
            mirrors: HashMap::new(),
            clients: HashMap::new(),
            refused: 0,
            said_at: None,
        }
    }

    /// Takes `cost` tokens (candles to read) for a request of `client`, or says why not.
    pub fn admit(&mut self, client: Client<'_>, cost: usize, now: Instant) -> Result<(), Refusal> {
        // Never free, and never more than a burst (a request that costs more than a burst is
        // still answered once the bucket is full).
        let cost = (cost.max(1) as f64).min(CLIENT_BURST);
        let (table, key, reserve) = match client {
            Client::Mirror(id) => (&mut self.mirrors, id, 0.0),
            Client::Reply(reply) => (
                &mut self.clients,
                reply.rsplit_once('.').map_or(reply, |(prefix, _)| prefix),
                TOTAL_BURST / 2.0,
            ),
        };
        // A known client is looked up without allocating: a flood is mostly known clients.
        if !table.contains_key(key) && table.len() >= CLIENTS {
            table.clear();
        }
        let own = match table.get_mut(key) {
            Some(bucket) => bucket,
            None => table
                .entry(key.to_owned())
                .or_insert_with(|| Bucket::full(CLIENT_BURST, now)),
        };
        let refusal = if !own.has(cost, CLIENT_PER_SECOND, CLIENT_BURST, now) {
            Some(Refusal::Client)
        } else if !self
            .total
            .has(cost + reserve, TOTAL_PER_SECOND, TOTAL_BURST, now)
        {
            Some(Refusal::Total)
        } else {
            None
        };
        match refusal {
            None => {
                own.tokens -= cost;
                self.total.tokens -= cost;
                Ok(())
            }
            Some(r) => {
                self.refused += 1;
                Err(r)
            }
        }
    }

    /// Requests refused so far.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Whether a refusal at `now` should be said: the first one, then once a minute.
    pub fn should_say(&mut self, now: Instant) -> bool {
        if self
            .said_at
            .is_some_and(|at| now.saturating_duration_since(at) < SAY_EVERY)
        {
            return false;
        }
        self.said_at = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A history page of a ring of 1,000 bars.
    const PAGE: usize = 1000;

    fn flood(limit: &mut RequestLimit, prefix: &str, n: usize, at: Instant) -> usize {
        (0..n)
            .filter(|k| {
                let reply = format!("{prefix}.{k}");
                limit.admit(Client::Reply(&reply), PAGE, at).is_ok()
            })
            .count()
    }

    #[test]
    fn one_client_gets_its_burst_then_its_rate_and_another_is_still_served() {
        let t0 = Instant::now();
        let mut limit = RequestLimit::new(t0);
        let burst = (CLIENT_BURST as usize) / PAGE;
        assert_eq!(flood(&mut limit, "_INBOX.flood", 1000, t0), burst);
        assert_eq!(
            limit.admit(Client::Reply("_INBOX.flood.x"), PAGE, t0),
            Err(Refusal::Client),
            "past its burst"
        );
        // Another client is not held up by the first one's flood.
        assert_eq!(
            limit.admit(Client::Reply("_INBOX.honest.1"), PAGE, t0),
            Ok(())
        );
        // A second later, the flooder has a second's worth again.
        let t1 = t0 + Duration::from_secs(1);
        let rate = (CLIENT_PER_SECOND as usize) / PAGE;
        assert_eq!(flood(&mut limit, "_INBOX.flood", 1000, t1), rate);
        assert_eq!(limit.refused() as usize, 1000 - burst + 1 + 1000 - rate);
    }

    #[test]
    fn invented_prefixes_escape_their_own_bucket_but_not_the_shared_one() {
        let t0 = Instant::now();
        let mut limit = RequestLimit::new(t0);
        let served = (0..10_000)
            .filter(|k| {
                let reply = format!("_INBOX.p{k}.1");
                limit.admit(Client::Reply(&reply), PAGE, t0).is_ok()
            })
            .count();
        // Anonymous requests get the upper half of the shared burst, and no more.
        assert_eq!(served, TOTAL_BURST as usize / 2 / PAGE);
        assert_eq!(
            limit.admit(Client::Reply("_INBOX.honest.1"), PAGE, t0),
            Err(Refusal::Total)
        );
        assert!(limit.clients.len() <= CLIENTS, "the table stays bounded");
        // A named mirror is served from the half kept for it, at once and in full.
        let kept = (0..1000)
            .filter(|_| limit.admit(Client::Mirror("honest"), PAGE, t0).is_ok())
            .count();
        assert_eq!(kept, CLIENT_BURST as usize / PAGE);
        // Named mirrors flooding together spend the shared bucket, each within its own.
        let flooders = (0..100)
            .map(|m| {
                let id = format!("m{m}");
                (0..1000)
                    .filter(|_| limit.admit(Client::Mirror(&id), PAGE, t0).is_ok())
                    .count()
            })
            .sum::<usize>();
        assert_eq!(flooders, (TOTAL_BURST / 2.0 - CLIENT_BURST) as usize / PAGE);
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(
            limit.admit(Client::Mirror("honest-2"), PAGE, t1),
            Ok(()),
            "2,000 candles back after 10 ms"
        );
    }

    #[test]
    fn a_request_costlier_than_a_burst_is_answered_from_a_full_bucket() {
        let t0 = Instant::now();
        let mut limit = RequestLimit::new(t0);
        assert_eq!(
            limit.admit(Client::Reply("_INBOX.big.1"), usize::MAX, t0),
            Ok(())
        );
        assert_eq!(
            limit.admit(Client::Reply("_INBOX.big.2"), 1, t0),
            Err(Refusal::Client)
        );
    }

    #[test]
    fn a_refusal_is_said_once_a_minute() {
        let t0 = Instant::now();
        let mut limit = RequestLimit::new(t0);
        assert!(limit.should_say(t0));
        assert!(!limit.should_say(t0 + Duration::from_secs(59)));
        assert!(limit.should_say(t0 + Duration::from_secs(61)));
    }
}
