"""SIGTERM under load: every acknowledged application survives, and is delivered exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import grpc
import pytest
from conftest import STANDARDS, World, start_world
from traffic import ORIGIN, TARGET, submission

from gateway.api.v1 import application_pb2 as pb
from gateway.api.v1 import application_pb2_grpc
from region_stubs.config import StubConfig
from region_stubs.faults import Faults
from region_stubs.server import running_stub

pytestmark = pytest.mark.slow

CLIENTS = 8
ACKS_BEFORE_SIGTERM = 24


async def read_announce(stream: asyncio.StreamReader, event: str) -> dict[str, object]:
    while True:
        line = await stream.readline()
        if not line:
            raise AssertionError(f"the gateway exited before announcing {event!r}")
        with contextlib.suppress(ValueError):
            data = json.loads(line)
            if isinstance(data, dict) and data.get("event") == event:
                return data


async def wait_delivered(world: World, application_ids: list[str]) -> dict[str, int]:
    """The applications' states, once all are DELIVERED or after a bounded wait."""
    states: dict[str, int] = {}
    for _ in range(400):
        for application_id in application_ids:
            states[application_id] = (await world.gateway.records.get(application_id)).state
        if all(s == pb.APPLICATION_STATE_DELIVERED for s in states.values()):
            break
        await asyncio.sleep(0.05)
    return states


async def gateway_process(data_dir: Path, stub_address: str) -> asyncio.subprocess.Process:
    """`tongban gateway` as a child process, with a grace period long enough for the load."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGBAN_")}
    # Plaintext, like the in-process stub (where the gateway has TLS settings, explicitly so).
    env.update(TONGBAN_GRACE="10", TONGBAN_PROBE_INTERVAL="0.2", TONGBAN_INSECURE="true")
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.tools.cli",
        "--log-level",
        "WARNING",
        "gateway",
        "--port",
        "0",
        "--metrics-port",
        "-1",
        "--data-dir",
        str(data_dir),
        "--standards-dir",
        str(STANDARDS),
        "--regions",
        f"{TARGET}={stub_address}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )


async def test_sigterm_under_load_loses_no_acknowledged_application(tmp_path: Path) -> None:
    data_dir = tmp_path / "gateway"
    async with running_stub(
        StubConfig(
            region_code=TARGET,
            implementation_list=STANDARDS / "implementations" / f"{TARGET}.json",
            data_dir=tmp_path / "regions",
            grace=0.5,
        )
    ) as stub:
        # Deliveries take a while, so SIGTERM finds submissions in flight.
        await stub.set_faults(Faults(latency_ms=40, latency_jitter_ms=40))
        process = await gateway_process(data_dir, stub.address)
        assert process.stdout is not None
        try:
            listening = await asyncio.wait_for(read_announce(process.stdout, "listening"), 60)
            acknowledged: dict[str, str] = {}
            enough = asyncio.Event()

            async def client(number: int) -> None:
                async with grpc.aio.insecure_channel(str(listening["address"])) as channel:
                    stub_ = application_pb2_grpc.ApplicationServiceStub(channel)
                    for i in range(10_000):
                        request = template(f"c{number}-{i}")
                        try:
                            response = await stub_.SubmitApplication(request, timeout=20)
                        except grpc.aio.AioRpcError:
                            return  # the gateway stopped accepting: this client is done
                        app = response.application
                        acknowledged[app.application_id] = pb.ApplicationState.Name(app.state)
                        if len(acknowledged) >= ACKS_BEFORE_SIGTERM:
                            enough.set()

            # The submission template needs the catalog: borrow it from a throwaway world.
            async with start_world(tmp_path / "probe", regions=(ORIGIN, TARGET)) as world:
                base = submission(world, "template")

            def template(request_id: str) -> pb.SubmitApplicationRequest:
                request = pb.SubmitApplicationRequest()
                request.CopyFrom(base)
                request.request_id = request_id
                return request

            clients = [asyncio.create_task(client(n)) for n in range(CLIENTS)]
            await asyncio.wait_for(enough.wait(), 120)
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(asyncio.gather(*clients), 60)
            assert await asyncio.wait_for(process.wait(), 60) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

        assert len(acknowledged) >= ACKS_BEFORE_SIGTERM
        await stub.set_faults(Faults())
        # Restart on the same store: every acknowledged application is there, and is
        # delivered (the dispatcher finishes the queued ones) exactly once.
        async with start_world(data_dir, regions=()) as world:
            world.gateway.client.set_endpoint(TARGET, stub.address)
            states = await wait_delivered(world, list(acknowledged))
            assert set(states) == set(acknowledged)
            undelivered = {k: v for k, v in states.items() if v != pb.APPLICATION_STATE_DELIVERED}
            assert undelivered == {}
            stored = await world.gateway.records.list_for_region(
                TARGET, as_origin=False, as_target=True, state=None, limit=10_000, before=None
            )
            delivered_in_store = sum(
                1 for app, _ in stored if app.state == pb.APPLICATION_STATE_DELIVERED
            )
        counters = await stub.counters()
        assert counters.cases_created == delivered_in_store
        assert delivered_in_store >= len(acknowledged)
