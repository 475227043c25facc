"""Metrics after real traffic: a real gateway, real stubs, the gateway's own registry."""

from __future__ import annotations

import asyncio
import platform
import subprocess
import urllib.request
from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest
from conftest import World, eventually, start_world
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry
from traffic import CITIZEN, NAME, ORIGIN, TARGET, submission

from gateway.api.v1 import application_pb2 as pb
from gateway.api.v1 import catalog_pb2, license_pb2
from gateway.applications.deadlines import CHINA_TIME, calendar_last_day
from gateway.errors import InvalidRequest
from gateway.observability.metrics import (
    CODE_NAMES,
    OTHER_REGION,
    BuildInfo,
    Metrics,
    source_revision,
    split_method,
)
from gateway.observability.rpc_metrics import MetricsInterceptor
from region_stubs.admin.v1 import admin_pb2
from region_stubs.faults import Faults

APPS = "gateway.api.v1.ApplicationService"
SUBMIT = f"/{APPS}/SubmitApplication"


def value(world: World, name: str, **labels: str) -> float:
    """A sample's value, 0 when absent."""
    registry = world.gateway.metrics.registry
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def handled(world: World, method: str, code: str) -> float:
    return value(
        world,
        "grpc_server_handled_total",
        grpc_type="unary",
        grpc_service=APPS,
        grpc_method=method,
        grpc_code=code,
    )


async def test_handled_total_counts_each_code_once(world: World) -> None:
    for i in range(2):
        response = await world.applications.SubmitApplication(submission(world, f"ok-{i}"))
        assert response.application.state == pb.APPLICATION_STATE_DELIVERED
    replay = await world.applications.SubmitApplication(submission(world, "ok-0"))
    assert replay.replayed
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await world.applications.SubmitApplication(
            submission(world, "bad", local_matter_code="NO-SUCH-CODE")
        )
    assert bad.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await world.applications.GetApplication(pb.GetApplicationRequest(name="nope"))
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    unknown = world.channel.unary_unary("/no.such.Service/Nothing")
    with pytest.raises(grpc.aio.AioRpcError) as unimplemented:
        await unknown(b"")
    assert unimplemented.value.code() == grpc.StatusCode.UNIMPLEMENTED

    assert handled(world, "SubmitApplication", "OK") == 3
    assert handled(world, "SubmitApplication", "NotFound") == 1
    assert handled(world, "GetApplication", "InvalidArgument") == 1
    started = value(
        world,
        "grpc_server_started_total",
        grpc_type="unary",
        grpc_service=APPS,
        grpc_method="SubmitApplication",
    )
    assert started == 4
    assert (
        value(
            world,
            "grpc_server_handled_total",
            grpc_type="unary",
            grpc_service="unknown",
            grpc_method="unknown",
            grpc_code="Unimplemented",
        )
        == 1
    )
    count = value(
        world,
        "grpc_server_handling_seconds_count",
        grpc_type="unary",
        grpc_service=APPS,
        grpc_method="SubmitApplication",
    )
    assert count == 4
    assert value(world, "tongban_submission_replays_total") == 1
    # the replay resolves too: its request id is found at the claim, after the build
    assert value(world, "tongban_catalog_resolutions_total", result="resolved") == 3
    assert value(world, "tongban_catalog_resolutions_total", result="LOCAL_CODE_NOT_FOUND") == 1
    assert value(world, "tongban_deliveries_total", region=TARGET, outcome="delivered") == 2
    assert value(world, "tongban_region_delivery_calls_total", region=TARGET) == 2
    assert value(world, "tongban_region_delivery_attempts_total", region=TARGET) == 2
    assert (
        value(
            world, "tongban_region_call_seconds_count", region=TARGET, method="DeliverApplication"
        )
        == 2
    )


async def test_every_label_value_is_bounded_and_no_personal_data(world: World) -> None:
    await world.applications.SubmitApplication(submission(world, "req-private"))
    with pytest.raises(grpc.aio.AioRpcError):
        await world.applications.SubmitApplication(
            submission(world, "req-bad", target_region="999999")
        )
    provinces = set(world.gateway.registry.snapshot.provinces)
    codes = set(CODE_NAMES.values())
    for family in world.gateway.metrics.registry.collect():
        for sample in family.samples:
            for label, label_value in sample.labels.items():
                assert CITIZEN not in label_value
                assert NAME not in label_value
                assert "req-" not in label_value, (sample.name, label)
                if label == "region":
                    assert label_value in provinces | {OTHER_REGION}
                if label == "grpc_code":
                    assert label_value in codes


