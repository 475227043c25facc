"""The verifier end to end, with tokens minted by the real LicenseIssuer.

The small world: province 330000 (EdDSA) is trusted for two licence types, 370000 (ES256) for
one, 440000 issues licences but is not trusted at all. Keys and status lists are fetched from
the issuers directly (counted), or over a real grpc.aio RegionService on 127.0.0.1:0.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import rich_error, start_world
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.api.v1 import application_pb2, license_pb2, region_pb2, region_pb2_grpc
from gateway.errors import InvalidRequest
from gateway.licenses.keys import KeyCache
from gateway.licenses.service import LicenseServicer
from gateway.licenses.status_list import LicenseStatus, StatusListCache, encode_status_list
from gateway.licenses.token import MAX_TOKEN_BYTES, encode_compact, jwk_thumbprint
from gateway.licenses.trust import TrustConfigError, TrustList
from gateway.licenses.verifier import LicenseVerifier, Verdict, Verification
from region_stubs.issuer import IssuedLicense, LicenseIssuer

TYPE_A = "11100000000013338W011"  # 建筑施工企业安全生产管理人员考核合格证书
TYPE_B = "11100000000013338W032"  # 建筑施工特种作业人员操作资格证书
HOLDER = "110105199003071239"
OTHER_HOLDER = "11010519491231002X"
COMPANY = "91330106MA2H12349J"
AGENCY = "11330105002500287C"
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class FakeClock:
    """Seconds for the gateway, aware datetimes for the issuers; moved by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class World:
    clock: FakeClock
    issuers: dict[str, LicenseIssuer]
    trust: TrustList
    keys: KeyCache
    status_lists: StatusListCache
    verifier: LicenseVerifier
    key_fetches: Counter[str] = field(default_factory=Counter)
    list_fetches: Counter[str] = field(default_factory=Counter)
    keys_down: set[str] = field(default_factory=set)
    lists_down: set[str] = field(default_factory=set)

    def issue(self, region: str = "330000", type_code: str = TYPE_A, **kw: Any) -> IssuedLicense:
        kw.setdefault("holder_id_type", "111")
        kw.setdefault("holder_id_number", HOLDER)
        kw.setdefault("issuing_agency_code", AGENCY)
        return self.issuers[region].issue(type_code, "2430599", **kw)

    async def verify(self, token: str, **kw: Any) -> Verification:
        result = await self.verifier.verify(token, **kw)
        assert HOLDER not in result.detail
        assert HOLDER not in repr(result)
        return result


TRUST: dict[str, Any] = {
    "issuers": {
        "330000": {"license_types": [TYPE_A, TYPE_B], "algorithms": ["EdDSA", "ES256"]},
        "370000": {"license_types": [TYPE_A], "algorithms": ["ES256"]},
    },
    "keys": {"min_ttl_seconds": 60, "max_ttl_seconds": 600, "unknown_kid_min_interval_seconds": 30},
    "status_lists": {"min_ttl_seconds": 10, "max_ttl_seconds": 120},
}


def make_world(**overrides: Any) -> World:
    clock = FakeClock()
    issuers = {
        "330000": LicenseIssuer("330000", clock=clock.datetime, min_status_list_entries=16),
        "370000": LicenseIssuer("370000", algorithm="ES256", clock=clock.datetime),
        "440000": LicenseIssuer("440000", clock=clock.datetime),
    }
    trust = TrustList.from_mapping({**TRUST, **overrides})
    world: World

    async def fetch_keys(region: str) -> tuple[str, int]:
        world.key_fetches[region] += 1
        if region in world.keys_down:
            raise ConnectionError("province down")
        return world.issuers[region].jwks(), 300

    async def fetch_list(region: str) -> tuple[str, int]:
        world.list_fetches[region] += 1
        if region in world.lists_down:
            raise ConnectionError("province down")
        return world.issuers[region].status_list_token(60), 60

    keys = KeyCache(fetch_keys, clock, settings=trust.keys)
    status_lists = StatusListCache(fetch_list, keys, trust, clock)
    verifier = LicenseVerifier(trust, keys, status_lists, clock)
    world = World(clock, issuers, trust, keys, status_lists, verifier)
    return world


