"""MT5's result records as the MetaTrader5 package returns them: named tuples with its
fields, in its order (MQL5 reference, "symbol_info_tick", "symbol_info", "terminal_info")."""

import collections

from ._native import SYMBOL_INFO_FIELDS

#: MT5's missing value of each SymbolInfo field (0, False, 0.0 or ""), in its order.
SYMBOL_INFO_MISSING = tuple({"int": 0, "bool": False, "float": 0.0, "str": ""}[kind] for _, kind in SYMBOL_INFO_FIELDS)

Tick = collections.namedtuple("Tick", "time bid ask last volume time_msc flags volume_real")
"""MT5's tick, all eight fields, as the feed delivered it."""

SymbolInfo = collections.namedtuple(  # type: ignore[misc]  # fields from the native module
    "SymbolInfo", [name for name, _ in SYMBOL_INFO_FIELDS])
"""MT5's SymbolInfo: the MetaTrader5 package's 96 fields in its order. From the terminal's
record where a terminal feeds the segment; for synthetic and CSV feeds, what their prices
show (name, digits, point, currencies of an FX name) and MT5's value for a missing property
elsewhere (see DESIGN.md). `bid`, `ask`, `last`, `time`, `volume`, `volume_real` and a
floating `spread` come from the newest tick."""

TerminalInfo = collections.namedtuple("TerminalInfo", (
    "community_account community_connection connected dlls_allowed trade_allowed "
    "tradeapi_disabled email_enabled ftp_enabled notifications_enabled mqid build maxbars "
    "codepage ping_last community_balance retransmission company name language path data_path "
    "commondata_path"))
"""MT5's TerminalInfo, in its order. From the segment: `name`, `company`, `build` and
`connected` as the terminal last reported them, `path` as given to `initialize`; the rest is
the terminal's own and reads as MT5's missing value (False, 0, empty)."""
