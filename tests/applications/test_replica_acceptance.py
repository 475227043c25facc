"""Acceptance of replicas (the issue's last part), with counts, against real processes.

Three gateway processes (`tongban gateway --store postgresql://…`, each with its own name and
audit chain) share one PostgreSQL database and call one region stub process; they cooperate
through the database only. Callers balance over them as the CLI does (`tools.balancing`:
round_robin, UNAVAILABLE retried with the same request). The province's case file is read
directly to count cases. Run with `pytest -s` to see the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import grpc
import pg
import pytest
from conftest import eventually, rich_error
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_fault_acceptance import (
    LOCAL_CODE,
    ORIGIN,
    STANDARDS,
    TARGET,
    Province,
    gateway_argv,
    province_process,
    report,
    submission,
)

from gateway.api.v1 import application_pb2 as pb
from gateway.api.v1 import application_pb2_grpc, catalog_pb2, catalog_pb2_grpc
from gateway.app.health import STORE_HEALTH
from gateway.catalog import signing
from gateway.tools.balancing import gateway_channel
from gateway.tools.federation import AnnouncedProcess, start_announced, stop_announced

STANDARDS_BODY = "national-standards-body"
WATCH_POLL = 60.0
"""The replicas' watch poll: longer than these tests wait, so a watcher hears only the feed."""


@dataclass
class Replica:
    """A gateway process and clients to it alone."""

    name: str
    process: AnnouncedProcess
    channel: grpc.aio.Channel
    applications: application_pb2_grpc.ApplicationServiceStub
    catalog: catalog_pb2_grpc.CatalogServiceStub
    health: health_pb2_grpc.HealthStub

    @property
    def address(self) -> str:
        return self.process.address

    async def store_serving(self) -> bool:
        answer = await self.health.Check(
            health_pb2.HealthCheckRequest(service=STORE_HEALTH), timeout=5
        )
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


@contextlib.asynccontextmanager
async def replicas(
    data_dir: Path, province: str, store_url: str, count: int = 3, **settings: object
) -> AsyncIterator[list[Replica]]:
    """`count` gateway processes on one store, started one after the other (the first seeds
    the store); each stopped gracefully at the end unless already dead."""
    defaults: dict[str, object] = {
        "TONGBAN_STORE": store_url,
        "TONGBAN_DISPATCH_INTERVAL": 0.1,
        "TONGBAN_REDELIVER_BACKOFF_MAX": 2.0,
        "TONGBAN_GRACE": 1.0,
        "TONGBAN_WATCH_POLL": WATCH_POLL,
        # 40% failures trip the breaker; short open times keep deliveries flowing.
        "TONGBAN_BREAKER_OPEN_BASE": 0.5,
        "TONGBAN_BREAKER_OPEN_MAX": 2.0,
    }
    defaults.update(settings)
    started: list[Replica] = []
    try:
        for n in range(1, count + 1):
            own = data_dir / f"replica-{n}"
            own.mkdir(parents=True)
            argv = gateway_argv(own, province, {**defaults, "TONGBAN_REPLICA": n})
            process = await start_announced(f"replica-{n}", argv)
            channel = grpc.aio.insecure_channel(process.address)
            started.append(
                Replica(
                    str(n),
                    process,
                    channel,
                    application_pb2_grpc.ApplicationServiceStub(channel),
                    catalog_pb2_grpc.CatalogServiceStub(channel),
                    health_pb2_grpc.HealthStub(channel),
                )
            )
        yield started
    finally:
        for replica in started:
            await replica.channel.close()
        await asyncio.gather(*(stop_announced(r.process) for r in started))


@contextlib.asynccontextmanager
async def balanced(
    over: Sequence[Replica],
) -> AsyncIterator[application_pb2_grpc.ApplicationServiceStub]:
    """ApplicationService through a channel balancing over `over`, as `tongban apply` does."""
    target, options = gateway_channel(",".join(r.address for r in over), tls=False)
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        yield application_pb2_grpc.ApplicationServiceStub(channel)


@dataclass
class Load:
    """What the callers of a load saw."""

    acknowledged: dict[str, pb.Application] = field(default_factory=dict)
    """request id → the application the gateway answered with."""
    failed: dict[str, grpc.StatusCode] = field(default_factory=dict)
    """request id → the error of a call that got no application."""
    replayed: set[str] = field(default_factory=set)


