//! The errors of attaching to a segment ([`OpenError`]), reading it ([`ReadError`]) and
//! creating it ([`CreateError`]): each variant says what was found and what to do.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::files::Untrusted;
use crate::ring::Busy;
use crate::tick::TickDefect;
use crate::trust::TrustError;
use crate::validate::InvalidRecord;

/// Why [`Reader::open`](crate::Reader::open) refused a segment. Every variant says what was found and expected.
#[derive(Debug)]
pub enum OpenError {
    /// No file at the path: the writer has not started yet.
    NotFound {
        /// The segment file.
        path: PathBuf,
    },
    /// The file could not be opened, inspected or mapped.
    Io {
        /// The segment file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file is shorter than its header says (or than a header).
    Truncated {
        /// The segment file.
        path: PathBuf,
        /// Its length in bytes.
        found: u64,
        /// The length it must have.
        expected: u64,
    },
    /// The first 8 bytes are not `MTFCANDL`: not a candle segment.
    BadMagic {
        /// The segment file.
        path: PathBuf,
        /// The first 8 bytes, as a little-endian word.
        found: u64,
    },
    /// The version word is 0: a writer is still initialising the segment.
    Initializing {
        /// The segment file.
        path: PathBuf,
    },
    /// A layout version this reader does not understand.
    VersionMismatch {
        /// The segment file.
        path: PathBuf,
        /// The version in the file.
        found: u64,
        /// The version this reader reads.
        expected: u64,
    },
    /// The stored layout hash differs from the one computed from the directory and this
    /// reader's record sizes: the writer was built with another layout definition.
    LayoutHashMismatch {
        /// The segment file.
        path: PathBuf,
        /// The hash in the file.
        found: u64,
        /// The hash this reader computes.
        expected: u64,
    },
    /// The file at the segment's name is not one a reader may trust: not a regular file (a
    /// FIFO would hang every reader), or writable by others than its owner.
    Untrusted {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: Untrusted,
    },
    /// The list of trusted accounts (`MTF_TRUST`) is malformed.
    Trust(TrustError),
    /// A header, symbol or directory field holds an impossible value.
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Which field, and what it holds.
        what: String,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::NotFound { path } => {
                write!(
                    f,
                    "no segment at {} (is the streamer running?)",
                    path.display()
                )
            }
            OpenError::Io { path, .. } => write!(f, "could not open segment {}", path.display()),
            OpenError::Truncated {
                path,
                found,
                expected,
            } => write!(
                f,
                "segment {} is truncated: {found} bytes, expected at least {expected}",
                path.display()
            ),
            OpenError::BadMagic { path, found } => write!(
                f,
                "{} is not a candle segment: magic {:?}, expected \"MTFCANDL\"",
                path.display(),
                String::from_utf8_lossy(&found.to_le_bytes())
            ),
            OpenError::Initializing { path } => {
                write!(f, "segment {} is still being initialised", path.display())
            }
            OpenError::VersionMismatch {
                path,
                found,
                expected,
            } => write!(
                f,
                "segment {} has layout version {found}, this reader reads version {expected}",
                path.display()
            ),
            OpenError::LayoutHashMismatch {
                path,
                found,
                expected,
            } => write!(
                f,
                "segment {} has layout hash {found:#018x}, this reader computes {expected:#018x} \
                 (writer and reader were built with different layouts)",
                path.display()
            ),
            OpenError::Untrusted { path, why } => {
                write!(f, "refusing to read segment {}: {why}", path.display())
            }
            OpenError::Corrupt { path, what } => {
                write!(f, "segment {} is corrupt: {what}", path.display())
            }
            OpenError::Trust(e) => write!(f, "bad list of trusted accounts: {e}"),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Io { source, .. } => Some(source),
            OpenError::Trust(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a ring read returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// The ring stayed mid-write for `attempts` tries. Either the writer is extremely busy or it
    /// died inside a write; [`Reader::status`](crate::Reader::status) tells which.
    Busy {
        /// Tries made.
        attempts: u32,
    },
    /// A candle of the snapshot breaks a rule the writer keeps (see [`InvalidRecord`]): the
    /// segment is damaged or forged, and nothing of the snapshot is handed out.
    Invalid {
        /// The offending candle's time, as stored.
        time: i64,
        /// What is wrong with it.
        why: InvalidRecord,
    },
    /// A tick of the snapshot breaks a rule the writer keeps (see [`TickDefect`]): the
    /// segment is damaged or forged, and nothing of the snapshot is handed out.
    InvalidTick {
        /// The offending tick's time, ms, as stored.
        time_msc: i64,
        /// What is wrong with it.
        why: TickDefect,
    },
    /// A word no writer leaves: a tick ring's counters out of order, or a field of a symbol
    /// information or terminal record that is not a value of its type.
    Damaged {
        /// Which word or field.
        what: &'static str,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Busy { attempts } => write!(
                f,
                "ring stayed mid-write for {attempts} attempts (writer overloaded or killed mid-write)"
            ),
            ReadError::Invalid { time, why } => {
                write!(f, "damaged or forged candle at time {time}: {why}")
            }
            ReadError::InvalidTick { time_msc, why } => {
                write!(f, "damaged or forged tick at {time_msc} ms: {why}")
            }
            ReadError::Damaged { what } => {
                write!(f, "damaged or forged segment: {what} holds an impossible value")
            }
        }
    }
}

