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

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use shm_core::Timeframe;

/// The protocol version this client speaks.
pub const PROTOCOL: u32 = 1;
/// The longest response line accepted for rates: the protocol's 50,000 bars at about 200
/// bytes each is 10 MB; this leaves room for longer symbol names and number forms.
pub const MAX_RATES_LINE: usize = 16 * 1024 * 1024;
/// The longest line accepted for any other answer (hello, ping, a tick, a stream event).
pub const MAX_LINE: usize = 64 * 1024;

/// One bar, with exactly MT5's fields.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Rate {
    /// Open time, epoch seconds, broker server time.
    pub time: i64,
    /// Open price.
    pub open: f64,
    /// High price.
    pub high: f64,
    /// Low price.
    pub low: f64,
    /// Close price.
    pub close: f64,
    /// Ticks in the bar.
    pub tick_volume: u64,
    /// Spread in points.
    pub spread: i32,
    /// Exchange volume.
    pub real_volume: u64,
}

impl Rate {
    /// The bar as a segment candle (same server-time stamp), `forming` or closed.
    pub fn to_candle(&self, forming: bool) -> shm_core::Candle {
        shm_core::Candle {
            time: self.time,
            open: self.open,
            high: self.high,
            low: self.low,
            close: self.close,
            tick_volume: self.tick_volume,
            spread: self.spread,
            real_volume: self.real_volume,
            forming,
            repaired: false,
        }
    }
}

/// One tick, with exactly MT5's fields.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Tick {
    /// Epoch seconds, server time.
    pub time: i64,
    /// Bid.
    pub bid: f64,
    /// Ask.
    pub ask: f64,
    /// Last deal price (0 for most FX/CFD).
    pub last: f64,
    /// Volume of the last deal.
    pub volume: u64,
    /// Epoch milliseconds, server time.
    pub time_msc: i64,
    /// MT5 `TICK_FLAG_*` bits.
    pub flags: u32,
    /// Volume of the last deal, with fractions.
    pub volume_real: f64,
}

/// What `hello` tells about the gateway.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Hello {
    /// Protocol version served.
    pub protocol: u32,
    /// Gateway name and version.
    pub gateway: String,
    /// `metatrader5`, `mt5linux` or `csv`.
    pub backend: String,
    /// Terminal details, where there is a terminal.
    pub terminal: Option<Value>,
    /// Account server and login, where there is an account.
    pub account: Option<Value>,
    /// Broker server time minus UTC, if known.
    pub server_time_offset_seconds: Option<i64>,
    /// Known symbols.
    #[serde(default)]
    pub symbols: Vec<String>,
}

/// What went wrong.
#[derive(Debug)]
pub enum Error {
    /// No connection could be made (or the last attempt failed and the backoff has not
    /// expired: `retry_in` says when the next attempt will be made).
    Unreachable {
        /// The gateway address.
        addr: String,
        /// Why.
        reason: String,
        /// Time left before the client tries again.
        retry_in: Option<Duration>,
    },
    /// The gateway did not answer in time; the connection was dropped.
    Timeout {
        /// The operation.
        op: String,
    },
    /// The connection broke during a call; the next call reconnects.
    Disconnected {
        /// The operation.
        op: String,
        /// The I/O error.
        source: io::Error,
    },
    /// MT5 itself failed: `last_error()` of the terminal.
    Mt5 {
        /// MT5's code (-4 not found, -6 authorization failed, -10005 timeout, ...).
        code: i64,
        /// MT5's message.
        message: String,
    },
    /// The gateway refused the request with one of its own codes (`BAD_REQUEST`, `BUSY`, ...).
    Gateway {
        /// The code.
        code: String,
        /// The message.
        message: String,
    },
    /// The gateway's answer broke the protocol.
    Protocol(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unreachable {
                addr,
                reason,
                retry_in: Some(d),
            } => {
                write!(
                    f,
                    "MT5 gateway {addr} unreachable ({reason}); retrying in {} ms",
                    d.as_millis()
                )
            }
            Error::Unreachable {
                addr,
                reason,
                retry_in: None,
            } => write!(f, "MT5 gateway {addr} unreachable ({reason})"),
            Error::Timeout { op } => write!(f, "MT5 gateway did not answer {op} in time"),
            Error::Disconnected { op, .. } => {
                write!(f, "connection to the MT5 gateway broke during {op}")
            }
            Error::Mt5 { code, message } => write!(f, "MT5 error {code}: {message}"),
            Error::Gateway { code, message } => {
                write!(f, "MT5 gateway refused the request: {code}: {message}")
            }
            Error::Protocol(m) => write!(f, "MT5 gateway protocol error: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Disconnected { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Addresses, timeouts and backoff.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST:PORT` of the gateway.
    pub addr: String,
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time allowed for an answer (and, on a stream, between events; the gateway sends a
    /// heartbeat every second).
    pub read_timeout: Duration,
    /// Time allowed to send a request.
    pub write_timeout: Duration,
    /// Time allowed for a whole answer line to arrive, however the bytes trickle in. On a
    /// stream, each event must arrive within `read_timeout` instead.
    pub request_deadline: Duration,
    /// First wait after a failed connection attempt; doubled after each further failure.
    pub backoff_initial: Duration,
    /// Longest wait between attempts.
    pub backoff_max: Duration,
    /// Sent in `hello` as the client's name.
    pub client_name: String,
    /// The gateway's shared secret (its `--token`), sent with every request when set.
    pub token: Option<String>,
}

impl Config {
    /// Defaults for `addr`: connect 3 s, read 10 s, write 10 s, a whole answer 30 s, backoff
    /// 250 ms to 10 s.
    pub fn new(addr: impl Into<String>) -> Config {
        Config {
            addr: addr.into(),
            connect_timeout: Duration::from_secs(3),
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            request_deadline: Duration::from_secs(30),
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            client_name: format!("mt5-gateway-client/{}", env!("CARGO_PKG_VERSION")),
            token: None,
        }
    }
}

/// One open connection.
#[derive(Debug)]
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    read_timeout: Duration,
}

/// Why a connection could not be opened.
#[derive(Debug)]
enum ConnectError {
    Resolve(io::Error),
    NoAddress,
    Io(io::Error),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Resolve(e) => write!(f, "cannot resolve: {e}"),
            ConnectError::NoAddress => f.write_str("the name resolved to no address"),
            ConnectError::Io(e) => e.fmt(f),
        }
    }
}

