"""Tests for gateway.catalog.fields: every branch of every validator, with the exact field,
reason and description a client reads."""

from __future__ import annotations

import re
from datetime import date

import pytest

from gateway.api.v1 import application_pb2 as app_pb
from gateway.api.v1 import catalog_pb2
from gateway.catalog import codes, fields
from gateway.errors import FieldViolation, InvalidRequest

PROVINCES = frozenset({"110000", "440000", "510000"})
TODAY = date(2025, 6, 1)
CITIZEN = "110105199003071239"
USCC = "91350100M000100Y43"
HMT_PERMIT = "810000199003071237"  # synthetic, check computed
FOREIGN_2023 = "933100199003071232"  # synthetic, check computed
FOREIGN_2017 = "USA330619900307"  # synthetic


Seen = tuple[str, str, str] | None
"""A validator's verdict as a client reads it: (field, reason, description), or None."""


def seen(violation: FieldViolation | None) -> Seen:
    return None if violation is None else (violation.field, violation.reason, violation.description)


REQUIRED = "required"


# -- text ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "required", "printable", "expected"),
    [
        ("", False, True, None),
        ("", True, True, ("f", "MISSING", REQUIRED)),
        ("a" * 8, True, True, None),
        ("a" * 9, False, True, ("f", "TOO_LONG", "at most 8 characters")),
        ("a\nb", False, True, ("f", "MALFORMED", "printable characters only")),
        ("a\nb", False, False, None),
        ("\x00" * 9, False, True, ("f", "TOO_LONG", "at most 8 characters")),  # the bound first
        ("名字", True, True, None),
    ],
)
def test_text(value: str, required: bool, printable: bool, expected: Seen) -> None:
    found = fields.text(value, "f", 8, required=required, printable=printable)
    assert seen(found) == expected


def test_text_counts_characters_not_bytes() -> None:
    assert fields.text("名" * 8, "f", 8) is None


def test_text_is_optional_and_printable_unless_told() -> None:
    assert fields.text("", "f", 8) is None
    assert seen(fields.text("a\tb", "f", 8)) == ("f", "MALFORMED", "printable characters only")


# -- matching --------------------------------------------------------------------------------

DIGITS = re.compile(r"[0-9]+")


@pytest.mark.parametrize(
    ("value", "required", "expected"),
    [
        ("", False, None),
        ("", True, ("f", "MISSING", REQUIRED)),
        ("1234", True, None),
        ("12345", True, ("f", "TOO_LONG", "at most 4 characters")),
        ("12a4", True, ("f", "BAD_THING", "digits")),
        ("１２", True, ("f", "BAD_THING", "digits")),
    ],
)
def test_matching(value: str, required: bool, expected: Seen) -> None:
    found = fields.matching(value, "f", DIGITS, "digits", 4, required=required, reason="BAD_THING")
    assert seen(found) == expected


def test_matching_says_malformed_by_default_and_describes_the_shape() -> None:
    found = fields.matching("x", "f", DIGITS, "1 to 4 digits", 4)
    assert found == FieldViolation("f", "1 to 4 digits", "MALFORMED")


def test_matching_is_optional_unless_told() -> None:
    assert fields.matching("", "f", DIGITS, "digits", 4) is None


# -- region codes ----------------------------------------------------------------------------

NOT_A_PROVINCE = "a province-level code (XX0000), not a prefecture or county"
BAD_REGION_CODE = "a GB/T 2260 code of 6 ASCII digits"


@pytest.mark.parametrize(
    ("value", "province", "expected"),
    [
        ("440000", True, None),
        ("990000", True, None),  # shape only: whether it exists is the catalog's NOT_FOUND
        ("440305", False, None),
        ("440305", True, ("r", "NOT_A_PROVINCE", NOT_A_PROVINCE)),
        ("440100", True, ("r", "NOT_A_PROVINCE", NOT_A_PROVINCE)),
        ("", True, ("r", "MISSING", REQUIRED)),
        ("", False, ("r", "MISSING", REQUIRED)),
        ("44000", True, ("r", "BAD_REGION_CODE", BAD_REGION_CODE)),
        ("4400000", True, ("r", "BAD_REGION_CODE", BAD_REGION_CODE)),
        ("44000X", True, ("r", "BAD_REGION_CODE", BAD_REGION_CODE)),
        (" 44000", True, ("r", "BAD_REGION_CODE", BAD_REGION_CODE)),
        ("４４００００", True, ("r", "BAD_REGION_CODE", BAD_REGION_CODE)),  # isdigit() says yes
        ("٤٤٠٠٠٠", True, ("r", "BAD_REGION_CODE", BAD_REGION_CODE)),  # Arabic-Indic digits
        ("4" * 1_000_000, True, ("r", "BAD_REGION_CODE", BAD_REGION_CODE)),
    ],
)
def test_region_code(value: str, province: bool, expected: Seen) -> None:
    assert seen(fields.region_code(value, "r", province=province)) == expected


