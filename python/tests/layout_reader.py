#!/usr/bin/env python3
"""The reference reader of the segment, in pure Python (standard library only, 3.9+).

Written from docs/LAYOUT.md alone, as a check that the document is complete; the tests compare
the `mtf_candles` package (which reads through the Rust library) with it. Bots use the package:
this file is not installed.

    from layout_reader import Segment
    seg = Segment.open("mtf-candles")            # /dev/shm/mtf-candles, read-only
    for c in seg.read_last("BTCUSDc", "M1", 50):  # oldest first; the last may be forming
        print(c["time"], c["close"], c["complete"])
    print(seg.status()["liveness"])              # alive, stalled, stopped, gone or replaced

    python3 python/tests/layout_reader.py BTCUSDc M1 5        # prints JSON

Memory ordering: Python cannot issue fences. On x86-64 loads are not reordered with each
other, so the seqlock check below is sound; on ARM use the Rust library or the HTTP API
(`mtf-shim`) when every read must be guaranteed consistent.
"""

import argparse
import datetime
import json
import math
import mmap
import os
import stat
import struct
import time

MAGIC = int.from_bytes(b"MTFCANDL", "little")
VERSION = 2
HEADER_SIZE, SYMBOL_ENTRY, DIR_ENTRY, RING_CONTROL, RECORD, SLOT, COUNTERS = 512, 64, 32, 64, 64, 80, 32
TIMEFRAMES = {1: "M1", 2: "M2", 3: "M3", 4: "M4", 5: "M5", 6: "M6", 10: "M10", 12: "M12", 15: "M15", 20: "M20",
              30: "M30", 16385: "H1", 16386: "H2", 16387: "H3", 16388: "H4", 16390: "H6", 16392: "H8",
              16396: "H12", 16408: "D1", 32769: "W1", 49153: "MN1"}
WRITER_STATES = {0: "initializing", 1: "running", 2: "stopped", 3: "replaced"}
FEED_STATES = {0: "starting", 1: "backfilling", 2: "live", 3: "finished", 4: "disconnected", 5: "stopped"}
FEED_KINDS = {0: "unrecorded", 1: "synthetic", 2: "csv", 3: "mt5"}
COUNTER_NAMES = ["ticks_processed", "bars_closed", "rejected_bad_price", "rejected_out_of_order",
                 "rejected_duplicate_bar", "rejected_backwards_bar", "gaps_detected", "bad_rows",
                 "bars_backfilled", "corrections", "reconnects", "rejected_future_time"]
STALL_AFTER_S = 1.0  # heartbeat age after which a writer counts as stalled
LATEST_TIME = 4102444800  # 2100-01-01: a later candle time is a damaged record
F_OFD_GETLK = 36  # Linux; fcntl has no name for it before Python 3.12 on every platform
U64 = struct.Struct("<Q")
MAX_ATTEMPTS = 10000
SPIN_TRIES = 100  # failed tries in a row after which a reader yields the CPU (LAYOUT.md, Retries)


TERMINAL_SIZE = 512
INFO_SIZE = 2432
TICK_SLOT = 64
# MT5's SymbolInfo fields in its order, with their kinds: i integer, b boolean, d double, s string.
SYMBOL_INFO_FIELDS = [(n, "b" if n in ("custom", "select", "visible", "spread_float", "margin_hedged_use_leg") else "i")
                      for n in ("custom chart_mode select visible session_deals session_buy_orders session_sell_orders "
                                "volume volumehigh volumelow time digits spread spread_float ticks_bookdepth "
                                "trade_calc_mode trade_mode start_time expiration_time trade_stops_level "
                                "trade_freeze_level trade_exemode swap_mode swap_rollover3days margin_hedged_use_leg "
                                "expiration_mode filling_mode order_mode order_gtc_mode option_mode option_right").split()]
