//! The writer's exclusive lock, kept in a file of its own beside the segment, and a probe
//! that tests it without taking it.
//!
//! The lock file is `NAME.lock`, mode `0600`, owned by the writer's user, whatever mode the
//! segment has. That is the point of it: readers need read access to the segment, and on
//! Linux any process that can open a file can take a read lock on it, which would block a
//! writer's exclusive lock for as long as it likes. No reader in another account can open the
//! lock file at all, so none can block or forge the lock; only the writer's own user can,
//! and that user can stop the writer anyway.
//!
//! On Linux the writer takes an open-file-description (OFD) write lock with `F_OFD_SETLK`. The
//! kernel drops it when the writer's last descriptor closes, including on SIGKILL. Readers
//! that may open the lock file ask `F_OFD_GETLK` whether a read lock *would* conflict, which
//! tells "held" from "free" without acquiring anything. Readers that may not open it judge
//! liveness from the pid, start time and heartbeat in the header (see `process.rs`).
//!
//! On Windows the writer takes an exclusive `LockFileEx` lock on the whole lock file; the
//! kernel releases it when the handle closes, and so when the process
//! ends in any way, `TerminateProcess` included. Windows has no query for a lock, so a reader
//! probes by taking a shared lock with `LOCKFILE_FAIL_IMMEDIATELY` and releasing it at once:
//! refused means held. A writer starting at that instant is not hurt, because it tries again
//! for 100 ms (`try_lock_briefly`). The lock file needs no mode there: it lives in the user's
//! own directory (see `files.rs`).
//!
//! Elsewhere the writer falls back to `flock` (`File::try_lock`), which cannot be probed
//! without being taken, so readers judge liveness from the header alone.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::files::{self, Untrusted};

/// Whether another open file description holds the writer lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    Held,
    Free,
    /// This process cannot test the lock (no access to the lock file, or a platform that
    /// cannot test a lock without taking it).
    Unknown,
}

