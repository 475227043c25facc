"""Differences between catalog versions, and their impact on provincial implementation lists.

Pure: two documents in, a report out. A matter is "changed" when any element other than its
code differs; the report names the elements (`name`, `materials`, `promised_time_limit`, …).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, fields

from gateway.catalog.model import CatalogDocument, Matter, RegionCatalogDocument

_ELEMENTS = tuple(f.name for f in fields(Matter) if f.name not in ("code", "synthetic"))


@dataclass(frozen=True)
class CatalogDiff:
    """What changed from one version to another."""

    from_version: str
    to_version: str
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[tuple[str, tuple[str, ...]], ...]
    """(code, changed element names) for matters present in both."""


@dataclass(frozen=True)
class RegionImpact:
    """A province whose list references removed or changed matters."""

    region_code: str
    removed: tuple[str, ...]
    changed: tuple[str, ...]


def changed_elements(old: Matter, new: Matter) -> tuple[str, ...]:
    """The names of the elements that differ between two versions of a matter."""
    return tuple(name for name in _ELEMENTS if getattr(old, name) != getattr(new, name))


def diff_catalogs(old: CatalogDocument, new: CatalogDocument) -> CatalogDiff:
    """Added, removed and changed matters from `old` to `new`."""
    old_codes, new_codes = old.matters.keys(), new.matters.keys()
    changed = []
    for code in sorted(old_codes & new_codes):
        elements = changed_elements(old.matters[code], new.matters[code])
        if elements:
            changed.append((code, elements))
    return CatalogDiff(
        from_version=old.version,
        to_version=new.version,
        added=tuple(sorted(new_codes - old_codes)),
        removed=tuple(sorted(old_codes - new_codes)),
        changed=tuple(changed),
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
