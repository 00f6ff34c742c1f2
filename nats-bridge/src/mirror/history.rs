//! The mirror's own history store (docs/LAYOUT.md, "History store"), copied from the origin's
//! and then kept as the origin's streamer keeps its own (docs/NATS.md, "The history store").
//!
//! The store is append-only, oldest first, while the rings must be live within a second of a
//! sync. So the copy runs beside the live stream, with the store detached from the writer:
//!
//! 1. At each new local segment the store is opened, not attached: the sync fills the rings,
//!    and the mirror goes live.
//! 2. Stream by stream (every ring's bars, then every symbol's ticks), a page at a time every
//!    100 ms, each asked on a task of its own so that live messages are applied meanwhile
//!    (about 10,000 records a second, half an origin's limit for one mirror), the
//!    origin's store and rings are copied forward in time from the store's newest record (or
//!    the origin's oldest), with the same plausibility rules as live messages, until a page
//!    comes back short: the origin's newest.
//! 3. Then, in one step with no message in between, what arrived live meanwhile is taken from
//!    the mirror's own rings (a ring that no longer reaches back to the store's newest record
//!    sends its stream back to step 2), and the store is attached: from then on the writer
//!    appends every bar and tick before the rings get them.
//!
//! While it runs, a range deeper than the rings may come back shorter than the origin's, as
//! on the origin during its own backfill; the store's depth (`status()`, `inspect`) grows as
//! it goes.

use std::collections::VecDeque;
use std::time::Instant;

use shm_core::{Candle, HistoryWriter, Layout, Reader, Tick, Timeframe, Writer};

use super::{request, Mirror};
use crate::subjects::{RequestKind, Subjects};
use crate::wire::{
    HistoryReply, HistoryRequest, TickHistoryReply, TickHistoryRequest, HISTORY_PAGE, MAX_SKIP,
    VERSION,
};

/// Ticks one page of the copy asks for: with a page every 100 ms, half of the origin's limit
/// for one mirror (`crate::limit::CLIENT_PER_SECOND`), the other half left for its syncs.
const COPY_TICK_PAGE: usize = 1000;

/// One stream of the store, by its index in the layout (the store's writer's numbering).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stream {
    Bars {
        ring: usize,
        symbol: String,
        tf: Timeframe,
    },
    Ticks {
        index: usize,
        symbol: String,
    },
}

/// Where the copy of the current stream stands.
#[derive(Debug, Clone, Copy)]
enum Cursor {
    /// Bars opened after this time.
    After(i64),
    /// Ticks from this millisecond, the first `skip` at it had.
    From { msc: i64, skip: u64 },
}

/// The copy of the origin's store, while it runs.
#[derive(Debug)]
pub(super) struct StoreCopy {
    store: HistoryWriter,
    /// Streams left to copy, the current one first.
    left: VecDeque<Stream>,
    cursor: Option<Cursor>,
    bars: u64,
    ticks: u64,
    began: Instant,
    /// Asks of the current stream's page that failed in a row.
    failing: u32,
    /// Streams whose copy was refused: joined as their rings have them, a gap or not.
    refused: Vec<Stream>,
    /// The page asked for, while its answer is awaited.
    asked: Option<Page>,
}

/// Asks of one page that may fail in a row, while the origin is otherwise up, before the
/// stream's copy is refused (an origin whose store answers errors: about 10 s to 200 s).
const MOST_FAILURES: u32 = 100;

impl StoreCopy {
    fn new(store: HistoryWriter, layout: &Layout) -> StoreCopy {
        let symbols: Vec<&str> = layout.symbols().collect();
        let mut left: VecDeque<Stream> = layout
            .rings()
            .iter()
            .enumerate()
            .map(|(ring, spec)| Stream::Bars {
                ring,
                symbol: symbols[spec.symbol_index as usize].to_owned(),
                tf: spec.timeframe,
            })
            .collect();
        left.extend(symbols.iter().enumerate().map(|(index, s)| Stream::Ticks {
            index,
            symbol: (*s).to_owned(),
        }));
        StoreCopy {
            store,
            left,
            cursor: None,
            bars: 0,
            ticks: 0,
            began: Instant::now(),
            failing: 0,
            refused: Vec::new(),
            asked: None,
        }
    }

