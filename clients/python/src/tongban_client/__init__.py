"""Tongban's client for provincial platforms: submit applications in a province's own matter
codes, follow them, read the national catalog and verify e-licences, over mutual TLS.

    from tongban_client import ClientConfig, TongbanClient

The generated messages and stubs of the API (proto package `gateway.api.v1`) are
`tongban_client.api.v1`.
"""

from tongban_client.applications import TERMINAL_STATES
from tongban_client.client import TongbanClient
from tongban_client.config import ClientConfig, MutualTls, RetryPolicy
from tongban_client.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ServerError,
    TongbanClientError,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "TERMINAL_STATES",
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "ClientConfig",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "InvalidArgument",
    "MutualTls",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "RetryPolicy",
    "ServerError",
    "TongbanClient",
    "TongbanClientError",
    "Unauthenticated",
    "Unavailable",
]