SYMBOL_INFO_FIELDS += [(n, "d") for n in (
    "bid bidhigh bidlow ask askhigh asklow last lasthigh lastlow volume_real volumehigh_real volumelow_real "
    "option_strike point trade_tick_value trade_tick_value_profit trade_tick_value_loss trade_tick_size "
    "trade_contract_size trade_accrued_interest trade_face_value trade_liquidity_rate volume_min volume_max "
    "volume_step volume_limit swap_long swap_short margin_initial margin_maintenance session_volume "
    "session_turnover session_interest session_buy_orders_volume session_sell_orders_volume session_open "
    "session_close session_aw session_price_settlement session_price_limit_min session_price_limit_max "
    "margin_hedged price_change price_volatility price_theoretical price_greeks_delta price_greeks_theta "
    "price_greeks_gamma price_greeks_vega price_greeks_rho price_greeks_omega price_sensitivity").split()]
SYMBOL_INFO_FIELDS += [(n, "s") for n in (
    "basis category currency_base currency_profit currency_margin bank description exchange formula isin "
    "name page path").split()]
assert len(SYMBOL_INFO_FIELDS) == 96


class SegmentError(Exception):
    """The file is not a segment this reader can read; the message says what and why."""


class DamagedRecord(SegmentError):
    """A stored candle breaks a rule the writer guarantees (a damaged or forged segment)."""


class Busy(Exception):
    """A ring stayed mid-write for every attempt (writer overloaded, or killed mid-write)."""


# The position word of a slot a restarting writer dropped as torn (LAYOUT.md, "Torn records").
DROPPED = (1 << 64) - 1

# Bar lengths of the timeframes whose bars start at multiples of a fixed period.
_PERIODS = {"M1": 60, "M2": 120, "M3": 180, "M4": 240, "M5": 300, "M6": 360, "M10": 600, "M12": 720, "M15": 900,
            "M20": 1200, "M30": 1800, "H1": 3600, "H2": 7200, "H3": 10800, "H4": 14400, "H6": 21600,
            "H8": 28800, "H12": 43200, "D1": 86400}


def _aligned(tf, t):
    """Whether `t` opens a bar of `tf` (LAYOUT.md, "Alignment")."""
    tf = tf.upper()
    if tf in _PERIODS:
        return t % _PERIODS[tf] == 0
    if tf == "W1":
        return (t - 3 * 86400) % 604800 == 0  # Sunday 00:00; 1970-01-04 was a Sunday
    day = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    return t % 86400 == 0 and day.day == 1  # MN1: the 1st at 00:00


def fnv1a(words):
    h = 0xCBF29CE484222325
    for w in words:
        for b in U64.pack(w):
            h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def align64(x):
    return (x + 63) // 64 * 64


