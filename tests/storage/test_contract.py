"""The storage contract: every semantic of `gateway.storage.base.Store`, run against every backend.

Written only against the protocol (no SQL, no driver), so a backend joins by adding one entry
to BACKENDS: a function that, given the test's request, returns how to open (and reopen) one
fresh database of that backend.

Concurrency is real: operations are fired together with `asyncio.gather`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest
from rows import application, catalog_version

from gateway.errors import StoreUnavailable
from gateway.storage.base import ApplicationRow, BundleRow, CatalogMarker, Store, StoredDocument
from gateway.storage.location import PostgresConfig
from gateway.storage.postgres import PostgresStore
from gateway.storage.sqlite import SqliteStore

OpenStore = Callable[[], Awaitable[Store]]
"""Opens the test's database: the same data on every call."""


def sqlite_backend(request: pytest.FixtureRequest) -> OpenStore:
    path = request.getfixturevalue("tmp_path") / "data" / "tongban.db"

    async def open_store() -> Store:
        return await SqliteStore.open(path)

    return open_store


def postgres_backend(request: pytest.FixtureRequest) -> OpenStore:
    config = PostgresConfig(request.getfixturevalue("postgres_url"))

    async def open_store() -> Store:
        return await PostgresStore.open(config)

    return open_store


BACKENDS: dict[str, Callable[[pytest.FixtureRequest], OpenStore]] = {
    "sqlite": sqlite_backend,
    "postgres": postgres_backend,
}


@pytest.fixture(params=sorted(BACKENDS))
async def reopen(request: pytest.FixtureRequest) -> AsyncIterator[OpenStore]:
    """Opens this test's database in the backend under test, again on every call (so a test
    can close it and look again); every store it opened is closed at the end."""
    open_backend = BACKENDS[request.param]
    open_store = open_backend(request)
    opened: list[Store] = []

    async def open_again() -> Store:
        store = await open_store()
        opened.append(store)
        return store

    yield open_again
    for store in opened:
        await store.close()  # closing again does nothing


@pytest.fixture
async def store(reopen: OpenStore) -> Store:
    return await reopen()


async def everything(store: Store, region_code: str = "440000") -> list[ApplicationRow]:
    """Every application of a province, as origin or target, in one page."""
    return await store.list_applications(
        region_code, as_origin=True, as_target=True, state=None, limit=10_000, before=None
    )


# -- idempotent intake -----------------------------------------------------------------------


async def test_concurrent_claims_are_all_created_and_survive_reopening(
    store: Store, reopen: OpenStore
) -> None:
    rows = [application(n) for n in range(200)]
    results = await asyncio.gather(*(store.claim_request(r) for r in rows))
    assert [created for _, created in results] == [True] * 200
    assert [stored for stored, _ in results] == rows
    await store.close()

    reopened = await reopen()
    assert len(await everything(reopened)) == 200
    found = await asyncio.gather(
        *(reopened.find_request(r.origin_region, r.request_id) for r in rows)
    )
    assert found == rows
    assert await reopened.get_application(rows[137].application_id) == rows[137]


async def test_one_of_50_concurrent_claims_of_one_request_id_creates_it(store: Store) -> None:
    claims = [application(n, request_id="same-request") for n in range(50)]
    results = await asyncio.gather(*(store.claim_request(r) for r in claims))
    winners = [stored for stored, created in results if created]
    assert len(winners) == 1
    assert winners[0] in claims
    assert [stored for stored, _ in results] == [winners[0]] * 50  # losers get the winner's row
    assert await everything(store) == [winners[0]]
    assert await store.find_request("440000", "same-request") == winners[0]


async def test_the_same_request_id_from_another_origin_is_another_application(
    store: Store,
) -> None:
    ours, theirs = application(1, request_id="r"), application(2, origin="110000", request_id="r")
    _, first = await store.claim_request(ours)
    _, second = await store.claim_request(theirs)
    assert (first, second) == (True, True)
    assert await store.find_request("440000", "r") == ours
    assert await store.find_request("110000", "r") == theirs
    assert await store.find_request("330000", "r") is None


