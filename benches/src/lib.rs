//! Benchmarks live in `benches/`; run them with `cargo bench -p mtf-benches`.
//! Figures and the machine they were taken on are in `docs/BENCHMARKS.md`.
