"""The one place where domain errors become gRPC statuses.

Every handler of the gateway is wrapped once (wrappers are cached per method): a
`TongbanError` becomes its `google.rpc.Status` (code + one ErrorInfo + BadRequest/RetryInfo);
any other exception is logged and becomes INTERNAL with reason `INTERNAL`, so no request ever
crashes the server or leaks a stack trace. Every such status also carries the reason's Chinese
message as a `google.rpc.LocalizedMessage` (`errors.MESSAGES_ZH`), for the clerk a province's
platform shows it to. `grpc.aio.AbortError` (a handler that aborted on its
own) and cancellation pass through untouched.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc_status import rpc_status

from gateway.errors import TongbanError, build_status, localized_message

log = logging.getLogger(__name__)

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


async def _abort(context: grpc.aio.ServicerContext, error: BaseException, method: str) -> None:
    if isinstance(error, TongbanError):
        wire = error.to_status()
        wire.details.add().Pack(localized_message(error.reason, error.code))
        status = rpc_status.to_status(wire)
        if error.trailers:
            status = status._replace(trailing_metadata=(*status.trailing_metadata, *error.trailers))
    else:
        log.error("unhandled error in %s", method, exc_info=error)
        wire = build_status(grpc.StatusCode.INTERNAL, "INTERNAL", "internal error")
        wire.details.add().Pack(localized_message("INTERNAL", grpc.StatusCode.INTERNAL))
        status = rpc_status.to_status(wire)
    await context.abort_with_status(status)


def _wrap_unary(
    behavior: Callable[..., Awaitable[Any]], method: str
) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await _abort(context, error, method)

    return handler


def _wrap_writer(
    behavior: Callable[..., Awaitable[None]], method: str
) -> Callable[..., Awaitable[None]]:
    # A streaming handler that writes with `context.write` (grpc_health's Watch) is a plain
    # coroutine, not an async generator: wrapping it in `async for` failed every call.
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> None:
        try:
            await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await _abort(context, error, method)

    return handler


def _wrap_stream(
    behavior: Callable[..., AsyncIterator[Any]], method: str
) -> Callable[..., AsyncIterator[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for item in behavior(request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await _abort(context, error, method)

    return handler


class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Translates errors raised by handlers into rich statuses."""

    def __init__(self) -> None:
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
            return None
        if handler.unary_unary is not None:
            wrapped = grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        elif handler.unary_stream is not None:
            stream = handler.unary_stream
            wrapped = grpc.unary_stream_rpc_method_handler(
                _wrap_stream(stream, method)
                if inspect.isasyncgenfunction(stream)
                else _wrap_writer(stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        else:
            return handler
        self._cache[method] = wrapped
        return wrapped
