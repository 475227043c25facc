"""Who may do what: the one authorization policy of the gateway, as a pure function.

The rules, in plain words:

- Nobody is anything without a verified identity: no identity → UNAUTHENTICATED `NO_IDENTITY`.
- A province acts only for itself: it submits with itself as origin, publishes only its own
  implementation list and lists only its own applications (`NOT_OWN_REGION`).
- A province reads an application only when it submitted it or must handle it
  (`NOT_A_PARTY`), and reports status only for an application sent to it
  (`NOT_DELIVERED_TO_CALLER`). Whether it was delivered yet is the application's state, not a
  permission: a report on one that failed before delivery is `APPLICATION_NOT_DELIVERED`.
- Only a standards body publishes catalog versions (`NOT_A_STANDARDS_BODY`).
- Catalog reads and licence verification are open to every authenticated identity.
- Only operators use administrative methods (`NOT_OPS`); operators also read everything, but
  never act in a province's place (`NOT_A_REGION`).
- Everything else is denied: a new action gets a rule here before any handler uses it.
- A call through the edge proxy is judged as its forwarded caller's (`forwarded`): only the
  edge may forward a certificate (`NOT_THE_EDGE`), and one that does not chain to the
  federation's CA or names no caller is `FORWARDED_CERTIFICATE_INVALID`.

An `Action` carries the facts the rule needs, taken by the handler from the request and, for
an existing application, from the stored application (never from the caller's claims about
it). For an application that does not exist, pass `ReadApplication("", "")`: provinces get
PERMISSION_DENIED exactly as for somebody else's application, so ids cannot be probed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import assert_never

import grpc

from gateway.errors import PermissionDenied, TongbanError, Unauthenticated
from gateway.security.identity import Identity, Role

DENIAL_METADATA_KEY = "denial"
"""The ErrorInfo metadata key that carries the `Denial` of a refused call."""


class Denial(enum.StrEnum):
    """Why a call was refused: stable values, part of the public contract."""

    NO_IDENTITY = "NO_IDENTITY"
    CERTIFICATE_REVOKED = "CERTIFICATE_REVOKED"
    CERTIFICATE_EXPIRED = "CERTIFICATE_EXPIRED"
    NOT_OWN_REGION = "NOT_OWN_REGION"
    NOT_A_REGION = "NOT_A_REGION"
    NOT_A_PARTY = "NOT_A_PARTY"
    NOT_DELIVERED_TO_CALLER = "NOT_DELIVERED_TO_CALLER"
    NOT_A_STANDARDS_BODY = "NOT_A_STANDARDS_BODY"
    NOT_OPS = "NOT_OPS"
    NOT_THE_EDGE = "NOT_THE_EDGE"
    FORWARDED_CERTIFICATE_INVALID = "FORWARDED_CERTIFICATE_INVALID"


_UNAUTHENTICATED = frozenset(
    {
        Denial.NO_IDENTITY,
        Denial.CERTIFICATE_REVOKED,
        Denial.CERTIFICATE_EXPIRED,
        Denial.FORWARDED_CERTIFICATE_INVALID,
    }
)

_MESSAGES: dict[Denial, str] = {
    Denial.NO_IDENTITY: "The call carries no verified Tongban client certificate.",
    Denial.CERTIFICATE_REVOKED: "The client certificate has been revoked.",
    Denial.CERTIFICATE_EXPIRED: "The client certificate has expired.",
    Denial.NOT_OWN_REGION: "A province may act only for itself.",
    Denial.NOT_A_REGION: "Only a province may do this.",
    Denial.NOT_A_PARTY: "The caller neither submitted nor handles this application.",
    Denial.NOT_DELIVERED_TO_CALLER: (
        "Only the province an application was delivered to may report its status."
    ),
    Denial.NOT_A_STANDARDS_BODY: "Only a standards body may publish catalog versions.",
    Denial.NOT_OPS: "Only operators may use administrative methods.",
    Denial.NOT_THE_EDGE: (
        "Only the edge proxy may forward a client certificate (x-forwarded-client-cert)."
    ),
    Denial.FORWARDED_CERTIFICATE_INVALID: (
        "The forwarded client certificate does not chain to the federation's CA, is not valid "
        "now, or names no caller."
    ),
}


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one call: allowed, or denied for a reason."""

    denial: Denial | None = None
    """Why the call is refused; None when it is allowed."""

    @property
    def allowed(self) -> bool:
        return self.denial is None

    @property
    def code(self) -> grpc.StatusCode:
        """OK, UNAUTHENTICATED (no usable credentials) or PERMISSION_DENIED."""
        if self.denial is None:
            return grpc.StatusCode.OK
        if self.denial in _UNAUTHENTICATED:
            return grpc.StatusCode.UNAUTHENTICATED
        return grpc.StatusCode.PERMISSION_DENIED

    @property
    def reason(self) -> str:
        """The denial as a string; empty when allowed."""
        return "" if self.denial is None else self.denial.value


