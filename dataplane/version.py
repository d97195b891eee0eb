"""The release version: the one place it is written (pyproject.toml reads it from here).

A constant instead of importlib.metadata, whose import alone costs the proxy megabytes of resident memory.
"""

VERSION = "0.1.0"
