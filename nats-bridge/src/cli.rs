//! The command line of `mtf-mirror`.

use std::process::ExitCode;

use clap::Parser;

use crate::mirror::{self, MirrorConfig};

/// Rebuilds another host's candle segment here, from the changes its streamer publishes to
/// NATS (mtf-streamer --nats). Local readers then read it as if the streamer ran here.
#[derive(Debug, Parser)]
#[command(name = "mtf-mirror", version)]
pub struct Cli {
    /// The NATS server, e.g. nats://10.0.0.5:4222 (tls:// for TLS).
    #[arg(long, env = "MTF_NATS")]
    nats: String,
    #[command(flatten)]
    auth: crate::NatsAuth,
    /// The id this mirror asks the origin under: its requests name it and its replies come to
    /// the inbox `_INBOX.<ID>`, so a secured server can keep each mirror account to its own
    /// (docs/NATS.md). 1 to 64 ASCII letters, digits, '-' and '_'.
    #[arg(long, value_name = "ID", value_parser = crate::subjects::MirrorId::new)]
    nats_mirror_id: Option<crate::subjects::MirrorId>,
    /// The origin's segment name, as its streamer publishes it.
    #[arg(long, default_value = shm_core::DEFAULT_SEGMENT_NAME)]
    source_segment: String,
    #[command(flatten)]
    segment: mtf_cli::SegmentArgs,
    /// The most rings of an origin's layout this mirror builds.
    #[arg(long, default_value_t = crate::mirror::Budget::default().rings)]
    max_rings: usize,
    /// The largest segment this mirror builds, in MiB.
    #[arg(long, default_value_t = crate::mirror::Budget::default().bytes >> 20)]
    max_segment_mb: usize,
    /// Directory of the mirror's own history store, where every bar and tick it mirrors is
    /// kept on disk (default: the streamer's rule for the local segment: beside a segment
    /// given by path, else ~/.local/share/mtf-candles/NAME, or MTF_HISTORY_DIR).
    #[arg(long, value_name = "DIR", conflicts_with = "no_history")]
    history_dir: Option<std::path::PathBuf>,
    /// Keep no history store: readers get what the rings hold.
    #[arg(long)]
    no_history: bool,
}

/// The whole program: parse arguments, mirror until SIGINT or SIGTERM, return the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let segment = match cli.segment.path() {
        Ok(s) => s,
        Err(e) => return mtf_cli::report("mtf-mirror", &e, mtf_cli::EXIT_CONFIG),
    };
    let nats = match crate::NatsSettings::new(&cli.nats, &cli.auth) {
        Ok(n) => n,
        Err(e) => return mtf_cli::report("mtf-mirror", &e, mtf_cli::EXIT_CONFIG),
    };
    // The handlers first: whoever reads the banner may signal at once.
    let stop = mtf_cli::stop_flag();
    mtf_cli::say(format_args!(
        "mtf-mirror: mirroring {} from {} into {segment}",
        cli.source_segment,
        nats.shown()
    ));
    let config = MirrorConfig {
        nats,
        source: cli.source_segment,
        segment,
        options: Default::default(),
        budget: crate::mirror::Budget {
            rings: cli.max_rings,
            bytes: cli.max_segment_mb.saturating_mul(1 << 20),
        },
        id: cli.nats_mirror_id,
        history: match (cli.history_dir, cli.no_history) {
            (_, true) => shm_core::history::HistoryPlace::Off,
            (Some(dir), false) => shm_core::history::HistoryPlace::Dir(dir),
            (None, false) => shm_core::history::HistoryPlace::Default,
        },
    };
    match mirror::run(config, &stop) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => mtf_cli::report("mtf-mirror", &e, mtf_cli::EXIT_FAILURE),
    }
}
