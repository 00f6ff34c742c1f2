//! The writer's side of version 2: ticks into each symbol's tick ring, symbol information and
//! the terminal's identity into their records.

use super::{SymbolId, Writer};
use crate::info::{InfoError, InfoSource, SymbolInfo, TerminalInfo};
use crate::record::{self, INFO_SIZE, TERMINAL_SIZE};
use crate::tick::{Tick, TickDefect};
use crate::tickring::From;

impl Writer {
    /// Closes what a killed writer left open in the records and tick rings (see
    /// `docs/LAYOUT.md`, "Torn records"), and learns each ring's newest tick. A record caught
    /// mid-write is emptied; a tick ring needs nothing (its half-written slot is never
    /// served), unless its counters are ones no writer leaves (a damaged file): then it is
    /// emptied too. Returns how many it closed or emptied.
    pub(crate) fn repair_records(&mut self) -> u32 {
        let mut repaired = 0;
        for block in self.infos.iter().chain([&self.terminal]) {
            repaired += u32::from(block.repair(self.map.mem()));
        }
        for i in 0..self.tick_rings.len() {
            let ring = self.tick_rings[i];
            let (begun, head) = ring.counters(self.map.mem());
            if begun == head + 1 {
                repaired += 1;
            } else if begun != head {
                ring.clear(self.map.mem());
                repaired += 1;
            }
            let head = ring.counters(self.map.mem()).1;
            self.tick_cursor[i] = (head, (head % ring.capacity()) as usize);
            self.newest_tick_msc[i] = self.newest_tick(SymbolId(i as u32)).map(|t| t.time_msc);
        }
        repaired
    }

    /// Appends a tick to its symbol's tick ring, and records it as the symbol's last tick.
    /// A tick that breaks a rule of the record, or is older than the ring's newest, is
    /// refused and nothing is written: readers can trust the ring's order.
    #[inline]
    pub fn push_tick(&mut self, symbol: SymbolId, tick: &Tick) -> Result<(), TickDefect> {
        let i = symbol.0 as usize;
        let words = Tick {
            published_ns: self.now_ns,
            ..*tick
        }
        .to_words();
        // The readers' own check, on the bits (a few instructions, no branch per rule); the
        // rule it broke is worked out only when it did.
        let mut previous = self.newest_tick_msc[i].unwrap_or(i64::MIN);
        if !crate::tick::words_good(&words, &mut previous) {
            return Err(match tick.defect() {
                Some(d) => d,
                None => TickDefect::OutOfOrder {
                    previous: self.newest_tick_msc[i].unwrap_or(i64::MIN),
                },
            });
        }
        // The store first: a reader that finds the tick in the ring finds it in the store.
        self.history_tick(
            i,
            &Tick {
                published_ns: self.now_ns,
                ..*tick
            },
        );
        let ring = &self.tick_rings[i];
        let (head, slot) = self.tick_cursor[i];
        ring.push_at(self.map.mem(), &words, self.now_ns, head, slot);
        let next = slot + 1;
        self.tick_cursor[i] = (
            head + 1,
            if next as u64 == ring.capacity() {
                0
            } else {
                next
            },
        );
        self.newest_tick_msc[i] = Some(tick.time_msc);
        self.record_tick(symbol, tick.time_msc, tick.bid, tick.ask);
        // Not `last_update_ns`: that word is the candles' (docs/LAYOUT.md); a tick ring has its
        // own `last_change_ns`.
        self.add(crate::Counter::TicksRecorded, 1);
        Ok(())
    }

    /// The newest tick of a symbol's tick ring, as stored.
    pub fn newest_tick(&self, symbol: SymbolId) -> Option<Tick> {
        let mut out = Vec::with_capacity(1);
        // The single writer reads its own ring: nothing overwrites it meanwhile.
        self.tick_rings[symbol.0 as usize]
            .read(self.map.mem(), From::Newest(1), 1, &mut out, 1)
            .ok()?;
        out.pop()
    }

    /// Stores a symbol's information, stamped with the writer's clock; refuses a record with
    /// a value no symbol can have ([`SymbolInfo::impossible`]), which readers refuse too.
    pub fn set_symbol_info(
        &mut self,
        symbol: SymbolId,
        info: &SymbolInfo,
        source: InfoSource,
    ) -> Result<(), InfoError> {
        if let Some(field) = info.impossible() {
            return Err(InfoError::Impossible { field });
        }
        let payload = record::info_payload(info, source, self.now_ns);
        self.infos[symbol.0 as usize].write(self.map.mem(), &payload);
        self.touched();
        Ok(())
    }

    /// A symbol's information as stored, and where it came from.
    pub fn symbol_info(&self, symbol: SymbolId) -> Option<(SymbolInfo, InfoSource)> {
        let block = self.infos[symbol.0 as usize];
        let payload = block.read(self.map.mem(), (INFO_SIZE - 8) / 8, 1).ok()?;
        record::info_from_payload(&payload)
            .ok()
            .flatten()
            .map(|(info, source, _)| (info, source))
    }

    /// Stores the terminal's identity, stamped with the writer's clock as the time it was
    /// last confirmed: call it again whenever the source confirms it.
    pub fn set_terminal(&mut self, terminal: &TerminalInfo) -> Result<(), InfoError> {
        terminal.check()?;
        let payload = record::terminal_payload(terminal, self.now_ns);
        self.terminal.write(self.map.mem(), &payload);
        Ok(())
    }

    /// The terminal's identity as stored.
    pub fn terminal(&self) -> Option<TerminalInfo> {
        let payload = self
            .terminal
            .read(self.map.mem(), (TERMINAL_SIZE - 8) / 8, 1)
            .ok()?;
        record::terminal_from_payload(&payload)
            .ok()
            .flatten()
            .map(|(t, _)| t)
    }
}
