"""A province's implementation list in memory: compact columns, indexed both ways.

Invariants:
- An index is built once, by `IndexBuilder` (`RegionIndex.build` for a parsed list), and never
  changes after: snapshots share it, and a list published again is a new index.
- The first row of a repeated local code wins (repeats are identical); a repeat stays a row, so
  `len` and `document` give the list back as published.
- Every local code has one packed key in `_first`: its first row, its set of national codes and
  its cancel date's id in `PACK_BITS` bits each, its group hint above them. A list longer than a
  row field can hold is refused when built.
- Rows are small integers in arrays and shared strings: the index holds no GC-tracked object per
  row, so the cyclic collector does not walk its rows.
- `resolution.resolve` and `resolution.translate` read the packed key and the columns directly,
  not through methods: they run on every request.
"""

from __future__ import annotations

import sys
import threading
from array import array
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime

from gateway.catalog.model import RegionCatalogDocument, RegionEntry

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
SET_SHIFT, CANCEL_SHIFT, HINT_SHIFT = PACK_BITS, 2 * PACK_BITS, 3 * PACK_BITS
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
before packing, its groups), and sharing them spares a new int object per row."""


_ROW_NUMBERS_LOCK = threading.Lock()

_SETS: dict[tuple[str, ...], tuple[str, ...]] = {}
"""Sets of national codes shared by every index (`setdefault` is atomic for builder threads):
the provinces implement mostly the same single-matter sets, so one copy of each serves them all."""


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
