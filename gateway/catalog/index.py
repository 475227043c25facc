"""The in-memory catalog: an immutable snapshot, and resolution and translation over it.

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

import sys
import threading
from array import array
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import Enum
from typing import NamedTuple, overload

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


NEVER = 2**31 - 1
"""Cancel-date ordinal of a row that is never retired."""

Preferred = tuple[int, str, "Preferred | None"]
"""`(until, local_code, then)`: a group's first live row is `local_code` on days up to the
ordinal `until`, and `then` on later days (None: no live row). Steps follow the running maximum
of the cancel dates in list order, so a group without retirements is one step."""

PACK_BITS = 19
"""Bits of the row, set and cancel-id fields of a packed row key (`RegionIndex._first`). With
the 2-bit group hint that is 59 bits, a two-digit int; a list holds at most 2**19 rows (the
service caps one at 200,000)."""
PACK_MASK = (1 << PACK_BITS) - 1
_SET_SHIFT, _CANCEL_SHIFT, _HINT_SHIFT = PACK_BITS, 2 * PACK_BITS, 3 * PACK_BITS
"""Where a packed key's fields start, named once: `2 * PACK_BITS` in a lookup is three steps."""

ALONE, SEVERAL, SEVERAL_RETIRING = 0, 1, 2
"""Group hints of a row key: the row's national matter (its only one) has this row alone as its
implementation; several rows, none ever retired; several, some with a cancel date. The first
two give a resolution's shape without reading the group."""


class RegionIndex:
    """A province's implementation list in compact columns, indexed both ways.

    At a million rows per gateway a dataclass and a dict per row cost more than the rows
    themselves, so rows live in parallel arrays of small integers: names and agencies are
    interned per list, sets of national codes across lists, a cancel date is a day ordinal.
    The index holds the only copy of the list; `document` and `entry` rebuild the plain form on
    demand. The local code map and the arrays hold no GC-tracked objects per row, so the cyclic
    collector does not walk a million rows (a walk would stall the event loop).
    """

    __slots__ = (
        "_agencies",
        "_agency",
        "_cancel",
        "_cancels",
        "_earliest",
        "_first",
        "_local",
        "_many_until",
        "_name",
        "_names",
        "_nat_id",
        "_preferred",
        "_rows",
        "_set",
        "_sets",
        "_span",
        "_stepped",
        "catalog_version",
        "dialect",
        "digest",
        "provenance",
        "publish_time",
        "region_code",
        "region_name",
    )

    region_code: str
    """The province's GB/T 2260 code."""
    region_name: str
    dialect: str
    catalog_version: str
    provenance: str
    publish_time: datetime
    digest: str
    _local: list[str]
    """Local code of every row, in list order (a repeat shares its first row's string)."""
    _first: dict[str, int]
    """Local code → its first row, packed with what a lookup needs of it:
    `row | set << PACK_BITS | cancel_id << 2 * PACK_BITS | hint << 3 * PACK_BITS`. One int
    object read instead of arrays and group tables at scattered addresses: at a million rows
    each of those reads is a cache miss."""
    _set: array[int]
    """Row → index into `_sets`."""
    _sets: list[tuple[str, ...]]
    _name: array[int]
    """Row → index into `_names`."""
    _names: list[str]
    _agency: array[int]
    """Row → index into `_agencies` ((name, code) pairs)."""
    _agencies: list[tuple[str, str]]
    _cancel: array[int]
    """Row → cancel-date ordinal, `NEVER` when none."""
    _cancels: list[int]
    """Cancel id (in a row key) → cancel-date ordinal: a list has few distinct dates."""
    _nat_id: dict[str, int]
    """National code → its group; group k's first rows are `_rows[_span[k]:_span[k + 1]]`."""
    _span: array[int]
    _rows: array[int]
    _earliest: array[int]
    """Group → the earliest cancel ordinal among its rows: before it no row is retired."""
    _many_until: array[int]
    """Group → the last day ordinal on which two or more of its rows are live (its second
    latest cancel ordinal; -1 for a group of one): a resolution's N:1 or 1:1 without a scan."""
    _preferred: dict[str, str]
    """National code → the local code of its first live row, for groups whose first row never
    retires (the usual case): what a translation needs, one lookup and no object read."""
    _stepped: dict[str, Preferred]
    """The other groups' first live row by day (`Preferred` steps)."""

    @classmethod
    def build(cls, doc: RegionCatalogDocument, publish_time: datetime, digest: str) -> RegionIndex:
        """Indexes a list; the first row of a repeated local code wins (repeats are identical)."""
        builder = IndexBuilder()
        builder.add_entries(doc.entries)
        return builder.finish(doc, publish_time, digest)

    def __len__(self) -> int:
        """Rows in the list, repeats included."""
        return len(self._local)

    @property
    def document(self) -> RegionCatalogDocument:
        """The list as published (rebuilt row by row: for responses and tests, not hot paths)."""
        return RegionCatalogDocument(
            self.region_code,
            tuple(self.entry(row) for row in range(len(self._local))),
            self.region_name,
            self.dialect,
            self.catalog_version,
            self.provenance,
        )

    def entry(self, row: int) -> RegionEntry:
        """Row `row` in its plain form."""
        agency_name, agency_code = self._agencies[self._agency[row]]
        cancel = self._cancel[row]
        return RegionEntry(
            self._local[row],
            self._sets[self._set[row]],
            self._names[self._name[row]],
            agency_name,
            agency_code,
            None if cancel == NEVER else date.fromordinal(cancel),
        )

    def local_code(self, row: int) -> str:
        """Row `row`'s local code."""
        return self._local[row]

    def row_names(self, row: int) -> tuple[str, str, str]:
        """Row `row`'s local code, local name and agency name (what a response shows)."""
        return self._local[row], self._names[self._name[row]], self._agencies[self._agency[row]][0]

    def national_codes_of(self, row: int) -> tuple[str, ...]:
        """The national codes row `row` implements."""
        return self._sets[self._set[row]]

    def national_codes(self) -> Collection[str]:
        """Every national code some row implements (retired rows included)."""
        return self._nat_id.keys()

    def live_rows(self, national_code: str, day: date) -> Sequence[int]:
        """First rows implementing a national matter that are not retired on `day`, in order."""
        k = self._nat_id.get(national_code)
        if k is None:
            return ()
        rows = self._rows[self._span[k] : self._span[k + 1]]
        ordinal = day.toordinal()
        if ordinal <= self._earliest[k]:
            return rows
        cancel = self._cancel
        return [r for r in rows if ordinal <= cancel[r]]

    def live_entries(self, national_code: str, day: date) -> tuple[RegionEntry, ...]:
        """Rows implementing a national matter that are not retired on `day`, in list order."""
        return tuple(self.entry(r) for r in self.live_rows(national_code, day))

    @property
    def by_local(self) -> Mapping[str, RegionEntry]:
        """Local code → the entry of its first row."""
        return _LocalView(self)

    @property
    def by_national(self) -> Mapping[str, tuple[RegionEntry, ...]]:
        """National code → the entries of every first row implementing it (retired included)."""
        return _NationalView(self)


