//! Opening, creating and publishing the segment's files without trusting what sits at their
//! names: the file concern, one implementation per platform below the shared checks.
//!
//! On Linux `/dev/shm` is writable by every account (mode 1777), so anything may be found
//! under a segment's name: a symlink, a FIFO, a directory, or a file another account planted.
//! Every open uses `O_NOFOLLOW` (never write through a symlink) and `O_NONBLOCK` (opening a
//! FIFO must not wait for a peer that never comes), and then `fstat`s what it got, so a
//! decision is made on the object actually opened, not on the name.
//!
//! On Windows the segments live in `%LOCALAPPDATA%\mtf-candles`, inside the user's profile,
//! whose ACL admits only that user, SYSTEM and the administrators: the directory is the trust
//! boundary, so the owner and mode checks have nothing to check there and pass. Opens still
//! refuse to follow a reparse point (`FILE_FLAG_OPEN_REPARSE_POINT`, then "not a regular
//! file"), and every handle shares read, write and delete, so that readers, the writer and a
//! rename can work on the same file at once.

use std::fmt;
use std::fs::{File, Metadata};
use std::io;
use std::path::Path;

/// Why a file at a segment's name is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untrusted {
    /// Not a regular file: a FIFO, socket, device, directory or link.
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
    /// Owned by an account this reader does not trust (see [`crate::Trust`]): it could have
    /// squatted the name before the streamer started, and write anything.
    UntrustedOwner {
        /// The owner's uid.
        uid: u32,
        /// The owner's account name, if the system knows it.
        name: Option<String>,
    },
}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Untrusted::NotRegular { kind } => write!(f, "it is {kind}, not a regular file"),
            Untrusted::OwnedByOther { uid, expected } => {
                write!(f, "it is owned by uid {uid}, not by this user (uid {expected})")
            }
            Untrusted::UntrustedOwner { uid, name } => {
                let who = name.clone().unwrap_or_else(|| uid.to_string());
                write!(
                    f,
                    "it belongs to {who} (uid {uid}), an account this reader does not trust; \
                     if that account runs your streamer, trust it with MTF_TRUST={who}, \
                     --trust {who} or initialize(trust=\"{who}\")"
                )
            }
            Untrusted::WritableByOthers { mode } => write!(
                f,
                "it is writable by its group or by others (mode {mode:04o}); only its owner may write a segment"
            ),
        }
    }
}

/// Checks that an opened file is a regular file.
pub(crate) fn regular(meta: &Metadata) -> Result<(), Untrusted> {
    if meta.file_type().is_file() {
        Ok(())
    } else {
        Err(Untrusted::NotRegular {
            kind: imp::kind(meta),
        })
    }
}

/// Checks that an opened file is writable by its owner alone.
pub(crate) fn owner_only_writes(meta: &Metadata) -> Result<(), Untrusted> {
    let mode = imp::mode(meta);
    if mode & 0o022 != 0 {
        return Err(Untrusted::WritableByOthers { mode });
    }
    Ok(())
}

/// Checks that an opened file belongs to this process's effective user.
pub(crate) fn owned_by_us(meta: &Metadata) -> Result<(), Untrusted> {
    let expected = euid();
    let uid = owner(meta);
    if uid != expected {
        return Err(Untrusted::OwnedByOther { uid, expected });
    }
    Ok(())
}

pub(crate) use imp::{
    create_new, euid, is_a_directory, mode, open, open_or_create, owner, publish_new, read_at,
    replace, reserve, same_file, set_mode, write_at,
};

