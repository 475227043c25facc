"""Each province's circuit breaker, published as a `grpc.health.v1` status for operators.

Invariants, in plain words:

- The service name of province `XX0000` is `tongban.region.XX0000`. It is SERVING while the
  province's breaker is CLOSED and NOT_SERVING while it is OPEN or HALF_OPEN (calls are being
  refused, or only probes or a share of them go through: the province is down or degraded).
- Every configured province starts SERVING: a breaker is created only on first use, closed.
- The breaker calls back synchronously on the event loop; the health servicer's `set` is a
  coroutine, so updates are scheduled as tasks, applied in order, and awaited by `aclose`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

from grpc_health.v1 import health_pb2

from gateway.routing.breaker import BreakerState

__all__ = ["REGION_SERVICE_PREFIX", "RegionHealth", "region_service_name"]

REGION_SERVICE_PREFIX = "tongban.region."


def region_service_name(region_code: str) -> str:
    """The health service name standing for a province's breaker."""
    return REGION_SERVICE_PREFIX + region_code


class HealthSetter(Protocol):
    """What this module needs of `grpc_health.v1.health.aio.HealthServicer`."""

    async def set(self, service: str, status: int) -> None: ...


def status_of(state: int) -> int:
    """The health status standing for a breaker state."""
    if state == BreakerState.CLOSED:
        return int(health_pb2.HealthCheckResponse.SERVING)
    return int(health_pb2.HealthCheckResponse.NOT_SERVING)


class RegionHealth:
    """Mirrors breaker transitions into a health servicer (`on_breaker_change` is the hook)."""

    def __init__(self, servicer: HealthSetter) -> None:
        self._servicer = servicer
        self._last: asyncio.Task[None] | None = None
        self.states: dict[str, int] = {}
        """The last breaker state seen per province, for tests and metrics."""

    async def start(self, regions: Iterable[str]) -> None:
        """Publishes every configured province as SERVING."""
        for code in regions:
            self.states.setdefault(code, int(BreakerState.CLOSED))
            await self._servicer.set(region_service_name(code), status_of(self.states[code]))

    def on_breaker_change(self, region_code: str, old: int, new: int) -> None:
        """The breaker hook: schedules the province's new status (after any earlier one)."""
        self.states[region_code] = new
        previous = self._last
        status = status_of(new)

        async def publish() -> None:
            if previous is not None:
                await asyncio.wait({previous})
            await self._servicer.set(region_service_name(region_code), status)

        self._last = asyncio.get_running_loop().create_task(publish())

    async def aclose(self) -> None:
        """Waits for the updates scheduled so far."""
        if self._last is not None:
            await asyncio.wait({self._last})
