//! The parts of requests more than one endpoint family takes: the symbol and timeframe pairs
//! of a batch or a stream, and the errors for a bad symbol or timeframe. Each family's own
//! request type is in its file (`candles.rs`, `stream.rs`, `ticks.rs`), parsed before its
//! handler runs (after mini-redis's `Command::from_frame`): the type names the query
//! parameters it knows, and every check that needs no segment is made there, once.

use serde_json::json;
use shm_core::{validate_symbol, SymbolError, Timeframe, UnknownTimeframe};

use super::json::{error, ErrorCode};
use crate::message::Response;

/// Most (symbol, timeframe) pairs in one batch request or stream, after duplicates are
/// dropped.
pub const MAX_BATCH_PAIRS: usize = 100;

/// Symbols and timeframes of a batch or a stream, validated: both given, at most
/// [`MAX_BATCH_PAIRS`] pairs once duplicates are dropped (the first kept), every symbol well
/// formed and every timeframe known.
#[derive(Debug)]
pub(super) struct PairsRequest {
    pub symbols: Vec<String>,
    pub timeframes: Vec<Timeframe>,
}

impl PairsRequest {
    /// Validates the lists given.
    pub fn parse(symbols: Vec<String>, timeframes: Vec<String>) -> Result<PairsRequest, Response> {
        // Duplicates are dropped: `symbols=A,A,A...` must not multiply the work.
        let dedup = |mut v: Vec<String>| {
            let mut seen = std::collections::HashSet::new();
            v.retain(|s| seen.insert(s.clone()));
            v
        };
        let (symbols, tfs) = (dedup(symbols), dedup(timeframes));
        if symbols.is_empty() || tfs.is_empty() {
            return Err(error(
                ErrorCode::InvalidParameter,
                "symbols and timeframes are required, e.g. ?symbols=BTCUSDc,XAUUSDc&timeframes=M1,M5",
                json!({}),
            ));
        }
        if symbols.len() * tfs.len() > MAX_BATCH_PAIRS {
            return Err(error(
                ErrorCode::InvalidParameter,
                format!("at most {MAX_BATCH_PAIRS} symbol and timeframe pairs per request"),
                json!({}),
            ));
        }
        if let Some(bad) = symbols.iter().find(|s| validate_symbol(s).is_err()) {
            return Err(bad_symbol(bad.chars().take(64).collect()));
        }
        let timeframes = tfs
            .iter()
            .map(|t| t.parse::<Timeframe>().map_err(|_| bad_timeframe(t, None)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PairsRequest {
            symbols,
            timeframes,
        })
    }

    /// How many (symbol, timeframe) pairs.
    pub fn count(&self) -> usize {
        self.symbols.len() * self.timeframes.len()
    }

    /// Every pair, symbols first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Timeframe)> + '_ {
        self.symbols
            .iter()
            .flat_map(|s| self.timeframes.iter().map(move |&tf| (s.as_str(), tf)))
    }
}

/// `400 INVALID_SYMBOL`, worded by the naming rule's own error.
pub(super) fn bad_symbol(shown: String) -> Response {
    let e = SymbolError {
        symbol: shown.clone(),
    };
    error(
        ErrorCode::InvalidSymbol,
        e.to_string(),
        json!({"symbol": shown}),
    )
}

/// `400 INVALID_TIMEFRAME`, worded by the timeframe parser's own error.
pub(super) fn bad_timeframe(text: &str, symbol: Option<&str>) -> Response {
    let shown: String = text.chars().take(16).collect();
    let mut extra = json!({"timeframe": shown});
    if let Some(s) = symbol {
        extra["symbol"] = json!(s);
    }
    error(
        ErrorCode::InvalidTimeframe,
        UnknownTimeframe(shown).to_string(),
        extra,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_drop_duplicates_and_need_both_lists() {
        let p = PairsRequest::parse(
            vec!["A".into(), "A".into(), "B".into()],
            vec!["M1".into(), "H1".into()],
        )
        .unwrap();
        assert_eq!(p.count(), 4, "duplicates dropped");
        assert!(PairsRequest::parse(vec![], vec!["M1".into()]).is_err());
    }
}