async def test_a_reused_application_id_with_a_new_request_id_is_refused(store: Store) -> None:
    await store.claim_request(application(1))
    with pytest.raises(StoreUnavailable):
        await store.claim_request(replace(application(1), request_id="other", body=b"other"))
    assert await everything(store) == [application(1)]
    assert await store.get_application("app-00001") == application(1)
    assert await store.find_request("440000", "other") is None


async def test_unknown_ids_and_keys_find_nothing(store: Store) -> None:
    await store.claim_request(application(1))
    assert await store.get_application("app-00002") is None
    assert await store.find_request("440000", "req-2") is None
    assert await store.find_request("510000", "req-1") is None  # the target is not the origin


# -- leases ------------------------------------------------------------------------------------


async def test_concurrent_claim_due_calls_never_share_a_row(store: Store) -> None:
    due = [application(n, next_attempt_time=100.0 + n) for n in range(30)]
    later = [application(100 + n, next_attempt_time=10_000.0) for n in range(5)]
    idle = [application(200 + n) for n in range(5)]
    await asyncio.gather(*(store.claim_request(r) for r in [*reversed(due), *later, *idle]))

    a, b = await asyncio.gather(
        store.claim_due(now=500.0, owner="a", lease_seconds=60, limit=20),
        store.claim_due(now=500.0, owner="b", lease_seconds=60, limit=20),
    )
    ids_a = {r.application_id for r in a}
    ids_b = {r.application_id for r in b}
    assert not ids_a & ids_b
    assert ids_a | ids_b == {r.application_id for r in due}  # not the later ones, nor the idle
    assert sorted([len(a), len(b)]) == [10, 20]
    first = a if len(a) == 20 else b
    assert [r.application_id for r in first] == [r.application_id for r in due[:20]]

    for claimed, owner in ((a, "a"), (b, "b")):
        for row in claimed:
            stored = await store.get_application(row.application_id)
            assert stored is not None
            assert (stored.lease_owner, stored.lease_until) == (owner, 560.0)


async def test_many_concurrent_claimers_never_share_a_row(store: Store) -> None:
    await asyncio.gather(
        *(store.claim_request(application(n, next_attempt_time=1.0)) for n in range(40))
    )
    batches = await asyncio.gather(
        *(store.claim_due(now=2.0, owner=f"w{i}", lease_seconds=30, limit=3) for i in range(20))
    )
    claimed = [r.application_id for batch in batches for r in batch]
    assert len(claimed) == len(set(claimed)) == 40


async def test_claim_due_leases_the_earliest_due_first_and_returns_rows_before_the_lease(
    store: Store,
) -> None:
    due = [application(n, next_attempt_time=100.0 + 7 * n % 10) for n in range(10)]
    await asyncio.gather(*(store.claim_request(r) for r in due))
    claimed = await store.claim_due(now=500.0, owner="a", lease_seconds=60, limit=4)
    earliest = sorted(due, key=lambda r: r.next_attempt_time or 0.0)[:4]
    assert claimed == earliest  # unleased, as they were stored


async def test_a_lease_not_yet_run_out_is_not_claimed_again(store: Store) -> None:
    due = [application(n, next_attempt_time=100.0 + n) for n in range(5)]
    await asyncio.gather(*(store.claim_request(r) for r in due))
    assert len(await store.claim_due(now=500.0, owner="a", lease_seconds=60, limit=10)) == 5

    assert await store.claim_due(now=559.0, owner="c", lease_seconds=60, limit=10) == []
    for row in due:
        stored = await store.get_application(row.application_id)
        assert stored is not None
        assert (stored.lease_owner, stored.lease_until) == ("a", 560.0)


async def test_a_lease_run_out_is_taken_over(store: Store) -> None:
    due = [application(n, next_attempt_time=100.0 + n) for n in range(5)]
    await asyncio.gather(*(store.claim_request(r) for r in due))
    await store.claim_due(now=500.0, owner="a", lease_seconds=60, limit=10)

    again = await store.claim_due(now=560.0, owner="c", lease_seconds=60, limit=10)
    assert again == [replace(r, lease_owner="a", lease_until=560.0) for r in due]
    for row in due:
        stored = await store.get_application(row.application_id)
        assert stored is not None
        assert (stored.lease_owner, stored.lease_until) == ("c", 620.0)


