//! Creating a segment, or taking one over: the writer lock, a warm restart, a replacement
//! built aside and renamed into place, leftovers of killed writers, and removal.

use super::{Start, Writer, WriterOptions};
use crate::error::{io_err, CreateError};
use crate::files::{self, Untrusted};
use crate::header::Header;
use crate::layout::{self, hdr, sym, Layout, Placement, HEADER_SIZE, LAYOUT_VERSION, MAGIC};
use crate::lock::{self, LockError, WriterLock};
use crate::mem::MappingMut;
use crate::process::{self, PidState};
use crate::status::{FeedState, WriterState};
use crate::wake::{self, Waker};
use crate::{now_ns, SegmentPath};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

impl Writer {
    /// Creates the segment at `path`, or takes over an existing one.
    ///
    /// First the writer lock is taken, in the lock file beside the segment (`NAME.lock`,
    /// mode 0600, whatever the segment's mode): no reader can open it, so none can block or
    /// forge it. Then:
    /// - No file: a new segment is built in a temporary file and linked into place, so readers
    ///   never see it half-initialised.
    /// - A segment of ours with the same layout: it is reused with its candles (warm restart).
    /// - A file owned by another account: refused ([`CreateError::Untrusted`]); it may hold
    ///   anything, and in a sticky `/dev/shm` it cannot be removed by us anyway.
    /// - Anything else of ours (another layout, not a segment, writable by others, a FIFO): a
    ///   new segment is built and renamed over it; an old segment is marked `replaced` first
    ///   so that attached readers know to re-open it.
    ///
    /// The writer starts in state `initializing`; call [`set_running`](Self::set_running) once
    /// the rings hold what they should.
    pub fn create(
        path: &SegmentPath,
        layout: &Layout,
        options: &WriterOptions,
    ) -> Result<Writer, CreateError> {
        if layout.rings().is_empty() {
            return Err(CreateError::EmptyLayout);
        }
        if options.mode & 0o7022 != 0 || options.mode & 0o600 != 0o600 {
            return Err(CreateError::InsecureMode { mode: options.mode });
        }
        let path = path.path();
        // The segment directory of a first run on Windows; never another (a mistyped path
        // should fail, not grow directories).
        let dir = crate::segment_dir();
        if path.parent() == Some(dir.as_path()) && !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(io_err("create the directory", &dir))?;
        }
        let lock = take_lock(path)?;
        let wake = Waker::create(path, options.mode)
            .map_err(io_err("prepare the wake-up of", &wake::wake_path(path)))?;
        // Under the lock no other writer builds here, so every temporary file of this
        // segment is a leftover of a writer killed while building one.
        remove_leftovers(path);
        let placement = layout.placement();
        // Each pass either finishes or observed another process changing the file between two
        // steps; a handful of passes is plenty unless something is badly wrong.
        for _ in 0..16 {
            // Never through a symlink (ELOOP), never waiting on a FIFO (O_NONBLOCK).
            let file = match files::open(path, true) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let (file, map, tmp) = build(path, layout, &placement, options, 1)?;
                    // Fails if the name exists: if someone else put a file there meanwhile,
                    // go round again and judge it.
                    match files::publish_new(&tmp, path) {
                        Ok(()) => {
                            return Writer::new(
                                Held { file, lock, wake },
                                map,
                                path,
                                layout,
                                &placement,
                                Start::Fresh,
                            )
                        }
                        Err(e) => {
                            // Unmapped and closed first: Windows will not delete a mapped file.
                            drop((file, map));
                            let _ = fs::remove_file(&tmp);
                            if e.kind() == io::ErrorKind::AlreadyExists {
                                continue;
                            }
                            return Err(io_err("link the new segment to", path)(e));
                        }
                    }
                }
                Err(e) if files::is_a_directory(&e, path) => {
                    return Err(CreateError::Untrusted {
                        path: path.to_owned(),
                        why: Untrusted::NotRegular {
                            kind: "a directory",
                        },
                    })
                }
                Err(e) => return Err(io_err("open", path)(e)),
            };
            let ours = file.metadata().map_err(io_err("stat", path))?;
            // Decided on the object opened, not on the name: another account's file is never
            // ours to write or replace.
            files::owned_by_us(&ours).map_err(|why| CreateError::Untrusted {
                path: path.to_owned(),
                why,
            })?;
            // Warm restart only into a regular file that nobody else could have written.
            let trusted = files::regular(&ours).is_ok() && files::owner_only_writes(&ours).is_ok();
            let same_layout = trusted
                && ours.len() == placement.total_size as u64
                && peek(&file, hdr::MAGIC) == Some(MAGIC)
                && peek(&file, hdr::VERSION) == Some(LAYOUT_VERSION)
                && peek(&file, hdr::LAYOUT_HASH) == Some(placement.hash)
                && peek(&file, hdr::TOTAL_SIZE) == Some(placement.total_size as u64);
            let is_segment = trusted && peek(&file, hdr::MAGIC) == Some(MAGIC);
            let old_generation = if is_segment {
                peek(&file, hdr::GENERATION).unwrap_or(0)
            } else {
                0
            };

            // The lock file was removed by hand while the writer the header names runs: a
            // second writer (warm, or replacing the file under it) would corrupt its rings.
            if same_layout {
                if let Some(pid) = live_writer(&file) {
                    return Err(CreateError::AlreadyRunning {
                        path: path.to_owned(),
                        pid: Some(pid),
                    });
                }
            }
            if same_layout && !options.start_clean {
                // The mode asked for now, not the one of the run that created the file.
                files::set_mode(&file, options.mode).map_err(io_err("set the mode of", path))?;
                let map = MappingMut::read_write(&file, placement.total_size)
                    .map_err(io_err("map", path))?;
                let mut w = Writer::new(
                    Held { file, lock, wake },
                    map,
                    path,
                    layout,
                    &placement,
                    Start::Fresh,
                )?;
                let repaired =
                    w.rings.iter().map(|r| r.repair(w.mem())).sum::<u32>() + w.repair_records();
                w.start = Start::Warm { repaired };
                w.begin_generation(old_generation + 1);
                return Ok(w);
            }

            let (new_file, map, tmp) =
                build(path, layout, &placement, options, old_generation + 1)?;
            // Tell readers still mapping the old file to re-open by name. Done before the
            // rename so that no reader can miss it; a pwrite of one word, no mapping needed.
            if is_segment && old_generation > 0 {
                let state = (WriterState::Replaced as u64).to_le_bytes();
                let _ = files::write_at(&file, &state, hdr::WRITER_STATE as u64);
            }
            drop(file);
            if let Err(e) = files::replace(&tmp, path, &tmp_path(path)) {
                let _ = fs::remove_file(&tmp);
                return Err(io_err("rename the new segment over", path)(e));
            }
            return Writer::new(
                Held {
                    file: new_file,
                    lock,
                    wake,
                },
                map,
                path,
                layout,
                &placement,
                Start::Replaced,
            );
        }
        Err(io_err("take over", path)(io::Error::other(
            "the segment file kept changing under us; is another program replacing it?",
        )))
    }
}

