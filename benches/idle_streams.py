#!/usr/bin/env python3
"""Memory of 1,000 SSE streams with ticks (`ticks=1`) whose clients never read: the streamer
(with its built-in API) on 2 synthetic symbols at 200 ticks/s, 1,000 connections that ask
for candles and ticks and never read (a 4 KiB receive buffer), the process's peak RSS sampled
until it stops growing for 10 s (issue 40, item 13).

    cargo build --bin mtf-streamer && python3 benches/idle_streams.py [debug|release]
"""

import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
bin_ = os.path.join(ROOT, "target", sys.argv[1] if len(sys.argv) > 1 else "debug", "mtf-streamer")
seg = "/dev/shm/mtf-m13-%d" % os.getpid()
port = 18000 + os.getpid() % 1000
p = subprocess.Popen([bin_, "--segment-path", seg, "--http", "127.0.0.1:%d" % port, "--tick-rate", "200",
                      "--buffer", "M1=1000", "--buffer", "M5=1000"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
try:
    while b"running after" not in p.stdout.readline():
        pass
    def rss():
        for line in open("/proc/%d/status" % p.pid):
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    before = rss()
    req = (b"GET /streamer/stream?symbols=BTCUSDc,XAUUSDc&timeframes=M1&ticks=1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    socks = []
    for _ in range(1000):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(req)
        socks.append(s)
    peak, grew = rss(), time.monotonic()
    end = time.monotonic() + 60
    while time.monotonic() < end and time.monotonic() - grew < 10:
        time.sleep(0.2)
        r = rss()
        if r > peak:
            peak, grew = r, time.monotonic()
    print("streamer RSS before %d kB, peak with 1,000 ticks=1 streams that never read %d kB (%d kB a stream over the start)" % (before, peak, (peak - before) // 1000))
    for s in socks:
        s.close()
finally:
    p.terminate()
    p.wait(10)
    for f in (seg, seg + ".lock", seg + ".wake"):
        try:
            os.remove(f)
        except OSError:
            pass
