//! Every CSV variant MT5 produces, broken rows included, replayed into a real segment.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use mtf_tests::{Lcg, TempSegment};
use shm_core::{Candle, Counter, FeedState, Reader, Timeframe};
use streamer_bin::config::{Config, HttpBind, SourceKind};
use streamer_bin::source::csv::{CsvFile, CsvReplay, Speed};
use streamer_bin::source::{Event, Source};

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("mtf-csv-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const BARS_H1: &str =
    "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\n\
2017.01.02\t00:00:00\t1.05000\t1.05100\t1.04900\t1.05050\t100\t0\t12\n\
2017.01.02\t01:00:00\t1.05050\t1.05300\t1.05000\t1.05200\t150\t0\t10\n\
2017.01.02\t02:00:00\t1.05200\t1.05250\t1.04800\t1.04850\t90\t5\t11\n\
2017.01.02\t03:00:00\t1.04850\t1.04900\t1.04700\t1.04750\t80\t0\t14\n\
2017.01.02\t04:00:00\t1.04750\t1.04800\t1.04600\t1.04650\t70\t0\t9\n";

fn utf16le_bom(text: &str) -> Vec<u8> {
    let mut b = vec![0xFF, 0xFE];
    b.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    b
}

/// Replays `files` to the end into a fresh segment and returns it with a reader.
fn replay(
    tag: &str,
    files: Vec<PathBuf>,
    tweak: impl FnOnce(&mut Config),
) -> (TempSegment, Reader) {
    let seg = TempSegment::new(tag);
    let mut config = Config {
        source: SourceKind::Csv,
        csv_files: files,
        http: HttpBind::Off,
        segment: seg.path.clone(),
        ..Config::default()
    };
    tweak(&mut config);
    // Set before the run: the run makes one full pass, which replays these small files whole.
    let stop = AtomicBool::new(true);
    streamer_bin::run(&config, &stop, &mut std::io::sink()).unwrap();
    let reader = Reader::open(&seg.path).unwrap();
    (seg, reader)
}

fn candles(r: &Reader, symbol: &str, tf: Timeframe) -> Vec<Candle> {
    let mut out = Vec::new();
    r.ring(symbol, tf)
        .unwrap()
        .read_last(1000, &mut out)
        .unwrap();
    out
}

#[test]
fn bar_exports_in_every_encoding_and_line_ending_give_the_same_candles() {
    let dir = TempDir::new("enc");
    let crlf = BARS_H1.replace('\n', "\r\n");
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend_from_slice(crlf.as_bytes());
    let variants = [
        ("lf", BARS_H1.as_bytes().to_vec()),
        ("crlf", crlf.as_bytes().to_vec()),
        ("bom", bom),
        ("utf16", utf16le_bom(&crlf)),
    ];
    let mut results = Vec::new();
    for (tag, bytes) in variants {
        let f = dir.write(
            &format!("EURUSD_H1_201701020000_201701020400.{tag}.csv"),
            &bytes,
        );
        // The stem has an extra ".tag"; name the symbol explicitly for this one.
        let (_seg, r) = replay(tag, vec![f], |c| {
            c.csv_symbol = Some("EURUSD".into());
            c.csv_timeframe = Some(Timeframe::H1);
        });
        assert_eq!(r.status().feed_state, Some(FeedState::Finished), "{tag}");
        assert!(
            r.ring("EURUSD", Timeframe::M1).is_none(),
            "{tag}: no rings below the file's timeframe"
        );
        results.push((
            candles(&r, "EURUSD", Timeframe::H1),
            candles(&r, "EURUSD", Timeframe::H4),
        ));
    }
    let (h1, h4) = &results[0];
    assert_eq!(h1.len(), 5);
    let day = shm_core::days_from_civil(2017, 1, 2) * 86_400;
    assert_eq!(
        h1[2],
        Candle {
            time: day + 7200,
            open: 1.052,
            high: 1.0525,
            low: 1.048,
            close: 1.0485,
            tick_volume: 90,
            spread: 11,
            real_volume: 5,
            ..Candle::default()
        }
    );
    // H4: 00-03 closed, 04 forming.
    assert_eq!(h4.len(), 2);
    assert_eq!(
        (
            h4[0].open,
            h4[0].high,
            h4[0].low,
            h4[0].close,
            h4[0].tick_volume,
            h4[0].forming
        ),
        (1.05, 1.053, 1.047, 1.0475, 420, false)
    );
    assert_eq!((h4[1].time, h4[1].forming), (day + 4 * 3600, true));
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r, &results[0], "variant {i} differs");
    }
}

