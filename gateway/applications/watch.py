"""In-process fan-out of application changes to `WatchApplication` streams.

Each watcher gets its own bounded queue; a watcher too slow to keep up loses intermediate
states but never the latest (its stream re-reads the store), and never blocks the publisher.
It hears changes as `ApplicationChanged` events (`listen`). Changes made by another worker
process are not heard here: watchers also poll the store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from gateway.api.v1 import application_pb2
from gateway.events import ApplicationChanged, EventBus

_QUEUE_SIZE = 16


class WatchHub:
    """Publishes application changes to the watchers of each application."""

    def __init__(self) -> None:
        self._watchers: dict[str, set[asyncio.Queue[application_pb2.Application]]] = {}

    @contextlib.contextmanager
    def subscribe(
        self, application_id: str
    ) -> Iterator[asyncio.Queue[application_pb2.Application]]:
        """A queue receiving every published change of the application, while in scope."""
        queue: asyncio.Queue[application_pb2.Application] = asyncio.Queue(_QUEUE_SIZE)
        self._watchers.setdefault(application_id, set()).add(queue)
        try:
            yield queue
        finally:
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

    def watcher_count(self) -> int:
        """Open watch streams, for metrics."""
        return sum(len(v) for v in self._watchers.values())