def test_a_region_code_is_a_province_unless_told() -> None:
    assert seen(fields.region_code("440305", "r")) == ("r", "NOT_A_PROVINCE", NOT_A_PROVINCE)


def test_full_width_digits_really_pass_isdigit() -> None:
    # Why the validator needs its ASCII check.
    assert "４４００００".isdigit()
    assert "٤٤٠٠٠٠".isdigit()


# -- matter codes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "required", "expected"),
    [
        ("", False, None),
        ("", True, ("m", "MISSING")),
        ("000117112000", False, None),
        ("440117112000", False, None),  # an item added by a known province
        ("00011711200", False, ("m", "BASIC_CODE_BAD_LENGTH")),
        ("0" * 100_000, False, ("m", "BASIC_CODE_BAD_LENGTH")),
        ("00011711200０", False, ("m", "BASIC_CODE_BAD_CHARACTER")),
        ("990117112000", False, ("m", "BASIC_CODE_UNKNOWN_ORIGIN")),
        ("009917112000", False, ("m", "BASIC_CODE_BAD_MATTER_TYPE")),
    ],
)
def test_matter_code(value: str, required: bool, expected: tuple[str, str] | None) -> None:
    found = fields.matter_code(value, "m", PROVINCES, required=required)
    assert (None if found is None else (found.field, found.reason)) == expected
    if found is not None and found.reason == "MISSING":
        assert found.description == REQUIRED
    elif found is not None:
        # A code's problem is described by `codes` (it names the position at fault).
        problem = codes.validate_basic_code(value, PROVINCES)
        assert problem is not None
        assert found.description == problem.message


def test_a_matter_code_is_optional_unless_told() -> None:
    assert fields.matter_code("", "m", PROVINCES) is None


# -- enums -----------------------------------------------------------------------------------

ROLES = app_pb.RegionRole.DESCRIPTOR
TYPES = catalog_pb2.MatterType.DESCRIPTOR
UNKNOWN_ROLE = "a known RegionRole: one of REGION_ROLE_ORIGIN, REGION_ROLE_TARGET"


@pytest.mark.parametrize(
    ("value", "required", "expected"),
    [
        (app_pb.REGION_ROLE_UNSPECIFIED, False, None),
        (app_pb.REGION_ROLE_UNSPECIFIED, True, ("e", "MISSING", REQUIRED)),
        (app_pb.REGION_ROLE_TARGET, True, None),
        (3, False, ("e", "UNKNOWN", UNKNOWN_ROLE)),
        (99, True, ("e", "UNKNOWN", UNKNOWN_ROLE)),
        (-1, False, ("e", "UNKNOWN", UNKNOWN_ROLE)),
    ],
)
def test_enum_value(value: int, required: bool, expected: Seen) -> None:
    assert seen(fields.enum_value(value, "e", ROLES, required=required)) == expected


def test_an_enum_value_may_be_unspecified_unless_told() -> None:
    assert fields.enum_value(app_pb.REGION_ROLE_UNSPECIFIED, "e", ROLES) is None


def test_an_unknown_enum_value_names_the_known_ones() -> None:
    found = fields.enum_value(11, "type", TYPES)
    assert found is not None
    assert found.description.startswith("a known MatterType: one of ")
    assert "MATTER_TYPE_PUBLIC_SERVICE" in found.description
    assert "UNSPECIFIED" not in found.description
    assert fields.enum_value(catalog_pb2.MATTER_TYPE_PUBLIC_SERVICE, "type", TYPES) is None


# -- id numbers ------------------------------------------------------------------------------

CITIZEN_ID = app_pb.ID_TYPE_CITIZEN_ID
USCC_ID = app_pb.ID_TYPE_USCC
HMT = app_pb.ID_TYPE_HMT_RESIDENCE_PERMIT
FOREIGN = app_pb.ID_TYPE_FOREIGN_PERMANENT_RESIDENCE
NOT_A_CITIZEN_ID = "not a valid 公民身份号码 (GB 11643)"
NOT_A_USCC = "not a valid 统一社会信用代码 (GB 32100)"
NOT_A_HMT_PERMIT = "not a valid 港澳台居民居住证 number"
NOT_A_FOREIGN_PR_ID = "not a valid 外国人永久居留身份证 number"


