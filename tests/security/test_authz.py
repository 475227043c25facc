"""The authorization policy: every role × every action × own/other region, then properties."""

from __future__ import annotations

from typing import get_args

import grpc
import pytest
from google.rpc import error_details_pb2
from hypothesis import given
from hypothesis import strategies as st

from gateway.api.v1 import application_pb2, bundle_pb2, catalog_pb2, license_pb2
from gateway.errors import PermissionDenied, Unauthenticated
from gateway.security.authz import (
    ALLOW,
    DENIAL_METADATA_KEY,
    RPC_ACTIONS,
    Action,
    Admin,
    Decision,
    Denial,
    ListApplications,
    PublishCatalogVersion,
    PublishRegionCatalog,
    ReadApplication,
    ReadBundle,
    ReadCatalog,
    ReportStatus,
    SubmitApplication,
    SubmitBundle,
    VerifyLicense,
    authorize,
    deny,
    require,
    to_error,
)
from gateway.security.identity import Identity, Role

OWN, OTHER, THIRD = "440000", "110000", "310000"

CALLERS: dict[str, Identity | None] = {
    "nobody": None,
    "region": Identity(Role.REGION, OWN, 101),
    "standards": Identity(Role.STANDARDS_BODY, "sac", 102),
    "ops": Identity(Role.OPS, "noc", 103),
}

ACTIONS: dict[str, Action] = {
    "submit, own origin": SubmitApplication(OWN),
    "submit, other origin": SubmitApplication(OTHER),
    "bundle, own origin": SubmitBundle(OWN),
    "bundle, other origin": SubmitBundle(OTHER),
    "read bundle, own": ReadBundle(OWN),
    "read bundle, other": ReadBundle(OTHER),
    "read, caller origin": ReadApplication(OWN, OTHER),
    "read, caller target": ReadApplication(OTHER, OWN),
    "read, neither": ReadApplication(OTHER, THIRD),
    "read, missing": ReadApplication("", ""),
    "list own": ListApplications(OWN),
    "list other": ListApplications(OTHER),
    "report, sent here": ReportStatus(OWN),
    "report, sent there": ReportStatus(OTHER),
    "publish own list": PublishRegionCatalog(OWN),
    "publish other list": PublishRegionCatalog(OTHER),
    "publish version": PublishCatalogVersion(),
    "read catalog": ReadCatalog(),
    "verify licence": VerifyLicense(),
    "admin": Admin("/tongban.admin.v1.AdminService/Drain"),
}

OK = None
NOT_OWN_REGION = Denial.NOT_OWN_REGION
NOT_A_REGION = Denial.NOT_A_REGION
NOT_A_PARTY = Denial.NOT_A_PARTY
NOT_DELIVERED = Denial.NOT_DELIVERED_TO_CALLER
NOT_A_STANDARDS_BODY = Denial.NOT_A_STANDARDS_BODY
NOT_OPS = Denial.NOT_OPS
# fmt: off
EXPECTED: dict[str, tuple[Denial | None, Denial | None, Denial | None]] = {
    #                              region           standards             ops
    "submit, own origin":         (OK,              NOT_A_REGION,         NOT_A_REGION),
    "submit, other origin":       (NOT_OWN_REGION,  NOT_A_REGION,         NOT_A_REGION),
    "bundle, own origin":         (OK,              NOT_A_REGION,         NOT_A_REGION),
    "bundle, other origin":       (NOT_OWN_REGION,  NOT_A_REGION,         NOT_A_REGION),
    "read bundle, own":           (OK,              NOT_A_PARTY,          OK),
    "read bundle, other":         (NOT_A_PARTY,     NOT_A_PARTY,          OK),
    "read, caller origin":        (OK,              NOT_A_PARTY,          OK),
    "read, caller target":        (OK,              NOT_A_PARTY,          OK),
    "read, neither":              (NOT_A_PARTY,     NOT_A_PARTY,          OK),
    "read, missing":              (NOT_A_PARTY,     NOT_A_PARTY,          OK),
    "list own":                   (OK,              NOT_A_REGION,         OK),
    "list other":                 (NOT_OWN_REGION,  NOT_A_REGION,         OK),
    "report, sent here":          (OK,              NOT_A_REGION,         NOT_A_REGION),
    "report, sent there":         (NOT_DELIVERED,   NOT_A_REGION,         NOT_A_REGION),
    "publish own list":           (OK,              NOT_A_REGION,         NOT_A_REGION),
    "publish other list":         (NOT_OWN_REGION,  NOT_A_REGION,         NOT_A_REGION),
    "publish version":            (NOT_A_STANDARDS_BODY, OK,              NOT_A_STANDARDS_BODY),
    "read catalog":               (OK,              OK,                   OK),
    "verify licence":             (OK,              OK,                   OK),
    "admin":                      (NOT_OPS,         NOT_OPS,              OK),
}
# fmt: on


def test_the_table_covers_every_action_type() -> None:
    assert set(EXPECTED) == set(ACTIONS)
    assert {type(a) for a in ACTIONS.values()} == set(get_args(Action))


@pytest.mark.parametrize("action_name", list(ACTIONS))
@pytest.mark.parametrize("caller", ["region", "standards", "ops"])
def test_policy_table(action_name: str, caller: str) -> None:
    expected = EXPECTED[action_name][["region", "standards", "ops"].index(caller)]
    decision = authorize(CALLERS[caller], ACTIONS[action_name])
    assert decision.denial == expected
    assert decision.allowed is (expected is None)
    assert decision.code is (
        grpc.StatusCode.OK if expected is None else grpc.StatusCode.PERMISSION_DENIED
    )