_ROW_NUMBERS: list[int] = []
"""Row numbers shared by every builder: a list being built holds one per row (its first-row map
before packing, its groups), and a million new int objects would cost 32 MB."""


_ROW_NUMBERS_LOCK = threading.Lock()

_SETS: dict[tuple[str, ...], tuple[str, ...]] = {}
"""Sets of national codes shared by every index (`setdefault` is atomic for builder threads):
31 provinces implement mostly the same 5,000 single-matter sets; one copy of each instead of 31
saves ~7 bytes per mapping at a million rows."""


def _row_number(row: int) -> int:
    if row >= len(_ROW_NUMBERS):
        with _ROW_NUMBERS_LOCK:  # builders run in worker threads
            if row >= len(_ROW_NUMBERS):
                _ROW_NUMBERS.extend(range(len(_ROW_NUMBERS), 2 * row + 1024))
    return _ROW_NUMBERS[row]


class IndexBuilder:
    """Accumulates rows into the columns of a `RegionIndex` (in chunks, if the caller likes)."""

    def __init__(self) -> None:
        self.local: list[str] = []
        self.first: dict[str, int] = {}
        self.set_col = array("i")
        self.sets: list[tuple[str, ...]] = []
        self.set_ids: dict[tuple[str, ...], int] = {}
        self.name_col = array("i")
        self.names: list[str] = []
        self.name_ids: dict[str, int] = {}
        self.agency_col = array("i")
        self.agencies: list[tuple[str, str]] = []
        self.agency_ids: dict[tuple[str, str], int] = {}
        self.cancel_col = array("i")
        self.groups: dict[str, list[int]] = {}
        self._dates: dict[date, int] = {}

    def add(
        self,
        local_code: str,
        national_codes: tuple[str, ...],
        local_name: str,
        agency: tuple[str, str],
        cancel: int,
    ) -> None:
        """Adds one row; `cancel` is the cancel-date ordinal or `NEVER`."""
        row = _row_number(len(self.local))
        first = self.first.setdefault(local_code, row)
        if first == row:
            self.local.append(local_code)
            for code in national_codes:
                group = self.groups.get(code)
                if group is None:
                    self.groups[code] = [row]
                else:
                    group.append(row)
        else:
            self.local.append(self.local[first])
        set_id = self.set_ids.get(national_codes)
        if set_id is None:
            set_id = self.set_ids[national_codes] = len(self.sets)
            interned = tuple(sys.intern(c) for c in national_codes)
            self.sets.append(_SETS.setdefault(interned, interned))
        self.set_col.append(set_id)
        name_id = self.name_ids.get(local_name)
        if name_id is None:
            name_id = self.name_ids[local_name] = len(self.names)
            self.names.append(sys.intern(local_name))  # provinces share most names
        self.name_col.append(name_id)
        agency_id = self.agency_ids.get(agency)
        if agency_id is None:
            agency_id = self.agency_ids[agency] = len(self.agencies)
            self.agencies.append(agency)
        self.agency_col.append(agency_id)
        self.cancel_col.append(cancel)

    def add_entries(self, entries: Iterable[RegionEntry]) -> None:
        """Adds parsed rows."""
        dates = self._dates
        for e in entries:
            cancel = NEVER
            if e.cancel_date is not None:
                cancel = dates.get(e.cancel_date) or dates.setdefault(
                    e.cancel_date, e.cancel_date.toordinal()
                )
            self.add(
                e.local_code, e.national_codes, e.local_name, (e.agency_name, e.agency_code), cancel
            )

    def _pack_first(self, hints: dict[str, int]) -> list[int]:
        """Replaces each first row in `first` by its packed key, given each national code's
        group hint; returns the cancel-id table."""
        if len(self.local) > PACK_MASK + 1:
            raise ValueError(f"a list holds at most {PACK_MASK + 1} rows")
        ids: dict[int, int] = {}
        cancels: list[int] = []
        set_col, cancel_col, sets, first = self.set_col, self.cancel_col, self.sets, self.first
        for code, row in first.items():
            cancel = cancel_col[row]
            cancel_id = ids.get(cancel)
            if cancel_id is None:
                cancel_id = ids[cancel] = len(cancels)
                cancels.append(cancel)
            nationals = sets[set_col[row]]
            # only a row with one national matter uses the hint (more: the shape is 1:N)
            hint = hints[nationals[0]] if len(nationals) == 1 else SEVERAL_RETIRING
            first[code] = (
                row | set_col[row] << PACK_BITS | cancel_id << 2 * PACK_BITS | hint << 3 * PACK_BITS
            )
        return cancels

    def finish(
        self, header: RegionCatalogDocument, publish_time: datetime, digest: str
    ) -> RegionIndex:
        """The index; `header` gives the list's fields other than its entries."""
        nat_id: dict[str, int] = {}
        span = array("i", [0])
        rows = array("i")
        earliest = array("i")
        many_until = array("i")
        preferred: dict[str, str] = {}
        stepped: dict[str, Preferred] = {}
        hints: dict[str, int] = {}
        cancel, local = self.cancel_col, self.local
        for k, (code, group) in enumerate(self.groups.items()):
            national = sys.intern(code)
            nat_id[national] = k
            rows.extend(group)
            span.append(len(rows))
            earliest.append(min(cancel[r] for r in group))
            many_until.append(sorted(cancel[r] for r in group)[-2] if len(group) > 1 else -1)
            if len(group) == 1:
                hints[national] = ALONE
            else:
                hints[national] = SEVERAL if earliest[k] == NEVER else SEVERAL_RETIRING
            steps = _preferred_steps(group, cancel, local)
            if steps[0] == NEVER:
                preferred[national] = steps[1]
            else:
                stepped[national] = steps
        cancels = self._pack_first(hints)
        index = RegionIndex.__new__(RegionIndex)
        index.region_code = header.region_code
        index.region_name = header.region_name
        index.dialect = header.dialect
        index.catalog_version = header.catalog_version
        index.provenance = header.provenance
        index.publish_time = publish_time
        index.digest = digest
        index._local = self.local
        index._first = self.first
        index._set, index._sets = self.set_col, self.sets
        index._name, index._names = self.name_col, self.names
        index._agency, index._agencies = self.agency_col, self.agencies
        index._cancel, index._cancels = cancel, cancels
        index._nat_id, index._span, index._rows, index._earliest = nat_id, span, rows, earliest
        index._many_until = many_until
        index._preferred, index._stepped = preferred, stepped
        return index