async def submit_all(
    applications: application_pb2_grpc.ApplicationServiceStub,
    request_ids: Sequence[str],
    *,
    timeout: float,  # noqa: ASYNC109 - a gRPC deadline for each call
    concurrency: int = 32,
    on_ack: Callable[[int], None] | None = None,
) -> Load:
    load = Load()
    slots = asyncio.Semaphore(concurrency)

    async def one(request_id: str) -> None:
        async with slots:
            try:
                response = await applications.SubmitApplication(
                    submission(request_id), timeout=timeout
                )
            except grpc.aio.AioRpcError as error:
                load.failed[request_id] = error.code()
                return
            load.acknowledged[request_id] = response.application
            if response.replayed:
                load.replayed.add(request_id)
            if on_ack is not None:
                on_ack(len(load.acknowledged))

    await asyncio.gather(*(one(r) for r in request_ids))
    return load


async def until_answered(
    applications: application_pb2_grpc.ApplicationServiceStub, load: Load, *, rounds: int = 10
) -> int:
    """Callers without an answer retry with the same request id until answered (AIP-155);
    returns how many were found stored by their first attempt (replayed)."""
    found = 0
    for _ in range(rounds):
        if not load.failed:
            return found
        again = await submit_all(applications, sorted(load.failed), timeout=10.0)
        load.failed = again.failed
        load.acknowledged.update(again.acknowledged)
        found += len(again.replayed)
    raise AssertionError(f"{len(load.failed)} callers never answered: {set(load.failed.values())}")


async def states(replica: Replica, ids: Sequence[str]) -> dict[int, int]:
    """How many of the applications are in each state, read through `replica`."""
    counts: dict[int, int] = {}
    for start in range(0, len(ids), 50):
        answers = await asyncio.gather(
            *(
                replica.applications.GetApplication(
                    pb.GetApplicationRequest(name=f"applications/{i}"), timeout=10
                )
                for i in ids[start : start + 50]
            )
        )
        for answer in answers:
            counts[answer.application.state] = counts.get(answer.application.state, 0) + 1
    return counts


async def every_case_once(province: Province, ids: set[str], *, within: float) -> float:
    """Waits until the province holds a case for each of `ids`; checks it holds no other and
    none twice; returns the seconds it took."""

    async def all_cased() -> bool:
        return (await province.counters()).cases_created >= len(ids)

    took = await eventually(all_cased, within=within, what=f"{len(ids)} cases at the province")
    cases = province.case_ids()
    assert len(cases) == len(set(cases)), "no application twice"
    assert set(cases) == ids, "one case per acknowledged application, no stranger"
    assert (await province.counters()).cases_created == len(ids)
    return took


# -- acceptance ----------------------------------------------------------------------------


@dataclass
class Watch:
    """A WatchApplication stream held on one replica, and what it yielded."""

    application_id: str
    seen: list[pb.Application] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def states(self) -> list[int]:
        return [app.state for app in self.seen]


async def hold_watch(replica: Replica, application_id: str) -> Watch:
    watch = Watch(application_id)

    async def run() -> None:
        request = pb.WatchApplicationRequest(name=f"applications/{application_id}")
        async for item in replica.applications.WatchApplication(request):
            watch.seen.append(item.application)

    watch.task = asyncio.create_task(run())
    await eventually(lambda: bool(watch.seen), within=10, what="the watch's first message")
    return watch


async def leased_by(store_url: str, pid: int) -> int:
    """Applications awaiting delivery whose lease a process (by pid) holds."""
    conn = await asyncpg.connect(store_url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM applications WHERE next_attempt_time IS NOT NULL "
            "AND lease_owner LIKE $1 AND lease_until > extract(epoch FROM now())",
            f"%-{pid}-%",
        )
        return count
    finally:
        await conn.close()


