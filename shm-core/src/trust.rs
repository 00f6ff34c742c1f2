//! Which accounts a reader trusts to write the segments it reads.
//!
//! `/dev/shm` is one directory for every account, and its names go to whoever comes first. An
//! account that creates `/dev/shm/mtf-candles` before the streamer, and keeps a fake writer
//! heartbeating in it, would have every reader serve its candles as live. So a reader serves
//! a segment only if the segment's owner is an account it trusts: by default its own and
//! root's. Any other account must be named, with one name everywhere:
//!
//! - the environment variable `MTF_TRUST` (read by every reader in the process);
//! - the `--trust` flag of every binary ([`set_process_trust`], called by the CLI plumbing);
//! - the `trust=` argument of the Python package's `initialize`.
//!
//! Each is a comma-separated list of account names or numeric uids (`MTF_TRUST=mt5,1001`).
//! The check is made on the file opened, not the name (`fstat`), and the writer's lock file
//! must have the same owner to count as the writer's. On Windows the segment directory is the
//! user's own (`%LOCALAPPDATA%`, by its ACL), so there is nothing to check file by file, and
//! names cannot be given.

use std::fmt;
use std::sync::RwLock;

/// The environment variable that names further trusted accounts.
pub const TRUST_ENV: &str = "MTF_TRUST";

/// Most accounts one list may name.
const MAX_ACCOUNTS: usize = 64;

/// The accounts a reader trusts (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    /// Always this process's effective uid and root (0) first; then the named ones.
    uids: Vec<u32>,
}

/// A trust list that names no account this system has, or is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustError {
    /// An entry is neither a uid nor a known account name.
    UnknownAccount {
        /// The entry.
        entry: String,
        /// Where the list came from (`MTF_TRUST`, `--trust`, ...).
        from: &'static str,
    },
    /// An empty entry (two commas, a trailing comma).
    Empty {
        /// Where the list came from.
        from: &'static str,
    },
    /// More than 64 entries.
    TooMany {
        /// How many.
        found: usize,
        /// Where the list came from.
        from: &'static str,
    },
}

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustError::UnknownAccount { entry, from } => write!(
                f,
                "{from}: {entry:?} is neither a uid nor an account on this system"
            ),
            TrustError::Empty { from } => {
                write!(f, "{from}: an empty entry (a list is NAME[,NAME...])")
            }
            TrustError::TooMany { found, from } => {
                write!(f, "{from}: {found} accounts, at most {MAX_ACCOUNTS}")
            }
        }
    }
}

impl std::error::Error for TrustError {}

/// What `--trust` added for this process (see [`set_process_trust`]).
static PROCESS_TRUST: RwLock<Vec<u32>> = RwLock::new(Vec::new());

/// Adds the accounts of `trust` to those every reader of this process trusts (the `--trust`
/// flag). `MTF_TRUST` is read besides.
pub fn set_process_trust(trust: &Trust) {
    let mut added = PROCESS_TRUST.write().unwrap_or_else(|e| e.into_inner());
    for &uid in &trust.uids {
        if !added.contains(&uid) {
            added.push(uid);
        }
    }
}

impl Default for Trust {
    /// This process's own account and root.
    fn default() -> Trust {
        let me = crate::files::euid();
        let mut uids = vec![me];
        if me != 0 {
            uids.push(0);
        }
        Trust { uids }
    }
}

impl Trust {
    /// The default ([`Trust::default`]) plus the accounts `list` names (comma-separated
    /// names or uids); `from` says where the list came from, for errors.
    pub fn parse(list: &str, from: &'static str) -> Result<Trust, TrustError> {
        let mut trust = Trust::default();
        if list.trim().is_empty() {
            return Ok(trust);
        }
        let entries: Vec<&str> = list.split(',').map(str::trim).collect();
        if entries.len() > MAX_ACCOUNTS {
            return Err(TrustError::TooMany {
                found: entries.len(),
                from,
            });
        }
        for entry in entries {
            if entry.is_empty() {
                return Err(TrustError::Empty { from });
            }
            let uid = match entry.parse::<u32>() {
                Ok(uid) => uid,
                Err(_) => uid_of(entry).ok_or_else(|| TrustError::UnknownAccount {
                    entry: entry.to_owned(),
                    from,
                })?,
            };
            trust.add(uid);
        }
        Ok(trust)
    }

