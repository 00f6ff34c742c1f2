"""History deeper than the segment's history store and rings, from the terminal where the
MetaTrader5 package is installed (issue 38, "beyond the store"): the store and the rings answer
first, and the part of a range that reaches past what they hold is asked of the terminal and
joined on, with no gap and no duplicate at the seam. Without the package the segment's answer
stands, as deep as its store (``status()`` and ``inspect`` show what it holds).

The seam is where the segment's own history starts: its oldest bar (or tick), in the store or
the ring. Everything before it comes from the terminal, everything from it on from the
segment, so a bar is never taken twice and none is skipped. For ticks the seam is a millisecond, which may hold several ticks,
some of them already dropped by the ring: the ticks of that millisecond come from the terminal,
the ring's from the next one on.

Rates and ticks are MT5's numpy structured arrays on both sides (same dtypes), so joining is
``numpy.concatenate``.
"""

import numpy as np


def _oldest_bar(segment, symbol, timeframe):
    """The open time of the oldest bar the segment holds for the pair (store or ring), or
    None."""
    return segment.oldest_bar(symbol, timeframe)


def _oldest_tick(segment, symbol, flags):
    """The time_msc of the oldest tick the segment holds that passes `flags`, or None."""
    held = segment.copy_ticks_from(symbol, 0, 1, flags)
    return int(held["time_msc"][0]) if len(held) else None


def _join(older, newer):
    if older is None or len(older) == 0:
        return newer
    return np.concatenate((older, newer)) if len(newer) else older


def rates_range(terminal, segment, answer, symbol, timeframe, lo, hi):
    """`answer` (the segment's bars opened in [lo, hi]) with the older ones from the terminal."""
    oldest = _oldest_bar(segment, symbol, timeframe)
    if oldest is not None and oldest <= lo:
        return answer
    end = hi if oldest is None else min(hi, oldest - 1)
    older = terminal.copy_rates_range(symbol, timeframe, lo, end)
    if older is None:
        return answer
    return _join(older[older["time"] < (oldest if oldest is not None else hi + 1)], answer)


def rates_from(terminal, segment, answer, symbol, timeframe, count, date=None, start_pos=None):
    """`answer` (the segment's newest `count` bars up to `date`, or from position
    `start_pos`), topped up with the terminal's bars before the ring's oldest when the ring
    ran out; all from the terminal when the ring holds none of them."""
    if len(answer) >= count:
        return answer
    if not len(answer):
        older = terminal.copy_rates_from(symbol, timeframe, date, count) if date is not None \
            else terminal.copy_rates_from_pos(symbol, timeframe, start_pos, count)
        return answer if older is None else older
    oldest = _oldest_bar(segment, symbol, timeframe)
    if oldest is None or int(answer["time"][0]) != oldest:
        # Not cut by the ring: the segment holds bars older than the answer's oldest.
        return answer
    older = terminal.copy_rates_from(symbol, timeframe, oldest - 1, count - len(answer))
    if older is None:
        return answer
    return _join(older[older["time"] < oldest], answer)


def ticks_range(terminal, segment, answer, symbol, lo_ms, hi_ms, flags):
    """`answer` (the segment's ticks in [lo_ms, hi_ms]) with the older ones from the terminal."""
    oldest = _oldest_tick(segment, symbol, flags)
    if oldest is not None and oldest <= lo_ms:
        return answer
    seam = hi_ms if oldest is None else min(hi_ms, oldest)
    # The terminal takes seconds and includes the whole second of its end.
    older = terminal.copy_ticks_range(symbol, lo_ms // 1000, seam // 1000, flags)
    if older is None:
        return answer
    older = older[(older["time_msc"] >= lo_ms) & (older["time_msc"] <= seam)]
    if oldest is None:
        return older
    return _join(older, answer[answer["time_msc"] > oldest])


def ticks_from(terminal, segment, answer, symbol, from_ms, count, flags):
    """`answer` (the segment's first `count` ticks from from_ms) with the older ones from the
    terminal in front, cut to `count`."""
    oldest = _oldest_tick(segment, symbol, flags)
    if oldest is not None and oldest <= from_ms:
        return answer
    seam = None if oldest is None else oldest
    end_s = (seam if seam is not None else from_ms) // 1000
    older = terminal.copy_ticks_from(symbol, from_ms // 1000, count, flags) if seam is None \
        else terminal.copy_ticks_range(symbol, from_ms // 1000, end_s, flags)
    if older is None:
        return answer
    older = older[older["time_msc"] >= from_ms]
    if seam is not None:
        older = older[older["time_msc"] <= seam]
        answer = answer[answer["time_msc"] > seam]
    return _join(older, answer)[:count]
