"""`tongban demo`: a fresh federation in a temporary directory and a scripted journey.

Region stubs run as real processes; the gateway runs in this process on a free port. Every
step prints what happened and whether it matched what a citizen or a province should see; the
command exits 1 if any step did not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from gateway.api.v1 import (
    application_pb2 as app_pb,
)
from gateway.api.v1 import (
    application_pb2_grpc,
    bundle_pb2,
    bundle_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    license_pb2,
    license_pb2_grpc,
)
from gateway.app.config import GatewayConfig
from gateway.app.server import RunningGateway, running_gateway
from gateway.applications.outbox import DeliveryConfig
from gateway.catalog import signing
from gateway.errors import unpack_details
from gateway.tools.federation import AnnouncedProcess
from gateway.tools.local import running_local
from gateway.tools.local_files import dev_standards_key
from region_stubs.admin.v1 import admin_pb2, admin_pb2_grpc

ORIGIN, TARGET, THIRD = "440000", "510000", "520000"
RESIDENCE = "110000"
REGIONS = (ORIGIN, TARGET, THIRD, "330000", RESIDENCE)
CITIZEN = "110105199003071239"
ID_CARD = "11100000000013127D001"
PARCEL = "11100000000099063Q001"  # 参保缴费凭证, the result of 社会保险参保缴费记录查询
RETIREMENT = "11100000000099119U001"  # the result of 职工养老保险待遇申领
MATTER = "002035011000"  # 异地就医结算备案: M01 居民身份证 may be a licence


@dataclass
class Journey:
    """Collects the outcome of every step."""

    failures: list[str] = field(default_factory=list)
    steps: int = 0

    async def step(self, title: str, action: Callable[[], Awaitable[str]]) -> None:
        self.steps += 1
        try:
            detail = await action()
        except Exception as exc:  # a demo reports every failure and goes on
            self.failures.append(title)
            print(f"  ✗ {title}\n      {type(exc).__name__}: {exc}", flush=True)
        else:
            print(f"  ✓ {title}\n      {detail}", flush=True)


def check(condition: bool, message: str) -> None:
    """Fails the current step with `message` unless `condition` holds."""
    if not condition:
        raise AssertionError(message)


async def expect_rpc_error(call: Awaitable[object], code: grpc.StatusCode) -> str:
    """Awaits a call that must fail with `code`; returns its ErrorInfo reason."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        check(error.code() == code, f"expected {code.name}, got {error.code().name}")
        status = rpc_status.from_call(error)
        reasons = [getattr(d, "reason", "") for d in unpack_details(status)] if status else []
        return f"{error.code().name} {next((r for r in reasons if r), '')}"
    raise AssertionError(f"expected {code.name}, the call succeeded")


@contextlib.asynccontextmanager
async def federation(
    data_dir: Path, standards: Path
) -> AsyncIterator[tuple[RunningGateway, dict[str, AnnouncedProcess]]]:
    """The gateway (in process, free port) and one stub process per province."""
    trust = data_dir / "license-trust.json"
    trust.write_text(
        json.dumps(
            {
                "issuers": {
                    code: {"license_types": [ID_CARD, PARCEL, RETIREMENT]} for code in REGIONS
                },
                "status_lists": {
                    "min_ttl_seconds": 1,
                    "max_ttl_seconds": 2,
                    "refresh_min_interval_seconds": 1,
                },
            }
        ),
        encoding="utf-8",
    )
    standards_key = dev_standards_key(data_dir)
    config = GatewayConfig(
        port=0,
        data_dir=data_dir,
        standards_dir=standards,
        metrics_port=-1,
        license_trust=trust,
        standards_keys={standards_key.body: standards_key.public_key},
        delivery=DeliveryConfig(dispatch_interval=0.1, redeliver_backoff_max=0.5),
        grace=1.0,
    )
    async with running_local(config, REGIONS) as (gateway, stubs):
        yield gateway, stubs


async def run_demo(standards: Path, *, keep: bool = False) -> int:
    """Runs the journey; returns the exit status."""
    data_dir = Path(tempfile.mkdtemp(prefix="tongban-demo-"))
    print(f"Tongban demo — a fresh federation in {data_dir}\n", flush=True)
    journey = Journey()
    try:
        async with federation(data_dir, standards) as (gateway, stubs):
            name = await _journey(journey, gateway, stubs, data_dir)
        async with federation_restart(data_dir, standards) as gateway_again:
            await _after_restart(journey, gateway_again, name)
    finally:
        if not keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    print(f"\n{journey.steps - len(journey.failures)}/{journey.steps} steps as expected.")
    if journey.failures:
        print("Not as expected: " + "; ".join(journey.failures), file=sys.stderr)
        return 1
    return 0


