"""`python -m mtf_gateway` (from the gateway/ folder, or with it on the path)."""

import sys

from .server import main

sys.exit(main())
