"""Strict syntax of an HTTP/1.1 head: request line, status line, field lines (pure).

Everything the grammar of RFC 9112 does not allow is rejected, never repaired: a proxy that reads a message one
way while the next hop reads it another is what request smuggling exploits. The one tolerance is RFC 9110
section 5.5's: control bytes other than NUL inside a field *value* are kept, as most servers do; CR and LF cannot
get there (the head is split on CRLF and bare CR/LF are refused before) and NUL is refused.
"""

from __future__ import annotations

import re
from typing import Final

from dataplane.http.tokens import TCHAR
from dataplane.http1.errors import Http1Error, Reason
from dataplane.http1.limits import Limits

_REQUEST_LINE: Final = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e\x80-\xff]+) HTTP/([0-9])\.([0-9])")
_STATUS_LINE: Final = re.compile(rb"HTTP/1\.([0-9]) ([1-5][0-9][0-9])(?: ([\t\x20-\x7e\x80-\xff]*))?")
# uri-host [ ":" port ] (RFC 3986): reg-name or IP literal; no userinfo, no spaces or controls.
_HOST: Final = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(?::[0-9]*)?")
_ABSOLUTE_FORM: Final = re.compile(rb"[A-Za-z][A-Za-z0-9+\-.]*://([^/?#]*)")
_NUL: Final = b"\x00"
_OWS: Final = b" \t"
# Underscore spellings of the framing fields (Content_Length, Transfer_Encoding): CGI-style servers map "_" to
# "-", so forwarding them would hand the next hop a second, unseen framing header.
_FRAMING_NAMES: Final = frozenset({b"content-length", b"transfer-encoding"})


def check_line_ends(buf: bytes | bytearray, start: int, end: int) -> int:
    """Refuse a bare CR or bare LF in ``buf[start:end]``; return how far the buffer is now known good.

    A line must end in CRLF: a lone LF or CR is where parsers disagree about where a line ends. Callers pass
    the previous return value as ``start``, so each byte is scanned once, in C. A CR at the very end may still
    get its LF, so it is left for the next call.
    """
    stop = end - 1 if end > start and buf[end - 1] == 0x0D else end
    crlf = buf.count(b"\r\n", start, stop)
    if buf.count(b"\n", start, stop) != crlf or buf.count(b"\r", start, stop) != crlf:
        raise Http1Error(Reason.BAD_HEADER, "a line ends in a bare CR or LF instead of CRLF")
    return stop


def parse_request_line(line: bytes, limits: Limits) -> tuple[bytes, bytes, bytes]:
    """``(method, target, version)``; version is ``b"1.1"`` or ``b"1.0"`` (HTTP/1.2+ is read as 1.1)."""
    if len(line) > limits.max_request_line:
        raise Http1Error(
            Reason.REQUEST_LINE_TOO_LONG,
            f"request line longer than {limits.max_request_line} bytes",
            status=414,
        )
    m = _REQUEST_LINE.fullmatch(line)
    if m is None:
        raise Http1Error(Reason.BAD_REQUEST_LINE, f"malformed request line {_show(line)}")
    method, target, major, minor = m.groups()
    if major != b"1":
        raise Http1Error(Reason.BAD_VERSION, f"HTTP version {major.decode()}.{minor.decode()}", status=505)
    version = b"1.0" if minor == b"0" else b"1.1"
    _check_target_form(method, target)
    return method, target, version


def _check_target_form(method: bytes, target: bytes) -> None:
    # RFC 9112 section 3.2: origin-form, absolute-form, authority-form (CONNECT only), asterisk (OPTIONS only).
    if target[0] == 0x2F:  # "/"
        if method == b"CONNECT":
            raise Http1Error(Reason.BAD_REQUEST_LINE, "CONNECT needs an authority-form target (host:port)")
        return
    if method == b"CONNECT":
        host, sep, port = target.rpartition(b":")
        if not sep or not host or not port.isdigit() or _HOST.fullmatch(target) is None:
            raise Http1Error(Reason.BAD_REQUEST_LINE, f"CONNECT target {_show(target)} is not host:port")
        return
    if target == b"*":
        if method != b"OPTIONS":
            raise Http1Error(Reason.BAD_REQUEST_LINE, "the * target is for OPTIONS only")
        return
    if _ABSOLUTE_FORM.match(target) is None:
        raise Http1Error(Reason.BAD_REQUEST_LINE, f"request target {_show(target)} is not in any RFC 9112 form")


