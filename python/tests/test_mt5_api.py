"""mtf_candles against real streamers: MetaTrader5's read API, answered from the segment."""

import datetime as dt
import os
import threading
import time

import layout_reader
import mtf_candles as mt5
import numpy as np
import pytest

# MetaTrader5's rates dtype, as MetaQuotes' package returns it.
MT5_DTYPE = np.dtype([("time", "<i8"), ("open", "<f8"), ("high", "<f8"), ("low", "<f8"), ("close", "<f8"),
                      ("tick_volume", "<u8"), ("spread", "<i4"), ("real_volume", "<u8")])
TIMEFRAMES = {"M1": mt5.TIMEFRAME_M1, "M5": mt5.TIMEFRAME_M5, "M15": mt5.TIMEFRAME_M15, "M30": mt5.TIMEFRAME_M30,
              "H1": mt5.TIMEFRAME_H1, "H4": mt5.TIMEFRAME_H4, "D1": mt5.TIMEFRAME_D1}


def as_rows(rates):
    return [tuple(r.item()) for r in rates]


def test_the_dtype_is_mt5s_field_by_field():
    assert mt5.RATES_DTYPE == MT5_DTYPE
    assert mt5.RATES_DTYPE.names == MT5_DTYPE.names
    for name in MT5_DTYPE.names:
        assert mt5.RATES_DTYPE.fields[name] == MT5_DTYPE.fields[name], name
    assert mt5.RATES_DTYPE.itemsize == 60
    assert (mt5.TIMEFRAME_M1, mt5.TIMEFRAME_H1, mt5.TIMEFRAME_D1, mt5.TIMEFRAME_W1, mt5.TIMEFRAME_MN1) == \
        (1, 16385, 16408, 32769, 49153)


@pytest.mark.linux_only(reason='the reference reader (layout_reader.py) is written for Linux (/dev/shm, O_NOFOLLOW, OFD locks, POSIX modes)')
def test_every_timeframe_equals_the_reference_reader_and_the_http_api(replay):
    assert mt5.initialize(segment=replay.segment), mt5.last_error()
    ref = layout_reader.Segment(replay.segment)
    for name, code in TIMEFRAMES.items():
        for n in (1, 7, 50, 2000):
            rates = mt5.copy_rates_from_pos("EURUSD", code, 0, n)
            assert rates.dtype == MT5_DTYPE
            want = [(c["time"], c["open"], c["high"], c["low"], c["close"], c["volume"], c["spread"],
                     c["real_volume"]) for c in ref.read_last("EURUSD", name, n)]
            assert as_rows(rates) == want, (name, n)
        status, body = replay.http_json("/streamer/candles/EURUSD/%s?limit=50&order=asc&format=raw" % name)
        assert status == 200, body
        http_rows = [tuple(row[:8]) for row in body["candles"]]
        assert as_rows(mt5.copy_rates_from_pos("EURUSD", code, 0, 50)) == http_rows, name


def test_positions_counts_and_ranges_follow_mt5(replay):
    assert mt5.initialize(segment=replay.segment)
    h1 = mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_H1, 0, 100)
    assert len(h1) == 24, "a day of H1 bars (the last one still forming)"
    assert list(h1["time"]) == sorted(h1["time"]), "oldest first"
    # start_pos counts back from the newest (the forming bar is position 0).
    assert as_rows(mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_H1, 1, 3)) == as_rows(h1[-4:-1])
    assert as_rows(mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_H1, 0, 1)) == as_rows(h1[-1:])
    # Past the history: what there is, as MT5 does.
    assert len(mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_H1, 20, 10)) == 4
    assert len(mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_H1, 30, 10)) == 0
    # Ranges are inclusive at both ends, on bar open times; dates as epoch or UTC datetimes.
    t = [int(x) for x in h1["time"]]
    assert as_rows(mt5.copy_rates_range("EURUSD", mt5.TIMEFRAME_H1, t[2], t[5])) == as_rows(h1[2:6])
    assert as_rows(mt5.copy_rates_range("EURUSD", mt5.TIMEFRAME_H1, t[2] + 1, t[5] - 1)) == as_rows(h1[3:5])
    utc = dt.datetime.fromtimestamp(t[5], tz=dt.timezone.utc)
    assert as_rows(mt5.copy_rates_from("EURUSD", mt5.TIMEFRAME_H1, utc, 3)) == as_rows(h1[3:6])
    assert as_rows(mt5.copy_rates_from("EURUSD", mt5.TIMEFRAME_H1, t[5] + 59, 3)) == as_rows(h1[3:6])
    assert len(mt5.copy_rates_from("EURUSD", mt5.TIMEFRAME_H1, t[0] - 1, 3)) == 0


def test_failures_are_none_with_mt5s_last_error(replay):
    assert mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 5) is None
    assert mt5.last_error()[0] == -10003, "not initialized"
    assert mt5.initialize(segment=replay.segment)
    assert mt5.copy_rates_from_pos("GBPUSD", mt5.TIMEFRAME_M1, 0, 5) is None
    assert mt5.last_error()[0] == -4
    # No W1 ring: built on read from D1 (test_dropin.py), not an error.
    assert mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_W1, 0, 5) is not None, "W1 from D1"
    assert mt5.copy_rates_from_pos("EURUSD", 7, 0, 5) is None, "no such timeframe"
    assert mt5.last_error()[0] == -4
    assert mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, -5) is None
    assert mt5.last_error()[0] == -2
    assert mt5.copy_rates_from("EURUSD", mt5.TIMEFRAME_M1, "yesterday", 5) is None
    assert mt5.last_error()[0] == -2
    assert mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 5) is not None
    assert mt5.last_error() == (1, "Success")
    assert not mt5.initialize(segment="no-such-segment-here")
    code, message = mt5.last_error()
    assert code == -10003 and "no segment" in message


