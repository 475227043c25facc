"""Whether a province's implementation list can be routed under a catalog version.

Real provincial lists are dirty. The rule:
- a row that cannot be routed is an **error** and rejects the whole list: a national code the
  catalog does not have, or a local code listed twice with different targets;
- a row that can be routed but carries dirt is a **warning** with its row and reason: a legacy
  9-character organisation code, a truncated or failing USCC, a placeholder agency code, no
  agency name, an exact duplicate row, a row already retired; and, for a list that says its
  codes are in the national layout (`dialect` NATIONAL), a local code that is not
  (`dialect_warnings`, checked where the list's dialect is known: its file).
- Rows are named by their index in the list as the reader saw it: a reader that dropped
  unreadable rows passes the kept rows' original indexes (`rows`), so that one pass reports
  shape problems and these together, each at its row.
Pure: no I/O, the same input always gives the same report.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date

from gateway.catalog.codes import (
    AgencyCodeKind,
    classify_agency_code,
    validate_handling_item_code,
    validate_implementation_code,
)
from gateway.catalog.model import CatalogDocument, RegionCatalogDocument
from gateway.errors import FieldViolation

_AGENCY_WARNINGS: dict[AgencyCodeKind, str] = {
    AgencyCodeKind.USCC_BAD_CHECK: "the agency's USCC fails its GB 32100 check character",
    AgencyCodeKind.TRUNCATED_USCC: "the agency code has 17 characters: a USCC that lost one",
    AgencyCodeKind.LEGACY_ORG_CODE: "the agency code is a legacy GB 11714 organisation code",
    AgencyCodeKind.PLACEHOLDER: "the agency code is a placeholder",
    AgencyCodeKind.INVALID: "the agency code is neither a USCC nor an organisation code",
}


@dataclass(frozen=True, slots=True)
class RowWarning:
    """A routable row with dirt in it."""

    entry_index: int
    """Index of the row, from 0."""
    field: str
    """The field at fault."""
    reason: str
    """Stable UPPER_SNAKE reason."""
    description: str
    """A sentence for people."""


@dataclass(frozen=True)
class RegionCatalogReport:
    """Errors (any one rejects the list) and warnings (accepted rows with dirt)."""

    errors: tuple[FieldViolation, ...]
    warnings: tuple[RowWarning, ...]

    @property
    def ok(self) -> bool:
        """Whether the list can be published."""
        return not self.errors


def check_region_catalog(
    doc: RegionCatalogDocument,
    catalog: CatalogDocument,
    today: date,
    *,
    rows: Sequence[int] | None = None,
) -> RegionCatalogReport:
    """Checks every row of `doc` against `catalog`; reports all errors and warnings. `rows`
    gives each entry's index in the list as read (default: its position in `doc`)."""
    errors: list[FieldViolation] = []
    warnings: list[RowWarning] = []
    first_row: dict[str, int] = {}
    first_position: dict[str, int] = {}
    kinds: dict[str, AgencyCodeKind] = {}  # a list names a few thousand agencies, many times
    for position, entry in enumerate(doc.entries):
        i = position if rows is None else rows[position]
        for j, code in enumerate(entry.national_codes):
            if code not in catalog.matters:
                errors.append(
                    FieldViolation(
                        f"entries[{i}].national_codes[{j}]",
                        f"national code {code} is not in catalog version {catalog.version}",
                        "UNKNOWN_NATIONAL_CODE",
                    )
                )
        previous = first_row.get(entry.local_code)
        if previous is None:
            first_row[entry.local_code] = i
            first_position[entry.local_code] = position
        elif set(doc.entries[first_position[entry.local_code]].national_codes) != set(
            entry.national_codes
        ):
            errors.append(
                FieldViolation(
                    f"entries[{i}].local_code",
                    f"local code {entry.local_code} is also row {previous} with other targets",
                    "CONFLICTING_DUPLICATE",
                )
            )
        else:
            warnings.append(
                RowWarning(i, "local_code", "DUPLICATE_ROW", f"row repeats row {previous}")
            )
        kind = None
        if entry.agency_code:
            kind = kinds.get(entry.agency_code)
            if kind is None:
                kind = kinds[entry.agency_code] = classify_agency_code(entry.agency_code)
        if kind is not None and kind in _AGENCY_WARNINGS:
            warnings.append(RowWarning(i, "agency_code", kind.value, _AGENCY_WARNINGS[kind]))
        if not entry.agency_name:
            warnings.append(
                RowWarning(
                    i, "agency_name", "MISSING_AGENCY_NAME", "the row names no implementing agency"
                )
            )
        if entry.retired_on(today):
            warnings.append(
                RowWarning(i, "cancel_date", "RETIRED", f"retired since {entry.cancel_date}")
            )
    return RegionCatalogReport(tuple(errors), tuple(warnings))


def dialect_warnings(
    doc: RegionCatalogDocument, provinces: Collection[str], *, rows: Sequence[int] | None = None
) -> tuple[RowWarning, ...]:
    """For a NATIONAL list, each local code that is neither a 31-character 实施编码 nor a
    33-character 业务办理项编码; nothing for a list of another or no dialect."""
    if doc.dialect != "NATIONAL":
        return ()
    found = []
    for position, entry in enumerate(doc.entries):
        code = entry.local_code
        problem = (
            validate_handling_item_code(code, provinces)
            if len(code) == 33
            else validate_implementation_code(code, provinces)
        )
        if problem is not None:
            found.append(
                RowWarning(
                    position if rows is None else rows[position],
                    "local_code",
                    "NOT_NATIONAL_LAYOUT",
                    "the list's dialect is NATIONAL but the local code is not an implementation "
                    f"or handling item code: {problem.message}",
                )
            )
    return tuple(found)
