#!/usr/bin/env python3
"""MT5 gateway: MetaTrader 5 rates and ticks over newline-delimited JSON on TCP.

Runs beside the terminal and speaks protocol version 1 (docs/MT5_GATEWAY.md) to the Rust
streamer and monitor. Backends:

  metatrader5  MetaQuotes' MetaTrader5 package (Windows, or Python under Wine)
  mt5linux     the same API through mt5linux's RPyC bridge (Linux host, terminal under Wine)
  csv          a folder of MT5 export files served as a terminal would (offline, demos, tests)

    python3 gateway/mt5_gateway.py --backend csv --data ./exports --bind 127.0.0.1:18812

The core uses the standard library only (Python 3.9+); the terminal packages are imported
only by their backends.
"""

import argparse
import bisect
import hmac
import ipaddress
import calendar
import codecs
import json
import logging
import os
import socket
import socketserver
import sys
import threading
import time

PROTOCOL = 1
GATEWAY = "mt5_gateway.py 1.0"
MAX_LINE = 65536
MAX_COUNT = 50000
HEARTBEAT_SECONDS = 1.0
LINE_SECONDS = 10.0  # a request line must be complete this long after its first byte
EVICT_IDLE_SECONDS = 2.0  # when every slot is taken, a connection idle this long gives way
AUTH_SECONDS = 5.0  # with a token set, a connection must present it this soon after connecting
WAKE_SECONDS = 0.25  # a waiting read looks at its connection's eviction flag this often

TIMEFRAMES = {
    "M1": 1, "M2": 2, "M3": 3, "M4": 4, "M5": 5, "M6": 6, "M10": 10, "M12": 12, "M15": 15,
    "M20": 20, "M30": 30, "H1": 16385, "H2": 16386, "H3": 16387, "H4": 16388, "H6": 16390,
    "H8": 16392, "H12": 16396, "D1": 16408, "W1": 32769, "MN1": 49153,
}
# Bar length in seconds; W1 and MN1 are aligned by calendar in bar_start().
SECONDS = {
    "M1": 60, "M2": 120, "M3": 180, "M4": 240, "M5": 300, "M6": 360, "M10": 600, "M12": 720,
    "M15": 900, "M20": 1200, "M30": 1800, "H1": 3600, "H2": 7200, "H3": 10800, "H4": 14400,
    "H6": 21600, "H8": 28800, "H12": 43200, "D1": 86400, "W1": 604800, "MN1": 2592000,
}
RATE_FIELDS = ("time", "open", "high", "low", "close", "tick_volume", "spread", "real_volume")
TICK_FIELDS = ("time", "bid", "ask", "last", "volume", "time_msc", "flags", "volume_real")
# MT5 TICK_FLAG_* bits.
TICK_FLAG_BID, TICK_FLAG_ASK, TICK_FLAG_LAST, TICK_FLAG_VOLUME = 2, 4, 8, 16

log = logging.getLogger("mt5_gateway")


class GatewayError(Exception):
    """An error answered to the client: our code, or MT5_ERROR with last_error()."""

    def __init__(self, code, message, mt5_code=None, mt5_message=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.mt5_code = mt5_code
        self.mt5_message = mt5_message

    def to_json(self):
        return {"code": self.code, "message": self.message,
                "mt5_code": self.mt5_code, "mt5_message": self.mt5_message}


def mt5_error(code, message):
    return GatewayError("MT5_ERROR", "terminal call failed: %s (%d)" % (message, code), code, message)


def bad_request(message):
    return GatewayError("BAD_REQUEST", message)


def bar_start(t, tf):
    """Open time of the bar of timeframe `tf` containing epoch second `t` (server time)."""
    if tf == "W1":
        sunday = 3 * 86400  # 1970-01-04 was a Sunday; MT5 weeks start on Sunday
        return sunday + (t - sunday) // 604800 * 604800
    if tf == "MN1":
        tm = time.gmtime(t)
        return calendar.timegm((tm.tm_year, tm.tm_mon, 1, 0, 0, 0))
    return t - t % SECONDS[tf]


def plain(value):
    """A numpy scalar (or anything with .item()) as a plain Python value, without numpy."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


# Bounds of a `symbol_info` answer: MT5's SymbolInfo has 96 fields, none longer than a few
# dozen characters; anything far past that is not a terminal's and is not forwarded.
MAX_INFO_FIELDS = 256
MAX_INFO_STRING = 1024


def _has_surrogate(text):
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def info_to_dict(info):
    """MT5's SymbolInfo named tuple as a dict of plain values, kept as they come (the reader
    decides what fits), within the bounds above."""
    fields = info._asdict() if hasattr(info, "_asdict") else dict(info)
    if len(fields) > MAX_INFO_FIELDS:
        raise GatewayError("BAD_ANSWER", "symbol_info has %d fields, at most %d" % (len(fields), MAX_INFO_FIELDS))
    out = {}
    for name, value in fields.items():
        value = plain(value)
        if isinstance(value, str) and len(value) > MAX_INFO_STRING:
            raise GatewayError("BAD_ANSWER", "symbol_info field %s is %d characters long" % (name, len(value)))
        if isinstance(value, str):
            # A terminal string that is not Unicode (the package hands undecodable bytes on as
            # lone surrogates, "\udcff"): JSON readers refuse such a string, and with it the
            # whole answer. Each such character becomes U+FFFD, the rest of the record stays.
            if _has_surrogate(value):
                value = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
        if not isinstance(value, (bool, int, float, str)):
            raise GatewayError("BAD_ANSWER", "symbol_info field %s is not a number or string" % name)
        out[str(name)] = value
    return out


FLOAT_FIELDS = frozenset(("open", "high", "low", "close", "bid", "ask", "last", "volume_real"))


def record_to_dict(record, fields):
    """One record the package returned (a numpy structured record, a named tuple, a bridge's
    proxy of either, or a dict) as a dict of plain values."""
    out = {}
    for f in fields:
        if isinstance(record, dict):
            v = record[f]
        elif hasattr(record, "_asdict") or hasattr(record, f) and not hasattr(record, "dtype"):
            v = getattr(record, f)
        else:
            v = record[f]
        v = plain(v)
        out[f] = float(v) if f in FLOAT_FIELDS else int(v)
    return out


def records(values, fields):
    """What a ``copy_rates_*`` or ``copy_ticks_*`` call returned, as a list of dicts of plain
    values: the package's numpy structured array (empty, one element or many; see
    mt5copyratesfrom, mt5copyticksfrom), or a sequence of records from a bridge. Never tests
    the array for truth (an array of more than one element has none) and never assumes a
    list: ``None`` is the caller's to handle, with ``last_error()``."""
    names = getattr(getattr(values, "dtype", None), "names", None)
    if names is not None and hasattr(values, "tolist"):
        # One conversion at C speed: tolist() gives a tuple of plain Python values a row.
        at = [names.index(f) for f in fields]
        floats = [f in FLOAT_FIELDS for f in fields]
        return [{f: (float(row[i]) if fl else int(row[i])) for f, i, fl in zip(fields, at, floats)}
                for row in values.tolist()]
    return [record_to_dict(r, fields) for r in values]


