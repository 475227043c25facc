"""A real stub on port 0, driven the way the gateway and the tests drive it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from gateway.api.v1 import application_pb2, application_pb2_grpc, region_pb2
from gateway.errors import build_status
from gateway.licenses.status_list import StatusList, decode_status_list
from region_stubs import server as stub_server
from region_stubs.admin.v1 import admin_pb2
from region_stubs.breaks import Break
from region_stubs.config import ConfigError, StubConfig, parse_args
from region_stubs.faults import Faults
from region_stubs.server import RunningStub, running_stub

REPO = Path(__file__).resolve().parents[2]
REGION = "440000"
LIVE_CODE = "11440000MBDCGK306L2000117112000"
SECOND_CODE = "11440000MBDCGK306L2000117113000"
RETIRED_CODE = "12440000005470677J2002035011000"


def write_list(path: Path, region_code: str, entries: list[dict[str, object]]) -> Path:
    """Writes a `tongban.region-catalog/v1` list with the given rows."""
    document = {
        "kind": "tongban.region-catalog/v1",
        "region_code": region_code,
        "region_name": "广东省",
        "dialect": "NATIONAL",
        "catalog_version": "2025.1",
        "entries": [
            {
                "national_codes": ["000117112000"],
                "local_name": "事项",
                "agency_name": "广东省市场监督管理局",
                "agency_code": "11440000MBDCGK306L",
                "cancel_date": None,
                **entry,
            }
            for entry in entries
        ],
    }
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def implementation_list(tmp_path: Path) -> Path:
    """Two live codes and one retired in 2024."""
    return write_list(
        tmp_path / f"{REGION}.json",
        REGION,
        [
            {"local_code": LIVE_CODE},
            {"local_code": SECOND_CODE, "cancel_date": "2999-12-31"},
            {"local_code": RETIRED_CODE, "cancel_date": "2024-06-30"},
        ],
    )


@pytest.fixture
def config(tmp_path: Path, implementation_list: Path) -> StubConfig:
    return StubConfig(
        region_code=REGION,
        implementation_list=implementation_list,
        data_dir=tmp_path / "data",
        seed=1,
        grace=0.2,
    )


@pytest.fixture
async def stub(config: StubConfig) -> AsyncIterator[RunningStub]:
    async with running_stub(config) as running:
        yield running


def delivery(
    application_id: str | None = None,
    *,
    code: str = LIVE_CODE,
    region: str = REGION,
    attempt: int = 1,
) -> region_pb2.DeliverApplicationRequest:
    """A delivery as the gateway would send it."""
    return region_pb2.DeliverApplicationRequest(
        application=application_pb2.Application(
            application_id=application_id or str(uuid.uuid4()),
            origin_region="510000",
            target_region=region,
            target_local_matter_code=code,
        ),
        attempt=attempt,
    )


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The one ErrorInfo of a failed call."""
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status in the trailers"
    infos = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    assert len(infos) == 1
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    return info


def field_violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """Field → reason of the BadRequest of a failed call."""
    status = rpc_status.from_call(error)
    assert status is not None
    found: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.update({v.field: v.reason for v in bad.field_violations})
    return found


# --- delivering -----------------------------------------------------------------------------


async def test_delivery_creates_a_case_and_a_repeat_returns_the_same_receipt(
    stub: RunningStub,
) -> None:
    request = delivery()
    first = await stub.region.DeliverApplication(request)
    second = await stub.region.DeliverApplication(replace_attempt(request, 2))

    assert first.receipt_id.startswith(f"{REGION}-")
    assert not first.duplicate
    assert second.duplicate
    assert (second.receipt_id, second.receive_time) == (first.receipt_id, first.receive_time)
    status = await stub.region.GetApplicationStatus(
        region_pb2.GetApplicationStatusRequest(application_id=request.application.application_id)
    )
    assert status.state == application_pb2.APPLICATION_STATE_DELIVERED
    assert status.receipt_id == first.receipt_id
    counters = await stub.counters()
    assert (counters.deliveries_received, counters.cases_created) == (2, 1)
    assert counters.duplicates_suppressed == 1
    assert counters.cases_by_matter == {LIVE_CODE: 1}


async def test_twenty_concurrent_deliveries_of_one_application_make_one_case(
    stub: RunningStub,
) -> None:
    request = delivery()
    answers = await asyncio.gather(*(stub.region.DeliverApplication(request) for _ in range(20)))
    assert sum(not a.duplicate for a in answers) == 1
    assert len({a.receipt_id for a in answers}) == 1
    counters = await stub.counters()
    assert (counters.cases_created, counters.duplicates_suppressed) == (1, 19)