#[cfg(unix)]
mod imp {
    use super::*;
    use std::fs::{self, OpenOptions};
    use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};

    const FLAGS: i32 = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;

    /// The effective uid of this process.
    pub(crate) fn euid() -> u32 {
        // SAFETY: geteuid takes no arguments, touches no memory and cannot fail.
        unsafe { libc::geteuid() }
    }

    /// The owner of a file.
    pub(crate) fn owner(meta: &Metadata) -> u32 {
        meta.uid()
    }

    /// The permission bits of a file.
    pub(crate) fn mode(meta: &Metadata) -> u32 {
        meta.mode() & 0o7777
    }

    /// Sets the permission bits of an open file exactly, whatever the umask did.
    pub(crate) fn set_mode(file: &File, mode: u32) -> io::Result<()> {
        file.set_permissions(fs::Permissions::from_mode(mode))
    }

    /// What kind of object `meta` describes, for messages.
    pub(super) fn kind(meta: &Metadata) -> &'static str {
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

    /// Whether the open of `_path` failed with `e` because the name is a directory.
    pub(crate) fn is_a_directory(e: &io::Error, _path: &Path) -> bool {
        e.raw_os_error() == Some(libc::EISDIR)
    }

    /// Opens `path` read-only or read-write, never following a symlink and never blocking.
    pub(crate) fn open(path: &Path, write: bool) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(FLAGS)
            .open(path)
    }

    /// Opens `path` read-write, creating it with `mode` if missing; as [`open`] otherwise.
    pub(crate) fn open_or_create(path: &Path, mode: u32) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(mode)
            .custom_flags(FLAGS)
            .open(path)
    }

    /// Creates `path`, which must not exist, read-write with `mode`.
    pub(crate) fn create_new(path: &Path, mode: u32) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(FLAGS)
            .open(path)
    }

    /// Whether the open `file` is the file now at `path`.
    pub(crate) fn same_file(file: &File, path: &Path) -> io::Result<bool> {
        let (meta, now) = (file.metadata()?, fs::symlink_metadata(path)?);
        Ok(now.dev() == meta.dev() && now.ino() == meta.ino())
    }

    /// Gives the complete file at `tmp` the name `path`, unless `path` exists
    /// (`AlreadyExists`). `link(2)` fails on an existing name, so two creators never both win.
    /// The name `tmp` is gone afterwards on success; on failure the caller removes it.
    pub(crate) fn publish_new(tmp: &Path, path: &Path) -> io::Result<()> {
        let linked = fs::hard_link(tmp, path);
        let _ = fs::remove_file(tmp);
        linked
    }

    /// Puts the complete file at `tmp` in place of the file at `path`, in one step: readers
    /// that open the name find the old file or the new one, never none. `aside` is unused here
    /// (Windows needs it).
    pub(crate) fn replace(tmp: &Path, path: &Path, _aside: &Path) -> io::Result<()> {
        fs::rename(tmp, path)
    }

    /// Allocates every block of the file's first `len` bytes: tmpfs allocates pages on first
    /// touch, and a full `/dev/shm` would then kill the writer with SIGBUS mid-run.
    pub(crate) fn reserve(file: &File, len: usize) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let len = libc::off_t::try_from(len).map_err(|_| io::Error::other("segment too large"))?;
        // SAFETY: the descriptor is open for the duration of the call (borrowed from `file`);
        // posix_fallocate takes plain integers and touches no memory of ours.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
        match rc {
            0 => Ok(()),
            // Filesystems without fallocate support: the pages will be allocated on first touch.
            libc::EOPNOTSUPP | libc::EINVAL => Ok(()),
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }

    /// Reads exactly `buf.len()` bytes at `off`.
    pub(crate) fn read_at(file: &File, buf: &mut [u8], off: u64) -> io::Result<()> {
        file.read_exact_at(buf, off)
    }

    /// Writes all of `buf` at `off`.
    pub(crate) fn write_at(file: &File, buf: &[u8], off: u64) -> io::Result<()> {
        file.write_all_at(buf, off)
    }
}

#[cfg(windows)]
mod imp {
    use super::*;
    use std::fs::{self, OpenOptions};
    use std::os::windows::ffi::OsStrExt;
    use std::os::windows::fs::{FileExt, OpenOptionsExt};
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::Storage::FileSystem as fsys;

    /// Every account is "us": the per-user directory is the trust boundary (module docs).
    pub(crate) fn euid() -> u32 {
        0
    }

    /// As [`euid`]: ownership is not checked file by file on Windows.
    pub(crate) fn owner(_meta: &Metadata) -> u32 {
        0
    }

    /// Windows files have no permission bits; access is the directory's ACL, inherited.
    pub(crate) fn mode(_meta: &Metadata) -> u32 {
        0o600
    }

    /// No permission bits to set (see [`mode`]).
    pub(crate) fn set_mode(_file: &File, _mode: u32) -> io::Result<()> {
        Ok(())
    }

