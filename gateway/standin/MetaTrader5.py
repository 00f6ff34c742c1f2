"""A stand-in for MetaQuotes' MetaTrader5 package: the functions the gateway calls, over a
terminal that makes ticks in real time. For tests and benchmarks where no terminal can run
(Linux, CI): put this folder first on PYTHONPATH and start the gateway with
``--backend metatrader5``.

It keeps the package's documented semantics **and types** where the gateway depends on them
(https://www.mql5.com/en/docs/python_metatrader5; ``gateway/tests/test_standin_conformance.py``
checks every return type against those pages, so a stand-in that drifts fails):

- ``copy_ticks_from``/``copy_ticks_range`` return a numpy structured array of MT5's tick dtype
  (``mt5copyticksfrom``: "ticks as numpy array with named columns time, bid, ask, last and
  flags"); ``copy_rates_from``/``copy_rates_from_pos``/``copy_rates_range`` one of MT5's rates
  dtype (``mt5copyratesfrom``). An array with more than one element has no truth value, as
  the package's has none: code that tests it with ``if ticks`` or ``ticks or ()`` fails here as
  it fails against the real package.
- ``symbol_info_tick``, ``symbol_info``, ``terminal_info``, ``account_info`` return the
  package's named tuples with all their documented fields, in order; ``symbols_get`` a tuple
  of ``SymbolInfo``.

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
- ``MT5_STANDIN_REPORT``: a file the ticks made per symbol (``made``) and the ticks themselves
  (``ticks``: ``[time_msc, bid, ask, flags]`` each) are written to, as JSON, when every symbol
  has made ``MT5_STANDIN_MAX_TICKS`` and again when the process exits normally (SIGINT, not
  SIGTERM);
- ``MT5_STANDIN_MAX_TICKS``: stop making ticks after this many per symbol (a quiet terminal
  that tests can compare with the segment); ``MT5_STANDIN_NAME``, ``MT5_STANDIN_COMPANY``,
  ``MT5_STANDIN_LOGIN``: the terminal's and account's identity;
- ``MT5_STANDIN_HOLD``: a file path; until that file exists, each symbol has its first tick
  only (a test releases the ticks once its reader is ready, so every later tick is made
  after that, whatever the machine's load);
- ``MT5_STANDIN_DESCRIPTION``: the symbols' `description` (default ``NAME stand-in``), to
  try a record the reader must refuse (a string longer than the segment keeps);
- ``MT5_STANDIN_HISTORY_DAYS`` (0), ``MT5_STANDIN_HISTORY_END`` (ms; default the last whole
  minute) and ``MT5_STANDIN_HISTORY_GAP_MS`` (20000): a past of that many days before that
  end, a tick every gap, the same in every process with the same settings (a terminal's
  history database, deeper than any ring); live ticks start at the end.

Times are the terminal's: this stand-in's server time is UTC (offset 0), so a tick's
``time_msc`` is when it happened, to the millisecond, and a reader's latency is its clock
minus ``time_msc``.
"""

import atexit
import calendar
import collections
import datetime
import fnmatch
import json
import os
import random
import threading
import time

import numpy as np

__version__ = "5.0.standin"

COPY_TICKS_ALL = -1
COPY_TICKS_INFO = 1
COPY_TICKS_TRADE = 2
TICK_FLAG_BID, TICK_FLAG_ASK, TICK_FLAG_LAST, TICK_FLAG_VOLUME = 2, 4, 8, 16

TIMEFRAME_M1, TIMEFRAME_M2, TIMEFRAME_M3, TIMEFRAME_M4, TIMEFRAME_M5, TIMEFRAME_M6 = 1, 2, 3, 4, 5, 6
TIMEFRAME_M10, TIMEFRAME_M12, TIMEFRAME_M15, TIMEFRAME_M20, TIMEFRAME_M30 = 10, 12, 15, 20, 30
TIMEFRAME_H1, TIMEFRAME_H2, TIMEFRAME_H3, TIMEFRAME_H4 = 16385, 16386, 16387, 16388
TIMEFRAME_H6, TIMEFRAME_H8, TIMEFRAME_H12, TIMEFRAME_D1 = 16390, 16392, 16396, 16408
TIMEFRAME_W1, TIMEFRAME_MN1 = 32769, 49153
# Bar length in seconds of the timeframes with a fixed length (MT5's minute and hour codes).
_SECONDS = {1: 60, 2: 120, 3: 180, 4: 240, 5: 300, 6: 360, 10: 600, 12: 720, 15: 900, 20: 1200,
            30: 1800, 16385: 3600, 16386: 7200, 16387: 10800, 16388: 14400, 16390: 21600,
            16392: 28800, 16396: 43200, 16408: 86400}

