"""A bare pass-through gRPC proxy: the floor for any Python gateway.

Every unary call is forwarded as raw bytes to one backend over one reused channel and the raw
reply is returned: no deserialization, no validation, no store. Errors from the backend are
passed on with their code and details (and their trailing metadata). The benchmark compares
the gateway's cost per application with this proxy's cost per call.

With `--store` it is the floor for a gateway that never loses a call: each call is first
stored durably through the gateway's own `Store` (the row the gateway's claim inserts, leased,
the raw request as its body), then forwarded, then its reply is stored with the gateway's
conditional outcome update — the two durable writes the gateway makes per application, and
nothing else. The store is whichever the gateway would open from the same `--store`: a SQLite
file (group-committed) or a `postgresql://` URL (one transaction per write, through the pool).

Run: `python -m bench.proxy --port 0 --target HOST:PORT [--store PATH|URL]`; announces
`{"event": "listening", "service": "bench-proxy", "address": ...}` on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

import grpc

from gateway.api.v1 import application_pb2
from gateway.app.config import load_store
from gateway.app.serving import announce, stop_event_on_signals
from gateway.storage.backends import open_store
from gateway.storage.base import ApplicationRow, Store
from gateway.storage.location import StoreConfig


def _identity(data: bytes) -> bytes:
    return data


class ForwardingHandler(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Forwards any unary-unary method to the backend channel, bytes in, bytes out."""

    def __init__(self, channel: grpc.aio.Channel, store: Store | None = None) -> None:
        self._channel = channel
        self._store = store
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method: str = handler_call_details.method
        cached = self._handlers.get(method)
        if cached is not None:
            return cached
        call = self._channel.unary_unary(
            method, request_serializer=_identity, response_deserializer=_identity
        )
        store = self._store

        async def forward(request: bytes, context: grpc.aio.ServicerContext) -> Any:
            try:
                if store is None:  # the bare floor: nothing but the call
                    return await call(request, timeout=context.time_remaining())
                return await _durably(store, call, request, context.time_remaining())
            except grpc.aio.AioRpcError as error:
                context.set_trailing_metadata(error.trailing_metadata() or ())
                await context.abort(error.code(), error.details() or "")

        handler = grpc.unary_unary_rpc_method_handler(
            forward, request_deserializer=_identity, response_serializer=_identity
        )
        self._handlers[method] = handler
        return handler


async def _durably(
    store: Store,
    call: grpc.aio.UnaryUnaryMultiCallable,
    request: bytes,
    seconds: float | None,
) -> bytes:
    """`call` between the gateway's two durable writes: the claim, then the outcome."""
    now = time.time()
    row = ApplicationRow(
        application_id=str(uuid.uuid4()),
        origin_region="proxy",
        request_id=str(uuid.uuid4()),
        request_digest="",
        target_region="proxy",
        state=application_pb2.APPLICATION_STATE_RECEIVED,
        create_time=now,
        update_time=now,
        next_attempt_time=now,
        expire_time=now + 86400.0,
        lease_owner="proxy",
        lease_until=now + 60.0,
        body=request,
    )
    await store.claim_request(row)
    reply: bytes = await call(request, timeout=seconds)
    await store.replace_if_unchanged(
        row.application_id,
        expected_body=request,
        lease_owner="proxy",
        state=application_pb2.APPLICATION_STATE_DELIVERED,
        update_time=time.time(),
        body=reply,
        next_attempt_time=None,
    )
    return reply


async def serve(host: str, port: int, target: str, store_at: StoreConfig | None = None) -> None:
    """Serves until SIGINT or SIGTERM."""
    stop = stop_event_on_signals()
    store = await open_store(store_at) if store_at is not None else None
    channel = grpc.aio.insecure_channel(target)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((ForwardingHandler(channel, store),))
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    announce("listening", service="bench-proxy", address=f"{host}:{bound}", target=target)
    try:
        await stop.wait()
    finally:
        await server.stop(1.0)
        await channel.close()
        if store is not None:
            await store.close()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.proxy`."""
    parser = argparse.ArgumentParser(prog="python -m bench.proxy", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--target", required=True, help="HOST:PORT of the backend")
    parser.add_argument(
        "--store",
        default="",
        help="store every call durably: an SQLite file path or a postgresql:// URL, read as the "
        "gateway reads --store (a password from the URL or PGPASSWORD)",
    )
    args = parser.parse_args(argv)
    # The gateway's own reading of --store, so the floor opens exactly what the gateway would.
    store = load_store({"TONGBAN_STORE": args.store})
    asyncio.run(serve(args.host, args.port, args.target, store))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
