"""The outbox: the one owner of an accepted application's way to its province.

Invariants:
- An application is committed (state RECEIVED, due now, leased to the worker delivering it
  inline) before its first delivery attempt. If that worker dies, the lease runs out and the
  dispatcher of any worker picks it up: nothing accepted is lost.
- Every attempt carries the same application id, and provinces deduplicate on it, so a lost
  response followed by a retry never creates a second case: delivered exactly once.
- One budget rule (`routing.policy.call_budget`): an inline delivery gets the caller's
  remaining time less the margin; a redelivery, which has no caller, the default budget.
- One lease rule (`lease_seconds`): a delivery's lease covers its budget plus `LEASE_MARGIN`,
  so it is never taken over while the holder may still be writing its outcome.
- One expiry rule: the row's `expire_time`, on the records' clock. An application still
  undelivered then becomes FAILED with `DELIVERY_EXPIRED`, unless its province, asked once,
  already holds the case.
- Whatever ends a delivery early (the caller went away, shutdown, a store failure) gives the
  lease back, so the application is redelivered without waiting the lease out.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gateway.api.v1 import application_pb2
from gateway.applications import lifecycle
from gateway.applications.records import ApplicationRecords, Due, Held
from gateway.errors import RegionCallError
from gateway.events import NO_EVENTS, ApplicationSubmitted, Events
from gateway.routing.breaker import BreakerConfig
from gateway.routing.deliverer import DELIVERED, FAILED, Deliverer, DeliveryOutcome
from gateway.routing.policy import RetryPolicy, call_budget

LEASE_MARGIN = 5.0
"""Seconds a delivery's lease outlasts its budget: room to write the outcome."""


@dataclass(frozen=True)
class DeliveryConfig:
    """How applications are delivered to provinces."""

    max_attempts: int = 4
    """Attempts per delivery call, the first included."""
    per_attempt_timeout: float = 1.0
    """Upper bound of one attempt, in seconds."""
    default_budget: float = 5.0
    """Time budget of a delivery call without a caller's deadline (a submission that set none,
    or a redelivery), in seconds."""
    deadline_margin: float = 0.1
    """Time kept back from the caller's deadline to answer in time, in seconds: the result's
    durable write and the answer must fit in it, also on a loaded host."""
    queue_expiry: float = 86400.0
    """How long a queued application is retried before it becomes FAILED, in seconds."""
    dispatch_interval: float = 0.2
    """How often the dispatcher looks for due applications, in seconds."""
    redeliver_backoff_max: float = 30.0
    """Longest wait between two dispatcher attempts of one application, in seconds."""
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    """When a province's circuit breaker opens and how long it stays open."""

    def retry_policy(self) -> RetryPolicy:
        """The retry policy of one delivery call."""
        return RetryPolicy(
            max_attempts=self.max_attempts,
            per_attempt_timeout=self.per_attempt_timeout,
            deadline_margin=self.deadline_margin,
            default_budget=self.default_budget,
        )


class Outbox:
    """Accepts, delivers, redelivers, finishes, releases and expires applications."""

    def __init__(
        self,
        records: ApplicationRecords,
        deliverer: Deliverer,
        config: DeliveryConfig,
        *,
        worker_id: str,
        events: Events = NO_EVENTS,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.records = records
        self.deliverer = deliverer
        self.config = config
        self.worker_id = worker_id
        self.events = events
        self.rng = rng
        self.on_waiting: Callable[[Held], Awaitable[None]] | None = None
        """Hands a due WAITING bundle member to its bundle's flow (`BundleFlow.recheck`)."""

    @property
    def clock(self) -> Callable[[], float]:
        """The monotonic clock deadlines are read on (the deliverer's)."""
        return self.deliverer.clock

    def deadline(self, caller_time_remaining: float | None) -> float:
        """The instant (on `clock`) a delivery call must end by; None: no caller deadline."""
        return self.clock() + call_budget(caller_time_remaining, self.deliverer.policy)

    def lease_seconds(self, deadline: float) -> float:
        """How long a delivery ending by `deadline` holds its application."""
        return max(0.0, deadline - self.clock()) + LEASE_MARGIN

    def backoff(self, attempts: int) -> float:
        """Full-jitter wait before the next redelivery of an application with `attempts`."""
        cap = min(self.config.redeliver_backoff_max, 0.25 * float(2 ** min(attempts, 16)))
        return max(self.config.dispatch_interval, cap * self.rng())

    async def accept(
        self, app: application_pb2.Application, request_digest: str, *, deadline: float
    ) -> tuple[application_pb2.Application, str, bool]:
        """Commits a new application, then delivers it until `deadline`.

        Returns (the application as stored now, its request digest, whether this call created
        it); when the idempotency key was already taken, the earlier application, untouched.
        """
        started = self.clock()
        held, digest, created = await self.records.create(
            app,
            request_digest,
            lease_owner=self.worker_id,
            lease_seconds=self.lease_seconds(deadline),
        )
        if not created:
            return held.application, digest, False
        self.events.emit(ApplicationSubmitted(held.application, self.clock() - started))
        final = await self._deliver(held, deadline)
        return final, digest, True

    async def deliver_claimed(self, held: Held, deadline: float) -> application_pb2.Application:
        """Delivers a stored application leased to this worker (a bundle's member, just
        committed or released) until `deadline`."""
        return await self._deliver(held, deadline)

    async def redeliver(self, due: Due) -> None:
        """Delivers an application the dispatcher leased (or finishes it, if it expired)."""
        app = due.application
        if app.state == application_pb2.APPLICATION_STATE_WAITING and self.on_waiting:
            await self.on_waiting(due)
            return
        if app.state not in lifecycle.AWAITING_DELIVERY:
            await self.records.release(app.application_id, self.worker_id)
            return
        if not self.records.expired(due):
            await self._deliver(due, self.deadline(None))
            return
        try:
            await self.records.finish_delivery(
                app.application_id,
                await self._last_look(app),
                lease_owner=self.worker_id,
                retry_in=None,
            )
        except BaseException:
            await self._give_back(app.application_id)
            raise

    async def _deliver(self, held: Held, deadline: float) -> application_pb2.Application:
        """One delivery call of a leased application, its outcome recorded."""
        app = held.application
        attempts_before = app.delivery_attempts
        try:
            outcome = await self.deliverer.deliver(app, deadline=deadline)
            return await self.records.finish_delivery(
                app.application_id,
                outcome,
                lease_owner=self.worker_id,
                retry_in=self.backoff(attempts_before + outcome.attempts),
                known=held,
            )
        except BaseException:
            await self._give_back(app.application_id)
            raise

    async def _give_back(self, application_id: str) -> None:
        """After whatever interrupted a delivery (cancellation, shutdown, a store failure): the
        lease goes back, so the application is due again at once, not when the lease runs out."""
        with contextlib.suppress(Exception):
            await self.records.release(application_id, self.worker_id)

    async def _last_look(self, app: application_pb2.Application) -> DeliveryOutcome:
        """Before an expired application fails, asks its province whether it has the case.

        A delivery whose answer was lost (the province committed, then the response dropped)
        must end DELIVERED, not FAILED, or the province's later reports would be refused. The
        one call bypasses the breaker (an open breaker may be the very losses that kept the
        application queued); a province that cannot answer leaves it FAILED.
        """
        try:
            status = await self.deliverer.client.get_status(
                app.target_region, app.application_id, self.config.per_attempt_timeout
            )
        except RegionCallError:
            return DeliveryOutcome(FAILED, 0, reason="DELIVERY_EXPIRED")
        return DeliveryOutcome(DELIVERED, 0, receipt_id=status.receipt_id)
