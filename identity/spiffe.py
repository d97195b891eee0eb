"""SPIFFE IDs (``spiffe://trust-domain/path``) parsed and validated by the SPIFFE ID standard.

Pure: text in, a ``SpiffeId`` or a ``SpiffeIdError`` naming the rule out. Rules from spiffe/spiffe
``standards/SPIFFE-ID.md``: scheme ``spiffe``; a trust domain of lowercase letters, digits, ``.``, ``-`` and
``_`` only (so no port, no userinfo, no uppercase); path segments of letters, digits, ``.``, ``-`` and ``_``,
none empty and none ``.`` or ``..``; no trailing slash, no query, no fragment, no percent-encoding; at most
2048 bytes in all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

SCHEME: Final = "spiffe://"
_MAX_ID: Final = 2048  # SPIFFE-ID.md 2.3: implementations may refuse longer URIs; we do
_MAX_TRUST_DOMAIN: Final = 255
_TRUST_DOMAIN: Final = re.compile(r"[a-z0-9._-]+")
_SEGMENT: Final = re.compile(r"[a-zA-Z0-9._-]+")


class SpiffeIdError(ValueError):
    """The text is not a valid SPIFFE ID; the message says which rule it breaks."""


@dataclass(frozen=True, slots=True)
class SpiffeId:
    """A valid SPIFFE ID. ``path`` is "" for a trust domain's own ID, else starts with ``/``."""

    trust_domain: str
    path: str = ""

    def __str__(self) -> str:
        return f"{SCHEME}{self.trust_domain}{self.path}"

    @property
    def is_workload(self) -> bool:
        """A workload's ID has a path; ``spiffe://td`` alone names the trust domain (a CA, never a leaf)."""
        return self.path != ""

    def in_trust_domain(self, trust_domain: str) -> bool:
        return self.trust_domain == trust_domain


def parse_spiffe_id(text: str) -> SpiffeId:
    """Parse ``spiffe://td[/path]``; raise SpiffeIdError naming the broken rule."""
    if len(text.encode()) > _MAX_ID:
        raise SpiffeIdError(f"SPIFFE ID longer than {_MAX_ID} bytes")
    if not text.startswith(SCHEME):
        if text.lower().startswith(SCHEME):
            raise SpiffeIdError(f"invalid SPIFFE ID {text!r}: the scheme must be lowercase 'spiffe://'")
        raise SpiffeIdError(f"invalid SPIFFE ID {text!r}: must start with 'spiffe://'")
    for mark, what in (("?", "a query"), ("#", "a fragment"), ("%", "percent-encoding")):
        if mark in text:
            raise SpiffeIdError(f"invalid SPIFFE ID {text!r}: {what} is not allowed")
    rest = text[len(SCHEME) :]
    trust_domain, slash, path = rest.partition("/")
    parse_trust_domain(trust_domain, context=text)
    if not slash:
        return SpiffeId(trust_domain)
    for segment in path.split("/"):
        _check_segment(segment, text)
    return SpiffeId(trust_domain, "/" + path)


def parse_trust_domain(name: str, *, context: str | None = None) -> str:
    """Check a bare trust domain name (``example.org``); return it unchanged."""
    where = f"invalid SPIFFE ID {context!r}" if context is not None else f"invalid trust domain {name!r}"
    if not name:
        raise SpiffeIdError(f"{where}: the trust domain is empty")
    if len(name) > _MAX_TRUST_DOMAIN:
        raise SpiffeIdError(f"{where}: the trust domain is longer than {_MAX_TRUST_DOMAIN} characters")
    if "@" in name:
        raise SpiffeIdError(f"{where}: userinfo is not allowed in the trust domain")
    if ":" in name:
        raise SpiffeIdError(f"{where}: a port is not allowed in the trust domain")
    if _TRUST_DOMAIN.fullmatch(name) is None:
        if _TRUST_DOMAIN.fullmatch(name.lower()) is not None:
            raise SpiffeIdError(f"{where}: the trust domain must be lowercase")
        raise SpiffeIdError(f"{where}: the trust domain may hold only a-z, 0-9, '.', '-' and '_'")
    return name


def _check_segment(segment: str, text: str) -> None:
    if not segment:
        raise SpiffeIdError(f"invalid SPIFFE ID {text!r}: empty path segment (no '//' and no trailing '/')")
    if segment in (".", ".."):
        raise SpiffeIdError(f"invalid SPIFFE ID {text!r}: path segments '.' and '..' are not allowed")
    if _SEGMENT.fullmatch(segment) is None:
        raise SpiffeIdError(
            f"invalid SPIFFE ID {text!r}: path segment {segment!r} may hold only letters, digits, '.', '-' and '_'"
        )
