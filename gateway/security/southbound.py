"""What a province (a region stub) admits: RegionService is for the gateway alone.

Over mTLS every party's certificate verifies against the same CA, so TLS alone would let one
province call another's `DeliverApplication` directly, around the gateway's checks and its
audit log. This interceptor admits RegionService calls only from a certificate carrying the
gateway's URI SAN; other services of the stub (its admin API, health) are left alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_status import rpc_status

from gateway.errors import PermissionDenied
from gateway.security.identity import presents_uri
from gateway.security.pki import GATEWAY_URI

REGION_SERVICE_PREFIX = "/gateway.api.v1.RegionService/"


class GatewayOnly(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses RegionService calls whose client certificate is not the gateway's."""

    def __init__(self, uri: str = GATEWAY_URI) -> None:
        self._uri = uri
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or not method.startswith(REGION_SERVICE_PREFIX):
            return handler
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            if handler.unary_unary is None:
                raise RuntimeError(f"{method}: only unary RegionService methods are guarded")
            inner = handler.unary_unary

            async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
                if not presents_uri(context.auth_context(), self._uri):
                    error = PermissionDenied(
                        "only the gateway calls a province's RegionService",
                        metadata={"denial": "NOT_THE_GATEWAY"},
                    )
                    await context.abort_with_status(rpc_status.to_status(error.to_status()))
                return await inner(request, context)

            wrapped = grpc.unary_unary_rpc_method_handler(
                behavior,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
            self._wrapped[method] = wrapped
        return wrapped
