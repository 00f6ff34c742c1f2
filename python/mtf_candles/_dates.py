"""MT5's date arguments: a datetime, or epoch seconds (numpy's integers and floats included),
and their milliseconds for tick times."""

import datetime as _dt
import numbers
import operator

_I64 = (-(1 << 63), (1 << 63) - 1)


def _ms(seconds: int, extra: int = 0) -> int:
    """Milliseconds of epoch `seconds` (plus `extra` ms), held to what a tick time can be
    compared with: a date far past any tick (``2**62``) means "to the end", not an overflow."""
    return min(max(seconds * 1000 + extra, _I64[0]), _I64[1])


def _seconds(date: object) -> int:
    """Epoch seconds of an MT5 date argument: a datetime's timestamp(), or a number of
    seconds, numpy's included (``rates['time'][-1]`` is an ``np.int64``)."""
    if isinstance(date, _dt.datetime):
        return int(date.timestamp())
    if isinstance(date, bool):
        raise TypeError("a date is a datetime or epoch seconds, not a bool")
    try:
        return operator.index(date)  # type: ignore[arg-type]  # int, np.int64, ...
    except TypeError:
        pass
    if isinstance(date, numbers.Real):  # float, np.float64, ...
        return int(float(date))
    raise TypeError("a date is a datetime or epoch seconds, not %r" % (type(date).__name__,))
