"""A gRPC health probe: `python -m gateway.app.probe HOST:PORT [SERVICE]` exits 0 when SERVING.

For the container image's HEALTHCHECK (Docker cannot speak gRPC); Kubernetes uses its native
gRPC probes against the same plaintext health port.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

TIMEOUT = 2.0
"""Seconds a probe waits for an answer."""


async def check(address: str, service: str = "", timeout: float = TIMEOUT) -> bool:  # noqa: ASYNC109
    """True when `address` answers SERVING for `service` ("" is the whole server)."""
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.aio.AioRpcError:
            return False
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status 0 (SERVING), 1 (anything else), 2 (usage)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not 1 <= len(args) <= 2:
        print("usage: python -m gateway.app.probe HOST:PORT [SERVICE]", file=sys.stderr)
        return 2
    service = args[1] if len(args) == 2 else ""
    return 0 if asyncio.run(check(args[0], service)) else 1


if __name__ == "__main__":
    raise SystemExit(main())
