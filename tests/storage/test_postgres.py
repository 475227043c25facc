"""Tests for gateway.storage.postgres and its migrations: what only the PostgreSQL backend has.

Its domain operations are tested by the contract suite (test_contract.py); here: the URL and
its password, migrations (once; by replicas starting together; a failed one undone; a newer
database refused), prepared statements reused, driver errors translated, and a database that
goes away (stopped, or its connections terminated) and comes back under a store that is never
reopened. Those last tests start a private server (`pg.PrivatePostgres`) to stop it. And the
change feed: what another store commits is heard, once committed, and not one's own; stores in
another schema are not heard; a lost connection is made again and announced as RESYNC.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import asyncpg
import pg
import pytest
from rows import application, catalog_version

from gateway.errors import StoreUnavailable
from gateway.storage import migrations
from gateway.storage.base import (
    CATALOG_CHANGED,
    RESYNC,
    ApplicationRow,
    Change,
    ChangeKind,
    Store,
    StoredDocument,
)
from gateway.storage.location import PostgresConfig
from gateway.storage.migrations import SCHEMA_VERSION, Migration, SchemaTooNew
from gateway.storage.postgres import CONNECT_TIMEOUT, FEED_APPLICATION_NAME, PostgresStore

# -- the store -----------------------------------------------------------------------------------


def test_the_store_lends_out_no_driver_access() -> None:
    # Beyond the protocol's operations: how to open it, and how to migrate without serving.
    protocol = {name for name in dir(Store) if not name.startswith("_")}
    public = {name for name in dir(PostgresStore) if not name.startswith("_")}
    assert public - protocol == {"open", "migrate"}
    assert protocol <= public


# -- migrations ----------------------------------------------------------------------------------


async def versions(url: str) -> list[tuple[int, str]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT version, description FROM schema_version ORDER BY 1")
        return [(row[0], row[1]) for row in rows]
    finally:
        await conn.close()


async def test_migrations_run_once_and_are_recorded(postgres_url: str) -> None:
    config = PostgresConfig(postgres_url)
    assert await PostgresStore.migrate(config) == SCHEMA_VERSION
    store = await PostgresStore.open(config)
    await store.close()
    assert await PostgresStore.migrate(config) == SCHEMA_VERSION
    recorded = await versions(postgres_url)
    assert recorded == [(v, m.description) for v, m in enumerate(migrations.MIGRATIONS, 1)]


async def test_replicas_starting_together_migrate_once(postgres_url: str) -> None:
    config = PostgresConfig(postgres_url, pool_size=2)
    stores = await asyncio.gather(*(PostgresStore.open(config) for _ in range(8)))
    try:
        assert len(await versions(postgres_url)) == SCHEMA_VERSION
        # Every replica serves the one schema: what one writes, another reads.
        await stores[0].claim_request(application(1))
        assert await stores[7].get_application("app-00001") == application(1)
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_a_failed_migration_leaves_neither_its_changes_nor_its_version(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await PostgresStore.migrate(PostgresConfig(postgres_url))
    broken = Migration("a table, then a mistake", "CREATE TABLE half_done (x int); SELECT 1/0")
    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, broken))
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StoreUnavailable, match="division by zero"):
        await PostgresStore.open(PostgresConfig(postgres_url))
    assert len(await versions(postgres_url)) == SCHEMA_VERSION
    conn = await asyncpg.connect(postgres_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None
    finally:
        await conn.close()


async def test_a_database_newer_than_the_code_is_refused(postgres_url: str) -> None:
    config = PostgresConfig(postgres_url)
    await PostgresStore.migrate(config)
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(
            "INSERT INTO schema_version (version, description) VALUES ($1, 'from the future')",
            SCHEMA_VERSION + 1,
        )
    finally:
        await conn.close()
    expected = rf"at version {SCHEMA_VERSION + 1}, newer than this gateway's {SCHEMA_VERSION}"
    with pytest.raises(SchemaTooNew, match=expected):
        await PostgresStore.open(config)
    with pytest.raises(SchemaTooNew, match=expected):
        await PostgresStore.migrate(config)


async def test_a_role_that_may_not_create_tables_opens_a_migrated_database(
    postgres_url: str,
) -> None:
    # Deployment with least privilege: `tongban migrate` as the owner, the gateway as a role
    # that may only read and write rows.
    await PostgresStore.migrate(PostgresConfig(postgres_url))
    role = f"gw_{uuid.uuid4().hex[:12]}"
    schema = dict(parse_qsl(urlsplit(postgres_url).query))["search_path"]
    await pg.execute(
        postgres_url,
        f"CREATE ROLE {role} LOGIN PASSWORD 'rows-only'",
        f"GRANT USAGE ON SCHEMA {schema} TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
    )
    parts = urlsplit(postgres_url)
    as_role = urlunsplit(parts._replace(netloc=f"{role}@{parts.netloc.rpartition('@')[2]}"))
    try:
        store = await PostgresStore.open(PostgresConfig(as_role, password="rows-only"))
        try:
            await store.claim_request(application(1))
            assert await store.get_application("app-00001") == application(1)
        finally:
            await store.close()
    finally:
        await pg.execute(postgres_url, f"DROP OWNED BY {role}", f"DROP ROLE {role}")


# -- statements ----------------------------------------------------------------------------------


async def test_hot_statements_are_prepared_once_and_reused(postgres_url: str) -> None:
    store = await PostgresStore.open(PostgresConfig(postgres_url, pool_size=1))
    try:
        for n in range(40):
            await store.claim_request(application(n, next_attempt_time=1.0))
            await store.claim_request(application(n, next_attempt_time=1.0))  # the key is taken
        leased = await store.claim_due(now=2.0, owner="w", lease_seconds=30, limit=40)
        for row in leased:
            assert await store.replace_if_unchanged(
                row.application_id,
                expected_body=row.body,
                lease_owner="w",
                state=3,
                update_time=3.0,
                body=b"delivered",
                next_attempt_time=None,
            )
            await store.update_with(row.application_id, lambda r: replace(r, state=4))
        # The pool's one connection: what the server holds prepared for it (test-only access).
        async with store._pool.acquire() as conn:
            prepared = [
                row[0] for row in await conn.fetch("SELECT statement FROM pg_prepared_statements")
            ]
    finally:
        await store.close()
    claims = [s for s in prepared if s.startswith("INSERT INTO applications")]
    outcomes = [s for s in prepared if "UPDATE applications SET state = $1" in s and "$7" in s]
    assert len(claims) == 1, "the claim insert is prepared once and reused 80 times"
    assert len(outcomes) == 2, "the conditional update, and update_with's (each with its notice)"
    assert len(prepared) < 15, prepared


# -- driver errors -------------------------------------------------------------------------------


async def test_no_server_is_store_unavailable_without_the_password() -> None:
    config = PostgresConfig(
        f"postgresql://app@127.0.0.1:{pg.free_port()}/tongban", password="hunter2-secret"
    )
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as refused:
        await PostgresStore.open(config)
    assert time.monotonic() - started < CONNECT_TIMEOUT + 1
    assert refused.value.retry_delay is not None
    assert "hunter2" not in refused.value.message
    with pytest.raises(StoreUnavailable):
        await PostgresStore.migrate(config)


async def test_a_password_file_is_read_at_each_new_connection(
    postgres_url: str, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    config = PostgresConfig(postgres_url, password_file=secret, pool_size=1)
    with pytest.raises(StoreUnavailable) as refused:  # not there yet: no connection
        await PostgresStore.open(config)
    assert "password" in refused.value.message or "No such file" in refused.value.message
    secret.write_text("first\n", encoding="utf-8")
    store = await PostgresStore.open(config)  # trust authentication: any password is accepted
    try:
        await store.claim_request(application(1))
        secret.write_text("rotated\n", encoding="utf-8")
        assert config.read_password() == "rotated"
        assert await store.get_application("app-00001") == application(1)
    finally:
        await store.close()


async def test_a_missing_database_is_store_unavailable(postgres_database: str) -> None:
    with pytest.raises(StoreUnavailable, match="does not exist"):
        await PostgresStore.open(PostgresConfig(pg.with_database(postgres_database, "no_such_db")))


async def test_a_closed_store_refuses_calls_and_waits_for_those_in_flight(
    postgres_url: str,
) -> None:
    store = await PostgresStore.open(PostgresConfig(postgres_url, pool_size=2))
    in_flight = [asyncio.ensure_future(store.claim_request(application(n))) for n in range(20)]
    await asyncio.sleep(0)
    await store.close()
    assert all(created for _, created in await asyncio.gather(*in_flight))
    assert store.commit_stats() == (20, 20)
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.queue_stats()


# -- a database that goes away -------------------------------------------------------------------


@pytest.fixture
def private_server() -> Iterator[pg.PrivatePostgres]:
    """A PostgreSQL of this test's own, to stop and start."""
    server = pg.PrivatePostgres.create()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
