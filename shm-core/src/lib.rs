//! Multi-timeframe OHLC candles in a named shared-memory segment: one writer process, any
//! number of reader processes, no locks and no system calls on the read path.
//!
//! The writer ([`Writer`]) owns a file in `/dev/shm` (on Windows, in
//! `%LOCALAPPDATA%\mtf-candles`: see [`segment_dir`]) holding one fixed-size ring of candle
//! records per (symbol, timeframe), each guarded by a seqlock. Readers ([`Reader`]) map it
//! read-only and copy consistent snapshots through atomic loads in a few hundred nanoseconds;
//! a torn candle is never returned. The byte layout is documented in `docs/LAYOUT.md` so that
//! readers can be written in other languages.
//!
//! ```
//! use shm_core::{Candle, Layout, Liveness, Reader, SegmentPath, Timeframe, Writer, WriterOptions};
//!
//! # let dir = std::env::temp_dir().join(format!("shm-core-doc-lib-{}", std::process::id()));
//! let path = SegmentPath::at(&dir); // or SegmentPath::named("mtf-candles") for /dev/shm
//! let mut layout = Layout::new();
//! layout.add_ring("XAUUSDc", Timeframe::M1, 1440)?;
//!
//! let mut writer = Writer::create(&path, &layout, &WriterOptions::default())?;
//! let m1 = writer.ring("XAUUSDc", Timeframe::M1).unwrap();
//! writer.push_closed(m1, &Candle::flat(0, 4000.0));
//! writer.update_forming(m1, &Candle::flat(60, 4001.5));
//! writer.set_running();
//!
//! // In another process:
//! let reader = Reader::open(&path)?;
//! let latest = reader.ring("XAUUSDc", Timeframe::M1).unwrap().latest()?.unwrap();
//! assert_eq!((latest.close, latest.forming), (4001.5, true));
//! assert_eq!(reader.status().liveness, Liveness::Alive);
//!
//! drop(writer); // marks the segment stopped; the file and its candles stay
//! assert_eq!(reader.status().liveness, Liveness::Stopped);
//! # shm_core::remove_segment(&shm_core::SegmentPath::at(&dir))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
// The one crate of the workspace with `unsafe` (mapping the segment, atomic views of it, and
// a few libc calls); the workspace denies it everywhere else. Every block says why it is sound.
#![allow(unsafe_code)]

// Readers map the segment read-only and load 64-bit words atomically. On 64-bit targets that
// is a plain load; on some 32-bit ones it is a compare-exchange, which writes and would fault
// on a read-only mapping (docs/LAYOUT.md, "Conventions").
#[cfg(not(target_pointer_width = "64"))]
compile_error!("shm-core needs a 64-bit target: its readers rely on plain 64-bit atomic loads");

mod alloc;
mod candle;
mod error;
mod files;
mod header;
pub mod history;
mod info;
mod layout;
mod lock;
mod mem;
mod path;
mod process;
pub use alloc::cap_malloc_arenas;
mod reader;
mod record;
mod ring;
mod status;
mod tick;
mod tickring;
pub mod time;
mod timeframe;
mod trust;
mod validate;
mod wake;
mod writer;

pub use candle::{Candle, CandleDefect, LATEST_TIME};
pub use error::{CreateError, OpenError, ReadError};
pub use files::Untrusted;
pub use history::{default_history_dir, History, HistoryError, HistoryWriter, Keep};
pub use info::{
    FieldKind, InfoError, InfoSource, InfoValue, SymbolInfo, TerminalInfo, INFO_STRING_MAX,
    SYMBOL_INFO_FIELDS,
};
pub use layout::{
    validate_symbol, Layout, LayoutError, RingSpec, SymbolError, DEFAULT_TICK_DEPTH, HEADER_SIZE,
    LAYOUT_VERSION, MAGIC, MAX_CAPACITY, MAX_RINGS, MAX_SYMBOLS, MAX_TICK_DEPTH, RECORD_SIZE,
    SLOT_SIZE, SYMBOL_MAX_LEN,
};
pub use path::{segment_dir, SegmentNameError, SegmentPath, DEFAULT_SEGMENT_NAME};
pub use reader::{
    group_bars, tiles, ChangeToken, ClosedBars, NextBar, Reader, RingReader, RingStats,
    SymbolRecord, TerminalRecord, TickInfo, TickRingReader, TickSpan, Timeline, WaitOutcome,
    DEFAULT_MAX_ATTEMPTS, DEFAULT_STALL_AFTER,
};
pub use record::{INFO_SIZE, TERMINAL_SIZE};
pub use status::{Counter, Counters, FeedKind, FeedState, Liveness, Status, WriterState};
pub use tick::{
    Tick, TickDefect, TICK_FLAGS_KNOWN, TICK_FLAG_ASK, TICK_FLAG_BID, TICK_FLAG_BUY,
    TICK_FLAG_LAST, TICK_FLAG_SELL, TICK_FLAG_VOLUME,
};
pub use tickring::TICK_SLOT_SIZE;
pub use time::{
    civil_from_days, days_from_civil, format_server_offset, iso8601_ms, now_ns,
    parse_server_offset, OffsetError, SERVER_OFFSET_RANGE,
};
pub use timeframe::{Timeframe, UnknownTimeframe};
pub use trust::{set_process_trust, Trust, TrustError, TRUST_ENV};
pub use validate::InvalidRecord;
pub use wake::MAX_SLICE as MAX_WAIT_SLICE;
pub use writer::{remove_segment, RingId, Start, SymbolId, Writer, WriterOptions};
