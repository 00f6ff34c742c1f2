"""MetaTrader 5 candles from the mtf-streamer segment, behind MetaTrader5's own read API.

Change one import, and `copy_rates_from_pos` answers from shared memory in microseconds::

    import mtf_candles as mt5          # instead of: import MetaTrader5 as mt5
    mt5.initialize()                   # the segment /dev/shm/mtf-candles
    rates = mt5.copy_rates_from_pos("BTCUSDc", mt5.TIMEFRAME_M1, 0, 50)

The arrays have exactly MT5's dtype and order (oldest first; position 0 is the bar still
forming), times are the broker's server time as MT5's are, and failures return ``None`` with
an MT5-style ``last_error()``. For code that wants no module-level state, use
:class:`Segment` directly.

Dates, as MT5 takes them: epoch seconds, or a ``datetime`` whose ``timestamp()`` is compared
with the bars' server-time stamps. MetaQuotes' examples build UTC-aware datetimes
(``datetime(2024, 3, 4, tzinfo=timezone.utc)``): their fields are then read as server time,
which is what the terminal does. A naive datetime is taken as local time by ``timestamp()``,
in MT5 as here: avoid it.
"""

import os
import threading

from . import _native
from ._native import (  # noqa: F401  (re-exported)
    RATES_DTYPE,
    TICKS_DTYPE,
    NotFound,
    SegmentError,
    SegmentNotFound,
    SegmentVersionError,
    WriterGone,
)

__all__ = [
    "initialize", "shutdown", "last_error", "version", "copy_rates_from_pos", "copy_rates_from",
    "copy_rates_range", "symbol_info_tick", "symbols_total", "symbols_get", "Segment", "Tick",
    "SymbolInfo", "RATES_DTYPE", "SegmentError", "SegmentNotFound", "SegmentVersionError",
    "WriterGone", "NotFound", "DEFAULT_SEGMENT", "wait_for_update", "status", "symbol_select",
    "login", "copy_ticks_from", "copy_ticks_range", "symbol_info", "terminal_info", "account_info",
    "TerminalInfo", "TICKS_DTYPE",
]

__version__ = "0.1.0"
__author__ = "the mtf-streamer authors (MetaTrader5's API, MetaQuotes Ltd.)"

DEFAULT_SEGMENT = "mtf-candles"

# MetaTrader5's whole namespace: every constant and result type, with its values and fields
# (_namespace.py cites MetaQuotes' pages), and SymbolInfo from the segment's own field list.
from . import _namespace  # noqa: E402
from ._namespace import *  # noqa: E402,F403  (re-exported: the package's constants)
from ._namespace import (  # noqa: E402  (the names this module uses itself)
    RES_E_AUTH_FAILED,
    RES_E_FAIL,
    RES_E_INTERNAL_FAIL_INIT,
    RES_E_INVALID_PARAMS,
    RES_E_NOT_FOUND,
    RES_E_UNSUPPORTED,
    RES_S_OK,
    TICK_FLAG_ASK,
    TICK_FLAG_BID,
    AccountInfo,
    TerminalInfo,
    Tick,
)
from ._records import SYMBOL_INFO_MISSING, SymbolInfo, missing_fields  # noqa: E402,F401  (re-exported)

__all__ += [n for n in vars(_namespace) if n.isupper() and not n.startswith("_")]
__all__ += [n for n in _namespace.RESULT_TYPES if n not in __all__]


# Where the MetaTrader5 package is installed, its own constants and result types (_namespace.py).
globals().update(_namespace.from_package(__all__))

from . import _deep  # noqa: E402  (history beyond the rings, from the terminal)
from ._dates import _ms, _seconds  # noqa: E402  (MT5's date arguments)
from ._groups import MAX_GROUP, _in_group  # noqa: E402,F401  (MT5's symbol groups)