# --------------------------------------------------------------------------- live terminals

class TerminalBackend:
    """The MetaTrader5 API, from the official package or from mt5linux."""

    def __init__(self, mt5, name, server_offset=None, init_kwargs=None, polling=(0.0005, 0.05, 0.25)):
        self.mt5 = mt5
        self.name = name
        self.server_offset = server_offset
        # The tick polling's bounds: shortest and longest interval (s), share of a core.
        self.polling = polling
        self.poll_intervals = {}  # symbol -> ms, of the newest tick stream
        self.lock = threading.Lock()  # the MetaTrader5 package is not thread-safe
        self.selected = set()
        with self.lock:
            if not mt5.initialize(**(init_kwargs or {})):
                code, message = mt5.last_error()
                raise mt5_error(code, message)

    def _fail(self):
        code, message = self.mt5.last_error()
        return mt5_error(code, message)

    def _select(self, symbol):
        if symbol not in self.selected:
            if not self.mt5.symbol_select(symbol, True):
                raise self._fail()
            self.selected.add(symbol)

    def hello(self):
        with self.lock:
            term = self.mt5.terminal_info()
            acc = self.mt5.account_info()
        terminal = None if term is None else {
            "name": getattr(term, "name", None), "company": getattr(term, "company", None),
            "build": plain(getattr(term, "build", None)), "connected": bool(getattr(term, "connected", False))}
        account = None if acc is None else {"server": getattr(acc, "server", None), "login": plain(getattr(acc, "login", None))}
        offset, source = self.server_offset, "configured" if self.server_offset is not None else None
        if offset is None:
            offset = self._estimate_offset()
            source = "estimated" if offset is not None else None
        return {"terminal": terminal, "account": account, "server_time_offset_seconds": offset,
                "server_time_offset_source": source, "symbols": sorted(self.selected),
                "polling": {"interval_ms": dict(self.poll_intervals),
                            "min_ms": self.polling[0] * 1000, "max_ms": self.polling[1] * 1000,
                            "cpu_share": self.polling[2]}}

    def _estimate_offset(self):
        """Server minus UTC from a fresh tick: only when the difference is within a minute of a
        whole quarter hour (so a stale weekend tick gives no answer, not a wrong one)."""
        for symbol in sorted(self.selected):
            with self.lock:
                tick = self.mt5.symbol_info_tick(symbol)
            if tick is None:
                continue
            diff = plain(tick.time) - time.time()
            rounded = int(round(diff / 900.0)) * 900
            if abs(diff - rounded) < 60:
                return rounded
        return None

    def copy_rates_from_pos(self, symbol, tf, start_pos, count):
        with self.lock:
            self._select(symbol)
            rates = self.mt5.copy_rates_from_pos(symbol, TIMEFRAMES[tf], start_pos, count)
            if rates is None:
                raise self._fail()
        return records(rates, RATE_FIELDS)

    def copy_rates_range(self, symbol, tf, frm, to):
        with self.lock:
            self._select(symbol)
            rates = self.mt5.copy_rates_range(symbol, TIMEFRAMES[tf], frm, to)
            if rates is None:
                raise self._fail()
        if len(rates) > MAX_COUNT:
            raise GatewayError("COUNT_TOO_LARGE", "the range holds %d bars, more than %d" % (len(rates), MAX_COUNT))
        return records(rates, RATE_FIELDS)

    def symbol_info_tick(self, symbol):
        with self.lock:
            self._select(symbol)
            tick = self.mt5.symbol_info_tick(symbol)
            if tick is None:
                raise self._fail()
        return record_to_dict(tick, TICK_FIELDS)

    def symbol_info(self, symbol):
        with self.lock:
            self._select(symbol)
            info = self.mt5.symbol_info(symbol)
            if info is None:
                raise self._fail()
        return info_to_dict(info)

    def tick_stream(self, symbols, since=None):
        return TerminalTicks(self, symbols, *self.polling, since=since)


