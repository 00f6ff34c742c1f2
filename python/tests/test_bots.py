"""Bots written the way MetaQuotes' documentation examples and the popular bots use the
MetaTrader5 package, run with only their import line changed to `mtf_candles`: each is the
MT5 script as written, then `import MetaTrader5 as mt5` is replaced, and it must run to its end.
They read a live synthetic segment (MTF_SEGMENT names it, as a deployment would)."""

import os
import subprocess
import sys

import pytest

DOCS_TICKS = r'''
from datetime import datetime, timezone
import MetaTrader5 as mt5
import pandas as pd
print("MetaTrader5 package author: ", mt5.__author__)
print("MetaTrader5 package version: ", mt5.__version__)
if not mt5.initialize():
    print("initialize() failed, error code =", mt5.last_error())
    quit()
utc_from = datetime(2020, 1, 10, tzinfo=timezone.utc)
ticks = mt5.copy_ticks_from("BTCUSDc", utc_from, 100000, mt5.COPY_TICKS_ALL)
print("Ticks received:", len(ticks))
assert len(ticks) > 0
ticks = mt5.copy_ticks_range("BTCUSDc", utc_from, datetime.now(timezone.utc), mt5.COPY_TICKS_INFO)
mt5.shutdown()
for tick in ticks[:10]:
    print(tick)
ticks_frame = pd.DataFrame(ticks)
ticks_frame["time"] = pd.to_datetime(ticks_frame["time"], unit="s")
print(ticks_frame.head(10))
assert list(ticks_frame.columns) == ["time", "bid", "ask", "last", "volume", "time_msc", "flags", "volume_real"]
print("ok")
'''

DOCS_SYMBOL_INFO = r'''
import MetaTrader5 as mt5
import pandas as pd
if not mt5.initialize(login=25115284, server="MetaQuotes-Demo", password="4zatlbqx"):
    print("initialize() failed, error code =", mt5.last_error())
    quit()
selected = mt5.symbol_select("XAUUSDc", True)
if not selected:
    print("Failed to select XAUUSDc, error code =", mt5.last_error())
    quit()
symbol_info = mt5.symbol_info("XAUUSDc")
if symbol_info != None:
    print(symbol_info)
    print("XAUUSDc: spread =", symbol_info.spread, "  digits =", symbol_info.digits)
    symbol_info_dict = mt5.symbol_info("XAUUSDc")._asdict()
    for prop in symbol_info_dict:
        print("  {}={}".format(prop, symbol_info_dict[prop]))
    df = pd.DataFrame(list(symbol_info_dict.items()), columns=["property", "value"])
    print(df)
    assert len(df) == 96
lasttick = mt5.symbol_info_tick("XAUUSDc")
print(lasttick._asdict())
print(mt5.symbols_total(), [s.name for s in mt5.symbols_get(group="*,!BTC*")])
assert [s.name for s in mt5.symbols_get(group="*,!BTC*")] == ["XAUUSDc"]
assert mt5.symbol_info("EURJPY") is None and mt5.last_error()[0] == -4
mt5.shutdown()
print("ok")
'''

SCALPER = r'''
import time
from datetime import datetime
import MetaTrader5 as mt5

SYMBOL = "XAUUSDc"
if not mt5.initialize():
    raise SystemExit("initialize failed: %s" % (mt5.last_error(),))
info = mt5.symbol_info(SYMBOL)
point = info.point
seen = set()
deadline = time.monotonic() + 30
while len(seen) < 3:
    tick = mt5.symbol_info_tick(SYMBOL)
    if tick is None:
        raise SystemExit("no tick: %s" % (mt5.last_error(),))
    spread_points = round((tick.ask - tick.bid) / point)
    seen.add(tick.time_msc)
    assert spread_points >= 0
    if time.monotonic() > deadline:
        raise SystemExit("the price did not move in 30 s")
    time.sleep(0.05)
# Naive datetimes are local time to timestamp(), in MT5 as here.
now = datetime.now()
rates = mt5.copy_rates_range(SYMBOL, mt5.TIMEFRAME_M1, datetime.fromtimestamp(time.time() - 3600), now)
assert rates is not None and len(rates) >= 1, mt5.last_error()
bars = mt5.copy_rates_from_pos(SYMBOL, mt5.TIMEFRAME_M5, 0, 100)
closes = bars["close"]
sma_fast, sma_slow = closes[-10:].mean(), closes[-50:].mean()
signal = "buy" if sma_fast > sma_slow else "sell"
pips = abs(closes[-1] - closes[-2]) / point
print(SYMBOL, signal, "moved", round(pips), "points")
# What a bot does on an unknown symbol and a bad timeframe.
assert mt5.copy_rates_from_pos("NOPE", mt5.TIMEFRAME_M1, 0, 10) is None
assert mt5.last_error()[0] == -4
assert mt5.copy_rates_from_pos(SYMBOL, 7, 0, 10) is None
assert mt5.last_error()[0] in (-2, -4)
# A trading call with no terminal here: MT5's "unsupported", not an exception.
assert mt5.positions_get(symbol=SYMBOL) is None and mt5.last_error()[0] == -7
mt5.shutdown()
print("ok")
'''


@pytest.mark.parametrize("script", [DOCS_TICKS, DOCS_SYMBOL_INFO, SCALPER], ids=["docs-ticks", "docs-symbol-info", "scalper"])
def test_an_mt5_script_runs_with_only_its_import_changed(live, script):
    changed = script.replace("import MetaTrader5 as mt5", "import mtf_candles as mt5")
    assert changed.count("mtf_candles") == 1, "exactly the import line changes"
    pytest.importorskip("pandas", reason="pandas is optional: these bots use it")
    env = dict(os.environ, MTF_SEGMENT=live.segment)
    out = subprocess.run([sys.executable, "-c", changed], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stdout[-2000:] + out.stderr[-2000:]
