"""Request field validators: one per kind of field, used by every service.

A region code is judged alike in SubmitApplication, ListApplications, ReportApplicationStatus,
ResolveLocalCode and PublishRegionCatalog, an id number alike for an applicant and a licence
holder, because each is judged here and nowhere else. The codes themselves are
`catalog.codes`' business; this module turns a request's fields into field violations.

Invariants, in plain words:

- A validator returns None when the field is valid, else one `FieldViolation` naming the field,
  with a stable UPPER_SNAKE reason: `MISSING` (a required field is empty, or a required enum
  unspecified), `TOO_LONG` (over its bound), `MALFORMED` (not printable, or not of its
  pattern; a pattern's caller may name its own reason, e.g. `BAD_DIGEST`), `UNKNOWN` (a
  number outside its enum: proto3 enums are open, so a parsed request keeps any number),
  `BAD_REGION_CODE` / `NOT_A_PROVINCE` for region codes, `TOKEN_EMPTY` / `TOKEN_TOO_LARGE`
  for a licence token, and the reasons of `catalog.codes` for matter codes and id numbers
  (`BASIC_CODE_BAD_LENGTH`, `CITIZEN_ID_CHECK_MISMATCH`, ...).
- Every string is bounded, and its length is judged before anything reads its characters:
  a hostile megabyte costs one `len`.
- A description says what is wanted, never what was sent: some values are personal data (id
  numbers), some are megabytes long.
- Codes are ASCII. `str.isdigit` accepts full-width and other Unicode digits (`"４４００００"`),
  so a region code must be `isascii()` too; the code validators check against `0-9` alone.
- A region code is 6 ASCII digits; where a province is meant, `XX0000`. Whether that province
  exists is the catalog's answer (NOT_FOUND `REGION_NOT_FOUND`, its data changes), not a
  malformed argument.
- An id number is judged by the `IdDocument` of its id type, with exactly the rules its
  standard publishes (see `catalog.codes`); an id type outside the table is the id type's own
  violation, never a reason to skip the number's check.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import date

from google.protobuf.descriptor import EnumDescriptor

from gateway.api.v1 import application_pb2
from gateway.catalog import codes
from gateway.errors import FieldViolation, InvalidRequest

__all__ = [
    "ID_DOCUMENTS",
    "MAX_ID_NUMBER",
    "MAX_VERSION",
    "IdDocument",
    "enum_value",
    "form_value",
    "found",
    "holder_document",
    "id_document",
    "id_number",
    "license_token",
    "matching",
    "matter_code",
    "raise_if_any",
    "region_code",
    "text",
]

MAX_ID_NUMBER = 18
"""The longest id number of any `IdDocument`."""
MAX_VERSION = 16
"""The longest catalog version (`YYYY.N`) a request may name."""


@dataclass(frozen=True, slots=True)
class IdDocument:
    """A kind of identity document an applicant or a licence holder presents."""

    id_type: application_pb2.IdType.ValueType
    """Its `gateway.api.v1.IdType`."""
    holder_code: str
    """Its `holder_id_type` in a licence token: GB/T 36903's 代码类型 where the standards
    reference gives one (111, 001); the reference gives none for the two permits, so the token
    profile names them in words that cannot pass for a code of the standard."""
    name: str
    """What it is, for descriptions."""
    check: Callable[[str, Collection[str], date | None], codes.CodeProblem | None]
    """`(number, provinces, today)`: the number's first problem, or None. `provinces` bound a
    公民身份号码's prefix; `today` a birth date (None: today in China)."""