class Segment:
    """A read-only view of a segment. Reads take no locks and make no system calls."""

    def __init__(self, path):
        self.path = path
        # O_NONBLOCK: a FIFO at the name must not hang us; O_NOFOLLOW: nor a symlink lead us
        # elsewhere. Then judge what was opened (LAYOUT.md, "Attaching").
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        self.file = os.fdopen(fd, "rb")
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            self.file.close()
            raise SegmentError("refusing to read %s: it is not a regular file" % path)
        if st.st_mode & 0o022:
            self.file.close()
            raise SegmentError("refusing to read %s: it is writable by its group or by others (mode %04o)" % (path, st.st_mode & 0o7777))
        self.owner = st.st_uid
        size = st.st_size
        if size < HEADER_SIZE:
            raise SegmentError("%s is truncated: %d bytes, expected at least %d" % (path, size, HEADER_SIZE))
        self.mm = mmap.mmap(self.file.fileno(), size, access=mmap.ACCESS_READ)
        w = self.word
        version = w(8)  # read first: the writer stores it last
        if w(0) != MAGIC:
            raise SegmentError("%s is not a candle segment (magic %r)" % (path, self.mm[0:8]))
        if version == 0:
            raise SegmentError("%s is still being initialised" % path)
        if version != VERSION:
            raise SegmentError("%s has layout version %d, this reader reads %d" % (path, version, VERSION))
        total = w(24)
        if size < total:
            raise SegmentError("%s is truncated: %d bytes, expected %d" % (path, size, total))
        nsym, nring = w(40), w(48)
        if w(32) != HEADER_SIZE or not (1 <= nring <= 16384) or nsym > 1024:
            raise SegmentError("%s has an impossible header" % path)
        sym_off, dir_off = HEADER_SIZE, HEADER_SIZE + SYMBOL_ENTRY * nsym
        if w(56) != sym_off or w(64) != dir_off or dir_off + DIR_ENTRY * nring > total:
            raise SegmentError("%s has a bad symbol table or directory offset" % path)
        self.symbols = []
        for i in range(nsym):
            raw = self.mm[sym_off + i * SYMBOL_ENTRY: sym_off + i * SYMBOL_ENTRY + 32]
            name = raw.split(b"\0", 1)[0]
            try:
                text = name.decode("utf-8")
            except UnicodeDecodeError:
                text = ""
            if not text or len(name) > 31 or b"\0" not in raw or not all(ch.isalnum() and ch.isascii() or ch in "._#-" for ch in text):
                raise SegmentError("%s: symbol %d has an invalid name %r" % (path, i, name[:32]))
            self.symbols.append(text)
        self.rings = []  # (symbol, tf name, capacity, offset)
        hash_words = [VERSION, HEADER_SIZE, SYMBOL_ENTRY, DIR_ENTRY, RING_CONTROL, RECORD, SLOT, COUNTERS, nsym, nring, total]
        for i in range(nsym):
            at = sym_off + i * SYMBOL_ENTRY
            hash_words += [w(at + 8 * k) for k in range(4)]
        offset = align64(dir_off + DIR_ENTRY * nring)
        for i in range(nring):
            at = dir_off + i * DIR_ENTRY
            s, tf, cap, stored = w(at), w(at + 8), w(at + 16), w(at + 24)
            if s >= nsym or tf not in TIMEFRAMES or not 1 <= cap <= 1 << 20:
                raise SegmentError("%s: directory entry %d is invalid" % (path, i))
            if stored != offset:
                raise SegmentError("%s: ring %d offset %d, layout says %d" % (path, i, stored, offset))
            hash_words += [s, tf, cap, offset]
            self.rings.append((self.symbols[s], TIMEFRAMES[tf], cap, offset))
            offset += align64(128 + SLOT * cap)
        # Version 2: the terminal record, a symbol information record per symbol, a tick ring
        # per symbol (LAYOUT.md, "Placement and layout hash").
        depth = w(192)
        if not 1 <= depth <= 1 << 20:
            raise SegmentError("%s: tick depth %d" % (path, depth))
        self.terminal_off = align64(offset)
        self.infos_off = self.terminal_off + TERMINAL_SIZE
        self.ticks_off = self.infos_off + INFO_SIZE * nsym
        self.tick_depth = depth
        end = self.ticks_off + (64 + TICK_SLOT * depth) * nsym
        if (w(200), w(208), w(216)) != (self.terminal_off, self.infos_off, self.ticks_off):
            raise SegmentError("%s: the terminal, symbol or tick offsets differ from the layout" % path)
        if end != total:
            raise SegmentError("%s: the layout ends at %d, the segment at %d" % (path, end, total))
        hash_words += [TERMINAL_SIZE, INFO_SIZE, TICK_SLOT, depth, self.terminal_off, self.infos_off, self.ticks_off]
        if fnv1a(hash_words) != w(16):
            raise SegmentError("%s: layout hash %#x, computed %#x" % (path, w(16), fnv1a(hash_words)))

    @classmethod
    def open(cls, name="mtf-candles"):
        """Opens a segment by name in /dev/shm, or by path if `name` contains a slash."""
        return cls(name if "/" in name else os.path.join("/dev/shm", name))

    def word(self, off):
        return U64.unpack_from(self.mm, off)[0]

    def _record(self, at, forming):
        time_, o, h, low, c, tv, rv, last = struct.unpack_from("<qddddQQQ", self.mm, at)
        spread = last & 0xFFFFFFFF
        spread = spread - (1 << 32) if spread >= 1 << 31 else spread
        flags = last >> 32
        return {"time": time_, "open": o, "high": h, "low": low, "close": c, "volume": tv, "spread": spread,
                "real_volume": rv, "complete": not forming, "repaired": bool(flags & 2)}, bool(flags & 1)

    @staticmethod
    def _defect(r):
        """What is wrong with a record, if it breaks a rule the writer guarantees."""
        prices = (r["open"], r["high"], r["low"], r["close"])
        if not all(math.isfinite(p) and p > 0 for p in prices):
            return "a price that is not finite and positive"
        if r["high"] < max(r["open"], r["close"]) or r["low"] > min(r["open"], r["close"]):
            return "high or low outside open and close"
        if not 0 <= r["time"] <= LATEST_TIME:
            return "a time outside 1970 to 2100"
        return None

    def _ring(self, symbol, tf):
        for s, t, cap, off in self.rings:
            if s == symbol and t == tf.upper():
                return cap, off
        raise KeyError("no ring %s %s" % (symbol, tf))

    def read_last(self, symbol, tf, n):
        """The newest `n` candles, oldest first; the last is the forming one when there is one."""
        cap, base = self._ring(symbol, tf)
        for attempt in range(MAX_ATTEMPTS):
            if attempt >= SPIN_TRIES:
                time.sleep(0)  # yield: the writer may be descheduled inside its write section
            s1 = self.word(base)
            if s1 & 1:
                continue
            head = self.word(base + 8)
            forming, has_forming = self._record(base + 64, True)
            if self.word(base) != s1:
                continue  # only now is head trusted
            k = min(n - 1 if has_forming else n, head, cap)
            out = []
            for p in range(head - k, head):
                slot = base + 128 + (p % cap) * SLOT
                for _ in range(MAX_ATTEMPTS):
                    v1 = self.word(slot)
                    if v1 & 1:
                        continue
                    pos = self.word(slot + 8)
                    rec, _ = self._record(slot + 16, False)
                    if self.word(slot) == v1:
                        break
                else:
                    raise Busy("%s %s slot %d" % (symbol, tf, p % cap))
                if pos == DROPPED:
                    continue  # a torn write a restarting writer dropped: no candle here
                if pos != p:
                    break  # lapped by the writer: start again
                out.append(rec)
            else:
                if has_forming and n > 0:
                    out.append(forming)
                previous = -1
                for r in out:
                    why = self._defect(r)
                    if not why and r["repaired"]:
                        why = "a record torn by a killed writer"
                    if not why and r["time"] <= previous:
                        why = "a time not later than the candle before it"
                    if not why and not _aligned(tf, r["time"]):
                        why = "a time that is not the start of a bar"
                    if why:
                        raise DamagedRecord("%s %s candle at %d: %s" % (symbol, tf, r["time"], why))
                    previous = r["time"]
                return out
        raise Busy("%s %s stayed mid-write" % (symbol, tf))

    def _tick_ring(self, symbol):
        return self.ticks_off + self.symbols.index(symbol) * (64 + TICK_SLOT * self.tick_depth)

    def read_ticks(self, symbol, n):
        """The newest `n` ticks of `symbol`, oldest first, as dicts of MT5's Tick fields
        (LAYOUT.md, "Tick ring": head, copy, then begun; positions the writer overwrote while
        we copied are dropped from the front)."""
        base, depth = self._tick_ring(symbol), self.tick_depth
        for attempt in range(MAX_ATTEMPTS):
            if attempt >= SPIN_TRIES:
                time.sleep(0)
            head = self.word(base + 8)
            begun_hint = self.word(base)  # LAYOUT.md: where intact positions begin, as a hint
            first = max(head - min(n, depth), 0, min(head, begun_hint - depth))
            records = [struct.unpack_from("<qdddQdQQ", self.mm, base + 64 + (p % depth) * TICK_SLOT)
                       for p in range(first, head)]
            begun = self.word(base)
            if begun < head:
                raise DamagedRecord("%s: tick ring counters begun %d < head %d" % (symbol, begun, head))
            if first < begun - depth:
                continue  # the writer lapped the copy: take it again
            out, previous = [], -1
            for time_msc, bid, ask, last, volume, volume_real, flags, _published in records:
                why = None
                if not all(math.isfinite(x) and x >= 0 for x in (bid, ask, last, volume_real)):
                    why = "a price or volume that is not finite and >= 0"
                elif bid == 0 and ask == 0 and last == 0:
                    why = "no price"
                elif bid > ask > 0:
                    why = "a crossed quote (bid above ask)"
                elif flags & ~0x7E:
                    why = "flag bits MT5 does not define"
                elif not 0 <= time_msc <= LATEST_TIME * 1000:
                    why = "a time outside 1970 to 2100"
                elif time_msc < previous:
                    why = "a time before the tick it follows"
                if why:
                    raise DamagedRecord("%s tick at %d ms: %s" % (symbol, time_msc, why))
                previous = time_msc
                out.append({"time": time_msc // 1000, "bid": bid, "ask": ask, "last": last, "volume": volume,
                            "time_msc": time_msc, "flags": flags, "volume_real": volume_real})
            return out
        raise Busy("%s's tick ring kept being lapped" % symbol)

    def _block(self, base, size):
        """A record under its own sequence (LAYOUT.md, "Symbol information record")."""
        for attempt in range(MAX_ATTEMPTS):
            if attempt >= SPIN_TRIES:
                time.sleep(0)
            s1 = self.word(base)
            if s1 & 1:
                continue
            data = bytes(self.mm[base:base + size])
            if self.word(base) == s1:
                return data
        raise Busy("a record stayed mid-write")

    @staticmethod
    def _string(raw, what):
        text, _, rest = raw.partition(b"\0")
        if rest.strip(b"\0") or len(text) >= len(raw):
            raise DamagedRecord("%s is not a NUL-padded string" % what)
        return text.decode("utf-8")

    def symbol_info(self, symbol):
        """MT5's SymbolInfo fields of `symbol` as a dict in MT5's order, as stored, or None."""
        data = self._block(self.infos_off + self.symbols.index(symbol) * INFO_SIZE, INFO_SIZE)
        source = U64.unpack_from(data, 16)[0]
        if source == 0:
            return None
        if source not in (1, 2, 3):
            raise DamagedRecord("%s: symbol information source %d" % (symbol, source))
        out = {}
        for i, (name, kind) in enumerate(SYMBOL_INFO_FIELDS):
            if kind == "s":
                at = 728 + (i - 83) * 128
                out[name] = self._string(data[at:at + 128], name)
                continue
            word = U64.unpack_from(data, 64 + 8 * i)[0]
            if kind == "i":
                out[name] = word - (1 << 64) if word >= 1 << 63 else word
            elif kind == "b":
                if word > 1:
                    raise DamagedRecord("%s: %s is %d, not a boolean" % (symbol, name, word))
                out[name] = bool(word)
            else:
                out[name] = struct.unpack("<d", struct.pack("<Q", word))[0]
                if not math.isfinite(out[name]):
                    raise DamagedRecord("%s: %s is not finite" % (symbol, name))
        return out

    def symbol_info_now(self, symbol):
        """`symbol_info` with the fields that move with every tick taken from the newest tick,
        by LAYOUT.md's rule ("Symbol information record"); None without a record."""
        info = self.symbol_info(symbol)
        if info is None:
            return None
        newest = self.read_ticks(symbol, 1)
        if not newest:
            return info
        t = newest[-1]
        info.update(bid=t["bid"], ask=t["ask"], last=t["last"], volume=t["volume"],
                    volume_real=t["volume_real"], time=t["time_msc"] // 1000)
        if info["spread_float"] and info["point"] > 0 and t["bid"] > 0 and t["ask"] >= t["bid"]:
            # Halves away from zero (Python's round() goes to even), at most 2**31 - 1.
            info["spread"] = min(math.floor((t["ask"] - t["bid"]) / info["point"] + 0.5), 2**31 - 1)
        return info

    def terminal(self):
        """The terminal record as a dict, or None (LAYOUT.md, "Terminal record")."""
        data = self._block(self.terminal_off, TERMINAL_SIZE)
        present, build, connected, login = struct.unpack_from("<QqQq", data, 16)
        if present == 0:
            return None
        return {"name": self._string(data[64:192], "name"), "company": self._string(data[192:320], "company"),
                "build": build, "connected": bool(connected), "server": self._string(data[320:448], "server"),
                "login": login, "confirmed_ns": U64.unpack_from(data, 8)[0]}

    def unknown_to_source(self, symbol):
        """Whether the writer's source said it does not know `symbol` (LAYOUT.md, ring word 24)."""
        return any(self.word(off + 24) & 1 for s, _, _, off in self.rings if s == symbol)

    def _lock_state(self):
        """'held', 'free', or None when the lock file cannot be tested (LAYOUT.md, Liveness)."""
        try:
            fd = os.open(self.path + ".lock", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != self.owner:
                return None
            import fcntl  # Linux: the reference reader's liveness check is written for it
            # struct flock: l_type, l_whence, l_start, l_len, l_pid (0, as OFD requests need).
            req = struct.pack("hhqqi4x", fcntl.F_RDLCK, os.SEEK_SET, 0, 0, 0)
            res = fcntl.fcntl(fd, F_OFD_GETLK, req)
            return "free" if struct.unpack("hhqqi4x", res)[0] == fcntl.F_UNLCK else "held"
        except OSError:
            return None
        finally:
            os.close(fd)

    def _writer_process(self):
        """'running', 'dead', or None when this process cannot tell (LAYOUT.md, Liveness)."""
        w = self.word
        pid, pidns, ticks = w(88), w(144), w(152)
        try:
            if not (pid and pidns and ticks) or os.stat("/proc/self/ns/pid").st_ino != pidns:
                return None
            with open("/proc/%d/stat" % pid, "rb") as f:
                text = f.read().decode("ascii", "replace")
        except FileNotFoundError:
            return "dead"
        except OSError:
            return None
        fields = text[text.rfind(")") + 1:].split()
        if len(fields) < 20:
            return None
        if fields[0] in ("Z", "X") or int(fields[19]) != ticks:
            return "dead"
        return "running"

    def liveness(self):
        """alive, stalled, stopped, gone or replaced, by the rules of LAYOUT.md, in their order."""
        w = self.word
        state = w(112)
        if state == 3:
            return "replaced"
        if state == 2:
            return "stopped"
        boot = w(184)  # heartbeat_boot_ns: judge by the boot-time clock where the writer keeps it
        now_boot = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        if boot and boot <= now_boot + 1_000_000_000:
            stale = (now_boot - boot) / 1e9 > STALL_AFTER_S
        else:
            # A heartbeat from the future is not trusted (a clock set ahead).
            age = time.time() - w(104) / 1e9
            stale = age > STALL_AFTER_S or age < -STALL_AFTER_S
        lock = self._lock_state()
        if lock == "free":
            return "gone"
        if lock == "held" and not stale:
            return "alive"
        if self._writer_process() == "dead":
            return "gone"
        return "stalled" if stale else "alive"

    def status(self):
        w = self.word
        heartbeat = w(104)
        return {
            "liveness": self.liveness(),
            "generation": w(80), "writer_pid": w(88), "writer_start_ns": w(96), "heartbeat_ns": heartbeat,
            "heartbeat_age_s": max(0.0, time.time() - heartbeat / 1e9),
            "writer_state": WRITER_STATES.get(w(112), "unknown"),
            "server_time_offset_s": struct.unpack_from("<q", self.mm, 120)[0],
            "last_update_ns": w(128), "feed_state": FEED_STATES.get(w(136), "unknown"),
            "feed_kind": FEED_KINDS.get(w(160), "unknown"),
            "counters": {name: w(256 + 8 * i) for i, name in enumerate(COUNTER_NAMES)},
        }

    def close(self):
        self.mm.close()
        self.file.close()


def main():
    p = argparse.ArgumentParser(description="Print candles from an mtf-streamer segment as JSON.")
    p.add_argument("symbol")
    p.add_argument("timeframe")
    p.add_argument("count", type=int)
    p.add_argument("--segment", default="mtf-candles", help="name in /dev/shm, or a path")
    args = p.parse_args()
    try:
        seg = Segment.open(args.segment)
        print(json.dumps({"candles": seg.read_last(args.symbol, args.timeframe, args.count), "status": seg.status(),
                          "rings": [[s, t, c] for s, t, c, _ in seg.rings]}))
    except (OSError, SegmentError, KeyError, Busy) as e:
        raise SystemExit("mtf_candles: %s" % e) from None


if __name__ == "__main__":
    main()
