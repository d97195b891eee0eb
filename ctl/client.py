"""A small synchronous client for one proxy's admin endpoint, optionally inside a network namespace.

Speaks HTTP/1.1 with ``http.client`` over a socket from ``ctl.netns`` and decodes the documents defined in
``dataplane.admin.schema`` (the contract with the proxy). Every failure becomes a ``CtlError`` whose message
names the endpoint, so the CLI can print it as one line.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import urllib.parse
from typing import Final, TypeVar

import msgspec

from ctl.errors import CtlError
from ctl.netns import NetnsError, netns_socket
from dataplane.admin.schema import ConfigReport, ConnectionsReport, StatusReport

DEFAULT_ADMIN_URL: Final = "http://127.0.0.1:15000"  # mesh-proxy's default --admin
DEFAULT_TIMEOUT: Final = 5.0  # seconds; admin answers are cheap, so a slow one means something is wrong
_MAX_BODY: Final = 64 * 1024 * 1024  # a connections table is far smaller; guards against a runaway answer

_Doc = TypeVar("_Doc", StatusReport, ConnectionsReport, ConfigReport)


class AdminUnreachableError(CtlError):
    """No TCP connection to the admin endpoint, or it did not answer in time."""


class AdminAnswerError(CtlError):
    """The endpoint answered, but not with what the contract promises (status, HTTP or JSON)."""


class AdminAddress(msgspec.Struct, frozen=True):
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


class AdminResponse(msgspec.Struct, frozen=True):
    status: int
    reason: str
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def parse_admin_url(text: str) -> AdminAddress:
    """``http://HOST:PORT``, or bare ``HOST:PORT`` as mesh-proxy's own --admin takes; IPv6 in brackets."""
    raw = text if "://" in text else f"http://{text}"
    try:
        parts = urllib.parse.urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid admin URL {text!r}: {exc}") from None
    if parts.scheme != "http":
        raise ValueError(f"invalid admin URL {text!r}: only http:// is supported")
    if not parts.hostname:
        raise ValueError(f"invalid admin URL {text!r}: no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"invalid admin URL {text!r}: give only scheme, host and port")
    return AdminAddress(parts.hostname, 80 if port is None else port)


class AdminClient:
    """GETs admin documents from one proxy. Each call opens a fresh connection (the CLI makes a handful)."""

    def __init__(self, address: AdminAddress, *, netns: str | None = None, timeout: float = DEFAULT_TIMEOUT):
        self.address = address
        self.netns = netns
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<AdminClient {self.describe()}>"

    def describe(self) -> str:
        where = f" in network namespace {self.netns}" if self.netns else ""
        return f"{self.address.url}{where}"

    def get(self, path: str) -> AdminResponse:
        conn = _Connection(self.address, self.netns, self.timeout)
        try:
            conn.request("GET", path, headers={"Accept": "application/json, text/plain"})
            answer = conn.getresponse()
            body = answer.read(_MAX_BODY + 1)
        except NetnsError:
            raise
        except ConnectionRefusedError:
            raise AdminUnreachableError(
                f"cannot reach the proxy admin endpoint at {self.describe()}: connection refused"
                " (is mesh-proxy running?)"
            ) from None
        except TimeoutError:
            raise AdminUnreachableError(
                f"the proxy admin endpoint at {self.describe()} did not answer GET {path} within {self.timeout:g}s"
            ) from None
        except http.client.HTTPException as exc:
            raise AdminAnswerError(
                f"the proxy admin endpoint at {self.describe()} did not answer GET {path} with HTTP:"
                f" {type(exc).__name__} {exc}".rstrip()
            ) from None
        except OSError as exc:
            raise AdminUnreachableError(
                f"cannot reach the proxy admin endpoint at {self.describe()}: {exc.strerror or exc}"
            ) from None
        finally:
            conn.close()
        if len(body) > _MAX_BODY:
            raise AdminAnswerError(f"{self.describe()} answered GET {path} with more than {_MAX_BODY} bytes")
        return AdminResponse(answer.status, answer.reason, body)

    def live(self) -> bool:
        return self.get("/live").status == 200

    def ready(self) -> tuple[bool, str]:
        """(ready, the proxy's own words): 200 "ready" or 503 "not ready: <why>"."""
        answer = self.get("/ready")
        if answer.status not in (200, 503):
            raise self._unexpected("/ready", answer)
        return answer.status == 200, answer.text.strip()

    def metrics(self) -> str:
        return self._ok("/metrics").text

    def status(self) -> StatusReport:
        return self._document("/status", StatusReport)

    def connections(self) -> ConnectionsReport:
        return self._document("/connections", ConnectionsReport)

    def config(self) -> ConfigReport:
        return self._document("/config", ConfigReport)

    def _document(self, path: str, kind: type[_Doc]) -> _Doc:
        answer = self._ok(path)
        try:
            return msgspec.json.decode(answer.body, type=kind)
        except msgspec.DecodeError as exc:
            raise AdminAnswerError(
                f"{self.describe()} answered GET {path} with a document meshctl cannot read: {exc}"
            ) from None

    def _ok(self, path: str) -> AdminResponse:
        answer = self.get(path)
        if answer.status != 200:
            raise self._unexpected(path, answer)
        return answer

    def _unexpected(self, path: str, answer: AdminResponse) -> AdminAnswerError:
        detail = answer.text.strip().splitlines()[0][:200] if answer.body.strip() else ""
        return AdminAnswerError(
            f"{self.describe()} answered GET {path} with HTTP {answer.status} {answer.reason}"
            + (f": {detail}" if detail else "")
        )


class _Connection(http.client.HTTPConnection):
    """An HTTPConnection whose socket may come from another network namespace."""

    def __init__(self, address: AdminAddress, netns: str | None, timeout: float):
        super().__init__(address.host, address.port, timeout=timeout)
        self._netns = netns

    def connect(self) -> None:
        self.sock = open_tcp(self.host, self.port, netns=self._netns, timeout=self.timeout)


def open_tcp(host: str, port: int, *, netns: str | None, timeout: float | None) -> socket.socket:
    """A connected TCP socket to host:port, created in ``netns``; tries each resolved address in turn."""
    try:
        ipaddress.ip_address(host)
        candidates = [(socket.AF_INET6 if ":" in host else socket.AF_INET, (host, port))]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise AdminUnreachableError(f"cannot resolve {host!r}: {exc.strerror}") from None
        candidates = [(family, (str(addr[0]), int(addr[1]))) for family, _, _, _, addr in infos]
    last: OSError | None = None
    for family, sockaddr in candidates:
        sock = netns_socket(netns, family)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        return sock
    assert last is not None  # getaddrinfo never returns an empty list
    raise last
