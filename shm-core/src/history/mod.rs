//! The history store: every closed bar and every tick the writer publishes, appended to files
//! on disk beside the segment, so that readers can go back further than the rings hold
//! (docs/LAYOUT.md, "History store"; DESIGN.md says why this format).
//!
//! A store is a directory with one folder per symbol, and in it one stream of chunk files per
//! timeframe ring (`M1.00000001.mtfh`, ...) and one for the ticks (`ticks.00000001.mtfh`).
//! Chunks are fixed-capacity files of fixed records, appended by the single writer and mapped
//! by readers, as the segment is: no system call per read, a torn record never served.
//!
//! - [`HistoryWriter`]: attached to a [`Writer`](crate::Writer), which hands it each closed
//!   bar and each tick before the rings get them.
//! - [`History`]: a reader's view of a store, with [`StoredBars`] and [`StoredTicks`].

use std::fmt;
use std::fs::Metadata;
use std::io;
use std::path::{Path, PathBuf};

use crate::files::{self, Untrusted};
use crate::path::SegmentPath;
use crate::trust::Trust;

mod cache;
mod chunk;
mod format;
mod helper;
mod keep;
mod read;
mod seam;
mod write;

pub use cache::StreamCache;
pub use format::{
    StreamKind, CHUNK_HEADER_SIZE, HISTORY_MAGIC, HISTORY_VERSION, STORED_RECORD_SIZE,
};
pub use keep::{Keep, KeepError};
pub use read::{History, Stored, StoredBars, StoredTicks};
pub use seam::{BarSeam, TickSeam};
pub use write::HistoryWriter;

/// Where a store is: the default place of a segment, a directory, or nowhere (the streamer's
/// `--history-dir` and `--no-history`; the HTTP API reads the same).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HistoryPlace {
    /// [`default_history_dir`] of the segment.
    #[default]
    Default,
    /// This directory.
    Dir(PathBuf),
    /// No store: readers have the rings alone.
    Off,
}

impl HistoryPlace {
    /// The directory for `segment`, if there is a store.
    pub fn dir(&self, segment: &SegmentPath) -> Option<PathBuf> {
        match self {
            HistoryPlace::Default => Some(default_history_dir(segment)),
            HistoryPlace::Dir(d) => Some(d.clone()),
            HistoryPlace::Off => None,
        }
    }
}

/// The environment variable that names a store's directory for readers (and the streamer's
/// `--history-dir` default): set it where the streamer was given `--history-dir`.
pub const HISTORY_DIR_ENV: &str = "MTF_HISTORY_DIR";

/// Why the history store could not be written or read. Every variant names the file.
#[derive(Debug)]
pub enum HistoryError {
    /// A file or directory could not be created, opened, reserved or mapped (a full disk is
    /// `StorageFull` below).
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The disk (or its quota) is full: the store stops growing; the rings keep working.
    StorageFull {
        /// The file being grown.
        path: PathBuf,
    },
    /// A file at a chunk's name that this reader will not map.
    Untrusted {
        /// The file.
        path: PathBuf,
        /// Why.
        why: Untrusted,
    },
    /// A chunk whose header or records are not what the format says: never served; the next
    /// writer starts a fresh chunk after the intact part.
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A chunk of a format version this build does not read.
    Version {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u64,
    },
}

impl HistoryError {
    /// An I/O error, as `StorageFull` where the disk or quota is full.
    pub(crate) fn io(path: &Path, source: io::Error) -> HistoryError {
        // ENOSPC (28) and EDQUOT (122) on Linux; ERROR_DISK_FULL (112) and
        // ERROR_HANDLE_DISK_FULL (39) on Windows.
        let full = source.kind() == io::ErrorKind::StorageFull
            || source.kind() == io::ErrorKind::QuotaExceeded
            || matches!(source.raw_os_error(), Some(28 | 122) if cfg!(unix))
            || matches!(source.raw_os_error(), Some(112 | 39) if cfg!(windows));
        if full {
            HistoryError::StorageFull {
                path: path.to_owned(),
            }
        } else {
            HistoryError::Io {
                path: path.to_owned(),
                source,
            }
        }
    }
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryError::Io { path, source } => {
                write!(f, "history store {}: {source}", path.display())
            }
            HistoryError::StorageFull { path } => write!(
                f,
                "history store {}: the disk is full; history stops growing until there is \
                 room (free some, or bound it with --history-keep); the live rings keep working",
                path.display()
            ),
            HistoryError::Untrusted { path, why } => {
                write!(f, "history store {} is not used: {why}", path.display())
            }
            HistoryError::Damaged { path, why } => write!(
                f,
                "history store {} is damaged ({why}); it is not served, and the streamer \
                 starts a new chunk after its intact part",
                path.display()
            ),
            HistoryError::Version { path, found } => write!(
                f,
                "history store {} has format version {found}; this build reads version \
                 {}",
                path.display(),
                format::HISTORY_VERSION
            ),
        }
    }
}

