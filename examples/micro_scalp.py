#!/usr/bin/env python3
"""The original micro-scalp monitor's candle fetch, on mtf_candles.

The original fetched the last 50 M1 candles per symbol every 5 s from MetaTrader5 (and, in
another process, saw none of the streamer's). Here the same calls read the segment, and the
loop wakes when a candle changes instead of sleeping a fixed 5 s.

    python3 examples/micro_scalp.py BTCUSDc XAUUSDc      # Ctrl-C stops
"""

import sys

import mtf_candles as mt5
import numpy as np


def conditions(rates):
    """VWAP, the last close's distance from it in volume-weighted sigma (20 bars), ATR(1),
    ATR(14) and the volume spike, as the original monitor defined them."""
    typical = (rates["high"] + rates["low"] + rates["close"]) / 3
    volume = rates["tick_volume"].astype(float)
    if volume.sum() == 0:
        return None
    vwap = float((typical * volume).sum() / volume.sum())
    last20, v20 = typical[-20:], volume[-20:]
    sigma = float(np.sqrt((v20 * (last20 - vwap) ** 2).sum() / v20.sum())) if v20.sum() else 0.0
    ranges = rates["high"] - rates["low"]
    mean20 = volume[-21:-1].mean() if len(volume) > 20 else 0.0
    return {
        "vwap": vwap,
        "dist_sigma": (float(rates["close"][-1]) - vwap) / sigma if sigma else 0.0,
        "atr1": float(ranges[-1]),
        "atr14": float(ranges[-14:].mean()),
        "volume_spike": bool(mean20 and volume[-1] >= 2 * mean20),
    }


def main(symbols):
    if not mt5.initialize():
        raise SystemExit("micro_scalp: %s (%d)" % (mt5.last_error()[1], mt5.last_error()[0]))
    while True:
        for symbol in symbols:
            rates = mt5.copy_rates_from_pos(symbol, mt5.TIMEFRAME_M1, 0, 50)
            if rates is None:
                print("%s: %s" % (symbol, mt5.last_error()[1]))
                continue
            c = conditions(rates)
            print(symbol, len(rates), "bars, close", rates["close"][-1], c, flush=True)
        # Wake when any candle changes (or every 5 s at the latest), not on a fixed sleep.
        mt5.wait_for_update(timeout=5.0)


if __name__ == "__main__":
    try:
        main(sys.argv[1:] or ["BTCUSDc", "XAUUSDc"])
    except KeyboardInterrupt:
        pass
