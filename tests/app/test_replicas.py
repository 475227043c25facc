"""Two gateway replicas on one PostgreSQL database, in this process: they cooperate through the
database only (each has its own store, pool, change feed, registry and watch hub).

Their watch poll is 30 s, so what reaches a watcher within seconds came through the store's
change feed: a status reported through one replica reaches a watch held on the other; a
duplicate submitted through the other answers the first call's outcome; a catalog version
published through one comes into force on the other, and the other refuses an older one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import grpc
import pytest
from conftest import STANDARDS_BODY, World, eventually, rich_error, start_world
from traffic import TARGET, submission

from gateway.api.v1 import application_pb2 as pb
from gateway.api.v1 import catalog_pb2
from gateway.catalog import signing
from gateway.catalog.signing import PrivateKey
from gateway.storage.location import PostgresConfig
from region_stubs.faults import Faults

ROOT = Path(__file__).resolve().parents[2]
REGIONS = ("440000", "510000")
POLL = 30.0
"""The replicas' watch poll: longer than any wait here, so only the change feed can be heard."""


@contextlib.asynccontextmanager
async def two_replicas(
    tmp_path: Path, postgres_url: str, standards_keys: Mapping[str, Path] | None = None
) -> AsyncIterator[tuple[World, World]]:
    """Replica `a` with the region stubs, replica `b` calling the same stubs."""
    store, keys = PostgresConfig(postgres_url), standards_keys or {}
    async with (
        start_world(
            tmp_path / "a", REGIONS, store=store, watch_poll=POLL, standards_keys=keys
        ) as a,
        start_world(tmp_path / "b", (), store=store, watch_poll=POLL, standards_keys=keys) as b,
    ):
        for code, stub in a.stubs.items():
            b.gateway.client.set_endpoint(code, stub.address)
        yield a, b


async def test_a_watch_on_one_replica_sees_each_status_reported_through_the_other(
    tmp_path: Path, postgres_url: str
) -> None:
    async with two_replicas(tmp_path, postgres_url) as (a, b):
        submitted = await a.applications.SubmitApplication(submission(a, "watched"), timeout=10)
        app = submitted.application
        assert app.state == pb.APPLICATION_STATE_DELIVERED
        seen: list[int] = []

        async def watch() -> None:
            request = pb.WatchApplicationRequest(name=app.name)
            async for item in b.applications.WatchApplication(request, timeout=20):
                seen.append(item.application.state)

        watcher = asyncio.create_task(watch())
        await eventually(lambda: seen == [pb.APPLICATION_STATE_DELIVERED], within=5, what="open")
        delays = []
        for n, state in enumerate((pb.APPLICATION_STATE_ACCEPTED, pb.APPLICATION_STATE_COMPLETED)):
            await a.applications.ReportApplicationStatus(
                pb.ReportApplicationStatusRequest(
                    name=app.name, region_code=TARGET, state=state, event_id=f"report-{n}"
                ),
                timeout=10,
            )

            def reported(state: int = state) -> bool:
                return seen[-1] == state

            delays.append(await eventually(reported, within=5, what="the report", step=0.02))
        await asyncio.wait_for(watcher, 5)  # a terminal state ends the stream
        assert seen == [
            pb.APPLICATION_STATE_DELIVERED,
            pb.APPLICATION_STATE_ACCEPTED,
            pb.APPLICATION_STATE_COMPLETED,
        ]
        assert max(delays) < 2.0, delays


async def test_a_duplicate_through_the_other_replica_answers_the_first_calls_outcome(
    tmp_path: Path, postgres_url: str
) -> None:
    async with two_replicas(tmp_path, postgres_url) as (a, b):
        province = a.stubs[TARGET]
        await province.set_faults(Faults(latency_ms=500))  # the duplicate comes mid-delivery
        before = await province.counters()
        first = asyncio.ensure_future(
            a.applications.SubmitApplication(submission(a, "twice"), timeout=10)
        )
        await asyncio.sleep(0.2)
        started = time.monotonic()
        again = await b.applications.SubmitApplication(submission(a, "twice"), timeout=10)
        waited = time.monotonic() - started
        answer = await first
        assert again.replayed
        assert not answer.replayed
        assert again.application == answer.application
        assert again.application.state == pb.APPLICATION_STATE_DELIVERED
        assert waited < 2.0, "woken by the change feed, not by the 30 s poll"
        after = await province.counters()
        assert after.cases_created - before.cases_created == 1
        assert after.deliveries_received - before.deliveries_received == 1


@pytest.fixture
def body_key() -> PrivateKey:
    return signing.generate_private_key()


def publication(version: str, key: PrivateKey) -> catalog_pb2.PublishCatalogVersionRequest:
    data = json.loads((ROOT / "standards" / "catalog" / "2025.2.json").read_text("utf-8"))
    data["version"] = version
    signed = signing.sign_catalog(json.dumps(data).encode(), key, STANDARDS_BODY)
    return catalog_pb2.PublishCatalogVersionRequest(signed_document=signed)


async def test_a_version_published_through_one_replica_is_in_force_on_the_other(
    tmp_path: Path, postgres_url: str, body_key: PrivateKey
) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "body.pub.pem").write_bytes(signing.public_pem(body_key))
    standards_keys = {STANDARDS_BODY: keys / "body.pub.pem"}
    async with two_replicas(tmp_path, postgres_url, standards_keys=standards_keys) as (a, b):
        current = catalog_pb2.GetCatalogVersionRequest(name="catalogVersions/-")

        async def in_force(world: World) -> str:
            answer = await world.catalog.GetCatalogVersion(current, timeout=5)
            return str(answer.catalog_version.version)

        assert await in_force(b) == "2025.1"
        await a.catalog.PublishCatalogVersion(publication("2025.3", body_key), timeout=30)

        async def published() -> bool:
            return await in_force(b) == "2025.3"

        took = await eventually(published, within=5, what="2025.3 in force on b", step=0.05)
        assert took < 2.0
        for world in (b, a):  # b has it now; either way, an older version is refused
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await world.catalog.PublishCatalogVersion(publication("2025.2", body_key))
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert rich_error(refused.value)[0].reason == "CATALOG_VERSION_ROLLBACK"
