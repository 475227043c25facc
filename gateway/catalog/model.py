"""The catalog's plain data: national matters, catalog versions, provincial implementation lists.

Invariants:
- Everything here is immutable; a published version or list is never modified, only replaced.
- A `Matter.code` is a valid 12-character basic code whose type segment equals `Matter.type`.
- A `RegionEntry` maps one local code to one or more national codes (more than one = a merged
  local item, the 1:N shape); several entries may map to the same national code (N:1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

CROSS_REGION_MODES = ("FULLY_ONLINE", "PROXY_RECEIVE", "MULTI_REGION")
TIME_LIMIT_UNITS = ("WORKING_DAYS", "NATURAL_DAYS")
SERVICE_OBJECTS = (
    "NATURAL_PERSON",
    "ENTERPRISE_LEGAL_PERSON",
    "PUBLIC_INSTITUTION",
    "SOCIAL_ORGANIZATION",
    "NON_LEGAL_PERSON_ENTERPRISE",
    "GOVERNMENT_AGENCY",
    "OTHER_ORGANIZATION",
)
DIALECTS = ("NATIONAL", "HYPHENATED", "LEGACY_POWER", "LETTER_TYPE", "POWER16")


@dataclass(frozen=True, slots=True)
class TimeLimit:
    """A time limit (办结时限)."""

    value: int
    """Number of days."""
    unit: str
    """`WORKING_DAYS` or `NATURAL_DAYS`."""


@dataclass(frozen=True, slots=True)
class Material:
    """A material (申请材料) a matter requires."""

    id: str
    """Identifier within the matter, e.g. `M01`."""
    name: str
    """Name, e.g. 居民身份证."""
    required: bool
    """Whether the applicant must supply it."""
    license_type_code: str = ""
    """The e-licence type whose verified licence can stand in for it; empty when none."""


@dataclass(frozen=True, slots=True)
class Matter:
    """One national matter with its elements."""

    code: str
    """12-character basic code (基本编码)."""
    name: str
    """事项名称."""
    type: str
    """Two-digit 事项类型, e.g. `01`."""
    competent_department: str
    """The competent national department."""
    cross_region_modes: tuple[str, ...]
    """跨省通办 modes; empty when the matter is not handled across provinces."""
    legal_time_limit: TimeLimit
    """法定办结时限."""
    promised_time_limit: TimeLimit
    """承诺办结时限."""
    service_objects: tuple[str, ...]
    """服务对象."""
    materials: tuple[Material, ...]
    """申请材料, in catalog order."""
    synthetic: tuple[str, ...] = ()
    """Elements that are synthetic sample data."""

    def material(self, material_id: str) -> Material | None:
        """The material with this id, if the matter has one."""
        for m in self.materials:
            if m.id == material_id:
                return m
        return None


@dataclass(frozen=True)
class CatalogDocument:
    """One version of the national catalog, as published."""

    version: str
    """`YYYY.N`."""
    effective_time: datetime
    """When it comes into force (timezone-aware)."""
    publisher: str
    """The publishing standards body."""
    matters: dict[str, Matter]
    """Matters by code, in code order."""
    license_types: dict[str, str] = field(default_factory=dict)
    """Licence type code → name, for every type a material references."""
    provenance: str = ""
    """What is real and what is synthetic in the document."""


@dataclass(frozen=True, slots=True)
class RegionEntry:
    """One row of a province's implementation list."""

    local_code: str
    """The province's own code."""
    national_codes: tuple[str, ...]
    """National basic codes it implements; more than one for a merged local item."""
    local_name: str
    """The province's name for the matter."""
    agency_name: str
    """The implementing agency."""
    agency_code: str
    """The agency's USCC, or a legacy or dirty code."""
    cancel_date: date | None = None
    """Retired after this day (计划取消日期)."""

    def retired_on(self, day: date) -> bool:
        """Whether the row is retired on `day`."""
        return self.cancel_date is not None and day > self.cancel_date


@dataclass(frozen=True)
class RegionCatalogDocument:
    """A province's implementation list, as published."""

    region_code: str
    """The province's GB/T 2260 code."""
    entries: tuple[RegionEntry, ...]
    """The rows, in list order."""
    region_name: str = ""
    """The province's name."""
    dialect: str = ""
    """The list's main local-code dialect."""
    catalog_version: str = ""
    """The catalog version the list was written against."""
    provenance: str = ""
    """What is real and what is synthetic."""


def version_key(version: str) -> tuple[int, ...]:
    """Sort key of a `YYYY.N` version; raises ValueError for any other form."""
    parts = version.split(".")
    if len(parts) != 2 or not all(p.isdigit() and p.isascii() for p in parts) or len(parts[0]) != 4:
        raise ValueError(f"version {version!r} is not of the form YYYY.N")
    return (int(parts[0]), int(parts[1]))
