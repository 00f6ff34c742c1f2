//! Opening the segment's files without trusting what sits at their names.
//!
//! `/dev/shm` is writable by every account (mode 1777), so anything may be found under a
//! segment's name: a symlink, a FIFO, a directory, or a file another account planted. Every
//! open here uses `O_NOFOLLOW` (never write through a symlink) and `O_NONBLOCK` (opening a
//! FIFO must not wait for a peer that never comes), and then `fstat`s what it got, so a
//! decision is made on the object actually opened, not on the name.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Why a file at a segment's name is not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untrusted {
    /// Not a regular file: a FIFO, socket, device or directory.
    NotRegular {
        /// What it is (`"a FIFO"`, `"a directory"`, ...).
        kind: &'static str,
    },
    /// Owned by another account than this process's effective user.
    OwnedByOther {
        /// The owner's uid.
        uid: u32,
        /// This process's effective uid.
        expected: u32,
    },
    /// Writable by its group or by others: anyone in them could change candles or truncate
    /// the file under the readers.
    WritableByOthers {
        /// The permission bits.
        mode: u32,
    },
}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Untrusted::NotRegular { kind } => write!(f, "it is {kind}, not a regular file"),
            Untrusted::OwnedByOther { uid, expected } => {
                write!(f, "it is owned by uid {uid}, not by this user (uid {expected})")
            }
            Untrusted::WritableByOthers { mode } => write!(
                f,
                "it is writable by its group or by others (mode {mode:04o}); only its owner may write a segment"
            ),
        }
    }
}

/// The effective uid of this process.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid takes no arguments, touches no memory and cannot fail.
    unsafe { libc::geteuid() }
}

/// Opens `path` read-only or read-write, never following a symlink and never blocking.
pub(crate) fn open(path: &Path, write: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

/// What kind of object `meta` describes, for messages.
fn kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Checks that an opened file is a regular file.
pub(crate) fn regular(meta: &std::fs::Metadata) -> Result<(), Untrusted> {
    if meta.file_type().is_file() {
        Ok(())
    } else {
        Err(Untrusted::NotRegular { kind: kind(meta) })
    }
}

/// Checks that an opened file is writable by its owner alone.
pub(crate) fn owner_only_writes(meta: &std::fs::Metadata) -> Result<(), Untrusted> {
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(Untrusted::WritableByOthers { mode });
    }
    Ok(())
}

/// Checks that an opened file belongs to this process's effective user.
pub(crate) fn owned_by_us(meta: &std::fs::Metadata) -> Result<(), Untrusted> {
    let expected = euid();
    if meta.uid() != expected {
        return Err(Untrusted::OwnedByOther {
            uid: meta.uid(),
            expected,
        });
    }
    Ok(())
}
