"""What h2 lets through that a proxy must not forward: request and response header checks. Pure.

Two levels. ``malformed_block`` is what h2 4.4.1's inbound validation checked (CR/LF/NUL in values, bad or
duplicate pseudo-headers, uppercase names, connection-specific fields, TE other than trailers: reliability.md A7),
a connection error (GOAWAY PROTOCOL_ERROR) as h2 made it; ``conn.py`` turns h2's own validation off and calls this
instead, in one pass over the block instead of h2's seven chained generators. ``validate_request`` and
``validate_response`` are the proxy's stream-level checks on top (RST_STREAM PROTOCOL_ERROR). h2 accepts a `:path`
with a space, `:authority` with userinfo, a lowercase or spaced `:method` and any `:scheme`; re-serialised as an
HTTP/1.1 request line, a space is request line injection. Everything that passes here re-serialises into a request
line without SP, CR or LF.

Each check returns None or an ``Invalid`` whose ``reason`` is a closed-set label (metric, RST_STREAM log) and whose
``message`` names the field.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Final

import msgspec

Header = tuple[bytes, bytes]

_UPPER_TCHAR: Final = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
"""Methods are tokens; lowercase ones are legal in RFC 9110 but no real client sends them, and a proxy that
forwards `get` next to `GET` invites cache/route confusion, so only uppercase tchar passes."""
_NAME_TCHAR: Final = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
"""Field names: lowercase tchar (HTTP/2 forbids uppercase names)."""
_FORBIDDEN_IN_TARGET: Final = bytes(range(0x21)) + b"\x7f#"
"""Space, controls, DEL and `#` (a fragment is never sent on the wire) are refused in `:path`."""
_FORBIDDEN_IN_VALUE: Final = b"\x00\r\n"
_REG_NAME: Final = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;="
"""RFC 3986 reg-name: unreserved, pct-encoded and sub-delims."""
_IP_LITERAL: Final = b"0123456789abcdefABCDEF:.vV%-._~!$&'()*+,;="
_DIGITS: Final = b"0123456789"
_REQUEST_PSEUDO: Final = frozenset((b":method", b":scheme", b":path", b":authority"))

_NOT_IN_NAME: Final = bytes(range(0x21)) + bytes(range(0x41, 0x5B)) + bytes(range(0x7F, 0x100))
"""RFC 9113 8.2.1: no controls, SP, uppercase or non-ASCII in a field name (':' only first, in a pseudo-header)."""
_BLOCK_PSEUDO: Final = frozenset((b":method", b":scheme", b":authority", b":path", b":status", b":protocol"))
_REQUEST_ONLY: Final = frozenset((b":method", b":scheme", b":authority", b":path", b":protocol"))
_CONNECTION_SPECIFIC: Final = frozenset(
    (b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade")
)
_EDGE_WHITESPACE: Final = (0x20, 0x09)
_GOOD_NAMES: Final = frozenset(
    (
        b"accept", b"accept-encoding", b"accept-language", b"authorization", b"cache-control", b"content-length",
        b"content-type", b"cookie", b"date", b"etag", b"grpc-accept-encoding", b"grpc-encoding", b"grpc-message",
        b"grpc-status", b"grpc-timeout", b"host", b"last-modified", b"server", b"set-cookie", b"user-agent",
        b"vary", b"x-forwarded-for", b"x-forwarded-proto", b"x-request-id",
    )
)  # fmt: skip
"""Common names that pass ``_malformed_field`` whatever their value (``te`` depends on its value: not here)."""


class BlockKind(enum.Enum):
    REQUEST = "request"
    RESPONSE = "response"
    """Final and informational response heads."""
    TRAILERS = "trailers"


def malformed_block(headers: Sequence[Header], kind: BlockKind) -> str | None:
    """Why a received header block is malformed at the HTTP/2 level (RFC 9113 8.2, 8.3), or None.

    The rules h2's inbound validation applied (a connection error there and here): names non-empty, without SP,
    controls, uppercase, non-ASCII or a ':' past the first byte; values without NUL, CR, LF and without
    whitespace at either end; no connection-specific field; ``te`` only ``trailers``; pseudo-headers known,
    unique, before the regular fields, none in trailers, the request ones in requests (``:method``; ``:scheme``
    and ``:path``, non-empty, unless plain CONNECT; ``:protocol`` only with CONNECT) and ``:status`` in
    responses; a request has ``:authority`` or one ``host``, equal when both."""
    pseudo: dict[bytes, bytes] = {}
    regular = False
    hosts: list[bytes] = []
    for name, value in headers:
        if name[:1] == b":":
            if regular:
                return f"pseudo-header {name!r} after a regular field"
            if name not in _BLOCK_PSEUDO:
                return f"unknown pseudo-header {name!r}"
            if name in pseudo:
                return f"duplicate pseudo-header {name!r}"
            pseudo[name] = value
        else:
            regular = True
            if name not in _GOOD_NAMES and (problem := _malformed_field(name, value)) is not None:
                return problem
            if name == b"host":
                hosts.append(value)
        if value and (
            b"\r" in value
            or b"\n" in value
            or b"\x00" in value
            or value[0] in _EDGE_WHITESPACE
            or value[-1] in _EDGE_WHITESPACE
        ):
            return f"CR, LF or NUL in, or whitespace around, the value of {name[:64]!r}"
    if kind is BlockKind.TRAILERS:
        return f"pseudo-headers {sorted(pseudo)} in trailers" if pseudo else None
    if kind is BlockKind.RESPONSE:
        if b":status" not in pseudo:
            return "response without :status"
        extra = pseudo.keys() & _REQUEST_ONLY
        return f"request pseudo-headers {sorted(extra)} in a response" if extra else None
    return _malformed_request(pseudo, hosts)


def _malformed_field(name: bytes, value: bytes) -> str | None:
    if not name:
        return "empty header name"
    if len(name.translate(None, _NOT_IN_NAME)) != len(name) or b":" in name:
        return f"illegal character in header name {name[:64]!r}"
    if name in _CONNECTION_SPECIFIC:
        return f"connection-specific header {name!r}"
    if name == b"te" and value.lower() != b"trailers":
        return f"te {value[:64]!r} is not trailers"
    return None


def _malformed_request(pseudo: dict[bytes, bytes], hosts: list[bytes]) -> str | None:
    method = pseudo.get(b":method")
    if method is None:
        return "request without :method"
    if b":status" in pseudo:
        return "request with :status"
    connect = method == b"CONNECT"
    if b":protocol" in pseudo and not connect:
        return ":protocol without CONNECT"
    if not connect or b":protocol" in pseudo:
        if b":scheme" not in pseudo or b":path" not in pseudo:
            return "request without :scheme or :path"
    elif b":scheme" in pseudo or b":path" in pseudo:
        return "plain CONNECT with :scheme or :path"
    if pseudo.get(b":path", b"-") == b"":
        return "empty :path"
    if len(hosts) > 1:
        return "more than one host field"
    authority = pseudo.get(b":authority")
    if authority is None and not hosts:
        return "request without :authority or host"
    if authority is not None and hosts and hosts[0] != authority:
        return ":authority and host differ"
    return None


class Invalid(msgspec.Struct, frozen=True, kw_only=True):
    reason: str
    """Closed set: bad_method, bad_scheme, bad_path, bad_authority, missing_authority, bad_connect,
    unsupported_pseudo_header, bad_header_name, bad_header_value, underscore_header, bad_status."""
    message: str


def validate_request(headers: Sequence[Header], *, allow_underscores: bool = False) -> Invalid | None:
    """Check a decoded request header list before it is forwarded or translated to HTTP/1.1."""
    pseudo: dict[bytes, bytes] = {}
    host = None
    for name, value in headers:
        if name[:1] == b":":
            if name not in _REQUEST_PSEUDO:
                return Invalid(reason="unsupported_pseudo_header", message=f"pseudo-header {name!r} is not supported")
            pseudo[name] = value
            continue
        problem = _check_field(name, value, allow_underscores=allow_underscores)
        if problem is not None:
            return problem
        if name == b"host":
            host = value
    method = pseudo.get(b":method")
    if method is None or not _is_token(method, _UPPER_TCHAR):
        return Invalid(reason="bad_method", message=f":method {method!r} is not an uppercase token")
    scheme, path, authority = pseudo.get(b":scheme"), pseudo.get(b":path"), pseudo.get(b":authority")
    if method == b"CONNECT":
        return _check_connect(scheme, path, authority)
    if scheme not in (b"http", b"https"):
        return Invalid(reason="bad_scheme", message=f":scheme {scheme!r} is neither http nor https")
    problem = _check_path(path, method)
    if problem is not None:
        return problem
    if authority is not None:
        return _check_authority(authority, b":authority", need_port=False)
    if host is not None:
        return _check_authority(host, b"host", need_port=False)
    return Invalid(reason="missing_authority", message="neither :authority nor host is present")


def validate_response(headers: Sequence[Header]) -> Invalid | None:
    """Check a decoded response header list (upstream side) before it is forwarded."""
    status = None
    for name, value in headers:
        if name == b":status":
            status = value
        elif name[:1] == b":":
            return Invalid(reason="unsupported_pseudo_header", message=f"pseudo-header {name!r} in a response")
        else:
            problem = _check_field(name, value, allow_underscores=True)
            if problem is not None:
                return problem
    if status is None or len(status) != 3 or not _is_token(status, _DIGITS) or status[0] not in b"12345":
        return Invalid(reason="bad_status", message=f":status {status!r} is not three digits from 100 to 599")
    return None


def _is_token(value: bytes, allowed: bytes) -> bool:
    # translate deletes every allowed byte in one C call; anything left is foreign
    return bool(value) and not value.translate(None, allowed)


def _check_field(name: bytes, value: bytes, *, allow_underscores: bool) -> Invalid | None:
    if not _is_token(name, _NAME_TCHAR):
        return Invalid(reason="bad_header_name", message=f"header name {name!r} is not a lowercase token")
    if not allow_underscores and b"_" in name:
        return Invalid(reason="underscore_header", message=f"header name {name!r} contains an underscore")
    if len(value.translate(None, _FORBIDDEN_IN_VALUE)) != len(value):
        return Invalid(reason="bad_header_value", message=f"header {name!r} has CR, LF or NUL in its value")
    return None


def _check_path(path: bytes | None, method: bytes) -> Invalid | None:
    if path is None:
        return Invalid(reason="bad_path", message=":path is missing")
    if path == b"*":
        if method == b"OPTIONS":
            return None
        return Invalid(reason="bad_path", message=":path '*' is only allowed with OPTIONS")
    if path[:1] != b"/":
        return Invalid(reason="bad_path", message=f":path {path[:64]!r} does not start with '/'")
    if len(path.translate(None, _FORBIDDEN_IN_TARGET)) != len(path):
        return Invalid(reason="bad_path", message=f":path {path[:64]!r} contains a space, control or '#'")
    return None


def _check_connect(scheme: bytes | None, path: bytes | None, authority: bytes | None) -> Invalid | None:
    # RFC 9113 8.5: CONNECT carries only :method and :authority (host:port); extended CONNECT is not enabled
    if scheme is not None or path is not None:
        return Invalid(reason="bad_connect", message="CONNECT must not carry :scheme or :path")
    if authority is None:
        return Invalid(reason="bad_connect", message="CONNECT needs :authority (host:port)")
    return _check_authority(authority, b":authority", need_port=True)


def _check_authority(value: bytes, field: bytes, *, need_port: bool) -> Invalid | None:
    label = field.decode()
    if not value:
        return Invalid(reason="bad_authority", message=f"{label} is empty")
    if b"@" in value:
        return Invalid(reason="bad_authority", message=f"{label} {value[:64]!r} carries userinfo")
    if value[:1] == b"[":
        end = value.find(b"]")
        if end < 2 or not _is_token(value[1:end], _IP_LITERAL):
            return Invalid(reason="bad_authority", message=f"{label} {value[:64]!r} is not a valid IP literal")
        rest = value[end + 1 :]
        if rest and rest[:1] != b":":
            return Invalid(reason="bad_authority", message=f"{label} {value[:64]!r} has junk after the IP literal")
        port = rest[1:] if rest else None
    else:
        host, sep, port_part = value.partition(b":")
        port = port_part if sep else None
        if not _is_token(host, _REG_NAME):
            return Invalid(reason="bad_authority", message=f"{label} {value[:64]!r} is not a valid host[:port]")
    if port is not None and (not _is_token(port, _DIGITS) or len(port) > 5 or int(port) > 65535):
        return Invalid(reason="bad_authority", message=f"{label} {value[:64]!r} has an invalid port")
    if need_port and port is None:
        return Invalid(reason="bad_connect", message=f"CONNECT {label} {value[:64]!r} has no port")
    return None
