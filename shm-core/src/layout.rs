//! Layout v2: every size and offset of the segment, and the layout hash.
//!
//! `docs/LAYOUT.md` documents the same numbers byte by byte; the unit tests below pin them so
//! the two cannot drift apart silently. Every field is a little-endian 64-bit word at an offset
//! that is a multiple of 8.

use std::fmt;

use crate::mem::Mem;
use crate::record::{Block, Parts, INFO_SIZE, TERMINAL_SIZE};
use crate::tickring::{tick_ring_size, TICK_SLOT_SIZE};
use crate::Timeframe;

/// The first 8 bytes of every segment: ASCII `MTFCANDL`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"MTFCANDL");
/// The layout version this crate reads and writes. Lives at byte 8 forever.
/// Version 2 added the terminal record, and a symbol information record and a tick ring per
/// symbol (DESIGN.md, "Ticks and symbol information: layout version 2").
pub const LAYOUT_VERSION: u64 = 2;

/// Size of the header, which starts at byte 0.
pub const HEADER_SIZE: usize = 512;
/// Size of one symbol-table entry.
pub const SYMBOL_ENTRY_SIZE: usize = 64;
/// Size of one ring-directory entry.
pub const DIR_ENTRY_SIZE: usize = 32;
/// Size of a ring's control block (sequence, head, last change, padding).
pub const RING_CONTROL_SIZE: usize = 64;
/// Size of one candle record.
pub const RECORD_SIZE: usize = 64;
/// Size of one closed-candle slot: slot sequence, position, record.
pub const SLOT_SIZE: usize = 16 + RECORD_SIZE;
/// Number of counter words in the header.
pub const COUNTER_SLOTS: usize = 32;
/// Longest symbol name, in bytes. The name field is 32 bytes and always ends in a NUL.
pub const SYMBOL_MAX_LEN: usize = 31;
/// Largest capacity of one ring.
pub const MAX_CAPACITY: u32 = 1 << 20;
/// Most symbols in one segment.
pub const MAX_SYMBOLS: usize = 1024;
/// Most rings in one segment.
pub const MAX_RINGS: usize = 16_384;

/// Ticks a symbol's tick ring keeps unless told otherwise: MT5's own fast tick cache.
pub const DEFAULT_TICK_DEPTH: u32 = 4096;
/// Largest tick depth.
pub const MAX_TICK_DEPTH: u32 = 1 << 20;

/// Rings start on 64-byte boundaries so that a ring's control block owns its cache line.
const RING_ALIGN: usize = 64;

/// Byte offsets of the header words.
pub(crate) mod hdr {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 8;
    pub const LAYOUT_HASH: usize = 16;
    pub const TOTAL_SIZE: usize = 24;
    pub const HEADER_SIZE: usize = 32;
    pub const SYMBOL_COUNT: usize = 40;
    pub const RING_COUNT: usize = 48;
    pub const SYMBOLS_OFFSET: usize = 56;
    pub const DIRECTORY_OFFSET: usize = 64;
    pub const CREATED_NS: usize = 72;
    pub const GENERATION: usize = 80;
    pub const WRITER_PID: usize = 88;
    pub const WRITER_START_NS: usize = 96;
    pub const HEARTBEAT_NS: usize = 104;
    pub const WRITER_STATE: usize = 112;
    pub const SERVER_TIME_OFFSET: usize = 120;
    pub const LAST_UPDATE_NS: usize = 128;
    pub const FEED_STATE: usize = 136;
    pub const WRITER_PIDNS: usize = 144;
    pub const WRITER_START_TICKS: usize = 152;
    pub const FEED_KIND: usize = 160;
    /// The futex word readers sleep on (32 bits, the slot's lower half; see `wake.rs`).
    pub const WAKE_WORD: usize = 168;
    /// 1 when the writer bumps and wakes `WAKE_WORD` after every batch; 0 (a writer from
    /// before the word existed): readers look at `LAST_UPDATE_NS` instead.
    pub const WAKE_KIND: usize = 176;
    /// The writer's boot-time clock (Linux `CLOCK_BOOTTIME`, ns) at its last heartbeat; 0
    /// where the platform has none or the writer predates the word. Readers judge the
    /// heartbeat's age by it, so a wall clock set ahead cannot make a stalled writer look alive.
    pub const HEARTBEAT_BOOT_NS: usize = 184;
    /// Ticks each symbol's tick ring keeps (version 2).
    pub const TICK_DEPTH: usize = 192;
    /// Where the terminal record starts (version 2).
    pub const TERMINAL_OFFSET: usize = 200;
    /// Where the symbol information records start (version 2).
    pub const INFOS_OFFSET: usize = 208;
    /// Where the tick rings start (version 2).
    pub const TICKS_OFFSET: usize = 216;
    pub const COUNTERS: usize = 256;
}

