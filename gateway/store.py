"""The embedded store: one SQLite file holding applications, catalog versions and region lists.

Invariants:
- Durable before acknowledged: a write's future resolves only after its transaction committed
  with `synchronous=FULL` (WAL fsynced), so a caller is never told of an application that a
  crash could lose.
- Group commit: writes queue up while a transaction runs and the next transaction commits them
  together, each in its own savepoint, so one failing write never takes others down with it.
  When a batch already holds several writes (writers are busy), the writer waits
  `commit_delay` for more before committing, so one fsync covers them too (PostgreSQL's
  `commit_delay`); a lone write is committed at once.
- One writer thread owns the write connection; one reader thread owns a read connection (WAL
  lets it read committed data while a write runs). The event loop never touches SQLite.
- `(origin_region, request_id)` is unique: the idempotency key is claimed atomically.
- sqlite3 errors are translated here, into `StoreUnavailable`, and nowhere else.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gateway.errors import StoreUnavailable

T = TypeVar("T")

SCHEMA_VERSION = 1

COMMIT_DELAY = 0.0005
"""Seconds a batch of several writes waits for more before its commit (see the module doc)."""

RETRY_DELAY = 1.0
"""Seconds a caller is told to wait (RetryInfo) after a store failure: it is usually busy."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS catalog_versions (
    version TEXT PRIMARY KEY,
    sort_key INTEGER NOT NULL UNIQUE,
    effective_time TEXT NOT NULL,
    publish_time TEXT NOT NULL,
    publisher TEXT NOT NULL,
    digest TEXT NOT NULL,
    document TEXT NOT NULL,
    signed_document TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS region_catalogs (
    region_code TEXT PRIMARY KEY,
    publish_time TEXT NOT NULL,
    digest TEXT NOT NULL,
    document TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS applications (
    application_id TEXT PRIMARY KEY,
    origin_region TEXT NOT NULL,
    request_id TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    target_region TEXT NOT NULL,
    state INTEGER NOT NULL,
    create_time REAL NOT NULL,
    update_time REAL NOT NULL,
    next_attempt_time REAL,
    expire_time REAL NOT NULL,
    lease_owner TEXT NOT NULL DEFAULT '',
    lease_until REAL NOT NULL DEFAULT 0,
    body BLOB NOT NULL,
    UNIQUE (origin_region, request_id)
);
CREATE INDEX IF NOT EXISTS applications_by_origin ON applications (origin_region, create_time);
CREATE INDEX IF NOT EXISTS applications_by_target ON applications (target_region, create_time);
CREATE INDEX IF NOT EXISTS applications_due ON applications (next_attempt_time)
    WHERE next_attempt_time IS NOT NULL;
CREATE TABLE IF NOT EXISTS status_reports (
    application_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (application_id, event_id)
);
"""


@dataclass(frozen=True, slots=True)
class ApplicationRow:
    """One stored application: indexing columns and the serialized `Application` proto."""

    application_id: str
    origin_region: str
    request_id: str
    request_digest: str
    target_region: str
    state: int
    create_time: float
    update_time: float
    next_attempt_time: float | None
    expire_time: float
    lease_owner: str
    lease_until: float
    body: bytes


_APP_COLUMNS = (
    "application_id, origin_region, request_id, request_digest, target_region, state, "
    "create_time, update_time, next_attempt_time, expire_time, lease_owner, lease_until, body"
)


def _row(values: Sequence[Any]) -> ApplicationRow:
    return ApplicationRow(*values)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class Store:
    """The SQLite store. Open with `await Store.open(path)`, close with `await store.close()`."""

    def __init__(self, path: Path, *, commit_delay: float = COMMIT_DELAY) -> None:
        self.path = path
        self.commit_delay = commit_delay
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="store-reader")
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._pending: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._draining = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.transactions = 0
        """Transactions committed, for tests and metrics (writes / transactions = batching)."""
        self.writes = 0
        """Writes committed."""

    @classmethod
    async def open(cls, path: Path, *, commit_delay: float = COMMIT_DELAY) -> Store:
        """Opens (creating if needed) the store at `path`."""
        store = cls(path, commit_delay=commit_delay)
        store._loop = asyncio.get_running_loop()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            store._wconn = await store._loop.run_in_executor(store._writer, store._init_writer)
            store._rconn = await store._loop.run_in_executor(store._reader, _connect, path)
        except sqlite3.Error as exc:
            raise StoreUnavailable(
                f"cannot open the store: {exc}", retry_delay=RETRY_DELAY
            ) from exc
        return store

    def _init_writer(self) -> sqlite3.Connection:
        conn = _connect(self.path)
        conn.executescript(_SCHEMA)
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )
        return conn

    async def close(self) -> None:
        """Commits what is queued, then closes both connections; closing again does nothing."""
        if self._closed:
            return
        self._closed = True  # refused from now on; what is already queued is still committed
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, self._close_conn, "_wconn")
        await loop.run_in_executor(self._reader, self._close_conn, "_rconn")
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)

    def _close_conn(self, attr: str) -> None:
        conn: sqlite3.Connection | None = getattr(self, attr)
        if conn is not None:
            conn.close()
            setattr(self, attr, None)

    # -- the two primitives --------------------------------------------------------------

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Runs `fn` in the next group-committed transaction; returns once it is durable."""
        if self._closed:
            raise StoreUnavailable("the store is closed", retry_delay=RETRY_DELAY)
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            self._pending.append((fn, future))
            start = not self._draining
            self._draining = True
        if start:
            # A bare submit: nothing awaits the drain itself (each write has its own future),
            # so no asyncio wrapper and no completion callback crossing back to the loop.
            self._writer.submit(self._drain)
        return await future

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Runs `fn` on the read connection, off the event loop."""
        if self._closed:
            raise StoreUnavailable("the store is closed", retry_delay=RETRY_DELAY)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self._run_read, fn)

    def _run_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._rconn
        if conn is None:
            raise StoreUnavailable("the store is closed", retry_delay=RETRY_DELAY)
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"store read failed: {exc}", retry_delay=RETRY_DELAY) from exc

    def _drain(self) -> None:
        while True:
            with self._lock:
                batch, self._pending = self._pending, []
                if not batch:
                    self._draining = False
                    return
            if len(batch) > 1 and self.commit_delay > 0:
                time.sleep(self.commit_delay)
                with self._lock:
                    batch += self._pending
                    self._pending = []
            self._commit_batch(batch)

    def _commit_batch(
        self, batch: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]]
    ) -> None:
        conn = self._wconn
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            if conn is None:
                raise sqlite3.OperationalError("the store is closed")
            conn.execute("BEGIN IMMEDIATE")
            for fn, future in batch:
                conn.execute("SAVEPOINT item")
                try:
                    result = fn(conn)
                except Exception as exc:  # a failing write is that caller's error only
                    conn.execute("ROLLBACK TO item")
                    conn.execute("RELEASE item")
                    outcomes.append((future, None, _translate(exc)))
                else:
                    conn.execute("RELEASE item")
                    outcomes.append((future, result, None))
            conn.execute("COMMIT")
            self.transactions += 1
            self.writes += sum(1 for _, _, e in outcomes if e is None)
        except sqlite3.Error as exc:
            if conn is not None and conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = StoreUnavailable(f"store commit failed: {exc}", retry_delay=RETRY_DELAY)
            outcomes = [(future, None, failure) for _, future in batch]
        assert self._loop is not None
        # One wake-up of the event loop per transaction, not one per write.
        self._loop.call_soon_threadsafe(_settle_all, outcomes)

    # -- catalog ---------------------------------------------------------------------------

    async def insert_catalog_version(
        self,
        *,
        version: str,
        sort_key: int,
        effective_time: str,
        publish_time: str,
        publisher: str,
        digest: str,
        document: str,
        signed_document: str,
    ) -> None:
        """Stores a catalog version (the caller checked it is new and newer)."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO catalog_versions (version, sort_key, effective_time, publish_time, "
                "publisher, digest, document, signed_document) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    version,
                    sort_key,
                    effective_time,
                    publish_time,
                    publisher,
                    digest,
                    document,
                    signed_document,
                ),
            )

        await self.write(run)

    async def catalog_versions(self) -> list[tuple[str, str, str]]:
        """Every stored version as (publish_time, digest, document JSON), oldest first."""
        return await self.read(
            lambda c: c.execute(
                "SELECT publish_time, digest, document FROM catalog_versions ORDER BY sort_key"
            ).fetchall()
        )

    async def upsert_region_catalog(
        self, region_code: str, publish_time: str, digest: str, document: str
    ) -> None:
        """Stores (replacing) a province's implementation list."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO region_catalogs (region_code, publish_time, digest, document) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (region_code) DO UPDATE SET "
                "publish_time = excluded.publish_time, digest = excluded.digest, "
                "document = excluded.document",
                (region_code, publish_time, digest, document),
            )

        await self.write(run)

    async def region_catalog_codes(self) -> list[str]:
        """The provinces with a stored list, in code order."""
        rows = await self.read(
            lambda c: c.execute(
                "SELECT region_code FROM region_catalogs ORDER BY region_code"
            ).fetchall()
        )
        return [code for (code,) in rows]

    async def region_catalog(self, region_code: str) -> tuple[str, str, str] | None:
        """One province's list as (publish_time, digest, document JSON), if stored.

        Loading one at a time keeps one list's text in memory, not all 31 (~240 MB at 1M rows).
        """
        row: tuple[str, str, str] | None = await self.read(
            lambda c: c.execute(
                "SELECT publish_time, digest, document FROM region_catalogs WHERE region_code = ?",
                (region_code,),
            ).fetchone()
        )
        return row

    async def region_catalogs(self) -> list[tuple[str, str, str]]:
        """Every stored list as (publish_time, digest, document JSON)."""
        return await self.read(
            lambda c: c.execute(
                "SELECT publish_time, digest, document FROM region_catalogs ORDER BY region_code"
            ).fetchall()
        )

    # -- applications ----------------------------------------------------------------------

    async def claim_request(self, row: ApplicationRow) -> tuple[ApplicationRow, bool]:
        """Inserts a new application unless its (origin, request id) exists.

        Returns the stored row and whether it was created now.
        """

        def run(conn: sqlite3.Connection) -> tuple[ApplicationRow, bool]:
            try:
                conn.execute(
                    f"INSERT INTO applications ({_APP_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
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
                    ),
                )
            except sqlite3.IntegrityError:
                existing = conn.execute(
                    f"SELECT {_APP_COLUMNS} FROM applications "
                    "WHERE origin_region = ? AND request_id = ?",
                    (row.origin_region, row.request_id),
                ).fetchone()
                if existing is None:
                    raise
                return _row(existing), False
            return row, True

        return await self.write(run)

    async def find_request(self, origin_region: str, request_id: str) -> ApplicationRow | None:
        """The application an idempotency key names, if any."""
        found = await self.read(
            lambda c: c.execute(
                f"SELECT {_APP_COLUMNS} FROM applications "
                "WHERE origin_region = ? AND request_id = ?",
                (origin_region, request_id),
            ).fetchone()
        )
        return _row(found) if found else None

    async def record_status_report(self, application_id: str, event_id: str) -> bool:
        """Claims a status report's event id; False if it was already recorded."""

        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT OR IGNORE INTO status_reports (application_id, event_id) VALUES (?, ?)",
                (application_id, event_id),
            )
            return cur.rowcount == 1

        return await self.write(run)

    async def forget_status_report(self, application_id: str, event_id: str) -> None:
        """Releases an event id whose report was refused, so a corrected retry can use it."""
        await self.write(
            lambda c: c.execute(
                "DELETE FROM status_reports WHERE application_id = ? AND event_id = ?",
                (application_id, event_id),
            )
        )

    async def update_with(
        self, application_id: str, fn: Callable[[ApplicationRow], ApplicationRow | None]
    ) -> ApplicationRow | None:
        """Read-modify-write of one application in one transaction.

        `fn` gets the current row and returns the new one, or None to leave it unchanged;
        returns the row as stored afterwards (None if there is no such application).
        """

        def run(conn: sqlite3.Connection) -> ApplicationRow | None:
            found = conn.execute(
                f"SELECT {_APP_COLUMNS} FROM applications WHERE application_id = ?",
                (application_id,),
            ).fetchone()
            if found is None:
                return None
            current = _row(found)
            new = fn(current)
            if new is None:
                return current
            conn.execute(
                "UPDATE applications SET state = ?, update_time = ?, body = ?, "
                "next_attempt_time = ?, lease_owner = ?, lease_until = ? WHERE application_id = ?",
                (
                    new.state,
                    new.update_time,
                    new.body,
                    new.next_attempt_time,
                    new.lease_owner,
                    new.lease_until,
                    application_id,
                ),
            )
            return new

        return await self.write(run)

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
        releasing the lease; False (nothing changed) when the row is not in that state."""

        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE applications SET state = ?, update_time = ?, body = ?, "
                "next_attempt_time = ?, lease_owner = '', lease_until = 0 "
                "WHERE application_id = ? AND lease_owner = ? AND body = ?",
                (
                    state,
                    update_time,
                    body,
                    next_attempt_time,
                    application_id,
                    lease_owner,
                    expected_body,
                ),
            )
            return cur.rowcount == 1

        return await self.write(run)

    async def get_application(self, application_id: str) -> ApplicationRow | None:
        """One application by id."""
        found = await self.read(
            lambda c: c.execute(
                f"SELECT {_APP_COLUMNS} FROM applications WHERE application_id = ?",
                (application_id,),
            ).fetchone()
        )
        return _row(found) if found else None

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
        sides = []
        args: list[Any] = []
        if as_origin:
            sides.append("origin_region = ?")
            args.append(region_code)
        if as_target:
            sides.append("target_region = ?")
            args.append(region_code)
        if not sides:
            return []  # on neither side: nothing matches (and "WHERE ()" is not SQL)
        where = [f"({' OR '.join(sides)})"]
        if state is not None:
            where.append("state = ?")
            args.append(state)
        if before is not None:
            where.append("(create_time < ? OR (create_time = ? AND application_id < ?))")
            args.extend([before[0], before[0], before[1]])
        sql = (
            f"SELECT {_APP_COLUMNS} FROM applications WHERE {' AND '.join(where)} "
            "ORDER BY create_time DESC, application_id DESC LIMIT ?"
        )
        args.append(limit)
        rows = await self.read(lambda c: c.execute(sql, args).fetchall())
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
        """Atomically leases up to `limit` applications due for delivery whose lease expired.

        Applications for `skip_targets` (provinces refusing calls) are left alone unless they
        have expired, so that they can still be failed on time.
        """
        skip = ""
        if skip_targets:
            marks = ", ".join("?" for _ in skip_targets)
            skip = f"AND (target_region NOT IN ({marks}) OR expire_time <= ?) "

        def run(conn: sqlite3.Connection) -> list[ApplicationRow]:
            found = conn.execute(
                f"SELECT {_APP_COLUMNS} FROM applications WHERE next_attempt_time IS NOT NULL "
                f"AND next_attempt_time <= ? AND lease_until <= ? {skip}"
                "ORDER BY next_attempt_time LIMIT ?",
                (now, now, *skip_targets, *([now] if skip_targets else []), limit),
            ).fetchall()
            claimed = []
            for values in found:
                row = _row(values)
                updated = conn.execute(
                    "UPDATE applications SET lease_owner = ?, lease_until = ? "
                    "WHERE application_id = ? AND lease_until <= ?",
                    (owner, now + lease_seconds, row.application_id, now),
                ).rowcount
                if updated == 1:
                    claimed.append(row)
            return claimed

        return await self.write(run)

    async def queue_stats(self, now: float) -> tuple[int, float | None]:
        """(applications awaiting delivery, create time of the oldest one)."""
        count, oldest = await self.read(
            lambda c: c.execute(
                "SELECT COUNT(*), MIN(create_time) FROM applications "
                "WHERE next_attempt_time IS NOT NULL"
            ).fetchone()
        )
        return int(count), (float(oldest) if oldest is not None else None)

    async def integrity_check(self) -> list[str]:
        """SQLite's own integrity check; an empty list means sound."""
        rows = await self.read(lambda c: c.execute("PRAGMA integrity_check").fetchall())
        problems = [str(r[0]) for r in rows]
        return [] if problems == ["ok"] else problems


def _translate(exc: Exception) -> BaseException:
    if isinstance(exc, sqlite3.Error):
        return StoreUnavailable(f"store write failed: {exc}", retry_delay=RETRY_DELAY)
    return exc


def _settle_all(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in outcomes:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