@pytest.mark.parametrize("action_name", list(ACTIONS))
def test_no_identity_is_unauthenticated_for_everything(action_name: str) -> None:
    decision = authorize(None, ACTIONS[action_name])
    assert decision == deny(Denial.NO_IDENTITY)
    assert decision.code is grpc.StatusCode.UNAUTHENTICATED
    assert decision.reason == "NO_IDENTITY"


def test_the_other_province_sees_the_mirror_image() -> None:
    other = Identity(Role.REGION, OTHER, 7)
    assert authorize(other, SubmitApplication(OTHER)).allowed
    assert authorize(other, SubmitApplication(OWN)).denial is Denial.NOT_OWN_REGION
    assert authorize(other, ReadApplication(OWN, OTHER)).allowed
    assert authorize(other, ReportStatus(OTHER)).allowed
    assert authorize(other, ReportStatus(OWN)).denial is (Denial.NOT_DELIVERED_TO_CALLER)


# -- Properties ----------------------------------------------------------------------------

provinces = st.from_regex(r"[1-9][0-9]0000", fullmatch=True)
region_fields = st.one_of(provinces, st.text(max_size=8))  # requests carry unchecked text
names = st.from_regex(r"[a-z0-9-]{1,20}", fullmatch=True)

identities = st.one_of(
    st.builds(Identity, st.just(Role.REGION), provinces, st.integers(1, 2**64)),
    st.builds(Identity, st.just(Role.STANDARDS_BODY), names, st.integers(1, 2**64)),
    st.builds(Identity, st.just(Role.OPS), names, st.integers(1, 2**64)),
)
actions: st.SearchStrategy[Action] = st.one_of(
    st.builds(SubmitApplication, region_fields),
    st.builds(ReadApplication, region_fields, region_fields),
    st.builds(ListApplications, region_fields),
    st.builds(ReportStatus, region_fields),
    st.builds(PublishRegionCatalog, region_fields),
    st.just(PublishCatalogVersion()),
    st.just(ReadCatalog()),
    st.just(VerifyLicense()),
    st.builds(Admin, st.text(max_size=40)),
)


@given(st.one_of(st.none(), identities), actions)
def test_decision_shape(identity: Identity | None, action: Action) -> None:
    decision = authorize(identity, action)
    assert decision.allowed == (decision.denial is None) == (decision.reason == "")
    if identity is None:
        assert decision.code is grpc.StatusCode.UNAUTHENTICATED
    elif not decision.allowed:
        assert decision.code is grpc.StatusCode.PERMISSION_DENIED
    else:
        assert decision.code is grpc.StatusCode.OK


@given(provinces, region_fields, region_fields)
def test_a_province_acts_exactly_for_itself(me: str, first: str, second: str) -> None:
    caller = Identity(Role.REGION, me, 1)
    assert authorize(caller, SubmitApplication(first)).allowed == (first == me)
    assert authorize(caller, PublishRegionCatalog(first)).allowed == (first == me)
    assert authorize(caller, ListApplications(first)).allowed == (first == me)
    assert authorize(caller, ReadApplication(first, second)).allowed == (me in (first, second))
    assert authorize(caller, ReportStatus(first)).allowed == (first == me)


@given(names, region_fields, region_fields)
def test_ops_read_everything_and_never_act_for_a_province(
    name: str, first: str, second: str
) -> None:
    ops = Identity(Role.OPS, name, 1)
    for read in (ReadApplication(first, second), ListApplications(first), ReadCatalog()):
        assert authorize(ops, read).allowed
    for write in (
        SubmitApplication(first),
        PublishRegionCatalog(first),
        ReportStatus(first),
    ):
        assert authorize(ops, write).denial is Denial.NOT_A_REGION
    assert authorize(ops, PublishCatalogVersion()).denial is Denial.NOT_A_STANDARDS_BODY


@given(identities, st.integers(1, 2**64), actions)
def test_only_role_and_name_matter(identity: Identity, serial: int, action: Action) -> None:
    twin = Identity(identity.role, identity.name, serial)
    assert authorize(identity, action) == authorize(twin, action)


# -- Errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("denial", list(Denial))
def test_to_error_carries_code_class_reason_and_denial(denial: Denial) -> None:
    error = to_error(deny(denial))
    unauthenticated = denial in (
        Denial.NO_IDENTITY,
        Denial.CERTIFICATE_REVOKED,
        Denial.CERTIFICATE_EXPIRED,
        Denial.FORWARDED_CERTIFICATE_INVALID,
    )
    assert type(error) is (Unauthenticated if unauthenticated else PermissionDenied)
    assert error.reason == ("UNAUTHENTICATED" if unauthenticated else "PERMISSION_DENIED")
    assert error.metadata == {DENIAL_METADATA_KEY: denial.value}
    assert error.message
    status = error.to_status()
    assert status.code == error.code.value[0]
    infos = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    assert len(infos) == 1
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    assert (info.reason, dict(info.metadata)) == (error.reason, {"denial": denial.value})


def test_an_allowed_decision_is_not_an_error() -> None:
    with pytest.raises(ValueError, match="allowed"):
        to_error(ALLOW)
    assert Decision() == ALLOW


def test_require_returns_the_identity_or_raises() -> None:
    region = CALLERS["region"]
    assert require(region, SubmitApplication(OWN)) is region
    with pytest.raises(PermissionDenied) as denied:
        require(region, SubmitApplication(OTHER))
    assert denied.value.metadata == {"denial": "NOT_OWN_REGION"}
    with pytest.raises(Unauthenticated):
        require(None, ReadCatalog())


def test_every_northbound_rpc_has_an_action() -> None:
    methods = {
        f"/{service.full_name}/{method.name}"
        for module in (application_pb2, bundle_pb2, catalog_pb2, license_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert set(RPC_ACTIONS) == methods
