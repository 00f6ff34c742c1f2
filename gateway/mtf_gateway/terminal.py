"""The gateway's live backend: MetaQuotes' MetaTrader5 package, or the same API through
mt5linux. Its tick subscription is poller.py's."""

import threading
import time

from .common import (
    MAX_COUNT,
    MAX_TICK_PAGE,
    RATE_FIELDS,
    TICK_FIELDS,
    TIMEFRAMES,
    GatewayError,
    info_to_dict,
    mt5_error,
    plain,
    record_to_dict,
    records,
    tick_page,
)
from .poller import TerminalTicks


class TerminalBackend:
    """The MetaTrader5 API, from the official package or from mt5linux."""

    def __init__(self, mt5, name, server_offset=None, init_kwargs=None,
                 polling: "tuple[float, float, float]" = (0.0005, 0.05, 0.25)):
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

    def copy_ticks_range(self, symbol, from_ms, skip, to_ms, count):
        """One page of the ticks from `from_ms` to `to_ms` (see common.tick_page), fetched
        with ``copy_ticks_from`` (bounded by its count, where ``copy_ticks_range`` of a busy
        day would return millions at once) from the second of `from_ms`; the batch doubles
        while that second holds more ticks than it."""
        flags = getattr(self.mt5, "COPY_TICKS_ALL", -1)
        batch = count + skip + 1000
        while True:
            with self.lock:
                self._select(symbol)
                ticks = self.mt5.copy_ticks_from(symbol, from_ms // 1000, batch, flags)
                if ticks is None:
                    raise self._fail()
            # The package returns a numpy array (never tested for truth).
            got = records(ticks, TICK_FIELDS)
            page, done = tick_page(got, from_ms, skip, to_ms, count)
            if done or len(page) == count or len(got) < batch:
                return page
            if batch >= 64 * MAX_TICK_PAGE:
                raise GatewayError("COUNT_TOO_LARGE", "more than %d ticks in the second of %d ms" % (batch, from_ms))
            batch *= 2

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
