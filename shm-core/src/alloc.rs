//! The C allocator's arenas, for the servers built on this crate.
//!
//! `mtf-streamer` (with its built-in API) and `mtf-shim` serve each connection on a thread of
//! its own. glibc's malloc gives a thread that finds the arena it wanted locked an arena of its
//! own, up to 8 per core, and keeps each arena's freed memory for that arena: 1,000 streams
//! that did not read held 150 MB on a 2-core machine where the answers they were owed, all
//! paid from one 64 MiB budget, came to 64 MB (docs/DESIGN.md, "Bounded answers"). With two
//! arenas the same run peaked at 76 MB. The cost is contention on an arena's lock between
//! threads that allocate at once, which the budgeted, chunked writers make rare.
//!
//! This is the crate that holds the workspace's `unsafe` (the foreign calls it needs live
//! here, each with its reason), so the one call that sets this is here too.

/// Caps the C allocator at `arenas` arenas for this process; `true` if it was set. Call it
/// first thing in `main`, before any thread starts. glibc on Linux only: elsewhere (musl,
/// Windows, macOS) the allocator has no such arenas and this does nothing (`false`).
pub fn cap_malloc_arenas(arenas: u8) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt(3) takes two integers and touches only the allocator's own
        // settings; it has no pointer arguments and no precondition on the caller's memory.
        // glibc documents M_ARENA_MAX as settable at any time; calling it before threads start
        // (as documented above) means no arena is being created while it changes.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, libc::c_int::from(arenas)) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = arenas;
        false
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu", not(miri)))]
mod tests {
    #[test]
    fn glibc_takes_the_cap() {
        assert!(super::cap_malloc_arenas(2));
    }
}
