"""Who is calling: the identity carried by a verified client certificate.

Invariants, in plain words:

- A caller's identity comes from one place only: the client certificate that the TLS layer
  has already verified against our CA, as `grpc.aio.ServicerContext.auth_context()` reports
  it. Metadata, `peer()` and request fields are claims, not identities, and are never read.
- The identity is the certificate's one Tongban URI SAN:
  `spiffe://tongban/region/{province}` (a GB/T 2260 province code `XX0000`),
  `spiffe://tongban/standards/{body}` or `spiffe://tongban/ops/{name}`, names in
  `[a-z0-9-]{1,63}`. The match is exact: no case folding, no trailing slash, no query.
- A certificate with no Tongban URI, or with more than one value that looks like one (even a
  malformed one), has no identity: ambiguity is never resolved by picking one.
- The URI must be a real URI SAN of the certificate (not a DNS name spelled like one), and a
  certificate whose extended key usage excludes client authentication (a server
  certificate) is not a client identity.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

TRUST_DOMAIN = "spiffe://tongban/"
"""The prefix of every Tongban identity URI."""

_PREFIX = TRUST_DOMAIN.encode()

SAN_KEY = "x509_subject_alternative_name"
PEM_KEY = "x509_pem_cert"

_NAME = re.compile(r"[a-z0-9-]{1,63}")
_PROVINCE = re.compile(r"[1-9][0-9]0000")
_URI = re.compile(r"spiffe://tongban/(region|standards|ops)/([^/]*)")


class Role(enum.StrEnum):
    """What a caller is; the value is the URI path segment that names it."""

    REGION = "region"
    STANDARDS_BODY = "standards"
    OPS = "ops"


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller."""

    role: Role
    """Region, standards body or operator."""
    name: str
    """The province code (`440000`) for a region, else the body's or operator's name."""
    serial: int
    """Serial number of the client certificate, for the deny list and the audit log."""
    not_after: datetime | None = None
    """When the certificate expires (UTC); None when built without a certificate."""

    def __post_init__(self) -> None:
        if not is_valid_name(self.role, self.name):
            raise ValueError(f"invalid {self.role.value} name {self.name!r}")

    @property
    def uri(self) -> str:
        """The identity as a URI, e.g. `spiffe://tongban/region/440000`."""
        return identity_uri(self.role, self.name)


def is_valid_name(role: Role, name: str) -> bool:
    """True when `name` may name an identity of `role`."""
    pattern = _PROVINCE if role is Role.REGION else _NAME
    return pattern.fullmatch(name) is not None


def identity_uri(role: Role, name: str) -> str:
    """The URI SAN for an identity (the name is not checked here)."""
    return f"{TRUST_DOMAIN}{role.value}/{name}"


def parse_identity_uri(uri: str) -> tuple[Role, str] | None:
    """The role and name of a Tongban identity URI, or None if it is not exactly one."""
    match = _URI.fullmatch(uri)
    if match is None:
        return None
    role, name = Role(match.group(1)), match.group(2)
    return (role, name) if is_valid_name(role, name) else None


@dataclass(frozen=True, slots=True)
class _CertificateFacts:
    serial: int
    uris: frozenset[str]
    client_auth: bool
    not_after: datetime


@lru_cache(maxsize=1024)
def _certificate_facts(pem: bytes) -> _CertificateFacts | None:
    # Cached: a connection presents the same certificate on every call.
    try:
        cert = x509.load_pem_x509_certificate(pem)
        extensions = cert.extensions  # parsed lazily: malformed ones raise here
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        return None
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = frozenset(san.get_values_for_type(x509.UniformResourceIdentifier))
    except x509.ExtensionNotFound:
        uris = frozenset()
    try:
        eku = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        client_auth = ExtendedKeyUsageOID.CLIENT_AUTH in eku
    except x509.ExtensionNotFound:
        client_auth = True  # no EKU extension means any usage
    return _CertificateFacts(cert.serial_number, uris, client_auth, cert.not_valid_after_utc)


def identity_from_certificate(pem: bytes) -> Identity | None:
    """The identity a PEM client certificate carries, or None when it carries none.

    None means: not one parseable certificate, no or several Tongban URIs, a malformed URI, or
    a certificate not meant for client authentication. Whether the certificate is to be
    trusted is the caller's to know (TLS verified it, or `forwarded` did).
    """
    facts = _certificate_facts(pem)
    if facts is None or not facts.client_auth:
        return None
    ours = [uri for uri in facts.uris if uri.lower().startswith(TRUST_DOMAIN)]
    parsed = parse_identity_uri(ours[0]) if len(ours) == 1 else None
    if parsed is None:
        return None
    role, name = parsed
    return Identity(role, name, facts.serial, facts.not_after)


def identity_from_auth_context(auth_context: Mapping[str, Iterable[bytes]]) -> Identity | None:
    """The caller's identity from `context.auth_context()`, or None when it has none.

    None means: not a TLS-verified client certificate, or one without an identity
    (`identity_from_certificate`), or one whose Tongban URI gRPC reports differently.
    """
    candidates = [
        value for value in auth_context.get(SAN_KEY, ()) if value[: len(_PREFIX)].lower() == _PREFIX
    ]
    pems = list(auth_context.get(PEM_KEY, ()))
    if len(candidates) != 1 or len(pems) != 1:
        return None
    identity = identity_from_certificate(pems[0])
    if identity is None or candidates[0] != identity.uri.encode():
        return None
    return identity


@dataclass(frozen=True, slots=True)
class Peer:
    """A TLS-verified client certificate that names a party but no caller (the edge proxy)."""

    serial: int
    """Its serial, for the deny list."""
    not_after: datetime
    """When it expires (UTC)."""


def presented_peer(auth_context: Mapping[str, Iterable[bytes]], uri: str) -> Peer | None:
    """The TLS-verified client certificate if it carries `uri` as a real URI SAN (and allows
    client authentication), else None."""
    pems = list(auth_context.get(PEM_KEY, ()))
    if len(pems) != 1:
        return None
    facts = _certificate_facts(pems[0])
    if facts is None or not facts.client_auth or uri not in facts.uris:
        return None
    return Peer(facts.serial, facts.not_after)


def presents_uri(auth_context: Mapping[str, Iterable[bytes]], uri: str) -> bool:
    """Whether the TLS-verified client certificate carries `uri` as a real URI SAN."""
    return presented_peer(auth_context, uri) is not None