async def test_cases_and_counters_survive_a_restart_on_the_same_data_dir(
    config: StubConfig,
) -> None:
    request = delivery(code=SECOND_CODE)
    async with running_stub(config) as first_run:
        receipt = (await first_run.region.DeliverApplication(request)).receipt_id
    async with running_stub(config) as second_run:
        again = await second_run.region.DeliverApplication(request)
        counters = await second_run.counters()
    assert again.duplicate
    assert again.receipt_id == receipt
    assert (counters.deliveries_received, counters.cases_created) == (2, 1)
    assert counters.cases_by_matter == {SECOND_CODE: 1}


@pytest.mark.parametrize("code", ["NO-SUCH-CODE", RETIRED_CODE])
async def test_an_unknown_or_retired_local_code_is_not_found(stub: RunningStub, code: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.region.DeliverApplication(delivery(code=code))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    info = error_info(caught.value)
    assert info.reason == "LOCAL_CODE_NOT_FOUND"
    assert info.domain == "tongban.gov.cn"
    assert info.metadata["retired"] == ("true" if code == RETIRED_CODE else "false")
    counters = await stub.counters()
    assert (counters.unknown_matter_refused, counters.cases_created) == (1, 0)


async def test_a_delivery_for_another_province_is_invalid(stub: RunningStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.region.DeliverApplication(delivery(region="510000"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "INVALID_REQUEST"
    assert field_violations(caught.value) == {"application.target_region": "WRONG_REGION"}


async def test_every_malformed_field_is_reported_at_once(stub: RunningStub) -> None:
    request = delivery("not-a-uuid", code="", attempt=0)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.region.DeliverApplication(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value) == {
        "application.application_id": "NOT_A_UUID",
        "application.target_local_matter_code": "REQUIRED",
        "attempt": "OUT_OF_RANGE",
    }
    assert (await stub.counters()).cases_created == 0


async def test_status_of_an_unknown_application_is_not_found(stub: RunningStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.region.GetApplicationStatus(
            region_pb2.GetApplicationStatusRequest(application_id=str(uuid.uuid4()))
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(caught.value).reason == "APPLICATION_NOT_FOUND"


# --- faults, as a client sees them ----------------------------------------------------------


async def test_injected_unavailable_carries_the_pushback_trailer(stub: RunningStub) -> None:
    await stub.set_faults(Faults(unavailable_fraction=1.0, pushback_ms=250))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.region.DeliverApplication(delivery())
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    trailers = dict(caught.value.trailing_metadata() or ())
    assert trailers["grpc-retry-pushback-ms"] == "250"
    assert error_info(caught.value).metadata["fault"] == "unavailable"
    counters = await stub.counters()
    assert (counters.cases_created, counters.faults_injected) == (0, 1)


async def test_without_pushback_no_trailer_is_sent(stub: RunningStub) -> None:
    await stub.set_faults(Faults(unavailable_fraction=1.0))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.region.DeliverApplication(delivery())
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "grpc-retry-pushback-ms" not in dict(caught.value.trailing_metadata() or ())


async def test_injected_resource_exhausted(stub: RunningStub) -> None:
    await stub.set_faults(Faults(resource_exhausted_fraction=1.0))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.region.DeliverApplication(delivery())
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(caught.value).reason == "RESOURCE_EXHAUSTED"
    assert (await stub.counters()).cases_created == 0


async def test_commit_then_drop_creates_the_case_and_a_retry_sees_a_duplicate(
    stub: RunningStub,
) -> None:
    request = delivery()
    await stub.set_faults(Faults(commit_then_drop_fraction=1.0))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.region.DeliverApplication(request)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert (await stub.counters()).cases_created == 1

    await stub.set_faults()
    retry = await stub.region.DeliverApplication(replace_attempt(request, 2))
    assert retry.duplicate
    counters = await stub.counters()
    assert (counters.cases_created, counters.duplicates_suppressed) == (1, 1)


async def test_hang_lasts_until_the_client_deadline(stub: RunningStub) -> None:
    await stub.set_faults(Faults(hang=True))
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.region.DeliverApplication(delivery(), timeout=0.3)
    elapsed = loop.time() - started
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.3 <= elapsed < 2.0
    assert (await stub.counters()).cases_created == 0


async def test_latency_delays_the_answer(stub: RunningStub) -> None:
    await stub.set_faults(Faults(latency_ms=200))
    loop = asyncio.get_running_loop()
    started = loop.time()
    answer = await stub.region.DeliverApplication(delivery())
    assert loop.time() - started >= 0.2
    assert not answer.duplicate
    assert (await stub.counters()).faults_injected == 0  # slow is not failed


async def test_latency_past_the_deadline_creates_no_case(stub: RunningStub) -> None:
    await stub.set_faults(Faults(latency_ms=500))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.region.DeliverApplication(delivery(), timeout=0.1)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # Had the attempt outlived its deadline, it would have recorded its case 0.5 s after it
    # began: look only once that moment has passed.
    await asyncio.sleep(0.6)
    counters = await stub.counters()
    assert (counters.deliveries_received, counters.cases_created) == (1, 0)


async def test_a_delivery_left_with_less_than_the_margin_is_refused_and_leaves_no_case(
    stub: RunningStub,
) -> None:
    # After 30 ms of latency a 33 ms attempt has about 3 ms left: less than the 5 ms a case
    # needs, so the stub refuses it, before its deadline (a stub that records it answers OK).
    await stub.set_faults(Faults(latency_ms=30))
    request = delivery()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.region.DeliverApplication(request, timeout=0.033)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.sleep(0.1)
    counters = await stub.counters()
    assert (counters.deliveries_received, counters.cases_created) == (1, 0)
    await stub.set_faults()
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub.region.GetApplicationStatus(
            region_pb2.GetApplicationStatusRequest(
                application_id=request.application.application_id
            )
        )
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_repeat_with_other_content_is_refused_and_changes_nothing(
    stub: RunningStub,
) -> None:
    request = delivery()
    first = await stub.region.DeliverApplication(request)
    changed = replace_attempt(request, 2)
    changed.application.applicant.display_name = "李四"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.region.DeliverApplication(changed)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(caught.value).reason == "APPLICATION_ID_REUSED"
    # Only what the gateway changes between attempts may differ: its update time.
    again = replace_attempt(request, 3)
    again.application.update_time.seconds += 60
    repeat = await stub.region.DeliverApplication(again)
    assert (repeat.receipt_id, repeat.duplicate) == (first.receipt_id, True)
    counters = await stub.counters()
    assert (counters.cases_created, counters.duplicates_suppressed) == (1, 1)


async def test_down_makes_every_region_call_unavailable_but_admin_still_answers(
    stub: RunningStub,
) -> None:
    delivered = delivery()
    await stub.region.DeliverApplication(delivered)
    await stub.set_faults(Faults(down=True))
    calls = [
        stub.region.DeliverApplication(delivery()),
        stub.region.GetApplicationStatus(
            region_pb2.GetApplicationStatusRequest(
                application_id=delivered.application.application_id
            )
        ),
        stub.region.GetLicenseKeys(region_pb2.GetLicenseKeysRequest()),
        stub.region.GetLicenseStatusList(region_pb2.GetLicenseStatusListRequest()),
        stub.region.FetchLicense(
            region_pb2.FetchLicenseRequest(
                license_type_code=BUSINESS_LICENCE,
                holder_id_type=application_pb2.ID_TYPE_USCC,
                holder_id_number=HOLDER,
                bundle=f"bundles/{uuid.uuid4()}",
                application=f"applications/{uuid.uuid4()}",
            )
        ),
        stub.region.WithdrawApplication(
            region_pb2.WithdrawApplicationRequest(
                application_id=delivered.application.application_id
            )
        ),
    ]
    assert len(calls) == len(region_pb2.DESCRIPTOR.services_by_name["RegionService"].methods)
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert error_info(caught.value).metadata["fault"] == "down"
    counters = await stub.counters()
    assert (counters.faults_injected, counters.cases_created) == (6, 1)
    assert (counters.licenses_fetched, counters.cases_withdrawn) == (0, 0)


async def test_a_fraction_is_roughly_honoured_and_every_fault_counted(stub: RunningStub) -> None:
    await stub.set_faults(Faults(unavailable_fraction=0.5), seed=42)
    sent = 200
    results = await asyncio.gather(
        *(stub.region.DeliverApplication(delivery()) for _ in range(sent)),
        return_exceptions=True,
    )
    failed = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert all(e.code() == grpc.StatusCode.UNAVAILABLE for e in failed)
    assert 60 <= len(failed) <= 140
    counters = await stub.counters()
    assert counters.deliveries_received == sent
    assert counters.faults_injected == len(failed)
    assert counters.cases_created == sent - len(failed)
    assert counters.duplicates_suppressed == 0


async def test_invalid_fault_settings_are_refused_and_the_old_ones_stay(
    stub: RunningStub,
) -> None:
    await stub.set_faults(Faults(resource_exhausted_fraction=1.0))
    bad = admin_pb2.FaultSettings(unavailable_fraction=2.0, latency_ms=-3)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.admin.SetFaults(admin_pb2.SetFaultsRequest(faults=bad))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value) == {
        "faults.unavailable_fraction": "FRACTION_OUT_OF_RANGE",
        "faults.latency_ms": "NEGATIVE_DURATION",
    }
    with pytest.raises(grpc.aio.AioRpcError) as still:
        await stub.region.DeliverApplication(delivery())
    assert still.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_a_seed_makes_fault_runs_reproducible(config: StubConfig) -> None:
    async def run() -> list[bool]:
        async with running_stub(replace(config, data_dir=None)) as fresh:
            await fresh.set_faults(Faults(unavailable_fraction=0.5), seed=9)
            outcome = []
            for _ in range(30):
                try:
                    await fresh.region.DeliverApplication(delivery())
                    outcome.append(True)
                except grpc.aio.AioRpcError:
                    outcome.append(False)
            return outcome

    first = await run()
    assert first == await run()
    assert 0 < sum(first) < 30


# --- case decisions reported to the gateway -------------------------------------------------


@dataclass
class FakeGateway(application_pb2_grpc.ApplicationServiceServicer):
    """The gateway's ApplicationService, as far as a province's report needs it."""

    reports: list[application_pb2.ReportApplicationStatusRequest] = field(default_factory=list)
    refuse_with: tuple[grpc.StatusCode, str] | None = None

    async def ReportApplicationStatus(
        self,
        request: application_pb2.ReportApplicationStatusRequest,
        context: grpc.aio.ServicerContext,
    ) -> application_pb2.ReportApplicationStatusResponse:
        if self.refuse_with is not None:
            code, reason = self.refuse_with
            await context.abort_with_status(
                rpc_status.to_status(build_status(code, reason, "refused"))
            )
        self.reports.append(request)
        return application_pb2.ReportApplicationStatusResponse(
            application=application_pb2.Application(name=request.name, state=request.state)
        )


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[FakeGateway, str]]:
    fake = FakeGateway()  # type: ignore[abstract]  # serves only ReportApplicationStatus
    server = grpc.aio.server()
    application_pb2_grpc.add_ApplicationServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield fake, f"127.0.0.1:{port}"
    await server.stop(0)


def decide_request(
    application_id: str, state: application_pb2.ApplicationState.ValueType, reason: str = ""
) -> admin_pb2.DecideCaseRequest:
    return admin_pb2.DecideCaseRequest(application_id=application_id, state=state, reason=reason)


async def test_decisions_are_reported_to_the_gateway_once_per_transition(
    config: StubConfig, gateway: tuple[FakeGateway, str]
) -> None:
    fake, address = gateway
    accepted = application_pb2.APPLICATION_STATE_ACCEPTED
    async with running_stub(replace(config, gateway_address=address)) as stub:
        request = delivery()
        application_id = request.application.application_id
        await stub.region.DeliverApplication(request)
        answer = await stub.admin.DecideCase(decide_request(application_id, accepted, "齐全"))
        repeat = await stub.admin.DecideCase(decide_request(application_id, accepted, "齐全"))
        done = await stub.admin.DecideCase(
            decide_request(application_id, application_pb2.APPLICATION_STATE_COMPLETED)
        )
        status = await stub.region.GetApplicationStatus(
            region_pb2.GetApplicationStatusRequest(application_id=application_id)
        )

    assert answer.gateway_state == repeat.gateway_state == accepted
    assert done.gateway_state == application_pb2.APPLICATION_STATE_COMPLETED
    first, again, last = fake.reports
    assert first.name == f"applications/{application_id}"
    assert first.region_code == REGION
    assert (first.state, first.reason) == (accepted, "齐全")
    assert first.event_id
    assert len(first.event_id) <= 64
    assert again.event_id == first.event_id  # a repeat is the same event, for the gateway too
    assert last.event_id != first.event_id
    assert status.state == application_pb2.APPLICATION_STATE_COMPLETED


async def test_a_forbidden_transition_fails_and_reports_nothing(
    config: StubConfig, gateway: tuple[FakeGateway, str]
) -> None:
    fake, address = gateway
    async with running_stub(replace(config, gateway_address=address)) as stub:
        request = delivery()
        await stub.region.DeliverApplication(request)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.admin.DecideCase(
                decide_request(
                    request.application.application_id, application_pb2.APPLICATION_STATE_COMPLETED
                )
            )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).reason == "INVALID_STATE_TRANSITION"
    assert fake.reports == []


async def test_the_gateways_refusal_is_relayed_with_its_reason(
    config: StubConfig, gateway: tuple[FakeGateway, str]
) -> None:
    fake, address = gateway
    fake.refuse_with = (grpc.StatusCode.FAILED_PRECONDITION, "APPLICATION_NOT_DELIVERED")
    async with running_stub(replace(config, gateway_address=address)) as stub:
        request = delivery()
        await stub.region.DeliverApplication(request)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.admin.DecideCase(
                decide_request(
                    request.application.application_id, application_pb2.APPLICATION_STATE_ACCEPTED
                )
            )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(caught.value)
    assert (info.reason, info.metadata["upstream"]) == ("APPLICATION_NOT_DELIVERED", "gateway")


async def test_an_unreachable_gateway_is_unavailable_and_a_retry_resends_the_event(
    config: StubConfig, gateway: tuple[FakeGateway, str], unused_tcp_port: int
) -> None:
    fake, address = gateway
    accepted = application_pb2.APPLICATION_STATE_ACCEPTED
    request = delivery()
    application_id = request.application.application_id
    async with running_stub(
        replace(config, gateway_address=f"127.0.0.1:{unused_tcp_port}")
    ) as stub:
        await stub.region.DeliverApplication(request)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.admin.DecideCase(decide_request(application_id, accepted), timeout=3)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(caught.value).metadata["upstream"] == "gateway"

    async with running_stub(replace(config, gateway_address=address)) as stub:
        retried = await stub.admin.DecideCase(decide_request(application_id, accepted))
    assert retried.gateway_state == accepted
    assert len(fake.reports) == 1


async def test_without_a_gateway_a_decision_only_moves_the_case(stub: RunningStub) -> None:
    request = delivery()
    application_id = request.application.application_id
    await stub.region.DeliverApplication(request)
    answer = await stub.admin.DecideCase(
        decide_request(application_id, application_pb2.APPLICATION_STATE_REJECTED, "材料不全")
    )
    status = await stub.region.GetApplicationStatus(
        region_pb2.GetApplicationStatusRequest(application_id=application_id)
    )
    assert answer.gateway_state == application_pb2.APPLICATION_STATE_UNSPECIFIED
    assert (status.state, status.reason) == (application_pb2.APPLICATION_STATE_REJECTED, "材料不全")


async def test_decide_case_validates_its_request(stub: RunningStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.admin.DecideCase(
            decide_request("nope", application_pb2.APPLICATION_STATE_DELIVERED, "x" * 501)
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value) == {
        "application_id": "NOT_A_UUID",
        "state": "OUT_OF_RANGE",
        "reason": "TOO_LONG",
    }
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.admin.DecideCase(
            decide_request(str(uuid.uuid4()), application_pb2.APPLICATION_STATE_ACCEPTED)
        )
    assert error_info(missing.value).reason == "APPLICATION_NOT_FOUND"


# --- e-licence keys -------------------------------------------------------------------------


BUSINESS_LICENCE = "11100000MB0143028R001"  # 营业执照
HOLDER = "11440000MBDCGK306L"


def issue_request(**overrides: Any) -> admin_pb2.IssueLicenseRequest:
    fields: dict[str, Any] = {
        "license_type_code": BUSINESS_LICENCE,
        "license_number": "4400001234567",
        "holder_id_type": application_pb2.ID_TYPE_USCC,
        "holder_id_number": HOLDER,
    }
    return admin_pb2.IssueLicenseRequest(**{**fields, **overrides})


async def published_keys(stub: RunningStub) -> jwt.PyJWKSet:
    answer = await stub.region.GetLicenseKeys(region_pb2.GetLicenseKeysRequest())
    assert answer.max_age_seconds == 60
    return jwt.PyJWKSet.from_json(answer.jwks_json)


def verify(token: str, keys: jwt.PyJWKSet) -> dict[str, object]:
    """Verifies a token against the published keys only, the way a gateway must."""
    header = jwt.get_unverified_header(token)
    key = keys[header["kid"]]
    claims: dict[str, object] = jwt.decode(
        token,
        key=key.key,
        algorithms=[key.algorithm_name],
        audience="tongban-gateway",
        options={"require": ["exp", "iat"]},
    )
    return claims


async def test_an_issued_licence_verifies_against_the_published_keys(stub: RunningStub) -> None:
    issued = await stub.admin.IssueLicense(issue_request(valid_days=30))
    keys = await published_keys(stub)
    claims = verify(issued.token, keys)
    assert jwt.get_unverified_header(issued.token)["kid"] == issued.key_id
    assert claims["iss"] == f"tongban:region:{REGION}"
    assert int(str(claims["exp"])) - int(str(claims["nbf"])) == 30 * 86400
    assert issued.identifier.startswith(f"1.2.156.3005.2.{BUSINESS_LICENCE}.")


async def test_a_malformed_licence_request_names_its_fields(stub: RunningStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.admin.IssueLicense(
            issue_request(license_type_code="X", holder_id_type=application_pb2.ID_TYPE_UNSPECIFIED)
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "INVALID_REQUEST"
    assert {"license_type_code", "holder_id_type"} <= set(field_violations(caught.value))


async def test_every_holder_id_type_can_be_issued_and_unknown_ones_are_refused(
    stub: RunningStub,
) -> None:
    keys = await published_keys(stub)
    for id_type, number, code in (
        (application_pb2.ID_TYPE_CITIZEN_ID, "110105199003071239", "111"),
        (
            application_pb2.ID_TYPE_HMT_RESIDENCE_PERMIT,
            "830000194912310021",
            "HMT_RESIDENCE_PERMIT",
        ),
        (
            application_pb2.ID_TYPE_FOREIGN_PERMANENT_RESIDENCE,
            "USA330619900307",
            "FOREIGN_PERMANENT_RESIDENCE",
        ),
    ):
        issued = await stub.admin.IssueLicense(
            issue_request(holder_id_type=id_type, holder_id_number=number)
        )
        claims = verify(issued.token, keys)
        assert (claims["holder_id_type"], claims["sub"]) == (code, number)
    for unknown in (application_pb2.ID_TYPE_UNSPECIFIED, 99, -1):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.admin.IssueLicense(issue_request(holder_id_type=unknown))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(caught.value) == {"holder_id_type": "BAD_ID_TYPE"}


async def test_rotation_publishes_the_new_key_and_retires_the_old(stub: RunningStub) -> None:
    old = await stub.admin.IssueLicense(issue_request())
    rotated = await stub.admin.RotateLicenseKeys(
        admin_pb2.RotateLicenseKeysRequest(
            algorithm=admin_pb2.LICENSE_SIGNING_ALGORITHM_ES256,
            retire_key_id=old.key_id,
            activation_delay=duration_pb2.Duration(seconds=0),  # explicitly: sign at once
        )
    )
    assert list(rotated.key_ids) == [rotated.key_id]
    assert rotated.signing_key_id == rotated.key_id
    new = await stub.admin.IssueLicense(issue_request())
    assert new.key_id == rotated.key_id
    keys = await published_keys(stub)
    assert jwt.get_unverified_header(new.token)["alg"] == "ES256"
    verify(new.token, keys)
    with pytest.raises(KeyError):
        keys[old.key_id]


async def test_by_default_a_new_key_is_published_a_max_age_before_it_signs(
    stub: RunningStub,
) -> None:
    old = await stub.admin.IssueLicense(issue_request())
    before = datetime.now(UTC)
    rotated = await stub.admin.RotateLicenseKeys(
        admin_pb2.RotateLicenseKeysRequest(algorithm=admin_pb2.LICENSE_SIGNING_ALGORITHM_ES256)
    )
    assert list(rotated.key_ids) == [old.key_id, rotated.key_id]
    assert rotated.signing_key_id == old.key_id
    starts = rotated.activate_time.ToDatetime(tzinfo=UTC)
    assert timedelta(seconds=59) <= starts - before <= timedelta(seconds=61)
    keys = await published_keys(stub)
    assert rotated.key_id in {key.key_id for key in keys.keys}
    again = await stub.admin.IssueLicense(issue_request())
    assert again.key_id == old.key_id  # the published key does not sign yet
    with pytest.raises(grpc.aio.AioRpcError) as signer:
        await stub.admin.RotateLicenseKeys(
            admin_pb2.RotateLicenseKeysRequest(retire_key_id=rotated.key_id)
        )
    assert signer.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(signer.value) == {"retire_key_id": "SIGNING_KEY"}


async def test_a_new_key_signs_once_its_delay_has_passed_then_the_old_one_retires(
    stub: RunningStub,
) -> None:
    old = await stub.admin.IssueLicense(issue_request())
    rotated = await stub.admin.RotateLicenseKeys(
        admin_pb2.RotateLicenseKeysRequest(
            algorithm=admin_pb2.LICENSE_SIGNING_ALGORITHM_EDDSA,
            activation_delay=duration_pb2.Duration(nanos=200_000_000),
        )
    )
    assert rotated.signing_key_id == old.key_id
    with pytest.raises(grpc.aio.AioRpcError) as too_early:
        await stub.admin.RotateLicenseKeys(
            admin_pb2.RotateLicenseKeysRequest(retire_key_id=old.key_id)
        )
    assert field_violations(too_early.value) == {"retire_key_id": "SIGNING_KEY"}
    await asyncio.sleep(0.3)
    new = await stub.admin.IssueLicense(issue_request())
    assert new.key_id == rotated.key_id
    retired = await stub.admin.RotateLicenseKeys(
        admin_pb2.RotateLicenseKeysRequest(retire_key_id=old.key_id)
    )
    assert list(retired.key_ids) == [rotated.key_id]
    assert retired.key_id == ""
    assert retired.signing_key_id == rotated.key_id
    verify(new.token, await published_keys(stub))


async def test_rotation_refuses_a_negative_delay_and_a_call_that_does_nothing(
    stub: RunningStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as negative:
        await stub.admin.RotateLicenseKeys(
            admin_pb2.RotateLicenseKeysRequest(
                algorithm=admin_pb2.LICENSE_SIGNING_ALGORITHM_EDDSA,
                activation_delay=duration_pb2.Duration(seconds=-1),
            )
        )
    assert field_violations(negative.value) == {"activation_delay": "OUT_OF_RANGE"}
    keys = await published_keys(stub)
    assert len(keys.keys) == 1  # nothing was added


async def test_issuing_answers_the_token_id_and_index_and_takes_an_agency(
    stub: RunningStub,
) -> None:
    agency = "11440300MB2C92050G"
    first = await stub.admin.IssueLicense(issue_request(issuing_agency_code=agency))
    second = await stub.admin.IssueLicense(issue_request())
    claims = verify(first.token, await published_keys(stub))
    assert claims["jti"] == first.token_id
    assert claims["status"] == {
        "status_list": {"idx": first.status_index, "uri": f"tongban:region:{REGION}:status"}
    }
    assert claims["license"]["issuing_agency_code"] == agency  # type: ignore[index]
    assert f".{agency}." in first.identifier
    assert second.status_index == first.status_index + 1
    assert second.token_id != first.token_id
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.admin.IssueLicense(issue_request(issuing_agency_code="not an agency"))
    assert field_violations(bad.value) == {"issuing_agency_code": "BAD_AGENCY_CODE"}


async def test_rotation_refuses_an_unspecified_algorithm_and_an_unknown_key(
    stub: RunningStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as unspecified:
        await stub.admin.RotateLicenseKeys(admin_pb2.RotateLicenseKeysRequest())
    assert unspecified.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(unspecified.value) == {"algorithm": "REQUIRED"}
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub.admin.RotateLicenseKeys(
            admin_pb2.RotateLicenseKeysRequest(
                algorithm=admin_pb2.LICENSE_SIGNING_ALGORITHM_EDDSA, retire_key_id="nope"
            )
        )
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_revoked_licence_shows_in_the_next_status_list(stub: RunningStub) -> None:
    first = await stub.admin.IssueLicense(issue_request())
    second = await stub.admin.IssueLicense(issue_request())
    claims = verify(first.token, await published_keys(stub))
    index = claims["status"]["status_list"]["idx"]  # type: ignore[index]
    set_by_token = await stub.admin.SetLicenseStatus(
        admin_pb2.SetLicenseStatusRequest(
            token_id=str(claims["jti"]), status=admin_pb2.LICENSE_STATUS_REVOKED
        )
    )
    suspended = await stub.admin.SetLicenseStatus(
        admin_pb2.SetLicenseStatusRequest(
            status_index=index + 1, status=admin_pb2.LICENSE_STATUS_SUSPENDED
        )
    )
    assert set_by_token.status_index == index
    assert suspended.status == admin_pb2.LICENSE_STATUS_SUSPENDED
    answer = await stub.region.GetLicenseStatusList(region_pb2.GetLicenseStatusListRequest())
    assert answer.max_age_seconds > 0
    listed = verify_status_list(answer.status_list_token, await published_keys(stub))
    assert (listed.status_of(index), listed.status_of(index + 1)) == (1, 2)
    assert verify(second.token, await published_keys(stub))["jti"] != claims["jti"]


async def test_set_license_status_needs_a_status_and_a_known_target(stub: RunningStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as no_status:
        await stub.admin.SetLicenseStatus(admin_pb2.SetLicenseStatusRequest(status_index=0))
    assert no_status.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub.admin.SetLicenseStatus(
            admin_pb2.SetLicenseStatusRequest(
                status_index=5, status=admin_pb2.LICENSE_STATUS_REVOKED
            )
        )
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def verify_status_list(token: str, keys: jwt.PyJWKSet) -> StatusList:
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "statuslist+jwt"
    key = keys[header["kid"]]
    claims = jwt.decode(token, key=key.key, algorithms=[key.algorithm_name])
    assert claims["sub"] == f"tongban:region:{REGION}:status"
    return decode_status_list(
        claims["status_list"]["bits"], claims["status_list"]["lst"], max_bytes=1 << 16
    )


# --- serving --------------------------------------------------------------------------------


async def test_health_is_serving_for_the_server_and_each_service(stub: RunningStub) -> None:
    health = health_pb2_grpc.HealthStub(stub.channel)
    for name in ("", *stub_server.SERVICE_NAMES):
        answer = await health.Check(health_pb2.HealthCheckRequest(service=name))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_services(stub: RunningStub) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(stub.channel)
    call = reflection.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    response = await call.read()
    await call.done_writing()
    listed = {s.name for s in response.list_services_response.service}
    assert set(stub_server.SERVICE_NAMES) <= listed
    assert "grpc.health.v1.Health" in listed


def test_every_rpc_of_the_contract_has_a_handler() -> None:
    for servicer, descriptor in [
        (stub_server.RegionServicer, region_pb2.DESCRIPTOR.services_by_name["RegionService"]),
        (stub_server.AdminServicer, admin_pb2.DESCRIPTOR.services_by_name["RegionAdminService"]),
    ]:
        for method in descriptor.methods:
            assert method.name in vars(servicer), f"{descriptor.name}.{method.name}"


async def test_serve_announces_and_stops_when_told(
    config: StubConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(stub_server.serve(config, ready=ready, stop=stop))
    await asyncio.wait_for(ready.wait(), 5)
    announced = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert announced["event"] == "listening"
    assert (announced["service"], announced["region"]) == ("region-stub", REGION)
    async with grpc.aio.insecure_channel(announced["address"]) as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    stop.set()
    await asyncio.wait_for(task, 5)


# --- configuration and the command line -----------------------------------------------------


def test_flags_override_the_mapping(tmp_path: Path) -> None:
    environ = {
        "TONGBAN_STUB_REGION": "510000",
        "TONGBAN_STUB_PORT": "7001",
        "TONGBAN_STUB_UNAVAILABLE_FRACTION": "0.1",
        "TONGBAN_STUB_HANG": "true",
        "UNRELATED": "x",
    }
    config = parse_args(
        [
            "--region",
            REGION,
            "--data-dir",
            str(tmp_path),
            "--unavailable-fraction",
            "0.3",
            "--pushback-ms",
            "100",
            "--down",
            "--seed",
            "5",
        ],
        environ,
    )
    assert config.region_code == REGION
    assert config.port == 7001
    assert config.cases_path == tmp_path / f"region-{REGION}.sqlite3"
    assert config.faults == Faults(unavailable_fraction=0.3, pushback_ms=100, hang=True, down=True)
    assert config.seed == 5
    assert config.implementation_list.name == f"{REGION}.json"
    assert config.gateway_address is None


def test_breaks_come_from_the_flag_or_the_mapping() -> None:
    config = parse_args(
        ["--region", REGION, "--break", "private-jwk, ignore-deadline"],
        {"TONGBAN_STUB_BREAK": "admit-any-client"},
    )
    assert config.breaks == {Break.PRIVATE_JWK, Break.IGNORE_DEADLINE}
    assert StubConfig.from_mapping({"TONGBAN_STUB_REGION": REGION}).breaks == frozenset()


def test_defaults_need_only_a_region() -> None:
    config = StubConfig.from_mapping({"TONGBAN_STUB_REGION": REGION})
    assert (config.host, config.port, config.data_dir, config.seed) == ("127.0.0.1", 0, None, None)
    assert config.faults.healthy
    assert config.implementation_list.exists()  # the bundled list of the province
    assert config.license_algorithm == "EdDSA"


@pytest.mark.parametrize(
    ("mapping", "names"),
    [
        ({}, "TONGBAN_STUB_REGION"),
        ({"TONGBAN_STUB_REGION": "440300"}, "TONGBAN_STUB_REGION"),
        ({"TONGBAN_STUB_REGION": REGION, "TONGBAN_STUB_PORT": "x"}, "TONGBAN_STUB_PORT"),
        ({"TONGBAN_STUB_REGION": REGION, "TONGBAN_STUB_PORT": "70000"}, "TONGBAN_STUB_PORT"),
        ({"TONGBAN_STUB_REGION": REGION, "TONGBAN_STUB_DOWN": "maybe"}, "TONGBAN_STUB_DOWN"),
        ({"TONGBAN_STUB_REGION": REGION, "TONGBAN_STUB_LATENCY_MS": "-1"}, "latency_ms"),
        ({"TONGBAN_STUB_REGION": REGION, "TONGBAN_STUB_BREAK": "nothing"}, "TONGBAN_STUB_BREAK"),
    ],
)
def test_bad_configuration_names_the_key(mapping: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        StubConfig.from_mapping(mapping)


def test_main_refuses_a_bad_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    assert stub_server.main(["--region", "44"]) == 2
    assert "TONGBAN_STUB_REGION" in capsys.readouterr().err


def test_main_refuses_a_list_of_another_province(tmp_path: Path, implementation_list: Path) -> None:
    code = stub_server.main(
        ["--region", "510000", "--implementation-list", str(implementation_list)]
    )
    assert code == 1


async def test_the_process_announces_serves_and_exits_0_on_sigterm(
    tmp_path: Path, implementation_list: Path
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "region_stubs",
        "--region",
        REGION,
        "--port",
        "0",
        "--data-dir",
        str(tmp_path / "data"),
        "--implementation-list",
        str(implementation_list),
        "--grace",
        "0.2",
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 10)
        announced = json.loads(line)
        assert (announced["event"], announced["region"]) == ("listening", REGION)
        async with grpc.aio.insecure_channel(announced["address"]) as channel:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert (tmp_path / "data" / f"region-{REGION}.sqlite3").exists()


def replace_attempt(
    request: region_pb2.DeliverApplicationRequest, attempt: int
) -> region_pb2.DeliverApplicationRequest:
    again = region_pb2.DeliverApplicationRequest()
    again.CopyFrom(request)
    again.attempt = attempt
    return again
