//! The segment header as one value: encoded by the writer when it builds a segment, decoded by
//! readers when they attach and when they ask for the status (docs/LAYOUT.md, "Header").
//!
//! Encoding and decoding live together here, with a round-trip test, as `candle.rs` does for
//! candle records; the word offsets are in `layout::hdr`.

use std::sync::atomic::Ordering;

use crate::layout::{hdr, COUNTER_SLOTS};
use crate::mem::{Mem, MemMut};

/// Every word of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Header {
    pub(crate) magic: u64,
    /// 0 while a writer builds the segment; stored last.
    pub(crate) version: u64,
    pub(crate) layout_hash: u64,
    pub(crate) total_size: u64,
    pub(crate) header_size: u64,
    pub(crate) symbol_count: u64,
    pub(crate) ring_count: u64,
    pub(crate) symbols_offset: u64,
    pub(crate) directory_offset: u64,
    pub(crate) created_ns: u64,
    pub(crate) generation: u64,
    pub(crate) writer_pid: u64,
    pub(crate) writer_start_ns: u64,
    pub(crate) heartbeat_ns: u64,
    pub(crate) writer_state: u64,
    /// Broker server time minus UTC, seconds (an `i64` stored as its two's complement bits).
    pub(crate) server_time_offset_s: i64,
    pub(crate) last_update_ns: u64,
    pub(crate) feed_state: u64,
    pub(crate) writer_pidns: u64,
    pub(crate) writer_start_ticks: u64,
    pub(crate) feed_kind: u64,
    pub(crate) heartbeat_boot_ns: u64,
    pub(crate) tick_depth: u64,
    pub(crate) terminal_offset: u64,
    pub(crate) infos_offset: u64,
    pub(crate) ticks_offset: u64,
    pub(crate) counters: [u64; COUNTER_SLOTS],
}

impl Header {
    /// Writes every word of a segment being built. Release on `generation` (after the writer's
    /// pid, start time and identity) and, last, on `version`: a reader that sees the version
    /// with its Acquire load (in [`load`](Self::load)) sees every word before it.
    pub(crate) fn store(&self, mem: &MemMut) {
        let h = |off, v| mem.store(off, v, Ordering::Relaxed);
        h(hdr::MAGIC, self.magic);
        h(hdr::LAYOUT_HASH, self.layout_hash);
        h(hdr::TOTAL_SIZE, self.total_size);
        h(hdr::HEADER_SIZE, self.header_size);
        h(hdr::SYMBOL_COUNT, self.symbol_count);
        h(hdr::RING_COUNT, self.ring_count);
        h(hdr::SYMBOLS_OFFSET, self.symbols_offset);
        h(hdr::DIRECTORY_OFFSET, self.directory_offset);
        h(hdr::CREATED_NS, self.created_ns);
        h(hdr::WRITER_PID, self.writer_pid);
        h(hdr::WRITER_START_NS, self.writer_start_ns);
        h(hdr::HEARTBEAT_NS, self.heartbeat_ns);
        h(hdr::WRITER_STATE, self.writer_state);
        h(hdr::SERVER_TIME_OFFSET, self.server_time_offset_s as u64);
        h(hdr::LAST_UPDATE_NS, self.last_update_ns);
        h(hdr::FEED_STATE, self.feed_state);
        h(hdr::WRITER_PIDNS, self.writer_pidns);
        h(hdr::WRITER_START_TICKS, self.writer_start_ticks);
        h(hdr::FEED_KIND, self.feed_kind);
        h(hdr::HEARTBEAT_BOOT_NS, self.heartbeat_boot_ns);
        h(hdr::TICK_DEPTH, self.tick_depth);
        h(hdr::TERMINAL_OFFSET, self.terminal_offset);
        h(hdr::INFOS_OFFSET, self.infos_offset);
        h(hdr::TICKS_OFFSET, self.ticks_offset);
        for (i, &c) in self.counters.iter().enumerate() {
            h(hdr::COUNTERS + 8 * i, c);
        }
        // Release (write side of the generation pair; read side is the Acquire load below).
        mem.store(hdr::GENERATION, self.generation, Ordering::Release);
        // Release, last (write side of the version publication; read side is the Acquire load
        // below): whoever sees the version sees every word above.
        mem.store(hdr::VERSION, self.version, Ordering::Release);
    }

