"""The BundleService servicer: one form, one consent, several provinces (一件事).

Submission order, each step failing before any side effect of the next:
validate the request's shape (pure) → find the theme in the catalog in force → judge the form,
the roles, the materials and the consent against the theme, every problem of one kind in one
`BadRequest` on the bundle's own fields → bind each role to its province and each member to
that province's local code → verify each licence the applicant supplied, once → commit the
bundle and every member in one transaction → deliver the members that wait for nothing, in
parallel within the caller's deadline (fetching first the licences that flow into them from
their issuing provinces) → answer the bundle. A repeated request id answers the first bundle.

Members that wait for others are released by `applications.bundle_flow` when those complete.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime

import grpc

from gateway.api.v1 import application_pb2, bundle_pb2, bundle_pb2_grpc
from gateway.applications import bundle_plan, deadlines
from gateway.applications.bundle_flow import BundleFlow
from gateway.applications.bundle_records import BundleRecords
from gateway.applications.outbox import Outbox
from gateway.applications.records import GATEWAY, Held, add_event
from gateway.applications.request_checks import MAX_FIELD_VALUE, validate_bundle
from gateway.applications.service import LicenseChecker
from gateway.applications.watch import WatchHub
from gateway.catalog import fields
from gateway.catalog.convert import MODES
from gateway.catalog.model import Theme
from gateway.catalog.registry import CatalogRegistry
from gateway.catalog.resolution import VersionRecord, require_region
from gateway.errors import (
    BundleFinished,
    BundleNotFinished,
    BundleNotFound,
    CatalogVersionNotFound,
    FieldViolation,
    FlowNotConsented,
    InvalidRequest,
    LicenseInvalid,
    MaterialMissing,
    MatterNotImplemented,
    RatingExists,
    RequestIdReused,
    ThemeNotFound,
    TongbanError,
)
from gateway.events import (
    NO_EVENTS,
    ApplicationSubmitted,
    BundleRated,
    BundleSubmitted,
    Events,
    FlowRefused,
    SubmissionRefused,
)
from gateway.security import authz, guard
from gateway.storage.base import ApplicationRow
from gateway.times import timestamp

MAX_WITHDRAW_REASON = 500
MAX_COMMENT = 200
MAX_REASONS = 8
_MAX_NAME = len("bundles/") + 36
_REASONS = bundle_pb2.RatingReason.DESCRIPTOR
_WAITING = application_pb2.APPLICATION_STATE_WAITING
_RECEIVED = application_pb2.APPLICATION_STATE_RECEIVED


def bundle_digest(request: bundle_pb2.SubmitBundleRequest) -> str:
    """`b1:` and the hex SHA-256 of the request's deterministic serialization."""
    data = request.SerializeToString(deterministic=True)
    return "b1:" + hashlib.sha256(data).hexdigest()


