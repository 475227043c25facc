"""The case store: one case per application id under concurrency, counters that survive."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.errors import ApplicationIdReused, ApplicationNotFound, InvalidStateTransition
from region_stubs.cases import CaseState, CaseStore, Counter, Delivery

REGION = "440000"
CODE = "11440000MBDCGK306L2000117112000"


def fixed_clock() -> datetime:
    return datetime(2025, 3, 1, 17, 30, tzinfo=UTC)  # already 2 March in China


def test_twenty_concurrent_deliveries_of_one_id_make_one_case(tmp_path: Path) -> None:
    path = tmp_path / "region.sqlite3"
    application_id = str(uuid.uuid4())
    # Two connections on one file: the unique claim must hold across them, not just in-process.
    stores = [CaseStore.open(path, region_code=REGION) for _ in range(2)]
    start = threading.Barrier(20)

    def deliver(i: int) -> Delivery:
        start.wait()
        return stores[i % 2].record_delivery(application_id, CODE)

    try:
        with ThreadPoolExecutor(max_workers=20) as pool:
            results = list(pool.map(deliver, range(20)))
        counters = stores[0].counters()
    finally:
        for store in stores:
            store.close()

    assert sum(not r.duplicate for r in results) == 1
    assert sum(r.duplicate for r in results) == 19
    assert len({(r.receipt_id, r.receive_time) for r in results}) == 1
    assert counters.cases_created == 1
    assert counters.duplicates_suppressed == 19
    assert counters.cases_by_matter == {CODE: 1}


def test_counters_and_cases_survive_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "data" / "region-440000.sqlite3"
    first_id, second_id = str(uuid.uuid4()), str(uuid.uuid4())
    with CaseStore.open(path, region_code=REGION) as store:
        original = store.record_delivery(first_id, CODE)
        store.record_delivery(second_id, "OTHER")
        store.count(Counter.DELIVERIES_RECEIVED, 3)
        store.count(Counter.FAULTS_INJECTED)
        store.count(Counter.UNKNOWN_MATTER_REFUSED)
        store.transition(first_id, CaseState.ACCEPTED, "材料齐全")

    with CaseStore.open(path, region_code=REGION) as reopened:
        again = reopened.record_delivery(first_id, CODE)
        counters = reopened.counters()
        case = reopened.get(first_id)

    assert again == Delivery(original.receipt_id, True, original.receive_time)
    assert counters.deliveries_received == 3
    assert counters.cases_created == 2
    assert counters.duplicates_suppressed == 1
    assert counters.faults_injected == 1
    assert counters.unknown_matter_refused == 1
    assert counters.cases_by_matter == {CODE: 1, "OTHER": 1}
    assert case is not None
    assert case.state is CaseState.ACCEPTED
    assert case.reason == "材料齐全"


def test_a_repeat_with_another_content_digest_is_refused_and_counts_nothing() -> None:
    application_id = str(uuid.uuid4())
    with CaseStore.open(None, region_code=REGION) as store:
        first = store.record_delivery(application_id, CODE, "digest-a")
        with pytest.raises(ApplicationIdReused):
            store.record_delivery(application_id, CODE, "digest-b")
        after_refusal = store.counters()
        again = store.record_delivery(application_id, CODE, "digest-a")
        uncompared = store.record_delivery(application_id, CODE)
    assert after_refusal.duplicates_suppressed == 0
    assert again == uncompared == Delivery(first.receipt_id, True, first.receive_time)


def test_a_file_of_schema_1_gains_the_content_digest(tmp_path: Path) -> None:
    path = tmp_path / "region.sqlite3"
    application_id = str(uuid.uuid4())
    with closing(sqlite3.connect(path)) as db:
        db.executescript(
            "CREATE TABLE cases (seq INTEGER PRIMARY KEY, application_id TEXT NOT NULL UNIQUE,"
            " receipt_id TEXT NOT NULL UNIQUE, local_code TEXT NOT NULL, state TEXT NOT NULL,"
            " reason TEXT NOT NULL DEFAULT '', receive_time_us INTEGER NOT NULL,"
            " update_time_us INTEGER NOT NULL, event_id TEXT NOT NULL DEFAULT '');"
            f"INSERT INTO cases VALUES (1, '{application_id}', 'R-1', '{CODE}', 'DELIVERED',"
            " '', 0, 0, ''); PRAGMA user_version=1;"
        )
    with CaseStore.open(path, region_code=REGION) as store:
        # A case stored before digests were kept is never compared.
        assert store.record_delivery(application_id, CODE, "digest").receipt_id == "R-1"
        fresh = str(uuid.uuid4())
        store.record_delivery(fresh, CODE, "digest-a")
        with pytest.raises(ApplicationIdReused):
            store.record_delivery(fresh, CODE, "digest-b")
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2


def test_receipt_ids_are_distinct_and_dated_in_china() -> None:
    with CaseStore.open(None, region_code=REGION, clock=fixed_clock) as store:
        first = store.record_delivery(str(uuid.uuid4()), CODE)
        second = store.record_delivery(str(uuid.uuid4()), CODE)
    assert first.receipt_id == "440000-20250302-000001"
    assert second.receipt_id == "440000-20250302-000002"
    assert first.receive_time == fixed_clock()


A, R, C = CaseState.ACCEPTED, CaseState.REJECTED, CaseState.COMPLETED


@pytest.mark.parametrize(
    ("history", "target", "allowed"),
    [
        ([], A, True),
        ([], R, True),
        ([A], C, True),
        ([], C, False),
        ([R], A, False),
        ([R], C, False),
        ([A], R, False),
        ([A, C], A, False),
    ],
)
def test_cases_only_move_forward(
    history: list[CaseState], target: CaseState, allowed: bool
) -> None:
    application_id = str(uuid.uuid4())
    with CaseStore.open(None, region_code=REGION) as store:
        store.record_delivery(application_id, CODE)
        for state in history:
            store.transition(application_id, state)
        before = store.get(application_id)
        if allowed:
            assert store.transition(application_id, target).changed
        else:
            with pytest.raises(InvalidStateTransition):
                store.transition(application_id, target)
        after = store.get(application_id)
    assert before is not None
    assert after is not None
    assert after.state is (target if allowed else before.state)
    assert (after == before) is not allowed


def test_a_repeated_transition_keeps_its_event_id() -> None:
    application_id = str(uuid.uuid4())
    with CaseStore.open(None, region_code=REGION) as store:
        store.record_delivery(application_id, CODE)
        first = store.transition(application_id, CaseState.ACCEPTED, "ok")
        repeat = store.transition(application_id, CaseState.ACCEPTED, "ok")
        done = store.transition(application_id, CaseState.COMPLETED)
    assert first.changed
    assert not repeat.changed
    assert repeat.case == first.case
    assert first.case.event_id
    assert done.case.event_id != first.case.event_id


def test_unknown_application_is_not_found() -> None:
    with CaseStore.open(None, region_code=REGION) as store:
        assert store.get(str(uuid.uuid4())) is None
        with pytest.raises(ApplicationNotFound):
            store.transition(str(uuid.uuid4()), CaseState.ACCEPTED)
