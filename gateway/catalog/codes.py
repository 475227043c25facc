"""Validators for the identifier codes that flow through Tongban.

Every function here is pure: strings in, a verdict out, no I/O. The one exception is that
`validate_citizen_id` and `validate_hmt_residence_permit` read the calendar (today in China,
UTC+8) when the caller does not pass `today`.

Invariants, in plain words:

- Input is taken exactly as given. Nothing is trimmed, upper-cased or converted from
  full-width forms: a code with a space, a lowercase letter or a full-width digit is
  rejected (`*_BAD_LENGTH` or `*_BAD_CHARACTER`). Cleaning data is the job of whoever
  ingests it; a validator that silently repaired input could not be used to check the repair.
- A `validate_*` function returns None when the code is valid and otherwise one
  `CodeProblem`: the first problem found, with a stable UPPER_SNAKE `reason` and an English
  `message` naming the 1-based position (and, except for citizen IDs, the character) at
  fault. A code that embeds another code (an implementation code embeds a USCC and a basic
  code) reports the embedded code's own reasons, with positions counted in the outer code.
- 统一社会信用代码 (GB 32100-2015): 18 characters from the 31-character set
  `0123456789ABCDEFGHJKLMNPQRTUWXY`, check character = charset[(31 - sum mod 31) mod 31] with
  weights 3^(i-1) mod 31. Only that check is authoritative: the embedded 主体标识码 (positions
  9-17) is not required to pass its own GB 11714 check, and the registration authority and
  region segments are not checked against any table. Modulus 31 is prime and every weight
  is non-zero, so any single-character substitution is detected.
- 组织机构代码 (GB 11714): 8 characters from 0-9A-Z (valued 0-35) plus a check character
  11 - (sum mod 11) with 10 -> `X` and 11 -> `0`; also accepted in the printed form
  `XXXXXXXX-X`. Values are reduced modulo 11, so a substitution between two characters whose
  values differ by a multiple of 11 (`0`/`B`/`M`/`X`, for instance) is NOT detected.
- 公民身份号码 (GB 11643-1999): 17 digits plus a check character from `10X98765432`; the
  province prefix must be in the caller's collection of province codes, the birth date
  (positions 7-14) must be a real calendar date, not before 1900-01-01 and not after today.
  A citizen ID is personal information (PIPL): problem messages never quote its digits, and
  `mask_citizen_id` is the only form that may be logged. The same holds for the two
  documents below.
- 港澳台居民居住证 (State Council, 2018) [C]: the GB 11643 layout, birth date rules and check,
  with the address code 810000, 820000 or 830000 in place of a county code.
- 外国人永久居留身份证 (National Immigration Administration) [C]: the 2023 card's 18 characters
  are 17 digits and a MOD 11-2 check character as in GB 11643, the first digit `9`; the 2017
  card's 15 are 3 Latin letters and 12 digits, with no published check. Only that is checked:
  the positions inside the 2023 number are not confirmed [U]. The tags are the standards
  reference's: [C] confirmed by a published source, [U] unconfirmed (never checked here).
- Region codes (GB/T 2260): 6 digits whose province prefix (`XX0000`) is in the caller's
  collection. That makes a code plausible, not existent: the list of counties changes every
  year, and checking existence needs the pinned table itself. Area codes are 12 digits: a
  plausible 6-digit county code plus 3 digits of township and 3 of village.
- Matter codes (GB/T 39554.1-2020, layouts confirmed on production data): the 12-digit
  基本编码 is origin (`00` national or a known province prefix) + 事项类型 (01-10 or 20; local
  extensions 30-99 only for a province-added item) + main item (5) + sub-item (3). It has no
  check character, so a mistyped item number is undetectable here. The 31-character 实施编码
  is an agency USCC with a valid check + 行使层级 digit 1-6 + basic code; the 33-character
  业务办理项编码 adds a sequence 01-99.
- 证照标识 (GB/T 36904-2018): `1.2.156.3005.2.{type}.{issuer}.{number}.{version}.{check}`.
  The type code is a USCC with a valid check plus a 3-digit sequence; issuer code and
  licence number are non-empty strings over 0-9A-Z (issuers are usually a USCC, but test
  data also uses region codes, so only the alphabet is checked); the version is 3 digits
  from 001; the check is ISO/IEC 7064 hybrid MOD 37,36 over type + issuer + number + version.
  The standard calls the licence number free text, but MOD 37,36 only gives a value to
  0-9A-Z and every real identifier seen carries a digits-only number, so any other
  character (lowercase, hyphen, Chinese) is rejected: it could not be covered by the check.
  Any single-character substitution in the checked part is detected (verified exhaustively
  on the real identifiers by the tests).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from types import MappingProxyType

__all__ = [
    "HMT_ADDRESS_CODES",
    "LICENSE_ID_PREFIX",
    "MATTER_TYPES",
    "AgencyCodeKind",
    "BasicCode",
    "CodeError",
    "CodeProblem",
    "HandlingItemCode",
    "ImplementationCode",
    "LicenseIdentifier",
    "citizen_id_check_char",
    "classify_agency_code",
    "is_province_code",
    "is_valid_area_code",
    "is_valid_basic_code",
    "is_valid_citizen_id",
    "is_valid_handling_item_code",
    "is_valid_implementation_code",
    "is_valid_license_identifier",
    "is_valid_org_code",
    "is_valid_region_code",
    "is_valid_uscc",
    "license_identifier_check_char",
    "make_license_identifier",
    "mask_citizen_id",
    "org_code_check_char",
    "parse_basic_code",
    "parse_handling_item_code",
    "parse_implementation_code",
    "parse_license_identifier",
    "province_of",
    "upgrade_citizen_id_15",
    "uscc_check_char",
    "validate_area_code",
    "validate_basic_code",
    "validate_citizen_id",
    "validate_foreign_permanent_residence_id",
    "validate_handling_item_code",
    "validate_hmt_residence_permit",
    "validate_implementation_code",
    "validate_license_identifier",
    "validate_org_code",
    "validate_region_code",
    "validate_uscc",
]

# 事项类型 of the national catalogue, in code order.
MATTER_TYPES: tuple[tuple[str, str], ...] = (
    ("01", "行政许可"),
    ("02", "行政处罚"),
    ("03", "行政强制"),
    ("04", "行政征收"),
    ("05", "行政给付"),
    ("06", "行政检查"),
    ("07", "行政确认"),
    ("08", "行政奖励"),
    ("09", "行政裁决"),
    ("10", "其他行政权力"),
    ("20", "公共服务"),
)

LICENSE_ID_PREFIX = "1.2.156.3005.2."
"""The OID arc every 证照标识 starts with."""

_DIGITS = "0123456789"
_LATIN_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ALNUM36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ALNUM36_VALUES = {c: v for v, c in enumerate(_ALNUM36)}

_USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUES = {c: v for v, c in enumerate(_USCC_CHARSET)}
_USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))

_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_CHECK_CHARS = _DIGITS + "X"

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK_CHARS = "10X98765432"  # indexed by the weighted sum mod 11
_ID_EARLIEST_BIRTH = date(1900, 1, 1)
_CHINA_TZ = timezone(timedelta(hours=8))

_NATIONAL_MATTER_TYPES = frozenset(code for code, _ in MATTER_TYPES)
_LEVELS = "123456"  # 行使层级: 国家级, 省级, 地市级, 区县级, 乡镇(街道)级, 村(社区)级


@dataclass(frozen=True)
class CodeProblem:
    """Why a code is invalid: the first problem a validator found."""

    reason: str
    """Stable UPPER_SNAKE identifier, e.g. `USCC_CHECK_MISMATCH`; safe to match on."""
    message: str
    """English sentence for people, naming the position at fault; wording may change."""


class CodeError(ValueError):
    """Raised by the parsers and calculators for input that is not a valid code."""

    def __init__(self, problem: CodeProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


# -- shared helpers -------------------------------------------------------------------


def _first_outside(text: str, alphabet: Collection[str]) -> int | None:
    """Index of the first character of `text` not in `alphabet`, or None."""
    for index, char in enumerate(text):
        if char not in alphabet:
            return index
    return None


def _bad_character(reason: str, label: str, char: str, position: int, expected: str) -> CodeProblem:
    hint = " (codes are upper case)" if char.islower() and char.upper() in _ALNUM36_VALUES else ""
    return CodeProblem(
        reason, f"{label} has {char!r} at position {position}{hint}; expected {expected}."
    )


def _digits_problem(reason: str, label: str, text: str, offset: int) -> CodeProblem | None:
    index = _first_outside(text, _DIGITS)
    if index is None:
        return None
    return _bad_character(reason, label, text[index], offset + index + 1, "a digit 0-9")


def _raise_if(problem: CodeProblem | None) -> None:
    if problem is not None:
        raise CodeError(problem)


# -- 统一社会信用代码 (GB 32100) -----------------------------------------------------------


def _uscc_check(body: str) -> str:
    total = sum(_USCC_VALUES[c] * w for c, w in zip(body, _USCC_WEIGHTS, strict=True))
    return _USCC_CHARSET[(31 - total % 31) % 31]


def _uscc_problem(code: str, label: str, offset: int) -> CodeProblem | None:
    if len(code) != 18:
        return CodeProblem(
            "USCC_BAD_LENGTH", f"{label} must be 18 characters long, not {len(code)}."
        )
    index = _first_outside(code, _USCC_VALUES)
    if index is not None:
        return _bad_character(
            "USCC_BAD_CHARACTER",
            label,
            code[index],
            offset + index + 1,
            "a character of 0123456789ABCDEFGHJKLMNPQRTUWXY",
        )
    expected = _uscc_check(code[:17])
    if code[17] != expected:
        return CodeProblem(
            "USCC_CHECK_MISMATCH",
            f"{label} has check character {code[17]!r} at position {offset + 18}; "
            f"the first 17 characters require {expected!r}.",
        )
    return None


def uscc_check_char(first17: str) -> str:
    """The GB 32100 check character for the first 17 characters of a USCC."""
    if len(first17) != 17:
        raise CodeError(
            CodeProblem(
                "USCC_BAD_LENGTH",
                f"USCC body must be 17 characters long, not {len(first17)}.",
            )
        )
    index = _first_outside(first17, _USCC_VALUES)
    if index is not None:
        raise CodeError(
            _bad_character(
                "USCC_BAD_CHARACTER",
                "USCC body",
                first17[index],
                index + 1,
                "a character of 0123456789ABCDEFGHJKLMNPQRTUWXY",
            )
        )
    return _uscc_check(first17)


def validate_uscc(code: str) -> CodeProblem | None:
    """Checks a 统一社会信用代码: length, charset and check character."""
    return _uscc_problem(code, "USCC", 0)


def is_valid_uscc(code: str) -> bool:
    """True when `validate_uscc` finds no problem."""
    return validate_uscc(code) is None


# -- 组织机构代码 (GB 11714) ---------------------------------------------------------------


def _org_check(body: str) -> str:
    total = sum(_ALNUM36_VALUES[c] * w for c, w in zip(body, _ORG_WEIGHTS, strict=True))
    check = 11 - total % 11  # 1..11; 10 is written X and 11 is written 0
    return "X" if check == 10 else _DIGITS[check % 11]


def org_code_check_char(first8: str) -> str:
    """The GB 11714 check character (`0`-`9` or `X`) for an 8-character organisation code."""
    if len(first8) != 8:
        raise CodeError(
            CodeProblem(
                "ORG_CODE_BAD_LENGTH",
                f"Organisation code body must be 8 characters long, not {len(first8)}.",
            )
        )
    _raise_if(_org_body_problem(first8))
    return _org_check(first8)


def _org_body_problem(body: str) -> CodeProblem | None:
    index = _first_outside(body, _ALNUM36_VALUES)
    if index is None:
        return None
    return _bad_character(
        "ORG_CODE_BAD_CHARACTER", "Organisation code", body[index], index + 1, "0-9 or A-Z"
    )


def validate_org_code(code: str) -> CodeProblem | None:
    """Checks a 组织机构代码, bare (`MA2H12349`) or printed (`MA2H1234-9`)."""
    if len(code) == 10:
        if code[8] != "-":
            return _bad_character("ORG_CODE_BAD_CHARACTER", "Organisation code", code[8], 9, "'-'")
        check_position = 10
    elif len(code) == 9:
        check_position = 9
    else:
        return CodeProblem(
            "ORG_CODE_BAD_LENGTH",
            f"Organisation code must be 9 characters (or 10 as XXXXXXXX-X), not {len(code)}.",
        )
    body, check = code[:8], code[check_position - 1]
    problem = _org_body_problem(body)
    if problem is not None:
        return problem
    if check not in _ORG_CHECK_CHARS:
        return _bad_character(
            "ORG_CODE_BAD_CHARACTER", "Organisation code", check, check_position, "0-9 or X"
        )
    expected = _org_check(body)
    if check != expected:
        return CodeProblem(
            "ORG_CODE_CHECK_MISMATCH",
            f"Organisation code has check character {check!r} at position {check_position}; "
            f"the first 8 characters require {expected!r}.",
        )
    return None


def is_valid_org_code(code: str) -> bool:
    """True when `validate_org_code` finds no problem."""
    return validate_org_code(code) is None


# -- 公民身份号码 (GB 11643) ---------------------------------------------------------------


def _citizen_check(body: str) -> str:
    total = sum(int(c) * w for c, w in zip(body, _ID_WEIGHTS, strict=True))
    return _ID_CHECK_CHARS[total % 11]


def _citizen_digits_problem(text: str, label: str) -> CodeProblem | None:
    # Names the position only: a character of an ID number is never quoted back.
    index = _first_outside(text, _DIGITS)
    if index is None:
        return None
    return CodeProblem(
        "CITIZEN_ID_BAD_CHARACTER", f"{label} has a non-digit at position {index + 1}."
    )


def citizen_id_check_char(first17: str) -> str:
    """The GB 11643 check character (`0`-`9` or `X`) for the first 17 digits of an ID."""
    if len(first17) != 17:
        raise CodeError(
            CodeProblem(
                "CITIZEN_ID_BAD_LENGTH",
                f"Citizen ID body must be 17 digits long, not {len(first17)}.",
            )
        )
    _raise_if(_citizen_digits_problem(first17, "Citizen ID body"))
    return _citizen_check(first17)


@dataclass(frozen=True)
class _Gb11643Reasons:
    """The label and reasons of one document numbered in the GB 11643 layout."""

    label: str
    bad_length: str
    bad_character: str
    unknown_region: str
    region_positions: str
    bad_date: str
    check_mismatch: str


_CITIZEN_ID = _Gb11643Reasons(
    "Citizen ID",
    "CITIZEN_ID_BAD_LENGTH",
    "CITIZEN_ID_BAD_CHARACTER",
    "CITIZEN_ID_UNKNOWN_PROVINCE",
    "positions 1-2 are not the prefix of a known province",
    "CITIZEN_ID_BAD_DATE",
    "CITIZEN_ID_CHECK_MISMATCH",
)
_HMT_PERMIT = _Gb11643Reasons(
    "Residence permit number",
    "HMT_PERMIT_BAD_LENGTH",
    "HMT_PERMIT_BAD_CHARACTER",
    "HMT_PERMIT_UNKNOWN_REGION",
    "positions 1-6 are not 810000, 820000 or 830000",
    "HMT_PERMIT_BAD_DATE",
    "HMT_PERMIT_CHECK_MISMATCH",
)


def _gb11643_problem(
    code: str,
    reasons: _Gb11643Reasons,
    region_known: Callable[[str], bool],
    today: date | None,
    length_hint: str = "",
) -> CodeProblem | None:
    """The GB 11643 layout: 6-digit address code (judged by `region_known`), birth date
    YYYYMMDD, 3-digit sequence, MOD 11-2 check character. Messages never quote a digit."""
    label = reasons.label
    if len(code) != 18:
        return CodeProblem(
            reasons.bad_length,
            f"{label} must be 18 characters long, not {len(code)}{length_hint}.",
        )
    index = _first_outside(code[:17], _DIGITS)
    if index is not None:
        return CodeProblem(
            reasons.bad_character, f"{label} has a non-digit at position {index + 1}."
        )
    if code[17] not in _ID_CHECK_CHARS:
        return CodeProblem(
            reasons.bad_character,
            f"{label} has a check character at position 18 that is neither a digit nor 'X'.",
        )
    if not region_known(code[:6]):
        return CodeProblem(reasons.unknown_region, f"{label} {reasons.region_positions}.")
    try:
        birth = date(int(code[6:10]), int(code[10:12]), int(code[12:14]))
    except ValueError:
        return CodeProblem(
            reasons.bad_date, f"{label} positions 7-14 (birth date) are not a real calendar date."
        )
    if birth < _ID_EARLIEST_BIRTH:
        return CodeProblem(
            reasons.bad_date, f"{label} positions 7-14 (birth date) are before 1900."
        )
    if birth > (today if today is not None else datetime.now(_CHINA_TZ).date()):
        return CodeProblem(
            reasons.bad_date, f"{label} positions 7-14 (birth date) are in the future."
        )
    if code[17] != _citizen_check(code[:17]):
        return CodeProblem(
            reasons.check_mismatch,
            f"{label} check character at position 18 does not match the first 17 digits.",
        )
    return None


def validate_citizen_id(
    code: str, provinces: Collection[str], *, today: date | None = None
) -> CodeProblem | None:
    """Checks an 18-character 公民身份号码.

    `provinces` holds the accepted province codes (`XX0000`). `today` bounds the birth date;
    by default it is the current date in China.
    """
    return _gb11643_problem(
        code,
        _CITIZEN_ID,
        lambda address: address[:2] + "0000" in provinces,
        today,
        " (upgrade 15-digit numbers with upgrade_citizen_id_15)" if len(code) == 15 else "",
    )


def is_valid_citizen_id(
    code: str, provinces: Collection[str], *, today: date | None = None
) -> bool:
    """True when `validate_citizen_id` finds no problem."""
    return validate_citizen_id(code, provinces, today=today) is None


def upgrade_citizen_id_15(id15: str) -> str:
    """The 18-character form of a legacy 15-digit ID: `19` inserted before the year, plus
    the check character. Only the shape is checked; validate the result."""
    if len(id15) != 15:
        raise CodeError(
            CodeProblem(
                "CITIZEN_ID_BAD_LENGTH",
                f"Legacy citizen ID must be 15 digits long, not {len(id15)}.",
            )
        )
    _raise_if(_citizen_digits_problem(id15, "Legacy citizen ID"))
    body = id15[:6] + "19" + id15[6:]
    return body + _citizen_check(body)


def mask_citizen_id(code: str) -> str:
    """The loggable form of any applicant's or holder's id number.

    `110105********1239` for 18 characters (the GB 11643 address code, or a USCC's first 6,
    and the last 4 stay), except a foreign permanent residence number (17 digits from `9`,
    whose inner positions are not published: the first 6 may name a nationality); that and
    any other length keep only the last 4 characters (none when there are 4 or fewer)."""
    if len(code) == 18 and not (code[0] == "9" and code[:17].isascii() and code[:17].isdigit()):
        return code[:6] + "*" * 8 + code[-4:]
    if len(code) <= 4:
        return "*" * len(code)
    return "*" * (len(code) - 4) + code[-4:]


# -- 港澳台居民居住证 and 外国人永久居留身份证 ----------------------------------------------------

HMT_ADDRESS_CODES: Mapping[str, str] = MappingProxyType(
    {"810000": "香港", "820000": "澳门", "830000": "台湾"}
)
"""The address codes a 港澳台居民居住证 number starts with, in place of a county code."""


def validate_hmt_residence_permit(code: str, *, today: date | None = None) -> CodeProblem | None:
    """Checks the 18-character number of a 港澳台居民居住证 (State Council, 2018) [C].

    The GB 11643 layout and MOD 11-2 check, with the address code 810000 (Hong Kong), 820000
    (Macao) or 830000 (Taiwan). `today` bounds the birth date as for a 公民身份号码.
    """
    return _gb11643_problem(code, _HMT_PERMIT, HMT_ADDRESS_CODES.__contains__, today)


def validate_foreign_permanent_residence_id(code: str) -> CodeProblem | None:
    """Checks the number of a 外国人永久居留身份证 (National Immigration Administration) [C].

    The 2023 card (issued from 2023-12-01): 18 characters, 17 digits and a check character,
    the first digit `9`, the check MOD 11-2 exactly as GB 11643. The 2017 card, valid until it
    expires: 15 characters, 3 Latin letters (upper case, as every code here) and 12 digits;
    it has no published check. Nothing else is checked: where the 2023 number keeps its
    issuing place, nationality and birth date is not confirmed [U].
    """
    label = "Permanent residence number"
    if len(code) == 15:
        index = _first_outside(code[:3], _LATIN_UPPER)
        if index is None:
            index = _first_outside(code[3:], _DIGITS)
            if index is not None:
                index += 3
        if index is not None:
            return CodeProblem(
                "FOREIGN_PR_ID_BAD_CHARACTER",
                f"{label} (2017 card: 3 letters A-Z, then 12 digits) has a wrong character at "
                f"position {index + 1}.",
            )
        return None
    if len(code) != 18:
        return CodeProblem(
            "FOREIGN_PR_ID_BAD_LENGTH",
            f"{label} must be 18 characters (2023 card) or 15 (2017 card), not {len(code)}.",
        )
    index = _first_outside(code[:17], _DIGITS)
    if index is not None:
        return CodeProblem(
            "FOREIGN_PR_ID_BAD_CHARACTER", f"{label} has a non-digit at position {index + 1}."
        )
    if code[17] not in _ID_CHECK_CHARS:
        return CodeProblem(
            "FOREIGN_PR_ID_BAD_CHARACTER",
            f"{label} has a check character at position 18 that is neither a digit nor 'X'.",
        )
    if code[0] != "9":
        return CodeProblem(
            "FOREIGN_PR_ID_BAD_FIRST_DIGIT",
            f"{label} (2023 card) must start with 9, the mark of a foreigner's number.",
        )
    if code[17] != _citizen_check(code[:17]):
        return CodeProblem(
            "FOREIGN_PR_ID_CHECK_MISMATCH",
            f"{label} check character at position 18 does not match the first 17 digits.",
        )
    return None


# -- Region codes (GB/T 2260) ---------------------------------------------------------


def _region_problem(
    code: str, provinces: Collection[str], label: str, offset: int
) -> CodeProblem | None:
    problem = _digits_problem("REGION_CODE_BAD_CHARACTER", label, code, offset)
    if problem is not None:
        return problem
    if code[:2] + "0000" not in provinces:
        return CodeProblem(
            "REGION_CODE_UNKNOWN_PROVINCE",
            f"{label} positions {offset + 1}-{offset + 2} ({code[:2]!r}) "
            "are not the prefix of a known province.",
        )
    return None


def validate_region_code(code: str, provinces: Collection[str]) -> CodeProblem | None:
    """Checks that a 6-digit GB/T 2260 code is plausible: digits, known province prefix."""
    if len(code) != 6:
        return CodeProblem(
            "REGION_CODE_BAD_LENGTH", f"Region code must be 6 digits long, not {len(code)}."
        )
    return _region_problem(code, provinces, "Region code", 0)


def is_valid_region_code(code: str, provinces: Collection[str]) -> bool:
    """True when `validate_region_code` finds no problem."""
    return validate_region_code(code, provinces) is None


def validate_area_code(code: str, provinces: Collection[str]) -> CodeProblem | None:
    """Checks a 12-digit area code: a plausible county code + township 3 + village 3."""
    if len(code) != 12:
        return CodeProblem(
            "AREA_CODE_BAD_LENGTH", f"Area code must be 12 digits long, not {len(code)}."
        )
    problem = _digits_problem("AREA_CODE_BAD_CHARACTER", "Area code", code, 0)
    if problem is not None:
        return problem
    return _region_problem(code[:6], provinces, "Area code", 0)


def is_valid_area_code(code: str, provinces: Collection[str]) -> bool:
    """True when `validate_area_code` finds no problem."""
    return validate_area_code(code, provinces) is None


def is_province_code(code: str, provinces: Collection[str]) -> bool:
    """True for a province-level code (`XX0000`) that is in `provinces`."""
    return (
        len(code) == 6
        and _first_outside(code, _DIGITS) is None
        and code.endswith("0000")
        and code in provinces
    )


def province_of(code: str) -> str:
    """The province code `XX0000` of any code that starts with a region code (a region or
    area code, a citizen ID). Raises CodeError when the first two characters are not digits."""
    if len(code) < 2 or _first_outside(code[:2], _DIGITS) is not None:
        raise CodeError(
            CodeProblem(
                "REGION_CODE_BAD_CHARACTER",
                "A code must start with two digits to name a province.",
            )
        )
    return code[:2] + "0000"


# -- Matter codes (GB/T 39554.1) ------------------------------------------------------


@dataclass(frozen=True)
class BasicCode:
    """A parsed 12-digit 基本编码."""

    origin: str
    """`00` for the national catalogue, else the 2-digit prefix of the adding province."""
    matter_type: str
    """事项类型, e.g. `01` 行政许可 (see MATTER_TYPES); `30`-`99` are local extensions."""
    main_item: str
    """5-digit main item number."""
    sub_item: str
    """3-digit sub-item number; `000` when there is none."""

    def __str__(self) -> str:
        return self.origin + self.matter_type + self.main_item + self.sub_item


@dataclass(frozen=True)
class ImplementationCode:
    """A parsed 31-character 实施编码: one agency's implementation of a matter."""

    agency_uscc: str
    """USCC of the implementing agency (check verified)."""
    level: str
    """行使层级 digit: 1 国家级 … 6 村(社区)级."""
    basic_code: BasicCode
    """The matter implemented."""

    def __str__(self) -> str:
        return self.agency_uscc + self.level + str(self.basic_code)


