"""The production store: PostgreSQL through asyncpg's connection pool, shared by any replicas.

It implements `storage.base.Store` (whose invariants it keeps) with the same semantics as the
SQLite backend, and adds what a shared server needs:

- Durable before returned: every write is one transaction, committed (`synchronous_commit` as
  the server has it, `on` by default) before its coroutine returns. So `commit_stats()` counts
  transactions and writes alike: there is no group commit to batch them here (PostgreSQL's own
  `commit_delay` is the server's to set).
- Idempotent intake by the unique constraint: `claim_request` inserts with
  `ON CONFLICT (origin_region, request_id) DO NOTHING` and, when another claim holds the key,
  reads that row in a new statement (so it sees the other claim once committed). Any other
  unique violation (a reused application id, a duplicate catalog version) is an error.
- Leases by row locks: `claim_due` selects due rows `FOR UPDATE SKIP LOCKED` and leases them
  in the same statement, so concurrent claimers, in this process or another, never share a
  row and never wait for each other. `update_with` reads its row `FOR UPDATE` and writes it in
  the same transaction.
- Statements are fixed strings with `$n` parameters: asyncpg prepares each once per connection
  and reuses it from its statement cache (a few dozen distinct statements; the cache holds 100).
- The schema is migrated on open (`storage.migrations`), under an advisory lock.
- Catalog versions only grow, across replicas: the insert takes a transaction-scoped advisory
  lock, checks the newest stored sort key and inserts in one transaction.
- The change feed is `LISTEN/NOTIFY`. Every write that changes an application's body, and every
  catalog write, sends `pg_notify` in its own transaction, so the notice leaves on commit and
  never for a rolled-back change; creating an application does not (nobody can be following
  one that did not exist). Channels are named by the schema's oid, so stores in two schemas of
  one database do not hear each other; a notice carries this store's random instance id, so a
  store does not hear its own (its process emits its own changes as events). `follow_changes`
  listens on a connection of its own, outside the pool (a pooled connection is shared, and
  LISTEN is session state); it checks that connection every few seconds, and when it is lost
  reconnects with backoff and announces `RESYNC` first, since notices sent meanwhile are gone.
  Cost: PostgreSQL serializes the commits of notifying transactions (one lock per database, held
  through the commit's flush), which is why only changes of existing applications notify.
- asyncpg's errors, connection errors and timeouts are translated here, into
  `StoreUnavailable`, and nowhere else; the message never carries the password. A connection
  the server dropped is replaced by the pool on a later call: the store recovers by itself
  when the database comes back.
- `close()` refuses new calls, waits for the ones in flight (so what was accepted is
  committed), then closes the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import asyncpg

from gateway.errors import StoreUnavailable
from gateway.storage.base import (
    CATALOG_CHANGED,
    RESYNC,
    ApplicationRow,
    BundleRow,
    CatalogMarker,
    Change,
    ChangeKind,
    NewCatalogVersion,
    StoredDocument,
)
from gateway.storage.location import PostgresConfig
from gateway.storage.migrations import pending

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

log = logging.getLogger(__name__)

T = TypeVar("T")
Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record] | asyncpg.Connection[asyncpg.Record]"

RETRY_DELAY = 1.0
"""Seconds a caller is told to wait (RetryInfo) after a store failure."""
CONNECT_TIMEOUT = 5.0
"""Seconds to open one connection (a database that does not answer fails this fast)."""
COMMAND_TIMEOUT = 30.0
"""Seconds one statement may run."""
ACQUIRE_TIMEOUT = 10.0
"""Seconds a call waits for a free connection of the pool."""
CLOSE_TIMEOUT = 30.0
"""Seconds `close()` waits for calls in flight, then for the pool, before cutting them off."""
MIGRATION_LOCK = 0x746F6E6762616E  # "tongban"
"""The advisory lock key held (per transaction) while migrating."""
CATALOG_LOCK = MIGRATION_LOCK + 1
"""The advisory lock key held (per transaction) while storing a catalog version."""
FEED_APPLICATION_NAME = "tongban-change-feed"
"""How the change feed's connection shows in `pg_stat_activity`."""
FEED_CHECK = 5.0
"""Seconds between two checks that the change feed's connection is alive."""
FEED_RETRY_MIN, FEED_RETRY_MAX = 0.2, 5.0
"""Seconds before the change feed reconnects, doubling from the first to the second."""

DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)
"""What the driver raises: server errors, client-side errors (a closed pool or connection),
socket errors (refused, reset) and timeouts. `update_with`'s function is pure and raises
none of these, so its own errors pass through untranslated."""


class PostgresStore:
    """The PostgreSQL store. Open with `await PostgresStore.open(config)`, close with
    `await close()`."""

    def __init__(
        self, pool: asyncpg.Pool[asyncpg.Record], config: PostgresConfig, schema_oid: int
    ) -> None:
        self._pool = pool
        self._config = config
        self._instance = uuid.uuid4().hex[:16]
        """Marks this store's notices, so that it skips them."""
        self._applications_channel = f"tongban_applications_{schema_oid}"
        self._catalog_channel = f"tongban_catalog_{schema_oid}"
        self._closed = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._writes = 0

    @classmethod
    async def open(cls, config: PostgresConfig) -> PostgresStore:
        """Connects, migrates the schema to this code's version, and opens the pool."""
        try:
            pool = await asyncpg.create_pool(
                config.url,
                password=_password(config),
                min_size=1,
                max_size=config.pool_size,
                timeout=CONNECT_TIMEOUT,
                command_timeout=COMMAND_TIMEOUT,
                reset=_keep_session,
            )
        except DRIVER_ERRORS as exc:
            raise _unavailable(exc, config, "cannot open the store") from exc
        try:
            async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
                await _migrate(conn)
                schema_oid = await conn.fetchval(
                    "SELECT relnamespace::integer FROM pg_class "
                    "WHERE oid = 'applications'::regclass"
                )
        except BaseException as exc:
            pool.terminate()
            if isinstance(exc, DRIVER_ERRORS):
                raise _unavailable(exc, config, "cannot open the store") from exc
            raise
        return cls(pool, config, int(schema_oid))

    @staticmethod
    async def migrate(config: PostgresConfig) -> int:
        """Migrates the database alone (no pool) and returns its schema version."""
        try:
            conn = await asyncpg.connect(
                config.url,
                password=_password(config),
                timeout=CONNECT_TIMEOUT,
                command_timeout=COMMAND_TIMEOUT,
            )
        except DRIVER_ERRORS as exc:
            raise _unavailable(exc, config, "cannot reach the database") from exc
        try:
            return await _migrate(conn)
        except DRIVER_ERRORS as exc:
            raise _unavailable(exc, config, "migrating failed") from exc
        finally:
            try:
                await conn.close(timeout=CONNECT_TIMEOUT)
            except DRIVER_ERRORS:
                conn.terminate()

    async def close(self) -> None:
        """Refuses new calls, lets those in flight finish, then closes every connection;
        closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._idle.wait()
                await self._pool.close()
        except (TimeoutError, *DRIVER_ERRORS):
            self._pool.terminate()

    def commit_stats(self) -> tuple[int, int]:
        """(transactions committed, writes committed) since opening: one transaction a write."""
        return self._writes, self._writes

    async def _call(self, op: Callable[[Connection], Awaitable[T]], *, write: bool = False) -> T:
        """Runs `op` on a pooled connection: the one path to the driver, and the one place
        its errors become `StoreUnavailable`."""
        if self._closed:
            raise StoreUnavailable("the store is closed", retry_delay=RETRY_DELAY)
        self._in_flight += 1
        self._idle.clear()
        try:
            async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
                result = await op(conn)
        except DRIVER_ERRORS as exc:
            raise _unavailable(exc, self._config, "the store failed") from exc
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()
        if write:
            self._writes += 1
        return result

    # -- the change feed ---------------------------------------------------------------------

    async def follow_changes(self, on_change: Callable[[Change], None]) -> None:
        """Listens for other stores' notices until cancelled (or this store closes),
        reconnecting whenever the connection is lost; `RESYNC` after each connection."""
        delay, away = FEED_RETRY_MIN, False
        while not self._closed:
            try:
                conn = await asyncpg.connect(
                    self._config.url,
                    password=_password(self._config),
                    timeout=CONNECT_TIMEOUT,
                    command_timeout=COMMAND_TIMEOUT,
                    server_settings={"application_name": FEED_APPLICATION_NAME},
                )
            except DRIVER_ERRORS as exc:
                if not away:
                    log.warning("change feed: %s", _unavailable(exc, self._config, "no connection"))
                away = True
                await asyncio.sleep(delay)
                delay = min(FEED_RETRY_MAX, delay * 2)
                continue
            if away:
                log.info("change feed: listening again")
            delay, away = FEED_RETRY_MIN, False
            try:
                await self._listen(conn, on_change)
            except DRIVER_ERRORS as exc:
                log.warning("change feed: %s", _unavailable(exc, self._config, "connection lost"))
                away = True
            finally:
                conn.terminate()

    async def _listen(
        self, conn: asyncpg.Connection[asyncpg.Record], on_change: Callable[[Change], None]
    ) -> None:
        """Hands notices to `on_change` until the connection is lost (raises) or the store
        closes (returns)."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _: lost.set())

        def heard(_: object, __: int, channel: str, payload: object) -> None:
            instance, _sep, key = str(payload).partition(" ")
            if instance == self._instance:
                return
            if channel == self._applications_channel:
                on_change(Change(ChangeKind.APPLICATION, key))
            else:
                on_change(CATALOG_CHANGED)

        await conn.add_listener(self._applications_channel, heard)
        await conn.add_listener(self._catalog_channel, heard)
        on_change(RESYNC)
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), FEED_CHECK)
            if lost.is_set():
                raise asyncpg.InterfaceError("the listening connection was closed")
            await conn.execute("SELECT 1", timeout=FEED_CHECK)  # a silent peer shows here

    def _notice(self, key: str = "") -> str:
        return f"{self._instance} {key}"

    # -- catalog ---------------------------------------------------------------------------

    async def insert_catalog_version(self, version: NewCatalogVersion) -> bool:
        """Stores a version newer than every stored one: the check and the insert under one
        advisory lock, in one transaction, so replicas publishing at once cannot both pass."""
        v = version

        async def run(conn: Connection) -> bool:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", CATALOG_LOCK)
                latest = await conn.fetchval("SELECT max(sort_key) FROM catalog_versions")
                if latest is not None and latest >= v.sort_key:
                    return False
                await conn.execute(
                    "INSERT INTO catalog_versions (version, sort_key, effective_time, "
                    "publish_time, publisher, digest, document, signed_document) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    v.version,
                    v.sort_key,
                    v.effective_time,
                    v.publish_time,
                    v.publisher,
                    v.digest,
                    v.document,
                    v.signed_document,
                )
                await conn.execute(_NOTIFY, self._catalog_channel, self._notice())
                return True

        return await self._call(run, write=True)

    async def catalog_versions(self) -> list[StoredDocument]:
        """Every stored version, oldest first."""
        rows = await self._call(
            lambda c: c.fetch(
                "SELECT publish_time, digest, document FROM catalog_versions ORDER BY sort_key"
            )
        )
        return [StoredDocument(*row) for row in rows]

    async def upsert_region_catalog(self, region_code: str, document: StoredDocument) -> None:
        """Stores (replacing) a province's implementation list."""
        d = document

        async def run(conn: Connection) -> None:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO region_catalogs (region_code, publish_time, digest, document) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT (region_code) DO UPDATE SET "
                    "publish_time = excluded.publish_time, digest = excluded.digest, "
                    "document = excluded.document",
                    region_code,
                    d.publish_time,
                    d.digest,
                    d.document,
                )
                await conn.execute(_NOTIFY, self._catalog_channel, self._notice())

        await self._call(run, write=True)

    async def region_catalog_codes(self) -> list[str]:
        """The provinces with a stored list, in code order."""
        rows = await self._call(
            lambda c: c.fetch("SELECT region_code FROM region_catalogs ORDER BY region_code")
        )
        return [str(row[0]) for row in rows]

    async def region_catalog(self, region_code: str) -> StoredDocument | None:
        """One province's list, if stored."""
        row = await self._call(
            lambda c: c.fetchrow(
                "SELECT publish_time, digest, document FROM region_catalogs WHERE region_code = $1",
                region_code,
            )
        )
        return StoredDocument(*row) if row is not None else None

    async def catalog_marker(self) -> CatalogMarker:
        """The newest version's sort key and every list's digest."""

        async def run(conn: Connection) -> CatalogMarker:
            latest = await conn.fetchval("SELECT max(sort_key) FROM catalog_versions")
            rows = await conn.fetch("SELECT region_code, digest FROM region_catalogs")
            return CatalogMarker(latest, {str(row[0]): str(row[1]) for row in rows})

        return await self._call(run)

    # -- applications ----------------------------------------------------------------------

    async def claim_request(self, row: ApplicationRow) -> tuple[ApplicationRow, bool]:
        """Inserts a new application unless its (origin, request id) exists.

        Returns the stored row and whether it was created now.
        """

        async def run(conn: Connection) -> tuple[ApplicationRow, bool]:
            inserted = await conn.fetchval(_CLAIM, *_values(row))
            if inserted:
                return row, True
            existing = await conn.fetchrow(_BY_KEY, row.origin_region, row.request_id)
            if existing is None:  # the holder vanished between the two statements: not ours
                raise StoreUnavailable(
                    "the request id was claimed and released meanwhile", retry_delay=RETRY_DELAY
                )
            return _row(existing), False

        return await self._call(run, write=True)

    async def find_request(self, origin_region: str, request_id: str) -> ApplicationRow | None:
        """The application an idempotency key names, if any."""
        found = await self._call(lambda c: c.fetchrow(_BY_KEY, origin_region, request_id))
        return _row(found) if found is not None else None

    async def get_application(self, application_id: str) -> ApplicationRow | None:
        """One application by id."""
        found = await self._call(lambda c: c.fetchrow(_BY_ID, application_id))
        return _row(found) if found is not None else None

    async def record_status_report(self, application_id: str, event_id: str) -> bool:
        """Claims a status report's event id; False if it was already recorded."""
        claimed = await self._call(
            lambda c: c.fetchval(
                "INSERT INTO status_reports (application_id, event_id) VALUES ($1, $2) "
                "ON CONFLICT DO NOTHING RETURNING true",
                application_id,
                event_id,
            ),
            write=True,
        )
        return bool(claimed)

    async def forget_status_report(self, application_id: str, event_id: str) -> None:
        """Releases an event id whose report was refused, so a corrected retry can use it."""
        await self._call(
            lambda c: c.execute(
                "DELETE FROM status_reports WHERE application_id = $1 AND event_id = $2",
                application_id,
                event_id,
            ),
            write=True,
        )

    async def update_with(
        self, application_id: str, fn: Callable[[ApplicationRow], ApplicationRow | None]
    ) -> ApplicationRow | None:
        """Read-modify-write of one application: the row is locked from the read to the
        commit, so a concurrent writer waits and then reads what this one wrote. A change of
        the body is notified; one of the lease alone is not."""

        async def run(conn: Connection) -> ApplicationRow | None:
            async with conn.transaction():
                found = await conn.fetchrow(_BY_ID_FOR_UPDATE, application_id)
                if found is None:
                    return None
                current = _row(found)
                new = fn(current)
                if new is None:
                    return current
                values = (
                    new.state,
                    new.update_time,
                    new.body,
                    new.next_attempt_time,
                    new.lease_owner,
                    new.lease_until,
                    application_id,
                    new.expire_time,
                )
                if new.body == current.body:
                    await conn.execute(_UPDATE, *values)
                else:
                    notice = self._notice(application_id)
                    await conn.execute(_UPDATE_NOTIFY, *values, self._applications_channel, notice)
                return new

        return await self._call(run, write=True)

    async def replace_if_unchanged(
        self,
        application_id: str,
        *,
        expected_body: bytes,
        lease_owner: str,
        state: int,
        update_time: float,
        body: bytes,
        next_attempt_time: float | None,
    ) -> bool:
        """Replaces an application leased to `lease_owner` whose body is still `expected_body`,
        releasing the lease; False (nothing changed) when the row is not in that state. The
        change is notified (one statement: the notice goes out when it commits)."""
        notified = await self._call(
            lambda c: c.fetch(
                _REPLACE_NOTIFY,
                state,
                update_time,
                body,
                next_attempt_time,
                application_id,
                lease_owner,
                expected_body,
                self._applications_channel,
                self._notice(application_id),
            ),
            write=True,
        )
        return len(notified) == 1

    async def list_applications(
        self,
        region_code: str,
        *,
        as_origin: bool,
        as_target: bool,
        state: int | None,
        limit: int,
        before: tuple[float, str] | None,
    ) -> list[ApplicationRow]:
        """Applications of a province, newest first, keyset-paginated by (create_time, id)."""
        sides = [
            column
            for column, wanted in (("origin_region", as_origin), ("target_region", as_target))
            if wanted
        ]
        if not sides:
            return []  # on neither side: nothing matches
        args: list[Any] = [region_code, limit]
        where = [f"({' OR '.join(f'{column} = $1' for column in sides)})"]
        if state is not None:
            args.append(state)
            where.append(f"state = ${len(args)}")
        if before is not None:
            args.extend(before)
            time_arg, id_arg = len(args) - 1, len(args)
            where.append(f"(create_time, application_id) < (${time_arg}, ${id_arg})")
        # At most 3 sides x 2 x 2 distinct statements: each prepared once per connection.
        sql = (
            f"SELECT {_COLUMNS} FROM applications WHERE {' AND '.join(where)} "
            "ORDER BY create_time DESC, application_id DESC LIMIT $2"
        )
        rows = await self._call(lambda c: c.fetch(sql, *args))
        return [_row(r) for r in rows]

    async def claim_due(
        self,
        *,
        now: float,
        owner: str,
        lease_seconds: float,
        limit: int,
        skip_targets: Sequence[str] = (),
    ) -> list[ApplicationRow]:
        """Leases up to `limit` applications due for delivery whose lease ran out, earliest
        due first, skipping rows another claimer holds locked; returns them as they were
        before the lease. `skip_targets` are left alone unless they have expired."""
        rows = await self._call(
            lambda c: c.fetch(
                _CLAIM_DUE, now, owner, now + lease_seconds, list(skip_targets), limit
            ),
            write=True,
        )
        claimed = [_row(r) for r in rows]
        claimed.sort(key=lambda r: (r.next_attempt_time or 0.0, r.application_id))
        return claimed

    # -- bundles ---------------------------------------------------------------------------

    async def claim_bundle(
        self, bundle: BundleRow, members: Sequence[ApplicationRow]
    ) -> tuple[BundleRow, bool]:
        """Inserts a bundle and its members in one transaction unless the bundle's (origin,
        request id) exists; returns the stored bundle and whether it was created now. Each new
        member is notified, like any application whose body was written."""

        async def run(conn: Connection) -> tuple[BundleRow, bool]:
            async with conn.transaction():
                inserted = await conn.fetchval(_CLAIM_BUNDLE, *_bundle_values(bundle))
                if inserted:
                    # No ON CONFLICT: a member that cannot be stored rolls the bundle back.
                    await conn.executemany(_INSERT, [_values(m) for m in members])
                    for m in members:
                        await conn.execute(
                            _NOTIFY, self._applications_channel, self._notice(m.application_id)
                        )
                    return bundle, True
            existing = await conn.fetchrow(_BUNDLE_BY_KEY, bundle.origin_region, bundle.request_id)
            if existing is None:  # the holder vanished between the two statements: not ours
                raise StoreUnavailable(
                    "the request id was claimed and released meanwhile", retry_delay=RETRY_DELAY
                )
            return _bundle_row(existing), False

        return await self._call(run, write=True)

    async def find_bundle_request(self, origin_region: str, request_id: str) -> BundleRow | None:
        """The bundle an idempotency key names, if any."""
        found = await self._call(lambda c: c.fetchrow(_BUNDLE_BY_KEY, origin_region, request_id))
        return _bundle_row(found) if found is not None else None

    async def get_bundle(self, bundle_id: str) -> BundleRow | None:
        """One bundle by id."""
        found = await self._call(lambda c: c.fetchrow(_BUNDLE_BY_ID, bundle_id))
        return _bundle_row(found) if found is not None else None

    async def update_bundle_with(
        self, bundle_id: str, fn: Callable[[BundleRow], BundleRow | None]
    ) -> BundleRow | None:
        """Read-modify-write of one bundle, the row locked from the read to the commit."""

        async def run(conn: Connection) -> BundleRow | None:
            async with conn.transaction():
                found = await conn.fetchrow(f"{_BUNDLE_BY_ID} FOR UPDATE", bundle_id)
                if found is None:
                    return None
                current = _bundle_row(found)
                new = fn(current)
                if new is None:
                    return current
                await conn.execute(
                    "UPDATE bundles SET state = $1, update_time = $2, body = $3 "
                    "WHERE bundle_id = $4",
                    new.state,
                    new.update_time,
                    new.body,
                    bundle_id,
                )
                return new

        return await self._call(run, write=True)

    async def bundle_stats(self, now: float, state: int) -> list[tuple[str, int, int]]:
        """Per theme: bundles in `state`, and how many of them are past due at `now`."""
        rows = await self._call(
            lambda c: c.fetch(
                "SELECT theme_code, count(*), count(*) FILTER (WHERE due_time < $1) "
                "FROM bundles WHERE state = $2 GROUP BY theme_code ORDER BY theme_code",
                now,
                state,
            )
        )
        return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]

    async def bundle_bodies(self, state: int, limit: int) -> list[tuple[str, bytes]]:
        """(theme, body) of up to `limit` bundles in `state`, earliest due first."""
        rows = await self._call(
            lambda c: c.fetch(
                "SELECT theme_code, body FROM bundles WHERE state = $1 "
                "ORDER BY due_time, bundle_id LIMIT $2",
                state,
                limit,
            )
        )
        return [(str(r[0]), bytes(r[1])) for r in rows]

    async def queue_stats(self) -> tuple[int, float | None]:
        """(applications awaiting delivery, create time of the oldest one)."""
        row = await self._call(
            lambda c: c.fetchrow(
                "SELECT count(*), min(create_time) FROM applications "
                "WHERE next_attempt_time IS NOT NULL"
            )
        )
        assert row is not None  # an aggregate always returns its row
        count, oldest = row
        return int(count), (float(oldest) if oldest is not None else None)