async def outage_store(private_server: pg.PrivatePostgres) -> AsyncIterator[PostgresStore]:
    store = await PostgresStore.open(PostgresConfig(private_server.url, pool_size=4))
    try:
        yield store
    finally:
        await store.close()


async def lock_row(url: str, application_id: str) -> asyncpg.Connection[asyncpg.Record]:
    """A connection of its own holding `application_id` locked, in an open transaction."""
    conn = await asyncpg.connect(url)
    await conn.execute("BEGIN")
    await conn.execute(
        "SELECT 1 FROM applications WHERE application_id = $1 FOR UPDATE", application_id
    )
    return conn


@contextlib.asynccontextmanager
async def blocked_update(
    store: PostgresStore, url: str
) -> AsyncIterator[asyncio.Future[ApplicationRow | None]]:
    """An `update_with` of application 0 waiting for a lock another connection holds: a call
    in flight, whatever happens to the database meanwhile."""
    locker = await lock_row(url, "app-00000")
    try:
        update = asyncio.ensure_future(
            store.update_with("app-00000", lambda r: replace(r, state=9))
        )
        await asyncio.sleep(0.3)
        assert not update.done(), "the update waits for the lock"
        yield update
    finally:
        locker.terminate()


async def recovered(store: PostgresStore) -> float:
    """Seconds until a read succeeds again, on the same store."""
    started = time.monotonic()
    while True:
        try:
            await store.queue_stats()
        except StoreUnavailable:
            assert time.monotonic() - started < 15, "the store did not recover"
            await asyncio.sleep(0.1)
        else:
            return time.monotonic() - started