@dataclass(frozen=True)
class HandlingItemCode:
    """A parsed 33-character 业务办理项编码: one situation of an implementation."""

    implementation: ImplementationCode
    """The implementation the handling item belongs to."""
    sequence: str
    """2-digit sequence, `01`-`99`."""

    def __str__(self) -> str:
        return str(self.implementation) + self.sequence


def _basic_problem(
    code: str, provinces: Collection[str], label: str, offset: int
) -> CodeProblem | None:
    problem = _digits_problem("BASIC_CODE_BAD_CHARACTER", label, code, offset)
    if problem is not None:
        return problem
    origin, matter_type = code[:2], code[2:4]
    if origin != "00" and origin + "0000" not in provinces:
        return CodeProblem(
            "BASIC_CODE_UNKNOWN_ORIGIN",
            f"{label} origin {origin!r} at positions {offset + 1}-{offset + 2} is neither "
            "'00' (national) nor the prefix of a known province.",
        )
    local_extension = origin != "00" and matter_type >= "30"
    if matter_type not in _NATIONAL_MATTER_TYPES and not local_extension:
        allowed = "01-10 or 20" + ("" if origin == "00" else ", or 30-99 for a local item")
        return CodeProblem(
            "BASIC_CODE_BAD_MATTER_TYPE",
            f"{label} matter type {matter_type!r} at positions {offset + 3}-{offset + 4} "
            f"is not {allowed}.",
        )
    return None


