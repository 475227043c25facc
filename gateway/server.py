"""The gateway process: every component opened in one async context and closed in reverse.

Lifespan: open the store → load (or seed) the catalog → open the province channels → start the
gRPC server (port 0 allowed) and the dispatcher → announce → serve → on SIGINT/SIGTERM: health
NOT_SERVING, wait a probe interval, stop accepting, let in-flight calls finish within the grace
period, stop the dispatcher, close the channels, close the store (queued writes commit first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from gateway.api.v1 import (
    application_pb2,
    application_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    license_pb2,
    license_pb2_grpc,
)
from gateway.applications.delivery import Deliverer, Dispatcher
from gateway.applications.records import ApplicationRecords
from gateway.applications.service import ApplicationServicer
from gateway.applications.watch import WatchHub
from gateway.catalog import signing
from gateway.catalog.registry import CatalogRegistry, load_provinces, utc_now
from gateway.catalog.service import CatalogServicer
from gateway.config import GatewayConfig
from gateway.interceptors import ErrorInterceptor
from gateway.licenses.service import LicenseServicer
from gateway.licenses.wiring import build_license_verifier
from gateway.routing.client import GrpcRegionClient
from gateway.routing.health import RegionHealth
from gateway.serving import (
    add_health_and_reflection,
    announce,
    drain,
    set_serving,
    stop_event_on_signals,
)
from gateway.store import Store

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name,
    application_pb2.DESCRIPTOR.services_by_name["ApplicationService"].full_name,
    license_pb2.DESCRIPTOR.services_by_name["LicenseService"].full_name,
)

BOOTSTRAP_CATALOG = "catalog/2025.1.json"


@dataclass
class RunningGateway:
    """A started gateway, for the CLI and for tests."""

    config: GatewayConfig
    server: grpc.aio.Server
    port: int
    store: Store
    registry: CatalogRegistry
    deliverer: Deliverer
    dispatcher: Dispatcher
    records: ApplicationRecords
    client: GrpcRegionClient

    @property
    def address(self) -> str:
        """`host:port` the gateway listens on."""
        return f"{self.config.host}:{self.port}"


def worker_identity() -> str:
    """A name for this process, unique across restarts (used for delivery leases)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def running_gateway(config: GatewayConfig) -> AsyncIterator[RunningGateway]:
    """Starts the gateway in the running loop and stops it gracefully on exit."""
    store = await Store.open(config.store_path)
    client = GrpcRegionClient(config.regions)
    dispatcher_task: asyncio.Task[None] | None = None
    server: grpc.aio.Server | None = None
    try:
        registry = CatalogRegistry(store, load_provinces(config.standards_dir), utc_now)
        await registry.load()
        if await registry.bootstrap(
            config.standards_dir / BOOTSTRAP_CATALOG, config.standards_dir / "implementations"
        ):
            log.info("seeded the store from %s", config.standards_dir)
        hub = WatchHub()
        records = ApplicationRecords(store, hub, queue_expiry=config.delivery.queue_expiry)
        deliverer = Deliverer(client, config.delivery)
        worker_id = worker_identity()
        dispatcher = Dispatcher(records, deliverer, config.delivery, worker_id=worker_id)
        verifier = build_license_verifier(config, client, registry)
        server = grpc.aio.server(interceptors=[ErrorInterceptor()])
        catalog_pb2_grpc.add_CatalogServiceServicer_to_server(
            CatalogServicer(registry, signing.load_public_keys(config.standards_keys), utc_now),
            server,
        )
        applications = ApplicationServicer(
            registry=registry,
            records=records,
            deliverer=deliverer,
            dispatcher=dispatcher,
            licenses=verifier,
            worker_id=worker_id,
            wall_clock=utc_now,
        )
        application_pb2_grpc.add_ApplicationServiceServicer_to_server(applications, server)
        license_pb2_grpc.add_LicenseServiceServicer_to_server(LicenseServicer(verifier), server)
        health = add_health_and_reflection(
            server, SERVICE_NAMES, reflection_enabled=config.reflection
        )
        region_health = RegionHealth(health)
        await region_health.start(config.regions)
        deliverer.breaker_listeners.append(region_health.on_breaker_change)
        port = server.add_insecure_port(f"{config.host}:{config.port}")
        await server.start()
        await set_serving(health, SERVICE_NAMES, serving=True)
        dispatcher_task = asyncio.create_task(dispatcher.run(), name="dispatcher")
        running = RunningGateway(
            config, server, port, store, registry, deliverer, dispatcher, records, client
        )
        try:
            yield running
        finally:
            await drain(
                server,
                health,
                SERVICE_NAMES,
                probe_interval=config.probe_interval,
                grace=config.grace,
            )
            await applications.wait_idle(config.grace)
    finally:
        if dispatcher_task is not None:
            dispatcher_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dispatcher_task
        if server is not None:
            await server.stop(0)
        await client.close(1.0)
        await store.close()


async def serve(config: GatewayConfig) -> None:
    """Runs the gateway until SIGINT or SIGTERM."""
    stop = stop_event_on_signals()
    async with running_gateway(config) as gateway:
        announce(
            "listening", service="gateway", address=gateway.address, regions=dict(config.regions)
        )
        await stop.wait()
        announce("stopping", service="gateway")
