"""Fan-out of application changes to `WatchApplication` streams, this process's and others'.

Each watcher gets its own bounded queue; a watcher too slow to keep up loses intermediate
states but never the latest (its stream re-reads the store), and never blocks the publisher.
It hears this process's changes as `ApplicationChanged` events (`listen`), and other processes'
through the store's change feed: `changed_elsewhere` (one application) and `resync` (notices may
have been lost: every watched one) mark applications stale, and `run` re-reads each stale one
that is watched here, once for all its watchers, and publishes what it read. A store with no
feed (SQLite, whose `--workers` share one file) leaves that to the watchers' own poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator

from gateway.api.v1 import application_pb2
from gateway.errors import TongbanError
from gateway.events import ApplicationChanged, EventBus

log = logging.getLogger(__name__)

_QUEUE_SIZE = 16
_READS = 16
"""Re-reads at once: a resync of many watched applications must not take the whole pool."""

Read = Callable[[str], Awaitable[application_pb2.Application]]


class WatchHub:
    """Publishes application changes to the watchers of each application."""

    def __init__(self, read: Read | None = None) -> None:
        self._watchers: dict[str, set[asyncio.Queue[application_pb2.Application]]] = {}
        self._read = read
        self._stale: set[str] = set()
        self._wake = asyncio.Event()

    @contextlib.contextmanager
    def subscribe(
        self, *application_ids: str
    ) -> Iterator[asyncio.Queue[application_pb2.Application]]:
        """One queue receiving every published change of the applications, while in scope."""
        queue: asyncio.Queue[application_pb2.Application] = asyncio.Queue(_QUEUE_SIZE)
        for application_id in application_ids:
            self._watchers.setdefault(application_id, set()).add(queue)
        try:
            yield queue
        finally:
            for application_id in application_ids:
                watchers = self._watchers.get(application_id)
                if watchers is not None:
                    watchers.discard(queue)
                    if not watchers:
                        del self._watchers[application_id]

    def listen(self, bus: EventBus) -> None:
        """Publishes every application change the domain emits."""
        bus.subscribe(ApplicationChanged, lambda e: self.publish(e.application))

    def publish(self, app: application_pb2.Application) -> None:
        """Hands a change to every watcher of the application, dropping the oldest if full."""
        for queue in self._watchers.get(app.application_id, ()):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(app)

    def changed_elsewhere(self, application_id: str) -> None:
        """Another process changed the application: if it is watched here, re-read it."""
        if application_id in self._watchers:
            self._stale.add(application_id)
            self._wake.set()

    def resync(self) -> None:
        """Notices of other processes' changes may have been lost: re-read every watched one."""
        if self._watchers:
            self._stale.update(self._watchers)
            self._wake.set()

    async def run(self) -> None:
        """Re-reads and publishes the stale applications, until cancelled."""
        if self._read is None:
            raise RuntimeError("a hub that follows other processes needs a way to read")
        read = self._read
        slots = asyncio.Semaphore(_READS)

        async def reread(application_id: str) -> None:
            async with slots:
                if application_id not in self._watchers:
                    return  # its watchers left meanwhile
                try:
                    app = await read(application_id)
                except TongbanError as error:  # the store is away: the watchers' poll remains
                    log.debug("re-reading a watched application failed: %s", error.message)
                    return
            self.publish(app)

        while True:
            await self._wake.wait()
            self._wake.clear()
            stale, self._stale = self._stale, set()
            await asyncio.gather(*(reread(application_id) for application_id in stale))

    def watcher_count(self) -> int:
        """Open watch streams, for metrics."""
        return sum(len(v) for v in self._watchers.values())
