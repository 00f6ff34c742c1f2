//! Ticks, symbol information and the terminal's identity over NATS: the origin's follower of
//! its tick rings and its answers, and the mirror's alignment of what it holds with what the
//! origin has (docs/NATS.md).
//!
//! No gap, no duplicate: every batch says the origin position of its first tick. A mirror
//! keeps the next position it expects per symbol; a batch that starts later is a gap (the
//! mirror catches up again from the origin's ring), one that starts earlier repeats ticks it
//! holds, which it skips. After its own restart a mirror does not know positions, so it finds
//! its newest tick among the origin's and takes what follows it.

use serde_json::{Map, Value};
use shm_core::history::StreamCache;
use shm_core::{InfoSource, InfoValue, Reader, SymbolInfo, TerminalInfo, Tick};

use crate::subjects::Subjects;
use crate::wire::{
    SymbolReply, SymbolRequest, TickBatch, TickHistoryReply, TickHistoryRequest, WireTick,
    MAX_SKIP, TICK_PAGE, VERSION,
};

/// Most ticks one batch carries (a look of the follower sends several if more are new).
pub const BATCH: usize = 256;

/// The origin's follower of every tick ring: each tick once, in order, in batches.
#[derive(Debug)]
pub(crate) struct TickFollower {
    symbols: Vec<String>,
    /// Per symbol, the next position to send.
    next: Vec<u64>,
    buf: Vec<Tick>,
}

impl TickFollower {
    /// Starts at the rings' current heads: what came before is for mirrors to request.
    pub(crate) fn new(reader: &Reader) -> TickFollower {
        let symbols: Vec<String> = reader.layout().symbols().map(str::to_owned).collect();
        let next = symbols
            .iter()
            .map(|s| reader.ticks(s).map_or(0, |r| r.total()))
            .collect();
        TickFollower {
            symbols,
            next,
            buf: Vec::with_capacity(BATCH),
        }
    }

    /// The batches of ticks new since the last look, as (subject, payload). A ring that
    /// lapped the follower gives a batch that starts later than the last one ended: the
    /// mirrors see the gap and catch up from the ring.
    pub(crate) fn poll(
        &mut self,
        reader: &Reader,
        subjects: &Subjects,
        out: &mut Vec<(String, String)>,
    ) {
        for (i, symbol) in self.symbols.iter().enumerate() {
            let Some(ring) = reader.ticks(symbol) else {
                continue;
            };
            let Ok(span) = ring.read_from(self.next[i], BATCH, &mut self.buf) else {
                continue;
            };
            if self.buf.is_empty() {
                continue;
            }
            let batch = TickBatch {
                v: VERSION,
                symbol: symbol.clone(),
                first: span.first,
                ticks: self.buf.iter().map(WireTick::from).collect(),
            };
            self.next[i] = span.first + self.buf.len() as u64;
            if let Ok(json) = serde_json::to_string(&batch) {
                out.push((subjects.ticks(symbol), json));
            }
        }
    }
}

/// What a tick history request costs the origin's request limit: the ticks it reads (a
/// store page reads again the ones at its first millisecond it skips).
pub(crate) fn tick_request_cost(req: Option<&TickHistoryRequest>) -> usize {
    req.map_or(1, |r| {
        let skipped = r.from_msc.map_or(0, |_| r.skip.min(MAX_SKIP) as usize);
        r.limit.clamp(1, TICK_PAGE) + skipped
    })
}

/// The answer to a tick history request.
pub(crate) fn tick_history_reply(
    reader: &Reader,
    store: Option<&mut StreamCache>,
    req: Option<TickHistoryRequest>,
) -> String {
    let error = |message: &str| serde_json::json!({"v": VERSION, "error": message}).to_string();
    let Some(req) = req else {
        return error("a tick request is {\"v\":1,\"symbol\":…,\"from\":P,\"limit\":N}");
    };
    if req.v != VERSION {
        return error("unsupported version");
    }
    if let Some(from_msc) = req.from_msc {
        return match crate::store::ticks_from(reader, store, &req, from_msc) {
            Ok(page) => serde_json::to_string(&page).unwrap_or_default(),
            Err(why) => error(why),
        };
    }
    let Some(ring) = reader.ticks(&req.symbol) else {
        return error("no such symbol");
    };
    let mut ticks = Vec::new();
    let Ok(span) = ring.read_from(req.from, req.limit.min(TICK_PAGE), &mut ticks) else {
        return error("tick ring unreadable");
    };
    serde_json::to_string(&TickHistoryReply {
        v: VERSION,
        answers: serde_json::to_value(&req).ok(),
        first: span.first,
        head: span.head,
        ticks: ticks.iter().map(WireTick::from).collect(),
    })
    .unwrap_or_default()
}

