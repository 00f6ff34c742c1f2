//! Whether the process that wrote a segment still runs, judged from what any account may see.
//!
//! The writer stamps into the header its pid, the inode of its pid namespace
//! (`/proc/self/ns/pid`) and its start time in clock ticks since boot (field 22 of
//! `/proc/self/stat`). A reader in the same pid namespace can then tell "that process is gone"
//! from `/proc/PID/stat` alone, which every account may read, and a pid reused by another
//! program does not fool it, because that program started at another tick. A reader in
//! another pid namespace (a container) cannot judge pids at all and says so ([`PidState::Unknown`]).
//!
//! On Windows pids are machine-wide: the namespace field holds a fixed tag, and the start
//! time is the process's creation time (`GetProcessTimes`, in 100 ns units since 1601),
//! which a reader of any account may query with `PROCESS_QUERY_LIMITED_INFORMATION`.

/// What a process is known by across pid reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Identity {
    /// Inode of the pid namespace; 0 if unknown.
    pub(crate) pidns: u64,
    /// Start time in clock ticks since boot; 0 if unknown.
    pub(crate) start_ticks: u64,
}

/// What `/proc` says of a recorded writer process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PidState {
    /// The same process (same pid and start time) is running.
    Running,
    /// No such process, a zombie, or a different process under a reused pid.
    Dead,
    /// Cannot tell: another pid namespace, no `/proc`, or nothing recorded.
    Unknown,
}

#[cfg(target_os = "linux")]
mod imp {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::sync::OnceLock;

    fn own_pidns() -> u64 {
        static NS: OnceLock<u64> = OnceLock::new();
        *NS.get_or_init(|| {
            std::fs::metadata("/proc/self/ns/pid")
                .map(|m| m.ino())
                .unwrap_or(0)
        })
    }

    /// State and start time from the text of `/proc/PID/stat`. The command name (field 2) may
    /// hold spaces and parentheses, so fields are counted from its last `)`.
    fn parse_stat(text: &str) -> Option<(char, u64)> {
        let rest = &text[text.rfind(')')? + 1..];
        let mut fields = rest.split_ascii_whitespace();
        let state = fields.next()?.chars().next()?;
        // Field 3 is the state; field 22 (starttime) is 19 further on.
        let start = fields.nth(18)?.parse().ok()?;
        Some((state, start))
    }

    pub(crate) fn this_process() -> Identity {
        let start_ticks = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|t| parse_stat(&t))
            .map_or(0, |(_, start)| start);
        Identity {
            pidns: own_pidns(),
            start_ticks,
        }
    }

    pub(crate) fn check(pid: u32, who: Identity) -> PidState {
        if pid == 0 || who.pidns == 0 || who.start_ticks == 0 || who.pidns != own_pidns() {
            return PidState::Unknown;
        }
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(text) => match parse_stat(&text) {
                Some(('Z' | 'X', _)) => PidState::Dead,
                Some((_, start)) if start != who.start_ticks => PidState::Dead,
                Some(_) => PidState::Running,
                None => PidState::Unknown,
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => PidState::Dead,
            // ESRCH while reading: the process exited between open and read.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => PidState::Dead,
            Err(_) => PidState::Unknown,
        }
    }

    #[cfg(all(test, not(miri)))]
    mod tests {
        use super::*;

        #[test]
        fn stat_lines_with_odd_command_names_parse() {
            let line = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 \
                        1000 10 18446744073709551615";
            assert_eq!(parse_stat(line), Some(('S', 98765)));
            assert_eq!(parse_stat("42 (x) Z"), None);
        }

        #[test]
        fn another_pid_namespace_cannot_be_judged() {
            let me = this_process();
            let elsewhere = Identity {
                pidns: me.pidns + 1,
                ..me
            };
            assert_eq!(check(std::process::id(), elsewhere), PidState::Unknown);
        }
    }
}

