"""Tests for gateway.catalog.codes.

Real codes from the standards reference must validate; every single-character corruption
of them must fail wherever the scheme can detect it, and where it provably cannot (GB 11714's
mod 11, matter codes without a check character) the tests pin down exactly what survives.
"""

from __future__ import annotations

import inspect
import os
import re
import string
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.catalog import codes
from gateway.catalog.codes import (
    HMT_ADDRESS_CODES,
    MATTER_TYPES,
    AgencyCodeKind,
    BasicCode,
    CodeError,
    CodeProblem,
    HandlingItemCode,
    ImplementationCode,
    LicenseIdentifier,
    citizen_id_check_char,
    classify_agency_code,
    is_province_code,
    is_valid_area_code,
    is_valid_basic_code,
    is_valid_citizen_id,
    is_valid_handling_item_code,
    is_valid_implementation_code,
    is_valid_license_identifier,
    is_valid_org_code,
    is_valid_region_code,
    is_valid_uscc,
    license_identifier_check_char,
    make_license_identifier,
    mask_citizen_id,
    org_code_check_char,
    parse_basic_code,
    parse_handling_item_code,
    parse_implementation_code,
    parse_license_identifier,
    province_of,
    upgrade_citizen_id_15,
    uscc_check_char,
    validate_area_code,
    validate_basic_code,
    validate_citizen_id,
    validate_foreign_permanent_residence_id,
    validate_handling_item_code,
    validate_hmt_residence_permit,
    validate_implementation_code,
    validate_license_identifier,
    validate_org_code,
    validate_region_code,
    validate_uscc,
)

# The 31 mainland province-level codes (GB/T 2260; reference section 2).
PROVINCES = frozenset(
    {
        "110000", "120000", "130000", "140000", "150000", "210000", "220000", "230000",
        "310000", "320000", "330000", "340000", "350000", "360000", "370000", "410000",
        "420000", "430000", "440000", "450000", "460000", "500000", "510000", "520000",
        "530000", "540000", "610000", "620000", "630000", "640000", "650000",
    }
)  # fmt: skip
TODAY = date(2025, 6, 1)

USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
ALNUM36 = string.digits + string.ascii_uppercase
# Characters outside every alphabet here: lowercase, excluded letters, blanks, full width.
STRANGERS = "aixIOSVZ -./\t１Ｘ京"

REAL_USCCS = (
    "91350100M000100Y43",
    "91120222MA06DG3067",
    "11100000000013338W",
    "11100000000013127D",
    "11100000MB0143028R",
    "1110000000001332XW",
    "11370800MB28559184",
    "115113010833722043",  # agency code inside the Sichuan hyphenated example
)
SYNTHETIC_USCCS = ("91330106MA2H12349J", "11320000014000167L", "11440300MB2C92050G")
ORG_CODES = (("MA2H1234", "9"), ("MB2C9205", "0"), ("00001332", "X"))
CITIZEN_IDS = (
    "110105199003071239",
    "440305198511200466",
    "510107200002290010",  # leap day
    "11010519491231002X",  # X check
)
IMPLEMENTATION_CODE = "11370800MB285591843370117002011"
HANDLING_ITEM_CODE = "11370800MB28559184300011711200001"
LICENSE_IDS = (
    "1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.001.F",
    "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.001.U",
    "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.002.S",
    "1.2.156.3005.2.11100000000013338W087.11370800MB28559184.37080001202411010001.001.3",
    "1.2.156.3005.2.11100000000013338W009.11330105002500287C.2025052201.002.0",
)

PROPERTY = settings(max_examples=200, deadline=None, database=None)


def substitutions(code: str, alphabet: str) -> list[tuple[int, str, str]]:
    """Every (index, replacement, corrupted code) that changes one character of `code`."""
    return [
        (index, char, code[:index] + char + code[index + 1 :])
        for index in range(len(code))
        for char in alphabet
        if char != code[index]
    ]


def replaced(code: str, index: int, text: str) -> str:
    """`code` with `text` written over it from 0-based `index`."""
    return code[:index] + text + code[index + len(text) :]


def reason(problem: CodeProblem | None) -> str | None:
    return None if problem is None else problem.reason


def with_citizen_check(first17: str) -> str:
    return first17 + citizen_id_check_char(first17)


def with_uscc_check(first17: str) -> str:
    return first17 + uscc_check_char(first17)


# -- 统一社会信用代码 ----------------------------------------------------------------------


@pytest.mark.parametrize("code", REAL_USCCS + SYNTHETIC_USCCS)
def test_reference_usccs_validate(code: str) -> None:
    assert validate_uscc(code) is None
    assert is_valid_uscc(code)
    assert uscc_check_char(code[:17]) == code[17]


def test_uscc_weights_are_powers_of_three_mod_31() -> None:
    # The reference lists the weights; one-hot bodies recover each weight from the check.
    weights = []
    for position in range(17):
        body = "0" * position + "1" + "0" * (16 - position)
        weights.append((31 - USCC_CHARSET.index(uscc_check_char(body))) % 31)
    assert weights == [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]


@pytest.mark.parametrize("code", REAL_USCCS + SYNTHETIC_USCCS)
def test_every_single_substitution_of_a_uscc_fails(code: str) -> None:
    corrupted = substitutions(code, USCC_CHARSET)
    failures = [c for _, _, c in corrupted if validate_uscc(c) is not None]
    assert len(corrupted) == 18 * 30
    assert len(failures) == len(corrupted)
    strangers = substitutions(code, STRANGERS)
    assert {reason(validate_uscc(c)) for _, _, c in strangers} == {"USCC_BAD_CHARACTER"}


def test_uscc_does_not_require_the_embedded_org_code_check() -> None:
    # 主体标识码 M000100Y5 fails GB 11714 (its check should be 4), yet the USCC check rules.
    code = with_uscc_check("91350100M000100Y5")
    assert code == "91350100M000100Y56"
    assert reason(validate_org_code(code[8:17])) == "ORG_CODE_CHECK_MISMATCH"
    assert validate_uscc(code) is None


@pytest.mark.parametrize(
    ("code", "expected_reason", "position"),
    [
        ("", "USCC_BAD_LENGTH", None),
        ("91350100M000100Y4", "USCC_BAD_LENGTH", None),
        ("91350100M000100Y433", "USCC_BAD_LENGTH", None),
        (" 91350100M000100Y43", "USCC_BAD_LENGTH", None),
        ("91350100M000100Y43\n", "USCC_BAD_LENGTH", None),
        ("91350100m000100Y43", "USCC_BAD_CHARACTER", 9),
        ("91350100M000100y43", "USCC_BAD_CHARACTER", 16),
        ("91350100I000100Y43", "USCC_BAD_CHARACTER", 9),
        ("91350100O000100Y43", "USCC_BAD_CHARACTER", 9),
        ("9135 100M000100Y43", "USCC_BAD_CHARACTER", 5),
        ("91350100M000100Y44", "USCC_CHECK_MISMATCH", 18),
    ],
)
def test_uscc_problems(code: str, expected_reason: str, position: int | None) -> None:
    problem = validate_uscc(code)
    assert problem is not None
    assert problem.reason == expected_reason
    if position is not None:
        assert f"position {position}" in problem.message
    assert not is_valid_uscc(code)


def test_uscc_messages_name_the_fault() -> None:
    assert validate_uscc("91350100M000100Y44") == CodeProblem(
        "USCC_CHECK_MISMATCH",
        "USCC has check character '4' at position 18; the first 17 characters require '3'.",
    )
    lower = validate_uscc("91350100m000100Y43")
    assert lower is not None
    assert "'m'" in lower.message
    assert "upper case" in lower.message


@pytest.mark.parametrize(
    ("body", "expected_reason"),
    [
        ("9135010", "USCC_BAD_LENGTH"),
        ("91350100M000100Y43", "USCC_BAD_LENGTH"),
        ("91350100M00010OY4", "USCC_BAD_CHARACTER"),
    ],
)
def test_uscc_check_char_rejects_bad_bodies(body: str, expected_reason: str) -> None:
    with pytest.raises(CodeError) as raised:
        uscc_check_char(body)
    assert raised.value.problem.reason == expected_reason
    assert isinstance(raised.value, ValueError)


uscc_bodies = st.text(alphabet=USCC_CHARSET, min_size=17, max_size=17)


@PROPERTY
@given(body=uscc_bodies)
def test_property_uscc_body_plus_check_validates(body: str) -> None:
    assert validate_uscc(with_uscc_check(body)) is None


@PROPERTY
@given(body=uscc_bodies, data=st.data())
def test_property_uscc_detects_any_single_substitution(body: str, data: st.DataObject) -> None:
    # Modulus 31 is prime, every weight is non-zero mod 31 and values stay below 31, so
    # weight * (new - old) is never 0 mod 31: detection is guaranteed, and checked here.
    code = with_uscc_check(body)
    index = data.draw(st.integers(min_value=0, max_value=17))
    char = data.draw(st.sampled_from([c for c in USCC_CHARSET if c != code[index]]))
    assert not is_valid_uscc(code[:index] + char + code[index + 1 :])


# -- 组织机构代码 ------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "check"), ORG_CODES)
def test_reference_org_codes(body: str, check: str) -> None:
    assert org_code_check_char(body) == check
    assert validate_org_code(body + check) is None
    assert validate_org_code(f"{body}-{check}") is None
    assert is_valid_org_code(f"{body}-{check}")


def test_org_code_eleven_is_written_zero_and_ten_is_written_x() -> None:
    # MB2C9205 sums to 253 = 23 * 11: 11 - 0 = 11 -> '0' (not '11', not an error).
    assert org_code_check_char("MB2C9205") == "0"
    assert org_code_check_char("00001332") == "X"
    assert validate_org_code("MB2C92051") is not None


