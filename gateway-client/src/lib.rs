//! A blocking client of the MT5 gateway (protocol v1, `docs/MT5_GATEWAY.md`): the streamer and
//! the monitor reach MetaTrader 5 through it.
//!
//! Every call has connect, read and write timeouts and returns a typed [`Error`]: the gateway
//! is unreachable, it timed out, MT5 itself failed (with its `last_error` code), or the
//! protocol was broken. A lost connection is re-opened on the next call, with exponential
//! backoff between failed attempts so a down gateway is not hammered.
//!
//! ```no_run
//! use mt5_gateway_client::{Client, Config};
//! use shm_core::Timeframe;
//!
//! let mut client = Client::new(Config::new("127.0.0.1:18812"));
//! let hello = client.hello()?;
//! println!("{} backend, server offset {:?}", hello.backend, hello.server_time_offset_seconds);
//! // Oldest first; the last one is MT5's position 0, the bar still forming.
//! let rates = client.copy_rates_from_pos("EURUSD", Timeframe::M1, 0, 100)?;
//! let mut stream = client.subscribe_ticks(&["EURUSD"])?;
//! while let mt5_gateway_client::Event::Tick { symbol, tick } = stream.next_event()? {
//!     println!("{symbol} {} {}", tick.bid, tick.ask);
//! }
//! # Ok::<(), mt5_gateway_client::Error>(())
//! ```

mod conn;
mod error;
mod stream;
mod wire;

pub use conn::{Backoff, Config};
pub use error::Error;
pub use stream::{Event, TickStream};
pub use wire::{
    Candle, Hello, InfoField, Tick, MAX_INFO_FIELDS, MAX_LINE, MAX_RATES_LINE, MAX_TICK_PAGE,
    PROTOCOL,
};

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use shm_core::Timeframe;

use conn::Conn;
use wire::{Envelope, InfoResult, Rates, TickPage, TickResult};

/// A client of one gateway. Not thread-safe: use one per thread.
#[derive(Debug)]
pub struct Client {
    config: Config,
    conn: Option<Conn>,
    next_id: u64,
    backoff: Backoff,
    /// No attempt before this instant (set after a failure).
    next_attempt: Option<Instant>,
    /// Why the last attempt failed, repeated while the backoff holds.
    last_failure: String,
}

impl Client {
    /// A client that connects on first use.
    pub fn new(config: Config) -> Client {
        let backoff = Backoff::new(config.backoff_initial, config.backoff_max);
        Client {
            config,
            conn: None,
            next_id: 1,
            backoff,
            next_attempt: None,
            last_failure: String::new(),
        }
    }

    /// Whether a connection is open (it may still have broken unnoticed).
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Opens a connection if there is none, respecting the backoff after failures.
    fn connect(&mut self) -> Result<Conn, Error> {
        if let Some(at) = self.next_attempt {
            let now = Instant::now();
            if now < at {
                return Err(Error::Unreachable {
                    addr: self.config.addr.clone(),
                    reason: format!("last attempt: {}", self.last_failure),
                    retry_in: Some(at - now),
                });
            }
        }
        match Conn::open(&self.config) {
            Ok(c) => Ok(c),
            Err(reason) => {
                let reason = reason.to_string();
                let wait = self.failed(&reason);
                Err(Error::Unreachable {
                    addr: self.config.addr.clone(),
                    reason,
                    retry_in: Some(wait),
                })
            }
        }
    }

    /// Records a failure: no attempt before the backoff has passed. Returns the wait.
    fn failed(&mut self, why: &str) -> Duration {
        self.last_failure = why.to_owned();
        let wait = self.backoff.fail();
        self.next_attempt = Some(Instant::now() + wait);
        wait
    }

