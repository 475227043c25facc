"""Tests for gateway.catalog.registry, on a real Store in tmp_path.

The registry is seeded from `standards/` exactly as the gateway seeds itself; versions and lists
are then published, refused, and reloaded through a second registry on the same file. The last
test publishes in a loop while readers check that every snapshot they take is one of the
states the publisher passed through.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from gateway.catalog.diff import RegionImpact
from gateway.catalog.documents import (
    parse_catalog,
    parse_region_catalog,
    region_catalog_to_json,
)
from gateway.catalog.model import CatalogDocument, RegionCatalogDocument, RegionEntry
from gateway.catalog.region_index import RegionIndex
from gateway.catalog.registry import (
    CatalogRegistry,
    canonical_json,
    canonical_region_json,
    digest_of,
    index_stored_region,
    load_provinces,
)
from gateway.catalog.resolution import CatalogSnapshot, Shape, resolve
from gateway.errors import (
    CatalogVersionConflict,
    CatalogVersionRollback,
    FailedPrecondition,
    RegionCatalogInvalid,
    RegionNotFound,
    StoreUnavailable,
)
from gateway.storage.base import CatalogMarker, StoredDocument
from gateway.storage.sqlite import SqliteStore

STANDARDS = Path(__file__).resolve().parents[2] / "standards"
CST = timezone(timedelta(hours=8))
PROVINCES = load_provinces(STANDARDS)
REGION_CODES = ("110000", "330000", "370000", "420000", "440000", "510000", "520000")


class Clock:
    """A settable clock."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def catalog_data(version: str = "2025.1") -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (STANDARDS / "catalog" / f"{version}.json").read_text("utf-8")
    )
    return data


def parsed(data: dict[str, Any]) -> CatalogDocument:
    doc = parse_catalog(data, PROVINCES).value
    assert doc is not None
    return doc


def variant(version: str, effective: str, **changes: Any) -> dict[str, Any]:
    """2025.1's content under another version and effective time."""
    data = copy.deepcopy(catalog_data())
    data.update(version=version, effective_time=effective, **changes)
    return data


def region_doc(code: str) -> RegionCatalogDocument:
    data = json.loads((STANDARDS / "implementations" / f"{code}.json").read_text("utf-8"))
    doc = parse_region_catalog(data, PROVINCES).value
    assert doc is not None
    return doc


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2025, 3, 1, 12, 0, tzinfo=CST))


async def stored_lists(store: SqliteStore) -> list[StoredDocument]:
    """Every stored implementation list, in code order."""
    found = [await store.region_catalog(code) for code in await store.region_catalog_codes()]
    return [d for d in found if d is not None]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "tongban.db"


