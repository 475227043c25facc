"""Verification of e-licence tokens against the trust list, the keys and the status lists.

The order is the contract (each step can only run once the ones before it passed):

 1. size, format and header (typ, forbidden members, kid shape) — no I/O, no pyjwt;
 2. the issuer named in the (unverified) `iss` is a trusted province, and the header's `alg`
    is one allowed for it — still no I/O, so garbage never makes the gateway fetch;
 3. the key by kid from that province's JWKS; `alg` must be the key's own algorithm;
 4. the signature, checked by pyjwt with the key's one algorithm and the key prepared when
    its JWKS was fetched; audience and required claims; then the claims' shape; then the
    times against the injected clock with the bounded leeway;
 5. the province is trusted for this licence type;
 6. the 证照标识 check character, and its type code and number equal the claims';
 7. the expected type, then the holder's id (its check) and the expected holder;
 8. only then the status, from the province's status list.

A verdict's `detail` never contains key material or a holder's id in clear; a decoded
licence is returned once the signature has verified, with the holder id masked.

The authenticated-token cache memoizes steps 1-4 up to the claims' shape, and the verdict of
step 6 (the identifier's check, which depends on the claims alone), and nothing else: a pure
function of the token's exact text and the key that verified it (a kid is its key's RFC
7638 thumbprint, so a kid names one key). A hit still passes through everything that can change
with time: the issuer must still be trusted with that algorithm, the key cache must still
publish that kid (a retired key stops verifying within the key bound, cached or not), and the
times, the trust for the licence type, the holder and the status list are judged on every
call. So a cached token can never be VALID once it has expired or been revoked under the
configured bounds: only the signature check and the parsing are skipped. Only tokens whose
signature verified are remembered, so garbage cannot fill the cache; it is bounded (oldest
out first) and lives in memory only.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from datetime import date

from gateway.catalog.codes import CodeError, mask_citizen_id, parse_license_identifier
from gateway.catalog.fields import holder_document
from gateway.events import NO_EVENTS, Events, LicenseVerified
from gateway.licenses.keys import KeyCache, KeyUnavailable, VerificationKey
from gateway.licenses.status_list import LicenseStatus, StatusListCache, StatusListUnavailable
from gateway.licenses.token import (
    LICENSE_TOKEN_TYPE,
    REQUIRED_LICENSE_CLAIMS,
    Clock,
    LicenseClaims,
    TokenRejected,
    Verdict,
    check_times,
    china_date,
    parse_license_claims,
    read_unverified,
    region_of_issuer,
    verify_signature,
)
from gateway.licenses.trust import TrustList, UnreachablePolicy

__all__ = [
    "DEFAULT_TOKEN_CACHE_SIZE",
    "LicenseVerifier",
    "Verdict",
    "Verification",
    "VerifiedLicense",
]

DEFAULT_TOKEN_CACHE_SIZE = 4096
"""Authenticated tokens remembered (a licence token is ~1 KiB)."""


@dataclass(frozen=True, slots=True)
class VerifiedLicense:
    """A licence whose signature verified; safe to log (the holder id is masked)."""

    identifier: str
    type_code: str
    number: str
    issuer_region: str
    issuing_agency_code: str
    holder_id_type: str
    """The token's `holder_id_type`: "111" (公民身份号码), "001" (统一社会信用代码), or a permit
    by name (`catalog.fields.ID_DOCUMENTS`)."""
    holder_id_masked: str
    valid_from: date
    valid_until: date
    not_before: float
    expires_at: float
    key_id: str
    token_id: str
    status_index: int


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of one verification."""

    verdict: Verdict
    detail: str
    """A sentence for people; no key material, no clear holder id."""
    license: VerifiedLicense | None = None
    """Set once the signature verified, whatever the verdict."""
    status_checked: bool = False
    """Whether the verdict rests on the issuer's status list: true for VALID, REVOKED and
    SUSPENDED read from a fresh list; false when a FAIL_OPEN type was answered VALID without
    one, and for verdicts reached before the status step."""


@dataclass(frozen=True, slots=True)
class _Authenticated:
    """A cache entry: what steps 1-4 established for one exact token text."""

    claims: LicenseClaims
    region_code: str
    kid: str
    algorithm: str
    decoded: VerifiedLicense
    identifier_problem: str | None


