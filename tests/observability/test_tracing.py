"""Tracing across the hop: a platform's trace runs through a real gateway into real region stubs
(in this process, so that one in-memory exporter holds every span), and nothing is traced when
tracing is off."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from conftest import STANDARDS, eventually, gateway_config, rich_error
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway.api.v1 import application_pb2 as pb
from gateway.api.v1 import application_pb2_grpc
from gateway.app.config import ConfigError, load_config
from gateway.app.server import RunningGateway, running_gateway
from gateway.observability.tracing import client_interceptors
from region_stubs.admin.v1 import admin_pb2
from region_stubs.config import StubConfig
from region_stubs.faults import Faults, Outcome, decide
from region_stubs.server import RunningStub, running_stub

ORIGIN, TARGET = "440000", "510000"
LOCAL_CODE = "11440000MBFYX5N41F2002035011000"  # 广东's code for 异地就医结算备案
ID_CARD = "11100000000013127D001"  # 居民身份证, which may stand in for material M01
CITIZEN = "110105199003071239"
NAME = "张三"
LICENCE_NUMBER = "440305199003071239"
FORM_VALUES = ("成都", "13800000000")
PERSONAL = (CITIZEN, NAME, LICENCE_NUMBER, *FORM_VALUES)

SUBMIT = "/gateway.api.v1.ApplicationService/SubmitApplication"
DELIVER = "/gateway.api.v1.RegionService/DeliverApplication"
KEYS = "/gateway.api.v1.RegionService/GetLicenseKeys"


@dataclass
class Federation:
    gateway: RunningGateway
    stubs: dict[str, RunningStub]
    platform: application_pb2_grpc.ApplicationServiceStub
    """The origin platform's client, traced with the same provider."""


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@contextlib.asynccontextmanager
async def federation(
    data_dir: Path, provider: TracerProvider, *, tracing: bool
) -> AsyncIterator[Federation]:
    """A gateway and the stubs of 广东 (origin, licence issuer) and 四川 (target), all with
    `tracing` and spans to `provider`; the platform's channel always traced."""
    async with contextlib.AsyncExitStack() as stack:
        gateway = await stack.enter_async_context(
            running_gateway(gateway_config(data_dir, tracing=tracing), tracer_provider=provider)
        )
        stubs: dict[str, RunningStub] = {}
        for code in (ORIGIN, TARGET):
            stubs[code] = await stack.enter_async_context(
                running_stub(
                    StubConfig(
                        region_code=code,
                        implementation_list=STANDARDS / "implementations" / f"{code}.json",
                        gateway_address=gateway.address,
                        grace=0.5,
                        tracing=tracing,
                    ),
                    tracer_provider=provider,
                )
            )
            gateway.client.set_endpoint(code, stubs[code].address)
        channel = await stack.enter_async_context(
            grpc.aio.insecure_channel(gateway.address, interceptors=client_interceptors(provider))
        )
        yield Federation(gateway, stubs, application_pb2_grpc.ApplicationServiceStub(channel))


async def submission(stubs: dict[str, RunningStub], request_id: str) -> pb.SubmitApplicationRequest:
    """异地就医结算备案 with an e-licence from 广东 for M01 and paper for M03."""
    issued = await stubs[ORIGIN].admin.IssueLicense(
        admin_pb2.IssueLicenseRequest(
            license_type_code=ID_CARD,
            license_number=LICENCE_NUMBER,
            holder_id_type=pb.ID_TYPE_CITIZEN_ID,
            holder_id_number=CITIZEN,
        )
    )
    return pb.SubmitApplicationRequest(
        request_id=request_id,
        origin_region=ORIGIN,
        target_region=TARGET,
        local_matter_code=LOCAL_CODE,
        applicant=pb.Applicant(id_type=pb.ID_TYPE_CITIZEN_ID, id_number=CITIZEN, display_name=NAME),
        form_fields=[
            pb.FormField(key="destination_city", value=FORM_VALUES[0]),
            pb.FormField(key="phone", value=FORM_VALUES[1]),
        ],
        materials=[
            pb.Material(material_id="M01", license_token=issued.token),
            pb.Material(material_id="M03", paper=pb.PaperMaterial(description="备案登记表")),
        ],
    )