async def reports_heard(through: Replica, watched_on: Replica, watches: list[Watch]) -> list[float]:
    """Reports ACCEPTED then COMPLETED for each watched application through one replica, each
    heard by its watch on another before the next; returns how long each took to be heard.
    Then checks each stream: ended (COMPLETED is terminal), its last message the stored
    application, and every change made through the other replicas seen, in order."""
    delays: list[float] = []
    for n, state in enumerate((pb.APPLICATION_STATE_ACCEPTED, pb.APPLICATION_STATE_COMPLETED)):
        for watch in watches:
            sent = time.monotonic()
            await through.applications.ReportApplicationStatus(
                pb.ReportApplicationStatusRequest(
                    name=f"applications/{watch.application_id}",
                    region_code=TARGET,
                    state=state,
                    event_id=f"report-{n}",
                ),
                timeout=10,
            )

            def heard(watch: Watch = watch, state: int = state) -> bool:
                return watch.states()[-1] == state

            await eventually(heard, within=5, what="a report heard on the watch", step=0.01)
            delays.append(time.monotonic() - sent)
    for watch in watches:
        assert watch.task is not None
        await asyncio.wait_for(watch.task, 5)
        stored = await watched_on.applications.GetApplication(
            pb.GetApplicationRequest(name=f"applications/{watch.application_id}")
        )
        assert watch.seen[-1] == stored.application, "the last message is the stored state"
        # Opened on a DELIVERED application, or on a QUEUED one a dispatcher delivered later.
        assert watch.states()[:-3] in ([], [pb.APPLICATION_STATE_QUEUED])
        assert watch.states()[-3:] == [
            pb.APPLICATION_STATE_DELIVERED,
            pb.APPLICATION_STATE_ACCEPTED,
            pb.APPLICATION_STATE_COMPLETED,
        ], "each change made through the others, heard in order"
    return delays


@pytest.mark.slow
async def test_three_replicas_one_killed_mid_load_deliver_every_ack_once_and_watches_follow(
    tmp_path: Path, postgres_url: str
) -> None:
    total, watched_count = 1000, 30
    # No breaker opening (none of the replicas' business here): every delivery is attempted,
    # so the replica killed dies with deliveries in flight, their leases its own.
    async with (
        province_process(tmp_path / "regions") as province,
        replicas(
            tmp_path,
            province.address,
            postgres_url,
            TONGBAN_BREAKER_CONSECUTIVE_FAILURES=1000,
            TONGBAN_BREAKER_FAILURE_RATIO=1.0,
        ) as (first, second, third),
    ):
        # Calls take 30-70 ms: each replica has deliveries in flight at any moment.
        await province.set_faults(
            unavailable_fraction=0.3,
            commit_then_drop_fraction=0.1,
            latency_ms=30,
            latency_jitter_ms=40,
        )
        killed, hundred = asyncio.Event(), asyncio.Event()
        leases: list[asyncio.Future[int]] = []

        def on_ack(acknowledged: int) -> None:
            if acknowledged >= 100:
                hundred.set()
            if acknowledged >= 300 and not killed.is_set():
                killed.set()
                first.process.process.send_signal(signal.SIGKILL)
                leases.append(asyncio.ensure_future(leased_by(postgres_url, first.process.pid)))

        started = time.monotonic()
        async with balanced((first, second, third)) as applications:
            loading = asyncio.ensure_future(
                submit_all(
                    applications, [f"load-{i}" for i in range(total)], timeout=5.0, on_ack=on_ack
                )
            )
            # In the middle of the load, applications submitted through the first two replicas
            # (delivered, or queued for a dispatcher), watched on the third: every later change
            # of theirs is made through another replica.
            await hundred.wait()
            async with balanced((first, second)) as through_others:
                watched = await submit_all(
                    through_others, [f"watched-{i}" for i in range(watched_count)], timeout=5.0
                )
            async with balanced((second,)) as survivor:
                await until_answered(survivor, watched)
            watches = [
                await hold_watch(third, app.application_id) for app in watched.acknowledged.values()
            ]
            load = await loading
        assert killed.is_set()
        assert await first.process.process.wait() == -signal.SIGKILL
        leased_at_kill = await leases[0]
        assert leased_at_kill > 0, "the replica died holding deliveries: the survivors' to take"
        unanswered = len(load.failed)
        async with balanced((second, third)) as applications:
            found_stored = await until_answered(applications, load)
        submitted_in = time.monotonic() - started
        ids = {a.application_id for a in load.acknowledged.values()}
        assert len(load.acknowledged) == total
        assert len(ids) == total, "one application per request id"
        watched_ids = {a.application_id for a in watched.acknowledged.values()}
        took = await every_case_once(province, ids | watched_ids, within=180)

        async def all_delivered() -> bool:
            counts = await states(second, sorted(ids | watched_ids))
            return counts == {pb.APPLICATION_STATE_DELIVERED: total + watched_count}

        await eventually(all_delivered, within=60, what="every application DELIVERED")
        drained_in = time.monotonic() - started

        # The province reports through the second replica; the third's watchers hear it.
        delays = await reports_heard(second, third, watches)
        counts = await province.counters()
        cases = province.case_ids()
        answered = [a.state for a in load.acknowledged.values()]
    report(
        "three-replicas",
        sent=total,
        killed_after_acks=300,
        unanswered_after_retries_by_channel=unanswered,
        answered_on_caller_retry=f"{unanswered} ({found_stored} found stored)",
        answered_delivered=answered.count(pb.APPLICATION_STATE_DELIVERED),
        answered_queued=answered.count(pb.APPLICATION_STATE_QUEUED),
        queued_because=dict(
            Counter(
                a.state_reason
                for a in load.acknowledged.values()
                if a.state == pb.APPLICATION_STATE_QUEUED
            )
        ),
        answered_received=answered.count(pb.APPLICATION_STATE_RECEIVED),
        leased_by_killed_replica_at_death=leased_at_kill,
        cases=counts.cases_created,
        duplicates_created=len(cases) - len(set(cases)),
        duplicates_suppressed=counts.duplicates_suppressed,
        attempts_per_application=f"{counts.deliveries_received / len(cases):.2f}",
        seconds_load=f"{submitted_in:.1f}",
        seconds_to_all_cases=f"{took:.1f}",
        seconds_to_all_delivered=f"{drained_in:.1f}",
        watches=len(watches),
        watched_queued_then_delivered=sum(
            w.states()[0] == pb.APPLICATION_STATE_QUEUED for w in watches
        ),
        watch_report_delay_ms_max=f"{max(delays) * 1000:.0f}",
        watch_report_delay_ms_median=f"{sorted(delays)[len(delays) // 2] * 1000:.0f}",
    )


