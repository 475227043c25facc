"""The gRPC server's own metrics: every RPC counted once, started and handled, and timed.

Invariants:
- `MetricsInterceptor` is the outermost interceptor, so it sees every outcome with one code
  spelling. The code of an RPC that aborted (`context.abort*` raises `AbortError`, which is not
  an `RpcError`) is read back from the context; a `TongbanError` that reaches it carries its
  own code; cancellation is `Canceled`; any other exception `Unknown`. It never swallows or
  re-invokes anything: the handler's outcome propagates unchanged.
- For the RPCs that may await provinces (`OVERHEAD_RPCS`), the time awaiting them (what the
  domain's events add to the RPC's clock) is taken off the handling time: the overhead.
- A request that carries a `request_id` field puts it (and its `target_region`) into the log
  context of everything logged while it is handled; whether it does is read once per message
  type.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from gateway.errors import TongbanError
from gateway.observability import logs
from gateway.observability.metrics import Metrics, _RpcChildren

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]

OVERHEAD_RPCS = frozenset(
    {
        "/gateway.api.v1.ApplicationService/SubmitApplication",
        "/gateway.api.v1.LicenseService/VerifyLicense",
    }
)
"""RPCs that may await provinces: only they have an overhead distinct from handling time."""


def status_code(context: grpc.aio.ServicerContext, error: BaseException | None) -> grpc.StatusCode:
    """The code an RPC ended with, raising `error` (None: it returned)."""
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
        overhead = children.overhead if method in OVERHEAD_RPCS else None

        async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
            children.started.inc()
            start = clock()
            token = metrics.start_rpc_clock() if overhead is not None else None
            error: BaseException | None = None
            try:
                if _carries_request_id(type(request)):
                    with logs.log_context(
                        request_id=request.request_id,
                        province=str(getattr(request, "target_region", "")),
                    ):
                        return await behavior(request, context)
                return await behavior(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                elapsed = clock() - start
                children.codes[status_code(context, error)].inc()
                children.handling.observe(elapsed)
                if token is not None and overhead is not None:
                    southbound = metrics.stop_rpc_clock(token)
                    overhead.observe(max(0.0, elapsed - southbound))

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
                    children.codes[status_code(context, error)].inc()
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
                children.codes[status_code(context, error)].inc()
                children.handling.observe(clock() - start)

        return handler


_REQUEST_ID_TYPES: dict[type, bool] = {}


def _carries_request_id(message_type: type) -> bool:
    """Whether requests of `message_type` have a `request_id` field (a request that did not
    decode reaches the handler as another type, which has none)."""
    known = _REQUEST_ID_TYPES.get(message_type)
    if known is None:
        descriptor = getattr(message_type, "DESCRIPTOR", None)
        known = _REQUEST_ID_TYPES[message_type] = "request_id" in getattr(
            descriptor, "fields_by_name", {}
        )
    return known
