"""The client's errors: one class per family of gRPC codes, all under `TongbanClientError`.

    TongbanClientError            (code, message, reason, domain, metadata, field_violations,
    │                              retry_delay, request_id)
    ├── InvalidArgument           INVALID_ARGUMENT, OUT_OF_RANGE   (+ field violations)
    ├── NotFound                  NOT_FOUND
    ├── AlreadyExists             ALREADY_EXISTS                   (REQUEST_ID_REUSED, …)
    ├── FailedPrecondition        FAILED_PRECONDITION
    ├── Aborted                   ABORTED
    ├── Unauthenticated           UNAUTHENTICATED
    ├── PermissionDenied          PERMISSION_DENIED
    ├── ResourceExhausted         RESOURCE_EXHAUSTED               (+ retry delay)
    ├── Unavailable               UNAVAILABLE                      (+ retry delay; retried)
    ├── DeadlineExceeded          DEADLINE_EXCEEDED
    ├── Cancelled                 CANCELLED
    └── ServerError               INTERNAL, UNKNOWN, DATA_LOSS, UNIMPLEMENTED

Invariants:
- Every failed call raises exactly one of these, translated from `grpc.aio.AioRpcError` by
  `from_rpc_error` and nowhere else; the original error is its `__cause__`.
- `reason` is the ErrorInfo reason the gateway sent (stable UPPER_SNAKE, part of the API
  contract: see the RPC comments in proto/), or "" when the status carried none (a transport
  failure: no gateway answered).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid field of a request (`google.rpc.BadRequest.FieldViolation`)."""

    field: str
    """Dotted path of the field, e.g. `applicant.id_number` or `materials[1].material_id`."""
    description: str
    """What is wrong with it, in a sentence."""
    reason: str
    """A stable UPPER_SNAKE reason for this violation, e.g. `CITIZEN_ID_CHECK_MISMATCH`; may be
    empty."""


class TongbanClientError(Exception):
    """A call to the gateway failed."""

    codes: frozenset[grpc.StatusCode] = frozenset()
    """The gRPC codes of this family."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        field_violations: Sequence[FieldViolation] = (),
        retry_delay: float | None = None,
        request_id: str | None = None,
    ) -> None:
        what = f"{code.name} {reason}" if reason else code.name
        super().__init__(f"{what}: {message}")
        self.code = code
        """The call's gRPC status code."""
        self.message = message
        """The status message, a sentence for people."""
        self.reason = reason
        """The ErrorInfo reason, e.g. `LOCAL_CODE_NOT_FOUND`; "" when there was none."""
        self.domain = domain
        """The ErrorInfo domain: `tongban.gov.cn` for the gateway's own errors."""
        self.metadata: Mapping[str, str] = MappingProxyType(dict(metadata or {}))
        """The ErrorInfo metadata, e.g. the candidates of `LOCAL_CODE_AMBIGUOUS` or a denial's
        `denial`."""
        self.field_violations: tuple[FieldViolation, ...] = tuple(field_violations)
        """The BadRequest field violations, every invalid field of the request at once."""
        self.retry_delay = retry_delay
        """The RetryInfo delay in seconds: how long the gateway asks callers to wait."""
        self.request_id = request_id
        """The submission's request id, for a failed `submit`: submitting the same request
        again with it can never create a second application."""


class InvalidArgument(TongbanClientError):
    """The request is invalid: see `field_violations`. Fix it; do not retry it as it is."""

    codes = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE})


class NotFound(TongbanClientError):
    """What the request names does not exist (or the caller may not know it exists)."""

    codes = frozenset({grpc.StatusCode.NOT_FOUND})


class AlreadyExists(TongbanClientError):
    """A request id or a version was already used with other content."""

    codes = frozenset({grpc.StatusCode.ALREADY_EXISTS})


class FailedPrecondition(TongbanClientError):
    """The request is valid but the state of things refuses it (an ambiguous or retired code,
    a missing material, a state transition not allowed)."""

    codes = frozenset({grpc.StatusCode.FAILED_PRECONDITION})


class Aborted(TongbanClientError):
    """The call lost a race with another; the whole operation may be tried again."""

    codes = frozenset({grpc.StatusCode.ABORTED})


class Unauthenticated(TongbanClientError):
    """The gateway could not tell who calls: no, an expired or a revoked client certificate."""

    codes = frozenset({grpc.StatusCode.UNAUTHENTICATED})


class PermissionDenied(TongbanClientError):
    """The caller may not do this; `metadata["denial"]` says why."""

    codes = frozenset({grpc.StatusCode.PERMISSION_DENIED})


class ResourceExhausted(TongbanClientError):
    """A rate limit or the gateway's capacity refused the call; wait `retry_delay`."""

    codes = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED})


class Unavailable(TongbanClientError):
    """The gateway (or its store) could not take the call now. The client retries these;
    this one is raised when its retries ran out."""

    codes = frozenset({grpc.StatusCode.UNAVAILABLE})


class DeadlineExceeded(TongbanClientError):
    """No answer within the call's deadline. The call may still have taken effect: a
    submission is safe to repeat with its `request_id`."""

    codes = frozenset({grpc.StatusCode.DEADLINE_EXCEEDED})


class Cancelled(TongbanClientError):
    """The call was cancelled before it finished."""

    codes = frozenset({grpc.StatusCode.CANCELLED})


class ServerError(TongbanClientError):
    """The gateway failed, or does not have the method (an older gateway)."""

    codes = frozenset(
        {
            grpc.StatusCode.INTERNAL,
            grpc.StatusCode.UNKNOWN,
            grpc.StatusCode.DATA_LOSS,
            grpc.StatusCode.UNIMPLEMENTED,
        }
    )


FAMILIES: tuple[type[TongbanClientError], ...] = (
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    Aborted,
    Unauthenticated,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
    DeadlineExceeded,
    Cancelled,
    ServerError,
)
"""Every family; each non-OK gRPC code belongs to exactly one."""

_BY_CODE = {code: family for family in FAMILIES for code in family.codes}


def from_rpc_error(
    error: grpc.aio.AioRpcError, *, request_id: str | None = None
) -> TongbanClientError:
    """The typed error of a failed call, with what its `google.rpc.Status` details say."""
    code = error.code()
    family = _BY_CODE.get(code, ServerError)
    reason = domain = ""
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    retry_delay: float | None = None
    status = rpc_status.from_call(error)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations += [
                FieldViolation(v.field, v.description, v.reason) for v in bad.field_violations
            ]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_delay = retry.retry_delay.ToNanoseconds() / 1e9
    return family(
        code,
        error.details() or "",
        reason=reason,
        domain=domain,
        metadata=metadata,
        field_violations=violations,
        retry_delay=retry_delay,
        request_id=request_id,
    )