@pytest.mark.parametrize(("body", "check"), ORG_CODES)
def test_org_code_substitutions_fail_unless_the_values_agree_mod_11(body: str, check: str) -> None:
    # GB 11714 reduces values 0-35 modulo 11, so replacing a body character by one whose
    # value differs by 11, 22 or 33 cannot be detected. Everything else must be.
    code = body + check
    survivors = set()
    for index, char, corrupted in substitutions(code, ALNUM36):
        if validate_org_code(corrupted) is None:
            survivors.add((index, char))
    predicted = {
        (index, char)
        for index, char, _ in substitutions(body, ALNUM36)
        if (int(char, 36) - int(body[index], 36)) % 11 == 0
    }
    assert survivors == predicted
    assert all(index < 8 for index, _ in survivors)  # the check position is always guarded


def test_org_code_blind_spot_is_real() -> None:
    # 'M' (22) -> '0' (0): the same residue mod 11, so the corrupted code still validates.
    assert is_valid_org_code("0A2H12349")
    corrupted = [c for _, _, c in substitutions("MA2H12349", ALNUM36) if is_valid_org_code(c)]
    assert len(corrupted) == 20  # M:3 A:2 2:3 H:2 1:3 2:3 3:2 4:2


@pytest.mark.parametrize(
    ("code", "expected_reason", "position"),
    [
        ("", "ORG_CODE_BAD_LENGTH", None),
        ("MA2H1234", "ORG_CODE_BAD_LENGTH", None),
        ("MA2H1234--9", "ORG_CODE_BAD_LENGTH", None),
        ("MA2H1234 9", "ORG_CODE_BAD_CHARACTER", 9),
        ("MA2H1234_9", "ORG_CODE_BAD_CHARACTER", 9),
        ("ma2h12349", "ORG_CODE_BAD_CHARACTER", 1),
        ("MA2H1234x", "ORG_CODE_BAD_CHARACTER", 9),
        ("MA2H1234-A", "ORG_CODE_BAD_CHARACTER", 10),
        ("MA2H1234-", "ORG_CODE_BAD_CHARACTER", 9),
        ("MA2H12348", "ORG_CODE_CHECK_MISMATCH", 9),
        ("MA2H1234-8", "ORG_CODE_CHECK_MISMATCH", 10),
    ],
)
def test_org_code_problems(code: str, expected_reason: str, position: int | None) -> None:
    problem = validate_org_code(code)
    assert problem is not None
    assert problem.reason == expected_reason
    if position is not None:
        assert f"position {position}" in problem.message


def test_org_code_check_char_rejects_bad_bodies() -> None:
    with pytest.raises(CodeError) as raised:
        org_code_check_char("MA2H123")
    assert raised.value.problem.reason == "ORG_CODE_BAD_LENGTH"
    with pytest.raises(CodeError) as raised:
        org_code_check_char("MA2H123-")
    assert raised.value.problem.reason == "ORG_CODE_BAD_CHARACTER"


@PROPERTY
@given(body=st.text(alphabet=ALNUM36, min_size=8, max_size=8), data=st.data())
def test_property_org_code_detection_is_exactly_the_mod_11_rule(
    body: str, data: st.DataObject
) -> None:
    code = body + org_code_check_char(body)
    assert is_valid_org_code(code)
    index = data.draw(st.integers(min_value=0, max_value=7))
    char = data.draw(st.sampled_from([c for c in ALNUM36 if c != body[index]]))
    undetectable = (int(char, 36) - int(body[index], 36)) % 11 == 0
    assert is_valid_org_code(code[:index] + char + code[index + 1 :]) == undetectable


# -- 公民身份号码 ------------------------------------------------------------------------


@pytest.mark.parametrize("code", CITIZEN_IDS)
def test_reference_citizen_ids_validate(code: str) -> None:
    assert validate_citizen_id(code, PROVINCES, today=TODAY) is None
    assert is_valid_citizen_id(code, PROVINCES, today=TODAY)
    assert citizen_id_check_char(code[:17]) == code[17]


def test_citizen_id_today_defaults_to_the_clock() -> None:
    assert validate_citizen_id("110105199003071239", PROVINCES) is None
    tomorrow = date.today() + timedelta(days=2)
    born_tomorrow = with_citizen_check(f"110105{tomorrow:%Y%m%d}123")
    assert reason(validate_citizen_id(born_tomorrow, PROVINCES)) == "CITIZEN_ID_BAD_DATE"


def test_is_valid_citizen_id_bounds_the_birth_date_by_the_given_today() -> None:
    born_after_today = with_citizen_check("11010520250602123")
    assert is_valid_citizen_id(born_after_today, PROVINCES)
    assert not is_valid_citizen_id(born_after_today, PROVINCES, today=TODAY)


@pytest.fixture
def host_in_another_day() -> Iterator[date]:
    """Puts the host's clock in a time zone whose date is not China's; yields China's date.

    UTC-12 is the day before China until 20:00 there, UTC+14 the day after from 18:00.
    """
    china = datetime.now(timezone(timedelta(hours=8)))
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Etc/GMT+12" if china.hour < 19 else "Etc/GMT-14"
    time.tzset()
    try:
        assert date.today() != china.date()
        yield china.date()
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


def test_the_default_today_is_chinas_whatever_the_host_time_zone(
    host_in_another_day: date,
) -> None:
    china_today = host_in_another_day
    born_today = with_citizen_check(f"110105{china_today:%Y%m%d}123")
    born_tomorrow = with_citizen_check(f"110105{china_today + timedelta(days=1):%Y%m%d}123")
    assert validate_citizen_id(born_today, PROVINCES) is None
    assert reason(validate_citizen_id(born_tomorrow, PROVINCES)) == "CITIZEN_ID_BAD_DATE"


def test_citizen_id_check_chars_follow_the_weight_table() -> None:
    # A one-hot body sums to one weight; all zeros sums to 0. Together they reach every
    # residue mod 11, so each entry of "10X98765432" is pinned.
    one_hot = [citizen_id_check_char("0" * i + "1" + "0" * (16 - i)) for i in range(17)]
    assert "".join(one_hot) == "532748X069532748X"
    assert citizen_id_check_char("0" * 17) == "1"


@PROPERTY
@given(body=st.text(alphabet=string.digits, min_size=17, max_size=17))
def test_property_citizen_id_check_is_iso_7064_mod_11_2(body: str) -> None:
    # The same check stated the ISO 7064 way: digits weighted 2^(18-i), plus the check's
    # value (X = 10), is 1 mod 11.
    check = citizen_id_check_char(body)
    value = 10 if check == "X" else int(check)
    assert (sum(int(d) * 2 ** (17 - i) for i, d in enumerate(body)) + value) % 11 == 1


@pytest.mark.parametrize("code", CITIZEN_IDS)
def test_every_single_substitution_of_a_citizen_id_fails(code: str) -> None:
    # Weights are non-zero mod 11 and digits differ by 1-9, so the check always catches a
    # changed digit; 'X' in the body is a bad character; another check value mismatches.
    corrupted = substitutions(code, string.digits + "X")
    failures = [
        c for _, _, c in corrupted if validate_citizen_id(c, PROVINCES, today=TODAY) is not None
    ]
    assert len(corrupted) == 18 * 10
    assert len(failures) == len(corrupted)
    strangers = substitutions(code, STRANGERS)
    assert {reason(validate_citizen_id(c, PROVINCES, today=TODAY)) for _, _, c in strangers} == {
        "CITIZEN_ID_BAD_CHARACTER"
    }


@pytest.mark.parametrize(
    ("first17", "why"),
    [
        ("11010519900230123", "30 February"),
        ("11010519000229123", "1900 is not a leap year"),
        ("11010520230229123", "2023 is not a leap year"),
        ("11010519901301123", "month 13"),
        ("11010519900100123", "day 0"),
        ("11010518991231123", "before 1900"),
        ("11010520250602123", "the day after TODAY"),
        ("11010530000101123", "far future"),
    ],
)
def test_citizen_id_bad_birth_dates(first17: str, why: str) -> None:
    # The check character is right, so only the date can be at fault.
    code = with_citizen_check(first17)
    assert reason(validate_citizen_id(code, PROVINCES, today=TODAY)) == "CITIZEN_ID_BAD_DATE", why


@pytest.mark.parametrize("birth", ["19000101", "20250601", "20000229"])
def test_citizen_id_birth_date_boundaries_are_inclusive(birth: str) -> None:
    code = with_citizen_check(f"110105{birth}123")
    assert validate_citizen_id(code, PROVINCES, today=TODAY) is None


@pytest.mark.parametrize("prefix", ["71", "81", "82", "99", "00", "10", "16"])
def test_citizen_id_unknown_province(prefix: str) -> None:
    # 71/81/82 are GB/T 2260 province codes but not in the mainland set the caller passes.
    code = with_citizen_check(f"{prefix}0105199003071123"[:17])
    problem = validate_citizen_id(code, PROVINCES, today=TODAY)
    assert reason(problem) == "CITIZEN_ID_UNKNOWN_PROVINCE"
    assert validate_citizen_id(code, PROVINCES | {f"{prefix}0000"}, today=TODAY) is None


@pytest.mark.parametrize(
    ("code", "expected_reason"),
    [
        ("", "CITIZEN_ID_BAD_LENGTH"),
        ("11010519900307123", "CITIZEN_ID_BAD_LENGTH"),
        ("1101051990030712399", "CITIZEN_ID_BAD_LENGTH"),
        ("110105900307123", "CITIZEN_ID_BAD_LENGTH"),
        (" 110105199003071239", "CITIZEN_ID_BAD_LENGTH"),
        ("11010519491231002x", "CITIZEN_ID_BAD_CHARACTER"),
        ("11010519491231 02X", "CITIZEN_ID_BAD_CHARACTER"),
        ("１10105199003071239", "CITIZEN_ID_BAD_CHARACTER"),
        ("110105199003071238", "CITIZEN_ID_CHECK_MISMATCH"),
        ("11010519491231002Y", "CITIZEN_ID_BAD_CHARACTER"),
    ],
)
def test_citizen_id_problems(code: str, expected_reason: str) -> None:
    assert reason(validate_citizen_id(code, PROVINCES, today=TODAY)) == expected_reason


def test_citizen_id_15_digit_numbers_get_a_hint() -> None:
    problem = validate_citizen_id("110105900307123", PROVINCES, today=TODAY)
    assert problem is not None
    assert "upgrade_citizen_id_15" in problem.message


