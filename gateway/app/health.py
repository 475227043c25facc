"""The process's health statuses and periodic gauges: what is read rather than counted.

- `DependencyHealth`: one `grpc.health.v1` status per dependency (`tongban.store`,
  `tongban.catalog`, `tongban.region.XX0000`), set only when it changes.
- `refresh_once`: reads the queue, the catalog in force and the breakers into gauges and
  statuses; `refresh_gauges` calls it periodically.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from grpc_health.v1 import health, health_pb2

from gateway.api.v1 import bundle_pb2
from gateway.applications.bundle_records import overdue_members
from gateway.catalog.registry import CatalogRegistry
from gateway.errors import TongbanError
from gateway.observability.metrics import Metrics
from gateway.routing.breaker import BreakerState
from gateway.routing.deliverer import Deliverer
from gateway.routing.health import region_service_name
from gateway.storage.base import Store

STORE_HEALTH = "tongban.store"
CATALOG_HEALTH = "tongban.catalog"


class DependencyHealth:
    """Per-dependency statuses of the health service (`enter_graceful_shutdown` freezes them)."""

    def __init__(self, servicer: health.aio.HealthServicer) -> None:
        self._servicer = servicer
        self._last: dict[str, bool] = {}

    async def set(self, name: str, ok: bool) -> None:
        """Sets one named status; a no-op when unchanged."""
        if self._last.get(name) == ok:
            return
        self._last[name] = ok
        await self._servicer.set(
            name,
            health_pb2.HealthCheckResponse.SERVING
            if ok
            else health_pb2.HealthCheckResponse.NOT_SERVING,
        )


async def refresh_once(
    metrics: Metrics,
    *,
    store: Store,
    registry: CatalogRegistry,
    deliverer: Deliverer,
    health_state: DependencyHealth,
    regions: Iterable[str],
) -> None:
    """Reads the queue, the catalog and the breakers into gauges and health statuses."""
    now = time.time()
    metrics.observe_store(*store.commit_stats())
    try:
        depth, oldest = await store.queue_stats()
    except TongbanError:
        await health_state.set(STORE_HEALTH, False)
    else:
        metrics.queue_depth.set(depth)
        metrics.queue_oldest_age.set(max(0.0, now - oldest) if oldest is not None else 0.0)
        metrics.set_bundle_stats(await store.bundle_stats(now, bundle_pb2.BUNDLE_STATE_IN_PROGRESS))
        await health_state.set(STORE_HEALTH, True)
    record = registry.snapshot.current(registry.clock())
    if record is None:
        metrics.set_catalog(None, None)
    else:
        activated = max(record.publish_time, record.document.effective_time)
        metrics.set_catalog(record.document.version, activated.timestamp())
    await health_state.set(CATALOG_HEALTH, record is not None)
    # `RegionHealth` publishes each breaker transition at once; this pass covers provinces
    # connected after start, with the same rule (only a CLOSED breaker is SERVING).
    for code in regions:
        breaker = deliverer.breakers.get(code)
        closed = breaker is None or breaker.state == BreakerState.CLOSED
        await health_state.set(region_service_name(code), closed)


MEMBER_SCAN_LIMIT = 10_000
"""Bundles in progress read per count of overdue members (the earliest due first)."""


async def refresh_members_overdue(metrics: Metrics, store: Store) -> None:
    """Counts the overdue members of bundles in progress, per theme, into their gauge."""
    now = time.time()
    counts: dict[str, int] = {}
    rows = await store.bundle_bodies(bundle_pb2.BUNDLE_STATE_IN_PROGRESS, MEMBER_SCAN_LIMIT)
    for theme, body in rows:
        counts[theme] = counts.get(theme, 0) + overdue_members(body, now)
    metrics.set_members_overdue(counts)


async def refresh_gauges(interval: float, refresh: Callable[[], Awaitable[None]]) -> None:
    """Calls `refresh` every `interval` seconds until cancelled; a failure is logged."""
    while True:
        try:
            await refresh()
        except Exception:
            logging.getLogger(__name__).exception("refreshing gauges failed")
        await asyncio.sleep(interval)
