"""The gateway's paged `copy_ticks_range` (docs/MT5_GATEWAY.md): a client that pages through a
range as the document says gets every tick once, in order, however many share a millisecond
and wherever a page ends; over the stand-in terminal (numpy arrays, as the package returns)
and the csv backend, and over a real socket with its limits.

    .venv/bin/python -m unittest discover -s gateway/tests -v
"""

import json
import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import mt5_gateway as gw  # noqa: E402
from test_gateway import TICKS, Folder, write  # noqa: E402
from test_standin_conformance import load_standin  # noqa: E402


def page_through(fetch, frm, to, count):
    """Every tick from `frm` to `to` as a client pages for them: each page from the last one's
    millisecond, skipping the ticks of it already had."""
    out, at, had = [], frm, 0
    while True:
        page = fetch(at, had, to, count)
        for t in page:
            assert at <= t["time_msc"] <= to, (t, at, to)
            had = had + 1 if t["time_msc"] == at else 1
            at = t["time_msc"]
        out += page
        if len(page) < count:
            return out


class TerminalPagesTest(unittest.TestCase):
    def test_pages_of_a_busy_terminal_hold_every_tick_once(self):
        # Ticks often share a millisecond (half of them), so pages of 7 end inside one.
        mt5 = load_standin(MT5_STANDIN_SYMBOLS="EURUSD=2000", MT5_STANDIN_CALL_US="0",
                           MT5_STANDIN_SAME_MS="0.5", MT5_STANDIN_MAX_TICKS="1500")
        b = gw.TerminalBackend(mt5, "metatrader5")
        until = time.monotonic() + 60
        while mt5.standin_made("EURUSD") < 1500:
            self.assertLess(time.monotonic(), until, "the stand-in made too few ticks")
            time.sleep(0.01)
        every = mt5.copy_ticks_from("EURUSD", 0, 10 ** 6, mt5.COPY_TICKS_ALL)  # a numpy array
        want = [(int(t["time_msc"]), float(t["bid"]), float(t["ask"])) for t in every]
        same_ms = len(want) - len({m for m, _, _ in want})
        self.assertGreater(same_ms, 100, "the test needs ticks that share a millisecond")
        for count in (7, 100, 20000):
            got = page_through(lambda a, h, t, c: b.copy_ticks_range("EURUSD", a, h, t, c),
                               want[0][0], want[-1][0], count)
            self.assertEqual([(t["time_msc"], t["bid"], t["ask"]) for t in got], want, count)
        # A range inside the history: its ends are inclusive, as MT5's.
        lo, hi = want[100][0], want[-100][0]
        got = page_through(lambda a, h, t, c: b.copy_ticks_range("EURUSD", a, h, t, c), lo, hi, 50)
        self.assertEqual([t["time_msc"] for t in got], [m for m, _, _ in want if lo <= m <= hi])


class CsvPagesTest(Folder):
    def test_a_page_boundary_inside_a_millisecond_loses_and_repeats_nothing(self):
        write(self.dir, "EURUSD_201701020459_201701020500.csv", TICKS)
        b = gw.CsvBackend(self.dir)
        got = page_through(lambda a, h, t, c: b.copy_ticks_range("EURUSD", a, h, t, c),
                           0, 2 ** 53, 1)
        self.assertEqual([(t["time_msc"], t["bid"], t["ask"]) for t in got],
                         [(t["time_msc"], t["bid"], t["ask"]) for t in b.ticks["EURUSD"]])
        self.assertEqual(len(got), 4)


class ProtocolPagesTest(Folder):
    def setUp(self):
        super().setUp()
        write(self.dir, "EURUSD_201701020459_201701020500.csv", TICKS)
        self.server = gw.Gateway(("127.0.0.1", 0), gw.CsvBackend(self.dir))
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        self.addCleanup(self.server.server_close)
        self.addCleanup(self.server.shutdown)
        s = socket.create_connection(self.server.server_address[:2], timeout=5)
        self.addCleanup(s.close)
        self.sock, self.file = s, s.makefile("rb")

    def call(self, **req):
        self.sock.sendall(json.dumps(dict(id=1, op="copy_ticks_range", symbol="EURUSD", **req)).encode() + b"\n")
        return json.loads(self.file.readline())

    def test_pages_over_the_socket_and_their_bounds(self):
        r = self.call(from_ms=0, skip=0, to_ms=2 ** 53, count=20000)
        self.assertTrue(r["ok"], r)
        self.assertEqual(len(r["result"]["ticks"]), 4)
        first = r["result"]["ticks"][1]["time_msc"]  # two ticks at this millisecond
        # Skipping the first of the two at that millisecond gives the second alone.
        r = self.call(from_ms=first, skip=1, to_ms=first, count=5)
        self.assertEqual([t["ask"] for t in r["result"]["ticks"]], [1.0468])
        for bad in ({"count": 0}, {"count": 20001}, {"skip": -1}, {"skip": 20001},
                    {"from_ms": 10, "to_ms": 5}, {"from_ms": -1}, {"from_ms": "0"}):
            req = dict(from_ms=0, skip=0, to_ms=2 ** 53, count=10)
            req.update(bad)
            r = self.call(**req)
            self.assertEqual((r["ok"], r["error"]["code"]), (False, "BAD_REQUEST"), bad)


if __name__ == "__main__":
    unittest.main()