ALLOW = Decision()


def deny(denial: Denial) -> Decision:
    """A refusal for `denial`."""
    return Decision(denial)


# -- Actions -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubmitApplication:
    """SubmitApplication, with the request's `origin_region`."""

    origin_region: str


@dataclass(frozen=True, slots=True)
class SubmitBundle:
    """SubmitBundle, WithdrawBundle and RateBundle, with the bundle's `origin_region`."""

    origin_region: str


@dataclass(frozen=True, slots=True)
class ReadBundle:
    """GetBundle / WatchBundle, with the stored bundle's origin (its owner)."""

    origin_region: str


@dataclass(frozen=True, slots=True)
class ReadApplication:
    """GetApplication / WatchApplication, with the stored application's two provinces."""

    origin_region: str
    target_region: str


@dataclass(frozen=True, slots=True)
class ListApplications:
    """ListApplications, with the request's `region_code`."""

    region_code: str


@dataclass(frozen=True, slots=True)
class ReportStatus:
    """ReportApplicationStatus, with the stored application's target."""

    target_region: str


@dataclass(frozen=True, slots=True)
class PublishRegionCatalog:
    """PublishRegionCatalog, with the province named by `region_catalog.name`."""

    region_code: str


@dataclass(frozen=True, slots=True)
class PublishCatalogVersion:
    """PublishCatalogVersion."""


@dataclass(frozen=True, slots=True)
class ReadCatalog:
    """Any read of the national catalog or of a province's codes."""


@dataclass(frozen=True, slots=True)
class VerifyLicense:
    """VerifyLicense."""


@dataclass(frozen=True, slots=True)
class Admin:
    """An administrative method (reload, deny list, drain, ...), by full method name."""

    method: str


Action = (
    SubmitApplication
    | SubmitBundle
    | ReadBundle
    | ReadApplication
    | ListApplications
    | ReportStatus
    | PublishRegionCatalog
    | PublishCatalogVersion
    | ReadCatalog
    | VerifyLicense
    | Admin
)


# -- The policy ----------------------------------------------------------------------------


def authorize(identity: Identity | None, action: Action) -> Decision:
    """Whether `identity` may perform `action`."""
    if identity is None:
        return deny(Denial.NO_IDENTITY)
    role = identity.role
    match action:
        case ReadCatalog() | VerifyLicense():
            return ALLOW
        case PublishCatalogVersion():
            return ALLOW if role is Role.STANDARDS_BODY else deny(Denial.NOT_A_STANDARDS_BODY)
        case Admin():
            return ALLOW if role is Role.OPS else deny(Denial.NOT_OPS)
        case ReadApplication(origin_region=origin, target_region=target):
            if role is Role.OPS or (role is Role.REGION and identity.name in (origin, target)):
                return ALLOW
            return deny(Denial.NOT_A_PARTY)
        case ListApplications(region_code=region):
            return ALLOW if role is Role.OPS else _own_region(identity, region)
        case ReadBundle(origin_region=origin):
            if role is Role.OPS or (role is Role.REGION and identity.name == origin):
                return ALLOW
            return deny(Denial.NOT_A_PARTY)
        case (
            SubmitApplication(origin_region=region)
            | SubmitBundle(origin_region=region)
            | PublishRegionCatalog(region_code=region)
        ):
            return _own_region(identity, region)
        case ReportStatus(target_region=target):
            if role is not Role.REGION:
                return deny(Denial.NOT_A_REGION)
            if identity.name == target:
                return ALLOW
            return deny(Denial.NOT_DELIVERED_TO_CALLER)
        case _:
            assert_never(action)