@pytest.fixture
def world() -> World:
    return make_world()


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def segments(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    return json.loads(unb64(header)), json.loads(unb64(payload))


def claims_of(world: World, **changes: Any) -> dict[str, Any]:
    """The claims of a freshly issued licence, changed: to be signed by a province."""
    _, payload = segments(world.issue().token)
    payload.update(changes)
    return payload


# -- every verdict ---------------------------------------------------------------------------


async def test_valid_licences_from_both_algorithms(world: World) -> None:
    for region in ("330000", "370000"):
        issued = world.issue(region)
        result = await world.verify(
            issued.token, expected_type_code=TYPE_A, expected_holder_id=HOLDER
        )
        assert result.verdict is Verdict.VALID, result.detail
        assert result.license is not None
        assert result.license.identifier == issued.identifier
        assert result.license.issuer_region == region
        assert result.license.key_id == issued.key_id
        assert result.license.token_id == issued.token_id
        assert result.license.holder_id_masked == "110105********1239"


async def test_an_organisation_holder_is_valid(world: World) -> None:
    issued = world.issue(holder_id_type="001", holder_id_number=COMPANY)
    result = await world.verify(issued.token, expected_holder_id=COMPANY)
    assert result.verdict is Verdict.VALID
    assert result.license is not None
    assert result.license.holder_id_type == "001"


HMT_PERMIT = "810000199003071237"  # synthetic, check computed
FOREIGN_2023 = "933100199003071232"  # synthetic, check computed
FOREIGN_2017 = "USA330619900307"  # synthetic


@pytest.mark.parametrize(
    ("holder_id_type", "number", "masked", "id_type"),
    [
        ("111", HOLDER, "110105********1239", application_pb2.ID_TYPE_CITIZEN_ID),
        ("001", COMPANY, "913301********349J", application_pb2.ID_TYPE_USCC),
        (
            "HMT_RESIDENCE_PERMIT",
            HMT_PERMIT,
            "810000********1237",
            application_pb2.ID_TYPE_HMT_RESIDENCE_PERMIT,
        ),
        (
            "HMT_RESIDENCE_PERMIT",
            "830000194912310021",
            "830000********0021",
            application_pb2.ID_TYPE_HMT_RESIDENCE_PERMIT,
        ),
        (
            "FOREIGN_PERMANENT_RESIDENCE",
            FOREIGN_2023,
            "**************1232",
            application_pb2.ID_TYPE_FOREIGN_PERMANENT_RESIDENCE,
        ),
        (
            "FOREIGN_PERMANENT_RESIDENCE",
            FOREIGN_2017,
            "***********0307",
            application_pb2.ID_TYPE_FOREIGN_PERMANENT_RESIDENCE,
        ),
    ],
)
async def test_a_holder_of_every_id_type_is_valid_and_masked(
    world: World, holder_id_type: str, number: str, masked: str, id_type: int
) -> None:
    issued = world.issue(holder_id_type=holder_id_type, holder_id_number=number)
    result = await world.verify(issued.token, expected_holder_id=number)
    assert result.verdict is Verdict.VALID, result.detail
    assert result.license is not None
    assert (result.license.holder_id_type, result.license.holder_id_masked) == (
        holder_id_type,
        masked,
    )
    assert number not in repr(result)
    response = await LicenseServicer(world.verifier).VerifyLicense(
        license_pb2.VerifyLicenseRequest(token=issued.token), None
    )
    assert (response.license.holder_id_type, response.license.holder_id_masked) == (id_type, masked)
    assert number not in str(response)


@pytest.mark.parametrize(
    ("holder_id_type", "number"),
    [
        ("HMT_RESIDENCE_PERMIT", "810000199003071230"),  # check digit
        ("HMT_RESIDENCE_PERMIT", HOLDER),  # a citizen's county code
        ("FOREIGN_PERMANENT_RESIDENCE", HOLDER),  # does not start with 9
        ("FOREIGN_PERMANENT_RESIDENCE", "933100199003071230"),  # check digit
        ("FOREIGN_PERMANENT_RESIDENCE", "usa330619900307"),
        # A permit number given as a 公民身份号码: Hong Kong's 81 used to pass as a province.
        ("111", HMT_PERMIT),
        ("111", "820000200002290048"),
        ("001", HOLDER),
    ],
)
async def test_a_holder_id_that_breaks_its_types_rules_is_malformed(
    world: World, holder_id_type: str, number: str
) -> None:
    token = world.issuers["330000"].sign(
        claims_of(world, sub=number, holder_id_type=holder_id_type)
    )
    result = await world.verify(token)
    assert result.verdict is Verdict.MALFORMED
    assert result.detail.startswith("The holder's id: ")
    assert number not in result.detail


async def test_a_holder_id_type_outside_the_profile_is_malformed(world: World) -> None:
    for holder_id_type in ("112", "ID_TYPE_CITIZEN_ID", "", 111, None):
        token = world.issuers["330000"].sign(claims_of(world, holder_id_type=holder_id_type))
        result = await world.verify(token)
        assert result.verdict is Verdict.MALFORMED
        assert "holder_id_type" in result.detail


async def test_expired(world: World) -> None:
    issued = world.issue(valid_days=1)
    world.clock.advance(86400 + 31)
    result = await world.verify(issued.token)
    assert result.verdict is Verdict.EXPIRED
    assert result.license is not None  # the signature verified: the licence is shown


async def test_not_yet_valid(world: World) -> None:
    issued = world.issue(not_before_offset=3600)
    assert (await world.verify(issued.token)).verdict is Verdict.NOT_YET_VALID
    world.clock.advance(3600)
    assert (await world.verify(issued.token)).verdict is Verdict.VALID


async def test_leeway_is_honoured_on_both_sides(world: World) -> None:
    expiring = world.issue(valid_days=1)
    early = world.issue(not_before_offset=29)
    too_early = world.issue(not_before_offset=31)
    assert (await world.verify(early.token)).verdict is Verdict.VALID
    assert (await world.verify(too_early.token)).verdict is Verdict.NOT_YET_VALID
    world.clock.advance(86400 + 29)
    assert (await world.verify(expiring.token)).verdict is Verdict.VALID
    world.clock.advance(2)
    assert (await world.verify(expiring.token)).verdict is Verdict.EXPIRED


async def test_zero_leeway() -> None:
    world = make_world(leeway_seconds=0)
    issued = world.issue(valid_days=1)
    world.clock.advance(86400)
    assert (await world.verify(issued.token)).verdict is Verdict.EXPIRED


@pytest.mark.parametrize("leeway", [-1, 300.5, 3600])
def test_leeway_is_bounded(leeway: float) -> None:
    with pytest.raises(TrustConfigError, match="leeway"):
        TrustList.from_mapping({**TRUST, "leeway_seconds": leeway})


@pytest.mark.parametrize("algorithm", ["HS256", "HS512", "none", "RS256"])
def test_the_trust_list_never_allows_hmac_or_none(algorithm: str) -> None:
    with pytest.raises(TrustConfigError, match="never HS"):
        TrustList.from_mapping(
            {"issuers": {"330000": {"license_types": [TYPE_A], "algorithms": [algorithm]}}}
        )


async def test_untrusted_province_is_refused_without_fetching(world: World) -> None:
    issued = world.issue("440000")
    result = await world.verify(issued.token)
    assert result.verdict is Verdict.UNTRUSTED_ISSUER
    assert result.license is None
    assert world.key_fetches["440000"] == 0


async def test_province_not_trusted_for_that_type(world: World) -> None:
    issued = world.issue("370000", TYPE_B)
    result = await world.verify(issued.token)
    assert result.verdict is Verdict.UNTRUSTED_ISSUER
    assert result.license is not None
    assert result.license.type_code == TYPE_B
    assert world.list_fetches["370000"] == 0  # status comes last


async def test_wrong_type(world: World) -> None:
    issued = world.issue(type_code=TYPE_B)
    result = await world.verify(issued.token, expected_type_code=TYPE_A)
    assert result.verdict is Verdict.WRONG_TYPE


async def test_holder_mismatch(world: World) -> None:
    issued = world.issue()
    result = await world.verify(issued.token, expected_holder_id=OTHER_HOLDER)
    assert result.verdict is Verdict.HOLDER_MISMATCH
    assert OTHER_HOLDER not in result.detail


async def test_revoked_and_suspended_via_the_status_list(world: World) -> None:
    revoked, suspended, kept = world.issue(), world.issue(), world.issue()
    for issued in (revoked, suspended, kept):
        assert (await world.verify(issued.token)).verdict is Verdict.VALID
    issuer = world.issuers["330000"]
    issuer.set_status(LicenseStatus.REVOKED, token_id=revoked.token_id)
    issuer.set_status(LicenseStatus.SUSPENDED, status_index=suspended.status_index)
    # Within the list's lifetime (ttl 60 s) the cached list still answers.
    assert (await world.verify(revoked.token)).verdict is Verdict.VALID
    world.clock.advance(61)
    revoked_result = await world.verify(revoked.token)
    assert revoked_result.verdict is Verdict.REVOKED
    assert revoked_result.detail == "The licence has been revoked."
    assert (await world.verify(suspended.token)).verdict is Verdict.SUSPENDED
    assert (await world.verify(kept.token)).verdict is Verdict.VALID
    issuer.set_status(LicenseStatus.VALID, token_id=suspended.token_id)
    world.clock.advance(61)
    assert (await world.verify(suspended.token)).verdict is Verdict.VALID


async def test_an_unknown_status_value_is_treated_as_invalid(world: World) -> None:
    issued = world.issue()
    issuer = world.issuers["330000"]
    claims = {
        "sub": "tongban:region:330000:status",
        "iat": int(world.clock()),
        "exp": int(world.clock()) + 600,
        "status_list": {"bits": 2, "lst": encode_status_list([3] * 16)},
    }
    odd_list = issuer.sign(claims, token_type="statuslist+jwt")

    async def serve_odd_list(region: str) -> tuple[str, int]:
        return odd_list, 60

    verifier = LicenseVerifier(
        world.trust,
        world.keys,
        StatusListCache(serve_odd_list, world.keys, world.trust, world.clock),
        world.clock,
    )
    result = await verifier.verify(issued.token)
    assert result.verdict is Verdict.REVOKED
    assert "unknown status 3" in result.detail


async def test_status_is_checked_last(world: World) -> None:
    issued = world.issue()
    world.issuers["330000"].set_status(LicenseStatus.REVOKED, token_id=issued.token_id)
    result = await world.verify(issued.token, expected_holder_id=OTHER_HOLDER)
    assert result.verdict is Verdict.HOLDER_MISMATCH
    assert world.list_fetches["330000"] == 0


async def test_status_list_unreachable_fails_closed_by_default(world: World) -> None:
    world.lists_down.add("330000")
    result = await world.verify(world.issue().token)
    assert result.verdict is Verdict.STATUS_UNAVAILABLE
    assert result.license is not None


async def test_status_list_unreachable_fails_open_where_configured() -> None:
    world = make_world(unreachable_policies={TYPE_A: "FAIL_OPEN"})
    world.lists_down.add("330000")
    open_result = await world.verify(world.issue(type_code=TYPE_A).token)
    closed_result = await world.verify(world.issue(type_code=TYPE_B).token)
    assert open_result.verdict is Verdict.VALID
    assert "not checked" in open_result.detail
    assert closed_result.verdict is Verdict.STATUS_UNAVAILABLE


async def test_a_stale_status_list_is_not_used(world: World) -> None:
    issued = world.issue()
    assert (await world.verify(issued.token)).verdict is Verdict.VALID
    world.issuers["330000"].set_status(LicenseStatus.REVOKED, token_id=issued.token_id)
    world.lists_down.add("330000")
    world.clock.advance(61)
    assert (await world.verify(issued.token)).verdict is Verdict.STATUS_UNAVAILABLE


async def test_keys_unreachable_is_status_unavailable(world: World) -> None:
    world.keys_down.add("330000")
    result = await world.verify(world.issue().token)
    assert result.verdict is Verdict.STATUS_UNAVAILABLE
    assert result.license is None


async def test_an_index_beyond_the_list_is_invalid(world: World) -> None:
    snapshot_issuer = world.issuers["330000"]
    first = world.issue()
    snapshot = snapshot_issuer.status_list_token(60)  # covers 16 entries
    for _ in range(16):
        late = world.issue()
    assert late.status_index == 16

    async def stale_list(region: str) -> tuple[str, int]:
        return snapshot, 60

    verifier = LicenseVerifier(
        world.trust,
        world.keys,
        StatusListCache(stale_list, world.keys, world.trust, world.clock),
        world.clock,
    )
    assert (await verifier.verify(first.token)).verdict is Verdict.VALID
    result = await verifier.verify(late.token)
    assert result.verdict is Verdict.MALFORMED
    assert "outside its status list" in result.detail


async def test_a_licence_newer_than_the_cached_list_is_found_after_one_refresh(
    world: World,
) -> None:
    assert (await world.verify(world.issue().token)).verdict is Verdict.VALID
    for _ in range(16):
        late = world.issue()
    assert world.list_fetches["330000"] == 1
    result = await world.verify(late.token)  # suppressed: the list was fetched just now
    assert result.verdict is Verdict.MALFORMED
    world.clock.advance(11)
    assert (await world.verify(late.token)).verdict is Verdict.VALID
    assert world.list_fetches["330000"] == 2


# -- malformed licences signed by a real province ----------------------------------------------


async def test_wrong_typ(world: World) -> None:
    token = world.issuers["330000"].sign(claims_of(world), token_type="JWT")
    result = await world.verify(token)
    assert result.verdict is Verdict.MALFORMED
    assert "typ" in result.detail


async def test_a_status_list_is_not_a_licence(world: World) -> None:
    result = await world.verify(world.issuers["330000"].status_list_token())
    assert result.verdict is Verdict.MALFORMED


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat", "aud", "sub", "jti"])
async def test_missing_time_and_identity_claims(world: World, claim: str) -> None:
    payload = claims_of(world)
    del payload[claim]
    result = await world.verify(world.issuers["330000"].sign(payload))
    assert result.verdict is Verdict.MALFORMED
    assert claim in result.detail


async def test_missing_iss(world: World) -> None:
    payload = claims_of(world)
    del payload["iss"]
    result = await world.verify(world.issuers["330000"].sign(payload))
    assert result.verdict is Verdict.MALFORMED
    assert world.key_fetches["330000"] == 0


async def test_another_audience(world: World) -> None:
    token = world.issuers["330000"].sign(claims_of(world, aud="tongban"))
    result = await world.verify(token)
    assert result.verdict is Verdict.MALFORMED
    assert "audience" in result.detail


async def test_identifier_with_a_wrong_check_character(world: World) -> None:
    payload = claims_of(world)
    identifier = payload["license"]["identifier"]
    wrong = identifier[:-1] + ("A" if identifier[-1] != "A" else "B")
    payload["license"]["identifier"] = wrong
    result = await world.verify(world.issuers["330000"].sign(payload))
    assert result.verdict is Verdict.MALFORMED
    assert "check character" in result.detail


async def test_identifier_must_name_the_licences_type_and_number(world: World) -> None:
    payload = claims_of(world)
    payload["license"]["number"] = "999"
    result = await world.verify(world.issuers["330000"].sign(payload))
    assert result.verdict is Verdict.MALFORMED
    assert "differs" in result.detail


async def test_a_holder_id_with_a_bad_check_digit(world: World) -> None:
    token = world.issuers["330000"].sign(claims_of(world, sub="110105199003071230"))
    result = await world.verify(token)
    assert result.verdict is Verdict.MALFORMED
    assert "110105199003071230" not in result.detail


# -- attacks ---------------------------------------------------------------------------------


def forged(header: dict[str, Any], payload: dict[str, Any], signature: bytes) -> str:
    return encode_compact(header, payload, lambda _: signature)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_alg_none_in_any_case(world: World, alg: str) -> None:
    kid = world.issuers["330000"].key_id
    header = {"alg": alg, "typ": "license+jwt", "kid": kid}
    unsigned = forged(header, claims_of(world), b"")
    junk = forged(header, claims_of(world), b"\x00" * 64)
    assert (await world.verify(unsigned)).verdict is Verdict.MALFORMED  # empty signature
    assert (await world.verify(junk)).verdict is Verdict.BAD_SIGNATURE
    assert world.key_fetches["330000"] == 0


def _public_secrets(issuer: LicenseIssuer) -> list[bytes]:
    jwks = json.loads(issuer.jwks())
    jwk = jwks["keys"][0]
    raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
    return [raw, json.dumps(jwk).encode(), issuer.jwks().encode()]


def _hs256(secret: bytes, message: bytes) -> bytes:
    return hmac.new(secret, message, hashlib.sha256).digest()


async def test_hs256_signed_with_the_public_key_as_secret(world: World) -> None:
    issuer = world.issuers["330000"]
    header = {"alg": "HS256", "typ": "license+jwt", "kid": issuer.key_id}
    payload = claims_of(world)
    for secret in _public_secrets(issuer):
        token = encode_compact(header, payload, partial(_hs256, secret))
        result = await world.verify(token)
        assert result.verdict is Verdict.BAD_SIGNATURE
        assert "not allowed" in result.detail
    assert world.key_fetches["330000"] == 0


async def test_hs256_even_with_the_pem_of_the_key(world: World) -> None:
    # The classic confusion: the PEM of the public key as the HMAC secret.
    attacker = Ed25519PrivateKey.generate()
    pem = attacker.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "license+jwt", "kid": world.issuers["330000"].key_id}
    token = encode_compact(header, claims_of(world), partial(_hs256, pem))
    assert (await world.verify(token)).verdict is Verdict.BAD_SIGNATURE