#[test]
fn a_bar_replay_records_its_newest_close_as_the_last_quote_and_no_tick() {
    let dir = TempDir::new("barquote");
    let text = "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\n\
2024.01.02\t10:00:00\t1.10000\t1.10050\t1.09950\t1.10020\t100\t0\t12\n\
2024.01.02\t10:01:00\t1.10020\t1.10080\t1.10010\t1.10070\t90\t0\t10\n";
    let f = dir.write("EURUSD_M1_202401021000_202401021001.csv", text.as_bytes());
    let (_seg, r) = replay("barquote", vec![f], |_| {});
    let quote = r.last_tick("EURUSD").expect("a last quote");
    let day = shm_core::days_from_civil(2024, 1, 2) * 86_400_000;
    assert_eq!(quote.server_time_ms, day + 10 * 3_600_000 + 60_000);
    assert_eq!(quote.bid, 1.1007);
    assert!(
        (quote.ask - (1.1007 + 10.0 * 0.00001)).abs() < 1e-12,
        "{}",
        quote.ask
    );
    // Not a tick: the tick ring holds only ticks the feed delivered.
    assert_eq!(r.ticks("EURUSD").unwrap().total(), 0);
}

#[test]
fn symbol_and_timeframe_come_from_mt5_file_names() {
    let dir = TempDir::new("names");
    let f = dir.write(
        "XAUUSDc_H1_201701020000_201701020400.csv",
        BARS_H1.as_bytes(),
    );
    let (_seg, r) = replay("names", vec![f], |_| {});
    assert_eq!(r.layout().symbols().collect::<Vec<_>>(), ["XAUUSDc"]);
    assert_eq!(candles(&r, "XAUUSDc", Timeframe::H1).len(), 5);
}

#[test]
fn daily_exports_without_a_time_column_are_d1() {
    let dir = TempDir::new("d1");
    let text = "<DATE>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\r\n\
2017.01.02\t1.0\t1.2\t0.9\t1.1\t1000\t0\t10\r\n\
2017.01.03\t1.1\t1.3\t1.0\t1.2\t1100\t0\t10\r\n";
    let f = dir.write("EURUSD_D1_201701020000_201701030000.csv", text.as_bytes());
    let (_seg, r) = replay("d1", vec![f], |_| {});
    let d1 = candles(&r, "EURUSD", Timeframe::D1);
    assert_eq!(
        d1.iter()
            .map(|c| (c.time % 86_400, c.close))
            .collect::<Vec<_>>(),
        [(0, 1.1), (0, 1.2)]
    );
    assert_eq!(
        r.rings().map(|r| r.timeframe()).collect::<Vec<_>>(),
        [Timeframe::D1]
    );
}

