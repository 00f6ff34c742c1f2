//! The byte format of a history chunk file (docs/LAYOUT.md, "History store"): its header
//! words and its records, encoded and decoded together here, as `candle.rs` does for the
//! segment's records.
//!
//! A chunk is a header of 16 little-endian words (128 bytes) and `capacity` records of 9 words
//! (72 bytes): a bar is the segment's candle record plus a check word, a tick the segment's
//! tick record plus a check word. The check word makes a damaged record (a lost page after a
//! power cut, a stray write) visible to every reader, which refuses it instead of serving it.

use crate::candle::{Candle, RECORD_WORDS};
use crate::tick::{Tick, TICK_WORDS};
use crate::timeframe::Timeframe;

/// `MTFHIST1`, little-endian: the first word of every chunk.
pub const HISTORY_MAGIC: u64 = u64::from_le_bytes(*b"MTFHIST1");
/// The format version this crate writes and reads.
pub const HISTORY_VERSION: u64 = 1;
/// Bytes of a chunk's header.
pub const CHUNK_HEADER_SIZE: usize = 128;
/// Words of one stored record (bars and ticks alike).
pub(crate) const STORED_WORDS: usize = 9;
/// Bytes of one stored record.
pub const STORED_RECORD_SIZE: usize = STORED_WORDS * 8;

/// Header word offsets (bytes).
pub(crate) mod hw {
    pub(crate) const MAGIC: usize = 0;
    pub(crate) const VERSION: usize = 8;
    pub(crate) const KIND: usize = 16;
    pub(crate) const RECORD_SIZE: usize = 24;
    pub(crate) const CAPACITY: usize = 32;
    pub(crate) const TIMEFRAME: usize = 40;
    pub(crate) const SEQUENCE: usize = 48;
    pub(crate) const CREATED_NS: usize = 56;
    pub(crate) const SYMBOL: usize = 64; // 4 words, NUL-padded
    pub(crate) const COUNT: usize = 96;
}

/// The mark a record carries when the store may lack records just before it: the first record
/// a writer run appends after a restart, or after a failure (a full disk) ended a stream for a
/// while. Bit 31 of the flags half of the record's flags word, which the segment never sets.
pub(crate) const MARK_AFTER_HOLE: u64 = 1 << 63;

/// What a chunk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Closed bars of one timeframe.
    Bars(Timeframe),
    /// Ticks.
    Ticks,
}

impl StreamKind {
    /// The header's kind word: 1 for bars, 2 for ticks.
    pub(crate) fn word(self) -> u64 {
        match self {
            StreamKind::Bars(_) => 1,
            StreamKind::Ticks => 2,
        }
    }

    /// The header's timeframe word: MT5's `TIMEFRAME_*` value (`16385` for H1), 0 for ticks.
    pub(crate) fn timeframe_word(self) -> u64 {
        match self {
            StreamKind::Bars(tf) => u64::from(tf.mt5_code()),
            StreamKind::Ticks => 0,
        }
    }

    /// The file name prefix: the timeframe's name (`M1`, `H4`) or `ticks`.
    pub(crate) fn file_stem(self) -> &'static str {
        match self {
            StreamKind::Bars(tf) => tf.name(),
            StreamKind::Ticks => "ticks",
        }
    }

    /// Records of one chunk: about 590 KB of bars (8,192 M1 bars are 5.7 days) or 4.7 MB of
    /// ticks. Small enough that a sealed chunk is a cheap unit to drop, large enough that a
    /// month of a busy symbol's ticks is a few dozen files.
    pub(crate) fn capacity(self) -> u64 {
        match self {
            StreamKind::Bars(_) => 8192,
            StreamKind::Ticks => 65_536,
        }
    }
}

/// The check word of a record: a multiply-xorshift hash of its other words and its index in
/// the chunk, never 0, so that an unwritten (zero) record or a record copied to another place
/// fails it.
pub(crate) fn check_word(index: u64, words: &[u64]) -> u64 {
    let mut h = 0x6d74_662d_6869_7374 ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for &w in words {
        h = (h ^ w).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 31;
    }
    h.max(1)
}

