"""Tests of the MT5 gateway: parsing, the csv backend, the terminal backend against a fake
MetaTrader5 module that returns what the package returns (numpy structured arrays, named
tuples), and protocol v1 over a real socket. The gateway itself needs only the standard
library; these tests need numpy, as the MetaTrader5 package does:

    .venv/bin/python -m unittest discover -s gateway/tests -v
"""

import calendar
import codecs
import collections
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import unittest
import unittest.mock

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import mt5_gateway as gw  # noqa: E402
import mtf_gateway.server as gw_server  # noqa: E402  (where the connections read their limits)
from test_standin_conformance import load_standin  # noqa: E402

BARS_H1 = (
    "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\r\n"
    "2017.01.02\t00:00:00\t1.05000\t1.05100\t1.04900\t1.05050\t100\t0\t12\r\n"
    "2017.01.02\t01:00:00\t1.05050\t1.05300\t1.05000\t1.05200\t150\t0\t10\r\n"
    "2017.01.02\t02:00:00\t1.05200\t1.05250\t1.04800\t1.04850\t90\t5\t11\r\n"
    "2017.01.02\t03:00:00\t1.04850\t1.04900\t1.04700\t1.04750\t80\t0\t14\r\n"
    "2017.01.02\t04:00:00\t1.04750\t1.04800\t1.04600\t1.04650\t70\t0\t9\r\n"
)
TICKS = (
    "<DATE>\t<TIME>\t<BID>\t<ASK>\t<LAST>\t<VOLUME>\t<FLAGS>\r\n"
    "2017.01.02\t04:59:59.900\t1.04640\t1.04650\t\t\t6\r\n"
    "2017.01.02\t05:00:00.100\t1.04660\t\t\t\t2\r\n"
    "2017.01.02\t05:00:00.100\t\t1.04680\t\t\t4\r\n"
    "2017.01.02\t05:00:01.250\t1.04670\t1.04679\t\t\t6\r\n"
)
T0 = calendar.timegm((2017, 1, 2, 0, 0, 0))


def write(folder, name, text, encoding="utf-8"):
    data = text.encode(encoding)
    if encoding == "utf-16-le":
        data = codecs.BOM_UTF16_LE + data
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


class Folder(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="mt5gw-test-")
        self.addCleanup(shutil.rmtree, self.dir, True)


class ParsingTest(Folder):
    def test_encodings_decode_alike(self):
        text = "<DATE>\t<TIME>\r\n"
        for data in (text.encode(), codecs.BOM_UTF8 + text.encode(), codecs.BOM_UTF16_LE + text.encode("utf-16-le"),
                     codecs.BOM_UTF16_BE + text.encode("utf-16-be")):
            self.assertEqual(gw.decode(data), text)

    def test_file_names_follow_mt5(self):
        self.assertEqual(gw.parse_name("EURUSD_H1_201701012200_201712292100.csv"), ("EURUSD", "H1"))
        self.assertEqual(gw.parse_name("/x/US_TECH100_M5_202401010000_202401020000.csv"), ("US_TECH100", "M5"))
        self.assertEqual(gw.parse_name("EURUSD_202401020000_202401022359.csv"), ("EURUSD", None))

    def test_bar_start_aligns_weeks_on_sunday_and_months_on_the_first(self):
        monday_noon = T0 + 12 * 3600
        self.assertEqual(gw.bar_start(monday_noon, "H4"), T0 + 12 * 3600)
        self.assertEqual(gw.bar_start(monday_noon, "D1"), T0)
        self.assertEqual(gw.bar_start(monday_noon, "W1"), T0 - 86400)  # Sunday 2017-01-01
        self.assertEqual(gw.bar_start(calendar.timegm((2017, 2, 15, 3, 0, 0)), "MN1"), calendar.timegm((2017, 2, 1, 0, 0, 0)))

    def test_bad_rows_are_skipped_with_their_line_numbers(self):
        text = BARS_H1 + "2017.13.02\t05:00:00\t1\t1\t1\t1\t1\t0\t1\r\n2017.01.02\t06:00:00\tabc\t1\t1\t1\t1\t0\t1\r\n2017.01.02\t07:00:00\t1.0\t0.9\t0.8\t1.0\t1\t0\t1\r\n"
        write(self.dir, "EURUSD_H1_201701020000_201701020700.csv", text)
        bad = []
        kind, tf, rows = gw.load_export(os.path.join(self.dir, "EURUSD_H1_201701020000_201701020700.csv"), bad.append)
        self.assertEqual((kind, tf, len(rows)), ("bars", "H1", 5))
        # "PATH:LINE: skipped: ...", PATH a Windows one (C:\\...) too.
        self.assertEqual([int(re.search(r":(\d+): skipped", b).group(1)) for b in bad], [7, 8, 9])

    def test_tick_exports_carry_bid_and_ask_forward(self):
        write(self.dir, "EURUSD_201701020459_201701020500.csv", TICKS, "utf-16-le")
        kind, _, ticks = gw.load_export(os.path.join(self.dir, "EURUSD_201701020459_201701020500.csv"))
        self.assertEqual(kind, "ticks")
        self.assertEqual([(t["bid"], t["ask"]) for t in ticks], [(1.0464, 1.0465), (1.0466, 1.0465), (1.0466, 1.0468), (1.0467, 1.04679)])
        self.assertEqual(ticks[1]["time_msc"], (T0 + 5 * 3600) * 1000 + 100)
        self.assertEqual(ticks[1]["time"], T0 + 5 * 3600)


