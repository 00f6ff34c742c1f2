"""The stand-in terminal (gateway/standin/MetaTrader5.py) keeps the MetaTrader5 package's
documented return types, so that what the tests run is what traders run.

Each expectation below is written from MetaQuotes' documentation, not from the stand-in, and
cites its page (https://www.mql5.com/en/docs/python_metatrader5/...):

- mt5copyticksfrom_py, mt5copyticksrange_py: "Return ticks in the form of a numpy array with
  the named time, bid, ask, last, flags columns"; the dtype the examples print.
- mt5copyratesfrom_py, mt5copyratesfrompos_py, mt5copyratesrange_py: "Returns bars as the
  numpy array with the named time, open, high, low, close, tick_volume, spread and
  real_volume columns".
- mt5symbolinfotick_py: a Tick named tuple; mt5symbolinfo_py: SymbolInfo; mt5symbolsget_py:
  a tuple of SymbolInfo; mt5terminalinfo_py, mt5accountinfo_py: the named tuples of their
  examples, every field in that order.
- mt5lasterror_py: "None" on failure, with last_error() an (int, str) tuple; -4 not found,
  -2 invalid parameters, -10004 no IPC connection before initialize().

Needs numpy, as the package does (run in the project's .venv, or Windows Python).
"""

import importlib.util
import os
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
STANDIN = os.path.join(HERE, "..", "standin", "MetaTrader5.py")

TICK_DTYPE = [("time", "<i8"), ("bid", "<f8"), ("ask", "<f8"), ("last", "<f8"), ("volume", "<u8"),
              ("time_msc", "<i8"), ("flags", "<u4"), ("volume_real", "<f8")]
RATE_DTYPE = [("time", "<i8"), ("open", "<f8"), ("high", "<f8"), ("low", "<f8"), ("close", "<f8"),
              ("tick_volume", "<u8"), ("spread", "<i4"), ("real_volume", "<u8")]
TICK_FIELDS = ("time", "bid", "ask", "last", "volume", "time_msc", "flags", "volume_real")
TERMINAL_FIELDS = (
    "community_account", "community_connection", "connected", "dlls_allowed", "trade_allowed",
    "tradeapi_disabled", "email_enabled", "ftp_enabled", "notifications_enabled", "mqid", "build",
    "maxbars", "codepage", "ping_last", "community_balance", "retransmission", "company", "name",
    "language", "path", "data_path", "commondata_path")
ACCOUNT_FIELDS = (
    "login", "trade_mode", "leverage", "limit_orders", "margin_so_mode", "trade_allowed",
    "trade_expert", "margin_mode", "currency_digits", "fifo_close", "balance", "credit", "profit",
    "equity", "margin", "margin_free", "margin_level", "margin_so_call", "margin_so_so",
    "margin_initial", "margin_maintenance", "assets", "liabilities", "commission_blocked", "name",
    "server", "currency", "company")
# mt5symbolinfo_py's example, in its order (96 fields).
SYMBOL_FIELDS = tuple((
    "custom chart_mode select visible session_deals session_buy_orders session_sell_orders volume "
    "volumehigh volumelow time digits spread spread_float ticks_bookdepth trade_calc_mode trade_mode "
    "start_time expiration_time trade_stops_level trade_freeze_level trade_exemode swap_mode "
    "swap_rollover3days margin_hedged_use_leg expiration_mode filling_mode order_mode order_gtc_mode "
    "option_mode option_right bid bidhigh bidlow ask askhigh asklow last lasthigh lastlow volume_real "
    "volumehigh_real volumelow_real option_strike point trade_tick_value trade_tick_value_profit "
    "trade_tick_value_loss trade_tick_size trade_contract_size trade_accrued_interest trade_face_value "
    "trade_liquidity_rate volume_min volume_max volume_step volume_limit swap_long swap_short "
    "margin_initial margin_maintenance session_volume session_turnover session_interest "
    "session_buy_orders_volume session_sell_orders_volume session_open session_close session_aw "
    "session_price_settlement session_price_limit_min session_price_limit_max margin_hedged "
    "price_change price_volatility price_theoretical price_greeks_delta price_greeks_theta "
    "price_greeks_gamma price_greeks_vega price_greeks_rho price_greeks_omega price_sensitivity "
    "basis category currency_base currency_profit currency_margin bank description exchange formula "
    "isin name page path").split())