def _basic_from(code: str) -> BasicCode:
    return BasicCode(code[:2], code[2:4], code[4:9], code[9:12])


def validate_basic_code(code: str, provinces: Collection[str]) -> CodeProblem | None:
    """Checks a 12-digit 基本编码; `provinces` gives the province prefixes allowed as origin."""
    if len(code) != 12:
        return CodeProblem(
            "BASIC_CODE_BAD_LENGTH", f"Basic code must be 12 digits long, not {len(code)}."
        )
    return _basic_problem(code, provinces, "Basic code", 0)


def is_valid_basic_code(code: str, provinces: Collection[str]) -> bool:
    """True when `validate_basic_code` finds no problem."""
    return validate_basic_code(code, provinces) is None


def parse_basic_code(code: str, provinces: Collection[str]) -> BasicCode:
    """Parses a 基本编码; raises CodeError carrying the problem when it is invalid."""
    _raise_if(validate_basic_code(code, provinces))
    return _basic_from(code)


def _implementation_problem(
    code: str, provinces: Collection[str], label: str
) -> CodeProblem | None:
    problem = _uscc_problem(code[:18], f"{label} agency USCC", 0)
    if problem is not None:
        return problem
    if code[18] not in _LEVELS:
        return _bad_character(
            "IMPLEMENTATION_CODE_BAD_LEVEL", label, code[18], 19, "an exercise level 1-6"
        )
    return _basic_problem(code[19:31], provinces, f"{label} basic code", 19)


