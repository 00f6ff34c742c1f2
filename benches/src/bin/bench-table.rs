//! Prints the one summary table of a benchmark run (`./scripts/bench` calls it last): the
//! criterion medians from `target/criterion` and the rows the harnesses left in
//! `target/mtf-bench`. A figure that is missing says so rather than showing an old one
//! silently: each row names when it was measured.

use std::path::Path;

use mtf_benches::{human_ns, results_dir};
use serde_json::Value;

/// Criterion benchmarks shown, with their labels and targets.
const CRITERION: &[(&str, &str, &str)] = &[
    (
        "read_latest_m1/50",
        "shm-core: read the latest 50 M1 candles (criterion median)",
        "",
    ),
    (
        "tick_update_7_timeframes",
        "shm-core: one tick into 7 forming candles (criterion median)",
        "",
    ),
    (
        "aggregator/tick_into_7_timeframes",
        "streamer: aggregate and publish one tick (criterion median)",
        "",
    ),
    (
        "serialise_50_candles_dict",
        "shim: serialise 50 candles to JSON (criterion median)",
        "",
    ),
];

fn median_ns(criterion: &Path, id: &str) -> Option<f64> {
    let text = std::fs::read_to_string(criterion.join(id).join("new/estimates.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn main() {
    let results = results_dir();
    let criterion = results
        .parent()
        .unwrap_or(Path::new("target"))
        .join("criterion");
    println!("\n## Summary\n");
    println!("| measure | result | target | |");
    println!("|---|---|---|---|");
    for (id, label, target) in CRITERION {
        match median_ns(&criterion, id) {
            Some(ns) => println!("| {label} | {} | {target} | |", human_ns(ns)),
            None => println!(
                "| {label} | not measured (run `cargo bench -p mtf-benches`) | {target} | |"
            ),
        }
    }
    let mut stamps = Vec::new();
    for name in ["xproc", "load", "push", "nats"] {
        let path = results.join(format!("{name}.json"));
        let Some(doc) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        else {
            println!(
                "| {name} harness | not measured (run `cargo bench -p mtf-benches --bench {name}`) | | |"
            );
            continue;
        };
        stamps.push(format!(
            "{name} at {}",
            doc["when"].as_str().unwrap_or("an unknown time")
        ));
        for row in doc["rows"].as_array().into_iter().flatten() {
            let met = match row["met"].as_bool() {
                Some(true) => "met",
                Some(false) => "**not met**",
                None => "",
            };
            println!(
                "| {} | {} | {} | {met} |",
                row["measure"].as_str().unwrap_or("?"),
                row["result"].as_str().unwrap_or("?"),
                row["target"].as_str().unwrap_or("")
            );
        }
    }
    println!("\nHarness runs: {}.", stamps.join("; "));
}