# -- statements --------------------------------------------------------------------------------

_COLUMNS = (
    "application_id, origin_region, request_id, request_digest, target_region, state, "
    "create_time, update_time, next_attempt_time, expire_time, lease_owner, lease_until, body"
)
_INSERT = (
    f"INSERT INTO applications ({_COLUMNS}) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
)
_CLAIM = f"{_INSERT} ON CONFLICT (origin_region, request_id) DO NOTHING RETURNING true"
_BY_KEY = f"SELECT {_COLUMNS} FROM applications WHERE origin_region = $1 AND request_id = $2"
_BY_ID = f"SELECT {_COLUMNS} FROM applications WHERE application_id = $1"
_BY_ID_FOR_UPDATE = f"{_BY_ID} FOR UPDATE"
_UPDATE = (
    "UPDATE applications SET state = $1, update_time = $2, body = $3, next_attempt_time = $4, "
    "lease_owner = $5, lease_until = $6, expire_time = $8 WHERE application_id = $7"
)
_NOTIFY = "SELECT pg_notify($1, $2)"
# A write and its notice in one statement (one round trip): the notice is sent per changed row,
# on commit.
_UPDATE_NOTIFY = f"WITH changed AS ({_UPDATE} RETURNING 1) SELECT pg_notify($9, $10) FROM changed"
_REPLACE_NOTIFY = (
    "WITH changed AS (UPDATE applications SET state = $1, update_time = $2, body = $3, "
    "next_attempt_time = $4, lease_owner = '', lease_until = 0 "
    "WHERE application_id = $5 AND lease_owner = $6 AND body = $7 RETURNING 1) "
    "SELECT pg_notify($8, $9) FROM changed"
)
# The CTE locks the due rows it picks (skipping those another claimer holds); the UPDATE leases
# them; RETURNING gives the CTE's copies, i.e. the rows as they were before the lease.
_CLAIM_DUE = f"""
WITH due AS (
    SELECT {_COLUMNS} FROM applications
    WHERE next_attempt_time IS NOT NULL AND next_attempt_time <= $1 AND lease_until <= $1
      AND (target_region <> ALL($4::text[]) OR expire_time <= $1)
    ORDER BY next_attempt_time, application_id
    LIMIT $5
    FOR UPDATE SKIP LOCKED
)
UPDATE applications AS a SET lease_owner = $2, lease_until = $3
FROM due WHERE a.application_id = due.application_id
RETURNING {", ".join(f"due.{c}" for c in _COLUMNS.split(", "))}
"""