@pytest.mark.parametrize(
    "code",
    [
        "110105199002301239",
        "110105199003071238",
        "710105199003071239",
        "110105209903071239",
        "11010519900307a239",
    ],
)
def test_citizen_id_messages_never_quote_the_number(code: str) -> None:
    problem = validate_citizen_id(code, PROVINCES, today=TODAY)
    assert problem is not None
    for start in range(len(code) - 2):
        assert code[start : start + 3] not in problem.message


def test_upgrade_citizen_id_15() -> None:
    assert upgrade_citizen_id_15("110105900307123") == "110105199003071239"
    assert upgrade_citizen_id_15("110105491231002") == "11010519491231002X"
    with pytest.raises(CodeError) as raised:
        upgrade_citizen_id_15("11010590030712")
    assert raised.value.problem.reason == "CITIZEN_ID_BAD_LENGTH"
    with pytest.raises(CodeError) as raised:
        upgrade_citizen_id_15("11010590030712X")
    assert raised.value.problem.reason == "CITIZEN_ID_BAD_CHARACTER"


@pytest.mark.parametrize(
    ("code", "masked"),
    [
        ("110105199003071239", "110105********1239"),
        ("11010519491231002X", "110105********002X"),
        ("110105900307123", "***********7123"),
        ("810000199003071239", "810000********1239"),  # a residence permit: GB 11643 layout
        ("912345678901234560", "**************4560"),  # 2023 permanent residence: 4 kept
        ("91234567890123456X", "**************456X"),  # and with the check X
        ("91234567890123456９", "**************456９"),  # 17 ASCII digits from 9 decide
        ("91330106MA2H12349J", "913301********349J"),  # a USCC from 9 is not one
        ("USA123456789012", "***********9012"),  # 2017 permanent residence
        ("12345", "*2345"),
        ("1234", "****"),
        ("", ""),
    ],
)
def test_mask_citizen_id(code: str, masked: str) -> None:
    assert mask_citizen_id(code) == masked
    assert len(mask_citizen_id(code)) == len(code)


def test_citizen_id_check_char_rejects_bad_bodies() -> None:
    with pytest.raises(CodeError) as raised:
        citizen_id_check_char("1101051990030712")
    assert raised.value.problem.reason == "CITIZEN_ID_BAD_LENGTH"
    with pytest.raises(CodeError) as raised:
        citizen_id_check_char("1101051990030712X")
    assert raised.value.problem.reason == "CITIZEN_ID_BAD_CHARACTER"


citizen_bodies = st.builds(
    lambda province, county, birth, sequence: f"{province[:2]}{county}{birth:%Y%m%d}{sequence}",
    st.sampled_from(sorted(PROVINCES)),
    st.text(alphabet=string.digits, min_size=4, max_size=4),
    st.dates(min_value=date(1900, 1, 1), max_value=TODAY),
    st.text(alphabet=string.digits, min_size=3, max_size=3),
)


@PROPERTY
@given(body=citizen_bodies, data=st.data())
def test_property_citizen_id_valid_then_any_substitution_fails(
    body: str, data: st.DataObject
) -> None:
    code = with_citizen_check(body)
    assert validate_citizen_id(code, PROVINCES, today=TODAY) is None
    index = data.draw(st.integers(min_value=0, max_value=17))
    char = data.draw(st.sampled_from([c for c in string.digits + "X" if c != code[index]]))
    corrupted = code[:index] + char + code[index + 1 :]
    assert validate_citizen_id(corrupted, PROVINCES, today=TODAY) is not None


# -- 港澳台居民居住证 (State Council, 2018) -----------------------------------------------------

# Synthetic numbers in the GB 11643 layout, one per address code, check computed.
HMT_PERMITS = ("810000199003071237", "820000200002290048", "830000194912310021")


def test_hmt_address_codes_are_the_three_of_the_reference() -> None:
    assert dict(HMT_ADDRESS_CODES) == {"810000": "香港", "820000": "澳门", "830000": "台湾"}


@pytest.mark.parametrize("code", HMT_PERMITS)
def test_hmt_residence_permits_validate(code: str) -> None:
    assert validate_hmt_residence_permit(code, today=TODAY) is None
    # a 公民身份号码 check refuses them: their address code is no province's
    assert reason(validate_citizen_id(code, PROVINCES, today=TODAY)) == (
        "CITIZEN_ID_UNKNOWN_PROVINCE"
    )


@pytest.mark.parametrize("code", HMT_PERMITS)
def test_every_single_substitution_of_an_hmt_permit_fails(code: str) -> None:
    corrupted = substitutions(code, string.digits + "X")
    assert all(validate_hmt_residence_permit(c, today=TODAY) is not None for _, _, c in corrupted)
    strangers = substitutions(code, STRANGERS)
    assert {reason(validate_hmt_residence_permit(c, today=TODAY)) for _, _, c in strangers} == {
        "HMT_PERMIT_BAD_CHARACTER"
    }


@pytest.mark.parametrize(
    ("first17", "expected_reason"),
    [
        ("11010519900307123", "HMT_PERMIT_UNKNOWN_REGION"),  # a citizen's county code
        ("71000019900307123", "HMT_PERMIT_UNKNOWN_REGION"),  # GB/T 2260's 台湾省, not 830000
        ("84000019900307123", "HMT_PERMIT_UNKNOWN_REGION"),
        ("81010019900307123", "HMT_PERMIT_UNKNOWN_REGION"),  # all six digits are the code
        ("81000019900230123", "HMT_PERMIT_BAD_DATE"),
        ("81000018991231123", "HMT_PERMIT_BAD_DATE"),
        ("81000020250602123", "HMT_PERMIT_BAD_DATE"),  # the day after TODAY
    ],
)
def test_hmt_permit_problems_with_a_right_check(first17: str, expected_reason: str) -> None:
    code = with_citizen_check(first17)
    assert reason(validate_hmt_residence_permit(code, today=TODAY)) == expected_reason


@pytest.mark.parametrize(
    ("code", "expected_reason"),
    [
        ("", "HMT_PERMIT_BAD_LENGTH"),
        ("81000019900307123", "HMT_PERMIT_BAD_LENGTH"),
        ("8100001990030712399", "HMT_PERMIT_BAD_LENGTH"),
        ("８10000199003071239", "HMT_PERMIT_BAD_CHARACTER"),
        ("81000019900307123Y", "HMT_PERMIT_BAD_CHARACTER"),
        ("810000199003071230", "HMT_PERMIT_CHECK_MISMATCH"),
    ],
)
def test_hmt_permit_problems(code: str, expected_reason: str) -> None:
    assert reason(validate_hmt_residence_permit(code, today=TODAY)) == expected_reason


def test_hmt_permit_today_defaults_to_the_clock() -> None:
    tomorrow = date.today() + timedelta(days=2)
    born_tomorrow = with_citizen_check(f"810000{tomorrow:%Y%m%d}123")
    assert reason(validate_hmt_residence_permit(born_tomorrow)) == "HMT_PERMIT_BAD_DATE"
    assert validate_hmt_residence_permit(HMT_PERMITS[0]) is None


# -- 外国人永久居留身份证 (National Immigration Administration) ------------------------------------

# Synthetic: 2023 cards are 9 + 16 digits + the GB 11643 check; 2017 cards 3 letters + 12 digits.
FOREIGN_2023 = ("933100199003071232", "900000000000000004", "90000000000000008X")
FOREIGN_2017 = ("USA330619900307", "JPN110000000001")


@pytest.mark.parametrize("code", FOREIGN_2023 + FOREIGN_2017)
def test_foreign_permanent_residence_numbers_validate(code: str) -> None:
    assert validate_foreign_permanent_residence_id(code) is None


@pytest.mark.parametrize("code", FOREIGN_2023)
def test_every_single_substitution_of_a_2023_card_fails(code: str) -> None:
    corrupted = substitutions(code, string.digits + "X")
    assert all(validate_foreign_permanent_residence_id(c) is not None for _, _, c in corrupted)


def test_a_2023_card_is_checked_only_for_what_is_published() -> None:
    # Positions 2-17 carry no rule we may check [U]: any digits there, with the right check.
    assert validate_foreign_permanent_residence_id(with_citizen_check("9" + "9" * 16)) is None
    assert validate_foreign_permanent_residence_id(with_citizen_check("9" + "0" * 16)) is None


@pytest.mark.parametrize(
    ("code", "expected_reason"),
    [
        ("", "FOREIGN_PR_ID_BAD_LENGTH"),
        ("9331001990030712", "FOREIGN_PR_ID_BAD_LENGTH"),
        ("USA3306199003071", "FOREIGN_PR_ID_BAD_LENGTH"),
        (with_citizen_check("13310019900307123"), "FOREIGN_PR_ID_BAD_FIRST_DIGIT"),
        (with_citizen_check("83310019900307123"), "FOREIGN_PR_ID_BAD_FIRST_DIGIT"),
        ("9331001990030712X3", "FOREIGN_PR_ID_BAD_CHARACTER"),
        ("93310019900307123Y", "FOREIGN_PR_ID_BAD_CHARACTER"),
        ("９33100199003071230", "FOREIGN_PR_ID_BAD_CHARACTER"),
        ("933100199003071230", "FOREIGN_PR_ID_CHECK_MISMATCH"),
        ("usa330619900307", "FOREIGN_PR_ID_BAD_CHARACTER"),  # codes are upper case
        ("US1330619900307", "FOREIGN_PR_ID_BAD_CHARACTER"),
        ("USA33061990030X", "FOREIGN_PR_ID_BAD_CHARACTER"),
        ("ÜSA330619900307", "FOREIGN_PR_ID_BAD_CHARACTER"),
        ("USA３30619900307", "FOREIGN_PR_ID_BAD_CHARACTER"),
    ],
)
def test_foreign_permanent_residence_problems(code: str, expected_reason: str) -> None:
    assert reason(validate_foreign_permanent_residence_id(code)) == expected_reason