def first_fails_then_proceeds(faults: Faults) -> int:
    """A seed under which a stub with `faults` fails its first delivery and takes the second."""
    for seed in range(1000):
        rng = random.Random(seed)
        if [decide(faults, rng).outcome for _ in range(2)] == [
            Outcome.FAIL_BEFORE,
            Outcome.PROCEED,
        ]:
            return seed
    raise AssertionError("no seed fails once, then proceeds")


def children(all_spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [
        s for s in all_spans if s.parent is not None and s.parent.span_id == parent.context.span_id
    ]


def only(found: list[ReadableSpan], what: str) -> ReadableSpan:
    assert len(found) == 1, f"{what}: {[s.name for s in found]}"
    return found[0]


def texts(span: ReadableSpan) -> list[str]:
    """Every text a span carries: name, status, attributes, events' names and attributes."""
    values = [span.name, span.status.description or ""]
    values += [str(v) for v in (span.attributes or {}).values()]
    for event in span.events:
        values.append(event.name)
        values += [str(v) for v in (event.attributes or {}).values()]
    return values


async def test_one_trace_runs_from_the_platform_through_the_gateway_into_the_province(
    tmp_path: Path, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    async with federation(tmp_path, provider, tracing=True) as world:
        faults = Faults(unavailable_fraction=0.5)
        await world.stubs[TARGET].set_faults(faults, seed=first_fails_then_proceeds(faults))
        request = await submission(world.stubs, "traced-1")
        answer = await world.platform.SubmitApplication(request, timeout=10)
        assert answer.application.state == pb.APPLICATION_STATE_DELIVERED
        assert answer.application.delivery_attempts == 2

        def platform_span_ended() -> bool:
            return any(
                s.name == SUBMIT and s.kind is SpanKind.CLIENT
                for s in exporter.get_finished_spans()
            )

        await eventually(platform_span_ended, within=5, what="the platform's span ends")
    finished = list(exporter.get_finished_spans())

    platform = only(
        [s for s in finished if s.name == SUBMIT and s.kind is SpanKind.CLIENT], "platform"
    )
    assert platform.parent is None
    assert platform.context is not None
    trace_id = platform.context.trace_id
    server = only(children(finished, platform), "the gateway's server span")
    assert (server.name, server.kind) == (SUBMIT, SpanKind.SERVER)
    attributes = server.attributes or {}
    assert attributes["tongban.application_id"] == answer.application.application_id
    assert attributes["tongban.state"] == "APPLICATION_STATE_DELIVERED"
    assert attributes["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]

    steps = {s.name: s for s in children(finished, server) if s.kind is SpanKind.INTERNAL}
    assert set(steps) == {"resolve local code", "verify licence", "commit application", "deliver"}
    assert (steps["resolve local code"].attributes or {})["tongban.result"] == "resolved"
    assert (steps["verify licence"].attributes or {})["tongban.verdict"] == "VALID"
    assert (steps["deliver"].attributes or {})["tongban.state"] == "DELIVERED"
    for step in steps.values():
        within = (server.start_time or 0, server.end_time or 0)
        assert within[0] <= (step.start_time or 0) <= (step.end_time or 0) <= within[1]

    attempts = sorted(
        children(finished, steps["deliver"]),
        key=lambda s: str((s.attributes or {})["tongban.attempt"]),
    )
    assert [s.name for s in attempts] == ["delivery attempt", "delivery attempt"]
    assert [(s.attributes or {})["tongban.attempt"] for s in attempts] == [1, 2]
    assert [(s.attributes or {})["tongban.code"] for s in attempts] == ["UNAVAILABLE", "OK"]
    assert [s.status.status_code for s in attempts] == [StatusCode.ERROR, StatusCode.UNSET]
    province_codes = []
    for attempt in attempts:
        call = only(children(finished, attempt), "the attempt's southbound call")
        assert (call.name, call.kind) == (DELIVER, SpanKind.CLIENT)
        at_province = only(children(finished, call), "the province's server span")
        assert (at_province.name, at_province.kind) == (DELIVER, SpanKind.SERVER)
        province_codes.append((at_province.attributes or {})["rpc.grpc.status_code"])
    assert province_codes == [grpc.StatusCode.UNAVAILABLE.value[0], grpc.StatusCode.OK.value[0]]

    # The licence's key fetch from the issuing province is in the same trace.
    assert any(
        s.name == KEYS and s.kind is SpanKind.SERVER and s.context.trace_id == trace_id
        for s in finished
        if s.context is not None
    )
    in_trace = [s for s in finished if s.context is not None and s.context.trace_id == trace_id]
    assert len(in_trace) >= 1 + 1 + 4 + 2 * 3
    for span in finished:
        for text in texts(span):
            assert not any(value in text for value in PERSONAL), (span.name, text)


async def test_a_refused_submission_is_the_callers_error_on_the_server_span(
    tmp_path: Path, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    async with federation(tmp_path, provider, tracing=True) as world:
        request = await submission(world.stubs, "refused-1")
        request.local_matter_code = "11440000MBFYX5N41F2999999999000"
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await world.platform.SubmitApplication(request, timeout=10)
        reason = rich_error(refused.value)[0].reason

        def server_span_ended() -> bool:
            return any(
                s.name == SUBMIT and s.kind is SpanKind.SERVER
                for s in exporter.get_finished_spans()
            )

        await eventually(server_span_ended, within=5, what="the server span ends")
    server = only(
        [
            s
            for s in exporter.get_finished_spans()
            if s.name == SUBMIT and s.kind is SpanKind.SERVER
        ],
        "server",
    )
    attributes = server.attributes or {}
    assert attributes["rpc.grpc.status_code"] == refused.value.code().value[0]
    assert attributes["tongban.reason"] == reason
    assert server.status.status_code is StatusCode.UNSET  # the caller's mistake, not a failure
    resolution = only(
        [s for s in children(list(exporter.get_finished_spans()), server)], "the resolution"
    )
    assert resolution.status.status_code is StatusCode.ERROR


async def test_with_tracing_off_the_gateway_and_the_provinces_make_no_span(
    tmp_path: Path, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    async with federation(tmp_path, provider, tracing=False) as world:
        request = await submission(world.stubs, "untraced-1")
        answer = await world.platform.SubmitApplication(request, timeout=10)
        assert answer.application.state == pb.APPLICATION_STATE_DELIVERED
        assert world.gateway.server is not None

        def platform_span_ended() -> bool:
            return bool(exporter.get_finished_spans())

        await eventually(platform_span_ended, within=5, what="the platform's span ends")
    # The platform traced its call and sent `traceparent`; nobody continued it.
    assert [(s.name, s.kind) for s in exporter.get_finished_spans()] == [(SUBMIT, SpanKind.CLIENT)]


def test_one_setting_turns_tracing_on_for_the_gateway_and_the_stubs() -> None:
    insecure = {"TONGBAN_INSECURE": "true"}
    assert load_config(insecure).tracing is False
    assert load_config({**insecure, "TONGBAN_TRACING": "true"}).tracing is True
    with pytest.raises(ConfigError, match="TONGBAN_TRACING"):
        load_config({**insecure, "TONGBAN_TRACING": "sometimes"})
    stub = {"TONGBAN_STUB_REGION": ORIGIN}
    assert StubConfig.from_mapping(stub).tracing is False
    assert StubConfig.from_mapping({**stub, "TONGBAN_TRACING": "true"}).tracing is True