_BUNDLE_COLUMNS = (
    "bundle_id, origin_region, request_id, request_digest, theme_code, state, create_time, "
    "update_time, due_time, body"
)
_CLAIM_BUNDLE = (
    f"INSERT INTO bundles ({_BUNDLE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
    "ON CONFLICT (origin_region, request_id) DO NOTHING RETURNING true"
)
_BUNDLE_BY_KEY = (
    f"SELECT {_BUNDLE_COLUMNS} FROM bundles WHERE origin_region = $1 AND request_id = $2"
)
_BUNDLE_BY_ID = f"SELECT {_BUNDLE_COLUMNS} FROM bundles WHERE bundle_id = $1"


def _bundle_values(row: BundleRow) -> tuple[Any, ...]:
    return (
        row.bundle_id,
        row.origin_region,
        row.request_id,
        row.request_digest,
        row.theme_code,
        row.state,
        row.create_time,
        row.update_time,
        row.due_time,
        row.body,
    )


def _bundle_row(record: asyncpg.Record) -> BundleRow:
    return BundleRow(*record.values())


def _values(row: ApplicationRow) -> tuple[Any, ...]:
    return (
        row.application_id,
        row.origin_region,
        row.request_id,
        row.request_digest,
        row.target_region,
        row.state,
        row.create_time,
        row.update_time,
        row.next_attempt_time,
        row.expire_time,
        row.lease_owner,
        row.lease_until,
        row.body,
    )


