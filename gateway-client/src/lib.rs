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
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use shm_core::Timeframe;

/// The protocol version this client speaks.
pub const PROTOCOL: u32 = 1;
/// The longest response line accepted (50,000 bars at about 200 bytes, with room to spare).
pub const MAX_RESPONSE_LINE: u64 = 64 * 1024 * 1024;

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
    /// First wait after a failed connection attempt; doubled after each further failure.
    pub backoff_initial: Duration,
    /// Longest wait between attempts.
    pub backoff_max: Duration,
    /// Sent in `hello` as the client's name.
    pub client_name: String,
}

impl Config {
    /// Defaults for `addr`: connect 3 s, read 10 s, write 10 s, backoff 250 ms to 10 s.
    pub fn new(addr: impl Into<String>) -> Config {
        Config {
            addr: addr.into(),
            connect_timeout: Duration::from_secs(3),
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            client_name: format!("mt5-gateway-client/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// One open connection.
#[derive(Debug)]
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(config: &Config) -> Result<Conn, String> {
        let addrs = config
            .addr
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve: {e}"))?;
        let mut last = String::from("no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, config.connect_timeout) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    s.set_read_timeout(Some(config.read_timeout))
                        .map_err(|e| e.to_string())?;
                    s.set_write_timeout(Some(config.write_timeout))
                        .map_err(|e| e.to_string())?;
                    let writer = s.try_clone().map_err(|e| e.to_string())?;
                    return Ok(Conn {
                        reader: BufReader::new(s),
                        writer,
                    });
                }
                Err(e) => last = e.to_string(),
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

    /// Reads one line, parsed as JSON.
    fn receive(&mut self, op: &str) -> Result<Value, Error> {
        let mut line = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_RESPONSE_LINE)
            .read_until(b'\n', &mut line)
            .map_err(|e| io_error(op, e))?;
        if n == 0 {
            return Err(Error::Disconnected {
                op: op.into(),
                source: io::ErrorKind::UnexpectedEof.into(),
            });
        }
        if line.last() != Some(&b'\n') {
            return Err(Error::Protocol(format!(
                "{op}: response line over {MAX_RESPONSE_LINE} bytes or cut short"
            )));
        }
        serde_json::from_slice(&line)
            .map_err(|e| Error::Protocol(format!("{op}: response is not JSON: {e}")))
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

/// Turns an `ok: false` error object into an [`Error`].
fn error_from(v: &Value) -> Error {
    let code = v["code"].as_str().unwrap_or("UNKNOWN").to_owned();
    let message = v["message"].as_str().unwrap_or_default().to_owned();
    match (code.as_str(), v["mt5_code"].as_i64()) {
        ("MT5_ERROR", Some(mt5)) => Error::Mt5 {
            code: mt5,
            message: v["mt5_message"].as_str().unwrap_or(&message).to_owned(),
        },
        _ => Error::Gateway { code, message },
    }
}

/// A client of one gateway. Not thread-safe: use one per thread.
#[derive(Debug)]
pub struct Client {
    config: Config,
    conn: Option<Conn>,
    next_id: u64,
    /// Wait after the next failed attempt.
    backoff: Duration,
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
        let backoff = config.backoff_initial;
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
            Ok(c) => {
                self.backoff = self.config.backoff_initial;
                self.next_attempt = None;
                Ok(c)
            }
            Err(reason) => {
                self.last_failure.clone_from(&reason);
                let wait = self.backoff;
                self.next_attempt = Some(Instant::now() + wait);
                self.backoff = (self.backoff * 2).min(self.config.backoff_max);
                Err(Error::Unreachable {
                    addr: self.config.addr.clone(),
                    reason,
                    retry_in: Some(wait),
                })
            }
        }
    }

    /// Sends one request and returns its result. Any transport failure drops the connection.
    fn call<T: DeserializeOwned>(&mut self, op: &str, mut params: Value) -> Result<T, Error> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect()?,
        };
        let id = self.next_id;
        self.next_id += 1;
        params["id"] = json!(id);
        params["op"] = json!(op);
        conn.send(&params.to_string(), op)?;
        let v = conn.receive(op)?;
        // The connection is healthy from here on, whatever the answer says.
        let result = match (v["ok"].as_bool(), v["id"].as_u64()) {
            (_, Some(got)) if got != id => Err(Error::Protocol(format!(
                "{op}: answer for request {got}, expected {id}"
            ))),
            (Some(true), _) => serde_json::from_value(v["result"].clone())
                .map_err(|e| Error::Protocol(format!("{op}: unexpected result: {e}"))),
            (Some(false), _) => Err(error_from(&v["error"])),
            _ => Err(Error::Protocol(format!("{op}: answer without ok"))),
        };
        if !matches!(result, Err(Error::Protocol(_))) {
            self.conn = Some(conn);
        }
        result
    }

    /// `hello`: protocol, backend, terminal, server-time offset.
    pub fn hello(&mut self) -> Result<Hello, Error> {
        let client = self.config.client_name.clone();
        let h: Hello = self.call("hello", json!({"protocol": PROTOCOL, "client": client}))?;
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
        let v: Value = self.call("ping", json!({}))?;
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
        Ok(self.call::<Rates>("copy_rates_from_pos", params)?.rates)
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
        Ok(self.call::<Rates>("copy_rates_range", params)?.rates)
    }

    /// The latest tick of `symbol`.
    pub fn symbol_info_tick(&mut self, symbol: &str) -> Result<Tick, Error> {
        Ok(self
            .call::<TickResult>("symbol_info_tick", json!({"symbol": symbol}))?
            .tick)
    }

    /// Opens a second connection and subscribes it to the ticks of `symbols`.
    pub fn subscribe_ticks(&mut self, symbols: &[&str]) -> Result<TickStream, Error> {
        let mut conn = self.connect()?;
        let op = "subscribe_ticks";
        conn.send(
            &json!({"id": 0, "op": op, "symbols": symbols}).to_string(),
            op,
        )?;
        let v = conn.receive(op)?;
        match v["ok"].as_bool() {
            Some(true) => Ok(TickStream { conn, ended: false }),
            Some(false) => Err(error_from(&v["error"])),
            None => Err(Error::Protocol("subscribe_ticks: answer without ok".into())),
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
        let v = self.conn.receive(op)?;
        match v["event"].as_str() {
            Some("tick") => {
                let symbol = v["symbol"]
                    .as_str()
                    .ok_or_else(|| Error::Protocol("tick without symbol".into()))?
                    .to_owned();
                let tick = serde_json::from_value(v["tick"].clone())
                    .map_err(|e| Error::Protocol(format!("bad tick: {e}")))?;
                Ok(Event::Tick { symbol, tick })
            }
            Some("heartbeat") => Ok(Event::Heartbeat),
            Some("end") => {
                self.ended = true;
                Ok(Event::End {
                    reason: v["reason"].as_str().unwrap_or_default().to_owned(),
                })
            }
            _ => Err(Error::Protocol(format!(
                "unexpected stream line: {}",
                v.to_string().chars().take(200).collect::<String>()
            ))),
        }
    }
}
