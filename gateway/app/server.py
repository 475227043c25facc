"""The gateway process: every component opened in one async context and closed in reverse.

Lifespan: open the store → load (or seed) the catalog → open the province channels → start the
gRPC server (port 0 allowed), the probe-only health port, `/metrics`, the dispatcher and the
followers of other replicas (the store's change feed, the watch hub's re-reads, the catalog
refresh) → announce → serve → on SIGINT/SIGTERM: every health status NOT_SERVING, wait a probe
interval, stop accepting, let in-flight calls finish within the grace period, stop the
dispatcher and the followers, close the channels, close the store (queued writes commit first).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from gateway.api.v1 import (
    application_pb2,
    application_pb2_grpc,
    bundle_pb2,
    bundle_pb2_grpc,
    license_pb2,
    license_pb2_grpc,
)
from gateway.app.changes import ChangeFollower
from gateway.app.config import GatewayConfig
from gateway.app.error_status import ErrorInterceptor
from gateway.app.health import (
    DependencyHealth,
    refresh_gauges,
    refresh_members_overdue,
    refresh_once,
)
from gateway.app.licensing import build_license_verifier
from gateway.app.serving import (
    add_health_and_reflection,
    announce,
    drain,
    set_serving,
    settle_heap,
    stop_event_on_signals,
)
from gateway.applications.bundle_flow import BundleFlow
from gateway.applications.bundle_records import BundleRecords
from gateway.applications.bundle_service import BundleServicer
from gateway.applications.deadlines import calendar_last_day
from gateway.applications.dispatcher import Dispatcher
from gateway.applications.outbox import Outbox
from gateway.applications.records import ApplicationRecords
from gateway.applications.service import ApplicationServicer
from gateway.applications.watch import WatchHub
from gateway.catalog import signing
from gateway.catalog.registry import CatalogRegistry, load_provinces
from gateway.catalog.service import SERVICE as CATALOG_SERVICE
from gateway.catalog.service import CatalogServicer, add_catalog_servicer
from gateway.errors import FailedPrecondition
from gateway.events import BreakerChanged, EventBus
from gateway.licenses.service import LicenseServicer
from gateway.observability.audit_log import FsyncPolicy
from gateway.observability.auditing import Auditor
from gateway.observability.logs import AccessLog
from gateway.observability.metrics import (
    BuildInfo,
    CacheCollector,
    Metrics,
    MetricsHttp,
    process_registry,
    serve_metrics,
)
from gateway.observability.rpc_metrics import MetricsInterceptor
from gateway.observability.tracing import (
    ServerTracing,
    SpanListener,
    client_interceptors,
    process_provider,
)
from gateway.routing.client import GrpcRegionClient
from gateway.routing.deliverer import Deliverer
from gateway.routing.health import RegionHealth
from gateway.security.forwarded import ForwardedCertificates
from gateway.security.interceptor import AuthInterceptor
from gateway.security.ratelimit import RateLimiter
from gateway.security.tls import DenyList, channel_credentials, server_credentials
from gateway.storage.backends import open_store
from gateway.storage.base import Store
from gateway.times import utc_now

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    CATALOG_SERVICE,
    application_pb2.DESCRIPTOR.services_by_name["ApplicationService"].full_name,
    bundle_pb2.DESCRIPTOR.services_by_name["BundleService"].full_name,
    license_pb2.DESCRIPTOR.services_by_name["LicenseService"].full_name,
)

MEMBERS_REFRESH_INTERVAL = 30.0
"""Seconds between two counts of overdue bundle members (each reads the bundles in progress)."""
REFRESH_INTERVAL = 1.0
"""Seconds between two readings of the queue, the catalog and the breakers, and between two
comparisons of the stored catalog with the one in force."""


@dataclass
class RunningGateway:
    """A started gateway, for the CLI and for tests."""

    config: GatewayConfig
    server: grpc.aio.Server
    port: int
    store: Store
    registry: CatalogRegistry
    deliverer: Deliverer
    outbox: Outbox
    dispatcher: Dispatcher
    records: ApplicationRecords
    client: GrpcRegionClient
    events: EventBus
    metrics: Metrics
    metrics_port: int | None = None
    """Where `/metrics` is served; None when disabled."""
    health_port: int | None = None
    """The plaintext probe-only health port; None when disabled."""
    auditor: Auditor | None = None

    @property
    def address(self) -> str:
        """`host:port` the gateway listens on."""
        return f"{self.config.host}:{self.port}"


def worker_identity() -> str:
    """A name for this process, unique across restarts (used for delivery leases)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _open_auditor(config: GatewayConfig) -> Auditor:
    if not config.audit:
        return Auditor(None)
    return Auditor.open(config.audit_path, config.audit_key_path, FsyncPolicy(config.audit_fsync))