def validate_implementation_code(code: str, provinces: Collection[str]) -> CodeProblem | None:
    """Checks a 31-character 实施编码: agency USCC + 行使层级 + basic code."""
    if len(code) != 31:
        return CodeProblem(
            "IMPLEMENTATION_CODE_BAD_LENGTH",
            f"Implementation code must be 31 characters long, not {len(code)}.",
        )
    return _implementation_problem(code, provinces, "Implementation code")


def is_valid_implementation_code(code: str, provinces: Collection[str]) -> bool:
    """True when `validate_implementation_code` finds no problem."""
    return validate_implementation_code(code, provinces) is None


def parse_implementation_code(code: str, provinces: Collection[str]) -> ImplementationCode:
    """Parses a 实施编码; raises CodeError carrying the problem when it is invalid."""
    _raise_if(validate_implementation_code(code, provinces))
    return ImplementationCode(code[:18], code[18], _basic_from(code[19:31]))


def validate_handling_item_code(code: str, provinces: Collection[str]) -> CodeProblem | None:
    """Checks a 33-character 业务办理项编码: implementation code + sequence 01-99."""
    if len(code) != 33:
        return CodeProblem(
            "HANDLING_ITEM_CODE_BAD_LENGTH",
            f"Handling item code must be 33 characters long, not {len(code)}.",
        )
    problem = _implementation_problem(code[:31], provinces, "Handling item code")
    if problem is not None:
        return problem
    sequence = code[31:]
    problem = _digits_problem("HANDLING_ITEM_CODE_BAD_SEQUENCE", "Handling item code", sequence, 31)
    if problem is not None:
        return problem
    if sequence == "00":
        return CodeProblem(
            "HANDLING_ITEM_CODE_BAD_SEQUENCE",
            "Handling item code sequence at positions 32-33 is '00'; sequences start at '01'.",
        )
    return None


