"""mtf_candles as a drop-in for the MetaTrader5 package: MT5's own `initialize`, the segment
chosen by `segment=` or MTF_SEGMENT, `symbol_select`, `version`, and every other call of the
package forwarded to it where it is installed (here: the stand-in terminal module,
gateway/standin/MetaTrader5.py) or answered with MT5's "unsupported" where it is not."""

import os
import subprocess
import sys

import mtf_candles as mt5
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STANDIN = os.path.join(ROOT, "gateway", "standin")


def test_initialize_takes_mt5s_arguments_and_refuses_others(replay):
    # A bot's own call, with its Windows terminal and account: the market data comes from the
    # segment, so it succeeds without a terminal here.
    assert mt5.initialize("C:\\Program Files\\MetaTrader 5\\terminal64.exe", login=123456,
                          password="secret", server="Broker-Demo", timeout=60000,
                          segment=replay.segment), mt5.last_error()
    assert mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 5) is not None
    # A keyword MT5 does not know is a TypeError, as for any Python function: a misspelt
    # `segmnet=` must never open the default segment and say Success.
    with pytest.raises(TypeError):
        mt5.initialize(segmnet=replay.segment)


def test_the_segment_comes_from_mtf_segment_when_not_given(replay, monkeypatch):
    monkeypatch.setenv("MTF_SEGMENT", replay.segment)
    assert mt5.initialize(), mt5.last_error()
    assert mt5.symbols_total() == 1
    monkeypatch.setenv("MTF_SEGMENT", "no-such-segment-here")
    assert not mt5.initialize()
    assert mt5.last_error()[0] == -10003


def test_symbol_select_version_and_the_module_identity(replay):
    assert mt5.initialize(segment=replay.segment)
    assert mt5.symbol_select("EURUSD", True) is True
    assert mt5.last_error() == (1, "Success")
    assert mt5.symbol_select("NOPE") is False
    assert mt5.last_error()[0] == -4
    major, build, date = mt5.version()
    assert major == 500 and isinstance(build, int)
    # MT5's form: 'DD Mon YYYY'.
    day, month, year = date.split(" ")
    assert len(day) == 2 and month in ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
                                       "Oct", "Nov", "Dec") and len(year) == 4
    assert mt5.__author__ and mt5.__version__


def test_terminal_calls_without_a_terminal_are_unsupported_not_attribute_errors(replay):
    assert mt5.initialize(segment=replay.segment)
    for call, args in [("account_info", ()), ("positions_get", ()), ("orders_get", ()),
                       ("order_send", ({"action": 1},)), ("history_deals_get", (0, 1)),
                       ("market_book_add", ("EURUSD",))]:
        assert getattr(mt5, call)(*args) is None, call
        code, message = mt5.last_error()
        assert code == -7 and call in message, (call, code, message)
    assert mt5.login(123456, password="secret", server="Broker-Demo") is False
    assert mt5.last_error()[0] == -7
    with pytest.raises(AttributeError):
        getattr(mt5, "no_such_function_in_mt5")  # noqa: B009 (the attribute access is the test)


def test_where_the_package_is_installed_other_calls_reach_the_terminal(replay):
    """With a module named MetaTrader5 on the path (the stand-in terminal), `initialize` also
    initializes it with the bot's arguments, its calls are forwarded, and market data still
    comes from the segment. Run in a process of its own: the package is looked for once."""
    script = r"""
import sys
import mtf_candles as mt5
import MetaTrader5
assert mt5.initialize("C:\\MT5\\terminal64.exe", login=1000, segment=sys.argv[1]), mt5.last_error()
assert MetaTrader5.terminal_info() is not None, "the package was initialized too"
account = mt5.account_info()
assert account is not None and account.login == 1000, account
assert mt5.terminal_info().company == "Stand-in Broker"
# Ticks come from the segment too (a bar replay's has none), in MT5's dtype.
ticks = mt5.copy_ticks_from("EURUSD", 0, 10, mt5.COPY_TICKS_ALL)
assert ticks is not None and ticks.dtype == mt5.TICKS_DTYPE, ticks
# Market data still from the segment: the replay's EURUSD candles, not the stand-in's.
rates = mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 3)
assert rates is not None and rates["time"][-1] < 1750000000, rates
assert mt5.version()[1] == 4755, mt5.version()
MetaTrader5.shutdown()
print("ok")
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([STANDIN] + sys.path),
               MT5_STANDIN_SYMBOLS="EURUSD=50", MT5_STANDIN_LOGIN="1000")
    out = subprocess.run([sys.executable, "-c", script, replay.segment], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_every_mt5_timeframe_can_be_a_ring(tmp_path):
    """MT5's 21 timeframes, M2 to H12 included, can each be configured as a ring and read
    with MT5's constants: bars aligned to their period from midnight, the newest forming."""
    from conftest import Streamer
    s = Streamer(tmp_path, ["--timeframes", "M1,M2,M3,M4,M6,M10,M12,M20,H2,H3,H6,H8,H12",
                            "--buffer", "H12=10"], http=False)
    try:
        assert mt5.initialize(segment=s.segment), mt5.last_error()
        for name, seconds in [("M2", 120), ("M3", 180), ("M4", 240), ("M6", 360), ("M10", 600), ("M12", 720),
                              ("M20", 1200), ("H2", 7200), ("H3", 10800), ("H6", 21600), ("H8", 28800),
                              ("H12", 43200)]:
            rates = mt5.copy_rates_from_pos("BTCUSDc", getattr(mt5, "TIMEFRAME_" + name), 0, 5)
            assert rates is not None and len(rates) >= 1, (name, mt5.last_error())
            assert all(t % seconds == 0 for t in rates["time"]), name
            assert list(rates["time"]) == sorted(set(rates["time"])), name
    finally:
        s.stop()


