//! Records written rarely and read whole: a symbol's information and the terminal's
//! identity. Each is one block under its own sequence, the seqlock of `ring.rs` (its table of
//! orderings applies word for word), copied with bounds-checked loads: a block is read once
//! per call, so the check costs nothing that matters.
//!
//! Block: word 0 is the sequence (`seq`), odd while a write is open; the rest is the payload.

use std::sync::atomic::{fence, Ordering};

use crate::info::{
    string_from_words, string_words, InfoSource, SymbolInfo, TerminalInfo, INFO_NUMBERS,
    INFO_STRINGS, INFO_STRING_SIZE,
};
use crate::mem::{Mem, MemMut};

/// Byte offsets inside a symbol information record (docs/LAYOUT.md).
pub(crate) mod info_off {
    pub const UPDATED_NS: usize = 8;
    pub const SOURCE: usize = 16;
    pub const NUMBERS: usize = 64;
    pub const STRINGS: usize = NUMBERS + 8 * super::INFO_NUMBERS;
}

/// Bytes of one symbol information record.
pub const INFO_SIZE: usize = 2432;
const _: () = assert!(info_off::STRINGS + INFO_STRINGS * INFO_STRING_SIZE <= INFO_SIZE);

/// Byte offsets inside the terminal record (docs/LAYOUT.md).
pub(crate) mod term_off {
    pub const CONFIRMED_NS: usize = 8;
    pub const PRESENT: usize = 16;
    pub const BUILD: usize = 24;
    pub const CONNECTED: usize = 32;
    pub const LOGIN: usize = 40;
    pub const NAME: usize = 64;
    pub const COMPANY: usize = 192;
    pub const SERVER: usize = 320;
}

/// Bytes of the terminal record.
pub const TERMINAL_SIZE: usize = 512;

/// A block of `size` bytes at `base` (8-aligned; checked loads, so any values are safe).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Block {
    pub base: usize,
    pub size: usize,
}

/// The block stayed mid-write for every attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockBusy;

impl Block {
    /// Writes the payload words (`payload[i]` at byte `8 + 8 i`) in one write section.
    pub(crate) fn write(&self, mem: &MemMut, payload: &[u64]) {
        debug_assert!(8 + 8 * payload.len() <= self.size);
        // Relaxed: only the writer stores the sequence.
        let s = mem.load(self.base, Ordering::Relaxed);
        // Relaxed store + Release fence, payload Relaxed, Release close: `ring.rs`'s table.
        mem.store(self.base, s.wrapping_add(1) | 1, Ordering::Relaxed);
        fence(Ordering::Release);
        for (i, &w) in payload.iter().enumerate() {
            mem.store(self.base + 8 + 8 * i, w, Ordering::Relaxed);
        }
        mem.store(self.base, (s | 1).wrapping_add(1), Ordering::Release);
    }

    /// The block's sequence. Acquire (read side of the closing Release): a reader that loads
    /// an even value it has seen before, after a copy made under that value, knows the copy
    /// is still the block's content (sequences only grow, by two per write).
    pub(crate) fn sequence(&self, mem: &Mem) -> u64 {
        mem.load(self.base, Ordering::Acquire)
    }

