"""A stand-in for MetaQuotes' MetaTrader5 package: the functions the gateway calls, over a
terminal that makes ticks in real time. For tests and benchmarks where no terminal can run
(Linux, CI): put this folder first on PYTHONPATH and start the gateway with
``--backend metatrader5``.

It keeps the package's documented semantics where the gateway depends on them
(https://www.mql5.com/en/docs/python_metatrader5):

- ``copy_ticks_from(symbol, date_from, count, flags)``: ticks from ``date_from``, which is
  seconds (or a datetime), so a call re-reads the whole current second; at most ``count``;
  oldest first. Several ticks can share one millisecond (``time_msc``).
- ``symbol_info_tick(symbol)``: the newest tick; ``None`` (with ``last_error``) for an unknown
  symbol.
- ``copy_rates_from_pos(symbol, timeframe, start_pos, count)``: bars built from the ticks,
  oldest first, position 0 (the last) the bar of the newest tick; ``tick_volume`` counts them.
- Failures return ``None`` and set ``last_error()`` to MT5's codes (-1 generic, -2 invalid
  parameters, -4 not found, -10004 not initialised).
- Every call costs a busy time (``MT5_STANDIN_CALL_US``, default 30 µs, what the package's
  IPC to a terminal costs), so the cost of polling shows.

Configured by the environment, read at import:

- ``MT5_STANDIN_SYMBOLS``: ``EURUSD=20,GBPUSD=5``: symbols and their ticks per second;
- ``MT5_STANDIN_SEED`` (1), ``MT5_STANDIN_SAME_MS`` (0.1: the chance a tick shares the
  previous one's millisecond), ``MT5_STANDIN_PRICE`` (1.1: the first symbol's price; each
  next symbol's is ``MT5_STANDIN_PRICE_STEP`` (10) times the previous one's, so terminals and
  symbols differ);
- ``MT5_STANDIN_REPORT``: a file the ticks made per symbol are written to, as JSON, when the
  process exits normally (SIGINT, not SIGTERM);
- ``MT5_STANDIN_MAX_TICKS``: stop making ticks after this many per symbol (a quiet terminal
  that tests can compare with the segment); ``MT5_STANDIN_NAME``, ``MT5_STANDIN_COMPANY``,
  ``MT5_STANDIN_LOGIN``: the terminal's and account's identity;
- ``MT5_STANDIN_DESCRIPTION``: the symbols' `description` (default ``NAME stand-in``), to
  try a record the reader must refuse (a string longer than the segment keeps).

Times are the terminal's: this stand-in's server time is UTC (offset 0), so a tick's
``time_msc`` is when it happened, to the millisecond, and a reader's latency is its clock
minus ``time_msc``.
"""

import atexit
import calendar
import collections
import datetime
import json
import os
import random
import threading
import time

__version__ = "5.0.standin"

COPY_TICKS_ALL = -1
COPY_TICKS_INFO = 1
COPY_TICKS_TRADE = 2
TICK_FLAG_BID, TICK_FLAG_ASK, TICK_FLAG_LAST, TICK_FLAG_VOLUME = 2, 4, 8, 16

TIMEFRAME_M1, TIMEFRAME_M5, TIMEFRAME_M15, TIMEFRAME_M30 = 1, 5, 15, 30
TIMEFRAME_H1, TIMEFRAME_H4, TIMEFRAME_D1 = 16385, 16388, 16408
TIMEFRAME_W1, TIMEFRAME_MN1 = 32769, 49153
# Bar length in seconds of the timeframes with a fixed length (MT5's minute and hour codes).
_SECONDS = {1: 60, 2: 120, 3: 180, 4: 240, 5: 300, 6: 360, 10: 600, 12: 720, 15: 900, 20: 1200,
            30: 1800, 16385: 3600, 16386: 7200, 16387: 10800, 16388: 14400, 16390: 21600,
            16392: 28800, 16396: 43200, 16408: 86400}

RES_S_OK, RES_E_FAIL, RES_E_INVALID_PARAMS, RES_E_NOT_FOUND = 1, -1, -2, -4
RES_E_INTERNAL_FAIL_CONNECT = -10004

Tick = collections.namedtuple("Tick", "time bid ask last volume time_msc flags volume_real")
TerminalInfo = collections.namedtuple("TerminalInfo", "name company build connected")
AccountInfo = collections.namedtuple("AccountInfo", "server login")
# The package's SymbolInfo: 31 integers and booleans, 52 doubles, 13 strings, in its order.
_INFO_FIELDS = (
    "custom chart_mode select visible session_deals session_buy_orders session_sell_orders volume "
    "volumehigh volumelow time digits spread spread_float ticks_bookdepth trade_calc_mode trade_mode "
    "start_time expiration_time trade_stops_level trade_freeze_level trade_exemode swap_mode "
    "swap_rollover3days margin_hedged_use_leg expiration_mode filling_mode order_mode order_gtc_mode "
    "option_mode option_right bid bidhigh bidlow ask askhigh asklow last lasthigh lastlow volume_real "
    "volumehigh_real volumelow_real option_strike point trade_tick_value trade_tick_value_profit "
    "trade_tick_value_loss trade_tick_size trade_contract_size trade_accrued_interest trade_face_value "
    "trade_liquidity_rate volume_min volume_max volume_step volume_limit swap_long swap_short "
    "margin_initial margin_maintenance session_volume session_turnover session_interest "
    "session_buy_orders_volume session_sell_orders_volume session_open session_close session_aw "
    "session_price_settlement session_price_limit_min session_price_limit_max margin_hedged "
    "price_change price_volatility price_theoretical price_greeks_delta price_greeks_theta "
    "price_greeks_gamma price_greeks_vega price_greeks_rho price_greeks_omega price_sensitivity "
    "basis category currency_base currency_profit currency_margin bank description exchange formula "
    "isin name page path")
