"""Tests for gateway.catalog.resolution.

The snapshot is built from the bundled catalog versions and all seven provincial lists, so the
mapping shapes are the ones real provinces produce. Expected answers are computed from the raw
JSON, not from the index under test.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.catalog.documents import parse_catalog, parse_region_catalog
from gateway.catalog.model import RegionCatalogDocument, RegionEntry
from gateway.catalog.region_index import RegionIndex
from gateway.catalog.resolution import (
    CatalogSnapshot,
    Resolution,
    Shape,
    Translation,
    VersionRecord,
    require_region,
    resolve,
    targets,
    translate,
)
from gateway.errors import (
    CatalogVersionNotFound,
    InvalidRequest,
    LocalCodeAmbiguous,
    LocalCodeNotFound,
    LocalCodeRetired,
    MatterNotFound,
    MatterNotImplemented,
    RegionNotFound,
    TongbanError,
)

STANDARDS = Path(__file__).resolve().parents[2] / "standards"
CST = timezone(timedelta(hours=8))
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=CST)  # 2025.1 in force, 2025.2 scheduled
LATER = datetime(2025, 8, 1, 12, 0, tzinfo=CST)  # 2025.2 in force
PUBLISHED = datetime(2024, 12, 1, tzinfo=CST)


def _read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return data


REGIONS = _read(STANDARDS / "regions.json")
PROVINCES = {p["code"]: p["name"] for p in REGIONS["provinces"]}
RAW_LISTS = {p.stem: _read(p) for p in sorted((STANDARDS / "implementations").glob("*.json"))}


def _snapshot(versions: tuple[str, ...] = ("2025.1", "2025.2")) -> CatalogSnapshot:
    snapshot = CatalogSnapshot(PROVINCES)
    for version in versions:
        doc = parse_catalog(_read(STANDARDS / "catalog" / f"{version}.json"), PROVINCES).value
        assert doc is not None
        snapshot = snapshot.with_version(VersionRecord(doc, PUBLISHED, f"digest-{version}"))
    for code, data in RAW_LISTS.items():
        listed = parse_region_catalog(data, PROVINCES).value
        assert listed is not None
        snapshot = snapshot.with_region(RegionIndex.build(listed, PUBLISHED, f"list-{code}"))
    return snapshot


SNAPSHOT = _snapshot()


def raw_live_rows(region: str, national: str, day: date) -> list[dict[str, Any]]:
    """Rows of a bundled list naming `national` and not retired on `day`, from the JSON."""
    return [
        e
        for e in RAW_LISTS[region]["entries"]
        if national in e["national_codes"]
        and (e["cancel_date"] is None or date.fromisoformat(e["cancel_date"]) >= day)
    ]


# -- the mapping shapes --------------------------------------------------------------------


def test_one_to_one() -> None:
    found = resolve(SNAPSHOT, "440000", "11440000MBDCGK306L2000117112000", now=NOW)
    assert found.shape is Shape.ONE_TO_ONE
    assert found.matter.code == "000117112000"
    assert found.matter.name == "内资企业及分支机构设立登记"
    assert found.version == "2025.1"
    assert found.region_code == "440000"
    assert found.entry.local_name == "企业设立登记（内资）"


@pytest.mark.parametrize(
    ("region", "local", "national"),
    [
        ("440000", "114400000016993432200074103100101", "000741031001"),
        ("440000", "114400000016993432200074103100102", "000741031001"),
        ("330000", "11330106006131247K400074103100501", "000741031005"),
        ("110000", "11110000009388195C200074103100302", "000741031003"),
        ("370000", "11370800MB28559184300011711200001", "000117112000"),
        ("510000", "511F0100000000-510107000000-000-115101070047154095-1-02", "000741031002"),
        ("420000", "4201000010700101", "000741031001"),
    ],
)
def test_many_to_one(region: str, local: str, national: str) -> None:
    found = resolve(SNAPSHOT, region, local, now=NOW)
    assert found.shape is Shape.MANY_TO_ONE
    assert found.matter.code == national


@pytest.mark.parametrize(
    ("region", "local", "candidates"),
    [
        ("440000", "11440300MB2C92050G3440117130000", ("000117131000", "000117132000")),
        ("330000", "11330106MB2CD88L094000117131000", ("000117131000", "000117132000")),
        ("110000", "1111000000705583X72112031020000", ("002031021000", "002031022000")),
        (
            "510000",
            "511A0107000000-510107000000-000-11510107MB062KH77N-1-00",
            ("000117131000", "000117132000"),
        ),
        ("520000", "XK00101000", ("000117142000", "000117143000")),
    ],
)
def test_one_to_many_is_ambiguous_until_a_candidate_is_named(
    region: str, local: str, candidates: tuple[str, str]
) -> None:
    with pytest.raises(LocalCodeAmbiguous) as caught:
        resolve(SNAPSHOT, region, local, now=NOW)
    assert caught.value.metadata["candidates"] == ",".join(candidates)
    for national in candidates:
        found = resolve(SNAPSHOT, region, local, now=NOW, national_code=national)
        assert found.shape is Shape.ONE_TO_MANY
        assert found.matter.code == national


def test_a_national_code_the_local_code_does_not_cover_is_invalid_argument() -> None:
    with pytest.raises(InvalidRequest) as caught:
        resolve(
            SNAPSHOT,
            "440000",
            "11440300MB2C92050G3440117130000",
            now=NOW,
            national_code="000117133000",
            national_field="matter.national_code",
        )
    error = caught.value
    assert type(error) is InvalidRequest
    assert error.reason == "INVALID_REQUEST"
    assert [(v.field, v.reason) for v in error.field_violations] == [
        ("matter.national_code", "NOT_A_CANDIDATE")
    ]
    assert "000117131000" in error.field_violations[0].description
    assert error.metadata["candidates"] == "000117131000,000117132000"


def test_naming_the_only_national_code_of_a_one_to_one_row_is_fine() -> None:
    found = resolve(
        SNAPSHOT,
        "440000",
        "11440000MBDCGK306L2000117112000",
        now=NOW,
        national_code="000117112000",
    )
    assert found.shape is Shape.ONE_TO_ONE
    with pytest.raises(InvalidRequest):
        resolve(
            SNAPSHOT,
            "440000",
            "11440000MBDCGK306L2000117112000",
            now=NOW,
            national_code="000117113000",
        )


def test_every_bundled_live_row_resolves_with_the_shape_its_list_implies() -> None:
    checked = 0
    for region, data in RAW_LISTS.items():
        for row in data["entries"]:
            if row["cancel_date"] and date.fromisoformat(row["cancel_date"]) < NOW.date():
                continue
            for national in row["national_codes"]:
                found = resolve(
                    SNAPSHOT,
                    region,
                    row["local_code"],
                    now=NOW,
                    national_code=national if len(row["national_codes"]) > 1 else "",
                )
                if len(row["national_codes"]) > 1:
                    expected = Shape.ONE_TO_MANY
                elif len(raw_live_rows(region, national, NOW.date())) > 1:
                    expected = Shape.MANY_TO_ONE
                else:
                    expected = Shape.ONE_TO_ONE
                assert (region, row["local_code"], found.shape) == (
                    region,
                    row["local_code"],
                    expected,
                )
                assert found.matter.code == national
                assert found.entry.local_name == row["local_name"]
                checked += 1
    assert checked > 250


# -- retirement ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "local"),
    [
        ("440000", "12440000005470677J2002035011000"),
        ("370000", "11370000003307462W2000117113000"),
        ("510000", "F-000213-001"),
        ("520000", "GG00401000"),
    ],
)
def test_a_retired_row_is_local_code_retired(region: str, local: str) -> None:
    with pytest.raises(LocalCodeRetired) as caught:
        resolve(SNAPSHOT, region, local, now=NOW)
    assert caught.value.metadata == {"region_code": region, "cancel_date": "2024-06-30"}


def test_a_retired_row_is_live_through_its_cancel_date_and_counts_for_the_shape_then() -> None:
    # On the cancel date itself both 异地就医 rows of 440000 are live: N:1.
    on_the_day = datetime(2024, 6, 30, 23, 0, tzinfo=CST)
    retired = "12440000005470677J2002035011000"
    live = "11440000MBFYX5N41F2002035011000"
    found = resolve(SNAPSHOT, "440000", retired, now=on_the_day, version="2025.1")
    assert found.shape is Shape.MANY_TO_ONE
    assert resolve(SNAPSHOT, "440000", live, now=on_the_day, version="2025.1").shape is (
        Shape.MANY_TO_ONE
    )
    # Afterwards the retired row no longer makes the live one N:1.
    assert resolve(SNAPSHOT, "440000", live, now=NOW).shape is Shape.ONE_TO_ONE


def test_a_row_with_a_future_cancel_date_is_live() -> None:
    found = resolve(SNAPSHOT, "330000", "11330000000679965U2002031011000", now=NOW)
    assert found.matter.code == "002031011000"
    assert found.shape is Shape.ONE_TO_ONE


# -- what is not there ---------------------------------------------------------------------


def test_an_unknown_local_code_is_local_code_not_found() -> None:
    with pytest.raises(LocalCodeNotFound) as caught:
        resolve(SNAPSHOT, "440000", "11440000MBDCGK306L2000117112001", now=NOW)
    assert caught.value.metadata == {"region_code": "440000"}


def test_a_local_code_of_another_province_is_not_found() -> None:
    with pytest.raises(LocalCodeNotFound):
        resolve(SNAPSHOT, "110000", "11440000MBDCGK306L2000117112000", now=NOW)


def test_a_province_without_a_list_has_no_local_codes() -> None:
    assert require_region(SNAPSHOT, "120000", "region_code") is None
    with pytest.raises(LocalCodeNotFound):
        resolve(SNAPSHOT, "120000", "XK00101000", now=NOW)


@pytest.mark.parametrize("region", ["990000", "440305", "810000", "", "44000"])
def test_an_unknown_region_is_region_not_found(region: str) -> None:
    with pytest.raises(RegionNotFound) as caught:
        resolve(SNAPSHOT, region, "XK00101000", now=NOW)
    assert caught.value.metadata == {"field": "region_code"}


def test_a_matter_the_version_in_use_lacks_is_matter_not_found() -> None:
    # 440000 implements 户外招牌设置, which 2025.2 removes.
    local = "11440100MBM0A4WE4P3000133021000"
    assert resolve(SNAPSHOT, "440000", local, now=NOW).matter.code == "000133021000"
    with pytest.raises(MatterNotFound) as caught:
        resolve(SNAPSHOT, "440000", local, now=LATER)
    assert caught.value.metadata == {"version": "2025.2"}
    assert resolve(SNAPSHOT, "440000", local, now=LATER, version="2025.1").version == "2025.1"


# -- versions --------------------------------------------------------------------------------


def test_the_current_version_is_the_newest_in_force_and_a_future_one_is_scheduled() -> None:
    assert SNAPSHOT.latest() is not None
    assert SNAPSHOT.latest().document.version == "2025.2"  # type: ignore[union-attr]
    assert SNAPSHOT.current(datetime(2024, 12, 31, 23, 59, tzinfo=CST)) is None
    at_start = SNAPSHOT.current(datetime(2025, 1, 1, 0, 0, tzinfo=CST))
    assert at_start is not None
    assert at_start.document.version == "2025.1"
    just_before = SNAPSHOT.current(datetime(2025, 6, 30, 15, 59, 59, tzinfo=UTC))
    assert just_before is not None
    assert just_before.document.version == "2025.1"
    on_time = SNAPSHOT.current(datetime(2025, 6, 30, 16, 0, tzinfo=UTC))
    assert on_time is not None
    assert on_time.document.version == "2025.2"


@pytest.mark.parametrize("name", ["", "-"])
def test_empty_and_dash_name_the_current_version(name: str) -> None:
    assert SNAPSHOT.version(name, NOW).document.version == "2025.1"
    assert SNAPSHOT.version(name, LATER).document.version == "2025.2"
    with pytest.raises(CatalogVersionNotFound):
        SNAPSHOT.version(name, datetime(2024, 1, 1, tzinfo=CST))


def test_a_scheduled_version_can_be_named_and_resolves_against_itself() -> None:
    assert SNAPSHOT.version("2025.2", NOW).document.version == "2025.2"
    found = resolve(
        SNAPSHOT, "440000", "11440000MBDCGK306L2000117112000", now=NOW, version="2025.2"
    )
    assert found.version == "2025.2"


def test_a_version_never_published_is_catalog_version_not_found() -> None:
    with pytest.raises(CatalogVersionNotFound) as caught:
        SNAPSHOT.version("2030.1", NOW)
    assert caught.value.metadata == {"version": "2030.1"}
    with pytest.raises(CatalogVersionNotFound):
        resolve(SNAPSHOT, "440000", "11440000MBDCGK306L2000117112000", now=NOW, version="2024.9")


def test_an_empty_snapshot_has_no_versions_or_lists() -> None:
    empty = CatalogSnapshot(PROVINCES)
    assert empty.latest() is None
    assert empty.current(NOW) is None
    assert empty.region_indexes() == {}
    with pytest.raises(CatalogVersionNotFound):
        resolve(empty, "440000", "x", now=NOW)


def test_with_version_and_with_region_leave_the_original_untouched() -> None:
    base = _snapshot(("2025.1",))
    versions, regions = base.versions, dict(base.region_indexes())
    doc = RegionCatalogDocument("440000", (RegionEntry("L", ("000117112000",), "n", "a", "c"),))
    replaced = base.with_region(RegionIndex.build(doc, NOW, "new"))
    assert base.versions == versions
    assert base.region_indexes() == regions
    assert base.region_indexes()["440000"].digest == "list-440000"
    assert replaced.region_indexes()["440000"].digest == "new"
    assert replaced.region_indexes()["510000"] is base.region_indexes()["510000"]


def test_a_snapshot_holds_lists_of_provinces_only() -> None:
    doc = RegionCatalogDocument("440100", (RegionEntry("L", ("000117112000",), "n", "a", "c"),))
    with pytest.raises(ValueError, match="440100"):
        SNAPSHOT.with_region(RegionIndex.build(doc, NOW, "city"))


# -- translation -----------------------------------------------------------------------------


def test_target_not_implementing_is_matter_not_implemented() -> None:
    # 110000 implements 排污许可; 440000 does not.
    source = resolve(SNAPSHOT, "110000", "11110000006437342B2000125011000", now=NOW)
    with pytest.raises(MatterNotImplemented) as caught:
        targets(SNAPSHOT, source, "440000", now=NOW)
    assert caught.value.metadata == {"region_code": "440000", "national_code": "000125011000"}


def test_a_target_province_without_a_list_implements_nothing() -> None:
    source = resolve(SNAPSHOT, "440000", "11440000MBDCGK306L2000117112000", now=NOW)
    with pytest.raises(MatterNotImplemented):
        targets(SNAPSHOT, source, "120000", now=NOW)


def test_an_unknown_target_region_is_region_not_found_on_its_field() -> None:
    source = resolve(SNAPSHOT, "440000", "11440000MBDCGK306L2000117112000", now=NOW)
    with pytest.raises(RegionNotFound) as caught:
        targets(SNAPSHOT, source, "990000", now=NOW)
    assert caught.value.metadata == {"field": "to_region_code"}


@pytest.mark.parametrize(
    ("target", "national", "live"),
    [
        ("440000", "002035011000", ["11440000MBFYX5N41F2002035011000"]),
        ("520000", "002033011001", ["GG00402000"]),
        ("370000", "000117113000", ["11370000MBA5TPWH232000117113000"]),
        ("510000", "000741031004", ["511F0296000000-511602000000-000-115116020028314490-1-00"]),
    ],
)
def test_retired_rows_are_never_targets(target: str, national: str, live: list[str]) -> None:
    source_row = next(
        e for e in RAW_LISTS["110000"]["entries"] if e["national_codes"] == [national]
    )
    source = resolve(SNAPSHOT, "110000", source_row["local_code"], now=NOW)
    found = targets(SNAPSHOT, source, target, now=NOW)
    assert [t.entry.local_code for t in found] == live
    assert [t.shape for t in found] == [Shape.ONE_TO_ONE]


def test_target_shapes_many_to_one_and_one_to_many() -> None:
    source = resolve(SNAPSHOT, "520000", "QR00803000", now=NOW)  # 工作调动户口迁移
    found = targets(SNAPSHOT, source, "440000", now=NOW)
    assert [(t.entry.local_code, t.shape) for t in found] == [
        ("114400000016993432200074103100101", Shape.MANY_TO_ONE),
        ("114400000016993432200074103100102", Shape.MANY_TO_ONE),
    ]
    source = resolve(SNAPSHOT, "520000", "XK00106000", now=NOW)  # 个体工商户设立
    found = targets(SNAPSHOT, source, "440000", now=NOW)
    assert [(t.entry.local_code, t.shape) for t in found] == [
        ("11440300MB2C92050G3440117130000", Shape.ONE_TO_MANY)
    ]
    assert all(t.matter.code == "000117131000" and t.version == "2025.1" for t in found)


def _translate_all(source_region: str, to_region: str) -> dict[str, tuple[str, ...]]:
    """Every national matter the source implements → the target's local codes for it."""
    outcome: dict[str, tuple[str, ...]] = {}
    for row in RAW_LISTS[source_region]["entries"]:
        if row["cancel_date"] and date.fromisoformat(row["cancel_date"]) < NOW.date():
            continue
        for national in row["national_codes"]:
            source = resolve(
                SNAPSHOT,
                source_region,
                row["local_code"],
                now=NOW,
                national_code=national if len(row["national_codes"]) > 1 else "",
            )
            expected = raw_live_rows(to_region, national, NOW.date())
            if not expected:
                with pytest.raises(MatterNotImplemented):
                    targets(SNAPSHOT, source, to_region, now=NOW)
                outcome[national] = ()
                continue
            found = targets(SNAPSHOT, source, to_region, now=NOW)
            for t in found:
                assert national in t.entry.national_codes
                assert t.matter.code == national
                assert t.region_code == to_region
                assert not t.entry.retired_on(NOW.date())
            local_codes = tuple(t.entry.local_code for t in found)
            assert local_codes == tuple(e["local_code"] for e in expected)
            outcome[national] = local_codes
    return outcome