async def test_an_algorithm_that_is_not_the_keys(world: World) -> None:
    # 330000 may use ES256, but its current key is EdDSA: the header cannot choose.
    issuer = world.issuers["330000"]
    header = {"alg": "ES256", "typ": "license+jwt", "kid": issuer.key_id}
    token = forged(header, claims_of(world), b"\x01" * 64)
    result = await world.verify(token)
    assert result.verdict is Verdict.BAD_SIGNATURE
    assert "not the key's" in result.detail


async def test_tampered_payload_with_the_original_signature(world: World) -> None:
    issued = world.issue()
    header, _payload, signature = issued.token.split(".")
    _, claims = segments(issued.token)
    for change in ({"sub": OTHER_HOLDER}, {"exp": claims["exp"] + 10**6}):
        tampered = f"{header}.{b64(json.dumps({**claims, **change}))}.{signature}"
        assert (await world.verify(tampered)).verdict is Verdict.BAD_SIGNATURE
    assert (await world.verify(issued.token)).verdict is Verdict.VALID


async def test_a_flipped_signature_byte(world: World) -> None:
    token = world.issue().token
    head, _, signature = token.rpartition(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[10] ^= 1
    assert (await world.verify(f"{head}.{b64(bytes(raw))}")).verdict is Verdict.BAD_SIGNATURE


@pytest.mark.parametrize("region", ["330000", "370000"])
@pytest.mark.parametrize("length", [1, 31, 63, 65, 128, 2000])
async def test_signatures_of_any_length_are_bad_not_errors(
    world: World, region: str, length: int
) -> None:
    head = world.issue(region).token.rpartition(".")[0]
    token = f"{head}.{b64(bytes(i % 251 + 1 for i in range(length)))}"
    assert (await world.verify(token)).verdict is Verdict.BAD_SIGNATURE


async def test_unknown_kid(world: World) -> None:
    impostor = LicenseIssuer("330000", clock=world.clock.datetime)  # same province, other key
    token = impostor.issue(
        TYPE_A, "1", holder_id_type="111", holder_id_number=HOLDER, issuing_agency_code=AGENCY
    ).token
    result = await world.verify(token)
    assert result.verdict is Verdict.UNKNOWN_KEY


async def test_a_signature_by_another_provinces_key(world: World) -> None:
    # 370000's real key, but the token claims to come from 330000.
    token = world.issuers["370000"].sign(claims_of(world))
    assert (await world.verify(token)).verdict is Verdict.UNKNOWN_KEY


@pytest.mark.parametrize("member", ["jwk", "jku", "x5u", "x5c", "crit"])
async def test_headers_that_bring_their_own_key(world: World, member: str) -> None:
    attacker = Ed25519PrivateKey.generate()
    raw = attacker.public_key().public_bytes_raw()
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}
    values: dict[str, object] = {
        "jwk": jwk,
        "jku": "https://evil.example/jwks.json",
        "x5u": "https://evil.example/cert.pem",
        "x5c": ["MIIB"],
        "crit": ["exp"],
    }
    header: dict[str, object] = {"alg": "EdDSA", "typ": "license+jwt", "kid": jwk_thumbprint(jwk)}
    header[member] = values[member]
    token = encode_compact(header, claims_of(world), attacker.sign)
    result = await world.verify(token)
    assert result.verdict is Verdict.MALFORMED
    assert member in result.detail
    assert world.key_fetches["330000"] == 0