async def test_southbound_retries_breaker_and_queue(tmp_path: Path) -> None:
    async with start_world(tmp_path, regions=(ORIGIN, TARGET)) as world:
        await world.stubs[TARGET].set_faults(Faults(down=True))
        for i in range(3):
            response = await world.applications.SubmitApplication(submission(world, f"down-{i}"))
            assert response.application.state == pb.APPLICATION_STATE_QUEUED
        calls = value(world, "tongban_region_delivery_calls_total", region=TARGET)
        attempts = value(world, "tongban_region_delivery_attempts_total", region=TARGET)
        assert calls >= 3
        assert attempts > calls
        assert value(world, "tongban_region_retries_total", region=TARGET, reason="unavailable") > 0
        assert value(world, "tongban_deliveries_total", region=TARGET, outcome="queued") >= 3
        assert value(world, "tongban_region_breaker_state", region=TARGET) == 2
        assert (
            value(world, "tongban_region_breaker_transitions_total", region=TARGET, state="open")
            >= 1
        )
        assert (
            value(
                world,
                "tongban_region_call_results_total",
                region=TARGET,
                method="DeliverApplication",
                grpc_code="Unavailable",
            )
            == attempts
        )
        await eventually(
            lambda: value(world, "tongban_queue_depth") >= 1,
            within=10,
            what="the queue gauge to see the queue",
        )
        assert value(world, "tongban_queue_oldest_age_seconds") >= 0
        # Every submission and delivery result was committed: group commit is visible.
        writes = value(world, "tongban_store_writes_total")
        assert writes >= value(world, "tongban_store_transactions_total") >= 1
        async with grpc.aio.insecure_channel(world.gateway.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)

            async def region_down() -> bool:
                answer = await health.Check(
                    health_pb2.HealthCheckRequest(service=f"tongban.region.{TARGET}")
                )
                return bool(answer.status == health_pb2.HealthCheckResponse.NOT_SERVING)

            await eventually(
                region_down, within=10, what="the province's health to follow its breaker"
            )
            for name in ("", "tongban.store", "tongban.catalog"):
                answer = await health.Check(health_pb2.HealthCheckRequest(service=name))
                assert answer.status == health_pb2.HealthCheckResponse.SERVING, name


async def test_overhead_excludes_the_provinces_time(tmp_path: Path) -> None:
    async with start_world(tmp_path, regions=(ORIGIN, TARGET)) as world:
        await world.stubs[TARGET].set_faults(Faults(latency_ms=300))
        for i in range(2):
            response = await world.applications.SubmitApplication(submission(world, f"slow-{i}"))
            assert response.application.state == pb.APPLICATION_STATE_DELIVERED
        labels = {"grpc_type": "unary", "grpc_service": APPS, "grpc_method": "SubmitApplication"}
        handling = value(world, "grpc_server_handling_seconds_sum", **labels)
        overhead = value(
            world, "tongban_gateway_overhead_seconds_sum", grpc_method="SubmitApplication"
        )
        # Each submission waited at least 0.3 s on the province; none of it is overhead.
        assert handling >= 0.6
        assert overhead <= handling - 0.6


async def test_licence_verdicts_and_cache_series(world: World) -> None:
    response = await world.licenses.VerifyLicense(
        license_pb2.VerifyLicenseRequest(token="not-a-token")
    )
    assert response.verdict == license_pb2.LICENSE_VERDICT_MALFORMED
    assert value(world, "tongban_license_verifications_total", verdict="MALFORMED") == 1
    assert value(world, "tongban_license_key_fetch_failures_total") == 0
    assert value(world, "tongban_license_status_list_fetch_failures_total") == 0
    assert (
        value(
            world,
            "tongban_build_info",
            version="0.1.0",
            revision=git_head(),
            python=platform.python_version(),
        )
        == 1
    )


