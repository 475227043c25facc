"""The region stub's gRPC server: RegionService as a province plays it, and RegionAdminService.

Invariants:
- Every error leaves as one `google.rpc.Status` with one ErrorInfo (`gateway.errors`): handlers
  raise `TongbanError`s and the gateway's `ErrorInterceptor` turns them into a status, in that
  one place.
- Faults apply before the province looks at a request (`faults.decide`), except
  commit-then-drop, which records the case and then fails. `down` fails every RegionService
  call; the other faults only touch DeliverApplication. Admin calls never fault.
- A delivery is validated before it is recorded, and a recorded application id is answered as a
  duplicate even if its local code has been retired since; with other content (`_content_digest`)
  it is refused.
- A delivery records its case only while at least `RECORD_MARGIN` of its deadline remains: that
  is checked right before the (synchronous) commit, and a cancelled call stops at its next
  await, so a delivery whose deadline passes leaves no case, then or later.
- A switch of `config.breaks` breaks its one rule (`breaks.Break`); with none on, every rule of
  the southbound contract holds.
- The one outbound call, ReportApplicationStatus on the gateway, has a deadline (the caller's
  remaining time, at most `GATEWAY_CALL_CEILING`), and its errors are translated where it is
  made (`GatewayReporter.report`). A COMPLETED report carries the licences the case issued.
- A case is decided in one way (`StubState.decide`: move it, issuing its results when it
  completes, then report it), whether an operator asks (DecideCase) or a rule does
  (`decider`). A new case is handed to the rule in force for its matter when it is recorded,
  even if the delivery's answer is then dropped; a stub that starts on a data directory hands
  over its undecided cases by the rules it starts with.
- A server is built, bound and stopped inside the running event loop (`running_stub`), and its
  resources close in reverse order: server (drained with `grace`), deliveries left running
  (only under the `ignore-deadline` break), pending automatic decisions, outbound channel,
  store.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import math
import os
import random
import re
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import timestamp_pb2
from opentelemetry.sdk.trace import TracerProvider

from gateway.api.v1 import application_pb2, application_pb2_grpc, region_pb2, region_pb2_grpc
from gateway.app import serving
from gateway.app.error_status import ErrorInterceptor
from gateway.catalog import fields
from gateway.catalog.fields import ID_DOCUMENTS
from gateway.errors import (
    AlreadyDecided,
    ApplicationNotFound,
    FieldViolation,
    InvalidRequest,
    InvalidStateTransition,
    LicenseNotFound,
    LocalCodeNotFound,
    TongbanError,
    Unavailable,
)
from gateway.licenses.status_list import LicenseStatus, decode_status_list
from gateway.licenses.token import STATUS_LIST_TOKEN_TYPE, jwk_thumbprint
from gateway.licenses.trust import PROVINCE_CODES, TrustConfigError
from gateway.observability.tracing import ServerTracing, client_interceptors, process_provider
from gateway.routing.client import translate_rpc_error
from gateway.security.southbound import GatewayOnly
from gateway.security.tls import ServerTlsFiles, channel_credentials, server_credentials
from gateway.times import utc_now
from region_stubs import catalog
from region_stubs.admin.v1 import admin_pb2, admin_pb2_grpc
from region_stubs.breaks import Break
from region_stubs.cases import Case, CaseState, CaseStore, Counter, Counters, Delivery
from region_stubs.catalog import MatterResults
from region_stubs.config import ConfigError, StubConfig, parse_args
from region_stubs.decider import Decider
from region_stubs.decisions import Decisions, DecisionsInvalid
from region_stubs.faults import FaultPlan, Faults, FaultsInvalid, Outcome, decide
from region_stubs.holdings import Holdings, issued_types
from region_stubs.issuer import LicenseIssuer
from region_stubs.outputs import issue_results

log = logging.getLogger(__name__)

REGION_SERVICE = region_pb2.DESCRIPTOR.services_by_name["RegionService"].full_name
ADMIN_SERVICE = admin_pb2.DESCRIPTOR.services_by_name["RegionAdminService"].full_name
SERVICE_NAMES = (REGION_SERVICE, ADMIN_SERVICE)

PUSHBACK_TRAILER = "grpc-retry-pushback-ms"
LICENSE_KEYS_MAX_AGE = 60
"""Seconds the gateway may cache the JWKS (GetLicenseKeys)."""
STATUS_LIST_TTL = 60
"""Seconds the gateway may cache the licence status list (GetLicenseStatusList)."""
GATEWAY_CALL_CEILING = 5.0
"""Longest the stub waits for the gateway's ReportApplicationStatus."""
MAX_REASON_LENGTH = 500
DEFAULT_VALID_DAYS = 365
RECORD_MARGIN = 0.005
"""Seconds of its deadline a delivery must have left for its case to be recorded (region.proto)."""
RACE_WINDOW = 0.02
"""Seconds between looking a case up and creating it under the `racy-duplicates` break."""
MAX_TYPE_CODE = 21

_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_BUNDLE_NAME = re.compile(f"bundles/{_UUID}")
_APPLICATION_NAME = re.compile(f"applications/{_UUID}")
_TYPE_CODE = re.compile(r"[0-9A-Z]{18}[0-9]{3}")
_ID_TYPES = application_pb2.IdType.DESCRIPTOR