    /// Reads every word. Acquire, in this order, before the Relaxed rest:
    /// - `version` (pairs with the Release in [`store`](Self::store)): a non-zero version brings
    ///   every word its writer stored before it;
    /// - `generation` (pairs with the Release of every writer start): the writer's pid, start
    ///   time and identity read after it belong to that generation or a later one;
    /// - `writer_state` (pairs with the Release of `stopped` when a writer drops): a reader
    ///   that sees `stopped` sees the final heartbeat and feed state too.
    ///
    /// The other words are independent (docs/LAYOUT.md): they are not one snapshot.
    pub(crate) fn load(mem: &Mem) -> Header {
        let version = mem.load(hdr::VERSION, Ordering::Acquire);
        let generation = mem.load(hdr::GENERATION, Ordering::Acquire);
        let writer_state = mem.load(hdr::WRITER_STATE, Ordering::Acquire);
        let w = |off| mem.load(off, Ordering::Relaxed);
        Header {
            magic: w(hdr::MAGIC),
            version,
            layout_hash: w(hdr::LAYOUT_HASH),
            total_size: w(hdr::TOTAL_SIZE),
            header_size: w(hdr::HEADER_SIZE),
            symbol_count: w(hdr::SYMBOL_COUNT),
            ring_count: w(hdr::RING_COUNT),
            symbols_offset: w(hdr::SYMBOLS_OFFSET),
            directory_offset: w(hdr::DIRECTORY_OFFSET),
            created_ns: w(hdr::CREATED_NS),
            generation,
            writer_pid: w(hdr::WRITER_PID),
            writer_start_ns: w(hdr::WRITER_START_NS),
            heartbeat_ns: w(hdr::HEARTBEAT_NS),
            writer_state,
            server_time_offset_s: w(hdr::SERVER_TIME_OFFSET) as i64,
            last_update_ns: w(hdr::LAST_UPDATE_NS),
            feed_state: w(hdr::FEED_STATE),
            writer_pidns: w(hdr::WRITER_PIDNS),
            writer_start_ticks: w(hdr::WRITER_START_TICKS),
            feed_kind: w(hdr::FEED_KIND),
            heartbeat_boot_ns: w(hdr::HEARTBEAT_BOOT_NS),
            tick_depth: w(hdr::TICK_DEPTH),
            terminal_offset: w(hdr::TERMINAL_OFFSET),
            infos_offset: w(hdr::INFOS_OFFSET),
            ticks_offset: w(hdr::TICKS_OFFSET),
            counters: std::array::from_fn(|i| w(hdr::COUNTERS + 8 * i)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::HEADER_SIZE;
    use crate::mem::test_support::HeapMem;

    #[test]
    fn every_word_round_trips_and_none_overlaps() {
        let heap = HeapMem::new(HEADER_SIZE);
        let mem = heap.mem();
        // Distinct values everywhere: a word stored at the wrong offset would show.
        let h = Header {
            magic: 1,
            version: 2,
            layout_hash: 3,
            total_size: 4,
            header_size: 5,
            symbol_count: 6,
            ring_count: 7,
            symbols_offset: 8,
            directory_offset: 9,
            created_ns: 10,
            generation: 11,
            writer_pid: 12,
            writer_start_ns: 13,
            heartbeat_ns: 14,
            writer_state: 15,
            server_time_offset_s: -7200,
            last_update_ns: 17,
            feed_state: 18,
            writer_pidns: 19,
            writer_start_ticks: 20,
            feed_kind: 21,
            heartbeat_boot_ns: 22,
            tick_depth: 23,
            terminal_offset: 24,
            infos_offset: 25,
            ticks_offset: 26,
            counters: std::array::from_fn(|i| 100 + i as u64),
        };
        h.store(&mem);
        assert_eq!(Header::load(&mem), h);
        // The reserved words stay zero (the wake words between are the wake-up's own).
        for off in (hdr::TICKS_OFFSET + 8..hdr::COUNTERS).step_by(8) {
            assert_eq!(mem.load(off, Ordering::Relaxed), 0, "reserved word {off}");
        }
    }
}
