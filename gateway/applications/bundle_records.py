"""Bundles as stored: the `Bundle` message beside its member applications.

Invariants:
- A bundle and every member application are committed together (`Store.claim_bundle`), or
  neither is; its idempotency key is (origin, request id) among bundles.
- The members' states live in their applications alone. A bundle as answered (`view`) is the
  stored bundle with each member read from its application and the bundle's state derived
  from theirs (`bundle_plan.bundle_state`), so it is never older than its members.
- The stored body keeps what only the bundle knows (roles, form, consent, withdrawal, ratings,
  why a member was stopped) and the last derived state, which `remember` writes when it
  changes so that the store can count bundles by state and lateness.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from gateway.api.v1 import application_pb2, bundle_pb2
from gateway.applications import bundle_plan, lifecycle
from gateway.applications.records import ApplicationRecords
from gateway.errors import BundleNotFound
from gateway.events import NO_EVENTS, BundleChanged, Events
from gateway.storage.base import ApplicationRow, BundleRow, BundleStore
from gateway.times import timestamp


def decode(row: BundleRow) -> bundle_pb2.Bundle:
    """The stored `Bundle`."""
    bundle = bundle_pb2.Bundle()
    bundle.ParseFromString(row.body)
    return bundle


class BundleRecords:
    """Reads and changes stored bundles."""

    def __init__(
        self,
        store: BundleStore,
        applications: ApplicationRecords,
        *,
        events: Events = NO_EVENTS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.applications = applications
        self.events = events
        self.clock = clock

    async def create(
        self, bundle: bundle_pb2.Bundle, digest: str, members: Sequence[ApplicationRow]
    ) -> tuple[bundle_pb2.Bundle, str, bool]:
        """Stores a bundle and its members in one commit; returns (the bundle stored under the
        key, its request digest, whether this call created it)."""
        now = bundle.create_time.ToDatetime(UTC).timestamp()
        row = BundleRow(
            bundle_id=bundle.bundle_id,
            origin_region=bundle.origin_region,
            request_id=bundle.request_id,
            request_digest=digest,
            theme_code=bundle.theme_code,
            state=bundle.state,
            create_time=now,
            update_time=now,
            due_time=bundle.due_time.ToDatetime(UTC).timestamp(),
            body=bundle.SerializeToString(),
        )
        stored, created = await self.store.claim_bundle(row, members)
        return decode(stored), stored.request_digest, created

    async def find_by_request(
        self, origin_region: str, request_id: str
    ) -> tuple[bundle_pb2.Bundle, str] | None:
        """The bundle an idempotency key names, with its request digest."""
        row = await self.store.find_bundle_request(origin_region, request_id)
        return (decode(row), row.request_digest) if row else None

    async def get(self, bundle_id: str) -> bundle_pb2.Bundle:
        """The stored bundle (members as last remembered); BUNDLE_NOT_FOUND if none."""
        row = await self.store.get_bundle(bundle_id)
        if row is None:
            raise BundleNotFound(f"no bundle {bundle_id}")
        return decode(row)

    async def members(self, bundle: bundle_pb2.Bundle) -> dict[str, application_pb2.Application]:
        """Every member's application, by member id."""
        return {
            m.member_id: await self.applications.get(m.application.removeprefix("applications/"))
            for m in bundle.members
        }

    def view(
        self,
        bundle: bundle_pb2.Bundle,
        members: dict[str, application_pb2.Application],
        now: datetime,
    ) -> bundle_pb2.Bundle:
        """The bundle as answered: each member from its application, the state derived."""
        out = bundle_pb2.Bundle()
        out.CopyFrom(bundle)
        latest = bundle.update_time.ToDatetime(UTC)
        for entry in out.members:
            app = members[entry.member_id]
            entry.state = app.state
            entry.state_reason = app.state_reason
            if app.HasField("due_time"):
                entry.due_time.CopyFrom(app.due_time)
                entry.overdue = (
                    app.state not in lifecycle.TERMINAL and app.due_time.ToDatetime(UTC) < now
                )
            latest = max(latest, app.update_time.ToDatetime(UTC))
        states = {m.member_id: m.state for m in out.members}
        withdrawn = bundle.HasField("withdraw_time")
        out.state = bundle_plan.bundle_state(states, withdrawn=withdrawn)  # type: ignore[assignment]
        out.state_reason = _reason(out)
        out.overdue = out.state == bundle_pb2.BUNDLE_STATE_IN_PROGRESS and (
            bundle.due_time.ToDatetime(UTC) < now
        )
        out.update_time.CopyFrom(timestamp(latest.timestamp()))
        return out

    async def change(
        self, bundle_id: str, fn: Callable[[bundle_pb2.Bundle], bool]
    ) -> bundle_pb2.Bundle:
        """One atomic change of the stored bundle: `fn` changes the decoded bundle in place and
        says whether it changed anything. Returns the bundle as stored afterwards."""
        result: list[bundle_pb2.Bundle] = []
        now = self.clock()

        def run(row: BundleRow) -> BundleRow | None:
            bundle = decode(row)
            if not fn(bundle):
                result.append(bundle)
                return None
            bundle.update_time.CopyFrom(timestamp(now))
            result.append(bundle)
            return replace(
                row, state=bundle.state, update_time=now, body=bundle.SerializeToString()
            )

        if await self.store.update_bundle_with(bundle_id, run) is None:
            raise BundleNotFound(f"no bundle {bundle_id}")
        return result[0]

    async def remember(self, stored: bundle_pb2.Bundle, view: bundle_pb2.Bundle) -> None:
        """Stores what was derived (the state, its reason, each member's due time and whether it
        has ended: `_summary`) where it differs from `stored`, the bundle as read; a new state
        is emitted."""
        if _summary(stored) == _summary(view):
            return

        def fn(bundle: bundle_pb2.Bundle) -> bool:
            if _summary(bundle) == _summary(view):
                return False
            bundle.state = view.state
            bundle.state_reason = view.state_reason
            for entry, seen in zip(bundle.members, view.members, strict=True):
                entry.state = seen.state
                if seen.HasField("due_time"):
                    entry.due_time.CopyFrom(seen.due_time)
            return True

        await self.change(view.bundle_id, fn)
        if (stored.state, stored.state_reason) != (view.state, view.state_reason):
            self.events.emit(BundleChanged(view))