@pytest.mark.parametrize(
    "code",
    [
        "USA33061990030X",
        "9331001990030712X3",
        with_citizen_check("13310019900307123"),
        "933100199003071230",
        with_citizen_check("11010019900307123"),  # a citizen's number as a residence permit
        with_citizen_check("81000019900230123"),
    ],
)
def test_permit_messages_never_quote_the_number(code: str) -> None:
    # Positions 1-6 may be a public address code (810000) that a message names as the rule.
    for problem in (
        validate_foreign_permanent_residence_id(code),
        validate_hmt_residence_permit(code, today=TODAY),
    ):
        assert problem is not None
        for start in range(6, len(code) - 3):
            assert code[start : start + 4] not in problem.message


# -- Region codes ----------------------------------------------------------------------


@pytest.mark.parametrize("code", ["110105", "330106", "370811", "440305", "510107", "511602"])
def test_verified_county_codes_are_plausible(code: str) -> None:
    assert validate_region_code(code, PROVINCES) is None
    assert is_valid_region_code(code, PROVINCES)
    assert not is_province_code(code, PROVINCES)


def test_province_codes() -> None:
    assert all(is_province_code(code, PROVINCES) for code in PROVINCES)
    assert all(validate_region_code(code, PROVINCES) is None for code in PROVINCES)
    assert not is_province_code("710000", PROVINCES)
    assert is_province_code("710000", PROVINCES | {"710000"})
    assert not is_province_code("370800", PROVINCES)
    assert not is_province_code("11000", PROVINCES)


@pytest.mark.parametrize(
    ("code", "province"),
    [("370811", "370000"), ("110000", "110000"), ("511602000000", "510000"),
     ("110105199003071239", "110000"), ("50", "500000"), ("44A", "440000")],
)  # fmt: skip
def test_province_of(code: str, province: str) -> None:
    assert province_of(code) == province


@pytest.mark.parametrize("code", ["", "1", "A10000", "1 0000", "１10000"])
def test_province_of_rejects_codes_without_two_leading_digits(code: str) -> None:
    with pytest.raises(CodeError):
        province_of(code)


@pytest.mark.parametrize(
    ("code", "expected_reason"),
    [
        ("", "REGION_CODE_BAD_LENGTH"),
        ("11010", "REGION_CODE_BAD_LENGTH"),
        ("1101050", "REGION_CODE_BAD_LENGTH"),
        (" 11010", "REGION_CODE_BAD_CHARACTER"),
        ("11O105", "REGION_CODE_BAD_CHARACTER"),
        ("11010５", "REGION_CODE_BAD_CHARACTER"),
        ("710000", "REGION_CODE_UNKNOWN_PROVINCE"),
        ("990101", "REGION_CODE_UNKNOWN_PROVINCE"),
    ],
)
def test_region_code_problems(code: str, expected_reason: str) -> None:
    assert reason(validate_region_code(code, PROVINCES)) == expected_reason


@pytest.mark.parametrize(
    ("code", "expected_reason"),
    [
        ("511602000000", None),
        ("370811001002", None),
        ("51160200000", "AREA_CODE_BAD_LENGTH"),
        ("511602", "AREA_CODE_BAD_LENGTH"),
        ("51160200000A", "AREA_CODE_BAD_CHARACTER"),
        ("511602-00000", "AREA_CODE_BAD_CHARACTER"),
        ("991602000000", "REGION_CODE_UNKNOWN_PROVINCE"),
    ],
)
def test_area_codes(code: str, expected_reason: str | None) -> None:
    assert reason(validate_area_code(code, PROVINCES)) == expected_reason
    assert is_valid_area_code(code, PROVINCES) == (expected_reason is None)


# -- Matter codes ----------------------------------------------------------------------


def test_matter_types() -> None:
    assert [code for code, _ in MATTER_TYPES] == [f"{n:02d}" for n in range(1, 11)] + ["20"]
    assert dict(MATTER_TYPES)["01"] == "行政许可"
    assert dict(MATTER_TYPES)["10"] == "其他行政权力"
    assert dict(MATTER_TYPES)["20"] == "公共服务"


def test_matter_type_rule_over_all_two_digit_values() -> None:
    two_digits = [f"{n:02d}" for n in range(100)]
    national = {t for t in two_digits if is_valid_basic_code(f"00{t}00101000", PROVINCES)}
    local = {t for t in two_digits if is_valid_basic_code(f"37{t}00101000", PROVINCES)}
    assert national == {code for code, _ in MATTER_TYPES}
    assert local == national | {str(n) for n in range(30, 100)}


def test_parse_basic_codes() -> None:
    assert parse_basic_code("000117112000", PROVINCES) == BasicCode("00", "01", "17112", "000")
    assert parse_basic_code("370117002011", PROVINCES) == BasicCode("37", "01", "17002", "011")
    assert str(parse_basic_code("370117002011", PROVINCES)) == "370117002011"


@pytest.mark.parametrize(
    ("code", "expected_reason"),
    [
        ("00011711200", "BASIC_CODE_BAD_LENGTH"),
        ("0001171120000", "BASIC_CODE_BAD_LENGTH"),
        ("00011711200A", "BASIC_CODE_BAD_CHARACTER"),
        ("XK0010100000", "BASIC_CODE_BAD_CHARACTER"),  # Guizhou letter-type dialect
        ("0001 7112000", "BASIC_CODE_BAD_CHARACTER"),
        ("990117112000", "BASIC_CODE_UNKNOWN_ORIGIN"),
        ("710117112000", "BASIC_CODE_UNKNOWN_ORIGIN"),
        ("000017112000", "BASIC_CODE_BAD_MATTER_TYPE"),
        ("001117112000", "BASIC_CODE_BAD_MATTER_TYPE"),
        ("002117112000", "BASIC_CODE_BAD_MATTER_TYPE"),
        ("003017112000", "BASIC_CODE_BAD_MATTER_TYPE"),
        ("371917112000", "BASIC_CODE_BAD_MATTER_TYPE"),
    ],
)
def test_basic_code_problems(code: str, expected_reason: str) -> None:
    assert reason(validate_basic_code(code, PROVINCES)) == expected_reason
    with pytest.raises(CodeError) as raised:
        parse_basic_code(code, PROVINCES)
    assert raised.value.problem.reason == expected_reason


def test_parse_real_implementation_code() -> None:
    parsed = parse_implementation_code(IMPLEMENTATION_CODE, PROVINCES)
    assert parsed == ImplementationCode(
        agency_uscc="11370800MB28559184",
        level="3",
        basic_code=BasicCode(origin="37", matter_type="01", main_item="17002", sub_item="011"),
    )
    assert str(parsed) == IMPLEMENTATION_CODE
    assert is_valid_implementation_code(IMPLEMENTATION_CODE, PROVINCES)


def test_a_handling_item_of_a_provincial_matter() -> None:
    code = IMPLEMENTATION_CODE + "07"  # its basic code was added by 370000
    assert validate_handling_item_code(code, PROVINCES) is None
    assert is_valid_handling_item_code(code, PROVINCES)
    assert parse_handling_item_code(code, PROVINCES) == HandlingItemCode(
        parse_implementation_code(IMPLEMENTATION_CODE, PROVINCES), "07"
    )
    assert not is_valid_handling_item_code(code, PROVINCES - {"370000"})


def test_parse_real_handling_item_code() -> None:
    parsed = parse_handling_item_code(HANDLING_ITEM_CODE, PROVINCES)
    assert parsed == HandlingItemCode(
        implementation=ImplementationCode(
            "11370800MB28559184", "3", BasicCode("00", "01", "17112", "000")
        ),
        sequence="01",
    )
    assert str(parsed.implementation.basic_code) == "000117112000"
    assert str(parsed) == HANDLING_ITEM_CODE
    assert is_valid_handling_item_code(HANDLING_ITEM_CODE, PROVINCES)


def segment_of(index: int) -> str:
    """Which part of an implementation / handling item code holds 0-based `index`."""
    ends = {"uscc": 18, "level": 19, "origin": 21, "matter_type": 23, "main_item": 28}
    ends |= {"sub_item": 31, "sequence": 33}
    return next(name for name, end in ends.items() if index < end)


def matter_code_survivors(
    code: str, validate: Callable[[str, frozenset[str]], CodeProblem | None]
) -> dict[str, int]:
    alphabet = USCC_CHARSET  # a superset of the digits used after the USCC
    survivors: dict[str, int] = {}
    for index, char, corrupted in substitutions(code, alphabet):
        if index >= 18 and char not in string.digits:
            assert validate(corrupted, PROVINCES) is not None
        elif validate(corrupted, PROVINCES) is None:
            survivors[segment_of(index)] = survivors.get(segment_of(index), 0) + 1
    return survivors


def test_implementation_code_corruption() -> None:
    # Only the USCC has a check character; the basic code has none. So every corruption of
    # positions 1-18 fails, and the rest fails only where a segment rule catches it.
    assert matter_code_survivors(IMPLEMENTATION_CODE, validate_implementation_code) == {
        "level": 5,  # 3 -> 1, 2, 4, 5, 6
        "origin": 6,  # 37 -> 31-36
        "matter_type": 15,  # 01 -> 31-91 (local extensions) and 02-09
        "main_item": 45,  # any digit, no check
        "sub_item": 27,
    }


def test_handling_item_code_corruption() -> None:
    assert matter_code_survivors(HANDLING_ITEM_CODE, validate_handling_item_code) == {
        "level": 5,
        "origin": 1,  # 00 -> 50 (Chongqing)
        "matter_type": 8,  # 01 -> 02-09; 30+ is not allowed for a national item
        "main_item": 45,
        "sub_item": 27,
        "sequence": 17,  # 01 -> 11-91 and 02-09, never 00
    }