_HOLDER_ID_TYPES: dict[int, str] = {d.id_type: d.holder_code for d in ID_DOCUMENTS}
_ALGORITHMS = {
    admin_pb2.LICENSE_SIGNING_ALGORITHM_EDDSA: "EdDSA",
    admin_pb2.LICENSE_SIGNING_ALGORITHM_ES256: "ES256",
}
_LICENSE_STATUSES = {
    admin_pb2.LICENSE_STATUS_VALID: LicenseStatus.VALID,
    admin_pb2.LICENSE_STATUS_REVOKED: LicenseStatus.REVOKED,
    admin_pb2.LICENSE_STATUS_SUSPENDED: LicenseStatus.SUSPENDED,
}

_DECIDABLE = {
    application_pb2.APPLICATION_STATE_ACCEPTED: CaseState.ACCEPTED,
    application_pb2.APPLICATION_STATE_REJECTED: CaseState.REJECTED,
    application_pb2.APPLICATION_STATE_COMPLETED: CaseState.COMPLETED,
}
_WIRE_STATE = {
    CaseState.DELIVERED: application_pb2.APPLICATION_STATE_DELIVERED,
    CaseState.WITHDRAWN: application_pb2.APPLICATION_STATE_WITHDRAWN,
    **{state: wire for wire, state in _DECIDABLE.items()},
}
_T = TypeVar("_T")


class StubError(TongbanError):
    """An error whose code and reason are chosen per instance: injected faults and errors
    relayed from the gateway. May carry extra trailing metadata (the pushback trailer)."""

    def __init__(
        self,
        code: grpc.StatusCode,
        reason: str,
        message: str,
        *,
        metadata: dict[str, str] | None = None,
        retry_delay: float | None = None,
        trailers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message, metadata=metadata, retry_delay=retry_delay, trailers=trailers)
        self.code = code
        self.reason = reason


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _is_canonical_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def _content_digest(application: application_pb2.Application) -> str:
    """The hex SHA-256 of what a repeated delivery may not change (region.proto): regions,
    request id, matter codes, catalog version, mode, applicant, form (as a map) and materials
    (as declared; whether the gateway could check a licence's status is not content)."""
    applicant = application.applicant
    parts = [
        application.request_id,
        application.origin_region,
        application.target_region,
        application.local_matter_code,
        application.national_matter_code,
        application.target_local_matter_code,
        application.catalog_version,
        str(application.cross_region_mode),
        str(applicant.id_type),
        applicant.id_number,
        applicant.display_name,
        str(len(application.form_fields)),
    ]
    for key, value in sorted((f.key, f.value) for f in application.form_fields):
        parts += (key, value)
    materials = sorted(
        (
            m.material_id,
            str(m.waived),
            m.license_identifier,
            m.license_type_code,
            m.paper.description,
            m.paper.file_sha256,
        )
        for m in application.materials
    )
    parts.append(str(len(materials)))
    for material in materials:
        parts += material
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode()
        digest.update(len(data).to_bytes(4, "big"))
        digest.update(data)
    return digest.hexdigest()


def _holding_violations(
    type_code: str, holder_id_type: int, holder_id_number: str
) -> list[FieldViolation | None]:
    """A licence type and its holder, as FetchLicense and SetLicenseHolding take them."""
    return [
        fields.matching(
            type_code,
            "license_type_code",
            _TYPE_CODE,
            "a licence type code: 18 characters of 0-9A-Z, then 3 digits",
            MAX_TYPE_CODE,
            required=True,
        ),
        fields.enum_value(holder_id_type, "holder_id_type", _ID_TYPES, required=True),
        fields.id_number(holder_id_type, holder_id_number, "holder_id_number", PROVINCE_CODES),
    ]


def _uuid_violation(text: str, field_name: str) -> FieldViolation | None:
    if _is_canonical_uuid(text):
        return None
    return FieldViolation(field_name, "must be a UUID in canonical form", "NOT_A_UUID")


def _require_uuid(text: str, field_name: str) -> None:
    fields.raise_if_any(f"{field_name} must be a UUID", _uuid_violation(text, field_name))


class GatewayReporter:
    """The stub's one outbound call: ReportApplicationStatus on the gateway."""

    def __init__(
        self,
        address: str,
        credentials: grpc.ChannelCredentials | None = None,
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
        *,
        send_event_ids: bool = True,
    ) -> None:
        self._send_event_ids = send_event_ids
        chosen = list(interceptors) or None
        self._channel = (
            grpc.aio.insecure_channel(address, interceptors=chosen)
            if credentials is None
            else grpc.aio.secure_channel(address, credentials, interceptors=chosen)
        )
        # grpc ships no types, so the overload for an aio channel cannot be picked by mypy.
        self._stub = cast(
            "application_pb2_grpc.ApplicationServiceAsyncStub",
            application_pb2_grpc.ApplicationServiceStub(self._channel),
        )

    async def report(
        self, case: Case, region_code: str, time_left: float | None
    ) -> application_pb2.ApplicationState.ValueType:
        """Reports the case's state; returns the gateway's state of the application."""
        timeout = (
            GATEWAY_CALL_CEILING if time_left is None else min(time_left, GATEWAY_CALL_CEILING)
        )
        request = application_pb2.ReportApplicationStatusRequest(
            name=f"applications/{case.application_id}",
            region_code=region_code,
            state=_WIRE_STATE[case.state],
            reason=case.reason,
            event_id=case.event_id if self._send_event_ids else "",
            issued_license_tokens=case.issued_licenses if case.state is CaseState.COMPLETED else (),
        )
        try:
            response: application_pb2.ReportApplicationStatusResponse = (
                await self._stub.ReportApplicationStatus(request, timeout=timeout)
            )
        except grpc.aio.AioRpcError as rpc_error:
            error = translate_rpc_error("gateway", rpc_error)
            metadata = {"upstream": "gateway"}
            if error.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Unavailable(
                    f"the gateway could not be reached: {error.message}", metadata=metadata
                ) from rpc_error
            raise StubError(
                error.code,
                error.reason or error.code.name,
                f"the gateway refused the report: {error.message}",
                metadata=metadata,
            ) from rpc_error
        return response.application.state

    async def close(self) -> None:
        """Closes the channel."""
        await self._channel.close()


