//! Whether the process that wrote a segment still runs, judged from what any account may see.
//!
//! The writer stamps into the header its pid, the inode of its pid namespace
//! (`/proc/self/ns/pid`) and its start time in clock ticks since boot (field 22 of
//! `/proc/self/stat`). A reader in the same pid namespace can then tell "that process is gone"
//! from `/proc/PID/stat` alone, which every account may read, and a pid reused by another
//! program does not fool it, because that program started at another tick. A reader in
//! another pid namespace (a container) cannot judge pids at all and says so ([`PidState::Unknown`]).

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
        fn this_process_runs_and_a_reused_pid_does_not_fool_the_check() {
            let me = this_process();
            assert_ne!(me.start_ticks, 0);
            assert_eq!(check(std::process::id(), me), PidState::Running);
            let other = Identity {
                start_ticks: me.start_ticks + 1,
                ..me
            };
            assert_eq!(check(std::process::id(), other), PidState::Dead);
            assert_eq!(check(u32::MAX - 7, me), PidState::Dead);
            let elsewhere = Identity {
                pidns: me.pidns + 1,
                ..me
            };
            assert_eq!(check(std::process::id(), elsewhere), PidState::Unknown);
        }
    }
}

#[cfg(not(target_os = "linux"))]
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