SymbolInfo = collections.namedtuple("SymbolInfo", _INFO_FIELDS)
Rate = collections.namedtuple("Rate", "time open high low close tick_volume spread real_volume")


def _env_symbols():
    out = []
    for item in os.environ.get("MT5_STANDIN_SYMBOLS", "EURUSD=20").split(","):
        name, _, rate = item.strip().partition("=")
        if name:
            out.append((name, float(rate or 20)))
    return out


class _Terminal:
    """The ticks of every symbol, made on schedule up to now whenever a call looks."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rng = random.Random(int(os.environ.get("MT5_STANDIN_SEED", "1")))
        self.call_s = float(os.environ.get("MT5_STANDIN_CALL_US", "30")) / 1e6
        self.same_ms = float(os.environ.get("MT5_STANDIN_SAME_MS", "0.1"))
        self.max_ticks = int(os.environ.get("MT5_STANDIN_MAX_TICKS", "0")) or None
        price = float(os.environ.get("MT5_STANDIN_PRICE", "1.1"))
        price_step = float(os.environ.get("MT5_STANDIN_PRICE_STEP", "10"))
        start_ms = int(time.time() * 1000)
        self.symbols = {}
        for name, rate in _env_symbols():
            self.symbols[name] = {
                "rate": rate, "price": price, "next_ms": start_ms, "ticks": [], "made": 0,
            }
            price *= price_step
        self.error = (RES_S_OK, "Success")
        self.initialized = False

    def busy(self):
        """What one call to the terminal costs."""
        until = time.perf_counter() + self.call_s
        while time.perf_counter() < until:
            pass

    def advance(self, only=None):
        """Makes every tick due by now (of the symbol `only`, if given: each symbol's ticks
        are its own, so a call pays only for the symbol it asks about)."""
        now_ms = int(time.time() * 1000)
        for s in self.symbols.values() if only is None else (only,):
            while s["next_ms"] <= now_ms and (self.max_ticks is None or s["made"] < self.max_ticks):
                step = max(s["price"] * 0.0001, 1e-5)
                bid = round(max(s["price"] + self.rng.choice((-1, 1)) * step, step), 5)
                s["price"] = bid
                ask = round(bid + step * 2, 5)
                msc = s["next_ms"]
                s["ticks"].append(Tick(msc // 1000, bid, ask, 0.0, 0, msc, TICK_FLAG_BID | TICK_FLAG_ASK, 0.0))
                s["made"] += 1
                if len(s["ticks"]) > 200000:
                    del s["ticks"][:100000]
                # The next tick: in the same millisecond now and then, else after an
                # exponential gap (whole milliseconds) of mean 1/rate.
                if self.rng.random() >= self.same_ms:
                    s["next_ms"] += max(1, int(round(self.rng.expovariate(s["rate"]) * 1000)))

    def call(self, symbol=None):
        """The cost of a call, the ticks made up to now, and the symbol's state (None and
        last_error set for an unknown one)."""
        self.busy()
        if not self.initialized:
            self.error = (RES_E_INTERNAL_FAIL_CONNECT, "No IPC connection")
            return None
        if symbol is None:
            return True
        s = self.symbols.get(symbol)
        if s is None:
            self.error = (RES_E_NOT_FOUND, "Terminal: Not found")
            return None
        self.advance(s)
        return s


_t = _Terminal()


def _report():
    path = os.environ.get("MT5_STANDIN_REPORT")
    if path:
        with _t.lock:
            _t.advance()
            made = {name: s["made"] for name, s in _t.symbols.items()}
        with open(path, "w") as f:
            json.dump(made, f)


atexit.register(_report)


def initialize(path=None, login=None, password=None, server=None, timeout=None, portable=False):
    with _t.lock:
        _t.busy()
        _t.initialized = True
        _t.error = (RES_S_OK, "Success")
        return True


def shutdown():
    with _t.lock:
        _t.initialized = False
        return True


def last_error():
    return _t.error


def version():
    return (500, 4755, "03 Dec 2026")


def terminal_info():
    with _t.lock:
        if _t.call() is None:
            return None
        return TerminalInfo(os.environ.get("MT5_STANDIN_NAME", "MetaTrader 5 (stand-in)"),
                            os.environ.get("MT5_STANDIN_COMPANY", "Stand-in Broker"), 4755, True)


def account_info():
    with _t.lock:
        if _t.call() is None:
            return None
        return AccountInfo("StandIn-Demo", int(os.environ.get("MT5_STANDIN_LOGIN", "1000")))


def symbol_select(symbol, enable=True):
    with _t.lock:
        return _t.call(symbol) is not None


def symbol_info_tick(symbol):
    with _t.lock:
        s = _t.call(symbol)
        if s is None:
            return None
        if not s["ticks"]:
            _t.error = (RES_E_NOT_FOUND, "Terminal: Not found")
            return None
        return s["ticks"][-1]


def symbol_info(symbol):
    """The symbol's properties: a 5-digit FX-like symbol of this stand-in broker, with the
    newest tick's prices."""
    with _t.lock:
        s = _t.call(symbol)
        if s is None:
            return None
        tick = s["ticks"][-1] if s["ticks"] else None
        values = dict.fromkeys(SymbolInfo._fields, 0)
        values.update({f: 0.0 for f in SymbolInfo._fields[31:83]})
        values.update({f: "" for f in SymbolInfo._fields[83:]})
        values.update(
            custom=False, select=True, visible=True, spread_float=True, margin_hedged_use_leg=False,
            digits=5, point=0.00001, trade_tick_size=0.00001, trade_tick_value=1.0,
            trade_contract_size=100000.0, volume_min=0.01, volume_max=500.0, volume_step=0.01,
            trade_mode=4, trade_exemode=2, filling_mode=1, order_mode=127, expiration_mode=15,
            swap_long=-0.5, swap_short=0.25, swap_rollover3days=3, ticks_bookdepth=10,
            name=symbol, path="StandIn\\" + symbol, currency_base=symbol[:3],
            currency_profit=symbol[3:6], currency_margin=symbol[:3],
            description=os.environ.get("MT5_STANDIN_DESCRIPTION", symbol + " stand-in"))
        if tick is not None:
            values.update(bid=tick.bid, ask=tick.ask, time=tick.time,
                          spread=int(round((tick.ask - tick.bid) / 0.00001)))
        return SymbolInfo(**values)


