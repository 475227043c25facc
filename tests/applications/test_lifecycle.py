"""The application lifecycle end to end: queued, delivered, decided by the province, expired.

RECEIVED → QUEUED → DELIVERED → ACCEPTED/REJECTED → COMPLETED, or FAILED
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import STANDARDS, World, gateway_config, rich_error, start_world
from google.rpc.error_details_pb2 import RetryInfo
from grpc_status import rpc_status
from test_service import ORIGIN, TARGET, one_to_one_pair, submission

from gateway.api.v1 import application_pb2 as pb
from gateway.api.v1 import application_pb2_grpc
from gateway.app.server import running_gateway
from gateway.applications import lifecycle
from gateway.applications.outbox import DeliveryConfig
from gateway.routing.deliverer import DeliveryOutcome
from gateway.storage.base import ApplicationRow
from gateway.storage.sqlite import SqliteStore
from region_stubs.admin.v1 import admin_pb2
from region_stubs.config import StubConfig
from region_stubs.faults import Faults
from region_stubs.server import running_stub


async def watch_states(world: World, name: str, into: list[pb.Application]) -> None:
    async for item in world.applications.WatchApplication(pb.WatchApplicationRequest(name=name)):
        into.append(item.application)


async def eventually_state(
    world: World, application_id: str, state: pb.ApplicationState.ValueType
) -> pb.Application:
    for _ in range(500):
        answer = await world.applications.GetApplication(
            pb.GetApplicationRequest(name=f"applications/{application_id}")
        )
        if answer.application.state == state:
            app: pb.Application = answer.application
            return app
        await asyncio.sleep(0.02)
    raise AssertionError(f"{application_id} never reached {pb.ApplicationState.Name(state)}")


@pytest.fixture
async def expiring_world(tmp_path: Path) -> AsyncIterator[World]:
    delivery = DeliveryConfig(dispatch_interval=0.05, redeliver_backoff_max=0.2, queue_expiry=1.0)
    async with start_world(tmp_path, delivery=delivery) as w:
        yield w


async def test_queued_past_expiry_fails_and_watch_streams_queued_then_failed(
    expiring_world: World,
) -> None:
    world = expiring_world
    local, national, _ = one_to_one_pair(world)
    await world.stubs[TARGET].set_faults(Faults(down=True))
    answer = await world.applications.SubmitApplication(
        submission(world, local, national), timeout=2
    )
    app = answer.application
    assert app.state == pb.APPLICATION_STATE_QUEUED
    seen: list[pb.Application] = []
    await asyncio.wait_for(watch_states(world, app.name, seen), 20)
    assert [a.state for a in seen] == [pb.APPLICATION_STATE_QUEUED, pb.APPLICATION_STATE_FAILED]
    assert seen[-1].state_reason == "DELIVERY_EXPIRED"
    assert [e.state for e in seen[-1].events] == [
        pb.APPLICATION_STATE_RECEIVED,
        pb.APPLICATION_STATE_QUEUED,
        pb.APPLICATION_STATE_FAILED,
    ]
    assert (await world.stubs[TARGET].counters()).cases_created == 0


async def test_a_report_on_an_application_that_never_reached_the_province_is_refused(
    expiring_world: World,
) -> None:
    world = expiring_world
    local, national, _ = one_to_one_pair(world)
    await world.stubs[TARGET].set_faults(Faults(down=True))
    app = (
        await world.applications.SubmitApplication(submission(world, local, national), timeout=2)
    ).application
    failed = await eventually_state(world, app.application_id, pb.APPLICATION_STATE_FAILED)
    report = pb.ReportApplicationStatusRequest(
        name=app.name, region_code=TARGET, state=pb.APPLICATION_STATE_ACCEPTED, event_id="e-1"
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await world.applications.ReportApplicationStatus(report)
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    info, _ = rich_error(caught.value)
    assert info.reason == "APPLICATION_NOT_DELIVERED"
    after = await world.applications.GetApplication(pb.GetApplicationRequest(name=app.name))
    assert after.application == failed  # nothing recorded
    # The event id was given back: the same report stays refused the same way.
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await world.applications.ReportApplicationStatus(report)
    assert rich_error(again.value)[0].reason == "APPLICATION_NOT_DELIVERED"


async def test_expired_but_committed_by_the_province_ends_delivered_not_failed(
    expiring_world: World,
) -> None:
    world = expiring_world
    local, national, _ = one_to_one_pair(world)
    # The province records the case every time but every answer is lost, until expiry.
    await world.stubs[TARGET].set_faults(Faults(commit_then_drop_fraction=1.0))
    app = (
        await world.applications.SubmitApplication(submission(world, local, national), timeout=2)
    ).application
    assert app.state == pb.APPLICATION_STATE_QUEUED
    seen: list[pb.Application] = []
    watcher = asyncio.create_task(watch_states(world, app.name, seen))
    done = await eventually_state(world, app.application_id, pb.APPLICATION_STATE_DELIVERED)
    watcher.cancel()
    assert done.receipt_id
    assert [e.state for e in done.events] == [
        pb.APPLICATION_STATE_RECEIVED,
        pb.APPLICATION_STATE_QUEUED,
        pb.APPLICATION_STATE_DELIVERED,
    ]
    assert (await world.stubs[TARGET].counters()).cases_created == 1


async def test_queued_then_delivered_then_rejected_streams_every_change(world: World) -> None:
    local, national, _ = one_to_one_pair(world)
    await world.stubs[TARGET].set_faults(Faults(down=True))
    app = (
        await world.applications.SubmitApplication(submission(world, local, national), timeout=2)
    ).application
    assert app.state == pb.APPLICATION_STATE_QUEUED
    seen: list[pb.Application] = []
    watcher = asyncio.create_task(watch_states(world, app.name, seen))
    await world.stubs[TARGET].set_faults()
    world.gateway.dispatcher.wake()
    await eventually_state(world, app.application_id, pb.APPLICATION_STATE_DELIVERED)
    decided = await world.stubs[TARGET].admin.DecideCase(
        admin_pb2.DecideCaseRequest(
            application_id=app.application_id,
            state=pb.APPLICATION_STATE_REJECTED,
            reason="材料不全",
        )
    )
    assert decided.gateway_state == pb.APPLICATION_STATE_REJECTED
    await asyncio.wait_for(watcher, 10)
    assert [a.state for a in seen] == [
        pb.APPLICATION_STATE_QUEUED,
        pb.APPLICATION_STATE_DELIVERED,
        pb.APPLICATION_STATE_REJECTED,
    ]
    assert [e.state for e in seen[-1].events] == [
        pb.APPLICATION_STATE_RECEIVED,
        pb.APPLICATION_STATE_QUEUED,
        pb.APPLICATION_STATE_DELIVERED,
        pb.APPLICATION_STATE_REJECTED,
    ]
    assert seen[-1].receipt_id
    assert (await world.stubs[TARGET].counters()).cases_created == 1


async def test_a_late_delivery_result_never_moves_a_decided_application_back(
    world: World,
) -> None:
    local, national, _ = one_to_one_pair(world)
    # The case is created but every answer is lost: the gateway keeps it queued.
    await world.stubs[TARGET].set_faults(Faults(commit_then_drop_fraction=1.0))
    app = (
        await world.applications.SubmitApplication(submission(world, local, national), timeout=2)
    ).application
    assert app.state == pb.APPLICATION_STATE_QUEUED
    # The province reports its decision: proof of delivery.
    await world.stubs[TARGET].admin.DecideCase(
        admin_pb2.DecideCaseRequest(
            application_id=app.application_id, state=pb.APPLICATION_STATE_ACCEPTED
        )
    )
    accepted = await eventually_state(world, app.application_id, pb.APPLICATION_STATE_ACCEPTED)
    records = world.gateway.records
    # Deliveries that were in flight meanwhile now finish, successful or not.
    for outcome in (
        DeliveryOutcome(pb.APPLICATION_STATE_DELIVERED, 1, receipt_id="R-late"),
        DeliveryOutcome(pb.APPLICATION_STATE_QUEUED, 1, reason="UNAVAILABLE"),
        DeliveryOutcome(pb.APPLICATION_STATE_FAILED, 1, reason="REFUSED_BY_PROVINCE:X"),
    ):
        after = await records.finish_delivery(
            app.application_id, outcome, lease_owner="another-worker", retry_in=0.0
        )
        assert after.state == pb.APPLICATION_STATE_ACCEPTED
        assert len(after.events) == len(accepted.events)
    row = await world.gateway.store.get_application(app.application_id)
    assert row is not None
    assert row.next_attempt_time is None, "a decided application is never redelivered"
    assert (await world.stubs[TARGET].counters()).cases_created == 1


def failing_once(world: World, method: str) -> list[str]:
    """Makes the store's next `method` write fail as SQLite fails (disk I/O error)."""
    store = world.gateway.store
    assert isinstance(store, SqliteStore)  # the world's default store
    failed: list[str] = []

    def boom(conn_or_row: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    if method == "replace_if_unchanged":  # the write recording the inline delivery's outcome
        real = store.replace_if_unchanged

        async def replace_if_unchanged(application_id: str, **changes: Any) -> bool:
            if not failed:
                failed.append(application_id)
                await store._engine.write(boom)
            return await real(application_id, **changes)

        store.replace_if_unchanged = replace_if_unchanged  # type: ignore[method-assign]
    else:
        real_claim = store.claim_request

        async def claim_request(row: ApplicationRow) -> tuple[ApplicationRow, bool]:
            if not failed:
                failed.append(row.application_id)
                await store._engine.write(boom)
            return await real_claim(row)

        store.claim_request = claim_request  # type: ignore[method-assign]
    return failed


@pytest.mark.parametrize("method", ["claim_request", "replace_if_unchanged"])
async def test_store_failure_mid_submission_is_unavailable_and_a_retry_delivers_once(
    world: World, method: str
) -> None:
    local, national, _ = one_to_one_pair(world)
    request = submission(world, local, national, request_id=f"store-{method}")
    failed = failing_once(world, method)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await world.applications.SubmitApplication(request, timeout=5)
    assert failed
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert rich_error(caught.value)[0].reason == "STORE_UNAVAILABLE"
    status = rpc_status.from_call(caught.value)
    assert status is not None
    assert any(d.Is(RetryInfo.DESCRIPTOR) for d in status.details), "the caller may retry"
    retried = await world.applications.SubmitApplication(request, timeout=5)
    app = await eventually_state(
        world, retried.application.application_id, pb.APPLICATION_STATE_DELIVERED
    )
    counters = await world.stubs[TARGET].counters()
    assert counters.cases_created == 1
    if method == "replace_if_unchanged":
        # The first delivery went through before its result could be stored: the retry finds
        # the stored application, and the dispatcher's redelivery is a suppressed duplicate.
        assert retried.replayed
        assert app.application_id == failed[0]
        assert counters.duplicates_suppressed == 1
    else:
        assert not retried.replayed
        assert counters.deliveries_received == 1


async def test_shutdown_gives_in_flight_leases_back(tmp_path: Path) -> None:
    """A gateway stopped mid-delivery leaves nothing leased: a restart resumes at once."""
    stub_config = StubConfig(
        region_code=TARGET,
        implementation_list=STANDARDS / "implementations" / f"{TARGET}.json",
        data_dir=tmp_path / "regions",
        faults=Faults(hang=True),
        grace=0.5,
    )
    async with running_stub(stub_config) as stub:
        config = gateway_config(tmp_path, regions={TARGET: stub.address})
        async with (
            running_gateway(config) as gateway,
            grpc.aio.insecure_channel(gateway.address) as channel,
        ):
            applications = application_pb2_grpc.ApplicationServiceStub(channel)
            world_like = World(gateway, {TARGET: stub}, channel, tmp_path)
            local, national, _ = one_to_one_pair(world_like)
            queued = await applications.SubmitApplication(
                submission(world_like, local, national, request_id="queued"), timeout=1.0
            )
            assert queued.application.state == pb.APPLICATION_STATE_QUEUED
            # One delivery inline (no caller deadline: 5 s), one by the dispatcher, both hung.
            inline = applications.SubmitApplication(
                submission(world_like, local, national, request_id="inline")
            )
            for _ in range(1000):
                if (await stub.counters()).deliveries_received >= 3:
                    break
                await asyncio.sleep(0.01)
            rows = [await gateway.store.find_request(ORIGIN, r) for r in ("queued", "inline")]
            assert all(r is not None and r.lease_owner for r in rows), "both are leased"
        # Closing the client channel cancelled the inline call (the handler saw it cancelled).
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            await inline
    store = await SqliteStore.open(tmp_path / "gateway.sqlite3")
    try:
        for request_id in ("queued", "inline"):
            row = await store.find_request(ORIGIN, request_id)
            assert row is not None
            assert (row.lease_owner, row.lease_until) == ("", 0.0), request_id
            assert row.next_attempt_time is not None
    finally:
        await store.close()


# -- the tables, every pair (pure) ---------------------------------------------------------

R, Q, D = pb.APPLICATION_STATE_RECEIVED, pb.APPLICATION_STATE_QUEUED, pb.APPLICATION_STATE_DELIVERED
A, J, C = (
    pb.APPLICATION_STATE_ACCEPTED,
    pb.APPLICATION_STATE_REJECTED,
    pb.APPLICATION_STATE_COMPLETED,
)
F, U = pb.APPLICATION_STATE_FAILED, pb.APPLICATION_STATE_UNSPECIFIED
W, X, WD = (
    pb.APPLICATION_STATE_WAITING,
    pb.APPLICATION_STATE_CANCELLED,
    pb.APPLICATION_STATE_WITHDRAWN,
)
STATES = (U, R, Q, D, A, J, C, F, W, X, WD)

# Written out by hand from the lifecycle's picture, not derived from the module's tables.
MOVES = {
    (R, Q), (R, D), (R, F),
    (Q, D), (Q, F),
    (D, A), (D, J), (D, C),
    (A, C), (A, J),
    (W, R), (W, X), (R, X), (Q, X),
    (D, WD), (A, WD),
}  # fmt: skip


@pytest.mark.parametrize("current", STATES, ids=pb.ApplicationState.Name)
@pytest.mark.parametrize("new", STATES, ids=pb.ApplicationState.Name)
def test_can_move_allows_exactly_the_drawn_arrows(current: int, new: int) -> None:
    assert lifecycle.can_move(current, new) == ((current, new) in MOVES)


REPORTS: dict[tuple[int, int], tuple[int, ...] | None] = {
    # A report on an application awaiting delivery proves delivery first.
    (R, A): (D, A), (R, J): (D, J), (R, C): (D, C),
    (Q, A): (D, A), (Q, J): (D, J), (Q, C): (D, C),
    (D, A): (A,), (D, J): (J,), (D, C): (C,),
    (A, A): (), (A, J): (J,), (A, C): (C,),
    # Terminal: the same state again is an idempotent repeat; anything else is refused.
    (J, J): (), (C, C): (),
}  # fmt: skip


@pytest.mark.parametrize("current", STATES, ids=pb.ApplicationState.Name)
@pytest.mark.parametrize("reported", STATES, ids=pb.ApplicationState.Name)
def test_province_report_path_for_every_pair(current: int, reported: int) -> None:
    assert lifecycle.province_report_path(current, reported) == REPORTS.get((current, reported))


@pytest.mark.parametrize("state", STATES, ids=pb.ApplicationState.Name)
def test_terminal_and_awaiting_delivery(state: int) -> None:
    assert lifecycle.is_terminal(state) == (state in (J, C, F, X, WD))
    assert (state in lifecycle.WITHDRAWABLE) == (state in (D, A))
    assert (state in lifecycle.AWAITING_DELIVERY) == (state in (R, Q))
    assert (state in lifecycle.PROVINCE_REPORTABLE) == (state in (A, J, C))
