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

from gateway.errors import (
    ApplicationIdReused,
    ApplicationNotFound,
    InvalidStateTransition,
    StoreUnavailable,
)
from region_stubs.cases import SCHEMA_VERSION, Case, CaseState, CaseStore, Counter, Delivery

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
        first = store.record_delivery(application_id, CODE, content_digest="digest-a")
        with pytest.raises(ApplicationIdReused):
            store.record_delivery(application_id, CODE, content_digest="digest-b")
        after_refusal = store.counters()
        again = store.record_delivery(application_id, CODE, content_digest="digest-a")
        uncompared = store.record_delivery(application_id, CODE)
    assert after_refusal.duplicates_suppressed == 0
    assert again == uncompared == Delivery(first.receipt_id, True, first.receive_time)


def test_receipt_ids_are_distinct_and_dated_in_china() -> None:
    with CaseStore.open(None, region_code=REGION, clock=fixed_clock) as store:
        first = store.record_delivery(str(uuid.uuid4()), CODE)
        second = store.record_delivery(str(uuid.uuid4()), CODE)
    assert first.receipt_id == "440000-20250302-000001"
    assert second.receipt_id == "440000-20250302-000002"
    assert first.receive_time == fixed_clock()


A, R, C, W = CaseState.ACCEPTED, CaseState.REJECTED, CaseState.COMPLETED, CaseState.WITHDRAWN


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
        ([], W, True),
        ([A], W, False),
        ([R], W, False),
        ([A, C], W, False),
        ([W], A, False),
        ([W], R, False),
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


def test_a_case_keeps_what_its_decisions_need() -> None:
    application_id = str(uuid.uuid4())
    with CaseStore.open(None, region_code=REGION) as store:
        store.record_delivery(
            application_id,
            CODE,
            national_code="000117112000",
            catalog_version="2026.1",
            holder_id_type=2,
            holder_id_number="91350100M000100Y43",
        )
        store.record_delivery(application_id, CODE, national_code="changed")  # a repeat
        case = store.get(application_id)
    assert case is not None
    assert (case.national_code, case.catalog_version) == ("000117112000", "2026.1")
    assert (case.holder_id_type, case.holder_id_number) == (2, "91350100M000100Y43")
    assert case.issued_licenses == ()


def test_completing_stores_the_issued_licences_and_a_repeat_issues_none() -> None:
    application_id = str(uuid.uuid4())
    issued: list[Case] = []

    def issue(case: Case) -> list[str]:
        issued.append(case)
        return ["token-1", "token-2"]

    with CaseStore.open(None, region_code=REGION) as store:
        store.record_delivery(application_id, CODE)
        store.transition(application_id, A)
        done = store.transition(application_id, C, issue=issue)
        repeat = store.transition(application_id, C, issue=issue)
        stored = store.get(application_id)
    assert [case.state for case in issued] == [C]
    assert issued[0].event_id == done.case.event_id
    assert done.case.issued_licenses == repeat.case.issued_licenses == ("token-1", "token-2")
    assert stored == done.case


def test_a_failing_issue_leaves_the_case_as_it_was() -> None:
    application_id = str(uuid.uuid4())

    def issue(case: Case) -> list[str]:
        raise ValueError("no")

    with CaseStore.open(None, region_code=REGION) as store:
        store.record_delivery(application_id, CODE)
        store.transition(application_id, A)
        before = store.get(application_id)
        with pytest.raises(ValueError, match="no"):
            store.transition(application_id, C, issue=issue)
        assert store.get(application_id) == before


def test_undecided_cases_and_withdrawals_are_counted_from_the_cases() -> None:
    ids = [str(uuid.uuid4()) for _ in range(5)]
    with CaseStore.open(None, region_code=REGION) as store:
        for application_id in ids:
            store.record_delivery(application_id, CODE)
        store.transition(ids[1], A)
        store.transition(ids[2], R)
        store.transition(ids[3], W)
        undecided = [case.application_id for case in store.undecided()]
        counters = store.counters()
    assert undecided == [ids[0], ids[1], ids[4]]
    assert counters.cases_withdrawn == 1


def test_a_file_of_the_first_schema_is_brought_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "region.sqlite3"
    application_id = str(uuid.uuid4())
    with closing(sqlite3.connect(path)) as old:
        old.executescript(
            """
            CREATE TABLE cases (
                seq INTEGER PRIMARY KEY, application_id TEXT NOT NULL UNIQUE,
                receipt_id TEXT NOT NULL UNIQUE, local_code TEXT NOT NULL, state TEXT NOT NULL,
                reason TEXT NOT NULL DEFAULT '', receive_time_us INTEGER NOT NULL,
                update_time_us INTEGER NOT NULL, event_id TEXT NOT NULL DEFAULT '');
            CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
            PRAGMA user_version=1;
            """
        )
        old.execute(
            "INSERT INTO cases VALUES (1, ?, '440000-20250302-000001', ?, 'ACCEPTED', '', 0, 0,"
            " 'e1')",
            (application_id, CODE),
        )
        old.commit()
    with CaseStore.open(path, region_code=REGION) as store:
        case = store.get(application_id)
        done = store.transition(application_id, C, issue=lambda case: ["t"])
    assert case is not None
    assert (case.state, case.event_id, case.national_code, case.issued_licenses) == (
        A,
        "e1",
        "",
        (),
    )
    assert done.case.issued_licenses == ("t",)
    with CaseStore.open(path, region_code=REGION) as store:
        # A case stored before content digests were kept is never compared.
        assert store.record_delivery(application_id, CODE, content_digest="d").duplicate
    with closing(sqlite3.connect(path)) as reopened:
        assert reopened.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def test_a_file_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "region.sqlite3"
    with closing(sqlite3.connect(path)) as newer:
        newer.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StoreUnavailable, match="schema version"):
        CaseStore.open(path, region_code=REGION)