@pytest.mark.parametrize(
    "kid", ["../../../../etc/passwd", "a/../b", "x'; DROP TABLE keys; --", '"', "' OR 1=1 --"]
)
async def test_kid_injection(world: World, kid: str) -> None:
    token = world.issuers["330000"].sign(claims_of(world), header={"kid": kid})
    assert (await world.verify(token)).verdict is Verdict.MALFORMED
    assert world.key_fetches["330000"] == 0


async def test_empty_signature(world: World) -> None:
    token = world.issue().token
    assert (await world.verify(token.rpartition(".")[0] + ".")).verdict is Verdict.MALFORMED


async def test_oversized_tokens(world: World) -> None:
    padded = claims_of(world, padding="x" * MAX_TOKEN_BYTES)
    signed_but_huge = world.issuers["330000"].sign(padded)
    for token in (signed_but_huge, "a" * (MAX_TOKEN_BYTES + 1), world.issue().token + "A" * 17000):
        result = await world.verify(token)
        assert result.verdict is Verdict.MALFORMED
        assert "16 KiB" in result.detail
    assert world.key_fetches["330000"] == 0


_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
        st.text(alphabet=_B64URL + ".", max_size=300),
        st.lists(st.text(alphabet=_B64URL, max_size=80), min_size=3, max_size=3).map(".".join),
    )
)
async def test_random_bytes_are_never_valid(token: str) -> None:
    world = make_world()
    result = await world.verifier.verify(token)
    assert result.verdict is not Verdict.VALID
    assert result.license is None
    assert sum(world.key_fetches.values()) == 0


