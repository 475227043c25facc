"""mTLS over real grpc.aio servers on 127.0.0.1: who gets in, who is seen, and hot reload.

The servicer is the stock `grpc.health.v1` service; a small interceptor admits calls the way
the gateway does (identity from `auth_context()`, deny list, then the policy) and records the
identity it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from gateway.security.authz import Denial, to_error
from gateway.security.identity import Identity, Role, identity_from_auth_context
from gateway.security.pki import CertKeyPair, PkiLayout, generate_dev_pki, write_atomically
from gateway.security.tls import (
    CertificateReloader,
    DenyList,
    ServerTlsFiles,
    channel_credentials,
    parse_serial,
    server_credentials,
)

WAIT = 10.0
"""Seconds any single wait may take before the test fails."""


def serial_of(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def make_pki(root: Path) -> PkiLayout:
    return generate_dev_pki(
        root, regions=("440000", "110000"), standards_bodies=("sac",), ops=("noc",)
    )


# -- A server that admits calls like the gateway -------------------------------------------


@dataclass
class IdentityGate(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Identity from the certificate, then the deny list; records whom it saw."""

    deny_list: DenyList = field(default_factory=DenyList)
    enforce: bool = True
    seen: list[Identity | None] = field(default_factory=list)
    sans_seen: list[list[bytes]] = field(default_factory=list)

    async def _admit(self, context: grpc.aio.ServicerContext) -> None:
        auth = context.auth_context()
        self.sans_seen.append(list(auth.get("x509_subject_alternative_name", [])))
        identity = identity_from_auth_context(auth)
        self.seen.append(identity)
        decision = self.deny_list.check(identity)
        if self.enforce and not decision.allowed:
            status = to_error(decision).to_status()
            await context.abort_with_status(rpc_status.to_status(status))

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler.unary_unary is not None:
            unary = handler.unary_unary

            async def admit_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                await self._admit(context)
                return await unary(request, context)

            return grpc.unary_unary_rpc_method_handler(
                admit_unary, handler.request_deserializer, handler.response_serializer
            )
        stream = handler.unary_stream

        async def admit_stream(request: Any, context: grpc.aio.ServicerContext) -> None:
            # Coroutine mode works for both styles of streaming handler.
            await self._admit(context)
            responses = stream(request, context)
            if inspect.isasyncgen(responses):
                async for item in responses:
                    await context.write(item)
            else:
                await responses

        return grpc.unary_stream_rpc_method_handler(
            admit_stream, handler.request_deserializer, handler.response_serializer
        )


@dataclass
class Running:
    port: int
    gate: IdentityGate
    health: health.aio.HealthServicer

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def serving(
    credentials: grpc.ServerCredentials,
    deny_list: DenyList | None = None,
    *,
    enforce: bool = True,
) -> AsyncIterator[Running]:
    gate = IdentityGate(deny_list or DenyList(), enforce)
    server = grpc.aio.server(interceptors=[gate])
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        yield Running(port, gate, servicer)
    finally:
        await server.stop(None)


@pytest.fixture
def pki(tmp_path: Path) -> PkiLayout:
    return make_pki(tmp_path / "pki")


def client_channel(running: Running, ca: Path, pair: CertKeyPair) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(running.target, channel_credentials(ca, pair.cert, pair.key))


async def check(channel: grpc.aio.Channel) -> health_pb2.HealthCheckResponse:
    stub = health_pb2_grpc.HealthStub(channel)
    response: health_pb2.HealthCheckResponse = await stub.Check(
        health_pb2.HealthCheckRequest(), timeout=WAIT
    )
    return response


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    raw = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(raw)
    info = error_details_pb2.ErrorInfo()
    (detail,) = status.details
    detail.Unpack(info)
    return info


async def presented_server_serial(running: Running, pki: PkiLayout, pair: CertKeyPair) -> int:
    """Opens a new TLS connection (as an mTLS client) and returns the server cert's serial."""
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(pair.cert, pair.key)
    context.set_alpn_protocols(["h2"])
    async with asyncio.timeout(WAIT):
        _, writer = await asyncio.open_connection(
            "127.0.0.1", running.port, ssl=context, server_hostname="localhost"
        )
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    with contextlib.suppress(ssl.SSLError, ConnectionError):
        await writer.wait_closed()
    return x509.load_der_x509_certificate(der).serial_number


# -- Who gets in ---------------------------------------------------------------------------