impl Conn {
    fn open(config: &Config) -> Result<Conn, ConnectError> {
        let addrs = config
            .addr
            .to_socket_addrs()
            .map_err(ConnectError::Resolve)?;
        let mut last = ConnectError::NoAddress;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, config.connect_timeout) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    s.set_read_timeout(Some(config.read_timeout))
                        .map_err(ConnectError::Io)?;
                    s.set_write_timeout(Some(config.write_timeout))
                        .map_err(ConnectError::Io)?;
                    let writer = s.try_clone().map_err(ConnectError::Io)?;
                    return Ok(Conn {
                        reader: BufReader::new(s),
                        writer,
                        read_timeout: config.read_timeout,
                    });
                }
                Err(e) => last = ConnectError::Io(e),
            }
        }
        Err(last)
    }

    fn send(&mut self, line: &str, op: &str) -> Result<(), Error> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.writer.write_all(&bytes).map_err(|e| io_error(op, e))
    }

    /// Reads one line of at most `limit` bytes, which must be complete within `within`
    /// however slowly its bytes arrive (each read also waits at most the read timeout).
    fn receive_line(&mut self, op: &str, limit: usize, within: Duration) -> Result<Vec<u8>, Error> {
        let deadline = Instant::now() + within;
        let mut line = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout { op: op.into() });
            }
            self.reader
                .get_ref()
                .set_read_timeout(Some(left.min(self.read_timeout)))
                .map_err(|e| io_error(op, e))?;
            let buf = match self.reader.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error(op, e)),
            };
            if buf.is_empty() {
                return Err(Error::Disconnected {
                    op: op.into(),
                    source: io::ErrorKind::UnexpectedEof.into(),
                });
            }
            let (take, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            if line.len() + take > limit {
                return Err(Error::Protocol(format!(
                    "{op}: answer line longer than the protocol's {limit} bytes"
                )));
            }
            line.extend_from_slice(&buf[..take]);
            self.reader.consume(take);
            if done {
                return Ok(line);
            }
        }
    }
}

fn io_error(op: &str, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout { op: op.into() },
        _ => Error::Disconnected {
            op: op.into(),
            source: e,
        },
    }
}

/// The `error` object of an `ok: false` answer.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    mt5_code: Option<i64>,
    #[serde(default)]
    mt5_message: Option<String>,
}

impl ErrorBody {
    fn into_error(self) -> Error {
        let code = self.code.unwrap_or_else(|| "UNKNOWN".into());
        let message = self.message.unwrap_or_default();
        match (code.as_str(), self.mt5_code) {
            ("MT5_ERROR", Some(mt5)) => Error::Mt5 {
                code: mt5,
                message: self.mt5_message.unwrap_or(message),
            },
            _ => Error::Gateway { code, message },
        }
    }
}

/// Every answer line: the request's id, and a result or an error.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    ok: Option<bool>,
    #[serde(default = "none")]
    result: Option<T>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

