"""Tests for gateway.catalog.documents.

Each test starts from a small valid document built here, breaks it in one known way and checks
that exactly that problem is reported, at its JSON path: one problem, one violation. The bundled
documents in `standards/` must parse, and the implementation-list writer must be the exact
inverse of the reader.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.catalog.documents import (
    CATALOG_KIND,
    MAX_LOCAL_CODE_LENGTH,
    REGION_CATALOG_KIND,
    loads_json,
    parse_catalog,
    parse_region_catalog,
    read_region_catalog,
    region_catalog_to_json,
)
from gateway.catalog.model import CatalogDocument, Matter, RegionCatalogDocument, RegionEntry

STANDARDS = Path(__file__).resolve().parents[2] / "standards"
PROVINCES = {"110000": "北京市", "440000": "广东省", "510000": "四川省"}
ALL_PROVINCES = {
    p["code"] for p in json.loads((STANDARDS / "regions.json").read_text("utf-8"))["provinces"]
}
ID_CARD = "11100000000013127D001"  # 居民身份证; its USCC part passes GB 32100


def matter(**overrides: Any) -> dict[str, Any]:
    """A valid matter object."""
    value: dict[str, Any] = {
        "code": "000117112000",
        "name": "内资企业及分支机构设立登记",
        "type": "01",
        "competent_department": "国家市场监督管理总局",
        "cross_region_modes": ["FULLY_ONLINE", "PROXY_RECEIVE"],
        "legal_time_limit": {"value": 15, "unit": "WORKING_DAYS"},
        "promised_time_limit": {"value": 3, "unit": "WORKING_DAYS"},
        "service_objects": ["ENTERPRISE_LEGAL_PERSON"],
        "materials": [
            {"id": "M01", "name": "申请书", "required": True},
            {"id": "M02", "name": "居民身份证", "required": False, "license_type_code": ID_CARD},
        ],
        "synthetic": ["type", "materials"],
    }
    value.update(overrides)
    return value


def catalog(**overrides: Any) -> dict[str, Any]:
    """A valid catalog object with two matters."""
    value: dict[str, Any] = {
        "kind": CATALOG_KIND,
        "version": "2025.1",
        "effective_time": "2025-01-01T00:00:00+08:00",
        "publisher": "national-standards-body",
        "provenance": "synthetic: test data",
        "license_types": {ID_CARD: "居民身份证"},
        "matters": [
            matter(),
            matter(code="002041011000", name="无犯罪记录证明开具", type="20", materials=[]),
        ],
    }
    value.update(overrides)
    return value


def entry(**overrides: Any) -> dict[str, Any]:
    """A valid implementation-list row."""
    value: dict[str, Any] = {
        "local_code": "11440000MBDCGK306L2000117112000",
        "national_codes": ["000117112000"],
        "local_name": "企业设立登记（内资）",
        "agency_name": "广东省市场监督管理局",
        "agency_code": "11440000MBDCGK306L",
        "cancel_date": None,
    }
    value.update(overrides)
    return value


def region_list(**overrides: Any) -> dict[str, Any]:
    """A valid implementation list with two rows."""
    value: dict[str, Any] = {
        "kind": REGION_CATALOG_KIND,
        "region_code": "440000",
        "region_name": "广东省",
        "dialect": "NATIONAL",
        "catalog_version": "2025.1",
        "provenance": "synthetic: test data",
        "entries": [
            entry(),
            entry(
                local_code="11440000MBDCGK306L2000117113000",
                national_codes=["000117113000", "000117114000"],
                cancel_date="2030-06-30",
            ),
        ],
    }
    value.update(overrides)
    return value


def problems(parsed: Any) -> list[tuple[str, str]]:
    return [(v.field, v.reason) for v in parsed.violations]


def edit(fn: Callable[[dict[str, Any]], object]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Applies an in-place edit to a deep copy."""

    def apply(doc: dict[str, Any]) -> dict[str, Any]:
        doc = copy.deepcopy(doc)
        fn(doc)
        return doc

    return apply


