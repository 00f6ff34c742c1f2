//! Waking readers when candles change: a futex in a small file beside the segment.
//!
//! Readers map the segment read-only, so they cannot tell the writer that they wait. The wake
//! file (`NAME.wake`, 64 bytes) holds two 32-bit words that readers may write:
//!
//! | offset | word | who writes | meaning |
//! |---:|---|---|---|
//! | 0 | `changes` | the writer | bumped (wrapping) after each batch of changes is published; the futex word |
//! | 8 | `waiters` | readers | how many readers are, or are about to be, asleep on `changes` |
//!
//! The protocol (Dekker's, as every futex-based condition uses):
//!
//! | writer, after publishing | reader, to wait for a change after `since` |
//! |---|---|
//! | `changes.fetch_add(1, SeqCst)` | `waiters.fetch_add(1, SeqCst)` |
//! | `if waiters.load(SeqCst) > 0: FUTEX_WAKE(changes, all)` | `v = changes.load(SeqCst)`; `v != since`: done |
//! | | `FUTEX_WAIT(changes, v, slice)`: the kernel sleeps only while `changes == v` |
//! | | `waiters.fetch_sub(1, SeqCst)` |
//!
//! SeqCst on the four accesses gives them one total order (on ARM as on x86, where the
//! read-modify-writes are full barriers): either the writer's load of `waiters` comes after
//! the reader's increment (it wakes), or the reader's load of `changes` comes after the
//! writer's bump (it does not sleep), or the kernel's own compare in `FUTEX_WAIT` sees the new
//! value (`EAGAIN`). A wake-up is never lost, and the writer makes no system call when the
//! count is zero.
//!
//! The file's mode is the segment's with write added wherever read is (0600 stays 0600, 0640
//! becomes 0660), so that every reader of the segment can wait. Whoever may write it can only
//! disturb wake-ups, never candles: a reader never sleeps longer than [`MAX_SLICE`] at a time,
//! re-checking `changes` and the writer's liveness, so a count forced to zero costs latency, a
//! count forced high costs the writer one `FUTEX_WAKE` per batch, and neither can block anyone.
//!
//! Futexes work across processes on a shared mapping (`FUTEX_WAIT` without
//! `FUTEX_PRIVATE_FLAG`). Windows has no cross-process futex (`WaitOnAddress` is for threads
//! of one process), so there the sleep is on a named semaphore in the session's `Local\`
//! namespace, named after the wake file's full path, that the writer and every reader open
//! (or create, whoever comes first). The table above is unchanged; `FUTEX_WAKE(all)` becomes
//! "release one unit per counted waiter", `FUTEX_WAIT` a wait on the semaphore. The kernel's
//! compare in `FUTEX_WAIT` has no equivalent, and needs none: a unit released for a reader
//! that has not reached its wait yet stays in the semaphore until it does. A unit left over
//! (its reader saw the change before sleeping, or timed out) costs a later waiter one
//! spurious wake-up, after which it re-checks `changes` and sleeps again.
//! Elsewhere the reader sleeps in short slices.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use memmap2::{MmapOptions, MmapRaw};

use crate::files;

/// Size of the wake file.
pub(crate) const WAKE_FILE_SIZE: usize = 64;
const CHANGES: usize = 0;
const WAITERS: usize = 8;

/// The longest a reader sleeps before it looks again at the counter and the writer's
/// liveness, whatever the wake file says.
pub const MAX_SLICE: Duration = Duration::from_millis(100);

/// The wake file of the segment at `segment`.
pub(crate) fn wake_path(segment: &Path) -> PathBuf {
    let mut name = segment.as_os_str().to_owned();
    name.push(".wake");
    PathBuf::from(name)
}

/// The two words of a wake file, mapped shared and read-write.
#[derive(Debug)]
pub(crate) struct WakeWords {
    map: MmapRaw,
    /// What a waiter sleeps on.
    sleep: sleep::Sleep,
}

