//! The command line of `mtf-streamer`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use mtf_cli::SegmentArgs;
use serde_json::Value;

use crate::config::{Config, ConfigError, SourceKind};
use crate::settings::{self, Flag, Shape, SETTINGS};

/// Multi-timeframe candles from a feed into shared memory, for every process on the host.
///
/// With no arguments: a synthetic feed for BTCUSDc and XAUUSDc on M1..D1, published to the
/// segment /dev/shm/mtf-candles, with the HTTP API on 127.0.0.1:8000.
//
// The flags of the run are not declared here: each comes from its setting's one declaration
// in `settings.rs` (key, flag, help, parser), added to this command by `command()`.
#[derive(Debug, Parser)]
#[command(name = "mtf-streamer", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// JSON config file; the original multi_tf_streamer_config.json is accepted as it is.
    /// Flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    segment: SegmentArgs,
    #[command(flatten)]
    nats_auth: nats_bridge::NatsAuth,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the segment: writer liveness, generation, feed, counters, and every ring.
    Inspect {
        #[command(flatten)]
        segment: SegmentArgs,
    },
    /// Delete a segment and its lock file. Refused while a writer runs on it.
    Remove {
        #[command(flatten)]
        segment: SegmentArgs,
    },
    /// Print the candles of one ring, or a symbol's ticks (`tail SYMBOL ticks`), as they
    /// change, until Ctrl-C.
    Tail {
        /// Symbol, matched exactly (e.g. BTCUSDc).
        symbol: String,
        /// A timeframe (M1 to MN1, any case), or `ticks` for every tick as it arrives.
        timeframe: crate::ops::TailWhat,
        #[command(flatten)]
        segment: SegmentArgs,
    },
}

/// The command line: [`Cli`] and every setting's flag (`settings::SETTINGS`).
pub fn command() -> clap::Command {
    let mut cmd = Cli::command();
    for setting in SETTINGS {
        let Some(flag) = setting.flag.filter(|f| f.shape != Shape::Shared) else {
            continue;
        };
        let mut arg = Arg::new(setting.key)
            .long(flag.name.trim_start_matches("--"))
            .help(flag.help);
        arg = match flag.shape {
            Shape::One => arg.value_name(flag.value_name),
            Shape::Signed => arg.value_name(flag.value_name).allow_hyphen_values(true),
            Shape::List => arg
                .value_name(flag.value_name)
                .value_delimiter(',')
                .action(ArgAction::Append),
            Shape::Many => arg
                .value_name(flag.value_name)
                .num_args(1..)
                .action(ArgAction::Append),
            Shape::Pairs => arg.value_name(flag.value_name).action(ArgAction::Append),
            Shape::Switch | Shape::Shared => arg.action(ArgAction::SetTrue),
        };
        if let Some(needed) = flag.requires {
            arg = arg.requires(needed);
        }
        cmd = cmd.arg(arg);
        if let Some((off, help)) = flag.off {
            cmd = cmd.arg(
                Arg::new(off)
                    .long(off.trim_start_matches("--"))
                    .help(help)
                    .action(ArgAction::SetTrue)
                    .conflicts_with(setting.key),
            );
        }
    }
    cmd
}

/// A path as the text its setting takes (a path that is not UTF-8 is refused, not mangled).
fn utf8(flag: &str, p: &std::path::Path) -> Result<Value, ConfigError> {
    p.to_str()
        .map(|s| Value::String(s.to_owned()))
        .ok_or_else(|| ConfigError {
            field: flag.into(),
            message: format!("{} is not UTF-8", p.display()),
        })
}

/// A path flag's text, if given.
fn path(flag: &str, p: &Option<PathBuf>) -> Result<Option<Value>, ConfigError> {
    p.as_deref().map(|p| utf8(flag, p)).transpose()
}

