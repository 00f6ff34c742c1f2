#!/usr/bin/env python3
"""The latest 50 (and 1) M1 candles from Python, three ways, round-robin in one run:

- mtf_candles.copy_rates_from_pos (this package: the Rust reader, a numpy array);
- the pure-Python reference reader (python/tests/layout_reader.py, the earlier stdlib reader);
- the HTTP API over one keep-alive connection (http.client), with json.loads.

    python bench/read_latest.py --segment PATH --http 127.0.0.1:PORT [--rounds N]

Prints a table of medians and percentiles in microseconds, and the ratios. Round-robin: each
round takes one sample of every way, so that the machine's noise falls on all of them alike.
"""

import argparse
import http.client
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import layout_reader  # noqa: E402
import mtf_candles as mt5  # noqa: E402


def percentile(sorted_ns, q):
    return sorted_ns[min(len(sorted_ns) - 1, int(len(sorted_ns) * q))] / 1000.0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--segment", required=True)
    p.add_argument("--http", required=True, help="HOST:PORT of the API")
    p.add_argument("--symbol", default="BTCUSDc")
    p.add_argument("--rounds", type=int, default=20000)
    args = p.parse_args()

    assert mt5.initialize(segment=args.segment), mt5.last_error()
    ref = layout_reader.Segment(args.segment)
    host, port = args.http.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)

    def http_get(n):
        conn.request("GET", "/streamer/candles/%s/M1?limit=%d" % (args.symbol, n))
        return json.loads(conn.getresponse().read())["candles"]

    ways = {}
    for n in (50, 1):
        ways["mtf_candles copy_rates_from_pos n=%d" % n] = (lambda n=n: mt5.copy_rates_from_pos(
            args.symbol, mt5.TIMEFRAME_M1, 0, n))
        ways["stdlib reader read_last n=%d" % n] = (lambda n=n: ref.read_last(args.symbol, "M1", n))
        ways["HTTP keep-alive + json.loads n=%d" % n] = (lambda n=n: http_get(n))
    for f in ways.values():  # warm up, and check each way answers
        for _ in range(200):
            assert f() is not None
    samples = {name: [] for name in ways}
    clock = time.perf_counter_ns
    for i in range(args.rounds):
        for name, f in ways.items():
            if "HTTP" in name and i % 10:
                continue  # HTTP is 100x slower: every 10th round is plenty of samples
            t0 = clock()
            f()
            samples[name].append(clock() - t0)
    print("| way | samples | p50 µs | p90 µs | p99 µs |")
    print("|---|---:|---:|---:|---:|")
    medians = {}
    for name, s in samples.items():
        s.sort()
        medians[name] = percentile(s, 0.5)
        print("| %s | %d | %.2f | %.2f | %.2f |" % (name, len(s), percentile(s, 0.5), percentile(s, 0.9),
                                                   percentile(s, 0.99)))
    for n in (50, 1):
        native = medians["mtf_candles copy_rates_from_pos n=%d" % n]
        print("n=%d: stdlib / mtf_candles = %.0fx, HTTP / mtf_candles = %.0fx" % (
            n, medians["stdlib reader read_last n=%d" % n] / native,
            medians["HTTP keep-alive + json.loads n=%d" % n] / native))


if __name__ == "__main__":
    main()
