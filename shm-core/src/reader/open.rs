//! Attaching to a segment: every check it must pass before a reader maps it.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Reader, DEFAULT_MAX_ATTEMPTS, DEFAULT_STALL_AFTER};
use crate::error::OpenError;
use crate::files::{self, Untrusted};
use crate::header::Header;
use crate::layout::{
    self, dir, sym, Layout, RingSpec, HEADER_SIZE, LAYOUT_VERSION, MAGIC, MAX_CAPACITY, MAX_RINGS,
    MAX_SYMBOLS, MAX_TICK_DEPTH,
};
use crate::lock::{self};
use crate::mem::Mapping;
use crate::record::Parts;
use crate::ring::RingRef;
use crate::trust::Trust;
use crate::wake::Waiter;
use crate::{SegmentPath, Timeframe};

impl Reader {
    /// Maps the segment at `path` read-only and checks its owner (one of the accounts
    /// [`Trust::for_process`] trusts), magic, version, size, layout hash and directory.
    pub fn open(path: &SegmentPath) -> Result<Reader, OpenError> {
        let trust = Trust::for_process().map_err(OpenError::Trust)?;
        Reader::open_trusting(path, &trust)
    }

    /// As [`open`](Self::open), trusting exactly the accounts of `trust`.
    pub fn open_trusting(path: &SegmentPath, trust: &Trust) -> Result<Reader, OpenError> {
        let path = path.path();
        // O_NONBLOCK: a FIFO planted at the name must not hang the reader; O_NOFOLLOW: nor
        // may a symlink point it elsewhere.
        let file = files::open(path, false).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => OpenError::NotFound {
                path: path.to_owned(),
            },
            _ => OpenError::Io {
                path: path.to_owned(),
                source,
            },
        })?;
        let io = |source| OpenError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = file.metadata().map_err(io)?;
        // Only a regular file can be mapped safely, and only one that nobody but its owner can
        // write: anyone else who can write it can forge candles or truncate it (SIGBUS).
        // And only one whose owner we trust: anyone can create a name in /dev/shm first.
        let owner = files::owner(&meta);
        files::regular(&meta)
            .and_then(|()| files::owner_only_writes(&meta))
            .and_then(|()| {
                if trust.allows(owner) {
                    Ok(())
                } else {
                    Err(Untrusted::UntrustedOwner {
                        uid: owner,
                        name: crate::trust::name_of(owner),
                    })
                }
            })
            .map_err(|why| OpenError::Untrusted {
                path: path.to_owned(),
                why,
            })?;
        let lock_probe = lock::open_probe(path, owner);
        let wake = Waiter::open(path, owner);
        // Check the length before mapping: touching a page past the end of the file is SIGBUS.
        let len = meta.len();
        let truncated = |expected: u64| OpenError::Truncated {
            path: path.to_owned(),
            found: len,
            expected,
        };
        if len < HEADER_SIZE as u64 {
            return Err(truncated(HEADER_SIZE as u64));
        }
        let len = usize::try_from(len).map_err(|_| truncated(len))?;
        let map = Mapping::read_only(&file, len).map_err(io)?;
        let mem = map.mem();
        // The header, version first with Acquire (see `Header::load`): if we see version 1, we
        // see the whole initialised header and directory.
        let h = Header::load(mem);
        let word = |off| mem.load(off, Ordering::Relaxed);
        let version = h.version;
        let magic = h.magic;
        if magic != MAGIC {
            return Err(OpenError::BadMagic {
                path: path.to_owned(),
                found: magic,
            });
        }
        if version == 0 {
            return Err(OpenError::Initializing {
                path: path.to_owned(),
            });
        }
        if version != LAYOUT_VERSION {
            return Err(OpenError::VersionMismatch {
                path: path.to_owned(),
                found: version,
                expected: LAYOUT_VERSION,
            });
        }
        let corrupt = |what: String| OpenError::Corrupt {
            path: path.to_owned(),
            what,
        };
        let total = h.total_size;
        if (len as u64) < total {
            return Err(truncated(total));
        }
        if h.header_size != HEADER_SIZE as u64 {
            return Err(corrupt(format!(
                "header_size is {}, expected {HEADER_SIZE}",
                h.header_size
            )));
        }
        let (symbol_count, ring_count) = (h.symbol_count, h.ring_count);
        if symbol_count > MAX_SYMBOLS as u64 || ring_count == 0 || ring_count > MAX_RINGS as u64 {
            return Err(corrupt(format!(
                "{symbol_count} symbols and {ring_count} rings"
            )));
        }
        let (symbol_count, ring_count) = (symbol_count as usize, ring_count as usize);
        // Everything read below lies inside the header, symbol table and directory, whose
        // extent is checked against the file length first.
        let symbols_offset = HEADER_SIZE;
        let directory_offset = symbols_offset + symbol_count * layout::SYMBOL_ENTRY_SIZE;
        let directory_end = directory_offset + ring_count * layout::DIR_ENTRY_SIZE;
        if h.symbols_offset != symbols_offset as u64
            || h.directory_offset != directory_offset as u64
        {
            return Err(corrupt("symbol table or directory offset".into()));
        }
        if directory_end as u64 > total {
            return Err(corrupt(format!(
                "directory ends at {directory_end}, segment at {total}"
            )));
        }

        let mut symbols = Vec::with_capacity(symbol_count);
        for i in 0..symbol_count {
            let at = symbols_offset + i * layout::SYMBOL_ENTRY_SIZE + sym::NAME;
            let words = std::array::from_fn(|k| word(at + 8 * k));
            let name = layout::name_from_words(words)
                .ok_or_else(|| corrupt(format!("symbol {i} has an invalid name")))?;
            symbols.push(name);
        }
        let mut specs = Vec::with_capacity(ring_count);
        let mut stored_offsets = Vec::with_capacity(ring_count);
        for i in 0..ring_count {
            let at = directory_offset + i * layout::DIR_ENTRY_SIZE;
            let symbol_index = word(at + dir::SYMBOL_INDEX);
            let tf = word(at + dir::TIMEFRAME);
            let capacity = word(at + dir::CAPACITY);
            if symbol_index >= symbol_count as u64 {
                return Err(corrupt(format!("ring {i} names symbol {symbol_index}")));
            }
            let timeframe = u32::try_from(tf)
                .ok()
                .and_then(Timeframe::from_mt5_code)
                .ok_or_else(|| corrupt(format!("ring {i} has timeframe code {tf}")))?;
            if !(1..=u64::from(MAX_CAPACITY)).contains(&capacity) {
                return Err(corrupt(format!("ring {i} has capacity {capacity}")));
            }
            specs.push(RingSpec {
                symbol_index: symbol_index as u32,
                timeframe,
                capacity: capacity as u32,
            });
            stored_offsets.push(word(at + dir::RING_OFFSET));
        }
        // One name per symbol, one ring per symbol and timeframe: a reader looks rings up by
        // name, so a repeat would let one of two rings answer for both.
        let mut seen = std::collections::HashSet::with_capacity(symbols.len());
        if let Some(dup) = symbols.iter().find(|s| !seen.insert(s.as_str())) {
            return Err(corrupt(format!("symbol {dup} appears twice")));
        }
        let mut seen = std::collections::HashSet::with_capacity(specs.len());
        if let Some(dup) = specs
            .iter()
            .find(|r| !seen.insert((r.symbol_index, r.timeframe)))
        {
            return Err(corrupt(format!(
                "two {} {} rings",
                symbols[dup.symbol_index as usize], dup.timeframe
            )));
        }
        let depth = h.tick_depth;
        if !(1..=u64::from(MAX_TICK_DEPTH)).contains(&depth) {
            return Err(corrupt(format!("tick depth {depth}")));
        }
        let layout = Layout::from_parts(symbols, specs, depth as u32);
        let placement = layout.placement();
        let stored_hash = h.layout_hash;
        if stored_hash != placement.hash {
            return Err(OpenError::LayoutHashMismatch {
                path: path.to_owned(),
                found: stored_hash,
                expected: placement.hash,
            });
        }
        // Ring offsets are not trusted from the file: they must equal the computed placement,
        // which lies inside `total`, which lies inside the mapping.
        if placement.total_size as u64 != total
            || stored_offsets
                .iter()
                .zip(&placement.ring_offsets)
                .any(|(&s, &c)| s != c as u64)
            || h.terminal_offset != placement.terminal_offset as u64
            || h.infos_offset != placement.infos_offset as u64
            || h.ticks_offset != placement.ticks_offset as u64
        {
            return Err(corrupt("ring offsets differ from the layout".into()));
        }
        let rings = layout
            .rings()
            .iter()
            .zip(&placement.ring_offsets)
            .map(|(r, &base)| RingRef::new(base, r.capacity, mem))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| corrupt("a ring lies outside the file".into()))?;
        let Parts {
            tick_rings,
            infos,
            terminal,
        } = placement
            .parts(&layout, mem)
            .ok_or_else(|| corrupt("a tick ring lies outside the file".into()))?;
        Ok(Reader {
            map,
            file,
            lock_probe,
            wake,
            path: path.to_owned(),
            trust: trust.clone(),
            layout,
            rings,
            tick_rings,
            infos,
            terminal,
            symbols_offset,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            stall_after: DEFAULT_STALL_AFTER,
            retries: AtomicU64::new(0),
            checked: (0..ring_count).map(|_| AtomicU64::new(0)).collect(),
        })
    }
}
