"""pyOpenSSL behind one module: mesh TLS contexts and a sans-I/O TLS engine over memory BIOs.

``server_context``/``client_context`` build a context from a checked ``Identity``: TLS 1.3 only, a client
certificate required on the server side, ALPN, no session resumption, and a verify callback that hands the
peer's chain to ``identity.verify.verify_peer_chain``. OpenSSL still builds and checks the chain first (its
failures are kept, mapped to the same reasons), but no peer is accepted unless our verification ran on the
leaf and returned its SPIFFE ID: OpenSSL passes shapes an SVID must not have (reliability.md A7) and knows
nothing of SPIFFE IDs. Resumption is off because a resumed TLS 1.3 session skips the certificate exchange,
and with it our verification.

A context is immutable once built, so rotating the identity means building a new one for new handshakes;
connections keep the context they started with.

``TLSEngine`` is h2-style sans-I/O (``receive_data``/``data_to_send``): the trio shell in ``stream.py`` moves
its bytes. It raises ``NeedData`` when OpenSSL must read more, and maps OpenSSL errors to ``dataplane.tls.errors``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from OpenSSL import SSL, crypto

from dataplane.tls import alpn
from dataplane.tls.errors import (
    HandshakeEOFError,
    NoClientCertError,
    NotTLSError,
    ProtocolVersionError,
    TLSAlertError,
    TLSHandshakeError,
    rejected,
)
from identity.load import Identity
from identity.spiffe import SpiffeId
from identity.verify import MAX_CHAIN, Rejection, RejectReason, TrustBundle, verify_peer_chain
from identity.x509 import Certificate, X509Error

Clock = Callable[[], datetime]
_V: Final = SSL.X509VerificationCodes
# OpenSSL's own chain errors, in identity.verify's vocabulary; any other verify error is a bad SVID shape.
_OPENSSL_VERIFY_REASONS: Final = {
    _V.ERR_CERT_HAS_EXPIRED: RejectReason.EXPIRED,
    _V.ERR_CERT_NOT_YET_VALID: RejectReason.NOT_YET_VALID,
    _V.ERR_UNABLE_TO_GET_ISSUER_CERT: RejectReason.UNKNOWN_CA,
    _V.ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: RejectReason.UNKNOWN_CA,
    _V.ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE: RejectReason.UNKNOWN_CA,
    _V.ERR_DEPTH_ZERO_SELF_SIGNED_CERT: RejectReason.UNKNOWN_CA,
    _V.ERR_SELF_SIGNED_CERT_IN_CHAIN: RejectReason.UNKNOWN_CA,
    _V.ERR_CERT_SIGNATURE_FAILURE: RejectReason.UNKNOWN_CA,
}
_VERIFY_ERROR_NAMES: Final = {
    code: name.removeprefix("ERR_").lower().replace("_", " ")
    for name, code in vars(SSL.X509VerificationCodes).items()
    if name.startswith("ERR_") and isinstance(code, int)
}
# OpenSSL reason strings (lower case) that say what kind of handshake failure this was.
_NOT_TLS: Final = ("http request", "https proxy request", "wrong version number", "packet length too long")
_OLD_VERSION: Final = ("unsupported protocol", "no protocols available", "alert protocol version", "version too low")
_NO_CLIENT_CERT: Final = ("peer did not return a certificate",)
_RECEIVE_SIZE: Final = 65536  # one transport read; the incoming BIO never holds more than this plus a record


PeerCheck = Callable[[SpiffeId], "str | None"]
"""The caller's own check of a verified peer, inside the handshake: why it is refused, or None to accept it."""


class NeedData(Exception):
    """OpenSSL needs more bytes from the peer before this operation can finish."""


class TLSDataError(Exception):
    """TLS failed after the handshake (a bad record, an alert, the transport ending without close_notify)."""


@dataclass(frozen=True, slots=True)
class TLSContext:
    """A built context and what our verification needs: the trust bundle, the trust domain, the clock."""

    server_side: bool
    identity: Identity
    protocols: tuple[str, ...]
    clock: Clock
    _context: SSL.Context = field(repr=False)


def server_context(identity: Identity, *, protocols: Sequence[str], clock: Clock | None = None) -> TLSContext:
    """Inbound: present ``identity``, require and verify a client SVID, pick ALPN from ``protocols`` (ours first)."""
    context = _base_context(identity, SSL.TLS_SERVER_METHOD)
    supported = tuple(protocols)
    alpn.encode(supported)

    def choose(_conn: SSL.Connection, offered: list[bytes]) -> bytes | SSL._NoOverlappingProtocols:
        choice = alpn.select(offered, supported)
        # No overlap: finish without ALPN and let the handshake caller refuse it (pyOpenSSL cannot fail here).
        return choice.encode("ascii") if choice is not None else SSL.NO_OVERLAPPING_PROTOCOLS

    context.set_alpn_select_callback(choose)
    return TLSContext(True, identity, supported, clock or _now, context)


