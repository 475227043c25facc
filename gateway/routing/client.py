"""The one outbound client to the provinces, and the one translation of `AioRpcError`.

Invariants, in plain words:

- One grpc.aio channel per province, created on first use inside the running event loop and
  reused by every call until `close`; after `close` no channel is created again.
- Every call passes `timeout=`: grpc.aio does not propagate deadlines, so the caller (the
  retry loop) decides each attempt's timeout.
- Every `grpc.aio.AioRpcError` becomes a `RegionCallError` in `translate_rpc_error` and
  nowhere else. It reads the code, the details, the ErrorInfo reason and RetryInfo delay from
  the `grpc-status-details-bin` trailer (ignored when unparsable or when its code disagrees
  with the call's), and `grpc-retry-pushback-ms` from the trailers (ignored when not an
  integer).
- A province without an endpoint, unknown or not connected yet, is
  `RegionCallError(UNAVAILABLE, reason="REGION_NOT_CONNECTED")`: retryable, so its applications
  stay queued until `set_endpoint` connects it or they expire. A call on a closed client is
  `RegionCallError(CANCELLED, reason="CLIENT_CLOSED")`.
- Every call, failed ones included, is emitted as one `RegionCallFinished` with its code.
- Every channel gets the interceptors the client was built with (the process adds tracing's
  there, which sends `traceparent` to the province); this module knows none of them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, cast

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from gateway.api.v1 import region_pb2, region_pb2_grpc
from gateway.errors import RegionCallError
from gateway.events import NO_EVENTS, Events, RegionCallFinished

__all__ = [
    "DEFAULT_CHANNEL_OPTIONS",
    "GrpcRegionClient",
    "RegionClient",
    "translate_rpc_error",
]

_STATUS_DETAILS_KEY = "grpc-status-details-bin"
_PUSHBACK_KEY = "grpc-retry-pushback-ms"

DEFAULT_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.primary_user_agent", "tongban-gateway"),
    # grpc's reconnect backoff grows to 120 s: a province back after a 20 s outage would stay
    # unreachable for tens of seconds more. The breaker already limits calls to a down
    # province, so reconnecting often costs little.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
)
"""Channel arguments every province channel gets unless the caller passes its own."""


class RegionClient(Protocol):
    """Calls to one province's RegionService; every failure raises `RegionCallError`."""

    async def deliver(
        self,
        region_code: str,
        request: region_pb2.DeliverApplicationRequest,
        timeout: float,  # noqa: ASYNC109 - a gRPC deadline, sent to the province
    ) -> region_pb2.DeliverApplicationResponse:
        """One DeliverApplication attempt (idempotent on the application id)."""
        ...

    async def get_license_keys(
        self,
        region_code: str,
        timeout: float,  # noqa: ASYNC109 - a gRPC deadline, sent to the province
    ) -> region_pb2.GetLicenseKeysResponse:
        """One GetLicenseKeys call."""
        ...

    async def get_status(
        self,
        region_code: str,
        application_id: str,
        timeout: float,  # noqa: ASYNC109 - a gRPC deadline, sent to the province
    ) -> region_pb2.GetApplicationStatusResponse:
        """One GetApplicationStatus call."""
        ...

    async def get_license_status_list(
        self,
        region_code: str,
        timeout: float,  # noqa: ASYNC109 - a gRPC deadline, sent to the province
    ) -> region_pb2.GetLicenseStatusListResponse:
        """One GetLicenseStatusList call."""
        ...

    async def fetch_license(
        self,
        region_code: str,
        request: region_pb2.FetchLicenseRequest,
        timeout: float,  # noqa: ASYNC109 - a gRPC deadline, sent to the province
    ) -> region_pb2.FetchLicenseResponse:
        """One FetchLicense call (idempotent)."""
        ...

    async def withdraw(
        self,
        region_code: str,
        request: region_pb2.WithdrawApplicationRequest,
        timeout: float,  # noqa: ASYNC109 - a gRPC deadline, sent to the province
    ) -> region_pb2.WithdrawApplicationResponse:
        """One WithdrawApplication call (idempotent)."""
        ...

    async def close(self, grace: float | None) -> None:
        """Closes every channel, letting calls in flight run up to `grace` seconds."""
        ...


