"""Carrying out the automatic decisions (`decisions`): one task per case, in the stub's loop.

Invariants:
- A case is decided through the same path as an operator's DecideCase (`decide`, which moves
  the case, then reports it), so an automatic decision and a manual one cannot differ in what
  the gateway hears.
- COMPLETE reports ACCEPTED at once and COMPLETED `delay` later; REJECT reports REJECTED
  `delay` later. Each step is retried, with capped exponential backoff for at most `patience`
  seconds, while the gateway cannot be reached (UNAVAILABLE, or no answer in time: a gateway
  restarting). A retry re-sends the same event (the case has already moved), so the gateway
  records each step once. A report that reaches the gateway before it has recorded the
  delivery is no reason to wait: the report itself proves the delivery to the gateway.
- A case that moved elsewhere meanwhile (withdrawn, or decided by an operator) ends its task
  quietly; any other refusal ends it with a warning. Nothing a task raises escapes it.
- `close` cancels every task still waiting; a stub restarted on the same data directory
  schedules its undecided cases again (`server.running_stub`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import tenacity

from gateway.errors import ApplicationNotFound, InvalidStateTransition, TongbanError, Unavailable
from region_stubs.cases import CaseState
from region_stubs.decisions import Action, Decision

log = logging.getLogger(__name__)

PATIENCE = 300.0
"""Seconds a step is retried before the stub gives up on reporting it."""
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 2.0

Decide = Callable[[str, CaseState, str], Awaitable[object]]
"""Moves a case (application id, new state, reason) and reports it to the gateway."""


def _retryable(error: BaseException) -> bool:
    return isinstance(error, Unavailable)


class Decider:
    """The cases waiting for an automatic decision."""

    def __init__(
        self,
        decide: Decide,
        *,
        patience: float = PATIENCE,
        backoff_first: float = BACKOFF_FIRST,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        self._decide = decide
        self._patience = patience
        self._wait = tenacity.wait_exponential(multiplier=backoff_first, max=backoff_max)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """How many cases are still being decided."""
        return len(self._tasks)

    def schedule(self, application_id: str, decision: Decision) -> None:
        """Starts deciding a case by `decision`; MANUAL leaves it to an operator."""
        if decision.action is Action.MANUAL:
            return
        task = asyncio.get_running_loop().create_task(
            self._carry_out(application_id, decision), name=f"decide {application_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancels every decision still waiting, and waits for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _carry_out(self, application_id: str, decision: Decision) -> None:
        try:
            if decision.action is Action.COMPLETE:
                await self._step(application_id, CaseState.ACCEPTED, "")
                await asyncio.sleep(decision.delay)
                await self._step(application_id, CaseState.COMPLETED, "")
            else:
                await asyncio.sleep(decision.delay)
                await self._step(application_id, CaseState.REJECTED, decision.reason)
        except (InvalidStateTransition, ApplicationNotFound) as e:
            log.info("case %s not decided automatically: %s", application_id, e.message)
        except TongbanError as e:
            log.warning("case %s: automatic decision given up: %s", application_id, e.message)
        except Exception:
            log.exception("case %s: automatic decision failed", application_id)

    async def _step(self, application_id: str, state: CaseState, reason: str) -> None:
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(_retryable),
            wait=self._wait,
            stop=tenacity.stop_after_delay(self._patience),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self._decide(application_id, state, reason)