/// The writer recorded in the header of `file`, if its process still runs.
fn live_writer(file: &File) -> Option<u32> {
    let state = WriterState::from_word(peek(file, hdr::WRITER_STATE)?);
    if !matches!(
        state,
        Some(WriterState::Initializing | WriterState::Running)
    ) {
        return None;
    }
    let pid = peek(file, hdr::WRITER_PID)? as u32;
    let who = process::Identity {
        pidns: peek(file, hdr::WRITER_PIDNS)?,
        start_ticks: peek(file, hdr::WRITER_START_TICKS)?,
    };
    (process::check(pid, who) == PidState::Running).then_some(pid)
}

/// What a writer holds open besides its mapping.
pub(super) struct Held {
    /// The segment file.
    pub(super) file: File,
    /// The writer lock.
    pub(super) lock: WriterLock,
    /// The wake-up.
    pub(super) wake: Waker,
}

/// Takes the writer lock of the segment at `path`, or says why not.
fn take_lock(path: &Path) -> Result<WriterLock, CreateError> {
    WriterLock::acquire(path).map_err(|e| match e {
        LockError::Held => held(path),
        LockError::Untrusted(why) => CreateError::Untrusted {
            path: lock::lock_path(path),
            why,
        },
        LockError::Io(action, source) => CreateError::Io {
            action,
            path: lock::lock_path(path),
            source,
        },
    })
}

