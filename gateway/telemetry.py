"""Wiring `Metrics` into the gateway: the server interceptor, the southbound seams, gauges.

- `MetricsInterceptor` (outermost): counts every RPC once, started and handled, with one
  code spelling. The code of an RPC that aborted (`context.abort*` raises `AbortError`, which
  is not an `RpcError`) is read back from the context; a `TongbanError` that reaches it
  carries its own code; cancellation is `Canceled`; any other exception `Unknown`. It never
  swallows or re-invokes anything: the handler's outcome propagates unchanged.
- `MeasuredRegionClient`, `MeasuredDeliverer`, `MeasuredVerifier`: the region client, the
  deliverer and the licence verifier as the servicers see them, timing and counting.
- `refresh_gauges`: a small periodic task for what is read rather than counted (queue depth
  and age, catalog in force, per-dependency health).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2

from gateway import logs
from gateway.api.v1 import application_pb2, region_pb2
from gateway.applications.delivery import Deliverer, DeliveryOutcome
from gateway.catalog.registry import CatalogRegistry
from gateway.errors import RegionCallError, TongbanError
from gateway.licenses.keys import KeyCache
from gateway.licenses.status_list import StatusListCache
from gateway.licenses.verifier import LicenseVerifier, Verification
from gateway.metrics import Metrics, _RpcChildren
from gateway.routing.breaker import BreakerState
from gateway.routing.client import RegionClient
from gateway.routing.health import region_service_name
from gateway.store import Store

log = logging.getLogger("gateway.access")

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]

SUBMIT = "/gateway.api.v1.ApplicationService/SubmitApplication"
SOUTHBOUND_RPCS = frozenset({SUBMIT, "/gateway.api.v1.LicenseService/VerifyLicense"})
"""RPCs that may await provinces: only they have an overhead distinct from handling time."""
_PUBLICATIONS = {
    "/gateway.api.v1.CatalogService/PublishCatalogVersion": "version",
    "/gateway.api.v1.CatalogService/PublishRegionCatalog": "region",
}
_STATE_OUTCOME: dict[int, str] = {
    application_pb2.APPLICATION_STATE_DELIVERED: "delivered",
    application_pb2.APPLICATION_STATE_QUEUED: "queued",
    application_pb2.APPLICATION_STATE_FAILED: "failed",
}

STORE_HEALTH = "tongban.store"
CATALOG_HEALTH = "tongban.catalog"


def _code_of(context: grpc.aio.ServicerContext, error: BaseException | None) -> grpc.StatusCode:
    if isinstance(error, TongbanError):
        return error.code
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):
        for candidate in grpc.StatusCode:
            if candidate.value[0] == code:
                return candidate
    if error is not None:
        return grpc.StatusCode.UNKNOWN
    return grpc.StatusCode.OK


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts and times every RPC; put it first so it sees every outcome."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._cache: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None:
            return cached
        handler = await continuation(handler_call_details)
        if handler is None:
            # grpc answers UNIMPLEMENTED; the method string is the caller's: one label value.
            children = self._metrics.unknown_rpc()
            children.started.inc()
            children.codes[grpc.StatusCode.UNIMPLEMENTED].inc()
            return None
        if handler.unary_unary is not None:
            children = self._metrics.rpc(method, "unary")
            wrapped = grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, children, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        elif handler.unary_stream is not None:
            children = self._metrics.rpc(method, "server_stream")
            wrapped = grpc.unary_stream_rpc_method_handler(
                self._stream(handler.unary_stream, children),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        else:
            return handler
        self._cache[method] = wrapped
        return wrapped

    def _unary(
        self, behavior: Callable[..., Awaitable[Any]], children: _RpcChildren, method: str
    ) -> Callable[..., Awaitable[Any]]:
        metrics = self._metrics
        clock = metrics.clock
        publication = _PUBLICATIONS.get(method)
        submit = method == SUBMIT
        overhead = children.overhead if method in SOUTHBOUND_RPCS else None

        async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
            children.started.inc()
            start = clock()
            token = metrics.start_rpc_clock() if overhead is not None else None
            error: BaseException | None = None
            response = None
            try:
                if submit:
                    # getattr: a request that did not decode reaches the handler as another type.
                    with logs.log_context(
                        request_id=str(getattr(request, "request_id", "")),
                        province=str(getattr(request, "target_region", "")),
                    ):
                        response = await behavior(request, context)
                        _log_submission(metrics, response)
                else:
                    response = await behavior(request, context)
                return response
            except BaseException as exc:
                error = exc
                raise
            finally:
                elapsed = clock() - start
                code = _code_of(context, error)
                children.codes[code].inc()
                children.handling.observe(elapsed)
                if token is not None and overhead is not None:
                    southbound = metrics.stop_rpc_clock(token)
                    overhead.observe(max(0.0, elapsed - southbound))
                if publication is not None and not getattr(request, "validate_only", False):
                    metrics.count_publication(publication, code == grpc.StatusCode.OK)
                if submit and error is not None and log.isEnabledFor(logging.INFO):
                    log.info(
                        "submission refused",
                        extra={
                            "request_id": str(getattr(request, "request_id", "")),
                            "province": str(getattr(request, "target_region", "")),
                            "grpc_code": code.name,
                        },
                    )

        return handler

    def _stream(self, behavior: Callable[..., Any], children: _RpcChildren) -> Callable[..., Any]:
        clock = self._metrics.clock
        if not inspect.isasyncgenfunction(behavior):
            # A handler that writes with `context.write` (Health.Watch) is a plain coroutine.
            async def writer(request: Any, context: grpc.aio.ServicerContext) -> None:
                children.started.inc()
                start = clock()
                error: BaseException | None = None
                try:
                    await behavior(request, context)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    children.codes[_code_of(context, error)].inc()
                    children.handling.observe(clock() - start)

            return writer

        async def handler(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            children.started.inc()
            start = clock()
            error: BaseException | None = None
            try:
                async for item in behavior(request, context):
                    yield item
            except BaseException as exc:
                error = exc
                raise
            finally:
                children.codes[_code_of(context, error)].inc()
                children.handling.observe(clock() - start)

        return handler


def _log_submission(metrics: Metrics, response: application_pb2.SubmitApplicationResponse) -> None:
    if response.replayed:
        metrics.replays.inc()
    if log.isEnabledFor(logging.INFO):
        app = response.application
        log.info(
            "submission answered",
            extra={
                "application_id": app.application_id,
                "origin": app.origin_region,
                "state": application_pb2.ApplicationState.Name(app.state),
                "replayed": response.replayed,
                "delivery_attempts": app.delivery_attempts,
            },
        )


class MeasuredRegionClient:
    """A `RegionClient` that times every call per province and method."""

    def __init__(self, inner: RegionClient, metrics: Metrics) -> None:
        self.inner = inner
        self._metrics = metrics

    async def _timed(
        self, region_code: str, method: str, call: Awaitable[Any], *, southbound: bool
    ) -> Any:
        metrics = self._metrics
        start = metrics.clock()
        code = grpc.StatusCode.OK
        try:
            return await call
        except RegionCallError as error:
            code = error.code
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            elapsed = metrics.clock() - start
            metrics.observe_region_call(region_code, method, code, elapsed)
            if southbound:
                metrics.add_southbound(elapsed)

    async def deliver(
        self,
        region_code: str,
        request: region_pb2.DeliverApplicationRequest,
        timeout: float,  # noqa: ASYNC109 - a gRPC deadline, sent to the province
    ) -> region_pb2.DeliverApplicationResponse:
        # Delivery time (attempts and backoff) is added once, by MeasuredDeliverer.
        result: region_pb2.DeliverApplicationResponse = await self._timed(
            region_code,
            "DeliverApplication",
            self.inner.deliver(region_code, request, timeout),
            southbound=False,
        )
        return result

    async def get_license_keys(
        self,
        region_code: str,
        timeout: float,  # noqa: ASYNC109 - a gRPC deadline, sent to the province
    ) -> region_pb2.GetLicenseKeysResponse:
        result: region_pb2.GetLicenseKeysResponse = await self._timed(
            region_code,
            "GetLicenseKeys",
            self.inner.get_license_keys(region_code, timeout),
            southbound=True,
        )
        return result

    async def get_status(
        self,
        region_code: str,
        application_id: str,
        timeout: float,  # noqa: ASYNC109 - a gRPC deadline, sent to the province
    ) -> region_pb2.GetApplicationStatusResponse:
        result: region_pb2.GetApplicationStatusResponse = await self._timed(
            region_code,
            "GetApplicationStatus",
            self.inner.get_status(region_code, application_id, timeout),
            southbound=True,
        )
        return result

    async def get_license_status_list(
        self,
        region_code: str,
        timeout: float,  # noqa: ASYNC109 - a gRPC deadline, sent to the province
    ) -> region_pb2.GetLicenseStatusListResponse:
        result: region_pb2.GetLicenseStatusListResponse = await self._timed(
            region_code,
            "GetLicenseStatusList",
            self.inner.get_license_status_list(region_code, timeout),
            southbound=True,
        )
        return result

    async def close(self, grace: float | None) -> None:
        await self.inner.close(grace)


class MeasuredDeliverer(Deliverer):
    """A `Deliverer` that counts outcomes and adds its whole time to the RPC's province time."""

    def __init__(self, *args: Any, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._metrics = metrics

    async def deliver(
        self, app: application_pb2.Application, *, deadline: float
    ) -> DeliveryOutcome:
        metrics = self._metrics
        children = metrics.region(app.target_region)
        children.calls.inc()
        start = metrics.clock()
        try:
            outcome = await super().deliver(app, deadline=deadline)
        finally:
            metrics.add_southbound(metrics.clock() - start)
        name = _STATE_OUTCOME.get(outcome.state)
        if name is not None:
            children.outcomes[name].inc()
        return outcome


class MeasuredVerifier(LicenseVerifier):
    """The licence verifier, counting verdicts; exposes its caches for `CacheCollector`."""

    def __init__(self, inner: LicenseVerifier, metrics: Metrics) -> None:
        # Takes over `inner`'s state (the same caches and settings) instead of re-running the
        # constructor, so it stays identical to what `build_license_verifier` assembled
        # whatever that grows. Use this object instead of `inner` from now on.
        vars(self).update(vars(inner))
        self._metrics = metrics

    @property
    def keys(self) -> KeyCache:
        """The key cache (for its `stats` and ages)."""
        return self._keys

    @property
    def status_lists(self) -> StatusListCache:
        """The status-list cache (for its `stats` and ages)."""
        return self._status_lists

    async def verify(
        self,
        token: str,
        *,
        expected_type_code: str | None = None,
        expected_holder_id: str | None = None,
    ) -> Verification:
        result = await super().verify(
            token, expected_type_code=expected_type_code, expected_holder_id=expected_holder_id
        )
        self._metrics.count_verdict(result.verdict.name)
        return result


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
    metrics.observe_store(store.transactions, store.writes)
    try:
        depth, oldest = await store.queue_stats(now)
    except TongbanError:
        await health_state.set(STORE_HEALTH, False)
    else:
        metrics.queue_depth.set(depth)
        metrics.queue_oldest_age.set(max(0.0, now - oldest) if oldest is not None else 0.0)
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


async def refresh_gauges(interval: float, refresh: Callable[[], Awaitable[None]]) -> None:
    """Calls `refresh` every `interval` seconds until cancelled; a failure is logged."""
    while True:
        try:
            await refresh()
        except Exception:
            logging.getLogger(__name__).exception("refreshing gauges failed")
        await asyncio.sleep(interval)
