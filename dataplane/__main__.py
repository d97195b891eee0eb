"""``mesh-proxy`` / ``python -m dataplane``."""

from __future__ import annotations

import sys

from dataplane.app import main

if __name__ == "__main__":
    sys.exit(main())
