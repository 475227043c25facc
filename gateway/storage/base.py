"""The storage interface: the domain operations every backend implements, and nothing else.

Invariants every implementation keeps (the contract suite in `tests/storage/` checks each one):
- Durable before returned: a write's coroutine returns only after its change is committed, so
  a caller is never told of an application that a crash could lose.
- `(origin_region, request_id)` is unique: `claim_request` inserts or returns the row that
  holds the key, atomically; two concurrent claims of one key create one row.
- A lease is exclusive: `claim_due` leases a due row only if its lease has run out, so two
  concurrent claims never return the same row.
- `update_with` and `replace_if_unchanged` change one row atomically: nothing written between
  the read and the write of the change is lost.
- `(origin_region, request_id)` of a bundle is unique among bundles: `claim_bundle` inserts the
  bundle and every member application in one transaction, or nothing, and returns the bundle
  that holds the key when it is taken.
- Listing is newest first, keyset-paginated by (create_time, application_id), stable while
  rows are added.
- Catalog versions only grow: `insert_catalog_version` stores a version only if its sort key
  is greater than every stored one's, checked and inserted atomically (across processes too),
  so no process can publish an older version than one another process already stored.
- Driver errors never leave the backend: they become `StoreUnavailable` (with a retry delay),
  and so does every call on a closed store.
- No caller sees a driver connection, cursor or SQL.
- The change feed (`follow_changes`) tells a process what other processes committed: an
  application whose stored body changed, the catalog, or that notices may have been lost
  (`Change.RESYNC`, after the feed's connection was lost and made again: re-read whatever you
  follow). A notice is sent only once its change is committed, so a re-read sees the change. A
  backend whose store one process holds (SQLite) has nothing to tell, and its feed stays silent:
  processes sharing one file (`--workers N`) poll.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ApplicationRow:
    """One stored application: the columns the store queries by, and the `Application` proto.

    `state` is the body's state, written from it by the one place that encodes a change
    (`applications.records`); the store keeps it as a column only to list by state.
    """

    application_id: str
    origin_region: str
    request_id: str
    request_digest: str
    target_region: str
    state: int
    create_time: float
    update_time: float
    next_attempt_time: float | None
    """When the application is due for delivery; None when it is not awaiting delivery."""
    expire_time: float
    """When an undelivered application stops being retried."""
    lease_owner: str
    lease_until: float
    body: bytes
    """The serialized `Application`."""


@dataclass(frozen=True, slots=True)
class BundleRow:
    """One stored bundle (一件事): the columns the store queries by, and the `Bundle` proto.

    The members' states live in their applications; the body holds the bundle as it was last
    derived from them, and `state` is written from the body (`applications.bundle_records`).
    """

    bundle_id: str
    origin_region: str
    request_id: str
    request_digest: str
    theme_code: str
    state: int
    create_time: float
    update_time: float
    due_time: float
    """When the theme's promised time limit ends."""
    body: bytes
    """The serialized `Bundle`."""


@dataclass(frozen=True, slots=True)
class StoredDocument:
    """A stored catalog version or implementation list."""

    publish_time: str
    """ISO 8601 UTC."""
    digest: str
    """Hex SHA-256 of the canonical JSON."""
    document: str
    """The canonical JSON."""


@dataclass(frozen=True, slots=True)
class NewCatalogVersion:
    """A catalog version to store."""

    version: str
    sort_key: int
    """Orders versions; unique."""
    effective_time: str
    publish_time: str
    publisher: str
    digest: str
    document: str
    signed_document: str


@dataclass(frozen=True, slots=True)
class CatalogMarker:
    """What the stored catalog holds, in a few bytes: a process compares it with what it has
    loaded to know whether (and what) to load again."""

    latest_sort_key: int | None
    """The sort key of the newest stored version; None when there is none."""
    region_digests: Mapping[str, str]
    """Province code → digest of its stored implementation list."""


class ChangeKind(enum.Enum):
    """What a change-feed notice is about."""

    APPLICATION = "application"
    """An application's stored body changed (its id is the notice's key)."""
    CATALOG = "catalog"
    """A catalog version or an implementation list was stored."""
    RESYNC = "resync"
    """The feed (re)connected: notices sent meanwhile are lost, so re-read what you follow."""


@dataclass(frozen=True, slots=True)
class Change:
    """One notice of the change feed."""

    kind: ChangeKind
    key: str = ""
    """The application id of an APPLICATION notice; empty otherwise."""


RESYNC = Change(ChangeKind.RESYNC)
CATALOG_CHANGED = Change(ChangeKind.CATALOG)


class ChangeFeed(Protocol):
    """What other processes sharing the store committed, as it happens."""

    async def follow_changes(self, on_change: Callable[[Change], None]) -> None:
        """Calls `on_change` (synchronous, cheap) for each change committed through another
        store (another process), until cancelled; never raises for a store that is away.

        After every (re)connection it first calls it with `RESYNC`: what was sent while the
        feed was not listening is lost. A store with nothing to tell waits until cancelled.
        """