def test_translation_across_the_three_dialect_families() -> None:
    assert [RAW_LISTS[r]["dialect"] for r in ("440000", "510000", "520000")] == [
        "NATIONAL",
        "HYPHENATED",
        "LETTER_TYPE",
    ]
    to_sichuan = _translate_all("440000", "510000")
    to_guizhou = _translate_all("440000", "520000")
    from_sichuan = _translate_all("510000", "520000")
    # Both sides implement most matters; each "not implemented" case of the README shows up.
    assert sum(1 for v in to_sichuan.values() if v) >= 30
    assert to_sichuan["002031022000"] == ()  # 510000 lacks 城乡居民养老转移
    assert to_guizhou["000117121000"] == ()  # 520000 lacks 外资企业设立
    assert to_sichuan["000741031002"] == (
        "511F0100000000-510107000000-000-115101070047154095-1-01",
        "511F0100000000-510107000000-000-115101070047154095-1-02",
    )
    # Going through Sichuan reaches the same Guizhou rows as going there directly.
    for national, sichuan_rows in to_sichuan.items():
        if sichuan_rows and national in from_sichuan:
            assert from_sichuan[national] == to_guizhou[national], national


def _resolution_key(r: Resolution) -> tuple[str, str, str, Shape, str]:
    return (r.region_code, r.entry.local_code, r.matter.code, r.shape, r.version)


