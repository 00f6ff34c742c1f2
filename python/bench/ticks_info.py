#!/usr/bin/env python3
"""MT5's market-data calls from the segment, round-robin in one run (issue 29's targets):

- symbol_info(symbol);
- copy_ticks_from(symbol, t, 1000, COPY_TICKS_ALL);
- copy_rates_from_pos of 50 M1 bars (a ring) and of 50 H2 bars (built on read from H1);
- symbol_info_tick(symbol).

    python bench/ticks_info.py --segment PATH [--symbol BTCUSDc] [--rounds N]

Against a streamer whose tick ring holds at least 2,000 ticks (e.g. `--tick-rate 1000` for a
few seconds). Prints medians and percentiles in microseconds.
"""

import argparse
import sys
import time

import mtf_candles as mt5
import numpy as np


def percentile(sorted_ns, q):
    return sorted_ns[min(len(sorted_ns) - 1, int(len(sorted_ns) * q))] / 1000.0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--segment", required=True)
    p.add_argument("--symbol", default="BTCUSDc")
    p.add_argument("--rounds", type=int, default=20000)
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for 2,000 ticks")
    args = p.parse_args()
    s = args.symbol
    until = time.monotonic() + args.wait
    while True:  # the streamer may have just started: wait, with a deadline, for 2,000 ticks
        held = mt5.copy_ticks_from(s, 0, 100000, mt5.COPY_TICKS_ALL) if mt5.initialize(segment=args.segment) else None
        if held is not None and len(held) >= 2000:
            break
        assert time.monotonic() < until, "the tick ring holds %s ticks after %g s" % (
            None if held is None else len(held), args.wait)
        time.sleep(0.1)
    print("%s %s, numpy %s" % (sys.platform, sys.version.split()[0], np.__version__))
    # A start with at least 1,000 ticks after it, in whole seconds as MT5 takes it.
    start = int(held["time"][-1500])
    ways = {
        "symbol_info": lambda: mt5.symbol_info(s),
        "copy_ticks_from 1000 ALL": lambda: mt5.copy_ticks_from(s, start, 1000, mt5.COPY_TICKS_ALL),
        "copy_rates_from_pos 50 M1 (ring)": lambda: mt5.copy_rates_from_pos(s, mt5.TIMEFRAME_M1, 0, 50),
        "copy_rates_from_pos 50 H2 (built from H1)": lambda: mt5.copy_rates_from_pos(s, mt5.TIMEFRAME_H2, 0, 50),
        "symbol_info_tick": lambda: mt5.symbol_info_tick(s),
    }
    for name, f in ways.items():  # warm up, and check each way answers in full
        for _ in range(200):
            r = f()
            assert r is not None, (name, mt5.last_error())
        if "1000" in name:
            assert len(r) == 1000, len(r)
        if "50" in name:
            assert len(r) == 50, (name, len(r))
    samples = {name: [] for name in ways}
    clock = time.perf_counter_ns
    for _ in range(args.rounds):
        for name, f in ways.items():
            t0 = clock()
            f()
            samples[name].append(clock() - t0)
    print("| call | samples | p50 µs | p90 µs | p99 µs |")
    print("|---|---:|---:|---:|---:|")
    for name, v in samples.items():
        v.sort()
        print("| %s | %d | %.2f | %.2f | %.2f |" % (name, len(v), percentile(v, 0.5), percentile(v, 0.9),
                                                   percentile(v, 0.99)))


if __name__ == "__main__":
    main()
