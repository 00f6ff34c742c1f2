"""History deeper than the rings (issue 38, "beyond the store"): where the MetaTrader5 package
is installed, a range that reaches past what the segment's ring holds is completed from the
terminal, and equals the terminal's own answer, bar for bar and tick for tick.

A streamer is fed by the gateway over a stand-in terminal with 30 days of deterministic
history; the bot is another process with its own stand-in of the same history on its path,
as a bot on Windows has the package beside the terminal. The ring holds a week of M1
(10,080 bars) and 4,096 ticks; the answers asked for are 30 days of M1 and two days of ticks.
"""

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import ROOT, Streamer

STANDIN = os.path.join(ROOT, "gateway", "standin")


@pytest.fixture
def deep(tmp_path):
    """The streamer over a gateway over a stand-in with 30 days of history, without a history
    store, once its M1 ring is full; and the environment that gives a bot the same stand-in."""
    yield from _deep(tmp_path, ["--no-history"])


@pytest.fixture
def deep_store(tmp_path):
    """As `deep`, with the history store (its default place, beside the segment), backfilled
    from the terminal with its default depth; the H1 ring holds 100 bars, so that H1 and the
    timeframes built from it reach into the store too."""
    yield from _deep(tmp_path, ["--buffer", "H1=100"])


def _deep(tmp_path, extra):
    now_ms = int(time.time() * 1000)
    end_ms = now_ms - now_ms % 60000
    env = dict(os.environ, PYTHONPATH=STANDIN, MT5_STANDIN_SYMBOLS="EURUSD=5",
               MT5_STANDIN_HISTORY_DAYS="30", MT5_STANDIN_HISTORY_END=str(end_ms),
               MT5_STANDIN_CALL_US="0")
    gateway = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "gateway", "mt5_gateway.py"), "--backend", "metatrader5",
         "--bind", "127.0.0.1:0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = gateway.stdout.readline().decode().strip()
        assert line.startswith("listening on "), (line, gateway.stderr.read().decode()[-2000:])
        s = Streamer(tmp_path, ["--source", "mt5", "--gateway", line[len("listening on "):],
                                "--symbols", "EURUSD", "--timeframes", "M1,H1"] + extra, http=False)
        try:
            import mtf_candles
            segment = mtf_candles.Segment(path=s.segment)
            deadline = time.monotonic() + 120
            while len(segment.copy_rates_from_pos("EURUSD", mtf_candles.TIMEFRAME_M1, 0, 20000)) < 10080:
                assert time.monotonic() < deadline, "the streamer did not backfill its M1 ring"
                time.sleep(0.1)
            yield s, env, end_ms // 1000
        finally:
            s.stop()
    finally:
        gateway.terminate()
        gateway.wait(10)


BOT = r"""
import json, sys
import numpy as np
import mtf_candles as mt5
import MetaTrader5 as terminal

segment, end = sys.argv[1], int(sys.argv[2])
assert mt5.initialize(segment=segment), mt5.last_error()
ring = mt5.Segment(path=segment)
last = end - 60                      # the last bar of the history, closed
out = {}

def same(a, b):
    return len(a) == len(b) and a.dtype == b.dtype and bool((a == b).all())

# 30 days of M1: the ring holds a week; the rest comes from the terminal.
lo = last - 30 * 86400 + 60
ours = mt5.copy_rates_range("EURUSD", mt5.TIMEFRAME_M1, lo, last)
theirs = terminal.copy_rates_range("EURUSD", mt5.TIMEFRAME_M1, lo, last)
out["range"] = [len(ours), len(theirs), same(ours, theirs),
                len(ring.copy_rates_range("EURUSD", mt5.TIMEFRAME_M1, lo, last))]
assert np.all(np.diff(ours["time"]) == 60), "a gap or a duplicate at the seam"

# The 20,000 bars up to a date, and from a position (the newest are live, and the two
# stand-ins' live ticks differ: compared up to the end of the history).
ours = mt5.copy_rates_from("EURUSD", mt5.TIMEFRAME_M1, last, 20000)
theirs = terminal.copy_rates_from("EURUSD", mt5.TIMEFRAME_M1, last, 20000)
out["from"] = [len(ours), same(ours, theirs)]
ours = mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 50000)
old = ours[ours["time"] <= last]
theirs = terminal.copy_rates_range("EURUSD", mt5.TIMEFRAME_M1, int(old["time"][0]), last)
everything = terminal.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 100000)
out["pos"] = [len(ours), same(old, theirs), bool(np.all(np.diff(ours["time"]) > 0)),
              int(ours["time"][0]) == int(everything["time"][0])]

# Two days of ticks: the ring holds 4,096.
t_lo = last - 2 * 86400
ours = mt5.copy_ticks_range("EURUSD", t_lo, last, mt5.COPY_TICKS_ALL)
theirs = terminal.copy_ticks_range("EURUSD", t_lo, last, mt5.COPY_TICKS_ALL)
out["ticks"] = [len(ours), len(theirs), same(ours, theirs)]
ours = mt5.copy_ticks_from("EURUSD", t_lo, 10000, mt5.COPY_TICKS_ALL)
theirs = terminal.copy_ticks_from("EURUSD", t_lo, 10000, mt5.COPY_TICKS_ALL)
history = (last + 1) * 1000
out["ticks_from"] = [len(ours), same(ours[ours["time_msc"] < history], theirs[theirs["time_msc"] < history])]
print(json.dumps(out))
"""


