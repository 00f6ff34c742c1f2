"""The local attack round's findings that reach Python (issue 27): Ctrl-C during a wait, a fork
while another thread waits, trust by owner, and MT5's argument conventions."""

import os
import signal
import struct
import subprocess
import sys
import threading
import time

import layout_reader
import mtf_candles as mt5
import numpy as np
import pytest


@pytest.mark.linux_only(reason='sends SIGINT to a child, which Windows has no equivalent of for a console-less process')
def test_ctrl_c_interrupts_a_long_wait(replay):
    # C3: a live writer that publishes nothing more (a finished replay), a wait of a day, and
    # SIGINT: KeyboardInterrupt, not the end of the day. In a child process, so that the
    # signal reaches nobody else.
    script = """
import os, signal, sys, threading, time
import mtf_candles as mt5
assert mt5.initialize(segment=sys.argv[1]), mt5.last_error()
def interrupt():
    time.sleep(0.3)
    os.kill(os.getpid(), signal.SIGINT)
threading.Thread(target=interrupt, daemon=True).start()
try:
    mt5.wait_for_update("EURUSD", 86400)
except KeyboardInterrupt:
    print("interrupted")
"""
    out = subprocess.run([sys.executable, "-c", script, replay.segment], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "interrupted", out.stderr


@pytest.mark.linux_only(reason='os.fork does not exist on Windows')
def test_a_child_forked_while_a_thread_waits_reads_and_refreshes(replay):
    # C4: fork() while another thread is inside wait_for_update; the child's refresh() used
    # to block for ever on the lock the waiting thread held.
    seg = mt5.Segment(path=replay.segment)
    waiting = threading.Event()

    def wait():
        waiting.set()
        try:
            seg.wait_for_update(timeout=30)
        except mt5.WriterGone:
            pass  # the fixture stopped the streamer first

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    waiting.wait(30)
    for _ in range(20):
        pid = os.fork()
        if pid == 0:
            try:
                ok = seg.refresh() is False and len(seg.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 5)) == 5
            finally:
                os._exit(0 if ok else 1)
        deadline = time.monotonic() + 60
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("a forked child hung")
            time.sleep(0.01)
        assert os.waitstatus_to_exitcode(status) == 0


def test_mt5s_argument_conventions(replay, tmp_path):
    assert mt5.initialize(segment=replay.segment), mt5.last_error()
    m1 = mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 10)
    # A numpy integer date, as a bot takes it from the rates it got: accepted, as a float is.
    last = m1["time"][-1]
    assert isinstance(last, np.int64)
    assert len(mt5.copy_rates_from("EURUSD", mt5.TIMEFRAME_M1, last, 3)) == 3
    assert len(mt5.copy_rates_from("EURUSD", mt5.TIMEFRAME_M1, np.float64(last), 3)) == 3
    # A bool is no timeframe, position or count.
    assert mt5.copy_rates_from_pos("EURUSD", True, 0, 5) is None
    assert mt5.last_error()[0] == -2
    assert mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, False, 5) is None
    assert mt5.last_error()[0] == -2
    # A group that is not a string is bad arguments, not an AttributeError.
    assert mt5.symbols_get(123) is None
    assert mt5.last_error()[0] == -2
    # A group of 10 MB is refused at once (it took 21 s and 1.5 GB); a long real one is fine.
    assert mt5.symbols_get("*" * 10_000_000) is None
    assert mt5.last_error()[0] == -2 and "at most 4096" in mt5.last_error()[1]
    assert len(mt5.symbols_get(",".join(["EUR*"] * 500))) == 1
    # A date far past any tick is "to the end", as copy_rates_range takes it, not an overflow.
    everything = mt5.copy_ticks_range("EURUSD", 0, 2 ** 62, mt5.COPY_TICKS_ALL)
    assert everything is not None, mt5.last_error()
    assert mt5.copy_ticks_from("EURUSD", 2 ** 62, 10, mt5.COPY_TICKS_ALL) is not None
    assert mt5.copy_rates_range("EURUSD", mt5.TIMEFRAME_M1, 0, 2 ** 62) is not None
    # An unknown symbol is said at once, not waited for.
    with pytest.raises(mt5.NotFound):
        mt5.wait_for_update("NOPE", 30)
    # segment=None is the default segment; a value with a '/' is a file path, not a name.
    assert mt5.initialize(segment=None) in (True, False)
    assert mt5.last_error()[0] in (1, -10003)
    assert not mt5.initialize(segment="a/b")
    assert mt5.last_error()[0] == -10003
    # A relative path is relative to the working directory, not to /dev/shm.
    here = os.getcwd()
    os.chdir(os.path.dirname(replay.segment))
    try:
        assert mt5.initialize(segment="./" + os.path.basename(replay.segment)), mt5.last_error()
    finally:
        os.chdir(here)