# Empty requests are immutable in practice: build them once, not per call.
_LICENSE_KEYS_REQUEST = region_pb2.GetLicenseKeysRequest()
_LICENSE_STATUS_LIST_REQUEST = region_pb2.GetLicenseStatusListRequest()


class GrpcRegionClient:
    """`RegionClient` over grpc.aio: one channel per province, plaintext or TLS."""

    def __init__(
        self,
        endpoints: Mapping[str, str],
        *,
        channel_options: Sequence[tuple[str, Any]] = DEFAULT_CHANNEL_OPTIONS,
        credentials: grpc.ChannelCredentials | None = None,
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
        events: Events = NO_EVENTS,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """`endpoints` maps a province's region code to its `host:port` target.

        With `credentials` (e.g. `grpc.ssl_channel_credentials(...)`) every channel is secure.
        """
        self._endpoints = dict(endpoints)
        self._options = tuple(channel_options)
        self._credentials = credentials
        self._interceptors = list(interceptors) or None
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, region_pb2_grpc.RegionServiceAsyncStub] = {}
        self._closed = False
        self._closing: set[asyncio.Task[None]] = set()
        self._events = events
        self._clock = clock

    @property
    def regions(self) -> frozenset[str]:
        """The provinces with an endpoint: configured, or connected since."""
        return frozenset(self._endpoints)

    def set_endpoint(self, region_code: str, target: str) -> None:
        """Points a province at a (new) `host:port`; its old channel is closed in the background.

        A province without an endpoint answers UNAVAILABLE (`REGION_NOT_CONNECTED`): its
        applications stay queued until it is connected or they expire.
        """
        self._endpoints[region_code] = target
        self._stubs.pop(region_code, None)
        old = self._channels.pop(region_code, None)
        if old is not None:
            task = asyncio.get_running_loop().create_task(old.close(None))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def channel(self, region_code: str) -> grpc.aio.Channel:
        """The province's channel, created on first use (call it inside the event loop)."""
        self._stub(region_code)
        return self._channels[region_code]

    async def deliver(
        self,
        region_code: str,
        request: region_pb2.DeliverApplicationRequest,
        timeout: float,  # noqa: ASYNC109 - a gRPC deadline, sent to the province
    ) -> region_pb2.DeliverApplicationResponse:
        response: region_pb2.DeliverApplicationResponse = await self._invoke(
            region_code, "DeliverApplication", request, timeout
        )
        return response

    async def get_license_keys(
        self,
        region_code: str,
        timeout: float,  # noqa: ASYNC109 - a gRPC deadline, sent to the province
    ) -> region_pb2.GetLicenseKeysResponse:
        response: region_pb2.GetLicenseKeysResponse = await self._invoke(
            region_code, "GetLicenseKeys", _LICENSE_KEYS_REQUEST, timeout
        )
        return response

    async def get_status(
        self,
        region_code: str,
        application_id: str,
        timeout: float,  # noqa: ASYNC109 - a gRPC deadline, sent to the province
    ) -> region_pb2.GetApplicationStatusResponse:
        request = region_pb2.GetApplicationStatusRequest(application_id=application_id)
        response: region_pb2.GetApplicationStatusResponse = await self._invoke(
            region_code, "GetApplicationStatus", request, timeout
        )
        return response

    async def get_license_status_list(
        self,
        region_code: str,
        timeout: float,  # noqa: ASYNC109 - a gRPC deadline, sent to the province
    ) -> region_pb2.GetLicenseStatusListResponse:
        response: region_pb2.GetLicenseStatusListResponse = await self._invoke(
            region_code, "GetLicenseStatusList", _LICENSE_STATUS_LIST_REQUEST, timeout
        )
        return response

    async def fetch_license(
        self,
        region_code: str,
        request: region_pb2.FetchLicenseRequest,
        timeout: float,  # noqa: ASYNC109 - a gRPC deadline, sent to the province
    ) -> region_pb2.FetchLicenseResponse:
        response: region_pb2.FetchLicenseResponse = await self._invoke(
            region_code, "FetchLicense", request, timeout
        )
        return response

    async def withdraw(
        self,
        region_code: str,
        request: region_pb2.WithdrawApplicationRequest,
        timeout: float,  # noqa: ASYNC109 - a gRPC deadline, sent to the province
    ) -> region_pb2.WithdrawApplicationResponse:
        response: region_pb2.WithdrawApplicationResponse = await self._invoke(
            region_code, "WithdrawApplication", request, timeout
        )
        return response

    async def close(self, grace: float | None) -> None:
        self._closed = True
        channels = list(self._channels.values())
        self._channels.clear()
        self._stubs.clear()
        await asyncio.gather(*(channel.close(grace) for channel in channels))

    async def _invoke(
        self,
        region_code: str,
        method: str,
        request: Any,
        timeout: float,  # noqa: ASYNC109 - a gRPC deadline, sent to the province
    ) -> Any:
        """One call, its failure translated (the one place `AioRpcError` becomes domain data)."""
        started = self._clock()
        code = "OK"
        try:
            rpc = getattr(self._stub(region_code), method)
            return await rpc(request, timeout=timeout)
        except grpc.aio.AioRpcError as error:
            failure = translate_rpc_error(region_code, error)
            code = failure.code.name
            raise failure from error
        except RegionCallError as failure:
            code = failure.code.name
            raise
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        finally:
            self._events.emit(
                RegionCallFinished(region_code, method, code, self._clock() - started)
            )

    def _stub(self, region_code: str) -> region_pb2_grpc.RegionServiceAsyncStub:
        try:
            return self._stubs[region_code]
        except KeyError:
            pass
        if self._closed:
            raise RegionCallError(
                region_code, grpc.StatusCode.CANCELLED, "client closed", reason="CLIENT_CLOSED"
            )
        target = self._endpoints.get(region_code)
        if target is None:
            raise RegionCallError(
                region_code,
                grpc.StatusCode.UNAVAILABLE,
                "no endpoint configured for region",
                reason="REGION_NOT_CONNECTED",
            )
        if self._credentials is None:
            channel = grpc.aio.insecure_channel(
                target, options=self._options, interceptors=self._interceptors
            )
        else:
            channel = grpc.aio.secure_channel(
                target, self._credentials, options=self._options, interceptors=self._interceptors
            )
        # grpc ships no types, so the overload for an aio channel cannot be picked by mypy.
        stub = cast(
            "region_pb2_grpc.RegionServiceAsyncStub", region_pb2_grpc.RegionServiceStub(channel)
        )
        self._channels[region_code] = channel
        self._stubs[region_code] = stub
        return stub


def translate_rpc_error(region_code: str, error: grpc.aio.AioRpcError) -> RegionCallError:
    """The one translation of a failed southbound call into a `RegionCallError`."""
    code: grpc.StatusCode = error.code()  # a method: `error.code` is never a status.
    reason = ""
    retry_delay: float | None = None
    pushback_ms: int | None = None
    for key, value in error.trailing_metadata() or ():
        if key == _PUSHBACK_KEY:
            pushback_ms = _parse_int(value)
        elif key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = _parse_status(value)
            if status is not None and status.code == code.value[0]:
                reason, retry_delay = _read_details(status)
    return RegionCallError(
        region_code,
        code,
        error.details() or "",
        reason=reason,
        pushback_ms=pushback_ms,
        retry_delay=retry_delay,
    )


def _parse_int(value: str | bytes) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _parse_status(value: bytes) -> status_pb2.Status | None:
    try:
        return status_pb2.Status.FromString(value)
    except DecodeError:
        return None


def _read_details(status: status_pb2.Status) -> tuple[str, float | None]:
    reason = ""
    retry_delay: float | None = None
    for detail in status.details:
        if not reason and detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif retry_delay is None and detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_delay = retry.retry_delay.ToNanoseconds() / 1e9
    return reason, retry_delay
