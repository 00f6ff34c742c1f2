//! The `/streamer/*` JSON API and Prometheus metrics over HTTP, served from the candle segment
//! as one more reader: for curl, health checks, existing Python clients and remote hosts.
//!
//! The shim holds no state of its own besides request counters: every answer comes from the
//! segment. It re-attaches by itself when the streamer restarts with a new layout, and says
//! `503 STREAMER_NOT_RUNNING` while there is no live writer.
//!
//! ```no_run
//! use http_shim::{Shim, ShimConfig};
//!
//! let shim = Shim::start(ShimConfig::default())?; // 127.0.0.1:8000, segment mtf-candles
//! println!("serving on http://{}/streamer/status", shim.local_addr());
//! # Ok::<(), http_shim::StartError>(())
//! ```

pub mod api;
pub mod budget;
pub mod cli;
pub mod gzip;
mod head;
pub mod message;
pub mod metrics;
pub mod reply;
mod respond;
pub mod server;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use shm_core::SegmentPath;

pub use api::{Api, ApiConfig};
pub use server::{Limits, DEFAULT_MAX_STREAMS};

/// Everything the shim needs.
#[derive(Debug, Clone)]
pub struct ShimConfig {
    /// The segment to serve.
    pub segment: SegmentPath,
    /// Where to listen.
    pub bind: SocketAddr,
    /// Allow a bind address other than loopback.
    pub allow_remote: bool,
    /// Require `Authorization: Bearer <token>` on every request.
    pub token: Option<String>,
    /// Serve a non-loopback address without a token (refused otherwise).
    pub allow_remote_without_token: bool,
    /// Largest `limit` accepted (default 10,000); each ring caps it further at its capacity
    /// plus the forming candle.
    pub max_limit: usize,
    /// Connection and time limits.
    pub limits: Limits,
    /// Host names served without a token besides addresses and `localhost` (DNS
    /// rebinding; see `--allowed-host`).
    pub allowed_hosts: Vec<String>,
    /// The history store read for time ranges deeper than the rings (`?from=&to=`).
    pub history: shm_core::history::HistoryPlace,
}

impl Default for ShimConfig {
    fn default() -> Self {
        ShimConfig {
            segment: SegmentPath::named(shm_core::DEFAULT_SEGMENT_NAME)
                .expect("valid default name"),
            bind: SocketAddr::from(([127, 0, 0, 1], 8000)),
            allow_remote: false,
            token: None,
            allow_remote_without_token: false,
            max_limit: 10_000,
            limits: Limits::default(),
            allowed_hosts: Vec::new(),
            history: shm_core::history::HistoryPlace::Default,
        }
    }
}

/// Why the shim did not start.
#[derive(Debug)]
pub enum StartError {
    /// A non-loopback address without `allow_remote`.
    RemoteNotAllowed(SocketAddr),
    /// A non-loopback address without a token (and without `allow_remote_without_token`).
    RemoteWithoutToken(SocketAddr),
    /// An empty token.
    EmptyToken,
    /// `max_limit` of 0.
    BadMaxLimit,
    /// The address could not be bound.
    Bind(SocketAddr, std::io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::RemoteNotAllowed(a) => write!(
                f,
                "{a} is not a loopback address; to serve other hosts, allow it (mtf-shim \
                 --allow-remote, mtf-streamer --http-allow-remote) and set a token \
                 (MTF_SHIM_TOKEN)"
            ),
            StartError::RemoteWithoutToken(a) => write!(
                f,
                "{a} is reachable from other hosts, and no token is set: anyone there could \
                 read the API. Set MTF_SHIM_TOKEN, or, on a network you trust, say so (mtf-shim \
                 --allow-remote-without-token, mtf-streamer --http-allow-remote-without-token)"
            ),
            StartError::EmptyToken => f.write_str("the bearer token is empty"),
            StartError::BadMaxLimit => f.write_str("max limit must be at least 1"),
            StartError::Bind(a, e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                let by = listener_of(a.port())
                    .map(|who| format!(" by {who}"))
                    .unwrap_or_default();
                write!(
                    f,
                    "cannot listen on {a}: the port is taken{by}; stop that program, or choose \
                     another address (mtf-shim --bind, mtf-streamer --http), or run without the \
                     API (mtf-streamer --no-http)"
                )
            }
            StartError::Bind(a, _) => write!(f, "cannot listen on {a}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Bind(_, e) => Some(e),
            _ => None,
        }
    }
}

