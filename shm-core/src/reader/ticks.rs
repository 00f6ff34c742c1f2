//! The reads of version 2: a symbol's ticks, its information, and the terminal's identity.

use std::sync::atomic::Ordering;

use super::Reader;
use crate::error::ReadError;
use crate::info::{InfoSource, SymbolInfo, TerminalInfo};
use crate::record::{self, BlockBusy, INFO_SIZE, TERMINAL_SIZE};
use crate::tick::{self, Tick};
pub use crate::tickring::TickSpan;
use crate::tickring::{BadCounters, From};

/// A symbol's information as the segment holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolRecord {
    /// The fields, as stored: [`SymbolInfo::with_tick`] brings the moving ones up to date.
    pub info: SymbolInfo,
    /// Where it came from.
    pub source: InfoSource,
    /// The writer's clock when it was stored (unix ns).
    pub updated_ns: u64,
}

/// The terminal's identity as the segment holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalRecord {
    /// The terminal and its account.
    pub info: TerminalInfo,
    /// The writer's clock when the source last confirmed it (unix ns).
    pub confirmed_ns: u64,
}

/// One symbol's tick ring, from a [`Reader`].
///
/// ```
/// use shm_core::{Layout, Reader, SegmentPath, Tick, Timeframe, Writer, WriterOptions};
///
/// # let dir = std::env::temp_dir().join(format!("shm-core-doc-ticks-{}", std::process::id()));
/// let path = SegmentPath::at(&dir);
/// let mut layout = Layout::new();
/// layout.add_ring("EURUSD", Timeframe::M1, 10)?;
/// let mut writer = Writer::create(&path, &layout, &WriterOptions::default())?;
/// let eurusd = writer.symbol("EURUSD").unwrap();
/// for ms in [1_000, 1_500, 1_500] {
///     let tick = Tick { time_msc: ms, bid: 1.1, ask: 1.2, flags: 6, ..Tick::default() };
///     writer.push_tick(eurusd, &tick)?;
/// }
///
/// let reader = Reader::open(&path)?;
/// let mut ticks = Vec::new();
/// reader.ticks("EURUSD").unwrap().read_since(1_200, 100, &mut ticks)?;
/// assert_eq!(ticks.len(), 2);
/// # drop(writer); shm_core::remove_segment(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TickRingReader<'a> {
    reader: &'a Reader,
    index: usize,
}

impl Reader {
    /// The tick ring of `symbol`.
    pub fn ticks(&self, symbol: &str) -> Option<TickRingReader<'_>> {
        let index = self.layout.symbols().position(|s| s == symbol)?;
        Some(TickRingReader {
            reader: self,
            index,
        })
    }

    /// The information record of `symbol`: `Ok(None)` if the symbol has none (yet).
    pub fn symbol_info(&self, symbol: &str) -> Result<Option<SymbolRecord>, ReadError> {
        let Some(i) = self.layout.symbols().position(|s| s == symbol) else {
            return Ok(None);
        };
        let payload = self.infos[i]
            .read(self.mem(), (INFO_SIZE - 8) / 8, self.max_attempts)
            .map_err(|BlockBusy| self.busy())?;
        let found = record::info_from_payload(&payload)
            .map_err(|record::BadField(what)| ReadError::Damaged { what })?;
        Ok(found.map(|(mut info, source, updated_ns)| {
            // The name is the segment's own, whatever the source called it.
            let _ = info.set("name", crate::InfoValue::Str(symbol));
            SymbolRecord {
                info,
                source,
                updated_ns,
            }
        }))
    }

    /// A number that changes whenever the record of `symbol` is written (its sequence; odd
    /// while a write is open): a reader that keeps a decoded record reads it again only
    /// when this changed. `None` for a symbol the segment does not hold.
    pub fn symbol_info_version(&self, symbol: &str) -> Option<u64> {
        let i = self.layout.symbols().position(|s| s == symbol)?;
        Some(self.infos[i].sequence(self.mem()))
    }

    /// The terminal's identity: `Ok(None)` if the feed has no terminal (synthetic, CSV).
    pub fn terminal(&self) -> Result<Option<TerminalRecord>, ReadError> {
        let payload = self
            .terminal
            .read(self.mem(), (TERMINAL_SIZE - 8) / 8, self.max_attempts)
            .map_err(|BlockBusy| self.busy())?;
        let found = record::terminal_from_payload(&payload)
            .map_err(|record::BadField(what)| ReadError::Damaged { what })?;
        Ok(found.map(|(info, confirmed_ns)| TerminalRecord { info, confirmed_ns }))
    }

    fn busy(&self) -> ReadError {
        self.retries
            .fetch_add(u64::from(self.max_attempts), Ordering::Relaxed);
        ReadError::Busy {
            attempts: self.max_attempts,
        }
    }
}

