"""Logging set-up: one line per event, to stderr, with the process's worker id when there are several."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str, *, worker: int | None = None) -> None:
    prefix = f"w{worker} " if worker is not None else ""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s.%(msecs)03d %(levelname)s {prefix}%(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