    /// The current stream is copied: on to the next.
    fn next_stream(&mut self) {
        self.left.pop_front();
        self.cursor = None;
        self.failing = 0;
    }

    /// The current stream's copy ends where it is.
    fn refuse_stream(&mut self) {
        if let Some(s) = self.left.front() {
            self.refused.push(s.clone());
        }
        self.next_stream();
    }
}

impl Mirror {
    /// Opens the mirror's own history store for its new writer, to be copied from the
    /// origin's before it is attached (see the module's comment). A segment built anew
    /// because it held bars the origin never had (`start_clean`) starts a new store too: the
    /// old one is moved aside (`DIR.set-aside-<unix seconds>`), since a bar stamped ahead
    /// would hold every later one out of an append-only store. A store that cannot be opened
    /// is said once, and the rings work without it.
    pub(super) fn open_history(&mut self, w: &mut Writer, layout: &Layout, start_clean: bool) {
        self.store_copy = None;
        let Some(dir) = self.config.history.dir(&self.config.segment) else {
            return;
        };
        if start_clean && dir.exists() {
            let mut aside = dir.clone().into_os_string();
            aside.push(format!(".set-aside-{}", shm_core::now_ns() / 1_000_000_000));
            match std::fs::rename(&dir, &aside) {
                Ok(()) => eprintln!(
                    "mtf-mirror: history store {} set aside as {} (the segment is rebuilt from \
                     the origin)",
                    dir.display(),
                    std::path::Path::new(&aside).display()
                ),
                Err(e) => eprintln!(
                    "warning: mtf-mirror: history store {} could not be set aside: {e}",
                    dir.display()
                ),
            }
        }
        let mode = self.config.options.mode;
        match HistoryWriter::open(&dir, layout, shm_core::Keep::All, mode) {
            Ok(h) => {
                mtf_cli::say(format_args!(
                    "mtf-mirror: history store {}: copying the origin's once synced, beside the \
                     live stream",
                    dir.display()
                ));
                self.store_copy = Some(StoreCopy::new(h, layout));
            }
            Err(e) => {
                w.add(shm_core::Counter::HistoryErrors, 1);
                eprintln!(
                    "warning: mtf-mirror: no history store: {e}; readers get what the rings hold"
                );
            }
        }
    }

    /// Asks for the next page of the store's copy on a task of its own, so that live
    /// messages go on being applied while the origin answers; or, once every stream is
    /// copied, joins the store to the writer. Called every 100 ms while synced, when no page
    /// is being asked for.
    pub(super) fn ask_copy(
        &mut self,
        client: &async_nats::Client,
        subjects: &Subjects,
    ) -> Option<tokio::task::JoinHandle<Answer>> {
        let copy = self.store_copy.as_mut()?;
        let Some(stream) = copy.left.front().cloned() else {
            self.join_store();
            return None;
        };
        let client = client.clone();
        match stream {
            Stream::Bars { ring, symbol, tf } => {
                let after = match copy.cursor {
                    Some(Cursor::After(t)) => t,
                    _ => copy.store.newest_bar(ring).unwrap_or(i64::MIN),
                };
                let req = HistoryRequest {
                    v: VERSION,
                    symbol: symbol.clone(),
                    timeframe: tf.name().to_owned(),
                    before: None,
                    after: Some(after),
                    limit: HISTORY_PAGE,
                    nonce: crate::wire::nonce(),
                };
                let subject = subjects.request(RequestKind::History);
                copy.asked = Some(Page::Bars {
                    ring,
                    symbol,
                    tf,
                    after,
                });
                Some(tokio::spawn(async move {
                    Answer::Bars(request(&client, subject, &req).await)
                }))
            }
            Stream::Ticks { index, symbol } => {
                let (msc, skip) = match copy.cursor {
                    Some(Cursor::From { msc, skip }) => (msc, skip),
                    // From the store's newest millisecond, sent again whole (its ticks the
                    // store has are skipped by the store's own rule), or from the origin's
                    // oldest.
                    _ => (copy.store.resend_from_newest(index).unwrap_or(i64::MIN), 0),
                };
                let req = TickHistoryRequest {
                    v: VERSION,
                    symbol: symbol.clone(),
                    from: 0,
                    from_msc: Some(msc),
                    skip,
                    limit: COPY_TICK_PAGE,
                    nonce: crate::wire::nonce(),
                };
                let subject = subjects.request(RequestKind::Ticks);
                copy.asked = Some(Page::Ticks {
                    index,
                    symbol,
                    msc,
                    skip,
                });
                Some(tokio::spawn(async move {
                    Answer::Ticks(request(&client, subject, &req).await)
                }))
            }
        }
    }

