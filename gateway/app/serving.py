"""What every Tongban gRPC server shares: health, reflection, announcing, graceful stop.

The gateway and each region stub are grpc.aio servers with the same lifespan:
bind (port 0 allowed) → announce the bound address as one JSON line on stdout (parents and
tests read it) → serve until told to stop → health NOT_SERVING → wait a probe interval →
`server.stop(grace)`.
"""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import sys
from collections.abc import Iterable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

OVERALL = ""
"""The health service name that stands for the whole server."""


def add_health_and_reflection(
    server: grpc.aio.Server, service_names: Iterable[str], *, reflection_enabled: bool = True
) -> health.aio.HealthServicer:
    """Registers `grpc.health.v1` (all services SERVING) and, if enabled, server reflection."""
    names = list(service_names)
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    if reflection_enabled:
        reflection.enable_server_reflection(
            [
                *names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            server,
        )
    return servicer


async def set_serving(
    servicer: health.aio.HealthServicer, names: Iterable[str], serving: bool
) -> None:
    """Sets the overall status and each named service's status."""
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in (OVERALL, *names):
        await servicer.set(name, status)


def settle_heap() -> None:
    """Moves everything alive after start-up out of the cyclic collector's sight.

    Modules, descriptors, the catalog and the connections live as long as the process; a full
    collection walking them is a stall every call in flight would feel (`bench/RESULTS.md`).
    Frozen, later full collections walk only what serving allocated since. Call once, when started.
    """
    gc.collect()
    gc.freeze()


def announce(event: str, **fields: Any) -> None:
    """Prints one JSON line on stdout, e.g. where a server listens; flushed at once."""
    sys.stdout.write(json.dumps({"event": event, **fields}, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def stop_event_on_signals(
    signals: Iterable[signal.Signals] = (signal.SIGINT, signal.SIGTERM),
) -> asyncio.Event:
    """An event set when the process receives one of the signals (inside the running loop)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    return stop


async def drain(
    server: grpc.aio.Server,
    servicer: health.aio.HealthServicer,
    names: Iterable[str],
    *,
    probe_interval: float,
    grace: float,
) -> None:
    """Flips health to NOT_SERVING, lets probes notice, then stops with a grace period."""
    await set_serving(servicer, names, serving=False)
    if probe_interval > 0:
        await asyncio.sleep(probe_interval)
    await server.stop(grace)