ID_DOCUMENTS: tuple[IdDocument, ...] = (
    IdDocument(
        application_pb2.ID_TYPE_CITIZEN_ID,
        "111",
        "公民身份号码 (GB 11643)",
        lambda number, provinces, today: codes.validate_citizen_id(number, provinces, today=today),
    ),
    IdDocument(
        application_pb2.ID_TYPE_USCC,
        "001",
        "统一社会信用代码 (GB 32100)",
        lambda number, provinces, today: codes.validate_uscc(number),
    ),
    IdDocument(
        application_pb2.ID_TYPE_HMT_RESIDENCE_PERMIT,
        "HMT_RESIDENCE_PERMIT",
        "港澳台居民居住证 number",
        lambda number, provinces, today: codes.validate_hmt_residence_permit(number, today=today),
    ),
    IdDocument(
        application_pb2.ID_TYPE_FOREIGN_PERMANENT_RESIDENCE,
        "FOREIGN_PERMANENT_RESIDENCE",
        "外国人永久居留身份证 number",
        lambda number, provinces, today: codes.validate_foreign_permanent_residence_id(number),
    ),
)
_BY_TYPE: dict[int, IdDocument] = {d.id_type: d for d in ID_DOCUMENTS}
_BY_HOLDER_CODE = {d.holder_code: d for d in ID_DOCUMENTS}


def id_document(id_type: int) -> IdDocument | None:
    """The document of an `IdType` number; None for UNSPECIFIED and unknown numbers."""
    return _BY_TYPE.get(id_type)


def holder_document(holder_code: str) -> IdDocument | None:
    """The document of a licence token's `holder_id_type`; None when there is none."""
    return _BY_HOLDER_CODE.get(holder_code)


# -- the validators ------------------------------------------------------------------------


def text(
    value: str, field: str, max_length: int, *, required: bool = False, printable: bool = True
) -> FieldViolation | None:
    """A string of at most `max_length` characters, printable unless `printable` is False
    (free text that may hold line breaks)."""
    if not value:
        return FieldViolation(field, "required", "MISSING") if required else None
    if len(value) > max_length:
        return FieldViolation(field, f"at most {max_length} characters", "TOO_LONG")
    if printable and not value.isprintable():
        return FieldViolation(field, "printable characters only", "MALFORMED")
    return None


def matching(
    value: str,
    field: str,
    pattern: re.Pattern[str],
    shape: str,
    max_length: int,
    *,
    required: bool = False,
    reason: str = "MALFORMED",
) -> FieldViolation | None:
    """A string of at most `max_length` characters that `pattern` matches in full; `shape`
    describes the pattern to people, `reason` is the violation's when it does not match."""
    if not value:
        return FieldViolation(field, "required", "MISSING") if required else None
    if len(value) > max_length:
        return FieldViolation(field, f"at most {max_length} characters", "TOO_LONG")
    if pattern.fullmatch(value) is None:
        return FieldViolation(field, shape, reason)
    return None


def region_code(value: str, field: str, *, province: bool = True) -> FieldViolation | None:
    """A required GB/T 2260 code: 6 ASCII digits, and `XX0000` when `province`."""
    if len(value) == 6 and value.isascii() and value.isdigit():
        if not province or value.endswith("0000"):
            return None
        return FieldViolation(
            field, "a province-level code (XX0000), not a prefecture or county", "NOT_A_PROVINCE"
        )
    if not value:
        return FieldViolation(field, "required", "MISSING")
    return FieldViolation(field, "a GB/T 2260 code of 6 ASCII digits", "BAD_REGION_CODE")


def matter_code(
    value: str, field: str, provinces: Collection[str], *, required: bool = False
) -> FieldViolation | None:
    """A 12-digit 基本编码 (`codes.validate_basic_code`); `provinces` may add items."""
    if not value:
        return FieldViolation(field, "required", "MISSING") if required else None
    problem = codes.validate_basic_code(value, provinces)  # the length first: then 12 characters
    return None if problem is None else FieldViolation(field, problem.message, problem.reason)


def enum_value(
    value: int, field: str, enum: EnumDescriptor, *, required: bool = False
) -> FieldViolation | None:
    """A number of the enum `enum`; its zero value (unspecified) only when not `required`."""
    if value not in enum.values_by_number:
        names = ", ".join(v.name for v in enum.values if v.number != 0)
        return FieldViolation(field, f"a known {enum.name}: one of {names}", "UNKNOWN")
    if required and value == 0:
        return FieldViolation(field, "required", "MISSING")
    return None


