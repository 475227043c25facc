"""Differences between catalog versions, and their impact on provincial implementation lists.

Pure: two documents in, a report out. A matter is "changed" when any element other than its
code differs; the report names the elements (`name`, `materials`, `promised_time_limit`, …).
A theme (一件事) is "changed" when one of its own elements differs, or when a matter one of its
members handles is changed (`member_matters`): a theme is only as stable as its matters.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, fields

from gateway.catalog.model import CatalogDocument, Matter, RegionCatalogDocument, Theme

_ELEMENTS = tuple(f.name for f in fields(Matter) if f.name not in ("code", "synthetic"))
_THEME_ELEMENTS = tuple(f.name for f in fields(Theme) if f.name not in ("code", "synthetic"))
MEMBER_MATTERS = "member_matters"
"""The element a theme change names when a matter of one of its members changed."""


@dataclass(frozen=True)
class CatalogDiff:
    """What changed from one version to another."""

    from_version: str
    to_version: str
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[tuple[str, tuple[str, ...]], ...]
    """(code, changed element names) for matters present in both."""
    themes_added: tuple[str, ...] = ()
    """Codes of themes only in the newer version."""
    themes_removed: tuple[str, ...] = ()
    """Codes of themes only in the older version."""
    themes_changed: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(code, changed element names) for themes present in both; `member_matters` when a
    member's matter changed."""


@dataclass(frozen=True)
class RegionImpact:
    """A province whose list references removed or changed matters."""

    region_code: str
    removed: tuple[str, ...]
    changed: tuple[str, ...]


def changed_elements(old: Matter, new: Matter) -> tuple[str, ...]:
    """The names of the elements that differ between two versions of a matter."""
    return tuple(name for name in _ELEMENTS if getattr(old, name) != getattr(new, name))


def changed_theme_elements(
    old: Theme, new: Theme, changed_matters: Collection[str]
) -> tuple[str, ...]:
    """The names of the elements that differ between two versions of a theme, and
    `member_matters` when one of `changed_matters` is a matter of a member of `new`."""
    names = [name for name in _THEME_ELEMENTS if getattr(old, name) != getattr(new, name)]
    if any(m.matter_code in changed_matters for m in new.members):
        names.append(MEMBER_MATTERS)
    return tuple(names)


def diff_catalogs(old: CatalogDocument, new: CatalogDocument) -> CatalogDiff:
    """Added, removed and changed matters and themes from `old` to `new`."""
    old_codes, new_codes = old.matters.keys(), new.matters.keys()
    changed = []
    for code in sorted(old_codes & new_codes):
        elements = changed_elements(old.matters[code], new.matters[code])
        if elements:
            changed.append((code, elements))
    changed_codes = {code for code, _ in changed}
    old_themes, new_themes = old.themes.keys(), new.themes.keys()
    themes_changed = []
    for code in sorted(old_themes & new_themes):
        elements = changed_theme_elements(old.themes[code], new.themes[code], changed_codes)
        if elements:
            themes_changed.append((code, elements))
    return CatalogDiff(
        from_version=old.version,
        to_version=new.version,
        added=tuple(sorted(new_codes - old_codes)),
        removed=tuple(sorted(old_codes - new_codes)),
        changed=tuple(changed),
        themes_added=tuple(sorted(new_themes - old_themes)),
        themes_removed=tuple(sorted(old_themes - new_themes)),
        themes_changed=tuple(themes_changed),
    )


def impact(diff: CatalogDiff, lists: Iterable[RegionCatalogDocument]) -> tuple[RegionImpact, ...]:
    """The provinces whose lists reference matters the diff removes or changes."""
    return impact_of_codes(
        diff,
        {doc.region_code: {c for e in doc.entries for c in e.national_codes} for doc in lists},
    )


def impact_of_codes(
    diff: CatalogDiff, used: Mapping[str, Collection[str]]
) -> tuple[RegionImpact, ...]:
    """`impact` from each province's set of referenced national codes."""
    removed = set(diff.removed)
    changed = {code for code, _ in diff.changed}
    impacts = []
    for region_code in sorted(used):
        codes = set(used[region_code])
        hit_removed, hit_changed = codes & removed, codes & changed
        if hit_removed or hit_changed:
            impacts.append(
                RegionImpact(region_code, tuple(sorted(hit_removed)), tuple(sorted(hit_changed)))
            )
    return tuple(impacts)
