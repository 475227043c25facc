"""Reading catalog and implementation-list documents, reporting every problem with its place.

A document is JSON (see `standards/README.md`). Parsing never stops at the first problem: it
returns every violation with a JSON path (`matters[3].code`), so that a standards body or a
province can fix a file in one pass (`tongban catalog validate`).

Invariants:
- A parsed `CatalogDocument` satisfies every invariant of `catalog.model`; a document with any
  violation is not returned.
- Region lists are checked here for shape only; whether their rows can be routed depends on a
  catalog version and is decided in `catalog.validation`.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from gateway.catalog import codes
from gateway.catalog.model import (
    CROSS_REGION_MODES,
    FIELD_TYPES,
    SERVICE_OBJECTS,
    CatalogDocument,
    FormField,
    Material,
    Matter,
    RegionCatalogDocument,
    RegionEntry,
    Theme,
    version_key,
)
from gateway.catalog.problems import Parsed, Problems, time_limit
from gateway.catalog.theme_documents import parse_themes
from gateway.errors import FieldViolation

CATALOG_KIND = "tongban.catalog/v1"
REGION_CATALOG_KIND = "tongban.region-catalog/v1"
MAX_LOCAL_CODE_LENGTH = 128


def loads_json(text: str | bytes) -> Parsed[dict[str, Any]]:
    """Parses JSON text whose top level must be an object."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        return Parsed(None, (FieldViolation("", f"not valid JSON: {exc}", "BAD_JSON"),))
    if not isinstance(data, dict):
        return Parsed(None, (FieldViolation("", "the document must be a JSON object", "BAD_JSON"),))
    return Parsed(data, ())


def parse_catalog(data: Mapping[str, Any], provinces: Collection[str]) -> Parsed[CatalogDocument]:
    """Builds a catalog version from its JSON object, or reports every violation."""
    p = Problems()
    if data.get("kind") != CATALOG_KIND:
        p.add("kind", "WRONG_KIND", f"kind must be {CATALOG_KIND!r}")
    version = p.string(data, "version", "")
    if version:
        try:
            version_key(version)
        except ValueError as exc:
            p.add("version", "BAD_VERSION", str(exc))
    effective = _timestamp(p, data.get("effective_time"), "effective_time")
    publisher = p.string(data, "publisher", "")
    license_types = _license_types(p, data.get("license_types", {}))
    raw_matters = data.get("matters")
    matters: dict[str, Matter] = {}
    if not isinstance(raw_matters, list) or not raw_matters:
        p.add("matters", "MISSING", "matters must be a non-empty list")
        raw_matters = []
    unreadable: set[str] = set()  # codes of matters with violations: themes do not repeat them
    for i, raw in enumerate(raw_matters):
        matter = _matter(p, raw, f"matters[{i}].", provinces, license_types)
        if matter is None:
            if isinstance(raw, dict) and isinstance(raw.get("code"), str):
                unreadable.add(raw["code"])
            continue
        if matter.code in matters:
            p.add(
                f"matters[{i}].code", "DUPLICATE_CODE", f"matter code {matter.code} appears twice"
            )
            continue
        matters[matter.code] = matter
    themes: dict[str, Theme] = {}
    if "themes" in data:
        themes, theme_violations = parse_themes(data["themes"], matters, license_types, unreadable)
        p.items.extend(theme_violations)
    if p.items or effective is None:
        return Parsed(None, tuple(p.items))
    return Parsed(
        CatalogDocument(
            version=version,
            effective_time=effective,
            publisher=publisher,
            matters=dict(sorted(matters.items())),
            license_types=license_types,
            provenance=_text(data, "provenance"),
            themes=dict(sorted(themes.items())),
        ),
        (),
    )


REGION_CATALOG_KEYS = frozenset(
    {"kind", "region_code", "region_name", "dialect", "catalog_version", "provenance", "entries"}
)
"""The keys of an implementation list; any other is a mistake (`UNKNOWN_FIELD`)."""
REGION_ENTRY_KEYS = frozenset(
    {"local_code", "national_codes", "local_name", "agency_name", "agency_code", "cancel_date"}
)
"""The keys of one of its rows: a misspelt `cancel_date` would keep a row alive for ever."""


