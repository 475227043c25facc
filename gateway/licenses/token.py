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

- Cheap checks come before any parsing: at most 16 KiB, ASCII, three non-empty base64url
  segments (an empty signature is refused here), a bounded header.
- The header may carry only `alg`, `typ` and `kid`. Keys come from the trust list, never from
  the token: `jku`, `x5u`, `jwk`, `x5c` are refused, and so is any `crit` (and `b64`). A `kid`
  is 1-128 base64url characters (an RFC 7638 thumbprint is 43): path or quote characters never
  reach a lookup.
- Duplicate JSON members and the non-standard constants NaN/Infinity are refused.
- Signatures are checked in exactly one place, `verify_signature`, on the segments
  `read_unverified` already split and decoded (pyjwt would decode and parse them a second
  time). It uses exactly one algorithm, the key's, through `SIGNATURE_CHECKS` (a plug per
  algorithm), and is as strict as pyjwt's decode with the options we used: required claims
  present and not null, `aud` an exact single string when an audience is expected and absent
  when none is, `sub` and `jti` strings.
- pyjwt stays as the reference, `decode_verified`, called by nothing that serves: tests hold
  `verify_signature` to the same decisions on the same tokens.
- Time is judged in one place, `check_times`, against the caller's injected clock: pyjwt reads
  the wall clock and cannot be given another one, so its own exp/nbf/iat checks are switched
  off while `require` still insists the claims are present.
- Token validity lies inside the licence's validity: nbf is not before 00:00 (UTC+8) of
  `valid_from`, exp not after 24:00 (UTC+8) of `valid_until`.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, NoReturn

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from gateway.catalog.fields import ID_DOCUMENTS