def is_valid_handling_item_code(code: str, provinces: Collection[str]) -> bool:
    """True when `validate_handling_item_code` finds no problem."""
    return validate_handling_item_code(code, provinces) is None


def parse_handling_item_code(code: str, provinces: Collection[str]) -> HandlingItemCode:
    """Parses a 业务办理项编码; raises CodeError carrying the problem when it is invalid."""
    _raise_if(validate_handling_item_code(code, provinces))
    return HandlingItemCode(parse_implementation_code(code[:31], provinces), code[31:])


# -- 证照标识 (GB/T 36904) ---------------------------------------------------------------


@dataclass(frozen=True)
class LicenseIdentifier:
    """A parsed 证照标识; `str()` gives back the identifier."""

    type_code: str
    """证照类型代码: defining ministry's USCC + 3-digit sequence (21 characters)."""
    issuer_code: str
    """颁发机构代码: usually the issuing agency's USCC."""
    number: str
    """证照编号: the licence's own number, over 0-9A-Z."""
    version: str
    """版本号: 3 digits from `001`, incremented on renewal."""
    check: str
    """校验位: ISO/IEC 7064 MOD 37,36 check character."""

    def __str__(self) -> str:
        return LICENSE_ID_PREFIX + ".".join(
            (self.type_code, self.issuer_code, self.number, self.version, self.check)
        )


