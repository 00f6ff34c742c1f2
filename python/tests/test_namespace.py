"""Every name the MetaTrader5 package exports is in mtf_candles, with the package's value or
fields (issue 39): programs written for the package import and build their requests with it
where the package cannot be installed.

The expected constants are data/mt5_namespace.txt, written from MetaQuotes' documentation
(each group names its page): an expectation copied from the module under test could not
fail. The result types' fields are compared with the stand-in terminal's, which the gateway's
conformance test checks against the documentation."""

import os
import subprocess
import sys

import mtf_candles as mt5
from mtf_candles import _namespace

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STANDIN = os.path.join(ROOT, "gateway", "standin")
DOCUMENTED = os.path.join(os.path.dirname(__file__), "data", "mt5_namespace.txt")


def documented():
    out = {}
    with open(DOCUMENTED) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                name, value = line.split()
                out[name] = int(value)
    return out


def test_every_documented_constant_is_there_with_its_value_and_none_other():
    expected = documented()
    assert len(expected) == 223
    for name, value in expected.items():
        got = getattr(mt5, name)
        assert got == value and type(got) is int, (name, got, value)
        assert name in mt5.__all__, name
    ours = {n for n in vars(_namespace) if n.isupper() and not n.startswith("_")} - {"RESULT_TYPES"}
    assert ours == set(expected), ours ^ set(expected)


def test_metaquotes_order_send_example_builds_its_request():
    # python_metatrader5/mt5ordersend_py's example request, as written there.
    request = {
        "action": mt5.TRADE_ACTION_DEAL, "symbol": "USDJPY", "volume": 0.1, "type": mt5.ORDER_TYPE_BUY,
        "price": 110.0, "sl": 109.9, "tp": 110.1, "deviation": 20, "magic": 234000,
        "comment": "python script open", "type_time": mt5.ORDER_TIME_GTC, "type_filling": mt5.ORDER_FILLING_IOC,
    }
    assert (request["action"], request["type"], request["type_time"], request["type_filling"]) == (1, 0, 0, 1)
    assert mt5.TRADE_RETCODE_DONE == 10009 and mt5.RES_S_OK == 1


def test_every_result_type_is_there_with_the_packages_fields():
    for name in _namespace.RESULT_TYPES:
        assert name in mt5.__all__, name
        assert getattr(mt5, name)._fields, name
    # What pymt5adapter's types.py aliases at import.
    from mtf_candles import (  # noqa: F401
        AccountInfo,
        OrderCheckResult,
        OrderSendResult,
        TradeDeal,
        TradeOrder,
        TradePosition,
    )
    sys.path.insert(0, STANDIN)
    try:
        import MetaTrader5 as standin
    finally:
        sys.path.remove(STANDIN)
        sys.modules.pop("MetaTrader5", None)
    for name in ("Tick", "TerminalInfo", "AccountInfo", "TradeRequest", "OrderSendResult", "SymbolInfo"):
        assert getattr(mt5, name)._fields == getattr(standin, name)._fields, name
    assert len(mt5.AccountInfo._fields) == 28 and len(mt5.TerminalInfo._fields) == 22
    assert mt5.__version__ and mt5.__author__


def test_where_the_package_is_installed_its_own_objects_are_exported():
    script = """
import mtf_candles as mt5, MetaTrader5
assert mt5.TradeRequest is MetaTrader5.TradeRequest and mt5.Tick is MetaTrader5.Tick
assert mt5.TerminalInfo is MetaTrader5.TerminalInfo and mt5.ORDER_TIME_GTC == 0
assert mt5.TradePosition._fields[0] == "ticket"  # not in the stand-in: this package's own
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, PYTHONPATH=STANDIN),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