def _row(record: asyncpg.Record) -> ApplicationRow:
    return ApplicationRow(*record.values())


async def _keep_session(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """The pool's reset on release, doing nothing: the store leaves no session state (no
    SET, LISTEN or session lock), and asyncpg's default reset query costs a round trip per
    call. A transaction left open is still rolled back by the pool itself."""


async def _migrate(conn: Connection) -> int:
    """Brings the schema to this code's version, one migration per transaction, each under
    the advisory lock and after re-reading the version (another replica may have been
    first); returns the version. Raises `SchemaTooNew` for a database ahead of this code."""
    while True:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            # Created only when missing: a role that may not create tables (the schema migrated
            # by `tongban migrate` under another) still opens a database already up to date.
            if await conn.fetchval("SELECT to_regclass('schema_version')") is None:
                await conn.execute(
                    "CREATE TABLE schema_version (version integer PRIMARY KEY, "
                    "description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                )
            current = int(
                await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
            )
            todo = pending(current)
            if not todo:
                return current
            version, migration = todo[0]
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_version (version, description) VALUES ($1, $2)",
                version,
                migration.description,
            )


def _unavailable(exc: BaseException, config: PostgresConfig, what: str) -> StoreUnavailable:
    """The one translation of a driver error: its kind and primary message (never the
    DETAIL, which may quote row values), without the password."""
    message = getattr(exc, "message", None) or str(exc) or "no message"
    text = f"{what}: {type(exc).__name__}: {message}"
    if config.password:
        text = text.replace(config.password, "***")
    return StoreUnavailable(text, retry_delay=RETRY_DELAY)


def _password(config: PostgresConfig) -> str | Callable[[], str] | None:
    """What the driver is given: the password, or (with a password file) a function that
    reads it at each new connection, so a rotated Secret is picked up without a restart."""
    path = config.password_file
    if path is None:
        return config.password
    return lambda: PostgresConfig.read_password_file(path)
