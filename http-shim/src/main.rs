//! `mtf-shim`: the HTTP API over a candle segment. See `http_shim`.

fn main() -> std::process::ExitCode {
    // One thread a connection: glibc's per-thread arenas would keep what each one freed.
    shm_core::cap_malloc_arenas(2);
    http_shim::cli::main()
}
