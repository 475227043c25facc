"""The gateway over mTLS, end to end: who gets in, who may do what, and what is audited.

A real gateway with real region stubs, every hop mutually authenticated: platforms → gateway
(their region certificates), gateway → provinces (the gateway's certificate), provinces →
gateway for status reports (their region certificates).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import OPS, STANDARDS_BODY, World, rich_error, start_world
from cryptography import x509
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from gateway.api.v1 import application_pb2 as pb
from gateway.api.v1 import (
    application_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    region_pb2,
    region_pb2_grpc,
)
from gateway.catalog import signing
from gateway.observability.audit_log import verify_audit_log
from gateway.security.identity import Role
from gateway.security.pki import generate_dev_pki
from gateway.security.ratelimit import RateLimit
from gateway.security.tls import channel_credentials
from region_stubs.admin.v1 import admin_pb2

ORIGIN, TARGET, BYSTANDER = "440000", "510000", "520000"
CITIZEN = "110105199003071239"
TARGET_URI = f"spiffe://tongban/region/{TARGET}"
WAIT = 10.0


def one_to_one_pair(world: World) -> tuple[str, str]:
    """(origin local code, national code) of a cross-region matter both provinces implement
    with exactly one live row."""
    snapshot = world.gateway.registry.snapshot
    latest = snapshot.latest()
    assert latest is not None
    today = datetime.now(UTC).date()
    indexes = snapshot.region_indexes()
    for code, matter in latest.document.matters.items():
        src = [e.local_code for e in indexes[ORIGIN].live_entries(code, today)]
        dst = [e.local_code for e in indexes[TARGET].live_entries(code, today)]
        if (
            matter.cross_region_modes
            and len(src) == 1
            and len(dst) == 1
            and len(indexes[ORIGIN].by_local[src[0]].national_codes) == 1
        ):
            return src[0], code
    raise AssertionError("the bundled data has no 1:1 cross-region pair")


def submission(
    world: World, local_code: str, national: str, request_id: str = "req-1"
) -> pb.SubmitApplicationRequest:
    """A valid submission from ORIGIN to TARGET: every required material as paper."""
    latest = world.gateway.registry.snapshot.latest()
    assert latest is not None
    return pb.SubmitApplicationRequest(
        request_id=request_id,
        origin_region=ORIGIN,
        target_region=TARGET,
        local_matter_code=local_code,
        applicant=pb.Applicant(
            id_type=pb.ID_TYPE_CITIZEN_ID, id_number=CITIZEN, display_name="张三"
        ),
        materials=[
            pb.Material(material_id=m.id, paper=pb.PaperMaterial(description=m.name))
            for m in latest.document.matters[national].materials
            if m.required
        ],
    )


@contextlib.asynccontextmanager
async def tls_world(tmp_path: Path, **overrides: Any) -> AsyncIterator[World]:
    keys = tmp_path / "keys"
    keys.mkdir(exist_ok=True)
    key = signing.generate_private_key()
    (keys / "body.key.pem").write_bytes(signing.private_pem(key))
    (keys / "body.pub.pem").write_bytes(signing.public_pem(key))
    overrides.setdefault("standards_keys", {"national-standards-body": keys / "body.pub.pem"})
    async with start_world(tmp_path, tls=True, **overrides) as world:
        yield world


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with tls_world(tmp_path) as w:
        yield w


async def as_region(world: World, code: str) -> application_pb2_grpc.ApplicationServiceStub:
    return application_pb2_grpc.ApplicationServiceStub(await world.channel_as(Role.REGION, code))


def denial(error: grpc.aio.AioRpcError) -> str:
    info, _ = rich_error(error)
    return str(info.metadata.get("denial", ""))


async def count_applications(world: World) -> int:
    listed = await world.applications.ListApplications(
        pb.ListApplicationsRequest(region_code=ORIGIN, page_size=500)
    )
    return len(listed.applications)


# -- Who may do what -----------------------------------------------------------------------


async def test_journey_over_mtls_on_every_hop(world: World) -> None:
    local, national = one_to_one_pair(world)
    origin = await as_region(world, ORIGIN)
    app = (await origin.SubmitApplication(submission(world, local, national))).application
    assert app.state == pb.APPLICATION_STATE_DELIVERED  # gateway → province over mTLS

    # The province reports back with its own certificate.
    decided = await world.stubs[TARGET].admin.DecideCase(
        admin_pb2.DecideCaseRequest(
            application_id=app.application_id, state=pb.APPLICATION_STATE_ACCEPTED
        )
    )
    assert decided.gateway_state == pb.APPLICATION_STATE_ACCEPTED

    target = await as_region(world, TARGET)
    for reader in (origin, target, world.applications):  # both parties and the operator
        got = await reader.GetApplication(pb.GetApplicationRequest(name=app.name))
        assert got.application.state == pb.APPLICATION_STATE_ACCEPTED

    bystander = await as_region(world, BYSTANDER)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await bystander.GetApplication(pb.GetApplicationRequest(name=app.name))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert denial(caught.value) == "NOT_A_PARTY"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in bystander.WatchApplication(pb.WatchApplicationRequest(name=app.name)):
            pass
    assert denial(caught.value) == "NOT_A_PARTY"
    # An unknown id looks exactly like somebody else's application to a province.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await bystander.GetApplication(
            pb.GetApplicationRequest(name="applications/00000000-0000-4000-8000-000000000000")
        )
    assert denial(caught.value) == "NOT_A_PARTY"


async def test_impersonation_is_refused_and_nothing_is_stored(world: World) -> None:
    local, national = one_to_one_pair(world)
    impostor = await as_region(world, TARGET)  # the certificate says 510000
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await impostor.SubmitApplication(submission(world, local, national))  # origin 440000
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert denial(caught.value) == "NOT_OWN_REGION"
    assert await count_applications(world) == 0


async def test_a_province_lists_and_reports_only_for_itself(world: World) -> None:
    local, national = one_to_one_pair(world)
    origin = await as_region(world, ORIGIN)
    app = (await origin.SubmitApplication(submission(world, local, national))).application
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await origin.ListApplications(pb.ListApplicationsRequest(region_code=TARGET))
    assert denial(caught.value) == "NOT_OWN_REGION"
    own = await origin.ListApplications(pb.ListApplicationsRequest(region_code=ORIGIN))
    assert [a.application_id for a in own.applications] == [app.application_id]

    report = pb.ReportApplicationStatusRequest(
        name=app.name, region_code=TARGET, state=pb.APPLICATION_STATE_ACCEPTED, event_id="e1"
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await origin.ReportApplicationStatus(report)  # a field naming the target is no proof
    assert denial(caught.value) == "NOT_DELIVERED_TO_CALLER"
    target = await as_region(world, TARGET)
    reported = await target.ReportApplicationStatus(report)
    assert reported.application.state == pb.APPLICATION_STATE_ACCEPTED


async def test_the_target_may_report_on_a_queued_application(world: World) -> None:
    """A report on RECEIVED/QUEUED is the lifecycle's proof of delivery: still allowed."""
    local, national = one_to_one_pair(world)
    await world.stubs[TARGET].admin.SetFaults(
        admin_pb2.SetFaultsRequest(faults=admin_pb2.FaultSettings(down=True))
    )
    origin = await as_region(world, ORIGIN)
    app = (
        await origin.SubmitApplication(submission(world, local, national), timeout=10.0)
    ).application
    assert app.state in (pb.APPLICATION_STATE_QUEUED, pb.APPLICATION_STATE_RECEIVED)
    target = await as_region(world, TARGET)
    reported = await target.ReportApplicationStatus(
        pb.ReportApplicationStatusRequest(
            name=app.name, region_code=TARGET, state=pb.APPLICATION_STATE_ACCEPTED, event_id="e1"
        )
    )
    assert reported.application.state == pb.APPLICATION_STATE_ACCEPTED
    states = [e.state for e in reported.application.events]
    assert pb.APPLICATION_STATE_DELIVERED in states