impl<'a> TickRingReader<'a> {
    /// The symbol.
    pub fn symbol(&self) -> &'a str {
        self.reader
            .layout
            .symbols()
            .nth(self.index)
            .unwrap_or_default()
    }

    /// Ticks the ring keeps.
    pub fn capacity(&self) -> u64 {
        self.reader.tick_rings[self.index].capacity()
    }

    /// Ticks ever written into the ring (not capped by its capacity).
    pub fn total(&self) -> u64 {
        self.reader.tick_rings[self.index]
            .counters(self.reader.mem())
            .1
    }

    /// The writer's clock (unix ns) when the newest tick was written; 0 if none was.
    pub fn last_change_ns(&self) -> u64 {
        self.reader.tick_rings[self.index].last_change_ns(self.reader.mem())
    }

    /// The newest `n` ticks, oldest first, into `out` (cleared first).
    pub fn read_last(&self, n: usize, out: &mut Vec<Tick>) -> Result<TickSpan, ReadError> {
        self.read(From::Newest(n), n, out)
    }

    /// At most `max` ticks from the first at or after `time_msc` (server time, ms), oldest
    /// first: MT5's `copy_ticks_from`.
    pub fn read_since(
        &self,
        time_msc: i64,
        max: usize,
        out: &mut Vec<Tick>,
    ) -> Result<TickSpan, ReadError> {
        self.read(From::Time(time_msc), max, out)
    }

    /// The ticks from `from_msc` to `to_msc` inclusive (server time, ms), at most `max`:
    /// MT5's `copy_ticks_range`.
    pub fn read_range(
        &self,
        from_msc: i64,
        to_msc: i64,
        max: usize,
        out: &mut Vec<Tick>,
    ) -> Result<TickSpan, ReadError> {
        let span = self.read(From::Time(from_msc), max, out)?;
        let keep = out.partition_point(|t| t.time_msc <= to_msc);
        out.truncate(keep);
        Ok(span)
    }

    /// At most `max` ticks from position `position` on (or from the oldest the ring still
    /// holds, if it is older; `span.first` says which): for following the ring, ask again
    /// from the returned `span.head`.
    pub fn read_from(
        &self,
        position: u64,
        max: usize,
        out: &mut Vec<Tick>,
    ) -> Result<TickSpan, ReadError> {
        self.read(From::Position(position), max, out)
    }

    /// The newest tick, if there is one.
    pub fn latest(&self) -> Result<Option<Tick>, ReadError> {
        let mut out = Vec::with_capacity(1);
        self.read_last(1, &mut out)?;
        Ok(out.pop())
    }

    /// At most `max` ticks from the first at or after `time_msc`, each made into the caller's
    /// row by `map` as it is copied (MT5's 60-byte numpy row, a wire message, …): one pass
    /// instead of a copy and a conversion. The rows are handed out only if every tick keeps
    /// the record's rules, as with [`read_since`](Self::read_since).
    pub fn read_since_as<T>(
        &self,
        time_msc: i64,
        max: usize,
        out: &mut Vec<T>,
        map: impl Fn(&Tick) -> T,
    ) -> Result<TickSpan, ReadError> {
        let ring = &self.reader.tick_rings[self.index];
        let max = max.min(ring.capacity() as usize);
        let table = self.table_newest_ms();
        let newest = std::cell::Cell::new(None);
        let (span, retries, good) = ring
            .read_as(
                self.reader.mem(),
                From::Time(time_msc),
                max,
                out,
                self.reader.max_attempts,
                |t| {
                    newest.set(Some(t.time_msc));
                    map(t)
                },
            )
            .map_err(|BadCounters { .. }| ReadError::Damaged {
                what: "a tick ring's counters",
            })?;
        self.count_retries(retries);
        if !good {
            out.clear();
            // The slow path: the same ticks again, as ticks, to say which rule broke.
            let mut ticks = Vec::new();
            self.read(From::Time(time_msc), max, &mut ticks)?;
            return Err(ReadError::Damaged {
                what: "a tick that changed while it was read",
            });
        }
        if let Err(e) = Self::agrees_with_table(table, &span, out.len(), newest.get()) {
            out.clear();
            return Err(e);
        }
        Ok(span)
    }

    /// The symbol table's newest tick time (ms), if the writer recorded one: loaded before
    /// the ring is read. Acquire: the writer stores it with Release after the ring's `head`
    /// (`Writer::push_tick` then `record_tick`), so once this load sees a tick's time, the
    /// ring's head loaded after it covers that tick (on ARM as on x86).
    fn table_newest_ms(&self) -> Option<i64> {
        let at = self.reader.symbols_offset + self.index * crate::layout::SYMBOL_ENTRY_SIZE;
        let ms = self
            .reader
            .mem()
            .load(at + crate::layout::sym::LAST_TICK_MS, Ordering::Acquire) as i64;
        // Relaxed: only whether any tick was recorded (0 before the first).
        let wall = self.reader.mem().load(
            at + crate::layout::sym::LAST_TICK_WALL_NS,
            Ordering::Relaxed,
        );
        (wall != 0).then_some(ms)
    }

    /// Every reader of the newest tick checks it the same way: a read that reaches the ring's
    /// newest position must end at a tick no older than the symbol table's, read before it.
    /// A `head` set back, or a newest tick dated back, would otherwise pass as the newest.
    fn agrees_with_table(
        table_ms: Option<i64>,
        span: &TickSpan,
        read: usize,
        newest_ms: Option<i64>,
    ) -> Result<(), ReadError> {
        let reaches_newest = span.first + read as u64 == span.head;
        match (table_ms, newest_ms) {
            (Some(table), Some(newest)) if reaches_newest && newest < table => {
                Err(ReadError::Damaged {
                    what: "a tick ring whose newest tick is older than the symbol table's",
                })
            }
            _ => Ok(()),
        }
    }

    fn count_retries(&self, retries: u32) {
        if retries > 0 {
            self.reader
                .retries
                .fetch_add(u64::from(retries), Ordering::Relaxed);
        }
    }

    fn read(&self, from: From, max: usize, out: &mut Vec<Tick>) -> Result<TickSpan, ReadError> {
        let ring = &self.reader.tick_rings[self.index];
        let max = max.min(ring.capacity() as usize);
        let table = self.table_newest_ms();
        let (span, retries, good) = ring
            .read(self.reader.mem(), from, max, out, self.reader.max_attempts)
            .map_err(|BadCounters { .. }| ReadError::Damaged {
                what: "a tick ring's counters",
            })?;
        self.count_retries(retries);
        if let Err((time_msc, why)) = if good { Ok(()) } else { tick::check(out) } {
            out.clear();
            return Err(ReadError::InvalidTick { time_msc, why });
        }
        let newest = out.last().map(|t| t.time_msc);
        if let Err(e) = Self::agrees_with_table(table, &span, out.len(), newest) {
            out.clear();
            return Err(e);
        }
        Ok(span)
    }
}
