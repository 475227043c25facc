"""OpenTelemetry tracing of the gateway and the region stubs, when it is switched on.

Invariants:
- Off (the default) nothing here is installed: no interceptor, no listener, no provider, so a
  call pays nothing for tracing. On (`TONGBAN_TRACING=true`), every process exports its spans
  in batches to the OTLP endpoint the standard `OTEL_*` variables name (or to the provider a
  test hands in).
- Every RPC served is one server span (the gRPC instrumentation), child of the caller's
  `traceparent` when one came; its status is the RPC's final code. Every call a province
  channel makes is one client span, which sends `traceparent` on. Only W3C trace context
  crosses a hop: baggage is neither accepted nor sent, so nothing a platform attaches reaches
  a province. Health checks and reflection are not traced.
- The steps of a submission are spans made by `SpanListener` from the domain's events, as
  children of the span current where the event was emitted: code resolution, licence
  verification and the durable commit are placed after the fact from the event's `seconds`
  (so a licence's key or status-list fetch is a child of the RPC beside its verification). A
  delivery call and each of its attempts are spans current from their `…Started` to their
  `…Finished` event, because the southbound call an attempt wraps takes its parent, and the
  `traceparent` it sends, from the context current while it is awaited.
- Span attributes hold application and request ids, region codes, matter codes, states,
  verdicts, reasons, status codes and attempt numbers; never an id number, a name or a form
  value. The instrumentation adds the method, the status code and the peer's address, and on
  a failed call its status details, which never carry personal data either.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.api.v1 import application_pb2
from gateway.events import (
    ApplicationSubmitted,
    AttemptFinished,
    AttemptStarted,
    CodeResolved,
    DeliveryFinished,
    DeliveryStarted,
    EventBus,
    LicenseVerified,
    SubmissionAnswered,
    SubmissionRefused,
)
from gateway.observability.rpc_metrics import status_code

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]

UNTRACED_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
"""Method prefixes served without a span: probes and tooling, not the traffic."""
SERVER_ERROR_CODES = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
"""Codes that make a server span an error (OpenTelemetry's gRPC conventions): the server
failed. A refusal of the request (INVALID_ARGUMENT, NOT_FOUND, …) is the caller's: its code is
an attribute."""
_RPC_STATUS_CODE = "rpc.grpc.status_code"
_STATE_NAMES: dict[int, str] = {
    application_pb2.APPLICATION_STATE_DELIVERED: "DELIVERED",
    application_pb2.APPLICATION_STATE_QUEUED: "QUEUED",
    application_pb2.APPLICATION_STATE_FAILED: "FAILED",
}


@functools.cache
def process_provider(service_name: str) -> TracerProvider:
    """The process's provider for `service_name`, made once: it batches spans to the OTLP
    exporter the standard `OTEL_*` variables configure (endpoint, headers, certificates,
    timeouts); `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` name the process
    (`service_name` when they do not), `OTEL_TRACES_SAMPLER` samples. What is queued is
    flushed when the process exits (the SDK's own exit hook)."""
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def propagate_trace_context_only() -> None:
    """Makes W3C `traceparent`/`tracestate` the only headers read from callers and sent to
    provinces (the SDK's default also carries `baggage`). Process-wide; idempotent."""
    propagate.set_global_textmap(TraceContextTextMapPropagator())


def client_interceptors(provider: TracerProvider) -> list[grpc.aio.ClientInterceptor]:
    """A client span per call, `traceparent` sent with it: for a channel's `interceptors`."""
    propagate_trace_context_only()
    return list(aio_client_interceptors(tracer_provider=provider))  # type: ignore[no-untyped-call]


class ServerTracing(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """A server span per RPC (the gRPC instrumentation's), ending with the RPC's final code.

    The instrumentation learns a code only from `context.abort` and `set_code`, not from
    `abort_with_status` (how `ErrorInterceptor` answers), so the code is read back here, as
    the metrics interceptor reads it. Put it outside `ErrorInterceptor`, to see every outcome;
    like the metrics interceptor, it expects one handler per method from those inside it.
    """

    def __init__(self, provider: TracerProvider) -> None:
        propagate_trace_context_only()
        self._instrumentation = aio_server_interceptor(tracer_provider=provider)  # type: ignore[no-untyped-call]
        self._cache: dict[str, tuple[grpc.RpcMethodHandler, bool]] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        cached = self._cache.get(method)
        if cached is None:
            handler = await continuation(handler_call_details)
            if handler is None:  # grpc answers UNIMPLEMENTED; the caller's string is not kept
                return None
            cached = self._cache[method] = _traced(method, handler)
        handler, traced = cached
        if not traced:
            return handler

        async def resolved(_: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
            return handler

        wrapped: grpc.RpcMethodHandler | None = await self._instrumentation.intercept_service(
            resolved, handler_call_details
        )
        return wrapped


def _traced(method: str, handler: grpc.RpcMethodHandler) -> tuple[grpc.RpcMethodHandler, bool]:
    """The handler to trace, ending with the RPC's final code, and whether to trace it: not
    untraced services, client streams, or a stream written with `context.write` (which the
    instrumentation would iterate)."""
    if method.startswith(UNTRACED_SERVICES) or handler.request_streaming:
        return handler, False
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _unary(handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        ), True
    if not inspect.isasyncgenfunction(handler.unary_stream):
        return handler, False
    return grpc.unary_stream_rpc_method_handler(
        _stream(handler.unary_stream),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    ), True


def _unary(behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        error: BaseException | None = None
        try:
            return await behavior(request, context)
        except BaseException as exc:
            error = exc
            raise
        finally:
            _end_with(context, error)

    return handler


def _stream(behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        error: BaseException | None = None
        try:
            async for item in behavior(request, context):
                yield item
        except BaseException as exc:
            error = exc
            raise
        finally:
            _end_with(context, error)

    return handler


def _end_with(context: grpc.aio.ServicerContext, error: BaseException | None) -> None:
    code = status_code(context, error)
    span = trace.get_current_span()
    span.set_attribute(_RPC_STATUS_CODE, code.value[0])
    if code in SERVER_ERROR_CODES:
        span.set_status(trace.Status(trace.StatusCode.ERROR, code.name))


@dataclass(frozen=True, slots=True)
class _Open:
    """A span current from its start event to its end event."""

    kind: type
    """The end event's type."""
    span: trace.Span
    token: contextvars.Token[otel_context.Context]
    """What `otel_context.attach` returned: detached at the end event."""


_open: contextvars.ContextVar[tuple[_Open, ...]] = contextvars.ContextVar(
    "tongban_open_spans", default=()
)
"""The spans `SpanListener` holds current in this task, innermost last."""


class SpanListener:
    """Listener: the steps of submissions and deliveries as spans (see the module's
    invariants)."""

    def __init__(self, provider: TracerProvider) -> None:
        self._tracer = provider.get_tracer("gateway")

    def listen(self, bus: EventBus) -> None:
        """Makes spans of what the domain emits."""
        bus.subscribe(CodeResolved, self._resolved)
        bus.subscribe(LicenseVerified, self._verified)
        bus.subscribe(ApplicationSubmitted, self._committed)
        bus.subscribe(DeliveryStarted, self._delivery_started)
        bus.subscribe(DeliveryFinished, self._delivery_finished)
        bus.subscribe(AttemptStarted, self._attempt_started)
        bus.subscribe(AttemptFinished, self._attempt_finished)
        bus.subscribe(SubmissionAnswered, self._answered)
        bus.subscribe(SubmissionRefused, self._refused)

    # -- after the fact -----------------------------------------------------------------------

    def _past(self, name: str, seconds: float, attributes: dict[str, str], error: str = "") -> None:
        end = time.time_ns()
        span = self._tracer.start_span(
            name, start_time=end - round(seconds * 1e9), attributes=attributes
        )
        if error:
            span.set_status(trace.Status(trace.StatusCode.ERROR, error))
        span.end(end_time=end)

    def _resolved(self, event: CodeResolved) -> None:
        error = "" if event.result == "resolved" else event.result
        self._past("resolve local code", event.seconds, {"tongban.result": event.result}, error)

    def _verified(self, event: LicenseVerified) -> None:
        self._past("verify licence", event.seconds, {"tongban.verdict": event.verdict})

    def _committed(self, event: ApplicationSubmitted) -> None:
        app = event.application
        self._past(
            "commit application",
            event.seconds,
            {"tongban.application_id": app.application_id, "tongban.region": app.target_region},
        )

    # -- current while awaited ----------------------------------------------------------------

    def _open_span(self, name: str, end_kind: type, attributes: dict[str, str | int]) -> None:
        span = self._tracer.start_span(name, attributes=attributes)
        token = otel_context.attach(trace.set_span_in_context(span))
        _open.set((*_open.get(), _Open(end_kind, span, token)))

    def _close_span(self, end_kind: type) -> trace.Span | None:
        held = _open.get()
        if not held or held[-1].kind is not end_kind:
            return None
        top = held[-1]
        _open.set(held[:-1])
        otel_context.detach(top.token)
        return top.span

    def _delivery_started(self, event: DeliveryStarted) -> None:
        self._open_span(
            "deliver",
            DeliveryFinished,
            {"tongban.region": event.region_code, "tongban.application_id": event.application_id},
        )

    def _delivery_finished(self, event: DeliveryFinished) -> None:
        span = self._close_span(DeliveryFinished)
        if span is None:
            return
        state = _STATE_NAMES.get(event.state, "CANCELLED")
        span.set_attribute("tongban.state", state)
        span.set_attribute("tongban.attempts", event.attempts)
        if event.reason:
            span.set_attribute("tongban.reason", event.reason)
        if state in ("FAILED", "CANCELLED"):
            span.set_status(trace.Status(trace.StatusCode.ERROR, event.reason or state))
        span.end()

    def _attempt_started(self, event: AttemptStarted) -> None:
        self._open_span(
            "delivery attempt",
            AttemptFinished,
            {"tongban.region": event.region_code, "tongban.attempt": event.number},
        )

    def _attempt_finished(self, event: AttemptFinished) -> None:
        span = self._close_span(AttemptFinished)
        if span is None:
            return
        span.set_attribute("tongban.code", event.code)
        if event.reason:
            span.set_attribute("tongban.reason", event.reason)
        if event.code != "OK":
            span.set_status(trace.Status(trace.StatusCode.ERROR, event.reason or event.code))
        span.end()

    # -- the RPC's own span -------------------------------------------------------------------

    def _answered(self, event: SubmissionAnswered) -> None:
        app = event.application
        span = trace.get_current_span()
        span.set_attribute("tongban.application_id", app.application_id)
        span.set_attribute("tongban.request_id", app.request_id)
        span.set_attribute("tongban.origin_region", app.origin_region)
        span.set_attribute("tongban.target_region", app.target_region)
        span.set_attribute("tongban.national_matter_code", app.national_matter_code)
        span.set_attribute("tongban.state", application_pb2.ApplicationState.Name(app.state))
        span.set_attribute("tongban.replayed", event.replayed)

    def _refused(self, event: SubmissionRefused) -> None:
        span = trace.get_current_span()
        span.set_attribute("tongban.request_id", event.request_id)
        span.set_attribute("tongban.target_region", event.target_region)
        span.set_attribute("tongban.reason", event.reason)
