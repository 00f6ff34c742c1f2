"""What every part of the MT5 gateway shares: MT5's timeframes and record fields, the
errors answered to clients, and the conversion of what the MetaTrader5 package returns
(numpy structured arrays, named tuples) into plain JSON values. Standard library only."""

import calendar
import logging
import time

MAX_COUNT = 50000
MAX_TICK_PAGE = 20000  # ticks one copy_ticks_range page holds at most (about 3 MB of JSON)
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


def tick_page(ticks, from_ms, skip, to_ms, count):
    """One page of a paged tick range (docs/MT5_GATEWAY.md, ``copy_ticks_range``): of
    `ticks` (dicts, oldest first), those from `from_ms` to `to_ms` inclusive, less the first
    `skip` at `from_ms` (the client had them), at most `count`. Returns (page, done): done
    when the range ends within `ticks` (a tick past `to_ms`)."""
    out, skipped = [], 0
    for t in ticks:
        m = t["time_msc"]
        if m < from_ms:
            continue
        if m == from_ms and skipped < skip:
            skipped += 1
            continue
        if m > to_ms:
            return out, True
        if len(out) == count:
            return out, False
        out.append(t)
    return out, False
