"""The gateway's csv backend: a folder of MT5 export files served as a terminal would serve
that history, and their replay as a tick stream."""

import bisect
import calendar
import codecs
import os
import time

from .common import (
    MAX_COUNT,
    SECONDS,
    TICK_FLAG_ASK,
    TICK_FLAG_BID,
    TIMEFRAMES,
    GatewayError,
    bar_start,
    log,
    mt5_error,
    tick_page,
)


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
        cell = lambda name, f=f: f[col[name]].strip() if name in col and col[name] < len(f) else ""  # noqa: E731
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
        self.tick_times = {}  # symbol -> its ticks' time_msc, for paging
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

    def copy_ticks_range(self, symbol, from_ms, skip, to_ms, count):
        """One page of the export's ticks from `from_ms` to `to_ms` (see common.tick_page)."""
        if symbol not in self.symbols():
            raise mt5_error(-4, "Terminal: Not found")
        ticks = self.ticks.get(symbol, [])
        if symbol not in self.tick_times:
            self.tick_times[symbol] = [t["time_msc"] for t in ticks]
        lo = bisect.bisect_left(self.tick_times[symbol], from_ms)
        page, _ = tick_page(ticks[lo:lo + skip + count + 1], from_ms, skip, to_ms, count)
        return [dict(t) for t in page]

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
        self.anchor = None  # (first tick ms, perf_counter start: see TerminalTicks.clock)

    def poll(self):
        if self.i >= len(self.ticks):
            return None
        if self.speed is None:
            batch = self.ticks[self.i:self.i + 1000]
            self.i += len(batch)
            return [(s, dict(t)) for _, s, t in batch]
        t_ms = self.ticks[self.i][0]
        if self.anchor is None:
            self.anchor = (t_ms, time.perf_counter())
        due = self.anchor[1] + (t_ms - self.anchor[0]) / 1000.0 / self.speed
        wait = due - time.perf_counter()
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