/// Byte offsets inside a symbol-table entry.
pub(crate) mod sym {
    pub const NAME: usize = 0;
    pub const LAST_TICK_MS: usize = 32;
    pub const LAST_TICK_WALL_NS: usize = 40;
    pub const LAST_BID: usize = 48;
    pub const LAST_ASK: usize = 56;
}

/// Byte offsets inside a ring-directory entry.
pub(crate) mod dir {
    pub const SYMBOL_INDEX: usize = 0;
    pub const TIMEFRAME: usize = 8;
    pub const CAPACITY: usize = 16;
    pub const RING_OFFSET: usize = 24;
}

/// Byte offsets inside a ring.
pub(crate) mod ring {
    pub const SEQ: usize = 0;
    pub const HEAD: usize = 8;
    pub const LAST_CHANGE_NS: usize = 16;
    pub const SOURCE_FLAGS: usize = 24;
    pub const FORMING: usize = super::RING_CONTROL_SIZE;
    pub const SLOTS: usize = FORMING + super::RECORD_SIZE;
    pub const SLOT_SEQ: usize = 0;
    pub const SLOT_POSITION: usize = 8;
    pub const SLOT_RECORD: usize = 16;
}

/// What a segment holds: which symbols, and a ring of which capacity for each
/// (symbol, timeframe) pair.
///
/// Two segments built from equal layouts have the same size, offsets and layout hash, which is
/// what lets a restarted writer keep the candles of its predecessor.
///
/// ```
/// use shm_core::{Layout, Timeframe};
///
/// let mut layout = Layout::new();
/// layout.add_ring("BTCUSDc", Timeframe::M1, 1440)?;
/// layout.add_ring("BTCUSDc", Timeframe::H1, 100)?;
/// assert_eq!(layout.symbols().collect::<Vec<_>>(), ["BTCUSDc"]);
/// assert!(layout.add_ring("BTC/USD", Timeframe::M1, 10).is_err());
/// # Ok::<(), shm_core::LayoutError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    symbols: Vec<String>,
    rings: Vec<RingSpec>,
    /// Ticks each symbol's tick ring keeps.
    tick_depth: u32,
}

impl Default for Layout {
    fn default() -> Layout {
        Layout {
            symbols: Vec::new(),
            rings: Vec::new(),
            tick_depth: DEFAULT_TICK_DEPTH,
        }
    }
}

/// One ring of a [`Layout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingSpec {
    /// Index into the layout's symbols.
    pub symbol_index: u32,
    /// The ring's timeframe.
    pub timeframe: Timeframe,
    /// How many closed candles the ring keeps (the forming candle is stored beside them).
    pub capacity: u32,
}

