"""Group commit over SQLite: one writer thread, one reader thread, one fsync per batch.

Invariants:
- Durable before acknowledged: a write's future resolves only after its transaction committed
  with `synchronous=FULL` (WAL fsynced).
- Group commit: writes queue up while a transaction runs and the next transaction commits them
  together, each in its own savepoint, so one failing write never takes others down with it.
  When a batch already holds several writes (writers are busy), the writer waits
  `commit_delay` for more before committing, so one fsync covers them too (PostgreSQL's
  `commit_delay`); a lone write is committed at once.
- One writer thread owns the write connection; one reader thread owns a read connection (WAL
  lets it read committed data while a write runs). The event loop never touches SQLite.
- sqlite3 errors are translated here, into `StoreUnavailable`, and nowhere else.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from gateway.errors import StoreUnavailable

T = TypeVar("T")

COMMIT_DELAY = 0.0005
"""Seconds a batch of several writes waits for more before its commit (see the module doc)."""

RETRY_DELAY = 1.0
"""Seconds a caller is told to wait (RetryInfo) after a store failure: it is usually busy."""


def connect(path: Path) -> sqlite3.Connection:
    """A connection in the store's mode: WAL, `synchronous=FULL`, a long busy timeout."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class GroupCommit:
    """The two primitives every SQLite statement runs through: `write` and `read`.

    Open with `await GroupCommit.open(path, init)`, where `init` prepares the schema on the
    write connection; close with `await engine.close()`.
    """

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
        """Transactions committed (writes / transactions = batching)."""
        self.writes = 0
        """Writes committed."""

    @classmethod
    async def open(
        cls,
        path: Path,
        init: Callable[[sqlite3.Connection], None],
        *,
        commit_delay: float = COMMIT_DELAY,
    ) -> GroupCommit:
        """Opens (creating if needed) the database at `path` and runs `init` on it."""
        engine = cls(path, commit_delay=commit_delay)
        engine._loop = asyncio.get_running_loop()
        path.parent.mkdir(parents=True, exist_ok=True)

        def open_writer() -> sqlite3.Connection:
            conn = connect(path)
            init(conn)
            return conn

        try:
            engine._wconn = await engine._loop.run_in_executor(engine._writer, open_writer)
            engine._rconn = await engine._loop.run_in_executor(engine._reader, connect, path)
        except BaseException as exc:
            # Nothing half-open is left behind: a connection that did open is closed and both
            # threads end.
            await engine.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreUnavailable(
                    f"cannot open the store: {exc}", retry_delay=RETRY_DELAY
                ) from exc
            raise
        return engine

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


def _translate(exc: Exception) -> BaseException:
    if isinstance(exc, sqlite3.Error):
        failure = StoreUnavailable(f"store write failed: {exc}", retry_delay=RETRY_DELAY)
        failure.__cause__ = exc  # as `raise … from exc` would: the driver's error stays readable
        return failure
    return exc


def _settle_all(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in outcomes:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
