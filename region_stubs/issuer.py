"""The province's e-licence issuer: signing keys, rotation, licences, JWKS and status list.

A test double for a provincial licence platform, in memory. The token profile is the
gateway's own (`gateway.licenses.token`), so issuer and verifier cannot drift apart.

Invariants, in plain words:

- Signing goes through the small `Signer` protocol: an algorithm is a plug (a factory in
  `SIGNER_FACTORIES`, or one passed in), never a branch. SM2 — which JOSE has no name for —
  would be one more factory.
- A key id is the RFC 7638 thumbprint of the public JWK. A new key is published in the JWKS
  the moment it is added and signs from its activation, `activation_delay` later (0: at once),
  so a verifier that refreshes its keys within that delay never meets a token signed by a key
  it could not have fetched. Older keys stay in the JWKS until retired, so tokens they signed
  keep verifying through the overlap. Neither the signing key nor one waiting to sign can be
  retired.
- The JWKS holds public keys only.
- Every licence gets its own index in the status list (sequentially; a production issuer would
  shuffle them), and VALID until told otherwise. The list always covers every index issued,
  padded to `min_status_list_entries` so its size says little about how many licences exist.
- Bad input is refused with the gateway's errors (`InvalidRequest` with field violations named
  after `IssueLicenseRequest`, `NotFound`), so the stub's servicer passes them straight on.
  Holder ids never appear in messages.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from gateway.catalog.codes import CodeError, make_license_identifier, validate_uscc
from gateway.catalog.fields import holder_document
from gateway.errors import FieldViolation, InvalidRequest, NotFound
from gateway.licenses.status_list import LicenseStatus, encode_status_list
from gateway.licenses.token import (
    DEFAULT_AUDIENCE,
    HOLDER_ID_TYPES,
    LICENSE_TOKEN_TYPE,
    STATUS_LIST_TOKEN_TYPE,
    LicenseInfo,
    china_date,
    encode_compact,
    issuer_name,
    jwk_thumbprint,
    license_claims,
    status_list_uri,
)
from gateway.licenses.trust import PROVINCE_CODES
from gateway.times import utc_now

__all__ = [
    "SIGNER_FACTORIES",
    "Ed25519Signer",
    "IssuedLicense",
    "LicenseIssuer",
    "P256Signer",
    "Signer",
]

_DAY = 86400
_MAX_VALID_DAYS = 100 * 366
_TYPE_CODE = re.compile(r"[0-9A-Z]{18}[0-9]{3}")
_ALNUM = re.compile(r"[0-9A-Z]{1,64}")


class Signer(Protocol):
    """One signing key: signs JWS signing input with one JOSE algorithm."""

    @property
    def algorithm(self) -> str:
        """The JOSE `alg` (`EdDSA`, `ES256`, …)."""
        ...

    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK, only the members its RFC 7638 thumbprint needs."""
        ...

    def sign(self, message: bytes) -> bytes:
        """The JWS signature of `message`, in the algorithm's JWS form (RFC 7518)."""
        ...


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Ed25519Signer:
    """EdDSA over Ed25519 (RFC 8037)."""

    algorithm = "EdDSA"

    def __init__(self, private_key: Ed25519PrivateKey | None = None) -> None:
        self._key = private_key or Ed25519PrivateKey.generate()

    def public_jwk(self) -> dict[str, str]:
        raw = self._key.public_key().public_bytes_raw()
        return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw)}

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


