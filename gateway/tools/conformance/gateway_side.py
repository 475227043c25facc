"""The gateway's side of status reports, played by the kit: ApplicationService serving only
ReportApplicationStatus, judging each report as a gateway would.

Invariants:
- A report is judged by the gateway's own rules: its fields by
  `applications.service.checked_report`, the move by `applications.lifecycle`, the caller as the
  gateway's authorization does (over mTLS the certificate must be the handling province's, and
  only the handling province reports an application). Refusals are the gateway's errors, sent
  as its one error shape.
- Only applications the kit sent in this run are known; a report about any other is NOT_FOUND,
  as at a gateway that never stored it.
- A report repeating an event id already accepted changes nothing (the gateway's idempotency).
- Every report is kept, accepted or refused, with why it was refused, for the case to show.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass, replace

import grpc

from gateway.api.v1 import application_pb2
from gateway.app.error_status import ErrorInterceptor
from gateway.applications import lifecycle
from gateway.applications.service import checked_report
from gateway.errors import (
    ApplicationNotFound,
    InvalidStateTransition,
    PermissionDenied,
    TongbanError,
)
from gateway.security.identity import Identity, Role, identity_from_auth_context, identity_uri
from gateway.security.tls import ServerTlsFiles, server_credentials

log = logging.getLogger(__name__)

_State = application_pb2.ApplicationState
_SERVICE = application_pb2.DESCRIPTOR.services_by_name["ApplicationService"].full_name


def _state_name(state: int) -> str:
    """A state's name; the number when it is not one of the enum."""
    return _State.Name(_State.ValueType(state)) if state in _State.values() else str(state)


@dataclass(frozen=True, slots=True)
class Report:
    """One ReportApplicationStatus the province made, and the verdict on it."""

    name: str
    """The `name` reported (`applications/{id}`)."""
    state: str
    """The state reported, by name."""
    region_code: str
    """The region the report says it comes from."""
    event_id: str
    """The province's event id."""
    caller: str
    """Who called: the certificate's identity over mTLS, `plaintext` otherwise."""
    refusal: str = ""
    """Why a gateway refuses it (code, reason, fields); empty when accepted."""


class GatewaySide:
    """A receiver of one province's status reports, for one run."""

    def __init__(self, region: str, tls: ServerTlsFiles | None) -> None:
        self.region = region
        self._tls = tls
        self._states: dict[str, application_pb2.ApplicationState.ValueType] = {}
        self._events: set[tuple[str, str]] = set()
        self._reports: dict[str, list[Report]] = defaultdict(list)
        self._arrived = asyncio.Condition()
        self._server: grpc.aio.Server | None = None
        self.address = ""

    def expect(self, application: application_pb2.Application) -> None:
        """Makes an application the kit is about to send known (as RECEIVED)."""
        self._states.setdefault(
            application.application_id, application_pb2.APPLICATION_STATE_RECEIVED
        )

    def delivered(self, application_id: str) -> None:
        """Notes that the province answered a delivery of the application."""
        if self._states.get(application_id) == application_pb2.APPLICATION_STATE_RECEIVED:
            self._states[application_id] = application_pb2.APPLICATION_STATE_DELIVERED

    async def start(self, host: str, port: int) -> None:
        """Serves on `host:port`; raises OSError when the address cannot be bound."""
        # No SO_REUSEPORT: a port another process serves must fail here, not share its calls.
        server = grpc.aio.server(
            interceptors=[ErrorInterceptor()], options=[("grpc.so_reuseport", 0)]
        )
        server.add_generic_rpc_handlers((_handlers(self),))
        bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            if self._tls is None:
                bound = server.add_insecure_port(bind)
            else:
                bound = server.add_secure_port(bind, server_credentials(self._tls, reload=False))
        except RuntimeError as error:
            raise OSError(f"cannot listen on {bind}: {error}") from error
        await server.start()
        self._server = server
        self.address = bind.rsplit(":", 1)[0] + f":{bound}"

    async def stop(self) -> None:
        """Stops serving."""
        if self._server is not None:
            await self._server.stop(grace=0.5)

    async def next_report(self, application_id: str, within: float) -> Report | None:
        """The first report about the application, waiting up to `within` seconds."""

        def first() -> Report | None:
            reports = self._reports.get(f"applications/{application_id}")
            return reports[0] if reports else None

        async with self._arrived:
            try:
                async with asyncio.timeout(within):
                    await self._arrived.wait_for(lambda: first() is not None)
            except TimeoutError:
                return None
            return first()

    async def keep(self, report: Report) -> None:
        """Records a report and wakes whoever waits for it."""
        async with self._arrived:
            self._reports[report.name].append(report)
            self._arrived.notify_all()

    def judge(
        self, request: application_pb2.ReportApplicationStatusRequest, caller: Identity | None
    ) -> application_pb2.Application:
        """The application after the report, as a gateway answers; raises its refusal."""
        application_id = checked_report(request)
        target = self.region
        expected = identity_uri(Role.REGION, target)
        if self._tls is not None and (caller is None or caller.uri != expected):
            raise PermissionDenied(
                "only the handling province reports the state of an application",
                metadata={"denial": "NOT_THE_HANDLING_PROVINCE"},
            )
        current = self._states.get(application_id)
        if current is None:
            raise ApplicationNotFound(f"no application {application_id} was sent in this run")
        if request.region_code != target:
            raise PermissionDenied(
                "only the handling province reports the state of an application",
                metadata={"denial": "NOT_DELIVERED_TO_CALLER"},
            )
        if (application_id, request.event_id) not in self._events:
            path = lifecycle.province_report_path(current, request.state)
            if path is None:
                raise InvalidStateTransition(
                    f"cannot report {_state_name(request.state)} for an application in "
                    f"{_state_name(current)}",
                    metadata={"state": _state_name(current)},
                )
            self._events.add((application_id, request.event_id))
            if path:
                self._states[application_id] = _State.ValueType(path[-1])
        return application_pb2.Application(
            name=request.name,
            application_id=application_id,
            target_region=target,
            state=self._states[application_id],
        )


def _handlers(side: GatewaySide) -> grpc.GenericRpcHandler:
    """ApplicationService with ReportApplicationStatus alone; any other method is UNIMPLEMENTED."""

    async def report(
        request: application_pb2.ReportApplicationStatusRequest,
        context: grpc.aio.ServicerContext,
    ) -> application_pb2.ReportApplicationStatusResponse:
        identity = identity_from_auth_context(context.auth_context())
        received = Report(
            name=request.name,
            state=_state_name(request.state),
            region_code=request.region_code,
            event_id=request.event_id,
            caller="plaintext" if identity is None else identity.uri,
        )
        try:
            application = side.judge(request, identity)
        except TongbanError as error:
            fields = "; ".join(f"{v.field} {v.reason}" for v in error.field_violations)
            refusal = f"{error.code.name} {error.reason}" + (f" [{fields}]" if fields else "")
            await side.keep(replace(received, refusal=f"{refusal}: {error.message}"))
            raise
        await side.keep(received)
        return application_pb2.ReportApplicationStatusResponse(application=application)

    return grpc.method_handlers_generic_handler(
        _SERVICE,
        {
            "ReportApplicationStatus": grpc.unary_unary_rpc_method_handler(
                report,
                request_deserializer=application_pb2.ReportApplicationStatusRequest.FromString,
                response_serializer=application_pb2.ReportApplicationStatusResponse.SerializeToString,
            )
        },
    )
