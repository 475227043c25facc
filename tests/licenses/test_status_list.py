"""Status lists: the IETF encoding, bounds, token verification and the cache."""

from __future__ import annotations

import asyncio
import base64
import zlib
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.licenses.keys import KeyCache
from gateway.licenses.status_list import (
    LicenseStatus,
    StatusList,
    StatusListCache,
    StatusListUnavailable,
    decode_status_list,
    encode_status_list,
)
from gateway.licenses.trust import StatusListSettings, TrustConfigError, TrustList
from region_stubs.issuer import LicenseIssuer

TYPE_A = "11100000000013338W011"
HOLDER = "110105199003071239"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- the encoding ----------------------------------------------------------------------------


def test_the_drafts_one_bit_example() -> None:
    # Token Status List, section 4.1: 16 one-bit statuses, bytes 0xB9 0xA3.
    status_list = decode_status_list(1, "eNrbuRgAAhcBXQ", max_bytes=1024)
    assert status_list.data == bytes([0xB9, 0xA3])
    expected = [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1]
    assert [status_list.status_of(i) for i in range(16)] == expected
    assert encode_status_list(expected, bits=1) != ""  # and it encodes back to the same bytes:
    assert decode_status_list(1, encode_status_list(expected, bits=1), max_bytes=2).data == (
        status_list.data
    )


def test_the_drafts_two_bit_example() -> None:
    status_list = decode_status_list(2, "eNo76fITAAPfAgc", max_bytes=1024)
    assert status_list.data == bytes([0xC9, 0x44, 0xF9])
    assert [status_list.status_of(i) for i in range(12)] == [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3]
    assert len(status_list) == 12


@given(
    st.sampled_from([1, 2, 4, 8]).flatmap(
        lambda b: st.tuples(
            st.just(b), st.lists(st.integers(min_value=0, max_value=(1 << b) - 1), max_size=200)
        )
    )
)
def test_round_trip(case: tuple[int, list[int]]) -> None:
    bits, statuses = case
    decoded = decode_status_list(bits, encode_status_list(statuses, bits), max_bytes=1 << 16)
    assert [decoded.status_of(i) for i in range(len(statuses))] == statuses
    assert len(decoded) >= len(statuses)
    assert all(decoded.status_of(i) == 0 for i in range(len(statuses), len(decoded)))


@pytest.mark.parametrize("index", [-1, 16, 10**9])
def test_an_index_outside_the_list(index: int) -> None:
    with pytest.raises(IndexError):
        StatusList(2, bytes(4)).status_of(index)


def test_encoding_refuses_values_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="fit"):
        encode_status_list([4], bits=2)
    with pytest.raises(ValueError, match="bits"):
        encode_status_list([1], bits=3)


@pytest.mark.parametrize(
    ("bits", "lst", "words"),
    [
        (3, "eNrbuRgAAhcBXQ", "bits"),
        (True, "eNrbuRgAAhcBXQ", "bits"),
        ("2", "eNrbuRgAAhcBXQ", "bits"),
        (2, "eNrbuRgAAhcBXQ==", "base64url"),
        (2, "eNrbuRgA+hcBXQ", "base64url"),
        (2, "", "base64url"),
        (2, 5, "base64url"),
        (2, b64(b"not zlib at all"), "zlib"),
        (2, b64(zlib.compress(bytes(100))[:-3]), "truncated"),
    ],
)
def test_bad_lists(bits: Any, lst: Any, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        decode_status_list(bits, lst, max_bytes=1 << 20)


def test_decompression_is_bounded() -> None:
    bomb = b64(zlib.compress(bytes(50 * 1024 * 1024), 9))  # 50 MiB of zeros, ~50 KiB packed
    assert len(bomb) < 100_000
    with pytest.raises(ValueError, match="larger than allowed"):
        decode_status_list(2, bomb, max_bytes=4 * 1024 * 1024)


# -- the cache and the token ---------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_767_225_600.0

    def __call__(self) -> float:
        return self.now

    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


class Province:
    def __init__(self, clock: Clock, **issuer: Any) -> None:
        self.issuer = LicenseIssuer("330000", clock=clock.datetime, **issuer)
        self.ttl = 60
        self.max_age = 60
        self.fetches = 0
        self.token: str | None = None  # served instead of a fresh list when set
        self.failing = False
        self.gate: asyncio.Event | None = None

    async def jwks(self, region: str) -> tuple[str, int]:
        return self.issuer.jwks(), 300

    async def status_list(self, region: str) -> tuple[str, int]:
        self.fetches += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.failing:
            raise ConnectionError("down")
        return self.token or self.issuer.status_list_token(self.ttl), self.max_age


TRUST = TrustList.from_mapping(
    {
        "issuers": {"330000": {"license_types": [TYPE_A]}},
        "status_lists": {
            "min_ttl_seconds": 10,
            "max_ttl_seconds": 120,
            "refresh_min_interval_seconds": 5,
            "fetch_timeout_seconds": 0.2,
        },
    }
)


def make_cache(province: Province, clock: Clock) -> StatusListCache:
    keys = KeyCache(province.jwks, clock, settings=TRUST.keys)
    return StatusListCache(province.status_list, keys, TRUST, clock)


async def test_a_fresh_list_answers_until_its_ttl() -> None:
    clock = Clock()
    province = Province(clock)
    issued = province.issuer.issue(TYPE_A, "1", holder_id_type="111", holder_id_number=HOLDER)
    lists = make_cache(province, clock)
    assert await lists.status_of("330000", issued.status_index) == LicenseStatus.VALID
    province.issuer.set_status(LicenseStatus.REVOKED, token_id=issued.token_id)
    clock.now += 59
    assert await lists.status_of("330000", issued.status_index) == LicenseStatus.VALID
    assert lists.age_seconds("330000") == 59
    clock.now += 1
    assert await lists.status_of("330000", issued.status_index) == LicenseStatus.REVOKED
    assert province.fetches == 2


@pytest.mark.parametrize(
    ("ttl", "max_age", "lifetime"),
    [(1, 60, 10), (10**6, 10**6, 120), (30, 60, 30), (60, 30, 30), (45, 0, 45)],
)
async def test_lifetime_is_the_shorter_of_ttl_and_max_age_within_bounds(
    ttl: int, max_age: int, lifetime: int
) -> None:
    clock = Clock()
    province = Province(clock)
    province.ttl, province.max_age = ttl, max_age
    lists = make_cache(province, clock)
    await lists.get("330000")
    clock.now += lifetime - 1
    await lists.get("330000")
    assert province.fetches == 1
    clock.now += 1
    await lists.get("330000")
    assert province.fetches == 2


async def test_a_list_is_never_used_past_its_exp() -> None:
    clock = Clock()
    province = Province(clock)
    province.token = province.issuer.status_list_token(100, validity=20)
    lists = make_cache(province, clock)
    await lists.get("330000")
    clock.now += 20
    with pytest.raises(StatusListUnavailable, match="expired"):
        await lists.get("330000")


def _signed(province: Province, **changes: Any) -> str:
    """A status list token of the province, with claims changed, signed by its real key."""
    import json

    token = province.issuer.status_list_token(60)
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    claims = {k: v for k, v in claims.items() if v is not None}
    return province.issuer.sign(claims, token_type="statuslist+jwt")


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: _signed(p, sub="tongban:region:370000:status"), "not its own"),
        (lambda p: _signed(p, exp=None), "'exp'"),
        (lambda p: _signed(p, status_list=None), "'status_list'"),
        (lambda p: _signed(p, status_list={"bits": 3, "lst": "eNrbuRgAAhcBXQ"}), "bits"),
        (lambda p: _signed(p, iat=10**10), "not valid yet"),
        (lambda p: p.issuer.sign({"sub": "x"}, token_type="license+jwt"), "typ"),
        (lambda p: p.issuer.status_list_token(60)[:-6] + "AAAAAA", "signature"),
        (lambda p: LicenseIssuer("330000").status_list_token(60), "unknown key"),
        (lambda p: p.issuer.sign({}, token_type="statuslist+jwt", header={"jku": "x"}), "jku"),
    ],
)
async def test_untrustworthy_lists_are_unavailable(make: Any, words: str) -> None:
    clock = Clock()
    province = Province(clock)
    province.token = make(province)
    lists = make_cache(province, clock)
    with pytest.raises(StatusListUnavailable, match=words):
        await lists.get("330000")
    assert lists.stats.fetch_failures == 1