#[test]
fn tick_exports_carry_unchanged_bid_and_ask_forward() {
    let dir = TempDir::new("ticks");
    let text = "<DATE>\t<TIME>\t<BID>\t<ASK>\t<LAST>\t<VOLUME>\t<FLAGS>\r\n\
2024.01.02\t10:00:00.100\t1.10000\t1.10010\t\t\t6\r\n\
2024.01.02\t10:00:00.350\t\t1.10012\t\t\t4\r\n\
2024.01.02\t10:00:59.999\t1.10005\t\t\t\t2\r\n\
2024.01.02\t10:01:00.000\t1.09990\t1.10000\t\t\t6\r\n";
    let f = dir.write(
        "EURUSD_202401021000_202401021001.csv",
        utf16le_bom(text).as_slice(),
    );
    let (_seg, r) = replay("ticks", vec![f], |_| {});
    let m1 = candles(&r, "EURUSD", Timeframe::M1);
    assert_eq!(m1.len(), 2);
    assert_eq!(
        (
            m1[0].open,
            m1[0].high,
            m1[0].low,
            m1[0].close,
            m1[0].tick_volume,
            m1[0].forming
        ),
        (1.1, 1.10005, 1.1, 1.10005, 3, false)
    );
    assert_eq!((m1[1].open, m1[1].forming), (1.0999, true));
    let tick = r.last_tick("EURUSD").unwrap();
    assert_eq!((tick.bid, tick.ask), (1.0999, 1.1));
    assert_eq!(r.status().counters.get(Counter::TicksProcessed), 4);
    // Every tick in the tick ring, in order, with the export's own flags.
    let mut ticks = Vec::new();
    r.ticks("EURUSD")
        .unwrap()
        .read_last(100, &mut ticks)
        .unwrap();
    let got: Vec<(i64, f64, f64, u32)> = ticks
        .iter()
        .map(|t| (t.time_msc % 86_400_000, t.bid, t.ask, t.flags))
        .collect();
    assert_eq!(
        got,
        [
            (36_000_100, 1.1, 1.1001, 6),
            (36_000_350, 1.1, 1.10012, 4),
            (36_059_999, 1.10005, 1.10012, 2),
            (36_060_000, 1.0999, 1.1, 6),
        ]
    );
}

#[test]
fn exchange_tick_exports_keep_last_volume_and_flags() {
    let dir = TempDir::new("trades");
    // A deal tick (LAST, VOLUME, BUY), a quote, a deal carried forward, and a row without
    // flags, whose flags are derived from what changed.
    let text = "<DATE>	<TIME>	<BID>	<ASK>	<LAST>	<VOLUME>	<FLAGS>
2024.01.02	10:00:00.100	100.10	100.20	100.15	3	56
2024.01.02	10:00:00.200	100.11				2
2024.01.02	10:00:00.300			100.18	2	88
2024.01.02	10:00:00.400		100.25			
";
    let f = dir.write("SBER_202401021000_202401021001.csv", text.as_bytes());
    let (_seg, r) = replay("trades", vec![f], |_| {});
    let mut ticks = Vec::new();
    r.ticks("SBER").unwrap().read_last(100, &mut ticks).unwrap();
    let got: Vec<(f64, f64, f64, u64, u32)> = ticks
        .iter()
        .map(|t| (t.bid, t.ask, t.last, t.volume, t.flags))
        .collect();
    assert_eq!(
        got,
        [
            (100.10, 100.20, 100.15, 3, 56),
            (100.11, 100.20, 100.15, 0, 2),
            (100.11, 100.20, 100.18, 2, 88),
            // No flags in the file: the ask changed.
            (100.11, 100.25, 100.18, 0, shm_core::TICK_FLAG_ASK),
        ]
    );
    // Its symbol information: what the prices show.
    let info = r.symbol_info("SBER").unwrap().expect("a derived record");
    assert_eq!(info.source, shm_core::InfoSource::Derived);
    assert_eq!(info.info.get("digits"), Some(shm_core::InfoValue::Int(2)));
    assert_eq!(
        info.info.get("currency_base"),
        Some(shm_core::InfoValue::Str(""))
    );
}

