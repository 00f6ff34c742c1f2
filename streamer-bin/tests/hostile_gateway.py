#!/usr/bin/env python3
"""A hostile MT5 gateway for the streamer's tests: speaks protocol v1 (docs/MT5_GATEWAY.md)
over NDJSON/TCP, streams EURUSD ticks stamped with this host's clock at 50 a second, and does
the one wrong thing its --mode names:

  bad_tick    every 10th tick has volume -5, every 15th a `time` 100,000 s off its time_msc
  nan_info    symbol_info answers with a NaN (not JSON)
  huge_info   symbol_info answers with a line over 64 KiB
  surrogate   symbol_info answers with a description that is not Unicode ("\\udcff")
  slow_info   symbol_info answers after 30 s
  future_tick every 25th tick is stamped 5 minutes ahead, at a forged price (1.12)
  crossed     every 3rd tick has its bid above its ask
  bad_info    symbol_info answers with a negative point and contract size

Standard library only. Prints "listening on HOST:PORT" first, as the real gateway does.

    python3 hostile_gateway.py --mode bad_tick
"""

import argparse
import json
import socketserver
import threading
import time

INFO = {"name": "EURUSD", "digits": 5, "point": 0.00001, "trade_contract_size": 100000.0,
        "volume_min": 0.01, "volume_max": 100.0, "volume_step": 0.01, "spread_float": True,
        "description": "Euro vs US Dollar", "currency_base": "EUR", "currency_profit": "USD"}


def now_ms():
    return int(time.time() * 1000)


def tick(k):
    t = now_ms()
    bid = round(1.1 + (k % 7) * 0.00001, 5)
    return {"time": t // 1000, "bid": bid, "ask": round(bid + 0.0002, 5), "last": 0.0, "volume": 0,
            "time_msc": t, "flags": 6, "volume_real": 0.0}


class Handler(socketserver.StreamRequestHandler):
    def send(self, text):
        self.wfile.write(text.encode("utf-8", "surrogatepass") + b"\n")
        self.wfile.flush()

    def answer(self, rid, result):
        self.send(json.dumps({"id": rid, "ok": True, "result": result}))

    def handle(self):
        mode = self.server.mode
        for line in self.rfile:
            req = json.loads(line)
            rid, op = req.get("id"), req.get("op")
            if op == "hello":
                self.answer(rid, {"protocol": 1, "gateway": "hostile", "backend": "metatrader5",
                                  "terminal": None, "account": None, "server_time_offset_seconds": 0,
                                  "symbols": ["EURUSD"]})
            elif op == "symbol_info_tick":
                self.answer(rid, {"tick": tick(0)})
            elif op in ("copy_rates_from_pos", "copy_rates_range"):
                self.answer(rid, {"rates": []})
            elif op == "symbol_info":
                self.server.info_calls += 1
                if mode == "nan_info":
                    self.send('{"id": %d, "ok": true, "result": {"info": {"name": "EURUSD", "point": NaN}}}' % rid)
                elif mode == "huge_info":
                    self.answer(rid, {"info": dict(INFO, description="x" * 70000)})
                elif mode == "surrogate":
                    self.answer(rid, {"info": dict(INFO, description="Euro \udcff")})
                elif mode == "bad_info":
                    self.answer(rid, {"info": dict(INFO, point=-0.00001, trade_contract_size=-100000.0)})
                elif mode == "slow_info":
                    time.sleep(30)
                    self.answer(rid, {"info": INFO})
                else:
                    self.answer(rid, {"info": INFO})
            elif op == "subscribe_ticks":
                self.answer(rid, {"subscribed": req["symbols"]})
                k = 0
                while True:
                    k += 1
                    t = tick(k)
                    if mode == "bad_tick" and k % 10 == 0:
                        t["volume"] = -5
                    elif mode == "bad_tick" and k % 15 == 0:
                        t["time"] += 100000
                    elif mode == "future_tick" and k % 25 == 0:
                        t["time_msc"] += 300000
                        t["time"] = t["time_msc"] // 1000
                        t["bid"], t["ask"] = 1.12, 1.1202
                    elif mode == "crossed" and k % 3 == 0:
                        t["bid"], t["ask"] = t["ask"], t["bid"]
                    self.send(json.dumps({"event": "tick", "symbol": "EURUSD", "tick": t}))
                    time.sleep(0.02)
            else:
                self.send(json.dumps({"id": rid, "ok": False, "error": {"code": "UNKNOWN_OP", "message": op}}))


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", required=True,
                   choices=("bad_tick", "nan_info", "huge_info", "surrogate", "slow_info", "future_tick",
                            "crossed", "bad_info"))
    args = p.parse_args()
    server = Server(("127.0.0.1", 0), Handler)
    server.mode, server.info_calls = args.mode, 0
    print("listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
