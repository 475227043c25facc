"""Getting an accepted application to its province: the inline attempt and the dispatcher.

Invariants:
- An application is committed to the store (state RECEIVED, due now, leased to the worker
  delivering it inline) before its first delivery attempt. If that worker dies, the lease
  expires and the dispatcher of any worker picks the application up: nothing accepted is lost.
- Every attempt carries the same application id, and provinces deduplicate on it, so a lost
  response followed by a retry never creates a second case: delivered exactly once.
- An application that cannot be delivered within the caller's budget becomes QUEUED (due again
  after a backoff); one the province refuses (INVALID_ARGUMENT, NOT_FOUND, …) becomes FAILED;
  one still undelivered at its expiry becomes FAILED with `DELIVERY_EXPIRED`.
- Leases are claimed atomically in the store, so with several workers each due application
  is attempted by one worker at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.api.v1 import application_pb2, region_pb2
from gateway.applications import lifecycle
from gateway.applications.records import ApplicationRecords
from gateway.config import DeliveryConfig
from gateway.errors import RegionCallError
from gateway.routing.breaker import BreakerConfig, BreakerState, CircuitBreaker
from gateway.routing.budget import BudgetConfig, RetryBudget
from gateway.routing.client import RegionClient
from gateway.routing.delivery import AttemptObserver, DeliveryFailed, call_with_retries
from gateway.routing.policy import RetryPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What one delivery call achieved."""

    state: int
    """DELIVERED, QUEUED (try later) or FAILED (refused)."""
    attempts: int
    """Calls made to the province."""
    receipt_id: str = ""
    """The province's receipt, when delivered."""
    reason: str = ""
    """Why not delivered, in UPPER_SNAKE form."""


def province_view(app: application_pb2.Application) -> application_pb2.Application:
    """The application as the province receives it: no gateway-side history or state."""
    view = application_pb2.Application()
    _copy_for_province(app, view)
    return view


def delivery_request(
    app: application_pb2.Application, attempt: int
) -> region_pb2.DeliverApplicationRequest:
    """Attempt number `attempt` of delivering `app` (its province view, copied once)."""
    request = region_pb2.DeliverApplicationRequest(attempt=attempt)
    _copy_for_province(app, request.application)
    return request


def _copy_for_province(app: application_pb2.Application, view: application_pb2.Application) -> None:
    view.CopyFrom(app)
    view.ClearField("events")
    view.ClearField("state")
    view.ClearField("state_reason")
    view.ClearField("receipt_id")
    view.ClearField("delivery_attempts")


