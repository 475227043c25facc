"""The gateway's use of the audit log: what is recorded, from where, without blocking a call.

Recorded: every catalog publication, implementation-list publication, submission, delivery,
status change and denial, each heard as a domain event (`Auditor.listen`). A call only queues
its event (`AuditLog.submit`); the log's thread hashes, chains and writes queued events in call
order and in batches, and closing writes what is queued, so a call never waits for the audit
file and no record is lost on a clean stop. Personal data goes only into
`AuditEvent.personal`, which the log writes as keyed digests.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path

from gateway.api.v1 import application_pb2, bundle_pb2
from gateway.events import (
    AccessDenied,
    ApplicationChanged,
    ApplicationSubmitted,
    BundleChanged,
    BundleRated,
    BundleSubmitted,
    CatalogPublished,
    EventBus,
    FlowRefused,
)
from gateway.observability.audit_log import AuditEvent, AuditLog, FsyncPolicy
from gateway.security.guard import current_caller
from gateway.security.identity import Role, identity_uri, is_valid_name
from gateway.security.pki import write_atomically

log = logging.getLogger(__name__)

AUDIT_LINGER = 0.01
"""Seconds the audit thread lets events gather before writing them: a call never waits for
it, and one write and fsync per batch instead of per record is most of the audit's cost."""

GATEWAY_ACTOR = "spiffe://tongban/gateway"
"""The actor of changes the gateway makes on its own (deliveries, queueing, expiry)."""


def load_or_create_key(path: Path) -> bytes:
    """The personal-data digest key at `path`, created (32 random bytes, 0600) if missing."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        write_atomically(path, key, mode=0o600)
    return key


class Auditor:
    """Hands audit events to the log's own thread, in the order the calls cause them."""

    def __init__(self, audit_log: AuditLog | None) -> None:
        self.log = audit_log

    @classmethod
    def open(cls, path: Path, key_file: Path, fsync: FsyncPolicy) -> Auditor:
        """Opens (or continues) the log at `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        key = load_or_create_key(key_file)
        return cls(AuditLog(path, key, fsync=fsync, on_lost=_report_lost, linger=AUDIT_LINGER))

    def record(self, event: AuditEvent) -> None:
        """Queues `event` for appending; never raises into the call that caused it."""
        if self.log is not None:
            self.log.submit(event)

    async def flush(self) -> None:
        """Waits until every record queued so far is written."""
        if self.log is not None:
            await asyncio.wrap_future(self.log.barrier())

    async def aclose(self) -> None:
        """Writes what is queued and closes the log."""
        if self.log is not None:
            await self.log.aclose()

    # -- What the gateway records ----------------------------------------------------------

    def listen(self, bus: EventBus) -> None:
        """Records what the domain emits."""
        bus.subscribe(ApplicationSubmitted, lambda e: self.submission(e.application))
        bus.subscribe(ApplicationChanged, lambda e: self.state_change(e.application))
        bus.subscribe(CatalogPublished, self._published)
        bus.subscribe(AccessDenied, lambda e: self.denial(e.actor, e.method, e.reason))
        bus.subscribe(BundleSubmitted, lambda e: self.bundle_submission(e.bundle))
        bus.subscribe(BundleChanged, self._bundle_changed)
        bus.subscribe(FlowRefused, self._flow_refused)
        bus.subscribe(BundleRated, self._rated)

    def bundle_submission(self, bundle: bundle_pb2.Bundle) -> None:
        """A new bundle and its members were accepted and stored (one record; each member's
        own submission record follows)."""
        self.record(
            AuditEvent(
                actor=current_caller().actor,
                action="BundleService.SubmitBundle",
                outcome="OK",
                application_id=bundle.bundle_id,
                request_id=bundle.request_id,
                region_codes=(bundle.origin_region, *sorted({r.region_code for r in bundle.roles})),
                catalog_version=bundle.catalog_version,
                personal={
                    "applicant_id": bundle.applicant.id_number,
                    "applicant_name": bundle.applicant.display_name,
                },
            )
        )

    def _bundle_changed(self, event: BundleChanged) -> None:
        bundle = event.bundle
        self.record(
            AuditEvent(
                actor=GATEWAY_ACTOR,
                action="bundle.state_changed",
                outcome=bundle_pb2.BundleState.Name(bundle.state),
                application_id=bundle.bundle_id,
                request_id=bundle.request_id,
                region_codes=(bundle.origin_region,),
            )
        )

    def _flow_refused(self, event: FlowRefused) -> None:
        """A licence did not flow to a bundle member: outside the consent, or not to be had."""
        self.record(
            AuditEvent(
                actor=current_caller().actor,
                action="bundle.flow_refused",
                outcome=event.reason,
                application_id=event.bundle_id,
                request_id=f"{event.member_id}/{event.material_id}",
            )
        )

    def _rated(self, event: BundleRated) -> None:
        self.record(
            AuditEvent(
                actor=current_caller().actor,
                action="BundleService.RateBundle",
                outcome=str(event.score),
                region_codes=(event.region_code,) if event.region_code else (),
            )
        )

    def _published(self, event: CatalogPublished) -> None:
        if event.activated:
            self.publication(event.action, region_code=event.region_code, version=event.version)

    def submission(self, app: application_pb2.Application) -> None:
        """A new application was accepted and stored."""
        self.record(
            AuditEvent(
                actor=current_caller().actor,
                action="ApplicationService.SubmitApplication",
                outcome="OK",
                application_id=app.application_id,
                request_id=app.request_id,
                region_codes=(app.origin_region, app.target_region),
                catalog_version=app.catalog_version,
                personal={
                    "applicant_id": app.applicant.id_number,
                    "applicant_name": app.applicant.display_name,
                },
            )
        )

    def state_change(self, app: application_pb2.Application) -> None:
        """An application changed state (delivered, queued, failed, reported by a province)."""
        state = application_pb2.ApplicationState.Name(app.state)
        actor = app.events[-1].actor if app.events else ""
        action = (
            "application.delivered"
            if app.state == application_pb2.APPLICATION_STATE_DELIVERED
            else "application.state_changed"
        )
        self.record(
            AuditEvent(
                actor=identity_uri(Role.REGION, actor)
                if is_valid_name(Role.REGION, actor)
                else GATEWAY_ACTOR,
                action=action,
                outcome=state,
                application_id=app.application_id,
                request_id=app.request_id,
                region_codes=(app.origin_region, app.target_region),
            )
        )

    def publication(self, action: str, *, region_code: str = "", version: str = "") -> None:
        """A catalog version or an implementation list was published."""
        self.record(
            AuditEvent(
                actor=current_caller().actor,
                action=action,
                outcome="OK",
                region_codes=(region_code,) if region_code else (),
                catalog_version=version,
            )
        )

    def denial(self, actor: str, method: str, reason: str) -> None:
        """A call was refused by the authorization policy or the deny list."""
        self.record(AuditEvent(actor=actor, action=short_method(method), outcome=reason))


def _report_lost(error: BaseException) -> None:
    log.error("AUDIT RECORD LOST: %s", error)


def short_method(method: str) -> str:
    """`/gateway.api.v1.ApplicationService/SubmitApplication` → `ApplicationService.Submit…`."""
    service, _, name = method.lstrip("/").partition("/")
    return f"{service.rsplit('.', 1)[-1]}.{name}" if name else method
