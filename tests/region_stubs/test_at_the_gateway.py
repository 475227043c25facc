"""A stub deciding by rule against a real gateway: the case reaches its terminal state there, and
the licences the stub issued verify with the gateway's own verifier (keys and status list
fetched from the stub).

The stub reports through a relay on port 0 that records each report and passes it on to the
gateway unchanged, so the licences the stub sent can be put to the gateway's verifier.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import grpc
import pytest
from conftest import STANDARDS, STANDARDS_BODY, gateway_config, start_world
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.api.v1 import (
    application_pb2,
    application_pb2_grpc,
    bundle_pb2,
    bundle_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    license_pb2,
    license_pb2_grpc,
    region_pb2,
)
from gateway.app.server import RunningGateway, running_gateway
from gateway.catalog import signing
from region_stubs.admin.v1 import admin_pb2
from region_stubs.config import parse_args
from region_stubs.faults import Faults
from region_stubs.server import RunningStub, running_stub

ORIGIN, TARGET = "440000", "510000"
ORIGIN_CODE = "1144000000336375522002031021000"
MATTER = "002031021000"  # 企业职工基本养老保险关系转移接续: issues a 参保缴费凭证
PAYMENT_PROOF = "11100000000099063Q001"
CITIZEN = "110105199003071239"
COMPLETED = application_pb2.APPLICATION_STATE_COMPLETED
TERMINAL = {
    application_pb2.APPLICATION_STATE_COMPLETED,
    application_pb2.APPLICATION_STATE_REJECTED,
    application_pb2.APPLICATION_STATE_FAILED,
}


@dataclass
class Relay(application_pb2_grpc.ApplicationServiceServicer):
    """ReportApplicationStatus passed on to the gateway, each report recorded on the way."""

    gateway: application_pb2_grpc.ApplicationServiceAsyncStub
    reports: list[application_pb2.ReportApplicationStatusRequest] = field(default_factory=list)
    forward: bool = True
    """False: answer every report itself, as if the gateway had taken it."""

    async def ReportApplicationStatus(
        self,
        request: application_pb2.ReportApplicationStatusRequest,
        context: grpc.aio.ServicerContext,
    ) -> application_pb2.ReportApplicationStatusResponse:
        self.reports.append(request)
        if not self.forward:
            return application_pb2.ReportApplicationStatusResponse(
                application=application_pb2.Application(name=request.name, state=request.state)
            )
        try:
            answer: application_pb2.ReportApplicationStatusResponse = (
                await self.gateway.ReportApplicationStatus(request, timeout=5)
            )
        except grpc.aio.AioRpcError as error:
            await context.abort(
                error.code(), error.details() or "", trailing_metadata=error.trailing_metadata()
            )
        return answer


def submission(request_id: str) -> application_pb2.SubmitApplicationRequest:
    """A pension transfer from 440000 to 510000, every material on paper."""
    return application_pb2.SubmitApplicationRequest(
        request_id=request_id,
        origin_region=ORIGIN,
        target_region=TARGET,
        local_matter_code=ORIGIN_CODE,
        applicant=application_pb2.Applicant(
            id_type=application_pb2.ID_TYPE_CITIZEN_ID, id_number=CITIZEN, display_name="张三"
        ),
        form_fields=[
            application_pb2.FormField(key="gmsfhm", value=CITIZEN),
            application_pb2.FormField(key="xm", value="张三"),
            application_pb2.FormField(key="zcd_xzqh", value=ORIGIN),
            application_pb2.FormField(key="zrd_xzqh", value=TARGET),
        ],
        materials=[
            application_pb2.Material(
                material_id="M01",
                paper=application_pb2.PaperMaterial(description="居民身份证复印件"),
            ),
            application_pb2.Material(
                material_id="M02",
                paper=application_pb2.PaperMaterial(description="转移接续申请表"),
            ),
        ],
    )


@dataclass
class Federation:
    gateway: RunningGateway
    stub: RunningStub
    relay: Relay
    applications: application_pb2_grpc.ApplicationServiceAsyncStub
    licenses: license_pb2_grpc.LicenseServiceAsyncStub

    async def submit_and_watch(self, request_id: str) -> list[application_pb2.Application]:
        """Submits a pension transfer from 440000 and watches it to its end."""
        submitted = await self.applications.SubmitApplication(submission(request_id), timeout=10)
        assert submitted.application.catalog_version == "2026.1"
        seen = []
        watch = application_pb2.WatchApplicationRequest(name=submitted.application.name)
        async for change in self.applications.WatchApplication(watch, timeout=20):
            seen.append(change.application)
        assert seen[-1].state in TERMINAL
        return seen

    async def verify(self, token: str, holder: str = CITIZEN) -> license_pb2.VerifyLicenseResponse:
        answer: license_pb2.VerifyLicenseResponse = await self.licenses.VerifyLicense(
            license_pb2.VerifyLicenseRequest(
                token=token, expected_type_code=PAYMENT_PROOF, expected_holder_id_number=holder
            ),
            timeout=10,
        )
        return answer


@contextlib.asynccontextmanager
async def federation(tmp_path: Path, *decide: str) -> AsyncIterator[Federation]:
    """A gateway in force on catalog 2026.1 trusting 510000 for 参保缴费凭证, and the stub of
    510000 started with `--decide` flags, reporting through a relay."""
    key = signing.generate_private_key()
    (tmp_path / "body.pub.pem").write_bytes(signing.public_pem(key))
    trust = tmp_path / "trust.json"
    trust.write_text(
        json.dumps({"issuers": {TARGET: {"license_types": [PAYMENT_PROOF]}}}), encoding="utf-8"
    )
    config = gateway_config(
        tmp_path,
        license_trust=trust,
        standards_keys={STANDARDS_BODY: tmp_path / "body.pub.pem"},
    )
    flags = [arg for rule in decide for arg in ("--decide", rule)]
    async with contextlib.AsyncExitStack() as stack:
        gateway = await stack.enter_async_context(running_gateway(config))
        channel = await stack.enter_async_context(grpc.aio.insecure_channel(gateway.address))
        document = (STANDARDS / "catalog" / "2026.1.json").read_bytes()
        await catalog_pb2_grpc.CatalogServiceStub(channel).PublishCatalogVersion(
            catalog_pb2.PublishCatalogVersionRequest(
                signed_document=signing.sign_catalog(document, key, STANDARDS_BODY)
            ),
            timeout=30,
        )
        # grpc ships no types, so the overload for an aio channel cannot be picked by mypy.
        applications = cast(
            "application_pb2_grpc.ApplicationServiceAsyncStub",
            application_pb2_grpc.ApplicationServiceStub(channel),
        )
        relay = Relay(applications)  # type: ignore[abstract]  # serves only the report
        server = grpc.aio.server()
        application_pb2_grpc.add_ApplicationServiceServicer_to_server(relay, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        stack.push_async_callback(server.stop, 0)
        stub_config = parse_args(
            [
                "--region",
                TARGET,
                "--data-dir",
                str(tmp_path / "regions"),
                "--gateway",
                f"127.0.0.1:{port}",
                "--license-trust",
                str(trust),
                "--grace",
                "0.2",
                *flags,
            ],
            {},
        )
        stub = await stack.enter_async_context(running_stub(stub_config))
        gateway.client.set_endpoint(TARGET, stub.address)
        yield Federation(
            gateway,
            stub,
            relay,
            applications,
            cast(
                "license_pb2_grpc.LicenseServiceAsyncStub",
                license_pb2_grpc.LicenseServiceStub(channel),
            ),
        )


def names(seen: list[application_pb2.Application]) -> list[str]:
    """The states the application went through, from its history as the gateway keeps it."""
    return [
        application_pb2.ApplicationState.Name(e.state).removeprefix("APPLICATION_STATE_")
        for e in seen[-1].events
    ]


async def test_a_rule_from_the_command_line_completes_the_case_at_the_gateway(
    tmp_path: Path,
) -> None:
    async with federation(tmp_path, f"{MATTER}=complete:100ms") as world:
        seen = await world.submit_and_watch("by-flag")
        accepted, completed = world.relay.reports
        (token,) = completed.issued_license_tokens
        verdict = await world.verify(token)

    assert names(seen) == ["RECEIVED", "DELIVERED", "ACCEPTED", "COMPLETED"]
    assert (accepted.state, completed.state) == (
        application_pb2.APPLICATION_STATE_ACCEPTED,
        COMPLETED,
    )
    assert verdict.verdict == license_pb2.LICENSE_VERDICT_VALID, verdict.detail
    assert verdict.status_checked
    assert verdict.license.type_code == PAYMENT_PROOF


async def test_rules_from_the_admin_api_complete_and_reject_at_the_gateway(
    tmp_path: Path,
) -> None:
    async with federation(tmp_path) as world:
        await world.stub.admin.SetDecisions(
            admin_pb2.SetDecisionsRequest(
                rules=[
                    admin_pb2.DecisionRule(
                        matter_code=MATTER, action=admin_pb2.DECISION_ACTION_COMPLETE
                    )
                ]
            )
        )
        completed = await world.submit_and_watch("by-admin")
        (token,) = world.relay.reports[-1].issued_license_tokens
        verdict = await world.verify(token)
        await world.stub.admin.SetDecisions(
            admin_pb2.SetDecisionsRequest(
                rules=[
                    admin_pb2.DecisionRule(
                        matter_code="*",
                        action=admin_pb2.DECISION_ACTION_REJECT,
                        reason="MATERIALS_INCOMPLETE",
                    )
                ]
            )
        )
        rejected = await world.submit_and_watch("rejected")

    assert names(completed) == ["RECEIVED", "DELIVERED", "ACCEPTED", "COMPLETED"]
    assert verdict.verdict == license_pb2.LICENSE_VERDICT_VALID, verdict.detail
    assert names(rejected) == ["RECEIVED", "DELIVERED", "REJECTED"]
    assert rejected[-1].state_reason == "MATERIALS_INCOMPLETE"


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        (Faults(forge_output_licenses=True), license_pb2.LICENSE_VERDICT_BAD_SIGNATURE),
        (Faults(mismatch_output_licenses=True), license_pb2.LICENSE_VERDICT_HOLDER_MISMATCH),
    ],
    ids=["forged", "mismatched"],
)
async def test_wrong_output_licences_are_refused_by_the_gateways_verifier(
    tmp_path: Path, faults: Faults, expected: int
) -> None:
    async with federation(tmp_path) as world:
        await world.stub.set_faults(faults)
        submitted = await world.applications.SubmitApplication(submission("wrong"), timeout=10)
        application_id = submitted.application.application_id
        # The relay keeps the completion to itself: what the gateway would make of the report
        # is not this test's question, what its verifier makes of the licence is.
        world.relay.forward = False
        for state in (application_pb2.APPLICATION_STATE_ACCEPTED, COMPLETED):
            await world.stub.admin.DecideCase(
                admin_pb2.DecideCaseRequest(application_id=application_id, state=state),
                timeout=10,
            )
        (token,) = world.relay.reports[-1].issued_license_tokens
        verdict = await world.verify(token)
        genuine = await world.stub.region.FetchLicense(
            region_pb2.FetchLicenseRequest(
                license_type_code=PAYMENT_PROOF,
                holder_id_type=application_pb2.ID_TYPE_CITIZEN_ID,
                holder_id_number=CITIZEN,
                bundle=f"bundles/{uuid.uuid4()}",
                application=f"applications/{application_id}",
            )
        )
        fetched = await world.verify(genuine.license_token)
    assert verdict.verdict == expected, verdict.detail
    assert fetched.verdict == license_pb2.LICENSE_VERDICT_VALID, fetched.detail


# --- a bundle with no one at the provinces ----------------------------------------------------


INSURED, EARLIER, RESIDENCE = "440000", "510000", "110000"
PAPER = application_pb2.PaperMaterial(description="扫描件")


def bundle_request() -> bundle_pb2.SubmitBundleRequest:
    """退休一件事 across three provinces (theme YJS0008): the pension waits for the insurance
    records of two provinces, and the 参保缴费凭证 the first issues flows into it."""
    consent_time = Timestamp()
    consent_time.FromDatetime(datetime(2026, 12, 1, 9, 30, tzinfo=UTC))
    return bundle_pb2.SubmitBundleRequest(
        request_id=f"b-{uuid.uuid4().hex[:12]}",
        origin_region=RESIDENCE,
        theme_code="YJS0008",
        roles=[
            bundle_pb2.RoleBinding(role="insured", region_code=INSURED),
            bundle_pb2.RoleBinding(role="transfer_out", region_code=EARLIER),
            bundle_pb2.RoleBinding(role="residence", region_code=RESIDENCE),
        ],
        applicant=application_pb2.Applicant(
            id_type=application_pb2.ID_TYPE_CITIZEN_ID, id_number=CITIZEN, display_name="张三"
        ),
        form_fields=[
            application_pb2.FormField(key="id_number", value=CITIZEN),
            application_pb2.FormField(key="name", value="张三"),
            application_pb2.FormField(key="retire_date", value="2026-12-31"),
            application_pb2.FormField(key="bank_account", value="6222020200112233445"),
        ],
        materials=[application_pb2.Material(material_id=f"TM0{n}", paper=PAPER) for n in (1, 2, 3)],
        consent=bundle_pb2.Consent(
            flows=[bundle_pb2.FlowConsent(member_id="pension", material_id="M04")],
            consent_time=consent_time,
            channel="app",
        ),
    )


async def test_a_bundle_runs_to_its_end_when_the_stubs_decide_by_rule(tmp_path: Path) -> None:
    async with start_world(
        tmp_path,
        (INSURED, EARLIER, RESIDENCE),
        bootstrap_catalogs=("catalog/2025.1.json", "catalog/2026.1.json"),
    ) as world:
        for stub in world.stubs.values():
            await stub.admin.SetDecisions(
                admin_pb2.SetDecisionsRequest(
                    rules=[
                        admin_pb2.DecisionRule(
                            matter_code="*", action=admin_pb2.DECISION_ACTION_COMPLETE
                        )
                    ]
                )
            )
        service = bundle_pb2_grpc.BundleServiceStub(world.channel)
        submitted = await service.SubmitBundle(bundle_request(), timeout=10)
        watch = bundle_pb2.WatchBundleRequest(name=submitted.bundle.name)
        async for change in service.WatchBundle(watch, timeout=30):
            final = change.bundle
        members = {
            m.member_id: (
                await world.applications.GetApplication(
                    application_pb2.GetApplicationRequest(name=m.application)
                )
            ).application
            for m in final.members
        }

    assert final.state == bundle_pb2.BUNDLE_STATE_COMPLETED
    assert {name: app.state for name, app in members.items()} == dict.fromkeys(
        ("records", "earlier", "pension"), COMPLETED
    )
    (issued,) = members["records"].issued_licenses
    assert issued.license_type_code == PAYMENT_PROOF
    flowed = next(m for m in members["pension"].materials if m.material_id == "M04")
    assert (flowed.flowed_from, flowed.license_token) == ("member:records", issued.license_token)
    (retirement,) = members["pension"].issued_licenses
    assert retirement.license_type_code == "11100000000099119U001"  # 退休证明