@pytest.mark.parametrize(
    ("id_type", "value", "expected"),
    [
        (CITIZEN_ID, CITIZEN, None),
        (CITIZEN_ID, "110105199003071238", ("n", "CITIZEN_ID_CHECK_MISMATCH", NOT_A_CITIZEN_ID)),
        (CITIZEN_ID, "990105199003071234", ("n", "CITIZEN_ID_UNKNOWN_PROVINCE", NOT_A_CITIZEN_ID)),
        (CITIZEN_ID, HMT_PERMIT, ("n", "CITIZEN_ID_UNKNOWN_PROVINCE", NOT_A_CITIZEN_ID)),
        (CITIZEN_ID, USCC, ("n", "CITIZEN_ID_BAD_CHARACTER", NOT_A_CITIZEN_ID)),
        (USCC_ID, USCC, None),
        (USCC_ID, "91350100M000100Y44", ("n", "USCC_CHECK_MISMATCH", NOT_A_USCC)),
        (USCC_ID, CITIZEN, ("n", "USCC_CHECK_MISMATCH", NOT_A_USCC)),
        (HMT, HMT_PERMIT, None),
        (HMT, "820000200002290048", None),
        (HMT, "830000194912310021", None),
        (HMT, "810000199003071230", ("n", "HMT_PERMIT_CHECK_MISMATCH", NOT_A_HMT_PERMIT)),
        (HMT, CITIZEN, ("n", "HMT_PERMIT_UNKNOWN_REGION", NOT_A_HMT_PERMIT)),
        (HMT, "81000019900307123", ("n", "HMT_PERMIT_BAD_LENGTH", NOT_A_HMT_PERMIT)),
        (FOREIGN, FOREIGN_2023, None),
        (FOREIGN, FOREIGN_2017, None),
        (FOREIGN, "933100199003071230", ("n", "FOREIGN_PR_ID_CHECK_MISMATCH", NOT_A_FOREIGN_PR_ID)),
        (FOREIGN, CITIZEN, ("n", "FOREIGN_PR_ID_BAD_FIRST_DIGIT", NOT_A_FOREIGN_PR_ID)),
        (FOREIGN, "usa330619900307", ("n", "FOREIGN_PR_ID_BAD_CHARACTER", NOT_A_FOREIGN_PR_ID)),
        (FOREIGN, "9331001990030712", ("n", "FOREIGN_PR_ID_BAD_LENGTH", NOT_A_FOREIGN_PR_ID)),
        # an id type outside the table: presence and the bound only (its own violation says why)
        (app_pb.ID_TYPE_UNSPECIFIED, "anything", None),
        (99, "anything", None),
        (-1, "anything", None),
        (99, "", ("n", "MISSING", REQUIRED)),
        (99, "1" * 19, ("n", "TOO_LONG", "at most 18 characters")),
        (CITIZEN_ID, "", ("n", "MISSING", REQUIRED)),
        (CITIZEN_ID, "1" * 1_000_000, ("n", "TOO_LONG", "at most 18 characters")),
    ],
)
def test_id_number(id_type: int, value: str, expected: Seen) -> None:
    found = fields.id_number(id_type, value, "n", PROVINCES, today=TODAY)
    assert seen(found) == expected


@pytest.mark.parametrize(
    ("id_type", "value", "reason"),
    [
        (CITIZEN_ID, CITIZEN, "CITIZEN_ID_BAD_DATE"),
        (HMT, HMT_PERMIT, "HMT_PERMIT_BAD_DATE"),
    ],
)
def test_an_id_number_born_after_the_given_today_is_refused(
    id_type: int, value: str, reason: str
) -> None:
    # Born 1990-03-07: valid on today's calendar, in the future on the one given.
    assert fields.id_number(id_type, value, "n", PROVINCES) is None
    found = fields.id_number(id_type, value, "n", PROVINCES, today=date(1990, 3, 6))
    assert found is not None
    assert (found.field, found.reason) == ("n", reason)


@pytest.mark.parametrize(
    ("id_type", "value"),
    [
        (CITIZEN_ID, "110105199003071238"),
        (USCC_ID, "110105199003071238"),  # a person's number given as a USCC: still not quoted
        (HMT, "810000199003071230"),
        (FOREIGN, "933100199003071230"),
    ],
)
def test_an_id_number_violation_never_quotes_the_number(id_type: int, value: str) -> None:
    found = fields.id_number(id_type, value, "n", PROVINCES, today=TODAY)
    assert found is not None
    document = fields.id_document(id_type)
    assert document is not None
    assert found.description == f"not a valid {document.name}"
    for start in range(len(value) - 3):
        assert value[start : start + 4] not in found.description


