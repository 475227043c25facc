"""`tongban gateway --workers 2`: two processes on one port, both serving, one shared store,
every queued application delivered exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from gateway.api.v1 import application_pb2 as pb
from gateway.api.v1 import application_pb2_grpc
from gateway.app.workers import worker_argv
from region_stubs.config import StubConfig
from region_stubs.faults import Faults
from region_stubs.server import RunningStub, running_stub

ROOT = Path(__file__).resolve().parents[2]
STANDARDS = ROOT / "standards"
ORIGIN, TARGET = "440000", "510000"
LOCAL_CODE = "11440000MBFYX5N41F2002035011000"  # 异地就医结算备案 in 广东's dialect
CITIZEN = "110105199003071239"


def test_worker_argv_replaces_the_port_and_drops_workers() -> None:
    argv = ["--log-level", "INFO", "gateway", "--workers", "2", "--port=0", "--data-dir", "d"]
    assert worker_argv(argv, 5000) == [
        "--log-level",
        "INFO",
        "gateway",
        "--data-dir",
        "d",
        "--port",
        "5000",
    ]


def submission(request_id: str) -> pb.SubmitApplicationRequest:
    return pb.SubmitApplicationRequest(
        request_id=request_id,
        origin_region=ORIGIN,
        target_region=TARGET,
        local_matter_code=LOCAL_CODE,
        applicant=pb.Applicant(
            id_type=pb.ID_TYPE_CITIZEN_ID, id_number=CITIZEN, display_name="张三"
        ),
        materials=[
            pb.Material(material_id=m, paper=pb.PaperMaterial(description=m))
            for m in ("M01", "M03")
        ],
    )


@contextlib.asynccontextmanager
async def two_workers(
    data_dir: Path, stubs: dict[str, RunningStub]
) -> AsyncIterator[tuple[str, list[int]]]:
    """Runs `tongban gateway --workers 2`; yields its address and the workers' pids."""
    env = {
        **os.environ,
        "TONGBAN_DISPATCH_INTERVAL": "0.05",
        "TONGBAN_REDELIVER_BACKOFF_MAX": "0.3",
        "TONGBAN_DEFAULT_BUDGET": "0.5",
        "TONGBAN_MAX_ATTEMPTS": "1",
        "TONGBAN_GRACE": "1",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.tools.cli",
        "gateway",
        "--insecure",
        "--workers",
        "2",
        "--port",
        "0",
        "--metrics-port",
        "-1",
        "--data-dir",
        str(data_dir),
        "--standards-dir",
        str(STANDARDS),
        "--regions",
        ",".join(f"{c}={s.address}" for c, s in stubs.items()),
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None
    try:
        event: dict[str, object] = {}
        while event.get("event") != "listening":
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            assert line, "the gateway exited before listening"
            with contextlib.suppress(ValueError):
                event = json.loads(line)
        pids = event["pids"]
        assert isinstance(pids, list)
        assert len(pids) == 2
        yield str(event["address"]), [int(p) for p in pids]
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 60)
    assert code == 0


@contextlib.asynccontextmanager
async def stubs(data_dir: Path) -> AsyncIterator[dict[str, RunningStub]]:
    async with contextlib.AsyncExitStack() as stack:
        running = {}
        for code in (ORIGIN, TARGET):
            running[code] = await stack.enter_async_context(
                running_stub(
                    StubConfig(
                        region_code=code,
                        implementation_list=STANDARDS / "implementations" / f"{code}.json",
                        data_dir=data_dir / "regions",
                        grace=0.5,
                    )
                )
            )
        yield running


def established(pid: int, port: int) -> int:
    """TCP connections on local `port` whose socket belongs to process `pid`."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == "01" and fields[9] in inodes:
                    count += 1
    return count


@pytest.mark.slow
async def test_two_workers_share_one_port_and_both_serve(tmp_path: Path) -> None:
    async with stubs(tmp_path) as running, two_workers(tmp_path / "gw", running) as (address, pids):
        port = int(address.rsplit(":", 1)[1])
        # Separate connections (no shared subchannel pool): the kernel spreads connections.
        channels = [
            grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(24)
        ]
        try:
            answers = await asyncio.gather(
                *(
                    application_pb2_grpc.ApplicationServiceStub(ch).SubmitApplication(
                        submission(f"spread-{i}"), timeout=30
                    )
                    for i, ch in enumerate(channels)
                )
            )
            assert all(a.application.state == pb.APPLICATION_STATE_DELIVERED for a in answers)
            served = [established(pid, port) for pid in pids]
        finally:
            for ch in channels:
                await ch.close()
        assert sum(served) == 24
        assert all(n > 0 for n in served), served
        assert (await running[TARGET].counters()).cases_created == 24


@pytest.mark.slow
async def test_two_workers_deliver_each_queued_application_exactly_once(tmp_path: Path) -> None:
    async with stubs(tmp_path) as running, two_workers(tmp_path / "gw", running) as (address, _):
        target = running[TARGET]
        await target.set_faults(Faults(unavailable_fraction=1.0))
        n = 20
        async with grpc.aio.insecure_channel(address) as channel:
            api = application_pb2_grpc.ApplicationServiceStub(channel)
            queued = await asyncio.gather(
                *(api.SubmitApplication(submission(f"queued-{i}"), timeout=30) for i in range(n))
            )
            assert {a.application.state for a in queued} == {pb.APPLICATION_STATE_QUEUED}
            await target.set_faults(None)
            names = [a.application.name for a in queued]
            for _ in range(200):
                states = await asyncio.gather(
                    *(api.GetApplication(pb.GetApplicationRequest(name=nm)) for nm in names)
                )
                if all(s.application.state == pb.APPLICATION_STATE_DELIVERED for s in states):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("not every queued application was delivered")
            await asyncio.sleep(0.5)  # a duplicate delivery would have arrived by now
        after = await target.counters()
        assert after.cases_created == n
        # Every call that got past the injected faults created a case; none was a repeat.
        assert after.deliveries_received - after.faults_injected == n
        assert after.duplicates_suppressed == 0