@pytest.fixture
def private_server() -> Iterator[pg.PrivatePostgres]:
    """A PostgreSQL of this test's own, to stop and start under the replicas."""
    server = pg.PrivatePostgres.create()
    try:
        yield server
    finally:
        server.destroy()


@pytest.mark.slow
async def test_the_database_restarted_under_load_loses_and_repeats_nothing(
    tmp_path: Path, private_server: pg.PrivatePostgres
) -> None:
    total, outage = 1200, 3.0
    async with (
        province_process(tmp_path / "regions") as province,
        replicas(tmp_path, province.address, private_server.url) as group,
    ):
        await province.set_faults(latency_ms=2, latency_jitter_ms=10)
        not_serving: set[str] = set()
        stopped = asyncio.Event()
        acked: dict[str, int] = {"now": 0}
        recovery: list[float] = []

        async def restart_database() -> None:
            await stopped.wait()
            acked["at_stop"] = acked["now"]
            await asyncio.to_thread(private_server.stop, "fast")

            async def all_not_serving() -> bool:
                for replica in group:
                    if not await replica.store_serving():
                        not_serving.add(replica.name)
                return len(not_serving) == len(group)

            await eventually(all_not_serving, within=10, what="tongban.store NOT_SERVING on each")
            await asyncio.sleep(outage)
            acked["while_down"] = acked["now"] - acked["at_stop"]
            await asyncio.to_thread(private_server.start)
            acked["at_restart"] = acked["now"]

            async def all_serving() -> bool:
                return all([await r.store_serving() for r in group])

            recovery.append(
                await eventually(
                    all_serving, within=20, what="tongban.store SERVING again on each, unaided"
                )
            )

        def stop_at_200(acknowledged: int) -> None:
            acked["now"] = acknowledged
            if acknowledged >= 200:
                stopped.set()

        started = time.monotonic()
        outage_task = asyncio.create_task(restart_database())
        async with balanced(group) as applications:
            load = await submit_all(
                applications, [f"db-{i}" for i in range(total)], timeout=5.0, on_ack=stop_at_200
            )
            await outage_task
            unanswered = len(load.failed)
            refused = sorted({code.name for code in load.failed.values()})
            found_stored = await until_answered(applications, load)
        ids = {a.application_id for a in load.acknowledged.values()}
        assert len(load.acknowledged) == total
        assert len(ids) == total, "one application per request id"
        took = await every_case_once(province, ids, within=120)

        async def all_delivered() -> bool:
            return await states(group[1], sorted(ids)) == {pb.APPLICATION_STATE_DELIVERED: total}

        await eventually(all_delivered, within=60, what="every application DELIVERED")
        counts = await province.counters()
        cases = province.case_ids()
    assert not_serving == {"1", "2", "3"}
    report(
        "database-restart",
        sent=total,
        acknowledged_before_stop=acked["at_stop"],
        acknowledged_while_stopping_and_down=acked["while_down"],
        acknowledged_after_restart=acked["now"] - acked["at_restart"],
        outage_seconds=f"{outage} (after every replica said NOT_SERVING)",
        unanswered_during_outage=unanswered,
        their_codes=refused,
        retried_found_stored=found_stored,
        cases=counts.cases_created,
        duplicates_created=len(cases) - len(set(cases)),
        duplicates_suppressed=counts.duplicates_suppressed,
        seconds_store_serving_after_restart=f"{recovery[0]:.1f}",
        seconds_to_all_cases=f"{took:.1f}",
        seconds_total=f"{time.monotonic() - started:.1f}",
    )