def check_host(target: bytes, hosts: list[bytes], version: bytes) -> None:
    """RFC 9112 section 3.2: one Host in HTTP/1.1, a valid uri-host, equal to an absolute-form authority.

    A mismatch is refused rather than rewritten: two authorities for one request is a routing confusion attack.
    """
    if len(hosts) > 1:
        raise Http1Error(Reason.BAD_HOST, "more than one Host field")
    if not hosts:
        if version == b"1.1":
            raise Http1Error(Reason.BAD_HOST, "HTTP/1.1 request without a Host field")
        return
    host = hosts[0]
    if _HOST.fullmatch(host) is None:
        raise Http1Error(Reason.BAD_HOST, f"Host {_show(host)} is not a valid host[:port]")
    absolute = _ABSOLUTE_FORM.match(target)
    if absolute is not None and absolute.group(1).lower() != host.lower():
        raise Http1Error(Reason.BAD_HOST, "Host differs from the authority of the absolute-form target")


def parse_status_line(line: bytes) -> tuple[int, bytes, bytes]:
    """``(status, reason, version)`` of an upstream status line (HTTP/1.0 or 1.1 only, status 100-599)."""
    m = _STATUS_LINE.fullmatch(line)
    if m is None:
        raise Http1Error(Reason.BAD_STATUS_LINE, f"malformed status line {_show(line)}", status=502)
    minor, status, reason = m.groups()
    return int(status), reason or b"", b"1.0" if minor == b"0" else b"1.1"


def parse_fields(
    lines: list[bytes], first: int, limits: Limits, noted: frozenset[bytes]
) -> tuple[list[tuple[bytes, bytes]], dict[bytes, list[bytes]]]:
    """Field lines ``lines[first:]`` as ``(name, value)`` pairs, plus the values of the ``noted`` names.

    ``noted`` are the lower-case names the caller decides on (framing, Host, Connection...): collecting them
    here saves a second pass over the fields.
    """
    if len(lines) - first > limits.max_fields:
        raise Http1Error(Reason.HEADERS_TOO_LARGE, f"more than {limits.max_fields} header fields", status=431)
    fields: list[tuple[bytes, bytes]] = []
    found: dict[bytes, list[bytes]] = {}
    for i in range(first, len(lines)):
        line = lines[i]
        name, colon, value = line.partition(b":")
        if not colon or not name or name.translate(None, TCHAR):
            raise Http1Error(Reason.BAD_HEADER, _bad_field(name, colon))
        value = value.strip(_OWS)
        if _NUL in value:
            raise Http1Error(Reason.BAD_HEADER, f"NUL in the value of {_show(name)}")
        lname = name.lower()
        if lname in noted:
            found.setdefault(lname, []).append(value)
        elif 0x5F in lname and lname.replace(b"_", b"-") in _FRAMING_NAMES:  # "_"
            raise Http1Error(Reason.BAD_HEADER, f"{_show(name)} imitates a framing header")
        fields.append((name, value))
    return fields, found


def _bad_field(name: bytes, colon: bytes) -> str:
    if not colon:
        return f"header line {_show(name)} has no colon"
    if not name:
        return "empty header name"
    if name[:1] in (b" ", b"\t"):
        return f"obsolete line folding or leading whitespace before {_show(name)}"
    if name[-1:] in (b" ", b"\t"):
        return f"whitespace between header name {_show(name)} and colon"
    return f"header name {_show(name)} contains a byte outside token"


def _show(raw: bytes, limit: int = 64) -> str:
    """A log-safe rendering of attacker bytes: escaped, truncated."""
    text = repr(raw[:limit])[1:]
    return text + ("..." if len(raw) > limit else "")
