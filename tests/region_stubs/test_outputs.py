"""The licences a completed case issues, and the wrong ones its faults make."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import jwt
import pytest

from gateway.api.v1 import application_pb2
from gateway.catalog.fields import holder_document
from gateway.licenses.trust import PROVINCE_CODES
from region_stubs.cases import Case, CaseState
from region_stubs.holdings import Holdings
from region_stubs.issuer import LicenseIssuer
from region_stubs.outputs import another_holder, issue_results

REGION = "510000"
BUSINESS_LICENCE = "11100000MB0143028R001"
COMPANY_FILE = "11100000000099098B001"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("holder_id_type", "number"),
    [
        ("111", "110105199003071239"),
        ("111", "11010519900307005X"),
        ("001", "11440000MBDCGK306L"),
        ("001", "91350100M000100Y43"),
        ("HMT_RESIDENCE_PERMIT", "830000194912310021"),
        ("FOREIGN_PERMANENT_RESIDENCE", "USA330619900307"),
        ("FOREIGN_PERMANENT_RESIDENCE", "932682198501010017"),
    ],
)
def test_another_holder_is_a_valid_number_of_the_same_kind(
    holder_id_type: str, number: str
) -> None:
    document = holder_document(holder_id_type)
    assert document is not None
    assert document.check(number, PROVINCE_CODES, NOW.date()) is None
    other = another_holder(holder_id_type, number)
    assert other != number
    assert len(other) == len(number)
    assert document.check(other, PROVINCE_CODES, NOW.date()) is None


def case(**changes: object) -> Case:
    values: dict[str, object] = {
        "application_id": str(uuid.uuid4()),
        "receipt_id": "510000-20260301-000007",
        "local_code": "X",
        "state": CaseState.COMPLETED,
        "reason": "",
        "receive_time": NOW,
        "update_time": NOW,
        "event_id": "e",
        "national_code": "000117113000",
        "catalog_version": "2026.1",
        "holder_id_type": application_pb2.ID_TYPE_USCC,
        "holder_id_number": "91350100M000100Y43",
    }
    values.update(changes)
    return Case(**values)  # type: ignore[arg-type]


@pytest.fixture
def holdings() -> Holdings:
    return Holdings(LicenseIssuer(REGION), frozenset({BUSINESS_LICENCE}), lambda: NOW)


def claims_of(token: str) -> dict[str, object]:
    decoded: dict[str, object] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def test_each_result_is_issued_to_the_applicant_numbered_after_the_receipt(
    holdings: Holdings,
) -> None:
    tokens = issue_results(case(), [BUSINESS_LICENCE, COMPANY_FILE], holdings)
    licences = [claims_of(token) for token in tokens]
    assert [c["sub"] for c in licences] == ["91350100M000100Y43"] * 2
    assert [c["holder_id_type"] for c in licences] == ["001"] * 2
    details = [c["license"] for c in licences]
    assert [d["type_code"] for d in details if isinstance(d, dict)] == [
        BUSINESS_LICENCE,
        COMPANY_FILE,
    ]
    assert {d["number"] for d in details if isinstance(d, dict)} == {"51000020260301000007"}
    found = holdings.fetch(BUSINESS_LICENCE, "001", "91350100M000100Y43")
    assert found is not None
    assert found.token == tokens[0]  # on the applicant's record


def test_no_results_or_no_applicant_issue_nothing(holdings: Holdings) -> None:
    assert issue_results(case(), [], holdings) == []
    unnamed = case(holder_id_type=application_pb2.ID_TYPE_UNSPECIFIED, holder_id_number="")
    assert issue_results(unnamed, [BUSINESS_LICENCE], holdings) == []


def test_mismatched_results_go_to_another_holder_and_forged_ones_to_no_record(
    holdings: Holdings,
) -> None:
    (mismatched,) = issue_results(case(), [BUSINESS_LICENCE], holdings, mismatched=True)
    assert claims_of(mismatched)["sub"] == another_holder("001", "91350100M000100Y43")
    (forged,) = issue_results(case(), [BUSINESS_LICENCE], holdings, forged=True)
    assert claims_of(forged)["sub"] == "91350100M000100Y43"
    header = jwt.get_unverified_header(forged)
    assert header["kid"] == holdings.issuer.key_id
    key = jwt.PyJWKSet.from_json(holdings.issuer.jwks())[header["kid"]]
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged, key=key.key, algorithms=[key.algorithm_name], audience="tongban-gateway")
    assert json.loads(holdings.issuer.jwks())["keys"][0]["kid"] == header["kid"]
