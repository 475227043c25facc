"""Every Prometheus metric the gateway exports, on one injectable `CollectorRegistry`.

Invariants, in plain words:

- Every label set is fixed here and bounded: gRPC service and method names come from the
  registered services (an unregistered method is counted as `unknown`), codes are the 17
  canonical names spelled once (`CODE_NAMES`, the de-facto Go spelling: `OK`,
  `InvalidArgument`, …), a province is its 6-digit region code out of the 31 provinces (any
  other value is `other`), and reasons, verdicts and outcomes come from closed sets. No
  application id, request id, matter code, name or id number is ever a label value.
- Labelled children are built once and cached: `.labels()` is costly, a cached child's
  `inc()`/`observe()` is not.
- Everything counted comes from the domain's events (`listen`), except what only the gRPC
  server sees (RPCs, in `telemetry.MetricsInterceptor`) and what is read rather than counted
  (gauges refreshed periodically).
- Histogram buckets contain every SLO threshold of `deploy/SLO.md` (`SLO_*` below).
- "Time awaiting the province" is the wall time of southbound work done for the current RPC:
  delivery calls (attempts and the backoff between them) and licence key/status fetches. The
  gateway's overhead is the RPC's handling time minus that, so a slow province is never
  blamed on the gateway.
"""

from __future__ import annotations

import contextvars
import platform
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from gateway.api.v1 import application_pb2
from gateway.applications.deadlines import CHINA_TIME
from gateway.events import (
    AttemptStarted,
    BreakerChanged,
    BundleRated,
    BundleSubmitted,
    CatalogPublished,
    CodeResolved,
    DeliveryFinished,
    EventBus,
    FlowRefused,
    LicenseVerified,
    PushbackHonoured,
    RegionCallFinished,
    RetryBudgetExhausted,
    RetryGranted,
    SubmissionAnswered,
)
from gateway.licenses.token import Verdict
from gateway.routing.policy import REASONS

SLO_OVERHEAD_P99 = 0.05
"""Seconds: 99% of submissions spend at most this long in the gateway itself."""
SLO_SUBMISSION_P99 = 1.0
"""Seconds: 99% of submissions are answered within this (province time included)."""
SLO_OLDEST_QUEUED = 900.0
"""Seconds: no application waits in the queue longer than this while its province is up."""

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, SLO_OVERHEAD_P99, 0.1, 0.25, 0.5,
    SLO_SUBMISSION_P99, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Buckets of every latency histogram; they include the SLO thresholds."""

CODE_NAMES: Mapping[grpc.StatusCode, str] = {
    grpc.StatusCode.OK: "OK",
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}
"""The one spelling of status codes in every `grpc_code` label (Go's `codes.Code.String()`)."""

SERVER_ERROR_CODES = ("Unknown", "DeadlineExceeded", "Internal", "Unavailable", "DataLoss")
"""Codes that count against submission availability (the gateway failed, not the caller)."""

UNKNOWN = "unknown"
"""The service and method label of an RPC to a method the server does not have."""
OTHER_REGION = "other"
"""The region label of a code that is not one of the configured provinces."""

BREAKER_STATES = ("closed", "half_open", "open")
"""Names of `BreakerState` values 0, 1, 2 (the gauge holds the number)."""
DELIVERY_OUTCOMES = ("delivered", "queued", "failed")
REGION_METHODS = (
    "DeliverApplication",
    "GetApplicationStatus",
    "GetLicenseKeys",
    "GetLicenseStatusList",
)
RESOLVE_RESULTS = (
    "resolved",
    "LOCAL_CODE_NOT_FOUND",
    "LOCAL_CODE_RETIRED",
    "LOCAL_CODE_AMBIGUOUS",
    "MATTER_NOT_FOUND",
    "MATTER_NOT_IMPLEMENTED",
    "REGION_NOT_FOUND",
    "CATALOG_VERSION_NOT_FOUND",
    "other",
)
"""Resolution outcomes: `resolved` or the error's stable reason (never a code)."""

_STATE_OUTCOME: Mapping[int, str] = {
    application_pb2.APPLICATION_STATE_DELIVERED: "delivered",
    application_pb2.APPLICATION_STATE_QUEUED: "queued",
    application_pb2.APPLICATION_STATE_FAILED: "failed",
}
_CODE_BY_NAME = {code.name: code for code in grpc.StatusCode}

_southbound: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar(
    "tongban_southbound", default=None
)


@dataclass(frozen=True)
class BuildInfo:
    """What `tongban_build_info` reports."""

    version: str
    revision: str = "unknown"
    """The git commit the code was started from: a label naming code, never a person."""

    @classmethod
    def installed(cls) -> BuildInfo:
        """The installed package's version, and its commit when it runs from a checkout."""
        try:
            version = metadata.version("tongban")
        except metadata.PackageNotFoundError:
            version = "unknown"
        return cls(version, source_revision(Path(__file__).resolve().parents[2]))


def source_revision(directory: Path) -> str:
    """`git rev-parse HEAD` in `directory` (12 hex digits), or "unknown" outside a checkout or
    without git. Read once at start."""
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    revision = done.stdout.strip()
    if done.returncode != 0 or not re.fullmatch(r"[0-9a-f]{7,40}", revision):
        return "unknown"
    return revision


def process_registry() -> CollectorRegistry:
    """A fresh registry with the client library's process, platform and GC series."""
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    return registry


class MetricsHttp:
    """`/metrics` served from a background thread (prometheus-client's own server)."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.port: int = server.server_port
        """The bound port (useful when 0 was asked for)."""

    def close(self) -> None:
        """Stops serving and joins the thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)