    /// Sends one request and returns its result. Any transport or protocol failure drops the
    /// connection and backs off before the next attempt; an answer that follows the protocol
    /// (a result, or an error from MT5 or the gateway) resets the backoff.
    fn call<T: DeserializeOwned>(
        &mut self,
        op: &str,
        mut params: Value,
        limit: usize,
    ) -> Result<T, Error> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect()?,
        };
        let id = self.next_id;
        self.next_id += 1;
        params["id"] = json!(id);
        params["op"] = json!(op);
        if let Some(t) = &self.config.token {
            params["token"] = json!(t);
        }
        let answer = conn.send(&params.to_string(), op).and_then(|()| {
            let line = conn.receive_line(op, limit, self.config.request_deadline)?;
            // Typed straight from the bytes: no JSON tree of a 10 MB answer is ever built.
            let envelope: Envelope<T> = serde_json::from_slice(&line).map_err(|e| {
                Error::Protocol(format!("{op}: answer is not what the protocol says: {e}"))
            })?;
            match envelope.id {
                Some(got) if got == id => {}
                Some(got) => {
                    return Err(Error::Protocol(format!(
                        "{op}: answer for request {got}, expected {id}"
                    )))
                }
                None => return Err(Error::Protocol(format!("{op}: answer without an id"))),
            }
            match (envelope.ok, envelope.result, envelope.error) {
                (Some(true), Some(result), _) => Ok(Ok(result)),
                (Some(true), None, _) => {
                    Err(Error::Protocol(format!("{op}: answer without a result")))
                }
                (Some(false), _, Some(error)) => Ok(Err(error.into_error())),
                _ => Err(Error::Protocol(format!("{op}: answer without ok"))),
            }
        });
        match answer {
            Ok(result) => {
                // A well-formed answer: the connection and the gateway are healthy.
                self.conn = Some(conn);
                self.backoff.reset();
                result
            }
            Err(e) => {
                self.failed(&e.to_string());
                Err(e)
            }
        }
    }

    /// `hello`: protocol, backend, terminal, server-time offset.
    pub fn hello(&mut self) -> Result<Hello, Error> {
        let client = self.config.client_name.clone();
        let h: Hello = self.call(
            "hello",
            json!({"protocol": PROTOCOL, "client": client}),
            MAX_LINE,
        )?;
        if h.protocol != PROTOCOL {
            return Err(Error::Protocol(format!(
                "gateway speaks protocol {}, this client {PROTOCOL}",
                h.protocol
            )));
        }
        Ok(h)
    }

    /// `ping`; returns the gateway's clock (UTC ms).
    pub fn ping(&mut self) -> Result<i64, Error> {
        let v: Value = self.call("ping", json!({}), MAX_LINE)?;
        v["time_ms"]
            .as_i64()
            .ok_or_else(|| Error::Protocol("ping without time_ms".into()))
    }

    /// `count` bars back from position `start_pos`, oldest first. Position 0 is the bar still
    /// forming, so with `start_pos` 0 the last rate is the forming bar.
    pub fn copy_rates_from_pos(
        &mut self,
        symbol: &str,
        tf: Timeframe,
        start_pos: u32,
        count: u32,
    ) -> Result<Vec<Candle>, Error> {
        let params = json!({"symbol": symbol, "timeframe": tf.name(), "start_pos": start_pos, "count": count});
        Ok(self
            .call::<Rates>("copy_rates_from_pos", params, MAX_RATES_LINE)?
            .rates)
    }

    /// Bars with open times from `from` to `to` (server epoch seconds, both inclusive).
    pub fn copy_rates_range(
        &mut self,
        symbol: &str,
        tf: Timeframe,
        from: i64,
        to: i64,
    ) -> Result<Vec<Candle>, Error> {
        let params = json!({"symbol": symbol, "timeframe": tf.name(), "from": from, "to": to});
        Ok(self
            .call::<Rates>("copy_rates_range", params, MAX_RATES_LINE)?
            .rates)
    }

    /// One page of the ticks of `symbol` from `from_ms` to `to_ms` (both inclusive), less the
    /// first `skip` of those at `from_ms`, at most `count` (up to [`MAX_TICK_PAGE`]), oldest
    /// first. [`ticks_between`](Self::ticks_between) pages through a whole range.
    pub fn copy_ticks_range(
        &mut self,
        symbol: &str,
        from_ms: i64,
        skip: u32,
        to_ms: i64,
        count: u32,
    ) -> Result<Vec<Tick>, Error> {
        let params = json!({"symbol": symbol, "from_ms": from_ms, "skip": skip, "to_ms": to_ms,
                            "count": count});
        Ok(self
            .call::<TickPage>("copy_ticks_range", params, MAX_RATES_LINE)?
            .ticks)
    }

    /// Every tick of `symbol` from `from_ms` to `to_ms` (both inclusive), less the first
    /// `skip` at `from_ms` (the caller has them), oldest first, in
    /// pages of [`MAX_TICK_PAGE`] handed to `page` as they come (so memory holds one page);
    /// `page` returns false to stop. Each page starts at the previous one's last millisecond
    /// and skips the ticks of it already handed on: none twice, none lost, however many
    /// share a millisecond. An answer out of time order is refused (`BAD_ANSWER`).
    pub fn ticks_between(
        &mut self,
        symbol: &str,
        from_ms: i64,
        skip: u32,
        to_ms: i64,
        mut page: impl FnMut(&[Tick]) -> bool,
    ) -> Result<(), Error> {
        let (mut at, mut had) = (from_ms, skip);
        loop {
            let ticks = self.copy_ticks_range(symbol, at, had, to_ms, MAX_TICK_PAGE)?;
            let mut previous = at;
            for t in &ticks {
                if t.time_msc < previous || t.time_msc > to_ms {
                    return Err(Error::Gateway {
                        code: "BAD_ANSWER".into(),
                        message: format!(
                            "copy_ticks_range {symbol}: a tick at {} ms outside {previous}..={to_ms}",
                            t.time_msc
                        ),
                    });
                }
                if t.time_msc == at {
                    had += 1;
                } else {
                    (at, had) = (t.time_msc, 1);
                }
                previous = t.time_msc;
            }
            if !ticks.is_empty() && !page(&ticks) {
                return Ok(());
            }
            if (ticks.len() as u32) < MAX_TICK_PAGE {
                return Ok(());
            }
        }
    }

    /// The latest tick of `symbol`.
    pub fn symbol_info_tick(&mut self, symbol: &str) -> Result<Tick, Error> {
        Ok(self
            .call::<TickResult>("symbol_info_tick", json!({"symbol": symbol}), MAX_LINE)?
            .tick)
    }

    /// MT5's `symbol_info(symbol)`: every field the terminal gives, as it gives it. An answer
    /// with more than [`MAX_INFO_FIELDS`] fields, or a field that is not a number or string,
    /// is refused as [`Error::Gateway`] with code `BAD_ANSWER`; the connection stays.
    pub fn symbol_info(&mut self, symbol: &str) -> Result<Vec<(String, InfoField)>, Error> {
        let map = self
            .call::<InfoResult>("symbol_info", json!({"symbol": symbol}), MAX_LINE)?
            .info;
        wire::info_fields(map).map_err(|message| Error::Gateway {
            code: "BAD_ANSWER".into(),
            message: format!("symbol_info {symbol}: {message}"),
        })
    }

    /// Opens a second connection and subscribes it to the ticks of `symbols`, from the
    /// terminal's newest on.
    pub fn subscribe_ticks(&mut self, symbols: &[&str]) -> Result<TickStream, Error> {
        self.subscribe_ticks_since(symbols, &[])
    }

    /// As [`subscribe_ticks`](Self::subscribe_ticks), but for each `(symbol, time_msc)` of
    /// `since` from the client's own newest tick of that symbol (the terminal's latest at
    /// its backfill): the ticks the terminal made after it, before the subscription, are sent
    /// too, not lost.
    pub fn subscribe_ticks_since(
        &mut self,
        symbols: &[&str],
        since: &[(&str, i64)],
    ) -> Result<TickStream, Error> {
        let mut conn = self.connect()?;
        let op = "subscribe_ticks";
        let id = self.next_id;
        self.next_id += 1;
        let mut request =
            json!({"id": id, "op": op, "symbols": symbols, "token": self.config.token});
        if !since.is_empty() {
            let map: serde_json::Map<String, Value> = since
                .iter()
                .map(|&(s, t)| (s.to_owned(), json!(t.max(0))))
                .collect();
            request["since_msc"] = Value::Object(map);
        }
        let answer = conn.send(&request.to_string(), op).and_then(|()| {
            let line = conn.receive_line(op, MAX_LINE, self.config.request_deadline)?;
            let envelope: Envelope<Value> = serde_json::from_slice(&line).map_err(|e| {
                Error::Protocol(format!("{op}: answer is not what the protocol says: {e}"))
            })?;
            if envelope.id != Some(id) {
                return Err(Error::Protocol(format!(
                    "{op}: answer for request {:?}, expected {id}",
                    envelope.id
                )));
            }
            match (envelope.ok, envelope.error) {
                (Some(true), _) => Ok(Ok(())),
                (Some(false), Some(error)) => Ok(Err(error.into_error())),
                _ => Err(Error::Protocol(format!("{op}: answer without ok"))),
            }
        });
        match answer {
            Ok(Ok(())) => {
                self.backoff.reset();
                Ok(TickStream { conn, ended: false })
            }
            Ok(Err(e)) => {
                self.backoff.reset();
                Err(e)
            }
            Err(e) => {
                self.failed(&e.to_string());
                Err(e)
            }
        }
    }
}