@contextlib.asynccontextmanager
async def federation_restart(data_dir: Path, standards: Path) -> AsyncIterator[RunningGateway]:
    """The gateway alone, restarted on the same store."""
    config = GatewayConfig(
        port=0, data_dir=data_dir, standards_dir=standards, metrics_port=-1, grace=1.0
    )
    async with running_gateway(config) as gateway:
        yield gateway


class Steps:
    """The journey's steps against one running federation; each returns what it saw."""

    def __init__(
        self, gateway: RunningGateway, stubs: dict[str, AnnouncedProcess], data_dir: Path
    ) -> None:
        self.gateway = gateway
        self.data_dir = data_dir
        self.channel = grpc.aio.insecure_channel(gateway.address)
        self.catalog = catalog_pb2_grpc.CatalogServiceStub(self.channel)
        self.applications = application_pb2_grpc.ApplicationServiceStub(self.channel)
        self.licenses = license_pb2_grpc.LicenseServiceStub(self.channel)
        self.bundles = bundle_pb2_grpc.BundleServiceStub(self.channel)
        self.stub_channels = {c: grpc.aio.insecure_channel(s.address) for c, s in stubs.items()}
        self.admin = {
            c: admin_pb2_grpc.RegionAdminServiceStub(ch) for c, ch in self.stub_channels.items()
        }
        today = datetime.now(UTC).date()
        origin_list = gateway.registry.snapshot.region_indexes()[ORIGIN]
        self.local = next(
            e.local_code
            for e in origin_list.live_entries(MATTER, today)
            if e.national_codes == (MATTER,)
        )
        self.token = ""
        self.token_id = ""
        self.name = ""

    async def close(self) -> None:
        await self.channel.close()
        for channel in self.stub_channels.values():
            await channel.close()

    def request(self, request_id: str, **overrides: object) -> app_pb.SubmitApplicationRequest:
        values: dict[str, object] = {
            "request_id": request_id,
            "origin_region": ORIGIN,
            "target_region": TARGET,
            "local_matter_code": self.local,
            "applicant": app_pb.Applicant(
                id_type=app_pb.ID_TYPE_CITIZEN_ID, id_number=CITIZEN, display_name="张三"
            ),
            "form_fields": [app_pb.FormField(key="destination_city", value="成都")],
            "materials": [
                app_pb.Material(material_id="M01", license_token=self.token),
                app_pb.Material(
                    material_id="M03", paper=app_pb.PaperMaterial(description="备案登记表")
                ),
            ],
        }
        values.update(overrides)
        return app_pb.SubmitApplicationRequest(**values)  # type: ignore[arg-type]

    async def health(self) -> str:
        targets = {"gateway": self.channel}
        targets.update({f"stub {c}": ch for c, ch in self.stub_channels.items()})
        for name, channel in targets.items():
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            check(reply.status == health_pb2.HealthCheckResponse.SERVING, f"{name} not serving")
        return f"gateway {self.gateway.address} and {len(self.admin)} region stubs are SERVING"

    async def resolve(self) -> str:
        current = await self.catalog.GetCatalogVersion(
            catalog_pb2.GetCatalogVersionRequest(name="catalogVersions/-")
        )
        translated = await self.catalog.TranslateLocalCode(
            catalog_pb2.TranslateLocalCodeRequest(
                from_region_code=ORIGIN, local_code=self.local, to_region_code=TARGET
            )
        )
        check(translated.source.matter.code == MATTER, "wrong national matter")
        version = current.catalog_version
        return (
            f"catalog {version.version} ({version.matter_count} matters): {ORIGIN} {self.local}"
            f" → national {MATTER} {translated.source.matter.display_name}"
            f" → {TARGET} {translated.targets[0].local_code}"
        )

    async def issue_and_verify(self) -> str:
        issued = await self.admin[ORIGIN].IssueLicense(
            admin_pb2.IssueLicenseRequest(
                license_type_code=ID_CARD,
                license_number="440305199003071239",
                holder_id_type=app_pb.ID_TYPE_CITIZEN_ID,
                holder_id_number=CITIZEN,
                valid_days=3650,
            )
        )
        self.token = issued.token
        verdict = await self.licenses.VerifyLicense(
            license_pb2.VerifyLicenseRequest(token=issued.token)
        )
        check(verdict.verdict == license_pb2.LICENSE_VERDICT_VALID, verdict.detail)
        self.token_id = verdict.license.token_id
        return f"{ORIGIN} issued 居民身份证 licence {issued.identifier}; the gateway says VALID"

    async def submit(self) -> str:
        response = await self.applications.SubmitApplication(self.request("demo-1"), timeout=10)
        app = response.application
        check(app.state == app_pb.APPLICATION_STATE_DELIVERED, f"state {app.state}")
        check(app.materials[0].waived, "the licence did not waive the paper")
        self.name = app.name
        return (
            f"{app.name} DELIVERED to {TARGET} as {app.target_local_matter_code},"
            f" receipt {app.receipt_id}; M01 waived by {app.materials[0].license_identifier}"
        )

    async def replay(self) -> str:
        again = await self.applications.SubmitApplication(self.request("demo-1"), timeout=10)
        counters = await self.admin[TARGET].GetCounters(admin_pb2.GetCountersRequest())
        check(again.replayed and counters.cases_created == 1, "a replay created a second case")
        reused = await expect_rpc_error(
            self.applications.SubmitApplication(self.request("demo-1", form_fields=[])),
            grpc.StatusCode.ALREADY_EXISTS,
        )
        return f"same request id replayed, {TARGET} has 1 case; other content → {reused}"

    async def decide(self) -> str:
        seen: list[str] = []

        async def watch() -> None:
            request = app_pb.WatchApplicationRequest(name=self.name)
            async for item in self.applications.WatchApplication(request):
                state = app_pb.ApplicationState.Name(item.application.state)
                seen.append(state.removeprefix("APPLICATION_STATE_"))

        watcher = asyncio.create_task(watch())
        application_id = self.name.split("/")[1]
        for state in (app_pb.APPLICATION_STATE_ACCEPTED, app_pb.APPLICATION_STATE_COMPLETED):
            await self.admin[TARGET].DecideCase(
                admin_pb2.DecideCaseRequest(application_id=application_id, state=state)
            )
        await asyncio.wait_for(watcher, 10)
        check(seen[-1:] == ["COMPLETED"], f"the watch ended in {seen[-1:]}")
        return f"{TARGET} accepted and completed the case; the watch saw {' → '.join(seen)}"

    async def errors(self) -> str:
        cases = [
            (self.request("e1", local_matter_code="NO-SUCH-CODE"), grpc.StatusCode.NOT_FOUND),
            (self.request("e2", target_region="990000"), grpc.StatusCode.NOT_FOUND),
            (self.request("e3 bad", origin_region="44"), grpc.StatusCode.INVALID_ARGUMENT),
        ]
        found = [
            await expect_rpc_error(self.applications.SubmitApplication(r), code)
            for r, code in cases
        ]
        return "unknown code, unknown region, malformed request → " + "; ".join(found)

    async def queued_then_delivered(self) -> str:
        faults = self.admin[TARGET].SetFaults
        await faults(admin_pb2.SetFaultsRequest(faults=admin_pb2.FaultSettings(down=True)))
        response = await self.applications.SubmitApplication(self.request("demo-2"), timeout=1.0)
        check(response.application.state == app_pb.APPLICATION_STATE_QUEUED, "not queued")
        await faults(admin_pb2.SetFaultsRequest(faults=admin_pb2.FaultSettings()))
        name = response.application.name
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = await self.applications.GetApplication(app_pb.GetApplicationRequest(name=name))
            app = got.application
            if app.state == app_pb.APPLICATION_STATE_DELIVERED:
                return (
                    f"{TARGET} down: QUEUED within a 1 s deadline; back up: delivered after"
                    f" {app.delivery_attempts} attempts, receipt {app.receipt_id}"
                )
            await asyncio.sleep(0.2)
        raise AssertionError("the queued application was not delivered")

    async def revoke(self) -> str:
        await self.admin[ORIGIN].SetLicenseStatus(
            admin_pb2.SetLicenseStatusRequest(
                token_id=self.token_id, status=admin_pb2.LICENSE_STATUS_REVOKED
            )
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            verdict = await self.licenses.VerifyLicense(
                license_pb2.VerifyLicenseRequest(token=self.token)
            )
            if verdict.verdict == license_pb2.LICENSE_VERDICT_REVOKED:
                refused = await expect_rpc_error(
                    self.applications.SubmitApplication(self.request("demo-3")),
                    grpc.StatusCode.INVALID_ARGUMENT,
                )
                return f"{ORIGIN} revoked it: verdict REVOKED; an application using it → {refused}"
            await asyncio.sleep(0.3)
        raise AssertionError("the gateway did not see the revocation")

    async def publish_themes(self) -> str:
        standards_key = dev_standards_key(self.data_dir)
        key = signing.load_private_key(standards_key.private_key)
        document = (self.gateway.config.standards_dir / "catalog" / "2026.1.json").read_bytes()
        signed = signing.sign_catalog(document, key, standards_key.body)
        published = await self.catalog.PublishCatalogVersion(
            catalog_pb2.PublishCatalogVersionRequest(signed_document=signed)
        )
        added = list(published.diff.added_theme_codes)
        check(published.catalog_version.state == catalog_pb2.CATALOG_VERSION_STATE_CURRENT, "")
        return f"2026.1 in force: {len(added)} themes ({', '.join(added)})"

    async def _decide(self, rules: dict[str, tuple[int, str]]) -> None:
        """Each province's platform decides every case on its own: (action, reason)."""
        for code, (action, reason) in rules.items():
            await self.admin[code].SetDecisions(
                admin_pb2.SetDecisionsRequest(
                    rules=[
                        admin_pb2.DecisionRule(
                            matter_code="*",
                            action=action,  # type: ignore[arg-type]
                            delay=Duration(seconds=1),
                            reason=reason,
                        )
                    ]
                )
            )

    async def _bundle(self, request_id: str) -> bundle_pb2.Bundle:
        paper = app_pb.PaperMaterial(description="扫描件")
        answer = await self.bundles.SubmitBundle(
            bundle_pb2.SubmitBundleRequest(
                request_id=request_id,
                origin_region=RESIDENCE,
                theme_code="YJS0008",
                roles=[
                    bundle_pb2.RoleBinding(role="insured", region_code=ORIGIN),
                    bundle_pb2.RoleBinding(role="transfer_out", region_code=TARGET),
                    bundle_pb2.RoleBinding(role="residence", region_code=RESIDENCE),
                ],
                applicant=app_pb.Applicant(
                    id_type=app_pb.ID_TYPE_CITIZEN_ID, id_number=CITIZEN, display_name="张三"
                ),
                form_fields=[
                    app_pb.FormField(key="id_number", value=CITIZEN),
                    app_pb.FormField(key="name", value="张三"),
                    app_pb.FormField(key="retire_date", value="2026-12-31"),
                    app_pb.FormField(key="bank_account", value="6222020200112233445"),
                ],
                materials=[
                    app_pb.Material(material_id=m, paper=paper) for m in ("TM01", "TM02", "TM03")
                ],
                consent=bundle_pb2.Consent(
                    flows=[bundle_pb2.FlowConsent(member_id="pension", material_id="M04")],
                    consent_time=Timestamp(seconds=int(time.time())),
                    channel="app",
                ),
            ),
            timeout=10,
        )
        bundle: bundle_pb2.Bundle = answer.bundle
        first = {m.member_id: m.state for m in bundle.members}
        # Delivered at once (a province deciding within the call may show ACCEPTED already).
        at_once = {app_pb.APPLICATION_STATE_DELIVERED, app_pb.APPLICATION_STATE_ACCEPTED}
        check(
            first["records"] in at_once
            and first["earlier"] in at_once
            and first["pension"] == app_pb.APPLICATION_STATE_WAITING,
            f"members at once: {first}",
        )
        last = bundle
        watch = self.bundles.WatchBundle(bundle_pb2.WatchBundleRequest(name=bundle.name))
        async with asyncio.timeout(60):
            async for item in watch:
                last = item.bundle
        return last

    async def bundle(self) -> str:
        complete = (admin_pb2.DECISION_ACTION_COMPLETE, "")
        await self._decide({ORIGIN: complete, TARGET: complete, RESIDENCE: complete})
        done = await self._bundle("demo-bundle-1")
        check(done.state == bundle_pb2.BUNDLE_STATE_COMPLETED, f"ended {done.state_reason}")
        pension = next(m for m in done.members if m.member_id == "pension")
        got = await self.applications.GetApplication(
            app_pb.GetApplicationRequest(name=pension.application)
        )
        flowed = next(m for m in got.application.materials if m.material_id == "M04")
        check(flowed.flowed_from == "member:records" and flowed.waived, "no licence flowed")
        rated = await self.bundles.RateBundle(
            bundle_pb2.RateBundleRequest(
                name=done.name,
                rating=bundle_pb2.Rating(
                    score=5, reasons=[bundle_pb2.RATING_REASON_NO_REPEATED_MATERIALS]
                ),
            )
        )
        return (
            f"YJS0008: records ({ORIGIN}) ∥ earlier ({TARGET}) delivered at once, pension "
            f"({RESIDENCE}) waited; COMPLETED, the 参保缴费凭证 {ORIGIN} issued flowed into "
            f"pension's M04 (verified, never uploaded); rated {rated.bundle.ratings[0].score}/5"
        )

    async def bundle_rejected(self) -> str:
        await self._decide({TARGET: (admin_pb2.DECISION_ACTION_REJECT, "缴费记录不完整")})
        done = await self._bundle("demo-bundle-2")
        pension = next(m for m in done.members if m.member_id == "pension")
        check(done.state == bundle_pb2.BUNDLE_STATE_PARTIALLY_COMPLETED, done.state_reason)
        check(pension.state == app_pb.APPLICATION_STATE_CANCELLED, "pension not cancelled")
        await self._decide({c: (admin_pb2.DECISION_ACTION_MANUAL, "") for c in REGIONS})
        return f"PARTIALLY_COMPLETED: {done.state_reason}"

    async def publish(self) -> str:
        standards_key = dev_standards_key(self.data_dir)
        key = signing.load_private_key(standards_key.private_key)
        document = (self.gateway.config.standards_dir / "catalog" / "2025.2.json").read_bytes()
        signed = signing.sign_catalog(document, key, standards_key.body)
        published = await self.catalog.PublishCatalogVersion(
            catalog_pb2.PublishCatalogVersionRequest(signed_document=signed)
        )
        diff = published.diff
        tampered = await expect_rpc_error(
            self.catalog.PublishCatalogVersion(
                catalog_pb2.PublishCatalogVersionRequest(signed_document=signed[:-4] + "AAAA")
            ),
            grpc.StatusCode.UNAUTHENTICATED,
        )
        return (
            f"2025.2: +{len(diff.added_matter_codes)} −{len(diff.removed_matter_codes)}"
            f" ~{len(diff.changed_matters)} matters, {len(published.impacts)} provinces"
            f" impacted; a tampered copy → {tampered}"
        )


async def _journey(
    journey: Journey, gateway: RunningGateway, stubs: dict[str, AnnouncedProcess], data_dir: Path
) -> str:
    steps = Steps(gateway, stubs, data_dir)
    print("The journey:", flush=True)
    try:
        await journey.step("every service is healthy", steps.health)
        await journey.step("a local code resolves and translates across dialects", steps.resolve)
        await journey.step(
            "a province issues an e-licence; the gateway verifies it", steps.issue_and_verify
        )
        await journey.step(
            "an application crosses provinces, a licence waiving paper", steps.submit
        )
        await journey.step("a retried submission is not delivered twice", steps.replay)
        await journey.step("the handling province reports back; the platform watches", steps.decide)
        await journey.step("bad requests get distinct errors; nothing is delivered", steps.errors)
        await journey.step(
            "a province goes down: queued, then delivered once", steps.queued_then_delivered
        )
        await journey.step("a revoked licence is refused", steps.revoke)
        await journey.step("a standards body publishes a signed catalog version", steps.publish)
        await journey.step("2026.1 brings the themes (一件事)", steps.publish_themes)
        await journey.step(
            "一件事 across three provinces: parallel members, a licence flowing to the third",
            steps.bundle,
        )
        await journey.step(
            "a rejected member cancels its dependant; the others go on", steps.bundle_rejected
        )
    finally:
        await steps.close()
    return steps.name


async def _after_restart(journey: Journey, gateway: RunningGateway, name: str) -> None:
    async def same() -> str:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = application_pb2_grpc.ApplicationServiceStub(channel)
            got = await stub.GetApplication(app_pb.GetApplicationRequest(name=name))
            versions = await catalog_pb2_grpc.CatalogServiceStub(channel).ListCatalogVersions(
                catalog_pb2.ListCatalogVersionsRequest()
            )
        check(got.application.state == app_pb.APPLICATION_STATE_COMPLETED, "state lost")
        listed = [v.version for v in versions.catalog_versions]
        return f"after a restart: {name} is still COMPLETED; catalog versions {listed}"

    await journey.step("everything survives a gateway restart", same)
