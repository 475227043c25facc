"""Tests for the bundled reference data in standards/ against what standards/README.md says.

The check characters are recomputed here from the README's own description (not with
gateway.catalog.codes), so that the data and the validators are checked independently.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.catalog.codes import is_valid_basic_code, is_valid_uscc

STANDARDS = Path(__file__).resolve().parents[1] / "standards"


def _read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return data


REGIONS = _read(STANDARDS / "regions.json")
CATALOGS = {v: _read(STANDARDS / "catalog" / f"{v}.json") for v in ("2025.1", "2025.2", "2026.1")}
LISTS = {p.stem: _read(p) for p in sorted((STANDARDS / "implementations").glob("*.json"))}
PROVINCE_CODES = [p["code"] for p in REGIONS["provinces"]]

# GB/T 2260: the 31 mainland province-level divisions, in code order.
GB_T_2260 = [
    ("110000", "北京市"),
    ("120000", "天津市"),
    ("130000", "河北省"),
    ("140000", "山西省"),
    ("150000", "内蒙古自治区"),
    ("210000", "辽宁省"),
    ("220000", "吉林省"),
    ("230000", "黑龙江省"),
    ("310000", "上海市"),
    ("320000", "江苏省"),
    ("330000", "浙江省"),
    ("340000", "安徽省"),
    ("350000", "福建省"),
    ("360000", "江西省"),
    ("370000", "山东省"),
    ("410000", "河南省"),
    ("420000", "湖北省"),
    ("430000", "湖南省"),
    ("440000", "广东省"),
    ("450000", "广西壮族自治区"),
    ("460000", "海南省"),
    ("500000", "重庆市"),
    ("510000", "四川省"),
    ("520000", "贵州省"),
    ("530000", "云南省"),
    ("540000", "西藏自治区"),
    ("610000", "陕西省"),
    ("620000", "甘肃省"),
    ("630000", "青海省"),
    ("640000", "宁夏回族自治区"),
    ("650000", "新疆维吾尔自治区"),
]

USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]
ORG_WEIGHTS = [3, 7, 9, 10, 5, 8, 4, 2]
ALNUM36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def uscc_ok(code: str) -> bool:
    """GB 32100 as the README states it."""
    if len(code) != 18 or any(c not in USCC_CHARSET for c in code):
        return False
    total = sum(USCC_CHARSET.index(c) * w for c, w in zip(code, USCC_WEIGHTS, strict=False))
    return code[17] == USCC_CHARSET[(31 - total % 31) % 31]


def org_ok(code: str) -> bool:
    """GB 11714 as the README states it."""
    if len(code) != 9 or any(c not in ALNUM36 for c in code[:8]):
        return False
    check = 11 - sum(ALNUM36.index(c) * w for c, w in zip(code, ORG_WEIGHTS, strict=False)) % 11
    return code[8] == {10: "X", 11: "0"}.get(check, str(check))


# The dirty agency codes of 510000, as the README lists them; every other code is valid.
DIRTY_AGENCY_CODES = {
    "11510107007777381",
    "11510107004715409",
    "009148976",
    "11510000MBR1GYTA70",
    "1111111111111111",
}


# -- regions ---------------------------------------------------------------------------------


def test_the_31_provinces_are_exactly_gb_t_2260() -> None:
    assert REGIONS["kind"] == "tongban.regions/v1"
    assert REGIONS["revision"] == "GB/T 2260 (MCA 2019-04)"
    assert [(p["code"], p["name"]) for p in REGIONS["provinces"]] == GB_T_2260


def test_special_regions_and_fixture_counties() -> None:
    assert [(r["code"], r["name"]) for r in REGIONS["special_regions"]] == [
        ("710000", "台湾省"),
        ("810000", "香港特别行政区"),
        ("820000", "澳门特别行政区"),
    ]
    assert [(c["code"], c["name"]) for c in REGIONS["counties"]] == [
        ("110105", "朝阳区"),
        ("330106", "西湖区"),
        ("370811", "任城区"),
        ("440305", "南山区"),
        ("510107", "武侯区"),
        ("511602", "广安区"),
    ]
    assert all(c["code"][:2] + "0000" in PROVINCE_CODES for c in REGIONS["counties"])


# -- catalogs --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", sorted(CATALOGS))
def test_every_matter_code_is_valid_with_the_right_type(version: str) -> None:
    data = CATALOGS[version]
    codes = [m["code"] for m in data["matters"]]
    assert codes == sorted(codes)
    assert len(set(codes)) == len(codes) == {"2025.1": 47, "2025.2": 47, "2026.1": 49}[version]
    for m in data["matters"]:
        assert is_valid_basic_code(m["code"], PROVINCE_CODES), m["code"]
        assert re.fullmatch(r"00\d{10}", m["code"]), m["code"]  # national origin
        assert m["code"][2:4] == m["type"], m["code"]
        assert m["type"] in {"01", "05", "07", "08", "09", "10", "20"}


@pytest.mark.parametrize("version", sorted(CATALOGS))
def test_matter_elements_follow_the_readme(version: str) -> None:
    data = CATALOGS[version]
    assert data["kind"] == "tongban.catalog/v1"
    assert data["version"] == version
    assert datetime.fromisoformat(data["effective_time"]).utcoffset() is not None
    assert data["effective_time"].endswith("+08:00")
    for m in data["matters"]:
        assert set(m["cross_region_modes"]) <= {"FULLY_ONLINE", "PROXY_RECEIVE", "MULTI_REGION"}
        legal, promised = m["legal_time_limit"], m["promised_time_limit"]
        assert legal["unit"] == promised["unit"] in ("WORKING_DAYS", "NATURAL_DAYS"), m["code"]
        assert promised["value"] <= legal["value"], m["code"]
        assert m["service_objects"]
        ids = [x["id"] for x in m["materials"]]
        assert ids == [f"M{i:02d}" for i in range(1, len(ids) + 1)], m["code"]


def test_the_cross_region_counts() -> None:
    cross = [m for m in CATALOGS["2025.1"]["matters"] if m["cross_region_modes"]]
    assert (len(cross), 47 - len(cross)) == (37, 10)


@pytest.mark.parametrize("version", sorted(CATALOGS))
def test_licence_type_codes_in_materials_exist_and_pass_their_check(version: str) -> None:
    data = CATALOGS[version]
    types = data["license_types"]
    used = {
        x["license_type_code"]
        for m in data["matters"]
        for x in m["materials"]
        if "license_type_code" in x
    }
    assert used
    assert used <= set(types)
    assert set(data["synthetic_license_types"]) <= set(types)
    assert set(types) - set(data["synthetic_license_types"]) == {
        "11100000000013127D001",
        "11100000MB0143028R001",
    }
    for code, name in types.items():
        assert len(code) == 21
        assert uscc_ok(code[:18]), code
        assert re.fullmatch(r"\d{3}", code[18:]), code
        assert name
    for m in data["matters"]:
        assert set(m.get("results", [])) <= set(types), m["code"]
    for x in (x for m in data["matters"] for x in m["materials"]):
        assert set(x) <= {"id", "name", "required", "license_type_code"}
        assert isinstance(x["required"], bool)


SYNTHETIC_VOCABULARY = {
    "code",
    "name",
    "type",
    "competent_department",
    "cross_region_modes",
    "time_limits",
    "service_objects",
    "materials",
    "form_fields",
    "results",
}
ALWAYS_SYNTHETIC = SYNTHETIC_VOCABULARY - {"code", "name", "form_fields", "results"}


@pytest.mark.parametrize("version", sorted(CATALOGS))
def test_every_matter_marks_what_is_synthetic(version: str) -> None:
    data = CATALOGS[version]
    assert len(data["provenance"]) > 200
    assert "synthetic" in data["provenance"]
    for m in data["matters"]:
        marks = m["synthetic"]
        assert len(marks) == len(set(marks))
        assert set(marks) <= SYNTHETIC_VOCABULARY, m["code"]
        assert set(marks) >= ALWAYS_SYNTHETIC, m["code"]
        assert ("code" in marks) == (m["code"] != "000117112000"), m["code"]
        for element in ("form_fields", "results"):
            assert (element in marks) == (element in m), m["code"]
    not_cross = [m for m in data["matters"] if not m["cross_region_modes"]]
    named = {m["code"] for m in not_cross if "name" not in m["synthetic"]}
    assert named == {"000147011000"}  # 道路货物运输经营许可 is the one confirmed name
    # a real name is a 跨省通办 name; in 2026.1 five matters with made-up names became
    # cross-region so that themes may use them, and keep their mark
    made_cross = {"000531051000", "000741061000", "002035031000", "002031041000", "002045011000"}
    for m in data["matters"]:
        if m["cross_region_modes"] and m["code"] not in made_cross:
            assert "name" not in m["synthetic"], m["code"]


def test_2025_2_is_2025_1_with_the_readme_edits() -> None:
    old = {m["code"]: m for m in CATALOGS["2025.1"]["matters"]}
    new = {m["code"]: m for m in CATALOGS["2025.2"]["matters"]}
    assert sorted(old.keys() - new.keys()) == ["000133021000", "002039011000"]
    assert sorted(new.keys() - old.keys()) == ["000147021000", "002033031000"]
    differing = sorted(c for c in old.keys() & new.keys() if old[c] != new[c])
    assert differing == ["000737011003", "000743011000", "002031011000"]
    assert all("name" in new[c]["synthetic"] for c in ("000147021000", "002033031000"))
    assert CATALOGS["2025.2"]["effective_time"] > CATALOGS["2025.1"]["effective_time"]


THEMED_MATTERS = {
    "000117113000",
    "000531051000",
    "000741031001",
    "000741061000",
    "002031021000",
    "002031031000",
    "002031041000",
    "002033011001",
    "002035031000",
    "002045011000",
}


def test_2026_1_is_2025_2_with_the_readme_edits() -> None:
    old = {m["code"]: m for m in CATALOGS["2025.2"]["matters"]}
    new = {m["code"]: m for m in CATALOGS["2026.1"]["matters"]}
    assert old.keys() - new.keys() == set()
    assert sorted(new.keys() - old.keys()) == ["002033041000", "002035041000"]
    differing = {c for c in old.keys() & new.keys() if old[c] != new[c]}
    assert differing == THEMED_MATTERS
    themed = {m["matter_code"] for t in CATALOGS["2026.1"]["themes"] for m in t["members"]}
    assert themed == THEMED_MATTERS | {"002033041000", "002035041000"}
    assert all("name" not in new[c]["synthetic"] for c in ("002033041000", "002035041000"))
    assert CATALOGS["2026.1"]["effective_time"] > CATALOGS["2025.2"]["effective_time"]
    assert "themes" not in CATALOGS["2025.1"]
    assert "themes" not in CATALOGS["2025.2"]


THEME_SYNTHETIC_VOCABULARY = {
    "code",
    "name",
    "description",
    "promised_time_limit",
    "members",
    "form",
    "materials",
    "flows",
}


def test_the_themes_of_2026_1_are_the_readme_ones_and_mark_what_is_synthetic() -> None:
    themes = CATALOGS["2026.1"]["themes"]
    assert [(t["code"], t["name"]) for t in themes] == [
        ("YJS0001", "养老保险关系转移接续"),
        ("YJS0002", "医保关系转移接续"),
        ("YJS0003", "跨省户口迁移"),
        ("YJS0004", "企业跨省迁移登记"),
        ("YJS0005", "住房公积金异地转移接续"),
        ("YJS0006", "新生儿出生一件事"),
        ("YJS0007", "退休一件事"),
        ("YJS0008", "退休一件事（多地参保）"),
    ]
    for t in themes:
        marks = set(t["synthetic"])
        named = t["code"] == "YJS0008"  # a made-up variant of 退休一件事
        assert marks == THEME_SYNTHETIC_VOCABULARY - (set() if named else {"name"}), t["code"]
    # across provinces: members play at least two roles, each bound to its own province
    across = [t["code"] for t in themes if len({m["role"] for m in t["members"]}) >= 2]
    assert len(across) == 8
    flows = [f for t in themes for f in t["flows"]]
    assert sum("source" in f for f in flows) >= 7
    assert sum("fetch_role" in f for f in flows) >= 3


# -- implementation lists ---------------------------------------------------------------------


EXPECTED_LISTS = {
    "110000": ("NATIONAL", 36),
    "330000": ("NATIONAL", 37),
    "370000": ("NATIONAL", 39),
    "420000": ("POWER16", 36),
    "440000": ("NATIONAL", 40),
    "510000": ("HYPHENATED", 37),
    "520000": ("LETTER_TYPE", 34),
}

NOT_IMPLEMENTED = {
    "440000": {"000125011000", "002039011000"},
    "330000": {"000117123000", "000117171000", "000535021000"},
    "110000": {"000117141000", "000117142000", "000117143000", "000117181000"},
    "370000": {"000117161000", "000118011000"},
    "510000": {"000117122000", "002031022000", "002039011000"},
    "520000": {"000117121000", "000117122000", "000117123000", "000125011000", "002031031000"},
    "420000": {"002017151000", "002041011000"},
}


def test_the_seven_lists_are_the_ones_described() -> None:
    assert sorted(LISTS) == sorted(EXPECTED_LISTS)
    names = dict(GB_T_2260)
    for code, data in LISTS.items():
        assert data["kind"] == "tongban.region-catalog/v1"
        assert data["region_code"] == code
        assert data["region_name"] == names[code]
        assert (data["dialect"], len(data["entries"])) == EXPECTED_LISTS[code], code
        assert data["catalog_version"] == "2025.1"


@pytest.mark.parametrize("region", sorted(EXPECTED_LISTS))
def test_every_list_marks_itself_synthetic(region: str) -> None:
    assert LISTS[region]["provenance"].startswith("synthetic:")


def test_regions_json_is_all_real_so_it_carries_no_synthetic_marks() -> None:
    # Decision: the README says everything in regions.json is real; instead of a provenance
    # it names its source in `revision`. It must not grow unmarked synthetic content.
    assert set(REGIONS) == {"kind", "revision", "provinces", "special_regions", "counties"}


@pytest.mark.parametrize("region", sorted(EXPECTED_LISTS))
def test_every_referenced_national_code_exists_and_rows_are_well_formed(region: str) -> None:
    matters = {m["code"] for m in CATALOGS["2025.1"]["matters"]}
    entries = LISTS[region]["entries"]
    local_codes = [e["local_code"] for e in entries]
    assert [c for c, n in Counter(local_codes).items() if n > 1] == []
    for e in entries:
        assert set(e) == {
            "local_code",
            "national_codes",
            "local_name",
            "agency_name",
            "agency_code",
            "cancel_date",
        }
        assert e["national_codes"]
        assert set(e["national_codes"]) <= matters, e["local_code"]
        assert len(set(e["national_codes"])) == len(e["national_codes"])
        if e["cancel_date"] is not None:
            date.fromisoformat(e["cancel_date"])


@pytest.mark.parametrize("region", sorted(NOT_IMPLEMENTED))
def test_the_not_implemented_cross_region_matters_are_the_readme_ones(region: str) -> None:
    cross = {m["code"] for m in CATALOGS["2025.1"]["matters"] if m["cross_region_modes"]}
    used = {c for e in LISTS[region]["entries"] for c in e["national_codes"]}
    assert cross - used == NOT_IMPLEMENTED[region]


@pytest.mark.parametrize("region", sorted(EXPECTED_LISTS))
def test_every_agency_code_meant_to_be_valid_passes_its_check(region: str) -> None:
    for e in LISTS[region]["entries"]:
        code = e["agency_code"]
        if code in DIRTY_AGENCY_CODES:
            assert region == "510000", code
            continue
        assert uscc_ok(code), (e["local_code"], code)
        assert is_valid_uscc(code)
        assert code[:2] in ("11", "12")
        assert code[2:4] == region[:2], code  # registered in the agency's province


def test_the_dirty_sichuan_codes_are_broken_the_way_the_readme_says() -> None:
    used = {e["agency_code"] for e in LISTS["510000"]["entries"]}
    assert used >= DIRTY_AGENCY_CODES
    # The failing one is a valid code with its check character replaced (valid: `C`).
    assert not uscc_ok("11510000MBR1GYTA70")
    assert uscc_ok("11510000MBR1GYTA7C")
    # The truncated ones lost exactly the check character: what is left is well formed.
    for truncated in ("11510107007777381", "11510107004715409"):
        assert all(c in USCC_CHARSET for c in truncated)
        assert org_ok(truncated[8:17]), truncated
    # The bare organisation code is characters 9-17 of a USCC and passes GB 11714.
    assert org_ok("009148976")
    assert not org_ok("009148977")


# Real codes (README): their organisation part is not ours to vouch for.
REAL_AGENCY_CODES = {"11370800MB28559184", "11100000000013127D", "11100000MB0143028R"}


def test_synthetic_codes_were_built_from_a_checked_organisation_base() -> None:
    uscc = {e["agency_code"] for data in LISTS.values() for e in data["entries"]}
    uscc -= DIRTY_AGENCY_CODES
    uscc |= {code[:18] for data in CATALOGS.values() for code in data["license_types"]}
    assert len(uscc) > 50
    for code in sorted(uscc - REAL_AGENCY_CODES):
        assert org_ok(code[8:17]), code


def _level(uscc: str) -> str:
    area = uscc[2:8]
    if area.endswith("0000"):
        return "2"
    if area.endswith("00"):
        return "3"
    return "4"


@pytest.mark.parametrize("region", ["110000", "330000", "370000", "440000"])
def test_national_layout_codes_embed_agency_level_and_basic_code(region: str) -> None:
    prefix = region[:2]
    for e in LISTS[region]["entries"]:
        local = e["local_code"]
        assert len(local) in (31, 33), local
        assert local[:18] == e["agency_code"], local
        assert local[18] == _level(e["agency_code"]), local
        basic = local[19:31]
        if basic not in e["national_codes"]:  # a merged item embeds a province-origin code
            assert basic[:2] == prefix, local
            assert len(e["national_codes"]) > 1, local
            assert is_valid_basic_code(basic, PROVINCE_CODES), local
        if len(local) == 33:
            assert re.fullmatch(r"0[1-9]|[1-9]\d", local[31:]), local


HYPHENATED = re.compile(r"51(?:1[AEFGHZ]|20|2B|2C)\d{10}-(\d{12})-000-([0-9A-Z]+)-1-(\d{2})")
LEGACY_POWER = re.compile(r"[AEFGHZ]-\d{6}-\d{3}")
TYPE_BY_LETTER = {"A": "01", "E": "09", "F": "07", "G": "05", "H": "08", "Z": "10"}


def test_sichuan_codes_follow_the_hyphenated_and_legacy_shapes() -> None:
    legacy = []
    for e in LISTS["510000"]["entries"]:
        local = e["local_code"]
        if LEGACY_POWER.fullmatch(local):
            legacy.append(local)
            continue
        match = HYPHENATED.fullmatch(local)
        assert match, local
        area, agency, _ = match.groups()
        assert agency == e["agency_code"], local
        assert area[:2] == "51", local
        kind = local[2:4]
        expected_type = "20" if kind in ("20", "2B", "2C") else TYPE_BY_LETTER[kind[1]]
        assert all(n[2:4] == expected_type for n in e["national_codes"]), local
    assert sorted(legacy) == ["A-000342-002", "F-000213-001", "G-000118-001", "Z-000057-001"]


LETTERS = {"XK": "01", "GG": "20", "QR": "07", "JF": "05", "QT": "10"}


def test_guizhou_codes_follow_the_letter_type_shape() -> None:
    for e in LISTS["520000"]["entries"]:
        local = e["local_code"]
        assert re.fullmatch(r"(XK|GG|QR|JF|QT)\d{8}", local), local
        assert all(n[2:4] == LETTERS[local[:2]] for n in e["national_codes"]), local


def test_hubei_codes_follow_the_power16_shape() -> None:
    for e in LISTS["420000"]["entries"]:
        local = e["local_code"]
        assert re.fullmatch(r"42\d{14}", local), local
        assert local[:6] in ("420000", "420100"), local


@pytest.mark.parametrize(
    ("region", "local"),
    [
        ("440000", "11440000MBDCGK306L2000117112000"),
        ("370000", "11370800MB28559184300011711200001"),
        ("510000", "511A0107000000-510107000000-000-11510107MB062KH77N-1-00"),
        ("510000", "G-000118-001"),
        ("520000", "XK00101000"),
        ("420000", "4201000010700101"),
    ],
)
def test_the_readme_examples_are_in_the_data(region: str, local: str) -> None:
    assert local in {e["local_code"] for e in LISTS[region]["entries"]}