def _new_server(
    config: GatewayConfig,
    events: EventBus,
    metrics: Metrics,
    tracer_provider: TracerProvider | None,
) -> grpc.aio.Server:
    """The gRPC server with its interceptors and limits (no services yet)."""
    auth = AuthInterceptor(
        enforce=config.tls is not None,
        deny_list=DenyList(config.deny_serials),
        limiter=RateLimiter(config.rate_limits),
        events=events,
        reflection_ops_only=config.reflection_ops_only,
        forwarded=None if config.tls is None else ForwardedCertificates(config.tls.ca_cert),
    )
    # Metrics outermost (it sees every outcome), then tracing when on (the RPC's span is current
    # for everything inside), then ErrorInterceptor: the auth interceptor's refusals become rich
    # statuses there.
    tracing = [] if tracer_provider is None else [ServerTracing(tracer_provider)]
    server = grpc.aio.server(
        interceptors=[MetricsInterceptor(metrics), *tracing, ErrorInterceptor(), auth],
        options=[
            ("grpc.max_receive_message_length", config.max_receive_message_bytes),
            ("grpc.max_metadata_size", config.max_metadata_bytes),
            ("grpc.absolute_max_metadata_size", config.max_metadata_bytes),
            # SO_REUSEPORT only for the workers of one `--workers N` gateway: gRPC turns it on
            # by default on Linux, and a second gateway started on a taken port would then
            # silently take half of its calls.
            ("grpc.so_reuseport", 1 if config.share_port else 0),
        ],
        maximum_concurrent_rpcs=config.max_concurrent_rpcs or None,
    )
    return server


class PortInUse(FailedPrecondition):
    """The gateway's port is taken by another process (reported at start)."""

    reason = "PORT_IN_USE"


def _taken(config: GatewayConfig, what: str, port: int, flag: str) -> PortInUse:
    return PortInUse(
        f"{what} {port} on {config.host} is taken (another gateway?): stop it or choose "
        f"another {flag}",
        metadata={"port": str(port)},
    )


def _bind(server: grpc.aio.Server, config: GatewayConfig) -> int:
    """Binds the port: mTLS, or plaintext with a loud warning in insecure mode; a taken port
    is `PortInUse`."""
    try:
        return _add_port(server, config)
    except RuntimeError as exc:  # grpc's only word for a failed bind
        raise _taken(config, "port", config.port, "--port") from exc


def _add_port(server: grpc.aio.Server, config: GatewayConfig) -> int:
    if config.tls is None:
        log.warning(
            "INSECURE MODE: plaintext gRPC on %s:%s, no caller identities, authorization "
            "skipped; use only on loopback for development",
            config.host,
            config.port,
        )
        port = server.add_insecure_port(f"{config.host}:{config.port}")
    else:
        port = server.add_secure_port(
            f"{config.host}:{config.port}", server_credentials(config.tls)
        )
    return int(port)