impl WakeWords {
    fn word(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off + 4 <= WAKE_FILE_SIZE && off.is_multiple_of(4));
        // SAFETY: `off` is one of the two word offsets above (0 or 8), 4-aligned and inside
        // the 64 bytes that `open` checked the mapping has (a page-aligned base, so the word is
        // aligned); the mapping lives as long as `self`, and every process accesses these
        // words only atomically.
        unsafe { AtomicU32::from_ptr(self.map.as_mut_ptr().add(off).cast::<u32>()) }
    }

    /// The futex word.
    pub(crate) fn changes(&self) -> &AtomicU32 {
        self.word(CHANGES)
    }

    /// The waiter count.
    pub(crate) fn waiters(&self) -> &AtomicU32 {
        self.word(WAITERS)
    }

    /// Maps an opened wake file at `path`, if it is at least 64 bytes long.
    fn map(file: &File, path: &Path) -> io::Result<WakeWords> {
        if file.metadata()?.len() < WAKE_FILE_SIZE as u64 {
            return Err(io::Error::other("the wake file is too short"));
        }
        let map = MmapOptions::new().len(WAKE_FILE_SIZE).map_raw(file)?;
        let sleep = sleep::Sleep::open(path)?;
        Ok(WakeWords { map, sleep })
    }

    /// Creates (or takes over) the wake file of the segment at `segment`, for the writer.
    /// `mode` is the segment's; the file gets write wherever the segment has read.
    pub(crate) fn create(segment: &Path, mode: u32) -> io::Result<WakeWords> {
        let path = wake_path(segment);
        let wake_mode = (mode & 0o644) | ((mode & 0o044) >> 1);
        let file = files::open_or_create(&path, wake_mode)?;
        let meta = file.metadata()?;
        files::regular(&meta).map_err(|e| io::Error::other(e.to_string()))?;
        files::owned_by_us(&meta).map_err(|e| io::Error::other(e.to_string()))?;
        files::set_mode(&file, wake_mode)?;
        if meta.len() < WAKE_FILE_SIZE as u64 {
            file.set_len(WAKE_FILE_SIZE as u64)?;
        }
        WakeWords::map(&file, &path)
    }

    /// Opens the wake file of the segment at `segment`, whose file has owner `owner`, for a
    /// reader; `None` if it cannot (no file yet, no write permission, another owner).
    pub(crate) fn open(segment: &Path, owner: u32) -> Option<WakeWords> {
        let path = wake_path(segment);
        let file = files::open(&path, true).ok()?;
        let meta = file.metadata().ok()?;
        if files::regular(&meta).is_err() || files::owner(&meta) != owner {
            return None;
        }
        WakeWords::map(&file, &path).ok()
    }

    /// The writer's half: bumps the counter and wakes the waiters, if any.
    pub(crate) fn notify(&self) {
        // SeqCst on both: see the protocol table at the top.
        self.changes().fetch_add(1, Ordering::SeqCst);
        let waiters = self.waiters().load(Ordering::SeqCst);
        if waiters > 0 {
            self.sleep.wake_all(self.changes(), waiters);
        }
    }

    /// The reader's half: waits until the counter differs from `since`, at most until
    /// `deadline`, in slices of at most [`MAX_SLICE`] after each of which `give_up` is asked
    /// whether to stop (the writer died, say). Returns the new counter, or `None`.
    pub(crate) fn wait(
        &self,
        since: u32,
        deadline: Instant,
        mut give_up: impl FnMut() -> bool,
    ) -> Option<u32> {
        let waiters = self.waiters();
        // SeqCst: see the protocol table at the top.
        waiters.fetch_add(1, Ordering::SeqCst);
        let result = loop {
            let now = self.changes().load(Ordering::SeqCst);
            if now != since {
                break Some(now);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || give_up() {
                break None;
            }
            self.sleep.wait(self.changes(), since, left.min(MAX_SLICE));
        };
        waiters.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

#[cfg(all(target_os = "linux", not(miri)))]
mod sleep {
    use super::*;

    /// The futex needs no object of its own: the word is the wait queue's key.
    #[derive(Debug)]
    pub(super) struct Sleep;

    impl Sleep {
        pub(super) fn open(_wake_file: &Path) -> io::Result<Sleep> {
            Ok(Sleep)
        }

        /// Sleeps while `word` holds `expected`, at most `timeout`; returns early on a wake-up, a
        /// signal or a spurious wake-up (the caller re-checks the word).
        pub(super) fn wait(&self, word: &AtomicU32, expected: u32, timeout: Duration) {
            let ts = libc::timespec {
                tv_sec: timeout.as_secs() as libc::time_t,
                tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
            };
            // SAFETY: `word` points to a live, aligned 32-bit word of a shared mapping (the
            // caller's `WakeWords` keeps it mapped); FUTEX_WAIT only reads it, and `ts` outlives
            // the call. Not FUTEX_PRIVATE_FLAG: the waker is another process. EINTR, EAGAIN and
            // ETIMEDOUT all just return; the caller loops on the word's value.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    word.as_ptr(),
                    libc::FUTEX_WAIT,
                    expected,
                    &ts as *const libc::timespec,
                    std::ptr::null::<u32>(),
                    0u32,
                );
            }
        }

        /// Wakes every process sleeping on `word`.
        pub(super) fn wake_all(&self, word: &AtomicU32, _waiters: u32) {
            // SAFETY: as in `wait`; FUTEX_WAKE reads no memory of ours but the word's address.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    word.as_ptr(),
                    libc::FUTEX_WAKE,
                    i32::MAX,
                    std::ptr::null::<libc::timespec>(),
                    std::ptr::null::<u32>(),
                    0u32,
                );
            }
        }
    }
}