impl std::error::Error for ReadError {}

impl From<Busy> for ReadError {
    fn from(b: Busy) -> Self {
        ReadError::Busy {
            attempts: b.attempts,
        }
    }
}

/// Why [`Writer::create`](crate::Writer::create) failed.
#[derive(Debug)]
pub enum CreateError {
    /// Another live writer holds the segment.
    AlreadyRunning {
        /// The segment file.
        path: PathBuf,
        /// The holder's pid, as written in the header (if it could be read).
        pid: Option<u32>,
    },
    /// The writer lock is held, but not by a live writer: the process named in the header is
    /// gone, so something else (a reader of the same account, most likely) holds the lock file.
    LockHeld {
        /// The segment file.
        path: PathBuf,
        /// The lock file.
        lock_path: PathBuf,
        /// The pid of the last writer, as written in the header.
        last_pid: u32,
    },
    /// The file at the segment's (or lock file's) name is not ours to use.
    Untrusted {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: Untrusted,
    },
    /// The permission bits asked for would let others write the segment, or deny its owner.
    InsecureMode {
        /// The bits asked for.
        mode: u32,
    },
    /// The filesystem holding the segment has no room for it.
    NoSpace {
        /// The segment file.
        path: PathBuf,
        /// Bytes needed.
        bytes: u64,
        /// The error of the reservation.
        source: io::Error,
    },
    /// The layout has no rings.
    EmptyLayout,
    /// A file operation failed.
    Io {
        /// What was being done.
        action: &'static str,
        /// The file it was done to.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateError::AlreadyRunning {
                path,
                pid: Some(pid),
            } => write!(
                f,
                "segment {} is already being written by pid {pid}; stop that writer first",
                path.display()
            ),
            CreateError::AlreadyRunning { path, pid: None } => {
                write!(f, "segment {} is locked by another writer", path.display())
            }
            CreateError::LockHeld {
                path,
                lock_path,
                last_pid,
            } => write!(
                f,
                "segment {} is locked by a process that is not its writer: the last writer, pid \
                 {last_pid}, is gone, yet {} is still locked. Find the holder with `fuser -v {}` \
                 and stop it",
                path.display(),
                lock_path.display(),
                lock_path.display()
            ),
            CreateError::Untrusted { path, why } => write!(
                f,
                "refusing to use {}: {why}; remove it (as its owner or root) or choose another \
                 segment name",
                path.display()
            ),
            CreateError::InsecureMode { mode } => write!(
                f,
                "segment mode {mode:04o} is refused: only the owner may write a segment, and the \
                 owner must read and write it (use 0600, or 0640 to let a group read)"
            ),
            CreateError::NoSpace { path, bytes, .. } => write!(
                f,
                "could not reserve {bytes} bytes for segment {}: is {} full?{}",
                path.display(),
                path.parent()
                    .map_or_else(|| ".".into(), |d| d.display().to_string()),
                if cfg!(windows) {
                    ""
                } else {
                    " (Docker gives /dev/shm 64 MB by default; see --shm-size)"
                }
            ),
            CreateError::EmptyLayout => f.write_str("the segment layout has no rings"),
            CreateError::Io { action, path, .. } => {
                write!(f, "could not {action} {}", path.display())
            }
        }
    }
}

impl std::error::Error for CreateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CreateError::Io { source, .. } | CreateError::NoSpace { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub(crate) fn io_err<'p>(
    action: &'static str,
    path: &'p Path,
) -> impl FnOnce(io::Error) -> CreateError + 'p {
    move |source| CreateError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}