    /// Takes the answer to the page asked for: checked, stored, and the copy moved on.
    pub(super) fn take_copy(&mut self, answer: Answer) {
        let Some(asked) = self.store_copy.as_mut().and_then(|c| c.asked.take()) else {
            return; // the copy began anew meanwhile (a new segment)
        };
        let taken = match (asked, answer) {
            (
                Page::Bars {
                    ring,
                    symbol,
                    tf,
                    after,
                },
                Answer::Bars(Ok(page)),
            ) => self.copy_bars(&page, ring, &symbol, tf, after),
            (
                Page::Ticks {
                    index,
                    symbol,
                    msc,
                    skip,
                },
                Answer::Ticks(Ok(page)),
            ) => self.copy_ticks(&page, index, &symbol, (msc, skip)),
            (_, Answer::Bars(Err(e)) | Answer::Ticks(Err(e))) => Err(Asked::Again(e)),
            // The request's task ended without an answer.
            _ => Err(Asked::Again(crate::BridgeError::RequestTimedOut)),
        };
        let Some(copy) = self.store_copy.as_mut() else {
            return;
        };
        match taken {
            Ok(()) => copy.failing = 0,
            // No answer, or not one to this page (the origin over its limit, the link
            // slow): the same page again at the next turn, a while.
            Err(Asked::Again(e)) => {
                copy.failing += 1;
                if copy.failing == 1 {
                    eprintln!("mtf-mirror: copying the origin's history store: {e}; asking again");
                }
                if copy.failing >= MOST_FAILURES {
                    copy.refuse_stream();
                    self.refuse("history", "the origin answers no page of a stream's store");
                }
            }
            // A page the origin cannot have sent: this stream's copy ends where it is.
            Err(Asked::Refused(symbol, why)) => {
                copy.refuse_stream();
                self.refuse("history", format!("{symbol}: {why}"));
            }
        }
    }

    fn copy_bars(
        &mut self,
        page: &HistoryReply,
        ring: usize,
        symbol: &str,
        tf: Timeframe,
        after: i64,
    ) -> Result<(), Asked> {
        let bars = bar_page(page, after, |c| self.plausible(tf, c))
            .map_err(|why| Asked::Refused(format!("{symbol} {tf}"), why))?;
        let now = shm_core::now_ns();
        let Some(copy) = self.store_copy.as_mut() else {
            return Ok(());
        };
        let mut failed = None;
        for c in &bars {
            if let Err(e) = copy.store.bar_closed(ring, c, now) {
                failed = Some(e);
            }
        }
        copy.bars += bars.len() as u64;
        match bars.last() {
            Some(last) if bars.len() == HISTORY_PAGE => {
                copy.cursor = Some(Cursor::After(last.time));
            }
            _ => copy.next_stream(),
        }
        self.store_failed(failed);
        Ok(())
    }

