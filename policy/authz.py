"""Authorization decisions for inbound connections and requests, and identity patterns.

Pure: no I/O. A policy's rules are compiled once when it is applied (``Authorization``); a decision is then a
few string comparisons. Patterns are exact SPIFFE IDs, prefixes ending in ``/*`` (the ``/`` is kept, so
``spiffe://td/ns/web/*`` never matches ``spiffe://td/ns/webhook/sa/x``) or ``*`` for any mesh identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from policy.model import AuthorizationRule

ANY: Final = "*"
_PREFIX_SUFFIX: Final = "/*"
_SPIFFE: Final = "spiffe://"


class IdentityMatcher:
    """One identity pattern, compiled."""

    __slots__ = ("_exact", "_prefix", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._exact: str | None = None
        self._prefix: str | None = None
        if pattern == ANY:
            self._prefix = ""
        elif pattern.endswith(_PREFIX_SUFFIX):
            self._prefix = pattern[:-1]  # keeps the "/"
        else:
            self._exact = pattern

    def matches(self, identity: str) -> bool:
        if self._exact is not None:
            return identity == self._exact
        assert self._prefix is not None
        return identity.startswith(self._prefix)

    def __repr__(self) -> str:
        return f"IdentityMatcher({self.pattern!r})"


def pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` can never match a SPIFFE ID, or None when it is well formed."""
    if pattern == ANY:
        return None
    if not pattern.startswith(_SPIFFE):
        return "expected a SPIFFE ID starting with spiffe://, a prefix ending in /*, or *"
    rest = pattern[len(_SPIFFE) :]
    trust_domain, _, path = rest.partition("/")
    if not trust_domain:
        return "the trust domain is empty"
    body = path[:-2] if pattern.endswith(_PREFIX_SUFFIX) else path
    if "*" in trust_domain or "*" in body:
        return "* may only end the pattern, as /*"
    if not path and not pattern.endswith(_PREFIX_SUFFIX):
        return "a SPIFFE ID of a workload has a path after the trust domain (use spiffe://TD/* for all of it)"
    if body and any(segment in ("", ".", "..") for segment in body.split("/")):
        return "path segments must not be empty, . or .."
    return None


class _Rule:
    __slots__ = ("identities", "methods", "paths", "unauthenticated")

    def __init__(self, rule: AuthorizationRule) -> None:
        self.identities = tuple(IdentityMatcher(pattern) for pattern in rule.identities)
        self.unauthenticated = rule.unauthenticated
        self.paths = tuple(rule.paths)
        self.methods = frozenset(rule.methods)

    @property
    def http_only(self) -> bool:
        return bool(self.paths or self.methods)

    def admits(self, client_id: str | None) -> bool:
        if client_id is None:
            return self.unauthenticated
        return any(matcher.matches(client_id) for matcher in self.identities)

    def allows_request(self, method: str, path: str) -> bool:
        if self.methods and method not in self.methods:
            return False
        return not self.paths or any(path_matches(pattern, path) for pattern in self.paths)


def path_matches(pattern: str, path: str) -> bool:
    """An exact path, or a prefix ending in ``*``."""
    if pattern.endswith("*"):
        return path.startswith(pattern[:-1])
    return path == pattern


class Authorization:
    """The compiled rules of one inbound port; ``None`` rules (no authorization configured) allow everything."""

    __slots__ = ("_rules", "source")

    def __init__(self, rules: Sequence[AuthorizationRule] | None) -> None:
        self.source = None if rules is None else tuple(rules)
        self._rules = None if rules is None else tuple(_Rule(rule) for rule in rules)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Authorization) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

    def __repr__(self) -> str:
        return f"Authorization({self.source!r})"

    @property
    def configured(self) -> bool:
        """Whether the port has rules at all (decisions are counted only then)."""
        return self._rules is not None

    def admits(self, client_id: str | None) -> bool:
        """Whether some rule admits the client at all, whatever it may then request (an HTTP connection stays
        open as long as this holds; its requests are checked one by one)."""
        if self._rules is None:
            return True
        return any(rule.admits(client_id) for rule in self._rules)

    def allows_tcp(self, client_id: str | None) -> bool:
        """An opaque connection: a rule without paths or methods must admit the client."""
        if self._rules is None:
            return True
        return any(not rule.http_only and rule.admits(client_id) for rule in self._rules)

    def allows_request(self, client_id: str | None, method: str, path: str) -> bool:
        """An HTTP request: a rule must admit the client, its method and its path (without the query)."""
        if self._rules is None:
            return True
        path = path.partition("?")[0]
        return any(rule.admits(client_id) and rule.allows_request(method, path) for rule in self._rules)


ALLOW_ALL: Final = Authorization(None)