#[cfg(windows)]
mod imp {
    use super::*;
    use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
    use windows_sys::Win32::Foundation::{
        GetLastError, ERROR_INVALID_PARAMETER, FILETIME, HANDLE, STILL_ACTIVE,
    };
    use windows_sys::Win32::System::Threading::{
        GetCurrentProcess, GetExitCodeProcess, GetProcessTimes, OpenProcess,
        PROCESS_QUERY_LIMITED_INFORMATION,
    };

    /// Stands in for a pid namespace: "Windows, pids machine-wide" (the bytes `WINPIDS\0`).
    const WINDOWS_PIDS: u64 = u64::from_le_bytes(*b"WINPIDS\0");

    fn creation_time(process: HANDLE) -> Option<u64> {
        let zero = FILETIME {
            dwLowDateTime: 0,
            dwHighDateTime: 0,
        };
        let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
        // SAFETY: `process` is a valid process handle for the duration of the call (the
        // caller's), and the four out-pointers are to live FILETIMEs.
        let ok =
            unsafe { GetProcessTimes(process, &mut created, &mut exited, &mut kernel, &mut user) };
        (ok != 0)
            .then(|| u64::from(created.dwHighDateTime) << 32 | u64::from(created.dwLowDateTime))
    }

    pub(crate) fn this_process() -> Identity {
        // SAFETY: GetCurrentProcess returns a pseudo-handle that needs no closing and is
        // valid for the life of the process.
        let me = unsafe { GetCurrentProcess() };
        Identity {
            pidns: WINDOWS_PIDS,
            start_ticks: creation_time(me).unwrap_or(0),
        }
    }

    pub(crate) fn check(pid: u32, who: Identity) -> PidState {
        if pid == 0 || who.pidns != WINDOWS_PIDS || who.start_ticks == 0 {
            return PidState::Unknown;
        }
        // SAFETY: OpenProcess takes plain integers; it returns a new handle or null.
        let raw = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
        if raw.is_null() {
            // SAFETY: reads this thread's last error, set by the failed call just above.
            return match unsafe { GetLastError() } {
                ERROR_INVALID_PARAMETER => PidState::Dead, // no process has that pid
                _ => PidState::Unknown,                    // e.g. access denied
            };
        }
        // SAFETY: `raw` is a handle just opened for us and owned by nobody else; the
        // OwnedHandle closes it once.
        let handle = unsafe { OwnedHandle::from_raw_handle(raw) };
        let h = handle.as_raw_handle();
        match creation_time(h) {
            Some(t) if t != who.start_ticks => return PidState::Dead, // a reused pid
            Some(_) => {}
            None => return PidState::Unknown,
        }
        let mut code = 0u32;
        // SAFETY: `h` is open (owned by `handle`, alive until the end of this function), and
        // `code` is a live u32.
        let ok = unsafe { GetExitCodeProcess(h, &mut code) };
        match (ok != 0, code == STILL_ACTIVE as u32) {
            (true, true) => PidState::Running,
            // Exited, though someone still holds a handle to it.
            (true, false) => PidState::Dead,
            (false, _) => PidState::Unknown,
        }
    }
}

#[cfg(not(any(target_os = "linux", windows)))]
mod imp {
    use super::*;

    pub(crate) fn this_process() -> Identity {
        Identity::default()
    }

    pub(crate) fn check(_pid: u32, _who: Identity) -> PidState {
        PidState::Unknown
    }
}

pub(crate) use imp::{check, this_process};

#[cfg(all(test, any(target_os = "linux", windows), not(miri)))]
mod tests {
    use super::*;

    #[test]
    fn this_process_runs_and_a_reused_pid_does_not_fool_the_check() {
        let me = this_process();
        assert_ne!(me.start_ticks, 0);
        assert_eq!(check(std::process::id(), me), PidState::Running);
        let other = Identity {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert_eq!(check(std::process::id(), other), PidState::Dead);
        // A pid far above any in use.
        assert_eq!(check(u32::MAX - 7, me), PidState::Dead);
    }
}
