//! What a call can fail with.

use std::fmt;
use std::io;
use std::time::Duration;

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

pub(crate) fn io_error(op: &str, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout { op: op.into() },
        _ => Error::Disconnected {
            op: op.into(),
            source: e,
        },
    }
}