#[test]
fn broken_rows_are_skipped_counted_and_reported_with_line_numbers() {
    let dir = TempDir::new("broken");
    let text = "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\n\
2017.01.02\t00:00:00\t1.05\t1.06\t1.04\t1.05\t100\t0\t12\n\
2017.13.02\t01:00:00\t1.05\t1.06\t1.04\t1.05\t100\t0\t12\n\
2017.01.02\t02:00:00\tabc\t1.06\t1.04\t1.05\t100\t0\t12\n\
2017.01.02\t03:00:00\t1.05\n\
\n\
2017.01.02\t04:30:00\t1.05\t1.06\t1.04\t1.05\t100\t0\t12\n\
2017.01.02\t05:00:00\t1.05\t1.00\t1.04\t1.05\t100\t0\t12\n\
2017.01.02\t06:00:00\tNaN\tNaN\tNaN\tNaN\t100\t0\t12\n\
2017.01.02\t07:00:00\t1.05\t1.06\t1.04\t1.055\t100\t0\t12\n\
2017.01.02\t06:00:00\t1.05\t1.06\t1.04\t1.05\t100\t0\t12\n\
2017.01.02\t08:00:00\t1.05\t1.06\t1.04\t1.06\t100\t0\t12\n\
2017.01.02\t09:00:00\t1.05\t1.06\t1.04\t1.06\t100\t-3\t12\n";
    let f = dir.write("EURUSD_H1_201701020000_201701020800.csv", text.as_bytes());

    // The source reports each bad row with its line number.
    let file = CsvFile::open(&f, &["EURUSD".into()], None, None).unwrap();
    let mut src = CsvReplay::new(vec![file], Speed::Max);
    let mut events = Vec::new();
    src.poll(&mut events, Duration::ZERO).unwrap();
    let bad: Vec<(u64, String)> = events
        .iter()
        .filter_map(|e| {
            if let Event::BadRow { line, reason, .. } = e {
                Some((*line, reason.clone()))
            } else {
                None
            }
        })
        .collect();
    let lines: Vec<u64> = bad.iter().map(|b| b.0).collect();
    assert_eq!(lines, [3, 4, 5, 7, 13], "{bad:#?}");
    assert!(bad[0].1.contains("date"), "{bad:?}");
    assert!(bad[1].1.contains("open"), "{bad:?}");
    assert!(bad[3].1.contains("boundary"), "{bad:?}");
    assert!(bad[4].1.contains("volume"), "{bad:?}");

    // Through the streamer: parse errors count as bad rows; bad prices (high below close,
    // NaN) and the backwards bar have their own counters; good rows all arrive.
    let (_seg, r) = replay("broken", vec![f], |_| {});
    let st = r.status();
    assert_eq!(st.counters.get(Counter::BadRows), 5);
    assert_eq!(st.counters.get(Counter::RejectedBadPrice), 2);
    assert_eq!(st.counters.get(Counter::RejectedBackwardsBar), 1);
    let h1 = candles(&r, "EURUSD", Timeframe::H1);
    assert_eq!(
        h1.iter()
            .map(|c| c.time % 86_400 / 3600)
            .collect::<Vec<_>>(),
        [0, 7, 8]
    );
}

#[test]
fn a_file_that_is_not_an_export_is_refused_with_what_it_holds() {
    let dir = TempDir::new("noheader");
    let f = dir.write(
        "EURUSD_H1_201701020000_201701020800.csv",
        b"time,price\n1,2\n",
    );
    let config = Config {
        source: SourceKind::Csv,
        csv_files: vec![f],
        http: HttpBind::Off,
        ..Config::default()
    };
    let err = streamer_bin::run(&config, &AtomicBool::new(true), &mut std::io::sink()).unwrap_err();
    assert!(
        err.to_string().contains("not an MT5 export header"),
        "{err}"
    );
    assert!(err.to_string().contains("time,price"), "{err}");
    let missing = Config {
        source: SourceKind::Csv,
        csv_files: vec![Path::new("/nonexistent/x.csv").into()],
        http: HttpBind::Off,
        ..Config::default()
    };
    let err =
        streamer_bin::run(&missing, &AtomicBool::new(true), &mut std::io::sink()).unwrap_err();
    assert!(err.to_string().contains("could not read"), "{err}");
}