@pytest.mark.parametrize(
    ("code", "expected_reason", "position"),
    [
        (IMPLEMENTATION_CODE[:-1], "IMPLEMENTATION_CODE_BAD_LENGTH", None),
        (IMPLEMENTATION_CODE + "0", "IMPLEMENTATION_CODE_BAD_LENGTH", None),
        ("11370800MB28559185" + IMPLEMENTATION_CODE[18:], "USCC_CHECK_MISMATCH", 18),
        ("11370800Mb28559184" + IMPLEMENTATION_CODE[18:], "USCC_BAD_CHARACTER", 10),
        (replaced(IMPLEMENTATION_CODE, 18, "0"), "IMPLEMENTATION_CODE_BAD_LEVEL", 19),
        (replaced(IMPLEMENTATION_CODE, 18, "7"), "IMPLEMENTATION_CODE_BAD_LEVEL", 19),
        (replaced(IMPLEMENTATION_CODE, 19, "99"), "BASIC_CODE_UNKNOWN_ORIGIN", 20),
        (replaced(IMPLEMENTATION_CODE, 21, "11"), "BASIC_CODE_BAD_MATTER_TYPE", 22),
        (IMPLEMENTATION_CODE[:-1] + "A", "BASIC_CODE_BAD_CHARACTER", 31),
    ],
)  # fmt: skip
def test_implementation_code_problems(
    code: str, expected_reason: str, position: int | None
) -> None:
    problem = validate_implementation_code(code, PROVINCES)
    assert problem is not None
    assert problem.reason == expected_reason
    if position is not None:
        assert (
            f"position {position}" in problem.message or f"positions {position}-" in problem.message
        )
    with pytest.raises(CodeError):
        parse_implementation_code(code, PROVINCES)


@pytest.mark.parametrize(
    ("code", "expected_reason"),
    [
        (HANDLING_ITEM_CODE[:-1], "HANDLING_ITEM_CODE_BAD_LENGTH"),
        (HANDLING_ITEM_CODE + "1", "HANDLING_ITEM_CODE_BAD_LENGTH"),
        (IMPLEMENTATION_CODE, "HANDLING_ITEM_CODE_BAD_LENGTH"),
        (HANDLING_ITEM_CODE[:-2] + "00", "HANDLING_ITEM_CODE_BAD_SEQUENCE"),
        (HANDLING_ITEM_CODE[:-2] + "0A", "HANDLING_ITEM_CODE_BAD_SEQUENCE"),
        (HANDLING_ITEM_CODE[:-2] + " 1", "HANDLING_ITEM_CODE_BAD_SEQUENCE"),
        (replaced(HANDLING_ITEM_CODE, 17, "5"), "USCC_CHECK_MISMATCH"),
        (replaced(HANDLING_ITEM_CODE, 21, "30"), "BASIC_CODE_BAD_MATTER_TYPE"),
    ],
)  # fmt: skip
def test_handling_item_code_problems(code: str, expected_reason: str) -> None:
    assert reason(validate_handling_item_code(code, PROVINCES)) == expected_reason
    with pytest.raises(CodeError) as raised:
        parse_handling_item_code(code, PROVINCES)
    assert raised.value.problem.reason == expected_reason


# -- 证照标识 ---------------------------------------------------------------------------


@pytest.mark.parametrize("identifier", LICENSE_IDS)
def test_real_license_identifiers_validate(identifier: str) -> None:
    assert validate_license_identifier(identifier) is None
    assert is_valid_license_identifier(identifier)
    parsed = parse_license_identifier(identifier)
    assert str(parsed) == identifier
    assert (
        license_identifier_check_char(
            parsed.type_code, parsed.issuer_code, parsed.number, parsed.version
        )
        == parsed.check
    )
    assert (
        make_license_identifier(parsed.type_code, parsed.issuer_code, parsed.number, parsed.version)
        == identifier
    )


def test_parse_license_identifier_fields() -> None:
    assert parse_license_identifier(LICENSE_IDS[3]) == LicenseIdentifier(
        type_code="11100000000013338W087",
        issuer_code="11370800MB28559184",
        number="37080001202411010001",
        version="001",
        check="3",
    )


def test_renewal_changes_the_check() -> None:
    # The same licence at version 001 and 002 (both real): U and S. The stale pairing fails.
    assert LICENSE_IDS[1].endswith(".001.U")
    assert LICENSE_IDS[2].endswith(".002.S")
    stale = LICENSE_IDS[1][:-1] + "S"
    assert reason(validate_license_identifier(stale)) == "LICENSE_ID_CHECK_MISMATCH"


@pytest.mark.parametrize("identifier", LICENSE_IDS)
def test_every_single_substitution_of_a_license_identifier_fails(identifier: str) -> None:
    # Over the checked characters, the alphabet of the check, and the dots that delimit.
    corrupted = substitutions(identifier, ALNUM36 + ".")
    failures = [c for _, _, c in corrupted if validate_license_identifier(c) is not None]
    assert len(corrupted) == len(identifier) * 36
    assert len(failures) == len(corrupted)
    strangers = substitutions(identifier, STRANGERS)
    assert all(validate_license_identifier(c) is not None for _, _, c in strangers)


@pytest.mark.parametrize("identifier", LICENSE_IDS)
def test_mod_37_36_alone_detects_every_substitution_in_the_checked_body(identifier: str) -> None:
    # The same claim without help from the structural rules: the bare checksum over the four
    # segments changes whenever any one checked character changes.
    segments = identifier.removeprefix("1.2.156.3005.2.").split(".")[:4]
    original = license_identifier_check_char(*segments)
    unchanged = []
    for which, segment in enumerate(segments):
        for _, _, corrupted in substitutions(segment, ALNUM36):
            parts = [*segments[:which], corrupted, *segments[which + 1 :]]
            if license_identifier_check_char(*parts) == original:
                unchanged.append(parts)
    assert unchanged == []


@pytest.mark.parametrize(
    ("identifier", "expected_reason"),
    [
        ("", "LICENSE_ID_BAD_PREFIX"),
        ("1.2.156.3005.3.11100000000013338W032.11220000013544541J.2430599.001.F",
         "LICENSE_ID_BAD_PREFIX"),
        (" 1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.001.F",
         "LICENSE_ID_BAD_PREFIX"),
        ("11100000000013338W032.11220000013544541J.2430599.001.F", "LICENSE_ID_BAD_PREFIX"),
        ("1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430.599.001.F",
         "LICENSE_ID_BAD_SEGMENT_COUNT"),
        ("1.2.156.3005.2.11100000000013338W032.11220000013544541J.001.F",
         "LICENSE_ID_BAD_SEGMENT_COUNT"),
        ("1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.001.F.",
         "LICENSE_ID_BAD_SEGMENT_COUNT"),
        ("1.2.156.3005.2.11100000000013338W032..2430599.001.F", "LICENSE_ID_EMPTY_SEGMENT"),
        ("1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.001.",
         "LICENSE_ID_EMPTY_SEGMENT"),
        ("1.2.156.3005.2.11100000000013338W32.11220000013544541J.2430599.001.F",
         "LICENSE_ID_BAD_TYPE_CODE"),
        ("1.2.156.3005.2.11100000000013338W03A.11220000013544541J.2430599.001.F",
         "LICENSE_ID_BAD_TYPE_CODE"),
        ("1.2.156.3005.2.11100000000013338X032.11220000013544541J.2430599.001.F",
         "USCC_CHECK_MISMATCH"),
        ("1.2.156.3005.2.11100000000013338w032.11220000013544541J.2430599.001.F",
         "USCC_BAD_CHARACTER"),
        ("1.2.156.3005.2.11100000000013338W032.11220000013544541j.2430599.001.F",
         "LICENSE_ID_BAD_CHARACTER"),
        ("1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430-599.001.F",
         "LICENSE_ID_BAD_CHARACTER"),
        ("1.2.156.3005.2.11100000000013338W032.11220000013544541J.京2430599.001.F",
         "LICENSE_ID_BAD_CHARACTER"),
        ("1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.01.F",
         "LICENSE_ID_BAD_VERSION"),
        ("1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.0001.F",
         "LICENSE_ID_BAD_VERSION"),
        ("1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.000.F",
         "LICENSE_ID_BAD_VERSION"),
        ("1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.00A.F",
         "LICENSE_ID_BAD_VERSION"),
        ("1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.001.FF",
         "LICENSE_ID_BAD_CHECK_LENGTH"),
        ("1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.001.F ",
         "LICENSE_ID_BAD_CHECK_LENGTH"),
        ("1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.001.f",
         "LICENSE_ID_BAD_CHARACTER"),
        ("1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.001.G",
         "LICENSE_ID_CHECK_MISMATCH"),
    ],
)  # fmt: skip
def test_license_identifier_problems(identifier: str, expected_reason: str) -> None:
    assert reason(validate_license_identifier(identifier)) == expected_reason
    with pytest.raises(CodeError) as raised:
        parse_license_identifier(identifier)
    assert raised.value.problem.reason == expected_reason


def test_license_identifier_messages_name_the_position() -> None:
    problem = validate_license_identifier(LICENSE_IDS[0][:-1] + "G")
    assert problem == CodeProblem(
        "LICENSE_ID_CHECK_MISMATCH",
        "Licence identifier has check character 'G' at position 69; "
        "the other segments require 'F'.",
    )
    problem = validate_license_identifier(LICENSE_IDS[0].replace("541J", "541j"))
    assert problem is not None
    assert "'j' at position 55" in problem.message


@pytest.mark.parametrize(
    ("parts", "expected_reason"),
    [
        (("11100000000013338W032", "", "2430599", "001"), "LICENSE_ID_EMPTY_SEGMENT"),
        (("11100000000013338W03", "11220000013544541J", "2430599", "001"),
         "LICENSE_ID_BAD_TYPE_CODE"),
        (("11100000000013338X032", "11220000013544541J", "2430599", "001"),
         "USCC_CHECK_MISMATCH"),
        (("11100000000013338W032", "11220000013544541J", "2430.599", "001"),
         "LICENSE_ID_BAD_CHARACTER"),
        (("11100000000013338W032", "11220000013544541J", "2430599", "1"),
         "LICENSE_ID_BAD_VERSION"),
    ],
)  # fmt: skip
def test_make_license_identifier_rejects_bad_segments(
    parts: tuple[str, str, str, str], expected_reason: str
) -> None:
    with pytest.raises(CodeError) as raised:
        make_license_identifier(*parts)
    assert raised.value.problem.reason == expected_reason


