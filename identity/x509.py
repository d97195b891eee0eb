"""X.509 certificates and keys: the only module that imports ``cryptography``.

Everything else in ``identity`` sees plain Python values (names as text, key usages as strings, times as aware
UTC datetimes), so the SVID rules in ``identity.verify`` read like the standard and a second backend would only
replace this file. Building certificates lives here too: ``CertSpec`` says what a certificate holds, including
the bad shapes the tests need (two URI SANs, a CA leaf, a non-CA intermediate).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Key usage and extended key usage names, as the SVID standard spells them (RFC 5280 4.2.1.3 / 4.2.1.12).
DIGITAL_SIGNATURE: Final = "digitalSignature"
KEY_CERT_SIGN: Final = "keyCertSign"
CRL_SIGN: Final = "cRLSign"
SERVER_AUTH: Final = "serverAuth"
CLIENT_AUTH: Final = "clientAuth"
_KEY_USAGE_FIELDS: Final = {
    DIGITAL_SIGNATURE: "digital_signature",
    "contentCommitment": "content_commitment",
    "keyEncipherment": "key_encipherment",
    "dataEncipherment": "data_encipherment",
    "keyAgreement": "key_agreement",
    KEY_CERT_SIGN: "key_cert_sign",
    CRL_SIGN: "crl_sign",
}
_EKU_NAMES: Final = {ExtendedKeyUsageOID.SERVER_AUTH: SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH: CLIENT_AUTH}
_PEM_CERT_BEGIN: Final = b"-----BEGIN CERTIFICATE-----"
_Ext = TypeVar("_Ext", bound=x509.ExtensionType)


class X509Error(ValueError):
    """Bytes that are not a certificate or key we can use; the message says what is wrong."""


class PrivateKey:
    """A private key (ECDSA P-256 when we generate it)."""

    __slots__ = ("_key",)

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_pem(cls, data: bytes) -> PrivateKey:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise X509Error(f"not an unencrypted PEM private key ({exc})") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise X509Error(f"unsupported key type {type(key).__name__}: expected an ECDSA key")
        return cls(key)

    @property
    def native(self) -> ec.EllipticCurvePrivateKey:
        """The cryptography key, for libraries built on cryptography (pyOpenSSL takes it as is)."""
        return self._key

    def to_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def public_der(self) -> bytes:
        return _public_der(self._key.public_key())


@dataclass(frozen=True, slots=True, kw_only=True)
class CertSpec:
    """What a certificate to build holds. Any combination is allowed: the rules are checked by readers."""

    common_name: str | None = None
    organization: str | None = None
    uris: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    ca: bool = False
    path_length: int | None = None
    key_usage: frozenset[str] = frozenset({DIGITAL_SIGNATURE})
    extended_key_usage: frozenset[str] | None = frozenset({SERVER_AUTH, CLIENT_AUTH})
    not_before: datetime
    not_after: datetime


class Certificate:
    """A parsed certificate with the fields the SVID rules read, as plain values."""

    __slots__ = ("_cert", "der")

    def __init__(self, cert: x509.Certificate) -> None:
        self._cert = cert
        self.der: bytes = cert.public_bytes(serialization.Encoding.DER)

    @classmethod
    def from_der(cls, data: bytes) -> Certificate:
        try:
            return cls(x509.load_der_x509_certificate(data))
        except ValueError as exc:
            raise X509Error(f"not a DER certificate ({exc})") from None

    @property
    def native(self) -> x509.Certificate:
        """The cryptography certificate, for libraries built on cryptography (pyOpenSSL takes it as is)."""
        return self._cert

    def to_pem(self) -> bytes:
        return self._cert.public_bytes(serialization.Encoding.PEM)

    @property
    def subject(self) -> str:
        return self._cert.subject.rfc4514_string()

    @property
    def issuer(self) -> str:
        return self._cert.issuer.rfc4514_string()

    @property
    def serial(self) -> int:
        return self._cert.serial_number

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the DER encoding, hex: what ``openssl x509 -fingerprint -sha256`` prints, without colons."""
        return hashlib.sha256(self.der).hexdigest()

    @property
    def not_before(self) -> datetime:
        return self._cert.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        return self._cert.not_valid_after_utc

    @property
    def is_ca(self) -> bool:
        """basicConstraints cA; an absent extension means not a CA (RFC 5280 4.2.1.9)."""
        constraints = self._extension(x509.BasicConstraints)
        return constraints is not None and constraints.ca

    @property
    def path_length(self) -> int | None:
        constraints = self._extension(x509.BasicConstraints)
        return constraints.path_length if constraints is not None else None

    @property
    def key_usage(self) -> frozenset[str] | None:
        """The key usage bits set, by RFC 5280 name; None when the extension is absent."""
        usage = self._extension(x509.KeyUsage)
        if usage is None:
            return None
        return frozenset(name for name, field in _KEY_USAGE_FIELDS.items() if getattr(usage, field))

    @property
    def extended_key_usage(self) -> frozenset[str] | None:
        """serverAuth/clientAuth by name, other purposes as dotted OIDs; None when the extension is absent."""
        usage = self._extension(x509.ExtendedKeyUsage)
        if usage is None:
            return None
        return frozenset(_EKU_NAMES.get(oid, oid.dotted_string) for oid in usage)

    @property
    def uri_sans(self) -> tuple[str, ...]:
        names = self._extension(x509.SubjectAlternativeName)
        return tuple(names.get_values_for_type(x509.UniformResourceIdentifier)) if names is not None else ()

    @property
    def dns_sans(self) -> tuple[str, ...]:
        names = self._extension(x509.SubjectAlternativeName)
        return tuple(names.get_values_for_type(x509.DNSName)) if names is not None else ()

    def issued_by(self, issuer: Certificate) -> bool:
        """True when ``issuer``'s subject is our issuer and its key made our signature."""
        try:
            self._cert.verify_directly_issued_by(issuer._cert)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            return False
        return True

    def matches_key(self, key: PrivateKey) -> bool:
        return _public_der(self._cert.public_key()) == key.public_der()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Certificate) and other.der == self.der

    def __hash__(self) -> int:
        return hash(self.der)

    def __repr__(self) -> str:
        return f"<Certificate subject={self.subject!r} uris={list(self.uri_sans)} serial={self.serial:x}>"

    def _extension(self, kind: type[_Ext]) -> _Ext | None:
        try:
            return self._cert.extensions.get_extension_for_class(kind).value
        except x509.ExtensionNotFound:
            return None


