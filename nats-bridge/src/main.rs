//! `mtf-mirror`: see [`nats_bridge::cli`].

fn main() -> std::process::ExitCode {
    nats_bridge::cli::main()
}
