"""The e-licence token profile, defined once for the issuer and the verifier.

A licence is a compact JWS (JWT) whose header is exactly `{alg, typ, kid}`, `typ` being
`license+jwt` (a province's status list uses the same profile with `typ` `statuslist+jwt`).
Its claims:

    iss  "tongban:region:<6-digit province code>"      aud  "tongban-gateway" (configurable)
    sub  the holder's id number                        jti  a UUID
    holder_id_type  "111" (公民身份号码) | "001" (统一社会信用代码) | "HMT_RESIDENCE_PERMIT"
                    (港澳台居民居住证) | "FOREIGN_PERMANENT_RESIDENCE" (外国人永久居留身份证)
    iat, nbf, exp   NumericDate, nbf < exp
    license  {identifier, type_code, number, issuing_agency_code, valid_from, valid_until}
    status   {"status_list": {"idx": <int>, "uri": "tongban:region:<code>:status"}}

Invariants, in plain words:

- The profile's pre-checks (`read_unverified`) run before anything else and are stricter than
  pyjwt: at most 16 KiB, ASCII, three non-empty segments each in the one canonical unpadded
  base64url spelling of its bytes (RFC 7515; so a token has exactly one spelling), a bounded
  header. They never call pyjwt and never do I/O.
- The header may carry only `alg`, `typ` and `kid`. Keys come from the trust list, never from
  the token: `jku`, `x5u`, `jwk`, `x5c` are refused, and so is any `crit` (and `b64`). A `kid`
  is 1-128 base64url characters (an RFC 7638 thumbprint is 43): path or quote characters never
  reach a lookup. pyjwt checks none of this (`typ` included).
- Duplicate JSON members and the non-standard constants NaN/Infinity are refused. The payload
  is parsed once, here, strictly: pyjwt's JWS layer hands back bytes and never parses it, so
  the claims used are the ones whose segment pyjwt verified.
- Signatures are checked in exactly one place, `verify_signature`, by pyjwt's JWS layer
  (`PyJWS.decode_complete`) with the key prepared once per fetched key (`keys.VerificationKey
  .jwk`, a `PyJWK` bound to the key's one algorithm): the header's `alg` must be that
  algorithm, and pyjwt is given no other. Then the claims pyjwt's JWT layer would check with
  the options we need: required claims present and not null, `aud` an exact single string
  when an audience is expected and absent when none is, `sub` and `jti` strings.
- pyjwt's exceptions become verdicts in one place, `_translate`; their words (which may quote
  key material) never reach a verdict's detail.
- Time is judged in one place, `check_times`, against the caller's injected clock: pyjwt reads
  the wall clock and cannot be given another one, so it is never asked to judge exp/nbf/iat
  (its JWS layer does not look at claims), and the claims are still required.
- Token validity lies inside the licence's validity: nbf is not before 00:00 (UTC+8) of
  `valid_from`, exp not after 24:00 (UTC+8) of `valid_until`.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import hashlib
import json
import math
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, NoReturn

import jwt

from gateway.catalog.fields import ID_DOCUMENTS

__all__ = [
    "CHINA_TZ",
    "DEFAULT_AUDIENCE",
    "HOLDER_ID_TYPES",
    "LICENSE_TOKEN_TYPE",
    "MAX_TOKEN_BYTES",
    "REQUIRED_LICENSE_CLAIMS",
    "STATUS_LIST_TOKEN_TYPE",
    "Clock",
    "Header",
    "LicenseClaims",
    "LicenseInfo",
    "TokenRejected",
    "UnverifiedToken",
    "Verdict",
    "check_times",
    "china_date",
    "encode_compact",
    "issuer_name",
    "jwk_thumbprint",
    "license_claims",
    "numeric_date",
    "parse_license_claims",
    "read_unverified",
    "region_of_issuer",
    "status_list_uri",
    "verify_signature",
]

Clock = Callable[[], float]
"""Seconds since the epoch; `time.time` in production, a fake in tests."""

LICENSE_TOKEN_TYPE = "license+jwt"
STATUS_LIST_TOKEN_TYPE = "statuslist+jwt"
MAX_TOKEN_BYTES = 16 * 1024
DEFAULT_AUDIENCE = "tongban-gateway"
REQUIRED_LICENSE_CLAIMS = ("exp", "nbf", "iat", "iss", "aud", "sub", "jti")
HOLDER_ID_TYPES = frozenset(document.holder_code for document in ID_DOCUMENTS)
"""111 = 公民身份号码 (GB 11643), 001 = 统一社会信用代码 (GB 32100), as in GB/T 36903; the two
permits by name (`catalog.fields.ID_DOCUMENTS`)."""

CHINA_TZ = timezone(timedelta(hours=8))
"""China Standard Time: licence dates are calendar dates there."""

_HEADER_MEMBERS = frozenset({"alg", "typ", "kid"})
_REFUSED_MEMBERS = ("jku", "x5u", "jwk", "x5c", "crit", "b64")
_MAX_HEADER_SEGMENT = 1024
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_KID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_ALG = re.compile(r"[A-Za-z0-9+_-]{1,32}")
_ISSUER = re.compile(r"tongban:region:([0-9]{6})")
_MAX_TEXT = 256
_MAX_NUMERIC_DATE = 2**40  # year ~36800; keeps float arithmetic exact
_B64URL_VALUES = {
    c: i
    for i, c in enumerate(string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_")
}
_UNUSED_BITS: tuple[int | None, ...] = (0, None, 0b1111, 0b11)
"""By length mod 4: the low bits of the last character that fall past the last byte."""
_HEADER_CACHE_SIZE = 256
"""Distinct header segments whose checks are remembered (one per signing key in use)."""


class Verdict(enum.Enum):
    """The outcome of a verification; names mirror `gateway.api.v1.LicenseVerdict`."""

    VALID = "VALID"
    EXPIRED = "EXPIRED"
    NOT_YET_VALID = "NOT_YET_VALID"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    UNTRUSTED_ISSUER = "UNTRUSTED_ISSUER"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    REVOKED = "REVOKED"
    SUSPENDED = "SUSPENDED"
    MALFORMED = "MALFORMED"
    HOLDER_MISMATCH = "HOLDER_MISMATCH"
    WRONG_TYPE = "WRONG_TYPE"
    STATUS_UNAVAILABLE = "STATUS_UNAVAILABLE"


class TokenRejected(Exception):
    """A token failed a check; `detail` is a sentence safe to show (no key, no clear id)."""

    def __init__(self, verdict: Verdict, detail: str) -> None:
        super().__init__(detail)
        self.verdict = verdict
        self.detail = detail


def _malformed(detail: str) -> NoReturn:
    raise TokenRejected(Verdict.MALFORMED, detail)


# -- Names ------------------------------------------------------------------------------


def issuer_name(region_code: str) -> str:
    """The `iss` of a province's licences: `tongban:region:<code>`."""
    return f"tongban:region:{region_code}"


