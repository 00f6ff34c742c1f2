//! What the monitor prints: one line per symbol per cycle (text or NDJSON), source changes,
//! and the per-source counters.

use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use crate::chain::{Chain, Outcome};
use crate::conditions::Conditions;

/// The decimals a symbol's prices are quoted with (MT5's `digits`), read off its bars: the
/// fewest (at most 8) that write every open, high, low and close exactly.
pub fn digits(bars: &[crate::bar::Candle]) -> usize {
    let needed = |p: f64| {
        (0..=8)
            .find(|&d| {
                let scale = 10f64.powi(d);
                ((p * scale).round() / scale - p).abs() <= p.abs().max(1.0) * 1e-12
            })
            .unwrap_or(8) as usize
    };
    bars.iter()
        .flat_map(|b| [b.open, b.high, b.low, b.close])
        .map(needed)
        .max()
        .unwrap_or(2)
}

/// A price, or a value in price units (VWAP, σ, ATR), with the symbol's `digits`.
pub fn price(x: f64, digits: usize) -> String {
    format!("{x:.digits$}")
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

/// `HH:MM:SSZ` of a UTC epoch-second time.
fn clock(now_s: i64) -> String {
    let sod = now_s.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}Z", sod / 3600, sod % 3600 / 60, sod % 60)
}

/// The human line of one outcome.
pub fn text_line(o: &Outcome, now_s: i64) -> String {
    let mut line = format!("{} {:<10}", clock(now_s), o.symbol);
    let Some(s) = &o.served else {
        let why: Vec<String> = o.skipped.iter().map(|(k, s)| format!("{k} {s}")).collect();
        match &o.last_known {
            // Nothing live: the last candles a stopped segment keeps, clearly not live.
            Some(k) => {
                let last = k.bars.last().expect("last-known candles are never empty");
                let d = digits(&k.bars);
                let _ = write!(
                    line,
                    " STALE {} ({}): {} bars  close {}  bar opened {} s ago{}",
                    k.kind,
                    k.why,
                    k.bars.len(),
                    price(last.close, d),
                    k.age_s,
                    conditions_text(&k.bars, d)
                );
            }
            None => {
                let _ = write!(line, " NO SOURCE: {}", why.join("; "));
            }
        }
        return line;
    };
    let last = s.bars.last().expect("a served source has bars");
    let d = digits(&s.bars);
    // The age is that of the newest bar's open (it is forming, so its data is newer).
    let _ = write!(
        line,
        " {:<4} {:>6} µs {:>3} bars  close {}  bar opened {:>3} s ago",
        s.kind,
        s.latency.as_micros(),
        s.bars.len(),
        price(last.close, d),
        s.age_s
    );
    line.push_str(&conditions_text(&s.bars, d));
    line
}

/// ` | VWAP … | spread …` for `bars`, or nothing when there are too few.
fn conditions_text(bars: &[crate::bar::Candle], d: usize) -> String {
    let Some(c) = Conditions::compute(bars) else {
        return String::new();
    };
    let distance = c
        .distance_sigma
        .map_or_else(|| "-".to_owned(), |x| format!("{x:+.2}σ"));
    format!(
        " | VWAP {} σ {} dist {distance} | ATR1 {} ATR14 {} comp {} | vol {} ×{}{} | spread {}",
        c.vwap.map_or_else(|| "-".to_owned(), |v| price(v, d)),
        c.sigma.map_or_else(|| "-".to_owned(), |v| price(v, d)),
        price(c.atr1, d),
        price(c.atr14, d),
        opt(c.compression, 2),
        c.volume,
        opt(c.volume_ratio, 2),
        if c.volume_spike { " SPIKE" } else { "" },
        c.spread
    )
}

