"""Tests for gateway.store, on real SQLite files in tmp_path.

Concurrency is real: writes are fired with `asyncio.gather` and land in the writer thread's
group commits. Where a test needs writes in one batch it holds the writer thread on a gate
until they are queued, instead of hoping for timing.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.errors import StoreUnavailable
from gateway.store import ApplicationRow, Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "data" / "tongban.db")
    try:
        yield opened
    finally:
        await opened.close()


def application(
    n: int,
    *,
    origin: str = "440000",
    target: str = "510000",
    request_id: str | None = None,
    create_time: float | None = None,
    next_attempt_time: float | None = None,
    state: int = 2,
) -> ApplicationRow:
    created = 1_750_000_000.0 + n if create_time is None else create_time
    return ApplicationRow(
        application_id=f"app-{n:05d}",
        origin_region=origin,
        request_id=request_id or f"req-{n}",
        request_digest=f"digest-{n}",
        target_region=target,
        state=state,
        create_time=created,
        update_time=created,
        next_attempt_time=next_attempt_time,
        expire_time=created + 86_400,
        lease_owner="",
        lease_until=0.0,
        body=f"body {n}".encode(),
    )


async def count(store: Store, sql: str = "SELECT COUNT(*) FROM applications") -> int:
    value = await store.read(lambda c: c.execute(sql).fetchone()[0])
    return int(value)


# -- group commit ----------------------------------------------------------------------------


async def test_200_concurrent_claims_are_all_durable_in_fewer_transactions(
    store: Store, tmp_path: Path
) -> None:
    rows = [application(n) for n in range(200)]
    results = await asyncio.gather(*(store.claim_request(r) for r in rows))
    assert [created for _, created in results] == [True] * 200
    assert [stored for stored, _ in results] == rows
    assert store.writes == 200
    assert 0 < store.transactions < store.writes  # writes were batched
    assert await count(store) == 200
    await store.close()

    reopened = await Store.open(tmp_path / "data" / "tongban.db")
    try:
        assert await count(reopened) == 200
        for row in rows[::37]:
            assert await reopened.find_request(row.origin_region, row.request_id) == row
    finally:
        await reopened.close()


async def _queue_behind_a_gate(
    store: Store, fns: list[Callable[[sqlite3.Connection], object]]
) -> list[object]:
    """Runs `fns` as writes that all wait behind one held transaction, so they share a batch."""
    gate = threading.Event()
    entered = threading.Event()

    def hold(conn: sqlite3.Connection) -> str:
        entered.set()
        assert gate.wait(10)
        return "held"

    holder = asyncio.ensure_future(store.write(hold))
    assert await asyncio.to_thread(entered.wait, 10)
    queued = [asyncio.ensure_future(store.write(fn)) for fn in fns]
    await asyncio.sleep(0)  # every write is in the queue now
    gate.set()
    assert await holder == "held"
    return list(await asyncio.gather(*queued, return_exceptions=True))


async def test_a_lone_write_is_committed_without_the_commit_delay(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "tongban.db", commit_delay=3600)
    try:
        # Were it delayed, this would wait an hour: the test's timeout fails it.
        await asyncio.wait_for(store.claim_request(application(1)), timeout=60)
    finally:
        await store.close()


async def test_a_batch_of_several_writes_waits_for_more(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "tongban.db", commit_delay=2.0)
    try:
        gate = threading.Event()
        entered = threading.Event()

        def hold(conn: sqlite3.Connection) -> None:
            entered.set()
            assert gate.wait(10)

        holder = asyncio.ensure_future(store.write(hold))
        assert await asyncio.to_thread(entered.wait, 10)
        first = [asyncio.ensure_future(store.claim_request(application(i))) for i in (1, 2)]
        await asyncio.sleep(0)  # both queued behind the held transaction
        before = store.transactions
        gate.set()
        await holder  # the next batch holds two writes, so the writer waits for more ...
        late = [asyncio.ensure_future(store.claim_request(application(i))) for i in (3, 4)]
        await asyncio.gather(*first, *late)  # ... and these arrive meanwhile
        assert store.transactions - before == 2  # the held one, then one for all four
        assert store.writes == 5
    finally:
        await store.close()


async def test_a_failing_write_fails_only_its_own_caller(store: Store) -> None:
    def insert(i: int, fail: str) -> Callable[[sqlite3.Connection], object]:
        def run(conn: sqlite3.Connection) -> int:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (f"k{i}", str(i)))
            if fail == "python":
                raise ValueError(f"boom {i}")
            if fail == "sqlite":
                conn.execute("INSERT INTO no_such_table VALUES (1)")
            return i

        return run

    plan = ["ok", "python", "ok", "sqlite", "ok", "python", "ok", "ok"]
    before = store.transactions
    outcomes = await _queue_behind_a_gate(store, [insert(i, f) for i, f in enumerate(plan)])
    assert store.transactions - before == 2  # the held write, then one batch for the eight

    for i, (fail, outcome) in enumerate(zip(plan, outcomes, strict=True)):
        if fail == "ok":
            assert outcome == i
        elif fail == "python":
            assert isinstance(outcome, ValueError)
            assert str(outcome) == f"boom {i}"
        else:
            assert isinstance(outcome, StoreUnavailable)
            assert outcome.reason == "STORE_UNAVAILABLE"
    keys = await store.read(
        lambda c: [r[0] for r in c.execute("SELECT key FROM meta WHERE key LIKE 'k%' ORDER BY key")]
    )
    assert keys == [f"k{i}" for i, f in enumerate(plan) if f == "ok"]


async def test_a_failing_write_does_not_poison_later_writes(store: Store) -> None:
    def fail(conn: sqlite3.Connection) -> None:
        raise RuntimeError("nope")

    with pytest.raises(RuntimeError, match="nope"):
        await store.write(fail)
    stored, created = await store.claim_request(application(1))
    assert created
    assert await store.get_application(stored.application_id) == stored


# -- idempotency -------------------------------------------------------------------------------


async def test_one_of_50_concurrent_claims_of_one_request_id_creates_it(store: Store) -> None:
    claims = [application(n, request_id="same-request") for n in range(50)]
    results = await asyncio.gather(*(store.claim_request(r) for r in claims))
    winners = [stored for stored, created in results if created]
    assert len(winners) == 1
    assert {stored.application_id for stored, _ in results} == {winners[0].application_id}
    assert await count(store) == 1
    assert await store.find_request("440000", "same-request") == winners[0]


async def test_the_same_request_id_from_another_origin_is_another_application(
    store: Store,
) -> None:
    _, first = await store.claim_request(application(1, request_id="r"))
    _, second = await store.claim_request(application(2, origin="110000", request_id="r"))
    assert (first, second) == (True, True)
    assert await store.find_request("330000", "r") is None


async def test_a_reused_application_id_with_a_new_request_id_is_an_error(store: Store) -> None:
    await store.claim_request(application(1))
    with pytest.raises(StoreUnavailable):
        await store.claim_request(replace(application(1), request_id="other"))
    assert await count(store) == 1


# -- leases ------------------------------------------------------------------------------------


async def test_claim_due_leases_are_exclusive_between_concurrent_claimers(store: Store) -> None:
    due = [application(n, next_attempt_time=100.0 + n) for n in range(30)]
    later = [application(100 + n, next_attempt_time=10_000.0) for n in range(5)]
    idle = [application(200 + n) for n in range(5)]
    await asyncio.gather(*(store.claim_request(r) for r in due + later + idle))

    a, b = await asyncio.gather(
        store.claim_due(now=500.0, owner="a", lease_seconds=60, limit=20),
        store.claim_due(now=500.0, owner="b", lease_seconds=60, limit=20),
    )
    ids_a = {r.application_id for r in a}
    ids_b = {r.application_id for r in b}
    assert not ids_a & ids_b
    assert ids_a | ids_b == {r.application_id for r in due}
    assert sorted([len(a), len(b)]) == [10, 20]
    first = a if len(a) == 20 else b
    assert [r.application_id for r in first] == [r.application_id for r in due[:20]]

    for claimed, owner in ((a, "a"), (b, "b")):
        for row in claimed:
            stored = await store.get_application(row.application_id)
            assert stored is not None
            assert (stored.lease_owner, stored.lease_until) == (owner, 560.0)

    assert await store.claim_due(now=559.0, owner="c", lease_seconds=60, limit=100) == []
    again = await store.claim_due(now=560.0, owner="c", lease_seconds=60, limit=100)
    assert {r.application_id for r in again} == {r.application_id for r in due}


async def test_many_concurrent_claimers_never_share_a_row(store: Store) -> None:
    await asyncio.gather(
        *(store.claim_request(application(n, next_attempt_time=1.0)) for n in range(40))
    )
    batches = await asyncio.gather(
        *(store.claim_due(now=2.0, owner=f"w{i}", lease_seconds=30, limit=3) for i in range(20))
    )
    claimed = [r.application_id for batch in batches for r in batch]
    assert len(claimed) == len(set(claimed)) == 40


# -- reading -----------------------------------------------------------------------------------


async def test_keyset_pagination_returns_every_row_once_in_order(store: Store) -> None:
    # Four applications per second, so create_time ties are broken by application id.
    ours = [
        application(n, create_time=1_000.0 + n // 4, state=2 + n % 2)
        for n in (37 * i % 120 for i in range(120))
    ]
    theirs_to_us = [application(500 + n, origin="110000", target="440000") for n in range(10)]
    unrelated = [application(700 + n, origin="330000", target="510000") for n in range(10)]
    await asyncio.gather(*(store.claim_request(r) for r in ours + theirs_to_us + unrelated))

    async def pages(**kwargs: object) -> list[list[ApplicationRow]]:
        found: list[list[ApplicationRow]] = []
        before: tuple[float, str] | None = None
        while True:
            page = await store.list_applications(
                "440000",
                limit=25,
                before=before,
                **kwargs,  # type: ignore[arg-type]
            )
            if not page:
                return found
            found.append(page)
            before = (page[-1].create_time, page[-1].application_id)

    origin_pages = await pages(as_origin=True, as_target=False, state=None)
    assert [len(p) for p in origin_pages] == [25, 25, 25, 25, 20]
    flat = [r for p in origin_pages for r in p]
    assert flat == sorted(ours, key=lambda r: (r.create_time, r.application_id), reverse=True)

    both = [r for p in await pages(as_origin=True, as_target=True, state=None) for r in p]
    assert sorted(r.application_id for r in both) == sorted(
        r.application_id for r in ours + theirs_to_us
    )
    target_only = [r for p in await pages(as_origin=False, as_target=True, state=None) for r in p]
    assert {r.application_id for r in target_only} == {r.application_id for r in theirs_to_us}
    odd = [r for p in await pages(as_origin=True, as_target=False, state=3) for r in p]
    assert len(odd) == 60
    assert all(r.state == 3 for r in odd)


async def test_listing_on_neither_side_finds_nothing(store: Store) -> None:
    await store.claim_request(application(1))
    found = await store.list_applications(
        "440000", as_origin=False, as_target=False, state=None, limit=10, before=None
    )
    assert found == []


async def test_status_reports_are_claimed_once_and_can_be_released(store: Store) -> None:
    assert await store.record_status_report("app-1", "ev-1") is True
    assert await store.record_status_report("app-1", "ev-1") is False
    assert await store.record_status_report("app-2", "ev-1") is True
    await store.forget_status_report("app-1", "ev-1")
    assert await store.record_status_report("app-1", "ev-1") is True


async def test_update_with_is_one_read_modify_write(store: Store) -> None:
    await store.claim_request(application(1))
    assert await store.update_with("missing", lambda r: r) is None

    unchanged = await store.update_with("app-00001", lambda r: None)
    assert unchanged == application(1)

    def deliver(row: ApplicationRow) -> ApplicationRow:
        return replace(row, state=3, update_time=row.update_time + 5, body=b"delivered")

    updated = await store.update_with("app-00001", deliver)
    assert updated is not None
    assert await store.get_application("app-00001") == updated
    assert (updated.state, updated.body) == (3, b"delivered")

    def explode(row: ApplicationRow) -> ApplicationRow:
        raise KeyError("bad transition")

    with pytest.raises(KeyError):
        await store.update_with("app-00001", explode)
    assert await store.get_application("app-00001") == updated


async def test_concurrent_updates_do_not_lose_increments(store: Store) -> None:
    await store.claim_request(application(1))

    def bump(row: ApplicationRow) -> ApplicationRow:
        return replace(row, state=row.state + 1)

    await asyncio.gather(*(store.update_with("app-00001", bump) for _ in range(50)))
    stored = await store.get_application("app-00001")
    assert stored is not None
    assert stored.state == 2 + 50


async def test_queue_stats_count_what_awaits_delivery(store: Store) -> None:
    assert await store.queue_stats(0) == (0, None)
    await store.claim_request(application(1, create_time=50.0, next_attempt_time=60.0))
    await store.claim_request(application(2, create_time=40.0, next_attempt_time=90.0))
    await store.claim_request(application(3, create_time=10.0))
    assert await store.queue_stats(0) == (2, 40.0)


# -- catalog rows, integrity, lifecycle ---------------------------------------------------------


async def test_catalog_versions_come_back_in_version_order(store: Store) -> None:
    for version, sort_key in (("2025.2", 2025_000_002), ("2025.10", 2025_000_010)):
        await store.insert_catalog_version(
            version=version,
            sort_key=sort_key,
            effective_time="2025-01-01T00:00:00+08:00",
            publish_time=f"t-{version}",
            publisher="nsb",
            digest=f"d-{version}",
            document="{}",
            signed_document="",
        )
    await store.insert_catalog_version(
        version="2025.1",
        sort_key=2025_000_001,
        effective_time="2025-01-01T00:00:00+08:00",
        publish_time="t-2025.1",
        publisher="nsb",
        digest="d-2025.1",
        document='{"v": 1}',
        signed_document="jws",
    )
    assert [d for _, d, _ in await store.catalog_versions()] == [
        "d-2025.1",
        "d-2025.2",
        "d-2025.10",
    ]
    with pytest.raises(StoreUnavailable):  # the registry checks first; the table enforces it
        await store.insert_catalog_version(
            version="2025.1",
            sort_key=1,
            effective_time="",
            publish_time="",
            publisher="",
            digest="",
            document="",
            signed_document="",
        )


async def test_a_region_list_upsert_replaces_the_previous_one(store: Store) -> None:
    await store.upsert_region_catalog("440000", "t1", "d1", '{"n": 1}')
    await store.upsert_region_catalog("110000", "t1", "d0", '{"n": 0}')
    await store.upsert_region_catalog("440000", "t2", "d2", '{"n": 2}')
    assert await store.region_catalogs() == [("t1", "d0", '{"n": 0}'), ("t2", "d2", '{"n": 2}')]


async def test_integrity_check_is_empty_on_a_fresh_and_a_used_store(store: Store) -> None:
    assert await store.integrity_check() == []
    await asyncio.gather(*(store.claim_request(application(n)) for n in range(50)))
    await store.upsert_region_catalog("440000", "t", "d", "{}")
    await store.update_with("app-00003", lambda r: replace(r, state=5))
    assert await store.integrity_check() == []


async def test_closing_then_reopening_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "tongban.db"
    first = await Store.open(path)
    await first.claim_request(application(1, next_attempt_time=5.0))
    await first.record_status_report("app-00001", "ev")
    await first.upsert_region_catalog("440000", "t", "d", '{"x": "广东"}')
    await first.insert_catalog_version(
        version="2025.1",
        sort_key=2025_000_001,
        effective_time="e",
        publish_time="p",
        publisher="nsb",
        digest="d",
        document="{}",
        signed_document="",
    )
    await first.close()

    second = await Store.open(path)
    try:
        assert await second.get_application("app-00001") == application(1, next_attempt_time=5.0)
        assert await second.record_status_report("app-00001", "ev") is False
        assert await second.region_catalogs() == [("t", "d", '{"x": "广东"}')]
        assert await second.catalog_versions() == [("p", "d", "{}")]
        assert await second.queue_stats(0) == (1, application(1).create_time)
        assert await second.integrity_check() == []
        schema = await second.read(
            lambda c: c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
        )
        assert schema == [("1",)]
    finally:
        await second.close()


async def test_close_commits_writes_already_queued(tmp_path: Path) -> None:
    path = tmp_path / "tongban.db"
    first = await Store.open(path)
    pending = [asyncio.ensure_future(first.claim_request(application(n))) for n in range(30)]
    await asyncio.sleep(0)  # queued, not yet acknowledged
    await first.close()
    assert all(created for _, created in await asyncio.gather(*pending))
    second = await Store.open(path)
    try:
        assert await count(second) == 30
    finally:
        await second.close()


async def test_a_closed_store_is_unavailable(tmp_path: Path) -> None:
    closed = await Store.open(tmp_path / "tongban.db")
    await closed.close()
    with pytest.raises(StoreUnavailable):
        await closed.claim_request(application(1))
    with pytest.raises(StoreUnavailable):
        await closed.get_application("app-00001")


async def test_an_unopenable_path_is_store_unavailable(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreUnavailable):
        await Store.open(tmp_path / "dir.db")