def _mod37_36(text: str) -> str:
    """ISO/IEC 7064 hybrid MOD 37,36 check character of `text` (all of it in 0-9A-Z).

    Hybrid system with M = 36: start with P = M; per character S = (P + value) mod M, read
    as M when 0, then P = 2S mod (M + 1). The check c makes (P + c) mod M equal 1.
    """
    modulus = 36
    product = modulus
    for char in text:
        total = (product + _ALNUM36_VALUES[char]) % modulus or modulus
        product = (total * 2) % (modulus + 1)
    return _ALNUM36[(modulus + 1 - product) % modulus]


_SEGMENT_NAMES = ("type code", "issuer code", "licence number", "version", "check")


def _license_parts_problem(
    parts: tuple[str, str, str, str], starts: tuple[int, int, int, int], label: str
) -> CodeProblem | None:
    """Problems of type, issuer, number and version; `starts` are 0-based offsets used to
    report positions (the segments' places in the identifier, or zeros for bare parts)."""
    for name, value in zip(_SEGMENT_NAMES, parts, strict=False):
        if not value:
            return CodeProblem("LICENSE_ID_EMPTY_SEGMENT", f"{label} has an empty {name}.")
    type_code, issuer_code, number, version = parts
    type_start, issuer_start, number_start, version_start = starts
    if len(type_code) != 21:
        return CodeProblem(
            "LICENSE_ID_BAD_TYPE_CODE",
            f"{label} type code must be 21 characters (USCC + 3-digit sequence), "
            f"not {len(type_code)}.",
        )
    problem = _uscc_problem(type_code[:18], f"{label} type code USCC", type_start)
    if problem is not None:
        return problem
    problem = _digits_problem(
        "LICENSE_ID_BAD_TYPE_CODE", f"{label} type code", type_code[18:], type_start + 18
    )
    if problem is not None:
        return problem
    for name, value, start in (
        ("issuer code", issuer_code, issuer_start),
        ("licence number", number, number_start),
    ):
        index = _first_outside(value, _ALNUM36_VALUES)
        if index is not None:
            return _bad_character(
                "LICENSE_ID_BAD_CHARACTER",
                f"{label} {name}",
                value[index],
                start + index + 1,
                "0-9 or A-Z",
            )
    if len(version) != 3 or _first_outside(version, _DIGITS) is not None or version == "000":
        return CodeProblem(
            "LICENSE_ID_BAD_VERSION",
            f"{label} version {version!r} at position {version_start + 1} "
            "is not three digits from '001'.",
        )
    return None