class Deliverer:
    """Makes delivery calls with retries, one retry budget and one breaker per province."""

    def __init__(
        self,
        client: RegionClient,
        config: DeliveryConfig,
        *,
        observer: AttemptObserver | None = None,
        on_breaker_change: Callable[[str, int, int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        budget_config: BudgetConfig | None = None,
        breaker_config: BreakerConfig | None = None,
    ) -> None:
        self.client = client
        self.policy = RetryPolicy(
            max_attempts=config.max_attempts,
            per_attempt_timeout=config.per_attempt_timeout,
            deadline_margin=config.deadline_margin,
            default_budget=config.default_budget,
        )
        self.observer = observer
        self.clock = clock
        self.breaker_listeners: list[Callable[[str, int, int], None]] = []
        """Called as (region code, old state, new state) on every breaker transition."""
        if on_breaker_change is not None:
            self.breaker_listeners.append(on_breaker_change)
        self._budget_config = budget_config or BudgetConfig()
        self._breaker_config = breaker_config or config.breaker
        self.budgets: dict[str, RetryBudget] = {}
        self.breakers: dict[str, CircuitBreaker] = {}

    def blocked_regions(self) -> list[str]:
        """Provinces whose breaker refuses calls right now (asked without side effects)."""
        return [code for code, breaker in self.breakers.items() if breaker.blocking()]

    def breaker(self, region_code: str) -> CircuitBreaker:
        """The province's breaker, created on first use."""
        breaker = self.breakers.get(region_code)
        if breaker is None:
            listeners = self.breaker_listeners

            def transition(old: object, new: object, region: str = region_code) -> None:
                for listener in listeners:
                    listener(region, int(old), int(new))  # type: ignore[call-overload]

            breaker = CircuitBreaker(
                self._breaker_config, clock=self.clock, on_transition=transition
            )
            self.breakers[region_code] = breaker
        return breaker

    def budget(self, region_code: str) -> RetryBudget:
        """The province's retry budget, created on first use."""
        budget = self.budgets.get(region_code)
        if budget is None:
            budget = RetryBudget(self._budget_config, clock=self.clock)
            self.budgets[region_code] = budget
        return budget

    async def deliver(
        self, app: application_pb2.Application, *, deadline: float
    ) -> DeliveryOutcome:
        """Delivers `app` to its target province before `deadline` (on `clock`)."""
        region = app.target_region
        first = app.delivery_attempts
        made = 0

        async def attempt(seconds: float, number: int) -> region_pb2.DeliverApplicationResponse:
            nonlocal made
            made = number
            return await self.client.deliver(region, delivery_request(app, first + number), seconds)

        try:
            response = await call_with_retries(
                attempt,
                region_code=region,
                policy=self.policy,
                budget=self.budget(region),
                breaker=self.breaker(region),
                deadline=deadline,
                clock=self.clock,
                observer=self.observer,
            )
        except DeliveryFailed as failed:
            if failed.retryable:
                return DeliveryOutcome(
                    application_pb2.APPLICATION_STATE_QUEUED,
                    failed.attempts,
                    reason=failed.outcome.upper(),
                )
            error = failed.last_error
            reason = (error.reason or error.code.name) if error else "REFUSED"
            return DeliveryOutcome(
                application_pb2.APPLICATION_STATE_FAILED,
                failed.attempts,
                reason=f"REFUSED_BY_PROVINCE:{reason}",
            )
        return DeliveryOutcome(
            application_pb2.APPLICATION_STATE_DELIVERED, made, receipt_id=response.receipt_id
        )


class Dispatcher:
    """Redelivers due applications (queued, or orphaned by a dead worker) until done.

    It claims only as many applications as it has free delivery slots (a claimed application
    waiting for a slot would burn its lease), and none for a province whose breaker refuses
    calls (they would come straight back, costing two store writes each, every pass); when a
    breaker closes it is woken to deliver the backlog at once. A delivery cancelled by shutdown
    gives its lease back, so that a restarted worker picks the application up without waiting
    for the lease to run out.
    """

    def __init__(
        self,
        records: ApplicationRecords,
        deliverer: Deliverer,
        config: DeliveryConfig,
        *,
        worker_id: str,
        concurrency: int = 32,
        batch: int = 64,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.records = records
        self.deliverer = deliverer
        self.config = config
        self.worker_id = worker_id
        self.batch = batch
        self.concurrency = concurrency
        self.rng = rng
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.passes = 0
        """Dispatch passes made, for tests."""
        deliverer.breaker_listeners.append(self._breaker_changed)

    def wake(self) -> None:
        """Asks for a pass now (e.g. a province came back)."""
        self._wake.set()

    def _breaker_changed(self, region_code: str, old: int, new: int) -> None:
        if new == BreakerState.CLOSED:
            self.wake()

    @property
    def lease_seconds(self) -> float:
        """How long a dispatcher delivery holds its application: its budget plus a margin."""
        return self.config.per_attempt_timeout * self.deliverer.policy.max_attempts + 5.0

    def backoff(self, attempts: int) -> float:
        """Full-jitter wait before the next dispatcher attempt of an application."""
        cap = min(self.config.redeliver_backoff_max, 0.25 * float(2 ** min(attempts, 16)))
        return max(self.config.dispatch_interval, cap * self.rng())

    async def run(self) -> None:
        """Dispatches until cancelled."""
        try:
            while True:
                free = min(self.batch, self.concurrency - len(self._tasks))
                if free > 0 and await self.run_once() == free:
                    continue  # a full claim: more may be due, claim again
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.config.dispatch_interval)
                self._wake.clear()
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def run_once(self) -> int:
        """One pass: leases due applications and starts their deliveries; returns how many."""
        self.passes += 1
        free = min(self.batch, self.concurrency - len(self._tasks))
        if free <= 0:
            return 0
        due = await self.records.claim_due(
            self.worker_id,
            lease_seconds=self.lease_seconds,
            limit=free,
            skip_targets=self.deliverer.blocked_regions(),
        )
        for app in due:
            task = asyncio.create_task(self._redeliver(app))
            self._tasks.add(task)
            task.add_done_callback(self._done)
        return len(due)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("redelivery failed", exc_info=task.exception())

    async def _redeliver(self, app: application_pb2.Application) -> None:
        try:
            await self._redeliver_leased(app)
        except asyncio.CancelledError:
            # Shutting down: give the lease back so the next worker need not wait it out.
            with contextlib.suppress(Exception):
                await self.records.release(app.application_id, self.worker_id)
            raise

    async def _redeliver_leased(self, app: application_pb2.Application) -> None:
        if lifecycle.is_terminal(app.state) or app.state not in lifecycle.AWAITING_DELIVERY:
            await self.records.release(app.application_id, self.worker_id)
            return
        if self.records.expired(app):
            await self.records.finish_delivery(
                app.application_id,
                await self._last_look(app),
                lease_owner=self.worker_id,
                retry_in=None,
            )
            return
        budget = self.config.per_attempt_timeout * self.deliverer.policy.max_attempts
        outcome = await self.deliverer.deliver(app, deadline=self.deliverer.clock() + budget)
        await self.records.finish_delivery(
            app.application_id,
            outcome,
            lease_owner=self.worker_id,
            retry_in=self.backoff(app.delivery_attempts + outcome.attempts),
            known=app,
        )

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
            pass
        else:
            return DeliveryOutcome(
                application_pb2.APPLICATION_STATE_DELIVERED, 0, receipt_id=status.receipt_id
            )
        return DeliveryOutcome(
            application_pb2.APPLICATION_STATE_FAILED, 0, reason="DELIVERY_EXPIRED"
        )
