"""Reading the themes (一件事) of a catalog document, reporting every problem with its place.

A theme refers to the matters of its own version, so it is read after them: `parse_themes`
takes the version's parsed matters and licence types and checks every invariant that
`catalog.model` states for a `Theme`, with a JSON path for each problem
(`themes[2].members[1].matter_code`). Matters that had problems of their own are skipped
silently: their problems are already reported where they are.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from gateway.catalog.model import (
    FIELD_TYPES,
    ROLES,
    DataFlow,
    FieldMapping,
    MaterialUse,
    Matter,
    Theme,
    ThemeField,
    ThemeMaterial,
    ThemeMember,
)
from gateway.catalog.problems import Problems, time_limit
from gateway.errors import FieldViolation

THEME_CODE = re.compile(r"[A-Z0-9]{4,32}")
"""A theme code: 4 to 32 characters A–Z and 0–9, so that it sits in a resource name as is."""
LOCAL_ID = re.compile(r"[A-Za-z0-9_]{1,32}")
"""A member, form-field or material id within a theme."""
MAX_DESCRIPTION_LENGTH = 1000


def parse_themes(
    value: object,
    matters: Mapping[str, Matter],
    license_types: Mapping[str, str],
    unreadable: Collection[str] = (),
) -> tuple[dict[str, Theme], list[FieldViolation]]:
    """The themes by code when they have no problem, and every problem found."""
    p = Problems()
    if not isinstance(value, list):
        p.add("themes", "WRONG_TYPE", "themes must be a list")
        return {}, p.items
    themes: dict[str, Theme] = {}
    for i, raw in enumerate(value):
        reader = _ThemeReader(p, f"themes[{i}].", matters, license_types, unreadable)
        theme = reader.theme(raw)
        if theme is None:
            continue
        if theme.code in themes:
            p.add(f"themes[{i}].code", "DUPLICATE_CODE", f"theme code {theme.code} appears twice")
            continue
        themes[theme.code] = theme
    return (themes if not p.items else {}), p.items


class _ThemeReader:
    """Reads one theme; `members` holds the readable members' matters, by member id."""

    def __init__(
        self,
        p: Problems,
        path: str,
        matters: Mapping[str, Matter],
        license_types: Mapping[str, str],
        unreadable: Collection[str],
    ) -> None:
        self.p = p
        self.path = path
        self.matters = matters
        self.license_types = license_types
        self.unreadable = unreadable
        self.ids: set[str] = set()
        self.members: dict[str, Matter] = {}

    def theme(self, raw: object) -> Theme | None:
        p, path = self.p, self.path
        if not isinstance(raw, dict):
            p.add(path.rstrip("."), "WRONG_TYPE", "a theme must be an object")
            return None
        before = len(p.items)
        code = p.string(raw, "code", path, max_length=32)
        if code and not THEME_CODE.fullmatch(code):
            p.add(f"{path}code", "BAD_THEME_CODE", "a theme code is 4 to 32 characters A-Z, 0-9")
        members = self._members(raw.get("members"))
        order = _order(members)
        if isinstance(order, list):
            p.add(
                f"{path}members[{order[0]}].after",
                "ORDER_CYCLE",
                "the order has a cycle: " + " → ".join(members[j].id for j in order),
            )
            order = {}
        theme = Theme(
            code=code,
            name=p.string(raw, "name", path),
            description=p.string(raw, "description", path, max_length=MAX_DESCRIPTION_LENGTH),
            promised_time_limit=time_limit(
                p, raw.get("promised_time_limit"), f"{path}promised_time_limit"
            ),
            members=members,
            form=self._form(raw.get("form", [])),
            materials=self._materials(raw.get("materials", [])),
            flows=self._flows(raw.get("flows", []), members, order),
            synthetic=tuple(str(s) for s in raw.get("synthetic", []) if isinstance(s, str)),
        )
        if len(p.items) == before:
            self._coverage(theme)
        return theme if len(p.items) == before else None

    def _coverage(self, theme: Theme) -> None:
        """Every required material of every member is a theme material or a flow's: else no
        bundle of the theme could ever be submitted complete."""
        covered = {(u.member, u.material_id) for m in theme.materials for u in m.used_by}
        covered |= {(f.to.member, f.to.material_id) for f in theme.flows}
        for j, member in enumerate(theme.members):
            matter = self.matters.get(member.matter_code)
            for material in matter.materials if matter else ():
                if material.required and (member.id, material.id) not in covered:
                    self.p.add(
                        f"{self.path}members[{j}]",
                        "MATERIAL_NOT_COVERED",
                        f"required material {material.id} ({material.name}) of member "
                        f"{member.id} is neither a theme material nor a flow's",
                    )

    def _list(self, value: object, key: str) -> list[tuple[str, dict[str, Any]]]:
        """(path prefix, object) of each item of a list of objects; reports what is not."""
        if not isinstance(value, list):
            self.p.add(f"{self.path}{key}", "WRONG_TYPE", f"{key} must be a list")
            return []
        items = []
        for j, raw in enumerate(value):
            if isinstance(raw, dict):
                items.append((f"{self.path}{key}[{j}].", raw))
            else:
                self.p.add(f"{self.path}{key}[{j}]", "WRONG_TYPE", "an item must be an object")
        return items

    def _id(self, raw: Mapping[str, Any], key: str, path: str, seen: set[str]) -> str:
        value = self.p.string(raw, key, path, max_length=32)
        if value and not LOCAL_ID.fullmatch(value):
            self.p.add(f"{path}{key}", "BAD_ID", f"{key} is 1 to 32 characters A-Z, a-z, 0-9, _")
        elif value in seen:
            self.p.add(f"{path}{key}", "DUPLICATE_ID", f"{value} appears twice")
        seen.add(value)
        return value

    def _member_ref(self, raw: Mapping[str, Any], key: str, path: str) -> str:
        """A reference to a member: reported when it names none."""
        ref = self.p.string(raw, key, path, max_length=32)
        if ref and ref not in self.ids:
            self.p.add(f"{path}{key}", "UNKNOWN_MEMBER", f"the theme has no member {ref}")
        return ref

    def _members(self, value: object) -> tuple[ThemeMember, ...]:
        p = self.p
        if not isinstance(value, list) or not value:
            p.add(f"{self.path}members", "MISSING", "members must be a non-empty list")
            return ()
        items = self._list(value, "members")
        seen: set[str] = set()
        ids = [self._id(raw, "id", mpath, seen) for mpath, raw in items]
        self.ids = set(ids)
        members = []
        for (mpath, raw), member_id in zip(items, ids, strict=True):
            code = p.string(raw, "matter_code", mpath, max_length=12)
            matter = self.matters.get(code)
            if code and matter is None and code not in self.unreadable:
                p.add(f"{mpath}matter_code", "UNKNOWN_MATTER", f"the version has no matter {code}")
            elif matter is not None and not matter.cross_region_modes:
                p.add(
                    f"{mpath}matter_code",
                    "NOT_CROSS_REGION",
                    f"matter {code} is not handled across provinces (跨省通办)",
                )
            if matter is not None:
                self.members[member_id] = matter
            role = p.string(raw, "role", mpath, max_length=32)
            if role and role not in ROLES:
                p.add(f"{mpath}role", "UNKNOWN_ROLE", f"{role!r} is not one of {', '.join(ROLES)}")
            after = raw.get("after", [])
            if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
                p.add(f"{mpath}after", "WRONG_TYPE", "after must be a list of member ids")
                after = []
            for k, a in enumerate(after):
                if a not in self.ids:
                    p.add(f"{mpath}after[{k}]", "UNKNOWN_MEMBER", f"the theme has no member {a}")
                elif a == member_id:
                    p.add(f"{mpath}after[{k}]", "ORDER_CYCLE", f"member {a} waits for itself")
            members.append(
                ThemeMember(member_id, code, role, tuple(a for a in after if a != member_id))
            )
        return tuple(members)

    def _form(self, value: object) -> tuple[ThemeField, ...]:
        p = self.p
        fields = []
        seen: set[str] = set()
        covered: set[tuple[str, str]] = set()
        faulty: set[str] = set()  # members with a bad mapping: their coverage is not judged
        for fpath, raw in self._list(value, "form"):
            name = self._id(raw, "name", fpath, seen)
            ftype = p.string(raw, "type", fpath, max_length=32)
            if ftype and ftype not in FIELD_TYPES:
                p.add(f"{fpath}type", "UNKNOWN_VALUE", f"{ftype!r} is not one of {FIELD_TYPES}")
            required = raw.get("required", True)
            if not isinstance(required, bool):
                p.add(f"{fpath}required", "WRONG_TYPE", "required must be true or false")
            maps = []
            for mpath, rm in self._list(raw.get("maps"), f"{fpath[len(self.path) :]}maps"):
                member = self._member_ref(rm, "member", mpath)
                target = p.string(rm, "field", mpath, max_length=64)
                maps.append(FieldMapping(member, target))
                matter = self.members.get(member)
                if matter is None or not target:
                    faulty.add(member)
                    continue
                found = matter.form_field(target)
                if found is None:
                    faulty.add(member)
                    p.add(
                        f"{mpath}field",
                        "UNKNOWN_FIELD",
                        f"matter {matter.code} of member {member} has no form field {target}",
                    )
                elif ftype in FIELD_TYPES and found.type != ftype:
                    p.add(
                        f"{mpath}field",
                        "FIELD_TYPE_MISMATCH",
                        f"{member}.{target} is {found.type}, the theme field is {ftype}",
                    )
                elif (member, target) in covered:
                    p.add(
                        f"{mpath}field", "FIELD_MAPPED_TWICE", f"{member}.{target} is filled twice"
                    )
                covered.add((member, target))
            fields.append(
                ThemeField(
                    name, p.string(raw, "label", fpath), ftype, required is not False, tuple(maps)
                )
            )
        faulty.update(m for m in self.ids if m not in self.members)
        for member_id, matter in self.members.items():
            if member_id in faulty:
                continue
            for f in matter.form_fields:
                if f.required and (member_id, f.name) not in covered:
                    p.add(
                        f"{self.path}form",
                        "UNMAPPED_FIELD",
                        f"no theme field fills the required field {f.name} of member {member_id}",
                    )
        return tuple(fields)

    def _material_use(self, raw: Mapping[str, Any], path: str) -> tuple[MaterialUse, str | None]:
        """The use, and its material's licence type (`None` when it cannot be known)."""
        member = self._member_ref(raw, "member", path)
        material_id = self.p.string(raw, "material_id", path, max_length=16)
        matter = self.members.get(member)
        if matter is None or not material_id:
            return MaterialUse(member, material_id), None
        material = matter.material(material_id)
        if material is None:
            self.p.add(
                f"{path}material_id",
                "UNKNOWN_MATERIAL",
                f"matter {matter.code} of member {member} has no material {material_id}",
            )
            return MaterialUse(member, material_id), None
        return MaterialUse(member, material_id), material.license_type_code

    def _license_type(self, raw: Mapping[str, Any], path: str, *, required: bool) -> str:
        code = self.p.string(raw, "license_type_code", path, required=required, max_length=21)
        if code and code not in self.license_types:
            self.p.add(
                f"{path}license_type_code",
                "UNKNOWN_LICENSE_TYPE",
                f"{code} is not in license_types",
            )
            return ""  # reported once: not compared with the materials' types as well
        return code

    def _materials(self, value: object) -> tuple[ThemeMaterial, ...]:
        p = self.p
        materials = []
        seen: set[str] = set()
        for tpath, raw in self._list(value, "materials"):
            material_id = self._id(raw, "id", tpath, seen)
            ltype = self._license_type(raw, tpath, required=False)
            uses = []
            for upath, ru in self._list(raw.get("used_by"), f"{tpath[len(self.path) :]}used_by"):
                use, use_type = self._material_use(ru, upath)
                uses.append(use)
                if use_type is not None and use_type != ltype:
                    p.add(
                        f"{upath}material_id",
                        "MATERIAL_TYPE_MISMATCH",
                        f"{use.member}.{use.material_id} has licence type {use_type or 'none'}, "
                        f"the theme material {ltype or 'none'}",
                    )
            if not uses:
                p.add(f"{tpath}used_by", "MISSING", "a theme material is used by some member")
            materials.append(
                ThemeMaterial(material_id, p.string(raw, "name", tpath), tuple(uses), ltype)
            )
        return tuple(materials)

    def _flows(
        self,
        value: object,
        members: tuple[ThemeMember, ...],
        order: dict[str, set[str]],
    ) -> tuple[DataFlow, ...]:
        p = self.p
        roles = {m.role for m in members}
        flows = []
        for fpath, raw in self._list(value, "flows"):
            ltype = self._license_type(raw, fpath, required=True)
            to = raw.get("to")
            if not isinstance(to, dict):
                p.add(f"{fpath}to", "MISSING", "to must name a member and a material_id")
                to = {}
            use, use_type = self._material_use(to, f"{fpath}to.")
            if ltype and use_type is not None and use_type != ltype:
                p.add(
                    f"{fpath}to.material_id",
                    "FLOW_TYPE_MISMATCH",
                    f"{use.member}.{use.material_id} takes licence type {use_type or 'none'}, "
                    f"the flow carries {ltype}",
                )
            source = raw.get("source", "")
            fetch_role = raw.get("fetch_role", "")
            if bool(source) == bool(fetch_role):
                p.add(fpath.rstrip("."), "BAD_FLOW", "a flow has exactly one of source, fetch_role")
            elif source:
                source = self._member_ref(raw, "source", fpath)
                matter = self.members.get(source)
                if matter is not None and ltype and ltype not in matter.results:
                    p.add(
                        f"{fpath}source",
                        "FLOW_TYPE_MISMATCH",
                        f"matter {matter.code} of member {source} does not issue licence type "
                        f"{ltype}",
                    )
                if source in self.ids and use.member in order and source not in order[use.member]:
                    p.add(
                        f"{fpath}source",
                        "FLOW_AGAINST_ORDER",
                        f"member {source} does not come before member {use.member}",
                    )
            else:
                fetch_role = p.string(raw, "fetch_role", fpath, max_length=32)
                if fetch_role and fetch_role not in roles:
                    reason = "UNKNOWN_ROLE" if fetch_role not in ROLES else "ROLE_NOT_BOUND"
                    p.add(
                        f"{fpath}fetch_role",
                        reason,
                        f"no member of the theme plays role {fetch_role!r}",
                    )
            flows.append(DataFlow(use, ltype, str(source), str(fetch_role)))
        return tuple(flows)


def _order(members: tuple[ThemeMember, ...]) -> dict[str, set[str]] | list[int]:
    """Each member id → the ids of every member before it; or the indexes of a cycle."""
    index = {m.id: j for j, m in enumerate(members)}
    before: dict[str, set[str]] = {}
    state: dict[str, int] = {}  # 1 = being visited, 2 = done
    stack: list[str] = []

    def visit(member_id: str) -> list[int] | None:
        state[member_id] = 1
        stack.append(member_id)
        seen: set[str] = set()
        for a in members[index[member_id]].after:
            if a not in index:
                continue
            if state.get(a) == 1:
                return [index[x] for x in stack[stack.index(a) :]] + [index[a]]
            if state.get(a) != 2:
                cycle = visit(a)
                if cycle is not None:
                    return cycle
            seen |= before[a] | {a}
        stack.pop()
        state[member_id] = 2
        before[member_id] = seen
        return None

    for m in members:
        if m.id in index and state.get(m.id) is None:
            cycle = visit(m.id)
            if cycle is not None:
                return cycle
    return before
