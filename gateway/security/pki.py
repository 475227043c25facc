"""A development PKI: one CA and the certificates of a local Tongban federation.

Invariants, in plain words:

- Every key is ECDSA P-256; every private key file is written 0600, atomically (a temporary
  file renamed over the old one), so a reader never sees half a key or half a certificate.
- Certificates are short-lived (30 days by default): Python's gRPC checks no revocation
  lists, so expiry and the gateway's deny list are the only ways a certificate stops working.
- Running it again is safe and cheap: a certificate is kept while it is signed by the current
  CA, matches its key, carries the SANs it should, and has more than `renew_before` left;
  otherwise it is re-issued (new key, new serial). A re-issued CA re-issues everything.
- A leaf never outlives its CA, and the CA is renewed while it still has a leaf's lifetime
  left, so a fresh leaf always gets its full validity.
- Server certificates (the gateway, the edge proxy, each region stub) carry DNS and IP SANs for
  the hosts and the holder's Tongban URI; the gateway's may also authenticate as a client, for
  its calls to the provinces, and so may the edge proxy's, for its calls to the gateway.
  Client certificates carry exactly one Tongban URI and only `clientAuth`.

Layout under `out_dir`: `ca.pem`/`ca.key`, `server/gateway.{pem,key}`, `server/edge.{pem,key}`,
`server/region-{code}.{pem,key}`, `clients/{region|standards|ops}-{name}.{pem,key}`.
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.security.identity import Role, identity_uri, is_valid_name

GATEWAY_URI = "spiffe://tongban/gateway"
"""The URI SAN of the gateway's own certificate (server, and client of the provinces)."""
EDGE_URI = "spiffe://tongban/edge"
"""The URI SAN of the edge proxy's certificate (HTTPS server, and client of the gateway). It is
no caller's identity: the gateway takes the caller from the certificate it forwards."""

DEV_STANDARDS_BODY = "national-standards-body"
"""The standards body of the local federation (`tongban certs`, `tongban up`)."""
DEV_OPS = "ops"
"""The operator of the local federation."""

DEFAULT_VALIDITY = timedelta(days=30)
DEFAULT_CA_VALIDITY = timedelta(days=365)
_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class CertKeyPair:
    """The two PEM files of one certificate."""

    cert: Path
    """The certificate, PEM."""
    key: Path
    """Its private key, PKCS#8 PEM, mode 0600."""


@dataclass(frozen=True, slots=True)
class PkiLayout:
    """Where `generate_dev_pki` put everything."""

    root: Path
    """The output directory."""
    ca_cert: Path
    """The CA certificate every party trusts."""
    ca_key: Path
    """The CA's private key; only the PKI generator reads it."""
    gateway: CertKeyPair
    """The gateway's server certificate (also usable as its client certificate)."""
    edge: CertKeyPair
    """The edge proxy's server certificate (also its client certificate to the gateway)."""
    region_servers: Mapping[str, CertKeyPair]
    """Each region stub's server certificate, by province code."""
    regions: Mapping[str, CertKeyPair]
    """Each province's client certificate, by province code."""
    standards_bodies: Mapping[str, CertKeyPair]
    """Each standards body's client certificate, by name."""
    ops: Mapping[str, CertKeyPair]
    """Each operator's client certificate, by name."""

    def client(self, role: Role, name: str) -> CertKeyPair:
        """The client certificate of one identity."""
        by_role = {
            Role.REGION: self.regions,
            Role.STANDARDS_BODY: self.standards_bodies,
            Role.OPS: self.ops,
        }
        return by_role[role][name]


@dataclass(frozen=True, slots=True)
class _Spec:
    """What one leaf certificate must look like."""

    common_name: str
    dns: frozenset[str]
    ips: frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address]
    uri: str
    usages: frozenset[x509.ObjectIdentifier]


