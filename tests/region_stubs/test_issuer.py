"""The province's licence issuer, checked with plain pyjwt: what a third-party verifier sees."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.catalog.codes import validate_license_identifier
from gateway.errors import InvalidRequest, NotFound
from gateway.licenses.status_list import LicenseStatus, decode_status_list
from gateway.licenses.token import jwk_thumbprint
from region_stubs.issuer import (
    SIGNER_FACTORIES,
    Ed25519Signer,
    LicenseIssuer,
    P256Signer,
    Signer,
)

TYPE_A = "11100000000013338W011"
HOLDER = "110105199003071239"
COMPANY = "91330106MA2H12349J"
AGENCY = "11330105002500287C"
NOW = datetime(2026, 1, 1, tzinfo=UTC)  # 08:00 in China


def clock() -> datetime:
    return NOW


def make(**kw: Any) -> LicenseIssuer:
    return LicenseIssuer("330000", clock=clock, **kw)


def issue(issuer: LicenseIssuer, **kw: Any) -> Any:
    kw.setdefault("holder_id_type", "111")
    kw.setdefault("holder_id_number", HOLDER)
    return issuer.issue(kw.pop("type_code", TYPE_A), kw.pop("number", "2430599"), **kw)


def verify(token: str, issuer: LicenseIssuer, **options: Any) -> dict[str, Any]:
    """Verifies against the published JWKS only, with the wall clock off (the clock is fake)."""
    header = jwt.get_unverified_header(token)
    key = jwt.PyJWKSet.from_json(issuer.jwks())[header["kid"]]
    claims: dict[str, Any] = jwt.decode(
        token,
        key=key.key,
        algorithms=[key.algorithm_name],
        audience=options.get("audience", "tongban-gateway"),
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )
    return claims


def header_of(token: str) -> dict[str, Any]:
    return jwt.get_unverified_header(token)


# -- licences --------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256"])
def test_an_issued_licence_follows_the_profile(algorithm: str) -> None:
    issuer = make(algorithm=algorithm)
    issued = issue(issuer, issuing_agency_code=AGENCY, valid_days=30, not_before_offset=-60)
    assert header_of(issued.token) == {"alg": algorithm, "typ": "license+jwt", "kid": issuer.key_id}
    claims = verify(issued.token, issuer)
    now = int(NOW.timestamp())
    assert claims["iss"] == "tongban:region:330000"
    assert claims["sub"] == HOLDER
    assert claims["holder_id_type"] == "111"
    assert claims["aud"] == "tongban-gateway"
    assert claims["jti"] == issued.token_id
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (now, now - 60, now - 60 + 30 * 86400)
    assert claims["license"] == {
        "identifier": issued.identifier,
        "type_code": TYPE_A,
        "number": "2430599",
        "issuing_agency_code": AGENCY,
        "valid_from": "2026-01-01",
        "valid_until": "2026-01-31",
    }
    assert claims["status"] == {
        "status_list": {"idx": issued.status_index, "uri": "tongban:region:330000:status"}
    }
    assert validate_license_identifier(issued.identifier) is None
    assert issued.identifier.startswith(f"1.2.156.3005.2.{TYPE_A}.{AGENCY}.2430599.001.")


def test_the_agency_defaults_to_the_issuers() -> None:
    assert ".330000.2430599.001." in issue(make()).identifier
    custom = make(agency_code="11330105002500287C")
    assert f".{AGENCY}.2430599.001." in issue(custom).identifier


def test_the_audience_is_configurable() -> None:
    issuer = make(audience="another-gateway")
    assert verify(issue(issuer).token, issuer, audience="another-gateway")["aud"] == (
        "another-gateway"
    )


def test_each_licence_gets_its_own_index_and_id() -> None:
    issuer = make()
    issued = [issue(issuer, number=str(n)) for n in range(5)]
    assert [i.status_index for i in issued] == [0, 1, 2, 3, 4]
    assert len({i.token_id for i in issued}) == 5


def test_an_es256_signature_is_raw_r_and_s() -> None:
    issuer = make(algorithm="ES256")
    signature = issue(issuer).token.rsplit(".", 1)[1]
    assert len(base64.urlsafe_b64decode(signature + "==")) == 64


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"type_code": "11100000000013338W01"}, "license_type_code"),
        ({"type_code": "11100000000013338X011"}, "license_type_code"),  # USCC check fails
        ({"number": "24-30599"}, "license_number"),
        ({"number": ""}, "license_number"),
        ({"issuing_agency_code": "agency"}, "issuing_agency_code"),
        ({"holder_id_type": "112"}, "holder_id_type"),
        ({"holder_id_number": "110105199003071230"}, "holder_id_number"),
        ({"holder_id_type": "001", "holder_id_number": HOLDER}, "holder_id_number"),
        ({"valid_days": 0}, "valid_days"),
        ({"not_before_offset": 10**12}, "not_before_offset_seconds"),
    ],
)
def test_bad_requests_name_their_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        issue(make(), **changes)
    assert field in {v.field for v in caught.value.field_violations}
    assert all("110105199003071230" not in v.description for v in caught.value.field_violations)


@pytest.mark.parametrize(
    ("holder_id_type", "number"),
    [
        ("HMT_RESIDENCE_PERMIT", "810000199003071237"),  # synthetic, check computed
        ("HMT_RESIDENCE_PERMIT", "820000200002290048"),
        ("FOREIGN_PERMANENT_RESIDENCE", "933100199003071232"),
        ("FOREIGN_PERMANENT_RESIDENCE", "USA330619900307"),
    ],
)
def test_residents_of_hmt_and_foreigners_can_hold_a_licence(
    holder_id_type: str, number: str
) -> None:
    issuer = make()
    claims = verify(
        issue(issuer, holder_id_type=holder_id_type, holder_id_number=number).token, issuer
    )
    assert (claims["holder_id_type"], claims["sub"]) == (holder_id_type, number)


@pytest.mark.parametrize(
    ("holder_id_type", "number", "reason"),
    [
        ("111", "810000199003071237", "CITIZEN_ID_UNKNOWN_PROVINCE"),  # a permit, not an ID
        ("111", "110105199003071230", "CITIZEN_ID_CHECK_MISMATCH"),
        ("001", HOLDER, "USCC_CHECK_MISMATCH"),
        ("HMT_RESIDENCE_PERMIT", "810000199003071230", "HMT_PERMIT_CHECK_MISMATCH"),
        ("HMT_RESIDENCE_PERMIT", HOLDER, "HMT_PERMIT_UNKNOWN_REGION"),
        ("FOREIGN_PERMANENT_RESIDENCE", HOLDER, "FOREIGN_PR_ID_BAD_FIRST_DIGIT"),
        ("FOREIGN_PERMANENT_RESIDENCE", "933100199003071230", "FOREIGN_PR_ID_CHECK_MISMATCH"),
        ("FOREIGN_PERMANENT_RESIDENCE", "usa330619900307", "FOREIGN_PR_ID_BAD_CHARACTER"),
    ],
)
def test_a_holder_id_is_checked_by_its_types_rules(
    holder_id_type: str, number: str, reason: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        issue(make(), holder_id_type=holder_id_type, holder_id_number=number)
    assert [(v.field, v.reason) for v in caught.value.field_violations] == [
        ("holder_id_number", reason)
    ]
    assert number not in caught.value.field_violations[0].description


def test_an_unknown_holder_id_type_names_the_known_ones() -> None:
    with pytest.raises(InvalidRequest) as caught:
        issue(make(), holder_id_type="112")
    [violation] = caught.value.field_violations
    assert (violation.field, violation.reason) == ("holder_id_type", "BAD_ID_TYPE")
    assert "'111'" in violation.description
    assert "'HMT_RESIDENCE_PERMIT'" in violation.description


def test_an_organisation_can_hold_a_licence() -> None:
    issuer = make()
    claims = verify(issue(issuer, holder_id_type="001", holder_id_number=COMPANY).token, issuer)
    assert (claims["holder_id_type"], claims["sub"]) == ("001", COMPANY)


def test_the_clock_must_be_aware() -> None:
    with pytest.raises(ValueError, match="aware"):
        issue(LicenseIssuer("330000", clock=lambda: datetime(2026, 1, 1)))


def test_the_region_must_be_a_province() -> None:
    with pytest.raises(ValueError, match="province"):
        LicenseIssuer("330106")


# -- keys ------------------------------------------------------------------------------------


def test_the_jwks_is_public_keys_named_by_thumbprint() -> None:
    issuer = make()
    issuer.rotate("ES256")
    keys = json.loads(issuer.jwks())["keys"]
    assert len(keys) == 2
    for key in keys:
        assert not {"d", "p", "q", "k"} & set(key)
        assert key["kid"] == jwk_thumbprint(key)
        assert key["use"] == "sig"
    assert [k["alg"] for k in keys] == ["EdDSA", "ES256"]


def test_rotation_overlaps_then_retires() -> None:
    issuer = make()
    old = issue(issuer)
    old_kid = issuer.key_id
    new_kid = issuer.rotate("ES256")
    new = issue(issuer)
    assert (old.key_id, new.key_id) == (old_kid, new_kid)
    assert header_of(new.token)["alg"] == "ES256"
    assert issuer.key_ids == [old_kid, new_kid]
    verify(old.token, issuer)
    verify(new.token, issuer)
    issuer.retire(old_kid)
    assert issuer.key_ids == [new_kid]
    with pytest.raises(KeyError):
        verify(old.token, issuer)
    verify(new.token, issuer)


def test_a_delayed_key_is_published_first_and_signs_from_its_activation() -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    issuer = LicenseIssuer("330000", clock=lambda: now[0])
    old_kid = issuer.key_id
    new_kid = issuer.rotate("ES256", activation_delay=60)
    assert issuer.key_ids == [old_kid, new_kid]  # published at once
    assert issuer.key_id == old_kid  # but not signing
    assert issuer.pending_key == (new_kid, datetime(2026, 1, 1, 0, 1, tzinfo=UTC))
    assert issue(issuer).key_id == old_kid
    assert header_of(issuer.status_list_token())["kid"] == old_kid
    with pytest.raises(InvalidRequest):
        issuer.retire(new_kid)  # waiting to sign
    with pytest.raises(InvalidRequest):
        issuer.rotate("EdDSA", retire_kid=old_kid, activation_delay=60)  # still signing
    assert issuer.key_ids == [old_kid, new_kid]  # the refused rotation added nothing
    now[0] = datetime(2026, 1, 1, 0, 0, 59, 999_000, tzinfo=UTC)
    assert issuer.key_id == old_kid
    now[0] = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    assert issue(issuer).key_id == new_kid
    assert issuer.pending_key is None
    issuer.retire(old_kid)
    assert issuer.key_ids == [new_kid]


def test_a_negative_activation_delay_is_refused() -> None:
    issuer = make()
    with pytest.raises(InvalidRequest) as caught:
        issuer.rotate("EdDSA", activation_delay=-1)
    assert caught.value.field_violations[0].field == "activation_delay"
    assert len(issuer.key_ids) == 1


def test_rotate_can_retire_in_the_same_step() -> None:
    issuer = make()
    first = issuer.key_id
    second = issuer.rotate("EdDSA", retire_kid=first)
    assert issuer.key_ids == [second]


def test_the_signing_key_cannot_be_retired_and_unknown_keys_are_not_found() -> None:
    issuer = make()
    with pytest.raises(InvalidRequest):
        issuer.retire(issuer.key_id)
    with pytest.raises(NotFound):
        issuer.retire("nope")
    with pytest.raises(NotFound):
        issuer.rotate("EdDSA", retire_kid="nope")
    assert len(issuer.key_ids) == 1  # a failed rotation adds no key


@pytest.mark.parametrize("algorithm", ["HS256", "RS256", "none", "SM2"])
def test_unsupported_algorithms_are_refused(algorithm: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        make().rotate(algorithm)
    assert caught.value.field_violations[0].field == "algorithm"


def test_a_signer_is_a_plug() -> None:
    class CountingSigner:
        """Any Signer works: here one that counts, standing in for, say, an SM2 HSM."""

        algorithm = "EdDSA"
        signed = 0

        def __init__(self) -> None:
            self._inner = Ed25519Signer(Ed25519PrivateKey.generate())

        def public_jwk(self) -> dict[str, str]:
            return self._inner.public_jwk()

        def sign(self, message: bytes) -> bytes:
            CountingSigner.signed += 1
            return self._inner.sign(message)

    plug: Signer = CountingSigner()
    issuer = make(signer_factories={**SIGNER_FACTORIES, "HSM": lambda: plug}, algorithm="HSM")
    issued = issue(issuer)
    assert CountingSigner.signed == 1
    assert header_of(issued.token)["alg"] == "EdDSA"
    verify(issued.token, issuer)


def test_signers_make_fresh_keys() -> None:
    assert Ed25519Signer().public_jwk() != Ed25519Signer().public_jwk()
    assert P256Signer().public_jwk() != P256Signer().public_jwk()


# -- status ----------------------------------------------------------------------------------


def status_claims(token: str, issuer: LicenseIssuer) -> dict[str, Any]:
    assert header_of(token)["typ"] == "statuslist+jwt"
    header = header_of(token)
    key = jwt.PyJWKSet.from_json(issuer.jwks())[header["kid"]]
    claims: dict[str, Any] = jwt.decode(
        token,
        key=key.key,
        algorithms=[key.algorithm_name],
        options={"verify_exp": False, "verify_iat": False},
    )
    return claims


def test_the_status_list_token_follows_the_draft() -> None:
    issuer = make(min_status_list_entries=8)
    issued = [issue(issuer, number=str(n)) for n in range(3)]
    issuer.set_status(LicenseStatus.REVOKED, token_id=issued[0].token_id)
    issuer.set_status(LicenseStatus.SUSPENDED, status_index=issued[2].status_index)
    claims = status_claims(issuer.status_list_token(120, validity=600), issuer)
    now = int(NOW.timestamp())
    assert claims["sub"] == "tongban:region:330000:status"
    assert (claims["iat"], claims["exp"], claims["ttl"]) == (now, now + 600, 120)
    assert claims["status_list"]["bits"] == 2
    listed = decode_status_list(2, claims["status_list"]["lst"], max_bytes=1024)
    assert len(listed) == 8  # padded to the minimum
    assert [listed.status_of(i) for i in range(8)] == [1, 0, 2, 0, 0, 0, 0, 0]


def test_the_list_grows_past_its_minimum() -> None:
    issuer = make(min_status_list_entries=4)
    for n in range(9):
        issue(issuer, number=str(n))
    claims = status_claims(issuer.status_list_token(), issuer)
    assert len(decode_status_list(2, claims["status_list"]["lst"], max_bytes=1024)) == 12


def test_status_can_go_back_to_valid() -> None:
    issuer = make()
    issued = issue(issuer)
    issuer.set_status(LicenseStatus.SUSPENDED, token_id=issued.token_id)
    assert issuer.status_of(issued.status_index) is LicenseStatus.SUSPENDED
    assert issuer.set_status(LicenseStatus.VALID, token_id=issued.token_id) == issued.status_index
    assert issuer.status_of(issued.status_index) is LicenseStatus.VALID


def test_set_status_needs_exactly_one_known_target() -> None:
    issuer = make()
    issued = issue(issuer)
    with pytest.raises(InvalidRequest):
        issuer.set_status(LicenseStatus.REVOKED)
    with pytest.raises(InvalidRequest):
        issuer.set_status(LicenseStatus.REVOKED, status_index=0, token_id=issued.token_id)
    with pytest.raises(NotFound):
        issuer.set_status(LicenseStatus.REVOKED, token_id="nope")
    with pytest.raises(NotFound):
        issuer.set_status(LicenseStatus.REVOKED, status_index=1)
    with pytest.raises(NotFound):
        issuer.set_status(LicenseStatus.REVOKED, status_index=-1)


def test_dates_are_china_dates() -> None:
    # 2026-01-01T20:00Z is already 2 January in China.
    issuer = LicenseIssuer("330000", clock=lambda: datetime(2026, 1, 1, 20, tzinfo=UTC))
    claims = verify(issue(issuer, valid_days=1).token, issuer)
    assert date.fromisoformat(claims["license"]["valid_from"]) == date(2026, 1, 2)
    assert date.fromisoformat(claims["license"]["valid_until"]) == date(2026, 1, 3)
