"""Why a mesh TLS handshake failed: one ``ProxyError`` per reason, so the reason is the close reason and label.

The peer-verification reasons are ``identity.verify.RejectReason``'s (reliability.md G4 names); the rest are
what the TLS layer sees: plaintext where TLS was required, an old protocol version, no client certificate, an
alert from the peer refusing us, the transport closing mid-handshake, or no common ALPN protocol.
"""

from __future__ import annotations

from typing import Final

from dataplane.errors import ConnectError
from identity.verify import Rejection, RejectReason


class TLSHandshakeError(ConnectError):
    """A handshake failed for a reason not listed below (the message has OpenSSL's words).

    A ``ConnectError``: to the HTTP proxies an upstream that fails mesh TLS is an upstream not reached (503)."""

    reason = "tls_handshake"


class NotTLSError(TLSHandshakeError):
    reason = "not_tls"


class ProtocolVersionError(TLSHandshakeError):
    """The peer offered only TLS 1.2 or older; mesh connections are TLS 1.3 only."""

    reason = "protocol_version"


class NoClientCertError(TLSHandshakeError):
    reason = "no_client_cert"


class TLSAlertError(TLSHandshakeError):
    """The peer refused our handshake with an alert (it did not accept our certificate, or our version)."""

    reason = "tls_alert"


class HandshakeEOFError(TLSHandshakeError):
    reason = "tls_handshake_eof"


class AlpnError(TLSHandshakeError):
    reason = "alpn"


class PeerRejectedError(TLSHandshakeError):
    """The peer's certificate chain failed our SVID verification; ``rejection`` says how."""

    reason = "peer_rejected"

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(f"peer certificate refused: {rejection}")
        self.rejection = rejection


class UnknownCAError(PeerRejectedError):
    reason = "unknown_ca"


class ExpiredCertError(PeerRejectedError):
    reason = "expired"


class NotYetValidCertError(PeerRejectedError):
    reason = "not_yet_valid"


class BadSvidError(PeerRejectedError):
    reason = "bad_svid"


class PeerIdentityMismatchError(PeerRejectedError):
    reason = "peer_identity_mismatch"


_REJECTED: Final[dict[RejectReason, type[PeerRejectedError]]] = {
    RejectReason.UNKNOWN_CA: UnknownCAError,
    RejectReason.EXPIRED: ExpiredCertError,
    RejectReason.NOT_YET_VALID: NotYetValidCertError,
    RejectReason.BAD_SVID: BadSvidError,
    RejectReason.PEER_IDENTITY_MISMATCH: PeerIdentityMismatchError,
}


def rejected(rejection: Rejection) -> PeerRejectedError:
    return _REJECTED[rejection.reason](rejection)
