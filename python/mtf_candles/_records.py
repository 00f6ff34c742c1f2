"""MT5's SymbolInfo as the MetaTrader5 package returns it: a named tuple with its fields, in
its order (MQL5 reference, "symbol_info"), built from the segment's own field list. The other
result types are in _namespace.py."""

import collections
from typing import Any

from ._native import SYMBOL_INFO_FIELDS

#: MT5's missing value of each SymbolInfo field (0, False, 0.0 or ""), in its order.
SYMBOL_INFO_MISSING = tuple({"int": 0, "bool": False, "float": 0.0, "str": ""}[kind] for _, kind in SYMBOL_INFO_FIELDS)

SymbolInfo = collections.namedtuple(  # type: ignore[misc]  # fields from the native module
    "SymbolInfo", [name for name, _ in SYMBOL_INFO_FIELDS])
"""MT5's SymbolInfo: the MetaTrader5 package's 96 fields in its order. From the terminal's
record where a terminal feeds the segment; for synthetic and CSV feeds, what their prices
show (name, digits, point, currencies of an FX name) and MT5's value for a missing property
elsewhere (see DESIGN.md). `bid`, `ask`, `last`, `time`, `volume`, `volume_real` and a
floating `spread` come from the newest tick."""


def missing_fields(record_type: Any, **known: object) -> Any:
    """`record_type` with MT5's missing value in every field (False for the flags, 0 and 0.0 for
    the numbers, "" for the strings, as the terminal answers a property it does not have),
    then the `known` fields."""
    kinds = _MISSING_KINDS[record_type.__name__]
    values = {f: _MISSING_OF[kinds.get(f, "int")] for f in record_type._fields}
    values.update(known)
    return record_type(**values)


_MISSING_OF = {"bool": False, "int": 0, "float": 0.0, "str": ""}
# Which fields of the records built here are not integers (MQL5 reference, the pages of
# terminal_info and account_info: TerminalInfoInteger/Double/String, AccountInfo*).
_MISSING_KINDS = {
    "TerminalInfo": dict(
        {f: "bool" for f in ("community_account", "community_connection", "connected", "dlls_allowed",
                             "trade_allowed", "tradeapi_disabled", "email_enabled", "ftp_enabled",
                             "notifications_enabled", "mqid")},
        **{f: "float" for f in ("community_balance", "retransmission")},
        **{f: "str" for f in ("company", "name", "language", "path", "data_path", "commondata_path")}),
    "AccountInfo": dict(
        {f: "bool" for f in ("trade_allowed", "trade_expert", "fifo_close")},
        **{f: "float" for f in ("balance", "credit", "profit", "equity", "margin", "margin_free",
                                "margin_level", "margin_so_call", "margin_so_so", "margin_initial",
                                "margin_maintenance", "assets", "liabilities", "commission_blocked")},
        **{f: "str" for f in ("name", "server", "currency", "company")}),
}