@pytest.mark.parametrize("reload", [True, False], ids=["reloading", "static"])
async def test_region_client_is_seen_as_its_identity(pki: PkiLayout, reload: bool) -> None:
    async with (
        serving(server_credentials(pki, reload=reload)) as running,
        client_channel(running, pki.ca_cert, pki.regions["440000"]) as channel,
    ):
        response = await check(channel)
    assert response.status == health_pb2.HealthCheckResponse.SERVING
    assert running.gate.seen == [
        Identity(
            Role.REGION,
            "440000",
            serial_of(pki.regions["440000"].cert),
            x509.load_pem_x509_certificate(
                pki.regions["440000"].cert.read_bytes()
            ).not_valid_after_utc,
        )
    ]


async def test_every_kind_of_client_is_seen(pki: PkiLayout) -> None:
    clients = {
        "spiffe://tongban/region/110000": pki.regions["110000"],
        "spiffe://tongban/standards/sac": pki.standards_bodies["sac"],
        "spiffe://tongban/ops/noc": pki.ops["noc"],
    }
    async with serving(server_credentials(pki)) as running:
        for pair in clients.values():
            async with client_channel(running, pki.ca_cert, pair) as channel:
                await check(channel)
    seen = running.gate.seen
    assert [i.uri if i else None for i in seen] == list(clients)
    assert [i.serial if i else None for i in seen] == [serial_of(p.cert) for p in clients.values()]


async def test_client_certificate_from_another_ca_is_refused(
    pki: PkiLayout, tmp_path: Path
) -> None:
    foreign = make_pki(tmp_path / "foreign")
    # Trusts our server, presents a certificate our CA never signed.
    async with (
        serving(server_credentials(pki)) as running,
        client_channel(running, pki.ca_cert, foreign.regions["440000"]) as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await check(channel)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    assert running.gate.seen == []


async def test_client_without_certificate_is_refused(pki: PkiLayout) -> None:
    async with serving(server_credentials(pki)) as running:
        credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca_cert.read_bytes())
        async with grpc.aio.secure_channel(running.target, credentials) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await check(channel)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    assert running.gate.seen == []