RES_S_OK, RES_E_FAIL, RES_E_INVALID_PARAMS, RES_E_NOT_FOUND = 1, -1, -2, -4
RES_E_INTERNAL_FAIL_CONNECT = -10004

# The package's array dtypes, as its copy_* functions return them (mt5copyticksfrom,
# mt5copyratesfrom: printed there as the arrays' dtype).
TICK_DTYPE = np.dtype([("time", "<i8"), ("bid", "<f8"), ("ask", "<f8"), ("last", "<f8"), ("volume", "<u8"),
                       ("time_msc", "<i8"), ("flags", "<u4"), ("volume_real", "<f8")])
RATE_DTYPE = np.dtype([("time", "<i8"), ("open", "<f8"), ("high", "<f8"), ("low", "<f8"), ("close", "<f8"),
                       ("tick_volume", "<u8"), ("spread", "<i4"), ("real_volume", "<u8")])

Tick = collections.namedtuple("Tick", "time bid ask last volume time_msc flags volume_real")
# mt5terminalinfo: every field of its example's TerminalInfo, in that order.
TerminalInfo = collections.namedtuple("TerminalInfo", (
    "community_account community_connection connected dlls_allowed trade_allowed tradeapi_disabled "
    "email_enabled ftp_enabled notifications_enabled mqid build maxbars codepage ping_last "
    "community_balance retransmission company name language path data_path commondata_path"))
# mt5accountinfo: every field of its example's AccountInfo, in that order.
AccountInfo = collections.namedtuple("AccountInfo", (
    "login trade_mode leverage limit_orders margin_so_mode trade_allowed trade_expert margin_mode "
    "currency_digits fifo_close balance credit profit equity margin margin_free margin_level "
    "margin_so_call margin_so_so margin_initial margin_maintenance assets liabilities "
    "commission_blocked name server currency company"))
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


def _ticks_array(ticks):
    return np.array([tuple(t) for t in ticks], dtype=TICK_DTYPE)


