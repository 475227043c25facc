"""Tests for gateway.applications.watch: the hub's fan-out, and its re-reads of applications
another process changed (one notice) or may have changed (a resync after the feed reconnected).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from gateway.api.v1 import application_pb2 as pb
from gateway.applications.watch import WatchHub
from gateway.errors import StoreUnavailable


class Stored:
    """The store as the hub reads it: applications by id, and the reads made."""

    def __init__(self) -> None:
        self.apps: dict[str, pb.Application] = {}
        self.reads: list[str] = []
        self.away = False

    async def read(self, application_id: str) -> pb.Application:
        self.reads.append(application_id)
        if self.away:
            raise StoreUnavailable("away", retry_delay=1.0)
        return self.apps[application_id]

    def put(self, application_id: str, state: int) -> None:
        self.apps[application_id] = pb.Application(application_id=application_id, state=state)  # type: ignore[arg-type]


@pytest.fixture
def stored() -> Stored:
    return Stored()


@pytest.fixture
async def hub(stored: Stored) -> AsyncIterator[WatchHub]:
    hub = WatchHub(stored.read)
    runner = asyncio.create_task(hub.run())
    try:
        yield hub
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


async def next_state(queue: asyncio.Queue[pb.Application]) -> int:
    return (await asyncio.wait_for(queue.get(), 2)).state


async def test_a_change_elsewhere_is_read_once_for_every_watcher(
    hub: WatchHub, stored: Stored
) -> None:
    stored.put("a", pb.APPLICATION_STATE_DELIVERED)
    with hub.subscribe("a") as first, hub.subscribe("a") as second:
        hub.changed_elsewhere("a")
        assert await next_state(first) == pb.APPLICATION_STATE_DELIVERED
        assert await next_state(second) == pb.APPLICATION_STATE_DELIVERED
    assert stored.reads == ["a"]


async def test_a_change_of_an_application_nobody_watches_here_is_not_read(
    hub: WatchHub, stored: Stored
) -> None:
    stored.put("a", pb.APPLICATION_STATE_DELIVERED)
    hub.changed_elsewhere("a")
    hub.resync()
    await asyncio.sleep(0.05)
    assert stored.reads == []


async def test_a_resync_rereads_every_watched_application(hub: WatchHub, stored: Stored) -> None:
    for name in "abc":
        stored.put(name, pb.APPLICATION_STATE_QUEUED)
    with hub.subscribe("a") as a, hub.subscribe("b") as b:
        hub.resync()
        assert await next_state(a) == pb.APPLICATION_STATE_QUEUED
        assert await next_state(b) == pb.APPLICATION_STATE_QUEUED
    assert sorted(stored.reads) == ["a", "b"]


async def test_a_store_away_costs_the_reread_not_the_hub(hub: WatchHub, stored: Stored) -> None:
    stored.put("a", pb.APPLICATION_STATE_QUEUED)
    with hub.subscribe("a") as queue:
        stored.away = True
        hub.changed_elsewhere("a")
        await asyncio.sleep(0.05)
        assert queue.empty()
        stored.away = False
        stored.put("a", pb.APPLICATION_STATE_DELIVERED)
        hub.resync()  # the feed connected again
        assert await next_state(queue) == pb.APPLICATION_STATE_DELIVERED