async def test_an_untrusted_province_has_no_list() -> None:
    clock = Clock()
    lists = make_cache(Province(clock), clock)
    with pytest.raises(StatusListUnavailable, match="not trusted"):
        await lists.get("370000")


async def test_a_failing_province_is_retried_once_per_interval() -> None:
    clock = Clock()
    province = Province(clock)
    province.failing = True
    lists = make_cache(province, clock)
    for _ in range(10):
        with pytest.raises(StatusListUnavailable):
            await lists.get("330000")
    assert province.fetches == 1
    assert lists.stats.refreshes_suppressed == 9
    clock.now += 5
    province.failing = False
    await lists.get("330000")
    assert province.fetches == 2


async def test_a_hanging_fetch_times_out() -> None:
    clock = Clock()
    province = Province(clock)
    province.gate = asyncio.Event()
    lists = make_cache(province, clock)
    with pytest.raises(StatusListUnavailable, match="TimeoutError"):
        await asyncio.wait_for(lists.get("330000"), timeout=5)


async def test_concurrent_misses_share_one_fetch() -> None:
    clock = Clock()
    province = Province(clock)
    province.gate = asyncio.Event()
    lists = make_cache(province, clock)
    waiting = [asyncio.create_task(lists.status_of("330000", 0)) for _ in range(30)]
    await asyncio.sleep(0)
    province.gate.set()
    assert await asyncio.gather(*waiting) == [0] * 30
    assert province.fetches == 1


async def test_an_index_beyond_the_list_refreshes_once_then_is_out_of_range() -> None:
    clock = Clock()
    province = Province(clock, min_status_list_entries=4)
    lists = make_cache(province, clock)
    province.issuer.issue(TYPE_A, "1", holder_id_type="111", holder_id_number=HOLDER)
    assert len(await lists.get("330000")) == 4
    with pytest.raises(IndexError):
        await lists.status_of("330000", 4)  # the list was fetched just now: no refresh
    assert province.fetches == 1
    clock.now += 5
    with pytest.raises(IndexError):
        await lists.status_of("330000", 4)  # refreshed, still beyond
    assert province.fetches == 2
    for n in range(4):
        province.issuer.issue(TYPE_A, str(n), holder_id_type="111", holder_id_number=HOLDER)
    clock.now += 5
    assert await lists.status_of("330000", 4) == LicenseStatus.VALID
    assert province.fetches == 3


@pytest.mark.parametrize(
    "settings",
    [
        {"min_ttl_seconds": 0},
        {"min_ttl_seconds": 200, "max_ttl_seconds": 100},
        {"refresh_min_interval_seconds": -1},
        {"max_list_bytes": 0},
    ],
)
def test_bad_status_list_settings_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(TrustConfigError):
        StatusListSettings(**settings)
