"""The development PKI: what it issues, how it protects keys, and that it is idempotent."""

from __future__ import annotations

import ipaddress
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway.security.identity import Role, parse_identity_uri
from gateway.security.pki import EDGE_URI, GATEWAY_URI, CertKeyPair, PkiLayout, generate_dev_pki

REGIONS = ("440000", "110000")


def make(out: Path, **overrides: object) -> PkiLayout:
    args: dict[str, object] = {
        "regions": REGIONS,
        "standards_bodies": ("sac",),
        "ops": ("noc",),
    }
    args.update(overrides)
    return generate_dev_pki(out, **args)  # type: ignore[arg-type]


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def all_pairs(layout: PkiLayout) -> dict[str, CertKeyPair]:
    pairs = {"gateway": layout.gateway, "edge": layout.edge}
    pairs |= {f"server-{k}": v for k, v in layout.region_servers.items()}
    pairs |= {f"region-{k}": v for k, v in layout.regions.items()}
    pairs |= {f"standards-{k}": v for k, v in layout.standards_bodies.items()}
    pairs |= {f"ops-{k}": v for k, v in layout.ops.items()}
    return pairs


def serials(layout: PkiLayout) -> dict[str, int]:
    found = {name: load(pair.cert).serial_number for name, pair in all_pairs(layout).items()}
    found["ca"] = load(layout.ca_cert).serial_number
    return found