/// Why a layout was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// The symbol name breaks the naming rule.
    InvalidSymbol(SymbolError),
    /// The (symbol, timeframe) pair was added twice.
    DuplicateRing {
        /// The symbol.
        symbol: String,
        /// The timeframe.
        timeframe: Timeframe,
    },
    /// A capacity outside `1..=MAX_CAPACITY`.
    BadCapacity {
        /// The symbol.
        symbol: String,
        /// The timeframe.
        timeframe: Timeframe,
        /// The capacity asked for.
        capacity: u32,
    },
    /// More than [`MAX_SYMBOLS`] symbols or [`MAX_RINGS`] rings.
    TooLarge,
    /// A segment needs at least one ring.
    Empty,
    /// A tick depth outside `1..=MAX_TICK_DEPTH`.
    BadTickDepth {
        /// The depth asked for.
        depth: u32,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::InvalidSymbol(e) => e.fmt(f),
            LayoutError::DuplicateRing { symbol, timeframe } => {
                write!(f, "ring {symbol} {timeframe} is listed twice")
            }
            LayoutError::BadCapacity {
                symbol,
                timeframe,
                capacity,
            } => write!(
                f,
                "ring {symbol} {timeframe}: capacity {capacity} is outside 1..={MAX_CAPACITY}"
            ),
            LayoutError::TooLarge => write!(
                f,
                "too many rings (at most {MAX_SYMBOLS} symbols and {MAX_RINGS} rings)"
            ),
            LayoutError::Empty => f.write_str("the layout has no rings"),
            LayoutError::BadTickDepth { depth } => {
                write!(f, "tick depth {depth} is outside 1..={MAX_TICK_DEPTH}")
            }
        }
    }
}

impl std::error::Error for LayoutError {}

/// Why a symbol name was refused: names are 1 to 31 bytes of `[A-Za-z0-9._#-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolError {
    /// The refused name.
    pub symbol: String,
}

impl fmt::Display for SymbolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid symbol {:?}: expected 1 to {SYMBOL_MAX_LEN} characters of A-Z a-z 0-9 . _ # -",
            self.symbol
        )
    }
}

impl std::error::Error for SymbolError {}

/// Checks a symbol name against the rule every part of the project shares:
/// 1 to 31 bytes of `[A-Za-z0-9._#-]`.
///
/// ```
/// assert!(shm_core::validate_symbol("XAUUSDc").is_ok());
/// assert!(shm_core::validate_symbol("US30.cash#").is_ok());
/// assert!(shm_core::validate_symbol("EUR/USD").is_err());
/// assert!(shm_core::validate_symbol("").is_err());
/// ```
pub fn validate_symbol(symbol: &str) -> Result<(), SymbolError> {
    let ok = (1..=SYMBOL_MAX_LEN).contains(&symbol.len())
        && symbol
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'#' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(SymbolError {
            symbol: symbol.to_owned(),
        })
    }
}

impl Layout {
    /// An empty layout.
    pub fn new() -> Layout {
        Layout::default()
    }

    /// Adds a ring for `symbol` at `timeframe` keeping `capacity` closed candles. Symbols are
    /// numbered in the order they first appear; rings keep the order they are added in.
    pub fn add_ring(
        &mut self,
        symbol: &str,
        timeframe: Timeframe,
        capacity: u32,
    ) -> Result<&mut Layout, LayoutError> {
        validate_symbol(symbol).map_err(LayoutError::InvalidSymbol)?;
        if !(1..=MAX_CAPACITY).contains(&capacity) {
            return Err(LayoutError::BadCapacity {
                symbol: symbol.to_owned(),
                timeframe,
                capacity,
            });
        }
        let symbol_index = match self.symbols.iter().position(|s| s == symbol) {
            Some(i) => i,
            None => {
                if self.symbols.len() == MAX_SYMBOLS {
                    return Err(LayoutError::TooLarge);
                }
                self.symbols.push(symbol.to_owned());
                self.symbols.len() - 1
            }
        } as u32;
        if self
            .rings
            .iter()
            .any(|r| r.symbol_index == symbol_index && r.timeframe == timeframe)
        {
            return Err(LayoutError::DuplicateRing {
                symbol: symbol.to_owned(),
                timeframe,
            });
        }
        if self.rings.len() == MAX_RINGS {
            return Err(LayoutError::TooLarge);
        }
        self.rings.push(RingSpec {
            symbol_index,
            timeframe,
            capacity,
        });
        Ok(self)
    }