def test_translation_uses_the_sources_version() -> None:
    source = resolve(
        SNAPSHOT, "440000", "11440000MBDCGK306L2000117112000", now=NOW, version="2025.2"
    )
    found = targets(SNAPSHOT, source, "520000", now=NOW)
    assert [_resolution_key(r) for r in found] == [
        ("520000", "XK00103000", "000117112000", Shape.ONE_TO_ONE, "2025.2")
    ]


def test_targets_are_a_sequence_built_on_access() -> None:
    source = resolve(SNAPSHOT, "520000", "QR00803000", now=NOW)
    found = targets(SNAPSHOT, source, "440000", now=NOW)
    assert len(found) == 2
    assert found[-1].local_code == found[1].entry.local_code == "114400000016993432200074103100102"
    assert [t.local_code for t in found[:1]] == ["114400000016993432200074103100101"]
    assert list(found) == [found[0], found[1]]
    with pytest.raises(IndexError):
        found[2]


# -- translate: resolve + targets(...)[0] in one step ------------------------------------------


Outcome = Translation | tuple[type[TongbanError], str, dict[str, str], tuple[object, ...]]


Query = tuple[str, str, str, datetime, str, str]
"""(region, local code, target region, now, national code, version)"""


def _outcome(snapshot: CatalogSnapshot, query: Query, *, fast: bool) -> Outcome:
    """What the fast path answers, or what resolve + targets(...)[0] answer, as comparable data."""
    region, local, to, now, national, version = query
    try:
        if fast:
            return translate(
                snapshot,
                region,
                local,
                to,
                now=now,
                national_code=national,
                version=version,
                national_field="national_matter_code",
            )
        source = resolve(
            snapshot,
            region,
            local,
            now=now,
            national_code=national,
            version=version,
            national_field="national_matter_code",
        )
        first = targets(snapshot, source, to, now=now)[0]
        assert first.matter is source.matter
        return source.matter, source.version, first.local_code
    except TongbanError as exc:
        return (type(exc), exc.message, exc.metadata, exc.field_violations)