def validate_license_identifier(identifier: str) -> CodeProblem | None:
    """Checks a 证照标识: prefix, five non-empty segments, their shapes and the check."""
    label = "Licence identifier"
    if not identifier.startswith(LICENSE_ID_PREFIX):
        return CodeProblem(
            "LICENSE_ID_BAD_PREFIX", f"{label} does not start with {LICENSE_ID_PREFIX!r}."
        )
    segments = identifier[len(LICENSE_ID_PREFIX) :].split(".")
    if len(segments) != 5:
        return CodeProblem(
            "LICENSE_ID_BAD_SEGMENT_COUNT",
            f"{label} has {len(segments)} dot-separated segments after the prefix, not 5 "
            "(type, issuer, number, version, check).",
        )
    for name, segment in zip(_SEGMENT_NAMES, segments, strict=True):
        if not segment:
            return CodeProblem("LICENSE_ID_EMPTY_SEGMENT", f"{label} has an empty {name}.")
    starts = [len(LICENSE_ID_PREFIX)]
    for segment in segments[:-1]:
        starts.append(starts[-1] + len(segment) + 1)
    type_code, issuer_code, number, version, check = segments
    problem = _license_parts_problem(
        (type_code, issuer_code, number, version),
        (starts[0], starts[1], starts[2], starts[3]),
        label,
    )
    if problem is not None:
        return problem
    if len(check) != 1:
        return CodeProblem(
            "LICENSE_ID_BAD_CHECK_LENGTH",
            f"{label} check at position {starts[4] + 1} is {len(check)} characters, not 1.",
        )
    if check not in _ALNUM36_VALUES:
        return _bad_character(
            "LICENSE_ID_BAD_CHARACTER", f"{label} check", check, starts[4] + 1, "0-9 or A-Z"
        )
    expected = _mod37_36(type_code + issuer_code + number + version)
    if check != expected:
        return CodeProblem(
            "LICENSE_ID_CHECK_MISMATCH",
            f"{label} has check character {check!r} at position {starts[4] + 1}; "
            f"the other segments require {expected!r}.",
        )
    return None


