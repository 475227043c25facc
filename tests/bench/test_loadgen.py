"""The load generator's target spreads its calls over replicas in turn."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc

from bench.loadgen import Sample, Target, closed_loop

METHOD = "/bench.Echo/Echo"


class _Counting(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Answers any unary method with its request, counting the calls."""

    def __init__(self) -> None:
        self.calls = 0

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            self.calls += 1
            return request

        return grpc.unary_unary_rpc_method_handler(echo)


@contextlib.asynccontextmanager
async def _server() -> AsyncIterator[tuple[str, _Counting]]:
    server = grpc.aio.server()
    handler = _Counting()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", handler
    finally:
        await server.stop(None)


async def test_calls_take_the_replicas_in_turn() -> None:
    async with _server() as (a, first), _server() as (b, second):
        target = Target([a, b], METHOD, lambda: b"x")
        try:
            sample = Sample()
            for _ in range(10):
                await target.once(sample, 0.0)
        finally:
            await target.close()
    assert (first.calls, second.calls) == (5, 5)
    assert sample.requests == 10
    assert not sample.errors


async def test_one_address_is_one_channel() -> None:
    async with _server() as (a, only):
        target = Target(a, METHOD, lambda: b"x")
        try:
            sample = Sample()
            for _ in range(3):
                await target.once(sample, 0.0)
        finally:
            await target.close()
    assert len(target.channels) == 1
    assert only.calls == 3


async def test_a_reply_the_check_refuses_is_its_error_not_a_latency() -> None:
    async with _server() as (a, only):
        target = Target(
            a, METHOD, lambda: b"bad", check=lambda r: "REFUSED" if r == b"bad" else None
        )
        try:
            sample = Sample()
            await target.once(sample, 0.0)
            target.payload = lambda: b"good"
            await target.once(sample, 0.0)
        finally:
            await target.close()
    assert only.calls == 2
    assert sample.errors == {"REFUSED": 1}
    assert len(sample.latencies) == 1


async def test_a_steady_window_counts_only_the_calls_that_end_inside_it() -> None:
    class Edges:
        def __init__(self, handler: _Counting) -> None:
            self.handler = handler
            self.seen: list[tuple[str, int]] = []

        async def open(self) -> None:
            self.seen.append(("open", self.handler.calls))

        async def close(self) -> None:
            self.seen.append(("close", self.handler.calls))

    async with _server() as (a, only):
        target = Target(a, METHOD, lambda: b"x")
        edges = Edges(only)
        try:
            sample = await closed_loop(target, concurrency=2, seconds=0.2, lead=0.1, window=edges)
        finally:
            await target.close()
    [(first, at_open), (last, at_close)] = edges.seen
    assert (first, last) == ("open", "close")
    assert at_open > 0, "the lead's calls were made"
    assert 0 < sample.requests <= at_close - at_open + 2  # the two in flight at the opening
    assert only.calls >= at_close, "the callers stopped after the window closed"
    assert not sample.errors