async def test_skip_targets_are_left_alone_until_they_expire(store: Store) -> None:
    rows = {
        "skipped": application(1, target="510000", next_attempt_time=100.0, expire_time=501.0),
        "skipped-expired": application(
            2, target="510000", next_attempt_time=100.0, expire_time=500.0
        ),
        "other": application(3, target="120000", next_attempt_time=100.0),
        "second-skipped": application(4, target="310000", next_attempt_time=100.0),
        "second-skipped-expired": application(
            5, target="310000", next_attempt_time=100.0, expire_time=400.0
        ),
    }
    await asyncio.gather(*(store.claim_request(r) for r in rows.values()))

    claimed = await store.claim_due(
        now=500.0, owner="a", lease_seconds=60, limit=10, skip_targets=("510000", "310000")
    )
    assert {r.application_id for r in claimed} == {
        rows[k].application_id for k in ("skipped-expired", "other", "second-skipped-expired")
    }
    # The skipped ones were left unleased: a claimer not skipping them takes them at once.
    rest = await store.claim_due(now=500.0, owner="b", lease_seconds=60, limit=10)
    assert {r.application_id for r in rest} == {
        rows[k].application_id for k in ("skipped", "second-skipped")
    }


# -- read-modify-write -------------------------------------------------------------------------


async def test_update_with_of_an_unknown_application_returns_none(store: Store) -> None:
    calls: list[ApplicationRow] = []

    def record(row: ApplicationRow) -> ApplicationRow:
        calls.append(row)
        return row

    assert await store.update_with("missing", record) is None
    assert calls == []
    assert await store.get_application("missing") is None


async def test_update_with_returning_none_leaves_the_row(store: Store) -> None:
    await store.claim_request(application(1))
    assert await store.update_with("app-00001", lambda r: None) == application(1)
    assert await store.get_application("app-00001") == application(1)


async def test_update_with_stores_and_returns_the_new_row(store: Store) -> None:
    await store.claim_request(application(1, next_attempt_time=100.0))

    def deliver(row: ApplicationRow) -> ApplicationRow:
        return replace(
            row,
            state=3,
            update_time=row.update_time + 5,
            body=b"delivered",
            next_attempt_time=None,
            expire_time=row.expire_time + 50,
            lease_owner="w",
            lease_until=900.0,
        )

    updated = await store.update_with("app-00001", deliver)
    assert updated == deliver(application(1, next_attempt_time=100.0))
    assert await store.get_application("app-00001") == updated


async def test_update_with_whose_function_raises_changes_nothing(store: Store) -> None:
    await store.claim_request(application(1))

    def explode(row: ApplicationRow) -> ApplicationRow:
        raise KeyError("bad transition")

    with pytest.raises(KeyError, match="bad transition"):
        await store.update_with("app-00001", explode)
    assert await store.get_application("app-00001") == application(1)


async def test_concurrent_updates_do_not_lose_increments(store: Store) -> None:
    await store.claim_request(application(1))

    def bump(row: ApplicationRow) -> ApplicationRow:
        return replace(row, state=row.state + 1)

    await asyncio.gather(*(store.update_with("app-00001", bump) for _ in range(50)))
    stored = await store.get_application("app-00001")
    assert stored is not None
    assert stored.state == 2 + 50


async def leased(store: Store, owner: str) -> ApplicationRow:
    """Application 1, stored and leased to `owner` until 560."""
    await store.claim_request(application(1, next_attempt_time=100.0))
    assert len(await store.claim_due(now=500.0, owner=owner, lease_seconds=60, limit=1)) == 1
    stored = await store.get_application("app-00001")
    assert stored is not None
    assert (stored.lease_owner, stored.lease_until) == (owner, 560.0)
    return stored


async def replace_as(store: Store, owner: str, expected_body: bytes) -> bool:
    """Delivers application 1 as `owner` did, if it still holds `expected_body`."""
    return await store.replace_if_unchanged(
        "app-00001",
        expected_body=expected_body,
        lease_owner=owner,
        state=3,
        update_time=600.0,
        body=b"delivered",
        next_attempt_time=None,
    )


