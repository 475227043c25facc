"""Tests for gateway.catalog.diff.

The bundled 2025.1 → 2025.2 edit is the reference case (standards/README.md lists it); small
inline matters pin down which element names a change reports.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.catalog.diff import CatalogDiff, RegionImpact, changed_elements, diff_catalogs, impact
from gateway.catalog.documents import parse_catalog, parse_region_catalog
from gateway.catalog.model import (
    CatalogDocument,
    Material,
    Matter,
    RegionCatalogDocument,
    RegionEntry,
    TimeLimit,
)

STANDARDS = Path(__file__).resolve().parents[2] / "standards"


def _read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return data


PROVINCES = {p["code"] for p in _read(STANDARDS / "regions.json")["provinces"]}


def _catalog(version: str) -> CatalogDocument:
    doc = parse_catalog(_read(STANDARDS / "catalog" / f"{version}.json"), PROVINCES).value
    assert doc is not None
    return doc


V1, V2 = _catalog("2025.1"), _catalog("2025.2")
LISTS = [
    doc
    for path in sorted((STANDARDS / "implementations").glob("*.json"))
    if (doc := parse_region_catalog(_read(path), PROVINCES).value) is not None
]


def test_the_bundled_diff_is_exactly_the_readme_table() -> None:
    assert diff_catalogs(V1, V2) == CatalogDiff(
        from_version="2025.1",
        to_version="2025.2",
        added=("000147021000", "002033031000"),
        removed=("000133021000", "002039011000"),
        changed=(
            ("000737011003", ("promised_time_limit",)),
            ("000743011000", ("materials",)),
            ("002031011000", ("cross_region_modes",)),
        ),
    )


def test_the_bundled_changes_are_the_ones_described() -> None:
    mortgage_old, mortgage_new = V1.matters["000737011003"], V2.matters["000737011003"]
    assert (mortgage_old.promised_time_limit, mortgage_new.promised_time_limit) == (
        TimeLimit(5, "WORKING_DAYS"),
        TimeLimit(3, "WORKING_DAYS"),
    )
    marriage_new = V2.matters["000743011000"].material("M04")
    assert V1.matters["000743011000"].material("M04") is None
    assert marriage_new is not None
    assert (marriage_new.name, marriage_new.required) == ("居住证", False)
    assert set(V2.matters["002031011000"].cross_region_modes) - set(
        V1.matters["002031011000"].cross_region_modes
    ) == {"PROXY_RECEIVE"}
    assert [V1.matters[c].name for c in ("000133021000", "002039011000")] == [
        "户外招牌设置",
        "机动车驾驶证公证",
    ]
    assert [V2.matters[c].cross_region_modes for c in ("000147021000", "002033031000")] == [(), ()]


def test_the_reverse_diff_swaps_added_and_removed() -> None:
    forward, backward = diff_catalogs(V1, V2), diff_catalogs(V2, V1)
    assert backward.added == forward.removed
    assert backward.removed == forward.added
    assert backward.changed == forward.changed
    assert (backward.from_version, backward.to_version) == ("2025.2", "2025.1")


def test_a_version_against_itself_has_no_differences() -> None:
    same = diff_catalogs(V1, V1)
    assert (same.added, same.removed, same.changed) == ((), (), ())
    assert impact(same, LISTS) == ()


def test_impact_names_the_provinces_using_removed_and_changed_matters() -> None:
    changed = ("000737011003", "000743011000", "002031011000")
    driving = ("002039011000",)
    assert impact(diff_catalogs(V1, V2), reversed(LISTS)) == (
        RegionImpact("110000", driving, changed),
        RegionImpact("330000", driving, changed),
        RegionImpact("370000", driving, changed),
        RegionImpact("420000", driving, changed),
        RegionImpact("440000", ("000133021000",), changed),
        RegionImpact("510000", (), changed),
        RegionImpact("520000", driving, changed),
    )


def test_impact_is_computed_from_the_lists_rows() -> None:
    # Recomputed straight from the rows: every province using a removed code is named.
    diff = diff_catalogs(V1, V2)
    for doc in LISTS:
        used = {c for e in doc.entries for c in e.national_codes}
        hit = [i for i in impact(diff, [doc]) if i.region_code == doc.region_code]
        expected_removed = tuple(sorted(used & set(diff.removed)))
        if hit:
            assert hit[0].removed == expected_removed
        else:
            assert not used & (set(diff.removed) | {c for c, _ in diff.changed})


def _matter(**overrides: Any) -> Matter:
    values: dict[str, Any] = {
        "code": "000117112000",
        "name": "内资企业设立登记",
        "type": "01",
        "competent_department": "市场监管",
        "cross_region_modes": ("FULLY_ONLINE",),
        "legal_time_limit": TimeLimit(15, "WORKING_DAYS"),
        "promised_time_limit": TimeLimit(3, "WORKING_DAYS"),
        "service_objects": ("NATURAL_PERSON",),
        "materials": (Material("M01", "申请书", True),),
        "synthetic": ("type",),
    }
    values.update(overrides)
    return Matter(**values)


@pytest.mark.parametrize(
    ("overrides", "elements"),
    [
        ({"name": "新名称"}, ("name",)),
        ({"type": "20"}, ("type",)),
        ({"competent_department": "另一部门"}, ("competent_department",)),
        ({"cross_region_modes": ()}, ("cross_region_modes",)),
        ({"legal_time_limit": TimeLimit(15, "NATURAL_DAYS")}, ("legal_time_limit",)),
        ({"promised_time_limit": TimeLimit(2, "WORKING_DAYS")}, ("promised_time_limit",)),
        ({"service_objects": ("NATURAL_PERSON", "OTHER_ORGANIZATION")}, ("service_objects",)),
        ({"materials": (Material("M01", "申请书", False),)}, ("materials",)),
        (
            {"materials": (Material("M01", "申请书", True, "11100000000013127D001"),)},
            ("materials",),
        ),
        (
            {"name": "新名称", "materials": (), "legal_time_limit": TimeLimit(20, "WORKING_DAYS")},
            ("name", "legal_time_limit", "materials"),
        ),
        ({"synthetic": ()}, ()),  # provenance notes are not an element of the matter
        ({}, ()),
    ],
)
def test_changed_elements_names_exactly_what_differs(
    overrides: dict[str, Any], elements: tuple[str, ...]
) -> None:
    assert changed_elements(_matter(), _matter(**overrides)) == elements


def test_every_matter_element_except_code_and_synthetic_is_compared() -> None:
    compared = {f.name for f in dataclasses.fields(Matter) if f.name not in ("code", "synthetic")}
    seen: set[str] = set()
    for name in compared:
        old = _matter()
        current = getattr(old, name)
        replacement: object
        if isinstance(current, str):
            replacement = current + "x"
        elif isinstance(current, TimeLimit):
            replacement = TimeLimit(current.value + 1, current.unit)
        elif current:
            replacement = ()
        else:
            replacement = ("x",)
        changes: dict[str, Any] = {name: replacement}
        seen.update(changed_elements(old, dataclasses.replace(old, **changes)))
    assert seen == compared


def _doc(version: str, *matters: Matter) -> CatalogDocument:
    return CatalogDocument(
        version=version,
        effective_time=datetime(2025, 1, 1, tzinfo=UTC),
        publisher="test",
        matters={m.code: m for m in matters},
    )


def test_added_removed_and_changed_are_sorted_by_code() -> None:
    a = _matter(code="000117113000")
    b = _matter(code="000117112000")
    c = _matter(code="002041011000", type="20")
    d = _matter(code="000117114000")
    e = _matter(code="000117111000")
    old = _doc("2025.1", c, a, b)
    new = _doc("2025.2", e, d, dataclasses.replace(c, name="改"), dataclasses.replace(b, name="改"))
    assert diff_catalogs(old, new) == CatalogDiff(
        "2025.1",
        "2025.2",
        added=("000117111000", "000117114000"),
        removed=("000117113000",),
        changed=(("000117112000", ("name",)), ("002041011000", ("name",))),
    )


def test_impact_skips_untouched_lists_and_counts_merged_rows() -> None:
    old = _doc("2025.1", _matter(code="000117112000"), _matter(code="000117113000"))
    new = _doc("2025.2", _matter(code="000117112000", name="改"))
    untouched = RegionCatalogDocument(
        "110000", (RegionEntry("X", ("000117199000",), "n", "a", "c"),)
    )
    merged = RegionCatalogDocument(
        "440000", (RegionEntry("Y", ("000117113000", "000117112000"), "n", "a", "c"),)
    )
    assert impact(diff_catalogs(old, new), [merged, untouched]) == (
        RegionImpact("440000", ("000117113000",), ("000117112000",)),
    )


def test_2026_1_adds_the_eight_themes_and_changes_the_matters_they_use() -> None:
    d = diff_catalogs(_catalog("2025.2"), _catalog("2026.1"))
    assert d.themes_added == tuple(f"YJS000{i}" for i in range(1, 9))
    assert (d.themes_removed, d.themes_changed) == ((), ())
    assert d.added == ("002033041000", "002035041000")
    assert dict(d.changed)["002031021000"] == ("materials", "form_fields", "results")


def test_a_theme_changes_with_its_own_elements_and_with_its_members_matters() -> None:
    old = _catalog("2026.1")
    theme = old.themes["YJS0001"]
    slower = dataclasses.replace(theme, promised_time_limit=TimeLimit(40, "WORKING_DAYS"))
    matter = old.matters["002031021000"]
    new = dataclasses.replace(
        old,
        version="2026.2",
        themes={**old.themes, "YJS0001": slower},
        matters={**old.matters, matter.code: dataclasses.replace(matter, name="养老保险转移")},
    )
    del new.themes["YJS0007"]
    d = diff_catalogs(old, new)
    assert d.themes_removed == ("YJS0007",)
    assert d.themes_changed == (("YJS0001", ("promised_time_limit", "member_matters")),)
