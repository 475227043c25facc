"""One delivery call to a province: its retries, its province's retry budget and breaker.

Invariants:
- Every attempt carries the same application id (provinces deduplicate on it), as the
  province view of the application: no gateway-side history, state or receipt.
- Each province has one retry budget and one circuit breaker, created on first use and shared
  by every delivery to it (inline and redelivery alike).
- A call ends in one `DeliveryOutcome`: DELIVERED with the receipt; QUEUED when it could not be
  delivered now (the province is unreachable, slow, or its breaker or budget refuses); FAILED
  when the province refused the application itself.
- Every call is emitted as `DeliveryStarted`, then `DeliveryFinished` however it ends; every
  breaker transition as `BreakerChanged`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.api.v1 import application_pb2, region_pb2
from gateway.events import NO_EVENTS, BreakerChanged, DeliveryFinished, DeliveryStarted, Events
from gateway.routing.breaker import BreakerConfig, CircuitBreaker
from gateway.routing.budget import BudgetConfig, RetryBudget
from gateway.routing.client import RegionClient
from gateway.routing.policy import RetryPolicy
from gateway.routing.retries import DeliveryFailed, call_with_retries

DELIVERED = application_pb2.APPLICATION_STATE_DELIVERED
QUEUED = application_pb2.APPLICATION_STATE_QUEUED
FAILED = application_pb2.APPLICATION_STATE_FAILED


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
        policy: RetryPolicy,
        *,
        breaker_config: BreakerConfig | None = None,
        budget_config: BudgetConfig | None = None,
        events: Events = NO_EVENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.policy = policy
        self.events = events
        self.clock = clock
        self._budget_config = budget_config or BudgetConfig()
        self._breaker_config = breaker_config or BreakerConfig()
        self.budgets: dict[str, RetryBudget] = {}
        self.breakers: dict[str, CircuitBreaker] = {}

    def blocked_regions(self) -> list[str]:
        """Provinces whose breaker refuses calls right now (asked without side effects)."""
        return [code for code, breaker in self.breakers.items() if breaker.blocking()]

    def breaker(self, region_code: str) -> CircuitBreaker:
        """The province's breaker, created on first use."""
        breaker = self.breakers.get(region_code)
        if breaker is None:
            events = self.events

            def transition(old: object, new: object, region: str = region_code) -> None:
                events.emit(BreakerChanged(region, int(old), int(new)))  # type: ignore[call-overload]

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
        started = self.clock()
        self.events.emit(DeliveryStarted(region, app.application_id))
        outcome: DeliveryOutcome | None = None
        try:
            outcome = await self._deliver(app, region, deadline)
            return outcome
        finally:
            self.events.emit(
                DeliveryFinished(
                    region,
                    outcome.state if outcome else 0,
                    self.clock() - started,
                    outcome.attempts if outcome else 0,
                    outcome.reason if outcome else "",
                )
            )

    async def _deliver(
        self, app: application_pb2.Application, region: str, deadline: float
    ) -> DeliveryOutcome:
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
                events=self.events,
            )
        except DeliveryFailed as failed:
            if failed.retryable:
                return DeliveryOutcome(QUEUED, failed.attempts, reason=failed.outcome.upper())
            error = failed.last_error
            reason = (error.reason or error.code.name) if error else "REFUSED"
            return DeliveryOutcome(FAILED, failed.attempts, reason=f"REFUSED_BY_PROVINCE:{reason}")
        return DeliveryOutcome(DELIVERED, made, receipt_id=response.receipt_id)