    /// What a reader of this process trusts when it is given nothing else: the default, the
    /// accounts `--trust` added ([`set_process_trust`]) and those `MTF_TRUST` names.
    pub fn for_process() -> Result<Trust, TrustError> {
        let mut trust = match std::env::var(TRUST_ENV) {
            Ok(list) => Trust::parse(&list, TRUST_ENV)?,
            Err(_) => Trust::default(),
        };
        for &uid in PROCESS_TRUST
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            trust.add(uid);
        }
        Ok(trust)
    }

    /// Trusts `uid` as well.
    pub fn add(&mut self, uid: u32) {
        if !self.uids.contains(&uid) {
            self.uids.push(uid);
        }
    }

    /// Whether a file owned by `uid` may be read.
    pub fn allows(&self, uid: u32) -> bool {
        self.uids.contains(&uid)
    }

    /// The trusted uids, this process's own first.
    pub fn uids(&self) -> &[u32] {
        &self.uids
    }
}

/// The uid of the account called `name`, from the system's user database.
#[cfg(unix)]
fn uid_of(name: &str) -> Option<u32> {
    let c_name = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: `passwd` is a plain C struct of integers and pointers, for which all-zero is a
    // valid value; getpwnam_r fills it.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call: `c_name` is NUL-terminated, `pwd` and
    // `found` are ours, and `buf` is writable for `buf.len()` bytes; getpwnam_r writes only
    // there and returns the strings inside `buf`, which we do not read.
    let rc = unsafe {
        libc::getpwnam_r(
            c_name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast::<libc::c_char>(),
            buf.len(),
            &mut found,
        )
    };
    (rc == 0 && !found.is_null()).then_some(pwd.pw_uid)
}

/// The name of the account `uid`, for messages.
#[cfg(unix)]
pub(crate) fn name_of(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: as in `uid_of`.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: as in `uid_of`; on success `pw_name` points to a NUL-terminated string inside
    // `buf`, which lives until the end of this function.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast::<libc::c_char>(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: `pw_name` is non-null and NUL-terminated inside `buf` (see above).
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// Account names cannot be looked up on Windows (see the module docs): uids only.
#[cfg(not(unix))]
fn uid_of(_name: &str) -> Option<u32> {
    None
}

/// See the Unix version.
#[cfg(not(unix))]
pub(crate) fn name_of(_uid: u32) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_this_account_and_root_and_lists_add_names_and_uids() {
        let me = crate::files::euid();
        let t = Trust::default();
        assert!(t.allows(me) && t.allows(0));
        assert!(!t.allows(4_000_000));
        let t = Trust::parse(" 4000000 , 4000001", "test").unwrap();
        assert!(t.allows(4_000_000) && t.allows(4_000_001) && t.allows(me));
        assert_eq!(Trust::parse("", "test").unwrap(), Trust::default());
        assert_eq!(
            Trust::parse("1,,2", "test"),
            Err(TrustError::Empty { from: "test" })
        );
        let long = vec!["1"; 65].join(",");
        assert!(matches!(
            Trust::parse(&long, "test"),
            Err(TrustError::TooMany { found: 65, .. })
        ));
    }

    #[cfg(all(unix, not(miri)))]
    #[test]
    fn names_resolve_through_the_user_database() {
        // root is in every user database.
        assert_eq!(uid_of("root"), Some(0));
        assert_eq!(name_of(0).as_deref(), Some("root"));
        assert!(Trust::parse("root", "test").unwrap().allows(0));
        assert!(matches!(
            Trust::parse("no-such-account-here", "MTF_TRUST"),
            Err(TrustError::UnknownAccount { .. })
        ));
    }
}