async def test_replace_if_unchanged_replaces_and_releases_the_lease(store: Store) -> None:
    row = await leased(store, "w")
    assert await replace_as(store, "w", row.body) is True
    assert await store.get_application("app-00001") == replace(
        row,
        state=3,
        update_time=600.0,
        body=b"delivered",
        next_attempt_time=None,
        lease_owner="",
        lease_until=0.0,
    )


async def test_replace_if_unchanged_refuses_a_body_changed_meanwhile(store: Store) -> None:
    row = await leased(store, "w")
    reported = await store.update_with("app-00001", lambda r: replace(r, body=b"reported"))
    assert reported is not None

    assert await replace_as(store, "w", row.body) is False
    assert await store.get_application("app-00001") == reported


async def test_replace_if_unchanged_refuses_a_lease_held_by_another_owner(store: Store) -> None:
    row = await leased(store, "w")
    assert await replace_as(store, "x", row.body) is False
    assert await store.get_application("app-00001") == row

    # The lease ran out and another worker took it over: the first one's result is refused.
    assert len(await store.claim_due(now=560.0, owner="x", lease_seconds=60, limit=1)) == 1
    taken_over = await store.get_application("app-00001")
    assert await replace_as(store, "w", row.body) is False
    assert await store.get_application("app-00001") == taken_over


async def test_replace_if_unchanged_refuses_a_released_lease(store: Store) -> None:
    row = await leased(store, "w")
    released = await store.update_with(
        "app-00001", lambda r: replace(r, lease_owner="", lease_until=0.0)
    )
    assert await replace_as(store, "w", row.body) is False
    assert await store.get_application("app-00001") == released


async def test_replace_if_unchanged_of_an_unknown_application_is_false(store: Store) -> None:
    assert await replace_as(store, "w", b"body 1") is False
    assert await store.get_application("app-00001") is None


# -- listing -----------------------------------------------------------------------------------


