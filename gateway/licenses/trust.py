"""The trust list: which provinces the gateway believes, for which licences, and how.

Invariants, in plain words:

- Only asymmetric algorithms the gateway can verify are ever allowed (`EdDSA`, `ES256`). HS*
  and `none` are refused when the configuration is built, so an issuer can never be allowed
  both an HMAC and a public-key algorithm (the algorithm-confusion attack needs both).
- A province is trusted per licence type: trusting 330000 for business licences says nothing
  about its 居民身份证.
- The clock leeway is bounded: 0-300 s, default 30 s.
- Key and status-list cache lifetimes are bounded on both sides: the province's max-age is
  clamped into [min, max], so a province can neither make the gateway hammer it nor make a
  revocation invisible for long.
- Every fetch from one province is at most once per `unknown_kid_min_interval_seconds`; the
  shortest key lifetime is at least that long, so the limit never delays a regular refresh.
- When a status list cannot be had, a licence type fails closed unless configured otherwise.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, TypeVar

from gateway.licenses.token import DEFAULT_AUDIENCE

__all__ = [
    "PROVINCE_CODES",
    "SUPPORTED_ALGORITHMS",
    "IssuerTrust",
    "KeySettings",
    "StatusListSettings",
    "TrustConfigError",
    "TrustList",
    "UnreachablePolicy",
]

SUPPORTED_ALGORITHMS = frozenset({"EdDSA", "ES256"})
"""JOSE algorithms the gateway can verify; `keys.KEY_ALGORITHMS` maps JWKs to them."""

MAX_LEEWAY_SECONDS = 300.0

_PROVINCE_PREFIXES = (11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42)
_MORE_PREFIXES = (43, 44, 45, 46, 50, 51, 52, 53, 54, 61, 62, 63, 64, 65)
PROVINCE_CODES = frozenset(f"{p}0000" for p in (*_PROVINCE_PREFIXES, *_MORE_PREFIXES))
"""The 31 mainland GB/T 2260 province-level codes (MCA 2019-04): where a 公民身份号码 may come
from, as for an applicant (`standards/regions.json`). Residents of Hong Kong, Macao and Taiwan
hold a 港澳台居民居住证 (810000, 820000, 830000), a holder id type of its own."""

_REGION = re.compile(r"[0-9]{2}0000")
_TYPE_CODE = re.compile(r"[0-9A-Z]{18}[0-9]{3}")


class TrustConfigError(ValueError):
    """The trust configuration is invalid; raised when it is built, never while serving."""


class UnreachablePolicy(enum.Enum):
    """What a licence type's verdict is when its status list cannot be had."""

    FAIL_CLOSED = "FAIL_CLOSED"
    """STATUS_UNAVAILABLE: a licence whose status is unknown is not accepted (the default)."""
    FAIL_OPEN = "FAIL_OPEN"
    """VALID with a detail saying the status was not checked."""


@dataclass(frozen=True, slots=True)
class IssuerTrust:
    """One trusted province."""

    region_code: str
    """GB/T 2260 province code, `XX0000`."""
    license_types: frozenset[str]
    """The licence type codes (证照类型代码) this province is trusted to issue."""
    algorithms: frozenset[str] = SUPPORTED_ALGORITHMS
    """The algorithms its keys may use; a subset of SUPPORTED_ALGORITHMS."""

    def __post_init__(self) -> None:
        if not _REGION.fullmatch(self.region_code):
            raise TrustConfigError(f"issuer {self.region_code!r} is not a province code XX0000")
        bad_types = sorted(t for t in self.license_types if not _TYPE_CODE.fullmatch(t))
        if bad_types:
            raise TrustConfigError(f"issuer {self.region_code}: bad licence types {bad_types}")
        if not self.algorithms:
            raise TrustConfigError(f"issuer {self.region_code}: no algorithms allowed")
        unsupported = sorted(self.algorithms - SUPPORTED_ALGORITHMS)
        if unsupported:
            raise TrustConfigError(
                f"issuer {self.region_code}: algorithms {unsupported} are not allowed; only "
                f"{sorted(SUPPORTED_ALGORITHMS)} (never HS* or none)"
            )