    fn copy_ticks(
        &mut self,
        page: &TickHistoryReply,
        index: usize,
        symbol: &str,
        (msc, skip): (i64, u64),
    ) -> Result<(), Asked> {
        let refused = |why| Asked::Refused(format!("{symbol} ticks"), why);
        let ticks = tick_page(page, msc, |t| self.plausible_tick(t)).map_err(refused)?;
        let next = next_tick_cursor(&ticks, msc, skip).map_err(refused)?;
        let now = shm_core::now_ns();
        let Some(copy) = self.store_copy.as_mut() else {
            return Ok(());
        };
        let mut failed = None;
        for t in &ticks {
            if let Err(e) = copy.store.tick(index, t, now) {
                failed = Some(e);
            }
        }
        copy.ticks += ticks.len() as u64;
        match next {
            Some(cursor) => copy.cursor = Some(cursor),
            None => copy.next_stream(),
        }
        self.store_failed(failed);
        Ok(())
    }

    /// Counts a failed append (a full disk): `history_errors`, and said once.
    fn store_failed(&mut self, failed: Option<shm_core::HistoryError>) {
        let Some(e) = failed else {
            return;
        };
        if let Some(w) = self.writer.as_mut() {
            w.add(shm_core::Counter::HistoryErrors, 1);
        }
        self.refuse("history store append", e);
    }

    /// Every stream is copied up to the origin's newest record: what came live since is
    /// taken from the mirror's own rings, and the store is attached to the writer. A ring
    /// that no longer reaches back to its store's newest record sends its stream back to the
    /// copy, and the store stays detached until the next turn.
    fn join_store(&mut self) {
        let reader = match Reader::open(&self.config.segment) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("mtf-mirror: reading the mirror's own segment: {e}; trying again");
                return;
            }
        };
        let Some(mut copy) = self.store_copy.take() else {
            return;
        };
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        let layout = w.layout().clone();
        let symbols: Vec<&str> = layout.symbols().collect();
        let now = shm_core::now_ns();
        let mut failed = None;
        for (ring, spec) in layout.rings().iter().enumerate() {
            let symbol = symbols[spec.symbol_index as usize];
            let mut closed = Vec::new();
            let read = reader
                .ring(symbol, spec.timeframe)
                .map(|r| r.read_last(r.capacity() as usize + 1, &mut closed));
            closed.retain(|c| !c.forming);
            let newest = copy.store.newest_bar(ring);
            let reaches = newest.is_none_or(|n| closed.first().is_none_or(|c| c.time <= n));
            let read = matches!(read, Some(Ok(())));
            let stream = Stream::Bars {
                ring,
                symbol: symbol.to_owned(),
                tf: spec.timeframe,
            };
            if read && !reaches && copy.refused.contains(&stream) {
                eprintln!(
                    "warning: mtf-mirror: the history store of {symbol} {} has a gap \
                           where the origin's copy was refused",
                    spec.timeframe
                );
            } else if !read || !reaches {
                copy.left.push_back(stream);
                continue;
            }
            for c in &closed {
                if let Err(e) = copy.store.bar_closed(ring, c, now) {
                    failed = Some(e);
                }
            }
        }
        for (index, symbol) in symbols.iter().enumerate() {
            let newest = copy.store.resend_from_newest(index);
            let mut ticks = Vec::new();
            let reaches = reader.ticks(symbol).and_then(|r| {
                let span = r
                    .read_since(newest.unwrap_or(i64::MIN), usize::MAX, &mut ticks)
                    .ok()?;
                // Held since its first tick, or a tick older than the store's newest.
                Some(span.head <= r.capacity() || span.first > span.head - r.capacity())
            });
            let stream = Stream::Ticks {
                index,
                symbol: (*symbol).to_owned(),
            };
            if reaches == Some(false) && copy.refused.contains(&stream) {
                eprintln!(
                    "warning: mtf-mirror: the history store of {symbol}'s ticks has a \
                           gap where the origin's copy was refused"
                );
            } else if reaches != Some(true) {
                copy.left.push_back(stream);
                continue;
            }
            for t in &ticks {
                if let Err(e) = copy.store.tick(index, t, now) {
                    failed = Some(e);
                }
            }
        }
        if copy.left.is_empty() {
            mtf_cli::say(format_args!(
                "mtf-mirror: history store copied from the origin: {} bars and {} ticks in {:.1} s",
                copy.bars,
                copy.ticks,
                copy.began.elapsed().as_secs_f64()
            ));
            w.attach_history(copy.store);
        } else {
            self.store_copy = Some(copy);
        }
        self.store_failed(failed);
    }
}

