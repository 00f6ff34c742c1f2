"""The change-driven polling of the terminal's ticks, behind the live backend's tick
subscription (docs/MT5_GATEWAY.md, "subscribe_ticks"): the MetaTrader5 package has no push."""

import time

from .common import TICK_FIELDS, plain, record_to_dict, records


class TerminalTicks:
    """Change-driven polling of the terminal: every tick after the subscription began, each
    sent once, about a millisecond after the terminal has it.

    The MetaTrader5 package has no push, so the terminal is polled, but cheaply: each
    subscribed symbol's newest tick (``symbol_info_tick``, one small call) is looked at on an
    interval that adapts, and the ticks themselves (``copy_ticks_from``) are fetched only when
    that newest tick changed:

    - a symbol that ticked in the last second is looked at every ``min_interval`` (0.5 ms by
      default, so a tick waits 0.25 ms on average); one quiet for 10 s every ``max_interval``
      (50 ms), and in between, 10 times ``min_interval``;
    - the gateway's process is held to ``cpu_share`` of one core (the terminal's calls
      included): every interval is scaled in proportion to how far it is off, never below the
      configured ones; ``intervals()`` says what each symbol gets (the ``hello`` answer's
      ``polling``).

    Several ticks can share a millisecond, so the cursor is (time_msc of the last tick sent,
    how many ticks with that time_msc were sent); a fetch re-reads from that second (MT5's
    ``copy_ticks_from`` takes seconds) and skips what was sent. A change is any difference in
    the newest tick, so a second tick in the same millisecond is seen too. A burst longer than
    one call returns is fetched in as many calls as it takes, none lost.
    """

    BATCH = 10000  # ticks one copy_ticks_from returns at most, doubled while a second holds more
    QUIET_SECONDS = 10.0
    # The schedule's clock. Not time.monotonic: on Windows before CPython 3.13 that is
    # GetTickCount64, which moves in 15.6 ms steps, so a 0.5 ms interval became 15.6 ms (and a
    # poll that slept to its due time often found nothing due). perf_counter is
    # QueryPerformanceCounter there (0.1 us) and CLOCK_MONOTONIC on Linux: monotonic on both.
    clock = staticmethod(time.perf_counter)

    def __init__(self, backend, symbols, min_interval=0.0005, max_interval=0.05, cpu_share=0.25, since=None):
        self.b = backend
        self.min_interval, self.max_interval, self.cpu_share = min_interval, max_interval, cpu_share
        self.flags = getattr(backend.mt5, "COPY_TICKS_ALL", -1)
        now = self.clock()
        self.cursor, self.newest, self.moved_at, self.due = {}, {}, {}, {}
        look_cost = 0.0
        for s in symbols:
            look = time.perf_counter()
            newest = backend.symbol_info_tick(s)  # raises for a symbol the terminal lacks
            look_cost = max(look_cost, time.perf_counter() - look)
            # From the client's own newest tick where it says which (the terminal's latest at
            # its backfill: ticks made between that and now are sent, not lost), else from the
            # terminal's newest. The ticks at that millisecond are counted as had, so that a
            # later one at the same millisecond is sent.
            m = newest["time_msc"] if since is None or s not in since else min(since[s], newest["time_msc"])
            with backend.lock:
                ticks = backend.mt5.copy_ticks_from(s, m // 1000, self.BATCH, self.flags)
            # The package returns a numpy array (never test it for truth) or None.
            at_m = 0 if ticks is None else sum(1 for t in records(ticks, ("time_msc",)) if t["time_msc"] == m)
            self.cursor[s] = (m, max(at_m, 1))
            # The tick the cursor starts from: a newer one, even made meanwhile, shows as a change.
            # (Compared by value with what a look returns: a named tuple's fields are in
            # TICK_FIELDS order.)
            self.newest[s] = tuple(newest[f] for f in TICK_FIELDS) if m == newest["time_msc"] else None
            self.moved_at[s], self.due[s] = now, now
        # The first guess of the budget's scale, from what one look cost just now, so that
        # many symbols do not start at a rate the budget then has to bring down.
        start = len(self.cursor) * look_cost / (self.cpu_share * 0.9 * self.min_interval)
        self.widen = min(max(1.0, start), self.max_interval / self.min_interval)
        self.cpu_at = (now, time.process_time())

    def interval(self, s, now):
        quiet = now - self.moved_at[s]
        base = self.min_interval if quiet < 1.0 else (
            self.min_interval * 10 if quiet < self.QUIET_SECONDS else self.max_interval)
        return min(self.max_interval, base * self.widen)

    def intervals(self):
        """What each symbol is looked at every, in milliseconds, now."""
        now = self.clock()
        return {s: round(self.interval(s, now) * 1000, 3) for s in self.cursor}

    def _budget(self, now):
        """Scales every interval so that the process uses `cpu_share` of a core, measured over
        the last half second: in proportion to how far it is off, at most 1.5 times a step,
        never below the configured intervals."""
        then, cpu_then = self.cpu_at
        if now - then < 0.5:
            return
        cpu = time.process_time()
        share = (cpu - cpu_then) / (now - then)
        # Aimed a tenth under the share, so that the overshoot of a step stays within it.
        step = min(1.5, max(1 / 1.5, share / (self.cpu_share * 0.9)))
        self.widen = min(max(1.0, self.widen * step), self.max_interval / self.min_interval)
        self.cpu_at = (now, cpu)

    def _fetch(self, s):
        """The ticks of `s` after the cursor, however many calls that takes."""
        out = []
        last, sent_at_last = self.cursor[s]
        batch = self.BATCH
        while True:
            with self.b.lock:
                ticks = self.b.mt5.copy_ticks_from(s, last // 1000, batch, self.flags)
            if ticks is None:
                return out
            new_last, new_count, skipped = last, sent_at_last, 0
            for d in records(ticks, TICK_FIELDS):
                m = d["time_msc"]
                if m < last or (m == last and skipped < sent_at_last):
                    skipped += m == last
                    continue
                out.append((s, d))
                if m == new_last:
                    new_count += 1
                else:
                    new_last, new_count = m, 1
            full = len(ticks) >= batch
            self.cursor[s] = (new_last, new_count)
            if not full:
                return out
            # A full answer: more may follow. From the new cursor's second, or with a larger
            # batch if one second holds more ticks than this one.
            if new_last // 1000 == last // 1000:
                batch *= 2
            last, sent_at_last = new_last, new_count

    def poll(self):
        """Waits until the next look is due, looks at the symbols due, and returns their new
        ticks as (symbol, tick) in time order (often none; a live stream never ends)."""
        first = min(self.due.values())
        wait = first - self.clock()
        if wait > 0:
            time.sleep(wait)
        # Having slept until the first due time, that symbol is due, whatever a coarse clock
        # reads: each poll looks at least once.
        now = max(self.clock(), first)
        self._budget(now)
        out = []
        for s in [s for s, due in self.due.items() if due <= now]:
            with self.b.lock:
                t = self.b.mt5.symbol_info_tick(s)
            # The package's Tick is a named tuple: compared whole, at C speed; anything else
            # (a bridge's proxy) field by field.
            newest = None if t is None else tuple(t) if isinstance(t, tuple) else tuple(
                plain(v) for v in record_to_dict(t, TICK_FIELDS).values())
            if newest is not None and newest != self.newest[s]:
                self.newest[s] = newest
                self.moved_at[s] = now
                out.extend(self._fetch(s))
            # At a fixed rate from the last due time (not from now, which would add this
            # look's own time to every interval), never in the past.
            self.due[s] = max(self.due[s] + self.interval(s, now), now)
        self.b.poll_intervals = self.intervals()
        out.sort(key=lambda st: st[1]["time_msc"])
        return out
