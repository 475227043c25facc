"""Tests for gateway.catalog.validation.

Rows that cannot be routed are errors naming every bad row; routable rows with dirt are
warnings with their row index and reason. The bundled Sichuan list is the real-world check: it
must produce exactly the dirty rows the README lists, and no error.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from gateway.catalog.documents import parse_catalog, parse_region_catalog
from gateway.catalog.model import (
    CatalogDocument,
    Matter,
    RegionCatalogDocument,
    RegionEntry,
    TimeLimit,
)
from gateway.catalog.validation import RowWarning, check_region_catalog, dialect_warnings

STANDARDS = Path(__file__).resolve().parents[2] / "standards"
TODAY = date(2025, 3, 1)
AGENCY = "11440000MBDCGK306L"  # a USCC with a valid check character


def _matter(code: str) -> Matter:
    return Matter(
        code=code,
        name=f"事项 {code}",
        type=code[2:4],
        competent_department="部门",
        cross_region_modes=("FULLY_ONLINE",),
        legal_time_limit=TimeLimit(10, "WORKING_DAYS"),
        promised_time_limit=TimeLimit(5, "WORKING_DAYS"),
        service_objects=("NATURAL_PERSON",),
        materials=(),
    )


CATALOG = CatalogDocument(
    version="2025.1",
    effective_time=datetime(2025, 1, 1, tzinfo=UTC),
    publisher="test",
    matters={c: _matter(c) for c in ("000117112000", "000117113000", "002041011000")},
)


def row(
    local: str,
    *nationals: str,
    agency: str = AGENCY,
    cancel: date | None = None,
    name: str = "事项",
) -> RegionEntry:
    return RegionEntry(local, nationals or ("000117112000",), name, "某局", agency, cancel)


def check(*rows: RegionEntry) -> tuple[list[tuple[str, str]], list[tuple[int, str, str]]]:
    report = check_region_catalog(RegionCatalogDocument("440000", rows), CATALOG, TODAY)
    assert report.ok == (not report.errors)
    return (
        [(e.field, e.reason) for e in report.errors],
        [(w.entry_index, w.field, w.reason) for w in report.warnings],
    )


def test_a_clean_list_has_no_errors_and_no_warnings() -> None:
    assert check(row("A"), row("B", "000117113000"), row("C", "000117112000", "002041011000")) == (
        [],
        [],
    )


def test_every_unknown_national_code_is_an_error_naming_its_row_and_position() -> None:
    errors, warnings = check(
        row("A"),
        row("B", "009999999000"),
        row("C"),
        row("D", "000117112000", "002099999000"),
        row("E", "000117199000", "000117198000"),
    )
    assert errors == [
        ("entries[1].national_codes[0]", "UNKNOWN_NATIONAL_CODE"),
        ("entries[3].national_codes[1]", "UNKNOWN_NATIONAL_CODE"),
        ("entries[4].national_codes[0]", "UNKNOWN_NATIONAL_CODE"),
        ("entries[4].national_codes[1]", "UNKNOWN_NATIONAL_CODE"),
    ]
    assert warnings == []


def test_the_error_message_names_the_code_and_the_version() -> None:
    report = check_region_catalog(
        RegionCatalogDocument("440000", (row("B", "009999999000"),)), CATALOG, TODAY
    )
    assert not report.ok
    assert "009999999000" in report.errors[0].description
    assert "2025.1" in report.errors[0].description


def test_every_conflicting_duplicate_local_code_is_an_error() -> None:
    errors, _ = check(
        row("A"),
        row("B", "000117113000"),
        row("A", "000117113000"),
        row("B", "000117113000", "000117112000"),
        row("C"),
    )
    assert errors == [
        ("entries[2].local_code", "CONFLICTING_DUPLICATE"),
        ("entries[3].local_code", "CONFLICTING_DUPLICATE"),
    ]


def test_a_repeat_compares_targets_as_a_set() -> None:
    errors, warnings = check(
        row("A", "000117112000", "000117113000"), row("A", "000117113000", "000117112000")
    )
    assert errors == []
    assert warnings == [(1, "local_code", "DUPLICATE_ROW")]


def test_an_exact_duplicate_row_is_a_warning_with_its_index() -> None:
    report = check_region_catalog(
        RegionCatalogDocument("440000", (row("A"), row("B"), row("A"), row("A"))), CATALOG, TODAY
    )
    assert report.ok
    assert report.warnings == (
        RowWarning(2, "local_code", "DUPLICATE_ROW", "row repeats row 0"),
        RowWarning(3, "local_code", "DUPLICATE_ROW", "row repeats row 0"),
    )


AGENCY_CASES = [
    ("009148976", "LEGACY_ORG_CODE"),  # bare GB 11714 code with a valid check
    ("00914897-6", "LEGACY_ORG_CODE"),  # the printed form
    (AGENCY[:17], "TRUNCATED_USCC"),
    (AGENCY[:17] + "A", "USCC_BAD_CHECK"),
    ("1111111111111111", "PLACEHOLDER"),
    ("000000000000000000", "PLACEHOLDER"),  # passes the USCC check, names no agency
    ("广东省人民政府", "INVALID"),
]


@pytest.mark.parametrize(("agency", "reason"), AGENCY_CASES)
def test_a_dirty_agency_code_is_a_warning_with_row_and_reason(agency: str, reason: str) -> None:
    report = check_region_catalog(
        RegionCatalogDocument("440000", (row("A"), row("B", agency=agency))), CATALOG, TODAY
    )
    assert report.ok
    assert [(w.entry_index, w.field, w.reason) for w in report.warnings] == [
        (1, "agency_code", reason)
    ]
    assert report.warnings[0].description


@pytest.mark.parametrize("agency", [AGENCY, "11370800MB28559184", ""])
def test_a_valid_or_absent_agency_code_is_not_a_warning(agency: str) -> None:
    assert check(row("A", agency=agency)) == ([], [])


def test_retirement_is_a_warning_only_after_the_cancel_date() -> None:
    errors, warnings = check(
        row("past", cancel=date(2024, 6, 30)),
        row("yesterday", cancel=date(2025, 2, 28)),
        row("today", cancel=TODAY),
        row("future", cancel=date(2030, 6, 30)),
    )
    assert errors == []
    assert warnings == [(0, "cancel_date", "RETIRED"), (1, "cancel_date", "RETIRED")]


def test_errors_and_warnings_are_reported_together() -> None:
    errors, warnings = check(
        row("A", agency="009148976"),
        row("B", "009999999000", cancel=date(2020, 1, 1)),
        row("A", agency="009148976"),
        row("A", "000117113000"),
    )
    assert errors == [
        ("entries[1].national_codes[0]", "UNKNOWN_NATIONAL_CODE"),
        ("entries[3].local_code", "CONFLICTING_DUPLICATE"),
    ]
    assert warnings == [
        (0, "agency_code", "LEGACY_ORG_CODE"),
        (1, "cancel_date", "RETIRED"),
        (2, "local_code", "DUPLICATE_ROW"),
        (2, "agency_code", "LEGACY_ORG_CODE"),
    ]


def test_the_same_input_gives_the_same_report() -> None:
    doc = RegionCatalogDocument("440000", (row("A", agency="x"), row("B", "0")))
    assert check_region_catalog(doc, CATALOG, TODAY) == check_region_catalog(doc, CATALOG, TODAY)


# -- the bundled data -------------------------------------------------------------------------


def _bundled() -> tuple[CatalogDocument, dict[str, RegionCatalogDocument]]:
    regions = json.loads((STANDARDS / "regions.json").read_text("utf-8"))
    provinces = {p["code"] for p in regions["provinces"]}
    parsed = parse_catalog(
        json.loads((STANDARDS / "catalog" / "2025.1.json").read_text("utf-8")), provinces
    )
    assert parsed.value is not None
    lists = {}
    for path in sorted((STANDARDS / "implementations").glob("*.json")):
        doc = parse_region_catalog(json.loads(path.read_text("utf-8")), provinces).value
        assert doc is not None
        lists[doc.region_code] = doc
    return parsed.value, lists


CATALOG_2025_1, LISTS = _bundled()

# The dirty rows of 510000 as standards/README.md lists them, by local code.
SICHUAN_DIRT = {
    ("F-000213-001", "cancel_date", "RETIRED"),
    ("51200114000000-510107000000-000-11510107007777381-1-00", "agency_code", "TRUNCATED_USCC"),
    ("51200121000000-510107000000-000-11510107004715409-1-00", "agency_code", "TRUNCATED_USCC"),
    ("511F0128000000-511602000000-000-009148976-1-00", "agency_code", "LEGACY_ORG_CODE"),
    ("51200135000000-510000000000-000-11510000MBR1GYTA70-1-00", "agency_code", "USCC_BAD_CHECK"),
    ("51200142000000-510107000000-000-1111111111111111-1-00", "agency_code", "PLACEHOLDER"),
}


def test_the_bundled_sichuan_list_warns_of_exactly_its_dirty_rows() -> None:
    doc = LISTS["510000"]
    report = check_region_catalog(doc, CATALOG_2025_1, TODAY)
    assert report.errors == ()
    found = {(doc.entries[w.entry_index].local_code, w.field, w.reason) for w in report.warnings}
    assert found == SICHUAN_DIRT
    assert len(report.warnings) == len(SICHUAN_DIRT)


RETIRED_ROWS = {
    "110000": set(),
    "330000": set(),  # its cancel date 2030-06-30 is in the future
    "370000": {"11370000003307462W2000117113000"},
    "420000": set(),
    "440000": {"12440000005470677J2002035011000"},
    "510000": {"F-000213-001"},
    "520000": {"GG00401000"},
}


@pytest.mark.parametrize("region", sorted(RETIRED_ROWS))
def test_every_bundled_list_routes_and_only_retirement_or_sichuan_dirt_warns(region: str) -> None:
    doc = LISTS[region]
    report = check_region_catalog(doc, CATALOG_2025_1, TODAY)
    assert report.ok
    retired = {
        doc.entries[w.entry_index].local_code for w in report.warnings if w.reason == "RETIRED"
    }
    assert retired == RETIRED_ROWS[region]
    others = [w for w in report.warnings if w.reason != "RETIRED"]
    assert (others != []) == (region == "510000")


def test_against_2025_2_the_removed_matters_are_errors_where_implemented() -> None:
    regions = json.loads((STANDARDS / "regions.json").read_text("utf-8"))
    provinces = {p["code"] for p in regions["provinces"]}
    newer = parse_catalog(
        json.loads((STANDARDS / "catalog" / "2025.2.json").read_text("utf-8")), provinces
    ).value
    assert newer is not None
    bad = {
        code: sorted(
            e.field
            for e in check_region_catalog(doc, newer, TODAY).errors
            if e.reason == "UNKNOWN_NATIONAL_CODE"
        )
        for code, doc in LISTS.items()
    }
    assert {code for code, fields in bad.items() if fields} == {
        "110000",
        "330000",
        "370000",
        "420000",
        "440000",
        "520000",
    }
    assert bad["510000"] == []
    guangdong = LISTS["440000"]
    assert [guangdong.entries[int(f[8:].split("]")[0])].local_name for f in bad["440000"]] == [
        "户外招牌设置备案"
    ]


def test_a_row_without_an_agency_name_is_routed_with_a_warning() -> None:
    nameless = RegionEntry("L1", ("000117112000",), "事项", "", AGENCY)
    assert check(row("L0"), nameless) == ([], [(1, "agency_name", "MISSING_AGENCY_NAME")])


def test_rows_are_named_by_their_index_in_the_list_as_read() -> None:
    # Rows 1 and 3 of the file could not be read; the kept rows keep their file indexes.
    doc = RegionCatalogDocument(
        "440000",
        (row("L0"), row("L2", "000999999000"), row("L4"), row("L4", "000117113000")),
    )
    report = check_region_catalog(doc, CATALOG, TODAY, rows=(0, 2, 4, 5))
    assert [(e.field, e.reason) for e in report.errors] == [
        ("entries[2].national_codes[0]", "UNKNOWN_NATIONAL_CODE"),
        ("entries[5].local_code", "CONFLICTING_DUPLICATE"),
    ]
    assert "row 4" in report.errors[1].description


NATIONAL_CODES = (
    "11440000MBDCGK306L2000117112000",  # 实施编码
    "11370800MB28559184300011711200001",  # 业务办理项编码
    "XK00101000",  # a letter-type code
    "11440000MBDCGK306A2000117112000",  # the agency USCC fails its check character
    "11440000MBDCGK306L2000117112000-1",  # 33 characters, not a handling item code
)


def test_a_national_list_warns_of_each_code_outside_the_national_layout() -> None:
    rows = tuple(row(code) for code in NATIONAL_CODES)
    provinces = {"440000", "370000"}
    national = RegionCatalogDocument("440000", rows, dialect="NATIONAL")
    found = dialect_warnings(national, provinces, rows=(10, 11, 12, 13, 14))
    assert [(w.entry_index, w.field, w.reason) for w in found] == [
        (12, "local_code", "NOT_NATIONAL_LAYOUT"),
        (13, "local_code", "NOT_NATIONAL_LAYOUT"),
        (14, "local_code", "NOT_NATIONAL_LAYOUT"),
    ]
    assert "IMPLEMENTATION_CODE_BAD_LENGTH" not in found[0].description  # a sentence, no reason
    assert "31 characters" in found[0].description
    other = RegionCatalogDocument("440000", rows, dialect="LETTER_TYPE")
    assert dialect_warnings(other, provinces) == ()


def test_the_bundled_national_lists_are_all_in_the_national_layout() -> None:
    provinces = {
        p["code"] for p in json.loads((STANDARDS / "regions.json").read_text())["provinces"]
    }
    for code in ("110000", "330000", "370000", "440000"):
        data = json.loads((STANDARDS / "implementations" / f"{code}.json").read_text("utf-8"))
        doc = parse_region_catalog(data, provinces).value
        assert doc is not None
        assert doc.dialect == "NATIONAL"
        assert dialect_warnings(doc, provinces) == (), code