class TerminalTicks:
    """Change-driven polling of the terminal: every tick after the subscription began, each
    sent once, about a millisecond after the terminal has it.

    The MetaTrader5 package has no push, so the terminal is polled, but cheaply: each
    subscribed symbol's newest tick (``symbol_info_tick``, one small call) is looked at on an
    interval that adapts, and the ticks themselves (``copy_ticks_from``) are fetched only when
    that newest tick changed:

    - a symbol that ticked in the last second is looked at every ``min_interval`` (0.5 ms by
      default, so a tick waits 0.25 ms on average); one quiet for 10 s every ``max_interval``
      (50 ms), and in between, 10 times ``min_interval``;
    - the gateway's process is held to ``cpu_share`` of one core (the terminal's calls
      included): every interval is scaled in proportion to how far it is off, never below the
      configured ones; ``intervals()`` says what each symbol gets (the ``hello`` answer's
      ``polling``).

    Several ticks can share a millisecond, so the cursor is (time_msc of the last tick sent,
    how many ticks with that time_msc were sent); a fetch re-reads from that second (MT5's
    ``copy_ticks_from`` takes seconds) and skips what was sent. A change is any difference in
    the newest tick, so a second tick in the same millisecond is seen too. A burst longer than
    one call returns is fetched in as many calls as it takes, none lost.
    """

    BATCH = 10000  # ticks one copy_ticks_from returns at most, doubled while a second holds more
    QUIET_SECONDS = 10.0

    def __init__(self, backend, symbols, min_interval=0.0005, max_interval=0.05, cpu_share=0.25, since=None):
        self.b = backend
        self.min_interval, self.max_interval, self.cpu_share = min_interval, max_interval, cpu_share
        self.flags = getattr(backend.mt5, "COPY_TICKS_ALL", -1)
        now = time.monotonic()
        self.cursor, self.newest, self.moved_at, self.due = {}, {}, {}, {}
        look_cost = 0.0
        for s in symbols:
            look = time.perf_counter()
            newest = backend.symbol_info_tick(s)  # raises for a symbol the terminal lacks
            look_cost = max(look_cost, time.perf_counter() - look)
            # From the client's own newest tick where it says which (the terminal's latest at
            # its backfill: ticks made between that and now are sent, not lost), else from the
            # terminal's newest. The ticks at that millisecond are counted as had, so that a
            # later one at the same millisecond is sent.
            m = newest["time_msc"] if since is None or s not in since else min(since[s], newest["time_msc"])
            with backend.lock:
                ticks = backend.mt5.copy_ticks_from(s, m // 1000, self.BATCH, self.flags)
            # The package returns a numpy array (never test it for truth) or None.
            at_m = 0 if ticks is None else sum(1 for t in records(ticks, ("time_msc",)) if t["time_msc"] == m)
            self.cursor[s] = (m, max(at_m, 1))
            # The tick the cursor starts from: a newer one, even made meanwhile, shows as a change.
            # (Compared by value with what a look returns: a named tuple's fields are in
            # TICK_FIELDS order.)
            self.newest[s] = tuple(newest[f] for f in TICK_FIELDS) if m == newest["time_msc"] else None
            self.moved_at[s], self.due[s] = now, now
        # The first guess of the budget's scale, from what one look cost just now, so that
        # many symbols do not start at a rate the budget then has to bring down.
        start = len(self.cursor) * look_cost / (self.cpu_share * 0.9 * self.min_interval)
        self.widen = min(max(1.0, start), self.max_interval / self.min_interval)
        self.cpu_at = (now, time.process_time())

    def interval(self, s, now):
        quiet = now - self.moved_at[s]
        base = self.min_interval if quiet < 1.0 else (
            self.min_interval * 10 if quiet < self.QUIET_SECONDS else self.max_interval)
        return min(self.max_interval, base * self.widen)

    def intervals(self):
        """What each symbol is looked at every, in milliseconds, now."""
        now = time.monotonic()
        return {s: round(self.interval(s, now) * 1000, 3) for s in self.cursor}

    def _budget(self, now):
        """Scales every interval so that the process uses `cpu_share` of a core, measured over
        the last half second: in proportion to how far it is off, at most 1.5 times a step,
        never below the configured intervals."""
        then, cpu_then = self.cpu_at
        if now - then < 0.5:
            return
        cpu = time.process_time()
        share = (cpu - cpu_then) / (now - then)
        # Aimed a tenth under the share, so that the overshoot of a step stays within it.
        step = min(1.5, max(1 / 1.5, share / (self.cpu_share * 0.9)))
        self.widen = min(max(1.0, self.widen * step), self.max_interval / self.min_interval)
        self.cpu_at = (now, cpu)

    def _fetch(self, s):
        """The ticks of `s` after the cursor, however many calls that takes."""
        out = []
        last, sent_at_last = self.cursor[s]
        batch = self.BATCH
        while True:
            with self.b.lock:
                ticks = self.b.mt5.copy_ticks_from(s, last // 1000, batch, self.flags)
            if ticks is None:
                return out
            new_last, new_count, skipped = last, sent_at_last, 0
            for d in records(ticks, TICK_FIELDS):
                m = d["time_msc"]
                if m < last or (m == last and skipped < sent_at_last):
                    skipped += m == last
                    continue
                out.append((s, d))
                if m == new_last:
                    new_count += 1
                else:
                    new_last, new_count = m, 1
            full = len(ticks) >= batch
            self.cursor[s] = (new_last, new_count)
            if not full:
                return out
            # A full answer: more may follow. From the new cursor's second, or with a larger
            # batch if one second holds more ticks than this one.
            if new_last // 1000 == last // 1000:
                batch *= 2
            last, sent_at_last = new_last, new_count

    def poll(self):
        """Waits until the next look is due, looks at the symbols due, and returns their new
        ticks as (symbol, tick) in time order (often none; a live stream never ends)."""
        wait = min(self.due.values()) - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        now = time.monotonic()
        self._budget(now)
        out = []
        for s in [s for s, due in self.due.items() if due <= now]:
            with self.b.lock:
                t = self.b.mt5.symbol_info_tick(s)
            # The package's Tick is a named tuple: compared whole, at C speed; anything else
            # (a bridge's proxy) field by field.
            newest = None if t is None else tuple(t) if isinstance(t, tuple) else tuple(
                plain(v) for v in record_to_dict(t, TICK_FIELDS).values())
            if newest is not None and newest != self.newest[s]:
                self.newest[s] = newest
                self.moved_at[s] = now
                out.extend(self._fetch(s))
            # At a fixed rate from the last due time (not from now, which would add this
            # look's own time to every interval), never in the past.
            self.due[s] = max(self.due[s] + self.interval(s, now), now)
        self.b.poll_intervals = self.intervals()
        out.sort(key=lambda st: st[1]["time_msc"])
        return out


# --------------------------------------------------------------------------- csv exports

def decode(data):
    """Text of an MT5 export: UTF-8 (BOM optional) or UTF-16 with BOM."""
    if data.startswith(codecs.BOM_UTF8):
        return data[3:].decode("utf-8", "replace")
    if data.startswith(codecs.BOM_UTF16_LE):
        return data[2:].decode("utf-16-le", "replace")
    if data.startswith(codecs.BOM_UTF16_BE):
        return data[2:].decode("utf-16-be", "replace")
    return data.decode("utf-8", "replace")


def parse_name(filename):
    """(symbol, timeframe or None for ticks) from SYMBOL_TF_FROM_TO.csv / SYMBOL_FROM_TO.csv."""
    stem = os.path.splitext(os.path.basename(filename))[0]
    parts = stem.split("_")
    stamp = lambda s: len(s) == 12 and s.isdigit()  # noqa: E731
    if len(parts) >= 3 and stamp(parts[-1]) and stamp(parts[-2]):
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-1].upper() in TIMEFRAMES:
        return "_".join(parts[:-1]), parts[-1].upper()
    return "_".join(parts), None


def parse_date(s):
    y, m, d = (int(x) for x in s.replace("-", ".").split("."))
    if not (1970 <= y <= 9999 and 1 <= m <= 12 and 1 <= d <= 31):
        raise ValueError("bad date %r" % s)
    t = calendar.timegm((y, m, d, 0, 0, 0))
    if time.gmtime(t)[:3] != (y, m, d):
        raise ValueError("no such date %r" % s)
    return t


def parse_time_ms(s):
    hms, _, frac = s.partition(".")
    parts = [int(x) for x in hms.split(":")]
    if len(parts) == 2:
        parts.append(0)
    h, m, sec = parts
    if not (0 <= h < 24 and 0 <= m < 60 and 0 <= sec < 60) or len(frac) > 3:
        raise ValueError("bad time %r" % s)
    ms = int(frac.ljust(3, "0")) if frac else 0
    return ((h * 60 + m) * 60 + sec) * 1000 + ms


def load_export(path, log_bad=log.warning):
    """Parses one export: ("bars", tf, [rate...]) or ("ticks", None, [tick...]). Bad rows are
    logged with their line number and skipped."""
    with open(path, "rb") as f:
        text = decode(f.read())
    lines = text.splitlines()
    if not lines:
        raise ValueError("%s is empty" % path)
    head = lines[0]
    sep = "\t" if "\t" in head else ";" if ";" in head else ","
    cols = [c.strip().upper() for c in head.split(sep)]
    col = {name: i for i, name in enumerate(cols)}
    if "<DATE>" not in col:
        raise ValueError("%s: the first line is not an MT5 export header" % path)
    symbol, tf = parse_name(path)
    is_bars = all(k in col for k in ("<OPEN>", "<HIGH>", "<LOW>", "<CLOSE>"))
    if not is_bars and not all(k in col for k in ("<BID>", "<ASK>", "<TIME>")):
        raise ValueError("%s: neither a bar nor a tick export" % path)
    if is_bars and tf is None:
        tf = "D1" if "<TIME>" not in col else None
        if tf is None:
            raise ValueError("%s: no timeframe in the file name" % path)
    out, bid, ask = [], None, None
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        f = line.split(sep)
        cell = lambda name: f[col[name]].strip() if name in col and col[name] < len(f) else ""  # noqa: E731
        try:
            t_ms = parse_date(cell("<DATE>")) * 1000 + (parse_time_ms(cell("<TIME>")) if "<TIME>" in col else 0)
            if is_bars:
                rate = {"time": t_ms // 1000}
                for k in ("open", "high", "low", "close"):
                    rate[k] = float(cell("<%s>" % k.upper()))
                    if not rate[k] > 0 or rate[k] == float("inf"):
                        raise ValueError("bad %s" % k)
                if rate["high"] < max(rate["open"], rate["close"]) or rate["low"] > min(rate["open"], rate["close"]):
                    raise ValueError("high/low inconsistent with open/close")
                rate["tick_volume"] = int(float(cell("<TICKVOL>") or 0))
                rate["spread"] = int(float(cell("<SPREAD>") or 0))
                rate["real_volume"] = int(float(cell("<VOL>") or 0))
                if bar_start(rate["time"], tf) != rate["time"]:
                    raise ValueError("time not on a %s boundary" % tf)
                if out and rate["time"] <= out[-1]["time"]:
                    raise ValueError("not after the previous bar")
                out.append(rate)
            else:
                flags = 0
                if cell("<BID>"):
                    bid, flags = float(cell("<BID>")), flags | TICK_FLAG_BID
                if cell("<ASK>"):
                    ask, flags = float(cell("<ASK>")), flags | TICK_FLAG_ASK
                if bid is None or ask is None:
                    raise ValueError("no bid and ask yet")
                last = float(cell("<LAST>") or 0)
                vol = float(cell("<VOLUME>") or 0)
                if cell("<FLAGS>"):
                    flags = int(cell("<FLAGS>"))
                if out and t_ms < out[-1]["time_msc"]:
                    raise ValueError("older than the previous tick")
                out.append({"time": t_ms // 1000, "bid": bid, "ask": ask, "last": last, "volume": int(vol),
                            "time_msc": t_ms, "flags": flags, "volume_real": vol})
        except (ValueError, KeyError, IndexError) as e:
            log_bad("%s:%d: skipped: %s" % (path, n, e))
    return ("bars", tf, out) if is_bars else ("ticks", None, out)


def aggregate(rates, tf):
    """Bars of a longer timeframe built from shorter ones (oldest first)."""
    out = []
    for r in rates:
        t = bar_start(r["time"], tf)
        if out and out[-1]["time"] == t:
            g = out[-1]
            g["high"] = max(g["high"], r["high"])
            g["low"] = min(g["low"], r["low"])
            g["close"] = r["close"]
            g["tick_volume"] += r["tick_volume"]
            g["real_volume"] += r["real_volume"]
            g["spread"] = min(g["spread"], r["spread"])
        else:
            g = dict(r)
            g["time"] = t
            out.append(g)
    return out


def price_digits(ticks):
    """MT5's `digits` of a symbol: the most decimal places any bid or ask shows (at most 8)."""
    digits = 0
    for t in ticks:
        for p in (t["bid"], t["ask"]):
            text = repr(float(p))
            if "e" not in text and "." in text:
                digits = max(digits, len(text.split(".")[1].rstrip("0")))
    return min(digits, 8)


def ticks_to_m1(ticks):
    """M1 bars from ticks, built from bids like MT5's. The bar's spread follows MT5's rule for
    history bars: the smallest spread of the bar's ticks, in points (10^-digits, digits from
    the tick prices' precision)."""
    scale = 10 ** price_digits(ticks)
    bars = []
    for t in ticks:
        start = bar_start(t["time"], "M1")
        spread = max(0, int(round((t["ask"] - t["bid"]) * scale)))
        if bars and bars[-1]["time"] == start:
            b = bars[-1]
            b["high"] = max(b["high"], t["bid"])
            b["low"] = min(b["low"], t["bid"])
            b["close"] = t["bid"]
            b["tick_volume"] += 1
            b["real_volume"] += t["volume"]
            b["spread"] = min(b["spread"], spread)
        else:
            bars.append({"time": start, "open": t["bid"], "high": t["bid"], "low": t["bid"], "close": t["bid"],
                         "tick_volume": 1, "spread": spread, "real_volume": t["volume"]})
    return bars


class CsvBackend:
    """A folder of MT5 exports, served as a terminal would serve that history."""

    name = "csv"

    def __init__(self, folder, speed=None, server_offset=None):
        self.speed = speed  # None: as fast as possible
        self.server_offset = server_offset
        self.bars = {}  # symbol -> (tf, rates) of the shortest bar file
        self.ticks = {}  # symbol -> [tick]
        for name in sorted(os.listdir(folder)):
            if not name.lower().endswith(".csv"):
                continue
            path = os.path.join(folder, name)
            try:
                kind, tf, rows = load_export(path)
            except (OSError, ValueError) as e:
                log.warning("ignoring %s: %s", path, e)
                continue
            symbol, _ = parse_name(path)
            if kind == "ticks":
                self.ticks[symbol] = rows
            elif symbol not in self.bars or SECONDS[tf] < SECONDS[self.bars[symbol][0]]:
                self.bars[symbol] = (tf, rows)
        self.cache = {}
        if not self.bars and not self.ticks:
            log.warning("no MT5 export files in %s", folder)

    def symbols(self):
        return sorted(set(self.bars) | set(self.ticks))

    def hello(self):
        return {"terminal": None, "account": None, "server_time_offset_seconds": self.server_offset,
                "server_time_offset_source": "configured" if self.server_offset is not None else None,
                "symbols": self.symbols()}

    def rates(self, symbol, tf):
        key = (symbol, tf)
        if key not in self.cache:
            if symbol in self.bars:
                base_tf, base = self.bars[symbol]
            elif symbol in self.ticks:
                base_tf, base = "M1", ticks_to_m1(self.ticks[symbol])
            else:
                raise mt5_error(-4, "Terminal: Not found")
            if SECONDS[tf] < SECONDS[base_tf] or (tf not in ("W1", "MN1") and SECONDS[tf] % SECONDS[base_tf]):
                raise mt5_error(-4, "Terminal: Not found (no %s history for %s)" % (tf, symbol))
            self.cache[key] = base if tf == base_tf else aggregate(base, tf)
        return self.cache[key]

    def copy_rates_from_pos(self, symbol, tf, start_pos, count):
        rates = self.rates(symbol, tf)
        end = len(rates) - start_pos
        return [dict(r) for r in rates[max(0, end - count):max(0, end)]]

    def copy_rates_range(self, symbol, tf, frm, to):
        rates = self.rates(symbol, tf)
        times = [r["time"] for r in rates]
        lo, hi = bisect.bisect_left(times, frm), bisect.bisect_right(times, to)
        if hi - lo > MAX_COUNT:
            raise GatewayError("COUNT_TOO_LARGE", "the range holds %d bars, more than %d" % (hi - lo, MAX_COUNT))
        return [dict(r) for r in rates[lo:hi]]

    def symbol_info_tick(self, symbol):
        ticks = self.ticks.get(symbol)
        if not ticks:
            raise mt5_error(-4, "Terminal: Not found")
        return dict(ticks[-1])

    def symbol_info(self, symbol):
        """What an export shows of a symbol: its name, digits and point from the prices'
        precision, and for a six-letter FX name its currencies; every other field MT5's value
        for a missing property (0, False, empty)."""
        if symbol in self.ticks:
            prices = self.ticks[symbol]
        elif symbol in self.bars:
            prices = [{"bid": r["close"], "ask": r["open"]} for r in self.bars[symbol][1]]
        else:
            raise mt5_error(-4, "Terminal: Not found")
        digits = price_digits(prices)
        info = {"name": symbol, "digits": digits, "point": 10.0 ** -digits,
                "trade_tick_size": 10.0 ** -digits, "spread_float": True, "select": True,
                "visible": True}
        if len(symbol) >= 6 and symbol[:6].isalpha() and symbol[:6].isupper():
            info.update(currency_base=symbol[:3], currency_profit=symbol[3:6], currency_margin=symbol[:3])
        return info

    def tick_stream(self, symbols, since=None):
        """A replay from the start of the files (``since`` is for live terminals)."""
        for s in symbols:
            if s not in self.symbols():
                raise mt5_error(-4, "Terminal: Not found (%s)" % s)
        return CsvTicks([(t["time_msc"], s, t) for s in symbols for t in self.ticks.get(s, [])], self.speed)


class CsvTicks:
    """Replays ticks merged by time at N x real time (or at once)."""

    def __init__(self, ticks, speed):
        self.ticks = sorted(ticks, key=lambda x: x[0])
        self.i = 0
        self.speed = speed
        self.anchor = None  # (first tick ms, monotonic start)

    def poll(self):
        if self.i >= len(self.ticks):
            return None
        if self.speed is None:
            batch = self.ticks[self.i:self.i + 1000]
            self.i += len(batch)
            return [(s, dict(t)) for _, s, t in batch]
        t_ms = self.ticks[self.i][0]
        if self.anchor is None:
            self.anchor = (t_ms, time.monotonic())
        due = self.anchor[1] + (t_ms - self.anchor[0]) / 1000.0 / self.speed
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, 0.25))
            if wait > 0.25:
                return []
        out = []
        while self.i < len(self.ticks) and self.ticks[self.i][0] == t_ms:
            _, s, t = self.ticks[self.i]
            out.append((s, dict(t)))
            self.i += 1
        return out


