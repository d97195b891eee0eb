"""Size limits of the HTTP/1.1 parser (Envoy's defaults; reliability.md table (c))."""

from __future__ import annotations

import msgspec


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    max_head_bytes: int = 60 * 1024
    """Request/status line plus fields, and separately a trailer section; beyond it: 431 (502 upstream)."""
    max_fields: int = 100
    """Header fields per head or trailer section; beyond it: 431."""
    max_request_line: int = 8 * 1024
    """Beyond it: 414 URI Too Long."""
    max_chunk_line: int = 4 * 1024
    """A chunk-size line with its extensions (http-garden: oversize chunk-ext)."""
    max_informational: int = 10
    """1xx responses before the final one (a 1xx storm from an upstream ends in 502)."""


DEFAULT_LIMITS = Limits()
