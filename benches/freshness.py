#!/usr/bin/env python3
"""Terminal tick -> visible in the segment, through the real gateway and the real streamer.

A stand-in terminal (gateway/standin/MetaTrader5.py: real-time ticks, a busy time per call)
feeds the gateway (``--backend metatrader5``), which feeds ``mtf-streamer --source mt5``; a
reader in this process waits on the segment (mtf_candles, the futex wake-up) and, for each
new tick it sees, takes its clock minus the tick's ``time_msc`` (the stand-in's server time is
UTC, and its ticks fall on whole milliseconds, so that is the tick's age to the microsecond).

    .venv/bin/python benches/freshness.py --symbols 2 --rate 20 --seconds 30
    .venv/bin/python benches/freshness.py --symbols 20 --rate 5 --seconds 30
    .venv/bin/python benches/freshness.py ... --gateway-script OLD_mt5_gateway.py   # compare

Prints p50, p90 and p99 of the age, the ticks seen, the ticks the terminal made against the
ticks its M1 bars count in the segment (every tick once: the two must be equal), and the
gateway's CPU (user + system over the run, share of one core). The reader sees the newest
tick of each symbol at each wake-up: ticks of one batch are one sample.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gateway_call(addr, req):
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall((json.dumps(req) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--symbols", type=int, default=2)
    p.add_argument("--rate", type=float, default=20.0, help="ticks per second per symbol")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--call-us", type=float, default=30.0, help="the stand-in's cost per call")
    p.add_argument("--gateway-script", default=os.path.join(ROOT, "gateway", "mt5_gateway.py"))
    p.add_argument("--gateway-arg", action="append", default=[],
                   help="one more argument for the gateway (repeatable), e.g. --gateway-arg=--poll-min-ms=0.5")
    p.add_argument("--streamer", default=os.path.join(ROOT, "target", "release", "mtf-streamer"))
    args = p.parse_args()
    import mtf_candles as mt5

    names = ["SYM%02d" % i for i in range(args.symbols)]
    max_ticks = int(args.rate * args.seconds)
    tmp = tempfile.mkdtemp(prefix="mtf-fresh-")
    report = os.path.join(tmp, "made.json")
    segment = "/dev/shm/mtf-bench-fresh-%d" % os.getpid()
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "gateway", "standin"),
               MT5_STANDIN_SYMBOLS=",".join("%s=%g" % (n, args.rate) for n in names),
               MT5_STANDIN_CALL_US=str(args.call_us), MT5_STANDIN_PRICE_STEP="1",
               MT5_STANDIN_MAX_TICKS=str(max_ticks), MT5_STANDIN_REPORT=report)
    gw = subprocess.Popen([sys.executable, args.gateway_script, "--backend", "metatrader5",
                           "--bind", "127.0.0.1:0", "--log-level", "WARNING"] + args.gateway_arg,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    streamer = None
    try:
        addr = gw.stdout.readline().strip().replace("listening on ", "")
        streamer = subprocess.Popen([args.streamer, "--source", "mt5", "--gateway", addr,
                                     "--symbols", ",".join(names), "--timeframes", "M1",
                                     "--segment-path", segment, "--no-http"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        until = time.time() + 60
        while True:
            try:
                if mt5.initialize(segment=segment) and mt5.status()["feed_state"] == "live":
                    break
            except Exception:
                pass
            if time.time() > until:
                raise SystemExit("the streamer did not go live")
            time.sleep(0.05)
        cpu0, wall0 = cpu_seconds(gw.pid), time.monotonic()
        seen = {n: None for n in names}
        ages = []
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            mt5.wait_for_update(timeout=0.5)
            now_ms = time.time() * 1000.0
            for n in names:
                t = mt5.symbol_info_tick(n)
                if t is not None and t.time_msc != seen[n]:
                    if seen[n] is not None:
                        ages.append(now_ms - t.time_msc)
                    seen[n] = t.time_msc
        cpu = (cpu_seconds(gw.pid) - cpu0) / (time.monotonic() - wall0)
        # Let the terminal finish its ticks (its gaps are random), and the streamer take them.
        def in_bars():
            total = 0
            for n in names:
                r = gateway_call(addr, {"id": 1, "op": "copy_rates_from_pos", "symbol": n,
                                        "timeframe": "M1", "start_pos": 0, "count": 1000})
                total += sum(b["tick_volume"] for b in r["result"]["rates"])
            return total
        until = time.monotonic() + 60
        while in_bars() < max_ticks * len(names) and time.monotonic() < until:
            time.sleep(0.5)
        time.sleep(1.0)
        made_in_bars = in_bars()
        in_segment = 0
        for n in names:
            bars = mt5.copy_rates_from_pos(n, mt5.TIMEFRAME_M1, 0, 1000)
            in_segment += int(bars["tick_volume"].sum()) if bars is not None else 0
    finally:
        if streamer is not None:
            streamer.send_signal(signal.SIGTERM)
            streamer.wait(timeout=30)
        gw.send_signal(signal.SIGINT)  # the stand-in writes its report at a normal exit
        try:
            gw.wait(timeout=30)
        except subprocess.TimeoutExpired:
            gw.kill()
        mt5.shutdown()
        for f in (segment, segment + ".lock"):
            try:
                os.remove(f)
            except OSError:
                pass
    made = sum(json.load(open(report))["made"].values()) if os.path.exists(report) else None
    ages.sort()
    print("symbols %d x %g ticks/s, %g s, stand-in %g us a call, gateway %s %s" % (
        args.symbols, args.rate, args.seconds, args.call_us, os.path.basename(args.gateway_script),
        " ".join(args.gateway_arg)))
    print("tick -> segment: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms (%d ticks seen)" % (
        percentile(ages, 0.5), percentile(ages, 0.9), percentile(ages, 0.99), len(ages)))
    print("ticks made %s, in the terminal's M1 bars %d, in the segment's M1 bars %d" % (
        made, made_in_bars, in_segment))
    print("gateway CPU %.1f %% of one core" % (cpu * 100))


if __name__ == "__main__":
    main()
