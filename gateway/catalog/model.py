"""The catalog's plain data: national matters, catalog versions, provincial implementation lists.

Invariants:
- Everything here is immutable; a published version or list is never modified, only replaced.
- A `Matter.code` is a valid 12-character basic code whose type segment equals `Matter.type`.
- A `RegionEntry` maps one local code to one or more national codes (more than one = a merged
  local item, the 1:N shape); several entries may map to the same national code (N:1).
- A `Theme` (一件事) joins matters of the same version, each handled by the province that plays
  its member's role (转出地, 转入地, 户籍地…): its members form a DAG through `after`; its one
  form maps only onto form fields its members' matters have, with the same type, and covers
  every required one; a flow's licence type is a result of its source member's matter and the
  `license_type_code` of the material it fills, and the source comes before the receiver; a
  fetched licence comes from the province bound to a role some member plays. Every matter of a
  theme is handled across provinces (跨省通办). `catalog.documents` checks all of it.
"""

from __future__ import annotations

from collections.abc import Mapping
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
FIELD_TYPES = ("string", "date", "region_code", "id_number", "uscc", "integer", "boolean")
"""Types of a form field; each names the one validator its values pass."""
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
class FormField:
    """A field of a matter's application form, as the handling province names it."""

    name: str
    """The province-facing name, e.g. `sfzhm`."""
    type: str
    """One of `FIELD_TYPES`."""
    required: bool
    """Whether the matter needs it."""


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
    form_fields: tuple[FormField, ...] = ()
    """The application form's fields; empty when the catalog does not define them."""
    results: tuple[str, ...] = ()
    """Licence type codes of the e-licences the matter issues (审批结果)."""

    def material(self, material_id: str) -> Material | None:
        """The material with this id, if the matter has one."""
        for m in self.materials:
            if m.id == material_id:
                return m
        return None

    def form_field(self, name: str) -> FormField | None:
        """The form field with this name, if the matter has one."""
        for f in self.form_fields:
            if f.name == name:
                return f
        return None


ROLES: Mapping[str, str] = {
    "transfer_out": "转出地: where an insurance or fund account is moved from",
    "transfer_in": "转入地: where it is moved to; usually where the applicant files",
    "move_out": "迁出地: where a household or an enterprise is registered before moving",
    "move_in": "迁入地: where it is registered after moving",
    "hukou": "户籍地: where the person's household is registered",
    "residence": "居住地: where the person lives and files",
    "birth": "出生地: where a child was born",
    "insured": "参保地: where the person's social-insurance records are kept",
}
"""The closed vocabulary of member roles. At submission each role a theme uses is bound to one
province code; two roles may be bound to the same province."""


@dataclass(frozen=True, slots=True)
class ThemeMember:
    """One matter of a theme, handled by the province bound to `role`."""

    id: str
    """Identifier within the theme, e.g. `out`."""
    matter_code: str
    """The national basic code of the matter."""
    role: str
    """One of `ROLES`."""
    after: tuple[str, ...] = ()
    """Ids of the members that must finish before this one starts."""


@dataclass(frozen=True, slots=True)
class FieldMapping:
    """Where one theme form field goes in one member's form."""

    member: str
    """The member's id."""
    field: str
    """The name of the form field in the member's matter."""


@dataclass(frozen=True, slots=True)
class ThemeField:
    """A field of the theme's one form: filled once, sent to each member under its own name."""

    name: str
    """Name within the theme, e.g. `id_number`."""
    label: str
    """What the applicant sees, e.g. 公民身份号码."""
    type: str
    """One of `model.FIELD_TYPES`; the value is validated as that type."""
    required: bool
    """Whether the applicant must fill it."""
    maps: tuple[FieldMapping, ...]
    """The member fields it fills."""


@dataclass(frozen=True, slots=True)
class MaterialUse:
    """One member's material that a theme material stands for."""

    member: str
    """The member's id."""
    material_id: str
    """The material's id in the member's matter, e.g. `M01`."""


@dataclass(frozen=True, slots=True)
class ThemeMaterial:
    """A material supplied once and used by every member listed in `used_by`."""

    id: str
    """Identifier within the theme, e.g. `TM01`."""
    name: str
    """Name, e.g. 居民身份证."""
    used_by: tuple[MaterialUse, ...]
    """The member materials it stands for; they share one licence type (or none)."""
    license_type_code: str = ""
    """The e-licence type that can stand in for it; empty when none."""


@dataclass(frozen=True, slots=True)
class DataFlow:
    """A licence that reaches a member's material without the applicant (数据调用目录).

    Either `source` names an earlier member whose matter issues the licence, or `fetch_role`
    names the role of the province that issued it and from which it is fetched.
    """

    to: MaterialUse
    """The material the licence fills."""
    license_type_code: str
    """The licence type; equals the receiving material's `license_type_code`."""
    source: str = ""
    """The issuing member's id; empty for a fetched licence."""
    fetch_role: str = ""
    """The role of the issuing province for a fetched licence; empty for a member's output."""


@dataclass(frozen=True, slots=True)
class Theme:
    """One 一件事 of a catalog version."""

    code: str
    """Identifier within the catalog, 4 to 32 characters A–Z and 0–9."""
    name: str
    """The 一件事's name, e.g. 养老保险关系转移接续一件事."""
    description: str
    """What it does for the applicant, in a sentence or two."""
    promised_time_limit: TimeLimit
    """The promised time limit of the whole thing."""
    members: tuple[ThemeMember, ...]
    """The matters, in catalog order (not necessarily run order)."""
    form: tuple[ThemeField, ...] = ()
    """The one form."""
    materials: tuple[ThemeMaterial, ...] = ()
    """Materials supplied once for several members."""
    flows: tuple[DataFlow, ...] = ()
    """Licences that flow between members or are fetched."""
    synthetic: tuple[str, ...] = ()
    """Elements that are synthetic sample data."""

    def member(self, member_id: str) -> ThemeMember | None:
        """The member with this id, if the theme has one."""
        for m in self.members:
            if m.id == member_id:
                return m
        return None

    @property
    def roles(self) -> tuple[str, ...]:
        """The roles its members play, each once, in member order."""
        return tuple(dict.fromkeys(m.role for m in self.members))


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
    themes: dict[str, Theme] = field(default_factory=dict)
    """Themes (一件事) by code, in code order."""


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
