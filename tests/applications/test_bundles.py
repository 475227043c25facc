"""一件事 bundles end to end: a real gateway on catalog 2026.1 and three real region stubs.

Theme YJS0008 (退休一件事（多地参保）): `records` (insured, 440000) and `earlier` (transfer_out,
510000) run in parallel; `pension` (residence, 110000) waits for both and receives the
参保缴费凭证 that `records` issues. The tests play the provinces' clerks: they report states
to the gateway as a province's platform does, with the licences the province issued.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from conftest import World, rich_error, start_world
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.api.v1 import application_pb2 as pb
from gateway.api.v1 import bundle_pb2, bundle_pb2_grpc
from region_stubs.admin.v1 import admin_pb2

INSURED, EARLIER, RESIDENCE = "440000", "510000", "110000"
CITIZEN = "110105199003071239"
PARCEL = "11100000000099063Q001"  # 参保缴费凭证, issued by 社会保险参保缴费记录查询
PAPER = pb.PaperMaterial(description="扫描件")


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with start_world(
        tmp_path,
        (INSURED, EARLIER, RESIDENCE),
        bootstrap_catalogs=("catalog/2025.1.json", "catalog/2026.1.json"),
    ) as w:
        yield w


def bundles(world: World) -> bundle_pb2_grpc.BundleServiceStub:
    return bundle_pb2_grpc.BundleServiceStub(world.channel)


def request(**overrides: object) -> bundle_pb2.SubmitBundleRequest:
    consent_time = Timestamp()
    consent_time.FromDatetime(datetime(2026, 12, 1, 9, 30, tzinfo=UTC))
    values: dict[str, object] = {
        "request_id": f"b-{uuid.uuid4().hex[:12]}",
        "origin_region": RESIDENCE,
        "theme_code": "YJS0008",
        "roles": [
            bundle_pb2.RoleBinding(role="insured", region_code=INSURED),
            bundle_pb2.RoleBinding(role="transfer_out", region_code=EARLIER),
            bundle_pb2.RoleBinding(role="residence", region_code=RESIDENCE),
        ],
        "applicant": pb.Applicant(
            id_type=pb.ID_TYPE_CITIZEN_ID, id_number=CITIZEN, display_name="张三"
        ),
        "form_fields": [
            pb.FormField(key="id_number", value=CITIZEN),
            pb.FormField(key="name", value="张三"),
            pb.FormField(key="retire_date", value="2026-12-31"),
            pb.FormField(key="bank_account", value="6222020200112233445"),
        ],
        "materials": [
            pb.Material(material_id="TM01", paper=PAPER),
            pb.Material(material_id="TM02", paper=PAPER),
            pb.Material(material_id="TM03", paper=PAPER),
        ],
        "consent": bundle_pb2.Consent(
            flows=[bundle_pb2.FlowConsent(member_id="pension", material_id="M04")],
            consent_time=consent_time,
            channel="app",
        ),
    }
    values.update(overrides)
    return bundle_pb2.SubmitBundleRequest(**values)  # type: ignore[arg-type]


def member(bundle: bundle_pb2.Bundle, member_id: str) -> bundle_pb2.BundleMember:
    return next(m for m in bundle.members if m.member_id == member_id)


async def application(world: World, name: str) -> pb.Application:
    got = await world.applications.GetApplication(pb.GetApplicationRequest(name=name))
    app: pb.Application = got.application
    return app


async def report(
    world: World,
    entry: bundle_pb2.BundleMember,
    state: pb.ApplicationState.ValueType,
    *tokens: str,
    reason: str = "",
) -> pb.Application:
    answer = await world.applications.ReportApplicationStatus(
        pb.ReportApplicationStatusRequest(
            name=entry.application,
            region_code=entry.target_region,
            state=state,
            reason=reason,
            event_id=f"e-{uuid.uuid4().hex[:8]}",
            issued_license_tokens=list(tokens),
        )
    )
    app: pb.Application = answer.application
    return app


async def issue(world: World, region: str, holder: str = CITIZEN) -> str:
    issued = await world.stubs[region].admin.IssueLicense(
        admin_pb2.IssueLicenseRequest(
            license_type_code=PARCEL,
            license_number=f"JF{uuid.uuid4().hex[:10].upper()}",
            holder_id_type=pb.ID_TYPE_CITIZEN_ID,
            holder_id_number=holder,
        )
    )
    token: str = issued.token
    return token


async def eventually(world: World, bundle: bundle_pb2.Bundle, check: object) -> bundle_pb2.Bundle:
    for _ in range(250):
        got = await bundles(world).GetBundle(bundle_pb2.GetBundleRequest(name=bundle.name))
        found: bundle_pb2.Bundle = got.bundle
        if check(found):  # type: ignore[operator]
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"never reached: {got.bundle}")


async def test_parallel_members_first_then_the_dependant_with_the_licence_that_flowed(
    world: World,
) -> None:
    answer = await bundles(world).SubmitBundle(request(), timeout=10)
    bundle = answer.bundle
    assert bundle.state == bundle_pb2.BUNDLE_STATE_IN_PROGRESS
    assert [m.member_id for m in bundle.members] == ["records", "earlier", "pension"]
    assert member(bundle, "records").state == pb.APPLICATION_STATE_DELIVERED
    assert member(bundle, "earlier").state == pb.APPLICATION_STATE_DELIVERED
    assert member(bundle, "pension").state == pb.APPLICATION_STATE_WAITING
    # Both independent members reached their provinces before either was decided.
    for region in (INSURED, EARLIER):
        assert (await world.stubs[region].counters()).cases_created == 1
    assert (await world.stubs[RESIDENCE].counters()).deliveries_received == 0

    await report(
        world,
        member(bundle, "records"),
        pb.APPLICATION_STATE_COMPLETED,
        await issue(world, INSURED),
    )
    # One prerequisite done, the other not: still waiting, still undelivered.
    await asyncio.sleep(0.3)
    assert (await world.stubs[RESIDENCE].counters()).deliveries_received == 0
    await report(world, member(bundle, "earlier"), pb.APPLICATION_STATE_COMPLETED)

    done = await eventually(
        world, bundle, lambda b: member(b, "pension").state == pb.APPLICATION_STATE_DELIVERED
    )
    assert (await world.stubs[RESIDENCE].counters()).cases_created == 1
    pension = await application(world, member(done, "pension").application)
    flowed = next(m for m in pension.materials if m.material_id == "M04")
    assert flowed.waived
    assert flowed.license_type_code == PARCEL
    assert flowed.flowed_from == "member:records"
    assert flowed.license_token
    assert pension.HasField("due_time")
    # The applicant supplied the 参保缴费凭证 nowhere.
    assert "M04" not in {m.material_id for m in request().materials}

    await report(world, member(done, "pension"), pb.APPLICATION_STATE_COMPLETED)
    final = await eventually(world, bundle, lambda b: b.state == bundle_pb2.BUNDLE_STATE_COMPLETED)
    assert not final.overdue


async def test_the_form_is_filled_once_and_each_member_gets_its_own_names(world: World) -> None:
    bundle = (await bundles(world).SubmitBundle(request(), timeout=10)).bundle
    forms = {
        m.member_id: {f.key: f.value for f in (await application(world, m.application)).form_fields}
        for m in bundle.members
    }
    assert forms == {
        "records": {"sfzh": CITIZEN, "xm": "张三"},
        "earlier": {"sfzh": CITIZEN, "xm": "张三"},
        "pension": {
            "sfzh": CITIZEN,
            "xm": "张三",
            "txrq": "2026-12-31",
            "khyh_zh": "6222020200112233445",
        },
    }
    materials = {
        m.member_id: sorted(
            x.material_id for x in (await application(world, m.application)).materials
        )
        for m in bundle.members
    }
    assert materials == {
        "records": ["M01", "M02"],
        "earlier": ["M01", "M02"],
        "pension": ["M01", "M02", "M03"],
    }


@pytest.mark.parametrize(
    ("form", "field", "reason"),
    [
        (
            [("id_number", CITIZEN), ("name", "张三"), ("bank_account", "1")],
            "form_fields",
            "MISSING_FIELD",
        ),
        (
            [
                ("id_number", CITIZEN),
                ("name", "张三"),
                ("retire_date", "2026-02-30"),
                ("bank_account", "1"),
            ],
            "form_fields[2].value",
            "BAD_DATE",
        ),
        (
            [
                ("id_number", CITIZEN),
                ("name", "张三"),
                ("retire_date", "2026-12-31"),
                ("bank_account", "1"),
                ("nope", "x"),
            ],
            "form_fields[4].key",
            "UNKNOWN_FIELD",
        ),
    ],
)
async def test_a_bad_form_field_is_one_violation_on_the_bundle_field(
    world: World, form: list[tuple[str, str]], field: str, reason: str
) -> None:
    fields = [pb.FormField(key=k, value=v) for k, v in form]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await bundles(world).SubmitBundle(request(form_fields=fields), timeout=10)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    info, bad = rich_error(refused.value)
    assert info.reason == "INVALID_REQUEST"
    assert bad is not None
    assert [(v.field, v.reason) for v in bad.field_violations] == [(field, reason)]
    assert (await world.stubs[INSURED].counters()).deliveries_received == 0


async def test_a_rejected_prerequisite_cancels_its_dependant_and_the_watch_shows_each_step(
    world: World,
) -> None:
    bundle = (await bundles(world).SubmitBundle(request(), timeout=10)).bundle
    seen: list[bundle_pb2.WatchBundleResponse] = []

    async def watch() -> None:
        async for item in bundles(world).WatchBundle(
            bundle_pb2.WatchBundleRequest(name=bundle.name)
        ):
            seen.append(item)

    watching = asyncio.create_task(watch())
    await asyncio.sleep(0.2)
    await report(world, member(bundle, "records"), pb.APPLICATION_STATE_REJECTED, reason="材料不全")
    await report(world, member(bundle, "earlier"), pb.APPLICATION_STATE_COMPLETED)
    await asyncio.wait_for(watching, 15)

    final = seen[-1].bundle
    assert final.state == bundle_pb2.BUNDLE_STATE_PARTIALLY_COMPLETED
    pension = member(final, "pension")
    assert pension.state == pb.APPLICATION_STATE_CANCELLED
    assert pension.state_reason == "PREREQUISITE_REJECTED"
    assert pension.stopped_by_member_id == "records"
    assert "pension CANCELLED (stopped by records)" in final.state_reason
    assert (await world.stubs[RESIDENCE].counters()).deliveries_received == 0, "never delivered"
    states = [tuple(m.state for m in item.bundle.members) for item in seen]
    D, W = pb.APPLICATION_STATE_DELIVERED, pb.APPLICATION_STATE_WAITING
    J, C, X = (
        pb.APPLICATION_STATE_REJECTED,
        pb.APPLICATION_STATE_COMPLETED,
        pb.APPLICATION_STATE_CANCELLED,
    )
    assert states[0] == (D, D, W)
    assert states[-1] == (J, C, X)
    assert states == sorted(set(states), key=states.index), "no state shown twice"
    assert all(
        a == b or later in (J, C, X)
        for s, t in itertools.pairwise(states)
        for a, b, later in zip(s, t, t, strict=False)
    )


async def test_refusals_store_nothing(world: World) -> None:
    stub = bundles(world)
    cases = [
        (
            request(
                consent=bundle_pb2.Consent(
                    consent_time=request().consent.consent_time, channel="app"
                )
            ),
            "FLOW_NOT_CONSENTED",
        ),
        (
            request(
                roles=[
                    bundle_pb2.RoleBinding(role="insured", region_code=INSURED),
                    bundle_pb2.RoleBinding(role="transfer_out", region_code=EARLIER),
                    bundle_pb2.RoleBinding(role="residence", region_code=INSURED),
                ]
            ),
            "MATTER_NOT_IMPLEMENTED",
        ),
        (request(theme_code="YJS9999"), "THEME_NOT_FOUND"),
        (request(materials=[pb.Material(material_id="TM01", paper=PAPER)]), "MATERIAL_MISSING"),
        (
            request(roles=[bundle_pb2.RoleBinding(role="insured", region_code=INSURED)]),
            "INVALID_REQUEST",
        ),
    ]
    for bad, reason in cases:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.SubmitBundle(bad, timeout=10)
        info, _ = rich_error(refused.value)
        assert info.reason == reason, bad
    listed = await world.applications.ListApplications(
        pb.ListApplicationsRequest(region_code=RESIDENCE)
    )
    assert list(listed.applications) == []


async def test_a_forged_or_mismatched_output_licence_is_refused_and_nothing_is_recorded(
    world: World,
) -> None:
    bundle = (await bundles(world).SubmitBundle(request(), timeout=10)).bundle
    records = member(bundle, "records")
    cases = [
        (await issue(world, EARLIER), "NOT_ISSUED_BY_REPORTER"),  # another province's
        (await issue(world, INSURED, holder="11010519491231002X"), "HOLDER_MISMATCH"),
    ]
    forged = (await issue(world, INSURED)).rsplit(".", 1)[0] + ".AAAA"
    cases.append((forged, "BAD_SIGNATURE"))
    for token, reason in cases:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await report(world, records, pb.APPLICATION_STATE_COMPLETED, token)
        info, bad = rich_error(refused.value)
        assert info.reason == "LICENSE_INVALID"
        assert bad is not None
        assert bad.field_violations[0].reason == reason
    app = await application(world, records.application)
    assert app.state == pb.APPLICATION_STATE_DELIVERED
    assert list(app.issued_licenses) == []


async def test_a_replay_answers_the_same_bundle_and_a_changed_one_is_refused(world: World) -> None:
    first = request()
    one = await bundles(world).SubmitBundle(first, timeout=10)
    again = await bundles(world).SubmitBundle(first, timeout=10)
    assert again.replayed
    assert again.bundle.bundle_id == one.bundle.bundle_id
    changed = request(request_id=first.request_id, theme_code="YJS0007")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await bundles(world).SubmitBundle(changed, timeout=10)
    assert rich_error(refused.value)[0].reason == "REQUEST_ID_REUSED"
    assert (await world.stubs[INSURED].counters()).cases_created == 1


async def test_withdrawal_cancels_the_waiting_member_and_ratings_come_once_after_the_end(
    world: World,
) -> None:
    bundle = (await bundles(world).SubmitBundle(request(), timeout=10)).bundle
    with pytest.raises(grpc.aio.AioRpcError) as early:
        await bundles(world).RateBundle(
            bundle_pb2.RateBundleRequest(name=bundle.name, rating=bundle_pb2.Rating(score=5))
        )
    assert rich_error(early.value)[0].reason == "BUNDLE_NOT_FINISHED"
    for name in ("records", "earlier"):  # each province decides on its own platform
        entry = member(bundle, name)
        await world.stubs[entry.target_region].admin.DecideCase(
            admin_pb2.DecideCaseRequest(
                application_id=entry.application.removeprefix("applications/"),
                state=pb.APPLICATION_STATE_ACCEPTED,
            )
        )
    withdrawn = (
        await bundles(world).WithdrawBundle(
            bundle_pb2.WithdrawBundleRequest(name=bundle.name, reason="不再办理"), timeout=10
        )
    ).bundle
    assert withdrawn.state == bundle_pb2.BUNDLE_STATE_WITHDRAWN
    assert member(withdrawn, "pension").state == pb.APPLICATION_STATE_CANCELLED
    assert member(withdrawn, "pension").state_reason == "WITHDRAWN_BY_APPLICANT"
    # The provinces had decided (ACCEPTED): they refused to withdraw, and the members go on.
    for name in ("records", "earlier"):
        assert member(withdrawn, name).state == pb.APPLICATION_STATE_ACCEPTED
        await report(world, member(bundle, name), pb.APPLICATION_STATE_COMPLETED)
    rated = await bundles(world).RateBundle(
        bundle_pb2.RateBundleRequest(
            name=bundle.name,
            rating=bundle_pb2.Rating(
                score=4,
                reasons=[bundle_pb2.RATING_REASON_NO_REPEATED_MATERIALS],
                region_code=INSURED,
            ),
        )
    )
    assert [(r.score, r.region_code) for r in rated.bundle.ratings] == [(4, INSURED)]
    with pytest.raises(grpc.aio.AioRpcError) as twice:
        await bundles(world).RateBundle(
            bundle_pb2.RateBundleRequest(
                name=bundle.name, rating=bundle_pb2.Rating(score=1, region_code=INSURED)
            )
        )
    assert rich_error(twice.value)[0].reason == "RATING_EXISTS"


# -- a licence fetched from its issuing province (YJS0003 跨省户口迁移) --------------------------

MOVE_IN, MOVE_OUT = INSURED, EARLIER
HUKOU = "11100000000099055X001"  # 户口簿, fetched from the province the household leaves


def move(**overrides: object) -> bundle_pb2.SubmitBundleRequest:
    values: dict[str, object] = {
        "request_id": f"m-{uuid.uuid4().hex[:12]}",
        "origin_region": MOVE_IN,
        "theme_code": "YJS0003",
        "roles": [
            bundle_pb2.RoleBinding(role="move_in", region_code=MOVE_IN),
            bundle_pb2.RoleBinding(role="move_out", region_code=MOVE_OUT),
        ],
        "form_fields": [
            pb.FormField(key="id_number", value=CITIZEN),
            pb.FormField(key="name", value="张三"),
            pb.FormField(key="from_region", value="510107"),
            pb.FormField(key="to_region", value="440305"),
        ],
        "materials": [
            pb.Material(material_id="TM01", paper=PAPER),
            pb.Material(material_id="TM02", paper=PAPER),
        ],
        "consent": bundle_pb2.Consent(
            flows=[
                bundle_pb2.FlowConsent(member_id="approve", material_id="M03"),
                bundle_pb2.FlowConsent(member_id="release", material_id="M03"),
                bundle_pb2.FlowConsent(member_id="release", material_id="M04"),
            ],
            consent_time=request().consent.consent_time,
            channel="window",
        ),
    }
    values.update(overrides)
    return request(**values)


async def test_a_consented_licence_is_fetched_from_its_issuing_province_before_delivery(
    world: World,
) -> None:
    bundle = (await bundles(world).SubmitBundle(move(), timeout=10)).bundle
    approve = member(bundle, "approve")
    assert approve.state == pb.APPLICATION_STATE_DELIVERED
    app = await application(world, approve.application)
    fetched = next(m for m in app.materials if m.material_id == "M03")
    assert fetched.flowed_from == f"fetch:{MOVE_OUT}"
    assert fetched.license_type_code == HUKOU
    assert fetched.license_token
    counters = await world.stubs[MOVE_OUT].admin.GetCounters(admin_pb2.GetCountersRequest())
    assert counters.licenses_fetched == 1
    assert member(bundle, "release").state == pb.APPLICATION_STATE_WAITING


async def test_a_licence_the_province_does_not_hold_cancels_the_member_it_was_for(
    world: World,
) -> None:
    await world.stubs[MOVE_OUT].admin.SetLicenseHolding(
        admin_pb2.SetLicenseHoldingRequest(
            license_type_code=HUKOU,
            holder_id_type=pb.ID_TYPE_CITIZEN_ID,
            holder_id_number=CITIZEN,
            held=False,
        )
    )
    bundle = (await bundles(world).SubmitBundle(move(), timeout=10)).bundle
    approve, release = member(bundle, "approve"), member(bundle, "release")
    assert approve.state == pb.APPLICATION_STATE_CANCELLED
    assert approve.state_reason == "FLOW_LICENSE_NOT_FOUND"
    assert release.state == pb.APPLICATION_STATE_CANCELLED
    assert release.stopped_by_member_id == "approve"
    assert bundle.state == bundle_pb2.BUNDLE_STATE_FAILED
    assert (await world.stubs[MOVE_IN].counters()).deliveries_received == 0