class SpreadTest(unittest.TestCase):
    def test_bars_from_ticks_carry_the_smallest_spread_in_points(self):
        ticks = [
            {"time": T0, "time_msc": T0 * 1000, "bid": 1.08000, "ask": 1.08010, "volume": 0},
            {"time": T0 + 1, "time_msc": T0 * 1000 + 1000, "bid": 1.08001, "ask": 1.08013, "volume": 0},
            {"time": T0 + 61, "time_msc": T0 * 1000 + 61000, "bid": 1.08002, "ask": 1.08022, "volume": 0},
        ]
        self.assertEqual(gw.price_digits(ticks), 5)
        bars = gw.ticks_to_m1(ticks)
        # 10 points (0.00010 at 5 digits) is the smaller of 10 and 12; then 20.
        self.assertEqual([b["spread"] for b in bars], [10, 20])


class CsvBackendTest(Folder):
    def backend(self, speed=None):
        write(self.dir, "EURUSD_H1_201701020000_201701020400.csv", BARS_H1)
        write(self.dir, "EURUSD_201701020459_201701020500.csv", TICKS, "utf-16-le")
        write(self.dir, "XAUUSD_201701020459_201701020500.csv", TICKS.replace("1.046", "1146."))
        return gw.CsvBackend(self.dir, speed=speed)

    def test_positions_count_back_from_the_forming_bar(self):
        b = self.backend()
        self.assertEqual(b.symbols(), ["EURUSD", "XAUUSD"])
        rates = b.copy_rates_from_pos("EURUSD", "H1", 0, 2)
        self.assertEqual([r["time"] - T0 for r in rates], [3 * 3600, 4 * 3600])
        self.assertEqual(b.copy_rates_from_pos("EURUSD", "H1", 1, 1)[0]["time"], T0 + 3 * 3600)
        self.assertEqual(len(b.copy_rates_from_pos("EURUSD", "H1", 0, 1000)), 5)
        self.assertEqual(b.copy_rates_from_pos("EURUSD", "H1", 10, 5), [])
        self.assertEqual(set(rates[0]), set(gw.RATE_FIELDS))

    def test_longer_timeframes_are_built_and_shorter_ones_are_missing_history(self):
        b = self.backend()
        h4 = b.copy_rates_from_pos("EURUSD", "H4", 0, 10)
        self.assertEqual(len(h4), 2)
        self.assertEqual((h4[0]["open"], h4[0]["high"], h4[0]["low"], h4[0]["close"], h4[0]["tick_volume"]), (1.05, 1.053, 1.047, 1.0475, 420))
        with self.assertRaises(gw.GatewayError) as e:
            b.copy_rates_from_pos("EURUSD", "M30", 0, 1)
        self.assertEqual((e.exception.code, e.exception.mt5_code), ("MT5_ERROR", -4))
        # A symbol with only ticks gets M1 bars from them.
        m1 = b.copy_rates_from_pos("XAUUSD", "M1", 0, 10)
        self.assertEqual([r["tick_volume"] for r in m1], [1, 3])

    def test_range_is_inclusive_at_both_ends(self):
        b = self.backend()
        rates = b.copy_rates_range("EURUSD", "H1", T0 + 3600, T0 + 3 * 3600)
        self.assertEqual([r["time"] - T0 for r in rates], [3600, 7200, 10800])

    def test_symbol_info_says_what_the_export_shows(self):
        b = self.backend()
        info = b.symbol_info("EURUSD")
        # The ticks show five decimals (1.04679).
        self.assertEqual((info["name"], info["digits"], info["point"]), ("EURUSD", 5, 0.00001))
        self.assertEqual((info["currency_base"], info["currency_profit"]), ("EUR", "USD"))
        self.assertNotIn("trade_contract_size", info)

    def test_unknown_symbols_are_mt5_not_found(self):
        b = self.backend()
        for call in (lambda: b.copy_rates_from_pos("GBPUSD", "H1", 0, 1), lambda: b.symbol_info_tick("GBPUSD"),
                     lambda: b.symbol_info("GBPUSD"), lambda: b.tick_stream(["GBPUSD"])):
            with self.assertRaises(gw.GatewayError) as e:
                call()
            self.assertEqual(e.exception.mt5_code, -4)

    def test_tick_replay_merges_symbols_by_time(self):
        b = self.backend()
        stream = b.tick_stream(["EURUSD", "XAUUSD"])
        got = []
        while True:
            batch = stream.poll()
            if batch is None:
                break
            got.extend(batch)
        self.assertEqual(len(got), 8)
        times = [t["time_msc"] for _, t in got]
        self.assertEqual(times, sorted(times))
        self.assertEqual(b.symbol_info_tick("EURUSD")["bid"], 1.0467)