class LicenseVerifier:
    """Verifies licence tokens; see the module docstring for the order of checks."""

    def __init__(
        self,
        trust: TrustList,
        keys: KeyCache,
        status_lists: StatusListCache,
        clock: Clock,
        *,
        token_cache_size: int = DEFAULT_TOKEN_CACHE_SIZE,
        events: Events = NO_EVENTS,
    ) -> None:
        """`token_cache_size` bounds the authenticated-token cache; 0 turns it off. Every
        verdict is emitted as `LicenseVerified`."""
        self._events = events
        self._trust = trust
        self._keys = keys
        self._status_lists = status_lists
        self._clock = clock
        self._cache_size = token_cache_size
        self._authenticated: dict[str, _Authenticated] = {}
        self.cache_hits = 0
        """Verifications that skipped the signature check (for metrics and tests)."""

    @property
    def keys(self) -> KeyCache:
        """The key cache (its `stats` and ages are exported as metrics)."""
        return self._keys

    @property
    def status_lists(self) -> StatusListCache:
        """The status-list cache (its `stats` and ages are exported as metrics)."""
        return self._status_lists

    async def verify(
        self,
        token: str,
        *,
        expected_type_code: str | None = None,
        expected_holder_id: str | None = None,
    ) -> Verification:
        """Verifies `token`. Never raises for a bad token: every problem is a verdict."""
        started = time.perf_counter()
        result = await self._verify(token, expected_type_code, expected_holder_id)
        self._events.emit(LicenseVerified(result.verdict.name, time.perf_counter() - started))
        return result

    async def _verify(
        self, token: str, expected_type_code: str | None, expected_holder_id: str | None
    ) -> Verification:
        entry = self._authenticated.get(token)
        if entry is not None:
            try:
                current = await self._still_published(entry)
            except KeyUnavailable:
                # Exactly what the full path answers: a second key lookup here would find the
                # refresh allowance spent and judge a different state.
                rejected = _keys_unavailable(entry.region_code)
                return Verification(rejected.verdict, rejected.detail)
            if not current:
                entry = None
        if entry is None:
            try:
                claims, key = await self._authenticate(token)
            except TokenRejected as rejected:
                return Verification(rejected.verdict, rejected.detail)
            entry = _Authenticated(
                claims,
                key.region_code,
                key.kid,
                key.algorithm,
                _decoded(claims, key.kid),
                _identifier_problem(claims),
            )
            self._remember(token, entry)
        else:
            self.cache_hits += 1
        claims, decoded = entry.claims, entry.decoded
        try:
            self._judge(claims, entry.identifier_problem, expected_type_code, expected_holder_id)
        except TokenRejected as rejected:
            return Verification(rejected.verdict, rejected.detail, decoded)
        return await self._status(claims, decoded)

    async def _still_published(self, entry: _Authenticated) -> bool:
        """Whether a cached token's issuer, algorithm and key are all still current; when not,
        the token goes through the full path again. Raises KeyUnavailable as the full path's
        key lookup would."""
        issuer = self._trust.issuer(entry.region_code)
        if issuer is None or entry.algorithm not in issuer.algorithms:
            return False
        key = await self._keys.get(entry.region_code, entry.kid)
        return key is not None and key.algorithm == entry.algorithm

    def _remember(self, token: str, entry: _Authenticated) -> None:
        if self._cache_size <= 0:
            return
        cache = self._authenticated
        cache.pop(token, None)
        while len(cache) >= self._cache_size:
            del cache[next(iter(cache))]
        cache[token] = entry

    async def _authenticate(self, token: str) -> tuple[LicenseClaims, VerificationKey]:
        """Steps 1-4 up to the times: the claims of a token signed by a trusted province's key."""
        unverified = read_unverified(token, expected_type=LICENSE_TOKEN_TYPE)
        header = unverified.header
        region = region_of_issuer(unverified.payload.get("iss"))
        if region is None:
            raise TokenRejected(
                Verdict.MALFORMED, "The token's iss is not 'tongban:region:<6-digit code>'."
            )
        issuer = self._trust.issuer(region)
        if issuer is None:
            raise TokenRejected(
                Verdict.UNTRUSTED_ISSUER, f"Region {region} is not a trusted licence issuer."
            )
        if header.alg not in issuer.algorithms:
            raise TokenRejected(
                Verdict.BAD_SIGNATURE,
                f"Algorithm {header.alg!r} is not allowed for region {region}'s licences.",
            )
        try:
            key = await self._keys.get(region, header.kid)
        except KeyUnavailable:
            raise _keys_unavailable(region) from None
        if key is None:
            raise TokenRejected(
                Verdict.UNKNOWN_KEY, f"Key {header.kid} is not among region {region}'s keys."
            )
        if header.alg != key.algorithm:
            raise TokenRejected(
                Verdict.BAD_SIGNATURE, f"Algorithm {header.alg!r} is not the key's algorithm."
            )
        payload = verify_signature(
            unverified, key.jwk, audience=self._trust.audience, require=REQUIRED_LICENSE_CLAIMS
        )
        return parse_license_claims(payload), key

    def _judge(
        self,
        claims: LicenseClaims,
        identifier_problem: str | None,
        expected_type_code: str | None,
        expected_holder_id: str | None,
    ) -> None:
        """The rest of step 4 and steps 5-7: pure checks of verified claims.

        `identifier_problem` is `_identifier_problem(claims)`, worked out once per token (it
        depends on nothing else) and raised here, in its place in the order of checks.
        """
        check_times(
            claims.issued_at,
            claims.not_before,
            claims.expires_at,
            self._clock(),
            self._trust.leeway_seconds,
        )
        lic = claims.license
        if not self._trust.trusts(claims.region_code, lic.type_code):
            raise TokenRejected(
                Verdict.UNTRUSTED_ISSUER,
                f"Region {claims.region_code} is not trusted for licence type {lic.type_code}.",
            )
        if identifier_problem is not None:
            raise TokenRejected(Verdict.MALFORMED, identifier_problem)
        if expected_type_code is not None and lic.type_code != expected_type_code:
            raise TokenRejected(
                Verdict.WRONG_TYPE,
                f"The licence is of type {lic.type_code}, not {expected_type_code}.",
            )
        document = holder_document(claims.holder_id_type)
        assert document is not None  # parse_license_claims admits only HOLDER_ID_TYPES
        problem = document.check(
            claims.holder_id, self._trust.holder_provinces, china_date(self._clock())
        )
        if problem is not None:
            raise TokenRejected(Verdict.MALFORMED, f"The holder's id: {problem.message}")
        if expected_holder_id is not None and not hmac.compare_digest(
            claims.holder_id.encode(), expected_holder_id.encode()
        ):
            raise TokenRejected(
                Verdict.HOLDER_MISMATCH, "The licence's holder is not the expected holder."
            )

    async def _status(self, claims: LicenseClaims, decoded: VerifiedLicense) -> Verification:
        """Step 8: the status list, or the type's policy when it cannot be had."""
        try:
            status = await self._status_lists.status_of(claims.region_code, claims.status_index)
        except StatusListUnavailable:
            if self._trust.unreachable_policy(decoded.type_code) is UnreachablePolicy.FAIL_OPEN:
                return Verification(
                    Verdict.VALID,
                    "The licence is valid; its status list could not be had and its type "
                    "fails open, so its status was not checked.",
                    decoded,
                    status_checked=False,
                )
            return Verification(
                Verdict.STATUS_UNAVAILABLE,
                f"Region {claims.region_code}'s status list cannot be had.",
                decoded,
            )
        except IndexError:
            return Verification(
                Verdict.MALFORMED, "The licence's status index is outside its status list.", decoded
            )
        if status == LicenseStatus.VALID:
            return Verification(Verdict.VALID, "The licence is valid.", decoded, True)
        if status == LicenseStatus.SUSPENDED:
            return Verification(Verdict.SUSPENDED, "The licence is suspended.", decoded, True)
        if status == LicenseStatus.REVOKED:
            return Verification(Verdict.REVOKED, "The licence has been revoked.", decoded, True)
        return Verification(
            Verdict.REVOKED,
            f"The licence has unknown status {status}; treated as invalid.",
            decoded,
            True,
        )


