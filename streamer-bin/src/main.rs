//! `mtf-streamer`: see `streamer_bin` for everything it does.

fn main() -> std::process::ExitCode {
    // One thread a connection: glibc's per-thread arenas would keep what each one freed.
    shm_core::cap_malloc_arenas(2);
    streamer_bin::cli::main()
}