/// A running shim; dropping it stops the server.
#[derive(Debug)]
pub struct Shim {
    server: server::Server,
}

impl Shim {
    /// Validates the configuration and starts serving in background threads.
    pub fn start(config: ShimConfig) -> Result<Shim, StartError> {
        if !config.bind.ip().is_loopback() && !config.allow_remote {
            return Err(StartError::RemoteNotAllowed(config.bind));
        }
        if config.token.as_deref() == Some("") {
            return Err(StartError::EmptyToken);
        }
        if !config.bind.ip().is_loopback()
            && config.token.is_none()
            && !config.allow_remote_without_token
        {
            return Err(StartError::RemoteWithoutToken(config.bind));
        }
        if config.max_limit == 0 {
            return Err(StartError::BadMaxLimit);
        }
        raise_open_file_limit(config.limits.max_connections as u64 + 256);
        let budget = Arc::new(budget::Budget::new(budget::MAX_INFLIGHT_BYTES));
        let metrics = Arc::new(metrics::Metrics::default());
        let api = Arc::new(Api::new(ApiConfig {
            budget: Arc::clone(&budget),
            metrics: Arc::clone(&metrics),
            max_limit: config.max_limit,
            token: config.token,
            max_streams: config.limits.max_streams,
            stream_write_timeout: config.limits.write_timeout,
            allowed_hosts: config.allowed_hosts,
            history_dir: config.history.dir(&config.segment),
            ..ApiConfig::new(config.segment)
        }));
        let handler: Arc<message::Handler> =
            Arc::new(move |req: &message::Request| api.handle(req));
        let server = server::Server::start(config.bind, config.limits, handler, budget, metrics)
            .map_err(|e| StartError::Bind(config.bind, e))?;
        Ok(Shim { server })
    }

    /// Connections accepted and being served now (for tests and tools that wait on them).
    pub fn open_connections(&self) -> usize {
        self.server.open_connections()
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

/// The program listening on TCP `port` on this host, as `pid N (name)`, if this process may see
/// it: the socket inode from `/proc/net/tcp{,6}`, then the process holding that inode.
fn listener_of(port: u16) -> Option<String> {
    let mut inode = None;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEX_IP:HEX_PORT; state 0A is LISTEN; field 9 is the inode.
            let listening = f.get(3) == Some(&"0A");
            let same_port = f
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok())
                == Some(port);
            if listening && same_port {
                inode = f.get(9).map(|i| format!("socket:[{i}]"));
            }
        }
    }
    let inode = inode?;
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = proc_entry.file_name();
        let Some(pid) = pid
            .to_str()
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == inode.as_str()) {
                let name =
                    std::fs::read_to_string(proc_entry.path().join("comm")).unwrap_or_default();
                return Some(format!("pid {pid} ({})", name.trim()));
            }
        }
    }
    None
}

/// Raises the soft limit on open files towards `wanted` (within the hard limit), so that the
/// connection cap, not a default of 1024 descriptors, is what limits the shim. Windows has no
/// such limit on sockets.
#[cfg(not(unix))]
fn raise_open_file_limit(_wanted: u64) {}

/// Raises the soft limit on open files towards `wanted` (within the hard limit), so that the
/// connection cap, not a default of 1024 descriptors, is what limits the shim.
#[cfg(unix)]
fn raise_open_file_limit(wanted: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    let target = limit.maximum.map_or(wanted, |hard| wanted.min(hard));
    if limit.current.is_some_and(|soft| soft < target) {
        limit.current = Some(target);
        let _ = setrlimit(Resource::Nofile, limit);
    }
}