/// The lock file of the segment at `segment`: the same path with `.lock` appended.
pub(crate) fn lock_path(segment: &Path) -> PathBuf {
    let mut name = segment.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Why the lock could not be taken.
#[derive(Debug)]
pub(crate) enum LockError {
    /// Another open description holds it.
    Held,
    /// The object at the lock file's name is not ours to use.
    Untrusted(Untrusted),
    /// A file operation failed.
    Io(&'static str, io::Error),
}

/// The writer's lock, held until dropped.
#[derive(Debug)]
pub(crate) struct WriterLock {
    _file: File,
    path: PathBuf,
}

impl WriterLock {
    /// Creates (or opens) the lock file of `segment` and takes its exclusive lock.
    pub(crate) fn acquire(segment: &Path) -> Result<WriterLock, LockError> {
        let path = lock_path(segment);
        // A few passes: the file may be removed (by `remove_segment`) between our open and
        // our lock, and then the lock we took guards nothing.
        for _ in 0..8 {
            let file = files::open_or_create(&path, 0o600)
                .map_err(|e| LockError::Io("open the lock file", e))?;
            let meta = file
                .metadata()
                .map_err(|e| LockError::Io("stat the lock file", e))?;
            files::regular(&meta).map_err(LockError::Untrusted)?;
            files::owned_by_us(&meta).map_err(LockError::Untrusted)?;
            if files::mode(&meta) & 0o077 != 0 {
                files::set_mode(&file, 0o600)
                    .map_err(|e| LockError::Io("set the mode of the lock file", e))?;
            }
            if !try_lock_briefly(&file)? {
                return Err(LockError::Held);
            }
            match files::same_file(&file, &path) {
                Ok(true) => return Ok(WriterLock { _file: file, path }),
                Ok(false) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(LockError::Io("stat the lock file", e)),
            }
        }
        Err(LockError::Io(
            "lock",
            io::Error::other("the lock file kept changing under us"),
        ))
    }

    /// The lock file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes the lock, trying again for up to 100 ms. A process that forks (to run any program)
/// copies every descriptor into the child until the child's `exec` closes it, and an OFD lock
/// lives as long as any descriptor of its open file description: a writer stopped a moment
/// ago by such a process can look like one still holding the lock for that long.
fn try_lock_briefly(file: &File) -> Result<bool, LockError> {
    let until = std::time::Instant::now() + std::time::Duration::from_millis(100);
    loop {
        if imp::try_lock_exclusive(file).map_err(|e| LockError::Io("lock", e))? {
            return Ok(true);
        }
        if std::time::Instant::now() >= until {
            return Ok(false);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// A reader's handle for testing the writer lock of the segment at `segment`, whose file has
/// owner `owner`. `None` when this process may not open the lock file (another account), or
/// when what sits there is not a regular file of the segment's owner (so it proves nothing).
pub(crate) fn open_probe(segment: &Path, owner: u32) -> Option<File> {
    let file = files::open(&lock_path(segment), false).ok()?;
    let meta = file.metadata().ok()?;
    (files::regular(&meta).is_ok() && files::owner(&meta) == owner).then_some(file)
}

/// Tests the lock through `file` (from [`open_probe`]) without taking it.
pub(crate) fn probe(file: Option<&File>) -> Probe {
    match file {
        Some(f) => imp::probe(f).unwrap_or(Probe::Unknown),
        None => Probe::Unknown,
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use super::*;
    use std::os::fd::AsRawFd;

    fn whole_file(kind: libc::c_short) -> libc::flock {
        // SAFETY: `flock` is a plain C struct of integers, for which all-zero is a valid value.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = kind;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = 0;
        fl.l_len = 0; // 0 = to the end of the file, however long it grows
        fl.l_pid = 0; // required to be 0 for OFD locks
        fl
    }

    /// Takes the exclusive lock; `Ok(false)` if another description holds it.
    pub(super) fn try_lock_exclusive(file: &File) -> io::Result<bool> {
        let mut fl = whole_file(libc::F_WRLCK as libc::c_short);
        // SAFETY: the descriptor is open for the duration of the call (borrowed from `file`),
        // and `fl` is a valid, initialised `flock` that outlives the call.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
            _ => Err(err),
        }
    }

    pub(super) fn probe(file: &File) -> io::Result<Probe> {
        let mut fl = whole_file(libc::F_RDLCK as libc::c_short);
        // SAFETY: as in `try_lock_exclusive`; F_OFD_GETLK only writes into `fl`.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(if fl.l_type == libc::F_UNLCK as libc::c_short {
            Probe::Free
        } else {
            Probe::Held
        })
    }
}

#[cfg(windows)]
mod imp {
    use super::*;
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::Foundation::ERROR_LOCK_VIOLATION;
    use windows_sys::Win32::Storage::FileSystem::{
        LockFileEx, UnlockFileEx, LOCKFILE_EXCLUSIVE_LOCK, LOCKFILE_FAIL_IMMEDIATELY,
    };
    use windows_sys::Win32::System::IO::OVERLAPPED;

    /// Locks the whole file, every byte a 64-bit offset can name, without waiting; `flags`
    /// say shared (0) or exclusive. `Ok(false)`: another handle holds a conflicting lock.
    fn lock(file: &File, flags: u32) -> io::Result<bool> {
        // SAFETY: OVERLAPPED is a plain C struct; all-zero is offset 0 and no event.
        let mut at: OVERLAPPED = unsafe { std::mem::zeroed() };
        // SAFETY: the handle is open for the duration of the call (borrowed from `file`), it
        // was opened for synchronous I/O, so with LOCKFILE_FAIL_IMMEDIATELY the call returns
        // at once and `at` is not used after it returns.
        let ok = unsafe {
            LockFileEx(
                file.as_raw_handle(),
                flags | LOCKFILE_FAIL_IMMEDIATELY,
                0,
                u32::MAX,
                u32::MAX,
                &mut at,
            )
        };
        if ok != 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(ERROR_LOCK_VIOLATION as i32) {
            Ok(false)
        } else {
            Err(e)
        }
    }

    fn unlock(file: &File) -> io::Result<()> {
        // SAFETY: as in `lock`.
        let mut at: OVERLAPPED = unsafe { std::mem::zeroed() };
        // SAFETY: as in `lock`; the range is the one `lock` took.
        let ok = unsafe { UnlockFileEx(file.as_raw_handle(), 0, u32::MAX, u32::MAX, &mut at) };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub(super) fn try_lock_exclusive(file: &File) -> io::Result<bool> {
        lock(file, LOCKFILE_EXCLUSIVE_LOCK)
    }

    /// Takes a shared lock and drops it at once (module docs): refused means held.
    pub(super) fn probe(file: &File) -> io::Result<Probe> {
        if lock(file, 0)? {
            unlock(file)?;
            Ok(Probe::Free)
        } else {
            Ok(Probe::Held)
        }
    }
}

#[cfg(not(any(target_os = "linux", windows)))]
mod imp {
    use super::*;

    pub(super) fn try_lock_exclusive(file: &File) -> io::Result<bool> {
        match file.try_lock() {
            Ok(()) => Ok(true),
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    pub(super) fn probe(_file: &File) -> io::Result<Probe> {
        Ok(Probe::Unknown)
    }
}

#[cfg(all(test, any(target_os = "linux", windows), not(miri)))]
mod tests {
    use super::*;

    #[test]
    fn probe_sees_the_lock_without_taking_it_and_only_the_owner_may_open_it() {
        let seg = std::env::temp_dir().join(format!("shm-core-lock-{}", std::process::id()));
        let _ = std::fs::remove_file(lock_path(&seg));
        let probe_file = || open_probe(&seg, files::euid());
        assert!(probe_file().is_none(), "no lock file yet");
        let a = WriterLock::acquire(&seg).unwrap();
        assert_eq!(a.path(), lock_path(&seg));
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let meta = std::fs::metadata(a.path()).unwrap();
            assert_eq!(meta.mode() & 0o777, 0o600);
        }
        let reader = probe_file().unwrap();
        assert_eq!(probe(Some(&reader)), Probe::Held);
        // A second description in the same process conflicts too: OFD locks are per
        // description, not per process (and `LockFileEx` locks per handle).
        assert!(matches!(WriterLock::acquire(&seg), Err(LockError::Held)));
        drop(a);
        assert_eq!(probe(Some(&reader)), Probe::Free);
        let b = WriterLock::acquire(&seg).unwrap();
        assert_eq!(probe(Some(&reader)), Probe::Held);
        // A lock file of another owner proves nothing to a reader.
        #[cfg(unix)]
        assert!(open_probe(&seg, files::euid() + 1).is_none());
        drop(b);
        std::fs::remove_file(lock_path(&seg)).unwrap();
    }
}
