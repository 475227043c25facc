"""ApplicationRecords on a real store: finishing a delivery from the copy the worker holds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.api.v1 import application_pb2 as pb
from gateway.applications.records import GATEWAY, ApplicationRecords, Held, add_event
from gateway.routing.deliverer import DeliveryOutcome
from gateway.storage.sqlite import SqliteStore

WORKER = "worker-1"
DELIVERED = DeliveryOutcome(pb.APPLICATION_STATE_DELIVERED, 1, receipt_id="R-1")
QUEUED = DeliveryOutcome(pb.APPLICATION_STATE_QUEUED, 2, reason="UNAVAILABLE")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(tmp_path / "tongban.db")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def records(store: SqliteStore) -> ApplicationRecords:
    return ApplicationRecords(store, queue_expiry=3600, clock=lambda: 1_800_000_000)


def new_application(n: int) -> pb.Application:
    app = pb.Application(
        name=f"applications/app-{n}",
        application_id=f"app-{n}",
        request_id=f"req-{n}",
        origin_region="440000",
        target_region="510000",
    )
    add_event(app, pb.APPLICATION_STATE_RECEIVED, "", GATEWAY, 1_800_000_000)
    return app


async def stored(records: ApplicationRecords, n: int) -> Held:
    held, _, created = await records.create(
        new_application(n), "digest", lease_owner=WORKER, lease_seconds=30
    )
    assert created
    assert held.body == held.application.SerializeToString()
    return held


async def test_an_unchanged_row_is_finished_from_the_known_copy(
    records: ApplicationRecords, store: SqliteStore
) -> None:
    known = await stored(records, 1)
    writes = store.commit_stats()[1]
    final = await records.finish_delivery(
        "app-1", DELIVERED, lease_owner=WORKER, retry_in=None, known=known
    )
    assert final is known.application  # no read and no parse of the stored row
    assert store.commit_stats()[1] == writes + 1
    row = await records.store.get_application("app-1")
    assert row is not None
    assert (row.state, row.lease_owner, row.next_attempt_time) == (
        pb.APPLICATION_STATE_DELIVERED,
        "",
        None,
    )
    assert pb.Application.FromString(row.body) == final
    assert final.receipt_id == "R-1"
    assert [e.state for e in final.events] == [
        pb.APPLICATION_STATE_RECEIVED,
        pb.APPLICATION_STATE_DELIVERED,
    ]


async def test_a_province_report_in_between_wins_over_the_known_copy(
    records: ApplicationRecords,
) -> None:
    known = await stored(records, 2)
    await records.report(
        "app-2",
        region_code="510000",
        state=pb.APPLICATION_STATE_ACCEPTED,
        reason="",
        event_id="e-1",
    )
    final = await records.finish_delivery(
        "app-2", QUEUED, lease_owner=WORKER, retry_in=5.0, known=known
    )
    # The stored row moved on: the outcome applies to it, so nothing is queued again.
    assert final.state == pb.APPLICATION_STATE_ACCEPTED
    assert final.delivery_attempts == 2
    row = await records.store.get_application("app-2")
    assert row is not None
    assert row.next_attempt_time is None
    assert pb.Application.FromString(row.body) == final


async def test_a_lease_taken_over_is_kept_for_its_new_owner(records: ApplicationRecords) -> None:
    known = await stored(records, 3)
    await records.release("app-3", WORKER)
    claimed = await records.claim_due("worker-2", lease_seconds=30, limit=10)
    assert [d.application.application_id for d in claimed] == ["app-3"]
    final = await records.finish_delivery(
        "app-3", QUEUED, lease_owner=WORKER, retry_in=5.0, known=known
    )
    assert final.state == pb.APPLICATION_STATE_QUEUED
    row = await records.store.get_application("app-3")
    assert row is not None
    assert row.lease_owner == "worker-2"
    assert row.next_attempt_time == 1_800_000_005
