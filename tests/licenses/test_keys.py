"""The key cache: JWKS parsing, lifetimes, the refresh rate limit and shared fetches."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.licenses.keys import KeyCache, KeyUnavailable, parse_jwks
from gateway.licenses.token import jwk_thumbprint
from gateway.licenses.trust import KeySettings, TrustConfigError
from region_stubs.issuer import Ed25519Signer, P256Signer

SETTINGS = KeySettings(
    min_ttl_seconds=60,
    max_ttl_seconds=600,
    unknown_kid_min_interval_seconds=30,
    max_stale_seconds=120,
    fetch_timeout_seconds=0.2,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def jwk(signer: Ed25519Signer | P256Signer, **changes: Any) -> dict[str, Any]:
    key = {**signer.public_jwk(), "alg": signer.algorithm, "use": "sig"}
    key["kid"] = jwk_thumbprint(key)
    key.update(changes)
    return key


def jwks(*keys: dict[str, Any]) -> str:
    return json.dumps({"keys": list(keys)})


class Province:
    """A JWKS document served through a counted fetch."""

    def __init__(self, *keys: dict[str, Any], max_age: int = 300) -> None:
        self.document = jwks(*keys)
        self.max_age = max_age
        self.fetches = 0
        self.failing = False
        self.gate: asyncio.Event | None = None

    async def fetch(self, region: str) -> tuple[str, int]:
        self.fetches += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.failing:
            raise ConnectionError("down")
        return self.document, self.max_age


def cache(province: Province, clock: Clock, settings: KeySettings = SETTINGS) -> KeyCache:
    return KeyCache(province.fetch, clock, settings=settings)


# -- parsing ---------------------------------------------------------------------------------


def test_parses_ed25519_and_p256_keys() -> None:
    ed, p256 = jwk(Ed25519Signer()), jwk(P256Signer())
    keys, rejected = parse_jwks("330000", jwks(ed, p256))
    assert rejected == 0
    assert keys[ed["kid"]].algorithm == "EdDSA"
    assert isinstance(keys[ed["kid"]].public_key, Ed25519PublicKey)
    assert keys[p256["kid"]].algorithm == "ES256"
    assert isinstance(keys[p256["kid"]].public_key, ec.EllipticCurvePublicKey)
    for key in keys.values():
        assert key.jwk.algorithm_name == key.algorithm  # pyjwt verifies with this one only
        assert key.public_key is key.jwk.key


async def test_a_key_is_prepared_for_pyjwt_once_per_fetch() -> None:
    key, clock = jwk(Ed25519Signer()), Clock()
    keys = cache(Province(key), clock)
    first = await keys.get("330000", key["kid"])
    again = await keys.get("330000", key["kid"])
    assert first is not None
    assert again is first


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda k: {**k, "d": "AAAA"}, "private"),
        (lambda k: {**k, "kid": "some-name"}, "thumbprint"),
        (lambda k: {k2: v for k2, v in k.items() if k2 != "kid"}, "thumbprint"),
        (lambda k: {**k, "alg": "ES256"}, "alg"),
        (lambda k: {**k, "alg": "HS256"}, "alg"),
        (lambda k: {**k, "use": "enc"}, "signing"),
        (lambda k: {**k, "crv": "Ed448"}, "unsupported"),
        (lambda k: {**k, "kty": "oct", "k": "c2VjcmV0"}, "unsupported"),
        (lambda k: {**k, "x": k["x"][:-4]}, "thumbprint"),
        (lambda k: "not an object", "object"),
    ],
)
def test_refuses_unusable_keys(
    change: Callable[[dict[str, Any]], Any], why: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = jwk(Ed25519Signer())
    keys, rejected = parse_jwks("330000", jwks(change(good), jwk(Ed25519Signer())))
    assert rejected == 1
    assert why in caplog.text
    assert good["kid"] not in keys
    assert len(keys) == 1


def test_refuses_a_short_key_even_with_a_matching_kid() -> None:
    short = {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}
    keys, rejected = parse_jwks("330000", jwks({**short, "kid": jwk_thumbprint(short)}))
    assert (keys, rejected) == ({}, 1)


def test_refuses_a_point_off_the_curve() -> None:
    off = {"kty": "EC", "crv": "P-256", "x": "A" * 42 + "E", "y": "A" * 42 + "E"}
    keys, rejected = parse_jwks("330000", jwks({**off, "kid": jwk_thumbprint(off)}))
    assert (keys, rejected) == ({}, 1)


@pytest.mark.parametrize("document", ["not json", "[]", '{"keys": {}}', "{}", "[" * 10000])
def test_refuses_documents_that_are_not_a_jwks(document: str) -> None:
    with pytest.raises(ValueError, match="JWKS"):
        parse_jwks("330000", document)


# -- lifetimes -------------------------------------------------------------------------------


async def test_keys_are_cached_for_their_max_age() -> None:
    key, clock = jwk(Ed25519Signer()), Clock()
    province = Province(key, max_age=300)
    keys = cache(province, clock)
    assert (await keys.get("330000", key["kid"])) is not None
    clock.now += 299
    assert (await keys.get("330000", key["kid"])) is not None
    assert province.fetches == 1
    assert keys.age_seconds("330000") == 299
    clock.now += 1
    await keys.get("330000", key["kid"])
    assert province.fetches == 2
    assert keys.age_seconds("330000") == 0


@pytest.mark.parametrize(("max_age", "lifetime"), [(0, 60), (5, 60), (10**6, 600)])
async def test_max_age_is_clamped_into_the_bounds(max_age: int, lifetime: int) -> None:
    key, clock = jwk(Ed25519Signer()), Clock()
    province = Province(key, max_age=max_age)
    keys = cache(province, clock)
    await keys.get("330000", key["kid"])
    clock.now += lifetime - 1
    await keys.get("330000", key["kid"])
    assert province.fetches == 1
    clock.now += 1
    await keys.get("330000", key["kid"])
    assert province.fetches == 2


async def test_a_removed_key_stops_verifying_after_refresh() -> None:
    kept, removed, clock = jwk(Ed25519Signer()), jwk(P256Signer()), Clock()
    province = Province(kept, removed)
    keys = cache(province, clock)
    assert (await keys.get("330000", removed["kid"])) is not None
    province.document = jwks(kept)
    assert (await keys.get("330000", removed["kid"])) is not None  # cached
    clock.now += 300
    assert (await keys.get("330000", removed["kid"])) is None
    assert (await keys.get("330000", kept["kid"])) is not None


async def test_a_stale_set_serves_while_the_province_is_down_then_stops() -> None:
    key, clock = jwk(Ed25519Signer()), Clock()
    province = Province(key)
    keys = cache(province, clock)
    await keys.get("330000", key["kid"])
    province.failing = True
    clock.now += 300
    assert (await keys.get("330000", key["kid"])) is not None  # stale, within 120 s
    assert keys.stats.fetch_failures == 1
    clock.now += 119
    assert (await keys.get("330000", key["kid"])) is not None
    clock.now += 1
    with pytest.raises(KeyUnavailable):
        await keys.get("330000", key["kid"])


async def test_a_province_that_is_down_is_asked_once_per_interval() -> None:
    key, clock = jwk(Ed25519Signer()), Clock()
    province = Province(key)
    province.failing = True
    keys = cache(province, clock)
    for _ in range(20):
        with pytest.raises(KeyUnavailable):
            await keys.get("330000", key["kid"])
    assert province.fetches == 1
    assert keys.stats.fetch_failures == 1
    clock.now += 30
    province.failing = False
    assert (await keys.get("330000", key["kid"])) is not None
    assert province.fetches == 2


async def test_a_failed_refresh_for_an_unknown_kid_is_unavailable_not_unknown() -> None:
    key, clock = jwk(Ed25519Signer()), Clock()
    province = Province(key)
    keys = cache(province, clock)
    await keys.get("330000", key["kid"])
    clock.now += 30
    province.failing = True
    with pytest.raises(KeyUnavailable):
        await keys.get("330000", jwk(Ed25519Signer())["kid"])
    assert (await keys.get("330000", key["kid"])) is not None  # the cached set still serves


async def test_a_hanging_fetch_times_out() -> None:
    key, clock = jwk(Ed25519Signer()), Clock()
    province = Province(key)
    province.gate = asyncio.Event()  # never set
    keys = cache(province, clock)
    with pytest.raises(KeyUnavailable):
        await asyncio.wait_for(keys.get("330000", key["kid"]), timeout=5)
    assert keys.stats.fetch_failures == 1


async def test_an_oversized_jwks_is_refused() -> None:
    key, clock = jwk(Ed25519Signer()), Clock()
    province = Province(key)
    province.document = jwks(key, {"padding": "x" * 70_000})
    keys = cache(province, clock)
    with pytest.raises(KeyUnavailable):
        await keys.get("330000", key["kid"])


async def test_refused_keys_are_counted() -> None:
    key, clock = jwk(Ed25519Signer()), Clock()
    province = Province(key, {**jwk(Ed25519Signer()), "d": "secret"})
    keys = cache(province, clock)
    await keys.get("330000", key["kid"])
    assert keys.stats.rejected == 1


# -- unknown kids and concurrency -------------------------------------------------------------


async def test_an_unknown_kid_refreshes_at_most_once_per_interval() -> None:
    key, clock = jwk(Ed25519Signer()), Clock()
    province = Province(key)
    keys = cache(province, clock)
    await keys.get("330000", key["kid"])
    for _ in range(100):
        assert (await keys.get("330000", jwk(Ed25519Signer())["kid"])) is None
    assert province.fetches == 1
    assert keys.stats.refreshes_suppressed == 100
    clock.now += 30
    newcomer = jwk(P256Signer())
    province.document = jwks(key, newcomer)
    assert (await keys.get("330000", newcomer["kid"])) is not None
    assert province.fetches == 2


async def test_provinces_are_limited_separately() -> None:
    key, clock = jwk(Ed25519Signer()), Clock()
    province = Province(key)
    keys = cache(province, clock)
    await keys.get("330000", key["kid"])
    await keys.get("370000", key["kid"])
    assert province.fetches == 2


async def test_concurrent_misses_share_one_fetch() -> None:
    key, clock = jwk(Ed25519Signer()), Clock()
    province = Province(key)
    province.gate = asyncio.Event()
    keys = cache(province, clock)
    waiting = [asyncio.create_task(keys.get("330000", key["kid"])) for _ in range(50)]
    await asyncio.sleep(0)
    province.gate.set()
    found = await asyncio.gather(*waiting)
    assert all(k is not None and k.kid == key["kid"] for k in found)
    assert province.fetches == 1
    assert keys.stats.shared_waits == 49


async def test_a_cancelled_waiter_does_not_cancel_the_shared_fetch() -> None:
    key, clock = jwk(Ed25519Signer()), Clock()
    province = Province(key)
    province.gate = asyncio.Event()
    keys = cache(province, clock)
    first = asyncio.create_task(keys.get("330000", key["kid"]))
    second = asyncio.create_task(keys.get("330000", key["kid"]))
    await asyncio.sleep(0)
    first.cancel()
    province.gate.set()
    assert (await second) is not None
    with pytest.raises(asyncio.CancelledError):
        await first
    assert province.fetches == 1


# -- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        {"min_ttl_seconds": 0},
        {"min_ttl_seconds": 700, "max_ttl_seconds": 600},
        {"min_ttl_seconds": 10, "unknown_kid_min_interval_seconds": 30},
        {"max_stale_seconds": -1},
        {"fetch_timeout_seconds": 0},
    ],
)
def test_bad_key_settings_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(TrustConfigError):
        KeySettings(**settings)