async def test_plaintext_channel_is_refused(pki: PkiLayout) -> None:
    async with (
        serving(server_credentials(pki)) as running,
        grpc.aio.insecure_channel(running.target) as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await check(channel)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    assert running.gate.seen == []


async def test_server_certificate_cannot_be_used_as_client(pki: PkiLayout) -> None:
    # A region stub's certificate carries the region's URI but only serverAuth.
    async with (
        serving(server_credentials(pki)) as running,
        client_channel(running, pki.ca_cert, pki.region_servers["440000"]) as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await check(channel)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    assert running.gate.seen == []


async def test_denied_serial_is_refused_and_others_pass(pki: PkiLayout) -> None:
    revoked = serial_of(pki.regions["440000"].cert)
    deny_list = DenyList.from_config([format(revoked, "X")])
    async with serving(server_credentials(pki), deny_list) as running:
        async with client_channel(running, pki.ca_cert, pki.regions["440000"]) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await check(channel)
        async with client_channel(running, pki.ca_cert, pki.regions["110000"]) as channel:
            await check(channel)
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    info = error_info(refused.value)
    assert (info.reason, dict(info.metadata)) == (
        "UNAUTHENTICATED",
        {"denial": "CERTIFICATE_REVOKED"},
    )
    assert [i.name if i else None for i in running.gate.seen] == ["440000", "110000"]


async def test_gateway_certificate_authenticates_to_a_region_stub(pki: PkiLayout) -> None:
    stub_files = ServerTlsFiles.from_layout(pki, region="440000")
    async with serving(server_credentials(stub_files), enforce=False) as stub:
        async with client_channel(stub, pki.ca_cert, pki.gateway) as channel:
            await check(channel)
        assert await presented_server_serial(stub, pki, pki.gateway) == serial_of(
            pki.region_servers["440000"].cert
        )
    # The stub sees the gateway's URI; it is not a northbound caller identity.
    assert b"spiffe://tongban/gateway" in stub.gate.sans_seen[0]
    assert stub.gate.seen == [None]


# -- Hot reload ----------------------------------------------------------------------------


async def test_reissued_server_certificate_is_used_without_restart(pki: PkiLayout) -> None:
    client = pki.regions["440000"]
    old_serial = serial_of(pki.gateway.cert)
    async with serving(server_credentials(pki)) as running:
        assert await presented_server_serial(running, pki, client) == old_serial
        async with client_channel(running, pki.ca_cert, client) as before:
            # In flight across the rotation: a Watch stream on the old connection.
            watch = health_pb2_grpc.HealthStub(before).Watch(
                health_pb2.HealthCheckRequest(service="svc"), timeout=WAIT
            )
            await running.health.set("svc", health_pb2.HealthCheckResponse.SERVING)
            first = await watch.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING

            pki.gateway.cert.unlink()
            pki.gateway.key.unlink()
            make_pki(pki.root)  # re-issues the missing certificate only
            new_serial = serial_of(pki.gateway.cert)
            assert new_serial != old_serial

            # New connections see the new certificate at once.
            assert await presented_server_serial(running, pki, client) == new_serial
            async with client_channel(running, pki.ca_cert, client) as after:
                await check(after)

            # The stream and the old connection carry on.
            await running.health.set("svc", health_pb2.HealthCheckResponse.NOT_SERVING)
            async with asyncio.timeout(WAIT):
                second = await watch.read()
            assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
            await check(before)
            watch.cancel()
    assert len(running.gate.seen) == 3  # Watch, then Check on each channel
    assert all(i is not None and i.name == "440000" for i in running.gate.seen)


async def test_half_finished_rotation_keeps_serving_the_old_certificate(
    pki: PkiLayout, tmp_path: Path
) -> None:
    client = pki.regions["440000"]
    old_serial = serial_of(pki.gateway.cert)
    spare = make_pki(tmp_path / "spare")  # another gateway certificate, same names
    async with serving(server_credentials(pki)) as running:
        # The new certificate lands before its key: the pair does not match yet.
        write_atomically(pki.gateway.cert, spare.gateway.cert.read_bytes(), mode=0o644)
        assert await presented_server_serial(running, pki, client) == old_serial
        # A half-written file is not a certificate either.
        write_atomically(pki.gateway.cert, b"-----BEGIN CERT", mode=0o644)
        assert await presented_server_serial(running, pki, client) == old_serial
        # Re-issue properly: both files, from our CA.
        pki.gateway.cert.unlink()
        make_pki(pki.root)
        assert await presented_server_serial(running, pki, client) == serial_of(pki.gateway.cert)


def test_reloader_reads_only_on_change(pki: PkiLayout) -> None:
    reloader = CertificateReloader(ServerTlsFiles.from_layout(pki))
    reloader.initial()
    assert reloader.serial == serial_of(pki.gateway.cert)
    assert reloader() is None  # nothing changed
    pki.gateway.key.write_bytes(pki.regions["440000"].key.read_bytes())  # mismatched pair
    assert reloader() is None
    assert reloader.serial == serial_of(pki.gateway.cert)
    pki.gateway.cert.unlink()
    assert reloader() is None  # a missing file mid-rotation
    make_pki(pki.root)
    assert reloader() is not None
    assert reloader.serial == serial_of(pki.gateway.cert)
    assert reloader() is None


def test_reloader_refuses_unusable_files_at_start(pki: PkiLayout) -> None:
    pki.gateway.key.write_bytes(pki.ops["noc"].key.read_bytes())
    with pytest.raises(ValueError, match="does not match"):
        CertificateReloader(ServerTlsFiles.from_layout(pki)).initial()


# -- Deny list -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "serial"),
    [
        (255, 255),
        ("ff", 255),
        ("FF", 255),
        ("0xff", 255),
        ("01:00", 256),
        ("3A:F1:0B", 0x3AF10B),
    ],
)
def test_parse_serial(value: str | int, serial: int) -> None:
    assert parse_serial(value) == serial


@pytest.mark.parametrize("value", ["", "0x", "xyz", "12 34", "-1", 0, -5, "00"])
def test_parse_serial_refuses_garbage(value: str | int) -> None:
    with pytest.raises(ValueError, match="serial"):
        parse_serial(value)


def test_deny_list_check() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    good = Identity(Role.REGION, "440000", 0x10, now + timedelta(days=1))
    revoked = Identity(Role.REGION, "440000", 0x11, now + timedelta(days=1))
    expired = Identity(Role.OPS, "noc", 0x12, now)
    deny_list = DenyList.from_config(["11"])
    assert 0x11 in deny_list
    assert 0x10 not in deny_list
    assert deny_list.check(good, now=now).allowed
    assert deny_list.check(revoked, now=now).denial is Denial.CERTIFICATE_REVOKED
    assert deny_list.check(expired, now=now).denial is Denial.CERTIFICATE_EXPIRED
    assert deny_list.check(None, now=now).denial is Denial.NO_IDENTITY
    assert DenyList().check(Identity(Role.OPS, "noc", 1)).allowed  # no expiry known
