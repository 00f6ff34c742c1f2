//! Waking readers when candles change: a futex word in the segment's own header.
//!
//! The word is `wake_word` (header offset 168, 32 bits: the futex system call takes a 32-bit
//! word). Only the writer stores to it; readers map the segment read-only and only load it or
//! sleep on it. So no reader can disturb another reader's wake-ups or the writer: there is
//! nothing a reader may write. (Version 1 segments before this had a wake file, `NAME.wake`,
//! that every reader could write: truncating it killed the writer with SIGBUS, and scribbling
//! on its counters starved or spun everyone. That file is gone on Linux.)
//!
//! The protocol, a plain futex condition:
//!
//! | writer, after publishing a batch | reader, to wait for a change after `since` |
//! |---|---|
//! | `wake_word.fetch_add(1, Release)` | `v = wake_word.load(Acquire)`; `v != since`: done |
//! | `FUTEX_WAKE(wake_word, all)`, always | `FUTEX_WAIT(wake_word, since, slice)` |
//!
//! No wake-up is lost: the kernel compares the word with `since` under the futex bucket's lock
//! in `FUTEX_WAIT`, and `FUTEX_WAKE` takes the same lock after the increment, with a full
//! barrier between a waiter's queueing and the waker's check of the queue (both sides in the
//! kernel, on ARM as on x86). Release on the increment and Acquire on the load are enough for
//! what the word means beyond that: a reader that sees the new value sees what the writer
//! published before the bump (it still reads candles under their seqlocks).
//!
//! The cost is one `FUTEX_WAKE` system call per batch even when nobody waits, because a
//! waiter can no longer tell the writer that it waits (a count readers may write is exactly
//! what let them starve each other). docs/BENCHMARKS.md has the figure; a batch is one tick or
//! many, so the writer's per-tick cost hardly moves.
//!
//! A hostile reader can still call `FUTEX_WAKE` on the word: every waiter then wakes, sees the
//! word unchanged, and sleeps again. That costs the waiters as much CPU as it costs the
//! attacker, and changes nothing they read.
//!
//! `wake_kind` (offset 176) is 1 when the writer keeps this protocol; a writer from before it
//! leaves 0, and readers then look at `last_update_ns` every millisecond instead.
//!
//! Windows has no cross-process futex (`WaitOnAddress` is for threads of one process). There
//! the word is the same, and the sleep is on a named semaphore in the session's `Local\`
//! namespace, named after the wake file's path; the wake file (`NAME.wake`, 64 bytes) holds
//! the count of waiters at offset 8, so that the writer releases one unit per waiter. The
//! segment directory is the user's own (`%LOCALAPPDATA%`), so only that user can open the
//! wake file: the account that could disturb the count is the writer's own. The protocol
//! there is Dekker's:
//!
//! | writer, after publishing | reader, to wait for a change after `since` |
//! |---|---|
//! | `wake_word.fetch_add(1, SeqCst)` | `waiters.fetch_add(1, SeqCst)` |
//! | `if waiters.load(SeqCst) > 0: release(waiters)` | `v = wake_word.load(SeqCst)`; `v != since`: done |
//! | | wait on the semaphore, at most a slice; `waiters.fetch_sub(1, SeqCst)` at the end |
//!
//! SeqCst on the four accesses gives them one total order: either the writer's load of
//! `waiters` comes after the reader's increment (it releases a unit, which waits in the
//! semaphore until the reader takes it), or the reader's load of the word comes after the bump
//! (it does not sleep). A unit left over costs a later waiter one spurious wake-up.
//!
//! Elsewhere (other systems, Miri) the reader sleeps in short slices.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The longest a reader sleeps before it looks again at the word and the writer's liveness,
/// whatever happens.
pub const MAX_SLICE: Duration = Duration::from_millis(100);