@dataclass(eq=False)
class StubState:
    """What both servicers share: the province's catalogs, cases, keys, licence record, fault
    settings and decision rules."""

    config: StubConfig
    store: CaseStore
    catalog: catalog.ImplementationList
    results: MatterResults
    issuer: LicenseIssuer
    holdings: Holdings
    gateway: GatewayReporter | None
    faults: Faults
    decisions: Decisions
    rng: random.Random
    clock: Callable[[], datetime] = utc_now
    foreign_issuer: LicenseIssuer | None = None
    """Signs the status list under the `status-list-foreign-key` break: its key is not in the
    JWKS."""
    leaked_jwk: dict[str, str] | None = None
    """A key published with its private member under the `private-jwk` break."""
    decider: Decider = field(init=False)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    """Deliveries that outlive their call (the `ignore-deadline` break): cancelled when the stub
    stops."""

    def __post_init__(self) -> None:
        self.decider = Decider(self.decide)

    @property
    def breaks(self) -> frozenset[Break]:
        """The rules broken on purpose."""
        return self.config.breaks

    def spawn(self, work: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        """Runs `work` as a task of the stub's own."""
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def stop_tasks(self) -> None:
        """Cancels the stub's own tasks and waits for them."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def decide(
        self,
        application_id: str,
        target: CaseState,
        reason: str,
        time_left: float | None = None,
    ) -> application_pb2.ApplicationState.ValueType:
        """Moves a case to `target` (completing it issues its results) and reports it to the
        gateway; returns the gateway's state of the application (UNSPECIFIED without one).

        The case moves first and the report follows: the province has decided whether or not
        the gateway hears of it. A repeat re-sends the same event id and licences, so a
        decision retried after the gateway was unreachable reaches it exactly once.
        """
        moved = self.store.transition(
            application_id,
            target,
            reason,
            issue=self._issue_results if target is CaseState.COMPLETED else None,
        )
        if self.gateway is None:
            return application_pb2.APPLICATION_STATE_UNSPECIFIED
        return await self.gateway.report(moved.case, self.config.region_code, time_left)

    def _issue_results(self, case: Case) -> list[str]:
        return issue_results(
            case,
            self.results.results(case.national_code, case.catalog_version),
            self.holdings,
            forged=self.faults.forge_output_licenses,
            mismatched=self.faults.mismatch_output_licenses,
        )

    def injected(
        self, code: grpc.StatusCode, fault: str, pushback_ms: int | None = None
    ) -> StubError:
        """Counts an injected fault and returns the error to raise for it."""
        self.store.count(Counter.FAULTS_INJECTED)
        log.debug("injecting %s (%s)", code.name, fault)
        return StubError(
            code,
            code.name,
            f"province {self.config.region_code}: {code.name.lower()} (injected fault {fault})",
            metadata={"fault": fault},
            retry_delay=pushback_ms / 1000 if pushback_ms and pushback_ms > 0 else None,
            trailers=() if pushback_ms is None else ((PUSHBACK_TRAILER, str(pushback_ms)),),
        )

    def check_up(self) -> None:
        """Raises the `down` failure when the province is down."""
        if self.faults.down:
            raise self.injected(grpc.StatusCode.UNAVAILABLE, "down")


class RegionServicer(region_pb2_grpc.RegionServiceServicer):
    """RegionService, as the province plays it."""

    def __init__(self, state: StubState) -> None:
        self._state = state

    async def DeliverApplication(
        self, request: region_pb2.DeliverApplicationRequest, context: grpc.aio.ServicerContext
    ) -> region_pb2.DeliverApplicationResponse:
        state = self._state
        state.store.count(Counter.DELIVERIES_RECEIVED)
        # Which deadline the gateway gave this attempt: tests check none outlives its budget.
        remaining = context.time_remaining()
        if remaining is None:
            state.store.count(Counter.CALLS_WITHOUT_DEADLINE)
        else:
            state.store.raise_to(Counter.LONGEST_DEADLINE_MS, math.ceil(remaining * 1000))
        plan = decide(state.faults, state.rng)
        if plan.down:
            raise state.injected(grpc.StatusCode.UNAVAILABLE, "down")
        if Break.IGNORE_DEADLINE in state.breaks:
            # The work goes on in a task of its own when the caller gives up or its deadline
            # passes, and records the case however late.
            return await asyncio.shield(state.spawn(self._deliver(request, plan, None)))
        return await self._deliver(request, plan, context)

    async def _deliver(
        self,
        request: region_pb2.DeliverApplicationRequest,
        plan: FaultPlan,
        context: grpc.aio.ServicerContext | None,
    ) -> region_pb2.DeliverApplicationResponse:
        """The delivery after its fault plan is known; `context` None: deadline ignored."""
        state = self._state
        if plan.latency_seconds:
            await asyncio.sleep(plan.latency_seconds)
        if plan.hang:
            state.store.count(Counter.FAULTS_INJECTED)
            try:
                await asyncio.Event().wait()  # until the caller gives up and grpc cancels us
            except asyncio.CancelledError:
                state.store.count(Counter.HUNG_CALLS_CANCELLED)
                raise
        if plan.outcome is Outcome.FAIL_BEFORE:
            raise state.injected(grpc.StatusCode.UNAVAILABLE, "unavailable", plan.pushback_ms)
        if plan.outcome is Outcome.RESOURCE_EXHAUSTED:
            raise state.injected(grpc.StatusCode.RESOURCE_EXHAUSTED, "resource_exhausted")
        application = self._validated(request)
        digest = "" if Break.ACCEPT_CHANGED_REPLAY in state.breaks else _content_digest(application)
        if context is not None:
            _refuse_if_too_late(context)  # nothing awaits between this and the commit
        if Break.RACY_DUPLICATES in state.breaks:
            delivery = await self._record_racily(application, digest)
        else:
            delivery = self._record(application, application.application_id, digest)
        if not delivery.duplicate:
            state.decider.schedule(
                application.application_id,
                state.decisions.for_matter(application.national_matter_code),
            )
        if plan.outcome is Outcome.COMMIT_THEN_DROP:
            raise state.injected(grpc.StatusCode.UNAVAILABLE, "commit_then_drop")
        return region_pb2.DeliverApplicationResponse(
            receipt_id=delivery.receipt_id,
            duplicate=delivery.duplicate and Break.REPLAY_NOT_DUPLICATE not in state.breaks,
            receive_time=_timestamp(delivery.receive_time),
        )

    def _record(
        self, application: application_pb2.Application, case_id: str, digest: str
    ) -> Delivery:
        """Records the case of `application` under `case_id` (its application id, but for the
        second case the `racy-duplicates` break makes)."""
        return self._state.store.record_delivery(
            case_id,
            application.target_local_matter_code,
            national_code=application.national_matter_code,
            catalog_version=application.catalog_version,
            holder_id_type=application.applicant.id_type,
            holder_id_number=application.applicant.id_number,
            content_digest=digest,
        )

    async def _record_racily(
        self, application: application_pb2.Application, digest: str
    ) -> Delivery:
        """The `racy-duplicates` break: look, pause, then create, as a province whose lookup
        and insert are not one step does."""
        seen = self._state.store.get(application.application_id)
        await asyncio.sleep(RACE_WINDOW)
        delivery = self._record(application, application.application_id, digest)
        if seen is None and delivery.duplicate:
            # Another delivery of the id slipped in during the pause: this one, having found
            # nothing, makes a second case with a receipt of its own.
            return self._record(application, str(uuid.uuid4()), digest)
        return delivery

    def _validated(
        self, request: region_pb2.DeliverApplicationRequest
    ) -> application_pb2.Application:
        state = self._state
        region_code = state.config.region_code
        application = request.application
        violations: list[FieldViolation] = []
        if not request.HasField("application"):
            violations.append(FieldViolation("application", "is required", "REQUIRED"))
        else:
            if not _is_canonical_uuid(application.application_id):
                violations.append(
                    FieldViolation(
                        "application.application_id",
                        "must be a UUID in canonical form",
                        "NOT_A_UUID",
                    )
                )
            if application.target_region != region_code:
                violations.append(
                    FieldViolation(
                        "application.target_region",
                        f"this is province {region_code}",
                        "WRONG_REGION",
                    )
                )
            if not application.target_local_matter_code:
                violations.append(
                    FieldViolation(
                        "application.target_local_matter_code", "is required", "REQUIRED"
                    )
                )
        if request.attempt < 1:
            violations.append(FieldViolation("attempt", "must be 1 or more", "OUT_OF_RANGE"))
        if violations:
            if Break.INTERNAL_ON_MALFORMED in state.breaks:
                raise RuntimeError("the delivery could not be read")  # INTERNAL, by the interceptor
            raise InvalidRequest("invalid delivery", field_violations=violations)
        code = application.target_local_matter_code
        now = state.clock()
        if (
            not state.catalog.is_live(code, now)
            and state.store.get(application.application_id) is None
        ):
            state.store.count(Counter.UNKNOWN_MATTER_REFUSED)
            retired = state.catalog.is_retired(code, now)
            raise LocalCodeNotFound(
                f"province {region_code} {'no longer handles' if retired else 'has no'} "
                f"matter with local code {code!r}",
                metadata={"region_code": region_code, "retired": str(retired).lower()},
            )
        return application

    async def GetApplicationStatus(
        self, request: region_pb2.GetApplicationStatusRequest, context: grpc.aio.ServicerContext
    ) -> region_pb2.GetApplicationStatusResponse:
        self._state.check_up()
        _require_uuid(request.application_id, "application_id")
        breaks = self._state.breaks
        case = self._state.store.get(request.application_id)
        if case is None:
            if Break.UNKNOWN_STATUS_OK in breaks:
                return region_pb2.GetApplicationStatusResponse()
            raise ApplicationNotFound(f"no case for application {request.application_id}")
        return region_pb2.GetApplicationStatusResponse(
            state=_WIRE_STATE[case.state],
            receipt_id="" if Break.STATUS_WITHOUT_RECEIPT in breaks else case.receipt_id,
            reason=case.reason,
            update_time=_timestamp(case.update_time),
        )

    async def WithdrawApplication(
        self, request: region_pb2.WithdrawApplicationRequest, context: grpc.aio.ServicerContext
    ) -> region_pb2.WithdrawApplicationResponse:
        state = self._state
        state.check_up()
        fields.raise_if_any(
            "invalid withdrawal",
            _uuid_violation(request.application_id, "application_id"),
            fields.text(request.reason, "reason", MAX_REASON_LENGTH, printable=False),
        )
        if Break.WITHDRAW_NOOP in state.breaks:
            return region_pb2.WithdrawApplicationResponse(withdraw_time=_timestamp(utc_now()))
        try:
            withdrawn = state.store.transition(
                request.application_id, CaseState.WITHDRAWN, request.reason
            )
        except InvalidStateTransition as e:  # only an undecided case may be withdrawn
            decided = _WIRE_STATE[CaseState(e.metadata["from"])]
            raise AlreadyDecided(
                f"province {state.config.region_code} has decided the case; it can no longer"
                " be withdrawn",
                metadata={"state": application_pb2.ApplicationState.Name(decided)},
            ) from None
        return region_pb2.WithdrawApplicationResponse(
            withdraw_time=_timestamp(withdrawn.case.update_time)
        )

    async def FetchLicense(
        self, request: region_pb2.FetchLicenseRequest, context: grpc.aio.ServicerContext
    ) -> region_pb2.FetchLicenseResponse:
        state = self._state
        state.check_up()
        if Break.FETCH_INTERNAL_ON_MALFORMED in state.breaks and not request.license_type_code:
            await context.abort(grpc.StatusCode.INTERNAL, "unexpected error")
        fields.raise_if_any(
            "invalid licence fetch",
            *_holding_violations(
                request.license_type_code, request.holder_id_type, request.holder_id_number
            ),
            fields.matching(
                request.bundle,
                "bundle",
                _BUNDLE_NAME,
                "bundles/{bundle_id}, the id a UUID",
                len("bundles/") + 36,
                required=True,
                reason="BAD_NAME",
            ),
            fields.matching(
                request.application,
                "application",
                _APPLICATION_NAME,
                "applications/{application_id}, the id a UUID",
                len("applications/") + 36,
                required=True,
                reason="BAD_NAME",
            ),
        )
        holder_id_type = _HOLDER_ID_TYPES[request.holder_id_type]
        found = state.holdings.fetch(
            request.license_type_code, holder_id_type, request.holder_id_number
        )
        if found is None:
            state.store.count(Counter.LICENSE_FETCHES_NOT_FOUND)
            raise LicenseNotFound(
                f"province {state.config.region_code} holds no valid licence of type"
                f" {request.license_type_code} for the holder",
                metadata={
                    "region_code": state.config.region_code,
                    "license_type_code": request.license_type_code,
                },
            )
        state.store.count(Counter.LICENSES_FETCHED)
        return region_pb2.FetchLicenseResponse(license_token=found.token)

    async def GetLicenseKeys(
        self, request: region_pb2.GetLicenseKeysRequest, context: grpc.aio.ServicerContext
    ) -> region_pb2.GetLicenseKeysResponse:
        self._state.check_up()
        jwks = self._state.issuer.jwks()
        leaked = self._state.leaked_jwk
        if leaked is not None:
            document = json.loads(jwks)
            document["keys"].append(leaked)
            jwks = json.dumps(document, separators=(",", ":"))
        return region_pb2.GetLicenseKeysResponse(
            jwks_json=jwks, max_age_seconds=LICENSE_KEYS_MAX_AGE
        )

    async def GetLicenseStatusList(
        self, request: region_pb2.GetLicenseStatusListRequest, context: grpc.aio.ServicerContext
    ) -> region_pb2.GetLicenseStatusListResponse:
        self._state.check_up()
        return region_pb2.GetLicenseStatusListResponse(
            status_list_token=self._status_list_token(), max_age_seconds=STATUS_LIST_TTL
        )

    def _status_list_token(self) -> str:
        state = self._state
        if state.foreign_issuer is None and Break.STATUS_LIST_UNCOMPRESSED not in state.breaks:
            return state.issuer.status_list_token(STATUS_LIST_TTL)
        claims = state.issuer.status_list_claims(STATUS_LIST_TTL)
        if Break.STATUS_LIST_UNCOMPRESSED in state.breaks:
            body = claims["status_list"]
            raw = decode_status_list(body["bits"], body["lst"], max_bytes=1 << 20).data
            body["lst"] = _b64url(raw)
        signer = state.foreign_issuer or state.issuer
        return signer.sign(claims, token_type=STATUS_LIST_TOKEN_TYPE)


class AdminServicer(admin_pb2_grpc.RegionAdminServiceServicer):
    """RegionAdminService: faults, counters, licences and case decisions, for tests and demos."""

    def __init__(self, state: StubState) -> None:
        self._state = state

    async def SetFaults(
        self, request: admin_pb2.SetFaultsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.SetFaultsResponse:
        if not request.HasField("faults"):
            raise InvalidRequest(
                "faults is required",
                field_violations=[
                    FieldViolation("faults", "is required (empty = a healthy stub)", "REQUIRED")
                ],
            )
        try:
            faults = Faults.from_proto(request.faults)
        except FaultsInvalid as e:
            raise InvalidRequest(
                "invalid fault settings",
                field_violations=[
                    FieldViolation(f"faults.{v.field}", v.description, v.reason)
                    for v in e.violations
                ],
            ) from None
        self._state.faults = faults
        if request.seed:
            self._state.rng.seed(request.seed)
        log.info("faults now %s (seed %s)", faults, request.seed or "kept")
        return admin_pb2.SetFaultsResponse(faults=faults.to_proto())

    async def GetCounters(
        self, request: admin_pb2.GetCountersRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.GetCountersResponse:
        counters = self._state.store.counters()
        return admin_pb2.GetCountersResponse(
            deliveries_received=counters.deliveries_received,
            cases_created=counters.cases_created,
            duplicates_suppressed=counters.duplicates_suppressed,
            faults_injected=counters.faults_injected,
            cases_by_matter=counters.cases_by_matter,
            unknown_matter_refused=counters.unknown_matter_refused,
            hung_calls_cancelled=counters.hung_calls_cancelled,
            longest_deadline_ms=counters.longest_deadline_ms,
            calls_without_deadline=counters.calls_without_deadline,
            licenses_fetched=counters.licenses_fetched,
            license_fetches_not_found=counters.license_fetches_not_found,
            cases_withdrawn=counters.cases_withdrawn,
        )

    async def IssueLicense(
        self, request: admin_pb2.IssueLicenseRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.IssueLicenseResponse:
        issued = self._state.holdings.issue(
            request.license_type_code,
            request.license_number,
            holder_id_type=_HOLDER_ID_TYPES.get(request.holder_id_type, ""),  # "": BAD_ID_TYPE
            holder_id_number=request.holder_id_number,
            issuing_agency_code=request.issuing_agency_code or None,
            valid_days=request.valid_days or DEFAULT_VALID_DAYS,
            not_before_offset=request.not_before_offset_seconds,
        )
        return admin_pb2.IssueLicenseResponse(
            token=issued.token,
            identifier=issued.identifier,
            key_id=issued.key_id,
            token_id=issued.token_id,
            status_index=issued.status_index,
        )

    async def RotateLicenseKeys(
        self, request: admin_pb2.RotateLicenseKeysRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.RotateLicenseKeysResponse:
        algorithm = _ALGORITHMS.get(request.algorithm)
        issuer = self._state.issuer
        if algorithm is None:
            if not request.retire_key_id:
                raise InvalidRequest(
                    "algorithm is required unless the call only retires a key",
                    field_violations=[FieldViolation("algorithm", "is required", "REQUIRED")],
                )
            issuer.retire(request.retire_key_id)
            log.info("licence key %s retired", request.retire_key_id)
            return admin_pb2.RotateLicenseKeysResponse(
                key_ids=issuer.key_ids, signing_key_id=issuer.key_id
            )
        delay = (
            request.activation_delay.ToTimedelta().total_seconds()
            if request.HasField("activation_delay")
            else float(LICENSE_KEYS_MAX_AGE)
        )
        key_id = issuer.rotate(
            algorithm, retire_kid=request.retire_key_id or None, activation_delay=delay
        )
        pending = issuer.pending_key
        activate_time = pending[1] if pending is not None and pending[0] == key_id else None
        log.info(
            "licence key %s (%s) published, signing from %s",
            key_id,
            algorithm,
            activate_time or "now",
        )
        return admin_pb2.RotateLicenseKeysResponse(
            key_id=key_id,
            key_ids=issuer.key_ids,
            activate_time=_timestamp(activate_time or self._state.clock()),
            signing_key_id=issuer.key_id,
        )

    async def SetLicenseStatus(
        self, request: admin_pb2.SetLicenseStatusRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.SetLicenseStatusResponse:
        status = _LICENSE_STATUSES.get(request.status)
        if status is None:
            raise InvalidRequest(
                "status is required",
                field_violations=[FieldViolation("status", "is required", "REQUIRED")],
            )
        target = request.WhichOneof("target")
        index = self._state.issuer.set_status(
            status,
            token_id=request.token_id if target == "token_id" else None,
            status_index=request.status_index if target == "status_index" else None,
        )
        return admin_pb2.SetLicenseStatusResponse(status_index=index, status=request.status)

    async def DecideCase(
        self, request: admin_pb2.DecideCaseRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.DecideCaseResponse:
        state = self._state
        violations: list[FieldViolation] = []
        if not _is_canonical_uuid(request.application_id):
            violations.append(
                FieldViolation("application_id", "must be a UUID in canonical form", "NOT_A_UUID")
            )
        target = _DECIDABLE.get(request.state)
        if target is None:
            violations.append(
                FieldViolation("state", "must be ACCEPTED, REJECTED or COMPLETED", "OUT_OF_RANGE")
            )
        if len(request.reason) > MAX_REASON_LENGTH:
            violations.append(
                FieldViolation("reason", f"at most {MAX_REASON_LENGTH} characters", "TOO_LONG")
            )
        if violations or target is None:
            raise InvalidRequest("invalid decision", field_violations=violations)
        gateway_state = await state.decide(
            request.application_id, target, request.reason, context.time_remaining()
        )
        return admin_pb2.DecideCaseResponse(gateway_state=gateway_state)

    async def SetDecisions(
        self, request: admin_pb2.SetDecisionsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.SetDecisionsResponse:
        try:
            decisions = Decisions.from_proto(request.rules)
        except DecisionsInvalid as e:
            raise InvalidRequest("invalid decision rules", field_violations=e.violations) from None
        self._state.decisions = decisions
        log.info("decision rules now %s", dict(decisions.rules) or "manual")
        return admin_pb2.SetDecisionsResponse(rules=decisions.to_proto())

    async def SetLicenseHolding(
        self, request: admin_pb2.SetLicenseHoldingRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.SetLicenseHoldingResponse:
        fields.raise_if_any(
            "invalid licence holding",
            *_holding_violations(
                request.license_type_code, request.holder_id_type, request.holder_id_number
            ),
        )
        self._state.holdings.set_held(
            request.license_type_code,
            _HOLDER_ID_TYPES[request.holder_id_type],
            request.holder_id_number,
            request.held,
        )
        return admin_pb2.SetLicenseHoldingResponse()


@dataclass(eq=False)
class RunningStub:
    """A stub serving in the current event loop, with a client channel to it."""

    config: StubConfig
    """The configuration it runs with."""
    address: str
    """`host:port` it listens on."""
    port: int
    """The bound port."""
    channel: grpc.aio.Channel
    """A channel to the stub, closed when the stub stops."""
    region: region_pb2_grpc.RegionServiceAsyncStub
    """RegionService client on `channel`."""
    admin: admin_pb2_grpc.RegionAdminServiceAsyncStub
    """RegionAdminService client on `channel`."""
    decider: Decider
    """The automatic decisions in progress (`Decider.pending`), for tests to wait on."""

    async def set_faults(self, faults: Faults | None = None, *, seed: int = 0) -> Faults:
        """Replaces the fault settings (healthy when None); returns those in force."""
        response = await self.admin.SetFaults(
            admin_pb2.SetFaultsRequest(faults=(faults or Faults()).to_proto(), seed=seed)
        )
        return Faults.from_proto(response.faults)

    async def counters(self) -> Counters:
        """The stub's counters."""
        r = await self.admin.GetCounters(admin_pb2.GetCountersRequest())
        return Counters(
            deliveries_received=r.deliveries_received,
            cases_created=r.cases_created,
            duplicates_suppressed=r.duplicates_suppressed,
            faults_injected=r.faults_injected,
            unknown_matter_refused=r.unknown_matter_refused,
            cases_by_matter=dict(r.cases_by_matter),
            hung_calls_cancelled=r.hung_calls_cancelled,
            longest_deadline_ms=r.longest_deadline_ms,
            calls_without_deadline=r.calls_without_deadline,
            licenses_fetched=r.licenses_fetched,
            license_fetches_not_found=r.license_fetches_not_found,
            cases_withdrawn=r.cases_withdrawn,
        )


def _private_jwk() -> dict[str, str]:
    """A signing key's JWK with its private member `d`: what no province may publish."""
    key = Ed25519PrivateKey.generate()
    public = {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64url(key.public_key().public_bytes_raw()),
    }
    kid = jwk_thumbprint(public)
    return {**public, "d": _b64url(key.private_bytes_raw()), "kid": kid, "alg": "EdDSA"}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _refuse_if_too_late(context: grpc.aio.ServicerContext) -> None:
    """Raises DEADLINE_EXCEEDED when less than `RECORD_MARGIN` of the call's deadline is left."""
    remaining = context.time_remaining()
    if remaining is not None and remaining < RECORD_MARGIN:
        raise StubError(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "DEADLINE_EXCEEDED",
            f"{max(remaining, 0) * 1000:.1f} ms of the delivery's deadline were left: too late "
            "to record its case",
        )


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@asynccontextmanager
async def running_stub(
    config: StubConfig,
    *,
    clock: Callable[[], datetime] = utc_now,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[RunningStub]:
    """Starts a stub in the running loop; on exit drains it (`config.grace`) and closes all.

    With `config.tracing` its spans go to `tracer_provider`, by default the process's OTLP
    exporter; without it, nothing of tracing is installed.

    Raises `catalog.CatalogError` for an unusable implementation list or national catalog,
    `TrustConfigError` for an unusable trust list, `StoreUnavailable` for an unusable data
    directory and `OSError` when the address cannot be bound.
    """
    async with AsyncExitStack() as stack:
        implementations = catalog.load(config.implementation_list, config.region_code)
        results = catalog.load_results(config.catalog_dir)
        types = issued_types(config.license_trust, config.region_code, results.license_types)
        log.info(
            "region %s: %d local codes from %s (catalog %s)",
            config.region_code,
            len(implementations.entries),
            config.implementation_list,
            implementations.catalog_version,
        )
        store = CaseStore.open(config.cases_path, region_code=config.region_code, clock=clock)
        stack.callback(store.close)
        gateway = None
        client_credentials = (
            None
            if config.tls is None
            else channel_credentials(
                config.tls.ca_cert, config.tls.client_cert, config.tls.client_key
            )
        )
        tracing = None
        if config.tracing:
            tracing = tracer_provider or process_provider(f"tongban-region-{config.region_code}")
        if config.gateway_address:
            gateway = GatewayReporter(
                config.gateway_address,
                client_credentials,
                () if tracing is None else client_interceptors(tracing),
                send_event_ids=Break.REPORT_WITHOUT_EVENT_ID not in config.breaks,
            )
            stack.push_async_callback(gateway.close)
        issuer = LicenseIssuer(config.region_code, algorithm=config.license_algorithm, clock=clock)
        state = StubState(
            config=config,
            store=store,
            catalog=implementations,
            results=results,
            issuer=issuer,
            holdings=Holdings(issuer, types, clock),
            gateway=gateway,
            faults=config.faults,
            decisions=config.decisions,
            rng=random.Random(config.seed),
            clock=clock,
            foreign_issuer=LicenseIssuer(
                config.region_code, algorithm=config.license_algorithm, clock=clock
            )
            if Break.STATUS_LIST_FOREIGN_KEY in config.breaks
            else None,
            leaked_jwk=_private_jwk() if Break.PRIVATE_JWK in config.breaks else None,
        )
        stack.push_async_callback(state.decider.close)
        stack.push_async_callback(state.stop_tasks)
        for case in store.undecided():
            state.decider.schedule(
                case.application_id, config.decisions.for_matter(case.national_code)
            )
        interceptors: list[grpc.aio.ServerInterceptor] = [
            *([] if tracing is None else [ServerTracing(tracing)]),
            ErrorInterceptor(),
        ]
        if config.tls is not None and Break.ADMIT_ANY_CLIENT not in config.breaks:
            interceptors.append(GatewayOnly())
        # No SO_REUSEPORT (gRPC's default on Linux): a second stub on a taken port must fail,
        # not take half of the calls.
        server = grpc.aio.server(interceptors=interceptors, options=[("grpc.so_reuseport", 0)])
        region_pb2_grpc.add_RegionServiceServicer_to_server(RegionServicer(state), server)
        admin_pb2_grpc.add_RegionAdminServiceServicer_to_server(AdminServicer(state), server)
        health = serving.add_health_and_reflection(server, SERVICE_NAMES)
        try:
            bind = _host_port(config.host, config.port)
            if config.tls is None:
                port = server.add_insecure_port(bind)
            else:
                files = ServerTlsFiles(config.tls.ca_cert, config.tls.cert, config.tls.key)
                port = server.add_secure_port(bind, server_credentials(files))
        except RuntimeError as e:
            raise OSError(f"cannot listen on {_host_port(config.host, config.port)}: {e}") from e
        await server.start()
        # Probes see NOT_SERVING while the server drains; the stub has no balancer to wait for.
        stack.push_async_callback(
            serving.drain, server, health, SERVICE_NAMES, probe_interval=0, grace=config.grace
        )
        await serving.set_serving(health, SERVICE_NAMES, serving=True)
        address = _host_port(config.host, port)
        channel = (
            grpc.aio.insecure_channel(address)
            if client_credentials is None
            else grpc.aio.secure_channel(address, client_credentials)
        )
        stack.push_async_callback(channel.close)
        yield RunningStub(
            config=config,
            address=address,
            port=port,
            channel=channel,
            region=cast(
                "region_pb2_grpc.RegionServiceAsyncStub", region_pb2_grpc.RegionServiceStub(channel)
            ),
            admin=cast(
                "admin_pb2_grpc.RegionAdminServiceAsyncStub",
                admin_pb2_grpc.RegionAdminServiceStub(channel),
            ),
            decider=state.decider,
        )


async def serve(
    config: StubConfig,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serves until `stop` is set (by default: until SIGINT or SIGTERM), then drains.

    Announces `{"event": "listening", "service": "region-stub", "region", "address"}` on stdout
    once bound, then sets `ready`.
    """
    if stop is None:
        stop = serving.stop_event_on_signals()
    async with running_stub(config) as stub:
        serving.announce(
            "listening", service="region-stub", region=config.region_code, address=stub.address
        )
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("stopping region stub %s", config.region_code)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m region_stubs` / `tongban region-stub`: runs a stub; returns the exit status."""
    try:
        config = parse_args(sys.argv[1:] if argv is None else argv, os.environ)
    except SystemExit as e:  # argparse's way of saying usage or --help
        return e.code if isinstance(e.code, int) else 2
    except ConfigError as e:
        print(f"region-stub: {e}", file=sys.stderr)
        return 2
    # stdout carries only the announcement; logs go to stderr.
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        asyncio.run(serve(config))
    except (catalog.CatalogError, TrustConfigError, TongbanError, OSError) as e:
        print(f"region-stub {config.region_code}: cannot start: {e}", file=sys.stderr)
        return 1
    return 0