/// The value a setting's own flag gave, if it was given.
fn flag_value(
    matches: &ArgMatches,
    key: &'static str,
    flag: &Flag,
) -> Result<Option<Value>, ConfigError> {
    let texts = || -> Vec<String> {
        matches
            .get_many::<String>(key)
            .map(|v| v.cloned().collect())
            .unwrap_or_default()
    };
    Ok(match flag.shape {
        Shape::Shared => None,
        Shape::One | Shape::Signed => matches.get_one::<String>(key).cloned().map(Value::String),
        Shape::List | Shape::Many => matches
            .contains_id(key)
            .then(|| Value::Array(texts().into_iter().map(Value::String).collect())),
        Shape::Pairs => match texts() {
            items if items.is_empty() => None,
            items => Some(settings::buffer_flags(&items)?),
        },
        Shape::Switch => matches.get_flag(key).then_some(Value::Bool(true)),
    })
}

impl Cli {
    /// Each flag given, as (setting, value), in the order they apply: the settings' own in
    /// their declaration order (`--no-http` after `--http`), then the shared groups'
    /// (`--segment-path` after `--segment`).
    fn given(&self, matches: &ArgMatches) -> Result<Vec<(&'static str, Value)>, ConfigError> {
        let mut out = Vec::new();
        for setting in SETTINGS {
            let Some(flag) = &setting.flag else { continue };
            if let Some(v) = flag_value(matches, setting.key, flag)? {
                out.push((setting.key, v));
            }
            if flag.off.is_some_and(|(off, _)| matches.get_flag(off)) {
                out.push((setting.key, Value::Null));
            }
        }
        let (seg, a) = (&self.segment, &self.nats_auth);
        let shared = [
            ("segment", seg.segment.clone().map(Value::String)),
            ("segment_path", path("--segment-path", &seg.segment_path)?),
            ("nats_user", a.nats_user.clone().map(Value::String)),
            ("nats_creds", path("--nats-creds", &a.nats_creds)?),
            ("nats_nkey", path("--nats-nkey", &a.nats_nkey)?),
            (
                "nats_password_file",
                path("--nats-password-file", &a.nats_password_file)?,
            ),
            (
                "nats_token_file",
                path("--nats-token-file", &a.nats_token_file)?,
            ),
            ("nats_ca", path("--nats-ca", &a.nats_ca)?),
            ("nats_cert", path("--nats-cert", &a.nats_cert)?),
            ("nats_key", path("--nats-key", &a.nats_key)?),
        ];
        out.extend(shared.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
        Ok(out)
    }

    /// Defaults, then the config file, then these flags, each through its setting's one
    /// parser (`settings.rs`). Returns the warnings to print.
    fn config(&self, matches: &ArgMatches) -> Result<(Config, Vec<String>), ConfigError> {
        let mut c = Config::default();
        let warnings = match &self.config {
            Some(path) => c.apply_file(path)?,
            None => Vec::new(),
        };
        for (key, value) in self.given(matches)? {
            let setting = settings::by_key(key).ok_or_else(|| ConfigError {
                field: key.into(),
                message: "no such setting (a bug: every flag names one)".into(),
            })?;
            setting.apply(&mut c, &value, true)?;
        }
        if matches.contains_id("csv") && !matches.contains_id("source") {
            c.source = SourceKind::Csv;
        }
        if let Some(trust) = &self.segment.trust {
            shm_core::set_process_trust(trust);
        }
        Ok((c, warnings))
    }
}

/// Prints `error` and its causes once; exit status 1.
fn report(error: &(dyn std::error::Error + 'static)) -> ExitCode {
    mtf_cli::report("mtf-streamer", error, mtf_cli::EXIT_FAILURE)
}

/// A bad flag or configuration: exit status 2, as in every binary.
fn report_config(error: &(dyn std::error::Error + 'static)) -> ExitCode {
    mtf_cli::report("mtf-streamer", error, mtf_cli::EXIT_CONFIG)
}

/// The whole program: parse arguments, run, and turn the outcome into an exit code.
pub fn main() -> ExitCode {
    let matches = command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match cli.command {
        Some(Command::Inspect { segment }) => {
            let path = match segment.path() {
                Ok(p) => p,
                Err(e) => return report_config(&e),
            };
            match crate::ops::inspect(&path) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => report(&e),
            }
        }
        Some(Command::Remove { segment }) => {
            let path = match segment.path() {
                Ok(p) => p,
                Err(e) => return report_config(&e),
            };
            match shm_core::remove_segment(&path) {
                Ok(()) => {
                    println!("removed {path} and its lock file");
                    ExitCode::SUCCESS
                }
                Err(e) => report(&e),
            }
        }
        Some(Command::Tail {
            symbol,
            timeframe,
            segment,
        }) => {
            let path = match segment.path() {
                Ok(p) => p,
                Err(e) => return report_config(&e),
            };
            let stop = mtf_cli::stop_flag();
            let mut stdout = std::io::stdout();
            let done = match timeframe {
                crate::ops::TailWhat::Candles(tf) => {
                    crate::ops::tail(&path, &symbol, tf, &stop, &mut stdout)
                }
                crate::ops::TailWhat::Ticks => {
                    crate::ops::tail_ticks(&path, &symbol, &stop, &mut stdout)
                }
            };
            match done {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => report(&e),
            }
        }
        None => {
            let (config, warnings) = match cli.config(&matches) {
                Ok(c) => c,
                Err(e) => return report_config(&e),
            };
            for w in warnings {
                eprintln!("warning: {w}");
            }
            let stop = mtf_cli::stop_flag();
            let mut stdout = std::io::stdout();
            match crate::run(&config, &stop, &mut stdout) {
                Ok(summary) => {
                    let _ = writeln!(
                        stdout,
                        "stopped: {} ticks, {} candles closed, {} rejected; segment left readable",
                        summary.ticks, summary.bars_closed, summary.rejected
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => report(&e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_built_from_the_settings_is_consistent() {
        // clap's own checks: unique names, valid requires and conflicts, and so on.
        command().debug_assert();
    }

    #[test]
    fn every_setting_with_its_own_flag_is_on_the_command_line_with_its_help() {
        let cmd = command();
        for setting in SETTINGS {
            let Some(flag) = setting.flag.filter(|f| f.shape != Shape::Shared) else {
                continue;
            };
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_long() == Some(flag.name.trim_start_matches("--")))
                .unwrap_or_else(|| panic!("{} is not on the command line", flag.name));
            assert!(arg.get_help().is_some(), "{} has no help", flag.name);
        }
    }

    #[test]
    fn flags_reach_their_settings_in_order() {
        let matches = command()
            .try_get_matches_from([
                "mtf-streamer",
                "--symbols",
                "EURUSD,GBPUSD",
                "--buffer",
                "M1=2000",
                "--no-http",
                "--server-offset",
                "-05:00",
                "--csv",
                "a.csv",
                "b.csv",
                "--segment",
                "x",
                "--segment-path",
                "/tmp/y",
            ])
            .unwrap();
        let cli = Cli::from_arg_matches(&matches).unwrap();
        let given = cli.given(&matches).unwrap();
        let keys: Vec<&str> = given.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "symbols",
                "buffer_sizes",
                "csv",
                "http",
                "server_time_offset",
                "segment",
                "segment_path"
            ]
        );
        let (config, _) = cli.config(&matches).unwrap();
        assert_eq!(
            config.source,
            SourceKind::Csv,
            "--csv implies the csv source"
        );
        assert_eq!(config.server_time_offset_s, -5 * 3600);
        assert_eq!(config.http, crate::config::HttpBind::Off);
        assert!(command()
            .try_get_matches_from(["mtf-streamer", "--http", "127.0.0.1:1", "--no-http"])
            .is_err());
        assert!(command()
            .try_get_matches_from(["mtf-streamer", "--nats-name", "desk"])
            .is_err());
    }
}
