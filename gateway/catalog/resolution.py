"""The catalog at one moment: an immutable snapshot, and resolution and translation over it.

Invariants:
- A `CatalogSnapshot` never changes. Publishing builds a new snapshot and swaps one reference
  (`CatalogRegistry.snapshot`), so a reader that took a snapshot sees the old state or the new
  one, never a mix, and a request finishes on the snapshot it started with.
- The current version is the newest one whose effective time has passed; later ones are
  scheduled. A region list maps local codes to national codes independently of the version; a
  national code missing from the version in use resolves to `MATTER_NOT_FOUND`.
- Resolution is pure: snapshot + request + clock reading in, a resolution or a domain error out.
- `translate` answers exactly as `resolve` followed by `targets(...)[0]`, errors included (a
  property test holds them together); it exists because a submission translates on every call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import NamedTuple, overload

from gateway.catalog.model import CatalogDocument, Matter, RegionEntry
from gateway.catalog.region_index import (
    ALONE,
    CANCEL_SHIFT,
    HINT_SHIFT,
    PACK_MASK,
    SET_SHIFT,
    SEVERAL,
    RegionIndex,
)
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


class Resolution(NamedTuple):
    """A local code resolved to a national matter (immutable; its row is read on demand)."""

    region_code: str
    matter: Matter
    shape: Shape
    version: str
    region_index: RegionIndex
    """The list the row belongs to."""
    row: int
    """The row in that list."""

    @property
    def entry(self) -> RegionEntry:
        """The row in its plain form."""
        return self.region_index.entry(self.row)

    @property
    def local_code(self) -> str:
        """The row's local code (what a submission needs, without building the entry)."""
        return self.region_index.local_code(self.row)


class Targets(Sequence[Resolution]):
    """A target province's live rows for a matter, preferred first; each built when read.

    A matter handled in every county has a hundred rows; a submission needs the first.
    """

    __slots__ = ("_index", "_many", "_matter", "_region", "_rows", "_version")

    def __init__(
        self, region: str, index: RegionIndex, rows: Sequence[int], matter: Matter, version: str
    ) -> None:
        self._region, self._index, self._rows = region, index, rows
        self._matter, self._version = matter, version
        self._many = len(rows) > 1

    def _at(self, row: int) -> Resolution:
        index = self._index
        if len(index.national_codes_of(row)) > 1:
            shape = Shape.ONE_TO_MANY
        else:
            shape = Shape.MANY_TO_ONE if self._many else Shape.ONE_TO_ONE
        return Resolution(self._region, self._matter, shape, self._version, index, row)

    @overload
    def __getitem__(self, i: int) -> Resolution: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[Resolution]: ...

    def __getitem__(self, i: int | slice) -> Resolution | Sequence[Resolution]:
        if isinstance(i, slice):
            return tuple(self._at(r) for r in self._rows[i])
        return self._at(self._rows[i])

    def __len__(self) -> int:
        return len(self._rows)


@dataclass(frozen=True)
class CatalogSnapshot:
    """Everything the catalog knows at one moment."""

    provinces: dict[str, str]
    """Province code → name (GB/T 2260)."""
    versions: tuple[VersionRecord, ...] = ()
    """Published versions, oldest first."""
    regions: dict[str, RegionIndex] | None = None
    """Implementation lists by province code."""
    _effective: tuple[datetime, ...] = field(init=False, repr=False, compare=False)
    """Effective times in UTC: aware datetimes with one tzinfo object compare without computing
    their two UTC offsets, which every lookup would otherwise pay (the gateway's clock is in
    UTC)."""

    def __post_init__(self) -> None:
        effective = tuple(r.document.effective_time.astimezone(UTC) for r in self.versions)
        object.__setattr__(self, "_effective", effective)
        # `resolve` and `translate` take a list's presence as proof of its province
        stray = set(self.region_indexes()) - set(self.provinces)
        if stray:
            raise ValueError(f"lists for codes that are no provinces: {sorted(stray)}")

    def region_indexes(self) -> dict[str, RegionIndex]:
        """The implementation lists (empty when none)."""
        return self.regions or {}

    def current(self, now: datetime) -> VersionRecord | None:
        """The newest version in force at `now`."""
        effective = self._effective
        if effective and effective[-1] <= now:  # the usual case: the newest is in force
            return self.versions[-1]
        for i in range(len(effective) - 1, -1, -1):
            if effective[i] <= now:
                return self.versions[i]
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
        regions[index.region_code] = index
        return CatalogSnapshot(self.provinces, self.versions, regions)


