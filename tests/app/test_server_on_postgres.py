"""The gateway on PostgreSQL, end to end: a real gateway and region stubs with `store` set to a
`postgresql://` URL.

It keeps what it accepted across a restart (on another data directory: nothing is kept in
local files) without ever showing its password; and when its database goes away it answers
UNAVAILABLE with RetryInfo, reports `tongban.store` NOT_SERVING, and recovers by itself when
the database is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import grpc
import pg
import pytest
from conftest import World, eventually, rich_error, start_world
from google.rpc.error_details_pb2 import RetryInfo
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from traffic import submission

from gateway.api.v1 import application_pb2 as pb
from gateway.app.health import STORE_HEALTH
from gateway.storage.location import PostgresConfig


async def get(world: World, application_id: str) -> pb.Application:
    answer = await world.applications.GetApplication(
        pb.GetApplicationRequest(name=f"applications/{application_id}"), timeout=5
    )
    application: pb.Application = answer.application
    return application


async def delivered(world: World, application_id: str) -> bool:
    return (await get(world, application_id)).state == pb.APPLICATION_STATE_DELIVERED


async def test_a_gateway_on_postgresql_keeps_what_it_accepted_across_a_restart(
    tmp_path: Path, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # The test servers trust local connections, so this password is carried but never asked.
    store = PostgresConfig(postgres_url, password="s3cret-pw")
    async with start_world(tmp_path / "first", store=store) as world:
        request = submission(world, "pg-restart")
        first = (await world.applications.SubmitApplication(request, timeout=10)).application
        await eventually(lambda: delivered(world, first.application_id), within=10, what="delivery")
        before = await get(world, first.application_id)

    async with start_world(tmp_path / "second", store=store) as world:
        assert await get(world, first.application_id) == before
        again = await world.applications.SubmitApplication(request, timeout=10)
        assert again.application.application_id == first.application_id  # idempotent
        assert "s3cret" not in repr(world.gateway.config)
    for data_dir in (tmp_path / "first", tmp_path / "second"):
        assert not list(data_dir.glob("*.sqlite3*")), "nothing stored beside the database"
    assert caplog.records, "the gateway logged"
    assert "s3cret" not in caplog.text


@pytest.fixture
def private_server() -> Iterator[pg.PrivatePostgres]:
    """A PostgreSQL of this test's own, to stop and start under a running gateway."""
    server = pg.PrivatePostgres.create()
    try:
        yield server
    finally:
        server.destroy()


async def test_a_gateway_whose_database_goes_away_is_unavailable_then_recovers(
    tmp_path: Path, private_server: pg.PrivatePostgres
) -> None:
    async with start_world(tmp_path, store=PostgresConfig(private_server.url)) as world:
        health = health_pb2_grpc.HealthStub(world.channel)

        async def store_is(expected: int) -> bool:
            answer = await health.Check(
                health_pb2.HealthCheckRequest(service=STORE_HEALTH), timeout=5
            )
            return bool(answer.status == expected)

        first = (
            await world.applications.SubmitApplication(submission(world, "before"), timeout=10)
        ).application
        assert await store_is(health_pb2.HealthCheckResponse.SERVING)

        await asyncio.to_thread(private_server.stop, "fast")
        await eventually(
            lambda: store_is(health_pb2.HealthCheckResponse.NOT_SERVING),
            within=10,
            what="tongban.store NOT_SERVING",
        )
        for call in (
            world.applications.GetApplication(
                pb.GetApplicationRequest(name=f"applications/{first.application_id}"), timeout=10
            ),
            world.applications.SubmitApplication(submission(world, "during"), timeout=10),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert rich_error(refused.value)[0].reason == "STORE_UNAVAILABLE"
            status = rpc_status.from_call(refused.value)
            assert status is not None
            assert any(d.Is(RetryInfo.DESCRIPTOR) for d in status.details), "a retry may help"
        passes = world.gateway.dispatcher.passes

        await asyncio.to_thread(private_server.start)
        await eventually(
            lambda: store_is(health_pb2.HealthCheckResponse.SERVING),
            within=15,
            what="tongban.store SERVING again, without a restart",
        )
        assert (await get(world, first.application_id)).application_id == first.application_id
        retried = await world.applications.SubmitApplication(
            submission(world, "during"), timeout=10
        )
        await eventually(
            lambda: delivered(world, retried.application.application_id),
            within=10,
            what="the retried submission delivered",
        )
        await eventually(
            lambda: world.gateway.dispatcher.passes > passes + 3,
            within=5,
            what="the dispatcher outlived the outage",
        )
