//! The streamer's error: one variant per part that can fail, each with its cause.

use std::fmt;

use shm_core::{CreateError, LayoutError};

use crate::config::ConfigError;
use crate::source::csv::CsvError;
use crate::source::SourceError;

/// Why the streamer stopped with an error.
#[derive(Debug)]
pub enum StreamerError {
    /// A configuration value is unusable.
    Config(ConfigError),
    /// The symbols and buffer sizes do not make a valid segment layout.
    Layout(LayoutError),
    /// The segment could not be created or taken over.
    Segment(CreateError),
    /// A CSV file could not be used at all.
    Csv(CsvError),
    /// The source failed for good.
    Source(SourceError),
    /// The embedded HTTP shim could not start.
    Http(http_shim::StartError),
    /// The NATS publisher could not start.
    Nats(nats_bridge::BridgeError),
}

impl fmt::Display for StreamerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamerError::Config(e) => e.fmt(f),
            StreamerError::Layout(e) => write!(f, "bad segment layout: {e}"),
            StreamerError::Segment(e @ CreateError::AlreadyRunning { .. }) => write!(
                f,
                "{e}; or run this one beside it on another segment and port \
                 (--segment NAME --http 127.0.0.1:PORT, or --no-http)"
            ),
            StreamerError::Segment(e) => e.fmt(f),
            StreamerError::Csv(e) => e.fmt(f),
            StreamerError::Source(e) => write!(f, "source failed: {e}"),
            StreamerError::Http(e) => write!(f, "HTTP API: {e}"),
            StreamerError::Nats(e) => write!(f, "NATS: {e}"),
        }
    }
}

impl std::error::Error for StreamerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StreamerError::Segment(e) => e.source(),
            StreamerError::Csv(e) => e.source(),
            StreamerError::Http(e) => e.source(),
            StreamerError::Nats(e) => e.source(),
            _ => None,
        }
    }
}