def id_number(
    id_type: int,
    value: str,
    field: str,
    provinces: Collection[str],
    *,
    today: date | None = None,
) -> FieldViolation | None:
    """An id number of the document `id_type` names (`ID_DOCUMENTS`), checked by its rules.

    For an id type outside the table only presence and the bound are judged here: the id
    type's own violation (`enum_value`) says why the request fails.
    """
    if not value:
        return FieldViolation(field, "required", "MISSING")
    if len(value) > MAX_ID_NUMBER:
        return FieldViolation(field, f"at most {MAX_ID_NUMBER} characters", "TOO_LONG")
    document = id_document(id_type)
    if document is None:
        return None
    problem = document.check(value, provinces, today)
    if problem is None:
        return None
    # The problem's message is left out: a USCC's quotes characters, and this may be a
    # person's number given with the wrong id type.
    return FieldViolation(field, f"not a valid {document.name}", problem.reason)


_INTEGER = re.compile(r"-?[0-9]{1,18}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PERSON_DOCUMENTS = tuple(d for d in ID_DOCUMENTS if d.id_type != application_pb2.ID_TYPE_USCC)


def form_value(
    field_type: str, value: str, field: str, provinces: Collection[str], max_length: int
) -> FieldViolation | None:
    """A required form value of a catalog form field type (`catalog.model.FIELD_TYPES`).

    `string` is free text of at most `max_length` characters; `date` an ISO calendar date
    `YYYY-MM-DD`; `region_code` a GB/T 2260 code at any level; `id_number` a person's number
    valid as one of the person documents (`ID_DOCUMENTS` but the USCC); `uscc` a 统一社会信用代码;
    `integer` ASCII digits with an optional minus; `boolean` `true` or `false`.
    """
    if not value:
        return FieldViolation(field, "required", "MISSING")
    if len(value) > max_length:
        return FieldViolation(field, f"at most {max_length} characters", "TOO_LONG")
    match field_type:
        case "string":
            return None
        case "date":
            try:
                ok = _DATE.fullmatch(value) is not None and bool(date.fromisoformat(value))
            except ValueError:
                ok = False
            return None if ok else FieldViolation(field, "a date YYYY-MM-DD", "BAD_DATE")
        case "region_code":
            return region_code(value, field, province=False)
        case "id_number":
            if any(d.check(value, provinces, None) is None for d in _PERSON_DOCUMENTS):
                return None
            return FieldViolation(field, "not a valid identity document number", "BAD_ID_NUMBER")
        case "uscc":
            return id_number(application_pb2.ID_TYPE_USCC, value, field, provinces)
        case "integer":
            if _INTEGER.fullmatch(value):
                return None
            return FieldViolation(field, "an integer of at most 18 digits", "BAD_INTEGER")
        case "boolean":
            if value in ("true", "false"):
                return None
            return FieldViolation(field, "true or false", "BAD_BOOLEAN")
    raise ValueError(f"no validator for form field type {field_type!r}")


def license_token(value: str, field: str, max_bytes: int) -> FieldViolation | None:
    """A required e-licence token of at most `max_bytes` UTF-8 bytes."""
    if not value:
        return FieldViolation(field, "required: a compact JWS", "TOKEN_EMPTY")
    if len(value) > max_bytes or len(value.encode("utf-8")) > max_bytes:
        return FieldViolation(field, f"at most {max_bytes} bytes", "TOKEN_TOO_LARGE")
    return None


# -- collecting them -------------------------------------------------------------------------


def found(*violations: FieldViolation | None) -> list[FieldViolation]:
    """The violations among validator results, in order."""
    return [v for v in violations if v is not None]


def raise_if_any(message: str, *violations: FieldViolation | None) -> None:
    """Raises `InvalidRequest` (INVALID_ARGUMENT) with every violation found, if any."""
    if violations.count(None) != len(violations):
        raise InvalidRequest(message, field_violations=found(*violations))