def test_last_error_is_each_threads_own(replay):
    assert mt5.initialize(segment=replay.segment)
    seen = []

    def failing():
        mt5.copy_rates_from_pos("NOPE", mt5.TIMEFRAME_M1, 0, 5)
        seen.append(mt5.last_error()[0])

    assert mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 5) is not None
    t = threading.Thread(target=failing)
    t.start()
    t.join()
    assert seen == [-4]
    assert mt5.last_error() == (1, "Success")


@pytest.fixture
def other_account():
    """A system account made for the test and deleted afterwards (W1's squatter)."""
    if os.geteuid() != 0:
        pytest.skip("SKIPPED LOUDLY: the owner test needs root, to create a second account")
    name = "mtfpy%dx%d" % (os.getpid(), time.monotonic_ns() % 100000)
    deadline = time.monotonic() + 60
    while True:
        made = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                              capture_output=True, text=True)
        if made.returncode == 0:
            break
        # 10: /etc/passwd is locked by another useradd; anything else is final.
        if made.returncode != 10 or time.monotonic() > deadline:
            pytest.fail("useradd failed: %s" % made.stderr)
        time.sleep(0.05)
    try:
        import pwd  # POSIX accounts: this test is linux_only
        yield pwd.getpwnam(name)
    finally:
        while subprocess.run(["userdel", name], capture_output=True).returncode == 10:
            time.sleep(0.05)


@pytest.mark.linux_only(reason='creates a second POSIX account (useradd, pwd)')
def test_a_segment_of_another_account_is_refused_unless_trusted(replay, other_account):
    # W1: the segment and its lock file now belong to another account, as if it had taken the
    # name first and kept a writer heartbeating in it.
    for path in (replay.segment, replay.segment + ".lock"):
        os.chown(path, other_account.pw_uid, -1)
    with pytest.raises(mt5.SegmentError) as refused:
        mt5.Segment(path=replay.segment)
    assert other_account.pw_name in str(refused.value)
    assert "MTF_TRUST" in str(refused.value)
    assert not mt5.initialize(segment=replay.segment)
    assert mt5.last_error()[0] == -10003
    # Trusted by name, it is read.
    assert mt5.initialize(segment=replay.segment, trust=other_account.pw_name), mt5.last_error()
    assert len(mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 5)) == 5
    seg = mt5.Segment(path=replay.segment, trust=str(other_account.pw_uid))
    assert len(seg.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 5)) == 5


def _ring(path, symbol):
    """(capacity, offset) of `symbol`'s M1 ring, by the reference reader."""
    ref = layout_reader.Segment(path)
    return next((cap, off) for s, tf, cap, off in ref.rings if (s, tf) == (symbol, "M1")), ref


def _put(path, at, value):
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(struct.pack("<Q", value & 0xFFFFFFFFFFFFFFFF))