/// The wake file of the segment at `segment` (Windows' waiter count; on Linux only a leftover
/// of an older writer, removed at start).
pub(crate) fn wake_path(segment: &Path) -> PathBuf {
    let mut name = segment.as_os_str().to_owned();
    name.push(".wake");
    PathBuf::from(name)
}

/// The writer's half.
#[derive(Debug)]
pub(crate) struct Waker {
    sleep: sleep::Sleep,
}

impl Waker {
    /// Prepares the wake-up of the segment at `segment`, whose mode is `mode`.
    pub(crate) fn create(segment: &Path, mode: u32) -> io::Result<Waker> {
        Ok(Waker {
            sleep: sleep::Sleep::for_writer(segment, mode)?,
        })
    }

    /// Bumps the word and wakes every waiter.
    pub(crate) fn notify(&self, word: &AtomicU32) {
        // Release: see the protocol table at the top (SeqCst on Windows, Dekker's protocol).
        word.fetch_add(1, sleep::BUMP);
        self.sleep.wake_all(word);
    }
}

/// A reader's half.
#[derive(Debug)]
pub(crate) struct Waiter {
    sleep: sleep::Sleep,
}

impl Waiter {
    /// Prepares waiting on the segment at `segment`, whose file belongs to `owner`; `None`
    /// where the platform's sleep cannot be had (Windows: the wake file cannot be opened),
    /// and the reader looks every millisecond instead.
    pub(crate) fn open(segment: &Path, owner: u32) -> Option<Waiter> {
        Some(Waiter {
            sleep: sleep::Sleep::for_reader(segment, owner)?,
        })
    }

    /// Waits until `word` differs from `since`, at most until `deadline`, in slices of at most
    /// [`MAX_SLICE`] after each of which `give_up` is asked whether to stop (the writer died,
    /// say). Returns the new value, or `None`.
    pub(crate) fn wait(
        &self,
        word: &AtomicU32,
        since: u32,
        deadline: Instant,
        mut give_up: impl FnMut() -> bool,
    ) -> Option<u32> {
        let _counted = self.sleep.count_waiter();
        loop {
            // Acquire: see the protocol table at the top (SeqCst on Windows).
            let now = word.load(sleep::LOOK);
            if now != since {
                return Some(now);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || give_up() {
                return None;
            }
            self.sleep.wait(word, since, left.min(MAX_SLICE));
        }
    }
}

#[cfg(all(target_os = "linux", not(miri)))]
mod sleep {
    use super::*;

    /// Release suffices for the bump and Acquire for the look: the kernel orders the futex
    /// calls themselves (module docs).
    pub(super) const BUMP: Ordering = Ordering::Release;
    pub(super) const LOOK: Ordering = Ordering::Acquire;

    /// The futex needs no object of its own: the word's file and offset are the wait queue's
    /// key, the same in every process that maps the segment.
    #[derive(Debug)]
    pub(super) struct Sleep;

    /// What counting a waiter leaves behind where nothing is counted.
    pub(super) struct NotCounted;

