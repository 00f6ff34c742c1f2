//! The terminal's identity and the symbols' information (MT5's `symbol_info`), on a gateway
//! connection of their own.
//!
//! The tick stream must never pay for them (issue 40): a slow answer at the minute refresh
//! held the stream for 42 s, and an answer the client refuses (a NaN, a line over 64 KiB, a
//! string that is not Unicode) is a protocol error that dropped the connection the stream's
//! requests shared, and with it every tick. So the records are fetched with a [`Client`] of
//! their own, once at the start of a session (in the worker, so the records are there when
//! the feed goes live) and then each minute by a [`Refresher`] thread. Any failure of a fetch
//! is one refused record: counted (`rejected_symbol_info`), said once a session, and the
//! record held before stays. Its client backs off and reconnects alone, within its own
//! timeouts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mt5_gateway_client::{Client, Config, Error as GwError, Hello, InfoField};
use shm_core::Counter;

use super::Event;

/// How often the terminal's identity and the symbols' information are asked for again.
pub const INFO_REFRESH: Duration = Duration::from_secs(60);

/// How long one `symbol_info` answer may take (a few kilobytes): a gateway slower than that
/// costs the record, never the session's start by more than this per symbol.
pub const INFO_DEADLINE: Duration = Duration::from_secs(5);