#[test]
fn replay_at_n_times_real_time_waits_between_bars() {
    let dir = TempDir::new("speed");
    let f = dir.write(
        "EURUSD_H1_201701020000_201701020400.csv",
        BARS_H1.as_bytes(),
    );
    let file = CsvFile::open(&f, &["EURUSD".into()], None, None).unwrap();
    // One hour apart at 7200x real time: 0.5 s between bars.
    let mut src = CsvReplay::new(vec![file], Speed::Times(7200.0));
    let mut events = Vec::new();
    src.poll(&mut events, Duration::ZERO).unwrap();
    let bars = |ev: &[Event]| ev.iter().filter(|e| matches!(e, Event::Bar(_))).count();
    assert_eq!(bars(&events), 1, "only the first bar is due at once");
    events.clear();
    src.poll(&mut events, Duration::ZERO).unwrap();
    assert_eq!(bars(&events), 0, "the next bar is not due yet");
    src.poll(&mut events, Duration::from_millis(1500)).unwrap();
    assert_eq!(bars(&events), 1, "it comes within its wait");
}

#[test]
fn random_damage_to_an_export_never_panics_and_loses_no_good_row() {
    let dir = TempDir::new("random");
    let mut rng = Lcg(42);
    let damage = [
        "",
        "\t",
        "abc",
        "2017.02.30",
        "25:00:00",
        "-1",
        "NaN",
        "1e999",
        "\u{feff}",
        "é",
        "\0",
        "\r",
        "9999999999999999999999",
        ".",
        ":",
    ];
    for round in 0..40 {
        let mut text = String::from(
            "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\n",
        );
        let (mut good, mut blank) = (0, 0);
        for i in 0..200u64 {
            let mut fields = vec![
                "2017.01.02".to_owned(),
                format!("{:02}:{:02}:00", i / 60, i % 60),
                "1.05".into(),
                "1.06".into(),
                "1.04".into(),
                "1.055".into(),
                "10".into(),
                "0".into(),
                "3".into(),
            ];
            if rng.next().is_multiple_of(4) {
                // Damage the row: replace, drop or add fields, or splice junk into one.
                match rng.next() % 4 {
                    0 => {
                        let k = rng.next() as usize % fields.len();
                        fields[k] = damage[rng.next() as usize % damage.len()].to_owned();
                    }
                    1 => {
                        fields.truncate(rng.next() as usize % fields.len());
                    }
                    2 => fields.push(damage[rng.next() as usize % damage.len()].to_owned()),
                    _ => {
                        let k = rng.next() as usize % fields.len();
                        let junk = damage[rng.next() as usize % damage.len()];
                        fields[k] = format!("{}{junk}", fields[k]);
                    }
                }
            } else {
                good += 1;
            }
            let row = fields.join("\t");
            // A row damaged down to nothing is a blank line, which is skipped, not an error.
            if row.trim().is_empty() {
                blank += 1;
            }
            text.push_str(&row);
            text.push('\n');
        }
        let path = dir.write(
            &format!("EURUSD_M1_{round:012}_201701020400.csv"),
            text.as_bytes(),
        );
        let file = CsvFile::open(
            &path,
            &["EURUSD".into()],
            Some("EURUSD"),
            Some(Timeframe::M1),
        )
        .unwrap();
        let mut src = CsvReplay::new(vec![file], Speed::Max);
        let mut events = Vec::new();
        while !events.contains(&Event::Feed(FeedState::Finished)) {
            src.poll(&mut events, Duration::ZERO).unwrap();
        }
        let bars = events.iter().filter(|e| matches!(e, Event::Bar(_))).count();
        let bad = events
            .iter()
            .filter(|e| matches!(e, Event::BadRow { .. }))
            .count();
        assert_eq!(
            bars + bad + blank,
            200,
            "round {round}: every row is a bar, a reported bad row or blank"
        );
        // Some damage leaves a row valid (an empty volume is 0, junk appended to an unused
        // column is ignored), so at least the undamaged rows arrive.
        assert!(
            bars >= good,
            "round {round}: {bars} bars, {good} undamaged rows"
        );
    }
}

