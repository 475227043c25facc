"""Conversions between the catalog's plain data and the `gateway.api.v1` messages."""

from __future__ import annotations

from datetime import date, datetime

from gateway.api.v1 import catalog_pb2
from gateway.catalog import fields
from gateway.catalog.diff import CatalogDiff, RegionImpact
from gateway.catalog.documents import RegionCatalogReading
from gateway.catalog.model import (
    MaterialUse,
    Matter,
    RegionCatalogDocument,
    RegionEntry,
    Theme,
    TimeLimit,
)
from gateway.catalog.region_index import RegionIndex
from gateway.catalog.resolution import CatalogSnapshot, Resolution, Shape, VersionRecord
from gateway.errors import FieldViolation, InvalidRequest
from gateway.times import timestamp

MODES = {
    "FULLY_ONLINE": catalog_pb2.CROSS_REGION_MODE_FULLY_ONLINE,
    "PROXY_RECEIVE": catalog_pb2.CROSS_REGION_MODE_PROXY_RECEIVE,
    "MULTI_REGION": catalog_pb2.CROSS_REGION_MODE_MULTI_REGION,
}
MODE_NAMES = {v: k for k, v in MODES.items()}
UNITS = {
    "WORKING_DAYS": catalog_pb2.TIME_LIMIT_UNIT_WORKING_DAYS,
    "NATURAL_DAYS": catalog_pb2.TIME_LIMIT_UNIT_NATURAL_DAYS,
}


def time_limit(limit: TimeLimit) -> catalog_pb2.TimeLimit:
    return catalog_pb2.TimeLimit(value=limit.value, unit=UNITS[limit.unit])


def matter(m: Matter, version: str) -> catalog_pb2.Matter:
    """The API form of a matter at a version."""
    return catalog_pb2.Matter(
        name=f"catalogVersions/{version}/matters/{m.code}",
        code=m.code,
        display_name=m.name,
        # enum numbers equal the standard's two-digit codes
        type=catalog_pb2.MatterType.ValueType(int(m.type)),
        competent_department=m.competent_department,
        cross_region_modes=[MODES[x] for x in m.cross_region_modes],
        legal_time_limit=time_limit(m.legal_time_limit),
        promised_time_limit=time_limit(m.promised_time_limit),
        service_objects=list(m.service_objects),
        materials=[
            catalog_pb2.MaterialRequirement(
                id=x.id,
                display_name=x.name,
                required=x.required,
                license_type_code=x.license_type_code,
            )
            for x in m.materials
        ],
        synthetic_elements=list(m.synthetic),
        form_fields=[
            catalog_pb2.MatterFormField(name=f.name, type=f.type, required=f.required)
            for f in m.form_fields
        ],
        result_license_type_codes=list(m.results),
    )


def _use(u: MaterialUse) -> catalog_pb2.MaterialUse:
    return catalog_pb2.MaterialUse(member_id=u.member, material_id=u.material_id)


def theme(t: Theme, version: str) -> catalog_pb2.Theme:
    """The API form of a theme at a version."""
    return catalog_pb2.Theme(
        name=f"catalogVersions/{version}/themes/{t.code}",
        code=t.code,
        display_name=t.name,
        description=t.description,
        promised_time_limit=time_limit(t.promised_time_limit),
        members=[
            catalog_pb2.ThemeMember(
                id=m.id, matter_code=m.matter_code, role=m.role, after_member_ids=list(m.after)
            )
            for m in t.members
        ],
        form_fields=[
            catalog_pb2.ThemeFormField(
                name=f.name,
                display_name=f.label,
                type=f.type,
                required=f.required,
                mappings=[
                    catalog_pb2.FieldMapping(member_id=x.member, field=x.field) for x in f.maps
                ],
            )
            for f in t.form
        ],
        materials=[
            catalog_pb2.ThemeMaterial(
                id=x.id,
                display_name=x.name,
                license_type_code=x.license_type_code,
                used_by=[_use(u) for u in x.used_by],
            )
            for x in t.materials
        ],
        data_flows=[
            catalog_pb2.DataFlow(
                to=_use(f.to),
                license_type_code=f.license_type_code,
                source_member_id=f.source,
                fetch_role=f.fetch_role,
            )
            for f in t.flows
        ],
        synthetic_elements=list(t.synthetic),
    )