def require_region(snapshot: CatalogSnapshot, region_code: str, field: str) -> RegionIndex | None:
    """The province's list (None if it published none); REGION_NOT_FOUND if no such province."""
    if region_code not in snapshot.provinces:
        raise _region_not_found(region_code, field)
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
    # The steps of `translate`'s source half, inlined the same way: every RPC resolves, and a
    # helper shared by the two would add a call to each of them. The equivalence tests in
    # tests/catalog/test_resolution.py keep the two copies in step.
    effective = snapshot._effective
    record: VersionRecord | None
    if not version and effective and effective[-1] <= now:
        record = snapshot.versions[-1]
    else:
        record = snapshot.current(now) if not version else None
        if record is None:
            record = snapshot.version(version, now)
    index = (snapshot.regions or _NO_REGIONS).get(region_code)
    if index is None:
        raise _without_list(snapshot, region_code, local_code)
    key = index._first.get(local_code)
    if key is None:
        raise _local_code_not_found(region_code, local_code)
    row = key & PACK_MASK
    ordinal = now.toordinal()
    if ordinal > index._cancels[(key >> CANCEL_SHIFT) & PACK_MASK]:
        raise _retired(index, row, region_code, local_code)
    nationals = index._sets[(key >> SET_SHIFT) & PACK_MASK]
    if len(nationals) == 1 and (not national_code or national_code == nationals[0]):
        chosen = nationals[0]
    else:
        chosen = _choose(nationals, local_code, national_code, national_field)
    document = record.document
    matter = document.matters.get(chosen)
    if matter is None:
        raise _matter_not_found(chosen, record)
    hint = key >> HINT_SHIFT
    if len(nationals) > 1:
        shape = Shape.ONE_TO_MANY
    elif hint == ALONE:
        shape = Shape.ONE_TO_ONE
    elif hint == SEVERAL:
        shape = Shape.MANY_TO_ONE
    else:  # several rows, some retiring: are two still live?
        many = ordinal <= index._many_until[index._nat_id[chosen]]
        shape = Shape.MANY_TO_ONE if many else Shape.ONE_TO_ONE
    # tuple.__new__ skips the named tuple's Python-level __new__
    return tuple.__new__(Resolution, (region_code, matter, shape, document.version, index, row))


_NO_REGIONS: dict[str, RegionIndex] = {}


def targets(
    snapshot: CatalogSnapshot, source: Resolution, to_region: str, *, now: datetime
) -> Targets:
    """The target province's live rows for the source's national matter, preferred first."""
    index = require_region(snapshot, to_region, "to_region_code")
    code = source.matter.code
    rows = index.live_rows(code, now.date()) if index else ()
    if index is None or not rows:
        raise _not_implemented(to_region, code)
    return Targets(to_region, index, rows, source.matter, source.version)


Translation = tuple[Matter, str, str]
"""`(matter, version, target_local_code)`: the national matter the source's local code resolves
to, the catalog version it was resolved in, and the target province's preferred live local code
for it (`targets(...)[0].local_code`). A plain tuple: a named one would add a Python-level
`__new__` call to every translation."""