#[test]
fn the_same_replay_twice_starts_clean_and_says_what_it_did() {
    let dir = TempDir::new("again");
    let f = dir.write(
        "EURUSD_H1_201701020000_201701020400.csv",
        BARS_H1.as_bytes(),
    );
    let seg = TempSegment::new("again");
    let config = Config {
        source: SourceKind::Csv,
        csv_files: vec![f],
        http: HttpBind::Off,
        segment: seg.path.clone(),
        // A ring smaller than the file, so the replay says how to keep every bar.
        buffer_sizes: [(Timeframe::H1, 2)].into_iter().collect(),
        timeframes: vec![Timeframe::H1],
        ..Config::default()
    };
    let mut said = Vec::new();
    for _ in 0..2 {
        let mut banner = Vec::new();
        streamer_bin::run(&config, &AtomicBool::new(true), &mut banner).unwrap();
        said.push(String::from_utf8(banner).unwrap());
    }
    let reader = Reader::open(&seg.path).unwrap();
    let st = reader.status();
    // The second replay was not refused bar by bar as "backwards": it started from empty rings.
    assert_eq!(
        st.counters.get(Counter::RejectedBackwardsBar),
        0,
        "{said:?}"
    );
    assert_eq!(
        st.counters.get(Counter::RejectedDuplicateBar),
        0,
        "{said:?}"
    );
    assert_eq!(candles(&reader, "EURUSD", Timeframe::H1).len(), 2);
    assert!(!said[0].contains("starting clean"), "{}", said[0]);
    assert!(
        said[1].contains("starting clean: a CSV replay"),
        "{}",
        said[1]
    );
    for text in &said {
        assert!(text.contains("replay finished: 5 bars"), "{text}");
        assert!(text.contains("--buffer H1=5"), "{text}");
    }
}

/// `--symbol-info FILE` (issue 39): a terminal's exported records replace the derived ones
/// of the symbols they name, with source `exported`; a bad file stops the start, before the
/// segment is made.
#[test]
fn an_exported_symbol_info_file_replaces_the_derived_record() {
    let dir = TempDir::new("exported");
    let f = dir.write(
        "EURUSD_H1_201701020000_201701020400.csv",
        BARS_H1.as_bytes(),
    );
    let info = dir.write(
        "info.json",
        br#"{"EURUSD": {"name": "EURUSD", "digits": 5, "point": 0.00001,
            "trade_contract_size": 100000.0, "volume_min": 0.01, "volume_max": 200.0,
            "volume_step": 0.01, "trade_tick_value": 1.0, "description": "Euro vs US Dollar",
            "trade_mode": 4}}"#,
    );
    let (_seg, r) = replay("exported", vec![f.clone()], |c| {
        c.symbol_info = Some(info.clone())
    });
    let got = r.symbol_info("EURUSD").unwrap().expect("a record");
    assert_eq!(got.source, shm_core::InfoSource::Exported);
    assert_eq!(
        got.info.get("volume_max"),
        Some(shm_core::InfoValue::Float(200.0))
    );
    assert_eq!(
        got.info.get("description"),
        Some(shm_core::InfoValue::Str("Euro vs US Dollar"))
    );

    let bad = dir.write("bad.json", br#"{"EURUSD": {"volume_step": -0.01}}"#);
    let seg = TempSegment::new("exported-bad");
    let config = Config {
        source: SourceKind::Csv,
        csv_files: vec![f],
        http: HttpBind::Off,
        segment: seg.path.clone(),
        symbol_info: Some(bad),
        ..Config::default()
    };
    let e = streamer_bin::run(&config, &AtomicBool::new(true), &mut std::io::sink())
        .expect_err("a record no symbol can have was taken");
    assert!(e.to_string().contains("EURUSD: volume_step"), "{e}");
    assert!(Reader::open(&seg.path).is_err(), "the segment was made");
}