/// The answer to a symbol information request.
pub(crate) fn symbol_reply(reader: &Reader, req: Option<SymbolRequest>) -> String {
    let answers = req.as_ref().and_then(|r| serde_json::to_value(r).ok());
    let record = req
        .filter(|r| r.v == VERSION)
        .and_then(|r| reader.symbol_info(&r.symbol).ok().flatten());
    let (source, info) = match record {
        Some(r) => {
            let mut fields = Map::new();
            for (name, value) in r.info.fields() {
                fields.insert(name.to_owned(), json_of(value));
            }
            let source = match r.source {
                InfoSource::Terminal => "terminal",
                InfoSource::Derived => "derived",
                InfoSource::Exported => "exported",
            };
            (source, Some(fields))
        }
        None => ("", None),
    };
    serde_json::to_string(&SymbolReply {
        v: VERSION,
        answers,
        source: source.to_owned(),
        info,
    })
    .unwrap_or_default()
}

fn json_of(value: InfoValue<'_>) -> Value {
    match value {
        InfoValue::Int(n) => Value::from(n),
        InfoValue::Bool(b) => Value::from(b),
        InfoValue::Float(x) => Value::from(x),
        InfoValue::Str(s) => Value::from(s),
    }
}

/// The terminal behind `reader`'s segment, for the layout answer.
pub(crate) fn terminal_of(reader: &Reader) -> Option<TerminalInfo> {
    Some(reader.terminal().ok().flatten()?.info)
}

/// A symbol information answer as the record the mirror stores: every field MT5's, of its
/// type, strings within the record's bound; else why not.
pub(crate) fn info_from_reply(
    symbol: &str,
    reply: &SymbolReply,
) -> Result<Option<(SymbolInfo, InfoSource)>, String> {
    let Some(fields) = &reply.info else {
        return Ok(None);
    };
    let source = match reply.source.as_str() {
        "terminal" => InfoSource::Terminal,
        "derived" => InfoSource::Derived,
        "exported" => InfoSource::Exported,
        other => return Err(format!("source {other:?}")),
    };
    let mut info = SymbolInfo::new(symbol);
    for (name, value) in fields {
        let v = match value {
            Value::Bool(b) => InfoValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => InfoValue::Int(i),
                None => InfoValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => InfoValue::Str(s),
            _ => return Err(format!("field {name:?} is not a number or string")),
        };
        info.set(name, v).map_err(|e| e.to_string())?;
    }
    Ok(Some((info, source)))
}

/// Where a mirror's ticks stand against a run of the origin's (oldest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alignment {
    /// Take the origin's ticks from this index on.
    From(usize),
    /// The mirror holds a tick newer than anything the origin has: a forged or damaged run.
    Ahead,
}

/// Finds the mirror's newest tick among the origin's: the ticks after its last equal one
/// follow it. Without an equal one, the origin's ticks later than it (the mirror was away for
/// longer than the origin's ring reaches: what is lost is lost, and nothing is repeated).
pub(crate) fn align(mine: Option<&Tick>, origin: &[Tick]) -> Alignment {
    let Some(mine) = mine else {
        return Alignment::From(0);
    };
    let same = |t: &Tick| {
        Tick {
            published_ns: 0,
            ..*t
        } == Tick {
            published_ns: 0,
            ..*mine
        }
    };
    if let Some(i) = origin.iter().rposition(same) {
        return Alignment::From(i + 1);
    }
    if origin.last().is_some_and(|o| mine.time_msc > o.time_msc) {
        return Alignment::Ahead;
    }
    Alignment::From(origin.partition_point(|t| t.time_msc <= mine.time_msc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64, bid: f64) -> Tick {
        Tick {
            time_msc: ms,
            bid,
            ask: bid + 1.0,
            flags: 6,
            ..Tick::default()
        }
    }

    #[test]
    fn a_mirror_takes_what_follows_its_newest_tick_and_nothing_twice() {
        let origin = [t(1, 1.0), t(2, 1.0), t(2, 2.0), t(3, 1.0)];
        assert_eq!(align(None, &origin), Alignment::From(0));
        assert_eq!(align(Some(&t(2, 1.0)), &origin), Alignment::From(2));
        assert_eq!(align(Some(&t(3, 1.0)), &origin), Alignment::From(4));
        // Older than the origin's ring: everything it has.
        assert_eq!(align(Some(&t(0, 9.0)), &origin), Alignment::From(0));
        // Not among them, within their times: only the later ones.
        assert_eq!(align(Some(&t(2, 5.0)), &origin), Alignment::From(3));
        assert_eq!(align(Some(&t(9, 1.0)), &origin), Alignment::Ahead);
    }
}