class FakeScalar:
    """Stands in for a numpy scalar: only .item() gives the plain value."""

    def __init__(self, v):
        self.v = v

    def item(self):
        return self.v


# The package's dtypes and Tick (mt5copyticksfrom_py, mt5copyratesfrom_py, mt5symbolinfotick_py;
# test_standin_conformance.py checks the stand-in against the same).
TICK_DTYPE = np.dtype([("time", "<i8"), ("bid", "<f8"), ("ask", "<f8"), ("last", "<f8"), ("volume", "<u8"),
                       ("time_msc", "<i8"), ("flags", "<u4"), ("volume_real", "<f8")])
RATE_DTYPE = np.dtype([("time", "<i8"), ("open", "<f8"), ("high", "<f8"), ("low", "<f8"), ("close", "<f8"),
                       ("tick_volume", "<u8"), ("spread", "<i4"), ("real_volume", "<u8")])
Tick = collections.namedtuple("Tick", "time bid ask last volume time_msc flags volume_real")


class FakeTick:
    def __init__(self, **f):
        self.__dict__.update(f)

    def _asdict(self):
        return dict(self.__dict__)


class FakeMt5:
    """The parts of the MetaTrader5 module the gateway uses."""

    COPY_TICKS_ALL = -1

    def __init__(self):
        self.error = (1, "Success")
        self.ticks = []
        self.initialized = False

    def initialize(self, **kw):
        self.initialized = True
        return True

    def last_error(self):
        return self.error

    def symbol_select(self, s, enable):
        if s == "NOPE":
            self.error = (-1, "Terminal: Call failed")
            return False
        return True

    def terminal_info(self):
        return FakeTick(name="MetaTrader 5", company="Broker", build=4755, connected=True)

    def account_info(self):
        return FakeTick(server="Broker-Demo", login=123)

    def copy_rates_from_pos(self, s, tf, start, count):
        if tf == gw.TIMEFRAMES["MN1"]:
            self.error = (-4, "Terminal: Not found")
            return None
        return np.array([(T0 + i * 60, 1.0, 1.2, 0.9, 1.1, 10, 2, 0) for i in range(count)], dtype=RATE_DTYPE)

    def copy_rates_range(self, s, tf, frm, to):
        return np.array([], dtype=RATE_DTYPE)

    def symbol_info_tick(self, s):
        last = self.ticks[-1] if self.ticks else dict(time=T0, bid=1.0, ask=1.1, last=0.0, volume=0, time_msc=T0 * 1000, flags=6, volume_real=0.0)
        return Tick(**last)

    def symbol_info(self, s):
        self.info_calls = getattr(self, "info_calls", 0) + 1
        return getattr(self, "info", FakeTick(name=s, digits=5, point=0.00001, select=True,
                                              description="Euro vs US Dollar", spread=FakeScalar(12)))

    def copy_ticks_from(self, s, frm, count, flags):
        chosen = [t for t in self.ticks if t["time"] >= frm][:count]
        return np.array([tuple(t[f] for f in gw.TICK_FIELDS) for t in chosen], dtype=TICK_DTYPE)