class P256Signer:
    """ECDSA over P-256 with SHA-256 (ES256): signatures are r‖s, 32 bytes each."""

    algorithm = "ES256"

    def __init__(self, private_key: ec.EllipticCurvePrivateKey | None = None) -> None:
        self._key = private_key or ec.generate_private_key(ec.SECP256R1())

    def public_jwk(self) -> dict[str, str]:
        numbers = self._key.public_key().public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64url(numbers.x.to_bytes(32, "big")),
            "y": _b64url(numbers.y.to_bytes(32, "big")),
        }

    def sign(self, message: bytes) -> bytes:
        r, s = decode_dss_signature(self._key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


SIGNER_FACTORIES: Mapping[str, Callable[[], Signer]] = {
    "EdDSA": Ed25519Signer,
    "ES256": P256Signer,
}
"""JOSE algorithm → a factory of fresh keys for it."""


@dataclass(frozen=True, slots=True)
class IssuedLicense:
    """What issuing a licence gives back."""

    token: str
    """The signed licence JWT."""
    identifier: str
    """Its 证照标识."""
    key_id: str
    """The kid of the key that signed it."""
    status_index: int
    """Its index in the status list."""
    token_id: str
    """Its `jti`."""
    expires_at: int
    """When it expires (`exp`), in seconds since the epoch."""


class LicenseIssuer:
    """A province issuing e-licences, in memory."""

    def __init__(
        self,
        region_code: str,
        *,
        audience: str = DEFAULT_AUDIENCE,
        algorithm: str = "EdDSA",
        clock: Callable[[], datetime] = utc_now,
        agency_code: str | None = None,
        signer_factories: Mapping[str, Callable[[], Signer]] = SIGNER_FACTORIES,
        provinces: Collection[str] = PROVINCE_CODES,
        min_status_list_entries: int = 1024,
    ) -> None:
        """`clock` returns an aware datetime; `agency_code` (颁发机构代码, default the region
        code) is used when `issue` is given none; `provinces` bound holders' 公民身份号码."""
        if not re.fullmatch(r"[0-9]{2}0000", region_code):
            raise ValueError(f"{region_code!r} is not a province code XX0000")
        self.region_code = region_code
        self.audience = audience
        self._clock = clock
        self._agency_code = agency_code or region_code
        self._factories = dict(signer_factories)
        self._provinces = provinces
        self._min_entries = min_status_list_entries
        self._signers: dict[str, Signer] = {}
        self._current = ""
        self._pending: tuple[str, float] | None = None
        """A key published but not signing yet, and when it starts (epoch seconds)."""
        self._statuses = bytearray()
        self._index_by_token: dict[str, int] = {}
        self.rotate(algorithm)

    # -- keys -------------------------------------------------------------------------------

    @property
    def key_id(self) -> str:
        """The kid of the key signing now."""
        pending = self._pending
        if pending is not None and self._clock().timestamp() >= pending[1]:
            self._current, self._pending = pending[0], None
        return self._current

    @property
    def pending_key(self) -> tuple[str, datetime] | None:
        """The key published but not signing yet, and when it will, or None."""
        self.key_id  # noqa: B018 - promotes a key whose time has come
        if self._pending is None:
            return None
        kid, at = self._pending
        return kid, datetime.fromtimestamp(at, UTC)

    @property
    def key_ids(self) -> list[str]:
        """The kids published in the JWKS, oldest first."""
        return list(self._signers)

    def rotate(
        self,
        algorithm: str = "EdDSA",
        retire_kid: str | None = None,
        *,
        activation_delay: float = 0.0,
    ) -> str:
        """Publishes a new key that signs `activation_delay` seconds from now (0: at once);
        optionally retires another in the same step. Returns the new kid.

        A key still waiting to sign when another rotation comes stays published but never
        signs. Nothing changes when the call is refused.
        """
        if activation_delay < 0:
            raise InvalidRequest(
                "The activation delay cannot be negative.",
                field_violations=[
                    FieldViolation("activation_delay", "zero or more", "OUT_OF_RANGE")
                ],
            )
        factory = self._factories.get(algorithm)
        if factory is None:
            raise InvalidRequest(
                f"Algorithm {algorithm!r} is not supported.",
                field_violations=[
                    FieldViolation(
                        "algorithm", f"one of {sorted(self._factories)}", "UNSUPPORTED_ALGORITHM"
                    )
                ],
            )
        if retire_kid is not None:
            if retire_kid not in self._signers:
                raise NotFound(f"No key {retire_kid!r} to retire.")
            if activation_delay > 0 and retire_kid == self.key_id:
                self._refuse_retiring_the_signer()
        signer = factory()
        kid = jwk_thumbprint(signer.public_jwk())
        self._signers[kid] = signer
        if activation_delay > 0 and self._current:
            self._pending = (kid, self._clock().timestamp() + activation_delay)
        else:
            self._current, self._pending = kid, None
        if retire_kid is not None:
            self.retire(retire_kid)
        return kid

    @staticmethod
    def _refuse_retiring_the_signer() -> NoReturn:
        raise InvalidRequest(
            "The signing key cannot be retired; rotate first.",
            field_violations=[FieldViolation("retire_key_id", "is the signing key", "SIGNING_KEY")],
        )

    def retire(self, kid: str) -> None:
        """Removes a key from the JWKS; tokens it signed stop verifying once caches refresh."""
        if kid not in self._signers:
            raise NotFound(f"No key {kid!r} to retire.")
        if kid == self.key_id or (self._pending is not None and kid == self._pending[0]):
            self._refuse_retiring_the_signer()
        del self._signers[kid]

    def jwks(self) -> str:
        """The JWKS (RFC 7517) of every published key: public members only."""
        keys = [
            {**signer.public_jwk(), "kid": kid, "alg": signer.algorithm, "use": "sig"}
            for kid, signer in self._signers.items()
        ]
        return json.dumps({"keys": keys}, separators=(",", ":"))

    # -- licences ---------------------------------------------------------------------------

    def issue(
        self,
        type_code: str,
        number: str,
        *,
        holder_id_type: str,
        holder_id_number: str,
        issuing_agency_code: str | None = None,
        valid_days: int = 365,
        not_before_offset: int = 0,
        forged: bool = False,
    ) -> IssuedLicense:
        """Signs a new licence valid `valid_days` from now + `not_before_offset` seconds.

        With `forged`, a fresh key that is never published signs it, under the kid of the key
        that signs: a licence its province did not issue, which no verifier may accept.
        Raises InvalidRequest for a malformed type code, number, agency code or holder id.
        """
        agency = issuing_agency_code or self._agency_code
        now = self._now()
        not_before = now + not_before_offset
        self._check_issue(
            type_code=type_code,
            number=number,
            holder_id_type=holder_id_type,
            holder_id_number=holder_id_number,
            agency=agency,
            valid_days=valid_days,
        )
        if abs(not_before_offset) > _MAX_VALID_DAYS * _DAY:
            raise InvalidRequest(
                "The licence cannot be issued.",
                field_violations=[
                    FieldViolation("not_before_offset_seconds", "within 100 years", "OUT_OF_RANGE")
                ],
            )
        try:
            identifier = make_license_identifier(type_code, agency, number, "001")
        except CodeError as exc:
            raise InvalidRequest(
                "The licence cannot be given an identifier.",
                field_violations=[
                    FieldViolation("license_number", exc.problem.message, exc.problem.reason)
                ],
            ) from None
        expires_at = not_before + valid_days * _DAY
        index = len(self._index_by_token)
        token_id = str(uuid.uuid4())
        claims = license_claims(
            region_code=self.region_code,
            audience=self.audience,
            holder_id_type=holder_id_type,
            holder_id=holder_id_number,
            token_id=token_id,
            issued_at=now,
            not_before=not_before,
            expires_at=expires_at,
            license=LicenseInfo(
                identifier=identifier,
                type_code=type_code,
                number=number,
                issuing_agency_code=agency,
                valid_from=china_date(not_before),
                valid_until=china_date(expires_at),
            ),
            status_index=index,
        )
        kid = self.key_id
        signer = self._signers[kid]
        if forged:
            signer = self._factories[signer.algorithm]()
        token = self._sign_with(kid, claims, LICENSE_TOKEN_TYPE, None, signer)
        self._index_by_token[token_id] = index
        self._statuses.append(LicenseStatus.VALID)
        return IssuedLicense(token, identifier, kid, index, token_id, expires_at)

    def _check_issue(
        self,
        *,
        type_code: str,
        number: str,
        holder_id_type: str,
        holder_id_number: str,
        agency: str,
        valid_days: int,
    ) -> None:
        violations: list[FieldViolation] = []
        if not _TYPE_CODE.fullmatch(type_code) or validate_uscc(type_code[:18]) is not None:
            violations.append(
                FieldViolation(
                    "license_type_code", "a valid USCC and 3 digits (21 characters)", "BAD_TYPE"
                )
            )
        if not _ALNUM.fullmatch(number):
            violations.append(FieldViolation("license_number", "1-64 of 0-9A-Z", "BAD_NUMBER"))
        if not _ALNUM.fullmatch(agency):
            violations.append(
                FieldViolation("issuing_agency_code", "1-64 of 0-9A-Z", "BAD_AGENCY_CODE")
            )
        document = holder_document(holder_id_type)
        if document is None:
            known = ", ".join(repr(code) for code in sorted(HOLDER_ID_TYPES))
            violations.append(FieldViolation("holder_id_type", f"one of {known}", "BAD_ID_TYPE"))
        else:
            problem = document.check(holder_id_number, self._provinces, china_date(self._now()))
            if problem is not None:
                violations.append(
                    FieldViolation("holder_id_number", problem.message, problem.reason)
                )
        if not 1 <= valid_days <= _MAX_VALID_DAYS:
            violations.append(
                FieldViolation("valid_days", f"between 1 and {_MAX_VALID_DAYS}", "OUT_OF_RANGE")
            )
        if violations:
            raise InvalidRequest("The licence cannot be issued.", field_violations=violations)

    def sign(
        self,
        claims: Mapping[str, Any],
        *,
        token_type: str = LICENSE_TOKEN_TYPE,
        header: Mapping[str, Any] | None = None,
    ) -> str:
        """Signs arbitrary claims with the current key, header `{alg, typ, kid}`.

        `issue` uses it; tests use it, with `header` members added or replaced, to play a
        province that signs something malformed.
        """
        kid = self.key_id
        return self._sign_with(kid, claims, token_type, header, self._signers[kid])

    def _sign_with(
        self,
        kid: str,
        claims: Mapping[str, Any],
        token_type: str,
        header: Mapping[str, Any] | None,
        signer: Signer,
    ) -> str:
        full_header = {"alg": signer.algorithm, "typ": token_type, "kid": kid}
        full_header.update(header or {})
        return encode_compact(full_header, claims, signer.sign)

    # -- status -----------------------------------------------------------------------------

    def set_status(
        self,
        status: LicenseStatus,
        *,
        status_index: int | None = None,
        token_id: str | None = None,
    ) -> int:
        """Sets one licence's status, chosen by index or token id; returns its index."""
        if (status_index is None) == (token_id is None):
            raise InvalidRequest(
                "Give exactly one of status_index and token_id.",
                field_violations=[FieldViolation("target", "exactly one", "ONE_TARGET")],
            )
        if token_id is not None:
            index = self._index_by_token.get(token_id)
            if index is None:
                raise NotFound("No licence with that token id.")
        else:
            index = status_index
            if index is None or not 0 <= index < len(self._statuses):
                raise NotFound("No licence at that status index.")
        self._statuses[index] = LicenseStatus(status)
        return index

    def status_of(self, status_index: int) -> LicenseStatus:
        """A licence's current status."""
        return LicenseStatus(self._statuses[status_index])

    def status_list_token(self, ttl: int = 300, *, validity: int = 3600) -> str:
        """The signed status list (`statuslist+jwt`): 2-bit statuses, valid `validity` s,
        to be cached for `ttl` s."""
        return self.sign(self.status_list_claims(ttl, validity), token_type=STATUS_LIST_TOKEN_TYPE)

    def status_list_claims(self, ttl: int = 300, validity: int = 3600) -> dict[str, Any]:
        """The claims `status_list_token` signs."""
        now = self._now()
        size = max(len(self._statuses), self._min_entries)
        statuses = bytes(self._statuses) + bytes(size - len(self._statuses))
        return {
            "iss": issuer_name(self.region_code),
            "sub": status_list_uri(self.region_code),
            "iat": now,
            "exp": now + validity,
            "ttl": ttl,
            "status_list": {"bits": 2, "lst": encode_status_list(statuses, bits=2)},
        }

    def _now(self) -> int:
        moment = self._clock()
        if moment.tzinfo is None:
            raise ValueError("the issuer's clock must return aware datetimes")
        return int(moment.timestamp())