def sans(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def usages(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_layout_and_file_modes(tmp_path: Path) -> None:
    layout = make(tmp_path / "pki")
    assert layout.ca_cert == tmp_path / "pki" / "ca.pem"
    assert layout.gateway.cert == tmp_path / "pki" / "server" / "gateway.pem"
    assert layout.region_servers["440000"].key == tmp_path / "pki" / "server" / "region-440000.key"
    assert layout.client(Role.REGION, "110000").cert.name == "region-110000.pem"
    assert layout.client(Role.STANDARDS_BODY, "sac").cert.name == "standards-sac.pem"
    assert layout.client(Role.OPS, "noc").cert.name == "ops-noc.pem"
    keys = [layout.ca_key, *(pair.key for pair in all_pairs(layout).values())]
    assert layout.edge.cert == tmp_path / "pki" / "server" / "edge.pem"
    assert len(keys) == 1 + 2 + 2 + 2 + 1 + 1
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE((tmp_path / "pki").stat().st_mode) == 0o700
    assert not list((tmp_path / "pki").rglob("*.tmp"))


def test_ca_and_chain(tmp_path: Path) -> None:
    layout = make(tmp_path)
    ca = load(layout.ca_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ca_key = serialization.load_pem_private_key(layout.ca_key.read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    assert isinstance(ca_key.curve, ec.SECP256R1)
    for name, pair in all_pairs(layout).items():
        cert = load(pair.cert)
        cert.verify_directly_issued_by(ca)
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        key = serialization.load_pem_private_key(pair.key.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey), name
        assert isinstance(key.curve, ec.SECP256R1)
        assert key.public_key() == cert.public_key()
        assert cert.not_valid_after_utc <= ca.not_valid_after_utc


def test_short_lived_by_default(tmp_path: Path) -> None:
    layout = make(tmp_path)
    cert = load(layout.regions["440000"].cert)
    lifetime = cert.not_valid_after_utc - datetime.now(UTC)
    assert timedelta(days=29) < lifetime <= timedelta(days=30)


def test_server_certificates(tmp_path: Path) -> None:
    layout = make(tmp_path)
    localhost = ipaddress.ip_address("127.0.0.1")
    gateway = load(layout.gateway.cert)
    assert sans(gateway).get_values_for_type(x509.DNSName) == ["localhost"]
    assert sans(gateway).get_values_for_type(x509.IPAddress) == [localhost]
    assert sans(gateway).get_values_for_type(x509.UniformResourceIdentifier) == [GATEWAY_URI]
    # The gateway also authenticates as a client, to the provinces.
    assert usages(gateway) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    # The edge proxy serves HTTPS and calls the gateway as a client, as no caller's identity.
    edge = load(layout.edge.cert)
    assert sans(edge).get_values_for_type(x509.DNSName) == ["localhost"]
    assert sans(edge).get_values_for_type(x509.UniformResourceIdentifier) == [EDGE_URI]
    assert parse_identity_uri(EDGE_URI) is None
    assert usages(edge) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    for code in REGIONS:
        stub = load(layout.region_servers[code].cert)
        assert sans(stub).get_values_for_type(x509.DNSName) == ["localhost"]
        assert sans(stub).get_values_for_type(x509.IPAddress) == [localhost]
        assert sans(stub).get_values_for_type(x509.UniformResourceIdentifier) == [
            f"spiffe://tongban/region/{code}"
        ]
        assert usages(stub) == {ExtendedKeyUsageOID.SERVER_AUTH}


def test_client_certificates_carry_one_identity(tmp_path: Path) -> None:
    layout = make(tmp_path)
    expected = {
        **{layout.regions[c].cert: (Role.REGION, c) for c in REGIONS},
        layout.standards_bodies["sac"].cert: (Role.STANDARDS_BODY, "sac"),
        layout.ops["noc"].cert: (Role.OPS, "noc"),
    }
    for path, identity in expected.items():
        cert = load(path)
        (uri,) = sans(cert).get_values_for_type(x509.UniformResourceIdentifier)
        assert parse_identity_uri(uri) == identity
        assert sans(cert).get_values_for_type(x509.DNSName) == []
        assert usages(cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}


def test_rerun_keeps_valid_material_byte_for_byte(tmp_path: Path) -> None:
    first = make(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    second = make(tmp_path)
    assert second == first
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_new_identities_are_added_without_touching_the_others(tmp_path: Path) -> None:
    before = serials(make(tmp_path))
    after = serials(make(tmp_path, regions=(*REGIONS, "310000"), ops=("noc", "alice")))
    assert {k: after[k] for k in before} == before
    assert set(after) - set(before) == {"server-310000", "region-310000", "ops-alice"}


def test_soon_expiring_and_expired_leaves_are_reissued(tmp_path: Path) -> None:
    before = serials(make(tmp_path))
    now = datetime.now(UTC)
    # 25 of 30 days gone: less than the default third left.
    soon = serials(make(tmp_path, now=now + timedelta(days=25)))
    assert soon["ca"] == before["ca"]
    assert all(soon[k] != before[k] for k in before if k != "ca")
    expired = serials(make(tmp_path, now=now + timedelta(days=25 + 31)))
    assert all(expired[k] != soon[k] for k in soon if k != "ca")


def test_renew_window_is_configurable(tmp_path: Path) -> None:
    before = serials(make(tmp_path))
    later = datetime.now(UTC) + timedelta(days=15)
    assert serials(make(tmp_path, now=later, renew_before=timedelta(days=1))) == before
    assert (
        serials(make(tmp_path, now=later, renew_before=timedelta(days=20)))["gateway"]
        != (before["gateway"])
    )


def test_a_renewed_ca_reissues_everything(tmp_path: Path) -> None:
    before = serials(make(tmp_path))
    # The CA (365 days) has less than a leaf's lifetime (30 days) left.
    layout = make(tmp_path, now=datetime.now(UTC) + timedelta(days=340))
    after = serials(layout)
    assert all(after[k] != before[k] for k in before)
    ca = load(layout.ca_cert)
    for pair in all_pairs(layout).values():
        load(pair.cert).verify_directly_issued_by(ca)


def test_broken_material_is_reissued(tmp_path: Path) -> None:
    layout = make(tmp_path)
    before = serials(layout)
    # A key that belongs to another certificate, and a missing certificate.
    layout.regions["440000"].key.write_bytes(layout.regions["110000"].key.read_bytes())
    layout.ops["noc"].cert.unlink()
    after = serials(make(tmp_path))
    changed = {k for k in before if after[k] != before[k]}
    assert changed == {"region-440000", "ops-noc"}


def test_a_certificate_from_another_ca_is_replaced(tmp_path: Path) -> None:
    layout = make(tmp_path / "a")
    other = make(tmp_path / "b")
    layout.gateway.cert.write_bytes(other.gateway.cert.read_bytes())
    layout.gateway.key.write_bytes(other.gateway.key.read_bytes())
    make(tmp_path / "a")
    load(layout.gateway.cert).verify_directly_issued_by(load(layout.ca_cert))


def test_changed_server_hosts_reissue_server_certificates_only(tmp_path: Path) -> None:
    before = serials(make(tmp_path))
    after = serials(make(tmp_path, server_hosts=("localhost", "gw.test", "::1")))
    changed = {k for k in before if after[k] != before[k]}
    assert changed == {"gateway", "edge", "server-440000", "server-110000"}


@pytest.mark.parametrize(
    "overrides",
    [
        {"regions": ("440100",)},
        {"regions": ("gd",)},
        {"standards_bodies": ("SAC",)},
        {"ops": ("a" * 64,)},
        {"validity": timedelta(0)},
        {"validity": timedelta(days=200)},  # the CA must outlive two leaf lifetimes
    ],
)
def test_invalid_arguments(tmp_path: Path, overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"invalid|validity"):
        make(tmp_path, **overrides)
    assert not (tmp_path / "ca.pem").exists()
