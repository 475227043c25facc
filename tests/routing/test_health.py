"""A province's breaker as a health status, watched through the gateway's own Health service."""

from __future__ import annotations

import asyncio
from pathlib import Path

from conftest import start_world
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.applications.outbox import DeliveryConfig
from gateway.routing.breaker import BreakerConfig, BreakerState
from gateway.routing.health import region_service_name

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_breaker_open_is_not_serving_and_closed_is_serving(tmp_path: Path) -> None:
    delivery = DeliveryConfig(
        dispatch_interval=0.05,
        redeliver_backoff_max=0.5,
        breaker=BreakerConfig(consecutive_failures=2, open_base=0.05, open_max=0.1),
    )
    async with start_world(tmp_path, regions=("510000",), delivery=delivery) as world:
        stub = health_pb2_grpc.HealthStub(world.channel)
        seen: list[int] = []
        changed = asyncio.Event()

        async def watch() -> None:
            request = health_pb2.HealthCheckRequest(service=region_service_name("510000"))
            async for answer in stub.Watch(request):
                seen.append(answer.status)
                changed.set()

        async def next_status(status: int) -> None:
            while not seen or seen[-1] != status:
                changed.clear()
                await asyncio.wait_for(changed.wait(), 10)

        watcher = asyncio.create_task(watch())
        try:
            breaker = world.gateway.deliverer.breaker("510000")
            breaker.record_failure()
            breaker.record_failure()
            assert breaker.state is BreakerState.OPEN
            assert world.gateway.deliverer.blocked_regions() == ["510000"]
            await next_status(NOT_SERVING)
            for _ in range(1000):  # the open duration is 50 ms
                if breaker.allow():
                    break
                await asyncio.sleep(0.01)
            breaker.record_success()
            assert breaker.state is BreakerState.HALF_OPEN  # type: ignore[comparison-overlap]
            # Half-open closes on sustained success: the ramp's share at 1, then 20 in a row.
            for _ in range(breaker.config.close_after - 1):
                assert breaker.allow()
                breaker.record_success()
            assert breaker.state is BreakerState.CLOSED
            await next_status(SERVING)
        finally:
            watcher.cancel()
        assert NOT_SERVING in seen
        assert seen[-1] == SERVING