# --------------------------------------------------------------------------- protocol

def require(req, name, kind):
    v = req.get(name)
    ok = isinstance(v, kind) and not isinstance(v, bool) if kind is int else isinstance(v, kind)
    if not ok:
        raise bad_request("%r is required and must be %s" % (name, {int: "an integer", str: "a string", list: "a list"}[kind]))
    return v


def timeframe(req):
    tf = require(req, "timeframe", str).upper()
    if tf not in TIMEFRAMES:
        raise GatewayError("UNKNOWN_TIMEFRAME", "unknown timeframe %r; expected one of %s" % (req["timeframe"], ", ".join(TIMEFRAMES)))
    return tf


def symbol(req):
    s = require(req, "symbol", str)
    if not s or len(s) > 64:
        raise bad_request("symbol must be 1 to 64 characters")
    return s


def handle_request(backend, req, limits):
    """The result of one request (a dict), or raises GatewayError. subscribe_ticks is handled
    by the connection."""
    op = req.get("op")
    if op == "hello":
        proto = req.get("protocol", PROTOCOL)
        if not isinstance(proto, int) or isinstance(proto, bool) or proto < 1:
            raise GatewayError("PROTOCOL_VERSION", "this gateway speaks protocol %d" % PROTOCOL)
        info = backend.hello()
        info.update({"protocol": PROTOCOL, "gateway": GATEWAY, "backend": backend.name, "limits": limits})
        return info
    if op == "ping":
        return {"pong": True, "time_ms": int(time.time() * 1000)}
    if op == "copy_rates_from_pos":
        s, tf = symbol(req), timeframe(req)
        start, count = require(req, "start_pos", int), require(req, "count", int)
        if start < 0:
            raise bad_request("start_pos must be at least 0")
        if not 1 <= count <= MAX_COUNT:
            raise bad_request("count must be from 1 to %d" % MAX_COUNT)
        return {"rates": backend.copy_rates_from_pos(s, tf, start, count)}
    if op == "copy_rates_range":
        s, tf = symbol(req), timeframe(req)
        frm, to = require(req, "from", int), require(req, "to", int)
        if frm > to:
            raise bad_request("from must not be after to")
        return {"rates": backend.copy_rates_range(s, tf, frm, to)}
    if op == "symbol_info_tick":
        return {"tick": backend.symbol_info_tick(symbol(req))}
    if op == "symbol_info":
        return {"info": backend.symbol_info(symbol(req))}
    raise GatewayError("UNKNOWN_OP", "unknown op %r" % (op,))


