//! MetaTrader 5 CSV exports: "Export bars" and tick exports, replayed at N× real time or as
//! fast as possible.
//!
//! - Bars: `<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>`; D1
//!   and longer have no `<TIME>`.
//! - Ticks: `<DATE>\t<TIME>\t<BID>\t<ASK>\t<LAST>\t<VOLUME>\t<FLAGS>`, times `HH:MM:SS.mmm`. An
//!   empty BID or ASK means "unchanged" (MT5 writes only what the tick changed).
//! - UTF-8 with or without BOM, UTF-16LE/BE with BOM; CRLF or LF. Columns are found by their
//!   header names, so their order does not matter.
//! - Symbol and timeframe come from MT5's file names (`EURUSD_H1_201701012200_201712292100.csv`,
//!   ticks `EURUSD_202401020000_202401022359.csv`) unless given explicitly.
//! - A row that cannot be used is skipped and reported with its line number; it never stops
//!   the replay.
//!
//! `parse.rs` reads the files; this file replays them.

mod parse;

use parse::When;
pub use parse::{decode, parse_file_name, CsvError, CsvFile, Kind};

use std::time::{Duration, Instant};

use shm_core::FeedState;

use crate::source::{Event, Source, SourceError};

/// Replay speed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// As fast as the streamer can take it.
    Max,
    /// N times real time.
    Times(f64),
}

/// Replays one or more files, merged by time.
#[derive(Debug)]
pub struct CsvReplay {
    files: Vec<CsvFile>,
    speed: Speed,
    /// Server time of the first event and the instant it was replayed.
    anchor: Option<(i64, Instant)>,
    finished: bool,
    /// Events handed out so far.
    events: u64,
}

/// Events handed out per poll at `--speed max`, so the caller heartbeats in between.
const BATCH: usize = 4096;

impl CsvReplay {
    /// A replay of `files` at `speed`.
    pub fn new(files: Vec<CsvFile>, speed: Speed) -> CsvReplay {
        CsvReplay {
            files,
            speed,
            anchor: None,
            finished: false,
            events: 0,
        }
    }

    /// The file whose next event is earliest (bad rows first, so they are reported in place).
    fn earliest(&mut self) -> Option<usize> {
        let mut best: Option<(When, usize)> = None;
        for i in 0..self.files.len() {
            if let Some(&(t, _)) = self.files[i].peek() {
                if best.is_none_or(|(bt, _)| t < bt) {
                    best = Some((t, i));
                }
            }
        }
        best.map(|(_, i)| i)
    }
}

impl Source for CsvReplay {
    fn poll(&mut self, out: &mut Vec<Event>, wait: Duration) -> Result<(), SourceError> {
        if self.finished {
            std::thread::sleep(wait);
            return Ok(());
        }
        if self.anchor.is_none() {
            out.push(Event::Feed(FeedState::Live));
        }
        let deadline = Instant::now() + wait;
        while out.len() < BATCH {
            let Some(i) = self.earliest() else {
                self.finished = true;
                out.push(Event::Feed(FeedState::Finished));
                return Ok(());
            };
            let due_at = self.files[i].pending.as_ref().map(|p| p.0);
            if let (Speed::Times(n), Some(When::At(t))) = (self.speed, due_at) {
                let &mut (t0, w0) = self.anchor.get_or_insert((t, Instant::now()));
                let due = w0 + Duration::from_secs_f64(((t - t0).max(0) as f64 / 1000.0) / n);
                let now = Instant::now();
                if due > now {
                    if !out.is_empty() || due > deadline {
                        // Hand over what we have, or wait out the caller's budget.
                        if out.is_empty() {
                            std::thread::sleep(deadline.saturating_duration_since(now));
                        }
                        return Ok(());
                    }
                    std::thread::sleep(due - now);
                }
            } else if let (None, Some(When::At(t))) = (self.anchor, due_at) {
                self.anchor = Some((t, Instant::now()));
            }
            let (_, ev) = self.files[i].pending.take().expect("peeked");
            if matches!(ev, Event::Bar(_) | Event::Tick(_)) {
                self.events += 1;
            }
            out.push(ev);
        }
        Ok(())
    }

    fn progress(&self) -> Option<super::Progress> {
        let total: usize = self.files.iter().map(|f| f.text.len()).sum();
        let done: usize = self.files.iter().map(|f| f.pos.min(f.text.len())).sum();
        Some(super::Progress {
            events: self.events,
            fraction: if self.finished || total == 0 {
                1.0
            } else {
                done as f64 / total as f64
            },
        })
    }

    fn describe(&self) -> String {
        let speed = match self.speed {
            Speed::Max => "as fast as possible".to_owned(),
            Speed::Times(n) => format!("{n}x real time"),
        };
        let names: Vec<_> = self.files.iter().map(|f| f.name.as_str()).collect();
        format!("csv replay of {} ({speed})", names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::parse::{parse_date, parse_time};
    use super::*;
    use shm_core::Timeframe;
    use std::path::Path;

    #[test]
    fn file_names_follow_mt5() {
        let p = |s: &str| parse_file_name(Path::new(s));
        assert_eq!(
            p("EURUSD_H1_201701012200_201712292100.csv"),
            (Some("EURUSD".into()), Some(Kind::Bars(Timeframe::H1)))
        );
        assert_eq!(
            p("/x/US_TECH100_M5_202401010000_202401020000.csv"),
            (Some("US_TECH100".into()), Some(Kind::Bars(Timeframe::M5)))
        );
        assert_eq!(
            p("EURUSD_202401020000_202401022359.csv"),
            (Some("EURUSD".into()), Some(Kind::Ticks))
        );
        assert_eq!(
            p("XAUUSDc_D1.csv"),
            (Some("XAUUSDc".into()), Some(Kind::Bars(Timeframe::D1)))
        );
        assert_eq!(p("prices.csv"), (Some("prices".into()), None));
    }

    #[test]
    fn dates_and_times_parse_strictly() {
        assert_eq!(parse_date("1970.01.02"), Ok(1));
        assert_eq!(parse_date("2017-01-01"), Ok(17_167));
        assert!(parse_date("2017.02.30").is_err());
        assert!(parse_date("2017.13.01").is_err());
        assert!(parse_date("17.01.01").is_err());
        assert_eq!(parse_time("00:00:01"), Ok(1000));
        assert_eq!(parse_time("23:59"), Ok((23 * 60 + 59) * 60_000));
        assert_eq!(parse_time("10:00:00.5"), Ok(36_000_500));
        assert_eq!(parse_time("10:00:00.123"), Ok(36_000_123));
        for bad in [
            "24:00:00",
            "10:60",
            "1:2:3:4",
            "10:00:00.",
            "10:00:00.1234",
            "ab:cd",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_encoding_decodes_to_the_same_text() {
        let text = "<DATE>\t<TIME>\r\n2017.01.01\t00:00\r\n";
        let mut bom8 = vec![0xEF, 0xBB, 0xBF];
        bom8.extend_from_slice(text.as_bytes());
        let mut le = vec![0xFF, 0xFE];
        le.extend(text.encode_utf16().flat_map(|u| u.to_le_bytes()));
        let mut be = vec![0xFE, 0xFF];
        be.extend(text.encode_utf16().flat_map(|u| u.to_be_bytes()));
        for bytes in [text.as_bytes().to_vec(), bom8, le, be] {
            assert_eq!(decode(&bytes), text);
        }
    }
}