__all__ = [
    "CHINA_TZ",
    "DEFAULT_AUDIENCE",
    "HOLDER_ID_TYPES",
    "LICENSE_TOKEN_TYPE",
    "MAX_TOKEN_BYTES",
    "REQUIRED_LICENSE_CLAIMS",
    "SIGNATURE_CHECKS",
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
    "decode_verified",
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


def _start_of_day(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=CHINA_TZ).timestamp()


# -- Reading before verifying ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Header:
    """The protected header of a token that passed the pre-parse checks."""

    alg: str
    typ: str
    kid: str


@dataclass(frozen=True, slots=True)
class UnverifiedToken:
    """A token that passed the cheap checks; nothing in it is authenticated yet."""

    header: Header
    payload: Mapping[str, Any]
    """Only for finding the issuer's keys: use the claims `verify_signature` returns."""
    signing_input: bytes
    """`<header>.<payload>` as received: what the signature covers."""
    signature: bytes
    """The decoded signature; not checked yet."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate member {key!r}")
        result[key] = value
    return result


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"non-standard JSON constant {name}")


def _json_object(segment: str, what: str) -> dict[str, Any]:
    try:
        raw = _b64url_decode(segment)
        value = json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant)
    except (binascii.Error, ValueError, RecursionError):
        _malformed(f"The token's {what} is not base64url-encoded JSON.")
    if not isinstance(value, dict):
        _malformed(f"The token's {what} is not a JSON object.")
    return value


def read_unverified(token: str, *, expected_type: str) -> UnverifiedToken:
    """Size, format and header checks, then the unauthenticated payload.

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
    if len(segments[0]) > _MAX_HEADER_SEGMENT:
        _malformed("The token's header is too long.")
    header = _json_object(segments[0], "header")
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
    payload = _json_object(segments[1], "payload")
    signature_segment = segments[2]
    try:
        signature = _b64url_decode(signature_segment)
    except (binascii.Error, ValueError):
        _malformed("The token's signature is not base64url.")
    return UnverifiedToken(
        Header(alg=alg, typ=typ, kid=kid),
        payload,
        f"{segments[0]}.{segments[1]}".encode("ascii"),
        signature,
    )


# -- Signatures ------------------------------------------------------------------------------


def _unusable_key() -> NoReturn:
    raise TokenRejected(Verdict.UNKNOWN_KEY, "The issuer's key cannot be used.")


def _check_eddsa(key: Any, signature: bytes, message: bytes) -> bool:
    if not isinstance(key, Ed25519PublicKey):
        _unusable_key()
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


_ES256_HASH = ec.ECDSA(hashes.SHA256())


def _check_es256(key: Any, signature: bytes, message: bytes) -> bool:
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        _unusable_key()
    if len(signature) != 64:  # JWS ES256 is r‖s, 32 bytes each (RFC 7518 §3.4); never DER
        return False
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        key.verify(der, message, _ES256_HASH)
    except InvalidSignature:
        return False
    return True


SIGNATURE_CHECKS: Mapping[str, Callable[[Any, bytes, bytes], bool]] = {
    "EdDSA": _check_eddsa,
    "ES256": _check_es256,
}
"""JOSE algorithm → (public key, signature, signing input) → whether it verifies. A check
refuses a key of another type (UNKNOWN_KEY), so an algorithm can never be used with a key
that is not its own. SM2 would be one more entry."""


def verify_signature(
    token: UnverifiedToken,
    key: Any,
    algorithm: str,
    *,
    audience: str | None,
    require: Sequence[str],
) -> Mapping[str, Any]:
    """Verifies the signature with exactly `algorithm`, then the audience and required claims;
    returns the (now authenticated) claims.

    The header's `alg` must be `algorithm`. Times are not judged here (see `check_times`).
    Raises TokenRejected with the verdicts `decode_verified` gives for the same token.
    """
    check = SIGNATURE_CHECKS.get(algorithm)
    if check is None or token.header.alg != algorithm:
        raise TokenRejected(Verdict.BAD_SIGNATURE, "The algorithm is not the key's.")
    if not check(key, token.signature, token.signing_input):
        raise TokenRejected(Verdict.BAD_SIGNATURE, "The signature does not verify.")
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


# -- The reference: pyjwt -----------------------------------------------------------------


def decode_verified(
    token: str,
    key: Any,
    algorithm: str,
    *,
    audience: str | None,
    require: Sequence[str],
) -> dict[str, Any]:
    """Verifies the signature with exactly `algorithm`, the audience and required claims.

    The reference for `verify_signature`, through pyjwt: nothing that serves calls it; tests
    check that both decide alike. Times are not judged here. Raises TokenRejected.
    """
    try:
        return jwt.decode(
            token,
            key=key,
            algorithms=[algorithm],
            audience=audience,
            options={
                "require": list(require),
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "strict_aud": audience is not None,
            },
        )
    except jwt.PyJWTError as exc:
        raise _translate(exc) from None


def _translate(exc: jwt.PyJWTError) -> TokenRejected:
    """The only place where a pyjwt exception becomes a verdict."""
    if isinstance(exc, jwt.InvalidSignatureError):
        return TokenRejected(Verdict.BAD_SIGNATURE, "The signature does not verify.")
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return TokenRejected(Verdict.BAD_SIGNATURE, "The algorithm is not the key's.")
    if isinstance(exc, jwt.ExpiredSignatureError):
        return TokenRejected(Verdict.EXPIRED, "The token has expired.")
    if isinstance(exc, jwt.ImmatureSignatureError):
        return TokenRejected(Verdict.NOT_YET_VALID, "The token is not valid yet.")
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return TokenRejected(Verdict.MALFORMED, f"The token lacks the {exc.claim!r} claim.")
    if isinstance(exc, jwt.InvalidAudienceError):
        return TokenRejected(Verdict.MALFORMED, "The token is meant for another audience.")
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
    iat, nbf, exp = (numeric_date(claims, name) for name in ("iat", "nbf", "exp"))
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
    if nbf < _start_of_day(info.valid_from) or exp > _start_of_day(
        info.valid_until + timedelta(days=1)
    ):
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


def _b64url_decode(segment: str) -> bytes:
    """Strict base64url (RFC 7515, unpadded): a segment whose unused trailing bits are not zero
    is refused, so one token has exactly one spelling (a changed last character that decodes to
    the same bytes would otherwise still verify)."""
    if len(segment) % 4 == 1:
        raise ValueError("not base64url")
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if _b64url(raw) != segment:
        raise ValueError("not canonical base64url")
    return raw


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