async def test_metrics_and_probe_ports_serve(tmp_path: Path) -> None:
    async with start_world(tmp_path, metrics_port=0, health_port=0) as world:
        gateway = world.gateway
        assert gateway.metrics_port
        assert gateway.health_port
        await world.applications.SubmitApplication(submission(world, "scraped"))
        url = f"http://{gateway.config.host}:{gateway.metrics_port}/metrics"
        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(url, timeout=5).read().decode()
        )
        assert 'grpc_code="OK"' in body
        assert "process_resident_memory_bytes" in body
        assert "tongban_build_info" in body
        async with grpc.aio.insecure_channel(
            f"{gateway.config.host}:{gateway.health_port}"
        ) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for name in ("", "tongban.store", "tongban.catalog"):
                answer = await health.Check(health_pb2.HealthCheckRequest(service=name))
                assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_health_is_not_serving_before_the_server_stops(tmp_path: Path) -> None:
    ready = asyncio.Event()
    release = asyncio.Event()
    ports: list[str] = []

    async def run() -> None:
        async with start_world(tmp_path, regions=(), health_port=0, probe_interval=2.0) as world:
            ports.append(f"{world.gateway.config.host}:{world.gateway.health_port}")
            ready.set()
            await release.wait()

    task = asyncio.create_task(run())
    await asyncio.wait_for(ready.wait(), 30)
    async with grpc.aio.insecure_channel(ports[0]) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        before = await health.Check(health_pb2.HealthCheckRequest(service="tongban.store"))
        assert before.status == health_pb2.HealthCheckResponse.SERVING
        release.set()

        async def draining() -> bool:
            answer = await health.Check(health_pb2.HealthCheckRequest(service=""))
            return bool(answer.status == health_pb2.HealthCheckResponse.NOT_SERVING)

        await eventually(draining, within=20, what="NOT_SERVING during the probe interval")
        store = await health.Check(health_pb2.HealthCheckRequest(service="tongban.store"))
        assert store.status == health_pb2.HealthCheckResponse.NOT_SERVING
    await asyncio.wait_for(task, 30)


def test_labels_are_bounded_for_unknown_methods_and_regions() -> None:
    metrics = Metrics(
        CollectorRegistry(),
        regions={"440000"},
        build=BuildInfo("test"),
    )
    assert split_method("garbage") == ("unknown", "unknown")
    assert split_method("/a.B/C") == ("a.B", "C")
    assert metrics.region_label("440000") == "440000"
    assert metrics.region_label("110105199003071239") == OTHER_REGION
    metrics.count_resolution("SOMETHING_NEW")
    assert (
        metrics.registry.get_sample_value("tongban_catalog_resolutions_total", {"result": "other"})
        == 1
    )


def test_workday_calendar_end_is_the_start_of_its_last_day_in_china_time() -> None:
    metrics = Metrics(CollectorRegistry(), regions=(), build=BuildInfo("test"))
    metrics.set_workday_calendar(date(2026, 12, 31))
    # 2026-12-31 00:00 +08:00 is 2026-12-30 16:00 UTC.
    seconds = metrics.registry.get_sample_value(
        "tongban_workday_calendar_last_day_timestamp_seconds"
    )
    assert seconds == 1_798_646_400


async def test_the_gateway_exports_where_its_workday_calendar_ends(world: World) -> None:
    last = calendar_last_day()
    expected = datetime(last.year, last.month, last.day, tzinfo=CHINA_TIME).timestamp()
    assert value(world, "tongban_workday_calendar_last_day_timestamp_seconds") == expected


async def test_rejected_publication_is_counted(world: World) -> None:
    with pytest.raises(grpc.aio.AioRpcError):
        await world.catalog.PublishCatalogVersion(
            catalog_pb2.PublishCatalogVersionRequest(signed_document="not-a-jws")
        )
    assert (
        value(world, "tongban_catalog_publications_total", kind="version", result="rejected") == 1
    )
    assert (
        value(world, "tongban_catalog_publications_total", kind="version", result="activated") == 0
    )
    assert value(world, "tongban_catalog_loaded") == 1
    assert value(world, "tongban_catalog_version_info", version="2025.1") == 1


async def test_a_cancelled_stream_is_counted_as_canceled(tmp_path: Path) -> None:
    async with start_world(tmp_path, regions=(ORIGIN, TARGET)) as world:
        await world.stubs[TARGET].set_faults(Faults(down=True))
        queued = await world.applications.SubmitApplication(submission(world, "watched"))
        assert queued.application.state == pb.APPLICATION_STATE_QUEUED
        call = world.applications.WatchApplication(
            pb.WatchApplicationRequest(name=queued.application.name)
        )
        first = await call.read()
        assert first.application.application_id == queued.application.application_id
        call.cancel()
        labels = {
            "grpc_type": "server_stream",
            "grpc_service": APPS,
            "grpc_method": "WatchApplication",
        }
        await eventually(
            lambda: value(world, "grpc_server_handled_total", grpc_code="Canceled", **labels) == 1,
            within=10,
            what="the cancelled watch to be counted",
        )
        assert value(world, "grpc_server_started_total", **labels) == 1
        assert value(world, "grpc_server_handled_total", grpc_code="OK", **labels) == 0