async def test_a_stopped_database_is_unavailable_then_the_same_store_recovers(
    private_server: pg.PrivatePostgres, outage_store: PostgresStore
) -> None:
    store = outage_store
    acknowledged = [application(n, next_attempt_time=1.0) for n in range(20)]
    await asyncio.gather(*(store.claim_request(r) for r in acknowledged))
    async with blocked_update(store, private_server.url) as in_flight:
        await asyncio.to_thread(private_server.stop, "fast")
        with pytest.raises(StoreUnavailable):
            await in_flight
    started = time.monotonic()
    for call in (
        store.get_application("app-00001"),
        store.claim_request(application(99)),
        store.claim_due(now=2.0, owner="w", lease_seconds=30, limit=5),
        store.queue_stats(),
    ):
        with pytest.raises(StoreUnavailable) as down:
            await call
        assert down.value.retry_delay is not None
    assert time.monotonic() - started < 4 * CONNECT_TIMEOUT, "a refused connection fails fast"

    await asyncio.to_thread(private_server.start)
    await recovered(store)
    # Nothing acknowledged was lost; the update cut off in flight was rolled back whole.
    for row in acknowledged:
        assert await store.get_application(row.application_id) == row
    assert await store.get_application("app-00099") is None  # refused, so never written
    results = await asyncio.gather(*(store.claim_request(application(100 + n)) for n in range(30)))
    assert all(created for _, created in results)
    assert await store.queue_stats() == (20, application(0).create_time)


