"""The cache of provinces' licence-signing public keys (JWKS, RFC 7517).

Invariants, in plain words:

- Keys come only from the province's JWKS, fetched through the injected `fetch` (the
  gateway's region client); never from a token. A JWK is used only if it is public (no `d`),
  of a supported type (Ed25519 → EdDSA, P-256 → ES256), for signing, and its `kid` is its RFC
  7638 thumbprint, so a kid names exactly one key. pyjwt builds the key object (`PyJWK`, bound
  to that one algorithm) once, when the JWKS is parsed; verifications reuse it.
- A fetched JWKS replaces the previous one entirely: a key the province removed stops
  verifying at the next refresh. It is kept for its max-age clamped into the configured
  bounds; past that, it is used only while the province cannot be reached, for at most
  `max_stale_seconds`.
- At most one fetch per province per `unknown_kid_min_interval_seconds`, however many tokens
  with unknown kids arrive; concurrent callers share one in-flight fetch. Failed fetches count
  against the same limit, so a province that is down is not hammered either.
- Fetching is async and bounded by a timeout; parsing a JWKS is cheap and bounded in size.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.licenses.token import Clock, jwk_thumbprint
from gateway.licenses.trust import KeySettings

__all__ = [
    "KEY_ALGORITHMS",
    "CacheStats",
    "Fetch",
    "KeyCache",
    "KeyUnavailable",
    "PublicKey",
    "SingleFlight",
    "VerificationKey",
    "parse_jwk",
    "parse_jwks",
]

_log = logging.getLogger(__name__)

Fetch = Callable[[str], Awaitable[tuple[str, int]]]
"""Given a region code, returns a document (JWKS JSON, or a status list token) and its
max-age in seconds; raises on failure."""

PublicKey = Ed25519PublicKey | ec.EllipticCurvePublicKey
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """One public key of one province."""

    region_code: str
    kid: str
    algorithm: str
    """The one JOSE algorithm this key verifies, decided by its type, never by a token."""
    jwk: jwt.PyJWK
    """The key as pyjwt verifies with it, prepared once when the JWKS is fetched; bound to
    `algorithm`."""

    @property
    def public_key(self) -> PublicKey:
        """The cryptography key inside `jwk`."""
        key: PublicKey = self.jwk.key
        return key


class KeyUnavailable(Exception):
    """The province's keys could not be fetched and no usable copy is cached."""


@dataclass(slots=True)
class CacheStats:
    """Counters for metrics (wired elsewhere); they only grow."""

    fetches: int = 0
    """Fetches started."""
    fetch_failures: int = 0
    """Fetches that failed: transport error, timeout, or a document that did not parse."""
    shared_waits: int = 0
    """Callers that joined a fetch already in flight instead of starting one."""
    refreshes_suppressed: int = 0
    """Fetches not started because the per-province interval had not passed."""
    rejected: int = 0
    """Keys (or status lists) refused while parsing a fetched document."""


class SingleFlight(Generic[_T]):
    """At most one running task per key; concurrent callers await the same one.

    A caller that is cancelled does not cancel the shared task.
    """

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[_T]] = {}

    def in_flight(self, key: str) -> bool:
        return key in self._tasks

    async def run(self, key: str, start: Callable[[], Awaitable[_T]]) -> _T:
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(start())
            self._tasks[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: str, task: asyncio.Task[_T]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()  # retrieved: nobody may be left awaiting it


# -- JWK parsing ---------------------------------------------------------------------------


KEY_ALGORITHMS: Mapping[tuple[str, str], str] = {
    ("OKP", "Ed25519"): "EdDSA",
    ("EC", "P-256"): "ES256",
}
"""(kty, crv) → the one JOSE algorithm such a key verifies. A new algorithm (SM2) is a new
entry here, plus a pyjwt `Algorithm` registered for it, plus its name in the trust list."""


def parse_jwk(region_code: str, jwk: object) -> VerificationKey:
    """One JWK as the gateway uses it; raises ValueError saying why it is refused."""
    if not isinstance(jwk, dict):
        raise ValueError("not an object")
    if "d" in jwk:
        raise ValueError("carries private key material")
    if jwk.get("use", "sig") != "sig":
        raise ValueError("not a signing key")
    algorithm = KEY_ALGORITHMS.get((str(jwk.get("kty")), str(jwk.get("crv"))))
    if algorithm is None:
        raise ValueError("unsupported key type")
    if jwk.get("alg", algorithm) != algorithm:
        raise ValueError("alg does not match the key type")
    kid = jwk.get("kid")
    if not isinstance(kid, str) or kid != jwk_thumbprint(jwk):
        raise ValueError("kid is not the key's RFC 7638 thumbprint")
    try:  # pyjwt checks the coordinates' lengths and that the point is on the curve
        prepared = jwt.PyJWK(jwk, algorithm)
    except jwt.PyJWTError:
        raise ValueError(f"not a usable {algorithm} key") from None
    return VerificationKey(region_code, kid, algorithm, prepared)


def parse_jwks(region_code: str, document: str) -> tuple[dict[str, VerificationKey], int]:
    """The usable keys of a JWKS by kid, and how many keys were refused.

    Raises ValueError when the document itself is not a JWKS.
    """
    try:
        parsed = json.loads(document)
    except (ValueError, RecursionError):
        raise ValueError("JWKS is not JSON") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("keys"), list):
        raise ValueError("JWKS has no 'keys' list")
    keys: dict[str, VerificationKey] = {}
    rejected = 0
    for jwk in parsed["keys"]:
        try:
            key = parse_jwk(region_code, jwk)
        except ValueError as exc:
            rejected += 1
            _log.warning("region %s: JWK refused: %s", region_code, exc)
            continue
        keys[key.kid] = key
    return keys, rejected


