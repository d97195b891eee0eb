"""What the proxy tells a client when it answers an HTTP request itself (pure): the ``x-triomesh-error`` field,
one line saying why, the same for HTTP/1.1 and HTTP/2."""

from __future__ import annotations

from typing import Final

ERROR_FIELD: Final = b"x-triomesh-error"


def error_value(why: str) -> bytes:
    """``why`` as a field value: ASCII, one line (CR and LF become spaces, so it cannot inject a field)."""
    return why.encode("ascii", "replace").replace(b"\r", b" ").replace(b"\n", b" ")
