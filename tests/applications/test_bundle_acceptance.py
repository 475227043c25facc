"""Acceptance of 一件事 bundles under faults, against real processes, with counts.

Three region stubs and the gateway run as separate processes on port 0 (the gateway seeded with
catalog 2026.1). 200 bundles of theme YJS0008 are submitted while every province fails 30% of
deliveries with UNAVAILABLE and drops the answer of 10% after committing; the gateway is killed
with SIGKILL halfway and restarted on its data directory, and callers without an answer retry
with the same request id. The test then plays the provinces' clerks: it completes both
prerequisites of every bundle (the insured province issuing its 参保缴费凭证), and counts at
the provinces: every member of every acknowledged bundle is one case, the dependent member's
case never before both its prerequisites completed, nothing lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from conftest import eventually
from test_bundles import CITIZEN, EARLIER, INSURED, PARCEL, RESIDENCE, request

from gateway.api.v1 import application_pb2 as pb
from gateway.api.v1 import application_pb2_grpc, bundle_pb2, bundle_pb2_grpc
from gateway.tools.federation import AnnouncedProcess, start_announced, stop_announced
from region_stubs.admin.v1 import admin_pb2, admin_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
STANDARDS = ROOT / "standards"
REGIONS = (INSURED, EARLIER, RESIDENCE)
TOTAL = 200

pytestmark = pytest.mark.slow


@dataclass
class Province:
    code: str
    process: AnnouncedProcess
    data_dir: Path
    channel: grpc.aio.Channel
    admin: admin_pb2_grpc.RegionAdminServiceStub

    async def cases_created(self) -> int:
        counters = await self.admin.GetCounters(admin_pb2.GetCountersRequest())
        return int(counters.cases_created)

    def cases(self) -> dict[str, float]:
        """application id → when the case was created (Unix seconds), from the case file."""
        path = self.data_dir / f"region-{self.code}.sqlite3"
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT application_id, receive_time_us FROM cases").fetchall()
        return {str(a): int(t) / 1e6 for a, t in rows}


@contextlib.asynccontextmanager
async def province(code: str, data_dir: Path) -> AsyncIterator[Province]:
    argv = [sys.executable, "-m", "region_stubs", "--region", code, "--port", "0"]
    argv += ["--data-dir", str(data_dir), "--seed", "11"]
    process = await start_announced(code, argv)
    channel = grpc.aio.insecure_channel(process.address)
    try:
        yield Province(
            code, process, data_dir, channel, admin_pb2_grpc.RegionAdminServiceStub(channel)
        )
    finally:
        await channel.close()
        await stop_announced(process)


@dataclass
class Gateway:
    process: AnnouncedProcess
    bundles: bundle_pb2_grpc.BundleServiceStub
    applications: application_pb2_grpc.ApplicationServiceStub


@contextlib.asynccontextmanager
async def gateway(data_dir: Path, provinces: dict[str, Province]) -> AsyncIterator[Gateway]:
    config = data_dir / "gateway-config.json"
    settings = {
        "TONGBAN_DISPATCH_INTERVAL": "0.1",
        "TONGBAN_REDELIVER_BACKOFF_MAX": "1.0",
        "TONGBAN_GRACE": "1.0",
        "TONGBAN_BOOTSTRAP_CATALOGS": "catalog/2025.1.json,catalog/2026.1.json",
    }
    config.write_text(json.dumps(settings), encoding="utf-8")
    regions = ",".join(f"{c}={p.process.address}" for c, p in provinces.items())
    argv = [
        sys.executable,
        "-c",
        "import sys; from gateway.tools.cli import main; sys.exit(main(sys.argv[1:]))",
        "--log-level",
        "WARNING",
        "gateway",
        "--insecure",
        "--config",
        str(config),
        "--port",
        "0",
        "--metrics-port",
        "-1",
        "--data-dir",
        str(data_dir),
        "--standards-dir",
        str(STANDARDS),
        "--regions",
        regions,
    ]
    process = await start_announced("gateway", argv)
    channel = grpc.aio.insecure_channel(process.address)
    try:
        yield Gateway(
            process,
            bundle_pb2_grpc.BundleServiceStub(channel),
            application_pb2_grpc.ApplicationServiceStub(channel),
        )
    finally:
        await channel.close()
        await stop_announced(process)


def bundle_request(request_id: str) -> bundle_pb2.SubmitBundleRequest:
    return request(request_id=request_id)


async def submit_all(
    gw: Gateway, request_ids: list[str], *, on_ack: Callable[[int], None] | None = None
) -> tuple[dict[str, bundle_pb2.Bundle], set[str]]:
    acknowledged: dict[str, bundle_pb2.Bundle] = {}
    failed: set[str] = set()
    slots = asyncio.Semaphore(16)

    async def one(request_id: str) -> None:
        async with slots:
            try:
                answer = await gw.bundles.SubmitBundle(bundle_request(request_id), timeout=8)
            except grpc.aio.AioRpcError:
                failed.add(request_id)
                return
            acknowledged[request_id] = answer.bundle
            if on_ack is not None:
                on_ack(len(acknowledged))

    await asyncio.gather(*(one(r) for r in request_ids))
    return acknowledged, failed


async def test_200_bundles_under_faults_and_a_sigkill_each_member_once_in_order(
    tmp_path: Path,
) -> None:
    sent = [f"bundle-{i}" for i in range(TOTAL)]
    async with contextlib.AsyncExitStack() as stack:
        provinces = {
            code: await stack.enter_async_context(province(code, tmp_path / "regions"))
            for code in REGIONS
        }
        for p in provinces.values():
            await p.admin.SetFaults(
                admin_pb2.SetFaultsRequest(
                    faults=admin_pb2.FaultSettings(
                        unavailable_fraction=0.3, commit_then_drop_fraction=0.1, latency_ms=2
                    ),
                    seed=11,
                )
            )
        async with gateway(tmp_path, provinces) as first:
            killed = asyncio.Event()

            def kill_halfway(acknowledged: int) -> None:
                if acknowledged >= TOTAL // 2 and not killed.is_set():
                    killed.set()
                    first.process.process.send_signal(signal.SIGKILL)

            before, unanswered = await submit_all(first, sent, on_ack=kill_halfway)
            assert killed.is_set()
        async with gateway(tmp_path, provinces) as second:
            retried, still = await submit_all(second, sorted(unanswered))
            assert still == set()
            acknowledged = {**before, **retried}
            assert len(acknowledged) == TOTAL
            assert len({b.bundle_id for b in acknowledged.values()}) == TOTAL

            def members(member_id: str) -> dict[str, bundle_pb2.BundleMember]:
                return {
                    r: next(m for m in b.members if m.member_id == member_id)
                    for r, b in acknowledged.items()
                }

            records, earlier, pension = members("records"), members("earlier"), members("pension")

            async def prerequisites_cased() -> bool:
                return (
                    await provinces[INSURED].cases_created() >= TOTAL
                    and await provinces[EARLIER].cases_created() >= TOTAL
                )

            await eventually(prerequisites_cased, within=120, what="400 prerequisite cases")
            assert await provinces[RESIDENCE].cases_created() == 0, "no dependant before its time"

            completed_at: dict[str, float] = {}
            slots = asyncio.Semaphore(16)

            async def complete(request_id: str) -> None:
                async with slots:
                    issued = await provinces[INSURED].admin.IssueLicense(
                        admin_pb2.IssueLicenseRequest(
                            license_type_code=PARCEL,
                            license_number=f"JF{uuid.uuid4().hex[:12].upper()}",
                            holder_id_type=pb.ID_TYPE_CITIZEN_ID,
                            holder_id_number=CITIZEN,
                        )
                    )
                    for entry, tokens in (
                        (earlier[request_id], []),
                        (records[request_id], [issued.token]),
                    ):
                        # Before the last report: its prerequisites are not all done yet.
                        completed_at[request_id] = time.time()
                        await second.applications.ReportApplicationStatus(
                            pb.ReportApplicationStatusRequest(
                                name=entry.application,
                                region_code=entry.target_region,
                                state=pb.APPLICATION_STATE_COMPLETED,
                                event_id=f"done-{request_id}-{entry.member_id}",
                                issued_license_tokens=tokens,
                            ),
                            timeout=10,
                        )

            await asyncio.gather(*(complete(r) for r in sent))

            async def dependants_cased() -> bool:
                return await provinces[RESIDENCE].cases_created() >= TOTAL

            await eventually(dependants_cased, within=120, what="200 dependant cases")

            async def all_delivered() -> bool:
                answers = await asyncio.gather(
                    *(
                        second.bundles.GetBundle(
                            bundle_pb2.GetBundleRequest(name=b.name), timeout=10
                        )
                        for b in acknowledged.values()
                    )
                )
                return all(
                    next(m for m in a.bundle.members if m.member_id == "pension").state
                    == pb.APPLICATION_STATE_DELIVERED
                    for a in answers
                )

            await eventually(all_delivered, within=60, what="every dependant DELIVERED")

        cases = {code: p.cases() for code, p in provinces.items()}
        for code, entries in ((INSURED, records), (EARLIER, earlier), (RESIDENCE, pension)):
            expected = sorted(e.application.removeprefix("applications/") for e in entries.values())
            assert sorted(cases[code]) == expected, f"{code}: every member once, nothing else"
        for request_id, entry in pension.items():
            created = cases[RESIDENCE][entry.application.removeprefix("applications/")]
            assert created >= completed_at[request_id], "never before its prerequisites"
        print(
            f"\n[bundles-sigkill] bundles={TOTAL} acknowledged_before_kill={len(before)} "
            f"unanswered_at_kill={len(unanswered)} "
            f"cases={ {c: len(v) for c, v in cases.items()} } "
            f"at={datetime.now(UTC).isoformat(timespec='seconds')}"
        )
