"""Status lists (IETF OAuth Token Status List): encoding, verification and the cache.

A province publishes one signed list (`typ` `statuslist+jwt`) of its licences' statuses:
claims `sub` (the list's uri), `iat`, `exp`, `ttl` and `status_list: {bits, lst}`, where `lst`
is the statuses packed `bits` to a value, index 0 in the least significant bits of byte 0,
zlib-compressed and base64url-encoded without padding. A licence points at its entry with
`status.status_list = {idx, uri}`.

Invariants, in plain words:

- A list is believed only if its signature verifies with a key from the province's JWKS
  (the same KeyCache as licences), its header passes the same checks as a licence's, its
  `sub` is the province's list uri and it has not expired.
- A cached list is used for at most its `ttl` (or the fetch's max-age, whichever is shorter),
  clamped into the configured [min, max] bounds, and never past its `exp`: a revocation is
  seen within `max_ttl_seconds`. There is no stale fallback: when no fresh list can be had, the
  licence type's unreachable policy decides.
- An index outside the list means the licence is invalid, after at most one refresh (a
  licence issued after the list was fetched). Decompression is bounded (no zip bombs).
- At most one fetch per province per `refresh_min_interval_seconds` after a failure or for an
  out-of-range index; concurrent callers share one in-flight fetch.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import logging
import math
import re
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from gateway.licenses.keys import CacheStats, KeyCache, KeyUnavailable, SingleFlight
from gateway.licenses.token import (
    STATUS_LIST_TOKEN_TYPE,
    Clock,
    TokenRejected,
    Verdict,
    check_times,
    numeric_date,
    read_unverified,
    status_list_uri,
    verify_signature,
)
from gateway.licenses.trust import TrustList

__all__ = [
    "LicenseStatus",
    "StatusFetch",
    "StatusList",
    "StatusListCache",
    "StatusListUnavailable",
    "decode_status_list",
    "encode_status_list",
]

_log = logging.getLogger(__name__)

StatusFetch = Callable[[str], Awaitable[tuple[str, int]]]
"""Given a region code, returns the province's status list token and its max-age in seconds."""

_BITS = (1, 2, 4, 8)
_LST = re.compile(r"[A-Za-z0-9_-]+")
_REQUIRED = ("sub", "iat", "exp", "status_list")


class LicenseStatus(enum.IntEnum):
    """Status values (Token Status List registry)."""

    VALID = 0
    REVOKED = 1
    """"INVALID" in the draft: revoked for good."""
    SUSPENDED = 2


