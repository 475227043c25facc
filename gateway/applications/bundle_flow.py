"""The way of a bundle's members: released in the theme's order with the licences that flow
into them, cancelled when what they wait for fails, withdrawn at the applicant's request.

Invariants:
- A member leaves WAITING once, by one conditional change of its application (still WAITING):
  to RECEIVED, due now and leased to this worker, carrying every consented licence that flows
  into it, each verified like an applicant's (type, holder, signature, status); or to
  CANCELLED, naming the member that stopped it. Two workers advancing one bundle at once
  release each member once.
- A released member is delivered by the outbox like any application (one delivery path): at
  once by this worker, or by any dispatcher once its lease runs out.
- Only flows in the applicant's consent are ever carried. A licence a flow needs that cannot
  be had (not issued by the earlier member, not held by the issuing province, or not valid)
  cancels the member when the material is required; a province that cannot be reached leaves
  the member WAITING, to be tried again.
- Nothing is lost to a crash between a member's end and the release of the members after it:
  a WAITING member is due for a re-check every `recheck` seconds, and the dispatcher hands it
  back here (`recheck`). A member's end is normally acted on at once (`listen`).
- A withdrawal cancels members not delivered yet and asks the provinces of delivered ones to
  withdraw; a province that has decided refuses, and that member goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import grpc

from gateway.api.v1 import application_pb2, bundle_pb2, region_pb2
from gateway.applications import bundle_plan, deadlines, lifecycle
from gateway.applications.bundle_records import BundleRecords
from gateway.applications.outbox import Outbox
from gateway.applications.records import GATEWAY, Held, add_event
from gateway.applications.service import LicenseChecker
from gateway.catalog.model import Theme
from gateway.catalog.registry import CatalogRegistry
from gateway.catalog.resolution import VersionRecord
from gateway.errors import RegionCallError, TongbanError
from gateway.events import NO_EVENTS, ApplicationChanged, EventBus, Events, FlowRefused
from gateway.storage.base import ApplicationRow
from gateway.times import timestamp

log = logging.getLogger(__name__)

RECHECK = 60.0
"""Seconds between the safety-net re-checks of a WAITING member."""
_FETCH_ATTEMPTS = 3
_MAX_STEPS = 32
"""Rounds of one advance at most (a theme has fewer members than this)."""
_TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
    }
)


@dataclass(frozen=True, slots=True)
class _Stop:
    """A flow that cannot be had for a required material: the member is cancelled."""

    reason: str
    stopped_by: str


class _Later(Exception):
    """A province could not be reached for a flow: try the member again later."""


class BundleFlow:
    """Advances bundles: releases, cancels, delivers and withdraws their members."""

    def __init__(
        self,
        bundles: BundleRecords,
        outbox: Outbox,
        registry: CatalogRegistry,
        licenses: LicenseChecker,
        *,
        wall_clock: Callable[[], datetime],
        recheck: float = RECHECK,
        events: Events = NO_EVENTS,
    ) -> None:
        self.bundles = bundles
        self.applications = bundles.applications
        self.outbox = outbox
        self.registry = registry
        self.licenses = licenses
        self.wall_clock = wall_clock
        self.recheck_interval = recheck
        self.events = events
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        """One advance of a bundle at a time in this process: (its lock, how many hold or
        wait for it)."""
        self._tasks: set[asyncio.Task[None]] = set()

    # -- wiring ---------------------------------------------------------------------------

    def listen(self, bus: EventBus) -> None:
        """Acts on a member's end at once: the members after it are released or cancelled."""
        bus.subscribe(ApplicationChanged, self._on_change)
        self.outbox.on_waiting = self.recheck

    def _on_change(self, event: ApplicationChanged) -> None:
        app = event.application
        if app.bundle and lifecycle.is_terminal(app.state):
            self.schedule(app.bundle.removeprefix("bundles/"))

    def schedule(self, bundle_id: str) -> None:
        """Advances the bundle in the background (its members' deliveries included)."""
        task = asyncio.get_running_loop().create_task(self._advance_quietly(bundle_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancels the advances in flight (their members stay due: nothing is lost)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _advance_quietly(self, bundle_id: str) -> None:
        try:
            await self.advance(bundle_id, self.outbox.deadline(None))
        except TongbanError as error:  # the store is away: the re-check will come back
            log.warning("advancing bundle %s failed: %s", bundle_id, error.message)

    async def recheck(self, held: Held) -> None:
        """A WAITING member the dispatcher leased: advance its bundle, then, if it still
        waits, let it be due again in `recheck` seconds."""
        app = held.application
        try:
            await self.advance(app.bundle.removeprefix("bundles/"), self.outbox.deadline(None))
        finally:
            later = self.applications.clock() + self.recheck_interval
            owner = self.outbox.worker_id

            def fn(
                current: application_pb2.Application, row: ApplicationRow
            ) -> ApplicationRow | None:
                if current.state != application_pb2.APPLICATION_STATE_WAITING:
                    return None
                if row.lease_owner != owner:
                    return None
                return self.applications.stored(
                    row, current, next_attempt_time=later, lease_owner="", lease_until=0.0
                )

            await self.applications.change(app.application_id, fn)

    # -- advancing ------------------------------------------------------------------------

    async def advance(self, bundle_id: str, deadline: float) -> bundle_pb2.Bundle:
        """Releases (and delivers until `deadline`) and cancels what the bundle's members'
        states call for; returns the bundle as it is afterwards."""
        lock, users = self._locks.get(bundle_id, (asyncio.Lock(), 0))
        self._locks[bundle_id] = (lock, users + 1)
        try:
            async with lock:
                released: list[Held] = []
                again = False
                # A member cancelled for a licence it could not get stops those after it:
                # another step cancels them at once. Each step ends one member at least.
                for _ in range(_MAX_STEPS):
                    bundle, members, step, more, stopped = await self._step(bundle_id)
                    released += more
                    if not stopped:
                        break
                    again = True
        finally:
            lock, users = self._locks[bundle_id]
            if users == 1:
                del self._locks[bundle_id]
            else:
                self._locks[bundle_id] = (lock, users - 1)
        outcomes = await asyncio.gather(
            *(self.outbox.deliver_claimed(h, deadline) for h in released),
            return_exceptions=True,
        )
        if again or step.cancel or len(released) < len(step.release):
            return await self.refresh(bundle_id)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                return await self.refresh(bundle_id)
            members[outcome.bundle_member_id] = outcome
        # Nothing else was changed here since the reads: each released member is as its
        # delivery left it stored.
        return await self._answer(bundle, members)

    async def refresh(self, bundle_id: str) -> bundle_pb2.Bundle:
        """The bundle as answered now, its derived state remembered."""
        bundle = await self.bundles.get(bundle_id)
        return await self._answer(bundle, await self.bundles.members(bundle))

    async def _answer(
        self, bundle: bundle_pb2.Bundle, members: dict[str, application_pb2.Application]
    ) -> bundle_pb2.Bundle:
        """The bundle as answered from `bundle` and `members` as read, its derived state
        remembered."""
        view = self.bundles.view(bundle, members, self.wall_clock())
        await self.bundles.remember(bundle, view)
        return view

    async def _step(
        self, bundle_id: str
    ) -> tuple[
        bundle_pb2.Bundle,
        dict[str, application_pb2.Application],
        bundle_plan.Step,
        list[Held],
        bool,
    ]:
        """One round: the bundle and its members as read, what they called for, the members
        released (leased to this worker, to be delivered), and whether a release was stopped
        by its flows."""
        bundle = await self.bundles.get(bundle_id)
        members = await self.bundles.members(bundle)
        record = self._version(bundle)
        theme = record.document.themes[bundle.theme_code]
        states = {m: app.state for m, app in members.items()}
        step = bundle_plan.next_step(theme, states, withdrawn=bundle.HasField("withdraw_time"))
        for cancel in step.cancel:
            await self._cancel(bundle, members[cancel.member_id], cancel.reason, cancel.stopped_by)
        released: list[Held] = []
        stopped = False
        for member_id in step.release:
            held = await self._release(bundle, theme, record, member_id, members)
            if isinstance(held, Held):
                released.append(held)
            stopped = stopped or held is True
        return bundle, members, step, released, stopped

    def _version(self, bundle: bundle_pb2.Bundle) -> VersionRecord:
        return self.registry.snapshot.version(bundle.catalog_version, self.wall_clock())

    async def _cancel(
        self,
        bundle: bundle_pb2.Bundle,
        app: application_pb2.Application,
        reason: str,
        stopped_by: str,
        *,
        states: frozenset[int] = frozenset({application_pb2.APPLICATION_STATE_WAITING}),
    ) -> bool:
        """Cancels a member in one of `states` whose lease is free; whether it did."""
        now = self.applications.clock()
        cancelled = application_pb2.APPLICATION_STATE_CANCELLED

        def fn(current: application_pb2.Application, row: ApplicationRow) -> ApplicationRow | None:
            if current.state not in states or (row.lease_owner and row.lease_until > now):
                return None
            add_event(current, cancelled, reason, GATEWAY, now)
            return self.applications.stored(
                row, current, next_attempt_time=None, lease_owner="", lease_until=0.0
            )

        # The note first: a watcher that sees the member cancelled sees who stopped it too.
        if stopped_by:
            await self._note(bundle, app.bundle_member_id, stopped_by)
        changed = await self.applications.change(app.application_id, fn)
        if changed is None and stopped_by:
            await self._note(bundle, app.bundle_member_id, "")  # it was not cancelled after all
        return changed is not None

    async def _note(self, bundle: bundle_pb2.Bundle, member_id: str, stopped_by: str) -> None:
        """Records (or clears, with "") which member stopped `member_id`."""

        def note(b: bundle_pb2.Bundle) -> bool:
            entry = next(e for e in b.members if e.member_id == member_id)
            if entry.stopped_by_member_id == stopped_by:
                return False
            entry.stopped_by_member_id = stopped_by
            return True

        await self.bundles.change(bundle.bundle_id, note)

    async def _release(
        self,
        bundle: bundle_pb2.Bundle,
        theme: Theme,
        record: VersionRecord,
        member_id: str,
        members: dict[str, application_pb2.Application],
    ) -> Held | bool:
        """The member released and leased to this worker; else whether it was cancelled."""
        app = members[member_id]
        matter = record.document.matters[app.national_matter_code]
        try:
            flowed = await self._flows(bundle, theme, record, member_id, members)
        except _Later:
            return False
        if isinstance(flowed, _Stop):
            return await self._cancel(bundle, app, flowed.reason, flowed.stopped_by)
        now = self.applications.clock()
        due = deadlines.deadline(self.wall_clock(), matter.promised_time_limit)
        lease_until = now + self.outbox.lease_seconds(self.outbox.deadline(None))
        owner = self.outbox.worker_id
        result: list[bytes] = []

        def fn(current: application_pb2.Application, row: ApplicationRow) -> ApplicationRow | None:
            if current.state != application_pb2.APPLICATION_STATE_WAITING:
                return None
            have = {m.material_id for m in current.materials}
            current.materials.extend(m for m in flowed if m.material_id not in have)
            current.due_time.CopyFrom(timestamp(due.due.timestamp()))
            current.due_time_provisional = due.provisional
            add_event(current, application_pb2.APPLICATION_STATE_RECEIVED, "RELEASED", GATEWAY, now)
            new = self.applications.stored(
                row,
                current,
                next_attempt_time=now,
                expire_time=now + self.applications.queue_expiry,
                lease_owner=owner,
                lease_until=lease_until,
            )
            result.append(new.body)
            return new

        changed = await self.applications.change(app.application_id, fn)
        if changed is None:
            return False
        return Held(changed, result[0])

    async def _flows(
        self,
        bundle: bundle_pb2.Bundle,
        theme: Theme,
        record: VersionRecord,
        member_id: str,
        members: dict[str, application_pb2.Application],
    ) -> list[application_pb2.MaterialRecord] | _Stop:
        """The verified licences that flow into a member, or why it cannot run."""
        app = members[member_id]
        matter = record.document.matters[app.national_matter_code]
        consented = {(f.member_id, f.material_id) for f in bundle.consent.flows}
        roles = {r.role: r.region_code for r in bundle.roles}
        supplied = {m.material_id for m in app.materials}
        out: list[application_pb2.MaterialRecord] = []
        for flow in theme.flows:
            if flow.to.member != member_id or flow.to.material_id in supplied:
                continue
            material = matter.material(flow.to.material_id)
            required = material is not None and material.required
            key = (member_id, flow.to.material_id)
            if key not in consented:
                self._refused(bundle, flow.to.member, flow.to.material_id, "FLOW_NOT_CONSENTED")
                if required:
                    return _Stop("FLOW_NOT_CONSENTED", "")
                continue
            if flow.source:
                issued = [
                    lic
                    for lic in members[flow.source].issued_licenses
                    if lic.license_type_code == flow.license_type_code
                ]
                token = issued[-1].license_token if issued else ""
                origin, missing = f"member:{flow.source}", "FLOW_LICENSE_NOT_ISSUED"
            else:
                region = roles[flow.fetch_role]
                token = await self._fetch(bundle, app, region, flow.license_type_code)
                origin, missing = f"fetch:{region}", "FLOW_LICENSE_NOT_FOUND"
            stopper = flow.source
            if not token:
                self._refused(bundle, member_id, flow.to.material_id, missing)
                if required:
                    return _Stop(missing, stopper)
                continue
            verification = await self.licenses.verify(
                token,
                expected_type_code=flow.license_type_code,
                expected_holder_id=bundle.applicant.id_number,
            )
            licence = verification.license
            if verification.verdict.name != "VALID" or licence is None:
                self._refused(bundle, member_id, flow.to.material_id, "FLOW_LICENSE_INVALID")
                if required:
                    return _Stop("FLOW_LICENSE_INVALID", stopper)
                continue
            out.append(
                application_pb2.MaterialRecord(
                    material_id=flow.to.material_id,
                    waived=True,
                    license_identifier=licence.identifier,
                    license_type_code=licence.type_code,
                    license_status_checked=verification.status_checked,
                    license_token=token,
                    flowed_from=origin,
                )
            )
            supplied.add(flow.to.material_id)
        return out

    async def _fetch(
        self,
        bundle: bundle_pb2.Bundle,
        app: application_pb2.Application,
        region: str,
        type_code: str,
    ) -> str:
        """The licence fetched from its issuing province; empty when it holds none."""
        request = region_pb2.FetchLicenseRequest(
            license_type_code=type_code,
            holder_id_type=bundle.applicant.id_type,
            holder_id_number=bundle.applicant.id_number,
            bundle=bundle.name,
            application=app.name,
        )
        client = self.outbox.deliverer.client
        timeout = self.outbox.config.per_attempt_timeout
        for attempt in range(_FETCH_ATTEMPTS):
            try:
                response = await client.fetch_license(region, request, timeout)
            except RegionCallError as error:
                if error.code not in _TRANSIENT:
                    return ""  # NOT_FOUND, or a refusal: the province holds none for us
                if attempt + 1 < _FETCH_ATTEMPTS:
                    await asyncio.sleep(0.05 * 2**attempt)
                    continue
                raise _Later from error
            return response.license_token
        raise _Later

    def _refused(
        self, bundle: bundle_pb2.Bundle, member_id: str, material_id: str, reason: str
    ) -> None:
        self.events.emit(FlowRefused(bundle.bundle_id, member_id, material_id, reason))

    # -- withdrawal -------------------------------------------------------------------------

    async def withdraw(self, bundle_id: str, reason: str, deadline: float) -> bundle_pb2.Bundle:
        """Withdraws a bundle: marks it, cancels its undelivered members and asks the provinces
        of delivered ones to withdraw theirs, until `deadline` (on the outbox's clock)."""
        now = self.wall_clock()

        def mark(bundle: bundle_pb2.Bundle) -> bool:
            if bundle.HasField("withdraw_time"):
                return False
            bundle.withdraw_time.CopyFrom(timestamp(now.timestamp()))
            return True

        bundle = await self.bundles.change(bundle_id, mark)
        undelivered = frozenset(
            {application_pb2.APPLICATION_STATE_WAITING, *lifecycle.AWAITING_DELIVERY}
        )
        for entry in bundle.members:
            app_id = entry.application.removeprefix("applications/")
            while True:
                app = await self.applications.get(app_id)
                if app.state in undelivered:
                    if await self._cancel(
                        bundle, app, "WITHDRAWN_BY_APPLICANT", "", states=undelivered
                    ):
                        break
                    if self.outbox.clock() >= deadline:
                        break  # a delivery holds it: the member goes on, the bundle says so
                    await asyncio.sleep(0.1)
                    continue
                if app.state in lifecycle.WITHDRAWABLE:
                    await self._withdraw_delivered(app, reason, deadline)
                break
        return await self.refresh(bundle_id)

    async def _withdraw_delivered(
        self, app: application_pb2.Application, reason: str, deadline: float
    ) -> None:
        client = self.outbox.deliverer.client
        request = region_pb2.WithdrawApplicationRequest(
            application_id=app.application_id, reason=reason
        )
        timeout = max(
            0.05, min(self.outbox.config.per_attempt_timeout, deadline - self.outbox.clock())
        )
        try:
            await client.withdraw(app.target_region, request, timeout)
        except RegionCallError as error:
            log.info(
                "province %s did not withdraw %s: %s",
                app.target_region,
                app.application_id,
                error.reason or error.code,
            )
            return
        now = self.applications.clock()
        withdrawn = application_pb2.APPLICATION_STATE_WITHDRAWN

        def fn(current: application_pb2.Application, row: ApplicationRow) -> ApplicationRow | None:
            if current.state not in lifecycle.WITHDRAWABLE:
                return None
            add_event(current, withdrawn, "WITHDRAWN_BY_APPLICANT", GATEWAY, now)
            return self.applications.stored(row, current)

        await self.applications.change(app.application_id, fn)
