"""The gateway's protocol (docs/MT5_GATEWAY.md): its version and limits, and one request
line checked and answered by a backend. The connections are server.py's."""

import time

from .common import MAX_COUNT, MAX_TICK_PAGE, TIMEFRAMES, GatewayError, bad_request

PROTOCOL = 1
GATEWAY = "mt5_gateway.py 1.0"
MAX_LINE = 65536
HEARTBEAT_SECONDS = 1.0
LINE_SECONDS = 10.0  # a request line must be complete this long after its first byte
EVICT_IDLE_SECONDS = 2.0  # when every slot is taken, a connection idle this long gives way
AUTH_SECONDS = 5.0  # with a token set, a connection must present it this soon after connecting
WAKE_SECONDS = 0.25  # a waiting read looks at its connection's eviction flag this often

# --------------------------------------------------------------------------- protocol

def require(req, name, kind):
    v = req.get(name)
    ok = isinstance(v, kind) and not isinstance(v, bool) if kind is int else isinstance(v, kind)
    if not ok:
        raise bad_request("%r is required and must be %s" % (name, {int: "an integer", str: "a string", list: "a list"}[kind]))
    return v


def timeframe(req):
    tf = require(req, "timeframe", str).upper()
    if tf not in TIMEFRAMES:
        raise GatewayError("UNKNOWN_TIMEFRAME", "unknown timeframe %r; expected one of %s" % (req["timeframe"], ", ".join(TIMEFRAMES)))
    return tf


def symbol(req):
    s = require(req, "symbol", str)
    if not s or len(s) > 64:
        raise bad_request("symbol must be 1 to 64 characters")
    return s


def handle_request(backend, req, limits):
    """The result of one request (a dict), or raises GatewayError. subscribe_ticks is handled
    by the connection."""
    op = req.get("op")
    if op == "hello":
        proto = req.get("protocol", PROTOCOL)
        if not isinstance(proto, int) or isinstance(proto, bool) or proto < 1:
            raise GatewayError("PROTOCOL_VERSION", "this gateway speaks protocol %d" % PROTOCOL)
        info = backend.hello()
        info.update({"protocol": PROTOCOL, "gateway": GATEWAY, "backend": backend.name, "limits": limits})
        return info
    if op == "ping":
        return {"pong": True, "time_ms": int(time.time() * 1000)}
    if op == "copy_rates_from_pos":
        s, tf = symbol(req), timeframe(req)
        start, count = require(req, "start_pos", int), require(req, "count", int)
        if start < 0:
            raise bad_request("start_pos must be at least 0")
        if not 1 <= count <= MAX_COUNT:
            raise bad_request("count must be from 1 to %d" % MAX_COUNT)
        return {"rates": backend.copy_rates_from_pos(s, tf, start, count)}
    if op == "copy_rates_range":
        s, tf = symbol(req), timeframe(req)
        frm, to = require(req, "from", int), require(req, "to", int)
        if frm > to:
            raise bad_request("from must not be after to")
        return {"rates": backend.copy_rates_range(s, tf, frm, to)}
    if op == "copy_ticks_range":
        # Paged and bounded: at most `count` ticks a call; the client's next page starts at
        # the last tick's millisecond, skipping the ticks of it it has (docs/MT5_GATEWAY.md).
        s = symbol(req)
        frm, to = require(req, "from_ms", int), require(req, "to_ms", int)
        skip, count = require(req, "skip", int), require(req, "count", int)
        if frm < 0 or frm > to:
            raise bad_request("from_ms must be at least 0 and not after to_ms")
        if not 0 <= skip <= MAX_TICK_PAGE:
            raise bad_request("skip must be from 0 to %d" % MAX_TICK_PAGE)
        if not 1 <= count <= MAX_TICK_PAGE:
            raise bad_request("count must be from 1 to %d" % MAX_TICK_PAGE)
        return {"ticks": backend.copy_ticks_range(s, frm, skip, to, count)}
    if op == "symbol_info_tick":
        return {"tick": backend.symbol_info_tick(symbol(req))}
    if op == "symbol_info":
        return {"info": backend.symbol_info(symbol(req))}
    raise GatewayError("UNKNOWN_OP", "unknown op %r" % (op,))


def reject_constant(name):
    raise ValueError("%s is not JSON" % name)