    pub(super) fn kind(meta: &Metadata) -> &'static str {
        let t = meta.file_type();
        if t.is_dir() {
            "a directory"
        } else if t.is_symlink() {
            "a link (reparse point)"
        } else {
            "not a regular file"
        }
    }

    /// Whether the open of `path` failed with `e` because the name is a directory: Windows
    /// says "access denied" for that, and for other things, so the name is looked at.
    pub(crate) fn is_a_directory(e: &io::Error, path: &Path) -> bool {
        e.kind() == io::ErrorKind::PermissionDenied
            && fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
    }

    fn options(write: bool) -> OpenOptions {
        let mut o = OpenOptions::new();
        o.read(true)
            .write(write)
            // Open a link itself, never its target; `regular` then refuses it.
            .custom_flags(fsys::FILE_FLAG_OPEN_REPARSE_POINT)
            // Readers, the writer and a rename of the name work on the file at once.
            .share_mode(fsys::FILE_SHARE_READ | fsys::FILE_SHARE_WRITE | fsys::FILE_SHARE_DELETE);
        o
    }

    pub(crate) fn open(path: &Path, write: bool) -> io::Result<File> {
        options(write).open(path)
    }

    pub(crate) fn open_or_create(path: &Path, _mode: u32) -> io::Result<File> {
        options(true).create(true).truncate(false).open(path)
    }

    pub(crate) fn create_new(path: &Path, _mode: u32) -> io::Result<File> {
        options(true).create_new(true).open(path)
    }

    /// The volume serial number and file index: what identifies a file on Windows.
    fn identity(file: &File) -> io::Result<(u32, u32, u32)> {
        // SAFETY: BY_HANDLE_FILE_INFORMATION is a plain C struct of integers; all-zero is valid.
        let mut info: fsys::BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: the handle is open for the duration of the call (borrowed from `file`), and
        // `info` is a valid, writable struct of the type the call fills in.
        let ok = unsafe { fsys::GetFileInformationByHandle(file.as_raw_handle(), &mut info) };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((
            info.dwVolumeSerialNumber,
            info.nFileIndexHigh,
            info.nFileIndexLow,
        ))
    }

    pub(crate) fn same_file(file: &File, path: &Path) -> io::Result<bool> {
        let now = open(path, false)?;
        Ok(identity(&now)? == identity(file)?)
    }

    fn wide(path: &Path) -> Vec<u16> {
        path.as_os_str().encode_wide().chain(Some(0)).collect()
    }

    /// `MoveFileExW` without `MOVEFILE_REPLACE_EXISTING`: fails on an existing name, so two
    /// creators never both win. (A hard link and the removal of the temporary name, as on
    /// Linux, cannot work here: Windows refuses to delete a file that is mapped.)
    pub(crate) fn publish_new(tmp: &Path, path: &Path) -> io::Result<()> {
        let (from, to) = (wide(tmp), wide(path));
        // SAFETY: both are NUL-terminated UTF-16 strings that outlive the call.
        let ok = unsafe { fsys::MoveFileExW(from.as_ptr(), to.as_ptr(), 0) };
        if ok == 0 {
            // The caller removes `tmp`, once it has unmapped it.
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Replaces the file at `path` by `tmp`. Windows refuses to replace (delete) a file that a
    /// reader still maps, but lets it be renamed: then the old file is moved to `aside` first,
    /// and removed once nobody maps it (by this call if it can, or by the next writer's
    /// clean-up of leftovers). Readers opening the name between the two renames find none and
    /// try again, as they do while no writer has started.
    pub(crate) fn replace(tmp: &Path, path: &Path, aside: &Path) -> io::Result<()> {
        if fs::rename(tmp, path).is_ok() {
            return Ok(());
        }
        fs::rename(path, aside)?;
        if let Err(e) = fs::rename(tmp, path) {
            let _ = fs::rename(aside, path);
            return Err(e);
        }
        let _ = fs::remove_file(aside);
        Ok(())
    }

    /// Sets the file's allocation size, so that NTFS reserves its clusters now: a full disk
    /// fails here with a clear error instead of failing a write through the mapping later.
    /// (NTFS already allocates on `set_len` of a file that is not sparse; this says so
    /// explicitly, and file systems that cannot, Wine's among them, keep what `set_len` did.)
    pub(crate) fn reserve(file: &File, len: usize) -> io::Result<()> {
        let info = fsys::FILE_ALLOCATION_INFO {
            AllocationSize: i64::try_from(len)
                .map_err(|_| io::Error::other("segment too large"))?,
        };
        // SAFETY: the handle is open for the duration of the call (borrowed from `file`);
        // `info` is a FILE_ALLOCATION_INFO, the type FileAllocationInfo expects, and the size
        // passed is its own.
        let ok = unsafe {
            fsys::SetFileInformationByHandle(
                file.as_raw_handle(),
                fsys::FileAllocationInfo,
                (&info as *const fsys::FILE_ALLOCATION_INFO).cast(),
                std::mem::size_of::<fsys::FILE_ALLOCATION_INFO>() as u32,
            )
        };
        if ok != 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error().map(|c| c as u32) {
            Some(
                windows_sys::Win32::Foundation::ERROR_CALL_NOT_IMPLEMENTED
                | windows_sys::Win32::Foundation::ERROR_NOT_SUPPORTED
                | windows_sys::Win32::Foundation::ERROR_INVALID_PARAMETER,
            ) => Ok(()),
            _ => Err(e),
        }
    }

    pub(crate) fn read_at(file: &File, mut buf: &mut [u8], mut off: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match file.seek_read(buf, off)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => {
                    buf = &mut buf[n..];
                    off += n as u64;
                }
            }
        }
        Ok(())
    }

    pub(crate) fn write_at(file: &File, mut buf: &[u8], mut off: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match file.seek_write(buf, off)? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => {
                    buf = &buf[n..];
                    off += n as u64;
                }
            }
        }
        Ok(())
    }
}
