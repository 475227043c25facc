"""E-licences end to end across processes: region stubs as real processes, the gateway in
process with a trust file of short bounds, every step driven through the public RPCs.

The federation: 440000 issues 居民身份证 and 营业执照 licences and is trusted for both, 510000
handles the applications (and is trusted for 居民身份证), 520000 is trusted for 营业执照 only.
The 营业执照 type fails open when its status list cannot be had; 居民身份证 fails closed.

Bounds are short so that following a change is quick: the gateway keeps a JWKS and a status
list at most 1 s. "Within its bound" is asserted with generous slack for a loaded machine:
the point is that the gateway follows by itself, without a restart or a flush.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from conftest import eventually, gateway_config, rich_error
from google.protobuf import duration_pb2

from gateway.api.v1 import application_pb2 as app_pb
from gateway.api.v1 import application_pb2_grpc, license_pb2, license_pb2_grpc
from gateway.app.server import RunningGateway
from gateway.tools.federation import AnnouncedProcess
from gateway.tools.local import running_local
from region_stubs.admin.v1 import admin_pb2, admin_pb2_grpc

pytestmark = pytest.mark.slow

ORIGIN, TARGET, BIZ_ONLY = "440000", "510000", "520000"
ID_CARD = "11100000000013127D001"  # 居民身份证: material M01 of the matter below
BUSINESS = "11100000MB0143028R001"  # 营业执照
MATTER = "002035011000"  # 异地就医结算备案
CITIZEN = "110105199003071239"
OTHER_CITIZEN = "11010519491231002X"
AGENCY = "11440300MB2C92050G"
BOUND = 1.0
"""The gateway's longest JWKS and status-list lifetime here, in seconds."""
SLACK = 3.0
"""Allowance for a loaded machine (fetches, scheduling) on top of a bound."""
V = license_pb2


@dataclass
class Federation:
    gateway: RunningGateway
    stubs: dict[str, AnnouncedProcess]
    admin: dict[str, admin_pb2_grpc.RegionAdminServiceStub]
    licenses: license_pb2_grpc.LicenseServiceStub
    applications: application_pb2_grpc.ApplicationServiceStub
    local_code: str

    async def issue(
        self,
        region: str = ORIGIN,
        type_code: str = ID_CARD,
        holder: str = CITIZEN,
        **fields: object,
    ) -> admin_pb2.IssueLicenseResponse:
        response: admin_pb2.IssueLicenseResponse = await self.admin[region].IssueLicense(
            admin_pb2.IssueLicenseRequest(
                license_type_code=type_code,
                license_number="4400001234567",
                holder_id_type=app_pb.ID_TYPE_CITIZEN_ID,
                holder_id_number=holder,
                issuing_agency_code=AGENCY,
                **fields,  # type: ignore[arg-type]
            )
        )
        return response

    async def verify(self, token: str, **fields: str) -> license_pb2.VerifyLicenseResponse:
        response: license_pb2.VerifyLicenseResponse = await self.licenses.VerifyLicense(
            license_pb2.VerifyLicenseRequest(token=token, **fields)
        )
        assert CITIZEN not in str(response)
        return response

    async def submit(self, token: str, n: int) -> app_pb.Application:
        """Submits an application whose M01 is the licence; returns it or raises."""
        response: app_pb.SubmitApplicationResponse = await self.applications.SubmitApplication(
            app_pb.SubmitApplicationRequest(
                request_id=f"e2e-{n}-{time.monotonic_ns()}",
                origin_region=ORIGIN,
                target_region=TARGET,
                local_matter_code=self.local_code,
                applicant=app_pb.Applicant(
                    id_type=app_pb.ID_TYPE_CITIZEN_ID, id_number=CITIZEN, display_name="张三"
                ),
                form_fields=[app_pb.FormField(key="destination_city", value="成都")],
                materials=[
                    app_pb.Material(material_id="M01", license_token=token),
                    app_pb.Material(
                        material_id="M03", paper=app_pb.PaperMaterial(description="备案登记表")
                    ),
                ],
            )
        )
        return response.application

    async def set_status(self, token_id: str, status: admin_pb2.LicenseStatus.ValueType) -> None:
        await self.admin[ORIGIN].SetLicenseStatus(
            admin_pb2.SetLicenseStatusRequest(token_id=token_id, status=status)
        )

    async def set_down(self, region: str, down: bool) -> None:
        await self.admin[region].SetFaults(
            admin_pb2.SetFaultsRequest(faults=admin_pb2.FaultSettings(down=down))
        )