def tick(msc, bid):
    return dict(time=msc // 1000, bid=bid, ask=bid + 0.1, last=0.0, volume=0, time_msc=msc, flags=6, volume_real=0.0)


class TerminalBackendTest(unittest.TestCase):
    def test_records_become_plain_json_values(self):
        b = gw.TerminalBackend(FakeMt5(), "metatrader5")
        rates = b.copy_rates_from_pos("EURUSD", "M1", 0, 3)
        self.assertEqual(rates[0], {"time": T0, "open": 1.0, "high": 1.2, "low": 0.9, "close": 1.1, "tick_volume": 10, "spread": 2, "real_volume": 0})
        json.dumps(rates)  # plain types only
        hello = b.hello()
        self.assertEqual(hello["terminal"]["build"], 4755)
        self.assertEqual(hello["account"], {"server": "Broker-Demo", "login": 123})

    def test_symbol_info_is_forwarded_as_plain_values_within_bounds(self):
        mt5 = FakeMt5()
        b = gw.TerminalBackend(mt5, "metatrader5")
        info = b.symbol_info("EURUSD")
        self.assertEqual(info, {"name": "EURUSD", "digits": 5, "point": 0.00001, "select": True,
                                "description": "Euro vs US Dollar", "spread": 12})
        json.dumps(info)
        # A terminal (or stand-in) past the bounds: refused, never forwarded.
        mt5.info = FakeTick(description="x" * 2000)
        with self.assertRaises(gw.GatewayError) as e:
            b.symbol_info("EURUSD")
        self.assertEqual(e.exception.code, "BAD_ANSWER")
        mt5.info = FakeTick(**{"f%d" % i: i for i in range(300)})
        with self.assertRaises(gw.GatewayError) as e:
            b.symbol_info("EURUSD")
        self.assertEqual(e.exception.code, "BAD_ANSWER")
        # A description the terminal could not decode (lone surrogates): forwarded as
        # Unicode, the bad characters replaced, the record kept (issue 40).
        mt5.info = FakeTick(name="EURUSD", digits=5, description="Euro \udcff\ud800 Dollar")
        info = b.symbol_info("EURUSD")
        self.assertEqual((info["digits"], info["description"]), (5, "Euro \ufffd\ufffd Dollar"))
        json.dumps(info, ensure_ascii=False).encode("utf-8")
        mt5.info = FakeTick(nested=[1, 2])
        with self.assertRaises(gw.GatewayError) as e:
            b.symbol_info("EURUSD")
        self.assertEqual(e.exception.code, "BAD_ANSWER")

    def test_failures_carry_last_error(self):
        b = gw.TerminalBackend(FakeMt5(), "metatrader5")
        with self.assertRaises(gw.GatewayError) as e:
            b.copy_rates_from_pos("EURUSD", "MN1", 0, 1)
        self.assertEqual((e.exception.code, e.exception.mt5_code, e.exception.mt5_message), ("MT5_ERROR", -4, "Terminal: Not found"))
        with self.assertRaises(gw.GatewayError) as e:
            b.symbol_info_tick("NOPE")
        self.assertEqual(e.exception.mt5_code, -1)

    def test_a_failed_initialize_is_an_error(self):
        m = FakeMt5()
        m.initialize = lambda **kw: False
        m.error = (-6, "Terminal: Authorization failed")
        with self.assertRaises(gw.GatewayError) as e:
            gw.TerminalBackend(m, "metatrader5")
        self.assertEqual(e.exception.mt5_code, -6)

    def test_polling_sends_each_new_tick_once_even_within_one_millisecond(self):
        m = FakeMt5()
        base = (T0 + 10) * 1000
        m.ticks = [tick(base, 1.0)]
        b = gw.TerminalBackend(m, "metatrader5")
        stream = b.tick_stream(["EURUSD"])
        self.assertEqual(stream.poll(), [], "nothing before the subscription")
        # A tick at the subscription's own millisecond that came after it is new: sent.
        m.ticks += [tick(base, 1.01), tick(base + 5, 1.02), tick(base + 5, 1.03)]
        got = [t["bid"] for _, t in stream.poll()]
        self.assertEqual(got, [1.01, 1.02, 1.03])
        m.ticks += [tick(base + 5, 1.04), tick(base + 900, 1.05)]
        self.assertEqual([t["bid"] for _, t in stream.poll()], [1.04, 1.05])
        self.assertEqual(stream.poll(), [])

    def test_each_poll_looks_even_when_the_clock_is_coarse(self):
        # Windows' time.monotonic before CPython 3.13 moves in 15.6 ms steps: a poll that slept
        # to its due time read a clock still short of it, looked at nothing and returned no
        # ticks (CI under Wine saw it). Here the clock never moves at all.
        m = FakeMt5()
        base = (T0 + 10) * 1000
        m.ticks = [tick(base, 1.0)]
        frozen = staticmethod(lambda: 1000.0)
        with unittest.mock.patch.object(gw.TerminalTicks, "clock", frozen):
            stream = gw.TerminalBackend(m, "metatrader5").tick_stream(["EURUSD"])
            for i in range(1, 4):
                m.ticks.append(tick(base + i, 1.0 + i / 100))
                self.assertEqual([t["bid"] for _, t in stream.poll()], [1.0 + i / 100], "poll %d" % i)

    def test_a_burst_longer_than_one_call_returns_is_fetched_whole(self):
        m = FakeMt5()
        base = (T0 + 10) * 1000
        m.ticks = [tick(base, 1.0)]
        b = gw.TerminalBackend(m, "metatrader5")
        stream = b.tick_stream(["EURUSD"])
        stream.BATCH = 7
        # 30 ticks, 20 of them in one millisecond: more than a call returns, even in a second.
        m.ticks += [tick(base + 1, 1.0 + i / 1000) for i in range(20)]
        m.ticks += [tick(base + 2000 + i, 2.0 + i / 1000) for i in range(10)]
        got = [t["bid"] for _, t in stream.poll()]
        self.assertEqual(got, [1.0 + i / 1000 for i in range(20)] + [2.0 + i / 1000 for i in range(10)])
        self.assertEqual(stream.poll(), [])

    def test_quiet_symbols_are_looked_at_less_often(self):
        m = FakeMt5()
        m.ticks = [tick((T0 + 10) * 1000, 1.0)]
        b = gw.TerminalBackend(m, "metatrader5", polling=(0.001, 0.05, 0.25))  # 1 ms to 50 ms
        stream = b.tick_stream(["EURUSD"])
        now = time.monotonic()
        self.assertEqual(stream.interval("EURUSD", now), 0.001)
        self.assertAlmostEqual(stream.interval("EURUSD", now + 2), 0.01)
        self.assertEqual(stream.interval("EURUSD", now + 60), 0.05)
        stream.poll()
        self.assertIn("EURUSD", b.hello()["polling"]["interval_ms"])


class StandInTerminalTest(unittest.TestCase):
    """The gateway's terminal backend against the stand-in MetaTrader5 module
    (gateway/standin/MetaTrader5.py), which makes ticks in real time."""

    def test_every_tick_the_terminal_makes_is_sent_once_in_order(self):
        mt5 = load_standin(MT5_STANDIN_SYMBOLS="EURUSD=400,GBPUSD=200", MT5_STANDIN_CALL_US="5",
                           MT5_STANDIN_SAME_MS="0.3", MT5_STANDIN_MAX_TICKS="300")
        b = gw.TerminalBackend(mt5, "metatrader5")
        stream = b.tick_stream(["EURUSD", "GBPUSD"])
        first = dict(stream.cursor)  # (newest time_msc, ticks at it) when it subscribed
        got = {"EURUSD": [], "GBPUSD": []}
        until = time.monotonic() + 30
        while time.monotonic() < until and any(mt5.standin_made(s) < 300 or len(got[s]) < len(self.expected(mt5, s, first[s])) for s in got):
            for s, t in stream.poll():
                got[s].append(t)
        for s in got:
            want = self.expected(mt5, s, first[s])
            self.assertEqual(len(got[s]), len(want), s)
            self.assertEqual([(t["time_msc"], t["bid"]) for t in got[s]], want, s)

    @staticmethod
    def expected(mt5, s, cursor):
        """The stand-in's ticks made after the subscription: after the `n` it had at the
        millisecond `m` of its newest tick then."""
        m, n = cursor
        ticks = mt5.copy_ticks_from(s, 0, 10 ** 6, mt5.COPY_TICKS_ALL)  # a numpy array, as MT5's
        ticks = ticks[ticks["time_msc"] >= m]
        return [(int(t["time_msc"]), float(t["bid"])) for t in ticks[n:]]


class ProtocolTest(Folder):
    def setUp(self):
        super().setUp()
        write(self.dir, "EURUSD_H1_201701020000_201701020400.csv", BARS_H1)
        write(self.dir, "EURUSD_201701020459_201701020500.csv", TICKS)
        self.start(gw.CsvBackend(self.dir))

    def start(self, backend, **kw):
        self.server = gw.Gateway(("127.0.0.1", 0), backend, **kw)
        thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        self.addCleanup(self.server.server_close)
        self.addCleanup(self.server.shutdown)

    def connect(self):
        s = socket.create_connection(self.server.server_address[:2], timeout=5)
        self.addCleanup(s.close)
        return s, s.makefile("rb")

    def call(self, req, conn=None):
        s, f = conn or self.connect()
        s.sendall((json.dumps(req) if isinstance(req, dict) else req).encode() + b"\n")
        return json.loads(f.readline())

    def error(self, req, conn=None):
        r = self.call(req, conn)
        self.assertFalse(r["ok"], r)
        self.assertEqual(set(r["error"]), {"code", "message", "mt5_code", "mt5_message"})
        return r["error"]["code"]

    def test_hello_reports_protocol_backend_and_limits(self):
        r = self.call({"id": 1, "op": "hello", "protocol": 1, "client": "test"})
        self.assertEqual((r["id"], r["ok"]), (1, True))
        res = r["result"]
        self.assertEqual((res["protocol"], res["backend"], res["symbols"]), (1, "csv", ["EURUSD"]))
        self.assertEqual(res["limits"]["max_count"], 50000)
        self.assertIsNone(res["terminal"])
        self.assertEqual(self.error({"id": 2, "op": "hello", "protocol": 0}), "PROTOCOL_VERSION")

    def test_every_operation_answers_with_its_id_in_order(self):
        conn = self.connect()
        r = self.call({"id": "a", "op": "ping"}, conn)
        self.assertTrue(r["result"]["pong"])
        r = self.call({"id": 2, "op": "copy_rates_from_pos", "symbol": "EURUSD", "timeframe": "h1", "start_pos": 0, "count": 3}, conn)
        self.assertEqual(r["id"], 2)
        self.assertEqual([x["time"] - T0 for x in r["result"]["rates"]], [7200, 10800, 14400])
        r = self.call({"id": 3, "op": "copy_rates_range", "symbol": "EURUSD", "timeframe": "H1", "from": T0, "to": T0 + 3600}, conn)
        self.assertEqual(len(r["result"]["rates"]), 2)
        r = self.call({"id": 4, "op": "symbol_info_tick", "symbol": "EURUSD"}, conn)
        self.assertEqual(set(r["result"]["tick"]), set(gw.TICK_FIELDS))

    def test_every_error_code(self):
        c = self.connect()  # one connection: errors do not close it
        self.assertEqual(self.error("{not json", c), "BAD_JSON")
        self.assertEqual(self.error("[1, 2]", c), "BAD_JSON")
        self.assertEqual(self.error({"id": 1, "op": "order_send"}, c), "UNKNOWN_OP")
        self.assertEqual(self.error({"id": 1, "op": "copy_rates_from_pos", "symbol": "EURUSD", "timeframe": "H7", "start_pos": 0, "count": 1}, c), "UNKNOWN_TIMEFRAME")
        for bad in ({"start_pos": 0}, {"start_pos": 0, "count": 0}, {"start_pos": 0, "count": 50001}, {"start_pos": -1, "count": 1},
                    {"start_pos": 0, "count": "5"}, {"start_pos": 0, "count": True}):
            req = dict({"id": 1, "op": "copy_rates_from_pos", "symbol": "EURUSD", "timeframe": "H1"}, **bad)
            self.assertEqual(self.error(req, c), "BAD_REQUEST", bad)
        self.assertEqual(self.error({"id": 1, "op": "copy_rates_range", "symbol": "EURUSD", "timeframe": "H1", "from": 10, "to": 5}, c), "BAD_REQUEST")
        self.assertEqual(self.error({"id": 1, "op": "symbol_info_tick"}, c), "BAD_REQUEST")
        err = self.call({"id": 9, "op": "symbol_info_tick", "symbol": "GBPUSD"}, c)
        self.assertEqual((err["id"], err["error"]["code"], err["error"]["mt5_code"]), (9, "MT5_ERROR", -4))
        s, f = self.connect()
        s.sendall(b"x" * (gw.MAX_LINE + 10) + b"\n")
        self.assertEqual(json.loads(f.readline())["error"]["code"], "LINE_TOO_LONG")
        self.assertEqual(f.readline(), b"", "the connection is closed after a too-long line")

    def test_nan_ids_and_odd_ids_get_an_answer_not_a_traceback(self):
        c = self.connect()
        self.assertEqual(self.error('{"id": NaN, "op": "ping"}', c), "BAD_JSON")
        self.assertEqual(self.error({"id": [1], "op": "ping"}, c), "BAD_REQUEST")
        self.assertEqual(self.call({"id": "a", "op": "ping"}, c)["id"], "a", "still serving")

    def test_a_client_dripping_bytes_is_cut_off_at_the_line_deadline(self):
        old = gw_server.LINE_SECONDS
        gw_server.LINE_SECONDS = 0.5
        self.addCleanup(setattr, gw_server, "LINE_SECONDS", old)
        s, f = self.connect()
        start = time.monotonic()
        try:
            for _ in range(20):
                s.sendall(b" ")
                time.sleep(0.1)
        except OSError:
            pass
        self.assertEqual(f.read(), b"", "closed without an answer")
        self.assertLess(time.monotonic() - start, 2.5)

    def test_idle_clients_give_way_when_every_slot_is_taken(self):
        self.server.slots = threading.BoundedSemaphore(2)
        old = gw_server.EVICT_IDLE_SECONDS
        gw_server.EVICT_IDLE_SECONDS = 0.2
        self.addCleanup(setattr, gw_server, "EVICT_IDLE_SECONDS", old)
        idle = [self.connect(), self.connect()]
        for c in idle:
            self.call({"id": 1, "op": "ping"}, c)
        time.sleep(0.4)
        newcomer = self.connect()
        self.assertTrue(self.call({"id": 2, "op": "ping"}, newcomer)["ok"])
        def closed(sock):
            sock.settimeout(0.3)
            try:
                return sock.recv(1) == b""
            except socket.timeout:
                return False
        self.assertEqual(sum(1 for s, _ in idle if closed(s)), 1, "exactly one idle client closed")

    def test_clients_beyond_the_limit_are_told_busy(self):
        self.server.slots = threading.BoundedSemaphore(1)
        first = self.connect()
        self.call({"id": 1, "op": "ping"}, first)
        s, f = self.connect()
        self.assertEqual(json.loads(f.readline())["error"]["code"], "BUSY")

    def test_subscribe_streams_every_tick_then_ends(self):
        s, f = self.connect()
        r = self.call({"id": 7, "op": "subscribe_ticks", "symbols": ["EURUSD"]}, (s, f))
        self.assertEqual(r["result"], {"subscribed": ["EURUSD"]})
        events = []
        while True:
            line = f.readline()
            self.assertTrue(line, "stream closed without an end event")
            e = json.loads(line)
            events.append(e)
            if e["event"] == "end":
                break
        ticks = [e["tick"] for e in events if e["event"] == "tick"]
        self.assertEqual([t["bid"] for t in ticks], [1.0464, 1.0466, 1.0466, 1.0467])
        self.assertEqual(f.readline(), b"")
        self.assertEqual(self.error({"id": 1, "op": "subscribe_ticks", "symbols": []}), "BAD_REQUEST")

    def test_a_slow_replay_sends_heartbeats(self):
        self.server.backend = gw.CsvBackend(self.dir, speed=0.5)  # 1.35 s of ticks take 2.7 s
        s, f = self.connect()
        self.call({"id": 1, "op": "subscribe_ticks", "symbols": ["EURUSD"]}, (s, f))
        kinds = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            e = json.loads(f.readline())
            kinds.append(e["event"])
            if e["event"] == "end":
                break
        self.assertIn("heartbeat", kinds)
        self.assertEqual(kinds.count("tick"), 4)

    def test_random_lines_get_typed_errors_and_never_stop_the_gateway(self):
        import random
        rng = random.Random(7)
        s, f = self.connect()
        pieces = [b"{", b"}", b"[", b'"op"', b":", b'"copy_rates_from_pos"', b'"count"', b"-1", b"1e999", b"null",
                  b"\xff\xfe", b"\x00", b'"symbol"', b'"EURUSD"', b",", b'"timeframe"', b'"M1"', b"true", b'"\\u0000"']
        for _ in range(300):
            line = b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
            s.sendall(line.replace(b"\n", b"") + b"\n")
            r = json.loads(f.readline())
            if not r["ok"]:
                self.assertIn(r["error"]["code"], {"BAD_JSON", "BAD_REQUEST", "UNKNOWN_OP", "UNKNOWN_TIMEFRAME", "MT5_ERROR"}, (line, r))
        self.assertTrue(self.call({"id": 1, "op": "ping"}, (s, f))["ok"])


if __name__ == "__main__":
    unittest.main()


class TokenTest(Folder):
    def setUp(self):
        super().setUp()
        write(self.dir, "EURUSD_H1_201701020000_201701020400.csv", BARS_H1)
        self.server = gw.Gateway(("127.0.0.1", 0), gw.CsvBackend(self.dir), token="s3cret")
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.addCleanup(self.server.server_close)
        self.addCleanup(self.server.shutdown)

    def ask(self, req):
        s = socket.create_connection(self.server.server_address[:2], timeout=5)
        self.addCleanup(s.close)
        f = s.makefile("rb")
        s.sendall(json.dumps(req).encode() + b"\n")
        return json.loads(f.readline()), f

    def test_clients_without_the_token_cannot_lock_out_one_with_it(self):
        # The attack: every slot taken by connections that send one space at a time and never
        # a token. A client with the token is served, and the drippers are cut off.
        self.server.slots = threading.BoundedSemaphore(2)
        old = gw_server.AUTH_SECONDS
        gw_server.AUTH_SECONDS = 1.0
        self.addCleanup(setattr, gw_server, "AUTH_SECONDS", old)
        stop = threading.Event()
        self.addCleanup(stop.set)
        drippers = []
        for _ in range(2):
            s = socket.create_connection(self.server.server_address[:2], timeout=5)
            self.addCleanup(s.close)
            drippers.append(s)

        def drip(sock):
            while not stop.is_set():
                try:
                    sock.sendall(b" ")
                except OSError:
                    return
                time.sleep(0.2)
        for s in drippers:
            threading.Thread(target=drip, args=(s,), daemon=True).start()
        deadline = time.monotonic() + 30
        while len(self.server.active) < 2:  # both hold a slot
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.02)
        r, _ = self.ask({"id": 1, "op": "ping", "token": "s3cret"})
        self.assertTrue(r["ok"], r)
        # Neither dripper is served for long: each is closed at the token deadline at the latest.
        for s in drippers:
            s.settimeout(30)
            try:
                self.assertEqual(s.recv(1), b"")
            except ConnectionResetError:
                pass

    def test_a_request_without_the_token_is_refused_and_the_connection_closed(self):
        r, f = self.ask({"id": 1, "op": "ping"})
        self.assertEqual(r["error"]["code"], "UNAUTHORIZED")
        self.assertEqual(f.read(), b"")
        r, _ = self.ask({"id": 1, "op": "ping", "token": "wrong"})
        self.assertEqual(r["error"]["code"], "UNAUTHORIZED")
        r, _ = self.ask({"id": 1, "op": "ping", "token": "s3cret"})
        self.assertTrue(r["ok"])


class CommandLineTest(Folder):
    def run_main(self, *argv):
        try:
            gw.main(list(argv))
        except SystemExit as e:
            return str(e.code)
        return None

    def test_a_remote_bind_needs_a_token(self):
        said = self.run_main("--backend", "csv", "--data", self.dir, "--bind", "0.0.0.0:0")
        self.assertIn("no token is set", said)

    def test_a_missing_or_odd_data_folder_is_one_clear_line(self):
        self.assertIn("no such folder", self.run_main("--backend", "csv", "--data", os.path.join(self.dir, "nope")))
        path = os.path.join(self.dir, "file.csv")
        write(self.dir, "file.csv", "x")
        self.assertIn("not a folder", self.run_main("--backend", "csv", "--data", path))

    def test_help_shows_the_defaults(self):
        import contextlib
        import io
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            self.run_main("--help")
        text = " ".join(out.getvalue().split())
        self.assertIn("(default: 127.0.0.1:18812)", text)
        self.assertIn("(default: 60)", text)
        self.assertIn("(default: max)", text)