/// The bars of a page of the copy asked for after `after`, if the origin can have sent it:
/// at most a page, no forming bar, each `plausible`, strictly newer than the one before.
fn bar_page(
    page: &HistoryReply,
    after: i64,
    plausible: impl Fn(&Candle) -> Result<(), &'static str>,
) -> Result<Vec<Candle>, &'static str> {
    if page.closed.len() > HISTORY_PAGE || page.forming.is_some() {
        return Err("a page that is not the one asked for");
    }
    let bars: Vec<Candle> = page.closed.iter().map(Candle::from).collect();
    let mut previous = after;
    for c in &bars {
        plausible(c)?;
        if c.forming || c.time <= previous {
            return Err("bars out of order, or not after the page asked for");
        }
        previous = c.time;
    }
    Ok(bars)
}

/// The ticks of a page of the copy asked for from `from_msc`, if the origin can have sent it:
/// at most a page, each `plausible`, none older than the one before.
fn tick_page(
    page: &TickHistoryReply,
    from_msc: i64,
    plausible: impl Fn(&Tick) -> Result<(), &'static str>,
) -> Result<Vec<Tick>, &'static str> {
    if page.ticks.len() > COPY_TICK_PAGE {
        return Err("a page that is not the one asked for");
    }
    let ticks: Vec<Tick> = page.ticks.iter().map(Tick::from).collect();
    let mut previous = from_msc;
    for t in &ticks {
        plausible(t)?;
        if t.time_msc < previous {
            return Err("ticks out of order, or before the page asked for");
        }
        previous = t.time_msc;
    }
    Ok(ticks)
}

/// Where the copy goes on after a page of `ticks` asked for from `(msc, skip)`: `None` after a
/// short page (the origin's newest was reached). A page all at one millisecond moves the
/// cursor by its length, so every full page moves it; past [`MAX_SKIP`] the origin is refused.
fn next_tick_cursor(ticks: &[Tick], msc: i64, skip: u64) -> Result<Option<Cursor>, &'static str> {
    let Some(last) = ticks.last().filter(|_| ticks.len() == COPY_TICK_PAGE) else {
        return Ok(None);
    };
    let at_last = ticks
        .iter()
        .rev()
        .take_while(|t| t.time_msc == last.time_msc);
    let n = at_last.count() as u64;
    let skip = if last.time_msc == msc { skip + n } else { n };
    if skip > MAX_SKIP {
        return Err("more ticks in one millisecond than any market prints");
    }
    Ok(Some(Cursor::From {
        msc: last.time_msc,
        skip,
    }))
}