def test_license_identifier_check_char_needs_the_mod_37_36_alphabet() -> None:
    with pytest.raises(CodeError) as raised:
        license_identifier_check_char("11100000000013338W032", "11220000013544541J", "a", "001")
    assert raised.value.problem.reason == "LICENSE_ID_BAD_CHARACTER"
    # Shapes are not its business: a region code as issuer is fine (some test data does it).
    assert license_identifier_check_char("X", "510000", "1", "001") in ALNUM36


def test_make_license_identifier_with_region_code_issuer() -> None:
    identifier = make_license_identifier("11100000MB0143028R001", "511602", "A1B2C3", "001")
    assert identifier.startswith("1.2.156.3005.2.11100000MB0143028R001.511602.A1B2C3.001.")
    assert validate_license_identifier(identifier) is None


alnum = st.text(alphabet=ALNUM36, min_size=1, max_size=24)
license_parts = st.tuples(
    uscc_bodies.map(with_uscc_check).flatmap(
        lambda uscc: st.integers(0, 999).map(lambda n: f"{uscc}{n:03d}")
    ),
    alnum,
    alnum,
    st.integers(1, 999).map(lambda n: f"{n:03d}"),
)


@PROPERTY
@given(parts=license_parts)
def test_property_made_license_identifiers_validate_and_round_trip(
    parts: tuple[str, str, str, str],
) -> None:
    identifier = make_license_identifier(*parts)
    parsed = parse_license_identifier(identifier)
    assert (parsed.type_code, parsed.issuer_code, parsed.number, parsed.version) == parts
    assert str(parsed) == identifier


@PROPERTY
@given(body=st.text(alphabet=ALNUM36, min_size=1, max_size=60), data=st.data())
def test_property_mod_37_36_detects_any_single_substitution(body: str, data: st.DataObject) -> None:
    # ISO 7064 hybrid systems detect every single substitution: each step maps the running
    # value through a bijection of 1..36, so a changed character changes the final value.
    index = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    char = data.draw(st.sampled_from([c for c in ALNUM36 if c != body[index]]))
    corrupted = body[:index] + char + body[index + 1 :]
    # Put the whole string in one segment: the calculator concatenates segments anyway.
    assert license_identifier_check_char(corrupted, "", "", "") != license_identifier_check_char(
        body, "", "", ""
    )


# -- Dirty agency codes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        *((code, AgencyCodeKind.VALID_USCC) for code in REAL_USCCS + SYNTHETIC_USCCS),
        ("91350100M000100Y44", AgencyCodeKind.USCC_BAD_CHECK),
        ("11370800MB28559185", AgencyCodeKind.USCC_BAD_CHECK),
        ("91350100M000100Y4", AgencyCodeKind.TRUNCATED_USCC),
        ("1351130108337220", AgencyCodeKind.INVALID),  # 16 characters
        ("MA2H12349", AgencyCodeKind.LEGACY_ORG_CODE),
        ("MA2H1234-9", AgencyCodeKind.LEGACY_ORG_CODE),
        ("00001332X", AgencyCodeKind.LEGACY_ORG_CODE),
        ("MA2H12348", AgencyCodeKind.INVALID),
        ("1111111111111111", AgencyCodeKind.PLACEHOLDER),
        ("000000000000000000", AgencyCodeKind.PLACEHOLDER),  # passes the USCC check!
        ("000000000", AgencyCodeKind.PLACEHOLDER),  # passes the GB 11714 check!
        ("00", AgencyCodeKind.PLACEHOLDER),
        ("XXXXXXXXXXXXXXXXX", AgencyCodeKind.PLACEHOLDER),
        ("0", AgencyCodeKind.INVALID),
        ("", AgencyCodeKind.INVALID),
        ("91350100m000100Y43", AgencyCodeKind.INVALID),
        ("91350100M000100Y43 ", AgencyCodeKind.INVALID),
        ("91350100I000100Y43", AgencyCodeKind.INVALID),
        ("无", AgencyCodeKind.INVALID),
    ],
)
def test_classify_agency_code(code: str, kind: AgencyCodeKind) -> None:
    assert classify_agency_code(code) is kind


def test_all_zero_codes_really_pass_their_checks() -> None:
    # Why placeholders are recognised before anything else.
    assert is_valid_uscc("000000000000000000")
    assert is_valid_org_code("000000000")


@PROPERTY
@given(body=uscc_bodies)
def test_property_classify_agrees_with_validate_uscc(body: str) -> None:
    code = with_uscc_check(body)
    assert classify_agency_code(code) in {AgencyCodeKind.VALID_USCC, AgencyCodeKind.PLACEHOLDER}
    assert classify_agency_code(code[:17]) in {
        AgencyCodeKind.TRUNCATED_USCC,
        AgencyCodeKind.PLACEHOLDER,
    }


# -- Messages --------------------------------------------------------------------------


def problem_of(call: Callable[[], object]) -> CodeProblem | None:
    """The problem a validator returns, or the one a parser or calculator raises."""
    try:
        result = call()
    except CodeError as error:
        return error.problem
    assert result is None or isinstance(result, CodeProblem)
    return result


L0 = LICENSE_IDS[0]
L0_TYPE, L0_ISSUER, L0_NUMBER = "11100000000013338W032", "11220000013544541J", "2430599"
USCC_SET = "a character of 0123456789ABCDEFGHJKLMNPQRTUWXY"

