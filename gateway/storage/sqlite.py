"""The embedded store: one SQLite file holding applications, catalog versions and region lists.

It implements `storage.base.Store` (whose invariants it keeps) with SQL run through the group
commit engine (`storage.group_commit`): durable before returned, one fsync per batch of writes.
Its change feed is silent: the file belongs to one gateway (its `--workers` share it and poll).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gateway.storage.base import (
    ApplicationRow,
    BundleRow,
    CatalogMarker,
    Change,
    NewCatalogVersion,
    StoredDocument,
)
from gateway.storage.group_commit import COMMIT_DELAY, GroupCommit

SCHEMA_VERSION = 1

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
CREATE TABLE IF NOT EXISTS bundles (
    bundle_id TEXT PRIMARY KEY,
    origin_region TEXT NOT NULL,
    request_id TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    theme_code TEXT NOT NULL,
    state INTEGER NOT NULL,
    create_time REAL NOT NULL,
    update_time REAL NOT NULL,
    due_time REAL NOT NULL,
    body BLOB NOT NULL,
    UNIQUE (origin_region, request_id)
);
CREATE INDEX IF NOT EXISTS bundles_by_state ON bundles (state, theme_code);
CREATE TABLE IF NOT EXISTS status_reports (
    application_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (application_id, event_id)
);
"""


_APP_COLUMNS = (
    "application_id, origin_region, request_id, request_digest, target_region, state, "
    "create_time, update_time, next_attempt_time, expire_time, lease_owner, lease_until, body"
)


_BUNDLE_COLUMNS = (
    "bundle_id, origin_region, request_id, request_digest, theme_code, state, create_time, "
    "update_time, due_time, body"
)
_INSERT_APP = f"INSERT INTO applications ({_APP_COLUMNS}) VALUES ({', '.join('?' * 13)})"


def _row(values: Sequence[Any]) -> ApplicationRow:
    return ApplicationRow(*values)


def _app_values(row: ApplicationRow) -> tuple[Any, ...]:
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


def _bundle(values: Sequence[Any]) -> BundleRow:
    return BundleRow(*values)


def _init_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(_SCHEMA)
    conn.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
        (str(SCHEMA_VERSION),),
    )