    /// A consistent copy of the first `words` payload words.
    pub(crate) fn read(
        &self,
        mem: &Mem,
        words: usize,
        attempts: u32,
    ) -> Result<Vec<u64>, BlockBusy> {
        let mut out = vec![0u64; words];
        for attempt in 0..attempts.max(1) {
            // Acquire (read side of the closing Release).
            let s1 = mem.load(self.base, Ordering::Acquire);
            if s1.is_multiple_of(2) {
                for (i, w) in out.iter_mut().enumerate() {
                    *w = mem.load(self.base + 8 + 8 * i, Ordering::Relaxed);
                }
                // Acquire fence (read side of the fence pair), then the sequence again.
                fence(Ordering::Acquire);
                if mem.load(self.base, Ordering::Relaxed) == s1 {
                    return Ok(out);
                }
            }
            if attempt < 100 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        Err(BlockBusy)
    }

    /// Closes a section a killed writer left open, emptying the block: what it held may be
    /// half of two writes. Returns whether it did.
    pub(crate) fn repair(&self, mem: &MemMut) -> bool {
        let s = mem.load(self.base, Ordering::Relaxed);
        if s.is_multiple_of(2) {
            return false;
        }
        for off in (8..self.size).step_by(8) {
            mem.store(self.base + off, 0, Ordering::Relaxed);
        }
        mem.store(self.base, s.wrapping_add(1), Ordering::Release);
        true
    }
}

/// Where a segment's version-2 parts live, checked against the mapping: a tick ring and an
/// information record per symbol, and the terminal record (`Placement::parts` builds them,
/// for the writer and the reader alike).
pub(crate) struct Parts {
    pub tick_rings: Vec<crate::tickring::TickRingRef>,
    pub infos: Vec<Block>,
    pub terminal: Block,
}

/// A symbol information record's payload (from byte 8).
pub(crate) fn info_payload(info: &SymbolInfo, source: InfoSource, now_ns: u64) -> Vec<u64> {
    let mut p = vec![0u64; (INFO_SIZE - 8) / 8];
    let at = |off: usize| off / 8 - 1;
    p[at(info_off::UPDATED_NS)] = now_ns;
    p[at(info_off::SOURCE)] = source as u64;
    p[at(info_off::NUMBERS)..at(info_off::NUMBERS) + INFO_NUMBERS].copy_from_slice(&info.numbers);
    for (k, s) in info.strings.iter().enumerate() {
        let from = at(info_off::STRINGS) + k * INFO_STRING_SIZE / 8;
        p[from..from + INFO_STRING_SIZE / 8].copy_from_slice(&string_words(s));
    }
    p
}

/// Why a stored record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadField(pub &'static str);

/// A symbol information record back from its payload: `Ok(None)` if none was written.
pub(crate) fn info_from_payload(
    p: &[u64],
) -> Result<Option<(SymbolInfo, InfoSource, u64)>, BadField> {
    let at = |off: usize| off / 8 - 1;
    let source = match p[at(info_off::SOURCE)] {
        0 => return Ok(None),
        w => InfoSource::from_word(w).ok_or(BadField("source"))?,
    };
    let mut info = SymbolInfo::new("");
    info.numbers
        .copy_from_slice(&p[at(info_off::NUMBERS)..at(info_off::NUMBERS) + INFO_NUMBERS]);
    for (i, (name, kind)) in crate::info::SYMBOL_INFO_FIELDS.iter().enumerate() {
        let w = info.numbers.get(i).copied();
        let ok = match (kind, w) {
            (crate::FieldKind::Bool, Some(w)) => w <= 1,
            (crate::FieldKind::Float, Some(w)) => f64::from_bits(w).is_finite(),
            _ => true,
        };
        if !ok {
            return Err(BadField(name));
        }
    }
    for k in 0..INFO_STRINGS {
        let from = at(info_off::STRINGS) + k * INFO_STRING_SIZE / 8;
        info.strings[k] = string_from_words(&p[from..from + INFO_STRING_SIZE / 8]).ok_or(
            BadField(crate::info::SYMBOL_INFO_FIELDS[INFO_NUMBERS + k].0),
        )?;
    }
    if let Some(field) = info.impossible() {
        return Err(BadField(field));
    }
    Ok(Some((info, source, p[at(info_off::UPDATED_NS)])))
}

/// The terminal record's payload (from byte 8).
pub(crate) fn terminal_payload(t: &TerminalInfo, now_ns: u64) -> Vec<u64> {
    let mut p = vec![0u64; (TERMINAL_SIZE - 8) / 8];
    let at = |off: usize| off / 8 - 1;
    p[at(term_off::CONFIRMED_NS)] = now_ns;
    p[at(term_off::PRESENT)] = 1;
    p[at(term_off::BUILD)] = t.build as u64;
    p[at(term_off::CONNECTED)] = u64::from(t.connected);
    p[at(term_off::LOGIN)] = t.login as u64;
    for (off, s) in [
        (term_off::NAME, &t.name),
        (term_off::COMPANY, &t.company),
        (term_off::SERVER, &t.server),
    ] {
        p[at(off)..at(off) + INFO_STRING_SIZE / 8].copy_from_slice(&string_words(s));
    }
    p
}

/// The terminal record back from its payload: `Ok(None)` if none was written; else the
/// record and when the writer last confirmed it (unix ns).
pub(crate) fn terminal_from_payload(p: &[u64]) -> Result<Option<(TerminalInfo, u64)>, BadField> {
    let at = |off: usize| off / 8 - 1;
    match p[at(term_off::PRESENT)] {
        0 => return Ok(None),
        1 => {}
        _ => return Err(BadField("present")),
    }
    let connected = match p[at(term_off::CONNECTED)] {
        0 => false,
        1 => true,
        _ => return Err(BadField("connected")),
    };
    let string = |off: usize, name| {
        string_from_words(&p[at(off)..at(off) + INFO_STRING_SIZE / 8]).ok_or(BadField(name))
    };
    Ok(Some((
        TerminalInfo {
            name: string(term_off::NAME, "name")?,
            company: string(term_off::COMPANY, "company")?,
            build: p[at(term_off::BUILD)] as i64,
            connected,
            server: string(term_off::SERVER, "server")?,
            login: p[at(term_off::LOGIN)] as i64,
        },
        p[at(term_off::CONFIRMED_NS)],
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::info::InfoValue;
    use crate::mem::test_support::HeapMem;

    #[test]
    fn records_round_trip_through_a_block_and_a_torn_one_is_emptied() {
        let heap = HeapMem::new(INFO_SIZE + TERMINAL_SIZE);
        let mem = heap.mem();
        let block = Block {
            base: 0,
            size: INFO_SIZE,
        };
        let words = (INFO_SIZE - 8) / 8;
        let empty = block.read(&mem, words, 3).unwrap();
        assert_eq!(info_from_payload(&empty), Ok(None));
        let mut info = SymbolInfo::new("EURUSD");
        info.set("digits", InfoValue::Int(5)).unwrap();
        info.set("description", InfoValue::Str("Euro vs US Dollar"))
            .unwrap();
        block.write(&mem, &info_payload(&info, InfoSource::Terminal, 42));
        let back = info_from_payload(&block.read(&mem, words, 3).unwrap()).unwrap();
        assert_eq!(back, Some((info, InfoSource::Terminal, 42)));

        let term = Block {
            base: INFO_SIZE,
            size: TERMINAL_SIZE,
        };
        let t = TerminalInfo {
            name: "MetaTrader 5".into(),
            company: "MetaQuotes Ltd.".into(),
            build: 4755,
            connected: true,
            server: "MetaQuotes-Demo".into(),
            login: 25115284,
        };
        term.write(&mem, &terminal_payload(&t, 7));
        let p = term.read(&mem, (TERMINAL_SIZE - 8) / 8, 3).unwrap();
        assert_eq!(terminal_from_payload(&p), Ok(Some((t, 7))));

        // A writer killed inside the write: readers give up, a restart empties it.
        mem.store(INFO_SIZE, 5, Ordering::Relaxed);
        assert_eq!(term.read(&mem, 4, 3), Err(BlockBusy));
        assert!(term.repair(&mem));
        let p = term.read(&mem, (TERMINAL_SIZE - 8) / 8, 3).unwrap();
        assert_eq!(terminal_from_payload(&p), Ok(None));
        // A forged boolean is refused.
        let mut p = info_payload(&SymbolInfo::new("X"), InfoSource::Derived, 1);
        p[info_off::NUMBERS / 8 - 1] = 2; // `custom`
        assert_eq!(info_from_payload(&p), Err(BadField("custom")));
    }
}
