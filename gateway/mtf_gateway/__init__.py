"""MT5 gateway: MetaTrader 5 rates and ticks over newline-delimited JSON on TCP.

Runs beside the terminal and speaks protocol version 1 (docs/MT5_GATEWAY.md) to the Rust
streamer and monitor. Backends:

  metatrader5  MetaQuotes' MetaTrader5 package (Windows, or Python under Wine)
  mt5linux     the same API through mt5linux's RPyC bridge (Linux host, terminal under Wine)
  csv          a folder of MT5 export files served as a terminal would (offline, demos, tests)

    python3 gateway/mt5_gateway.py --backend csv --data ./exports --bind 127.0.0.1:18812
    python3 -m mtf_gateway --backend csv ...        (from the gateway/ folder)

The core uses the standard library only (Python 3.9+); the terminal packages are imported
only by their backends. The package's parts: common.py (timeframes, errors, the package's
values as JSON), protocol.py (requests and limits), server.py (connections and the command
line), terminal.py (the live backends), poller.py (their tick polling) and exports.py (MT5
export files). Copy the mtf_gateway folder, with mt5_gateway.py beside it if you start it by
that path.
"""

from .common import (
    FLOAT_FIELDS,
    MAX_COUNT,
    MAX_INFO_FIELDS,
    MAX_INFO_STRING,
    RATE_FIELDS,
    SECONDS,
    TICK_FIELDS,
    TICK_FLAG_ASK,
    TICK_FLAG_BID,
    TICK_FLAG_LAST,
    TICK_FLAG_VOLUME,
    TIMEFRAMES,
    GatewayError,
    bad_request,
    bar_start,
    info_to_dict,
    log,
    mt5_error,
    plain,
    record_to_dict,
    records,
)
from .exports import (
    CsvBackend,
    CsvTicks,
    aggregate,
    decode,
    load_export,
    parse_date,
    parse_name,
    parse_time_ms,
    price_digits,
    ticks_to_m1,
)
from .poller import TerminalTicks
from .protocol import (
    AUTH_SECONDS,
    EVICT_IDLE_SECONDS,
    GATEWAY,
    HEARTBEAT_SECONDS,
    LINE_SECONDS,
    MAX_LINE,
    PROTOCOL,
    WAKE_SECONDS,
    handle_request,
)
from .server import Gateway, Handler, main, make_backend
from .terminal import TerminalBackend

__all__ = [
    "AUTH_SECONDS", "EVICT_IDLE_SECONDS", "FLOAT_FIELDS", "GATEWAY", "HEARTBEAT_SECONDS",
    "LINE_SECONDS", "MAX_COUNT", "MAX_INFO_FIELDS", "MAX_INFO_STRING", "MAX_LINE", "PROTOCOL",
    "RATE_FIELDS", "SECONDS", "TICK_FIELDS", "TICK_FLAG_ASK", "TICK_FLAG_BID", "TICK_FLAG_LAST",
    "TICK_FLAG_VOLUME", "TIMEFRAMES", "WAKE_SECONDS", "CsvBackend", "CsvTicks", "Gateway",
    "GatewayError", "Handler", "TerminalBackend", "TerminalTicks", "aggregate", "bad_request",
    "bar_start", "decode", "handle_request", "info_to_dict", "load_export", "log", "main",
    "make_backend", "mt5_error", "parse_date", "parse_name", "parse_time_ms", "plain",
    "price_digits", "record_to_dict", "records", "ticks_to_m1",
]