    impl Sleep {
        /// Removes the wake file an older writer left, which older readers would otherwise
        /// wait on for ever (without it they look at `last_update_ns`). It is removed only if
        /// it is ours; another account's is left alone and never used.
        pub(super) fn for_writer(segment: &Path, _mode: u32) -> io::Result<Sleep> {
            let path = wake_path(segment);
            match crate::files::open(&path, false) {
                Ok(f) => {
                    let meta = f.metadata()?;
                    if crate::files::owned_by_us(&meta).is_ok() {
                        match std::fs::remove_file(&path) {
                            Ok(()) => {}
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                // Not ours to open (a symlink, say): not used, so not our concern.
                Err(_) => {}
            }
            Ok(Sleep)
        }

        pub(super) fn for_reader(_segment: &Path, _owner: u32) -> Option<Sleep> {
            Some(Sleep)
        }

        /// Nothing to count: the writer always wakes.
        pub(super) fn count_waiter(&self) -> NotCounted {
            NotCounted
        }

        /// Sleeps while `word` holds `expected`, at most `timeout`; returns early on a wake-up, a
        /// signal or a spurious wake-up (the caller re-checks the word).
        pub(super) fn wait(&self, word: &AtomicU32, expected: u32, timeout: Duration) {
            let ts = libc::timespec {
                tv_sec: timeout.as_secs() as libc::time_t,
                tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
            };
            // SAFETY: `word` points to a live, aligned 32-bit word of a shared mapping (the
            // caller's reader keeps it mapped); FUTEX_WAIT only reads it, which a read-only
            // mapping allows (Linux takes read-only futex keys since 3.7), and `ts` outlives the
            // call. Not FUTEX_PRIVATE_FLAG: the waker is another process. EINTR, EAGAIN and
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
        pub(super) fn wake_all(&self, word: &AtomicU32) {
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
    use std::fs::File;
    use std::os::windows::ffi::OsStrExt;
    use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};

    use memmap2::{MmapOptions, MmapRaw};
    use windows_sys::Win32::System::Threading::{
        CreateSemaphoreW, ReleaseSemaphore, WaitForSingleObject,
    };

    use crate::files;

    /// Dekker's protocol needs one total order over the four accesses (module docs).
    pub(super) const BUMP: Ordering = Ordering::SeqCst;
    pub(super) const LOOK: Ordering = Ordering::SeqCst;

    /// Size of the wake file.
    const WAKE_FILE_SIZE: usize = 64;
    /// Offset of the waiter count in it.
    const WAITERS: usize = 8;

    /// The named semaphore of one segment, and the waiter count (module docs).
    #[derive(Debug)]
    pub(super) struct Sleep {
        semaphore: OwnedHandle,
        map: MmapRaw,
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

    /// A guard that uncounts a waiter when its wait ends, however it ends.
    pub(super) struct Counted<'a>(&'a AtomicU32);

    impl Drop for Counted<'_> {
        fn drop(&mut self) {
            // SeqCst: see the protocol table at the top.
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    impl Sleep {
        fn open(file: &File, path: &Path) -> io::Result<Sleep> {
            if file.metadata()?.len() < WAKE_FILE_SIZE as u64 {
                return Err(io::Error::other("the wake file is too short"));
            }
            let map = MmapOptions::new().len(WAKE_FILE_SIZE).map_raw(file)?;
            let name = name(path);
            // SAFETY: `name` is a NUL-terminated UTF-16 string that outlives the call; null
            // security attributes give the creator's default DACL (this user, SYSTEM and the
            // administrators). Returns a new handle, or null on failure.
            let raw = unsafe { CreateSemaphoreW(std::ptr::null(), 0, i32::MAX, name.as_ptr()) };
            if raw.is_null() {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `raw` is a handle just returned to us and owned by nobody else.
            let semaphore = unsafe { OwnedHandle::from_raw_handle(raw) };
            Ok(Sleep { semaphore, map })
        }

        pub(super) fn for_writer(segment: &Path, mode: u32) -> io::Result<Sleep> {
            let path = wake_path(segment);
            let file = files::open_or_create(&path, mode)?;
            let meta = file.metadata()?;
            files::regular(&meta).map_err(|e| io::Error::other(e.to_string()))?;
            if meta.len() < WAKE_FILE_SIZE as u64 {
                file.set_len(WAKE_FILE_SIZE as u64)?;
            }
            Sleep::open(&file, &path)
        }

        pub(super) fn for_reader(segment: &Path, _owner: u32) -> Option<Sleep> {
            let path = wake_path(segment);
            let file = files::open(&path, true).ok()?;
            let meta = file.metadata().ok()?;
            files::regular(&meta).ok()?;
            Sleep::open(&file, &path).ok()
        }

        fn waiters(&self) -> &AtomicU32 {
            // SAFETY: offset 8 is 4-aligned and inside the 64 bytes `open` checked the file
            // has and mapped (a page-aligned base); the mapping lives as long as `self`, and
            // every process accesses the count only atomically.
            unsafe { AtomicU32::from_ptr(self.map.as_mut_ptr().add(WAITERS).cast::<u32>()) }
        }

        pub(super) fn count_waiter(&self) -> Counted<'_> {
            // SeqCst: see the protocol table at the top.
            self.waiters().fetch_add(1, Ordering::SeqCst);
            Counted(self.waiters())
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
        pub(super) fn wake_all(&self, _word: &AtomicU32) {
            // SeqCst: see the protocol table at the top.
            let waiters = self.waiters().load(Ordering::SeqCst);
            if waiters == 0 {
                return;
            }
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

    pub(super) const BUMP: Ordering = Ordering::Release;
    pub(super) const LOOK: Ordering = Ordering::Acquire;

    #[derive(Debug)]
    pub(super) struct Sleep;

    pub(super) struct NotCounted;

    impl Sleep {
        pub(super) fn for_writer(_segment: &Path, _mode: u32) -> io::Result<Sleep> {
            Ok(Sleep)
        }

        pub(super) fn for_reader(_segment: &Path, _owner: u32) -> Option<Sleep> {
            Some(Sleep)
        }

        pub(super) fn count_waiter(&self) -> NotCounted {
            NotCounted
        }

        pub(super) fn wait(&self, word: &AtomicU32, expected: u32, timeout: Duration) {
            let until = Instant::now() + timeout;
            while word.load(Ordering::Acquire) == expected && Instant::now() < until {
                std::thread::sleep(Duration::from_micros(200).min(timeout));
            }
        }

        pub(super) fn wake_all(&self, _word: &AtomicU32) {}
    }
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_wakes_on_a_change_and_gives_up_at_its_deadline() {
        let seg = std::env::temp_dir().join(format!("shm-core-wake-{}", std::process::id()));
        let word = AtomicU32::new(7);
        let writer = Waker::create(&seg, 0o600).unwrap();
        let reader = Waiter::open(&seg, crate::files::euid()).unwrap();
        // Nothing changes: back at the deadline.
        let started = Instant::now();
        assert_eq!(
            reader.wait(&word, 7, Instant::now() + Duration::from_millis(50), || {
                false
            }),
            None
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
        // A change from another thread wakes it long before its deadline.
        std::thread::scope(|s| {
            let waiting = s.spawn(|| {
                reader.wait(&word, 7, Instant::now() + Duration::from_secs(10), || false)
            });
            std::thread::sleep(Duration::from_millis(20));
            writer.notify(&word);
            assert_eq!(waiting.join().unwrap(), Some(8));
        });
        // A change before the wait: no sleep at all.
        assert_eq!(
            reader.wait(&word, 7, Instant::now() + Duration::from_secs(10), || false),
            Some(8)
        );
        // Windows will not remove a file its own handles hold open; elsewhere they hold none.
        #[cfg(windows)]
        drop((writer, reader));
        let _ = std::fs::remove_file(wake_path(&seg));
    }

    /// A hostile process that may read the segment can call `FUTEX_WAKE` on its word. A
    /// waiter then wakes, finds the word unchanged, and sleeps on to its deadline: no change
    /// is reported that did not happen.
    #[cfg(target_os = "linux")]
    #[test]
    fn spurious_futex_wakes_report_no_change() {
        let word = AtomicU32::new(3);
        let seg = std::env::temp_dir().join(format!("shm-core-wake-spam-{}", std::process::id()));
        let reader = Waiter::open(&seg, crate::files::euid()).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    sleep::Sleep.wake_all(&word);
                    std::thread::sleep(Duration::from_micros(100));
                }
            });
            let started = Instant::now();
            let got = reader.wait(
                &word,
                3,
                Instant::now() + Duration::from_millis(300),
                || false,
            );
            stop.store(true, Ordering::Relaxed);
            assert_eq!(got, None);
            assert!(started.elapsed() >= Duration::from_millis(300));
        });
    }
}