/// The error for a writer lock held by another description: a live writer, or a squatter.
fn held(path: &Path) -> CreateError {
    let recorded = || {
        let file = files::open(path, false).ok()?;
        let pid = peek(&file, hdr::WRITER_PID)? as u32;
        let who = process::Identity {
            pidns: peek(&file, hdr::WRITER_PIDNS)?,
            start_ticks: peek(&file, hdr::WRITER_START_TICKS)?,
        };
        Some((pid, process::check(pid, who)))
    };
    let mut seen = recorded();
    if matches!(seen, Some((_, PidState::Dead))) {
        // A writer that has just taken the lock stamps its pid a moment later: look again
        // before blaming anyone.
        std::thread::sleep(std::time::Duration::from_millis(50));
        seen = recorded();
    }
    match seen {
        Some((last_pid, PidState::Dead)) => CreateError::LockHeld {
            path: path.to_owned(),
            lock_path: lock::lock_path(path),
            last_pid,
        },
        Some((pid, _)) => CreateError::AlreadyRunning {
            path: path.to_owned(),
            pid: Some(pid),
        },
        None => CreateError::AlreadyRunning {
            path: path.to_owned(),
            pid: None,
        },
    }
}

/// Removes the temporary files of earlier builds of the segment at `path` (a writer killed
/// while building one leaves a file the size of the segment). Called under the writer lock.
fn remove_leftovers(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) else {
        return;
    };
    for entry in entries.flatten() {
        let n = entry.file_name();
        let n = n.to_string_lossy();
        let Some(rest) = n.strip_prefix(&prefix) else {
            continue;
        };
        // `NAME.PID-N.tmp`, as made by `tmp_path`, and owned by us.
        let ours = entry
            .metadata()
            .is_ok_and(|m| m.is_file() && files::owner(&m) == files::euid());
        let shaped = rest.strip_suffix(".tmp").is_some_and(|mid| {
            mid.split_once('-').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a.bytes().all(|c| c.is_ascii_digit())
                    && b.bytes().all(|c| c.is_ascii_digit())
            })
        });
        if ours && shaped {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Removes the segment at `path` and its lock file, unless a writer holds it.
///
/// Removing the files by hand while a writer runs would let a second writer start beside it;
/// this takes the writer lock first, so it cannot happen. Readers that still map the segment
/// keep their view until they re-open. A missing segment is not an error.
pub fn remove_segment(path: &SegmentPath) -> Result<(), CreateError> {
    let path = path.path();
    let lock = take_lock(path)?;
    remove_leftovers(path);
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove", path)(e)),
    }
    match fs::remove_file(wake::wake_path(path)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove", &wake::wake_path(path))(e)),
    }
    // Unlinked while held, so that no writer can lock it between our check and the removal.
    fs::remove_file(lock.path()).map_err(io_err("remove", lock.path()))?;
    Ok(())
}

