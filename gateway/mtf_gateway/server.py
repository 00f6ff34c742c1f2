"""The gateway's server: connections (one thread each, bounded in number, time and line
length), the tick subscription's stream, the command line and the backends it starts."""

import argparse
import hmac
import ipaddress
import json
import logging
import os
import socket
import socketserver
import sys
import threading
import time

from .common import MAX_COUNT, GatewayError, bad_request, log
from .exports import CsvBackend
from .protocol import (
    AUTH_SECONDS,
    EVICT_IDLE_SECONDS,
    HEARTBEAT_SECONDS,
    LINE_SECONDS,
    MAX_LINE,
    PROTOCOL,
    WAKE_SECONDS,
    handle_request,
    reject_constant,
    require,
)
from .terminal import TerminalBackend


class Handler(socketserver.StreamRequestHandler):
    """One client connection."""

    server: "Gateway"

    def setup(self):
        super().setup()
        # A tick goes out the moment it is written: no Nagle delay behind the previous one.
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.peer = "%s:%d" % self.client_address[:2]
        self.pending = b""
        self.authenticated = self.server.token is None
        self.streaming = False
        self.evicted = False  # set by the server when another client needs this slot
        self.connected_at = time.monotonic()

    def send(self, obj):
        self.send_all([obj])

    def send_all(self, objs):
        """Writes lines in one write: a batch of ticks leaves as soon as it is had, together."""
        self.wfile.write(b"".join(json.dumps(o, separators=(",", ":"), allow_nan=False).encode() + b"\n" for o in objs))
        self.wfile.flush()

    def read_line(self):
        """One request line, or b"" at the end. Waits up to the idle timeout for its first byte,
        then LINE_SECONDS for the whole line from that first byte, whitespace included, however
        slowly its bytes come (a drip of spaces no longer restarts the clock); without the token
        yet, everything must arrive within AUTH_SECONDS of connecting. Raises socket.timeout
        past any of them, and ValueError for a line over MAX_LINE bytes."""
        deadline = time.monotonic() + LINE_SECONDS if self.pending else None
        idle_until = time.monotonic() + self.server.idle_timeout
        while b"\n" not in self.pending:
            if len(self.pending) > MAX_LINE:
                raise ValueError("line too long")
            if self.evicted:
                raise socket.timeout("evicted")
            now = time.monotonic()
            timeout = idle_until - now if deadline is None else deadline - now
            if not self.authenticated:
                timeout = min(timeout, self.connected_at + AUTH_SECONDS - now)
            if timeout <= 0:
                raise socket.timeout("request line not complete in time")
            # Waits in slices: on Windows, shutdown() from another thread does not wake a
            # blocked recv (Linux's does), so an evicted connection notices its flag here.
            self.connection.settimeout(min(timeout, WAKE_SECONDS))
            try:
                chunk = self.connection.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                return b""
            if deadline is None:
                deadline = time.monotonic() + LINE_SECONDS
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        if len(line) > MAX_LINE:
            raise ValueError("line too long")
        return line + b"\n"

    def handle(self):
        server = self.server
        if not server.slots.acquire(blocking=False):
            # Every slot is taken: the connection idle the longest gives way, so that idle
            # sockets cannot lock everyone out.
            if not (server.evict_idlest() and server.slots.acquire(timeout=2)):
                log.info("client %s refused: %d clients already", self.peer, server.max_clients)
                self.send({"id": None, "ok": False, "error": GatewayError("BUSY", "too many clients").to_json()})
                return
        server.touch(self)
        served = 0
        try:
            log.info("client %s connected", self.peer)
            while True:
                try:
                    line = self.read_line()
                except ValueError:
                    self.send({"id": None, "ok": False, "error": GatewayError("LINE_TOO_LONG", "request lines are limited to %d bytes" % MAX_LINE).to_json()})
                    break
                except (socket.timeout, OSError):
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                # Only a request counts as activity: bytes that make none do not keep a
                # connection from being the idlest.
                server.touch(self)
                served += 1
                req_id = None
                try:
                    try:
                        # NaN and Infinity are not JSON (Python's parser takes them by default).
                        req = json.loads(line, parse_constant=reject_constant)
                    except ValueError as e:
                        raise GatewayError("BAD_JSON", "not JSON: %s" % e) from None
                    if not isinstance(req, dict):
                        raise GatewayError("BAD_JSON", "a request must be a JSON object")
                    rid = req.get("id")
                    if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (int, str))):
                        raise bad_request("id must be an integer or a string")
                    req_id = rid
                    if not self.authenticated:
                        given = req.get("token")
                        if not (isinstance(given, str) and hmac.compare_digest(given.encode(), server.token.encode())):
                            self.send({"id": req_id, "ok": False, "error": GatewayError("UNAUTHORIZED", "this gateway needs its token (--token) in the request").to_json()})
                            log.warning("client %s refused: no valid token", self.peer)
                            break
                        self.authenticated = True
                    if req.get("op") == "subscribe_ticks":
                        self.streaming = True
                        self.stream(req)
                        return
                    result = handle_request(server.backend, req, server.limits)
                    self.send({"id": req_id, "ok": True, "result": result})
                except GatewayError as e:
                    self.send({"id": req_id, "ok": False, "error": e.to_json()})
                except (BrokenPipeError, ConnectionError):
                    break
                except Exception as e:  # a bug: answer it, log it, keep serving
                    log.exception("request from %s failed", self.peer)
                    try:
                        self.send({"id": req_id, "ok": False, "error": GatewayError("INTERNAL", "%s: %s" % (type(e).__name__, e)).to_json()})
                    except (OSError, ValueError):
                        break
        finally:
            server.forget(self)
            server.slots.release()
            log.info("client %s disconnected after %d request(s)", self.peer, served)

    def stream(self, req):
        symbols = require(req, "symbols", list)
        if not symbols or not all(isinstance(s, str) and s for s in symbols):
            raise bad_request("symbols must be a non-empty list of strings")
        since = req.get("since_msc")
        if since is not None:
            if not (isinstance(since, dict) and len(since) <= len(symbols) and all(
                    k in symbols and isinstance(v, int) and not isinstance(v, bool) and v >= 0
                    for k, v in since.items())):
                raise bad_request("since_msc must map subscribed symbols to a time in ms")
        ticks = self.server.backend.tick_stream(symbols, since)
        self.send({"id": req.get("id"), "ok": True, "result": {"subscribed": symbols}})
        log.info("client %s subscribed to %s", self.peer, ", ".join(symbols))
        last_sent = time.monotonic()
        try:
            while not self.server.stopping:
                batch = ticks.poll()
                if batch is None:
                    self.send({"event": "end", "reason": "replay finished"})
                    return
                if batch:
                    self.send_all([{"event": "tick", "symbol": s, "tick": t} for s, t in batch])
                if batch:
                    last_sent = time.monotonic()
                elif time.monotonic() - last_sent >= HEARTBEAT_SECONDS:
                    self.send({"event": "heartbeat", "time_ms": int(time.time() * 1000)})
                    last_sent = time.monotonic()
        except (BrokenPipeError, ConnectionError, socket.timeout, OSError):
            return


