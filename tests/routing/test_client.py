"""The grpc.aio region client against a real in-process RegionService on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
import datetime
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.rpc import status_pb2
from grpc_status import rpc_status

from gateway.api.v1 import application_pb2, region_pb2, region_pb2_grpc
from gateway.errors import RegionCallError, build_status
from gateway.routing.breaker import CircuitBreaker
from gateway.routing.budget import BudgetConfig, RetryBudget
from gateway.routing.client import GrpcRegionClient, RegionClient, translate_rpc_error
from gateway.routing.policy import RetryPolicy, classify
from gateway.routing.retries import call_with_retries

REGION = "440000"


class FakeRegion(region_pb2_grpc.RegionServiceServicer):
    """A province whose behaviour is chosen by the application id of each delivery."""

    def __init__(self) -> None:
        self.deliveries: Counter[str] = Counter()
        self.receipts: dict[str, str] = {}
        self.flaky_failures = 2

    async def DeliverApplication(
        self, request: region_pb2.DeliverApplicationRequest, context: Any
    ) -> region_pb2.DeliverApplicationResponse:
        application_id = request.application.application_id
        self.deliveries[application_id] += 1
        if application_id == "unavailable-pushback":
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                "busy",
                trailing_metadata=(("grpc-retry-pushback-ms", "250"),),
            )
        if application_id == "refuse-pushback":
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "go away",
                trailing_metadata=(("grpc-retry-pushback-ms", "-1"),),
            )
        if application_id == "rich":
            status = build_status(
                grpc.StatusCode.UNAVAILABLE,
                "PROVINCE_MAINTENANCE",
                "down for maintenance",
                retry_delay=1.5,
            )
            await context.abort_with_status(rpc_status.to_status(status))
        if application_id == "unknown-code":
            status = build_status(
                grpc.StatusCode.NOT_FOUND, "LOCAL_CODE_NOT_FOUND", "no such local matter"
            )
            await context.abort_with_status(rpc_status.to_status(status))
        if application_id == "hang":
            await asyncio.sleep(30)
        if application_id.startswith("flaky") and self.deliveries[application_id] <= (
            self.flaky_failures
        ):
            await context.abort(grpc.StatusCode.UNAVAILABLE, "flaky")
        duplicate = application_id in self.receipts
        receipt = self.receipts.setdefault(application_id, f"R-{len(self.receipts) + 1}")
        return region_pb2.DeliverApplicationResponse(receipt_id=receipt, duplicate=duplicate)

    async def GetApplicationStatus(
        self, request: region_pb2.GetApplicationStatusRequest, context: Any
    ) -> region_pb2.GetApplicationStatusResponse:
        if request.application_id not in self.receipts:
            status = build_status(
                grpc.StatusCode.NOT_FOUND, "APPLICATION_NOT_FOUND", "no such application"
            )
            await context.abort_with_status(rpc_status.to_status(status))
        return region_pb2.GetApplicationStatusResponse(
            state=application_pb2.APPLICATION_STATE_ACCEPTED,
            receipt_id=self.receipts[request.application_id],
        )

    async def FetchLicense(
        self, request: region_pb2.FetchLicenseRequest, context: Any
    ) -> region_pb2.FetchLicenseResponse:
        if request.license_type_code != "known":
            status = build_status(grpc.StatusCode.NOT_FOUND, "LICENSE_NOT_FOUND", "none held")
            await context.abort_with_status(rpc_status.to_status(status))
        return region_pb2.FetchLicenseResponse(license_token="fetched.licence.token")

    async def WithdrawApplication(
        self, request: region_pb2.WithdrawApplicationRequest, context: Any
    ) -> region_pb2.WithdrawApplicationResponse:
        if request.application_id == "decided":
            status = build_status(
                grpc.StatusCode.FAILED_PRECONDITION, "ALREADY_DECIDED", "decided already"
            )
            await context.abort_with_status(rpc_status.to_status(status))
        return region_pb2.WithdrawApplicationResponse()

    async def GetLicenseKeys(
        self, request: region_pb2.GetLicenseKeysRequest, context: Any
    ) -> region_pb2.GetLicenseKeysResponse:
        return region_pb2.GetLicenseKeysResponse(jwks_json='{"keys": []}', max_age_seconds=300)

    async def GetLicenseStatusList(
        self, request: region_pb2.GetLicenseStatusListRequest, context: Any
    ) -> region_pb2.GetLicenseStatusListResponse:
        return region_pb2.GetLicenseStatusListResponse(
            status_list_token="header.claims.signature", max_age_seconds=60
        )


def delivery(application_id: str, attempt: int = 1) -> region_pb2.DeliverApplicationRequest:
    return region_pb2.DeliverApplicationRequest(
        application=application_pb2.Application(application_id=application_id), attempt=attempt
    )


@pytest.fixture
async def province() -> AsyncIterator[tuple[str, FakeRegion]]:
    server = grpc.aio.server()
    servicer = FakeRegion()
    region_pb2_grpc.add_RegionServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", servicer
    await server.stop(None)


@pytest.fixture
async def client(province: tuple[str, FakeRegion]) -> AsyncIterator[GrpcRegionClient]:
    target, _ = province
    region_client = GrpcRegionClient({REGION: target})
    yield region_client
    await region_client.close(None)


def test_grpc_client_implements_the_protocol() -> None:
    implementation: RegionClient = GrpcRegionClient({})
    assert implementation is not None


async def test_deliver_ok(client: GrpcRegionClient, province: tuple[str, FakeRegion]) -> None:
    response = await client.deliver(REGION, delivery("a-1"), 1.0)
    assert (response.receipt_id, response.duplicate) == ("R-1", False)
    again = await client.deliver(REGION, delivery("a-1", attempt=2), 1.0)
    assert (again.receipt_id, again.duplicate) == ("R-1", True)


async def test_get_status_and_license_keys(client: GrpcRegionClient) -> None:
    await client.deliver(REGION, delivery("a-1"), 1.0)
    status = await client.get_status(REGION, "a-1", 1.0)
    assert status.state == application_pb2.APPLICATION_STATE_ACCEPTED
    assert status.receipt_id == "R-1"
    keys = await client.get_license_keys(REGION, 1.0)
    assert (keys.jwks_json, keys.max_age_seconds) == ('{"keys": []}', 300)
    status_list = await client.get_license_status_list(REGION, 1.0)
    assert (status_list.status_list_token, status_list.max_age_seconds) == (
        "header.claims.signature",
        60,
    )


async def test_fetch_license_and_withdraw_and_their_refusals(client: GrpcRegionClient) -> None:
    fetched = await client.fetch_license(
        REGION, region_pb2.FetchLicenseRequest(license_type_code="known"), 1.0
    )
    assert fetched.license_token == "fetched.licence.token"
    with pytest.raises(RegionCallError) as missing:
        await client.fetch_license(
            REGION, region_pb2.FetchLicenseRequest(license_type_code="other"), 1.0
        )
    assert (missing.value.code, missing.value.reason) == (
        grpc.StatusCode.NOT_FOUND,
        "LICENSE_NOT_FOUND",
    )
    await client.withdraw(REGION, region_pb2.WithdrawApplicationRequest(application_id="x"), 1.0)
    with pytest.raises(RegionCallError) as decided:
        await client.withdraw(
            REGION, region_pb2.WithdrawApplicationRequest(application_id="decided"), 1.0
        )
    assert decided.value.reason == "ALREADY_DECIDED"


def test_every_rpc_of_the_contract_has_a_client_method() -> None:
    methods = {
        "DeliverApplication": "deliver",
        "GetApplicationStatus": "get_status",
        "GetLicenseKeys": "get_license_keys",
        "GetLicenseStatusList": "get_license_status_list",
        "FetchLicense": "fetch_license",
        "WithdrawApplication": "withdraw",
    }
    service = region_pb2.DESCRIPTOR.services_by_name["RegionService"]
    assert {m.name for m in service.methods} == set(methods)
    for name in methods.values():
        assert callable(getattr(GrpcRegionClient, name))
        assert name in RegionClient.__dict__


async def test_unavailable_with_pushback_is_translated(client: GrpcRegionClient) -> None:
    with pytest.raises(RegionCallError) as caught:
        await client.deliver(REGION, delivery("unavailable-pushback"), 1.0)
    error = caught.value
    assert (error.region_code, error.code, error.message) == (
        REGION,
        grpc.StatusCode.UNAVAILABLE,
        "busy",
    )
    assert (error.pushback_ms, error.reason, error.retry_delay) == (250, "", None)
    assert isinstance(error.__cause__, grpc.aio.AioRpcError)
    assert classify(error).delay == 0.25


async def test_negative_pushback_is_translated(client: GrpcRegionClient) -> None:
    with pytest.raises(RegionCallError) as caught:
        await client.deliver(REGION, delivery("refuse-pushback"), 1.0)
    assert caught.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.pushback_ms == -1
    assert not classify(caught.value).retry


async def test_rich_status_reason_and_retry_info_are_read(client: GrpcRegionClient) -> None:
    with pytest.raises(RegionCallError) as caught:
        await client.deliver(REGION, delivery("rich"), 1.0)
    error = caught.value
    assert error.code is grpc.StatusCode.UNAVAILABLE
    assert error.message == "down for maintenance"
    assert error.reason == "PROVINCE_MAINTENANCE"
    assert error.retry_delay == pytest.approx(1.5)
    assert error.pushback_ms is None


async def test_province_refusal_keeps_its_reason(client: GrpcRegionClient) -> None:
    with pytest.raises(RegionCallError) as caught:
        await client.deliver(REGION, delivery("unknown-code"), 1.0)
    assert (caught.value.code, caught.value.reason) == (
        grpc.StatusCode.NOT_FOUND,
        "LOCAL_CODE_NOT_FOUND",
    )
    with pytest.raises(RegionCallError) as status_caught:
        await client.get_status(REGION, "never-delivered", 1.0)
    assert status_caught.value.reason == "APPLICATION_NOT_FOUND"


async def test_hang_times_out_as_our_attempt_timeout(client: GrpcRegionClient) -> None:
    with pytest.raises(RegionCallError) as caught:
        await client.deliver(REGION, delivery("hang"), 0.2)
    error = caught.value
    assert error.code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert error.reason == ""
    assert classify(error).reason == "attempt_timeout"


async def test_unconnected_region_is_unavailable(client: GrpcRegionClient) -> None:
    with pytest.raises(RegionCallError) as caught:
        await client.deliver("990000", delivery("a-1"), 1.0)
    error = caught.value
    assert (error.region_code, error.code, error.reason) == (
        "990000",
        grpc.StatusCode.UNAVAILABLE,
        "REGION_NOT_CONNECTED",
    )
    with pytest.raises(RegionCallError):
        await client.get_license_keys("990000", 1.0)


async def test_one_channel_per_province_reused(
    province: tuple[str, FakeRegion], monkeypatch: pytest.MonkeyPatch
) -> None:
    target, _ = province
    created: list[object] = []
    real = grpc.aio.insecure_channel

    def counting(*args: Any, **kwargs: Any) -> Any:
        channel = real(*args, **kwargs)
        created.append(channel)
        return channel

    monkeypatch.setattr(grpc.aio, "insecure_channel", counting)
    region_client = GrpcRegionClient({REGION: target, "110000": target})
    try:
        await region_client.deliver(REGION, delivery("a-1"), 1.0)
        await region_client.get_license_keys(REGION, 1.0)
        assert len(created) == 1
        assert region_client.channel(REGION) is created[0]
        await region_client.get_status("110000", "a-1", 1.0)
        assert len(created) == 2
        assert region_client.channel("110000") is created[1]
    finally:
        await region_client.close(0.5)


async def test_closed_client_refuses_calls(province: tuple[str, FakeRegion]) -> None:
    target, _ = province
    region_client = GrpcRegionClient({REGION: target})
    await region_client.deliver(REGION, delivery("a-1"), 1.0)
    await region_client.close(0.5)
    with pytest.raises(RegionCallError) as caught:
        await region_client.deliver(REGION, delivery("a-2"), 1.0)
    assert (caught.value.code, caught.value.reason) == (grpc.StatusCode.CANCELLED, "CLIENT_CLOSED")


async def test_retries_through_the_client_deliver_exactly_once(
    client: GrpcRegionClient, province: tuple[str, FakeRegion]
) -> None:
    _, servicer = province
    policy = RetryPolicy(initial_backoff=0.001, max_backoff=0.01)
    # Two retries per call is far past the default 20% budget: give this province room.
    budget, breaker = RetryBudget(BudgetConfig(ratio=2.0)), CircuitBreaker()
    sent = [f"flaky-{n}" for n in range(3)]
    receipts = []
    for application_id in sent:

        async def attempt(timeout_seconds: float, number: int, app: str = application_id) -> Any:
            return await client.deliver(REGION, delivery(app, number), timeout_seconds)

        response = await call_with_retries(
            attempt,
            region_code=REGION,
            policy=policy,
            budget=budget,
            breaker=breaker,
            deadline=time.monotonic() + 2.0,
        )
        receipts.append(response.receipt_id)
    assert len(set(receipts)) == 3, "each application delivered"
    assert set(servicer.receipts) == set(sent), "no duplicates, nothing lost"
    assert all(servicer.deliveries[a] == 3 for a in sent), "two UNAVAILABLE, then OK"


# --- the one translation, on hand-built errors -----------------------------------------


def rpc_error(
    code: grpc.StatusCode, trailing: tuple[tuple[str, str | bytes], ...], details: str = "x"
) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details=details
    )


def test_translation_ignores_garbage_trailers() -> None:
    error = translate_rpc_error(
        REGION,
        rpc_error(
            grpc.StatusCode.UNAVAILABLE,
            (("grpc-retry-pushback-ms", "soon"), ("grpc-status-details-bin", b"\xff\x00garbage")),
        ),
    )
    assert (error.code, error.pushback_ms, error.reason, error.retry_delay) == (
        grpc.StatusCode.UNAVAILABLE,
        None,
        "",
        None,
    )


def test_translation_ignores_a_status_whose_code_disagrees() -> None:
    status: status_pb2.Status = build_status(
        grpc.StatusCode.NOT_FOUND, "LOCAL_CODE_NOT_FOUND", "x", retry_delay=1.0
    )
    error = translate_rpc_error(
        REGION,
        rpc_error(
            grpc.StatusCode.UNAVAILABLE,
            (("grpc-status-details-bin", status.SerializeToString()),),
        ),
    )
    assert (error.reason, error.retry_delay) == ("", None)


def test_translation_without_trailers_or_details() -> None:
    raw = grpc.aio.AioRpcError(grpc.StatusCode.INTERNAL, grpc.aio.Metadata(), None)
    error = translate_rpc_error(REGION, raw)
    assert (error.code, error.message, error.pushback_ms) == (grpc.StatusCode.INTERNAL, "", None)


# --- TLS ----------------------------------------------------------------------------------


def self_signed() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "province.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("province.test")]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


async def test_secure_channel_with_credentials() -> None:
    key_pem, cert_pem = self_signed()
    server = grpc.aio.server()
    region_pb2_grpc.add_RegionServiceServicer_to_server(FakeRegion(), server)
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key_pem, cert_pem)]))
    await server.start()
    region_client = GrpcRegionClient(
        {REGION: f"127.0.0.1:{port}"},
        credentials=grpc.ssl_channel_credentials(root_certificates=cert_pem),
        channel_options=(("grpc.ssl_target_name_override", "province.test"),),
    )
    try:
        keys = await region_client.get_license_keys(REGION, 2.0)
        assert keys.max_age_seconds == 300
        plaintext = GrpcRegionClient({REGION: f"127.0.0.1:{port}"})
        try:
            with pytest.raises(RegionCallError) as caught:
                await plaintext.get_license_keys(REGION, 1.0)
            assert caught.value.code is grpc.StatusCode.UNAVAILABLE
        finally:
            await plaintext.close(None)
    finally:
        await region_client.close(None)
        await server.stop(None)