impl std::error::Error for HistoryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HistoryError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Where a segment's store lives unless told (`--history-dir`, [`HISTORY_DIR_ENV`]):
/// - a segment at a path outside the shared-memory directory: beside it, `PATH.history`;
/// - otherwise, by the segment's file name, under the user's data directory:
///   `$XDG_DATA_HOME/mtf-candles/NAME` (`~/.local/share/mtf-candles/NAME`) on Linux,
///   `%LOCALAPPDATA%\mtf-candles\history\NAME` on Windows.
pub fn default_history_dir(segment: &SegmentPath) -> PathBuf {
    if let Some(dir) = std::env::var_os(HISTORY_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let path = segment.path();
    let name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "mtf-candles".into());
    let in_shm = path
        .parent()
        .is_some_and(|p| p == crate::path::segment_dir() || p.starts_with("/dev/shm"));
    if !in_shm {
        let mut beside = path.as_os_str().to_owned();
        beside.push(".history");
        return PathBuf::from(beside);
    }
    data_dir().join(name)
}

/// The user's data directory for stores.
fn data_dir() -> PathBuf {
    if cfg!(windows) {
        return crate::path::segment_dir().join("history");
    }
    let env = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("XDG_DATA_HOME")
        .or_else(|| env("HOME").map(|h| h.join(".local/share")))
        .unwrap_or_else(std::env::temp_dir)
        .join("mtf-candles")
}

/// The folder of a symbol's streams.
pub(crate) fn symbol_dir(dir: &Path, symbol: &str) -> PathBuf {
    // Symbol names are `[A-Za-z0-9._#-]`, 1 to 31 bytes (`validate_symbol`): safe as a file
    // name everywhere but for a leading dot, which would hide it.
    if symbol.starts_with('.') {
        dir.join(format!("_{symbol}"))
    } else {
        dir.join(symbol)
    }
}

/// The file of chunk `sequence` of a stream.
pub(crate) fn chunk_path(dir: &Path, symbol: &str, kind: StreamKind, sequence: u64) -> PathBuf {
    symbol_dir(dir, symbol).join(format!("{}.{sequence:08}.mtfh", kind.file_stem()))
}

/// The chunks of a stream on disk, by sequence, oldest first.
pub(crate) fn list_chunks(
    dir: &Path,
    symbol: &str,
    kind: StreamKind,
) -> io::Result<Vec<(u64, PathBuf)>> {
    let folder = symbol_dir(dir, symbol);
    let entries = match std::fs::read_dir(&folder) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let prefix = format!("{}.", kind.file_stem());
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(seq) = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".mtfh"))
            .filter(|s| s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((seq, folder.join(name)));
    }
    found.sort();
    Ok(found)
}

/// The segment's trust rules, for a chunk: a regular file, written by its owner alone, owned
/// by an account this reader trusts.
pub(crate) fn trusted(path: &Path, meta: &Metadata, trust: &Trust) -> Result<(), HistoryError> {
    let owner = files::owner(meta);
    files::regular(meta)
        .and_then(|()| files::owner_only_writes(meta))
        .and_then(|()| {
            if trust.allows(owner) {
                Ok(())
            } else {
                Err(Untrusted::UntrustedOwner {
                    uid: owner,
                    name: crate::trust::name_of(owner),
                })
            }
        })
        .map_err(|why| HistoryError::Untrusted {
            path: path.to_owned(),
            why,
        })
}

// The store's tests work on real files, mappings and `posix_fallocate`, which Miri's isolation
// does not allow (`statx` is refused first); they run natively in `cargo test`. The byte
// format's own tests (`format.rs`), which touch no file, run under Miri too.
#[cfg(all(test, not(miri)))]
mod tests;