def _seconds(date):
    if isinstance(date, datetime.datetime):
        return calendar.timegm(date.utctimetuple())
    return int(date)


def copy_ticks_from(symbol, date_from, count, flags):
    with _t.lock:
        s = _t.call(symbol)
        if s is None:
            return None
        if count <= 0:
            _t.error = (RES_E_INVALID_PARAMS, "Invalid params")
            return None
        start_ms = _seconds(date_from) * 1000
        ticks = s["ticks"]
        lo, hi = 0, len(ticks)
        while lo < hi:
            mid = (lo + hi) // 2
            if ticks[mid].time_msc < start_ms:
                lo = mid + 1
            else:
                hi = mid
        return list(ticks[lo:lo + count])


def _bar_start(t, tf):
    if tf in _SECONDS:
        return t - t % _SECONDS[tf]
    day = t - t % 86400
    if tf == TIMEFRAME_W1:
        return day - ((day // 86400 + 4) % 7) * 86400  # Sunday (1970-01-01 was a Thursday)
    y, m = time.gmtime(t)[:2]
    return calendar.timegm((y, m, 1, 0, 0, 0))


def _bars(ticks, tf):
    bars = []
    for k in ticks:
        start = _bar_start(k.time, tf)
        if bars and bars[-1][0] == start:
            b = bars[-1]
            b[2], b[3], b[4], b[5] = max(b[2], k.bid), min(b[3], k.bid), k.bid, b[5] + 1
        else:
            bars.append([start, k.bid, k.bid, k.bid, k.bid, 1])
    return [Rate(b[0], b[1], b[2], b[3], b[4], b[5], 2, 0) for b in bars]


def copy_rates_from_pos(symbol, timeframe, start_pos, count):
    with _t.lock:
        s = _t.call(symbol)
        if s is None:
            return None
        if timeframe not in _SECONDS and timeframe not in (TIMEFRAME_W1, TIMEFRAME_MN1) or count <= 0 or start_pos < 0:
            _t.error = (RES_E_INVALID_PARAMS, "Invalid params")
            return None
        bars = _bars(s["ticks"], timeframe)
        end = len(bars) - start_pos
        if end <= 0:
            _t.error = (RES_E_NOT_FOUND, "Terminal: Not found")
            return None
        return bars[max(0, end - count):end]


def copy_rates_range(symbol, timeframe, date_from, date_to):
    with _t.lock:
        s = _t.call(symbol)
        if s is None:
            return None
        lo, hi = _seconds(date_from), _seconds(date_to)
        return [b for b in _bars(s["ticks"], timeframe) if lo <= b.time <= hi]


def standin_made(symbol):
    """Ticks made so far for `symbol` (not part of MetaTrader5: for tests and benchmarks)."""
    with _t.lock:
        _t.advance()
        return _t.symbols[symbol]["made"]