def serve_metrics(host: str, port: int, registry: CollectorRegistry) -> MetricsHttp:
    """Starts serving `registry` on `http://host:port/metrics` (port 0: any free port)."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsHttp(server, thread)


class Metrics:
    """The gateway's metrics. Build one per process (tests: one per registry)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        regions: Iterable[str],
        build: BuildInfo,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.registry = registry
        self.regions = frozenset(regions)
        self.clock = clock
        r = registry
        # -- gRPC server, de-facto names ---------------------------------------------------
        rpc = ("grpc_type", "grpc_service", "grpc_method")
        self.started = Counter(
            "grpc_server_started_total", "RPCs started on the server.", rpc, registry=r
        )
        self.handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, whatever their status.",
            (*rpc, "grpc_code"),
            registry=r,
        )
        self.handling = Histogram(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its status, as seen by the gateway.",
            rpc,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "tongban_gateway_overhead_seconds",
            "Handling time minus time awaiting provinces (SubmitApplication, VerifyLicense).",
            ("grpc_method",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # -- southbound, per province ------------------------------------------------------
        self.region_call = Histogram(
            "tongban_region_call_seconds",
            "Duration of one call (one attempt) to a province's RegionService.",
            ("region", "method"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.region_call_results = Counter(
            "tongban_region_call_results_total",
            "Calls (attempts) to a province by method and status code.",
            ("region", "method", "grpc_code"),
            registry=r,
        )
        self.delivery_calls = Counter(
            "tongban_region_delivery_calls_total",
            "Delivery calls (each makes zero attempts when the breaker refuses it, or more).",
            ("region",),
            registry=r,
        )
        self.delivery_attempts = Counter(
            "tongban_region_delivery_attempts_total",
            "Delivery attempts; attempts / calls is the retry amplification.",
            ("region",),
            registry=r,
        )
        self.retries = Counter(
            "tongban_region_retries_total",
            "Retries granted, by the reason of the failure retried.",
            ("region", "reason"),
            registry=r,
        )
        self.budget_exhausted = Counter(
            "tongban_region_retry_budget_exhausted_total",
            "Retries refused because the province's retry budget was spent.",
            ("region",),
            registry=r,
        )
        self.pushback = Counter(
            "tongban_region_pushback_total",
            "Failures where the province said when (or whether) to retry; honoured.",
            ("region",),
            registry=r,
        )
        self.breaker_state = Gauge(
            "tongban_region_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            ("region",),
            registry=r,
        )
        self.breaker_transitions = Counter(
            "tongban_region_breaker_transitions_total",
            "Breaker transitions, by the state entered.",
            ("region", "state"),
            registry=r,
        )
        self.deliveries = Counter(
            "tongban_deliveries_total",
            "Delivery calls by outcome: delivered, queued (try later), failed (refused).",
            ("region", "outcome"),
            registry=r,
        )
        # -- store-and-forward ------------------------------------------------------------
        self.queue_depth = Gauge(
            "tongban_queue_depth", "Applications awaiting delivery.", registry=r
        )
        self.queue_oldest_age = Gauge(
            "tongban_queue_oldest_age_seconds",
            "Age of the oldest application awaiting delivery (0 when none).",
            registry=r,
        )
        self.replays = Counter(
            "tongban_submission_replays_total",
            "Submissions answered from the store because their request_id was seen before.",
            registry=r,
        )
        self.store_transactions = Counter(
            "tongban_store_transactions_total",
            "Write transactions the store committed (one fsync each).",
            registry=r,
        )
        self.store_writes = Counter(
            "tongban_store_writes_total",
            "Writes the store committed; writes ÷ transactions is the group-commit batch size.",
            registry=r,
        )
        self._store_seen = (0, 0)
        # -- catalog ----------------------------------------------------------------------
        self.catalog_loaded = Gauge(
            "tongban_catalog_loaded", "1 when a catalog version is in force.", registry=r
        )
        self.catalog_version = Gauge(
            "tongban_catalog_version_info",
            "The catalog version in force (value 1).",
            ("version",),
            registry=r,
        )
        self.catalog_activation = Gauge(
            "tongban_catalog_activation_timestamp_seconds",
            "Unix time the catalog version in force was published (activated).",
            registry=r,
        )
        self.publications = Counter(
            "tongban_catalog_publications_total",
            "Catalog and implementation-list publications by result.",
            ("kind", "result"),
            registry=r,
        )
        self.resolutions = Counter(
            "tongban_catalog_resolutions_total",
            "Local-code resolutions by result: resolved, or the error's reason.",
            ("result",),
            registry=r,
        )
        # -- licences -----------------------------------------------------------------------
        self.verifications = Counter(
            "tongban_license_verifications_total",
            "E-licence verifications by verdict.",
            ("verdict",),
            registry=r,
        )
        # -- bundles (一件事) ----------------------------------------------------------------
        self.bundles_submitted = Counter(
            "tongban_bundles_submitted_total",
            "Bundles accepted and committed, by theme.",
            ("theme",),
            registry=r,
        )
        self.bundles_in_progress = Gauge(
            "tongban_bundles_in_progress",
            "Bundles with a member not ended yet, by theme (as last derived).",
            ("theme",),
            registry=r,
        )
        self.bundles_overdue = Gauge(
            "tongban_bundles_overdue",
            "Bundles in progress past the theme's promised time limit, by theme.",
            ("theme",),
            registry=r,
        )
        self.bundle_members_overdue = Gauge(
            "tongban_bundle_members_overdue",
            "Members of bundles in progress past their matter's promised time limit and not "
            "ended, by theme (as their bundles last remembered them).",
            ("theme",),
            registry=r,
        )
        self.flows_refused = Counter(
            "tongban_bundle_flows_refused_total",
            "Licences that did not reach a bundle member, by reason (outside the consent, "
            "not issued, not found, not valid).",
            ("reason",),
            registry=r,
        )
        self.ratings = Histogram(
            "tongban_bundle_rating_score",
            "Applicants' ratings (好差评, 1 to 5) of finished bundles, by theme and rated "
            "province (`all`: the whole bundle).",
            ("theme", "region"),
            buckets=(1, 2, 3, 4, 5),
            registry=r,
        )
        self._themes_seen: set[str] = set()
        # -- working-day calendar -----------------------------------------------------------
        self.workday_calendar_last_day = Gauge(
            "tongban_workday_calendar_last_day_timestamp_seconds",
            "Unix time of the start (China time) of the last day the working-day calendar covers.",
            registry=r,
        )
        # -- build --------------------------------------------------------------------------
        Gauge(
            "tongban_build_info",
            "Build of the running gateway (value 1).",
            ("version", "revision", "python"),
            registry=r,
        ).labels(build.version, build.revision, platform.python_version()).set(1)

        self._rpc_children: dict[str, _RpcChildren] = {}
        self._region_children: dict[str, _RegionChildren] = {}
        self._call_children: dict[tuple[str, str], Any] = {}
        self._result_children: dict[tuple[str, str, str], Any] = {}
        self._current_version: str | None = None
        self._resolution_children = {r: self.resolutions.labels(r) for r in RESOLVE_RESULTS}
        self._verdict_children = {v.name: self.verifications.labels(v.name) for v in Verdict}
        self._publication_children = {
            (kind, result): self.publications.labels(kind, result)
            for kind in ("version", "region")
            for result in ("activated", "rejected")
        }

    # -- labels ------------------------------------------------------------------------------

    def region_label(self, region_code: str) -> str:
        """The province's label: its code when it is a known province, else `other`."""
        return region_code if region_code in self.regions else OTHER_REGION

    def rpc(self, full_method: str, grpc_type: str) -> _RpcChildren:
        """The cached children of one RPC (`/pkg.Service/Method`)."""
        children = self._rpc_children.get(full_method)
        if children is None:
            service, method = split_method(full_method)
            children = _RpcChildren(self, grpc_type, service, method)
            self._rpc_children[full_method] = children
        return children

    def unknown_rpc(self) -> _RpcChildren:
        """The children counting RPCs to methods the server does not have."""
        return self.rpc("/unknown/unknown", "unary")

    def region(self, region_code: str) -> _RegionChildren:
        """The cached children of one province."""
        label = self.region_label(region_code)
        children = self._region_children.get(label)
        if children is None:
            children = _RegionChildren(self, label)
            self._region_children[label] = children
        return children

    # -- southbound ---------------------------------------------------------------------------

    def observe_region_call(
        self, region_code: str, method: str, code: grpc.StatusCode, seconds: float
    ) -> None:
        """One call to a province finished with `code` after `seconds`."""
        region = self.region_label(region_code)
        key = (region, method)
        child = self._call_children.get(key)
        if child is None:
            child = self._call_children[key] = self.region_call.labels(region, method)
        child.observe(seconds)
        name = CODE_NAMES.get(code, "Unknown")
        rkey = (region, method, name)
        counter = self._result_children.get(rkey)
        if counter is None:
            counter = self._result_children[rkey] = self.region_call_results.labels(*rkey)
        counter.inc()

    def on_breaker_change(self, region_code: str, old: int, new: int) -> None:
        """A province's breaker changed state."""
        children = self.region(region_code)
        children.breaker_state.set(new)
        children.transitions[new].inc()

    # -- listening ----------------------------------------------------------------------------

    def listen(self, bus: EventBus) -> None:
        """Counts and times what the domain emits."""
        region = self.region
        bus.subscribe(AttemptStarted, lambda e: region(e.region_code).attempts.inc())
        bus.subscribe(RetryGranted, self._on_retry)
        bus.subscribe(RetryBudgetExhausted, lambda e: region(e.region_code).budget_exhausted.inc())
        bus.subscribe(PushbackHonoured, lambda e: region(e.region_code).pushback.inc())
        bus.subscribe(DeliveryFinished, self._on_delivery)
        bus.subscribe(RegionCallFinished, self._on_region_call)
        bus.subscribe(BreakerChanged, lambda e: self.on_breaker_change(e.region_code, e.old, e.new))
        bus.subscribe(CodeResolved, lambda e: self.count_resolution(e.result))
        bus.subscribe(LicenseVerified, lambda e: self.count_verdict(e.verdict))
        bus.subscribe(CatalogPublished, lambda e: self.count_publication(e.kind, e.activated))
        bus.subscribe(SubmissionAnswered, self._on_answered)
        bus.subscribe(
            BundleSubmitted, lambda e: self.bundles_submitted.labels(e.bundle.theme_code).inc()
        )
        bus.subscribe(FlowRefused, lambda e: self.flows_refused.labels(e.reason).inc())
        bus.subscribe(BundleRated, self._on_rated)

    def _on_rated(self, event: BundleRated) -> None:
        region = self.region_label(event.region_code) if event.region_code else "all"
        self.ratings.labels(event.theme_code, region).observe(event.score)

    def set_members_overdue(self, counts: Mapping[str, int]) -> None:
        """Overdue members per theme; a theme no longer counted reads 0."""
        for theme in self._themes_seen | set(counts):
            self.bundle_members_overdue.labels(theme).set(counts.get(theme, 0))
        self._themes_seen |= set(counts)

    def set_bundle_stats(self, rows: Iterable[tuple[str, int, int]]) -> None:
        """Bundles in progress and overdue per theme (`Store.bundle_stats`); a theme no
        longer listed reads 0."""
        seen: set[str] = set()
        for theme, count, overdue in rows:
            seen.add(theme)
            self.bundles_in_progress.labels(theme).set(count)
            self.bundles_overdue.labels(theme).set(overdue)
        for theme in self._themes_seen - seen:
            self.bundles_in_progress.labels(theme).set(0)
            self.bundles_overdue.labels(theme).set(0)
        self._themes_seen |= seen

    def _on_retry(self, event: RetryGranted) -> None:
        counter = self.region(event.region_code).retries.get(event.reason)
        if counter is not None:
            counter.inc()

    def _on_delivery(self, event: DeliveryFinished) -> None:
        children = self.region(event.region_code)
        children.calls.inc()
        name = _STATE_OUTCOME.get(event.state)
        if name is not None:
            children.outcomes[name].inc()
        # Attempts and the backoff between them: time awaiting the province, added once.
        self.add_southbound(event.seconds)

    def _on_region_call(self, event: RegionCallFinished) -> None:
        code = _CODE_BY_NAME.get(event.code, grpc.StatusCode.UNKNOWN)
        self.observe_region_call(event.region_code, event.method, code, event.seconds)
        if event.method != "DeliverApplication":  # delivery time is added by its call
            self.add_southbound(event.seconds)

    def _on_answered(self, event: SubmissionAnswered) -> None:
        if event.replayed:
            self.replays.inc()

    # -- catalog and licences ---------------------------------------------------------------

    def observe_store(self, transactions: int, writes: int) -> None:
        """Advances the store counters to the store's own running totals."""
        seen_transactions, seen_writes = self._store_seen
        self.store_transactions.inc(max(0, transactions - seen_transactions))
        self.store_writes.inc(max(0, writes - seen_writes))
        self._store_seen = (transactions, writes)

    def set_catalog(self, version: str | None, activated_at: float | None) -> None:
        """The catalog version in force (None: none is)."""
        self.catalog_loaded.set(1 if version is not None else 0)
        if version != self._current_version:
            if self._current_version is not None:
                self.catalog_version.remove(self._current_version)
            if version is not None:
                self.catalog_version.labels(version).set(1)
            self._current_version = version
        self.catalog_activation.set(activated_at or 0.0)

    def set_workday_calendar(self, last_day: date) -> None:
        """The last day the official working-day calendar covers (deadlines beyond it are
        provisional)."""
        start = datetime(last_day.year, last_day.month, last_day.day, tzinfo=CHINA_TIME)
        self.workday_calendar_last_day.set(start.timestamp())

    def count_resolution(self, result: str) -> None:
        """A resolution ended with `result`: `resolved` or an error's reason."""
        children = self._resolution_children
        (children.get(result) or children["other"]).inc()

    def count_verdict(self, verdict: str) -> None:
        """A licence verification ended with `verdict` (a `Verdict` name)."""
        child = self._verdict_children.get(verdict)
        if child is None:  # a verdict added later: still one bounded value per enum member
            child = self._verdict_children[verdict] = self.verifications.labels(verdict)
        child.inc()

    def count_publication(self, kind: str, activated: bool) -> None:
        """A publication of `kind` (`version` or `region`) was activated or rejected."""
        self._publication_children[(kind, "activated" if activated else "rejected")].inc()

    # -- time awaiting provinces --------------------------------------------------------------

    def start_rpc_clock(self) -> contextvars.Token[list[float] | None]:
        """Starts counting southbound time for the RPC running in this context."""
        return _southbound.set([0.0])

    def stop_rpc_clock(self, token: contextvars.Token[list[float] | None]) -> float:
        """Stops counting; returns the southbound seconds of the RPC."""
        spent = _southbound.get()
        _southbound.reset(token)
        return spent[0] if spent else 0.0

    def add_southbound(self, seconds: float) -> None:
        """Adds southbound time to the RPC running in this context (if any)."""
        spent = _southbound.get()
        if spent is not None:
            spent[0] += seconds


class _RpcChildren:
    """The labelled children of one RPC, built once."""

    __slots__ = ("codes", "handling", "method", "metrics", "overhead", "started", "type")

    def __init__(self, metrics: Metrics, grpc_type: str, service: str, method: str) -> None:
        self.metrics = metrics
        self.type = grpc_type
        self.method = method
        self.started = metrics.started.labels(grpc_type, service, method)
        self.handling = metrics.handling.labels(grpc_type, service, method)
        self.overhead = metrics.overhead.labels(method)
        handled = metrics.handled
        self.codes = {
            code: handled.labels(grpc_type, service, method, name)
            for code, name in CODE_NAMES.items()
        }


class _RegionChildren:
    """The labelled children of one province, built once."""

    __slots__ = (
        "attempts",
        "breaker_state",
        "budget_exhausted",
        "calls",
        "outcomes",
        "pushback",
        "retries",
        "transitions",
    )

    def __init__(self, metrics: Metrics, region: str) -> None:
        self.calls = metrics.delivery_calls.labels(region)
        self.attempts = metrics.delivery_attempts.labels(region)
        self.retries = {reason: metrics.retries.labels(region, reason) for reason in REASONS}
        self.budget_exhausted = metrics.budget_exhausted.labels(region)
        self.pushback = metrics.pushback.labels(region)
        self.breaker_state = metrics.breaker_state.labels(region)
        self.transitions = [
            metrics.breaker_transitions.labels(region, state) for state in BREAKER_STATES
        ]
        self.outcomes = {o: metrics.deliveries.labels(region, o) for o in DELIVERY_OUTCOMES}


def split_method(full_method: str) -> tuple[str, str]:
    """`/gateway.api.v1.ApplicationService/SubmitApplication` → (service, method)."""
    _, _, rest = full_method.partition("/")
    service, sep, method = rest.partition("/")
    if not sep or not service or not method:
        return UNKNOWN, UNKNOWN
    return service, method


class CacheCollector(Collector):
    """Reads the licence caches' counters and ages at scrape time (they only grow)."""

    def __init__(
        self,
        keys: Any,
        status_lists: Any,
        regions: Callable[[], Iterable[str]],
        region_label: Callable[[str], str],
    ) -> None:
        self._keys = keys
        self._status_lists = status_lists
        self._regions = regions
        self._label = region_label

    def collect(self) -> Iterator[Metric]:
        for name, cache in (("key", self._keys), ("status_list", self._status_lists)):
            stats = cache.stats
            fetches = CounterMetricFamily(
                f"tongban_license_{name}_fetches",
                f"Licence {name.replace('_', ' ')} fetches started.",
            )
            fetches.add_metric([], stats.fetches)
            failures = CounterMetricFamily(
                f"tongban_license_{name}_fetch_failures",
                f"Licence {name.replace('_', ' ')} fetches that failed.",
            )
            failures.add_metric([], stats.fetch_failures)
            age = GaugeMetricFamily(
                f"tongban_license_{name}_cache_age_seconds",
                f"Seconds since the province's licence {name.replace('_', ' ')} was fetched.",
                labels=["region"],
            )
            for region in sorted(self._regions()):
                seconds = cache.age_seconds(region)
                if seconds is not None:
                    age.add_metric([self._label(region)], seconds)
            yield fetches
            yield failures
            yield age

    def describe(self) -> Iterator[Metric]:
        return iter(())


__all__ = [
    "CODE_NAMES",
    "LATENCY_BUCKETS",
    "BuildInfo",
    "CacheCollector",
    "Metrics",
    "MetricsHttp",
    "process_registry",
    "serve_metrics",
]