@dataclass(frozen=True, slots=True)
class KeySettings:
    """How the gateway caches provinces' public keys."""

    min_ttl_seconds: float = 60.0
    """Shortest time a fetched JWKS is kept, whatever max-age the province sends."""
    max_ttl_seconds: float = 3600.0
    """Longest time a fetched JWKS is kept: bounds how long a retired key keeps verifying."""
    unknown_kid_min_interval_seconds: float = 30.0
    """At most one fetch per province per this interval, whatever tokens arrive."""
    max_stale_seconds: float = 3600.0
    """After its lifetime, a JWKS still serves this long if the province cannot be reached."""
    fetch_timeout_seconds: float = 5.0
    """Give up on one JWKS fetch after this long."""
    max_jwks_bytes: int = 64 * 1024
    """A larger JWKS document is refused."""

    def __post_init__(self) -> None:
        _positive(self, "min_ttl_seconds", "max_ttl_seconds", "fetch_timeout_seconds")
        _non_negative(self, "unknown_kid_min_interval_seconds", "max_stale_seconds")
        if self.min_ttl_seconds > self.max_ttl_seconds:
            raise TrustConfigError("keys: min_ttl_seconds exceeds max_ttl_seconds")
        if self.min_ttl_seconds < self.unknown_kid_min_interval_seconds:
            raise TrustConfigError("keys: min_ttl_seconds is below the refresh interval")


@dataclass(frozen=True, slots=True)
class StatusListSettings:
    """How the gateway caches provinces' status lists."""

    min_ttl_seconds: float = 10.0
    """Shortest time a status list is kept, whatever `ttl` or max-age the province sends."""
    max_ttl_seconds: float = 300.0
    """Longest time a status list is kept: a revocation is seen within this bound."""
    refresh_min_interval_seconds: float = 10.0
    """At most one fetch per province per this interval after a failed fetch (the list then
    counts as unavailable) or for an index beyond the cached list."""
    fetch_timeout_seconds: float = 5.0
    """Give up on one status list fetch after this long."""
    max_list_bytes: int = 4 * 1024 * 1024
    """Largest decompressed list accepted (16 Mi licences at 2 bits): no zip bombs."""

    def __post_init__(self) -> None:
        _positive(self, "min_ttl_seconds", "max_ttl_seconds", "fetch_timeout_seconds")
        _non_negative(self, "refresh_min_interval_seconds")
        if self.min_ttl_seconds > self.max_ttl_seconds:
            raise TrustConfigError("status_lists: min_ttl_seconds exceeds max_ttl_seconds")
        if self.max_list_bytes <= 0:
            raise TrustConfigError("status_lists: max_list_bytes must be positive")