def reject_constant(name):
    raise ValueError("%s is not JSON" % name)


class Handler(socketserver.StreamRequestHandler):
    """One client connection."""

    def setup(self):
        super().setup()
        # A tick goes out the moment it is written: no Nagle delay behind the previous one.
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.peer = "%s:%d" % self.client_address[:2]
        self.pending = b""
        self.authenticated = self.server.token is None
        self.streaming = False
        self.evicted = False  # set by the server when another client needs this slot
        self.connected_at = time.monotonic()

    def send(self, obj):
        self.send_all([obj])

    def send_all(self, objs):
        """Writes lines in one write: a batch of ticks leaves as soon as it is had, together."""
        self.wfile.write(b"".join(json.dumps(o, separators=(",", ":"), allow_nan=False).encode() + b"\n" for o in objs))
        self.wfile.flush()

    def read_line(self):
        """One request line, or b"" at the end. Waits up to the idle timeout for its first byte,
        then LINE_SECONDS for the whole line from that first byte, whitespace included, however
        slowly its bytes come (a drip of spaces no longer restarts the clock); without the token
        yet, everything must arrive within AUTH_SECONDS of connecting. Raises socket.timeout
        past any of them, and ValueError for a line over MAX_LINE bytes."""
        deadline = time.monotonic() + LINE_SECONDS if self.pending else None
        idle_until = time.monotonic() + self.server.idle_timeout
        while b"\n" not in self.pending:
            if len(self.pending) > MAX_LINE:
                raise ValueError("line too long")
            if self.evicted:
                raise socket.timeout("evicted")
            now = time.monotonic()
            timeout = idle_until - now if deadline is None else deadline - now
            if not self.authenticated:
                timeout = min(timeout, self.connected_at + AUTH_SECONDS - now)
            if timeout <= 0:
                raise socket.timeout("request line not complete in time")
            # Waits in slices: on Windows, shutdown() from another thread does not wake a
            # blocked recv (Linux's does), so an evicted connection notices its flag here.
            self.connection.settimeout(min(timeout, WAKE_SECONDS))
            try:
                chunk = self.connection.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                return b""
            if deadline is None:
                deadline = time.monotonic() + LINE_SECONDS
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        if len(line) > MAX_LINE:
            raise ValueError("line too long")
        return line + b"\n"

    def handle(self):
        server = self.server
        if not server.slots.acquire(blocking=False):
            # Every slot is taken: the connection idle the longest gives way, so that idle
            # sockets cannot lock everyone out.
            if not (server.evict_idlest() and server.slots.acquire(timeout=2)):
                log.info("client %s refused: %d clients already", self.peer, server.max_clients)
                self.send({"id": None, "ok": False, "error": GatewayError("BUSY", "too many clients").to_json()})
                return
        server.touch(self)
        served = 0
        try:
            log.info("client %s connected", self.peer)
            while True:
                try:
                    line = self.read_line()
                except ValueError:
                    self.send({"id": None, "ok": False, "error": GatewayError("LINE_TOO_LONG", "request lines are limited to %d bytes" % MAX_LINE).to_json()})
                    break
                except (socket.timeout, OSError):
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                # Only a request counts as activity: bytes that make none do not keep a
                # connection from being the idlest.
                server.touch(self)
                served += 1
                req_id = None
                try:
                    try:
                        # NaN and Infinity are not JSON (Python's parser takes them by default).
                        req = json.loads(line, parse_constant=reject_constant)
                    except ValueError as e:
                        raise GatewayError("BAD_JSON", "not JSON: %s" % e)
                    if not isinstance(req, dict):
                        raise GatewayError("BAD_JSON", "a request must be a JSON object")
                    rid = req.get("id")
                    if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (int, str))):
                        raise bad_request("id must be an integer or a string")
                    req_id = rid
                    if not self.authenticated:
                        given = req.get("token")
                        if not (isinstance(given, str) and hmac.compare_digest(given.encode(), server.token.encode())):
                            self.send({"id": req_id, "ok": False, "error": GatewayError("UNAUTHORIZED", "this gateway needs its token (--token) in the request").to_json()})
                            log.warning("client %s refused: no valid token", self.peer)
                            break
                        self.authenticated = True
                    if req.get("op") == "subscribe_ticks":
                        self.streaming = True
                        self.stream(req)
                        return
                    result = handle_request(server.backend, req, server.limits)
                    self.send({"id": req_id, "ok": True, "result": result})
                except GatewayError as e:
                    self.send({"id": req_id, "ok": False, "error": e.to_json()})
                except (BrokenPipeError, ConnectionError):
                    break
                except Exception as e:  # a bug: answer it, log it, keep serving
                    log.exception("request from %s failed", self.peer)
                    try:
                        self.send({"id": req_id, "ok": False, "error": GatewayError("INTERNAL", "%s: %s" % (type(e).__name__, e)).to_json()})
                    except (OSError, ValueError):
                        break
        finally:
            server.forget(self)
            server.slots.release()
            log.info("client %s disconnected after %d request(s)", self.peer, served)

    def stream(self, req):
        symbols = require(req, "symbols", list)
        if not symbols or not all(isinstance(s, str) and s for s in symbols):
            raise bad_request("symbols must be a non-empty list of strings")
        since = req.get("since_msc")
        if since is not None:
            if not (isinstance(since, dict) and len(since) <= len(symbols) and all(
                    k in symbols and isinstance(v, int) and not isinstance(v, bool) and v >= 0
                    for k, v in since.items())):
                raise bad_request("since_msc must map subscribed symbols to a time in ms")
        ticks = self.server.backend.tick_stream(symbols, since)
        self.send({"id": req.get("id"), "ok": True, "result": {"subscribed": symbols}})
        log.info("client %s subscribed to %s", self.peer, ", ".join(symbols))
        last_sent = time.monotonic()
        try:
            while not self.server.stopping:
                batch = ticks.poll()
                if batch is None:
                    self.send({"event": "end", "reason": "replay finished"})
                    return
                if batch:
                    self.send_all([{"event": "tick", "symbol": s, "tick": t} for s, t in batch])
                if batch:
                    last_sent = time.monotonic()
                elif time.monotonic() - last_sent >= HEARTBEAT_SECONDS:
                    self.send({"event": "heartbeat", "time_ms": int(time.time() * 1000)})
                    last_sent = time.monotonic()
        except (BrokenPipeError, ConnectionError, socket.timeout, OSError):
            return


