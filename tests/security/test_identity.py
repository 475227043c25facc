"""Identity comes from the verified certificate's one Tongban URI SAN, and from nothing else."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given
from hypothesis import strategies as st

from gateway.security.identity import (
    Identity,
    Role,
    identity_from_auth_context,
    identity_uri,
    parse_identity_uri,
)

_KEY = ec.generate_private_key(ec.SECP256R1())


def make_cert(
    *names: x509.GeneralName, usages: list[x509.ObjectIdentifier] | None = None
) -> x509.Certificate:
    """A certificate with the given SANs (self-signed: chain checks are TLS's job)."""
    now = datetime.now(UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(_KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    if usages is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(_KEY, hashes.SHA256())


def auth_context(cert: x509.Certificate, sans: list[bytes] | None = None) -> dict[str, list[bytes]]:
    """What grpc.aio reports for a peer presenting `cert` (SANs as it lists them)."""
    if sans is None:
        try:
            ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            sans = [str(v.value).encode() for v in ext]
        except x509.ExtensionNotFound:
            sans = []
    return {
        "transport_security_type": [b"ssl"],
        "x509_subject_alternative_name": sans,
        "x509_pem_cert": [cert.public_bytes(serialization.Encoding.PEM)],
    }


def uri(value: str) -> x509.UniformResourceIdentifier:
    return x509.UniformResourceIdentifier(value)


# -- URIs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("spiffe://tongban/region/440000", (Role.REGION, "440000")),
        ("spiffe://tongban/region/110000", (Role.REGION, "110000")),
        ("spiffe://tongban/standards/sac-tc1", (Role.STANDARDS_BODY, "sac-tc1")),
        ("spiffe://tongban/ops/alice", (Role.OPS, "alice")),
        ("spiffe://tongban/ops/" + "a" * 63, (Role.OPS, "a" * 63)),
    ],
)
def test_valid_uris_parse(text: str, expected: tuple[Role, str]) -> None:
    assert parse_identity_uri(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "spiffe://tongban/region/440100",  # a prefecture, not a province
        "spiffe://tongban/region/040000",
        "spiffe://tongban/region/44000",
        "spiffe://tongban/region/4400000",
        "spiffe://tongban/region/gd",
        "spiffe://tongban/region/440000/",
        "spiffe://tongban/region/440000/x",
        "spiffe://tongban/region/440000?x=1",
        "spiffe://tongban/region/440000#x",
        "spiffe://tongban/Region/440000",
        "SPIFFE://tongban/region/440000",
        "spiffe://tongban.evil/region/440000",
        "spiffe://evil/region/440000",
        "spiffe://tongban/gateway",
        "spiffe://tongban/admin/alice",
        "spiffe://tongban/ops/",
        "spiffe://tongban/ops/Alice",
        "spiffe://tongban/ops/al_ice",
        "spiffe://tongban/ops/al ice",
        "spiffe://tongban/ops/" + "a" * 64,
        "spiffe://tongban/standards/sac\n",
        " spiffe://tongban/ops/alice",
        "",
    ],
)
def test_malformed_uris_are_not_identities(text: str) -> None:
    assert parse_identity_uri(text) is None


@given(
    st.sampled_from(list(Role)),
    st.from_regex(r"[a-z0-9-]{1,63}", fullmatch=True),
    st.from_regex(r"[1-9][0-9]0000", fullmatch=True),
)
def test_uri_round_trip(role: Role, name: str, province: str) -> None:
    chosen = province if role is Role.REGION else name
    assert parse_identity_uri(identity_uri(role, chosen)) == (role, chosen)
    assert Identity(role, chosen, 1).uri == identity_uri(role, chosen)


@given(st.text(max_size=80))
def test_any_text_parses_only_to_its_canonical_uri(text: str) -> None:
    parsed = parse_identity_uri(text)
    if parsed is not None:
        assert identity_uri(*parsed) == text


def test_identity_refuses_an_invalid_name() -> None:
    with pytest.raises(ValueError, match="region"):
        Identity(Role.REGION, "440100", 1)
    with pytest.raises(ValueError, match="ops"):
        Identity(Role.OPS, "Root", 1)