def licence(region: str) -> admin_pb2.IssueLicenseRequest:
    return admin_pb2.IssueLicenseRequest(
        license_type_code="11100000MB0143028R001",
        license_number=f"{region[:2]}00001234567",
        holder_id_type=pb.ID_TYPE_USCC,
        holder_id_number="11440000MBDCGK306L",
        valid_days=30,
    )


async def test_licence_key_fetches_failures_and_cache_age(tmp_path: Path) -> None:
    async with start_world(tmp_path, regions=(ORIGIN, TARGET)) as world:
        good = await world.stubs[ORIGIN].admin.IssueLicense(licence(ORIGIN))
        verdict = await world.licenses.VerifyLicense(
            license_pb2.VerifyLicenseRequest(token=good.token)
        )
        assert verdict.verdict == license_pb2.LICENSE_VERDICT_VALID, verdict.detail
        assert value(world, "tongban_license_verifications_total", verdict="VALID") == 1
        assert value(world, "tongban_license_key_fetches_total") >= 1
        assert value(world, "tongban_license_key_cache_age_seconds", region=ORIGIN) >= 0
        assert (
            world.gateway.metrics.registry.get_sample_value(
                "tongban_license_key_cache_age_seconds", {"region": ORIGIN}
            )
            is not None
        )
        assert (
            value(
                world, "tongban_region_call_seconds_count", region=ORIGIN, method="GetLicenseKeys"
            )
            >= 1
        )

        await world.stubs[TARGET].set_faults(Faults(down=True))
        unreachable = await world.stubs[TARGET].admin.IssueLicense(licence(TARGET))
        verdict = await world.licenses.VerifyLicense(
            license_pb2.VerifyLicenseRequest(token=unreachable.token)
        )
        assert verdict.verdict != license_pb2.LICENSE_VERDICT_VALID
        assert value(world, "tongban_license_key_fetch_failures_total") >= 1
        labels = {"grpc_method": "VerifyLicense"}
        assert value(world, "tongban_gateway_overhead_seconds_count", **labels) == 2
        assert value(world, "tongban_gateway_overhead_seconds_sum", **labels) <= value(
            world,
            "grpc_server_handling_seconds_sum",
            grpc_type="unary",
            grpc_service="gateway.api.v1.LicenseService",
            **labels,
        )


async def test_pushback_is_counted_and_honoured(tmp_path: Path) -> None:
    async with start_world(tmp_path, regions=(ORIGIN, TARGET)) as world:
        await world.stubs[TARGET].set_faults(Faults(unavailable_fraction=1.0, pushback_ms=20))
        response = await world.applications.SubmitApplication(submission(world, "pushed"))
        assert response.application.state == pb.APPLICATION_STATE_QUEUED
        assert value(world, "tongban_region_pushback_total", region=TARGET) >= 1
        assert (
            value(world, "tongban_region_retries_total", region=TARGET, reason="unavailable") >= 1
        )


async def test_interceptor_tolerates_a_request_that_did_not_decode() -> None:
    metrics = Metrics(CollectorRegistry(), regions=(), build=BuildInfo("test"))
    interceptor = MetricsInterceptor(metrics)

    async def behavior(request: object, context: object) -> None:
        raise InvalidRequest("the request did not decode")

    async def continuation(details: object) -> grpc.RpcMethodHandler:
        # The method's request type has a request_id: the interceptor reads it for the log.
        return grpc.unary_unary_rpc_method_handler(
            behavior, request_deserializer=pb.SubmitApplicationRequest.FromString
        )

    class Context:
        def code(self) -> None:
            return None

    wrapped = await interceptor.intercept_service(continuation, SimpleNamespace(method=SUBMIT))
    assert wrapped is not None
    with pytest.raises(InvalidRequest):
        await wrapped.unary_unary(object(), Context())
    labels = {
        "grpc_type": "unary",
        "grpc_service": APPS,
        "grpc_method": "SubmitApplication",
        "grpc_code": "InvalidArgument",
    }
    assert metrics.registry.get_sample_value("grpc_server_handled_total", labels) == 1


def git_head() -> str:
    """The checkout's commit, as git names it."""
    root = Path(__file__).resolve().parents[2]
    return subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


async def test_build_info_carries_the_git_revision_it_was_started_from(
    world: World, tmp_path: Path
) -> None:
    head = git_head()
    assert len(head) == 12
    labels = {"version": BuildInfo.installed().version, "revision": head}
    labels["python"] = platform.python_version()
    assert value(world, "tongban_build_info", **labels) == 1
    assert source_revision(tmp_path) == "unknown"  # not a checkout: a label, never a guess