ON_THE_CANCEL_DATE = datetime(2024, 6, 30, 23, 0, tzinfo=CST)  # 2024-06-30 15:00 UTC
AFTER_THE_FUTURE_ONE = datetime(2030, 7, 1, 0, 30, tzinfo=CST)  # still 2030-06-30 in UTC
WHEN = [
    (NOW, ""),
    (NOW, "2025.2"),
    (NOW, "2024.9"),  # never published
    (ON_THE_CANCEL_DATE, "2025.1"),
    (LATER, ""),
    (AFTER_THE_FUTURE_ONE, ""),
    (AFTER_THE_FUTURE_ONE.astimezone(UTC), ""),
]


def test_translate_answers_as_resolve_then_the_first_target_on_the_bundled_lists() -> None:
    regions = [*sorted(RAW_LISTS), "120000", "990000"]  # a province without a list; no province
    seen: dict[str, int] = {}
    for region in regions:
        rows = RAW_LISTS.get(region, {"entries": []})["entries"]
        queries = [(r["local_code"], n) for r in rows for n in ("", *r["national_codes"])]
        queries += [("NO-SUCH-CODE", ""), (rows[0]["local_code"] if rows else "X", "000117133000")]
        for local, national in queries:
            for to in regions:
                for now, version in WHEN:
                    query = (region, local, to, now, national, version)
                    fast = _outcome(SNAPSHOT, query, fast=True)
                    assert fast == _outcome(SNAPSHOT, query, fast=False), query
                    kind = fast[0].__name__ if isinstance(fast[0], type) else "translated"
                    seen[kind] = seen.get(kind, 0) + 1
    # every way a translation can end shows up
    assert set(seen) == {
        "translated",
        "RegionNotFound",
        "LocalCodeNotFound",
        "LocalCodeRetired",
        "LocalCodeAmbiguous",
        "InvalidRequest",
        "MatterNotFound",
        "MatterNotImplemented",
        "CatalogVersionNotFound",
    }, seen