def client_context(identity: Identity, *, protocols: Sequence[str], clock: Clock | None = None) -> TLSContext:
    """Outbound: present ``identity``, verify the server's SVID, offer ALPN ``protocols`` in order."""
    context = _base_context(identity, SSL.TLS_CLIENT_METHOD)
    supported = tuple(protocols)
    context.set_alpn_protos(alpn.encode(supported))
    return TLSContext(False, identity, supported, clock or _now, context)


def _base_context(identity: Identity, method: int) -> SSL.Context:
    context = SSL.Context(method)
    context.set_min_proto_version(SSL.TLS1_3_VERSION)
    context.set_max_proto_version(SSL.TLS1_3_VERSION)
    context.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_COMPRESSION)
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    # Frees the 16 KiB+ read/write buffers of idle connections (issue 5: <= 50 KiB per idle mTLS connection).
    context.set_mode(SSL.MODE_RELEASE_BUFFERS)
    leaf, *intermediates = identity.chain
    context.use_certificate(leaf.native)
    for cert in intermediates:
        context.add_extra_chain_cert(cert.native)
    context.use_privatekey(identity.key.native)
    context.check_privatekey()
    store = context.get_cert_store()
    assert store is not None, "a new context always has a certificate store"
    for anchor in identity.bundle.anchors:
        store.add_cert(_openssl_cert(anchor))
    context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _verify)
    context.set_verify_depth(MAX_CHAIN + 1)
    return context


@dataclass(slots=True)
class _Verification:
    """Per-connection state of the verify callback (pyOpenSSL's app data)."""

    bundle: TrustBundle
    trust_domain: str
    expected: SpiffeId | None
    clock: Clock
    accept: PeerCheck | None = None
    chain: dict[int, bytes] = field(default_factory=dict)
    peer: SpiffeId | None = None
    rejection: Rejection | None = None


def _verify(conn: SSL.Connection, cert: crypto.X509, error: int, depth: int, ok: int) -> bool:
    """OpenSSL calls this per certificate, root first; the leaf (depth 0) with ok=1 comes last."""
    state = conn.get_app_data()
    assert isinstance(state, _Verification)
    if not ok:
        state.peer = None  # any later complaint from OpenSSL (name constraints, ...) withdraws an earlier yes
        if state.rejection is None:
            reason = _OPENSSL_VERIFY_REASONS.get(error, RejectReason.BAD_SVID)
            what = _VERIFY_ERROR_NAMES.get(error, f"verify error {error}")
            state.rejection = Rejection(reason, f"OpenSSL: {what} (certificate at depth {depth})")
        return False
    state.chain[depth] = crypto.dump_certificate(crypto.FILETYPE_ASN1, cert)
    if depth != 0:
        return True
    try:
        chain = [Certificate.from_der(state.chain[level]) for level in sorted(state.chain)]
    except X509Error as exc:
        state.rejection = Rejection(RejectReason.BAD_SVID, str(exc))
        return False
    result = verify_peer_chain(
        chain, state.bundle, trust_domain=state.trust_domain, now=state.clock(), expected=state.expected
    )
    if isinstance(result, Rejection):
        state.rejection = result
        return False
    refused = state.accept(result) if state.accept is not None else None
    if refused is not None:
        state.rejection = Rejection(RejectReason.PEER_IDENTITY_MISMATCH, refused)
        return False
    state.peer = result
    state.chain.clear()  # idle connections are many: keep only the verdict (OpenSSL keeps the peer's chain)
    return True


