//! The command line of `mtf-shim`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::{Shim, ShimConfig};
use clap::Parser;

/// Serves the /streamer/* JSON API and /metrics from a candle segment, as a reader.
#[derive(Debug, Parser)]
#[command(name = "mtf-shim", version)]
pub struct Cli {
    #[command(flatten)]
    segment: mtf_cli::SegmentArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    bind: SocketAddr,
    /// Allow a non-loopback --bind. Set a token too (refused without one).
    #[arg(long)]
    allow_remote: bool,
    /// Serve a non-loopback --bind without a token, on a network you trust.
    #[arg(long, requires = "allow_remote")]
    allow_remote_without_token: bool,
    /// Require "Authorization: Bearer TOKEN" on every request.
    #[arg(long, env = "MTF_SHIM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Largest accepted `limit`; each ring caps it further at its capacity plus the forming
    /// candle.
    #[arg(long, default_value_t = 10_000)]
    max_limit: usize,
    /// Most connections served at once; more get 503 at once.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Most push streams (/streamer/stream and /streamer/ws) at once; more get 503
    /// TOO_MANY_STREAMS. Each also counts as a connection.
    #[arg(long, default_value_t = crate::server::DEFAULT_MAX_STREAMS)]
    max_streams: usize,
    /// A host name to serve without a token, besides IP addresses and localhost (the name
    /// your browser uses for this machine); repeat for more. Any other name in `Host` gets
    /// 421, so that no other site's page can reach the API by DNS rebinding.
    #[arg(long, value_name = "NAME")]
    allowed_host: Vec<String>,
}

/// The whole program: parse arguments, serve until SIGINT or SIGTERM, return the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let segment = match cli.segment.path() {
        Ok(s) => s,
        Err(e) => return mtf_cli::report("mtf-shim", &e, mtf_cli::EXIT_CONFIG),
    };
    let mut config = ShimConfig {
        segment: segment.clone(),
        bind: cli.bind,
        allow_remote: cli.allow_remote,
        token: cli.token,
        max_limit: cli.max_limit,
        allowed_hosts: cli.allowed_host,
        allow_remote_without_token: cli.allow_remote_without_token,
        ..ShimConfig::default()
    };
    config.limits.max_connections = cli.max_connections.max(1);
    config.limits.max_streams = cli.max_streams;
    if config.allow_remote && config.token.is_none() && !config.bind.ip().is_loopback() {
        eprintln!(
            "mtf-shim: warning: serving {} to other hosts without a token",
            config.bind
        );
    }
    let shim = match Shim::start(config) {
        Ok(s) => s,
        Err(e) => {
            // A refused configuration is 2, as for bad flags; a port that cannot be had is 1.
            let code = match e {
                crate::StartError::Bind(..) => mtf_cli::EXIT_FAILURE,
                _ => mtf_cli::EXIT_CONFIG,
            };
            return mtf_cli::report("mtf-shim", &e, code);
        }
    };
    // The handlers first: whoever reads the banner may signal at once.
    let stop = mtf_cli::stop_flag();
    println!(
        "mtf-shim: serving segment {segment} on http://{}/streamer/status",
        shim.local_addr()
    );
    // A segment that is there but refused (another account's, say) is said once, with why;
    // the API answers as if there were none until a segment it can trust takes the name.
    match shm_core::Reader::open(&segment) {
        Err(e @ shm_core::OpenError::Untrusted { .. }) | Err(e @ shm_core::OpenError::Trust(_)) => {
            eprintln!("mtf-shim: warning: {e}")
        }
        _ => {}
    }
    // Relaxed: the signal handler's flag carries no data with it.
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(shim);
    ExitCode::SUCCESS
}