#[cfg(all(windows, not(miri)))]
mod sleep {
    use super::*;
    use std::os::windows::ffi::OsStrExt;
    use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
    use windows_sys::Win32::System::Threading::{
        CreateSemaphoreW, ReleaseSemaphore, WaitForSingleObject,
    };

    /// The named semaphore of one wake file (module docs).
    #[derive(Debug)]
    pub(super) struct Sleep {
        semaphore: OwnedHandle,
    }

    /// `Local\mtf-candles-wake-HASH`: object names may not hold `\` and are limited in length,
    /// so the wake file's full path (lower-cased, as Windows compares paths) is hashed
    /// (FNV-1a, 64 bits).
    fn name(wake_file: &Path) -> Vec<u16> {
        let full = std::path::absolute(wake_file).unwrap_or_else(|_| wake_file.to_owned());
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        for unit in full.as_os_str().encode_wide() {
            let unit = if (u16::from(b'A')..=u16::from(b'Z')).contains(&unit) {
                unit + 32
            } else {
                unit
            };
            for byte in unit.to_le_bytes() {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("Local\\mtf-candles-wake-{hash:016x}")
            .encode_utf16()
            .chain(Some(0))
            .collect()
    }

    impl Sleep {
        /// Creates the semaphore, or opens it if the writer or another reader already did.
        pub(super) fn open(wake_file: &Path) -> io::Result<Sleep> {
            let name = name(wake_file);
            // SAFETY: `name` is a NUL-terminated UTF-16 string that outlives the call; null
            // security attributes give the creator's default DACL (this user, SYSTEM and the
            // administrators). Returns a new handle, or null on failure.
            let raw = unsafe { CreateSemaphoreW(std::ptr::null(), 0, i32::MAX, name.as_ptr()) };
            if raw.is_null() {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `raw` is a handle just returned to us and owned by nobody else.
            let semaphore = unsafe { OwnedHandle::from_raw_handle(raw) };
            Ok(Sleep { semaphore })
        }

        /// Sleeps until a unit is released, at most `timeout` (the caller re-checks the word).
        pub(super) fn wait(&self, _word: &AtomicU32, _expected: u32, timeout: Duration) {
            let ms = u32::try_from(timeout.as_millis())
                .unwrap_or(u32::MAX)
                .max(1);
            // SAFETY: the handle is open for as long as `self` lives. Every result (signalled,
            // timed out, failed) just returns; the caller loops on the word's value.
            unsafe { WaitForSingleObject(self.semaphore.as_raw_handle(), ms) };
        }

        /// Releases one unit per counted waiter.
        pub(super) fn wake_all(&self, _word: &AtomicU32, waiters: u32) {
            let n = i32::try_from(waiters).unwrap_or(i32::MAX);
            // SAFETY: the handle is open for as long as `self` lives; a null previous-count
            // pointer is allowed. A release past the maximum fails and changes nothing: the
            // semaphore already holds more units than there are waiters.
            unsafe { ReleaseSemaphore(self.semaphore.as_raw_handle(), n, std::ptr::null_mut()) };
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn text(name: &[u16]) -> String {
            String::from_utf16(name).unwrap()
        }

        #[test]
        fn one_wake_file_has_one_name_however_its_path_is_spelled() {
            let abs = std::env::current_dir().unwrap().join("Seg.wake");
            assert_eq!(name(&abs), name(Path::new("Seg.wake")));
            assert_eq!(name(&abs), name(Path::new(".\\x\\..\\seg.WAKE")));
            assert_ne!(name(&abs), name(Path::new("other.wake")));
            // The format docs/LAYOUT.md gives readers in other languages: FNV-1a 64 of the
            // lower-cased absolute path's UTF-16LE bytes (computed independently).
            assert_eq!(
                text(&name(Path::new("C:\\X.wake"))),
                "Local\\mtf-candles-wake-ac58b346bd08b00e\0"
            );
        }
    }
}

/// Without futexes or semaphores (other systems, and Miri, which cannot run them): short
/// sleeps stand in for the kernel's wait queue, so the protocol above stays testable.
#[cfg(not(any(all(target_os = "linux", not(miri)), all(windows, not(miri)))))]
mod sleep {
    use super::*;

    #[derive(Debug)]
    pub(super) struct Sleep;

    impl Sleep {
        pub(super) fn open(_wake_file: &Path) -> io::Result<Sleep> {
            Ok(Sleep)
        }

        pub(super) fn wait(&self, word: &AtomicU32, expected: u32, timeout: Duration) {
            let until = Instant::now() + timeout;
            while word.load(Ordering::SeqCst) == expected && Instant::now() < until {
                std::thread::sleep(Duration::from_micros(200).min(timeout));
            }
        }

        pub(super) fn wake_all(&self, _word: &AtomicU32, _waiters: u32) {}
    }
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().mode() & 0o777
    }

    #[test]
    fn a_waiter_wakes_on_a_change_and_gives_up_at_its_deadline() {
        let seg = std::env::temp_dir().join(format!("shm-core-wake-{}", std::process::id()));
        let writer = WakeWords::create(&seg, 0o600).unwrap();
        #[cfg(unix)]
        assert_eq!(mode(&wake_path(&seg)), 0o600);
        let reader = WakeWords::open(&seg, files::euid()).unwrap();
        let since = reader.changes().load(Ordering::SeqCst);
        // Nothing changes: back at the deadline, with no waiter left counted.
        let started = Instant::now();
        assert_eq!(
            reader.wait(since, Instant::now() + Duration::from_millis(50), || false),
            None
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(reader.waiters().load(Ordering::SeqCst), 0);
        // A change from another thread wakes it long before its deadline.
        std::thread::scope(|s| {
            let waiting =
                s.spawn(|| reader.wait(since, Instant::now() + Duration::from_secs(10), || false));
            while reader.waiters().load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            writer.notify();
            assert_eq!(waiting.join().unwrap(), Some(since.wrapping_add(1)));
        });
        // A change before the wait: no sleep at all.
        assert_eq!(
            reader.wait(since, Instant::now() + Duration::from_secs(10), || false),
            Some(since.wrapping_add(1))
        );
        // The group may wait on a segment it may read.
        drop(WakeWords::create(&seg, 0o640).unwrap());
        #[cfg(unix)]
        assert_eq!(mode(&wake_path(&seg)), 0o660);
        drop((writer, reader));
        std::fs::remove_file(wake_path(&seg)).unwrap();
    }
}