/// A bar's stored words.
pub(crate) fn bar_words(index: u64, c: &Candle, mark: u64) -> [u64; STORED_WORDS] {
    let mut w = [0u64; STORED_WORDS];
    let cw = Candle {
        forming: false,
        repaired: false,
        ..*c
    }
    .to_words();
    w[..RECORD_WORDS].copy_from_slice(&cw);
    w[7] |= mark;
    w[8] = check_word(index, &w[..8]);
    w
}

/// A tick's stored words.
pub(crate) fn tick_words(index: u64, t: &Tick, mark: u64) -> [u64; STORED_WORDS] {
    let mut w = [0u64; STORED_WORDS];
    w[..TICK_WORDS].copy_from_slice(&t.to_words());
    w[6] |= mark;
    w[8] = check_word(index, &w[..8]);
    w
}

/// Whether the stored words are intact (their check word matches).
pub(crate) fn intact(index: u64, w: &[u64; STORED_WORDS]) -> bool {
    w[8] == check_word(index, &w[..8])
}

/// A bar from intact stored words, and whether it is marked as following a hole.
pub(crate) fn bar_from(w: &[u64; STORED_WORDS]) -> (Candle, bool) {
    let mut cw = [0u64; RECORD_WORDS];
    cw.copy_from_slice(&w[..RECORD_WORDS]);
    let mark = cw[7] & MARK_AFTER_HOLE != 0;
    cw[7] &= !MARK_AFTER_HOLE;
    (Candle::from_words(&cw), mark)
}

/// A tick from intact stored words, and whether it is marked as following a hole.
pub(crate) fn tick_from(w: &[u64; STORED_WORDS]) -> (Tick, bool) {
    let mut tw = [0u64; TICK_WORDS];
    tw.copy_from_slice(&w[..TICK_WORDS]);
    let mark = tw[6] & MARK_AFTER_HOLE != 0;
    tw[6] &= !MARK_AFTER_HOLE;
    (Tick::from_words(&tw), mark)
}

/// The symbol as the header's four words (NUL-padded, at most 31 bytes: validated before).
pub(crate) fn symbol_words(symbol: &str) -> [u64; 4] {
    let mut bytes = [0u8; 32];
    bytes[..symbol.len()].copy_from_slice(symbol.as_bytes());
    let mut w = [0u64; 4];
    for (i, chunk) in bytes.chunks_exact(8).enumerate() {
        w[i] = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_and_without_the_mark() {
        let c = Candle {
            spread: -3,
            tick_volume: 17,
            real_volume: 2,
            ..Candle::flat(120, 1.25)
        };
        for mark in [0, MARK_AFTER_HOLE] {
            let w = bar_words(5, &c, mark);
            assert!(intact(5, &w));
            assert!(
                !intact(6, &w),
                "a record moved to another index fails its check"
            );
            assert_eq!(bar_from(&w), (c, mark != 0));
        }
        let t = Tick {
            time_msc: 1_700_000_000_123,
            bid: 1.1,
            ask: 1.2,
            flags: 6,
            ..Tick::default()
        };
        let w = tick_words(0, &t, MARK_AFTER_HOLE);
        assert!(intact(0, &w));
        assert_eq!(tick_from(&w), (t, true));
    }

    #[test]
    fn a_zero_record_or_one_flipped_bit_fails_the_check() {
        assert!(!intact(0, &[0; STORED_WORDS]));
        let mut w = bar_words(3, &Candle::flat(60, 2.0), 0);
        w[4] ^= 1 << 20;
        assert!(!intact(3, &w));
    }

    #[test]
    fn symbol_words_are_the_name_nul_padded() {
        let w = symbol_words("XAUUSDc");
        assert_eq!(w[0].to_le_bytes(), *b"XAUUSDc\0");
        assert_eq!(&w[1..], &[0, 0, 0]);
    }
}