def overdue_members(body: bytes, now: float) -> int:
    """How many members of a stored bundle are past their due time and not ended, as last
    remembered."""
    bundle = bundle_pb2.Bundle()
    bundle.ParseFromString(body)
    return sum(
        1
        for m in bundle.members
        if m.HasField("due_time")
        and m.state not in lifecycle.TERMINAL
        and m.due_time.ToDatetime(UTC).timestamp() < now
    )


def _summary(bundle: bundle_pb2.Bundle) -> tuple[object, ...]:
    """What `remember` keeps: the bundle's state and reason, and of each member whether it has
    ended and when it is due (enough to count overdue members; a member's move between two
    states in progress, e.g. DELIVERED after RECEIVED, costs no write)."""
    return (
        bundle.state,
        bundle.state_reason,
        tuple((m.state in lifecycle.TERMINAL, m.due_time.seconds) for m in bundle.members),
    )


def _reason(bundle: bundle_pb2.Bundle) -> str:
    """Which members did not complete and why, for a bundle that is not simply going well."""
    if bundle.state in (bundle_pb2.BUNDLE_STATE_IN_PROGRESS, bundle_pb2.BUNDLE_STATE_COMPLETED):
        stopped = [m for m in bundle.members if m.state in lifecycle.TERMINAL and not _completed(m)]
        if not stopped:
            return ""
    parts = []
    for m in bundle.members:
        if _completed(m) or m.state not in lifecycle.TERMINAL:
            continue
        state = application_pb2.ApplicationState.Name(m.state).removeprefix("APPLICATION_STATE_")
        text = f"{m.member_id} {state}"
        if m.stopped_by_member_id:
            text += f" (stopped by {m.stopped_by_member_id})"
        elif m.state_reason:
            text += f" ({m.state_reason})"
        parts.append(text)
    return "; ".join(parts)


def _completed(member: bundle_pb2.BundleMember) -> bool:
    return member.state == application_pb2.APPLICATION_STATE_COMPLETED