def m0(doc: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = doc["matters"][0]
    return result


def mat0(doc: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = doc["matters"][0]["materials"][0]
    return result


# (id, edit, the single (path, reason) it must produce)
CATALOG_CASES: list[tuple[str, Callable[[dict[str, Any]], object], tuple[str, str]]] = [
    ("wrong kind", lambda d: d.update(kind="tongban.catalog/v0"), ("kind", "WRONG_KIND")),
    ("no kind", lambda d: d.pop("kind"), ("kind", "WRONG_KIND")),
    ("no version", lambda d: d.pop("version"), ("version", "MISSING")),
    ("empty version", lambda d: d.update(version=""), ("version", "MISSING")),
    ("version number", lambda d: d.update(version=2025.1), ("version", "WRONG_TYPE")),
    ("version form", lambda d: d.update(version="25.1"), ("version", "BAD_VERSION")),
    ("version letters", lambda d: d.update(version="2025.x"), ("version", "BAD_VERSION")),
    ("version too long", lambda d: d.update(version="2" * 201), ("version", "TOO_LONG")),
    ("no effective", lambda d: d.pop("effective_time"), ("effective_time", "MISSING")),
    (
        "effective garbage",
        lambda d: d.update(effective_time="first of May"),
        ("effective_time", "BAD_TIMESTAMP"),
    ),
    (
        "effective naive",
        lambda d: d.update(effective_time="2025-01-01T00:00:00"),
        ("effective_time", "BAD_TIMESTAMP"),
    ),
    ("no publisher", lambda d: d.pop("publisher"), ("publisher", "MISSING")),
    (
        "licence types list",
        lambda d: (d.update(license_types=[]), m0(d)["materials"].pop()),
        ("license_types", "WRONG_TYPE"),
    ),
    (
        "licence type bad check",
        lambda d: d["license_types"].update({"11100000000013127E001": "x"}),
        ("license_types.11100000000013127E001", "BAD_LICENSE_TYPE_CODE"),
    ),
    (
        "licence type short",
        lambda d: d["license_types"].update({"11100000000013127D01": "x"}),
        ("license_types.11100000000013127D01", "BAD_LICENSE_TYPE_CODE"),
    ),
    (
        "licence type full-width sequence",
        lambda d: d["license_types"].update({"11100000000013127D００２": "x"}),
        ("license_types.11100000000013127D００２", "BAD_LICENSE_TYPE_CODE"),
    ),
    ("no matters", lambda d: d.pop("matters"), ("matters", "MISSING")),
    ("empty matters", lambda d: d.update(matters=[]), ("matters", "MISSING")),
    ("matter not object", lambda d: d["matters"].append("x"), ("matters[2]", "WRONG_TYPE")),
    ("no code", lambda d: m0(d).pop("code"), ("matters[0].code", "MISSING")),
    ("code number", lambda d: m0(d).update(code=117112000), ("matters[0].code", "WRONG_TYPE")),
    (
        "code too long",
        lambda d: m0(d).update(code="0001171120000"),
        ("matters[0].code", "TOO_LONG"),
    ),
    (
        "code short",
        lambda d: m0(d).update(code="00011711200"),
        ("matters[0].code", "BASIC_CODE_BAD_LENGTH"),
    ),
    (
        "code letter",
        lambda d: m0(d).update(code="0001171120A0"),
        ("matters[0].code", "BASIC_CODE_BAD_CHARACTER"),
    ),
    (
        "code origin",
        lambda d: m0(d).update(code="990117112000"),
        ("matters[0].code", "BASIC_CODE_UNKNOWN_ORIGIN"),
    ),
    (
        "code type",
        lambda d: m0(d).update(code="001117112000", type="11"),
        ("matters[0].code", "BASIC_CODE_BAD_MATTER_TYPE"),
    ),
    ("type mismatch", lambda d: m0(d).update(type="20"), ("matters[0].type", "TYPE_MISMATCH")),
    ("no type", lambda d: m0(d).pop("type"), ("matters[0].type", "MISSING")),
    ("type number", lambda d: m0(d).update(type=1), ("matters[0].type", "WRONG_TYPE")),
    ("type too long", lambda d: m0(d).update(type="011"), ("matters[0].type", "TOO_LONG")),
    (
        "duplicate code",
        lambda d: d["matters"].append(matter()),
        ("matters[2].code", "DUPLICATE_CODE"),
    ),
    ("no name", lambda d: m0(d).pop("name"), ("matters[0].name", "MISSING")),
    ("name too long", lambda d: m0(d).update(name="名" * 201), ("matters[0].name", "TOO_LONG")),
    (
        "department number",
        lambda d: m0(d).update(competent_department=7),
        ("matters[0].competent_department", "WRONG_TYPE"),
    ),
    (
        "modes string",
        lambda d: m0(d).update(cross_region_modes="FULLY_ONLINE"),
        ("matters[0].cross_region_modes", "WRONG_TYPE"),
    ),
    (
        "mode unknown",
        lambda d: m0(d).update(cross_region_modes=["FULLY_ONLINE", "BY_POST"]),
        ("matters[0].cross_region_modes[1]", "UNKNOWN_VALUE"),
    ),
    (
        "mode twice",
        lambda d: m0(d).update(cross_region_modes=["FULLY_ONLINE", "FULLY_ONLINE"]),
        ("matters[0].cross_region_modes", "DUPLICATE_VALUE"),
    ),
    (
        "service object unknown",
        lambda d: m0(d).update(service_objects=["ALIEN"]),
        ("matters[0].service_objects[0]", "UNKNOWN_VALUE"),
    ),
    (
        "no legal limit",
        lambda d: m0(d).pop("legal_time_limit"),
        ("matters[0].legal_time_limit", "MISSING"),
    ),
    (
        "limit negative",
        lambda d: m0(d)["legal_time_limit"].update(value=-1),
        ("matters[0].legal_time_limit.value", "BAD_TIME_LIMIT"),
    ),
    (
        "limit bool",
        lambda d: m0(d)["promised_time_limit"].update(value=True),
        ("matters[0].promised_time_limit.value", "BAD_TIME_LIMIT"),
    ),
    (
        "limit ten years",
        lambda d: m0(d)["legal_time_limit"].update(value=3651),
        ("matters[0].legal_time_limit.value", "BAD_TIME_LIMIT"),
    ),
    (
        "limit unit",
        lambda d: m0(d)["legal_time_limit"].update(unit="HOURS"),
        ("matters[0].legal_time_limit.unit", "BAD_TIME_LIMIT"),
    ),
    (
        "promise exceeds law",
        lambda d: m0(d)["promised_time_limit"].update(value=16),
        ("matters[0].promised_time_limit", "PROMISE_EXCEEDS_LAW"),
    ),
    (
        "materials object",
        lambda d: m0(d).update(materials={}),
        ("matters[0].materials", "WRONG_TYPE"),
    ),
    (
        "material string",
        lambda d: m0(d)["materials"].append("M03"),
        ("matters[0].materials[2]", "WRONG_TYPE"),
    ),
    ("material no id", lambda d: mat0(d).pop("id"), ("matters[0].materials[0].id", "MISSING")),
    (
        "material id twice",
        lambda d: m0(d)["materials"][1].update(id="M01"),
        ("matters[0].materials[1].id", "DUPLICATE_MATERIAL"),
    ),
    (
        "material no name",
        lambda d: mat0(d).pop("name"),
        ("matters[0].materials[0].name", "MISSING"),
    ),
    (
        "material required string",
        lambda d: mat0(d).update(required="false"),
        ("matters[0].materials[0].required", "WRONG_TYPE"),
    ),
    (
        "material licence unknown",
        lambda d: mat0(d).update(license_type_code="11100000MB0143028R001"),
        ("matters[0].materials[0].license_type_code", "UNKNOWN_LICENSE_TYPE"),
    ),
    (
        "material licence too long",
        lambda d: mat0(d).update(license_type_code=ID_CARD + "1"),
        ("matters[0].materials[0].license_type_code", "TOO_LONG"),
    ),
]


@pytest.mark.parametrize(
    ("change", "expected"),
    [pytest.param(fn, want, id=name) for name, fn, want in CATALOG_CASES],
)
def test_each_catalog_problem_is_reported_once_at_its_path(
    change: Callable[[dict[str, Any]], object], expected: tuple[str, str]
) -> None:
    parsed = parse_catalog(edit(change)(catalog()), PROVINCES)
    assert parsed.value is None
    assert problems(parsed) == [expected]
    assert all(v.description for v in parsed.violations)


def test_the_unbroken_catalog_parses() -> None:
    parsed = parse_catalog(catalog(), PROVINCES)
    assert parsed.violations == ()
    assert parsed.value is not None
    assert list(parsed.value.matters) == ["000117112000", "002041011000"]


def test_five_problems_in_one_catalog_are_five_violations() -> None:
    doc = catalog()
    doc["version"] = "v2"
    doc["matters"][0]["type"] = "20"
    doc["matters"][0]["cross_region_modes"] = ["TELEPATHY"]
    doc["matters"][1]["materials"] = [{"id": "M01"}]
    doc["matters"][1]["promised_time_limit"] = {"value": 99, "unit": "WORKING_DAYS"}
    parsed = parse_catalog(doc, PROVINCES)
    assert parsed.value is None
    assert sorted(problems(parsed)) == sorted(
        [
            ("version", "BAD_VERSION"),
            ("matters[0].type", "TYPE_MISMATCH"),
            ("matters[0].cross_region_modes[0]", "UNKNOWN_VALUE"),
            ("matters[1].materials[0].name", "MISSING"),
            ("matters[1].promised_time_limit", "PROMISE_EXCEEDS_LAW"),
        ]
    )


def test_matter_codes_are_sorted_and_later_duplicates_rejected() -> None:
    doc = catalog()
    doc["matters"].reverse()
    parsed = parse_catalog(doc, PROVINCES)
    assert parsed.value is not None
    assert list(parsed.value.matters) == sorted(parsed.value.matters)


def test_a_province_origin_code_is_accepted_for_a_known_province() -> None:
    doc = catalog(matters=[matter(code="440117130000")])
    assert parse_catalog(doc, PROVINCES).violations == ()
    assert problems(parse_catalog(doc, {"110000": "北京市"})) == [
        ("matters[0].code", "BASIC_CODE_UNKNOWN_ORIGIN")
    ]


def matter_json(m: Matter) -> dict[str, Any]:
    """The JSON a matter was read from (the inverse the parser implies)."""
    return {
        "code": m.code,
        "name": m.name,
        "type": m.type,
        "competent_department": m.competent_department,
        "cross_region_modes": list(m.cross_region_modes),
        "legal_time_limit": {"value": m.legal_time_limit.value, "unit": m.legal_time_limit.unit},
        "promised_time_limit": {
            "value": m.promised_time_limit.value,
            "unit": m.promised_time_limit.unit,
        },
        "service_objects": list(m.service_objects),
        "materials": [
            {"id": x.id, "name": x.name, "required": x.required}
            | ({"license_type_code": x.license_type_code} if x.license_type_code else {})
            for x in m.materials
        ],
        "synthetic": list(m.synthetic),
    }


@pytest.mark.parametrize("version", ["2025.1", "2025.2"])
def test_bundled_catalogs_parse_and_round_trip(version: str) -> None:
    data = json.loads((STANDARDS / "catalog" / f"{version}.json").read_text(encoding="utf-8"))
    provinces = {
        p["code"] for p in json.loads((STANDARDS / "regions.json").read_text())["provinces"]
    }
    parsed = parse_catalog(data, provinces)
    assert parsed.violations == ()
    doc = parsed.value
    assert isinstance(doc, CatalogDocument)
    assert doc.version == version
    assert doc.effective_time.isoformat() == data["effective_time"]
    assert doc.publisher == data["publisher"]
    assert doc.provenance == data["provenance"]
    assert doc.license_types == data["license_types"]
    assert [matter_json(m) for m in doc.matters.values()] == data["matters"]


def test_a_valid_catalog_round_trips_through_its_json() -> None:
    data = catalog()
    doc = parse_catalog(data, PROVINCES).value
    assert doc is not None
    rebuilt = catalog(matters=[matter_json(m) for m in doc.matters.values()])
    again = parse_catalog(json.loads(json.dumps(rebuilt)), PROVINCES).value
    assert again == doc


# -- loads_json -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["{", "[1, 2]", '"catalog"', b"\xff\xfe{", "null"])
def test_loads_json_refuses_non_objects(text: str | bytes) -> None:
    parsed = loads_json(text)
    assert parsed.value is None
    assert problems(parsed) == [("", "BAD_JSON")]


def test_loads_json_accepts_an_object() -> None:
    assert loads_json('{"kind": "x"}').value == {"kind": "x"}


# -- implementation lists -------------------------------------------------------------------


def e1(doc: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = doc["entries"][1]
    return result


REGION_CASES: list[tuple[str, Callable[[dict[str, Any]], object], tuple[str, str]]] = [
    ("wrong kind", lambda d: d.update(kind=CATALOG_KIND), ("kind", "WRONG_KIND")),
    ("no region", lambda d: d.pop("region_code"), ("region_code", "MISSING")),
    ("region number", lambda d: d.update(region_code=440000), ("region_code", "WRONG_TYPE")),
    ("region county", lambda d: d.update(region_code="440305"), ("region_code", "UNKNOWN_REGION")),
    ("region unknown", lambda d: d.update(region_code="990000"), ("region_code", "UNKNOWN_REGION")),
    ("region hk", lambda d: d.update(region_code="810000"), ("region_code", "UNKNOWN_REGION")),
    ("no entries", lambda d: d.pop("entries"), ("entries", "MISSING")),
    ("entries object", lambda d: d.update(entries={}), ("entries", "MISSING")),
    ("entry string", lambda d: d["entries"].append("row"), ("entries[2]", "WRONG_TYPE")),
    ("no local code", lambda d: e1(d).pop("local_code"), ("entries[1].local_code", "MISSING")),
    (
        "local code too long",
        lambda d: e1(d).update(local_code="1" * (MAX_LOCAL_CODE_LENGTH + 1)),
        ("entries[1].local_code", "TOO_LONG"),
    ),
    (
        "local code space",
        lambda d: e1(d).update(local_code=" XK00101000"),
        ("entries[1].local_code", "BAD_LOCAL_CODE"),
    ),
    (
        "local code control",
        lambda d: e1(d).update(local_code="XK001\t01000"),
        ("entries[1].local_code", "BAD_LOCAL_CODE"),
    ),
    (
        "national codes missing",
        lambda d: e1(d).pop("national_codes"),
        ("entries[1].national_codes", "MISSING"),
    ),
    (
        "national codes empty",
        lambda d: e1(d).update(national_codes=[]),
        ("entries[1].national_codes", "MISSING"),
    ),
    (
        "national codes string",
        lambda d: e1(d).update(national_codes="000117112000"),
        ("entries[1].national_codes", "MISSING"),
    ),
    (
        "national codes numbers",
        lambda d: e1(d).update(national_codes=[117112000]),
        ("entries[1].national_codes", "MISSING"),
    ),
    (
        "national code twice",
        lambda d: e1(d).update(national_codes=["000117113000", "000117113000"]),
        ("entries[1].national_codes", "DUPLICATE_VALUE"),
    ),
    (
        "cancel date form",
        lambda d: e1(d).update(cancel_date="30/06/2030"),
        ("entries[1].cancel_date", "BAD_DATE"),
    ),
    (
        "cancel date impossible",
        lambda d: e1(d).update(cancel_date="2030-02-30"),
        ("entries[1].cancel_date", "BAD_DATE"),
    ),
    ("no local name", lambda d: e1(d).pop("local_name"), ("entries[1].local_name", "MISSING")),
    (
        "agency name list",
        lambda d: e1(d).update(agency_name=["x"]),
        ("entries[1].agency_name", "WRONG_TYPE"),
    ),
    (
        "agency code too long",
        lambda d: e1(d).update(agency_code="1" * 65),
        ("entries[1].agency_code", "TOO_LONG"),
    ),
]


@pytest.mark.parametrize(
    ("change", "expected"),
    [pytest.param(fn, want, id=name) for name, fn, want in REGION_CASES],
)
def test_each_region_list_shape_problem_is_reported_at_its_path(
    change: Callable[[dict[str, Any]], object], expected: tuple[str, str]
) -> None:
    parsed = parse_region_catalog(edit(change)(region_list()), PROVINCES)
    assert parsed.value is None
    assert problems(parsed) == [expected]


def test_region_list_shape_problems_are_all_reported_together() -> None:
    doc = region_list(region_code="990000")
    doc["entries"][0]["national_codes"] = []
    doc["entries"][1]["cancel_date"] = "soon"
    doc["entries"].append({"local_code": "X", "national_codes": ["000117112000"]})
    doc["entries"].append(7)
    parsed = parse_region_catalog(doc, PROVINCES)
    assert parsed.value is None
    assert problems(parsed) == [
        ("region_code", "UNKNOWN_REGION"),
        ("entries[0].national_codes", "MISSING"),
        ("entries[1].cancel_date", "BAD_DATE"),
        ("entries[2].local_name", "MISSING"),
        ("entries[3]", "WRONG_TYPE"),
    ]


def test_shape_check_leaves_routing_questions_to_validation() -> None:
    # An unknown national code and a repeated local code are not shape problems.
    doc = region_list()
    doc["entries"].append(entry(national_codes=["009999999000"]))
    parsed = parse_region_catalog(doc, PROVINCES)
    assert parsed.violations == ()
    assert parsed.value is not None
    assert len(parsed.value.entries) == 3


def test_a_valid_region_list_parses_to_its_rows() -> None:
    parsed = parse_region_catalog(region_list(), PROVINCES)
    assert parsed.value == RegionCatalogDocument(
        region_code="440000",
        entries=(
            RegionEntry(
                "11440000MBDCGK306L2000117112000",
                ("000117112000",),
                "企业设立登记（内资）",
                "广东省市场监督管理局",
                "11440000MBDCGK306L",
                None,
            ),
            RegionEntry(
                "11440000MBDCGK306L2000117113000",
                ("000117113000", "000117114000"),
                "企业设立登记（内资）",
                "广东省市场监督管理局",
                "11440000MBDCGK306L",
                date(2030, 6, 30),
            ),
        ),
        region_name="广东省",
        dialect="NATIONAL",
        catalog_version="2025.1",
        provenance="synthetic: test data",
    )


def test_null_free_text_fields_read_as_empty_not_as_none() -> None:
    doc = region_list(region_name=None, dialect=None, catalog_version=None, provenance=None)
    parsed = parse_region_catalog(doc, PROVINCES)
    assert parsed.value is not None
    assert (
        parsed.value.region_name,
        parsed.value.dialect,
        parsed.value.catalog_version,
        parsed.value.provenance,
    ) == ("", "", "", "")
    cat = parse_catalog(catalog(provenance=None), PROVINCES).value
    assert cat is not None
    assert cat.provenance == ""


def test_an_empty_cancel_date_means_none() -> None:
    doc = region_list()
    doc["entries"][1]["cancel_date"] = ""
    parsed = parse_region_catalog(doc, PROVINCES)
    assert parsed.value is not None
    assert parsed.value.entries[1].cancel_date is None


@pytest.mark.parametrize(
    "path", sorted((STANDARDS / "implementations").glob("*.json")), ids=lambda p: p.stem
)
def test_bundled_lists_are_exactly_what_the_writer_writes(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    provinces = {
        p["code"] for p in json.loads((STANDARDS / "regions.json").read_text())["provinces"]
    }
    parsed = parse_region_catalog(data, provinces)
    assert parsed.violations == ()
    assert parsed.value is not None
    assert region_catalog_to_json(parsed.value) == data


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
_NAME = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=30)
_LOCAL = st.text(
    st.characters(codec="utf-8", categories=("Lu", "Ll", "Nd", "Pd", "Lo")),
    min_size=1,
    max_size=MAX_LOCAL_CODE_LENGTH,
)
_ENTRY = st.builds(
    RegionEntry,
    local_code=_LOCAL,
    national_codes=st.lists(
        st.from_regex(r"\A[0-9]{12}\Z"), min_size=1, max_size=3, unique=True
    ).map(tuple),
    local_name=_NAME,
    agency_name=_TEXT,
    agency_code=st.text("0123456789ABCDEFGHJKLMNPQRTUWXY-", max_size=64),
    cancel_date=st.none() | st.dates(),
)


_DOCUMENT = st.builds(
    RegionCatalogDocument,
    region_code=st.sampled_from(sorted(PROVINCES)),
    entries=st.lists(_ENTRY, max_size=6).map(tuple),
    region_name=_TEXT,
    dialect=_TEXT,
    catalog_version=_TEXT,
    provenance=_TEXT,
)


@settings(max_examples=60, deadline=None)
@given(doc=_DOCUMENT)
def test_parse_is_the_inverse_of_region_catalog_to_json(doc: RegionCatalogDocument) -> None:
    data = json.loads(json.dumps(region_catalog_to_json(doc), ensure_ascii=False))
    parsed = parse_region_catalog(data, PROVINCES)
    assert parsed.violations == ()
    assert parsed.value == doc


def test_reading_a_list_keeps_the_readable_rows_beside_every_problem() -> None:
    doc = region_list()
    doc["entries"] = [
        entry(),
        entry(local_code="", cancel_date="someday"),
        {**entry(local_code="11440000MBDCGK306L2000117113000"), "cancel_dat": "2020-01-01"},
        entry(local_code="11440000MBDCGK306L2000117114000"),
    ]
    doc["dialekt"] = "NATIONAL"
    reading = read_region_catalog(doc, PROVINCES)
    assert [(v.field, v.reason) for v in reading.violations] == [
        ("dialekt", "UNKNOWN_FIELD"),
        ("entries[1].local_code", "MISSING"),
        ("entries[1].cancel_date", "BAD_DATE"),
        ("entries[2].cancel_dat", "UNKNOWN_FIELD"),
    ]
    assert reading.rows == (0, 3)
    assert [e.local_code for e in reading.document.entries] == [
        "11440000MBDCGK306L2000117112000",
        "11440000MBDCGK306L2000117114000",
    ]
    assert parse_region_catalog(doc, PROVINCES).violations == reading.violations