def load_pem_certificates(data: bytes) -> list[Certificate]:
    """Every certificate in a PEM file, in order; X509Error when there is none or one is malformed."""
    if _PEM_CERT_BEGIN not in data:
        raise X509Error("no PEM certificate in it")
    try:
        return [Certificate(cert) for cert in x509.load_pem_x509_certificates(data)]
    except ValueError as exc:
        raise X509Error(f"malformed PEM certificate ({exc})") from None


def pem_of(certs: Iterable[Certificate]) -> bytes:
    return b"".join(cert.to_pem() for cert in certs)


def build_certificate(
    spec: CertSpec, subject_key: PrivateKey, *, issuer: tuple[Certificate, PrivateKey] | None = None
) -> Certificate:
    """Sign a certificate for ``subject_key`` with ``issuer`` (self-signed when None), SHA-256."""
    subject = _name(spec)
    public_key = subject_key._key.public_key()
    signer_cert, signer_key = (issuer[0]._cert, issuer[1]._key) if issuer is not None else (None, subject_key._key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer_cert.subject if signer_cert is not None else subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(spec.not_before.astimezone(UTC))
        .not_valid_after(spec.not_after.astimezone(UTC))
        .add_extension(x509.BasicConstraints(ca=spec.ca, path_length=spec.path_length), critical=True)
        .add_extension(_key_usage(spec.key_usage), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), critical=False)
    )
    if spec.extended_key_usage is not None:
        purposes = [oid for oid, name in _EKU_NAMES.items() if name in spec.extended_key_usage]
        builder = builder.add_extension(x509.ExtendedKeyUsage(purposes), critical=False)
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri) for uri in spec.uris]
    names += [x509.DNSName(name) for name in spec.dns_names]
    if names:
        # RFC 5280 4.2.1.6: with an empty subject the SAN extension is the identity and must be critical.
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=len(subject) == 0)
    return Certificate(builder.sign(signer_key, hashes.SHA256()))


def _name(spec: CertSpec) -> x509.Name:
    attributes = []
    if spec.organization is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, spec.organization))
    if spec.common_name is not None:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, spec.common_name))
    return x509.Name(attributes)


def _key_usage(names: frozenset[str]) -> x509.KeyUsage:
    unknown = names - _KEY_USAGE_FIELDS.keys()
    if unknown:
        raise ValueError(f"unknown key usage {sorted(unknown)}")
    flags = {field: name in names for name, field in _KEY_USAGE_FIELDS.items()}
    return x509.KeyUsage(**flags, encipher_only=False, decipher_only=False)


def _public_der(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
