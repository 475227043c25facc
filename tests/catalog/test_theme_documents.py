"""Tests for gateway.catalog.theme_documents: reading themes, every refusal with its place.

The small world is one valid theme over two inline matters; each case breaks one thing and
names the one violation it must cause. The bundled 2026.1 themes are read at the end.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.catalog.documents import parse_catalog
from gateway.catalog.model import FormField, Material, Matter, TimeLimit
from gateway.catalog.registry import load_provinces
from gateway.catalog.theme_documents import parse_themes

STANDARDS = Path(__file__).resolve().parents[2] / "standards"
CARD = "111000000000990473001"
PROOF = "11100000000099063Q001"
ID = "11100000000013127D001"
LICENSE_TYPES = {CARD: "社会保障卡", PROOF: "参保缴费凭证", ID: "居民身份证"}


def _matter(code: str, *, cross: bool = True) -> Matter:
    return Matter(
        code=code,
        name="企业职工基本养老保险关系转移接续",
        type=code[2:4],
        competent_department="人力资源社会保障部",
        cross_region_modes=("FULLY_ONLINE",) if cross else (),
        legal_time_limit=TimeLimit(45, "WORKING_DAYS"),
        promised_time_limit=TimeLimit(30, "WORKING_DAYS"),
        service_objects=("NATURAL_PERSON",),
        materials=(
            Material("M01", "居民身份证", True, ID),
            Material("M02", "参保缴费凭证", False, PROOF),
            Material("M03", "申请表", True),
            Material("M04", "社会保障卡", False, CARD),
        ),
        form_fields=(
            FormField("gmsfhm", "id_number", True),
            FormField("zcd", "region_code", True),
            FormField("bz", "string", False),
        ),
        results=(PROOF,),
    )


MATTERS = {
    "002031021000": _matter("002031021000"),
    "002031041000": _matter("002031041000", cross=False),
}

THEME: dict[str, Any] = {
    "code": "YJS0001",
    "name": "养老保险关系转移接续",
    "description": "转入地申请一次",
    "promised_time_limit": {"value": 30, "unit": "WORKING_DAYS"},
    "members": [
        {"id": "out", "matter_code": "002031021000", "role": "transfer_out", "after": []},
        {"id": "in", "matter_code": "002031021000", "role": "transfer_in", "after": ["out"]},
    ],
    "form": [
        {
            "name": "id_number",
            "label": "公民身份号码",
            "type": "id_number",
            "required": True,
            "maps": [{"member": "out", "field": "gmsfhm"}, {"member": "in", "field": "gmsfhm"}],
        },
        {
            "name": "from_region",
            "label": "转出地",
            "type": "region_code",
            "required": True,
            "maps": [{"member": "out", "field": "zcd"}, {"member": "in", "field": "zcd"}],
        },
    ],
    "materials": [
        {
            "id": "TM01",
            "name": "居民身份证",
            "license_type_code": ID,
            "used_by": [
                {"member": "out", "material_id": "M01"},
                {"member": "in", "material_id": "M01"},
            ],
        },
        {
            "id": "TM02",
            "name": "申请表",
            "used_by": [
                {"member": "out", "material_id": "M03"},
                {"member": "in", "material_id": "M03"},
            ],
        },
    ],
    "flows": [
        {
            "license_type_code": PROOF,
            "source": "out",
            "to": {"member": "in", "material_id": "M02"},
        },
        {
            "license_type_code": CARD,
            "fetch_role": "transfer_out",
            "to": {"member": "out", "material_id": "M04"},
        },
    ],
    "synthetic": ["code"],
}


def _violations(theme: dict[str, Any], *more: dict[str, Any]) -> list[tuple[str, str]]:
    themes, found = parse_themes([theme, *more], MATTERS, LICENSE_TYPES)
    assert not themes or not found
    return [(v.field, v.reason) for v in found]


def _set(path: str, value: Any) -> dict[str, Any]:
    """THEME with the item at a dotted path (list indexes as numbers) replaced."""
    theme = copy.deepcopy(THEME)
    *parents, last = path.split(".")
    node: Any = theme
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[int(last) if last.isdigit() else last] = value
    return theme


def test_the_small_world_is_valid_and_read_into_the_model() -> None:
    themes, found = parse_themes([THEME], MATTERS, LICENSE_TYPES)
    assert found == []
    theme = themes["YJS0001"]
    assert [(m.id, m.role, m.after) for m in theme.members] == [
        ("out", "transfer_out", ()),
        ("in", "transfer_in", ("out",)),
    ]
    assert theme.roles == ("transfer_out", "transfer_in")
    assert [(f.source, f.fetch_role, f.to.member) for f in theme.flows] == [
        ("out", "", "in"),
        ("", "transfer_out", "out"),
    ]


CASES = [
    ("members.1.matter_code", "009999999000", "themes[0].members[1].matter_code", "UNKNOWN_MATTER"),
    (
        "members.1.matter_code",
        "002031041000",
        "themes[0].members[1].matter_code",
        "NOT_CROSS_REGION",
    ),
    ("members.1.role", "province", "themes[0].members[1].role", "UNKNOWN_ROLE"),
    ("members.1.after", ["out", "nobody"], "themes[0].members[1].after[1]", "UNKNOWN_MEMBER"),
    ("code", "yjs-1", "themes[0].code", "BAD_THEME_CODE"),
    ("form.0.maps.1.field", "sfzh", "themes[0].form[0].maps[1].field", "UNKNOWN_FIELD"),
    ("form.1.type", "colour", "themes[0].form[1].type", "UNKNOWN_VALUE"),
    (
        "materials.0.used_by.1.material_id",
        "M09",
        "themes[0].materials[0].used_by[1].material_id",
        "UNKNOWN_MATERIAL",
    ),
    (
        "materials.0.used_by.1.material_id",
        "M03",
        "themes[0].materials[0].used_by[1].material_id",
        "MATERIAL_TYPE_MISMATCH",
    ),
    ("flows.0.to.material_id", "M01", "themes[0].flows[0].to.material_id", "FLOW_TYPE_MISMATCH"),
    ("flows.1.fetch_role", "birth", "themes[0].flows[1].fetch_role", "ROLE_NOT_BOUND"),
    ("flows.1.fetch_role", "mars", "themes[0].flows[1].fetch_role", "UNKNOWN_ROLE"),
    ("flows.0.source", "nobody", "themes[0].flows[0].source", "UNKNOWN_MEMBER"),
    (
        "flows.0.license_type_code",
        "111",
        "themes[0].flows[0].license_type_code",
        "UNKNOWN_LICENSE_TYPE",
    ),
    (
        "flows.1.license_type_code",
        PROOF,
        "themes[0].flows[1].to.material_id",
        "FLOW_TYPE_MISMATCH",
    ),
    ("promised_time_limit", {"value": 3}, "themes[0].promised_time_limit.unit", "BAD_TIME_LIMIT"),
]


@pytest.mark.parametrize(("path", "value", "field", "reason"), CASES)
def test_each_refusal_names_its_place_and_reason(
    path: str, value: Any, field: str, reason: str
) -> None:
    assert _violations(_set(path, value)) == [(field, reason)]


def test_a_mapping_to_no_member_leaves_the_member_it_meant_unfilled() -> None:
    assert _violations(_set("form.0.maps.1.member", "nobody")) == [
        ("themes[0].form[0].maps[1].member", "UNKNOWN_MEMBER"),
        ("themes[0].form", "UNMAPPED_FIELD"),
    ]


def test_a_type_mismatch_is_reported_at_each_mapping() -> None:
    assert _violations(_set("form.1.type", "string")) == [
        ("themes[0].form[1].maps[0].field", "FIELD_TYPE_MISMATCH"),
        ("themes[0].form[1].maps[1].field", "FIELD_TYPE_MISMATCH"),
    ]


def test_a_duplicate_member_id_is_refused() -> None:
    theme = copy.deepcopy(THEME)
    theme["members"].append(
        {"id": "in", "matter_code": "002031021000", "role": "hukou", "after": ["out"]}
    )
    assert _violations(theme) == [("themes[0].members[2].id", "DUPLICATE_ID")]


def test_a_required_member_field_left_unmapped_is_refused() -> None:
    theme = copy.deepcopy(THEME)
    del theme["form"][1]["maps"][1]
    assert _violations(theme) == [("themes[0].form", "UNMAPPED_FIELD")]


def test_a_flow_from_a_member_that_does_not_come_first_is_refused() -> None:
    theme = _set("flows.0.to.member", "out")
    theme["flows"][0]["source"] = "in"
    assert _violations(theme) == [("themes[0].flows[0].source", "FLOW_AGAINST_ORDER")]


def test_a_flow_of_a_licence_its_source_does_not_issue_is_refused() -> None:
    theme = _set("flows.0.license_type_code", ID)
    theme["flows"][0]["to"]["material_id"] = "M01"
    assert _violations(theme) == [("themes[0].flows[0].source", "FLOW_TYPE_MISMATCH")]


def test_a_flow_names_exactly_one_source() -> None:
    theme = _set("flows.0.fetch_role", "transfer_out")
    assert _violations(theme) == [("themes[0].flows[0]", "BAD_FLOW")]


def test_a_cycle_is_refused_naming_its_members() -> None:
    theme = copy.deepcopy(THEME)
    theme["members"].append(
        {"id": "x", "matter_code": "002031021000", "role": "hukou", "after": ["in"]}
    )
    theme["members"][0]["after"] = ["x"]
    themes, found = parse_themes([theme], MATTERS, LICENSE_TYPES)
    cycles = [v for v in found if v.reason == "ORDER_CYCLE"]
    assert [v.field for v in cycles] == ["themes[0].members[0].after"]
    assert cycles[0].description.endswith("out → x → in → out")
    assert themes == {}


def test_a_member_waiting_for_itself_is_a_cycle() -> None:
    assert _violations(_set("members.0.after", ["out"])) == [
        ("themes[0].members[0].after[0]", "ORDER_CYCLE")
    ]


def test_a_duplicate_theme_code_is_refused() -> None:
    assert _violations(THEME, THEME) == [("themes[1].code", "DUPLICATE_CODE")]


def test_every_problem_is_reported_in_one_pass() -> None:
    theme = _set("members.0.role", "province")
    theme["form"][0]["maps"][1]["field"] = "sfzh"
    theme["flows"][1]["fetch_role"] = "birth"
    assert sorted(_violations(theme, _set("code", "x"))) == sorted(
        [
            ("themes[0].members[0].role", "UNKNOWN_ROLE"),
            ("themes[0].form[0].maps[1].field", "UNKNOWN_FIELD"),
            ("themes[0].flows[1].fetch_role", "ROLE_NOT_BOUND"),
            ("themes[1].code", "BAD_THEME_CODE"),
        ]
    )


def test_a_theme_over_a_broken_matter_does_not_repeat_its_problem() -> None:
    _, found = parse_themes([THEME], {}, LICENSE_TYPES, unreadable={"002031021000"})
    assert found == []


def _bundled(version: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (STANDARDS / "catalog" / f"{version}.json").read_text("utf-8")
    )
    return data


def test_the_bundled_themes_are_read() -> None:
    doc = parse_catalog(_bundled("2026.1"), load_provinces(STANDARDS)).value
    assert doc is not None
    assert len(doc.themes) == 8
    for theme in doc.themes.values():
        assert len(theme.roles) >= 2, theme.code
        for member in theme.members:
            assert doc.matters[member.matter_code].cross_region_modes, theme.code
    newborn = doc.themes["YJS0006"]
    assert newborn.member("card") is not None
    assert {m.id: m.after for m in newborn.members}["insure"] == ("register",)


def test_a_bundled_catalog_with_a_broken_theme_is_refused_with_the_place() -> None:
    data = _bundled("2026.1")
    data["themes"][2]["members"][1]["matter_code"] = "009999999000"
    parsed = parse_catalog(data, load_provinces(STANDARDS))
    assert parsed.value is None
    assert [(v.field, v.reason) for v in parsed.violations] == [
        ("themes[2].members[1].matter_code", "UNKNOWN_MATTER")
    ]


def test_a_required_material_no_theme_material_or_flow_covers_is_refused() -> None:
    theme = copy.deepcopy(THEME)
    theme["materials"] = theme["materials"][:1]  # TM02 (申请表) gone
    themes, found = parse_themes([theme], MATTERS, LICENSE_TYPES)
    assert themes == {}
    assert [(v.field, v.reason) for v in found] == [
        ("themes[0].members[0]", "MATERIAL_NOT_COVERED"),
        ("themes[0].members[1]", "MATERIAL_NOT_COVERED"),
    ]
    assert "M03 (申请表)" in found[0].description
