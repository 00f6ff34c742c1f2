//! Candle changes beyond one host, through NATS.
//!
//! The origin's streamer runs a [`Publisher`] (`mtf-streamer --nats nats://HOST:4222`): every
//! candle change of its segment goes to NATS, and it answers the layout and history requests
//! of mirrors. On every other host, `mtf-mirror` ([`mirror::run`]) subscribes and writes an
//! identical local segment through shm-core's writer, so that local readers read in
//! nanoseconds what was written on the origin. Subjects and payloads are in [`wire`] and
//! docs/NATS.md.
//!
//! The client is the official `async-nats`, on a small single-threaded tokio runtime in a
//! thread of its own: the rest of the project stays blocking, and the writer never waits for
//! the network.

pub mod cli;
pub mod connect;
pub mod limit;
pub mod mirror;
pub mod publish;
mod store;
pub mod subjects;
pub mod ticks;
pub mod wire;

use std::fmt;

pub use connect::{NatsAuth, NatsConfigError, NatsSettings};
pub use mirror::MirrorConfig;
pub use publish::{PublishConfig, Publisher};

/// Resolves once `stop` is set (checked every 50 ms): raced against a NATS task, so that
/// SIGTERM ends it whatever the connection is doing.
async fn stopped(stop: &std::sync::atomic::AtomicBool) {
    // Relaxed: a stop flag, no data with it.
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Why the bridge could not do what it was asked.
#[derive(Debug)]
pub enum BridgeError {
    /// The segment to publish could not be opened.
    Open(shm_core::OpenError),
    /// The mirror's segment could not be created.
    Create(shm_core::CreateError),
    /// A thread or runtime could not be started.
    Thread(std::io::Error),
    /// The NATS client could not be set up (a malformed URL, say).
    Connect(async_nats::ConnectError),
    /// The NATS login or TLS settings cannot be used.
    NatsConfig(NatsConfigError),
    /// A subscription was refused.
    Subscribe(async_nats::SubscribeError),
    /// A request to the origin failed (no origin listening, or the link went).
    Request(async_nats::RequestError),
    /// A request to the origin got no answer in time.
    RequestTimedOut,
    /// A message that is not the JSON it should be.
    Payload(serde_json::Error),
    /// A message of another payload version.
    Version {
        /// The version it carried.
        found: u64,
    },
    /// The origin's layout names a timeframe this build does not know.
    Timeframe(shm_core::UnknownTimeframe),
    /// The origin's layout cannot be built here.
    Layout(shm_core::LayoutError),
    /// The origin's layout is larger than the mirror's budget.
    OverBudget {
        /// `rings` or `bytes`.
        what: &'static str,
        /// How many the origin asked for.
        found: u64,
        /// The most the mirror builds.
        most: u64,
    },
    /// A page of the origin's history breaks the rules of the wire (docs/NATS.md).
    BadHistory {
        /// The ring (`SYMBOL TF`).
        ring: String,
        /// What is wrong.
        why: &'static str,
    },
    /// An answer that does not name the request it came for (another request's answer, sent
    /// to this mirror's reply subject by someone else): refused.
    Misdirected,
    /// The mirror held a bar newer than anything the origin has; it rebuilds its segment.
    AheadOfOrigin {
        /// The ring (`SYMBOL TF`).
        ring: String,
    },
}

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BridgeError::Open(_) => f.write_str("cannot open the segment to publish"),
            BridgeError::Create(_) => f.write_str("cannot create the mirror's segment"),
            BridgeError::Thread(_) => f.write_str("cannot start the NATS thread"),
            BridgeError::Connect(_) => f.write_str("cannot set up the NATS client"),
            BridgeError::NatsConfig(_) => f.write_str("the NATS settings cannot be used"),
            BridgeError::Subscribe(_) => f.write_str("NATS refused a subscription"),
            BridgeError::Request(_) => {
                f.write_str("the origin did not answer (is its streamer running with --nats?)")
            }
            BridgeError::RequestTimedOut => f.write_str("the origin did not answer within 2 s"),
            BridgeError::Payload(_) => f.write_str("a message is not the JSON it should be"),
            BridgeError::Version { found } => write!(
                f,
                "a message of payload version {found}; this build speaks version {}",
                wire::VERSION
            ),
            BridgeError::Timeframe(_) => {
                f.write_str("the origin's layout has a timeframe this build does not know")
            }
            BridgeError::Layout(_) => f.write_str("the origin's layout cannot be built here"),
            BridgeError::OverBudget { what, found, most } => write!(
                f,
                "the origin's layout needs {found} {what}; this mirror builds at most {most} \
                 (--max-rings, --max-segment-mb)"
            ),
            BridgeError::Misdirected => {
                f.write_str("an answer that names another request than the one sent was refused")
            }
            BridgeError::BadHistory { ring, why } => {
                write!(f, "the origin's history of {ring} is refused: {why}")
            }
            BridgeError::AheadOfOrigin { ring } => write!(
                f,
                "this mirror held a {ring} bar newer than anything its origin has (a forged or \
                 damaged run); the segment is rebuilt from the origin"
            ),
        }
    }
}

impl std::error::Error for BridgeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BridgeError::Open(e) => Some(e),
            BridgeError::Create(e) => Some(e),
            BridgeError::Thread(e) => Some(e),
            BridgeError::Connect(e) => Some(e),
            BridgeError::NatsConfig(e) => Some(e),
            BridgeError::Subscribe(e) => Some(e),
            BridgeError::Request(e) => Some(e),
            BridgeError::Payload(e) => Some(e),
            BridgeError::Timeframe(e) => Some(e),
            BridgeError::Layout(e) => Some(e),
            BridgeError::RequestTimedOut
            | BridgeError::Version { .. }
            | BridgeError::OverBudget { .. }
            | BridgeError::BadHistory { .. }
            | BridgeError::Misdirected
            | BridgeError::AheadOfOrigin { .. } => None,
        }
    }
}
