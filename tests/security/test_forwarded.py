"""Calls through the edge proxy: the forwarded certificate is the caller, and only the edge's.

The header is parsed and verified on its own first, then a real gateway over mTLS is called
with the edge proxy's certificate (as Envoy calls it) and with a province's (as a forger would).
`tests/deploy/test_edge.py` runs the same through a real Envoy.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import grpc
import pytest
from conftest import OPS, STANDARDS_BODY, World, rich_error, start_world
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.api.v1 import application_pb2 as pb
from gateway.api.v1 import application_pb2_grpc, catalog_pb2, catalog_pb2_grpc
from gateway.observability.audit_log import verify_audit_log
from gateway.security.forwarded import (
    HEADER,
    ForwardedCertificates,
    MalformedHeader,
    parse_header,
)
from gateway.security.identity import Identity, Role
from gateway.security.pki import EDGE_URI, PkiLayout, generate_dev_pki
from gateway.security.tls import channel_credentials

ORIGIN, TARGET = "440000", "510000"
REGIONS = (ORIGIN, TARGET, "520000", "330000")


def xfcc(pem: bytes) -> str:
    """The header as Envoy writes it with SANITIZE_SET and cert, subject and URI details."""
    cert = x509.load_pem_x509_certificate(pem)
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uri = sans.get_values_for_type(x509.UniformResourceIdentifier)[0]
    except x509.ExtensionNotFound:
        uri = ""
    return (
        f'By={EDGE_URI};Hash={digest};Cert="{quote(pem.decode(), safe="")}";'
        f'Subject="{cert.subject.rfc4514_string()}";URI={uri}'
    )


def pki(path: Path) -> PkiLayout:
    return generate_dev_pki(path, regions=REGIONS, standards_bodies=(STANDARDS_BODY,), ops=(OPS,))


# -- The header ----------------------------------------------------------------------------


def test_envoy_format_is_parsed() -> None:
    value = (
        'By=spiffe://tongban/edge;Hash=ab12;Cert="-----BEGIN%20X";'
        'Subject="CN=a,O=b;c \\"d\\"";URI=spiffe://x;DNS=a.test;dns=b.test'
    )
    assert parse_header(value) == [
        {
            "by": ["spiffe://tongban/edge"],
            "hash": ["ab12"],
            "cert": ["-----BEGIN%20X"],
            "subject": ['CN=a,O=b;c "d"'],
            "uri": ["spiffe://x"],
            "dns": ["a.test", "b.test"],
        }
    ]
    assert len(parse_header("By=a;Hash=1,By=b;Hash=2")) == 2


@pytest.mark.parametrize("value", ['Cert="unterminated', "Cert=a;junk", "=a", 'Cert="a\\'])
def test_malformed_headers_are_refused(value: str) -> None:
    with pytest.raises(MalformedHeader):
        parse_header(value)


def test_a_certificate_of_the_federation_names_its_caller(tmp_path: Path) -> None:
    layout = pki(tmp_path)
    forwarded = ForwardedCertificates(layout.ca_cert)
    pem = layout.regions[ORIGIN].cert.read_bytes()
    identity = forwarded.identity([xfcc(pem)])
    assert isinstance(identity, Identity)
    assert (identity.role, identity.name) == (Role.REGION, ORIGIN)
    assert identity.serial == x509.load_pem_x509_certificate(pem).serial_number
    ops = forwarded.identity([xfcc(layout.ops[OPS].cert.read_bytes())])
    assert ops is not None
    assert ops.role is Role.OPS


def test_what_names_no_caller_is_refused(tmp_path: Path) -> None:
    layout = pki(tmp_path / "ours")
    other = pki(tmp_path / "other")
    forwarded = ForwardedCertificates(layout.ca_cert)
    own = layout.regions[ORIGIN].cert.read_bytes()
    refused = {
        "another CA": [xfcc(other.regions[ORIGIN].cert.read_bytes())],
        "a server certificate": [xfcc(layout.region_servers[ORIGIN].cert.read_bytes())],
        "the edge itself": [xfcc(layout.edge.cert.read_bytes())],
        "the CA": [xfcc(layout.ca_cert.read_bytes())],
        "two elements": [xfcc(own) + "," + xfcc(own)],
        "two headers": [xfcc(own), xfcc(own)],
        "no Cert": [f"By={EDGE_URI};URI=spiffe://tongban/region/{ORIGIN}"],
        "not a certificate": ['Cert="-----BEGIN%20CERTIFICATE-----%0Agarbage"'],
        "malformed": ['Cert="open'],
        "nothing": [],
    }
    for what, values in refused.items():
        assert forwarded.identity(values) is None, what
    later = datetime.now(UTC) + timedelta(days=40)
    assert ForwardedCertificates(layout.ca_cert).identity([xfcc(own)], now=later) is None


def test_a_rotated_ca_applies_at_once(tmp_path: Path) -> None:
    layout = pki(tmp_path / "ours")
    forwarded = ForwardedCertificates(layout.ca_cert)
    old = layout.regions[ORIGIN].cert.read_bytes()
    assert forwarded.identity([xfcc(old)]) is not None
    other = pki(tmp_path / "other")
    tmp = layout.ca_cert.with_suffix(".new")
    tmp.write_bytes(other.ca_cert.read_bytes())
    os.replace(tmp, layout.ca_cert)
    assert forwarded.identity([xfcc(old)]) is None
    assert forwarded.identity([xfcc(other.regions[ORIGIN].cert.read_bytes())]) is not None


# -- Through a real gateway ----------------------------------------------------------------


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with start_world(tmp_path, REGIONS, tls=True) as w:
        yield w


async def edge_channel(world: World, pair_name: str = "edge") -> grpc.aio.Channel:
    """A channel presenting the edge proxy's certificate (or a province's, by code)."""
    assert world.pki is not None
    assert world.stack is not None
    pair = world.pki.edge if pair_name == "edge" else world.pki.regions[pair_name]
    credentials = channel_credentials(world.pki.ca_cert, pair.cert, pair.key)
    return await world.stack.enter_async_context(
        grpc.aio.secure_channel(world.gateway.address, credentials)
    )


def forwarding(world: World, code: str) -> tuple[tuple[str, str]]:
    assert world.pki is not None
    return ((HEADER, xfcc(world.pki.regions[code].cert.read_bytes())),)


def denial(error: grpc.aio.AioRpcError) -> str:
    info, _ = rich_error(error)
    return str(info.metadata.get("denial", ""))


LIST = catalog_pb2.ListCatalogVersionsRequest()


async def test_the_edge_calls_as_the_certificate_it_forwards(world: World) -> None:
    edge = application_pb2_grpc.ApplicationServiceStub(await edge_channel(world))
    own = pb.ListApplicationsRequest(region_code=ORIGIN)
    await edge.ListApplications(own, metadata=forwarding(world, ORIGIN))
    # The forwarded province acts only for itself, as it would calling directly.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await edge.ListApplications(own, metadata=forwarding(world, TARGET))
    assert (caught.value.code(), denial(caught.value)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "NOT_OWN_REGION",
    )


async def test_the_edge_alone_is_nobody(world: World) -> None:
    edge = catalog_pb2_grpc.CatalogServiceStub(await edge_channel(world))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await edge.ListCatalogVersions(LIST)
    assert (caught.value.code(), denial(caught.value)) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "NO_IDENTITY",
    )


async def test_a_forwarded_certificate_of_another_ca_is_refused(
    world: World, tmp_path: Path
) -> None:
    other = pki(tmp_path / "other")
    edge = catalog_pb2_grpc.CatalogServiceStub(await edge_channel(world))
    header = xfcc(other.regions[ORIGIN].cert.read_bytes())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await edge.ListCatalogVersions(LIST, metadata=((HEADER, header),))
    assert (caught.value.code(), denial(caught.value)) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "FORWARDED_CERTIFICATE_INVALID",
    )
    info, _ = rich_error(caught.value)
    assert info.domain == "tongban.gov.cn"


async def test_a_province_forwarding_a_certificate_is_refused_and_audited(
    world: World,
) -> None:
    """A province calling the gateway directly with the header, even its own certificate's."""
    forger = application_pb2_grpc.ApplicationServiceStub(await edge_channel(world, TARGET))
    for code in (ORIGIN, TARGET):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await forger.ListApplications(
                pb.ListApplicationsRequest(region_code=code), metadata=forwarding(world, code)
            )
        assert (caught.value.code(), denial(caught.value)) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "NOT_THE_EDGE",
        )
    # Without the header the same channel is served as itself.
    await forger.ListApplications(pb.ListApplicationsRequest(region_code=TARGET))
    await world.gateway.auditor.flush()  # type: ignore[union-attr]
    path = world.gateway.config.audit_path
    assert verify_audit_log(path).ok
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    refused = [r for r in records if r["outcome"] == "NOT_THE_EDGE"]
    assert [r["actor"] for r in refused] == [f"spiffe://tongban/region/{TARGET}"] * 2


