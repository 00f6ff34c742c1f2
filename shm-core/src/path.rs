//! Where a segment lives: [`SegmentPath`], by name in the segment directory or by path.

use std::fmt;
use std::path::{Path, PathBuf};

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
///   administrators may open. [`Writer::create`](crate::Writer::create) makes it if it is missing. The file is
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
