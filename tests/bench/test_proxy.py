"""The benchmark's proxies, against a real region stub process: the bare one forwards bytes and
errors unchanged; the durable one also stores every call with the gateway's two writes, in a
SQLite file or in PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import pytest

from bench import harness, procs
from gateway.api.v1 import application_pb2, region_pb2, region_pb2_grpc

STANDARDS = Path(__file__).resolve().parents[2] / "standards"
LIST = json.loads((STANDARDS / "implementations" / f"{harness.TARGET}.json").read_text("utf-8"))
TARGET_CODE = LIST["entries"][0]["local_code"]


@pytest.fixture
async def stub(tmp_path: Path) -> AsyncIterator[procs.Proc]:
    proc = await procs.start(
        "stub", harness.stub_command(harness.TARGET, tmp_path / "regions", STANDARDS)
    )
    try:
        yield proc
    finally:
        await procs.stop(proc)


async def _proxy(target: str, *extra: str) -> procs.Proc:
    command = [sys.executable, "-m", "bench.proxy", "--port", "0", "--target", target, *extra]
    return await procs.start("proxy", command)


def _delivery(application_id: str) -> region_pb2.DeliverApplicationRequest:
    return region_pb2.DeliverApplicationRequest(
        attempt=1,
        application=application_pb2.Application(
            name=f"applications/{application_id}",
            application_id=application_id,
            request_id=str(uuid.uuid4()),
            origin_region=harness.ORIGIN,
            target_region=harness.TARGET,
            local_matter_code=harness.LOCAL_CODE,
            target_local_matter_code=TARGET_CODE,
        ),
    )


async def _deliver(
    address: str, request: region_pb2.DeliverApplicationRequest
) -> region_pb2.DeliverApplicationResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        response: region_pb2.DeliverApplicationResponse = await region_pb2_grpc.RegionServiceStub(
            channel
        ).DeliverApplication(request, timeout=10)
    return response


async def test_the_durable_proxy_stores_each_call_and_its_reply(
    stub: procs.Proc, tmp_path: Path
) -> None:
    store = tmp_path / "durable" / "store.db"
    proxy = await _proxy(stub.address, "--store", str(store))
    try:
        requests = [_delivery(str(uuid.uuid4())) for _ in range(3)]
        replies = [await _deliver(proxy.address, r) for r in requests]
    finally:
        await procs.stop(proxy)
    with sqlite3.connect(store) as conn:
        rows = conn.execute("SELECT state, lease_owner, next_attempt_time, body FROM applications")
        stored = rows.fetchall()
    assert len(stored) == 3
    delivered = application_pb2.APPLICATION_STATE_DELIVERED
    assert all(
        state == delivered and owner == "" and due is None for state, owner, due, _ in stored
    )
    bodies = {body for *_, body in stored}
    assert bodies == {r.SerializeToString() for r in replies}
    assert all(reply.receipt_id for reply in replies)


async def test_the_durable_proxy_stores_in_postgresql_too(
    stub: procs.Proc, postgres_url: str
) -> None:
    proxy = await _proxy(stub.address, "--store", postgres_url)
    try:
        requests = [_delivery(str(uuid.uuid4())) for _ in range(3)]
        replies = [await _deliver(proxy.address, r) for r in requests]
    finally:
        await procs.stop(proxy)
    conn = await asyncpg.connect(postgres_url)
    try:
        stored = await conn.fetch(
            "SELECT state, lease_owner, next_attempt_time, body FROM applications"
        )
    finally:
        await conn.close()
    delivered = application_pb2.APPLICATION_STATE_DELIVERED
    assert len(stored) == 3
    assert all(
        row["state"] == delivered and row["lease_owner"] == "" and row["next_attempt_time"] is None
        for row in stored
    )
    assert {bytes(row["body"]) for row in stored} == {r.SerializeToString() for r in replies}


async def test_the_bare_proxy_passes_replies_and_errors_on(stub: procs.Proc) -> None:
    proxy = await _proxy(stub.address)
    try:
        request = _delivery(str(uuid.uuid4()))
        direct = await _deliver(stub.address, request)
        through = await _deliver(proxy.address, request)  # the stub deduplicates on the id
        assert through.receipt_id == direct.receipt_id
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _deliver(proxy.address, region_pb2.DeliverApplicationRequest())
    finally:
        await procs.stop(proxy)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