MESSAGES: list[tuple[Callable[[], object], str, str]] = [
    # 统一社会信用代码
    (lambda: validate_uscc("91350100M000100Y4"),
     "USCC_BAD_LENGTH", "USCC must be 18 characters long, not 17."),
    (lambda: validate_uscc("91350100I000100Y43"),
     "USCC_BAD_CHARACTER", f"USCC has 'I' at position 9; expected {USCC_SET}."),
    (lambda: validate_uscc("91350100m000100Y43"),
     "USCC_BAD_CHARACTER",
     f"USCC has 'm' at position 9 (codes are upper case); expected {USCC_SET}."),
    (lambda: uscc_check_char("9135010"),
     "USCC_BAD_LENGTH", "USCC body must be 17 characters long, not 7."),
    (lambda: uscc_check_char("91350100M00010OY4"),
     "USCC_BAD_CHARACTER", f"USCC body has 'O' at position 15; expected {USCC_SET}."),
    # 组织机构代码
    (lambda: org_code_check_char("MA2H123"),
     "ORG_CODE_BAD_LENGTH", "Organisation code body must be 8 characters long, not 7."),
    (lambda: org_code_check_char("MA2H123-"),
     "ORG_CODE_BAD_CHARACTER", "Organisation code has '-' at position 8; expected 0-9 or A-Z."),
    (lambda: validate_org_code("MA2H1234"),
     "ORG_CODE_BAD_LENGTH",
     "Organisation code must be 9 characters (or 10 as XXXXXXXX-X), not 8."),
    (lambda: validate_org_code("MA2H1234_9"),
     "ORG_CODE_BAD_CHARACTER", "Organisation code has '_' at position 9; expected '-'."),
    (lambda: validate_org_code("ma2h12349"),
     "ORG_CODE_BAD_CHARACTER",
     "Organisation code has 'm' at position 1 (codes are upper case); expected 0-9 or A-Z."),
    (lambda: validate_org_code("MA2H1234x"),
     "ORG_CODE_BAD_CHARACTER",
     "Organisation code has 'x' at position 9 (codes are upper case); expected 0-9 or X."),
    (lambda: validate_org_code("MA2H1234-A"),
     "ORG_CODE_BAD_CHARACTER", "Organisation code has 'A' at position 10; expected 0-9 or X."),
    (lambda: validate_org_code("MA2H12348"),
     "ORG_CODE_CHECK_MISMATCH",
     "Organisation code has check character '8' at position 9; "
     "the first 8 characters require '9'."),
    (lambda: validate_org_code("MA2H1234-8"),
     "ORG_CODE_CHECK_MISMATCH",
     "Organisation code has check character '8' at position 10; "
     "the first 8 characters require '9'."),
    # 公民身份号码: positions, never digits
    (lambda: citizen_id_check_char("1101051990030712"),
     "CITIZEN_ID_BAD_LENGTH", "Citizen ID body must be 17 digits long, not 16."),
    (lambda: citizen_id_check_char("1101051990030712X"),
     "CITIZEN_ID_BAD_CHARACTER", "Citizen ID body has a non-digit at position 17."),
    (lambda: validate_citizen_id("11010519900307123", PROVINCES, today=TODAY),
     "CITIZEN_ID_BAD_LENGTH", "Citizen ID must be 18 characters long, not 17."),
    (lambda: validate_citizen_id("110105900307123", PROVINCES, today=TODAY),
     "CITIZEN_ID_BAD_LENGTH",
     "Citizen ID must be 18 characters long, not 15 "
     "(upgrade 15-digit numbers with upgrade_citizen_id_15)."),
    (lambda: validate_citizen_id("11010519491231 02X", PROVINCES, today=TODAY),
     "CITIZEN_ID_BAD_CHARACTER", "Citizen ID has a non-digit at position 15."),
    (lambda: validate_citizen_id("11010519491231002Y", PROVINCES, today=TODAY),
     "CITIZEN_ID_BAD_CHARACTER",
     "Citizen ID has a check character at position 18 that is neither a digit nor 'X'."),
    (lambda: validate_citizen_id(with_citizen_check("99010519900307123"), PROVINCES, today=TODAY),
     "CITIZEN_ID_UNKNOWN_PROVINCE",
     "Citizen ID positions 1-2 are not the prefix of a known province."),
    (lambda: validate_citizen_id(with_citizen_check("11010519900230123"), PROVINCES, today=TODAY),
     "CITIZEN_ID_BAD_DATE",
     "Citizen ID positions 7-14 (birth date) are not a real calendar date."),
    (lambda: validate_citizen_id(with_citizen_check("11010518991231123"), PROVINCES, today=TODAY),
     "CITIZEN_ID_BAD_DATE", "Citizen ID positions 7-14 (birth date) are before 1900."),
    (lambda: validate_citizen_id(with_citizen_check("11010520250602123"), PROVINCES, today=TODAY),
     "CITIZEN_ID_BAD_DATE", "Citizen ID positions 7-14 (birth date) are in the future."),
    (lambda: validate_citizen_id("110105199003071238", PROVINCES, today=TODAY),
     "CITIZEN_ID_CHECK_MISMATCH",
     "Citizen ID check character at position 18 does not match the first 17 digits."),
    (lambda: upgrade_citizen_id_15("11010590030712"),
     "CITIZEN_ID_BAD_LENGTH", "Legacy citizen ID must be 15 digits long, not 14."),
    (lambda: upgrade_citizen_id_15("1101059003071X3"),
     "CITIZEN_ID_BAD_CHARACTER", "Legacy citizen ID has a non-digit at position 14."),
    # 港澳台居民居住证
    (lambda: validate_hmt_residence_permit("81000019900307123", today=TODAY),
     "HMT_PERMIT_BAD_LENGTH", "Residence permit number must be 18 characters long, not 17."),
    (lambda: validate_hmt_residence_permit("8100001990030712A7", today=TODAY),
     "HMT_PERMIT_BAD_CHARACTER", "Residence permit number has a non-digit at position 17."),
    (lambda: validate_hmt_residence_permit("81000019900307123Y", today=TODAY),
     "HMT_PERMIT_BAD_CHARACTER",
     "Residence permit number has a check character at position 18 "
     "that is neither a digit nor 'X'."),
    (lambda: validate_hmt_residence_permit(with_citizen_check("11010519900307123"), today=TODAY),
     "HMT_PERMIT_UNKNOWN_REGION",
     "Residence permit number positions 1-6 are not 810000, 820000 or 830000."),
    (lambda: validate_hmt_residence_permit(with_citizen_check("81000019901307123"), today=TODAY),
     "HMT_PERMIT_BAD_DATE",
     "Residence permit number positions 7-14 (birth date) are not a real calendar date."),
    (lambda: validate_hmt_residence_permit("810000199003071230", today=TODAY),
     "HMT_PERMIT_CHECK_MISMATCH",
     "Residence permit number check character at position 18 "
     "does not match the first 17 digits."),
    # 外国人永久居留身份证
    (lambda: validate_foreign_permanent_residence_id("9331001990030712"),
     "FOREIGN_PR_ID_BAD_LENGTH",
     "Permanent residence number must be 18 characters (2023 card) or 15 (2017 card), not 16."),
    (lambda: validate_foreign_permanent_residence_id("US1330619900307"),
     "FOREIGN_PR_ID_BAD_CHARACTER",
     "Permanent residence number (2017 card: 3 letters A-Z, then 12 digits) "
     "has a wrong character at position 3."),
    (lambda: validate_foreign_permanent_residence_id("USA33061990030X"),
     "FOREIGN_PR_ID_BAD_CHARACTER",
     "Permanent residence number (2017 card: 3 letters A-Z, then 12 digits) "
     "has a wrong character at position 15."),
    (lambda: validate_foreign_permanent_residence_id("9331001990030712X3"),
     "FOREIGN_PR_ID_BAD_CHARACTER", "Permanent residence number has a non-digit at position 17."),
    (lambda: validate_foreign_permanent_residence_id("93310019900307123Y"),
     "FOREIGN_PR_ID_BAD_CHARACTER",
     "Permanent residence number has a check character at position 18 "
     "that is neither a digit nor 'X'."),
    (lambda: validate_foreign_permanent_residence_id(with_citizen_check("13310019900307123")),
     "FOREIGN_PR_ID_BAD_FIRST_DIGIT",
     "Permanent residence number (2023 card) must start with 9, the mark of a foreigner's number."),
    (lambda: validate_foreign_permanent_residence_id("933100199003071230"),
     "FOREIGN_PR_ID_CHECK_MISMATCH",
     "Permanent residence number check character at position 18 "
     "does not match the first 17 digits."),
    # Region and area codes
    (lambda: validate_region_code("11010", PROVINCES),
     "REGION_CODE_BAD_LENGTH", "Region code must be 6 digits long, not 5."),
    (lambda: validate_region_code("11O105", PROVINCES),
     "REGION_CODE_BAD_CHARACTER", "Region code has 'O' at position 3; expected a digit 0-9."),
    (lambda: validate_region_code("990101", PROVINCES),
     "REGION_CODE_UNKNOWN_PROVINCE",
     "Region code positions 1-2 ('99') are not the prefix of a known province."),
    (lambda: validate_area_code("511602", PROVINCES),
     "AREA_CODE_BAD_LENGTH", "Area code must be 12 digits long, not 6."),
    (lambda: validate_area_code("51160200000A", PROVINCES),
     "AREA_CODE_BAD_CHARACTER", "Area code has 'A' at position 12; expected a digit 0-9."),
    (lambda: validate_area_code("991602000000", PROVINCES),
     "REGION_CODE_UNKNOWN_PROVINCE",
     "Area code positions 1-2 ('99') are not the prefix of a known province."),
    (lambda: province_of("A1"),
     "REGION_CODE_BAD_CHARACTER", "A code must start with two digits to name a province."),
    # Matter codes: positions counted in the outer code
    (lambda: validate_basic_code("00011711200", PROVINCES),
     "BASIC_CODE_BAD_LENGTH", "Basic code must be 12 digits long, not 11."),
    (lambda: validate_basic_code("00011711200A", PROVINCES),
     "BASIC_CODE_BAD_CHARACTER", "Basic code has 'A' at position 12; expected a digit 0-9."),
    (lambda: validate_basic_code("990117112000", PROVINCES),
     "BASIC_CODE_UNKNOWN_ORIGIN",
     "Basic code origin '99' at positions 1-2 is neither '00' (national) "
     "nor the prefix of a known province."),
    (lambda: validate_basic_code("009917112000", PROVINCES),
     "BASIC_CODE_BAD_MATTER_TYPE",
     "Basic code matter type '99' at positions 3-4 is not 01-10 or 20."),
    (lambda: validate_basic_code("371917112000", PROVINCES),
     "BASIC_CODE_BAD_MATTER_TYPE",
     "Basic code matter type '19' at positions 3-4 is not 01-10 or 20, "
     "or 30-99 for a local item."),
    (lambda: validate_implementation_code(IMPLEMENTATION_CODE[:-1], PROVINCES),
     "IMPLEMENTATION_CODE_BAD_LENGTH",
     "Implementation code must be 31 characters long, not 30."),
    (lambda: validate_implementation_code(replaced(IMPLEMENTATION_CODE, 17, "5"), PROVINCES),
     "USCC_CHECK_MISMATCH",
     "Implementation code agency USCC has check character '5' at position 18; "
     "the first 17 characters require '4'."),
    (lambda: validate_implementation_code(replaced(IMPLEMENTATION_CODE, 18, "7"), PROVINCES),
     "IMPLEMENTATION_CODE_BAD_LEVEL",
     "Implementation code has '7' at position 19; expected an exercise level 1-6."),
    (lambda: validate_implementation_code(replaced(IMPLEMENTATION_CODE, 19, "99"), PROVINCES),
     "BASIC_CODE_UNKNOWN_ORIGIN",
     "Implementation code basic code origin '99' at positions 20-21 is neither '00' "
     "(national) nor the prefix of a known province."),
    (lambda: validate_implementation_code(replaced(IMPLEMENTATION_CODE, 21, "11"), PROVINCES),
     "BASIC_CODE_BAD_MATTER_TYPE",
     "Implementation code basic code matter type '11' at positions 22-23 is not 01-10 or 20, "
     "or 30-99 for a local item."),
    (lambda: validate_implementation_code(IMPLEMENTATION_CODE[:-1] + "A", PROVINCES),
     "BASIC_CODE_BAD_CHARACTER",
     "Implementation code basic code has 'A' at position 31; expected a digit 0-9."),
    (lambda: validate_handling_item_code(HANDLING_ITEM_CODE[:-1], PROVINCES),
     "HANDLING_ITEM_CODE_BAD_LENGTH", "Handling item code must be 33 characters long, not 32."),
    (lambda: validate_handling_item_code(replaced(HANDLING_ITEM_CODE, 9, "b"), PROVINCES),
     "USCC_BAD_CHARACTER",
     "Handling item code agency USCC has 'b' at position 10 (codes are upper case); "
     f"expected {USCC_SET}."),
    (lambda: validate_handling_item_code(HANDLING_ITEM_CODE[:-2] + "0A", PROVINCES),
     "HANDLING_ITEM_CODE_BAD_SEQUENCE",
     "Handling item code has 'A' at position 33; expected a digit 0-9."),
    (lambda: validate_handling_item_code(HANDLING_ITEM_CODE[:-2] + "00", PROVINCES),
     "HANDLING_ITEM_CODE_BAD_SEQUENCE",
     "Handling item code sequence at positions 32-33 is '00'; sequences start at '01'."),
    # 证照标识: positions in the identifier
    (lambda: validate_license_identifier("2.1"),
     "LICENSE_ID_BAD_PREFIX", "Licence identifier does not start with '1.2.156.3005.2.'."),
    (lambda: validate_license_identifier("1.2.156.3005.2.A"),
     "LICENSE_ID_BAD_SEGMENT_COUNT",
     "Licence identifier has 1 dot-separated segments after the prefix, not 5 "
     "(type, issuer, number, version, check)."),
    (lambda: validate_license_identifier(L0.replace(L0_ISSUER, "")),
     "LICENSE_ID_EMPTY_SEGMENT", "Licence identifier has an empty issuer code."),
    (lambda: validate_license_identifier(L0.replace("W032", "W32")),
     "LICENSE_ID_BAD_TYPE_CODE",
     "Licence identifier type code must be 21 characters (USCC + 3-digit sequence), not 20."),
    (lambda: validate_license_identifier(L0.replace("338W", "338w")),
     "USCC_BAD_CHARACTER",
     "Licence identifier type code USCC has 'w' at position 33 (codes are upper case); "
     f"expected {USCC_SET}."),
    (lambda: validate_license_identifier(L0.replace("W032", "W03A")),
     "LICENSE_ID_BAD_TYPE_CODE",
     "Licence identifier type code has 'A' at position 36; expected a digit 0-9."),
    (lambda: validate_license_identifier(L0.replace("541J", "541j")),
     "LICENSE_ID_BAD_CHARACTER",
     "Licence identifier issuer code has 'j' at position 55 (codes are upper case); "
     "expected 0-9 or A-Z."),
    (lambda: validate_license_identifier(L0.replace(L0_NUMBER, "2430-99")),
     "LICENSE_ID_BAD_CHARACTER",
     "Licence identifier licence number has '-' at position 61; expected 0-9 or A-Z."),
    (lambda: validate_license_identifier(L0.replace(".001.", ".01.")),
     "LICENSE_ID_BAD_VERSION",
     "Licence identifier version '01' at position 65 is not three digits from '001'."),
    (lambda: validate_license_identifier(L0 + "F"),
     "LICENSE_ID_BAD_CHECK_LENGTH",
     "Licence identifier check at position 69 is 2 characters, not 1."),
    (lambda: validate_license_identifier(L0[:-1] + "f"),
     "LICENSE_ID_BAD_CHARACTER",
     "Licence identifier check has 'f' at position 69 (codes are upper case); "
     "expected 0-9 or A-Z."),
    # 证照标识 segments on their own: positions within the segment
    (lambda: make_license_identifier(L0_TYPE, "", L0_NUMBER, "001"),
     "LICENSE_ID_EMPTY_SEGMENT", "Licence has an empty issuer code."),
    (lambda: make_license_identifier(L0_TYPE[:-1], L0_ISSUER, L0_NUMBER, "001"),
     "LICENSE_ID_BAD_TYPE_CODE",
     "Licence type code must be 21 characters (USCC + 3-digit sequence), not 20."),
    (lambda: make_license_identifier(L0_TYPE.replace("W", "w"), L0_ISSUER, L0_NUMBER, "001"),
     "USCC_BAD_CHARACTER",
     "Licence type code USCC has 'w' at position 18 (codes are upper case); "
     f"expected {USCC_SET}."),
    (lambda: make_license_identifier(L0_TYPE[:-1] + "A", L0_ISSUER, L0_NUMBER, "001"),
     "LICENSE_ID_BAD_TYPE_CODE", "Licence type code has 'A' at position 21; expected a digit 0-9."),
    (lambda: make_license_identifier(L0_TYPE, L0_ISSUER.lower(), L0_NUMBER, "001"),
     "LICENSE_ID_BAD_CHARACTER",
     "Licence issuer code has 'j' at position 18 (codes are upper case); expected 0-9 or A-Z."),
    (lambda: make_license_identifier(L0_TYPE, L0_ISSUER, "2430.99", "001"),
     "LICENSE_ID_BAD_CHARACTER",
     "Licence licence number has '.' at position 5; expected 0-9 or A-Z."),
    (lambda: make_license_identifier(L0_TYPE, L0_ISSUER, L0_NUMBER, "1"),
     "LICENSE_ID_BAD_VERSION", "Licence version '1' at position 1 is not three digits from '001'."),
    (lambda: license_identifier_check_char(L0_TYPE, L0_ISSUER, "24a", "001"),
     "LICENSE_ID_BAD_CHARACTER",
     "Licence licence number has 'a' at position 3 (codes are upper case); "
     "expected 0-9 or A-Z."),
]  # fmt: skip