@settings(max_examples=60, deadline=None)
@given(position=st.integers(min_value=0), replacement=st.sampled_from(_B64URL))
async def test_any_single_character_change_breaks_a_token(position: int, replacement: str) -> None:
    world = make_world()
    token = world.issue().token
    index = position % len(token)
    if token[index] in ".=" or token[index] == replacement:
        return
    changed = token[:index] + replacement + token[index + 1 :]
    assert (await world.verifier.verify(changed)).verdict is not Verdict.VALID


async def test_the_last_signature_character_has_one_spelling() -> None:
    # The last base64url character of a 64-byte signature carries 2 bits; its 4 unused bits
    # must be zero, or a changed character decoding to the same bytes would still verify.
    world = make_world()
    token = world.issue().token
    body, last = token[:-1], token[-1]
    for replacement in _B64URL:
        if replacement != last:
            assert (await world.verifier.verify(body + replacement)).verdict is not Verdict.VALID


# -- keys: rotation, rate limits, shared fetches ---------------------------------------------


async def test_rotation_overlap_then_retirement(world: World) -> None:
    issuer = world.issuers["330000"]
    old = world.issue()
    assert (await world.verify(old.token)).verdict is Verdict.VALID
    old_kid = issuer.key_id
    new_kid = issuer.rotate("ES256")
    new = world.issue()
    assert new.key_id == new_kid != old_kid
    # The new kid is unknown to the cache; a refresh ran moments ago, so none now.
    assert (await world.verify(new.token)).verdict is Verdict.UNKNOWN_KEY
    world.clock.advance(31)
    assert (await world.verify(new.token)).verdict is Verdict.VALID
    assert (await world.verify(old.token)).verdict is Verdict.VALID  # overlap
    issuer.retire(old_kid)
    assert (await world.verify(old.token)).verdict is Verdict.VALID  # until the keys refresh
    world.clock.advance(301)  # the JWKS max-age (300 s) has passed
    assert (await world.verify(old.token)).verdict is Verdict.UNKNOWN_KEY
    assert (await world.verify(new.token)).verdict is Verdict.VALID
    assert world.key_fetches["330000"] == 3


async def test_unknown_kids_cannot_hammer_a_province(world: World) -> None:
    assert (await world.verify(world.issue().token)).verdict is Verdict.VALID
    tokens = []
    for _ in range(50):
        impostor = LicenseIssuer("330000", clock=world.clock.datetime)
        tokens.append(
            impostor.issue(
                TYPE_A,
                "1",
                holder_id_type="111",
                holder_id_number=HOLDER,
                issuing_agency_code=AGENCY,
            ).token
        )
    for token in tokens:
        assert (await world.verify(token)).verdict is Verdict.UNKNOWN_KEY
    assert world.key_fetches["330000"] == 1
    assert world.keys.stats.refreshes_suppressed == 50
    world.clock.advance(30)
    for token in tokens:
        assert (await world.verify(token)).verdict is Verdict.UNKNOWN_KEY
    assert world.key_fetches["330000"] == 2