def _identifier_problem(claims: LicenseClaims) -> str | None:
    """Step 6, pure: why the 证照标识 is not this licence's (its check character, or its type,
    agency or number differing from the claims'), or None."""
    lic = claims.license
    try:
        parsed = parse_license_identifier(lic.identifier)
    except CodeError as exc:
        return f"The licence identifier: {exc.problem.message}"
    if (parsed.type_code, parsed.number, parsed.issuer_code) != (
        lic.type_code,
        lic.number,
        lic.issuing_agency_code,
    ):
        return "The licence identifier's type, agency or number differs from the licence's."
    return None


def _keys_unavailable(region: str) -> TokenRejected:
    return TokenRejected(
        Verdict.STATUS_UNAVAILABLE, f"Region {region}'s signing keys cannot be fetched."
    )


def _decoded(claims: LicenseClaims, kid: str) -> VerifiedLicense:
    lic = claims.license
    return VerifiedLicense(
        identifier=lic.identifier,
        type_code=lic.type_code,
        number=lic.number,
        issuer_region=claims.region_code,
        issuing_agency_code=lic.issuing_agency_code,
        holder_id_type=claims.holder_id_type,
        holder_id_masked=mask_citizen_id(claims.holder_id),
        valid_from=lic.valid_from,
        valid_until=lic.valid_until,
        not_before=claims.not_before,
        expires_at=claims.expires_at,
        key_id=kid,
        token_id=claims.token_id,
        status_index=claims.status_index,
    )