def catalog_version(
    record: VersionRecord, snapshot: CatalogSnapshot, now: datetime
) -> catalog_pb2.CatalogVersion:
    """The API form of a version, with its state at `now`."""
    doc = record.document
    current = snapshot.current(now)
    if doc.effective_time > now:
        state = catalog_pb2.CATALOG_VERSION_STATE_SCHEDULED
    elif current is not None and current.document.version == doc.version:
        state = catalog_pb2.CATALOG_VERSION_STATE_CURRENT
    else:
        state = catalog_pb2.CATALOG_VERSION_STATE_SUPERSEDED
    return catalog_pb2.CatalogVersion(
        name=f"catalogVersions/{doc.version}",
        version=doc.version,
        effective_time=timestamp(doc.effective_time),
        publish_time=timestamp(record.publish_time),
        publisher=doc.publisher,
        matter_count=len(doc.matters),
        content_digest=record.digest,
        state=state,
        theme_count=len(doc.themes),
    )


def diff(d: CatalogDiff) -> catalog_pb2.CatalogDiff:
    return catalog_pb2.CatalogDiff(
        from_version=d.from_version,
        to_version=d.to_version,
        added_matter_codes=list(d.added),
        removed_matter_codes=list(d.removed),
        changed_matters=[
            catalog_pb2.MatterChange(code=code, changed_elements=list(elements))
            for code, elements in d.changed
        ],
        added_theme_codes=list(d.themes_added),
        removed_theme_codes=list(d.themes_removed),
        changed_themes=[
            catalog_pb2.ThemeChange(code=code, changed_elements=list(elements))
            for code, elements in d.themes_changed
        ],
    )


def impacts(items: tuple[RegionImpact, ...]) -> list[catalog_pb2.RegionImpact]:
    return [
        catalog_pb2.RegionImpact(
            region_code=i.region_code,
            removed_matter_codes=list(i.removed),
            changed_matter_codes=list(i.changed),
        )
        for i in items
    ]


_MATTERS: dict[tuple[int, str], tuple[Matter, bytes]] = {}
"""(id of a matter, version) → (the matter, its message serialized). The entry holds the matter,
so its id cannot be reused while cached. Building a matter's message is the costly part of
answering a resolution, so it is built once; merging its bytes into a response is cheaper than
copying a message."""
_MATTERS_MAX = 100_000


def matter_bytes(m: Matter, version: str) -> bytes:
    """`matter(m, version)` serialized, built once per matter and version."""
    found = _MATTERS.get((id(m), version))
    if found is not None and found[0] is m:
        return found[1]
    if len(_MATTERS) >= _MATTERS_MAX:
        _MATTERS.clear()
    data = matter(m, version).SerializeToString()
    _MATTERS[(id(m), version)] = (m, data)
    return data


_SHAPES = {s: catalog_pb2.MappingShape.ValueType(s.value) for s in Shape}


def resolved(r: Resolution) -> catalog_pb2.ResolvedMatter:
    """The API form of a resolution (one copy of the matter, no entry built)."""
    region_code, matter, shape, version, index, row = r
    out = catalog_pb2.ResolvedMatter(region_code=region_code, shape=_SHAPES[shape])
    out.local_code, out.local_name, out.agency_name = index.row_names(row)
    out.matter.MergeFromString(matter_bytes(matter, version))
    out.catalog_version = version
    return out