/// MT5's information on `symbol` as the segment's record, or why it was refused.
pub(super) fn fetch(client: &mut Client, symbol: &str) -> Result<shm_core::SymbolInfo, String> {
    let fields = client.symbol_info(symbol).map_err(|e| match e {
        // MT5 has no information for it, or an older gateway lacks the operation.
        GwError::Mt5 { .. } | GwError::Gateway { .. } => e.to_string(),
        other => format!("the answer was lost: {other}"),
    })?;
    let mut info = shm_core::SymbolInfo::new(symbol);
    for (name, field) in &fields {
        let value = match field {
            InfoField::Bool(b) => shm_core::InfoValue::Bool(*b),
            InfoField::Int(n) => shm_core::InfoValue::Int(*n),
            InfoField::Float(x) => shm_core::InfoValue::Float(*x),
            InfoField::Str(s) => shm_core::InfoValue::Str(s),
        };
        match info.set(name, value) {
            // Fields MT5 may add later are left out.
            Ok(()) | Err(shm_core::InfoError::UnknownField { .. }) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(info)
}

/// The terminal and account of a `hello`, as the segment records them (`None` when the
/// gateway has no terminal, as a csv gateway has not).
pub(super) fn terminal(hello: &Hello) -> Option<shm_core::TerminalInfo> {
    let term = hello.terminal.as_ref()?;
    let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
    let account = hello.account.clone().unwrap_or_default();
    Some(shm_core::TerminalInfo {
        name: text(term, "name"),
        company: text(term, "company"),
        build: term["build"].as_i64().unwrap_or(0),
        connected: term["connected"].as_bool().unwrap_or(false),
        server: text(&account, "server"),
        login: account["login"].as_i64().unwrap_or(0),
    })
}

/// The symbols' records as last sent, and the connection that fetches them.
pub(super) struct Infos {
    pub(super) client: Client,
    /// `(index in the streamer's symbols, symbol)` of the symbols to keep.
    symbols: Vec<(usize, String)>,
    sent: Vec<Option<shm_core::SymbolInfo>>,
    addr: String,
    /// Whether a refusal was said this session (later ones are counted only).
    said: bool,
}

impl Infos {
    /// Records for `symbols` (index, name) of the streamer's `count` symbols.
    pub(super) fn new(config: &Config, symbols: Vec<(usize, String)>, count: usize) -> Infos {
        let mut config = config.clone();
        config.request_deadline = config.request_deadline.min(INFO_DEADLINE);
        config.read_timeout = config.read_timeout.min(INFO_DEADLINE);
        Infos {
            addr: config.addr.clone(),
            client: Client::new(config),
            symbols,
            sent: vec![None; count],
            said: false,
        }
    }

    /// Fetches every symbol's record, sending those that changed; `false` if the receiver is
    /// gone. A refusal is counted and the record held before stays.
    pub(super) fn refresh(&mut self, tx: &SyncSender<Event>, stop: &AtomicBool) -> bool {
        for k in 0..self.symbols.len() {
            // Relaxed: a stop flag.
            if stop.load(Ordering::Relaxed) {
                return true;
            }
            let (i, symbol) = self.symbols[k].clone();
            let sent = match fetch(&mut self.client, &symbol) {
                Ok(info) if self.sent[i].as_ref() == Some(&info) => true,
                Ok(info) => {
                    self.sent[i] = Some(info.clone());
                    tx.send(Event::SymbolInfo {
                        symbol: i,
                        info: Box::new(info),
                    })
                    .is_ok()
                }
                Err(why) => {
                    if !self.said {
                        self.said = true;
                        eprintln!(
                            "warning: MT5 gateway {}: {symbol}'s symbol information refused \
                             ({why}); the record held stays, and later refusals are counted \
                             (rejected_symbol_info)",
                            self.addr
                        );
                    }
                    tx.send(Event::Count(Counter::RejectedSymbolInfo, 1))
                        .is_ok()
                }
            };
            if !sent {
                return false;
            }
        }
        true
    }
}

/// Refreshes the records each [`INFO_REFRESH`] on its own thread and connection until
/// dropped (the session ended) or the source stops. Dropping never waits for the thread: a
/// call under way ends within its client's timeouts, and the thread with it.
pub(super) struct Refresher {
    done: Arc<AtomicBool>,
}

impl Refresher {
    /// Starts refreshing `infos`; `stop` is the source's own stop flag.
    pub(super) fn start(
        mut infos: Infos,
        tx: SyncSender<Event>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<Refresher> {
        let done = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&done);
        std::thread::Builder::new()
            .name("mt5-info".into())
            .spawn(move || {
                // Relaxed: stop flags.
                let over = || flag.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed);
                let mut next = Instant::now() + INFO_REFRESH;
                while !over() {
                    std::thread::sleep(Duration::from_millis(50));
                    if Instant::now() < next {
                        continue;
                    }
                    next = Instant::now() + INFO_REFRESH;
                    // A broker changes a property now and then (a swap, a trade mode); the
                    // terminal's identity is confirmed with it.
                    if let Ok(hello) = infos.client.hello() {
                        if let Some(t) = terminal(&hello) {
                            if tx.send(Event::Terminal(t)).is_err() {
                                return;
                            }
                        }
                    }
                    if over() || !infos.refresh(&tx, &flag) {
                        return;
                    }
                }
            })?;
        Ok(Refresher { done })
    }
}

impl Drop for Refresher {
    fn drop(&mut self) {
        // Relaxed: a stop flag.
        self.done.store(true, Ordering::Relaxed);
    }
}

/// MT5's `last_error` code for "not found".
pub(super) const MT5_NOT_FOUND: i64 = -4;

/// Asks the gateway whether it knows `symbol`: `Ok(false)` for MT5's "not found".
pub(super) fn knows(client: &mut Client, symbol: &str, listed: &[String]) -> Result<bool, GwError> {
    if listed.iter().any(|s| s == symbol) {
        return Ok(true);
    }
    match client.symbol_info_tick(symbol) {
        Ok(_) => Ok(true),
        Err(GwError::Mt5 { code, .. }) if code == MT5_NOT_FOUND => Ok(false),
        // Another MT5 failure (no tick yet, say) is not "unknown".
        Err(GwError::Mt5 { .. }) => Ok(true),
        Err(e) => Err(e),
    }
}

/// A hint for a symbol the gateway does not know: the known names closest to it (a shared
/// prefix of at least 3 characters, as with broker suffixes), else a few of the known names.
pub(super) fn suggest(symbol: &str, known: &[String]) -> String {
    let shared = |k: &str| {
        symbol
            .bytes()
            .zip(k.bytes())
            .take_while(|(a, b)| a.eq_ignore_ascii_case(b))
            .count()
    };
    let best = known.iter().map(|k| shared(k)).max().unwrap_or(0);
    if best >= 3 {
        let close: Vec<&str> = known
            .iter()
            .filter(|k| shared(k) == best)
            .take(5)
            .map(String::as_str)
            .collect();
        return format!("did you mean {}?", close.join(" or "));
    }
    if known.is_empty() {
        return "check the name and the broker's suffix in the terminal's Market Watch".into();
    }
    let some: Vec<&str> = known.iter().take(10).map(String::as_str).collect();
    format!(
        "the gateway knows {}{}",
        some.join(", "),
        if known.len() > 10 { ", ..." } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::suggest;

    #[test]
    fn suggestions_name_the_symbols_with_the_same_stem() {
        let known = [
            "EURUSD".to_owned(),
            "XAUUSD".to_owned(),
            "XAGUSD".to_owned(),
        ];
        assert_eq!(suggest("XAUUSDm", &known), "did you mean XAUUSD?");
        assert_eq!(
            suggest("BTCUSD", &known),
            "the gateway knows EURUSD, XAUUSD, XAGUSD"
        );
        assert!(suggest("BTCUSD", &[]).contains("Market Watch"));
    }
}
