"""The deployment a trader runs, end to end: the MT5 gateway in this Python over the
MetaTrader5 package (here the stand-in terminal, gateway/standin/MetaTrader5.py, which keeps
the package's types), `mtf-streamer --source mt5`, and a bot in a process of its own that
reads the segment through `mtf_candles` and sends its trading call to the package.

Runs in Linux Python (./scripts/test) and in Windows CPython under Wine with the Windows
build (./scripts/test-windows): there the gateway, the streamer (mtf-streamer.exe), the wheel
and the bot are all Windows programs, as beside a real terminal."""

import os
import subprocess
import sys
import time

from conftest import ROOT, Streamer

STANDIN = os.path.join(ROOT, "gateway", "standin")

BOT = r"""
import sys, time
import numpy as np
import mtf_candles as mt5

assert mt5.initialize(segment=sys.argv[1]), mt5.last_error()
until = time.monotonic() + 60
while mt5.status()["feed_state"] != "live":
    assert time.monotonic() < until, "the feed never went live: %r" % (mt5.status(),)
    time.sleep(0.05)

# Ticks: a newer one arrives while we wait on the segment (the writer wakes us).
first = mt5.symbol_info_tick("EURUSD")
assert first is not None, mt5.last_error()
until = time.monotonic() + 60
while True:
    mt5.wait_for_update("EURUSD", timeout=1.0)
    now = mt5.symbol_info_tick("EURUSD")
    if now.time_msc > first.time_msc:
        break
    assert time.monotonic() < until, "no new tick in 60 s"
ticks = mt5.copy_ticks_from("EURUSD", 0, 1000, mt5.COPY_TICKS_ALL)
assert ticks is not None and ticks.dtype == mt5.TICKS_DTYPE and len(ticks) >= 2, (ticks, mt5.last_error())
assert np.all(np.diff(ticks["time_msc"]) >= 0), "oldest first"
assert np.all(ticks["ask"] > ticks["bid"])
assert ticks["time_msc"][-1] == now.time_msc

# Symbol information: the terminal's own record, as the package gives it.
info = mt5.symbol_info("EURUSD")
assert info is not None and (info.digits, info.volume_step, info.path) == (5, 0.01, "StandIn\\EURUSD"), info
assert round((now.ask - now.bid) / info.point) >= 1

# Rates: MT5's dtype, position 0 forming, and the M1 bars hold the ticks' bids.
rates = mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 50)
assert rates is not None and rates.dtype == mt5.RATES_DTYPE and len(rates) >= 1, mt5.last_error()
assert rates["low"][-1] <= ticks["bid"][-1] <= rates["high"][-1] or rates["time"][-1] < ticks["time"][-1] // 60 * 60
assert mt5.copy_rates_from_pos("GBPUSD", mt5.TIMEFRAME_M5, 0, 10) is not None, mt5.last_error()

# Trading: forwarded to the MetaTrader5 package (the stand-in), which fills the deal.
account = mt5.account_info()
assert account is not None and account.login == 4242, account
result = mt5.order_send({"action": mt5.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 0.1,
                         "type": mt5.ORDER_TYPE_BUY, "type_filling": mt5.ORDER_FILLING_IOC,
                         "type_time": mt5.ORDER_TIME_GTC, "comment": "deployment test"})
assert result is not None and result.retcode == mt5.TRADE_RETCODE_DONE, (result, mt5.last_error())
import MetaTrader5
assert [d.comment for d in MetaTrader5.deals] == ["deployment test"], "the package got the order"
mt5.shutdown()
print("ok")
"""


def test_gateway_streamer_and_a_bot_end_to_end(tmp_path):
    env = dict(os.environ, PYTHONPATH=STANDIN, MT5_STANDIN_SYMBOLS="EURUSD=20,GBPUSD=20",
               MT5_STANDIN_PRICE_STEP="1", MT5_STANDIN_LOGIN="4242")
    gateway = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "gateway", "mt5_gateway.py"), "--backend", "metatrader5",
         "--bind", "127.0.0.1:0", "--log-level", "WARNING"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = gateway.stdout.readline().decode().strip()
        assert line.startswith("listening on "), (line, gateway.stderr.read().decode())
        streamer = Streamer(tmp_path, ["--source", "mt5", "--gateway", line[len("listening on "):],
                                       "--symbols", "EURUSD,GBPUSD", "--timeframes", "M1,M5"], http=False)
        try:
            bot_env = dict(env, PYTHONPATH=os.pathsep.join([STANDIN] + sys.path))
            started = time.monotonic()
            out = subprocess.run([sys.executable, "-c", BOT, streamer.segment], env=bot_env,
                                 stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
            assert out.returncode == 0 and out.stdout.strip() == "ok", (
                "the bot failed after %.1f s:\n%s\n%s" % (time.monotonic() - started, out.stdout, out.stderr))
        finally:
            streamer.stop()
    finally:
        gateway.terminate()
        gateway.wait(30)