def _rates_array(bars):
    return np.array([tuple(b) for b in bars], dtype=RATE_DTYPE)


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
        # A deterministic past (MT5_STANDIN_HISTORY_DAYS before MT5_STANDIN_HISTORY_END): the
        # same in every process given the same settings, so that two stand-ins (a gateway's and
        # a bot's) agree on it, as two clients of one terminal do.
        history_days = float(os.environ.get("MT5_STANDIN_HISTORY_DAYS", "0"))
        history_end = int(os.environ.get("MT5_STANDIN_HISTORY_END", "0")) or start_ms - start_ms % 60000
        history_gap = int(os.environ.get("MT5_STANDIN_HISTORY_GAP_MS", "20000"))
        seed = os.environ.get("MT5_STANDIN_SEED", "1")
        self.symbols = {}
        for name, rate in _env_symbols():
            past = _history(name, seed, price, history_end, int(history_days * 86400000), history_gap)
            self.symbols[name] = {
                "rate": rate, "price": price, "next_ms": max(start_ms, history_end), "ticks": past,
                "made": 0, "history": len(past),
            }
            price *= price_step
        self.error = (RES_S_OK, "Success")
        self.initialized = False
        self.reported = False
        self.hold = os.environ.get("MT5_STANDIN_HOLD") or None

    def busy(self):
        """What one call to the terminal costs."""
        until = time.perf_counter() + self.call_s
        while time.perf_counter() < until:
            pass

    def advance(self, only=None):
        """Makes every tick due by now (of the symbol `only`, if given: each symbol's ticks
        are its own, so a call pays only for the symbol it asks about). The first time every
        symbol has made ``MT5_STANDIN_MAX_TICKS``, the report is written (the terminal is
        quiet from then on)."""
        self._make(only)
        if (self.max_ticks is not None and not self.reported
                and all(s["made"] >= self.max_ticks for s in self.symbols.values())):
            self.reported = True
            _write_report()

    def _make(self, only):
        now_ms = int(time.time() * 1000)
        held = self.hold is not None and not os.path.exists(self.hold)
        if self.hold is not None and not held:
            self.hold = None  # released for good
        for s in self.symbols.values() if only is None else (only,):
            if held and s["made"] >= 1:
                # Held: the first tick only, and the next one due when released.
                s["next_ms"] = max(s["next_ms"], now_ms + 1)
                continue
            while s["next_ms"] <= now_ms and (self.max_ticks is None or s["made"] < self.max_ticks) \
                    and not (held and s["made"] >= 1):
                step = max(s["price"] * 0.0001, 1e-5)
                bid = round(max(s["price"] + self.rng.choice((-1, 1)) * step, step), 5)
                s["price"] = bid
                ask = round(bid + step * 2, 5)
                msc = s["next_ms"]
                s["ticks"].append(Tick(msc // 1000, bid, ask, 0.0, 0, msc, TICK_FLAG_BID | TICK_FLAG_ASK, 0.0))
                s["made"] += 1
                if len(s["ticks"]) > 200000 + s["history"]:
                    del s["ticks"][s["history"]:s["history"] + 100000]
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


def _history(name, seed, price, end_ms, span_ms, gap_ms):
    """`span_ms` of ticks before `end_ms`, one every `gap_ms` on the millisecond grid, walking
    back from `price` (the live ticks' first): a function of its arguments only."""
    rng = random.Random("%s:%s" % (seed, name))
    first = end_ms - span_ms
    first += -first % gap_ms
    times = list(range(first, end_ms, gap_ms))
    out, p = [], price
    for msc in reversed(times):
        step = max(p * 0.0001, 1e-5)
        p = round(max(p + rng.choice((-1, 1)) * step, step), 5)
        out.append(Tick(msc // 1000, p, round(p + step * 2, 5), 0.0, 0, msc, TICK_FLAG_BID | TICK_FLAG_ASK, 0.0))
    out.reverse()
    return out


_t = _Terminal()


def _write_report():
    """The report (``MT5_STANDIN_REPORT``): the ticks made per symbol, and each symbol's ticks
    still held (``[time_msc, bid, ask, flags]``, oldest first), so that a test can compare a
    segment with what the terminal made. Written whole to a temporary name, then renamed, so
    a reader never sees half of it. Called with the lock held."""
    path = os.environ.get("MT5_STANDIN_REPORT")
    if not path:
        return
    report = {"made": {name: s["made"] for name, s in _t.symbols.items()},
              "ticks": {name: [[t.time_msc, t.bid, t.ask, t.flags] for t in s["ticks"]]
                        for name, s in _t.symbols.items()}}
    with open(path + ".tmp", "w") as f:
        json.dump(report, f)
    os.replace(path + ".tmp", path)


def _report():
    with _t.lock:
        _t.advance()
        _write_report()


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
        return TerminalInfo(
            community_account=False, community_connection=False, connected=True, dlls_allowed=False,
            trade_allowed=True, tradeapi_disabled=False, email_enabled=False, ftp_enabled=False,
            notifications_enabled=False, mqid=False, build=4755, maxbars=100000, codepage=0,
            ping_last=25000, community_balance=0.0, retransmission=0.0,
            company=os.environ.get("MT5_STANDIN_COMPANY", "Stand-in Broker"),
            name=os.environ.get("MT5_STANDIN_NAME", "MetaTrader 5 (stand-in)"), language="English",
            path="C:\\Program Files\\MetaTrader 5", data_path="C:\\Program Files\\MetaTrader 5",
            commondata_path="C:\\Users\\trader\\AppData\\Roaming\\MetaQuotes\\Terminal\\Common")


def account_info():
    with _t.lock:
        if _t.call() is None:
            return None
        return AccountInfo(
            login=int(os.environ.get("MT5_STANDIN_LOGIN", "1000")), trade_mode=0, leverage=100,
            limit_orders=200, margin_so_mode=0, trade_allowed=True, trade_expert=True, margin_mode=2,
            currency_digits=2, fifo_close=False, balance=10000.0, credit=0.0, profit=0.0,
            equity=10000.0, margin=0.0, margin_free=10000.0, margin_level=0.0, margin_so_call=50.0,
            margin_so_so=30.0, margin_initial=0.0, margin_maintenance=0.0, assets=0.0,
            liabilities=0.0, commission_blocked=0.0, name="Stand-in Trader", server="StandIn-Demo",
            currency="USD", company=os.environ.get("MT5_STANDIN_COMPANY", "Stand-in Broker"))


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


def _info(name, s):
    """The symbol's properties: a 5-digit FX-like symbol of this stand-in broker, with the
    newest tick's prices."""
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
        name=name, path="StandIn\\" + name, currency_base=name[:3],
        currency_profit=name[3:6], currency_margin=name[:3],
        description=os.environ.get("MT5_STANDIN_DESCRIPTION", name + " stand-in"))
    if tick is not None:
        values.update(bid=tick.bid, ask=tick.ask, time=tick.time,
                      spread=int(round((tick.ask - tick.bid) / 0.00001)))
    return SymbolInfo(**values)


def symbol_info(symbol):
    with _t.lock:
        s = _t.call(symbol)
        if s is None:
            return None
        return _info(symbol, s)


def symbols_total():
    with _t.lock:
        if _t.call() is None:
            return None
        return len(_t.symbols)


def symbols_get(group=None):
    """A tuple of SymbolInfo (mt5symbolsget), every symbol's, or those `group` names (``*``
    masks, ``!`` exclusions, in order)."""
    with _t.lock:
        if _t.call() is None:
            return None
        _t.advance()
        names = list(_t.symbols)
        if group is not None:
            chosen = []
            for name in names:
                keep = False
                for rule in str(group).split(","):
                    rule = rule.strip()
                    if rule.startswith("!"):
                        if fnmatch.fnmatchcase(name, rule[1:]):
                            keep = False
                    elif fnmatch.fnmatchcase(name, rule):
                        keep = True
                if keep:
                    chosen.append(name)
            names = chosen
        return tuple(_info(n, _t.symbols[n]) for n in names)


def _seconds(date):
    if isinstance(date, datetime.datetime):
        return calendar.timegm(date.utctimetuple())
    return int(date)


def _filtered(ticks, flags):
    """MT5's COPY_TICKS_* filter: INFO, ticks that changed bid or ask; TRADE, ticks that
    changed last or volume; ALL, every one."""
    if flags == COPY_TICKS_INFO:
        return [t for t in ticks if t.flags & (TICK_FLAG_BID | TICK_FLAG_ASK)]
    if flags == COPY_TICKS_TRADE:
        return [t for t in ticks if t.flags & (TICK_FLAG_LAST | TICK_FLAG_VOLUME)]
    return ticks


def _first_at(ticks, ms):
    lo, hi = 0, len(ticks)
    while lo < hi:
        mid = (lo + hi) // 2
        if ticks[mid].time_msc < ms:
            lo = mid + 1
        else:
            hi = mid
    return lo


def copy_ticks_from(symbol, date_from, count, flags):
    with _t.lock:
        s = _t.call(symbol)
        if s is None:
            return None
        if count <= 0 or flags not in (COPY_TICKS_ALL, COPY_TICKS_INFO, COPY_TICKS_TRADE):
            _t.error = (RES_E_INVALID_PARAMS, "Invalid params")
            return None
        ticks = s["ticks"]
        lo = _first_at(ticks, _seconds(date_from) * 1000)
        if flags == COPY_TICKS_ALL:
            return _ticks_array(ticks[lo:lo + count])
        return _ticks_array(_filtered(ticks[lo:], flags)[:count])


def copy_ticks_range(symbol, date_from, date_to, flags):
    with _t.lock:
        s = _t.call(symbol)
        if s is None:
            return None
        if flags not in (COPY_TICKS_ALL, COPY_TICKS_INFO, COPY_TICKS_TRADE):
            _t.error = (RES_E_INVALID_PARAMS, "Invalid params")
            return None
        ticks = s["ticks"]
        lo = _first_at(ticks, _seconds(date_from) * 1000)
        hi = _first_at(ticks, (_seconds(date_to) + 1) * 1000)
        return _ticks_array(_filtered(ticks[lo:hi], flags))


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
    return [(b[0], b[1], b[2], b[3], b[4], b[5], 2, 0) for b in bars]


def _timeframe_ok(timeframe):
    return timeframe in _SECONDS or timeframe in (TIMEFRAME_W1, TIMEFRAME_MN1)


def copy_rates_from_pos(symbol, timeframe, start_pos, count):
    with _t.lock:
        s = _t.call(symbol)
        if s is None:
            return None
        if not _timeframe_ok(timeframe) or count <= 0 or start_pos < 0:
            _t.error = (RES_E_INVALID_PARAMS, "Invalid params")
            return None
        bars = _bars(s["ticks"], timeframe)
        end = len(bars) - start_pos
        if end <= 0:
            _t.error = (RES_E_NOT_FOUND, "Terminal: Not found")
            return None
        return _rates_array(bars[max(0, end - count):end])


def copy_rates_from(symbol, timeframe, date_from, count):
    """Bars opened at or before `date_from`, at most `count`, oldest first."""
    with _t.lock:
        s = _t.call(symbol)
        if s is None:
            return None
        if not _timeframe_ok(timeframe) or count <= 0:
            _t.error = (RES_E_INVALID_PARAMS, "Invalid params")
            return None
        at = _seconds(date_from)
        bars = [b for b in _bars(s["ticks"], timeframe) if b[0] <= at]
        return _rates_array(bars[-count:])


def copy_rates_range(symbol, timeframe, date_from, date_to):
    with _t.lock:
        s = _t.call(symbol)
        if s is None:
            return None
        if not _timeframe_ok(timeframe):
            _t.error = (RES_E_INVALID_PARAMS, "Invalid params")
            return None
        lo, hi = _seconds(date_from), _seconds(date_to)
        return _rates_array([b for b in _bars(s["ticks"], timeframe) if lo <= b[0] <= hi])


# Trading, as far as a bot's forwarded call needs it (mt5ordersend_py): market deals are
# filled at once at the newest price; anything else is refused with MT5's retcode.
TRADE_ACTION_DEAL, TRADE_ACTION_PENDING = 1, 5
ORDER_TYPE_BUY, ORDER_TYPE_SELL = 0, 1
ORDER_FILLING_FOK, ORDER_FILLING_IOC, ORDER_FILLING_RETURN = 0, 1, 2
ORDER_TIME_GTC = 0
TRADE_RETCODE_DONE, TRADE_RETCODE_INVALID, TRADE_RETCODE_INVALID_VOLUME = 10009, 10013, 10014
TradeRequest = collections.namedtuple("TradeRequest", (
    "action magic order symbol volume price stoplimit sl tp deviation type type_filling type_time "
    "expiration comment position position_by"))
OrderSendResult = collections.namedtuple("OrderSendResult", (
    "retcode deal order volume price bid ask comment request_id retcode_external request"))


def order_send(request):
    """Fills a market deal (TRADE_ACTION_DEAL, buy or sell, volume within 0.01..500 by 0.01)
    at the newest ask or bid; records it in ``deals`` for tests."""
    with _t.lock:
        if _t.call() is None:
            return None
        if not isinstance(request, dict):
            _t.error = (RES_E_INVALID_PARAMS, "Invalid params")
            return None
        unknown = set(request) - set(TradeRequest._fields)
        if unknown:
            _t.error = (RES_E_INVALID_PARAMS, "Invalid params: %s" % ", ".join(sorted(unknown)))
            return None
        fields = dict(dict.fromkeys(TradeRequest._fields, 0), comment="", symbol="")
        fields.update(request)
        req = TradeRequest(**fields)
        s = _t.symbols.get(req.symbol)
        if s is not None:
            _t.advance(s)
        tick = s["ticks"][-1] if s and s["ticks"] else None
        steps = round(req.volume / 0.01)
        if (req.action != TRADE_ACTION_DEAL or req.type not in (ORDER_TYPE_BUY, ORDER_TYPE_SELL)
                or tick is None):
            code, price = TRADE_RETCODE_INVALID, 0.0
        elif not (1 <= steps <= 50000 and abs(steps * 0.01 - req.volume) < 1e-9):
            code, price = TRADE_RETCODE_INVALID_VOLUME, 0.0
        else:
            code, price = TRADE_RETCODE_DONE, tick.ask if req.type == ORDER_TYPE_BUY else tick.bid
        done = code == TRADE_RETCODE_DONE
        ticket = len(deals) + 1 if done else 0
        if done:
            deals.append(req)
        _t.error = (RES_S_OK, "Success")
        return OrderSendResult(code, ticket, ticket, req.volume if done else 0.0, price,
                               tick.bid if tick else 0.0, tick.ask if tick else 0.0,
                               "Request executed" if done else "Invalid request", 0, 0, req)


deals = []


def standin_made(symbol):
    """Ticks made so far for `symbol` (not part of MetaTrader5: for tests and benchmarks)."""
    with _t.lock:
        _t.advance()
        return _t.symbols[symbol]["made"]
