"""Fixtures of the mtf_candles tests: real streamers (the workspace's debug build) on temporary
segments and free loopback ports, removed afterwards even when a test fails."""

import http.client
import json
import os
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # layout_reader


def binary(name):
    """The workspace's debug build of `name`, built first if it is not there. In Windows
    Python (./scripts/test-windows, under Wine) the Windows build, which that script builds
    first: there is no cargo on the Windows side, so a missing one fails loudly."""
    if sys.platform == "win32":
        path = os.path.join(ROOT, "target", "x86_64-pc-windows-gnu", "debug", name + ".exe")
        if not os.path.exists(path):
            raise RuntimeError("NOT RUN: %s is missing: ./scripts/test-windows builds it first" % path)
        return path
    path = os.path.join(ROOT, "target", "debug", name)
    subprocess.run(["cargo", "build", "-q", "--bin", name], cwd=ROOT, check=True)
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Streamer:
    """An mtf-streamer process on its own segment (and HTTP port, unless `http` is False)."""

    made = 0

    def __init__(self, tmp_path, args, http=True, wrap=None):
        Streamer.made += 1
        self.wrap = wrap  # a function of the command line, for a test's own namespace
        self.segment = str(tmp_path / ("segment-%d" % Streamer.made))
        self.port = free_port() if http else None
        self.args = args
        self.proc = None
        self.start()

    def start(self):
        http = ["--http", "127.0.0.1:%d" % self.port] if self.port else ["--no-http"]
        command = [binary("mtf-streamer"), "--segment-path", self.segment] + http + self.args
        self.proc = subprocess.Popen(
            self.wrap(command) if self.wrap else command,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        deadline = time.monotonic() + 60
        while True:
            line = self.proc.stdout.readline().decode()
            if "running after" in line:
                break
            if not line or time.monotonic() > deadline:
                self.proc.kill()  # never left running behind a failed test
                self.proc.wait()
                raise RuntimeError("the streamer did not start: %s" % self.proc.stderr.read().decode())

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        """Stops the streamer and removes its segment and lock file."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        for path in (self.segment, self.segment + ".lock", self.segment + ".wake"):
            try:
                os.remove(path)
            except FileNotFoundError:
                pass

    def http_json(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        c.request("GET", path)
        r = c.getresponse()
        return r.status, json.loads(r.read())


@pytest.fixture
def replay(tmp_path):
    """A streamer that replayed the bundled day of EURUSD M1 bars, folded into M5 to D1, to
    its end: the candles no longer change, so every reader must agree on them."""
    s = Streamer(tmp_path, ["--csv", "examples/EURUSD_M1_202401020000_202401022359.csv", "--speed", "max",
                            "--timeframes", "M1,M5,M15,M30,H1,H4,D1"])
    try:
        deadline = time.monotonic() + 30
        import mtf_candles
        while mtf_candles.Segment(path=s.segment).status()["feed_state"] != "finished":
            assert time.monotonic() < deadline, "the replay did not finish"
            time.sleep(0.05)
        yield s
    finally:
        # Stopped even when the setup above fails: no streamer outlives its test.
        s.stop()


@pytest.fixture
def live(tmp_path):
    """The synthetic streamer, live, without HTTP."""
    s = Streamer(tmp_path, ["--tick-rate", "50"], http=False)
    try:
        yield s
    finally:
        s.stop()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "linux_only(reason): needs something only Linux has; left out, with the reason "
        "printed, in Windows Python (./scripts/test-windows)")


def pytest_collection_modifyitems(config, items):
    """In Windows Python, the tests marked linux_only are left out, each named with its reason
    on stderr and counted by pytest as deselected: never skipped silently."""
    if sys.platform != "win32":
        return
    kept, left = [], []
    for item in items:
        mark = item.get_closest_marker("linux_only")
        (left if mark else kept).append(item)
        if mark:
            sys.stderr.write("LEFT OUT on Windows: %s: %s\n" % (item.nodeid, mark.kwargs.get("reason") or mark.args[0]))
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = kept


@pytest.fixture(autouse=True)
def _mt5_state():
    """Every test starts and ends with the module-level API shut down."""
    import mtf_candles
    mtf_candles.shutdown()
    yield
    mtf_candles.shutdown()