async def test_20_concurrent_duplicates_over_three_replicas_make_one_application_and_one_delivery(
    tmp_path: Path, postgres_url: str
) -> None:
    async with (
        province_process(tmp_path / "regions") as province,
        replicas(tmp_path, province.address, postgres_url) as group,
    ):
        await province.set_faults(latency_ms=200)  # the duplicates arrive while it is in flight
        answers = await asyncio.gather(
            *(
                group[i % 3].applications.SubmitApplication(submission("same"), timeout=10)
                for i in range(20)
            )
        )
        assert len({a.application.application_id for a in answers}) == 1
        assert sum(not a.replayed for a in answers) == 1
        assert {a.application.state for a in answers} == {pb.APPLICATION_STATE_DELIVERED}
        counts = await province.counters()
        assert (counts.cases_created, counts.deliveries_received) == (1, 1)
    report("idempotency-over-replicas", concurrent=20, replicas=3, applications=1, deliveries=1)


def signed_catalog(version: str, base: str, key: signing.PrivateKey) -> str:
    data = json.loads((STANDARDS / "catalog" / f"{base}.json").read_text("utf-8"))
    data["version"] = version
    return signing.sign_catalog(json.dumps(data).encode(), key, STANDARDS_BODY)


async def test_a_version_published_through_one_replica_is_resolved_with_by_the_others(
    tmp_path: Path, postgres_url: str
) -> None:
    key = signing.generate_private_key()
    public = tmp_path / "body.pub.pem"
    public.write_bytes(signing.public_pem(key))
    async with (
        province_process(tmp_path / "regions") as province,
        replicas(
            tmp_path,
            province.address,
            postgres_url,
            TONGBAN_STANDARDS_KEYS=f"{STANDARDS_BODY}={public}",
        ) as group,
    ):
        resolve = catalog_pb2.ResolveLocalCodeRequest(region_code=ORIGIN, local_code=LOCAL_CODE)

        async def version_on(replica: Replica) -> str:
            answer = await replica.catalog.ResolveLocalCode(resolve, timeout=5)
            return str(answer.resolved.catalog_version)

        assert [await version_on(r) for r in group] == ["2025.1"] * 3
        published = time.monotonic()
        await group[0].catalog.PublishCatalogVersion(
            catalog_pb2.PublishCatalogVersionRequest(
                signed_document=signed_catalog("2025.2", "2025.2", key)
            ),
            timeout=30,
        )
        delays = {}
        for replica in group[1:]:

            async def resolved_with_it(replica: Replica = replica) -> bool:
                return await version_on(replica) == "2025.2"

            await eventually(resolved_with_it, within=5, what="2025.2 resolved on", step=0.02)
            delays[replica.name] = time.monotonic() - published
        older = catalog_pb2.PublishCatalogVersionRequest(
            signed_document=signed_catalog("2025.0", "2025.1", key)
        )
        for replica in group:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await replica.catalog.PublishCatalogVersion(older, timeout=30)
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert rich_error(refused.value)[0].reason == "CATALOG_VERSION_ROLLBACK"
        assert [await version_on(r) for r in group] == ["2025.2"] * 3
    report(
        "catalog-over-replicas",
        published_through="1",
        seconds_until_resolved_with=", ".join(f"{n}: {d:.2f}" for n, d in delays.items()),
        rollback_refused_by=len(group),
    )
