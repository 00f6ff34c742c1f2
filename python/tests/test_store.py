"""The history store with real processes (issue 38): a tick export replayed comes back whole;
a streamer killed with SIGKILL and started again continues its store with no gap and no
duplicate (against the terminal's own answers, asked of the gateway); a full disk is an error
the rings outlive; a damaged file is refused with a typed error."""

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import mtf_candles as mt5
import pytest
from conftest import ROOT, Streamer, binary

STANDIN = os.path.join(ROOT, "gateway", "standin")


def wait_for(what, check, seconds=120):
    deadline = time.monotonic() + seconds
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.05)


def tick_export(path, n):
    """An MT5 tick export of `n` ticks: a random walk, some sharing a millisecond."""
    import random
    rng = random.Random(7)
    rows, bid, ms = ["<DATE>\t<TIME>\t<BID>\t<ASK>\t<LAST>\t<VOLUME>\t<FLAGS>"], 1.10000, 0
    t0 = 1704189600000  # 2024-01-02 10:00 server time
    want = []
    for _ in range(n):
        ms += rng.choice((0, 37, 180, 900))
        bid = round(bid + rng.choice((-2, -1, 1, 2)) * 0.00001, 5)
        ask = round(bid + rng.choice((1, 2, 3)) * 0.00001, 5)
        t = t0 + ms
        stamp = time.strftime("%Y.%m.%d\t%H:%M:%S", time.gmtime(t // 1000)) + ".%03d" % (t % 1000)
        rows.append("%s\t%.5f\t%.5f\t\t\t6" % (stamp, bid, ask))
        want.append((t, bid, ask))
    with open(path, "w") as f:
        f.write("\r\n".join(rows) + "\r\n")
    return want


def test_a_tick_export_comes_back_whole(tmp_path):
    """20,000 ticks replayed: the ring keeps 4,096 of them, the store every one."""
    path = tmp_path / "EURUSD_202401021000_202401021200.csv"
    want = tick_export(path, 20000)
    s = Streamer(tmp_path, ["--csv", str(path), "--speed", "max", "--timeframes", "M1"], http=False)
    try:
        segment = mt5.Segment(path=s.segment)
        wait_for("the replay", lambda: segment.status()["feed_state"] == "finished")
        got = segment.copy_ticks_range("EURUSD", want[0][0] // 1000, want[-1][0] // 1000 + 1,
                                       mt5.COPY_TICKS_ALL)
        assert len(got) == 20000
        assert [(int(t["time_msc"]), float(t["bid"]), float(t["ask"])) for t in got] == want
        # The ring alone holds its depth: the rest came from the store.
        assert len(segment.copy_ticks_from("EURUSD", want[-1][0] // 1000 - 3600 * 24, 4096,
                                           mt5.COPY_TICKS_ALL)) == 4096
        # How deep the store holds, as inspect and status() say it.
        assert segment.status()["history"]["EURUSD"]["ticks"]["count"] == 20000
        shown = subprocess.run([binary("mtf-streamer"), "inspect", "--segment-path", s.segment],
                               capture_output=True, text=True, check=True).stdout
        line = next(row for row in shown.splitlines() if row.startswith("EURUSD ticks"))
        assert line.split()[2] == "20000", shown
    finally:
        s.stop()


class Gateway:
    """The gateway over a live stand-in with two days of history, and calls to it."""

    def __init__(self):
        now_ms = int(time.time() * 1000)
        self.env = dict(os.environ, PYTHONPATH=STANDIN, MT5_STANDIN_SYMBOLS="EURUSD=20",
                        MT5_STANDIN_HISTORY_DAYS="2", MT5_STANDIN_HISTORY_END=str(now_ms - now_ms % 60000),
                        MT5_STANDIN_CALL_US="0", MT5_STANDIN_SAME_MS="0.3")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "gateway", "mt5_gateway.py"), "--backend", "metatrader5",
             "--bind", "127.0.0.1:0"], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError("the gateway did not start: " + self.proc.stderr.read().decode()[-2000:])
        self.addr = line[len("listening on "):]
        host, port = self.addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.file = self.sock.makefile("rb")

    def call(self, op, **params):
        self.sock.sendall(json.dumps(dict(id=1, op=op, **params)).encode() + b"\n")
        r = json.loads(self.file.readline())
        assert r["ok"], r
        return r["result"]

    def ticks(self, frm, to):
        out, at, had = [], frm, 0
        while True:
            page = self.call("copy_ticks_range", symbol="EURUSD", from_ms=at, skip=had, to_ms=to, count=20000)["ticks"]
            for t in page:
                had = had + 1 if t["time_msc"] == at else 1
                at = t["time_msc"]
            out += page
            if len(page) < 20000:
                return out

    def stop(self):
        if getattr(self, "sock", None):
            self.sock.close()
        self.proc.terminate()
        self.proc.wait(10)


FIELDS = ("time", "bid", "ask", "last", "volume", "time_msc", "flags", "volume_real")