OURS = [
    # Four applications per second, so create_time ties are broken by application id; stored
    # in a shuffled order.
    application(n, create_time=1_000.0 + n // 4, state=2 + n % 2)
    for n in (37 * i % 120 for i in range(120))
]
THEIRS_TO_US = [application(500 + n, origin="110000", target="440000") for n in range(10)]
UNRELATED = [application(700 + n, origin="330000", target="510000") for n in range(10)]


def newest_first(rows: list[ApplicationRow]) -> list[ApplicationRow]:
    return sorted(rows, key=lambda r: (r.create_time, r.application_id), reverse=True)


async def pages(
    store: Store, *, as_origin: bool, as_target: bool, state: int | None, limit: int = 25
) -> list[list[ApplicationRow]]:
    """Every page of 440000's applications, each asked for after the previous one's last."""
    found: list[list[ApplicationRow]] = []
    before: tuple[float, str] | None = None
    for _ in range(len(OURS + THEIRS_TO_US + UNRELATED) + 1):  # a cursor that stalls fails
        page = await store.list_applications(
            "440000",
            as_origin=as_origin,
            as_target=as_target,
            state=state,
            limit=limit,
            before=before,
        )
        if not page:
            return found
        found.append(page)
        before = (page[-1].create_time, page[-1].application_id)
    raise AssertionError("paging never came to an empty page")


async def test_keyset_pages_return_every_row_once_newest_first(store: Store) -> None:
    await asyncio.gather(*(store.claim_request(r) for r in OURS + THEIRS_TO_US + UNRELATED))
    origin_pages = await pages(store, as_origin=True, as_target=False, state=None)
    assert [len(p) for p in origin_pages] == [25, 25, 25, 25, 20]
    assert [r for p in origin_pages for r in p] == newest_first(OURS)


async def test_listing_filters_by_side_and_state(store: Store) -> None:
    await asyncio.gather(*(store.claim_request(r) for r in OURS + THEIRS_TO_US + UNRELATED))

    both = [r for p in await pages(store, as_origin=True, as_target=True, state=None) for r in p]
    assert both == newest_first(OURS + THEIRS_TO_US)
    target_only = [
        r for p in await pages(store, as_origin=False, as_target=True, state=None) for r in p
    ]
    assert target_only == newest_first(THEIRS_TO_US)
    odd = [r for p in await pages(store, as_origin=True, as_target=False, state=3) for r in p]
    assert odd == newest_first([r for r in OURS if r.state == 3])
    assert len(odd) == 60


async def test_listing_on_neither_side_finds_nothing(store: Store) -> None:
    await store.claim_request(application(1))
    await store.claim_request(application(2, origin="110000", target="440000"))
    found = await store.list_applications(
        "440000", as_origin=False, as_target=False, state=None, limit=10, before=None
    )
    assert found == []


async def test_keyset_paging_is_stable_while_newer_rows_are_added(store: Store) -> None:
    old = [application(n, create_time=1_000.0 + n // 3) for n in range(30)]
    await asyncio.gather(*(store.claim_request(r) for r in old))

    seen: list[ApplicationRow] = []
    before: tuple[float, str] | None = None
    for added in range(4):
        page = await store.list_applications(
            "440000", as_origin=True, as_target=False, state=None, limit=8, before=before
        )
        seen += page
        before = (seen[-1].create_time, seen[-1].application_id)
        newer = [application(100 + 10 * added + k, create_time=5_000.0 + added) for k in range(3)]
        await asyncio.gather(*(store.claim_request(r) for r in newer))
    assert seen == newest_first(old)
    last = await store.list_applications(
        "440000", as_origin=True, as_target=False, state=None, limit=8, before=before
    )
    assert last == []


# -- status reports, queue ---------------------------------------------------------------------


async def test_status_reports_are_claimed_once_and_can_be_released(store: Store) -> None:
    assert await store.record_status_report("app-1", "ev-1") is True
    assert await store.record_status_report("app-1", "ev-1") is False
    assert await store.record_status_report("app-2", "ev-1") is True
    await store.forget_status_report("app-1", "ev-1")
    assert await store.record_status_report("app-1", "ev-1") is True
    assert await store.record_status_report("app-2", "ev-1") is False  # only app-1's released


async def test_queue_stats_count_what_awaits_delivery(store: Store) -> None:
    assert await store.queue_stats() == (0, None)
    await store.claim_request(application(1, create_time=50.0, next_attempt_time=60.0))
    await store.claim_request(application(2, create_time=40.0, next_attempt_time=90.0))
    await store.claim_request(application(3, create_time=10.0))
    assert await store.queue_stats() == (2, 40.0)

    await store.update_with("app-00002", lambda r: replace(r, next_attempt_time=None))
    assert await store.queue_stats() == (1, 50.0)


# -- catalog -----------------------------------------------------------------------------------


async def test_catalog_versions_come_back_in_sort_key_order(store: Store) -> None:
    await store.insert_catalog_version(
        catalog_version("2025.1", 2025_000_001, document='{"v": 1}', signed_document="jws")
    )
    await store.insert_catalog_version(catalog_version("2025.2", 2025_000_002))
    await store.insert_catalog_version(catalog_version("2025.10", 2025_000_010))
    assert await store.catalog_versions() == [
        StoredDocument("t-2025.1", "d-2025.1", '{"v": 1}'),
        StoredDocument("t-2025.2", "d-2025.2", "{}"),
        StoredDocument("t-2025.10", "d-2025.10", "{}"),
    ]


async def test_only_a_version_newer_than_every_stored_one_is_stored(store: Store) -> None:
    assert await store.insert_catalog_version(catalog_version("2025.2", 2025_000_002))
    stored = await store.catalog_versions()
    # The registry judges first; the store refuses all the same, so a replica that has not
    # reloaded cannot store what another replica's newer version supersedes.
    assert not await store.insert_catalog_version(catalog_version("2025.1", 2025_000_001))
    assert not await store.insert_catalog_version(
        catalog_version("2025.2", 2025_000_002, document='{"v": 2}')
    )
    assert await store.catalog_versions() == stored
    assert await store.insert_catalog_version(catalog_version("2025.3", 2025_000_003))
    assert len(await store.catalog_versions()) == 2


async def test_the_catalog_marker_names_the_newest_version_and_every_list(store: Store) -> None:
    assert await store.catalog_marker() == CatalogMarker(None, {})
    await store.insert_catalog_version(catalog_version("2025.1", 2025_000_001))
    await store.upsert_region_catalog("440000", StoredDocument("t1", "d1", "{}"))
    await store.upsert_region_catalog("510000", StoredDocument("t1", "e1", "{}"))
    await store.upsert_region_catalog("440000", StoredDocument("t2", "d2", "{}"))
    assert await store.catalog_marker() == CatalogMarker(
        2025_000_001, {"440000": "d2", "510000": "e1"}
    )


async def test_a_region_list_upsert_replaces_the_previous_one(store: Store) -> None:
    await store.upsert_region_catalog("440000", StoredDocument("t1", "d1", '{"n": 1}'))
    await store.upsert_region_catalog("110000", StoredDocument("t1", "d0", '{"n": 0}'))
    await store.upsert_region_catalog("440000", StoredDocument("t2", "d2", '{"n": 2}'))
    assert await store.region_catalog_codes() == ["110000", "440000"]
    assert await store.region_catalog("440000") == StoredDocument("t2", "d2", '{"n": 2}')
    assert await store.region_catalog("110000") == StoredDocument("t1", "d0", '{"n": 0}')
    assert await store.region_catalog("330000") is None


# -- lifespan ----------------------------------------------------------------------------------


async def test_closing_then_reopening_keeps_everything(store: Store, reopen: OpenStore) -> None:
    await store.claim_request(application(1, next_attempt_time=5.0))
    await store.claim_request(application(2, next_attempt_time=6.0))
    await store.claim_due(now=10.0, owner="a", lease_seconds=60, limit=1)
    await store.update_with("app-00002", lambda r: replace(r, state=4, body=b"changed"))
    await store.record_status_report("app-00001", "ev")
    await store.upsert_region_catalog("440000", StoredDocument("t", "d", '{"x": "广东"}'))
    await store.insert_catalog_version(catalog_version("2025.1", 2025_000_001))
    await store.close()

    second = await reopen()
    assert await second.get_application("app-00001") == replace(
        application(1, next_attempt_time=5.0), lease_owner="a", lease_until=70.0
    )
    changed = replace(application(2, next_attempt_time=6.0), state=4, body=b"changed")
    assert await second.get_application("app-00002") == changed
    # The lease on application 1 survived: only application 2 can be claimed before it ends.
    assert await second.claim_due(now=69.0, owner="b", lease_seconds=60, limit=10) == [changed]
    assert await second.record_status_report("app-00001", "ev") is False
    assert await second.region_catalog_codes() == ["440000"]
    assert await second.region_catalog("440000") == StoredDocument("t", "d", '{"x": "广东"}')
    assert await second.catalog_versions() == [StoredDocument("t-2025.1", "d-2025.1", "{}")]
    assert await second.queue_stats() == (2, application(1).create_time)


async def test_close_commits_claims_already_queued(store: Store, reopen: OpenStore) -> None:
    pending = [asyncio.ensure_future(store.claim_request(application(n))) for n in range(30)]
    await asyncio.sleep(0)  # queued, not yet acknowledged
    await store.close()
    assert [created for _, created in await asyncio.gather(*pending)] == [True] * 30
    second = await reopen()
    assert len(await everything(second)) == 30


async def test_a_closed_store_is_unavailable_and_closes_again_quietly(store: Store) -> None:
    await store.claim_request(application(1))
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.claim_request(application(2))
    with pytest.raises(StoreUnavailable):
        await store.get_application("app-00001")
    await store.close()  # closing again does nothing


# -- bundles -----------------------------------------------------------------------------------


def bundle(
    n: int, *, origin: str = "440000", due_time: float = 5000.0, state: int = 1
) -> BundleRow:
    return BundleRow(
        bundle_id=f"bundle-{n:05d}",
        origin_region=origin,
        request_id=f"breq-{n}",
        request_digest=f"bdigest-{n}",
        theme_code="YJS0001" if n % 2 else "YJS0002",
        state=state,
        create_time=1000.0 + n,
        update_time=1000.0 + n,
        due_time=due_time,
        body=f"bundle body {n}".encode(),
    )


def members(n: int, count: int = 3) -> list[ApplicationRow]:
    return [replace(application(n * 100 + i), request_id=f"breq-{n}/m{i}") for i in range(count)]


async def test_a_bundle_and_its_members_are_stored_together(store: Store) -> None:
    stored, created = await store.claim_bundle(bundle(1), members(1))
    assert created
    assert stored == bundle(1)
    assert await store.get_bundle("bundle-00001") == bundle(1)
    assert await store.find_bundle_request("440000", "breq-1") == bundle(1)
    for member in members(1):
        assert await store.get_application(member.application_id) == member


async def test_a_taken_bundle_key_returns_the_first_bundle_and_stores_no_member(
    store: Store,
) -> None:
    await store.claim_bundle(bundle(1), members(1))
    again = replace(bundle(2), request_id="breq-1", request_digest="other")
    stored, created = await store.claim_bundle(again, members(2))
    assert not created
    assert stored == bundle(1)
    assert await store.get_bundle("bundle-00002") is None
    for member in members(2):
        assert await store.get_application(member.application_id) is None


async def test_one_of_20_concurrent_bundle_claims_of_one_key_creates_it(store: Store) -> None:
    claims = [replace(bundle(n), request_id="same") for n in range(20)]
    results = await asyncio.gather(
        *(store.claim_bundle(b, members(n)) for n, b in enumerate(claims))
    )
    winners = [row for row, created in results if created]
    assert len(winners) == 1
    assert {row.bundle_id for row, _ in results} == {winners[0].bundle_id}
    stored = await everything(store)
    assert len(stored) == 3, "only the winner's members are stored"


async def test_a_bundle_whose_member_cannot_be_stored_is_not_stored_either(store: Store) -> None:
    await store.claim_request(members(2)[1])  # a member's application id is taken
    with pytest.raises(StoreUnavailable):
        await store.claim_bundle(bundle(2), members(2))
    assert await store.get_bundle("bundle-00002") is None
    assert await store.get_application(members(2)[0].application_id) is None


async def test_update_bundle_with_changes_state_and_body_atomically(store: Store) -> None:
    await store.claim_bundle(bundle(1), members(1))
    assert await store.update_bundle_with("nope", lambda r: r) is None
    assert await store.update_bundle_with("bundle-00001", lambda r: None) == bundle(1)

    def bump(row: BundleRow) -> BundleRow:
        return replace(row, state=row.state + 1, update_time=row.update_time + 1, body=b"x")

    await asyncio.gather(*(store.update_bundle_with("bundle-00001", bump) for _ in range(10)))
    stored = await store.get_bundle("bundle-00001")
    assert stored is not None
    assert (stored.state, stored.update_time, stored.body) == (11, 1011.0, b"x")


async def test_bundle_stats_count_by_theme_and_lateness(store: Store) -> None:
    for n, due in ((1, 100.0), (3, 900.0), (2, 100.0), (4, 5000.0)):
        await store.claim_bundle(bundle(n, due_time=due), members(n, 1))
    await store.claim_bundle(bundle(5, due_time=100.0, state=2), members(5, 1))
    assert await store.bundle_stats(500.0, 1) == [("YJS0001", 2, 1), ("YJS0002", 2, 1)]
    assert await store.bundle_stats(500.0, 2) == [("YJS0001", 1, 1)]
    assert await store.bundle_stats(500.0, 3) == []


async def test_bundle_bodies_in_a_state_earliest_due_first(store: Store) -> None:
    for n, due in ((1, 300.0), (2, 100.0), (3, 200.0)):
        await store.claim_bundle(bundle(n, due_time=due), members(n, 1))
    await store.claim_bundle(bundle(4, due_time=50.0, state=2), members(4, 1))
    assert await store.bundle_bodies(1, 2) == [
        ("YJS0002", b"bundle body 2"),
        ("YJS0001", b"bundle body 3"),
    ]
    assert await store.bundle_bodies(2, 10) == [("YJS0002", b"bundle body 4")]
