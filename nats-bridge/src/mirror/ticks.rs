//! The mirror's ticks, symbol information and terminal record: caught up from the origin's
//! rings at every sync, then followed batch by batch (see `crate::ticks` for the rules).

use std::time::Instant;

use shm_core::Tick;

use super::{request, Mirror, CLOCK_TOLERANCE_S};
use crate::subjects::{RequestKind, Subjects};
use crate::ticks::{align, info_from_reply, Alignment};
use crate::wire::{
    SymbolReply, SymbolRequest, TickBatch, TickHistoryReply, TickHistoryRequest, TICK_PAGE, VERSION,
};
use crate::BridgeError;

/// What a tick batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Applied {
    /// Written (or refused, and counted).
    Done,
    /// It starts after the position expected: ticks were missed, catch up again.
    Gap,
}

impl Mirror {
    /// Whether `t` is a tick the origin can have sent: the record's rules, and not later than
    /// the origin's clock allows.
    pub(super) fn plausible_tick(&self, t: &Tick) -> Result<(), &'static str> {
        if t.defect().is_some() {
            return Err("a tick that breaks the record's rules");
        }
        let now = (shm_core::now_ns() / 1_000_000_000) as i64 + self.offset_s + CLOCK_TOLERANCE_S;
        if t.time() > now {
            return Err("a tick later than the origin's clock");
        }
        Ok(())
    }

    /// Applies one batch of the origin's ticks.
    pub(super) fn apply_ticks(&mut self, payload: &[u8]) -> Applied {
        let batch: TickBatch = match serde_json::from_slice(payload) {
            Ok(b) => b,
            Err(e) => {
                self.refuse("ticks", e);
                return Applied::Done;
            }
        };
        if batch.v != VERSION {
            self.refuse("ticks", BridgeError::Version { found: batch.v });
            return Applied::Done;
        }
        let ticks: Vec<Tick> = batch.ticks.iter().map(Tick::from).collect();
        if let Some(why) = ticks.iter().find_map(|t| self.plausible_tick(t).err()) {
            self.refuse("ticks", why);
            return Applied::Done;
        }
        let Some(&next) = self.tick_next.get(&batch.symbol) else {
            return Applied::Done; // not a symbol of the last sync
        };
        if batch.first > next {
            return Applied::Gap;
        }
        let skip = (next - batch.first) as usize;
        if skip >= ticks.len() {
            return Applied::Done; // held already
        }
        let Some(w) = self.writer.as_mut() else {
            return Applied::Done;
        };
        let Some(sym) = w.symbol(&batch.symbol) else {
            return Applied::Done;
        };
        for t in &ticks[skip..] {
            if w.push_tick(sym, t).is_err() {
                // Older than the ring's newest: not the origin's order.
                self.refuse("ticks", "ticks out of order");
                return Applied::Gap;
            }
        }
        w.notify();
        self.tick_next
            .insert(batch.symbol, batch.first + ticks.len() as u64);
        Applied::Done
    }

    /// Catches every symbol's tick ring up with the origin's: the origin's whole ring, paged,
    /// then what follows the mirror's newest tick (see [`align`]).
    pub(super) async fn sync_ticks(
        &mut self,
        client: &async_nats::Client,
        subjects: &Subjects,
        depth: u32,
    ) -> Result<(), BridgeError> {
        let symbols: Vec<String> = match &self.writer {
            Some(w) => w.layout().symbols().map(str::to_owned).collect(),
            None => return Ok(()),
        };
        for symbol in symbols {
            let mut origin: Vec<Tick> = Vec::new();
            let mut from = 0u64;
            let mut head = 0u64;
            let most_pages = depth as usize / TICK_PAGE + 2;
            for page_no in 0.. {
                if page_no >= most_pages {
                    return Err(bad(&symbol, "more pages than the ring holds"));
                }
                let req = TickHistoryRequest {
                    v: VERSION,
                    symbol: symbol.clone(),
                    from,
                    from_msc: None,
                    skip: 0,
                    limit: TICK_PAGE,
                    nonce: crate::wire::nonce(),
                };
                let page: TickHistoryReply =
                    request(client, subjects.request(RequestKind::Ticks), &req).await?;
                let ticks: Vec<Tick> = page.ticks.iter().map(Tick::from).collect();
                let end = page.first.saturating_add(ticks.len() as u64);
                if page.v != VERSION
                    || ticks.len() > TICK_PAGE
                    || end > page.head
                    || page.first < from
                {
                    return Err(bad(&symbol, "a page that is not the one asked for"));
                }
                if let Some(why) = ticks.iter().find_map(|t| self.plausible_tick(t).err()) {
                    return Err(bad(&symbol, why));
                }
                let joined = origin.last().zip(ticks.first());
                if joined.is_some_and(|(a, b)| b.time_msc < a.time_msc)
                    || ticks.windows(2).any(|p| p[1].time_msc < p[0].time_msc)
                {
                    return Err(bad(&symbol, "ticks out of order"));
                }
                // A page that starts later than asked lost ticks to the ring's lapping
                // meanwhile: start over from what it has.
                if page.first > from && !origin.is_empty() {
                    origin.clear();
                }
                origin.extend(ticks);
                head = page.head;
                from = end;
                if end >= page.head || page.ticks.is_empty() {
                    break;
                }
            }
            let Some(w) = self.writer.as_mut() else {
                return Ok(());
            };
            let Some(sym) = w.symbol(&symbol) else {
                continue;
            };
            match align(w.newest_tick(sym).as_ref(), &origin) {
                Alignment::Ahead => {
                    self.rebuild = true;
                    return Err(BridgeError::AheadOfOrigin {
                        ring: format!("{symbol} ticks"),
                    });
                }
                Alignment::From(i) => {
                    for t in &origin[i..] {
                        if w.push_tick(sym, t).is_err() {
                            return Err(bad(&symbol, "ticks out of order"));
                        }
                    }
                }
            }
            self.tick_next.insert(symbol, head);
        }
        Ok(())
    }

    /// Every symbol's information, and the terminal's identity, as the origin has them.
    pub(super) async fn sync_records(
        &mut self,
        client: &async_nats::Client,
        subjects: &Subjects,
        terminal: Option<&shm_core::TerminalInfo>,
    ) -> Result<(), BridgeError> {
        self.records_synced = Some(Instant::now());
        let symbols: Vec<String> = match &self.writer {
            Some(w) => w.layout().symbols().map(str::to_owned).collect(),
            None => return Ok(()),
        };
        for symbol in symbols {
            let req = SymbolRequest {
                v: VERSION,
                symbol: symbol.clone(),
                nonce: crate::wire::nonce(),
            };
            let reply: SymbolReply =
                request(client, subjects.request(RequestKind::Symbol), &req).await?;
            match info_from_reply(&symbol, &reply) {
                Ok(Some((info, source))) => {
                    let mut refused = None;
                    if let Some(w) = self.writer.as_mut() {
                        if let Some(sym) = w.symbol(&symbol) {
                            if w.symbol_info(sym) != Some((info.clone(), source)) {
                                refused = w.set_symbol_info(sym, &info, source).err();
                            }
                        }
                    }
                    if let Some(e) = refused {
                        self.refuse("symbol information", e);
                    }
                }
                Ok(None) => {}
                Err(e) => self.refuse("symbol information", e),
            }
        }
        if let (Some(t), Some(w)) = (terminal, self.writer.as_mut()) {
            if let Err(e) = w.set_terminal(t) {
                self.refuse("layout", e);
            }
        }
        Ok(())
    }
}

fn bad(symbol: &str, why: &'static str) -> BridgeError {
    BridgeError::BadHistory {
        ring: format!("{symbol} ticks"),
        why,
    }
}