/// Why a page of the copy was not taken.
enum Asked {
    /// Asking failed (no answer, the link): the same page at the next turn.
    Again(crate::BridgeError),
    /// The origin's page breaks the rules: the stream's copy ends.
    Refused(String, &'static str),
}

/// A page of the copy asked for, waiting for its answer.
#[derive(Debug)]
enum Page {
    Bars {
        ring: usize,
        symbol: String,
        tf: Timeframe,
        after: i64,
    },
    Ticks {
        index: usize,
        symbol: String,
        msc: i64,
        skip: u64,
    },
}

/// What the task asking for a page of the copy brings back.
#[derive(Debug)]
pub(super) enum Answer {
    Bars(Result<HistoryReply, crate::BridgeError>),
    Ticks(Result<TickHistoryReply, crate::BridgeError>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{WireCandle, WireTick};

    fn bars(times: &[i64]) -> HistoryReply {
        HistoryReply {
            v: VERSION,
            answers: None,
            closed: times
                .iter()
                .map(|&t| WireCandle::from(&Candle::flat(t, 1.1)))
                .collect(),
            forming: None,
        }
    }

    fn ticks(times: &[i64]) -> TickHistoryReply {
        TickHistoryReply {
            v: VERSION,
            answers: None,
            first: 0,
            head: 0,
            ticks: times
                .iter()
                .map(|&t| WireTick {
                    t,
                    b: 1.1,
                    a: 1.1002,
                    l: 0.0,
                    v: 0,
                    vr: 0.0,
                    f: 6,
                })
                .collect(),
        }
    }

    #[test]
    fn a_bar_page_must_go_forward_from_the_cursor_and_be_plausible() {
        let ok = |_: &Candle| Ok(());
        assert_eq!(bar_page(&bars(&[120, 180]), 60, ok).unwrap().len(), 2);
        // Not after the cursor, out of order, a repeat.
        for times in [&[60, 120][..], &[180, 120], &[120, 120]] {
            assert!(bar_page(&bars(times), 60, ok).is_err(), "{times:?}");
        }
        // A forming bar, or more than a page.
        let mut with_forming = bars(&[120]);
        with_forming.forming = Some(WireCandle::from(&Candle::flat(180, 1.1)));
        assert!(bar_page(&with_forming, 60, ok).is_err());
        let long: Vec<i64> = (1..=HISTORY_PAGE as i64 + 1).map(|k| k * 60).collect();
        assert!(bar_page(&bars(&long), 0, ok).is_err());
        // What the mirror's plausibility refuses (a bar later than the origin's clock).
        let late = |c: &Candle| if c.time > 120 { Err("late") } else { Ok(()) };
        assert_eq!(bar_page(&bars(&[120, 180]), 60, late), Err("late"));
    }

    #[test]
    fn a_tick_page_must_not_go_back_and_the_cursor_always_moves() {
        let ok = |_: &Tick| Ok(());
        assert_eq!(tick_page(&ticks(&[5, 5, 6]), 5, ok).unwrap().len(), 3);
        assert!(
            tick_page(&ticks(&[4, 5]), 5, ok).is_err(),
            "before the cursor"
        );
        assert!(tick_page(&ticks(&[6, 5]), 5, ok).is_err(), "out of order");
        let late = |t: &Tick| if t.time_msc > 5 { Err("late") } else { Ok(()) };
        assert_eq!(tick_page(&ticks(&[5, 6]), 5, late), Err("late"));
        let long = vec![7; COPY_TICK_PAGE + 1];
        assert!(tick_page(&ticks(&long), 0, ok).is_err(), "more than a page");

        let page = |times: &[i64]| tick_page(&ticks(times), i64::MIN, ok).unwrap();
        // A short page: the origin's newest was reached.
        assert!(next_tick_cursor(&page(&[1, 2]), 0, 0).unwrap().is_none());
        // A full page ending with three ticks at 9: on from 9, those three had.
        let mut full = vec![1; COPY_TICK_PAGE - 3];
        full.extend([9, 9, 9]);
        let next = next_tick_cursor(&page(&full), 1, 0).unwrap();
        assert!(matches!(next, Some(Cursor::From { msc: 9, skip: 3 })));
        // A full page all at the cursor's millisecond moves the cursor by its length.
        let same = vec![9; COPY_TICK_PAGE];
        let next = next_tick_cursor(&page(&same), 9, 3).unwrap();
        let moved = COPY_TICK_PAGE as u64 + 3;
        assert!(matches!(next, Some(Cursor::From { msc: 9, skip }) if skip == moved));
        // An origin that sends one millisecond for ever is refused.
        assert!(next_tick_cursor(&page(&same), 9, MAX_SKIP).is_err());
    }
}
