"""Tests for gateway.storage.sqlite: what only the SQLite backend has, on real files in tmp_path.

Its domain operations are tested by the contract suite (test_contract.py), its group commit
by test_group_commit.py; here: the integrity check, commit counters, schema bookkeeping,
opening, that no driver access leaves the store, and that its change feed stays silent.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest
from rows import application, catalog_version

from gateway.errors import StoreUnavailable
from gateway.storage.base import Change, Store, StoredDocument
from gateway.storage.sqlite import SqliteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(tmp_path / "data" / "tongban.db")
    try:
        yield opened
    finally:
        await opened.close()


async def test_integrity_check_is_empty_on_a_fresh_and_a_used_store(store: SqliteStore) -> None:
    assert await store.integrity_check() == []
    await asyncio.gather(*(store.claim_request(application(n)) for n in range(50)))
    await store.upsert_region_catalog("440000", StoredDocument("t", "d", "{}"))
    await store.update_with("app-00003", lambda r: replace(r, state=5))
    await store.record_status_report("app-00003", "ev")
    assert await store.integrity_check() == []


async def test_commit_stats_count_writes_batched_into_fewer_transactions(
    store: SqliteStore,
) -> None:
    assert store.commit_stats() == (0, 0)
    await asyncio.gather(*(store.claim_request(application(n)) for n in range(200)))
    transactions, writes = store.commit_stats()
    assert writes == 200
    assert 0 < transactions < writes  # writes were batched

    await store.get_application("app-00001")
    await store.list_applications(
        "440000", as_origin=True, as_target=True, state=None, limit=10, before=None
    )
    assert store.commit_stats() == (transactions, writes)  # reads commit nothing

    await store.insert_catalog_version(catalog_version("2025.1", 1))
    with pytest.raises(StoreUnavailable):
        await store.insert_catalog_version(catalog_version("2025.1", 2))
    assert store.commit_stats()[1] == writes + 1  # the refused one is not counted


async def test_the_change_feed_says_nothing_until_cancelled(store: SqliteStore) -> None:
    heard: list[Change] = []
    follower = asyncio.create_task(store.follow_changes(heard.append))
    await store.claim_request(application(1))
    await store.update_with("app-00001", lambda r: replace(r, body=b"changed"))
    await store.insert_catalog_version(catalog_version("2025.1", 1))
    await asyncio.sleep(0.2)
    assert not follower.done()
    follower.cancel()
    with pytest.raises(asyncio.CancelledError):
        await follower
    assert heard == []


async def test_the_schema_version_is_recorded_once_and_a_reopened_store_is_sound(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tongban.db"
    first = await SqliteStore.open(path)
    assert first.path == path
    await first.claim_request(application(1))
    await first.close()
    second = await SqliteStore.open(path)
    try:
        assert await second.integrity_check() == []
        assert await second.get_application("app-00001") == application(1)
    finally:
        await second.close()

    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT key, value FROM meta").fetchall() == [("schema_version", "1")]


async def test_an_unopenable_path_is_store_unavailable(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreUnavailable):
        await SqliteStore.open(tmp_path / "dir.db")


def test_the_store_lends_out_no_driver_access() -> None:
    # Beyond the protocol's operations: how to open it, its file, and SQLite's own check.
    protocol = {name for name in dir(Store) if not name.startswith("_")}
    public = {name for name in dir(SqliteStore) if not name.startswith("_")}
    assert public - protocol == {"open", "path", "integrity_check"}
    assert protocol <= public