    /// Sets how many ticks each symbol's tick ring keeps (default [`DEFAULT_TICK_DEPTH`]).
    pub fn set_tick_depth(&mut self, depth: u32) -> Result<&mut Layout, LayoutError> {
        if !(1..=MAX_TICK_DEPTH).contains(&depth) {
            return Err(LayoutError::BadTickDepth { depth });
        }
        self.tick_depth = depth;
        Ok(self)
    }

    /// Ticks each symbol's tick ring keeps.
    pub fn tick_depth(&self) -> u32 {
        self.tick_depth
    }

    /// The symbols, in index order.
    pub fn symbols(&self) -> impl ExactSizeIterator<Item = &str> {
        self.symbols.iter().map(String::as_str)
    }

    /// The rings, in directory order.
    pub fn rings(&self) -> &[RingSpec] {
        &self.rings
    }

    /// Name of symbol `index`.
    pub(crate) fn symbol(&self, index: u32) -> &str {
        &self.symbols[index as usize]
    }

    /// The size in bytes of a segment of this layout.
    pub fn segment_bytes(&self) -> usize {
        self.placement().total_size
    }

    pub(crate) fn from_parts(
        symbols: Vec<String>,
        rings: Vec<RingSpec>,
        tick_depth: u32,
    ) -> Layout {
        Layout {
            symbols,
            rings,
            tick_depth,
        }
    }

    /// Where everything goes, and the layout hash.
    pub(crate) fn placement(&self) -> Placement {
        let symbols_offset = HEADER_SIZE;
        let directory_offset = symbols_offset + self.symbols.len() * SYMBOL_ENTRY_SIZE;
        let mut next = align_up(
            directory_offset + self.rings.len() * DIR_ENTRY_SIZE,
            RING_ALIGN,
        );
        let ring_offsets = self
            .rings
            .iter()
            .map(|r| {
                let at = next;
                next += ring_size(r.capacity);
                at
            })
            .collect::<Vec<_>>();
        let terminal_offset = align_up(next, RING_ALIGN);
        let infos_offset = terminal_offset + TERMINAL_SIZE;
        let ticks_offset = infos_offset + self.symbols.len() * INFO_SIZE;
        let total_size = ticks_offset + self.symbols.len() * tick_ring_size(self.tick_depth);

        let mut h = Fnv1a::new();
        for word in [
            LAYOUT_VERSION,
            HEADER_SIZE as u64,
            SYMBOL_ENTRY_SIZE as u64,
            DIR_ENTRY_SIZE as u64,
            RING_CONTROL_SIZE as u64,
            RECORD_SIZE as u64,
            SLOT_SIZE as u64,
            COUNTER_SLOTS as u64,
            self.symbols.len() as u64,
            self.rings.len() as u64,
            total_size as u64,
        ] {
            h.word(word);
        }
        for name in &self.symbols {
            for word in name_words(name) {
                h.word(word);
            }
        }
        for (r, &offset) in self.rings.iter().zip(&ring_offsets) {
            h.word(u64::from(r.symbol_index));
            h.word(u64::from(r.timeframe.mt5_code()));
            h.word(u64::from(r.capacity));
            h.word(offset as u64);
        }
        for word in [
            TERMINAL_SIZE,
            INFO_SIZE,
            TICK_SLOT_SIZE,
            self.tick_depth as usize,
            terminal_offset,
            infos_offset,
            ticks_offset,
        ] {
            h.word(word as u64);
        }
        Placement {
            symbols_offset,
            directory_offset,
            ring_offsets,
            terminal_offset,
            infos_offset,
            ticks_offset,
            total_size,
            hash: h.finish(),
        }
    }
}