async def test_concurrent_misses_share_one_fetch() -> None:
    clock = FakeClock()
    issuer = LicenseIssuer("330000", clock=clock.datetime)
    trust = TrustList.from_mapping(TRUST)
    gate = asyncio.Event()
    fetches = Counter[str]()

    async def slow_keys(region: str) -> tuple[str, int]:
        fetches["keys"] += 1
        await gate.wait()
        return issuer.jwks(), 300

    async def slow_list(region: str) -> tuple[str, int]:
        fetches["list"] += 1
        await gate.wait()
        return issuer.status_list_token(60), 60

    keys = KeyCache(slow_keys, clock, settings=trust.keys)
    verifier = LicenseVerifier(trust, keys, StatusListCache(slow_list, keys, trust, clock), clock)
    tokens = [
        issuer.issue(
            TYPE_A,
            str(n),
            holder_id_type="111",
            holder_id_number=HOLDER,
            issuing_agency_code=AGENCY,
        ).token
        for n in range(20)
    ]
    pending = [asyncio.create_task(verifier.verify(token)) for token in tokens]
    for _ in range(5):
        await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*pending)
    assert [r.verdict for r in results] == [Verdict.VALID] * 20
    assert fetches == {"keys": 1, "list": 1}
    assert keys.stats.shared_waits == 19


# -- over a real grpc.aio RegionService -----------------------------------------------------------


class _Region(region_pb2_grpc.RegionServiceServicer):
    """Just the licence RPCs of a province, served from a real issuer."""

    def __init__(self, issuer: LicenseIssuer) -> None:
        self.issuer = issuer
        self.calls: Counter[str] = Counter()

    async def GetLicenseKeys(
        self, request: region_pb2.GetLicenseKeysRequest, context: Any
    ) -> region_pb2.GetLicenseKeysResponse:
        self.calls["keys"] += 1
        return region_pb2.GetLicenseKeysResponse(jwks_json=self.issuer.jwks(), max_age_seconds=60)

    async def GetLicenseStatusList(
        self, request: region_pb2.GetLicenseStatusListRequest, context: Any
    ) -> region_pb2.GetLicenseStatusListResponse:
        self.calls["list"] += 1
        return region_pb2.GetLicenseStatusListResponse(
            status_list_token=self.issuer.status_list_token(30), max_age_seconds=30
        )