@dataclass(frozen=True)
class RegionCatalogReading:
    """An implementation list as far as it could be read."""

    document: RegionCatalogDocument
    """The list with the rows that could be read (all of them when `violations` is empty)."""
    rows: tuple[int, ...]
    """Each of those rows' index in the file, so later checks name the file's rows."""
    violations: tuple[FieldViolation, ...]
    """Every shape problem, with its JSON path."""


def read_region_catalog(
    data: Mapping[str, Any], provinces: Collection[str]
) -> RegionCatalogReading:
    """Reads an implementation list, keeping the rows that can be read beside every shape
    problem, so that a check of those rows can report in the same pass."""
    p = Problems()
    _unknown_keys(p, data, REGION_CATALOG_KEYS, "")
    if data.get("kind") != REGION_CATALOG_KIND:
        p.add("kind", "WRONG_KIND", f"kind must be {REGION_CATALOG_KIND!r}")
    region = p.string(data, "region_code", "")
    if region and not codes.is_province_code(region, provinces):
        p.add("region_code", "UNKNOWN_REGION", f"{region} is not a province-level GB/T 2260 code")
    raw_entries = data.get("entries")
    if not isinstance(raw_entries, list):
        p.add("entries", "MISSING", "entries must be a list")
        raw_entries = []
    entries: list[RegionEntry] = []
    rows: list[int] = []
    for i, raw in enumerate(raw_entries):
        entry = _entry(p, raw, f"entries[{i}].")
        if entry is not None:
            entries.append(entry)
            rows.append(i)
    document = RegionCatalogDocument(
        region_code=region,
        entries=tuple(entries),
        region_name=_text(data, "region_name"),
        dialect=_text(data, "dialect"),
        catalog_version=_text(data, "catalog_version"),
        provenance=_text(data, "provenance"),
    )
    return RegionCatalogReading(document, tuple(rows), tuple(p.items))


def parse_region_catalog(
    data: Mapping[str, Any], provinces: Collection[str]
) -> Parsed[RegionCatalogDocument]:
    """Builds an implementation list from its JSON object, or reports every shape violation."""
    reading = read_region_catalog(data, provinces)
    if reading.violations:
        return Parsed(None, reading.violations)
    return Parsed(reading.document, ())


def _unknown_keys(p: Problems, obj: Mapping[str, Any], known: Collection[str], path: str) -> None:
    where = "a row" if path else "the list"
    for key in obj:
        if key not in known:
            p.add(
                f"{path}{key}",
                "UNKNOWN_FIELD",
                f"{key!r} is not a field of {where} (known: {', '.join(sorted(known))})",
            )


def region_catalog_to_json(doc: RegionCatalogDocument) -> dict[str, Any]:
    """The JSON object of an implementation list (inverse of `parse_region_catalog`)."""
    return {
        "kind": REGION_CATALOG_KIND,
        "region_code": doc.region_code,
        "region_name": doc.region_name,
        "dialect": doc.dialect,
        "catalog_version": doc.catalog_version,
        "provenance": doc.provenance,
        "entries": [
            {
                "local_code": e.local_code,
                "national_codes": list(e.national_codes),
                "local_name": e.local_name,
                "agency_name": e.agency_name,
                "agency_code": e.agency_code,
                "cancel_date": e.cancel_date.isoformat() if e.cancel_date else None,
            }
            for e in doc.entries
        ],
    }


def _text(data: Mapping[str, Any], key: str) -> str:
    """An optional free-text field; JSON null is absent, not the string "None"."""
    value = data.get(key)
    return "" if value is None else str(value)


def _timestamp(p: Problems, value: object, path: str) -> datetime | None:
    if not isinstance(value, str):
        p.add(path, "MISSING", f"{path} must be an ISO 8601 timestamp with an offset")
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        p.add(path, "BAD_TIMESTAMP", f"{path} is not an ISO 8601 timestamp")
        return None
    if parsed.tzinfo is None:
        p.add(path, "BAD_TIMESTAMP", f"{path} must carry a UTC offset")
        return None
    return parsed