/// A temporary name beside `path`, unique to this process and call, so that concurrent
/// creators (other processes, or threads of this one) never share one.
fn tmp_path(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{}-{n}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Reads one header word with a plain file read (no mapping), if the file is long enough.
fn peek(file: &File, off: usize) -> Option<u64> {
    let mut buf = [0u8; 8];
    files::read_at(file, &mut buf, off as u64).ok()?;
    Some(u64::from_le_bytes(buf))
}

/// Builds a complete segment in the temporary file beside `path`, locked, with the version word
/// stored last.
fn build(
    path: &Path,
    layout: &Layout,
    p: &Placement,
    options: &WriterOptions,
    generation: u64,
) -> Result<(File, MappingMut, PathBuf), CreateError> {
    let tmp = tmp_path(path);
    let _ = fs::remove_file(&tmp); // a leftover of a crashed start of a process with our pid
    let file = files::create_new(&tmp, options.mode).map_err(io_err("create", &tmp))?;
    let fail = |e: CreateError| {
        let _ = fs::remove_file(&tmp);
        e
    };
    // The umask may have cleared bits of `mode`; set them exactly, before any data is written.
    files::set_mode(&file, options.mode).map_err(|e| fail(io_err("set the mode of", &tmp)(e)))?;
    file.set_len(p.total_size as u64)
        .map_err(|e| fail(io_err("size", &tmp)(e)))?;
    // tmpfs allocates pages on first touch; a full /dev/shm (Docker's default is 64 MB) would
    // then kill the writer with SIGBUS mid-run. Reserve them now and fail with a clear error.
    files::reserve(&file, p.total_size).map_err(|source| {
        fail(CreateError::NoSpace {
            path: path.to_owned(),
            bytes: p.total_size as u64,
            source,
        })
    })?;
    let map =
        MappingMut::read_write(&file, p.total_size).map_err(|e| fail(io_err("map", &tmp)(e)))?;
    let mem = map.mem();
    let now = now_ns();
    let me = process::this_process();
    let h = |off, v| mem.store(off, v, Ordering::Relaxed);
    for (i, name) in layout.symbols().enumerate() {
        let at = p.symbols_offset + i * layout::SYMBOL_ENTRY_SIZE;
        for (k, w) in layout::name_words(name).into_iter().enumerate() {
            h(at + sym::NAME + 8 * k, w);
        }
    }
    for (i, (r, &off)) in layout.rings().iter().zip(&p.ring_offsets).enumerate() {
        let at = p.directory_offset + i * layout::DIR_ENTRY_SIZE;
        h(at + layout::dir::SYMBOL_INDEX, u64::from(r.symbol_index));
        h(
            at + layout::dir::TIMEFRAME,
            u64::from(r.timeframe.mt5_code()),
        );
        h(at + layout::dir::CAPACITY, u64::from(r.capacity));
        h(at + layout::dir::RING_OFFSET, off as u64);
    }
    // The header last, its version word last of all (see `Header::store`): the file only
    // gets its public name after this, so in practice no reader ever finds version 0.
    Header {
        magic: MAGIC,
        version: LAYOUT_VERSION,
        layout_hash: p.hash,
        total_size: p.total_size as u64,
        header_size: HEADER_SIZE as u64,
        symbol_count: layout.symbols().len() as u64,
        ring_count: layout.rings().len() as u64,
        symbols_offset: p.symbols_offset as u64,
        directory_offset: p.directory_offset as u64,
        created_ns: now,
        generation,
        writer_pid: u64::from(std::process::id()),
        writer_start_ns: now,
        heartbeat_ns: now,
        writer_state: WriterState::Initializing as u64,
        feed_state: FeedState::Starting as u64,
        writer_pidns: me.pidns,
        writer_start_ticks: me.start_ticks,
        tick_depth: u64::from(layout.tick_depth()),
        terminal_offset: p.terminal_offset as u64,
        infos_offset: p.infos_offset as u64,
        ticks_offset: p.ticks_offset as u64,
        ..Header::default()
    }
    .store(mem);
    Ok((file, map, tmp))
}
