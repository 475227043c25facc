"""The dispatcher: hands due applications (queued, or orphaned by a dead worker) to the outbox.

Invariants:
- It claims only as many applications as it has free delivery slots (a claimed application
  waiting for a slot would burn its lease), and none for a province whose breaker refuses
  calls (they would come straight back, costing two store writes each, every pass), unless
  they have expired and must be finished.
- Leases are claimed atomically in the store, so with several workers each due application is
  attempted by one worker at a time; the lease length is the outbox's one rule.
- A breaker closing wakes it, to deliver that province's backlog at once.
- Stopping cancels its deliveries; each gives its lease back (the outbox's rule).
- A store that is away (`StoreUnavailable`) costs a pass, never the dispatcher: the next pass
  tries again, so the backlog moves as soon as the store is back, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.applications.outbox import Outbox
from gateway.errors import StoreUnavailable
from gateway.events import BreakerChanged
from gateway.routing.breaker import BreakerState

log = logging.getLogger(__name__)


class Dispatcher:
    """Redelivers due applications until cancelled."""

    def __init__(self, outbox: Outbox, *, concurrency: int = 32, batch: int = 64) -> None:
        self.outbox = outbox
        self.batch = batch
        self.concurrency = concurrency
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.passes = 0
        """Dispatch passes made, for tests."""
        self._store_away = False

    def wake(self) -> None:
        """Asks for a pass now (e.g. a province came back)."""
        self._wake.set()

    def on_breaker_changed(self, event: BreakerChanged) -> None:
        """Listener: a province whose breaker closed has a backlog to deliver now."""
        if event.new == BreakerState.CLOSED:
            self.wake()

    async def run(self) -> None:
        """Dispatches until cancelled."""
        interval = self.outbox.config.dispatch_interval
        try:
            while True:
                free = min(self.batch, self.concurrency - len(self._tasks))
                if free > 0 and await self._pass() == free:
                    continue  # a full claim: more may be due, claim again
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), interval)
                self._wake.clear()
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _pass(self) -> int:
        """`run_once`, outliving a store that is away (said once when it goes, once when back)."""
        try:
            claimed = await self.run_once()
        except StoreUnavailable as error:
            if not self._store_away:
                log.warning("dispatching paused, the store is unavailable: %s", error.message)
            self._store_away = True
            return 0
        if self._store_away:
            log.info("dispatching resumed, the store is back")
            self._store_away = False
        return claimed

    async def run_once(self) -> int:
        """One pass: leases due applications and starts their deliveries; returns how many."""
        self.passes += 1
        free = min(self.batch, self.concurrency - len(self._tasks))
        if free <= 0:
            return 0
        outbox = self.outbox
        due = await outbox.records.claim_due(
            outbox.worker_id,
            lease_seconds=outbox.lease_seconds(outbox.deadline(None)),
            limit=free,
            skip_targets=outbox.deliverer.blocked_regions(),
        )
        for leased in due:
            task = asyncio.create_task(outbox.redeliver(leased))
            self._tasks.add(task)
            task.add_done_callback(self._done)
        return len(due)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("redelivery failed", exc_info=task.exception())
