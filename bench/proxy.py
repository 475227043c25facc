"""A bare pass-through gRPC proxy: the floor for any Python gateway.

Every unary call is forwarded as raw bytes to one backend over one reused channel and the raw
reply is returned: no deserialization, no validation, no store. Errors from the backend are
passed on with their code and details (and their trailing metadata). The benchmark compares
the gateway's cost per application with this proxy's cost per call.

Run: `python -m bench.proxy --port 0 --target HOST:PORT`; announces
`{"event": "listening", "service": "bench-proxy", "address": ...}` on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import Any

import grpc

from gateway.serving import announce, stop_event_on_signals


def _identity(data: bytes) -> bytes:
    return data


class ForwardingHandler(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Forwards any unary-unary method to the backend channel, bytes in, bytes out."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._channel = channel
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method: str = handler_call_details.method
        cached = self._handlers.get(method)
        if cached is not None:
            return cached
        call = self._channel.unary_unary(
            method, request_serializer=_identity, response_deserializer=_identity
        )

        async def forward(request: bytes, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await call(request, timeout=context.time_remaining())
            except grpc.aio.AioRpcError as error:
                context.set_trailing_metadata(error.trailing_metadata() or ())
                await context.abort(error.code(), error.details() or "")

        handler = grpc.unary_unary_rpc_method_handler(
            forward, request_deserializer=_identity, response_serializer=_identity
        )
        self._handlers[method] = handler
        return handler


async def serve(host: str, port: int, target: str) -> None:
    """Serves until SIGINT or SIGTERM."""
    stop = stop_event_on_signals()
    channel = grpc.aio.insecure_channel(target)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((ForwardingHandler(channel),))
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    announce("listening", service="bench-proxy", address=f"{host}:{bound}", target=target)
    try:
        await stop.wait()
    finally:
        await server.stop(1.0)
        await channel.close()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.proxy`."""
    parser = argparse.ArgumentParser(prog="python -m bench.proxy", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--target", required=True, help="HOST:PORT of the backend")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.target))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