def load_standin(**env):
    """A fresh stand-in module configured by `env` (it reads the environment at import)."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        spec = importlib.util.spec_from_file_location("standin_conformance_mt5", STANDIN)
        mt5 = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mt5)
        return mt5
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class StandInConformanceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mt5 = load_standin(MT5_STANDIN_SYMBOLS="EURUSD=1000,GBPUSD=1000", MT5_STANDIN_CALL_US="0")
        assert cls.mt5.initialize()
        # Enough ticks for "many" answers: the stand-in makes them in real time.
        while cls.mt5.standin_made("EURUSD") < 50:
            pass

    def assert_array(self, value, dtype, what):
        self.assertIsInstance(value, np.ndarray, what)
        self.assertEqual(value.dtype, np.dtype(dtype), what)
        self.assertEqual(value.ndim, 1, what)

    def test_tick_copies_are_numpy_arrays_of_mt5s_dtype_empty_one_or_many(self):
        mt5 = self.mt5
        many = mt5.copy_ticks_from("EURUSD", 0, 40, mt5.COPY_TICKS_ALL)
        self.assert_array(many, TICK_DTYPE, "copy_ticks_from")
        self.assertEqual(len(many), 40)
        with self.assertRaises(ValueError, msg="an array of many has no truth value, as the package's"):
            bool(many)
        one = mt5.copy_ticks_from("EURUSD", 0, 1, mt5.COPY_TICKS_ALL)
        self.assert_array(one, TICK_DTYPE, "one tick")
        self.assertEqual(len(one), 1)
        empty = mt5.copy_ticks_from("EURUSD", 2 ** 40, 10, mt5.COPY_TICKS_ALL)
        self.assert_array(empty, TICK_DTYPE, "no tick")
        self.assertEqual(len(empty), 0)
        ranged = mt5.copy_ticks_range("EURUSD", 0, 2 ** 40, mt5.COPY_TICKS_INFO)
        self.assert_array(ranged, TICK_DTYPE, "copy_ticks_range")
        self.assertGreaterEqual(len(ranged), 40)
        self.assertTrue(np.all(np.diff(ranged["time_msc"]) >= 0), "oldest first")
        self.assertTrue(np.all(ranged["time"] == ranged["time_msc"] // 1000))

    def test_rate_copies_are_numpy_arrays_of_mt5s_dtype(self):
        mt5 = self.mt5
        for what, value in [
            ("copy_rates_from_pos", mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 10)),
            ("copy_rates_from", mt5.copy_rates_from("EURUSD", mt5.TIMEFRAME_M1, 2 ** 40, 10)),
            ("copy_rates_range", mt5.copy_rates_range("EURUSD", mt5.TIMEFRAME_M1, 0, 2 ** 40)),
        ]:
            self.assert_array(value, RATE_DTYPE, what)
            self.assertGreaterEqual(len(value), 1, what)
            self.assertTrue(np.all(value["time"] % 60 == 0), what)
        empty = mt5.copy_rates_range("EURUSD", mt5.TIMEFRAME_M1, 0, 1)
        self.assert_array(empty, RATE_DTYPE, "an empty range")
        self.assertEqual(len(empty), 0)

    def test_named_tuples_have_every_documented_field_in_order(self):
        mt5 = self.mt5
        tick = mt5.symbol_info_tick("EURUSD")
        self.assertIsInstance(tick, tuple)
        self.assertEqual(tick._fields, TICK_FIELDS)
        self.assertEqual([type(v) for v in tick], [int, float, float, float, int, int, int, float])
        info = mt5.symbol_info("EURUSD")
        self.assertIsInstance(info, tuple)
        self.assertEqual(info._fields, SYMBOL_FIELDS)
        self.assertEqual(type(info).__name__, "SymbolInfo")
        terminal = mt5.terminal_info()
        self.assertEqual((type(terminal).__name__, terminal._fields), ("TerminalInfo", TERMINAL_FIELDS))
        self.assertIsInstance(terminal.connected, bool)
        self.assertIsInstance(terminal.build, int)
        account = mt5.account_info()
        self.assertEqual((type(account).__name__, account._fields), ("AccountInfo", ACCOUNT_FIELDS))
        self.assertIsInstance(account.login, int)
        self.assertIsInstance(account.balance, float)
        for value in (tick, info, terminal, account):
            self.assertEqual(list(value._asdict()), list(value._fields))

    def test_symbols_get_is_a_tuple_of_symbol_info_and_takes_mt5s_group_masks(self):
        mt5 = self.mt5
        every = mt5.symbols_get()
        self.assertIsInstance(every, tuple)
        self.assertEqual([s.name for s in every], ["EURUSD", "GBPUSD"])
        self.assertTrue(all(type(s).__name__ == "SymbolInfo" for s in every))
        self.assertEqual([s.name for s in mt5.symbols_get(group="*,!GBP*")], ["EURUSD"])
        self.assertEqual(mt5.symbols_total(), 2)

    def test_failures_are_none_with_last_error_as_documented(self):
        mt5 = self.mt5
        self.assertIsNone(mt5.copy_ticks_from("NOPE", 0, 10, mt5.COPY_TICKS_ALL))
        code, message = mt5.last_error()
        self.assertEqual((code, type(message)), (-4, str))
        self.assertIsNone(mt5.copy_ticks_from("EURUSD", 0, 0, mt5.COPY_TICKS_ALL))
        self.assertEqual(mt5.last_error()[0], -2)
        self.assertIsNone(mt5.symbol_info_tick("NOPE"))
        self.assertEqual(mt5.last_error()[0], -4)
        fresh = load_standin(MT5_STANDIN_SYMBOLS="EURUSD=1")
        self.assertIsNone(fresh.copy_rates_from_pos("EURUSD", fresh.TIMEFRAME_M1, 0, 1))
        self.assertEqual(fresh.last_error(), (-10004, "No IPC connection"))

    def test_every_timeframe_constant_has_mt5s_value(self):
        # mt5copyratesfrom_py's TIMEFRAME table.
        want = {"M1": 1, "M2": 2, "M3": 3, "M4": 4, "M5": 5, "M6": 6, "M10": 10, "M12": 12, "M15": 15,
                "M20": 20, "M30": 30, "H1": 16385, "H2": 16386, "H3": 16387, "H4": 16388, "H6": 16390,
                "H8": 16392, "H12": 16396, "D1": 16408, "W1": 32769, "MN1": 49153}
        for name, value in want.items():
            self.assertEqual(getattr(self.mt5, "TIMEFRAME_" + name), value, name)


if __name__ == "__main__":
    unittest.main()