def status_list_uri(region_code: str) -> str:
    """The uri of a province's status list: `tongban:region:<code>:status`."""
    return f"tongban:region:{region_code}:status"


def region_of_issuer(iss: object) -> str | None:
    """The region code in an `iss`, or None when it is not `tongban:region:<6 digits>`."""
    if not isinstance(iss, str):
        return None
    match = _ISSUER.fullmatch(iss)
    return match.group(1) if match else None


def china_date(timestamp: float) -> date:
    """The calendar date in China (UTC+8) at `timestamp`."""
    return datetime.fromtimestamp(timestamp, CHINA_TZ).date()


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_CHINA_OFFSET_SECONDS = 8 * 3600


def _start_of_day(day: date) -> float:
    """00:00 in China (a fixed UTC+8, no daylight saving) of `day`, in epoch seconds."""
    return float((day.toordinal() - _EPOCH_ORDINAL) * 86400 - _CHINA_OFFSET_SECONDS)


# -- Reading before verifying ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Header:
    """The protected header of a token that passed the pre-parse checks."""

    alg: str
    typ: str
    kid: str


@dataclass(frozen=True, slots=True)
class UnverifiedToken:
    """A token that passed the profile's pre-checks; nothing in it is authenticated yet."""

    header: Header
    payload: Mapping[str, Any]
    """Parsed strictly from the payload segment; authenticated only once `verify_signature`
    returns it."""
    text: str
    """The token as received: what pyjwt verifies."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member")
    return result


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"non-standard JSON constant {name}")


_STRICT_JSON = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant)


def _json_object(segment: str, what: str) -> dict[str, Any]:
    """The JSON object in a segment that already passed `_canonical_b64url`."""
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = _STRICT_JSON.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except (binascii.Error, ValueError, RecursionError):
        _malformed(f"The token's {what} is not base64url-encoded JSON.")
    if not isinstance(value, dict):
        _malformed(f"The token's {what} is not a JSON object.")
    return value


@functools.lru_cache(maxsize=_HEADER_CACHE_SIZE)
def _read_header(segment: str, expected_type: str) -> Header:
    """The header checks: a pure function of the segment, so a key's tokens, which share one
    header, are checked once (a refused header is never remembered)."""
    header = _json_object(segment, "header")
    refused = [name for name in _REFUSED_MEMBERS if name in header]
    if refused:
        _malformed(
            f"The token's header carries {', '.join(refused)}: keys come from the trust list "
            "and no critical extensions are supported."
        )
    unknown = sorted(set(header) - _HEADER_MEMBERS)
    if unknown:
        _malformed("The token's header has members other than alg, typ and kid.")
    typ, alg, kid = header.get("typ"), header.get("alg"), header.get("kid")
    if typ != expected_type:
        _malformed(f"The token's typ is not {expected_type!r}.")
    if not isinstance(alg, str) or not _ALG.fullmatch(alg):
        _malformed("The token's header has no algorithm, or not a JOSE algorithm name.")
    if not isinstance(kid, str) or not _KID.fullmatch(kid):
        _malformed("The token's kid is missing or not 1-128 base64url characters.")
    return Header(alg=alg, typ=typ, kid=kid)


def read_unverified(token: str, *, expected_type: str) -> UnverifiedToken:
    """The profile's pre-checks (size, format, canonical base64url, header, strict JSON), then
    the unauthenticated payload.

    Raises TokenRejected (always MALFORMED). Never does I/O and never calls pyjwt.
    """
    if len(token) > MAX_TOKEN_BYTES or not token.isascii():
        _malformed(
            "The token is longer than 16 KiB." if token.isascii() else "The token is not ASCII."
        )
    segments = token.split(".")
    if len(segments) != 3:
        _malformed("The token is not a compact JWS of three dot-separated parts.")
    for name, segment in zip(("header", "payload", "signature"), segments, strict=True):
        if not _SEGMENT.fullmatch(segment):
            _malformed(f"The token's {name} is empty or not base64url.")
        if not _canonical_b64url(segment):
            _malformed(f"The token's {name} is not canonical base64url.")
    if len(segments[0]) > _MAX_HEADER_SEGMENT:
        _malformed("The token's header is too long.")
    header = _read_header(segments[0], expected_type)
    return UnverifiedToken(header, _json_object(segments[1], "payload"), token)


# -- Signatures: pyjwt ---------------------------------------------------------------------

_JWS = jwt.PyJWS()
"""Our own instance: nothing registered on pyjwt's global one can reach it, and it is never
given options (its default verifies signatures)."""


def verify_signature(
    token: UnverifiedToken,
    key: jwt.PyJWK,
    *,
    audience: str | None,
    require: Sequence[str],
) -> Mapping[str, Any]:
    """pyjwt verifies the signature with exactly the key's algorithm; then the audience and
    required claims. Returns the (now authenticated) claims.

    The header's `alg` must be the key's. Times are not judged here (see `check_times`).
    Raises TokenRejected.
    """
    algorithm = key.algorithm_name
    if token.header.alg != algorithm:
        raise TokenRejected(Verdict.BAD_SIGNATURE, "The algorithm is not the key's.")
    try:
        _JWS.decode_complete(token.text, key, algorithms=[algorithm])
    except jwt.PyJWTError as exc:
        raise _translate(exc) from None
    claims = token.payload
    for name in require:
        if claims.get(name) is None:
            _malformed(f"The token lacks the {name!r} claim.")
    aud = claims.get("aud")
    if audience is None:
        if aud:
            _malformed("The token is meant for another audience.")
    elif not aud:
        _malformed("The token lacks the 'aud' claim.")
    elif not isinstance(aud, str) or aud != audience:
        _malformed("The token is meant for another audience.")
    for name in ("sub", "jti"):
        if name in claims and not isinstance(claims[name], str):
            _malformed("The token cannot be decoded.")
    return claims


def _translate(exc: jwt.PyJWTError) -> TokenRejected:
    """The only place where a pyjwt exception becomes a verdict."""
    if isinstance(exc, jwt.InvalidSignatureError):
        return TokenRejected(Verdict.BAD_SIGNATURE, "The signature does not verify.")
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return TokenRejected(Verdict.BAD_SIGNATURE, "The algorithm is not the key's.")
    if isinstance(exc, jwt.InvalidKeyError):
        return TokenRejected(Verdict.UNKNOWN_KEY, "The issuer's key cannot be used.")
    return TokenRejected(Verdict.MALFORMED, "The token cannot be decoded.")


# -- Times -------------------------------------------------------------------------------


def numeric_date(claims: Mapping[str, Any], name: str) -> float:
    """The NumericDate claim `name` (int or finite float, not bool). Raises TokenRejected."""
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        _malformed(f"The token's {name!r} is not a NumericDate.")
    if not math.isfinite(value) or not 0 <= value < _MAX_NUMERIC_DATE:
        _malformed(f"The token's {name!r} is out of range.")
    return float(value)


def check_times(iat: float, nbf: float, exp: float, now: float, leeway: float) -> None:
    """Judges a token's times against `now`, as pyjwt would (exp is exclusive).

    Raises TokenRejected: EXPIRED, or NOT_YET_VALID when nbf or iat is in the future.
    """
    if exp <= now - leeway:
        raise TokenRejected(Verdict.EXPIRED, "The token has expired.")
    if nbf > now + leeway:
        raise TokenRejected(Verdict.NOT_YET_VALID, "The token is not valid yet.")
    if iat > now + leeway:
        raise TokenRejected(Verdict.NOT_YET_VALID, "The token was issued in the future.")


# -- Claims --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LicenseInfo:
    """The `license` claim: the licence's own metadata (GB/T 36903)."""

    identifier: str
    """证照标识 (GB/T 36904), `1.2.156.3005.2.{type}.{agency}.{number}.{version}.{check}`."""
    type_code: str
    """证照类型代码, 21 characters."""
    number: str
    """证照编号."""
    issuing_agency_code: str
    """颁发机构代码."""
    valid_from: date
    """有效期起始日期."""
    valid_until: date
    """有效期截止日期 (inclusive)."""


