"""ApplicationService end to end: a real gateway, real region stubs, a real SQLite file."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from conftest import World, rich_error, start_world

from gateway.api.v1 import application_pb2 as pb
from gateway.api.v1 import license_pb2
from gateway.catalog.resolution import CatalogSnapshot
from region_stubs.admin.v1 import admin_pb2

ORIGIN, TARGET = "440000", "510000"
CITIZEN = "110105199003071239"


def live_codes(snapshot: CatalogSnapshot, region: str, national: str) -> list[str]:
    index = snapshot.region_indexes()[region]
    return [e.local_code for e in index.live_entries(national, datetime.now(UTC).date())]


def one_to_one_pair(
    world: World, origin: str = ORIGIN, target: str = TARGET
) -> tuple[str, str, str]:
    """(origin local code, national code, target local code) of a cross-region matter both
    provinces implement with exactly one live row and no merged row."""
    snapshot = world.gateway.registry.snapshot
    latest = snapshot.latest()
    assert latest is not None
    for code, matter in latest.document.matters.items():
        if not matter.cross_region_modes:
            continue
        src, dst = live_codes(snapshot, origin, code), live_codes(snapshot, target, code)
        if len(src) == 1 and len(dst) == 1:
            entry = snapshot.region_indexes()[origin].by_local[src[0]]
            if len(entry.national_codes) == 1:
                return src[0], code, dst[0]
    raise AssertionError("the bundled data has no 1:1 cross-region pair")


def submission(
    world: World, local_code: str, national: str, **overrides: object
) -> pb.SubmitApplicationRequest:
    """A complete, valid submission for the matter: every required material as paper."""
    latest = world.gateway.registry.snapshot.latest()
    assert latest is not None
    matter = latest.document.matters[national]
    values: dict[str, object] = {
        "request_id": "req-1",
        "origin_region": ORIGIN,
        "target_region": TARGET,
        "local_matter_code": local_code,
        "applicant": pb.Applicant(
            id_type=pb.ID_TYPE_CITIZEN_ID, id_number=CITIZEN, display_name="张三"
        ),
        "form_fields": [pb.FormField(key="phone", value="13800000000")],
        "materials": [
            pb.Material(material_id=m.id, paper=pb.PaperMaterial(description=m.name))
            for m in matter.materials
            if m.required
        ],
    }
    values.update(overrides)
    return pb.SubmitApplicationRequest(**values)  # type: ignore[arg-type]


async def test_submit_translates_persists_and_delivers(world: World) -> None:
    local, national, target_local = one_to_one_pair(world)
    response = await world.applications.SubmitApplication(submission(world, local, national))
    app = response.application
    assert app.state == pb.APPLICATION_STATE_DELIVERED
    assert (app.national_matter_code, app.target_local_matter_code) == (national, target_local)
    assert app.receipt_id.startswith(TARGET)
    assert app.catalog_version == "2025.1"
    assert [e.state for e in app.events] == [
        pb.APPLICATION_STATE_RECEIVED,
        pb.APPLICATION_STATE_DELIVERED,
    ]
    counters = await world.stubs[TARGET].counters()
    assert counters.cases_created == 1
    assert counters.cases_by_matter == {target_local: 1}
    got = await world.applications.GetApplication(pb.GetApplicationRequest(name=app.name))
    assert got.application == app


async def test_application_survives_a_gateway_restart(tmp_path: Path) -> None:
    async with start_world(tmp_path, regions=(ORIGIN, TARGET)) as world:
        local, national, _ = one_to_one_pair(world)
        first = (
            await world.applications.SubmitApplication(submission(world, local, national))
        ).application
    async with start_world(tmp_path, regions=(ORIGIN, TARGET)) as world:
        again = await world.applications.GetApplication(pb.GetApplicationRequest(name=first.name))
        assert again.application == first
        replay = await world.applications.SubmitApplication(submission(world, local, national))
        assert replay.replayed
        assert replay.application.application_id == first.application_id
        # the stub keeps its counters in its own store: still the one first delivery
        assert (await world.stubs[TARGET].counters()).deliveries_received == 1


async def expect_error(
    world: World, request: pb.SubmitApplicationRequest, code: grpc.StatusCode, reason: str
) -> list[str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await world.applications.SubmitApplication(request)
    assert caught.value.code() == code
    info, bad = rich_error(caught.value)
    assert info.reason == reason
    for stub in world.stubs.values():
        assert (await stub.counters()).deliveries_received == 0, "nothing may be delivered"
    return [v.field for v in bad.field_violations] if bad else []


async def test_unknown_local_code(world: World) -> None:
    _, national, _ = one_to_one_pair(world)
    await expect_error(
        world,
        submission(world, "NO-SUCH-CODE", national),
        grpc.StatusCode.NOT_FOUND,
        "LOCAL_CODE_NOT_FOUND",
    )


async def test_region_that_does_not_exist(world: World) -> None:
    local, national, _ = one_to_one_pair(world)
    await expect_error(
        world,
        submission(world, local, national, target_region="990000"),
        grpc.StatusCode.NOT_FOUND,
        "REGION_NOT_FOUND",
    )


async def test_matter_the_target_does_not_implement(world: World) -> None:
    snapshot = world.gateway.registry.snapshot
    latest = snapshot.latest()
    assert latest is not None
    for code, matter in latest.document.matters.items():
        src = live_codes(snapshot, ORIGIN, code)
        entry = snapshot.region_indexes()[ORIGIN].by_local[src[0]] if src else None
        if (
            matter.cross_region_modes
            and src
            and not live_codes(snapshot, TARGET, code)
            and (entry is not None and len(entry.national_codes) == 1)
        ):
            break
    else:
        raise AssertionError("the data has no matter 440000 implements and 510000 does not")
    await expect_error(
        world, submission(world, src[0], code), grpc.StatusCode.NOT_FOUND, "MATTER_NOT_IMPLEMENTED"
    )


async def test_malformed_request_reports_every_field(world: World) -> None:
    request = pb.SubmitApplicationRequest(
        request_id="bad id with spaces",
        origin_region="44",
        target_region="510000",
        applicant=pb.Applicant(id_type=pb.ID_TYPE_CITIZEN_ID, id_number="110105199003071238"),
        form_fields=[pb.FormField(key="Bad-Key", value="x")],
    )
    fields = await expect_error(world, request, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    assert set(fields) >= {
        "request_id",
        "origin_region",
        "local_matter_code",
        "applicant.id_number",
        "applicant.display_name",
        "form_fields[0].key",
    }


async def test_no_personal_data_in_error_messages(world: World) -> None:
    request = pb.SubmitApplicationRequest(
        request_id="r",
        origin_region=ORIGIN,
        target_region=TARGET,
        local_matter_code="x",
        applicant=pb.Applicant(
            id_type=pb.ID_TYPE_CITIZEN_ID, id_number="110105199003071238", display_name="李四"
        ),
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await world.applications.SubmitApplication(request)
    text = str(rich_error(caught.value)) + (caught.value.details() or "")
    assert "110105199003071238" not in text
    assert "李四" not in text


async def test_missing_required_material(world: World) -> None:
    local, national, _ = one_to_one_pair(world)
    fields = await expect_error(
        world,
        submission(world, local, national, materials=[]),
        grpc.StatusCode.FAILED_PRECONDITION,
        "MATERIAL_MISSING",
    )
    assert fields
    assert all(f == "materials" for f in fields)


async def test_merged_local_code_needs_a_national_code(world: World) -> None:
    snapshot = world.gateway.registry.snapshot
    merged = next(
        e for e in snapshot.region_indexes()[ORIGIN].by_local.values() if len(e.national_codes) > 1
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await world.applications.SubmitApplication(
            submission(world, merged.local_code, merged.national_codes[0])
        )
    info, _ = rich_error(caught.value)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert info.reason == "LOCAL_CODE_AMBIGUOUS"
    assert set(info.metadata["candidates"].split(",")) == set(merged.national_codes)


async def test_idempotent_replay_and_reuse(world: World) -> None:
    local, national, _ = one_to_one_pair(world)
    request = submission(world, local, national)
    first = await world.applications.SubmitApplication(request)
    again = await world.applications.SubmitApplication(request)
    assert again.replayed
    assert not first.replayed
    assert again.application.application_id == first.application.application_id
    changed = submission(world, local, national, form_fields=[pb.FormField(key="phone", value="1")])
    await expect_reuse(world, changed)
    assert (await world.stubs[TARGET].counters()).cases_created == 1


async def expect_reuse(world: World, request: pb.SubmitApplicationRequest) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await world.applications.SubmitApplication(request)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert rich_error(caught.value)[0].reason == "REQUEST_ID_REUSED"


async def test_concurrent_duplicates_make_one_application(world: World) -> None:
    local, national, _ = one_to_one_pair(world)
    request = submission(world, local, national, request_id="dup-20")
    responses = await asyncio.gather(
        *(world.applications.SubmitApplication(request) for _ in range(20))
    )
    assert len({r.application.application_id for r in responses}) == 1
    assert sum(not r.replayed for r in responses) == 1
    counters = await world.stubs[TARGET].counters()
    assert (counters.cases_created, counters.deliveries_received) == (1, 1)


async def test_province_reports_and_watch_streams_every_change(world: World) -> None:
    local, national, _ = one_to_one_pair(world)
    app = (
        await world.applications.SubmitApplication(submission(world, local, national))
    ).application
    seen: list[int] = []

    async def watch() -> None:
        async for item in world.applications.WatchApplication(
            pb.WatchApplicationRequest(name=app.name)
        ):
            seen.append(item.application.state)

    watcher = asyncio.create_task(watch())
    admin = world.stubs[TARGET].admin
    accepted = await admin.DecideCase(
        admin_pb2.DecideCaseRequest(
            application_id=app.application_id, state=pb.APPLICATION_STATE_ACCEPTED
        )
    )
    assert accepted.gateway_state == pb.APPLICATION_STATE_ACCEPTED
    done = await admin.DecideCase(
        admin_pb2.DecideCaseRequest(
            application_id=app.application_id, state=pb.APPLICATION_STATE_COMPLETED
        )
    )
    assert done.gateway_state == pb.APPLICATION_STATE_COMPLETED
    await asyncio.wait_for(watcher, 10)
    assert seen[0] == pb.APPLICATION_STATE_DELIVERED
    assert seen[-1] == pb.APPLICATION_STATE_COMPLETED
    assert pb.APPLICATION_STATE_ACCEPTED in seen


async def test_only_the_target_reports_status(world: World) -> None:
    local, national, _ = one_to_one_pair(world)
    app = (
        await world.applications.SubmitApplication(submission(world, local, national))
    ).application
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await world.applications.ReportApplicationStatus(
            pb.ReportApplicationStatusRequest(
                name=app.name,
                region_code=ORIGIN,
                state=pb.APPLICATION_STATE_ACCEPTED,
                event_id="e1",
            )
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_list_applications_paginates_newest_first(world: World) -> None:
    local, national, _ = one_to_one_pair(world)
    ids = []
    for i in range(5):
        r = await world.applications.SubmitApplication(
            submission(world, local, national, request_id=f"list-{i}")
        )
        ids.append(r.application.application_id)
    listed: list[str] = []
    token = ""
    while True:
        page = await world.applications.ListApplications(
            pb.ListApplicationsRequest(region_code=TARGET, page_size=2, page_token=token)
        )
        listed.extend(a.application_id for a in page.applications)
        token = page.next_page_token
        if not token:
            break
    assert listed == list(reversed(ids))
    origin_only = await world.applications.ListApplications(
        pb.ListApplicationsRequest(region_code=TARGET, role=pb.REGION_ROLE_ORIGIN)
    )
    assert list(origin_only.applications) == []


async def test_get_unknown_and_malformed_names(world: World) -> None:
    for name, code in (
        ("applications/00000000-0000-4000-8000-000000000000", grpc.StatusCode.NOT_FOUND),
        ("applications/not-a-uuid", grpc.StatusCode.INVALID_ARGUMENT),
        ("applications/" + "0" * 1_000_000, grpc.StatusCode.INVALID_ARGUMENT),
        ("", grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await world.applications.GetApplication(pb.GetApplicationRequest(name=name))
        assert caught.value.code() == code
        rich_error(caught.value)


async def test_reused_id_with_content_that_would_not_build_is_still_reuse(world: World) -> None:
    local, national, _ = one_to_one_pair(world)
    await world.applications.SubmitApplication(submission(world, local, national))
    unknown = pb.Material(material_id="M99", paper=pb.PaperMaterial(description="?"))
    await expect_reuse(world, submission(world, local, national, materials=[unknown]))


MATTER_WITH_LICENCE = "002035011000"  # 异地就医结算备案: M01 may be a 居民身份证 licence
ID_CARD = "11100000000013127D001"


async def test_replay_answers_as_the_first_time_after_the_licence_is_revoked(
    tmp_path: Path,
) -> None:
    trust = tmp_path / "trust.json"
    trust.write_text(
        '{"issuers": {"440000": {"license_types": ["' + ID_CARD + '"]}},'
        ' "status_lists": {"min_ttl_seconds": 1, "max_ttl_seconds": 1,'
        ' "refresh_min_interval_seconds": 1}}',
        encoding="utf-8",
    )
    async with start_world(tmp_path / "w", license_trust=trust) as world:
        issued = await world.stubs[ORIGIN].admin.IssueLicense(
            admin_pb2.IssueLicenseRequest(
                license_type_code=ID_CARD,
                license_number="440305199003071239",
                holder_id_type=pb.ID_TYPE_CITIZEN_ID,
                holder_id_number=CITIZEN,
            )
        )
        local = live_codes(world.gateway.registry.snapshot, ORIGIN, MATTER_WITH_LICENCE)[0]
        request = submission(world, local, MATTER_WITH_LICENCE, request_id="lic-1")
        materials = [m for m in request.materials if m.material_id != "M01"]
        materials.append(pb.Material(material_id="M01", license_token=issued.token))
        request = submission(
            world, local, MATTER_WITH_LICENCE, request_id="lic-1", materials=materials
        )
        first = await world.applications.SubmitApplication(request)
        assert first.application.state == pb.APPLICATION_STATE_DELIVERED
        verified = await world.licenses.VerifyLicense(
            license_pb2.VerifyLicenseRequest(token=issued.token)
        )
        await world.stubs[ORIGIN].admin.SetLicenseStatus(
            admin_pb2.SetLicenseStatusRequest(
                token_id=verified.license.token_id, status=admin_pb2.LICENSE_STATUS_REVOKED
            )
        )
        fresh = submission(
            world, local, MATTER_WITH_LICENCE, request_id="lic-2", materials=materials
        )
        refused = ""
        for attempt in range(60):  # until the gateway's status list shows the revocation
            try:
                await world.applications.SubmitApplication(fresh)
            except grpc.aio.AioRpcError as error:
                refused = rich_error(error)[0].reason
                break
            fresh.request_id = f"lic-2-{attempt}"
            await asyncio.sleep(0.1)
        assert refused == "LICENSE_INVALID"
        again = await world.applications.SubmitApplication(request)
        assert again.replayed
        assert again.application.application_id == first.application.application_id


async def violations_of(
    call: Awaitable[object],
) -> tuple[grpc.StatusCode, str, list[tuple[str, str]]]:
    """A call that must fail: its code, ErrorInfo reason and (field, reason) violations."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    info, bad = rich_error(caught.value)
    found = [(v.field, v.reason) for v in bad.field_violations] if bad else []
    return caught.value.code(), info.reason, found


