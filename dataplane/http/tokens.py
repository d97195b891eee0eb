"""RFC 9110 ``token`` (field names, methods, transfer codings), checked with one C call per value (pure)."""

from __future__ import annotations

from typing import Final

TCHAR: Final = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
"""Every byte allowed in a token (RFC 9110 section 5.6.2)."""


def is_token(value: bytes) -> bool:
    """True for a non-empty run of tchar. ``translate`` deletes the allowed bytes; anything left is not one."""
    return bool(value) and not value.translate(None, TCHAR)
