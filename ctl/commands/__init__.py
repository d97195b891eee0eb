"""One module per meshctl subcommand: ``register(subparsers)`` plus run functions returning an exit status."""

from __future__ import annotations

import argparse
from typing import TypeAlias

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