class Segment:
    """One segment, without module-level state.

    >>> seg = Segment("mtf-candles")                     # doctest: +SKIP
    >>> seg.copy_rates_from_pos("BTCUSDc", TIMEFRAME_M1, 0, 50)   # doctest: +SKIP

    Errors raise (``NotFound`` for an unknown symbol or timeframe, ``SegmentError`` and its
    subclasses for the segment itself), instead of MT5's ``None`` and ``last_error()``.
    """

    def __init__(self, name=DEFAULT_SEGMENT, path=None, trust=None, history_dir=None):
        """``name`` is a segment name (no ``/``); ``path`` a file, absolute or relative to the
        working directory. ``trust`` names further accounts whose segments may be read
        (comma-separated names or uids, as ``MTF_TRUST``): by default a segment is read only
        if this account or root owns it, since any account could take a name first.
        ``history_dir`` is the streamer's history store, where it was given ``--history-dir``
        (else ``MTF_HISTORY_DIR``, else the streamer's default place for this segment)."""
        if name is None:
            name = DEFAULT_SEGMENT
        if path is not None:
            path = os.path.abspath(os.fspath(path))
        elif not isinstance(name, str):
            raise TypeError("a segment name is a str, not %r" % (type(name).__name__,))
        if history_dir is not None:
            history_dir = os.path.abspath(os.fspath(history_dir))
        self._native = _native.Segment(name, path, trust, history_dir)

    @property
    def path(self):
        """The segment file."""
        return self._native.path

    @property
    def history_dir(self):
        """The history store's directory (it may not exist: then the rings are all there is)."""
        return self._native.history_dir

    def oldest_bar(self, symbol, timeframe):
        """The open time of the oldest bar held for the pair, in the history store or the
        ring (epoch seconds, server time), or None."""
        return self._native.oldest_bar(symbol, timeframe)

    def copy_rates_from_pos(self, symbol, timeframe, start_pos, count):
        """`count` bars back from position `start_pos` (0 is the forming bar), oldest first."""
        return self._native.copy_rates_from_pos(symbol, timeframe, start_pos, count)

    def copy_rates_from(self, symbol, timeframe, date_from, count):
        """The `count` bars that open at or before `date_from`, oldest first."""
        return self._native.copy_rates_from(symbol, timeframe, _seconds(date_from), count)

    def copy_rates_range(self, symbol, timeframe, date_from, date_to):
        """The bars that open from `date_from` to `date_to`, both inclusive, oldest first."""
        return self._native.copy_rates_range(symbol, timeframe, _seconds(date_from), _seconds(date_to))

    def symbol_info_tick(self, symbol):
        """The newest tick, as MT5's Tick; None before the first."""
        t = self._native.tick(symbol)
        if t is not None:
            return Tick._make(t)
        # A segment whose tick ring is empty (a mirror's) still records the last quote.
        last = self._native.last_tick(symbol)
        if last is None:
            return None
        time_msc, bid, ask = last
        return Tick(time_msc // 1000, bid, ask, 0.0, 0, time_msc, TICK_FLAG_BID | TICK_FLAG_ASK, 0.0)

    def copy_ticks_from(self, symbol, date_from, count, flags):
        """At most `count` ticks from `date_from` on that pass `flags` (COPY_TICKS_*), oldest
        first, as MT5's ticks array."""
        return self._native.copy_ticks_from(symbol, _ms(_seconds(date_from)), count, flags)

    def copy_ticks_range(self, symbol, date_from, date_to, flags):
        """The ticks from `date_from` to `date_to` (its whole second included) that pass
        `flags`, oldest first."""
        return self._native.copy_ticks_range(
            symbol, _ms(_seconds(date_from)), _ms(_seconds(date_to), 999), flags)

    def symbol_info(self, symbol):
        """MT5's SymbolInfo of `symbol`; None if the feed gave none."""
        found = self._native.symbol_info(symbol)
        return None if found is None else SymbolInfo._make(found[0])

    def terminal(self):
        """The terminal that feeds the segment, as a dict (name, company, build, connected,
        server, login, confirmed_ns); None for a feed without one."""
        t = self._native.terminal()
        if t is None:
            return None
        return dict(zip(_native.TERMINAL_FIELDS, t))

    def symbols(self):
        """The symbols, in segment order."""
        return self._native.symbols()

    def symbols_get(self, group=None):
        """The symbols as SymbolInfo, filtered by an MT5 group (``"*USD*,!EUR*"``)."""
        if group is not None and not isinstance(group, str):
            raise TypeError("group is a str like '*USD*,!EUR*', not %r" % (type(group).__name__,))
        if group is not None and len(group) > MAX_GROUP:
            # Each pattern becomes a regular expression: a 10 MB one took 21 s and 1.5 GB.
            raise ValueError("group is %d characters long, at most %d" % (len(group), MAX_GROUP))
        out = []
        for name in self._native.symbols():
            if group is not None and not _in_group(name, group):
                continue
            info = self.symbol_info(name)
            if info is None:
                # No record yet: the name, and MT5's missing values.
                info = SymbolInfo._make(
                    name if field == "name" else missing for field, missing in zip(SymbolInfo._fields, SYMBOL_INFO_MISSING))
            out.append(info)
        return tuple(out)

    def status(self):
        """The writer's liveness (alive, stalled, stopped, gone or replaced), its feed, the
        server-time offset, the counters, and the depth of history each ring holds
        (``oldest_bar[symbol][timeframe]``: its oldest closed bar's open time, server time)."""
        return self._native.status()

    def refresh(self):
        """Follows a segment the writer replaced (another layout); True if it re-attached."""
        return self._native.refresh()

    def wait_for_update(self, symbol=None, timeout=1.0):
        """Blocks, without holding the GIL, until a candle changes (of `symbol`, or any) or
        `timeout` seconds pass; True if something changed. The writer wakes the wait through a
        futex, microseconds after it publishes. Raises WriterGone if the writer stops or dies
        (learnt within 100 ms)."""
        return self._native.wait_for_update(timeout, symbol)


# --------------------------------------------------------------------------- MT5-style API

_segment = None

_SUCCESS = (RES_S_OK, "Success")


class _LastError(threading.local):
    """``last_error()`` is kept per thread: a bot's thread reads the outcome of its own last
    call, never another thread's. (MT5's own is per process, so there a thread may read
    another's; per thread can only be more exact.)"""

    value = _SUCCESS


_error = _LastError()


def _fail(code, message):
    _error.value = (code, message)
    return None


def _ok(value):
    _error.value = _SUCCESS
    return value


# The MetaTrader5 package, where it is installed (Windows, beside the terminal): calls the
# segment does not serve are forwarded to it, and `initialize` initializes it too.
_terminal = None
_terminal_looked = False
# The terminal and account arguments `initialize` was given, for `login` and later records.
_terminal_arguments: "dict[str, object]" = {}


def _terminal_module():
    """The MetaTrader5 package, imported once, or None where it is not installed."""
    global _terminal, _terminal_looked
    if not _terminal_looked:
        _terminal_looked = True
        try:
            import MetaTrader5  # noqa: PLC0415  (only where it exists)
        except ImportError:
            MetaTrader5 = None
        _terminal = MetaTrader5
    return _terminal


def _segment_choice(segment):
    """A segment name or file path: ``segment=``, else ``MTF_SEGMENT``, else the default. A
    value with a path separator (or a leading dot) is a file; anything else a name."""
    if segment is None:
        segment = os.environ.get("MTF_SEGMENT") or DEFAULT_SEGMENT
    segment = os.fspath(segment)
    if os.sep in segment or "/" in segment or segment.startswith("."):
        return None, segment
    return segment, None


def initialize(path=None, *, login=None, password=None, server=None, timeout=None,
               portable=False, segment=None, trust=None, history_dir=None):
    """MT5's ``initialize``: attaches to the segment, and where the MetaTrader5 package is
    installed, initializes it with the same arguments.

    ``path`` (the terminal's ``terminal64.exe``), ``login``, ``password``, ``server``,
    ``timeout`` and ``portable`` keep MT5's meanings. Market data comes from the segment, so
    where the package is not installed they are kept (for ``login``) and never make this fail:
    a bot's call with its Windows terminal path and account works unchanged on Linux.
    ``segment`` (a name, or a file path) chooses the segment, else ``MTF_SEGMENT``, else
    ``mtf-candles``; ``trust`` names further accounts whose segments may be read, and
    ``history_dir`` the streamer's history store where it was moved (see :class:`Segment`). A keyword MT5 does not know raises TypeError, as a Python function
    does. Returns True, or False with ``last_error()`` saying why."""
    global _segment, _terminal_arguments
    given = {k: v for k, v in (("login", login), ("password", password), ("server", server),
                               ("timeout", timeout)) if v is not None}
    if portable:
        given["portable"] = True
    name, file = _segment_choice(segment)
    try:
        attached = Segment(name, file, trust, history_dir)
    except SegmentError as e:
        _segment = None
        _fail(RES_E_INTERNAL_FAIL_INIT, str(e))
        return False
    except (ValueError, TypeError) as e:
        _segment = None
        _fail(RES_E_INVALID_PARAMS, "Invalid arguments: %s" % e)
        return False
    terminal = _terminal_module()
    if terminal is not None:
        args = (path,) if path is not None else ()
        if not terminal.initialize(*args, **given):
            _segment = None
            return _fail(*terminal.last_error()) or False
    _segment = attached
    _terminal_arguments = dict(given, path=path)
    _ok(None)
    return True


def shutdown():
    """Detaches from the segment (and shuts the MetaTrader5 package down where it runs)."""
    global _segment
    _segment = None
    terminal = _terminal_module()
    if terminal is not None:
        terminal.shutdown()
    return True


def last_error():
    """``(code, message)`` of this thread's last call, as MT5's: ``(1, 'Success')``,
    ``(-4, ...)`` for an unknown symbol or timeframe, ``(-2, ...)`` for bad arguments,
    ``(-7, ...)`` for a call only a terminal answers where none is installed, ``(-10003, ...)``
    when ``initialize`` failed or was not called. A call forwarded to the MetaTrader5 package
    leaves the package's own."""
    terminal = _terminal_module()
    if _error.value is _FORWARDED and terminal is not None:
        return terminal.last_error()
    return _error.value


# The release this package's `version()` reports as MT5's "release date".
RELEASE_DATE = "03 Dec 2026"


def version():
    """MT5's ``version()``: ``(500, build, 'DD Mon YYYY')``. Where the MetaTrader5 package is
    installed, the terminal's own; elsewhere build 0 (the terminal's build is not known to
    the segment) and this package's release date."""
    terminal = _terminal_module()
    if terminal is not None:
        return terminal.version()
    return (500, 0, RELEASE_DATE)


def symbol_select(symbol, enable=True):
    """MT5's ``symbol_select``: True for a symbol the segment holds (its Market Watch); False
    with ``-4`` otherwise. Where the MetaTrader5 package is installed, the terminal selects it
    too."""
    syms = _call("symbols")
    if syms is None:
        return False
    if symbol not in syms:
        _fail(RES_E_NOT_FOUND, "symbol %s is not in the segment" % (symbol,))
        return False
    terminal = _terminal_module()
    if terminal is not None:
        terminal.symbol_select(symbol, enable)
    return _ok(True)


def login(login, password=None, server=None, timeout=None):
    """MT5's ``login``: forwarded to the MetaTrader5 package where it is installed. Elsewhere
    True when the segment's feed is that account (on that server, if given), as the terminal
    recorded it; else False with ``-6`` (MT5's "authorization failed") saying whose account
    feeds the segment, or ``-7`` for a feed without a terminal."""
    terminal = _terminal_module()
    if terminal is not None:
        _error.value = _FORWARDED
        kw = {k: v for k, v in (("password", password), ("server", server), ("timeout", timeout)) if v is not None}
        return terminal.login(login, **kw)
    fed_by = _call("terminal")
    if fed_by is None:
        if _error.value[0] == RES_S_OK:
            _fail(RES_E_UNSUPPORTED, "login: the segment's feed has no terminal account "
                  "(a synthetic or CSV feed)")
        return False
    if fed_by["login"] == login and server in (None, fed_by["server"]):
        return _ok(True)
    _fail(RES_E_AUTH_FAILED, "Authorization failed: the segment is fed by account %d on %s"
          % (fed_by["login"], fed_by["server"] or "an unknown server"))
    return False


def copy_ticks_from(symbol, date_from, count, flags):
    """MT5's ``copy_ticks_from``: at most ``count`` ticks from ``date_from`` on that pass
    ``flags`` (COPY_TICKS_ALL, _INFO, _TRADE), as a numpy array of MT5's ticks dtype, or None.
    The segment holds each symbol's newest ticks (``--tick-depth``, 4,096 by default): a date
    before the oldest gives the ticks from the oldest held, as MT5 does past its cache."""
    # A scalper's hot path: straight to the native reader, as copy_rates_from_pos.
    if _segment is None:
        return _fail(RES_E_INTERNAL_FAIL_INIT, "not initialized: call initialize() first")
    try:
        ticks = _segment._native.copy_ticks_from(symbol, _ms(_seconds(date_from)), count, flags)
    except _CALL_ERRORS as e:
        return _failed(e)
    _error.value = _SUCCESS
    if _terminal is not None:
        return _deeper(_deep.ticks_from, ticks, symbol, _ms(_seconds(date_from)), count, flags)
    return ticks


def copy_ticks_range(symbol, date_from, date_to, flags):
    """MT5's ``copy_ticks_range``: the ticks from ``date_from`` to ``date_to`` that pass
    ``flags``, or None."""
    ticks = _call("copy_ticks_range", symbol, date_from, date_to, flags)
    return _deeper(_deep.ticks_range, ticks, symbol, _ms(_seconds(date_from)),
                   _ms(_seconds(date_to), 999), flags)


def symbol_info(symbol):
    """MT5's ``symbol_info``: a SymbolInfo named tuple, or None (``-4`` for a symbol the
    segment does not hold, or whose feed has given no information yet)."""
    info = _call("symbol_info", symbol)
    if info is None and _error.value[0] == RES_S_OK:
        return _fail(RES_E_NOT_FOUND, "no symbol information for %s yet" % symbol)
    return info


def terminal_info():
    """MT5's ``terminal_info``: forwarded to the MetaTrader5 package where it is installed;
    elsewhere it answers after every successful ``initialize``, as MT5 does: the segment's
    record of the terminal that feeds it (name, company, build, connected), and ``path`` as
    given to ``initialize``. A feed without a terminal (synthetic, CSV) has every field at
    MT5's missing value, ``connected`` False."""
    terminal = _terminal_module()
    if terminal is not None:
        _error.value = _FORWARDED
        return terminal.terminal_info()
    if _segment is None:
        return _fail(RES_E_INTERNAL_FAIL_INIT, "not initialized: call initialize() first")
    t = _call("terminal")
    if t is None and _error.value[0] != RES_S_OK:
        return None
    known = {"path": str(_terminal_arguments.get("path") or "")}
    if t is not None:
        known.update(name=t["name"], company=t["company"], build=t["build"], connected=t["connected"])
    return missing_fields(TerminalInfo, **known)


def account_info():
    """MT5's ``account_info``: forwarded to the MetaTrader5 package where it is installed;
    elsewhere the account whose terminal feeds the segment (login, server, and its broker as
    ``company``), every other field at MT5's missing value. A feed that is not an account
    (synthetic, CSV) answers None with ``-7``, as before a login."""
    terminal = _terminal_module()
    if terminal is not None:
        _error.value = _FORWARDED
        return terminal.account_info()
    t = _call("terminal")
    if t is None:
        if _error.value[0] == RES_S_OK:
            _fail(RES_E_UNSUPPORTED, "account_info: the segment's feed is not an account "
                  "(a synthetic or CSV feed)")
        return None
    if not t["login"]:
        return _fail(RES_E_UNSUPPORTED, "account_info: the terminal that feeds the segment "
                     "has reported no account")
    return missing_fields(AccountInfo, login=t["login"], server=t["server"] or "", company=t["company"])


# The MetaTrader5 package's other functions: forwarded to it where it is installed; elsewhere
# None with MT5's "unsupported" (-7), never AttributeError.
_TERMINAL_CALLS = frozenset((
    "orders_total", "orders_get", "order_calc_margin", "order_calc_profit", "order_check",
    "order_send", "positions_total", "positions_get", "history_orders_total",
    "history_orders_get", "history_deals_total", "history_deals_get", "market_book_add",
    "market_book_get", "market_book_release",
))

# A marker: the last call went to the MetaTrader5 package, whose last_error() tells.
_FORWARDED = (RES_S_OK, "forwarded")


def __getattr__(name):
    """Forwards what this module does not define to the MetaTrader5 package where it is
    installed (its functions and constants alike); elsewhere, a function of the package's
    API returns None with MT5's "unsupported" error."""
    terminal = _terminal_module()
    if terminal is not None and not name.startswith("__"):
        target = getattr(terminal, name)
        if callable(target):
            def forwarded(*args, **kwargs):
                _error.value = _FORWARDED
                return target(*args, **kwargs)
            forwarded.__name__ = name
            forwarded.__doc__ = "Forwarded to the MetaTrader5 package: %s" % (target.__doc__ or name)
            return forwarded
        return target
    if name in _TERMINAL_CALLS:
        def unsupported(*args, **kwargs):
            return _fail(RES_E_UNSUPPORTED, "%s: served by a terminal, and no MetaTrader5 package "
                         "is installed here (see the README's table of calls)" % name)
        unsupported.__name__ = name
        return unsupported
    raise AttributeError("module 'mtf_candles' has no attribute %r" % (name,))


# What a read can raise, and MT5's code for each (NotFound before SegmentError: it is more
# specific).
_CALL_ERRORS = (NotFound, ValueError, TypeError, OverflowError, SegmentError)


def _failed(e):
    if isinstance(e, NotFound):
        return _fail(RES_E_NOT_FOUND, str(e))
    if isinstance(e, (ValueError, TypeError, OverflowError)):
        return _fail(RES_E_INVALID_PARAMS, "Invalid arguments: %s" % e)
    return _fail(RES_E_FAIL, str(e))


def _call(method, *args):
    if _segment is None:
        return _fail(RES_E_INTERNAL_FAIL_INIT, "not initialized: call initialize() first")
    try:
        return _ok(getattr(_segment, method)(*args))
    except _CALL_ERRORS as e:
        return _failed(e)


def copy_rates_from_pos(symbol, timeframe, start_pos, count):
    """MT5's ``copy_rates_from_pos``: a numpy array of MT5's rates dtype, or None."""
    # The hot path of a polling bot: straight to the native reader, one frame, no lookups.
    if _segment is None:
        return _fail(RES_E_INTERNAL_FAIL_INIT, "not initialized: call initialize() first")
    try:
        rates = _segment._native.copy_rates_from_pos(symbol, timeframe, start_pos, count)
    except _CALL_ERRORS as e:
        return _failed(e)
    _error.value = _SUCCESS
    if _terminal is not None and len(rates) < count:
        return _deeper(_deep.rates_from, rates, symbol, timeframe, count, start_pos=start_pos)
    return rates


def copy_rates_from(symbol, timeframe, date_from, count):
    """MT5's ``copy_rates_from``: the ``count`` bars at or before ``date_from``, or None."""
    rates = _call("copy_rates_from", symbol, timeframe, date_from, count)
    return _deeper(_deep.rates_from, rates, symbol, timeframe, count, date=date_from)


def copy_rates_range(symbol, timeframe, date_from, date_to):
    """MT5's ``copy_rates_range``: the bars from ``date_from`` to ``date_to``, or None."""
    rates = _call("copy_rates_range", symbol, timeframe, date_from, date_to)
    return _deeper(_deep.rates_range, rates, symbol, timeframe, _seconds(date_from), _seconds(date_to))


def _deeper(complete, answer, *args, **kwargs):
    """`answer` completed from the terminal by `complete` (_deep.py) where the MetaTrader5
    package is installed and the segment's ring ran out; the segment's answer as it is
    elsewhere, or if the terminal fails (its error is then last_error()'s)."""
    terminal = _terminal_module()
    if answer is None or terminal is None:
        return answer
    try:
        return complete(terminal, _segment, answer, *args, **kwargs)
    except (TypeError, ValueError, OverflowError):
        return answer


def symbol_info_tick(symbol):
    """MT5's ``symbol_info_tick``: a Tick, or None."""
    tick = _call("symbol_info_tick", symbol)
    if tick is None and _error.value[0] == RES_S_OK:
        return _fail(RES_E_NOT_FOUND, "no tick yet for %s" % symbol)
    return tick


def symbols_total():
    """MT5's ``symbols_total``: how many symbols the segment holds (0 if not initialized)."""
    syms = _call("symbols")
    return len(syms) if syms is not None else 0


def symbols_get(group=None):
    """MT5's ``symbols_get``: a tuple of SymbolInfo, filtered by ``group``, or None."""
    return _call("symbols_get", group)


def wait_for_update(symbol=None, timeout=1.0):
    """Blocks until a candle changes or ``timeout`` passes (see ``Segment.wait_for_update``)."""
    if _segment is None:
        raise SegmentError("not initialized: call initialize() first")
    return _segment.wait_for_update(symbol, timeout)


def status():
    """The initialized segment's status (see ``Segment.status``)."""
    if _segment is None:
        raise SegmentError("not initialized: call initialize() first")
    return _segment.status()
