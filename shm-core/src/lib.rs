//! Multi-timeframe OHLC candles in a named shared-memory segment: one writer process, any
//! number of reader processes, no locks and no system calls on the read path.
//!
//! The writer ([`Writer`]) owns a file in `/dev/shm` (on Windows, in
//! `%LOCALAPPDATA%\mtf-candles`: see [`segment_dir`]) holding one fixed-size ring of candle
//! records per (symbol, timeframe), each guarded by a seqlock. Readers ([`Reader`]) map it
//! read-only and copy consistent snapshots through atomic loads in a few hundred nanoseconds;
//! a torn candle is never returned. The byte layout is documented in `docs/LAYOUT.md` so that
//! readers can be written in other languages.
//!
//! ```
//! use shm_core::{Candle, Layout, Liveness, Reader, SegmentPath, Timeframe, Writer, WriterOptions};
//!
//! # let dir = std::env::temp_dir().join(format!("shm-core-doc-lib-{}", std::process::id()));
//! let path = SegmentPath::at(&dir); // or SegmentPath::named("mtf-candles") for /dev/shm
//! let mut layout = Layout::new();
//! layout.add_ring("XAUUSDc", Timeframe::M1, 1440)?;
//!
//! let mut writer = Writer::create(&path, &layout, &WriterOptions::default())?;
//! let m1 = writer.ring("XAUUSDc", Timeframe::M1).unwrap();
//! writer.push_closed(m1, &Candle::flat(0, 4000.0));
//! writer.update_forming(m1, &Candle::flat(60, 4001.5));
//! writer.set_running();
//!
//! // In another process:
//! let reader = Reader::open(&path)?;
//! let latest = reader.ring("XAUUSDc", Timeframe::M1).unwrap().latest()?.unwrap();
//! assert_eq!((latest.close, latest.forming), (4001.5, true));
//! assert_eq!(reader.status().liveness, Liveness::Alive);
//!
//! drop(writer); // marks the segment stopped; the file and its candles stay
//! assert_eq!(reader.status().liveness, Liveness::Stopped);
//! # shm_core::remove_segment(&shm_core::SegmentPath::at(&dir))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
// The one crate of the workspace with `unsafe` (mapping the segment, atomic views of it, and
// a few libc calls); the workspace denies it everywhere else. Every block says why it is sound.
#![allow(unsafe_code)]

// Readers map the segment read-only and load 64-bit words atomically. On 64-bit targets that
// is a plain load; on some 32-bit ones it is a compare-exchange, which writes and would fault
// on a read-only mapping (docs/LAYOUT.md, "Conventions").
#[cfg(not(target_pointer_width = "64"))]
compile_error!("shm-core needs a 64-bit target: its readers rely on plain 64-bit atomic loads");

mod candle;
mod files;
mod header;
mod layout;
mod lock;
mod mem;
mod process;
mod reader;
mod ring;
mod status;
pub mod time;
mod timeframe;
mod trust;
mod validate;
mod wake;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};

pub use candle::{Candle, CandleDefect, LATEST_TIME};
pub use files::Untrusted;
pub use layout::{
    validate_symbol, Layout, LayoutError, RingSpec, SymbolError, HEADER_SIZE, LAYOUT_VERSION,
    MAGIC, MAX_CAPACITY, MAX_RINGS, MAX_SYMBOLS, RECORD_SIZE, SLOT_SIZE, SYMBOL_MAX_LEN,
};
pub use reader::{
    ChangeToken, ClosedBars, NextBar, OpenError, ReadError, Reader, RingReader, RingStats,
    TickInfo, WaitOutcome, DEFAULT_MAX_ATTEMPTS, DEFAULT_STALL_AFTER,
};
pub use status::{Counter, Counters, FeedKind, FeedState, Liveness, Status, WriterState};
pub use time::{
    civil_from_days, days_from_civil, format_server_offset, iso8601_ms, now_ns,
    parse_server_offset, OffsetError, SERVER_OFFSET_RANGE,
};
pub use timeframe::{Timeframe, UnknownTimeframe};
pub use trust::{set_process_trust, Trust, TrustError, TRUST_ENV};
pub use validate::InvalidRecord;
pub use wake::MAX_SLICE as MAX_WAIT_SLICE;
pub use writer::{remove_segment, CreateError, RingId, Start, SymbolId, Writer, WriterOptions};

/// The segment name used when none is given.
pub const DEFAULT_SEGMENT_NAME: &str = "mtf-candles";

/// Where a segment lives: a name in the segment directory ([`SegmentPath::named`]), or any
/// path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentPath {
    path: PathBuf,
}

/// A segment name that is not a plain file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentNameError(pub String);

impl fmt::Display for SegmentNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid segment name {:?}: expected 1 to 200 characters of A-Z a-z 0-9 . _ - \
             (use a path to put the segment elsewhere)",
            self.0
        )
    }
}

impl std::error::Error for SegmentNameError {}

impl SegmentPath {
    /// The segment `name` in the segment directory: `/dev/shm` on Linux (the temporary
    /// directory where there is none), `%LOCALAPPDATA%\mtf-candles` on Windows (see
    /// [`segment_dir`]).
    pub fn named(name: &str) -> Result<SegmentPath, SegmentNameError> {
        let ok = (1..=200).contains(&name.len())
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok {
            return Err(SegmentNameError(name.to_owned()));
        }
        Ok(SegmentPath {
            path: segment_dir().join(name),
        })
    }

    /// A segment at an explicit path.
    pub fn at(path: impl Into<PathBuf>) -> SegmentPath {
        SegmentPath { path: path.into() }
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Where named segments live.
///
/// - Linux: `/dev/shm`, memory that no disk backs (the temporary directory where there is
///   none).
/// - Windows: `%LOCALAPPDATA%\mtf-candles` (the temporary directory's `mtf-candles` if that
///   variable is unset), a per-user directory that only this user, SYSTEM and the
///   administrators may open. [`Writer::create`] makes it if it is missing. The file is
///   cached in memory while mapped; it also keeps the candles on disk for a warm restart.
pub fn segment_dir() -> PathBuf {
    if cfg!(windows) {
        std::env::var_os("LOCALAPPDATA")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join("mtf-candles")
    } else {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            shm.to_owned()
        } else {
            std::env::temp_dir()
        }
    }
}

impl fmt::Display for SegmentPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.path.display().fmt(f)
    }
}