def is_valid_license_identifier(identifier: str) -> bool:
    """True when `validate_license_identifier` finds no problem."""
    return validate_license_identifier(identifier) is None


def parse_license_identifier(identifier: str) -> LicenseIdentifier:
    """Parses a 证照标识; raises CodeError carrying the problem when it is invalid."""
    _raise_if(validate_license_identifier(identifier))
    return LicenseIdentifier(*identifier[len(LICENSE_ID_PREFIX) :].split("."))


def license_identifier_check_char(
    type_code: str, issuer_code: str, number: str, version: str
) -> str:
    """The MOD 37,36 check character over the four segments concatenated.

    Only the alphabet is checked (every character in 0-9A-Z), not the segments' shapes, so
    this is also the bare checksum; `make_license_identifier` checks the shapes too.
    """
    for name, value in zip(_SEGMENT_NAMES, (type_code, issuer_code, number, version), strict=False):
        index = _first_outside(value, _ALNUM36_VALUES)
        if index is not None:
            raise CodeError(
                _bad_character(
                    "LICENSE_ID_BAD_CHARACTER",
                    f"Licence {name}",
                    value[index],
                    index + 1,
                    "0-9 or A-Z",
                )
            )
    return _mod37_36(type_code + issuer_code + number + version)


def make_license_identifier(type_code: str, issuer_code: str, number: str, version: str) -> str:
    """Builds a 证照标识 with its check character, for issuers.

    Raises CodeError when a segment does not have the shape `validate_license_identifier`
    requires (positions in the message then count within the segment).
    """
    _raise_if(
        _license_parts_problem((type_code, issuer_code, number, version), (0, 0, 0, 0), "Licence")
    )
    check = _mod37_36(type_code + issuer_code + number + version)
    return str(LicenseIdentifier(type_code, issuer_code, number, version, check))


# -- Dirty agency codes ---------------------------------------------------------------


class AgencyCodeKind(enum.Enum):
    """What an agency code in provincial data turned out to be."""

    VALID_USCC = "VALID_USCC"
    """An 18-character USCC whose check character matches."""
    USCC_BAD_CHECK = "USCC_BAD_CHECK"
    """18 characters of the USCC charset with a wrong check character."""
    TRUNCATED_USCC = "TRUNCATED_USCC"
    """17 characters of the USCC charset: a USCC that lost a character."""
    LEGACY_ORG_CODE = "LEGACY_ORG_CODE"
    """A GB 11714 organisation code with a valid check, bare or printed with a hyphen."""
    PLACEHOLDER = "PLACEHOLDER"
    """Two or more of one repeated character, e.g. `1111111111111111` or all zeros."""
    INVALID = "INVALID"
    """Anything else."""


def classify_agency_code(code: str) -> AgencyCodeKind:
    """Sorts an agency code from provincial data into one `AgencyCodeKind`.

    Placeholders are recognised first: `000000000000000000` passes the USCC check and
    `000000000` the organisation code check, yet neither names an agency.
    """
    if len(code) >= 2 and len(set(code)) == 1:
        return AgencyCodeKind.PLACEHOLDER
    in_uscc_charset = _first_outside(code, _USCC_VALUES) is None
    if len(code) == 18 and in_uscc_charset:
        if code[17] == _uscc_check(code[:17]):
            return AgencyCodeKind.VALID_USCC
        return AgencyCodeKind.USCC_BAD_CHECK
    if len(code) == 17 and in_uscc_charset:
        return AgencyCodeKind.TRUNCATED_USCC
    if validate_org_code(code) is None:
        return AgencyCodeKind.LEGACY_ORG_CODE
    return AgencyCodeKind.INVALID
