"""What the cases share: the run's settings, the applications the kit sends, the calls it makes
and how it tells what came back.

Invariants:
- Every application the kit sends is new (a fresh UUID), made up, and addressed to the
  province under test in a local code it implements; the gateway side, when there is one,
  knows it before it is sent, so a report about it is never refused as unknown.
- Every call carries a deadline (`KitOptions.call_timeout` unless a case chooses a shorter one).
- A case fails by raising `Nonconformance` with the rule it saw broken; an error a case did not
  ask for propagates and fails the case as unexpected.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gateway.api.v1 import application_pb2, region_pb2, region_pb2_grpc
from gateway.errors import unpack_details
from gateway.security.tls import channel_credentials
from gateway.times import timestamp, utc_now

if TYPE_CHECKING:
    from gateway.tools.conformance.gateway_side import GatewaySide

APPLICANT_ID_NUMBER = "110105199003071239"
"""A made-up 公民身份号码 with a valid check digit: every applicant of the kit has it."""
APPLICANT_NAME = "通办一致性测试"


class Nonconformance(Exception):
    """The province broke the rule a case checks; the message says how."""


def check(condition: object, problem: str) -> None:
    """Raises `Nonconformance(problem)` unless `condition` holds."""
    if not condition:
        raise Nonconformance(problem)


@dataclass(frozen=True, slots=True)
class KitTls:
    """Certificates of an mTLS run."""

    ca: Path
    """The federation's CA, which the province's server certificate chains to."""
    cert: Path
    """The gateway's certificate (client use, and server use for the gateway side)."""
    key: Path
    """Its key."""
    other_cert: Path | None = None
    """A client certificate of another identity of the same CA (a province's), or None."""
    other_key: Path | None = None
    """Its key."""
    server_name: str | None = None
    """The name to expect in the province's certificate, when not the host dialled."""


@dataclass(frozen=True, slots=True)
class KitOptions:
    """One run of the kit."""

    target: str
    """`host:port` of the province's RegionService."""
    region: str
    """The province's code, e.g. `440000`."""
    local_code: str
    """A local matter code the province implements."""
    national_code: str = ""
    """The national basic code of `local_code`, when known."""
    catalog_version: str = ""
    """The catalog version the province's list was written against, when known."""
    tls: KitTls | None = None
    """mTLS certificates; None calls in plaintext."""
    gateway_side: tuple[str, int] | None = None
    """Where to serve the gateway's ReportApplicationStatus (host, port); None: not served."""
    call_timeout: float = 10.0
    """Deadline of every ordinary call, in seconds."""
    report_timeout: float = 30.0
    """How long to wait for the province's status report, in seconds."""
    deadline_probes: int = 16
    """How many deliveries with a 1 ms deadline are sent at once."""
    deadline_grace: float = 0.5
    """Seconds after the deadline probes before the first look for their cases."""
    deadline_settle: float = 2.0
    """Seconds more before the second look, which finds cases recorded late."""


def tls_channel(target: str, tls: KitTls, cert: Path, key: Path) -> grpc.aio.Channel:
    """A channel to the province presenting the client certificate `cert`."""
    options: list[tuple[str, str]] = []
    if tls.server_name is not None:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    return grpc.aio.secure_channel(target, channel_credentials(tls.ca, cert, key), options=options)


def origin_for(region: str) -> str:
    """A province other than `region` to file the kit's applications in."""
    return "110000" if region != "110000" else "310000"


def short(application_id: str) -> str:
    """An application id, shortened for a line."""
    return application_id[:8]


@dataclass(frozen=True, slots=True)
class ErrorShape:
    """What a failed call carried."""

    code: grpc.StatusCode
    infos: tuple[error_details_pb2.ErrorInfo, ...]
    violations: tuple[tuple[str, str], ...]
    """(field, reason) of every BadRequest field violation."""
    has_status: bool
    """Whether trailers held a `google.rpc.Status` at all."""


def error_shape(error: grpc.aio.AioRpcError) -> ErrorShape:
    """The code, ErrorInfos and field violations of a failed call."""
    try:
        status = rpc_status.from_call(error)
    except ValueError:  # a status whose code or message contradicts the call's
        status = None
    details = [] if status is None else unpack_details(status)
    infos = tuple(d for d in details if isinstance(d, error_details_pb2.ErrorInfo))
    violations = tuple(
        (v.field, v.reason)
        for d in details
        if isinstance(d, error_details_pb2.BadRequest)
        for v in d.field_violations
    )
    return ErrorShape(error.code(), infos, violations, status is not None)