class Gateway(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, backend, max_clients=8, idle_timeout=60.0, token=None):
        super().__init__(address, Handler)
        self.backend = backend
        self.max_clients = max_clients
        self.slots = threading.BoundedSemaphore(max_clients)
        self.idle_timeout = idle_timeout
        self.token = token
        self.stopping = False
        self.active = {}  # handler -> monotonic time of its last byte received
        self.active_lock = threading.Lock()
        self.limits = {"max_line_bytes": MAX_LINE, "max_count": MAX_COUNT, "max_clients": max_clients,
                       "idle_timeout_seconds": idle_timeout, "line_timeout_seconds": LINE_SECONDS,
                       "heartbeat_seconds": HEARTBEAT_SECONDS}

    def touch(self, handler):
        with self.active_lock:
            self.active[handler] = time.monotonic()

    def forget(self, handler):
        with self.active_lock:
            self.active.pop(handler, None)

    def evict_idlest(self):
        """Closes a connection that has not yet presented the token (the oldest first) or, if
        none, the request connection idle the longest, if idle for EVICT_IDLE_SECONDS; returns
        whether one was closed. Streams are never evicted: they are busy."""
        now = time.monotonic()
        with self.active_lock:
            strangers = [(h.connected_at, h) for h in self.active if not h.authenticated]
            idle = [(t, h) for h, t in self.active.items() if not h.streaming and now - t >= EVICT_IDLE_SECONDS]
            if not (strangers or idle):
                return False
            _, victim = min(strangers or idle, key=lambda th: th[0])
            self.active.pop(victim, None)
            victim.evicted = True
        log.info("client %s closed: idle while another client waited", victim.peer)
        try:
            victim.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return True

    def shutdown(self):
        self.stopping = True
        super().shutdown()