def _grouped(rates, start_of):
    """MT5's rule for a longer bar, computed here independently: first open, last close,
    highest high, lowest low, volumes summed, the smallest spread."""
    out = []
    for r in rates:
        t = start_of(int(r["time"]))
        if out and out[-1][0] == t:
            b = out[-1]
            out[-1] = (t, b[1], max(b[2], r["high"]), min(b[3], r["low"]), r["close"],
                       b[5] + int(r["tick_volume"]), min(b[6], int(r["spread"])), b[7] + int(r["real_volume"]))
        else:
            out.append((t, r["open"], r["high"], r["low"], r["close"], int(r["tick_volume"]), int(r["spread"]),
                        int(r["real_volume"])))
    return out


def test_a_timeframe_without_a_ring_is_built_from_one_that_tiles_it(replay):
    """The replay holds M1, M5, M15, M30, H1, H4 and D1 rings; MT5's other 14 timeframes are
    built on read from the longest ring that tiles each, and equal an independent grouping."""
    assert mt5.initialize(segment=replay.segment)
    import calendar
    week = lambda t: t - (t // 86400 + 4) % 7 * 86400 - t % 86400  # noqa: E731  (Sunday 00:00)
    month = lambda t: calendar.timegm(time_tuple(t)[:2] + (1, 0, 0, 0))  # noqa: E731
    cases = [("M2", "M1", 120), ("M3", "M1", 180), ("M4", "M1", 240), ("M6", "M1", 360),
             ("M10", "M5", 600), ("M12", "M1", 720), ("M20", "M5", 1200), ("H2", "H1", 7200),
             ("H3", "H1", 10800), ("H6", "H1", 21600), ("H8", "H4", 28800), ("H12", "H4", 43200),
             ("W1", "D1", week), ("MN1", "D1", month)]
    for name, source, period in cases:
        start_of = period if callable(period) else (lambda t, p=period: t - t % p)
        src = mt5.copy_rates_from_pos("EURUSD", getattr(mt5, "TIMEFRAME_" + source), 0, 100000)
        built = mt5.copy_rates_from_pos("EURUSD", getattr(mt5, "TIMEFRAME_" + name), 0, 100000)
        assert built is not None, (name, mt5.last_error())
        want = _grouped(src, start_of)
        got = [tuple(r.item()) for r in built]
        assert got == [(w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]) for w in want], name
        # The HTTP API serves the same built candles.
        status, body = replay.http_json("/streamer/candles/EURUSD/%s?limit=1000&order=asc&format=raw" % name)
        assert status == 200, (name, body)
        assert [(c[0], c[1], c[2], c[3], c[4], c[5]) for c in body["candles"]] == \
            [(g[0], g[1], g[2], g[3], g[4], g[5]) for g in got], name
        # copy_rates_range and copy_rates_from answer from the same built candles.
        first, last = int(built["time"][0]), int(built["time"][-1])
        assert len(mt5.copy_rates_range("EURUSD", getattr(mt5, "TIMEFRAME_" + name), first, last)) == len(built)
        assert mt5.copy_rates_from("EURUSD", getattr(mt5, "TIMEFRAME_" + name), last, 2)["time"][-1] == last


def time_tuple(t):
    import time as _time
    return _time.gmtime(t)