/// The NDJSON object of one outcome (`"type": "cycle"`).
pub fn json_line(o: &Outcome, now_s: i64) -> Value {
    let skipped: Map<String, Value> = o
        .skipped
        .iter()
        .map(|(k, s)| {
            (
                k.name().to_owned(),
                json!({"class": s.class(), "reason": s.to_string()}),
            )
        })
        .collect();
    let mut v = json!({
        "type": "cycle",
        "time": now_s,
        "symbol": o.symbol,
        "source": Value::Null,
        "skipped": skipped,
    });
    if let (None, Some(k)) = (&o.served, &o.last_known) {
        let last = k.bars.last().expect("last-known candles are never empty");
        v["stale"] = json!({
            "source": k.kind.name(),
            "reason": k.why,
            "count": k.bars.len(),
            "last_close": last.close,
            "last_time": crate::bar::utc_time(last, k.offset_s),
            "age_seconds": k.age_s,
        });
    }
    if let Some(s) = &o.served {
        let last = s.bars.last().expect("a served source has bars");
        v["source"] = json!(s.kind.name());
        v["fetch_us"] = json!(s.latency.as_micros() as u64);
        v["count"] = json!(s.bars.len());
        v["last_close"] = json!(last.close);
        v["last_time"] = json!(crate::bar::utc_time(last, s.offset_s));
        v["last_complete"] = json!(!last.forming);
        v["age_seconds"] = json!(s.age_s);
        v["server_time_offset_seconds"] = json!(s.offset_s);
        if let Some(g) = s.generation {
            v["generation"] = json!(g);
        }
        if let Some(c) = Conditions::compute(&s.bars) {
            v["conditions"] = json!({
                "vwap": c.vwap,
                "sigma": c.sigma,
                "distance_sigma": c.distance_sigma,
                "atr1": c.atr1,
                "atr14": c.atr14,
                "compression": c.compression,
                "volume": c.volume,
                "volume_mean": c.volume_mean,
                "volume_ratio": c.volume_ratio,
                "volume_spike": c.volume_spike,
                "spread": c.spread,
            });
        }
    }
    v
}

/// The counters as text lines.
pub fn stats_text(chain: &Chain, cycles: u64) -> String {
    let mut out = format!("stats after {cycles} cycles:");
    for (kind, c) in chain.counters() {
        if c.served == 0 && c.skipped.is_empty() {
            // Never reached (an earlier source always served) or not configured.
            let _ = write!(out, "\n  {kind:<4} not tried");
            continue;
        }
        let _ = write!(out, "\n  {kind:<4} served {:>6}", c.served);
        if let Some(mean) = c.latency_mean() {
            let _ = write!(
                out,
                " (mean {} µs, max {} µs)",
                mean.as_micros(),
                c.latency_max.as_micros()
            );
        }
        for (class, n) in &c.skipped {
            let _ = write!(out, ", {} {n}", class.replace('_', " "));
        }
    }
    let _ = write!(out, "\n  no source {}", chain.unserved());
    out
}

/// The counters as one NDJSON object (`"type": "stats"`).
pub fn stats_json(chain: &Chain, cycles: u64) -> Value {
    let sources: Map<String, Value> = chain
        .counters()
        .map(|(kind, c)| {
            let skipped: Map<String, Value> = c
                .skipped
                .iter()
                .map(|(class, n)| ((*class).to_owned(), json!(n)))
                .collect();
            (
                kind.name().to_owned(),
                json!({
                    "served": c.served,
                    "skipped": skipped,
                    "latency_mean_us": c.latency_mean().map(|d| d.as_micros() as u64),
                    "latency_max_us": c.latency_max.as_micros() as u64,
                }),
            )
        })
        .collect();
    json!({"type": "stats", "cycles": cycles, "sources": sources, "no_source": chain.unserved()})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_name_each_source_and_what_happened() {
        use crate::chain::{Chain, Policy};
        use crate::source::{BarSource, Origin, ShmSource, Unconfigured};
        let sources: Vec<Box<dyn BarSource>> = vec![
            Box::new(ShmSource::new(
                shm_core::SegmentPath::at("/nonexistent/mtf-segment"),
                None,
            )),
            Box::new(Unconfigured(Origin::Http)),
        ];
        let mut chain = Chain::new(sources, Policy::default());
        chain.poll("BTCUSDc", 0);
        chain.poll("BTCUSDc", 0);
        assert_eq!(
            stats_text(&chain, 2),
            "stats after 2 cycles:\n  shm  served      0, unavailable 2\n  http not tried\n  no source 2"
        );
        let v = stats_json(&chain, 2);
        assert_eq!(v["sources"]["shm"]["skipped"]["unavailable"], 2);
        assert_eq!(v["no_source"], 2);
    }

    #[test]
    fn every_price_of_a_line_has_the_symbols_digits() {
        let bar = |p: f64| crate::bar::Candle {
            time: 0,
            open: p,
            high: p,
            low: p,
            close: p,
            tick_volume: 1,
            spread: 0,
            real_volume: 0,
            forming: false,
            repaired: false,
        };
        // 4096.00 and 4096.37 are quoted with 2 digits: "4096.00", never "4096".
        assert_eq!(digits(&[bar(4096.0), bar(4096.37)]), 2);
        assert_eq!(digits(&[bar(1.08123), bar(1.1)]), 5);
        assert_eq!(price(4096.0, 2), "4096.00");
        assert_eq!(price(96.00929, 2), "96.01");
        assert_eq!(clock(86_400 + 3661), "01:01:01Z");
    }
}
