//! `mtf-monitor`: see `monitor_bin` for everything it does.

fn main() -> std::process::ExitCode {
    monitor_bin::cli::main()
}
