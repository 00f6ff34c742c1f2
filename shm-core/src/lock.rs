//! The writer's exclusive lock, and a probe that tests it without taking it.
//!
//! On Linux the writer takes an open-file-description (OFD) write lock with `F_OFD_SETLK`. The
//! kernel drops it when the writer's last descriptor closes, including on SIGKILL. Readers ask
//! `F_OFD_GETLK` whether a read lock *would* conflict: that tells "writer holds the segment"
//! from "lock free" without acquiring anything, so a probing reader can never make a
//! restarting writer fail its own lock attempt.
//!
//! Elsewhere the writer falls back to `flock` (`File::try_lock`), which cannot be probed
//! without being taken, so readers judge liveness from the heartbeat alone.

use std::fs::File;
use std::io;

/// Whether another open file description holds the writer lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    Held,
    Free,
    /// This platform cannot test the lock without taking it.
    Unknown,
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
    pub(crate) fn try_lock_exclusive(file: &File) -> io::Result<bool> {
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

    pub(crate) fn probe(file: &File) -> io::Result<Probe> {
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

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::*;

    pub(crate) fn try_lock_exclusive(file: &File) -> io::Result<bool> {
        match file.try_lock() {
            Ok(()) => Ok(true),
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    pub(crate) fn probe(_file: &File) -> io::Result<Probe> {
        Ok(Probe::Unknown)
    }
}

pub(crate) use imp::{probe, try_lock_exclusive};

#[cfg(all(test, target_os = "linux", not(miri)))]
mod tests {
    use super::*;

    #[test]
    fn probe_sees_the_lock_without_taking_it() {
        let dir = std::env::temp_dir().join(format!("shm-core-lock-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let a = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&dir)
            .unwrap();
        let reader = File::open(&dir).unwrap();
        assert_eq!(probe(&reader).unwrap(), Probe::Free);
        assert!(try_lock_exclusive(&a).unwrap());
        assert_eq!(probe(&reader).unwrap(), Probe::Held);
        // A second description in the same process conflicts too: OFD locks are per
        // description, not per process.
        let b = File::options().read(true).write(true).open(&dir).unwrap();
        assert!(!try_lock_exclusive(&b).unwrap());
        drop(a);
        assert_eq!(probe(&reader).unwrap(), Probe::Free);
        assert!(try_lock_exclusive(&b).unwrap());
        std::fs::remove_file(&dir).unwrap();
    }
}