def _preferred_steps(group: Sequence[int], cancel: array[int], local: list[str]) -> Preferred:
    """The `Preferred` steps of a group of rows (in list order).

    The first row live on day d is the first whose cancel ordinal is >= d: the first row where
    the running maximum of the cancel ordinals reaches d. So the rows that raise the running
    maximum are the steps, each preferred up to its own cancel ordinal.
    """
    raising: list[int] = []
    top = -1
    for r in group:
        if cancel[r] > top:
            raising.append(r)
            top = cancel[r]
            if top == NEVER:
                break
    step: Preferred | None = None
    for r in reversed(raising):
        step = (cancel[r], local[r], step)
    assert step is not None  # a group has at least one row
    return step


class _LocalView(Mapping[str, RegionEntry]):
    def __init__(self, index: RegionIndex) -> None:
        self._index = index

    def __getitem__(self, local_code: str) -> RegionEntry:
        return self._index.entry(self._index._first[local_code] & PACK_MASK)

    def __iter__(self) -> Iterator[str]:
        return iter(self._index._first)

    def __len__(self) -> int:
        return len(self._index._first)

    def __contains__(self, key: object) -> bool:
        return key in self._index._first


class _NationalView(Mapping[str, tuple[RegionEntry, ...]]):
    def __init__(self, index: RegionIndex) -> None:
        self._index = index

    def __getitem__(self, national_code: str) -> tuple[RegionEntry, ...]:
        ix = self._index
        k = ix._nat_id[national_code]
        return tuple(ix.entry(r) for r in ix._rows[ix._span[k] : ix._span[k + 1]])

    def __iter__(self) -> Iterator[str]:
        return iter(self._index._nat_id)

    def __len__(self) -> int:
        return len(self._index._nat_id)


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
    """Effective times in UTC: aware datetimes with one tzinfo object compare without the two
    UTC offsets, which cost more than the rest of a lookup (the gateway's clock is in UTC)."""

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
    # The steps of `translate`'s source half, inlined the same way: every RPC resolves. A shared
    # helper for the two measured +10% per resolve and +24% per translate (hot loop); the
    # equivalence tests in tests/catalog/test_index.py keep the two copies in step.
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
    if ordinal > index._cancels[(key >> _CANCEL_SHIFT) & PACK_MASK]:
        raise _retired(index, row, region_code, local_code)
    nationals = index._sets[(key >> _SET_SHIFT) & PACK_MASK]
    if len(nationals) == 1 and (not national_code or national_code == nationals[0]):
        chosen = nationals[0]
    else:
        chosen = _choose(nationals, local_code, national_code, national_field)
    document = record.document
    matter = document.matters.get(chosen)
    if matter is None:
        raise _matter_not_found(chosen, record)
    hint = key >> _HINT_SHIFT
    if len(nationals) > 1:
        shape = Shape.ONE_TO_MANY
    elif hint == ALONE:
        shape = Shape.ONE_TO_ONE
    elif hint == SEVERAL:
        shape = Shape.MANY_TO_ONE
    else:  # several rows, some retiring: are two still live?
        many = ordinal <= index._many_until[index._nat_id[chosen]]
        shape = Shape.MANY_TO_ONE if many else Shape.ONE_TO_ONE
    # tuple.__new__ skips the named tuple's Python-level __new__ (a tenth of a resolution)
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
for it (`targets(...)[0].local_code`). A plain tuple: a named one costs a Python-level `__new__`
call, a fifth of a translation."""


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
    a submission translates on every call, and at a million rows the two general functions'
    Python steps and memory touches cost several times the lookup itself.
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
    if ordinal > index._cancels[(key >> _CANCEL_SHIFT) & PACK_MASK]:
        raise _retired(index, key & PACK_MASK, region_code, local_code)
    nationals = index._sets[(key >> _SET_SHIFT) & PACK_MASK]
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