async def test_terminated_connections_are_replaced_without_reopening(
    private_server: pg.PrivatePostgres, outage_store: PostgresStore
) -> None:
    store = outage_store
    acknowledged = [application(n) for n in range(20)]
    await asyncio.gather(*(store.claim_request(r) for r in acknowledged))  # fills the pool
    async with blocked_update(store, private_server.url) as in_flight:
        admin = await asyncpg.connect(private_server.url)
        try:
            terminated = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() "
                "AND state <> 'idle in transaction'"  # all but the connection holding the lock
            )
        finally:
            await admin.close()
        assert terminated >= 2, "the in-flight call's connection and at least one idle one"
        with pytest.raises(StoreUnavailable):
            await in_flight

    await recovered(store)
    results = await asyncio.gather(*(store.claim_request(application(100 + n)) for n in range(30)))
    assert all(created for _, created in results)
    for row in acknowledged:
        assert await store.get_application(row.application_id) == row


async def test_closing_while_the_database_is_down_does_not_hang(
    private_server: pg.PrivatePostgres,
) -> None:
    store = await PostgresStore.open(PostgresConfig(private_server.url, pool_size=2))
    await store.claim_request(application(1))
    await asyncio.to_thread(private_server.stop, "immediate")
    started = time.monotonic()
    await store.close()
    assert time.monotonic() - started < 5


# -- the change feed -----------------------------------------------------------------------------


class Heard:
    """What a store's change feed hands over, as it comes."""

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self._arrived = asyncio.Event()

    def __call__(self, change: Change) -> None:
        self.changes.append(change)
        self._arrived.set()

    async def until(self, count: int, within: float = 10.0) -> list[Change]:
        """The first `count` changes, once that many arrived."""
        async with asyncio.timeout(within):
            while len(self.changes) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.changes[:count]


@contextlib.asynccontextmanager
async def following(store: PostgresStore) -> AsyncIterator[Heard]:
    """The store's feed followed in a task, from its first RESYNC on."""
    heard = Heard()
    task = asyncio.create_task(store.follow_changes(heard))
    try:
        assert await heard.until(1) == [RESYNC]
        yield heard
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def application_changed(n: int) -> Change:
    return Change(ChangeKind.APPLICATION, f"app-{n:05d}")