/// The computed position of every part of a segment built from one [`Layout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placement {
    pub symbols_offset: usize,
    pub directory_offset: usize,
    pub ring_offsets: Vec<usize>,
    pub terminal_offset: usize,
    pub infos_offset: usize,
    pub ticks_offset: usize,
    pub total_size: usize,
    pub hash: u64,
}

impl Placement {
    /// The version-2 parts of a segment of `layout` placed here, checked against the mapping
    /// `mem`: `None` if a tick ring lies outside it (the records are read with checked loads).
    pub(crate) fn parts(&self, layout: &Layout, mem: &Mem) -> Option<Parts> {
        let depth = layout.tick_depth();
        let symbols = layout.symbols().len();
        Some(Parts {
            tick_rings: (0..symbols)
                .map(|i| {
                    crate::tickring::TickRingRef::new(self.tick_ring_offset(i, depth), depth, mem)
                })
                .collect::<Option<Vec<_>>>()?,
            infos: (0..symbols)
                .map(|i| Block {
                    base: self.info_offset(i),
                    size: INFO_SIZE,
                })
                .collect(),
            terminal: Block {
                base: self.terminal_offset,
                size: TERMINAL_SIZE,
            },
        })
    }

    /// Where symbol `i`'s information record starts.
    pub fn info_offset(&self, i: usize) -> usize {
        self.infos_offset + i * INFO_SIZE
    }

    /// Where symbol `i`'s tick ring starts, for rings of `depth` ticks.
    pub fn tick_ring_offset(&self, i: usize, depth: u32) -> usize {
        self.ticks_offset + i * tick_ring_size(depth)
    }
}

/// Bytes taken by a ring of `capacity` closed slots, rounded up to the ring alignment.
pub(crate) fn ring_size(capacity: u32) -> usize {
    align_up(ring::SLOTS + capacity as usize * SLOT_SIZE, RING_ALIGN)
}

fn align_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// A symbol name as the four little-endian words of its NUL-padded 32-byte field.
pub(crate) fn name_words(name: &str) -> [u64; 4] {
    let mut bytes = [0u8; 32];
    bytes[..name.len()].copy_from_slice(name.as_bytes());
    let mut words = [0u64; 4];
    for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        *w = u64::from_le_bytes(chunk.try_into().expect("chunks of 8"));
    }
    words
}

/// Decodes a name field; `None` if it is not a valid symbol.
pub(crate) fn name_from_words(words: [u64; 4]) -> Option<String> {
    let mut bytes = [0u8; 32];
    for (chunk, w) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    let len = bytes.iter().position(|&b| b == 0)?;
    let name = std::str::from_utf8(&bytes[..len]).ok()?;
    validate_symbol(name).ok()?;
    Some(name.to_owned())
}