def test_the_id_documents_cover_every_id_type_but_unspecified() -> None:
    known = {v.number for v in app_pb.IdType.DESCRIPTOR.values} - {app_pb.ID_TYPE_UNSPECIFIED}
    assert {d.id_type for d in fields.ID_DOCUMENTS} == known
    assert fields.id_document(app_pb.ID_TYPE_UNSPECIFIED) is None
    assert fields.id_document(99) is None


def test_holder_codes_are_the_standard_codes_then_names() -> None:
    assert {d.id_type: d.holder_code for d in fields.ID_DOCUMENTS} == {
        CITIZEN_ID: "111",
        USCC_ID: "001",
        HMT: "HMT_RESIDENCE_PERMIT",
        FOREIGN: "FOREIGN_PERMANENT_RESIDENCE",
    }
    for document in fields.ID_DOCUMENTS:
        assert fields.holder_document(document.holder_code) is document
    assert fields.holder_document("112") is None
    assert fields.holder_document("") is None


def test_the_id_number_bound_is_the_longest_document() -> None:
    assert max(len(n) for n in (CITIZEN, USCC, HMT_PERMIT, FOREIGN_2023)) == fields.MAX_ID_NUMBER


# -- licence tokens --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ("t", "TOKEN_EMPTY", "required: a compact JWS")),
        ("a" * 16, None),
        ("a" * 17, ("t", "TOKEN_TOO_LARGE", "at most 16 bytes")),
        ("名" * 5, None),  # 15 bytes
        ("名" * 5 + "a", None),  # 16 bytes
        ("名" * 5 + "ab", ("t", "TOKEN_TOO_LARGE", "at most 16 bytes")),  # 17 bytes in 7 characters
    ],
)
def test_license_token(value: str, expected: Seen) -> None:
    assert seen(fields.license_token(value, "t", 16)) == expected


# -- collecting ------------------------------------------------------------------------------


def test_found_keeps_the_violations_in_order() -> None:
    a, b = FieldViolation("a", "x", "A"), FieldViolation("b", "y", "B")
    assert fields.found(None, a, None, b) == [a, b]
    assert fields.found() == []


def test_raise_if_any() -> None:
    fields.raise_if_any("fine", None, None)
    violation = FieldViolation("a", "x", "A")
    with pytest.raises(InvalidRequest) as caught:
        fields.raise_if_any("bad", None, violation)
    assert caught.value.message == "bad"
    assert caught.value.field_violations == (violation,)


# -- form values, by the catalog's field type --------------------------------------------------

PROVINCES_FOR_FORMS = frozenset({"110000", "440000"})


BAD_DATE = ("v", "BAD_DATE", "a date YYYY-MM-DD")
BAD_INTEGER = ("v", "BAD_INTEGER", "an integer of at most 18 digits")
BAD_BOOLEAN = ("v", "BAD_BOOLEAN", "true or false")
BAD_ID_NUMBER = ("v", "BAD_ID_NUMBER", "not a valid identity document number")


@pytest.mark.parametrize(
    ("field_type", "value", "expected"),
    [
        ("string", "任何文字\n两行", None),
        ("string", "", ("v", "MISSING", REQUIRED)),
        ("string", "x" * 40, None),
        ("string", "x" * 41, ("v", "TOO_LONG", "at most 40 characters")),
        ("date", "2026-12-31", None),
        ("date", "2026-02-30", BAD_DATE),
        ("date", "2026-1-31", BAD_DATE),
        ("date", "２０２６-01-01", BAD_DATE),
        ("region_code", "440305", None),
        ("region_code", "44030", ("v", "BAD_REGION_CODE", BAD_REGION_CODE)),
        ("id_number", "110105199003071239", None),
        ("id_number", HMT_PERMIT, None),
        ("id_number", FOREIGN_2023, None),
        ("id_number", FOREIGN_2017, None),
        ("id_number", "110105199003071238", BAD_ID_NUMBER),
        ("id_number", USCC, BAD_ID_NUMBER),  # an organisation's: not a person's document
        ("uscc", "91350100M000100Y43", None),
        ("uscc", "91350100M000100Y44", ("v", "USCC_CHECK_MISMATCH", NOT_A_USCC)),
        ("integer", "-12", None),
        ("integer", "1.5", BAD_INTEGER),
        ("integer", "１２", BAD_INTEGER),
        ("boolean", "true", None),
        ("boolean", "false", None),
        ("boolean", "yes", BAD_BOOLEAN),
        ("boolean", "True", BAD_BOOLEAN),
    ],
)
def test_form_value_by_type(field_type: str, value: str, expected: Seen) -> None:
    found = fields.form_value(field_type, value, "v", PROVINCES_FOR_FORMS, 40)
    assert seen(found) == expected


def test_form_value_of_an_unknown_type_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="no validator"):
        fields.form_value("colour", "red", "f", PROVINCES_FOR_FORMS, 40)
