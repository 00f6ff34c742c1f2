//! `mtf-streamer`: see `streamer_bin` for everything it does.

fn main() -> std::process::ExitCode {
    streamer_bin::cli::main()
}