def test_a_streamer_killed_mid_run_continues_its_store_with_no_gap_and_no_duplicate(tmp_path):
    gateway = Gateway()
    s = None
    try:
        s = Streamer(tmp_path, ["--source", "mt5", "--gateway", gateway.addr, "--symbols", "EURUSD",
                                "--timeframes", "M1"], http=False)
        segment = mt5.Segment(path=s.segment)

        def stored_newest():
            t = segment.copy_ticks_from("EURUSD", int(time.time()) - 3 * 86400, 10 ** 7, mt5.COPY_TICKS_ALL)
            return int(t["time_msc"][-1]) if len(t) else None

        started = gateway.call("symbol_info_tick", symbol="EURUSD")["tick"]["time_msc"]
        wait_for("live ticks in the store", lambda: (stored_newest() or 0) > started + 1000)
        s.kill()  # SIGKILL: no flush, whatever was being appended is left as it was
        killed = stored_newest()
        # The terminal goes on while the streamer is down.
        wait_for("the terminal to move on",
                 lambda: gateway.call("symbol_info_tick", symbol="EURUSD")["tick"]["time_msc"] > killed + 2000)
        s.start()
        now = gateway.call("symbol_info_tick", symbol="EURUSD")["tick"]["time_msc"]
        wait_for("the store to catch up", lambda: (stored_newest() or 0) >= now)
        lo = now - 86400 * 1000
        theirs = gateway.ticks(lo, now)
        ours = segment.copy_ticks_range("EURUSD", lo // 1000, now // 1000 + 1, mt5.COPY_TICKS_ALL)
        ours = ours[(ours["time_msc"] >= lo) & (ours["time_msc"] <= now)]
        assert len(theirs) > 4096 and any(t["time_msc"] > killed for t in theirs)
        assert len(ours) == len(theirs), (len(ours), len(theirs))
        assert [tuple(t[f] for f in FIELDS) for t in theirs] == \
            [tuple(t[f].item() for f in FIELDS) for t in ours]
        # The closed M1 bars too, across the kill: each the terminal's.
        last_closed = now // 60000 * 60 - 120
        bars = gateway.call("copy_rates_range", symbol="EURUSD", timeframe="M1", **{"from": lo // 1000, "to": last_closed})["rates"]
        ours = segment.copy_rates_range("EURUSD", mt5.TIMEFRAME_M1, lo // 1000, last_closed)
        assert len(ours) == len(bars) > 1400
        assert [int(t) for t in ours["time"]] == [b["time"] for b in bars]
        assert [float(c) for c in ours["close"]] == [b["close"] for b in bars]
        assert [int(c) for c in ours["spread"]] == [b["spread"] for b in bars]
    finally:
        if s:
            s.stop()
        gateway.stop()


@pytest.mark.linux_only("a tmpfs mounted in a private mount namespace (unshare) is Linux's")
def test_a_full_disk_is_an_error_the_rings_outlive(tmp_path):
    if shutil.which("unshare") is None:
        pytest.fail("NOT RUN: the full-disk test needs unshare (util-linux; ./scripts/setup installs it)")
    store = tmp_path / "small"
    store.mkdir()

    def on_small_disk(command):
        # A 256 KiB tmpfs, in a mount namespace of the streamer's own: gone with it.
        return ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=256k tmpfs "$0" && exec "$@"',
                str(store)] + command

    s = Streamer(tmp_path, ["--tick-rate", "200", "--timeframes", "M1", "--history-dir", str(store)],
                 http=False, wrap=on_small_disk)
    try:
        segment = mt5.Segment(path=s.segment)
        wait_for("a store error", lambda: segment.status()["counters"]["history_errors"] > 0)
        # The rings go on: ticks keep coming, and the streamer runs.
        before = segment.status()["counters"]["ticks_processed"]
        wait_for("ticks after the error", lambda: segment.status()["counters"]["ticks_processed"] > before + 50)
        assert s.proc.poll() is None
    finally:
        s.stop()
    err = s.proc.stderr.read().decode()
    assert "history store" in err and "the disk is full" in err, err[-2000:]


def test_a_damaged_store_file_is_refused_with_a_typed_error(tmp_path):
    # A ring of 100 bars: the day's first bars are the store's alone.
    s = Streamer(tmp_path, ["--csv", "examples/EURUSD_M1_202401020000_202401022359.csv", "--speed", "max",
                            "--timeframes", "M1", "--buffer", "M1=100"], http=False)
    try:
        segment = mt5.Segment(path=s.segment)
        wait_for("the replay", lambda: segment.status()["feed_state"] == "finished")
        lo, hi = 1704153600, 1704153600 + 86400
        assert len(segment.copy_rates_range("EURUSD", mt5.TIMEFRAME_M1, lo, hi)) > 1000
        chunk = sorted(glob.glob(os.path.join(s.segment + ".history", "EURUSD", "M1.*.mtfh")))[0]
        with open(chunk, "r+b") as f:
            f.seek(128 + 72 * 10 + 8)  # the open price of the eleventh bar
            f.write(b"\x01\x02\x03\x04")
        # A reader that maps the store afresh checks every record it serves.
        with pytest.raises(mt5.SegmentError, match="damaged"):
            mt5.Segment(path=s.segment).copy_rates_range("EURUSD", mt5.TIMEFRAME_M1, lo, hi)
    finally:
        s.stop()


def test_http_time_ranges_page_through_store_and_ring(tmp_path):
    """`/streamer/candles/{symbol}/{tf}?from=&to=` and `/streamer/ticks/{symbol}?from_msc=&to_msc=`
    answer as deep as the store, page by page, each page's cursor where the next starts."""
    path = tmp_path / "EURUSD_202401021000_202401021200.csv"
    want = tick_export(path, 20000)
    s = Streamer(tmp_path, ["--csv", str(path), "--speed", "max", "--timeframes", "M1",
                            "--buffer", "M1=30"])
    try:
        segment = mt5.Segment(path=s.segment)
        wait_for("the replay", lambda: segment.status()["feed_state"] == "finished")
        got, query = [], "from_msc=%d&to_msc=%d&limit=7000" % (want[0][0], want[-1][0])
        while True:
            status, page = s.http_json("/streamer/ticks/EURUSD?" + query)
            assert status == 200 and page["success"], page
            got += [(t["time_msc"], t["bid"], t["ask"]) for t in page["ticks"]]
            if page["next_from_msc"] is None:
                break
            query = "from_msc=%d&skip=%d&to_msc=%d&limit=7000" % (page["next_from_msc"], page["next_skip"],
                                                                  want[-1][0])
        assert got == want
        lo, hi = want[0][0] // 1000 // 60 * 60, want[-1][0] // 1000
        bars = segment.copy_rates_range("EURUSD", mt5.TIMEFRAME_M1, lo, hi)
        assert len(bars) > 60  # more than the ring's 30
        got, query = [], "from=%d&to=%d&limit=25" % (lo, hi)
        while True:
            status, page = s.http_json("/streamer/candles/EURUSD/M1?" + query)
            assert status == 200, page
            got += [(c["time"], c["close"], c["volume"]) for c in page["candles"]]
            if page["next_from"] is None:
                break
            query = "from=%d&to=%d&limit=25" % (page["next_from"], hi)
        assert got == [(int(b["time"]), float(b["close"]), int(b["tick_volume"])) for b in bars]
        # Bad ranges are refused before anything is read.
        for bad in ("from=-1", "from=1&limit=0", "from=1&limit=20001", "from=x", "from=1&colour=red"):
            status, page = s.http_json("/streamer/candles/EURUSD/M1?" + bad)
            assert status == 400 and not page["success"], (bad, page)
        status, page = s.http_json("/streamer/ticks/EURUSD?from_msc=1&limit=10001")
        assert status == 400, page
        status, page = s.http_json("/streamer/candles/NOPE/M1?from=1")
        assert status == 404, page
    finally:
        s.stop()


def test_history_keep_bounds_the_store_by_size_dropping_the_oldest_files(tmp_path):
    """`--history-keep 6MB`: once the ticks fill more chunks (4.7 MB each) than fit, the oldest
    go, and readers read from the oldest kept on, without an error."""
    store = tmp_path / "store"
    s = Streamer(tmp_path, ["--tick-rate", "40000", "--symbols", "EURUSD", "--timeframes", "M1",
                            "--history-dir", str(store), "--history-keep", "6MB"], http=False)
    try:
        chunks = lambda: sorted((store / "EURUSD").glob("ticks.*.mtfh"))  # noqa: E731
        # Three chunks made: the first must have gone to keep within 6 MB.
        wait_for("a third tick chunk", lambda: any(p.name == "ticks.00000003.mtfh" for p in chunks()))
        wait_for("the first chunk to go", lambda: not (store / "EURUSD" / "ticks.00000001.mtfh").exists())
        # Bytes on disk where the system says (st_blocks), else the files' lengths (Windows).
        total = sum(getattr(p.stat(), "st_blocks", p.stat().st_size / 512) * 512
                    for p in (store / "EURUSD").iterdir())
        assert total <= 6_000_000 + 4_800_000, total  # the bound, and the chunk being filled
        segment = mt5.Segment(path=s.segment, history_dir=str(store))
        held = segment.status()["history"]["EURUSD"]["ticks"]
        assert held["count"] > 65536 and "error" not in held, held
        ticks = segment.copy_ticks_range("EURUSD", held["oldest"] // 1000, held["newest"] // 1000 + 1,
                                         mt5.COPY_TICKS_ALL)
        assert len(ticks) >= held["count"] and bool((ticks["time_msc"][1:] >= ticks["time_msc"][:-1]).all())
    finally:
        s.stop()