INVALID = (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")


async def test_list_applications_refuses_malformed_regions_and_unknown_enum_values(
    world: World,
) -> None:
    cases: list[tuple[dict[str, object], list[tuple[str, str]]]] = [
        ({"region_code": ""}, [("region_code", "MISSING")]),
        ({"region_code": "51000"}, [("region_code", "BAD_REGION_CODE")]),
        ({"region_code": "５１００００"}, [("region_code", "BAD_REGION_CODE")]),
        ({"region_code": "5" * 100_000}, [("region_code", "BAD_REGION_CODE")]),
        ({"region_code": "510100"}, [("region_code", "NOT_A_PROVINCE")]),
        ({"role": 7}, [("role", "UNKNOWN")]),
        ({"role": -1}, [("role", "UNKNOWN")]),
        ({"state": 42}, [("state", "UNKNOWN")]),
        (
            {"region_code": "51", "role": 3, "state": -2},
            [("region_code", "BAD_REGION_CODE"), ("role", "UNKNOWN"), ("state", "UNKNOWN")],
        ),
    ]
    for fields, expected in cases:
        request = pb.ListApplicationsRequest(**{"region_code": TARGET, **fields})  # type: ignore[arg-type]
        got = await violations_of(world.applications.ListApplications(request))
        assert got == (*INVALID, expected), fields
    for role in (pb.REGION_ROLE_UNSPECIFIED, pb.REGION_ROLE_ORIGIN, pb.REGION_ROLE_TARGET):
        listed = await world.applications.ListApplications(
            pb.ListApplicationsRequest(region_code=TARGET, role=role)
        )
        assert list(listed.applications) == []


async def test_report_status_refuses_malformed_fields(world: World) -> None:
    name = "applications/00000000-0000-4000-8000-000000000000"
    good: dict[str, object] = {
        "name": name,
        "region_code": TARGET,
        "state": pb.APPLICATION_STATE_ACCEPTED,
        "event_id": "e1",
    }
    cases: list[tuple[dict[str, object], list[tuple[str, str]]]] = [
        ({"region_code": ""}, [("region_code", "MISSING")]),
        ({"region_code": "５１００００"}, [("region_code", "BAD_REGION_CODE")]),
        ({"region_code": "510100"}, [("region_code", "NOT_A_PROVINCE")]),
        ({"state": pb.APPLICATION_STATE_UNSPECIFIED}, [("state", "MISSING")]),
        ({"state": 99}, [("state", "UNKNOWN")]),
        ({"state": -1}, [("state", "UNKNOWN")]),
        ({"state": pb.APPLICATION_STATE_DELIVERED}, [("state", "NOT_REPORTABLE")]),
        ({"reason": "r" * 501}, [("reason", "TOO_LONG")]),
        ({"event_id": ""}, [("event_id", "MISSING")]),
        ({"event_id": "e" * 65}, [("event_id", "TOO_LONG")]),
        ({"event_id": "e\n1"}, [("event_id", "MALFORMED")]),
        ({"name": "applications/" + "a" * 100_000}, [("name", "BAD_NAME")]),
    ]
    for fields, expected in cases:
        request = pb.ReportApplicationStatusRequest(**{**good, **fields})  # type: ignore[arg-type]
        got = await violations_of(world.applications.ReportApplicationStatus(request))
        assert got == (*INVALID, expected), fields
    # at their bounds, the fields pass validation: the application is what is missing
    at_bounds = pb.ReportApplicationStatusRequest(
        **{**good, "reason": "理由\n" * 166 + "r" * 2, "event_id": "e" * 64}  # type: ignore[arg-type]
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await world.applications.ReportApplicationStatus(at_bounds)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


HMT_PERMIT = "810000199003071237"  # synthetic, check computed
FOREIGN_2023 = "933100199003071232"  # synthetic, check computed
FOREIGN_2017 = "USA330619900307"  # synthetic
USCC = "91350100M000100Y43"


async def test_submission_refuses_unknown_enum_values_and_bad_ids_and_delivers_nothing(
    world: World,
) -> None:
    local, national, _ = one_to_one_pair(world)
    cases: list[tuple[object, object, list[tuple[str, str]]]] = [
        # applicant id types outside the enum used to skip the number's check entirely
        (99, "any string at all", [("applicant.id_type", "UNKNOWN")]),
        (-1, "x", [("applicant.id_type", "UNKNOWN")]),
        (
            pb.ID_TYPE_HMT_RESIDENCE_PERMIT,
            "810000199003071230",
            [("applicant.id_number", "HMT_PERMIT_CHECK_MISMATCH")],
        ),
        (
            pb.ID_TYPE_FOREIGN_PERMANENT_RESIDENCE,
            CITIZEN,
            [("applicant.id_number", "FOREIGN_PR_ID_BAD_FIRST_DIGIT")],
        ),
        (pb.ID_TYPE_USCC, USCC[:-1] + "4", [("applicant.id_number", "USCC_CHECK_MISMATCH")]),
        (
            pb.ID_TYPE_CITIZEN_ID,
            HMT_PERMIT,
            [("applicant.id_number", "CITIZEN_ID_UNKNOWN_PROVINCE")],
        ),
    ]
    for i, (id_type, number, expected) in enumerate(cases):
        request = submission(
            world,
            local,
            national,
            request_id=f"bad-{i}",
            applicant=pb.Applicant(id_type=id_type, id_number=number, display_name="某人"),  # type: ignore[arg-type]
        )
        got = await violations_of(world.applications.SubmitApplication(request))
        assert got == (*INVALID, expected), (id_type, number)
    others: list[tuple[dict[str, object], list[tuple[str, str]]]] = [
        ({"cross_region_mode": 9}, [("cross_region_mode", "UNKNOWN")]),
        ({"target_region": "５１００００"}, [("target_region", "BAD_REGION_CODE")]),
        ({"target_region": ORIGIN}, [("target_region", "SAME_REGION")]),
        (
            {"national_matter_code": "０" * 12},
            [("national_matter_code", "BASIC_CODE_BAD_CHARACTER")],
        ),
        (
            {"materials": [pb.Material(material_id="M01", license_token="t" * (16 * 1024 + 1))]},
            [("materials[0].license_token", "TOKEN_TOO_LARGE")],
        ),
    ]
    for fields, expected in others:
        request = submission(world, local, national, request_id="bad-other", **fields)
        got = await violations_of(world.applications.SubmitApplication(request))
        assert got == (*INVALID, expected), fields
    for stub in world.stubs.values():
        assert (await stub.counters()).deliveries_received == 0


async def test_every_id_type_is_accepted_and_delivered(world: World) -> None:
    local, national, _ = one_to_one_pair(world)
    applicants = [
        (pb.ID_TYPE_USCC, USCC, "某某有限公司"),
        (pb.ID_TYPE_HMT_RESIDENCE_PERMIT, HMT_PERMIT, "陳大文"),
        (pb.ID_TYPE_HMT_RESIDENCE_PERMIT, "820000200002290048", "黄小明"),
        (pb.ID_TYPE_HMT_RESIDENCE_PERMIT, "830000194912310021", "林美玲"),
        (pb.ID_TYPE_FOREIGN_PERMANENT_RESIDENCE, FOREIGN_2023, "John Smith"),
        (pb.ID_TYPE_FOREIGN_PERMANENT_RESIDENCE, FOREIGN_2017, "Jane Doe"),
    ]
    for i, (id_type, number, name) in enumerate(applicants):
        applicant = pb.Applicant(id_type=id_type, id_number=number, display_name=name)
        app = (
            await world.applications.SubmitApplication(
                submission(world, local, national, request_id=f"id-{i}", applicant=applicant)
            )
        ).application
        assert app.state == pb.APPLICATION_STATE_DELIVERED
        assert app.applicant == applicant
    assert (await world.stubs[TARGET].counters()).cases_created == len(applicants)
