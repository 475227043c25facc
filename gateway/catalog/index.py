"""The in-memory catalog: an immutable snapshot, and resolution and translation over it.

Invariants:
- A `CatalogSnapshot` never changes. Publishing builds a new snapshot and swaps one reference
  (`CatalogRegistry.snapshot`), so a reader that took a snapshot sees the old state or the new
  one, never a mix, and a request finishes on the snapshot it started with.
- The current version is the newest one whose effective time has passed; later ones are
  scheduled. A region list maps local codes to national codes independently of the version; a
  national code missing from the version in use resolves to `MATTER_NOT_FOUND`.
- Resolution is pure: snapshot + request + clock reading in, a resolution or a domain error out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum

from gateway.catalog.model import CatalogDocument, Matter, RegionCatalogDocument, RegionEntry
from gateway.errors import (
    CatalogVersionNotFound,
    FieldViolation,
    InvalidRequest,
    LocalCodeAmbiguous,
    LocalCodeNotFound,
    LocalCodeRetired,
    MatterNotFound,
    MatterNotImplemented,
    RegionNotFound,
)


class Shape(Enum):
    """How a local code relates to its national matter (values match `MappingShape`)."""

    ONE_TO_ONE = 1
    MANY_TO_ONE = 2
    ONE_TO_MANY = 3


@dataclass(frozen=True)
class VersionRecord:
    """A published catalog version."""

    document: CatalogDocument
    publish_time: datetime
    digest: str


@dataclass(frozen=True)
class RegionIndex:
    """A province's implementation list, indexed both ways."""

    document: RegionCatalogDocument
    publish_time: datetime
    digest: str
    by_local: dict[str, RegionEntry]
    by_national: dict[str, tuple[RegionEntry, ...]]

    @classmethod
    def build(cls, doc: RegionCatalogDocument, publish_time: datetime, digest: str) -> RegionIndex:
        """Indexes a list; the first row of a repeated local code wins (repeats are identical)."""
        by_local: dict[str, RegionEntry] = {}
        grouped: dict[str, list[RegionEntry]] = {}
        for entry in doc.entries:
            if entry.local_code in by_local:
                continue
            by_local[entry.local_code] = entry
            for code in entry.national_codes:
                grouped.setdefault(code, []).append(entry)
        return cls(doc, publish_time, digest, by_local, {k: tuple(v) for k, v in grouped.items()})

    def live_entries(self, national_code: str, day: date) -> tuple[RegionEntry, ...]:
        """Rows implementing a national matter that are not retired on `day`, in list order."""
        return tuple(e for e in self.by_national.get(national_code, ()) if not e.retired_on(day))


@dataclass(frozen=True)
class Resolution:
    """A local code resolved to a national matter."""

    region_code: str
    entry: RegionEntry
    matter: Matter
    shape: Shape
    version: str


@dataclass(frozen=True)
class CatalogSnapshot:
    """Everything the catalog knows at one moment."""

    provinces: dict[str, str]
    """Province code → name (GB/T 2260)."""
    versions: tuple[VersionRecord, ...] = ()
    """Published versions, oldest first."""
    regions: dict[str, RegionIndex] | None = None
    """Implementation lists by province code."""

    def region_indexes(self) -> dict[str, RegionIndex]:
        """The implementation lists (empty when none)."""
        return self.regions or {}

    def current(self, now: datetime) -> VersionRecord | None:
        """The newest version in force at `now`."""
        for record in reversed(self.versions):
            if record.document.effective_time <= now:
                return record
        return None

    def latest(self) -> VersionRecord | None:
        """The newest published version, in force or scheduled."""
        return self.versions[-1] if self.versions else None

    def version(self, version: str, now: datetime) -> VersionRecord:
        """A version by name; empty or `-` means the current one."""
        if version in ("", "-"):
            record = self.current(now)
            if record is None:
                raise CatalogVersionNotFound("no catalog version is in force yet")
            return record
        for record in self.versions:
            if record.document.version == version:
                return record
        raise CatalogVersionNotFound(
            f"catalog version {version} was never published", metadata={"version": version}
        )

    def with_version(self, record: VersionRecord) -> CatalogSnapshot:
        """A new snapshot with one more version."""
        return CatalogSnapshot(self.provinces, (*self.versions, record), self.regions)

    def with_region(self, index: RegionIndex) -> CatalogSnapshot:
        """A new snapshot with one province's list replaced."""
        regions = dict(self.region_indexes())
        regions[index.document.region_code] = index
        return CatalogSnapshot(self.provinces, self.versions, regions)


