//! A connection to the gateway: addresses and timeouts, framing of lines, and the backoff
//! between failed attempts.

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::error::{io_error, Error};

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
pub(crate) struct Conn {
    pub(crate) reader: BufReader<TcpStream>,
    pub(crate) writer: TcpStream,
    pub(crate) read_timeout: Duration,
}

/// Why a connection could not be opened.
#[derive(Debug)]
pub(crate) enum ConnectError {
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
    pub(crate) fn open(config: &Config) -> Result<Conn, ConnectError> {
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

    pub(crate) fn send(&mut self, line: &str, op: &str) -> Result<(), Error> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.writer.write_all(&bytes).map_err(|e| io_error(op, e))
    }

    /// Reads one line of at most `limit` bytes, which must be complete within `within`
    /// however slowly its bytes arrive (each read also waits at most the read timeout).
    pub(crate) fn receive_line(
        &mut self,
        op: &str,
        limit: usize,
        within: Duration,
    ) -> Result<Vec<u8>, Error> {
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