class ApplicationStore(Protocol):
    """Applications: idempotent intake, leases for delivery, transitions, listing."""

    async def claim_request(self, row: ApplicationRow) -> tuple[ApplicationRow, bool]:
        """Inserts `row` unless its (origin, request id) is taken; returns the row stored
        under that key and whether this call created it."""

    async def find_request(self, origin_region: str, request_id: str) -> ApplicationRow | None:
        """The application an idempotency key names, if any."""

    async def get_application(self, application_id: str) -> ApplicationRow | None:
        """One application by id."""

    async def update_with(
        self, application_id: str, fn: Callable[[ApplicationRow], ApplicationRow | None]
    ) -> ApplicationRow | None:
        """Read-modify-write of one application, atomically.

        `fn` (pure, synchronous) gets the current row and returns the new one, or None to leave
        it unchanged; returns the row as stored afterwards (None: no such application). Only
        `state`, `update_time`, `body`, `next_attempt_time`, `expire_time`, `lease_owner` and
        `lease_until` change: the other columns are fixed when the application is created.
        """

    async def replace_if_unchanged(
        self,
        application_id: str,
        *,
        expected_body: bytes,
        lease_owner: str,
        state: int,
        update_time: float,
        body: bytes,
        next_attempt_time: float | None,
    ) -> bool:
        """Replaces an application whose lease owner is still `lease_owner` and whose body is
        still `expected_body`, and releases the lease; False (nothing changed) otherwise."""

    async def claim_due(
        self,
        *,
        now: float,
        owner: str,
        lease_seconds: float,
        limit: int,
        skip_targets: Sequence[str] = (),
    ) -> list[ApplicationRow]:
        """Leases to `owner`, until `now + lease_seconds`, up to `limit` applications due by
        `now` whose lease has run out, earliest due first; those for `skip_targets` only once
        they have expired. Returns them as they were before the lease."""

    async def list_applications(
        self,
        region_code: str,
        *,
        as_origin: bool,
        as_target: bool,
        state: int | None,
        limit: int,
        before: tuple[float, str] | None,
    ) -> list[ApplicationRow]:
        """A province's applications (as origin, target or either), newest first, strictly
        before the (create_time, application_id) key `before` when given."""

    async def record_status_report(self, application_id: str, event_id: str) -> bool:
        """Claims a status report's event id; False if it was already claimed."""

    async def forget_status_report(self, application_id: str, event_id: str) -> None:
        """Releases an event id whose report was refused, so a corrected retry can use it."""

    async def queue_stats(self) -> tuple[int, float | None]:
        """(applications awaiting delivery, leased or not; create time of the oldest one)."""


class BundleStore(Protocol):
    """Bundles: one commit of a bundle and its members, idempotent intake, changes, counts."""

    async def claim_bundle(
        self, bundle: BundleRow, members: Sequence[ApplicationRow]
    ) -> tuple[BundleRow, bool]:
        """Inserts `bundle` and its member applications in one transaction unless the bundle's
        (origin, request id) is taken; returns the bundle stored under that key and whether
        this call created it (and its members)."""

    async def find_bundle_request(self, origin_region: str, request_id: str) -> BundleRow | None:
        """The bundle an idempotency key names, if any."""

    async def get_bundle(self, bundle_id: str) -> BundleRow | None:
        """One bundle by id."""

    async def update_bundle_with(
        self, bundle_id: str, fn: Callable[[BundleRow], BundleRow | None]
    ) -> BundleRow | None:
        """Read-modify-write of one bundle, atomically, as `update_with`: only `state`,
        `update_time` and `body` change."""

    async def bundle_stats(self, now: float, state: int) -> list[tuple[str, int, int]]:
        """Per theme code with bundles in `state`: (theme code, how many, how many of them are
        past their due time at `now`), in theme code order."""

    async def bundle_bodies(self, state: int, limit: int) -> list[tuple[str, bytes]]:
        """(theme code, stored body) of up to `limit` bundles in `state`, earliest due first."""


class CatalogStore(Protocol):
    """Catalog versions (immutable, ordered) and one implementation list per province."""

    async def insert_catalog_version(self, version: NewCatalogVersion) -> bool:
        """Stores a new version if its sort key is greater than every stored version's, the
        check and the insert as one atomic step; returns whether it stored it."""

    async def catalog_versions(self) -> list[StoredDocument]:
        """Every stored version, oldest (lowest sort key) first."""

    async def upsert_region_catalog(self, region_code: str, document: StoredDocument) -> None:
        """Stores a province's list, replacing the one it had."""

    async def region_catalog_codes(self) -> list[str]:
        """The provinces with a stored list, in code order."""

    async def region_catalog(self, region_code: str) -> StoredDocument | None:
        """One province's list, if stored."""

    async def catalog_marker(self) -> CatalogMarker:
        """The newest version's sort key and every list's digest (cheap: read every second)."""


class Store(ApplicationStore, BundleStore, CatalogStore, ChangeFeed, Protocol):
    """A whole backend, as the process opens and closes it."""

    async def close(self) -> None:
        """Commits what is queued and releases every resource; closing again does nothing."""

    def commit_stats(self) -> tuple[int, int]:
        """(transactions committed, writes committed) since opening, for metrics."""