# -- From the auth context -----------------------------------------------------------------


def test_region_certificate_gives_its_identity_and_serial() -> None:
    cert = make_cert(
        x509.DNSName("gd.example"),
        uri("spiffe://tongban/region/440000"),
        usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    identity = identity_from_auth_context(auth_context(cert))
    assert identity == Identity(Role.REGION, "440000", cert.serial_number, cert.not_valid_after_utc)
    assert identity is not None
    assert identity.uri == "spiffe://tongban/region/440000"


@pytest.mark.parametrize(
    ("text", "role", "name"),
    [
        ("spiffe://tongban/standards/sac", Role.STANDARDS_BODY, "sac"),
        ("spiffe://tongban/ops/noc-1", Role.OPS, "noc-1"),
    ],
)
def test_standards_and_ops_certificates(text: str, role: Role, name: str) -> None:
    cert = make_cert(uri(text))  # no EKU extension: any usage, clientAuth included
    identity = identity_from_auth_context(auth_context(cert))
    assert identity is not None
    assert (identity.role, identity.name, identity.serial) == (role, name, cert.serial_number)


@pytest.mark.parametrize(
    "names",
    [
        pytest.param([], id="no SAN"),
        pytest.param([x509.DNSName("localhost")], id="DNS only"),
        pytest.param([uri("spiffe://other/region/440000")], id="foreign trust domain"),
        pytest.param(
            [uri("spiffe://tongban/region/440000"), uri("spiffe://tongban/ops/alice")],
            id="two identities",
        ),
        pytest.param(
            [uri("spiffe://tongban/region/440000"), uri("spiffe://tongban/region/440000/x")],
            id="one valid and one malformed",
        ),
        pytest.param(
            [uri("spiffe://tongban/region/440000"), uri("SPIFFE://TONGBAN/ops/alice")],
            id="case variant counts as a second one",
        ),
        pytest.param([uri("spiffe://tongban/region/440100")], id="not a province"),
    ],
)
def test_certificates_without_exactly_one_valid_identity(names: list[x509.GeneralName]) -> None:
    assert identity_from_auth_context(auth_context(make_cert(*names))) is None


def test_a_dns_name_spelled_like_a_uri_is_not_an_identity() -> None:
    # gRPC lists every SAN as bare bytes: only the certificate says which were URIs.
    cert = make_cert(x509.DNSName("spiffe://tongban/ops/alice"))
    assert identity_from_auth_context(auth_context(cert)) is None


def test_san_list_must_match_the_certificate() -> None:
    cert = make_cert(uri("spiffe://tongban/region/440000"))
    forged = auth_context(cert, sans=[b"spiffe://tongban/region/110000"])
    assert identity_from_auth_context(forged) is None


def test_a_server_only_certificate_is_not_a_client_identity() -> None:
    cert = make_cert(
        uri("spiffe://tongban/region/440000"), usages=[ExtendedKeyUsageOID.SERVER_AUTH]
    )
    assert identity_from_auth_context(auth_context(cert)) is None


def test_missing_or_garbled_certificate() -> None:
    cert = make_cert(uri("spiffe://tongban/ops/alice"))
    ctx = auth_context(cert)
    assert identity_from_auth_context({}) is None
    assert identity_from_auth_context({**ctx, "x509_pem_cert": []}) is None
    assert identity_from_auth_context({**ctx, "x509_pem_cert": [b"not a certificate"]}) is None
    assert identity_from_auth_context({**ctx, "x509_pem_cert": ctx["x509_pem_cert"] * 2}) is None
    assert (
        identity_from_auth_context({**ctx, "x509_subject_alternative_name": [b"\xff" * 20]}) is None
    )


def test_identity_ignores_everything_but_sans_and_certificate() -> None:
    cert = make_cert(
        uri("spiffe://tongban/region/440000"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    )
    ctx = {
        **auth_context(cert),
        # Claims an attacker might control elsewhere; identity must not move.
        "x509_common_name": [b"spiffe://tongban/ops/root"],
        "peer_uri": [b"spiffe://tongban/ops/root"],
    }
    identity = identity_from_auth_context(ctx)
    assert identity is not None
    assert identity.uri == "spiffe://tongban/region/440000"
