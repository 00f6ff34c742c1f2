//! `mtf-shim`: the HTTP API over a candle segment. See `http_shim`.

fn main() -> std::process::ExitCode {
    http_shim::cli::main()
}