def describe(error: grpc.aio.AioRpcError) -> str:
    """A failed call in a few words: code, ErrorInfo reasons, field violations."""
    shape = error_shape(error)
    reasons = ",".join(i.reason for i in shape.infos) or "(no ErrorInfo)"
    text = f"{shape.code.name} {reasons}"
    if shape.violations:
        text += " [" + "; ".join(f"{f} {r}".strip() for f, r in shape.violations) + "]"
    return text


@dataclass(eq=False)
class Session:
    """What every case of a run uses."""

    options: KitOptions
    region: region_pb2_grpc.RegionServiceAsyncStub
    """RegionService of the province, called as the gateway."""
    gateway_side: GatewaySide | None
    """The gateway's ReportApplicationStatus, when served."""
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    """Sent in every application's form, so a province's logs can tell runs apart."""


class Probe:
    """One case's view of the session: its calls and the story of what it sent and got."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.options = session.options
        self.region = session.region
        self._sent: list[str] = []
        self._got: list[str] = []

    def sent(self, text: str) -> None:
        """Notes what the case sent."""
        self._sent.append(text)

    def got(self, text: str) -> None:
        """Notes what came back."""
        self._got.append(text)

    @property
    def story(self) -> tuple[str, str]:
        """What was sent and what came back, each as one text."""
        return "; ".join(self._sent), "; ".join(self._got)

    def application(self) -> application_pb2.Application:
        """A new application for the province, as the gateway would deliver it."""
        options = self.options
        application_id = str(uuid.uuid4())
        now = timestamp(utc_now())
        application = application_pb2.Application(
            name=f"applications/{application_id}",
            application_id=application_id,
            request_id=f"conformance-{application_id}",
            origin_region=origin_for(options.region),
            target_region=options.region,
            local_matter_code=options.national_code or options.local_code,
            national_matter_code=options.national_code,
            target_local_matter_code=options.local_code,
            catalog_version=options.catalog_version,
            applicant=application_pb2.Applicant(
                id_type=application_pb2.ID_TYPE_CITIZEN_ID,
                id_number=APPLICANT_ID_NUMBER,
                display_name=APPLICANT_NAME,
            ),
            form_fields=[
                application_pb2.FormField(key="conformance_run", value=self.session.run_id)
            ],
            materials=[
                application_pb2.MaterialRecord(
                    material_id="M01",
                    paper=application_pb2.PaperMaterial(description="conformance"),
                )
            ],
            create_time=now,
            update_time=now,
        )
        if self.session.gateway_side is not None:
            self.session.gateway_side.expect(application)
        return application

    async def deliver(
        self,
        application: application_pb2.Application,
        attempt: int = 1,
        *,
        seconds: float | None = None,
    ) -> region_pb2.DeliverApplicationResponse:
        """DeliverApplication, as attempt `attempt`, with a deadline `seconds` from now."""
        request = region_pb2.DeliverApplicationRequest(application=application, attempt=attempt)
        return await self.send(request, seconds=seconds)

    async def send(
        self, request: region_pb2.DeliverApplicationRequest, *, seconds: float | None = None
    ) -> region_pb2.DeliverApplicationResponse:
        """DeliverApplication of a request as given (malformed ones included)."""
        response: region_pb2.DeliverApplicationResponse = await self.region.DeliverApplication(
            request, timeout=self.options.call_timeout if seconds is None else seconds
        )
        side = self.session.gateway_side
        if side is not None:
            side.delivered(request.application.application_id)
        return response

    async def status(self, application_id: str) -> region_pb2.GetApplicationStatusResponse:
        """GetApplicationStatus."""
        response: region_pb2.GetApplicationStatusResponse = await self.region.GetApplicationStatus(
            region_pb2.GetApplicationStatusRequest(application_id=application_id),
            timeout=self.options.call_timeout,
        )
        return response

    async def refused(self, call: Awaitable[object], problem: str) -> grpc.aio.AioRpcError:
        """The error `call` must end with, noted as got; `Nonconformance(problem)` when it
        was answered instead."""
        try:
            answer = await call
        except grpc.aio.AioRpcError as error:
            self.got(describe(error))
            return error
        self.got(f"answered {type(answer).__name__} {_brief(answer)}")
        raise Nonconformance(problem)

    async def has_case(self, application_id: str) -> bool:
        """Whether the province holds a case for the id: an answer is yes, NOT_FOUND no."""
        try:
            await self.status(application_id)
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.NOT_FOUND:
                return False
            raise
        return True


def _brief(message: object) -> str:
    text = " ".join(str(message).split())
    return "{" + (text[:120] + "…" if len(text) > 120 else text) + "}"
