"""MT5's SymbolInfo as the MetaTrader5 package returns it: a named tuple with its fields, in
its order (MQL5 reference, "symbol_info"), built from the segment's own field list. The other
result types are in _namespace.py."""

import collections

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