def test_a_code_error_reads_as_its_problem() -> None:
    with pytest.raises(CodeError) as raised:
        uscc_check_char("9135010")
    assert str(raised.value) == raised.value.problem.message


@pytest.mark.parametrize(("call", "expected_reason", "message"), MESSAGES)
def test_the_message_a_client_reads(
    call: Callable[[], object], expected_reason: str, message: str
) -> None:
    assert problem_of(call) == CodeProblem(expected_reason, message)


# -- Completeness ----------------------------------------------------------------------

REASON_EXAMPLES: dict[str, Callable[[], CodeProblem | None]] = {
    "USCC_BAD_LENGTH": lambda: validate_uscc(""),
    "USCC_BAD_CHARACTER": lambda: validate_uscc("I" * 18),
    "USCC_CHECK_MISMATCH": lambda: validate_uscc("91350100M000100Y44"),
    "ORG_CODE_BAD_LENGTH": lambda: validate_org_code("MA2H"),
    "ORG_CODE_BAD_CHARACTER": lambda: validate_org_code("MA2H1234+9"),
    "ORG_CODE_CHECK_MISMATCH": lambda: validate_org_code("MA2H12340"),
    "CITIZEN_ID_BAD_LENGTH": lambda: validate_citizen_id("1", PROVINCES, today=TODAY),
    "CITIZEN_ID_BAD_CHARACTER": lambda: validate_citizen_id("x" * 18, PROVINCES, today=TODAY),
    "CITIZEN_ID_UNKNOWN_PROVINCE": lambda: validate_citizen_id(
        "990105199003071239", PROVINCES, today=TODAY
    ),
    "CITIZEN_ID_BAD_DATE": lambda: validate_citizen_id(
        "110105199013071239", PROVINCES, today=TODAY
    ),
    "CITIZEN_ID_CHECK_MISMATCH": lambda: validate_citizen_id(
        "110105199003071230", PROVINCES, today=TODAY
    ),
    "HMT_PERMIT_BAD_LENGTH": lambda: validate_hmt_residence_permit("8", today=TODAY),
    "HMT_PERMIT_BAD_CHARACTER": lambda: validate_hmt_residence_permit("x" * 18, today=TODAY),
    "HMT_PERMIT_UNKNOWN_REGION": lambda: validate_hmt_residence_permit(
        "110105199003071239", today=TODAY
    ),
    "HMT_PERMIT_BAD_DATE": lambda: validate_hmt_residence_permit(
        with_citizen_check("81000019901307123"), today=TODAY
    ),
    "HMT_PERMIT_CHECK_MISMATCH": lambda: validate_hmt_residence_permit(
        "810000199003071230", today=TODAY
    ),
    "FOREIGN_PR_ID_BAD_LENGTH": lambda: validate_foreign_permanent_residence_id("9"),
    "FOREIGN_PR_ID_BAD_CHARACTER": lambda: validate_foreign_permanent_residence_id("1" * 15),
    "FOREIGN_PR_ID_BAD_FIRST_DIGIT": lambda: validate_foreign_permanent_residence_id(
        "110105199003071239"
    ),
    "FOREIGN_PR_ID_CHECK_MISMATCH": lambda: validate_foreign_permanent_residence_id(
        "933100199003071230"
    ),
    "REGION_CODE_BAD_LENGTH": lambda: validate_region_code("1", PROVINCES),
    "REGION_CODE_BAD_CHARACTER": lambda: validate_region_code("11010A", PROVINCES),
    "REGION_CODE_UNKNOWN_PROVINCE": lambda: validate_region_code("990000", PROVINCES),
    "AREA_CODE_BAD_LENGTH": lambda: validate_area_code("110105", PROVINCES),
    "AREA_CODE_BAD_CHARACTER": lambda: validate_area_code("11010500000A", PROVINCES),
    "BASIC_CODE_BAD_LENGTH": lambda: validate_basic_code("0", PROVINCES),
    "BASIC_CODE_BAD_CHARACTER": lambda: validate_basic_code("0001171120O0", PROVINCES),
    "BASIC_CODE_UNKNOWN_ORIGIN": lambda: validate_basic_code("990117112000", PROVINCES),
    "BASIC_CODE_BAD_MATTER_TYPE": lambda: validate_basic_code("009917112000", PROVINCES),
    "IMPLEMENTATION_CODE_BAD_LENGTH": lambda: validate_implementation_code("", PROVINCES),
    "IMPLEMENTATION_CODE_BAD_LEVEL": lambda: validate_implementation_code(
        replaced(IMPLEMENTATION_CODE, 18, "9"), PROVINCES
    ),
    "HANDLING_ITEM_CODE_BAD_LENGTH": lambda: validate_handling_item_code("", PROVINCES),
    "HANDLING_ITEM_CODE_BAD_SEQUENCE": lambda: validate_handling_item_code(
        HANDLING_ITEM_CODE[:-2] + "00", PROVINCES
    ),
    "LICENSE_ID_BAD_PREFIX": lambda: validate_license_identifier("2.1"),
    "LICENSE_ID_BAD_SEGMENT_COUNT": lambda: validate_license_identifier("1.2.156.3005.2.A"),
    "LICENSE_ID_EMPTY_SEGMENT": lambda: validate_license_identifier("1.2.156.3005.2...1.001.F"),
    "LICENSE_ID_BAD_TYPE_CODE": lambda: validate_license_identifier("1.2.156.3005.2.A.B.1.001.F"),
    "LICENSE_ID_BAD_CHARACTER": lambda: validate_license_identifier(
        LICENSE_IDS[0].replace("2430599", "243059a")
    ),
    "LICENSE_ID_BAD_VERSION": lambda: validate_license_identifier(
        LICENSE_IDS[0].replace(".001.", ".1.")
    ),
    "LICENSE_ID_BAD_CHECK_LENGTH": lambda: validate_license_identifier(LICENSE_IDS[0] + "F"),
    "LICENSE_ID_CHECK_MISMATCH": lambda: validate_license_identifier(LICENSE_IDS[0][:-1] + "0"),
}


def test_every_reason_in_the_module_has_a_triggering_example() -> None:
    source = inspect.getsource(codes)
    quoted = set(re.findall(r'"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)"', source))
    kinds = {kind.value for kind in AgencyCodeKind}
    constants = {"LICENSE_ID_PREFIX", "MATTER_TYPES", "HMT_ADDRESS_CODES"}
    assert quoted - kinds - constants == set(REASON_EXAMPLES)


@pytest.mark.parametrize("expected_reason", sorted(REASON_EXAMPLES))
def test_reason_examples(expected_reason: str) -> None:
    problem = REASON_EXAMPLES[expected_reason]()
    assert problem is not None
    assert problem.reason == expected_reason
    assert problem.message.endswith(".")
    assert problem.message[0].isupper()