@pytest.mark.linux_only(reason='the reference reader (layout_reader.py) is written for Linux (/dev/shm, O_NOFOLLOW, OFD locks, POSIX modes)')
def test_forged_disorder_is_refused_not_served(replay):
    # W2, in the file as the attack forged it: two swapped times, then a time 7 s off the minute.
    replay.proc.terminate()
    replay.proc.wait()
    (cap, off), ref = _ring(replay.segment, "EURUSD")
    head = ref.word(off + 8)

    def record(p):
        return off + 128 + (p % cap) * 80 + 16

    older, newer = ref.word(record(head - 2)), ref.word(record(head - 1))
    _put(replay.segment, record(head - 2), newer)
    _put(replay.segment, record(head - 1), older)
    assert mt5.initialize(segment=replay.segment)
    assert mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 10) is None
    code, message = mt5.last_error()
    assert code == -1 and "not later than" in message, message
    with pytest.raises(layout_reader.DamagedRecord):
        layout_reader.Segment(replay.segment).read_last("EURUSD", "M1", 10)
    # Put back in order, but the newest 7 s off its minute: refused too.
    _put(replay.segment, record(head - 2), older)
    _put(replay.segment, record(head - 1), newer + 7)
    assert mt5.initialize(segment=replay.segment)
    assert mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 10) is None
    assert "start of a bar" in mt5.last_error()[1]
    # The rings nobody forged are still served.
    assert len(mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M5, 0, 10)) == 10


@pytest.mark.linux_only(reason='the reference reader (layout_reader.py) is written for Linux (/dev/shm, O_NOFOLLOW, OFD locks, POSIX modes)')
def test_a_torn_write_of_a_killed_streamer_is_dropped_at_its_restart(live):
    # W3/C6: the streamer killed inside a correction of the newest closed M1 candle (built by
    # hand: the slot's sequence odd, half of a record a day newer with an absurd high, the old
    # position word), then restarted on the same segment.
    live.kill()
    (cap, off), ref = _ring(live.segment, "BTCUSDc")
    head = ref.word(off + 8)
    slot = off + 128 + ((head - 1) % cap) * 80
    seq, time_ = ref.word(slot), ref.word(slot + 16)
    ref.close()
    _put(live.segment, slot, seq + 1)
    _put(live.segment, slot + 16, time_ + 86400)
    with open(live.segment, "r+b") as f:
        f.seek(slot + 16 + 16)
        f.write(struct.pack("<d", 120545.0))  # high
    live.start()
    assert mt5.initialize(segment=live.segment), mt5.last_error()
    rates = mt5.copy_rates_from_pos("BTCUSDc", mt5.TIMEFRAME_M1, 0, 5000)
    assert rates is not None, mt5.last_error()
    times = [int(t) for t in rates["time"]]
    assert times == sorted(set(times)), "strictly increasing"
    assert time_ + 86400 not in times and 120545.0 not in list(rates["high"])


def test_the_module_api_follows_a_restart_that_replaces_the_segment(live):
    """A restart with another layout (here another --tick-depth) replaces the segment file. An
    MT5-style bot never calls a refresh: every module call must answer from the new file, never
    serve the replaced one as current (issue 40)."""
    assert mt5.initialize(segment=live.segment), mt5.last_error()
    deadline = time.monotonic() + 30
    while (before := mt5.copy_ticks_from("BTCUSDc", 0, 100000, mt5.COPY_TICKS_ALL)) is None or len(before) < 2:
        assert time.monotonic() < deadline, mt5.last_error()
        time.sleep(0.05)
    live.proc.terminate()
    live.proc.wait(10)
    old_newest = int(mt5.copy_ticks_from("BTCUSDc", 0, 100000, mt5.COPY_TICKS_ALL)["time_msc"][-1])
    live.args = ["--tick-rate", "50", "--tick-depth", "8192"]
    live.start()
    deadline = time.monotonic() + 30
    while True:
        tick = mt5.symbol_info_tick("BTCUSDc")
        if tick is not None and tick.time_msc > old_newest:
            break  # the new file's newest tick: it was followed
        assert time.monotonic() < deadline, "still the replaced file's newest tick: %r" % (tick,)
        time.sleep(0.05)
    # The history store beside the segment keeps the replaced run's ticks (they happened), and
    # the new run's after them: in order, none twice.
    ticks = mt5.copy_ticks_from("BTCUSDc", 0, 100000, mt5.COPY_TICKS_ALL)
    assert ticks is not None, mt5.last_error()
    assert int(ticks["time_msc"][-1]) > old_newest
    assert bool((ticks["time_msc"][1:] >= ticks["time_msc"][:-1]).all())
    assert mt5.copy_rates_from_pos("BTCUSDc", mt5.TIMEFRAME_M1, 0, 5) is not None, mt5.last_error()
    assert mt5.status()["liveness"] == "alive"