@dataclass(frozen=True, slots=True)
class TrustList:
    """Everything the verifier needs to decide whom to believe."""

    issuers: Mapping[str, IssuerTrust]
    """Trusted provinces by region code."""
    audience: str = DEFAULT_AUDIENCE
    """The `aud` every licence must carry, exactly."""
    leeway_seconds: float = 30.0
    """Clock skew allowed on exp, nbf and iat; 0-300 s."""
    keys: KeySettings = field(default_factory=KeySettings)
    """Key cache bounds."""
    status_lists: StatusListSettings = field(default_factory=StatusListSettings)
    """Status list cache bounds."""
    unreachable_policies: Mapping[str, UnreachablePolicy] = field(default_factory=dict)
    """Per licence type, when its status list cannot be had; absent means FAIL_CLOSED."""
    holder_provinces: frozenset[str] = PROVINCE_CODES
    """Province codes a holder's 公民身份号码 may start with."""

    def __post_init__(self) -> None:
        for code, issuer in self.issuers.items():
            if code != issuer.region_code:
                raise TrustConfigError(f"issuer listed as {code} is {issuer.region_code}")
        if not self.audience:
            raise TrustConfigError("audience is empty")
        if not 0 <= self.leeway_seconds <= MAX_LEEWAY_SECONDS:
            raise TrustConfigError(f"leeway_seconds must be within [0, {MAX_LEEWAY_SECONDS:g}]")
        object.__setattr__(self, "issuers", MappingProxyType(dict(self.issuers)))
        object.__setattr__(
            self, "unreachable_policies", MappingProxyType(dict(self.unreachable_policies))
        )

    def issuer(self, region_code: str) -> IssuerTrust | None:
        """The trusted province with this code, or None."""
        return self.issuers.get(region_code)

    def trusts(self, region_code: str, type_code: str) -> bool:
        """Whether the province is trusted to issue licences of this type."""
        issuer = self.issuers.get(region_code)
        return issuer is not None and type_code in issuer.license_types

    def unreachable_policy(self, type_code: str) -> UnreachablePolicy:
        """The policy for a licence type when its status list cannot be had."""
        return self.unreachable_policies.get(type_code, UnreachablePolicy.FAIL_CLOSED)

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> TrustList:
        """Builds the trust list from plain data (parsed TOML, JSON or a dict in a test).

        Shape: `{"issuers": {"330000": {"license_types": [...], "algorithms": [...]}},
        "audience", "leeway_seconds", "keys": {...}, "status_lists": {...},
        "unreachable_policies": {"<type code>": "FAIL_OPEN"}, "holder_provinces": [...]}`;
        only `issuers` is required. Unknown keys are errors, so a typo cannot pass silently.
        """
        _only(config, {f.name for f in fields(cls)}, "trust")
        issuers_config = config.get("issuers")
        if not isinstance(issuers_config, Mapping):
            raise TrustConfigError("trust: 'issuers' must be a mapping of region code to issuer")
        issuers: dict[str, IssuerTrust] = {}
        for code, entry in issuers_config.items():
            if not isinstance(entry, Mapping):
                raise TrustConfigError(f"issuer {code!r} must be a mapping")
            _only(entry, {"license_types", "algorithms"}, f"issuer {code}")
            algorithms = entry.get("algorithms")
            issuers[str(code)] = IssuerTrust(
                region_code=str(code),
                license_types=_strings(entry.get("license_types", ()), f"issuer {code}"),
                algorithms=(
                    SUPPORTED_ALGORITHMS
                    if algorithms is None
                    else _strings(algorithms, f"issuer {code}")
                ),
            )
        policies: dict[str, UnreachablePolicy] = {}
        for type_code, name in dict(config.get("unreachable_policies", {})).items():
            try:
                policies[str(type_code)] = UnreachablePolicy[str(name)]
            except KeyError:
                raise TrustConfigError(
                    f"unreachable policy {name!r} for {type_code} is not FAIL_CLOSED/FAIL_OPEN"
                ) from None
        extra: dict[str, Any] = {}
        for name in ("audience", "leeway_seconds"):
            if name in config:
                extra[name] = config[name]
        if "holder_provinces" in config:
            extra["holder_provinces"] = _strings(config["holder_provinces"], "holder_provinces")
        return cls(
            issuers=issuers,
            keys=_settings(KeySettings, config.get("keys", {}), "keys"),
            status_lists=_settings(StatusListSettings, config.get("status_lists", {}), "status"),
            unreachable_policies=policies,
            **extra,
        )


def _only(config: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise TrustConfigError(f"{where}: unknown settings {unknown}")


def _strings(value: object, where: str) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TrustConfigError(f"{where}: expected a list of strings")
    items = list(value)
    if not all(isinstance(item, str) for item in items):
        raise TrustConfigError(f"{where}: expected a list of strings")
    return frozenset(items)


_Settings = TypeVar("_Settings", KeySettings, StatusListSettings)


def _settings(cls: type[_Settings], config: object, where: str) -> _Settings:
    if not isinstance(config, Mapping):
        raise TrustConfigError(f"{where}: expected a mapping")
    _only(config, {f.name for f in fields(cls)}, where)
    return cls(**config)


def _positive(settings: object, *names: str) -> None:
    for name in names:
        if not getattr(settings, name) > 0:
            raise TrustConfigError(f"{type(settings).__name__}.{name} must be positive")


def _non_negative(settings: object, *names: str) -> None:
    for name in names:
        if not getattr(settings, name) >= 0:
            raise TrustConfigError(f"{type(settings).__name__}.{name} must not be negative")