def translate(
    snapshot: CatalogSnapshot,
    region_code: str,
    local_code: str,
    to_region: str,
    *,
    now: datetime,
    national_code: str = "",
    version: str = "",
    national_field: str = "national_code",
) -> Translation:
    """`resolve` then `targets(...)[0]` in one step, without building either result.

    The same answers and the same errors, in the same order (the source's, then the target's):
    a submission translates on every call, and the two general functions build what it does not
    need (a `Resolution`, the target's live rows, a `Targets`), with the Python steps and memory
    touches that takes.
    """
    effective = snapshot._effective
    record: VersionRecord | None
    if not version and effective and effective[-1] <= now:  # `current`, inlined: the usual case
        record = snapshot.versions[-1]
    else:
        record = snapshot.current(now) if not version else None
        if record is None:
            record = snapshot.version(version, now)
    document = record.document
    regions = snapshot.regions or _NO_REGIONS
    index = regions.get(region_code)
    if index is None:
        raise _without_list(snapshot, region_code, local_code)
    key = index._first.get(local_code)
    if key is None:
        raise _local_code_not_found(region_code, local_code)
    ordinal = now.toordinal()  # of now's own date, as `now.date()` in `resolve`
    if ordinal > index._cancels[(key >> CANCEL_SHIFT) & PACK_MASK]:
        raise _retired(index, key & PACK_MASK, region_code, local_code)
    nationals = index._sets[(key >> SET_SHIFT) & PACK_MASK]
    if len(nationals) == 1 and (not national_code or national_code == nationals[0]):
        chosen = nationals[0]  # interned: the dict lookups below compare pointers, not text
    else:
        chosen = _choose(nationals, local_code, national_code, national_field)
    matter = document.matters.get(chosen)
    if matter is None:
        raise _matter_not_found(chosen, record)
    target = regions.get(to_region)
    if target is None:
        if to_region not in snapshot.provinces:
            raise _region_not_found(to_region, "to_region_code")
        raise _not_implemented(to_region, matter.code)  # a province without a list
    local = target._preferred.get(chosen)  # chosen == matter.code
    if local is None:  # a group whose first row retires, or none at all
        step = target._stepped.get(chosen)
        while step is not None and ordinal > step[0]:
            step = step[2]
        if step is None:
            raise _not_implemented(to_region, matter.code)
        local = step[1]
    return matter, document.version, local


# -- the errors of a resolution, built in one place for `resolve` and `translate` --------------


def _region_not_found(region_code: str, field: str) -> RegionNotFound:
    return RegionNotFound(
        f"{region_code!r} is not a province-level region code", metadata={"field": field}
    )


def _without_list(
    snapshot: CatalogSnapshot, region_code: str, local_code: str
) -> RegionNotFound | LocalCodeNotFound:
    """The error for a region with no list: no such province, or one that published none."""
    if region_code not in snapshot.provinces:
        return _region_not_found(region_code, "region_code")
    return _local_code_not_found(region_code, local_code)


def _local_code_not_found(region_code: str, local_code: str) -> LocalCodeNotFound:
    return LocalCodeNotFound(
        f"province {region_code} has no matter with local code {local_code!r}",
        metadata={"region_code": region_code},
    )


def _retired(index: RegionIndex, row: int, region_code: str, local_code: str) -> LocalCodeRetired:
    cancel_date = index.entry(row).cancel_date
    return LocalCodeRetired(
        f"local code {local_code!r} of province {region_code} was retired on {cancel_date}",
        metadata={"region_code": region_code, "cancel_date": str(cancel_date)},
    )


def _choose(
    nationals: tuple[str, ...], local_code: str, national_code: str, national_field: str
) -> str:
    """The national matter a row stands for: the one named, or its only one."""
    if national_code:
        if national_code not in nationals:
            raise InvalidRequest(
                f"local code {local_code!r} does not cover national matter {national_code}",
                field_violations=[
                    FieldViolation(
                        national_field,
                        "not covered by the local code; candidates: " + ", ".join(nationals),
                        "NOT_A_CANDIDATE",
                    )
                ],
                metadata={"candidates": ",".join(nationals)},
            )
        return national_code
    if len(nationals) > 1:
        raise LocalCodeAmbiguous(
            f"local code {local_code!r} covers {len(nationals)} national matters; "
            "say which one with national_code",
            metadata={"candidates": ",".join(nationals)},
        )
    return nationals[0]


def _matter_not_found(code: str, record: VersionRecord) -> MatterNotFound:
    return MatterNotFound(
        f"national matter {code} is not in catalog version {record.document.version}",
        metadata={"version": record.document.version},
    )


def _not_implemented(to_region: str, code: str) -> MatterNotImplemented:
    return MatterNotImplemented(
        f"province {to_region} does not implement national matter {code}",
        metadata={"region_code": to_region, "national_code": code},
    )