class Gateway(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, backend, max_clients=8, idle_timeout=60.0, token=None):
        super().__init__(address, Handler)
        self.backend = backend
        self.max_clients = max_clients
        self.slots = threading.BoundedSemaphore(max_clients)
        self.idle_timeout = idle_timeout
        self.token = token
        self.stopping = False
        self.active = {}  # handler -> monotonic time of its last byte received
        self.active_lock = threading.Lock()
        self.limits = {"max_line_bytes": MAX_LINE, "max_count": MAX_COUNT, "max_clients": max_clients,
                       "idle_timeout_seconds": idle_timeout, "line_timeout_seconds": LINE_SECONDS,
                       "heartbeat_seconds": HEARTBEAT_SECONDS}

    def touch(self, handler):
        with self.active_lock:
            self.active[handler] = time.monotonic()

    def forget(self, handler):
        with self.active_lock:
            self.active.pop(handler, None)

    def evict_idlest(self):
        """Closes a connection that has not yet presented the token (the oldest first) or, if
        none, the request connection idle the longest, if idle for EVICT_IDLE_SECONDS; returns
        whether one was closed. Streams are never evicted: they are busy."""
        now = time.monotonic()
        with self.active_lock:
            strangers = [(h.connected_at, h) for h in self.active if not h.authenticated]
            idle = [(t, h) for h, t in self.active.items() if not h.streaming and now - t >= EVICT_IDLE_SECONDS]
            if not (strangers or idle):
                return False
            _, victim = min(strangers or idle, key=lambda th: th[0])
            self.active.pop(victim, None)
            victim.evicted = True
        log.info("client %s closed: idle while another client waited", victim.peer)
        try:
            victim.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return True

    def shutdown(self):
        self.stopping = True
        super().shutdown()