# -- The cache -----------------------------------------------------------------------------


class _Outcome(enum.Enum):
    FETCHED = enum.auto()
    FAILED = enum.auto()
    SUPPRESSED = enum.auto()


@dataclass(frozen=True, slots=True)
class _KeySet:
    keys: Mapping[str, VerificationKey]
    fetched_at: float
    expires_at: float


class KeyCache:
    """Provinces' public keys, by region code and kid."""

    def __init__(self, fetch: Fetch, clock: Clock, *, settings: KeySettings | None = None) -> None:
        self._fetch = fetch
        self._clock = clock
        self._settings = settings or KeySettings()
        self._sets: dict[str, _KeySet] = {}
        self._last_attempt: dict[str, float] = {}
        self._flights: SingleFlight[None] = SingleFlight()
        self.stats = CacheStats()

    def age_seconds(self, region_code: str) -> float | None:
        """Seconds since the province's keys were last fetched, or None if never."""
        key_set = self._sets.get(region_code)
        return None if key_set is None else self._clock() - key_set.fetched_at

    async def get(self, region_code: str, kid: str) -> VerificationKey | None:
        """The province's key with this kid, or None when the province does not publish it.

        An unknown kid triggers a refresh unless one ran within the minimum interval.
        Raises KeyUnavailable when the keys cannot be fetched and no usable copy is cached,
        or when a refresh for an unknown kid failed.
        """
        now = self._clock()
        key_set = self._sets.get(region_code)
        if key_set is not None and now < key_set.expires_at:
            key = key_set.keys.get(kid)
            if key is not None:
                return key
            outcome = await self._refresh_if_allowed(region_code, now)
            if outcome is _Outcome.FAILED:
                raise KeyUnavailable(f"region {region_code}: refresh for an unknown kid failed")
        else:
            await self._refresh_if_allowed(region_code, now)
        key_set = self._sets.get(region_code)
        if key_set is None:
            raise KeyUnavailable(f"region {region_code}: no keys")
        if self._clock() >= key_set.expires_at + self._settings.max_stale_seconds:
            raise KeyUnavailable(f"region {region_code}: keys too stale")
        return key_set.keys.get(kid)

    async def _refresh_if_allowed(self, region_code: str, now: float) -> _Outcome:
        """Runs (or joins) a fetch unless one started within the minimum interval."""
        if self._flights.in_flight(region_code):
            self.stats.shared_waits += 1
        else:
            last = self._last_attempt.get(region_code)
            if last is not None and now - last < self._settings.unknown_kid_min_interval_seconds:
                self.stats.refreshes_suppressed += 1
                return _Outcome.SUPPRESSED
            self._last_attempt[region_code] = now
        try:
            await self._flights.run(region_code, lambda: self._refresh(region_code))
        except Exception:  # counted and logged in _refresh; the caller decides from the cache
            return _Outcome.FAILED
        return _Outcome.FETCHED

    async def _refresh(self, region_code: str) -> None:
        self.stats.fetches += 1
        try:
            async with asyncio.timeout(self._settings.fetch_timeout_seconds):
                document, max_age = await self._fetch(region_code)
            if len(document) > self._settings.max_jwks_bytes:
                raise ValueError("JWKS is too large")
            keys, rejected = parse_jwks(region_code, document)
        except Exception as exc:
            self.stats.fetch_failures += 1
            _log.warning("region %s: key fetch failed: %s", region_code, type(exc).__name__)
            raise
        self.stats.rejected += rejected
        now = self._clock()
        ttl = min(
            max(float(max_age), self._settings.min_ttl_seconds), self._settings.max_ttl_seconds
        )
        self._sets[region_code] = _KeySet(keys, fetched_at=now, expires_at=now + ttl)
