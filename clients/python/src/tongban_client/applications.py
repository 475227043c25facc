"""`client.applications`: submit an application, read it, follow it to its end.

Invariants:
- A submission always carries a `request_id`: the caller's, else a new UUID4. Every retry of
  it sends the same one, so however often it is sent, the gateway creates one application
  and the province one case (AIP-155).
- `wait` misses no state: each (re)opened watch starts with the application's current state.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator

import grpc

from tongban_client.api.v1 import application_pb2 as pb
from tongban_client.api.v1 import application_pb2_grpc
from tongban_client.calls import Calls
from tongban_client.errors import Unavailable
from tongban_client.retry import call_with_retries

TERMINAL_STATES = frozenset(
    {
        pb.APPLICATION_STATE_COMPLETED,
        pb.APPLICATION_STATE_REJECTED,
        pb.APPLICATION_STATE_FAILED,
        pb.APPLICATION_STATE_CANCELLED,
        pb.APPLICATION_STATE_WITHDRAWN,
    }
)
"""States an application never leaves (those that end WatchApplication's stream)."""


class Applications:
    """The ApplicationService, as a provincial platform uses it."""

    def __init__(self, stub: application_pb2_grpc.ApplicationServiceAsyncStub, calls: Calls):
        self._stub = stub
        self._calls = calls

    async def submit(
        self, request: pb.SubmitApplicationRequest, *, timeout: float | None = None
    ) -> pb.SubmitApplicationResponse:
        """Submits `request` (not changed: a copy is sent), with a new UUID4 as its
        `request_id` when it has none; the answer's `application.request_id` is the one used.

        The answer is `DELIVERED`, `QUEUED` (the gateway owns it and keeps delivering) or
        `FAILED`, with `replayed` set when the request id had been submitted before. Retried
        on UNAVAILABLE with the same request id. Raises a `TongbanClientError` whose
        `request_id` is the one sent: after `DeadlineExceeded`, submitting the request again
        with that id is safe.
        """
        sent = pb.SubmitApplicationRequest()
        sent.CopyFrom(request)
        if not sent.request_id:
            sent.request_id = str(uuid.uuid4())
        response: pb.SubmitApplicationResponse = await self._calls.unary(
            "SubmitApplication",
            self._stub.SubmitApplication,
            sent,
            timeout=timeout,
            request_id=sent.request_id,
        )
        return response

    async def get(self, name: str, *, timeout: float | None = None) -> pb.Application:
        """The application `name` (`applications/{application_id}`) as stored now."""
        response: pb.GetApplicationResponse = await self._calls.unary(
            "GetApplication",
            self._stub.GetApplication,
            pb.GetApplicationRequest(name=name),
            timeout=timeout,
        )
        return response.application

    async def list(
        self,
        region_code: str,
        *,
        role: pb.RegionRole.ValueType = pb.REGION_ROLE_UNSPECIFIED,
        state: pb.ApplicationState.ValueType = pb.APPLICATION_STATE_UNSPECIFIED,
        page_size: int = 0,
    ) -> AsyncIterator[pb.Application]:
        """Every application the province `region_code` submitted or handles (`role` narrows
        it), newest first, page after page; only those in `state` when it is set."""
        token = ""
        while True:
            page: pb.ListApplicationsResponse = await self._calls.unary(
                "ListApplications",
                self._stub.ListApplications,
                pb.ListApplicationsRequest(
                    region_code=region_code,
                    role=role,
                    state=state,
                    page_size=page_size,
                    page_token=token,
                ),
            )
            for application in page.applications:
                yield application
            token = page.next_page_token
            if not token:
                return

    async def watch(
        self, name: str, *, timeout: float | None = None
    ) -> AsyncGenerator[pb.Application, None]:
        """The application's current state, then each change, until a terminal state ends
        the stream. One stream, not reopened (`wait` reopens); no deadline unless `timeout`.
        Closing the generator early (`contextlib.aclosing`) cancels the stream at once."""
        responses = self._calls.stream(
            self._stub.WatchApplication, pb.WatchApplicationRequest(name=name), timeout=timeout
        )
        async with contextlib.aclosing(responses):
            async for response in responses:
                application: pb.Application = response.application
                yield application

    async def wait(self, name: str, *, timeout: float | None = None) -> pb.Application:
        """The application once it reaches a terminal state (`TERMINAL_STATES`).

        Follows WatchApplication; a stream cut (UNAVAILABLE, or ended early as a gateway
        shuts down) is opened again, with the client's retry policy while none gets through
        and afresh after one did. Raises `DeadlineExceeded` when `timeout` seconds pass first.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout

        async def follow() -> pb.Application | None:
            """The terminal application; None when a stream that got through was cut."""
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            through = False
            try:
                async with contextlib.aclosing(self.watch(name, timeout=remaining)) as watching:
                    async for application in watching:
                        through = True
                        if application.state in TERMINAL_STATES:
                            return application
            except Unavailable:
                if not through:
                    raise
                return None
            if not through:
                raise Unavailable(grpc.StatusCode.UNAVAILABLE, "the watch ended without a state")
            return None

        while True:
            finished = await call_with_retries(self._calls.config.retry, "WatchApplication", follow)
            if finished is not None:
                return finished

    async def report_status(
        self,
        name: str,
        *,
        region_code: str,
        state: pb.ApplicationState.ValueType,
        event_id: str,
        reason: str = "",
        timeout: float | None = None,
    ) -> pb.Application:
        """Reports, as the handling province `region_code`, that the application moved to
        `state` (ACCEPTED, REJECTED or COMPLETED). Idempotent by `event_id`, the province's
        id of this report, so retries report it once; returns the application after it."""
        response: pb.ReportApplicationStatusResponse = await self._calls.unary(
            "ReportApplicationStatus",
            self._stub.ReportApplicationStatus,
            pb.ReportApplicationStatusRequest(
                name=name, region_code=region_code, state=state, reason=reason, event_id=event_id
            ),
            timeout=timeout,
        )
        return response.application