/// 64-bit FNV-1a over the little-endian bytes of each word.
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
    fn word(&mut self, w: u64) {
        for b in w.to_le_bytes() {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_symbols() -> Layout {
        let mut l = Layout::new();
        l.add_ring("BTCUSDc", Timeframe::M1, 1440).unwrap();
        l.add_ring("BTCUSDc", Timeframe::H1, 100).unwrap();
        l.add_ring("XAUUSDc", Timeframe::M1, 3).unwrap();
        l
    }

    #[test]
    fn offsets_follow_the_documented_formula() {
        let p = two_symbols().placement();
        assert_eq!(p.symbols_offset, 512);
        assert_eq!(p.directory_offset, 512 + 2 * 64);
        // Directory ends at 640 + 3 * 32 = 736, rounded up to 768.
        assert_eq!(p.ring_offsets[0], 768);
        assert_eq!(ring_size(1440), 128 + 1440 * 80);
        assert_eq!(p.ring_offsets[1], 768 + 128 + 1440 * 80);
        assert_eq!(ring_size(3), 384); // 128 + 240 = 368, rounded up to 384
                                       // Version 2: the terminal record, then a symbol record per symbol, then a tick ring
                                       // per symbol.
        assert_eq!(p.terminal_offset, p.ring_offsets[2] + 384);
        assert_eq!(p.infos_offset, p.terminal_offset + 512);
        assert_eq!(p.ticks_offset, p.infos_offset + 2 * 2432);
        assert_eq!(tick_ring_size(4096), 64 + 4096 * 64);
        assert_eq!(p.total_size, p.ticks_offset + 2 * (64 + 4096 * 64));
        let mut shallow = two_symbols();
        shallow.set_tick_depth(10).unwrap();
        assert_ne!(shallow.placement().hash, p.hash);
        assert!(shallow.set_tick_depth(0).is_err());
        assert!(p.ring_offsets.iter().all(|o| o % 64 == 0));
    }

    #[test]
    fn header_words_do_not_overlap_and_version_never_moves() {
        assert_eq!(hdr::VERSION, 8);
        assert_eq!(hdr::MAGIC, 0);
        assert_eq!(hdr::COUNTERS + COUNTER_SLOTS * 8, HEADER_SIZE);
        const { assert!(hdr::FEED_STATE < hdr::COUNTERS) };
        assert_eq!(&MAGIC.to_le_bytes(), b"MTFCANDL");
    }

    #[test]
    fn the_tables_of_layout_md_state_the_offsets_of_the_code() {
        let doc = include_str!("../../docs/LAYOUT.md");
        let header = [
            ("magic", hdr::MAGIC),
            ("layout_version", hdr::VERSION),
            ("layout_hash", hdr::LAYOUT_HASH),
            ("total_size", hdr::TOTAL_SIZE),
            ("header_size", hdr::HEADER_SIZE),
            ("symbol_count", hdr::SYMBOL_COUNT),
            ("ring_count", hdr::RING_COUNT),
            ("symbols_offset", hdr::SYMBOLS_OFFSET),
            ("directory_offset", hdr::DIRECTORY_OFFSET),
            ("created_ns", hdr::CREATED_NS),
            ("generation", hdr::GENERATION),
            ("writer_pid", hdr::WRITER_PID),
            ("writer_start_ns", hdr::WRITER_START_NS),
            ("heartbeat_ns", hdr::HEARTBEAT_NS),
            ("writer_state", hdr::WRITER_STATE),
            ("server_time_offset_s", hdr::SERVER_TIME_OFFSET),
            ("last_update_ns", hdr::LAST_UPDATE_NS),
            ("feed_state", hdr::FEED_STATE),
            ("writer_pidns", hdr::WRITER_PIDNS),
            ("writer_start_ticks", hdr::WRITER_START_TICKS),
            ("feed_kind", hdr::FEED_KIND),
            ("heartbeat_boot_ns", hdr::HEARTBEAT_BOOT_NS),
            ("tick_depth", hdr::TICK_DEPTH),
            ("terminal_offset", hdr::TERMINAL_OFFSET),
            ("infos_offset", hdr::INFOS_OFFSET),
            ("ticks_offset", hdr::TICKS_OFFSET),
            ("begun", crate::tickring::off::BEGUN),
            ("updated_ns", crate::record::info_off::UPDATED_NS),
            ("source", crate::record::info_off::SOURCE),
            ("numbers[83]", crate::record::info_off::NUMBERS),
            ("strings[13]", crate::record::info_off::STRINGS),
            ("confirmed_ns", crate::record::term_off::CONFIRMED_NS),
            ("present", crate::record::term_off::PRESENT),
            ("build", crate::record::term_off::BUILD),
            ("connected", crate::record::term_off::CONNECTED),
            ("login", crate::record::term_off::LOGIN),
            ("company", crate::record::term_off::COMPANY),
            ("server", crate::record::term_off::SERVER),
            ("counters[32]", hdr::COUNTERS),
            ("seq", ring::SEQ),
            ("head", ring::HEAD),
            ("last_change_ns", ring::LAST_CHANGE_NS),
            ("source_flags", ring::SOURCE_FLAGS),
            ("forming", ring::FORMING),
            ("slot_seq", ring::SLOT_SEQ),
            ("position", ring::SLOT_POSITION),
            ("record", ring::SLOT_RECORD),
            ("last_tick_ms", sym::LAST_TICK_MS),
            ("last_tick_wall_ns", sym::LAST_TICK_WALL_NS),
            ("symbol_index", dir::SYMBOL_INDEX),
            ("timeframe", dir::TIMEFRAME),
            ("capacity", dir::CAPACITY),
            ("ring_offset", dir::RING_OFFSET),
        ];
        for (name, offset) in header {
            let row = format!("| {offset} | `{name}` |");
            assert!(doc.contains(&row), "LAYOUT.md lacks the row {row}");
        }
        for c in crate::Counter::ALL {
            let item = format!("{} `{}`", c as usize, c.as_str());
            assert!(doc.contains(&item), "LAYOUT.md lacks the counter {item}");
        }
        for f in [
            crate::FeedState::Starting,
            crate::FeedState::Backfilling,
            crate::FeedState::Live,
            crate::FeedState::Finished,
            crate::FeedState::Disconnected,
            crate::FeedState::Stopped,
        ] {
            let item = format!("{} {}", f as u64, f.as_str());
            assert!(doc.contains(&item), "LAYOUT.md lacks the feed state {item}");
        }
        for k in [
            crate::FeedKind::Unrecorded,
            crate::FeedKind::Synthetic,
            crate::FeedKind::Csv,
            crate::FeedKind::Mt5,
        ] {
            let item = format!("{} {}", k as u64, k.as_str());
            assert!(doc.contains(&item), "LAYOUT.md lacks the feed kind {item}");
        }
        assert_eq!(crate::LATEST_TIME, 4_102_444_800);
        assert!(
            doc.contains("4,102,444,800"),
            "LAYOUT.md states the latest candle time"
        );
    }

    #[test]
    fn layout_hash_sees_names_capacities_and_order() {
        let base = two_symbols().placement().hash;
        assert_eq!(base, two_symbols().placement().hash);

        let mut bigger = Layout::new();
        bigger.add_ring("BTCUSDc", Timeframe::M1, 1441).unwrap();
        bigger.add_ring("BTCUSDc", Timeframe::H1, 100).unwrap();
        bigger.add_ring("XAUUSDc", Timeframe::M1, 3).unwrap();
        assert_ne!(bigger.placement().hash, base);

        let mut renamed = Layout::new();
        renamed.add_ring("BTCUSDm", Timeframe::M1, 1440).unwrap();
        renamed.add_ring("BTCUSDm", Timeframe::H1, 100).unwrap();
        renamed.add_ring("XAUUSDc", Timeframe::M1, 3).unwrap();
        assert_ne!(renamed.placement().hash, base);
    }

    #[test]
    fn bad_layouts_are_refused_with_the_reason() {
        let mut l = Layout::new();
        assert!(matches!(
            l.add_ring("A", Timeframe::M1, 0),
            Err(LayoutError::BadCapacity { capacity: 0, .. })
        ));
        assert!(matches!(
            l.add_ring(&"X".repeat(32), Timeframe::M1, 1),
            Err(LayoutError::InvalidSymbol(_))
        ));
        l.add_ring("A", Timeframe::M1, 1).unwrap();
        let err = l.add_ring("A", Timeframe::M1, 2).unwrap_err();
        assert_eq!(err.to_string(), "ring A M1 is listed twice");
    }

    #[test]
    fn symbol_names_round_trip_through_their_field() {
        for name in ["A", "BTCUSDc", &"Z".repeat(31), "US30.cash#-_"] {
            assert_eq!(name_from_words(name_words(name)).as_deref(), Some(name));
        }
        assert_eq!(name_from_words([0; 4]), None);
        assert_eq!(name_from_words([u64::MAX; 4]), None);
    }
}