def _own_region(identity: Identity, region_code: str) -> Decision:
    if identity.role is not Role.REGION:
        return deny(Denial.NOT_A_REGION)
    return ALLOW if identity.name == region_code else deny(Denial.NOT_OWN_REGION)


def to_error(decision: Decision) -> TongbanError:
    """The error to report for a refusal: `Unauthenticated` or `PermissionDenied`.

    The class keeps its own ErrorInfo `reason`; the denial goes in the ErrorInfo metadata
    under `denial`.
    """
    if decision.denial is None:
        raise ValueError("an allowed decision is not an error")
    error_type: type[TongbanError] = (
        Unauthenticated if decision.code is grpc.StatusCode.UNAUTHENTICATED else PermissionDenied
    )
    return error_type(
        _MESSAGES[decision.denial], metadata={DENIAL_METADATA_KEY: decision.denial.value}
    )


def require(identity: Identity | None, action: Action) -> Identity:
    """The caller's identity if it may perform `action`; raises the refusal otherwise."""
    decision = authorize(identity, action)
    if identity is None or not decision.allowed:
        raise to_error(decision)
    return identity


# -- Which action each RPC is --------------------------------------------------------------

_CATALOG = "/gateway.api.v1.CatalogService/"
_APPLICATION = "/gateway.api.v1.ApplicationService/"
_BUNDLE = "/gateway.api.v1.BundleService/"

RPC_ACTIONS: dict[str, type[Action]] = {
    _CATALOG + "PublishCatalogVersion": PublishCatalogVersion,
    _CATALOG + "GetCatalogVersion": ReadCatalog,
    _CATALOG + "ListCatalogVersions": ReadCatalog,
    _CATALOG + "GetMatter": ReadCatalog,
    _CATALOG + "ListMatters": ReadCatalog,
    _CATALOG + "GetTheme": ReadCatalog,
    _CATALOG + "ListThemes": ReadCatalog,
    _CATALOG + "DiffCatalogVersions": ReadCatalog,
    _CATALOG + "PublishRegionCatalog": PublishRegionCatalog,
    _CATALOG + "ResolveLocalCode": ReadCatalog,
    _CATALOG + "BatchResolveLocalCodes": ReadCatalog,
    _CATALOG + "TranslateLocalCode": ReadCatalog,
    _APPLICATION + "SubmitApplication": SubmitApplication,
    _APPLICATION + "GetApplication": ReadApplication,
    _APPLICATION + "ListApplications": ListApplications,
    _APPLICATION + "WatchApplication": ReadApplication,
    _APPLICATION + "ReportApplicationStatus": ReportStatus,
    _BUNDLE + "SubmitBundle": SubmitBundle,
    _BUNDLE + "GetBundle": ReadBundle,
    _BUNDLE + "WatchBundle": ReadBundle,
    _BUNDLE + "WithdrawBundle": SubmitBundle,
    _BUNDLE + "RateBundle": SubmitBundle,
    "/gateway.api.v1.LicenseService/VerifyLicense": VerifyLicense,
}
"""The action every northbound RPC performs, by full method name.

Actions without fields (catalog reads, licence checks, catalog publication) can be decided
in an interceptor before the handler runs; the others need facts the handler looks up.
RegionService is southbound (the gateway calls it) and has no entry.
"""