def region_catalog(index: RegionIndex) -> catalog_pb2.RegionCatalog:
    doc = index.document
    return catalog_pb2.RegionCatalog(
        name=f"regions/{doc.region_code}/catalog",
        entries=[
            catalog_pb2.RegionCatalogEntry(
                local_code=e.local_code,
                national_codes=list(e.national_codes),
                local_name=e.local_name,
                agency_name=e.agency_name,
                agency_code=e.agency_code,
                cancel_date=e.cancel_date.isoformat() if e.cancel_date else "",
            )
            for e in doc.entries
        ],
        catalog_version=doc.catalog_version,
        publish_time=timestamp(index.publish_time),
        content_digest=index.digest,
    )


MAX_NATIONAL_CODES_PER_ROW = 100
"""National matters one local code may stand for (an N:1 row)."""
MAX_NATIONAL_CODE = 12
"""A national basic code's length; longer ones are refused before any lookup."""
MAX_ROW_TEXT = 200
"""Longest name, agency or date text of a list row."""


def region_document(msg: catalog_pb2.RegionCatalog) -> RegionCatalogReading:
    """The plain form of a published list, as far as it can be read: the readable rows with
    their indexes, and a violation for every malformed field. A name that does not name a
    province raises at once (with every violation): no row can be checked without it."""
    prefix, _, rest = msg.name.partition("/")
    region_code, _, suffix = rest.partition("/")
    violations: list[FieldViolation] = []
    if prefix != "regions" or suffix != "catalog" or not region_code:
        violations.append(
            FieldViolation(
                "region_catalog.name", "must be regions/{region_code}/catalog", "BAD_NAME"
            )
        )
    else:
        bad_region = fields.region_code(region_code, "region_catalog.name")
        if bad_region is not None:
            violations.append(bad_region)
    named_badly = bool(violations)
    entries = []
    rows = []
    for i, e in enumerate(msg.entries):
        before = len(violations)
        path = f"region_catalog.entries[{i}]"
        if not e.local_code or len(e.local_code) > 128 or not e.local_code.isprintable():
            violations.append(
                FieldViolation(
                    f"{path}.local_code", "1 to 128 printable characters", "BAD_LOCAL_CODE"
                )
            )
        if not e.national_codes:
            violations.append(
                FieldViolation(f"{path}.national_codes", "at least one national code", "MISSING")
            )
        elif len(e.national_codes) > MAX_NATIONAL_CODES_PER_ROW:
            violations.append(
                FieldViolation(
                    f"{path}.national_codes", f"at most {MAX_NATIONAL_CODES_PER_ROW}", "TOO_MANY"
                )
            )
        elif any(len(code) > MAX_NATIONAL_CODE for code in e.national_codes):
            # Bounded only: whether each is a known national code is the list's validation.
            violations += fields.found(
                *(
                    fields.text(
                        code, f"{path}.national_codes[{j}]", MAX_NATIONAL_CODE, printable=False
                    )
                    for j, code in enumerate(e.national_codes)
                )
            )
        for name in ("local_name", "agency_name", "agency_code", "cancel_date"):
            if len(getattr(e, name)) > MAX_ROW_TEXT:
                violations.append(
                    FieldViolation(
                        f"{path}.{name}", f"at most {MAX_ROW_TEXT} characters", "TOO_LONG"
                    )
                )
        cancel = None
        if e.cancel_date:
            try:
                cancel = date.fromisoformat(e.cancel_date)
            except ValueError:
                violations.append(
                    FieldViolation(f"{path}.cancel_date", "must be YYYY-MM-DD", "BAD_DATE")
                )
        if len(violations) > before:
            continue
        rows.append(i)
        entries.append(
            RegionEntry(
                e.local_code,
                tuple(e.national_codes),
                e.local_name,
                e.agency_name,
                e.agency_code,
                cancel,
            )
        )
    if named_badly:
        raise InvalidRequest(
            f"{len(violations)} field(s) of the list are malformed", field_violations=violations
        )
    return RegionCatalogReading(
        RegionCatalogDocument(region_code, tuple(entries)), tuple(rows), tuple(violations)
    )
