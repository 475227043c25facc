"""The local federation of `tongban up`: stub processes that decide by the rules they are given
and issue on request only what the gateway's trust list trusts them with."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import grpc
import pytest
from conftest import gateway_config, rich_error

from gateway.api.v1 import application_pb2, application_pb2_grpc, region_pb2, region_pb2_grpc
from gateway.tools.local import AUTO_DECIDE, decide_args, running_local

pytestmark = pytest.mark.slow

ORIGIN, TARGET = "440000", "510000"
CITIZEN = "110105199003071239"
PAYMENT_PROOF = "11100000000099063Q001"  # 参保缴费凭证
HUKOU = "11100000000099055X001"  # 户口簿


def fetch(type_code: str) -> region_pb2.FetchLicenseRequest:
    return region_pb2.FetchLicenseRequest(
        license_type_code=type_code,
        holder_id_type=application_pb2.ID_TYPE_CITIZEN_ID,
        holder_id_number=CITIZEN,
        bundle=f"bundles/{uuid.uuid4()}",
        application=f"applications/{uuid.uuid4()}",
    )


async def test_auto_decided_stubs_complete_a_case_and_issue_only_trusted_types(
    tmp_path: Path,
) -> None:
    trust = tmp_path / "trust.json"
    trust.write_text(
        json.dumps({"issuers": {TARGET: {"license_types": [PAYMENT_PROOF]}}}), encoding="utf-8"
    )
    config = gateway_config(tmp_path, license_trust=trust)
    async with (
        running_local(config, (ORIGIN, TARGET), stub_args=decide_args([AUTO_DECIDE])) as (
            gateway,
            stubs,
        ),
        grpc.aio.insecure_channel(gateway.address) as channel,
        grpc.aio.insecure_channel(stubs[TARGET].address) as stub_channel,
    ):
        applications = application_pb2_grpc.ApplicationServiceStub(channel)
        submitted = await applications.SubmitApplication(
            application_pb2.SubmitApplicationRequest(
                request_id="auto",
                origin_region=ORIGIN,
                target_region=TARGET,
                local_matter_code="11440000MBFYX5N41F2002035011000",
                applicant=application_pb2.Applicant(
                    id_type=application_pb2.ID_TYPE_CITIZEN_ID,
                    id_number=CITIZEN,
                    display_name="张三",
                ),
                materials=[
                    application_pb2.Material(
                        material_id=m, paper=application_pb2.PaperMaterial(description="纸质")
                    )
                    for m in ("M01", "M03")
                ],
            ),
            timeout=10,
        )
        watch = application_pb2.WatchApplicationRequest(name=submitted.application.name)
        seen = [
            change.application async for change in applications.WatchApplication(watch, timeout=30)
        ]
        province = region_pb2_grpc.RegionServiceStub(stub_channel)
        fetched = await province.FetchLicense(fetch(PAYMENT_PROOF), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await province.FetchLicense(fetch(HUKOU), timeout=10)

    history = [application_pb2.ApplicationState.Name(e.state) for e in seen[-1].events]
    assert history == [
        "APPLICATION_STATE_RECEIVED",
        "APPLICATION_STATE_DELIVERED",
        "APPLICATION_STATE_ACCEPTED",
        "APPLICATION_STATE_COMPLETED",
    ]
    assert fetched.license_token
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert rich_error(refused.value)[0].reason == "LICENSE_NOT_FOUND"
