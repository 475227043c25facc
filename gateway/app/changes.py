"""Following the store's change feed: what other replicas commit reaches this one.

- An application another replica changed goes to the watch hub, which re-reads it if it is
  watched here (`WatchHub.changed_elsewhere`).
- A catalog another replica published makes the registry refresh now. It also refreshes every
  `interval` seconds, comparing the store's marker with its snapshot: that is what brings a
  version in when a notice was lost, and the only way on a store without a feed.
- `RESYNC` (the feed connected again; notices sent meanwhile are lost): both, for everything.

A refresh that fails (the store is away) leaves the snapshot as it is: the next one retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.applications.watch import WatchHub
from gateway.catalog.registry import CatalogRegistry
from gateway.errors import StoreUnavailable, TongbanError
from gateway.storage.base import Change, ChangeKind

log = logging.getLogger(__name__)


class ChangeFollower:
    """Routes the feed's notices to the watch hub and the catalog registry."""

    def __init__(self, hub: WatchHub, registry: CatalogRegistry) -> None:
        self.hub = hub
        self.registry = registry
        self._catalog_due = asyncio.Event()

    def on_change(self, change: Change) -> None:
        """The feed's callback (cheap: it only marks what is due)."""
        if change.kind is ChangeKind.APPLICATION:
            self.hub.changed_elsewhere(change.key)
            return
        if change.kind is ChangeKind.RESYNC:
            self.hub.resync()
        self._catalog_due.set()

    async def refresh_catalog(self, interval: float) -> None:
        """Refreshes the registry when a notice says so, and every `interval` seconds."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._catalog_due.wait(), interval)
            self._catalog_due.clear()
            try:
                await self.registry.refresh()
            except StoreUnavailable as error:
                log.debug("catalog refresh failed: %s", error.message)
            except TongbanError as error:  # what the store holds does not load: say so
                log.warning("catalog refresh failed: %s: %s", error.reason, error.message)
            except Exception:
                log.exception("catalog refresh failed")