# One function opens every resource in order and closes them in reverse: splitting it would
# hide that order, which is the point.
@contextlib.asynccontextmanager
async def running_gateway(  # noqa: PLR0915
    config: GatewayConfig,
    *,
    metrics_registry: CollectorRegistry | None = None,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[RunningGateway]:
    """Starts the gateway in the running loop and stops it gracefully on exit.

    Metrics go to `metrics_registry`, by default a fresh registry of this gateway's own. With
    `config.tracing`, spans go to `tracer_provider`, by default the process's OTLP exporter;
    without it, nothing of tracing is installed.
    """
    # Read before anything is opened: a missing certificate fails the start with nothing to undo.
    tls = config.tls
    credentials = None if tls is None else channel_credentials(tls.ca_cert, tls.cert, tls.key)
    tracing = (tracer_provider or process_provider("tongban-gateway")) if config.tracing else None
    auditor = _open_auditor(config)
    try:
        store = await open_store(config.store_config)
    except BaseException:
        await auditor.aclose()
        raise
    events = EventBus()
    client = GrpcRegionClient(
        config.regions,
        credentials=credentials,
        interceptors=() if tracing is None else client_interceptors(tracing),
        events=events,
    )
    dispatcher_task: asyncio.Task[None] | None = None
    followers: list[asyncio.Task[None]] = []
    refresh_task: asyncio.Task[None] | None = None
    server: grpc.aio.Server | None = None
    probe_server: grpc.aio.Server | None = None
    http: MetricsHttp | None = None
    try:
        registry = CatalogRegistry(store, load_provinces(config.standards_dir), utc_now)
        metrics_registry = metrics_registry or process_registry()
        metrics = Metrics(
            metrics_registry, regions=registry.snapshot.provinces, build=BuildInfo.installed()
        )
        metrics.set_workday_calendar(calendar_last_day())
        for code in config.regions:
            metrics.region(code).breaker_state.set(0)
        records = ApplicationRecords(
            store, queue_expiry=config.delivery.queue_expiry, events=events
        )
        # Listeners, in the order they hear each event: metrics, audit, the access log, the
        # watch streams, spans; the dispatcher and region health subscribe below.
        metrics.listen(events)
        auditor.listen(events)
        AccessLog().listen(events)
        hub = WatchHub(records.get)
        hub.listen(events)
        if tracing is not None:
            SpanListener(tracing).listen(events)
        await registry.load()
        if await registry.bootstrap(
            [config.standards_dir / name for name in config.bootstrap_catalogs],
            config.standards_dir / "implementations",
        ):
            log.info("seeded the store from %s", config.standards_dir)
        deliverer = Deliverer(
            client,
            config.delivery.retry_policy(),
            breaker_config=config.delivery.breaker,
            events=events,
        )
        outbox = Outbox(
            records, deliverer, config.delivery, worker_id=worker_identity(), events=events
        )
        dispatcher = Dispatcher(outbox)
        events.subscribe(BreakerChanged, dispatcher.on_breaker_changed)
        verifier = build_license_verifier(config, client, registry, events=events)
        metrics_registry.register(
            CacheCollector(
                verifier.keys,
                verifier.status_lists,
                lambda: registry.snapshot.provinces,
                metrics.region_label,
            )
        )
        server = _new_server(config, events, metrics, tracing)
        add_catalog_servicer(
            CatalogServicer(
                registry,
                signing.load_public_keys(config.standards_keys),
                utc_now,
                events=events,
            ),
            server,
        )
        applications = ApplicationServicer(
            registry=registry,
            outbox=outbox,
            hub=hub,
            licenses=verifier,
            wall_clock=utc_now,
            watch_poll=config.watch_poll,
            events=events,
        )
        application_pb2_grpc.add_ApplicationServiceServicer_to_server(applications, server)
        bundles = BundleRecords(store, records, events=events)
        flow = BundleFlow(bundles, outbox, registry, verifier, wall_clock=utc_now, events=events)
        flow.listen(events)
        bundle_pb2_grpc.add_BundleServiceServicer_to_server(
            BundleServicer(
                registry=registry,
                bundles=bundles,
                flow=flow,
                outbox=outbox,
                hub=hub,
                licenses=verifier,
                wall_clock=utc_now,
                watch_poll=config.watch_poll,
                events=events,
            ),
            server,
        )
        license_pb2_grpc.add_LicenseServiceServicer_to_server(LicenseServicer(verifier), server)
        health = add_health_and_reflection(
            server, SERVICE_NAMES, reflection_enabled=config.reflection
        )
        dependencies = DependencyHealth(health)
        # A breaker's change reaches its province's health status at once; the periodic
        # refresh below covers the store, the catalog and provinces without a change.
        region_health = RegionHealth(health)
        await region_health.start(config.regions)
        events.subscribe(
            BreakerChanged, lambda e: region_health.on_breaker_change(e.region_code, e.old, e.new)
        )

        async def refresh() -> None:
            # Provinces connected after start (`tongban up` connects its stubs so) included.
            regions = client.regions | set(deliverer.breakers)
            await refresh_once(
                metrics,
                store=store,
                registry=registry,
                deliverer=deliverer,
                health_state=dependencies,
                regions=sorted(regions),
            )

        await refresh()
        port = _bind(server, config)
        health_port: int | None = None
        if config.health_port >= 0:
            probe_server = grpc.aio.server(
                options=[("grpc.so_reuseport", 1 if config.share_port else 0)]
            )
            health_pb2_grpc.add_HealthServicer_to_server(health, probe_server)
            try:
                health_port = probe_server.add_insecure_port(f"{config.host}:{config.health_port}")
            except RuntimeError as exc:
                raise _taken(config, "health port", config.health_port, "--health-port") from exc
            await probe_server.start()
        await server.start()
        await set_serving(health, SERVICE_NAMES, serving=True)
        if config.metrics_port >= 0:
            try:
                http = serve_metrics(config.host, config.metrics_port, metrics_registry)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                raise _taken(config, "metrics port", config.metrics_port, "--metrics-port") from exc
        dispatcher_task = asyncio.create_task(dispatcher.run(), name="dispatcher")
        follower = ChangeFollower(hub, registry)
        followers = [
            asyncio.create_task(store.follow_changes(follower.on_change), name="change-feed"),
            asyncio.create_task(hub.run(), name="watch-rereads"),
            asyncio.create_task(follower.refresh_catalog(REFRESH_INTERVAL), name="catalog"),
        ]
        refresh_task = asyncio.create_task(
            refresh_gauges(REFRESH_INTERVAL, refresh), name="metrics-refresh"
        )
        followers.append(
            asyncio.create_task(
                refresh_gauges(
                    MEMBERS_REFRESH_INTERVAL, lambda: refresh_members_overdue(metrics, store)
                ),
                name="members-overdue",
            )
        )
        running = RunningGateway(
            config,
            server,
            port,
            store,
            registry,
            deliverer,
            outbox,
            dispatcher,
            records,
            client,
            events,
            metrics,
            auditor=auditor,
            metrics_port=http.port if http else None,
            health_port=health_port,
        )
        try:
            yield running
        finally:
            refresh_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresh_task
            # Every status, the per-dependency ones included, NOT_SERVING and frozen there.
            await health.enter_graceful_shutdown()
            await drain(
                server,
                health,
                SERVICE_NAMES,
                probe_interval=config.probe_interval,
                grace=config.grace,
            )
            await applications.wait_idle(config.grace)
            await flow.close()
    finally:
        for task in [*followers, *([dispatcher_task] if dispatcher_task else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if server is not None:
            await server.stop(0)
        if probe_server is not None:
            await probe_server.stop(0)
        if http is not None:
            http.close()
        await client.close(1.0)
        await auditor.aclose()
        await store.close()


async def serve(config: GatewayConfig) -> None:
    """Runs the gateway until SIGINT or SIGTERM."""
    stop = stop_event_on_signals()
    async with running_gateway(config) as gateway:
        settle_heap()
        announce(
            "listening", service="gateway", address=gateway.address, regions=dict(config.regions)
        )
        if gateway.metrics_port is not None:
            announce("metrics", service="gateway", address=f"{config.host}:{gateway.metrics_port}")
        if gateway.health_port is not None:
            announce("health", service="gateway", address=f"{config.host}:{gateway.health_port}")
        await stop.wait()
        announce("stopping", service="gateway")