def is_loopback(host):
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_bind(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError("expected HOST:PORT, got %r" % text)
    return host.strip("[]"), int(port)


def parse_offset(text):
    t = text.strip()
    if t[:1] in "+-" and ":" in t:
        sign = -1 if t[0] == "-" else 1
        h, m = t[1:].split(":")
        return sign * (int(h) * 3600 + int(m) * 60)
    return int(t)


def parse_speed(text):
    if text.lower() == "max":
        return None
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError("speed must be positive or max")
    return v


def make_backend(args):
    if args.backend == "csv":
        if not args.data:
            raise SystemExit("mt5_gateway: --data FOLDER is required with --backend csv")
        if not os.path.isdir(args.data):
            raise SystemExit("mt5_gateway: --data %s: %s" % (args.data, "not a folder" if os.path.exists(args.data) else "no such folder"))
        backend = CsvBackend(args.data, speed=args.speed, server_offset=args.server_offset)
        if not backend.symbols():
            log.warning("--data %s holds no MT5 export (SYMBOL_TF_FROM_TO.csv bars or SYMBOL_FROM_TO.csv ticks): serving no symbol", args.data)
        return backend
    init = {}
    for key in ("path", "login", "password", "server"):
        v = getattr(args, "mt5_" + key)
        if v is not None:
            init[key] = v
    if args.backend == "metatrader5":
        try:
            import MetaTrader5 as mt5  # Windows, or Python under Wine
        except ImportError:
            raise SystemExit("mt5_gateway: the MetaTrader5 package is not installed (pip install MetaTrader5; Windows or Wine only)")
        return TerminalBackend(mt5, "metatrader5", args.server_offset, init, polling(args))
    try:
        from mt5linux import MetaTrader5  # the RPyC client
    except ImportError:
        raise SystemExit("mt5_gateway: the mt5linux package is not installed (pip install mt5linux)")
    return TerminalBackend(MetaTrader5(host=args.mt5linux_host, port=args.mt5linux_port), "mt5linux", args.server_offset, init, polling(args))


def polling(args):
    """The tick polling's bounds from the command line, checked."""
    lo, hi, share = args.poll_min_ms, args.poll_max_ms, args.poll_cpu_share
    if not (0 < lo <= hi <= 10000) or not (0 < share <= 1):
        raise SystemExit("mt5_gateway: expected 0 < --poll-min-ms <= --poll-max-ms <= 10000 and 0 < --poll-cpu-share <= 1")
    return (lo / 1000.0, hi / 1000.0, share)


def main(argv=None):
    p = argparse.ArgumentParser(description="MT5 gateway: protocol v1 over NDJSON/TCP (docs/MT5_GATEWAY.md)")
    p.add_argument("--backend", choices=("metatrader5", "mt5linux", "csv"), default="metatrader5",
                   help="where the data comes from (default: metatrader5)")
    p.add_argument("--bind", type=parse_bind, default="127.0.0.1:18812",
                   help="HOST:PORT to listen on; port 0 picks a free one (default: 127.0.0.1:18812)")
    p.add_argument("--data", help="folder of MT5 export files (csv backend; required there)")
    p.add_argument("--speed", type=parse_speed, default=None,
                   help="csv tick replay speed: N x real time, or max (default: max)")
    p.add_argument("--server-offset", type=parse_offset, default=None,
                   help="broker server time minus UTC, +HH:MM or seconds (default: estimated from a live tick; none for csv)")
    p.add_argument("--max-clients", type=int, default=8, help="clients served at once (default: 8)")
    p.add_argument("--idle-timeout", type=float, default=60.0,
                   help="seconds before an idle request connection is closed (default: 60)")
    p.add_argument("--token", default=None,
                   help="shared secret clients must send (or env MT5_GATEWAY_TOKEN); required for a non-loopback --bind (default: none)")
    p.add_argument("--allow-remote-without-token", action="store_true",
                   help="serve a non-loopback --bind without a token, on a network you trust")
    p.add_argument("--poll-min-ms", type=float, default=0.5,
                   help="terminal backends: how often a symbol that ticked in the last second is looked at (default: 0.5)")
    p.add_argument("--poll-max-ms", type=float, default=50.0,
                   help="terminal backends: how often a symbol quiet for 10 s is looked at, and the widest interval (default: 50)")
    p.add_argument("--poll-cpu-share", type=float, default=0.25,
                   help="terminal backends: the share of one core the gateway may use before its intervals widen (default: 0.25)")
    p.add_argument("--mt5-path", help="terminal64.exe to start (metatrader5/mt5linux; default: the running terminal)")
    p.add_argument("--mt5-login", type=int, help="account to log in (default: the terminal's)")
    p.add_argument("--mt5-password", help="its password")
    p.add_argument("--mt5-server", help="its trade server")
    p.add_argument("--mt5linux-host", default="127.0.0.1", help="mt5linux RPyC host (default: 127.0.0.1)")
    p.add_argument("--mt5linux-port", type=int, default=18812,
                   help="mt5linux RPyC port (default: 18812, so move --bind then)")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default: INFO)")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s mt5_gateway %(levelname)s %(message)s", stream=sys.stderr)
    if args.token is None:
        args.token = os.environ.get("MT5_GATEWAY_TOKEN")
    if args.token == "":
        args.token = None
    if not is_loopback(args.bind[0]) and args.token is None and not args.allow_remote_without_token:
        raise SystemExit("mt5_gateway: --bind %s is reachable from other hosts and no token is set: anyone there could "
                         "use your terminal. Set --token (or MT5_GATEWAY_TOKEN) and give the same to the streamer and "
                         "monitor, or pass --allow-remote-without-token on a network you trust" % args.bind[0])
    try:
        backend = make_backend(args)
    except GatewayError as e:
        raise SystemExit("mt5_gateway: cannot start the %s backend: %s" % (args.backend, e.message))
    server = Gateway(args.bind, backend, max_clients=args.max_clients, idle_timeout=args.idle_timeout, token=args.token)
    host, port = server.server_address[:2]
    # The first stdout line says where we listen (tests start us on port 0 and read it).
    print("listening on %s:%d" % (host, port), flush=True)
    log.info("%s backend, protocol %d, listening on %s:%d", backend.name, PROTOCOL, host, port)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