SNAPSHOT_2025_1 = _snapshot(versions=("2025.1",))
CODES = ["000117112000", "000117113000", "002031011000", "009999999000"]  # the last in no version
DAYS = [date(2025, 2, 28), date(2025, 3, 1), date(2025, 3, 2)]
_row = st.tuples(
    st.sampled_from("ABCDEF"),
    st.lists(st.sampled_from(CODES), min_size=1, max_size=3, unique=True),
    st.sampled_from([None, *DAYS]),
)


@settings(max_examples=300, deadline=None)
@given(lists=st.lists(st.lists(_row, max_size=10), min_size=3, max_size=3), data=st.data())
def test_translate_answers_as_resolve_then_the_first_target_on_any_list(
    lists: list[list[tuple[str, list[str], date | None]]], data: st.DataObject
) -> None:
    snapshot = SNAPSHOT_2025_1
    for region, rows in zip(("110000", "440000", "510000"), lists, strict=True):
        entries = tuple(RegionEntry(a, tuple(n), a.lower(), "x", "c", d) for a, n, d in rows)
        doc = RegionCatalogDocument(region, entries)
        snapshot = snapshot.with_region(RegionIndex.build(doc, PUBLISHED, "d"))
    regions = st.sampled_from(["110000", "440000", "510000", "120000", "990000"])
    for _ in range(20):
        query = (
            data.draw(regions),
            data.draw(st.sampled_from("ABCDEFG")),
            data.draw(regions),
            datetime.combine(data.draw(st.sampled_from(DAYS)), datetime.min.time(), CST),
            data.draw(st.sampled_from(["", *CODES])),
            "",
        )
        fast = _outcome(snapshot, query, fast=True)
        assert fast == _outcome(snapshot, query, fast=False), query


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(_row, max_size=12), day=st.sampled_from(DAYS))
def test_a_resolutions_shape_is_what_the_rows_imply_on_any_list(
    rows: list[tuple[str, list[str], date | None]], day: date
) -> None:
    # The index packs a hint of each row's group into its key; this checks it against the
    # list itself, on days before, on and after the cancel dates.
    entries = tuple(RegionEntry(a, tuple(n), a.lower(), "x", "c", d) for a, n, d in rows)
    index = RegionIndex.build(RegionCatalogDocument("440000", entries), PUBLISHED, "d")
    snapshot = SNAPSHOT_2025_1.with_region(index)
    now = datetime.combine(day, datetime.min.time(), CST)
    first: dict[str, tuple[list[str], date | None]] = {}
    for local, nationals, cancel in rows:
        first.setdefault(local, (nationals, cancel))

    def live(cancel: date | None) -> bool:
        return cancel is None or cancel >= day

    for local, (nationals, cancel) in first.items():
        if not live(cancel) or nationals[0] == CODES[-1]:
            continue  # retired, or a matter no version has: errors, covered elsewhere
        found = resolve(snapshot, "440000", local, now=now, national_code=nationals[0])
        group = [c for n, c in first.values() if nationals[0] in n and live(c)]
        if len(nationals) > 1:
            expected = Shape.ONE_TO_MANY
        else:
            expected = Shape.MANY_TO_ONE if len(group) > 1 else Shape.ONE_TO_ONE
        assert found.shape is expected, (local, rows, day)
        assert found.row == next(i for i, r in enumerate(rows) if r[0] == local)


def test_the_preferred_target_moves_on_as_its_rows_retire() -> None:
    doc = RegionCatalogDocument(
        "440000",
        (
            RegionEntry("A", ("000117112000",), "a", "x", "c", date(2025, 6, 30)),
            RegionEntry("B", ("000117112000",), "b", "x", "c", date(2025, 3, 31)),
            RegionEntry("C", ("000117112000",), "c", "x", "c", date(2025, 7, 31)),
        ),
    )
    snapshot = SNAPSHOT.with_region(RegionIndex.build(doc, PUBLISHED, "d"))
    source = "11110000MBT0CU7C3A2000117112000"  # 110000's 内资企业设立 row

    def preferred(day: datetime) -> str:
        return translate(snapshot, "110000", source, "440000", now=day)[2]

    assert preferred(datetime(2025, 6, 30, 23, 59, tzinfo=CST)) == "A"
    assert preferred(datetime(2025, 7, 1, tzinfo=CST)) == "C"  # B retired before A
    assert preferred(datetime(2025, 7, 31, tzinfo=CST)) == "C"
    with pytest.raises(MatterNotImplemented):
        preferred(datetime(2025, 8, 1, tzinfo=CST))