def _license_types(p: Problems, value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        p.add("license_types", "WRONG_TYPE", "license_types must be an object")
        return {}
    result: dict[str, str] = {}
    for code, name in value.items():
        if len(code) != 21 or codes.validate_uscc(code[:18]) or not _ascii_digits(code[18:]):
            p.add(
                f"license_types.{code}",
                "BAD_LICENSE_TYPE_CODE",
                "a licence type code is an 18-character USCC plus a 3-digit sequence",
            )
        result[str(code)] = str(name)
    return result


def _ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()  # str.isdigit alone accepts full-width digits


def _str_list(p: Problems, value: object, path: str, allowed: Collection[str]) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        p.add(path, "WRONG_TYPE", f"{path} must be a list of strings")
        return ()
    for j, v in enumerate(value):
        if v not in allowed:
            p.add(f"{path}[{j}]", "UNKNOWN_VALUE", f"{v!r} is not one of {', '.join(allowed)}")
    if len(set(value)) != len(value):
        p.add(path, "DUPLICATE_VALUE", f"{path} lists a value twice")
    return tuple(value)


def _matter(
    p: Problems,
    raw: object,
    path: str,
    provinces: Collection[str],
    license_types: Mapping[str, str],
) -> Matter | None:
    if not isinstance(raw, dict):
        p.add(path.rstrip("."), "WRONG_TYPE", "a matter must be an object")
        return None
    before = len(p.items)
    code = p.string(raw, "code", path, max_length=12)
    mtype = p.string(raw, "type", path, max_length=2)
    if code:
        problem = codes.validate_basic_code(code, provinces)
        if problem is not None:
            p.add(f"{path}code", problem.reason, problem.message)
        elif mtype and code[2:4] != mtype:
            p.add(
                f"{path}type", "TYPE_MISMATCH", f"type {mtype} differs from the code's {code[2:4]}"
            )
    materials: list[Material] = []
    raw_materials = raw.get("materials", [])
    if not isinstance(raw_materials, list):
        p.add(f"{path}materials", "WRONG_TYPE", "materials must be a list")
        raw_materials = []
    seen: set[str] = set()
    for j, rm in enumerate(raw_materials):
        mpath = f"{path}materials[{j}]."
        if not isinstance(rm, dict):
            p.add(mpath.rstrip("."), "WRONG_TYPE", "a material must be an object")
            continue
        mid = p.string(rm, "id", mpath, max_length=16)
        if mid and mid in seen:
            p.add(f"{mpath}id", "DUPLICATE_MATERIAL", f"material id {mid} appears twice")
        seen.add(mid)
        ltype = p.string(rm, "license_type_code", mpath, required=False, max_length=21)
        if ltype and ltype not in license_types:
            p.add(
                f"{mpath}license_type_code",
                "UNKNOWN_LICENSE_TYPE",
                f"{ltype} is not listed in license_types",
            )
        required = rm.get("required", True)
        if not isinstance(required, bool):
            p.add(f"{mpath}required", "WRONG_TYPE", "required must be true or false")
        materials.append(Material(mid, p.string(rm, "name", mpath), required is not False, ltype))
    form_fields = _form_fields(p, raw.get("form_fields", []), f"{path}form_fields")
    results = raw.get("results", [])
    if not isinstance(results, list) or not all(isinstance(r, str) for r in results):
        p.add(f"{path}results", "WRONG_TYPE", "results must be a list of licence type codes")
        results = []
    for j, r in enumerate(results):
        if r not in license_types:
            p.add(f"{path}results[{j}]", "UNKNOWN_LICENSE_TYPE", f"{r} is not in license_types")
    before_limits = len(p.items)
    legal = time_limit(p, raw.get("legal_time_limit"), f"{path}legal_time_limit")
    promised = time_limit(p, raw.get("promised_time_limit"), f"{path}promised_time_limit")
    limits_read = len(p.items) == before_limits  # a broken limit is not compared: reported once
    matter = Matter(
        code=code,
        name=p.string(raw, "name", path),
        type=mtype,
        competent_department=p.string(raw, "competent_department", path, required=False),
        cross_region_modes=_str_list(
            p, raw.get("cross_region_modes", []), f"{path}cross_region_modes", CROSS_REGION_MODES
        ),
        legal_time_limit=legal,
        promised_time_limit=promised,
        service_objects=_str_list(
            p, raw.get("service_objects", []), f"{path}service_objects", SERVICE_OBJECTS
        ),
        materials=tuple(materials),
        synthetic=tuple(str(s) for s in raw.get("synthetic", []) if isinstance(s, str)),
        form_fields=form_fields,
        results=tuple(results),
    )
    if limits_read and promised.unit == legal.unit and promised.value > legal.value:
        p.add(
            f"{path}promised_time_limit",
            "PROMISE_EXCEEDS_LAW",
            "the promised time limit is longer than the legal one",
        )
    return matter if len(p.items) == before else None


def _form_fields(p: Problems, value: object, path: str) -> tuple[FormField, ...]:
    if not isinstance(value, list):
        p.add(path, "WRONG_TYPE", "form_fields must be a list")
        return ()
    fields: list[FormField] = []
    seen: set[str] = set()
    for j, raw in enumerate(value):
        fpath = f"{path}[{j}]."
        if not isinstance(raw, dict):
            p.add(f"{path}[{j}]", "WRONG_TYPE", "a form field must be an object")
            continue
        name = p.string(raw, "name", fpath, max_length=64)
        if name and name in seen:
            p.add(f"{fpath}name", "DUPLICATE_FIELD", f"form field {name} appears twice")
        seen.add(name)
        ftype = p.string(raw, "type", fpath, max_length=32)
        if ftype and ftype not in FIELD_TYPES:
            p.add(
                f"{fpath}type", "UNKNOWN_VALUE", f"{ftype!r} is not one of {', '.join(FIELD_TYPES)}"
            )
        required = raw.get("required", True)
        if not isinstance(required, bool):
            p.add(f"{fpath}required", "WRONG_TYPE", "required must be true or false")
        fields.append(FormField(name, ftype, required is not False))
    return tuple(fields)


def _entry(p: Problems, raw: object, path: str) -> RegionEntry | None:
    if not isinstance(raw, dict):
        p.add(path.rstrip("."), "WRONG_TYPE", "an entry must be an object")
        return None
    before = len(p.items)
    if not raw.keys() <= REGION_ENTRY_KEYS:
        _unknown_keys(p, raw, REGION_ENTRY_KEYS, path)
    local = p.string(raw, "local_code", path, max_length=MAX_LOCAL_CODE_LENGTH)
    if local and (local != local.strip() or not local.isprintable()):
        p.add(f"{path}local_code", "BAD_LOCAL_CODE", "local_code has spaces or control characters")
    nationals = raw.get("national_codes")
    if (
        not isinstance(nationals, list)
        or not nationals
        or not all(isinstance(n, str) for n in nationals)
    ):
        p.add(f"{path}national_codes", "MISSING", "national_codes must be a non-empty list")
        nationals = []
    elif len(set(nationals)) != len(nationals):
        p.add(f"{path}national_codes", "DUPLICATE_VALUE", "national_codes lists a code twice")
    cancel: date | None = None
    raw_cancel = raw.get("cancel_date")
    if raw_cancel not in (None, ""):
        try:
            cancel = date.fromisoformat(str(raw_cancel))
        except ValueError:
            p.add(f"{path}cancel_date", "BAD_DATE", "cancel_date must be YYYY-MM-DD")
    entry = RegionEntry(
        local_code=local,
        national_codes=tuple(nationals),
        local_name=p.string(raw, "local_name", path),
        agency_name=p.string(raw, "agency_name", path, required=False),
        agency_code=p.string(raw, "agency_code", path, required=False, max_length=64),
        cancel_date=cancel,
    )
    return entry if len(p.items) == before else None
