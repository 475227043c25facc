"""Shared fixtures: a real gateway on port 0 with real region stubs, on a real SQLite file;
and a real PostgreSQL for the tests that store there.

`world` starts the gateway first (so the stubs know where to report), then one in-process
region stub per province (each a real grpc.aio server on its own port with its own case
store), then points the gateway's channels at them.

`postgres_url` is a fresh, empty schema of a database of this session's own on
`postgres_server` (see `pg`: the running server, else a private one from the installed
binaries, else a failure saying how to install them).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pg
import pytest
from google.rpc.error_details_pb2 import BadRequest, ErrorInfo
from grpc_status import rpc_status

from gateway.api.v1 import application_pb2_grpc, catalog_pb2_grpc, license_pb2_grpc
from gateway.app.config import GatewayConfig
from gateway.app.server import RunningGateway, running_gateway
from gateway.applications.outbox import DeliveryConfig
from gateway.security.identity import Role
from gateway.security.pki import PkiLayout, generate_dev_pki
from gateway.security.tls import ServerTlsFiles, channel_credentials
from region_stubs.config import StubConfig, StubTls
from region_stubs.server import RunningStub, running_stub

ROOT = Path(__file__).resolve().parent.parent
STANDARDS = ROOT / "standards"
WORLD_REGIONS = ("440000", "510000", "520000", "330000")
STANDARDS_BODY = "national-standards-body"
OPS = "noc"


@dataclass
class World:
    """A gateway, its stubs and client stubs for calling the gateway."""

    gateway: RunningGateway
    stubs: dict[str, RunningStub]
    channel: grpc.aio.Channel
    data_dir: Path
    pki: PkiLayout | None = None
    """The dev PKI of a `tls=True` world; `channel` then calls as the operator `noc`."""
    stack: contextlib.AsyncExitStack | None = None
    applications: application_pb2_grpc.ApplicationServiceStub = field(init=False)
    catalog: catalog_pb2_grpc.CatalogServiceStub = field(init=False)
    licenses: license_pb2_grpc.LicenseServiceStub = field(init=False)

    def __post_init__(self) -> None:
        self.applications = application_pb2_grpc.ApplicationServiceStub(self.channel)
        self.catalog = catalog_pb2_grpc.CatalogServiceStub(self.channel)
        self.licenses = license_pb2_grpc.LicenseServiceStub(self.channel)

    async def channel_as(self, role: Role, name: str) -> grpc.aio.Channel:
        """A channel to the gateway presenting the client certificate of `role`/`name`."""
        assert self.pki is not None, "start_world(tls=True) only"
        assert self.stack is not None
        pair = self.pki.client(role, name)
        credentials = channel_credentials(self.pki.ca_cert, pair.cert, pair.key)
        return await self.stack.enter_async_context(
            grpc.aio.secure_channel(self.gateway.address, credentials)
        )


def gateway_config(data_dir: Path, **overrides: object) -> GatewayConfig:
    """A test configuration: port 0, no metrics port, fast dispatcher."""
    values: dict[str, object] = {
        "port": 0,
        "data_dir": data_dir,
        "standards_dir": STANDARDS,
        "metrics_port": -1,
        "grace": 1.0,
        "delivery": DeliveryConfig(dispatch_interval=0.05, redeliver_backoff_max=0.5),
    }
    values.update(overrides)
    return GatewayConfig(**values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def start_world(
    data_dir: Path,
    regions: tuple[str, ...] = WORLD_REGIONS,
    *,
    tls: bool = False,
    **overrides: object,
) -> AsyncIterator[World]:
    """Starts a gateway and its stubs; stops everything on exit.

    With `tls`, a dev PKI under `data_dir/pki` and mTLS everywhere (the stubs report with
    their region certificates); otherwise plaintext, the gateway in insecure mode.
    """
    async with contextlib.AsyncExitStack() as stack:
        pki = None
        if tls:
            pki = generate_dev_pki(
                data_dir / "pki", regions=regions, standards_bodies=(STANDARDS_BODY,), ops=(OPS,)
            )
            overrides.setdefault("tls", ServerTlsFiles.from_layout(pki))
        gateway = await stack.enter_async_context(
            running_gateway(gateway_config(data_dir, **overrides))
        )
        stubs: dict[str, RunningStub] = {}
        for code in regions:
            stubs[code] = await stack.enter_async_context(
                running_stub(
                    StubConfig(
                        region_code=code,
                        implementation_list=STANDARDS / "implementations" / f"{code}.json",
                        data_dir=data_dir / "regions",
                        gateway_address=gateway.address,
                        grace=0.5,
                        tls=None
                        if pki is None
                        else StubTls(
                            pki.ca_cert,
                            pki.region_servers[code].cert,
                            pki.region_servers[code].key,
                            pki.regions[code].cert,
                            pki.regions[code].key,
                        ),
                    )
                )
            )
            gateway.client.set_endpoint(code, stubs[code].address)
        if pki is None:
            channel = grpc.aio.insecure_channel(gateway.address)
        else:
            ops = pki.client(Role.OPS, OPS)
            channel = grpc.aio.secure_channel(
                gateway.address, channel_credentials(pki.ca_cert, ops.cert, ops.key)
            )
        channel = await stack.enter_async_context(channel)
        yield World(gateway, stubs, channel, data_dir, pki, stack)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with start_world(tmp_path) as w:
        yield w


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of the PostgreSQL server of this session (see `pg`), as a role that may create
    databases."""
    with pg.server_url(os.environ) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_database(postgres_server: str) -> Iterator[str]:
    """The URL of this session's own PostgreSQL database (dropped at the end)."""
    with pg.session_database(postgres_server) as url:
        yield url


@pytest.fixture
def postgres_url(postgres_database: str) -> Iterator[str]:
    """A URL to a new, empty schema of the session's database (dropped after the test)."""
    with pg.fresh_schema(postgres_database) as url:
        yield url


def rich_error(error: grpc.aio.AioRpcError) -> tuple[ErrorInfo, BadRequest | None]:
    """The ErrorInfo (exactly one is required) and BadRequest of a failed call."""
    status = rpc_status.from_call(error)
    assert status is not None, "the error carries no google.rpc.Status"
    infos, bad = [], None
    for detail in status.details:
        if detail.Is(ErrorInfo.DESCRIPTOR):
            info = ErrorInfo()
            detail.Unpack(info)
            infos.append(info)
        elif detail.Is(BadRequest.DESCRIPTOR):
            bad = BadRequest()
            detail.Unpack(bad)
    assert len(infos) == 1, f"expected one ErrorInfo, got {len(infos)}"
    assert infos[0].domain == "tongban.gov.cn"
    return infos[0], bad


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], *, within: float, what: str, step: float = 0.1
) -> float:
    """Polls `condition` (sync or async) every `step` seconds until it holds; returns the seconds
    it took. Fails naming `what` once `within` seconds have passed."""
    start = time.monotonic()
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return time.monotonic() - start
        if time.monotonic() - start > within:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(step)