def test_ticks_symbols_and_a_dataframe(live):
    assert mt5.initialize(segment=live.segment)
    assert mt5.symbols_total() == 2
    infos = mt5.symbols_get()
    assert [s.name for s in infos] == ["BTCUSDc", "XAUUSDc"]
    assert [s.name for s in mt5.symbols_get(group="*XAU*")] == ["XAUUSDc"]
    assert [s.name for s in mt5.symbols_get(group="*,!BTC*")] == ["XAUUSDc"]
    tick = mt5.symbol_info_tick("BTCUSDc")
    assert tick.bid > 0 and tick.ask >= tick.bid and tick.time == tick.time_msc // 1000
    assert mt5.symbol_info_tick("NOPE") is None and mt5.last_error()[0] == -4
    pd = pytest.importorskip("pandas", reason="pandas is optional: the DataFrame check needs it")
    frame = pd.DataFrame(mt5.copy_rates_from_pos("BTCUSDc", mt5.TIMEFRAME_M1, 0, 10))
    assert list(frame.columns) == list(MT5_DTYPE.names)
    assert len(frame) == 10
    assert mt5.version()[0] == 500


def test_a_reader_survives_a_sigkill_and_a_restart_of_the_streamer(live):
    assert mt5.initialize(segment=live.segment)
    before = mt5.copy_rates_from_pos("BTCUSDc", mt5.TIMEFRAME_M1, 0, 50)
    generation = mt5.status()["generation"]
    live.kill()
    deadline = time.monotonic() + 60
    while mt5.status()["liveness"] != "gone":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # The candles stay readable (and say they are not live in status()).
    after_kill = mt5.copy_rates_from_pos("BTCUSDc", mt5.TIMEFRAME_M1, 0, 50)
    assert len(after_kill) == len(before) == 50
    live.start()
    st = mt5.status()
    assert (st["liveness"], st["generation"]) == ("alive", generation + 1)
    assert mt5.wait_for_update("BTCUSDc", 5.0), "new ticks reach the same reader"
    assert mt5.copy_rates_from_pos("BTCUSDc", mt5.TIMEFRAME_M1, 0, 50) is not None


def test_waiting_releases_the_gil_and_keeps_its_timeout(live):
    seg = mt5.Segment(path=live.segment)
    counted = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            counted.append(1)

    t = threading.Thread(target=count)
    t.start()
    # A change, not the timeout (which returns False).
    changed = seg.wait_for_update("BTCUSDc", timeout=30.0)
    stop.set()
    t.join()
    assert changed
    assert len(counted) > 1000, "another thread ran while we waited"
    # A writer that stops: the waits return while it still publishes, then WriterGone (its
    # last act wakes the waiters), never a wait to the 30 s timeout (no speed is asserted:
    # only that no wait ran to its end, whatever the machine's load).
    started = time.perf_counter()
    live.proc.terminate()
    with pytest.raises(mt5.WriterGone):
        for _ in range(100_000):
            seg.wait_for_update(timeout=30.0)
    assert time.perf_counter() - started < 30.0


def test_a_quiet_segment_keeps_the_timeout(replay):
    # The replay has finished: its writer is alive and publishes nothing more.
    seg = mt5.Segment(path=replay.segment)
    # perf_counter: Windows' monotonic() ticks in about 15.6 ms, which measured 0.3 s as
    # 0.29999. The wait returns after its timeout (less a timer's granularity), never hangs.
    started = time.perf_counter()
    assert seg.wait_for_update(timeout=0.3) is False
    assert 0.29 <= time.perf_counter() - started < 30.0


@pytest.mark.linux_only(reason='the reference reader (layout_reader.py) is written for Linux (/dev/shm, O_NOFOLLOW, OFD locks, POSIX modes)')
def test_damaged_segments_fail_cleanly(tmp_path, replay):
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a segment" * 100)
    os.chmod(junk, 0o600)
    assert not mt5.initialize(segment=str(junk))
    assert mt5.last_error()[0] == -10003
    with pytest.raises(mt5.SegmentError):
        mt5.Segment(path=str(junk))
    short = tmp_path / "short"
    short.write_bytes(b"MTFCANDL")
    os.chmod(short, 0o600)
    with pytest.raises(mt5.SegmentError):
        mt5.Segment(path=str(short))
    # A stored candle made impossible (a NaN close in the oldest M1 slot): refused, not
    # returned as a plausible array.
    replay.proc.terminate()
    replay.proc.wait()
    ref = layout_reader.Segment(replay.segment)
    offset = next(off for s, tf, _, off in ref.rings if (s, tf) == ("EURUSD", "M1"))
    with open(replay.segment, "r+b") as f:
        f.seek(offset + 128 + 16 + 32)  # slot 0, its record, the close
        f.write(np.array([np.nan]).tobytes())
    assert mt5.initialize(segment=replay.segment)
    assert mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 2000) is None
    code, message = mt5.last_error()
    assert code == -1 and "damaged" in message, message
    # The newest bars do not include the damaged one, and are served.
    assert len(mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 10)) == 10
