"""Applications as stored: the `Application` message in the store, changed only by transitions.

Invariants:
- The stored body is the whole `Application` (history included); every change goes through
  one atomic change of the stored row, checked against `lifecycle`, and is then emitted as
  `ApplicationChanged`.
- The state has one source: the body. The row's `state` column is written from the body in
  one place (`_with_body`), so the two cannot disagree.
- An application awaiting delivery has a due time; delivered and terminal ones have none.
  Its expiry is the row's `expire_time`, on this object's clock (the wall clock).
- Nothing here decides routing; it records what routing decided.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from gateway.api.v1 import application_pb2
from gateway.applications import lifecycle
from gateway.errors import (
    ApplicationNotDelivered,
    ApplicationNotFound,
    InvalidStateTransition,
    PermissionDenied,
)
from gateway.events import NO_EVENTS, ApplicationChanged, Events
from gateway.routing.deliverer import DeliveryOutcome
from gateway.storage.base import ApplicationRow, ApplicationStore
from gateway.times import timestamp

GATEWAY = "gateway"


@dataclass(frozen=True, slots=True)
class Held:
    """An application as a worker holds it: the message, and the exact bytes stored for it."""

    application: application_pb2.Application
    body: bytes


@dataclass(frozen=True, slots=True)
class Due(Held):
    """An application leased for redelivery, with its expiry (on the records' clock)."""

    expire_time: float


def _decode(row: ApplicationRow) -> application_pb2.Application:
    app = application_pb2.Application()
    app.ParseFromString(row.body)
    return app


def add_event(
    app: application_pb2.Application, state: int, reason: str, actor: str, now: float
) -> None:
    """Moves `app` to `state` and appends the event to its history."""
    app.state = state  # type: ignore[assignment]
    app.state_reason = reason
    app.update_time.CopyFrom(timestamp(now))
    app.events.add(state=state, reason=reason, event_time=timestamp(now), actor=actor)


class ApplicationRecords:
    """Reads and changes stored applications."""

    def __init__(
        self,
        store: ApplicationStore,
        *,
        queue_expiry: float,
        events: Events = NO_EVENTS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.queue_expiry = queue_expiry
        self.events = events
        self.clock = clock

    async def find_by_request(
        self, origin_region: str, request_id: str
    ) -> tuple[application_pb2.Application, str] | None:
        """The application an idempotency key names, with its request digest."""
        row = await self.store.find_request(origin_region, request_id)
        return (_decode(row), row.request_digest) if row else None

    async def create(
        self,
        app: application_pb2.Application,
        request_digest: str,
        *,
        lease_owner: str,
        lease_seconds: float,
    ) -> tuple[Held, str, bool]:
        """Stores a new application, due now and leased to its inline deliverer.

        Returns (the stored application, its digest, whether it was created by this call);
        when the idempotency key was taken in the meantime, the earlier application.
        """
        now = self.clock()
        row = ApplicationRow(
            application_id=app.application_id,
            origin_region=app.origin_region,
            request_id=app.request_id,
            request_digest=request_digest,
            target_region=app.target_region,
            state=app.state,
            create_time=now,
            update_time=now,
            next_attempt_time=now,
            expire_time=now + self.queue_expiry,
            lease_owner=lease_owner,
            lease_until=now + lease_seconds,
            body=app.SerializeToString(),
        )
        stored, created = await self.store.claim_request(row)
        if created:
            return Held(app, row.body), request_digest, True
        return Held(_decode(stored), stored.body), stored.request_digest, False

    async def get(self, application_id: str) -> application_pb2.Application:
        """One application; APPLICATION_NOT_FOUND if there is none."""
        row = await self.store.get_application(application_id)
        if row is None:
            raise ApplicationNotFound(f"no application {application_id}")
        return _decode(row)

    async def list_for_region(
        self,
        region_code: str,
        *,
        as_origin: bool,
        as_target: bool,
        state: int | None,
        limit: int,
        before: tuple[float, str] | None,
    ) -> list[tuple[application_pb2.Application, float]]:
        """Applications of a province, newest first, with their create times (page keys)."""
        rows = await self.store.list_applications(
            region_code,
            as_origin=as_origin,
            as_target=as_target,
            state=state,
            limit=limit,
            before=before,
        )
        return [(_decode(r), r.create_time) for r in rows]

    async def claim_due(
        self,
        owner: str,
        *,
        lease_seconds: float,
        limit: int,
        skip_targets: Sequence[str] = (),
    ) -> list[Due]:
        """Leases due applications to `owner` (those for `skip_targets` only once expired)."""
        rows = await self.store.claim_due(
            now=self.clock(),
            owner=owner,
            lease_seconds=lease_seconds,
            limit=limit,
            skip_targets=skip_targets,
        )
        return [Due(_decode(r), r.body, r.expire_time) for r in rows]

    def expired(self, due: Due) -> bool:
        """Whether an undelivered application has outlived the queue expiry."""
        return due.expire_time <= self.clock()

    async def release(self, application_id: str, owner: str) -> None:
        """Gives a lease back without changing the application."""

        def change(row: ApplicationRow) -> ApplicationRow | None:
            if row.lease_owner != owner:
                return None
            return _replace(row, lease_owner="", lease_until=0.0)

        await self.store.update_with(application_id, change)

    async def finish_delivery(
        self,
        application_id: str,
        outcome: DeliveryOutcome,
        *,
        lease_owner: str,
        retry_in: float | None,
        known: Held | None = None,
    ) -> application_pb2.Application:
        """Records what a delivery call achieved and releases its lease.

        `known` is the application as this worker last saw it stored (it is consumed: changed
        in place). If the row is still exactly that, body and lease, the change is one
        conditional UPDATE; otherwise (a province reported meanwhile, the lease moved) it is
        a read-modify-write of the stored row.
        """
        now = self.clock()
        if known is not None:
            app = known.application
            next_time = _finish(app, outcome, now, retry_in)
            if await self.store.replace_if_unchanged(
                application_id,
                expected_body=known.body,
                lease_owner=lease_owner,
                state=app.state,
                update_time=now,
                body=app.SerializeToString(),
                next_attempt_time=next_time,
            ):
                self.events.emit(ApplicationChanged(app))
                return app
        result: list[application_pb2.Application] = []

        def change(row: ApplicationRow) -> ApplicationRow | None:
            app = _decode(row)
            next_time = _finish(app, outcome, now, retry_in)
            result.append(app)
            keep_lease = row.lease_owner != lease_owner
            return _with_body(
                row,
                app,
                update_time=now,
                next_attempt_time=next_time,
                lease_owner=row.lease_owner if keep_lease else "",
                lease_until=row.lease_until if keep_lease else 0.0,
            )

        if await self.store.update_with(application_id, change) is None:
            raise ApplicationNotFound(f"no application {application_id}")
        self.events.emit(ApplicationChanged(result[0]))
        return result[0]

    async def change(
        self,
        application_id: str,
        fn: Callable[[application_pb2.Application, ApplicationRow], ApplicationRow | None],
    ) -> application_pb2.Application | None:
        """One atomic change of a stored application by a gateway decision (a bundle's release,
        cancellation or withdrawal): `fn` gets the decoded application (to change in place)
        and its row and returns the new row (built with `stored`), or None to leave it.
        Returns the application as changed, or None when `fn` left it; emits the change."""
        result: list[application_pb2.Application] = []

        def run(row: ApplicationRow) -> ApplicationRow | None:
            app = _decode(row)
            new = fn(app, row)
            if new is not None:
                result.append(app)
            return new

        if await self.store.update_with(application_id, run) is None:
            raise ApplicationNotFound(f"no application {application_id}")
        if not result:
            return None
        self.events.emit(ApplicationChanged(result[0]))
        return result[0]

    def stored(
        self, row: ApplicationRow, app: application_pb2.Application, **changes: object
    ) -> ApplicationRow:
        """`row` holding `app` (its state column from the body), with `changes`."""
        return _with_body(row, app, **changes)

    async def report(
        self,
        application_id: str,
        *,
        region_code: str,
        state: int,
        reason: str,
        event_id: str,
        issued: Sequence[application_pb2.IssuedLicense] = (),
    ) -> application_pb2.Application:
        """Records a province's report of a later state (idempotent by event id)."""
        current = await self.get(application_id)
        if current.target_region != region_code:
            raise PermissionDenied(
                "only the handling province reports the state of an application",
                metadata={"denial": "NOT_DELIVERED_TO_CALLER"},
            )
        if not await self.store.record_status_report(application_id, event_id):
            return await self.get(application_id)
        now = self.clock()
        result: list[application_pb2.Application] = []
        refused: list[int] = []

        def change(row: ApplicationRow) -> ApplicationRow | None:
            app = _decode(row)
            path = lifecycle.province_report_path(app.state, state)
            if path is None:
                refused.append(app.state)
                return None
            for step in path:
                add_event(
                    app,
                    step,
                    reason if step == state else "CONFIRMED_BY_PROVINCE",
                    region_code,
                    now,
                )
            if path and state == application_pb2.APPLICATION_STATE_COMPLETED:
                app.issued_licenses.extend(issued)
            result.append(app)
            return _with_body(row, app, update_time=now, next_attempt_time=None)

        await self.store.update_with(application_id, change)
        if refused:
            await self.store.forget_status_report(application_id, event_id)
            reported, now_in = _state_name(state), _state_name(refused[0])
            if refused[0] == application_pb2.APPLICATION_STATE_FAILED:
                raise ApplicationNotDelivered(
                    f"cannot report {reported}: the application failed before it was delivered",
                    metadata={"state": now_in},
                )
            raise InvalidStateTransition(
                f"cannot report {reported} for an application in {now_in}",
                metadata={"state": now_in},
            )
        if not result:
            return await self.get(application_id)
        self.events.emit(ApplicationChanged(result[0]))
        return result[0]


def _finish(
    app: application_pb2.Application, outcome: DeliveryOutcome, now: float, retry_in: float | None
) -> float | None:
    """Applies a delivery outcome to `app`; returns its next due time (None: not due)."""
    app.delivery_attempts += outcome.attempts
    if outcome.state == application_pb2.APPLICATION_STATE_DELIVERED:
        if not app.receipt_id:
            app.receipt_id = outcome.receipt_id
        if app.state in lifecycle.AWAITING_DELIVERY:
            add_event(app, outcome.state, "", GATEWAY, now)
        return None
    if app.state not in lifecycle.AWAITING_DELIVERY:
        return None  # the province confirmed it meanwhile; nothing left to do
    if outcome.state == application_pb2.APPLICATION_STATE_FAILED:
        add_event(app, outcome.state, outcome.reason, GATEWAY, now)
        return None
    if app.state != application_pb2.APPLICATION_STATE_QUEUED:
        add_event(app, application_pb2.APPLICATION_STATE_QUEUED, outcome.reason, GATEWAY, now)
    else:
        app.state_reason = outcome.reason
        app.update_time.CopyFrom(timestamp(now))
    return now + (retry_in if retry_in is not None else 0.0)


def _replace(row: ApplicationRow, **changes: object) -> ApplicationRow:
    return replace(row, **changes)  # type: ignore[arg-type]


def _with_body(
    row: ApplicationRow, app: application_pb2.Application, **changes: object
) -> ApplicationRow:
    """`row` holding `app`: the one place a body and its state column are written together."""
    return _replace(row, state=app.state, body=app.SerializeToString(), **changes)


def _state_name(state: int) -> str:
    return application_pb2.ApplicationState.Name(application_pb2.ApplicationState.ValueType(state))