def generate_dev_pki(
    out_dir: Path,
    *,
    regions: Sequence[str],
    standards_bodies: Sequence[str],
    ops: Sequence[str],
    validity: timedelta = DEFAULT_VALIDITY,
    server_hosts: Sequence[str] = ("localhost", "127.0.0.1"),
    renew_before: timedelta | None = None,
    ca_validity: timedelta = DEFAULT_CA_VALIDITY,
    now: datetime | None = None,
) -> PkiLayout:
    """Creates or refreshes the development PKI under `out_dir` and returns its layout.

    `renew_before` (default: a third of `validity`) is how close to expiry a certificate is
    re-issued; `now` is for tests.
    """
    for role, names in (
        (Role.REGION, regions),
        (Role.STANDARDS_BODY, standards_bodies),
        (Role.OPS, ops),
    ):
        for name in names:
            if not is_valid_name(role, name):
                raise ValueError(f"invalid {role.value} name {name!r}")
    if validity <= timedelta(0) or ca_validity < 2 * validity:
        raise ValueError("validity must be positive and ca_validity at least twice as long")
    now = now or datetime.now(UTC)
    renew = validity / 3 if renew_before is None else renew_before
    dns, ips = _split_hosts(server_hosts)

    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (out_dir / "server").mkdir(mode=0o700, exist_ok=True)
    (out_dir / "clients").mkdir(mode=0o700, exist_ok=True)

    ca_files = CertKeyPair(out_dir / "ca.pem", out_dir / "ca.key")
    ca = _ensure_ca(ca_files, now=now, validity=ca_validity, renew_before=validity)

    def ensure(path_stem: Path, spec: _Spec) -> CertKeyPair:
        files = CertKeyPair(path_stem.with_suffix(".pem"), path_stem.with_suffix(".key"))
        if not _leaf_is_current(files, spec, ca[1], now=now, renew_before=renew):
            _issue_leaf(files, spec, ca, now=now, validity=validity)
        return files

    server_usages = frozenset({ExtendedKeyUsageOID.SERVER_AUTH})
    client_usages = frozenset({ExtendedKeyUsageOID.CLIENT_AUTH})
    gateway = ensure(
        out_dir / "server" / "gateway",
        _Spec("tongban-gateway", dns, ips, GATEWAY_URI, server_usages | client_usages),
    )
    edge = ensure(
        out_dir / "server" / "edge",
        _Spec("tongban-edge", dns, ips, EDGE_URI, server_usages | client_usages),
    )
    region_servers = {
        code: ensure(
            out_dir / "server" / f"region-{code}",
            _Spec(f"region-{code}", dns, ips, identity_uri(Role.REGION, code), server_usages),
        )
        for code in regions
    }

    def clients(role: Role, names: Sequence[str]) -> dict[str, CertKeyPair]:
        return {
            name: ensure(
                out_dir / "clients" / f"{role.value}-{name}",
                _Spec(
                    f"{role.value}-{name}",
                    frozenset(),
                    frozenset(),
                    identity_uri(role, name),
                    client_usages,
                ),
            )
            for name in names
        }

    return PkiLayout(
        root=out_dir,
        ca_cert=ca_files.cert,
        ca_key=ca_files.key,
        gateway=gateway,
        edge=edge,
        region_servers=region_servers,
        regions=clients(Role.REGION, regions),
        standards_bodies=clients(Role.STANDARDS_BODY, standards_bodies),
        ops=clients(Role.OPS, ops),
    )


def _split_hosts(
    hosts: Sequence[str],
) -> tuple[frozenset[str], frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    dns: set[str] = set()
    ips: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for host in hosts:
        try:
            ips.add(ipaddress.ip_address(host))
        except ValueError:
            dns.add(host)
    return frozenset(dns), frozenset(ips)


# -- The CA --------------------------------------------------------------------------------

_CaMaterial = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]


def _ensure_ca(
    files: CertKeyPair, *, now: datetime, validity: timedelta, renew_before: timedelta
) -> _CaMaterial:
    loaded = _load_pair(files)
    if loaded is not None:
        key, cert = loaded
        if (
            cert.not_valid_before_utc <= now
            and cert.not_valid_after_utc - now > renew_before
            and _is_ca(cert)
        ):
            return key, cert
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tongban Development CA")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_pair(files, key, cert)
    return key, cert


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


# -- Leaves --------------------------------------------------------------------------------


def _leaf_is_current(
    files: CertKeyPair,
    spec: _Spec,
    ca_cert: x509.Certificate,
    *,
    now: datetime,
    renew_before: timedelta,
) -> bool:
    loaded = _load_pair(files)
    if loaded is None:
        return False
    _, cert = loaded
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    if cert.not_valid_before_utc > now or cert.not_valid_after_utc - now <= renew_before:
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return (
        frozenset(san.get_values_for_type(x509.DNSName)) == spec.dns
        and frozenset(san.get_values_for_type(x509.IPAddress)) == spec.ips
        and san.get_values_for_type(x509.UniformResourceIdentifier) == [spec.uri]
        and frozenset(usages) == spec.usages
    )


def _issue_leaf(
    files: CertKeyPair,
    spec: _Spec,
    ca: _CaMaterial,
    *,
    now: datetime,
    validity: timedelta,
) -> None:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in sorted(spec.dns)]
    sans += [x509.IPAddress(ip) for ip in sorted(spec.ips, key=str)]
    sans.append(x509.UniformResourceIdentifier(spec.uri))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spec.common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(min(now + validity, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(sorted(spec.usages, key=str)), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_pair(files, key, cert)


# -- Files ---------------------------------------------------------------------------------


def _load_pair(files: CertKeyPair) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None:
    """The key and certificate if both exist, parse, and belong together."""
    try:
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return None
    return key, cert


def _write_pair(
    files: CertKeyPair, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate
) -> None:
    # Key first: a reader that pairs the files checks that they match, and waits otherwise.
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomically(files.key, key_pem, mode=0o600)
    write_atomically(files.cert, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


def write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    """Replaces `path` with `data` in one rename; the file has `mode` from its first byte."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
