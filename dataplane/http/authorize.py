"""Inbound HTTP authorization of one client connection's requests, shared by the HTTP/1.1 and HTTP/2 proxies.

The rules are the policy's for the connection's port, taken when the connection was accepted; the client identity
is the one its mesh TLS proved (None for plaintext). ``check`` decides without side effects (the HTTP/1.1 engine
asks before it decides who serves a request); ``count`` records the decision once, where it is acted on.
"""

from __future__ import annotations

from typing import Final

from dataplane.telemetry.authz import AuthzCounters
from policy.authz import Authorization

DENIED_STATUS: Final = 403


class RequestAuthorizer:
    __slots__ = ("_authorization", "_client_id", "_counters", "_target", "_tls")

    def __init__(
        self, authorization: Authorization, client_id: str | None, counters: AuthzCounters, target: str, tls: str
    ) -> None:
        self._authorization = authorization
        self._client_id = client_id
        self._counters = counters
        self._target = target
        self._tls = tls

    def check(self, method: bytes, target: bytes) -> bool:
        """Whether the request ``method target`` (its request-target: path and query) is allowed."""
        return self._authorization.allows_request(self._client_id, method.decode("latin-1"), target.decode("latin-1"))

    def count(self, allowed: bool) -> None:
        self._counters.record("http", allowed, self._target, self._tls, self._client_id)

    def why(self, method: bytes, target: bytes) -> str:
        """The refusal's text (``x-triomesh-error``): who asked for what."""
        who = self._client_id or "an unauthenticated client"
        return f"authorization denied: {who} may not {method.decode('latin-1')} {target.decode('latin-1')}"