class BundleServicer(bundle_pb2_grpc.BundleServiceServicer):
    """Accepts bundles and answers for them."""

    def __init__(
        self,
        *,
        registry: CatalogRegistry,
        bundles: BundleRecords,
        flow: BundleFlow,
        outbox: Outbox,
        hub: WatchHub,
        licenses: LicenseChecker,
        wall_clock: Callable[[], datetime],
        watch_poll: float = 1.0,
        events: Events = NO_EVENTS,
    ) -> None:
        self.registry = registry
        self.bundles = bundles
        self.flow = flow
        self.outbox = outbox
        self.hub = hub
        self.licenses = licenses
        self.wall_clock = wall_clock
        self.watch_poll = watch_poll
        self.events = events

    # -- submission -------------------------------------------------------------------------

    async def SubmitBundle(
        self, request: bundle_pb2.SubmitBundleRequest, context: grpc.aio.ServicerContext
    ) -> bundle_pb2.SubmitBundleResponse:
        try:
            return await self._submit(request, context.time_remaining())
        except TongbanError as error:
            self.events.emit(
                SubmissionRefused(request.request_id, "", error.code.name, error.reason)
            )
            raise

    async def _submit(
        self, request: bundle_pb2.SubmitBundleRequest, time_remaining: float | None
    ) -> bundle_pb2.SubmitBundleResponse:
        snapshot = self.registry.snapshot
        violations = validate_bundle(request, snapshot.provinces)
        if violations:
            raise InvalidRequest("the bundle is malformed", field_violations=violations)
        guard.check(authz.SubmitBundle(request.origin_region))
        deadline = self.outbox.deadline(time_remaining)
        digest = bundle_digest(request)
        # No idempotency read on the happy path (as for applications): the claim below is the
        # atomic check, and a taken key is replayed from there. Only a build that fails looks
        # the key up, so a replay still answers as the first time did after the catalog or a
        # licence changed.
        try:
            bundle, rows, first = await self._build(request, deadline)
        except TongbanError:
            existing = await self.bundles.find_by_request(request.origin_region, request.request_id)
            if existing is None:
                raise
            return await self._replay(*existing, digest)
        started = self.outbox.clock()
        stored, stored_digest, created = await self.bundles.create(bundle, digest, rows)
        committed = self.outbox.clock() - started
        if not created:  # a concurrent call took the request id first
            return await self._replay(stored, stored_digest, digest)
        self.events.emit(BundleSubmitted(bundle))
        held = []
        members: dict[str, application_pb2.Application] = {}
        for row in rows:
            app = application_pb2.Application()
            app.ParseFromString(row.body)
            self.events.emit(ApplicationSubmitted(app, committed))
            members[app.bundle_member_id] = app
            if row.application_id in first:
                held.append(Held(app, row.body))
        deliveries = [self.outbox.deliver_claimed(h, deadline) for h in held]
        if any(m.state == _WAITING and not m.after_member_ids for m in bundle.members):
            # Members that wait only for licences to be fetched: released (and delivered) now.
            await asyncio.gather(
                *deliveries, self.flow.advance(bundle.bundle_id, deadline), return_exceptions=True
            )
            view = await self.flow.refresh(bundle.bundle_id)
        else:
            view = await self._delivered(stored, members, held, deliveries)
        return bundle_pb2.SubmitBundleResponse(bundle=view)

    async def _delivered(
        self,
        stored: bundle_pb2.Bundle,
        members: dict[str, application_pb2.Application],
        held: Sequence[Held],
        deliveries: Sequence[Awaitable[application_pb2.Application]],
    ) -> bundle_pb2.Bundle:
        """The bundle just committed, answered once its first members' deliveries end: each
        member as its delivery left it stored (the others as committed, still waiting), or,
        when a delivery's outcome could not be recorded, as the store holds them now."""
        outcomes = await asyncio.gather(*deliveries, return_exceptions=True)
        for h, outcome in zip(held, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                return await self.flow.refresh(stored.bundle_id)
            members[h.application.bundle_member_id] = outcome
        view = self.bundles.view(stored, members, self.wall_clock())
        await self.bundles.remember(stored, view)
        return view

    async def _replay(
        self, bundle: bundle_pb2.Bundle, stored_digest: str, digest: str
    ) -> bundle_pb2.SubmitBundleResponse:
        if stored_digest != digest:
            raise RequestIdReused(
                "this request_id was used for a different bundle",
                metadata={"bundle": bundle.name},
            )
        view = self.bundles.view(bundle, await self.bundles.members(bundle), self.wall_clock())
        return bundle_pb2.SubmitBundleResponse(bundle=view, replayed=True)

    async def _build(
        self, request: bundle_pb2.SubmitBundleRequest, deadline: float
    ) -> tuple[bundle_pb2.Bundle, list[ApplicationRow], set[str]]:
        """The bundle and its member rows, and the ids of the members to deliver at once."""
        now = self.wall_clock()
        snapshot = self.registry.snapshot
        record = snapshot.current(now)
        if record is None:
            raise CatalogVersionNotFound("no catalog version is in force yet")
        theme = record.document.themes.get(request.theme_code)
        if theme is None:
            raise ThemeNotFound(
                f"the catalog in force ({record.document.version}) has no theme "
                f"{request.theme_code}",
                metadata={"theme_code": request.theme_code, "version": record.document.version},
            )
        self._check_fit(request, theme, record)
        targets = self._bind(request, theme, record, now)
        materials = await self._materials(request, theme)
        self._check_coverage(request, theme, record)
        return self._assemble(
            request,
            theme,
            record,
            targets=targets,
            materials=materials,
            now=now,
            deadline=deadline,
        )

    def _check_fit(
        self, request: bundle_pb2.SubmitBundleRequest, theme: Theme, record: VersionRecord
    ) -> None:
        """The roles, the form, the materials and the consent against the theme: every
        violation at once, on the bundle's own fields."""
        provinces = self.registry.snapshot.provinces
        needed = _roles(theme)
        bound = {r.role for r in request.roles}
        out: list[FieldViolation] = [
            FieldViolation(
                f"roles[{i}].role", f"theme {theme.code} has no role {r.role}", "UNKNOWN_ROLE"
            )
            for i, r in enumerate(request.roles)
            if r.role not in needed
        ]
        out += [
            FieldViolation("roles", f"role {role} needs a province", "MISSING_ROLE")
            for role in sorted(needed - bound)
        ]
        spec = {f.name: f for f in theme.form}
        given: set[str] = set()
        for i, f in enumerate(request.form_fields):
            field = spec.get(f.key)
            if field is None:
                out.append(
                    FieldViolation(
                        f"form_fields[{i}].key",
                        f"theme {theme.code} has no form field {f.key}",
                        "UNKNOWN_FIELD",
                    )
                )
                continue
            given.add(f.key)
            bad = fields.form_value(
                field.type, f.value, f"form_fields[{i}].value", provinces, MAX_FIELD_VALUE
            )
            if bad is not None:
                out.append(bad)
        out += [
            FieldViolation("form_fields", f"{f.name} ({f.label}) is required", "MISSING_FIELD")
            for f in theme.form
            if f.required and f.name not in given
        ]
        by_id = {m.id: m for m in theme.materials}
        for i, m in enumerate(request.materials):
            material = by_id.get(m.material_id)
            if material is None:
                out.append(
                    FieldViolation(
                        f"materials[{i}].material_id",
                        f"theme {theme.code} has no material {m.material_id}",
                        "UNKNOWN_MATERIAL",
                    )
                )
            elif m.WhichOneof("source") == "license_token" and not material.license_type_code:
                out.append(
                    FieldViolation(
                        f"materials[{i}].license_token",
                        "this material takes paper only",
                        "NO_LICENSE_TYPE",
                    )
                )
        flows = {(f.to.member, f.to.material_id) for f in theme.flows}
        out += [
            FieldViolation(
                f"consent.flows[{i}]",
                f"theme {theme.code} has no flow into {f.member_id}/{f.material_id}",
                "UNKNOWN_FLOW",
            )
            for i, f in enumerate(request.consent.flows)
            if (f.member_id, f.material_id) not in flows
        ]
        if out:
            raise InvalidRequest(
                f"the bundle does not fit theme {theme.code}", field_violations=out
            )

    def _bind(
        self,
        request: bundle_pb2.SubmitBundleRequest,
        theme: Theme,
        record: VersionRecord,
        now: datetime,
    ) -> dict[str, tuple[str, str]]:
        """Member id → (its province, the province's local code for its matter)."""
        snapshot = self.registry.snapshot
        position = {r.role: i for i, r in enumerate(request.roles)}
        region_of = {r.role: r.region_code for r in request.roles}
        for role in sorted(_roles(theme)):
            require_region(snapshot, region_of[role], f"roles[{position[role]}].region_code")
        out: dict[str, tuple[str, str]] = {}
        for member in theme.members:
            region = region_of[member.role]
            index = snapshot.region_indexes().get(region)
            rows = index.live_rows(member.matter_code, now.date()) if index else ()
            if index is None or not rows:
                matter = record.document.matters[member.matter_code]
                field = f"roles[{position[member.role]}].region_code"
                raise MatterNotImplemented(
                    f"province {region} ({member.role}) does not handle {matter.code} "
                    f"({matter.name}), member {member.id} of theme {theme.code}",
                    field_violations=[
                        FieldViolation(
                            field,
                            f"a province that handles {matter.code} ({member.role})",
                            "MATTER_NOT_IMPLEMENTED",
                        )
                    ],
                    metadata={
                        "member": member.id,
                        "role": member.role,
                        "national_code": matter.code,
                        "region": region,
                    },
                )
            out[member.id] = (region, index.local_code(rows[0]))
        return out

    async def _materials(
        self, request: bundle_pb2.SubmitBundleRequest, theme: Theme
    ) -> dict[str, application_pb2.MaterialRecord]:
        """Each supplied theme material as checked: a licence verified once for every member."""
        by_id = {m.id: m for m in theme.materials}
        out: dict[str, application_pb2.MaterialRecord] = {}
        for i, m in enumerate(request.materials):
            if m.WhichOneof("source") != "license_token":
                out[m.material_id] = application_pb2.MaterialRecord(paper=m.paper)
                continue
            field = f"materials[{i}].license_token"
            verification = await self.licenses.verify(
                m.license_token,
                expected_type_code=by_id[m.material_id].license_type_code,
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
            out[m.material_id] = application_pb2.MaterialRecord(
                waived=True,
                license_identifier=licence.identifier,
                license_type_code=licence.type_code,
                license_status_checked=verification.status_checked,
            )
        return out

    def _check_coverage(
        self, request: bundle_pb2.SubmitBundleRequest, theme: Theme, record: VersionRecord
    ) -> None:
        """Every required material of every member is supplied or flows in with consent."""
        supplied = {m.material_id for m in request.materials}
        covered = {
            (use.member, use.material_id)
            for m in theme.materials
            if m.id in supplied
            for use in m.used_by
        }
        consented = {(f.member_id, f.material_id) for f in request.consent.flows}
        flows = {(f.to.member, f.to.material_id): f for f in theme.flows}
        unconsented: list[FieldViolation] = []
        refused: list[tuple[str, str]] = []
        missing: list[FieldViolation] = []
        for member in theme.members:
            matter = record.document.matters[member.matter_code]
            for material in matter.materials:
                key = (member.id, material.id)
                if not material.required or key in covered:
                    continue
                flow = flows.get(key)
                if flow is not None and key not in consented:
                    refused.append(key)
                    unconsented.append(
                        FieldViolation(
                            "consent.flows",
                            f"the licence {flow.license_type_code} into "
                            f"{member.id}/{material.id} ({material.name}) must be allowed, "
                            "or the material supplied",
                            "FLOW_NOT_CONSENTED",
                        )
                    )
                elif flow is None:
                    theme_ids = [
                        m.id
                        for m in theme.materials
                        if any(
                            u.member == member.id and u.material_id == material.id
                            for u in m.used_by
                        )
                    ]
                    missing.append(
                        FieldViolation(
                            "materials",
                            f"{'/'.join(theme_ids) or material.id} ({material.name}) is "
                            f"required by {member.id}",
                            "MATERIAL_MISSING",
                        )
                    )
        if unconsented:
            for member_id, material_id in refused:
                self.events.emit(FlowRefused("", member_id, material_id, "FLOW_NOT_CONSENTED"))
            raise FlowNotConsented(
                f"{len(unconsented)} data flow(s) the theme needs are outside the consent",
                field_violations=unconsented,
            )
        if missing:
            raise MaterialMissing(
                f"{len(missing)} required material(s) missing", field_violations=missing
            )

    def _assemble(
        self,
        request: bundle_pb2.SubmitBundleRequest,
        theme: Theme,
        record: VersionRecord,
        *,
        targets: dict[str, tuple[str, str]],
        materials: dict[str, application_pb2.MaterialRecord],
        now: datetime,
        deadline: float,
    ) -> tuple[bundle_pb2.Bundle, list[ApplicationRow], set[str]]:
        bundle_id = str(uuid.uuid4())
        bundle_name = f"bundles/{bundle_id}"
        at = now.timestamp()
        forms: dict[str, list[application_pb2.FormField]] = {m.id: [] for m in theme.members}
        spec = {f.name: f for f in theme.form}
        for f in request.form_fields:
            for mapping in spec[f.key].maps:
                forms[mapping.member].append(
                    application_pb2.FormField(key=mapping.field, value=f.value)
                )
        uses: dict[str, list[application_pb2.MaterialRecord]] = {m.id: [] for m in theme.members}
        for m in theme.materials:
            checked = materials.get(m.id)
            if checked is None:
                continue
            for use in m.used_by:
                one = application_pb2.MaterialRecord()
                one.CopyFrom(checked)
                one.material_id = use.material_id
                uses[use.member].append(one)
        fetched = {
            f.to.member
            for f in theme.flows
            if f.fetch_role
            and any(
                (c.member_id, c.material_id) == (f.to.member, f.to.material_id)
                for c in request.consent.flows
            )
        }
        lease_until = at + self.outbox.lease_seconds(deadline)
        recheck = at + self.flow.recheck_interval
        expire = at + self.outbox.records.queue_expiry
        bundle_due = deadlines.deadline(now, theme.promised_time_limit)
        bundle = bundle_pb2.Bundle(
            name=bundle_name,
            bundle_id=bundle_id,
            request_id=request.request_id,
            origin_region=request.origin_region,
            theme_code=theme.code,
            theme_display_name=theme.name,
            catalog_version=record.document.version,
            roles=request.roles,
            applicant=request.applicant,
            form_fields=request.form_fields,
            consent=request.consent,
            state=bundle_pb2.BUNDLE_STATE_IN_PROGRESS,
            create_time=timestamp(at),
            update_time=timestamp(at),
            due_time=timestamp(bundle_due.due.timestamp()),
            due_time_provisional=bundle_due.provisional,
        )
        rows: list[ApplicationRow] = []
        first: set[str] = set()
        for member in theme.members:
            matter = record.document.matters[member.matter_code]
            region, local = targets[member.id]
            application_id = str(uuid.uuid4())
            starts = not member.after and member.id not in fetched
            app = application_pb2.Application(
                name=f"applications/{application_id}",
                application_id=application_id,
                request_id=f"{request.request_id}/{member.id}",
                origin_region=request.origin_region,
                target_region=region,
                national_matter_code=matter.code,
                target_local_matter_code=local,
                catalog_version=record.document.version,
                cross_region_mode=MODES[matter.cross_region_modes[0]]  # type: ignore[arg-type]
                if matter.cross_region_modes
                else 0,
                applicant=request.applicant,
                form_fields=forms[member.id],
                materials=uses[member.id],
                create_time=timestamp(at),
                matter_display_name=matter.name,
                bundle=bundle_name,
                bundle_member_id=member.id,
            )
            if starts:
                due = deadlines.deadline(now, matter.promised_time_limit)
                app.due_time.CopyFrom(timestamp(due.due.timestamp()))
                app.due_time_provisional = due.provisional
            add_event(app, _RECEIVED if starts else _WAITING, "", GATEWAY, at)
            rows.append(
                ApplicationRow(
                    application_id=application_id,
                    origin_region=request.origin_region,
                    request_id=app.request_id,
                    request_digest="",
                    target_region=region,
                    state=app.state,
                    create_time=at,
                    update_time=at,
                    next_attempt_time=at if starts else recheck,
                    expire_time=expire,
                    lease_owner=self.outbox.worker_id if starts else "",
                    lease_until=lease_until if starts else 0.0,
                    body=app.SerializeToString(),
                )
            )
            if starts:
                first.add(application_id)
            bundle.members.add(
                member_id=member.id,
                application=app.name,
                role=member.role,
                target_region=region,
                national_matter_code=matter.code,
                matter_display_name=matter.name,
                state=app.state,
                after_member_ids=member.after,
            )
        return bundle, rows, first

    # -- reading ----------------------------------------------------------------------------

    async def _allowed(
        self, name: str, action: type[authz.ReadBundle | authz.SubmitBundle]
    ) -> bundle_pb2.Bundle:
        """The bundle `name` names, if the caller may perform `action` on it; a province is
        refused an unknown bundle exactly as somebody else's (no probing)."""
        bundle_id = _bundle_id(name)
        try:
            bundle = await self.bundles.get(bundle_id)
        except BundleNotFound:
            guard.check(action(""))
            raise
        guard.check(action(bundle.origin_region))
        return bundle

    async def _readable(self, name: str) -> bundle_pb2.Bundle:
        return await self._allowed(name, authz.ReadBundle)

    async def _owned(self, name: str) -> bundle_pb2.Bundle:
        return await self._allowed(name, authz.SubmitBundle)

    async def GetBundle(
        self, request: bundle_pb2.GetBundleRequest, context: grpc.aio.ServicerContext
    ) -> bundle_pb2.GetBundleResponse:
        bundle = await self._readable(request.name)
        return bundle_pb2.GetBundleResponse(bundle=await self.flow.refresh(bundle.bundle_id))

    async def WatchBundle(
        self, request: bundle_pb2.WatchBundleRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bundle_pb2.WatchBundleResponse]:
        bundle = await self._readable(request.name)
        ids = [m.application.removeprefix("applications/") for m in bundle.members]
        with self.hub.subscribe(*ids) as queue:
            view = await self.flow.refresh(bundle.bundle_id)
            yield bundle_pb2.WatchBundleResponse(bundle=view)
            seen = _progress(view)
            while not bundle_plan.is_finished({m.member_id: m.state for m in view.members}):
                changed = ""
                try:
                    app = await asyncio.wait_for(queue.get(), self.watch_poll)
                    changed = app.bundle_member_id
                except TimeoutError:
                    pass
                view = await self.flow.refresh(bundle.bundle_id)
                if _progress(view) != seen:
                    seen = _progress(view)
                    yield bundle_pb2.WatchBundleResponse(bundle=view, changed_member_id=changed)

    # -- the applicant's later acts ---------------------------------------------------------

    async def WithdrawBundle(
        self, request: bundle_pb2.WithdrawBundleRequest, context: grpc.aio.ServicerContext
    ) -> bundle_pb2.WithdrawBundleResponse:
        fields.raise_if_any(
            "the withdrawal is malformed",
            fields.text(request.reason, "reason", MAX_WITHDRAW_REASON, printable=False),
        )
        bundle = await self._owned(request.name)
        view = await self.flow.refresh(bundle.bundle_id)
        if not bundle.HasField("withdraw_time") and bundle_plan.is_finished(
            {m.member_id: m.state for m in view.members}
        ):
            raise BundleFinished(
                "every member of the bundle has ended: there is nothing to withdraw",
                metadata={"state": bundle_pb2.BundleState.Name(view.state)},
            )
        deadline = self.outbox.deadline(context.time_remaining())
        view = await self.flow.withdraw(bundle.bundle_id, request.reason, deadline)
        return bundle_pb2.WithdrawBundleResponse(bundle=view)

    async def RateBundle(
        self, request: bundle_pb2.RateBundleRequest, context: grpc.aio.ServicerContext
    ) -> bundle_pb2.RateBundleResponse:
        rating = request.rating
        fields.raise_if_any("the rating is malformed", *_rating_violations(request))
        bundle = await self._owned(request.name)
        view = await self.flow.refresh(bundle.bundle_id)
        if not bundle_plan.is_finished({m.member_id: m.state for m in view.members}):
            raise BundleNotFinished(
                "a bundle is rated once it has ended",
                metadata={"state": bundle_pb2.BundleState.Name(view.state)},
            )
        regions = {m.target_region for m in view.members}
        if rating.region_code and rating.region_code not in regions:
            raise InvalidRequest(
                "the rated province handles no member of the bundle",
                field_violations=[
                    FieldViolation(
                        "rating.region_code", "a province of a member, or empty", "NOT_A_MEMBER"
                    )
                ],
            )
        now = self.wall_clock()

        def rate(stored: bundle_pb2.Bundle) -> bool:
            if any(r.region_code == rating.region_code for r in stored.ratings):
                raise RatingExists(
                    "the bundle was rated already"
                    if not rating.region_code
                    else f"province {rating.region_code} was rated already for this bundle",
                    metadata={"region": rating.region_code},
                )
            added = stored.ratings.add()
            added.CopyFrom(rating)
            added.rate_time.CopyFrom(timestamp(now.timestamp()))
            return True

        await self.bundles.change(bundle.bundle_id, rate)
        self.events.emit(
            BundleRated(
                bundle.theme_code,
                rating.region_code,
                rating.score,
                tuple(bundle_pb2.RatingReason.Name(r) for r in rating.reasons),
            )
        )
        return bundle_pb2.RateBundleResponse(bundle=await self.flow.refresh(bundle.bundle_id))


def _roles(theme: Theme) -> set[str]:
    """The roles a bundle of `theme` binds: its members' and those licences are fetched from."""
    return {m.role for m in theme.members} | {f.fetch_role for f in theme.flows if f.fetch_role}


def _progress(bundle: bundle_pb2.Bundle) -> tuple[object, ...]:
    """What a watcher is shown a new message for."""
    return (
        bundle.state,
        bundle.HasField("withdraw_time"),
        len(bundle.ratings),
        tuple((m.state, m.state_reason, m.stopped_by_member_id) for m in bundle.members),
    )


def _rating_violations(request: bundle_pb2.RateBundleRequest) -> Sequence[FieldViolation | None]:
    if not request.HasField("rating"):
        return [FieldViolation("rating", "required", "MISSING")]
    rating = request.rating
    out: list[FieldViolation | None] = [
        None
        if 1 <= rating.score <= 5
        else FieldViolation("rating.score", "1 (非常不满意) to 5 (非常满意)", "OUT_OF_RANGE"),
        fields.text(rating.comment, "rating.comment", MAX_COMMENT, printable=False),
        fields.region_code(rating.region_code, "rating.region_code")
        if rating.region_code
        else None,
    ]
    if len(rating.reasons) > MAX_REASONS:
        out.append(FieldViolation("rating.reasons", f"at most {MAX_REASONS}", "TOO_MANY"))
    seen: set[int] = set()
    for i, reason in enumerate(rating.reasons):
        bad = fields.enum_value(reason, f"rating.reasons[{i}]", _REASONS, required=True)
        if bad is None and reason in seen:
            bad = FieldViolation(f"rating.reasons[{i}]", "each reason once", "DUPLICATE")
        seen.add(reason)
        out.append(bad)
    return out


def _bundle_id(name: str) -> str:
    prefix, _, bundle_id = name.partition("/") if len(name) <= _MAX_NAME else ("", "", "")
    try:
        parsed = uuid.UUID(bundle_id)
    except ValueError:
        parsed = None
    if prefix != "bundles" or parsed is None or str(parsed) != bundle_id:
        raise InvalidRequest(
            "name must be bundles/{uuid}",
            field_violations=[FieldViolation("name", "bundles/{bundle_id}", "BAD_NAME")],
        )
    return bundle_id