async def test_the_feed_hears_what_another_store_committed_and_not_its_own(
    postgres_url: str,
) -> None:
    writer = await PostgresStore.open(PostgresConfig(postgres_url, pool_size=2))
    reader = await PostgresStore.open(PostgresConfig(postgres_url, pool_size=2))
    try:
        async with following(reader) as heard:
            await writer.claim_request(application(1))  # a new application: nobody follows it
            await writer.update_with("app-00001", lambda r: replace(r, lease_owner="w"))  # lease
            await writer.update_with("app-00001", lambda r: replace(r, body=b"queued"))
            with pytest.raises(ZeroDivisionError):  # nothing written, nothing said
                await writer.update_with("app-00001", lambda r: replace(r, body=bytes(1 // 0)))
            assert await writer.replace_if_unchanged(
                "app-00001",
                expected_body=b"queued",
                lease_owner="w",
                state=3,
                update_time=2.0,
                body=b"delivered",
                next_attempt_time=None,
            )
            assert not await writer.replace_if_unchanged(  # not changed: not said
                "app-00001",
                expected_body=b"queued",
                lease_owner="w",
                state=3,
                update_time=2.0,
                body=b"delivered",
                next_attempt_time=None,
            )
            await reader.claim_request(application(2))
            await reader.update_with("app-00002", lambda r: replace(r, body=b"own"))  # its own
            await writer.upsert_region_catalog("440000", StoredDocument("t", "d", "{}"))
            assert await writer.insert_catalog_version(catalog_version("2025.2", 2025_000_002))
            assert not await writer.insert_catalog_version(  # refused: nothing to say
                catalog_version("2025.1", 2025_000_001)
            )
            await writer.update_with("app-00002", lambda r: replace(r, body=b"theirs"))
            expected = [application_changed(1)] * 2 + [CATALOG_CHANGED] * 2
            assert await heard.until(6) == [RESYNC, *expected, application_changed(2)]
            await asyncio.sleep(0.3)
            assert len(heard.changes) == 6, "nothing else"
    finally:
        await writer.close()
        await reader.close()


async def test_a_notice_comes_after_its_change_and_a_reread_sees_it(postgres_url: str) -> None:
    writer = await PostgresStore.open(PostgresConfig(postgres_url, pool_size=2))
    reader = await PostgresStore.open(PostgresConfig(postgres_url, pool_size=2))
    try:
        await writer.claim_request(application(1))
        async with following(reader) as heard:
            locker = await lock_row(postgres_url, "app-00001")
            try:
                update = asyncio.ensure_future(
                    writer.update_with("app-00001", lambda r: replace(r, body=b"changed"))
                )
                await asyncio.sleep(0.3)
                assert not update.done()
                assert heard.changes == [RESYNC], "nothing is said before the change is made"
            finally:
                await locker.execute("ROLLBACK")
                await locker.close()
            await update
            assert await heard.until(2) == [RESYNC, application_changed(1)]
            stored = await reader.get_application("app-00001")
            assert stored is not None
            assert stored.body == b"changed", "a re-read sees the change"
    finally:
        await writer.close()
        await reader.close()


async def test_stores_in_another_schema_of_the_database_are_not_heard(
    postgres_database: str,
) -> None:
    with pg.fresh_schema(postgres_database) as ours, pg.fresh_schema(postgres_database) as theirs:
        reader = await PostgresStore.open(PostgresConfig(ours, pool_size=1))
        other = await PostgresStore.open(PostgresConfig(theirs, pool_size=1))
        writer = await PostgresStore.open(PostgresConfig(ours, pool_size=1))
        try:
            async with following(reader) as heard:
                for store in (other, writer):
                    await store.claim_request(application(1))
                    await store.update_with("app-00001", lambda r: replace(r, body=b"x"))
                assert await heard.until(2) == [RESYNC, application_changed(1)]
                await asyncio.sleep(0.3)
                assert len(heard.changes) == 2
        finally:
            for store in (reader, other, writer):
                await store.close()


async def terminate_feeds(url: str) -> int:
    """Terminates every change-feed connection of the database `url` names."""
    conn = await asyncpg.connect(url)
    try:
        terminated: int = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = $1 AND datname = current_database()",
            FEED_APPLICATION_NAME,
        )
        return terminated
    finally:
        await conn.close()


async def test_a_terminated_feed_connection_is_made_again_and_says_resync(
    postgres_url: str,
) -> None:
    writer = await PostgresStore.open(PostgresConfig(postgres_url, pool_size=1))
    reader = await PostgresStore.open(PostgresConfig(postgres_url, pool_size=1))
    try:
        await writer.claim_request(application(1))
        async with following(reader) as heard:
            assert await terminate_feeds(postgres_url) >= 1
            assert await heard.until(2) == [RESYNC, RESYNC]
            await writer.update_with("app-00001", lambda r: replace(r, body=b"after"))
            assert await heard.until(3) == [RESYNC, RESYNC, application_changed(1)]
    finally:
        await writer.close()
        await reader.close()


async def test_the_feed_outlives_a_database_restart(
    private_server: pg.PrivatePostgres,
) -> None:
    config = PostgresConfig(private_server.url, pool_size=1)
    writer, reader = await PostgresStore.open(config), await PostgresStore.open(config)
    try:
        await writer.claim_request(application(1))
        async with following(reader) as heard:
            await asyncio.to_thread(private_server.stop, "fast")
            await asyncio.sleep(1.0)  # the feed retries meanwhile, quietly
            await asyncio.to_thread(private_server.start)
            assert await heard.until(2, within=15) == [RESYNC, RESYNC]
            await recovered(writer)
            await writer.update_with("app-00001", lambda r: replace(r, body=b"after"))
            assert await heard.until(3) == [RESYNC, RESYNC, application_changed(1)]
    finally:
        await writer.close()
        await reader.close()