@dataclass
class Served:
    clock: FakeClock
    issuer: LicenseIssuer
    region: _Region
    server: grpc.aio.Server
    verifier: LicenseVerifier


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    clock = FakeClock()
    issuer = LicenseIssuer("330000", clock=clock.datetime)
    region = _Region(issuer)  # type: ignore[abstract]  # the other RPCs stay UNIMPLEMENTED
    server = grpc.aio.server()
    region_pb2_grpc.add_RegionServiceServicer_to_server(region, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = region_pb2_grpc.RegionServiceStub(channel)

    async def fetch_keys(code: str) -> tuple[str, int]:
        response = await stub.GetLicenseKeys(region_pb2.GetLicenseKeysRequest(), timeout=2)
        return response.jwks_json, response.max_age_seconds

    async def fetch_list(code: str) -> tuple[str, int]:
        response = await stub.GetLicenseStatusList(
            region_pb2.GetLicenseStatusListRequest(), timeout=2
        )
        return response.status_list_token, response.max_age_seconds

    trust = TrustList.from_mapping(TRUST)
    keys = KeyCache(fetch_keys, clock, settings=trust.keys)
    verifier = LicenseVerifier(trust, keys, StatusListCache(fetch_list, keys, trust, clock), clock)
    try:
        yield Served(clock, issuer, region, server, verifier)
    finally:
        await channel.close()
        await server.stop(None)


async def test_keys_and_status_over_grpc(served: Served) -> None:
    issued = served.issuer.issue(
        TYPE_A, "2430599", holder_id_type="111", holder_id_number=HOLDER, issuing_agency_code=AGENCY
    )
    assert (await served.verifier.verify(issued.token)).verdict is Verdict.VALID
    assert (await served.verifier.verify(issued.token)).verdict is Verdict.VALID
    assert served.region.calls == {"keys": 1, "list": 1}
    served.issuer.set_status(LicenseStatus.REVOKED, token_id=issued.token_id)
    served.clock.advance(31)
    assert (await served.verifier.verify(issued.token)).verdict is Verdict.REVOKED
    assert served.region.calls == {"keys": 1, "list": 2}
    await served.server.stop(None)
    served.clock.advance(31)
    result = await served.verifier.verify(issued.token)
    assert result.verdict is Verdict.STATUS_UNAVAILABLE


# -- the servicer ------------------------------------------------------------------------------


def test_every_wire_verdict_has_a_verdict() -> None:
    wire = {
        name.removeprefix("LICENSE_VERDICT_")
        for name in license_pb2.LicenseVerdict.DESCRIPTOR.values_by_name
        if name != "LICENSE_VERDICT_UNSPECIFIED"
    }
    assert wire == {verdict.name for verdict in Verdict}


async def test_servicer_answers_with_a_masked_licence(world: World) -> None:
    servicer = LicenseServicer(world.verifier)
    issued = world.issue()
    response = await servicer.VerifyLicense(
        license_pb2.VerifyLicenseRequest(token=issued.token, expected_type_code=TYPE_A), None
    )
    assert response.verdict == license_pb2.LICENSE_VERDICT_VALID
    assert response.license.identifier == issued.identifier
    assert response.license.holder_id_masked == "110105********1239"
    assert response.license.holder_id_type == application_pb2.ID_TYPE_CITIZEN_ID
    assert response.license.issuer_region == "330000"
    assert response.license.valid_from.ToDatetime(UTC) == datetime(2025, 12, 31, 16, tzinfo=UTC)
    assert HOLDER not in str(response)


async def test_servicer_reports_an_invalid_licence_as_a_verdict(world: World) -> None:
    servicer = LicenseServicer(world.verifier)
    response = await servicer.VerifyLicense(
        license_pb2.VerifyLicenseRequest(
            token=world.issue().token, expected_holder_id_number=OTHER_HOLDER
        ),
        None,
    )
    assert response.verdict == license_pb2.LICENSE_VERDICT_HOLDER_MISMATCH
    assert response.HasField("license")
    garbage = await servicer.VerifyLicense(license_pb2.VerifyLicenseRequest(token="x.y.z"), None)
    assert garbage.verdict == license_pb2.LICENSE_VERDICT_MALFORMED
    assert not garbage.HasField("license")


BOUND_CASES: list[tuple[dict[str, str], list[tuple[str, str]]]] = [
    ({"token": ""}, [("token", "TOKEN_EMPTY")]),
    ({"token": "a" * (MAX_TOKEN_BYTES + 1)}, [("token", "TOKEN_TOO_LARGE")]),
    ({"token": "a" * (MAX_TOKEN_BYTES - 2) + "名"}, [("token", "TOKEN_TOO_LARGE")]),  # bytes
    ({"expected_type_code": TYPE_A + "1"}, [("expected_type_code", "TOO_LONG")]),
    ({"expected_type_code": "T" * (1 << 20)}, [("expected_type_code", "TOO_LONG")]),
    ({"expected_type_code": "11100000000013338\nW01"}, [("expected_type_code", "MALFORMED")]),
    ({"expected_holder_id_number": HOLDER + "0"}, [("expected_holder_id_number", "TOO_LONG")]),
    ({"expected_holder_id_number": "\t" * 18}, [("expected_holder_id_number", "MALFORMED")]),
    (
        {"token": "", "expected_type_code": "T" * 22, "expected_holder_id_number": "1" * 19},
        [
            ("token", "TOKEN_EMPTY"),
            ("expected_type_code", "TOO_LONG"),
            ("expected_holder_id_number", "TOO_LONG"),
        ],
    ),
]


@pytest.mark.parametrize(("fields", "expected"), BOUND_CASES)
async def test_servicer_refuses_requests_over_their_bounds(
    world: World, fields: dict[str, str], expected: list[tuple[str, str]]
) -> None:
    servicer = LicenseServicer(world.verifier)
    request = license_pb2.VerifyLicenseRequest(**{"token": world.issue().token, **fields})
    with pytest.raises(InvalidRequest) as caught:
        await servicer.VerifyLicense(request, None)
    assert [(v.field, v.reason) for v in caught.value.field_violations] == expected
    assert HOLDER not in str(caught.value.field_violations)


async def test_servicer_takes_requests_at_their_bounds(world: World) -> None:
    servicer = LicenseServicer(world.verifier)
    issued = world.issue()
    response = await servicer.VerifyLicense(
        license_pb2.VerifyLicenseRequest(
            token=issued.token, expected_type_code=TYPE_A, expected_holder_id_number=HOLDER
        ),
        None,
    )
    assert response.verdict == license_pb2.LICENSE_VERDICT_VALID
    at_limit = await servicer.VerifyLicense(
        license_pb2.VerifyLicenseRequest(token="a" * MAX_TOKEN_BYTES), None
    )
    assert at_limit.verdict == license_pb2.LICENSE_VERDICT_MALFORMED  # a verdict, not an error


async def test_the_bounds_hold_on_a_real_gateway(tmp_path: Path) -> None:
    async with start_world(tmp_path, regions=()) as gateway:
        for fields, expected in BOUND_CASES:
            request = license_pb2.VerifyLicenseRequest(**{"token": "h.p.s", **fields})
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await gateway.licenses.VerifyLicense(request)
            info, bad = rich_error(caught.value)
            assert (caught.value.code(), info.reason) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                "INVALID_REQUEST",
            )
            assert bad is not None
            assert [(v.field, v.reason) for v in bad.field_violations] == expected, fields