class TLSEngine:
    """One TLS connection over memory BIOs. Not thread-safe; one trio task drives each operation at a time."""

    __slots__ = ("_conn", "_state", "context")

    def __init__(
        self,
        context: TLSContext,
        *,
        expected: SpiffeId | None = None,
        offer: str | Sequence[str] | None = None,
        accept: PeerCheck | None = None,
    ) -> None:
        if (expected is not None or offer is not None or accept is not None) and context.server_side:
            raise ValueError("an expected peer identity and an ALPN offer apply to outbound (client) connections only")
        self.context = context
        self._conn = SSL.Connection(context._context, None)
        if offer is not None:
            # One connection carries one inner protocol: offer only it, or the few it may be carried as, in order
            # (the context offers all of ours).
            self._conn.set_alpn_protos(alpn.encode([offer] if isinstance(offer, str) else offer))
        identity = context.identity
        self._state = _Verification(identity.bundle, identity.trust_domain, expected, context.clock, accept)
        self._conn.set_app_data(self._state)
        if context.server_side:
            self._conn.set_accept_state()
        else:
            self._conn.set_connect_state()

    @property
    def server_side(self) -> bool:
        return self.context.server_side

    @property
    def peer(self) -> SpiffeId | None:
        """The peer's verified SPIFFE ID; None until the handshake has verified it."""
        return self._state.peer

    @property
    def peer_certificate(self) -> Certificate | None:
        """The peer's verified leaf (serial, notAfter for draining before it expires); None until verified."""
        if self._state.peer is None:
            return None
        leaf = self._conn.get_peer_certificate(as_cryptography=True)
        return Certificate(leaf) if leaf is not None else None

    @property
    def alpn(self) -> str | None:
        """The negotiated ALPN protocol if it is one of ours (``alpn.check``), else None."""
        return alpn.check(self._conn.get_alpn_proto_negotiated(), self.context.protocols)

    @property
    def version(self) -> str:
        return self._conn.get_protocol_version_name()

    def do_handshake(self) -> None:
        """Advance the handshake; NeedData until done, then a verified peer or a TLSHandshakeError."""
        try:
            self._conn.do_handshake()
        except SSL.WantReadError:
            raise NeedData from None
        except SSL.Error as exc:
            raise self._handshake_failure(exc) from None
        if self._state.peer is None:
            # Fail closed: OpenSSL finished without our verification accepting the leaf.
            raise rejected(self._state.rejection or Rejection(RejectReason.BAD_SVID, "peer chain was not verified"))

    def read(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` of plaintext; b"" after the peer's close_notify."""
        try:
            return self._conn.recv(max_bytes)
        except SSL.WantReadError:
            raise NeedData from None
        except SSL.ZeroReturnError:
            return b""
        except SSL.Error as exc:
            raise TLSDataError(_describe(exc)) from None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt all of ``data`` into the outgoing BIO (a memory BIO never refuses a write)."""
        try:
            self._conn.sendall(bytes(data))
        except SSL.Error as exc:
            raise TLSDataError(_describe(exc)) from None

    def close_notify(self) -> None:
        """Send close_notify: our half-close (TLS 1.3 lets the peer keep sending, RFC 8446 6.1)."""
        try:
            self._conn.shutdown()
        except SSL.Error as exc:
            raise TLSDataError(_describe(exc)) from None

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        self._conn.bio_write(bytes(data))

    def receive_eof(self) -> None:
        self._conn.bio_shutdown()

    def data_to_send(self) -> bytes:
        """Everything OpenSSL has queued for the peer (empty when nothing)."""
        chunks = []
        while True:
            try:
                chunks.append(self._conn.bio_read(_RECEIVE_SIZE))
            except SSL.WantReadError:
                return b"".join(chunks)

    def _handshake_failure(self, exc: SSL.Error) -> TLSHandshakeError:
        if self._state.rejection is not None:
            return rejected(self._state.rejection)
        text = _describe(exc)
        lowered = text.lower()
        if isinstance(exc, SSL.SysCallError | SSL.ZeroReturnError):
            return HandshakeEOFError(f"the peer closed the connection during the TLS handshake ({text})")
        if any(words in lowered for words in _NOT_TLS):
            return NotTLSError(f"the peer did not speak TLS ({text})")
        if any(words in lowered for words in _OLD_VERSION):
            return ProtocolVersionError(f"the peer did not offer TLS 1.3 ({text})")
        if any(words in lowered for words in _NO_CLIENT_CERT):
            return NoClientCertError("the client sent no certificate; mesh connections require one")
        if "alert" in lowered:
            return TLSAlertError(f"the peer refused the handshake ({text})")
        return TLSHandshakeError(f"TLS handshake failed ({text})")


def _describe(exc: SSL.Error) -> str:
    if isinstance(exc, SSL.SysCallError):
        return str(exc.args[1]) if len(exc.args) > 1 else "unexpected EOF"
    if isinstance(exc, SSL.ZeroReturnError):
        return "close_notify"
    reasons = [str(entry[2]) for entry in (exc.args[0] if exc.args else []) if isinstance(entry, tuple)]
    return "; ".join(reason for reason in reasons if reason) or repr(exc)


def _openssl_cert(cert: Certificate) -> crypto.X509:
    return crypto.load_certificate(crypto.FILETYPE_ASN1, cert.der)


def _now() -> datetime:
    return datetime.now(UTC)