fn none<T>() -> Option<T> {
    None
}

/// Exponential backoff with jitter: every failure doubles the step up to a cap, and the wait
/// is half the step plus a random part of the other half, so that many clients of one gateway
/// do not retry in lockstep. A success resets it.
///
/// ```
/// use std::time::Duration;
/// use mt5_gateway_client::Backoff;
///
/// let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
/// let first = b.fail();
/// assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
/// for _ in 0..10 { b.fail(); }
/// assert!(b.fail() <= Duration::from_secs(1));
/// b.reset();
/// assert!(b.fail() <= Duration::from_millis(100));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    /// Starts at `initial` and never waits more than `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            step: initial,
        }
    }

    /// The wait before the next attempt, after a failure; the step then doubles.
    pub fn fail(&mut self) -> Duration {
        use std::hash::{BuildHasher, RandomState};
        let step = self.step.min(self.max);
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        // RandomState is seeded from the OS per instance: a random number without a crate.
        let r = RandomState::new().hash_one(Instant::now());
        let jitter = half.mul_f64((r >> 11) as f64 / (1u64 << 53) as f64);
        half + jitter
    }

    /// Back to the first step, after a success.
    pub fn reset(&mut self) {
        self.step = self.initial;
    }
}

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

#[derive(Deserialize)]
struct Rates {
    rates: Vec<Rate>,
}

#[derive(Deserialize)]
struct TickResult {
    tick: Tick,
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
    ) -> Result<Vec<Rate>, Error> {
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
    ) -> Result<Vec<Rate>, Error> {
        let params = json!({"symbol": symbol, "timeframe": tf.name(), "from": from, "to": to});
        Ok(self
            .call::<Rates>("copy_rates_range", params, MAX_RATES_LINE)?
            .rates)
    }

    /// The latest tick of `symbol`.
    pub fn symbol_info_tick(&mut self, symbol: &str) -> Result<Tick, Error> {
        Ok(self
            .call::<TickResult>("symbol_info_tick", json!({"symbol": symbol}), MAX_LINE)?
            .tick)
    }

    /// Opens a second connection and subscribes it to the ticks of `symbols`.
    pub fn subscribe_ticks(&mut self, symbols: &[&str]) -> Result<TickStream, Error> {
        let mut conn = self.connect()?;
        let op = "subscribe_ticks";
        let id = self.next_id;
        self.next_id += 1;
        let answer = conn
            .send(
                &json!({"id": id, "op": op, "symbols": symbols, "token": self.config.token})
                    .to_string(),
                op,
            )
            .and_then(|()| {
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

/// What a tick stream delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A tick.
    Tick {
        /// Its symbol.
        symbol: String,
        /// The tick.
        tick: Tick,
    },
    /// The gateway is alive but had no tick to send (at least every second).
    Heartbeat,
    /// The stream is over (a csv replay reached its end); further reads fail.
    End {
        /// Why.
        reason: String,
    },
}

/// One line of a tick stream.
#[derive(Debug, Deserialize)]
struct StreamLine {
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    symbol: Option<String>,
    #[serde(default)]
    tick: Option<Tick>,
    #[serde(default)]
    reason: Option<String>,
}

/// A subscribed connection.
#[derive(Debug)]
pub struct TickStream {
    conn: Conn,
    ended: bool,
}

impl TickStream {
    /// Waits for the next event, at most the read timeout (the gateway heartbeats every second,
    /// so a timeout means it is gone).
    pub fn next_event(&mut self) -> Result<Event, Error> {
        let op = "subscribe_ticks";
        if self.ended {
            return Err(Error::Disconnected {
                op: op.into(),
                source: io::ErrorKind::UnexpectedEof.into(),
            });
        }
        // An event must arrive within the read timeout as a whole (the gateway heartbeats
        // every second), however its bytes trickle in.
        let within = self.conn.read_timeout;
        let line = self.conn.receive_line(op, MAX_LINE, within)?;
        let ev: StreamLine = serde_json::from_slice(&line)
            .map_err(|e| Error::Protocol(format!("bad stream line: {e}")))?;
        match ev.event.as_deref() {
            Some("tick") => match (ev.symbol, ev.tick) {
                (Some(symbol), Some(tick)) => Ok(Event::Tick { symbol, tick }),
                _ => Err(Error::Protocol("tick without symbol or tick".into())),
            },
            Some("heartbeat") => Ok(Event::Heartbeat),
            Some("end") => {
                self.ended = true;
                Ok(Event::End {
                    reason: ev.reason.unwrap_or_default(),
                })
            }
            other => Err(Error::Protocol(format!(
                "unexpected stream event {:?}",
                other.map(|o| o.chars().take(40).collect::<String>())
            ))),
        }
    }
}