def encode_status_list(statuses: Sequence[int], bits: int = 2) -> str:
    """`lst`: statuses packed `bits` per value from the least significant bit, zlib, base64url."""
    if bits not in _BITS:
        raise ValueError(f"bits must be one of {_BITS}")
    per_byte = 8 // bits
    packed = bytearray(math.ceil(len(statuses) / per_byte))
    for index, status in enumerate(statuses):
        if not 0 <= status < 1 << bits:
            raise ValueError(f"status {status} does not fit in {bits} bits")
        packed[index // per_byte] |= status << (index % per_byte * bits)
    compressed = zlib.compress(bytes(packed), 9)
    return base64.urlsafe_b64encode(compressed).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class StatusList:
    """A decoded status list."""

    bits: int
    data: bytes

    def __len__(self) -> int:
        return len(self.data) * 8 // self.bits

    def status_of(self, index: int) -> int:
        """The status at `index`; raises IndexError outside the list."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        per_byte = 8 // self.bits
        byte = self.data[index // per_byte]
        return (byte >> (index % per_byte * self.bits)) & ((1 << self.bits) - 1)


def decode_status_list(bits: object, lst: object, *, max_bytes: int) -> StatusList:
    """Decodes `{bits, lst}`; raises ValueError, also when it would exceed `max_bytes`."""
    if isinstance(bits, bool) or bits not in _BITS or not isinstance(bits, int):
        raise ValueError("status_list.bits is not 1, 2, 4 or 8")
    if not isinstance(lst, str) or not _LST.fullmatch(lst):
        raise ValueError("status_list.lst is not unpadded base64url")
    try:
        compressed = base64.urlsafe_b64decode(lst + "=" * (-len(lst) % 4))
        inflater = zlib.decompressobj()
        data = inflater.decompress(compressed, max_bytes)
        if inflater.unconsumed_tail or not inflater.eof:
            raise ValueError("status_list.lst is truncated or larger than allowed")
    except (binascii.Error, zlib.error):
        raise ValueError("status_list.lst is not zlib data") from None
    return StatusList(bits, data)


class StatusListUnavailable(Exception):
    """No fresh, verified status list can be had for the province."""


@dataclass(frozen=True, slots=True)
class _Entry:
    status_list: StatusList
    fetched_at: float
    expires_at: float


class StatusListCache:
    """Provinces' verified status lists, by region code."""

    def __init__(self, fetch: StatusFetch, keys: KeyCache, trust: TrustList, clock: Clock) -> None:
        self._fetch = fetch
        self._keys = keys
        self._trust = trust
        self._settings = trust.status_lists
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._last_fetch: dict[str, float] = {}
        self._failed_at: dict[str, float] = {}
        self._flights: SingleFlight[None] = SingleFlight()
        self.stats = CacheStats()

    def age_seconds(self, region_code: str) -> float | None:
        """Seconds since the province's list was last fetched, or None if never."""
        entry = self._entries.get(region_code)
        return None if entry is None else self._clock() - entry.fetched_at

    async def get(self, region_code: str) -> StatusList:
        """The province's fresh list. Raises StatusListUnavailable."""
        entry = self._entries.get(region_code)
        if entry is not None and self._clock() < entry.expires_at:
            return entry.status_list
        failed_at = self._failed_at.get(region_code)
        if (
            failed_at is not None
            and not self._flights.in_flight(region_code)
            and self._clock() - failed_at < self._settings.refresh_min_interval_seconds
        ):
            self.stats.refreshes_suppressed += 1
            raise StatusListUnavailable(f"region {region_code}: recent fetch failed")
        return await self._refresh(region_code)

    async def status_of(self, region_code: str, index: int) -> int:
        """The status at `index` in the province's list, refreshing the list once (within the
        interval) when the index lies beyond it. Raises StatusListUnavailable, or IndexError
        when the index is outside even a fresh list."""
        status_list = await self.get(region_code)
        if index < len(status_list):
            return status_list.status_of(index)
        last = self._last_fetch.get(region_code)
        if self._flights.in_flight(region_code) or (
            last is not None and self._clock() - last >= self._settings.refresh_min_interval_seconds
        ):
            status_list = await self._refresh(region_code)
        else:
            self.stats.refreshes_suppressed += 1
        return status_list.status_of(index)

    async def _refresh(self, region_code: str) -> StatusList:
        if self._flights.in_flight(region_code):
            self.stats.shared_waits += 1
        else:
            self._last_fetch[region_code] = self._clock()
        try:
            await self._flights.run(region_code, lambda: self._fetch_and_verify(region_code))
        except StatusListUnavailable:
            raise
        except Exception as exc:
            raise StatusListUnavailable(f"region {region_code}: {type(exc).__name__}") from None
        return self._entries[region_code].status_list

    async def _fetch_and_verify(self, region_code: str) -> None:
        self.stats.fetches += 1
        try:
            async with asyncio.timeout(self._settings.fetch_timeout_seconds):
                token, max_age = await self._fetch(region_code)
            status_list, expires_at = await self._verify(region_code, token, max_age)
        except Exception as exc:
            self.stats.fetch_failures += 1
            self._failed_at[region_code] = self._clock()
            _log.warning("region %s: status list unavailable: %s", region_code, exc)
            if isinstance(exc, StatusListUnavailable):
                raise
            raise StatusListUnavailable(f"region {region_code}: {type(exc).__name__}") from None
        self._failed_at.pop(region_code, None)
        self._entries[region_code] = _Entry(status_list, self._clock(), expires_at)

    async def _verify(self, region_code: str, token: str, max_age: int) -> tuple[StatusList, float]:
        """Checks the status list token; returns the list and until when it may be used."""
        issuer = self._trust.issuer(region_code)
        if issuer is None:
            raise StatusListUnavailable(f"region {region_code} is not trusted")
        try:
            unverified = read_unverified(token, expected_type=STATUS_LIST_TOKEN_TYPE)
            header = unverified.header
            if header.alg not in issuer.algorithms:
                raise StatusListUnavailable(f"region {region_code}: algorithm not allowed")
            key = await self._keys.get(region_code, header.kid)
            if key is None:
                raise StatusListUnavailable(f"region {region_code}: unknown key")
            if header.alg != key.algorithm:
                raise StatusListUnavailable(f"region {region_code}: algorithm is not the key's")
            claims = verify_signature(unverified, key.jwk, audience=None, require=_REQUIRED)
            now = self._clock()
            iat, exp = numeric_date(claims, "iat"), numeric_date(claims, "exp")
            check_times(iat, iat, exp, now, self._trust.leeway_seconds)
            if exp <= now:  # no leeway here: a cached list must never outlive its exp
                raise TokenRejected(Verdict.EXPIRED, "The status list has expired.")
        except TokenRejected as rejected:
            raise StatusListUnavailable(f"region {region_code}: {rejected.detail}") from None
        except KeyUnavailable:
            raise StatusListUnavailable(f"region {region_code}: keys unavailable") from None
        if claims.get("sub") != status_list_uri(region_code):
            raise StatusListUnavailable(f"region {region_code}: the list is not its own")
        body = claims.get("status_list")
        if not isinstance(body, Mapping):
            raise StatusListUnavailable(f"region {region_code}: no status_list object")
        try:
            status_list = decode_status_list(
                body.get("bits"), body.get("lst"), max_bytes=self._settings.max_list_bytes
            )
        except ValueError as exc:
            self.stats.rejected += 1
            raise StatusListUnavailable(f"region {region_code}: {exc}") from None
        lifetime = float(max_age) if max_age > 0 else self._settings.min_ttl_seconds
        ttl = claims.get("ttl")
        if isinstance(ttl, int | float) and not isinstance(ttl, bool) and math.isfinite(ttl):
            lifetime = min(lifetime, float(ttl)) if max_age > 0 else float(ttl)
        lifetime = min(
            max(lifetime, self._settings.min_ttl_seconds), self._settings.max_ttl_seconds
        )
        return status_list, min(now + lifetime, exp)