def require_region(snapshot: CatalogSnapshot, region_code: str, field: str) -> RegionIndex | None:
    """The province's list (None if it published none); REGION_NOT_FOUND if no such province."""
    if region_code not in snapshot.provinces:
        raise RegionNotFound(
            f"{region_code!r} is not a province-level region code",
            metadata={"field": field},
        )
    return snapshot.region_indexes().get(region_code)


def resolve(
    snapshot: CatalogSnapshot,
    region_code: str,
    local_code: str,
    *,
    now: datetime,
    national_code: str = "",
    version: str = "",
    national_field: str = "national_code",
) -> Resolution:
    """Resolves a province's local code to the national matter it implements."""
    record = snapshot.version(version, now)
    index = require_region(snapshot, region_code, "region_code")
    entry = index.by_local.get(local_code) if index else None
    if entry is None:
        raise LocalCodeNotFound(
            f"province {region_code} has no matter with local code {local_code!r}",
            metadata={"region_code": region_code},
        )
    day = now.date()
    if entry.retired_on(day):
        raise LocalCodeRetired(
            f"local code {local_code!r} of province {region_code} was retired on "
            f"{entry.cancel_date}",
            metadata={"region_code": region_code, "cancel_date": str(entry.cancel_date)},
        )
    if national_code:
        if national_code not in entry.national_codes:
            raise InvalidRequest(
                f"local code {local_code!r} does not cover national matter {national_code}",
                field_violations=[
                    FieldViolation(
                        national_field,
                        "not covered by the local code; candidates: "
                        + ", ".join(entry.national_codes),
                        "NOT_A_CANDIDATE",
                    )
                ],
                metadata={"candidates": ",".join(entry.national_codes)},
            )
        chosen = national_code
    elif len(entry.national_codes) > 1:
        raise LocalCodeAmbiguous(
            f"local code {local_code!r} covers {len(entry.national_codes)} national matters; "
            "say which one with national_code",
            metadata={"candidates": ",".join(entry.national_codes)},
        )
    else:
        chosen = entry.national_codes[0]
    matter = record.document.matters.get(chosen)
    if matter is None:
        raise MatterNotFound(
            f"national matter {chosen} is not in catalog version {record.document.version}",
            metadata={"version": record.document.version},
        )
    if len(entry.national_codes) > 1:
        shape = Shape.ONE_TO_MANY
    elif index is not None and len(index.live_entries(chosen, day)) > 1:
        shape = Shape.MANY_TO_ONE
    else:
        shape = Shape.ONE_TO_ONE
    return Resolution(region_code, entry, matter, shape, record.document.version)


def targets(
    snapshot: CatalogSnapshot, source: Resolution, to_region: str, *, now: datetime
) -> tuple[Resolution, ...]:
    """The target province's live rows for the source's national matter, preferred first."""
    index = require_region(snapshot, to_region, "to_region_code")
    code = source.matter.code
    entries = index.live_entries(code, now.date()) if index else ()
    if not entries:
        raise MatterNotImplemented(
            f"province {to_region} does not implement national matter {code}",
            metadata={"region_code": to_region, "national_code": code},
        )
    many = len(entries) > 1
    return tuple(
        Resolution(
            to_region,
            e,
            source.matter,
            Shape.ONE_TO_MANY
            if len(e.national_codes) > 1
            else (Shape.MANY_TO_ONE if many else Shape.ONE_TO_ONE),
            source.version,
        )
        for e in entries
    )
