"""The auth interceptor: who is calling, may they call this method at all, and how often.

Every call, in this order, before the handler runs:

1. The caller is the identity of the verified client certificate (`context.auth_context()`),
   nothing else; or, on a connection from the edge proxy alone, the certificate it forwards in
   `x-forwarded-client-cert`, verified against the federation's CA (see `forwarded`). The
   header from anyone else is refused. In insecure mode there is no identity and
   authorization is skipped (see `guard`).
2. A denied serial or an expired certificate is refused (UNAUTHENTICATED), on every call:
   an open connection outlives the handshake that admitted it. Through the edge, the edge's
   own certificate is checked too.
3. Method-level policy: catalog reads, licence checks and catalog publication are decided
   here; application methods and implementation-list publication need stored facts and are
   decided by their handler (`guard.check`); health is open; reflection is for operators
   when so configured; any other method is administrative (operators only).
4. The per-caller, per-method rate limit (RESOURCE_EXHAUSTED with RetryInfo).
5. A request whose bytes do not parse as its message is INVALID_ARGUMENT (gRPC itself would
   answer INTERNAL, which is not the caller's to cause).
6. The caller is set in a contextvar for the handler.

Refusals are raised as `TongbanError`s: listed after `ErrorInterceptor`, this interceptor's
errors become rich statuses there. Streaming-request handlers (reflection), which the error
interceptor leaves alone, are aborted here with the same status. Every denial, here or in a
handler, is audited.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc_status import rpc_status

from gateway.errors import (
    InvalidRequest,
    PermissionDenied,
    ResourceExhausted,
    TongbanError,
    Unauthenticated,
)
from gateway.events import NO_EVENTS, AccessDenied, Events
from gateway.security.authz import (
    DENIAL_METADATA_KEY,
    RPC_ACTIONS,
    Action,
    Admin,
    Denial,
    PublishCatalogVersion,
    ReadCatalog,
    VerifyLicense,
    deny,
    require,
    to_error,
)
from gateway.security.forwarded import HEADER as FORWARDED_HEADER
from gateway.security.forwarded import ForwardedCertificates
from gateway.security.guard import Caller, reset_caller, set_caller
from gateway.security.identity import Identity, identity_from_auth_context, presented_peer
from gateway.security.pki import EDGE_URI
from gateway.security.ratelimit import RateLimiter
from gateway.security.tls import DenyList

log = logging.getLogger(__name__)

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]

HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_PREFIXES = (
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
_DECIDED_HERE: dict[type[Action], Action] = {
    ReadCatalog: ReadCatalog(),
    VerifyLicense: VerifyLicense(),
    PublishCatalogVersion: PublishCatalogVersion(),
}


_INSECURE = Caller(None, enforced=False)


class _Undecodable:
    """Stands for a request whose bytes are not its message."""


UNDECODABLE = _Undecodable()


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # DecodeError, recursion limits: the bytes are the caller's
            return UNDECODABLE

    return parse


def _decoded(request: Any) -> None:
    if request is UNDECODABLE:
        raise InvalidRequest("the request message cannot be parsed")


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Authenticates, admits and rate-limits every call; see the module docstring."""

    def __init__(
        self,
        *,
        enforce: bool,
        deny_list: DenyList,
        limiter: RateLimiter,
        events: Events = NO_EVENTS,
        reflection_ops_only: bool = True,
        forwarded: ForwardedCertificates | None = None,
    ) -> None:
        """`forwarded` verifies what the edge proxy forwards; None trusts no edge proxy."""
        self.enforce = enforce
        self.forwarded = forwarded
        self.deny_list = deny_list
        self.limiter = limiter
        self.events = events
        self.reflection_ops_only = reflection_ops_only
        self._cache: dict[str, grpc.RpcMethodHandler] = {}

    def admit(self, method: str, context: grpc.aio.ServicerContext) -> Caller:
        """The caller of this call; raises the refusal when it may not call `method`."""
        if not self.enforce:
            if self.limiter.enabled:  # no identities: bucket by connection
                self._rate_limit(context.peer() or "insecure", method)
            return _INSECURE
        auth_context = context.auth_context()
        identity = identity_from_auth_context(auth_context)
        forwarded = [
            value for key, value in context.invocation_metadata() or () if key == FORWARDED_HEADER
        ]
        if forwarded:
            identity = self._forwarded_caller(auth_context, forwarded, identity, method)
        caller = Caller(identity, enforced=True)
        if method.startswith(HEALTH_PREFIX):
            return caller
        try:
            decision = self.deny_list.check(identity)
            if not decision.allowed:
                raise to_error(decision)
            action_type = RPC_ACTIONS.get(method)
            if method.startswith(REFLECTION_PREFIXES):
                if self.reflection_ops_only:
                    require(identity, Admin(method))
            elif action_type is None:
                require(identity, Admin(method))
            elif action_type in _DECIDED_HERE:
                require(identity, _DECIDED_HERE[action_type])
        except TongbanError as error:
            self._audit_denial(caller, method, error)
            raise
        if self.limiter.enabled:
            self._rate_limit(caller.actor, method)
        return caller

    def _forwarded_caller(
        self,
        auth_context: Any,
        values: list[str],
        connection: Identity | None,
        method: str,
    ) -> Identity:
        """The caller the edge proxy forwards; raises the refusal when the connection is not
        the edge's, the edge's certificate is no longer good, or the forwarded one is bad."""
        edge = presented_peer(auth_context, EDGE_URI)
        if edge is None or self.forwarded is None:
            decision = deny(Denial.NOT_THE_EDGE)
        else:
            decision = self.deny_list.check(edge)
            if decision.allowed:
                forwarded = self.forwarded.identity(values)
                if forwarded is not None:
                    return forwarded
                decision = deny(Denial.FORWARDED_CERTIFICATE_INVALID)
        error = to_error(decision)
        self._audit_denial(Caller(connection, enforced=True), method, error)
        raise error

    def _rate_limit(self, key: str, method: str) -> None:
        wait = self.limiter.acquire(key, method)
        if wait > 0:
            raise ResourceExhausted(
                "too many calls of this method; retry later",
                metadata={"limit": "RATE_LIMITED", "method": method},
                retry_delay=wait,
            )

    def _audit_denial(self, caller: Caller, method: str, error: BaseException) -> None:
        # Policy denials carry their `denial`; other refusals (a catalog signed by no known
        # body) are recorded by their reason.
        if isinstance(error, PermissionDenied | Unauthenticated):
            outcome = error.metadata.get(DENIAL_METADATA_KEY) or error.reason
            self.events.emit(AccessDenied(caller.actor, method, outcome))

    def _wrap_unary(
        self, behavior: Callable[..., Awaitable[Any]], method: str
    ) -> Callable[..., Awaitable[Any]]:
        async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
            caller = self.admit(method, context)
            _decoded(request)
            token = set_caller(caller)
            try:
                return await behavior(request, context)
            except TongbanError as error:
                self._audit_denial(caller, method, error)
                raise
            finally:
                reset_caller(token)

        return handler

    def _wrap_unary_stream(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        if not inspect.isasyncgenfunction(behavior):
            return self._wrap_writer(behavior, method)

        async def handler(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            caller = self.admit(method, context)
            _decoded(request)
            token = set_caller(caller)
            try:
                async for item in behavior(request, context):
                    yield item
            except TongbanError as error:
                self._audit_denial(caller, method, error)
                raise
            finally:
                reset_caller(token)

        return handler

    def _wrap_writer(
        self, behavior: Callable[..., Awaitable[None]], method: str
    ) -> Callable[..., Awaitable[None]]:
        """A server-streaming handler that writes with `context.write` (e.g. Health.Watch)."""

        async def handler(request: Any, context: grpc.aio.ServicerContext) -> None:
            caller = self.admit(method, context)
            _decoded(request)
            token = set_caller(caller)
            try:
                await behavior(request, context)
            except TongbanError as error:
                self._audit_denial(caller, method, error)
                raise
            finally:
                reset_caller(token)

        return handler

    def _wrap_stream_stream(
        self, behavior: Callable[..., AsyncIterator[Any]], method: str
    ) -> Callable[..., AsyncIterator[Any]]:
        async def handler(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                caller = self.admit(method, context)
            except TongbanError as error:
                await context.abort_with_status(rpc_status.to_status(error.to_status()))
                return
            token = set_caller(caller)
            try:
                async for item in behavior(requests, context):
                    yield item
            finally:
                reset_caller(token)

        return handler

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
                self._wrap_unary(handler.unary_unary, method),
                request_deserializer=_lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        elif handler.unary_stream is not None:
            wrapped = grpc.unary_stream_rpc_method_handler(
                self._wrap_unary_stream(handler.unary_stream, method),
                request_deserializer=_lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        elif handler.stream_stream is not None:
            wrapped = grpc.stream_stream_rpc_method_handler(
                self._wrap_stream_stream(handler.stream_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        else:
            # No method of ours streams requests to a single response; refuse rather than
            # serve something unchecked.
            wrapped = grpc.stream_unary_rpc_method_handler(
                self._refuse_stream_unary(method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        self._cache[method] = wrapped
        return wrapped

    def _refuse_stream_unary(self, method: str) -> Callable[..., Awaitable[Any]]:
        async def handler(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            error = PermissionDenied(f"{method} is not served")
            await context.abort_with_status(rpc_status.to_status(error.to_status()))

        return handler