async def test_only_a_standards_body_publishes_and_only_signed(
    world: World, tmp_path: Path
) -> None:
    document = (world.gateway.config.standards_dir / "catalog" / "2025.2.json").read_bytes()
    signed = signing.sign_catalog(
        document, signing.load_private_key(tmp_path / "keys" / "body.key.pem"), STANDARDS_BODY
    )
    request = catalog_pb2.PublishCatalogVersionRequest(signed_document=signed)
    province = catalog_pb2_grpc.CatalogServiceStub(await world.channel_as(Role.REGION, ORIGIN))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await province.PublishCatalogVersion(request)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert denial(caught.value) == "NOT_A_STANDARDS_BODY"

    body = catalog_pb2_grpc.CatalogServiceStub(
        await world.channel_as(Role.STANDARDS_BODY, STANDARDS_BODY)
    )
    forged = signing.sign_catalog(document, signing.generate_private_key(), STANDARDS_BODY)
    for bad in (forged, signed[:-4] + "AAAA", "not a signed document"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await body.PublishCatalogVersion(
                catalog_pb2.PublishCatalogVersionRequest(signed_document=bad)
            )
        assert caught.value.code() in (
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert rich_error(caught.value)[0].reason in (
            "CATALOG_SIGNATURE_INVALID",
            "CATALOG_INVALID",
        )
    published = await body.PublishCatalogVersion(request)
    assert published.catalog_version.name == "catalogVersions/2025.2"


async def test_reflection_is_for_operators(world: World) -> None:
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    province = reflection_pb2_grpc.ServerReflectionStub(await world.channel_as(Role.REGION, ORIGIN))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in province.ServerReflectionInfo(iter([request])):
            pass
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    operator = reflection_pb2_grpc.ServerReflectionStub(world.channel)
    answers = [a async for a in operator.ServerReflectionInfo(iter([request]))]
    names = {s.name for s in answers[0].list_services_response.service}
    assert "gateway.api.v1.ApplicationService" in names


# -- Who gets in ---------------------------------------------------------------------------


async def test_certificate_from_another_ca_is_refused(world: World, tmp_path: Path) -> None:
    other = generate_dev_pki(tmp_path / "other-ca", regions=(ORIGIN,), standards_bodies=(), ops=())
    pair = other.regions[ORIGIN]
    # The client trusts the real CA (so the server passes) but presents a foreign certificate.
    credentials = channel_credentials(world.pki.ca_cert, pair.cert, pair.key)  # type: ignore[union-attr]
    async with grpc.aio.secure_channel(world.gateway.address, credentials) as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListCatalogVersions(catalog_pb2.ListCatalogVersionsRequest(), timeout=WAIT)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_plaintext_to_the_mtls_gateway_fails(world: World) -> None:
    async with grpc.aio.insecure_channel(world.gateway.address) as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListCatalogVersions(catalog_pb2.ListCatalogVersionsRequest(), timeout=WAIT)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_denied_serial_is_refused(tmp_path: Path) -> None:
    pki = generate_dev_pki(
        tmp_path / "pki",
        regions=("440000", "510000", "520000", "330000"),
        standards_bodies=(STANDARDS_BODY,),
        ops=(OPS,),
    )
    serial = x509.load_pem_x509_certificate(pki.regions[ORIGIN].cert.read_bytes()).serial_number
    async with tls_world(tmp_path, deny_serials=frozenset({serial})) as world:
        request = catalog_pb2.ListCatalogVersionsRequest()
        denied = catalog_pb2_grpc.CatalogServiceStub(await world.channel_as(Role.REGION, ORIGIN))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await denied.ListCatalogVersions(request)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert denial(caught.value) == "CERTIFICATE_REVOKED"
        other = catalog_pb2_grpc.CatalogServiceStub(await world.channel_as(Role.REGION, TARGET))
        await other.ListCatalogVersions(request)


async def presented_serial(world: World, pki_client: tuple[Path, Path]) -> int:
    assert world.pki is not None
    context = ssl.create_default_context(cafile=str(world.pki.ca_cert))
    context.load_cert_chain(*pki_client)
    context.set_alpn_protocols(["h2"])
    async with asyncio.timeout(WAIT):
        _, writer = await asyncio.open_connection(
            "127.0.0.1", world.gateway.port, ssl=context, server_hostname="localhost"
        )
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    with contextlib.suppress(ssl.SSLError, ConnectionError):
        await writer.wait_closed()
    return x509.load_der_x509_certificate(der).serial_number


async def test_gateway_certificate_reload_without_restart(world: World, tmp_path: Path) -> None:
    assert world.pki is not None
    client = world.pki.regions[ORIGIN]
    pair = (client.cert, client.key)
    before = await as_region(world, ORIGIN)
    await before.ListApplications(pb.ListApplicationsRequest(region_code=ORIGIN))
    old = await presented_serial(world, pair)

    world.pki.gateway.cert.unlink()
    world.pki.gateway.key.unlink()
    generate_dev_pki(
        world.pki.root,
        regions=tuple(world.stubs),
        standards_bodies=(STANDARDS_BODY,),
        ops=(OPS,),
    )
    new = await presented_serial(world, pair)
    assert new != old
    after = await as_region(world, ORIGIN)
    await after.ListApplications(pb.ListApplicationsRequest(region_code=ORIGIN))
    await before.ListApplications(pb.ListApplicationsRequest(region_code=ORIGIN))  # not dropped


# -- Limits --------------------------------------------------------------------------------


async def test_rate_limit_answers_resource_exhausted_with_retry_info(tmp_path: Path) -> None:
    limits = {"ListCatalogVersions": RateLimit(rate=0.01, burst=2)}
    async with tls_world(tmp_path, rate_limits=limits) as world:
        origin = catalog_pb2_grpc.CatalogServiceStub(await world.channel_as(Role.REGION, ORIGIN))
        other = catalog_pb2_grpc.CatalogServiceStub(await world.channel_as(Role.REGION, TARGET))
        request = catalog_pb2.ListCatalogVersionsRequest()
        await origin.ListCatalogVersions(request)
        await origin.ListCatalogVersions(request)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await origin.ListCatalogVersions(request)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        status = rpc_status.from_call(caught.value)
        assert status is not None
        assert any(d.type_url.endswith("google.rpc.RetryInfo") for d in status.details)
        await other.ListCatalogVersions(request)  # per caller
        await origin.ListMatters(catalog_pb2.ListMattersRequest(parent="catalogVersions/2025.1"))


async def test_oversized_message_is_refused(tmp_path: Path) -> None:
    async with tls_world(tmp_path, max_receive_message_bytes=64 * 1024) as world:
        origin = await as_region(world, ORIGIN)
        request = pb.SubmitApplicationRequest(
            request_id="r",
            origin_region=ORIGIN,
            form_fields=[pb.FormField(key="k", value="x" * 100_000)],
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await origin.SubmitApplication(request)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# -- The audit trail -----------------------------------------------------------------------


async def test_audit_log_records_the_journey_and_the_denials(tmp_path: Path) -> None:
    async with tls_world(tmp_path) as world:
        local, national = one_to_one_pair(world)
        origin = await as_region(world, ORIGIN)
        app = (await origin.SubmitApplication(submission(world, local, national))).application
        await world.stubs[TARGET].admin.DecideCase(
            admin_pb2.DecideCaseRequest(
                application_id=app.application_id, state=pb.APPLICATION_STATE_ACCEPTED
            )
        )
        impostor = await as_region(world, TARGET)
        with pytest.raises(grpc.aio.AioRpcError):
            await impostor.SubmitApplication(submission(world, local, national, request_id="req-2"))
        body = catalog_pb2_grpc.CatalogServiceStub(
            await world.channel_as(Role.STANDARDS_BODY, STANDARDS_BODY)
        )
        forged = signing.sign_catalog(b"{}", signing.generate_private_key(), STANDARDS_BODY)
        with pytest.raises(grpc.aio.AioRpcError):
            await body.PublishCatalogVersion(
                catalog_pb2.PublishCatalogVersionRequest(signed_document=forged)
            )
        path = world.gateway.config.audit_path
    verdict = verify_audit_log(path)
    assert verdict.ok, verdict
    text = path.read_text(encoding="utf-8")
    assert CITIZEN not in text
    assert "张三" not in text
    records = [json.loads(line) for line in text.splitlines()]
    seen = {(r["action"], r["outcome"], r["actor"]) for r in records}
    assert (
        "ApplicationService.SubmitApplication",
        "OK",
        f"spiffe://tongban/region/{ORIGIN}",
    ) in seen
    assert (
        "application.delivered",
        "APPLICATION_STATE_DELIVERED",
        "spiffe://tongban/gateway",
    ) in seen
    accepted = ("application.state_changed", "APPLICATION_STATE_ACCEPTED", TARGET_URI)
    assert accepted in seen
    assert (
        "ApplicationService.SubmitApplication",
        "NOT_OWN_REGION",
        f"spiffe://tongban/region/{TARGET}",
    ) in seen
    body_uri = f"spiffe://tongban/standards/{STANDARDS_BODY}"
    forged_seen = ("CatalogService.PublishCatalogVersion", "CATALOG_SIGNATURE_INVALID", body_uri)
    assert forged_seen in seen
    submitted = next(r for r in records if r["outcome"] == "OK")
    assert set(submitted["personal"]) == {"applicant_id", "applicant_name"}


async def test_insecure_mode_is_loud_and_skips_authorization(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with start_world(tmp_path, (ORIGIN, TARGET)) as world:
        local, national = one_to_one_pair(world)
        # No identities: one plaintext channel acts for any province, as the test suite does.
        app = (
            await world.applications.SubmitApplication(submission(world, local, national))
        ).application
        await world.applications.ReportApplicationStatus(
            pb.ReportApplicationStatusRequest(
                name=app.name, region_code=TARGET, state=pb.APPLICATION_STATE_ACCEPTED, event_id="e"
            )
        )
        path = world.gateway.config.audit_path
    assert any("INSECURE MODE" in r.message and r.levelname == "WARNING" for r in caplog.records)
    actors = {json.loads(line)["actor"] for line in path.read_text("utf-8").splitlines()}
    assert "insecure" in actors


async def test_a_province_cannot_call_another_province_around_the_gateway(world: World) -> None:
    assert world.pki is not None
    pair = world.pki.regions[ORIGIN]
    credentials = channel_credentials(world.pki.ca_cert, pair.cert, pair.key)
    async with grpc.aio.secure_channel(world.stubs[TARGET].address, credentials) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await region_pb2_grpc.RegionServiceStub(channel).GetLicenseKeys(
                region_pb2.GetLicenseKeysRequest()
            )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert denial(caught.value) == "NOT_THE_GATEWAY"
    # The gateway itself gets through (it fetches licence keys the same way).
    gateway = world.pki.gateway
    credentials = channel_credentials(world.pki.ca_cert, gateway.cert, gateway.key)
    async with grpc.aio.secure_channel(world.stubs[TARGET].address, credentials) as channel:
        await region_pb2_grpc.RegionServiceStub(channel).GetLicenseKeys(
            region_pb2.GetLicenseKeysRequest()
        )


async def test_implementation_lists_operators_and_server_certificates(world: World) -> None:
    listing = catalog_pb2.PublishRegionCatalogRequest(
        region_catalog=catalog_pb2.RegionCatalog(
            name=f"regions/{ORIGIN}/catalog",
            entries=[catalog_pb2.RegionCatalogEntry(local_code="L1", national_codes=["x"])],
        ),
        validate_only=True,
    )
    other = catalog_pb2_grpc.CatalogServiceStub(await world.channel_as(Role.REGION, TARGET))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await other.PublishRegionCatalog(listing)
    assert denial(caught.value) == "NOT_OWN_REGION"
    own = catalog_pb2_grpc.CatalogServiceStub(await world.channel_as(Role.REGION, ORIGIN))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await own.PublishRegionCatalog(listing)  # admitted; refused for its content
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    local, national = one_to_one_pair(world)
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # the operator channel
        await world.applications.SubmitApplication(submission(world, local, national))
    assert denial(caught.value) == "NOT_A_REGION"

    # A province's *server* certificate is not a client identity.
    assert world.pki is not None
    server = world.pki.region_servers[ORIGIN]
    credentials = channel_credentials(world.pki.ca_cert, server.cert, server.key)
    async with grpc.aio.secure_channel(world.gateway.address, credentials) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await catalog_pb2_grpc.CatalogServiceStub(channel).ListCatalogVersions(
                catalog_pb2.ListCatalogVersionsRequest()
            )
    assert caught.value.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE)
