"""The ApplicationService servicer: submission, reading, watching and province reports.

Submission order, each step failing before any side effect of the next:
validate (pure) → resolve and translate the matter code (one catalog snapshot) → check and
verify materials → hand the application to the outbox, which claims the idempotency key and
commits it in one insert, then delivers it within the caller's deadline → answer DELIVERED,
QUEUED or FAILED. A key already taken replays the first answer (from the claim; or, when this
build failed, from a lookup). Every answer and refusal is emitted as an event.

A repeat of a request_id while the first call runs in this process waits for it (up to its own
deadline) and answers what it stored, so a duplicate never sends twice and never sees the
application half-way (committed, not yet delivered) when the first call is about to finish.
A repeat arriving at another replica finds the key taken by the claim and the application still
RECEIVED (its first call is delivering it): it waits, up to its own deadline, for that
delivery's outcome through the watch hub (the store's change feed), and answers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Protocol

import grpc

from gateway.api.v1 import application_pb2, application_pb2_grpc, catalog_pb2
from gateway.applications import lifecycle
from gateway.applications.canonical import request_digest, same_request
from gateway.applications.outbox import Outbox
from gateway.applications.records import GATEWAY, ApplicationRecords, add_event
from gateway.applications.request_checks import validate_submission
from gateway.applications.watch import WatchHub
from gateway.catalog import fields
from gateway.catalog.convert import MODES
from gateway.catalog.model import Matter
from gateway.catalog.registry import CatalogRegistry
from gateway.catalog.resolution import CatalogSnapshot, translate
from gateway.errors import (
    ApplicationNotFound,
    FieldViolation,
    InvalidRequest,
    LicenseInvalid,
    MaterialMissing,
    MatterNotCrossRegion,
    RequestIdReused,
    TongbanError,
    Unavailable,
)
from gateway.events import NO_EVENTS, CodeResolved, Events, SubmissionAnswered, SubmissionRefused
from gateway.licenses.token import MAX_TOKEN_BYTES
from gateway.pagination import decode_token, encode_token, page_size
from gateway.security import authz, guard
from gateway.times import timestamp

MAX_REPORT_REASON = 500
MAX_EVENT_ID = 64
MAX_ISSUED = 8
_MAX_NAME = len("applications/") + 36  # a UUID's canonical text
_ROLES = application_pb2.RegionRole.DESCRIPTOR
_STATES = application_pb2.ApplicationState.DESCRIPTOR


class LicenseFacts(Protocol):
    """What submission needs of a verified licence."""

    @property
    def identifier(self) -> str: ...
    @property
    def type_code(self) -> str: ...
    @property
    def issuer_region(self) -> str: ...


class VerdictLike(Protocol):
    @property
    def name(self) -> str: ...


class VerificationLike(Protocol):
    @property
    def verdict(self) -> VerdictLike: ...
    @property
    def detail(self) -> str: ...
    @property
    def license(self) -> LicenseFacts | None: ...
    @property
    def status_checked(self) -> bool: ...


class LicenseChecker(Protocol):
    """The licence verifier as submission uses it."""

    async def verify(
        self,
        token: str,
        *,
        expected_type_code: str | None = None,
        expected_holder_id: str | None = None,
    ) -> VerificationLike: ...


def _mode(request: application_pb2.SubmitApplicationRequest, matter: Matter) -> int:
    if not matter.cross_region_modes:
        raise MatterNotCrossRegion(
            f"national matter {matter.code} ({matter.name}) is not handled across provinces",
            metadata={"national_code": matter.code},
        )
    if request.cross_region_mode == catalog_pb2.CROSS_REGION_MODE_UNSPECIFIED:
        return MODES[matter.cross_region_modes[0]]
    allowed = [MODES[m] for m in matter.cross_region_modes]
    if request.cross_region_mode not in allowed:
        raise InvalidRequest(
            "the matter does not offer this cross-region mode",
            field_violations=[
                FieldViolation(
                    "cross_region_mode",
                    f"one of {', '.join(matter.cross_region_modes)}",
                    "MODE_NOT_OFFERED",
                )
            ],
        )
    return request.cross_region_mode


class ApplicationServicer(application_pb2_grpc.ApplicationServiceServicer):
    """Accepts applications and owns them until their province has them."""

    def __init__(
        self,
        *,
        registry: CatalogRegistry,
        outbox: Outbox,
        hub: WatchHub,
        licenses: LicenseChecker,
        wall_clock: Callable[[], datetime],
        watch_poll: float = 1.0,
        events: Events = NO_EVENTS,
    ) -> None:
        self.registry = registry
        self.outbox = outbox
        self.records: ApplicationRecords = outbox.records
        self.hub = hub
        self.licenses = licenses
        self.wall_clock = wall_clock
        self.watch_poll = watch_poll
        self.events = events
        self._inflight: dict[tuple[str, str], asyncio.Future[None]] = {}
        """Submissions running in this process, by idempotency key (origin, request id)."""

    async def wait_idle(self, timeout: float) -> None:  # noqa: ASYNC109 - a bounded wait
        """Waits (up to `timeout` seconds) until no submission runs here, cleanup included.

        grpc's `server.stop` may return while a cancelled handler still gives its lease back;
        the store must not close under it.
        """
        running = list(self._inflight.values())
        if running:
            await asyncio.wait(running, timeout=timeout)

    async def SubmitApplication(
        self, request: application_pb2.SubmitApplicationRequest, context: grpc.aio.ServicerContext
    ) -> application_pb2.SubmitApplicationResponse:
        try:
            response = await self._submission(request, context)
        except TongbanError as error:
            self.events.emit(
                SubmissionRefused(
                    request.request_id, request.target_region, error.code.name, error.reason
                )
            )
            raise
        self.events.emit(SubmissionAnswered(response.application, response.replayed))
        return response

    async def _submission(
        self, request: application_pb2.SubmitApplicationRequest, context: grpc.aio.ServicerContext
    ) -> application_pb2.SubmitApplicationResponse:
        guard.check(authz.SubmitApplication(request.origin_region))
        outbox = self.outbox
        deadline = outbox.deadline(context.time_remaining())
        snapshot = self.registry.snapshot
        violations = validate_submission(request, snapshot.provinces)
        if violations:
            raise InvalidRequest(
                f"the application has {len(violations)} invalid field(s)",
                field_violations=violations,
            )
        digest = request_digest(request)
        key = (request.origin_region, request.request_id)
        while (pending := self._inflight.get(key)) is not None:
            # A call with this request_id is running here (perhaps between its commit and its
            # delivery): wait for it rather than race it, then answer what it stored.
            await asyncio.wait({pending}, timeout=max(0.0, deadline - outbox.clock()))
            if not pending.done():
                existing = await self.records.find_by_request(*key)
                if existing is None:
                    raise Unavailable(
                        "a submission with this request_id is still in progress",
                        retry_delay=1.0,
                    )
                return self._replay(*existing, digest, request)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = done
        try:
            return await self._submit(request, snapshot, digest, deadline)
        finally:
            del self._inflight[key]
            done.set_result(None)

    async def _submit(
        self,
        request: application_pb2.SubmitApplicationRequest,
        snapshot: CatalogSnapshot,
        digest: str,
        deadline: float,
    ) -> application_pb2.SubmitApplicationResponse:
        # No idempotency read on the happy path: the claim below is the atomic check, and a
        # taken key is replayed from there. Only a build that fails looks the key up, so a
        # replay still answers as the first time did after its licence or matter changed.
        try:
            app = await self._build(request, snapshot)
        except TongbanError:
            existing = await self.records.find_by_request(request.origin_region, request.request_id)
            if existing is None:
                raise
            return self._replay(*existing, digest, request)
        stored, stored_digest, created = await self.outbox.accept(app, digest, deadline=deadline)
        if not created:  # an earlier call (on another replica or worker) took the request_id
            response = self._replay(stored, stored_digest, digest, request)
            if stored.state == application_pb2.APPLICATION_STATE_RECEIVED:
                response.application.CopyFrom(await self._first_outcome(stored, deadline))
            return response
        return application_pb2.SubmitApplicationResponse(application=stored)

    async def _first_outcome(
        self, app: application_pb2.Application, deadline: float
    ) -> application_pb2.Application:
        """The application once its first call's delivery (elsewhere) has an outcome, or as it
        is at `deadline` (still RECEIVED: the gateway owns it, as a QUEUED answer says)."""
        application_id = app.application_id
        with self.hub.subscribe(application_id) as queue:
            app = await self.records.get(application_id)
            while app.state == application_pb2.APPLICATION_STATE_RECEIVED:
                remaining = deadline - self.outbox.clock()
                if remaining <= 0:
                    break
                try:
                    app = await asyncio.wait_for(queue.get(), min(remaining, self.watch_poll))
                except TimeoutError:
                    app = await self.records.get(application_id)
        return app

    def _replay(
        self,
        app: application_pb2.Application,
        stored_digest: str,
        digest: str,
        request: application_pb2.SubmitApplicationRequest,
    ) -> application_pb2.SubmitApplicationResponse:
        if not same_request(stored_digest, digest, request):
            raise RequestIdReused(
                "this request_id was used for a different application",
                metadata={"application": app.name},
            )
        return application_pb2.SubmitApplicationResponse(application=app, replayed=True)

    async def _build(
        self, request: application_pb2.SubmitApplicationRequest, snapshot: CatalogSnapshot
    ) -> application_pb2.Application:
        now = self.wall_clock()
        started = time.perf_counter()
        try:
            matter, version, target_local_code = translate(
                snapshot,
                request.origin_region,
                request.local_matter_code,
                request.target_region,
                now=now,
                national_code=request.national_matter_code,
                national_field="national_matter_code",
            )
        except TongbanError as exc:
            self.events.emit(CodeResolved(exc.reason, time.perf_counter() - started))
            raise
        self.events.emit(CodeResolved("resolved", time.perf_counter() - started))
        mode = _mode(request, matter)
        materials = await self._materials(request, matter)
        application_id = str(uuid.uuid4())
        app = application_pb2.Application(
            name=f"applications/{application_id}",
            application_id=application_id,
            request_id=request.request_id,
            origin_region=request.origin_region,
            target_region=request.target_region,
            local_matter_code=request.local_matter_code,
            national_matter_code=matter.code,
            target_local_matter_code=target_local_code,
            catalog_version=version,
            cross_region_mode=mode,  # type: ignore[arg-type]
            applicant=request.applicant,
            form_fields=request.form_fields,
            materials=materials,
            create_time=timestamp(now),
            matter_display_name=matter.name,
        )
        add_event(app, application_pb2.APPLICATION_STATE_RECEIVED, "", GATEWAY, now.timestamp())
        return app

    async def _materials(
        self, request: application_pb2.SubmitApplicationRequest, matter: Matter
    ) -> list[application_pb2.MaterialRecord]:
        unknown = [
            FieldViolation(
                f"materials[{i}].material_id",
                f"matter {matter.code} has no material with this id",
                "UNKNOWN_MATERIAL",
            )
            for i, m in enumerate(request.materials)
            if matter.material(m.material_id) is None
        ]
        if unknown:
            raise InvalidRequest(
                "the application names unknown materials", field_violations=unknown
            )
        supplied = {m.material_id for m in request.materials}
        missing = [m for m in matter.materials if m.required and m.id not in supplied]
        if missing:
            raise MaterialMissing(
                f"{len(missing)} required material(s) missing",
                field_violations=[
                    FieldViolation(
                        "materials", f"{m.id} ({m.name}) is required", "MATERIAL_MISSING"
                    )
                    for m in missing
                ],
                metadata={"missing": ",".join(m.id for m in missing)},
            )
        records = []
        for i, m in enumerate(request.materials):
            requirement = matter.material(m.material_id)
            assert requirement is not None
            if m.WhichOneof("source") != "license_token":
                records.append(
                    application_pb2.MaterialRecord(material_id=m.material_id, paper=m.paper)
                )
                continue
            field = f"materials[{i}].license_token"
            if not requirement.license_type_code:
                raise InvalidRequest(
                    f"no e-licence can stand in for material {m.material_id}",
                    field_violations=[
                        FieldViolation(field, "this material takes paper only", "NO_LICENSE_TYPE")
                    ],
                )
            verification = await self.licenses.verify(
                m.license_token,
                expected_type_code=requirement.license_type_code,
                expected_holder_id=request.applicant.id_number,
            )
            licence = verification.license
            if verification.verdict.name != "VALID" or licence is None:
                raise LicenseInvalid(
                    f"the licence for material {m.material_id} is not valid: {verification.detail}",
                    field_violations=[
                        FieldViolation(field, verification.detail, verification.verdict.name)
                    ],
                    metadata={"verdict": verification.verdict.name, "material_id": m.material_id},
                )
            records.append(
                application_pb2.MaterialRecord(
                    material_id=m.material_id,
                    waived=True,
                    license_identifier=licence.identifier,
                    license_type_code=licence.type_code,
                    license_status_checked=verification.status_checked,
                )
            )
        return records

    async def GetApplication(
        self, request: application_pb2.GetApplicationRequest, context: grpc.aio.ServicerContext
    ) -> application_pb2.GetApplicationResponse:
        app = await self._readable(_application_id(request.name, "name"))
        return application_pb2.GetApplicationResponse(application=app)

    async def _readable(self, application_id: str) -> application_pb2.Application:
        """The application, if the caller submitted it, handles it, or is an operator."""
        try:
            app = await self.records.get(application_id)
        except ApplicationNotFound:
            # A province is refused exactly as for somebody else's application: no probing.
            guard.check(authz.ReadApplication("", ""))
            raise
        guard.check(authz.ReadApplication(app.origin_region, app.target_region))
        return app

    async def ListApplications(
        self, request: application_pb2.ListApplicationsRequest, context: grpc.aio.ServicerContext
    ) -> application_pb2.ListApplicationsResponse:
        role = request.role
        fields.raise_if_any(
            "the list request is malformed",
            fields.region_code(request.region_code, "region_code"),
            fields.enum_value(role, "role", _ROLES),
            fields.enum_value(request.state, "state", _STATES),
        )
        guard.check(authz.ListApplications(request.region_code))
        size = page_size(request.page_size, default=50, maximum=500)
        query = {
            "m": "ListApplications",
            "r": request.region_code,
            "o": request.role,
            "s": request.state,
        }
        position = decode_token(request.page_token, query)
        before = None
        if position is not None:
            if not (isinstance(position, list) and len(position) == 2):
                raise InvalidRequest("page_token is malformed")
            before = (float(position[0]), str(position[1]))
        found = await self.records.list_for_region(
            request.region_code,
            as_origin=role
            in (application_pb2.REGION_ROLE_UNSPECIFIED, application_pb2.REGION_ROLE_ORIGIN),
            as_target=role
            in (application_pb2.REGION_ROLE_UNSPECIFIED, application_pb2.REGION_ROLE_TARGET),
            state=request.state or None,
            limit=size + 1,
            before=before,
        )
        page = found[:size]
        token = ""
        if len(found) > size:
            last_app, last_time = page[-1]
            token = encode_token([last_time, last_app.application_id], query)
        return application_pb2.ListApplicationsResponse(
            applications=[a for a, _ in page], next_page_token=token
        )

    async def WatchApplication(
        self, request: application_pb2.WatchApplicationRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[application_pb2.WatchApplicationResponse]:
        application_id = _application_id(request.name, "name")
        if guard.current_caller().enforced:
            await self._readable(application_id)
        with self.hub.subscribe(application_id) as queue:
            app = await self.records.get(application_id)
            yield application_pb2.WatchApplicationResponse(application=app)
            seen = len(app.events)
            while not lifecycle.is_terminal(app.state):
                try:
                    app = await asyncio.wait_for(queue.get(), self.watch_poll)
                except TimeoutError:
                    app = await self.records.get(application_id)
                if len(app.events) > seen:
                    seen = len(app.events)
                    yield application_pb2.WatchApplicationResponse(application=app)

    async def ReportApplicationStatus(
        self,
        request: application_pb2.ReportApplicationStatusRequest,
        context: grpc.aio.ServicerContext,
    ) -> application_pb2.ReportApplicationStatusResponse:
        application_id = checked_report(request)
        if guard.current_caller().enforced:
            await self._may_report(application_id)
        issued = (
            await self._issued(application_id, request) if request.issued_license_tokens else []
        )
        app = await self.records.report(
            application_id,
            region_code=request.region_code,
            state=request.state,
            reason=request.reason,
            event_id=request.event_id,
            issued=issued,
        )
        return application_pb2.ReportApplicationStatusResponse(application=app)

    async def _issued(
        self, application_id: str, request: application_pb2.ReportApplicationStatusRequest
    ) -> list[application_pb2.IssuedLicense]:
        """The licences a COMPLETED report carries, each verified as one the reporting
        province issued, of a type the matter produces, held by the applicant."""
        app = await self.records.get(application_id)
        matter = None
        with contextlib.suppress(TongbanError):
            record = self.registry.snapshot.version(app.catalog_version, self.wall_clock())
            matter = record.document.matters.get(app.national_matter_code)
        results = set(matter.results) if matter is not None else set()
        out = []
        for i, token in enumerate(request.issued_license_tokens):
            field = f"issued_license_tokens[{i}]"
            verification = await self.licenses.verify(
                token, expected_holder_id=app.applicant.id_number
            )
            licence = verification.license
            problem = ""
            if verification.verdict.name != "VALID" or licence is None:
                problem, reason = verification.detail, verification.verdict.name
            elif licence.issuer_region != request.region_code:
                problem, reason = "issued by another province", "NOT_ISSUED_BY_REPORTER"
            elif licence.type_code not in results:
                problem, reason = f"{app.national_matter_code} does not issue it", "NOT_A_RESULT"
            if problem:
                raise LicenseInvalid(
                    f"issued licence {i} is not valid: {problem}",
                    field_violations=[FieldViolation(field, problem, reason)],
                    metadata={"verdict": reason},
                )
            assert licence is not None
            out.append(
                application_pb2.IssuedLicense(
                    license_token=token,
                    license_type_code=licence.type_code,
                    license_identifier=licence.identifier,
                )
            )
        return out

    async def _may_report(self, application_id: str) -> None:
        try:
            app = await self.records.get(application_id)
        except ApplicationNotFound:
            guard.check(authz.ReportStatus(""))
            raise
        # Only the target may report; whether it may report now is the application's state,
        # judged by the lifecycle (a FAILED application never reached it: NOT_DELIVERED).
        guard.check(authz.ReportStatus(app.target_region))


def checked_report(request: application_pb2.ReportApplicationStatusRequest) -> str:
    """The application id a province's report names; raises `InvalidRequest` with every
    malformed field. What the report may change is the lifecycle's and the store's to judge."""
    state = fields.enum_value(request.state, "state", _STATES, required=True)
    if state is None and request.state not in lifecycle.PROVINCE_REPORTABLE:
        state = FieldViolation("state", "one of ACCEPTED, REJECTED, COMPLETED", "NOT_REPORTABLE")
    application_id = _application_id(request.name, "name")
    fields.raise_if_any(
        "the report is malformed",
        fields.region_code(request.region_code, "region_code"),
        state,
        fields.text(request.reason, "reason", MAX_REPORT_REASON, printable=False),
        fields.text(request.event_id, "event_id", MAX_EVENT_ID, required=True),
        *_issued_violations(request),
    )
    return application_id


def _issued_violations(
    request: application_pb2.ReportApplicationStatusRequest,
) -> list[FieldViolation | None]:
    tokens = request.issued_license_tokens
    if not tokens:
        return []
    if request.state != application_pb2.APPLICATION_STATE_COMPLETED:
        return [FieldViolation("issued_license_tokens", "only with COMPLETED", "NOT_COMPLETED")]
    if len(tokens) > MAX_ISSUED:
        return [FieldViolation("issued_license_tokens", f"at most {MAX_ISSUED}", "TOO_MANY")]
    return [
        fields.license_token(t, f"issued_license_tokens[{i}]", MAX_TOKEN_BYTES)
        for i, t in enumerate(tokens)
    ]


def _application_id(name: str, field: str) -> str:
    prefix, _, application_id = name.partition("/") if len(name) <= _MAX_NAME else ("", "", "")
    try:
        parsed = uuid.UUID(application_id)
    except ValueError:
        parsed = None
    if prefix != "applications" or parsed is None or str(parsed) != application_id:
        raise InvalidRequest(
            f"{field} must be applications/{{uuid}}",
            field_violations=[FieldViolation(field, "applications/{application_id}", "BAD_NAME")],
        )
    return application_id