async def test_revoked_certificates_are_refused_through_the_edge(tmp_path: Path) -> None:
    layout = pki(tmp_path / "pki")

    def serial(path: Path) -> int:
        return x509.load_pem_x509_certificate(path.read_bytes()).serial_number

    denied = frozenset({serial(layout.regions[TARGET].cert)})
    async with start_world(tmp_path, REGIONS, tls=True, deny_serials=denied) as world:
        edge = catalog_pb2_grpc.CatalogServiceStub(await edge_channel(world))
        await edge.ListCatalogVersions(LIST, metadata=forwarding(world, ORIGIN))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await edge.ListCatalogVersions(LIST, metadata=forwarding(world, TARGET))
        assert denial(caught.value) == "CERTIFICATE_REVOKED"
    edge_denied = frozenset({serial(layout.edge.cert)})
    async with start_world(tmp_path, REGIONS, tls=True, deny_serials=edge_denied) as world:
        edge = catalog_pb2_grpc.CatalogServiceStub(await edge_channel(world))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await edge.ListCatalogVersions(LIST, metadata=forwarding(world, ORIGIN))
        assert denial(caught.value) == "CERTIFICATE_REVOKED"


async def test_the_audit_names_the_forwarded_caller(world: World) -> None:
    edge = application_pb2_grpc.ApplicationServiceStub(await edge_channel(world))
    with pytest.raises(grpc.aio.AioRpcError):
        await edge.ListApplications(
            pb.ListApplicationsRequest(region_code=ORIGIN), metadata=forwarding(world, TARGET)
        )
    await world.gateway.auditor.flush()  # type: ignore[union-attr]
    records = [
        json.loads(line)
        for line in world.gateway.config.audit_path.read_text(encoding="utf-8").splitlines()
    ]
    assert [(r["actor"], r["outcome"]) for r in records] == [
        (f"spiffe://tongban/region/{TARGET}", "NOT_OWN_REGION")
    ]