@pytest.fixture
async def store(db: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(db)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def registry(store: SqliteStore, clock: Clock) -> CatalogRegistry:
    reg = CatalogRegistry(store, PROVINCES, clock)
    await reg.load()
    return reg


@pytest.fixture
async def seeded(registry: CatalogRegistry) -> CatalogRegistry:
    assert await registry.bootstrap(
        [STANDARDS / "catalog" / "2025.1.json"], STANDARDS / "implementations"
    )
    return registry


def state(snapshot: CatalogSnapshot) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    return (
        tuple(r.digest for r in snapshot.versions),
        tuple(sorted((code, ix.digest) for code, ix in snapshot.region_indexes().items())),
    )


# -- bootstrap -------------------------------------------------------------------------------


async def test_bootstrap_loads_the_bundled_catalog_and_every_list(
    seeded: CatalogRegistry, clock: Clock
) -> None:
    snapshot = seeded.snapshot
    assert [r.document.version for r in snapshot.versions] == ["2025.1"]
    record = snapshot.versions[0]
    assert record.digest == digest_of(catalog_data())
    assert record.publish_time == clock.now
    assert record.document == parsed(catalog_data())
    assert sorted(snapshot.region_indexes()) == list(REGION_CODES)
    for code in REGION_CODES:
        index = snapshot.region_indexes()[code]
        assert index.document == region_doc(code), code
        assert index.digest == digest_of(region_catalog_to_json(index.document))
    found = resolve(snapshot, "440000", "11440000MBDCGK306L2000117112000", now=clock.now)
    assert found.shape is Shape.ONE_TO_ONE


async def test_bootstrap_only_seeds_an_empty_store(seeded: CatalogRegistry) -> None:
    before = state(seeded.snapshot)
    assert not await seeded.bootstrap(
        [STANDARDS / "catalog" / "2025.2.json"], STANDARDS / "implementations"
    )
    assert state(seeded.snapshot) == before


# -- versions --------------------------------------------------------------------------------


async def test_publishing_2025_2_reports_the_diff_and_its_impact(
    seeded: CatalogRegistry, clock: Clock
) -> None:
    data = catalog_data("2025.2")
    clock.now += timedelta(minutes=5)
    outcome = await seeded.publish_version(parsed(data), data, signed_document="")
    assert outcome.created
    assert outcome.record.digest == digest_of(data)
    assert outcome.record.publish_time == clock.now
    assert outcome.diff is not None
    assert (outcome.diff.from_version, outcome.diff.to_version) == ("2025.1", "2025.2")
    assert outcome.diff.removed == ("000133021000", "002039011000")
    assert outcome.diff.added == ("000147021000", "002033031000")
    assert [c for c, _ in outcome.diff.changed] == ["000737011003", "000743011000", "002031011000"]
    removed_by_region = {i.region_code: i.removed for i in outcome.impacts}
    assert removed_by_region == {
        "110000": ("002039011000",),
        "330000": ("002039011000",),
        "370000": ("002039011000",),
        "420000": ("002039011000",),
        "440000": ("000133021000",),
        "510000": (),
        "520000": ("002039011000",),
    }
    assert all(isinstance(i, RegionImpact) and len(i.changed) == 3 for i in outcome.impacts)
    snapshot = seeded.snapshot
    assert [r.document.version for r in snapshot.versions] == ["2025.1", "2025.2"]
    current = snapshot.current(clock.now)
    assert current is not None
    assert current.document.version == "2025.1"  # 2025.2 is scheduled for July


async def test_republishing_identical_content_is_a_no_op(
    seeded: CatalogRegistry, store: SqliteStore, clock: Clock
) -> None:
    data = catalog_data("2025.2")
    first = await seeded.publish_version(parsed(data), data, signed_document="")
    clock.now += timedelta(hours=1)
    reordered = dict(reversed(list(copy.deepcopy(data).items())))  # same content, other order
    again = await seeded.publish_version(parsed(reordered), reordered, signed_document="")
    assert not again.created
    assert again.record is first.record
    assert (again.diff, again.impacts) == (None, ())
    assert len(await store.catalog_versions()) == 2
    first_again = await seeded.publish_version(
        parsed(catalog_data()), catalog_data(), signed_document=""
    )
    assert not first_again.created


async def test_the_same_version_with_other_content_is_a_conflict(
    seeded: CatalogRegistry, store: SqliteStore
) -> None:
    before = state(seeded.snapshot)
    data = catalog_data()
    data["publisher"] = "someone-else"
    with pytest.raises(CatalogVersionConflict) as caught:
        await seeded.publish_version(parsed(data), data, signed_document="")
    assert caught.value.metadata == {"version": "2025.1"}
    assert state(seeded.snapshot) == before
    assert len(await store.catalog_versions()) == 1


@pytest.mark.parametrize("version", ["2024.9", "2024.12", "2025.0"])
async def test_an_older_version_is_a_rollback(
    seeded: CatalogRegistry, store: SqliteStore, version: str
) -> None:
    data = variant(version, "2026-01-01T00:00:00+08:00")
    with pytest.raises(CatalogVersionRollback) as caught:
        await seeded.publish_version(parsed(data), data, signed_document="")
    assert caught.value.metadata == {"latest_version": "2025.1"}
    assert len(seeded.snapshot.versions) == 1
    assert len(await store.catalog_versions()) == 1


async def test_an_effective_time_before_the_latest_is_a_rollback(
    seeded: CatalogRegistry,
) -> None:
    july = catalog_data("2025.2")
    await seeded.publish_version(parsed(july), july, signed_document="")
    june = variant("2025.3", "2025-06-01T00:00:00+08:00")
    with pytest.raises(CatalogVersionRollback, match=r"takes effect before 2025\.2"):
        await seeded.publish_version(parsed(june), june, signed_document="")
    same_day = variant("2025.3", "2025-07-01T00:00:00+08:00")
    assert (await seeded.publish_version(parsed(same_day), same_day, signed_document="")).created


async def test_validate_only_publishes_nothing(seeded: CatalogRegistry, store: SqliteStore) -> None:
    before = state(seeded.snapshot)
    data = catalog_data("2025.2")
    outcome = await seeded.publish_version(
        parsed(data), data, signed_document="", validate_only=True
    )
    assert not outcome.created
    assert outcome.diff is not None
    assert len(outcome.impacts) == 7
    listed = await seeded.publish_region(region_doc("510000"), validate_only=True)
    assert len(listed.warnings) == 6
    assert state(seeded.snapshot) == before
    assert len(await store.catalog_versions()) == 1


async def test_a_signed_document_is_stored_with_the_version(
    seeded: CatalogRegistry, store: SqliteStore
) -> None:
    data = catalog_data("2025.2")
    await seeded.publish_version(parsed(data), data, signed_document="header.payload.sig")
    rows = await store._engine.read(
        lambda c: c.execute(
            "SELECT version, sort_key, signed_document FROM catalog_versions ORDER BY sort_key"
        ).fetchall()
    )
    assert rows == [("2025.1", 2025_000_001, ""), ("2025.2", 2025_000_002, "header.payload.sig")]


async def test_a_failed_store_write_publishes_nothing(
    seeded: CatalogRegistry, store: SqliteStore
) -> None:
    before = seeded.snapshot
    await store.close()
    data = catalog_data("2025.2")
    with pytest.raises(StoreUnavailable):
        await seeded.publish_version(parsed(data), data, signed_document="")
    with pytest.raises(StoreUnavailable):
        await seeded.publish_region(region_doc("440000"))
    assert seeded.snapshot is before


# -- restart ---------------------------------------------------------------------------------


async def test_a_new_registry_on_the_same_file_sees_everything(
    seeded: CatalogRegistry, store: SqliteStore, db: Path, clock: Clock
) -> None:
    data = catalog_data("2025.2")
    await seeded.publish_version(parsed(data), data, signed_document="")
    changed = region_doc("520000")
    changed = RegionCatalogDocument(
        changed.region_code, changed.entries[:-1], changed.region_name, changed.dialect
    )
    await seeded.publish_region(changed)
    expected = seeded.snapshot
    await store.close()

    reopened = await SqliteStore.open(db)
    try:
        restarted = CatalogRegistry(reopened, PROVINCES, Clock(clock.now + timedelta(days=1)))
        await restarted.load()
        assert state(restarted.snapshot) == state(expected)
        for old, new in zip(expected.versions, restarted.snapshot.versions, strict=True):
            assert new.document == old.document
            assert new.publish_time == old.publish_time
        for code, index in expected.region_indexes().items():
            again = restarted.snapshot.region_indexes()[code]
            assert again.document == index.document
            assert again.publish_time == index.publish_time
            assert again.by_local.keys() == index.by_local.keys()
        assert "GG00808000" not in restarted.snapshot.region_indexes()["520000"].by_local
        assert not await restarted.bootstrap(
            [STANDARDS / "catalog" / "2025.1.json"], STANDARDS / "implementations"
        )
    finally:
        await reopened.close()


# -- replicas: two registries on one database ---------------------------------------------


@pytest.fixture
async def replica(
    db: Path, seeded: CatalogRegistry, clock: Clock
) -> AsyncIterator[CatalogRegistry]:
    """Another replica: a registry on its own store of the same file, loaded after seeding."""
    other = await SqliteStore.open(db)
    try:
        registry = CatalogRegistry(other, PROVINCES, clock)
        await registry.load()
        yield registry
    finally:
        await other.close()


async def test_a_version_published_through_another_replica_comes_in_on_refresh(
    seeded: CatalogRegistry, replica: CatalogRegistry
) -> None:
    data = catalog_data("2025.2")
    await seeded.publish_version(parsed(data), data, signed_document="")
    before = replica.snapshot
    assert [r.document.version for r in before.versions] == ["2025.1"]
    assert await replica.refresh()
    after = replica.snapshot
    assert state(after) == state(seeded.snapshot)
    assert after.versions[0] is before.versions[0], "a version already loaded is not parsed again"
    assert after.region_indexes() == before.region_indexes()
    assert not await replica.refresh(), "nothing new: nothing loaded"
    assert replica.snapshot is after
    assert not await seeded.refresh(), "its own publication is already in its snapshot"


async def test_only_the_list_published_through_another_replica_is_loaded(
    seeded: CatalogRegistry, replica: CatalogRegistry
) -> None:
    doc = region_doc("520000")
    await seeded.publish_region(
        RegionCatalogDocument(doc.region_code, doc.entries[:-1], doc.region_name, doc.dialect)
    )
    before = replica.snapshot.region_indexes()
    assert await replica.refresh()
    after = replica.snapshot.region_indexes()
    assert state(replica.snapshot) == state(seeded.snapshot)
    assert [code for code in after if after[code] is not before[code]] == ["520000"]


async def test_a_replica_that_has_not_reloaded_refuses_an_older_version(
    seeded: CatalogRegistry, replica: CatalogRegistry, store: SqliteStore
) -> None:
    newer = variant("2025.3", "2025-08-01T00:00:00+08:00")
    await seeded.publish_version(parsed(newer), newer, signed_document="")
    older = catalog_data("2025.2")
    assert [r.document.version for r in replica.snapshot.versions] == ["2025.1"]
    with pytest.raises(CatalogVersionRollback) as caught:
        await replica.publish_version(parsed(older), older, signed_document="")
    assert caught.value.metadata == {"latest_version": "2025.3"}
    assert [r.document.version for r in replica.snapshot.versions] == ["2025.1", "2025.3"]
    assert len(await store.catalog_versions()) == 2


async def test_a_publication_that_loses_a_race_to_another_replica_is_judged_again(
    seeded: CatalogRegistry,
    replica: CatalogRegistry,
    store: SqliteStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The other replica stores its version between this one's refresh and its insert: the
    # refresh that opens the publication sees the store as it was (the snapshot's marker).
    stale = await replica.store.catalog_marker()
    fresh = replica.store.catalog_marker
    calls: list[int] = []

    async def marker_before_the_race() -> CatalogMarker:
        calls.append(1)
        return stale if len(calls) == 1 else await fresh()

    monkeypatch.setattr(replica.store, "catalog_marker", marker_before_the_race)
    newer = variant("2025.3", "2025-08-01T00:00:00+08:00")
    await seeded.publish_version(parsed(newer), newer, signed_document="")
    older = catalog_data("2025.2")
    with pytest.raises(CatalogVersionRollback):
        await replica.publish_version(parsed(older), older, signed_document="")
    assert len(calls) == 2, "refused by the store, then judged again on what it holds"
    assert len(await store.catalog_versions()) == 2

    calls.clear()  # the same race with the very same version: an identical republication
    stale = await replica.store.catalog_marker()
    same = variant("2025.4", "2025-09-01T00:00:00+08:00")
    await seeded.publish_version(parsed(same), same, signed_document="")
    again = await replica.publish_version(parsed(same), same, signed_document="")
    assert not again.created
    assert again.record.digest == digest_of(same)


# -- region lists ----------------------------------------------------------------------------


async def test_a_list_with_errors_leaves_the_previous_list_live(
    seeded: CatalogRegistry, store: SqliteStore
) -> None:
    live = seeded.snapshot.region_indexes()["440000"]
    stored_before = await stored_lists(store)
    good = region_doc("440000")
    bad = RegionCatalogDocument(
        "440000",
        (
            *good.entries,
            RegionEntry("NEW-1", ("009999999000",), "不存在的事项", "a", "11440000MBDCGK306L"),
            RegionEntry(good.entries[0].local_code, ("000117113000",), "冲突", "a", ""),
        ),
    )
    with pytest.raises(RegionCatalogInvalid) as caught:
        await seeded.publish_region(bad)
    assert [(v.field, v.reason) for v in caught.value.field_violations] == [
        (f"entries[{len(good.entries)}].national_codes[0]", "UNKNOWN_NATIONAL_CODE"),
        (f"entries[{len(good.entries) + 1}].local_code", "CONFLICTING_DUPLICATE"),
    ]
    assert caught.value.metadata == {"region_code": "440000"}
    assert seeded.snapshot.region_indexes()["440000"] is live
    assert await stored_lists(store) == stored_before


async def test_publishing_a_list_replaces_it_and_reports_warnings(
    seeded: CatalogRegistry, clock: Clock
) -> None:
    clock.now += timedelta(minutes=1)
    doc = region_doc("510000")
    smaller = RegionCatalogDocument("510000", doc.entries[20:], dialect="HYPHENATED")
    outcome = await seeded.publish_region(smaller)
    assert [(w.entry_index, w.reason) for w in outcome.warnings] == [
        (2, "RETIRED"),
        (5, "LEGACY_ORG_CODE"),
        (7, "USCC_BAD_CHECK"),
        (8, "TRUNCATED_USCC"),
        (14, "PLACEHOLDER"),
        (15, "TRUNCATED_USCC"),
    ]
    index = seeded.snapshot.region_indexes()["510000"]
    assert index is outcome.index
    assert index.publish_time == clock.now
    assert index.document.region_name == "四川省"  # filled in from regions.json
    assert index.document.catalog_version == "2025.1"
    assert len(index.by_local) == 17


async def test_a_list_is_checked_against_the_version_in_force(
    seeded: CatalogRegistry, clock: Clock
) -> None:
    data = catalog_data("2025.2")
    await seeded.publish_version(parsed(data), data, signed_document="")
    guangdong = region_doc("440000")
    assert (await seeded.publish_region(guangdong)).index.document.catalog_version == "2025.1"
    clock.now = datetime(2025, 7, 2, tzinfo=CST)
    with pytest.raises(RegionCatalogInvalid):  # it still lists 户外招牌设置, gone in 2025.2
        await seeded.publish_region(guangdong)
    sichuan = await seeded.publish_region(region_doc("510000"))
    assert sichuan.index.document.catalog_version == "2025.2"


async def test_a_list_for_no_province_is_region_not_found(seeded: CatalogRegistry) -> None:
    with pytest.raises(RegionNotFound) as caught:
        await seeded.publish_region(RegionCatalogDocument("810000", ()))
    assert caught.value.metadata == {"field": "region_catalog.name"}


async def test_a_list_before_any_version_is_a_failed_precondition(
    registry: CatalogRegistry,
) -> None:
    with pytest.raises(FailedPrecondition, match="no catalog version"):
        await registry.publish_region(region_doc("440000"))
    assert registry.snapshot.region_indexes() == {}


async def test_a_scheduled_only_catalog_still_checks_lists(
    registry: CatalogRegistry, clock: Clock
) -> None:
    future = variant("2025.1", "2030-01-01T00:00:00+08:00")
    await registry.publish_version(parsed(future), future, signed_document="")
    assert registry.snapshot.current(clock.now) is None
    outcome = await registry.publish_region(region_doc("420000"))
    assert outcome.index.document.catalog_version == "2025.1"


# -- atomic swap -----------------------------------------------------------------------------

ROUNDS = 12
READERS = 8
A, B = "440000", "510000"


def round_list(region: str, k: int) -> RegionCatalogDocument:
    """Round k's list for a province: three rows that all say which round they belong to."""
    nationals = ("000117112000", "000117113000", "002041021000")
    return RegionCatalogDocument(
        region,
        tuple(
            RegionEntry(f"R{k}-{i}", (n,), f"round {k}", "某局", "11440000MBDCGK306L")
            for i, n in enumerate(nationals)
        ),
    )


def round_of(index: RegionIndex) -> int:
    rounds = {e.local_name.removeprefix("round ") for e in index.document.entries}
    if not all(r.isdigit() for r in rounds):
        return 0  # the bundled list
    assert len(rounds) == 1, f"rows of several rounds in one list: {rounds}"
    return int(rounds.pop())


async def test_readers_never_see_a_torn_snapshot(
    seeded: CatalogRegistry, store: SqliteStore, clock: Clock
) -> None:
    version_data = {
        k: variant(f"2026.{k}", (datetime(2026, 1, 1, tzinfo=CST) + timedelta(days=k)).isoformat())
        for k in range(1, ROUNDS + 1)
    }
    version_docs = {k: parsed(d) for k, d in version_data.items()}
    version_digests = {digest_of(catalog_data())} | {digest_of(d) for d in version_data.values()}
    done = asyncio.Event()
    observed: set[tuple[int, int, int]] = set()
    verified: dict[int, RegionIndex] = {}  # indexes already checked, kept alive by id

    def check(snapshot: CatalogSnapshot) -> tuple[int, int, int]:
        names = [r.document.version for r in snapshot.versions]
        v = len(names) - 1
        assert names == ["2025.1"] + [f"2026.{k}" for k in range(1, v + 1)]
        assert {r.digest for r in snapshot.versions} <= version_digests
        indexes = snapshot.region_indexes()
        assert sorted(indexes) == list(REGION_CODES)
        for index in (indexes[A], indexes[B]):
            if id(index) not in verified:
                assert index.digest == digest_of(region_catalog_to_json(index.document))
                assert set(index.by_local) == {e.local_code for e in index.document.entries}
                verified[id(index)] = index
        ra, rb = round_of(indexes[A]), round_of(indexes[B])
        # Each round publishes version k, then A's list, then B's: anything else is torn.
        assert v - 1 <= rb <= ra <= v, (v, ra, rb)
        return (v, ra, rb)

    async def publisher() -> None:
        try:
            for k in range(1, ROUNDS + 1):
                await seeded.publish_version(version_docs[k], version_data[k], signed_document="")
                await seeded.publish_region(round_list(A, k))
                await seeded.publish_region(round_list(B, k))
        finally:
            done.set()

    async def reader(n: int) -> int:
        iterations = 0
        while not done.is_set() and iterations < 5_000:
            snapshot = seeded.snapshot
            seen = check(snapshot)
            observed.add(seen)
            await asyncio.sleep(0)
            assert check(snapshot) == seen  # a request keeps the snapshot it started with
            if iterations % 7 == n % 7:
                # Durable before visible: the store already holds what the snapshot shows.
                stored_versions = await store.catalog_versions()
                assert len(stored_versions) >= seen[0] + 1
                for region, seen_round in ((A, seen[1]), (B, seen[2])):
                    stored = await store.region_catalog(region)
                    assert stored is not None
                    names = {e["local_name"] for e in json.loads(stored.document)["entries"]}
                    stored_round = int(names.pop().removeprefix("round ")) if seen_round else 0
                    assert stored_round >= seen_round
            iterations += 1
        return iterations

    results = await asyncio.gather(publisher(), *(reader(n) for n in range(READERS)))
    assert all(isinstance(r, int) and r > 0 for r in results[1:])
    assert check(seeded.snapshot) == (ROUNDS, ROUNDS, ROUNDS)
    # The readers really ran between publications: they saw many distinct states.
    assert len(observed) >= ROUNDS
    assert all(v - 1 <= rb <= ra <= v for v, ra, rb in observed)


# -- the stored form -------------------------------------------------------------------------


@pytest.mark.parametrize("code", REGION_CODES)
def test_chunked_encoding_is_the_canonical_json(code: str) -> None:
    data = region_catalog_to_json(region_doc(code))
    assert canonical_region_json(data) == canonical_json(data)
    tricky = {**data, "provenance": 'says "entries":[] and \\"entries\\":[]', "entries": []}
    assert canonical_region_json(tricky) == canonical_json(tricky)


def _many_rows(n: int) -> RegionCatalogDocument:
    return RegionCatalogDocument(
        "440000",
        tuple(
            RegionEntry(f"L{i}", ("000117112000",), "名", "局", "11440000MBDCGK306L")
            for i in range(n)
        ),
    )


def test_chunked_encoding_across_chunk_boundaries() -> None:
    for n in (0, 1, 1999, 2000, 2001, 4500):
        data = region_catalog_to_json(_many_rows(n))
        assert canonical_region_json(data) == canonical_json(data), n


@pytest.mark.parametrize("code", REGION_CODES)
def test_a_stored_list_is_indexed_back_to_the_same_document(code: str) -> None:
    doc = region_doc(code)
    text = canonical_json(region_catalog_to_json(doc))
    published = datetime(2025, 3, 1, tzinfo=CST)
    index = index_stored_region(text, published, digest_of(json.loads(text)), PROVINCES)
    assert index.document == doc
    assert index.publish_time == published


def test_a_stored_list_not_in_canonical_form_is_parsed_in_full() -> None:
    doc = region_doc("510000")
    text = json.dumps(region_catalog_to_json(doc), ensure_ascii=False, indent=1)
    index = index_stored_region(text, datetime(2025, 3, 1, tzinfo=CST), "other", PROVINCES)
    assert index.document == doc


def test_a_stored_list_that_no_longer_parses_is_refused() -> None:
    data = region_catalog_to_json(region_doc("510000"))
    data["entries"][3]["national_codes"] = []
    text = canonical_json(data)
    with pytest.raises(RegionCatalogInvalid):
        index_stored_region(text, datetime(2025, 3, 1, tzinfo=CST), digest_of(data), PROVINCES)
