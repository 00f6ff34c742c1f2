#!/usr/bin/env python3
"""Ranges deeper than the rings, from the history store, beside the stand-in terminal's own
call for the same range (issue 38), round-robin in one run:

- copy_rates_range of 30 days of M1 (43,200 bars): the segment's store, and the stand-in's;
- copy_ticks_range of 20,000 ticks: the segment's store, and the stand-in's;

then the disk the store takes per bar and per tick, and this reader's memory after reading a
month (its resident set split into file pages, the mapped store, and anonymous heap).

    .venv/bin/python python/bench/history_ranges.py [--rounds N]

It starts its own gateway over the stand-in (30 days of history, a tick every 20 s) and a
streamer (`--source mt5`, debug build) on a temporary segment, and removes them at the end.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STANDIN = os.path.join(ROOT, "gateway", "standin")


def percentile(sorted_ns, q):
    return sorted_ns[min(len(sorted_ns) - 1, int(len(sorted_ns) * q))] / 1000.0


def rss():
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return {k: fields.get(k, "?") for k in ("VmRSS", "RssAnon", "RssFile")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=300)
    args = ap.parse_args()
    now_ms = int(time.time() * 1000)
    end_ms = now_ms - now_ms % 60000
    env = dict(MT5_STANDIN_SYMBOLS="EURUSD=5", MT5_STANDIN_HISTORY_DAYS="30",
               MT5_STANDIN_HISTORY_END=str(end_ms), MT5_STANDIN_CALL_US="0")
    os.environ.update(env)
    sys.path.insert(0, STANDIN)
    import MetaTrader5 as terminal  # the stand-in, with the gateway's history
    import mtf_candles as mt5

    work = tempfile.mkdtemp(prefix="mtf-bench-history-")
    gateway = streamer = None
    try:
        gateway = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "gateway", "mt5_gateway.py"), "--backend", "metatrader5",
             "--bind", "127.0.0.1:0"], env=dict(os.environ, PYTHONPATH=STANDIN),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        addr = gateway.stdout.readline().decode().strip()[len("listening on "):]
        segment_path = os.path.join(work, "segment")
        subprocess.run(["cargo", "build", "-q", "--bin", "mtf-streamer"], cwd=ROOT, check=True)
        streamer = subprocess.Popen(
            [os.path.join(ROOT, "target", "debug", "mtf-streamer"), "--segment-path", segment_path,
             "--no-http", "--source", "mt5", "--gateway", addr, "--symbols", "EURUSD",
             "--timeframes", "M1", "--history-ticks", "7d"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        last = end_ms // 1000 - 60
        lo = last - 30 * 86400 + 60
        deadline = time.monotonic() + 120
        while True:
            try:
                seg = mt5.Segment(path=segment_path)
                if len(seg.copy_rates_range("EURUSD", mt5.TIMEFRAME_M1, lo, last)) >= 43200 and \
                        len(seg.copy_ticks_range("EURUSD", last - 5 * 86400, last, mt5.COPY_TICKS_ALL)) >= 20000:
                    break
            except (mt5.SegmentError, OSError):
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the store was not filled in 120 s")
            time.sleep(0.2)
        assert terminal.initialize()
        # The range that holds 20,000 ticks, from the stand-in's own history.
        every = terminal.copy_ticks_range("EURUSD", last - 7 * 86400, last, terminal.COPY_TICKS_ALL)
        t_lo = int(every["time"][-20000])
        t_hi = int(every["time"][-1])
        ways = {
            "rates 43,200 M1, store": lambda: seg.copy_rates_range("EURUSD", mt5.TIMEFRAME_M1, lo, last),
            "rates 43,200 M1, stand-in": lambda: terminal.copy_rates_range("EURUSD", terminal.TIMEFRAME_M1, lo, last),
            "ticks 20,000, store": lambda: seg.copy_ticks_range("EURUSD", t_lo, t_hi, mt5.COPY_TICKS_ALL),
            "ticks 20,000, stand-in": lambda: terminal.copy_ticks_range("EURUSD", t_lo, t_hi, terminal.COPY_TICKS_ALL),
        }
        sizes = {k: len(f()) for k, f in ways.items()}
        samples = {k: [] for k in ways}
        for _ in range(args.rounds):
            for k, f in ways.items():
                t0 = time.perf_counter_ns()
                f()
                samples[k].append(time.perf_counter_ns() - t0)
        print("%-28s %8s %10s %10s %10s" % ("call", "rows", "p50 µs", "p90 µs", "p99 µs"))
        for k, s in samples.items():
            s.sort()
            print("%-28s %8d %10.1f %10.1f %10.1f" % (k, sizes[k], percentile(s, 0.5), percentile(s, 0.9),
                                                      percentile(s, 0.99)))
        store = seg.history_dir
        total, bars, ticks = 0, 0, 0
        for root, _, files in os.walk(store):
            for name in files:
                st = os.stat(os.path.join(root, name))
                total += st.st_blocks * 512
        bars = len(seg.copy_rates_range("EURUSD", mt5.TIMEFRAME_M1, 0, last + 86400))
        ticks = len(seg.copy_ticks_range("EURUSD", 0, last + 86400, mt5.COPY_TICKS_ALL))
        m1 = sum(os.stat(os.path.join(store, "EURUSD", n)).st_blocks * 512
                 for n in os.listdir(os.path.join(store, "EURUSD")) if n.startswith("M1."))
        tk = sum(os.stat(os.path.join(store, "EURUSD", n)).st_blocks * 512
                 for n in os.listdir(os.path.join(store, "EURUSD")) if n.startswith("ticks."))
        print("store on disk: %.1f MB; M1 %d bars in %.1f MB (%.1f B a bar); %d ticks in %.1f MB (%.1f B a tick)"
              % (total / 1e6, bars, m1 / 1e6, m1 / bars, ticks, tk / 1e6, tk / ticks))
        print("this reader after reading a month, rounds included:", rss())
    finally:
        for p in (streamer, gateway):
            if p:
                p.terminate()
                p.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
