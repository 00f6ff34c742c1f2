#!/usr/bin/env python3
"""The MT5 gateway's documented entry point: `python3 gateway/mt5_gateway.py --backend ...`.

The gateway is the `mtf_gateway` package beside this file (`python3 -m mtf_gateway` from this
folder runs the same); this script starts it, and its module keeps the package's names for
code that imports `mt5_gateway`."""

import os
import sys

# Run by path, the script's folder is on sys.path already; imported from elsewhere, put it there.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mtf_gateway import *  # noqa: E402,F403  (the package's names, as before the package)
from mtf_gateway.server import main  # noqa: E402

if __name__ == "__main__":
    main()