@dataclass(frozen=True, slots=True)
class LicenseClaims:
    """The claims of a licence token, shape-checked (not yet judged against policy)."""

    region_code: str
    """The issuing province, from `iss`."""
    holder_id_type: str
    """One of `HOLDER_ID_TYPES`."""
    holder_id: str = field(repr=False)
    """The holder's id number, in clear: never log it (`mask_citizen_id`)."""
    audience: str
    token_id: str
    """`jti`."""
    issued_at: float
    not_before: float
    expires_at: float
    license: LicenseInfo
    status_index: int
    """`status.status_list.idx`."""
    status_uri: str
    """`status.status_list.uri`, always this province's list."""


def _text(container: Mapping[str, Any], name: str, where: str) -> str:
    value = container.get(name)
    if not isinstance(value, str) or not value or len(value) > _MAX_TEXT:
        _malformed(f"The token's {where}{name!r} is missing or not a short string.")
    return value


def _object(container: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    value = container.get(name)
    if not isinstance(value, dict):
        _malformed(f"The token's {where}{name!r} is missing or not an object.")
    return value


def _iso_date(container: Mapping[str, Any], name: str) -> date:
    text = _text(container, name, "license.")
    try:
        if len(text) != 10:
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        _malformed(f"The token's license.{name!r} is not an ISO date (YYYY-MM-DD).")


def parse_license_claims(claims: Mapping[str, Any]) -> LicenseClaims:
    """Checks the shape of verified licence claims. Raises TokenRejected (MALFORMED).

    Shape only: whether the issuer is trusted, the identifier's check character and the
    holder's id are judged by the verifier, in its order.
    """
    region = region_of_issuer(claims.get("iss"))
    if region is None:
        _malformed("The token's iss is not 'tongban:region:<6-digit code>'.")
    holder_id_type = claims.get("holder_id_type")
    if holder_id_type not in HOLDER_ID_TYPES:
        _malformed("The token's holder_id_type is not one the licence profile knows.")
    iat = numeric_date(claims, "iat")
    nbf = numeric_date(claims, "nbf")
    exp = numeric_date(claims, "exp")
    if nbf >= exp:
        _malformed("The token's nbf is not before its exp.")
    lic = _object(claims, "license", "")
    info = LicenseInfo(
        identifier=_text(lic, "identifier", "license."),
        type_code=_text(lic, "type_code", "license."),
        number=_text(lic, "number", "license."),
        issuing_agency_code=_text(lic, "issuing_agency_code", "license."),
        valid_from=_iso_date(lic, "valid_from"),
        valid_until=_iso_date(lic, "valid_until"),
    )
    if len(info.type_code) != 21:
        _malformed("The token's license.type_code is not 21 characters.")
    if info.valid_from > info.valid_until:
        _malformed("The licence's valid_from is after its valid_until.")
    if nbf < _start_of_day(info.valid_from) or exp > _start_of_day(info.valid_until) + 86400:
        _malformed("The token's validity lies outside the licence's validity dates.")
    status_list = _object(_object(claims, "status", ""), "status_list", "status.")
    index = status_list.get("idx")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        _malformed("The token's status.status_list.idx is not a non-negative integer.")
    uri = status_list.get("uri")
    if uri != status_list_uri(region):
        _malformed("The token's status list is not its issuer's.")
    return LicenseClaims(
        region_code=region,
        holder_id_type=holder_id_type,
        holder_id=_text(claims, "sub", ""),
        audience=_text(claims, "aud", ""),
        token_id=_text(claims, "jti", ""),
        issued_at=iat,
        not_before=nbf,
        expires_at=exp,
        license=info,
        status_index=index,
        status_uri=uri,
    )


def license_claims(
    *,
    region_code: str,
    audience: str,
    holder_id_type: str,
    holder_id: str,
    token_id: str,
    issued_at: int,
    not_before: int,
    expires_at: int,
    license: LicenseInfo,
    status_index: int,
) -> dict[str, Any]:
    """The claims of a licence token, for issuers; the inverse of `parse_license_claims`."""
    return {
        "iss": issuer_name(region_code),
        "sub": holder_id,
        "holder_id_type": holder_id_type,
        "aud": audience,
        "jti": token_id,
        "iat": issued_at,
        "nbf": not_before,
        "exp": expires_at,
        "license": {
            "identifier": license.identifier,
            "type_code": license.type_code,
            "number": license.number,
            "issuing_agency_code": license.issuing_agency_code,
            "valid_from": license.valid_from.isoformat(),
            "valid_until": license.valid_until.isoformat(),
        },
        "status": {"status_list": {"idx": status_index, "uri": status_list_uri(region_code)}},
    }


# -- Encoding and key ids --------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _canonical_b64url(segment: str) -> bool:
    """Whether a segment of base64url characters is the one unpadded spelling of its bytes
    (RFC 7515): not a length that no bytes have, and no bits set past the last byte, so a
    changed last character that decodes to the same bytes is refused."""
    unused = _UNUSED_BITS[len(segment) % 4]
    return unused is not None and not _B64URL_VALUES[segment[-1]] & unused


def _compact_json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")


def encode_compact(
    header: Mapping[str, Any], claims: Mapping[str, Any], sign: Callable[[bytes], bytes]
) -> str:
    """A compact JWS: `sign` gets the signing input and returns the JWS signature bytes.

    Signing through a callable keeps the algorithm a plug: anything that can sign bytes (SM2
    included, which JOSE has no name for yet) can issue tokens.
    """
    signing_input = _b64url(_compact_json(header)) + "." + _b64url(_compact_json(claims))
    return signing_input + "." + _b64url(sign(signing_input.encode("ascii")))


_THUMBPRINT_MEMBERS = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y")}


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK (OKP or EC), base64url.

    Raises ValueError for another key type or a missing member.
    """
    members = _THUMBPRINT_MEMBERS.get(jwk.get("kty", ""))
    if members is None:
        raise ValueError("unsupported JWK key type")
    required = {}
    for name in members:
        value = jwk.get(name)
        if not isinstance(value, str):
            raise ValueError(f"JWK lacks {name!r}")
        required[name] = value
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return _b64url(hashlib.sha256(canonical).digest())
