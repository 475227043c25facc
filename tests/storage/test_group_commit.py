"""Tests for gateway.storage.group_commit: the engine alone, with raw SQL on a real SQLite file.

Concurrency is real: writes are fired with `asyncio.gather` and land in the writer thread's
group commits. Where a test needs writes in one batch it holds the writer thread on a gate
until they are queued, instead of hoping for timing.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from conftest import eventually

from gateway.errors import StoreUnavailable
from gateway.storage.group_commit import GroupCommit


def init(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS items (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")


def insert(key: str, value: int) -> Callable[[sqlite3.Connection], int]:
    def run(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO items (key, value) VALUES (?, ?)", (key, value))
        return value

    return run


async def items(engine: GroupCommit) -> dict[str, int]:
    rows = await engine.read(lambda c: c.execute("SELECT key, value FROM items").fetchall())
    return dict(rows)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[GroupCommit]:
    opened = await GroupCommit.open(tmp_path / "data" / "engine.db", init)
    try:
        yield opened
    finally:
        await opened.close()


async def _queue_behind_a_gate(
    engine: GroupCommit, fns: list[Callable[[sqlite3.Connection], object]]
) -> list[object]:
    """Runs `fns` as writes that all wait behind one held transaction, so they share a batch."""
    gate = threading.Event()
    entered = threading.Event()

    def hold(conn: sqlite3.Connection) -> str:
        entered.set()
        assert gate.wait(10)
        return "held"

    holder = asyncio.ensure_future(engine.write(hold))
    assert await asyncio.to_thread(entered.wait, 10)
    queued = [asyncio.ensure_future(engine.write(fn)) for fn in fns]
    await asyncio.sleep(0)  # every write is in the queue now
    gate.set()
    assert await holder == "held"
    return list(await asyncio.gather(*queued, return_exceptions=True))


async def test_open_creates_the_database_and_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "engine.db"
    engine = await GroupCommit.open(path, init)
    try:
        assert path.is_file()
        assert await items(engine) == {}  # `init` ran
        # WAL: the reader thread reads committed data while a write runs.
        assert await engine.read(lambda c: c.execute("PRAGMA journal_mode").fetchone()) == ("wal",)
        assert (engine.transactions, engine.writes) == (0, 0)
    finally:
        await engine.close()


async def test_200_concurrent_writes_are_all_durable_in_fewer_transactions(
    engine: GroupCommit,
) -> None:
    results = await asyncio.gather(*(engine.write(insert(f"k{n}", n)) for n in range(200)))
    assert results == list(range(200))
    assert engine.writes == 200
    assert 0 < engine.transactions < engine.writes  # writes were batched
    assert await items(engine) == {f"k{n}": n for n in range(200)}
    await engine.close()

    reopened = await GroupCommit.open(engine.path, init)
    try:
        assert await items(reopened) == {f"k{n}": n for n in range(200)}
    finally:
        await reopened.close()


async def test_a_lone_write_is_committed_without_the_commit_delay(tmp_path: Path) -> None:
    engine = await GroupCommit.open(tmp_path / "engine.db", init, commit_delay=3600)
    try:
        # Were it delayed, this would wait an hour: the timeout fails it.
        assert await asyncio.wait_for(engine.write(insert("k", 1)), timeout=60) == 1
        assert (engine.transactions, engine.writes) == (1, 1)
    finally:
        await engine.close()


async def test_a_batch_of_several_writes_waits_for_more(tmp_path: Path) -> None:
    delay = 2.0
    engine = await GroupCommit.open(tmp_path / "engine.db", init, commit_delay=delay)
    try:
        gate = threading.Event()
        entered = threading.Event()

        def hold(conn: sqlite3.Connection) -> None:
            entered.set()
            assert gate.wait(10)

        holder = asyncio.ensure_future(engine.write(hold))
        assert await asyncio.to_thread(entered.wait, 10)
        first = [asyncio.ensure_future(engine.write(insert(f"k{i}", i))) for i in (1, 2)]
        await asyncio.sleep(0)  # both queued behind the held transaction
        before = engine.transactions
        released = time.monotonic()
        gate.set()
        await holder
        # The writer takes the next batch, two writes, off its queue and waits for more. The
        # late ones come only once the queue is empty (the batch is taken), so they can join
        # it only by that wait: were they queued sooner, they would share it anyway.
        await eventually(
            lambda: not engine._pending, within=10, what="the batch is taken", step=0.01
        )
        late = [asyncio.ensure_future(engine.write(insert(f"k{i}", i))) for i in (3, 4)]
        assert await asyncio.gather(*first, *late) == [1, 2, 3, 4]
        assert time.monotonic() - released >= delay
        assert engine.transactions - before == 2  # the held one, then one for all four
        assert engine.writes == 5
    finally:
        await engine.close()


async def test_a_failing_write_fails_only_its_own_caller(engine: GroupCommit) -> None:
    def write(i: int, fail: str) -> Callable[[sqlite3.Connection], object]:
        def run(conn: sqlite3.Connection) -> int:
            conn.execute("INSERT INTO items (key, value) VALUES (?, ?)", (f"k{i}", i))
            if fail == "python":
                raise ValueError(f"boom {i}")
            if fail == "sqlite":
                conn.execute("INSERT INTO no_such_table VALUES (1)")
            return i

        return run

    plan = ["ok", "python", "ok", "sqlite", "ok", "python", "ok", "ok"]
    before = engine.transactions
    outcomes = await _queue_behind_a_gate(engine, [write(i, f) for i, f in enumerate(plan)])
    assert engine.transactions - before == 2  # the held write, then one batch for the eight
    assert engine.writes == 1 + plan.count("ok")

    for i, (fail, outcome) in enumerate(zip(plan, outcomes, strict=True)):
        if fail == "ok":
            assert outcome == i
        elif fail == "python":
            assert isinstance(outcome, ValueError)
            assert str(outcome) == f"boom {i}"
        else:
            assert isinstance(outcome, StoreUnavailable)
            assert outcome.reason == "STORE_UNAVAILABLE"
            assert isinstance(outcome.__cause__, sqlite3.OperationalError)  # the driver's error
    assert await items(engine) == {f"k{i}": i for i, f in enumerate(plan) if f == "ok"}


async def test_a_failing_write_does_not_poison_later_writes(engine: GroupCommit) -> None:
    def fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO items (key, value) VALUES ('half', 0)")
        raise RuntimeError("nope")

    with pytest.raises(RuntimeError, match="nope"):
        await engine.write(fail)
    await engine.write(insert("k", 1))
    with pytest.raises(StoreUnavailable):  # the key is taken: sqlite's IntegrityError, translated
        await engine.write(insert("k", 2))
    assert await engine.write(insert("j", 3)) == 3
    assert await items(engine) == {"k": 1, "j": 3}


async def test_close_commits_writes_already_queued(tmp_path: Path) -> None:
    path = tmp_path / "engine.db"
    first = await GroupCommit.open(path, init)
    pending = [asyncio.ensure_future(first.write(insert(f"k{n}", n))) for n in range(30)]
    await asyncio.sleep(0)  # queued, not yet acknowledged
    await first.close()
    assert await asyncio.gather(*pending) == list(range(30))
    assert first.writes == 30

    second = await GroupCommit.open(path, init)
    try:
        assert await items(second) == {f"k{n}": n for n in range(30)}
    finally:
        await second.close()


async def test_a_closed_engine_is_unavailable(tmp_path: Path) -> None:
    engine = await GroupCommit.open(tmp_path / "engine.db", init)
    await engine.close()
    with pytest.raises(StoreUnavailable) as write_error:
        await engine.write(insert("k", 1))
    assert write_error.value.reason == "STORE_UNAVAILABLE"
    with pytest.raises(StoreUnavailable):
        await engine.read(lambda c: c.execute("SELECT 1").fetchone())
    await engine.close()  # closing again does nothing


def _store_threads() -> int:
    return sum(t.name.startswith(("store-writer", "store-reader")) for t in threading.enumerate())


async def test_an_unopenable_path_is_store_unavailable(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    before = _store_threads()
    with pytest.raises(StoreUnavailable):
        await GroupCommit.open(tmp_path / "dir.db", init)
    assert _store_threads() == before  # nothing half-open is left running


async def test_a_failing_schema_closes_what_it_opened(tmp_path: Path) -> None:
    def broken(conn: sqlite3.Connection) -> None:
        raise ValueError("no schema")

    before = _store_threads()
    with pytest.raises(ValueError, match="no schema"):
        await GroupCommit.open(tmp_path / "store.db", broken)
    assert _store_threads() == before