async def test_servicer_counts_bytes_not_characters(world: World) -> None:
    servicer = LicenseServicer(world.verifier)
    with pytest.raises(InvalidRequest):
        await servicer.VerifyLicense(
            license_pb2.VerifyLicenseRequest(token="证" * (MAX_TOKEN_BYTES // 3 + 1)), None
        )


# -- status_checked -----------------------------------------------------------------------------


async def test_status_checked_says_whether_the_verdict_rests_on_a_status_list() -> None:
    world = make_world(unreachable_policies={TYPE_A: "FAIL_OPEN"})
    revoked = world.issue()
    world.issuers["330000"].set_status(LicenseStatus.REVOKED, token_id=revoked.token_id)
    assert (await world.verify(world.issue().token)).status_checked is True
    assert (await world.verify(revoked.token)).status_checked is True
    expired = world.issue(valid_days=1)
    world.clock.advance(2 * 86400)
    assert (await world.verify(expired.token)).verdict is Verdict.EXPIRED
    assert (await world.verify(expired.token)).status_checked is False
    world.lists_down.add("330000")
    world.clock.advance(121)  # past the list's bound: it cannot be had any more
    fail_open = await world.verify(world.issue(type_code=TYPE_A).token)
    assert (fail_open.verdict, fail_open.status_checked) == (Verdict.VALID, False)
    wire = LicenseServicer(world.verifier)
    response = await wire.VerifyLicense(
        license_pb2.VerifyLicenseRequest(token=world.issue(type_code=TYPE_A).token), None
    )
    assert response.verdict == license_pb2.LICENSE_VERDICT_VALID
    assert not response.status_checked


# -- the authenticated-token cache ---------------------------------------------------------------


async def test_a_repeated_token_skips_only_the_signature_check(world: World) -> None:
    issued = world.issue()
    first = await world.verify(issued.token, expected_type_code=TYPE_A, expected_holder_id=HOLDER)
    again = await world.verify(issued.token, expected_type_code=TYPE_A, expected_holder_id=HOLDER)
    assert world.verifier.cache_hits == 1
    assert again == first
    # Everything that depends on the call is judged again on a hit.
    wrong_type = await world.verify(issued.token, expected_type_code=TYPE_B)
    assert wrong_type.verdict is Verdict.WRONG_TYPE
    mismatch = await world.verify(issued.token, expected_holder_id=OTHER_HOLDER)
    assert mismatch.verdict is Verdict.HOLDER_MISMATCH
    assert world.verifier.cache_hits == 3


async def test_a_cached_token_still_expires(world: World) -> None:
    issued = world.issue(valid_days=1)
    assert (await world.verify(issued.token)).verdict is Verdict.VALID
    world.clock.advance(86400 - 1)
    assert (await world.verify(issued.token)).verdict is Verdict.VALID
    world.clock.advance(31)  # past exp and the 30 s leeway
    assert (await world.verify(issued.token)).verdict is Verdict.EXPIRED
    assert world.verifier.cache_hits == 2


async def test_a_cached_token_is_revoked_within_the_status_list_bound(world: World) -> None:
    issued = world.issue()
    assert (await world.verify(issued.token)).verdict is Verdict.VALID
    world.issuers["330000"].set_status(LicenseStatus.REVOKED, token_id=issued.token_id)
    world.clock.advance(world.trust.status_lists.max_ttl_seconds)
    assert (await world.verify(issued.token)).verdict is Verdict.REVOKED
    assert world.verifier.cache_hits == 1


async def test_a_cached_token_stops_verifying_when_its_key_is_retired(world: World) -> None:
    issuer = world.issuers["330000"]
    old = world.issue()
    assert (await world.verify(old.token)).verdict is Verdict.VALID
    old_kid = issuer.key_id
    issuer.rotate("EdDSA")
    issuer.retire(old_kid)
    world.clock.advance(world.trust.keys.max_ttl_seconds)
    assert (await world.verify(old.token)).verdict is Verdict.UNKNOWN_KEY
    assert world.verifier.cache_hits == 0  # the hit was refused: the key is gone


async def test_a_cached_token_from_a_province_that_cannot_be_reached(world: World) -> None:
    issued = world.issue()
    assert (await world.verify(issued.token)).verdict is Verdict.VALID
    world.keys_down.add("330000")
    world.lists_down.add("330000")
    world.clock.advance(world.trust.keys.max_ttl_seconds + world.trust.keys.max_stale_seconds)
    assert (await world.verify(issued.token)).verdict is Verdict.STATUS_UNAVAILABLE


async def test_only_tokens_whose_signature_verified_are_remembered(world: World) -> None:
    token = world.issue().token
    # Change the signature's first character: its last ones carry padding bits, and a
    # replacement there that sets them is not base64url at all (MALFORMED, not forged).
    signed, signature = token.rsplit(".", 1)
    forged = f"{signed}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"
    for _ in range(3):
        assert (await world.verify(forged)).verdict is Verdict.BAD_SIGNATURE
    assert world.verifier.cache_hits == 0


async def test_the_cache_is_bounded_and_can_be_off(world: World) -> None:
    small = LicenseVerifier(
        world.trust, world.keys, world.status_lists, world.clock, token_cache_size=2
    )
    tokens = [world.issue().token for _ in range(3)]
    for token in tokens:
        await small.verify(token)
    await small.verify(tokens[0])  # the oldest went first
    assert small.cache_hits == 0
    await small.verify(tokens[2])
    assert small.cache_hits == 1
    off = LicenseVerifier(
        world.trust, world.keys, world.status_lists, world.clock, token_cache_size=0
    )
    for _ in range(2):
        assert (await off.verify(tokens[0])).verdict is Verdict.VALID
    assert off.cache_hits == 0


_EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("verify"), st.integers(0, 3), st.sampled_from([None, HOLDER, COMPANY])),
        st.tuples(st.just("advance"), st.sampled_from([1, 29, 31, 61, 121, 301, 601, 86400])),
        st.tuples(
            st.just("status"),
            st.integers(0, 3),
            st.sampled_from([LicenseStatus.VALID, LicenseStatus.REVOKED, LicenseStatus.SUSPENDED]),
        ),
        st.tuples(st.just("rotate"), st.booleans()),
        st.tuples(st.just("down"), st.booleans()),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=_EVENTS)
@example(events=[("verify", 0, None), ("advance", 61), ("rotate", False), ("verify", 0, None)])
@example(
    events=[
        ("verify", 0, None),
        ("advance", 61),
        ("rotate", False),
        ("verify", 0, None),
        ("advance", 31),
        ("down", True),
        ("verify", 0, None),
    ]
)
async def test_with_or_without_the_cache_every_verdict_is_the_same(
    events: list[tuple[Any, ...]],
) -> None:
    world = make_world()
    # The uncached verifier gets key and status-list caches of its own, fed by the same
    # provinces: a shared cache would be refreshed by whichever verifier runs first (a status
    # list signed by a new key refreshes the keys), and the second would then judge a later state.
    own_keys = KeyCache(world.keys._fetch, world.clock, settings=world.trust.keys)
    uncached = LicenseVerifier(
        world.trust,
        own_keys,
        StatusListCache(world.status_lists._fetch, own_keys, world.trust, world.clock),
        world.clock,
        token_cache_size=0,
    )
    issuer = world.issuers["330000"]
    issued = [world.issue(valid_days=days) for days in (1, 2, 30, 365)]
    for event in events:
        if event[0] == "verify":
            token = issued[event[1]].token
            with_cache = await world.verifier.verify(token, expected_holder_id=event[2])
            without = await uncached.verify(token, expected_holder_id=event[2])
            assert with_cache == without
        elif event[0] == "advance":
            world.clock.advance(event[1])
        elif event[0] == "status":
            issuer.set_status(event[2], token_id=issued[event[1]].token_id)
        elif event[0] == "rotate":
            retired = issuer.key_id
            issuer.rotate("ES256" if event[1] else "EdDSA")
            if retired in issuer.key_ids and len(issuer.key_ids) > 1:
                issuer.retire(retired)
        elif event[1]:
            world.keys_down.add("330000")
            world.lists_down.add("330000")
        else:
            world.keys_down.clear()
            world.lists_down.clear()