def test_ranges_past_the_rings_equal_the_terminals_own_answers(deep):
    streamer, env, end = deep
    run = subprocess.run([sys.executable, "-c", BOT, streamer.segment, str(end)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    ours, theirs, same, ring_alone = got["range"]
    assert (ours, theirs, same) == (43200, 43200, True)
    assert ring_alone < 10082, "the ring alone holds a week, so the rest came from the terminal"
    assert got["from"] == [20000, True]
    # The terminal's history is 30 days (43,200 bars), fewer than the 50,000 asked: all of it,
    # from its first bar, as MT5 answers.
    assert got["pos"][0] >= 43200 and got["pos"][1:] == [True, True, True], got["pos"]
    ours, theirs, same = got["ticks"]
    assert ours == theirs > 8000 and same, got["ticks"]
    # From two days back: every history tick, then the ring's live ones (fewer than 10,000).
    assert got["ticks_from"][0] > 8640 and got["ticks_from"][1] is True, got["ticks_from"]


def test_without_the_package_the_answer_is_the_segments_own(deep):
    streamer, _, end = deep
    import mtf_candles as mt5
    assert mt5.initialize(segment=streamer.segment)
    rates = mt5.copy_rates_range("EURUSD", mt5.TIMEFRAME_M1, end - 30 * 86400, end)
    assert 10000 <= len(rates) <= 10081, len(rates)
    # How deep the rings hold is visible: status() says each ring's oldest bar.
    held = mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 20000)
    assert mt5.status()["oldest_bar"]["EURUSD"]["M1"] == int(held["time"][0])


STORE_BOT = r"""
import json, sys
import MetaTrader5 as terminal
import mtf_candles as mt5

segment, end = sys.argv[1], int(sys.argv[2])
assert terminal.initialize()
seg = mt5.Segment(path=segment)        # the segment and its store: never the terminal
last = end - 60
out = {}

def same(a, b):
    return [len(a), len(b), len(a) == len(b) and a.dtype == b.dtype and bool((a == b).all())]

lo = last - 30 * 86400 + 60
out["m1_30d"] = same(seg.copy_rates_range("EURUSD", mt5.TIMEFRAME_M1, lo, last),
                     terminal.copy_rates_range("EURUSD", mt5.TIMEFRAME_M1, lo, last))
# H1 up to the last hour the history closed (the hour after it has live ticks, which the two
# stand-ins make differently).
h1_last = last - last % 3600 - 3600
out["h1"] = same(seg.copy_rates_range("EURUSD", mt5.TIMEFRAME_H1, lo, h1_last),
                 terminal.copy_rates_range("EURUSD", mt5.TIMEFRAME_H1, lo, h1_last))
# H2, which the segment builds on read from H1 (its ring and, deeper, its store).
h2_last = last - last % 7200 - 7200
out["h2_built"] = same(seg.copy_rates_range("EURUSD", mt5.TIMEFRAME_H2, lo, h2_last),
                       terminal.copy_rates_range("EURUSD", mt5.TIMEFRAME_H2, lo, h2_last))
out["ticks_1d"] = same(seg.copy_ticks_range("EURUSD", last - 86400, last, mt5.COPY_TICKS_ALL),
                       terminal.copy_ticks_range("EURUSD", last - 86400, last, mt5.COPY_TICKS_ALL))
out["oldest"] = [seg.oldest_bar("EURUSD", mt5.TIMEFRAME_M1),
                 int(terminal.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 100000)["time"][0])]
# A built timeframe's oldest bar is the oldest it builds from its source's store, which is
# where the package's completion starts (a ring-only answer made it ask the terminal for bars
# the store held, and join them twice).
out["oldest_h2"] = [seg.oldest_bar("EURUSD", mt5.TIMEFRAME_H2),
                    int(seg.copy_rates_range("EURUSD", mt5.TIMEFRAME_H2, 0, last)["time"][0])]
print(json.dumps(out))
"""


def test_the_store_holds_the_terminals_depth(deep_store):
    """Backfilled from the terminal at start (issue 38, "depth"): the segment's own answers,
    from its history store, equal the terminal's for 30 days of M1 (the ring holds a week) and
    a day of ticks (the ring holds 4,096), with no package in the reader."""
    streamer, env, end = deep_store
    import mtf_candles as mt5
    segment = mt5.Segment(path=streamer.segment)
    # The copy is done when the store reaches the terminal's first bar; waited for, not
    # guessed.
    deadline = time.monotonic() + 120
    while len(segment.copy_rates_range("EURUSD", mt5.TIMEFRAME_M1, end - 30 * 86400, end)) < 43200:
        assert time.monotonic() < deadline, "the store was not backfilled"
        time.sleep(0.1)
    run = subprocess.run([sys.executable, "-c", STORE_BOT, streamer.segment, str(end)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["m1_30d"] == [43200, 43200, True], got
    assert got["h1"][2] and got["h1"][0] > 700, got
    assert got["h2_built"][2] and got["h2_built"][0] > 350, got
    assert got["ticks_1d"][2] and got["ticks_1d"][0] > 4096, got
    assert got["oldest"][0] == got["oldest"][1], got
    assert got["oldest_h2"][0] == got["oldest_h2"][1], got
    status = mt5.Segment(path=streamer.segment).status()
    assert status["counters"]["history_errors"] == 0
    # status() says how deep the store holds: the terminal's first bar, and the day of ticks
    # (the newest closed bar is in the ring, and goes to the store when the next one closes).
    held = status["history"]["EURUSD"]
    assert held["M1"]["oldest"] == got["oldest"][1] and held["M1"]["count"] >= 43199, held
    assert held["ticks"]["count"] > 4096 and held["ticks"]["newest"] >= (end - 120) * 1000, held