class SqliteStore:
    """The SQLite store. Open with `await SqliteStore.open(path)`, close with `await close()`."""

    def __init__(self, engine: GroupCommit) -> None:
        self._engine = engine

    @classmethod
    async def open(cls, path: Path, *, commit_delay: float = COMMIT_DELAY) -> SqliteStore:
        """Opens (creating if needed) the store at `path`."""
        return cls(await GroupCommit.open(path, _init_schema, commit_delay=commit_delay))

    @property
    def path(self) -> Path:
        """The database file."""
        return self._engine.path

    async def close(self) -> None:
        """Commits what is queued, then closes; closing again does nothing."""
        await self._engine.close()

    def commit_stats(self) -> tuple[int, int]:
        """(transactions committed, writes committed) since opening."""
        return self._engine.transactions, self._engine.writes

    # -- catalog ---------------------------------------------------------------------------

    async def follow_changes(self, on_change: Callable[[Change], None]) -> None:
        """Nothing to tell: waits until cancelled."""
        await asyncio.Event().wait()

    async def insert_catalog_version(self, version: NewCatalogVersion) -> bool:
        """Stores a version newer than every stored one (the write transaction, `BEGIN
        IMMEDIATE`, holds the file's write lock from the check to the insert)."""
        v = version

        def run(conn: sqlite3.Connection) -> bool:
            (latest,) = conn.execute("SELECT MAX(sort_key) FROM catalog_versions").fetchone()
            if latest is not None and latest >= v.sort_key:
                return False
            conn.execute(
                "INSERT INTO catalog_versions (version, sort_key, effective_time, publish_time, "
                "publisher, digest, document, signed_document) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    v.version,
                    v.sort_key,
                    v.effective_time,
                    v.publish_time,
                    v.publisher,
                    v.digest,
                    v.document,
                    v.signed_document,
                ),
            )
            return True

        return await self._engine.write(run)

    async def catalog_versions(self) -> list[StoredDocument]:
        """Every stored version, oldest first."""
        rows = await self._engine.read(
            lambda c: c.execute(
                "SELECT publish_time, digest, document FROM catalog_versions ORDER BY sort_key"
            ).fetchall()
        )
        return [StoredDocument(*row) for row in rows]

    async def upsert_region_catalog(self, region_code: str, document: StoredDocument) -> None:
        """Stores (replacing) a province's implementation list."""
        d = document

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO region_catalogs (region_code, publish_time, digest, document) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (region_code) DO UPDATE SET "
                "publish_time = excluded.publish_time, digest = excluded.digest, "
                "document = excluded.document",
                (region_code, d.publish_time, d.digest, d.document),
            )

        await self._engine.write(run)

    async def region_catalog_codes(self) -> list[str]:
        """The provinces with a stored list, in code order."""
        rows = await self._engine.read(
            lambda c: c.execute(
                "SELECT region_code FROM region_catalogs ORDER BY region_code"
            ).fetchall()
        )
        return [code for (code,) in rows]

    async def region_catalog(self, region_code: str) -> StoredDocument | None:
        """One province's list, if stored (one at a time: a list's text can be large)."""
        row = await self._engine.read(
            lambda c: c.execute(
                "SELECT publish_time, digest, document FROM region_catalogs WHERE region_code = ?",
                (region_code,),
            ).fetchone()
        )
        return StoredDocument(*row) if row else None

    async def catalog_marker(self) -> CatalogMarker:
        """The newest version's sort key and every list's digest."""

        def run(conn: sqlite3.Connection) -> CatalogMarker:
            (latest,) = conn.execute("SELECT MAX(sort_key) FROM catalog_versions").fetchone()
            digests = conn.execute("SELECT region_code, digest FROM region_catalogs").fetchall()
            return CatalogMarker(latest, dict(digests))

        return await self._engine.read(run)

    async def integrity_check(self) -> list[str]:
        """SQLite's own integrity check; an empty list means sound."""
        rows = await self._engine.read(lambda c: c.execute("PRAGMA integrity_check").fetchall())
        problems = [str(r[0]) for r in rows]
        return [] if problems == ["ok"] else problems

    # -- applications ----------------------------------------------------------------------

    async def claim_request(self, row: ApplicationRow) -> tuple[ApplicationRow, bool]:
        """Inserts a new application unless its (origin, request id) exists.

        Returns the stored row and whether it was created now.
        """

        def run(conn: sqlite3.Connection) -> tuple[ApplicationRow, bool]:
            try:
                conn.execute(_INSERT_APP, _app_values(row))
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

        return await self._engine.write(run)

    async def find_request(self, origin_region: str, request_id: str) -> ApplicationRow | None:
        """The application an idempotency key names, if any."""
        found = await self._engine.read(
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

        return await self._engine.write(run)

    async def forget_status_report(self, application_id: str, event_id: str) -> None:
        """Releases an event id whose report was refused, so a corrected retry can use it."""
        await self._engine.write(
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
                "next_attempt_time = ?, expire_time = ?, lease_owner = ?, lease_until = ? "
                "WHERE application_id = ?",
                (
                    new.state,
                    new.update_time,
                    new.body,
                    new.next_attempt_time,
                    new.expire_time,
                    new.lease_owner,
                    new.lease_until,
                    application_id,
                ),
            )
            return new

        return await self._engine.write(run)

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

        return await self._engine.write(run)

    async def get_application(self, application_id: str) -> ApplicationRow | None:
        """One application by id."""
        found = await self._engine.read(
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
        rows = await self._engine.read(lambda c: c.execute(sql, args).fetchall())
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

        return await self._engine.write(run)

    # -- bundles ---------------------------------------------------------------------------

    async def claim_bundle(
        self, bundle: BundleRow, members: Sequence[ApplicationRow]
    ) -> tuple[BundleRow, bool]:
        """Inserts a bundle and its members in one transaction (the write's savepoint) unless
        the bundle's (origin, request id) exists; returns the stored bundle and whether it
        was created now."""
        b = bundle

        def run(conn: sqlite3.Connection) -> tuple[BundleRow, bool]:
            try:
                conn.execute(
                    f"INSERT INTO bundles ({_BUNDLE_COLUMNS}) VALUES ({', '.join('?' * 10)})",
                    (
                        b.bundle_id,
                        b.origin_region,
                        b.request_id,
                        b.request_digest,
                        b.theme_code,
                        b.state,
                        b.create_time,
                        b.update_time,
                        b.due_time,
                        b.body,
                    ),
                )
            except sqlite3.IntegrityError:
                existing = conn.execute(
                    f"SELECT {_BUNDLE_COLUMNS} FROM bundles "
                    "WHERE origin_region = ? AND request_id = ?",
                    (b.origin_region, b.request_id),
                ).fetchone()
                if existing is None:
                    raise
                return _bundle(existing), False
            conn.executemany(_INSERT_APP, [_app_values(m) for m in members])
            return b, True

        return await self._engine.write(run)

    async def find_bundle_request(self, origin_region: str, request_id: str) -> BundleRow | None:
        """The bundle an idempotency key names, if any."""
        found = await self._engine.read(
            lambda c: c.execute(
                f"SELECT {_BUNDLE_COLUMNS} FROM bundles WHERE origin_region = ? AND request_id = ?",
                (origin_region, request_id),
            ).fetchone()
        )
        return _bundle(found) if found else None

    async def get_bundle(self, bundle_id: str) -> BundleRow | None:
        """One bundle by id."""
        found = await self._engine.read(
            lambda c: c.execute(
                f"SELECT {_BUNDLE_COLUMNS} FROM bundles WHERE bundle_id = ?", (bundle_id,)
            ).fetchone()
        )
        return _bundle(found) if found else None

    async def update_bundle_with(
        self, bundle_id: str, fn: Callable[[BundleRow], BundleRow | None]
    ) -> BundleRow | None:
        """Read-modify-write of one bundle in one transaction."""

        def run(conn: sqlite3.Connection) -> BundleRow | None:
            found = conn.execute(
                f"SELECT {_BUNDLE_COLUMNS} FROM bundles WHERE bundle_id = ?", (bundle_id,)
            ).fetchone()
            if found is None:
                return None
            current = _bundle(found)
            new = fn(current)
            if new is None:
                return current
            conn.execute(
                "UPDATE bundles SET state = ?, update_time = ?, body = ? WHERE bundle_id = ?",
                (new.state, new.update_time, new.body, bundle_id),
            )
            return new

        return await self._engine.write(run)

    async def bundle_stats(self, now: float, state: int) -> list[tuple[str, int, int]]:
        """Per theme: bundles in `state`, and how many of them are past due at `now`."""
        rows = await self._engine.read(
            lambda c: c.execute(
                "SELECT theme_code, COUNT(*), SUM(due_time < ?) FROM bundles WHERE state = ? "
                "GROUP BY theme_code ORDER BY theme_code",
                (now, state),
            ).fetchall()
        )
        return [(str(t), int(n), int(late or 0)) for t, n, late in rows]

    async def bundle_bodies(self, state: int, limit: int) -> list[tuple[str, bytes]]:
        """(theme, body) of up to `limit` bundles in `state`, earliest due first."""
        rows = await self._engine.read(
            lambda c: c.execute(
                "SELECT theme_code, body FROM bundles WHERE state = ? "
                "ORDER BY due_time, bundle_id LIMIT ?",
                (state, limit),
            ).fetchall()
        )
        return [(str(t), bytes(b)) for t, b in rows]

    async def queue_stats(self) -> tuple[int, float | None]:
        """(applications awaiting delivery, create time of the oldest one)."""
        count, oldest = await self._engine.read(
            lambda c: c.execute(
                "SELECT COUNT(*), MIN(create_time) FROM applications "
                "WHERE next_attempt_time IS NOT NULL"
            ).fetchone()
        )
        return int(count), (float(oldest) if oldest is not None else None)