def write_trust(path: Path, fail_open: tuple[str, ...] = (BUSINESS,)) -> Path:
    path.write_text(
        json.dumps(
            {
                "issuers": {
                    ORIGIN: {"license_types": [ID_CARD, BUSINESS]},
                    TARGET: {"license_types": [ID_CARD]},
                    BIZ_ONLY: {"license_types": [BUSINESS]},
                },
                "keys": {
                    "min_ttl_seconds": 0.5,
                    "max_ttl_seconds": BOUND,
                    "unknown_kid_min_interval_seconds": 0.5,
                    "max_stale_seconds": 60,
                    "fetch_timeout_seconds": 2,
                },
                "status_lists": {
                    "min_ttl_seconds": 0.5,
                    "max_ttl_seconds": BOUND,
                    "refresh_min_interval_seconds": 0.5,
                    "fetch_timeout_seconds": 2,
                },
                "unreachable_policies": dict.fromkeys(fail_open, "FAIL_OPEN"),
            }
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture
async def federation(tmp_path: Path) -> AsyncIterator[Federation]:
    async with start_federation(tmp_path) as running:
        yield running


@contextlib.asynccontextmanager
async def start_federation(
    tmp_path: Path, fail_open: tuple[str, ...] = (BUSINESS,)
) -> AsyncIterator[Federation]:
    config = gateway_config(tmp_path, license_trust=write_trust(tmp_path / "trust.json", fail_open))
    async with running_local(config, (ORIGIN, TARGET, BIZ_ONLY)) as (gateway, stubs):
        channels = {code: grpc.aio.insecure_channel(s.address) for code, s in stubs.items()}
        channel = grpc.aio.insecure_channel(gateway.address)
        today = datetime.now(UTC).date()
        local = next(
            e.local_code
            for e in gateway.registry.snapshot.region_indexes()[ORIGIN].live_entries(MATTER, today)
            if e.national_codes == (MATTER,)
        )
        try:
            yield Federation(
                gateway,
                stubs,
                {c: admin_pb2_grpc.RegionAdminServiceStub(ch) for c, ch in channels.items()},
                license_pb2_grpc.LicenseServiceStub(channel),
                application_pb2_grpc.ApplicationServiceStub(channel),
                local,
            )
        finally:
            await channel.close()
            for stub_channel in channels.values():
                await stub_channel.close()


async def verdict_becomes(
    federation: Federation, token: str, verdict: int, *, within: float
) -> float:
    async def reached() -> bool:
        return (await federation.verify(token)).verdict == verdict

    return await eventually(reached, within=within, what=f"the verdict {verdict}")


async def refused_with(federation: Federation, token: str) -> str:
    """Submits with the licence, expecting LICENSE_INVALID; returns its verdict."""
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await federation.submit(token, 0)
    info, bad = rich_error(refused.value)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.reason == "LICENSE_INVALID"
    assert bad is not None
    assert [v.field for v in bad.field_violations] == ["materials[0].license_token"]
    return str(info.metadata["verdict"])


def tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    flipped = "A" if signature[5] != "A" else "B"
    return f"{header}.{payload}.{signature[:5]}{flipped}{signature[6:]}"


def with_kid(token: str, kid: str) -> str:
    header, payload, signature = token.split(".")
    fields = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    fields["kid"] = kid
    encoded = base64.urlsafe_b64encode(json.dumps(fields).encode()).rstrip(b"=").decode()
    return f"{encoded}.{payload}.{signature}"


# -- every verdict, through VerifyLicense and through a submission ------------------------------


async def test_every_verdict_through_verify_license_and_submission(
    federation: Federation,
) -> None:
    f = federation
    valid = await f.issue()
    revoked = await f.issue()
    suspended = await f.issue()
    await f.set_status(revoked.token_id, admin_pb2.LICENSE_STATUS_REVOKED)
    await f.set_status(suspended.token_id, admin_pb2.LICENSE_STATUS_SUSPENDED)
    cases = {
        V.LICENSE_VERDICT_VALID: valid.token,
        V.LICENSE_VERDICT_EXPIRED: (
            await f.issue(valid_days=1, not_before_offset_seconds=-3 * 86400)
        ).token,
        V.LICENSE_VERDICT_NOT_YET_VALID: (await f.issue(not_before_offset_seconds=86400)).token,
        V.LICENSE_VERDICT_WRONG_TYPE: (await f.issue(type_code=BUSINESS)).token,
        V.LICENSE_VERDICT_HOLDER_MISMATCH: (await f.issue(holder=OTHER_CITIZEN)).token,
        V.LICENSE_VERDICT_UNTRUSTED_ISSUER: (await f.issue(region=BIZ_ONLY)).token,
        V.LICENSE_VERDICT_REVOKED: revoked.token,
        V.LICENSE_VERDICT_SUSPENDED: suspended.token,
        V.LICENSE_VERDICT_BAD_SIGNATURE: tampered(valid.token),
        V.LICENSE_VERDICT_UNKNOWN_KEY: with_kid(valid.token, "k" * 43),
        V.LICENSE_VERDICT_MALFORMED: "e30.e30.c2ln",
    }
    for verdict, token in cases.items():
        answer = await f.verify(
            token, expected_type_code=ID_CARD, expected_holder_id_number=CITIZEN
        )
        name = V.LicenseVerdict.Name(verdict)
        assert answer.verdict == verdict, (name, answer.detail)
        assert answer.status_checked == (
            verdict
            in (V.LICENSE_VERDICT_VALID, V.LICENSE_VERDICT_REVOKED, V.LICENSE_VERDICT_SUSPENDED)
        ), name
        if verdict == V.LICENSE_VERDICT_VALID:
            application = await f.submit(token, 1)
            assert application.state == app_pb.APPLICATION_STATE_DELIVERED
            m01 = application.materials[0]
            assert (m01.waived, m01.license_identifier) == (True, valid.identifier)
            assert m01.license_status_checked
        else:
            assert await refused_with(f, token) == name.removeprefix("LICENSE_VERDICT_"), name
    # The province's status list cannot be had: the 居民身份证 type fails closed.
    await f.set_down(ORIGIN, True)
    await verdict_becomes(
        f, valid.token, V.LICENSE_VERDICT_STATUS_UNAVAILABLE, within=BOUND + SLACK
    )
    assert await refused_with(f, valid.token) == "STATUS_UNAVAILABLE"


# -- rotation ----------------------------------------------------------------------------------


async def test_rotation_publishes_before_signing_overlaps_then_retires(
    federation: Federation,
) -> None:
    f, admin = federation, federation.admin[ORIGIN]
    old = await f.issue()
    assert (await f.verify(old.token)).verdict == V.LICENSE_VERDICT_VALID
    delay = duration_pb2.Duration()
    delay.FromTimedelta(timedelta(seconds=BOUND + 0.5))  # longer than the gateway keeps a JWKS
    rotated = await admin.RotateLicenseKeys(
        admin_pb2.RotateLicenseKeysRequest(
            algorithm=admin_pb2.LICENSE_SIGNING_ALGORITHM_ES256, activation_delay=delay
        )
    )
    assert rotated.signing_key_id == old.key_id
    assert list(rotated.key_ids) == [old.key_id, rotated.key_id]
    during = await f.issue()
    assert during.key_id == old.key_id  # published, not signing yet
    assert (await f.verify(during.token)).verdict == V.LICENSE_VERDICT_VALID
    wait = rotated.activate_time.ToDatetime(tzinfo=UTC) - datetime.now(UTC)
    await asyncio.sleep(max(0.0, wait.total_seconds()) + 0.05)
    new = await f.issue()
    assert new.key_id == rotated.key_id
    # The first token the new key signs verifies at once: the gateway already had the key.
    first = await f.verify(new.token)
    assert first.verdict == V.LICENSE_VERDICT_VALID, first.detail
    assert first.license.key_id == rotated.key_id
    assert (await f.verify(old.token)).verdict == V.LICENSE_VERDICT_VALID  # the overlap
    retired = await admin.RotateLicenseKeys(
        admin_pb2.RotateLicenseKeysRequest(retire_key_id=old.key_id)
    )
    assert list(retired.key_ids) == [rotated.key_id]
    took = await verdict_becomes(f, old.token, V.LICENSE_VERDICT_UNKNOWN_KEY, within=BOUND + SLACK)
    assert took <= BOUND + SLACK
    assert (await f.verify(during.token)).verdict == V.LICENSE_VERDICT_UNKNOWN_KEY
    assert (await f.verify(new.token)).verdict == V.LICENSE_VERDICT_VALID
    application = await f.submit(new.token, 2)
    assert application.materials[0].waived


# -- revocation and suspension ---------------------------------------------------------------------


async def test_revocation_and_suspension_are_followed_within_the_bound(
    federation: Federation,
) -> None:
    f = federation
    licence = await f.issue()
    assert (await f.verify(licence.token)).verdict == V.LICENSE_VERDICT_VALID
    assert (await f.submit(licence.token, 3)).materials[0].waived
    await f.set_status(licence.token_id, admin_pb2.LICENSE_STATUS_SUSPENDED)
    await verdict_becomes(f, licence.token, V.LICENSE_VERDICT_SUSPENDED, within=BOUND + SLACK)
    assert await refused_with(f, licence.token) == "SUSPENDED"
    await f.set_status(licence.token_id, admin_pb2.LICENSE_STATUS_VALID)  # 暂扣发还
    await verdict_becomes(f, licence.token, V.LICENSE_VERDICT_VALID, within=BOUND + SLACK)
    await f.set_status(licence.token_id, admin_pb2.LICENSE_STATUS_REVOKED)
    await verdict_becomes(f, licence.token, V.LICENSE_VERDICT_REVOKED, within=BOUND + SLACK)
    assert await refused_with(f, licence.token) == "REVOKED"
    # Revocation is for good, as seen from the gateway: it stays refused.
    await asyncio.sleep(BOUND + 0.2)
    assert (await f.verify(licence.token)).verdict == V.LICENSE_VERDICT_REVOKED


# -- a province that cannot be reached ------------------------------------------------------------


async def test_an_unreachable_province_fails_closed_or_open_per_type(
    federation: Federation,
) -> None:
    f = federation
    id_card = await f.issue()
    business = await f.issue(type_code=BUSINESS)
    for token in (id_card.token, business.token):
        answer = await f.verify(token)
        assert (answer.verdict, answer.status_checked) == (V.LICENSE_VERDICT_VALID, True)
    await f.set_down(ORIGIN, True)
    await verdict_becomes(
        f, id_card.token, V.LICENSE_VERDICT_STATUS_UNAVAILABLE, within=BOUND + SLACK
    )
    closed = await f.verify(id_card.token)
    assert not closed.status_checked
    opened = await f.verify(business.token)
    assert (opened.verdict, opened.status_checked) == (V.LICENSE_VERDICT_VALID, False)
    assert "not checked" in opened.detail
    assert await refused_with(f, id_card.token) == "STATUS_UNAVAILABLE"
    # Revoked while unreachable: the fail-open type cannot know, and says so.
    await f.set_down(ORIGIN, False)
    await f.set_status(business.token_id, admin_pb2.LICENSE_STATUS_REVOKED)
    await verdict_becomes(f, business.token, V.LICENSE_VERDICT_REVOKED, within=BOUND + SLACK)
    back = await f.verify(id_card.token)
    assert (back.verdict, back.status_checked) == (V.LICENSE_VERDICT_VALID, True)


async def test_a_material_waived_without_a_status_check_says_so(tmp_path: Path) -> None:
    async with start_federation(tmp_path, fail_open=(ID_CARD,)) as f:
        licence = await f.issue()
        assert (await f.submit(licence.token, 4)).materials[0].license_status_checked
        await f.set_down(ORIGIN, True)

        async def unchecked() -> bool:
            return not (await f.verify(licence.token)).status_checked

        await eventually(unchecked, within=BOUND + SLACK, what="the status no longer checked")
        application = await f.submit(licence.token, 5)
        m01 = application.materials[0]
        assert (m01.waived, m01.license_status_checked) == (True, False)
        assert application.state == app_pb.APPLICATION_STATE_DELIVERED