def is_loopback(host):
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_bind(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError("expected HOST:PORT, got %r" % text)
    return host.strip("[]"), int(port)


def parse_offset(text):
    t = text.strip()
    if t[:1] in "+-" and ":" in t:
        sign = -1 if t[0] == "-" else 1
        h, m = t[1:].split(":")
        return sign * (int(h) * 3600 + int(m) * 60)
    return int(t)


def parse_speed(text):
    if text.lower() == "max":
        return None
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError("speed must be positive or max")
    return v


def make_backend(args):
    if args.backend == "csv":
        if not args.data:
            raise SystemExit("mt5_gateway: --data FOLDER is required with --backend csv")
        if not os.path.isdir(args.data):
            raise SystemExit("mt5_gateway: --data %s: %s" % (args.data, "not a folder" if os.path.exists(args.data) else "no such folder"))
        backend = CsvBackend(args.data, speed=args.speed, server_offset=args.server_offset)
        if not backend.symbols():
            log.warning("--data %s holds no MT5 export (SYMBOL_TF_FROM_TO.csv bars or SYMBOL_FROM_TO.csv ticks): serving no symbol", args.data)
        return backend
    init = {}
    for key in ("path", "login", "password", "server"):
        v = getattr(args, "mt5_" + key)
        if v is not None:
            init[key] = v
    if args.backend == "metatrader5":
        try:
            import MetaTrader5 as mt5  # Windows, or Python under Wine
        except ImportError:
            raise SystemExit("mt5_gateway: the MetaTrader5 package is not installed (pip install MetaTrader5; Windows or Wine only)") from None
        return TerminalBackend(mt5, "metatrader5", args.server_offset, init, polling(args))
    try:
        from mt5linux import MetaTrader5  # the RPyC client
    except ImportError:
        raise SystemExit("mt5_gateway: the mt5linux package is not installed (pip install mt5linux)") from None
    return TerminalBackend(MetaTrader5(host=args.mt5linux_host, port=args.mt5linux_port), "mt5linux", args.server_offset, init, polling(args))


def polling(args):
    """The tick polling's bounds from the command line, checked."""
    lo, hi, share = args.poll_min_ms, args.poll_max_ms, args.poll_cpu_share
    if not (0 < lo <= hi <= 10000) or not (0 < share <= 1):
        raise SystemExit("mt5_gateway: expected 0 < --poll-min-ms <= --poll-max-ms <= 10000 and 0 < --poll-cpu-share <= 1")
    return (lo / 1000.0, hi / 1000.0, share)


def main(argv=None):
    p = argparse.ArgumentParser(prog="mt5_gateway", description="MT5 gateway: protocol v1 over NDJSON/TCP (docs/MT5_GATEWAY.md)")
    p.add_argument("--backend", choices=("metatrader5", "mt5linux", "csv"), default="metatrader5",
                   help="where the data comes from (default: metatrader5)")
    p.add_argument("--bind", type=parse_bind, default="127.0.0.1:18812",
                   help="HOST:PORT to listen on; port 0 picks a free one (default: 127.0.0.1:18812)")
    p.add_argument("--data", help="folder of MT5 export files (csv backend; required there)")
    p.add_argument("--speed", type=parse_speed, default=None,
                   help="csv tick replay speed: N x real time, or max (default: max)")
    p.add_argument("--server-offset", type=parse_offset, default=None,
                   help="broker server time minus UTC, +HH:MM or seconds (default: estimated from a live tick; none for csv)")
    p.add_argument("--max-clients", type=int, default=8, help="clients served at once (default: 8)")
    p.add_argument("--idle-timeout", type=float, default=60.0,
                   help="seconds before an idle request connection is closed (default: 60)")
    p.add_argument("--token", default=None,
                   help="shared secret clients must send (or env MT5_GATEWAY_TOKEN); required for a non-loopback --bind (default: none)")
    p.add_argument("--allow-remote-without-token", action="store_true",
                   help="serve a non-loopback --bind without a token, on a network you trust")
    p.add_argument("--poll-min-ms", type=float, default=0.5,
                   help="terminal backends: how often a symbol that ticked in the last second is looked at (default: 0.5)")
    p.add_argument("--poll-max-ms", type=float, default=50.0,
                   help="terminal backends: how often a symbol quiet for 10 s is looked at, and the widest interval (default: 50)")
    p.add_argument("--poll-cpu-share", type=float, default=0.25,
                   help="terminal backends: the share of one core the gateway may use before its intervals widen (default: 0.25)")
    p.add_argument("--mt5-path", help="terminal64.exe to start (metatrader5/mt5linux; default: the running terminal)")
    p.add_argument("--mt5-login", type=int, help="account to log in (default: the terminal's)")
    p.add_argument("--mt5-password", help="its password")
    p.add_argument("--mt5-server", help="its trade server")
    p.add_argument("--mt5linux-host", default="127.0.0.1", help="mt5linux RPyC host (default: 127.0.0.1)")
    p.add_argument("--mt5linux-port", type=int, default=18812,
                   help="mt5linux RPyC port (default: 18812, so move --bind then)")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default: INFO)")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s mt5_gateway %(levelname)s %(message)s", stream=sys.stderr)
    if args.token is None:
        args.token = os.environ.get("MT5_GATEWAY_TOKEN")
    if args.token == "":
        args.token = None
    if not is_loopback(args.bind[0]) and args.token is None and not args.allow_remote_without_token:
        raise SystemExit("mt5_gateway: --bind %s is reachable from other hosts and no token is set: anyone there could "
                         "use your terminal. Set --token (or MT5_GATEWAY_TOKEN) and give the same to the streamer and "
                         "monitor, or pass --allow-remote-without-token on a network you trust" % args.bind[0])
    try:
        backend = make_backend(args)
    except GatewayError as e:
        raise SystemExit("mt5_gateway: cannot start the %s backend: %s" % (args.backend, e.message)) from None
    server = Gateway(args.bind, backend, max_clients=args.max_clients, idle_timeout=args.idle_timeout, token=args.token)
    host, port = server.socket.getsockname()[:2]
    # The first stdout line says where we listen (tests start us on port 0 and read it).
    print("listening on %s:%d" % (host, port), flush=True)
    log.info("%s backend, protocol %d, listening on %s:%d", backend.name, PROTOCOL, host, port)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()

