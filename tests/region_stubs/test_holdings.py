"""The province's licence record: what a fetch finds, for whom, of which types."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.licenses.status_list import LicenseStatus
from gateway.licenses.trust import TrustConfigError
from region_stubs.holdings import Holdings, issued_types
from region_stubs.issuer import LicenseIssuer

REGION = "510000"
PAYMENT_PROOF = "11100000000099063Q001"
HUKOU = "11100000000099055X001"
CITIZEN = "110105199003071239"
OTHER_CITIZEN = "110105199003071204"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def holdings(clock: Clock) -> Holdings:
    return Holdings(LicenseIssuer(REGION, clock=clock), frozenset({PAYMENT_PROOF, HUKOU}), clock)


def test_a_first_fetch_issues_the_holders_licence_and_later_ones_find_it(
    holdings: Holdings,
) -> None:
    first = holdings.fetch(PAYMENT_PROOF, "111", CITIZEN)
    assert first is not None
    assert holdings.fetch(PAYMENT_PROOF, "111", CITIZEN) == first
    other = holdings.fetch(PAYMENT_PROOF, "111", OTHER_CITIZEN)
    assert other is not None
    assert other.token != first.token
    assert holdings.fetch(HUKOU, "111", CITIZEN) not in (None, first)


def test_a_type_the_province_does_not_issue_is_never_found(holdings: Holdings) -> None:
    assert holdings.fetch("11100000MB0143028R001", "111", CITIZEN) is None


def test_the_newest_valid_licence_is_found(holdings: Holdings, clock: Clock) -> None:
    older = holdings.issue(PAYMENT_PROOF, "A1", holder_id_type="111", holder_id_number=CITIZEN)
    newer = holdings.issue(PAYMENT_PROOF, "A2", holder_id_type="111", holder_id_number=CITIZEN)
    assert holdings.fetch(PAYMENT_PROOF, "111", CITIZEN) == newer
    holdings.issuer.set_status(LicenseStatus.SUSPENDED, token_id=newer.token_id)
    assert holdings.fetch(PAYMENT_PROOF, "111", CITIZEN) == older
    holdings.issuer.set_status(LicenseStatus.REVOKED, token_id=older.token_id)
    assert holdings.fetch(PAYMENT_PROOF, "111", CITIZEN) is None  # not replaced by a new one
    holdings.issuer.set_status(LicenseStatus.VALID, token_id=newer.token_id)
    assert holdings.fetch(PAYMENT_PROOF, "111", CITIZEN) == newer
    clock.now += timedelta(days=366)
    assert holdings.fetch(PAYMENT_PROOF, "111", CITIZEN) is None  # expired


def test_a_holder_said_to_hold_none_has_none_of_that_type_until_told_otherwise(
    holdings: Holdings,
) -> None:
    issued = holdings.issue(PAYMENT_PROOF, "A1", holder_id_type="111", holder_id_number=CITIZEN)
    holdings.set_held(PAYMENT_PROOF, "111", CITIZEN, held=False)
    assert holdings.fetch(PAYMENT_PROOF, "111", CITIZEN) is None
    assert holdings.fetch(HUKOU, "111", CITIZEN) is not None
    assert holdings.fetch(PAYMENT_PROOF, "111", OTHER_CITIZEN) is not None
    holdings.set_held(PAYMENT_PROOF, "111", CITIZEN, held=True)
    assert holdings.fetch(PAYMENT_PROOF, "111", CITIZEN) == issued


def test_a_forged_licence_is_on_no_record(holdings: Holdings) -> None:
    forged = holdings.issue(
        PAYMENT_PROOF, "F1", holder_id_type="111", holder_id_number=CITIZEN, forged=True
    )
    found = holdings.fetch(PAYMENT_PROOF, "111", CITIZEN)
    assert found is not None
    assert found.token != forged.token


def test_the_issued_types_are_the_trust_lists_or_else_the_catalogs(tmp_path: Path) -> None:
    trust = tmp_path / "trust.json"
    trust.write_text(
        json.dumps({"issuers": {REGION: {"license_types": [HUKOU]}, "440000": {}}}),
        encoding="utf-8",
    )
    catalog = {PAYMENT_PROOF, HUKOU}
    assert issued_types(trust, REGION, catalog) == {HUKOU}
    assert issued_types(trust, "440000", catalog) == frozenset()
    assert issued_types(trust, "330000", catalog) == frozenset()  # not trusted at all
    assert issued_types(None, REGION, catalog) == catalog


@pytest.mark.parametrize("text", ["{", "[]", '{"issuers": {"510000": {"types": []}}}'])
def test_an_unusable_trust_list_is_refused(tmp_path: Path, text: str) -> None:
    trust = tmp_path / "trust.json"
    trust.write_text(text, encoding="utf-8")
    with pytest.raises(TrustConfigError, match=r"trust\.json"):
        issued_types(trust, REGION, ())
