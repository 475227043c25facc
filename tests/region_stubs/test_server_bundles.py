"""A real stub on port 0 in its part of a bundle: withdrawing cases, serving licences on
request, deciding matters by rule and issuing each completed case's licences in its report.

The gateway's side is played by a receiver of ReportApplicationStatus on port 0 that records
every report (and can refuse the first ones), so what the stub sends is asserted here, whatever
the gateway then does with it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeAlias

import grpc
import jwt
import pytest
from conftest import ROOT, STANDARDS, eventually
from google.protobuf import duration_pb2
from grpc_status import rpc_status
from test_server import error_info, field_violations, published_keys, verify

from gateway.api.v1 import application_pb2, application_pb2_grpc, region_pb2
from gateway.errors import build_status
from region_stubs import server as stub_server
from region_stubs.admin.v1 import admin_pb2
from region_stubs.config import StubConfig, parse_args
from region_stubs.faults import Faults
from region_stubs.server import RunningStub, running_stub

REGION = "510000"
LOCAL_CODE = "51200240000000-510000000000-000-11510000004114873F-1-00"
MATTER = "002031021000"  # 企业职工基本养老保险关系转移接续: issues a 参保缴费凭证
PAYMENT_PROOF = "11100000000099063Q001"  # 参保缴费凭证
HUKOU = "11100000000099055X001"  # 户口簿
BUSINESS_LICENCE = "11100000MB0143028R001"  # 营业执照
COMPANY_CHANGE = "000117113000"  # 内资企业及分支机构变更登记: a 营业执照 and a 企业迁移登记档案
COMPANY_CHANGE_CODE = "511A0156000000-510000000000-000-11510000MBR1GYTA7C-1-00"
CITIZEN = "110105199003071239"
ACCEPTED = application_pb2.APPLICATION_STATE_ACCEPTED
REJECTED = application_pb2.APPLICATION_STATE_REJECTED
COMPLETED = application_pb2.APPLICATION_STATE_COMPLETED


@dataclass
class Receiver(application_pb2_grpc.ApplicationServiceServicer):
    """The gateway's ReportApplicationStatus: records every report it accepts and every
    attempt; refuses the first attempts with `refusals`, in order."""

    reports: list[application_pb2.ReportApplicationStatusRequest] = field(default_factory=list)
    attempts: list[application_pb2.ReportApplicationStatusRequest] = field(default_factory=list)
    refusals: list[tuple[grpc.StatusCode, str]] = field(default_factory=list)

    async def ReportApplicationStatus(
        self,
        request: application_pb2.ReportApplicationStatusRequest,
        context: grpc.aio.ServicerContext,
    ) -> application_pb2.ReportApplicationStatusResponse:
        self.attempts.append(request)
        if self.refusals:
            code, reason = self.refusals.pop(0)
            await context.abort_with_status(
                rpc_status.to_status(build_status(code, reason, "refused"))
            )
        self.reports.append(request)
        return application_pb2.ReportApplicationStatusResponse(
            application=application_pb2.Application(name=request.name, state=request.state)
        )

    def states(self) -> list[int]:
        return [report.state for report in self.reports]


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    fake = Receiver()  # type: ignore[abstract]  # serves only ReportApplicationStatus
    server = grpc.aio.server()
    application_pb2_grpc.add_ApplicationServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield fake, f"127.0.0.1:{port}"
    await server.stop(0)


@pytest.fixture
def config(tmp_path: Path, receiver: tuple[Receiver, str]) -> StubConfig:
    return StubConfig(
        region_code=REGION,
        implementation_list=STANDARDS / "implementations" / f"{REGION}.json",
        data_dir=tmp_path / "data",
        gateway_address=receiver[1],
        grace=0.2,
    )


@pytest.fixture
async def stub(config: StubConfig) -> AsyncIterator[RunningStub]:
    async with running_stub(config) as running:
        yield running


def delivery(
    *,
    catalog_version: str = "2026.1",
    id_type: application_pb2.IdType.ValueType = application_pb2.ID_TYPE_CITIZEN_ID,
    id_number: str = CITIZEN,
) -> region_pb2.DeliverApplicationRequest:
    """A delivery of the pension transfer as the gateway sends it."""
    return region_pb2.DeliverApplicationRequest(
        application=application_pb2.Application(
            application_id=str(uuid.uuid4()),
            origin_region="440000",
            target_region=REGION,
            target_local_matter_code=LOCAL_CODE,
            national_matter_code=MATTER,
            catalog_version=catalog_version,
            applicant=application_pb2.Applicant(
                id_type=id_type, id_number=id_number, display_name="张三"
            ),
        ),
        attempt=1,
    )


async def delivered(stub: RunningStub, request: region_pb2.DeliverApplicationRequest) -> str:
    await stub.region.DeliverApplication(request)
    return request.application.application_id


async def state_of(stub: RunningStub, application_id: str) -> int:
    answer: region_pb2.GetApplicationStatusResponse = await stub.region.GetApplicationStatus(
        region_pb2.GetApplicationStatusRequest(application_id=application_id)
    )
    return answer.state


State: TypeAlias = application_pb2.ApplicationState.ValueType


def decide(application_id: str, state: State, reason: str = "") -> admin_pb2.DecideCaseRequest:
    return admin_pb2.DecideCaseRequest(application_id=application_id, state=state, reason=reason)


async def decided(stub: RunningStub) -> None:
    """Waits until the stub has no automatic decision in progress."""
    await eventually(lambda: stub.decider.pending == 0, within=10, what="decisions done")


# --- withdrawal -----------------------------------------------------------------------------


def withdraw(application_id: str, reason: str = "") -> region_pb2.WithdrawApplicationRequest:
    return region_pb2.WithdrawApplicationRequest(application_id=application_id, reason=reason)


async def test_an_undecided_case_is_withdrawn_and_a_repeat_answers_the_same(
    stub: RunningStub,
) -> None:
    application_id = await delivered(stub, delivery())
    first = await stub.region.WithdrawApplication(withdraw(application_id, "申请人撤回"))
    again = await stub.region.WithdrawApplication(withdraw(application_id))

    assert first.HasField("withdraw_time")
    assert again.withdraw_time == first.withdraw_time
    status = await stub.region.GetApplicationStatus(
        region_pb2.GetApplicationStatusRequest(application_id=application_id)
    )
    assert (status.state, status.reason) == (
        application_pb2.APPLICATION_STATE_WITHDRAWN,
        "申请人撤回",
    )
    assert status.update_time == first.withdraw_time
    assert (await stub.counters()).cases_withdrawn == 1


@pytest.mark.parametrize(
    ("decisions", "state"),
    [
        ((ACCEPTED,), "APPLICATION_STATE_ACCEPTED"),
        ((REJECTED,), "APPLICATION_STATE_REJECTED"),
        ((ACCEPTED, COMPLETED), "APPLICATION_STATE_COMPLETED"),
    ],
)
async def test_a_decided_case_is_not_withdrawn(
    stub: RunningStub, decisions: tuple[State, ...], state: str
) -> None:
    application_id = await delivered(stub, delivery())
    for decision in decisions:
        await stub.admin.DecideCase(decide(application_id, decision))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.region.WithdrawApplication(withdraw(application_id))

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(caught.value)
    assert (info.reason, dict(info.metadata)) == ("ALREADY_DECIDED", {"state": state})
    assert await state_of(stub, application_id) == application_pb2.ApplicationState.Value(state)
    assert (await stub.counters()).cases_withdrawn == 0


async def test_withdrawing_an_unknown_case_is_not_found(stub: RunningStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.region.WithdrawApplication(withdraw(str(uuid.uuid4())))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(caught.value).reason == "APPLICATION_NOT_FOUND"


async def test_a_malformed_withdrawal_names_its_fields(stub: RunningStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.region.WithdrawApplication(withdraw("not-a-uuid", "x" * 501))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value) == {"application_id": "NOT_A_UUID", "reason": "TOO_LONG"}


async def test_a_withdrawn_case_is_never_decided(
    config: StubConfig, receiver: tuple[Receiver, str]
) -> None:
    fake, _ = receiver
    rules = parse_args(["--region", REGION, "--decide", f"{MATTER}=reject:1s:材料不全"], {})
    async with running_stub(replace(config, decisions=rules.decisions)) as stub:
        application_id = await delivered(stub, delivery())
        await stub.region.WithdrawApplication(withdraw(application_id))
        assert stub.decider.pending == 1
        await decided(stub)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.admin.DecideCase(decide(application_id, ACCEPTED))
        assert await state_of(stub, application_id) == application_pb2.APPLICATION_STATE_WITHDRAWN
    assert error_info(caught.value).reason == "INVALID_STATE_TRANSITION"
    assert fake.attempts == []


# --- licences fetched -----------------------------------------------------------------------


def fetch(
    type_code: str = PAYMENT_PROOF,
    *,
    id_type: application_pb2.IdType.ValueType = application_pb2.ID_TYPE_CITIZEN_ID,
    number: str = CITIZEN,
    bundle: str | None = None,
    application: str | None = None,
) -> region_pb2.FetchLicenseRequest:
    return region_pb2.FetchLicenseRequest(
        license_type_code=type_code,
        holder_id_type=id_type,
        holder_id_number=number,
        bundle=f"bundles/{uuid.uuid4()}" if bundle is None else bundle,
        application=f"applications/{uuid.uuid4()}" if application is None else application,
    )


async def not_found(stub: RunningStub, request: region_pb2.FetchLicenseRequest) -> dict[str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.region.FetchLicense(request)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    info = error_info(caught.value)
    assert info.reason == "LICENSE_NOT_FOUND"
    assert CITIZEN not in (caught.value.details() or "")
    return dict(info.metadata)


async def test_a_fetched_licence_is_the_provinces_signed_licence_of_the_holder(
    stub: RunningStub,
) -> None:
    first = await stub.region.FetchLicense(fetch())
    again = await stub.region.FetchLicense(fetch())

    claims = verify(first.license_token, await published_keys(stub))
    assert claims["iss"] == f"tongban:region:{REGION}"
    assert (claims["sub"], claims["holder_id_type"]) == (CITIZEN, "111")
    licence = claims["license"]
    assert isinstance(licence, dict)
    assert licence["type_code"] == PAYMENT_PROOF
    assert again.license_token == first.license_token  # the holder's licence, not a new one
    counters = await stub.counters()
    assert (counters.licenses_fetched, counters.license_fetches_not_found) == (2, 0)


async def test_a_type_the_province_is_not_trusted_with_is_not_found(
    config: StubConfig, tmp_path: Path
) -> None:
    trust = tmp_path / "trust.json"
    trust.write_text(
        json.dumps(
            {
                "issuers": {
                    REGION: {"license_types": [PAYMENT_PROOF]},
                    "440000": {"license_types": [HUKOU]},
                }
            }
        ),
        encoding="utf-8",
    )
    async with running_stub(replace(config, license_trust=trust)) as stub:
        await stub.region.FetchLicense(fetch(PAYMENT_PROOF))
        metadata = await not_found(stub, fetch(HUKOU))
        counters = await stub.counters()
    assert metadata == {"region_code": REGION, "license_type_code": HUKOU}
    assert (counters.licenses_fetched, counters.license_fetches_not_found) == (1, 1)


async def test_without_a_trust_list_the_province_issues_the_catalogs_types_only(
    stub: RunningStub,
) -> None:
    for type_code in (HUKOU, BUSINESS_LICENCE):
        await stub.region.FetchLicense(fetch(type_code))
    unknown = "91350100M000100Y43001"  # well-formed, in no catalog
    assert (await not_found(stub, fetch(unknown)))["license_type_code"] == unknown


async def test_a_holder_said_to_hold_none_is_not_found_until_said_otherwise(
    stub: RunningStub,
) -> None:
    holding = admin_pb2.SetLicenseHoldingRequest(
        license_type_code=PAYMENT_PROOF,
        holder_id_type=application_pb2.ID_TYPE_CITIZEN_ID,
        holder_id_number=CITIZEN,
        held=False,
    )
    await stub.admin.SetLicenseHolding(holding)
    await not_found(stub, fetch())
    other = await stub.region.FetchLicense(fetch(HUKOU))  # only that type is withheld
    assert verify(other.license_token, await published_keys(stub))["sub"] == CITIZEN
    holding.held = True
    await stub.admin.SetLicenseHolding(holding)
    await stub.region.FetchLicense(fetch())
    counters = await stub.counters()
    assert (counters.licenses_fetched, counters.license_fetches_not_found) == (2, 1)


async def test_the_newest_valid_licence_is_fetched_and_a_revoked_one_never(
    stub: RunningStub,
) -> None:
    issued = await stub.admin.IssueLicense(
        admin_pb2.IssueLicenseRequest(
            license_type_code=PAYMENT_PROOF,
            license_number="510000000001",
            holder_id_type=application_pb2.ID_TYPE_CITIZEN_ID,
            holder_id_number=CITIZEN,
        )
    )
    assert (await stub.region.FetchLicense(fetch())).license_token == issued.token
    await stub.admin.SetLicenseStatus(
        admin_pb2.SetLicenseStatusRequest(
            token_id=issued.token_id, status=admin_pb2.LICENSE_STATUS_REVOKED
        )
    )
    await not_found(stub, fetch())


async def test_a_malformed_fetch_names_every_field(stub: RunningStub) -> None:
    cases = [
        (
            region_pb2.FetchLicenseRequest(),
            {
                "license_type_code": "MISSING",
                "holder_id_type": "MISSING",
                "holder_id_number": "MISSING",
                "bundle": "MISSING",
                "application": "MISSING",
            },
        ),
        (
            fetch(
                "X" * 22,
                id_type=application_pb2.IdType.ValueType(99),
                number="1" * 19,
                bundle="bundles/" + "a" * 1000,
                application=f"application/{uuid.uuid4()}",
            ),
            {
                "license_type_code": "TOO_LONG",
                "holder_id_type": "UNKNOWN",
                "holder_id_number": "TOO_LONG",
                "bundle": "TOO_LONG",
                "application": "BAD_NAME",
            },
        ),
        (
            fetch("11100000000099063Q00X", number="110105199003071238", bundle="bundles/x"),
            {
                "license_type_code": "MALFORMED",
                "holder_id_number": "CITIZEN_ID_CHECK_MISMATCH",
                "bundle": "BAD_NAME",
            },
        ),
    ]
    for request, expected in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.region.FetchLicense(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(caught.value).reason == "INVALID_REQUEST"
        assert field_violations(caught.value) == expected
    counters = await stub.counters()
    assert (counters.licenses_fetched, counters.license_fetches_not_found) == (0, 0)


async def test_set_license_holding_validates_its_request(stub: RunningStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.admin.SetLicenseHolding(admin_pb2.SetLicenseHoldingRequest(held=False))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(caught.value)) == {
        "license_type_code",
        "holder_id_type",
        "holder_id_number",
    }


# --- decisions by rule and the licences of a completed case -----------------------------------


def with_rules(config: StubConfig, *rules: str) -> StubConfig:
    """`config` with the rules given as `--decide` flags."""
    flags = [arg for rule in rules for arg in ("--decide", rule)]
    return replace(config, decisions=parse_args(["--region", REGION, *flags], {}).decisions)


async def test_a_complete_rule_reports_accepted_then_completed_with_the_matters_licence(
    config: StubConfig, receiver: tuple[Receiver, str]
) -> None:
    fake, _ = receiver
    async with running_stub(with_rules(config, f"{MATTER}=complete:50ms")) as stub:
        request = delivery()
        receipt = (await stub.region.DeliverApplication(request)).receipt_id
        application_id = request.application.application_id
        await decided(stub)
        keys = await published_keys(stub)
        assert await state_of(stub, application_id) == COMPLETED
        fetched = await stub.region.FetchLicense(fetch())

    accepted, completed = fake.reports
    assert (accepted.state, completed.state) == (ACCEPTED, COMPLETED)
    assert accepted.name == completed.name == f"applications/{application_id}"
    assert accepted.issued_license_tokens == []
    (token,) = completed.issued_license_tokens
    claims = verify(token, keys)
    assert (claims["sub"], claims["holder_id_type"]) == (CITIZEN, "111")
    licence = claims["license"]
    assert isinstance(licence, dict)
    assert licence["type_code"] == PAYMENT_PROOF
    assert licence["number"] == receipt.replace("-", "")
    assert fetched.license_token == token  # on the applicant's record from then on


async def test_a_matters_own_rule_comes_before_the_rule_for_every_matter(
    config: StubConfig, receiver: tuple[Receiver, str]
) -> None:
    fake, _ = receiver
    rules = (f"{MATTER}=reject:10ms:材料不全", "*=complete")
    other = delivery()
    other.application.target_local_matter_code = COMPANY_CHANGE_CODE
    other.application.national_matter_code = COMPANY_CHANGE
    async with running_stub(with_rules(config, *rules)) as stub:
        rejected = await delivered(stub, delivery())
        completed = await delivered(stub, other)
        await decided(stub)
        keys = await published_keys(stub)
    by_case = {(r.name, r.state): r for r in fake.reports}
    assert set(by_case) == {
        (f"applications/{rejected}", REJECTED),
        (f"applications/{completed}", ACCEPTED),
        (f"applications/{completed}", COMPLETED),
    }
    assert by_case[f"applications/{rejected}", REJECTED].reason == "材料不全"
    tokens = by_case[f"applications/{completed}", COMPLETED].issued_license_tokens
    types = []
    for token in tokens:
        licence = verify(token, keys)["license"]
        assert isinstance(licence, dict)
        types.append(licence["type_code"])
    assert types == [BUSINESS_LICENCE, "11100000000099098B001"]  # the matter's results, in order


async def test_without_a_rule_a_case_waits_for_an_operator(
    stub: RunningStub, receiver: tuple[Receiver, str]
) -> None:
    fake, _ = receiver
    application_id = await delivered(stub, delivery())
    assert stub.decider.pending == 0
    assert await state_of(stub, application_id) == application_pb2.APPLICATION_STATE_DELIVERED
    assert fake.attempts == []


async def test_a_report_the_gateway_cannot_take_now_is_retried_as_the_same_event(
    config: StubConfig, receiver: tuple[Receiver, str]
) -> None:
    fake, _ = receiver
    fake.refusals = [(grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE")] * 2
    async with running_stub(with_rules(config, "*=complete:0s")) as stub:
        await delivered(stub, delivery())
        await decided(stub)
    assert [a.state for a in fake.attempts] == [ACCEPTED, ACCEPTED, ACCEPTED, COMPLETED]
    assert len({a.event_id for a in fake.attempts[:3]}) == 1
    assert fake.states() == [ACCEPTED, COMPLETED]


async def test_a_refusal_that_retrying_cannot_help_ends_the_decision(
    config: StubConfig, receiver: tuple[Receiver, str]
) -> None:
    fake, _ = receiver
    fake.refusals = [(grpc.StatusCode.FAILED_PRECONDITION, "APPLICATION_NOT_DELIVERED")]
    async with running_stub(with_rules(config, "*=complete:0s")) as stub:
        application_id = await delivered(stub, delivery())
        await decided(stub)
        assert await state_of(stub, application_id) == ACCEPTED
    assert [a.state for a in fake.attempts] == [ACCEPTED]


async def test_rules_set_through_the_admin_api_apply_to_cases_delivered_afterwards(
    stub: RunningStub, receiver: tuple[Receiver, str]
) -> None:
    fake, _ = receiver
    before = await delivered(stub, delivery())
    answer = await stub.admin.SetDecisions(
        admin_pb2.SetDecisionsRequest(
            rules=[
                admin_pb2.DecisionRule(
                    matter_code=MATTER,
                    action=admin_pb2.DECISION_ACTION_COMPLETE,
                    delay=duration_pb2.Duration(nanos=20_000_000),
                ),
                admin_pb2.DecisionRule(
                    matter_code="*",
                    action=admin_pb2.DECISION_ACTION_REJECT,
                    reason="MATERIALS_INCOMPLETE",
                ),
            ]
        )
    )
    after = await delivered(stub, delivery())
    await decided(stub)

    assert [(r.matter_code, r.action) for r in answer.rules] == [
        ("*", admin_pb2.DECISION_ACTION_REJECT),
        (MATTER, admin_pb2.DECISION_ACTION_COMPLETE),
    ]
    assert answer.rules[1].delay.ToMilliseconds() == 20
    assert await state_of(stub, before) == application_pb2.APPLICATION_STATE_DELIVERED
    assert await state_of(stub, after) == COMPLETED
    assert {r.name for r in fake.reports} == {f"applications/{after}"}


async def test_set_decisions_names_every_bad_rule_and_keeps_the_old_ones(
    stub: RunningStub,
) -> None:
    bad = admin_pb2.SetDecisionsRequest(
        rules=[
            admin_pb2.DecisionRule(matter_code="12345", action=admin_pb2.DECISION_ACTION_MANUAL),
            admin_pb2.DecisionRule(matter_code=MATTER),
            admin_pb2.DecisionRule(
                matter_code=MATTER,
                action=admin_pb2.DECISION_ACTION_COMPLETE,
                delay=duration_pb2.Duration(seconds=3601),
                reason="x",
            ),
            admin_pb2.DecisionRule(
                matter_code="*", action=admin_pb2.DECISION_ACTION_REJECT, reason="x" * 501
            ),
        ]
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.admin.SetDecisions(bad)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value) == {
        "rules[0].matter_code": "BASIC_CODE_BAD_LENGTH",
        "rules[1].action": "UNSPECIFIED",
        "rules[2].delay": "OUT_OF_RANGE",
        "rules[2].reason": "NOT_ALLOWED",
        "rules[2].matter_code": "DUPLICATE",
        "rules[3].reason": "TOO_LONG",
    }
    await stub.region.DeliverApplication(delivery())
    assert stub.decider.pending == 0  # still manual


async def test_a_restarted_stub_decides_its_undecided_cases_by_its_new_rules(
    config: StubConfig, receiver: tuple[Receiver, str]
) -> None:
    fake, _ = receiver
    async with running_stub(config) as stub:
        waiting = await delivered(stub, delivery())
        accepted = await delivered(stub, delivery())
        done = await delivered(stub, delivery())
        await stub.admin.DecideCase(decide(accepted, ACCEPTED))
        await stub.admin.DecideCase(decide(done, REJECTED))
    async with running_stub(with_rules(config, "*=complete:0s")) as stub:
        await decided(stub)
        states = [await state_of(stub, a) for a in (waiting, accepted, done)]
    assert states == [COMPLETED, COMPLETED, REJECTED]
    completed = {r.name for r in fake.reports if r.state == COMPLETED}
    assert completed == {f"applications/{waiting}", f"applications/{accepted}"}


async def test_completing_by_hand_issues_the_licences_and_a_repeat_resends_them(
    stub: RunningStub, receiver: tuple[Receiver, str]
) -> None:
    fake, _ = receiver
    application_id = await delivered(stub, delivery())
    await stub.admin.DecideCase(decide(application_id, ACCEPTED))
    await stub.admin.DecideCase(decide(application_id, COMPLETED))
    await stub.admin.DecideCase(decide(application_id, COMPLETED))

    first, repeat = fake.reports[1:]
    assert len(first.issued_license_tokens) == 1
    assert repeat.event_id == first.event_id
    assert repeat.issued_license_tokens == first.issued_license_tokens


@pytest.mark.parametrize(
    "request_",
    [
        delivery(catalog_version="2025.1"),  # the matter issued nothing in 2025.1
        delivery(id_type=application_pb2.ID_TYPE_UNSPECIFIED, id_number=""),  # no applicant
    ],
    ids=["results-of-the-routed-version", "no-applicant"],
)
async def test_a_case_without_results_or_holder_completes_with_no_licence(
    stub: RunningStub,
    receiver: tuple[Receiver, str],
    request_: region_pb2.DeliverApplicationRequest,
) -> None:
    fake, _ = receiver
    application_id = await delivered(stub, request_)
    await stub.admin.DecideCase(decide(application_id, ACCEPTED))
    await stub.admin.DecideCase(decide(application_id, COMPLETED))
    assert fake.states() == [ACCEPTED, COMPLETED]
    assert fake.reports[1].issued_license_tokens == []


async def test_a_version_the_stub_has_not_read_issues_the_newest_versions_results(
    stub: RunningStub, receiver: tuple[Receiver, str]
) -> None:
    fake, _ = receiver
    application_id = await delivered(stub, delivery(catalog_version="2027.3"))
    await stub.admin.DecideCase(decide(application_id, ACCEPTED))
    await stub.admin.DecideCase(decide(application_id, COMPLETED))
    assert len(fake.reports[1].issued_license_tokens) == 1


# --- wrong output licences ------------------------------------------------------------------


async def completed_tokens(stub: RunningStub, fake: Receiver) -> list[str]:
    application_id = await delivered(stub, delivery())
    await stub.admin.DecideCase(decide(application_id, ACCEPTED))
    await stub.admin.DecideCase(decide(application_id, COMPLETED))
    return list(fake.reports[-1].issued_license_tokens)


async def test_forged_output_licences_claim_the_signing_key_but_fail_its_signature(
    stub: RunningStub, receiver: tuple[Receiver, str]
) -> None:
    await stub.set_faults(Faults(forge_output_licenses=True))
    (token,) = await completed_tokens(stub, receiver[0])
    keys = await published_keys(stub)
    assert jwt.get_unverified_header(token)["kid"] in {key.key_id for key in keys.keys}
    with pytest.raises(jwt.InvalidSignatureError):
        verify(token, keys)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == CITIZEN  # right in every way but the signature
    # A forged licence is not on the applicant's record: a fetch finds another one.
    assert (await stub.region.FetchLicense(fetch())).license_token != token


async def test_mismatched_output_licences_are_genuine_but_held_by_someone_else(
    stub: RunningStub, receiver: tuple[Receiver, str]
) -> None:
    await stub.set_faults(Faults(mismatch_output_licenses=True))
    (token,) = await completed_tokens(stub, receiver[0])
    claims = verify(token, await published_keys(stub))
    assert claims["holder_id_type"] == "111"
    assert claims["sub"] != CITIZEN
    await stub.set_faults(Faults())
    (genuine,) = await completed_tokens(stub, receiver[0])
    assert verify(genuine, await published_keys(stub))["sub"] == CITIZEN


async def test_an_output_licence_is_wrong_in_one_way_at_a_time(stub: RunningStub) -> None:
    both = admin_pb2.FaultSettings(forge_output_licenses=True, mismatch_output_licenses=True)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.admin.SetFaults(admin_pb2.SetFaultsRequest(faults=both))
    assert field_violations(caught.value) == {"faults.mismatch_output_licenses": "EXCLUSIVE"}


# --- configuration --------------------------------------------------------------------------


def test_the_new_flags_reach_the_config(tmp_path: Path) -> None:
    config = parse_args(
        [
            "--region",
            REGION,
            "--decide",
            f"{MATTER}=complete:2s",
            "--decide",
            "*=reject:MATERIALS_INCOMPLETE",
            "--license-trust",
            str(tmp_path / "trust.json"),
            "--catalog-dir",
            str(tmp_path),
            "--mismatch-output-licenses",
        ],
        {"TONGBAN_STUB_DECISIONS": "000117112000=complete"},  # the flags replace it
    )
    assert set(config.decisions.rules) == {MATTER, "*"}
    assert config.decisions.for_matter(MATTER).delay == 2.0
    assert config.decisions.for_matter("000117112000").reason == "MATERIALS_INCOMPLETE"
    assert (config.license_trust, config.catalog_dir) == (tmp_path / "trust.json", tmp_path)
    assert config.faults == Faults(mismatch_output_licenses=True)


async def test_the_process_refuses_a_bad_rule_in_one_line() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "region_stubs",
        "--region",
        REGION,
        "--decide",
        "*=complete:soon",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1
    assert "TONGBAN_STUB_DECISIONS" in lines[0]
    assert "DELAY" in lines[0]


def test_the_stub_refuses_to_start_on_an_unusable_trust_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trust = tmp_path / "trust.json"
    trust.write_text('{"issuers": {"510000": {"license_types": ["nope"]}}}', encoding="utf-8")
    assert stub_server.main(["--region", REGION, "--license-trust", str(trust)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "trust.json" in err[0]
